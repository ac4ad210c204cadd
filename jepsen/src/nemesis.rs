//! Nemeses: the faults, each usable alone or mixed (`all`). A nemesis alternates a quiet
//! period and a fault of a few seconds, then heals. Every start and stop goes to the fault
//! log with its time on the history's clock.
//!
//! * `partition`: one of the four topologies below, picked at random each time;
//!   `partition-halves` (two random halves), `partition-leader` (the leader alone),
//!   `partition-ring` (each server hears only its two neighbours on a random ring, so every
//!   server sees a majority but no two see the same one), `partition-bridge` (two halves that
//!   only one server in the middle hears).
//! * `kill`: SIGKILL of the leader or of one or two random servers, restarted on heal.
//! * `pause`: SIGSTOP of the leader, SIGCONT on heal.
//! * `clock`: restarts a random server with its wall clock 1 to 5 s ahead or behind through
//!   libfaketime (Debian's `faketime`), back to the real clock on heal. The monotonic clock,
//!   which Raft's timers and the leader lease use, is left alone; the wall clock drives
//!   lock-delay and session timestamps.
//! * `clock-rate`: restarts the leader or a random server with *both* its clocks, monotonic
//!   included, running at 0.5x to 2x (libfaketime's `FAKETIME="+0 xR"`), back to normal on
//!   heal. The leader lease assumes the servers' monotonic clocks advance at nearly the same
//!   rate: its 900 ms against the followers' 2 s refusal to vote tolerates a leader whose
//!   clock runs up to about 2.2 times slow, and this fault stays inside that bound.
//! * `lose-unsynced`: a power loss. Kills the leader, a minority or (`lose-unsynced-all`)
//!   every server at once and drops the file data each wrote without syncing it
//!   ([`crate::lazyfs`]); they restart on heal. Whatever the cluster acknowledged must have
//!   been synced on a quorum first.
//! * `slow-disk`: every write and sync on the leader's disk, or a random server's, takes 20 to
//!   200 ms more until heal.

use std::collections::BTreeSet;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::{bail, Result};
use rand::seq::SliceRandom;
use serde::Serialize;

use crate::db::Db;
use crate::history::Recorder;
use crate::netns;

/// Where Debian's libfaketime lives.
pub const LIBFAKETIME: &str = "/usr/lib/x86_64-linux-gnu/faketime/libfaketime.so.1";

/// A fault kind.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Fault {
    PartitionHalves,
    PartitionLeader,
    PartitionRing,
    PartitionBridge,
    Kill,
    Pause,
    Clock,
    ClockRate,
    LoseUnsynced,
    LoseUnsyncedAll,
    SlowDisk,
}

/// The nemesis names and the faults each may inject.
pub fn parse(name: &str) -> Result<Vec<Fault>> {
    use Fault::*;
    let partitions = vec![
        PartitionHalves,
        PartitionLeader,
        PartitionRing,
        PartitionBridge,
    ];
    Ok(match name {
        "none" => vec![],
        "partition" => partitions,
        "partition-halves" => vec![PartitionHalves],
        "partition-leader" => vec![PartitionLeader],
        "partition-ring" => vec![PartitionRing],
        "partition-bridge" => vec![PartitionBridge],
        "kill" => vec![Kill],
        "pause" => vec![Pause],
        "clock" => vec![Clock],
        "clock-rate" => vec![ClockRate],
        "lose-unsynced" => vec![LoseUnsynced, LoseUnsyncedAll],
        "lose-unsynced-all" => vec![LoseUnsyncedAll],
        "slow-disk" => vec![SlowDisk],
        "all" => {
            let mut all = partitions;
            all.extend([Kill, Pause]);
            if clock_available() {
                all.extend([Clock, ClockRate]);
            }
            if fuse_available() {
                all.extend([LoseUnsynced, LoseUnsyncedAll, SlowDisk]);
            }
            all
        }
        _ => bail!(
            "unknown nemesis {name:?}; one of none, partition, partition-halves, partition-leader, \
             partition-ring, partition-bridge, kill, pause, clock, clock-rate, lose-unsynced, lose-unsynced-all, slow-disk, all"
        ),
    })
}

/// Whether the clock nemesis can run here.
pub fn clock_available() -> bool {
    std::path::Path::new(LIBFAKETIME).exists()
}

