//! Catalog commands: registering and deregistering nodes, services and checks.
//!
//! The address index (`state/addresses.rs`) follows every change of a node's or an
//! instance's address here.
//!
//! Unchanged records keep their modify index, so a re-registration that changes nothing
//! (anti-entropy, an agent restart) wakes no blocking query.

use crate::state::{Shared, Table, WatchKey, WriteTxn};
use registry_proto::command::{DeregisterRequest, RegisterRequest};
use registry_proto::model::{HealthCheck, Node, NodeService, RaftIndex};
use registry_proto::CommandResponse;

/// Marks a service name as changed at the current index.
fn touch_service(txn: &mut WriteTxn<'_>, name: &str) {
    txn.db.service_index.insert(name.to_string(), txn.index);
    txn.touch(WatchKey::Service(name.to_string()));
}

/// Marks a node, and every service name on it, as changed.
fn touch_node(txn: &mut WriteTxn<'_>, node: &str, with_services: bool) {
    txn.db.node_index.insert(node.to_string(), txn.index);
    txn.touch(WatchKey::Node(node.to_string()));
    if with_services {
        let names: Vec<String> = txn
            .db
            .node_services(node)
            .map(|s| s.service.clone())
            .collect();
        for n in names {
            touch_service(txn, &n);
        }
    }
}

fn index_for(old: Option<RaftIndex>, index: u64) -> RaftIndex {
    RaftIndex {
        create_index: old.map_or(index, |o| o.create_index),
        modify_index: index,
    }
}

fn ensure_node(txn: &mut WriteTxn<'_>, node: &Node, skip_update: bool) {
    let existing = txn.db.nodes.get(&node.node);
    if let Some(old) = existing {
        if skip_update {
            return;
        }
        let mut cmp = node.clone();
        cmp.index = old.index;
        if cmp.id.is_empty() {
            cmp.id = old.id.clone();
        }
        if &cmp == old {
            return;
        }
    }
    let mut new = node.clone();
    if let Some(old) = existing {
        if new.id.is_empty() {
            new.id = old.id.clone();
        }
    }
    new.index = index_for(existing.map(|o| o.index), txn.index);
    let old_address = existing.map(|o| o.address.clone());
    txn.db.nodes.insert(new.node.clone(), new);
    txn.db
        .index_node_address(&node.node, old_address.as_deref(), Some(&node.address));
    txn.touch(WatchKey::Table(Table::Nodes));
    let name = node.node.clone();
    touch_node(txn, &name, true);
}

fn ensure_service(txn: &mut WriteTxn<'_>, node: &str, svc: &NodeService) {
    let existing = txn.db.services.get(node).and_then(|m| m.get(&svc.id));
    let old_name = existing.map(|o| o.service.clone());
    if let Some(old) = existing {
        let mut cmp = svc.clone();
        cmp.index = old.index;
        if cmp == **old {
            return;
        }
    }
    let mut new = svc.clone();
    new.index = index_for(existing.map(|o| o.index), txn.index);
    if let Some(old) = existing.cloned() {
        txn.db.index_service(node, &old, false);
    }
    if let Some(old_name) = &old_name {
        if old_name != &svc.service {
            unlink_name(txn, old_name, node, &svc.id);
            touch_service(txn, old_name);
        }
    }
    txn.db
        .services_by_name
        .entry(svc.service.clone())
        .or_default()
        .insert((node.to_string(), svc.id.clone()));
    txn.db
        .services
        .entry(node.to_string())
        .or_default()
        .insert(svc.id.clone(), Shared::new(new));
    txn.db.index_service(node, svc, true);
    // Checks carry the service's name and tags: keep them in step.
    let (name, tags) = (svc.service.clone(), svc.tags.clone());
    let index = txn.index;
    let stale = |c: &HealthCheck| {
        c.service_id == svc.id && (c.service_name != name || c.service_tags != tags)
    };
    // Looked at first, so that the node's checks are changed (and so maybe copied, see
    // `state::Shared`) only when one of them is out of step.
    if txn.db.node_checks(node).any(stale) {
        if let Some(checks) = txn.db.checks.get_mut(node) {
            for c in checks.values_mut().filter(|c| stale(c)) {
                c.service_name = name.clone();
                c.service_tags = tags.clone();
                c.index.modify_index = index;
            }
        }
        txn.touch(WatchKey::Table(Table::Checks));
    }
    txn.touch(WatchKey::Table(Table::Services));
    touch_service(txn, &name);
    touch_node(txn, node, false);
}

fn unlink_name(txn: &mut WriteTxn<'_>, name: &str, node: &str, id: &str) {
    if let Some(set) = txn.db.services_by_name.get_mut(name) {
        set.remove(&(node.to_string(), id.to_string()));
        if set.is_empty() {
            txn.db.services_by_name.remove(name);
        }
    }
}

