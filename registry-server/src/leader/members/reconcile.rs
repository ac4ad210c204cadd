//! When the leader reconciles gossip membership into the catalog: membership changes at
//! once, the whole walk on gaining leadership and every [`RECONCILE_INTERVAL`], as Consul's
//! `leaderLoop` (a Raft barrier, a full `reconcile`, then `reconcileCh` fed by Serf events
//! plus a full reconcile every `reconcile_interval`).
//!
//! The gossip layer signals that something changed, not what; [`Reconciler`] keeps the
//! status of every member as last reconciled and plans only for the members whose status
//! differs (or that are new), so a change costs catalog reads for the changed members
//! alone. Members that drop out of the list make their catalog node absent: it is
//! deregistered after [`ABSENT_GRACE`], on a timer of its own. A full walk that finds
//! nothing to change writes nothing.

use super::{
    departed_servers, has_serf_check, in_datacenter, plan, plan_member, GossipMember, MemberSource,
    MemberStatus, ABSENT_GRACE, RECONCILE_INTERVAL, TEST_RECONCILE_INTERVAL_ENV,
};
use crate::query::write::Writer;
use crate::raft::RaftHandle;
use crate::state::Store;
use registry_proto::command::DeregisterRequest;
use registry_proto::Command;
use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::watch;
use tokio::time::Instant;

/// How soon a reconciliation that could not write (or a barrier that failed) is retried,
/// and how often absent nodes are looked at again while gossip has not settled.
const RETRY: Duration = Duration::from_secs(5);

/// The full-walk interval: [`RECONCILE_INTERVAL`], or what [`TEST_RECONCILE_INTERVAL_ENV`]
/// says.
pub fn reconcile_interval() -> Duration {
    let Ok(v) = std::env::var(TEST_RECONCILE_INTERVAL_ENV) else {
        return RECONCILE_INTERVAL;
    };
    match registry_proto::duration::parse_go_duration(v.trim()) {
        Ok(d) if !d.is_zero() => d,
        _ => {
            tracing::warn!(value = %v, "ignoring {TEST_RECONCILE_INTERVAL_ENV}");
            RECONCILE_INTERVAL
        }
    }
}

/// What the leader remembers between reconciliations.
#[derive(Debug)]
pub struct Reconciler {
    self_name: String,
    datacenter: String,
    /// Each member of this datacenter's pool, with its status as last reconciled.
    seen: HashMap<String, MemberStatus>,
    /// Catalog nodes with `serfHealth` that gossip does not know, and since when.
    absent_since: HashMap<String, Instant>,
}

impl Reconciler {
    /// Nothing reconciled yet.
    pub fn new(self_name: &str, datacenter: &str) -> Reconciler {
        Reconciler {
            self_name: self_name.to_string(),
            datacenter: datacenter.to_string(),
            seen: HashMap::new(),
            absent_since: HashMap::new(),
        }
    }

    /// Forgets everything (leadership lost).
    pub fn clear(&mut self) {
        self.seen.clear();
        self.absent_since.clear();
    }

    /// The whole walk: every member and every catalog node with `serfHealth`.
    pub fn full(
        &mut self,
        store: &Store,
        members: &[GossipMember],
        settled: bool,
        now: Instant,
    ) -> Vec<Command> {
        let out = plan(
            store,
            members,
            &self.self_name,
            &self.datacenter,
            settled,
            &mut self.absent_since,
            now,
        );
        self.seen = members
            .iter()
            .filter(|m| in_datacenter(m, &self.datacenter))
            .map(|m| (m.name.clone(), m.status))
            .collect();
        out
    }

    /// The members whose status changed since the last reconciliation, the nodes of members
    /// no longer listed, and absent nodes whose grace ran out.
    pub fn changes(
        &mut self,
        store: &Store,
        members: &[GossipMember],
        settled: bool,
        now: Instant,
    ) -> Vec<Command> {
        let db = store.read();
        let mut out = Vec::new();
        let mut listed: HashSet<&str> = HashSet::with_capacity(members.len());
        for m in members {
            if !in_datacenter(m, &self.datacenter) {
                continue;
            }
            listed.insert(m.name.as_str());
            match self.seen.get_mut(&m.name) {
                Some(st) if *st == m.status => continue,
                Some(st) => *st = m.status,
                None => {
                    self.seen.insert(m.name.clone(), m.status);
                }
            }
            plan_member(&db, m, &self.self_name, &self.datacenter, &mut out);
            self.absent_since.remove(&m.name);
        }
        // Members no longer listed at all: their catalog nodes are absent from now on.
        let absent = &mut self.absent_since;
        self.seen.retain(|name, _| {
            if listed.contains(name.as_str()) {
                return true;
            }
            if *name != self.self_name && has_serf_check(&db, name) {
                absent.entry(name.clone()).or_insert(now);
            }
            false
        });
        if settled {
            let due: Vec<String> = self
                .absent_since
                .iter()
                .filter(|(_, since)| now.duration_since(**since) >= ABSENT_GRACE)
                .map(|(n, _)| n.clone())
                .collect();
            for node in due {
                self.absent_since.remove(&node);
                if has_serf_check(&db, &node) && !self.seen.contains_key(&node) {
                    out.push(Command::Deregister(DeregisterRequest {
                        node,
                        ..Default::default()
                    }));
                }
            }
        }
        out
    }

