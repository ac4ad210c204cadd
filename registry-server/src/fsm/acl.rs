//! ACL tables in the state machine: bootstrap, tokens, policies and roles. Every check that
//! must hold on all replicas (unique names and secrets, links to existing policies and roles,
//! the built-in records) is made here, before anything changes.

use crate::state::{AclTables, WatchKey, WriteTxn};
use registry_proto::acl::{
    AclCommand, AuthMethod, BindingRule, Link, Policy, Role, Token, ANONYMOUS_ACCESSOR,
    ANONYMOUS_SECRET, GLOBAL_MANAGEMENT_ID, GLOBAL_MANAGEMENT_NAME,
};
use registry_proto::CommandResponse;

/// The rejection text of a second bootstrap; the HTTP layer answers 403 with it.
pub const BOOTSTRAP_NOT_ALLOWED: &str = "ACL bootstrap no longer allowed";

/// Applies one ACL command.
pub(super) fn apply(txn: &mut WriteTxn<'_>, cmd: &AclCommand) -> CommandResponse {
    let index = txn.index;
    let before = txn.db.acl.index;
    let acl = &mut *txn.db.acl;
    let result = match cmd {
        AclCommand::Init => {
            init(acl, index);
            Ok(())
        }
        AclCommand::Bootstrap { token, force } => bootstrap(acl, index, token, *force),
        AclCommand::TokenSet(token) => token_set(acl, index, token),
        AclCommand::TokenDelete { accessor_id } => token_delete(acl, index, accessor_id),
        AclCommand::PolicySet(policy) => policy_set(acl, index, policy),
        AclCommand::PolicyDelete { id } => policy_delete(acl, index, id),
        AclCommand::RoleSet(role) => role_set(acl, index, role),
        AclCommand::RoleDelete { id } => role_delete(acl, index, id),
        AclCommand::AuthMethodSet(m) => auth_method_set(acl, index, m),
        AclCommand::AuthMethodDelete { name } => auth_method_delete(acl, index, name),
        AclCommand::BindingRuleSet(r) => binding_rule_set(acl, index, r),
        AclCommand::BindingRuleDelete { id } => {
            if acl.binding_rules.remove(id).is_some() {
                acl.index = index;
            }
            Ok(())
        }
        AclCommand::Replicate(batch) => super::acl_replicate::apply(acl, index, batch),
    };
    if txn.db.acl.index != before {
        txn.touch(WatchKey::Acl);
    }
    match result {
        Ok(()) => CommandResponse::Ok,
        Err(text) => CommandResponse::Rejected(text),
    }
}

/// The built-in management policy as Consul defines it.
pub fn global_management(index: u64) -> Policy {
    Policy {
        id: GLOBAL_MANAGEMENT_ID.to_string(),
        name: GLOBAL_MANAGEMENT_NAME.to_string(),
        description: "Builtin Policy that grants unlimited access".to_string(),
        rules: "acl = \"write\"\nagent_prefix \"\" {\n  policy = \"write\"\n}\nevent_prefix \"\" {\n  policy = \"write\"\n}\nkey_prefix \"\" {\n  policy = \"write\"\n}\nkeyring = \"write\"\nnode_prefix \"\" {\n  policy = \"write\"\n}\noperator = \"write\"\nmesh = \"write\"\nquery_prefix \"\" {\n  policy = \"write\"\n}\nservice_prefix \"\" {\n  policy = \"write\"\n  intentions = \"write\"\n}\nsession_prefix \"\" {\n  policy = \"write\"\n}".to_string(),
        datacenters: Vec::new(),
        create_index: index,
        modify_index: index,
    }
}

fn init(acl: &mut AclTables, index: u64) {
    if !acl.policies.contains_key(GLOBAL_MANAGEMENT_ID) {
        acl.policies
            .insert(GLOBAL_MANAGEMENT_ID.to_string(), global_management(index));
        acl.index = index;
    }
    if !acl.tokens.contains_key(ANONYMOUS_ACCESSOR) {
        acl.tokens.insert(
            ANONYMOUS_ACCESSOR.to_string(),
            Token {
                accessor_id: ANONYMOUS_ACCESSOR.to_string(),
                secret_id: ANONYMOUS_SECRET.to_string(),
                description: "Anonymous Token".to_string(),
                create_index: index,
                modify_index: index,
                ..Token::default()
            },
        );
        acl.secrets
            .insert(ANONYMOUS_SECRET.to_string(), ANONYMOUS_ACCESSOR.to_string());
        acl.index = index;
    }
}

