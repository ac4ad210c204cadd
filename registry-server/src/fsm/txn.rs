//! Transactions (`PUT /v1/txn`): KV, node, service and check operations applied as one log
//! entry, all or nothing.
//!
//! Every operation runs in order against the state left by the ones before it; each failure
//! is recorded with its position (later operations still run, as in Consul, so that all
//! errors are reported). If any failed, everything is rolled back: the entries each
//! operation was about to change are saved before it runs and restored in reverse
//! ([`Undo`](super::txn_undo::Undo)); only a transaction whose catalog writes could cascade
//! further (a node deletion, a node with sessions) restores a copy of the whole state taken
//! up front instead. Watch notifications and lock-delays of a rolled back transaction are
//! dropped.
//!
//! Reads are shared with the read-only fast path, which runs them against a read view
//! without Raft ([`read_only`]).

use super::txn_undo::Undo;
use super::{catalog, kv, session};
use crate::state::{Db, WriteTxn};
use bytes::Bytes;
use registry_proto::command::{
    CatalogVerb, DeregisterRequest, KvVerb, RegisterRequest, TxnError, TxnOp, TxnResponse,
    TxnResult,
};
use registry_proto::model::DirEntry;
use registry_proto::CommandResponse;

/// Consul's per-request operation limit.
pub const MAX_TXN_OPS: usize = 64;

/// Applies a transaction atomically; always answers [`CommandResponse::Txn`].
pub(super) fn apply(txn: &mut WriteTxn<'_>, ops: &[TxnOp]) -> CommandResponse {
    let cp = txn.checkpoint();
    let table_index = txn.db.table_index.clone();
    let writes_catalog = ops
        .iter()
        .any(|o| o.is_write() && !matches!(o, TxnOp::Kv { .. }));
    let whole = (writes_catalog && !Undo::can_save_catalog(txn.db, ops)).then(|| txn.db.clone());
    let mut undo = Undo::default();
    let mut results = Vec::new();
    let mut errors = Vec::new();
    for (i, op) in ops.iter().enumerate() {
        match run(txn, op, &mut undo) {
            Ok(r) => results.extend(r),
            Err(what) => errors.push(TxnError {
                op_index: u32::try_from(i).unwrap_or(u32::MAX),
                what,
            }),
        }
    }
    if errors.is_empty() {
        return CommandResponse::Txn(TxnResponse { results, errors });
    }
    match whole {
        Some(db) => *txn.db = db,
        None => {
            undo.restore(txn.db);
            txn.db.table_index = table_index;
        }
    }
    txn.rollback(cp);
    CommandResponse::Txn(TxnResponse {
        results: Vec::new(),
        errors,
    })
}

/// Runs read-only operations against a read view (the fast path that bypasses Raft).
pub fn read_only(db: &Db, ops: &[TxnOp]) -> TxnResponse {
    let mut results = Vec::new();
    let mut errors = Vec::new();
    for (i, op) in ops.iter().enumerate() {
        let r = read(db, op).unwrap_or_else(|| Err("operation is not a read".to_string()));
        match r {
            Ok(r) => results.extend(r),
            Err(what) => errors.push(TxnError {
                op_index: u32::try_from(i).unwrap_or(u32::MAX),
                what,
            }),
        }
    }
    if errors.is_empty() {
        TxnResponse { results, errors }
    } else {
        TxnResponse {
            results: Vec::new(),
            errors,
        }
    }
}

fn blank(e: &DirEntry) -> TxnResult {
    TxnResult::Kv(DirEntry {
        value: Bytes::new(),
        ..e.clone()
    })
}

fn kv_result(db: &Db, key: &str) -> Vec<TxnResult> {
    db.kvs.get(key).map(|e| blank(e)).into_iter().collect()
}

type OpResult = Result<Vec<TxnResult>, String>;

