//! Session TTL timers, run by the leader.
//!
//! Consul's contract: a session with a TTL is invalidated once it has gone `TTL x 2`
//! (`SessionTTLMultiplier`) without a renew. Renewals are not replicated: only the leader
//! keeps timers, one deadline per session ID in a [`BTreeSet`] ordered by deadline, and one
//! task sleeps until the earliest deadline or until a [`Notify`] says the earliest changed.
//! When a deadline passes, the leader proposes [`Command::SessionDestroy`] carrying its
//! clock, so the invalidation (and its lock-delays) applies identically on every replica.
//!
//! On every leadership gain the new leader waits until its state is current (a linearizable
//! barrier), then arms every TTL session of the state with a full `TTL x 2`: a client gets
//! the whole grace period again after a failover. On leadership loss every timer is dropped.

use crate::query::blocking::RaftStatus;
use crate::query::write::Writer;
use crate::state::{unix_ms_now, Store};
use crate::ServerError;
use parking_lot::Mutex;
use registry_proto::duration::parse_go_duration;
use registry_proto::model::Session;
use registry_proto::Command;
use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{watch, Notify};
use tokio::time::Instant;

/// Consul's `SessionTTLMultiplier`: a session expires after this many TTLs without a renew.
pub const TTL_MULTIPLIER: u32 = 2;

/// Consul's `SessionTTLMax`.
pub const SESSION_TTL_MAX: Duration = Duration::from_secs(24 * 3600);

/// Attempts at proposing one expiry before giving up (Consul's `maxInvalidateAttempts`).
const MAX_ATTEMPTS: u32 = 6;

/// First retry delay of a failed expiry; doubled each attempt (Consul's
/// `invalidateRetryBase`).
const RETRY_BASE: Duration = Duration::from_secs(10);

/// How long to wait before retrying the leadership barrier.
const BARRIER_RETRY: Duration = Duration::from_millis(250);

/// The TTL of a session, when it has a non-zero, parseable one.
pub fn session_ttl(s: &Session) -> Option<Duration> {
    match s.ttl.as_str() {
        "" | "0" | "0s" | "0m" | "0h" => None,
        t => parse_go_duration(t).ok().filter(|d| !d.is_zero()),
    }
}

#[derive(Debug, Default)]
struct State {
    /// Whether this server leads and so keeps timers.
    active: bool,
    by_id: HashMap<String, Instant>,
    queue: BTreeSet<(Instant, String)>,
}

impl State {
    fn remove(&mut self, id: &str) {
        if let Some(at) = self.by_id.remove(id) {
            self.queue.remove(&(at, id.to_string()));
        }
    }

    fn arm(&mut self, id: &str, at: Instant) {
        self.remove(id);
        self.by_id.insert(id.to_string(), at);
        self.queue.insert((at, id.to_string()));
    }
}

/// The leader's session deadlines.
#[derive(Debug, Default)]
pub struct SessionTimers {
    state: Mutex<State>,
    wake: Notify,
}

impl SessionTimers {
    /// No timers; inactive until this server leads.
    pub fn new() -> SessionTimers {
        SessionTimers::default()
    }

    /// Whether timers are kept here (this server leads and has armed the state's sessions).
    pub fn is_active(&self) -> bool {
        self.state.lock().active
    }

    /// (Re)arms the timer of `id` to `now + ttl x 2`. Does nothing (and answers `false`)
    /// when this server does not lead or `ttl` is zero.
    pub fn reset(&self, id: &str, ttl: Duration) -> bool {
        if ttl.is_zero() {
            return false;
        }
        let at = Instant::now() + ttl.saturating_mul(TTL_MULTIPLIER);
        let earliest = {
            let mut st = self.state.lock();
            if !st.active {
                return false;
            }
            st.arm(id, at);
            gauge(st.by_id.len());
            st.queue.first().is_some_and(|(t, i)| *t == at && i == id)
        };
        if earliest {
            self.wake.notify_one();
        }
        true
    }

    /// Drops the timer of `id` (the session was destroyed).
    pub fn clear(&self, id: &str) {
        let mut st = self.state.lock();
        st.remove(id);
        gauge(st.by_id.len());
    }