    /// When an absent node's grace runs out next (`RETRY` from `now` when one already has
    /// but gossip has not settled).
    pub fn next_absent_check(&self, now: Instant) -> Option<Instant> {
        let first = *self.absent_since.values().min()? + ABSENT_GRACE;
        Some(if first <= now { now + RETRY } else { first })
    }
}

/// Reconciles while this server leads: the whole walk after a Raft barrier when leadership
/// is gained and then every [`reconcile_interval`], membership changes as they come.
pub async fn run(
    source: Arc<dyn MemberSource>,
    store: Arc<Store>,
    writer: Writer,
    raft: Option<RaftHandle>,
    self_name: String,
    datacenter: String,
    mut leadership: watch::Receiver<bool>,
) {
    let interval = reconcile_interval();
    let mut changes = source.changes();
    let mut rec = Reconciler::new(&self_name, &datacenter);
    // When the next full walk is due; `None` until one has run under this leadership.
    let mut next_full: Option<Instant> = None;
    loop {
        let leading = *leadership.borrow_and_update();
        let mut wake = None;
        if leading {
            changes.borrow_and_update();
            let now = Instant::now();
            let full = next_full.is_none_or(|at| now >= at);
            if next_full.is_none() {
                // Consul's barrier: reconcile against every write committed so far.
                if let Some(raft) = &raft {
                    if let Err(e) = raft.ensure_linearizable().await {
                        tracing::warn!(error = %e, "reconcile barrier failed; retrying");
                        wake = Some(now + RETRY);
                    }
                }
            }
            if wake.is_none() {
                let members = source.members();
                let mut ok = match &raft {
                    Some(raft) => remove_departed(raft, &members, &self_name).await,
                    None => true,
                };
                let settled = source.settled();
                let cmds = if full {
                    next_full = Some(now + interval);
                    rec.full(&store, &members, settled, now)
                } else {
                    rec.changes(&store, &members, settled, now)
                };
                ok &= apply(&writer, cmds).await;
                if !ok {
                    // Walk everything again soon: what failed is not remembered.
                    next_full = Some(Instant::now() + RETRY);
                }
                wake = [next_full, rec.next_absent_check(Instant::now())]
                    .into_iter()
                    .flatten()
                    .min();
            }
        } else {
            rec.clear();
            next_full = None;
        }
        let sleep = async {
            match wake {
                Some(at) => tokio::time::sleep_until(at).await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            r = leadership.changed() => if r.is_err() { return },
            r = changes.changed(), if leading => if r.is_err() { return },
            _ = sleep => {}
        }
    }
}

/// Removes from the Raft configuration the servers whose member left or was reaped; false
/// when that failed.
async fn remove_departed(raft: &RaftHandle, members: &[GossipMember], self_name: &str) -> bool {
    let gone = departed_servers(members, self_name, &raft.configuration());
    if gone.is_empty() {
        return true;
    }
    match raft.remove_servers(gone.clone()).await {
        Ok(()) => {
            tracing::info!(servers = ?gone, "removed departed servers from Raft");
            true
        }
        Err(e) => {
            tracing::warn!(servers = ?gone, error = %e, "cannot remove departed servers from Raft");
            false
        }
    }
}

/// Proposes `cmds` in order; false when one failed (the rest are not sent).
async fn apply(writer: &Writer, cmds: Vec<Command>) -> bool {
    for cmd in cmds {
        let what = describe(&cmd);
        match writer.apply(cmd).await {
            Ok(_) => tracing::info!(change = %what, "member reconciled into the catalog"),
            Err(e) => {
                tracing::warn!(change = %what, error = %e, "member reconcile failed");
                return false;
            }
        }
    }
    true
}

fn describe(cmd: &Command) -> String {
    match cmd {
        Command::Register(r) => {
            let st = r.checks.first().map(|c| c.status.as_str()).unwrap_or("");
            format!("node {} serfHealth {st}", r.node.node)
        }
        Command::Deregister(d) => format!("deregister node {}", d.node),
        _ => "other".to_string(),
    }
}
