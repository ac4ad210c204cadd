//! Consul's ACL system as data: tokens, policies and roles as the state store keeps them, the
//! Raft commands that change them, and the rules language (`rules`).
//!
//! These records are stored with postcard (positional), so they carry no serde attributes
//! that skip fields; the HTTP layer renders Consul's JSON shapes from them.

pub mod rules;

use serde::{Deserialize, Serialize};

/// ID of the built-in `global-management` policy.
pub const GLOBAL_MANAGEMENT_ID: &str = "00000000-0000-0000-0000-000000000001";
/// Name of the built-in management policy.
pub const GLOBAL_MANAGEMENT_NAME: &str = "global-management";
/// Accessor ID of the anonymous token.
pub const ANONYMOUS_ACCESSOR: &str = "00000000-0000-0000-0000-000000000002";
/// Secret of the anonymous token.
pub const ANONYMOUS_SECRET: &str = "anonymous";

/// A reference to a policy or role, by ID and the name it had when linked.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Link {
    /// ID.
    pub id: String,
    /// Name.
    pub name: String,
}

/// A service identity: `service:write` on the service and its sidecar, `service:read` and
/// `node:read` on everything.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ServiceIdentity {
    /// Service name.
    pub service_name: String,
    /// Datacenters it is valid in (empty: all).
    pub datacenters: Vec<String>,
}

/// A node identity: `node:write` on the node and `service:read` on everything.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodeIdentity {
    /// Node name.
    pub node_name: String,
    /// Datacenter.
    pub datacenter: String,
}

/// A templated policy attached to a token or role: a built-in template (`builtin/service`,
/// ...) rendered with its variables into a policy when the token is resolved.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct TemplatedPolicy {
    /// `TemplateName`.
    pub template_name: String,
    /// `TemplateVariables.Name` (empty for templates without variables).
    pub name: String,
    /// Datacenters it is valid in (empty: all).
    pub datacenters: Vec<String>,
}

/// An auth method (`/v1/acl/auth-method`): how `POST /v1/acl/login` verifies a bearer token.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuthMethod {
    /// Unique name.
    pub name: String,
    /// `Type` (`jwt`).
    pub method_type: String,
    /// `DisplayName`.
    pub display_name: String,
    /// `Description`.
    pub description: String,
    /// `MaxTokenTTL` as given (empty: none).
    pub max_token_ttl: String,
    /// `TokenLocality` (`local` or `global`).
    pub token_locality: String,
    /// `Config` as JSON text.
    pub config: String,
    /// Raft index of creation.
    pub create_index: u64,
    /// Raft index of the last change.
    pub modify_index: u64,
}

/// A binding rule (`/v1/acl/binding-rule`): which roles, identities or policies a login
/// through its auth method gets, for the claims its `Selector` matches.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct BindingRule {
    /// ID.
    pub id: String,
    /// `Description`.
    pub description: String,
    /// `AuthMethod`.
    pub auth_method: String,
    /// `Selector` (a filter expression over the mapped claims).
    pub selector: String,
    /// `BindType`: `service`, `node`, `role`, `policy` or `templated-policy`.
    pub bind_type: String,
    /// `BindName`, with `${value.x}` placeholders.
    pub bind_name: String,
    /// `BindVars.Name` of a templated-policy binding.
    pub bind_vars_name: String,
    /// Raft index of creation.
    pub create_index: u64,
    /// Raft index of the last change.
    pub modify_index: u64,
}

/// A token.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Token {
    /// Public ID.
    pub accessor_id: String,
    /// The secret a client presents.
    pub secret_id: String,
    /// Free text.
    pub description: String,
    /// Linked policies.
    pub policies: Vec<Link>,
    /// Linked roles.
    pub roles: Vec<Link>,
    /// Service identities.
    pub service_identities: Vec<ServiceIdentity>,
    /// Node identities.
    pub node_identities: Vec<NodeIdentity>,
    /// Local to this datacenter.
    pub local: bool,
    /// RFC 3339 creation time, stamped by the leader.
    pub create_time: String,
    /// Expiry as Unix milliseconds (0: never).
    pub expiration_unix_ms: u64,
    /// RFC 3339 expiry, as given or computed (empty: never).
    pub expiration_time: String,
    /// `ExpirationTTL` as given.
    pub expiration_ttl: String,
    /// Raft index of creation.
    pub create_index: u64,
    /// Raft index of the last change.
    pub modify_index: u64,
    /// Templated policies.
    pub templated_policies: Vec<TemplatedPolicy>,
    /// The auth method that created it through `login` (empty: not a login token).
    pub auth_method: String,
}

