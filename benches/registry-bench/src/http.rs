//! A minimal HTTP/1.1 keep-alive client on hyper's connection API: no URL parsing, no
//! per-request pool bookkeeping beyond a semaphore and a vector, so the load generator
//! spends as little CPU per request as possible.

use anyhow::{bail, Context, Result};
use bytes::Bytes;
use http::{Method, Request, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper::client::conn::http1::SendRequest;
use hyper_util::rt::TokioIo;
use parking_lot::Mutex;
use std::net::SocketAddr;
use tokio::net::TcpStream;
use tokio::sync::Semaphore;

/// Refuses any address outside 127.0.0.0/8 or ::1: this tool only loads local servers.
pub fn check_loopback(addr: &SocketAddr) -> Result<()> {
    if !addr.ip().is_loopback() {
        bail!("{addr} is not a loopback address; registry-bench only targets 127.0.0.0/8 and ::1");
    }
    Ok(())
}

/// Parses `host:port` (a loopback address).
pub fn parse_addr(s: &str) -> Result<SocketAddr> {
    // Consul's addressing (`host:port`, `http://host:port`), as every client reads it.
    let url = registry_client::base_url(s, false)?;
    let s = url
        .strip_prefix("http://")
        .context("only http:// addresses are supported")?;
    let s = if s.starts_with("localhost:") {
        s.replacen("localhost", "127.0.0.1", 1)
    } else {
        s.to_string()
    };
    let addr: SocketAddr = s.parse().with_context(|| format!("bad address {s:?}"))?;
    check_loopback(&addr)?;
    Ok(addr)
}

/// Splits `http://host:port/path?query` into the address and the origin-form target.
pub fn parse_url(url: &str) -> Result<(SocketAddr, String)> {
    let rest = url
        .strip_prefix("http://")
        .context("only http:// URLs are supported")?;
    let (hostport, path) = match rest.find('/') {
        Some(i) => (&rest[..i], &rest[i..]),
        None => (rest, "/"),
    };
    Ok((parse_addr(hostport)?, path.to_string()))
}

/// One response, body fully read.
pub struct Resp {
    pub status: StatusCode,
    pub body: Bytes,
}

async fn connect(addr: SocketAddr) -> Result<SendRequest<Full<Bytes>>> {
    let stream = TcpStream::connect(addr)
        .await
        .with_context(|| format!("connecting to {addr}"))?;
    stream.set_nodelay(true)?;
    let (tx, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream)).await?;
    tokio::spawn(async move {
        // The connection ends when the server closes it or the sender is dropped.
        let _ = conn.await;
    });
    Ok(tx)
}

/// A set of keep-alive connections to one server, shared by any number of clients. A
/// request takes an idle connection (opening one if needed), so at most `conns` requests
/// are in flight.
pub struct Pool {
    addr: SocketAddr,
    host: String,
    /// `CONSUL_HTTP_TOKEN`, sent as `X-Consul-Token` with every request when set.
    token: Option<http::HeaderValue>,
    idle: Mutex<Vec<SendRequest<Full<Bytes>>>>,
    limit: Semaphore,
}

impl Pool {
    pub fn new(addr: SocketAddr, conns: usize) -> Self {
        let token = std::env::var("CONSUL_HTTP_TOKEN")
            .ok()
            .filter(|t| !t.is_empty())
            .and_then(|t| http::HeaderValue::from_str(&t).ok());
        Pool {
            addr,
            host: addr.to_string(),
            token,
            idle: Mutex::new(Vec::with_capacity(conns)),
            limit: Semaphore::new(conns.max(1)),
        }
    }

    /// Opens `n` connections ahead of the measurement.
    pub async fn prefill(&self, n: usize) -> Result<()> {
        for _ in 0..n {
            let c = connect(self.addr).await?;
            self.idle.lock().push(c);
        }
        Ok(())
    }

    /// Builds a request for `target` (origin form, e.g. `/v1/kv/foo`).
    pub fn request(
        &self,
        method: Method,
        target: &str,
        body: Bytes,
    ) -> Result<Request<Full<Bytes>>> {
        let mut b = Request::builder()
            .method(method)
            .uri(target)
            .header(http::header::HOST, &self.host);
        if let Some(t) = &self.token {
            b = b.header("x-consul-token", t);
        }
        Ok(b.body(Full::new(body))?)
    }

    /// Sends `req` on an idle connection and reads the whole response.
    pub async fn send(&self, req: Request<Full<Bytes>>) -> Result<Resp> {
        let _permit = self.limit.acquire().await?;
        let idle = self.idle.lock().pop();
        let mut tx = match idle {
            Some(c) if !c.is_closed() => c,
            _ => connect(self.addr).await?,
        };
        tx.ready().await?;
        let resp = tx.send_request(req).await?;
        let (parts, body) = resp.into_parts();
        let body = body.collect().await?.to_bytes();
        self.idle.lock().push(tx);
        Ok(Resp {
            status: parts.status,
            body,
        })
    }

    /// `send` that treats any non-2xx status as an error.
    pub async fn send_ok(&self, req: Request<Full<Bytes>>) -> Result<Resp> {
        let r = self.send(req).await?;
        if !r.status.is_success() {
            bail!(
                "HTTP {}: {}",
                r.status,
                String::from_utf8_lossy(&r.body[..r.body.len().min(200)])
            );
        }
        Ok(r)
    }
}
