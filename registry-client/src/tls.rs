//! The TLS side of a client: the CAs to trust (`CONSUL_CACERT`, `CONSUL_CAPATH`, `-ca-file`,
//! `-ca-path`), the client certificate for agents with `verify_incoming`
//! (`CONSUL_CLIENT_CERT`/`CONSUL_CLIENT_KEY`, `-client-cert`/`-client-key`), the name the
//! agent's certificate must carry (`CONSUL_TLS_SERVER_NAME`, `-tls-server-name`: the address
//! is still dialled, the name is what is checked) and `CONSUL_HTTP_SSL_VERIFY=false`.

use crate::config::Config;
use crate::Error;
use std::net::{SocketAddr, ToSocketAddrs};
use std::path::Path;

fn read(path: &Path, what: &str) -> Result<Vec<u8>, Error> {
    std::fs::read(path).map_err(|e| Error::Config(format!("Error loading {what} {path:?}: {e}")))
}

fn add_cas(mut b: reqwest::ClientBuilder, path: &Path) -> Result<reqwest::ClientBuilder, Error> {
    let pem = read(path, "CA file")?;
    let certs = reqwest::Certificate::from_pem_bundle(&pem)
        .map_err(|e| Error::Config(format!("Error loading CA file {path:?}: {e}")))?;
    if certs.is_empty() {
        return Err(Error::Config(format!(
            "Error loading CA file {path:?}: no certificate found"
        )));
    }
    for c in certs {
        b = b.add_root_certificate(c);
    }
    Ok(b)
}

/// Applies `cfg`'s TLS settings to `b`. With a TLS server name, also returns the base URL to
/// use instead (the name in place of the host, the name resolved to the address given).
pub fn apply(
    cfg: &Config,
    mut b: reqwest::ClientBuilder,
) -> Result<(reqwest::ClientBuilder, Option<String>), Error> {
    if let Some(path) = &cfg.ca_file {
        b = add_cas(b, path)?;
    }
    if let Some(dir) = &cfg.ca_path {
        let entries = std::fs::read_dir(dir)
            .map_err(|e| Error::Config(format!("Error loading CA path {dir:?}: {e}")))?;
        let mut files: Vec<_> = entries.filter_map(|e| e.ok().map(|e| e.path())).collect();
        files.sort();
        // Key files may sit next to the certificates: files without one are skipped.
        for f in files.iter().filter(|f| {
            f.extension()
                .is_some_and(|x| x == "pem" || x == "crt" || x == "cer")
        }) {
            let has_cert = std::fs::read(f)
                .ok()
                .and_then(|pem| reqwest::Certificate::from_pem_bundle(&pem).ok())
                .is_some_and(|c| !c.is_empty());
            if has_cert {
                b = add_cas(b, f)?;
            }
        }
    }
    match (&cfg.client_cert, &cfg.client_key) {
        (Some(cert), Some(key)) => {
            let mut pem = read(cert, "client certificate")?;
            pem.push(b'\n');
            pem.extend(read(key, "client key")?);
            let id = reqwest::Identity::from_pem(&pem)
                .map_err(|e| Error::Config(format!("Error loading client certificate: {e}")))?;
            b = b.identity(id);
        }
        (None, None) => {}
        _ => {
            return Err(Error::Config(
                "Both a client certificate and a client key are needed".to_string(),
            ))
        }
    }
    if cfg.insecure_skip_verify {
        b = b.danger_accept_invalid_certs(true);
    }
    let mut base = None;
    if let Some(name) = cfg.tls_server_name.as_ref().filter(|n| !n.is_empty()) {
        let url = cfg.base_url()?;
        if let Some(rest) = url.strip_prefix("https://") {
            let host_port = rest.split('/').next().unwrap_or(rest);
            let addr: SocketAddr = host_port
                .to_socket_addrs()
                .ok()
                .and_then(|mut a| a.next())
                .ok_or_else(|| {
                    Error::Config(format!("Error resolving the agent address {host_port}"))
                })?;
            b = b.resolve(name, addr);
            base = Some(format!("https://{name}:{}", addr.port()));
        }
    }
    Ok((b, base))
}
