//! Speculative replication: the leader sends new entries to caught-up followers while it is
//! still syncing them to its own log.
//!
//! openraft 0.9 replicates an entry only after the leader's own log has flushed it, so a
//! lone write pays for two syncs one after the other: the leader's, then a follower's. Raft
//! allows the leader to write its log in parallel with replicating (Raft thesis, §10.2.1);
//! a leader still counts itself towards a quorum only once its own write is durable, which
//! openraft keeps doing. This module overlaps the two:
//!
//! 1. When the log store appends entries of this node's own term, [`Speculator::offer`]
//!    posts them at once, as an ordinary AppendEntries from the leader, to every follower
//!    known to hold the leader's log exactly up to the entry before them. The store then
//!    syncs its own copy.
//! 2. When openraft's replication task sends the same entries (same vote, same previous log
//!    ID, same last log ID), [`Speculator::claim`] hands it the speculative request, and the
//!    follower's answer to that request (if it was `Success`) becomes the answer to
//!    openraft's. Any other outcome (a conflict, a higher vote, an error, no answer in time)
//!    makes the replication task send its request as usual.
//!
//! Safety: a speculative request is a valid AppendEntries of the current leader: its
//! entries are in the leader's log (written before they are offered) with the leader's
//! vote, so the follower treats it like any other. A `Success` means the follower stored the
//! entries durably under that vote, which is exactly what openraft's own request would have
//! established; openraft still commits only with its own durable copy counted. The one
//! difference is that the follower learns the leader's newest commit index with the next
//! request (openraft sends one as soon as the commit index moves), not with this one.
//! Answers older than [`MAX_AGE`] are not used, so the time a follower last heard from the
//! leader is never overstated by more than that (the leader lease is 900 ms).

use super::types::{LogId, NodeId, RegistryNode, TypeConfig, Vote};
use openraft::error::RaftError;
use openraft::raft::{AppendEntriesRequest, AppendEntriesResponse};
use parking_lot::Mutex;
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Weak};
use std::time::{Duration, Instant};
use tokio::sync::watch;

/// A speculative answer is used only if openraft asks for it within this time of its send.
pub(super) const MAX_AGE: Duration = Duration::from_millis(20);
/// Appends larger than this are not sent speculatively: under load openraft's own
/// replication keeps every stream busy, and the follower would only see them twice.
pub(super) const MAX_BYTES: usize = 64 * 1024;
/// How long a commit notice waits for a request that would carry it anyway.
pub(super) const NOTICE_DELAY: Duration = Duration::from_millis(2);
/// How long a speculative request may take.
const TIMEOUT: Duration = Duration::from_secs(1);

/// Whether the follower answered a speculative request with `Success` (anything else makes
/// the replication task send its own request).
type Outcome = bool;

/// The speculative sends of one leader; shared by its log store and its Raft network.
#[derive(Debug)]
pub struct Speculator {
    id: NodeId,
    client: reqwest::Client,
    content_type: &'static str,
    peers: Mutex<HashMap<NodeId, Peer>>,
    /// Speculative requests sent, and answers used.
    sent: AtomicU64,
    used: AtomicU64,
}

#[derive(Debug)]
struct Peer {
    /// The follower's AppendEntries URL.
    url: reqwest::Url,
    /// Live Raft network connections to it: when none is left, it is no longer replicated to.
    conns: usize,
    /// The follower is known to hold the leader's log up to this log ID, under this vote.
    matched: Option<(Vote, LogId)>,
    /// The last speculative request sent to it.
    spec: Option<Arc<Spec>>,
    /// The highest commit index sent to it (or deferred, in `notice`), under `matched`'s vote.
    commit_sent: Option<LogId>,
    /// A deferred commit notice, sent unless a request carrying its commit index goes first.
    notice: Option<Notice>,
    /// An AppendEntries too large for openraft's per-request time, sent on its own.
    long: Option<Arc<LongSend>>,
}

/// An AppendEntries that may take longer than openraft waits for one (a snapshot restore
/// of hundreds of MB is a single entry): it goes on after openraft gave up waiting, and
/// openraft's next attempt at the same entries waits for it instead of starting over.
#[derive(Debug)]
pub(super) struct LongSend {
    vote: Vote,
    prev: Option<LogId>,
    last: LogId,
    /// The encoded answer (a `Result<AppendEntriesResponse, RaftError>`), or why none came.
    outcome: watch::Receiver<Option<Result<bytes::Bytes, String>>>,
}

