//! The DNS server over real UDP and TCP packets on loopback, answering from a store filled
//! through the state machine.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod dns_common;

use dns_common::*;
use hickory_proto::op::Message;
use hickory_proto::rr::{RData, RecordType};
use registry_proto::model::status;
use std::collections::{BTreeMap, HashSet};
use std::net::SocketAddr;
use std::time::{Duration, Instant};

const NOERROR: u16 = 0;
const FORMERR: u16 = 1;
const SERVFAIL: u16 = 2;
const NXDOMAIN: u16 = 3;
const NOTIMP: u16 = 4;
const REFUSED: u16 = 5;

/// web: three instances on three nodes (one tagged v1, one v2), a critical db instance,
/// node metadata, a service with its own IP address, an IPv6 node.
fn sample() -> Catalog {
    let c = Catalog::default();
    c.node(
        "node1",
        "127.0.0.11",
        &[("rack", "r1"), ("rfc1035-note", "hello world")],
    );
    c.node("node2", "127.0.0.12", &[]);
    c.node("node3", "127.0.0.13", &[]);
    c.node("v6node", "::1", &[]);
    c.register(&Inst::new("node1", "127.0.0.11", "web", 8080).tags(&["v1", "primary"]));
    c.register(
        &Inst::new("node2", "127.0.0.12", "web", 8081)
            .tags(&["v2"])
            .check(status::WARNING)
            .weights(10, 3),
    );
    c.register(&Inst::new("node3", "127.0.0.13", "web", 8082).check(status::PASSING));
    c.register(&Inst::new("node1", "127.0.0.11", "db", 5432).check(status::CRITICAL));
    c.register(&Inst::new("node2", "127.0.0.12", "db", 5433).check(status::PASSING));
    c.register(&Inst::new("node3", "127.0.0.13", "api", 9000).address("127.0.0.99"));
    c.register(&Inst::new("v6node", "::1", "six", 6000));
    c.register(&Inst::new("node1", "127.0.0.11", "ext", 80).address("example.org"));
    c.register(&Inst::new("server1", "127.0.0.1", "consul", 8300));
    c
}

