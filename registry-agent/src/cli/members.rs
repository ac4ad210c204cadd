//! `registry members`: the cluster members as the agent sees them, in Consul's table.

use super::http::{Client, HttpFlags};
use super::table::columnize;
use super::ui::Ui;
use clap::Args;
use serde::Deserialize;
use std::collections::BTreeMap;
use std::net::{IpAddr, SocketAddr};

/// `members` flags.
#[derive(Args, Debug)]
pub struct MembersArgs {
    #[command(flatten)]
    http: HttpFlags,
    /// Show every member tag instead of the summary columns.
    #[arg(long, num_args = 0..=1, require_equals = true, default_missing_value = "true",
          value_parser = super::go_bool, value_name = "BOOL")]
    detailed: Option<bool>,
    /// List the WAN pool (servers of all datacenters) instead of the LAN pool.
    #[arg(long, num_args = 0..=1, require_equals = true, default_missing_value = "true",
          value_parser = super::go_bool, value_name = "BOOL")]
    wan: Option<bool>,
    /// Only members whose status matches this regular expression.
    #[arg(long, default_value = ".*", value_name = "REGEXP")]
    status: String,
    /// Only members of this network segment (Enterprise in Consul).
    #[arg(long, value_name = "NAME")]
    segment: Option<String>,
    /// Filter expression sent to the agent.
    #[arg(long, value_name = "EXPR")]
    filter: Option<String>,
}

/// One entry of `GET /v1/agent/members`.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct Member {
    /// Node name.
    pub name: String,
    /// Gossip address.
    pub addr: String,
    /// Gossip port.
    pub port: u16,
    /// Serf tags (`role`, `dc`, `build`, `vsn`, `segment`, `ap`).
    #[serde(default)]
    pub tags: BTreeMap<String, String>,
    /// Serf status number.
    pub status: i64,
}

/// Serf's `MemberStatus` names.
pub fn status_name(status: i64) -> &'static str {
    match status {
        0 => "none",
        1 => "alive",
        2 => "leaving",
        3 => "left",
        4 => "failed",
        _ => "unknown",
    }
}

fn address(member: &Member) -> String {
    match member.addr.parse::<IpAddr>() {
        Ok(ip) => SocketAddr::new(ip, member.port).to_string(),
        Err(_) => format!("{}:{}", member.addr, member.port),
    }
}

fn tag<'a>(member: &'a Member, key: &str) -> &'a str {
    member.tags.get(key).map(String::as_str).unwrap_or("")
}

/// The `members` table (header first), members sorted as Consul sorts them.
pub fn render(members: &mut [Member], detailed: bool) -> String {
    for member in members.iter_mut() {
        let partition = tag(member, "ap").to_string();
        if partition.is_empty() {
            member.tags.insert("ap".to_string(), "default".to_string());
        }
        if partition.is_empty() || partition == "default" {
            if tag(member, "role") == "consul" {
                member
                    .tags
                    .insert("segment".to_string(), "<all>".to_string());
            } else if tag(member, "segment").is_empty() {
                member
                    .tags
                    .insert("segment".to_string(), "<default>".to_string());
            }
        } else {
            member.tags.insert("segment".to_string(), String::new());
        }
    }
    members.sort_by(|a, b| {
        let server = |m: &Member| tag(m, "role") != "consul";
        let non_default = |m: &Member| !matches!(tag(m, "ap"), "" | "default");
        (
            server(a),
            non_default(a),
            tag(a, "segment"),
            tag(a, "ap"),
            &a.name,
        )
            .cmp(&(
                server(b),
                non_default(b),
                tag(b, "segment"),
                tag(b, "ap"),
                &b.name,
            ))
    });
    let mut rows: Vec<Vec<String>> = Vec::with_capacity(members.len() + 1);
    if detailed {
        rows.push(
            ["Node", "Address", "Status", "Tags"]
                .map(String::from)
                .to_vec(),
        );
        for m in members.iter() {
            let tags = m
                .tags
                .iter()
                .map(|(k, v)| format!("{k}={v}"))
                .collect::<Vec<_>>()
                .join(",");
            rows.push(vec![
                m.name.clone(),
                address(m),
                status_name(m.status).to_string(),
                tags,
            ]);
        }
    } else {
        rows.push(
            [
                "Node",
                "Address",
                "Status",
                "Type",
                "Build",
                "Protocol",
                "DC",
                "Partition",
                "Segment",
            ]
            .map(String::from)
            .to_vec(),
        );
        for m in members.iter() {
            let build = match tag(m, "build") {
                "" => "< 0.3".to_string(),
                b => b.split(':').next().unwrap_or(b).to_string(),
            };
            let kind = match tag(m, "role") {
                "consul" => "server",
                "node" => "client",
                _ => "unknown",
            };
            let mut row = vec![
                m.name.clone(),
                address(m),
                status_name(m.status).to_string(),
                kind.to_string(),
            ];
            if kind == "unknown" {
                row.extend(std::iter::repeat_n(String::new(), 5));
            } else {
                row.extend([
                    build,
                    tag(m, "vsn").to_string(),
                    tag(m, "dc").to_string(),
                    tag(m, "ap").to_string(),
                    tag(m, "segment").to_string(),
                ]);
            }
            rows.push(row);
        }
    }
    columnize(&rows)
}

/// Runs `members`: exit 2 when no member matches.
pub async fn run(args: MembersArgs, ui: &mut Ui<'_>) -> i32 {
    let status = match regex::Regex::new(&args.status) {
        Ok(re) => re,
        Err(e) => return ui.fail(&format!("Failed to compile status regexp: {e}")),
    };
    let client = match Client::new(&args.http, None) {
        Ok(client) => client,
        Err(e) => return ui.fail(&format!("Error connecting to Consul agent: {e}")),
    };
    let mut query: Vec<(&str, String)> = Vec::new();
    if let Some(segment) = &args.segment {
        query.push(("segment", segment.clone()));
    }
    if args.wan.unwrap_or(false) {
        query.push(("wan", "1".to_string()));
    }
    if let Some(filter) = &args.filter {
        query.push(("filter", filter.clone()));
    }
    let members: Result<Vec<Member>, String> =
        match client.get_ok("/v1/agent/members", &query).await {
            Ok(response) => response.json(),
            Err(e) => Err(e),
        };
    let mut members = match members {
        Ok(members) => members,
        Err(e) => return ui.fail(&format!("Error retrieving members: {e}")),
    };
    members.retain(|m| status.is_match(status_name(m.status)));
    if members.is_empty() {
        return 2;
    }
    ui.output(&render(&mut members, args.detailed.unwrap_or(false)));
    0
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn table_like_consul() {
        let mut members: Vec<Member> = serde_json::from_value(json!([
            {"Name": "zeta", "Addr": "10.0.0.2", "Port": 8301, "Status": 1,
             "Tags": {"role": "node", "dc": "dc1", "build": "1.2.3:abc", "vsn": "2"}},
            {"Name": "alpha", "Addr": "10.0.0.1", "Port": 8301, "Status": 4,
             "Tags": {"role": "consul", "dc": "dc1", "build": "0.1.0", "vsn": "2"}}
        ]))
        .expect("members");
        let out = render(&mut members, false);
        let expected = "\
Node   Address        Status  Type    Build  Protocol  DC   Partition  Segment
alpha  10.0.0.1:8301  failed  server  0.1.0  2         dc1  default    <all>
zeta   10.0.0.2:8301  alive   client  1.2.3  2         dc1  default    <default>";
        assert_eq!(out, expected);
    }
}
