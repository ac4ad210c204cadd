//! The ACL rules language of Consul policies, in HCL or JSON: resource rules with a name
//! (`key "a/b" { policy = "write" }`) or a name prefix (`key_prefix "a/" { ... }`), and the
//! unnamed resources (`operator = "read"`). Parsing never panics; any input that is not a valid
//! rule set is an error naming the offending rule.

use serde_json::{Map, Value};
use std::fmt;

/// The access a rule grants.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Access {
    /// Explicitly refused.
    Deny,
    /// Read.
    Read,
    /// Read and list (KV only).
    List,
    /// Read, list and write.
    Write,
}

impl Access {
    /// Parses Consul's policy word.
    pub fn parse(s: &str) -> Option<Access> {
        match s {
            "deny" => Some(Access::Deny),
            "read" => Some(Access::Read),
            "list" => Some(Access::List),
            "write" => Some(Access::Write),
            _ => None,
        }
    }

    /// Consul's policy word.
    pub fn as_str(self) -> &'static str {
        match self {
            Access::Deny => "deny",
            Access::Read => "read",
            Access::List => "list",
            Access::Write => "write",
        }
    }

    /// Whether `self` takes precedence over `other` when two rules for the same name are
    /// merged: deny always wins, then write, then list, then read.
    pub fn overrides(self, other: Access) -> bool {
        match (self, other) {
            (Access::Deny, _) => true,
            (_, Access::Deny) => false,
            (a, b) => a > b,
        }
    }

    /// Whether a rule of this access grants the `needed` permission.
    pub fn grants(self, needed: Access) -> bool {
        match self {
            Access::Write => true,
            Access::List => matches!(needed, Access::List | Access::Read),
            Access::Read => needed == Access::Read,
            Access::Deny => false,
        }
    }
}

impl fmt::Display for Access {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The resources whose rules name a segment (exact or prefix).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Resource {
    /// KV keys.
    Key,
    /// Service names.
    Service,
    /// Node names.
    Node,
    /// Sessions, by the node they belong to.
    Session,
    /// Agents, by node name.
    Agent,
    /// User events, by name.
    Event,
    /// Prepared queries, by name.
    Query,
}

impl Resource {
    /// Every named resource.
    pub const ALL: [Resource; 7] = [
        Resource::Key,
        Resource::Service,
        Resource::Node,
        Resource::Session,
        Resource::Agent,
        Resource::Event,
        Resource::Query,
    ];

    /// The rule word (`key`, `service`, ...), as Consul's permission messages name it.
    pub fn as_str(self) -> &'static str {
        match self {
            Resource::Key => "key",
            Resource::Service => "service",
            Resource::Node => "node",
            Resource::Session => "session",
            Resource::Agent => "agent",
            Resource::Event => "event",
            Resource::Query => "query",
        }
    }

    fn allows_list(self) -> bool {
        self == Resource::Key
    }
}

/// The resources that are a single switch.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Global {
    /// Cluster operations (Raft, autopilot, keyring rotation is separate).
    Operator,
    /// ACL management.
    Acl,
    /// The gossip keyring.
    Keyring,
    /// Service mesh configuration.
    Mesh,
}

impl Global {
    /// The rule word.
    pub fn as_str(self) -> &'static str {
        match self {
            Global::Operator => "operator",
            Global::Acl => "acl",
            Global::Keyring => "keyring",
            Global::Mesh => "mesh",
        }
    }
}

/// One named rule.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rule {
    /// What it applies to.
    pub resource: Resource,
    /// The name or name prefix.
    pub segment: String,
    /// `true` for `*_prefix` rules.
    pub prefix: bool,
    /// What it grants.
    pub access: Access,
}

/// A parsed policy.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Rules {
    /// Named rules, in the order written.
    pub rules: Vec<Rule>,
    /// `operator = "..."`.
    pub operator: Option<Access>,
    /// `acl = "..."`.
    pub acl: Option<Access>,
    /// `keyring = "..."`.
    pub keyring: Option<Access>,
    /// `mesh = "..."`.
    pub mesh: Option<Access>,
}

impl Rules {
    /// The access of a global resource, if the policy sets it.
    pub fn global(&self, g: Global) -> Option<Access> {
        match g {
            Global::Operator => self.operator,
            Global::Acl => self.acl,
            Global::Keyring => self.keyring,
            Global::Mesh => self.mesh,
        }
    }
}