/// Evaluates a read operation; `None` for writes.
fn read(db: &Db, op: &TxnOp) -> Option<OpResult> {
    Some(match op {
        TxnOp::Kv { verb, entry, index } => {
            let key = &entry.key;
            if key.is_empty() && *verb != KvVerb::DeleteTree {
                return Some(Err("Must provide key".to_string()));
            }
            match verb {
                KvVerb::Get => match db.kvs.get(key) {
                    Some(e) => Ok(vec![TxnResult::Kv((**e).clone())]),
                    None => Err(format!("key {key:?} doesn't exist")),
                },
                KvVerb::GetOrEmpty => match db.kvs.get(key) {
                    Some(e) => Ok(vec![TxnResult::Kv((**e).clone())]),
                    None => {
                        let mut e = entry.clone();
                        e.value.clear();
                        e.index.modify_index = *index;
                        Ok(vec![TxnResult::Kv(e)])
                    }
                },
                KvVerb::GetTree => Ok(db
                    .kv_prefix(key)
                    .map(|e| TxnResult::Kv(e.clone()))
                    .collect()),
                KvVerb::CheckIndex => match db.kvs.get(key) {
                    None => Err(format!("failed to check index, key {key:?} doesn't exist")),
                    Some(e) if e.index.modify_index != *index => Err(format!(
                        "failed index check for key {key:?}, current modify index {} != {index}",
                        e.index.modify_index
                    )),
                    Some(e) => Ok(vec![blank(e)]),
                },
                KvVerb::CheckSession => match db.kvs.get(key) {
                    None => Err(format!(
                        "failed to check session, key {key:?} doesn't exist"
                    )),
                    Some(e) if e.session != entry.session => Err(format!(
                        "failed session check for key {key:?}, current session {:?} != {:?}",
                        e.session, entry.session
                    )),
                    Some(e) => Ok(vec![blank(e)]),
                },
                KvVerb::CheckNotExists => match db.kvs.get(key) {
                    Some(_) => Err(format!("key {key:?} exists")),
                    None => Ok(Vec::new()),
                },
                _ => return None,
            }
        }
        TxnOp::Node {
            verb: CatalogVerb::Get,
            node,
            ..
        } => {
            let found = if node.id.is_empty() {
                db.nodes.get(&node.node)
            } else {
                db.nodes
                    .values()
                    .find(|n| n.id.eq_ignore_ascii_case(&node.id))
            };
            match found {
                Some(n) => Ok(vec![TxnResult::Node(n.clone())]),
                None => Err(format!("node {:?} doesn't exist", node.node)),
            }
        }
        TxnOp::Service {
            verb: CatalogVerb::Get,
            node,
            service,
            ..
        } => match db.services.get(node).and_then(|m| m.get(&service.id)) {
            Some(s) => Ok(vec![TxnResult::Service((**s).clone())]),
            None => Err(format!(
                "service {:?} on node {:?} doesn't exist",
                service.id, node
            )),
        },
        TxnOp::Check {
            verb: CatalogVerb::Get,
            check,
            ..
        } => match db
            .checks
            .get(&check.node)
            .and_then(|m| m.get(&check.check_id))
        {
            Some(c) => Ok(vec![TxnResult::Check((**c).clone())]),
            None => Err(format!(
                "check {:?} on node {:?} doesn't exist",
                check.check_id, check.node
            )),
        },
        _ => return None,
    })
}

fn rejected(r: CommandResponse) -> Result<(), String> {
    match r {
        CommandResponse::Rejected(e) => Err(e),
        _ => Ok(()),
    }
}

/// Registers a service and/or checks on a node that must already exist, leaving the node as
/// it is.
fn register_on_node(
    txn: &mut WriteTxn<'_>,
    node: &str,
    service: Option<registry_proto::model::NodeService>,
    checks: Vec<registry_proto::model::HealthCheck>,
) -> Result<(), String> {
    let Some(n) = txn.db.nodes.get(node).cloned() else {
        return Err("Missing node registration".to_string());
    };
    rejected(catalog::register(
        txn,
        &RegisterRequest {
            node: n,
            skip_node_update: true,
            service,
            checks,
        },
    ))
}

