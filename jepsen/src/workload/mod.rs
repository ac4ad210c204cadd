//! Workloads: what the clients do, what they read at the end, and how the history is judged.
//! One file per workload.

pub mod bank;
pub mod catalog;
pub mod lock;
pub mod register;
pub mod set;
pub mod watch;

use std::sync::Arc;

use anyhow::{bail, Result};
use serde_json::Value;

use crate::checker::linear::Limits;
use crate::client::{Ctx, Worker};
use crate::history::Op;

/// The workloads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Workload {
    /// Registers with `?consistent` reads, writes and `?cas=`.
    Register,
    /// The same with default reads (leader lease).
    RegisterDefault,
    /// Grow-only set of keys.
    Set,
    /// Session locks.
    Lock,
    /// Catalog registrations and deregistrations.
    Catalog,
    /// Blocking queries across failovers.
    Watch,
    /// `/v1/txn` transfers between accounts.
    Bank,
}

impl Workload {
    /// Every workload, by name.
    pub const ALL: [(&'static str, Workload); 7] = [
        ("register", Workload::Register),
        ("register-default", Workload::RegisterDefault),
        ("set", Workload::Set),
        ("lock", Workload::Lock),
        ("catalog", Workload::Catalog),
        ("watch", Workload::Watch),
        ("bank", Workload::Bank),
    ];

    /// Parses a name.
    pub fn parse(s: &str) -> Result<Workload> {
        match Self::ALL.iter().find(|(n, _)| *n == s) {
            Some((_, w)) => Ok(*w),
            None => bail!(
                "unknown workload {s:?}; one of {}",
                Self::ALL.map(|(n, _)| n).join(", ")
            ),
        }
    }

    /// Prepares the data the clients start from.
    pub async fn setup(self, ctx: &Arc<Ctx>) -> Result<()> {
        if self == Workload::Bank {
            bank::setup(Worker::new(ctx.clone(), 0)?).await?;
        }
        Ok(())
    }

    /// Runs one worker until the time limit.
    pub async fn client(self, w: Worker) {
        match self {
            Workload::Register => register::client(w, true).await,
            Workload::RegisterDefault => register::client(w, false).await,
            Workload::Set => set::client(w).await,
            Workload::Lock => lock::client(w).await,
            Workload::Catalog => catalog::client(w).await,
            Workload::Watch => watch::client(w).await,
            Workload::Bank => bank::client(w).await,
        }
    }

    /// Final reads once the cluster is healed.
    pub async fn final_reads(self, ctx: &Arc<Ctx>) -> Result<()> {
        let w = Worker::new(ctx.clone(), 0)?;
        match self {
            Workload::Set => set::final_read(w).await,
            Workload::Catalog => catalog::final_read(w).await,
            Workload::Bank => bank::final_read(w).await,
            Workload::Watch => {
                let mut tasks = Vec::new();
                for slot in 0..ctx.servers {
                    let w = Worker::new(ctx.clone(), slot)?;
                    tasks.push(tokio::spawn(watch::final_read(w)));
                }
                for t in tasks {
                    let _ = t.await;
                }
            }
            Workload::Register | Workload::RegisterDefault | Workload::Lock => {}
        }
        Ok(())
    }

    /// Judges the history; pushes the history indexes of anomalous operations.
    pub fn check(self, ops: &[Op], limits: Limits, anomalies: &mut Vec<usize>) -> Value {
        match self {
            Workload::Register | Workload::RegisterDefault => {
                register::check(ops, limits, anomalies)
            }
            Workload::Set => set::check(ops, anomalies),
            Workload::Lock => lock::check(ops, anomalies),
            Workload::Catalog => catalog::check(ops, anomalies),
            Workload::Watch => watch::check(ops, anomalies),
            Workload::Bank => bank::check(ops, anomalies),
        }
    }

    /// Operations that count as a successful write for the unavailability figures.
    pub fn is_write(f: &str) -> bool {
        matches!(
            f,
            "write" | "cas" | "add" | "acquire" | "transfer" | "register" | "deregister"
        )
    }
}
