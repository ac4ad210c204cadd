//! Reading a listener's PEM files: the CA roots (`ca_file`, every `*.pem`/`*.crt` of
//! `ca_path`), the certificate chain and the private key.

use super::{ListenerTls, TlsError};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::RootCertStore;
use std::path::Path;
use std::sync::Arc;

/// What a listener's files hold.
#[derive(Debug)]
pub struct Material {
    /// The CA roots, if a CA is configured.
    pub roots: Option<Arc<RootCertStore>>,
    /// The certificate chain (leaf first).
    pub certs: Vec<CertificateDer<'static>>,
    /// The private key.
    pub key: Option<PrivateKeyDer<'static>>,
}

impl Material {
    /// Reads the files `l` names.
    pub fn load(l: &ListenerTls) -> Result<Self, TlsError> {
        let mut store = RootCertStore::empty();
        let mut any_ca = false;
        if let Some(f) = &l.ca_file {
            add_roots(&mut store, f)?;
            any_ca = true;
        }
        if let Some(dir) = &l.ca_path {
            let entries = std::fs::read_dir(dir)
                .map_err(|e| TlsError::File(format!("reading ca_path {}: {e}", dir.display())))?;
            let mut files: Vec<_> = entries
                .filter_map(|e| e.ok().map(|e| e.path()))
                .filter(|p| {
                    p.extension()
                        .is_some_and(|x| x == "pem" || x == "crt" || x == "cer")
                })
                .collect();
            files.sort();
            // Key files may sit next to the certificates: files without one are skipped.
            for f in files {
                if read_certs(&f).is_ok_and(|c| !c.is_empty()) {
                    add_roots(&mut store, &f)?;
                }
            }
            any_ca = true;
        }
        if any_ca && store.is_empty() {
            return Err(TlsError::File(
                "no CA certificate found in ca_file/ca_path".into(),
            ));
        }
        let mut certs = Vec::new();
        let mut key = None;
        if let (Some(cf), Some(kf)) = (&l.cert_file, &l.key_file) {
            certs = read_certs(cf)?;
            if certs.is_empty() {
                return Err(TlsError::File(format!(
                    "no certificate found in {}",
                    cf.display()
                )));
            }
            key =
                Some(PrivateKeyDer::from_pem_file(kf).map_err(|e| {
                    TlsError::File(format!("reading key_file {}: {e}", kf.display()))
                })?);
        }
        Ok(Material {
            roots: any_ca.then(|| Arc::new(store)),
            certs,
            key,
        })
    }

    /// The certificate chain and key, if both are configured.
    pub fn cert_and_key(&self) -> Option<(Vec<CertificateDer<'static>>, PrivateKeyDer<'static>)> {
        let key = self.key.as_ref()?;
        Some((self.certs.clone(), key.clone_key()))
    }
}

fn read_certs(path: &Path) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    CertificateDer::pem_file_iter(path)
        .map_err(|e| TlsError::File(format!("reading {}: {e}", path.display())))?
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| TlsError::File(format!("reading {}: {e}", path.display())))
}

fn add_roots(store: &mut RootCertStore, path: &Path) -> Result<(), TlsError> {
    for c in read_certs(path)? {
        store
            .add(c)
            .map_err(|e| TlsError::File(format!("CA certificate in {}: {e}", path.display())))?;
    }
    Ok(())
}
