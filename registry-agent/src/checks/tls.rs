//! TLS client connections for gRPC and HTTP/2 ping checks: a TCP connect plus a rustls
//! handshake offering one ALPN protocol (`h2`). The server name is the check's
//! `TLSServerName`, else the target's host; `TLSSkipVerify` accepts any certificate
//! (signatures on the handshake are still checked). Trusted roots are the Mozilla set
//! shipped with `webpki-roots`.

use futures::future::BoxFuture;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::{verify_tls12_signature, verify_tls13_signature, CryptoProvider};
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{ClientConfig, DigitallySignedStruct, RootCertStore, SignatureScheme};
use std::sync::Arc;
use std::task::{Context, Poll};
use tokio::net::TcpStream;
use tokio_rustls::client::TlsStream;
use tokio_rustls::TlsConnector;

/// The TLS options of a check.
#[derive(Debug, Clone, Default)]
pub(crate) struct TlsSettings {
    /// SNI and verification name ("" = the target's host).
    pub(crate) server_name: String,
    /// Accept any certificate.
    pub(crate) skip_verify: bool,
}

/// Connects to one `host:port` with TLS. Also a `tower::Service<Uri>` (the URI is
/// ignored), which is what tonic's `connect_with_connector` takes.
#[derive(Clone)]
pub(crate) struct Connector {
    addr: String,
    name: ServerName<'static>,
    tls: TlsConnector,
}

fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// The host part of `host:port` (`[v6]:port` gives `v6`).
fn host_of(addr: &str) -> &str {
    let host = match addr.rfind(':') {
        Some(i) if !addr[i + 1..].contains(']') => &addr[..i],
        _ => addr,
    };
    host.trim_start_matches('[').trim_end_matches(']')
}

impl Connector {
    /// A connector to `addr` (`host:port`) offering ALPN `alpn`.
    pub(crate) fn new(settings: &TlsSettings, addr: &str, alpn: &[u8]) -> Result<Self, String> {
        let name = if settings.server_name.is_empty() {
            host_of(addr).to_string()
        } else {
            settings.server_name.clone()
        };
        let name = ServerName::try_from(name.clone())
            .map_err(|e| format!("invalid TLS server name {name:?}: {e}"))?;
        let builder = ClientConfig::builder_with_provider(provider())
            .with_safe_default_protocol_versions()
            .map_err(|e| e.to_string())?;
        let mut config = if settings.skip_verify {
            builder
                .dangerous()
                .with_custom_certificate_verifier(Arc::new(AcceptAny(provider())))
                .with_no_client_auth()
        } else {
            let roots = RootCertStore {
                roots: webpki_roots::TLS_SERVER_ROOTS.to_vec(),
            };
            builder.with_root_certificates(roots).with_no_client_auth()
        };
        config.alpn_protocols = vec![alpn.to_vec()];
        Ok(Connector {
            addr: addr.to_string(),
            name,
            tls: TlsConnector::from(Arc::new(config)),
        })
    }

    /// Connects and completes the handshake.
    pub(crate) async fn connect(&self) -> std::io::Result<TlsStream<TcpStream>> {
        let tcp = TcpStream::connect(&self.addr).await?;
        tcp.set_nodelay(true)?;
        self.tls.connect(self.name.clone(), tcp).await
    }
}

impl tower::Service<http::Uri> for Connector {
    type Response = hyper_util::rt::TokioIo<TlsStream<TcpStream>>;
    type Error = std::io::Error;
    type Future = BoxFuture<'static, Result<Self::Response, Self::Error>>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, _uri: http::Uri) -> Self::Future {
        let me = self.clone();
        Box::pin(async move { me.connect().await.map(hyper_util::rt::TokioIo::new) })
    }
}

/// `TLSSkipVerify`: any certificate chain is accepted.
#[derive(Debug)]
struct AcceptAny(Arc<CryptoProvider>);

impl ServerCertVerifier for AcceptAny {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls12_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

#[cfg(test)]
mod tests {
    use super::host_of;

    #[test]
    fn host_part() {
        assert_eq!(host_of("example.com:443"), "example.com");
        assert_eq!(host_of("127.0.0.1:8502"), "127.0.0.1");
        assert_eq!(host_of("[::1]:8502"), "::1");
        assert_eq!(host_of("bare"), "bare");
    }
}
