//! The agent's LAN network coordinate (and a server's WAN one, [`spawn_wan`]): fed by the round trips of its gossip rounds
//! (`gossip::rtt`), computed with the Vivaldi model (`registry_proto::coordinate`),
//! published in its gossip state (key `coord`, so that peers can use it in their own
//! updates) and sent to the servers with `PUT /v1/coordinate/update` through its own HTTP
//! API, which forwards it as any request (the servers write updates in batches).
//!
//! Consul sends an agent's coordinate every `sync_coordinate_interval_min` (15 s) or less
//! often in large clusters (a cluster-wide rate of 64 updates per second); this agent sends
//! every [`SEND_INTERVAL`], slowed down the same way as the member count grows.

use crate::gossip::Gossip;
use registry_proto::coordinate::{Client, Coordinate, NodeCoordinate};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Gossip key carrying a member's coordinate (JSON).
pub const COORD_KEY: &str = "coord";
/// Interval between two updates sent to the servers, at small cluster sizes.
pub const SEND_INTERVAL: Duration = Duration::from_secs(5);
/// Cluster-wide update rate the interval is scaled to (Consul's `sync_coordinate_rate_target`).
const RATE_TARGET: f64 = 64.0;
/// Interval between two publications in gossip.
const PUBLISH_INTERVAL: Duration = Duration::from_secs(2);

/// Where a loop's coordinate goes besides its own gossip state.
enum Sink {
    /// The LAN: `PUT /v1/coordinate/update` on the HTTP API at this address, with a token.
    Http(String, String),
    /// The WAN pool: the server's in-memory WAN coordinates, with every member's.
    Wan(Arc<registry_server::rpc::wan::Datacenters>),
}

/// Runs the coordinate loop of `gossip`'s node until gossip stops; updates go to the HTTP
/// API at `http` (`http://host:port`) with `token` (may be empty).
pub fn spawn(gossip: Arc<Gossip>, http: String, token: String) {
    spawn_loop(gossip, Sink::Http(http, token));
}

/// Runs the WAN coordinate loop of a server's WAN pool: the same Vivaldi computation over
/// WAN gossip round trips, published in the WAN pool and, with the coordinates every other
/// server publishes there, given to `dcs` (`/v1/coordinate/datacenters`, datacenter
/// distances). Kept in memory, as Consul keeps WAN coordinates in Serf.
pub fn spawn_wan(gossip: Arc<Gossip>, dcs: Arc<registry_server::rpc::wan::Datacenters>) {
    spawn_loop(gossip, Sink::Wan(dcs));
}

fn spawn_loop(gossip: Arc<Gossip>, sink: Sink) {
    let Some(mut samples) = gossip.take_rtt_samples() else {
        return;
    };
    let (http, token, wan) = match sink {
        Sink::Http(h, t) => (h, t, None),
        Sink::Wan(d) => (String::new(), String::new(), Some(d)),
    };
    let node = gossip.node_name().to_string();
    tokio::spawn(async move {
        let seed = node.bytes().fold(0xcbf2_9ce4_8422_2325u64, |h, b| {
            (h ^ u64::from(b)).wrapping_mul(0x100_0000_01b3)
        });
        let mut vivaldi = Client::new(seed);
        let client = reqwest::Client::new();
        let mut last_publish: Option<Instant> = None;
        let mut last_send: Option<Instant> = None;
        let mut updated = false;
        while let Some(s) = samples.recv().await {
            if let Some((peer, coord)) = peer_coordinate(&gossip, s.peer).await {
                if peer != node && vivaldi.update(&peer, &coord, s.rtt.as_secs_f64()).is_ok() {
                    updated = true;
                }
            }
            let now = Instant::now();
            if !updated {
                continue;
            }
            if last_publish.is_none_or(|t| now.duration_since(t) >= PUBLISH_INTERVAL) {
                last_publish = Some(now);
                if let Ok(v) = serde_json::to_string(vivaldi.coordinate()) {
                    gossip.set_key(COORD_KEY, v).await;
                }
                if let Some(dcs) = &wan {
                    let members = wan_members(&gossip, &node, vivaldi.coordinate()).await;
                    dcs.coordinates.set(vivaldi.coordinate().clone(), members);
                }
            }
            if wan.is_some() {
                continue;
            }
            let interval = send_interval(gossip.members().len());
            if last_send.is_none_or(|t| now.duration_since(t) >= interval) {
                last_send = Some(now);
                let body = NodeCoordinate {
                    node: node.clone(),
                    segment: String::new(),
                    coord: vivaldi.coordinate().clone(),
                };
                let mut req = client
                    .put(format!("{http}/v1/coordinate/update"))
                    .json(&body)
                    .timeout(Duration::from_secs(10));
                if !token.is_empty() {
                    req = req.header("X-Consul-Token", &token);
                }
                match req.send().await {
                    Ok(r) if r.status().is_success() => {}
                    Ok(r) => tracing::debug!(status = %r.status(), "coordinate update refused"),
                    Err(e) => tracing::debug!(error = %e, "coordinate update not sent"),
                }
            }
        }
    });
}

/// The alive WAN members with a published coordinate (this server with `own`).
async fn wan_members(
    gossip: &Gossip,
    me: &str,
    own: &Coordinate,
) -> Vec<registry_server::rpc::wan_coord::WanNodeCoordinate> {
    let coords: std::collections::HashMap<String, String> =
        gossip.member_keys(COORD_KEY).await.into_iter().collect();
    gossip
        .members()
        .into_iter()
        .filter(|m| m.status == registry_server::leader::members::MemberStatus::Alive)
        .filter_map(|m| {
            let datacenter = m.tags.get("dc")?.clone();
            let coord = if m.name == me {
                own.clone()
            } else {
                serde_json::from_str::<Coordinate>(coords.get(&m.name)?)
                    .ok()
                    .filter(Coordinate::is_valid)?
            };
            Some(registry_server::rpc::wan_coord::WanNodeCoordinate {
                node: m.name,
                datacenter,
                coord,
            })
        })
        .collect()
}

/// How often to send with `members` agents sending: the base interval, or longer so that
/// the cluster stays under the target rate.
pub fn send_interval(members: usize) -> Duration {
    let scaled = Duration::from_secs_f64(members as f64 / RATE_TARGET);
    SEND_INTERVAL.max(scaled)
}

/// The member at gossip address `addr` and its published coordinate. A member that has
/// published none yet counts as at the origin with the largest error, as a new node is.
async fn peer_coordinate(gossip: &Gossip, addr: SocketAddr) -> Option<(String, Coordinate)> {
    let (name, value) = gossip.peer_key(addr, COORD_KEY).await?;
    let coord = value
        .and_then(|v| serde_json::from_str::<Coordinate>(&v).ok())
        .filter(Coordinate::is_valid)
        .unwrap_or_default();
    Some((name, coord))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn interval_scales_with_cluster_size() {
        assert_eq!(send_interval(3), SEND_INTERVAL);
        assert_eq!(send_interval(6400), Duration::from_secs(100));
    }
}
