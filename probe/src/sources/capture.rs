//! Live capture: one thread per configured interface reads frames with `pnet_datalink`
//! (AF_PACKET, both directions, needs CAP_NET_RAW) into the shared flow meter. At each batch
//! the producer sweeps expired flows into minute aggregates; at shutdown the capture stops
//! first and the table is flushed, so the last batch holds everything seen.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

use rie_proto::FlowAggregate;
use tracing::{error, info};

use crate::meter::aggregate::{Aggregator, Prefixes};
use crate::meter::flow_table::{FlowTable, FlowTableConfig};
use crate::meter::packet;

#[derive(Debug, thiserror::Error)]
pub enum CaptureError {
    #[error("capture.interfaces: no interface named {0:?} on this router (see `ip link`)")]
    NoInterface(String),
    #[error("capture on {iface}: {source} (the probe needs CAP_NET_RAW: run it through its systemd unit)")]
    Open {
        iface: String,
        #[source]
        source: std::io::Error,
    },
    #[error("capture on {0}: not an Ethernet interface")]
    NotEthernet(String),
}

struct Meter {
    table: FlowTable,
    agg: Aggregator,
}

/// What the capture counts, shared with the status file and the metrics textfile.
#[derive(Debug, Default)]
pub struct CaptureCounters {
    /// IP packets counted since start.
    pub packets: AtomicU64,
    /// Flows open in the table at the last batch.
    pub table_entries: AtomicU64,
    /// Flows reported early because the table was full, since start.
    pub table_evictions: AtomicU64,
}

/// The running capture and its flow meter.
pub struct LiveMeter {
    meter: Arc<Mutex<Meter>>,
    stop: Arc<AtomicBool>,
    threads: Vec<JoinHandle<()>>,
    pub counters: Arc<CaptureCounters>,
}

fn now_ns() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64)
}

impl LiveMeter {
    /// Opens every interface, then starts reading.
    ///
    /// # Errors
    /// [`CaptureError`] naming the interface and the fix.
    pub fn start(
        interfaces: &[String],
        table: FlowTableConfig,
        prefixes: Prefixes,
    ) -> Result<Self, CaptureError> {
        let meter = Arc::new(Mutex::new(Meter {
            table: FlowTable::new(table),
            agg: Aggregator::new(prefixes),
        }));
        let stop = Arc::new(AtomicBool::new(false));
        let counters = Arc::new(CaptureCounters::default());
        let all = pnet_datalink::interfaces();
        let mut receivers = Vec::new();
        for name in interfaces {
            let iface = all
                .iter()
                .find(|i| &i.name == name)
                .ok_or_else(|| CaptureError::NoInterface(name.clone()))?;
            let cfg = pnet_datalink::Config {
                read_timeout: Some(Duration::from_millis(100)),
                read_buffer_size: 1 << 16,
                ..Default::default()
            };
            match pnet_datalink::channel(iface, cfg) {
                Ok(pnet_datalink::Channel::Ethernet(_tx, rx)) => receivers.push((name.clone(), rx)),
                Ok(_) => return Err(CaptureError::NotEthernet(name.clone())),
                Err(source) => {
                    return Err(CaptureError::Open {
                        iface: name.clone(),
                        source,
                    })
                }
            }
        }
        let threads = receivers
            .into_iter()
            .map(|(name, mut rx)| {
                let (meter, stop, counters) = (meter.clone(), stop.clone(), counters.clone());
                std::thread::spawn(move || {
                    info!(interface = %name, "capture started");
                    while !stop.load(Ordering::Relaxed) {
                        match rx.next() {
                            Ok(frame) => {
                                if let Some(m) = packet::from_ethernet(frame) {
                                    let mut g = meter.lock().unwrap_or_else(|p| p.into_inner());
                                    let Meter { table, agg } = &mut *g;
                                    table.observe(now_ns(), &m);
                                    table.drain().for_each(|r| agg.add(&r));
                                    counters.packets.fetch_add(1, Ordering::Relaxed);
                                }
                            }
                            Err(e) if e.kind() == std::io::ErrorKind::TimedOut => {}
                            Err(e) => {
                                error!(interface = %name, error = %e, "capture stopped");
                                break;
                            }
                        }
                    }
                })
            })
            .collect();
        Ok(Self {
            meter,
            stop,
            threads,
            counters,
        })
    }

    /// Flows expired so far, as minute aggregates.
    pub fn take(&self) -> Vec<FlowAggregate> {
        let mut g = self.meter.lock().unwrap_or_else(|p| p.into_inner());
        let Meter { table, agg } = &mut *g;
        table.sweep(now_ns());
        table.drain().for_each(|r| agg.add(&r));
        self.counters
            .table_entries
            .store(table.len() as u64, Ordering::Relaxed);
        self.counters
            .table_evictions
            .store(table.evictions, Ordering::Relaxed);
        agg.take()
    }

    /// Keeps the top `n` remote prefixes per minute (`[meter] top_talkers`).
    pub fn set_top_talkers(&self, n: usize) {
        let mut g = self.meter.lock().unwrap_or_else(|p| p.into_inner());
        g.agg.set_top_talkers(n);
    }

    /// Top remote prefixes of the flows taken so far (call right after [`Self::take`]).
    pub fn take_top_talkers(&self) -> Vec<rie_proto::TopTalker> {
        let mut g = self.meter.lock().unwrap_or_else(|p| p.into_inner());
        g.agg.take_top_talkers()
    }

    /// Stops capturing and reports every flow still open, with the top talkers of what is
    /// reported.
    pub fn stop_and_flush(mut self) -> (Vec<FlowAggregate>, Vec<rie_proto::TopTalker>) {
        self.stop.store(true, Ordering::Relaxed);
        for t in self.threads.drain(..) {
            let _ = t.join();
        }
        let mut g = self.meter.lock().unwrap_or_else(|p| p.into_inner());
        let Meter { table, agg } = &mut *g;
        table.flush();
        table.drain().for_each(|r| agg.add(&r));
        (agg.take(), agg.take_top_talkers())
    }
}