#[tokio::test]
async fn service_a_srv_and_tags() {
    let c = sample();
    let dns = start(&c, test_config()).await;
    let addr = dns.local_addr();

    let m = udp(addr, "web.service.consul.", RecordType::A, None).await;
    assert_eq!(rcode(&m), NOERROR);
    assert!(m.metadata.authoritative);
    assert!(!m.metadata.recursion_available);
    assert_eq!(
        a_records(&m.answers),
        ["127.0.0.11", "127.0.0.12", "127.0.0.13"]
    );
    for r in &m.answers {
        assert_eq!(r.name.to_string(), "web.service.consul.");
        assert_eq!(r.ttl, 0);
    }

    // Same answers for the datacenter forms.
    for n in [
        "web.service.dc1.consul.",
        "web.service.dc1.dc.consul.",
        "WEB.SERVICE.DC1.CONSUL.",
    ] {
        let m = udp(addr, n, RecordType::A, None).await;
        assert_eq!(a_records(&m.answers).len(), 3, "{n}");
        // The question comes back as it was asked.
        assert_eq!(m.queries[0].name.to_string(), n);
    }

    let m = udp(addr, "web.service.consul.", RecordType::SRV, Some(1232)).await;
    assert_eq!(
        srv_records(&m.answers),
        [
            (1, 1, 8080, "node1.node.dc1.consul.".to_string()),
            (1, 3, 8081, "node2.node.dc1.consul.".to_string()),
            (1, 1, 8082, "node3.node.dc1.consul.".to_string()),
        ],
        "the warning instance gets its warning weight"
    );
    // The targets' addresses are in the additional section, plus node1's metadata.
    let extra_a: BTreeMap<String, String> = m
        .additionals
        .iter()
        .filter_map(|r| match &r.data {
            RData::A(a) => Some((r.name.to_string(), a.0.to_string())),
            _ => None,
        })
        .collect();
    assert_eq!(extra_a.len(), 3);
    assert_eq!(extra_a["node1.node.dc1.consul."], "127.0.0.11");
    assert_eq!(extra_a["node3.node.dc1.consul."], "127.0.0.13");
    assert_eq!(txt_records(&m.additionals), ["hello world", "rack=r1"]);

    // Tags: legacy form, RFC 2782 with a tag, RFC 2782 "any" with and without `service`.
    let m = udp(addr, "v1.web.service.consul.", RecordType::A, None).await;
    assert_eq!(a_records(&m.answers), ["127.0.0.11"]);
    let m = udp(addr, "PRIMARY.web.service.consul.", RecordType::A, None).await;
    assert_eq!(
        a_records(&m.answers),
        ["127.0.0.11"],
        "tags match case-insensitively"
    );
    let m = udp(addr, "_web._v2.service.consul.", RecordType::SRV, None).await;
    assert_eq!(srv_records(&m.answers).len(), 1);
    assert_eq!(srv_records(&m.answers)[0].2, 8081);
    for n in [
        "_web._tcp.service.consul.",
        "_web._tcp.consul.",
        "_web._tcp.dc1.consul.",
    ] {
        let m = udp(addr, n, RecordType::SRV, Some(4096)).await;
        assert_eq!(srv_records(&m.answers).len(), 3, "{n}");
    }
    let m = udp(addr, "nosuchtag.web.service.consul.", RecordType::A, None).await;
    assert_eq!(rcode(&m), NXDOMAIN);
    assert!(soa_in_authority(&m));

    // A service with its own IP: A is that IP; the SRV target is its .addr name.
    let m = udp(addr, "api.service.consul.", RecordType::A, None).await;
    assert_eq!(a_records(&m.answers), ["127.0.0.99"]);
    let m = udp(addr, "api.service.consul.", RecordType::SRV, None).await;
    assert_eq!(srv_records(&m.answers)[0].3, "7f000063.addr.dc1.consul.");
    assert_eq!(
        m.additionals[0].name.to_string(),
        "7f000063.addr.dc1.consul."
    );
    assert_eq!(a_records(&m.additionals), ["127.0.0.99"]);

    // IPv6: AAAA answers, A is NODATA with the SOA.
    let m = udp(addr, "six.service.consul.", RecordType::AAAA, None).await;
    assert_eq!(a_records(&m.answers), ["::1"]);
    let m = udp(addr, "six.service.consul.", RecordType::A, None).await;
    assert_eq!(rcode(&m), NOERROR);
    assert!(m.answers.is_empty());
    assert!(soa_in_authority(&m));
    let m = udp(addr, "web.service.consul.", RecordType::ANY, None).await;
    assert_eq!(a_records(&m.answers).len(), 3);

    // A hostname address is a CNAME.
    let m = udp(addr, "ext.service.consul.", RecordType::A, None).await;
    match &m.answers[0].data {
        RData::CNAME(n) => assert_eq!(n.0.to_string(), "example.org."),
        other => panic!("want CNAME, got {other:?}"),
    }
    let m = udp(addr, "ext.service.consul.", RecordType::SRV, None).await;
    assert_eq!(srv_records(&m.answers)[0].3, "example.org.");

    // The servers.
    let m = udp(addr, "consul.service.consul.", RecordType::A, None).await;
    assert_eq!(a_records(&m.answers), ["127.0.0.1"]);
    dns.shutdown().await;
}

#[tokio::test]
async fn every_srv_answer_carries_its_own_address_record() {
    let c = Catalog::default();
    c.node("n1", "127.0.0.21", &[("k", "v")]);
    for port in [1000, 1001, 1002] {
        c.register(&Inst::new("n1", "127.0.0.21", "multi", port));
    }
    c.register(&Inst::new("n2", "127.0.0.22", "multi", 1000));
    let dns = start(&c, test_config()).await;
    for edns in [None, Some(4096)] {
        let m = udp(
            dns.local_addr(),
            "multi.service.consul.",
            RecordType::SRV,
            edns,
        )
        .await;
        let srv = srv_records(&m.answers);
        // Without EDNS, udp_answer_limit (3) applies.
        assert_eq!(srv.len(), if edns.is_some() { 4 } else { 3 }, "{srv:?}");
        // As Consul: one address record per SRV answer, in the answers' order, also when
        // several answers share a target (HAProxy pairs them one to one).
        let glue: Vec<(String, String)> = m
            .additionals
            .iter()
            .filter_map(|r| match &r.data {
                RData::A(a) => Some((r.name.to_string(), a.0.to_string())),
                _ => None,
            })
            .collect();
        assert_eq!(glue.len(), srv.len(), "{glue:?}");
        let targets: Vec<String> = m
            .answers
            .iter()
            .filter_map(|r| match &r.data {
                RData::SRV(s) => Some(s.target.to_string()),
                _ => None,
            })
            .collect();
        let owners: Vec<String> = glue.iter().map(|g| g.0.clone()).collect();
        assert_eq!(owners, targets);
        let on_n1 = srv.iter().filter(|s| s.3.starts_with("n1.")).count();
        assert!(on_n1 >= 2, "{srv:?}");
        assert_eq!(glue.iter().filter(|g| g.1 == "127.0.0.21").count(), on_n1);
    }
    // A answers: one record per address.
    let m = udp(
        dns.local_addr(),
        "multi.service.consul.",
        RecordType::A,
        Some(4096),
    )
    .await;
    assert_eq!(a_records(&m.answers), ["127.0.0.21", "127.0.0.22"]);
    dns.shutdown().await;
}

