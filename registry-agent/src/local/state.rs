//! [`LocalState`]: the services and checks registered with this agent, with per-entry sync
//! flags, behind one lock. No method holds the lock across an `.await`.

use super::inner::{CheckEntry, Inner, ServiceEntry};
use super::node::NodeInfo;
use parking_lot::{Mutex, MutexGuard};
use rand::Rng;
use registry_proto::model::{status, HealthCheck, NodeService};
use std::sync::{Arc, Weak};
use std::time::Duration;
use tokio::sync::{watch, Notify};
use tokio::time::Instant;

/// ID of the node maintenance check.
pub const NODE_MAINT_CHECK_ID: &str = "_node_maintenance";
/// Prefix of a service maintenance check's ID (`_service_maintenance:<service id>`).
pub const SERVICE_MAINT_PREFIX: &str = "_service_maintenance:";

/// Tuning of the local state.
#[derive(Debug, Clone, Copy)]
pub struct LocalOptions {
    /// How long an output-only change may wait before it is synced (Consul's
    /// `check_update_interval`, 5m). Zero syncs every change at once.
    pub check_update_interval: Duration,
    /// Drop check output entirely (`discard_check_output`).
    pub discard_check_output: bool,
}

impl Default for LocalOptions {
    fn default() -> Self {
        LocalOptions {
            check_update_interval: Duration::from_secs(300),
            discard_check_output: false,
        }
    }
}

/// Aggregated status of a set of checks, as Consul's `HealthChecks.AggregatedStatus`:
/// `maintenance` if any maintenance check is present, else the worst status, else passing.
pub fn aggregated_status<'a>(checks: impl IntoIterator<Item = &'a HealthCheck>) -> &'static str {
    let (mut warning, mut critical) = (false, false);
    for c in checks {
        if c.check_id == NODE_MAINT_CHECK_ID || c.check_id.starts_with(SERVICE_MAINT_PREFIX) {
            return status::MAINTENANCE;
        }
        match c.status.as_str() {
            status::PASSING => {}
            status::WARNING => warning = true,
            _ => critical = true,
        }
    }
    if critical {
        status::CRITICAL
    } else if warning {
        status::WARNING
    } else {
        status::PASSING
    }
}

/// The agent's local services and checks.
#[derive(Debug)]
pub struct LocalState {
    inner: Mutex<Inner>,
    trigger: Notify,
    /// Bumped on every change (alias checks of local services follow it).
    version: watch::Sender<u64>,
    opts: LocalOptions,
    me: Weak<LocalState>,
}

fn random_stagger(d: Duration) -> Duration {
    let nanos = u64::try_from(d.as_nanos()).unwrap_or(u64::MAX);
    if nanos == 0 {
        return Duration::ZERO;
    }
    Duration::from_nanos(rand::thread_rng().gen_range(0..nanos))
}

impl LocalState {
    /// Local state for `node`, with nothing registered and the node itself not yet synced.
    pub fn new(node: NodeInfo, opts: LocalOptions) -> Arc<Self> {
        Arc::new_cyclic(|me| LocalState {
            inner: Mutex::new(Inner::new(node)),
            trigger: Notify::new(),
            version: watch::channel(0).0,
            opts,
            me: me.clone(),
        })
    }

    /// Woken (one permit, coalesced) whenever something needs syncing.
    pub fn trigger(&self) -> &Notify {
        &self.trigger
    }

    /// The options this state was built with.
    pub fn options(&self) -> LocalOptions {
        self.opts
    }