fn bootstrap(acl: &mut AclTables, index: u64, token: &Token, force: bool) -> Result<(), String> {
    if acl.bootstrap_index != 0 && !force {
        return Err(format!(
            "{BOOTSTRAP_NOT_ALLOWED} (reset index: {})",
            acl.bootstrap_index
        ));
    }
    if force && acl.tokens.contains_key(&token.accessor_id) {
        // The configured initial management token already exists: nothing to do.
        return Ok(());
    }
    init(acl, index);
    let mut token = token.clone();
    token.policies = vec![Link {
        id: GLOBAL_MANAGEMENT_ID.to_string(),
        name: GLOBAL_MANAGEMENT_NAME.to_string(),
    }];
    token_set(acl, index, &token)?;
    if acl.bootstrap_index == 0 {
        acl.bootstrap_index = index;
    }
    Ok(())
}

pub(super) fn check_links(
    acl: &AclTables,
    policies: &[Link],
    roles: &[Link],
) -> Result<(), String> {
    for p in policies {
        if !acl.policies.contains_key(&p.id) {
            return Err(format!("cannot find policy {}", p.id));
        }
    }
    for r in roles {
        if !acl.roles.contains_key(&r.id) {
            return Err(format!("cannot find role {}", r.id));
        }
    }
    Ok(())
}

pub(super) fn token_set(acl: &mut AclTables, index: u64, token: &Token) -> Result<(), String> {
    if token.accessor_id.is_empty() || token.secret_id.is_empty() {
        return Err("Invalid token: missing AccessorID or SecretID".to_string());
    }
    match acl.secrets.get(&token.secret_id) {
        Some(acc) if *acc != token.accessor_id => {
            return Err("Invalid Token: SecretID is already in use".to_string())
        }
        _ => {}
    }
    check_links(acl, &token.policies, &token.roles)?;
    let mut token = token.clone();
    match acl.tokens.get(&token.accessor_id) {
        Some(old) => {
            if old.secret_id != token.secret_id {
                return Err("Changing a token's SecretID is not permitted".to_string());
            }
            token.create_index = old.create_index;
            if token.create_time.is_empty() {
                token.create_time = old.create_time.clone();
            }
        }
        None => token.create_index = index,
    }
    token.modify_index = index;
    acl.secrets
        .insert(token.secret_id.clone(), token.accessor_id.clone());
    acl.tokens.insert(token.accessor_id.clone(), token);
    acl.index = index;
    Ok(())
}

pub(super) fn token_delete(acl: &mut AclTables, index: u64, accessor: &str) -> Result<(), String> {
    if accessor == ANONYMOUS_ACCESSOR {
        return Err("Delete operation not permitted on the anonymous token".to_string());
    }
    if let Some(t) = acl.tokens.remove(accessor) {
        acl.secrets.remove(&t.secret_id);
        acl.index = index;
    }
    Ok(())
}

pub(super) fn policy_set(acl: &mut AclTables, index: u64, policy: &Policy) -> Result<(), String> {
    if let Some(other) = acl.policy_by_name(&policy.name) {
        if other.id != policy.id {
            return Err(format!(
                "Invalid Policy: A Policy with Name {:?} already exists",
                policy.name
            ));
        }
    }
    if policy.id == GLOBAL_MANAGEMENT_ID {
        let builtin = global_management(0);
        if policy.rules != builtin.rules || !policy.datacenters.is_empty() {
            return Err(
                "Changing the Rules for the builtin global-management policy is not permitted"
                    .to_string(),
            );
        }
    }
    let mut policy = policy.clone();
    policy.create_index = acl
        .policies
        .get(&policy.id)
        .map_or(index, |p| p.create_index);
    policy.modify_index = index;
    // Links carry the name the policy had; keep them current.
    for t in acl.tokens.values_mut() {
        for l in t.policies.iter_mut().filter(|l| l.id == policy.id) {
            l.name = policy.name.clone();
        }
    }
    for r in acl.roles.values_mut() {
        for l in r.policies.iter_mut().filter(|l| l.id == policy.id) {
            l.name = policy.name.clone();
        }
    }
    acl.policies.insert(policy.id.clone(), policy);
    acl.index = index;
    Ok(())
}