/// A policy.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Policy {
    /// ID.
    pub id: String,
    /// Unique name.
    pub name: String,
    /// Free text.
    pub description: String,
    /// Rules text (HCL or JSON).
    pub rules: String,
    /// Datacenters it applies in (empty: all).
    pub datacenters: Vec<String>,
    /// Raft index of creation.
    pub create_index: u64,
    /// Raft index of the last change.
    pub modify_index: u64,
}

/// A role: a named set of policies and identities.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Role {
    /// ID.
    pub id: String,
    /// Unique name.
    pub name: String,
    /// Free text.
    pub description: String,
    /// Linked policies.
    pub policies: Vec<Link>,
    /// Service identities.
    pub service_identities: Vec<ServiceIdentity>,
    /// Node identities.
    pub node_identities: Vec<NodeIdentity>,
    /// Raft index of creation.
    pub create_index: u64,
    /// Raft index of the last change.
    pub modify_index: u64,
    /// Templated policies.
    pub templated_policies: Vec<TemplatedPolicy>,
}

/// A change to the ACL tables. IDs, secrets and times are chosen by the leader before it
/// proposes the command, so applying it is deterministic.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum AclCommand {
    /// `PUT /v1/acl/bootstrap` (and `initial_management`): creates the built-in policy if
    /// missing and the management token, unless bootstrapping already happened. `reset_index`
    /// 0 = first bootstrap only; the response is rejected with Consul's text otherwise.
    Bootstrap {
        /// The management token.
        token: Token,
        /// Allow it even after a bootstrap (the `initial_management` token at startup).
        force: bool,
    },
    /// Creates or replaces a token (by accessor ID).
    TokenSet(Token),
    /// Deletes a token.
    TokenDelete {
        /// Accessor ID.
        accessor_id: String,
    },
    /// Creates or replaces a policy (by ID); names are unique.
    PolicySet(Policy),
    /// Deletes a policy.
    PolicyDelete {
        /// ID.
        id: String,
    },
    /// Creates or replaces a role (by ID); names are unique.
    RoleSet(Role),
    /// Deletes a role.
    RoleDelete {
        /// ID.
        id: String,
    },
    /// Makes sure the built-in policy and the anonymous token exist (the leader proposes it
    /// when ACLs are enabled).
    Init,
    /// Creates or replaces an auth method (by name).
    AuthMethodSet(AuthMethod),
    /// Deletes an auth method, its binding rules and the tokens created through it.
    AuthMethodDelete {
        /// Name.
        name: String,
    },
    /// Creates or replaces a binding rule (by ID); its auth method must exist.
    BindingRuleSet(BindingRule),
    /// Deletes a binding rule.
    BindingRuleDelete {
        /// ID.
        id: String,
    },
    /// One round of ACL replication from the primary datacenter, applied as a whole by a
    /// secondary datacenter's state machine.
    Replicate(Box<AclReplicationBatch>),
}

/// What a secondary datacenter's leader learned from the primary in one replication round:
/// the records to create or replace and the ones to delete (by ID / accessor ID).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct AclReplicationBatch {
    /// Policies created or changed in the primary.
    pub policies: Vec<Policy>,
    /// Policies gone from the primary.
    pub policy_deletes: Vec<String>,
    /// Roles created or changed in the primary.
    pub roles: Vec<Role>,
    /// Roles gone from the primary.
    pub role_deletes: Vec<String>,
    /// Global (non-`Local`) tokens created or changed in the primary.
    pub tokens: Vec<Token>,
    /// Global tokens gone from the primary (accessor IDs).
    pub token_deletes: Vec<String>,
}

impl AclReplicationBatch {
    /// Whether the round changes nothing.
    pub fn is_empty(&self) -> bool {
        self.policies.is_empty()
            && self.policy_deletes.is_empty()
            && self.roles.is_empty()
            && self.role_deletes.is_empty()
            && self.tokens.is_empty()
            && self.token_deletes.is_empty()
    }
}
