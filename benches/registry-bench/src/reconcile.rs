//! `reconcile-walk`: the leader's reconciliation of gossip members into the catalog, in
//! process, at a given number of members: the cost of one full walk (every member and every
//! catalog node with `serfHealth`, what the leader did every 5 s before and does every 60 s
//! now) next to one change-driven pass (the member list compared with the last one, the
//! catalog read for the changed members only), with nothing changed and with one member
//! changed. No server, no network: a state store filled through the state machine and a
//! member list built in memory, all alive and passing, so no pass writes anything.

use crate::stats::emit;
use anyhow::Result;
use clap::Args;
use registry_proto::command::RegisterRequest;
use registry_proto::model::{HealthCheck, Node};
use registry_proto::Command;
use registry_server::leader::members::{plan, GossipMember, MemberStatus, Reconciler};
use registry_server::state::Store;
use serde_json::{json, Map};
use std::collections::{BTreeMap, HashMap};
use std::time::Instant;

#[derive(Args, Debug)]
pub struct ReconcileArgs {
    /// Gossip members, each a catalog node with a passing `serfHealth`.
    #[arg(long, default_value_t = 10_000)]
    pub nodes: u64,
    /// Passes timed per figure (the median is printed).
    #[arg(long, default_value_t = 21)]
    pub rounds: usize,
    #[arg(long, default_value = "")]
    pub label: String,
}

fn member(i: u64, status: MemberStatus) -> GossipMember {
    let tags = BTreeMap::from([
        ("dc".to_string(), "dc1".to_string()),
        ("role".to_string(), "node".to_string()),
    ]);
    GossipMember {
        name: format!("node-{i}"),
        addr: std::net::IpAddr::from([10, (i >> 16) as u8, (i >> 8) as u8, i as u8]),
        port: 8301,
        status,
        tags,
    }
}

fn median_us(mut f: impl FnMut() -> usize, rounds: usize) -> (f64, usize) {
    let mut times = Vec::with_capacity(rounds);
    let mut cmds = 0;
    for _ in 0..rounds.max(1) {
        let t = Instant::now();
        cmds = f();
        times.push(t.elapsed().as_secs_f64() * 1e6);
    }
    times.sort_by(f64::total_cmp);
    (times[times.len() / 2], cmds)
}

pub fn reconcile(a: ReconcileArgs) -> Result<()> {
    let store = Store::new();
    for i in 0..a.nodes {
        let m = member(i, MemberStatus::Alive);
        let cmd = Command::Register(RegisterRequest {
            node: Node {
                node: m.name.clone(),
                address: m.addr.to_string(),
                ..Default::default()
            },
            skip_node_update: false,
            service: None,
            checks: vec![HealthCheck {
                node: m.name.clone(),
                check_id: "serfHealth".into(),
                name: "Serf Health Status".into(),
                status: "passing".into(),
                output: "Agent alive and reachable".into(),
                ..Default::default()
            }],
        });
        registry_server::fsm::apply(&store, i + 1, &cmd);
    }
    let mut members: Vec<GossipMember> = (0..a.nodes)
        .map(|i| member(i, MemberStatus::Alive))
        .collect();
    let now = tokio::time::Instant::now();
    let (full_us, full_cmds) = median_us(
        || {
            let mut absent = HashMap::new();
            plan(&store, &members, "me", "dc1", true, &mut absent, now).len()
        },
        a.rounds,
    );
    let mut rec = Reconciler::new("me", "dc1");
    rec.full(&store, &members, true, now);
    let (idle_us, idle_cmds) =
        median_us(|| rec.changes(&store, &members, true, now).len(), a.rounds);
    // One member flips between failed and alive on every pass.
    let mut flip = false;
    let (change_us, _) = median_us(
        || {
            flip = !flip;
            members[0].status = if flip {
                MemberStatus::Failed
            } else {
                MemberStatus::Alive
            };
            rec.changes(&store, &members, true, now).len()
        },
        a.rounds,
    );
    let mut v = Map::new();
    v.insert("mode".into(), json!("reconcile-walk"));
    v.insert("label".into(), json!(a.label));
    v.insert("nodes".into(), json!(a.nodes));
    v.insert("full_walk_us".into(), json!(full_us.round()));
    v.insert("full_walk_cmds".into(), json!(full_cmds));
    v.insert("change_pass_none_us".into(), json!(idle_us.round()));
    v.insert("change_pass_none_cmds".into(), json!(idle_cmds));
    v.insert("change_pass_one_us".into(), json!(change_us.round()));
    // Idle cost per minute: a full walk every 5 s before, every 60 s now.
    v.insert(
        "idle_ms_per_min_every_5s".into(),
        json!((full_us * 12.0 / 1e3).round()),
    );
    v.insert(
        "idle_ms_per_min_every_60s".into(),
        json!((full_us / 1e3).round()),
    );
    eprintln!(
        "[reconcile-walk] {} nodes: full walk {:.0} us ({} writes), change pass {:.0} us with no change, {:.0} us with one",
        a.nodes, full_us, full_cmds, idle_us, change_us
    );
    emit(v);
    Ok(())
}
