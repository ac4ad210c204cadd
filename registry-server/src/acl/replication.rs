//! ACL replication into a secondary datacenter, as Consul's: the leader of every datacenter
//! other than `primary_datacenter` copies the primary's policies, roles and (with
//! `acl.enable_token_replication`) global tokens into its own state, so that they are valid
//! here while the primary is unreachable. `Local` tokens stay in the datacenter that made
//! them.
//!
//! Each round is a blocking read of the primary's ACL tables ([`SOURCE_PATH`], with the
//! `replication` token, parked on the primary's ACL index), the difference with the local
//! tables ([`diff`]), and one `AclCommand::Replicate` through this datacenter's Raft log when
//! anything differs. A deletion in the primary therefore reaches the secondary as soon as the
//! primary applies it. [`ReplicationStatus`] is what `GET /v1/acl/replication` shows.

use super::AclRuntime;
use crate::query::write::Writer;
use crate::rpc::wan::Datacenters;
use crate::state::{AclTables, Store};
use registry_proto::acl::{
    AclCommand, AclReplicationBatch, Policy, Role, Token, ANONYMOUS_ACCESSOR, GLOBAL_MANAGEMENT_ID,
};
use registry_proto::Command;
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::watch;

/// The primary's endpoint a secondary reads (`?tokens=1` adds the global tokens and needs
/// `acl:write`; otherwise `acl:read`). A blocking query on the ACL index.
pub const SOURCE_PATH: &str = "/v1/internal/acl/replication";
/// How long one blocking read waits in the primary.
const ROUND_WAIT: &str = "30s";
/// Pause after a failed round, doubled up to [`MAX_BACKOFF`].
const MIN_BACKOFF: Duration = Duration::from_millis(500);
const MAX_BACKOFF: Duration = Duration::from_secs(10);

/// The primary's ACL records a secondary replicates.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReplicationSource {
    /// Every policy.
    pub policies: Vec<Policy>,
    /// Every role.
    pub roles: Vec<Role>,
    /// Every global token (only when asked for).
    pub tokens: Option<Vec<Token>>,
}

impl ReplicationSource {
    /// What `acl` holds for a secondary (`tokens`: include the global tokens).
    pub fn of(acl: &AclTables, tokens: bool) -> Self {
        ReplicationSource {
            policies: acl.policies.values().cloned().collect(),
            roles: acl.roles.values().cloned().collect(),
            tokens: tokens.then(|| acl.tokens.values().filter(|t| !t.local).cloned().collect()),
        }
    }
}

/// Consul's `ACLReplicationStatus`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ReplicationStatus {
    /// This datacenter replicates (a secondary with ACLs enabled).
    pub enabled: bool,
    /// The replication routine runs (this server leads).
    pub running: bool,
    /// The primary datacenter.
    pub source_datacenter: String,
    /// `policies` or `tokens`.
    pub replication_type: String,
    /// The primary's ACL index last replicated (policies, roles, tokens).
    pub replicated_index: u64,
    /// The same, for roles.
    pub replicated_role_index: u64,
    /// The same, for tokens (0 without token replication).
    pub replicated_token_index: u64,
    /// Unix milliseconds of the last successful round (0: never).
    pub last_success_ms: u64,
    /// Unix milliseconds of the last failed round (0: never).
    pub last_error_ms: u64,
    /// Why the last round failed.
    pub last_error_message: String,
}

impl ReplicationStatus {
    /// The JSON of `GET /v1/acl/replication`.
    pub fn to_json(&self) -> Value {
        json!({
            "Enabled": self.enabled,
            "Running": self.running,
            "SourceDatacenter": self.source_datacenter,
            "ReplicationType": self.replication_type,
            "ReplicatedIndex": self.replicated_index,
            "ReplicatedRoleIndex": self.replicated_role_index,
            "ReplicatedTokenIndex": self.replicated_token_index,
            "LastSuccess": go_time(self.last_success_ms),
            "LastError": go_time(self.last_error_ms),
            "LastErrorMessage": self.last_error_message,
        })
    }
}

/// A Go `time.Time` as JSON: RFC 3339 UTC, the zero time for 0.
fn go_time(unix_ms: u64) -> String {
    if unix_ms == 0 {
        return "0001-01-01T00:00:00Z".to_string();
    }
    crate::http::acl_shapes::rfc3339(unix_ms)
}

fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

fn policy_key(p: &Policy) -> Policy {
    Policy {
        create_index: 0,
        modify_index: 0,
        ..p.clone()
    }
}

