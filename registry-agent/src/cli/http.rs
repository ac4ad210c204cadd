//! The CLI's flags for reaching an agent (`-http-addr`, `-token`, `-token-file`, `-ca-file`,
//! `-datacenter`, `-stale`) on top of the shared API client (`registry-client`), which owns
//! addressing, the environment variables and Go `api`-style error texts.

use clap::Args;
use std::path::PathBuf;

/// Flags every HTTP command takes (Consul's `ClientFlags`). Unset flags fall back to the
/// environment (`CONSUL_HTTP_ADDR`, `CONSUL_HTTP_TOKEN`, `CONSUL_HTTP_TOKEN_FILE`,
/// `CONSUL_CACERT`, `CONSUL_HTTP_SSL`, or their `REGISTRY_` names), read by
/// `registry_client::Config::from_env`.
#[derive(Args, Debug, Clone, Default)]
pub struct HttpFlags {
    /// The address and port of the agent's HTTP API, with an optional scheme
    /// (`127.0.0.1:8500`, `https://host:8501`). Defaults to http://127.0.0.1:8500
    /// [env: CONSUL_HTTP_ADDR].
    #[arg(long = "http-addr", value_name = "ADDRESS")]
    pub http_addr: Option<String>,
    /// ACL token sent with each request (X-Consul-Token) [env: CONSUL_HTTP_TOKEN].
    #[arg(long, value_name = "TOKEN")]
    pub token: Option<String>,
    /// File holding the ACL token to send with each request [env: CONSUL_HTTP_TOKEN_FILE].
    #[arg(long = "token-file", value_name = "PATH")]
    pub token_file: Option<PathBuf>,
    /// CA file to verify the agent's TLS certificate with [env: CONSUL_CACERT].
    #[arg(long = "ca-file", value_name = "PATH")]
    pub ca_file: Option<PathBuf>,
    /// Directory of CA certificates to verify the agent's TLS certificate with
    /// [env: CONSUL_CAPATH].
    #[arg(long = "ca-path", value_name = "PATH")]
    pub ca_path: Option<PathBuf>,
    /// Client certificate for agents that verify incoming connections
    /// [env: CONSUL_CLIENT_CERT].
    #[arg(long = "client-cert", value_name = "PATH")]
    pub client_cert: Option<PathBuf>,
    /// Client key [env: CONSUL_CLIENT_KEY].
    #[arg(long = "client-key", value_name = "PATH")]
    pub client_key: Option<PathBuf>,
    /// Name the agent's certificate is checked against (SNI) [env: CONSUL_TLS_SERVER_NAME].
    #[arg(long = "tls-server-name", value_name = "NAME")]
    pub tls_server_name: Option<String>,
}

/// Flags of commands that read server state (Consul's `ServerFlags`).
#[derive(Args, Debug, Clone, Default)]
pub struct ServerFlags {
    /// Datacenter to query. Defaults to the agent's datacenter.
    #[arg(long, value_name = "NAME")]
    pub datacenter: Option<String>,
    /// Allow any server, not only the leader, to answer (faster, possibly stale).
    #[arg(
        long,
        num_args = 0..=1,
        require_equals = true,
        default_missing_value = "true",
        value_parser = super::go_bool,
        value_name = "BOOL"
    )]
    pub stale: Option<bool>,
}

/// An HTTP response: status, headers and raw body, with the CLI's text errors.
#[derive(Debug)]
pub struct Response(pub registry_client::Response);

impl std::ops::Deref for Response {
    type Target = registry_client::Response;
    fn deref(&self) -> &Self::Target {
        &self.0
    }
}

impl Response {
    /// The body as JSON.
    pub fn json<T: serde::de::DeserializeOwned>(&self) -> Result<T, String> {
        Ok(self.0.json()?)
    }
}

/// The client configuration of the flags over the environment, in Consul's order: `-token`,
/// `-token-file`, then the environment's token, then its token file.
pub fn client_config(flags: &HttpFlags, server: Option<&ServerFlags>) -> registry_client::Config {
    let mut cfg = registry_client::Config::from_env();
    if let Some(a) = flags.http_addr.clone().filter(|a| !a.is_empty()) {
        cfg.address = a;
    }
    if let Some(t) = flags.token.clone().filter(|t| !t.is_empty()) {
        cfg.token = Some(t);
    } else if let Some(f) = &flags.token_file {
        cfg.token = None;
        cfg.token_file = Some(f.clone());
    }
    if let Some(ca) = &flags.ca_file {
        cfg.ca_file = Some(ca.clone());
    }
    if let Some(p) = &flags.ca_path {
        cfg.ca_path = Some(p.clone());
    }
    if let Some(c) = &flags.client_cert {
        cfg.client_cert = Some(c.clone());
    }
    if let Some(k) = &flags.client_key {
        cfg.client_key = Some(k.clone());
    }
    if let Some(n) = flags.tls_server_name.clone().filter(|n| !n.is_empty()) {
        cfg.tls_server_name = Some(n);
    }
    cfg.datacenter = server.and_then(|s| s.datacenter.clone());
    cfg
}

/// A client for one agent.
#[derive(Debug, Clone)]
pub struct Client {
    inner: registry_client::Client,
    stale: bool,
}

impl Client {
    /// Builds a client from the flags (and the environment they read).
    pub fn new(flags: &HttpFlags, server: Option<&ServerFlags>) -> Result<Client, String> {
        let cfg = client_config(flags, server);
        Ok(Client {
            inner: registry_client::Client::new(&cfg)?,
            stale: server.and_then(|s| s.stale).unwrap_or(false),
        })
    }

    /// The shared API client underneath.
    pub fn api(&self) -> &registry_client::Client {
        &self.inner
    }

    /// Sends a request. `path` starts with `/v1/`; `query` pairs with an empty value are sent
    /// bare (`?recurse`).
    pub async fn send(
        &self,
        method: reqwest::Method,
        path: &str,
        query: &[(&str, String)],
        body: Option<Vec<u8>>,
    ) -> Result<Response, String> {
        let mut pairs: Vec<(&str, String)> = query.to_vec();
        if self.stale {
            pairs.push(("stale", String::new()));
        }
        let pq = registry_client::with_query(path, &pairs);
        Ok(Response(self.inner.send(method, &pq, body).await?))
    }

    /// GET, failing on any status but 200.
    pub async fn get_ok(&self, path: &str, query: &[(&str, String)]) -> Result<Response, String> {
        let response = self.send(reqwest::Method::GET, path, query, None).await?;
        if response.status == 200 {
            Ok(response)
        } else {
            Err(response.status_error())
        }
    }
}

/// `host:port` -> `http://host:port`; a given scheme is kept.
pub fn base_url(address: &str, ssl: bool) -> Result<String, String> {
    Ok(registry_client::base_url(address, ssl)?)
}

pub use registry_client::encode_path;

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    #[test]
    fn addresses_get_a_scheme() {
        assert_eq!(
            base_url("127.0.0.1:8500", false).expect("url"),
            "http://127.0.0.1:8500"
        );
        assert_eq!(
            base_url("10.0.0.1:8501", true).expect("url"),
            "https://10.0.0.1:8501"
        );
        assert_eq!(base_url("http://h:1/", false).expect("url"), "http://h:1");
        assert!(base_url("unix:///tmp/s", false).is_err());
    }

    #[test]
    fn keys_are_path_encoded() {
        assert_eq!(encode_path("a/b c?d#e%f"), "a/b%20c%3Fd%23e%25f");
        assert_eq!(encode_path("x:y@z"), "x:y@z");
    }
}
