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
    /// The config entries of one kind.
    ConfigEntries(String),
    /// Prepared queries.
    PreparedQueries,
    /// Network coordinates.
    Coordinates,
    /// The ACL tables (tokens, policies, roles, auth methods, binding rules).
    Acl,
}

/// Channels by key; senders carry the index of the last write that touched the key. KV
/// prefixes have a map of their own, so that a write can look up every prefix of its key
/// without building a key for each.
#[derive(Debug, Default)]
pub(super) struct Watches {
    map: Mutex<Maps>,
}

#[derive(Debug, Default)]
struct Maps {
    keys: HashMap<WatchKey, watch::Sender<u64>>,
    prefixes: HashMap<String, watch::Sender<u64>>,
}

/// Past this many channels a subscription first drops the unused ones.
const SWEEP_AT: usize = 4096;

fn sweep<K>(map: &mut HashMap<K, watch::Sender<u64>>) {
    if map.len() >= SWEEP_AT && map.len().is_power_of_two() {
        map.retain(|_, s| s.receiver_count() > 0);
    }
}

/// The receiver of `key`'s channel, creating the channel if needed (no allocation when it
/// exists).
fn subscribe_in<K, Q>(map: &mut HashMap<K, watch::Sender<u64>>, key: &Q) -> watch::Receiver<u64>
where
    K: std::borrow::Borrow<Q> + Eq + std::hash::Hash,
    Q: ToOwned<Owned = K> + Eq + std::hash::Hash + ?Sized,
{
    if let Some(s) = map.get(key) {
        return s.subscribe();
    }
    let s = watch::Sender::new(0);
    let rx = s.subscribe();
    map.insert(key.to_owned(), s);
    rx
}

/// Sends `index` on `key`'s channel, dropping the channel once nobody listens.
fn fire<K, Q>(map: &mut HashMap<K, watch::Sender<u64>>, key: &Q, index: u64)
where
    K: std::borrow::Borrow<Q> + Eq + std::hash::Hash,
    Q: Eq + std::hash::Hash + ?Sized,
{
    if let Some(s) = map.get(key) {
        if s.receiver_count() == 0 {
            map.remove(key);
        } else {
            s.send_replace(index);
        }
    }
}

impl Watches {
    pub(super) fn subscribe(&self, keys: &[WatchKey], abandon: watch::Receiver<u64>) -> WatchSet {
        let mut maps = self.map.lock();
        let Maps {
            keys: by_key,
            prefixes,
        } = &mut *maps;
        sweep(by_key);
        sweep(prefixes);
        let mut receivers = Vec::with_capacity(keys.len() + 1);
        for k in keys {
            let rx = match k {
                WatchKey::KvPrefix(p) => subscribe_in(prefixes, p.as_str()),
                other => subscribe_in(by_key, other),
            };
            receivers.push(rx);
        }
        receivers.push(abandon);
        WatchSet { receivers }
    }

    pub(super) fn notify(&self, touched: &[WatchKey], index: u64) {
        if touched.is_empty() {
            return;
        }
        let mut maps = self.map.lock();
        let Maps {
            keys: by_key,
            prefixes,
        } = &mut *maps;
        for key in touched {
            match key {
                WatchKey::KvKey(k) => {
                    // Every prefix of the key, including "", may have a recursive watcher.
                    if !prefixes.is_empty() {
                        for (i, _) in k.char_indices() {
                            fire(prefixes, &k[..i], index);
                        }
                        fire(prefixes, k.as_str(), index);
                    }
                    fire(by_key, key, index);
                }
                WatchKey::KvPrefix(p) => fire(prefixes, p.as_str(), index),
                other => fire(by_key, other, index),
            }
        }
    }

    pub(super) fn notify_all(&self, index: u64) {
        let mut maps = self.map.lock();
        maps.keys.retain(|_, s| s.receiver_count() > 0);
        maps.prefixes.retain(|_, s| s.receiver_count() > 0);
        for s in maps.keys.values().chain(maps.prefixes.values()) {
            s.send_replace(index);
        }
    }

