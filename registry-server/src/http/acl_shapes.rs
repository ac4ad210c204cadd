//! Consul's JSON shapes of ACL tokens, policies and roles, rendered from the stored records
//! (which carry no serde attributes, being postcard-encoded in the Raft log).

use registry_proto::acl::{
    AuthMethod, BindingRule, Link, NodeIdentity, Policy, Role, ServiceIdentity, TemplatedPolicy,
    Token,
};
use serde_json::{json, Value};

/// RFC 3339 in UTC from Unix milliseconds.
pub fn rfc3339(ms: u64) -> String {
    let secs = ms / 1000;
    let days = (secs / 86_400) as i64;
    let rem = secs % 86_400;
    // Civil date from days since 1970-01-01 (Howard Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}.{:03}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60,
        ms % 1000
    )
}

fn links_json(l: &[Link]) -> Value {
    Value::Array(
        l.iter()
            .map(|l| json!({"ID": l.id, "Name": l.name}))
            .collect(),
    )
}

fn sis_json(v: &[ServiceIdentity]) -> Value {
    Value::Array(
        v.iter()
            .map(|s| {
                let mut o = json!({"ServiceName": s.service_name});
                if !s.datacenters.is_empty() {
                    o["Datacenters"] = json!(s.datacenters);
                }
                o
            })
            .collect(),
    )
}

fn nis_json(v: &[NodeIdentity]) -> Value {
    Value::Array(
        v.iter()
            .map(|n| json!({"NodeName": n.node_name, "Datacenter": n.datacenter}))
            .collect(),
    )
}

/// Consul's `TemplatedPolicies` JSON.
pub fn templated_json(v: &[TemplatedPolicy]) -> Value {
    Value::Array(
        v.iter()
            .map(|t| {
                let mut o = json!({"TemplateName": t.template_name});
                if !t.name.is_empty() {
                    o["TemplateVariables"] = json!({"name": t.name});
                }
                if !t.datacenters.is_empty() {
                    o["Datacenters"] = json!(t.datacenters);
                }
                o
            })
            .collect(),
    )
}

/// Consul's auth method JSON (`stub`: without `Config`, as lists show it).
pub fn auth_method_json(m: &AuthMethod, stub: bool) -> Value {
    let mut o = json!({"Name": m.name, "Type": m.method_type});
    if !m.display_name.is_empty() {
        o["DisplayName"] = json!(m.display_name);
    }
    o["Description"] = json!(m.description);
    if !m.max_token_ttl.is_empty() {
        o["MaxTokenTTL"] = json!(m.max_token_ttl);
    }
    if !m.token_locality.is_empty() {
        o["TokenLocality"] = json!(m.token_locality);
    }
    if !stub {
        o["Config"] = serde_json::from_str(&m.config).unwrap_or_else(|_| json!({}));
    }
    o["CreateIndex"] = json!(m.create_index);
    o["ModifyIndex"] = json!(m.modify_index);
    o
}

/// Consul's binding rule JSON.
pub fn binding_rule_json(r: &BindingRule) -> Value {
    let mut o = json!({
        "ID": r.id,
        "Description": r.description,
        "AuthMethod": r.auth_method,
        "Selector": r.selector,
        "BindType": r.bind_type,
        "BindName": r.bind_name,
    });
    if !r.bind_vars_name.is_empty() {
        o["BindVars"] = json!({"name": r.bind_vars_name});
    }
    o["CreateIndex"] = json!(r.create_index);
    o["ModifyIndex"] = json!(r.modify_index);
    o
}

/// Consul's token JSON.
pub fn token_json(t: &Token, show_secret: bool) -> Value {
    let mut o = json!({
        "AccessorID": t.accessor_id,
        "SecretID": if show_secret { t.secret_id.as_str() } else { "<hidden>" },
        "Description": t.description,
    });
    if !t.policies.is_empty() {
        o["Policies"] = links_json(&t.policies);
    }
    if !t.roles.is_empty() {
        o["Roles"] = links_json(&t.roles);
    }
    if !t.service_identities.is_empty() {
        o["ServiceIdentities"] = sis_json(&t.service_identities);
    }
    if !t.node_identities.is_empty() {
        o["NodeIdentities"] = nis_json(&t.node_identities);
    }
    if !t.templated_policies.is_empty() {
        o["TemplatedPolicies"] = templated_json(&t.templated_policies);
    }
    o["Local"] = json!(t.local);
    if !t.auth_method.is_empty() {
        o["AuthMethod"] = json!(t.auth_method);
    }
    if !t.expiration_time.is_empty() {
        o["ExpirationTime"] = json!(t.expiration_time);
    }
    if !t.expiration_ttl.is_empty() {
        o["ExpirationTTL"] = json!(t.expiration_ttl);
    }
    o["CreateTime"] = json!(t.create_time);
    o["Hash"] = json!("");
    o["CreateIndex"] = json!(t.create_index);
    o["ModifyIndex"] = json!(t.modify_index);
    o
}

/// Consul's policy JSON (`stub`: without the rules, as lists show it).
pub fn policy_json(p: &Policy, stub: bool) -> Value {
    let mut o = json!({"ID": p.id, "Name": p.name, "Description": p.description});
    if !stub {
        o["Rules"] = json!(p.rules);
    }
    if !p.datacenters.is_empty() {
        o["Datacenters"] = json!(p.datacenters);
    }
    o["Hash"] = json!("");
    o["CreateIndex"] = json!(p.create_index);
    o["ModifyIndex"] = json!(p.modify_index);
    o
}

/// Consul's role JSON.
pub fn role_json(r: &Role) -> Value {
    let mut o = json!({"ID": r.id, "Name": r.name, "Description": r.description});
    if !r.policies.is_empty() {
        o["Policies"] = links_json(&r.policies);
    }
    if !r.service_identities.is_empty() {
        o["ServiceIdentities"] = sis_json(&r.service_identities);
    }
    if !r.node_identities.is_empty() {
        o["NodeIdentities"] = nis_json(&r.node_identities);
    }
    if !r.templated_policies.is_empty() {
        o["TemplatedPolicies"] = templated_json(&r.templated_policies);
    }
    o["Hash"] = json!("");
    o["CreateIndex"] = json!(r.create_index);
    o["ModifyIndex"] = json!(r.modify_index);
    o
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc3339_formats_utc() {
        assert_eq!(rfc3339(0), "1970-01-01T00:00:00.000Z");
        assert_eq!(rfc3339(1_700_000_000_123), "2023-11-14T22:13:20.123Z");
        assert_eq!(rfc3339(951_782_400_000), "2000-02-29T00:00:00.000Z");
    }
}
