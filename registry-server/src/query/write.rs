//! The write path: every change becomes a [`Command`] proposed to Raft.

use crate::ServerError;
use futures::future::BoxFuture;
use registry_proto::{Command, CommandResponse};
use std::sync::Arc;

/// Proposes commands to the Raft log and returns the state machine's response.
pub trait Proposer: Send + Sync + 'static {
    /// Replicates and applies `cmd`; resolves once it is committed and applied.
    fn propose(&self, cmd: Command) -> BoxFuture<'_, Result<CommandResponse, ServerError>>;
}

/// The write handle shared by the HTTP layer and the local agent.
#[derive(Clone)]
pub struct Writer {
    raft: Arc<dyn Proposer>,
}

impl std::fmt::Debug for Writer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Writer").finish_non_exhaustive()
    }
}

impl Writer {
    /// A writer proposing through `raft`.
    pub fn new(raft: Arc<dyn Proposer>) -> Self {
        Writer { raft }
    }

    /// Applies `cmd` through Raft. A state machine rejection becomes an error carrying
    /// Consul's text.
    #[tracing::instrument(level = "debug", skip_all)]
    pub async fn apply(&self, cmd: Command) -> Result<CommandResponse, ServerError> {
        if crate::metrics::enabled() {
            crate::metrics::RAFT_APPLY.get().increment(1);
        }
        let (timer, started) = (
            crate::metrics::command_metric(&cmd),
            std::time::Instant::now(),
        );
        let out = self.raft.propose(cmd).await;
        crate::metrics::command_timer(timer, started);
        match out? {
            CommandResponse::Rejected(msg) => Err(ServerError::Internal(msg)),
            other => Ok(other),
        }
    }

    /// Applies `cmd` and returns the boolean of a conditional write (`true` otherwise).
    pub async fn apply_bool(&self, cmd: Command) -> Result<bool, ServerError> {
        Ok(match self.apply(cmd).await? {
            CommandResponse::Bool(b) => b,
            _ => true,
        })
    }
}
