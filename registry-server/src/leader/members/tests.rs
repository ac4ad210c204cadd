use super::*;
use crate::fsm;

fn member(name: &str, status: MemberStatus) -> GossipMember {
    let mut tags = BTreeMap::new();
    tags.insert("dc".to_string(), "dc1".to_string());
    tags.insert("role".to_string(), "node".to_string());
    GossipMember {
        name: name.to_string(),
        addr: "127.0.0.9".parse().expect("ip"),
        port: 8301,
        status,
        tags,
    }
}

fn apply_all(store: &Store, cmds: &[Command]) {
    for c in cmds {
        let i = store.last_index() + 1;
        fsm::apply(store, i, c);
    }
}

fn serf(store: &Store, node: &str) -> Option<String> {
    let db = store.read();
    let status = db
        .node_checks(node)
        .find(|c| c.check_id == SERF_CHECK_ID)
        .map(|c| c.status.clone());
    status
}

#[test]
fn alive_failed_alive_left() {
    let store = Store::new();
    let mut absent = HashMap::new();
    let now = Instant::now();
    let mut plan_for = |ms: &[GossipMember]| plan(&store, ms, "me", "dc1", true, &mut absent, now);

    let cmds = plan_for(&[member("n1", MemberStatus::Alive)]);
    assert_eq!(cmds.len(), 1);
    apply_all(&store, &cmds);
    assert_eq!(serf(&store, "n1").as_deref(), Some("passing"));
    // Nothing to do a second time.
    assert!(plan(
        &store,
        &[member("n1", MemberStatus::Alive)],
        "me",
        "dc1",
        true,
        &mut HashMap::new(),
        now
    )
    .is_empty());

    let cmds = plan(
        &store,
        &[member("n1", MemberStatus::Failed)],
        "me",
        "dc1",
        true,
        &mut HashMap::new(),
        now,
    );
    apply_all(&store, &cmds);
    assert_eq!(serf(&store, "n1").as_deref(), Some("critical"));

    let cmds = plan(
        &store,
        &[member("n1", MemberStatus::Alive)],
        "me",
        "dc1",
        true,
        &mut HashMap::new(),
        now,
    );
    apply_all(&store, &cmds);
    assert_eq!(serf(&store, "n1").as_deref(), Some("passing"));

    let cmds = plan(
        &store,
        &[member("n1", MemberStatus::Left)],
        "me",
        "dc1",
        true,
        &mut HashMap::new(),
        now,
    );
    apply_all(&store, &cmds);
    assert!(store.read().nodes.get("n1").is_none());
}

#[test]
fn other_datacenters_and_self_are_left_alone() {
    let store = Store::new();
    let mut other = member("far", MemberStatus::Alive);
    other.tags.insert("dc".into(), "dc2".into());
    let cmds = plan(
        &store,
        &[other],
        "me",
        "dc1",
        true,
        &mut HashMap::new(),
        Instant::now(),
    );
    assert!(cmds.is_empty());

    apply_all(
        &store,
        &plan(
            &store,
            &[member("me", MemberStatus::Alive)],
            "me",
            "dc1",
            true,
            &mut HashMap::new(),
            Instant::now(),
        ),
    );
    let cmds = plan(
        &store,
        &[member("me", MemberStatus::Left)],
        "me",
        "dc1",
        true,
        &mut HashMap::new(),
        Instant::now(),
    );
    assert!(cmds.is_empty());
}

#[test]
fn absent_nodes_go_after_the_grace_once_settled() {
    let store = Store::new();
    let t0 = Instant::now();
    apply_all(
        &store,
        &plan(
            &store,
            &[member("ghost", MemberStatus::Alive)],
            "me",
            "dc1",
            true,
            &mut HashMap::new(),
            t0,
        ),
    );
    let mut absent = HashMap::new();
    assert!(plan(&store, &[], "me", "dc1", true, &mut absent, t0).is_empty());
    // Not settled: never removed.
    assert!(plan(
        &store,
        &[],
        "me",
        "dc1",
        false,
        &mut absent,
        t0 + ABSENT_GRACE
    )
    .is_empty());
    let cmds = plan(
        &store,
        &[],
        "me",
        "dc1",
        true,
        &mut absent,
        t0 + ABSENT_GRACE,
    );
    assert_eq!(cmds.len(), 1);
    apply_all(&store, &cmds);
    assert!(store.read().nodes.get("ghost").is_none());
}

