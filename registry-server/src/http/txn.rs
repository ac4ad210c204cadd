//! `PUT /v1/txn`: atomic transactions of KV, node, service and check operations.
//!
//! A transaction with only reads takes the fast path: it runs against a read view with the
//! usual consistency modes and never touches Raft. Anything else is one Raft entry applied
//! all or nothing (`fsm/txn.rs`). Lock operations are first checked against the leader's
//! lock-delays. Answers: 200 `{"Results":[...],"Errors":null}` or 409
//! `{"Results":null,"Errors":[{"OpIndex":n,"What":"..."}]}`; limits (64 operations, 512 KiB)
//! answer 413 with Consul's texts.

use super::kv::MAX_VALUE_SIZE;
use super::respond::{add_meta, json_bytes, ApiError, ApiResult};
use super::AppState;
use crate::fsm::txn::{read_only, MAX_TXN_OPS};
use crate::query::QueryMeta;
use crate::ServerError;
use axum::body::Bytes;
use axum::extract::{RawQuery, State};
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use base64::Engine;
use registry_proto::api::output::{HealthCheckOut, KvPairOut, NodeOut, NodeServiceOut};
use registry_proto::api::CatalogRegisterRequest;
use registry_proto::command::{CatalogVerb, KvVerb, TxnError, TxnOp, TxnResponse, TxnResult};
use registry_proto::lenient::{fold_key, Lenient};
use registry_proto::model::{DirEntry, HealthCheck, Node, NodeService};
use registry_proto::{Command, CommandResponse};
use serde::Serialize;
use serde_json::{Map, Value};
use std::collections::BTreeMap;

/// Consul's `txn_max_req_len` default.
pub const MAX_TXN_REQ_LEN: usize = 512 * 1024;

/// One decoded operation, or the error Consul reports for it (an unknown verb).
// At most 64 per request and short-lived.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Clone, PartialEq, Eq)]
enum Parsed {
    Op(TxnOp),
    Bad(String),
}

fn parse_err(msg: impl std::fmt::Display) -> Box<Response> {
    text(
        StatusCode::BAD_REQUEST,
        format!("Failed to parse body: {msg}"),
    )
}

fn text(status: StatusCode, body: String) -> Box<Response> {
    let mut r = (status, body).into_response();
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    Box::new(r)
}

/// The value of the key of `m` that folds to `name`; an exact match wins.
fn field<'a>(m: &'a Map<String, Value>, name: &str) -> Option<&'a Value> {
    let folded = fold_key(name);
    m.get(name)
        .or_else(|| {
            m.iter()
                .find(|(k, _)| fold_key(k) == folded)
                .map(|(_, v)| v)
        })
        .filter(|v| !v.is_null())
}

fn str_field(m: &Map<String, Value>, name: &str) -> Result<String, String> {
    match field(m, name) {
        None => Ok(String::new()),
        Some(Value::String(s)) => Ok(s.clone()),
        Some(_) => Err(format!("invalid type for {name}: expected a string")),
    }
}

fn u64_field(m: &Map<String, Value>, name: &str) -> Result<u64, String> {
    match field(m, name) {
        None => Ok(0),
        Some(Value::Number(n)) => n
            .as_u64()
            .or_else(|| {
                n.as_f64()
                    .filter(|f| f.is_finite() && *f >= 0.0 && f.fract() == 0.0)
                    .map(|f| f as u64)
            })
            .ok_or_else(|| format!("invalid value for {name}: expected an unsigned integer")),
        Some(_) => Err(format!("invalid type for {name}: expected a number")),
    }
}

fn map_field(m: &Map<String, Value>, name: &str) -> Result<BTreeMap<String, String>, String> {
    match field(m, name) {
        None => Ok(BTreeMap::new()),
        Some(Value::Object(o)) => o
            .iter()
            .map(|(k, v)| match v {
                Value::String(s) => Ok((k.clone(), s.clone())),
                _ => Err(format!("invalid type for {name}: expected strings")),
            })
            .collect(),
        Some(_) => Err(format!("invalid type for {name}: expected an object")),
    }
}

fn obj<'a>(
    m: &'a Map<String, Value>,
    name: &str,
) -> Result<Option<&'a Map<String, Value>>, String> {
    match field(m, name) {
        None => Ok(None),
        Some(Value::Object(o)) => Ok(Some(o)),
        Some(_) => Err(format!("invalid type for {name}: expected an object")),
    }
}

