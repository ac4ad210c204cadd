//! Building answers from the state store, in a form that is cheap to send many times.
//!
//! An [`Answer`] is built once per question (lower-cased name, type, class) and cached.
//! Its records are pre-encoded bytes whose names either are written in full or point into
//! the question name, which sits at offset 12 of every reply and has the same length for
//! every spelling of the name. So the bytes stay valid whatever case the client used, and
//! the answer records can be reordered per query: each answer record is a [`Unit`] with the
//! additional records that belong to it (the A record of an SRV target), whose owner name
//! is a pointer to the target written when the unit's position is known.

use super::config::DnsConfig;
use super::names::{self, Domains, Locality, Lookup, Route};
use super::wire::{self, rcode, rtype, BadName, QCtx, QNAME_PTR};
use crate::state::{AddrOwner, Db};
use registry_proto::model::{status, Node, NodeService};
use std::collections::{BTreeMap, HashSet};
use std::net::IpAddr;

/// Processed configuration the builder and the sender share.
#[derive(Debug, Clone)]
pub struct Settings {
    /// The configuration as given.
    pub cfg: DnsConfig,
    /// Domains served.
    pub domains: Domains,
    /// Local datacenter, lower-case.
    pub dc: String,
    /// This node's name, lower-case.
    pub node_name: String,
    /// This node's address.
    pub node_addr: IpAddr,
    /// Whether recursors are configured (the RA bit).
    pub recursion: bool,
}

impl Settings {
    /// From the configuration and the local node.
    pub fn new(cfg: DnsConfig, node: &super::NodeInfo) -> Settings {
        Settings {
            domains: Domains::new(&cfg.domain, &cfg.alt_domain),
            dc: node.datacenter.to_ascii_lowercase(),
            node_name: node.name.to_ascii_lowercase(),
            node_addr: node.address,
            recursion: !cfg.recursors.is_empty(),
            cfg,
        }
    }
}

/// Where an additional record's owner name comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Owner {
    /// Fixed bytes (a full name, or a pointer into the question).
    Bytes(Box<[u8]>),
    /// The name at `rel..rel + len` of the unit's answer bytes: a pointer to it when it is
    /// within reach (offset < 16384), else a copy.
    Target {
        /// Offset in the unit's answer bytes.
        rel: u16,
        /// Length of the encoded name.
        len: u16,
    },
}

/// An additional record: owner plus everything after it (type .. RDATA).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AddRec {
    /// Owner name.
    pub owner: Owner,
    /// Type, class, TTL, RDLENGTH, RDATA.
    pub rest: Box<[u8]>,
}

impl AddRec {
    /// Encoded size when the owner is a pointer (or fixed bytes).
    pub fn min_len(&self) -> usize {
        self.rest.len()
            + match &self.owner {
                Owner::Bytes(b) => b.len(),
                Owner::Target { .. } => 2,
            }
    }
}

/// One answer record (sometimes several that belong together) and its additionals.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Unit {
    /// Encoded answer records.
    pub ans: Box<[u8]>,
    /// Number of records in `ans`.
    pub ans_count: u16,
    /// Additional records.
    pub adds: Box<[AddRec]>,
    /// Units with the same group share their additional records (SRV answers with the same
    /// target): only the first one sent carries them. [`Unit::ALONE`]: no sharing.
    pub group: u32,
}

impl Unit {
    /// The group of a unit that shares nothing.
    pub const ALONE: u32 = u32::MAX;

    /// A unit of one answer record and no additionals.
    pub fn single(ans: Vec<u8>) -> Unit {
        Unit {
            ans: ans.into(),
            ans_count: 1,
            adds: Box::new([]),
            group: Unit::ALONE,
        }
    }

    /// Size of the unit with every additional owner as a pointer.
    pub fn min_len(&self) -> usize {
        self.ans.len() + self.adds.iter().map(AddRec::min_len).sum::<usize>()
    }
}

