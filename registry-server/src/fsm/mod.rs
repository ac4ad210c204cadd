//! The deterministic state machine: applies [`Command`]s to the state store.
//!
//! `apply` is a pure function of the current state, the command and the Raft index: no
//! clock, no randomness, no I/O. A rejected command (a failed CAS, an unknown node) is a
//! [`CommandResponse`], the same on every replica, and changes nothing.

pub mod acl;
mod acl_replicate;
mod autopilot;
mod catalog;
mod config_entry;
mod kv;
pub mod prepared_query;
mod restore;
pub mod session;
pub mod txn;
mod txn_undo;

use crate::state::{Store, WriteTxn};
use registry_proto::{Command, CommandResponse};

/// Applies one command at Raft index `index`.
#[tracing::instrument(level = "trace", skip_all, fields(index))]
pub fn apply(store: &Store, index: u64, cmd: &Command) -> CommandResponse {
    if let Command::Restore { state } = cmd {
        return restore::apply(store, index, state);
    }
    if !crate::metrics::enabled() {
        return store.write(index, |txn| apply_txn(txn, cmd));
    }
    let started = std::time::Instant::now();
    let out = store.write(index, |txn| apply_txn(txn, cmd));
    crate::metrics::FSM_APPLY
        .get()
        .record(started.elapsed().as_secs_f64() * 1e3);
    out
}

/// Applies one command inside an open write.
pub fn apply_txn(txn: &mut WriteTxn<'_>, cmd: &Command) -> CommandResponse {
    match cmd {
        Command::Noop => CommandResponse::Ok,
        Command::Register(req) => catalog::register(txn, req),
        Command::Deregister(req) => catalog::deregister(txn, req),
        Command::KvSet { entry } => kv::set(txn, entry),
        Command::KvCas { entry, index } => kv::cas(txn, entry, *index),
        Command::KvDelete { key } => kv::delete(txn, key),
        Command::KvDeleteCas { key, index } => kv::delete_cas(txn, key, *index),
        Command::KvDeleteTree { prefix } => kv::delete_tree(txn, prefix),
        Command::Batch(cmds) => {
            CommandResponse::Batch(cmds.iter().map(|c| apply_txn(txn, c)).collect())
        }
        Command::SessionCreate(sess) => session::create(txn, sess),
        Command::SessionDestroy { id, at_unix_ms } => session::destroy(txn, id, *at_unix_ms),
        Command::KvLock { entry } => session::lock(txn, entry),
        Command::KvUnlock { entry } => session::unlock(txn, entry),
        Command::Txn(ops) => txn::apply(txn, ops),
        Command::Restore { .. } => restore::nested(),
        Command::AutopilotSetConfig { config, cas } => autopilot::set_config(txn, config, *cas),
        Command::ConfigEntrySet { entry, cas } => config_entry::set(txn, entry, *cas),
        Command::ConfigEntryDelete { kind, name, cas } => {
            config_entry::delete(txn, kind, name, *cas)
        }
        Command::Acl(cmd) => acl::apply(txn, cmd),
        Command::PreparedQuerySet(q) => prepared_query::set(txn, q),
        Command::PreparedQueryDelete { id } => prepared_query::delete(txn, id),
        Command::CoordinateBatchUpdate(batch) => prepared_query::coordinates(txn, batch),
    }
}
