//! In-process clusters on loopback ports: learners promoted to voters, servers removed (the
//! leader too), leadership transferred.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use super::*;
use crate::config::ServerConfig;
use crate::rpc::{operator_routes, raft_routes};
use crate::state::Store;
use registry_proto::model::DirEntry;
use registry_proto::Command;
use std::collections::BTreeMap;
use std::sync::Arc;

struct TestNode {
    handle: RaftHandle,
    server: tokio::task::JoinHandle<()>,
}

impl TestNode {
    fn id(&self) -> NodeId {
        self.handle.node_id()
    }
}

/// An in-memory node that waits to be initialized or added, serving the Raft and operator
/// endpoints on an ephemeral loopback port.
async fn node(name: &str) -> TestNode {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let mut cfg = ServerConfig::dev(name);
    cfg.dev = false;
    cfg.data_dir = None;
    cfg.bootstrap_expect = 3;
    cfg.server_port = listener.local_addr().unwrap().port();
    let handle = RaftHandle::start(&cfg, Arc::new(Store::new()))
        .await
        .unwrap();
    let app = raft_routes(handle.clone()).merge(operator_routes(handle.clone()));
    let server = tokio::spawn(async move {
        axum::serve(listener, app).await.unwrap();
    });
    TestNode { handle, server }
}

async fn shutdown(nodes: &[TestNode]) {
    for n in nodes {
        n.handle.shutdown().await;
        n.server.abort();
    }
}

