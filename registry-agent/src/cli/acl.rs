//! `registry acl` (Consul's `command/acl`): bootstrap, and create, list, read, update, clone
//! and delete for tokens, policies and roles through `/v1/acl/*` (auth methods, binding rules
//! and templated policies are in `acl_auth`). Output is Consul's pretty text, or the API's
//! JSON with `-format=json`.

use super::http::{encode_path, Client, HttpFlags};
use super::ui::Ui;
use clap::{Args, Subcommand};
use reqwest::Method;
use serde_json::{json, Value};

/// `acl` subcommands.
#[derive(Subcommand, Debug)]
pub enum AclCommand {
    /// Creates the initial management token (`PUT /v1/acl/bootstrap`).
    Bootstrap(Common),
    /// Manages policies.
    Policy {
        /// The policy operation.
        #[command(subcommand)]
        command: PolicyCommand,
    },
    /// Manages tokens.
    Token {
        /// The token operation.
        #[command(subcommand)]
        command: TokenCommand,
    },
    /// Manages roles.
    Role {
        /// The role operation.
        #[command(subcommand)]
        command: RoleCommand,
    },
    /// Manages auth methods.
    #[command(name = "auth-method")]
    AuthMethod {
        /// The auth method operation.
        #[command(subcommand)]
        command: super::acl_auth::AuthMethodCommand,
    },
    /// Manages binding rules.
    #[command(name = "binding-rule")]
    BindingRule {
        /// The binding rule operation.
        #[command(subcommand)]
        command: super::acl_auth::BindingRuleCommand,
    },
    /// Lists, reads and previews templated policies.
    #[command(name = "templated-policy")]
    TemplatedPolicy {
        /// The templated policy operation.
        #[command(subcommand)]
        command: super::acl_auth::TemplatedPolicyCommand,
    },
}

/// Flags of every `acl` command.
#[derive(Args, Debug, Clone)]
pub struct Common {
    #[command(flatten)]
    http: HttpFlags,
    /// Output format: `pretty` or `json`.
    #[arg(long, default_value = "pretty", value_name = "FORMAT")]
    pub(super) format: String,
}

/// Templated policy flags of token and role commands.
#[derive(Args, Debug, Clone, Default)]
pub struct TemplatedFlags {
    /// A templated policy to link, by template name (repeatable).
    #[arg(long = "templated-policy", value_name = "NAME")]
    templated_policy: Vec<String>,
    /// A variable of the templated policies, `name:VALUE`.
    #[arg(long = "var", value_name = "NAME:VALUE")]
    var: Vec<String>,
}

impl TemplatedFlags {
    /// `TemplatedPolicies` of a request body.
    fn json(&self) -> Result<Value, String> {
        let mut name = None;
        for v in &self.var {
            match v.split_once(':') {
                Some((k, val)) if k.eq_ignore_ascii_case("name") => name = Some(val.to_string()),
                _ => return Err(format!("-var {v:?} must be of the form name:VALUE")),
            }
        }
        Ok(Value::Array(
            self.templated_policy
                .iter()
                .map(|t| match &name {
                    Some(n) => json!({"TemplateName": t, "TemplateVariables": {"Name": n}}),
                    None => json!({"TemplateName": t}),
                })
                .collect(),
        ))
    }
}

/// Selects a record by ID or name.
#[derive(Args, Debug, Clone)]
pub struct Select {
    #[command(flatten)]
    common: Common,
    /// The ID.
    #[arg(long, value_name = "ID")]
    id: Option<String>,
    /// The name.
    #[arg(long, value_name = "NAME")]
    name: Option<String>,
}

/// `acl policy` subcommands.
#[derive(Subcommand, Debug)]
pub enum PolicyCommand {
    /// Creates a policy.
    Create(PolicyArgs),
    /// Updates a policy (by `-id` or `-name`).
    Update(PolicyArgs),
    /// Lists policies.
    List(Common),
    /// Reads a policy.
    Read(Select),
    /// Deletes a policy.
    Delete(Select),
}

