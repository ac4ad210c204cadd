//! Watch channels for blocking queries, one per table, per node, per service name, per KV
//! key and per KV prefix, created lazily when a query subscribes and dropped once nobody
//! listens. A write wakes only the channels of what it touched: a query blocked on one key
//! never wakes for another.

use super::Table;
use futures::future::select_all;
use parking_lot::Mutex;
use std::collections::HashMap;
use tokio::sync::watch;

/// What a blocking query can wait on.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum WatchKey {
    /// Any change to a table.
    Table(Table),
    /// A node, its services or its checks.
    Node(String),
    /// Instances of a service name, their checks or their nodes.
    Service(String),
    /// One KV key.
    KvKey(String),
    /// Any KV key under a prefix.
    KvPrefix(String),
    /// One session, by ID.
    Session(String),
    /// The sessions of one node.
    NodeSessions(String),
}

/// Channels by key; senders carry the index of the last write that touched the key.
#[derive(Debug, Default)]
pub(super) struct Watches {
    map: Mutex<HashMap<WatchKey, watch::Sender<u64>>>,
}

/// Past this many channels a subscription first drops the unused ones.
const SWEEP_AT: usize = 4096;

impl Watches {
    pub(super) fn subscribe(&self, keys: &[WatchKey], abandon: watch::Receiver<u64>) -> WatchSet {
        let mut map = self.map.lock();
        if map.len() >= SWEEP_AT && map.len().is_power_of_two() {
            map.retain(|_, s| s.receiver_count() > 0);
        }
        let mut receivers = Vec::with_capacity(keys.len() + 1);
        for k in keys {
            let rx = map
                .entry(k.clone())
                .or_insert_with(|| watch::Sender::new(0))
                .subscribe();
            receivers.push(rx);
        }
        receivers.push(abandon);
        WatchSet { receivers }
    }

    pub(super) fn notify(&self, touched: &[WatchKey], index: u64) {
        if touched.is_empty() {
            return;
        }
        let mut map = self.map.lock();
        if map.is_empty() {
            return;
        }
        for key in touched {
            if let WatchKey::KvKey(k) = key {
                // Every prefix of the key, including "", may have a recursive watcher.
                for (i, _) in k.char_indices().chain(std::iter::once((k.len(), ' '))) {
                    let p = WatchKey::KvPrefix(k[..i].to_string());
                    Self::fire(&mut map, &p, index);
                }
            }
            Self::fire(&mut map, key, index);
        }
    }

    fn fire(map: &mut HashMap<WatchKey, watch::Sender<u64>>, key: &WatchKey, index: u64) {
        if let Some(s) = map.get(key) {
            if s.receiver_count() == 0 {
                map.remove(key);
            } else {
                s.send_replace(index);
            }
        }
    }

    pub(super) fn notify_all(&self, index: u64) {
        let mut map = self.map.lock();
        map.retain(|_, s| s.receiver_count() > 0);
        for s in map.values() {
            s.send_replace(index);
        }
    }

    pub(super) fn len(&self) -> usize {
        self.map.lock().len()
    }
}

/// The channels one blocking query waits on.
#[derive(Debug)]
pub struct WatchSet {
    receivers: Vec<watch::Receiver<u64>>,
}

impl WatchSet {
    /// Resolves when any watched key changes after the subscription was made.
    pub async fn changed(&mut self) {
        let futs: Vec<_> = self
            .receivers
            .iter_mut()
            .map(|r| Box::pin(r.changed()))
            .collect();
        if futs.is_empty() {
            return std::future::pending().await;
        }
        let _ = select_all(futs).await;
    }
}
