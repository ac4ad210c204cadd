//! Starting one server node: the state store, Raft, the query layer and the HTTP listener.
//!
//! The agent binary calls [`Server::start`], builds its local agent on the returned
//! reader and writer, then calls [`Server::serve`] with it.

use crate::agent_api::AgentApi;
use crate::config::ServerConfig;
use crate::http::{self, AppState};
use crate::query::blocking::RaftStatus;
use crate::query::write::{Proposer, Writer};
use crate::query::Reader;
use crate::raft::RaftHandle;
use crate::state::Store;
use crate::ServerError;
use futures::future::BoxFuture;
use registry_proto::{Command, CommandResponse};
use std::future::Future;
use std::sync::Arc;

impl RaftStatus for RaftHandle {
    fn is_leader(&self) -> bool {
        RaftHandle::is_leader(self)
    }
    fn known_leader(&self) -> bool {
        RaftHandle::known_leader(self)
    }
    fn last_contact_ms(&self) -> u64 {
        RaftHandle::last_contact_ms(self)
    }
    fn leader_addr(&self) -> Option<String> {
        self.leader().map(|(_, n)| n.raft_addr)
    }
    fn peers(&self) -> Vec<String> {
        RaftHandle::peers(self)
    }
    fn ensure_linearizable(&self) -> BoxFuture<'_, Result<(), ServerError>> {
        Box::pin(RaftHandle::ensure_linearizable(self))
    }
}

impl Proposer for RaftHandle {
    fn propose(&self, cmd: Command) -> BoxFuture<'_, Result<CommandResponse, ServerError>> {
        Box::pin(self.write(cmd))
    }
}

/// A running server node.
#[derive(Clone)]
pub struct Server {
    /// Runtime configuration.
    pub config: Arc<ServerConfig>,
    /// The state store.
    pub store: Arc<Store>,
    /// The Raft node.
    pub raft: RaftHandle,
    /// Reads.
    pub reader: Reader,
    /// Writes.
    pub writer: Writer,
}

impl std::fmt::Debug for Server {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Server")
            .field("node", &self.config.node_name)
            .finish_non_exhaustive()
    }
}

impl Server {
    /// Opens the state, starts Raft and waits until this node can serve.
    pub async fn start(config: ServerConfig) -> Result<Server, ServerError> {
        crate::metrics::install();
        let config = Arc::new(config);
        let store = Arc::new(Store::new());
        let raft = RaftHandle::start(&config, store.clone()).await?;
        let status: Arc<dyn RaftStatus> = Arc::new(raft.clone());
        let proposer: Arc<dyn Proposer> = Arc::new(raft.clone());
        Ok(Server {
            reader: Reader::new(store.clone(), status),
            writer: Writer::new(proposer),
            config,
            store,
            raft,
        })
    }

    /// Serves the HTTP API (and the internal Raft endpoints) until `shutdown` resolves.
    pub async fn serve(
        &self,
        agent: Arc<dyn AgentApi>,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> Result<(), ServerError> {
        let state = AppState {
            config: self.config.clone(),
            reader: self.reader.clone(),
            writer: self.writer.clone(),
            raft: Arc::new(self.raft.clone()),
            agent,
        };
        if !self.config.dev {
            self.serve_raft().await?;
        }
        let app = http::router(state);
        let addr = self.config.http_addr();
        let listener = tokio::net::TcpListener::bind(addr)
            .await
            .map_err(|e| ServerError::Internal(format!("binding HTTP listener {addr}: {e}")))?;
        tracing::info!(%addr, "HTTP API listening");
        axum::serve(listener, app)
            .with_graceful_shutdown(shutdown)
            .await
            .map_err(|e| ServerError::Internal(format!("HTTP server: {e}")))?;
        self.raft.shutdown().await;
        Ok(())
    }

    /// Serves server-to-server traffic (Raft RPCs) on the server port.
    async fn serve_raft(&self) -> Result<(), ServerError> {
        let addr = std::net::SocketAddr::new(self.config.bind_addr, self.config.server_port);
        let listener = tokio::net::TcpListener::bind(addr)
            .await
            .map_err(|e| ServerError::Internal(format!("binding server port {addr}: {e}")))?;
        let app = crate::raft::raft_router(self.raft.clone());
        tracing::info!(%addr, "server RPC listening");
        tokio::spawn(async move {
            if let Err(e) = axum::serve(listener, app).await {
                tracing::error!(error = %e, "server RPC listener stopped");
            }
        });
        Ok(())
    }
}
