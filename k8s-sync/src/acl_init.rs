//! `k8s-sync acl-init`: the Helm chart's ACL bootstrap Job (consul-k8s's `server-acl-init`).
//! Once the servers have a leader it bootstraps the ACL system (or uses the bootstrap token
//! the user gave), stores the management token in the Secret `<prefix>-bootstrap-acl-token`,
//! creates the policies and tokens of the chart's components and stores each token in the
//! Secret `<prefix>-<component>-acl-token` (key `token`), sets an agent token on every
//! server, and with `-allow-dns` lets the anonymous token read nodes and services (DNS).
//! Every step is idempotent: a rerun (`helm upgrade`) keeps tokens that still resolve.

use std::time::{Duration, Instant};

use clap::{ArgAction, Parser};
use reqwest::Method;
use serde_json::{json, Value};

use crate::config::{parse_duration, parse_go_bool};
use crate::error::{Error, Result};
use crate::registry::{encode, Registry};
use crate::secrets::Secrets;

/// The anonymous token's accessor ID, fixed in every datacenter.
pub const ANONYMOUS_ACCESSOR: &str = "00000000-0000-0000-0000-000000000002";

/// Flags of `k8s-sync acl-init` (named as consul-k8s's `server-acl-init`).
#[derive(Debug, Clone, Parser)]
#[command(name = "k8s-sync acl-init")]
pub struct AclInitFlags {
    /// Prefix of the Secrets written (the chart's fullname).
    #[arg(long = "resource-prefix")]
    pub resource_prefix: String,
    /// Namespace of the Secrets.
    #[arg(long = "k8s-namespace", default_value = "default")]
    pub k8s_namespace: String,
    /// A server's address (repeatable): every one gets an agent token.
    #[arg(long = "server-address", required = true)]
    pub server_address: Vec<String>,
    /// The servers' HTTP(S) port.
    #[arg(long = "server-port", default_value_t = 8500)]
    pub server_port: u16,
    /// Talk HTTPS to the servers.
    #[arg(long = "use-https", default_value_t = false, action = ArgAction::Set, num_args = 0..=1, default_missing_value = "true", value_parser = parse_go_bool)]
    pub use_https: bool,
    /// PEM CA certificate that verifies the servers' HTTPS certificates.
    #[arg(long = "consul-ca-cert")]
    pub consul_ca_cert: Option<String>,
    /// A file holding the bootstrap (management) token to use instead of bootstrapping.
    #[arg(long = "bootstrap-token-file")]
    pub bootstrap_token_file: Option<String>,
    /// Create the client agents' token.
    #[arg(long = "client", default_value_t = false, action = ArgAction::Set, num_args = 0..=1, default_missing_value = "true", value_parser = parse_go_bool)]
    pub client: bool,
    /// Create k8s-sync's token.
    #[arg(long = "sync-catalog", default_value_t = false, action = ArgAction::Set, num_args = 0..=1, default_missing_value = "true", value_parser = parse_go_bool)]
    pub sync_catalog: bool,
    /// The catalog node k8s-sync writes (its token may write that node only).
    #[arg(long = "sync-consul-node-name", default_value = "k8s-sync")]
    pub sync_consul_node_name: String,
    /// Create the traffic proxy's read-only token.
    #[arg(long = "traffic-proxy", default_value_t = false, action = ArgAction::Set, num_args = 0..=1, default_missing_value = "true", value_parser = parse_go_bool)]
    pub traffic_proxy: bool,
    /// Let the anonymous token read nodes and services, so that DNS answers.
    #[arg(long = "allow-dns", default_value_t = false, action = ArgAction::Set, num_args = 0..=1, default_missing_value = "true", value_parser = parse_go_bool)]
    pub allow_dns: bool,
    /// Give every server an agent token (`/v1/agent/token/agent`).
    #[arg(long = "set-server-tokens", default_value_t = true, action = ArgAction::Set, num_args = 0..=1, default_missing_value = "true", value_parser = parse_go_bool)]
    pub set_server_tokens: bool,
    /// How long to wait for the servers.
    #[arg(long = "timeout", default_value = "10m", value_parser = parse_duration)]
    pub timeout: Duration,
    /// Labels, kubeconfig and logging, as every install Job takes them.
    #[command(flatten)]
    pub job: crate::secrets::JobFlags,
}

/// Rules of the policies this Job writes.
const CLIENT_RULES: &str = r#"node_prefix "" { policy = "write" }
service_prefix "" { policy = "read" }
agent_prefix "" { policy = "write" }"#;
const SERVER_RULES: &str = r#"node_prefix "" { policy = "write" }
service_prefix "" { policy = "read" }
agent_prefix "" { policy = "read" }
operator = "read""#;
const DNS_RULES: &str = r#"node_prefix "" { policy = "read" }
service_prefix "" { policy = "read" }"#;
const PROXY_RULES: &str = r#"node_prefix "" { policy = "read" }
service_prefix "" { policy = "read" }
agent_prefix "" { policy = "read" }"#;