    pub(crate) fn lock(&self) -> MutexGuard<'_, Inner> {
        self.inner.lock()
    }

    fn changed(&self) {
        self.trigger.notify_one();
        self.bump();
    }

    fn bump(&self) {
        self.version.send_modify(|v| *v = v.wrapping_add(1));
    }

    /// A receiver marked changed whenever a service or check changes (output included).
    pub fn subscribe(&self) -> watch::Receiver<u64> {
        self.version.subscribe()
    }

    /// This node's identity.
    pub fn node(&self) -> NodeInfo {
        self.inner.lock().node.clone()
    }

    /// Replaces this node's identity (address or metadata changed); syncs it.
    pub fn set_node(&self, node: NodeInfo) {
        let mut inner = self.inner.lock();
        if inner.node != node {
            inner.node = node;
            inner.node_in_sync = false;
            inner.node_gen = inner.gen();
            drop(inner);
            self.changed();
        }
    }

    /// Marks the node (and `serfHealth`) for re-registration at the next sync.
    pub fn resync_node(&self) {
        let mut inner = self.inner.lock();
        inner.node_in_sync = false;
        inner.node_gen = inner.gen();
        drop(inner);
        self.changed();
    }

    /// Adds or replaces a service. Its index is cleared; an identical re-registration of a
    /// synced service stays in sync. The checks already bound to it get its name and tags.
    pub fn add_service(&self, mut service: NodeService) {
        service.index = Default::default();
        let mut inner = self.inner.lock();
        let gen = inner.gen();
        let in_sync = inner
            .services()
            .get(&service.id)
            .is_some_and(|e| !e.deleted && e.in_sync && e.service == service);
        for cid in inner.check_ids_of(&service.id) {
            if let Some(c) = inner.check_mut(&cid).filter(|c| !c.deleted) {
                c.check.service_name = service.service.clone();
                c.check.service_tags = service.tags.clone();
            }
        }
        inner.put_service(ServiceEntry {
            service,
            in_sync,
            deleted: false,
            gen,
        });
        drop(inner);
        self.changed();
    }

    /// Removes a service and its checks; `None` when no such service is registered,
    /// else the IDs of the checks that went with it.
    pub fn remove_service(&self, id: &str) -> Option<Vec<String>> {
        let mut inner = self.inner.lock();
        if inner.services().get(id).is_none_or(|e| e.deleted) {
            return None;
        }
        let gen = inner.gen();
        if let Some(e) = inner.service_mut(id) {
            e.deleted = true;
            e.in_sync = false;
            e.gen = gen;
        }
        let mut removed = Vec::new();
        for cid in inner.check_ids_of(id) {
            if let Some(c) = inner.check_mut(&cid).filter(|c| !c.deleted) {
                c.deleted = true;
                c.in_sync = false;
                c.deferred = None;
                c.gen = gen;
                removed.push(cid);
            }
        }
        drop(inner);
        self.changed();
        Some(removed)
    }

    /// A registered service.
    pub fn service(&self, id: &str) -> Option<NodeService> {
        let inner = self.inner.lock();
        inner
            .services()
            .get(id)
            .filter(|e| !e.deleted)
            .map(|e| e.service.clone())
    }

    /// All registered services, by ID.
    pub fn services(&self) -> Vec<NodeService> {
        let inner = self.inner.lock();
        inner
            .services()
            .values()
            .filter(|e| !e.deleted)
            .map(|e| e.service.clone())
            .collect()
    }

    /// Adds or replaces a check. `deregister_after` reaps the check's service once the
    /// check has been critical that long.
    pub fn add_check(&self, mut check: HealthCheck, deregister_after: Option<Duration>) {
        check.index = Default::default();
        if self.opts.discard_check_output {
            check.output.clear();
        }
        let mut inner = self.inner.lock();
        if let Some(s) = inner
            .services()
            .get(&check.service_id)
            .filter(|e| !e.deleted)
        {
            check.service_name = s.service.service.clone();
            check.service_tags = s.service.tags.clone();
        }
        let gen = inner.gen();
        let existing = inner.checks().get(&check.check_id).filter(|e| !e.deleted);
        let in_sync = existing.is_some_and(|e| e.in_sync && e.check == check);
        // Keep the critical clock running across a re-registration.
        let critical_since = existing
            .and_then(|e| e.critical_since)
            .filter(|_| check.status == status::CRITICAL);
        inner.put_check(CheckEntry {
            check,
            in_sync,
            deleted: false,
            gen,
            deferred: None,
            critical_since,
            deregister_after,
        });
        drop(inner);
        self.changed();
    }

    /// Removes a check; false when no such check is registered.
    pub fn remove_check(&self, id: &str) -> bool {
        let mut inner = self.inner.lock();
        if inner.checks().get(id).is_none_or(|e| e.deleted) {
            return false;
        }
        let gen = inner.gen();
        if let Some(c) = inner.check_mut(id) {
            c.deleted = true;
            c.in_sync = false;
            c.deferred = None;
            c.gen = gen;
        }
        drop(inner);
        self.changed();
        true
    }

    /// A registered check.
    pub fn check(&self, id: &str) -> Option<HealthCheck> {
        let inner = self.inner.lock();
        inner
            .checks()
            .get(id)
            .filter(|e| !e.deleted)
            .map(|e| e.check.clone())
    }

    /// All registered checks, by ID.
    pub fn checks(&self) -> Vec<HealthCheck> {
        let inner = self.inner.lock();
        inner
            .checks()
            .values()
            .filter(|e| !e.deleted)
            .map(|e| e.check.clone())
            .collect()
    }

    /// The checks of one service, plus the node-level checks when `include_node`.
    pub fn checks_for_service(&self, service_id: &str, include_node: bool) -> Vec<HealthCheck> {
        let inner = self.inner.lock();
        let mut out: Vec<HealthCheck> = inner
            .check_ids_of(service_id)
            .iter()
            .filter_map(|id| inner.checks().get(id))
            .filter(|e| !e.deleted)
            .map(|e| e.check.clone())
            .collect();
        if include_node {
            out.extend(
                inner
                    .checks()
                    .values()
                    .filter(|e| !e.deleted && e.check.service_id.is_empty())
                    .map(|e| e.check.clone()),
            );
            out.sort_by(|a, b| a.check_id.cmp(&b.check_id));
        }
        out
    }

    /// Records a check result (Consul's `State.UpdateCheck`).
    ///
    /// A status change is synced at once. An output-only change is kept locally and synced
    /// after `check_update_interval/2 + rand(check_update_interval)`, unless a status
    /// change or a full sync pushes it earlier. Unknown and removed checks are ignored.
    pub fn update_check(&self, id: &str, new_status: &str, output: String) {
        let output = if self.opts.discard_check_output {
            String::new()
        } else {
            output
        };
        let mut inner = self.inner.lock();
        let gen = inner.gen();
        let Some(c) = inner.check_mut(id).filter(|e| !e.deleted) else {
            return;
        };
        if new_status == status::CRITICAL {
            if c.critical_since.is_none() {
                c.critical_since = Some(Instant::now());
            }
        } else {
            c.critical_since = None;
        }
        if c.check.status == new_status && c.check.output == output {
            return;
        }
        let interval = self.opts.check_update_interval;
        if !interval.is_zero() && c.check.status == new_status {
            c.check.output = output;
            c.gen = gen;
            if c.deferred.is_none() && c.in_sync {
                c.deferred = Some(gen);
                drop(inner);
                self.defer_sync(id.to_string(), gen, interval / 2 + random_stagger(interval));
            } else {
                drop(inner);
            }
            self.bump();
            return;
        }
        if c.check.status != new_status {
            tracing::info!(check = %id, from = %c.check.status, to = %new_status, "check status changed");
        }
        c.check.status = new_status.to_string();
        c.check.output = output;
        c.in_sync = false;
        c.gen = gen;
        drop(inner);
        self.changed();
    }

    /// Ends an output deferral after `after`: the check is marked out of sync, unless it
    /// was synced, removed or re-registered in the meantime.
    fn defer_sync(&self, id: String, token: u64, after: Duration) {
        let Ok(rt) = tokio::runtime::Handle::try_current() else {
            // No runtime to run the timer on: sync the output now instead.
            self.end_deferral(&id, token);
            return;
        };
        let me = self.me.clone();
        rt.spawn(async move {
            tokio::time::sleep(after).await;
            if let Some(state) = me.upgrade() {
                state.end_deferral(&id, token);
            }
        });
    }

    fn end_deferral(&self, id: &str, token: u64) {
        let mut inner = self.inner.lock();
        let due = inner
            .checks()
            .get(id)
            .is_some_and(|c| c.deferred == Some(token) && !c.deleted);
        if !due {
            return;
        }
        if let Some(c) = inner.check_mut(id) {
            c.deferred = None;
            c.in_sync = false;
        }
        drop(inner);
        tracing::debug!(check = %id, "deferred check output due for sync");
        self.changed();
    }

    /// Services whose check has been critical longer than its
    /// `DeregisterCriticalServiceAfter`, with that check's ID.
    pub fn services_to_reap(&self, now: Instant) -> Vec<(String, String)> {
        let inner = self.inner.lock();
        let mut out: Vec<(String, String)> = Vec::new();
        for (id, c) in inner.checks() {
            if c.deleted || c.check.service_id.is_empty() {
                continue;
            }
            let (Some(since), Some(after)) = (c.critical_since, c.deregister_after) else {
                continue;
            };
            if now.saturating_duration_since(since) > after
                && !out.iter().any(|(s, _)| *s == c.check.service_id)
            {
                out.push((c.check.service_id.clone(), id.clone()));
            }
        }
        out
    }

    /// Whether every entry and the node are in sync (used by tests and diagnostics).
    pub fn all_in_sync(&self) -> bool {
        let inner = self.inner.lock();
        inner.node_in_sync
            && inner.services().values().all(|e| e.in_sync && !e.deleted)
            && inner.checks().values().all(|e| e.in_sync && !e.deleted)
    }
}