/// A rule set that could not be parsed; the text is Consul's.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("Failed to parse ACL rules: {0}")]
pub struct RulesError(pub String);

fn err<T>(msg: impl Into<String>) -> Result<T, RulesError> {
    Err(RulesError(msg.into()))
}

/// Parses rules written in HCL or JSON (a text starting with `{` is JSON). Empty text is an
/// empty policy.
pub fn parse(text: &str) -> Result<Rules, RulesError> {
    let trimmed = text.trim();
    if trimmed.is_empty() {
        return Ok(Rules::default());
    }
    let value = if trimmed.starts_with('{') {
        serde_json::from_str::<Value>(trimmed).map_err(|e| RulesError(e.to_string()))?
    } else {
        hcl_to_json(trimmed)?
    };
    let Value::Object(top) = value else {
        return err("rules must be an object");
    };
    from_object(&top)
}

fn resource_of(word: &str) -> Option<(Resource, bool)> {
    let (base, prefix) = match word.strip_suffix("_prefix") {
        Some(b) => (b, true),
        None => (word, false),
    };
    let r = Resource::ALL.into_iter().find(|r| r.as_str() == base)?;
    Some((r, prefix))
}

fn global_of(word: &str) -> Option<Global> {
    [Global::Operator, Global::Acl, Global::Keyring, Global::Mesh]
        .into_iter()
        .find(|g| g.as_str() == word)
}

fn from_object(top: &Map<String, Value>) -> Result<Rules, RulesError> {
    let mut out = Rules::default();
    for (word, value) in top {
        if let Some(g) = global_of(word) {
            let access = match value {
                Value::String(s) => Access::parse(s).filter(|a| *a != Access::List),
                _ => None,
            };
            let Some(access) = access else {
                return err(format!("Invalid {word} policy: {value}"));
            };
            let slot = match g {
                Global::Operator => &mut out.operator,
                Global::Acl => &mut out.acl,
                Global::Keyring => &mut out.keyring,
                Global::Mesh => &mut out.mesh,
            };
            *slot = Some(match *slot {
                Some(old) if old.overrides(access) => old,
                _ => access,
            });
            continue;
        }
        let Some((resource, prefix)) = resource_of(word) else {
            // Consul ignores rules it does not know only for Enterprise-only words; an
            // unknown word is a typo worth reporting.
            return err(format!("Unexpected rule {word:?}"));
        };
        let objects: Vec<&Map<String, Value>> = match value {
            Value::Object(m) => vec![m],
            Value::Array(items) => {
                let mut v = Vec::new();
                for item in items {
                    match item {
                        Value::Object(m) => v.push(m),
                        _ => return err(format!("Invalid {word} rule: {item}")),
                    }
                }
                v
            }
            _ => return err(format!("Invalid {word} rule: {value}")),
        };
        for m in objects {
            for (segment, body) in m {
                let policy = match body {
                    Value::Object(b) => b.get("policy"),
                    _ => None,
                };
                let Some(Value::String(p)) = policy else {
                    return err(format!("Invalid {word} policy: {segment:?} has no policy"));
                };
                let access =
                    Access::parse(p).filter(|a| *a != Access::List || resource.allows_list());
                let Some(access) = access else {
                    return err(format!("Invalid {word} policy: {p:?}"));
                };
                out.rules.push(Rule {
                    resource,
                    segment: segment.clone(),
                    prefix,
                    access,
                });
            }
        }
    }
    Ok(out)
}