fn role_key(r: &Role) -> Role {
    Role {
        create_index: 0,
        modify_index: 0,
        ..r.clone()
    }
}

fn token_key(t: &Token) -> Token {
    Token {
        create_index: 0,
        modify_index: 0,
        ..t.clone()
    }
}

/// What must change here for the local tables to hold what the primary holds: records
/// missing or different here, and records the primary no longer has (never the built-in
/// policy, the anonymous token or a `Local` token).
pub fn diff(local: &AclTables, src: &ReplicationSource) -> AclReplicationBatch {
    let mut b = AclReplicationBatch::default();
    for p in &src.policies {
        if local.policies.get(&p.id).map(policy_key) != Some(policy_key(p)) {
            b.policies.push(p.clone());
        }
    }
    let remote: std::collections::HashSet<&str> =
        src.policies.iter().map(|p| p.id.as_str()).collect();
    b.policy_deletes = local
        .policies
        .keys()
        .filter(|id| !remote.contains(id.as_str()) && *id != GLOBAL_MANAGEMENT_ID)
        .cloned()
        .collect();
    for r in &src.roles {
        if local.roles.get(&r.id).map(role_key) != Some(role_key(r)) {
            b.roles.push(r.clone());
        }
    }
    let remote: std::collections::HashSet<&str> = src.roles.iter().map(|r| r.id.as_str()).collect();
    b.role_deletes = local
        .roles
        .keys()
        .filter(|id| !remote.contains(id.as_str()))
        .cloned()
        .collect();
    if let Some(tokens) = &src.tokens {
        for t in tokens.iter().filter(|t| !t.local) {
            if local.tokens.get(&t.accessor_id).map(token_key) != Some(token_key(t)) {
                b.tokens.push(t.clone());
            }
        }
        let remote: std::collections::HashSet<&str> =
            tokens.iter().map(|t| t.accessor_id.as_str()).collect();
        b.token_deletes = local
            .tokens
            .values()
            .filter(|t| {
                !t.local
                    && t.accessor_id != ANONYMOUS_ACCESSOR
                    && !remote.contains(t.accessor_id.as_str())
            })
            .map(|t| t.accessor_id.clone())
            .collect();
    }
    b
}

/// What the replication routine works with.
#[derive(Clone)]
pub struct Replicator {
    /// The ACL settings (the `replication` token) and the status it reports into.
    pub acl: Arc<AclRuntime>,
    /// This server's state.
    pub store: Arc<Store>,
    /// Writes through this datacenter's Raft log.
    pub writer: Writer,
    /// The way to the primary datacenter.
    pub datacenters: Arc<Datacenters>,
}

impl Replicator {
    fn primary(&self) -> &str {
        &self.acl.config.primary_datacenter
    }

    fn tokens(&self) -> bool {
        self.acl.config.enable_token_replication
    }

    fn set(&self, f: impl FnOnce(&mut ReplicationStatus)) {
        f(&mut self.acl.replication.lock());
    }

    /// One round: the primary's tables as of an index past `index` (or after the wait),
    /// applied here. Returns the primary's index.
    async fn round(&self, index: u64) -> Result<u64, String> {
        let uri = format!(
            "{SOURCE_PATH}?index={index}&wait={ROUND_WAIT}{}",
            if self.tokens() { "&tokens=1" } else { "" }
        );
        let mut req = crate::rpc::wan_http::get_request(&uri);
        let secret = self.acl.tokens().replication;
        if !secret.is_empty() {
            req.headers
                .push(("x-consul-token".to_string(), secret.into_bytes().into()));
        }
        let reply = self
            .datacenters
            .run_in_datacenter(self.primary(), req)
            .await
            .map_err(|e| e.to_string())?;
        if reply.status != 200 {
            return Err(format!(
                "{} from {}: {}",
                reply.status,
                self.primary(),
                String::from_utf8_lossy(&reply.body)
            ));
        }
        let remote_index = reply
            .headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case("x-consul-index"))
            .and_then(|(_, v)| std::str::from_utf8(v).ok()?.parse::<u64>().ok())
            .unwrap_or(0);
        let src: ReplicationSource = serde_json::from_slice(&reply.body)
            .map_err(|e| format!("decoding the primary's ACL records: {e}"))?;
        let batch = diff(&self.store.read().acl, &src);
        if !batch.is_empty() {
            tracing::debug!(
                policies = batch.policies.len() + batch.policy_deletes.len(),
                roles = batch.roles.len() + batch.role_deletes.len(),
                tokens = batch.tokens.len() + batch.token_deletes.len(),
                "replicating ACL changes from the primary datacenter"
            );
            let r = self
                .writer
                .apply(Command::Acl(AclCommand::Replicate(Box::new(batch))))
                .await;
            self.acl.bump();
            r.map_err(|e| format!("applying replicated ACLs: {e}"))?;
        }
        Ok(remote_index)
    }
}

