//! `GET /v1/operator/autopilot/state`: Consul's `api.AutopilotState` shape, shared by the
//! server that builds it and the CLI that prints it.
//!
//! Enterprise fields (read replicas, redundancy zones, upgrades, a server's zone and upgrade
//! version) are left out of the JSON when empty, as Consul CE leaves them out; they are read
//! when a Consul Enterprise server sends them.

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// One server of the state (Consul's `api.AutopilotServer`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, rename_all = "PascalCase")]
pub struct AutopilotServer {
    /// Raft ID.
    #[serde(rename = "ID")]
    pub id: String,
    /// Node name.
    pub name: String,
    /// Raft address.
    pub address: String,
    /// `alive`, `failed`, `left`...
    pub node_status: String,
    /// Server version.
    pub version: String,
    /// Time since its last contact with the leader (Go duration text).
    pub last_contact: Option<String>,
    /// Its current term.
    pub last_term: u64,
    /// Its last log index.
    pub last_index: u64,
    /// Whether it is healthy.
    pub healthy: bool,
    /// When its health last changed.
    pub stable_since: String,
    /// Its redundancy zone (Enterprise).
    #[serde(skip_serializing_if = "String::is_empty")]
    pub redundancy_zone: String,
    /// Its upgrade version (Enterprise).
    #[serde(skip_serializing_if = "String::is_empty")]
    pub upgrade_version: String,
    /// Whether it is a read replica (Enterprise).
    pub read_replica: bool,
    /// `leader`, `voter`, `non-voter`, `staging` or `none`.
    pub status: String,
    /// Node metadata.
    pub meta: Option<BTreeMap<String, String>>,
    /// How autopilot classes it (`voter`, `read-replica`, `zone-voter`...).
    pub node_type: String,
}

/// A redundancy zone (Consul's `api.AutopilotZone`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, rename_all = "PascalCase")]
pub struct AutopilotZone {
    /// Its servers.
    pub servers: Vec<String>,
    /// Its voters.
    pub voters: Vec<String>,
    /// Healthy voters of the zone that can fail.
    pub failure_tolerance: i64,
}

/// Upgrade versions of one zone (Consul's `api.AutopilotZoneUpgradeVersions`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, rename_all = "PascalCase")]
pub struct AutopilotZoneUpgradeVersions {
    /// Voters on the target version.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub target_version_voters: Vec<String>,
    /// Non-voters on the target version.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub target_version_non_voters: Vec<String>,
    /// Voters on another version.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub other_version_voters: Vec<String>,
    /// Non-voters on another version.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub other_version_non_voters: Vec<String>,
}

/// An upgrade in progress (Consul's `api.AutopilotUpgrade`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, rename_all = "PascalCase")]
pub struct AutopilotUpgrade {
    /// `idle`, `promoting`, `demoting`...
    pub status: String,
    /// The version being upgraded to.
    #[serde(skip_serializing_if = "String::is_empty")]
    pub target_version: String,
    /// Voters on the target version.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub target_version_voters: Vec<String>,
    /// Non-voters on the target version.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub target_version_non_voters: Vec<String>,
    /// Read replicas on the target version.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub target_version_read_replicas: Vec<String>,
    /// Voters on another version.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub other_version_voters: Vec<String>,
    /// Non-voters on another version.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub other_version_non_voters: Vec<String>,
    /// Read replicas on another version.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub other_version_read_replicas: Vec<String>,
    /// The same by redundancy zone.
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub redundancy_zones: BTreeMap<String, AutopilotZoneUpgradeVersions>,
}

/// Consul's `api.AutopilotState`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, rename_all = "PascalCase")]
pub struct AutopilotState {
    /// Whether every server is healthy.
    pub healthy: bool,
    /// Healthy voters beyond the quorum.
    pub failure_tolerance: i64,
    /// The failure tolerance counting redundancy zones (Enterprise; else the same).
    pub optimistic_failure_tolerance: i64,
    /// Servers by Raft ID.
    pub servers: BTreeMap<String, AutopilotServer>,
    /// The leader's Raft ID.
    pub leader: String,
    /// The voters' Raft IDs.
    pub voters: Vec<String>,
    /// Read replicas (Enterprise).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub read_replicas: Vec<String>,
    /// Redundancy zones (Enterprise).
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub redundancy_zones: BTreeMap<String, AutopilotZone>,
    /// An upgrade in progress (Enterprise).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub upgrade: Option<AutopilotUpgrade>,
}
