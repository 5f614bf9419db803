//! Fuzz target: any byte string, from any of three exporters, through one long-lived decoder
//! (so templates and held data from earlier inputs are in play). The decoder must never
//! panic; what it returns is not checked here.
#![no_main]

use std::net::{IpAddr, Ipv4Addr};
use std::sync::Mutex;

use libfuzzer_sys::fuzz_target;
use rie_flow::netflow::{Decoder, DecoderConfig};

static DECODER: Mutex<Option<Decoder>> = Mutex::new(None);

fuzz_target!(|data: &[u8]| {
    let mut guard = DECODER.lock().unwrap_or_else(|p| p.into_inner());
    let d = guard.get_or_insert_with(|| {
        Decoder::new(&DecoderConfig::default(), None).expect("default config is valid")
    });
    let exporter = IpAddr::V4(Ipv4Addr::new(10, 0, 0, data.first().map_or(0, |b| b % 3)));
    let mut out = Vec::new();
    let _ = d.decode(exporter, data, &mut out);
});
