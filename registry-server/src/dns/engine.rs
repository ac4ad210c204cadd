//! The answer path shared by the UDP and TCP listeners: parse, look the question up in the
//! worker's cache, check it is still current, render.
//!
//! Each UDP worker owns a [`Worker`] and so its own cache: no lock on the hot path. A
//! cached answer remembers the catalog *generation* it was checked at; the generation is
//! bumped by a task that watches the store's node, service and check tables. While the
//! generation is unchanged an answer is sent without touching the store at all; after a
//! change it is checked once against the store indexes it was built from (a read lock and
//! two map lookups) and rebuilt only when those moved.

use super::answer::{self, Action, Answer, Dep, Settings};
use super::render::{render_reject, RenderOpts, Renderer, Transport};
use super::wire::{self, parse_request, rcode, ParseError, Request};
use crate::state::Store;
use std::collections::HashMap;
use std::hash::BuildHasherDefault;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;

/// State shared by every worker and task of one DNS server.
#[derive(Debug)]
pub struct Shared {
    /// Configuration.
    pub settings: Settings,
    /// The catalog.
    pub store: Arc<Store>,
    /// Catalog generation: bumped after every catalog change.
    pub gen: AtomicU64,
    /// Set to stop the listeners.
    pub stop: AtomicBool,
    /// Queries being forwarded to recursors right now.
    pub recursing: std::sync::atomic::AtomicUsize,
    /// With ACLs enabled: the catalog as the agent's default token sees it.
    pub acl_view: Option<crate::acl::DnsView>,
    /// Where questions about other datacenters go (none: NXDOMAIN).
    pub remote: std::sync::OnceLock<Arc<dyn RemoteDns>>,
}

/// Answers DNS questions about another datacenter (that datacenter's servers).
pub trait RemoteDns: Send + Sync + std::fmt::Debug + 'static {
    /// The reply to `packet` from datacenter `dc`; `Err(())`: the datacenter cannot be
    /// reached (answered NXDOMAIN).
    fn answer(
        &self,
        dc: String,
        packet: Vec<u8>,
        tcp: bool,
    ) -> futures::future::BoxFuture<'static, Result<Vec<u8>, ()>>;
}

impl Shared {
    /// Asks the datacenter of `req` for its answer to `packet`: the reply, or the reply
    /// with `rcode` (no path to that datacenter).
    pub async fn answer_remote(
        &self,
        dc: String,
        req: &Request,
        packet: Vec<u8>,
        transport: Transport,
    ) -> Vec<u8> {
        let Some(remote) = self.remote.get() else {
            return rcode_reply(self, req, transport, rcode::NXDOMAIN);
        };
        match remote
            .answer(dc, packet, matches!(transport, Transport::Tcp))
            .await
        {
            Ok(reply) => reply,
            Err(()) => rcode_reply(self, req, transport, rcode::NXDOMAIN),
        }
    }
}

/// Forwarded queries in flight at most; past this, SERVFAIL at once.
pub const MAX_RECURSING: usize = 1024;

/// Holds one of the [`MAX_RECURSING`] forwarding slots while alive.
#[derive(Debug)]
pub struct RecursionSlot<'a>(&'a Shared);

impl Shared {
    /// A copy answering as `view` shows the catalog (a client agent's query on a server).
    pub fn with_acl_view(&self, view: crate::acl::DnsView) -> Shared {
        Shared {
            settings: self.settings.clone(),
            store: self.store.clone(),
            gen: AtomicU64::new(self.gen.load(Ordering::Acquire)),
            stop: AtomicBool::new(false),
            recursing: std::sync::atomic::AtomicUsize::new(0),
            acl_view: Some(view),
            remote: self.remote.clone(),
        }
    }

    /// A forwarding slot, or None when too many queries are being forwarded.
    pub fn recursion_slot(&self) -> Option<RecursionSlot<'_>> {
        let n = self.recursing.fetch_add(1, Ordering::AcqRel);
        let slot = RecursionSlot(self);
        (n < MAX_RECURSING).then_some(slot)
    }
}

impl Drop for RecursionSlot<'_> {
    fn drop(&mut self) {
        self.0.recursing.fetch_sub(1, Ordering::AcqRel);
    }
}

impl Shared {
    /// Render options for a transport.
    pub fn render_opts(&self, transport: Transport) -> RenderOpts {
        RenderOpts {
            transport,
            recursion_available: self.settings.recursion,
            udp_answer_limit: self.settings.cfg.udp_answer_limit,
            truncate_on_limit: self.settings.cfg.enable_truncate,
            ext_rcode: 0,
        }
    }
}

