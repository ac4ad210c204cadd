//! The pure half of anti-entropy: comparing the local state with the catalog
//! ([`compare`], Consul's `updateSyncState`), turning what is out of sync into Raft commands
//! ([`plan`]), and recording what a write achieved ([`mark`]).
//!
//! Generations make marking safe against concurrent changes: an entry is only marked in
//! sync (or a tombstone dropped) if it did not change since the plan was made.

use crate::local::{CheckEntry, Inner, NodeInfo, ServiceEntry, CONSUL_SERVICE_ID, SERF_CHECK_ID};
use registry_proto::command::{DeregisterRequest, RegisterRequest};
use registry_proto::model::{HealthCheck, Node, NodeService};
use registry_proto::Command;
use registry_server::state::Db;
use std::collections::{BTreeMap, BTreeSet};

/// What the catalog holds for this node.
#[derive(Debug, Clone, Default)]
pub struct Remote {
    /// The node record, if registered.
    pub node: Option<Node>,
    /// Its services by ID.
    pub services: BTreeMap<String, NodeService>,
    /// Its checks by ID.
    pub checks: BTreeMap<String, HealthCheck>,
}

impl Remote {
    /// This node's records as a server sent them.
    pub fn from_records(rec: registry_server::rpc::catalog::NodeRecords) -> Self {
        Remote {
            node: rec.node,
            services: rec
                .services
                .into_iter()
                .map(|s| (s.id.clone(), s))
                .collect(),
            checks: rec
                .checks
                .into_iter()
                .map(|c| (c.check_id.clone(), c))
                .collect(),
        }
    }

    /// This node's records in `db`.
    pub fn from_db(db: &Db, node: &str) -> Self {
        Remote {
            node: db.nodes.get(node).cloned(),
            services: db
                .services
                .get(node)
                .map(|m| m.iter().map(|(k, v)| (k.clone(), (**v).clone())).collect())
                .unwrap_or_default(),
            checks: db
                .checks
                .get(node)
                .map(|m| m.iter().map(|(k, v)| (k.clone(), (**v).clone())).collect())
                .unwrap_or_default(),
        }
    }
}

fn same_service(local: &NodeService, remote: &NodeService) -> bool {
    let mut r = remote.clone();
    r.index = Default::default();
    *local == r
}

/// Checks are compared without the service name and tags, which the catalog derives from
/// the service, and without indexes.
fn same_check(local: &HealthCheck, remote: &HealthCheck) -> bool {
    let mut l = local.clone();
    let mut r = remote.clone();
    for c in [&mut l, &mut r] {
        c.index = Default::default();
        c.service_name.clear();
        c.service_tags.clear();
    }
    l == r
}

fn node_in_sync(node: &NodeInfo, remote: &Remote) -> bool {
    let node_ok = remote.node.as_ref().is_some_and(|n| node.matches(n));
    // The leader owns `serfHealth` once the node exists (gossip decides its status): the
    // agent only puts it back when it is missing.
    let serf_ok = remote.checks.contains_key(SERF_CHECK_ID);
    let consul_ok = match &node.consul_service {
        None => true,
        Some(want) => remote
            .services
            .get(CONSUL_SERVICE_ID)
            .is_some_and(|have| same_service(want, have)),
    };
    node_ok && serf_ok && consul_ok
}

