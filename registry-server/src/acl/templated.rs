//! Consul's built-in templated policies (`builtin/service`, `builtin/node`, ...): their rules
//! templates, the check of a templated policy attached to a token or role, and the synthetic
//! policy a templated policy renders to when a token is resolved (and for
//! `/v1/acl/templated-policy/preview/:name`).

use registry_proto::acl::{Policy, TemplatedPolicy};
use sha2::{Digest, Sha256};

/// One built-in template.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Builtin {
    /// `TemplateName`.
    pub name: &'static str,
    /// Consul's fixed template ID (not shown to users).
    pub id: &'static str,
    /// `Description`.
    pub description: &'static str,
    /// Whether it needs `TemplateVariables.Name`.
    pub needs_name: bool,
    /// The rules, with `{{.Name}}` where the variable goes.
    pub template: &'static str,
}

/// The JSON schema of templates that take a name, as Consul publishes it.
pub const NAME_SCHEMA: &str = "{\n\t\"type\": \"object\",\n\t\"properties\": {\n\t\t\"name\": { \"type\": \"string\", \"$ref\": \"#/definitions/min-length-one\" }\n\t},\n\t\"required\": [\"name\"],\n\t\"definitions\": {\n\t\t\"min-length-one\": {\n\t\t\t\t\"type\": \"string\",\n\t\t\t\t\"minLength\": 1\n\t\t}\n\t}\n}";

/// The built-in templates.
pub const BUILTINS: &[Builtin] = &[
    Builtin {
        name: "builtin/service",
        id: "00000000-0000-0000-0000-000000000003",
        description: "Gives the token or role permissions to register a service and discover services in the Consul catalog. It also gives the specified service's sidecar proxy the permission to discover and route traffic to other services.",
        needs_name: true,
        template: "service \"{{.Name}}\" {\n\tpolicy = \"write\"\n}\nservice \"{{.Name}}-sidecar-proxy\" {\n\tpolicy = \"write\"\n}\nservice_prefix \"\" {\n\tpolicy = \"read\"\n}\nnode_prefix \"\" {\n\tpolicy = \"read\"\n}",
    },
    Builtin {
        name: "builtin/node",
        id: "00000000-0000-0000-0000-000000000004",
        description: "Gives the token or role permissions for a register an agent/node into the catalog. A node is typically a consul agent but can also be a physical server, cloud instance or a container.",
        needs_name: true,
        template: "node \"{{.Name}}\" {\n\tpolicy = \"write\"\n}\nservice_prefix \"\" {\n\tpolicy = \"read\"\n}",
    },
    Builtin {
        name: "builtin/dns",
        id: "00000000-0000-0000-0000-000000000005",
        description: "Gives the token or role permissions for the Consul DNS to query services in the network.",
        needs_name: false,
        template: "node_prefix \"\" {\n\tpolicy = \"read\"\n}\nservice_prefix \"\" {\n\tpolicy = \"read\"\n}\nquery_prefix \"\" {\n\tpolicy = \"read\"\n}",
    },
    Builtin {
        name: "builtin/nomad-server",
        id: "00000000-0000-0000-0000-000000000006",
        description: "Gives the token or role permissions required for integration with a nomad server.",
        needs_name: false,
        template: "acl = \"write\"\nagent_prefix \"\" {\n  policy = \"read\"\n}\nnode_prefix \"\" {\n  policy = \"read\"\n}\nservice_prefix \"\" {\n  policy = \"write\"\n}",
    },
    Builtin {
        name: "builtin/workload-identity",
        id: "00000000-0000-0000-0000-000000000007",
        description: "Gives the token or role permissions to be used by a workload identity.",
        needs_name: true,
        template: "identity \"{{.Name}}\" {\n\tpolicy = \"write\"\n}",
    },
    Builtin {
        name: "builtin/api-gateway",
        id: "00000000-0000-0000-0000-000000000008",
        description: "Gives the token or role permissions for a Consul api gateway",
        needs_name: true,
        template: "mesh = \"read\"\nnode_prefix \"\" {\n\tpolicy = \"read\"\n}\nservice_prefix \"\" {\n\tpolicy = \"read\"\n}\nservice \"{{.Name}}\" {\n\tpolicy = \"write\"\n}",
    },
    Builtin {
        name: "builtin/nomad-client",
        id: "00000000-0000-0000-0000-000000000009",
        description: "Gives the token or role permissions required for integration with a nomad client.",
        needs_name: true,
        template: "agent \"{{.Name}}\" {\n  policy = \"read\"\n}\nnode \"{{.Name}}\" {\n  policy = \"write\"\n}\nservice_prefix \"\" {\n  policy = \"write\"\n}",
    },
];

