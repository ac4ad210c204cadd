//! Property tests: random and mutated packets through the whole answer path (parse, cache,
//! build, render) never panic, and every reply to a readable query is a well-formed DNS
//! message within the transport's size.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod dns_common;

use dns_common::*;
use hickory_proto::op::Message;
use hickory_proto::rr::RecordType;
use proptest::prelude::*;
use registry_proto::model::status;
use registry_server::dns::answer::Settings;
use registry_server::dns::engine::{Outcome, Shared, Worker};
use registry_server::dns::render::Transport;
use registry_server::dns::wire::parse_request;
use std::sync::atomic::{AtomicBool, AtomicU64};
use std::sync::{Arc, OnceLock};

fn worker() -> Worker {
    static CAT: OnceLock<Catalog> = OnceLock::new();
    let c = CAT.get_or_init(|| {
        let c = Catalog::default();
        c.node("node1", "127.0.0.11", &[("k", "v"), ("rfc1035-x", "y")]);
        for i in 0..40u16 {
            let mut inst = Inst::new(
                &format!("n{i}"),
                &format!("127.0.3.{}", i + 1),
                "web",
                80 + i,
            )
            .tags(&["v1", "Tag.With.Dots"]);
            if i % 7 == 0 {
                inst = inst.check(status::CRITICAL);
            } else if i % 5 == 0 {
                inst = inst.check(status::WARNING);
            }
            c.register(&inst);
        }
        c.register(&Inst::new("node1", "127.0.0.11", "api", 1).address("127.0.0.99"));
        c.register(&Inst::new("node1", "127.0.0.11", "ext", 2).address("host.example.org"));
        c.register(&Inst::new("v6", "2001:db8::1", "six", 3));
        c
    });
    let mut cfg = test_config();
    cfg.recursors = vec!["127.0.0.1:9".parse().unwrap()];
    cfg.alt_domain = "alt.test".into();
    let shared = Arc::new(Shared {
        acl_view: None,
        settings: Settings::new(cfg, &local_node()),
        store: c.store.clone(),
        gen: AtomicU64::new(1),
        stop: AtomicBool::new(false),
        recursing: Default::default(),
        remote: Default::default(),
    });
    Worker::new(shared)
}

const NAMES: &[&str] = &[
    "web.service.consul.",
    "v1.web.service.consul.",
    "tag.with.dots.web.service.dc1.consul.",
    "_web._tcp.service.consul.",
    "_web._v1.consul.",
    "web.service.dc2.consul.",
    "web.service.alt.test.",
    "node1.node.consul.",
    "c000020a.addr.consul.",
    "api.service.consul.",
    "ext.service.consul.",
    "six.service.consul.",
    "consul.",
    "11.0.0.127.in-addr.arpa.",
    "example.org.",
    ".",
];

const TYPES: &[RecordType] = &[
    RecordType::A,
    RecordType::AAAA,
    RecordType::SRV,
    RecordType::ANY,
    RecordType::TXT,
    RecordType::PTR,
    RecordType::SOA,
    RecordType::NS,
    RecordType::MX,
];

/// `well_formed`: the packet is a clean query, which must get a reply (or go to the
/// recursors), never be dropped.
fn check(
    w: &mut Worker,
    packet: &[u8],
    transport: Transport,
    well_formed: bool,
) -> Result<(), TestCaseError> {
    let parsed = parse_request(packet);
    match w.handle(packet, transport) {
        Outcome::Reply => {
            let m = Message::from_vec(&w.out);
            prop_assert!(m.is_ok(), "unreadable reply {:?} to {:?}", m.err(), packet);
            if let (Ok(req), Transport::Udp) = (&parsed, transport) {
                let max = req.udp_limit().max(512);
                // A single record too large for the limit is still sent (as Consul does);
                // our records are small, so every reply fits.
                prop_assert!(w.out.len() <= max, "{} > {max}", w.out.len());
            }
            if let Ok(req) = &parsed {
                prop_assert_eq!(&w.out[12..12 + req.qname_wire().len()], req.qname_wire());
            }
        }
        Outcome::Recurse(_) | Outcome::Remote(..) => prop_assert!(parsed.is_ok()),
        Outcome::Drop => prop_assert!(!well_formed, "dropped a well-formed query {:?}", packet),
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 3000, .. ProptestConfig::default() })]

    #[test]
    fn random_packets(bytes in proptest::collection::vec(any::<u8>(), 0..300), tcp in any::<bool>()) {
        let mut w = worker();
        let t = if tcp { Transport::Tcp } else { Transport::Udp };
        check(&mut w, &bytes, t, false)?;
    }

    #[test]
    fn mutated_queries(
        name in proptest::sample::select(NAMES),
        t in proptest::sample::select(TYPES),
        edns in proptest::option::of(0u16..3000),
        upper in any::<bool>(),
        flips in proptest::collection::vec((any::<usize>(), any::<u8>()), 0..4),
        cut in 0usize..6,
        tcp in any::<bool>(),
    ) {
        let mut w = worker();
        let name = if upper { name.to_ascii_uppercase() } else { name.to_string() };
        let mut q = query_bytes(&name, t, edns);
        // The clean query first, twice (built, then from the cache), then mutated.
        let transport = if tcp { Transport::Tcp } else { Transport::Udp };
        check(&mut w, &q, transport, true)?;
        check(&mut w, &q, transport, true)?;
        for (pos, val) in flips {
            let i = pos % q.len();
            q[i] = val;
        }
        let n = q.len();
        q.truncate(n - cut.min(n));
        check(&mut w, &q, transport, false)?;
    }
}