/// Updates the sync flags of `inner` from the catalog's view (Consul's `updateSyncState`):
/// entries that differ are marked out of sync, catalog entries with no local counterpart
/// become tombstones (except the `consul` service and the `serfHealth` check), and
/// tombstones the catalog no longer has are dropped.
///
/// With `defer_output`, a check whose output sync is deferred is compared with the
/// catalog's output, so the deferral holds.
pub(crate) fn compare(inner: &mut Inner, remote: &Remote, defer_output: bool) {
    if !node_in_sync(&inner.node, remote) {
        inner.node_in_sync = false;
    }

    for (id, rs) in &remote.services {
        let gen = inner.gen();
        match inner.service_mut(id) {
            None => {
                if id == CONSUL_SERVICE_ID {
                    continue;
                }
                inner.put_service(ServiceEntry {
                    service: rs.clone(),
                    in_sync: false,
                    deleted: true,
                    gen,
                });
            }
            Some(ls) if ls.deleted => {}
            Some(ls) => {
                if ls.service.enable_tag_override {
                    ls.service.tags = rs.tags.clone();
                }
                ls.in_sync = same_service(&ls.service, rs);
            }
        }
    }
    inner.retain_services(|id, e| !e.deleted || remote.services.contains_key(id));
    for (id, ls) in inner.services_mut() {
        if !remote.services.contains_key(id) {
            ls.in_sync = false;
        }
    }

    for (id, rc) in &remote.checks {
        if id == SERF_CHECK_ID {
            continue;
        }
        let gen = inner.gen();
        match inner.check_mut(id) {
            None => {
                inner.put_check(CheckEntry {
                    check: rc.clone(),
                    in_sync: false,
                    deleted: true,
                    gen,
                    deferred: None,
                    critical_since: None,
                    deregister_after: None,
                });
            }
            Some(lc) if lc.deleted => {}
            Some(lc) => {
                let mut cmp = lc.check.clone();
                if defer_output && lc.deferred.is_some() {
                    cmp.output = rc.output.clone();
                }
                lc.in_sync = same_check(&cmp, rc);
            }
        }
    }
    inner.retain_checks(|id, e| !e.deleted || remote.checks.contains_key(id));
    for (id, lc) in inner.checks_mut() {
        if !remote.checks.contains_key(id) {
            lc.in_sync = false;
        }
    }
    inner.rebuild_dirty();
}

/// One write of a sync, and what it covers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Op {
    /// Register the node, its `serfHealth` check and, on a server, the `consul` service.
    Node {
        /// Node generation written.
        gen: u64,
    },
    /// Register a service with all its checks.
    Service {
        /// Service ID.
        id: String,
        /// Service generation written.
        gen: u64,
        /// The checks written with it: (ID, generation).
        checks: Vec<(String, u64)>,
    },
    /// Register one check.
    Check {
        /// Check ID.
        id: String,
        /// Generation written.
        gen: u64,
    },
    /// Deregister a service (and its checks).
    DeregisterService {
        /// Service ID.
        id: String,
        /// Tombstone generation.
        gen: u64,
    },
    /// Deregister one check.
    DeregisterCheck {
        /// Check ID.
        id: String,
        /// Tombstone generation.
        gen: u64,
    },
}

/// The writes that bring the catalog in line with the local state, in the order they
/// must be applied: node, service deregistrations, check deregistrations, service
/// registrations (each with its checks), then lone check registrations.
#[derive(Debug, Clone, Default)]
pub struct Plan {
    /// What each command covers.
    pub ops: Vec<Op>,
    /// The commands, one per op.
    pub commands: Vec<Command>,
}

impl Plan {
    /// Whether there is nothing to write.
    pub fn is_empty(&self) -> bool {
        self.ops.is_empty()
    }

    fn push(&mut self, op: Op, cmd: Command) {
        self.ops.push(op);
        self.commands.push(cmd);
    }
}

/// Plans the writes for everything out of sync in `inner`.
pub(crate) fn plan(inner: &mut Inner) -> Plan {
    inner.prune_dirty();
    let inner: &Inner = inner;
    let mut plan = Plan::default();
    let node = inner.node.to_node();
    let name = inner.node.name.clone();
    let register = |service: Option<NodeService>, checks: Vec<HealthCheck>| {
        Command::Register(RegisterRequest {
            node: node.clone(),
            skip_node_update: false,
            service,
            checks,
        })
    };

    if !inner.node_in_sync {
        plan.push(
            Op::Node {
                gen: inner.node_gen,
            },
            register(
                inner.node.consul_service.clone(),
                vec![inner.node.serf_health()],
            ),
        );
    }
    for (id, s) in inner.dirty_services().filter(|(_, s)| s.deleted) {
        plan.push(
            Op::DeregisterService {
                id: id.clone(),
                gen: s.gen,
            },
            Command::Deregister(DeregisterRequest {
                node: name.clone(),
                service_id: Some(id.clone()),
                check_id: None,
            }),
        );
    }
    for (id, c) in inner.dirty_checks().filter(|(_, c)| c.deleted) {
        plan.push(
            Op::DeregisterCheck {
                id: id.clone(),
                gen: c.gen,
            },
            Command::Deregister(DeregisterRequest {
                node: name.clone(),
                service_id: None,
                check_id: Some(id.clone()),
            }),
        );
    }
    let mut covered: BTreeSet<String> = BTreeSet::new();
    for (id, s) in inner
        .dirty_services()
        .filter(|(_, s)| !s.deleted && !s.in_sync)
    {
        let checks: Vec<(String, &CheckEntry)> = inner
            .check_ids_of(id)
            .into_iter()
            .filter_map(|cid| {
                let c = inner.checks().get(&cid)?;
                (!c.deleted).then_some((cid, c))
            })
            .collect();
        covered.extend(checks.iter().map(|(cid, _)| cid.clone()));
        plan.push(
            Op::Service {
                id: id.clone(),
                gen: s.gen,
                checks: checks.iter().map(|(cid, c)| (cid.clone(), c.gen)).collect(),
            },
            register(
                Some(s.service.clone()),
                checks.iter().map(|(_, c)| c.check.clone()).collect(),
            ),
        );
    }
    for (id, c) in inner
        .dirty_checks()
        .filter(|(id, c)| !c.deleted && !c.in_sync && !covered.contains(*id))
    {
        plan.push(
            Op::Check {
                id: id.clone(),
                gen: c.gen,
            },
            register(None, vec![c.check.clone()]),
        );
    }
    plan
}

