//! User events: `PUT /v1/event/fire/:name` and `GET /v1/event/list`.
//!
//! In Consul, events travel by gossip (serf user events), not Raft: each agent keeps the last
//! 256 events that passed its filters in a ring buffer, and `/v1/event/list` blocks on that
//! buffer with an index derived from the newest event's ID. [`UserEvents`] is that buffer.
//! Firing delivers locally through [`UserEvents::ingest`], the same entry point a gossip layer
//! will call for events received from other agents; the node, service and tag filters are
//! applied at ingestion against this agent's node name and services, as Consul does. A fired
//! event also goes to the [`Broadcaster`] the gossip layer installs, which delivers it to
//! every other agent.

use super::respond::{add_meta, ApiError, ApiResult};
use super::AppState;
use crate::query::options::Consistency;
use crate::query::QueryMeta;
use crate::ServerError;
use axum::body::Bytes;
use axum::extract::{Path, RawQuery, State};
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::IntoResponse;
use parking_lot::Mutex;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::collections::VecDeque;
use std::time::Duration;
use tokio::sync::watch;

/// Events kept per agent (Consul's `eventBuf` size).
pub const EVENT_BUFFER: usize = 256;

/// Serf's default `UserEventSizeLimit`: name plus encoded event, in bytes.
pub const USER_EVENT_SIZE_LIMIT: usize = 512;

/// Prefix of Consul's serf event names.
const EVENT_NAME_PREFIX: &str = "consul:event:";

/// A user event (`agent.UserEvent`), as listed and as carried between agents.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct UserEvent {
    /// Random UUID.
    #[serde(rename = "ID")]
    pub id: String,
    /// Event name.
    #[serde(rename = "Name")]
    pub name: String,
    /// Opaque payload (base64 in JSON, `null` when empty).
    #[serde(rename = "Payload", with = "payload_b64")]
    pub payload: Vec<u8>,
    /// Regular expression on node names.
    #[serde(rename = "NodeFilter")]
    pub node_filter: String,
    /// Regular expression on service names.
    #[serde(rename = "ServiceFilter")]
    pub service_filter: String,
    /// Regular expression on tags of the matching services.
    #[serde(rename = "TagFilter")]
    pub tag_filter: String,
    /// Protocol version (1).
    #[serde(rename = "Version")]
    pub version: u32,
    /// Lamport time at which the event was received (0 in the fire answer).
    #[serde(rename = "LTime")]
    pub ltime: u64,
}

mod payload_b64 {
    use base64::Engine;
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(v: &[u8], s: S) -> Result<S::Ok, S::Error> {
        if v.is_empty() {
            s.serialize_none()
        } else {
            s.serialize_str(&base64::engine::general_purpose::STANDARD.encode(v))
        }
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<u8>, D::Error> {
        let s: Option<String> = Option::deserialize(d)?;
        match s {
            None => Ok(Vec::new()),
            Some(s) => base64::engine::general_purpose::STANDARD
                .decode(s)
                .map_err(serde::de::Error::custom),
        }
    }
}

/// Consul's `uuidToUint64`: the two 64-bit halves of the UUID XORed, the blocking index of
/// an event list.
pub fn uuid_to_index(id: &str) -> u64 {
    let hex: String = id.chars().filter(|c| *c != '-').collect();
    if hex.len() != 32 {
        return 0;
    }
    let lo = u64::from_str_radix(&hex[..16], 16).unwrap_or(0);
    let hi = u64::from_str_radix(&hex[16..], 16).unwrap_or(0);
    lo ^ hi
}

impl UserEvent {
    /// Checks the filters (`validateUserEventParams`), with Consul's texts.
    pub fn validate(&self) -> Result<(), String> {
        if self.name.is_empty() {
            return Err("User event missing name".into());
        }
        if !self.tag_filter.is_empty() && self.service_filter.is_empty() {
            return Err("Cannot provide tag filter without service filter".into());
        }
        for (what, re) in [
            ("node", &self.node_filter),
            ("service", &self.service_filter),
            ("tag", &self.tag_filter),
        ] {
            if !re.is_empty() {
                regex::Regex::new(re).map_err(|e| format!("Invalid {what} filter: {e}"))?;
            }
        }
        Ok(())
    }

