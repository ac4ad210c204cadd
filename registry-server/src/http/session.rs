//! `/v1/session/*`: create, destroy, renew, info, node and list.
//!
//! Bodies and texts follow Consul (`agent/session_endpoint.go`, `agent/consul/session_endpoint.go`):
//! keys are matched case-insensitively (snake_case too); `LockDelay` is a Go duration or a
//! number of nanoseconds, where numbers below 1000 mean seconds; a `Checks` key, even `[]`,
//! replaces the default `serfHealth` check. Validation failures of the session itself are
//! 500s with Consul's exact text, as clients (Patroni) match on it. Renewals reset the
//! leader's TTL timer and write nothing to Raft.

use super::respond::{json, ApiError, ApiResult};
use super::AppState;
use crate::leader::sessions::{session_ttl, SESSION_TTL_MAX};
use crate::state::{unix_ms_now, Table, WatchKey};
use crate::ServerError;
use axum::body::Bytes;
use axum::extract::{Path, RawQuery, State};
use registry_proto::duration::{format_go_duration, parse_go_duration};
use registry_proto::lenient::{fold_key, DECODE_ERROR_PREFIX};
use registry_proto::model::{ServiceCheck, Session, SessionBehavior};
use registry_proto::Command;
use serde::Serialize;
use serde_json::Value;
use std::time::Duration;

/// The agent's default node check (`structs.SerfCheckID`).
pub const SERF_CHECK_ID: &str = "serfHealth";

/// Consul's default lock-delay.
pub const DEFAULT_LOCK_DELAY: Duration = Duration::from_secs(15);

/// Lock-delay numbers below this are seconds, not nanoseconds (`lockDelayMinThreshold`).
const LOCK_DELAY_MIN_THRESHOLD: u64 = 1000;

/// A session as Consul returns it (`structs.Session`).
#[derive(Serialize)]
pub(super) struct SessionOut<'a> {
    #[serde(rename = "ID")]
    id: &'a str,
    #[serde(rename = "Name")]
    name: &'a str,
    #[serde(rename = "Node")]
    node: &'a str,
    #[serde(rename = "LockDelay")]
    lock_delay: u64,
    #[serde(rename = "Behavior")]
    behavior: &'static str,
    #[serde(rename = "TTL")]
    ttl: &'a str,
    #[serde(rename = "NodeChecks")]
    node_checks: &'a [String],
    #[serde(rename = "ServiceChecks")]
    service_checks: Option<Vec<ServiceCheckOut<'a>>>,
    #[serde(rename = "Checks", skip_serializing_if = "<[String]>::is_empty")]
    checks: &'a [String],
    #[serde(rename = "CreateIndex")]
    create_index: u64,
    #[serde(rename = "ModifyIndex")]
    modify_index: u64,
}

#[derive(Serialize)]
pub(super) struct ServiceCheckOut<'a> {
    #[serde(rename = "ID")]
    id: &'a str,
    #[serde(rename = "Namespace")]
    namespace: &'a str,
}

impl<'a> From<&'a Session> for SessionOut<'a> {
    fn from(s: &'a Session) -> Self {
        SessionOut {
            id: &s.id,
            name: &s.name,
            node: &s.node,
            lock_delay: s.lock_delay_ns,
            behavior: s.behavior.as_str(),
            ttl: &s.ttl,
            node_checks: &s.node_checks,
            service_checks: (!s.service_checks.is_empty()).then(|| {
                s.service_checks
                    .iter()
                    .map(|c| ServiceCheckOut {
                        id: &c.id,
                        namespace: &c.namespace,
                    })
                    .collect()
            }),
            checks: &s.checks,
            create_index: s.index.create_index,
            modify_index: s.index.modify_index,
        }
    }
}

fn decode_err(msg: impl std::fmt::Display) -> ApiError {
    ApiError::bad(format!("{DECODE_ERROR_PREFIX}{msg}"))
}

fn string_of(key: &str, v: &Value) -> Result<String, ApiError> {
    match v {
        Value::Null => Ok(String::new()),
        Value::String(s) => Ok(s.clone()),
        _ => Err(decode_err(format!(
            "invalid type for {key}: expected a string"
        ))),
    }
}

