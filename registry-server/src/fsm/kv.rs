//! KV commands: set, check-and-set, delete, delete-CAS and delete-tree.

use crate::state::{Shared, Table, WatchKey, WriteTxn};
use registry_proto::model::{DirEntry, RaftIndex};
use registry_proto::CommandResponse;

fn store_entry(txn: &mut WriteTxn<'_>, entry: &DirEntry) {
    let index = txn.index;
    let mut new = entry.clone();
    match txn.db.kvs.get(&entry.key) {
        Some(old) => {
            new.index = RaftIndex {
                create_index: old.index.create_index,
                modify_index: index,
            };
            new.lock_index = old.lock_index;
            new.session = old.session.clone();
        }
        None => {
            new.index = RaftIndex {
                create_index: index,
                modify_index: index,
            };
            new.lock_index = 0;
            new.session = String::new();
        }
    }
    txn.db.kv_tombstones.remove(&entry.key);
    txn.db.kvs.insert(entry.key.clone(), Shared::new(new));
    txn.touch(WatchKey::Table(Table::Kvs));
    txn.touch(WatchKey::KvKey(entry.key.clone()));
}

/// Sets an entry, keeping its create index, lock index and session.
pub(super) fn set(txn: &mut WriteTxn<'_>, entry: &DirEntry) -> CommandResponse {
    store_entry(txn, entry);
    CommandResponse::Bool(true)
}

/// Sets an entry if its modify index is `expected` (0: only if it does not exist).
pub(super) fn cas(txn: &mut WriteTxn<'_>, entry: &DirEntry, expected: u64) -> CommandResponse {
    let current = txn.db.kvs.get(&entry.key).map(|e| e.index.modify_index);
    let ok = match (expected, current) {
        (0, None) => true,
        (0, Some(_)) => false,
        (_, None) => false,
        (want, Some(have)) => want == have,
    };
    if ok {
        store_entry(txn, entry);
    }
    CommandResponse::Bool(ok)
}

fn remove(txn: &mut WriteTxn<'_>, key: &str) {
    if txn.db.kvs.remove(key).is_some() {
        txn.db.kv_tombstones.insert(key.to_string(), txn.index);
        txn.touch(WatchKey::Table(Table::Kvs));
        txn.touch(WatchKey::KvKey(key.to_string()));
    }
}

/// Deletes one entry; deleting a missing key succeeds.
pub(super) fn delete(txn: &mut WriteTxn<'_>, key: &str) -> CommandResponse {
    remove(txn, key);
    CommandResponse::Bool(true)
}

/// Deletes an entry if its modify index is `expected`.
pub(super) fn delete_cas(txn: &mut WriteTxn<'_>, key: &str, expected: u64) -> CommandResponse {
    let ok = match txn.db.kvs.get(key) {
        Some(e) => e.index.modify_index == expected,
        None => true,
    };
    if ok {
        remove(txn, key);
    }
    CommandResponse::Bool(ok)
}

/// Deletes every entry under `prefix`.
pub(super) fn delete_tree(txn: &mut WriteTxn<'_>, prefix: &str) -> CommandResponse {
    let keys: Vec<String> = txn.db.kv_prefix(prefix).map(|e| e.key.clone()).collect();
    for k in keys {
        remove(txn, &k);
    }
    CommandResponse::Bool(true)
}
