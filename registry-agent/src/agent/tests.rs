//! Agent tests against an in-process state machine (no Raft): registration defaults,
//! error texts, catalog sync, maintenance, health aggregation and reaping.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use super::*;
use registry_proto::{Command, CommandResponse};
use registry_server::query::blocking::RaftStatus;
use registry_server::query::write::Proposer;
use registry_server::state::Store;
use serde_json::json;
use std::sync::atomic::AtomicU64;

/// Applies proposals straight to a store, as a single always-leader node would.
struct FakeRaft {
    store: Arc<Store>,
    index: AtomicU64,
    writes: AtomicU64,
}

impl Proposer for FakeRaft {
    fn propose(&self, cmd: Command) -> BoxFuture<'_, Result<CommandResponse, ServerError>> {
        let i = self.index.fetch_add(1, Ordering::SeqCst) + 1;
        self.writes.fetch_add(1, Ordering::SeqCst);
        let r = registry_server::fsm::apply(&self.store, i, &cmd);
        Box::pin(async move { Ok(r) })
    }
}

impl RaftStatus for FakeRaft {
    fn is_leader(&self) -> bool {
        true
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

struct Harness {
    agent: Arc<LocalAgent>,
    store: Arc<Store>,
    raft: Arc<FakeRaft>,
}

fn harness_with(opts: AgentOptions) -> Harness {
    harness_in(opts, None, Arc::new(Store::new()))
}

fn harness_in(
    opts: AgentOptions,
    data_dir: Option<std::path::PathBuf>,
    store: Arc<Store>,
) -> Harness {
    let raft = Arc::new(FakeRaft {
        store: store.clone(),
        index: AtomicU64::new(0),
        writes: AtomicU64::new(0),
    });
    let reader = Reader::new(store.clone(), raft.clone());
    let writer = Writer::new(raft.clone());
    let mut config = ServerConfig::dev("node1");
    config.node_id = "40e4a748-2192-161a-0510-9bf59fe950b5".into();
    config.data_dir = data_dir;
    let agent = Arc::new(LocalAgent::with_options(
        Arc::new(config),
        reader,
        writer,
        opts,
    ));
    Harness { agent, store, raft }
}

fn harness() -> Harness {
    harness_with(AgentOptions::default())
}

impl Harness {
    async fn register(&self, body: Value) -> Result<(), ServerError> {
        let bytes = serde_json::to_vec(&body).unwrap();
        self.agent.register_service(&bytes, false).await
    }

    async fn register_check(&self, body: Value) -> Result<(), ServerError> {
        let bytes = serde_json::to_vec(&body).unwrap();
        self.agent.register_check(&bytes).await
    }

    fn check_ids(&self) -> Vec<String> {
        self.agent
            .checks()
            .as_object()
            .unwrap()
            .keys()
            .cloned()
            .collect()
    }

    fn catalog_check(&self, id: &str) -> Option<HealthCheck> {
        self.store
            .read()
            .checks
            .get("node1")
            .and_then(|m| m.get(id))
            .map(|c| (**c).clone())
    }

    /// This node's services in the catalog, except the server's own `consul` service.
    fn catalog_services(&self) -> Vec<String> {
        self.store
            .read()
            .services
            .get("node1")
            .map(|m| m.keys().filter(|k| *k != "consul").cloned().collect())
            .unwrap_or_default()
    }
}

#[tokio::test]
async fn service_id_and_check_id_defaults() {
    let h = harness();
    h.register(json!({"Name": "redis", "Check": {"TTL": "10s"}}))
        .await
        .unwrap();
    let svcs = h.agent.services();
    assert_eq!(svcs["redis"]["ID"], "redis", "ID defaults to Name");
    assert_eq!(svcs["redis"]["Datacenter"], "dc1");
    let checks = h.agent.checks();
    let c = &checks["service:redis"];
    assert_eq!(c["Name"], "Service 'redis' check");
    assert_eq!(c["Status"], "critical");
    assert_eq!(c["ServiceID"], "redis");
    assert_eq!(c["ServiceName"], "redis");
    assert_eq!(c["Type"], "ttl");
    assert_eq!(c["Node"], "node1");

    // Several checks: service:<id>:<n>, 1-based, explicit IDs kept.
    h.register(json!({
        "Name": "web", "ID": "web1",
        "Checks": [{"TTL": "10s"}, {"CheckID": "own", "TTL": "10s"}, {"TTL": "10s", "Status": "passing"}]
    }))
    .await
    .unwrap();
    let ids = h.check_ids();
    for id in ["service:web1:1", "own", "service:web1:3"] {
        assert!(ids.contains(&id.to_string()), "{id} in {ids:?}");
    }
    assert_eq!(h.agent.checks()["service:web1:3"]["Status"], "passing");

    // A standalone check's ID defaults to its name.
    h.register_check(json!({"Name": "mem", "TTL": "30s"}))
        .await
        .unwrap();
    assert_eq!(h.agent.checks()["mem"]["CheckID"], "mem");
    assert_eq!(h.agent.checks()["mem"]["ServiceID"], "");
}

#[tokio::test]
async fn registration_reaches_the_catalog_with_the_node() {
    let h = harness();
    h.register(json!({"name": "api", "port": 9000, "tags": ["v1"], "check": {"ttl": "10s", "status": "passing"}}))
        .await
        .unwrap();
    let db = h.store.read();
    let node = db.nodes.get("node1").expect("node registered");
    assert_eq!(node.address, "127.0.0.1");
    assert_eq!(node.id, "40e4a748-2192-161a-0510-9bf59fe950b5");
    assert_eq!(node.meta["consul-network-segment"], "");
    let svc = &db.services["node1"]["api"];
    assert_eq!(svc.port, 9000);
    assert_eq!(svc.tags, vec!["v1".to_string()]);
    let serf = &db.checks["node1"]["serfHealth"];
    assert_eq!(serf.status, "passing");
    assert_eq!(serf.name, "Serf Health Status");
    assert_eq!(serf.output, "Agent alive and reachable");
    assert_eq!(db.checks["node1"]["service:api"].status, "passing");
    // A server registers its own `consul` service with the node (RPC port).
    assert_eq!(db.services["node1"]["consul"].port, 8300);
    drop(db);
    assert!(h.agent.local().all_in_sync());
    // serfHealth is the catalog's, not an agent check.
    assert!(h.agent.checks().get("serfHealth").is_none());
}

#[tokio::test]
async fn validation_errors() {
    let h = harness();
    let e = h.register(json!({"Port": 1})).await.unwrap_err();
    assert!(
        matches!(&e, ServerError::BadRequest(m) if m == "Missing service name"),
        "{e:?}"
    );
    let e = h
        .register(json!({"Name": "x", "Check": {"HTTP": "http://127.0.0.1:1/"}}))
        .await
        .unwrap_err();
    assert!(
        matches!(&e, ServerError::BadRequest(m) if m.starts_with("Invalid check: Interval must be > 0")),
        "{e:?}"
    );
    let e = h.register(json!({"Name": 5})).await.unwrap_err();
    assert!(
        matches!(&e, ServerError::BadRequest(m) if m.starts_with("Request decode failed: ")),
        "{e:?}"
    );

    let e = h.register_check(json!({"TTL": "10s"})).await.unwrap_err();
    assert!(
        matches!(&e, ServerError::BadRequest(m) if m == "Missing check name"),
        "{e:?}"
    );
    let e = h
        .register_check(json!({"Name": "x", "TTL": "10s", "Status": "wonderful"}))
        .await
        .unwrap_err();
    assert!(
        matches!(&e, ServerError::BadRequest(m) if m == "Bad check status"),
        "{e:?}"
    );
    let e = h
        .register_check(json!({"Name": "x", "TTL": "10s", "ServiceID": "nope"}))
        .await
        .unwrap_err();
    assert!(
        matches!(&e, ServerError::NotFound(m) if m == "ServiceID \"nope\" does not exist"),
        "{e:?}"
    );
    assert!(h.agent.checks().get("x").is_none());

    // Script checks are refused unless enabled.
    let e = h
        .register_check(json!({"Name": "s", "Args": ["/bin/true"], "Interval": "10s"}))
        .await
        .unwrap_err();
    assert!(
        matches!(&e, ServerError::Internal(m) if m.starts_with("Scripts are disabled")),
        "{e:?}"
    );
}

#[tokio::test]
async fn check_updates_and_their_errors() {
    let h = harness();
    h.register_check(json!({"Name": "mem", "TTL": "30s"}))
        .await
        .unwrap();
    h.agent
        .update_check("mem", "passing", "ok".into())
        .await
        .unwrap();
    assert_eq!(h.agent.checks()["mem"]["Status"], "passing");
    assert_eq!(h.catalog_check("mem").unwrap().status, "passing");
    assert_eq!(h.catalog_check("mem").unwrap().output, "ok");

    let e = h
        .agent
        .update_check("nope", "passing", String::new())
        .await
        .unwrap_err();
    assert!(
        matches!(&e, ServerError::NotFound(m) if m == "Unknown check ID \"nope\". Ensure that the check ID is passed, not the check name."),
        "{e:?}"
    );

    // Maintenance checks have no TTL.
    h.agent.node_maintenance(true, String::new()).await.unwrap();
    let e = h
        .agent
        .update_check(NODE_MAINT_CHECK_ID, "passing", String::new())
        .await
        .unwrap_err();
    assert!(
        matches!(&e, ServerError::Internal(m) if m.contains("does not have associated TTL")),
        "{e:?}"
    );

    h.agent.deregister_check("mem").await.unwrap();
    assert!(h.catalog_check("mem").is_none());
    let e = h.agent.deregister_check("mem").await.unwrap_err();
    assert!(matches!(e, ServerError::NotFound(_)));
}

#[tokio::test]
async fn output_only_ttl_updates_do_not_write() {
    let h = harness();
    h.register_check(json!({"Name": "mem", "TTL": "30s"}))
        .await
        .unwrap();
    h.agent
        .update_check("mem", "passing", "1".into())
        .await
        .unwrap();
    let before = h.raft.writes.load(Ordering::SeqCst);
    for i in 2..10 {
        h.agent
            .update_check("mem", "passing", i.to_string())
            .await
            .unwrap();
    }
    assert_eq!(
        h.raft.writes.load(Ordering::SeqCst),
        before,
        "no Raft write for output-only changes"
    );
    assert_eq!(
        h.agent.checks()["mem"]["Output"],
        "9",
        "the agent shows the newest output"
    );
    assert_eq!(h.catalog_check("mem").unwrap().output, "1");
    // A status change writes at once, with the latest output.
    h.agent
        .update_check("mem", "warning", "10".into())
        .await
        .unwrap();
    assert_eq!(h.raft.writes.load(Ordering::SeqCst), before + 1);
    assert_eq!(h.catalog_check("mem").unwrap().output, "10");
}

#[tokio::test]
async fn re_registration_keeps_check_state_and_replace_removes_others() {
    let h = harness();
    let def = |checks: Value| json!({"Name": "svc", "ID": "svc1", "Checks": checks});
    h.register(def(
        json!([{"CheckID": "c1", "TTL": "30s"}, {"CheckID": "c2", "TTL": "30s"}]),
    ))
    .await
    .unwrap();
    h.agent
        .update_check("c1", "passing", "fine".into())
        .await
        .unwrap();
    // Re-registering keeps c1's status and output; without the flag c2 stays.
    h.register(def(json!([{"CheckID": "c1", "TTL": "30s"}])))
        .await
        .unwrap();
    assert_eq!(h.agent.checks()["c1"]["Status"], "passing");
    assert_eq!(h.agent.checks()["c1"]["Output"], "fine");
    let mut ids = h.check_ids();
    ids.sort();
    assert_eq!(ids, ["c1", "c2"]);

    let bytes = serde_json::to_vec(&def(json!([{"CheckID": "c1", "TTL": "30s"}]))).unwrap();
    h.agent.register_service(&bytes, true).await.unwrap();
    assert_eq!(h.check_ids(), ["c1"]);
    assert!(h.catalog_check("c2").is_none());
    assert!(h.catalog_check("c1").is_some());
}

#[tokio::test]
async fn deregistration() {
    let h = harness();
    h.register(json!({"Name": "gone", "Check": {"TTL": "30s"}}))
        .await
        .unwrap();
    assert_eq!(h.catalog_services(), ["gone"]);
    h.agent.deregister_service("gone").await.unwrap();
    assert!(h.catalog_services().is_empty());
    assert!(h.catalog_check("service:gone").is_none());
    assert!(h.agent.checks().as_object().unwrap().is_empty());
    let e = h.agent.deregister_service("gone").await.unwrap_err();
    assert!(
        matches!(&e, ServerError::NotFound(m) if m == "Unknown service ID \"gone\". Ensure that the service ID is passed, not the service name."),
        "{e:?}"
    );
}

#[tokio::test]
async fn maintenance_and_health() {
    let h = harness();
    h.register(json!({"Name": "lb", "ID": "lb-1", "Check": {"TTL": "30s", "Status": "passing"}}))
        .await
        .unwrap();
    h.register(json!({"Name": "lb", "ID": "lb-2", "Check": {"TTL": "30s"}}))
        .await
        .unwrap();
    let one = h.agent.service_health("lb-1", false);
    assert_eq!(one.len(), 1);
    assert_eq!(one[0].status, "passing");
    assert_eq!(one[0].service["ID"], "lb-1");
    let all = h.agent.service_health("lb", true);
    let statuses: Vec<&str> = all.iter().map(|s| s.status.as_str()).collect();
    assert_eq!(statuses, ["passing", "critical"]);
    assert!(h.agent.service_health("nope", false).is_empty());

    h.agent
        .service_maintenance("lb-1", true, String::new())
        .await
        .unwrap();
    let c = &h.agent.checks()["_service_maintenance:lb-1"];
    assert_eq!(c["Status"], "critical");
    assert_eq!(c["Name"], "Service Maintenance Mode");
    assert_eq!(c["Notes"], DEFAULT_SERVICE_MAINT_REASON);
    assert_eq!(c["ServiceID"], "lb-1");
    assert_eq!(
        h.agent.service_health("lb-1", false)[0].status,
        "maintenance"
    );
    assert_eq!(
        h.catalog_check("_service_maintenance:lb-1").unwrap().status,
        "critical"
    );
    h.agent
        .service_maintenance("lb-1", false, String::new())
        .await
        .unwrap();
    assert!(h.catalog_check("_service_maintenance:lb-1").is_none());
    assert_eq!(h.agent.service_health("lb-1", false)[0].status, "passing");
    let e = h
        .agent
        .service_maintenance("nope", true, String::new())
        .await
        .unwrap_err();
    assert!(
        matches!(&e, ServerError::NotFound(m) if m == "No service registered with ID \"nope\""),
        "{e:?}"
    );

    // Node maintenance applies to every service.
    h.agent
        .node_maintenance(true, "patching".into())
        .await
        .unwrap();
    assert_eq!(h.agent.checks()["_node_maintenance"]["Notes"], "patching");
    assert_eq!(
        h.agent.service_health("lb-1", false)[0].status,
        "maintenance"
    );
    h.agent
        .node_maintenance(false, String::new())
        .await
        .unwrap();
    assert!(h.catalog_check("_node_maintenance").is_none());
}

#[tokio::test]
async fn self_and_members() {
    let h = harness();
    let v = h.agent.self_info();
    assert_eq!(v["Config"]["Datacenter"], "dc1");
    assert_eq!(v["Config"]["NodeName"], "node1");
    assert_eq!(
        v["Config"]["NodeID"],
        "40e4a748-2192-161a-0510-9bf59fe950b5"
    );
    assert_eq!(v["Config"]["Version"], CONSUL_COMPAT_VERSION);
    assert_eq!(v["Config"]["Server"], true);
    assert_eq!(v["Member"]["Name"], "node1");
    assert_eq!(v["Member"]["Addr"], "127.0.0.1");
    assert_eq!(v["Member"]["Status"], 1);
    assert_eq!(v["Member"]["Tags"]["role"], "consul");
    assert_eq!(v["Member"]["Tags"]["dc"], "dc1");
    assert_eq!(v["Meta"]["consul-network-segment"], "");
    assert!(v["DebugConfig"]["GRPCPort"].is_i64());
    let lan = h.agent.members(false);
    assert_eq!(lan.as_array().unwrap().len(), 1);
    assert_eq!(lan[0]["Port"], 8301);
    let wan = h.agent.members(true);
    assert_eq!(wan[0]["Name"], "node1.dc1");
    assert_eq!(wan[0]["Port"], 8302);
    assert!(h.agent.join("10.0.0.1", false).await.is_err());
}

#[tokio::test]
async fn service_view_has_content_hash() {
    let h = harness();
    h.register(json!({"Name": "redis", "Port": 6379}))
        .await
        .unwrap();
    let one = h.agent.service("redis").unwrap();
    assert_eq!(one["Service"], "redis");
    assert_eq!(one["Tags"], json!([]));
    assert_eq!(one["Meta"], json!({}));
    assert_eq!(one["Weights"], json!({"Passing": 1, "Warning": 1}));
    let hash = one["ContentHash"].as_str().unwrap().to_string();
    assert!(!hash.is_empty());
    h.register(json!({"Name": "redis", "Port": 6380}))
        .await
        .unwrap();
    assert_ne!(
        h.agent.service("redis").unwrap()["ContentHash"],
        hash.as_str()
    );
    assert!(h.agent.service("nope").is_none());
}

#[tokio::test]
async fn config_definitions_use_the_same_decoder() {
    let h = harness();
    h.agent
        .register_from_config(vec![json!({
            "name": "cfg", "id": "cfg-1", "port": 80,
            "enable_tag_override": true,
            "checks": [{"ttl": "10s", "deregister_critical_service_after": "90m"}]
        })])
        .await
        .unwrap();
    let s = h.agent.services();
    assert_eq!(s["cfg-1"]["Service"], "cfg");
    assert_eq!(s["cfg-1"]["EnableTagOverride"], true);
    assert!(h.agent.checks().get("service:cfg-1").is_some());
    h.agent
        .register_checks_from_config(vec![json!({"name": "disk", "ttl": "1m"})])
        .await
        .unwrap();
    assert!(h.agent.checks().get("disk").is_some());
    let e = h
        .agent
        .register_from_config(vec![json!({"port": 1})])
        .await
        .unwrap_err();
    assert!(e.to_string().contains("Missing service name"), "{e}");
}

#[tokio::test(start_paused = true)]
async fn anti_entropy_registers_node_and_reverts_drift() {
    let opts = AgentOptions {
        ae_interval: Duration::from_secs(60),
        ..AgentOptions::default()
    };
    let h = harness_with(opts);
    h.agent.start();
    tokio::time::sleep(Duration::from_millis(10)).await;
    assert!(
        h.store.read().nodes.contains_key("node1"),
        "node registered at start"
    );
    assert!(h.catalog_check("serfHealth").is_some());

    // Drift: someone removes serfHealth and registers a foreign service on our node.
    let i = h.raft.index.fetch_add(10, Ordering::SeqCst) + 10;
    registry_server::fsm::apply(
        &h.store,
        i,
        &Command::Deregister(registry_proto::command::DeregisterRequest {
            node: "node1".into(),
            service_id: None,
            check_id: Some("serfHealth".into()),
        }),
    );
    let mut node = h.store.read().nodes["node1"].clone();
    node.index = Default::default();
    registry_server::fsm::apply(
        &h.store,
        i + 1,
        &Command::Register(registry_proto::command::RegisterRequest {
            node,
            skip_node_update: true,
            service: Some(NodeService {
                id: "intruder".into(),
                service: "intruder".into(),
                ..Default::default()
            }),
            checks: vec![],
        }),
    );
    assert!(h.catalog_check("serfHealth").is_none());
    // The next full sync (within 2 intervals) puts things back.
    tokio::time::sleep(Duration::from_secs(121)).await;
    assert!(h.catalog_check("serfHealth").is_some());
    assert!(
        h.catalog_services().is_empty(),
        "{:?}",
        h.catalog_services()
    );
    h.agent.shutdown();
}

#[tokio::test(start_paused = true)]
async fn ttl_expiry_syncs_and_critical_services_are_reaped() {
    let opts = AgentOptions {
        check_reap_interval: Duration::from_secs(30),
        ..AgentOptions::default()
    };
    let h = harness_with(opts);
    h.agent.start();
    h.register(json!({
        "Name": "short", "Check": {"TTL": "10s", "Status": "passing", "DeregisterCriticalServiceAfter": "1m"}
    }))
    .await
    .unwrap();
    tokio::time::sleep(Duration::from_secs(11)).await;
    assert_eq!(h.agent.checks()["service:short"]["Status"], "critical");
    assert_eq!(h.agent.checks()["service:short"]["Output"], "TTL expired");
    // The background sync pushed the status change.
    tokio::time::sleep(Duration::from_millis(10)).await;
    assert_eq!(h.catalog_check("service:short").unwrap().status, "critical");
    // Critical for more than 1m, seen by the reaper within 30s more.
    tokio::time::sleep(Duration::from_secs(95)).await;
    assert!(h.agent.local().service("short").is_none(), "service reaped");
    assert!(h.catalog_services().is_empty());
    h.agent.shutdown();
}

#[tokio::test]
async fn api_registrations_survive_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let data = Some(dir.path().to_path_buf());
    let store = Arc::new(Store::new());
    let h = harness_in(AgentOptions::default(), data.clone(), store.clone());
    h.register(json!({"Name": "keep", "Port": 1234, "Check": {"TTL": "60s"}, "Checks": [{"CheckID": "h", "HTTP": "http://127.0.0.1:1/", "Interval": "10s"}]}))
        .await
        .unwrap();
    h.register(json!({"Name": "gone"})).await.unwrap();
    h.register_check(json!({"Name": "mem", "TTL": "30s", "ServiceID": "keep"}))
        .await
        .unwrap();
    h.register_check(json!({"ID": "drop", "Name": "drop", "TTL": "30s"}))
        .await
        .unwrap();
    h.agent.deregister_service("gone").await.unwrap();
    h.agent.deregister_check("drop").await.unwrap();
    h.agent
        .node_maintenance(true, "later".into())
        .await
        .unwrap();
    // Configuration definitions are not persisted.
    h.agent
        .register_from_config(vec![json!({"name": "cfg"})])
        .await
        .unwrap();
    h.agent.shutdown();
    drop(h);

    let h = harness_in(AgentOptions::default(), data, store);
    let svcs = h.agent.services();
    let mut ids: Vec<&String> = svcs.as_object().unwrap().keys().collect();
    ids.sort();
    assert_eq!(ids, ["keep"]);
    assert_eq!(svcs["keep"]["Port"], 1234);
    let mut checks = h.check_ids();
    checks.sort();
    assert_eq!(checks, ["_node_maintenance", "h", "mem", "service:keep:1"]);
    let c = h.agent.checks();
    assert_eq!(
        c["service:keep:1"]["Status"], "critical",
        "restored checks start critical"
    );
    assert_eq!(c["service:keep:1"]["Name"], "Service 'keep' check");
    assert_eq!(c["mem"]["ServiceName"], "keep");
    assert_eq!(c["h"]["Type"], "http");
    assert_eq!(c["_node_maintenance"]["Notes"], "later");
    // The restored checks run again: TTL updates work.
    h.agent
        .update_check("service:keep:1", "passing", String::new())
        .await
        .unwrap();
    // Deregistering removes the files for good.
    h.agent.deregister_service("keep").await.unwrap();
    h.agent
        .node_maintenance(false, String::new())
        .await
        .unwrap();
    h.agent.shutdown();
    assert!(std::fs::read_dir(dir.path().join("services"))
        .unwrap()
        .next()
        .is_none());
    assert!(std::fs::read_dir(dir.path().join("checks"))
        .unwrap()
        .next()
        .is_none());
}
