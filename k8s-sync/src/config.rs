//! Command-line flags, named as consul-k8s's `sync-catalog` names them (Go style: `-flag`,
//! `-flag=value`, `-flag value`, booleans as `-flag` or `-flag=false`).

use std::collections::BTreeSet;
use std::time::Duration;

use clap::{ArgAction, Parser};

use crate::translate::{NodePortSyncType, SyncConfig};

/// Mirrors Kubernetes Services into the registry's catalog, and catalog services into
/// Kubernetes ExternalName Services with -to-k8s.
#[derive(Debug, Clone, Parser)]
#[command(name = "k8s-sync", version)]
pub struct Flags {
    /// Registry HTTP address (host:port or URL).
    #[arg(long, env = "CONSUL_HTTP_ADDR", default_value = "127.0.0.1:8500")]
    pub http_addr: String,
    /// PEM CA certificate(s) that verify an https:// registry address.
    #[arg(long = "ca-file", env = "CONSUL_CACERT")]
    pub ca_file: Option<String>,
    /// Use https:// for an address given without a scheme.
    #[arg(long = "http-ssl", env = "CONSUL_HTTP_SSL", default_value_t = false, action = ArgAction::Set, num_args = 0..=1, default_missing_value = "true", value_parser = parse_go_bool)]
    pub http_ssl: bool,
    /// ACL token sent as X-Consul-Token.
    #[arg(long, env = "CONSUL_HTTP_TOKEN")]
    pub consul_token: Option<String>,
    /// Path of a kubeconfig; default: KUBECONFIG, ~/.kube/config, then in-cluster.
    #[arg(long)]
    pub kubeconfig: Option<String>,
    /// Sync Kubernetes Services into the catalog.
    #[arg(long, default_value_t = true, action = ArgAction::Set, num_args = 0..=1, default_missing_value = "true")]
    pub to_consul: bool,
    /// Sync catalog services into Kubernetes as ExternalName Services.
    #[arg(long = "to-k8s", default_value_t = false, action = ArgAction::Set, num_args = 0..=1, default_missing_value = "true")]
    pub to_k8s: bool,
    /// Sync Services without a service-sync annotation.
    #[arg(long = "k8s-default-sync", default_value_t = true, action = ArgAction::Set, num_args = 0..=1, default_missing_value = "true")]
    pub k8s_default_sync: bool,
    /// Namespace to sync (repeatable, `*` for all). Empty syncs nothing.
    #[arg(long = "allow-k8s-namespace")]
    pub allow_k8s_namespace: Vec<String>,
    /// Namespace never synced (repeatable); wins over the allow list.
    #[arg(long = "deny-k8s-namespace")]
    pub deny_k8s_namespace: Vec<String>,
    /// Deprecated: sync only this namespace (replaces the allow list).
    #[arg(long = "k8s-source-namespace", default_value = "")]
    pub k8s_source_namespace: String,
    /// Append `-<namespace>` to catalog service names.
    #[arg(long = "add-k8s-namespace-suffix", default_value_t = false, action = ArgAction::Set, num_args = 0..=1, default_missing_value = "true")]
    pub add_k8s_namespace_suffix: bool,
    /// Prefix of catalog service names.
    #[arg(long = "consul-service-prefix", default_value = "")]
    pub consul_service_prefix: String,
    /// Prefix of the Kubernetes Services created by -to-k8s.
    #[arg(long = "k8s-service-prefix", default_value = "")]
    pub k8s_service_prefix: String,
    /// Tag on every synced instance; it also marks what this instance owns.
    #[arg(long = "consul-k8s-tag", default_value = "k8s")]
    pub consul_k8s_tag: String,
    /// Catalog node that holds the synced instances.
    #[arg(long = "consul-node-name", default_value = "k8s-sync")]
    pub consul_node_name: String,
    /// Sync ClusterIP (and headless) Services.
    #[arg(long = "sync-clusterip-services", default_value_t = true, action = ArgAction::Set, num_args = 0..=1, default_missing_value = "true")]
    pub sync_clusterip_services: bool,
    /// Register LoadBalancer Services' endpoints instead of their ingress addresses.
    #[arg(long = "sync-lb-services-endpoints", default_value_t = false, action = ArgAction::Set, num_args = 0..=1, default_missing_value = "true")]
    pub sync_lb_services_endpoints: bool,
    /// Node address of NodePort instances: ExternalOnly, InternalOnly or ExternalFirst.
    #[arg(long = "node-port-sync-type", default_value = "ExternalOnly")]
    pub node_port_sync_type: NodePortSyncType,
    /// Full resync period (re-read of the catalog and full diff), e.g. 30s.
    #[arg(long = "sync-period", alias = "consul-write-interval", default_value = "30s", value_parser = parse_duration)]
    pub sync_period: Duration,
    /// Namespace of the Services created by -to-k8s.
    #[arg(long = "k8s-write-namespace", default_value = "default")]
    pub k8s_write_namespace: String,
    /// The registry's DNS domain (ExternalName targets `<name>.service.<domain>`).
    #[arg(long = "consul-domain", default_value = "consul")]
    pub consul_domain: String,
    /// Address of /healthz, /readyz, /health/ready and /metrics.
    #[arg(long, default_value = ":8080")]
    pub listen: String,
    /// Log level (trace, debug, info, warn, error).
    #[arg(long = "log-level", default_value = "info")]
    pub log_level: String,
    /// Log as JSON lines.
    #[arg(long = "log-json", default_value_t = false, action = ArgAction::Set, num_args = 0..=1, default_missing_value = "true")]
    pub log_json: bool,
    /// Run as one of several replicas, active only while holding a coordination.k8s.io Lease.
    #[arg(long = "leader-elect", default_value_t = false, action = ArgAction::Set, num_args = 0..=1, default_missing_value = "true")]
    pub leader_elect: bool,
    /// Namespace of the Lease.
    #[arg(long = "leader-elect-namespace", default_value = "default")]
    pub leader_elect_namespace: String,
    /// Name of the Lease.
    #[arg(long = "leader-elect-lease-name", default_value = "k8s-sync")]
    pub leader_elect_lease_name: String,
    /// This replica's identity in the Lease (default: hostname-pid).
    #[arg(long = "leader-elect-id")]
    pub leader_elect_id: Option<String>,
    /// Read endpoints from discovery.k8s.io/v1 EndpointSlices; `false` reads core/v1
    /// Endpoints instead, for clusters older than Kubernetes 1.21.
    #[arg(long = "use-endpoint-slices", default_value_t = true, action = ArgAction::Set, num_args = 0..=1, default_missing_value = "true")]
    pub use_endpoint_slices: bool,
    /// Deregister every instance this sync registered on -consul-node-name (and the node
    /// when nothing else is on it), then exit. Used by the chart's pre-delete hook.
    #[arg(long = "purge-k8s-services-from-node", default_value_t = false, action = ArgAction::Set, num_args = 0..=1, default_missing_value = "true")]
    pub purge_k8s_services_from_node: bool,
    /// Lease duration.
    #[arg(long = "leader-elect-lease-duration", default_value = "15s", value_parser = parse_duration)]
    pub leader_elect_lease_duration: Duration,
}

