//! ICMP echo (v4 and v6) with `surge-ping`, on a raw socket when the probe has CAP_NET_RAW
//! (the packaged unit grants it), else on an unprivileged ping socket.

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use surge_ping::{Client, Config, PingIdentifier, PingSequence, SurgeError, ICMP};

use super::{AttemptError, Binding};

pub async fn ping(
    addr: IpAddr,
    bind: &Binding,
    seq: u16,
    timeout: Duration,
) -> Result<(), AttemptError> {
    let mut cfg = Config::builder()
        .kind(if addr.is_ipv4() { ICMP::V4 } else { ICMP::V6 })
        .sock_type_hint(socket2::Type::RAW);
    if let Some(i) = &bind.interface {
        cfg = cfg.interface(i);
    }
    if let Some(src) = bind.source {
        cfg = cfg.bind(SocketAddr::new(src, 0));
    }
    let client = Client::new(&cfg.build())?;
    // Raw sockets see every echo reply on the host: a random identifier keeps ours apart.
    let ident = PingIdentifier(rand::random());
    let mut pinger = client.pinger(addr, ident).await;
    pinger.timeout(timeout);
    match pinger.ping(PingSequence(seq), &[0u8; 56]).await {
        Ok(_) => Ok(()),
        Err(SurgeError::Timeout { .. }) => Err(AttemptError::Timeout(timeout)),
        Err(SurgeError::IOError(e)) => Err(AttemptError::Io(e)),
        Err(e) => Err(AttemptError::Protocol(e.to_string())),
    }
}
