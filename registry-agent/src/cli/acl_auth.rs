//! `registry acl auth-method|binding-rule|templated-policy ...`, `registry login` and
//! `registry logout` (Consul's `command/acl/authmethod`, `bindingrule`, `templatedpolicy`,
//! `command/login`, `command/logout`), through `/v1/acl/*`.

use super::acl::{call, list, s, show, Common};
use super::http::encode_path;
use super::ui::Ui;
use clap::{Args, Subcommand};
use reqwest::Method;
use serde_json::{json, Map, Value};

/// `acl auth-method` subcommands.
#[derive(Subcommand, Debug)]
pub enum AuthMethodCommand {
    /// Creates an auth method.
    Create(MethodArgs),
    /// Updates an auth method (by `-name`).
    Update(MethodArgs),
    /// Reads an auth method.
    Read(Named),
    /// Deletes an auth method.
    Delete(Named),
    /// Lists auth methods.
    List(Common),
}

/// Selects a record by name.
#[derive(Args, Debug)]
pub struct Named {
    #[command(flatten)]
    common: Common,
    /// The name.
    #[arg(long, value_name = "NAME")]
    name: Option<String>,
}

/// Auth method fields.
#[derive(Args, Debug)]
pub struct MethodArgs {
    #[command(flatten)]
    common: Common,
    /// The method type (`jwt`).
    #[arg(long = "type", value_name = "TYPE")]
    method_type: Option<String>,
    /// The method name.
    #[arg(long, value_name = "NAME")]
    name: Option<String>,
    /// A name shown in UIs.
    #[arg(long = "display-name", value_name = "NAME")]
    display_name: Option<String>,
    /// A description.
    #[arg(long, value_name = "TEXT")]
    description: Option<String>,
    /// Longest lifetime of a login token (`10m`).
    #[arg(long = "max-token-ttl", value_name = "DURATION")]
    max_token_ttl: Option<String>,
    /// `local` or `global`.
    #[arg(long = "token-locality", value_name = "LOCALITY")]
    token_locality: Option<String>,
    /// The method's configuration as JSON; `@path` reads a file.
    #[arg(long, value_name = "JSON")]
    config: Option<String>,
    /// Replace the method instead of merging the flags into it (update only).
    #[arg(long = "no-merge", num_args = 0..=1, require_equals = true, default_missing_value = "true",
        value_parser = super::go_bool, value_name = "BOOL")]
    no_merge: Option<bool>,
}

/// `acl binding-rule` subcommands.
#[derive(Subcommand, Debug)]
pub enum BindingRuleCommand {
    /// Creates a binding rule.
    Create(RuleArgs),
    /// Updates a binding rule (by `-id`).
    Update(RuleArgs),
    /// Reads a binding rule.
    Read(RuleId),
    /// Deletes a binding rule.
    Delete(RuleId),
    /// Lists binding rules (of one `-method`).
    List(RuleList),
}

/// Selects a binding rule.
#[derive(Args, Debug)]
pub struct RuleId {
    #[command(flatten)]
    common: Common,
    /// The rule ID.
    #[arg(long, value_name = "ID")]
    id: Option<String>,
}

/// `acl binding-rule list` flags.
#[derive(Args, Debug)]
pub struct RuleList {
    #[command(flatten)]
    common: Common,
    /// Only the rules of this auth method.
    #[arg(long, value_name = "NAME")]
    method: Option<String>,
}

/// Binding rule fields.
#[derive(Args, Debug)]
pub struct RuleArgs {
    #[command(flatten)]
    common: Common,
    /// The rule ID (update only).
    #[arg(long, value_name = "ID")]
    id: Option<String>,
    /// The auth method.
    #[arg(long, value_name = "NAME")]
    method: Option<String>,
    /// A description.
    #[arg(long, value_name = "TEXT")]
    description: Option<String>,
    /// Which logins the rule applies to (`value.x == "y"`).
    #[arg(long, value_name = "EXPR")]
    selector: Option<String>,
    /// `service`, `node`, `role`, `policy` or `templated-policy`.
    #[arg(long = "bind-type", value_name = "TYPE")]
    bind_type: Option<String>,
    /// The name bound, with `${value.x}` placeholders.
    #[arg(long = "bind-name", value_name = "NAME")]
    bind_name: Option<String>,
    /// Variables of a templated-policy binding, `name=${value.x}`.
    #[arg(long = "bind-vars", value_name = "VARS")]
    bind_vars: Option<String>,
    /// Replace the rule instead of merging the flags into it (update only).
    #[arg(long = "no-merge", num_args = 0..=1, require_equals = true, default_missing_value = "true",
        value_parser = super::go_bool, value_name = "BOOL")]
    no_merge: Option<bool>,
}