/// Runs one operation inside the write.
fn run(txn: &mut WriteTxn<'_>, op: &TxnOp, undo: &mut Undo) -> OpResult {
    if let Some(r) = read(txn.db, op) {
        return r;
    }
    match op {
        TxnOp::Kv { verb, entry, index } => run_kv(txn, *verb, entry, *index, undo),
        TxnOp::Node { verb, node, index } => {
            let name = &node.node;
            let addrs = Undo::op_addresses(txn.db, op);
            undo.save_node(txn.db, name, None, &addrs);
            let existing = txn.db.nodes.get(name).map(|n| n.index.modify_index);
            match verb {
                CatalogVerb::Cas | CatalogVerb::Set => {
                    if *verb == CatalogVerb::Cas && !cas_ok(existing, *index) {
                        return Err(format!("failed to set node {name:?}, index is stale"));
                    }
                    rejected(catalog::register(
                        txn,
                        &RegisterRequest {
                            node: node.clone(),
                            skip_node_update: false,
                            service: None,
                            checks: Vec::new(),
                        },
                    ))?;
                    Ok(txn
                        .db
                        .nodes
                        .get(name)
                        .map(|n| TxnResult::Node(n.clone()))
                        .into_iter()
                        .collect())
                }
                CatalogVerb::Delete | CatalogVerb::DeleteCas => {
                    if *verb == CatalogVerb::DeleteCas && existing != Some(*index) {
                        return Err(format!("failed to delete node {name:?}, index is stale"));
                    }
                    rejected(catalog::deregister(
                        txn,
                        &DeregisterRequest {
                            node: name.clone(),
                            service_id: None,
                            check_id: None,
                        },
                    ))?;
                    Ok(Vec::new())
                }
                CatalogVerb::Get => Ok(Vec::new()),
            }
        }
        TxnOp::Service {
            verb,
            node,
            service,
            index,
        } => {
            let id = &service.id;
            let addrs = Undo::op_addresses(txn.db, op);
            undo.save_node(txn.db, node, Some(&service.service), &addrs);
            let existing = txn
                .db
                .services
                .get(node)
                .and_then(|m| m.get(id))
                .map(|s| s.index.modify_index);
            match verb {
                CatalogVerb::Cas | CatalogVerb::Set => {
                    if *verb == CatalogVerb::Cas && !cas_ok(existing, *index) {
                        return Err(format!(
                            "failed to set service {id:?} on node {node:?}, index is stale"
                        ));
                    }
                    register_on_node(txn, node, Some(service.clone()), Vec::new())?;
                    Ok(txn
                        .db
                        .services
                        .get(node)
                        .and_then(|m| m.get(id))
                        .map(|s| TxnResult::Service((**s).clone()))
                        .into_iter()
                        .collect())
                }
                CatalogVerb::Delete | CatalogVerb::DeleteCas => {
                    if *verb == CatalogVerb::DeleteCas && existing != Some(*index) {
                        return Err(format!(
                            "failed to delete service {id:?} on node {node:?}, index is stale"
                        ));
                    }
                    rejected(catalog::deregister(
                        txn,
                        &DeregisterRequest {
                            node: node.clone(),
                            service_id: Some(id.clone()),
                            check_id: None,
                        },
                    ))?;
                    Ok(Vec::new())
                }
                CatalogVerb::Get => Ok(Vec::new()),
            }
        }
        TxnOp::Check { verb, check, index } => {
            let (node, id) = (&check.node, &check.check_id);
            undo.save_node(txn.db, node, None, &[]);
            let existing = txn
                .db
                .checks
                .get(node)
                .and_then(|m| m.get(id))
                .map(|c| c.index.modify_index);
            match verb {
                CatalogVerb::Cas | CatalogVerb::Set => {
                    if *verb == CatalogVerb::Cas && !cas_ok(existing, *index) {
                        return Err(format!(
                            "failed to set check {id:?} on node {node:?}, index is stale"
                        ));
                    }
                    register_on_node(txn, node, None, vec![check.clone()])?;
                    Ok(txn
                        .db
                        .checks
                        .get(node)
                        .and_then(|m| m.get(id))
                        .map(|c| TxnResult::Check((**c).clone()))
                        .into_iter()
                        .collect())
                }
                CatalogVerb::Delete | CatalogVerb::DeleteCas => {
                    if *verb == CatalogVerb::DeleteCas && existing != Some(*index) {
                        return Err(format!(
                            "failed to delete check {id:?} on node {node:?}, index is stale"
                        ));
                    }
                    rejected(catalog::deregister(
                        txn,
                        &DeregisterRequest {
                            node: node.clone(),
                            service_id: None,
                            check_id: Some(id.clone()),
                        },
                    ))?;
                    Ok(Vec::new())
                }
                CatalogVerb::Get => Ok(Vec::new()),
            }
        }
    }
}

/// A set-CAS precondition: index 0 means "must not exist", otherwise the modify index.
fn cas_ok(existing: Option<u64>, index: u64) -> bool {
    match (index, existing) {
        (0, None) => true,
        (0, Some(_)) | (_, None) => false,
        (want, Some(have)) => want == have,
    }
}

