//! The autopilot configuration: a single replicated record with Consul's CAS semantics.

use crate::state::WriteTxn;
use registry_proto::command::AutopilotConfig;
use registry_proto::CommandResponse;

/// Stores `config` at the transaction's index. With `cas`, only when the stored
/// configuration's modify index equals it (0: only when none is stored); answers
/// [`CommandResponse::Bool`] either way.
pub(super) fn set_config(
    txn: &mut WriteTxn<'_>,
    config: &AutopilotConfig,
    cas: Option<u64>,
) -> CommandResponse {
    let existing = txn.db.autopilot.as_ref();
    if let Some(expected) = cas {
        let current = existing.map_or(0, |c| c.modify_index);
        if current != expected {
            return CommandResponse::Bool(false);
        }
    }
    let create_index = existing.map_or(txn.index, |c| c.create_index);
    txn.db.autopilot = Some(AutopilotConfig {
        create_index,
        modify_index: txn.index,
        ..config.clone()
    });
    CommandResponse::Bool(true)
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use crate::fsm::apply;
    use crate::state::Store;
    use registry_proto::command::AutopilotConfig;
    use registry_proto::{Command, CommandResponse};
    use std::time::Duration;

    fn set(store: &Store, index: u64, max_trailing_logs: u64, cas: Option<u64>) -> bool {
        let cmd = Command::AutopilotSetConfig {
            config: AutopilotConfig {
                max_trailing_logs,
                create_index: 999,
                modify_index: 999,
                ..AutopilotConfig::default()
            },
            cas,
        };
        match apply(store, index, &cmd) {
            CommandResponse::Bool(b) => b,
            other => panic!("unexpected response {other:?}"),
        }
    }

    #[test]
    fn cas_follows_the_modify_index() {
        let store = Store::new();
        assert!(store.read().autopilot.is_none());
        assert!(
            !set(&store, 3, 1, Some(7)),
            "nothing stored: only cas=0 matches"
        );
        assert!(set(&store, 4, 2, Some(0)));
        let c = store.read().autopilot.clone().unwrap();
        assert_eq!(
            (c.create_index, c.modify_index, c.max_trailing_logs),
            (4, 4, 2)
        );
        assert!(!set(&store, 5, 3, Some(0)), "already stored");
        assert!(!set(&store, 6, 3, Some(3)));
        assert!(set(&store, 7, 4, Some(4)));
        assert!(set(&store, 8, 5, None));
        let c = store.read().autopilot.clone().unwrap();
        assert_eq!(
            (c.create_index, c.modify_index, c.max_trailing_logs),
            (4, 8, 5)
        );
        assert_eq!(c.server_stabilization_time, Duration::from_secs(10));
    }
}