pub(super) fn policy_delete(acl: &mut AclTables, index: u64, id: &str) -> Result<(), String> {
    if id == GLOBAL_MANAGEMENT_ID {
        return Err(
            "Delete operation not permitted on the builtin global-management policy".to_string(),
        );
    }
    if acl.policies.remove(id).is_some() {
        for t in acl.tokens.values_mut() {
            t.policies.retain(|l| l.id != id);
        }
        for r in acl.roles.values_mut() {
            r.policies.retain(|l| l.id != id);
        }
        acl.index = index;
    }
    Ok(())
}

pub(super) fn role_set(acl: &mut AclTables, index: u64, role: &Role) -> Result<(), String> {
    if let Some(other) = acl.role_by_name(&role.name) {
        if other.id != role.id {
            return Err(format!(
                "Invalid Role: A Role with Name {:?} already exists",
                role.name
            ));
        }
    }
    check_links(acl, &role.policies, &[])?;
    let mut role = role.clone();
    role.create_index = acl.roles.get(&role.id).map_or(index, |r| r.create_index);
    role.modify_index = index;
    for t in acl.tokens.values_mut() {
        for l in t.roles.iter_mut().filter(|l| l.id == role.id) {
            l.name = role.name.clone();
        }
    }
    acl.roles.insert(role.id.clone(), role);
    acl.index = index;
    Ok(())
}

pub(super) fn role_delete(acl: &mut AclTables, index: u64, id: &str) -> Result<(), String> {
    if acl.roles.remove(id).is_some() {
        for t in acl.tokens.values_mut() {
            t.roles.retain(|l| l.id != id);
        }
        acl.index = index;
    }
    Ok(())
}

fn auth_method_set(acl: &mut AclTables, index: u64, m: &AuthMethod) -> Result<(), String> {
    if m.name.is_empty() {
        return Err("Invalid Auth Method: no Name is set".to_string());
    }
    let mut m = m.clone();
    m.create_index = acl
        .auth_methods
        .get(&m.name)
        .map_or(index, |old| old.create_index);
    m.modify_index = index;
    acl.auth_methods.insert(m.name.clone(), m);
    acl.index = index;
    Ok(())
}

/// Deletes an auth method with its binding rules and the tokens its logins created, as
/// Consul does.
fn auth_method_delete(acl: &mut AclTables, index: u64, name: &str) -> Result<(), String> {
    if acl.auth_methods.remove(name).is_none() {
        return Ok(());
    }
    acl.binding_rules.retain(|_, r| r.auth_method != name);
    let gone: Vec<(String, String)> = acl
        .tokens
        .values()
        .filter(|t| t.auth_method == name)
        .map(|t| (t.accessor_id.clone(), t.secret_id.clone()))
        .collect();
    for (accessor, secret) in gone {
        acl.tokens.remove(&accessor);
        acl.secrets.remove(&secret);
    }
    acl.index = index;
    Ok(())
}

