//! How the agent reaches the catalog (Consul's agent "delegate"): on a server, its own store
//! and write path ([`LocalServer`]); on a client agent, the servers over the RPC layer
//! ([`RemoteServers`]). Anti-entropy only uses this trait, never the server's internals.

use super::Remote;
use futures::future::BoxFuture;
use registry_proto::{Command, CommandResponse};
use registry_server::query::write::Writer;
use registry_server::query::Reader;
use registry_server::rpc::catalog::{CatalogSync, NodeRecords};
use registry_server::rpc::client::ServerPool;
use registry_server::rpc::{CATALOG_SYNC_PATH, NODE_RECORDS_PATH};
use registry_server::ServerError;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

/// The catalog operations of an agent.
pub trait CatalogDelegate: Send + Sync + 'static {
    /// This node's records in the catalog.
    fn node_records<'a>(&'a self, node: &'a str) -> BoxFuture<'a, Result<Remote, ServerError>>;
    /// Applies registrations of `node` (a `Register`/`Deregister`, or a `Batch` of them); a
    /// state machine rejection is `ServerError::Internal` with its text, as `Writer::apply`.
    fn apply<'a>(
        &'a self,
        node: &'a str,
        cmd: Command,
    ) -> BoxFuture<'a, Result<CommandResponse, ServerError>>;
    /// How many nodes the catalog holds (last known).
    fn node_count(&self) -> usize;
}

/// A server's own agent: the local store and Raft.
#[derive(Debug, Clone)]
pub struct LocalServer {
    /// Reads.
    pub reader: Reader,
    /// Writes.
    pub writer: Writer,
}

impl CatalogDelegate for LocalServer {
    fn node_records<'a>(&'a self, node: &'a str) -> BoxFuture<'a, Result<Remote, ServerError>> {
        let db = self.reader.store().read();
        let remote = Remote::from_db(&db, node);
        Box::pin(async move { Ok(remote) })
    }

    fn apply<'a>(
        &'a self,
        _node: &'a str,
        cmd: Command,
    ) -> BoxFuture<'a, Result<CommandResponse, ServerError>> {
        Box::pin(self.writer.apply(cmd))
    }

    fn node_count(&self) -> usize {
        self.reader.store().read().nodes.len()
    }
}

/// A client agent: the servers, through the RPC layer with failover.
#[derive(Debug)]
pub struct RemoteServers {
    pool: Arc<ServerPool>,
    nodes: AtomicUsize,
}

/// How long one catalog RPC may take.
const CALL_LIMIT: Duration = Duration::from_secs(30);

impl RemoteServers {
    /// The catalog as the servers of `pool` serve it.
    pub fn new(pool: Arc<ServerPool>) -> Self {
        RemoteServers {
            pool,
            nodes: AtomicUsize::new(1),
        }
    }
}

impl CatalogDelegate for RemoteServers {
    fn node_records<'a>(&'a self, node: &'a str) -> BoxFuture<'a, Result<Remote, ServerError>> {
        Box::pin(async move {
            let req = node.to_string();
            let rec: NodeRecords = self
                .pool
                .call(NODE_RECORDS_PATH, &req, CALL_LIMIT, true)
                .await?;
            self.nodes.store(rec.nodes, Ordering::Relaxed);
            Ok(Remote::from_records(rec))
        })
    }

    fn apply<'a>(
        &'a self,
        node: &'a str,
        cmd: Command,
    ) -> BoxFuture<'a, Result<CommandResponse, ServerError>> {
        Box::pin(async move {
            let ops = match cmd {
                Command::Batch(ops) => ops,
                one => vec![one],
            };
            let req = CatalogSync {
                node: node.to_string(),
                ops,
            };
            match self
                .pool
                .call(CATALOG_SYNC_PATH, &req, CALL_LIMIT, false)
                .await?
            {
                CommandResponse::Rejected(m) => Err(ServerError::Internal(m)),
                other => Ok(other),
            }
        })
    }

    fn node_count(&self) -> usize {
        self.nodes.load(Ordering::Relaxed)
    }
}