#[tokio::test]
async fn health_filtering() {
    let c = sample();
    let dns = start(&c, test_config()).await;
    let addr = dns.local_addr();
    // db: the critical instance is never returned.
    let m = udp(addr, "db.service.consul.", RecordType::SRV, None).await;
    assert_eq!(srv_records(&m.answers).len(), 1);
    assert_eq!(srv_records(&m.answers)[0].2, 5433);

    // All critical: NXDOMAIN.
    let only = Inst::new("node2", "127.0.0.12", "db", 5433);
    c.set_check(&only, status::CRITICAL);
    let m = udp(addr, "db.service.consul.", RecordType::A, None).await;
    assert_eq!(rcode(&m), NXDOMAIN);
    assert!(soa_in_authority(&m));
    c.set_check(&only, status::PASSING);
    let m = udp(addr, "db.service.consul.", RecordType::A, None).await;
    assert_eq!(a_records(&m.answers), ["127.0.0.12"]);
    dns.shutdown().await;

    // only_passing leaves out the warning instance too.
    let mut cfg = test_config();
    cfg.only_passing = true;
    let dns = start(&c, cfg).await;
    let m = udp(dns.local_addr(), "web.service.consul.", RecordType::A, None).await;
    assert_eq!(a_records(&m.answers), ["127.0.0.11", "127.0.0.13"]);
    dns.shutdown().await;
}

#[tokio::test]
async fn a_node_check_counts() {
    let c = sample();
    let dns = start(&c, test_config()).await;
    let addr = dns.local_addr();
    c.apply(registry_proto::Command::Register(
        registry_proto::command::RegisterRequest {
            node: registry_proto::model::Node {
                node: "node3".into(),
                ..Default::default()
            },
            skip_node_update: true,
            service: None,
            checks: vec![registry_proto::model::HealthCheck {
                node: "node3".into(),
                check_id: "serfHealth".into(),
                status: status::CRITICAL.into(),
                ..Default::default()
            }],
        },
    ));
    let m = udp(addr, "web.service.consul.", RecordType::A, None).await;
    assert_eq!(a_records(&m.answers), ["127.0.0.11", "127.0.0.12"]);
    dns.shutdown().await;
}

#[tokio::test]
async fn nodes_addr_and_ptr() {
    let c = sample();
    let dns = start(&c, test_config()).await;
    let addr = dns.local_addr();

    for n in ["node1.node.consul.", "NODE1.node.dc1.consul."] {
        let m = udp(addr, n, RecordType::A, None).await;
        assert_eq!(a_records(&m.answers), ["127.0.0.11"], "{n}");
        // Node metadata is in the additional section of an A answer.
        assert_eq!(txt_records(&m.additionals), ["hello world", "rack=r1"]);
    }
    let m = udp(addr, "node1.node.consul.", RecordType::TXT, None).await;
    assert_eq!(txt_records(&m.answers), ["hello world", "rack=r1"]);
    let m = udp(addr, "node1.node.consul.", RecordType::ANY, None).await;
    assert_eq!(m.answers.len(), 3);
    let m = udp(addr, "v6node.node.consul.", RecordType::AAAA, None).await;
    assert_eq!(a_records(&m.answers), ["::1"]);
    let m = udp(addr, "node1.node.consul.", RecordType::AAAA, None).await;
    assert_eq!((rcode(&m), m.answers.len()), (NOERROR, 0));
    assert!(soa_in_authority(&m));
    let m = udp(addr, "nosuch.node.consul.", RecordType::A, None).await;
    assert_eq!(rcode(&m), NXDOMAIN);
    assert!(soa_in_authority(&m));

    let m = udp(addr, "c000020a.addr.consul.", RecordType::A, None).await;
    assert_eq!(a_records(&m.answers), ["192.0.2.10"]);
    let m = udp(addr, "c000020a.addr.dc1.consul.", RecordType::A, None).await;
    assert_eq!(a_records(&m.answers), ["192.0.2.10"]);
    let m = udp(
        addr,
        "20010db8000000000000000000000001.addr.consul.",
        RecordType::AAAA,
        None,
    )
    .await;
    assert_eq!(a_records(&m.answers), ["2001:db8::1"]);
    let m = udp(addr, "zz.addr.consul.", RecordType::A, None).await;
    assert_eq!(rcode(&m), NXDOMAIN);

    // Reverse: a node address, then a service address.
    let m = udp(addr, "11.0.0.127.in-addr.arpa.", RecordType::PTR, None).await;
    assert_eq!(rcode(&m), NOERROR);
    match &m.answers[0].data {
        RData::PTR(p) => assert_eq!(p.0.to_string(), "node1.node.dc1.consul."),
        other => panic!("want PTR, got {other:?}"),
    }
    let m = udp(addr, "99.0.0.127.in-addr.arpa.", RecordType::PTR, None).await;
    match &m.answers[0].data {
        RData::PTR(p) => assert_eq!(p.0.to_string(), "api.service.dc1.consul."),
        other => panic!("want PTR, got {other:?}"),
    }
    let v6 = "1.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.ip6.arpa.";
    let m = udp(addr, v6, RecordType::PTR, None).await;
    match &m.answers[0].data {
        RData::PTR(p) => assert_eq!(p.0.to_string(), "v6node.node.dc1.consul."),
        other => panic!("want PTR, got {other:?}"),
    }
    let m = udp(addr, "1.2.3.4.in-addr.arpa.", RecordType::PTR, None).await;
    assert_eq!(rcode(&m), NXDOMAIN);
    assert!(soa_in_authority(&m));
    dns.shutdown().await;
}

