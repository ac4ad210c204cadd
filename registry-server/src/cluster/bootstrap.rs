//! The bootstrap decision: when may a server that belongs to no cluster initialize Raft, and
//! with whom. Pure functions over the peers' last reports, so the rule can be tested alone.
//!
//! The rule, which yields one cluster even when every server starts at the same moment:
//! 1. never while any known peer already belongs to a cluster (join that one instead);
//! 2. the candidates are this server and the unjoined peers with the same `bootstrap_expect`;
//!    there must be at least `bootstrap_expect` of them;
//! 3. every other candidate's fresh report must name exactly the same candidate set.
//!
//! All servers that decide therefore decide on the same set, and all of them initialize Raft
//! with that same membership, which openraft allows (the initial entries are identical). A
//! server that reported a set and then decided reports "initialized" from then on, so no one
//! can later agree on a different set that includes it.

use crate::raft::{NodeId, RegistryNode};
use std::collections::{BTreeMap, BTreeSet};

/// A server as the bootstrap rule sees it.
#[derive(Debug, Clone)]
pub struct Candidate {
    /// Raft node ID.
    pub id: NodeId,
    /// Its node.
    pub node: RegistryNode,
    /// Its `bootstrap_expect`.
    pub bootstrap_expect: usize,
    /// Whether it already belongs to a cluster.
    pub initialized: bool,
    /// Whether its report is recent enough to count for agreement.
    pub fresh: bool,
    /// The candidate set it reported.
    pub candidates: BTreeSet<NodeId>,
}

/// The candidate set `me` proposes: itself and the unjoined peers expecting as many servers.
pub fn candidates(me: &Candidate, peers: &[Candidate]) -> BTreeMap<NodeId, RegistryNode> {
    let mut set = BTreeMap::from([(me.id, me.node.clone())]);
    for p in peers {
        if !p.initialized && p.bootstrap_expect == me.bootstrap_expect && p.id != me.id {
            set.insert(p.id, p.node.clone());
        }
    }
    set
}

/// The membership to bootstrap with, when the rule allows it now.
pub fn decide(me: &Candidate, peers: &[Candidate]) -> Option<BTreeMap<NodeId, RegistryNode>> {
    if me.bootstrap_expect < 2 || peers.iter().any(|p| p.initialized) {
        return None;
    }
    let set = candidates(me, peers);
    if set.len() < me.bootstrap_expect {
        return None;
    }
    let ids: BTreeSet<NodeId> = set.keys().copied().collect();
    let agreed = peers
        .iter()
        .filter(|p| ids.contains(&p.id))
        .all(|p| p.fresh && p.candidates == ids);
    agreed.then_some(set)
}