impl LongSend {
    /// The follower's encoded answer, once it came.
    pub(super) async fn answer(&self) -> Result<bytes::Bytes, String> {
        let mut rx = self.outcome.clone();
        let answer = match rx.wait_for(Option::is_some).await {
            Ok(v) => v.clone().unwrap_or_else(|| Err("no answer".into())),
            Err(_) => Err("abandoned".into()),
        };
        answer
    }

    fn failed(&self) -> bool {
        matches!(*self.outcome.borrow(), Some(Err(_)))
    }
}

/// An empty AppendEntries whose only news is the leader's commit index.
#[derive(Debug)]
struct Notice {
    commit: LogId,
    body: bytes::Bytes,
    /// Whether a task is waiting to send it.
    armed: bool,
}

impl Peer {
    /// A request carrying `commit` is being sent: a deferred notice of no more is dropped.
    fn note_commit_sent(&mut self, commit: Option<LogId>) {
        let Some(c) = commit else {
            return;
        };
        if self.notice.as_ref().is_some_and(|n| n.commit <= c) {
            self.notice = None;
        }
        if self.commit_sent.is_none_or(|s| s < c) {
            self.commit_sent = Some(c);
        }
    }
}

/// One speculative AppendEntries.
#[derive(Debug)]
pub(super) struct Spec {
    vote: Vote,
    prev: LogId,
    last: LogId,
    sent: Instant,
    outcome: watch::Receiver<Option<Outcome>>,
}

impl Spec {
    fn done(&self) -> bool {
        self.outcome.borrow().is_some()
    }

    /// The follower's answer, `None` unless it was `Success`.
    pub(super) async fn outcome(&self) -> Option<AppendEntriesResponse<NodeId>> {
        let mut rx = self.outcome.clone();
        let ok = matches!(
            rx.wait_for(Option::is_some).await.as_deref(),
            Ok(Some(true))
        );
        ok.then_some(AppendEntriesResponse::Success)
    }
}

/// Keeps a follower known to the [`Speculator`] while a connection to it lives.
#[derive(Debug)]
pub struct Registration {
    spec: Weak<Speculator>,
    target: NodeId,
}

impl Drop for Registration {
    fn drop(&mut self) {
        if let Some(spec) = self.spec.upgrade() {
            let mut peers = spec.peers.lock();
            if let Some(p) = peers.get_mut(&self.target) {
                p.conns -= 1;
                if p.conns == 0 {
                    peers.remove(&self.target);
                }
            }
        }
    }
}

/// The entries of one append, as the log store encoded them.
pub(super) struct Offer<'a> {
    /// The log ID of the entry before the first.
    pub prev: LogId,
    /// The log ID of the last entry.
    pub last: LogId,
    /// Their postcard encodings, in order.
    pub entries: Vec<&'a [u8]>,
    /// The highest commit index the store has seen.
    pub leader_commit: Option<LogId>,
}

impl Speculator {
    /// The speculator of node `id`, posting with `client`.
    pub fn new(id: NodeId, client: reqwest::Client, content_type: &'static str) -> Arc<Self> {
        Arc::new(Speculator {
            id,
            client,
            content_type,
            peers: Mutex::new(HashMap::new()),
            sent: AtomicU64::new(0),
            used: AtomicU64::new(0),
        })
    }

    /// Notes a connection to `target` (its AppendEntries endpoint is `url`) for as long as
    /// the returned registration lives.
    pub fn register(self: &Arc<Self>, target: NodeId, url: reqwest::Url) -> Registration {
        let mut peers = self.peers.lock();
        let p = peers.entry(target).or_insert_with(|| Peer {
            url: url.clone(),
            conns: 0,
            matched: None,
            spec: None,
            commit_sent: None,
            notice: None,
            long: None,
        });
        p.conns += 1;
        p.url = url;
        Registration {
            spec: Arc::downgrade(self),
            target,
        }
    }

    /// Whether entries with this last log ID are this node's own, appended as leader.
    pub(super) fn is_own(&self, last: &LogId) -> bool {
        last.leader_id.node_id == self.id
    }