/// Policy fields.
#[derive(Args, Debug)]
pub struct PolicyArgs {
    #[command(flatten)]
    common: Common,
    /// The policy ID (update only).
    #[arg(long, value_name = "ID")]
    id: Option<String>,
    /// The policy name.
    #[arg(long, value_name = "NAME")]
    name: Option<String>,
    /// A description.
    #[arg(long, value_name = "TEXT")]
    description: Option<String>,
    /// The rules, in HCL or JSON; `@path` reads a file.
    #[arg(long, value_name = "RULES")]
    rules: Option<String>,
    /// Datacenter the policy is valid in (repeatable).
    #[arg(long = "valid-datacenter", value_name = "DC")]
    valid_datacenter: Vec<String>,
}

/// `acl token` subcommands.
#[derive(Subcommand, Debug)]
pub enum TokenCommand {
    /// Creates a token.
    Create(Box<TokenArgs>),
    /// Lists tokens.
    List(Common),
    /// Reads a token (`-id`, or `-self` for the one in use).
    Read(TokenRead),
    /// Clones a token.
    Clone(TokenClone),
    /// Deletes a token.
    Delete(Select),
}

/// Token fields.
#[derive(Args, Debug)]
pub struct TokenArgs {
    #[command(flatten)]
    common: Common,
    /// A description.
    #[arg(long, value_name = "TEXT")]
    description: Option<String>,
    /// Link a policy by name (repeatable).
    #[arg(long = "policy-name", value_name = "NAME")]
    policy_name: Vec<String>,
    /// Link a policy by ID (repeatable).
    #[arg(long = "policy-id", value_name = "ID")]
    policy_id: Vec<String>,
    /// Link a role by name (repeatable).
    #[arg(long = "role-name", value_name = "NAME")]
    role_name: Vec<String>,
    /// Link a role by ID (repeatable).
    #[arg(long = "role-id", value_name = "ID")]
    role_id: Vec<String>,
    /// A service identity, `NAME[:DC1,DC2]` (repeatable).
    #[arg(long = "service-identity", value_name = "SERVICE")]
    service_identity: Vec<String>,
    /// A node identity, `NODE:DC` (repeatable).
    #[arg(long = "node-identity", value_name = "NODE:DC")]
    node_identity: Vec<String>,
    #[command(flatten)]
    templated: TemplatedFlags,
    /// The accessor ID to use (generated when absent).
    #[arg(long, value_name = "ID")]
    accessor: Option<String>,
    /// The secret ID to use (generated when absent).
    #[arg(long, value_name = "ID")]
    secret: Option<String>,
    /// Token lifetime (`1h`).
    #[arg(long = "expires-ttl", value_name = "DURATION")]
    expires_ttl: Option<String>,
    /// Local to this datacenter.
    #[arg(long, num_args = 0..=1, require_equals = true, default_missing_value = "true",
        value_parser = super::go_bool, value_name = "BOOL")]
    local: Option<bool>,
}

/// `acl token read` flags.
#[derive(Args, Debug)]
pub struct TokenRead {
    #[command(flatten)]
    common: Common,
    /// The accessor ID.
    #[arg(long, value_name = "ID")]
    id: Option<String>,
    /// Read the token the command uses.
    #[arg(long = "self", num_args = 0..=1, require_equals = true, default_missing_value = "true",
        value_parser = super::go_bool, value_name = "BOOL")]
    self_: Option<bool>,
}

/// `acl token clone` flags.
#[derive(Args, Debug)]
pub struct TokenClone {
    #[command(flatten)]
    common: Common,
    /// The accessor ID to clone.
    #[arg(long, value_name = "ID")]
    id: Option<String>,
    /// The clone's description.
    #[arg(long, value_name = "TEXT")]
    description: Option<String>,
}

/// `acl role` subcommands.
#[derive(Subcommand, Debug)]
pub enum RoleCommand {
    /// Creates a role.
    Create(RoleArgs),
    /// Lists roles.
    List(Common),
    /// Reads a role.
    Read(Select),
    /// Deletes a role.
    Delete(Select),
}

