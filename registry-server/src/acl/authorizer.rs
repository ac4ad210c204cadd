//! The authorizer: a token's policies merged into one rule set per resource, asked "may this
//! token do X on Y". An exact rule beats any prefix rule, the longest prefix wins, and when two
//! policies give the same name different access, deny wins, then write, list, read. A name no
//! rule covers falls to the default policy.

use registry_proto::acl::rules::{Access, Global, Resource, Rules};
use std::collections::BTreeMap;

/// What a token may do.
#[derive(Debug, Clone, Default)]
pub struct Authorizer {
    /// Accessor ID of the token (for permission messages).
    pub accessor_id: String,
    /// Management tokens may do everything.
    pub management: bool,
    /// `acl.default_policy = "allow"`.
    pub default_allow: bool,
    exact: BTreeMap<(Resource, String), Access>,
    prefix: BTreeMap<(Resource, String), Access>,
    globals: BTreeMap<&'static str, Access>,
}

fn merge(slot: Option<&mut Access>, access: Access) -> Option<Access> {
    match slot {
        Some(old) => {
            if access.overrides(*old) {
                *old = access;
            }
            None
        }
        None => Some(access),
    }
}

impl Authorizer {
    /// An authorizer with no rules.
    pub fn new(accessor_id: &str, default_allow: bool) -> Self {
        Authorizer {
            accessor_id: accessor_id.to_string(),
            default_allow,
            ..Authorizer::default()
        }
    }

    /// One that allows everything.
    pub fn management(accessor_id: &str) -> Self {
        Authorizer {
            accessor_id: accessor_id.to_string(),
            management: true,
            default_allow: true,
            ..Authorizer::default()
        }
    }

    /// Adds a policy's rules.
    pub fn add(&mut self, rules: &Rules) {
        for r in &rules.rules {
            let map = if r.prefix {
                &mut self.prefix
            } else {
                &mut self.exact
            };
            let key = (r.resource, r.segment.clone());
            if let Some(a) = merge(map.get_mut(&key), r.access) {
                map.insert(key, a);
            }
        }
        for g in [Global::Operator, Global::Acl, Global::Keyring, Global::Mesh] {
            if let Some(a) = rules.global(g) {
                if let Some(a) = merge(self.globals.get_mut(g.as_str()), a) {
                    self.globals.insert(g.as_str(), a);
                }
            }
        }
    }

    /// The rule that governs `name`, if any.
    fn rule(&self, resource: Resource, name: &str) -> Option<Access> {
        if let Some(a) = self.exact.get(&(resource, name.to_string())) {
            return Some(*a);
        }
        // The longest prefix rule of this resource that `name` starts with. Policies hold few
        // prefix rules, so a scan beats building every prefix of `name` as a key.
        self.prefix
            .range((resource, String::new())..)
            .take_while(|((r, _), _)| *r == resource)
            .filter(|((_, seg), _)| name.starts_with(seg.as_str()))
            .max_by_key(|((_, seg), _)| seg.len())
            .map(|(_, a)| *a)
    }

    /// Whether the token has `needed` on `name`.
    pub fn allowed(&self, resource: Resource, name: &str, needed: Access) -> bool {
        if self.management {
            return true;
        }
        match self.rule(resource, name) {
            Some(a) => a.grants(needed),
            None => self.default_allow,
        }
    }

    /// Whether the token has `needed` on a global resource. The default policy never grants
    /// ACL management; `mesh` falls back to `operator`.
    pub fn allowed_global(&self, g: Global, needed: Access) -> bool {
        if self.management {
            return true;
        }
        let rule = self.globals.get(g.as_str()).copied().or_else(|| {
            (g == Global::Mesh)
                .then(|| self.globals.get(Global::Operator.as_str()).copied())
                .flatten()
        });
        match rule {
            Some(a) => a.grants(needed),
            None => self.default_allow && g != Global::Acl,
        }
    }

    /// `key:write` on every key under `prefix` (a recursive delete): the prefix itself must be
    /// writable and no rule under it may be less than write.
    pub fn key_write_prefix(&self, prefix: &str) -> bool {
        if self.management {
            return true;
        }
        let below = |m: &BTreeMap<(Resource, String), Access>| {
            m.range((Resource::Key, prefix.to_string())..)
                .take_while(|((r, s), _)| *r == Resource::Key && s.starts_with(prefix))
                .any(|(_, a)| *a != Access::Write)
        };
        if below(&self.exact) || below(&self.prefix) {
            return false;
        }
        self.allowed(Resource::Key, prefix, Access::Write)
    }