fn run_kv(
    txn: &mut WriteTxn<'_>,
    verb: KvVerb,
    entry: &DirEntry,
    index: u64,
    undo: &mut Undo,
) -> OpResult {
    let key = entry.key.as_str();
    match verb {
        KvVerb::Set => {
            undo.save_key(txn.db, key);
            kv::set(txn, entry);
            Ok(kv_result(txn.db, key))
        }
        KvVerb::Cas => {
            undo.save_key(txn.db, key);
            match kv::cas(txn, entry, index) {
                CommandResponse::Bool(false) => {
                    Err(format!("failed to set key {key:?}, index is stale"))
                }
                _ => Ok(kv_result(txn.db, key)),
            }
        }
        KvVerb::Lock => {
            undo.save_key(txn.db, key);
            undo.save_session(txn.db, &entry.session);
            match session::try_lock(txn, entry)? {
                true => Ok(kv_result(txn.db, key)),
                false => Err(format!("failed to lock key {key:?}, lock is already held")),
            }
        }
        KvVerb::Unlock => {
            undo.save_key(txn.db, key);
            undo.save_session(txn.db, &entry.session);
            match session::try_unlock(txn, entry)? {
                true => Ok(kv_result(txn.db, key)),
                false => Err(format!(
                    "failed to unlock key {key:?}, lock isn't held, or is held by another session"
                )),
            }
        }
        KvVerb::Delete => {
            undo.save_key(txn.db, key);
            kv::delete(txn, key);
            Ok(Vec::new())
        }
        KvVerb::DeleteCas => {
            undo.save_key(txn.db, key);
            match kv::delete_cas(txn, key, index) {
                CommandResponse::Bool(false) => {
                    Err(format!("failed to delete key {key:?}, index is stale"))
                }
                _ => Ok(Vec::new()),
            }
        }
        KvVerb::DeleteTree => {
            let keys: Vec<String> = txn.db.kv_prefix(key).map(|e| e.key.clone()).collect();
            for k in &keys {
                undo.save_key(txn.db, k);
            }
            kv::delete_tree(txn, key);
            Ok(Vec::new())
        }
        // Reads were answered by `read` before dispatch.
        KvVerb::Get
        | KvVerb::GetOrEmpty
        | KvVerb::GetTree
        | KvVerb::CheckIndex
        | KvVerb::CheckSession
        | KvVerb::CheckNotExists => Ok(Vec::new()),
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::read_only;
    use crate::fsm::session::tests::{entry, Fsm};
    use crate::state::{Table, WatchKey};
    use registry_proto::command::{CatalogVerb, KvVerb, TxnError, TxnOp, TxnResponse, TxnResult};
    use registry_proto::model::{
        status, DirEntry, HealthCheck, Node, NodeService, SessionBehavior,
    };
    use registry_proto::{Command, CommandResponse};

    fn kv(verb: KvVerb, key: &str, value: &str, index: u64) -> TxnOp {
        TxnOp::Kv {
            verb,
            entry: DirEntry {
                key: key.into(),
                value: value.as_bytes().to_vec().into(),
                ..Default::default()
            },
            index,
        }
    }

    fn txn(f: &mut Fsm, ops: Vec<TxnOp>) -> TxnResponse {
        match f.apply(Command::Txn(ops)) {
            CommandResponse::Txn(r) => r,
            other => panic!("expected a txn response, got {other:?}"),
        }
    }

    fn errors(r: &TxnResponse) -> Vec<(u32, &str)> {
        r.errors
            .iter()
            .map(|e| (e.op_index, e.what.as_str()))
            .collect()
    }

    #[test]
    fn kv_ops_apply_together_with_results() {
        let mut f = Fsm::new();
        f.apply(Command::KvSet {
            entry: DirEntry {
                key: "app/old".into(),
                value: b"x".to_vec().into(),
                ..Default::default()
            },
        });
        let old = f.kv("app/old").unwrap().index.modify_index;
        let at = f.next;
        let r = txn(
            &mut f,
            vec![
                kv(KvVerb::Set, "app/a", "1", 0),
                kv(KvVerb::Cas, "app/b", "2", 0),
                kv(KvVerb::CheckIndex, "app/old", "", old),
                kv(KvVerb::Get, "app/a", "", 0),
                kv(KvVerb::CheckNotExists, "app/zzz", "", 0),
                kv(KvVerb::DeleteCas, "app/old", "", old),
                kv(KvVerb::GetTree, "app/", "", 0),
            ],
        );
        assert!(r.errors.is_empty(), "{r:?}");
        let keys: Vec<(&str, usize)> = r
            .results
            .iter()
            .map(|x| match x {
                TxnResult::Kv(e) => (e.key.as_str(), e.value.len()),
                other => panic!("{other:?}"),
            })
            .collect();
        // set and cas blank the value; check-index too; get and get-tree keep it.
        assert_eq!(
            keys,
            vec![
                ("app/a", 0),
                ("app/b", 0),
                ("app/old", 0),
                ("app/a", 1),
                ("app/a", 1),
                ("app/b", 1)
            ]
        );
        let db = f.store.read();
        assert_eq!(db.kvs["app/a"].index.modify_index, at);
        assert_eq!(db.kvs["app/b"].index.create_index, at);
        assert!(!db.kvs.contains_key("app/old"));
    }

    #[test]
    fn a_failed_op_rolls_everything_back() {
        let mut f = Fsm::new();
        f.apply(Command::KvSet {
            entry: DirEntry {
                key: "keep".into(),
                value: b"orig".to_vec().into(),
                ..Default::default()
            },
        });
        f.apply(Command::KvDelete { key: "gone".into() });
        let before = f.store.read().clone();
        let mut w = f.store.watch(&[
            WatchKey::KvKey("keep".into()),
            WatchKey::KvKey("new".into()),
            WatchKey::Table(Table::Kvs),
        ]);
        let r = txn(
            &mut f,
            vec![
                kv(KvVerb::Set, "new", "n", 0),
                kv(KvVerb::Set, "keep", "changed", 0),
                kv(KvVerb::Delete, "keep", "", 0),
                kv(KvVerb::DeleteTree, "", "", 0),
                kv(KvVerb::Cas, "new", "again", 999),
                kv(KvVerb::Get, "missing", "", 0),
                kv(KvVerb::Get, "", "", 0),
            ],
        );
        assert!(r.results.is_empty());
        assert_eq!(
            errors(&r),
            vec![
                (4, "failed to set key \"new\", index is stale"),
                (5, "key \"missing\" doesn't exist"),
                (6, "Must provide key"),
            ]
        );
        let after = f.store.read().clone();
        // Only the applied index moves.
        assert_eq!(after.index, before.index + 1);
        let mut cmp = after.clone();
        cmp.index = before.index;
        assert_eq!(cmp, before);
        assert!(
            futures::FutureExt::now_or_never(w.changed()).is_none(),
            "a rolled back txn wakes no one"
        );
    }

    #[test]
    fn lock_verbs_and_session_checks() {
        let mut f = Fsm::new();
        f.node("n1", &[("serfHealth", status::PASSING, "")]);
        f.session("a", "n1", SessionBehavior::Release);
        f.session("b", "n1", SessionBehavior::Release);
        let lock = |verb, session: &str| TxnOp::Kv {
            verb,
            entry: entry("lk", session, "v"),
            index: 0,
        };
        let r = txn(
            &mut f,
            vec![lock(KvVerb::Lock, "a"), lock(KvVerb::CheckSession, "a")],
        );
        assert!(r.errors.is_empty(), "{r:?}");
        assert_eq!(f.kv("lk").unwrap().lock_index, 1);
        let r = txn(
            &mut f,
            vec![
                lock(KvVerb::Lock, "b"),
                lock(KvVerb::Unlock, "b"),
                lock(KvVerb::CheckSession, "b"),
                lock(KvVerb::Lock, "nope"),
            ],
        );
        assert_eq!(
            errors(&r),
            vec![
                (0, "failed to lock key \"lk\", lock is already held"),
                (
                    1,
                    "failed to unlock key \"lk\", lock isn't held, or is held by another session"
                ),
                (
                    2,
                    "failed session check for key \"lk\", current session \"a\" != \"b\""
                ),
                (3, "invalid session \"nope\""),
            ]
        );
        // A lock then a failing op: the lock is undone, including the session's key index.
        let r = txn(
            &mut f,
            vec![
                lock(KvVerb::Unlock, "a"),
                lock(KvVerb::Lock, "b"),
                kv(KvVerb::CheckIndex, "lk", "", 1),
            ],
        );
        assert_eq!(r.errors.len(), 1);
        let e = f.kv("lk").unwrap();
        assert_eq!((e.session.as_str(), e.lock_index), ("a", 1));
        let db = f.store.read();
        assert!(!db.session_locks.contains_key("b"));
        assert!(db.session_locks["a"].contains("lk"));
    }

    #[test]
    fn catalog_ops_and_rollback() {
        let mut f = Fsm::new();
        let node = Node {
            node: "ext".into(),
            address: "10.1.1.1".into(),
            ..Default::default()
        };
        let svc = NodeService {
            id: "db1".into(),
            service: "db".into(),
            port: 5432,
            ..Default::default()
        };
        let check = HealthCheck {
            node: "ext".into(),
            check_id: "db-alive".into(),
            name: "db alive".into(),
            status: status::PASSING.into(),
            service_id: "db1".into(),
            ..Default::default()
        };
        let r = txn(
            &mut f,
            vec![
                TxnOp::Node {
                    verb: CatalogVerb::Set,
                    node: node.clone(),
                    index: 0,
                },
                TxnOp::Service {
                    verb: CatalogVerb::Set,
                    node: "ext".into(),
                    service: svc.clone(),
                    index: 0,
                },
                TxnOp::Check {
                    verb: CatalogVerb::Set,
                    check: check.clone(),
                    index: 0,
                },
                TxnOp::Service {
                    verb: CatalogVerb::Get,
                    node: "ext".into(),
                    service: svc.clone(),
                    index: 0,
                },
            ],
        );
        assert!(r.errors.is_empty(), "{r:?}");
        assert!(matches!(&r.results[0], TxnResult::Node(n) if n.node == "ext"));
        assert!(matches!(&r.results[1], TxnResult::Service(s) if s.port == 5432));
        assert!(matches!(&r.results[2], TxnResult::Check(c) if c.service_name == "db"));
        assert_eq!(r.results.len(), 4);
        let node_index = f.store.read().nodes["ext"].index.modify_index;

        // A node delete followed by a failing op leaves the catalog as it was.
        let before = f.store.read().clone();
        let r = txn(
            &mut f,
            vec![
                TxnOp::Node {
                    verb: CatalogVerb::Delete,
                    node: node.clone(),
                    index: 0,
                },
                TxnOp::Node {
                    verb: CatalogVerb::Cas,
                    node: node.clone(),
                    index: node_index + 100,
                },
            ],
        );
        assert_eq!(
            r.errors,
            vec![TxnError {
                op_index: 1,
                what: "failed to set node \"ext\", index is stale".into()
            }]
        );
        let mut after = f.store.read().clone();
        after.index = before.index;
        assert_eq!(after, before);

        let r = txn(
            &mut f,
            vec![
                TxnOp::Service {
                    verb: CatalogVerb::Set,
                    node: "nowhere".into(),
                    service: svc.clone(),
                    index: 0,
                },
                TxnOp::Check {
                    verb: CatalogVerb::DeleteCas,
                    check: check.clone(),
                    index: 999,
                },
                TxnOp::Node {
                    verb: CatalogVerb::Get,
                    node: Node {
                        node: "nowhere".into(),
                        ..Default::default()
                    },
                    index: 0,
                },
            ],
        );
        assert_eq!(
            errors(&r),
            vec![
                (0, "Missing node registration"),
                (
                    1,
                    "failed to delete check \"db-alive\" on node \"ext\", index is stale"
                ),
                (2, "node \"nowhere\" doesn't exist"),
            ]
        );
        let r = txn(
            &mut f,
            vec![TxnOp::Node {
                verb: CatalogVerb::DeleteCas,
                node: node.clone(),
                index: node_index,
            }],
        );
        assert!(r.errors.is_empty(), "{r:?}");
        assert!(f.store.read().nodes.is_empty());
        assert!(f.store.read().services.is_empty());
    }

    #[test]
    fn read_only_fast_path_matches() {
        let mut f = Fsm::new();
        txn(&mut f, vec![kv(KvVerb::Set, "r/a", "1", 0)]);
        let ops = vec![
            kv(KvVerb::Get, "r/a", "", 0),
            kv(KvVerb::GetOrEmpty, "r/b", "", 0),
            kv(KvVerb::GetTree, "r/", "", 0),
        ];
        let ro = read_only(&f.store.read(), &ops);
        assert!(ro.errors.is_empty());
        assert_eq!(ro.results.len(), 3);
        assert!(matches!(&ro.results[1], TxnResult::Kv(e) if e.key == "r/b" && e.value.is_empty()));
        let ro = read_only(&f.store.read(), &[kv(KvVerb::Get, "r/zz", "", 0)]);
        assert!(ro.results.is_empty());
        assert_eq!(ro.errors[0].what, "key \"r/zz\" doesn't exist");
    }
}
