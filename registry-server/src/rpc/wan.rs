//! Other datacenters: which ones exist and where their servers are ([`DatacenterDirectory`],
//! fed by the WAN gossip pool), how far each is ([`RttEstimate`], measured by [`PingRtt`]),
//! and THE entry point that runs one v1 request in a named datacenter
//! ([`Datacenters::run_in_datacenter`]), used by `?dc=` forwarding ([`super::wan_http`]), DNS
//! questions about another datacenter, and anything else that must read another
//! datacenter's state.
//!
//! A request for another datacenter travels whole ([`ApiRequest`], marked [`Hop::Client`])
//! to an alive server of that datacenter over the server port, which serves it as if it had
//! arrived on its own HTTP port (a write goes on to its leader), and the answer (status,
//! `X-Consul-*` headers, body) comes back unchanged. The server that answered last is tried
//! first; a server that cannot be reached is skipped for the next one; a read whose server
//! fails mid-call (a blocking query in flight) is sent again to the next one; a write whose
//! outcome is unknown is not repeated. A datacenter with no alive server, or whose servers
//! all refuse the connection, answers Consul's "No path to datacenter" at once.

use super::api::{ApiReply, ApiRequest, ApiSlot};
use super::forward::{ForwardError, Forwarder};
use super::{API_PATH, DNS_PATH, PING_PATH};
use crate::ServerError;
use axum::http::StatusCode;
use axum::response::IntoResponse;
use futures::future::BoxFuture;
use parking_lot::{Mutex, RwLock};
use rand::seq::SliceRandom;
use std::collections::{BTreeSet, HashMap, VecDeque};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

/// How long a connection to a remote server may take before the next one is tried.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(1);
/// How often the round-trip time to every remote datacenter is measured.
pub const PING_INTERVAL: Duration = Duration::from_secs(2);
/// Rounds of measurements an estimate is taken from (the smallest of them).
const PING_WINDOW: usize = 5;
/// Servers per datacenter pinged each round.
const PING_SERVERS: usize = 3;

/// The datacenters and their servers, as the WAN pool sees them.
pub trait DatacenterDirectory: Send + Sync + 'static {
    /// Every datacenter with a server that has not left (this one included).
    fn datacenters(&self) -> Vec<String>;
    /// The alive servers of `dc` (case-insensitive): node name and server-port address.
    fn servers(&self, dc: &str) -> Vec<(String, String)>;
}

/// An estimate of the round-trip time from this server to a datacenter. [`PingRtt`] measures
/// it; network coordinates can replace it through [`Datacenters::set_rtt`].
pub trait RttEstimate: Send + Sync + 'static {
    /// The estimated round trip to `dc`, if known.
    fn rtt(&self, dc: &str) -> Option<Duration>;
}

/// Round trips measured with a small request to the server port of every remote
/// datacenter's servers, every [`PING_INTERVAL`]; a datacenter's estimate is the smallest
/// of its last rounds' fastest answers (queueing only ever adds delay).
#[derive(Debug, Default)]
pub struct PingRtt {
    samples: Mutex<HashMap<String, VecDeque<Duration>>>,
}

impl PingRtt {
    fn record(&self, dc: &str, rtt: Duration) {
        let mut s = self.samples.lock();
        let q = s.entry(dc.to_ascii_lowercase()).or_default();
        q.push_back(rtt);
        while q.len() > PING_WINDOW {
            q.pop_front();
        }
    }

    fn forget_except(&self, known: &BTreeSet<String>) {
        self.samples.lock().retain(|dc, _| known.contains(dc));
    }
}

impl RttEstimate for PingRtt {
    fn rtt(&self, dc: &str) -> Option<Duration> {
        self.samples
            .lock()
            .get(&dc.to_ascii_lowercase())?
            .iter()
            .min()
            .copied()
    }
}

/// The datacenters this server can reach, and the way to run requests in them.
pub struct Datacenters {
    local: String,
    api: Arc<ApiSlot>,
    dir: OnceLock<Arc<dyn DatacenterDirectory>>,
    pings: Arc<PingRtt>,
    rtt: RwLock<Arc<dyn RttEstimate>>,
    fwd: Forwarder,
    http: reqwest::Client,
    sticky: Mutex<HashMap<String, String>>,
    /// WAN network coordinates (published by the WAN pool's Vivaldi loop).
    pub coordinates: super::wan_coord::WanCoordinates,
}

