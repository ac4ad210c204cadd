//! Blocking-query fan-out: N long-polling `GET /v1/kv/<key>?index=` watchers of one key,
//! M more parked on other keys, and a writer pacing PUTs of `seq:nanos` stamps. Latency is
//! PUT issued (the stamp is taken just before the request is sent) -> the watcher has read
//! the whole response carrying that value, timed before the response is decoded (as etcd's
//! watch test measures put issued -> event received). Parked watchers' returns are counted:
//! they should be 0.

use crate::etcd::{parse_stamp, watch_summary};
use crate::http::{parse_addr, Pool};
use crate::stats::{emit, CpuMeter};
use anyhow::{bail, Context, Result};
use base64::Engine;
use bytes::Bytes;
use clap::Args;
use http::Method;
use serde_json::{json, Map};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::time::Instant;

#[derive(Args, Debug)]
pub struct WatchArgs {
    /// Registry HTTP address.
    #[arg(long, default_value = "127.0.0.1:8500")]
    pub addr: String,
    /// Where the watchers connect, comma-separated (default: `--addr`): watcher i uses
    /// address i mod n, e.g. client agents while the writer writes to a server.
    #[arg(long)]
    pub watch_addrs: Option<String>,
    /// Watchers of the written key (one connection each).
    #[arg(long, default_value_t = 100)]
    pub watchers: usize,
    /// Watchers parked on other keys that are never written (one connection each).
    #[arg(long, default_value_t = 0)]
    pub parked: usize,
    /// Writes per second.
    #[arg(long, default_value_t = 100.0)]
    pub rate: f64,
    /// Number of writes.
    #[arg(long, default_value_t = 1000)]
    pub writes: u64,
    #[arg(long, default_value = "w/target")]
    pub key: String,
    /// Watch `/v1/health/service/<SERVICE>` instead of a key: each write re-registers the
    /// service's one instance with the stamp in its `Meta` (through `/v1/catalog/register`).
    #[arg(long)]
    pub service: Option<String>,
    /// With `--service`: watch `/v1/catalog/service/<SERVICE>` rather than its health.
    #[arg(long)]
    pub catalog: bool,
    /// `?wait=` of every blocking query.
    #[arg(long, default_value = "5m")]
    pub wait: String,
    /// Server PID(s) to meter.
    #[arg(long = "pid")]
    pub pids: Vec<String>,
    #[arg(long, default_value = "")]
    pub label: String,
}

/// The stamp in a single-key GET body (`[{...,"Value":"<base64>",...}]`), found by a scan
/// rather than a JSON parse: a thousand watchers decode a thousand bodies per write, and the
/// load generator must not be what the figure measures.
fn stamp_of(body: &[u8]) -> Option<(u64, u64)> {
    const FIELD: &[u8] = b"\"Value\":\"";
    let at = body.windows(FIELD.len()).position(|w| w == FIELD)? + FIELD.len();
    let len = body[at..].iter().position(|&b| b == b'"')?;
    let raw = base64::engine::general_purpose::STANDARD
        .decode(&body[at..at + len])
        .ok()?;
    parse_stamp(&raw)
}

async fn put(pool: &Pool, key: &str, value: Bytes) -> Result<()> {
    let req = pool.request(Method::PUT, &format!("/v1/kv/{key}"), value)?;
    pool.send_ok(req).await?;
    Ok(())
}

/// What the watchers watch: a KV key, or a service (its health, or its catalog entries when
/// the flag is set).
#[derive(Debug, Clone)]
enum Target {
    Key(String),
    Service(String, bool),
}

impl Target {
    fn path(&self) -> String {
        match self {
            Target::Key(k) => format!("/v1/kv/{k}"),
            Target::Service(s, false) => format!("/v1/health/service/{s}"),
            Target::Service(s, true) => format!("/v1/catalog/service/{s}"),
        }
    }

    fn stamp(&self, body: &[u8]) -> Option<(u64, u64)> {
        match self {
            Target::Key(_) => stamp_of(body),
            Target::Service(..) => {
                const FIELD: &[u8] = b"\"stamp\":\"";
                let at = body.windows(FIELD.len()).position(|w| w == FIELD)? + FIELD.len();
                let len = body[at..].iter().position(|&b| b == b'"')?;
                parse_stamp(&body[at..at + len])
            }
        }
    }

    async fn write(&self, pool: &Pool, value: &str) -> Result<()> {
        match self {
            Target::Key(k) => put(pool, k, Bytes::from(value.to_string())).await,
            Target::Service(s, _) => {
                let body = json!({
                    "Node": "bench-node",
                    "Address": "127.0.0.1",
                    "Service": {"ID": format!("{s}-1"), "Service": s, "Port": 80,
                                "Meta": {"stamp": value}},
                });
                let req = pool.request(
                    Method::PUT,
                    "/v1/catalog/register",
                    Bytes::from(body.to_string()),
                )?;
                pool.send_ok(req).await?;
                Ok(())
            }
        }
    }
}

