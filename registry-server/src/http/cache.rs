//! Encoded answers of hot read endpoints (`/v1/health/service/:name`, `/v1/kv/:key`), kept
//! with the index and state generation they were built at. An answer is reused only while
//! its index is unchanged, so it is exactly what a fresh read would return, without
//! re-walking and re-encoding the data on every request. This is also what makes a write
//! cheap to fan out: the watchers it wakes share one encoded answer.

use axum::body::Bytes;
use parking_lot::Mutex;
use std::collections::HashMap;

/// Entries kept before the cache is emptied (cheap, bounded, no LRU bookkeeping).
const MAX_ENTRIES: usize = 4096;
/// Bytes of answers kept before the cache is emptied.
const MAX_BYTES: usize = 32 * 1024 * 1024;
/// Answers larger than this are not kept.
const MAX_ANSWER: usize = MAX_BYTES / 8;

/// A cached answer.
#[derive(Debug, Clone)]
struct Entry {
    generation: u64,
    index: u64,
    body: Bytes,
}

#[derive(Debug, Default)]
struct Inner {
    map: HashMap<String, Entry>,
    bytes: usize,
}

/// Answers by request key (path plus the query parameters that shape the answer).
#[derive(Debug, Default)]
pub struct ResponseCache {
    inner: Mutex<Inner>,
}

impl ResponseCache {
    /// The answer for `key` if it was built at exactly this generation and index.
    pub fn get(&self, key: &str, generation: u64, index: u64) -> Option<Bytes> {
        let inner = self.inner.lock();
        let e = inner.map.get(key)?;
        (e.generation == generation && e.index == index).then(|| e.body.clone())
    }

    /// Remembers an answer (replacing the one kept for `key`, if any).
    pub fn put(&self, key: String, generation: u64, index: u64, body: Bytes) {
        if body.len() > MAX_ANSWER {
            return;
        }
        let mut inner = self.inner.lock();
        let old = inner.map.get(&key).map_or(0, |e| e.body.len());
        if (inner.map.len() >= MAX_ENTRIES && old == 0)
            || inner.bytes - old + body.len() > MAX_BYTES
        {
            inner.map.clear();
            inner.bytes = 0;
        } else {
            inner.bytes -= old;
        }
        inner.bytes += body.len();
        inner.map.insert(
            key,
            Entry {
                generation,
                index,
                body,
            },
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hits_only_at_the_same_generation_and_index() {
        let c = ResponseCache::default();
        c.put("k".into(), 1, 10, Bytes::from_static(b"a"));
        assert_eq!(c.get("k", 1, 10).as_deref(), Some(&b"a"[..]));
        assert!(c.get("k", 1, 11).is_none());
        assert!(c.get("k", 2, 10).is_none());
        assert!(c.get("other", 1, 10).is_none());
        c.put("k".into(), 1, 11, Bytes::from_static(b"bb"));
        assert!(c.get("k", 1, 10).is_none());
        assert_eq!(c.get("k", 1, 11).as_deref(), Some(&b"bb"[..]));
        assert_eq!(c.inner.lock().bytes, 2);
    }

    #[test]
    fn stays_bounded() {
        let c = ResponseCache::default();
        for i in 0..(MAX_ENTRIES + 10) {
            c.put(format!("k{i}"), 0, 1, Bytes::from_static(b"x"));
        }
        assert!(c.inner.lock().map.len() <= MAX_ENTRIES);
        let big = Bytes::from(vec![0u8; MAX_ANSWER]);
        for i in 0..20 {
            c.put(format!("big{i}"), 0, 1, big.clone());
        }
        let inner = c.inner.lock();
        assert!(inner.bytes <= MAX_BYTES);
        assert_eq!(
            inner.bytes,
            inner.map.values().map(|e| e.body.len()).sum::<usize>()
        );
        drop(inner);
        c.put("huge".into(), 0, 1, Bytes::from(vec![0u8; MAX_ANSWER + 1]));
        assert!(c.get("huge", 0, 1).is_none());
    }
}