/// Records the outcome of `plan`: `ok[i]` says whether `plan.ops[i]` was applied.
/// Entries changed since the plan was made keep their flags.
pub(crate) fn mark(inner: &mut Inner, plan: &Plan, ok: &[bool]) {
    for (op, ok) in plan.ops.iter().zip(ok) {
        if !ok {
            continue;
        }
        match op {
            Op::Node { gen } => {
                if inner.node_gen == *gen {
                    inner.node_in_sync = true;
                }
            }
            Op::Service { id, gen, checks } => {
                if let Some(s) = inner.service_mut(id) {
                    if s.gen == *gen {
                        s.in_sync = true;
                    }
                }
                for (cid, cgen) in checks {
                    mark_check_synced(inner, cid, *cgen);
                }
            }
            Op::Check { id, gen } => mark_check_synced(inner, id, *gen),
            Op::DeregisterService { id, gen } => {
                if inner
                    .services()
                    .get(id)
                    .is_some_and(|s| s.deleted && s.gen == *gen)
                {
                    inner.drop_service(id);
                    // The catalog dropped the service's checks with it.
                    for cid in inner.check_ids_of(id) {
                        if inner.checks().get(&cid).is_some_and(|c| c.deleted) {
                            inner.drop_check(&cid);
                        }
                    }
                }
            }
            Op::DeregisterCheck { id, gen } => {
                if inner
                    .checks()
                    .get(id)
                    .is_some_and(|c| c.deleted && c.gen == *gen)
                {
                    inner.drop_check(id);
                }
            }
        }
    }
    inner.prune_dirty();
}

