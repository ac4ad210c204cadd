//! etcd v3 load, the anchor: gRPC (what etcd's own `benchmark` tool and the anchor's
//! `etcdbench` speak) with the few protobuf messages declared by hand, so no `protoc` is
//! needed; or etcd's JSON gateway over HTTP/1.1 (`--gateway`), the same transport as the
//! registry's API.

use crate::http::{parse_addr, Pool};
use crate::kv::{pools, KeyArgs};
use crate::load::{self, LoadArgs, Op};
use crate::stats::{emit, Latency};
use anyhow::{bail, Context, Result};
use base64::Engine;
use bytes::Bytes;
use clap::Args;
use http::uri::PathAndQuery;
use serde_json::{json, Map};
use std::sync::Arc;
use std::time::Duration;
use tokio::time::Instant;
use tonic::client::Grpc;
use tonic::transport::{Channel, Endpoint};
use tonic_prost::ProstCodec;

// --- etcdserverpb / mvccpb messages (field numbers from etcd's rpc.proto and kv.proto) ---

#[derive(Clone, PartialEq, prost::Message)]
pub struct ResponseHeader {
    #[prost(uint64, tag = "1")]
    pub cluster_id: u64,
    #[prost(uint64, tag = "2")]
    pub member_id: u64,
    #[prost(int64, tag = "3")]
    pub revision: i64,
    #[prost(uint64, tag = "4")]
    pub raft_term: u64,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct KeyValue {
    #[prost(bytes = "vec", tag = "1")]
    pub key: Vec<u8>,
    #[prost(int64, tag = "2")]
    pub create_revision: i64,
    #[prost(int64, tag = "3")]
    pub mod_revision: i64,
    #[prost(int64, tag = "4")]
    pub version: i64,
    #[prost(bytes = "vec", tag = "5")]
    pub value: Vec<u8>,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct PutRequest {
    #[prost(bytes = "bytes", tag = "1")]
    pub key: Bytes,
    #[prost(bytes = "bytes", tag = "2")]
    pub value: Bytes,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct PutResponse {
    #[prost(message, optional, tag = "1")]
    pub header: Option<ResponseHeader>,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct RangeRequest {
    #[prost(bytes = "bytes", tag = "1")]
    pub key: Bytes,
    #[prost(bool, tag = "7")]
    pub serializable: bool,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct RangeResponse {
    #[prost(message, optional, tag = "1")]
    pub header: Option<ResponseHeader>,
    #[prost(message, repeated, tag = "2")]
    pub kvs: Vec<KeyValue>,
    #[prost(int64, tag = "4")]
    pub count: i64,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct WatchCreateRequest {
    #[prost(bytes = "vec", tag = "1")]
    pub key: Vec<u8>,
}

/// `WatchRequest`'s `request_union` oneof, with only `create_request` (field 1); on the
/// wire a one-armed oneof is the same as an optional field.
#[derive(Clone, PartialEq, prost::Message)]
pub struct WatchRequest {
    #[prost(message, optional, tag = "1")]
    pub create_request: Option<WatchCreateRequest>,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct Event {
    #[prost(int32, tag = "1")]
    pub r#type: i32,
    #[prost(message, optional, tag = "2")]
    pub kv: Option<KeyValue>,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct WatchResponse {
    #[prost(message, optional, tag = "1")]
    pub header: Option<ResponseHeader>,
    #[prost(int64, tag = "2")]
    pub watch_id: i64,
    #[prost(bool, tag = "3")]
    pub created: bool,
    #[prost(bool, tag = "4")]
    pub canceled: bool,
    #[prost(message, repeated, tag = "11")]
    pub events: Vec<Event>,
}

const PUT: &str = "/etcdserverpb.KV/Put";
const RANGE: &str = "/etcdserverpb.KV/Range";
const WATCH: &str = "/etcdserverpb.Watch/Watch";

/// Opens `conns` gRPC channels (one HTTP/2 connection each) to `addr`.
async fn channels(addr: std::net::SocketAddr, conns: usize) -> Result<Vec<Channel>> {
    let mut out = Vec::with_capacity(conns);
    for _ in 0..conns.max(1) {
        let ch = Endpoint::from_shared(format!("http://{addr}"))?
            .tcp_nodelay(true)
            .connect()
            .await
            .with_context(|| format!("connecting to etcd at {addr}"))?;
        out.push(ch);
    }
    Ok(out)
}

async fn unary<Req, Resp>(grpc: &mut Grpc<Channel>, path: &'static str, req: Req) -> Result<Resp>
where
    Req: prost::Message + Send + Sync + 'static,
    Resp: prost::Message + Default + Send + Sync + 'static,
{
    grpc.ready().await?;
    let codec: ProstCodec<Req, Resp> = ProstCodec::default();
    let resp = grpc
        .unary(
            tonic::Request::new(req),
            PathAndQuery::from_static(path),
            codec,
        )
        .await?;
    Ok(resp.into_inner())
}

#[derive(Args, Debug)]
pub struct EtcdPutArgs {
    /// etcd client URL address.
    #[arg(long, default_value = "127.0.0.1:23790")]
    pub endpoint: String,
    #[command(flatten)]
    pub load: LoadArgs,
    #[command(flatten)]
    pub keys: KeyArgs,
    /// Use etcd's JSON gateway (`POST /v3/kv/put`) over HTTP/1.1 instead of gRPC.
    #[arg(long)]
    pub gateway: bool,
}

struct GrpcPut {
    grpc: Grpc<Channel>,
    keys: Arc<KeyArgs>,
    client: u64,
    clients: u64,
    value: Bytes,
}

impl Op for GrpcPut {
    async fn call(&mut self, seq: u64) -> Result<()> {
        let key = Bytes::from(self.keys.key(self.client, self.clients, seq));
        let req = PutRequest {
            key,
            value: self.value.clone(),
        };
        let _: PutResponse = unary(&mut self.grpc, PUT, req).await?;
        Ok(())
    }
}

/// A POST of a JSON body to etcd's gateway, built per request.
struct GatewayPost {
    pool: Arc<Pool>,
    path: &'static str,
    body: Box<dyn Fn(u64) -> Bytes + Send + Sync>,
}

impl Op for GatewayPost {
    async fn call(&mut self, seq: u64) -> Result<()> {
        let req = self
            .pool
            .request(http::Method::POST, self.path, (self.body)(seq))?;
        self.pool.send_ok(req).await?;
        Ok(())
    }
}

fn b64(b: &[u8]) -> String {
    base64::engine::general_purpose::STANDARD.encode(b)
}

pub async fn etcd_put(a: EtcdPutArgs) -> Result<()> {
    let addr = parse_addr(&a.endpoint)?;
    let clients = a.load.clients.max(1);
    let keys = Arc::new(a.keys.clone());
    let value = keys.value();
    let mut extra = Map::new();
    extra.insert("key_size".into(), json!(a.keys.key_size));
    extra.insert("value_size".into(), json!(a.keys.value_size));
    if a.gateway {
        let conns = a.load.conns.unwrap_or(clients);
        extra.insert("conns".into(), json!(conns));
        extra.insert("protocol".into(), json!("json-gateway"));
        let value_b64 = b64(&value);
        let ops = pools(addr, clients, conns)
            .await?
            .into_iter()
            .enumerate()
            .map(|(c, pool)| {
                let keys = Arc::clone(&keys);
                let value_b64 = value_b64.clone();
                GatewayPost {
                    pool,
                    path: "/v3/kv/put",
                    body: Box::new(move |seq| {
                        let key = keys.key(c as u64, clients as u64, seq);
                        Bytes::from(format!(
                            "{{\"key\":\"{}\",\"value\":\"{value_b64}\"}}",
                            b64(key.as_bytes())
                        ))
                    }),
                }
            })
            .collect();
        return load::run(&a.load, "etcd-put", ops, extra).await;
    }
    let conns = a.load.conns.unwrap_or(clients.min(100));
    extra.insert("conns".into(), json!(conns));
    extra.insert("protocol".into(), json!("grpc"));
    let chans = channels(addr, conns).await?;
    let ops = (0..clients)
        .map(|c| GrpcPut {
            grpc: Grpc::new(chans[c % chans.len()].clone()),
            keys: Arc::clone(&keys),
            client: c as u64,
            clients: clients as u64,
            value: value.clone(),
        })
        .collect();
    load::run(&a.load, "etcd-put", ops, extra).await
}

#[derive(Args, Debug)]
pub struct EtcdGetArgs {
    #[arg(long, default_value = "127.0.0.1:23790")]
    pub endpoint: String,
    #[command(flatten)]
    pub load: LoadArgs,
    /// The key read by every request (written once before the run).
    #[arg(long, default_value = "foo")]
    pub key: String,
    #[arg(long, default_value_t = 256)]
    pub value_size: usize,
    /// Serializable (local, possibly stale) reads instead of linearizable ones.
    #[arg(long)]
    pub serializable: bool,
    /// Use etcd's JSON gateway (`POST /v3/kv/range`) instead of gRPC.
    #[arg(long)]
    pub gateway: bool,
}

struct GrpcRange {
    grpc: Grpc<Channel>,
    req: RangeRequest,
}

impl Op for GrpcRange {
    async fn call(&mut self, _seq: u64) -> Result<()> {
        let r: RangeResponse = unary(&mut self.grpc, RANGE, self.req.clone()).await?;
        if r.kvs.is_empty() {
            bail!("range returned no key");
        }
        Ok(())
    }
}

pub async fn etcd_get(a: EtcdGetArgs) -> Result<()> {
    let addr = parse_addr(&a.endpoint)?;
    let clients = a.load.clients.max(1);
    let key = Bytes::from(a.key.clone().into_bytes());
    {
        let ch = channels(addr, 1).await?;
        let mut g = Grpc::new(ch[0].clone());
        let req = PutRequest {
            key: key.clone(),
            value: Bytes::from(vec![b'v'; a.value_size]),
        };
        let _: PutResponse = unary(&mut g, PUT, req).await?;
    }
    let mut extra = Map::new();
    extra.insert(
        "consistency".into(),
        json!(if a.serializable {
            "serializable"
        } else {
            "linearizable"
        }),
    );
    if a.gateway {
        let conns = a.load.conns.unwrap_or(clients);
        extra.insert("conns".into(), json!(conns));
        extra.insert("protocol".into(), json!("json-gateway"));
        let body = Bytes::from(format!(
            "{{\"key\":\"{}\",\"serializable\":{}}}",
            b64(&key),
            a.serializable
        ));
        let ops = pools(addr, clients, conns)
            .await?
            .into_iter()
            .map(|pool| {
                let body = body.clone();
                GatewayPost {
                    pool,
                    path: "/v3/kv/range",
                    body: Box::new(move |_| body.clone()),
                }
            })
            .collect();
        return load::run(&a.load, "etcd-get", ops, extra).await;
    }
    let conns = a.load.conns.unwrap_or(clients.min(100));
    extra.insert("conns".into(), json!(conns));
    extra.insert("protocol".into(), json!("grpc"));
    let chans = channels(addr, conns).await?;
    let req = RangeRequest {
        key,
        serializable: a.serializable,
    };
    let ops = (0..clients)
        .map(|c| GrpcRange {
            grpc: Grpc::new(chans[c % chans.len()].clone()),
            req: req.clone(),
        })
        .collect();
    load::run(&a.load, "etcd-get", ops, extra).await
}

#[derive(Args, Debug)]
pub struct EtcdWatchArgs {
    #[arg(long, default_value = "127.0.0.1:23790")]
    pub endpoint: String,
    /// Watchers of the one key (one Watch stream each).
    #[arg(long, default_value_t = 100)]
    pub watchers: usize,
    /// gRPC connections the watch streams are spread over.
    #[arg(long, default_value_t = 10)]
    pub conns: usize,
    /// Writes per second.
    #[arg(long, default_value_t = 100.0)]
    pub rate: f64,
    /// Number of writes.
    #[arg(long, default_value_t = 1000)]
    pub writes: u64,
    #[arg(long, default_value = "w/target")]
    pub key: String,
    #[arg(long = "pid")]
    pub pids: Vec<String>,
    #[arg(long, default_value = "")]
    pub label: String,
}

/// etcd's watch fan-out: `watchers` Watch streams on one key, one put every 1/rate s;
/// latency = put issued -> event received, per (write, watcher).
pub async fn etcd_watch(a: EtcdWatchArgs) -> Result<()> {
    let addr = parse_addr(&a.endpoint)?;
    let chans = channels(addr, a.conns).await?;
    let epoch = Instant::now();
    let key = a.key.clone().into_bytes();
    let (ready_tx, mut ready_rx) = tokio::sync::mpsc::channel::<()>(a.watchers.max(1));
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let mut handles = Vec::with_capacity(a.watchers);
    for w in 0..a.watchers {
        let mut grpc = Grpc::new(chans[w % chans.len()].clone());
        let key = key.clone();
        let ready = ready_tx.clone();
        let mut stop = stop_rx.clone();
        handles.push(tokio::spawn(async move {
            let (tx, rx) = tokio::sync::mpsc::channel::<WatchRequest>(1);
            tx.send(WatchRequest {
                create_request: Some(WatchCreateRequest { key }),
            })
            .await?;
            grpc.ready().await?;
            let codec: ProstCodec<WatchRequest, WatchResponse> = ProstCodec::default();
            let stream = tokio_stream_from(rx);
            let mut resp = grpc
                .streaming(
                    tonic::Request::new(stream),
                    PathAndQuery::from_static(WATCH),
                    codec,
                )
                .await?
                .into_inner();
            let mut seen: Vec<(u64, u64)> = Vec::new();
            loop {
                let msg = tokio::select! {
                    m = resp.message() => m?,
                    _ = stop.changed() => break,
                };
                let Some(msg) = msg else { break };
                if msg.created {
                    let _ = ready.send(()).await;
                }
                let now = epoch.elapsed().as_nanos() as u64;
                for ev in msg.events {
                    if let Some(kv) = ev.kv {
                        if let Some((seq, sent)) = parse_stamp(&kv.value) {
                            seen.push((seq, now.saturating_sub(sent) / 1000));
                        }
                    }
                }
            }
            drop(tx);
            anyhow::Ok(seen)
        }));
    }
    drop(ready_tx);
    for _ in 0..a.watchers {
        if ready_rx.recv().await.is_none() {
            break;
        }
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    let mut writer = Grpc::new(chans[0].clone());
    let meter = crate::stats::CpuMeter::start(&a.pids)?;
    let mut tick = tokio::time::interval(Duration::from_secs_f64(1.0 / a.rate.max(0.001)));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    for seq in 0..a.writes {
        tick.tick().await;
        let stamp = format!("{seq}:{}", epoch.elapsed().as_nanos());
        let req = PutRequest {
            key: Bytes::from(key.clone()),
            value: Bytes::from(stamp),
        };
        let _: PutResponse = unary(&mut writer, PUT, req).await?;
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    let cpu = meter.stop()?;
    let _ = stop_tx.send(true);
    let mut records = Vec::with_capacity(handles.len());
    for h in handles {
        records.push(h.await??);
    }
    let mut out = Map::new();
    watch_summary(
        "etcd-watch",
        &a.label,
        a.watchers,
        a.writes,
        &records,
        &mut out,
    )?;
    out.insert("rate".into(), json!(a.rate));
    let deliveries = out.get("deliveries").and_then(|v| v.as_u64()).unwrap_or(0);
    cpu.add_to(deliveries, &mut out);
    emit(out);
    Ok(())
}

fn tokio_stream_from<T: Send + 'static>(
    mut rx: tokio::sync::mpsc::Receiver<T>,
) -> impl futures::Stream<Item = T> + Send + 'static {
    futures::stream::poll_fn(move |cx| rx.poll_recv(cx))
}

/// Parses a `seq:nanos` stamp written by a watch-mode writer.
pub fn parse_stamp(v: &[u8]) -> Option<(u64, u64)> {
    let s = std::str::from_utf8(v).ok()?;
    let (a, b) = s.split_once(':')?;
    Some((a.parse().ok()?, b.parse().ok()?))
}

/// Summarises (seq, latency µs) records of `watchers` watchers over `writes` writes into
/// the fan-out figures: per (write, watcher) latency, per write "all woken" latency, and
/// how many deliveries were missed (coalesced).
pub fn watch_summary(
    mode: &str,
    label: &str,
    watchers: usize,
    writes: u64,
    records: &[Vec<(u64, u64)>],
    out: &mut Map<String, serde_json::Value>,
) -> Result<()> {
    let mut each = Latency::new()?;
    let mut per_write_max = vec![0u64; writes as usize];
    let mut per_write_count = vec![0u64; writes as usize];
    for w in records {
        for &(seq, us) in w {
            if let Some(slot) = per_write_max.get_mut(seq as usize) {
                *slot = (*slot).max(us);
                per_write_count[seq as usize] += 1;
                each.record_us(us);
            }
        }
    }
    let mut all = Latency::new()?;
    let mut complete = 0u64;
    for (i, &m) in per_write_max.iter().enumerate() {
        if per_write_count[i] == watchers as u64 {
            all.record_us(m);
            complete += 1;
        }
    }
    let delivered = each.count();
    out.insert("mode".into(), json!(mode));
    out.insert("label".into(), json!(label));
    out.insert("watchers".into(), json!(watchers));
    out.insert("writes".into(), json!(writes));
    out.insert("deliveries".into(), json!(delivered));
    out.insert(
        "missed_deliveries".into(),
        json!((watchers as u64 * writes).saturating_sub(delivered)),
    );
    out.insert("writes_seen_by_all".into(), json!(complete));
    each.to_json("", out);
    all.to_json("all_", out);
    Ok(())
}
