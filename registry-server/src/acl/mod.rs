//! ACL enforcement on this server: the configuration (`acl { }`), the agent's own tokens,
//! resolving a secret to an [`Authorizer`], and the per-route decisions (`routes`) the HTTP
//! layer applies in one middleware.

pub mod authorizer;
pub mod login;
pub mod replication;
pub mod routes;
pub mod templated;

pub use authorizer::Authorizer;

use crate::state::Db;
use crate::ServerError;
use parking_lot::RwLock;
use registry_proto::acl::rules::{self, Rules};
use registry_proto::acl::{
    NodeIdentity, ServiceIdentity, TemplatedPolicy, Token, ANONYMOUS_SECRET,
};
use std::time::{Duration, Instant};

/// `acl { }` of the agent configuration.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AclConfig {
    /// ACLs are enforced.
    pub enabled: bool,
    /// `default_policy = "allow"` (Consul's default); `false` for `"deny"`.
    pub default_allow: bool,
    /// `down_policy` (kept; a single datacenter never loses its ACL source).
    pub down_policy: String,
    /// `enable_token_persistence`.
    pub enable_token_persistence: bool,
    /// `tokens { }`.
    pub tokens: AgentTokens,
    /// `primary_datacenter`: the datacenter whose ACL records are authoritative (empty:
    /// this one).
    pub primary_datacenter: String,
    /// `enable_token_replication`: a secondary datacenter replicates global tokens too.
    pub enable_token_replication: bool,
}

impl AclConfig {
    /// Whether a server of `datacenter` replicates ACLs from another, primary datacenter.
    pub fn is_secondary(&self, datacenter: &str) -> bool {
        self.enabled
            && !self.primary_datacenter.is_empty()
            && !self.primary_datacenter.eq_ignore_ascii_case(datacenter)
    }
}

/// The agent's own tokens (`acl.tokens`, `PUT /v1/agent/token/:type`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AgentTokens {
    /// `initial_management`: created as a management token when this server leads.
    pub initial_management: String,
    /// `agent`: used for the agent's own writes.
    pub agent: String,
    /// `agent_recovery`: local agent endpoints only.
    pub agent_recovery: String,
    /// `default`: used for requests without a token, and for DNS.
    pub default: String,
    /// `replication`.
    pub replication: String,
}

/// The ACL settings while the server runs: the configuration, with tokens that
/// `PUT /v1/agent/token/:type` may change.
#[derive(Debug, Default)]
pub struct AclRuntime {
    /// The configuration it started with.
    pub config: AclConfig,
    tokens: RwLock<AgentTokens>,
    version: std::sync::atomic::AtomicU64,
    cache: parking_lot::Mutex<AuthzCache>,
    /// What ACL replication reports (`GET /v1/acl/replication`).
    pub replication: parking_lot::Mutex<replication::ReplicationStatus>,
    /// Global tokens resolved in the primary datacenter (a secondary without token
    /// replication), by secret, with when they were fetched; `None`: the primary knows none.
    remote: parking_lot::Mutex<std::collections::HashMap<String, (Option<Token>, Instant)>>,
}

/// How long a token resolved in the primary datacenter is trusted (Consul's `token_ttl`).
pub const REMOTE_TOKEN_TTL: Duration = Duration::from_secs(30);
/// Most remotely resolved tokens kept; past this the cache starts over.
const REMOTE_CACHE_MAX: usize = 4096;

/// Authorizers built for the ACL tables as of one index, by secret: resolving a token parses
/// its policies' rules, far too slow to do on every request.
#[derive(Debug, Default)]
struct AuthzCache {
    index: u64,
    by_secret: std::collections::HashMap<String, Authorizer>,
}

/// Most authorizers kept; past this the cache starts over.
const AUTHZ_CACHE_MAX: usize = 4096;

