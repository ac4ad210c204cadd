//! What a failed transaction needs to put back: the prior state of exactly the entries its
//! operations were about to change, saved before each one, restored in reverse.
//!
//! KV operations save the key (entry and tombstone) and, for lock operations, the session's
//! held keys. Catalog operations save what a registration or deregistration on one node can
//! change: the node record, its per-node service and check maps (copy-on-write, so saving
//! one is a reference-count bump), its node index, and for every service name on the node
//! (and the one being registered) the name's instance set and index, and the address-index
//! entries of the addresses involved (the node's, and the new or old address the operation
//! names: [`Undo::op_addresses`]). That is all such an
//! operation reaches unless sessions are bound to the node (a critical or removed check
//! invalidates them, which releases KV locks) or the whole node is deleted (which also
//! forgets its prepared-query and coordinate entries): [`Undo::can_save_catalog`] says no
//! then, and the transaction falls back to a copy of the whole state.
//!
//! Saving per entry keeps a catalog transaction's cost proportional to what it writes. A
//! copy of the whole state taken up front is cheap to take but not to write into: every
//! table the transaction then changes is copied in full (its keys and pointers), so each
//! transaction cost time in proportion to the catalog's size.

use crate::state::{parse_ip, AddrRefs, Db, InstanceRefs, NodeChecks, NodeServices, Shared};
use registry_proto::command::{CatalogVerb, TxnOp};
use registry_proto::model::{DirEntry, Node};
use std::collections::BTreeSet;
use std::net::IpAddr;

/// A KV key's prior entry and tombstone.
type SavedKey = (String, Option<Shared<DirEntry>>, Option<u64>);

/// A service name's prior instance set and index.
type SavedName = (String, Option<Shared<InstanceRefs>>, Option<u64>);

/// An address's prior entry in the address index.
type SavedAddr = (IpAddr, Option<Shared<AddrRefs>>);

/// One node's prior catalog entries.
struct SavedNode {
    node: String,
    record: Option<Node>,
    services: Option<Shared<NodeServices>>,
    checks: Option<Shared<NodeChecks>>,
    node_index: Option<u64>,
    names: Vec<SavedName>,
    addrs: Vec<SavedAddr>,
}

/// One saved entry, in the order saved.
enum Saved {
    Key(SavedKey),
    Locks(String, Option<BTreeSet<String>>),
    Node(Box<SavedNode>),
}

/// Prior states saved before writes, restored in reverse on rollback.
#[derive(Default)]
pub(super) struct Undo {
    saved: Vec<Saved>,
}

/// Puts `value` back under `key` in a shared map, or removes the key if it had none.
fn put_back<K: Ord + Clone, V: Clone>(
    map: &mut Shared<std::collections::BTreeMap<K, V>>,
    key: K,
    value: Option<V>,
) {
    match value {
        Some(v) => {
            map.insert(key, v);
        }
        None => {
            map.remove(&key);
        }
    }
}

impl Undo {
    /// Whether every catalog write in `ops` can be undone from per-node saves (otherwise
    /// the caller copies the whole state first).
    pub(super) fn can_save_catalog(db: &Db, ops: &[TxnOp]) -> bool {
        ops.iter().all(|op| {
            let node = match op {
                TxnOp::Kv { .. } => return true,
                _ if !op.is_write() => return true,
                TxnOp::Node {
                    verb: CatalogVerb::Delete | CatalogVerb::DeleteCas,
                    ..
                } => return false,
                TxnOp::Node { node, .. } => &node.node,
                TxnOp::Service { node, .. } => node,
                TxnOp::Check { check, .. } => &check.node,
            };
            !db.sessions_by_node.contains_key(node.as_str())
        })
    }

