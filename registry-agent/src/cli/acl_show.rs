//! How `registry acl` prints tokens, policies and roles: Consul's pretty text, or the API's
//! JSON with `-format=json`, for one record or a list.

use super::acl::Common;
use super::ui::Ui;
use serde_json::Value;

pub(super) fn show(c: &Common, v: &Value, pretty: fn(&Value) -> String, ui: &mut Ui<'_>) -> i32 {
    if c.format == "json" {
        ui.output(&serde_json::to_string_pretty(v).unwrap_or_default());
    } else {
        ui.output(pretty(v).trim_end());
    }
    0
}

pub(super) fn s(v: &Value, k: &str) -> String {
    match &v[k] {
        Value::String(x) => x.clone(),
        Value::Null => String::new(),
        other => other.to_string(),
    }
}

fn link_lines(v: &Value, key: &str, title: &str, out: &mut String) {
    if let Some(items) = v[key].as_array() {
        out.push_str(&format!("{title}:\n"));
        for l in items {
            out.push_str(&format!("   {} - {}\n", s(l, "ID"), s(l, "Name")));
        }
    }
}

fn identity_lines(v: &Value, out: &mut String) {
    if let Some(items) = v["ServiceIdentities"].as_array() {
        out.push_str("Service Identities:\n");
        for si in items {
            let dcs = si["Datacenters"]
                .as_array()
                .map(|d| {
                    d.iter()
                        .filter_map(Value::as_str)
                        .collect::<Vec<_>>()
                        .join(", ")
                })
                .unwrap_or_default();
            let dcs = if dcs.is_empty() {
                "all".to_string()
            } else {
                dcs
            };
            out.push_str(&format!(
                "   {} (Datacenters: {dcs})\n",
                s(si, "ServiceName")
            ));
        }
    }
    if let Some(items) = v["NodeIdentities"].as_array() {
        out.push_str("Node Identities:\n");
        for ni in items {
            out.push_str(&format!(
                "   {} (Datacenter: {})\n",
                s(ni, "NodeName"),
                s(ni, "Datacenter")
            ));
        }
    }
    if let Some(items) = v["TemplatedPolicies"].as_array() {
        out.push_str("Templated Policies:\n");
        for tp in items {
            out.push_str(&format!("   {}\n", s(tp, "TemplateName")));
            if let Some(n) = tp["TemplateVariables"]["name"].as_str() {
                out.push_str(&format!("      Name: {n}\n"));
            }
        }
    }
}

/// Consul's pretty token.
pub fn pretty_token(v: &Value) -> String {
    let mut out = format!(
        "AccessorID:       {}\nSecretID:         {}\nDescription:      {}\nLocal:            {}\nCreate Time:      {}\n",
        s(v, "AccessorID"), s(v, "SecretID"), s(v, "Description"), s(v, "Local"), s(v, "CreateTime")
    );
    if !s(v, "ExpirationTime").is_empty() {
        out.push_str(&format!("Expiration Time:  {}\n", s(v, "ExpirationTime")));
    }
    link_lines(v, "Policies", "Policies", &mut out);
    link_lines(v, "Roles", "Roles", &mut out);
    identity_lines(v, &mut out);
    if !s(v, "AuthMethod").is_empty() {
        out.push_str(&format!("Auth Method:      {}\n", s(v, "AuthMethod")));
    }
    out
}

/// Consul's pretty policy.
pub fn pretty_policy(v: &Value) -> String {
    let dcs = v["Datacenters"]
        .as_array()
        .map(|d| {
            d.iter()
                .filter_map(Value::as_str)
                .collect::<Vec<_>>()
                .join(", ")
        })
        .unwrap_or_default();
    let mut out = format!(
        "ID:           {}\nName:         {}\nDescription:  {}\nDatacenters:  {dcs}\n",
        s(v, "ID"),
        s(v, "Name"),
        s(v, "Description")
    );
    if v.get("Rules").is_some() {
        out.push_str(&format!("Rules:\n{}\n", s(v, "Rules")));
    }
    out
}

/// Consul's pretty role.
pub fn pretty_role(v: &Value) -> String {
    let mut out = format!(
        "ID:           {}\nName:         {}\nDescription:  {}\n",
        s(v, "ID"),
        s(v, "Name"),
        s(v, "Description")
    );
    link_lines(v, "Policies", "Policies", &mut out);
    identity_lines(v, &mut out);
    out
}

pub(super) fn list(
    c: &Common,
    v: &Value,
    pretty: fn(&Value) -> String,
    key: &str,
    ui: &mut Ui<'_>,
) -> i32 {
    if c.format == "json" {
        ui.output(&serde_json::to_string_pretty(v).unwrap_or_default());
        return 0;
    }
    let mut out = String::new();
    for item in v.as_array().map(Vec::as_slice).unwrap_or_default() {
        if !key.is_empty() {
            out.push_str(&format!("{}:\n", s(item, key)));
        }
        out.push_str(&pretty(item));
        out.push('\n');
    }
    ui.output(out.trim_end());
    0
}
