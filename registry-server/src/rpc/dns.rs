//! DNS for client agents: a client's DNS port sends each query it cannot answer from its
//! short-lived cache (as Consul's `dns_config.use_cache`) to a server over the RPC layer
//! ([`DNS_PATH`](super::DNS_PATH)); the server answers it with its own DNS engine, from its
//! catalog, exactly as its own DNS port would.

use super::client::ServerPool;
use super::forward::{ForwardReply, CONTENT_TYPE};
use crate::dns::engine::{servfail, Outcome, Shared, Worker};
use crate::dns::render::Transport;
use crate::ServerError;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use parking_lot::Mutex;
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

/// How long a client agent reuses an answer.
pub const CACHE_TTL: Duration = Duration::from_secs(2);
/// Most answers a client agent keeps.
const CACHE_MAX: usize = 4096;

/// One DNS query as it arrived.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct DnsQuery {
    /// The packet.
    pub packet: Bytes,
    /// Whether it came over TCP (no UDP size limit).
    pub tcp: bool,
    /// The client agent's `default` token (empty: the anonymous token): with ACLs enabled
    /// the answer shows what it may read, as the client's own DNS would in Consul.
    pub token: String,
}

/// The server's DNS engine state, once known.
#[derive(Debug, Default)]
pub struct DnsSlot {
    shared: OnceLock<Arc<Shared>>,
    acl: OnceLock<(Arc<crate::acl::AclRuntime>, String)>,
}

impl DnsSlot {
    /// Installs the engine state (later calls are ignored).
    pub fn install(&self, shared: Arc<Shared>) {
        let _ = self.shared.set(shared);
    }

    /// Installs the server's ACL settings (ACLs enabled): answers are then filtered to what
    /// each query's token may read.
    pub fn install_acl(&self, runtime: Arc<crate::acl::AclRuntime>, datacenter: String) {
        let _ = self.acl.set((runtime, datacenter));
    }

    /// The reply to `q` (empty: send nothing).
    pub fn answer(&self, q: &DnsQuery) -> Result<Vec<u8>, ServerError> {
        let mut shared = self.shared.get().ok_or(ServerError::NoLeader)?.clone();
        if let Some((runtime, dc)) = self.acl.get() {
            let view = crate::acl::DnsView::for_token(runtime.clone(), dc.clone(), &q.token);
            shared = Arc::new(shared.with_acl_view(view));
        }
        let transport = if q.tcp {
            Transport::Tcp
        } else {
            Transport::Udp
        };
        // A worker per query: its answer cache would go stale without the DNS listener's
        // invalidation task; the client agent caches instead.
        let mut worker = Worker::new(shared.clone());
        Ok(match worker.handle(&q.packet, transport) {
            Outcome::Reply => std::mem::take(&mut worker.out),
            // Names outside the domain: the client's resolver has its own recursors.
            Outcome::Recurse(req) => servfail(&shared, &req, transport),
            Outcome::Drop => Vec::new(),
        })
    }
}

/// `POST /v1/internal/rpc/dns`: a [`DnsQuery`] in, the reply packet out.
pub(crate) async fn serve(State(slot): State<Arc<DnsSlot>>, body: Bytes) -> Response {
    let reply = match postcard::from_bytes::<DnsQuery>(&body) {
        Ok(q) => match slot.answer(&q) {
            Ok(bytes) => ForwardReply::Ok(Bytes::from(bytes)),
            Err(ServerError::NoLeader) => ForwardReply::NotLeader,
            Err(e) => ForwardReply::Failed(e.to_string()),
        },
        Err(e) => {
            return (StatusCode::BAD_REQUEST, format!("undecodable request: {e}")).into_response()
        }
    };
    match postcard::to_stdvec(&reply) {
        Ok(bytes) => ([(header::CONTENT_TYPE, CONTENT_TYPE)], bytes).into_response(),
        Err(e) => (StatusCode::INTERNAL_SERVER_ERROR, e.to_string()).into_response(),
    }
}

/// The client agent's answer cache: the query without its ID -> (when, reply).
#[derive(Debug, Default)]
struct Cache {
    map: HashMap<Vec<u8>, (Instant, Vec<u8>)>,
}

impl Cache {
    fn get(&mut self, key: &[u8], id: [u8; 2]) -> Option<Vec<u8>> {
        let (at, reply) = self.map.get(key)?;
        if at.elapsed() > CACHE_TTL {
            self.map.remove(key);
            return None;
        }
        let mut out = reply.clone();
        out[..2].copy_from_slice(&id);
        Some(out)
    }

    fn put(&mut self, key: Vec<u8>, reply: &[u8]) {
        if self.map.len() >= CACHE_MAX {
            self.map.retain(|_, (at, _)| at.elapsed() <= CACHE_TTL);
            if self.map.len() >= CACHE_MAX {
                self.map.clear();
            }
        }
        self.map.insert(key, (Instant::now(), reply.to_vec()));
    }
}

/// Serves DNS over UDP on `bind` for a client agent until the process ends; returns the
/// bound address.
pub async fn serve_client(
    bind: SocketAddr,
    pool: Arc<ServerPool>,
    token: String,
) -> Result<SocketAddr, ServerError> {
    let token: Arc<str> = token.into();
    let sock = tokio::net::UdpSocket::bind(bind)
        .await
        .map_err(|e| ServerError::Internal(format!("binding DNS {bind}: {e}")))?;
    let addr = sock
        .local_addr()
        .map_err(|e| ServerError::Internal(e.to_string()))?;
    let sock = Arc::new(sock);
    let cache = Arc::new(Mutex::new(Cache::default()));
    tokio::spawn(async move {
        let mut buf = vec![0u8; 4096];
        loop {
            let (n, from) = match sock.recv_from(&mut buf).await {
                Ok(r) => r,
                Err(e) => {
                    tracing::debug!(error = %e, "DNS receive");
                    continue;
                }
            };
            if n < 12 {
                continue;
            }
            let packet = buf[..n].to_vec();
            let id = [packet[0], packet[1]];
            let hit = cache.lock().get(&packet[2..], id);
            if let Some(reply) = hit {
                let _ = sock.send_to(&reply, from).await;
                continue;
            }
            let (sock, cache, pool) = (sock.clone(), cache.clone(), pool.clone());
            let token = token.to_string();
            tokio::spawn(async move {
                let q = DnsQuery {
                    packet: Bytes::from(packet),
                    tcp: false,
                    token,
                };
                let res: Result<Bytes, ServerError> = pool
                    .call(super::DNS_PATH, &q, Duration::from_secs(5), true)
                    .await;
                match res {
                    Ok(reply) if reply.len() >= 12 => {
                        cache.lock().put(q.packet[2..].to_vec(), &reply);
                        let _ = sock.send_to(&reply, from).await;
                    }
                    Ok(_) => {}
                    Err(e) => tracing::debug!(error = %e, "DNS query through a server failed"),
                }
            });
        }
    });
    Ok(addr)
}
