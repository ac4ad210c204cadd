//! Shared rounds for reads that must see the leader's latest state.
//!
//! - A `?consistent` read on the leader needs it to confirm, with a quorum, that it still
//!   leads after the read arrived.
//! - A default or `?consistent` read on a follower needs the leader's read index, asked for
//!   after the read arrived (one RPC to the leader).
//!
//! One round per read would cost a heartbeat to every follower, or an RPC to the leader, per
//! read. Instead, reads of one kind that arrive while a round is in flight wait for the next
//! round, which starts once the current one ends and answers all of them. Each read is thus
//! answered by a round that started after it arrived, which is what linearizability needs.

use super::RaftHandle;
use crate::ServerError;
use parking_lot::Mutex;
use tokio::sync::oneshot;

/// What a round asks.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Round {
    /// A quorum confirms this node's leadership: the read index (this node leads).
    Quorum,
    /// The leader's read index, default or consistent; `None` if this node became the
    /// leader meanwhile.
    LeaderIndex { consistent: bool },
}

type Reply = oneshot::Sender<Result<Option<u64>, ServerError>>;

#[derive(Default)]
struct State {
    running: bool,
    waiting: Vec<Reply>,
}

/// Reads waiting for a round of one kind, and whether one is running.
#[derive(Default)]
pub(crate) struct ReadRounds {
    state: Mutex<State>,
}

/// The rounds of each kind of one node.
#[derive(Default)]
pub(crate) struct AllRounds {
    quorum: ReadRounds,
    leader_default: ReadRounds,
    leader_consistent: ReadRounds,
}

impl AllRounds {
    fn of(&self, round: Round) -> &ReadRounds {
        match round {
            Round::Quorum => &self.quorum,
            Round::LeaderIndex { consistent: false } => &self.leader_default,
            Round::LeaderIndex { consistent: true } => &self.leader_consistent,
        }
    }
}

impl RaftHandle {
    /// The log index a linearizable read must see: confirmed by a quorum round that started
    /// after this call, and applied on this node (the leader) before it returns.
    pub(crate) async fn linearizable_index(&self) -> Result<u64, ServerError> {
        Ok(self.shared_round(Round::Quorum).await?.unwrap_or(0))
    }

    /// The answer of a round of kind `round` that starts after this call.
    pub(crate) async fn shared_round(&self, round: Round) -> Result<Option<u64>, ServerError> {
        let (tx, rx) = oneshot::channel();
        let start = {
            let mut st = self.inner.reads.of(round).state.lock();
            st.waiting.push(tx);
            !std::mem::replace(&mut st.running, true)
        };
        if start {
            tokio::spawn(drive(self.clone(), round));
        }
        rx.await
            .unwrap_or_else(|_| Err(ServerError::Raft("read round abandoned".into())))
    }
}

/// Runs rounds of kind `round` until no read is waiting.
async fn drive(handle: RaftHandle, round: Round) {
    loop {
        let batch = {
            let mut st = handle.inner.reads.of(round).state.lock();
            if st.waiting.is_empty() {
                st.running = false;
                return;
            }
            std::mem::take(&mut st.waiting)
        };
        let res = match round {
            Round::Quorum => handle.quorum_round().await.map(Some),
            Round::LeaderIndex { consistent } => {
                let req = crate::rpc::forward::ReadIndexRequest { consistent };
                handle
                    .call_leader_idempotent::<_, u64>(crate::rpc::READ_INDEX_PATH, &req)
                    .await
            }
        };
        for reply in batch {
            let _ = reply.send(match &res {
                Ok(i) => Ok(*i),
                Err(e) => Err(super::shared_error(e)),
            });
        }
    }
}
