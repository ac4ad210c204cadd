//! Sessions and KV locks: create, destroy and invalidate sessions; acquire and release locks.
//!
//! A session is invalidated by an explicit destroy, by its TTL (the leader proposes the
//! destroy), by a check it is bound to turning critical or being removed, and by its node
//! being deregistered (`fsm/catalog.rs` calls [`invalidate_check`] and [`invalidate_node`]).
//! Invalidation releases the session's locks or deletes its keys, per its behavior, and puts
//! those keys under lock-delay (recorded by the store outside the replicated state).

use super::kv;
use crate::state::{LockDelay, Shared, Table, WatchKey, WriteTxn};
use registry_proto::model::{status, DirEntry, RaftIndex, Session, SessionBehavior};
use registry_proto::CommandResponse;
use std::time::Duration;

/// Consul's `MaxLockDelay`: a session's lock-delay is capped at this when applied.
pub const MAX_LOCK_DELAY: Duration = Duration::from_secs(60);

fn touch_session(txn: &mut WriteTxn<'_>, id: &str, node: &str) {
    txn.touch(WatchKey::Table(Table::Sessions));
    txn.touch(WatchKey::Session(id.to_string()));
    txn.touch(WatchKey::NodeSessions(node.to_string()));
}

/// Checks a session create against the state: its node must exist and each of its checks
/// must exist on that node and not be critical. Consul's texts.
pub(crate) fn validate_create(db: &crate::state::Db, sess: &Session) -> Result<(), String> {
    if sess.id.is_empty() {
        return Err("Missing session ID".into());
    }
    if sess.node.is_empty() {
        return Err("Must provide Node".into());
    }
    if db.sessions.contains_key(&sess.id) {
        return Err(format!("Session ID {:?} already exists", sess.id));
    }
    if !db.nodes.contains_key(&sess.node) {
        return Err("Missing node registration".into());
    }
    for id in sess.check_ids() {
        let Some(check) = db.checks.get(&sess.node).and_then(|m| m.get(id)) else {
            return Err(format!("Missing check '{id}' registration"));
        };
        if check.status == status::CRITICAL {
            return Err(format!("Check '{id}' is in {} state", check.status));
        }
    }
    Ok(())
}

/// Creates a session.
pub(super) fn create(txn: &mut WriteTxn<'_>, sess: &Session) -> CommandResponse {
    if let Err(e) = validate_create(txn.db, sess) {
        return CommandResponse::Rejected(e);
    }
    let mut new = sess.clone();
    new.index = RaftIndex {
        create_index: txn.index,
        modify_index: txn.index,
    };
    for check in new.check_ids() {
        txn.db
            .session_checks
            .entry((new.node.clone(), check.to_string()))
            .or_default()
            .insert(new.id.clone());
    }
    txn.db
        .sessions_by_node
        .entry(new.node.clone())
        .or_default()
        .insert(new.id.clone());
    let (id, node) = (new.id.clone(), new.node.clone());
    txn.db.sessions.insert(id.clone(), new);
    touch_session(txn, &id, &node);
    CommandResponse::Ok
}

/// Destroys a session (explicitly or on TTL expiry); an unknown session is a no-op.
pub(super) fn destroy(txn: &mut WriteTxn<'_>, id: &str, at_unix_ms: u64) -> CommandResponse {
    invalidate(txn, id, Some(at_unix_ms));
    CommandResponse::Ok
}

