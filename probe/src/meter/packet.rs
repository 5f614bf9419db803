//! Frame parsing for the flow meter (etherparse, lax mode: a capture truncated by its snap
//! length still yields its IP header, and bytes are counted from the IP header's length field,
//! the unit NetFlow and softflowd use).

use std::net::IpAddr;

use etherparse::{EtherType, LaxNetSlice, LaxSlicedPacket, TransportSlice};
use rie_flow::flow_table::{FlowKey, PacketMeta};

/// Parses an Ethernet frame (802.1Q / QinQ tags included). `None` for frames that carry no IP
/// packet (ARP, LLDP...).
pub fn from_ethernet(frame: &[u8]) -> Option<PacketMeta> {
    LaxSlicedPacket::from_ethernet(frame)
        .ok()
        .and_then(|p| meta(&p))
}

/// Parses a link-layer payload whose EtherType is known (Linux cooked capture, raw IP).
pub fn from_ether_type(ether_type: u16, payload: &[u8]) -> Option<PacketMeta> {
    meta(&LaxSlicedPacket::from_ether_type(
        EtherType(ether_type),
        payload,
    ))
}

fn meta(p: &LaxSlicedPacket<'_>) -> Option<PacketMeta> {
    let (src, dst, ip_len, proto) = match p.net.as_ref()? {
        LaxNetSlice::Ipv4(v4) => {
            let h = v4.header();
            (
                IpAddr::V4(h.source_addr()),
                IpAddr::V4(h.destination_addr()),
                u32::from(h.total_len()),
                v4.payload().ip_number.0,
            )
        }
        LaxNetSlice::Ipv6(v6) => {
            let h = v6.header();
            (
                IpAddr::V6(h.source_addr()),
                IpAddr::V6(h.destination_addr()),
                u32::from(h.payload_length()) + 40,
                v6.payload().ip_number.0,
            )
        }
        LaxNetSlice::Arp(_) => return None,
    };
    let (sport, dport, fin_or_rst) = match &p.transport {
        Some(TransportSlice::Tcp(t)) => (t.source_port(), t.destination_port(), t.fin() || t.rst()),
        Some(TransportSlice::Udp(u)) => (u.source_port(), u.destination_port(), false),
        Some(TransportSlice::Icmpv4(i)) => (
            0,
            u16::from(i.type_u8()) << 8 | u16::from(i.code_u8()),
            false,
        ),
        Some(TransportSlice::Icmpv6(i)) => (
            0,
            u16::from(i.type_u8()) << 8 | u16::from(i.code_u8()),
            false,
        ),
        // Non-first fragments and other protocols: no ports.
        None => (0, 0, false),
    };
    Some(PacketMeta {
        key: FlowKey {
            src,
            dst,
            sport,
            dport,
            proto,
        },
        ip_len,
        fin_or_rst,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use etherparse::PacketBuilder;

    fn udp_frame(vlan: bool, payload: usize) -> Vec<u8> {
        let b = PacketBuilder::ethernet2([1; 6], [2; 6]);
        let b = if vlan {
            b.single_vlan(etherparse::VlanId::try_new(100).unwrap())
                .ipv4([10, 0, 0, 1], [10, 0, 0, 2], 64)
        } else {
            b.ipv4([10, 0, 0, 1], [10, 0, 0, 2], 64)
        };
        let b = b.udp(5353, 53);
        let mut out = Vec::new();
        b.write(&mut out, &vec![0u8; payload]).unwrap();
        out
    }

    #[test]
    fn ipv4_udp_with_and_without_vlan_tag() {
        for vlan in [false, true] {
            let m = from_ethernet(&udp_frame(vlan, 100)).unwrap();
            assert_eq!(m.ip_len, 20 + 8 + 100);
            assert_eq!((m.key.proto, m.key.sport, m.key.dport), (17, 5353, 53));
        }
    }

    #[test]
    fn truncated_capture_counts_the_ip_length() {
        let frame = udp_frame(false, 1400);
        let m = from_ethernet(&frame[..64]).unwrap();
        assert_eq!(m.ip_len, 20 + 8 + 1400);
        assert_eq!(m.key.dport, 53);
    }

    #[test]
    fn ipv6_tcp_fin_and_icmp_echo() {
        let mut out = Vec::new();
        PacketBuilder::ethernet2([1; 6], [2; 6])
            .ipv6([0x20; 16], [0x21; 16], 64)
            .tcp(40000, 443, 1, 1000)
            .fin()
            .write(&mut out, &[0u8; 10])
            .unwrap();
        let m = from_ethernet(&out).unwrap();
        assert_eq!(
            (m.ip_len, m.key.proto, m.fin_or_rst),
            (40 + 20 + 10, 6, true)
        );
        let mut out = Vec::new();
        PacketBuilder::ipv4([10, 0, 0, 1], [10, 0, 0, 2], 64)
            .icmpv4_echo_request(1, 1)
            .write(&mut out, &[0u8; 56])
            .unwrap();
        let m = from_ether_type(0x0800, &out).unwrap();
        assert_eq!((m.ip_len, m.key.proto, m.key.dport), (84, 1, 8 << 8));
    }

    #[test]
    fn arp_and_garbage_are_not_ip() {
        assert_eq!(from_ethernet(&[0u8; 10]), None);
        let mut arp = vec![0xffu8; 12];
        arp.extend_from_slice(&[0x08, 0x06]);
        arp.extend_from_slice(&[0u8; 28]);
        assert_eq!(from_ethernet(&arp), None);
    }
}