/// Go's strconv.ParseBool.
pub fn parse_go_bool(s: &str) -> Result<bool, String> {
    match s {
        "1" | "t" | "T" | "TRUE" | "true" | "True" => Ok(true),
        "0" | "f" | "F" | "FALSE" | "false" | "False" => Ok(false),
        _ => Err(format!("invalid boolean {s:?}")),
    }
}

/// Go duration strings: `300ms`, `30s`, `1m30s`, `2h`.
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let mut total = 0f64;
    let mut num = String::new();
    let mut rest = s.trim();
    if rest.is_empty() {
        return Err("empty duration".into());
    }
    if rest == "0" {
        return Ok(Duration::ZERO);
    }
    while !rest.is_empty() {
        num.clear();
        let digits = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .unwrap_or(rest.len());
        num.push_str(&rest[..digits]);
        rest = &rest[digits..];
        let unit_len = rest
            .find(|c: char| c.is_ascii_digit() || c == '.')
            .unwrap_or(rest.len());
        let unit = &rest[..unit_len];
        rest = &rest[unit_len..];
        let n: f64 = num.parse().map_err(|_| format!("invalid duration {s:?}"))?;
        let mult = match unit {
            "ns" => 1e-9,
            "us" | "µs" => 1e-6,
            "ms" => 1e-3,
            "s" => 1.0,
            "m" => 60.0,
            "h" => 3600.0,
            _ => return Err(format!("invalid duration {s:?}: unit {unit:?}")),
        };
        total += n * mult;
    }
    Ok(Duration::from_secs_f64(total))
}

