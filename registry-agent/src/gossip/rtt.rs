//! Round-trip times from gossip itself: a chitchat transport wrapper that timestamps each
//! `Syn` this node sends and, when the peer's `SynAck` comes back, reports the elapsed time
//! for that peer's address. Every gossip round is then also a probe, with no packet of its
//! own; the peer's processing time between the two (microseconds) is part of the sample,
//! as it is in serf's ping-based measurement.
//!
//! It wraps any [`Transport`], so it composes with other wrappers (encryption, counting).
//!
//! Being the outermost wrapper, it also records Consul's memberlist metrics for the pool
//! (label `network`: `lan` or `wan`), when metrics are on:
//! - `consul_memberlist_udp_sent` / `consul_memberlist_udp_received`: bytes on the wire (after
//!   encryption when the pool is encrypted);
//! - `consul_memberlist_gossip`: the time to encode and send one gossip message (`Syn`) to a
//!   peer, as memberlist times its gossip to the peers of a round;
//! - `consul_memberlist_probeNode`: the `Syn` → `SynAck` round trip to a peer. Chitchat has
//!   no probe messages: its failure detector is fed by these exchanges, so a gossip exchange
//!   is what probes a peer here.

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
    network: Option<&'static str>,
}

impl<T> RttTransport<T> {
    /// Wraps `inner`; samples go to `samples`.
    pub fn new(inner: T, samples: UnboundedSender<RttSample>) -> Self {
        RttTransport {
            inner,
            samples,
            network: None,
        }
    }

    /// Also records the memberlist metrics, labelled `network` = `network` (`lan`, `wan`).
    pub fn metered(mut self, network: &'static str) -> Self {
        self.network = Some(network);
        self
    }
}

/// The memberlist metric handles of one pool, resolved when its socket opens.
struct Meters {
    udp_sent: metrics::Counter,
    udp_received: metrics::Counter,
    gossip: metrics::Histogram,
    probe: metrics::Histogram,
}

impl Meters {
    fn new(network: &'static str) -> Option<Meters> {
        if !registry_server::metrics::enabled() {
            return None;
        }
        // The member message counters exist from the start, at zero, so that an alert on
        // their increase works before the first failure.
        for name in [
            "consul_memberlist_msg_alive",
            "consul_memberlist_msg_suspect",
            "consul_memberlist_msg_dead",
        ] {
            metrics::counter!(name, "network" => network).increment(0);
        }
        Some(Meters {
            udp_sent: metrics::counter!("consul_memberlist_udp_sent", "network" => network),
            udp_received: metrics::counter!("consul_memberlist_udp_received", "network" => network),
            gossip: metrics::histogram!("consul_memberlist_gossip", "network" => network),
            probe: metrics::histogram!("consul_memberlist_probeNode", "network" => network),
        })
    }
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

#[async_trait]
impl<T: Transport> Transport for RttTransport<T> {
    async fn open(&self, listen_addr: SocketAddr) -> anyhow::Result<Box<dyn Socket>> {
        let inner = self.inner.open(listen_addr).await?;
        Ok(Box::new(RttSocket {
            inner,
            pending: HashMap::new(),
            samples: self.samples.clone(),
            meters: self.network.and_then(Meters::new),
        }))
    }
}

struct RttSocket {
    inner: Box<dyn Socket>,
    pending: HashMap<SocketAddr, Instant>,
    samples: UnboundedSender<RttSample>,
    meters: Option<Meters>,
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
        let syn = matches!(envelope.message, ChitchatMessage::Syn { .. });
        let now = Instant::now();
        if syn {
            if self.pending.len() > 1024 {
                self.pending
                    .retain(|_, t| now.duration_since(*t) < PENDING_TTL);
            }
            self.pending.insert(to, now);
        }
        let out = self.inner.send(to, envelope).await?;
        if let Some(m) = &self.meters {
            m.udp_sent.increment(out.num_bytes_sent as u64);
            if syn {
                m.gossip.record(ms(now.elapsed()));
            }
        }
        Ok(out)
    }

    async fn recv(&mut self) -> anyhow::Result<RecvOutcome> {
        let out = self.inner.recv().await?;
        if let Some(m) = &self.meters {
            m.udp_received.increment(out.num_bytes_received as u64);
        }
        if matches!(out.envelope.message, ChitchatMessage::SynAck { .. }) {
            if let Some(sent) = self.pending.remove(&out.from_addr) {
                let rtt = sent.elapsed();
                if let Some(m) = &self.meters {
                    m.probe.record(ms(rtt));
                }
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