    /// Sends `offer` to every follower that holds the leader's log exactly up to
    /// `offer.prev` and has no speculative request outstanding; returns whether it sent it to
    /// any. Must run in a Tokio runtime.
    pub(super) fn offer(&self, offer: Offer<'_>) -> bool {
        let vote = Vote::new_committed(offer.last.leader_id.term, offer.last.leader_id.node_id);
        let mut peers = self.peers.lock();
        let mut body: Option<bytes::Bytes> = None;
        for p in peers.values_mut() {
            if p.matched != Some((vote, offer.prev)) || p.spec.as_ref().is_some_and(|s| !s.done()) {
                continue;
            }
            let body = match &body {
                Some(b) => b.clone(),
                None => match encode_request(&vote, &offer) {
                    Ok(b) => body.insert(bytes::Bytes::from(b)).clone(),
                    Err(e) => {
                        tracing::warn!(error = %e, "encoding a speculative append");
                        return false;
                    }
                },
            };
            let (tx, rx) = watch::channel(None);
            p.spec = Some(Arc::new(Spec {
                vote,
                prev: offer.prev,
                last: offer.last,
                sent: Instant::now(),
                outcome: rx,
            }));
            p.note_commit_sent(offer.leader_commit);
            let req = self.post(p.url.clone(), TIMEOUT, body);
            self.sent.fetch_add(1, Ordering::Relaxed);
            metrics::counter!("registry_raft_speculative_appends_sent").increment(1);
            tokio::spawn(async move {
                let _ = tx.send(Some(send(req).await));
            });
        }
        body.is_some()
    }

    /// The speculative request to `target` that sent exactly what `req` sends, if one was
    /// sent within [`MAX_AGE`]; it is handed out once.
    pub(super) fn claim(
        &self,
        target: NodeId,
        req: &AppendEntriesRequest<TypeConfig>,
    ) -> Option<Arc<Spec>> {
        let last = req.entries.last()?.log_id;
        let mut peers = self.peers.lock();
        let p = peers.get_mut(&target)?;
        let s = p.spec.as_ref()?;
        if s.vote != req.vote || Some(s.prev) != req.prev_log_id || s.last != last {
            return None;
        }
        let s = p.spec.take()?;
        (s.sent.elapsed() < MAX_AGE).then_some(s)
    }

    /// The long send to `target` of exactly `req`'s entries: the one already under way (or
    /// answered), else a new one posting `body`. Must run in a Tokio runtime.
    pub(super) fn long_send(
        &self,
        target: NodeId,
        req: &AppendEntriesRequest<TypeConfig>,
        body: Vec<u8>,
    ) -> Option<Arc<LongSend>> {
        let last = req.entries.last()?.log_id;
        let mut peers = self.peers.lock();
        let p = peers.get_mut(&target)?;
        if let Some(l) = &p.long {
            if l.vote == req.vote && l.prev == req.prev_log_id && l.last == last && !l.failed() {
                return Some(Arc::clone(l));
            }
        }
        let (tx, rx) = watch::channel(None);
        let l = Arc::new(LongSend {
            vote: req.vote,
            prev: req.prev_log_id,
            last,
            outcome: rx,
        });
        // Generous: ~20 MB/s at the least, and never under a minute.
        let secs = 60 + body.len() as u64 / (20 * 1024 * 1024);
        let post = self.post(p.url.clone(), Duration::from_secs(secs), body);
        tracing::info!(target, last = %last, "sending a large AppendEntries on its own");
        tokio::spawn(async move {
            let res = match post.send().await {
                Ok(resp) if resp.status() == reqwest::StatusCode::OK => {
                    resp.bytes().await.map_err(|e| e.to_string())
                }
                Ok(resp) => Err(format!("HTTP {}", resp.status())),
                Err(e) => Err(e.to_string()),
            };
            let _ = tx.send(Some(res));
        });
        p.long = Some(Arc::clone(&l));
        Some(l)
    }

    /// Forgets the long send to `target` once its answer has been used.
    pub(super) fn end_long_send(&self, target: NodeId, send: &Arc<LongSend>) {
        if let Some(p) = self.peers.lock().get_mut(&target) {
            if p.long.as_ref().is_some_and(|l| Arc::ptr_eq(l, send)) {
                p.long = None;
            }
        }
    }

