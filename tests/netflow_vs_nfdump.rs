//! The same pcap exported by softflowd as NetFlow v5, v9 and IPFIX: the very datagrams go to
//! nfcapd (nfdump is the oracle) and to the collector's `--netflow-listen`, each version from
//! its own loopback "router": v5 from S1's exporter, v9 from S2's, IPFIX from an address no
//! site declares. The collector's `/api/v1/flows/totals` per exporter must equal nfdump's
//! flows, packets and bytes exactly; the undeclared address's datagrams are counted per
//! source and dropped: nothing of them is stored.

#![allow(clippy::unwrap_used)]

use std::time::Duration;

use rie_e2e::netflow::{inventory, mixed_pcap, nfdump_totals, send_from, softflowd};
use rie_e2e::Collector;
use serde_json::Value;

fn triple(v: &Value) -> (u64, u64, u64) {
    (
        v["flows"].as_u64().unwrap(),
        v["packets"].as_u64().unwrap(),
        v["bytes"].as_u64().unwrap(),
    )
}

fn exporter_totals(c: &Collector, exporter: &str) -> (u64, u64, u64) {
    triple(&c.get(&format!(
        "/api/v1/flows/totals?from=2000-01-01T00:00:00Z&to=2100-01-01T00:00:00Z&exporter={exporter}"
    )))
}

#[test]
fn collector_totals_equal_nfdump_for_v5_v9_and_ipfix() {
    let tmp = tempfile::tempdir().unwrap();
    let pcap = tmp.path().join("mixed.pcap");
    let capture = mixed_pcap(&pcap);
    let c = Collector::start_netflow(&inventory(tmp.path()));
    let to = c.netflow_addr.unwrap();
    let written = capture
        .expected
        .values()
        .fold((0, 0), |a, v| (a.0 + v.0, a.1 + v.1));

    let mut expected = Vec::new();
    let mut sent = Vec::new();
    for (version, from) in [
        ("5", [127, 0, 0, 2]),
        ("9", [127, 0, 0, 3]),
        ("10", [127, 0, 0, 4]),
    ] {
        let datagrams = softflowd(&pcap, version, None);
        let oracle = nfdump_totals(&datagrams);
        assert!(oracle.0 > 100, "v{version}: nfdump saw {oracle:?}");
        if version != "5" {
            // v9 and IPFIX carry IPv6 too: everything the pcap holds, by construction.
            assert_eq!((oracle.1, oracle.2), written, "v{version}");
        }
        send_from(from, to, &datagrams);
        eprintln!(
            "v{version}: {} datagrams, nfdump {oracle:?}",
            datagrams.len()
        );
        expected.push((version, from, oracle));
        sent.push(datagrams.len());
    }
    // The undeclared source: every datagram counted under its address, then dropped.
    c.wait_until(
        "the unknown source's datagrams counted",
        Duration::from_secs(10),
        |c| {
            c.metric_opt(
                "rie_collector_netflow_unknown_source_datagrams_total{source=\"127.0.0.4\"}",
            ) == Some(sent[2] as f64)
        },
    );
    let unknown = expected.pop().unwrap();
    for (version, from, oracle) in &expected {
        let exporter = format!("{}.{}.{}.{}", from[0], from[1], from[2], from[3]);
        c.wait_until(
            &format!("v{version} totals from {exporter} = nfdump {oracle:?}"),
            Duration::from_secs(10),
            |c| exporter_totals(c, &exporter) == *oracle,
        );
    }
    // Attribution: v5 to S1, v9 to S2; the IPFIX of the undeclared source is not stored.
    assert_eq!(triple(&c.totals(Some("S1"))), expected[0].2);
    assert_eq!(triple(&c.totals(Some("S2"))), expected[1].2);
    assert!(unknown.2 .0 > 100, "{unknown:?}");
    assert_eq!(exporter_totals(&c, "127.0.0.4"), (0, 0, 0));
    assert_eq!(triple(&c.totals(Some("unknown"))), (0, 0, 0));
    let all = triple(&c.totals(None));
    let sum = expected
        .iter()
        .fold((0, 0, 0), |a, (_, _, o)| (a.0 + o.0, a.1 + o.1, a.2 + o.2));
    assert_eq!(all, sum, "only the declared exporters' traffic is stored");
    // Split by service-port class, each version's traffic still sums exactly to nfdump's, and
    // every record was classified from its ports (softflowd exports them in v5, v9 and IPFIX).
    for (site, (_, _, oracle)) in ["S1", "S2"].iter().zip(&expected) {
        let t = c.totals(Some(site));
        let classes = t["by_port_class"].as_object().unwrap();
        let sum = classes.values().fold((0, 0, 0), |a, v| {
            let o = triple(v);
            (a.0 + o.0, a.1 + o.1, a.2 + o.2)
        });
        assert_eq!(sum, *oracle, "{site}: {t}");
        assert!(!classes.contains_key("unknown"), "{site}: {t}");
    }
    // S1 and S2 declare no site_prefixes here: their records are counted as such.
    assert_eq!(
        c.metric("rie_collector_netflow_no_prefix_records_total") as u64,
        expected[0].2 .0 + expected[1].2 .0
    );
    // ... and all their traffic keeps direction `unknown`, with no top talkers.
    for (site, (_, _, oracle)) in ["S1", "S2"].iter().zip(&expected) {
        let t = c.totals(Some(site));
        let dirs = t["by_direction"].as_object().unwrap();
        assert_eq!(dirs.len(), 1, "{site}: {t}");
        assert_eq!(triple(&dirs["unknown"]), *oracle, "{site}: {t}");
    }
    let none =
        c.get("/api/v1/sites/S1/top_talkers?from=2000-01-01T00:00:00Z&to=2100-01-01T00:00:00Z");
    assert_eq!(none, serde_json::json!([]));
    // Every NetFlow record is one flow: the records taken in equal nfdump's flows.
    assert_eq!(
        c.metric("rie_collector_flow_records_total{source=\"netflow\"}") as u64,
        sum.0
    );
    for (site, n) in [("S1", sent[0]), ("S2", sent[1])] {
        assert_eq!(
            c.metric(&format!(
                "rie_collector_netflow_packets_total{{exporter_site=\"{site}\"}}"
            )),
            n as f64
        );
    }
    assert_eq!(
        c.metric("rie_collector_decode_errors_total{reason=\"malformed\"}"),
        0.0
    );
    assert_eq!(
        c.metric("rie_collector_decode_errors_total{reason=\"no_template\"}"),
        0.0
    );
    // Nothing was lost at the socket either.
    assert_eq!(c.metric("rie_collector_netflow_kernel_drops_total"), 0.0);
}

