//! DNS for client agents: a client's DNS port sends each query it cannot answer from its
//! short-lived cache (as Consul's `dns_config.use_cache`) to a server over the RPC layer
//! ([`DNS_PATH`](super::DNS_PATH)); the server answers it with its own DNS engine, from its
//! catalog, exactly as its own DNS port would. The port answers over UDP and TCP, as a
//! server's does: a UDP answer too large for the query's EDNS size (or 512 bytes) comes
//! back truncated with TC set, and the resolver retries over TCP for the whole answer.

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
/// A DNS-over-TCP connection idle this long is closed.
const TCP_IDLE: Duration = Duration::from_secs(10);
/// Most DNS-over-TCP connections served at once.
const TCP_MAX_CONNECTIONS: usize = 256;
/// How long a query through a server may take.
const QUERY_LIMIT: Duration = Duration::from_secs(5);

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

    /// The engine state, once installed (to point its questions about other datacenters
    /// somewhere).
    pub fn shared(&self) -> Option<Arc<Shared>> {
        self.shared.get().cloned()
    }

    /// The reply to `q` (empty: send nothing).
    pub async fn answer(&self, q: &DnsQuery) -> Result<Vec<u8>, ServerError> {
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
        let outcome = worker.handle(&q.packet, transport);
        Ok(match outcome {
            Outcome::Reply => std::mem::take(&mut worker.out),
            // Names outside the domain: the client's resolver has its own recursors.
            Outcome::Recurse(req) => servfail(&shared, &req, transport),
            Outcome::Remote(dc, req) => {
                shared
                    .answer_remote(dc, &req, q.packet.to_vec(), transport)
                    .await
            }
            Outcome::Drop => Vec::new(),
        })
    }
}

/// `POST /v1/internal/rpc/dns`: a [`DnsQuery`] in, the reply packet out.
pub(crate) async fn serve(State(slot): State<Arc<DnsSlot>>, body: Bytes) -> Response {
    let reply = match postcard::from_bytes::<DnsQuery>(&body) {
        Ok(q) => match slot.answer(&q).await {
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

/// DNS questions about other datacenters, asked of their servers through
/// [`Datacenters`](super::wan::Datacenters) and cached for [`CACHE_TTL`] as a client agent
/// caches (a remote catalog change cannot invalidate the answer here).
#[derive(Debug)]
pub struct WanDns {
    dcs: Arc<super::wan::Datacenters>,
    cache: Arc<Mutex<Cache>>,
}

impl WanDns {
    /// Asks through `dcs`.
    pub fn new(dcs: Arc<super::wan::Datacenters>) -> Arc<Self> {
        Arc::new(WanDns {
            dcs,
            cache: Arc::default(),
        })
    }
}

impl crate::dns::engine::RemoteDns for WanDns {
    fn answer(
        &self,
        dc: String,
        packet: Vec<u8>,
        tcp: bool,
    ) -> futures::future::BoxFuture<'static, Result<Vec<u8>, ()>> {
        let (dcs, cache) = (self.dcs.clone(), self.cache.clone());
        Box::pin(async move {
            if packet.len() < 12 {
                return Err(());
            }
            let id = [packet[0], packet[1]];
            let mut key = packet[2..].to_vec();
            key.push(u8::from(tcp));
            if let Some(hit) = cache.lock().get(&key, id) {
                return Ok(hit);
            }
            // The other datacenter answers as its anonymous token may read.
            let q = DnsQuery {
                packet: Bytes::from(packet),
                tcp,
                token: String::new(),
            };
            match dcs.dns_in_datacenter(&dc, &q).await {
                Ok(reply) if reply.len() >= 12 => {
                    cache.lock().put(key, &reply);
                    Ok(reply)
                }
                Ok(_) => Err(()),
                Err(e) => {
                    tracing::debug!(%dc, error = %e, "DNS question for another datacenter failed");
                    Err(())
                }
            }
        })
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

/// The reply to one query packet: from the cache, or from a server (then cached). The
/// cache key is the packet without its ID, and the transport (a UDP answer may be truncated).
async fn resolve(
    pool: &ServerPool,
    cache: &Mutex<Cache>,
    packet: Vec<u8>,
    tcp: bool,
    token: &str,
) -> Option<Vec<u8>> {
    if packet.len() < 12 {
        return None;
    }
    let id = [packet[0], packet[1]];
    let mut key = Vec::with_capacity(packet.len() - 1);
    key.push(u8::from(tcp));
    key.extend_from_slice(&packet[2..]);
    if let Some(reply) = cache.lock().get(&key, id) {
        return Some(reply);
    }
    let q = DnsQuery {
        packet: Bytes::from(packet),
        tcp,
        token: token.to_string(),
    };
    let res: Result<Bytes, ServerError> = pool.call(super::DNS_PATH, &q, QUERY_LIMIT, true).await;
    match res {
        Ok(reply) if reply.len() >= 12 => {
            cache.lock().put(key, &reply);
            Some(reply.to_vec())
        }
        Ok(_) => None,
        Err(e) => {
            tracing::debug!(error = %e, "DNS query through a server failed");
            None
        }
    }
}

/// Serves DNS over UDP and TCP on `bind` (one port) for a client agent until the process
/// ends; returns the bound address.
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
    let tcp = tokio::net::TcpListener::bind(addr)
        .await
        .map_err(|e| ServerError::Internal(format!("binding DNS {addr}/tcp: {e}")))?;
    let sock = Arc::new(sock);
    let cache = Arc::new(Mutex::new(Cache::default()));
    tokio::spawn(tcp_accept(tcp, pool.clone(), cache.clone(), token.clone()));
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
            let packet = buf[..n].to_vec();
            let (sock, cache, pool) = (sock.clone(), cache.clone(), pool.clone());
            let token = token.clone();
            tokio::spawn(async move {
                if let Some(reply) = resolve(&pool, &cache, packet, false, &token).await {
                    let _ = sock.send_to(&reply, from).await;
                }
            });
        }
    });
    Ok(addr)
}

