//! TLS for the HTTPS API and the server port, on rustls: the settings of each listener
//! (Consul's `tls { defaults, internal_rpc, https, grpc }`, [`ListenerTls`]), loading the CA,
//! certificate and key files ([`material`]), the server side ([`TlsServer`], reloadable) and
//! the client side of internal RPC ([`rpc`]: how servers and client agents dial the server
//! port).
//!
//! The server port speaks TLS only once a certificate is configured for `internal_rpc`; a
//! plain-HTTP request to it is answered `400` and closed (see [`crate::edge`]). With
//! `verify_incoming` the handshake demands a client certificate signed by the configured CA,
//! so nothing without one can join, forward or append. With `verify_server_hostname` a
//! dialled server must present a certificate for `server.<datacenter>.<domain>`.

pub mod material;
pub mod rpc;
mod verify;

use material::Material;
use parking_lot::RwLock;
use rustls::crypto::CryptoProvider;
use rustls::server::WebPkiClientVerifier;
use std::path::PathBuf;
use std::sync::Arc;

/// Why TLS could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    /// A file could not be read or holds no usable PEM block.
    #[error("{0}")]
    File(String),
    /// The settings contradict each other (Consul's messages).
    #[error("{0}")]
    Config(String),
    /// rustls refused the material.
    #[error("TLS: {0}")]
    Rustls(String),
}

impl From<TlsError> for crate::ServerError {
    fn from(e: TlsError) -> Self {
        crate::ServerError::Internal(e.to_string())
    }
}

/// The lowest TLS version a listener accepts (`tls_min_version`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum TlsVersion {
    /// `TLSv1_2` (Consul's default).
    #[default]
    Tls12,
    /// `TLSv1_3`.
    Tls13,
}

impl TlsVersion {
    /// Parses Consul's names (`TLSv1_2`, `TLSv1_3`; the old `tls12`, `tls13`). TLS 1.0 and
    /// 1.1 are refused: rustls does not implement them.
    pub fn parse(s: &str) -> Result<Self, TlsError> {
        match s {
            "" | "TLSv1_2" | "tls12" => Ok(TlsVersion::Tls12),
            "TLSv1_3" | "tls13" => Ok(TlsVersion::Tls13),
            "TLSv1_0" | "TLSv1_1" | "tls10" | "tls11" => Err(TlsError::Config(format!(
                "tls_min_version {s} is not supported: TLS 1.2 is the lowest version offered"
            ))),
            other => Err(TlsError::Config(format!(
                "Invalid tls_min_version {other:?}: expected TLSv1_2 or TLSv1_3"
            ))),
        }
    }
}

/// One listener's TLS settings (Consul's `tls.defaults` with the listener's block laid over).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ListenerTls {
    /// PEM file of the CA certificates that sign peers' certificates.
    pub ca_file: Option<PathBuf>,
    /// Directory of PEM CA certificates.
    pub ca_path: Option<PathBuf>,
    /// This agent's certificate (PEM, leaf first).
    pub cert_file: Option<PathBuf>,
    /// Its private key (PEM).
    pub key_file: Option<PathBuf>,
    /// Demand a client certificate signed by the CA.
    pub verify_incoming: bool,
    /// Verify the certificate of the servers this agent dials (and dial them with TLS).
    pub verify_outgoing: bool,
    /// The dialled server's certificate must name `server.<dc>.<domain>` (internal RPC).
    pub verify_server_hostname: bool,
    /// Lowest TLS version accepted.
    pub min_version: TlsVersion,
    /// IANA/Go names of the TLS 1.2 cipher suites offered (empty: rustls' defaults).
    pub cipher_suites: Vec<String>,
}

impl ListenerTls {
    /// Whether a certificate and key are configured (the listener serves TLS).
    pub fn has_cert(&self) -> bool {
        self.cert_file.is_some() && self.key_file.is_some()
    }

    /// Whether a CA is configured.
    pub fn has_ca(&self) -> bool {
        self.ca_file.is_some() || self.ca_path.is_some()
    }

    /// Consul's consistency checks.
    pub fn validate(&self, what: &str) -> Result<(), TlsError> {
        if self.cert_file.is_some() != self.key_file.is_some() {
            return Err(TlsError::Config(format!(
                "tls.{what}: cert_file and key_file must be set together"
            )));
        }
        if self.verify_incoming && !self.has_ca() {
            return Err(TlsError::Config(format!(
                "VerifyIncoming set for {what}, and no CA certificate provided!"
            )));
        }
        if self.verify_incoming && !self.has_cert() {
            return Err(TlsError::Config(format!(
                "VerifyIncoming set for {what}, and no Cert/Key pair provided!"
            )));
        }
        if self.verify_outgoing && !self.has_ca() {
            return Err(TlsError::Config(format!(
                "VerifyOutgoing set for {what}, and no CA certificate provided!"
            )));
        }
        if self.verify_server_hostname && !self.has_ca() {
            return Err(TlsError::Config(format!(
                "VerifyServerHostname set for {what}, and no CA certificate provided!"
            )));
        }
        Ok(())
    }
}

