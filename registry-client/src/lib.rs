//! A small HTTP client for the Consul-compatible v1 API, shared by the `registry` CLI, the
//! black-box tests and the benchmarks: Consul's addressing and environment variables
//! ([`Config`]), the ACL token header, `?dc`/`?stale`/`?consistent`, the `X-Consul-*` read
//! headers ([`QueryMeta`]) and blocking queries ([`Client::blocking_get`]).

pub mod config;
pub mod tls;

pub use config::{base_url, encode_path, encode_query, Config, DEFAULT_ADDRESS};
pub use reqwest::header::HeaderMap;
pub use reqwest::Method;

use std::time::Duration;

/// Why a request failed.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// Bad configuration (address, token file, CA file).
    #[error("{0}")]
    Config(String),
    /// The request could not be sent or its answer not read, in Go `api`'s words:
    /// `Get "http://127.0.0.1:8500/v1/kv/a": dial tcp ...`.
    #[error("{verb} \"{url}\": {cause}")]
    Transport {
        /// Go's spelling of the method (`Get`, `Put`).
        verb: String,
        /// The full URL.
        url: String,
        /// The error and its causes.
        cause: String,
    },
    /// A body that is not the JSON expected.
    #[error("Failed to decode response: {0}")]
    Decode(String),
}

impl From<Error> for String {
    fn from(e: Error) -> String {
        e.to_string()
    }
}

/// The `X-Consul-*` headers of a read.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct QueryMeta {
    /// `X-Consul-Index`.
    pub index: u64,
    /// `X-Consul-KnownLeader`.
    pub known_leader: bool,
    /// `X-Consul-LastContact`, milliseconds.
    pub last_contact_ms: u64,
    /// `X-Consul-Effective-Consistency`, when present.
    pub consistency: Option<String>,
}

/// A response, fully read.
#[derive(Debug, Clone)]
pub struct Response {
    /// HTTP status code.
    pub status: u16,
    /// Response headers.
    pub headers: HeaderMap,
    /// Body bytes.
    pub body: Vec<u8>,
}

impl Response {
    /// The body as (lossy) text.
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    /// The body as JSON.
    pub fn json<T: serde::de::DeserializeOwned>(&self) -> Result<T, Error> {
        serde_json::from_slice(&self.body).map_err(|e| Error::Decode(e.to_string()))
    }

    /// A header as text.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }

    /// Go `api`'s error for an unexpected status.
    pub fn status_error(&self) -> String {
        format!(
            "Unexpected response code: {} ({})",
            self.status,
            self.text()
        )
    }

    /// The read headers.
    pub fn meta(&self) -> QueryMeta {
        let num = |n: &str| self.header(n).and_then(|v| v.parse().ok()).unwrap_or(0);
        QueryMeta {
            index: num("X-Consul-Index"),
            known_leader: self.header("X-Consul-KnownLeader") == Some("true"),
            last_contact_ms: num("X-Consul-LastContact"),
            consistency: self
                .header("X-Consul-Effective-Consistency")
                .map(str::to_string),
        }
    }
}

/// Query parameters every read takes.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct QueryOptions {
    /// `?stale`: any server may answer.
    pub stale: bool,
    /// `?consistent`: the leader confirms its leadership first.
    pub consistent: bool,
    /// `?index`: block until the result's index passes this.
    pub index: Option<u64>,
    /// `?wait`: how long to block at most.
    pub wait: Option<Duration>,
}

impl QueryOptions {
    fn pairs(&self) -> Vec<(&'static str, String)> {
        let mut out = Vec::new();
        if self.stale {
            out.push(("stale", String::new()));
        }
        if self.consistent {
            out.push(("consistent", String::new()));
        }
        if let Some(i) = self.index {
            out.push(("index", i.to_string()));
        }
        if let Some(w) = self.wait {
            out.push(("wait", format!("{}ms", w.as_millis())));
        }
        out
    }
}

/// A client for one agent.
#[derive(Debug, Clone)]
pub struct Client {
    base: String,
    token: Option<String>,
    datacenter: Option<String>,
    timeout: Option<Duration>,
    http: reqwest::Client,
}

impl Client {
    /// A client for `cfg` with its own connection pool.
    pub fn new(cfg: &Config) -> Result<Client, Error> {
        let b = reqwest::Client::builder().no_proxy().tcp_nodelay(true);
        let (b, base) = tls::apply(cfg, b)?;
        let http = b.build().map_err(|e| Error::Config(e.to_string()))?;
        let mut client = Self::with_http(cfg, http)?;
        if let Some(base) = base {
            client.base = base;
        }
        Ok(client)
    }

    /// A client for `cfg` on an existing `reqwest` client (its pool and settings).
    pub fn with_http(cfg: &Config, http: reqwest::Client) -> Result<Client, Error> {
        Ok(Client {
            base: cfg.base_url()?,
            token: cfg.resolve_token()?,
            datacenter: cfg.datacenter.clone().filter(|d| !d.is_empty()),
            timeout: cfg.timeout,
            http,
        })
    }

    /// `scheme://host:port` of the agent.
    pub fn base_url(&self) -> &str {
        &self.base
    }

    /// The underlying `reqwest` client.
    pub fn http(&self) -> &reqwest::Client {
        &self.http
    }

