//! The fake's state: every object under one global `resourceVersion`, the history of changes
//! that watches replay from, compaction, and the broadcast that feeds open watches.

use std::collections::{BTreeMap, VecDeque};
use std::sync::Arc;
use std::time::Duration;

use parking_lot::Mutex;
use serde_json::{json, Value};
use tokio::sync::broadcast;

use super::{Selector, KINDS};

/// Tunables of the fake.
#[derive(Debug, Clone)]
pub struct FakeOptions {
    /// A watch without `timeoutSeconds` ends after this long (the real server picks 30-60 min).
    pub max_watch: Duration,
    /// Interval of BOOKMARK events on watches that allow them.
    pub bookmark_interval: Duration,
    /// History kept for watch replay; older changes are compacted (watches from before get 410).
    pub history: usize,
}

impl Default for FakeOptions {
    fn default() -> Self {
        FakeOptions {
            max_watch: Duration::from_secs(1800),
            bookmark_interval: Duration::from_secs(60),
            history: 200_000,
        }
    }
}

/// One change.
#[derive(Debug, Clone)]
pub struct Change {
    /// Its resourceVersion.
    pub rv: u64,
    /// Index in [`KINDS`].
    pub kind: usize,
    /// ADDED, MODIFIED or DELETED.
    pub typ: &'static str,
    /// The object after the change (for DELETED, the last state with the new RV).
    pub obj: Arc<Value>,
}

/// What open watches receive.
#[derive(Debug, Clone)]
pub enum Msg {
    /// A change.
    Change(Change),
    /// History was compacted: every watch ends with an in-stream 410.
    Expire,
    /// Send a BOOKMARK now.
    Bookmark,
}

/// Key of an object: (kind index, namespace or "", name).
pub type Key = (usize, String, String);

/// Mutable state behind the lock.
#[derive(Default)]
pub struct State {
    /// Last resourceVersion handed out.
    pub rv: u64,
    /// Objects.
    pub objects: BTreeMap<Key, Arc<Value>>,
    /// Changes after `compacted`.
    pub log: VecDeque<Change>,
    /// Watches from a resourceVersion below this get 410.
    pub compacted: u64,
    /// Requests served ("METHOD path?query").
    pub requests: Vec<String>,
    /// Remaining injected failures and their status code.
    pub fail: (u32, u16),
    /// Next ClusterIP host part and NodePort.
    pub next_ip: u32,
    /// Next NodePort.
    pub next_node_port: i64,
}

/// The fake API server's shared state.
#[derive(Clone)]
pub struct Fake {
    /// Options.
    pub opts: FakeOptions,
    /// State.
    pub st: Arc<Mutex<State>>,
    /// Feed of open watches.
    pub tx: broadcast::Sender<Msg>,
}

/// A Kubernetes `Status` error body.
pub fn status(code: u16, reason: &str, message: &str) -> Value {
    json!({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
           "message": message, "reason": reason, "code": code})
}

