//! `registry operator autopilot state [-format=pretty|json]`: reads
//! `GET /v1/operator/autopilot/state` and prints it as Consul does, as text or as indented
//! JSON.
//!
//! The state is [`registry_proto::api::autopilot::AutopilotState`], Enterprise fields
//! included (read replicas, redundancy zones, upgrades), so that the command also prints what
//! a Consul Enterprise server answers.

use super::http::{Client, HttpFlags, ServerFlags};
use super::ui::Ui;
use clap::Args;
use registry_proto::api::autopilot::{AutopilotServer, AutopilotState, AutopilotUpgrade};
use serde::Serialize;
use std::fmt::Write as _;

/// `operator autopilot state`.
#[derive(Args, Debug)]
pub struct StateArgs {
    #[command(flatten)]
    http: HttpFlags,
    #[command(flatten)]
    server: ServerFlags,
    /// Output format {pretty|json}.
    #[arg(long, default_value = "pretty", value_name = "FORMAT")]
    format: String,
}

/// Writes `title` and then each of `values` on a line of its own, indented by `indent`;
/// nothing when `values` is empty and `always` is false.
fn list(out: &mut String, title: &str, indent: &str, values: &[String], always: bool) {
    if values.is_empty() && !always {
        return;
    }
    out.push_str(title);
    out.push('\n');
    for v in values {
        let _ = writeln!(out, "{indent}{v}");
    }
}

fn render_server(out: &mut String, s: &AutopilotServer) {
    let last_contact = s.last_contact.as_deref().unwrap_or("0s");
    let _ = writeln!(out, "   {}", s.id);
    for (label, value) in [
        ("Name", s.name.as_str()),
        ("Address", &s.address),
        ("Version", &s.version),
        ("Status", &s.status),
        ("Node Type", &s.node_type),
        ("Node Status", &s.node_status),
        ("Healthy", if s.healthy { "true" } else { "false" }),
        ("Last Contact", last_contact),
        ("Last Term", &s.last_term.to_string()),
        ("Last Index", &s.last_index.to_string()),
        ("Redundancy Zone", &s.redundancy_zone),
        ("Upgrade Version", &s.upgrade_version),
        ("Read Replica", if s.read_replica { "true" } else { "" }),
    ] {
        let optional = matches!(
            label,
            "Redundancy Zone" | "Upgrade Version" | "Read Replica"
        );
        if optional && value.is_empty() {
            continue;
        }
        let _ = writeln!(out, "      {:<17}{value}", format!("{label}:"));
    }
    if let Some(meta) = s.meta.as_ref().filter(|m| !m.is_empty()) {
        out.push_str("      Meta\n");
        for (k, v) in meta {
            let _ = writeln!(out, "         {k:?}: {v:?}");
        }
    }
}

fn render_upgrade(out: &mut String, u: &AutopilotUpgrade) {
    out.push_str("Upgrade:\n");
    let _ = writeln!(out, "   Status:         {}", u.status);
    let _ = writeln!(out, "   Target Version: {}", u.target_version);
    let indent = "      ";
    list(
        out,
        "   Target Version Voters:",
        indent,
        &u.target_version_voters,
        false,
    );
    list(
        out,
        "   Target Version Non-Voters:",
        indent,
        &u.target_version_non_voters,
        false,
    );
    list(
        out,
        "   Target Version ReadReplicas:",
        indent,
        &u.target_version_read_replicas,
        false,
    );
    list(
        out,
        "   Other Version Voters:",
        indent,
        &u.other_version_voters,
        false,
    );
    list(
        out,
        "   Other Version Non-Voters:",
        indent,
        &u.other_version_non_voters,
        false,
    );
    list(
        out,
        "   Other Version ReadReplicas:",
        indent,
        &u.other_version_read_replicas,
        false,
    );
}

