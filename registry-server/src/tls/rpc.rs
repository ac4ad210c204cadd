//! TLS of internal RPC (the server port): one setting per process, installed at start by the
//! agent binary before any server-port client is built, since one process runs one agent.
//! Every client of the server port (the Raft network, forwarding, cluster membership,
//! operator calls, the client agent's server pool) takes its scheme from [`scheme`] and its
//! HTTP client from [`client_builder`]; the server port takes its acceptor from [`server`].
//!
//! TLS is on for internal RPC once `internal_rpc` has a certificate (the server port then
//! speaks nothing else) or `verify_outgoing` is set (a client agent without a certificate
//! dials servers with TLS and checks theirs).

use super::verify::{Dial, DialState, Identity, PeerVerifier};
use super::{material::Material, provider, versions, ListenerTls, TlsConfig, TlsError, TlsServer};
use parking_lot::RwLock;
use rustls::client::WebPkiServerVerifier;
use rustls::crypto::CryptoProvider;
use rustls::pki_types::ServerName;
use rustls::sign::CertifiedKey;
use std::sync::Arc;

/// The installed internal-RPC TLS setting.
#[derive(Debug)]
pub struct InternalRpc {
    settings: ListenerTls,
    provider: Arc<CryptoProvider>,
    state: DialState,
    client: Arc<rustls::ClientConfig>,
    server: Option<Arc<TlsServer>>,
}

static INSTALLED: RwLock<Option<Arc<InternalRpc>>> = RwLock::new(None);

/// Whether `l` turns TLS on for internal RPC.
pub fn enabled(l: &ListenerTls) -> bool {
    l.has_cert() || l.verify_outgoing
}

/// Loads and installs the internal-RPC TLS of `cfg` (nothing when it is off).
pub fn install(cfg: &TlsConfig) -> Result<(), TlsError> {
    let l = &cfg.internal_rpc;
    if !enabled(l) {
        *INSTALLED.write() = None;
        return Ok(());
    }
    l.validate("internal_rpc")?;
    let provider = provider(l)?;
    let state: DialState = Arc::new(RwLock::new(load_dial(l, &provider)?));
    let expect_name = if l.verify_server_hostname {
        Some(
            ServerName::try_from(cfg.server_name.clone())
                .map_err(|e| TlsError::Config(format!("server name {}: {e}", cfg.server_name)))?,
        )
    } else {
        None
    };
    let verifier = PeerVerifier {
        state: state.clone(),
        expect_name,
        require: l.verify_outgoing || l.has_ca(),
        provider: provider.clone(),
    };
    let mut client = rustls::ClientConfig::builder_with_provider(provider.clone())
        .with_protocol_versions(versions(l))
        .map_err(|e| TlsError::Rustls(e.to_string()))?
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(verifier))
        .with_client_cert_resolver(Arc::new(Identity {
            state: state.clone(),
        }));
    client.alpn_protocols = vec![b"http/1.1".to_vec()];
    let server = if l.has_cert() {
        Some(TlsServer::new(l.clone(), "internal_rpc")?)
    } else {
        None
    };
    *INSTALLED.write() = Some(Arc::new(InternalRpc {
        settings: l.clone(),
        provider,
        state,
        client: Arc::new(client),
        server,
    }));
    Ok(())
}

fn load_dial(l: &ListenerTls, provider: &Arc<CryptoProvider>) -> Result<Dial, TlsError> {
    let m = Material::load(l)?;
    let verifier = match &m.roots {
        Some(roots) => Some(
            WebPkiServerVerifier::builder_with_provider(roots.clone(), provider.clone())
                .build()
                .map_err(|e| TlsError::Rustls(e.to_string()))?,
        ),
        None => None,
    };
    let identity = match m.cert_and_key() {
        Some((certs, key)) => {
            let signer = provider
                .key_provider
                .load_private_key(key)
                .map_err(|e| TlsError::Rustls(format!("key_file: {e}")))?;
            Some(Arc::new(CertifiedKey::new(certs, signer)))
        }
        None => None,
    };
    Ok(Dial { verifier, identity })
}

fn installed() -> Option<Arc<InternalRpc>> {
    INSTALLED.read().clone()
}

/// `https` when internal RPC uses TLS, else `http`.
pub fn scheme() -> &'static str {
    if installed().is_some() {
        "https"
    } else {
        "http"
    }
}

/// An HTTP client builder for the server port: with the internal-RPC TLS configuration when
/// installed.
pub fn client_builder() -> reqwest::ClientBuilder {
    let b = reqwest::Client::builder().no_proxy();
    match installed() {
        Some(i) => b.use_preconfigured_tls((*i.client).clone()),
        None => b,
    }
}

/// The server port's TLS side, when it serves TLS.
pub fn server() -> Option<Arc<TlsServer>> {
    installed().and_then(|i| i.server.clone())
}

/// Reads the CA and the identity used when dialling again (SIGHUP; the server port's own
/// certificate is reloaded with the other listeners by [`super::reload_all`]). On error
/// nothing changes.
pub fn reload() -> Result<(), TlsError> {
    let Some(i) = installed() else {
        return Ok(());
    };
    let dial = load_dial(&i.settings, &i.provider)?;
    *i.state.write() = dial;
    Ok(())
}
