//! Two and three gossip members in one process on loopback UDP ports.

use super::*;
use registry_server::http::UserEvent;

fn free_udp_port() -> u16 {
    let s = std::net::UdpSocket::bind("127.0.0.1:0").expect("bind");
    s.local_addr().expect("addr").port()
}

fn config(name: &str, port: u16, join: Vec<String>) -> GossipConfig {
    let addr: SocketAddr = SocketAddr::from(([127, 0, 0, 1], port));
    let mut tags = BTreeMap::new();
    tags.insert("role".to_string(), "node".to_string());
    tags.insert("dc".to_string(), "dc1".to_string());
    GossipConfig {
        node_name: name.to_string(),
        datacenter: "dc1".to_string(),
        bind: addr,
        advertise: addr,
        tags,
        join,
        retry_interval: Duration::from_secs(1),
        interval: Duration::from_millis(100),
        phi_threshold: DEFAULT_PHI_THRESHOLD,
        reconnect_timeout: Duration::from_secs(3),
        keyring: None,
    }
}

async fn wait_for(what: &str, secs: u64, mut f: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(secs);
    while !f() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn status(g: &Gossip, name: &str) -> Option<MemberStatus> {
    g.members()
        .iter()
        .find(|m| m.name == name)
        .map(|m| m.status)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn members_join_fail_reap_and_events() {
    let (pa, pb, pc) = (free_udp_port(), free_udp_port(), free_udp_port());
    let ev_a = Arc::new(UserEvents::new());
    let ev_b = Arc::new(UserEvents::new());
    let a = Gossip::start(config("a", pa, vec![]), ev_a.clone())
        .await
        .expect("a");
    let b = Gossip::start(
        config("b", pb, vec![format!("127.0.0.1:{pa}")]),
        ev_b.clone(),
    )
    .await
    .expect("b");
    let c = Gossip::start(config("c", pc, vec![]), Arc::new(UserEvents::new()))
        .await
        .expect("c");
    wait_for("a and b to see each other", 10, || {
        status(&a, "b") == Some(MemberStatus::Alive) && status(&b, "a") == Some(MemberStatus::Alive)
    })
    .await;
    assert_eq!(a.members()[1].tags["role"], "node");
    // An explicit join (`PUT /v1/agent/join`).
    assert_eq!(c.join(&format!("127.0.0.1:{pb}")).await, Ok(1));
    wait_for("a to see c", 10, || {
        status(&a, "c") == Some(MemberStatus::Alive)
    })
    .await;

    // An event fired on b reaches a, not b's own list twice.
    let event = UserEvent {
        id: uuid::Uuid::new_v4().to_string(),
        name: "deploy".into(),
        payload: b"v2".to_vec(),
        node_filter: String::new(),
        service_filter: String::new(),
        tag_filter: String::new(),
        version: 1,
        ltime: 0,
    };
    ev_b.broadcast(&event);
    wait_for("the event on a", 10, || {
        !ev_a.list(Some("deploy")).is_empty()
    })
    .await;
    assert_eq!(ev_a.list(None)[0].payload, b"v2");
    assert!(ev_b.list(None).is_empty());

    // c leaves gracefully: left everywhere.
    c.leave().await;
    wait_for("c left on a", 10, || {
        status(&a, "c") == Some(MemberStatus::Left)
    })
    .await;

    // b stops without leaving: failed, then reaped after reconnect_timeout.
    b.shutdown();
    wait_for("b failed on a", 15, || {
        status(&a, "b") == Some(MemberStatus::Failed)
    })
    .await;
    wait_for("b reaped on a", 10, || {
        status(&a, "b") == Some(MemberStatus::Reaped)
    })
    .await;
    assert_eq!(
        a.force_leave("nobody", false).await.unwrap_err(),
        "agent: No node found with name 'nobody'"
    );
}

#[test]
fn addresses_get_the_gossip_port() {
    assert_eq!(with_port("10.0.0.1", 8301), "10.0.0.1:8301");
    assert_eq!(with_port("10.0.0.1:9000", 8301), "10.0.0.1:9000");
    assert_eq!(with_port("::1", 8301), "[::1]:8301");
    assert_eq!(with_port("[::1]", 8301), "[::1]:8301");
    assert_eq!(with_port("consul.svc", 8301), "consul.svc:8301");
    assert_eq!(with_port("consul.svc:1", 8301), "consul.svc:1");
}
