//! Client histories: every operation is recorded twice, when a client invokes it and when it
//! completes (`ok`, `fail` when it certainly did not happen, `info` when its outcome is
//! unknown), with a monotonic timestamp (nanoseconds since the start of the test), the logical
//! process and the server it was sent to. A process whose operation ended in `info` may still
//! have that operation in flight, so it continues under a new process number, as Jepsen does.

use std::sync::Mutex;
use std::time::Instant;

use serde::{Deserialize, Serialize};
use serde_json::Value;

/// What an event records.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Kind {
    /// The client sends the operation.
    Invoke,
    /// It completed and took effect (reads: returned this value).
    Ok,
    /// It certainly did not take effect.
    Fail,
    /// Its outcome is unknown (timeout, connection lost, 500 after forwarding).
    Info,
}

/// One line of a history.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Event {
    /// Position in the history.
    pub index: usize,
    /// Invoke or completion.
    #[serde(rename = "type")]
    pub kind: Kind,
    /// Logical process (client) number.
    pub process: u64,
    /// Operation: `read`, `write`, `cas`, `add`, `acquire`, ...
    pub f: String,
    /// The key (register, account, ...) the operation is about, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key: Option<String>,
    /// Argument on invoke, result on completion.
    pub value: Value,
    /// Nanoseconds since the test started (monotonic clock).
    pub time: u64,
    /// The server (1-based) the client talked to.
    pub node: usize,
    /// Why it failed or is unknown.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// A completed operation: its invocation and completion paired.
#[derive(Debug, Clone)]
pub struct Op {
    /// Logical process.
    pub process: u64,
    /// Operation name.
    pub f: String,
    /// Key, if any.
    pub key: Option<String>,
    /// Argument given on invoke.
    pub arg: Value,
    /// Result on completion (`Null` when unknown).
    pub result: Value,
    /// Outcome; `Info` also for an operation still open at the end of the history.
    pub outcome: Kind,
    /// Invocation time, ns.
    pub invoke: u64,
    /// Completion time, ns; `None` when the outcome is unknown (it may take effect any time
    /// after `invoke`).
    pub complete: Option<u64>,
    /// Time the completion was recorded even when unknown (for pictures), ns.
    pub end: u64,
    /// Server.
    pub node: usize,
    /// Index of the invoke event.
    pub index: usize,
}

/// A history being recorded by concurrent clients.
#[derive(Debug)]
pub struct Recorder {
    start: Instant,
    events: Mutex<Vec<Event>>,
}

impl Recorder {
    /// A recorder whose clock starts at `start`.
    pub fn new(start: Instant) -> Self {
        Recorder {
            start,
            events: Mutex::new(Vec::new()),
        }
    }

    /// Nanoseconds since the start.
    pub fn now(&self) -> u64 {
        u64::try_from(self.start.elapsed().as_nanos()).unwrap_or(u64::MAX)
    }

    /// Appends an event stamped now. (One argument per field of [`Event`].)
    #[allow(clippy::too_many_arguments)]
    pub fn record(
        &self,
        kind: Kind,
        process: u64,
        f: &str,
        key: Option<&str>,
        value: Value,
        node: usize,
        error: Option<String>,
    ) {
        let time = self.now();
        let mut ev = match self.events.lock() {
            Ok(g) => g,
            Err(p) => p.into_inner(),
        };
        let index = ev.len();
        ev.push(Event {
            index,
            kind,
            process,
            f: f.to_string(),
            key: key.map(str::to_string),
            value,
            time,
            node,
            error,
        });
    }

    /// A copy of the events so far.
    pub fn events(&self) -> Vec<Event> {
        match self.events.lock() {
            Ok(g) => g.clone(),
            Err(p) => p.into_inner().clone(),
        }
    }
}

/// Pairs each invocation with its process's next completion. Invocations never completed are
/// `Info` with no completion time.
pub fn pair(events: &[Event]) -> Vec<Op> {
    let mut open: std::collections::HashMap<u64, usize> = std::collections::HashMap::new();
    let mut ops: Vec<Op> = Vec::new();
    let last = events.iter().map(|e| e.time).max().unwrap_or(0);
    for e in events {
        if e.kind == Kind::Invoke {
            open.insert(e.process, ops.len());
            ops.push(Op {
                process: e.process,
                f: e.f.clone(),
                key: e.key.clone(),
                arg: e.value.clone(),
                result: Value::Null,
                outcome: Kind::Info,
                invoke: e.time,
                complete: None,
                end: last,
                node: e.node,
                index: e.index,
            });
        } else if let Some(i) = open.remove(&e.process) {
            let op = &mut ops[i];
            op.outcome = e.kind;
            op.result = e.value.clone();
            op.end = e.time;
            if e.kind != Kind::Info {
                op.complete = Some(e.time);
            }
        }
    }
    ops
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn pairs_by_process_and_leaves_open_ops_unknown() {
        let r = Recorder::new(Instant::now());
        r.record(Kind::Invoke, 0, "write", Some("k"), json!(1), 1, None);
        r.record(Kind::Invoke, 1, "read", Some("k"), Value::Null, 2, None);
        r.record(Kind::Ok, 0, "write", Some("k"), json!(1), 1, None);
        r.record(Kind::Invoke, 2, "write", Some("k"), json!(2), 3, None);
        r.record(
            Kind::Info,
            1,
            "read",
            Some("k"),
            Value::Null,
            2,
            Some("timeout".into()),
        );
        let ops = pair(&r.events());
        assert_eq!(ops.len(), 3);
        assert_eq!(ops[0].outcome, Kind::Ok);
        assert!(ops[0].complete.is_some());
        assert_eq!(ops[1].outcome, Kind::Info);
        assert!(ops[1].complete.is_none());
        assert_eq!(ops[2].outcome, Kind::Info, "never completed");
        assert!(ops[2].complete.is_none());
    }
}