impl Fake {
    /// An empty fake.
    pub fn new(opts: FakeOptions) -> Fake {
        let (tx, _) = broadcast::channel(1 << 16);
        let st = State {
            rv: 1,
            compacted: 0,
            next_ip: 10,
            next_node_port: 30000,
            ..State::default()
        };
        let fake = Fake {
            opts,
            st: Arc::new(Mutex::new(st)),
            tx,
        };
        // Like a real cluster, the default namespaces exist.
        for ns in ["default", "kube-system", "kube-public"] {
            let _ = fake.create(
                2,
                "",
                json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": ns},
                                              "status": {"phase": "Active"}}),
            );
        }
        fake
    }

    fn record(&self, st: &mut State, kind: usize, typ: &'static str, obj: Arc<Value>) {
        let change = Change {
            rv: st.rv,
            kind,
            typ,
            obj,
        };
        st.log.push_back(change.clone());
        while st.log.len() > self.opts.history {
            if let Some(c) = st.log.pop_front() {
                st.compacted = c.rv;
            }
        }
        let _ = self.tx.send(Msg::Change(change));
    }

    fn stamp(st: &mut State, v: &mut Value) {
        st.rv += 1;
        v["metadata"]["resourceVersion"] = json!(st.rv.to_string());
    }

    fn defaults(st: &mut State, kind: usize, v: &mut Value) {
        if KINDS[kind].kind != "Service" {
            return;
        }
        let spec = v.get_mut("spec").filter(|s| s.is_object());
        let Some(spec) = spec else { return };
        if spec.get("type").is_none() {
            spec["type"] = json!("ClusterIP");
        }
        let typ = spec["type"].as_str().unwrap_or("ClusterIP").to_string();
        if typ != "ExternalName"
            && spec
                .get("clusterIP")
                .and_then(Value::as_str)
                .is_none_or(str::is_empty)
        {
            st.next_ip += 1;
            let ip = format!("10.96.{}.{}", (st.next_ip >> 8) & 0xff, st.next_ip & 0xff);
            spec["clusterIP"] = json!(ip);
            spec["clusterIPs"] = json!([ip]);
        }
        if typ == "NodePort" || typ == "LoadBalancer" {
            if let Some(ports) = spec.get_mut("ports").and_then(Value::as_array_mut) {
                for p in ports {
                    if p.get("nodePort").and_then(Value::as_i64).unwrap_or(0) == 0 {
                        p["nodePort"] = json!(st.next_node_port);
                        st.next_node_port += 1;
                    }
                }
            }
        }
        if let Some(ports) = spec.get_mut("ports").and_then(Value::as_array_mut) {
            for p in ports {
                if p.get("protocol").is_none() {
                    p["protocol"] = json!("TCP");
                }
                if p.get("targetPort").is_none() {
                    p["targetPort"] = p["port"].clone();
                }
            }
        }
    }

    /// Creates an object; 409 if it exists.
    pub fn create(&self, kind: usize, ns: &str, mut v: Value) -> Result<Arc<Value>, (u16, Value)> {
        let k = &KINDS[kind];
        let name = v
            .pointer("/metadata/name")
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_string();
        if name.is_empty() {
            return Err((
                422,
                status(
                    422,
                    "Invalid",
                    &format!("{} \"\" is invalid: metadata.name: Required value", k.kind),
                ),
            ));
        }
        let mut st = self.st.lock();
        let key = (kind, ns.to_string(), name.clone());
        if st.objects.contains_key(&key) {
            return Err((
                409,
                status(
                    409,
                    "AlreadyExists",
                    &format!("{}s \"{name}\" already exists", k.singular),
                ),
            ));
        }
        v["apiVersion"] = json!(k.api_version());
        v["kind"] = json!(k.kind);
        if k.namespaced {
            v["metadata"]["namespace"] = json!(ns);
        }
        if k.kind == "Service" {
            // Status is the status subresource's; a create starts without one.
            v["status"] = json!({"loadBalancer": {}});
        }
        let uid = format!("00000000-0000-4000-8000-{:012x}", st.rv + 1);
        v["metadata"]["uid"] = json!(uid);
        v["metadata"]["creationTimestamp"] = json!("2026-01-01T00:00:00Z");
        v["metadata"]["generation"] = json!(1);
        Self::defaults(&mut st, kind, &mut v);
        Self::stamp(&mut st, &mut v);
        let v = Arc::new((k.normalize)(v).map_err(|e| (400, status(400, "BadRequest", &e)))?);
        st.objects.insert(key, v.clone());
        self.record(&mut st, kind, "ADDED", v.clone());
        Ok(v)
    }

    /// Replaces an object (PUT); `subresource_status` replaces only its status.
    pub fn update(
        &self,
        kind: usize,
        ns: &str,
        name: &str,
        mut v: Value,
        subresource_status: bool,
    ) -> Result<Arc<Value>, (u16, Value)> {
        let k = &KINDS[kind];
        let mut st = self.st.lock();
        let key = (kind, ns.to_string(), name.to_string());
        let Some(cur) = st.objects.get(&key).cloned() else {
            return Err((
                404,
                status(
                    404,
                    "NotFound",
                    &format!("{}s \"{name}\" not found", k.singular),
                ),
            ));
        };
        if let Some(rv) = v
            .pointer("/metadata/resourceVersion")
            .and_then(Value::as_str)
        {
            if !rv.is_empty()
                && cur
                    .pointer("/metadata/resourceVersion")
                    .and_then(Value::as_str)
                    != Some(rv)
            {
                return Err((409, status(409, "Conflict", &format!(
                    "Operation cannot be fulfilled on {} \"{name}\": the object has been modified; please apply your changes to the latest version and try again", k.plural))));
            }
        }
        if subresource_status {
            let mut next = (*cur).clone();
            next["status"] = v.get("status").cloned().unwrap_or(json!({}));
            v = next;
        } else {
            if k.has_status {
                v["status"] = cur.get("status").cloned().unwrap_or(Value::Null);
            }
            for f in ["uid", "creationTimestamp"] {
                v["metadata"][f] = cur["metadata"][f].clone();
            }
            let gen = cur
                .pointer("/metadata/generation")
                .and_then(Value::as_i64)
                .unwrap_or(1);
            let changed = v.get("spec") != cur.get("spec");
            v["metadata"]["generation"] = json!(if changed { gen + 1 } else { gen });
            if k.kind == "Service" {
                // Allocated fields survive an update that leaves them out.
                for f in ["clusterIP", "clusterIPs"] {
                    if v.pointer(&format!("/spec/{f}")).is_none() {
                        if let Some(x) = cur.pointer(&format!("/spec/{f}")) {
                            v["spec"][f] = x.clone();
                        }
                    }
                }
                Self::defaults(&mut st, kind, &mut v);
            }
        }
        v["apiVersion"] = json!(k.api_version());
        v["kind"] = json!(k.kind);
        v["metadata"]["name"] = json!(name);
        if k.namespaced {
            v["metadata"]["namespace"] = json!(ns);
        }
        Self::stamp(&mut st, &mut v);
        let v = Arc::new((k.normalize)(v).map_err(|e| (400, status(400, "BadRequest", &e)))?);
        st.objects.insert(key, v.clone());
        self.record(&mut st, kind, "MODIFIED", v.clone());
        Ok(v)
    }

    /// Deletes an object.
    pub fn delete(&self, kind: usize, ns: &str, name: &str) -> Result<Arc<Value>, (u16, Value)> {
        let k = &KINDS[kind];
        let mut st = self.st.lock();
        let key = (kind, ns.to_string(), name.to_string());
        let Some(cur) = st.objects.remove(&key) else {
            return Err((
                404,
                status(
                    404,
                    "NotFound",
                    &format!("{}s \"{name}\" not found", k.singular),
                ),
            ));
        };
        let mut v = (*cur).clone();
        Self::stamp(&mut st, &mut v);
        let v = Arc::new(v);
        self.record(&mut st, kind, "DELETED", v.clone());
        Ok(v)
    }

    /// One object.
    pub fn get(&self, kind: usize, ns: &str, name: &str) -> Option<Arc<Value>> {
        self.st
            .lock()
            .objects
            .get(&(kind, ns.to_string(), name.to_string()))
            .cloned()
    }

    /// A page of objects of `kind` (in `ns` when given) matching the selectors, after the key
    /// `after`; returns (items, list resourceVersion, key of the last item when more remain).
    pub fn list(
        &self,
        kind: usize,
        ns: Option<&str>,
        labels: &Selector,
        fields: &Selector,
        after: Option<(String, String)>,
        limit: usize,
    ) -> (Vec<Arc<Value>>, u64, Option<(String, String)>) {
        let st = self.st.lock();
        let mut out = Vec::new();
        let start = (
            kind,
            after.clone().map(|a| a.0).unwrap_or_default(),
            after.clone().map(|a| a.1).unwrap_or_default(),
        );
        let range = st.objects.range(start..);
        let mut more = None;
        for ((k, ons, name), v) in range {
            if *k != kind {
                break;
            }
            if after.as_ref().is_some_and(|a| a.0 == *ons && a.1 == *name) {
                continue;
            }
            if ns.is_some_and(|n| n != ons)
                || !labels.matches_labels(v)
                || !fields.matches_fields(v)
            {
                continue;
            }
            if out.len() == limit {
                more = out.last().map(|o: &Arc<Value>| key_of(o));
                break;
            }
            out.push(v.clone());
        }
        (out, st.rv, more)
    }

    /// Drops the history: watches from an older resourceVersion get 410, open ones end with one.
    pub fn compact(&self) {
        let mut st = self.st.lock();
        st.compacted = st.rv;
        st.log.clear();
        let _ = self.tx.send(Msg::Expire);
    }
}

/// (namespace, name) of an object.
pub fn key_of(v: &Value) -> (String, String) {
    let ns = v
        .pointer("/metadata/namespace")
        .and_then(Value::as_str)
        .unwrap_or("")
        .to_string();
    let name = v
        .pointer("/metadata/name")
        .and_then(Value::as_str)
        .unwrap_or("")
        .to_string();
    (ns, name)
}