/// Removes a session and applies its behavior to the keys it holds. Lock-delays start at
/// `from_unix_ms`, or when the applying server commits if `None`. Returns whether the
/// session existed.
pub(crate) fn invalidate(txn: &mut WriteTxn<'_>, id: &str, from_unix_ms: Option<u64>) -> bool {
    let Some(sess) = txn.db.sessions.remove(id) else {
        return false;
    };
    if let Some(ids) = txn.db.sessions_by_node.get_mut(&sess.node) {
        ids.remove(id);
        if ids.is_empty() {
            txn.db.sessions_by_node.remove(&sess.node);
        }
    }
    for check in sess.check_ids() {
        let k = (sess.node.clone(), check.to_string());
        if let Some(ids) = txn.db.session_checks.get_mut(&k) {
            ids.remove(id);
            if ids.is_empty() {
                txn.db.session_checks.remove(&k);
            }
        }
    }
    touch_session(txn, id, &sess.node);
    super::prepared_query::delete_for_session(txn, id);

    let delay = Duration::from_nanos(sess.lock_delay_ns).min(MAX_LOCK_DELAY);
    let keys = txn.db.session_locks.remove(id).unwrap_or_default();
    for key in keys {
        // The index may name keys deleted or re-locked since; act only on real holdings.
        let held = txn.db.kvs.get(&key).is_some_and(|e| e.session == id);
        if !held {
            continue;
        }
        match sess.behavior {
            SessionBehavior::Release => {
                let index = txn.index;
                if let Some(e) = txn.db.kvs.get_mut(&key) {
                    e.session.clear();
                    e.index.modify_index = index;
                }
                txn.touch(WatchKey::Table(Table::Kvs));
                txn.touch(WatchKey::KvKey(key.clone()));
            }
            SessionBehavior::Delete => {
                kv::delete(txn, &key);
            }
        }
        if !delay.is_zero() {
            txn.lock_delay(LockDelay {
                key,
                delay,
                from_unix_ms,
            });
        }
    }
    true
}

/// Invalidates the sessions bound to a check (it turned critical or was removed).
pub(crate) fn invalidate_check(txn: &mut WriteTxn<'_>, node: &str, check_id: &str) {
    for id in txn.db.check_sessions(node, check_id) {
        invalidate(txn, &id, None);
    }
}

/// Invalidates every session of a node (the node was deregistered).
pub(crate) fn invalidate_node(txn: &mut WriteTxn<'_>, node: &str) {
    let ids: Vec<String> = txn
        .db
        .sessions_by_node
        .get(node)
        .map(|s| s.iter().cloned().collect())
        .unwrap_or_default();
    for id in ids {
        invalidate(txn, &id, None);
    }
}

/// Stores `new` (key, value, flags, session, lock index already decided), keeping the create
/// index of an existing entry. An entry identical to the stored one is not rewritten, so its
/// modify index stays (Consul's `kvsSetTxn`).
fn put_locked(txn: &mut WriteTxn<'_>, mut new: DirEntry) {
    let index = txn.index;
    match txn.db.kvs.get(&new.key) {
        Some(old) => {
            if old.lock_index == new.lock_index
                && old.flags == new.flags
                && old.value == new.value
                && old.session == new.session
            {
                return;
            }
            new.index = RaftIndex {
                create_index: old.index.create_index,
                modify_index: index,
            };
        }
        None => {
            new.index = RaftIndex {
                create_index: index,
                modify_index: index,
            };
        }
    }
    txn.db.kv_tombstones.remove(&new.key);
    let key = new.key.clone();
    txn.db.kvs.insert(key.clone(), Shared::new(new));
    txn.touch(WatchKey::Table(Table::Kvs));
    txn.touch(WatchKey::KvKey(key));
}

/// Acquires the lock on `entry.key` for `entry.session`: `Ok(false)` when another session
/// holds it; `Err` (Consul's text) when the session is missing or unknown.
pub(crate) fn try_lock(txn: &mut WriteTxn<'_>, entry: &DirEntry) -> Result<bool, String> {
    if entry.session.is_empty() {
        return Err("missing session".into());
    }
    if !txn.db.sessions.contains_key(&entry.session) {
        return Err(format!("invalid session {:?}", entry.session));
    }
    let lock_index = match txn.db.kvs.get(&entry.key) {
        Some(e) if e.session == entry.session => e.lock_index,
        Some(e) if !e.session.is_empty() => return Ok(false),
        Some(e) => e.lock_index + 1,
        None => 1,
    };
    let new = DirEntry {
        key: entry.key.clone(),
        flags: entry.flags,
        value: entry.value.clone(),
        lock_index,
        session: entry.session.clone(),
        index: RaftIndex::default(),
    };
    put_locked(txn, new);
    txn.db
        .session_locks
        .entry(entry.session.clone())
        .or_default()
        .insert(entry.key.clone());
    Ok(true)
}

