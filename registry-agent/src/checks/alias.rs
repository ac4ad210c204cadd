//! Alias checks (Consul's `CheckAlias`): the check takes the health of another service
//! instance or node. Any critical check of the target makes it critical, else any warning
//! makes it warning, else it passes; a target service that does not exist is critical.
//!
//! - `AliasNode` empty: the target is a service of this agent, read from the local state,
//!   re-read on every local change and at least once a minute.
//! - `AliasNode` set: the node's checks are read from the catalog with blocking queries
//!   (stale reads, 1 minute wait; on a client agent through the servers, in
//!   `alias_remote`), so a change of the target is seen as soon as this agent's
//!   store applies it. Failures are reported after the second attempt and retried with
//!   backoff (from the fourth attempt on, doubling from 1s up to 1 minute).

use super::CheckNotifier;
use futures::future::BoxFuture;
use registry_proto::model::{status, HealthCheck};
use registry_server::query::options::{Consistency, QueryOptions};
use registry_server::query::Reader;
use registry_server::state::WatchKey;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::watch;

/// Re-read the local target at least this often, even without a change notice.
const LOCAL_REFRESH: Duration = Duration::from_secs(60);
/// Wait of one blocking catalog query.
const QUERY_WAIT: Duration = Duration::from_secs(60);
/// Attempts before backing off.
const BACKOFF_MIN: u32 = 3;
/// Longest backoff wait.
const BACKOFF_MAX: Duration = Duration::from_secs(60);

/// One catalog read of the aliased node.
#[derive(Debug, Clone, Default)]
pub struct NodeView {
    /// Index of the read.
    pub index: u64,
    /// The node's checks.
    pub checks: Vec<HealthCheck>,
    /// Whether the aliased service is registered on the node.
    pub service_exists: bool,
}

/// What alias checks read: this agent's local state and the catalog.
pub trait AliasSource: Send + Sync + 'static {
    /// All local checks.
    fn local_checks(&self) -> Vec<HealthCheck>;
    /// Whether local service `id` is registered.
    fn local_service_exists(&self, id: &str) -> bool;
    /// A receiver that is marked changed whenever the local state changes.
    fn local_changes(&self) -> watch::Receiver<u64>;
    /// The checks of `node` (and whether it has service `service`) once the catalog's index
    /// for the node passes `min_index`, or after `wait`.
    fn node_checks<'a>(
        &'a self,
        node: &'a str,
        service: &'a str,
        min_index: u64,
        wait: Duration,
    ) -> BoxFuture<'a, Result<NodeView, String>>;
}

/// The health of the target among `checks` (Consul's `processChecks`). `exists` is asked
/// only when no check of the target service was seen.
pub(crate) fn evaluate(
    node: &str,
    service: &str,
    checks: &[HealthCheck],
    exists: impl FnOnce() -> bool,
) -> (&'static str, String) {
    let mut health = status::PASSING;
    let mut msg = "No checks found.".to_string();
    let mut found = false;
    for c in checks {
        if !node.is_empty() && c.node != node {
            continue;
        }
        let matches = c.service_id == service;
        if !c.service_id.is_empty() && !matches {
            continue;
        }
        found |= matches;
        match c.status.as_str() {
            status::CRITICAL | status::WARNING => {
                health = if c.status == status::CRITICAL {
                    status::CRITICAL
                } else {
                    status::WARNING
                };
                msg = format!("Aliased check {:?} failing: {}", c.name, c.output);
                if health == status::CRITICAL {
                    break;
                }
            }
            _ => {
                if health == status::PASSING {
                    msg = "All checks passing.".to_string();
                }
            }
        }
    }
    if !found && !exists() {
        health = status::CRITICAL;
        msg = format!("Service {service} could not be found on node {node}");
    }
    (health, msg)
}

/// Runs alias check `id` for `node`/`service` until the task is aborted.
pub(crate) async fn run(
    id: String,
    node: String,
    service: String,
    source: Arc<dyn AliasSource>,
    notifier: Arc<dyn CheckNotifier>,
) {
    if node.is_empty() {
        run_local(id, service, source, notifier).await;
    } else {
        run_query(id, node, service, source, notifier).await;
    }
}

async fn run_local(
    id: String,
    service: String,
    source: Arc<dyn AliasSource>,
    notifier: Arc<dyn CheckNotifier>,
) {
    let mut changes = source.local_changes();
    loop {
        changes.borrow_and_update();
        let mut checks = source.local_checks();
        checks.sort_by(|a, b| a.check_id.cmp(&b.check_id));
        // The alias check itself is not part of its target.
        checks.retain(|c| c.check_id != id);
        let (st, out) = evaluate("", &service, &checks, || {
            source.local_service_exists(&service)
        });
        notifier.update_check(&id, st, out);
        tokio::select! {
            r = changes.changed() => {
                if r.is_err() {
                    // The local state is gone: the agent is shutting down.
                    return;
                }
            }
            _ = tokio::time::sleep(LOCAL_REFRESH) => {}
        }
    }
}

