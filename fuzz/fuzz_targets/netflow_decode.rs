//! Fuzz target: any byte string, from any of three exporters, through two long-lived decoders
//! (so templates and held data from earlier inputs are in play): one with the fast path of
//! compiled templates, one with the full `netflow_parser` parse only. Neither may panic, and
//! both must give the same records and the same errors.
#![no_main]

use std::net::{IpAddr, Ipv4Addr};
use std::sync::Mutex;

use libfuzzer_sys::fuzz_target;
use rie_flow::netflow::{Decoder, DecoderConfig};

static DECODERS: Mutex<Option<(Decoder, Decoder)>> = Mutex::new(None);

fuzz_target!(|data: &[u8]| {
    let mut guard = DECODERS.lock().unwrap_or_else(|p| p.into_inner());
    let (fast, full) = guard.get_or_insert_with(|| {
        let fast = Decoder::new(&DecoderConfig::default(), None).expect("default config is valid");
        let mut full =
            Decoder::new(&DecoderConfig::default(), None).expect("default config is valid");
        full.set_fast_path(false);
        (fast, full)
    });
    let exporter = IpAddr::V4(Ipv4Addr::new(10, 0, 0, data.first().map_or(0, |b| b % 3)));
    let (mut a, mut b) = (Vec::new(), Vec::new());
    let ra = fast.decode(exporter, data, &mut a);
    let rb = full.decode(exporter, data, &mut b);
    assert_eq!(ra, rb);
    assert_eq!(a, b);
});