#[test]
fn alive_servers_come_from_tags() {
    let mut s = member("s1", MemberStatus::Alive);
    s.tags.insert("role".into(), "consul".into());
    s.tags.insert("port".into(), "8300".into());
    let mut dead = s.clone();
    dead.name = "s2".into();
    dead.status = MemberStatus::Failed;
    let list = alive_servers(&[s, dead, member("c1", MemberStatus::Alive)]);
    assert_eq!(list.len(), 1);
    assert_eq!(list[0].0, "s1");
    assert_eq!(list[0].1.to_string(), "127.0.0.9:8300");
}

fn names(cmds: &[Command]) -> Vec<String> {
    cmds.iter()
        .map(|c| match c {
            Command::Register(r) => format!("{} {}", r.node.node, r.checks[0].status),
            Command::Deregister(d) => format!("deregister {}", d.node),
            other => format!("{other:?}"),
        })
        .collect()
}

#[test]
fn changes_reconcile_only_the_members_that_changed() {
    let store = Store::new();
    let mut rec = Reconciler::new("me", "dc1");
    let t0 = Instant::now();
    let mut ms: Vec<GossipMember> = ["n1", "n2", "n3"]
        .iter()
        .map(|n| member(n, MemberStatus::Alive))
        .collect();
    let cmds = rec.full(&store, &ms, true, t0);
    assert_eq!(names(&cmds), ["n1 passing", "n2 passing", "n3 passing"]);
    apply_all(&store, &cmds);
    // A full walk that finds nothing to change writes nothing; so does a pass with no change.
    assert!(rec.full(&store, &ms, true, t0).is_empty());
    assert!(rec.changes(&store, &ms, true, t0).is_empty());

    // n3's serfHealth removed behind the leader's back: a change of n2 does not look at n3.
    let i = store.last_index() + 1;
    fsm::apply(
        &store,
        i,
        &Command::Deregister(DeregisterRequest {
            node: "n3".into(),
            check_id: Some(SERF_CHECK_ID.into()),
            ..Default::default()
        }),
    );
    ms[1].status = MemberStatus::Failed;
    let cmds = rec.changes(&store, &ms, true, t0);
    assert_eq!(names(&cmds), ["n2 critical"]);
    apply_all(&store, &cmds);
    assert_eq!(serf(&store, "n2").as_deref(), Some("critical"));
    assert!(rec.changes(&store, &ms, true, t0).is_empty());
    // The next full walk puts n3's check back.
    assert_eq!(names(&rec.full(&store, &ms, true, t0)), ["n3 passing"]);

    // Left, then a new member: each reconciled as it comes.
    ms[0].status = MemberStatus::Left;
    ms.push(member("n4", MemberStatus::Alive));
    assert_eq!(
        names(&rec.changes(&store, &ms, true, t0)),
        ["deregister n1", "n4 passing"]
    );
}

#[test]
fn members_that_drop_out_go_after_the_grace() {
    let store = Store::new();
    let mut rec = Reconciler::new("me", "dc1");
    let t0 = Instant::now();
    let ms = vec![
        member("n1", MemberStatus::Alive),
        member("n2", MemberStatus::Alive),
    ];
    apply_all(&store, &rec.full(&store, &ms, true, t0));
    assert_eq!(rec.next_absent_check(t0), None);
    // n2 is no longer listed at all: absent from now on.
    let ms = vec![member("n1", MemberStatus::Alive)];
    assert!(rec.changes(&store, &ms, true, t0).is_empty());
    assert_eq!(rec.next_absent_check(t0), Some(t0 + ABSENT_GRACE));
    let later = t0 + ABSENT_GRACE;
    // Gossip not settled: kept, looked at again later.
    assert!(rec.changes(&store, &ms, false, later).is_empty());
    assert!(rec.next_absent_check(later).is_some_and(|t| t > later));
    let cmds = rec.changes(&store, &ms, true, later);
    assert_eq!(names(&cmds), ["deregister n2"]);
    apply_all(&store, &cmds);
    assert_eq!(rec.next_absent_check(later), None);
    assert!(rec.full(&store, &ms, true, later).is_empty());

    // Back before the grace ran out: not deregistered.
    let ms2 = vec![
        member("n1", MemberStatus::Alive),
        member("n3", MemberStatus::Alive),
    ];
    apply_all(&store, &rec.changes(&store, &ms2, true, later));
    assert!(rec.changes(&store, &ms, true, later).is_empty());
    assert!(rec.changes(&store, &ms2, true, later).is_empty());
    let end = later + ABSENT_GRACE * 2;
    assert!(rec.changes(&store, &ms2, true, end).is_empty());
    assert_eq!(serf(&store, "n3").as_deref(), Some("passing"));
}