impl AclRuntime {
    /// From the configuration.
    pub fn new(config: AclConfig) -> Self {
        AclRuntime {
            tokens: RwLock::new(config.tokens.clone()),
            config,
            version: std::sync::atomic::AtomicU64::new(0),
            cache: parking_lot::Mutex::new(AuthzCache::default()),
            replication: Default::default(),
            remote: Default::default(),
        }
    }

    /// Bumped on every change of the agent's tokens or of the ACL tables made here, so that
    /// cached DNS answers are rebuilt.
    pub fn version(&self) -> u64 {
        self.version.load(std::sync::atomic::Ordering::Acquire)
    }

    /// Records a change (see [`AclRuntime::version`]).
    pub fn bump(&self) {
        self.version
            .fetch_add(1, std::sync::atomic::Ordering::AcqRel);
    }

    /// Whether ACLs are enforced.
    pub fn enabled(&self) -> bool {
        self.config.enabled
    }

    /// The current agent tokens.
    pub fn tokens(&self) -> AgentTokens {
        self.tokens.read().clone()
    }

    /// Sets one agent token by Consul's type name; `false` for an unknown type.
    pub fn set_token(&self, kind: &str, secret: &str) -> bool {
        let mut t = self.tokens.write();
        let slot = match kind {
            "default" => &mut t.default,
            "agent" => &mut t.agent,
            "agent_recovery" | "agent_master" => &mut t.agent_recovery,
            "replication" => &mut t.replication,
            "config_file_service_registration" => return true,
            _ => return false,
        };
        *slot = secret.to_string();
        drop(t);
        self.bump();
        true
    }

    /// Whether `secret` must be resolved in the primary datacenter before [`Self::resolve`]:
    /// this is a secondary datacenter without token replication, the token is not stored
    /// here, and no answer about it from the last [`REMOTE_TOKEN_TTL`] is kept.
    pub fn wants_remote(&self, db: &Db, secret: &str, datacenter: &str) -> bool {
        let primary = &self.config.primary_datacenter;
        if !self.config.enabled
            || self.config.enable_token_replication
            || primary.is_empty()
            || primary.eq_ignore_ascii_case(datacenter)
            || secret.is_empty()
            || secret == ANONYMOUS_SECRET
            || db.acl.token_by_secret(secret).is_some()
        {
            return false;
        }
        !matches!(self.remote.lock().get(secret), Some((_, at)) if at.elapsed() < REMOTE_TOKEN_TTL)
    }

    /// Keeps what the primary datacenter answered about `secret` (`None`: no such global
    /// token there).
    pub fn remember_remote(&self, secret: &str, token: Option<Token>) {
        let mut remote = self.remote.lock();
        if remote.len() >= REMOTE_CACHE_MAX {
            remote.clear();
        }
        remote.insert(secret.to_string(), (token, Instant::now()));
    }

    fn remote_token(&self, secret: &str) -> Option<Token> {
        match self.remote.lock().get(secret) {
            Some((Some(t), at)) if at.elapsed() < REMOTE_TOKEN_TTL => Some(t.clone()),
            _ => None,
        }
    }