#[tokio::test]
async fn negative_answers_soa_ns() {
    let c = sample();
    let dns = start(&c, test_config()).await;
    let addr = dns.local_addr();

    let m = udp(addr, "nosuch.service.consul.", RecordType::A, None).await;
    assert_eq!(rcode(&m), NXDOMAIN);
    assert!(m.metadata.authoritative);
    let soa = m.authorities.iter().find_map(|r| match &r.data {
        RData::SOA(s) => Some((r.name.to_string(), s.clone())),
        _ => None,
    });
    let (owner, soa) = soa.expect("SOA in authority");
    assert_eq!(owner, "consul.");
    assert_eq!(soa.mname.to_string(), "ns.consul.");
    assert_eq!(soa.rname.to_string(), "hostmaster.consul.");
    assert_eq!(
        (soa.refresh, soa.retry, soa.expire, soa.minimum),
        (3600, 600, 86400, 0)
    );

    // Another datacenter is not served yet.
    let m = udp(addr, "web.service.dc2.consul.", RecordType::A, None).await;
    assert_eq!(rcode(&m), NXDOMAIN);
    assert!(soa_in_authority(&m));
    // Names that only have names below them are NODATA, not NXDOMAIN.
    for n in ["consul.", "service.consul.", "node.consul."] {
        let m = udp(addr, n, RecordType::A, None).await;
        assert_eq!((rcode(&m), m.answers.len()), (NOERROR, 0), "{n}");
        assert!(soa_in_authority(&m), "{n}");
    }
    // A known service asked for a type it has none of.
    let m = udp(addr, "web.service.consul.", RecordType::MX, None).await;
    assert_eq!((rcode(&m), m.answers.len()), (NOERROR, 0));
    assert!(soa_in_authority(&m));

    let m = udp(addr, "consul.", RecordType::SOA, None).await;
    assert!(matches!(m.answers[0].data, RData::SOA(_)));
    assert!(m
        .authorities
        .iter()
        .any(|r| matches!(&r.data, RData::NS(n) if n.0.to_string() == "server1.node.dc1.consul.")));
    assert_eq!(a_records(&m.additionals), ["127.0.0.1"]);

    let m = udp(addr, "consul.", RecordType::NS, None).await;
    assert_eq!(m.answers.len(), 1);
    assert_eq!(m.answers[0].name.to_string(), "consul.");
    assert_eq!(a_records(&m.additionals), ["127.0.0.1"]);

    let m = udp(addr, "consul.", RecordType::AXFR, None).await;
    assert_eq!(rcode(&m), NOTIMP);

    // Outside the domain without recursors: REFUSED.
    let m = udp(addr, "example.org.", RecordType::A, None).await;
    assert_eq!(rcode(&m), REFUSED);
    dns.shutdown().await;
}

