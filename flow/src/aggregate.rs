//! From flow records to what a batch carries: per minute (of the flow slice's first packet),
//! protocol, direction and service-port class ([`PortClass`]), the flows, packets and bytes. Direction is decided against the
//! site's own prefixes: from inside to outside is outbound, the reverse inbound, anything else
//! (transit, or no prefixes configured) unknown.
//!
//! Alongside, per minute, the bytes and packets of each remote prefix (IPv4 /24, IPv6 /48: the
//! side outside the site's prefixes), of which [`Aggregator::take_top_talkers`] keeps the top N
//! by bytes. Traffic whose direction is unknown has no remote side and is in no talker.
//!
//! [`Talkers`] is that table on its own: the capture aggregator, the probe's NetFlow relay and
//! the collector's NetFlow input all count top talkers through it, so that the three inputs
//! share one definition (remote side, prefix length, top N per minute, tie order).

use std::collections::{BTreeMap, HashMap};
use std::net::IpAddr;

use ipnet::IpNet;
use rie_proto::{Direction, FlowAggregate, PortClass, TopTalker};

use crate::flow_table::{FlowKey, FlowRecord};

/// The site's own address ranges.
#[derive(Debug, Clone, Default)]
pub struct Prefixes(pub Vec<IpNet>);

impl Prefixes {
    fn inside(&self, ip: &std::net::IpAddr) -> bool {
        self.0.iter().any(|n| n.contains(ip))
    }

    /// Direction of traffic from `src` to `dst` (unknown when either is missing).
    pub fn direction_of(
        &self,
        src: Option<&std::net::IpAddr>,
        dst: Option<&std::net::IpAddr>,
    ) -> Direction {
        direction_in(&self.0, src, dst)
    }

    pub fn direction(&self, k: &FlowKey) -> Direction {
        match (self.inside(&k.src), self.inside(&k.dst)) {
            (true, false) => Direction::Outbound,
            (false, true) => Direction::Inbound,
            _ => Direction::Unknown,
        }
    }
}

/// Direction of traffic from `src` to `dst` against a site's `prefixes`: source inside and
/// destination outside is outbound, the reverse inbound; both inside (internal traffic), both
/// outside (transit), an address missing or no prefixes at all is unknown. A linear scan: a
/// site has a handful of prefixes, fewer than a hash lookup would cost.
pub fn direction_in(prefixes: &[IpNet], src: Option<&IpAddr>, dst: Option<&IpAddr>) -> Direction {
    let inside = |a: &IpAddr| prefixes.iter().any(|n| n.contains(a));
    match (src.map(inside), dst.map(inside)) {
        (Some(true), Some(false)) => Direction::Outbound,
        (Some(false), Some(true)) => Direction::Inbound,
        _ => Direction::Unknown,
    }
}

/// Bytes and packets per (minute, remote prefix), of which [`Talkers::take_top`] keeps the top
/// N of each minute by bytes.
#[derive(Debug, Default, Clone)]
pub struct Talkers {
    sums: HashMap<(i64, IpNet), (u64, u64)>,
    /// How many talkers per minute are kept (0: none are tracked).
    top_n: usize,
}

impl Talkers {
    pub fn new(top_n: usize) -> Self {
        Self {
            sums: HashMap::new(),
            top_n,
        }
    }

    pub fn set_top_n(&mut self, n: usize) {
        self.top_n = n;
    }

    pub fn is_empty(&self) -> bool {
        self.sums.is_empty()
    }

    /// Counts a flow of `minute` under its remote prefix: the destination's when outbound, the
    /// source's when inbound; a flow of unknown direction has no remote side and is not counted.
    pub fn add(
        &mut self,
        minute: i64,
        direction: Direction,
        src: Option<IpAddr>,
        dst: Option<IpAddr>,
        bytes: u64,
        packets: u64,
    ) {
        if self.top_n == 0 {
            return;
        }
        let remote = match direction {
            Direction::Outbound => dst,
            Direction::Inbound => src,
            Direction::Unknown => None,
        };
        if let Some(ip) = remote {
            let t = self.sums.entry((minute, talker_prefix(ip))).or_default();
            t.0 = t.0.saturating_add(bytes);
            t.1 = t.1.saturating_add(packets);
        }
    }