/// Role fields.
#[derive(Args, Debug)]
pub struct RoleArgs {
    #[command(flatten)]
    common: Common,
    /// The role name.
    #[arg(long, value_name = "NAME")]
    name: Option<String>,
    /// A description.
    #[arg(long, value_name = "TEXT")]
    description: Option<String>,
    /// Link a policy by name (repeatable).
    #[arg(long = "policy-name", value_name = "NAME")]
    policy_name: Vec<String>,
    /// Link a policy by ID (repeatable).
    #[arg(long = "policy-id", value_name = "ID")]
    policy_id: Vec<String>,
    /// A service identity, `NAME[:DC1,DC2]` (repeatable).
    #[arg(long = "service-identity", value_name = "SERVICE")]
    service_identity: Vec<String>,
    /// A node identity, `NODE:DC` (repeatable).
    #[arg(long = "node-identity", value_name = "NODE:DC")]
    node_identity: Vec<String>,
    #[command(flatten)]
    templated: TemplatedFlags,
}

/// Runs `acl`.
pub async fn run(command: AclCommand, ui: &mut Ui<'_>) -> i32 {
    match run_inner(command, ui).await {
        Ok(code) => code,
        Err(e) => ui.fail(&e),
    }
}

pub(super) async fn call(
    c: &Common,
    method: Method,
    path: &str,
    body: Option<Value>,
) -> Result<Value, String> {
    let client =
        Client::new(&c.http, None).map_err(|e| format!("Error connecting to Consul agent: {e}"))?;
    let body = body.map(|b| b.to_string().into_bytes());
    let r = client.send(method, path, &[], body).await?;
    if r.status != 200 {
        return Err(r.status_error());
    }
    if r.body.is_empty() {
        return Ok(Value::Null);
    }
    r.json()
}

fn links(names: &[String], ids: &[String]) -> Value {
    let mut v: Vec<Value> = names.iter().map(|n| json!({"Name": n})).collect();
    v.extend(ids.iter().map(|i| json!({"ID": i})));
    Value::Array(v)
}

fn identities(services: &[String], nodes: &[String]) -> Result<(Value, Value), String> {
    let sis: Vec<Value> = services
        .iter()
        .map(|s| match s.split_once(':') {
            Some((n, dcs)) => {
                json!({"ServiceName": n, "Datacenters": dcs.split(',').collect::<Vec<_>>()})
            }
            None => json!({"ServiceName": s}),
        })
        .collect();
    let mut nis = Vec::new();
    for n in nodes {
        let (name, dc) = n
            .split_once(':')
            .ok_or_else(|| format!("Node identity {n:?} must be of the form NODE:DATACENTER"))?;
        nis.push(json!({"NodeName": name, "Datacenter": dc}));
    }
    Ok((Value::Array(sis), Value::Array(nis)))
}

fn rules_text(r: &str) -> Result<String, String> {
    match r.strip_prefix('@') {
        Some(path) => {
            std::fs::read_to_string(path).map_err(|e| format!("Failed to read rules file: {e}"))
        }
        None => Ok(r.to_string()),
    }
}

pub(super) use super::acl_show::{list, pretty_policy, pretty_role, pretty_token, s, show};

/// The ID of a policy or role given by `-id` or `-name`.
async fn select_id(sel: &Select, kind: &str) -> Result<String, String> {
    if let Some(id) = sel.id.clone().filter(|i| !i.is_empty()) {
        return Ok(id);
    }
    let Some(name) = sel.name.clone().filter(|n| !n.is_empty()) else {
        return Err("Must specify the -id or -name parameter".to_string());
    };
    let path = format!("/v1/acl/{kind}/name/{}", encode_path(&name));
    match call(&sel.common, Method::GET, &path, None).await {
        Ok(v) => Ok(s(&v, "ID")),
        // A missing policy or role answers 404 without a body.
        Err(e) if e.contains("404") => Err(format!(
            "Error determining {kind} ID: No such {kind} with name {name:?}"
        )),
        Err(e) => Err(e),
    }
}

/// Lists the records at `path`.
async fn list_at(
    c: &Common,
    (path, what): (&str, &str),
    pretty: fn(&Value) -> String,
    key: &str,
    ui: &mut Ui<'_>,
) -> Result<i32, String> {
    let v = call(c, Method::GET, path, None)
        .await
        .map_err(|e| format!("Failed to retrieve the {what} list: {e}"))?;
    Ok(list(c, &v, pretty, key, ui))
}

