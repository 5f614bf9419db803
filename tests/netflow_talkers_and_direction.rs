//! NetFlow exported straight to the collector gets a direction and top talkers from the
//! inventory's `site_prefixes`, exactly as nfdump sees the same datagrams: softflowd exports a
//! pcap of one site's traffic (many remote peers, internal and transit traffic) as v5, v9 and
//! IPFIX, each from the exporter of a site whose prefixes are the pcap's site's; the very
//! datagrams go to nfcapd. For each site:
//! - inbound / outbound / unknown flows, packets and bytes (`by_direction` of
//!   `/api/v1/flows/totals`) equal `nfdump -I` filtered by `src net` / `dst net`;
//! - `/api/v1/sites/{id}/top_talkers` equals nfdump's own aggregation of the same filters by
//!   remote block (`-A dstip4/24` of outbound plus `-A srcip4/24` of inbound, `/48` for IPv6),
//!   in bytes and packets, prefix by prefix.

#![allow(clippy::unwrap_used)]

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

use rie_e2e::netflow::{
    inventory_with_prefixes, nfcapd_files, nfdump_blocks, nfdump_summary, send_from, softflowd,
    talkers_pcap,
};
use rie_e2e::Collector;
use serde_json::Value;

const WINDOW: &str = "from=2000-01-01T00:00:00Z&to=2100-01-01T00:00:00Z";
const INSIDE_SRC: &str = "(src net 10.1.0.0/16 or src net fd00:1::/48)";
const INSIDE_DST: &str = "(dst net 10.1.0.0/16 or dst net fd00:1::/48)";

fn triple(v: &Value) -> (u64, u64, u64) {
    (
        v["flows"].as_u64().unwrap_or(0),
        v["packets"].as_u64().unwrap_or(0),
        v["bytes"].as_u64().unwrap_or(0),
    )
}

/// What nfdump says of a site's traffic in `dir`: totals per direction, and bytes and
/// packets per remote block.
fn oracle(dir: &Path) -> (BTreeMap<&'static str, (u64, u64, u64)>, BTreeMap<String, (u64, u64)>) {
    let outbound = format!("{INSIDE_SRC} and not {INSIDE_DST}");
    let inbound = format!("{INSIDE_DST} and not {INSIDE_SRC}");
    let all = nfdump_summary(dir, None);
    let o = nfdump_summary(dir, Some(&outbound));
    let i = nfdump_summary(dir, Some(&inbound));
    let u = (all.0 - o.0 - i.0, all.1 - o.1 - i.1, all.2 - o.2 - i.2);
    let mut dirs = BTreeMap::new();
    for (k, v) in [("outbound", o), ("inbound", i), ("unknown", u)] {
        if v.0 > 0 {
            dirs.insert(k, v);
        }
    }
    let mut blocks: BTreeMap<String, (u64, u64)> = BTreeMap::new();
    for (key, bits, filter) in [
        ("dstip4", 24, format!("ipv4 and {outbound}")),
        ("srcip4", 24, format!("ipv4 and {inbound}")),
        ("dstip6", 48, format!("ipv6 and {outbound}")),
        ("srcip6", 48, format!("ipv6 and {inbound}")),
    ] {
        for (net, (b, p)) in nfdump_blocks(dir, key, bits, &filter) {
            let e = blocks.entry(net).or_default();
            e.0 += b;
            e.1 += p;
        }
    }
    (dirs, blocks)
}

fn directions(c: &Collector, site: &str) -> BTreeMap<String, (u64, u64, u64)> {
    let t = c.get(&format!("/api/v1/flows/totals?{WINDOW}&site={site}"));
    t["by_direction"]
        .as_object()
        .unwrap()
        .iter()
        .map(|(k, v)| (k.clone(), triple(v)))
        .collect()
}

fn talkers(c: &Collector, site: &str) -> BTreeMap<String, (u64, u64)> {
    let v = c.get(&format!("/api/v1/sites/{site}/top_talkers?{WINDOW}&limit=100"));
    v.as_array()
        .unwrap()
        .iter()
        .map(|t| {
            (
                t["prefix"].as_str().unwrap().to_string(),
                (t["bytes"].as_u64().unwrap(), t["packets"].as_u64().unwrap()),
            )
        })
        .collect()
}

#[test]
fn direct_netflow_direction_and_talkers_equal_nfdump() {
    let tmp = tempfile::tempdir().unwrap();
    let pcap = tmp.path().join("talkers.pcap");
    talkers_pcap(&pcap);
    let c = Collector::start_netflow(&inventory_with_prefixes(tmp.path()));
    let to = c.netflow_addr.unwrap();
    let mut expected = Vec::new();
    for (version, from, site) in [
        ("5", [127, 0, 0, 2], "S1"),
        ("9", [127, 0, 0, 3], "S2"),
        ("10", [127, 0, 0, 5], "S3"),
    ] {
        let datagrams = softflowd(&pcap, version, None);
        let files = nfcapd_files(&datagrams);
        let (dirs, blocks) = oracle(files.path());
        eprintln!("v{version} → {site}: nfdump directions {dirs:?}\n  blocks {blocks:?}");
        // The pcap holds all three kinds and more remote blocks than one site has in a
        // /16: check that we test what we think we test.
        assert_eq!(dirs.len(), 3, "v{version}: {dirs:?}");
        let v6 = blocks.keys().filter(|k| k.contains(':')).count();
        assert_eq!(blocks.len() - v6, 7, "v{version}: {blocks:?}");
        assert_eq!(v6, if version == "5" { 0 } else { 2 }, "v{version}");
        send_from(from, to, &datagrams);
        expected.push((site, dirs, blocks));
    }
    for (site, dirs, blocks) in &expected {
        let want: BTreeMap<String, (u64, u64, u64)> =
            dirs.iter().map(|(k, v)| (k.to_string(), *v)).collect();
        c.wait_until(
            &format!("{site} directions = nfdump {want:?}"),
            Duration::from_secs(10),
            |c| directions(c, site) == want,
        );
        assert_eq!(talkers(&c, site), *blocks, "{site} top talkers vs nfdump");
    }
}
