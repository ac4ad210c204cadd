//! `k8s-sync create-federation-secret`: the Helm chart's federation Secret Job (consul-k8s's
//! `create-federation-secret`). In the primary datacenter it writes one Secret holding what a
//! secondary datacenter's release needs: the CA certificate and key (`caCert`, `caKey`), the
//! gossip key (`gossipEncryptionKey`) and the server configuration that joins the primary's
//! WAN pool (`serverConfigJSON`), each read from a file (the chart mounts the Secrets that
//! hold them) or given literally. The Secret is created or replaced.

use clap::Parser;

use crate::error::{Error, Result};
use crate::secrets::Secrets;

/// Flags of `k8s-sync create-federation-secret`.
#[derive(Debug, Clone, Parser)]
#[command(name = "k8s-sync create-federation-secret")]
pub struct FederationSecretFlags {
    /// Namespace of the Secret.
    #[arg(long = "namespace", default_value = "default")]
    pub namespace: String,
    /// Name of the Secret.
    #[arg(long = "secret-name")]
    pub secret_name: String,
    /// A key and the file holding its value, `KEY=PATH` (repeatable).
    #[arg(long = "from-file")]
    pub from_file: Vec<String>,
    /// A key and its value, `KEY=VALUE` (repeatable).
    #[arg(long = "from-literal")]
    pub from_literal: Vec<String>,
    /// Labels, kubeconfig and logging, as every install Job takes them.
    #[command(flatten)]
    pub job: crate::secrets::JobFlags,
}

/// The Secret's data from the flags.
pub fn data(flags: &FederationSecretFlags) -> Result<Vec<(String, String)>> {
    let mut out = Vec::new();
    for f in &flags.from_file {
        let (k, path) = f
            .split_once('=')
            .ok_or_else(|| Error::Config(format!("-from-file {f:?} is not KEY=PATH")))?;
        let v = std::fs::read_to_string(path)
            .map_err(|e| Error::Config(format!("reading {path} for {k}: {e}")))?;
        out.push((k.to_string(), v.trim_end().to_string()));
    }
    for l in &flags.from_literal {
        let (k, v) = l
            .split_once('=')
            .ok_or_else(|| Error::Config(format!("-from-literal {l:?} is not KEY=VALUE")))?;
        out.push((k.to_string(), v.to_string()));
    }
    if out.is_empty() {
        return Err(Error::Config(
            "nothing to store: give -from-file or -from-literal".into(),
        ));
    }
    Ok(out)
}

/// Runs the Job: writes the Secret.
pub async fn run(flags: FederationSecretFlags, client: kube::Client) -> Result<()> {
    if flags.secret_name.is_empty() {
        return Err(Error::Config("-secret-name is required".into()));
    }
    let labels = crate::secrets::parse_labels(&flags.job.labels).map_err(Error::Config)?;
    let secrets = Secrets::new(client, &flags.namespace, labels);
    let data = data(&flags)?;
    let keys: Vec<&str> = data.iter().map(|(k, _)| k.as_str()).collect();
    secrets.put_all(&flags.secret_name, &data).await?;
    tracing::info!(secret = %flags.secret_name, keys = ?keys, "federation Secret written");
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn data_from_files_and_literals() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("ca");
        std::fs::write(&p, "PEM\n").unwrap();
        let f = FederationSecretFlags::parse_from(crate::config::normalize_args([
            "create-federation-secret".to_string(),
            "-secret-name=fed".into(),
            format!("-from-file=caCert={}", p.display()),
            "-from-literal=serverConfigJSON={\"primary_datacenter\":\"east\"}".into(),
        ]));
        assert_eq!(
            data(&f).unwrap(),
            [
                ("caCert".to_string(), "PEM".to_string()),
                (
                    "serverConfigJSON".to_string(),
                    "{\"primary_datacenter\":\"east\"}".to_string()
                )
            ]
        );
    }
}
