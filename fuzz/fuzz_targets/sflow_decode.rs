//! Fuzz target: any byte string through one long-lived sFlow decoder with small limits (so
//! that agent, source and counter state from earlier inputs is in play and the table bounds
//! are hit). The decoder must never panic and its state must stay within its limits.
#![no_main]

use std::sync::Mutex;

use libfuzzer_sys::fuzz_target;
use rie_flow::sflow::{Decoder, DecoderConfig};

static DECODER: Mutex<Option<Decoder>> = Mutex::new(None);

fuzz_target!(|data: &[u8]| {
    let mut guard = DECODER.lock().unwrap_or_else(|p| p.into_inner());
    let d = guard.get_or_insert_with(|| {
        Decoder::new(&DecoderConfig {
            max_agents: 64,
            max_sources_per_agent: 16,
        })
    });
    let (mut flows, mut counters) = (Vec::new(), Vec::new());
    let _ = d.decode(data, 1_790_000_000_000, &mut flows, &mut counters);
    assert!(d.agents() <= 64);
    // At most one record per 8 bytes of input: nothing is amplified.
    assert!(flows.len() + counters.len() <= data.len() / 8 + 1);
});
