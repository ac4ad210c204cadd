//! Prepared query failover: when this datacenter has no healthy instance, the query is run
//! in other datacenters, in Consul's order, until one answers with instances.
//!
//! The order: with `Failover.Targets`, the targets' datacenters in order; otherwise the
//! `NearestN` datacenters nearest by RTT (this one excluded), then `Failover.Datacenters` in
//! order, skipping any already chosen and any this server does not know. Every datacenter
//! tried counts one failover, answered or not.
//!
//! Other datacenters are reached through [`RemoteQueryExecutor`]: a server runs
//! [`super::remote::WanQueries`] over its WAN pool; [`SingleDatacenter`] knows none.

use futures::future::BoxFuture;
use registry_proto::prepared_query::{PreparedQuery, QueryFailover};
use serde_json::Value;

/// Runs a query in other datacenters.
pub trait RemoteQueryExecutor: Send + Sync {
    /// Known datacenters, nearest first (this one included or not; it is skipped).
    fn datacenters_by_rtt(&self) -> Vec<String>;
    /// Runs the (already rendered) query in `dc` and returns its instances, each in the
    /// `{Node, Service, Checks}` shape of the execute response.
    fn execute_in<'a>(
        &'a self,
        dc: &'a str,
        query: &'a PreparedQuery,
        limit: usize,
    ) -> BoxFuture<'a, Result<Vec<Value>, String>>;
}

/// The executor of a registry that knows no other datacenter.
#[derive(Debug, Default, Clone, Copy)]
pub struct SingleDatacenter;

impl RemoteQueryExecutor for SingleDatacenter {
    fn datacenters_by_rtt(&self) -> Vec<String> {
        Vec::new()
    }

    fn execute_in<'a>(
        &'a self,
        dc: &'a str,
        _query: &'a PreparedQuery,
        _limit: usize,
    ) -> BoxFuture<'a, Result<Vec<Value>, String>> {
        Box::pin(async move { Err(format!("No path to datacenter: {dc}")) })
    }
}

/// The datacenters to try, in order.
pub fn targets(local: &str, by_rtt: &[String], f: &QueryFailover) -> Vec<String> {
    let known = |dc: &str| dc != local && by_rtt.iter().any(|k| k == dc);
    let mut out: Vec<String> = Vec::new();
    if let Some(targets) = f.targets.as_ref().filter(|t| !t.is_empty()) {
        for t in targets {
            // Peers are not reachable from here; only datacenters are tried.
            if !t.datacenter.is_empty() && known(&t.datacenter) && !out.contains(&t.datacenter) {
                out.push(t.datacenter.clone());
            }
        }
        return out;
    }
    let n = usize::try_from(f.nearest_n).unwrap_or(0);
    out.extend(
        by_rtt
            .iter()
            .filter(|dc| dc.as_str() != local)
            .take(n)
            .cloned(),
    );
    for dc in f.datacenters.iter().flatten() {
        if known(dc) && !out.contains(dc) {
            out.push(dc.clone());
        }
    }
    out
}

/// What failover found: the instances, the datacenter they are in, and how many
/// datacenters were tried.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct FailoverResult {
    /// Instances found (empty: none anywhere).
    pub nodes: Vec<Value>,
    /// Datacenter that answered with instances (`None`: none did).
    pub datacenter: Option<String>,
    /// Datacenters tried.
    pub failovers: u32,
}