/// The base64-decoded `Value` of a KV operation (in an allocation of its exact size: the
/// state keeps these very bytes).
fn kv_value(m: &Map<String, Value>) -> Result<Bytes, String> {
    match field(m, "Value") {
        None => Ok(Bytes::new()),
        Some(Value::String(s)) => base64::engine::general_purpose::STANDARD
            .decode(s)
            .map(|v| Bytes::copy_from_slice(&v))
            .map_err(|e| format!("failed to decode value: {e}")),
        Some(_) => Err("failed to decode value: unexpected value type".to_string()),
    }
}

fn parse_kv(m: &Map<String, Value>) -> Result<Parsed, String> {
    let verb = str_field(m, "Verb")?;
    let key = str_field(m, "Key")?;
    let value = kv_value(m)?;
    let Some(verb) = KvVerb::parse(&verb) else {
        return Ok(Parsed::Bad(format!("unknown KV verb {verb:?}")));
    };
    Ok(Parsed::Op(TxnOp::Kv {
        verb,
        entry: DirEntry {
            key,
            flags: u64_field(m, "Flags")?,
            value,
            session: str_field(m, "Session")?,
            ..Default::default()
        },
        index: u64_field(m, "Index")?,
    }))
}

fn parse_node(m: &Map<String, Value>, datacenter: &str) -> Result<Parsed, String> {
    let verb = str_field(m, "Verb")?;
    let Some(verb) = CatalogVerb::parse(&verb) else {
        return Ok(Parsed::Bad(format!("unknown Node verb {verb:?}")));
    };
    let empty = Map::new();
    let n = obj(m, "Node")?.unwrap_or(&empty);
    let mut dc = str_field(n, "Datacenter")?;
    if dc.is_empty() {
        dc = datacenter.to_string();
    }
    Ok(Parsed::Op(TxnOp::Node {
        verb,
        node: Node {
            id: str_field(n, "ID")?,
            node: str_field(n, "Node")?,
            address: str_field(n, "Address")?,
            datacenter: dc,
            tagged_addresses: map_field(n, "TaggedAddresses")?,
            meta: map_field(n, "Meta")?,
            ..Default::default()
        },
        index: u64_field(n, "ModifyIndex")?,
    }))
}

fn parse_service(m: &Map<String, Value>) -> Result<Parsed, String> {
    let verb = str_field(m, "Verb")?;
    let Some(verb) = CatalogVerb::parse(&verb) else {
        return Ok(Parsed::Bad(format!("unknown Service verb {verb:?}")));
    };
    let node = str_field(m, "Node")?;
    let empty = Map::new();
    let raw = obj(m, "Service")?.unwrap_or(&empty);
    let index = u64_field(raw, "ModifyIndex")?;
    let service = match verb {
        CatalogVerb::Set | CatalogVerb::Cas => {
            let req = CatalogRegisterRequest::decode_value(serde_json::json!({
                "Node": node,
                "SkipNodeUpdate": true,
                "Service": Value::Object(raw.clone()),
            }))
            .map_err(|e| e.to_string())?;
            req.into_command("")
                .map_err(|e| e.to_string())?
                .service
                .unwrap_or_default()
        }
        _ => NodeService {
            id: str_field(raw, "ID")?,
            ..Default::default()
        },
    };
    Ok(Parsed::Op(TxnOp::Service {
        verb,
        node,
        service,
        index,
    }))
}

fn parse_check(m: &Map<String, Value>) -> Result<Parsed, String> {
    let verb = str_field(m, "Verb")?;
    let Some(verb) = CatalogVerb::parse(&verb) else {
        return Ok(Parsed::Bad(format!("unknown Check verb {verb:?}")));
    };
    let empty = Map::new();
    let raw = obj(m, "Check")?.unwrap_or(&empty);
    let index = u64_field(raw, "ModifyIndex")?;
    let node = str_field(raw, "Node")?;
    let check = match verb {
        CatalogVerb::Set | CatalogVerb::Cas => {
            let req = CatalogRegisterRequest::decode_value(serde_json::json!({
                "Node": node,
                "SkipNodeUpdate": true,
                "Checks": [Value::Object(raw.clone())],
            }))
            .map_err(|e| e.to_string())?;
            req.into_command("")
                .map_err(|e| e.to_string())?
                .checks
                .into_iter()
                .next()
                .unwrap_or_default()
        }
        _ => {
            let mut id = str_field(raw, "CheckID")?;
            if id.is_empty() {
                id = str_field(raw, "Name")?;
            }
            HealthCheck {
                node,
                check_id: id,
                ..Default::default()
            }
        }
    };
    Ok(Parsed::Op(TxnOp::Check { verb, check, index }))
}