impl crate::checks::CheckNotifier for LocalState {
    fn update_check(&self, check_id: &str, status: &str, output: String) {
        LocalState::update_check(self, check_id, status, output);
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;
    use std::net::{IpAddr, Ipv4Addr};

    fn node() -> NodeInfo {
        NodeInfo::new(
            "n1",
            "",
            "dc1",
            IpAddr::V4(Ipv4Addr::LOCALHOST),
            &BTreeMap::new(),
            "1.20.0",
        )
    }

    fn svc(id: &str) -> NodeService {
        NodeService {
            id: id.into(),
            service: "web".into(),
            tags: vec!["a".into()],
            ..Default::default()
        }
    }

    fn chk(id: &str, service: &str, st: &str) -> HealthCheck {
        HealthCheck {
            node: "n1".into(),
            check_id: id.into(),
            name: id.into(),
            status: st.into(),
            service_id: service.into(),
            ..Default::default()
        }
    }

    fn mark_all_in_sync(s: &LocalState) {
        let mut inner = s.lock();
        inner.node_in_sync = true;
        inner.retain_services(|_, e| !e.deleted);
        inner.retain_checks(|_, e| !e.deleted);
        for (_, e) in inner.services_mut() {
            e.in_sync = true;
        }
        for (_, e) in inner.checks_mut() {
            e.in_sync = true;
            e.deferred = None;
        }
    }

    #[test]
    fn remove_service_takes_its_checks() {
        let s = LocalState::new(node(), LocalOptions::default());
        s.add_service(svc("web1"));
        s.add_check(chk("c1", "web1", status::CRITICAL), None);
        s.add_check(chk("node", "", status::PASSING), None);
        assert_eq!(s.check("c1").map(|c| c.service_name), Some("web".into()));
        assert_eq!(s.remove_service("web1"), Some(vec!["c1".to_string()]));
        assert!(s.service("web1").is_none());
        assert!(s.check("c1").is_none());
        assert!(s.check("node").is_some());
        assert_eq!(s.remove_service("web1"), None);
        assert!(!s.remove_check("c1"));
        assert!(s.remove_check("node"));
    }

    #[test]
    fn identical_re_registration_stays_in_sync() {
        let s = LocalState::new(node(), LocalOptions::default());
        s.add_service(svc("web1"));
        s.add_check(chk("c1", "web1", status::PASSING), None);
        mark_all_in_sync(&s);
        s.add_service(svc("web1"));
        s.add_check(chk("c1", "web1", status::PASSING), None);
        assert!(s.all_in_sync());
        let mut changed = svc("web1");
        changed.port = 80;
        s.add_service(changed);
        assert!(!s.all_in_sync());
    }

    #[tokio::test(start_paused = true)]
    async fn output_only_changes_are_deferred() {
        let opts = LocalOptions {
            check_update_interval: Duration::from_secs(60),
            discard_check_output: false,
        };
        let s = LocalState::new(node(), opts);
        s.add_check(chk("c1", "", status::PASSING), None);
        mark_all_in_sync(&s);

        // Same status, new output: kept locally, still in sync for now.
        s.update_check("c1", status::PASSING, "out 1".into());
        assert_eq!(s.check("c1").map(|c| c.output), Some("out 1".into()));
        assert!(s.all_in_sync());
        // At most 1.5 intervals later the deferral ends and the check needs a sync.
        tokio::time::sleep(Duration::from_secs(91)).await;
        assert!(!s.all_in_sync());

        // A status change is never deferred.
        mark_all_in_sync(&s);
        s.update_check("c1", status::CRITICAL, "down".into());
        assert!(!s.all_in_sync());
    }

    #[tokio::test(start_paused = true)]
    async fn subscribers_see_every_change_but_not_repeats() {
        let s = LocalState::new(node(), LocalOptions::default());
        let mut rx = s.subscribe();
        s.add_check(chk("c1", "", status::PASSING), None);
        assert!(rx.has_changed().unwrap());
        rx.borrow_and_update();
        // An output-only change is deferred for the catalog, but seen locally.
        s.update_check("c1", status::PASSING, "new".into());
        assert!(rx.has_changed().unwrap());
        rx.borrow_and_update();
        // The same result again changes nothing.
        s.update_check("c1", status::PASSING, "new".into());
        assert!(!rx.has_changed().unwrap());
        s.remove_check("c1");
        assert!(rx.has_changed().unwrap());
    }

    #[tokio::test(start_paused = true)]
    async fn zero_interval_syncs_output_at_once() {
        let opts = LocalOptions {
            check_update_interval: Duration::ZERO,
            discard_check_output: false,
        };
        let s = LocalState::new(node(), opts);
        s.add_check(chk("c1", "", status::PASSING), None);
        mark_all_in_sync(&s);
        s.update_check("c1", status::PASSING, "new".into());
        assert!(!s.all_in_sync());
    }

    #[tokio::test(start_paused = true)]
    async fn reaping_follows_the_critical_clock() {
        let s = LocalState::new(node(), LocalOptions::default());
        s.add_service(svc("web1"));
        s.add_check(
            chk("c1", "web1", status::PASSING),
            Some(Duration::from_secs(60)),
        );
        s.update_check("c1", status::CRITICAL, "down".into());
        tokio::time::sleep(Duration::from_secs(30)).await;
        assert!(s.services_to_reap(Instant::now()).is_empty());
        // Recovering resets the clock.
        s.update_check("c1", status::PASSING, "up".into());
        s.update_check("c1", status::CRITICAL, "down".into());
        tokio::time::sleep(Duration::from_secs(45)).await;
        assert!(s.services_to_reap(Instant::now()).is_empty());
        tokio::time::sleep(Duration::from_secs(20)).await;
        assert_eq!(
            s.services_to_reap(Instant::now()),
            vec![("web1".to_string(), "c1".to_string())]
        );
    }

    #[test]
    fn aggregated() {
        let p = chk("a", "s", status::PASSING);
        let w = chk("b", "s", status::WARNING);
        let c = chk("c", "s", status::CRITICAL);
        let m = chk("_service_maintenance:s", "s", status::CRITICAL);
        let n = chk("_node_maintenance", "", status::CRITICAL);
        assert_eq!(aggregated_status([]), status::PASSING);
        assert_eq!(aggregated_status([&p]), status::PASSING);
        assert_eq!(aggregated_status([&p, &w]), status::WARNING);
        assert_eq!(aggregated_status([&p, &w, &c]), status::CRITICAL);
        assert_eq!(aggregated_status([&p, &m]), status::MAINTENANCE);
        assert_eq!(aggregated_status([&c, &n]), status::MAINTENANCE);
    }
}