/// Rewrites Go-style `-flag` arguments into clap's `--flag`.
pub fn normalize_args(args: impl IntoIterator<Item = String>) -> Vec<String> {
    let mut out = Vec::new();
    for (i, a) in args.into_iter().enumerate() {
        if i > 0 && a.starts_with('-') && !a.starts_with("--") && a.len() > 2 {
            out.push(format!("-{a}"));
        } else {
            out.push(a);
        }
    }
    out
}

impl Flags {
    /// Validated translation settings.
    pub fn sync_config(&self) -> Result<SyncConfig, String> {
        let node_ok = !self.consul_node_name.is_empty()
            && self.consul_node_name.len() <= 63
            && self
                .consul_node_name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-');
        if !node_ok {
            return Err(format!(
                "-consul-node-name={:?} must be 1-63 characters of letters, digits and '-'",
                self.consul_node_name
            ));
        }
        if self.consul_k8s_tag.is_empty() {
            return Err("-consul-k8s-tag must not be empty".into());
        }
        let allow: BTreeSet<String> = if self.k8s_source_namespace.is_empty() {
            self.allow_k8s_namespace.iter().cloned().collect()
        } else {
            [self.k8s_source_namespace.clone()].into()
        };
        Ok(SyncConfig {
            allow_namespaces: allow,
            deny_namespaces: self.deny_k8s_namespace.iter().cloned().collect(),
            default_sync: self.k8s_default_sync,
            sync_clusterip: self.sync_clusterip_services,
            sync_lb_endpoints: self.sync_lb_services_endpoints,
            node_port_sync: self.node_port_sync_type,
            consul_prefix: self.consul_service_prefix.clone(),
            add_namespace_suffix: self.add_k8s_namespace_suffix,
            tag: self.consul_k8s_tag.clone(),
        })
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn parse(args: &[&str]) -> Flags {
        let v = normalize_args(
            std::iter::once("k8s-sync".to_string()).chain(args.iter().map(|s| s.to_string())),
        );
        Flags::try_parse_from(v).unwrap()
    }

    #[test]
    fn go_style_flags() {
        let f = parse(&[
            "-to-k8s",
            "-k8s-default-sync=false",
            "-allow-k8s-namespace",
            "*",
            "-allow-k8s-namespace=ns2",
            "-node-port-sync-type=ExternalFirst",
            "-sync-period",
            "1m30s",
        ]);
        assert!(f.to_k8s && f.to_consul && !f.k8s_default_sync);
        assert_eq!(f.allow_k8s_namespace, vec!["*", "ns2"]);
        assert_eq!(f.node_port_sync_type, NodePortSyncType::ExternalFirst);
        assert_eq!(f.sync_period, Duration::from_secs(90));
        assert_eq!(f.consul_node_name, "k8s-sync");
        let c = parse(&["-k8s-source-namespace=only", "-allow-k8s-namespace=*"])
            .sync_config()
            .unwrap();
        assert_eq!(c.allow_namespaces, ["only".to_string()].into());
        assert!(parse(&["-consul-node-name=bad_name"])
            .sync_config()
            .is_err());
        assert_eq!(parse_duration("250ms").unwrap(), Duration::from_millis(250));
        assert!(parse_duration("5x").is_err());
    }
}