/// Decodes the body into operations. `Err` is the response to send (400 or 413).
fn parse_body(body: &[u8], datacenter: &str) -> Result<Vec<Parsed>, Box<Response>> {
    if body.len() > MAX_TXN_REQ_LEN {
        return Err(text(
            StatusCode::PAYLOAD_TOO_LARGE,
            format!("Request body too large, max size: {MAX_TXN_REQ_LEN} bytes"),
        ));
    }
    let v: Value = if body.iter().all(u8::is_ascii_whitespace) {
        Value::Array(Vec::new())
    } else {
        serde_json::from_slice(body).map_err(parse_err)?
    };
    let items = match v {
        Value::Array(a) => a,
        Value::Null => Vec::new(),
        _ => return Err(parse_err("expected a JSON array of operations")),
    };
    if items.len() > MAX_TXN_OPS {
        return Err(text(
            StatusCode::PAYLOAD_TOO_LARGE,
            format!(
                "Transaction contains too many operations ({} > {MAX_TXN_OPS})",
                items.len()
            ),
        ));
    }
    let mut out = Vec::with_capacity(items.len());
    for item in &items {
        let Value::Object(m) = item else {
            return Err(parse_err("expected an object for each operation"));
        };
        let parsed = if let Some(kv) = obj(m, "KV").map_err(parse_err)? {
            parse_kv(kv)
        } else if let Some(n) = obj(m, "Node").map_err(parse_err)? {
            parse_node(n, datacenter)
        } else if let Some(s) = obj(m, "Service").map_err(parse_err)? {
            parse_service(s)
        } else if let Some(c) = obj(m, "Check").map_err(parse_err)? {
            parse_check(c)
        } else {
            // Consul drops operations of no known kind.
            continue;
        };
        match parsed {
            Ok(Parsed::Op(TxnOp::Kv { entry, .. })) if entry.value.len() > MAX_VALUE_SIZE => {
                return Err(text(
                    StatusCode::PAYLOAD_TOO_LARGE,
                    format!(
                        "Value for key {:?} is too large ({} > {MAX_VALUE_SIZE} bytes)",
                        entry.key,
                        entry.value.len()
                    ),
                ))
            }
            Ok(p) => out.push(p),
            Err(e) => return Err(parse_err(e)),
        }
    }
    Ok(out)
}

// Built one at a time while encoding a response.
#[allow(clippy::large_enum_variant)]
#[derive(Serialize)]
enum ResultOut {
    #[serde(rename = "KV")]
    Kv(KvPairOut),
    #[serde(rename = "Node")]
    Node(NodeOut),
    #[serde(rename = "Service")]
    Service(NodeServiceOut),
    #[serde(rename = "Check")]
    Check(HealthCheckOut),
}

impl From<&TxnResult> for ResultOut {
    fn from(r: &TxnResult) -> Self {
        match r {
            TxnResult::Kv(e) => ResultOut::Kv(KvPairOut::from(e)),
            TxnResult::Node(n) => ResultOut::Node(NodeOut::from(n)),
            TxnResult::Service(s) => ResultOut::Service(NodeServiceOut::from(s)),
            TxnResult::Check(c) => ResultOut::Check(HealthCheckOut::from(c)),
        }
    }
}

#[derive(Serialize)]
struct ErrorOut<'a> {
    #[serde(rename = "OpIndex")]
    op_index: u32,
    #[serde(rename = "What")]
    what: &'a str,
}

#[derive(Serialize)]
struct TxnOut<'a> {
    #[serde(rename = "Results")]
    results: Option<Vec<ResultOut>>,
    #[serde(rename = "Errors")]
    errors: Option<Vec<ErrorOut<'a>>>,
}

/// The read fast path's answer also carries Consul's embedded `QueryMeta` fields.
#[derive(Serialize)]
struct TxnReadOut<'a> {
    #[serde(flatten)]
    txn: TxnOut<'a>,
    #[serde(rename = "Index")]
    index: u64,
    #[serde(rename = "LastContact")]
    last_contact: u64,
    #[serde(rename = "KnownLeader")]
    known_leader: bool,
    #[serde(rename = "ConsistencyLevel")]
    consistency_level: &'static str,
    #[serde(rename = "NotModified")]
    not_modified: bool,
    #[serde(rename = "Backend")]
    backend: u8,
}