    /// Puts back a talker taken earlier (its commit failed), summing with what came since.
    pub fn restore(&mut self, t: &TopTalker) {
        if let Ok(net) = t.prefix.parse::<IpNet>() {
            let e = self.sums.entry((t.minute, net.trunc())).or_default();
            e.0 = e.0.saturating_add(t.bytes);
            e.1 = e.1.saturating_add(t.packets);
        }
    }

    /// The top N remote prefixes of each minute summed so far, by bytes (ties: by prefix), then
    /// starts again empty. The others are dropped: they are the "other" part of the totals.
    pub fn take_top(&mut self) -> Vec<TopTalker> {
        let mut by_minute: BTreeMap<i64, Vec<(IpNet, u64, u64)>> = BTreeMap::new();
        for ((minute, net), (bytes, packets)) in self.sums.drain() {
            by_minute
                .entry(minute)
                .or_default()
                .push((net, bytes, packets));
        }
        let mut out = Vec::new();
        for (minute, mut v) in by_minute {
            v.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(&b.0)));
            out.extend(
                v.into_iter()
                    .take(self.top_n)
                    .map(|(net, bytes, packets)| TopTalker {
                        minute,
                        prefix: net.to_string(),
                        bytes,
                        packets,
                    }),
            );
        }
        out
    }
}

/// Minute, protocol, direction, port class.
type SumKey = (i64, u8, Direction, PortClass);

/// Sums flow records into minute aggregates until taken.
#[derive(Debug, Default)]
pub struct Aggregator {
    prefixes: Prefixes,
    sums: BTreeMap<SumKey, (u64, u64, u64)>,
    /// Bytes and packets per (minute, remote prefix).
    talkers: Talkers,
}

/// The remote prefix a talker is counted under: /24 for IPv4, /48 for IPv6.
pub fn talker_prefix(ip: IpAddr) -> IpNet {
    let len = if ip.is_ipv4() { 24 } else { 48 };
    // The lengths are valid for their family, so the fallback is never taken.
    IpNet::new(ip, len).map_or(IpNet::from(ip), |n| n.trunc())
}

impl Aggregator {
    pub fn new(prefixes: Prefixes) -> Self {
        Self {
            prefixes,
            sums: BTreeMap::new(),
            talkers: Talkers::new(0),
        }
    }

    /// Tracks remote prefixes and keeps the top `n` per minute (`[meter] top_talkers`).
    pub fn with_top_talkers(mut self, n: usize) -> Self {
        self.talkers.set_top_n(n);
        self
    }

    pub fn set_top_talkers(&mut self, n: usize) {
        self.talkers.set_top_n(n);
    }

    pub fn add(&mut self, r: &FlowRecord) {
        let minute = (r.first_ns / 1_000_000_000) as i64 / 60 * 60;
        let dir = self.prefixes.direction(&r.key);
        let class = PortClass::classify(r.key.proto, r.key.sport, r.key.dport);
        let e = self
            .sums
            .entry((minute, r.key.proto, dir, class))
            .or_default();
        e.0 += u64::from(!r.continuation);
        e.1 += r.packets;
        e.2 += r.bytes;
        self.talkers.add(
            minute,
            dir,
            Some(r.key.src),
            Some(r.key.dst),
            r.bytes,
            r.packets,
        );
    }

    /// The top N remote prefixes of each minute summed so far, by bytes (ties: by prefix), then
    /// starts again empty. The others are dropped: they are the "other" part of the totals.
    pub fn take_top_talkers(&mut self) -> Vec<TopTalker> {
        self.talkers.take_top()
    }

    pub fn is_empty(&self) -> bool {
        self.sums.is_empty()
    }

