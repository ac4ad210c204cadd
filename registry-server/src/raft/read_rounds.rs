//! Shared quorum rounds for linearizable reads.
//!
//! Every `?consistent` read needs the leader to confirm, with a quorum, that it still leads
//! after the read arrived. One round per read costs a heartbeat to every follower per read;
//! instead, reads that arrive while a round is in flight wait for the next round, which
//! starts once the current one ends and answers all of them. Each read is thus answered by
//! a round that started after it arrived, which is what linearizability needs.

use super::RaftHandle;
use crate::ServerError;
use parking_lot::Mutex;
use tokio::sync::oneshot;

type Reply = oneshot::Sender<Result<u64, ServerError>>;

#[derive(Default)]
struct State {
    running: bool,
    waiting: Vec<Reply>,
}

/// Reads waiting for a quorum round, and whether a round is running.
#[derive(Default)]
pub(crate) struct ReadRounds {
    state: Mutex<State>,
}

impl RaftHandle {
    /// The log index a linearizable read must see: confirmed by a quorum round that started
    /// after this call, and applied on this node (the leader) before it returns.
    pub(crate) async fn linearizable_index(&self) -> Result<u64, ServerError> {
        let (tx, rx) = oneshot::channel();
        let start = {
            let mut st = self.inner.reads.state.lock();
            st.waiting.push(tx);
            !std::mem::replace(&mut st.running, true)
        };
        if start {
            tokio::spawn(drive(self.clone()));
        }
        rx.await
            .unwrap_or_else(|_| Err(ServerError::Raft("read round abandoned".into())))
    }
}

/// Runs rounds until no read is waiting.
async fn drive(handle: RaftHandle) {
    loop {
        let batch = {
            let mut st = handle.inner.reads.state.lock();
            if st.waiting.is_empty() {
                st.running = false;
                return;
            }
            std::mem::take(&mut st.waiting)
        };
        let res = handle.quorum_round().await;
        for reply in batch {
            let _ = reply.send(match &res {
                Ok(i) => Ok(*i),
                Err(e) => Err(super::shared_error(e)),
            });
        }
    }
}