    /// Rough size of the event as serf would carry it (name plus msgpack encoding), for
    /// the size limit.
    pub fn encoded_size(&self) -> usize {
        let field = |name: &str, v: usize| if v == 0 { 0 } else { name.len() + 2 + v + 2 };
        let body = 1
            + field("ID", self.id.len())
            + field("n", self.name.len())
            + field("p", self.payload.len())
            + field("nf", self.node_filter.len())
            + field("sf", self.service_filter.len())
            + field("tf", self.tag_filter.len())
            + 4;
        EVENT_NAME_PREFIX.len() + self.name.len() + body
    }

    /// Whether this agent should keep the event: its node name matches the node filter and
    /// one of its services (and, with a tag filter, one of that service's tags) matches.
    pub fn accepted_by(&self, node_name: &str, services: &[(String, Vec<String>)]) -> bool {
        let compile = |re: &str| regex::Regex::new(re).ok();
        if !self.node_filter.is_empty() {
            match compile(&self.node_filter) {
                Some(re) if re.is_match(node_name) => {}
                _ => return false,
            }
        }
        if !self.service_filter.is_empty() {
            let Some(svc_re) = compile(&self.service_filter) else {
                return false;
            };
            let tag_re = if self.tag_filter.is_empty() {
                None
            } else {
                match compile(&self.tag_filter) {
                    Some(re) => Some(re),
                    None => return false,
                }
            };
            let found = services.iter().any(|(name, tags)| {
                svc_re.is_match(name)
                    && tag_re
                        .as_ref()
                        .is_none_or(|t| tags.iter().any(|tag| t.is_match(tag)))
            });
            if !found {
                return false;
            }
        }
        true
    }
}

#[derive(Debug, Default)]
struct Ring {
    events: VecDeque<UserEvent>,
    /// Lamport clock of received events.
    ltime: u64,
}

/// Carries an event fired here to the other agents of the datacenter (the gossip layer).
pub type Broadcaster = std::sync::Arc<dyn Fn(&UserEvent) + Send + Sync>;

/// The agent's recent user events, newest last, and a channel that ticks on each new one.
pub struct UserEvents {
    ring: Mutex<Ring>,
    changed: watch::Sender<u64>,
    broadcaster: Mutex<Option<Broadcaster>>,
}

impl std::fmt::Debug for UserEvents {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("UserEvents")
            .field("ring", &self.ring)
            .finish_non_exhaustive()
    }
}

impl Default for UserEvents {
    fn default() -> Self {
        UserEvents::new()
    }
}

impl UserEvents {
    /// An empty buffer.
    pub fn new() -> UserEvents {
        UserEvents {
            ring: Mutex::new(Ring::default()),
            changed: watch::Sender::new(0),
            broadcaster: Mutex::new(None),
        }
    }

    /// Sets what carries fired events to the other agents.
    pub fn set_broadcaster(&self, b: Broadcaster) {
        *self.broadcaster.lock() = Some(b);
    }

    /// Hands an event fired on this agent to the broadcaster, if any.
    pub fn broadcast(&self, event: &UserEvent) {
        let b = self.broadcaster.lock().clone();
        if let Some(b) = b {
            b(event);
        }
    }

    /// Keeps an event that passed this agent's filters, evicting the oldest beyond
    /// [`EVENT_BUFFER`], and wakes blocked listings. `ltime` 0 means "stamp it here".
    pub fn ingest(&self, mut event: UserEvent) {
        {
            let mut ring = self.ring.lock();
            ring.ltime = if event.ltime == 0 {
                ring.ltime + 1
            } else {
                ring.ltime.max(event.ltime)
            };
            if event.ltime == 0 {
                event.ltime = ring.ltime;
            }
            if ring.events.len() == EVENT_BUFFER {
                ring.events.pop_front();
            }
            ring.events.push_back(event);
        }
        self.changed.send_modify(|v| *v += 1);
    }