fn mark_check_synced(inner: &mut Inner, id: &str, gen: u64) {
    if let Some(c) = inner.check_mut(id) {
        if c.gen == gen && !c.deleted {
            c.in_sync = true;
            c.deferred = None;
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;
    use crate::local::{LocalOptions, LocalState};
    use registry_proto::model::status;
    use std::net::{IpAddr, Ipv4Addr};

    fn state() -> std::sync::Arc<LocalState> {
        let node = NodeInfo::new(
            "n1",
            "",
            "dc1",
            IpAddr::V4(Ipv4Addr::LOCALHOST),
            &BTreeMap::new(),
            "1.20.0",
        );
        LocalState::new(node, LocalOptions::default())
    }

    fn svc(id: &str, port: u16) -> NodeService {
        NodeService {
            id: id.into(),
            service: "web".into(),
            port,
            ..Default::default()
        }
    }

    fn chk(id: &str, service: &str, st: &str, out: &str) -> HealthCheck {
        HealthCheck {
            node: "n1".into(),
            check_id: id.into(),
            name: id.into(),
            status: st.into(),
            output: out.into(),
            service_id: service.into(),
            ..Default::default()
        }
    }

    /// Applies a plan to a fake catalog the way the state machine would.
    fn apply(remote: &mut Remote, plan: &Plan) {
        for cmd in &plan.commands {
            match cmd {
                Command::Register(r) => {
                    let mut n = r.node.clone();
                    n.index.modify_index = 7;
                    remote.node = Some(n);
                    if let Some(s) = &r.service {
                        let mut s = s.clone();
                        s.index.modify_index = 7;
                        remote.services.insert(s.id.clone(), s);
                    }
                    for c in &r.checks {
                        let mut c = c.clone();
                        // The catalog fills the service name itself.
                        c.service_name = remote
                            .services
                            .get(&c.service_id)
                            .map(|s| s.service.clone())
                            .unwrap_or_default();
                        c.index.modify_index = 7;
                        remote.checks.insert(c.check_id.clone(), c);
                    }
                }
                Command::Deregister(d) => {
                    if let Some(sid) = &d.service_id {
                        remote.services.remove(sid);
                        remote.checks.retain(|_, c| &c.service_id != sid);
                    }
                    if let Some(cid) = &d.check_id {
                        remote.checks.remove(cid);
                    }
                }
                _ => panic!("unexpected command {cmd:?}"),
            }
        }
    }

    fn sync(s: &LocalState, remote: &mut Remote) -> Plan {
        let mut inner = s.lock();
        compare(&mut inner, remote, true);
        let p = plan(&mut inner);
        apply(remote, &p);
        let ok = vec![true; p.ops.len()];
        mark(&mut inner, &p, &ok);
        p
    }

    #[test]
    fn first_sync_registers_node_services_and_checks() {
        let s = state();
        s.add_service(svc("web1", 80));
        s.add_check(chk("c1", "web1", status::PASSING, ""), None);
        s.add_check(chk("mem", "", status::WARNING, ""), None);
        let mut remote = Remote::default();
        let p = sync(&s, &mut remote);
        assert_eq!(p.ops.len(), 3, "{:?}", p.ops);
        assert!(matches!(p.ops[0], Op::Node { .. }));
        assert!(
            matches!(&p.ops[1], Op::Service { id, checks, .. } if id == "web1" && checks.len() == 1)
        );
        assert!(matches!(&p.ops[2], Op::Check { id, .. } if id == "mem"));
        assert!(s.all_in_sync());
        assert!(remote.checks.contains_key(SERF_CHECK_ID));
        assert_eq!(remote.services["web1"].port, 80);

        // Nothing changed: a second full sync writes nothing.
        let p = sync(&s, &mut remote);
        assert!(p.is_empty(), "{:?}", p.ops);
    }

    #[test]
    fn catalog_drift_is_reverted() {
        let s = state();
        s.add_service(svc("web1", 80));
        s.add_check(chk("c1", "web1", status::PASSING, ""), None);
        let mut remote = Remote::default();
        sync(&s, &mut remote);

        // Someone edits the catalog directly: a changed port, a foreign service and check,
        // a lost serfHealth.
        if let Some(w) = remote.services.get_mut("web1") {
            w.port = 81;
        }
        remote
            .services
            .insert("intruder".into(), svc("intruder", 1));
        remote
            .checks
            .insert("stray".into(), chk("stray", "", status::CRITICAL, ""));
        remote.checks.remove(SERF_CHECK_ID);

        let p = sync(&s, &mut remote);
        let kinds: Vec<&Op> = p.ops.iter().collect();
        assert!(kinds.iter().any(|o| matches!(o, Op::Node { .. })));
        assert!(kinds
            .iter()
            .any(|o| matches!(o, Op::DeregisterService { id, .. } if id == "intruder")));
        assert!(kinds
            .iter()
            .any(|o| matches!(o, Op::DeregisterCheck { id, .. } if id == "stray")));
        assert!(kinds
            .iter()
            .any(|o| matches!(o, Op::Service { id, .. } if id == "web1")));
        assert_eq!(remote.services["web1"].port, 80);
        assert!(!remote.services.contains_key("intruder"));
        assert!(!remote.checks.contains_key("stray"));
        assert!(remote.checks.contains_key(SERF_CHECK_ID));
        assert!(s.all_in_sync());
        assert!(sync(&s, &mut remote).is_empty());
    }

    #[test]
    fn consul_service_and_serf_health_are_left_alone() {
        let s = state();
        let mut remote = Remote::default();
        sync(&s, &mut remote);
        remote
            .services
            .insert(CONSUL_SERVICE_ID.into(), svc(CONSUL_SERVICE_ID, 8300));
        let p = sync(&s, &mut remote);
        assert!(p.is_empty(), "{:?}", p.ops);
        assert!(remote.services.contains_key(CONSUL_SERVICE_ID));
    }

    #[test]
    fn servers_register_the_consul_service_with_the_node() {
        let node = NodeInfo::new(
            "n1",
            "",
            "dc1",
            IpAddr::V4(Ipv4Addr::LOCALHOST),
            &BTreeMap::new(),
            "1.20.0",
        )
        .with_consul_service(8300, "1.20.0");
        let s = LocalState::new(node, LocalOptions::default());
        let mut remote = Remote::default();
        let p = sync(&s, &mut remote);
        assert_eq!(p.ops.len(), 1);
        let consul = &remote.services[CONSUL_SERVICE_ID];
        assert_eq!(consul.port, 8300);
        assert_eq!(
            consul.meta.get("raft_version").map(String::as_str).unwrap(),
            "3"
        );
        // It is part of the node: not an agent service, and restored if it goes.
        assert!(s.services().is_empty());
        remote.services.remove(CONSUL_SERVICE_ID);
        let p = sync(&s, &mut remote);
        assert!(matches!(p.ops[..], [Op::Node { .. }]), "{:?}", p.ops);
        assert!(remote.services.contains_key(CONSUL_SERVICE_ID));
        assert!(sync(&s, &mut remote).is_empty());
    }

    #[test]
    fn local_removals_deregister() {
        let s = state();
        s.add_service(svc("web1", 80));
        s.add_check(chk("c1", "web1", status::PASSING, ""), None);
        s.add_check(chk("mem", "", status::PASSING, ""), None);
        let mut remote = Remote::default();
        sync(&s, &mut remote);

        s.remove_service("web1");
        s.remove_check("mem");
        let p = sync(&s, &mut remote);
        assert_eq!(p.ops.len(), 3, "{:?}", p.ops);
        assert!(remote.services.is_empty());
        assert_eq!(remote.checks.keys().collect::<Vec<_>>(), [SERF_CHECK_ID]);
        // Tombstones are gone once the catalog confirmed.
        assert!(s.lock().services().is_empty());
        assert!(s.lock().checks().is_empty());
    }

    #[test]
    fn tag_override_keeps_catalog_tags() {
        let s = state();
        let mut w = svc("web1", 80);
        w.enable_tag_override = true;
        w.tags = vec!["local".into()];
        s.add_service(w);
        let mut remote = Remote::default();
        sync(&s, &mut remote);
        if let Some(r) = remote.services.get_mut("web1") {
            r.tags = vec!["edited".into()];
        }
        let p = sync(&s, &mut remote);
        assert!(p.is_empty(), "{:?}", p.ops);
        assert_eq!(
            s.service("web1").map(|s| s.tags),
            Some(vec!["edited".into()])
        );
    }

    #[tokio::test(start_paused = true)]
    async fn deferred_output_does_not_resync() {
        let s = state();
        s.add_check(chk("c1", "", status::PASSING, "a"), None);
        let mut remote = Remote::default();
        sync(&s, &mut remote);
        s.update_check("c1", status::PASSING, "b".into());
        // A full sync during the deferral leaves the catalog's output alone.
        assert!(sync(&s, &mut remote).is_empty());
        assert_eq!(remote.checks["c1"].output, "a");
        // A status change pushes it (with the latest output) at once.
        s.update_check("c1", status::CRITICAL, "c".into());
        let p = sync(&s, &mut remote);
        assert_eq!(p.ops.len(), 1);
        assert_eq!(remote.checks["c1"].status, "critical");
        assert_eq!(remote.checks["c1"].output, "c");
    }

    #[test]
    fn changes_during_a_write_are_not_lost() {
        let s = state();
        s.add_check(chk("c1", "", status::PASSING, ""), None);
        let mut remote = Remote::default();
        let p = {
            let mut inner = s.lock();
            plan(&mut inner)
        };
        // The check changes while the plan is being written.
        s.update_check("c1", status::CRITICAL, "down".into());
        apply(&mut remote, &p);
        {
            let mut inner = s.lock();
            mark(&mut inner, &p, &vec![true; p.ops.len()]);
        }
        assert!(!s.all_in_sync(), "the newer status still needs a sync");
        sync(&s, &mut remote);
        assert_eq!(remote.checks["c1"].status, "critical");
    }

    #[test]
    fn failed_ops_stay_out_of_sync() {
        let s = state();
        s.add_check(chk("c1", "", status::PASSING, ""), None);
        let p = {
            let mut inner = s.lock();
            plan(&mut inner)
        };
        {
            let mut inner = s.lock();
            mark(&mut inner, &p, &vec![false; p.ops.len()]);
        }
        assert!(!s.all_in_sync());
        let again = plan(&mut s.lock());
        assert_eq!(again.ops.len(), p.ops.len());
    }
}
