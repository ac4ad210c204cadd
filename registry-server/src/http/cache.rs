//! Encoded answers of hot read endpoints (`/v1/health/service/:name`), kept with the index
//! and state generation they were built at. An answer is reused only while the service's
//! index is unchanged, so it is exactly what a fresh read would return, without re-walking
//! and re-encoding the instances on every request.

use axum::body::Bytes;
use parking_lot::Mutex;
use std::collections::HashMap;

/// Entries kept before the cache is emptied (cheap, bounded, no LRU bookkeeping).
const MAX_ENTRIES: usize = 4096;

/// A cached answer.
#[derive(Debug, Clone)]
struct Entry {
    generation: u64,
    index: u64,
    body: Bytes,
}

/// Answers by request key (path plus the query parameters that shape the answer).
#[derive(Debug, Default)]
pub struct ResponseCache {
    map: Mutex<HashMap<String, Entry>>,
}

impl ResponseCache {
    /// The answer for `key` if it was built at exactly this generation and index.
    pub fn get(&self, key: &str, generation: u64, index: u64) -> Option<Bytes> {
        let map = self.map.lock();
        let e = map.get(key)?;
        (e.generation == generation && e.index == index).then(|| e.body.clone())
    }

    /// Remembers an answer.
    pub fn put(&self, key: String, generation: u64, index: u64, body: Bytes) {
        let mut map = self.map.lock();
        if map.len() >= MAX_ENTRIES && !map.contains_key(&key) {
            map.clear();
        }
        map.insert(
            key,
            Entry {
                generation,
                index,
                body,
            },
        );
    }
}