fn strings_of(key: &str, v: &Value) -> Result<Vec<String>, ApiError> {
    match v {
        Value::Null => Ok(Vec::new()),
        Value::Array(items) => items.iter().map(|i| string_of(key, i)).collect(),
        _ => Err(decode_err(format!(
            "invalid type for {key}: expected a list of strings"
        ))),
    }
}

/// `LockDelay`: a Go duration string or a number of nanoseconds; below 1000 means seconds.
fn lock_delay_of(v: &Value) -> Result<u64, ApiError> {
    let ns = match v {
        Value::String(s) => {
            let d = parse_go_duration(s).map_err(decode_err)?;
            u64::try_from(d.as_nanos()).unwrap_or(u64::MAX)
        }
        Value::Number(n) => match (n.as_u64(), n.as_f64()) {
            (Some(u), _) => u,
            (None, Some(f)) if f.is_finite() && f >= 0.0 => f as u64,
            _ => return Err(decode_err("invalid value for LockDelay")),
        },
        Value::Null => return Ok(DEFAULT_LOCK_DELAY.as_nanos() as u64),
        _ => {
            return Err(decode_err(
                "invalid type for LockDelay: expected a duration",
            ))
        }
    };
    Ok(if ns < LOCK_DELAY_MIN_THRESHOLD {
        ns.saturating_mul(1_000_000_000)
    } else {
        ns
    })
}

fn service_checks_of(v: &Value) -> Result<Vec<ServiceCheck>, ApiError> {
    let Value::Array(items) = v else {
        return match v {
            Value::Null => Ok(Vec::new()),
            _ => Err(decode_err(
                "invalid type for ServiceChecks: expected a list of objects",
            )),
        };
    };
    let mut out = Vec::with_capacity(items.len());
    for item in items {
        let Value::Object(m) = item else {
            return Err(decode_err(
                "invalid type for ServiceChecks: expected a list of objects",
            ));
        };
        let mut c = ServiceCheck::default();
        for (k, v) in m {
            match fold_key(k).as_str() {
                "id" => c.id = string_of("ServiceChecks.ID", v)?,
                "namespace" => c.namespace = string_of("ServiceChecks.Namespace", v)?,
                _ => {}
            }
        }
        out.push(c);
    }
    Ok(out)
}

/// The create request after defaults, before the state checks.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct CreateRequest {
    pub session: Session,
    pub behavior: String,
}

/// Decodes a `/v1/session/create` body with Consul's defaults (this node, `serfHealth`,
/// 15 s lock-delay, `release`) and its check fix-ups.
pub(super) fn decode_create(body: &[u8], default_node: &str) -> Result<CreateRequest, ApiError> {
    let mut sess = Session {
        node: default_node.to_string(),
        lock_delay_ns: DEFAULT_LOCK_DELAY.as_nanos() as u64,
        ..Default::default()
    };
    let mut behavior = String::new();
    let mut checks: Option<Vec<String>> = None;
    let mut node_checks: Option<Vec<String>> = None;
    if !body.iter().all(u8::is_ascii_whitespace) {
        let v: Value = serde_json::from_slice(body).map_err(decode_err)?;
        let map = match v {
            Value::Object(m) => m,
            Value::Null => Default::default(),
            _ => return Err(decode_err("expected a JSON object")),
        };
        // Exact-case keys win over case-folded ones, as in Go's encoding/json.
        let mut keys: Vec<(&String, &Value)> = map.iter().collect();
        keys.sort_by_key(|(k, _)| {
            let canonical = [
                "Name",
                "Node",
                "LockDelay",
                "Behavior",
                "TTL",
                "Checks",
                "NodeChecks",
                "ServiceChecks",
            ];
            canonical.contains(&k.as_str())
        });
        for (k, v) in keys {
            match fold_key(k).as_str() {
                "name" => sess.name = string_of("Name", v)?,
                "node" if !v.is_null() => sess.node = string_of("Node", v)?,
                "lockdelay" => sess.lock_delay_ns = lock_delay_of(v)?,
                "behavior" => behavior = string_of("Behavior", v)?,
                "ttl" => sess.ttl = string_of("TTL", v)?,
                "checks" => checks = Some(strings_of("Checks", v)?),
                "nodechecks" => node_checks = Some(strings_of("NodeChecks", v)?),
                "servicechecks" => sess.service_checks = service_checks_of(v)?,
                _ => {}
            }
        }
    }
    // fixupEmptySessionChecks: Checks and NodeChecks both default to [serfHealth].
    let mut checks = checks.unwrap_or_else(|| vec![SERF_CHECK_ID.to_string()]);
    let mut node_checks = node_checks.unwrap_or_else(|| vec![SERF_CHECK_ID.to_string()]);
    if checks.is_empty() {
        node_checks.clear();
    } else if (checks.len() == 1 && checks[0] == SERF_CHECK_ID) || node_checks.is_empty() {
        // The default Checks defers to NodeChecks; an explicit empty NodeChecks empties both.
        checks.clear();
    }
    sess.checks = checks;
    sess.node_checks = node_checks;
    Ok(CreateRequest {
        session: sess,
        behavior,
    })
}

