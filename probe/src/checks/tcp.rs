//! TCP connect: the handshake time to a port of a core service.

use std::net::SocketAddr;

use tokio::net::{TcpSocket, TcpStream};

use super::{AttemptError, Binding};

/// Opens a connection leaving from the link's interface and/or source address.
pub async fn connect(addr: SocketAddr, bind: &Binding) -> Result<TcpStream, AttemptError> {
    let sock = if addr.is_ipv4() {
        TcpSocket::new_v4()?
    } else {
        TcpSocket::new_v6()?
    };
    if let Some(i) = &bind.interface {
        sock.bind_device(Some(i.as_bytes()))?;
    }
    if let Some(src) = bind.source {
        sock.bind(SocketAddr::new(src, 0))?;
    }
    Ok(sock.connect(addr).await?)
}
