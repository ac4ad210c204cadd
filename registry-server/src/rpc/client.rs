//! The client agent's side of the RPC layer: which servers there are ([`ServerDirectory`],
//! with [`SeededDirectory`] asking the `-retry-join` hosts for the current server list), and
//! calls that fail over between them ([`ServerPool`]) — the path of every request a client
//! agent forwards ([`ClientForward`]).
//!
//! A call goes to the server that answered last; a server that cannot be reached, or that
//! is not serving yet, is skipped at once for the next one. A read whose server dies while
//! it waits (a blocking query) is sent again to the next server; a write whose outcome is
//! unknown is not, and fails, as in Consul. With no server answering, calls keep trying for
//! [`FAILOVER_LIMIT`] before failing with "No known servers".

use super::api::{ApiReply, ApiRequest, Hop, ServerEntry};
use super::forward::{ForwardError, Forwarder};
use super::{API_PATH, SERVERS_PATH};
use crate::http::respond::ApiError;
use crate::http::ForwardApi;
use crate::ServerError;
use axum::extract::Request;
use axum::http::Method;
use axum::response::{IntoResponse, Response};
use futures::future::BoxFuture;
use parking_lot::Mutex;
use rand::seq::SliceRandom;
use serde::de::DeserializeOwned;
use serde::Serialize;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::time::Instant;

/// How long a call keeps looking for a server that answers.
pub const FAILOVER_LIMIT: Duration = Duration::from_secs(15);
/// How often the server list is refreshed.
const REFRESH: Duration = Duration::from_secs(5);
/// Refresh period while no server is known.
const REFRESH_EMPTY: Duration = Duration::from_millis(500);
/// Pause between rounds over every known server.
const ROUND_PAUSE: Duration = Duration::from_millis(200);

/// Where the servers are. Today seeded from the join addresses; the gossip pool (members
/// with `role=consul` and their server-port tag) plugs in behind the same trait.
pub trait ServerDirectory: Send + Sync + 'static {
    /// Server RPC addresses (`host:port`), in the order to try them.
    fn servers(&self) -> Vec<String>;
}

/// A [`ServerDirectory`] that asks the join addresses (names resolved again on every round)
/// and the servers it learnt for the servers in the Raft membership.
pub struct SeededDirectory {
    seeds: Vec<String>,
    server_port: u16,
    known: Mutex<Vec<String>>,
    http: reqwest::Client,
}

impl std::fmt::Debug for SeededDirectory {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SeededDirectory")
            .field("seeds", &self.seeds)
            .field("known", &*self.known.lock())
            .finish_non_exhaustive()
    }
}

impl SeededDirectory {
    /// A directory seeded with `seeds` (`host`, `ip`, `host:port`; the port defaults to
    /// `server_port`).
    pub fn new(seeds: Vec<String>, server_port: u16) -> Result<Arc<Self>, ServerError> {
        let http = crate::tls::rpc::client_builder()
            .no_proxy()
            .connect_timeout(Duration::from_secs(1))
            .timeout(Duration::from_secs(3))
            .build()
            .map_err(|e| ServerError::Internal(format!("building the RPC client: {e}")))?;
        Ok(Arc::new(SeededDirectory {
            seeds,
            server_port,
            known: Mutex::new(Vec::new()),
            http,
        }))
    }

    async fn resolve(&self, seed: &str) -> Option<String> {
        let seed = seed.trim();
        let with_port = if seed.parse::<SocketAddr>().is_ok() {
            seed.to_string()
        } else if let Ok(ip) = seed.trim_matches(['[', ']']).parse::<std::net::IpAddr>() {
            SocketAddr::new(ip, self.server_port).to_string()
        } else if seed
            .rsplit_once(':')
            .is_some_and(|(_, p)| p.parse::<u16>().is_ok())
        {
            seed.to_string()
        } else {
            format!("{seed}:{}", self.server_port)
        };
        let mut found = tokio::net::lookup_host(&with_port).await.ok()?;
        found.next().map(|a| a.to_string())
    }

    /// Asks the known servers, then the seeds, for the server list; keeps the first answer.
    pub async fn refresh(&self) -> bool {
        let mut targets = self.known.lock().clone();
        for seed in &self.seeds {
            if let Some(a) = self.resolve(seed).await {
                if !targets.contains(&a) {
                    targets.push(a);
                }
            }
        }
        for addr in targets {
            let url = format!("{}://{addr}{SERVERS_PATH}", crate::tls::rpc::scheme());
            let Ok(resp) = self.http.get(&url).send().await else {
                continue;
            };
            let Ok(list) = resp.json::<Vec<ServerEntry>>().await else {
                continue;
            };
            if list.is_empty() {
                continue;
            }
            let mut addrs: Vec<String> = list.into_iter().map(|s| s.rpc_addr).collect();
            // Spread client agents over the servers, as Consul's server manager does.
            addrs.shuffle(&mut rand::thread_rng());
            *self.known.lock() = addrs;
            return true;
        }
        false
    }

    /// Refreshes the list until the process ends.
    pub async fn run(self: Arc<Self>) {
        loop {
            let ok = self.refresh().await;
            tokio::time::sleep(if ok { REFRESH } else { REFRESH_EMPTY }).await;
        }
    }
}

impl ServerDirectory for SeededDirectory {
    fn servers(&self) -> Vec<String> {
        self.known.lock().clone()
    }
}

/// Calls to whichever server answers.
pub struct ServerPool {
    dir: Arc<dyn ServerDirectory>,
    fwd: Forwarder,
    current: Mutex<Option<String>>,
}

