//! State of each access link as the router sees it: interface state and counters
//! (`/sys/class/net`), which link carries the default route (`/proc/net/route`,
//! `/proc/net/ipv6_route`), and, from the checks, whether the link reaches the core.
//!
//! A change (failover, failback, a link lost or back) is stamped with the time it was seen and
//! signalled at once, so that the producer sends it immediately rather than at the next batch.

use std::collections::HashMap;
use std::path::PathBuf;

use rie_proto::{LinkId, LinkStatus};

use crate::checks::LinkConfig;

/// Kernel facts about one interface.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Interface {
    /// Operationally up with carrier.
    pub up: bool,
    pub rx_bytes: u64,
    pub tx_bytes: u64,
}

/// Where the kernel files are read (a test points this at a fixture tree).
#[derive(Debug, Clone)]
pub struct Sources {
    pub sys_class_net: PathBuf,
    pub proc_net: PathBuf,
}

impl Default for Sources {
    fn default() -> Self {
        Self {
            sys_class_net: PathBuf::from("/sys/class/net"),
            proc_net: PathBuf::from("/proc/net"),
        }
    }
}

impl Sources {
    pub fn interface(&self, name: &str) -> Option<Interface> {
        let dir = self.sys_class_net.join(name);
        let read = |f: &str| std::fs::read_to_string(dir.join(f)).ok();
        let oper = read("operstate")?;
        let oper = oper.trim();
        // "unknown" is what drivers without operstate support (tunnels, some PPP) report:
        // then carrier decides.
        let carrier = read("carrier").is_some_and(|c| c.trim() == "1");
        let up = oper == "up" || (oper == "unknown" && carrier);
        let counter = |f: &str| {
            read(&format!("statistics/{f}"))
                .and_then(|v| v.trim().parse().ok())
                .unwrap_or(0)
        };
        Some(Interface {
            up,
            rx_bytes: counter("rx_bytes"),
            tx_bytes: counter("tx_bytes"),
        })
    }

    /// The interface of the usable default route with the lowest metric (IPv4 first, the RIE's
    /// transport; IPv6 when there is no IPv4 default).
    pub fn default_route_interface(&self) -> Option<String> {
        let v4 = std::fs::read_to_string(self.proc_net.join("route")).unwrap_or_default();
        parse_route_v4(&v4).or_else(|| {
            let v6 = std::fs::read_to_string(self.proc_net.join("ipv6_route")).unwrap_or_default();
            parse_route_v6(&v6)
        })
    }
}

const RTF_UP: u32 = 0x1;
const RTF_REJECT: u32 = 0x200;

/// `/proc/net/route`: Iface Destination Gateway Flags RefCnt Use Metric Mask ...
fn parse_route_v4(text: &str) -> Option<String> {
    text.lines()
        .skip(1)
        .filter_map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            let flags = u32::from_str_radix(f.get(3)?, 16).ok()?;
            let default = *f.get(1)? == "00000000" && *f.get(7)? == "00000000";
            let usable = flags & RTF_UP != 0 && flags & RTF_REJECT == 0;
            (default && usable).then(|| Some((f.get(6)?.parse::<u32>().ok()?, f[0].to_string())))
        })
        .flatten()
        .min()
        .map(|(_, i)| i)
}

/// `/proc/net/ipv6_route`: dest plen src splen nexthop metric refcnt use flags iface.
fn parse_route_v6(text: &str) -> Option<String> {
    text.lines()
        .filter_map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            if f.len() < 10 || f[0] != "00000000000000000000000000000000" || f[1] != "00" {
                return None;
            }
            let flags = u32::from_str_radix(f[8], 16).ok()?;
            let metric = u32::from_str_radix(f[5], 16).ok()?;
            (flags & RTF_UP != 0 && flags & RTF_REJECT == 0 && f[9] != "lo")
                .then(|| (metric, f[9].to_string()))
        })
        .min()
        .map(|(_, i)| i)
}

/// Link states over time: [`Monitor::poll`] recomputes them and says whether any changed.
pub struct Monitor {
    links: Vec<LinkConfig>,
    sources: Sources,
    current: Vec<LinkStatus>,
}

impl Monitor {
    pub fn new(links: Vec<LinkConfig>, sources: Sources) -> Self {
        Self {
            links,
            sources,
            current: Vec::new(),
        }
    }

    pub fn current(&self) -> Vec<LinkStatus> {
        self.current.clone()
    }