/// Counters of one worker.
#[derive(Debug, Default)]
#[repr(align(64))]
pub struct WorkerStats {
    /// Packets handled.
    pub queries: AtomicU64,
    /// Answers served from the cache without touching the store.
    pub hits: AtomicU64,
    /// Cached answers checked against the store after a catalog change and still current.
    pub revalidated: AtomicU64,
    /// Answers built from the store.
    pub builds: AtomicU64,
    /// Questions forwarded to the recursors.
    pub recursed: AtomicU64,
}

/// FNV-1a: the cache keys are short byte strings.
#[derive(Default)]
pub struct Fnv(u64);

impl std::hash::Hasher for Fnv {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        let mut h = if self.0 == 0 {
            0xcbf2_9ce4_8422_2325
        } else {
            self.0
        };
        for b in bytes {
            h ^= u64::from(*b);
            h = h.wrapping_mul(0x0100_0000_01b3);
        }
        self.0 = h;
    }
}

struct Entry {
    answer: Answer,
    dep: Dep,
    dep_val: [u64; 2],
    gen: u64,
}

/// What the caller does with a packet.
#[derive(Debug)]
pub enum Outcome {
    /// Send `Worker::out`.
    Reply,
    /// Forward the packet to the recursors (the parsed query is for the SERVFAIL reply).
    Recurse(Box<Request>),
    /// Ask datacenter `.0` (see [`Shared::answer_remote`]).
    Remote(String, Box<Request>),
    /// Send nothing.
    Drop,
}

/// A cache and scratch buffers; one per UDP thread, one (behind a lock) for TCP.
pub struct Worker {
    shared: Arc<Shared>,
    cache: HashMap<Box<[u8]>, Entry, BuildHasherDefault<Fnv>>,
    key: Vec<u8>,
    renderer: Renderer,
    max_entries: usize,
    /// The ACL version the cached answers were built under.
    acl_seen: u64,
    /// The reply of the last `handle` that returned [`Outcome::Reply`].
    pub out: Vec<u8>,
    /// Counters.
    pub stats: Arc<WorkerStats>,
    /// `consul_dns_domain_query` and `consul_dns_ptr_query`, resolved once (metrics on).
    timers: Option<(metrics::Histogram, metrics::Histogram)>,
    /// Whether the last query was a reverse (`.arpa`) lookup.
    last_ptr: bool,
}

impl std::fmt::Debug for Worker {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Worker")
            .field("cached", &self.cache.len())
            .finish_non_exhaustive()
    }
}

impl Worker {
    /// A worker with an empty cache.
    pub fn new(shared: Arc<Shared>) -> Worker {
        let max_entries = match shared.settings.cfg.cache_entries {
            0 => 65536,
            n => n,
        };
        Worker {
            shared,
            cache: HashMap::default(),
            key: Vec::with_capacity(wire::MAX_NAME + 4),
            renderer: Renderer::default(),
            max_entries,
            acl_seen: 0,
            out: Vec::with_capacity(4096),
            stats: Arc::new(WorkerStats::default()),
            timers: crate::metrics::dns_timers(),
            last_ptr: false,
        }
    }

    /// Answers one packet, timing it as Consul's `consul_dns_domain_query` or, for a
    /// reverse lookup, `consul_dns_ptr_query`, and counting a reply from a lagging server in
    /// `consul_dns_stale_queries`.
    pub fn handle(&mut self, packet: &[u8], transport: Transport) -> Outcome {
        let Some(timers) = self.timers.take() else {
            return self.handle_query(packet, transport);
        };
        let started = std::time::Instant::now();
        self.last_ptr = false;
        let outcome = self.handle_query(packet, transport);
        let elapsed = started.elapsed().as_secs_f64() * 1000.0;
        if self.last_ptr {
            timers.1.record(elapsed);
        } else {
            timers.0.record(elapsed);
        }
        if matches!(outcome, Outcome::Reply) {
            crate::metrics::dns_answered();
        }
        self.timers = Some(timers);
        outcome
    }

