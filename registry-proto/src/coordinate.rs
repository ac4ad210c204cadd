//! Network coordinates: the Vivaldi model Consul takes from serf's `coordinate` package,
//! estimating the round-trip time between any two nodes from a few measured ones.
//!
//! A coordinate is a point in an 8-dimensional Euclidean space plus a `Height` (the time
//! from a node to the network core, which no direction can shorten), an `Adjustment` (the
//! average residual of recent estimates, correcting for what the model misses) and an
//! `Error` (the node's confidence in its own position). Every measured RTT to a peer moves
//! this node's point like a spring: towards the peer when the estimate is too long, away
//! when too short, by a step weighted by how confident each side is. A weak pull towards
//! the origin ("gravity") keeps coordinates from drifting off together. Units are seconds.

use serde::{Deserialize, Serialize};

/// Dimensions of the Euclidean part.
pub const DIMENSIONALITY: usize = 8;
/// Largest (and initial) error.
pub const ERROR_MAX: f64 = 1.5;
/// Weight of a new sample in the error estimate.
const CE: f64 = 0.25;
/// Weight of a new sample in the position update.
const CC: f64 = 0.25;
/// Samples kept for the adjustment term.
const ADJUSTMENT_WINDOW: usize = 20;
/// Smallest height (10 µs).
pub const HEIGHT_MIN: f64 = 10.0e-6;
/// Samples per peer kept for the median filter.
const LATENCY_FILTER: usize = 3;
/// Distance (s) at which gravity starts to matter.
const GRAVITY_RHO: f64 = 150.0;
/// Below this, lengths count as zero.
const ZERO: f64 = 1.0e-6;
/// RTTs above this are discarded as bogus.
const MAX_RTT: f64 = 10.0;

/// One node's coordinate, in Consul's JSON shape.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Coordinate {
    /// Euclidean part.
    #[serde(rename = "Vec")]
    pub vec: Vec<f64>,
    /// Confidence (lower is better).
    #[serde(rename = "Error")]
    pub error: f64,
    /// Residual correction added to every distance.
    #[serde(rename = "Adjustment")]
    pub adjustment: f64,
    /// Distance to the network core.
    #[serde(rename = "Height")]
    pub height: f64,
}

impl PartialEq for Coordinate {
    fn eq(&self, o: &Self) -> bool {
        let bits = |v: &[f64]| v.iter().map(|f| f.to_bits()).collect::<Vec<_>>();
        bits(&self.vec) == bits(&o.vec)
            && self.error.to_bits() == o.error.to_bits()
            && self.adjustment.to_bits() == o.adjustment.to_bits()
            && self.height.to_bits() == o.height.to_bits()
    }
}

// Compared bit for bit above, so equality is reflexive even for NaN.
impl Eq for Coordinate {}

impl Default for Coordinate {
    fn default() -> Self {
        Coordinate {
            vec: vec![0.0; DIMENSIONALITY],
            error: ERROR_MAX,
            adjustment: 0.0,
            height: HEIGHT_MIN,
        }
    }
}

fn diff(a: &[f64], b: &[f64]) -> Vec<f64> {
    a.iter().zip(b).map(|(x, y)| x - y).collect()
}

fn magnitude(v: &[f64]) -> f64 {
    v.iter().map(|x| x * x).sum::<f64>().sqrt()
}

impl Coordinate {
    /// Whether every component is finite and the dimensions match ours.
    pub fn is_valid(&self) -> bool {
        self.vec.len() == DIMENSIONALITY
            && self.vec.iter().all(|x| x.is_finite())
            && self.error.is_finite()
            && self.adjustment.is_finite()
            && self.height.is_finite()
    }

    /// Whether two coordinates can be compared.
    pub fn is_compatible_with(&self, other: &Coordinate) -> bool {
        self.vec.len() == other.vec.len()
    }

    fn raw_distance(&self, other: &Coordinate) -> f64 {
        magnitude(&diff(&self.vec, &other.vec)) + self.height + other.height
    }

    /// Estimated RTT to `other`, in seconds. The adjustments are used only when they leave
    /// the estimate positive.
    pub fn distance_to(&self, other: &Coordinate) -> f64 {
        let dist = self.raw_distance(other);
        let adjusted = dist + self.adjustment + other.adjustment;
        if adjusted > 0.0 {
            adjusted
        } else {
            dist
        }
    }