/// Consul's `Session.Apply` checks of a create, with its texts (500s).
pub(super) fn validate_create(
    req: &mut CreateRequest,
    ttl_min: Duration,
) -> Result<(), ServerError> {
    let fail = |m: String| Err(ServerError::Internal(m));
    if req.session.node.is_empty() {
        return fail("Must provide Node".into());
    }
    req.session.behavior = match req.behavior.as_str() {
        "" => SessionBehavior::Release,
        b => match SessionBehavior::parse(b) {
            Some(b) => b,
            None => return fail(format!("Invalid Behavior setting '{b}'")),
        },
    };
    if !req.session.ttl.is_empty() {
        let ttl = match parse_go_duration(&req.session.ttl) {
            Ok(d) => d,
            Err(e) => return fail(format!("Session TTL '{}' invalid: {e}", req.session.ttl)),
        };
        if !ttl.is_zero() && (ttl < ttl_min || ttl > SESSION_TTL_MAX) {
            return fail(format!(
                "Invalid Session TTL '{}', must be between [{}={}]",
                ttl.as_nanos(),
                format_go_duration(ttl_min),
                format_go_duration(SESSION_TTL_MAX)
            ));
        }
    }
    Ok(())
}

#[derive(Serialize)]
struct CreateResponse {
    #[serde(rename = "ID")]
    id: String,
}

/// `PUT /v1/session/create`.
pub(super) async fn create(
    State(s): State<AppState>,
    origin: Option<axum::Extension<crate::rpc::api::OriginNode>>,
    RawQuery(q): RawQuery,
    body: Bytes,
) -> ApiResult {
    let opts = s.options(q.as_deref())?;
    // The node of the agent that received the request (forwarded here from another agent)
    // or this one's, as Consul fills in a session's default `Node`.
    let node = origin.map_or_else(|| s.config.node_name.clone(), |o| o.0 .0.clone());
    let mut req = decode_create(&body, &node)?;
    validate_create(&mut req, s.config.session_ttl_min)?;
    let mut sess = req.session;
    // The ID is chosen here, before the log, so that applying stays deterministic.
    sess.id = loop {
        let id = uuid::Uuid::new_v4().to_string();
        if !s.reader.store().read().sessions.contains_key(&id) {
            break id;
        }
    };
    let id = sess.id.clone();
    let ttl = session_ttl(&sess);
    s.writer.apply(Command::SessionCreate(sess)).await?;
    if let Some(ttl) = ttl {
        s.sessions.reset(&id, ttl);
    }
    json(&CreateResponse { id }, None, opts.pretty)
}

/// `PUT /v1/session/destroy/:uuid`.
pub(super) async fn destroy(
    State(s): State<AppState>,
    Path(id): Path<String>,
    RawQuery(q): RawQuery,
) -> ApiResult {
    let opts = s.options(q.as_deref())?;
    if id.is_empty() {
        return Err(ApiError::bad("Missing session"));
    }
    s.writer
        .apply(Command::SessionDestroy {
            id: id.clone(),
            at_unix_ms: unix_ms_now(),
        })
        .await?;
    s.sessions.clear(&id);
    json(&true, None, opts.pretty)
}

