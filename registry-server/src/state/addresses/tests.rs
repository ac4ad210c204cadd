use super::*;
use crate::fsm;
use crate::state::Store;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use registry_proto::command::{CatalogVerb, DeregisterRequest, RegisterRequest, TxnOp};
use registry_proto::model::HealthCheck;
use registry_proto::{Command, CommandResponse};

const NODES: [&str; 5] = ["n1", "n2", "n3", "n4", "n5"];
const IDS: [&str; 4] = ["a", "b", "c", "d"];
const NAMES: [&str; 3] = ["web", "db", "cache"];
/// Addresses written: IPs shared on purpose, an IPv6 one, a host name and the empty one
/// (neither of which is indexed).
const ADDRS: [&str; 6] = [
    "10.0.0.1",
    "10.0.0.2",
    "10.0.0.3",
    "fd00::1",
    "host.example",
    "",
];

/// The reverse lookup as it was before the index: the first node by name with the
/// address, else the first instance by (node, ID).
fn scan(db: &Db, ip: IpAddr) -> Option<AddrRef> {
    for n in db.nodes.values() {
        if parse_ip(&n.address) == Some(ip) {
            return Some(AddrRef::Node(n.node.clone()));
        }
    }
    for (node, svcs) in db.services.iter() {
        for s in svcs.values() {
            if parse_ip(&s.address) == Some(ip) {
                return Some(AddrRef::Service(node.clone(), s.id.clone()));
            }
        }
    }
    None
}

fn owner(db: &Db, ip: IpAddr) -> Option<AddrRef> {
    db.address_owner(ip).map(|o| match o {
        AddrOwner::Node(n) => AddrRef::Node(n.node.clone()),
        AddrOwner::Service { node, service } => {
            AddrRef::Service(node.to_string(), service.id.clone())
        }
    })
}

fn check(db: &Db, what: &str) {
    assert_eq!(*db.addresses, db.computed_addresses(), "after {what}");
    for a in ADDRS {
        if let Some(ip) = parse_ip(a) {
            assert_eq!(owner(db, ip), scan(db, ip), "{a} after {what}");
        }
    }
}

fn pick<'a>(rng: &mut StdRng, from: &[&'a str]) -> &'a str {
    from[rng.gen_range(0..from.len())]
}

fn node(rng: &mut StdRng) -> Node {
    Node {
        node: pick(rng, &NODES).to_string(),
        address: pick(rng, &ADDRS).to_string(),
        ..Default::default()
    }
}

fn service(rng: &mut StdRng) -> NodeService {
    NodeService {
        id: pick(rng, &IDS).to_string(),
        service: pick(rng, &NAMES).to_string(),
        address: pick(rng, &ADDRS).to_string(),
        port: rng.gen_range(1..4),
        ..Default::default()
    }
}

/// One catalog operation of a transaction, maybe one that fails (a stale CAS).
fn txn_op(rng: &mut StdRng, db: &Db) -> TxnOp {
    let index = if rng.gen_bool(0.2) { 999_999 } else { 0 };
    let verb = |rng: &mut StdRng| {
        if index > 0 {
            CatalogVerb::Cas
        } else if rng.gen_bool(0.25) {
            CatalogVerb::Delete
        } else {
            CatalogVerb::Set
        }
    };
    match rng.gen_range(0..3) {
        0 => {
            let verb = verb(rng);
            let mut n = node(rng);
            if n.address.is_empty() && !db.nodes.contains_key(&n.node) {
                n.address = "10.0.0.1".into();
            }
            TxnOp::Node {
                verb,
                node: n,
                index,
            }
        }
        1 => TxnOp::Service {
            verb: verb(rng),
            node: pick(rng, &NODES).to_string(),
            service: service(rng),
            index,
        },
        _ => TxnOp::Check {
            verb: CatalogVerb::Set,
            check: HealthCheck {
                node: pick(rng, &NODES).to_string(),
                check_id: "c".into(),
                name: "c".into(),
                status: "passing".into(),
                ..Default::default()
            },
            index,
        },
    }
}

