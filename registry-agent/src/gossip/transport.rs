//! [`SecureTransport`]: a chitchat [`Transport`] that encrypts every gossip datagram with
//! the pool's keyring ([`Keys`]) and authenticates every datagram it receives. Any chitchat
//! instance (the LAN pool, a WAN pool) uses it by passing `&SecureTransport::new(keys)` where
//! it passed `&UdpTransport`.
//!
//! Chitchat encodes its messages inside its own socket, so the wrapper relays: chitchat's
//! UDP socket is bound to an ephemeral loopback port. Sending, chitchat sends to the wrapper's
//! encoder socket, whose datagram is sealed and leaves from the public gossip socket;
//! receiving, a datagram of the public socket is opened and handed to chitchat's socket from
//! a loopback tap socket of that peer, so the envelope chitchat decodes names the tap, which
//! names the peer. Datagrams that reach chitchat's socket from anything but a tap are ignored.
//!
//! A datagram that fails authentication, or a plaintext one while `encrypt_verify_incoming`
//! is on, is dropped, counted (`registry_gossip_packets_dropped{reason}`) and logged at debug.

use super::crypto::{Keys, VERSION};
use async_trait::async_trait;
use chitchat::transport::{RecvOutcome, SendOutcome, Socket, Transport, UdpTransport};
use chitchat::ChitchatEnvelope;
use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use tokio::net::UdpSocket;

/// Largest UDP payload (IPv4).
const MAX_DATAGRAM: usize = 65_507;

/// Counters of one transport (shared by the sockets it opens).
#[derive(Debug, Default)]
pub struct TransportStats {
    /// Datagrams that no installed key authenticates.
    pub auth_failed: AtomicU64,
    /// Plaintext datagrams refused (`encrypt_verify_incoming`).
    pub plaintext_refused: AtomicU64,
    /// Datagrams too large to seal.
    pub oversize: AtomicU64,
    /// Datagrams opened successfully.
    pub opened: AtomicU64,
}

/// A chitchat transport that encrypts with `keys`, over an inner transport (UDP by default)
/// used on loopback.
pub struct SecureTransport {
    keys: Arc<Keys>,
    inner: Box<dyn Transport>,
    stats: Arc<TransportStats>,
}

impl SecureTransport {
    /// Encrypts chitchat's UDP datagrams with `keys`.
    pub fn new(keys: Arc<Keys>) -> SecureTransport {
        SecureTransport::wrapping(keys, Box::new(UdpTransport))
    }

    /// Encrypts the datagrams of another transport (which must be datagram based: it is
    /// opened on a loopback address).
    pub fn wrapping(keys: Arc<Keys>, inner: Box<dyn Transport>) -> SecureTransport {
        SecureTransport {
            keys,
            inner,
            stats: Arc::new(TransportStats::default()),
        }
    }

    /// The counters of this transport.
    pub fn stats(&self) -> Arc<TransportStats> {
        self.stats.clone()
    }
}

fn loopback_like(addr: &SocketAddr) -> SocketAddr {
    let ip = match addr.ip() {
        IpAddr::V4(_) => IpAddr::V4(Ipv4Addr::LOCALHOST),
        IpAddr::V6(_) => IpAddr::V6(Ipv6Addr::LOCALHOST),
    };
    SocketAddr::new(ip, 0)
}

#[async_trait]
impl Transport for SecureTransport {
    async fn open(&self, listen_addr: SocketAddr) -> anyhow::Result<Box<dyn Socket>> {
        let public = UdpSocket::bind(listen_addr)
            .await
            .map_err(|e| anyhow::anyhow!("failed to bind to {listen_addr}/UDP for gossip: {e}"))?;
        let local = loopback_like(&listen_addr);
        let inner = self.inner.open(local).await?;
        let inner_addr = inner.local_addr()?;
        let encoder = std::net::UdpSocket::bind(local)?;
        encoder.set_nonblocking(true)?;
        let encoder_addr = encoder.local_addr()?;
        Ok(Box::new(SecureSocket {
            keys: self.keys.clone(),
            stats: self.stats.clone(),
            public,
            inner,
            inner_addr,
            local,
            encoder,
            encoder_addr,
            taps: HashMap::new(),
            peers: HashMap::new(),
            buf: vec![0u8; MAX_DATAGRAM + 1],
            out: Vec::with_capacity(MAX_DATAGRAM),
        }))
    }
}