/// `acl templated-policy` subcommands.
#[derive(Subcommand, Debug)]
pub enum TemplatedPolicyCommand {
    /// Lists the templated policies.
    List(Common),
    /// Reads a templated policy.
    Read(Named),
    /// Shows the policy a templated policy renders to.
    Preview(Preview),
}

/// `acl templated-policy preview` flags.
#[derive(Args, Debug)]
pub struct Preview {
    #[command(flatten)]
    common: Common,
    /// The template name.
    #[arg(long, value_name = "NAME")]
    name: Option<String>,
    /// A template variable, `name:VALUE`.
    #[arg(long = "var", value_name = "NAME:VALUE")]
    var: Vec<String>,
}

/// `login` flags.
#[derive(Args, Debug)]
pub struct LoginArgs {
    #[command(flatten)]
    common: Common,
    /// The auth method.
    #[arg(long, value_name = "NAME")]
    method: Option<String>,
    /// A file holding the bearer token (the JWT).
    #[arg(long = "bearer-token-file", value_name = "PATH")]
    bearer_token_file: Option<String>,
    /// Where to write the new token's secret.
    #[arg(long = "token-sink-file", value_name = "PATH")]
    token_sink_file: Option<String>,
    /// Metadata for the token, `key=value` (repeatable).
    #[arg(long, value_name = "KEY=VALUE")]
    meta: Vec<String>,
}

fn required(v: &Option<String>, flag: &str) -> Result<String, String> {
    v.clone()
        .filter(|x| !x.is_empty())
        .ok_or_else(|| format!("Missing required '-{flag}' flag"))
}

fn set(body: &mut Value, key: &str, v: &Option<String>) {
    if let Some(x) = v {
        body[key] = json!(x);
    }
}

/// Consul's pretty auth method.
pub fn pretty_method(v: &Value) -> String {
    let mut out = format!(
        "Name:          {}\nType:          {}\n",
        s(v, "Name"),
        s(v, "Type")
    );
    for (key, title) in [
        ("DisplayName", "DisplayName:   "),
        ("Description", "Description:   "),
        ("MaxTokenTTL", "MaxTokenTTL:   "),
        ("TokenLocality", "TokenLocality: "),
    ] {
        if !s(v, key).is_empty() {
            out.push_str(&format!("{title}{}\n", s(v, key)));
        }
    }
    if let Some(c) = v.get("Config") {
        out.push_str(&format!(
            "Config:\n{}\n",
            serde_json::to_string_pretty(c).unwrap_or_default()
        ));
    }
    out
}

/// Consul's pretty binding rule.
pub fn pretty_rule(v: &Value) -> String {
    let mut out = format!(
        "ID:           {}\nAuthMethod:   {}\nDescription:  {}\nBindType:     {}\nBindName:     {}\n",
        s(v, "ID"),
        s(v, "AuthMethod"),
        s(v, "Description"),
        s(v, "BindType"),
        s(v, "BindName")
    );
    if let Some(n) = v["BindVars"]["name"].as_str() {
        out.push_str(&format!("BindVars:     name={n}\n"));
    }
    out.push_str(&format!("Selector:     {}\n", s(v, "Selector")));
    out
}

fn pretty_template(v: &Value) -> String {
    let mut out = format!(
        "Name:            {}\nDescription:     {}\n",
        s(v, "TemplateName"),
        s(v, "Description")
    );
    if !s(v, "Schema").is_empty() {
        out.push_str("Input variables:\n   Name: String - Required - The name of the resource.\n");
    }
    out.push_str(&format!("Raw Template:\n{}\n", s(v, "Template")));
    out
}

fn config_text(c: &str) -> Result<Value, String> {
    let text = match c.strip_prefix('@') {
        Some(path) => {
            std::fs::read_to_string(path).map_err(|e| format!("Failed to read config file: {e}"))?
        }
        None => c.to_string(),
    };
    serde_json::from_str(&text)
        .map_err(|e| format!("Error parsing JSON for auth method config: {e}"))
}