    /// Number of armed timers.
    pub fn len(&self) -> usize {
        self.state.lock().by_id.len()
    }

    /// Whether no timer is armed.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// When the session `id` expires, if a timer is armed.
    pub fn deadline(&self, id: &str) -> Option<Instant> {
        self.state.lock().by_id.get(id).copied()
    }

    /// Starts keeping timers, arming each given session with a full `ttl x 2`.
    fn activate(&self, sessions: impl IntoIterator<Item = (String, Duration)>) {
        let now = Instant::now();
        {
            let mut st = self.state.lock();
            st.active = true;
            for (id, ttl) in sessions {
                st.arm(&id, now + ttl.saturating_mul(TTL_MULTIPLIER));
            }
            gauge(st.by_id.len());
        }
        self.wake.notify_one();
    }

    /// Stops keeping timers and drops them all.
    fn deactivate(&self) {
        let mut st = self.state.lock();
        *st = State::default();
        gauge(0);
    }

    fn next_deadline(&self) -> Option<Instant> {
        self.state.lock().queue.first().map(|(t, _)| *t)
    }

    /// Removes and returns the sessions whose deadline is at or before `now`.
    fn pop_expired(&self, now: Instant) -> Vec<String> {
        let mut st = self.state.lock();
        let mut out = Vec::new();
        while let Some((at, id)) = st.queue.first().cloned() {
            if at > now {
                break;
            }
            st.queue.remove(&(at, id.clone()));
            st.by_id.remove(&id);
            out.push(id);
        }
        gauge(st.by_id.len());
        out
    }
}

fn gauge(n: usize) {
    metrics::gauge!("consul_session_ttl_active").set(n as f64);
}

/// Runs the session TTL duty for as long as `leader` has senders: while this server leads,
/// expires sessions whose timers fire.
pub async fn run(
    timers: Arc<SessionTimers>,
    store: Arc<Store>,
    writer: Writer,
    raft: Arc<dyn RaftStatus>,
    mut leader: watch::Receiver<bool>,
) {
    loop {
        // Wait for leadership.
        while !*leader.borrow_and_update() {
            if leader.changed().await.is_err() {
                return;
            }
        }
        // Make sure every session committed by earlier leaders is applied before arming.
        loop {
            match raft.ensure_linearizable().await {
                Ok(()) => break,
                Err(e) => {
                    tracing::debug!(error = %e, "session timers: waiting for a current state");
                    tokio::select! {
                        r = leader.changed() => if r.is_err() { return },
                        _ = tokio::time::sleep(BARRIER_RETRY) => {}
                    }
                    if !*leader.borrow() {
                        break;
                    }
                }
            }
        }
        if !*leader.borrow() {
            continue;
        }
        let mut replaced = store.generation_changes();
        replaced.borrow_and_update();
        arm_all(&timers, &store);

        // Lead: fire timers until leadership is lost.
        loop {
            let next = timers.next_deadline();
            tokio::select! {
                r = leader.changed() => {
                    if r.is_err() || !*leader.borrow() {
                        timers.deactivate();
                        if r.is_err() {
                            return;
                        }
                        break;
                    }
                }
                _ = timers.wake.notified() => {}
                r = replaced.changed() => {
                    // The whole state was replaced (a restore, on any server): the
                    // sessions are those of the new state, each with a fresh TTL.
                    timers.deactivate();
                    if r.is_err() {
                        return;
                    }
                    arm_all(&timers, &store);
                }
                _ = sleep_until(next) => {
                    for id in timers.pop_expired(Instant::now()) {
                        if !store.read().sessions.contains_key(&id) {
                            continue;
                        }
                        tokio::spawn(expire(writer.clone(), id));
                    }
                }
            }
        }
    }
}

/// Arms a timer for every session of the store that has a TTL.
fn arm_all(timers: &SessionTimers, store: &Store) {
    let sessions: Vec<(String, Duration)> = store
        .read()
        .sessions
        .values()
        .filter_map(|s| session_ttl(s).map(|ttl| (s.id.clone(), ttl)))
        .collect();
    tracing::debug!(count = sessions.len(), "session timers armed");
    timers.activate(sessions);
}

