//! `/v1/operator/raft/*` and `/v1/operator/autopilot/*`: the Raft configuration, removing a
//! peer, transferring leadership, autopilot health, state and configuration, in Consul's
//! shapes.
//!
//! Raft IDs are the servers' 64-bit Raft node IDs, printed in decimal; `?id=` takes the same
//! text. Operations that need the leader's Raft node run there: a follower forwards them over
//! the server port (`raft::membership`). A follower answers the configuration itself only with
//! `?stale`.

use super::respond::{json, ApiError, ApiResult};
use super::AppState;
use crate::query::options::Consistency;
use crate::raft::membership::{
    PeerRef, RaftConfiguration, TransferRequest, CONFIGURATION_PATH, REMOVE_PEER_PATH,
    TRANSFER_LEADER_PATH,
};
use crate::raft::NodeId;
use axum::body::Bytes;
use axum::extract::{RawQuery, State};
use axum::http::StatusCode;
use axum::response::IntoResponse;
use registry_proto::command::AutopilotConfig;
use registry_proto::duration::{format_go_duration, GoDuration};
use registry_proto::lenient::{Field, FieldKind, Lenient, Schema};
use registry_proto::Command;
use serde::{Deserialize, Serialize};

/// One server of `GET /v1/operator/raft/configuration`.
#[derive(Debug, Serialize)]
#[serde(rename_all = "PascalCase")]
struct RaftServerOut {
    #[serde(rename = "ID")]
    id: String,
    node: String,
    address: String,
    leader: bool,
    protocol_version: &'static str,
    voter: bool,
    last_index: u64,
}

/// `GET /v1/operator/raft/configuration`.
#[derive(Debug, Serialize)]
#[serde(rename_all = "PascalCase")]
struct RaftConfigurationOut {
    servers: Vec<RaftServerOut>,
    index: u64,
}

impl From<RaftConfiguration> for RaftConfigurationOut {
    fn from(c: RaftConfiguration) -> Self {
        RaftConfigurationOut {
            servers: c
                .servers
                .into_iter()
                .map(|s| RaftServerOut {
                    id: s.id.to_string(),
                    node: s.node.name,
                    address: s.node.raft_addr,
                    leader: s.leader,
                    protocol_version: "3",
                    voter: s.voter,
                    last_index: s.last_index,
                })
                .collect(),
            index: c.index,
        }
    }
}

/// `GET /v1/operator/raft/configuration`: the leader's view (any server's with `?stale`).
pub(super) async fn raft_configuration(
    State(s): State<AppState>,
    RawQuery(q): RawQuery,
) -> ApiResult {
    let opts = s.options(q.as_deref())?;
    let raft = s.autopilot.raft();
    let cfg = if raft.is_leader() || opts.consistency == Consistency::Stale {
        raft.configuration()
    } else {
        raft.call_leader_op::<(), RaftConfiguration>(CONFIGURATION_PATH, None)
            .await?
    };
    json(&RaftConfigurationOut::from(cfg), None, opts.pretty)
}

/// `DELETE /v1/operator/raft/peer?id=` or `?address=`: removes a server (voter or
/// learner) from the Raft configuration; 200 with an empty body.
pub(super) async fn raft_remove_peer(
    State(s): State<AppState>,
    RawQuery(q): RawQuery,
) -> ApiResult {
    let opts = s.options(q.as_deref())?;
    let peer = match (opts.get("id"), opts.get("address")) {
        (Some(_), Some(_)) => return Err(ApiError::bad("Must specify only one of ?id or ?address")),
        (Some(id), None) => PeerRef::Id(id.to_string()),
        (None, Some(address)) => PeerRef::Address(address.to_string()),
        (None, None) => {
            return Err(ApiError::bad(
                "Must specify either ?id with the server's ID or ?address with IP:port of peer to remove",
            ))
        }
    };
    let raft = s.autopilot.raft();
    if raft.is_leader() {
        raft.remove_peer(&peer).await?;
    } else {
        raft.call_leader_op::<PeerRef, NodeId>(REMOVE_PEER_PATH, Some(&peer))
            .await?;
    }
    Ok(StatusCode::OK.into_response())
}

