//! Round-trip times from gossip itself: a chitchat transport wrapper that timestamps each
//! `Syn` this node sends and, when the peer's `SynAck` comes back, reports the elapsed time
//! for that peer's address. Every gossip round is then also a probe, with no packet of its
//! own; the peer's processing time between the two (microseconds) is part of the sample,
//! as it is in serf's ping-based measurement.
//!
//! It wraps any [`Transport`], so it composes with other wrappers (encryption, counting).

use async_trait::async_trait;
use chitchat::transport::{RecvOutcome, SendOutcome, Socket, Transport};
use chitchat::{ChitchatEnvelope, ChitchatMessage};
use std::collections::HashMap;
use std::net::SocketAddr;
use std::time::{Duration, Instant};
use tokio::sync::mpsc::UnboundedSender;

/// A measured round trip to the gossip address `peer`.
#[derive(Debug, Clone, Copy)]
pub struct RttSample {
    /// The peer's gossip address.
    pub peer: SocketAddr,
    /// Syn → SynAck time.
    pub rtt: Duration,
}

/// A Syn unanswered for this long is forgotten (the peer is slow or gone).
const PENDING_TTL: Duration = Duration::from_secs(5);

/// Wraps `T`, sending an [`RttSample`] for every answered `Syn`.
#[derive(Debug)]
pub struct RttTransport<T> {
    inner: T,
    samples: UnboundedSender<RttSample>,
}

impl<T> RttTransport<T> {
    /// Wraps `inner`; samples go to `samples`.
    pub fn new(inner: T, samples: UnboundedSender<RttSample>) -> Self {
        RttTransport { inner, samples }
    }
}

#[async_trait]
impl<T: Transport> Transport for RttTransport<T> {
    async fn open(&self, listen_addr: SocketAddr) -> anyhow::Result<Box<dyn Socket>> {
        let inner = self.inner.open(listen_addr).await?;
        Ok(Box::new(RttSocket {
            inner,
            pending: HashMap::new(),
            samples: self.samples.clone(),
        }))
    }
}

struct RttSocket {
    inner: Box<dyn Socket>,
    pending: HashMap<SocketAddr, Instant>,
    samples: UnboundedSender<RttSample>,
}

#[async_trait]
impl Socket for RttSocket {
    fn local_addr(&self) -> anyhow::Result<SocketAddr> {
        self.inner.local_addr()
    }

    async fn send(
        &mut self,
        to: SocketAddr,
        envelope: ChitchatEnvelope,
    ) -> anyhow::Result<SendOutcome> {
        if matches!(envelope.message, ChitchatMessage::Syn { .. }) {
            let now = Instant::now();
            if self.pending.len() > 1024 {
                self.pending
                    .retain(|_, t| now.duration_since(*t) < PENDING_TTL);
            }
            self.pending.insert(to, now);
        }
        self.inner.send(to, envelope).await
    }

    async fn recv(&mut self) -> anyhow::Result<RecvOutcome> {
        let out = self.inner.recv().await?;
        if matches!(out.envelope.message, ChitchatMessage::SynAck { .. }) {
            if let Some(sent) = self.pending.remove(&out.from_addr) {
                let rtt = sent.elapsed();
                if rtt < PENDING_TTL {
                    let _ = self.samples.send(RttSample {
                        peer: out.from_addr,
                        rtt,
                    });
                }
            }
        }
        Ok(out)
    }
}