async fn sleep_until(at: Option<Instant>) {
    match at {
        Some(t) => tokio::time::sleep_until(t).await,
        None => std::future::pending().await,
    }
}

/// Proposes the destroy of an expired session, retrying with backoff; gives up when
/// leadership is lost (the next leader re-arms the timer).
async fn expire(writer: Writer, id: String) {
    for attempt in 0..MAX_ATTEMPTS {
        let cmd = Command::SessionDestroy {
            id: id.clone(),
            at_unix_ms: unix_ms_now(),
        };
        match writer.apply(cmd).await {
            Ok(_) => {
                tracing::debug!(session = %id, "session TTL expired");
                metrics::counter!("consul_session_ttl_invalidate").increment(1);
                return;
            }
            Err(ServerError::NoLeader) => return,
            Err(e) => {
                tracing::error!(session = %id, error = %e, "session invalidation failed");
                tokio::time::sleep(RETRY_BASE.saturating_mul(1 << attempt)).await;
            }
        }
    }
    tracing::error!(session = %id, "maximum revoke attempts reached for session");
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;
    use crate::fsm;
    use crate::query::write::Proposer;
    use futures::future::BoxFuture;
    use registry_proto::command::RegisterRequest;
    use registry_proto::model::{status, HealthCheck, Node};
    use registry_proto::CommandResponse;
    use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

    /// A single-node "Raft": applies commands straight to the store.
    struct Direct {
        store: Arc<Store>,
        next: AtomicU64,
        leader: AtomicBool,
    }

    impl Proposer for Direct {
        fn propose(&self, cmd: Command) -> BoxFuture<'_, Result<CommandResponse, ServerError>> {
            Box::pin(async move {
                if !self.leader.load(Ordering::SeqCst) {
                    return Err(ServerError::NoLeader);
                }
                let i = self.next.fetch_add(1, Ordering::SeqCst);
                Ok(fsm::apply(&self.store, i, &cmd))
            })
        }
    }

    impl RaftStatus for Direct {
        fn is_leader(&self) -> bool {
            self.leader.load(Ordering::SeqCst)
        }
        fn known_leader(&self) -> bool {
            true
        }
        fn last_contact_ms(&self) -> u64 {
            0
        }
        fn leader_addr(&self) -> Option<String> {
            None
        }
        fn peers(&self) -> Vec<String> {
            Vec::new()
        }
        fn ensure_linearizable(&self) -> BoxFuture<'_, Result<(), ServerError>> {
            Box::pin(async { Ok(()) })
        }
    }

    struct Rig {
        store: Arc<Store>,
        direct: Arc<Direct>,
        timers: Arc<SessionTimers>,
        leader: watch::Sender<bool>,
    }

    async fn rig() -> Rig {
        let store = Arc::new(Store::new());
        let direct = Arc::new(Direct {
            store: store.clone(),
            next: AtomicU64::new(1),
            leader: AtomicBool::new(true),
        });
        let writer = Writer::new(direct.clone());
        writer
            .apply(Command::Register(RegisterRequest {
                node: Node {
                    node: "n1".into(),
                    address: "127.0.0.1".into(),
                    ..Default::default()
                },
                skip_node_update: false,
                service: None,
                checks: vec![HealthCheck {
                    node: "n1".into(),
                    check_id: "serfHealth".into(),
                    status: status::PASSING.into(),
                    ..Default::default()
                }],
            }))
            .await
            .unwrap();
        let timers = Arc::new(SessionTimers::new());
        let (tx, rx) = watch::channel(false);
        tokio::spawn(run(
            timers.clone(),
            store.clone(),
            writer,
            direct.clone(),
            rx,
        ));
        Rig {
            store,
            direct,
            timers,
            leader: tx,
        }
    }

    impl Rig {
        async fn create(&self, id: &str, ttl: &str) {
            let s = Session {
                id: id.into(),
                node: "n1".into(),
                ttl: ttl.into(),
                ..Default::default()
            };
            let w = Writer::new(self.direct.clone());
            w.apply(Command::SessionCreate(s.clone())).await.unwrap();
            if let Some(ttl) = session_ttl(&s) {
                self.timers.reset(id, ttl);
            }
        }

        fn exists(&self, id: &str) -> bool {
            self.store.read().sessions.contains_key(id)
        }

        async fn settle(&self) {
            // Let spawned tasks run (time is paused: this advances nothing by itself).
            for _ in 0..20 {
                tokio::task::yield_now().await;
            }
        }
    }

    async fn become_leader(r: &Rig) {
        r.leader.send_replace(true);
        for _ in 0..100 {
            if r.timers.is_active() {
                return;
            }
            tokio::task::yield_now().await;
        }
        panic!("timers never activated");
    }

    #[test]
    fn ttl_parsing() {
        let s = |t: &str| Session {
            ttl: t.into(),
            ..Default::default()
        };
        assert_eq!(session_ttl(&s("")), None);
        assert_eq!(session_ttl(&s("0s")), None);
        assert_eq!(session_ttl(&s("15.0s")), Some(Duration::from_secs(15)));
        assert_eq!(session_ttl(&s("1m")), Some(Duration::from_secs(60)));
    }

    #[tokio::test(start_paused = true)]
    async fn expires_after_twice_the_ttl_unless_renewed() {
        let r = rig().await;
        become_leader(&r).await;
        r.create("a", "10s").await;
        r.create("b", "10s").await;
        r.create("forever", "").await;
        assert_eq!(r.timers.len(), 2);

        // Just before 2 x TTL nothing happens; renew "b" at 15 s.
        tokio::time::sleep(Duration::from_secs(15)).await;
        assert!(r.timers.reset("b", Duration::from_secs(10)));
        tokio::time::sleep(Duration::from_millis(4_900)).await;
        r.settle().await;
        assert!(r.exists("a"));
        // At 20 s "a" expires; "b" lives until 35 s.
        tokio::time::sleep(Duration::from_millis(200)).await;
        r.settle().await;
        assert!(!r.exists("a"));
        assert!(r.exists("b"));
        tokio::time::sleep(Duration::from_secs(14)).await;
        r.settle().await;
        assert!(r.exists("b"));
        tokio::time::sleep(Duration::from_secs(2)).await;
        r.settle().await;
        assert!(!r.exists("b"));
        assert!(r.exists("forever"));
        assert!(r.timers.is_empty());
    }

    #[tokio::test(start_paused = true)]
    async fn timers_rearm_in_full_on_leadership_gain() {
        let r = rig().await;
        // Not leading: sessions exist but nothing is armed and renew does nothing.
        r.create("x", "10s").await;
        assert!(!r.timers.reset("x", Duration::from_secs(10)));
        assert!(r.timers.is_empty());
        tokio::time::sleep(Duration::from_secs(60)).await;
        assert!(r.exists("x"));

        become_leader(&r).await;
        assert_eq!(r.timers.len(), 1);
        tokio::time::sleep(Duration::from_secs(15)).await;
        // Leadership lost and regained at 15 s: the full 20 s start again.
        r.leader.send_replace(false);
        r.settle().await;
        assert!(r.timers.is_empty());
        become_leader(&r).await;
        tokio::time::sleep(Duration::from_secs(19)).await;
        r.settle().await;
        assert!(r.exists("x"));
        tokio::time::sleep(Duration::from_secs(2)).await;
        r.settle().await;
        assert!(!r.exists("x"));
    }

    #[tokio::test(start_paused = true)]
    async fn cleared_and_vanished_sessions_do_not_fire() {
        let r = rig().await;
        become_leader(&r).await;
        r.create("gone", "10s").await;
        r.create("cleared", "10s").await;
        r.timers.clear("cleared");
        // "gone" is destroyed behind the timers' back (e.g. its check failed).
        Writer::new(r.direct.clone())
            .apply(Command::SessionDestroy {
                id: "gone".into(),
                at_unix_ms: unix_ms_now(),
            })
            .await
            .unwrap();
        let applied = r.store.last_index();
        tokio::time::sleep(Duration::from_secs(30)).await;
        r.settle().await;
        assert!(r.exists("cleared"));
        assert_eq!(r.store.last_index(), applied, "no destroy proposed");
    }
}
