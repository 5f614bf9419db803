//! NetFlow exported straight to the collector gets a direction and top talkers from the
//! inventory's `site_prefixes`, exactly as nfdump sees the same datagrams: softflowd exports a
//! pcap of one site's traffic (many remote peers, internal and transit traffic) as v5, v9 and
//! IPFIX, each from the exporter of a site whose prefixes are the pcap's site's; the very
//! datagrams go to nfcapd. For each site:
//! - inbound / outbound / unknown flows, packets and bytes (`by_direction` of
//!   `/api/v1/flows/totals`) equal nfdump's summary filtered by `src net` / `dst net`;
//! - `/api/v1/sites/{id}/top_talkers` equals nfdump's own aggregation of the same filters by
//!   remote block (`-A dstip4/24` of outbound plus `-A srcip4/24` of inbound, `/48` for IPv6),
//!   in bytes and packets, prefix by prefix.

#![allow(clippy::unwrap_used)]

use std::time::Duration;

use rie_e2e::netflow::{
    api_directions, api_talkers, inventory_with_prefixes, nfcapd_files, nfdump_site_view,
    send_from, softflowd, talkers_pcap,
};
use rie_e2e::Collector;

#[test]
fn direct_netflow_direction_and_talkers_equal_nfdump() {
    let tmp = tempfile::tempdir().unwrap();
    let pcap = tmp.path().join("talkers.pcap");
    talkers_pcap(&pcap);
    let c = Collector::start_netflow(&inventory_with_prefixes(tmp.path()));
    let to = c.netflow_addr.unwrap();
    // The site's detail shows what the NetFlow input knows of it.
    let s1 = c.get("/api/v1/sites/S1");
    assert_eq!(
        s1["netflow"],
        serde_json::json!({"exporters": ["127.0.0.2"], "site_prefixes": ["10.1.0.0/16", "fd00:1::/48"]})
    );
    let mut expected = Vec::new();
    for (version, from, site) in [
        ("5", [127, 0, 0, 2], "S1"),
        ("9", [127, 0, 0, 3], "S2"),
        ("10", [127, 0, 0, 5], "S3"),
    ] {
        let datagrams = softflowd(&pcap, version, None);
        let files = nfcapd_files(&datagrams);
        let (dirs, blocks) = nfdump_site_view(files.path());
        eprintln!("v{version} → {site}: nfdump directions {dirs:?}\n  blocks {blocks:?}");
        // All three directions, seven IPv4 blocks (two with two hosts each) and, beyond v5,
        // two IPv6 blocks: check that we test what we think we test.
        assert_eq!(dirs.len(), 3, "v{version}: {dirs:?}");
        let v6 = blocks.keys().filter(|k| k.contains(':')).count();
        assert_eq!(blocks.len() - v6, 7, "v{version}: {blocks:?}");
        assert_eq!(v6, if version == "5" { 0 } else { 2 }, "v{version}");
        send_from(from, to, &datagrams);
        expected.push((site, dirs, blocks));
    }
    for (site, dirs, blocks) in &expected {
        let want = dirs.clone();
        c.wait_until(
            &format!("{site} directions = nfdump {want:?}"),
            Duration::from_secs(10),
            |c| api_directions(c, site) == want,
        );
        assert_eq!(
            api_talkers(&c, site),
            *blocks,
            "{site} top talkers vs nfdump"
        );
    }
    // Every record was counted by the direction it got: nfdump's flows, over the three sites.
    for d in ["inbound", "outbound", "unknown"] {
        let want: u64 = expected.iter().map(|(_, dirs, _)| dirs[d].0).sum();
        assert_eq!(
            c.metric(&format!(
                "rie_collector_netflow_direction_records_total{{direction=\"{d}\"}}"
            )) as u64,
            want,
            "{d}"
        );
    }
    assert_eq!(
        c.metric("rie_collector_netflow_no_prefix_records_total"),
        0.0
    );
}
