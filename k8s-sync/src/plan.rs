//! The diff at the heart of the level-triggered reconcile: what the catalog should hold on
//! k8s-sync's node (the desired instances) against what it holds there under k8s-sync's own
//! tag, as a list of writes. Pure; the loop in [`crate::to_consul`] feeds it and applies it.

use std::collections::{BTreeMap, HashSet};

use crate::registry::{CatalogService, NodeState, Op};
use crate::translate::{Instance, CHECK_CRITICAL_OUTPUT, CHECK_PASSING_OUTPUT};

/// Whether the catalog's copy of an instance matches the desired one.
pub fn service_matches(want: &Instance, have: &CatalogService) -> bool {
    let empty = BTreeMap::new();
    let weight_ok = match (want.weight, &have.weights) {
        (Some(w), Some(h)) => h.passing == w,
        (Some(_), None) => false,
        (None, Some(h)) => h.passing == 1,
        (None, None) => true,
    };
    have.service == want.service
        && have.address == want.address
        && have.port == want.port
        && have.tags.as_deref().unwrap_or_default() == want.tags.as_slice()
        && have.meta.as_ref().unwrap_or(&empty) == &want.meta
        && weight_ok
}

/// Whether the catalog's copy of an instance's readiness check matches the desired one.
pub fn check_matches(want: &Instance, state: &NodeState) -> bool {
    let Some(c) = &want.check else {
        return true;
    };
    let (status, output) = if c.passing {
        ("passing", CHECK_PASSING_OUTPUT)
    } else {
        ("critical", CHECK_CRITICAL_OUTPUT)
    };
    state
        .checks
        .get(&c.id)
        .is_some_and(|h| h.status == status && h.output == output && h.service_id == want.id)
}

/// The deletions that end a full pass: every instance the catalog holds on our node under
/// `tag` that no Service produced (`wanted`: every instance ID the Services translate to).
/// Only the loop's full pass calls it, and only after every watched kind finished its initial
/// list, so nothing valid is deregistered at startup; an entry without `tag` is never touched.
pub fn orphans(have: &NodeState, wanted: &HashSet<&str>, tag: &str) -> Vec<Op> {
    have.services
        .values()
        .filter(|s| carries(s, tag) && !wanted.contains(s.id.as_str()))
        .map(|s| Op::Delete(s.id.clone()))
        .collect()
}

fn carries(s: &CatalogService, tag: &str) -> bool {
    s.tags
        .as_deref()
        .unwrap_or_default()
        .iter()
        .any(|t| t == tag)
}

/// The writes that bring one Service's instances in the catalog from `before` (what this
/// Service translated to last time) to `want` (what it translates to now), without looking
/// at any other Service: the incremental path of the reconcile. An instance of `before` that
/// is no longer wanted is deleted only when the catalog holds it under `tag`.
pub fn plan_service<'a>(
    want: impl IntoIterator<Item = &'a Instance>,
    before: impl IntoIterator<Item = &'a str>,
    have: &NodeState,
    tag: &str,
) -> Vec<Op> {
    let mut ops = Vec::new();
    let mut wanted = std::collections::BTreeSet::new();
    for inst in want {
        wanted.insert(inst.id.as_str());
        if !have.node_ok && ops.is_empty() {
            ops.push(Op::Node);
        }
        match have.services.get(&inst.id) {
            Some(h) if service_matches(inst, h) => {
                if !check_matches(inst, have) {
                    ops.push(Op::SetCheck(Box::new(inst.clone())));
                }
            }
            _ => ops.push(Op::Set(Box::new(inst.clone()))),
        }
    }
    for id in before {
        if wanted.contains(id) {
            continue;
        }
        if have.services.get(id).is_some_and(|s| carries(s, tag)) {
            ops.push(Op::Delete(id.to_string()));
        }
    }
    ops
}