#[tokio::test]
async fn ttls_and_alt_domain() {
    let c = sample();
    let mut cfg = test_config();
    cfg.node_ttl = Duration::from_secs(10);
    cfg.service_ttl.insert("*".into(), Duration::from_secs(5));
    cfg.service_ttl
        .insert("web".into(), Duration::from_secs(30));
    cfg.service_ttl.insert("d*".into(), Duration::from_secs(7));
    cfg.alt_domain = "registry.example.".into();
    cfg.soa.min_ttl = 2;
    let dns = start(&c, cfg).await;
    let addr = dns.local_addr();
    let ttls = |m: &Message| m.answers.iter().map(|r| r.ttl).collect::<HashSet<_>>();
    let m = udp(addr, "web.service.consul.", RecordType::A, None).await;
    assert_eq!(ttls(&m), HashSet::from([30]));
    let m = udp(addr, "db.service.consul.", RecordType::A, None).await;
    assert_eq!(ttls(&m), HashSet::from([7]));
    let m = udp(addr, "api.service.consul.", RecordType::A, None).await;
    assert_eq!(ttls(&m), HashSet::from([5]));
    let m = udp(addr, "node1.node.consul.", RecordType::A, None).await;
    assert_eq!(ttls(&m), HashSet::from([10]));
    let m = udp(addr, "nosuch.service.consul.", RecordType::A, None).await;
    assert_eq!(m.authorities[0].ttl, 2);

    let m = udp(addr, "web.service.registry.example.", RecordType::SRV, None).await;
    assert_eq!(
        srv_records(&m.answers)[0].3,
        "node1.node.dc1.registry.example."
    );
    let m = udp(
        addr,
        "nosuch.service.registry.example.",
        RecordType::A,
        None,
    )
    .await;
    assert_eq!(m.authorities[0].name.to_string(), "registry.example.");
    dns.shutdown().await;
}

#[tokio::test]
async fn answers_are_shuffled() {
    let c = Catalog::default();
    for i in 0..10 {
        c.register(&Inst::new(
            &format!("n{i}"),
            &format!("127.0.1.{i}"),
            "web",
            80,
        ));
    }
    let dns = start(&c, test_config()).await;
    let mut firsts = HashSet::new();
    let mut sets = HashSet::new();
    for _ in 0..60 {
        let m = udp(dns.local_addr(), "web.service.consul.", RecordType::A, None).await;
        assert_eq!(m.answers.len(), 3, "udp_answer_limit");
        firsts.insert(a_records(&m.answers[..1]));
        sets.insert(a_records(&m.answers));
    }
    assert!(firsts.len() >= 5, "first answers seen: {firsts:?}");
    assert!(sets.len() >= 10);
    dns.shutdown().await;
}

#[tokio::test]
async fn large_service_truncation() {
    let c = Catalog::default();
    for i in 0..200u32 {
        c.register(&Inst::new(
            &format!("node-{i}"),
            &format!("127.1.{}.{}", i / 250, i % 250 + 1),
            "big",
            8000 + i as u16,
        ));
    }
    let mut cfg = test_config();
    cfg.enable_truncate = true;
    let dns = start(&c, cfg).await;
    let addr = dns.local_addr();

    // No EDNS: udp_answer_limit (3), TC because enable_truncate is on.
    let m = udp(addr, "big.service.consul.", RecordType::A, None).await;
    assert_eq!(m.answers.len(), 3);
    assert!(m.metadata.truncation);
    // EDNS 1232: as many as fit, and TC.
    let m = udp(addr, "big.service.consul.", RecordType::SRV, Some(1232)).await;
    assert!(m.metadata.truncation);
    let n = m.answers.len();
    assert!((10..200).contains(&n), "{n} SRV answers in 1232 bytes");
    assert_eq!(
        a_records(&m.additionals).len(),
        n,
        "one A per SRV target kept"
    );
    let m = udp(addr, "big.service.consul.", RecordType::A, Some(1232)).await;
    assert!(m.metadata.truncation);
    // EDNS 4096 holds all 200 A records.
    let m = udp(addr, "big.service.consul.", RecordType::A, Some(4096)).await;
    assert_eq!(m.answers.len(), 200);
    assert!(!m.metadata.truncation);

    // TCP has them all, with every target's address.
    for edns in [Some(4096), None] {
        let m = tcp(addr, "big.service.consul.", RecordType::SRV, edns).await;
        assert!(!m.metadata.truncation);
        let srv = srv_records(&m.answers);
        assert_eq!(srv.len(), 200);
        let targets: HashSet<String> = srv.iter().map(|s| s.3.clone()).collect();
        let glue: HashSet<String> = m
            .additionals
            .iter()
            .filter(|r| matches!(r.data, RData::A(_)))
            .map(|r| r.name.to_string())
            .collect();
        assert_eq!(targets, glue);
        assert_eq!(m.edns.is_some(), edns.is_some());
    }
    let m = tcp(addr, "big.service.consul.", RecordType::A, None).await;
    assert_eq!(m.answers.len(), 200);
    dns.shutdown().await;

    // Without enable_truncate the answer-count cut is silent (Consul's default), the size
    // cut is not.
    let dns = start(&c, test_config()).await;
    let m = udp(dns.local_addr(), "big.service.consul.", RecordType::A, None).await;
    assert_eq!(m.answers.len(), 3);
    assert!(!m.metadata.truncation);
    let m = udp(
        dns.local_addr(),
        "big.service.consul.",
        RecordType::SRV,
        Some(1232),
    )
    .await;
    assert!(m.metadata.truncation);
    dns.shutdown().await;

    // a_record_limit applies to TCP as well.
    let mut cfg = test_config();
    cfg.a_record_limit = 5;
    let dns = start(&c, cfg).await;
    let m = tcp(dns.local_addr(), "big.service.consul.", RecordType::A, None).await;
    assert_eq!(m.answers.len(), 5);
    assert!(!m.metadata.truncation);
    dns.shutdown().await;
}

