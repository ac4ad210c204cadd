//! The agent's operational endpoints: `Stats` of `/v1/agent/self` (the Raft and leader
//! figures only a server knows), `/v1/agent/version`, `/v1/agent/host`, `/v1/agent/monitor`,
//! `/v1/agent/reload` and `/v1/operator/usage`.

use super::respond::{json, ApiError, ApiResult};
use super::{AgentState, AppState};
use crate::monitor::{self, Level};
use crate::raft::RaftHandle;
use crate::state::{Table, WatchKey};
use axum::body::Body;
use axum::extract::{RawQuery, State};
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use serde_json::{json, Map, Value};
use std::collections::BTreeSet;
use tokio::sync::broadcast::error::RecvError;

/// `GET /v1/agent/self`: the agent's document with the server's Raft figures in `Stats`.
pub(super) async fn self_info(State(s): State<AppState>, RawQuery(q): RawQuery) -> ApiResult {
    let opts = s.options(q.as_deref())?;
    let mut doc = s.agent.self_info();
    if s.config.server {
        if let Some(stats) = doc.get_mut("Stats").and_then(Value::as_object_mut) {
            fill_server_stats(stats, s.autopilot.raft());
        }
    }
    json(&doc, None, opts.pretty)
}

/// Consul's `consul.*` and `raft.*` stats of a server (all values are strings).
fn fill_server_stats(stats: &mut Map<String, Value>, raft: &RaftHandle) {
    let m = raft.metrics().borrow().clone();
    let leader = raft.is_leader();
    let leader_addr = raft.leader_addr().unwrap_or_default();
    if let Some(consul) = stats
        .entry("consul")
        .or_insert_with(|| json!({}))
        .as_object_mut()
    {
        consul.insert("leader".into(), leader.to_string().into());
        consul.insert("leader_addr".into(), leader_addr.into());
        consul.insert("acl".into(), "disabled".into());
    }
    let cfg = raft.configuration();
    let me = raft.node_id();
    let latest: Vec<String> = cfg
        .servers
        .iter()
        .map(|srv| {
            format!(
                "{{Suffrage:{} ID:{} Address:{}}}",
                if srv.voter { "Voter" } else { "Nonvoter" },
                srv.id,
                srv.node.raft_addr
            )
        })
        .collect();
    let num_peers = cfg.servers.iter().filter(|x| x.voter && x.id != me).count();
    let last_contact = if leader {
        "0".to_string()
    } else if m.current_leader.is_none() {
        "never".to_string()
    } else {
        format!("{}ms", raft.last_contact_ms())
    };
    let applied = m.last_applied.map_or(0, |l| l.index);
    let last_log = m.last_log_index.unwrap_or(0);
    let state = match m.state {
        openraft::ServerState::Leader => "Leader",
        openraft::ServerState::Candidate => "Candidate",
        openraft::ServerState::Learner => "Follower",
        openraft::ServerState::Follower => "Follower",
        openraft::ServerState::Shutdown => "Shutdown",
    };
    let last_log_term = if last_log == 0 {
        0
    } else if last_log == applied {
        m.last_applied.map_or(0, |l| l.leader_id.term)
    } else {
        m.current_term
    };
    let raft_stats = json!({
        "applied_index": applied.to_string(),
        "commit_index": applied.to_string(),
        "fsm_pending": "0",
        "last_contact": last_contact,
        "last_log_index": last_log.to_string(),
        "last_log_term": last_log_term.to_string(),
        "last_snapshot_index": m.snapshot.map_or(0, |l| l.index).to_string(),
        "last_snapshot_term": m.snapshot.map_or(0, |l| l.leader_id.term).to_string(),
        "latest_configuration": format!("[{}]", latest.join(" ")),
        "latest_configuration_index": cfg.index.to_string(),
        "num_peers": num_peers.to_string(),
        "protocol_version": "3",
        "protocol_version_max": "3",
        "protocol_version_min": "0",
        "snapshot_version_max": "1",
        "snapshot_version_min": "0",
        "state": state,
        "term": m.current_term.to_string(),
    });
    stats.insert("raft".into(), raft_stats);
}

/// `GET /v1/agent/version`: Consul's `version.BuildInfo`.
pub(super) async fn version(State(s): State<AgentState>, RawQuery(q): RawQuery) -> ApiResult {
    let opts = s.options(q.as_deref())?;
    let doc = s.agent.self_info();
    let field = |k: &str| {
        doc.pointer(&format!("/Config/{k}"))
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_string()
    };
    let version = field("Version");
    json(
        &json!({
            "HumanVersion": version,
            "Version": version,
            "Revision": field("Revision"),
            "Prerelease": "",
            "VersionMetadata": "",
            "BuildDate": field("BuildDate"),
            "FIPS": "",
        }),
        None,
        opts.pretty,
    )
}