/// Every listener's TLS settings.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TlsConfig {
    /// The server port, between servers and from client agents (`tls.internal_rpc`).
    pub internal_rpc: ListenerTls,
    /// The HTTPS API (`tls.https`).
    pub https: ListenerTls,
    /// gRPC (`tls.grpc`): accepted and validated; the gRPC port is not served.
    pub grpc: ListenerTls,
    /// The name server certificates carry: `server.<datacenter>.<domain>`.
    pub server_name: String,
}

impl TlsConfig {
    /// Checks every listener's settings.
    pub fn validate(&self) -> Result<(), TlsError> {
        self.internal_rpc.validate("internal_rpc")?;
        self.https.validate("https")?;
        self.grpc.validate("grpc")
    }
}

/// The rustls provider with the configured cipher suites.
pub(crate) fn provider(l: &ListenerTls) -> Result<Arc<CryptoProvider>, TlsError> {
    let mut p = rustls::crypto::ring::default_provider();
    if !l.cipher_suites.is_empty() {
        let wanted: Vec<String> = l
            .cipher_suites
            .iter()
            .map(|s| s.trim().to_ascii_uppercase())
            .filter(|s| !s.is_empty())
            .collect();
        for w in &wanted {
            if !p
                .cipher_suites
                .iter()
                .any(|cs| format!("{:?}", cs.suite()) == *w)
            {
                return Err(TlsError::Config(format!(
                    "unsupported TLS cipher suite {w:?}"
                )));
            }
        }
        // The list names TLS 1.2 suites; TLS 1.3 suites are not configurable, as in Go.
        p.cipher_suites.retain(|cs| {
            cs.version() == &rustls::version::TLS13 || wanted.contains(&format!("{:?}", cs.suite()))
        });
    }
    Ok(Arc::new(p))
}

static TLS13_ONLY: &[&rustls::SupportedProtocolVersion] = &[&rustls::version::TLS13];

pub(crate) fn versions(l: &ListenerTls) -> &'static [&'static rustls::SupportedProtocolVersion] {
    match l.min_version {
        TlsVersion::Tls12 => rustls::ALL_VERSIONS,
        TlsVersion::Tls13 => TLS13_ONLY,
    }
}

/// The server side of one TLS listener: its current rustls configuration, replaced whole by
/// [`TlsServer::reload`] (SIGHUP); connections already open keep theirs.
#[derive(Debug)]
pub struct TlsServer {
    settings: ListenerTls,
    what: &'static str,
    current: RwLock<Arc<rustls::ServerConfig>>,
}

impl TlsServer {
    /// Loads the files of `settings` (`what` names the listener in messages).
    pub fn new(settings: ListenerTls, what: &'static str) -> Result<Arc<Self>, TlsError> {
        let cfg = server_config(&settings, what)?;
        let server = Arc::new(TlsServer {
            settings,
            what,
            current: RwLock::new(cfg),
        });
        LISTENERS.lock().push(Arc::downgrade(&server));
        Ok(server)
    }

    /// The acceptor for the next connection.
    pub fn acceptor(&self) -> tokio_rustls::TlsAcceptor {
        tokio_rustls::TlsAcceptor::from(self.current.read().clone())
    }

    /// Reads the files again; on error the previous configuration stays.
    pub fn reload(&self) -> Result<(), TlsError> {
        let cfg = server_config(&self.settings, self.what)?;
        *self.current.write() = cfg;
        Ok(())
    }
}

/// Every TLS listener of the process, for [`reload_all`].
static LISTENERS: parking_lot::Mutex<Vec<std::sync::Weak<TlsServer>>> =
    parking_lot::Mutex::new(Vec::new());

/// Reads every TLS file again (SIGHUP): the listeners' certificates and CAs, and what
/// internal RPC presents and checks when dialling. A listener whose files fail keeps its
/// previous configuration; the first error is returned.
pub fn reload_all() -> Result<(), TlsError> {
    let mut first = rpc::reload().err();
    let live: Vec<Arc<TlsServer>> = {
        let mut l = LISTENERS.lock();
        l.retain(|w| w.strong_count() > 0);
        l.iter().filter_map(|w| w.upgrade()).collect()
    };
    for s in live {
        if let Err(e) = s.reload() {
            first.get_or_insert(e);
        }
    }
    first.map_or(Ok(()), Err)
}

fn server_config(l: &ListenerTls, what: &str) -> Result<Arc<rustls::ServerConfig>, TlsError> {
    let m = Material::load(l)?;
    let Some((certs, key)) = m.cert_and_key() else {
        return Err(TlsError::Config(format!(
            "tls.{what}: a cert_file and key_file are needed to serve TLS"
        )));
    };
    let provider = provider(l)?;
    let verifier = match m.roots.clone() {
        Some(roots) => {
            let b = WebPkiClientVerifier::builder_with_provider(roots, provider.clone());
            let b = if l.verify_incoming {
                b
            } else {
                b.allow_unauthenticated()
            };
            b.build().map_err(|e| TlsError::Rustls(e.to_string()))?
        }
        None => WebPkiClientVerifier::no_client_auth(),
    };
    let mut cfg = rustls::ServerConfig::builder_with_provider(provider)
        .with_protocol_versions(versions(l))
        .map_err(|e| TlsError::Rustls(e.to_string()))?
        .with_client_cert_verifier(verifier)
        .with_single_cert(certs, key)
        .map_err(|e| TlsError::Rustls(format!("tls.{what}: {e}")))?;
    cfg.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(Arc::new(cfg))
}