    /// Consul's text for a refusal.
    pub fn denied(&self, resource: &str, needed: Access, name: Option<&str>) -> String {
        let perm = format!("{resource}:{needed}");
        match name {
            Some(n) => format!(
                "token with AccessorID '{}' lacks permission '{perm}' on \"{n}\"",
                self.accessor_id
            ),
            None => format!(
                "token with AccessorID '{}' lacks permission '{perm}'",
                self.accessor_id
            ),
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;
    use registry_proto::acl::rules::parse;

    fn authz(policies: &[&str], default_allow: bool) -> Authorizer {
        let mut a = Authorizer::new("acc", default_allow);
        for p in policies {
            a.add(&parse(p).unwrap());
        }
        a
    }

    #[test]
    fn exact_beats_prefix_and_longest_prefix_wins() {
        let a = authz(
            &[r#"
            key_prefix "" { policy = "read" }
            key_prefix "app/" { policy = "write" }
            key_prefix "app/secret/" { policy = "deny" }
            key "app/secret/ok" { policy = "read" }
            key "app" { policy = "deny" }
        "#],
            false,
        );
        use Access::*;
        use Resource::Key;
        assert!(a.allowed(Key, "other", Read));
        assert!(!a.allowed(Key, "other", Write));
        assert!(a.allowed(Key, "app/x", Write));
        assert!(!a.allowed(Key, "app/secret/x", Read));
        assert!(a.allowed(Key, "app/secret/ok", Read));
        assert!(!a.allowed(Key, "app/secret/ok", Write));
        assert!(!a.allowed(Key, "app", Read));
        assert!(a.allowed(Key, "apple", Read));
        assert!(!a.allowed(Resource::Service, "web", Read));
    }

    #[test]
    fn deny_wins_a_tie_between_policies_and_write_beats_read() {
        let a = authz(
            &[
                r#"service "web" { policy = "write" }"#,
                r#"service "web" { policy = "deny" }"#,
                r#"service "db" { policy = "read" }"#,
                r#"service "db" { policy = "write" }"#,
            ],
            true,
        );
        assert!(!a.allowed(Resource::Service, "web", Access::Read));
        assert!(a.allowed(Resource::Service, "db", Access::Write));
        assert!(a.allowed(Resource::Service, "other", Access::Write));
    }

    #[test]
    fn list_grants_read_and_list_but_not_write() {
        let a = authz(&[r#"key_prefix "a/" { policy = "list" }"#], false);
        assert!(a.allowed(Resource::Key, "a/b", Access::List));
        assert!(a.allowed(Resource::Key, "a/b", Access::Read));
        assert!(!a.allowed(Resource::Key, "a/b", Access::Write));
        let r = authz(&[r#"key_prefix "a/" { policy = "read" }"#], false);
        assert!(!r.allowed(Resource::Key, "a/b", Access::List));
    }

    #[test]
    fn globals_default_and_management() {
        let a = authz(&["operator = \"read\""], true);
        assert!(a.allowed_global(Global::Operator, Access::Read));
        assert!(!a.allowed_global(Global::Operator, Access::Write));
        assert!(a.allowed_global(Global::Mesh, Access::Read));
        assert!(!a.allowed_global(Global::Acl, Access::Read));
        assert!(a.allowed_global(Global::Keyring, Access::Write));
        let d = authz(&[], false);
        assert!(!d.allowed_global(Global::Keyring, Access::Read));
        let m = Authorizer::management("m");
        assert!(m.allowed_global(Global::Acl, Access::Write));
        assert!(m.key_write_prefix(""));
    }

    #[test]
    fn recursive_delete_needs_write_on_everything_below() {
        let a = authz(
            &[r#"
            key_prefix "a/" { policy = "write" }
            key "a/locked" { policy = "read" }
        "#],
            false,
        );
        assert!(!a.key_write_prefix("a/"));
        assert!(a.key_write_prefix("a/sub/"));
        assert!(!a.key_write_prefix("b/"));
    }

    #[test]
    fn denied_text_is_consuls() {
        let a = Authorizer::new("abc", false);
        assert_eq!(
            a.denied("key", Access::Write, Some("foo")),
            "token with AccessorID 'abc' lacks permission 'key:write' on \"foo\""
        );
    }
}