    /// Resolves the secret a request presented (empty: the `default` token, else anonymous).
    pub fn resolve(
        &self,
        db: &Db,
        secret: &str,
        datacenter: &str,
    ) -> Result<Authorizer, ServerError> {
        let default;
        let secret = if secret.is_empty() {
            default = self.tokens.read().default.clone();
            if default.is_empty() {
                ANONYMOUS_SECRET
            } else {
                default.as_str()
            }
        } else {
            secret
        };
        let recovery = &self.tokens.read().agent_recovery;
        if !recovery.is_empty() && recovery == secret {
            // The recovery token works for the agent endpoints even when servers are away.
            let mut a = Authorizer::new("agent-recovery-token", false);
            if let Ok(r) = rules::parse(
                "agent_prefix \"\" { policy = \"write\" }\nnode_prefix \"\" { policy = \"read\" }",
            ) {
                a.add(&r);
            }
            return Ok(a);
        }
        match db.acl.token_by_secret(secret) {
            Some(t) => {
                // Expiry is checked by the callers against the clock, before they get here.
                let mut cache = self.cache.lock();
                if cache.index != db.acl.index {
                    cache.by_secret.clear();
                    cache.index = db.acl.index;
                }
                if let Some(a) = cache.by_secret.get(secret) {
                    return Ok(a.clone());
                }
                let a = authorizer_for(db, t, datacenter, self.config.default_allow);
                if cache.by_secret.len() >= AUTHZ_CACHE_MAX {
                    cache.by_secret.clear();
                }
                cache.by_secret.insert(secret.to_string(), a.clone());
                Ok(a)
            }
            None if secret == ANONYMOUS_SECRET => {
                // ACLs not initialised yet: the anonymous token has no policies.
                Ok(Authorizer::new(
                    registry_proto::acl::ANONYMOUS_ACCESSOR,
                    self.config.default_allow,
                ))
            }
            None => match self.remote_token(secret) {
                // A global token of the primary datacenter, with this datacenter's copy of
                // its policies and roles (they are always replicated).
                Some(t) if !expired(&t, now_unix_ms()) => Ok(authorizer_for(
                    db,
                    &t,
                    datacenter,
                    self.config.default_allow,
                )),
                _ => Err(ServerError::PermissionDenied("ACL not found".to_string())),
            },
        }
    }
}

/// The wall clock as Unix milliseconds, what token expiry is compared with.
pub fn now_unix_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

/// Whether a token has expired at `now_unix_ms`.
pub fn expired(t: &Token, now_unix_ms: u64) -> bool {
    t.expiration_unix_ms != 0 && t.expiration_unix_ms <= now_unix_ms
}

/// The rules a service identity grants.
pub fn service_identity_rules(si: &ServiceIdentity) -> String {
    format!(
        "service \"{0}\" {{ policy = \"write\" }}\nservice \"{0}-sidecar-proxy\" {{ policy = \"write\" }}\nservice_prefix \"\" {{ policy = \"read\" }}\nnode_prefix \"\" {{ policy = \"read\" }}",
        si.service_name.replace('"', "")
    )
}

/// The rules a node identity grants.
pub fn node_identity_rules(ni: &NodeIdentity) -> String {
    format!(
        "node \"{}\" {{ policy = \"write\" }}\nservice_prefix \"\" {{ policy = \"read\" }}",
        ni.node_name.replace('"', "")
    )
}

fn dc_ok(dcs: &[String], dc: &str) -> bool {
    dcs.is_empty() || dcs.iter().any(|d| d.eq_ignore_ascii_case(dc))
}

/// Builds the authorizer of a stored token: its policies, its roles' policies and the rules
/// of their service and node identities.
pub fn authorizer_for(db: &Db, t: &Token, dc: &str, default_allow: bool) -> Authorizer {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0);
    if expired(t, now) {
        // An expired token is as good as a deleted one, but resolving never fails here:
        // it grants nothing beyond the default.
        return Authorizer::new(&t.accessor_id, default_allow);
    }
    let mut policy_ids: Vec<&str> = t.policies.iter().map(|l| l.id.as_str()).collect();
    let mut sis: Vec<&ServiceIdentity> = t.service_identities.iter().collect();
    let mut nis: Vec<&NodeIdentity> = t.node_identities.iter().collect();
    let mut tps: Vec<&TemplatedPolicy> = t.templated_policies.iter().collect();
    for rl in &t.roles {
        if let Some(role) = db.acl.roles.get(&rl.id) {
            policy_ids.extend(role.policies.iter().map(|l| l.id.as_str()));
            sis.extend(role.service_identities.iter());
            nis.extend(role.node_identities.iter());
            tps.extend(role.templated_policies.iter());
        }
    }
    if policy_ids.contains(&registry_proto::acl::GLOBAL_MANAGEMENT_ID) {
        return Authorizer::management(&t.accessor_id);
    }
    let mut a = Authorizer::new(&t.accessor_id, default_allow);
    let mut add = |text: &str| {
        let r: Rules = rules::parse(text).unwrap_or_default();
        a.add(&r);
    };
    for id in policy_ids {
        if let Some(p) = db.acl.policies.get(id) {
            if dc_ok(&p.datacenters, dc) {
                add(&p.rules);
            }
        }
    }
    for si in sis {
        if dc_ok(&si.datacenters, dc) {
            add(&service_identity_rules(si));
        }
    }
    for ni in nis {
        if ni.datacenter.is_empty() || ni.datacenter.eq_ignore_ascii_case(dc) {
            add(&node_identity_rules(ni));
        }
    }
    for tp in tps {
        if dc_ok(&tp.datacenters, dc) {
            if let Some(text) = templated::rules_of(tp) {
                add(&text);
            }
        }
    }
    a
}