/// What to do with a question.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    /// Send the answer.
    Answer,
    /// Forward to the recursors.
    Recurse,
    /// Ask the datacenter the name is in (the answer is the NXDOMAIN sent when no other
    /// datacenter can be asked).
    Remote,
}

/// A ready-to-send answer (everything but header, question and OPT).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Answer {
    /// Forward instead of answering.
    pub action: Action,
    /// Response code (4 bits).
    pub rcode: u8,
    /// Authoritative answer bit.
    pub aa: bool,
    /// Reorder the units randomly per query.
    pub shuffle: bool,
    /// At most this many units (0: no limit), after shuffling.
    pub limit: usize,
    /// The answer records.
    pub units: Vec<Unit>,
    /// Authority section bytes.
    pub auth: Vec<u8>,
    /// Records in `auth`.
    pub auth_count: u16,
    /// Additional records not tied to a unit.
    pub extra: Vec<u8>,
    /// Records in `extra`.
    pub extra_count: u16,
    /// Number of unit groups (units with `group < groups`).
    pub groups: u32,
}

impl Answer {
    fn empty(rcode: u8, aa: bool) -> Answer {
        Answer {
            action: Action::Answer,
            rcode,
            aa,
            shuffle: false,
            limit: 0,
            units: Vec::new(),
            auth: Vec::new(),
            auth_count: 0,
            extra: Vec::new(),
            extra_count: 0,
            groups: 0,
        }
    }

    /// An answer with only a response code (REFUSED, NOTIMP, SERVFAIL...).
    pub fn rcode_only(rcode: u8) -> Answer {
        Answer::empty(rcode, false)
    }

    fn recurse() -> Answer {
        let mut a = Answer::empty(rcode::NOERROR, false);
        a.action = Action::Recurse;
        a
    }
}

/// What a cached answer was built from, to tell whether it is still current.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Dep {
    /// Depends on nothing in the store.
    Static,
    /// A service name (as stored); `exact` when the query name matched it exactly, else
    /// any change to the services table may change the answer.
    Service {
        /// Name.
        name: String,
        /// Exact match.
        exact: bool,
    },
    /// A node name, the same way.
    Node {
        /// Name.
        name: String,
        /// Exact match.
        exact: bool,
    },
    /// Every node and service address (reverse lookups).
    Addresses,
    /// A prepared query: any change to the queries, or to the service it names.
    Query {
        /// The service the query resolved to (empty: it resolved to nothing).
        service: String,
    },
}

impl Dep {
    /// The store indexes the answer depends on.
    pub fn value(&self, db: &Db) -> [u64; 2] {
        match self {
            Dep::Static => [0, 0],
            Dep::Service { name, exact } => [
                db.service_index.get(name).copied().unwrap_or(0),
                if *exact { 0 } else { db.table_index.services },
            ],
            Dep::Node { name, exact } => [
                db.node_index.get(name).copied().unwrap_or(0),
                if *exact { 0 } else { db.table_index.nodes },
            ],
            Dep::Addresses => [db.table_index.nodes, db.table_index.services],
            Dep::Query { service } => [
                db.queries.queries_index,
                db.service_index
                    .get(service)
                    .copied()
                    .unwrap_or(db.table_index.services),
            ],
        }
    }
}

