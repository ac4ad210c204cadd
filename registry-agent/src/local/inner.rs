//! The data behind [`LocalState`](super::LocalState)'s lock: the entries, an index of
//! checks by service, and the *dirty sets* that let anti-entropy plan a sync without
//! scanning every entry.
//!
//! Invariant: every service or check that is out of sync or deleted has its ID in the
//! matching dirty set. The sets may hold more (any mutable access marks an ID dirty);
//! [`Inner::prune_dirty`] drops the IDs that turned out clean.

use super::node::NodeInfo;
use registry_proto::model::{HealthCheck, NodeService};
use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;
use tokio::time::Instant;

/// One local service.
#[derive(Debug, Clone)]
pub(crate) struct ServiceEntry {
    /// The service (its index is always zero).
    pub(crate) service: NodeService,
    /// The catalog has exactly this.
    pub(crate) in_sync: bool,
    /// Removed locally; the catalog entry must go.
    pub(crate) deleted: bool,
    /// Bumped on every change, so a sync only marks what it actually wrote.
    pub(crate) gen: u64,
}

impl ServiceEntry {
    fn clean(&self) -> bool {
        self.in_sync && !self.deleted
    }
}

/// One local check.
#[derive(Debug, Clone)]
pub(crate) struct CheckEntry {
    /// The check (its index is always zero).
    pub(crate) check: HealthCheck,
    /// The catalog has exactly this (output aside while a sync is deferred).
    pub(crate) in_sync: bool,
    /// Removed locally; the catalog entry must go.
    pub(crate) deleted: bool,
    /// Bumped on every change.
    pub(crate) gen: u64,
    /// An output-only change waits for this deferral (its token) to end.
    pub(crate) deferred: Option<u64>,
    /// When the check last turned critical.
    pub(crate) critical_since: Option<Instant>,
    /// Reap the check's service after it has been critical this long.
    pub(crate) deregister_after: Option<Duration>,
}

impl CheckEntry {
    fn clean(&self) -> bool {
        self.in_sync && !self.deleted
    }
}

/// Everything behind the lock; `crate::ae` reads and marks it.
#[derive(Debug)]
pub(crate) struct Inner {
    pub(crate) node: NodeInfo,
    pub(crate) node_in_sync: bool,
    pub(crate) node_gen: u64,
    services: BTreeMap<String, ServiceEntry>,
    checks: BTreeMap<String, CheckEntry>,
    /// Check IDs by the service they belong to (node checks are not indexed).
    by_service: BTreeMap<String, BTreeSet<String>>,
    dirty_services: BTreeSet<String>,
    dirty_checks: BTreeSet<String>,
    next_gen: u64,
}

impl Inner {
    pub(crate) fn new(node: NodeInfo) -> Self {
        Inner {
            node,
            node_in_sync: false,
            node_gen: 1,
            services: BTreeMap::new(),
            checks: BTreeMap::new(),
            by_service: BTreeMap::new(),
            dirty_services: BTreeSet::new(),
            dirty_checks: BTreeSet::new(),
            next_gen: 2,
        }
    }

    /// A fresh generation number.
    pub(crate) fn gen(&mut self) -> u64 {
        let g = self.next_gen;
        self.next_gen += 1;
        g
    }

    /// All service entries, tombstones included.
    pub(crate) fn services(&self) -> &BTreeMap<String, ServiceEntry> {
        &self.services
    }

    /// All check entries, tombstones included.
    pub(crate) fn checks(&self) -> &BTreeMap<String, CheckEntry> {
        &self.checks
    }

    /// A service entry to change; its ID is marked dirty.
    pub(crate) fn service_mut(&mut self, id: &str) -> Option<&mut ServiceEntry> {
        let e = self.services.get_mut(id)?;
        self.dirty_services.insert(id.to_string());
        Some(e)
    }

    /// A check entry to change (never its `service_id`); its ID is marked dirty.
    pub(crate) fn check_mut(&mut self, id: &str) -> Option<&mut CheckEntry> {
        let e = self.checks.get_mut(id)?;
        self.dirty_checks.insert(id.to_string());
        Some(e)
    }

    /// Inserts or replaces a service entry.
    pub(crate) fn put_service(&mut self, entry: ServiceEntry) {
        let id = entry.service.id.clone();
        self.dirty_services.insert(id.clone());
        self.services.insert(id, entry);
    }

    /// Inserts or replaces a check entry, keeping the service index.
    pub(crate) fn put_check(&mut self, entry: CheckEntry) {
        let id = entry.check.check_id.clone();
        self.unindex(&id);
        if !entry.check.service_id.is_empty() {
            self.by_service
                .entry(entry.check.service_id.clone())
                .or_default()
                .insert(id.clone());
        }
        self.dirty_checks.insert(id.clone());
        self.checks.insert(id, entry);
    }

    /// Forgets a service entry.
    pub(crate) fn drop_service(&mut self, id: &str) {
        self.services.remove(id);
        self.dirty_services.remove(id);
    }

    /// Forgets a check entry.
    pub(crate) fn drop_check(&mut self, id: &str) {
        self.unindex(id);
        self.checks.remove(id);
        self.dirty_checks.remove(id);
    }

