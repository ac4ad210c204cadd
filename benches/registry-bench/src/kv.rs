//! The registry's KV API and generic GETs under closed-loop load.

use crate::http::{parse_addr, parse_url, Pool};
use crate::load::{self, LoadArgs, Op};
use anyhow::Result;
use bytes::Bytes;
use clap::{Args, ValueEnum};
use http::Method;
use serde_json::{json, Map};
use std::sync::Arc;

/// Key naming shared by the registry and etcd put modes: `key_size` decimal digits, keys
/// interleaved across clients so that the sequence is etcd's `--sequential-keys`.
#[derive(Args, Debug, Clone)]
pub struct KeyArgs {
    /// Key length in bytes (zero-padded decimal).
    #[arg(long, default_value_t = 8)]
    pub key_size: usize,
    /// Value length in bytes.
    #[arg(long, default_value_t = 256)]
    pub value_size: usize,
    /// Number of distinct keys written (keys wrap around).
    #[arg(long, default_value_t = 100_000)]
    pub keyspace: u64,
}

impl KeyArgs {
    pub fn key(&self, client: u64, clients: u64, seq: u64) -> String {
        let n = (seq * clients + client) % self.keyspace.max(1);
        format!("{n:0width$}", width = self.key_size)
    }

    pub fn value(&self) -> Bytes {
        Bytes::from(vec![b'v'; self.value_size])
    }
}

/// Pools for `clients` clients over `conns` connections: each client gets a pool of its
/// own when there are as many connections as clients, otherwise clients share pools.
pub async fn pools(
    addr: std::net::SocketAddr,
    clients: usize,
    conns: usize,
) -> Result<Vec<Arc<Pool>>> {
    let conns = conns.clamp(1, clients.max(1));
    let mut shared = Vec::with_capacity(conns);
    // Spread the connections over up to `conns` pools of equal size.
    let per_pool = 1;
    for _ in 0..conns {
        let p = Arc::new(Pool::new(addr, per_pool));
        p.prefill(per_pool).await?;
        shared.push(p);
    }
    Ok((0..clients)
        .map(|c| Arc::clone(&shared[c % conns]))
        .collect())
}

#[derive(Args, Debug)]
pub struct KvPutArgs {
    /// Registry HTTP address.
    #[arg(long, default_value = "127.0.0.1:8500")]
    pub addr: String,
    #[command(flatten)]
    pub load: LoadArgs,
    #[command(flatten)]
    pub keys: KeyArgs,
}

struct KvPut {
    pool: Arc<Pool>,
    keys: Arc<KeyArgs>,
    client: u64,
    clients: u64,
    value: Bytes,
}

impl Op for KvPut {
    async fn call(&mut self, seq: u64) -> Result<()> {
        let target = format!("/v1/kv/{}", self.keys.key(self.client, self.clients, seq));
        let req = self
            .pool
            .request(Method::PUT, &target, self.value.clone())?;
        let r = self.pool.send_ok(req).await?;
        if r.body.as_ref() != b"true" {
            anyhow::bail!("PUT answered {:?}", String::from_utf8_lossy(&r.body));
        }
        Ok(())
    }
}

pub async fn kv_put(a: KvPutArgs) -> Result<()> {
    let addr = parse_addr(&a.addr)?;
    let clients = a.load.clients.max(1);
    let pools = pools(addr, clients, a.load.conns.unwrap_or(clients)).await?;
    let keys = Arc::new(a.keys.clone());
    let value = keys.value();
    let ops = pools
        .into_iter()
        .enumerate()
        .map(|(c, pool)| KvPut {
            pool,
            keys: Arc::clone(&keys),
            client: c as u64,
            clients: clients as u64,
            value: value.clone(),
        })
        .collect();
    let mut extra = Map::new();
    extra.insert("conns".into(), json!(a.load.conns.unwrap_or(clients)));
    extra.insert("key_size".into(), json!(a.keys.key_size));
    extra.insert("value_size".into(), json!(a.keys.value_size));
    load::run(&a.load, "kv-put", ops, extra).await
}

#[derive(ValueEnum, Debug, Clone, Copy, PartialEq, Eq)]
pub enum Consistency {
    Default,
    Stale,
    Consistent,
}

#[derive(Args, Debug)]
pub struct KvGetArgs {
    /// Registry HTTP address.
    #[arg(long, default_value = "127.0.0.1:8500")]
    pub addr: String,
    #[command(flatten)]
    pub load: LoadArgs,
    /// The key read by every request (written once before the run).
    #[arg(long, default_value = "foo")]
    pub key: String,
    /// Size of the value written to the key before the run.
    #[arg(long, default_value_t = 256)]
    pub value_size: usize,
    #[arg(long, value_enum, default_value_t = Consistency::Default)]
    pub consistency: Consistency,
}

/// A GET of a fixed target, expecting 200.
struct Get {
    pool: Arc<Pool>,
    target: Arc<str>,
}

impl Op for Get {
    async fn call(&mut self, _seq: u64) -> Result<()> {
        let req = self.pool.request(Method::GET, &self.target, Bytes::new())?;
        self.pool.send_ok(req).await?;
        Ok(())
    }
}

pub async fn kv_get(a: KvGetArgs) -> Result<()> {
    let addr = parse_addr(&a.addr)?;
    let clients = a.load.clients.max(1);
    let setup = Pool::new(addr, 1);
    let put = setup.request(
        Method::PUT,
        &format!("/v1/kv/{}", a.key),
        Bytes::from(vec![b'v'; a.value_size]),
    )?;
    setup.send_ok(put).await?;
    let target: Arc<str> = match a.consistency {
        Consistency::Default => format!("/v1/kv/{}", a.key),
        Consistency::Stale => format!("/v1/kv/{}?stale", a.key),
        Consistency::Consistent => format!("/v1/kv/{}?consistent", a.key),
    }
    .into();
    let pools = pools(addr, clients, a.load.conns.unwrap_or(clients)).await?;
    let ops = pools
        .into_iter()
        .map(|pool| Get {
            pool,
            target: Arc::clone(&target),
        })
        .collect();
    let mut extra = Map::new();
    extra.insert(
        "consistency".into(),
        json!(format!("{:?}", a.consistency).to_lowercase()),
    );
    extra.insert("conns".into(), json!(a.load.conns.unwrap_or(clients)));
    load::run(&a.load, "kv-get", ops, extra).await
}

#[derive(Args, Debug)]
pub struct HttpGetArgs {
    /// `http://127.0.0.1:PORT/path?query` (loopback only).
    pub url: String,
    #[command(flatten)]
    pub load: LoadArgs,
}

pub async fn http_get(a: HttpGetArgs) -> Result<()> {
    let (addr, target) = parse_url(&a.url)?;
    let clients = a.load.clients.max(1);
    let pools = pools(addr, clients, a.load.conns.unwrap_or(clients)).await?;
    let target: Arc<str> = target.into();
    // One request first, to report the body size.
    let probe = pools
        .first()
        .map(|p| p.request(Method::GET, &target, Bytes::new()))
        .transpose()?;
    let mut extra = Map::new();
    if let (Some(req), Some(p)) = (probe, pools.first()) {
        let r = p.send_ok(req).await?;
        extra.insert("body_bytes".into(), json!(r.body.len()));
    }
    let ops = pools
        .into_iter()
        .map(|pool| Get {
            pool,
            target: Arc::clone(&target),
        })
        .collect();
    extra.insert("url".into(), json!(a.url));
    load::run(&a.load, "http-get", ops, extra).await
}