/// Runs `acl auth-method`.
pub async fn auth_method(command: AuthMethodCommand, ui: &mut Ui<'_>) -> Result<i32, String> {
    match command {
        AuthMethodCommand::Create(m) => {
            let mut body = json!({"Name": required(&m.name, "name")?, "Type": required(&m.method_type, "type")?});
            method_fields(&mut body, &m)?;
            let v = call(&m.common, Method::PUT, "/v1/acl/auth-method", Some(body))
                .await
                .map_err(|e| format!("Failed to create new auth method: {e}"))?;
            Ok(show(&m.common, &v, pretty_method, ui))
        }
        AuthMethodCommand::Update(m) => {
            let name = required(&m.name, "name")?;
            let path = format!("/v1/acl/auth-method/{}", encode_path(&name));
            let mut body = if m.no_merge.unwrap_or(false) {
                json!({"Name": name, "Type": m.method_type.clone().unwrap_or_default()})
            } else {
                call(&m.common, Method::GET, &path, None)
                    .await
                    .map_err(|e| format!("Error retrieving current auth method: {e}"))?
            };
            method_fields(&mut body, &m)?;
            let v = call(&m.common, Method::PUT, &path, Some(body))
                .await
                .map_err(|e| format!("Error updating auth method {name:?}: {e}"))?;
            Ok(show(&m.common, &v, pretty_method, ui))
        }
        AuthMethodCommand::Read(n) => {
            let name = required(&n.name, "name")?;
            let v = call(
                &n.common,
                Method::GET,
                &format!("/v1/acl/auth-method/{}", encode_path(&name)),
                None,
            )
            .await
            .map_err(|e| format!("Error reading auth method {name:?}: {e}"))?;
            Ok(show(&n.common, &v, pretty_method, ui))
        }
        AuthMethodCommand::Delete(n) => {
            let name = required(&n.name, "name")?;
            call(
                &n.common,
                Method::DELETE,
                &format!("/v1/acl/auth-method/{}", encode_path(&name)),
                None,
            )
            .await
            .map_err(|e| format!("Error deleting auth method {name:?}: {e}"))?;
            ui.output(&format!("Auth method {name:?} deleted successfully"));
            Ok(0)
        }
        AuthMethodCommand::List(c) => {
            let v = call(&c, Method::GET, "/v1/acl/auth-methods", None)
                .await
                .map_err(|e| format!("Failed to retrieve the auth method list: {e}"))?;
            Ok(list(&c, &v, pretty_method, "Name", ui))
        }
    }
}

fn method_fields(body: &mut Value, m: &MethodArgs) -> Result<(), String> {
    set(body, "DisplayName", &m.display_name);
    set(body, "Description", &m.description);
    set(body, "MaxTokenTTL", &m.max_token_ttl);
    set(body, "TokenLocality", &m.token_locality);
    if let Some(c) = &m.config {
        body["Config"] = config_text(c)?;
    }
    Ok(())
}

fn rule_fields(body: &mut Value, r: &RuleArgs) -> Result<(), String> {
    set(body, "Description", &r.description);
    set(body, "Selector", &r.selector);
    set(body, "BindType", &r.bind_type);
    set(body, "BindName", &r.bind_name);
    if let Some(vars) = &r.bind_vars {
        let (k, v) = vars
            .split_once('=')
            .ok_or("-bind-vars must be of the form name=VALUE")?;
        if !k.trim().eq_ignore_ascii_case("name") {
            return Err(format!("unknown bind variable {k:?}"));
        }
        body["BindVars"] = json!({"name": v});
    }
    Ok(())
}

/// Runs `acl binding-rule`.
pub async fn binding_rule(command: BindingRuleCommand, ui: &mut Ui<'_>) -> Result<i32, String> {
    match command {
        BindingRuleCommand::Create(r) => {
            let mut body = json!({"AuthMethod": required(&r.method, "method")?});
            rule_fields(&mut body, &r)?;
            let v = call(&r.common, Method::PUT, "/v1/acl/binding-rule", Some(body))
                .await
                .map_err(|e| format!("Failed to create new binding rule: {e}"))?;
            Ok(show(&r.common, &v, pretty_rule, ui))
        }
        BindingRuleCommand::Update(r) => {
            let id = required(&r.id, "id")?;
            let path = format!("/v1/acl/binding-rule/{}", encode_path(&id));
            let mut body = if r.no_merge.unwrap_or(false) {
                json!({"ID": id})
            } else {
                call(&r.common, Method::GET, &path, None)
                    .await
                    .map_err(|e| format!("Error retrieving current binding rule: {e}"))?
            };
            rule_fields(&mut body, &r)?;
            let v = call(&r.common, Method::PUT, &path, Some(body))
                .await
                .map_err(|e| format!("Error updating binding rule {id:?}: {e}"))?;
            Ok(show(&r.common, &v, pretty_rule, ui))
        }
        BindingRuleCommand::Read(r) => {
            let id = required(&r.id, "id")?;
            let v = call(
                &r.common,
                Method::GET,
                &format!("/v1/acl/binding-rule/{}", encode_path(&id)),
                None,
            )
            .await
            .map_err(|e| format!("Error reading binding rule {id:?}: {e}"))?;
            Ok(show(&r.common, &v, pretty_rule, ui))
        }
        BindingRuleCommand::Delete(r) => {
            let id = required(&r.id, "id")?;
            call(
                &r.common,
                Method::DELETE,
                &format!("/v1/acl/binding-rule/{}", encode_path(&id)),
                None,
            )
            .await
            .map_err(|e| format!("Error deleting binding rule {id:?}: {e}"))?;
            ui.output(&format!("Binding rule {id:?} deleted successfully"));
            Ok(0)
        }
        BindingRuleCommand::List(l) => {
            let path = match l.method.as_deref().filter(|m| !m.is_empty()) {
                Some(m) => format!("/v1/acl/binding-rules?authmethod={}", encode_path(m)),
                None => "/v1/acl/binding-rules".to_string(),
            };
            let v = call(&l.common, Method::GET, &path, None)
                .await
                .map_err(|e| format!("Failed to retrieve the binding rule list: {e}"))?;
            Ok(list(&l.common, &v, pretty_rule, "ID", ui))
        }
    }
}