    /// Notes that a speculative answer was used.
    pub(super) fn note_used(&self) {
        self.used.fetch_add(1, Ordering::Relaxed);
        metrics::counter!("registry_raft_speculative_appends_used").increment(1);
    }

    /// Speculative requests sent so far, and how many of their answers were used.
    pub fn stats(&self) -> (u64, u64) {
        (
            self.sent.load(Ordering::Relaxed),
            self.used.load(Ordering::Relaxed),
        )
    }

    /// Records what the follower `target` answered to `req` (openraft's own request, or a
    /// claimed speculative one): whether it now holds the leader's log and up to where.
    pub(super) fn observe(
        &self,
        target: NodeId,
        req: &AppendEntriesRequest<TypeConfig>,
        resp: Option<&AppendEntriesResponse<NodeId>>,
    ) {
        let upto = match resp {
            Some(AppendEntriesResponse::Success) => {
                req.entries.last().map(|e| e.log_id).or(req.prev_log_id)
            }
            Some(AppendEntriesResponse::PartialSuccess(l)) => *l,
            _ => None,
        };
        let mut peers = self.peers.lock();
        let Some(p) = peers.get_mut(&target) else {
            return;
        };
        if p.matched.is_some_and(|(v, _)| v != req.vote) {
            p.commit_sent = None;
            p.notice = None;
        }
        p.note_commit_sent(req.leader_commit);
        p.matched = match (upto, p.matched) {
            (None, _) => None,
            (Some(u), Some((v, m))) if v == req.vote && m.index >= u.index => Some((v, m)),
            (Some(u), _) => Some((req.vote, u)),
        };
    }

    /// Takes over a heartbeat that only tells `target` a higher commit index, when the
    /// follower is known to hold the leader's log up to the heartbeat's previous log ID:
    /// it is sent after [`NOTICE_DELAY`] unless a request carrying that commit index (the next
    /// entries, typically) goes first. Returns whether it was taken over; openraft's
    /// replication task may then go on at once (the heartbeat could not advance what openraft
    /// knows of the follower: its previous log ID is already matched).
    pub(super) fn defer_commit_notice(
        self: &Arc<Self>,
        target: NodeId,
        req: &AppendEntriesRequest<TypeConfig>,
    ) -> bool {
        let (true, Some(prev), Some(commit)) =
            (req.entries.is_empty(), req.prev_log_id, req.leader_commit)
        else {
            return false;
        };
        let mut peers = self.peers.lock();
        let Some(p) = peers.get_mut(&target) else {
            return false;
        };
        let caught_up = p.matched.is_some_and(|(v, m)| v == req.vote && m == prev);
        if !caught_up || p.commit_sent.is_some_and(|c| c >= commit) {
            return false;
        }
        let Ok(body) = postcard::to_stdvec(req) else {
            return false;
        };
        p.commit_sent = Some(commit);
        let armed = p.notice.as_ref().is_some_and(|n| n.armed);
        p.notice = Some(Notice {
            commit,
            body: body.into(),
            armed: true,
        });
        if !armed {
            let this = Arc::downgrade(self);
            tokio::spawn(async move {
                tokio::time::sleep(NOTICE_DELAY).await;
                if let Some(this) = this.upgrade() {
                    this.send_notice(target);
                }
            });
        }
        true
    }

    /// Sends every deferred commit notice now (a follower is about to wait for the leader's
    /// commit index, to serve a read).
    pub(crate) fn flush_notices(self: &Arc<Self>) {
        let due: Vec<_> = self
            .peers
            .lock()
            .iter_mut()
            .filter_map(|(t, p)| Some((*t, p.url.clone(), p.notice.take()?.body)))
            .collect();
        for (target, url, body) in due {
            self.post_notice(target, url, body);
        }
    }

    /// Sends the deferred commit notice of `target`, if it is still pending.
    fn send_notice(self: &Arc<Self>, target: NodeId) {
        let due = self
            .peers
            .lock()
            .get_mut(&target)
            .and_then(|p| Some((p.url.clone(), p.notice.take()?.body)));
        if let Some((url, body)) = due {
            self.post_notice(target, url, body);
        }
    }