/// Releases the lock `entry.session` holds on `entry.key`, writing the entry's value and
/// flags: `Ok(false)` when the key is missing or held by someone else.
pub(crate) fn try_unlock(txn: &mut WriteTxn<'_>, entry: &DirEntry) -> Result<bool, String> {
    if entry.session.is_empty() {
        return Err("missing session".into());
    }
    let lock_index = match txn.db.kvs.get(&entry.key) {
        Some(e) if e.session == entry.session => e.lock_index,
        _ => return Ok(false),
    };
    let new = DirEntry {
        key: entry.key.clone(),
        flags: entry.flags,
        value: entry.value.clone(),
        lock_index,
        session: String::new(),
        index: RaftIndex::default(),
    };
    put_locked(txn, new);
    if let Some(keys) = txn.db.session_locks.get_mut(&entry.session) {
        keys.remove(&entry.key);
        if keys.is_empty() {
            txn.db.session_locks.remove(&entry.session);
        }
    }
    Ok(true)
}

fn as_response(r: Result<bool, String>) -> CommandResponse {
    match r {
        Ok(b) => CommandResponse::Bool(b),
        Err(e) => CommandResponse::Rejected(e),
    }
}

/// `PUT /v1/kv/:key?acquire=`.
pub(super) fn lock(txn: &mut WriteTxn<'_>, entry: &DirEntry) -> CommandResponse {
    as_response(try_lock(txn, entry))
}