    fn unindex(&mut self, id: &str) {
        let Some(old) = self.checks.get(id) else {
            return;
        };
        if let Some(set) = self.by_service.get_mut(&old.check.service_id) {
            set.remove(id);
            if set.is_empty() {
                self.by_service.remove(&old.check.service_id);
            }
        }
    }

    /// IDs of the check entries (tombstones included) bound to service `id`.
    pub(crate) fn check_ids_of(&self, service_id: &str) -> Vec<String> {
        self.by_service
            .get(service_id)
            .map(|s| s.iter().cloned().collect())
            .unwrap_or_default()
    }

    /// Drops the dirty marks of entries that are in sync (or gone).
    pub(crate) fn prune_dirty(&mut self) {
        let services = &self.services;
        self.dirty_services
            .retain(|id| services.get(id).is_some_and(|e| !e.clean()));
        let checks = &self.checks;
        self.dirty_checks
            .retain(|id| checks.get(id).is_some_and(|e| !e.clean()));
    }

    /// Recomputes the dirty sets from every entry (after a full comparison).
    pub(crate) fn rebuild_dirty(&mut self) {
        self.dirty_services = self
            .services
            .iter()
            .filter(|(_, e)| !e.clean())
            .map(|(id, _)| id.clone())
            .collect();
        self.dirty_checks = self
            .checks
            .iter()
            .filter(|(_, e)| !e.clean())
            .map(|(id, _)| id.clone())
            .collect();
    }

    /// The services marked dirty (a superset of those out of sync or deleted).
    pub(crate) fn dirty_services(&self) -> impl Iterator<Item = (&String, &ServiceEntry)> {
        self.dirty_services
            .iter()
            .filter_map(|id| self.services.get_key_value(id))
    }

    /// The checks marked dirty (a superset of those out of sync or deleted).
    pub(crate) fn dirty_checks(&self) -> impl Iterator<Item = (&String, &CheckEntry)> {
        self.dirty_checks
            .iter()
            .filter_map(|id| self.checks.get_key_value(id))
    }

    /// Mutable access to every service (tests and full comparisons); marks all dirty.
    pub(crate) fn services_mut(&mut self) -> impl Iterator<Item = (&String, &mut ServiceEntry)> {
        self.dirty_services.extend(self.services.keys().cloned());
        self.services.iter_mut()
    }

    /// Mutable access to every check (never their `service_id`); marks all dirty.
    pub(crate) fn checks_mut(&mut self) -> impl Iterator<Item = (&String, &mut CheckEntry)> {
        self.dirty_checks.extend(self.checks.keys().cloned());
        self.checks.iter_mut()
    }

    /// Keeps only the services for which `keep` holds.
    pub(crate) fn retain_services(&mut self, mut keep: impl FnMut(&String, &ServiceEntry) -> bool) {
        let gone: Vec<String> = self
            .services
            .iter()
            .filter(|(id, e)| !keep(id, e))
            .map(|(id, _)| id.clone())
            .collect();
        for id in gone {
            self.drop_service(&id);
        }
    }

    /// Keeps only the checks for which `keep` holds.
    pub(crate) fn retain_checks(&mut self, mut keep: impl FnMut(&String, &CheckEntry) -> bool) {
        let gone: Vec<String> = self
            .checks
            .iter()
            .filter(|(id, e)| !keep(id, e))
            .map(|(id, _)| id.clone())
            .collect();
        for id in gone {
            self.drop_check(&id);
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    fn check(id: &str, service: &str) -> CheckEntry {
        CheckEntry {
            check: HealthCheck {
                check_id: id.into(),
                service_id: service.into(),
                ..Default::default()
            },
            in_sync: true,
            deleted: false,
            gen: 1,
            deferred: None,
            critical_since: None,
            deregister_after: None,
        }
    }

    #[test]
    fn index_follows_rebinding_and_removal() {
        let mut i = Inner::new(NodeInfo::default());
        i.put_check(check("c1", "a"));
        i.put_check(check("c2", "a"));
        i.put_check(check("n", ""));
        assert_eq!(i.check_ids_of("a"), ["c1", "c2"]);
        // Re-registering c2 under another service moves it.
        i.put_check(check("c2", "b"));
        assert_eq!(i.check_ids_of("a"), ["c1"]);
        assert_eq!(i.check_ids_of("b"), ["c2"]);
        i.drop_check("c1");
        assert!(i.check_ids_of("a").is_empty());
        i.retain_checks(|id, _| id != "c2");
        assert!(i.check_ids_of("b").is_empty());
        assert_eq!(i.checks().len(), 1);
    }

    #[test]
    fn dirty_sets_are_pruned_and_rebuilt() {
        let mut i = Inner::new(NodeInfo::default());
        i.put_check(check("c1", ""));
        i.put_check(check("c2", ""));
        // Inserted entries are dirty until pruned, even when in sync.
        assert_eq!(i.dirty_checks().count(), 2);
        i.prune_dirty();
        assert_eq!(i.dirty_checks().count(), 0);
        i.check_mut("c1").unwrap().in_sync = false;
        i.prune_dirty();
        let dirty: Vec<&String> = i.dirty_checks().map(|(id, _)| id).collect();
        assert_eq!(dirty, ["c1"]);
        for (_, c) in i.checks_mut() {
            c.in_sync = true;
        }
        i.rebuild_dirty();
        assert_eq!(i.dirty_checks().count(), 0);
    }
}