    fn post_notice(self: &Arc<Self>, target: NodeId, url: reqwest::Url, body: bytes::Bytes) {
        let req = self.post(url, TIMEOUT, body);
        let this = Arc::downgrade(self);
        tokio::spawn(async move {
            if !send(req).await {
                // Unknown state: openraft's own heartbeats take over for this follower.
                if let Some(this) = this.upgrade() {
                    if let Some(p) = this.peers.lock().get_mut(&target) {
                        p.matched = None;
                    }
                }
            }
        });
    }

    /// A postcard POST of `body` to `url`.
    fn post(
        &self,
        url: reqwest::Url,
        timeout: Duration,
        body: impl Into<reqwest::Body>,
    ) -> reqwest::RequestBuilder {
        self.client
            .post(url)
            .header(reqwest::header::CONTENT_TYPE, self.content_type)
            .timeout(timeout)
            .body(body)
    }
}

/// Posts a speculative request and reads the answer: whether it was `Success`.
async fn send(req: reqwest::RequestBuilder) -> Outcome {
    let Ok(resp) = req.send().await else {
        return false;
    };
    if resp.status() != reqwest::StatusCode::OK {
        return false;
    }
    let Ok(bytes) = resp.bytes().await else {
        return false;
    };
    let res: Result<Result<AppendEntriesResponse<NodeId>, RaftError<NodeId>>, _> =
        postcard::from_bytes(&bytes);
    matches!(res, Ok(Ok(AppendEntriesResponse::Success)))
}

/// The postcard encoding of the `AppendEntriesRequest` carrying `offer`, built from the
/// entries' encodings without decoding them (postcard encodes a struct as its fields in
/// order, and a sequence as its length followed by its elements).
fn encode_request(vote: &Vote, offer: &Offer<'_>) -> Result<Vec<u8>, postcard::Error> {
    let size: usize = offer.entries.iter().map(|e| e.len()).sum();
    let mut out = Vec::with_capacity(size + 64);
    out = postcard::to_extend(vote, out)?;
    out = postcard::to_extend(&Some(offer.prev), out)?;
    out = postcard::to_extend(&(offer.entries.len() as u64), out)?;
    for e in &offer.entries {
        out.extend_from_slice(e);
    }
    postcard::to_extend(&offer.leader_commit, out)
}

/// The URL of `path` on `node`'s server RPC address.
pub fn rpc_url(node: &RegistryNode, path: &str) -> Result<reqwest::Url, crate::ServerError> {
    let url = format!("{}://{}{path}", crate::tls::rpc::scheme(), node.raft_addr);
    reqwest::Url::parse(&url)
        .map_err(|e| crate::ServerError::Raft(format!("bad address {url}: {e}")))
}

#[cfg(test)]
mod tests {
    use super::*;
    use openraft::{CommittedLeaderId, EntryPayload};

    fn log_id(term: u64, node: NodeId, index: u64) -> LogId {
        LogId::new(CommittedLeaderId::new(term, node), index)
    }

    #[test]
    fn a_request_built_from_encoded_entries_decodes_as_the_request() {
        let entries: Vec<super::super::types::Entry> = (5..8)
            .map(|i| openraft::Entry {
                log_id: log_id(3, 1, i),
                payload: EntryPayload::Normal(vec![registry_proto::Command::KvSet {
                    entry: Default::default(),
                }]),
            })
            .collect();
        let encoded: Vec<Vec<u8>> = entries
            .iter()
            .map(|e| postcard::to_stdvec(e).unwrap())
            .collect();
        let offer = Offer {
            prev: log_id(2, 1, 4),
            last: log_id(3, 1, 7),
            entries: encoded.iter().map(Vec::as_slice).collect(),
            leader_commit: Some(log_id(2, 1, 4)),
        };
        let vote = Vote::new_committed(3, 1);
        let body = encode_request(&vote, &offer).unwrap();
        let want = AppendEntriesRequest::<TypeConfig> {
            vote,
            prev_log_id: Some(offer.prev),
            entries,
            leader_commit: offer.leader_commit,
        };
        assert_eq!(body, postcard::to_stdvec(&want).unwrap());
    }
}
