#![allow(clippy::unwrap_used, clippy::expect_used)]

use super::*;
use crate::state::Db;
use openraft::testing::{StoreBuilder, Suite};
use registry_proto::model::DirEntry;
use registry_proto::{Command, CommandResponse};
use tempfile::TempDir;

type StorageError = types::StorageError;

struct MemBuilder;

impl StoreBuilder<TypeConfig, MemLogStore, RegistryStateMachine, ()> for MemBuilder {
    async fn build(&self) -> Result<((), MemLogStore, RegistryStateMachine), StorageError> {
        let sm = RegistryStateMachine::in_memory(Arc::new(Store::new()));
        Ok(((), MemLogStore::new(), sm))
    }
}

struct SledBuilder;

impl StoreBuilder<TypeConfig, SledLogStore, RegistryStateMachine, TempDir> for SledBuilder {
    async fn build(&self) -> Result<(TempDir, SledLogStore, RegistryStateMachine), StorageError> {
        let dir = TempDir::new().unwrap();
        let log = SledLogStore::open(&dir.path().join("log")).unwrap();
        let sm =
            RegistryStateMachine::open(Arc::new(Store::new()), Some(dir.path().join("snapshots")))
                .unwrap();
        Ok((dir, log, sm))
    }
}

#[test]
fn suite_mem_log_store() {
    Suite::test_all(MemBuilder).unwrap();
}

#[test]
fn suite_sled_log_store() {
    Suite::test_all(SledBuilder).unwrap();
}

fn config(dir: Option<&Path>, name: &str) -> ServerConfig {
    let mut cfg = ServerConfig::dev(name);
    cfg.dev = false;
    cfg.data_dir = dir.map(Path::to_path_buf);
    cfg
}

fn kv_set(i: usize) -> Command {
    Command::KvSet {
        entry: DirEntry {
            key: format!("k/{i:05}"),
            flags: i as u64,
            value: format!("value-{i}").into_bytes().into(),
            ..Default::default()
        },
    }
}

