//! Where the agent is and how to talk to it: Consul's addressing (`host:port`, a scheme, the
//! default `127.0.0.1:8500`) and environment variables (`CONSUL_HTTP_ADDR`,
//! `CONSUL_HTTP_TOKEN`, `CONSUL_HTTP_TOKEN_FILE`, `CONSUL_HTTP_SSL`, and for TLS
//! `CONSUL_CACERT`, `CONSUL_CAPATH`, `CONSUL_CLIENT_CERT`, `CONSUL_CLIENT_KEY`,
//! `CONSUL_TLS_SERVER_NAME`, `CONSUL_HTTP_SSL_VERIFY`), each
//! also readable under a `REGISTRY_` name (`REGISTRY_HTTP_ADDR`, ...), which wins when both
//! are set.

use crate::Error;
use std::path::PathBuf;
use std::time::Duration;

/// The agent address used when none is given.
pub const DEFAULT_ADDRESS: &str = "127.0.0.1:8500";

/// The environment variables read by [`Config::from_env`], by meaning.
pub mod env {
    /// HTTP API address (`host:port`, optionally with a scheme).
    pub const HTTP_ADDR: [&str; 2] = ["REGISTRY_HTTP_ADDR", "CONSUL_HTTP_ADDR"];
    /// ACL token.
    pub const HTTP_TOKEN: [&str; 2] = ["REGISTRY_HTTP_TOKEN", "CONSUL_HTTP_TOKEN"];
    /// File holding the ACL token.
    pub const HTTP_TOKEN_FILE: [&str; 2] = ["REGISTRY_HTTP_TOKEN_FILE", "CONSUL_HTTP_TOKEN_FILE"];
    /// PEM file of the CA that signed the agent's certificate.
    pub const CACERT: [&str; 2] = ["REGISTRY_CACERT", "CONSUL_CACERT"];
    /// `true`: `https` for an address without a scheme.
    pub const HTTP_SSL: [&str; 2] = ["REGISTRY_HTTP_SSL", "CONSUL_HTTP_SSL"];
    /// Directory of PEM CA certificates to trust.
    pub const CAPATH: [&str; 2] = ["REGISTRY_CAPATH", "CONSUL_CAPATH"];
    /// Client certificate (PEM) presented to an agent that verifies incoming connections.
    pub const CLIENT_CERT: [&str; 2] = ["REGISTRY_CLIENT_CERT", "CONSUL_CLIENT_CERT"];
    /// Its private key (PEM).
    pub const CLIENT_KEY: [&str; 2] = ["REGISTRY_CLIENT_KEY", "CONSUL_CLIENT_KEY"];
    /// The name the agent's certificate is checked against instead of the address's host.
    pub const TLS_SERVER_NAME: [&str; 2] = ["REGISTRY_TLS_SERVER_NAME", "CONSUL_TLS_SERVER_NAME"];
    /// `false`: do not verify the agent's certificate.
    pub const HTTP_SSL_VERIFY: [&str; 2] = ["REGISTRY_HTTP_SSL_VERIFY", "CONSUL_HTTP_SSL_VERIFY"];
}

/// How to reach one agent.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Config {
    /// `host:port`, `http://host:port` or `https://host:port`; empty: [`DEFAULT_ADDRESS`].
    pub address: String,
    /// `https` for an address without a scheme.
    pub ssl: bool,
    /// ACL token sent as `X-Consul-Token`.
    pub token: Option<String>,
    /// File holding the token; read when `token` is not set.
    pub token_file: Option<PathBuf>,
    /// PEM file of an extra CA to trust.
    pub ca_file: Option<PathBuf>,
    /// Directory of PEM CA certificates to trust.
    pub ca_path: Option<PathBuf>,
    /// Client certificate (PEM).
    pub client_cert: Option<PathBuf>,
    /// Client key (PEM).
    pub client_key: Option<PathBuf>,
    /// Name to verify the agent's certificate against.
    pub tls_server_name: Option<String>,
    /// `false` (`CONSUL_HTTP_SSL_VERIFY=false`): accept any certificate.
    pub insecure_skip_verify: bool,
    /// `?dc=` added to every request.
    pub datacenter: Option<String>,
    /// End-to-end limit of a request (`None`: none; blocking queries set their own).
    pub timeout: Option<Duration>,
}

/// A Go `strconv.ParseBool` value.
pub fn parse_bool(v: &str) -> Option<bool> {
    match v.trim() {
        "1" | "t" | "T" | "true" | "TRUE" | "True" => Some(true),
        "0" | "f" | "F" | "false" | "FALSE" | "False" => Some(false),
        _ => None,
    }
}

impl Config {
    /// The defaults overridden by the process environment.
    pub fn from_env() -> Config {
        Self::from_lookup(|k| std::env::var(k).ok())
    }

    /// The defaults overridden by the variables `lookup` knows (an empty value counts as
    /// unset, as in Consul).
    pub fn from_lookup(lookup: impl Fn(&str) -> Option<String>) -> Config {
        let get = |names: [&str; 2]| {
            names
                .iter()
                .find_map(|n| lookup(n).filter(|v| !v.is_empty()))
        };
        Config {
            address: get(env::HTTP_ADDR).unwrap_or_default(),
            ssl: get(env::HTTP_SSL)
                .and_then(|v| parse_bool(&v))
                .unwrap_or(false),
            token: get(env::HTTP_TOKEN),
            token_file: get(env::HTTP_TOKEN_FILE).map(PathBuf::from),
            ca_file: get(env::CACERT).map(PathBuf::from),
            ca_path: get(env::CAPATH).map(PathBuf::from),
            client_cert: get(env::CLIENT_CERT).map(PathBuf::from),
            client_key: get(env::CLIENT_KEY).map(PathBuf::from),
            tls_server_name: get(env::TLS_SERVER_NAME),
            insecure_skip_verify: get(env::HTTP_SSL_VERIFY)
                .and_then(|v| parse_bool(&v))
                .map(|verify| !verify)
                .unwrap_or(false),
            datacenter: None,
            timeout: None,
        }
    }