/// One long-polling connection: a hand-written HTTP/1.1 GET and a response read straight off
/// the socket (status, `Content-Length`, `X-Consul-Index`), with no connection task between
/// the socket and the watcher. hyper's client costs ~20 CPU-µs per response here, as much as
/// the server's side of the exchange; this costs a few.
struct LongPoll {
    stream: TcpStream,
    host: String,
    buf: Vec<u8>,
    req: Vec<u8>,
}

/// A response read by [`LongPoll::get`]; the body is `buf[body]`.
struct Polled {
    status: u16,
    index: Option<u64>,
    body: std::ops::Range<usize>,
}

impl LongPoll {
    async fn connect(addr: SocketAddr) -> Result<Self> {
        let stream = TcpStream::connect(addr)
            .await
            .with_context(|| format!("connecting to {addr}"))?;
        stream.set_nodelay(true)?;
        Ok(LongPoll {
            stream,
            host: addr.to_string(),
            buf: Vec::with_capacity(4096),
            req: Vec::with_capacity(256),
        })
    }

    /// Sends `GET target` and reads the whole response.
    async fn get(&mut self, target: &str) -> Result<Polled> {
        use std::io::Write as _;
        self.req.clear();
        write!(
            self.req,
            "GET {target} HTTP/1.1\r\nHost: {}\r\n\r\n",
            self.host
        )?;
        self.stream.write_all(&self.req).await?;
        self.buf.clear();
        let (status, index, head, body_len) = loop {
            if self.buf.len() == self.buf.capacity() {
                self.buf.reserve(self.buf.len());
            }
            if self.stream.read_buf(&mut self.buf).await? == 0 {
                bail!("connection closed by the server");
            }
            let mut headers = [httparse::EMPTY_HEADER; 32];
            let mut resp = httparse::Response::new(&mut headers);
            let httparse::Status::Complete(head) = resp.parse(&self.buf)? else {
                continue;
            };
            let mut len = None;
            let mut index = None;
            for h in resp.headers.iter() {
                if h.name.eq_ignore_ascii_case("content-length") {
                    len = std::str::from_utf8(h.value)
                        .ok()
                        .and_then(|v| v.parse().ok());
                } else if h.name.eq_ignore_ascii_case("x-consul-index") {
                    index = std::str::from_utf8(h.value)
                        .ok()
                        .and_then(|v| v.parse().ok());
                } else if h.name.eq_ignore_ascii_case("transfer-encoding") {
                    bail!("chunked responses are not supported by the watch client");
                }
            }
            let len: usize = len.context("response without Content-Length")?;
            break (resp.code.unwrap_or(0), index, head, len);
        };
        while self.buf.len() < head + body_len {
            self.buf.reserve(head + body_len - self.buf.len());
            if self.stream.read_buf(&mut self.buf).await? == 0 {
                bail!("connection closed mid-response");
            }
        }
        Ok(Polled {
            status,
            index,
            body: head..head + body_len,
        })
    }
}

/// A blocking watcher loop on `key`: returns the (seq, µs) of every stamp it saw.
async fn watcher(
    addr: SocketAddr,
    target: Target,
    wait: String,
    epoch: Instant,
    ready: tokio::sync::mpsc::Sender<()>,
    mut stop: tokio::sync::watch::Receiver<bool>,
    returns: Arc<AtomicU64>,
) -> Result<Vec<(u64, u64)>> {
    let mut conn = LongPoll::connect(addr).await?;
    let path = target.path();
    let first = conn.get(&path).await?;
    if first.status != 200 {
        bail!("GET {path}: HTTP {}", first.status);
    }
    let mut index = first.index.context("no X-Consul-Index")?;
    let _ = ready.send(()).await;
    drop(ready);
    let mut seen = Vec::new();
    let mut uri = String::with_capacity(path.len() + 64);
    loop {
        uri.clear();
        {
            use std::fmt::Write as _;
            let _ = write!(uri, "{path}?index={index}&wait={wait}");
        }
        let r = tokio::select! {
            r = conn.get(&uri) => r?,
            _ = stop.changed() => break,
        };
        // The arrival time, before anything else is done with the response.
        let now = epoch.elapsed().as_nanos() as u64;
        returns.fetch_add(1, Ordering::Relaxed);
        if r.status != 200 {
            bail!("blocking GET {path}: HTTP {}", r.status);
        }
        let new_index = r.index.context("no X-Consul-Index")?;
        if new_index != index {
            if let Some((seq, sent)) = target.stamp(&conn.buf[r.body]) {
                seen.push((seq, now.saturating_sub(sent) / 1000));
            }
        }
        // Consul's rule: an index that goes backwards resets to 0.
        index = if new_index < index { 0 } else { new_index };
    }
    Ok(seen)
}

