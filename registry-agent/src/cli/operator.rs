//! `registry operator raft list-peers|remove-peer|transfer-leader` and `registry operator
//! autopilot get-config|set-config|state`: Consul's operator commands, over the HTTP API
//! (`state` lives in [`super::autopilot_state`]).

use super::autopilot_state::StateArgs;
use super::http::{Client, HttpFlags, ServerFlags};
use super::table::columnize;
use super::ui::Ui;
use clap::{Args, Subcommand};
use registry_proto::duration::format_go_duration;
use reqwest::Method;
use serde::Deserialize;
use serde_json::Value;
use std::collections::HashMap;
use std::time::Duration;

/// `operator` subcommands.
#[derive(Subcommand, Debug)]
pub enum OperatorCommand {
    /// Inspects and changes the Raft configuration of the servers.
    Raft {
        /// The Raft operation.
        #[command(subcommand)]
        command: RaftCommand,
    },
    /// Reads and changes the autopilot configuration and shows autopilot's view of the
    /// servers.
    Autopilot {
        /// The autopilot operation.
        #[command(subcommand)]
        command: AutopilotCommand,
    },
}

/// `operator raft` subcommands.
#[derive(Subcommand, Debug)]
pub enum RaftCommand {
    /// Displays the current Raft peer configuration: each server's node name, Raft ID and
    /// address, whether it leads or follows, whether it votes, its last log index and how
    /// far it trails the leader.
    #[command(name = "list-peers")]
    ListPeers(ListPeersArgs),
    /// Removes a server from the Raft configuration, by Raft ID (-id, as list-peers shows
    /// it) or Raft address (-address, ip:port). Use it for a server that is gone for good;
    /// the cluster must keep at least one voter.
    #[command(name = "remove-peer")]
    RemovePeer(RemovePeerArgs),
    /// Transfers Raft leadership to another voter: the one with -id, else the most
    /// up-to-date one.
    #[command(name = "transfer-leader")]
    TransferLeader(TransferLeaderArgs),
}

/// `operator autopilot` subcommands.
#[derive(Subcommand, Debug)]
pub enum AutopilotCommand {
    /// Displays the current autopilot configuration.
    #[command(name = "get-config")]
    GetConfig(GetConfigArgs),
    /// Modifies the autopilot configuration: only the given settings change, with a
    /// check-and-set so that a concurrent change is not overwritten.
    #[command(name = "set-config")]
    SetConfig(SetConfigArgs),
    /// Displays autopilot's view of the servers: overall health, failure tolerance, the
    /// leader and voters, and each server's role, health and Raft progress.
    #[command(name = "state")]
    State(StateArgs),
}

/// `operator raft list-peers`.
#[derive(Args, Debug)]
pub struct ListPeersArgs {
    #[command(flatten)]
    http: HttpFlags,
    #[command(flatten)]
    server: ServerFlags,
}

/// `operator raft remove-peer`.
#[derive(Args, Debug)]
pub struct RemovePeerArgs {
    #[command(flatten)]
    http: HttpFlags,
    #[command(flatten)]
    server: ServerFlags,
    /// The Raft address (ip:port) of the server to remove from the Raft configuration.
    #[arg(long, value_name = "ADDRESS")]
    address: Option<String>,
    /// The Raft ID of the server to remove from the Raft configuration.
    #[arg(long, value_name = "ID")]
    id: Option<String>,
}

/// `operator raft transfer-leader`.
#[derive(Args, Debug)]
pub struct TransferLeaderArgs {
    #[command(flatten)]
    http: HttpFlags,
    #[command(flatten)]
    server: ServerFlags,
    /// The Raft ID of the server to transfer leadership to.
    #[arg(long, value_name = "ID")]
    id: Option<String>,
}

/// `operator autopilot get-config`.
#[derive(Args, Debug)]
pub struct GetConfigArgs {
    #[command(flatten)]
    http: HttpFlags,
    #[command(flatten)]
    server: ServerFlags,
}

fn duration_flag(text: &str) -> Result<Duration, String> {
    crate::config::duration::parse_duration(text)
}

