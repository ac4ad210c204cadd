//! The bootstrap rule on its own.

use super::bootstrap::{decide, Candidate};
use crate::raft::RegistryNode;
use std::collections::BTreeSet;

fn cand(id: u64, expect: usize, reported: &[u64]) -> Candidate {
    Candidate {
        id,
        node: RegistryNode {
            raft_addr: format!("127.0.0.{id}:8300"),
            http_addr: format!("127.0.0.{id}:8500"),
            name: format!("s{id}"),
        },
        bootstrap_expect: expect,
        initialized: false,
        fresh: true,
        candidates: reported.iter().copied().collect::<BTreeSet<_>>(),
    }
}

#[test]
fn waits_for_the_expected_count() {
    let me = cand(1, 3, &[]);
    assert!(decide(&me, &[cand(2, 3, &[1, 2])]).is_none());
}

#[test]
fn bootstraps_when_all_agree() {
    let me = cand(1, 3, &[]);
    let peers = [cand(2, 3, &[1, 2, 3]), cand(3, 3, &[1, 2, 3])];
    let set = decide(&me, &peers).expect("agreement");
    assert_eq!(set.keys().copied().collect::<Vec<_>>(), vec![1, 2, 3]);
}

#[test]
fn waits_while_a_peer_reports_another_set() {
    let me = cand(1, 3, &[]);
    let peers = [cand(2, 3, &[1, 2]), cand(3, 3, &[1, 2, 3])];
    assert!(decide(&me, &peers).is_none());
}

#[test]
fn never_bootstraps_beside_an_existing_cluster() {
    let me = cand(1, 3, &[]);
    let mut joined = cand(4, 3, &[]);
    joined.initialized = true;
    let peers = [cand(2, 3, &[1, 2, 3]), cand(3, 3, &[1, 2, 3]), joined];
    assert!(decide(&me, &peers).is_none());
}

#[test]
fn stale_reports_do_not_count() {
    let me = cand(1, 3, &[]);
    let mut old = cand(3, 3, &[1, 2, 3]);
    old.fresh = false;
    assert!(decide(&me, &[cand(2, 3, &[1, 2, 3]), old]).is_none());
}

#[test]
fn other_expectations_are_not_candidates() {
    let me = cand(1, 3, &[]);
    let peers = [cand(2, 3, &[1, 2, 3]), cand(3, 5, &[3])];
    assert!(decide(&me, &peers).is_none());
}

#[test]
fn single_server_expectation_never_uses_the_rule() {
    assert!(decide(&cand(1, 1, &[]), &[]).is_none());
}

#[test]
fn every_server_decides_the_same_set() {
    // Four servers expecting three, all seeing each other: all agree on the four.
    let all = [1, 2, 3, 4];
    let peers: Vec<Candidate> = all.iter().map(|&i| cand(i, 3, &all)).collect();
    let mut sets = Vec::new();
    for me in &peers {
        let others: Vec<Candidate> = peers.iter().filter(|p| p.id != me.id).cloned().collect();
        sets.push(decide(me, &others).expect("agreement"));
    }
    assert!(sets.windows(2).all(|w| w[0] == w[1]));
    assert_eq!(sets[0].len(), 4);
}
