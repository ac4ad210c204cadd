//! [`Command::Restore`](registry_proto::Command::Restore): the whole state replaced by a saved
//! one, as `PUT /v1/snapshot` asks.
//!
//! Every table and index comes from the saved state, so `CreateIndex`, `ModifyIndex` and the
//! `X-Consul-Index` of every query are those of the cluster that saved it. Only the index of
//! the last applied command is kept monotonic: it becomes the larger of the saved one and the
//! restore's own, so writes after a restore get indexes above any this cluster answered
//! before. Blocking queries wake through the store's generation, since the indexes they hold
//! may now be ahead of the state.

use crate::state::{Db, Store};
use registry_proto::CommandResponse;

/// Replaces the state of `store` with `state` (a [`Db::encode`] encoding), applied at
/// registry index `index`. An undecodable state is rejected and changes nothing.
pub(super) fn apply(store: &Store, index: u64, state: &[u8]) -> CommandResponse {
    match Db::decode(state) {
        Ok(mut db) => {
            db.index = db.index.max(index);
            store.replace(db);
            CommandResponse::Ok
        }
        // Rejected like any other command: nothing changes but the applied index.
        Err(e) => store.write(index, |_| {
            CommandResponse::Rejected(format!("failed to restore snapshot: {e}"))
        }),
    }
}

/// A restore inside a batch or transaction: refused, since replacing the state cannot be
/// part of a larger atomic write.
pub(super) fn nested() -> CommandResponse {
    CommandResponse::Rejected("a snapshot restore must be applied on its own".to_string())
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;
    use crate::state::{Table, WatchKey};
    use registry_proto::model::DirEntry;
    use registry_proto::Command;

    fn kv(key: &str, value: &str) -> Command {
        Command::KvSet {
            entry: DirEntry {
                key: key.into(),
                value: value.as_bytes().to_vec().into(),
                ..Default::default()
            },
        }
    }

    #[test]
    fn restore_replaces_tables_and_keeps_saved_indexes() {
        let saved = Store::new();
        for (i, k) in ["a", "b", "c"].iter().enumerate() {
            crate::fsm::apply(&saved, 10 + i as u64, &kv(k, "v"));
        }
        let state = saved.read().encode().unwrap();

        let target = Store::new();
        crate::fsm::apply(&target, 1, &kv("old", "x"));
        let generation = target.generation();
        let resp = crate::fsm::apply(
            &target,
            2,
            &Command::Restore {
                state: state.clone(),
            },
        );
        assert_eq!(resp, CommandResponse::Ok);
        assert!(target.generation() > generation);
        let db = target.read();
        assert!(!db.kvs.contains_key("old"));
        assert_eq!(db.kvs["b"].index.create_index, 11);
        assert_eq!(db.table(Table::Kvs), 12);
        // The saved index is ahead of the restore's own: it is kept.
        assert_eq!(db.index, 12);
    }

    #[test]
    fn restore_never_moves_the_applied_index_back() {
        let saved = Store::new();
        crate::fsm::apply(&saved, 3, &kv("a", "v"));
        let state = saved.read().encode().unwrap();
        let target = Store::new();
        for i in 1..=50 {
            crate::fsm::apply(&target, i, &kv("x", "y"));
        }
        crate::fsm::apply(&target, 51, &Command::Restore { state });
        let db = target.read();
        assert_eq!(db.index, 51);
        assert_eq!(db.kvs["a"].index.modify_index, 3);
        assert_eq!(db.kv_prefix_index(""), 3);
    }

    #[test]
    fn bad_state_or_nested_restore_changes_nothing() {
        let target = Store::new();
        crate::fsm::apply(&target, 1, &kv("keep", "x"));
        let before = target.read().clone();
        let resp = crate::fsm::apply(
            &target,
            2,
            &Command::Restore {
                state: b"REGSNAP1 not really".to_vec(),
            },
        );
        assert!(matches!(resp, CommandResponse::Rejected(_)), "{resp:?}");
        let state = before.encode().unwrap();
        let resp = crate::fsm::apply(
            &target,
            3,
            &Command::Batch(vec![Command::Restore { state }]),
        );
        assert!(
            matches!(&resp, CommandResponse::Batch(r) if matches!(r[0], CommandResponse::Rejected(_))),
            "{resp:?}"
        );
        let after = target.read();
        assert_eq!(after.kvs, before.kvs);
        assert_eq!(after.table(Table::Kvs), before.table(Table::Kvs));
    }

    #[tokio::test]
    async fn restore_wakes_watchers() {
        let target = Store::new();
        crate::fsm::apply(&target, 1, &kv("k", "x"));
        let mut watch = target.watch(&[WatchKey::KvKey("unrelated".into())]);
        let state = Store::new().read().encode().unwrap();
        crate::fsm::apply(&target, 2, &Command::Restore { state });
        tokio::time::timeout(std::time::Duration::from_secs(5), watch.changed())
            .await
            .expect("watch fired");
    }
}