/// `POST /v1/operator/raft/transfer-leader[?id=]`: `{"Success":true}` once another server
/// leads.
pub(super) async fn raft_transfer_leader(
    State(s): State<AppState>,
    RawQuery(q): RawQuery,
) -> ApiResult {
    #[derive(Serialize)]
    struct Out {
        #[serde(rename = "Success")]
        success: bool,
    }
    let opts = s.options(q.as_deref())?;
    let req = TransferRequest {
        id: opts
            .get("id")
            .filter(|id| !id.is_empty())
            .map(str::to_string),
    };
    let raft = s.autopilot.raft();
    if raft.is_leader() {
        raft.transfer_leader(req.id.as_deref()).await?;
    } else {
        raft.call_leader_op::<TransferRequest, NodeId>(TRANSFER_LEADER_PATH, Some(&req))
            .await?;
    }
    json(&Out { success: true }, None, opts.pretty)
}

/// `GET /v1/operator/autopilot/health`: 200 when every server is healthy, else 429 (same
/// body).
pub(super) async fn autopilot_health(
    State(s): State<AppState>,
    RawQuery(q): RawQuery,
) -> ApiResult {
    let opts = s.options(q.as_deref())?;
    let reply = s.autopilot.health().await?;
    let mut resp = json(&reply, None, opts.pretty)?;
    if !reply.healthy {
        *resp.status_mut() = StatusCode::TOO_MANY_REQUESTS;
    }
    Ok(resp)
}

/// `GET /v1/operator/autopilot/state`: Consul's `AutopilotState`, always 200. Like the
/// health report it is the leader's view, refreshed now (a follower forwards, `?stale` or
/// not, as Consul does).
pub(super) async fn autopilot_state(State(s): State<AppState>, RawQuery(q): RawQuery) -> ApiResult {
    let opts = s.options(q.as_deref())?;
    let state = s.autopilot.state().await?;
    json(&state, None, opts.pretty)
}

/// Consul's `api.AutopilotConfiguration`.
#[derive(Debug, Serialize)]
#[serde(rename_all = "PascalCase")]
struct AutopilotOut {
    cleanup_dead_servers: bool,
    last_contact_threshold: String,
    max_trailing_logs: u64,
    min_quorum: u64,
    server_stabilization_time: String,
    redundancy_zone_tag: String,
    disable_upgrade_migration: bool,
    upgrade_version_tag: String,
    create_index: u64,
    modify_index: u64,
}

impl From<AutopilotConfig> for AutopilotOut {
    fn from(c: AutopilotConfig) -> Self {
        AutopilotOut {
            cleanup_dead_servers: c.cleanup_dead_servers,
            last_contact_threshold: format_go_duration(c.last_contact_threshold),
            max_trailing_logs: c.max_trailing_logs,
            min_quorum: c.min_quorum,
            server_stabilization_time: format_go_duration(c.server_stabilization_time),
            redundancy_zone_tag: c.redundancy_zone_tag,
            disable_upgrade_migration: c.disable_upgrade_migration,
            upgrade_version_tag: c.upgrade_version_tag,
            create_index: c.create_index,
            modify_index: c.modify_index,
        }
    }
}

/// `GET /v1/operator/autopilot/configuration`.
pub(super) async fn autopilot_get_config(
    State(s): State<AppState>,
    RawQuery(q): RawQuery,
) -> ApiResult {
    let opts = s.options(q.as_deref())?;
    let seed = s.autopilot.seed().clone();
    let (cfg, _) = s
        .reader
        .once(&opts, |db| {
            let cfg = db.autopilot.clone().unwrap_or(seed);
            let index = cfg.modify_index;
            (cfg, index)
        })
        .await?;
    json(&AutopilotOut::from(cfg), None, opts.pretty)
}