/// How DNS sees the catalog while ACLs are enabled: a copy without the services and nodes the
/// agent's `default` token (else the anonymous token) may not read. `None` from the function
/// means "nothing hidden, use the catalog as it is".
#[derive(Clone)]
pub struct DnsView {
    runtime: std::sync::Arc<AclRuntime>,
    datacenter: String,
    /// A client agent's token (empty: anonymous); `None`: this agent's `default` token.
    secret: Option<String>,
}

impl std::fmt::Debug for DnsView {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("DnsView")
    }
}

impl DnsView {
    /// The view of `runtime`'s default token in `datacenter`.
    pub fn new(runtime: std::sync::Arc<AclRuntime>, datacenter: String) -> Self {
        DnsView {
            runtime,
            datacenter,
            secret: None,
        }
    }

    /// The view of a client agent's `default` token `secret` (empty: the anonymous token).
    pub fn for_token(
        runtime: std::sync::Arc<AclRuntime>,
        datacenter: String,
        secret: &str,
    ) -> Self {
        let secret = if secret.is_empty() {
            ANONYMOUS_SECRET
        } else {
            secret
        };
        DnsView {
            runtime,
            datacenter,
            secret: Some(secret.to_string()),
        }
    }

    /// The catalog as the default token sees it (`None`: all of it).
    pub fn filter(&self, db: &Db) -> Option<Db> {
        let secret = self.secret.as_deref().unwrap_or("");
        let live = db
            .acl
            .token_by_secret(secret)
            .is_none_or(|t| !expired(t, now_unix_ms()));
        let authz = if live {
            self.runtime.resolve(db, secret, &self.datacenter).ok()
        } else {
            None
        };
        let authz = authz.unwrap_or_else(|| Authorizer::new("", false));
        filtered_db(db, &authz)
    }

    /// Changes whenever the agent's tokens or the ACL tables change through this server.
    pub fn version(&self) -> u64 {
        self.runtime.version()
    }
}

/// `db` without the service names and nodes `authz` may not read (`None`: nothing to hide).
pub fn filtered_db(db: &Db, authz: &Authorizer) -> Option<Db> {
    use registry_proto::acl::rules::{Access, Resource};
    if authz.management {
        return None;
    }
    let services: Vec<String> = db
        .services_by_name
        .keys()
        .filter(|n| !authz.allowed(Resource::Service, n, Access::Read))
        .cloned()
        .collect();
    let nodes: Vec<String> = db
        .nodes
        .keys()
        .filter(|n| !authz.allowed(Resource::Node, n, Access::Read))
        .cloned()
        .collect();
    if services.is_empty() && nodes.is_empty() {
        return None;
    }
    let mut out = db.clone();
    for n in services {
        out.services_by_name.remove(&n);
    }
    for n in nodes {
        out.nodes.remove(&n);
    }
    Some(out)
}