/// The state as Consul's `pretty` format prints it (without the final newline).
pub fn render_pretty(state: &AutopilotState) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "Healthy:                      {}", state.healthy);
    let _ = writeln!(
        out,
        "Failure Tolerance:            {}",
        state.failure_tolerance
    );
    let _ = writeln!(
        out,
        "Optimistic Failure Tolerance: {}",
        state.optimistic_failure_tolerance
    );
    let _ = writeln!(out, "Leader:                       {}", state.leader);
    list(&mut out, "Voters:", "   ", &state.voters, true);
    list(
        &mut out,
        "Read Replicas:",
        "   ",
        &state.read_replicas,
        false,
    );
    if !state.redundancy_zones.is_empty() {
        out.push_str("Redundancy Zones:\n");
        for (name, zone) in &state.redundancy_zones {
            let _ = writeln!(out, "   {name}:");
            let _ = writeln!(out, "      Failure Tolerance: {}", zone.failure_tolerance);
            list(&mut out, "      Voters:", "         ", &zone.voters, true);
            list(&mut out, "      Servers:", "         ", &zone.servers, true);
        }
    }
    if let Some(u) = &state.upgrade {
        render_upgrade(&mut out, u);
    }
    out.push_str("Servers:\n");
    for server in state.servers.values() {
        render_server(&mut out, server);
    }
    out.truncate(out.trim_end_matches('\n').len());
    out
}

/// The state as Consul's `json` format prints it: indented by four spaces.
pub fn render_json(state: &AutopilotState) -> Result<String, String> {
    let mut buf = Vec::new();
    let formatter = serde_json::ser::PrettyFormatter::with_indent(b"    ");
    let mut ser = serde_json::Serializer::with_formatter(&mut buf, formatter);
    state
        .serialize(&mut ser)
        .map_err(|e| format!("Failed to marshal token: {e}"))?;
    String::from_utf8(buf).map_err(|e| format!("Failed to marshal token: {e}"))
}