/// The body of `PUT /v1/operator/autopilot/configuration`: Consul's defaults for what is
/// left out, durations as Go strings or nanoseconds, keys matched case-insensitively.
#[derive(Debug, Deserialize)]
#[serde(default, rename_all = "PascalCase")]
struct AutopilotIn {
    cleanup_dead_servers: bool,
    last_contact_threshold: GoDuration,
    max_trailing_logs: u64,
    min_quorum: u64,
    server_stabilization_time: GoDuration,
    redundancy_zone_tag: String,
    disable_upgrade_migration: bool,
    upgrade_version_tag: String,
}

impl Default for AutopilotIn {
    fn default() -> Self {
        let d = AutopilotConfig::default();
        AutopilotIn {
            cleanup_dead_servers: d.cleanup_dead_servers,
            last_contact_threshold: GoDuration(d.last_contact_threshold),
            max_trailing_logs: d.max_trailing_logs,
            min_quorum: d.min_quorum,
            server_stabilization_time: GoDuration(d.server_stabilization_time),
            redundancy_zone_tag: d.redundancy_zone_tag,
            disable_upgrade_migration: d.disable_upgrade_migration,
            upgrade_version_tag: d.upgrade_version_tag,
        }
    }
}

static AUTOPILOT_SCHEMA: Schema = Schema {
    name: "AutopilotConfiguration",
    fields: &[
        Field::new("CleanupDeadServers", FieldKind::Bool),
        Field::new("LastContactThreshold", FieldKind::Duration),
        Field::new("MaxTrailingLogs", FieldKind::UInt),
        Field::new("MinQuorum", FieldKind::UInt),
        Field::new("ServerStabilizationTime", FieldKind::Duration),
        Field::new("RedundancyZoneTag", FieldKind::String),
        Field::new("DisableUpgradeMigration", FieldKind::Bool),
        Field::new("UpgradeVersionTag", FieldKind::String),
        // Read-only; accepted and ignored.
        Field::new("CreateIndex", FieldKind::Any),
        Field::new("ModifyIndex", FieldKind::Any),
    ],
};

impl Lenient for AutopilotIn {
    const SCHEMA: &'static Schema = &AUTOPILOT_SCHEMA;
}

/// `PUT /v1/operator/autopilot/configuration[?cas=N]`: `true`, or with `?cas` whether the
/// check-and-set took effect.
pub(super) async fn autopilot_set_config(
    State(s): State<AppState>,
    RawQuery(q): RawQuery,
    body: Bytes,
) -> ApiResult {
    let opts = s.options(q.as_deref())?;
    let cas = match opts.get("cas") {
        None => None,
        Some(v) => Some(
            v.parse::<u64>()
                .map_err(|e| ApiError::bad(format!("Error parsing cas value: {e}")))?,
        ),
    };
    let input = AutopilotIn::decode(&body).map_err(|e| {
        let text = e.to_string();
        let reason = text
            .strip_prefix(registry_proto::lenient::DECODE_ERROR_PREFIX)
            .unwrap_or(&text);
        ApiError::bad(format!("Error parsing autopilot config: {reason}"))
    })?;
    let config = AutopilotConfig {
        cleanup_dead_servers: input.cleanup_dead_servers,
        last_contact_threshold: input.last_contact_threshold.get(),
        max_trailing_logs: input.max_trailing_logs,
        min_quorum: input.min_quorum,
        server_stabilization_time: input.server_stabilization_time.get(),
        redundancy_zone_tag: input.redundancy_zone_tag,
        disable_upgrade_migration: input.disable_upgrade_migration,
        upgrade_version_tag: input.upgrade_version_tag,
        create_index: 0,
        modify_index: 0,
    };
    let done = s
        .writer
        .apply_bool(Command::AutopilotSetConfig { config, cas })
        .await?;
    json(&(cas.is_none() || done), None, opts.pretty)
}