/// Builds the answer to (`qname_lower`, `qtype`, `qclass`) from `db`.
pub fn build(s: &Settings, db: &Db, qname_lower: &[u8], qtype: u16, qclass: u16) -> (Answer, Dep) {
    let q = QCtx::new(qname_lower);
    let owned: Vec<String> = match wire::labels_of(qname_lower) {
        Some(l) => l.into_iter().map(str::to_string).collect(),
        None => lossy_labels(qname_lower),
    };
    let labels: Vec<&str> = owned.iter().map(String::as_str).collect();
    let route = names::route(&labels, qtype, &s.domains, &s.dc);
    let in_class = qclass == wire::CLASS_IN || qclass == wire::CLASS_ANY;
    if !in_class && (route != Route::External || !s.recursion) {
        // CHAOS and other classes: nothing here; outside the domain they are forwarded.
        return (Answer::rcode_only(rcode::REFUSED), Dep::Static);
    }
    let b = Builder {
        s,
        db,
        q,
        qtype,
        serial: unix_now(),
    };
    match route {
        Route::External => {
            if s.recursion {
                (Answer::recurse(), Dep::Static)
            } else {
                (Answer::rcode_only(rcode::REFUSED), Dep::Static)
            }
        }
        Route::Reverse(ip) => b.reverse(ip),
        Route::Domain { alt, lookup } => b.domain(alt, lookup),
    }
}

fn lossy_labels(wire: &[u8]) -> Vec<String> {
    let mut out = Vec::new();
    let mut i = 0;
    while i < wire.len() {
        let l = usize::from(wire[i]);
        if l == 0 {
            break;
        }
        let end = (i + 1 + l).min(wire.len());
        out.push(String::from_utf8_lossy(&wire[i + 1..end]).into_owned());
        i = end;
    }
    out
}

fn unix_now() -> u32 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| u32::try_from(d.as_secs()).unwrap_or(u32::MAX))
        .unwrap_or(0)
}

mod query;

struct Builder<'a> {
    s: &'a Settings,
    db: &'a Db,
    q: QCtx,
    qtype: u16,
    serial: u32,
}

/// An instance that passed the health filter, with its SRV weight.
struct Healthy<'a> {
    node: &'a Node,
    svc: &'a NodeService,
    weight: u16,
}