/// Runs `acl templated-policy`.
pub async fn templated_policy(
    command: TemplatedPolicyCommand,
    ui: &mut Ui<'_>,
) -> Result<i32, String> {
    match command {
        TemplatedPolicyCommand::List(c) => {
            let v = call(&c, Method::GET, "/v1/acl/templated-policies", None)
                .await
                .map_err(|e| format!("Failed to retrieve the templated policies list: {e}"))?;
            let items: Vec<Value> = v
                .as_object()
                .map(|m| m.values().cloned().collect())
                .unwrap_or_default();
            Ok(list(
                &c,
                &Value::Array(items),
                pretty_template,
                "TemplateName",
                ui,
            ))
        }
        TemplatedPolicyCommand::Read(n) => {
            let name = required(&n.name, "name")?;
            let v = call(
                &n.common,
                Method::GET,
                &format!("/v1/acl/templated-policy/name/{name}"),
                None,
            )
            .await
            .map_err(|e| format!("Error reading templated policy {name:?}: {e}"))?;
            Ok(show(&n.common, &v, pretty_template, ui))
        }
        TemplatedPolicyCommand::Preview(p) => {
            let name = required(&p.name, "name")?;
            let mut vars = Map::new();
            for var in &p.var {
                let (k, v) = var
                    .split_once(':')
                    .ok_or_else(|| format!("-var {var:?} must be of the form name:VALUE"))?;
                if k.eq_ignore_ascii_case("name") {
                    vars.insert("Name".into(), json!(v));
                }
            }
            let v = call(
                &p.common,
                Method::POST,
                &format!("/v1/acl/templated-policy/preview/{name}"),
                Some(Value::Object(vars)),
            )
            .await
            .map_err(|e| format!("Failed to generate the templated policy preview: {e}"))?;
            Ok(show(&p.common, &v, super::acl::pretty_policy, ui))
        }
    }
}

/// Runs `login`: exchanges the bearer token for an ACL token and writes its secret to the
/// sink file.
pub async fn login(l: LoginArgs, ui: &mut Ui<'_>) -> i32 {
    match login_inner(l).await {
        Ok(()) => 0,
        Err(e) => ui.fail(&e),
    }
}

async fn login_inner(l: LoginArgs) -> Result<(), String> {
    let method = required(&l.method, "method")?;
    let sink = required(&l.token_sink_file, "token-sink-file")?;
    let file = required(&l.bearer_token_file, "bearer-token-file")?;
    let bearer = std::fs::read_to_string(&file)
        .map_err(|e| format!("Error reading bearer token file: {e}"))?;
    let bearer = bearer.trim();
    if bearer.is_empty() {
        return Err("No bearer token found in -bearer-token-file".to_string());
    }
    let mut meta = Map::new();
    for m in &l.meta {
        let (k, v) = m
            .split_once('=')
            .ok_or_else(|| format!("-meta {m:?} must be of the form key=value"))?;
        meta.insert(k.to_string(), json!(v));
    }
    let body = json!({"AuthMethod": method, "BearerToken": bearer, "Meta": meta});
    let v = call(&l.common, Method::POST, "/v1/acl/login", Some(body))
        .await
        .map_err(|e| format!("Error logging in: {e}"))?;
    let secret = s(&v, "SecretID");
    std::fs::write(&sink, &secret).map_err(|e| format!("Error writing token to file sink: {e}"))
}

/// Runs `logout`: deletes the login token the command uses.
pub async fn logout(c: Common, ui: &mut Ui<'_>) -> i32 {
    match call(&c, Method::POST, "/v1/acl/logout", None).await {
        Ok(_) => 0,
        Err(e) => ui.fail(&format!("Error destroying token: {e}")),
    }
}
