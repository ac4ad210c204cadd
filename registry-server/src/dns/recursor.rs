//! Forwarding names outside the domain to the configured recursors.
//!
//! The client's packet is sent unchanged (same ID, same EDNS size) to one recursor at a
//! time, over the transport the client used, each attempt with `recursor_timeout`. A reply
//! with NOERROR or NXDOMAIN (or one marked truncated) is relayed as it is; a failure, a
//! timeout or another response code moves on to the next recursor. When all fail the
//! caller answers SERVFAIL.

use super::config::{DnsConfig, RecursorStrategy};
use super::wire::rcode;
use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpStream, UdpSocket};

/// Sends `packet` to the recursors in order; the first usable reply, or `None`.
pub async fn forward(cfg: &DnsConfig, packet: &[u8], tcp: bool) -> Option<Vec<u8>> {
    if packet.len() < 2 {
        return None;
    }
    let mut order: Vec<SocketAddr> = cfg.recursors.clone();
    if cfg.recursor_strategy == RecursorStrategy::Random {
        use rand::seq::SliceRandom;
        order.shuffle(&mut rand::thread_rng());
    }
    for addr in order {
        let attempt = async {
            if tcp {
                exchange_tcp(addr, packet).await
            } else {
                exchange_udp(addr, packet).await
            }
        };
        match tokio::time::timeout(cfg.recursor_timeout, attempt).await {
            Ok(Ok(resp)) => {
                let rc = resp[3] & 0x0f;
                let truncated = resp[2] & 0x02 != 0;
                if rc == rcode::NOERROR || rc == rcode::NXDOMAIN || truncated {
                    return Some(resp);
                }
                tracing::debug!(recursor = %addr, rcode = rc, "DNS: recursor answered with an error, trying the next");
            }
            Ok(Err(e)) => {
                tracing::debug!(recursor = %addr, error = %e, "DNS: recursor failed, trying the next")
            }
            Err(_) => tracing::debug!(recursor = %addr, "DNS: recursor timed out, trying the next"),
        }
    }
    tracing::warn!("DNS: all recursors failed");
    None
}

fn unspecified(addr: SocketAddr) -> SocketAddr {
    let ip = match addr.ip() {
        IpAddr::V4(_) => IpAddr::V4(Ipv4Addr::UNSPECIFIED),
        IpAddr::V6(_) => IpAddr::V6(Ipv6Addr::UNSPECIFIED),
    };
    SocketAddr::new(ip, 0)
}

/// A reply to `packet`: same ID, QR set, at least a header.
fn matches(packet: &[u8], resp: &[u8]) -> bool {
    resp.len() >= 12 && resp[..2] == packet[..2] && resp[2] & 0x80 != 0
}

async fn exchange_udp(addr: SocketAddr, packet: &[u8]) -> io::Result<Vec<u8>> {
    let sock = UdpSocket::bind(unspecified(addr)).await?;
    sock.connect(addr).await?;
    sock.send(packet).await?;
    let mut buf = vec![0u8; 65535];
    loop {
        let n = sock.recv(&mut buf).await?;
        if matches(packet, &buf[..n]) {
            buf.truncate(n);
            return Ok(buf);
        }
    }
}

async fn exchange_tcp(addr: SocketAddr, packet: &[u8]) -> io::Result<Vec<u8>> {
    let mut s = TcpStream::connect(addr).await?;
    s.set_nodelay(true)?;
    let len = u16::try_from(packet.len())
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "query too long"))?;
    let mut msg = Vec::with_capacity(packet.len() + 2);
    msg.extend_from_slice(&len.to_be_bytes());
    msg.extend_from_slice(packet);
    s.write_all(&msg).await?;
    loop {
        let mut len = [0u8; 2];
        s.read_exact(&mut len).await?;
        let mut buf = vec![0u8; usize::from(u16::from_be_bytes(len))];
        s.read_exact(&mut buf).await?;
        if matches(packet, &buf) {
            return Ok(buf);
        }
    }
}