fn binding_rule_set(acl: &mut AclTables, index: u64, r: &BindingRule) -> Result<(), String> {
    if !acl.auth_methods.contains_key(&r.auth_method) {
        return Err(format!(
            "Invalid Binding Rule: AuthMethod {:?} not found",
            r.auth_method
        ));
    }
    let mut r = r.clone();
    r.create_index = acl
        .binding_rules
        .get(&r.id)
        .map_or(index, |old| old.create_index);
    r.modify_index = index;
    acl.binding_rules.insert(r.id.clone(), r);
    acl.index = index;
    Ok(())
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;
    use crate::fsm::apply as fsm_apply;
    use crate::state::Store;
    use registry_proto::Command;

    fn token(acc: &str, secret: &str) -> Token {
        Token {
            accessor_id: acc.into(),
            secret_id: secret.into(),
            ..Token::default()
        }
    }

    fn run(store: &Store, index: u64, cmd: AclCommand) -> CommandResponse {
        fsm_apply(store, index, &Command::Acl(cmd))
    }

    #[test]
    fn bootstrap_once_then_reports_the_reset_index() {
        let store = Store::default();
        let boot = |i| AclCommand::Bootstrap {
            token: token(&format!("a{i}"), &format!("s{i}")),
            force: false,
        };
        assert_eq!(run(&store, 5, boot(1)), CommandResponse::Ok);
        let db = store.read();
        let t = db.acl.token_by_secret("s1").unwrap();
        assert_eq!(t.policies[0].name, GLOBAL_MANAGEMENT_NAME);
        assert!(db.acl.tokens.contains_key(ANONYMOUS_ACCESSOR));
        drop(db);
        assert_eq!(
            run(&store, 6, boot(2)),
            CommandResponse::Rejected(
                "ACL bootstrap no longer allowed (reset index: 5)".to_string()
            )
        );
    }

    #[test]
    fn links_names_and_builtins_are_checked() {
        let store = Store::default();
        run(&store, 1, AclCommand::Init);
        let mut t = token("a", "s");
        t.policies = vec![Link {
            id: "nope".into(),
            name: String::new(),
        }];
        assert!(matches!(
            run(&store, 2, AclCommand::TokenSet(t)),
            CommandResponse::Rejected(_)
        ));
        let p = Policy {
            id: "p1".into(),
            name: "web".into(),
            ..Policy::default()
        };
        assert_eq!(
            run(&store, 3, AclCommand::PolicySet(p.clone())),
            CommandResponse::Ok
        );
        let dup = Policy {
            id: "p2".into(),
            ..p
        };
        assert!(matches!(
            run(&store, 4, AclCommand::PolicySet(dup)),
            CommandResponse::Rejected(_)
        ));
        assert!(matches!(
            run(
                &store,
                5,
                AclCommand::PolicyDelete {
                    id: GLOBAL_MANAGEMENT_ID.into()
                }
            ),
            CommandResponse::Rejected(_)
        ));
        assert!(matches!(
            run(
                &store,
                6,
                AclCommand::TokenDelete {
                    accessor_id: ANONYMOUS_ACCESSOR.into()
                }
            ),
            CommandResponse::Rejected(_)
        ));
        let mut t = token("a", "s");
        t.policies = vec![Link {
            id: "p1".into(),
            name: "web".into(),
        }];
        assert_eq!(run(&store, 7, AclCommand::TokenSet(t)), CommandResponse::Ok);
        assert_eq!(
            run(&store, 8, AclCommand::PolicyDelete { id: "p1".into() }),
            CommandResponse::Ok
        );
        assert!(store.read().acl.tokens["a"].policies.is_empty());
        assert!(matches!(
            run(&store, 9, AclCommand::TokenSet(token("b", "s"))),
            CommandResponse::Rejected(_)
        ));
    }

    #[test]
    fn deleting_an_auth_method_takes_its_rules_and_login_tokens() {
        let store = Store::default();
        run(&store, 1, AclCommand::Init);
        let rule = BindingRule {
            id: "r1".into(),
            auth_method: "jwt".into(),
            ..BindingRule::default()
        };
        assert!(matches!(
            run(&store, 2, AclCommand::BindingRuleSet(rule.clone())),
            CommandResponse::Rejected(_)
        ));
        let m = AuthMethod {
            name: "jwt".into(),
            method_type: "jwt".into(),
            ..AuthMethod::default()
        };
        run(&store, 3, AclCommand::AuthMethodSet(m));
        assert_eq!(
            run(&store, 4, AclCommand::BindingRuleSet(rule)),
            CommandResponse::Ok
        );
        let t = Token {
            auth_method: "jwt".into(),
            ..token("a", "s")
        };
        run(&store, 5, AclCommand::TokenSet(t));
        run(&store, 6, AclCommand::TokenSet(token("b", "s2")));
        run(
            &store,
            7,
            AclCommand::AuthMethodDelete { name: "jwt".into() },
        );
        let db = store.read();
        assert!(db.acl.binding_rules.is_empty());
        assert!(db.acl.token_by_secret("s").is_none());
        assert!(db.acl.token_by_secret("s2").is_some());
    }
}