#[tokio::test]
async fn very_large_tcp_answer_stays_valid() {
    // Past 16 KiB compression pointers cannot reach the SRV targets: names are written out.
    let c = Catalog::default();
    for i in 0..900u32 {
        c.register(&Inst::new(
            &format!("a-rather-long-node-name-{i}"),
            &format!("127.2.{}.{}", i / 250, i % 250 + 1),
            "huge",
            9000,
        ));
    }
    let dns = start(&c, test_config()).await;
    let raw = tcp_raw(
        dns.local_addr(),
        &query_bytes("huge.service.consul.", RecordType::SRV, Some(4096)),
    )
    .await;
    assert!(raw.len() > 16384 && raw.len() <= 65535, "{}", raw.len());
    let m = Message::from_vec(&raw).unwrap();
    let srv = srv_records(&m.answers);
    assert!(srv.len() > 300, "{}", srv.len());
    let targets: HashSet<String> = srv.iter().map(|s| s.3.clone()).collect();
    let glue: HashSet<String> = m
        .additionals
        .iter()
        .filter(|r| matches!(r.data, RData::A(_)))
        .map(|r| r.name.to_string())
        .collect();
    assert_eq!(targets, glue);
    dns.shutdown().await;
}

#[tokio::test]
async fn catalog_changes_show_within_milliseconds() {
    let c = sample();
    let dns = start(&c, test_config()).await;
    let addr = dns.local_addr();
    let m = udp(addr, "late.service.consul.", RecordType::A, None).await;
    assert_eq!(rcode(&m), NXDOMAIN);
    let t0 = Instant::now();
    c.register(&Inst::new("node2", "127.0.0.12", "late", 1234));
    let took = loop {
        let m = udp(addr, "late.service.consul.", RecordType::A, None).await;
        if rcode(&m) == NOERROR {
            assert_eq!(a_records(&m.answers), ["127.0.0.12"]);
            break t0.elapsed();
        }
        assert!(
            t0.elapsed() < Duration::from_secs(2),
            "change never became visible"
        );
    };
    println!("registration visible in DNS after {took:?}");
    assert!(took < Duration::from_millis(100), "{took:?}");

    // A check turning critical drops the instance; deregistration removes it.
    let web2 = Inst::new("node2", "127.0.0.12", "web", 8081);
    c.set_check(&web2, status::CRITICAL);
    let m = udp(addr, "web.service.consul.", RecordType::A, None).await;
    assert_eq!(a_records(&m.answers), ["127.0.0.11", "127.0.0.13"]);
    c.deregister("node1", "web-8080");
    let m = udp(addr, "web.service.consul.", RecordType::A, None).await;
    assert_eq!(a_records(&m.answers), ["127.0.0.13"]);
    // Node address change moves the SRV glue.
    c.node("node3", "127.0.0.33", &[]);
    let m = udp(addr, "web.service.consul.", RecordType::SRV, None).await;
    assert_eq!(a_records(&m.additionals), ["127.0.0.33"]);
    let m = udp(addr, "33.0.0.127.in-addr.arpa.", RecordType::PTR, None).await;
    assert_eq!(rcode(&m), NOERROR);
    // Repeated questions come from the cache.
    let before = dns.stats();
    for _ in 0..20 {
        udp(addr, "web.service.consul.", RecordType::A, None).await;
    }
    let after = dns.stats();
    assert_eq!(after.queries - before.queries, 20);
    assert!(after.builds - before.builds <= 2, "{before:?} {after:?}");
    assert!(after.hits - before.hits >= 18, "{before:?} {after:?}");
    dns.shutdown().await;
}