fn sync_rules(node: &str) -> String {
    format!(
        "node {node:?} {{ policy = \"write\" }}\nnode_prefix \"\" {{ policy = \"read\" }}\nservice_prefix \"\" {{ policy = \"write\" }}"
    )
}

struct Init {
    flags: AclInitFlags,
    secrets: Secrets,
    ca: Option<Vec<u8>>,
    deadline: Instant,
}

impl Init {
    fn client(&self, server: &str, token: Option<String>) -> Result<Registry> {
        Registry::with_tls(
            &format!("{server}:{}", self.flags.server_port),
            token,
            "",
            self.ca.as_deref(),
            self.flags.use_https,
        )
    }

    fn secret_name(&self, component: &str) -> String {
        format!("{}-{component}-acl-token", self.flags.resource_prefix)
    }

    /// Retries `f` every second until it succeeds or the deadline passes.
    async fn retry<T, F, Fut>(&self, what: &str, mut f: F) -> Result<T>
    where
        F: FnMut() -> Fut,
        Fut: std::future::Future<Output = Result<T>>,
    {
        loop {
            match f().await {
                Ok(v) => return Ok(v),
                Err(e) if Instant::now() < self.deadline => {
                    tracing::info!(error = %e, "{what}: retrying");
                    tokio::time::sleep(Duration::from_secs(1)).await;
                }
                Err(e) => return Err(e),
            }
        }
    }

    /// The first server that names a leader.
    async fn leader_server(&self) -> Result<String> {
        self.retry("waiting for a server with a leader", || async {
            for s in &self.flags.server_address {
                if self.client(s, None)?.ready().await {
                    return Ok(s.clone());
                }
            }
            Err(Error::Config("no server answers with a leader yet".into()))
        })
        .await
    }

    /// The management token: the given one, the stored one, or a new one from bootstrap.
    async fn management_token(&self, server: &str) -> Result<String> {
        if let Some(path) = &self.flags.bootstrap_token_file {
            let t = std::fs::read_to_string(path)
                .map_err(|e| Error::Config(format!("reading {path}: {e}")))?;
            tracing::info!("using the bootstrap token of {path}");
            return Ok(t.trim().to_string());
        }
        let name = self.secret_name("bootstrap");
        if let Some(t) = self.secrets.get(&name, "token").await? {
            tracing::info!(secret = %name, "ACLs already bootstrapped; using the stored token");
            return Ok(t);
        }
        let reg = self.client(server, None)?;
        let (_, v) = self
            .retry("bootstrapping ACLs", || async {
                match reg.call(Method::PUT, "/v1/acl/bootstrap", None).await {
                    Err(Error::Status { status: 403, body, .. }) => Err(Error::Config(format!(
                        "the ACL system was bootstrapped, but not by this Job (no Secret {name}): {body}; \
                         give its management token with global.acls.bootstrapToken"
                    ))),
                    other => other,
                }
            })
            .await?;
        let token = v
            .get("SecretID")
            .and_then(Value::as_str)
            .ok_or_else(|| Error::Config(format!("bootstrap answered without a SecretID: {v}")))?
            .to_string();
        self.secrets.put(&name, "token", &token).await?;
        tracing::info!(secret = %name, "ACLs bootstrapped; management token stored");
        Ok(token)
    }

    /// Creates or updates a policy by name.
    async fn upsert_policy(&self, reg: &Registry, name: &str, rules: &str) -> Result<()> {
        let body = json!({"Name": name, "Rules": rules,
                          "Description": format!("{name}, written by the chart's acl-init Job")});
        match reg
            .call(
                Method::GET,
                &format!("/v1/acl/policy/name/{}", encode(name)),
                None,
            )
            .await
        {
            Ok((_, p)) => {
                let id = p.get("ID").and_then(Value::as_str).unwrap_or_default();
                reg.call(Method::PUT, &format!("/v1/acl/policy/{id}"), Some(body))
                    .await?;
            }
            Err(Error::Status { status: 404, .. }) => {
                reg.call(Method::PUT, "/v1/acl/policy", Some(body)).await?;
            }
            Err(e) => return Err(e),
        }
        tracing::info!(policy = name, "policy written");
        Ok(())
    }

    /// A token with `policy`, kept in Secret `<prefix>-<component>-acl-token` (reused while
    /// it still resolves).
    async fn component_token(
        &self,
        server: &str,
        reg: &Registry,
        component: &str,
        policy: &str,
    ) -> Result<()> {
        let name = self.secret_name(component);
        if let Some(t) = self.secrets.get(&name, "token").await? {
            let own = self.client(server, Some(t))?;
            if own
                .call(Method::GET, "/v1/acl/token/self", None)
                .await
                .is_ok()
            {
                tracing::info!(secret = %name, "token kept");
                return Ok(());
            }
        }
        let (_, v) = reg
            .call(
                Method::PUT,
                "/v1/acl/token",
                Some(json!({"Description": format!("{component} token"),
                            "Policies": [{"Name": policy}]})),
            )
            .await?;
        let secret = v
            .get("SecretID")
            .and_then(Value::as_str)
            .ok_or_else(|| Error::Config(format!("token created without a SecretID: {v}")))?;
        self.secrets.put(&name, "token", secret).await?;
        tracing::info!(secret = %name, "token created and stored");
        Ok(())
    }