    /// The kept events, oldest first, optionally only those named `name`.
    pub fn list(&self, name: Option<&str>) -> Vec<UserEvent> {
        self.ring
            .lock()
            .events
            .iter()
            .filter(|e| name.is_none_or(|n| e.name == n))
            .cloned()
            .collect()
    }

    /// A receiver that changes on each ingested event.
    pub fn subscribe(&self) -> watch::Receiver<u64> {
        self.changed.subscribe()
    }
}

fn services_of(agent_services: &Value) -> Vec<(String, Vec<String>)> {
    let Value::Object(m) = agent_services else {
        return Vec::new();
    };
    m.values()
        .map(|s| {
            let name = s
                .get("Service")
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_string();
            let tags = s
                .get("Tags")
                .and_then(Value::as_array)
                .map(|a| {
                    a.iter()
                        .filter_map(Value::as_str)
                        .map(str::to_string)
                        .collect()
                })
                .unwrap_or_default();
            (name, tags)
        })
        .collect()
}

/// `PUT /v1/event/fire/:name` (`?node`, `?service`, `?tag` filters; the body is the payload).
pub(super) async fn fire(
    State(s): State<AppState>,
    name: Option<Path<String>>,
    RawQuery(q): RawQuery,
    body: Bytes,
) -> ApiResult {
    let opts = s.options(q.as_deref())?;
    let name = name.map(|Path(n)| n).unwrap_or_default();
    if name.is_empty() {
        return Err(ApiError::bad("Missing name"));
    }
    let filter = |k: &str| opts.get(k).unwrap_or_default().to_string();
    let event = UserEvent {
        id: uuid::Uuid::new_v4().to_string(),
        name,
        payload: body.to_vec(),
        node_filter: filter("node"),
        service_filter: filter("service"),
        tag_filter: filter("tag"),
        version: 1,
        ltime: 0,
    };
    event
        .validate()
        .map_err(|e| ApiError(ServerError::Internal(e)))?;
    if event.encoded_size() > USER_EVENT_SIZE_LIMIT {
        return Err(ApiError(ServerError::Internal(format!(
            "user event exceeds configured limit of {USER_EVENT_SIZE_LIMIT} bytes before encoding"
        ))));
    }
    let services = services_of(&s.agent.services());
    if event.accepted_by(&s.config.node_name, &services) {
        s.events.ingest(event.clone());
    }
    s.events.broadcast(&event);
    super::respond::json(&event, None, opts.pretty)
}

/// `GET /v1/event/list` (`?name`): blocks while the newest event's index equals `?index`.
pub(super) async fn list(State(s): State<AppState>, RawQuery(q): RawQuery) -> ApiResult {
    let opts = s.options(q.as_deref())?;
    let meta = (s.raft.known_leader(), s.raft.last_contact_ms());
    list_from(&s.events, opts, meta).await
}

/// `GET /v1/event/list` on a client agent: from the events this agent received over gossip
/// (its own buffer, as Consul's agents answer it), not from a server's.
pub(super) async fn list_local(
    State((agent, events)): State<(super::AgentState, std::sync::Arc<UserEvents>)>,
    RawQuery(q): RawQuery,
) -> ApiResult {
    let opts = agent.options(q.as_deref())?;
    list_from(&events, opts, (true, 0)).await
}

