//! Kernel drop counters of the capture's own AF_PACKET sockets.
//!
//! The kernel counts, per packet socket, the frames it had to throw away because the socket's
//! receive buffer was full (the capture thread did not read fast enough). `getsockopt
//! (PACKET_STATISTICS)` would give them, but `pnet` keeps its socket to itself and the workspace
//! forbids `unsafe`; so the probe asks the kernel's socket diagnostics instead (`sock_diag`
//! netlink, `packet_diag`, what `ss -0 -m` shows as `d<N>`): the same counter (`sk_drops`,
//! incremented next to `tp_drops` in `packet_rcv`), cumulative rather than reset on read.
//!
//! The capture sockets are found by inode: the probe records the inode of each socket it opens
//! for capture ([`socket_inode`]) and keeps only those in the dump, so other programs' packet
//! sockets on the router (tcpdump, a DHCP client) never count.

use std::collections::HashMap;
use std::io::Read;
use std::os::fd::AsRawFd;
use std::time::Duration;

use socket2::{Domain, Protocol, Socket, Type};

const AF_NETLINK: i32 = 16;
const AF_PACKET: u8 = 17;
const NETLINK_SOCK_DIAG: i32 = 4;
const SOCK_DIAG_BY_FAMILY: u16 = 20;
const NLM_F_REQUEST: u16 = 0x1;
const NLM_F_DUMP: u16 = 0x300;
const NLMSG_ERROR: u16 = 2;
const NLMSG_DONE: u16 = 3;
const PACKET_SHOW_MEMINFO: u32 = 0x10;
const PACKET_DIAG_MEMINFO: u16 = 6;
/// Index of `SK_MEMINFO_DROPS` in the `PACKET_DIAG_MEMINFO` array of u32.
const SK_MEMINFO_DROPS: usize = 8;