async fn tcp_accept(
    listener: tokio::net::TcpListener,
    pool: Arc<ServerPool>,
    cache: Arc<Mutex<Cache>>,
    token: Arc<str>,
) {
    let slots = Arc::new(tokio::sync::Semaphore::new(TCP_MAX_CONNECTIONS));
    loop {
        let (stream, _) = match listener.accept().await {
            Ok(s) => s,
            Err(e) => {
                tracing::debug!(error = %e, "DNS: TCP accept failed");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let Ok(permit) = slots.clone().try_acquire_owned() else {
            continue; // over the limit: the connection is dropped
        };
        let (pool, cache, token) = (pool.clone(), cache.clone(), token.clone());
        tokio::spawn(async move {
            let _ = tcp_conn(stream, &pool, &cache, &token).await;
            drop(permit);
        });
    }
}

/// One DNS-over-TCP connection: length-prefixed queries, answered in order, until the
/// client closes it or it stays idle for [`TCP_IDLE`].
async fn tcp_conn(
    mut s: tokio::net::TcpStream,
    pool: &ServerPool,
    cache: &Mutex<Cache>,
    token: &str,
) -> std::io::Result<()> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    loop {
        let mut len = [0u8; 2];
        match tokio::time::timeout(TCP_IDLE, s.read_exact(&mut len)).await {
            Ok(Ok(_)) => {}
            _ => return Ok(()),
        }
        let mut msg = vec![0u8; usize::from(u16::from_be_bytes(len))];
        match tokio::time::timeout(TCP_IDLE, s.read_exact(&mut msg)).await {
            Ok(Ok(_)) => {}
            _ => return Ok(()),
        }
        let Some(reply) = resolve(pool, cache, msg, true, token).await else {
            return Ok(());
        };
        let Ok(n) = u16::try_from(reply.len()) else {
            return Ok(());
        };
        let mut out = Vec::with_capacity(reply.len() + 2);
        out.extend_from_slice(&n.to_be_bytes());
        out.extend_from_slice(&reply);
        s.write_all(&out).await?;
    }
}