#[test]
fn the_index_equals_a_full_recomputation_after_random_writes() {
    let (mut rollbacks, mut restores, mut shared) = (0, 0, 0);
    for seed in 0..12u64 {
        let mut rng = StdRng::seed_from_u64(seed);
        let store = Store::new();
        let mut i = 0u64;
        let mut apply = |cmd: &Command| {
            i += 1;
            fsm::apply(&store, i, cmd)
        };
        for step in 0..300 {
            let (what, cmd) = match rng.gen_range(0..10) {
                0..=2 => {
                    let n = node(&mut rng);
                    let svc = rng.gen_bool(0.5).then(|| service(&mut rng));
                    let cmd = Command::Register(RegisterRequest {
                        node: n,
                        skip_node_update: false,
                        service: svc,
                        checks: Vec::new(),
                    });
                    ("register", cmd)
                }
                3 => {
                    let cmd = Command::Deregister(DeregisterRequest {
                        node: pick(&mut rng, &NODES).to_string(),
                        service_id: Some(pick(&mut rng, &IDS).to_string()),
                        check_id: None,
                    });
                    ("service deregistration", cmd)
                }
                4 => {
                    let cmd = Command::Deregister(DeregisterRequest {
                        node: pick(&mut rng, &NODES).to_string(),
                        service_id: None,
                        check_id: None,
                    });
                    ("node deletion", cmd)
                }
                5..=8 => {
                    let db = store.read().clone();
                    let ops = (0..rng.gen_range(1..6))
                        .map(|_| txn_op(&mut rng, &db))
                        .collect();
                    ("transaction", Command::Txn(ops))
                }
                _ => {
                    let state = store.read().encode().expect("encode");
                    ("snapshot restore", Command::Restore { state })
                }
            };
            let before = store.read().clone();
            let resp = apply(&cmd);
            let db = store.read();
            if let CommandResponse::Txn(r) = &resp {
                if !r.errors.is_empty() {
                    // Rolled back: everything as it was, the address index included.
                    let mut after = db.clone();
                    after.index = before.index;
                    assert!(after == before, "seed {seed} step {step}: rollback");
                    rollbacks += 1;
                }
            }
            restores += usize::from(what == "snapshot restore");
            shared += db.addresses.values().filter(|refs| refs.len() > 1).count();
            check(&db, &format!("seed {seed} step {step}: {what}"));
        }
    }
    // The sequences did exercise what they are meant to.
    assert!(
        rollbacks > 50 && restores > 50 && shared > 100,
        "{rollbacks} {restores} {shared}"
    );
}

#[test]
fn instances_at_their_nodes_address_are_found_when_the_node_is_hidden() {
    let store = Store::new();
    let reg = |i: u64, node: &str, addr: &str, id: &str, svc_addr: &str| {
        fsm::apply(
            &store,
            i,
            &Command::Register(RegisterRequest {
                node: Node {
                    node: node.into(),
                    address: addr.into(),
                    ..Default::default()
                },
                skip_node_update: false,
                service: Some(NodeService {
                    id: id.into(),
                    service: format!("svc-{id}"),
                    address: svc_addr.into(),
                    ..Default::default()
                }),
                checks: Vec::new(),
            }),
        )
    };
    reg(1, "a", "10.0.0.1", "s1", "10.0.0.1");
    reg(2, "b", "10.0.0.2", "s0", "10.0.0.1");
    reg(3, "c", "10.0.0.3", "s2", "10.0.0.3");
    let ip: IpAddr = "10.0.0.1".parse().expect("ip");
    let db = store.read().clone();
    // a's instance at a's own address is not listed: a answers for it.
    assert_eq!(
        db.addresses[&ip].as_slice(),
        [
            AddrRef::Node("a".into()),
            AddrRef::Service("b".into(), "s0".into())
        ]
    );
    assert_eq!(owner(&db, ip), Some(AddrRef::Node("a".into())));
    // A view without node a (hidden by ACLs) answers a's instance, first by (node, ID).
    let mut view = db.clone();
    view.nodes.remove("a");
    assert_eq!(owner(&view, ip), scan(&view, ip));
    assert_eq!(
        owner(&view, ip),
        Some(AddrRef::Service("a".into(), "s1".into()))
    );
    view.nodes.remove("c");
    let ip3: IpAddr = "10.0.0.3".parse().expect("ip");
    assert_eq!(
        owner(&view, ip3),
        Some(AddrRef::Service("c".into(), "s2".into()))
    );
    // Without the instance of a, b's answers.
    view.services.remove("a");
    assert_eq!(
        owner(&view, ip),
        Some(AddrRef::Service("b".into(), "s0".into()))
    );
}