impl Builder<'_> {
    fn domain(&self, alt: bool, lookup: Lookup) -> (Answer, Dep) {
        match self.qtype {
            rtype::SOA => return self.soa_answer(alt),
            rtype::NS => return self.ns_answer(alt),
            rtype::AXFR | rtype::IXFR => return (Answer::rcode_only(rcode::NOTIMP), Dep::Static),
            _ => {}
        }
        match lookup {
            Lookup::EmptyNonTerminal => (self.negative(rcode::NOERROR, alt), Dep::Static),
            Lookup::Invalid | Lookup::Unsupported(_) => {
                (self.negative(rcode::NXDOMAIN, alt), Dep::Static)
            }
            Lookup::Addr(ip) => (self.addr(ip, alt), Dep::Static),
            Lookup::Service {
                name,
                tag,
                locality,
            } => {
                if locality != Locality::Local {
                    return (self.elsewhere(&locality, alt), Dep::Static);
                }
                self.service(&name, tag.as_deref(), alt)
            }
            Lookup::Node { name, locality } => {
                if locality != Locality::Local {
                    return (self.elsewhere(&locality, alt), Dep::Static);
                }
                self.node(&name, alt)
            }
            Lookup::Query { name, locality } => {
                if locality != Locality::Local {
                    // Executed by the named datacenter, as Consul forwards the execution.
                    return (self.elsewhere(&locality, alt), Dep::Static);
                }
                self.query(&name, alt)
            }
        }
    }

    /// A name in another datacenter: asked there ([`Action::Remote`]); a peer: NXDOMAIN.
    fn elsewhere(&self, locality: &Locality, alt: bool) -> Answer {
        let mut a = self.negative(rcode::NXDOMAIN, alt);
        if matches!(locality, Locality::Remote(_)) {
            a.action = Action::Remote;
        }
        a
    }

    /// NXDOMAIN or NODATA: the SOA in the authority section.
    fn negative(&self, rc: u8, alt: bool) -> Answer {
        let mut a = Answer::empty(rc, true);
        if self.put_soa(&mut a.auth, alt).is_ok() {
            a.auth_count = 1;
        }
        a
    }

    fn domain_fqdn(&self, alt: bool) -> String {
        self.s.domains.fqdn(alt)
    }

    fn put_soa(&self, buf: &mut Vec<u8>, alt: bool) -> Result<(), BadName> {
        let d = self.domain_fqdn(alt);
        let soa = &self.s.cfg.soa;
        wire::put_name(buf, &d, &self.q)?;
        let at = wire::put_rr_fixed(buf, rtype::SOA, soa.min_ttl);
        wire::put_name(buf, &format!("ns.{d}"), &self.q)?;
        wire::put_name(buf, &format!("hostmaster.{d}"), &self.q)?;
        for v in [self.serial, soa.refresh, soa.retry, soa.expire, soa.min_ttl] {
            buf.extend_from_slice(&v.to_be_bytes());
        }
        wire::finish_rr(buf, at);
        Ok(())
    }

    fn node_fqdn(&self, node: &str, dc: &str, alt: bool) -> String {
        format!("{node}.node.{dc}.{}", self.domain_fqdn(alt))
    }

    fn node_dc<'n>(&'n self, n: &'n Node) -> &'n str {
        if n.datacenter.is_empty() {
            &self.s.dc
        } else {
            &n.datacenter
        }
    }

    // ----- services -------------------------------------------------------------------

    fn service(&self, name: &str, tag: Option<&str>, alt: bool) -> (Answer, Dep) {
        let (actual, exact) = resolve(&self.db.services_by_name, name);
        let dep = Dep::Service {
            name: actual.unwrap_or(name).to_string(),
            exact,
        };
        let Some(actual) = actual else {
            return (self.negative(rcode::NXDOMAIN, alt), dep);
        };
        let healthy = self.healthy_instances(actual, tag);
        if healthy.is_empty() {
            return (self.negative(rcode::NXDOMAIN, alt), dep);
        }
        let ttl = self.s.cfg.service_ttl_secs(name);
        let mut a = Answer::empty(rcode::NOERROR, true);
        a.shuffle = true;
        match self.qtype {
            rtype::SRV => self.srv_units(&mut a, &healthy, ttl, alt),
            rtype::A | rtype::AAAA | rtype::ANY => {
                a.limit = self.s.cfg.a_record_limit;
                self.addr_units(&mut a, &healthy, ttl);
            }
            _ => {}
        }
        if a.units.is_empty() {
            return (self.negative(rcode::NOERROR, alt), dep);
        }
        (a, dep)
    }

    fn healthy_instances(&self, service: &str, tag: Option<&str>) -> Vec<Healthy<'_>> {
        let only_passing = self.s.cfg.only_passing;
        let mut out = Vec::new();
        for (node, svc) in self.db.service_instances(service) {
            if let Some(t) = tag {
                if !svc.tags.iter().any(|x| x.eq_ignore_ascii_case(t)) {
                    continue;
                }
            }
            let mut worst = status::PASSING;
            let mut excluded = false;
            for c in self.db.instance_checks(&node.node, &svc.id) {
                let st = c.status.as_str();
                if st == status::CRITICAL
                    || st == status::MAINTENANCE
                    || (only_passing && st != status::PASSING)
                {
                    excluded = true;
                    break;
                }
                if st == status::WARNING {
                    worst = status::WARNING;
                }
            }
            if excluded {
                continue;
            }
            let w = if worst == status::WARNING {
                svc.weights.warning
            } else {
                svc.weights.passing
            };
            out.push(Healthy {
                node,
                svc,
                weight: u16::try_from(w.max(0)).unwrap_or(u16::MAX),
            });
        }
        out
    }

    fn srv_units(&self, a: &mut Answer, healthy: &[Healthy<'_>], ttl: u32, alt: bool) {
        let mut seen = HashSet::new();
        let meta_txt = self.s.cfg.enable_additional_node_meta_txt;
        for h in healthy {
            let svc_addr = h.svc.address.as_str();
            if !seen.insert((h.node.node.as_str(), svc_addr, h.svc.port)) {
                continue;
            }
            let addr = if svc_addr.is_empty() {
                h.node.address.as_str()
            } else {
                svc_addr
            };
            let node_fqdn = self.node_fqdn(&h.node.node, self.node_dc(h.node), alt);
            let ip = parse_ip(addr);
            let target = match ip {
                Some(ip) if !svc_addr.is_empty() => format!(
                    "{}.addr.{}.{}",
                    names::hex_label(ip),
                    self.s.dc,
                    self.domain_fqdn(alt)
                ),
                Some(_) => node_fqdn.clone(),
                None => addr.to_string(),
            };
            let mut ans = Vec::with_capacity(64);
            ans.extend_from_slice(&QNAME_PTR);
            let at = wire::put_rr_fixed(&mut ans, rtype::SRV, ttl);
            ans.extend_from_slice(&1u16.to_be_bytes());
            ans.extend_from_slice(&h.weight.to_be_bytes());
            ans.extend_from_slice(&h.svc.port.to_be_bytes());
            let rel = ans.len();
            let Ok(tlen) = wire::put_name(&mut ans, &target, &self.q) else {
                tracing::debug!(target = %target, "DNS: skipping SRV target that is not a valid name");
                continue;
            };
            wire::finish_rr(&mut ans, at);
            let mut adds = Vec::new();
            let target_owner = Owner::Target {
                rel: rel as u16,
                len: tlen as u16,
            };
            if let Some(ip) = ip {
                adds.push(AddRec {
                    owner: target_owner.clone(),
                    rest: addr_rest(ip, ttl).into(),
                });
            }
            if meta_txt && !h.node.meta.is_empty() {
                let owner = if ip.is_some() && svc_addr.is_empty() {
                    Some(target_owner)
                } else {
                    let mut b = Vec::new();
                    wire::put_name(&mut b, &node_fqdn, &self.q)
                        .ok()
                        .map(|_| Owner::Bytes(b.into()))
                };
                if let Some(owner) = owner {
                    for rest in meta_txt_rests(h.node, ttl) {
                        adds.push(AddRec {
                            owner: owner.clone(),
                            rest: rest.into(),
                        });
                    }
                }
            }
            // As Consul writes it: every SRV answer carries its own address record, also when
            // several instances share a target. HAProxy's server-template pairs each SRV
            // answer with an additional record and leaves a slot empty when one is missing.
            a.units.push(Unit {
                ans: ans.into(),
                ans_count: 1,
                adds: adds.into(),
                group: Unit::ALONE,
            });
        }
    }

    fn addr_units(&self, a: &mut Answer, healthy: &[Healthy<'_>], ttl: u32) {
        let mut seen = HashSet::new();
        let mut cname: Option<Unit> = None;
        for h in healthy {
            let addr = if h.svc.address.is_empty() {
                h.node.address.as_str()
            } else {
                h.svc.address.as_str()
            };
            match parse_ip(addr) {
                Some(ip) => {
                    if !family_matches(self.qtype, ip) || !seen.insert(ip) {
                        continue;
                    }
                    let mut ans = Vec::with_capacity(28);
                    ans.extend_from_slice(&QNAME_PTR);
                    ans.extend_from_slice(&addr_rest(ip, ttl));
                    a.units.push(Unit::single(ans));
                }
                None => {
                    if cname.is_none() {
                        cname = self.cname_unit(addr, ttl);
                    }
                }
            }
        }
        if a.units.is_empty() {
            if let Some(u) = cname {
                a.units.push(u);
            }
        }
    }

    fn cname_unit(&self, target: &str, ttl: u32) -> Option<Unit> {
        let mut ans = Vec::new();
        ans.extend_from_slice(&QNAME_PTR);
        let at = wire::put_rr_fixed(&mut ans, rtype::CNAME, ttl);
        wire::put_name(&mut ans, target, &self.q).ok()?;
        wire::finish_rr(&mut ans, at);
        Some(Unit::single(ans))
    }

    // ----- nodes ----------------------------------------------------------------------

    fn node(&self, name: &str, alt: bool) -> (Answer, Dep) {
        let (actual, exact) = resolve(&self.db.nodes, name);
        let dep = Dep::Node {
            name: actual.unwrap_or(name).to_string(),
            exact,
        };
        let Some(node) = actual.and_then(|n| self.db.nodes.get(n)) else {
            return (self.negative(rcode::NXDOMAIN, alt), dep);
        };
        let ttl = self.s.cfg.node_ttl_secs();
        let mut a = Answer::empty(rcode::NOERROR, true);
        let qt = self.qtype;
        if matches!(qt, rtype::A | rtype::AAAA | rtype::ANY) {
            match parse_ip(&node.address) {
                Some(ip) if family_matches(qt, ip) => {
                    let mut ans = Vec::with_capacity(28);
                    ans.extend_from_slice(&QNAME_PTR);
                    ans.extend_from_slice(&addr_rest(ip, ttl));
                    a.units.push(Unit::single(ans));
                }
                Some(_) => {}
                None => a.units.extend(self.cname_unit(&node.address, ttl)),
            }
        }
        let txts = meta_txt_rests(node, ttl);
        if matches!(qt, rtype::TXT | rtype::ANY) {
            for rest in txts {
                let mut ans = Vec::with_capacity(rest.len() + 2);
                ans.extend_from_slice(&QNAME_PTR);
                ans.extend_from_slice(&rest);
                a.units.push(Unit::single(ans));
            }
        } else if !a.units.is_empty() && self.s.cfg.enable_additional_node_meta_txt {
            for rest in txts {
                a.extra.extend_from_slice(&QNAME_PTR);
                a.extra.extend_from_slice(&rest);
                a.extra_count += 1;
            }
        }
        if a.units.is_empty() {
            return (self.negative(rcode::NOERROR, alt), dep);
        }
        (a, dep)
    }

    // ----- addr -----------------------------------------------------------------------

    fn addr(&self, ip: IpAddr, alt: bool) -> Answer {
        if !matches!(self.qtype, rtype::A | rtype::AAAA | rtype::ANY)
            || !family_matches(self.qtype, ip)
        {
            return self.negative(rcode::NOERROR, alt);
        }
        let mut a = Answer::empty(rcode::NOERROR, true);
        let mut ans = Vec::with_capacity(28);
        ans.extend_from_slice(&QNAME_PTR);
        ans.extend_from_slice(&addr_rest(ip, self.s.cfg.node_ttl_secs()));
        a.units.push(Unit::single(ans));
        a
    }

    // ----- reverse --------------------------------------------------------------------

    fn reverse(&self, ip: Option<IpAddr>) -> (Answer, Dep) {
        let not_found = |dep| {
            if self.s.recursion {
                (Answer::recurse(), dep)
            } else {
                (self.negative(rcode::NXDOMAIN, false), dep)
            }
        };
        let Some(ip) = ip else {
            return not_found(Dep::Static);
        };
        let domain = self.domain_fqdn(false);
        // The first node with the address, else the first instance (the address index
        // keeps them in that order: see `state/addresses.rs`).
        let target = match self.db.address_owner(ip) {
            Some(AddrOwner::Node(n)) => format!("{}.node.{}.{domain}", n.node, self.node_dc(n)),
            Some(AddrOwner::Service { node, service }) => {
                let dc = self
                    .db
                    .nodes
                    .get(node)
                    .map_or(self.s.dc.as_str(), |n| self.node_dc(n));
                format!("{}.service.{dc}.{domain}", service.service)
            }
            None => return not_found(Dep::Addresses),
        };
        let mut a = Answer::empty(rcode::NOERROR, true);
        if self.qtype == rtype::SOA {
            let mut soa = Vec::new();
            if self.put_soa(&mut soa, false).is_ok() {
                a.units.push(Unit::single(soa));
            }
        }
        if matches!(self.qtype, rtype::PTR | rtype::ANY) {
            let mut ans = Vec::new();
            ans.extend_from_slice(&QNAME_PTR);
            let at = wire::put_rr_fixed(&mut ans, rtype::PTR, 0);
            if wire::put_name(&mut ans, &target, &self.q).is_ok() {
                wire::finish_rr(&mut ans, at);
                a.units.push(Unit::single(ans));
            }
        }
        if a.units.is_empty() {
            return (self.negative(rcode::NOERROR, false), Dep::Addresses);
        }
        (a, Dep::Addresses)
    }

    // ----- SOA / NS -------------------------------------------------------------------

    /// Name servers: healthy instances of `consul` (at most 3 are sent), or this node.
    fn servers(&self, alt: bool) -> (Vec<(String, Option<IpAddr>)>, Dep) {
        let (actual, exact) = resolve(&self.db.services_by_name, "consul");
        let dep = Dep::Service {
            name: actual.unwrap_or("consul").to_string(),
            exact,
        };
        let mut out: Vec<(String, Option<IpAddr>)> = Vec::new();
        if let Some(actual) = actual {
            for h in self.healthy_instances(actual, None) {
                let fqdn = self
                    .node_fqdn(&h.node.node, self.node_dc(h.node), alt)
                    .to_ascii_lowercase();
                if out.iter().any(|(f, _)| *f == fqdn) {
                    continue;
                }
                out.push((fqdn, parse_ip(&h.node.address)));
            }
        }
        if out.is_empty() {
            let ip = Some(self.s.node_addr).filter(|ip| !ip.is_unspecified());
            out.push((self.node_fqdn(&self.s.node_name, &self.s.dc, alt), ip));
        }
        (out, dep)
    }

    fn ns_rr(&self, buf: &mut Vec<u8>, alt: bool, fqdn: &str) -> Result<(u16, u16), BadName> {
        wire::put_name(buf, &self.domain_fqdn(alt), &self.q)?;
        let at = wire::put_rr_fixed(buf, rtype::NS, self.s.cfg.node_ttl_secs());
        let rel = buf.len();
        let len = wire::put_name(buf, fqdn, &self.q)?;
        wire::finish_rr(buf, at);
        Ok((rel as u16, len as u16))
    }

    fn ns_answer(&self, alt: bool) -> (Answer, Dep) {
        let (servers, dep) = self.servers(alt);
        let mut a = Answer::empty(rcode::NOERROR, true);
        a.shuffle = true;
        a.limit = 3;
        for (fqdn, ip) in servers {
            let mut ans = Vec::new();
            let Ok((rel, len)) = self.ns_rr(&mut ans, alt, &fqdn) else {
                continue;
            };
            let adds: Vec<AddRec> = ip
                .map(|ip| AddRec {
                    owner: Owner::Target { rel, len },
                    rest: addr_rest(ip, self.s.cfg.node_ttl_secs()).into(),
                })
                .into_iter()
                .collect();
            a.units.push(Unit {
                ans: ans.into(),
                ans_count: 1,
                adds: adds.into(),
                group: Unit::ALONE,
            });
        }
        (a, dep)
    }

    fn soa_answer(&self, alt: bool) -> (Answer, Dep) {
        let (mut servers, dep) = self.servers(alt);
        let mut a = Answer::empty(rcode::NOERROR, true);
        let mut soa = Vec::new();
        if self.put_soa(&mut soa, alt).is_ok() {
            a.units.push(Unit::single(soa));
        }
        shuffle_vec(&mut servers);
        for (fqdn, ip) in servers.into_iter().take(3) {
            let mut ns = Vec::new();
            if self.ns_rr(&mut ns, alt, &fqdn).is_err() {
                continue;
            }
            a.auth.extend_from_slice(&ns);
            a.auth_count += 1;
            if let Some(ip) = ip {
                let mut glue = Vec::new();
                if wire::put_name(&mut glue, &fqdn, &self.q).is_ok() {
                    glue.extend_from_slice(&addr_rest(ip, self.s.cfg.node_ttl_secs()));
                    a.extra.extend_from_slice(&glue);
                    a.extra_count += 1;
                }
            }
        }
        (a, dep)
    }
}

fn shuffle_vec<T>(v: &mut [T]) {
    use rand::seq::SliceRandom;
    v.shuffle(&mut rand::thread_rng());
}

/// The exact key `name` if present, else the first key equal ignoring ASCII case; the flag
/// tells whether the match was exact.
fn resolve<'a, V>(map: &'a BTreeMap<String, V>, name: &str) -> (Option<&'a str>, bool) {
    if let Some((k, _)) = map.get_key_value(name) {
        return (Some(k.as_str()), true);
    }
    (
        map.keys()
            .find(|k| k.eq_ignore_ascii_case(name))
            .map(String::as_str),
        false,
    )
}