/// A loopback socket that hands chitchat the datagrams of one peer, so that chitchat's
/// answer names the tap and the tap names the peer.
struct Tap {
    socket: std::net::UdpSocket,
    wire: usize,
}

struct SecureSocket {
    keys: Arc<Keys>,
    stats: Arc<TransportStats>,
    public: UdpSocket,
    inner: Box<dyn Socket>,
    inner_addr: SocketAddr,
    local: SocketAddr,
    /// Where chitchat's encoded datagrams are read back. Loopback delivery is synchronous,
    /// so a plain non-blocking read right after chitchat's send finds the datagram.
    encoder: std::net::UdpSocket,
    encoder_addr: SocketAddr,
    /// Peer -> its tap; tap address -> peer.
    taps: HashMap<SocketAddr, Tap>,
    peers: HashMap<SocketAddr, SocketAddr>,
    buf: Vec<u8>,
    out: Vec<u8>,
}

fn transient(e: &std::io::Error) -> bool {
    matches!(
        e.kind(),
        std::io::ErrorKind::ConnectionRefused
            | std::io::ErrorKind::ConnectionReset
            | std::io::ErrorKind::OutOfMemory
            | std::io::ErrorKind::Interrupted
            | std::io::ErrorKind::WouldBlock
    )
}

impl SecureSocket {
    /// Chitchat's encoding of `envelope`, read back from the encoder socket.
    async fn encode(&mut self, envelope: ChitchatEnvelope) -> anyhow::Result<Option<usize>> {
        // Whatever an interrupted exchange left behind.
        while self.encoder.recv_from(&mut self.buf).is_ok() {}
        self.inner.send(self.encoder_addr, envelope).await?;
        for _ in 0..100 {
            match self.encoder.recv_from(&mut self.buf) {
                Ok((n, from)) if from == self.inner_addr => return Ok(Some(n)),
                Ok(_) => continue,
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                    tokio::task::yield_now().await;
                }
                Err(e) if transient(&e) => return Ok(None),
                Err(e) => return Err(anyhow::anyhow!("gossip relay: {e}")),
            }
        }
        Ok(None)
    }

    /// Hands an opened datagram of `from` to chitchat through that peer's tap.
    fn forward(&mut self, from: SocketAddr, plaintext: &[u8], wire: usize) -> anyhow::Result<()> {
        if !self.taps.contains_key(&from) {
            if self.taps.len() >= MAX_TAPS {
                self.taps.clear();
                self.peers.clear();
            }
            let socket = std::net::UdpSocket::bind(self.local)?;
            socket.set_nonblocking(true)?;
            self.peers.insert(socket.local_addr()?, from);
            self.taps.insert(from, Tap { socket, wire });
        }
        if let Some(tap) = self.taps.get_mut(&from) {
            tap.wire = wire;
            if let Err(e) = tap.socket.send_to(plaintext, self.inner_addr) {
                if !transient(&e) {
                    return Err(anyhow::anyhow!("gossip relay: {e}"));
                }
            }
        }
        Ok(())
    }

    /// Opens a datagram of the gossip port; `None` when it is dropped.
    fn open_packet(&self, n: usize, from: SocketAddr) -> Option<Vec<u8>> {
        let packet = &self.buf[..n];
        if packet.first() == Some(&VERSION) {
            match self.keys.open(packet) {
                Ok(p) => {
                    self.stats.opened.fetch_add(1, Ordering::Relaxed);
                    Some(p)
                }
                Err(_) if !self.keys.verify_incoming() => Some(packet.to_vec()),
                Err(e) => {
                    self.stats.auth_failed.fetch_add(1, Ordering::Relaxed);
                    metrics::counter!("registry_gossip_packets_dropped", "reason" => "auth")
                        .increment(1);
                    tracing::debug!(%from, bytes = n, error = %e, "gossip packet dropped");
                    None
                }
            }
        } else if self.keys.verify_incoming() {
            self.stats.plaintext_refused.fetch_add(1, Ordering::Relaxed);
            metrics::counter!("registry_gossip_packets_dropped", "reason" => "plaintext")
                .increment(1);
            tracing::debug!(%from, bytes = n, "plaintext gossip packet dropped (encrypt_verify_incoming)");
            None
        } else {
            Some(packet.to_vec())
        }
    }
}