/// softflowd `-s 10` announces 1-in-10 sampling in the v5 header; nfdump scales v5 by it and
/// so must the collector (packets and bytes ×10, flows as exported).
#[test]
fn v5_sampling_is_corrected_like_nfdump() {
    let tmp = tempfile::tempdir().unwrap();
    let pcap = tmp.path().join("mixed.pcap");
    mixed_pcap(&pcap);
    let c = Collector::start_netflow(&inventory(tmp.path()));
    let datagrams = softflowd(&pcap, "5", Some(10));
    // The header carries the interval: check we test what we think we test.
    let interval = u16::from_be_bytes([datagrams[0][22], datagrams[0][23]]) & 0x3fff;
    assert_eq!(interval, 10);
    let oracle = nfdump_totals(&datagrams);
    send_from([127, 0, 0, 2], c.netflow_addr.unwrap(), &datagrams);
    c.wait_until(
        &format!("sampled v5 totals = nfdump {oracle:?}"),
        Duration::from_secs(10),
        |c| triple(&c.totals(Some("S1"))) == oracle,
    );
}

/// softflowd `-s 10` with v9 and IPFIX announces the rate in options records (sampler
/// tables), not in the flow records. nfdump does not scale these (its known gap), so the
/// oracle here is nfdump's totals times the announced rate: the collector must read the
/// options record of the same exporter and correct packets and bytes, flows unchanged.
#[test]
fn v9_and_ipfix_sampling_announced_in_options_is_corrected() {
    let tmp = tempfile::tempdir().unwrap();
    let pcap = tmp.path().join("mixed.pcap");
    mixed_pcap(&pcap);
    let c = Collector::start_netflow(&inventory(tmp.path()));
    for (version, from, site) in [("9", [127, 0, 0, 2], "S1"), ("10", [127, 0, 0, 3], "S2")] {
        let datagrams = softflowd(&pcap, version, Some(10));
        let (flows, packets, bytes) = nfdump_totals(&datagrams);
        send_from(from, c.netflow_addr.unwrap(), &datagrams);
        let want = (flows, packets * 10, bytes * 10);
        c.wait_until(
            &format!("v{version} sampled totals = 10 x nfdump {want:?}"),
            Duration::from_secs(10),
            |c| triple(&c.totals(Some(site))) == want,
        );
    }
}
