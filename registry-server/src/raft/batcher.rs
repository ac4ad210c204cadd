//! Group commit of client writes.
//!
//! openraft 0.9 appends and flushes each proposal on its own, one after the other, so the
//! rate of log entries is bounded by the flush latency. To keep throughput up with many
//! concurrent writers, a log entry carries a batch of commands ([`Proposal`]): while
//! `MAX_INFLIGHT` proposals are in flight, new writes queue; when one completes, everything
//! queued so far (up to a size limit) is proposed as the next entry. A lone writer finds no
//! proposal in flight and proposes its command directly, with no extra hop.

use super::types::Proposal;
use super::RaftHandle;
use crate::ServerError;
use parking_lot::Mutex;
use registry_proto::{Command, CommandResponse};
use tokio::sync::oneshot;

/// Proposals in flight at once; more writers wait and go in the next batch.
const MAX_INFLIGHT: usize = 1;
/// Times the driver yields to let answered writers queue again before it gives up its slot.
const IDLE_YIELDS: usize = 2;
/// Most commands in one log entry.
const MAX_BATCH_CMDS: usize = 512;
/// Most bytes (encoded) in one log entry, unless a single command is larger.
const MAX_BATCH_BYTES: usize = 1024 * 1024;

type Reply = oneshot::Sender<Result<CommandResponse, ServerError>>;

struct Pending {
    cmd: Command,
    size: usize,
    reply: Reply,
}

#[derive(Default)]
struct State {
    inflight: usize,
    queue: Vec<Pending>,
}

/// The write queue of one node.
#[derive(Default)]
pub(crate) struct Batcher {
    state: Mutex<State>,
}

/// Releases an in-flight slot when dropped (also when the writer's future is dropped), handing
/// the queue to a driver task when writes are waiting.
struct Slot<'a> {
    handle: &'a RaftHandle,
}

impl Drop for Slot<'_> {
    fn drop(&mut self) {
        release(self.handle);
    }
}

fn release(handle: &RaftHandle) {
    let mut st = handle.inner.batch.state.lock();
    if st.queue.is_empty() {
        st.inflight -= 1;
        return;
    }
    match tokio::runtime::Handle::try_current() {
        Ok(rt) => {
            // The slot passes to the driver.
            drop(st);
            rt.spawn(drive(handle.clone()));
        }
        Err(_) => {
            // No runtime to drive the queue (shutting down): fail the waiting writes.
            st.inflight -= 1;
            st.queue.clear();
        }
    }
}

/// What the driver does next.
enum Next {
    Propose(Vec<Pending>),
    Wait,
    Stop,
}

/// Takes the next batch off the queue: as many writes as fit in one entry.
fn next_batch(handle: &RaftHandle, idle_rounds: usize) -> Next {
    let mut st = handle.inner.batch.state.lock();
    if st.queue.is_empty() {
        if idle_rounds >= IDLE_YIELDS {
            st.inflight -= 1;
            return Next::Stop;
        }
        return Next::Wait;
    }
    let mut n = 0;
    let mut bytes = 0;
    for p in &st.queue {
        if n > 0 && (n == MAX_BATCH_CMDS || bytes + p.size > MAX_BATCH_BYTES) {
            break;
        }
        n += 1;
        bytes += p.size;
    }
    Next::Propose(st.queue.drain(..n).collect())
}

/// Proposes queued writes, batch after batch, until the queue stays empty.
async fn drive(handle: RaftHandle) {
    let mut idle_rounds = 0;
    loop {
        let batch = match next_batch(&handle, idle_rounds) {
            Next::Propose(batch) => batch,
            Next::Stop => return,
            Next::Wait => {
                // Writers just answered often write again at once: let them queue, so that
                // they form the next batch rather than one of them going alone.
                idle_rounds += 1;
                tokio::task::yield_now().await;
                continue;
            }
        };
        idle_rounds = 0;
        let (cmds, replies): (Proposal, Vec<Reply>) =
            batch.into_iter().map(|p| (p.cmd, p.reply)).unzip();
        tracing::trace!(commands = cmds.len(), "group commit");
        match handle.propose(cmds).await {
            Ok(resps) if resps.len() == replies.len() => {
                for (reply, resp) in replies.into_iter().zip(resps) {
                    let _ = reply.send(Ok(resp));
                }
            }
            Ok(resps) => {
                let e = ServerError::Raft(format!(
                    "{} responses for {} commands",
                    resps.len(),
                    replies.len()
                ));
                for reply in replies {
                    let _ = reply.send(Err(super::shared_error(&e)));
                }
            }
            Err(e) => {
                for reply in replies {
                    let _ = reply.send(Err(super::shared_error(&e)));
                }
            }
        }
    }
}

/// Counts the bytes of an encoding without storing them.
struct Counter(usize);

impl Extend<u8> for Counter {
    fn extend<T: IntoIterator<Item = u8>>(&mut self, iter: T) {
        self.0 += iter.into_iter().count();
    }
}

fn encoded_size(cmd: &Command) -> usize {
    postcard::to_extend(cmd, Counter(0)).map_or(MAX_BATCH_BYTES, |c| c.0)
}

// Lives on the stack for an instant; boxing the command would only cost an allocation.
#[allow(clippy::large_enum_variant)]
enum Route {
    Direct(Command),
    Queued(oneshot::Receiver<Result<CommandResponse, ServerError>>),
}

impl RaftHandle {
    /// Replicates `cmd`, applies it and returns what the state machine answered. Fails with
    /// [`ServerError::NoLeader`] when this node is not the leader. Concurrent writes are
    /// committed together (group commit); each is still applied on its own, in order.
    #[tracing::instrument(level = "trace", skip_all)]
    pub async fn write(&self, cmd: Command) -> Result<CommandResponse, ServerError> {
        let route = {
            let mut st = self.inner.batch.state.lock();
            if st.inflight < MAX_INFLIGHT && st.queue.is_empty() {
                st.inflight += 1;
                Route::Direct(cmd)
            } else {
                let size = encoded_size(&cmd);
                let (reply, rx) = oneshot::channel();
                st.queue.push(Pending { cmd, size, reply });
                Route::Queued(rx)
            }
        };
        match route {
            Route::Direct(cmd) => {
                let _slot = Slot { handle: self };
                let resps = self.propose(vec![cmd]).await?;
                resps
                    .into_iter()
                    .next()
                    .ok_or_else(|| ServerError::Raft("no response for the command".into()))
            }
            Route::Queued(rx) => rx
                .await
                .unwrap_or_else(|_| Err(ServerError::Raft("write abandoned".into()))),
        }
    }
}
