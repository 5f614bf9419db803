//! Bounded label values for per-source metrics of the UDP inputs (NetFlow, sFlow): a
//! datagram from an address in no site is counted under that address for the first
//! [`SOURCE_LABELS`] addresses, then under `other`, so a scan or a misconfigured fleet cannot
//! grow the metric without bound. Imports nothing of the collector.

use std::net::IpAddr;
use std::sync::Mutex;

/// Source addresses that get a label of their own in the per-source metrics (unknown
/// sources, malformed datagrams); later ones are counted as `other`.
pub const SOURCE_LABELS: usize = 64;

/// The addresses given a label so far, shared by an input's threads (only the rare paths,
/// unknown source or malformed datagram, look here, once per address and thread).
#[derive(Default)]
pub struct SourceLabels(Mutex<Vec<IpAddr>>);

impl SourceLabels {
    /// The label of `addr`: its text if among the first [`SOURCE_LABELS`], else `other`.
    pub fn label(&self, addr: IpAddr) -> String {
        let mut known = self.0.lock().unwrap_or_else(|p| p.into_inner());
        if known.contains(&addr) {
            return addr.to_string();
        }
        if known.len() < SOURCE_LABELS {
            known.push(addr);
            return addr.to_string();
        }
        "other".into()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn labels_stop_at_the_bound_and_stay_stable() {
        let labels = SourceLabels::default();
        let addr = |i: usize| IpAddr::from([10, 0, (i / 256) as u8, (i % 256) as u8]);
        for i in 0..SOURCE_LABELS {
            assert_eq!(labels.label(addr(i)), addr(i).to_string());
        }
        assert_eq!(labels.label(addr(SOURCE_LABELS)), "other");
        assert_eq!(labels.label(addr(SOURCE_LABELS + 500)), "other");
        // An address labelled before the bound keeps its label.
        assert_eq!(labels.label(addr(3)), addr(3).to_string());
    }
}