    /// The addresses a catalog operation can move address-index entries from or to,
    /// besides its node's current one: the node's new address (a node write), or the
    /// instance's current and new ones (a service write). A node's new address moves the
    /// node's instances at its old and new addresses only.
    pub(super) fn op_addresses<'a>(db: &'a Db, op: &'a TxnOp) -> Vec<&'a str> {
        match op {
            TxnOp::Node { node, .. } => vec![node.address.as_str()],
            TxnOp::Service { node, service, .. } => {
                let mut out = vec![service.address.as_str()];
                if let Some(s) = db.services.get(node).and_then(|m| m.get(&service.id)) {
                    out.push(s.address.as_str());
                }
                out
            }
            TxnOp::Check { .. } | TxnOp::Kv { .. } => Vec::new(),
        }
    }

    /// Saves a KV key before it is written.
    pub(super) fn save_key(&mut self, db: &Db, key: &str) {
        self.saved.push(Saved::Key((
            key.to_string(),
            db.kvs.get(key).cloned(),
            db.kv_tombstones.get(key).copied(),
        )));
    }

    /// Saves a session's held keys before a lock operation changes them.
    pub(super) fn save_session(&mut self, db: &Db, session: &str) {
        self.saved.push(Saved::Locks(
            session.to_string(),
            db.session_locks.get(session).cloned(),
        ));
    }

    /// Saves what a catalog operation on `node` can change; `extra_name` is the service
    /// name being registered, if any, and `addrs` the addresses the operation may move
    /// entries of the address index from or to, besides the node's own (see
    /// [`Undo::op_addresses`]).
    pub(super) fn save_node(
        &mut self,
        db: &Db,
        node: &str,
        extra_name: Option<&str>,
        addrs: &[&str],
    ) {
        let mut names: BTreeSet<&str> =
            db.node_services(node).map(|s| s.service.as_str()).collect();
        // Checks carry their service's name; a name no instance carries any more is harmless.
        for c in db.node_checks(node) {
            if !c.service_name.is_empty() {
                names.insert(c.service_name.as_str());
            }
        }
        if let Some(n) = extra_name {
            names.insert(n);
        }
        let names = names
            .into_iter()
            .map(|n| {
                (
                    n.to_string(),
                    db.services_by_name.get(n).cloned(),
                    db.service_index.get(n).copied(),
                )
            })
            .collect();
        let record = db.nodes.get(node).cloned();
        let mut ips: BTreeSet<IpAddr> = addrs.iter().filter_map(|a| parse_ip(a)).collect();
        ips.extend(record.as_ref().and_then(|n| parse_ip(&n.address)));
        let addrs = ips
            .into_iter()
            .map(|ip| (ip, db.addresses.get(&ip).cloned()))
            .collect();
        self.saved.push(Saved::Node(Box::new(SavedNode {
            node: node.to_string(),
            record,
            services: db.services.get(node).cloned(),
            checks: db.checks.get(node).cloned(),
            node_index: db.node_index.get(node).copied(),
            names,
            addrs,
        })));
    }

