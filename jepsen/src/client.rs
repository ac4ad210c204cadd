//! Clients: each worker talks to one server over HTTP and records every operation it tries in
//! the shared history. Errors are classified as Jepsen does: a request that never reached the
//! server (connection refused) certainly did not happen (`fail`); a timeout, a dropped
//! connection or a 500 on a write may have happened (`info`), after which the worker continues
//! as a new process.

use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use reqwest::Method;
use serde_json::Value;

use crate::db::Db;
use crate::history::{Kind, Recorder};

/// What every worker shares.
#[derive(Debug)]
pub struct Ctx {
    /// The history.
    pub rec: Arc<Recorder>,
    /// Number of servers.
    pub servers: usize,
    /// Number of client agents the workers talk to (0: the servers).
    pub agents: usize,
    /// Number of workers (the process-number stride).
    pub concurrency: usize,
    /// When workers stop invoking operations.
    pub deadline: tokio::time::Instant,
    /// Timeout of one request.
    pub timeout: Duration,
    /// Mean pause between a worker's operations.
    pub interval: Duration,
    /// Source of unique values.
    pub counter: AtomicI64,
}

impl Ctx {
    /// A fresh unique value.
    pub fn unique(&self) -> i64 {
        self.counter.fetch_add(1, Ordering::Relaxed) + 1
    }
}

/// A server's answer.
#[derive(Debug)]
pub struct Resp {
    /// HTTP status.
    pub status: u16,
    /// `X-Consul-Index`, if present.
    pub index: Option<u64>,
    /// Body.
    pub body: String,
}

impl Resp {
    /// The body as JSON (`Null` when it is not).
    pub fn json(&self) -> Value {
        serde_json::from_str(&self.body).unwrap_or(Value::Null)
    }
}

/// Why a request has no answer.
#[derive(Debug)]
pub enum ReqErr {
    /// It was never sent (connection refused): it did not happen.
    NotSent(String),
    /// It may have been received (timeout, connection lost).
    Unknown(String),
}

impl ReqErr {
    /// The message.
    pub fn msg(&self) -> String {
        match self {
            ReqErr::NotSent(m) | ReqErr::Unknown(m) => m.clone(),
        }
    }
}

/// One client.
#[derive(Debug)]
pub struct Worker {
    /// Shared state.
    pub ctx: Arc<Ctx>,
    /// Worker slot (0-based).
    pub slot: usize,
    /// Current logical process.
    pub process: u64,
    /// The server it talks to (1-based).
    pub node: usize,
    /// Base URL of the agent this worker talks to.
    base: String,
    http: reqwest::Client,
}

impl Worker {
    /// Worker `slot`, bound to server `slot % servers + 1`, or with client agents to agent
    /// `slot % agents + 1` (recorded as node `servers + j`).
    pub fn new(ctx: Arc<Ctx>, slot: usize) -> anyhow::Result<Worker> {
        let http = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(1))
            .pool_max_idle_per_host(2)
            .build()?;
        let (node, base) = if ctx.agents > 0 {
            let j = slot % ctx.agents + 1;
            (ctx.servers + j, Db::agent_url(j))
        } else {
            let i = slot % ctx.servers + 1;
            (i, Db::url(i))
        };
        Ok(Worker {
            base,
            ctx,
            slot,
            process: slot as u64,
            node,
            http,
        })
    }

    /// Whether the time limit has passed.
    pub fn done(&self) -> bool {
        tokio::time::Instant::now() >= self.ctx.deadline
    }

    /// Sleeps a random time around the mean interval.
    pub async fn pause(&self) {
        let ms = self.ctx.interval.as_millis() as u64;
        let d = rand::random::<u64>() % (2 * ms.max(1));
        tokio::time::sleep(Duration::from_millis(d)).await;
    }

    /// Records an invocation.
    pub fn invoke(&self, f: &str, key: Option<&str>, value: Value) {
        self.ctx
            .rec
            .record(Kind::Invoke, self.process, f, key, value, self.node, None);
    }

    /// Records a completion; after `Info` the worker becomes a new process.
    pub fn complete(
        &mut self,
        kind: Kind,
        f: &str,
        key: Option<&str>,
        value: Value,
        error: Option<String>,
    ) {
        self.ctx
            .rec
            .record(kind, self.process, f, key, value, self.node, error);
        if kind == Kind::Info {
            self.process += self.ctx.concurrency as u64;
        }
    }

    /// Completes a write-like operation that got no answer or an error status: `fail` when
    /// it certainly did not happen, else `info`.
    pub fn complete_write_error(&mut self, f: &str, key: Option<&str>, err: WriteErr) {
        match err {
            WriteErr::Fail(m) => self.complete(Kind::Fail, f, key, Value::Null, Some(m)),
            WriteErr::Info(m) => self.complete(Kind::Info, f, key, Value::Null, Some(m)),
        }
    }

    /// Sends a request to this worker's server.
    pub async fn req(
        &self,
        method: Method,
        path: &str,
        body: Option<String>,
    ) -> Result<Resp, ReqErr> {
        let url = format!("{}{path}", self.base);
        let mut rb = self.http.request(method, url).timeout(self.ctx.timeout);
        if let Some(b) = body {
            rb = rb.body(b);
        }
        let r = rb.send().await.map_err(|e| {
            if e.is_connect() {
                ReqErr::NotSent(format!("connect: {e}"))
            } else if e.is_timeout() {
                ReqErr::Unknown("timeout".into())
            } else {
                ReqErr::Unknown(format!("{e}"))
            }
        })?;
        let status = r.status().as_u16();
        let index = r
            .headers()
            .get("x-consul-index")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse().ok());
        let body = r
            .text()
            .await
            .map_err(|e| ReqErr::Unknown(format!("body: {e}")))?;
        Ok(Resp {
            status,
            index,
            body,
        })
    }

    /// A write: `Ok(resp)` for a 2xx answer; a 4xx is `Fail`, anything else `Info`.
    pub async fn write(
        &self,
        method: Method,
        path: &str,
        body: Option<String>,
    ) -> Result<Resp, WriteErr> {
        match self.req(method, path, body).await {
            Ok(r) if (200..300).contains(&r.status) => Ok(r),
            Ok(r) if (400..500).contains(&r.status) && r.status != 408 => {
                Err(WriteErr::Fail(format!("{} {}", r.status, r.body.trim())))
            }
            Ok(r) => Err(WriteErr::Info(format!("{} {}", r.status, r.body.trim()))),
            Err(ReqErr::NotSent(m)) => Err(WriteErr::Fail(m)),
            Err(ReqErr::Unknown(m)) => Err(WriteErr::Info(m)),
        }
    }

    /// A read: `Ok(resp)` for 2xx or 404; anything else is an error (a failed read has no
    /// effect, so it is always `fail`).
    pub async fn read(&self, path: &str) -> Result<Resp, String> {
        match self.req(Method::GET, path, None).await {
            Ok(r) if (200..300).contains(&r.status) || r.status == 404 => Ok(r),
            Ok(r) => Err(format!("{} {}", r.status, r.body.trim())),
            Err(e) => Err(e.msg()),
        }
    }
}

/// How a write went wrong.
#[derive(Debug)]
pub enum WriteErr {
    /// It certainly did not happen.
    Fail(String),
    /// It may have happened.
    Info(String),
}

/// Decodes a KV entry's base64 value.
pub fn kv_value(entry: &Value) -> Option<String> {
    use base64::Engine;
    let b = entry.get("Value")?.as_str()?;
    let bytes = base64::engine::general_purpose::STANDARD.decode(b).ok()?;
    String::from_utf8(bytes).ok()
}