    /// Everything summed so far, as batch records; the aggregator starts again empty.
    pub fn take(&mut self) -> Vec<FlowAggregate> {
        std::mem::take(&mut self.sums)
            .into_iter()
            .map(
                |((minute, protocol, direction, port_class), (flows, packets, bytes))| {
                    FlowAggregate {
                        minute,
                        protocol,
                        direction,
                        exporter: None,
                        flows,
                        packets,
                        bytes,
                        sampling_rate: 1,
                        port_class,
                    }
                },
            )
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::flow_table::EndReason;
    use std::net::IpAddr;

    #[test]
    fn direction_of_relayed_addresses() {
        let p = Prefixes(vec!["10.1.0.0/16".parse().unwrap()]);
        let a: IpAddr = "10.1.0.5".parse().unwrap();
        let b: IpAddr = "192.0.2.9".parse().unwrap();
        assert_eq!(p.direction_of(Some(&a), Some(&b)), Direction::Outbound);
        assert_eq!(p.direction_of(Some(&b), Some(&a)), Direction::Inbound);
        assert_eq!(p.direction_of(Some(&a), Some(&a)), Direction::Unknown);
        assert_eq!(p.direction_of(None, Some(&a)), Direction::Unknown);
    }

    #[test]
    fn direction_rule_for_every_case() {
        let p: Vec<IpNet> = vec![
            "10.42.0.0/16".parse().unwrap(),
            "fd52:4945:2a::/48".parse().unwrap(),
        ];
        let ip = |s: &str| s.parse::<IpAddr>().unwrap();
        let d = |src: &str, dst: &str| direction_in(&p, Some(&ip(src)), Some(&ip(dst)));
        assert_eq!(d("10.42.3.4", "192.0.2.1"), Direction::Outbound);
        assert_eq!(d("192.0.2.1", "10.42.3.4"), Direction::Inbound);
        assert_eq!(d("fd52:4945:2a:1::5", "2001:db8::1"), Direction::Outbound);
        assert_eq!(d("2001:db8::1", "fd52:4945:2a::9"), Direction::Inbound);
        // Both inside (internal), both outside (transit): unknown.
        assert_eq!(d("10.42.3.4", "10.42.9.9"), Direction::Unknown);
        assert_eq!(d("192.0.2.1", "198.51.100.1"), Direction::Unknown);
        // Edges of the range, and the other family never matches.
        assert_eq!(d("10.42.255.255", "10.43.0.0"), Direction::Outbound);
        assert_eq!(d("10.41.255.255", "10.42.0.0"), Direction::Inbound);
        assert_eq!(d("::ffff:10.42.0.1", "2001:db8::1"), Direction::Unknown);
        // A record without an address, or a site without prefixes.
        assert_eq!(
            direction_in(&p, None, Some(&ip("10.42.0.1"))),
            Direction::Unknown
        );
        assert_eq!(
            direction_in(&[], Some(&ip("10.42.0.1")), Some(&ip("192.0.2.1"))),
            Direction::Unknown
        );
    }

    #[test]
    fn talkers_table_restore_and_limit() {
        let ip = |s: &str| Some(s.parse::<IpAddr>().unwrap());
        let mut t = Talkers::new(1);
        t.add(
            60,
            Direction::Outbound,
            ip("10.0.0.1"),
            ip("192.0.2.7"),
            500,
            5,
        );
        t.add(
            60,
            Direction::Inbound,
            ip("192.0.2.200"),
            ip("10.0.0.1"),
            300,
            3,
        );
        t.add(
            60,
            Direction::Inbound,
            ip("198.51.100.1"),
            ip("10.0.0.1"),
            700,
            7,
        );
        t.add(
            60,
            Direction::Unknown,
            ip("203.0.113.1"),
            ip("10.0.0.1"),
            9_999,
            9,
        );
        let top = t.take_top();
        // 192.0.2.0/24: 800 bytes (both directions) beats 198.51.100.0/24's 700; N = 1.
        assert_eq!(top.len(), 1);
        assert_eq!(
            (top[0].prefix.as_str(), top[0].bytes, top[0].packets),
            ("192.0.2.0/24", 800, 8)
        );
        assert!(t.is_empty());
        t.restore(&top[0]);
        t.add(
            60,
            Direction::Outbound,
            ip("10.0.0.1"),
            ip("192.0.2.1"),
            1,
            1,
        );
        let again = t.take_top();
        assert_eq!((again[0].bytes, again[0].packets), (801, 9));
        // Not tracked at all with N = 0.
        let mut none = Talkers::new(0);
        none.add(
            60,
            Direction::Outbound,
            ip("10.0.0.1"),
            ip("192.0.2.7"),
            500,
            5,
        );
        assert!(none.is_empty());
    }

    fn rec(src: &str, dst: &str, first_s: u64, packets: u64, continuation: bool) -> FlowRecord {
        FlowRecord {
            key: FlowKey {
                src: src.parse::<IpAddr>().unwrap(),
                dst: dst.parse::<IpAddr>().unwrap(),
                sport: 1,
                dport: 2,
                proto: 6,
            },
            first_ns: first_s * 1_000_000_000,
            last_ns: first_s * 1_000_000_000,
            packets,
            bytes: packets * 100,
            continuation,
            reason: EndReason::Inactive,
        }
    }

    #[test]
    fn direction_minute_and_slices() {
        let mut a = Aggregator::new(Prefixes(vec!["10.1.0.0/16".parse().unwrap()]));
        a.add(&rec("10.1.0.5", "8.8.8.8", 125, 3, false));
        a.add(&rec("10.1.0.5", "8.8.8.8", 170, 2, true));
        a.add(&rec("8.8.8.8", "10.1.0.5", 130, 4, false));
        a.add(&rec("10.2.0.1", "10.3.0.1", 130, 1, false));
        let out = a.take();
        let find = |d: Direction| out.iter().find(|f| f.direction == d).unwrap();
        let o = find(Direction::Outbound);
        // The continuation slice adds packets and bytes, not a flow.
        assert_eq!((o.minute, o.flows, o.packets, o.bytes), (120, 1, 5, 500));
        assert_eq!(find(Direction::Inbound).flows, 1);
        assert_eq!(find(Direction::Unknown).packets, 1);
        assert!(a.is_empty());
    }

    #[test]
    fn port_classes_split_aggregates_and_keep_the_sums() {
        let mut a = Aggregator::new(Prefixes(vec!["10.1.0.0/16".parse().unwrap()]));
        let mut web = rec("10.1.0.5", "8.8.8.8", 125, 3, false);
        web.key.dport = 443;
        let mut dns = rec("10.1.0.5", "8.8.8.8", 125, 2, false);
        (dns.key.proto, dns.key.sport, dns.key.dport) = (17, 40_000, 53);
        let mut icmp = rec("10.1.0.5", "8.8.8.8", 125, 1, false);
        (icmp.key.proto, icmp.key.sport, icmp.key.dport) = (1, 0, 0);
        for r in [&web, &dns, &icmp] {
            a.add(r);
        }
        let mut got: Vec<_> = a
            .take()
            .into_iter()
            .map(|f| (f.port_class, f.protocol, f.flows, f.packets, f.bytes))
            .collect();
        got.sort();
        assert_eq!(
            got,
            vec![
                (PortClass::Web, 6, 1, 3, 300),
                (PortClass::Dns, 17, 1, 2, 200),
                (PortClass::None, 1, 1, 1, 100),
            ]
        );
    }

    #[test]
    fn top_talkers_per_minute_exact() {
        let mut a =
            Aggregator::new(Prefixes(vec!["10.1.0.0/16".parse().unwrap()])).with_top_talkers(2);
        // Minute 120: 8.8.8.0/24 gets 3+4 packets (out and in), 192.0.2.0/24 5, 198.51.100.0/24 1.
        a.add(&rec("10.1.0.5", "8.8.8.8", 125, 3, false));
        a.add(&rec("8.8.8.9", "10.1.0.5", 130, 4, false));
        a.add(&rec("10.1.0.5", "192.0.2.1", 130, 5, false));
        a.add(&rec("10.1.0.5", "198.51.100.7", 130, 1, false));
        // Transit: no remote side.
        a.add(&rec("10.2.0.1", "10.3.0.1", 130, 50, false));
        // Minute 180, IPv6: /48.
        a.add(&rec("2001:db8:1:2::1", "10.1.0.5", 185, 2, false));
        let got: Vec<_> = a
            .take_top_talkers()
            .into_iter()
            .map(|t| (t.minute, t.prefix, t.bytes, t.packets))
            .collect();
        assert_eq!(
            got,
            vec![
                (120, "8.8.8.0/24".to_string(), 700, 7),
                (120, "192.0.2.0/24".to_string(), 500, 5),
                (180, "2001:db8:1::/48".to_string(), 200, 2),
            ]
        );
        assert!(a.take_top_talkers().is_empty());
        // Not tracked unless asked for.
        let mut b = Aggregator::new(Prefixes(vec!["10.1.0.0/16".parse().unwrap()]));
        b.add(&rec("10.1.0.5", "8.8.8.8", 125, 3, false));
        assert!(b.take_top_talkers().is_empty());
    }
}
