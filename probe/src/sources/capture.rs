//! Live capture: one thread per configured interface reads frames with `pnet_datalink`
//! (AF_PACKET, both directions, needs CAP_NET_RAW) into the shared flow meter. At each batch
//! the producer sweeps expired flows into minute aggregates; at shutdown the capture stops
//! first and the table is flushed, so the last batch holds everything seen.
//!
//! The probe opens each capture socket itself (safe `socket2`) and hands it to `pnet`, so that
//! it can size the socket's receive buffer (`capture.socket_buffer_kib`) and knows the socket's
//! inode, by which a watcher thread reads the kernel's drop counter every second
//! ([`super::packet_diag`]).

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

use rie_proto::FlowAggregate;
use tracing::{error, info, warn};

use crate::meter::packet;
use crate::sources::packet_diag::{self, DropCounter};
use rie_flow::aggregate::{Aggregator, Prefixes};
use rie_flow::flow_table::{FlowTable, FlowTableConfig};

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

/// Capture settings that are not about the flow table.
#[derive(Debug, Clone)]
pub struct CaptureSettings {
    pub interfaces: Vec<String>,
    /// Receive buffer asked for each capture socket, in bytes.
    pub socket_buffer: usize,
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
    /// Frames the kernel dropped because a capture socket's buffer was full, since start.
    pub kernel_drops: AtomicU64,
    /// False when the kernel cannot tell (no `packet_diag`): drops are then unknown, not 0.
    pub kernel_drops_known: AtomicBool,
}

impl CaptureCounters {
    pub fn kernel_drops(&self) -> Option<u64> {
        self.kernel_drops_known
            .load(Ordering::Relaxed)
            .then(|| self.kernel_drops.load(Ordering::Relaxed))
    }
}

/// Reads the capture sockets' kernel drop counters into the shared counters.
struct DropWatch {
    inodes: Vec<u32>,
    counter: DropCounter,
    warned: bool,
}

impl DropWatch {
    fn poll(&mut self, counters: &CaptureCounters) {
        match packet_diag::packet_socket_drops() {
            Ok(reading) => {
                let total = self.counter.update(&reading, &self.inodes);
                counters.kernel_drops.store(total, Ordering::Relaxed);
                counters.kernel_drops_known.store(true, Ordering::Relaxed);
            }
            Err(e) => {
                counters.kernel_drops_known.store(false, Ordering::Relaxed);
                if !std::mem::replace(&mut self.warned, true) {
                    warn!(error = %e, "cannot read the capture's kernel drop counters: drops are reported as unknown");
                }
            }
        }
    }
}

/// The running capture and its flow meter.
pub struct LiveMeter {
    meter: Arc<Mutex<Meter>>,
    stop: Arc<AtomicBool>,
    threads: Vec<JoinHandle<()>>,
    drops: Arc<Mutex<DropWatch>>,
    pub counters: Arc<CaptureCounters>,
}

/// An AF_PACKET socket for all protocols (ETH_P_ALL, in network order), with its receive
/// buffer sized; `pnet` binds it to the interface.
fn packet_socket(socket_buffer: usize) -> std::io::Result<socket2::Socket> {
    const AF_PACKET: i32 = 17;
    const ETH_P_ALL_BE: i32 = 0x0003_u16.to_be() as i32;
    let s = socket2::Socket::new(
        socket2::Domain::from(AF_PACKET),
        socket2::Type::RAW,
        Some(socket2::Protocol::from(ETH_P_ALL_BE)),
    )?;
    s.set_recv_buffer_size(socket_buffer)?;
    // Linux reports twice what it grants (the other half is its bookkeeping).
    let granted = s.recv_buffer_size()? / 2;
    if granted < socket_buffer {
        warn!(
            asked = socket_buffer,
            granted,
            "the kernel capped the capture socket's buffer (net.core.rmem_max): raise it with `sysctl -w net.core.rmem_max={socket_buffer}` if the capture drops packets"
        );
    }
    Ok(s)
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
        settings: &CaptureSettings,
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
        let mut inodes = Vec::new();
        for name in &settings.interfaces {
            let iface = all
                .iter()
                .find(|i| &i.name == name)
                .ok_or_else(|| CaptureError::NoInterface(name.clone()))?;
            let open_error = |source| CaptureError::Open {
                iface: name.clone(),
                source,
            };
            let socket = packet_socket(settings.socket_buffer).map_err(open_error)?;
            inodes.extend(packet_diag::socket_inode(&socket));
            let cfg = pnet_datalink::Config {
                read_timeout: Some(Duration::from_millis(100)),
                read_buffer_size: 1 << 16,
                // pnet owns the descriptor from here on (it closes it).
                socket_fd: Some(std::os::fd::IntoRawFd::into_raw_fd(socket)),
                ..Default::default()
            };
            match pnet_datalink::channel(iface, cfg) {
                Ok(pnet_datalink::Channel::Ethernet(_tx, rx)) => receivers.push((name.clone(), rx)),
                Ok(_) => return Err(CaptureError::NotEthernet(name.clone())),
                Err(source) => return Err(open_error(source)),
            }
        }
        let drops = Arc::new(Mutex::new(DropWatch {
            inodes,
            counter: DropCounter::default(),
            warned: false,
        }));
        let mut threads = receivers
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
            .collect::<Vec<_>>();
        threads.push({
            let (drops, stop, counters) = (drops.clone(), stop.clone(), counters.clone());
            std::thread::spawn(move || {
                while !stop.load(Ordering::Relaxed) {
                    drops
                        .lock()
                        .unwrap_or_else(|p| p.into_inner())
                        .poll(&counters);
                    std::thread::sleep(Duration::from_secs(1));
                }
            })
        });
        Ok(Self {
            meter,
            stop,
            threads,
            drops,
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
        // The last word on drops, for the status written at exit.
        self.drops
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .poll(&self.counters);
        let mut g = self.meter.lock().unwrap_or_else(|p| p.into_inner());
        let Meter { table, agg } = &mut *g;
        table.flush();
        table.drain().for_each(|r| agg.add(&r));
        (agg.take(), agg.take_top_talkers())
    }
}
