//! Config entries: set and delete by (kind, name), with Consul's CAS on the modify index.

use crate::state::{WatchKey, WriteTxn};
use registry_proto::config_entry::ConfigEntry;
use registry_proto::CommandResponse;

/// Stores `entry`. With `cas`, only when the stored entry's modify index equals it (0: only
/// when none exists). Answers [`CommandResponse::Bool`].
pub(super) fn set(
    txn: &mut WriteTxn<'_>,
    entry: &ConfigEntry,
    cas: Option<u64>,
) -> CommandResponse {
    let key = (entry.kind.clone(), entry.name.clone());
    let existing = txn.db.config_entries.get(&key);
    if let Some(expected) = cas {
        if existing.map_or(0, |e| e.modify_index) != expected {
            return CommandResponse::Bool(false);
        }
    }
    let create_index = existing.map_or(txn.index, |e| e.create_index);
    let stored = ConfigEntry {
        create_index,
        modify_index: txn.index,
        ..entry.clone()
    };
    txn.db.config_entries.insert(key, stored);
    txn.touch(WatchKey::ConfigEntries(entry.kind.clone()));
    CommandResponse::Bool(true)
}

/// Deletes an entry; with `cas`, only when its modify index equals it. Deleting an entry
/// that does not exist succeeds (without `cas`), as in Consul.
pub(super) fn delete(
    txn: &mut WriteTxn<'_>,
    kind: &str,
    name: &str,
    cas: Option<u64>,
) -> CommandResponse {
    let key = (kind.to_string(), name.to_string());
    let current = txn.db.config_entries.get(&key).map(|e| e.modify_index);
    if let Some(expected) = cas {
        if current != Some(expected) {
            return CommandResponse::Bool(false);
        }
    }
    if current.is_some() {
        txn.db.config_entries.remove(&key);
        txn.touch(WatchKey::ConfigEntries(kind.to_string()));
    }
    CommandResponse::Bool(true)
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use crate::fsm::apply;
    use crate::state::Store;
    use registry_proto::config_entry::decode;
    use registry_proto::{Command, CommandResponse};
    use serde_json::json;

    fn set(store: &Store, index: u64, port: u64, cas: Option<u64>) -> bool {
        let entry = decode(
            json!({"Kind": "service-defaults", "Name": "web", "Protocol": "http",
                                  "MaxInboundConnections": port}),
        )
        .unwrap();
        match apply(store, index, &Command::ConfigEntrySet { entry, cas }) {
            CommandResponse::Bool(b) => b,
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn cas_and_indexes() {
        let store = Store::new();
        assert!(!set(&store, 2, 1, Some(5)));
        assert!(set(&store, 3, 1, Some(0)));
        assert!(!set(&store, 4, 2, Some(0)));
        assert!(set(&store, 5, 2, Some(3)));
        let key = ("service-defaults".to_string(), "web".to_string());
        let e = store.read().config_entries.get(&key).cloned().unwrap();
        assert_eq!((e.create_index, e.modify_index), (3, 5));
        let del = |index, cas| match apply(
            &store,
            index,
            &Command::ConfigEntryDelete {
                kind: "service-defaults".into(),
                name: "web".into(),
                cas,
            },
        ) {
            CommandResponse::Bool(b) => b,
            other => panic!("{other:?}"),
        };
        assert!(!del(6, Some(3)));
        assert!(del(7, Some(5)));
        assert!(store.read().config_entries.is_empty());
        assert!(del(8, None), "deleting a missing entry succeeds");
    }
}
