//! Service-port classes: a small, fixed classification of a flow's service port, so that
//! traffic can be broken down by kind of service (web, DNS, mail...) without shipping every
//! port. The table below is the whole definition (also in docs/protocol.md); changing it
//! changes what dashboards show, so it is versioned with the protocol.
//!
//! The service port of a flow is the well-known side: the port found in the table below if only
//! one of the two is (checked destination first), else the lower of the two ports. Protocols
//! without ports (ICMP, GRE, ESP...) have class `none`. Aggregates from a probe that predates
//! the field decode as `unknown`.

use serde::{Deserialize, Serialize};

/// Kind of service a flow's service port belongs to.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize, Default,
)]
#[serde(rename_all = "lowercase")]
pub enum PortClass {
    /// 80, 443, 8080, 8443 (TCP or UDP: QUIC on 443).
    Web,
    /// 53, 853.
    Dns,
    /// 25, 110, 143, 465, 587, 993, 995.
    Mail,
    /// 139, 445, 2049.
    File,
    /// 88, 389, 636, 3268, 3269.
    Directory,
    /// 22, 3389.
    Remote,
    /// SIP 5060/5061 and the RTP range 16384–32767 (UDP).
    Voip,
    /// A TCP/UDP/SCTP port outside the classes above.
    Other,
    /// The protocol has no ports (ICMP, ICMPv6, GRE, ESP...).
    None,
    /// Not classified: aggregates from probes that predate port classes, or a class added by
    /// a newer probe.
    #[default]
    #[serde(other)]
    Unknown,
}

impl PortClass {
    pub const ALL: [PortClass; 10] = [
        PortClass::Web,
        PortClass::Dns,
        PortClass::Mail,
        PortClass::File,
        PortClass::Directory,
        PortClass::Remote,
        PortClass::Voip,
        PortClass::Other,
        PortClass::None,
        PortClass::Unknown,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            PortClass::Web => "web",
            PortClass::Dns => "dns",
            PortClass::Mail => "mail",
            PortClass::File => "file",
            PortClass::Directory => "directory",
            PortClass::Remote => "remote",
            PortClass::Voip => "voip",
            PortClass::Other => "other",
            PortClass::None => "none",
            PortClass::Unknown => "unknown",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|c| c.as_str() == s)
    }

    /// Class of one port number, `None` when it is in no named class.
    fn of_port(port: u16, udp: bool) -> Option<Self> {
        Some(match port {
            80 | 443 | 8080 | 8443 => PortClass::Web,
            53 | 853 => PortClass::Dns,
            25 | 110 | 143 | 465 | 587 | 993 | 995 => PortClass::Mail,
            139 | 445 | 2049 => PortClass::File,
            88 | 389 | 636 | 3268 | 3269 => PortClass::Directory,
            22 | 3389 => PortClass::Remote,
            5060 | 5061 => PortClass::Voip,
            16384..=32767 if udp => PortClass::Voip,
            _ => return None,
        })
    }

    /// Classifies a flow by protocol number and its two ports.
    pub fn classify(protocol: u8, src_port: u16, dst_port: u16) -> Self {
        // TCP, UDP, SCTP, UDP-Lite carry ports; anything else has none.
        if !matches!(protocol, 6 | 17 | 132 | 136) {
            return PortClass::None;
        }
        let udp = protocol == 17;
        // A named port wins over the lower-port rule, so a client on a low ephemeral port
        // talking to 8080 still counts as web. RTP is only considered when neither side is a
        // named service, since ephemeral client ports fall in its range.
        let named = |p: u16| Self::of_port(p, false);
        if let Some(c) = named(dst_port).or_else(|| named(src_port)) {
            return c;
        }
        let service = src_port.min(dst_port);
        Self::of_port(service, udp).unwrap_or(PortClass::Other)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classes_of_common_flows() {
        use PortClass::*;
        let cases: [(u8, u16, u16, PortClass); 16] = [
            (6, 51000, 443, Web),
            (6, 443, 51000, Web),
            (17, 51000, 443, Web),
            (6, 1024, 8080, Web),
            (17, 40000, 53, Dns),
            (6, 33000, 587, Mail),
            (6, 49152, 445, File),
            (17, 50000, 88, Directory),
            (6, 2222, 22, Remote),
            (17, 5060, 5060, Voip),
            (17, 20000, 20002, Voip),
            // RTP range only for UDP and only when no side is named.
            (6, 20000, 20002, Other),
            (17, 20000, 53, Dns),
            (6, 40000, 5201, Other),
            (1, 0, 0, None),
            (58, 0, 0, None),
        ];
        for (proto, s, d, want) in cases {
            assert_eq!(PortClass::classify(proto, s, d), want, "{proto} {s}->{d}");
        }
    }

    #[test]
    fn names_round_trip_and_unknown_names_decode_as_unknown() {
        for c in PortClass::ALL {
            assert_eq!(PortClass::parse(c.as_str()), Some(c));
            let json = serde_json::to_string(&c).unwrap();
            assert_eq!(json, format!("\"{}\"", c.as_str()));
        }
        let later: PortClass = serde_json::from_str("\"gaming\"").unwrap();
        assert_eq!(later, PortClass::Unknown);
    }
}