    /// This coordinate pushed by `force` seconds along the direction from `other` to it.
    fn apply_force(&self, force: f64, other: &Coordinate, jitter: &mut dyn FnMut() -> f64) -> Self {
        let d = diff(&self.vec, &other.vec);
        let mag = magnitude(&d);
        let unit: Vec<f64> = if mag > ZERO {
            d.iter().map(|x| x / mag).collect()
        } else {
            // Two nodes at one point: push along a random direction.
            let r: Vec<f64> = (0..self.vec.len()).map(|_| jitter() - 0.5).collect();
            let m = magnitude(&r);
            if m > ZERO {
                r.iter().map(|x| x / m).collect()
            } else {
                let mut u = vec![0.0; self.vec.len()];
                if let Some(first) = u.first_mut() {
                    *first = 1.0;
                }
                u
            }
        };
        let mut out = self.clone();
        for (o, u) in out.vec.iter_mut().zip(&unit) {
            *o += u * force;
        }
        if mag > ZERO {
            out.height = ((self.height + other.height) * force / mag + self.height).max(HEIGHT_MIN);
        }
        out
    }
}

/// A node's coordinate as stored and served (`/v1/coordinate/nodes`), and the body of
/// `PUT /v1/coordinate/update`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct NodeCoordinate {
    /// Node name.
    #[serde(rename = "Node")]
    pub node: String,
    /// Network segment (always empty here: segments are an Enterprise feature).
    #[serde(rename = "Segment")]
    pub segment: String,
    /// The coordinate.
    #[serde(rename = "Coord")]
    pub coord: Coordinate,
}

/// Vivaldi state of one node: its coordinate, the recent samples of each peer and of the
/// adjustment term.
#[derive(Debug, Clone)]
pub struct Client {
    coord: Coordinate,
    adjustment_samples: Vec<f64>,
    adjustment_index: usize,
    latency: std::collections::HashMap<String, Vec<f64>>,
    seed: u64,
}

impl Default for Client {
    fn default() -> Self {
        Self::new(0x9e37_79b9_7f4a_7c15)
    }
}

impl Client {
    /// A node at the origin with the largest error; `seed` drives the direction chosen when
    /// two nodes share a point.
    pub fn new(seed: u64) -> Self {
        Client {
            coord: Coordinate::default(),
            adjustment_samples: vec![0.0; ADJUSTMENT_WINDOW],
            adjustment_index: 0,
            latency: Default::default(),
            seed: seed | 1,
        }
    }

    /// The current coordinate.
    pub fn coordinate(&self) -> &Coordinate {
        &self.coord
    }

    /// Forgets a peer's samples (it left).
    pub fn forget(&mut self, node: &str) {
        self.latency.remove(node);
    }

    fn next_random(&mut self) -> f64 {
        // xorshift64: only used to break ties between coincident points.
        let mut x = self.seed;
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        self.seed = x;
        (x >> 11) as f64 / (1u64 << 53) as f64
    }

    /// Median of the last few RTTs to `node`, with `rtt` added.
    fn filtered(&mut self, node: &str, rtt: f64) -> f64 {
        let samples = self.latency.entry(node.to_string()).or_default();
        samples.push(rtt);
        if samples.len() > LATENCY_FILTER {
            samples.remove(0);
        }
        let mut sorted = samples.clone();
        sorted.sort_by(f64::total_cmp);
        sorted[sorted.len() / 2]
    }

    /// Takes one measured round trip `rtt` (seconds) to `node`, whose coordinate is `other`,
    /// and returns the updated coordinate. Bogus input (a negative or huge RTT, an invalid or
    /// incompatible coordinate) is refused and changes nothing.
    pub fn update(
        &mut self,
        node: &str,
        other: &Coordinate,
        rtt: f64,
    ) -> Result<&Coordinate, String> {
        if !other.is_valid() || !other.is_compatible_with(&self.coord) {
            return Err("invalid or incompatible peer coordinate".into());
        }
        if !(0.0..=MAX_RTT).contains(&rtt) || !rtt.is_finite() {
            return Err(format!("round trip time not in valid range: {rtt}"));
        }
        let rtt = self.filtered(node, rtt);
        self.update_vivaldi(other, rtt);
        self.update_adjustment(other, rtt);
        self.update_gravity();
        if !self.coord.is_valid() {
            // Numerical trouble: start over rather than spread it.
            self.coord = Coordinate::default();
            self.adjustment_samples = vec![0.0; ADJUSTMENT_WINDOW];
        }
        Ok(&self.coord)
    }

