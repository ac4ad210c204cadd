//! The HTTP API client the CLI commands share: `-http-addr` / `CONSUL_HTTP_ADDR`, tokens,
//! `-datacenter` and `-stale`, and Go `api`-style error texts.

use clap::Args;
use std::path::PathBuf;

/// Flags every HTTP command takes (Consul's `ClientFlags`).
#[derive(Args, Debug, Clone, Default)]
pub struct HttpFlags {
    /// The address and port of the agent's HTTP API, with an optional scheme
    /// (`127.0.0.1:8500`, `https://host:8501`). Defaults to http://127.0.0.1:8500.
    #[arg(long = "http-addr", env = "CONSUL_HTTP_ADDR", value_name = "ADDRESS")]
    pub http_addr: Option<String>,
    /// ACL token sent with each request (X-Consul-Token).
    #[arg(
        long,
        env = "CONSUL_HTTP_TOKEN",
        hide_env_values = true,
        value_name = "TOKEN"
    )]
    pub token: Option<String>,
    /// File holding the ACL token to send with each request.
    #[arg(
        long = "token-file",
        env = "CONSUL_HTTP_TOKEN_FILE",
        value_name = "PATH"
    )]
    pub token_file: Option<PathBuf>,
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

/// An HTTP response: status and raw body.
#[derive(Debug)]
pub struct Response {
    /// HTTP status code.
    pub status: u16,
    /// Body bytes.
    pub body: Vec<u8>,
}

impl Response {
    /// The body as (lossy) text.
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    /// Go `api`'s error for a non-200 answer.
    pub fn status_error(&self) -> String {
        format!(
            "Unexpected response code: {} ({})",
            self.status,
            self.text()
        )
    }

    /// The body as JSON.
    pub fn json<T: serde::de::DeserializeOwned>(&self) -> Result<T, String> {
        serde_json::from_slice(&self.body).map_err(|e| format!("Failed to decode response: {e}"))
    }
}

/// A client for one agent.
#[derive(Debug, Clone)]
pub struct Client {
    base: String,
    token: Option<String>,
    datacenter: Option<String>,
    stale: bool,
    http: reqwest::Client,
}

impl Client {
    /// Builds a client from the flags (and the environment they read).
    pub fn new(flags: &HttpFlags, server: Option<&ServerFlags>) -> Result<Client, String> {
        let address = flags
            .http_addr
            .clone()
            .filter(|a| !a.is_empty())
            .unwrap_or_else(|| "127.0.0.1:8500".to_string());
        let token = match (&flags.token, &flags.token_file) {
            (Some(token), _) if !token.is_empty() => Some(token.clone()),
            (_, Some(path)) => Some(
                std::fs::read_to_string(path)
                    .map_err(|e| format!("Error loading token file: {e}"))?
                    .trim()
                    .to_string(),
            ),
            _ => None,
        };
        let http = reqwest::Client::builder()
            .build()
            .map_err(|e| e.to_string())?;
        Ok(Client {
            base: base_url(&address, ssl_from_env())?,
            token,
            datacenter: server.and_then(|s| s.datacenter.clone()),
            stale: server.and_then(|s| s.stale).unwrap_or(false),
            http,
        })
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
        let mut url = format!("{}{}", self.base, path);
        let mut params: Vec<String> = query
            .iter()
            .map(|(k, v)| {
                if v.is_empty() {
                    (*k).to_string()
                } else {
                    format!("{k}={}", encode_query(v))
                }
            })
            .collect();
        if let Some(dc) = &self.datacenter {
            params.push(format!("dc={}", encode_query(dc)));
        }
        if self.stale {
            params.push("stale".to_string());
        }
        if !params.is_empty() {
            url.push('?');
            url.push_str(&params.join("&"));
        }
        let verb = go_method(&method);
        let mut request = self.http.request(method, &url);
        if let Some(token) = &self.token {
            request = request.header("X-Consul-Token", token);
        }
        if let Some(body) = body {
            request = request.body(body);
        }
        let response = request
            .send()
            .await
            .map_err(|e| format!("{verb} \"{url}\": {}", error_chain(&e)))?;
        let status = response.status().as_u16();
        let body = response
            .bytes()
            .await
            .map_err(|e| format!("{verb} \"{url}\": {}", error_chain(&e)))?;
        Ok(Response {
            status,
            body: body.to_vec(),
        })
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

fn ssl_from_env() -> bool {
    std::env::var("CONSUL_HTTP_SSL")
        .ok()
        .and_then(|v| crate::config::partial::parse_bool(&v))
        .unwrap_or(false)
}

/// `host:port` -> `http://host:port`; a given scheme is kept.
pub fn base_url(address: &str, ssl: bool) -> Result<String, String> {
    let address = address.trim().trim_end_matches('/');
    if address.starts_with("unix://") {
        return Err(format!(
            "Error connecting to agent: unix sockets are not supported ({address})"
        ));
    }
    if address.starts_with("http://") || address.starts_with("https://") {
        return Ok(address.to_string());
    }
    let scheme = if ssl { "https" } else { "http" };
    Ok(format!("{scheme}://{address}"))
}

/// Percent-encodes a KV key for a URL path, keeping `/` and the characters Go keeps.
pub fn encode_path(key: &str) -> String {
    encode(key, |b| b"/-._~!$&'()*+,;=:@".contains(&b))
}

fn encode_query(value: &str) -> String {
    encode(value, |b| b"-._~".contains(&b))
}

fn encode(text: &str, keep: impl Fn(u8) -> bool) -> String {
    let mut out = String::with_capacity(text.len());
    for byte in text.bytes() {
        if byte.is_ascii_alphanumeric() || keep(byte) {
            out.push(char::from(byte));
        } else {
            out.push_str(&format!("%{byte:02X}"));
        }
    }
    out
}

fn go_method(method: &reqwest::Method) -> String {
    let name = method.as_str();
    let mut chars = name.chars();
    match chars.next() {
        Some(first) => first.to_string() + &chars.as_str().to_lowercase(),
        None => String::new(),
    }
}

/// An error with its causes (`client error (Connect): ... Connection refused`).
/// The top level (reqwest's "error sending request for url (...)") repeats the URL already
/// printed, so it is dropped when there is a cause.
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
        assert_eq!(encode_query("a b&c"), "a%20b%26c");
    }
}