    /// Recomputes every link's state at `now_ms`, `reach` telling which links reached the core
    /// in their last check interval (absent: not checked yet). Returns true when a link's state
    /// changed (or at the first poll).
    pub fn poll(&mut self, now_ms: i64, reach: &HashMap<LinkId, bool>) -> bool {
        let route = self.sources.default_route_interface();
        let mut changed = self.current.is_empty() && !self.links.is_empty();
        let mut next = Vec::with_capacity(self.links.len());
        for l in &self.links {
            let iface = l
                .interface
                .as_deref()
                .map(|i| self.sources.interface(i).unwrap_or_default());
            let if_up = iface.is_none_or(|i| i.up);
            let up = if_up && reach.get(&l.id).copied().unwrap_or(true);
            // Without an interface to match routes against, a link is assumed to carry the
            // traffic when it is the primary and up.
            let active = up
                && match (&l.interface, &route) {
                    (Some(i), Some(r)) => i == r,
                    (Some(_), None) => false,
                    (None, _) => l.role == rie_proto::LinkRole::Primary,
                };
            let prev = self.current.iter().find(|p| p.link == l.id);
            let changed_ms = match prev {
                Some(p) if p.up == up && p.active == active => p.changed_ms,
                _ => {
                    changed = true;
                    Some(now_ms)
                }
            };
            next.push(LinkStatus {
                link: l.id.clone(),
                up,
                active,
                changed_ms,
            });
        }
        self.current = next;
        changed
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rie_proto::LinkRole;
    use std::path::Path;

    fn write_fixture(root: &Path, rel: &str, content: &str) -> std::io::Result<()> {
        let p = root.join(rel);
        if let Some(d) = p.parent() {
            std::fs::create_dir_all(d)?;
        }
        std::fs::write(p, content)
    }

    const ROUTE: &str =
        "Iface\tDestination\tGateway \tFlags\tRefCnt\tUse\tMetric\tMask\t\tMTU\tWindow\tIRTT\n\
eth1\t00000000\t0100010A\t0003\t0\t0\t10\t00000000\t0\t0\t0\n\
eth2\t00000000\t0100020A\t0003\t0\t0\t20\t00000000\t0\t0\t0\n\
eth1\t0000010A\t00000000\t0001\t0\t0\t0\t00FFFFFF\t0\t0\t0\n";

    #[test]
    fn the_lowest_metric_usable_default_route_wins() {
        assert_eq!(parse_route_v4(ROUTE).as_deref(), Some("eth1"));
        let only_backup: String = ROUTE
            .lines()
            .filter(|l| !l.starts_with("eth1\t00000000"))
            .collect::<Vec<_>>()
            .join("\n");
        assert_eq!(parse_route_v4(&only_backup).as_deref(), Some("eth2"));
        assert_eq!(parse_route_v4("Iface\n"), None);
        let v6 = "00000000000000000000000000000000 00 00000000000000000000000000000000 00 fe800000000000000000000000000001 00000400 00000001 00000000 00000003 eth2\n";
        assert_eq!(parse_route_v6(v6).as_deref(), Some("eth2"));
    }

    fn fixture(dir: &Path, p_up: &str, route: &str) -> Sources {
        write_fixture(dir, "sys/eth1/operstate", p_up).unwrap();
        write_fixture(dir, "sys/eth1/statistics/rx_bytes", "1234\n").unwrap();
        write_fixture(dir, "sys/eth2/operstate", "up\n").unwrap();
        write_fixture(dir, "proc/route", route).unwrap();
        Sources {
            sys_class_net: dir.join("sys"),
            proc_net: dir.join("proc"),
        }
    }

    fn links() -> Vec<LinkConfig> {
        let l = |id: &str, role, i: &str| LinkConfig {
            id: LinkId::new(id).unwrap(),
            role,
            interface: Some(i.into()),
            source: None,
        };
        vec![
            l("P", LinkRole::Primary, "eth1"),
            l("B", LinkRole::Backup, "eth2"),
        ]
    }

    fn states(m: &Monitor) -> Vec<(bool, bool, Option<i64>)> {
        m.current()
            .iter()
            .map(|s| (s.up, s.active, s.changed_ms))
            .collect()
    }

    #[test]
    fn failover_and_failback_are_stamped_when_seen() {
        let dir = tempfile::tempdir().unwrap();
        let src = fixture(dir.path(), "up\n", ROUTE);
        assert_eq!(src.interface("eth1").unwrap().rx_bytes, 1234);
        let mut m = Monitor::new(links(), src);
        let none = HashMap::new();
        assert!(m.poll(1_000, &none));
        assert_eq!(
            states(&m),
            [(true, true, Some(1_000)), (true, false, Some(1_000))]
        );
        assert!(!m.poll(2_000, &none));
        // The primary's interface goes down and the kernel drops its default route.
        let backup_route: String = ROUTE
            .lines()
            .filter(|l| !l.starts_with("eth1"))
            .map(|l| format!("{l}\n"))
            .collect();
        fixture(dir.path(), "down\n", &backup_route);
        assert!(m.poll(3_000, &none));
        assert_eq!(
            states(&m),
            [(false, false, Some(3_000)), (true, true, Some(3_000))]
        );
        // The interface is back but the checks say the primary does not reach the core.
        fixture(dir.path(), "up\n", ROUTE);
        let reach = HashMap::from([(LinkId::new("P").unwrap(), false)]);
        assert!(m.poll(4_000, &reach));
        assert_eq!(
            states(&m),
            [(false, false, Some(3_000)), (true, false, Some(4_000))]
        );
        assert!(m.poll(5_000, &none));
        assert_eq!(
            states(&m),
            [(true, true, Some(5_000)), (true, false, Some(4_000))]
        );
    }
}