#[derive(Debug, thiserror::Error)]
pub enum DiagError {
    #[error("socket diagnostics (sock_diag netlink): {0}")]
    Io(#[from] std::io::Error),
    #[error("the kernel refused the packet socket dump (errno {0}); it may lack CONFIG_PACKET_DIAG (modprobe af_packet_diag)")]
    Refused(i32),
    #[error("unexpected sock_diag answer: {0}")]
    Malformed(&'static str),
}

/// Inode of an open socket of this process, as `/proc/self/fd` shows it (`socket:[N]`).
pub fn socket_inode(fd: &impl AsRawFd) -> Option<u32> {
    let link = std::fs::read_link(format!("/proc/self/fd/{}", fd.as_raw_fd())).ok()?;
    link.to_str()?
        .strip_prefix("socket:[")?
        .strip_suffix(']')?
        .parse()
        .ok()
}

/// Kernel drop counters (`sk_drops`) of every packet socket of this network namespace, by
/// socket inode.
///
/// # Errors
/// [`DiagError`] when netlink cannot be used or the kernel has no `packet_diag`.
pub fn packet_socket_drops() -> Result<HashMap<u32, u32>, DiagError> {
    let sock = Socket::new(
        Domain::from(AF_NETLINK),
        Type::RAW,
        Some(Protocol::from(NETLINK_SOCK_DIAG)),
    )?;
    sock.set_read_timeout(Some(Duration::from_secs(1)))?;
    sock.send(&dump_request())?;
    let mut out = HashMap::new();
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        let n = (&sock).read(&mut buf)?;
        if n == 0 {
            return Err(DiagError::Malformed("empty read"));
        }
        if parse_messages(&buf[..n], &mut out)? {
            return Ok(out);
        }
    }
}

/// `nlmsghdr` + `packet_diag_req` asking for every packet socket with its memory info.
fn dump_request() -> Vec<u8> {
    let mut m = Vec::with_capacity(36);
    m.extend_from_slice(&36u32.to_ne_bytes());
    m.extend_from_slice(&SOCK_DIAG_BY_FAMILY.to_ne_bytes());
    m.extend_from_slice(&(NLM_F_REQUEST | NLM_F_DUMP).to_ne_bytes());
    m.extend_from_slice(&1u32.to_ne_bytes()); // sequence
    m.extend_from_slice(&0u32.to_ne_bytes()); // port id: the kernel fills it
    m.extend_from_slice(&[AF_PACKET, 0, 0, 0]); // family, protocol, pad
    m.extend_from_slice(&0u32.to_ne_bytes()); // inode: all
    m.extend_from_slice(&PACKET_SHOW_MEMINFO.to_ne_bytes());
    m.extend_from_slice(&[0xff; 8]); // cookie: none
    m
}

fn u16_at(b: &[u8], at: usize) -> Option<u16> {
    Some(u16::from_ne_bytes(b.get(at..at + 2)?.try_into().ok()?))
}

fn u32_at(b: &[u8], at: usize) -> Option<u32> {
    Some(u32::from_ne_bytes(b.get(at..at + 4)?.try_into().ok()?))
}

const fn align4(n: usize) -> usize {
    (n + 3) & !3
}

/// Parses one datagram of netlink messages into `out`; true once the dump is complete.
fn parse_messages(mut b: &[u8], out: &mut HashMap<u32, u32>) -> Result<bool, DiagError> {
    while b.len() >= 16 {
        let len = u32_at(b, 0).ok_or(DiagError::Malformed("header"))? as usize;
        let kind = u16_at(b, 4).ok_or(DiagError::Malformed("header"))?;
        if len < 16 || len > b.len() {
            return Err(DiagError::Malformed("message length"));
        }
        let body = &b[16..len];
        match kind {
            NLMSG_DONE => return Ok(true),
            NLMSG_ERROR => {
                let errno = u32_at(body, 0).ok_or(DiagError::Malformed("error"))? as i32;
                return Err(DiagError::Refused(-errno));
            }
            SOCK_DIAG_BY_FAMILY => {
                // packet_diag_msg: family, type, num (u16), inode (u32), cookie (2 × u32).
                let inode = u32_at(body, 4).ok_or(DiagError::Malformed("packet_diag_msg"))?;
                let mut attrs = body.get(16..).unwrap_or_default();
                while attrs.len() >= 4 {
                    let alen = usize::from(u16_at(attrs, 0).unwrap_or(0));
                    let atype = u16_at(attrs, 2).unwrap_or(0);
                    if alen < 4 || alen > attrs.len() {
                        return Err(DiagError::Malformed("attribute length"));
                    }
                    if atype == PACKET_DIAG_MEMINFO {
                        if let Some(drops) = u32_at(&attrs[4..alen], SK_MEMINFO_DROPS * 4) {
                            out.insert(inode, drops);
                        }
                    }
                    attrs = attrs.get(align4(alen)..).unwrap_or_default();
                }
            }
            _ => {}
        }
        b = b.get(align4(len)..).unwrap_or_default();
    }
    Ok(false)
}

/// Cumulative drops of a set of sockets, robust to the kernel's 32-bit counters wrapping.
#[derive(Debug, Default)]
pub struct DropCounter {
    last: HashMap<u32, u32>,
    total: u64,
}

impl DropCounter {
    /// Folds a fresh reading of the sockets in `inodes` into the total, which it returns.
    pub fn update(&mut self, reading: &HashMap<u32, u32>, inodes: &[u32]) -> u64 {
        for ino in inodes {
            if let Some(&now) = reading.get(ino) {
                let before = self.last.insert(*ino, now).unwrap_or(0);
                self.total += u64::from(now.wrapping_sub(before));
            }
        }
        self.total
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn attr(kind: u16, payload: &[u8]) -> Vec<u8> {
        let mut a = Vec::new();
        a.extend_from_slice(&((4 + payload.len()) as u16).to_ne_bytes());
        a.extend_from_slice(&kind.to_ne_bytes());
        a.extend_from_slice(payload);
        a.resize(align4(a.len()), 0);
        a
    }

    fn message(kind: u16, body: &[u8]) -> Vec<u8> {
        let mut m = Vec::new();
        m.extend_from_slice(&((16 + body.len()) as u32).to_ne_bytes());
        m.extend_from_slice(&kind.to_ne_bytes());
        m.extend_from_slice(&[0; 10]);
        m.extend_from_slice(body);
        m
    }

    fn socket_message(inode: u32, drops: u32) -> Vec<u8> {
        let mut body = vec![AF_PACKET, 3, 0, 3];
        body.extend_from_slice(&inode.to_ne_bytes());
        body.extend_from_slice(&[0; 8]);
        body.extend(attr(0, &[0; 24])); // PACKET_DIAG_INFO, skipped
        let meminfo: Vec<u8> = (0..9u32)
            .flat_map(|i| if i == 8 { drops } else { 1000 + i }.to_ne_bytes())
            .collect();
        body.extend(attr(PACKET_DIAG_MEMINFO, &meminfo));
        message(SOCK_DIAG_BY_FAMILY, &body)
    }

    #[test]
    fn reads_drops_by_inode_until_done() {
        let mut dgram = socket_message(41, 7);
        dgram.extend(socket_message(42, 0));
        let mut out = HashMap::new();
        assert!(!parse_messages(&dgram, &mut out).unwrap());
        assert!(parse_messages(&message(NLMSG_DONE, &[0; 4]), &mut out).unwrap());
        assert_eq!(out, HashMap::from([(41, 7), (42, 0)]));
    }

    #[test]
    fn kernel_refusal_and_garbage_are_errors() {
        let refused = message(NLMSG_ERROR, &(-2i32).to_ne_bytes());
        assert!(matches!(
            parse_messages(&refused, &mut HashMap::new()),
            Err(DiagError::Refused(2))
        ));
        let mut bad = socket_message(1, 1);
        bad[0] = 200; // longer than the datagram
        assert!(parse_messages(&bad, &mut HashMap::new()).is_err());
    }

    #[test]
    fn totals_survive_wrapping_and_ignore_other_sockets() {
        let mut c = DropCounter::default();
        assert_eq!(c.update(&HashMap::from([(1, 10), (9, 500)]), &[1]), 10);
        assert_eq!(
            c.update(&HashMap::from([(1, u32::MAX)]), &[1]),
            u64::from(u32::MAX)
        );
        // The kernel's counter wraps: 5 more drops.
        assert_eq!(
            c.update(&HashMap::from([(1, 4)]), &[1]),
            u64::from(u32::MAX) + 5
        );
    }

    #[test]
    fn this_kernel_answers_for_a_packet_socket_of_ours() {
        let s = Socket::new(Domain::from(i32::from(AF_PACKET)), Type::RAW, None)
            .expect("an AF_PACKET socket needs CAP_NET_RAW: run the tests as root");
        let ino = socket_inode(&s).expect("inode of our socket");
        let dump = packet_socket_drops().expect("sock_diag answers");
        assert_eq!(dump.get(&ino), Some(&0), "{dump:?}");
        drop(s);
        assert!(!packet_socket_drops().unwrap().contains_key(&ino));
    }
}