/// Taps kept at most (one per peer heard from); beyond, they are all replaced.
const MAX_TAPS: usize = 4096;

#[async_trait]
impl Socket for SecureSocket {
    fn local_addr(&self) -> anyhow::Result<SocketAddr> {
        Ok(self.public.local_addr()?)
    }

    async fn send(
        &mut self,
        to: SocketAddr,
        envelope: ChitchatEnvelope,
    ) -> anyhow::Result<SendOutcome> {
        let Some(n) = self.encode(envelope).await? else {
            return Ok(SendOutcome { num_bytes_sent: 0 });
        };
        let wire: &[u8] = if self.keys.verify_outgoing() {
            if !self.keys.seal(&self.buf[..n], &mut self.out) || self.out.len() > MAX_DATAGRAM {
                self.stats.oversize.fetch_add(1, Ordering::Relaxed);
                metrics::counter!("registry_gossip_packets_dropped", "reason" => "oversize")
                    .increment(1);
                tracing::debug!(bytes = n, %to, "gossip datagram too large to encrypt, dropped");
                return Ok(SendOutcome { num_bytes_sent: 0 });
            }
            &self.out
        } else {
            &self.buf[..n]
        };
        match self.public.send_to(wire, to).await {
            Ok(sent) => Ok(SendOutcome {
                num_bytes_sent: sent,
            }),
            Err(e) if transient(&e) => Ok(SendOutcome { num_bytes_sent: 0 }),
            Err(e) => Err(anyhow::anyhow!("failed to send gossip to {to}: {e}")),
        }
    }