impl std::fmt::Debug for ServerPool {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ServerPool")
            .field("current", &*self.current.lock())
            .finish_non_exhaustive()
    }
}

impl ServerPool {
    /// A pool over the servers of `dir`.
    pub fn new(dir: Arc<dyn ServerDirectory>) -> Result<Arc<Self>, ServerError> {
        let http = crate::tls::rpc::client_builder()
            .no_proxy()
            .tcp_nodelay(true)
            .connect_timeout(Duration::from_secs(1))
            .pool_max_idle_per_host(64)
            .build()
            .map_err(|e| ServerError::Internal(format!("building the RPC client: {e}")))?;
        Ok(Arc::new(ServerPool {
            dir,
            fwd: Forwarder::new(http),
            current: Mutex::new(None),
        }))
    }

    /// The server calls go to now, if one answered.
    pub fn current(&self) -> Option<String> {
        self.current.lock().clone()
    }

    /// The servers in the order a call tries them: the one that answered last first.
    pub fn order(&self) -> Vec<String> {
        let mut order = self.dir.servers();
        if let Some(cur) = self.current() {
            order.retain(|a| *a != cur);
            order.insert(0, cur);
        }
        order
    }

    /// Records that `addr` answered (it goes first) or did not (it no longer does).
    pub fn mark(&self, addr: &str, answered: bool) {
        let mut cur = self.current.lock();
        if answered {
            *cur = Some(addr.to_string());
        } else {
            cur.take_if(|c| c == addr);
        }
    }

    /// The HTTP client of the server port (event streams use it directly).
    pub(crate) fn http(&self) -> &reqwest::Client {
        self.fwd.client()
    }

    /// Posts `req` to `path` on a server, failing over as the module says; `retry_unknown`:
    /// the call may be repeated on another server after its outcome became unknown (reads).
    pub async fn call<Req: Serialize, Resp: DeserializeOwned>(
        &self,
        path: &str,
        req: &Req,
        limit: Duration,
        retry_unknown: bool,
    ) -> Result<Resp, ServerError> {
        let deadline = Instant::now() + FAILOVER_LIMIT;
        let mut last_error = String::from("No known servers");
        loop {
            let mut order = self.dir.servers();
            if let Some(cur) = self.current() {
                order.retain(|a| *a != cur);
                order.insert(0, cur);
            }
            for addr in order {
                match self.fwd.call_timeout(&addr, path, req, limit).await {
                    Ok(v) => {
                        *self.current.lock() = Some(addr);
                        return Ok(v);
                    }
                    Err(ForwardError::NotSent(m)) => last_error = m,
                    Err(ForwardError::NotLeader) => {
                        last_error = format!("{addr}: not serving yet");
                    }
                    Err(ForwardError::Failed(m)) if retry_unknown => last_error = m,
                    Err(ForwardError::Failed(m)) => {
                        return Err(ServerError::Raft(format!("rpc error: {m}")))
                    }
                }
                self.current.lock().take_if(|c| *c == addr);
                tracing::debug!(server = %addr, error = %last_error, "server did not answer; trying the next");
            }
            if Instant::now() >= deadline {
                return Err(ServerError::Raft(format!(
                    "No known servers answer: {last_error}"
                )));
            }
            tokio::time::sleep(ROUND_PAUSE).await;
        }
    }
}

/// Forwards a client agent's API requests to the servers.
#[derive(Debug, Clone)]
pub struct ClientForward {
    pool: Arc<ServerPool>,
    node: Arc<str>,
    default_token: Arc<str>,
    views: Option<Arc<super::views::StreamViews>>,
}

impl ClientForward {
    /// Forwarding through `pool` for the agent named `node` (what sessions created through
    /// it are bound to by default).
    pub fn new(pool: Arc<ServerPool>, node: &str) -> Self {
        ClientForward {
            pool,
            node: node.into(),
            default_token: "".into(),
            views: None,
        }
    }

    /// Serves blocking `health/service` and `catalog/service` queries from event-stream
    /// views (`use_streaming_backend`).
    pub fn with_stream_views(mut self) -> Self {
        self.views = Some(super::views::StreamViews::new(self.pool.clone()));
        self
    }

    /// The agent's `acl.tokens.default`, sent with requests that carry no token.
    pub fn with_default_token(mut self, token: &str) -> Self {
        self.default_token = token.into();
        self
    }

    async fn run(self, req: Request) -> Response {
        let ClientForward {
            pool,
            node,
            default_token,
            views,
        } = self;
        let (mut parts, body) = req.into_parts();
        super::api::mark_origin(&mut parts, &node);
        super::api::add_default_token(&mut parts, &default_token);
        if let Some(views) = views.filter(|_| super::views::StreamViews::wants(&parts)) {
            return views.serve(&parts).await;
        }
        let body = match super::api::buffer_body(body).await {
            Ok(b) => b,
            Err(resp) => return resp,
        };
        let read = matches!(parts.method, Method::GET | Method::HEAD);
        let fwd = ApiRequest::from_parts(Hop::Client, &parts, body);
        let limit = fwd.time_limit();
        match pool.call::<_, ApiReply>(API_PATH, &fwd, limit, read).await {
            Ok(reply) => reply.into_response(),
            Err(e) => ApiError(e).into_response(),
        }
    }
}

impl ForwardApi for ClientForward {
    fn forward(&self, req: Request) -> BoxFuture<'static, Response> {
        Box::pin(self.clone().run(req))
    }
}
