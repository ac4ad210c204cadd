//! The client side's certificate checks and identity, both reading the material loaded last
//! (so a reload on SIGHUP applies to the next handshake without rebuilding HTTP clients).
//!
//! A dialled server's chain must lead to the CA. Its name is checked against
//! `server.<dc>.<domain>` when `verify_server_hostname` is on, and not at all otherwise:
//! servers are dialled by IP address, and Consul's `verify_outgoing` alone checks the chain
//! only.

use parking_lot::RwLock;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::client::{ResolvesClientCert, WebPkiServerVerifier};
use rustls::crypto::CryptoProvider;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::sign::CertifiedKey;
use rustls::{CertificateError, DigitallySignedStruct, Error, SignatureScheme};
use std::sync::Arc;

/// What the last load produced.
#[derive(Debug, Default)]
pub(crate) struct Dial {
    /// Chain verification against the CA (`None`: no CA configured).
    pub verifier: Option<Arc<WebPkiServerVerifier>>,
    /// This agent's certificate, presented when a server asks.
    pub identity: Option<Arc<CertifiedKey>>,
}

/// Shared between the verifier, the resolver and the reload.
pub(crate) type DialState = Arc<RwLock<Dial>>;

/// Checks a dialled server's certificate.
#[derive(Debug)]
pub(crate) struct PeerVerifier {
    pub state: DialState,
    /// `Some(server.<dc>.<domain>)` with `verify_server_hostname`.
    pub expect_name: Option<ServerName<'static>>,
    /// Without `verify_outgoing` and without a CA, any certificate is accepted.
    pub require: bool,
    pub provider: Arc<CryptoProvider>,
}

impl ServerCertVerifier for PeerVerifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, Error> {
        let verifier = self.state.read().verifier.clone();
        let Some(verifier) = verifier else {
            return if self.require {
                Err(Error::General(
                    "no CA configured to verify the server".into(),
                ))
            } else {
                Ok(ServerCertVerified::assertion())
            };
        };
        match &self.expect_name {
            Some(name) => verifier.verify_server_cert(end_entity, intermediates, name, ocsp, now),
            None => {
                match verifier.verify_server_cert(end_entity, intermediates, server_name, ocsp, now)
                {
                    Err(Error::InvalidCertificate(
                        CertificateError::NotValidForName
                        | CertificateError::NotValidForNameContext { .. },
                    )) => Ok(ServerCertVerified::assertion()),
                    other => other,
                }
            }
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.provider
            .signature_verification_algorithms
            .supported_schemes()
    }
}

/// Presents this agent's certificate to servers that ask for one.
#[derive(Debug)]
pub(crate) struct Identity {
    pub state: DialState,
}

impl ResolvesClientCert for Identity {
    fn resolve(&self, _hints: &[&[u8]], _schemes: &[SignatureScheme]) -> Option<Arc<CertifiedKey>> {
        self.state.read().identity.clone()
    }

    fn has_certs(&self) -> bool {
        self.state.read().identity.is_some()
    }
}