/// `PUT /v1/session/renew/:uuid`: 404 `Session id '<id>' not found` for an unknown session.
pub(super) async fn renew(
    State(s): State<AppState>,
    Path(id): Path<String>,
    RawQuery(q): RawQuery,
) -> ApiResult {
    let opts = s.options(q.as_deref())?;
    if id.is_empty() {
        return Err(ApiError::bad("Missing session"));
    }
    // Timers live on the leader: a follower forwards the renew there.
    let Some(sess) = s.cluster.renew(&id).await? else {
        return Err(ApiError(ServerError::NotFound(format!(
            "Session id '{id}' not found"
        ))));
    };
    json(&[SessionOut::from(&sess)], None, opts.pretty)
}

/// `GET /v1/session/info/:uuid`: `[]` when unknown; blocks on the session.
pub(super) async fn info(
    State(s): State<AppState>,
    Path(id): Path<String>,
    RawQuery(q): RawQuery,
) -> ApiResult {
    let opts = s.options(q.as_deref())?;
    if id.is_empty() {
        return Err(ApiError::bad("Missing session"));
    }
    let (body, meta) = s
        .reader
        .blocking(&opts, &[WatchKey::Session(id.clone())], |db| {
            let items: Vec<SessionOut<'_>> = db
                .sessions
                .get(&id)
                .map(SessionOut::from)
                .into_iter()
                .collect();
            (
                super::respond::json_bytes(&items, opts.pretty),
                db.table(Table::Sessions),
            )
        })
        .await?;
    super::encoded_json(body?, &meta)
}

/// `GET /v1/session/node/:node`: the node's sessions; blocks on them.
pub(super) async fn node(
    State(s): State<AppState>,
    Path(node): Path<String>,
    RawQuery(q): RawQuery,
) -> ApiResult {
    let opts = s.options(q.as_deref())?;
    if node.is_empty() {
        return Err(ApiError::bad("Missing node name"));
    }
    let (body, meta) = s
        .reader
        .blocking(&opts, &[WatchKey::NodeSessions(node.clone())], |db| {
            let items: Vec<SessionOut<'_>> = db
                .node_sessions(&node)
                .into_iter()
                .map(SessionOut::from)
                .collect();
            (
                super::respond::json_bytes(&items, opts.pretty),
                db.table(Table::Sessions),
            )
        })
        .await?;
    super::encoded_json(body?, &meta)
}

/// `GET /v1/session/list`: every session; blocks on the sessions table.
pub(super) async fn list(State(s): State<AppState>, RawQuery(q): RawQuery) -> ApiResult {
    let opts = s.options(q.as_deref())?;
    let (body, meta) = s
        .reader
        .blocking(&opts, &[WatchKey::Table(Table::Sessions)], |db| {
            let items: Vec<SessionOut<'_>> = db.sessions.values().map(SessionOut::from).collect();
            (
                super::respond::json_bytes(&items, opts.pretty),
                db.table(Table::Sessions),
            )
        })
        .await?;
    super::encoded_json(body?, &meta)
}

/// `PUT /v1/session/destroy/`, `/renew/` and `GET /v1/session/info/` without an ID.
pub(super) async fn missing_session() -> ApiResult {
    Err(ApiError::bad("Missing session"))
}