    /// The base URL (`scheme://host:port`, no trailing slash).
    pub fn base_url(&self) -> Result<String, Error> {
        let address = if self.address.trim().is_empty() {
            DEFAULT_ADDRESS
        } else {
            &self.address
        };
        base_url(address, self.ssl)
    }

    /// The token to send: `token`, else the trimmed contents of `token_file`.
    pub fn resolve_token(&self) -> Result<Option<String>, Error> {
        if let Some(t) = self.token.as_ref().filter(|t| !t.is_empty()) {
            return Ok(Some(t.clone()));
        }
        match &self.token_file {
            Some(path) => std::fs::read_to_string(path)
                .map(|s| Some(s.trim().to_string()))
                .map_err(|e| Error::Config(format!("Error loading token file: {e}"))),
            None => Ok(None),
        }
    }
}

/// `host:port` -> `http://host:port` (`https` with `ssl`); a given scheme is kept.
pub fn base_url(address: &str, ssl: bool) -> Result<String, Error> {
    let address = address.trim().trim_end_matches('/');
    if address.starts_with("unix://") {
        return Err(Error::Config(format!(
            "Error connecting to agent: unix sockets are not supported ({address})"
        )));
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

/// Percent-encodes a query value.
pub fn encode_query(value: &str) -> String {
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

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn cfg(vars: &[(&str, &str)]) -> Config {
        let map: HashMap<String, String> = vars
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        Config::from_lookup(|k| map.get(k).cloned())
    }

    #[test]
    fn addresses_get_a_scheme() {
        assert_eq!(
            base_url("127.0.0.1:8500", false).unwrap(),
            "http://127.0.0.1:8500"
        );
        assert_eq!(
            base_url("10.0.0.1:8501", true).unwrap(),
            "https://10.0.0.1:8501"
        );
        assert_eq!(base_url("http://h:1/", false).unwrap(), "http://h:1");
        assert!(base_url("unix:///tmp/s", false).is_err());
        assert_eq!(
            Config::default().base_url().unwrap(),
            "http://127.0.0.1:8500"
        );
    }

    #[test]
    fn environment_as_consul_with_registry_names_first() {
        let c = cfg(&[
            ("CONSUL_HTTP_ADDR", "10.1.1.1:8500"),
            ("CONSUL_HTTP_TOKEN", "consul-token"),
            ("REGISTRY_HTTP_TOKEN", "registry-token"),
            ("CONSUL_HTTP_SSL", "true"),
            ("CONSUL_CACERT", "/etc/ca.pem"),
            ("REGISTRY_HTTP_TOKEN_FILE", ""),
            ("CONSUL_HTTP_TOKEN_FILE", "/t"),
        ]);
        assert_eq!(c.base_url().unwrap(), "https://10.1.1.1:8500");
        assert_eq!(c.token.as_deref(), Some("registry-token"));
        assert_eq!(c.ca_file, Some(PathBuf::from("/etc/ca.pem")));
        assert_eq!(c.token_file, Some(PathBuf::from("/t")));
        assert!(!c.insecure_skip_verify);
        let c = cfg(&[
            ("CONSUL_CAPATH", "/etc/cas"),
            ("CONSUL_CLIENT_CERT", "/c.pem"),
            ("CONSUL_CLIENT_KEY", "/k.pem"),
            ("CONSUL_TLS_SERVER_NAME", "server.dc1.consul"),
            ("CONSUL_HTTP_SSL_VERIFY", "false"),
        ]);
        assert_eq!(c.ca_path, Some(PathBuf::from("/etc/cas")));
        assert_eq!(c.client_cert, Some(PathBuf::from("/c.pem")));
        assert_eq!(c.client_key, Some(PathBuf::from("/k.pem")));
        assert_eq!(c.tls_server_name.as_deref(), Some("server.dc1.consul"));
        assert!(c.insecure_skip_verify);
        let c = cfg(&[
            ("REGISTRY_HTTP_ADDR", "http://a:1"),
            ("CONSUL_HTTP_SSL", "no"),
        ]);
        assert_eq!(c.base_url().unwrap(), "http://a:1");
        assert!(!c.ssl);
    }

    #[test]
    fn token_file_is_read_when_no_token() {
        let dir = std::env::temp_dir().join(format!("rc-token-{}", std::process::id()));
        std::fs::write(&dir, "  s3cret\n").unwrap();
        let mut c = Config {
            token_file: Some(dir.clone()),
            ..Config::default()
        };
        assert_eq!(c.resolve_token().unwrap().as_deref(), Some("s3cret"));
        c.token = Some("flag".into());
        assert_eq!(c.resolve_token().unwrap().as_deref(), Some("flag"));
        c.token = None;
        c.token_file = Some(dir.join("missing"));
        assert!(c.resolve_token().is_err());
        let _ = std::fs::remove_file(dir);
    }

    #[test]
    fn keys_are_path_encoded() {
        assert_eq!(encode_path("a/b c?d#e%f"), "a/b%20c%3Fd%23e%25f");
        assert_eq!(encode_path("x:y@z"), "x:y@z");
        assert_eq!(encode_query("a b&c"), "a%20b%26c");
    }
}