    /// The agent token of server `addr`: one token per server, found again by description.
    async fn server_token(&self, reg: &Registry, addr: &str) -> Result<()> {
        let description = format!("Server Token for {addr}");
        let (_, list) = reg.call(Method::GET, "/v1/acl/tokens", None).await?;
        let existing = list.as_array().and_then(|l| {
            l.iter()
                .find(|t| t.get("Description").and_then(Value::as_str) == Some(&description))
                .and_then(|t| t.get("AccessorID").and_then(Value::as_str))
                .map(str::to_string)
        });
        let token = match existing {
            Some(accessor) => {
                reg.call(Method::GET, &format!("/v1/acl/token/{accessor}"), None)
                    .await?
                    .1
            }
            None => {
                reg.call(
                    Method::PUT,
                    "/v1/acl/token",
                    Some(json!({"Description": description,
                                "Policies": [{"Name": "server-policy"}]})),
                )
                .await?
                .1
            }
        };
        let secret = token
            .get("SecretID")
            .and_then(Value::as_str)
            .ok_or_else(|| Error::Config(format!("server token without a SecretID: {token}")))?
            .to_string();
        let at = self.client(addr, reg.token().map(str::to_string))?;
        self.retry("setting a server's agent token", || async {
            at.call(
                Method::PUT,
                "/v1/agent/token/agent",
                Some(json!({"Token": secret})),
            )
            .await
        })
        .await?;
        tracing::info!(server = addr, "agent token set");
        Ok(())
    }
}

/// Runs the Job to completion.
pub async fn run(flags: AclInitFlags, client: kube::Client) -> Result<()> {
    let labels = crate::secrets::parse_labels(&flags.job.labels).map_err(Error::Config)?;
    let ca = match &flags.consul_ca_cert {
        Some(p) if !p.is_empty() => Some(
            std::fs::read(p).map_err(|e| Error::Config(format!("reading the CA file {p}: {e}")))?,
        ),
        _ => None,
    };
    let init = Init {
        secrets: Secrets::new(client, &flags.k8s_namespace, labels),
        deadline: Instant::now() + flags.timeout,
        ca,
        flags,
    };
    let server = init.leader_server().await?;
    tracing::info!(server = %server, "a leader is elected");
    let token = init.management_token(&server).await?;
    let reg = init.client(&server, Some(token))?;
    init.retry("checking the management token", || async {
        reg.call(Method::GET, "/v1/acl/token/self", None).await
    })
    .await?;

    if init.flags.set_server_tokens {
        init.upsert_policy(&reg, "server-policy", SERVER_RULES)
            .await?;
        for addr in init.flags.server_address.clone() {
            init.server_token(&reg, &addr).await?;
        }
    }
    if init.flags.client {
        init.upsert_policy(&reg, "client-policy", CLIENT_RULES)
            .await?;
        init.component_token(&server, &reg, "client", "client-policy")
            .await?;
    }
    if init.flags.sync_catalog {
        let rules = sync_rules(&init.flags.sync_consul_node_name);
        init.upsert_policy(&reg, "catalog-sync-policy", &rules)
            .await?;
        init.component_token(&server, &reg, "catalog-sync", "catalog-sync-policy")
            .await?;
    }
    if init.flags.traffic_proxy {
        init.upsert_policy(&reg, "traffic-proxy-policy", PROXY_RULES)
            .await?;
        init.component_token(&server, &reg, "traffic-proxy", "traffic-proxy-policy")
            .await?;
    }
    if init.flags.allow_dns {
        init.upsert_policy(&reg, "dns-policy", DNS_RULES).await?;
        reg.call(
            Method::PUT,
            &format!("/v1/acl/token/{ANONYMOUS_ACCESSOR}"),
            Some(json!({"Description": "Anonymous Token",
                        "Policies": [{"Name": "dns-policy"}]})),
        )
        .await?;
        tracing::info!("the anonymous token reads nodes and services (DNS)");
    }
    tracing::info!("ACL initialisation complete");
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flags_parse_go_style() {
        let f = AclInitFlags::parse_from(crate::config::normalize_args(
            [
                "acl-init",
                "-resource-prefix=rel",
                "-server-address=a",
                "-server-address",
                "b",
                "-client",
                "-sync-catalog=true",
                "-set-server-tokens=false",
            ]
            .map(String::from),
        ));
        assert_eq!(f.server_address, ["a", "b"]);
        assert!(f.client && f.sync_catalog && !f.set_server_tokens && !f.allow_dns);
        assert_eq!(f.server_port, 8500);
        assert_eq!(f.timeout, Duration::from_secs(600));
    }

    #[test]
    fn sync_rules_name_the_node() {
        assert!(
            sync_rules("k8s-sync-east").contains("node \"k8s-sync-east\" { policy = \"write\" }")
        );
    }
}
