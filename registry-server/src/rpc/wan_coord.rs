//! WAN network coordinates: this server's Vivaldi coordinate in the WAN pool and the ones
//! the other servers of every datacenter publish there (computed by the agent from WAN
//! gossip round trips, as LAN ones are from LAN rounds, and kept in memory as Consul keeps
//! them in Serf's cache: nothing of it goes through Raft). They answer
//! `/v1/coordinate/datacenters` and give [`super::wan::Datacenters`] its round-trip
//! estimate to each datacenter: the median of the estimated round trips to its servers, as
//! Consul sorts datacenters.

use parking_lot::RwLock;
use registry_proto::coordinate::Coordinate;
use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::time::Duration;

/// Vivaldi's error estimate a coordinate must be under to be used for distances: a new
/// coordinate starts at 1.5 and sits near the origin, which would put every datacenter at
/// the same distance; until it has settled, the measured pings answer instead.
pub const SETTLED_ERROR: f64 = 0.6;

fn settled(c: &Coordinate) -> bool {
    c.error < SETTLED_ERROR
}

/// A WAN member's coordinate.
#[derive(Debug, Clone, PartialEq)]
pub struct WanNodeCoordinate {
    /// The member name, `node.dc`.
    pub node: String,
    /// Its datacenter.
    pub datacenter: String,
    /// Its coordinate.
    pub coord: Coordinate,
}

/// The WAN coordinates this server knows.
#[derive(Debug, Default)]
pub struct WanCoordinates {
    own: RwLock<Option<Coordinate>>,
    members: RwLock<Vec<WanNodeCoordinate>>,
}

impl WanCoordinates {
    /// Replaces this server's coordinate and the members' (this server among them).
    pub fn set(&self, own: Coordinate, members: Vec<WanNodeCoordinate>) {
        *self.own.write() = Some(own);
        *self.members.write() = members;
    }

    /// The coordinates by datacenter (names sorted).
    pub fn by_datacenter(&self) -> BTreeMap<String, Vec<WanNodeCoordinate>> {
        let mut out: BTreeMap<String, Vec<WanNodeCoordinate>> = BTreeMap::new();
        for m in self.members.read().iter() {
            out.entry(m.datacenter.clone()).or_default().push(m.clone());
        }
        for v in out.values_mut() {
            v.sort_by(|a, b| a.node.cmp(&b.node));
        }
        out
    }

    /// The estimated round trip from this server to datacenter `dc`: the median over its
    /// servers' coordinates (`None` before any is known).
    pub fn rtt(&self, dc: &str) -> Option<Duration> {
        let own = self.own.read().clone().filter(settled)?;
        let mut d: Vec<f64> = self
            .members
            .read()
            .iter()
            .filter(|m| m.datacenter.eq_ignore_ascii_case(dc))
            .filter(|m| m.coord.is_compatible_with(&own) && settled(&m.coord))
            .map(|m| own.distance_to(&m.coord))
            .filter(|x| x.is_finite() && *x >= 0.0)
            .collect();
        if d.is_empty() {
            return None;
        }
        d.sort_by(f64::total_cmp);
        Some(Duration::from_secs_f64(d[d.len() / 2]))
    }

    /// `GET /v1/coordinate/datacenters`: one entry per datacenter in `order`, Consul's shape.
    pub fn to_json(&self, order: &[String]) -> Value {
        let by_dc = self.by_datacenter();
        let list: Vec<Value> = order
            .iter()
            .map(|dc| {
                let coords: Vec<Value> = by_dc
                    .iter()
                    .find(|(k, _)| k.eq_ignore_ascii_case(dc))
                    .map(|(_, v)| {
                        v.iter()
                            .map(|m| json!({"Node": m.node, "Coord": m.coord}))
                            .collect()
                    })
                    .unwrap_or_default();
                json!({"Datacenter": dc, "AreaID": "wan", "Coordinates": coords})
            })
            .collect();
        Value::Array(list)
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    fn at(x: f64) -> Coordinate {
        let mut c = Coordinate::default();
        c.vec[0] = x;
        c.height = 0.0;
        c.error = 0.2;
        c
    }

    #[test]
    fn a_datacenter_is_as_far_as_its_median_server() {
        let w = WanCoordinates::default();
        assert_eq!(w.rtt("dc2"), None);
        let m = |n: &str, dc: &str, x| WanNodeCoordinate {
            node: n.into(),
            datacenter: dc.into(),
            coord: at(x),
        };
        w.set(
            at(0.0),
            vec![
                m("s1.dc1", "dc1", 0.0),
                m("s1.dc2", "dc2", 0.010),
                m("s2.dc2", "dc2", 0.020),
                m("s3.dc2", "dc2", 0.900),
            ],
        );
        let r = w.rtt("DC2").unwrap().as_secs_f64();
        assert!((r - 0.020).abs() < 1e-9, "{r}");
        let v = w.to_json(&["dc1".into(), "dc2".into()]);
        assert_eq!(v[1]["Datacenter"], "dc2");
        assert_eq!(v[1]["AreaID"], "wan");
        assert_eq!(v[1]["Coordinates"][0]["Node"], "s1.dc2");
        assert!(v[1]["Coordinates"][0]["Coord"]["Vec"].is_array());
        // Unsettled coordinates give no estimate.
        let mut young = at(0.5);
        young.error = 1.5;
        w.set(young, Vec::new());
        assert_eq!(w.rtt("dc2"), None);
    }
}
