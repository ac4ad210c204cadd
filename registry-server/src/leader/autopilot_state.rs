//! The autopilot state report (`GET /v1/operator/autopilot/state`): Consul's
//! `api.AutopilotState` shape, built from the leader's [`ServerReport`]s.
//!
//! Consul fills it with its autopilot library's view; here the same facts come from the
//! leader's autopilot round (see `autopilot`):
//!
//! - `Status` is the server's Raft role: `leader`, `voter`, or `non-voter` for a learner;
//!   `NodeType` is `voter` for every server (Consul CE's promoter classes all servers so);
//! - `Voters` lists the leader first, then the other voters, healthy before unhealthy, the
//!   longest-stable healthy (and most recently changed unhealthy) first, then by ID;
//! - `FailureTolerance` is healthy voters minus the quorum; `OptimisticFailureTolerance`
//!   equals it (as in Consul CE, which has no redundancy zones);
//! - `Meta` is the server's catalog node metadata (`{}` before it registered itself);
//! - `StableSince` keeps its fraction of a second (Consul does not round it here, unlike in
//!   the health report).
//!
//! Consul CE leaves out `ReadReplicas`, `RedundancyZones` and `Upgrade` (empty, `omitempty`
//! Enterprise features) and each server's `RedundancyZone` and `UpgradeVersion`; so does
//! this report.

use super::autopilot::{failure_tolerance, rfc3339_utc_nanos, ServerReport, VERSION};
use registry_proto::api::autopilot::{AutopilotServer, AutopilotState};
use registry_proto::duration::format_go_duration;
use std::collections::BTreeMap;
use std::time::SystemTime;

/// Consul's `Status` of a server.
fn status(r: &ServerReport) -> &'static str {
    if r.leader {
        "leader"
    } else if r.voter {
        "voter"
    } else {
        "non-voter"
    }
}

/// The order of `Voters`: leader, voters, healthy, stable longest (a healthy server) or
/// changed last (an unhealthy one), then Raft ID as text.
fn voter_order(r: &ServerReport) -> (bool, bool, bool, i128, String) {
    let since = match r.stable_since.duration_since(SystemTime::UNIX_EPOCH) {
        Ok(d) => i128::try_from(d.as_nanos()).unwrap_or(i128::MAX),
        Err(e) => -i128::try_from(e.duration().as_nanos()).unwrap_or(i128::MAX),
    };
    (
        !r.leader,
        !r.voter,
        !r.healthy,
        if r.healthy { since } else { -since },
        r.id.to_string(),
    )
}

