//! The address index: which nodes and service instances carry an IP address, for DNS
//! reverse lookups (PTR) in O(log n) instead of a walk over every node and instance.
//!
//! [`Db::addresses`] maps each address to the sorted list of what carries it: nodes by name
//! first, then instances by (node, instance ID), the order in which a reverse lookup picks
//! its answer (the first node, else the first instance, as Consul's `handlePtr`). An
//! address is indexed only when it parses as an IP, as only those are ever answered.
//!
//! An instance whose address is its own node's address is not indexed: the node already
//! answers for that address, so listing every such instance (most of them, in a catalog
//! whose instances repeat their node's address) would cost memory for nothing. The one case
//! where such an instance could answer, a read view with its node hidden by ACLs, is covered
//! by [`Db::address_owner`], which then looks at the hidden node's instances.
//!
//! The index is derived data: it is not part of the snapshot encoding (the format is
//! unchanged) and is rebuilt when a state is decoded. The catalog write paths (`fsm/catalog.rs`)
//! keep it current through [`Db::index_service`] and [`Db::index_node_address`]; a rolled
//! back transaction puts back the entries it saved (`fsm/txn_undo.rs`).
//!
//! Like every table it is [`Shared`] twice (the map, and each address's list), so a write
//! while a snapshot holds the state copies the map's keys and pointers and the one list
//! being changed, never the whole index.

use super::{Db, Shared};
use registry_proto::model::{Node, NodeService};
use std::collections::BTreeMap;
use std::net::IpAddr;

/// Something that carries an address. Nodes sort before instances, so the first entry of a
/// list is the reverse lookup's answer.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub enum AddrRef {
    /// A node, by name.
    Node(String),
    /// A service instance, by (node, instance ID).
    Service(String, String),
}

/// What carries one address, sorted, without duplicates.
pub type AddrRefs = Vec<AddrRef>;

/// The index type: address to what carries it.
pub type AddressIndex = BTreeMap<IpAddr, Shared<AddrRefs>>;

/// The answer to a reverse lookup.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AddrOwner<'a> {
    /// A node carries the address.
    Node(&'a Node),
    /// No node does; this instance (on the named node) does.
    Service {
        /// The instance's node name.
        node: &'a str,
        /// The instance.
        service: &'a NodeService,
    },
}

/// The IP an address string names, if it is one.
pub fn parse_ip(s: &str) -> Option<IpAddr> {
    s.parse().ok()
}

impl Db {
    /// The address of `node` as an IP, if it has one.
    fn node_ip(&self, node: &str) -> Option<IpAddr> {
        self.nodes.get(node).and_then(|n| parse_ip(&n.address))
    }

    /// The address under which an instance of `node` with `address` is indexed: its own IP,
    /// unless that is its node's.
    fn service_key(&self, node: &str, address: &str) -> Option<IpAddr> {
        let ip = parse_ip(address)?;
        (self.node_ip(node) != Some(ip)).then_some(ip)
    }

    fn link_addr(&mut self, ip: IpAddr, r: AddrRef) {
        // Most addresses have one carrier: no room for more until a second one comes.
        let refs = self
            .addresses
            .entry(ip)
            .or_insert_with(|| Shared::new(Vec::with_capacity(1)));
        if let Err(at) = refs.binary_search(&r) {
            refs.insert(at, r);
        }
    }

    fn unlink_addr(&mut self, ip: IpAddr, r: &AddrRef) {
        // Looked up first, so that nothing shared is copied when there is nothing to remove.
        let Some(at) = self
            .addresses
            .get(&ip)
            .and_then(|refs| refs.binary_search(r).ok())
        else {
            return;
        };
        if let Some(refs) = self.addresses.get_mut(&ip) {
            refs.remove(at);
            if refs.is_empty() {
                self.addresses.remove(&ip);
            }
        }
    }

