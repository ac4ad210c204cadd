//! One round of ACL replication applied by a secondary datacenter's state machine: the
//! policies, roles and global tokens of the primary datacenter, created, replaced or deleted
//! as a whole (every change of the round, or none of them).
//!
//! The primary's records win: a local policy or role holding a name the primary gives to
//! another ID is deleted, and so is a local token holding a replicated token's secret.
//! `Local` tokens are never deleted by replication, nor are the built-in records.

use super::acl::{policy_delete, policy_set, role_delete, role_set, token_delete, token_set};
use crate::state::AclTables;
use registry_proto::acl::{AclReplicationBatch, Link, ANONYMOUS_ACCESSOR, GLOBAL_MANAGEMENT_ID};

/// Applies `batch` at `index`; on any rejection nothing changes.
pub(super) fn apply(
    acl: &mut AclTables,
    index: u64,
    batch: &AclReplicationBatch,
) -> Result<(), String> {
    let mut next = acl.clone();
    for accessor in &batch.token_deletes {
        let deletable = next
            .tokens
            .get(accessor)
            .is_some_and(|t| !t.local && accessor != ANONYMOUS_ACCESSOR);
        if deletable {
            token_delete(&mut next, index, accessor)?;
        }
    }
    for id in &batch.role_deletes {
        role_delete(&mut next, index, id)?;
    }
    for id in &batch.policy_deletes {
        if id != GLOBAL_MANAGEMENT_ID {
            policy_delete(&mut next, index, id)?;
        }
    }
    for p in &batch.policies {
        let clash: Vec<String> = next
            .policies
            .values()
            .filter(|o| o.name == p.name && o.id != p.id)
            .map(|o| o.id.clone())
            .collect();
        for id in clash {
            policy_delete(&mut next, index, &id)?;
        }
        policy_set(&mut next, index, p)?;
    }
    for r in &batch.roles {
        let clash: Vec<String> = next
            .roles
            .values()
            .filter(|o| o.name == r.name && o.id != r.id)
            .map(|o| o.id.clone())
            .collect();
        for id in clash {
            role_delete(&mut next, index, &id)?;
        }
        let mut r = r.clone();
        r.policies = existing(&next, r.policies, false);
        role_set(&mut next, index, &r)?;
    }
    for t in &batch.tokens {
        if t.local {
            return Err(format!(
                "Local token {} cannot be replicated",
                t.accessor_id
            ));
        }
        // The secret taken by another token, or this token with another secret: the
        // primary's record replaces it.
        let stale: Vec<String> = next
            .secrets
            .get(&t.secret_id)
            .filter(|acc| **acc != t.accessor_id)
            .cloned()
            .into_iter()
            .chain(
                next.tokens
                    .get(&t.accessor_id)
                    .filter(|old| old.secret_id != t.secret_id)
                    .map(|old| old.accessor_id.clone()),
            )
            .collect();
        for accessor in stale {
            if let Some(old) = next.tokens.remove(&accessor) {
                next.secrets.remove(&old.secret_id);
            }
        }
        let mut t = t.clone();
        t.policies = existing(&next, t.policies, false);
        t.roles = existing(&next, t.roles, true);
        token_set(&mut next, index, &t)?;
    }
    *acl = next;
    Ok(())
}

/// The links whose policy (or role) exists here.
fn existing(acl: &AclTables, links: Vec<Link>, roles: bool) -> Vec<Link> {
    links
        .into_iter()
        .filter(|l| {
            if roles {
                acl.roles.contains_key(&l.id)
            } else {
                acl.policies.contains_key(&l.id)
            }
        })
        .collect()
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use crate::fsm::apply as fsm_apply;
    use crate::state::{Store, WatchKey};
    use registry_proto::acl::{AclCommand, AclReplicationBatch, Link, Policy, Token};
    use registry_proto::{Command, CommandResponse};

    fn run(store: &Store, index: u64, b: AclReplicationBatch) -> CommandResponse {
        fsm_apply(
            store,
            index,
            &Command::Acl(AclCommand::Replicate(Box::new(b))),
        )
    }

    fn token(acc: &str, secret: &str, local: bool, policy: &str) -> Token {
        Token {
            accessor_id: acc.into(),
            secret_id: secret.into(),
            local,
            policies: vec![Link {
                id: policy.into(),
                name: String::new(),
            }],
            ..Token::default()
        }
    }

    #[test]
    fn a_round_applies_whole_and_keeps_local_tokens() {
        let store = Store::default();
        fsm_apply(&store, 1, &Command::Acl(AclCommand::Init));
        // A local token of this datacenter, and a stale local policy with the primary's name.
        let stale = Policy {
            id: "old".into(),
            name: "web".into(),
            ..Policy::default()
        };
        fsm_apply(&store, 2, &Command::Acl(AclCommand::PolicySet(stale)));
        let local = token("l1", "ls", true, "old");
        fsm_apply(&store, 3, &Command::Acl(AclCommand::TokenSet(local)));
        let p = Policy {
            id: "p1".into(),
            name: "web".into(),
            rules: "key_prefix \"\" { policy = \"read\" }".into(),
            ..Policy::default()
        };
        let mut watch = store.watch(&[WatchKey::Acl]);
        let b = AclReplicationBatch {
            policies: vec![p],
            tokens: vec![token("g1", "gs", false, "p1")],
            ..AclReplicationBatch::default()
        };
        assert_eq!(run(&store, 4, b), CommandResponse::Ok);
        assert!(futures::FutureExt::now_or_never(watch.changed()).is_some());
        {
            let db = store.read();
            assert_eq!(db.acl.policy_by_name("web").unwrap().id, "p1");
            assert_eq!(db.acl.token_by_secret("gs").unwrap().policies[0].id, "p1");
            // The local token stays, without the link to the deleted policy.
            assert!(db.acl.token_by_secret("ls").unwrap().policies.is_empty());
        }
        // Deleting the global token and (by mistake) the local one: only the global goes.
        let b = AclReplicationBatch {
            token_deletes: vec!["g1".into(), "l1".into()],
            ..AclReplicationBatch::default()
        };
        assert_eq!(run(&store, 5, b), CommandResponse::Ok);
        let db = store.read();
        assert!(db.acl.token_by_secret("gs").is_none());
        assert!(db.acl.token_by_secret("ls").is_some());
        drop(db);
        // A batch carrying a local token is refused, and nothing of it applies.
        let b = AclReplicationBatch {
            policy_deletes: vec!["p1".into()],
            tokens: vec![token("l2", "l2s", true, "p1")],
            ..AclReplicationBatch::default()
        };
        assert!(matches!(run(&store, 6, b), CommandResponse::Rejected(_)));
        assert!(store.read().acl.policies.contains_key("p1"));
    }
}