/// The node state after `ops` were applied to `state` successfully.
pub fn apply_to(state: &mut NodeState, ops: &[Op]) {
    use crate::registry::{CatalogCheck, Weights};
    for op in ops {
        match op {
            Op::Node => state.node_ok = true,
            Op::Set(i) | Op::SetCheck(i) => {
                if matches!(op, Op::Set(_)) {
                    state.services.insert(
                        i.id.clone(),
                        CatalogService {
                            id: i.id.clone(),
                            service: i.service.clone(),
                            tags: Some(i.tags.clone()),
                            meta: Some(i.meta.clone()),
                            port: i.port,
                            address: i.address.clone(),
                            weights: Some(Weights {
                                passing: i.weight.unwrap_or(1),
                                warning: 1,
                            }),
                        },
                    );
                }
                if let Some(c) = &i.check {
                    let (status, output) = if c.passing {
                        ("passing", CHECK_PASSING_OUTPUT)
                    } else {
                        ("critical", CHECK_CRITICAL_OUTPUT)
                    };
                    state.checks.insert(
                        c.id.clone(),
                        CatalogCheck {
                            check_id: c.id.clone(),
                            status: status.into(),
                            output: output.into(),
                            service_id: i.id.clone(),
                        },
                    );
                }
            }
            Op::Delete(id) => {
                state.services.remove(id);
                state.checks.retain(|_, c| &c.service_id != id);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use crate::registry::batches;
    use crate::translate::ReadinessCheck;

    fn inst(id: &str, addr: &str, passing: bool) -> Instance {
        Instance {
            id: id.into(),
            service: "web".into(),
            address: addr.into(),
            port: 80,
            tags: vec!["k8s".into()],
            meta: [("external-source".to_string(), "kubernetes".to_string())].into(),
            weight: None,
            check: Some(ReadinessCheck {
                id: format!("default/{id}"),
                passing,
            }),
        }
    }

    /// A whole-node diff as the loop's full pass makes it: every Service's instances, then
    /// (once removals are allowed) the orphans.
    fn plan(
        want: &BTreeMap<String, Instance>,
        have: &NodeState,
        tag: &str,
        removals: bool,
    ) -> Vec<Op> {
        let mut ops = plan_service(want.values(), [], have, tag);
        if removals {
            let ids: HashSet<&str> = want.keys().map(String::as_str).collect();
            ops.extend(orphans(have, &ids, tag));
        }
        ops
    }

    fn want(list: &[Instance]) -> BTreeMap<String, Instance> {
        list.iter().map(|i| (i.id.clone(), i.clone())).collect()
    }

    #[test]
    fn converges_and_is_idempotent() {
        let w = want(&[inst("a", "1.1.1.1", true), inst("b", "2.2.2.2", false)]);
        let mut st = NodeState::default();
        let ops = plan(&w, &st, "k8s", true);
        assert_eq!(ops.len(), 3);
        assert_eq!(ops[0], Op::Node);
        apply_to(&mut st, &ops);
        assert!(plan(&w, &st, "k8s", true).is_empty());
        // Readiness flips: only the check is written.
        let w2 = want(&[inst("a", "1.1.1.1", true), inst("b", "2.2.2.2", true)]);
        let ops = plan(&w2, &st, "k8s", true);
        assert!(matches!(ops.as_slice(), [Op::SetCheck(i)] if i.id == "b"));
        // An address change rewrites the instance.
        let w3 = want(&[inst("a", "1.1.1.9", true), inst("b", "2.2.2.2", false)]);
        assert!(matches!(plan(&w3, &st, "k8s", true).as_slice(), [Op::Set(i)] if i.id == "a"));
    }

    #[test]
    fn no_reaping_until_initial_sync_and_never_foreign_tags() {
        let mut st = NodeState::default();
        apply_to(
            &mut st,
            &[Op::Node, Op::Set(Box::new(inst("a", "1.1.1.1", true)))],
        );
        let mut foreign = inst("z", "9.9.9.9", true);
        foreign.tags = vec!["other".into()];
        apply_to(&mut st, &[Op::Set(Box::new(foreign))]);
        assert!(plan(&BTreeMap::new(), &st, "k8s", false).is_empty());
        assert_eq!(
            plan(&BTreeMap::new(), &st, "k8s", true),
            vec![Op::Delete("a".into())]
        );
    }

    #[test]
    fn per_service_plan_writes_only_that_services_changes() {
        let mut st = NodeState::default();
        let full = want(&[inst("a", "1.1.1.1", true), inst("b", "2.2.2.2", true)]);
        let ops = plan(&full, &st, "k8s", true);
        apply_to(&mut st, &ops);
        // Unchanged: nothing.
        let now = [inst("a", "1.1.1.1", true)];
        assert!(plan_service(&now, ["a"], &st, "k8s").is_empty());
        // Readiness flip of a: only its check; b (another Service) is never looked at.
        let flip = [inst("a", "1.1.1.1", false)];
        assert!(matches!(plan_service(&flip, ["a"], &st, "k8s").as_slice(),
            [Op::SetCheck(i)] if i.id == "a"));
        // a replaced by c: c written, a deleted.
        let ops = plan_service(&[inst("c", "3.3.3.3", true)], ["a"], &st, "k8s");
        assert!(matches!(ops.as_slice(), [Op::Set(i), Op::Delete(d)] if i.id == "c" && d == "a"));
        // A previous instance the catalog holds under another tag is left alone.
        let mut foreign = inst("z", "9.9.9.9", true);
        foreign.tags = vec!["other".into()];
        apply_to(&mut st, &[Op::Set(Box::new(foreign))]);
        assert!(plan_service(&[], ["z"], &st, "k8s").is_empty());
        // On an empty node the node is registered first.
        let ops = plan_service(&now, [], &NodeState::default(), "k8s");
        assert!(matches!(ops.as_slice(), [Op::Node, Op::Set(_)]));
    }

    #[test]
    fn batches_respect_the_txn_limit() {
        let ops: Vec<Op> = (0..100)
            .map(|i| Op::Set(Box::new(inst(&i.to_string(), "1.1.1.1", true))))
            .collect();
        let b = batches(ops);
        assert_eq!(
            b.iter().map(Vec::len).collect::<Vec<_>>(),
            vec![32, 32, 32, 4]
        );
        assert!(b
            .iter()
            .all(|b| b.iter().map(Op::weight).sum::<usize>() <= 64));
    }
}