/// Whether the disk faults can run here (they mount FUSE file systems).
pub fn fuse_available() -> bool {
    std::path::Path::new("/dev/fuse").exists()
}

/// Whether any of `faults` needs the lazy file systems.
pub fn needs_lazy_disks(faults: &[Fault]) -> bool {
    faults.iter().any(|f| {
        matches!(
            f,
            Fault::LoseUnsynced | Fault::LoseUnsyncedAll | Fault::SlowDisk
        )
    })
}

/// One line of the fault log.
#[derive(Debug, Clone, Serialize)]
pub struct FaultEvent {
    /// ns on the history's clock.
    pub time: u64,
    /// The fault.
    pub fault: Fault,
    /// `start` or `stop`.
    pub phase: &'static str,
    /// What exactly was done.
    pub detail: String,
}

/// Runs the nemesis until `deadline`, then heals.
pub struct Nemesis {
    /// The faults to pick from.
    pub faults: Vec<Fault>,
    /// The cluster.
    pub db: Arc<Db>,
    /// The history (for its clock).
    pub rec: Arc<Recorder>,
    /// Quiet time between faults and length of each fault.
    pub interval: Duration,
    /// The log.
    pub log: Arc<Mutex<Vec<FaultEvent>>>,
}

impl Nemesis {
    fn note(&self, fault: Fault, phase: &'static str, detail: String) {
        let ev = FaultEvent {
            time: self.rec.now(),
            fault,
            phase,
            detail,
        };
        println!(
            "[{:>7.2}s] nemesis {phase} {:?}: {}",
            ev.time as f64 / 1e9,
            fault,
            ev.detail
        );
        match self.log.lock() {
            Ok(mut l) => l.push(ev),
            Err(p) => p.into_inner().push(ev),
        }
    }

    /// Alternates quiet periods and faults until `deadline`.
    pub async fn run(&self, http: &reqwest::Client, deadline: tokio::time::Instant) -> Result<()> {
        if self.faults.is_empty() {
            return Ok(());
        }
        loop {
            tokio::time::sleep(self.interval).await;
            if tokio::time::Instant::now() + self.interval > deadline {
                return Ok(());
            }
            let Some(&fault) = self.faults.choose(&mut rand::thread_rng()) else {
                return Ok(());
            };
            let detail = self.start(fault, http).await?;
            self.note(fault, "start", detail);
            tokio::time::sleep(self.interval).await;
            self.heal()?;
            self.note(fault, "stop", "healed".into());
        }
    }