/// `PUT /v1/kv/:key?release=`.
pub(super) fn unlock(txn: &mut WriteTxn<'_>, entry: &DirEntry) -> CommandResponse {
    as_response(try_unlock(txn, entry))
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
pub(crate) mod tests {
    use crate::fsm::apply;
    use crate::state::{Store, Table, WatchKey};
    use registry_proto::command::{DeregisterRequest, RegisterRequest};
    use registry_proto::model::{
        status, DirEntry, HealthCheck, Node, NodeService, ServiceCheck, Session, SessionBehavior,
    };
    use registry_proto::{Command, CommandResponse};
    use std::time::Duration;

    /// A store and the next Raft index to apply at.
    pub(crate) struct Fsm {
        pub store: Store,
        pub next: u64,
    }

    impl Fsm {
        pub fn new() -> Fsm {
            Fsm {
                store: Store::new(),
                next: 1,
            }
        }

        pub fn apply(&mut self, cmd: Command) -> CommandResponse {
            let i = self.next;
            self.next += 1;
            apply(&self.store, i, &cmd)
        }

        pub fn node(&mut self, name: &str, checks: &[(&str, &str, &str)]) {
            let r = self.apply(Command::Register(RegisterRequest {
                node: Node {
                    node: name.into(),
                    address: "10.0.0.1".into(),
                    ..Default::default()
                },
                skip_node_update: false,
                service: Some(NodeService {
                    id: "web".into(),
                    service: "web".into(),
                    ..Default::default()
                }),
                checks: checks
                    .iter()
                    .map(|(id, st, svc)| HealthCheck {
                        node: name.into(),
                        check_id: (*id).into(),
                        name: (*id).into(),
                        status: (*st).into(),
                        service_id: (*svc).into(),
                        ..Default::default()
                    })
                    .collect(),
            }));
            assert_eq!(r, CommandResponse::Ok);
        }

        pub fn set_check(&mut self, node: &str, id: &str, st: &str) {
            let r = self.apply(Command::Register(RegisterRequest {
                node: Node {
                    node: node.into(),
                    ..Default::default()
                },
                skip_node_update: true,
                service: None,
                checks: vec![HealthCheck {
                    node: node.into(),
                    check_id: id.into(),
                    name: id.into(),
                    status: st.into(),
                    ..Default::default()
                }],
            }));
            assert_eq!(r, CommandResponse::Ok);
        }

        pub fn session(&mut self, id: &str, node: &str, behavior: SessionBehavior) -> Session {
            let s = Session {
                id: id.into(),
                name: format!("session {id}"),
                node: node.into(),
                lock_delay_ns: 15_000_000_000,
                behavior,
                ttl: String::new(),
                node_checks: vec!["serfHealth".into()],
                ..Default::default()
            };
            assert_eq!(
                self.apply(Command::SessionCreate(s.clone())),
                CommandResponse::Ok
            );
            s
        }

        pub fn lock(&mut self, key: &str, session: &str, value: &str) -> CommandResponse {
            self.apply(Command::KvLock {
                entry: entry(key, session, value),
            })
        }

        pub fn unlock(&mut self, key: &str, session: &str) -> CommandResponse {
            self.apply(Command::KvUnlock {
                entry: entry(key, session, ""),
            })
        }

        pub fn kv(&self, key: &str) -> Option<DirEntry> {
            self.store.read().kvs.get(key).map(|e| (**e).clone())
        }
    }

    pub(crate) fn entry(key: &str, session: &str, value: &str) -> DirEntry {
        DirEntry {
            key: key.into(),
            flags: 0x2ddc_cbc0_58a5_0c18,
            value: value.as_bytes().to_vec().into(),
            session: session.into(),
            ..Default::default()
        }
    }

    fn rejected(r: CommandResponse) -> String {
        match r {
            CommandResponse::Rejected(e) => e,
            other => panic!("expected a rejection, got {other:?}"),
        }
    }

    #[test]
    fn create_validates_node_and_checks() {
        let mut f = Fsm::new();
        let s = Session {
            id: "s1".into(),
            node: "n1".into(),
            node_checks: vec!["serfHealth".into()],
            ..Default::default()
        };
        assert_eq!(
            rejected(f.apply(Command::SessionCreate(s.clone()))),
            "Missing node registration"
        );
        f.node("n1", &[("serfHealth", status::PASSING, "")]);
        let mut bad = s.clone();
        bad.service_checks = vec![ServiceCheck {
            id: "nope".into(),
            namespace: String::new(),
        }];
        assert_eq!(
            rejected(f.apply(Command::SessionCreate(bad))),
            "Missing check 'nope' registration"
        );
        f.set_check("n1", "serfHealth", status::CRITICAL);
        assert_eq!(
            rejected(f.apply(Command::SessionCreate(s.clone()))),
            "Check 'serfHealth' is in critical state"
        );
        f.set_check("n1", "serfHealth", status::PASSING);
        let at = f.next;
        assert_eq!(
            f.apply(Command::SessionCreate(s.clone())),
            CommandResponse::Ok
        );
        let db = f.store.read();
        let got = &db.sessions["s1"];
        assert_eq!((got.index.create_index, got.index.modify_index), (at, at));
        assert_eq!(db.node_sessions("n1").len(), 1);
        assert_eq!(
            db.check_sessions("n1", "serfHealth"),
            vec!["s1".to_string()]
        );
        assert_eq!(db.table(Table::Sessions), at);
        drop(db);
        // The same ID twice is refused.
        assert!(matches!(
            f.apply(Command::SessionCreate(s)),
            CommandResponse::Rejected(_)
        ));
    }

    #[test]
    fn lock_index_and_mutual_exclusion() {
        let mut f = Fsm::new();
        f.node("n1", &[("serfHealth", status::PASSING, "")]);
        f.session("a", "n1", SessionBehavior::Release);
        f.session("b", "n1", SessionBehavior::Release);

        assert_eq!(f.lock("k", "a", "A"), CommandResponse::Bool(true));
        let e = f.kv("k").unwrap();
        assert_eq!((e.lock_index, e.session.as_str()), (1, "a"));
        assert_eq!(e.value, &b"A"[..]);
        // Re-acquiring by the holder keeps the lock index; an identical write changes nothing.
        let before = e.index.modify_index;
        assert_eq!(f.lock("k", "a", "A"), CommandResponse::Bool(true));
        assert_eq!(f.kv("k").unwrap().index.modify_index, before);
        assert_eq!(f.lock("k", "a", "A2"), CommandResponse::Bool(true));
        assert_eq!(f.kv("k").unwrap().lock_index, 1);
        // Another session cannot take it, nor release it.
        assert_eq!(f.lock("k", "b", "B"), CommandResponse::Bool(false));
        assert_eq!(f.unlock("k", "b"), CommandResponse::Bool(false));
        assert_eq!(f.kv("k").unwrap().session, "a");
        // Release: the session goes, the lock index stays, the value is the release's.
        assert_eq!(f.unlock("k", "a"), CommandResponse::Bool(true));
        let e = f.kv("k").unwrap();
        assert_eq!((e.lock_index, e.session.as_str()), (1, ""));
        assert!(e.value.is_empty());
        assert!(!f.store.read().session_locks.contains_key("a"));
        // A new acquisition bumps the lock index.
        assert_eq!(f.lock("k", "b", "B"), CommandResponse::Bool(true));
        assert_eq!(f.kv("k").unwrap().lock_index, 2);
        assert_eq!(f.unlock("missing", "b"), CommandResponse::Bool(false));
    }

    #[test]
    fn lock_needs_a_known_session() {
        let mut f = Fsm::new();
        assert_eq!(rejected(f.lock("k", "", "")), "missing session");
        assert_eq!(rejected(f.unlock("k", "")), "missing session");
        assert_eq!(
            rejected(f.lock("k", "4a5b-nope", "")),
            "invalid session \"4a5b-nope\""
        );
        assert!(f.kv("k").is_none());
    }

    #[test]
    fn destroy_release_keeps_keys_and_sets_lock_delay() {
        let mut f = Fsm::new();
        f.node("n1", &[("serfHealth", status::PASSING, "")]);
        f.session("a", "n1", SessionBehavior::Release);
        f.lock("k1", "a", "v1");
        f.lock("k2", "a", "v2");
        let mut w = f
            .store
            .watch(&[WatchKey::KvKey("k1".into()), WatchKey::Session("a".into())]);
        let at = crate::state::unix_ms_now();
        let idx = f.next;
        f.apply(Command::SessionDestroy {
            id: "a".into(),
            at_unix_ms: at,
        });
        assert!(futures::FutureExt::now_or_never(w.changed()).is_some());
        for k in ["k1", "k2"] {
            let e = f.kv(k).unwrap();
            assert_eq!(e.session, "");
            assert_eq!(e.lock_index, 1);
            assert_eq!(e.index.modify_index, idx);
            let left = f.store.kv_lock_delay(k).expect("lock-delay in force");
            assert!(left > Duration::from_secs(14) && left <= Duration::from_secs(15));
        }
        let db = f.store.read();
        assert!(db.sessions.is_empty() && db.sessions_by_node.is_empty());
        assert!(db.session_checks.is_empty() && db.session_locks.is_empty());
        drop(db);
        // A destroy replayed long after it was proposed leaves no lock-delay behind; one
        // whose proposer's clock was a few seconds ahead or behind still arms the whole delay.
        f.session("old", "n1", SessionBehavior::Release);
        f.lock("k3", "old", "");
        f.apply(Command::SessionDestroy {
            id: "old".into(),
            at_unix_ms: at - 30_000,
        });
        assert_eq!(f.store.kv_lock_delay("k3"), None);
        for (id, key, skew) in [("ahead", "k4", 5_000), ("behind", "k5", -5_000)] {
            f.session(id, "n1", SessionBehavior::Release);
            f.lock(key, id, "");
            f.apply(Command::SessionDestroy {
                id: id.into(),
                at_unix_ms: at.saturating_add_signed(skew),
            });
            let left = f.store.kv_lock_delay(key).expect("lock-delay in force");
            assert!(left > Duration::from_secs(14), "{id}: {left:?}");
        }
        // Destroying an unknown session is a no-op.
        assert_eq!(
            f.apply(Command::SessionDestroy {
                id: "a".into(),
                at_unix_ms: at
            }),
            CommandResponse::Ok
        );
    }

    #[test]
    fn destroy_delete_removes_keys_and_caps_lock_delay() {
        let mut f = Fsm::new();
        f.node("n1", &[("serfHealth", status::PASSING, "")]);
        let mut s = f.session("d", "n1", SessionBehavior::Delete);
        f.lock("svc/leader", "d", "me");
        f.apply(Command::KvSet {
            entry: DirEntry {
                key: "svc/other".into(),
                ..Default::default()
            },
        });
        // A second session with an over-long lock delay, capped at 60 s.
        s.id = "long".into();
        s.lock_delay_ns = 3_600_000_000_000;
        f.apply(Command::SessionCreate(s));
        f.lock("svc/long", "long", "x");
        let at = crate::state::unix_ms_now();
        let idx = f.next;
        f.apply(Command::SessionDestroy {
            id: "d".into(),
            at_unix_ms: at,
        });
        assert!(f.kv("svc/leader").is_none());
        assert!(f.kv("svc/other").is_some(), "unheld keys stay");
        assert_eq!(f.store.read().kv_tombstones.get("svc/leader"), Some(&idx));
        assert!(f.store.kv_lock_delay("svc/leader").is_some());
        f.apply(Command::SessionDestroy {
            id: "long".into(),
            at_unix_ms: at,
        });
        let left = f
            .store
            .kv_lock_delay("svc/long")
            .expect("capped lock-delay");
        assert!(left > Duration::from_secs(59) && left <= Duration::from_secs(60));
    }

    #[test]
    fn zero_lock_delay_sets_none() {
        let mut f = Fsm::new();
        f.node("n1", &[("serfHealth", status::PASSING, "")]);
        let mut s = f.session("tmp", "n1", SessionBehavior::Release);
        s.id = "z".into();
        s.lock_delay_ns = 0;
        f.apply(Command::SessionCreate(s));
        f.lock("k", "z", "");
        f.apply(Command::SessionDestroy {
            id: "z".into(),
            at_unix_ms: 5,
        });
        assert_eq!(f.store.kv_lock_delay("k"), None);
    }

    #[test]
    fn critical_check_invalidates_bound_sessions() {
        let mut f = Fsm::new();
        f.node(
            "n1",
            &[
                ("serfHealth", status::PASSING, ""),
                ("web-check", status::PASSING, "web"),
            ],
        );
        f.session("plain", "n1", SessionBehavior::Release);
        let mut svc = f.session("tmp", "n1", SessionBehavior::Release);
        f.apply(Command::SessionDestroy {
            id: "tmp".into(),
            at_unix_ms: 0,
        });
        svc.id = "svc".into();
        svc.node_checks.clear();
        svc.service_checks = vec![ServiceCheck {
            id: "web-check".into(),
            namespace: String::new(),
        }];
        f.apply(Command::SessionCreate(svc));
        f.lock("a", "plain", "");
        f.lock("b", "svc", "");
        // A warning changes nothing.
        f.set_check("n1", "serfHealth", status::WARNING);
        assert_eq!(f.store.read().sessions.len(), 2);
        // serfHealth critical: the node-check session goes, its lock is released.
        f.set_check("n1", "serfHealth", status::CRITICAL);
        {
            let db = f.store.read();
            assert!(!db.sessions.contains_key("plain"));
            assert!(db.sessions.contains_key("svc"));
        }
        assert_eq!(f.kv("a").unwrap().session, "");
        assert_eq!(f.kv("b").unwrap().session, "svc");
        // Deregistering the service removes its check and so the bound session.
        f.apply(Command::Deregister(DeregisterRequest {
            node: "n1".into(),
            service_id: Some("web".into()),
            check_id: None,
        }));
        assert!(f.store.read().sessions.is_empty());
        assert_eq!(f.kv("b").unwrap().session, "");
        // Lock-delay from an FSM-side invalidation starts at the local clock.
        assert!(f.store.kv_lock_delay("b").is_some());
    }

    #[test]
    fn check_and_node_deregistration_invalidate() {
        let mut f = Fsm::new();
        f.node("n1", &[("serfHealth", status::PASSING, "")]);
        f.node("n2", &[("serfHealth", status::PASSING, "")]);
        f.session("c", "n1", SessionBehavior::Release);
        let mut s = f.session("n", "n2", SessionBehavior::Delete);
        s.id = "ttl-only".into();
        s.node_checks.clear();
        f.apply(Command::SessionCreate(s));
        f.lock("x", "ttl-only", "");
        f.apply(Command::Deregister(DeregisterRequest {
            node: "n1".into(),
            service_id: None,
            check_id: Some("serfHealth".into()),
        }));
        assert!(!f.store.read().sessions.contains_key("c"));
        // A session without checks survives check changes but not its node's deregistration.
        f.set_check("n2", "serfHealth", status::CRITICAL);
        assert!(f.store.read().sessions.contains_key("ttl-only"));
        f.apply(Command::Deregister(DeregisterRequest {
            node: "n2".into(),
            service_id: None,
            check_id: None,
        }));
        let db = f.store.read();
        assert!(db.sessions.is_empty());
        assert!(db.sessions_by_node.is_empty());
        assert!(!db.kvs.contains_key("x"), "delete behavior removed the key");
    }

    #[test]
    fn replicas_stay_identical() {
        let run = || {
            let mut f = Fsm::new();
            f.node("n1", &[("serfHealth", status::PASSING, "")]);
            f.session("a", "n1", SessionBehavior::Release);
            f.session("b", "n1", SessionBehavior::Delete);
            f.lock("k", "a", "1");
            f.lock("j", "b", "2");
            f.apply(Command::SessionDestroy {
                id: "a".into(),
                at_unix_ms: 42,
            });
            f.set_check("n1", "serfHealth", status::CRITICAL);
            let db = f.store.read().clone();
            db
        };
        let (x, y) = (run(), run());
        assert_eq!(x, y);
        assert_eq!(crate::state::Db::decode(&x.encode().unwrap()).unwrap(), x);
    }
}