/// HCL to JSON; repeated blocks of one word become an array so none is lost.
fn hcl_to_json(text: &str) -> Result<Value, RulesError> {
    use hcl::eval::{Context, Evaluate};
    use hcl::Structure;
    let body = hcl::parse(text).map_err(|e| RulesError(e.to_string()))?;
    let ctx = Context::new();
    let mut top = Map::new();
    for structure in body.into_inner() {
        let (key, value) = match structure {
            Structure::Attribute(a) => {
                let key = a.key.as_str().to_string();
                let v = a
                    .expr
                    .evaluate(&ctx)
                    .map_err(|e| RulesError(format!("{key}: {e}")))?;
                let v = serde_json::to_value(v).map_err(|e| RulesError(e.to_string()))?;
                (key, v)
            }
            Structure::Block(b) => {
                let key = b.identifier.as_str().to_string();
                let mut inner = Map::new();
                for s in b.body.into_inner() {
                    match s {
                        Structure::Attribute(a) => {
                            let k = a.key.as_str().to_string();
                            let v = a
                                .expr
                                .evaluate(&ctx)
                                .map_err(|e| RulesError(format!("{key}.{k}: {e}")))?;
                            let v =
                                serde_json::to_value(v).map_err(|e| RulesError(e.to_string()))?;
                            inner.insert(k, v);
                        }
                        Structure::Block(_) => {
                            return err(format!("Invalid {key} rule: nested block"))
                        }
                    }
                }
                let mut value = Value::Object(inner);
                match b.labels.as_slice() {
                    [label] => {
                        let mut w = Map::new();
                        w.insert(label.as_str().to_string(), value);
                        value = Value::Object(w);
                    }
                    _ => return err(format!("Invalid {key} rule: it takes one name")),
                }
                (key, value)
            }
        };
        match top.get_mut(&key) {
            None => {
                top.insert(key, value);
            }
            Some(Value::Array(items)) => items.push(value),
            Some(existing) => {
                let first = existing.take();
                *existing = Value::Array(vec![first, value]);
            }
        }
    }
    Ok(Value::Object(top))
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn hcl_and_json_give_the_same_rules() {
        let hcl = r#"
            key_prefix "" { policy = "read" }
            key_prefix "app/" { policy = "write" }
            key "app/secret" { policy = "deny" }
            service_prefix "" { policy = "read" }
            service "web" { policy = "write" }
            node_prefix "" { policy = "read" }
            session_prefix "" { policy = "write" }
            agent_prefix "" { policy = "read" }
            event_prefix "deploy" { policy = "write" }
            query_prefix "" { policy = "read" }
            operator = "read"
            acl = "write"
            keyring = "deny"
            mesh = "read"
        "#;
        let json = r#"{
            "key_prefix": {"": {"policy": "read"}, "app/": {"policy": "write"}},
            "key": {"app/secret": {"policy": "deny"}},
            "service_prefix": {"": {"policy": "read"}},
            "service": {"web": {"policy": "write"}},
            "node_prefix": {"": {"policy": "read"}},
            "session_prefix": {"": {"policy": "write"}},
            "agent_prefix": {"": {"policy": "read"}},
            "event_prefix": {"deploy": {"policy": "write"}},
            "query_prefix": {"": {"policy": "read"}},
            "operator": "read", "acl": "write", "keyring": "deny", "mesh": "read"
        }"#;
        let a = parse(hcl).unwrap();
        let b = parse(json).unwrap();
        assert_eq!(a.rules.len(), 10);
        assert_eq!(a, b);
        assert_eq!(a.operator, Some(Access::Read));
        assert_eq!(a.keyring, Some(Access::Deny));
    }

    #[test]
    fn list_only_for_keys_and_bad_words_are_errors() {
        assert!(parse(r#"key_prefix "" { policy = "list" }"#).is_ok());
        let e = parse(r#"service "" { policy = "list" }"#).unwrap_err();
        assert!(e
            .to_string()
            .starts_with("Failed to parse ACL rules: Invalid service policy"));
        assert!(parse(r#"key "a" { policy = "admin" }"#).is_err());
        assert!(parse(r#"operator = "list""#).is_err());
        assert!(parse(r#"keys "a" { policy = "read" }"#).is_err());
        assert!(parse(r#"key { policy = "read" }"#).is_err());
        assert!(parse("not hcl {{").is_err());
        assert!(parse("[1,2]").is_err());
        assert_eq!(parse("  ").unwrap(), Rules::default());
    }

    #[test]
    fn json_arrays_of_rule_objects_are_accepted() {
        let r = parse(r#"{"key":[{"a":{"policy":"read"}},{"b":{"policy":"write"}}]}"#).unwrap();
        assert_eq!(r.rules.len(), 2);
    }

    proptest! {
        #[test]
        fn parser_never_panics(s in "\\PC{0,200}") {
            let _ = parse(&s);
        }

        #[test]
        fn parser_never_panics_on_rule_like_text(
            words in proptest::collection::vec(
                prop_oneof![
                    Just("key_prefix"), Just("service"), Just("operator"), Just("="),
                    Just("{"), Just("}"), Just("\""), Just("policy"), Just("read"),
                    Just("[") , Just("]"), Just(":"), Just(","), Just("list"), Just("\"\""),
                ],
                0..40,
            )
        ) {
            let _ = parse(&words.join(" "));
        }
    }
}