/// Tries the failover datacenters of `q` in order until one has instances.
pub async fn run(
    exec: &dyn RemoteQueryExecutor,
    local: &str,
    q: &PreparedQuery,
    limit: usize,
) -> FailoverResult {
    let order = targets(local, &exec.datacenters_by_rtt(), &q.service.failover);
    let mut out = FailoverResult::default();
    for dc in order {
        out.failovers += 1;
        match exec.execute_in(&dc, q, limit).await {
            Ok(nodes) if !nodes.is_empty() => {
                out.nodes = nodes;
                out.datacenter = Some(dc);
                break;
            }
            Ok(_) => {}
            Err(e) => {
                tracing::warn!(datacenter = %dc, error = %e, "prepared query failover failed")
            }
        }
    }
    out
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use parking_lot::Mutex;
    use registry_proto::prepared_query::QueryTarget;
    use serde_json::json;
    use std::collections::BTreeMap;

    /// Datacenters with a fixed answer each; records the order they were asked in.
    struct Fake {
        by_rtt: Vec<String>,
        answers: BTreeMap<String, Result<usize, String>>,
        asked: Mutex<Vec<String>>,
    }

    impl RemoteQueryExecutor for Fake {
        fn datacenters_by_rtt(&self) -> Vec<String> {
            self.by_rtt.clone()
        }
        fn execute_in<'a>(
            &'a self,
            dc: &'a str,
            _q: &'a PreparedQuery,
            _limit: usize,
        ) -> BoxFuture<'a, Result<Vec<Value>, String>> {
            self.asked.lock().push(dc.to_string());
            let a = self.answers.get(dc).cloned().unwrap_or(Ok(0));
            Box::pin(
                async move { a.map(|n| (0..n).map(|i| json!({"Node": {"Node": i}})).collect()) },
            )
        }
    }

    fn s(v: &[&str]) -> Vec<String> {
        v.iter().map(|x| x.to_string()).collect()
    }

    fn failover(n: i64, dcs: &[&str]) -> QueryFailover {
        QueryFailover {
            nearest_n: n,
            datacenters: Some(s(dcs)),
            targets: None,
        }
    }

    #[test]
    fn order_nearest_then_listed_without_repeats_or_unknowns() {
        let by_rtt = s(&["dc1", "dc3", "dc2", "dc4"]);
        assert_eq!(
            targets("dc1", &by_rtt, &failover(2, &[])),
            s(&["dc3", "dc2"])
        );
        assert_eq!(
            targets("dc1", &by_rtt, &failover(1, &["dc2", "dc3", "dc9", "dc4"])),
            s(&["dc3", "dc2", "dc4"])
        );
        assert_eq!(
            targets("dc1", &by_rtt, &failover(0, &["dc1", "dc4"])),
            s(&["dc4"])
        );
        assert_eq!(
            targets("dc1", &[], &failover(3, &["dc2"])),
            Vec::<String>::new()
        );
        let t = QueryFailover {
            nearest_n: 3,
            datacenters: Some(s(&["dc2"])),
            targets: Some(vec![
                QueryTarget {
                    datacenter: "dc4".into(),
                    ..Default::default()
                },
                QueryTarget {
                    peer: "p".into(),
                    ..Default::default()
                },
                QueryTarget {
                    datacenter: "dc3".into(),
                    ..Default::default()
                },
            ]),
        };
        assert_eq!(
            targets("dc1", &by_rtt, &t),
            s(&["dc4", "dc3"]),
            "targets replace the rest"
        );
    }

    #[tokio::test]
    async fn stops_at_the_first_datacenter_with_instances() {
        let fake = Fake {
            by_rtt: s(&["dc1", "dc2", "dc3", "dc4"]),
            answers: [
                ("dc2".to_string(), Err("down".to_string())),
                ("dc3".to_string(), Ok(0)),
                ("dc4".to_string(), Ok(2)),
            ]
            .into_iter()
            .collect(),
            asked: Mutex::new(Vec::new()),
        };
        let mut q = PreparedQuery::default();
        q.service.failover = failover(3, &[]);
        let r = run(&fake, "dc1", &q, 0).await;
        assert_eq!(r.failovers, 3);
        assert_eq!(r.datacenter.as_deref(), Some("dc4"));
        assert_eq!(r.nodes.len(), 2);
        assert_eq!(*fake.asked.lock(), s(&["dc2", "dc3", "dc4"]));
        let none = run(&SingleDatacenter, "dc1", &q, 0).await;
        assert_eq!(none, FailoverResult::default());
    }
}