    /// A request builder for `path_and_query` (starting with `/`) with the token header, and
    /// `?dc` when configured.
    pub fn request(&self, method: Method, path_and_query: &str) -> reqwest::RequestBuilder {
        let mut url = format!("{}{}", self.base, path_and_query);
        if let Some(dc) = &self.datacenter {
            url.push(if path_and_query.contains('?') {
                '&'
            } else {
                '?'
            });
            url.push_str("dc=");
            url.push_str(&encode_query(dc));
        }
        let mut req = self.http.request(method, url);
        if let Some(t) = &self.token {
            req = req.header("X-Consul-Token", t);
        }
        if let Some(t) = self.timeout {
            req = req.timeout(t);
        }
        req
    }

    /// Sends a request and reads the whole answer, whatever its status.
    pub async fn send(
        &self,
        method: Method,
        path_and_query: &str,
        body: Option<Vec<u8>>,
    ) -> Result<Response, Error> {
        self.send_builder(method.clone(), self.request(method, path_and_query), body)
            .await
    }

    /// Sends a request built with [`Self::request`] (to set a timeout or headers of its
    /// own) and reads the whole answer.
    pub async fn send_builder(
        &self,
        method: Method,
        mut req: reqwest::RequestBuilder,
        body: Option<Vec<u8>>,
    ) -> Result<Response, Error> {
        if let Some(b) = body {
            req = req.body(b);
        }
        let req = req.build().map_err(|e| Error::Config(e.to_string()))?;
        let url = req.url().to_string();
        let fail = |e: &reqwest::Error| Error::Transport {
            verb: go_method(&method),
            url: url.clone(),
            cause: error_chain(e),
        };
        let r = self.http.execute(req).await.map_err(|e| fail(&e))?;
        let status = r.status().as_u16();
        let headers = r.headers().clone();
        let body = r.bytes().await.map_err(|e| fail(&e))?.to_vec();
        Ok(Response {
            status,
            headers,
            body,
        })
    }

    /// `GET path` with `query` pairs (an empty value is sent bare: `?recurse`) and `opts`.
    pub async fn get(
        &self,
        path: &str,
        query: &[(&str, String)],
        opts: &QueryOptions,
    ) -> Result<Response, Error> {
        let mut pairs: Vec<(&str, String)> = query.to_vec();
        pairs.extend(opts.pairs());
        self.send(Method::GET, &with_query(path, &pairs), None)
            .await
    }

    /// A blocking read: waits until the result's index passes `index` or `wait` elapses,
    /// with a client-side limit above the server's (`wait` plus Consul's jitter of 1/16 plus
    /// a margin), as Go's `api` does.
    pub async fn blocking_get(
        &self,
        path: &str,
        index: u64,
        wait: Duration,
    ) -> Result<(Response, QueryMeta), Error> {
        let opts = QueryOptions {
            index: Some(index),
            wait: Some(wait),
            ..QueryOptions::default()
        };
        let pq = with_query(path, &opts.pairs());
        let limit = wait + wait / 16 + Duration::from_secs(10);
        let req = self.request(Method::GET, &pq).timeout(limit);
        let r = self.send_builder(Method::GET, req, None).await?;
        let meta = r.meta();
        Ok((r, meta))
    }
}

/// `path` with the query `pairs` appended (an empty value is sent bare).
pub fn with_query(path: &str, pairs: &[(&str, String)]) -> String {
    if pairs.is_empty() {
        return path.to_string();
    }
    let q: Vec<String> = pairs
        .iter()
        .map(|(k, v)| {
            if v.is_empty() {
                (*k).to_string()
            } else {
                format!("{k}={}", encode_query(v))
            }
        })
        .collect();
    let sep = if path.contains('?') { '&' } else { '?' };
    format!("{path}{sep}{}", q.join("&"))
}

/// Go's spelling of a method in error texts (`Get`, `Put`).
fn go_method(method: &Method) -> String {
    let name = method.as_str();
    let mut chars = name.chars();
    match chars.next() {
        Some(first) => first.to_string() + &chars.as_str().to_lowercase(),
        None => String::new(),
    }
}

/// An error with its causes (`client error (Connect): ... Connection refused`). The top
/// level (reqwest's "error sending request for url (...)") repeats the URL already printed,
/// so it is dropped when there is a cause.
fn error_chain(error: &dyn std::error::Error) -> String {
    let (mut text, mut source) = match error.source() {
        Some(cause) => (cause.to_string(), cause.source()),
        None => (error.to_string(), None),
    };
    while let Some(cause) = source {
        let cause_text = cause.to_string();
        if !text.contains(&cause_text) {
            text.push_str(": ");
            text.push_str(&cause_text);
        }
        source = cause.source();
    }
    text
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    #[test]
    fn query_strings() {
        assert_eq!(with_query("/v1/kv/a", &[]), "/v1/kv/a");
        assert_eq!(
            with_query(
                "/v1/kv/a",
                &[("recurse", String::new()), ("x", "a b".into())]
            ),
            "/v1/kv/a?recurse&x=a%20b"
        );
        let o = QueryOptions {
            stale: true,
            index: Some(7),
            wait: Some(Duration::from_secs(2)),
            ..Default::default()
        };
        assert_eq!(
            with_query("/v1/kv/a?keys", &o.pairs()),
            "/v1/kv/a?keys&stale&index=7&wait=2000ms"
        );
    }

    #[tokio::test]
    async fn unreachable_agent_error_reads_as_go_api() {
        let cfg = Config {
            address: "127.0.0.1:1".into(),
            datacenter: Some("dc1".into()),
            ..Config::default()
        };
        let c = Client::new(&cfg).unwrap();
        let e = c.send(Method::GET, "/v1/kv/a", None).await.unwrap_err();
        let text = e.to_string();
        assert!(
            text.starts_with("Get \"http://127.0.0.1:1/v1/kv/a?dc=dc1\": "),
            "{text}"
        );
    }
}
