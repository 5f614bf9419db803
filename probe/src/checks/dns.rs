//! DNS resolution check: one A query over UDP to the configured resolver; the answer must be
//! NOERROR with at least one record. Only the header is read, which is all a reachability
//! check needs, so a full DNS library (and its size on small routers) is not worth it.

use std::net::SocketAddr;

use tokio::net::UdpSocket;

use super::{AttemptError, Binding};

/// The query message: header (id, RD set, one question), then QNAME, QTYPE A, QCLASS IN.
pub fn query(id: u16, name: &str) -> Vec<u8> {
    let mut q = Vec::with_capacity(18 + name.len());
    q.extend_from_slice(&id.to_be_bytes());
    q.extend_from_slice(&[0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, 0]);
    for label in name.trim_end_matches('.').split('.') {
        q.push(label.len() as u8);
        q.extend_from_slice(label.as_bytes());
    }
    q.extend_from_slice(&[0, 0, 1, 0, 1]);
    q
}

/// Checks an answer's header against the query id.
pub fn check_answer(id: u16, msg: &[u8]) -> Result<(), AttemptError> {
    let bad = |m: &str| Err(AttemptError::Protocol(m.to_string()));
    if msg.len() < 12 {
        return bad("truncated DNS answer");
    }
    if u16::from_be_bytes([msg[0], msg[1]]) != id || msg[2] & 0x80 == 0 {
        return bad("not an answer to our query");
    }
    match msg[3] & 0x0f {
        0 => {}
        3 => return bad("the resolver says the name does not exist (NXDOMAIN)"),
        2 => return bad("the resolver failed (SERVFAIL)"),
        r => return Err(AttemptError::Protocol(format!("DNS error code {r}"))),
    }
    if u16::from_be_bytes([msg[6], msg[7]]) == 0 {
        return bad("the resolver answered with no record");
    }
    Ok(())
}

pub async fn resolve(
    resolver: SocketAddr,
    name: &str,
    bind: &Binding,
    seq: u16,
) -> Result<(), AttemptError> {
    let local = match (bind.source, resolver.is_ipv4()) {
        (Some(src), _) => SocketAddr::new(src, 0),
        (None, true) => SocketAddr::from(([0, 0, 0, 0], 0)),
        (None, false) => SocketAddr::from(([0u16; 8], 0)),
    };
    let sock = UdpSocket::bind(local).await?;
    if let Some(i) = &bind.interface {
        sock.bind_device(Some(i.as_bytes()))?;
    }
    sock.connect(resolver).await?;
    let id = seq ^ rand::random::<u16>();
    sock.send(&query(id, name)).await?;
    let mut buf = [0u8; 1500];
    loop {
        let n = sock.recv(&mut buf).await?;
        // A late answer to an earlier attempt is not this one's: keep waiting (the caller's
        // timeout bounds it).
        if n >= 2 && u16::from_be_bytes([buf[0], buf[1]]) != id {
            continue;
        }
        return check_answer(id, &buf[..n]);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn query_bytes_follow_rfc_1035() {
        assert_eq!(
            query(0x1234, "rie.gouv.fr."),
            [
                0x12, 0x34, 0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, 0, 3, b'r', b'i', b'e', 4, b'g', b'o',
                b'u', b'v', 2, b'f', b'r', 0, 0, 1, 0, 1
            ]
        );
    }

    #[test]
    fn answers_are_checked() {
        let mut a = query(7, "x.fr");
        a[2] |= 0x80;
        assert!(check_answer(7, &a).is_err(), "no record");
        a[7] = 1;
        assert!(check_answer(7, &a).is_ok());
        assert!(check_answer(8, &a).is_err(), "other id");
        a[3] = 3;
        assert!(check_answer(7, &a)
            .unwrap_err()
            .to_string()
            .contains("NXDOMAIN"));
        assert!(check_answer(7, &a[..5]).is_err());
    }
}