/// Reads the policy or role `sel` names.
async fn read_selected(
    sel: &Select,
    kind: &str,
    pretty: fn(&Value) -> String,
    ui: &mut Ui<'_>,
) -> Result<i32, String> {
    let id = select_id(sel, kind).await?;
    let v = call(
        &sel.common,
        Method::GET,
        &format!("/v1/acl/{kind}/{id}"),
        None,
    )
    .await
    .map_err(|e| format!("Error reading {kind} {id:?}: {e}"))?;
    Ok(show(&sel.common, &v, pretty, ui))
}

/// Deletes the `kind` record `id` and says so as Consul does.
async fn delete_id(c: &Common, kind: &str, id: &str, ui: &mut Ui<'_>) -> Result<i32, String> {
    call(
        c,
        Method::DELETE,
        &format!("/v1/acl/{kind}/{}", encode_path(id)),
        None,
    )
    .await
    .map_err(|e| format!("Error deleting {kind} {id:?}: {e}"))?;
    let mut title = kind.to_string();
    if let Some(f) = title.get_mut(..1) {
        f.make_ascii_uppercase();
    }
    ui.output(&format!("{title} {id:?} deleted successfully"));
    Ok(0)
}

/// The identities and templated policies of a token or role body.
fn identity_fields(
    body: &mut Value,
    services: &[String],
    nodes: &[String],
    templated: &TemplatedFlags,
) -> Result<(), String> {
    let (sis, nis) = identities(services, nodes)?;
    body["ServiceIdentities"] = sis;
    body["NodeIdentities"] = nis;
    body["TemplatedPolicies"] = templated.json()?;
    Ok(())
}

/// `-name`, required.
fn name_flag(name: &Option<String>) -> Result<String, String> {
    name.clone()
        .filter(|n| !n.is_empty())
        .ok_or_else(|| "Missing required '-name' flag".to_string())
}

/// `-id`, required.
fn id_flag(id: &Option<String>) -> Result<String, String> {
    id.clone()
        .filter(|i| !i.is_empty())
        .ok_or_else(|| "Must specify the -id parameter".to_string())
}

async fn policy(command: PolicyCommand, ui: &mut Ui<'_>) -> Result<i32, String> {
    match command {
        PolicyCommand::Create(p) => {
            let body = json!({
                "Name": name_flag(&p.name)?,
                "Description": p.description.clone().unwrap_or_default(),
                "Rules": rules_text(p.rules.as_deref().unwrap_or(""))?,
                "Datacenters": p.valid_datacenter,
            });
            let v = call(&p.common, Method::PUT, "/v1/acl/policy", Some(body))
                .await
                .map_err(|e| format!("Failed to create new policy: {e}"))?;
            Ok(show(&p.common, &v, pretty_policy, ui))
        }
        PolicyCommand::Update(p) => {
            let sel = Select {
                common: p.common.clone(),
                id: p.id.clone(),
                name: p.name.clone(),
            };
            let id = select_id(&sel, "policy").await?;
            let path = format!("/v1/acl/policy/{id}");
            let mut cur = call(&p.common, Method::GET, &path, None).await?;
            if let Some(d) = &p.description {
                cur["Description"] = json!(d);
            }
            if let Some(r) = &p.rules {
                cur["Rules"] = json!(rules_text(r)?);
            }
            if !p.valid_datacenter.is_empty() {
                cur["Datacenters"] = json!(p.valid_datacenter);
            }
            let v = call(&p.common, Method::PUT, &path, Some(cur))
                .await
                .map_err(|e| format!("Failed to update policy {id}: {e}"))?;
            Ok(show(&p.common, &v, pretty_policy, ui))
        }
        PolicyCommand::List(c) => {
            list_at(
                &c,
                ("/v1/acl/policies", "policy"),
                pretty_policy,
                "Name",
                ui,
            )
            .await
        }
        PolicyCommand::Read(sel) => read_selected(&sel, "policy", pretty_policy, ui).await,
        PolicyCommand::Delete(sel) => {
            let id = select_id(&sel, "policy").await?;
            delete_id(&sel.common, "policy", &id, ui).await
        }
    }
}