    /// Cancel-safe: both branches only wait on a socket read.
    async fn recv(&mut self) -> anyhow::Result<RecvOutcome> {
        loop {
            tokio::select! {
                r = self.public.recv_from(&mut self.buf) => {
                    let (n, from) = match r {
                        Ok(r) => r,
                        Err(e) if transient(&e) => continue,
                        Err(e) => return Err(anyhow::anyhow!("fatal UDP recv error: {e}")),
                    };
                    if let Some(plaintext) = self.open_packet(n, from) {
                        self.forward(from, &plaintext, n)?;
                    }
                }
                r = self.inner.recv() => {
                    let mut outcome = r?;
                    // Only the taps talk to chitchat's socket.
                    let Some(peer) = self.peers.get(&outcome.from_addr).copied() else {
                        continue;
                    };
                    outcome.num_bytes_received =
                        self.taps.get(&peer).map(|t| t.wire).unwrap_or(outcome.num_bytes_received);
                    outcome.from_addr = peer;
                    return Ok(outcome);
                }
            }
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;
    use crate::gossip::crypto::GossipKey;
    use std::time::Duration;

    fn keys(fill: u8, incoming: bool, outgoing: bool) -> Arc<Keys> {
        Arc::new(Keys::new(
            vec![GossipKey::from_bytes(&[fill; 32]).unwrap()],
            incoming,
            outgoing,
        ))
    }

    /// A chitchat datagram: what a plaintext peer sends (a Syn from a one-node cluster).
    async fn plain_syn() -> Vec<u8> {
        let a = UdpSocket::bind("127.0.0.1:0").await.unwrap();
        let mut s = UdpTransport
            .open("127.0.0.1:0".parse().unwrap())
            .await
            .unwrap();
        s.send(a.local_addr().unwrap(), syn()).await.unwrap();
        let mut buf = vec![0u8; 65_536];
        let (n, _) = a.recv_from(&mut buf).await.unwrap();
        buf.truncate(n);
        buf
    }

    fn syn() -> ChitchatEnvelope {
        // A BadCluster message is the smallest envelope the public API can build.
        ChitchatEnvelope {
            version: chitchat::ProtocolVersion::V1,
            message: chitchat::ChitchatMessage::BadCluster,
        }
    }

    async fn pair(
        ka: Arc<Keys>,
        kb: Arc<Keys>,
    ) -> (Box<dyn Socket>, Box<dyn Socket>, Arc<TransportStats>) {
        let a = SecureTransport::new(ka)
            .open("127.0.0.1:0".parse().unwrap())
            .await
            .unwrap();
        let tb = SecureTransport::new(kb);
        let stats = tb.stats();
        let b = tb.open("127.0.0.1:0".parse().unwrap()).await.unwrap();
        (a, b, stats)
    }

    async fn recv_within(s: &mut Box<dyn Socket>, ms: u64) -> Option<RecvOutcome> {
        tokio::time::timeout(Duration::from_millis(ms), s.recv())
            .await
            .ok()
            .map(|r| r.unwrap())
    }

    #[tokio::test]
    async fn same_key_delivers_and_names_the_real_sender() {
        let (mut a, mut b, stats) = pair(keys(1, true, true), keys(1, true, true)).await;
        let to = b.local_addr().unwrap();
        let sent = a.send(to, syn()).await.unwrap();
        let got = recv_within(&mut b, 2000).await.expect("delivered");
        assert_eq!(got.from_addr, a.local_addr().unwrap());
        assert_eq!(got.envelope, syn());
        assert_eq!(got.num_bytes_received, sent.num_bytes_sent);
        assert_eq!(stats.opened.load(Ordering::Relaxed), 1);
    }

    #[tokio::test]
    async fn wrong_key_and_plaintext_are_dropped_and_counted() {
        let (mut a, mut b, stats) = pair(keys(1, true, true), keys(2, true, true)).await;
        let to = b.local_addr().unwrap();
        a.send(to, syn()).await.unwrap();
        assert!(recv_within(&mut b, 300).await.is_none());
        assert_eq!(stats.auth_failed.load(Ordering::Relaxed), 1);
        // Plaintext and junk from a raw socket.
        let raw = UdpSocket::bind("127.0.0.1:0").await.unwrap();
        raw.send_to(&plain_syn().await, to).await.unwrap();
        raw.send_to(&[VERSION, 1, 2, 3], to).await.unwrap();
        assert!(recv_within(&mut b, 300).await.is_none());
        assert_eq!(stats.plaintext_refused.load(Ordering::Relaxed), 1);
        assert_eq!(stats.auth_failed.load(Ordering::Relaxed), 2);
    }

    #[tokio::test]
    async fn verify_switches_allow_a_mixed_pool() {
        // b accepts plaintext and encrypted; a sends plaintext.
        let (mut a, mut b, _) = pair(keys(1, false, false), keys(1, false, true)).await;
        let (ta, tb) = (a.local_addr().unwrap(), b.local_addr().unwrap());
        a.send(tb, syn()).await.unwrap();
        assert!(recv_within(&mut b, 2000).await.is_some());
        // b sends encrypted; a (verify_incoming off) opens it.
        b.send(ta, syn()).await.unwrap();
        assert_eq!(recv_within(&mut a, 2000).await.unwrap().from_addr, tb);
        // Junk that is neither is still dropped by chitchat, and the socket keeps working.
        let raw = UdpSocket::bind("127.0.0.1:0").await.unwrap();
        raw.send_to(b"junk", tb).await.unwrap();
        a.send(tb, syn()).await.unwrap();
        assert_eq!(recv_within(&mut b, 2000).await.unwrap().from_addr, ta);
    }
}