    async fn start(&self, fault: Fault, http: &reqwest::Client) -> Result<String> {
        let n = self.db.len();
        let mut nodes: Vec<usize> = (1..=n).collect();
        nodes.shuffle(&mut rand::thread_rng());
        let leader = self.db.leader(http).await;
        match fault {
            Fault::PartitionHalves => {
                let (a, b) = nodes.split_at(n / 2);
                self.cut(&[a.to_vec(), b.to_vec()])
            }
            Fault::PartitionLeader => {
                let l = leader.unwrap_or(nodes[0]);
                let rest: Vec<usize> = (1..=n).filter(|i| *i != l).collect();
                self.cut(&[vec![l], rest])
            }
            Fault::PartitionRing => {
                let mut desc = Vec::new();
                for (pos, &i) in nodes.iter().enumerate() {
                    let hears: BTreeSet<usize> =
                        [n - 1, 0, 1].iter().map(|d| nodes[(pos + d) % n]).collect();
                    let deaf: BTreeSet<usize> = (1..=n).filter(|j| !hears.contains(j)).collect();
                    netns::block(i, &deaf)?;
                    desc.push(format!("n{i} hears {hears:?}"));
                }
                Ok(format!("ring {}", desc.join("; ")))
            }
            Fault::PartitionBridge => {
                let a: Vec<usize> = nodes[..n / 2].to_vec();
                let b: Vec<usize> = nodes[n / 2 + 1..].to_vec();
                let bridge = nodes[n / 2];
                self.cut(&[a, b])?;
                Ok(format!("bridge n{bridge} between the halves"))
            }
            Fault::Kill => {
                let victims: Vec<usize> = match leader {
                    Some(l) if rand::random::<bool>() => vec![l],
                    _ => nodes[..1 + rand::random::<usize>() % 2].to_vec(),
                };
                for &v in &victims {
                    self.db.kill(v)?;
                }
                Ok(format!("killed {victims:?} (leader {leader:?})"))
            }
            Fault::Pause => {
                let l = leader.unwrap_or(nodes[0]);
                self.db.pause(l)?;
                Ok(format!("paused n{l} (leader {leader:?})"))
            }
            Fault::Clock => {
                let v = nodes[0];
                let mag = 1 + rand::random::<i64>().rem_euclid(5);
                let skew = if rand::random::<bool>() { mag } else { -mag };
                self.db.kill(v)?;
                self.db.set_env(
                    v,
                    vec![
                        ("LD_PRELOAD".into(), LIBFAKETIME.into()),
                        ("FAKETIME".into(), format!("{skew:+}")),
                        ("FAKETIME_DONT_FAKE_MONOTONIC".into(), "1".into()),
                    ],
                );
                self.db.start(v)?;
                Ok(format!("restarted n{v} with its wall clock {skew:+} s off"))
            }
            Fault::ClockRate => {
                let v = match leader {
                    Some(l) if rand::random::<bool>() => l,
                    _ => nodes[0],
                };
                let rate = *[0.5, 0.75, 1.5, 2.0]
                    .choose(&mut rand::thread_rng())
                    .unwrap_or(&0.5);
                self.db.kill(v)?;
                self.db.set_env(
                    v,
                    vec![
                        ("LD_PRELOAD".into(), LIBFAKETIME.into()),
                        ("FAKETIME".into(), format!("+0 x{rate}")),
                    ],
                );
                self.db.start(v)?;
                Ok(format!(
                    "restarted n{v} with its clocks at {rate}x (leader {leader:?})"
                ))
            }
            Fault::LoseUnsynced | Fault::LoseUnsyncedAll => {
                let victims: Vec<usize> = match fault {
                    Fault::LoseUnsyncedAll => (1..=n).collect(),
                    _ if rand::random::<bool>() => vec![leader.unwrap_or(nodes[0])],
                    _ => nodes[..(n - 1) / 2].to_vec(),
                };
                for &v in &victims {
                    self.db.kill(v)?;
                }
                let lost: Vec<String> = victims
                    .iter()
                    .map(|&v| {
                        let files: Vec<String> = self
                            .db
                            .lose_unsynced(v)
                            .into_iter()
                            .map(|(f, b)| format!("{f} {b} B"))
                            .collect();
                        format!("n{v} lost [{}]", files.join(", "))
                    })
                    .collect();
                Ok(format!(
                    "power loss of {victims:?} (leader {leader:?}): {}",
                    lost.join(", ")
                ))
            }
            Fault::SlowDisk => {
                let v = match leader {
                    Some(l) if rand::random::<bool>() => l,
                    _ => nodes[0],
                };
                let ms = 20 + rand::random::<u64>() % 181;
                self.db.set_disk_delay(v, Duration::from_millis(ms));
                Ok(format!(
                    "n{v}'s disk {ms} ms slower per write and sync (leader {leader:?})"
                ))
            }
        }
    }

    /// Cuts the network between groups (each group only hears itself and the servers in no
    /// group).
    fn cut(&self, groups: &[Vec<usize>]) -> Result<String> {
        for (gi, g) in groups.iter().enumerate() {
            let others: BTreeSet<usize> = groups
                .iter()
                .enumerate()
                .filter(|(gj, _)| *gj != gi)
                .flat_map(|(_, o)| o.iter().copied())
                .collect();
            for &i in g {
                netns::block(i, &others)?;
            }
        }
        Ok(format!("groups {groups:?}"))
    }

    /// Heals everything: network, paused and killed servers, clocks.
    pub fn heal(&self) -> Result<()> {
        netns::heal(self.db.len())?;
        self.db.resume_all()?;
        for i in 1..=self.db.len() {
            self.db.set_disk_delay(i, Duration::ZERO);
            // A skewed server goes back to the real clock with a restart.
            if self.db.has_env(i) {
                self.db.kill(i)?;
                self.db.set_env(i, Vec::new());
            }
            self.db.start(i)?;
        }
        Ok(())
    }
}