async fn token(command: TokenCommand, ui: &mut Ui<'_>) -> Result<i32, String> {
    match command {
        TokenCommand::Create(t) => {
            let mut body = json!({
                "Description": t.description.clone().unwrap_or_default(),
                "Policies": links(&t.policy_name, &t.policy_id),
                "Roles": links(&t.role_name, &t.role_id),
                "Local": t.local.unwrap_or(false),
            });
            identity_fields(
                &mut body,
                &t.service_identity,
                &t.node_identity,
                &t.templated,
            )?;
            for (key, v) in [
                ("AccessorID", &t.accessor),
                ("SecretID", &t.secret),
                ("ExpirationTTL", &t.expires_ttl),
            ] {
                if let Some(v) = v {
                    body[key] = json!(v);
                }
            }
            let v = call(&t.common, Method::PUT, "/v1/acl/token", Some(body))
                .await
                .map_err(|e| format!("Failed to create new token: {e}"))?;
            Ok(show(&t.common, &v, pretty_token, ui))
        }
        TokenCommand::List(c) => {
            list_at(&c, ("/v1/acl/tokens", "token"), pretty_token, "", ui).await
        }
        TokenCommand::Read(r) => {
            let path = if r.self_.unwrap_or(false) {
                "/v1/acl/token/self".to_string()
            } else {
                format!("/v1/acl/token/{}", encode_path(&id_flag(&r.id)?))
            };
            let v = call(&r.common, Method::GET, &path, None)
                .await
                .map_err(|e| format!("Error reading token: {e}"))?;
            Ok(show(&r.common, &v, pretty_token, ui))
        }
        TokenCommand::Clone(c) => {
            let id = id_flag(&c.id)?;
            let body = c.description.as_ref().map(|d| json!({"Description": d}));
            let path = format!("/v1/acl/token/{}/clone", encode_path(&id));
            let v = call(&c.common, Method::PUT, &path, body)
                .await
                .map_err(|e| format!("Failed to clone token: {e}"))?;
            Ok(show(&c.common, &v, pretty_token, ui))
        }
        TokenCommand::Delete(sel) => delete_id(&sel.common, "token", &id_flag(&sel.id)?, ui).await,
    }
}

async fn role(command: RoleCommand, ui: &mut Ui<'_>) -> Result<i32, String> {
    match command {
        RoleCommand::Create(r) => {
            let mut body = json!({
                "Name": name_flag(&r.name)?,
                "Description": r.description.clone().unwrap_or_default(),
                "Policies": links(&r.policy_name, &r.policy_id),
            });
            identity_fields(
                &mut body,
                &r.service_identity,
                &r.node_identity,
                &r.templated,
            )?;
            let v = call(&r.common, Method::PUT, "/v1/acl/role", Some(body))
                .await
                .map_err(|e| format!("Failed to create new role: {e}"))?;
            Ok(show(&r.common, &v, pretty_role, ui))
        }
        RoleCommand::List(c) => {
            list_at(&c, ("/v1/acl/roles", "role"), pretty_role, "Name", ui).await
        }
        RoleCommand::Read(sel) => read_selected(&sel, "role", pretty_role, ui).await,
        RoleCommand::Delete(sel) => {
            let id = select_id(&sel, "role").await?;
            delete_id(&sel.common, "role", &id, ui).await
        }
    }
}

async fn run_inner(command: AclCommand, ui: &mut Ui<'_>) -> Result<i32, String> {
    use super::acl_auth;
    match command {
        AclCommand::Bootstrap(c) => {
            let v = call(&c, Method::PUT, "/v1/acl/bootstrap", None)
                .await
                .map_err(|e| format!("Failed ACL bootstrapping: {e}"))?;
            Ok(show(&c, &v, pretty_token, ui))
        }
        AclCommand::Policy { command } => policy(command, ui).await,
        AclCommand::Token { command } => token(command, ui).await,
        AclCommand::Role { command } => role(command, ui).await,
        AclCommand::AuthMethod { command } => acl_auth::auth_method(command, ui).await,
        AclCommand::BindingRule { command } => acl_auth::binding_rule(command, ui).await,
        AclCommand::TemplatedPolicy { command } => acl_auth::templated_policy(command, ui).await,
    }
}
