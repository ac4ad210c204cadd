//! The snapshot builder holds a copy-on-write view: the state machine keeps applying while a
//! snapshot is being encoded, and the snapshot is exactly the state at its log index.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use super::*;
use crate::state::Shared;
use openraft::{CommittedLeaderId, EntryPayload};
use registry_proto::command::RegisterRequest;
use registry_proto::model::{DirEntry, Node, NodeService};
use std::time::Duration;
use tempfile::TempDir;

/// Runs a closure on the snapshot builder's blocking thread, just before it encodes.
pub(super) struct Hook(pub(super) Box<dyn FnOnce() + Send + Sync>);

impl std::fmt::Debug for Hook {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Hook")
    }
}

fn entry(index: u64, cmds: Vec<Command>) -> Entry {
    Entry {
        log_id: LogId::new(CommittedLeaderId::new(1, 0), index),
        payload: EntryPayload::Normal(cmds),
    }
}

fn kv_set(key: &str, value: &str) -> Command {
    Command::KvSet {
        entry: DirEntry {
            key: key.to_string(),
            value: value.as_bytes().to_vec().into(),
            ..Default::default()
        },
    }
}

fn register(node: &str, id: &str) -> Command {
    Command::Register(RegisterRequest {
        node: Node {
            node: node.to_string(),
            address: "10.0.0.1".to_string(),
            ..Default::default()
        },
        service: Some(NodeService {
            id: id.to_string(),
            service: "web".to_string(),
            port: 80,
            ..Default::default()
        }),
        ..Default::default()
    })
}

/// Applies the first state: KV entries and services on two nodes, one entry per command.
async fn fill(sm: &mut RegistryStateMachine) -> u64 {
    let mut cmds = Vec::new();
    for i in 0..50 {
        cmds.push(kv_set(&format!("k/{i:03}"), &format!("v{i}")));
    }
    for i in 0..20 {
        cmds.push(register(&format!("node-{}", i % 2), &format!("web-{i}")));
    }
    let n = cmds.len() as u64;
    let entries: Vec<Entry> = cmds
        .into_iter()
        .enumerate()
        .map(|(i, c)| entry(i as u64 + 1, vec![c]))
        .collect();
    sm.apply(entries).await.unwrap();
    n
}