fn parse_ip(s: &str) -> Option<IpAddr> {
    s.parse().ok()
}

fn family_matches(qtype: u16, ip: IpAddr) -> bool {
    match qtype {
        rtype::A => ip.is_ipv4(),
        rtype::AAAA => ip.is_ipv6(),
        _ => true,
    }
}

/// An A or AAAA record after its owner name.
fn addr_rest(ip: IpAddr, ttl: u32) -> Vec<u8> {
    let mut b = Vec::with_capacity(26);
    match ip {
        IpAddr::V4(v4) => {
            let at = wire::put_rr_fixed(&mut b, rtype::A, ttl);
            b.extend_from_slice(&v4.octets());
            wire::finish_rr(&mut b, at);
        }
        IpAddr::V6(v6) => {
            let at = wire::put_rr_fixed(&mut b, rtype::AAAA, ttl);
            b.extend_from_slice(&v6.octets());
            wire::finish_rr(&mut b, at);
        }
    }
    b
}

/// TXT records (after the owner) for a node's metadata: `key=value` per RFC 1464, or the
/// bare value for keys starting with `rfc1035-`.
fn meta_txt_rests(node: &Node, ttl: u32) -> Vec<Vec<u8>> {
    node.meta
        .iter()
        .map(|(k, v)| {
            let text = if k.to_ascii_lowercase().starts_with("rfc1035-") {
                v.clone()
            } else {
                encode_rfc1464(k, v)
            };
            let mut b = Vec::new();
            let at = wire::put_rr_fixed(&mut b, rtype::TXT, ttl);
            wire::put_txt_rdata(&mut b, text.as_bytes());
            wire::finish_rr(&mut b, at);
            b
        })
        .collect()
}

/// `key=value` with RFC 1464 quoting: backquote, `=` and leading/trailing spaces of the key
/// are escaped with a backquote; backquotes in the value are doubled.
pub fn encode_rfc1464(key: &str, value: &str) -> String {
    let mut k = key.replace('`', "``").replace('=', "`=");
    let lead = k.len() - k.trim_start_matches(' ').len();
    if lead == k.len() {
        k = "` ".repeat(lead);
    } else {
        let trail = k.len() - k.trim_end_matches(' ').len();
        let core = k[lead..k.len() - trail].to_string();
        k = format!("{}{core}{}", "` ".repeat(lead), "` ".repeat(trail));
    }
    format!("{k}={}", value.replace('`', "``"))
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    #[test]
    fn rfc1464() {
        assert_eq!(encode_rfc1464("key", "value"), "key=value");
        assert_eq!(encode_rfc1464("k=y", "v`l"), "k`=y=v``l");
        assert_eq!(encode_rfc1464(" k ", "v"), "` k` =v");
        assert_eq!(encode_rfc1464("  ", "v"), "` ` =v");
    }
}