/// Waits until some node of `nodes` leads, as seen by `nodes[from]`, and returns its index.
async fn leader_of(nodes: &[TestNode], timeout: Duration) -> usize {
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        if let Some(i) = nodes.iter().position(|n| n.handle.is_leader()) {
            return i;
        }
        assert!(tokio::time::Instant::now() < deadline, "no leader elected");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn write(h: &RaftHandle, i: usize) {
    let cmd = Command::KvSet {
        entry: DirEntry {
            key: format!("k/{i}"),
            value: b"v".to_vec().into(),
            ..Default::default()
        },
    };
    h.write(cmd).await.unwrap();
}

/// A cluster whose first node bootstrapped alone and added the others as learners.
async fn one_voter_and_learners(n: usize) -> Vec<TestNode> {
    let mut nodes = Vec::new();
    for i in 0..n {
        nodes.push(node(&format!("m{i}")).await);
    }
    let first = &nodes[0].handle;
    first
        .raft()
        .initialize(BTreeMap::from([(first.node_id(), first.node().clone())]))
        .await
        .unwrap();
    first
        .raft()
        .wait(Some(Duration::from_secs(10)))
        .state(ServerState::Leader, "bootstrap leader")
        .await
        .unwrap();
    for n in &nodes[1..] {
        first
            .add_learner(n.id(), n.handle.node().clone())
            .await
            .unwrap();
    }
    nodes
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn learners_are_promoted_then_removed_and_leadership_moves() {
    let nodes = one_voter_and_learners(3).await;
    let leader = &nodes[0].handle;
    for i in 0..20 {
        write(leader, i).await;
    }
    let last = leader.metrics().borrow().last_log_index.unwrap();
    // The learners catch up; the configuration shows them, with their log position.
    let cfg = leader
        .raft()
        .wait(Some(Duration::from_secs(10)))
        .metrics(
            |m| {
                m.replication.as_ref().is_some_and(|r| {
                    r.len() == 3 && r.values().all(|l| l.is_some_and(|l| l.index >= last))
                })
            },
            "learners caught up",
        )
        .await
        .map(|_| leader.configuration())
        .unwrap();
    assert_eq!(cfg.servers.len(), 3);
    assert_eq!(cfg.voters().collect::<Vec<_>>(), vec![nodes[0].id()]);
    for s in &cfg.servers {
        assert!(s.last_index >= last, "{s:?}");
        assert_eq!(s.leader, s.id == nodes[0].id());
    }
    assert!(cfg.index > 0);

    // Promote both learners.
    let learners: BTreeSet<NodeId> = nodes[1..].iter().map(TestNode::id).collect();
    leader.promote_voters(learners).await.unwrap();
    let cfg = leader.configuration();
    assert_eq!(cfg.voters().count(), 3);
    assert_eq!(leader.peers().len(), 3);

    // A follower cannot change the membership; it reports the configuration without others'
    // log positions.
    let follower = &nodes[1].handle;
    assert!(matches!(
        follower
            .remove_peer(&PeerRef::Id(nodes[2].id().to_string()))
            .await,
        Err(ServerError::NoLeader)
    ));
    let stats = leader.fetch_stats(nodes[1].handle.node()).await.unwrap();
    assert_eq!(stats.id, nodes[1].id());
    assert!(!stats.leader);
    assert!(stats.last_index >= last);

    // A follower forwards to the leader: the configuration with every log position...
    let via = follower
        .call_leader_op::<(), RaftConfiguration>(CONFIGURATION_PATH, None)
        .await
        .unwrap();
    assert_eq!(via.voters().count(), 3);
    assert!(via.servers.iter().all(|s| s.last_index >= last), "{via:?}");
    assert!(via.get(nodes[0].id()).unwrap().leader);
    // ...and errors keep their kind (an unknown peer is a plain server error, a 500, as in
    // Consul).
    let err = follower
        .call_leader_op::<PeerRef, NodeId>(REMOVE_PEER_PATH, Some(&PeerRef::Id("7".into())))
        .await
        .unwrap_err();
    assert!(matches!(err, ServerError::Internal(_)), "{err:?}");

    // Transfer to a named voter, asked through a follower.
    let target = nodes[2].id();
    let req = TransferRequest {
        id: Some(target.to_string()),
    };
    let new = follower
        .call_leader_op::<TransferRequest, NodeId>(TRANSFER_LEADER_PATH, Some(&req))
        .await
        .unwrap();
    assert_eq!(new, target);
    nodes[2]
        .handle
        .raft()
        .wait(Some(Duration::from_secs(5)))
        .state(ServerState::Leader, "target leads")
        .await
        .unwrap();
    assert!(!leader.is_leader());
    let leader = &nodes[2].handle;
    write(leader, 100).await;

    // Transfer to any voter.
    let new = leader.transfer_leader(None).await.unwrap();
    assert_ne!(new, target);
    let i = nodes.iter().position(|n| n.id() == new).unwrap();
    let leader = &nodes[i].handle;
    leader
        .raft()
        .wait(Some(Duration::from_secs(5)))
        .state(ServerState::Leader, "new leader")
        .await
        .unwrap();
    // Bad targets.
    assert!(matches!(
        leader.transfer_leader(Some("12345")).await,
        Err(ServerError::Internal(_))
    ));
    assert!(matches!(
        leader.transfer_leader(Some(&new.to_string())).await,
        Err(ServerError::BadRequest(_))
    ));

    // Remove a follower by address, then refuse to remove the last voter.
    let other = nodes.iter().find(|n| n.id() != new).unwrap();
    let gone = leader
        .remove_peer(&PeerRef::Address(other.handle.node().raft_addr.clone()))
        .await
        .unwrap();
    assert_eq!(gone, other.id());
    assert_eq!(leader.configuration().voters().count(), 2);
    assert!(matches!(
        leader
            .remove_peer(&PeerRef::Id("not-a-number".into()))
            .await,
        Err(ServerError::Internal(_))
    ));
    let last_other = nodes
        .iter()
        .find(|n| n.id() != new && n.id() != gone)
        .unwrap();
    leader
        .remove_peer(&PeerRef::Id(last_other.id().to_string()))
        .await
        .unwrap();
    assert!(matches!(
        leader.remove_peer(&PeerRef::Id(new.to_string())).await,
        Err(ServerError::BadRequest(_))
    ));
    assert!(matches!(
        leader.transfer_leader(None).await,
        Err(ServerError::Internal(_))
    ));
    write(leader, 200).await;
    shutdown(&nodes).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_leader_can_remove_itself() {
    let nodes = one_voter_and_learners(3).await;
    let first = &nodes[0].handle;
    first
        .promote_voters(nodes[1..].iter().map(TestNode::id).collect())
        .await
        .unwrap();
    write(first, 1).await;
    first
        .remove_peer(&PeerRef::Id(first.node_id().to_string()))
        .await
        .unwrap();
    // The old leader steps down once the configuration without it is committed...
    first
        .raft()
        .wait(Some(Duration::from_secs(5)))
        .metrics(
            |m| m.state != ServerState::Leader,
            "old leader stepped down",
        )
        .await
        .unwrap();
    // ...and the two others elect a leader among themselves.
    let rest = &nodes[1..];
    let i = leader_of(rest, Duration::from_secs(15)).await;
    let leader = &rest[i].handle;
    let cfg = leader.configuration();
    assert_eq!(cfg.servers.len(), 2);
    assert!(cfg.get(first.node_id()).is_none());
    write(leader, 2).await;
    shutdown(&nodes).await;
}