/// `GET /v1/session/node/` without a node.
pub(super) async fn missing_node() -> ApiResult {
    Err(ApiError::bad("Missing node name"))
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    fn dec(body: &str) -> CreateRequest {
        decode_create(body.as_bytes(), "self").unwrap()
    }

    fn checks(r: &CreateRequest) -> (Vec<&str>, Vec<&str>) {
        (
            r.session.checks.iter().map(String::as_str).collect(),
            r.session.node_checks.iter().map(String::as_str).collect(),
        )
    }

    #[test]
    fn defaults_and_check_fixups() {
        let r = dec("");
        assert_eq!(r.session.node, "self");
        assert_eq!(r.session.lock_delay_ns, 15_000_000_000);
        assert_eq!(checks(&r), (vec![], vec!["serfHealth"]));
        // An explicit empty Checks (Patroni) removes serfHealth.
        assert_eq!(checks(&dec(r#"{"checks": []}"#)), (vec![], vec![]));
        assert_eq!(checks(&dec(r#"{"Checks": null}"#)), (vec![], vec![]));
        assert_eq!(
            checks(&dec(r#"{"Checks": ["serfHealth"]}"#)),
            (vec![], vec!["serfHealth"])
        );
        assert_eq!(
            checks(&dec(r#"{"Checks": ["web"]}"#)),
            (vec!["web"], vec!["serfHealth"])
        );
        assert_eq!(
            checks(&dec(r#"{"Checks": ["web"], "NodeChecks": []}"#)),
            (vec![], vec![])
        );
        assert_eq!(
            checks(&dec(r#"{"NodeChecks": ["a", "b"]}"#)),
            (vec![], vec!["a", "b"])
        );
        let r = dec(r#"{"ServiceChecks": [{"ID": "svc-check", "Namespace": ""}]}"#);
        assert_eq!(r.session.service_checks[0].id, "svc-check");
    }

    #[test]
    fn lock_delay_forms() {
        let ld = |b: &str| dec(b).session.lock_delay_ns;
        assert_eq!(ld(r#"{"LockDelay": "0.001s"}"#), 1_000_000);
        assert_eq!(ld(r#"{"lockdelay": "15s"}"#), 15_000_000_000);
        assert_eq!(ld(r#"{"lock_delay": 5}"#), 5_000_000_000);
        assert_eq!(ld(r#"{"LockDelay": 0}"#), 0);
        assert_eq!(ld(r#"{"LockDelay": 2000000000}"#), 2_000_000_000);
        assert!(decode_create(br#"{"LockDelay": "soon"}"#, "n").is_err());
        assert!(decode_create(b"[1]", "n").is_err());
    }

    #[test]
    fn patroni_body_and_validation_texts() {
        let mut r = dec(
            r#"{"name": "pg", "checks": [], "lockdelay": "0.001s", "behavior": "delete", "ttl": "15.0s"}"#,
        );
        assert_eq!(r.session.name, "pg");
        validate_create(&mut r, Duration::from_secs(10)).unwrap();
        assert_eq!(r.session.behavior, SessionBehavior::Delete);
        assert_eq!(r.session.ttl, "15.0s");

        let err = |body: &str| {
            let mut r = dec(body);
            validate_create(&mut r, Duration::from_secs(10))
                .unwrap_err()
                .to_string()
        };
        assert_eq!(
            err(r#"{"TTL": "5s"}"#),
            "Invalid Session TTL '5000000000', must be between [10s=24h0m0s]"
        );
        assert_eq!(
            err(r#"{"TTL": "25h"}"#),
            "Invalid Session TTL '90000000000000', must be between [10s=24h0m0s]"
        );
        assert_eq!(
            err(r#"{"TTL": "abc"}"#),
            "Session TTL 'abc' invalid: time: invalid duration \"abc\""
        );
        assert_eq!(
            err(r#"{"Behavior": "keep"}"#),
            "Invalid Behavior setting 'keep'"
        );
        assert_eq!(err(r#"{"Node": ""}"#), "Must provide Node");
        // "0s" means no TTL; a lowered minimum admits short TTLs.
        let mut r = dec(r#"{"TTL": "0s"}"#);
        validate_create(&mut r, Duration::from_secs(10)).unwrap();
        let mut r = dec(r#"{"TTL": "1s"}"#);
        validate_create(&mut r, Duration::from_millis(500)).unwrap();
    }

    #[test]
    fn output_shape() {
        let s = Session {
            id: "i".into(),
            name: "n".into(),
            node: "node1".into(),
            lock_delay_ns: 15_000_000_000,
            behavior: SessionBehavior::Release,
            ttl: "30s".into(),
            node_checks: vec!["serfHealth".into()],
            ..Default::default()
        };
        let v = serde_json::to_string(&SessionOut::from(&s)).unwrap();
        assert_eq!(
            v,
            r#"{"ID":"i","Name":"n","Node":"node1","LockDelay":15000000000,"Behavior":"release","TTL":"30s","NodeChecks":["serfHealth"],"ServiceChecks":null,"CreateIndex":0,"ModifyIndex":0}"#
        );
    }
}