pub async fn watch(a: WatchArgs) -> Result<()> {
    let addr = parse_addr(&a.addr)?;
    let watch_addrs: Vec<SocketAddr> = match &a.watch_addrs {
        Some(list) => list
            .split(',')
            .filter(|s| !s.trim().is_empty())
            .map(|s| parse_addr(s.trim()))
            .collect::<Result<_>>()?,
        None => vec![addr],
    };
    if watch_addrs.is_empty() {
        bail!("--watch-addrs lists no address");
    }
    let epoch = Instant::now();
    let setup = Pool::new(addr, 16);
    let hot_target = match &a.service {
        Some(s) => Target::Service(s.clone(), a.catalog),
        None => Target::Key(a.key.clone()),
    };
    hot_target.write(&setup, "init").await?;
    // Parked watchers watch keys that exist but are never written during the run.
    if a.parked > 0 {
        let setup = Arc::new(setup);
        let mut tasks = Vec::new();
        for chunk in 0..16usize {
            let setup = Arc::clone(&setup);
            let n = a.parked;
            tasks.push(tokio::spawn(async move {
                let mut i = chunk;
                while i < n {
                    put(&setup, &format!("parked/{i}"), Bytes::from_static(b"x")).await?;
                    i += 16;
                }
                anyhow::Ok(())
            }));
        }
        for t in tasks {
            t.await??;
        }
    }
    let total = a.watchers + a.parked;
    let (ready_tx, mut ready_rx) = tokio::sync::mpsc::channel::<()>(total.max(1));
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let hot_returns = Arc::new(AtomicU64::new(0));
    let parked_returns = Arc::new(AtomicU64::new(0));
    let mut hot = Vec::with_capacity(a.watchers);
    let mut parked = Vec::with_capacity(a.parked);
    for i in 0..total {
        let (key, counter) = if i < a.watchers {
            (hot_target.clone(), Arc::clone(&hot_returns))
        } else {
            (
                Target::Key(format!("parked/{}", i - a.watchers)),
                Arc::clone(&parked_returns),
            )
        };
        let h = tokio::spawn(watcher(
            watch_addrs[i % watch_addrs.len()],
            key,
            a.wait.clone(),
            epoch,
            ready_tx.clone(),
            stop_rx.clone(),
            counter,
        ));
        if i < a.watchers {
            hot.push(h);
        } else {
            parked.push(h);
        }
        // Connection setup in bursts of 256, to stay under the listen backlog.
        if i % 256 == 255 {
            tokio::task::yield_now().await;
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }
    drop(ready_tx);
    let mut ready = 0;
    let deadline = Instant::now() + Duration::from_secs(60);
    while ready < total {
        match tokio::time::timeout_at(deadline, ready_rx.recv()).await {
            Ok(Some(())) => ready += 1,
            _ => break,
        }
    }
    if ready < total {
        bail!("only {ready} of {total} watchers started (raise `ulimit -n`?)");
    }
    // Let the last watchers' blocking requests reach the server and park.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let parked_before = parked_returns.load(Ordering::Relaxed);
    let meter = CpuMeter::start(&a.pids)?;
    let writer = Pool::new(addr, 1);
    writer.prefill(1).await?;
    let mut tick = tokio::time::interval(Duration::from_secs_f64(1.0 / a.rate.max(0.001)));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut write_lat = crate::stats::Latency::new()?;
    for seq in 0..a.writes {
        tick.tick().await;
        let t0 = Instant::now();
        let stamp = format!("{seq}:{}", epoch.elapsed().as_nanos());
        hot_target.write(&writer, &stamp).await?;
        write_lat.record(t0.elapsed());
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    let cpu = meter.stop()?;
    let parked_during = parked_returns.load(Ordering::Relaxed) - parked_before;
    let _ = stop_tx.send(true);
    let mut records = Vec::with_capacity(hot.len());
    for h in hot {
        records.push(h.await??);
    }
    for h in parked {
        h.await??;
    }
    let mut out = Map::new();
    watch_summary("watch", &a.label, a.watchers, a.writes, &records, &mut out)?;
    out.insert("rate".into(), json!(a.rate));
    out.insert("watch_addrs".into(), json!(watch_addrs.len()));
    out.insert("parked".into(), json!(a.parked));
    out.insert("parked_returns".into(), json!(parked_during));
    out.insert(
        "parked_wakes_per_write".into(),
        json!(parked_during as f64 / a.writes.max(1) as f64),
    );
    out.insert(
        "watcher_returns".into(),
        json!(hot_returns.load(Ordering::Relaxed)),
    );
    out.insert("write_p50_us".into(), json!(write_lat.quantile_us(0.5)));
    out.insert("write_p99_us".into(), json!(write_lat.quantile_us(0.99)));
    let deliveries = out.get("deliveries").and_then(|v| v.as_u64()).unwrap_or(0);
    cpu.add_to(deliveries, &mut out);
    emit(out);
    Ok(())
}