impl std::fmt::Debug for Datacenters {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Datacenters")
            .field("local", &self.local)
            .field("wan", &self.dir.get().is_some())
            .finish_non_exhaustive()
    }
}

impl Datacenters {
    /// This server's view, before the WAN pool is known: only `local`, served through `api`.
    pub fn new(local: &str, api: Arc<ApiSlot>) -> Result<Arc<Self>, ServerError> {
        let http = reqwest::Client::builder()
            .no_proxy()
            .tcp_nodelay(true)
            .connect_timeout(CONNECT_TIMEOUT)
            .pool_max_idle_per_host(64)
            .build()
            .map_err(|e| ServerError::Internal(format!("building the WAN client: {e}")))?;
        let pings = Arc::new(PingRtt::default());
        Ok(Arc::new(Datacenters {
            local: local.to_string(),
            api,
            dir: OnceLock::new(),
            rtt: RwLock::new(pings.clone()),
            pings,
            fwd: Forwarder::new(http.clone()),
            http,
            sticky: Mutex::new(HashMap::new()),
            coordinates: Default::default(),
        }))
    }

    /// Installs the WAN directory (later calls are ignored) and starts measuring round trips.
    pub fn install(self: &Arc<Self>, dir: Arc<dyn DatacenterDirectory>) {
        if self.dir.set(dir).is_ok() {
            tokio::spawn(ping_loop(Arc::downgrade(self)));
        }
    }

    /// Replaces the round-trip estimate (network coordinates).
    pub fn set_rtt(&self, rtt: Arc<dyn RttEstimate>) {
        *self.rtt.write() = rtt;
    }

    /// This server's datacenter.
    pub fn local(&self) -> &str {
        &self.local
    }

    /// Whether `dc` names this datacenter ("" does).
    pub fn is_local(&self, dc: &str) -> bool {
        dc.is_empty() || dc.eq_ignore_ascii_case(&self.local)
    }

    /// The estimated round trip to `dc` (zero for this one): from the WAN network
    /// coordinates, else from the installed estimate (measured pings).
    pub fn rtt(&self, dc: &str) -> Option<Duration> {
        if self.is_local(dc) {
            return Some(Duration::ZERO);
        }
        self.coordinates.rtt(dc).or_else(|| self.rtt.read().rtt(dc))
    }

    /// Every known datacenter, nearest first (this one first; those without an estimate
    /// last; ties by name): `/v1/catalog/datacenters`.
    pub fn by_distance(&self) -> Vec<String> {
        let mut all: BTreeSet<String> = self
            .dir
            .get()
            .map(|d| d.datacenters())
            .unwrap_or_default()
            .into_iter()
            .collect();
        all.insert(self.local.clone());
        let mut list: Vec<(Option<Duration>, String)> =
            all.into_iter().map(|dc| (self.rtt(&dc), dc)).collect();
        list.sort_by(|a, b| match (a.0, b.0) {
            (Some(x), Some(y)) => x.cmp(&y).then_with(|| a.1.cmp(&b.1)),
            (Some(_), None) => std::cmp::Ordering::Less,
            (None, Some(_)) => std::cmp::Ordering::Greater,
            (None, None) => a.1.cmp(&b.1),
        });
        list.into_iter().map(|(_, dc)| dc).collect()
    }

    /// The alive servers of `dc`, the one that answered last first, the others shuffled.
    fn servers(&self, dc: &str) -> Vec<String> {
        let Some(dir) = self.dir.get() else {
            return Vec::new();
        };
        let mut addrs: Vec<String> = dir.servers(dc).into_iter().map(|(_, a)| a).collect();
        addrs.shuffle(&mut rand::thread_rng());
        if let Some(cur) = self.sticky.lock().get(&dc.to_ascii_lowercase()) {
            if let Some(i) = addrs.iter().position(|a| a == cur) {
                let a = addrs.remove(i);
                addrs.insert(0, a);
            }
        }
        addrs
    }