/// `operator autopilot set-config`.
#[derive(Args, Debug, Default)]
pub struct SetConfigArgs {
    #[command(flatten)]
    http: HttpFlags,
    #[command(flatten)]
    server: ServerFlags,
    /// Whether autopilot removes servers the leader has not reached for a while
    /// (true|false).
    #[arg(long = "cleanup-dead-servers", value_parser = super::go_bool, value_name = "BOOL")]
    cleanup_dead_servers: Option<bool>,
    /// The most log entries a server may trail the leader by and still be healthy.
    #[arg(long = "max-trailing-logs", value_name = "N")]
    max_trailing_logs: Option<u64>,
    /// The fewest voters autopilot leaves when it removes dead servers.
    #[arg(long = "min-quorum", value_name = "N")]
    min_quorum: Option<u64>,
    /// The longest a server may go without contact from the leader and still be healthy,
    /// such as `200ms`.
    #[arg(long = "last-contact-threshold", value_parser = duration_flag, value_name = "DURATION")]
    last_contact_threshold: Option<Duration>,
    /// How long a new server must stay healthy before it becomes a voter, such as `10s`.
    #[arg(long = "server-stabilization-time", value_parser = duration_flag, value_name = "DURATION")]
    server_stabilization_time: Option<Duration>,
    /// (Enterprise-only in Consul; stored, no effect) node metadata key of redundancy zones.
    #[arg(long = "redundancy-zone-tag", value_name = "TAG")]
    redundancy_zone_tag: Option<String>,
    /// (Enterprise-only in Consul; stored, no effect) disables upgrade migrations.
    #[arg(long = "disable-upgrade-migration", value_parser = super::go_bool, value_name = "BOOL")]
    disable_upgrade_migration: Option<bool>,
    /// (Enterprise-only in Consul; stored, no effect) node metadata key of the version.
    #[arg(long = "upgrade-version-tag", value_name = "TAG")]
    upgrade_version_tag: Option<String>,
}

/// Runs an `operator` command.
pub async fn run(command: OperatorCommand, ui: &mut Ui<'_>) -> i32 {
    match command {
        OperatorCommand::Raft { command } => match command {
            RaftCommand::ListPeers(args) => list_peers(args, ui).await,
            RaftCommand::RemovePeer(args) => remove_peer(args, ui).await,
            RaftCommand::TransferLeader(args) => transfer_leader(args, ui).await,
        },
        OperatorCommand::Autopilot { command } => match command {
            AutopilotCommand::GetConfig(args) => get_config(args, ui).await,
            AutopilotCommand::SetConfig(args) => set_config(args, ui).await,
            AutopilotCommand::State(args) => super::autopilot_state::run(args, ui).await,
        },
    }
}

/// One server of `GET /v1/operator/raft/configuration`.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct RaftServer {
    /// Raft ID.
    #[serde(rename = "ID")]
    pub id: String,
    /// Node name.
    pub node: String,
    /// Raft address.
    pub address: String,
    /// Whether it leads.
    pub leader: bool,
    /// Raft protocol version.
    #[serde(default)]
    pub protocol_version: String,
    /// Whether it votes.
    pub voter: bool,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
struct RaftConfiguration {
    #[serde(default)]
    servers: Vec<RaftServer>,
}