/// The state report of `reports` (every server of the Raft configuration); `meta` gives a
/// node's catalog metadata by node name.
pub fn build(
    reports: &[ServerReport],
    meta: impl Fn(&str) -> Option<BTreeMap<String, String>>,
) -> AutopilotState {
    let servers: BTreeMap<String, AutopilotServer> = reports
        .iter()
        .map(|r| {
            let id = r.id.to_string();
            let server = AutopilotServer {
                id: id.clone(),
                name: r.name.clone(),
                address: r.address.clone(),
                node_status: r.node_status().to_string(),
                version: VERSION.to_string(),
                last_contact: Some(format_go_duration(r.last_contact)),
                last_term: r.last_term,
                last_index: r.last_index,
                healthy: r.healthy,
                stable_since: rfc3339_utc_nanos(r.stable_since),
                read_replica: false,
                status: status(r).to_string(),
                meta: Some(meta(&r.name).unwrap_or_default()),
                node_type: "voter".to_string(),
                ..AutopilotServer::default()
            };
            (id, server)
        })
        .collect();
    let mut voters: Vec<&ServerReport> = reports.iter().filter(|r| r.voter).collect();
    voters.sort_by_cached_key(|r| voter_order(r));
    let healthy_voters = voters.iter().filter(|r| r.healthy).count();
    let tolerance =
        i64::try_from(failure_tolerance(healthy_voters, voters.len())).unwrap_or(i64::MAX);
    AutopilotState {
        healthy: reports.iter().all(|r| r.healthy),
        failure_tolerance: tolerance,
        optimistic_failure_tolerance: tolerance,
        servers,
        leader: reports
            .iter()
            .find(|r| r.leader)
            .map(|r| r.id.to_string())
            .unwrap_or_default(),
        voters: voters.iter().map(|r| r.id.to_string()).collect(),
        ..AutopilotState::default()
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;
    use serde_json::json;
    use std::time::{Duration, UNIX_EPOCH};

    fn report(id: u64, leader: bool, voter: bool, healthy: bool, since: u64) -> ServerReport {
        ServerReport {
            id,
            name: format!("s{id}"),
            address: format!("10.0.0.{id}:8300"),
            alive: healthy,
            leader,
            voter,
            last_contact: Duration::from_millis(if leader { 0 } else { 3 }),
            last_term: 2,
            last_index: 40 + id,
            healthy,
            stable_since: UNIX_EPOCH + Duration::from_secs(since),
        }
    }

    #[test]
    fn three_healthy_voters() {
        let reports = [
            report(30, false, true, true, 1_000),
            report(20, true, true, true, 1_200),
            report(10, false, true, true, 1_100),
        ];
        let meta = |name: &str| {
            (name == "s20").then(|| BTreeMap::from([("k".to_string(), "v".to_string())]))
        };
        let state = build(&reports, meta);
        assert!(state.healthy);
        assert_eq!(state.failure_tolerance, 1);
        assert_eq!(state.optimistic_failure_tolerance, 1);
        assert_eq!(state.leader, "20");
        // Leader first, then the longest stable.
        assert_eq!(state.voters, ["20", "30", "10"]);
        let v = serde_json::to_value(&state).unwrap();
        assert_eq!(
            v["Servers"]["20"],
            json!({
                "ID": "20", "Name": "s20", "Address": "10.0.0.20:8300", "NodeStatus": "alive",
                "Version": VERSION, "LastContact": "0s", "LastTerm": 2, "LastIndex": 60,
                "Healthy": true, "StableSince": "1970-01-01T00:20:00Z", "ReadReplica": false,
                "Status": "leader", "Meta": {"k": "v"}, "NodeType": "voter"
            })
        );
        assert_eq!(v["Servers"]["30"]["Status"], json!("voter"));
        assert_eq!(v["Servers"]["30"]["Meta"], json!({}));
        assert_eq!(v["Servers"]["30"]["LastContact"], json!("3ms"));
        let keys: Vec<&str> = v.as_object().unwrap().keys().map(String::as_str).collect();
        assert_eq!(
            keys,
            [
                "Healthy",
                "FailureTolerance",
                "OptimisticFailureTolerance",
                "Servers",
                "Leader",
                "Voters"
            ]
        );
        let back: AutopilotState = serde_json::from_value(v).unwrap();
        assert_eq!(back, state);
    }

    #[test]
    fn unhealthy_voters_and_learners() {
        let reports = [
            report(1, true, true, true, 500),
            report(2, false, true, false, 900),
            report(3, false, true, false, 950),
            report(4, false, true, true, 990),
            report(5, false, false, true, 100),
        ];
        let state = build(&reports, |_| None);
        assert!(!state.healthy);
        // 4 voters, quorum 3, 2 healthy voters.
        assert_eq!(state.failure_tolerance, 0);
        // Healthy before unhealthy; the unhealthy one that changed last first; no learner.
        assert_eq!(state.voters, ["1", "4", "3", "2"]);
        assert_eq!(state.servers.len(), 5);
        assert_eq!(state.servers["5"].status, "non-voter");
        assert_eq!(state.servers["5"].node_type, "voter");
        assert_eq!(state.servers["2"].node_status, "failed");
        assert!(!state.servers["2"].healthy);
    }

    #[test]
    fn equal_servers_sort_by_id_text() {
        let reports = [
            report(9, false, true, true, 100),
            report(10, false, true, true, 100),
            report(1, true, true, true, 100),
        ];
        let state = build(&reports, |_| None);
        assert_eq!(state.voters, ["1", "10", "9"]);
        assert_eq!(state.failure_tolerance, 1);
    }
}
