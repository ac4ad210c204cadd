//! Sorting by estimated round-trip time (`?near=`), as Consul's `sortNodesByDistanceFrom`:
//! when the source node has a coordinate, results are stably sorted by the distance from it
//! to each result's node, and nodes without a coordinate go last; without a source
//! coordinate the order is left alone.

use crate::state::Db;

/// Sorts `items` by the estimated RTT from `source` to the node `node_of` names.
pub fn sort<T>(db: &Db, source: &str, items: &mut [T], node_of: impl Fn(&T) -> &str) {
    let Some(from) = db.queries.coordinate(source) else {
        return;
    };
    let dist = |n: &str| {
        db.queries
            .coordinate(n)
            .filter(|c| c.is_compatible_with(from))
            .map_or(f64::INFINITY, |c| from.distance_to(c))
    };
    let mut keyed: Vec<(f64, usize)> = items
        .iter()
        .enumerate()
        .map(|(i, t)| (dist(node_of(t)), i))
        .collect();
    keyed.sort_by(|a, b| a.0.total_cmp(&b.0).then(a.1.cmp(&b.1)));
    apply_permutation(items, keyed.into_iter().map(|(_, i)| i).collect());
}

/// Reorders `items` so that position k holds what was at `perm[k]`.
fn apply_permutation<T>(items: &mut [T], mut perm: Vec<usize>) {
    for start in 0..perm.len() {
        let mut cur = start;
        while perm[cur] != start {
            let next = perm[cur];
            items.swap(cur, next);
            perm[cur] = cur;
            cur = next;
        }
        perm[cur] = cur;
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use registry_proto::coordinate::Coordinate;

    #[test]
    fn sorts_by_distance_and_puts_unknown_last() {
        let mut db = Db::default();
        let mut at = |n: &str, x: f64| {
            let mut c = Coordinate::default();
            c.vec[0] = x;
            db.queries.coordinates.insert((n.into(), String::new()), c);
        };
        at("src", 0.0);
        at("far", 0.050);
        at("near", 0.001);
        at("mid", 0.010);
        let mut items = vec!["far", "nocoord", "mid", "near", "src"];
        sort(&db, "src", &mut items, |s| s);
        assert_eq!(items, vec!["src", "near", "mid", "far", "nocoord"]);
        let mut items = vec!["far", "near"];
        sort(&db, "unknown", &mut items, |s| s);
        assert_eq!(
            items,
            vec!["far", "near"],
            "no source coordinate: unchanged"
        );
    }

    #[test]
    fn permutation_applies() {
        let mut v = vec!['a', 'b', 'c', 'd'];
        apply_permutation(&mut v, vec![2, 0, 3, 1]);
        assert_eq!(v, vec!['c', 'a', 'd', 'b']);
    }
}