#[tokio::test]
async fn malformed_and_edns() {
    let c = sample();
    let dns = start(&c, test_config()).await;
    let addr = dns.local_addr();

    // Two questions announced, one present: FORMERR.
    let mut q = query_bytes("web.service.consul.", RecordType::A, None);
    q[5] = 2;
    let r = udp_raw(addr, &q).await.expect("FORMERR reply");
    assert_eq!(r[3] & 0x0f, FORMERR as u8);
    assert_eq!(r[..2], q[..2]);
    // Truncated question: FORMERR.
    let q = query_bytes("web.service.consul.", RecordType::A, None);
    let r = udp_raw(addr, &q[..q.len() - 3])
        .await
        .expect("FORMERR reply");
    assert_eq!(r[3] & 0x0f, FORMERR as u8);
    // Garbage shorter than a header, and responses, are dropped; the server keeps going.
    assert!(udp_raw(addr, &[1, 2, 3]).await.is_none());
    let mut resp = q.clone();
    resp[2] |= 0x80;
    assert!(udp_raw(addr, &resp).await.is_none());
    // Opcode UPDATE: NOTIMP.
    let mut up = q.clone();
    up[2] |= 5 << 3;
    let r = udp_raw(addr, &up).await.expect("NOTIMP reply");
    assert_eq!(r[3] & 0x0f, NOTIMP as u8);
    // Garbage over TCP gets FORMERR too.
    let r = tcp_raw(addr, &[0xab, 0xcd, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0xff]).await;
    assert_eq!(r[3] & 0x0f, FORMERR as u8);

    // EDNS: OPT echoed; version 1 gets BADVERS.
    let m = udp(addr, "web.service.consul.", RecordType::A, Some(1400)).await;
    assert!(m.edns.is_some());
    let mut q = query_bytes("web.service.consul.", RecordType::A, Some(1400));
    // OPT TTL: ext-rcode(1) version(1) flags(2); the version byte is 5 bytes from the end
    // of an OPT record without options (... ttl(4) rdlen(2)).
    let n = q.len();
    q[n - 5] = 1;
    let r = udp_raw(addr, &q).await.expect("BADVERS reply");
    let m = Message::from_vec(&r).unwrap();
    assert_eq!(u16::from(m.metadata.response_code), 16);
    assert!(m.answers.is_empty());

    let m = udp(addr, "web.service.consul.", RecordType::A, None).await;
    assert_eq!(rcode(&m), NOERROR);
    let _ = (SERVFAIL, REFUSED);
    dns.shutdown().await;
}

/// A tiny upstream resolver: every A question gets `ip`, others NXDOMAIN; can be told to
/// answer SERVFAIL.
async fn upstream(ip: [u8; 4], rcode: u8) -> (SocketAddr, tokio::task::JoinHandle<()>) {
    let sock = tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let addr = sock.local_addr().unwrap();
    let tcp = tokio::net::TcpListener::bind(addr).await.unwrap();
    let answer = move |q: &[u8]| -> Vec<u8> {
        let mut m = Message::from_vec(q).unwrap();
        m.metadata.message_type = hickory_proto::op::MessageType::Response;
        m.metadata.recursion_available = true;
        let qq = m.queries[0].clone();
        let rc = if rcode == 0 && qq.query_type != RecordType::A {
            3
        } else {
            rcode
        };
        m.metadata.response_code = hickory_proto::op::ResponseCode::from(0, rc);
        if rcode == 0 && qq.query_type == RecordType::A {
            m.add_answer(hickory_proto::rr::Record::from_rdata(
                qq.name.clone(),
                60,
                RData::A(hickory_proto::rr::rdata::A(ip.into())),
            ));
        }
        m.to_vec().unwrap()
    };
    let task = tokio::spawn(async move {
        let mut buf = vec![0u8; 4096];
        loop {
            tokio::select! {
                r = sock.recv_from(&mut buf) => {
                    if let Ok((n, src)) = r {
                        let _ = sock.send_to(&answer(&buf[..n]), src).await;
                    }
                }
                r = tcp.accept() => {
                    if let Ok((mut s, _)) = r {
                        use tokio::io::{AsyncReadExt, AsyncWriteExt};
                        let mut len = [0u8; 2];
                        if s.read_exact(&mut len).await.is_ok() {
                            let mut q = vec![0u8; u16::from_be_bytes(len) as usize];
                            if s.read_exact(&mut q).await.is_ok() {
                                let a = answer(&q);
                                let mut f = (a.len() as u16).to_be_bytes().to_vec();
                                f.extend_from_slice(&a);
                                let _ = s.write_all(&f).await;
                            }
                        }
                    }
                }
            }
        }
    });
    (addr, task)
}