fn ensure_check(txn: &mut WriteTxn<'_>, check: &HealthCheck) -> Result<(), String> {
    let mut new = check.clone();
    if !new.service_id.is_empty() {
        let Some(svc) = txn
            .db
            .services
            .get(&check.node)
            .and_then(|m| m.get(&check.service_id))
        else {
            return Err(format!(
                "Missing service registration: service {:?} on node {:?}",
                check.service_id, check.node
            ));
        };
        new.service_name = svc.service.clone();
        new.service_tags = svc.tags.clone();
    } else {
        new.service_name.clear();
        new.service_tags.clear();
    }
    let existing = txn
        .db
        .checks
        .get(&check.node)
        .and_then(|m| m.get(&check.check_id));
    if let Some(old) = existing {
        let mut cmp = new.clone();
        cmp.index = old.index;
        if cmp == **old {
            return Ok(());
        }
    }
    new.index = index_for(existing.map(|o| o.index), txn.index);
    let service_name = new.service_name.clone();
    let node = new.node.clone();
    let critical = new.status == registry_proto::model::status::CRITICAL;
    let check_id = new.check_id.clone();
    txn.db
        .checks
        .entry(node.clone())
        .or_default()
        .insert(new.check_id.clone(), Shared::new(new));
    if critical {
        super::session::invalidate_check(txn, &node, &check_id);
    }
    txn.touch(WatchKey::Table(Table::Checks));
    if service_name.is_empty() {
        touch_node(txn, &node, true);
    } else {
        touch_service(txn, &service_name);
        touch_node(txn, &node, false);
    }
    Ok(())
}

/// Registers a node and optionally a service and checks, all or nothing.
pub(super) fn register(txn: &mut WriteTxn<'_>, req: &RegisterRequest) -> CommandResponse {
    if req.node.node.is_empty() {
        return CommandResponse::Rejected("Must provide node".into());
    }
    if !txn.db.nodes.contains_key(&req.node.node) && req.node.address.is_empty() {
        return CommandResponse::Rejected("Must provide address".into());
    }
    // Validate checks before changing anything so a bad one leaves no half-applied write.
    for c in &req.checks {
        if c.node != req.node.node {
            return CommandResponse::Rejected("Check node does not match registration".into());
        }
        let known = req.service.as_ref().is_some_and(|s| s.id == c.service_id)
            || c.service_id.is_empty()
            || txn
                .db
                .services
                .get(&c.node)
                .is_some_and(|m| m.contains_key(&c.service_id));
        if !known {
            return CommandResponse::Rejected(format!(
                "Missing service registration: service {:?} on node {:?}",
                c.service_id, c.node
            ));
        }
    }
    ensure_node(txn, &req.node, req.skip_node_update);
    if let Some(svc) = &req.service {
        ensure_service(txn, &req.node.node, svc);
    }
    for c in &req.checks {
        if let Err(e) = ensure_check(txn, c) {
            // Unreachable after the validation above; kept as a deterministic rejection.
            return CommandResponse::Rejected(e);
        }
    }
    CommandResponse::Ok
}

fn remove_check(txn: &mut WriteTxn<'_>, node: &str, check_id: &str) {
    let Some(checks) = txn.db.checks.get_mut(node) else {
        return;
    };
    let Some(old) = checks.remove(check_id) else {
        return;
    };
    if checks.is_empty() {
        txn.db.checks.remove(node);
    }
    super::session::invalidate_check(txn, node, check_id);
    txn.touch(WatchKey::Table(Table::Checks));
    if old.service_name.is_empty() {
        touch_node(txn, node, true);
    } else {
        touch_service(txn, &old.service_name);
        touch_node(txn, node, false);
    }
}

fn remove_service(txn: &mut WriteTxn<'_>, node: &str, id: &str) {
    let Some(svcs) = txn.db.services.get_mut(node) else {
        return;
    };
    let Some(old) = svcs.remove(id) else {
        return;
    };
    if svcs.is_empty() {
        txn.db.services.remove(node);
    }
    txn.db.index_service(node, &old, false);
    let check_ids: Vec<String> = txn
        .db
        .node_checks(node)
        .filter(|c| c.service_id == id)
        .map(|c| c.check_id.clone())
        .collect();
    for c in check_ids {
        remove_check(txn, node, &c);
    }
    unlink_name(txn, &old.service, node, id);
    txn.touch(WatchKey::Table(Table::Services));
    touch_service(txn, &old.service);
    touch_node(txn, node, false);
}

/// Deregisters a check, a service (with its checks) or a whole node.
pub(super) fn deregister(txn: &mut WriteTxn<'_>, req: &DeregisterRequest) -> CommandResponse {
    if req.node.is_empty() {
        return CommandResponse::Rejected("Must provide node".into());
    }
    if let Some(id) = &req.check_id {
        remove_check(txn, &req.node, id);
    }
    if let Some(id) = &req.service_id {
        remove_service(txn, &req.node, id);
    }
    if req.check_id.is_none() && req.service_id.is_none() {
        let ids: Vec<String> = txn
            .db
            .node_services(&req.node)
            .map(|s| s.id.clone())
            .collect();
        for id in ids {
            remove_service(txn, &req.node, &id);
        }
        let checks: Vec<String> = txn
            .db
            .node_checks(&req.node)
            .map(|c| c.check_id.clone())
            .collect();
        for c in checks {
            remove_check(txn, &req.node, &c);
        }
        if let Some(old) = txn.db.nodes.remove(&req.node) {
            txn.db
                .index_node_address(&req.node, Some(&old.address), None);
            txn.touch(WatchKey::Table(Table::Nodes));
            touch_node(txn, &req.node, false);
        }
        super::session::invalidate_node(txn, &req.node);
        super::prepared_query::forget_node(txn, &req.node);
    }
    CommandResponse::Ok
}