fn snapshot_db(store: &Store) -> Db {
    store.read().clone()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dev_mode_is_in_memory_and_leads() {
    let mut cfg = ServerConfig::dev("dev1");
    cfg.data_dir = None;
    let store = Arc::new(Store::new());
    let h = RaftHandle::start(&cfg, Arc::clone(&store)).await.unwrap();
    assert!(h.is_leader());
    assert!(h.known_leader());
    assert_eq!(h.last_contact_ms(), 0);
    assert_eq!(h.peers(), vec!["127.0.0.1:8300".to_string()]);
    let (id, node) = h.leader().unwrap();
    assert_eq!(id, h.node_id());
    assert_eq!(node.name, "dev1");
    assert_eq!(
        h.write(kv_set(1)).await.unwrap(),
        CommandResponse::Bool(true)
    );
    h.ensure_linearizable().await.unwrap();
    assert!(store.read().kvs.contains_key("k/00001"));
    h.shutdown().await;
    assert!(h.write(kv_set(2)).await.is_err());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restart_replays_the_log() {
    let dir = TempDir::new().unwrap();
    let cfg = config(Some(dir.path()), "n1");

    let store = Arc::new(Store::new());
    let h = RaftHandle::start(&cfg, Arc::clone(&store)).await.unwrap();
    let id = h.node_id();
    let mut tasks = Vec::new();
    for c in 0..10 {
        let h = h.clone();
        tasks.push(tokio::spawn(async move {
            for i in 0..100 {
                let r = h.write(kv_set(c * 100 + i)).await.unwrap();
                assert_eq!(r, CommandResponse::Bool(true));
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    let before = snapshot_db(&store);
    assert_eq!(before.kvs.len(), 1000);
    h.shutdown().await;
    drop(h);

    let store2 = Arc::new(Store::new());
    let h2 = RaftHandle::start(&cfg, Arc::clone(&store2)).await.unwrap();
    assert_eq!(h2.node_id(), id, "node id is persisted");
    assert!(h2.is_leader());
    let after = snapshot_db(&store2);
    assert_eq!(after.kvs.len(), 1000);
    for i in 0..1000 {
        let e = after.kvs.get(&format!("k/{i:05}")).unwrap();
        assert_eq!(e.value, format!("value-{i}").into_bytes());
    }
    assert_eq!(after, before);
    assert_eq!(after.index, 1000, "one registry index per command");
    h2.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn snapshot_purges_log_and_restores_exactly() {
    let dir = TempDir::new().unwrap();
    let mut cfg = config(Some(dir.path()), "n1");
    cfg.raft_snapshot_threshold = 100;
    cfg.raft_trailing_logs = 10;

    let store = Arc::new(Store::new());
    let h = RaftHandle::start(&cfg, Arc::clone(&store)).await.unwrap();
    for i in 0..350 {
        h.write(kv_set(i)).await.unwrap();
    }
    // Deletes, so that the snapshot carries tombstones too.
    for i in 0..20 {
        h.write(Command::KvDelete {
            key: format!("k/{i:05}"),
        })
        .await
        .unwrap();
    }
    let m = h
        .raft()
        .wait(Some(Duration::from_secs(10)))
        .metrics(
            |m| m.snapshot.is_some_and(|s| s.index >= 250) && m.purged.is_some(),
            "snapshot built and log purged",
        )
        .await
        .unwrap();
    let snap = m.snapshot.unwrap();
    let purged = m.purged.unwrap();
    assert!(purged.index + 10 <= snap.index, "{purged} vs {snap}");
    let snap_file = dir.path().join("raft/snapshots/current.snap");
    assert!(snap_file.exists());

    let before = snapshot_db(&store);
    h.shutdown().await;
    drop(h);

    // The purged entries are gone from the log on disk.
    {
        let mut log = SledLogStore::open(&dir.path().join("raft/log")).unwrap();
        use openraft::storage::{RaftLogReader, RaftLogStorage};
        let state = log.get_log_state().await.unwrap();
        assert_eq!(
            state.last_purged_log_id.map(|l| l.index),
            Some(purged.index)
        );
        let entries = log.try_get_log_entries(0..=purged.index).await.unwrap();
        assert!(entries.is_empty());
        let rest = log.try_get_log_entries(purged.index + 1..).await.unwrap();
        assert_eq!(rest.first().unwrap().log_id.index, purged.index + 1);
    }

    // Restart: the snapshot alone gives an older state...
    {
        let store2 = Arc::new(Store::new());
        let mut sm = RegistryStateMachine::open(
            Arc::clone(&store2),
            Some(dir.path().join("raft/snapshots")),
        )
        .unwrap();
        use openraft::storage::RaftStateMachine;
        assert_eq!(sm.applied_state().await.unwrap().0, Some(snap));
        assert!(store2.last_index() > 0);
        assert!(store2.last_index() < before.index);
    }
    // ...and with the trailing log replayed, the exact state before shutdown.
    let store3 = Arc::new(Store::new());
    let h3 = RaftHandle::start(&cfg, Arc::clone(&store3)).await.unwrap();
    let after = snapshot_db(&store3);
    assert_eq!(after, before);
    assert_eq!(after.index, 370);
    assert_eq!(after.kvs.len(), 330);
    h3.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bootstrap_waits_only_for_single_server() {
    let mut cfg = ServerConfig::dev("n3");
    cfg.dev = false;
    cfg.bootstrap_expect = 3;
    let h = RaftHandle::start(&cfg, Arc::new(Store::new()))
        .await
        .unwrap();
    assert!(!h.is_leader());
    assert!(!h.known_leader());
    assert!(h.peers().is_empty());
    assert!(matches!(
        h.write(Command::Noop).await,
        Err(ServerError::NoLeader)
    ));
    h.shutdown().await;
}

#[test]
fn node_ids_are_stable() {
    let mut cfg = ServerConfig::dev("a");
    let by_name = derive_node_id(&cfg);
    assert_eq!(by_name, derive_node_id(&ServerConfig::dev("a")));
    assert_ne!(by_name, derive_node_id(&ServerConfig::dev("b")));
    cfg.node_id = "adf4238a-882b-9ddc-4a9d-5b6758e4159e".into();
    assert_ne!(derive_node_id(&cfg), by_name);

    let dir = TempDir::new().unwrap();
    let first = load_or_create_node_id(dir.path(), &cfg).unwrap();
    cfg.node_id = "another".into();
    assert_eq!(load_or_create_node_id(dir.path(), &cfg).unwrap(), first);
}

/// Latency and throughput of `write` on a disk-backed node:
/// `cargo test --release -p registry-server --lib raft::tests::write_bench -- --ignored --nocapture`
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore]
async fn write_bench() {
    let dir = TempDir::new().unwrap();
    let mem = std::env::var_os("BENCH_MEM").is_some();
    let cfg = config((!mem).then(|| dir.path()), "bench");
    let h = RaftHandle::start(&cfg, Arc::new(Store::new()))
        .await
        .unwrap();

    let mut lat = Vec::new();
    for i in 0..3000 {
        let t = Instant::now();
        h.write(kv_set(i)).await.unwrap();
        lat.push(t.elapsed());
    }
    lat.sort();
    eprintln!(
        "sequential: p50 {:?} p90 {:?} p99 {:?}",
        lat[lat.len() / 2],
        lat[lat.len() * 9 / 10],
        lat[lat.len() * 99 / 100]
    );

    for clients in [16usize, 64, 256] {
        let per = 20_000 / clients;
        let t = Instant::now();
        let mut tasks = Vec::new();
        for c in 0..clients {
            let h = h.clone();
            tasks.push(tokio::spawn(async move {
                for i in 0..per {
                    h.write(kv_set(c * per + i)).await.unwrap();
                }
            }));
        }
        for t in tasks {
            t.await.unwrap();
        }
        let n = clients * per;
        eprintln!(
            "{clients} clients: {n} writes in {:?}: {:.0}/s",
            t.elapsed(),
            n as f64 / t.elapsed().as_secs_f64()
        );
    }
    h.shutdown().await;
}

struct TestNode {
    handle: RaftHandle,
    store: Arc<Store>,
    server: tokio::task::JoinHandle<()>,
}

/// A node that waits to be joined (bootstrap_expect 3), serving its RPC endpoints on an
/// ephemeral loopback port.
async fn cluster_node(name: &str, dir: &Path) -> TestNode {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let mut cfg = config(Some(dir), name);
    cfg.bootstrap_expect = 3;
    cfg.server_port = listener.local_addr().unwrap().port();
    cfg.raft_snapshot_threshold = 50;
    cfg.raft_trailing_logs = 5;
    let store = Arc::new(Store::new());
    let handle = RaftHandle::start(&cfg, Arc::clone(&store)).await.unwrap();
    let cluster = crate::cluster::Cluster::new(
        handle.clone(),
        Arc::new(cfg),
        Arc::clone(&store),
        Arc::new(crate::leader::sessions::SessionTimers::new()),
    )
    .unwrap();
    let app = crate::rpc::raft_routes(handle.clone()).merge(crate::rpc::cluster_routes(cluster));
    let server = tokio::spawn(async move {
        axum::serve(listener, app).await.unwrap();
    });
    TestNode {
        handle,
        store,
        server,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_nodes_replicate_over_http() {
    let dirs: Vec<TempDir> = (0..4).map(|_| TempDir::new().unwrap()).collect();
    let mut nodes = Vec::new();
    for (i, dir) in dirs.iter().take(3).enumerate() {
        nodes.push(cluster_node(&format!("node{i}"), dir.path()).await);
    }
    let members: BTreeMap<NodeId, RegistryNode> = nodes
        .iter()
        .map(|n| (n.handle.node_id(), n.handle.node().clone()))
        .collect();
    nodes[0].handle.raft().initialize(members).await.unwrap();
    let leader_id = nodes[0]
        .handle
        .raft()
        .wait(Some(Duration::from_secs(10)))
        .metrics(|m| m.current_leader.is_some(), "leader elected")
        .await
        .unwrap()
        .current_leader
        .unwrap();
    let leader = nodes
        .iter()
        .find(|n| n.handle.node_id() == leader_id)
        .unwrap();
    let follower = nodes
        .iter()
        .find(|n| n.handle.node_id() != leader_id)
        .unwrap();
    assert!(leader.handle.is_leader());

    let mut tasks = Vec::new();
    for c in 0..4 {
        let h = leader.handle.clone();
        tasks.push(tokio::spawn(async move {
            for i in 0..50 {
                h.write(kv_set(c * 50 + i)).await.unwrap();
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    // A lone writer's entries reach the followers speculatively, while the leader syncs.
    let (sent0, used0) = leader.handle.speculation_stats();
    for i in 0..100 {
        leader.handle.write(kv_set(300 + i)).await.unwrap();
    }
    let (sent, used) = leader.handle.speculation_stats();
    eprintln!(
        "speculative appends: sent {}, used {}",
        sent - sent0,
        used - used0
    );
    assert!(
        used - used0 >= 50,
        "sent {sent0}->{sent}, used {used0}->{used}"
    );
    // A follower forwards its writes to the leader.
    follower.handle.write(kv_set(200)).await.unwrap();
    let applied = leader.handle.metrics().borrow().last_applied.unwrap().index;
    for n in &nodes {
        n.handle
            .raft()
            .wait(Some(Duration::from_secs(10)))
            .applied_index_at_least(Some(applied), "replicated")
            .await
            .unwrap();
        assert_eq!(*n.store.read(), *leader.store.read());
        assert_eq!(n.handle.peers().len(), 3);
        assert_eq!(n.handle.leader().map(|(id, _)| id), Some(leader_id));
    }
    assert_eq!(leader.store.read().kvs.len(), 301);
    assert!(follower.handle.known_leader());
    assert!(!follower.handle.is_leader());
    assert!(follower.handle.last_contact_ms() < 1000);
    assert_eq!(leader.handle.last_contact_ms(), 0);
    follower.handle.ensure_linearizable().await.unwrap_err();
    leader.handle.ensure_linearizable().await.unwrap();
    // Read barriers: a follower catches up with the leader through it.
    follower.handle.read_barrier(false).await.unwrap();
    follower.handle.read_barrier(true).await.unwrap();
    // Concurrent follower reads share read-index rounds, and each still sees every write
    // acknowledged before it started.
    for round in 0..5 {
        let key = 400 + round;
        leader.handle.write(kv_set(key)).await.unwrap();
        let reads: Vec<_> = (0..50)
            .map(|i| {
                let h = follower.handle.clone();
                tokio::spawn(async move { h.read_barrier(i % 2 == 0).await })
            })
            .collect();
        for r in reads {
            r.await.unwrap().unwrap();
        }
        let k = format!("k/{key:05}");
        assert!(follower.store.read().kvs.contains_key(&k), "{k} visible");
    }

    // A new node far behind the purged log gets the state by snapshot.
    let m = leader.handle.metrics().borrow().clone();
    assert!(m.purged.is_some(), "log purged: {m:?}");
    let late = cluster_node("late", dirs[3].path()).await;
    leader
        .handle
        .raft()
        .add_learner(late.handle.node_id(), late.handle.node().clone(), true)
        .await
        .unwrap();
    let applied = leader.handle.metrics().borrow().last_applied.unwrap().index;
    late.handle
        .raft()
        .wait(Some(Duration::from_secs(10)))
        .applied_index_at_least(Some(applied), "learner caught up")
        .await
        .unwrap();
    assert!(late.handle.metrics().borrow().snapshot.is_some());
    assert_eq!(*late.store.read(), *leader.store.read());

    for n in nodes.iter().chain(std::iter::once(&late)) {
        n.handle.shutdown().await;
        n.server.abort();
    }
}

const CHILD_DIR_ENV: &str = "REGISTRY_RAFT_SIGKILL_CHILD_DIR";

/// The writer of `acknowledged_writes_survive_sigkill`, run in a child process: writes until
/// killed, printing each acknowledged key.
#[test]
#[ignore]
fn sigkill_child() {
    let Some(dir) = std::env::var_os(CHILD_DIR_ENV) else {
        return;
    };
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async move {
        let cfg = config(Some(Path::new(&dir)), "victim");
        let h = RaftHandle::start(&cfg, Arc::new(Store::new()))
            .await
            .unwrap();
        let deadline = Instant::now() + Duration::from_secs(30);
        let mut tasks = Vec::new();
        for c in 0..8 {
            let h = h.clone();
            tasks.push(tokio::spawn(async move {
                let mut i = c;
                while Instant::now() < deadline {
                    h.write(kv_set(i)).await.unwrap();
                    println!("ack {i}");
                    i += 8;
                }
            }));
        }
        for t in tasks {
            t.await.unwrap();
        }
    });
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acknowledged_writes_survive_sigkill() {
    use std::io::BufRead;
    let dir = TempDir::new().unwrap();
    let mut child = std::process::Command::new(std::env::current_exe().unwrap())
        .args([
            "raft::tests::sigkill_child",
            "--exact",
            "--ignored",
            "--nocapture",
        ])
        .env(CHILD_DIR_ENV, dir.path())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let acked = tokio::task::spawn_blocking(move || {
        let mut acked = Vec::new();
        for line in std::io::BufReader::new(stdout).lines() {
            let line = line.unwrap();
            if let Some(i) = line.strip_prefix("ack ") {
                acked.push(i.parse::<usize>().unwrap());
                if acked.len() == 2000 {
                    child.kill().unwrap(); // SIGKILL
                    break;
                }
            }
        }
        child.wait().unwrap();
        acked
    })
    .await
    .unwrap();
    assert_eq!(acked.len(), 2000, "the child wrote too little");

    let store = Arc::new(Store::new());
    let h = RaftHandle::start(&config(Some(dir.path()), "victim"), Arc::clone(&store))
        .await
        .unwrap();
    {
        let db = store.read();
        for i in &acked {
            assert!(db.kvs.contains_key(&format!("k/{i:05}")), "lost k/{i:05}");
        }
    }
    h.shutdown().await;
}

/// Regression (found by jepsen/ `register-default` under `partition-leader`): a newly elected
/// leader answered default reads from its store before applying the entries committed in
/// earlier terms, so a read could miss an acknowledged write.
#[test]
fn a_new_leader_gets_no_lease_before_applying_earlier_terms() {
    // New term 7, lease last granted in term 6: only once applied reaches the read index.
    assert!(!super::lease_may_start(6, 7, Some(120), Some(118)));
    assert!(!super::lease_may_start(super::NEVER, 7, Some(120), None));
    assert!(super::lease_may_start(6, 7, Some(120), Some(120)));
    assert!(super::lease_may_start(super::NEVER, 1, None, None));
    // Within its term, renewals do not wait for the state machine.
    assert!(super::lease_may_start(7, 7, Some(130), Some(125)));
}