    /// Posts `req` to `path` on a server of the remote datacenter `dc`, failing over as the
    /// module says. `retry_unknown`: the call may be repeated after its outcome became
    /// unknown (reads).
    async fn call_remote<Req, Resp>(
        &self,
        dc: &str,
        path: &str,
        req: &Req,
        limit: Duration,
        retry_unknown: bool,
    ) -> Result<Resp, ServerError>
    where
        Req: serde::Serialize,
        Resp: serde::de::DeserializeOwned,
    {
        let servers = self.servers(dc);
        if servers.is_empty() {
            return Err(ServerError::NoPathToDatacenter);
        }
        let mut failed: Option<String> = None;
        for addr in servers {
            match self.fwd.call_timeout(&addr, path, req, limit).await {
                Ok(v) => {
                    self.sticky.lock().insert(dc.to_ascii_lowercase(), addr);
                    return Ok(v);
                }
                Err(ForwardError::NotSent(m)) => {
                    tracing::debug!(%dc, server = %addr, error = %m, "remote server unreachable");
                }
                Err(ForwardError::NotLeader) => {
                    tracing::debug!(%dc, server = %addr, "remote server not serving yet");
                }
                Err(ForwardError::Failed(m)) if retry_unknown => {
                    tracing::debug!(%dc, server = %addr, error = %m, "remote call failed; trying the next server");
                    failed = Some(m);
                }
                Err(ForwardError::Failed(m)) => {
                    return Err(ServerError::Internal(format!("rpc error: {m}")));
                }
            }
            let mut sticky = self.sticky.lock();
            let key = dc.to_ascii_lowercase();
            if sticky.get(&key) == Some(&addr) {
                sticky.remove(&key);
            }
        }
        match failed {
            Some(m) => Err(ServerError::Internal(format!("rpc error: {m}"))),
            // No server could even be reached.
            None => Err(ServerError::NoPathToDatacenter),
        }
    }

    /// Runs one v1 API request in datacenter `dc` and returns its answer, as that
    /// datacenter's servers would have answered it on their own HTTP port: on this server
    /// when `dc` is this datacenter, else on a healthy server of `dc` (see the module).
    /// Unknown or unreachable datacenters give [`ServerError::NoPathToDatacenter`].
    ///
    /// This is the one way to act in another datacenter: `?dc=` forwarding, DNS
    /// forwarding and prepared-query failover all go through it.
    pub async fn run_in_datacenter(
        &self,
        dc: &str,
        req: ApiRequest,
    ) -> Result<ApiReply, ServerError> {
        if self.is_local(dc) {
            let http = req.into_request().map_err(ServerError::BadRequest)?;
            let Some(resp) = self.api.call(http).await else {
                return Err(ServerError::NoLeader);
            };
            return ApiReply::from_response(resp)
                .await
                .map_err(ServerError::Internal);
        }
        let read = matches!(req.method.as_str(), "GET" | "HEAD");
        let limit = req.time_limit();
        self.call_remote(dc, API_PATH, &req, limit, read).await
    }

    /// Answers a DNS question about datacenter `dc` with that datacenter's DNS engine
    /// (the packet as it arrived; the reply packet back).
    pub async fn dns_in_datacenter(
        &self,
        dc: &str,
        q: &super::dns::DnsQuery,
    ) -> Result<Vec<u8>, ServerError> {
        let reply: axum::body::Bytes = self
            .call_remote(dc, DNS_PATH, q, Duration::from_secs(5), true)
            .await?;
        Ok(reply.to_vec())
    }

    /// One round of round-trip measurements.
    async fn ping_round(&self) {
        let Some(dir) = self.dir.get() else { return };
        let dcs: BTreeSet<String> = dir
            .datacenters()
            .into_iter()
            .map(|d| d.to_ascii_lowercase())
            .filter(|d| !self.is_local(d))
            .collect();
        self.pings.forget_except(&dcs);
        let rounds = dcs.iter().map(|dc| {
            let servers: Vec<String> = dir
                .servers(dc)
                .into_iter()
                .take(PING_SERVERS)
                .map(|(_, a)| a)
                .collect();
            async move {
                let times = futures::future::join_all(servers.iter().map(|a| self.ping(a))).await;
                if let Some(best) = times.into_iter().flatten().min() {
                    self.pings.record(dc, best);
                }
            }
        });
        futures::future::join_all(rounds).await;
    }