    fn handle_query(&mut self, packet: &[u8], transport: Transport) -> Outcome {
        self.stats.queries.fetch_add(1, Ordering::Relaxed);
        let ra = self.shared.settings.recursion;
        let req = match parse_request(packet) {
            Ok(r) => r,
            Err(ParseError::Drop) => return Outcome::Drop,
            Err(ParseError::Reject {
                id,
                opcode,
                rd,
                rcode,
            }) => {
                render_reject(&mut self.out, id, opcode, rd, rcode, ra);
                return Outcome::Reply;
            }
        };
        self.last_ptr = req.qname_lower().ends_with(b"\x04arpa\x00");
        let mut opts = self.shared.render_opts(transport);
        if req.edns.is_some_and(|e| e.version > 0) {
            // RFC 6891: BADVERS (16) = extended bits 1, header bits 0.
            opts.ext_rcode = (wire::rcode::BADVERS >> 4) as u8;
            let a = Answer::rcode_only(rcode::NOERROR);
            self.renderer.render(&mut self.out, &req, &a, &opts);
            return Outcome::Reply;
        }
        self.key.clear();
        self.key.extend_from_slice(req.qname_lower());
        self.key.extend_from_slice(&req.qtype.to_be_bytes());
        self.key.extend_from_slice(&req.qclass.to_be_bytes());

        if let Some(view) = &self.shared.acl_view {
            // A token or policy change invalidates every answer built under the old ones.
            let v = view.version();
            if v != self.acl_seen {
                self.cache.clear();
                self.acl_seen = v;
            }
        }
        let gen = self.shared.gen.load(Ordering::Acquire);
        let state = match self.cache.get(self.key.as_slice()) {
            Some(e) if e.gen == gen || e.dep == Dep::Static => Lookup::Fresh,
            Some(_) => Lookup::Stale,
            None => Lookup::Missing,
        };
        match state {
            Lookup::Fresh => {
                self.stats.hits.fetch_add(1, Ordering::Relaxed);
            }
            Lookup::Stale => {
                let store = self.shared.store.clone();
                let db = store.read();
                let current = self
                    .cache
                    .get(self.key.as_slice())
                    .is_some_and(|e| e.dep.value(&db) == e.dep_val);
                if current {
                    if let Some(e) = self.cache.get_mut(self.key.as_slice()) {
                        e.gen = gen;
                    }
                    self.stats.revalidated.fetch_add(1, Ordering::Relaxed);
                } else {
                    let entry = self.build(&db, &req, gen);
                    drop(db);
                    self.cache.insert(self.key.as_slice().into(), entry);
                }
            }
            Lookup::Missing => {
                let store = self.shared.store.clone();
                let entry = {
                    let db = store.read();
                    self.build(&db, &req, gen)
                };
                if self.cache.len() >= self.max_entries {
                    self.cache.clear();
                }
                self.cache.insert(self.key.as_slice().into(), entry);
            }
        }
        let Some(entry) = self.cache.get(self.key.as_slice()) else {
            return Outcome::Drop;
        };
        match entry.answer.action {
            Action::Recurse => {
                self.stats.recursed.fetch_add(1, Ordering::Relaxed);
                Outcome::Recurse(Box::new(req))
            }
            Action::Remote if self.shared.remote.get().is_some() => {
                let dc = super::names::remote_datacenter(
                    req.qname_lower(),
                    req.qtype,
                    &self.shared.settings.domains,
                    &self.shared.settings.dc,
                );
                match dc {
                    Some(dc) => Outcome::Remote(dc, Box::new(req)),
                    None => Outcome::Drop,
                }
            }
            Action::Answer | Action::Remote => {
                self.renderer
                    .render(&mut self.out, &req, &entry.answer, &opts);
                Outcome::Reply
            }
        }
    }

    fn build(&self, db: &crate::state::Db, req: &Request, gen: u64) -> Entry {
        self.stats.builds.fetch_add(1, Ordering::Relaxed);
        let filtered = self.shared.acl_view.as_ref().and_then(|v| v.filter(db));
        let db = filtered.as_ref().unwrap_or(db);
        let (answer, dep) = answer::build(
            &self.shared.settings,
            db,
            req.qname_lower(),
            req.qtype,
            req.qclass,
        );
        let dep_val = dep.value(db);
        Entry {
            answer,
            dep,
            dep_val,
            gen,
        }
    }

    /// The shared state.
    pub fn shared(&self) -> Arc<Shared> {
        self.shared.clone()
    }

    /// Number of cached answers.
    pub fn cached(&self) -> usize {
        self.cache.len()
    }
}

/// The reply to `req` when every recursor failed: SERVFAIL with RA.
pub fn servfail(shared: &Shared, req: &Request, transport: Transport) -> Vec<u8> {
    rcode_reply(shared, req, transport, rcode::SERVFAIL)
}

/// A reply to `req` with only a response code.
pub fn rcode_reply(shared: &Shared, req: &Request, transport: Transport, rc: u8) -> Vec<u8> {
    let opts = shared.render_opts(transport);
    let mut out = Vec::with_capacity(64);
    Renderer::new(1).render(&mut out, req, &Answer::rcode_only(rc), &opts);
    out
}

enum Lookup {
    Fresh,
    Stale,
    Missing,
}