    /// Puts everything saved back, newest first.
    pub(super) fn restore(self, db: &mut Db) {
        for s in self.saved.into_iter().rev() {
            match s {
                Saved::Key((key, entry, tomb)) => {
                    put_back(&mut db.kvs, key.clone(), entry);
                    put_back(&mut db.kv_tombstones, key, tomb);
                }
                Saved::Locks(session, keys) => put_back(&mut db.session_locks, session, keys),
                Saved::Node(n) => {
                    let n = *n;
                    for (name, set, index) in n.names {
                        put_back(&mut db.services_by_name, name.clone(), set);
                        put_back(&mut db.service_index, name, index);
                    }
                    for (ip, refs) in n.addrs {
                        put_back(&mut db.addresses, ip, refs);
                    }
                    put_back(&mut db.nodes, n.node.clone(), n.record);
                    put_back(&mut db.services, n.node.clone(), n.services);
                    put_back(&mut db.checks, n.node.clone(), n.checks);
                    put_back(&mut db.node_index, n.node, n.node_index);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::Undo;
    use crate::fsm::session::tests::Fsm;
    use registry_proto::command::{CatalogVerb, TxnOp};
    use registry_proto::model::{status, HealthCheck, Node, NodeService, SessionBehavior};
    use registry_proto::{Command, CommandResponse};

    fn node(name: &str, addr: &str) -> TxnOp {
        TxnOp::Node {
            verb: CatalogVerb::Set,
            node: Node {
                node: name.into(),
                address: addr.into(),
                ..Default::default()
            },
            index: 0,
        }
    }

    fn service(verb: CatalogVerb, node: &str, id: &str, name: &str, port: u16) -> TxnOp {
        TxnOp::Service {
            verb,
            node: node.into(),
            service: NodeService {
                id: id.into(),
                service: name.into(),
                port,
                ..Default::default()
            },
            index: 0,
        }
    }

    fn check(node: &str, id: &str, service_id: &str, st: &str) -> TxnOp {
        TxnOp::Check {
            verb: CatalogVerb::Set,
            check: HealthCheck {
                node: node.into(),
                check_id: id.into(),
                name: id.into(),
                status: st.into(),
                service_id: service_id.into(),
                ..Default::default()
            },
            index: 0,
        }
    }

    fn apply(f: &mut Fsm, ops: Vec<TxnOp>) -> usize {
        match f.apply(Command::Txn(ops)) {
            CommandResponse::Txn(r) => r.errors.len(),
            other => panic!("expected a txn response, got {other:?}"),
        }
    }

    #[test]
    fn node_local_catalog_writes_roll_back_from_per_node_saves() {
        let mut f = Fsm::new();
        let setup = vec![
            node("a", "10.0.0.1"),
            service(CatalogVerb::Set, "a", "web-1", "web", 80),
            service(CatalogVerb::Set, "a", "db-1", "db", 5432),
            check("a", "db-alive", "db-1", status::PASSING),
            check("a", "node-ok", "", status::PASSING),
            node("b", "10.0.0.2"),
            service(CatalogVerb::Set, "b", "web-2", "web", 80),
        ];
        assert_eq!(apply(&mut f, setup), 0);
        let before = f.store.read().clone();
        // Changes to an existing node (address, a renamed instance, a removed one, a check
        // turning critical), a new node with an instance, then a failing operation.
        let ops = vec![
            node("a", "10.9.9.9"),
            service(CatalogVerb::Set, "a", "db-1", "cache", 6379),
            service(CatalogVerb::Delete, "a", "web-1", "web", 0),
            check("a", "db-alive", "db-1", status::CRITICAL),
            check("a", "node-ok", "", status::WARNING),
            node("c", "10.0.0.3"),
            service(CatalogVerb::Set, "c", "web-3", "web", 81),
            TxnOp::Node {
                verb: CatalogVerb::Cas,
                node: Node {
                    node: "b".into(),
                    address: "10.0.0.2".into(),
                    ..Default::default()
                },
                index: 999_999,
            },
        ];
        assert!(Undo::can_save_catalog(&f.store.read(), &ops));
        assert_eq!(apply(&mut f, ops), 1);
        let mut after = f.store.read().clone();
        after.index = before.index;
        assert_eq!(after, before);
    }

    #[test]
    fn cascading_writes_fall_back_to_a_whole_copy() {
        let mut f = Fsm::new();
        f.node("n1", &[("serfHealth", status::PASSING, "")]);
        f.node("n2", &[("serfHealth", status::PASSING, "")]);
        let db = f.store.read().clone();
        let delete = TxnOp::Node {
            verb: CatalogVerb::Delete,
            node: Node {
                node: "n1".into(),
                ..Default::default()
            },
            index: 0,
        };
        assert!(!Undo::can_save_catalog(&db, &[delete]));
        assert!(Undo::can_save_catalog(
            &db,
            &[check("n1", "serfHealth", "", status::CRITICAL)]
        ));
        f.session("s1", "n1", SessionBehavior::Release);
        let db = f.store.read().clone();
        assert!(!Undo::can_save_catalog(
            &db,
            &[check("n1", "serfHealth", "", status::CRITICAL)]
        ));
        assert!(Undo::can_save_catalog(
            &db,
            &[check("n2", "serfHealth", "", status::CRITICAL)]
        ));
    }
}
