//! User events over gossip.
//!
//! An event fired on an agent becomes a key `ev:<id>` of that agent's own gossip state,
//! written with a TTL: chitchat spreads it to every member and drops it after the deletion
//! grace period. Every agent subscribes to the prefix, keeps each event once (by ID), skips
//! events fired before it started (as Serf ignores old events on join) and its own, applies
//! the node, service and tag filters against its own name and services, and hands the event
//! to the same ring buffer `/v1/event/list` reads.

use registry_server::http::UserEvent;
use serde::{Deserialize, Serialize};
use std::collections::{HashSet, VecDeque};

/// Prefix of event keys.
pub const EVENT_PREFIX: &str = "ev:";

/// How many event IDs are remembered to drop duplicates.
const SEEN: usize = 4096;

/// An event as carried in gossip state: the event and when it was fired.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Carried {
    /// Fire time, Unix milliseconds.
    pub t: u64,
    /// The node that fired it.
    pub n: String,
    /// The event.
    pub e: UserEvent,
}

/// The value stored under `ev:<id>`.
pub fn encode(event: &UserEvent, node: &str, now_unix_ms: u64) -> String {
    serde_json::to_string(&Carried {
        t: now_unix_ms,
        n: node.to_string(),
        e: event.clone(),
    })
    .unwrap_or_default()
}

/// Which received events are new to this agent.
#[derive(Debug)]
pub struct Dedup {
    started_unix_ms: u64,
    self_name: String,
    seen: HashSet<String>,
    order: VecDeque<String>,
}

impl Dedup {
    /// For an agent named `self_name` that started at `started_unix_ms`.
    pub fn new(self_name: &str, started_unix_ms: u64) -> Self {
        Dedup {
            started_unix_ms,
            self_name: self_name.to_string(),
            seen: HashSet::new(),
            order: VecDeque::new(),
        }
    }

    /// The event carried in `value` when this agent has not seen it yet.
    pub fn accept(&mut self, value: &str) -> Option<UserEvent> {
        let c: Carried = serde_json::from_str(value).ok()?;
        if c.n == self.self_name || c.t < self.started_unix_ms {
            return None;
        }
        if !self.seen.insert(c.e.id.clone()) {
            return None;
        }
        self.order.push_back(c.e.id.clone());
        if self.order.len() > SEEN {
            if let Some(old) = self.order.pop_front() {
                self.seen.remove(&old);
            }
        }
        let mut e = c.e;
        e.ltime = 0;
        Some(e)
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    fn ev(id: &str) -> UserEvent {
        UserEvent {
            id: id.into(),
            name: "deploy".into(),
            payload: b"x".to_vec(),
            node_filter: String::new(),
            service_filter: String::new(),
            tag_filter: String::new(),
            version: 1,
            ltime: 3,
        }
    }

    #[test]
    fn once_not_own_not_old() {
        let mut d = Dedup::new("me", 1_000);
        let v = encode(&ev("a"), "other", 2_000);
        let got = d.accept(&v).unwrap();
        assert_eq!(got.id, "a");
        assert_eq!(got.payload, b"x");
        assert_eq!(got.ltime, 0);
        assert!(d.accept(&v).is_none());
        assert!(d.accept(&encode(&ev("b"), "me", 2_000)).is_none());
        assert!(d.accept(&encode(&ev("c"), "other", 999)).is_none());
        assert!(d.accept("junk").is_none());
    }
}
