//! Work only the Raft leader does: expiring sessions whose TTL lapsed, and autopilot
//! (server health, promotion of new servers, removal of dead ones).
//!
//! [`leadership`] turns Raft's metrics into a `watch` channel of "this server leads"; the
//! loops here start their duties on `true` and drop them on `false`.

pub mod autopilot;
pub mod autopilot_state;
pub mod members;
pub mod sessions;

use crate::raft::RaftHandle;
use tokio::sync::watch;

/// A channel that holds whether `raft` is the leader, updated on every Raft metrics change.
/// The forwarding task ends when every receiver is gone or Raft shuts down.
pub fn leadership(raft: &RaftHandle) -> watch::Receiver<bool> {
    let (tx, rx) = watch::channel(raft.is_leader());
    let handle = raft.clone();
    tokio::spawn(async move {
        let mut metrics = handle.metrics();
        loop {
            let now = handle.is_leader();
            tx.send_if_modified(|v| {
                let changed = *v != now;
                *v = now;
                changed
            });
            tokio::select! {
                r = metrics.changed() => if r.is_err() { break },
                _ = tx.closed() => break,
            }
        }
        // Raft stopped: nobody leads from here.
        tx.send_if_modified(|v| std::mem::replace(v, false));
    });
    rx
}