/// The list answer from `events`, with `(known_leader, last_contact_ms)` as meta headers.
async fn list_from(
    events: &UserEvents,
    opts: crate::query::QueryOptions,
    (known_leader, last_contact_ms): (bool, u64),
) -> ApiResult {
    let name = opts
        .get("name")
        .filter(|n| !n.is_empty())
        .map(str::to_string);
    let deadline = tokio::time::Instant::now() + opts.wait.min(Duration::from_secs(600));
    let mut rx = events.subscribe();
    let (events, index) = loop {
        rx.borrow_and_update();
        let events = events.list(name.as_deref());
        let index = events.last().map_or(1, |e| uuid_to_index(&e.id)).max(1);
        // The index is not monotonic: block only while it equals the one asked for.
        if opts.index == 0 || index != opts.index {
            break (events, index);
        }
        tokio::select! {
            r = rx.changed() => if r.is_err() { break (events, index) },
            _ = tokio::time::sleep_until(deadline) => break (events, index),
        }
    };
    let body = super::respond::json_bytes(&events, opts.pretty)?;
    let mut resp = (StatusCode::OK, body).into_response();
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    let meta = QueryMeta {
        index,
        known_leader,
        last_contact_ms,
        consistency: Consistency::Default,
    };
    add_meta(resp.headers_mut(), &meta);
    Ok(resp)
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    fn ev(name: &str) -> UserEvent {
        UserEvent {
            id: uuid::Uuid::new_v4().to_string(),
            name: name.into(),
            payload: Vec::new(),
            node_filter: String::new(),
            service_filter: String::new(),
            tag_filter: String::new(),
            version: 1,
            ltime: 0,
        }
    }

    #[test]
    fn index_is_consuls_uuid_fold() {
        // 0x0123456789abcdef ^ 0xfedcba9876543210
        assert_eq!(
            uuid_to_index("01234567-89ab-cdef-fedc-ba9876543210"),
            0xffff_ffff_ffff_ffff
        );
        assert_eq!(uuid_to_index("not-a-uuid"), 0);
    }

    #[test]
    fn ring_is_bounded_and_stamps_ltime() {
        let r = UserEvents::new();
        for i in 0..(EVENT_BUFFER + 10) {
            r.ingest(ev(if i % 2 == 0 { "even" } else { "odd" }));
        }
        let all = r.list(None);
        assert_eq!(all.len(), EVENT_BUFFER);
        assert_eq!(all[0].ltime, 11);
        assert_eq!(all.last().unwrap().ltime, (EVENT_BUFFER + 10) as u64);
        assert_eq!(r.list(Some("odd")).len(), EVENT_BUFFER / 2);
        // An event carried with a Lamport time keeps it and advances the clock.
        let mut e = ev("remote");
        e.ltime = 10_000;
        r.ingest(e);
        r.ingest(ev("local"));
        assert_eq!(r.list(Some("local"))[0].ltime, 10_001);
    }

    #[test]
    fn filters_and_validation() {
        let services = vec![
            (
                "web".to_string(),
                vec!["v1".to_string(), "blue".to_string()],
            ),
            ("db".to_string(), vec![]),
        ];
        let mut e = ev("deploy");
        assert!(e.accepted_by("node-1", &services));
        e.node_filter = "^node-[0-9]$".into();
        assert!(e.accepted_by("node-1", &services));
        assert!(!e.accepted_by("other", &services));
        e.service_filter = "we.".into();
        assert!(e.accepted_by("node-1", &services));
        e.tag_filter = "^green$".into();
        assert!(!e.accepted_by("node-1", &services));
        e.tag_filter = "blu".into();
        assert!(e.accepted_by("node-1", &services));

        let mut bad = ev("x");
        bad.tag_filter = "t".into();
        assert_eq!(
            bad.validate().unwrap_err(),
            "Cannot provide tag filter without service filter"
        );
        bad.service_filter = "(".into();
        assert!(bad
            .validate()
            .unwrap_err()
            .starts_with("Invalid service filter: "));
        assert_eq!(ev("").validate().unwrap_err(), "User event missing name");
    }

    #[test]
    fn json_shape() {
        let mut e = ev("deploy");
        e.id = "01234567-89ab-cdef-fedc-ba9876543210".into();
        e.payload = b"v1".to_vec();
        assert_eq!(
            serde_json::to_string(&e).unwrap(),
            r#"{"ID":"01234567-89ab-cdef-fedc-ba9876543210","Name":"deploy","Payload":"djE=","NodeFilter":"","ServiceFilter":"","TagFilter":"","Version":1,"LTime":0}"#
        );
        let back: UserEvent = serde_json::from_str(&serde_json::to_string(&e).unwrap()).unwrap();
        assert_eq!(back, e);
        e.payload.clear();
        assert!(serde_json::to_string(&e)
            .unwrap()
            .contains(r#""Payload":null"#));
    }
}