    /// The round trip of one small request to `addr`'s server port (over a kept-alive
    /// connection after the first round).
    async fn ping(&self, addr: &str) -> Option<Duration> {
        let url = format!("http://{addr}{PING_PATH}");
        let started = Instant::now();
        let resp = self
            .http
            .get(&url)
            .timeout(Duration::from_secs(2))
            .send()
            .await
            .ok()?;
        let _ = resp.bytes().await.ok()?;
        Some(started.elapsed())
    }
}

async fn ping_loop(me: std::sync::Weak<Datacenters>) {
    loop {
        let Some(d) = me.upgrade() else { return };
        // The first round opens the connections; its times include the TCP handshake.
        d.ping_round().await;
        drop(d);
        tokio::time::sleep(PING_INTERVAL).await;
    }
}

/// `GET /v1/internal/rpc/ping`: an empty answer, for round-trip measurements.
pub(crate) async fn ping() -> impl IntoResponse {
    StatusCode::OK
}

/// A [`DatacenterDirectory`] for tests and tools: fixed servers per datacenter.
#[derive(Debug, Default)]
pub struct StaticDirectory(pub HashMap<String, Vec<(String, String)>>);

impl DatacenterDirectory for StaticDirectory {
    fn datacenters(&self) -> Vec<String> {
        self.0.keys().cloned().collect()
    }

    fn servers(&self, dc: &str) -> Vec<(String, String)> {
        self.0
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(dc))
            .map(|(_, v)| v.clone())
            .unwrap_or_default()
    }
}

/// Something that can run requests in other datacenters (for callers that hold it behind a
/// trait object, such as prepared-query failover).
pub trait RunInDatacenter: Send + Sync + 'static {
    /// See [`Datacenters::run_in_datacenter`].
    fn run_in_datacenter<'a>(
        &'a self,
        dc: &'a str,
        req: ApiRequest,
    ) -> BoxFuture<'a, Result<ApiReply, ServerError>>;
}

impl RunInDatacenter for Datacenters {
    fn run_in_datacenter<'a>(
        &'a self,
        dc: &'a str,
        req: ApiRequest,
    ) -> BoxFuture<'a, Result<ApiReply, ServerError>> {
        Box::pin(Datacenters::run_in_datacenter(self, dc, req))
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    #[test]
    fn rtt_estimate_is_the_smallest_recent_sample() {
        let p = PingRtt::default();
        assert_eq!(p.rtt("dc2"), None);
        for ms in [30, 10, 20] {
            p.record("DC2", Duration::from_millis(ms));
        }
        assert_eq!(p.rtt("dc2"), Some(Duration::from_millis(10)));
        for _ in 0..PING_WINDOW {
            p.record("dc2", Duration::from_millis(50));
        }
        assert_eq!(p.rtt("dc2"), Some(Duration::from_millis(50)));
        p.forget_except(&BTreeSet::new());
        assert_eq!(p.rtt("dc2"), None);
    }

    #[tokio::test]
    async fn sorted_by_distance_and_unknown_datacenter_has_no_path() {
        let d = Datacenters::new("dc1", Arc::default()).unwrap();
        let mut m = HashMap::new();
        for dc in ["dc1", "dc2", "dc3", "dc4"] {
            m.insert(dc.to_string(), Vec::new());
        }
        d.install(Arc::new(StaticDirectory(m)));
        d.pings.record("dc3", Duration::from_millis(5));
        d.pings.record("dc2", Duration::from_millis(50));
        assert_eq!(d.by_distance(), ["dc1", "dc3", "dc2", "dc4"]);
        let req = ApiRequest {
            hop: super::super::api::Hop::Client,
            method: "GET".into(),
            uri: "/v1/catalog/nodes?dc=dc9".into(),
            headers: Vec::new(),
            body: Default::default(),
        };
        let err = d.run_in_datacenter("dc9", req).await.unwrap_err();
        assert!(matches!(err, ServerError::NoPathToDatacenter));
    }
}