/// Runs replication while this server leads (a secondary datacenter with ACLs enabled only;
/// returns at once otherwise).
pub async fn run(r: Replicator, local_dc: String, mut leader: watch::Receiver<bool>) {
    if !r.acl.config.is_secondary(&local_dc) {
        return;
    }
    let kind = if r.tokens() { "tokens" } else { "policies" };
    r.set(|s| {
        s.enabled = true;
        s.source_datacenter = r.primary().to_string();
        s.replication_type = kind.to_string();
    });
    loop {
        if leader.wait_for(|l| *l).await.is_err() {
            return;
        }
        r.set(|s| s.running = true);
        let mut index = 0u64;
        let mut backoff = MIN_BACKOFF;
        loop {
            let outcome = tokio::select! {
                o = r.round(index) => o,
                _ = leader.wait_for(|l| !*l) => break,
            };
            match outcome {
                Ok(remote) => {
                    // An index that went backwards (a restored primary) starts over.
                    index = if remote < index { 0 } else { remote };
                    backoff = MIN_BACKOFF;
                    let tokens = r.tokens();
                    r.set(|s| {
                        s.replicated_index = remote;
                        s.replicated_role_index = remote;
                        if tokens {
                            s.replicated_token_index = remote;
                        }
                        s.last_success_ms = now_ms();
                    });
                }
                Err(m) => {
                    tracing::warn!(error = %m, "ACL replication round failed");
                    index = 0;
                    r.set(|s| {
                        s.last_error_ms = now_ms();
                        s.last_error_message = m;
                    });
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(MAX_BACKOFF);
                }
            }
        }
        r.set(|s| s.running = false);
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    fn tok(acc: &str, local: bool) -> Token {
        Token {
            accessor_id: acc.into(),
            secret_id: format!("{acc}-s"),
            local,
            ..Token::default()
        }
    }

    #[test]
    fn diff_adds_changes_and_deletes_but_keeps_local_and_builtin_records() {
        let mut local = AclTables::default();
        let p = Policy {
            id: "p1".into(),
            name: "a".into(),
            create_index: 7,
            modify_index: 9,
            ..Policy::default()
        };
        local.policies.insert("p1".into(), p.clone());
        local.policies.insert(
            GLOBAL_MANAGEMENT_ID.into(),
            crate::fsm::acl::global_management(1),
        );
        local.policies.insert(
            "gone".into(),
            Policy {
                id: "gone".into(),
                ..Policy::default()
            },
        );
        for t in [
            tok("l", true),
            tok("g", false),
            tok(ANONYMOUS_ACCESSOR, false),
        ] {
            local.tokens.insert(t.accessor_id.clone(), t);
        }
        // The primary has p1 unchanged (other indexes), a new token, not "gone" nor "g".
        let src = ReplicationSource {
            policies: vec![Policy {
                create_index: 1,
                modify_index: 2,
                ..p
            }],
            roles: Vec::new(),
            tokens: Some(vec![tok("n", false)]),
        };
        let b = diff(&local, &src);
        assert!(b.policies.is_empty());
        assert_eq!(b.policy_deletes, ["gone"]);
        assert_eq!(b.tokens.len(), 1);
        assert_eq!(b.token_deletes, ["g"]);
        // Without token replication, tokens are left alone.
        let b = diff(
            &local,
            &ReplicationSource {
                tokens: None,
                ..src
            },
        );
        assert!(b.tokens.is_empty() && b.token_deletes.is_empty());
    }

    #[test]
    fn status_has_consuls_shape() {
        let v = ReplicationStatus::default().to_json();
        assert_eq!(v["LastSuccess"], "0001-01-01T00:00:00Z");
        for k in [
            "Enabled",
            "Running",
            "SourceDatacenter",
            "ReplicationType",
            "ReplicatedIndex",
            "ReplicatedRoleIndex",
            "ReplicatedTokenIndex",
            "LastError",
            "LastErrorMessage",
        ] {
            assert!(v.get(k).is_some(), "{k}");
        }
    }
}