async fn run_query(
    id: String,
    node: String,
    service: String,
    source: Arc<dyn AliasSource>,
    notifier: Arc<dyn CheckNotifier>,
) {
    let mut index = 0u64;
    let mut attempt = 0u32;
    loop {
        if attempt > BACKOFF_MIN {
            let shift = (attempt - BACKOFF_MIN).min(31);
            let wait = Duration::from_secs(1u64 << shift).min(BACKOFF_MAX);
            tokio::time::sleep(wait).await;
        }
        match source.node_checks(&node, &service, index, QUERY_WAIT).await {
            Ok(view) => {
                attempt = 0;
                // Always block on the next read, even if the index went backwards.
                index = view.index.max(1);
                let (st, out) = evaluate(&node, &service, &view.checks, || view.service_exists);
                notifier.update_check(&id, st, out);
            }
            Err(e) => {
                attempt += 1;
                tracing::debug!(check = %id, error = %e, attempt, "alias query failed");
                if attempt > 1 {
                    notifier.update_check(
                        &id,
                        status::CRITICAL,
                        format!("Failure checking aliased node or service: {e}"),
                    );
                }
            }
        }
    }
}

/// The agent's [`AliasSource`]: its local state and the catalog, in this server's store or,
/// on a client agent, on the servers (through its forwarding).
pub struct AgentAliasSource {
    local: Arc<crate::local::LocalState>,
    reader: Option<Reader>,
    remote: Option<Arc<dyn registry_server::http::ForwardApi>>,
}

impl AgentAliasSource {
    /// Reads `local` and, through `reader`, the catalog.
    pub fn new(local: Arc<crate::local::LocalState>, reader: Option<Reader>) -> Self {
        AgentAliasSource {
            local,
            reader,
            remote: None,
        }
    }

    /// Without a local store, reads other nodes' checks from the servers through `forward`.
    pub fn with_remote(mut self, forward: Arc<dyn registry_server::http::ForwardApi>) -> Self {
        self.remote = Some(forward);
        self
    }
}

impl AliasSource for AgentAliasSource {
    fn local_checks(&self) -> Vec<HealthCheck> {
        self.local.checks()
    }

    fn local_service_exists(&self, id: &str) -> bool {
        self.local.service(id).is_some()
    }

    fn local_changes(&self) -> watch::Receiver<u64> {
        self.local.subscribe()
    }

    fn node_checks<'a>(
        &'a self,
        node: &'a str,
        service: &'a str,
        min_index: u64,
        wait: Duration,
    ) -> BoxFuture<'a, Result<NodeView, String>> {
        Box::pin(async move {
            let Some(reader) = &self.reader else {
                let Some(fwd) = &self.remote else {
                    return Err("no catalog to read another node's checks from".to_string());
                };
                return super::alias_remote::node_checks(&**fwd, node, service, min_index, wait)
                    .await;
            };
            let mut opts = QueryOptions::default();
            opts.index = min_index;
            opts.wait = wait;
            opts.consistency = Consistency::Stale;
            let ((checks, service_exists), meta) = reader
                .blocking(&opts, &[WatchKey::Node(node.to_string())], |db| {
                    let checks: Vec<HealthCheck> = db.node_checks(node).cloned().collect();
                    let exists = !service.is_empty()
                        && db
                            .services
                            .get(node)
                            .is_some_and(|m| m.contains_key(service));
                    ((checks, exists), db.node_name_index(node))
                })
                .await
                .map_err(|e| e.to_string())?;
            Ok(NodeView {
                index: meta.index,
                checks,
                service_exists,
            })
        })
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    fn chk(node: &str, id: &str, service: &str, st: &str, out: &str) -> HealthCheck {
        HealthCheck {
            node: node.into(),
            check_id: id.into(),
            name: id.into(),
            service_id: service.into(),
            status: st.into(),
            output: out.into(),
            ..Default::default()
        }
    }

    #[test]
    fn worst_status_of_the_target_wins() {
        let checks = vec![
            chk("n", "a", "web", "passing", ""),
            chk("n", "b", "web", "warning", "slow"),
            chk("n", "c", "db", "critical", "down"),
            chk("n", "serf", "", "passing", ""),
        ];
        let (st, out) = evaluate("n", "web", &checks, || true);
        assert_eq!(st, "warning");
        assert_eq!(out, "Aliased check \"b\" failing: slow");
        let (st, _) = evaluate("n", "db", &checks, || true);
        assert_eq!(st, "critical");
        let only_ok = vec![chk("n", "a", "web", "passing", "")];
        assert_eq!(
            evaluate("n", "web", &only_ok, || true),
            ("passing", "All checks passing.".to_string())
        );
        // A node-level critical check counts for every service of the node.
        let node_down = vec![
            chk("n", "a", "web", "passing", ""),
            chk("n", "serf", "", "critical", "gone"),
        ];
        assert_eq!(evaluate("n", "web", &node_down, || true).0, "critical");
        // Checks of other nodes are ignored.
        let other = vec![chk("m", "a", "web", "critical", "")];
        assert_eq!(
            evaluate("n", "web", &other, || true),
            ("passing", "No checks found.".to_string())
        );
    }

    #[test]
    fn missing_service_is_critical() {
        assert_eq!(
            evaluate("n", "web", &[], || false),
            (
                "critical",
                "Service web could not be found on node n".to_string()
            )
        );
        // A service without checks that exists passes.
        assert_eq!(evaluate("n", "web", &[], || true).0, "passing");
    }
}