/// Runs `operator autopilot state`.
pub async fn run(args: StateArgs, ui: &mut Ui<'_>) -> i32 {
    if args.format != "pretty" && args.format != "json" {
        return ui.fail(&format!("Unknown format: {}", args.format));
    }
    let client = match Client::new(&args.http, Some(&args.server)) {
        Ok(c) => c,
        Err(e) => return ui.fail(&format!("Error initializing client: {e}")),
    };
    let state: Result<AutopilotState, String> =
        match client.get_ok("/v1/operator/autopilot/state", &[]).await {
            Ok(r) => r.json(),
            Err(e) => Err(e),
        };
    let state = match state {
        Ok(s) => s,
        Err(e) => return ui.fail(&format!("Error querying Autopilot state: {e}")),
    };
    if args.format == "json" {
        match render_json(&state) {
            Ok(text) => ui.output(&text),
            Err(e) => return ui.fail(&e),
        }
    } else {
        ui.output(&render_pretty(&state));
    }
    0
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;
    use serde_json::json;

    fn sample() -> serde_json::Value {
        json!({
            "Healthy": false,
            "FailureTolerance": 0,
            "OptimisticFailureTolerance": 0,
            "Servers": {
                "7": {
                    "ID": "7", "Name": "b", "Address": "10.1.0.7:8300", "NodeStatus": "failed",
                    "Version": "0.1.0", "LastContact": "12.5s", "LastTerm": 4, "LastIndex": 90,
                    "Healthy": false, "StableSince": "2024-05-01T10:00:03.25Z",
                    "ReadReplica": false, "Status": "voter", "Meta": {}, "NodeType": "voter"
                },
                "12": {
                    "ID": "12", "Name": "a", "Address": "10.1.0.12:8300", "NodeStatus": "alive",
                    "Version": "0.1.0", "LastContact": "0s", "LastTerm": 5, "LastIndex": 101,
                    "Healthy": true, "StableSince": "2024-05-01T09:00:00Z",
                    "ReadReplica": false, "Status": "leader",
                    "Meta": {"zone": "x", "consul-network-segment": ""}, "NodeType": "voter"
                },
                "30": {
                    "ID": "30", "Name": "c", "Address": "10.1.0.30:8300", "NodeStatus": "alive",
                    "Version": "0.1.0", "LastContact": "4ms", "LastTerm": 5, "LastIndex": 101,
                    "Healthy": true, "StableSince": "2024-05-01T09:30:00Z",
                    "ReadReplica": false, "Status": "non-voter", "Meta": {"k": "v"},
                    "NodeType": "voter"
                }
            },
            "Leader": "12",
            "Voters": ["12", "7"]
        })
    }

    #[test]
    fn pretty_like_consul() {
        let state: AutopilotState = serde_json::from_value(sample()).unwrap();
        let expected = r#"Healthy:                      false
Failure Tolerance:            0
Optimistic Failure Tolerance: 0
Leader:                       12
Voters:
   12
   7
Servers:
   12
      Name:            a
      Address:         10.1.0.12:8300
      Version:         0.1.0
      Status:          leader
      Node Type:       voter
      Node Status:     alive
      Healthy:         true
      Last Contact:    0s
      Last Term:       5
      Last Index:      101
      Meta
         "consul-network-segment": ""
         "zone": "x"
   30
      Name:            c
      Address:         10.1.0.30:8300
      Version:         0.1.0
      Status:          non-voter
      Node Type:       voter
      Node Status:     alive
      Healthy:         true
      Last Contact:    4ms
      Last Term:       5
      Last Index:      101
      Meta
         "k": "v"
   7
      Name:            b
      Address:         10.1.0.7:8300
      Version:         0.1.0
      Status:          voter
      Node Type:       voter
      Node Status:     failed
      Healthy:         false
      Last Contact:    12.5s
      Last Term:       4
      Last Index:      90"#;
        assert_eq!(render_pretty(&state), expected);
    }

    #[test]
    fn pretty_enterprise_sections() {
        let mut v = sample();
        v["ReadReplicas"] = json!(["30"]);
        v["RedundancyZones"] = json!({
            "z1": {"Servers": ["12", "30"], "Voters": ["12"], "FailureTolerance": 1}
        });
        v["Upgrade"] = json!({
            "Status": "idle", "TargetVersion": "1.2.0", "OtherVersionVoters": ["7"]
        });
        v["Servers"]["30"]["ReadReplica"] = json!(true);
        v["Servers"]["30"]["RedundancyZone"] = json!("z1");
        let state: AutopilotState = serde_json::from_value(v).unwrap();
        let text = render_pretty(&state);
        assert!(
            text.contains(
                "Voters:\n   12\n   7\nRead Replicas:\n   30\nRedundancy Zones:\n   z1:\n      \
                 Failure Tolerance: 1\n      Voters:\n         12\n      Servers:\n         \
                 12\n         30\nUpgrade:\n   Status:         idle\n   Target Version: \
                 1.2.0\n   Other Version Voters:\n      7\nServers:\n"
            ),
            "{text}"
        );
        assert!(
            text.contains(
                "      Last Index:      101\n      Redundancy Zone: z1\n      \
                 Read Replica:    true\n      Meta\n"
            ),
            "{text}"
        );
    }

    #[test]
    fn json_keeps_consuls_shape() {
        let state: AutopilotState = serde_json::from_value(sample()).unwrap();
        let text = render_json(&state).unwrap();
        assert!(text.starts_with("{\n    \"Healthy\": false,\n    \"FailureTolerance\": 0,\n"));
        let back: serde_json::Value = serde_json::from_str(&text).unwrap();
        assert_eq!(back, sample());
        // Enterprise-only fields stay out when empty, as Go's omitempty leaves them.
        assert!(!text.contains("ReadReplicas") && !text.contains("RedundancyZone"));
        assert!(!text.contains("Upgrade"));
    }
}
