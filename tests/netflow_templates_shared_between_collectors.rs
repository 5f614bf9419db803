#![allow(clippy::unwrap_used)]
//! NetFlow v9 with two collectors on one real PostgreSQL 15 (started by the test): a router
//! announces its template to collector a only; once a has committed it, the router's data sent
//! to collector b (which was already running, so did not load it at start) decodes at once,
//! from the template in the shared database, with exact totals on both collectors. Data of a
//! template nobody announced stays pending on b, as on a single collector.

use std::time::Duration;

use rie_e2e::netflow::{
    data, inventory, send_from, triple, v9, v9_record, v9_template_256, wait_site,
};
use rie_e2e::Collector;
use rie_testpg::PgServer;

const S1: [u8; 4] = [127, 0, 0, 2];
const S2: [u8; 4] = [127, 0, 0, 3];
const T: u32 = 1_790_000_000;

#[test]
fn a_template_announced_to_one_collector_decodes_on_another() {
    let pg = PgServer::start();
    let tmp = tempfile::tempdir().unwrap();
    let inv = inventory(tmp.path());
    let cfg = format!(
        "[store]\nbackend = \"postgres\"\n[store.postgres]\nurl = \"{}\"\n",
        pg.url()
    );
    let a = Collector::start_netflow_sharing_pki(&inv, &cfg, None);
    let b = Collector::start_netflow_sharing_pki(&inv, &cfg, Some(&a));
    assert_eq!(b.metric("rie_collector_netflow_templates_persisted"), 0.0);

    send_from(
        S1,
        a.netflow_addr.unwrap(),
        &[v9(
            0,
            T,
            60_000,
            &[v9_template_256(), data(256, &[v9_record(500, 5)])],
        )],
    );
    // Committed by a (with the template, in the same group): visible to b's API too.
    wait_site(&a, "S1", (1, 5, 500));
    wait_site(&b, "S1", (1, 5, 500));
    // The router now sends to b, without announcing again.
    send_from(
        S1,
        b.netflow_addr.unwrap(),
        &[v9(0, T, 61_000, &[data(256, &[v9_record(700, 7)])])],
    );
    wait_site(&b, "S1", (2, 12, 1200));
    wait_site(&a, "S1", (2, 12, 1200));
    assert_eq!(
        b.metric("rie_collector_netflow_templates_from_store_total"),
        1.0
    );
    assert_eq!(b.metric("rie_collector_netflow_pending_flowsets"), 0.0);
    assert_eq!(
        pg.psql("SELECT sum(bytes) FROM flow_minute WHERE site_id = 'S1'")
            .trim(),
        "1200"
    );

    // S2's template was never announced anywhere: its data waits on b for its template.
    let dgs: Vec<Vec<u8>> = (0..20)
        .map(|i| v9(0, T, 62_000 + i, &[data(256, &[v9_record(9, 1)])]))
        .collect();
    send_from(S2, b.netflow_addr.unwrap(), &dgs);
    b.wait_until("S2 flowsets pending", Duration::from_secs(10), |c| {
        c.metric("rie_collector_netflow_pending_flowsets") == 20.0
    });
    assert_eq!(
        b.metric("rie_collector_netflow_templates_from_store_total"),
        1.0
    );
    assert_eq!(triple(&b.totals(Some("S2"))), (0, 0, 0));
}