/// The built-in template named `name`.
pub fn find(name: &str) -> Option<&'static Builtin> {
    BUILTINS.iter().find(|b| b.name == name)
}

impl Builtin {
    /// The schema shown for it (empty: it takes no variables).
    pub fn schema(&self) -> &'static str {
        if self.needs_name {
            NAME_SCHEMA
        } else {
            ""
        }
    }

    /// Its rules for the variable `name`.
    pub fn render(&self, name: &str) -> String {
        self.template.replace("{{.Name}}", name)
    }
}

/// Whether `name` may go into a template: Consul's service and node name characters, so a
/// name can never break out of the quoted string it lands in.
fn valid_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 256
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
}

/// Checks a templated policy given in a request; the text is the 400's message.
pub fn validate(tp: &TemplatedPolicy) -> Result<&'static Builtin, String> {
    let Some(b) = find(&tp.template_name) else {
        return Err(format!(
            "templated policy {:?} does not exist",
            tp.template_name
        ));
    };
    if b.needs_name {
        if tp.name.is_empty() {
            return Err(format!(
                "validate templated policy variables for {:?}: name: String length must be greater than or equal to 1",
                b.name
            ));
        }
        if !valid_name(&tp.name) {
            return Err(format!(
                "validate templated policy variables for {:?}: name {:?} is not a valid name",
                b.name, tp.name
            ));
        }
    }
    Ok(b)
}

/// The rules a templated policy grants (`None`: unknown template).
pub fn rules_of(tp: &TemplatedPolicy) -> Option<String> {
    find(&tp.template_name).map(|b| b.render(&tp.name))
}

/// The synthetic policy of a templated policy, as Consul names it.
pub fn synthetic_policy(tp: &TemplatedPolicy) -> Option<Policy> {
    let rules = rules_of(tp)?;
    let digest = Sha256::digest(rules.as_bytes());
    let id: String = digest[..16].iter().map(|b| format!("{b:02x}")).collect();
    Some(Policy {
        name: format!("synthetic-policy-{id}"),
        id,
        description: format!(
            "synthetic policy generated from templated policy: {}",
            tp.template_name
        ),
        rules,
        datacenters: tp.datacenters.clone(),
        ..Policy::default()
    })
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use registry_proto::acl::rules;

    #[test]
    fn every_builtin_renders_to_rules_that_parse() {
        for b in BUILTINS {
            let text = b.render("web");
            let parsed = rules::parse(&text);
            // `identity` is an Enterprise-era resource this registry has no use for.
            if b.name == "builtin/workload-identity" {
                assert!(parsed.is_err());
            } else {
                assert!(parsed.is_ok(), "{}: {parsed:?}", b.name);
            }
        }
    }

    #[test]
    fn names_are_checked_before_they_reach_a_template() {
        let tp = |t: &str, n: &str| TemplatedPolicy {
            template_name: t.into(),
            name: n.into(),
            datacenters: vec![],
        };
        assert!(validate(&tp("builtin/service", "api")).is_ok());
        assert!(validate(&tp("builtin/dns", "")).is_ok());
        assert!(validate(&tp("builtin/service", "")).is_err());
        assert!(validate(&tp("builtin/service", "a\" { policy = \"write\" }")).is_err());
        assert!(validate(&tp("builtin/nope", "x")).is_err());
        let p = synthetic_policy(&tp("builtin/service", "api")).unwrap();
        assert!(p.rules.contains("service \"api-sidecar-proxy\""));
        assert_eq!(p.name, format!("synthetic-policy-{}", p.id));
    }
}