#[tokio::test]
async fn recursors_forward_with_failover() {
    let c = sample();
    // A port where nothing answers (bound, never read), a SERVFAILing upstream, a good one.
    let silent = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    let (bad, bad_task) = upstream([127, 0, 0, 66], 2).await;
    let (good, good_task) = upstream([127, 0, 0, 77], 0).await;
    let mut cfg = test_config();
    cfg.recursors = vec![silent.local_addr().unwrap(), bad, good];
    cfg.recursor_timeout = Duration::from_millis(300);
    let dns = start(&c, cfg).await;
    let addr = dns.local_addr();

    let m = udp(addr, "www.example.org.", RecordType::A, None).await;
    assert_eq!(rcode(&m), NOERROR);
    assert_eq!(a_records(&m.answers), ["127.0.0.77"]);
    assert!(m.metadata.recursion_available);
    let m = tcp(addr, "www.example.org.", RecordType::A, None).await;
    assert_eq!(a_records(&m.answers), ["127.0.0.77"]);
    // NXDOMAIN from upstream is relayed.
    let m = udp(addr, "www.example.org.", RecordType::TXT, None).await;
    assert_eq!(rcode(&m), NXDOMAIN);
    // Our own names still come from the catalog, now with RA.
    let m = udp(addr, "web.service.consul.", RecordType::A, None).await;
    assert_eq!(a_records(&m.answers).len(), 3);
    assert!(m.metadata.recursion_available);
    // Unknown reverse names are forwarded too.
    let m = udp(addr, "4.3.2.1.in-addr.arpa.", RecordType::A, None).await;
    assert_eq!(a_records(&m.answers), ["127.0.0.77"]);
    dns.shutdown().await;

    // Every recursor failing: SERVFAIL.
    let mut cfg = test_config();
    cfg.recursors = vec![silent.local_addr().unwrap(), bad];
    cfg.recursor_timeout = Duration::from_millis(200);
    let dns = start(&c, cfg).await;
    let m = udp(dns.local_addr(), "www.example.org.", RecordType::A, None).await;
    assert_eq!(rcode(&m), SERVFAIL);
    assert!(m.metadata.recursion_available);
    dns.shutdown().await;
    bad_task.abort();
    good_task.abort();
}

#[tokio::test]
async fn dig_sees_the_same_answers() {
    if std::process::Command::new("dig")
        .arg("-v")
        .output()
        .is_err()
    {
        skip_or_fail("dig is not installed (apt-get install dnsutils)");
        return;
    }
    let c = sample();
    let dns = start(&c, test_config()).await;
    let port = dns.local_addr().port().to_string();
    let dig = move |args: &[&str]| {
        let out = std::process::Command::new("dig")
            .args(["@127.0.0.1", "-p", &port, "+time=2", "+tries=1"])
            .args(args)
            .output()
            .unwrap();
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    let out = tokio::task::spawn_blocking(move || {
        (
            dig(&["+short", "web.service.consul", "A"]),
            dig(&["+short", "_web._tcp.service.consul", "SRV"]),
            dig(&["+tcp", "+short", "node1.node.consul", "TXT"]),
            dig(&["nosuch.service.consul", "A"]),
            dig(&["+short", "-x", "127.0.0.11"]),
        )
    })
    .await
    .unwrap();
    let mut a: Vec<&str> = out.0.lines().collect();
    a.sort();
    assert_eq!(a, ["127.0.0.11", "127.0.0.12", "127.0.0.13"]);
    assert!(
        out.1.contains("1 3 8081 node2.node.dc1.consul."),
        "{}",
        out.1
    );
    assert!(out.2.contains("\"rack=r1\""), "{}", out.2);
    assert!(out.3.contains("status: NXDOMAIN"), "{}", out.3);
    assert!(out.3.contains("AUTHORITY: 1"), "{}", out.3);
    assert_eq!(out.4.trim(), "node1.node.dc1.consul.");
    dns.shutdown().await;
}