/// `GET /v1/agent/host`: Consul's `debug.CollectHostInfo` shape (`Memory`, `CPU`, `Host`,
/// `Disk`, `CollectionTime`, `Errors`).
pub(super) async fn host(State(s): State<AgentState>, RawQuery(q): RawQuery) -> ApiResult {
    let opts = s.options(q.as_deref())?;
    let info = tokio::task::spawn_blocking(super::host::collect)
        .await
        .map_err(|e| ApiError(crate::ServerError::Internal(e.to_string())))?;
    json(&info, None, opts.pretty)
}

/// `PUT /v1/agent/reload`: re-reads the configuration files and the service and check
/// definitions in them.
pub(super) async fn reload(State(s): State<AgentState>, RawQuery(q): RawQuery) -> ApiResult {
    s.options(q.as_deref())?;
    s.agent.reload().await?;
    Ok(StatusCode::OK.into_response())
}

/// `GET /v1/agent/monitor?loglevel=&logjson`: streams the agent's log lines at that level
/// or above until the client goes away.
pub(super) async fn monitor(State(s): State<AgentState>, RawQuery(q): RawQuery) -> ApiResult {
    let opts = s.options(q.as_deref())?;
    let raw = opts
        .get("loglevel")
        .filter(|l| !l.is_empty())
        .unwrap_or("INFO");
    let Some(level) = Level::parse(raw) else {
        return Err(ApiError::bad(format!("Unknown log level: {raw}")));
    };
    let as_json = opts.has("logjson");
    let mut rx = monitor::hub().subscribe();
    let stream = async_stream(move |tx| async move {
        loop {
            match rx.recv().await {
                Ok(line) if line.level >= level && level != Level::Off => {
                    let mut text = if as_json {
                        line.json.clone()
                    } else {
                        line.text.clone()
                    };
                    text.push('\n');
                    if tx.send(Ok(text.into_bytes())).await.is_err() {
                        return;
                    }
                }
                Ok(_) | Err(RecvError::Lagged(_)) => {}
                Err(RecvError::Closed) => return,
            }
        }
    });
    let mut resp = Response::new(stream);
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    resp.extensions_mut().insert(super::routes::NoCompression);
    Ok(resp)
}

/// A streaming body fed by a task; the task ends when the client drops the body.
fn async_stream<F, Fut>(task: F) -> Body
where
    F: FnOnce(tokio::sync::mpsc::Sender<Result<Vec<u8>, std::io::Error>>) -> Fut,
    Fut: std::future::Future<Output = ()> + Send + 'static,
{
    let (tx, mut rx) = tokio::sync::mpsc::channel(64);
    tokio::spawn(task(tx));
    Body::from_stream(futures::stream::poll_fn(move |cx| rx.poll_recv(cx)))
}

/// `GET /v1/operator/usage`: service and node counts of this datacenter, as Consul reports
/// them.
pub(super) async fn usage(State(s): State<AppState>, RawQuery(q): RawQuery) -> ApiResult {
    let opts = s.options(q.as_deref())?;
    let dc = s.config.datacenter.clone();
    let keys = [
        WatchKey::Table(Table::Nodes),
        WatchKey::Table(Table::Services),
    ];
    let (usage, meta) = s
        .reader
        .blocking(&opts, &keys, |db| {
            let mut names = BTreeSet::new();
            let mut instances = 0u64;
            let mut kinds = [0u64; 6];
            const KINDS: [&str; 6] = [
                "api-gateway",
                "connect-native",
                "connect-proxy",
                "ingress-gateway",
                "mesh-gateway",
                "terminating-gateway",
            ];
            let mut billable = 0u64;
            for svcs in db.services.values() {
                for svc in svcs.values() {
                    names.insert(svc.service.as_str());
                    instances += 1;
                    match KINDS.iter().position(|k| *k == svc.kind) {
                        Some(i) => kinds[i] += 1,
                        None if svc.service != "consul" => billable += 1,
                        None => {}
                    }
                }
            }
            let connect: Map<String, Value> = KINDS
                .iter()
                .zip(kinds)
                .map(|(k, n)| (k.to_string(), n.into()))
                .collect();
            let v = json!({dc.clone(): {
                "Services": names.len(),
                "ServiceInstances": instances,
                "ConnectServiceInstances": connect,
                "BillableServiceInstances": billable,
                "Nodes": db.nodes.len(),
            }});
            (v, db.table(Table::Services).max(db.table(Table::Nodes)))
        })
        .await?;
    // Consul's Usage response carries its query metadata in the body as well.
    let consistency = match meta.consistency {
        crate::query::options::Consistency::Stale => "stale",
        crate::query::options::Consistency::Consistent => "consistent",
        _ => "leader",
    };
    let body = json!({
        "Usage": usage,
        "Index": meta.index.max(1),
        "LastContact": meta.last_contact_ms * 1_000_000,
        "KnownLeader": meta.known_leader,
        "ConsistencyLevel": consistency,
        "NotModified": false,
        "Backend": 0,
        "ResultsFilteredByACLs": false,
    });
    super::encoded_json(super::respond::json_bytes(&body, opts.pretty)?, &meta)
}