    pub(super) fn len(&self) -> usize {
        let maps = self.map.lock();
        maps.keys.len() + maps.prefixes.len()
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
        // A query watches one or two keys besides the abandon signal: wait on them without
        // allocating (every woken watcher of a write comes through here).
        match self.receivers.as_mut_slice() {
            [] => std::future::pending().await,
            [a] => {
                let _ = a.changed().await;
            }
            [a, b] => {
                tokio::select! {
                    _ = a.changed() => {}
                    _ = b.changed() => {}
                }
            }
            [a, b, c] => {
                tokio::select! {
                    _ = a.changed() => {}
                    _ = b.changed() => {}
                    _ = c.changed() => {}
                }
            }
            many => {
                let futs: Vec<_> = many.iter_mut().map(|r| Box::pin(r.changed())).collect();
                let _ = select_all(futs).await;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    /// The abandon signal of a store that lives for the whole program (a dropped sender
    /// would wake its receivers).
    fn abandon() -> watch::Receiver<u64> {
        static ABANDON: std::sync::OnceLock<watch::Sender<u64>> = std::sync::OnceLock::new();
        ABANDON.get_or_init(|| watch::Sender::new(0)).subscribe()
    }

    async fn fires(set: &mut WatchSet) -> bool {
        tokio::time::timeout(Duration::from_millis(50), set.changed())
            .await
            .is_ok()
    }

    #[tokio::test]
    async fn a_key_wakes_its_own_watchers_and_its_prefixes() {
        let w = Watches::default();
        let mut key = w.subscribe(&[WatchKey::KvKey("a/b".into())], abandon());
        let mut other = w.subscribe(&[WatchKey::KvKey("a/c".into())], abandon());
        let mut root = w.subscribe(&[WatchKey::KvPrefix(String::new())], abandon());
        let mut dir = w.subscribe(&[WatchKey::KvPrefix("a/".into())], abandon());
        let mut whole = w.subscribe(&[WatchKey::KvPrefix("a/b".into())], abandon());
        let mut longer = w.subscribe(&[WatchKey::KvPrefix("a/bc".into())], abandon());
        let mut node = w.subscribe(&[WatchKey::Node("a/b".into())], abandon());
        w.notify(&[WatchKey::KvKey("a/b".into())], 7);
        assert!(fires(&mut key).await);
        assert!(fires(&mut root).await);
        assert!(fires(&mut dir).await);
        assert!(fires(&mut whole).await);
        assert!(!fires(&mut other).await);
        assert!(!fires(&mut longer).await);
        assert!(!fires(&mut node).await);
        w.notify(&[WatchKey::KvPrefix("a/".into())], 8);
        assert!(fires(&mut dir).await);
        assert!(!fires(&mut root).await);
    }

    #[tokio::test]
    async fn channels_are_shared_and_dropped_when_unused() {
        let w = Watches::default();
        let a = w.subscribe(&[WatchKey::KvKey("k".into())], abandon());
        let b = w.subscribe(&[WatchKey::KvKey("k".into())], abandon());
        let c = w.subscribe(&[WatchKey::KvPrefix("k".into())], abandon());
        assert_eq!(w.len(), 2);
        drop((a, b, c));
        w.notify(&[WatchKey::KvKey("k".into())], 1);
        assert_eq!(w.len(), 0);
    }

    #[tokio::test]
    async fn many_keys_and_the_abandon_signal_wake() {
        let w = Watches::default();
        let keys: Vec<WatchKey> = (0..5).map(|i| WatchKey::Node(format!("n{i}"))).collect();
        let mut set = w.subscribe(&keys, abandon());
        w.notify(&[WatchKey::Node("n4".into())], 3);
        assert!(fires(&mut set).await);
        let gone = watch::Sender::new(0);
        let mut set = w.subscribe(&[WatchKey::Node("n0".into())], gone.subscribe());
        assert!(!fires(&mut set).await);
        gone.send_replace(1);
        assert!(fires(&mut set).await);
        w.notify_all(9);
        let mut set = w.subscribe(&[], abandon());
        assert!(!fires(&mut set).await);
    }
}