fn txn_out(r: &TxnResponse) -> TxnOut<'_> {
    if r.errors.is_empty() {
        TxnOut {
            results: Some(r.results.iter().map(ResultOut::from).collect()),
            errors: None,
        }
    } else {
        TxnOut {
            results: None,
            errors: Some(
                r.errors
                    .iter()
                    .map(|e| ErrorOut {
                        op_index: e.op_index,
                        what: &e.what,
                    })
                    .collect(),
            ),
        }
    }
}

fn respond(body: Vec<u8>, conflict: bool, meta: Option<&QueryMeta>) -> ApiResult {
    let status = if conflict {
        StatusCode::CONFLICT
    } else {
        StatusCode::OK
    };
    let mut resp = (status, body).into_response();
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    if let Some(m) = meta {
        // Only the leadership headers: a transaction has no index to block on.
        let mut h = axum::http::HeaderMap::new();
        add_meta(&mut h, m);
        for name in ["X-Consul-LastContact", "X-Consul-KnownLeader"] {
            if let Some(v) = h.get(name) {
                resp.headers_mut().insert(name, v.clone());
            }
        }
    }
    Ok(resp)
}

fn op_index(i: usize) -> u32 {
    u32::try_from(i).unwrap_or(u32::MAX)
}

/// `PUT /v1/txn`.
pub(super) async fn txn(
    State(s): State<AppState>,
    RawQuery(q): RawQuery,
    body: Bytes,
) -> ApiResult {
    let opts = s.options(q.as_deref())?;
    let parsed = match parse_body(&body, &s.config.datacenter) {
        Ok(p) => p,
        Err(resp) => return Ok(*resp),
    };
    let writes = parsed
        .iter()
        .any(|p| matches!(p, Parsed::Op(op) if op.is_write()));

    if !writes {
        // Read-only fast path: no Raft, consistency modes apply, no blocking.
        let (resp, meta) = s
            .reader
            .once(&opts, |db| {
                let mut out = TxnResponse::default();
                for (i, p) in parsed.iter().enumerate() {
                    match p {
                        Parsed::Bad(what) => out.errors.push(TxnError {
                            op_index: op_index(i),
                            what: what.clone(),
                        }),
                        Parsed::Op(op) => {
                            let r = read_only(db, std::slice::from_ref(op));
                            out.results.extend(r.results);
                            out.errors.extend(r.errors.into_iter().map(|e| TxnError {
                                op_index: op_index(i),
                                what: e.what,
                            }));
                        }
                    }
                }
                if !out.errors.is_empty() {
                    out.results.clear();
                }
                (out, 0)
            })
            .await?;
        let conflict = !resp.errors.is_empty();
        let out = TxnReadOut {
            txn: txn_out(&resp),
            index: 0,
            last_contact: meta.last_contact_ms.saturating_mul(1_000_000),
            known_leader: meta.known_leader,
            consistency_level: "",
            not_modified: false,
            backend: 0,
        };
        return respond(json_bytes(&out, opts.pretty)?, conflict, Some(&meta));
    }

    // Pre-checks on the leader, before the log: unknown verbs and lock-delays.
    let store = s.reader.store().clone();
    let mut errors = Vec::new();
    let mut ops = Vec::with_capacity(parsed.len());
    for (i, p) in parsed.into_iter().enumerate() {
        match p {
            Parsed::Bad(what) => errors.push(TxnError {
                op_index: op_index(i),
                what,
            }),
            Parsed::Op(op) => {
                if let TxnOp::Kv {
                    verb: KvVerb::Lock,
                    entry,
                    ..
                } = &op
                {
                    if store.kv_lock_delay(&entry.key).is_some() {
                        errors.push(TxnError {
                            op_index: op_index(i),
                            what: format!("failed to lock key {:?} due to lock delay", entry.key),
                        });
                    }
                }
                ops.push(op);
            }
        }
    }
    let resp = if errors.is_empty() {
        match s.writer.apply(Command::Txn(ops)).await? {
            CommandResponse::Txn(r) => r,
            other => {
                return Err(ApiError(ServerError::Internal(format!(
                    "unexpected transaction response {other:?}"
                ))))
            }
        }
    } else {
        TxnResponse {
            results: Vec::new(),
            errors,
        }
    };
    let conflict = !resp.errors.is_empty();
    respond(json_bytes(&txn_out(&resp), opts.pretty)?, conflict, None)
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    fn parse(body: &str) -> Vec<Parsed> {
        parse_body(body.as_bytes(), "dc1").unwrap()
    }

    fn status_of(body: &str) -> (StatusCode, String) {
        let r = *parse_body(body.as_bytes(), "dc1").unwrap_err();
        let status = r.status();
        let bytes =
            futures::executor::block_on(axum::body::to_bytes(r.into_body(), 1 << 20)).unwrap();
        (status, String::from_utf8_lossy(&bytes).into_owned())
    }

    #[test]
    fn decodes_every_kind_case_insensitively() {
        let ops = parse(
            r#"[
              {"KV": {"Verb": "set", "Key": "k", "Value": "aGk=", "Flags": 16045690984230472216}},
              {"kv": {"verb": "lock", "key": "k", "session": "s1"}},
              {"Node": {"Verb": "set", "Node": {"Node": "n", "Address": "10.0.0.1", "Meta": {"a": "b"}}}},
              {"Service": {"Verb": "cas", "Node": "n", "Service": {"Service": "web", "Port": 80, "ModifyIndex": 7}}},
              {"Check": {"Verb": "delete", "Check": {"Node": "n", "CheckID": "c"}}},
              {"KV": {"Verb": "frob", "Key": "k"}},
              {"Other": {}}
            ]"#,
        );
        assert_eq!(ops.len(), 6);
        match &ops[0] {
            Parsed::Op(TxnOp::Kv { verb, entry, .. }) => {
                assert_eq!(*verb, KvVerb::Set);
                assert_eq!(entry.value, &b"hi"[..]);
                assert_eq!(entry.flags, 16_045_690_984_230_472_216);
            }
            other => panic!("{other:?}"),
        }
        assert!(matches!(&ops[1], Parsed::Op(TxnOp::Kv { entry, .. }) if entry.session == "s1"));
        assert!(
            matches!(&ops[2], Parsed::Op(TxnOp::Node { node, .. }) if node.datacenter == "dc1" && node.meta["a"] == "b")
        );
        assert!(
            matches!(&ops[3], Parsed::Op(TxnOp::Service { service, index: 7, .. }) if service.id == "web" && service.port == 80)
        );
        assert!(
            matches!(&ops[4], Parsed::Op(TxnOp::Check { check, verb: CatalogVerb::Delete, .. }) if check.check_id == "c")
        );
        assert_eq!(ops[5], Parsed::Bad("unknown KV verb \"frob\"".into()));
    }

    #[test]
    fn limits_and_parse_errors() {
        let many = format!(
            "[{}]",
            vec![r#"{"KV":{"Verb":"get","Key":"k"}}"#; 65].join(",")
        );
        assert_eq!(
            status_of(&many),
            (
                StatusCode::PAYLOAD_TOO_LARGE,
                "Transaction contains too many operations (65 > 64)".into()
            )
        );
        let big = base64::engine::general_purpose::STANDARD.encode(vec![0u8; MAX_VALUE_SIZE + 1]);
        let (st, msg) = status_of(&format!(
            r#"[{{"KV":{{"Verb":"set","Key":"big","Value":"{big}"}}}}]"#
        ));
        // The base64 form of an over-limit value already exceeds the request limit.
        assert_eq!(st, StatusCode::PAYLOAD_TOO_LARGE);
        assert_eq!(msg, "Request body too large, max size: 524288 bytes");
        let (st, msg) = status_of(r#"{"KV": 1}"#);
        assert_eq!(st, StatusCode::BAD_REQUEST);
        assert!(msg.starts_with("Failed to parse body: "), "{msg}");
        let (st, msg) = status_of(r#"[{"KV": {"Verb": "set", "Key": "k", "Value": "!!"}}]"#);
        assert_eq!(st, StatusCode::BAD_REQUEST);
        assert!(msg.contains("failed to decode value"), "{msg}");
        assert!(parse("").is_empty());
    }

    #[test]
    fn output_shapes() {
        let ok = TxnResponse {
            results: vec![TxnResult::Kv(DirEntry {
                key: "k".into(),
                flags: 1,
                ..Default::default()
            })],
            errors: vec![],
        };
        assert_eq!(
            serde_json::to_string(&txn_out(&ok)).unwrap(),
            r#"{"Results":[{"KV":{"LockIndex":0,"Key":"k","Flags":1,"Value":null,"CreateIndex":0,"ModifyIndex":0}}],"Errors":null}"#
        );
        let bad = TxnResponse {
            results: vec![],
            errors: vec![TxnError {
                op_index: 2,
                what: "boom".into(),
            }],
        };
        assert_eq!(
            serde_json::to_string(&txn_out(&bad)).unwrap(),
            r#"{"Results":null,"Errors":[{"OpIndex":2,"What":"boom"}]}"#
        );
    }
}