/// One server of `GET /v1/operator/autopilot/health` (the fields list-peers uses).
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct ServerHealth {
    /// Raft ID.
    #[serde(rename = "ID")]
    pub id: String,
    /// Last log index.
    #[serde(default)]
    pub last_index: u64,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
struct HealthReply {
    #[serde(default)]
    servers: Vec<ServerHealth>,
}

/// The `list-peers` table, as Consul prints it.
pub fn render_peers(servers: &[RaftServer], health: &[ServerHealth]) -> String {
    let by_id: HashMap<&str, &ServerHealth> = health.iter().map(|h| (h.id.as_str(), h)).collect();
    let leader_index = servers
        .iter()
        .filter(|s| s.leader)
        .find_map(|s| by_id.get(s.id.as_str()).map(|h| h.last_index))
        .unwrap_or(0);
    let mut rows = vec![[
        "Node",
        "ID",
        "Address",
        "State",
        "Voter",
        "RaftProtocol",
        "Commit Index",
        "Trails Leader By",
    ]
    .map(String::from)
    .to_vec()];
    for s in servers {
        let protocol = if s.protocol_version.is_empty() {
            "<=1".to_string()
        } else {
            s.protocol_version.clone()
        };
        let state = if s.leader { "leader" } else { "follower" };
        let mut row = vec![
            s.node.clone(),
            s.id.clone(),
            s.address.clone(),
            state.to_string(),
            s.voter.to_string(),
            protocol,
        ];
        match by_id.get(s.id.as_str()) {
            Some(h) => {
                let behind = leader_index.saturating_sub(h.last_index);
                let trails = if s.leader {
                    "_".to_string()
                } else if behind <= 1 {
                    format!("{behind} Commit")
                } else {
                    format!("{behind} Commits")
                };
                row.push(h.last_index.to_string());
                row.push(trails);
            }
            None => row.push("_".to_string()),
        }
        rows.push(row);
    }
    columnize(&rows)
}

fn client(http: &HttpFlags, server: &ServerFlags, ui: &mut Ui<'_>) -> Result<Client, i32> {
    Client::new(http, Some(server)).map_err(|e| ui.fail(&format!("Error initializing client: {e}")))
}

async fn list_peers(args: ListPeersArgs, ui: &mut Ui<'_>) -> i32 {
    let client = match client(&args.http, &args.server, ui) {
        Ok(c) => c,
        Err(code) => return code,
    };
    let config: Result<RaftConfiguration, String> =
        match client.get_ok("/v1/operator/raft/configuration", &[]).await {
            Ok(r) => r.json(),
            Err(e) => Err(e),
        };
    let config = match config {
        Ok(c) => c,
        Err(e) => {
            return ui.fail(&format!(
                "Error getting peers: Failed to retrieve raft configuration: {e}"
            ))
        }
    };
    let health: Result<HealthReply, String> = match client
        .send(Method::GET, "/v1/operator/autopilot/health", &[], None)
        .await
    {
        Ok(r) if r.status == 200 || r.status == 429 => r.json(),
        Ok(r) => Err(r.status_error()),
        Err(e) => Err(e),
    };
    let health = match health {
        Ok(h) => h,
        Err(e) => {
            return ui.fail(&format!(
                "Error getting peers: Failed to retrieve autopilot health: {e}"
            ))
        }
    };
    ui.output(&render_peers(&config.servers, &health.servers));
    0
}

async fn remove_peer(args: RemovePeerArgs, ui: &mut Ui<'_>) -> i32 {
    let address = args.address.clone().unwrap_or_default();
    let id = args.id.clone().unwrap_or_default();
    if address.is_empty() && id.is_empty() {
        return ui.fail("Error removing peer: an address or id is required for the peer to remove");
    }
    if !address.is_empty() && !id.is_empty() {
        return ui.fail("Error removing peer: cannot give both an address and id");
    }
    let client = match client(&args.http, &args.server, ui) {
        Ok(c) => c,
        Err(code) => return code,
    };
    let query = if address.is_empty() {
        ("id", id.clone())
    } else {
        ("address", address.clone())
    };
    match client
        .send(Method::DELETE, "/v1/operator/raft/peer", &[query], None)
        .await
    {
        Ok(r) if r.status == 200 => {
            if address.is_empty() {
                ui.output(&format!("Removed peer with id {id:?}"));
            } else {
                ui.output(&format!("Removed peer with address {address:?}"));
            }
            0
        }
        Ok(r) => ui.fail(&format!("Error removing peer: {}", r.status_error())),
        Err(e) => ui.fail(&format!("Error removing peer: {e}")),
    }
}

async fn transfer_leader(args: TransferLeaderArgs, ui: &mut Ui<'_>) -> i32 {
    let client = match client(&args.http, &args.server, ui) {
        Ok(c) => c,
        Err(code) => return code,
    };
    let query: Vec<(&str, String)> = match args.id.as_deref() {
        Some(id) if !id.is_empty() => vec![("id", id.to_string())],
        _ => Vec::new(),
    };
    let reply: Result<Value, String> = match client
        .send(
            Method::POST,
            "/v1/operator/raft/transfer-leader",
            &query,
            None,
        )
        .await
    {
        Ok(r) if r.status == 200 => r.json(),
        Ok(r) => Err(r.status_error()),
        Err(e) => Err(e),
    };
    match reply {
        Ok(v) if v.get("Success").and_then(Value::as_bool) == Some(true) => {
            ui.output("Success");
            0
        }
        Ok(_) => ui.fail("Error transfering leadership: Failed to transfer leadership"),
        Err(e) => ui.fail(&format!(
            "Error transfering leadership: Failed to transfer leadership {e}"
        )),
    }
}

/// The `get-config` lines, as Consul prints them.
pub fn render_config(cfg: &Value) -> String {
    let text = |key: &str| match cfg.get(key) {
        Some(Value::String(s)) => s.clone(),
        Some(Value::Null) | None => String::new(),
        Some(other) => other.to_string(),
    };
    let quoted = |key: &str| format!("{:?}", text(key));
    let or = |s: String, default: &str| if s.is_empty() { default.to_string() } else { s };
    [
        format!(
            "CleanupDeadServers = {}",
            or(text("CleanupDeadServers"), "false")
        ),
        format!(
            "LastContactThreshold = {}",
            or(text("LastContactThreshold"), "0s")
        ),
        format!("MaxTrailingLogs = {}", or(text("MaxTrailingLogs"), "0")),
        format!("MinQuorum = {}", or(text("MinQuorum"), "0")),
        format!(
            "ServerStabilizationTime = {}",
            or(text("ServerStabilizationTime"), "0s")
        ),
        format!("RedundancyZoneTag = {}", quoted("RedundancyZoneTag")),
        format!(
            "DisableUpgradeMigration = {}",
            or(text("DisableUpgradeMigration"), "false")
        ),
        format!("UpgradeVersionTag = {}", quoted("UpgradeVersionTag")),
    ]
    .join("\n")
}

async fn fetch_config(client: &Client) -> Result<Value, String> {
    let r = client
        .get_ok("/v1/operator/autopilot/configuration", &[])
        .await?;
    r.json()
}

async fn get_config(args: GetConfigArgs, ui: &mut Ui<'_>) -> i32 {
    let client = match client(&args.http, &args.server, ui) {
        Ok(c) => c,
        Err(code) => return code,
    };
    match fetch_config(&client).await {
        Ok(cfg) => {
            ui.output(&render_config(&cfg));
            0
        }
        Err(e) => ui.fail(&format!("Error querying Autopilot configuration: {e}")),
    }
}

/// Lays the given flags over a configuration fetched from the server.
pub fn apply_flags(cfg: &mut Value, args: &SetConfigArgs) {
    let Some(map) = cfg.as_object_mut() else {
        return;
    };
    let mut set = |key: &str, value: Option<Value>| {
        if let Some(v) = value {
            map.insert(key.to_string(), v);
        }
    };
    set(
        "CleanupDeadServers",
        args.cleanup_dead_servers.map(Value::from),
    );
    set("MaxTrailingLogs", args.max_trailing_logs.map(Value::from));
    set("MinQuorum", args.min_quorum.map(Value::from));
    set(
        "LastContactThreshold",
        args.last_contact_threshold
            .map(|d| Value::from(format_go_duration(d))),
    );
    set(
        "ServerStabilizationTime",
        args.server_stabilization_time
            .map(|d| Value::from(format_go_duration(d))),
    );
    set(
        "RedundancyZoneTag",
        args.redundancy_zone_tag.clone().map(Value::from),
    );
    set(
        "DisableUpgradeMigration",
        args.disable_upgrade_migration.map(Value::from),
    );
    set(
        "UpgradeVersionTag",
        args.upgrade_version_tag.clone().map(Value::from),
    );
}

async fn set_config(args: SetConfigArgs, ui: &mut Ui<'_>) -> i32 {
    let client = match client(&args.http, &args.server, ui) {
        Ok(c) => c,
        Err(code) => return code,
    };
    let mut cfg = match fetch_config(&client).await {
        Ok(cfg) => cfg,
        Err(e) => return ui.fail(&format!("Error querying Autopilot configuration: {e}")),
    };
    let modify_index = cfg.get("ModifyIndex").and_then(Value::as_u64).unwrap_or(0);
    apply_flags(&mut cfg, &args);
    let body = match serde_json::to_vec(&cfg) {
        Ok(b) => b,
        Err(e) => return ui.fail(&format!("Error setting Autopilot configuration: {e}")),
    };
    let res = client
        .send(
            Method::PUT,
            "/v1/operator/autopilot/configuration",
            &[("cas", modify_index.to_string())],
            Some(body),
        )
        .await;
    match res {
        Ok(r) if r.status == 200 => {
            if r.text().contains("true") {
                ui.output("Configuration updated!");
                0
            } else {
                ui.output("Configuration could not be atomically updated, please try again");
                1
            }
        }
        Ok(r) => ui.fail(&format!(
            "Error setting Autopilot configuration: {}",
            r.status_error()
        )),
        Err(e) => ui.fail(&format!("Error setting Autopilot configuration: {e}")),
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn peers_table_like_consul() {
        let servers: Vec<RaftServer> = serde_json::from_value(json!([
            {"ID": "11", "Node": "s1", "Address": "10.0.0.1:8300", "Leader": true,
             "ProtocolVersion": "3", "Voter": true},
            {"ID": "22", "Node": "s2", "Address": "10.0.0.2:8300", "Leader": false,
             "ProtocolVersion": "3", "Voter": true},
            {"ID": "33", "Node": "s3", "Address": "10.0.0.3:8300", "Leader": false,
             "ProtocolVersion": "3", "Voter": false},
            {"ID": "44", "Node": "s4", "Address": "10.0.0.4:8300", "Leader": false,
             "ProtocolVersion": "", "Voter": false}
        ]))
        .unwrap();
        let health: Vec<ServerHealth> = serde_json::from_value(json!([
            {"ID": "11", "LastIndex": 120},
            {"ID": "22", "LastIndex": 119},
            {"ID": "33", "LastIndex": 100}
        ]))
        .unwrap();
        let expected = "\
Node  ID  Address        State     Voter  RaftProtocol  Commit Index  Trails Leader By
s1    11  10.0.0.1:8300  leader    true   3             120           _
s2    22  10.0.0.2:8300  follower  true   3             119           1 Commit
s3    33  10.0.0.3:8300  follower  false  3             100           20 Commits
s4    44  10.0.0.4:8300  follower  false  <=1           _";
        assert_eq!(render_peers(&servers, &health), expected);
    }

    #[test]
    fn config_lines_like_consul() {
        let cfg = json!({
            "CleanupDeadServers": true, "LastContactThreshold": "200ms",
            "MaxTrailingLogs": 250, "MinQuorum": 0, "ServerStabilizationTime": "10s",
            "RedundancyZoneTag": "", "DisableUpgradeMigration": false,
            "UpgradeVersionTag": "", "CreateIndex": 5, "ModifyIndex": 5
        });
        assert_eq!(
            render_config(&cfg),
            "CleanupDeadServers = true\nLastContactThreshold = 200ms\nMaxTrailingLogs = 250\n\
             MinQuorum = 0\nServerStabilizationTime = 10s\nRedundancyZoneTag = \"\"\n\
             DisableUpgradeMigration = false\nUpgradeVersionTag = \"\""
        );
    }

    #[test]
    fn set_config_changes_only_the_given_flags() {
        let mut cfg = json!({
            "CleanupDeadServers": true, "LastContactThreshold": "200ms",
            "MaxTrailingLogs": 250, "MinQuorum": 0, "ServerStabilizationTime": "10s",
            "ModifyIndex": 5
        });
        let args = SetConfigArgs {
            cleanup_dead_servers: Some(false),
            server_stabilization_time: Some(Duration::from_millis(1500)),
            min_quorum: Some(3),
            ..SetConfigArgs::default()
        };
        apply_flags(&mut cfg, &args);
        assert_eq!(cfg["CleanupDeadServers"], json!(false));
        assert_eq!(cfg["ServerStabilizationTime"], json!("1.5s"));
        assert_eq!(cfg["MinQuorum"], json!(3));
        assert_eq!(cfg["LastContactThreshold"], json!("200ms"));
        assert_eq!(cfg["MaxTrailingLogs"], json!(250));
    }
}