    fn update_vivaldi(&mut self, other: &Coordinate, rtt: f64) {
        let rtt = rtt.max(ZERO);
        let dist = self.coord.distance_to(other);
        let wrongness = (dist - rtt).abs() / rtt;
        let total = (self.coord.error + other.error).max(ZERO);
        let weight = self.coord.error / total;
        self.coord.error =
            (CE * weight * wrongness + self.coord.error * (1.0 - CE * weight)).min(ERROR_MAX);
        let force = CC * weight * (rtt - dist);
        let mut rng = self.seed;
        let mut jitter = || {
            rng ^= rng << 13;
            rng ^= rng >> 7;
            rng ^= rng << 17;
            (rng >> 11) as f64 / (1u64 << 53) as f64
        };
        self.coord = self.coord.apply_force(force, other, &mut jitter);
        self.next_random();
    }

    fn update_adjustment(&mut self, other: &Coordinate, rtt: f64) {
        let dist = self.coord.raw_distance(other);
        self.adjustment_samples[self.adjustment_index] = rtt - dist;
        self.adjustment_index = (self.adjustment_index + 1) % ADJUSTMENT_WINDOW;
        let sum: f64 = self.adjustment_samples.iter().sum();
        self.coord.adjustment = sum / (2.0 * ADJUSTMENT_WINDOW as f64);
    }

    fn update_gravity(&mut self) {
        let origin = Coordinate::default();
        let dist = origin.distance_to(&self.coord);
        let force = -(dist / GRAVITY_RHO).powi(2);
        let mut never = || 0.5;
        self.coord = self.coord.apply_force(force, &origin, &mut never);
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn distance_uses_height_and_positive_adjustments() {
        let mut a = Coordinate::default();
        let mut b = Coordinate::default();
        a.vec[0] = 0.003;
        b.vec[0] = -0.001;
        let base = 0.004 + 2.0 * HEIGHT_MIN;
        assert!((a.distance_to(&b) - base).abs() < 1e-12);
        a.adjustment = 0.001;
        assert!((a.distance_to(&b) - (base + 0.001)).abs() < 1e-12);
        a.adjustment = -1.0;
        assert!(
            (a.distance_to(&b) - base).abs() < 1e-12,
            "negative sums are ignored"
        );
    }

    #[test]
    fn converges_on_a_line_of_nodes() {
        // Four nodes on a line, 10 ms apart; each measures every other one repeatedly.
        let pos: [f64; 4] = [0.0, 0.010, 0.020, 0.030];
        let mut clients: Vec<Client> = (0..4).map(|i| Client::new(i as u64 + 7)).collect();
        for _ in 0..400 {
            for i in 0..4 {
                for j in 0..4 {
                    if i == j {
                        continue;
                    }
                    let other = clients[j].coordinate().clone();
                    let rtt: f64 = (pos[i] - pos[j]).abs();
                    clients[i].update(&format!("n{j}"), &other, rtt).unwrap();
                }
            }
        }
        for i in 0..4 {
            for j in 0..4 {
                if i == j {
                    continue;
                }
                let est = clients[i].coordinate().distance_to(clients[j].coordinate());
                let real = (pos[i] - pos[j]).abs();
                assert!((est - real).abs() < 0.004, "{i}->{j}: {est} vs {real}");
            }
        }
        assert!(clients[0].coordinate().error < 0.5);
    }

    #[test]
    fn refuses_bogus_samples() {
        let mut c = Client::default();
        let other = Coordinate::default();
        assert!(c.update("x", &other, -1.0).is_err());
        assert!(c.update("x", &other, 11.0).is_err());
        let bad = Coordinate {
            vec: vec![f64::NAN; DIMENSIONALITY],
            ..Default::default()
        };
        assert!(c.update("x", &bad, 0.01).is_err());
        assert_eq!(c.coordinate(), &Coordinate::default());
    }
}