    /// Adds (`on`) or removes the entry of instance `svc` of `node`, as the node's address
    /// is now. Call it with the record as stored: before removing or replacing it (off),
    /// after storing it (on).
    pub(crate) fn index_service(&mut self, node: &str, svc: &NodeService, on: bool) {
        let Some(ip) = self.service_key(node, &svc.address) else {
            return;
        };
        let r = AddrRef::Service(node.to_string(), svc.id.clone());
        if on {
            self.link_addr(ip, r);
        } else {
            self.unlink_addr(ip, &r);
        }
    }

    /// Moves `node`'s entry from address `old` to `new` (`None`: no record), with the
    /// instances of the node that are indexed only while their address is not the node's.
    pub(crate) fn index_node_address(&mut self, node: &str, old: Option<&str>, new: Option<&str>) {
        let (old, new) = (old.and_then(parse_ip), new.and_then(parse_ip));
        if old == new {
            return;
        }
        let r = AddrRef::Node(node.to_string());
        if let Some(ip) = old {
            self.unlink_addr(ip, &r);
        }
        if let Some(ip) = new {
            self.link_addr(ip, r);
        }
        // Instances at the old address are listed now; those at the new one no longer.
        let flips: Vec<(IpAddr, String, bool)> = self
            .node_services(node)
            .filter_map(|s| {
                let ip = parse_ip(&s.address)?;
                if Some(ip) == old {
                    Some((ip, s.id.clone(), true))
                } else if Some(ip) == new {
                    Some((ip, s.id.clone(), false))
                } else {
                    None
                }
            })
            .collect();
        for (ip, id, on) in flips {
            let r = AddrRef::Service(node.to_string(), id);
            if on {
                self.link_addr(ip, r);
            } else {
                self.unlink_addr(ip, &r);
            }
        }
    }

    /// The index computed from the nodes and services tables.
    pub fn computed_addresses(&self) -> AddressIndex {
        let mut out: BTreeMap<IpAddr, AddrRefs> = BTreeMap::new();
        for (name, n) in self.nodes.iter() {
            if let Some(ip) = parse_ip(&n.address) {
                out.entry(ip).or_default().push(AddrRef::Node(name.clone()));
            }
        }
        for (node, svcs) in self.services.iter() {
            for s in svcs.values() {
                if let Some(ip) = self.service_key(node, &s.address) {
                    out.entry(ip)
                        .or_default()
                        .push(AddrRef::Service(node.clone(), s.id.clone()));
                }
            }
        }
        out.into_iter()
            .map(|(ip, mut refs)| {
                refs.sort();
                refs.shrink_to_fit();
                (ip, Shared::new(refs))
            })
            .collect()
    }

    /// Rebuilds the index from the tables (after decoding a state).
    pub fn rebuild_addresses(&mut self) {
        self.addresses = Shared::new(self.computed_addresses());
    }

    /// What answers a reverse lookup of `ip`: the first node (by name) whose address it is,
    /// else the first instance (by node, then instance ID). Entries whose record is missing
    /// from this view (a view filtered by ACLs) are passed over.
    pub fn address_owner(&self, ip: IpAddr) -> Option<AddrOwner<'_>> {
        let refs = self.addresses.get(&ip)?;
        let mut hidden: Vec<&str> = Vec::new();
        let mut first: Option<(&str, &NodeService)> = None;
        for r in refs.iter() {
            match r {
                AddrRef::Node(name) => match self.nodes.get(name) {
                    Some(n) => return Some(AddrOwner::Node(n)),
                    None => hidden.push(name.as_str()),
                },
                AddrRef::Service(node, id) => {
                    if let Some(s) = self.services.get(node).and_then(|m| m.get(id)) {
                        first = Some((node.as_str(), &**s));
                        break;
                    }
                }
            }
        }
        // A hidden node's instances at its own address are not listed: look at them here.
        for node in hidden {
            let own = self
                .node_services(node)
                .find(|s| parse_ip(&s.address) == Some(ip));
            if let Some(s) = own {
                if first.is_none_or(|(n, f)| (node, s.id.as_str()) < (n, f.id.as_str())) {
                    first = Some((node, s));
                }
            }
        }
        first.map(|(node, service)| AddrOwner::Service { node, service })
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests;