/// Writes that change every kind of table the first state has.
fn later_writes() -> Vec<Command> {
    vec![
        kv_set("k/000", "changed"),
        Command::KvDelete {
            key: "k/001".into(),
        },
        kv_set("k/new", "new"),
        register("node-0", "web-new"),
        register("node-9", "web-other"),
    ]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn applies_proceed_while_a_snapshot_is_built_and_it_holds_its_index() {
    let dir = TempDir::new().unwrap();
    let store = Arc::new(Store::new());
    let mut sm = RegistryStateMachine::open(Arc::clone(&store), Some(dir.path().into())).unwrap();
    let last = fill(&mut sm).await;
    // The state at the snapshot's index, encoded independently of the builder.
    let expected = store.read().encode().unwrap();

    let mut builder = sm.get_snapshot_builder().await;
    // Taking the view copied nothing: it shares every table with the live state.
    let view = builder.view.clone().unwrap();
    {
        let live = store.read();
        assert!(Shared::ptr_eq(&view.kvs, &live.kvs));
        assert!(Shared::ptr_eq(&view.services, &live.services));
        assert!(Shared::ptr_eq(&view.sessions, &live.sessions));
    }
    let (entered_tx, entered_rx) = tokio::sync::oneshot::channel::<()>();
    let (release_tx, release_rx) = std::sync::mpsc::channel::<()>();
    let release_rx = std::sync::Mutex::new(release_rx);
    builder.before_encode = Some(Hook(Box::new(move || {
        let _ = entered_tx.send(());
        let _ = release_rx.lock().unwrap().recv();
    })));
    let build = tokio::spawn(async move { builder.build_snapshot().await });
    entered_rx.await.unwrap();

    // The builder is now on its blocking thread, about to encode: applies go on.
    let entries: Vec<Entry> = later_writes()
        .into_iter()
        .enumerate()
        .map(|(i, c)| entry(last + 1 + i as u64, vec![c]))
        .collect();
    tokio::time::timeout(Duration::from_secs(10), sm.apply(entries))
        .await
        .expect("apply blocked by the snapshot build")
        .unwrap();
    assert!(!build.is_finished());
    {
        let db = store.read();
        assert_eq!(db.kvs["k/000"].value, &b"changed"[..]);
        assert!(db.services["node-0"].contains_key("web-new"));
        assert!(db.nodes.contains_key("node-9"));
        // The tables written were copied; the untouched ones are still shared, and so is
        // node-1's map of services inside the copied table.
        assert!(!Shared::ptr_eq(&view.kvs, &db.kvs));
        assert!(!Shared::ptr_eq(
            &view.services["node-0"],
            &db.services["node-0"]
        ));
        assert!(Shared::ptr_eq(
            &view.services["node-1"],
            &db.services["node-1"]
        ));
        assert!(Shared::ptr_eq(&view.sessions, &db.sessions));
    }

    release_tx.send(()).unwrap();
    let snap = build.await.unwrap().unwrap();
    assert_eq!(snap.meta.last_log_id.map(|l| l.index), Some(last));
    let data = snap.snapshot.into_inner();
    assert_eq!(data, expected, "the snapshot is the state at its index");
    let db = Db::decode(&data).unwrap();
    assert_eq!(db.kvs["k/000"].value, &b"v0"[..]);
    assert!(db.kvs.contains_key("k/001"));
    assert!(!db.kvs.contains_key("k/new"));
    assert!(!db.services["node-0"].contains_key("web-new"));
    assert!(!db.nodes.contains_key("node-9"));

    // What was saved is that same snapshot, and installing it gives that state back.
    let current = sm.get_current_snapshot().await.unwrap().unwrap();
    assert_eq!(current.meta.last_log_id.map(|l| l.index), Some(last));
    assert_eq!(current.snapshot.into_inner(), expected);
    let store2 = Arc::new(Store::new());
    let mut sm2 = RegistryStateMachine::open(Arc::clone(&store2), Some(dir.path().into())).unwrap();
    assert_eq!(
        sm2.applied_state().await.unwrap().0.map(|l| l.index),
        Some(last)
    );
    assert_eq!(store2.read().encode().unwrap(), expected);
}

#[tokio::test]
async fn a_later_builder_sees_the_later_writes() {
    let store = Arc::new(Store::new());
    let mut sm = RegistryStateMachine::in_memory(Arc::clone(&store));
    let last = fill(&mut sm).await;
    let mut first = sm.get_snapshot_builder().await;
    let entries: Vec<Entry> = later_writes()
        .into_iter()
        .enumerate()
        .map(|(i, c)| entry(last + 1 + i as u64, vec![c]))
        .collect();
    sm.apply(entries).await.unwrap();
    let mut second = sm.get_snapshot_builder().await;
    let after = store.read().encode().unwrap();

    // Built in the opposite order: each is still the state it was taken at.
    let s2 = second.build_snapshot().await.unwrap();
    let s1 = first.build_snapshot().await.unwrap();
    assert_eq!(s2.snapshot.into_inner(), after);
    let db1 = Db::decode(&s1.snapshot.into_inner()).unwrap();
    assert!(!db1.kvs.contains_key("k/new"));
    assert_eq!(db1.index, last);
    // The older one finished last but does not replace the newer one.
    let current = sm.get_current_snapshot().await.unwrap().unwrap();
    assert_eq!(current.meta.last_log_id, s2.meta.last_log_id);
    assert!(
        first.build_snapshot().await.is_err(),
        "a builder builds once"
    );
}
