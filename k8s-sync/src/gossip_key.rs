//! `k8s-sync gossip-encryption-autogenerate`: the Helm chart's gossip key Job (consul-k8s's
//! command of that name). It creates the Secret `-secret-name` holding, under `-secret-key`,
//! a new gossip encryption key: 32 random bytes in base64, as `registry keygen` prints. An
//! existing Secret is left alone, so a rerun never changes the key of a running datacenter.

use base64::Engine;
use clap::Parser;
use rand::RngCore;

use crate::error::{Error, Result};
use crate::secrets::Secrets;

/// Flags of `k8s-sync gossip-encryption-autogenerate`.
#[derive(Debug, Clone, Parser)]
#[command(name = "k8s-sync gossip-encryption-autogenerate")]
pub struct GossipKeyFlags {
    /// Namespace of the Secret.
    #[arg(long = "namespace", default_value = "default")]
    pub namespace: String,
    /// Name of the Secret.
    #[arg(long = "secret-name")]
    pub secret_name: String,
    /// Key of the Secret that holds the gossip key.
    #[arg(long = "secret-key", default_value = "key")]
    pub secret_key: String,
    /// Labels, kubeconfig and logging, as every install Job takes them.
    #[command(flatten)]
    pub job: crate::secrets::JobFlags,
}

/// A new gossip key: 32 random bytes, base64 (standard alphabet, padded).
pub fn new_key() -> String {
    let mut key = [0u8; 32];
    rand::rngs::OsRng.fill_bytes(&mut key);
    base64::engine::general_purpose::STANDARD.encode(key)
}

/// Runs the Job: creates the Secret unless it exists.
pub async fn run(flags: GossipKeyFlags, client: kube::Client) -> Result<()> {
    if flags.secret_name.is_empty() || flags.secret_key.is_empty() {
        return Err(Error::Config(
            "-secret-name and -secret-key are required".into(),
        ));
    }
    let labels = crate::secrets::parse_labels(&flags.job.labels).map_err(Error::Config)?;
    let secrets = Secrets::new(client, &flags.namespace, labels);
    if secrets
        .create_if_absent(&flags.secret_name, &flags.secret_key, &new_key())
        .await?
    {
        tracing::info!(secret = %flags.secret_name, "gossip encryption key created");
    } else {
        tracing::info!(secret = %flags.secret_name, "the Secret exists; its key is kept");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    #[test]
    fn keys_are_32_random_bytes() {
        use base64::Engine;
        let a = super::new_key();
        let raw = base64::engine::general_purpose::STANDARD
            .decode(&a)
            .unwrap();
        assert_eq!(raw.len(), 32);
        assert_ne!(a, super::new_key());
    }
}
