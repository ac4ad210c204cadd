//! Tests of the API shapes: decoding real clients' bodies, validation texts, conversion to
//! the model, exact output JSON, and fuzzing of every decoder.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use super::agent::*;
use super::catalog::*;
use super::output::*;
use crate::lenient::{Lenient, Schema};
use crate::model::{self, DirEntry, HealthCheck, Node, NodeService, RaftIndex};
use proptest::prelude::*;
use serde::Serialize;
use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::time::Duration;

fn register(body: Value) -> Result<(NodeService, Vec<CheckSpec>), String> {
    let reg = AgentServiceRegistration::decode_value(body).map_err(|e| e.to_string())?;
    reg.into_model("node-1").map_err(|e| e.to_string())
}

fn register_err(body: Value) -> String {
    register(body).expect_err("registration should fail")
}

#[test]
fn python_consul_service_register() {
    // python-consul: lowercase keys, check built by consul.Check.http().
    let (svc, checks) = register(json!({
        "name": "web",
        "id": "web-1",
        "address": "10.0.0.5",
        "port": 8080,
        "tags": ["a", "b"],
        "meta": {"Version": "1"},
        "enabletagoverride": true,
        "check": {"http": "http://10.0.0.5:8080/health", "interval": "10s", "timeout": "1s",
                  "DeregisterCriticalServiceAfter": "90m", "header": {"X-Token": ["t"]},
                  "tls_skip_verify": true}
    }))
    .unwrap();
    assert_eq!(svc.id, "web-1");
    assert_eq!(svc.service, "web");
    assert_eq!(svc.address, "10.0.0.5");
    assert_eq!(svc.port, 8080);
    assert_eq!(svc.tags, vec!["a", "b"]);
    assert_eq!(svc.meta.get("Version").map(String::as_str), Some("1"));
    assert!(svc.enable_tag_override);
    assert_eq!(
        svc.weights,
        model::Weights {
            passing: 1,
            warning: 1
        }
    );
    assert_eq!(checks.len(), 1);
    let spec = &checks[0];
    assert_eq!(spec.check_id(), "service:web-1");
    assert_eq!(spec.check.name, "Service 'web' check");
    assert_eq!(spec.initial_status(), "critical");
    assert_eq!(spec.check.node, "node-1");
    assert_eq!(spec.check.service_id, "web-1");
    assert_eq!(spec.check.service_name, "web");
    assert_eq!(spec.check.service_tags, vec!["a", "b"]);
    assert_eq!(spec.check.check_type, "http");
    assert_eq!(spec.interval, Duration::from_secs(10));
    assert_eq!(spec.timeout, Duration::from_secs(1));
    assert_eq!(
        spec.deregister_critical_service_after,
        Some(Duration::from_secs(5400))
    );
    match &spec.kind {
        CheckKind::Http {
            url,
            method,
            header,
            tls_skip_verify,
            ..
        } => {
            assert_eq!(url, "http://10.0.0.5:8080/health");
            assert_eq!(method, "GET");
            assert_eq!(header.get("X-Token"), Some(&vec!["t".to_string()]));
            assert!(tls_skip_verify);
        }
        other => panic!("unexpected kind {other:?}"),
    }
    assert_eq!(spec.check.definition.interval_ns, 10_000_000_000);
    assert_eq!(spec.check.definition.timeout_ns, 1_000_000_000);
    assert!(spec.check.definition.tls_skip_verify);
}

#[test]
fn patroni_service_register() {
    let (svc, checks) = register(json!({
        "name": "postgres-cluster", "id": "postgres-cluster/pg1", "address": "10.0.0.1",
        "port": 5432, "tags": ["master"], "enable_tag_override": true,
        "check": {"http": "http://10.0.0.1:8008/master", "interval": "5s",
                  "DeregisterCriticalServiceAfter": "150.0s", "tlsskipverify": false},
        "meta": {"role": "master"}
    }))
    .unwrap();
    assert_eq!(svc.id, "postgres-cluster/pg1");
    assert!(svc.enable_tag_override);
    assert_eq!(checks[0].check_id(), "service:postgres-cluster/pg1");
    assert_eq!(
        checks[0].deregister_critical_service_after,
        Some(Duration::from_secs(150))
    );
    assert_eq!(checks[0].timeout, DEFAULT_CHECK_TIMEOUT);
}

#[test]
fn go_api_service_register_with_several_checks() {
    let (svc, checks) = register(json!({
        "ID": "redis1", "Name": "redis", "Tags": ["primary", "v1"], "Address": "127.0.0.1",
        "Port": 8000, "Meta": {"redis_version": "4.0"}, "EnableTagOverride": false,
        "Weights": {"Passing": 10, "Warning": 1},
        "TaggedAddresses": {"lan": {"address": "127.0.0.1", "port": 8000},
                            "wan": {"Address": "1.2.3.4", "Port": 80}},
        "Check": {"HTTP": "http://127.0.0.1:8000/health", "Method": "POST",
                  "Interval": "10s", "Timeout": "5s", "Status": "passing"},
        "Checks": [
            {"TTL": "15s", "CheckID": "redis-ttl", "Name": "ttl", "Notes": "n"},
            {"TCP": "127.0.0.1:8000", "Interval": "500ms"},
            {"GRPC": "127.0.0.1:9000/svc", "GRPCUseTLS": true, "Interval": "10s"},
            {"Args": ["/bin/check.sh"], "Interval": "30s"},
            {"AliasService": "web"},
            {"H2PING": "127.0.0.1:9001", "Interval": "10s"}
        ],
        "Proxy": {"DestinationServiceName": "x"},
        "Connect": {"SidecarService": {}}
    }))
    .unwrap();
    assert_eq!(
        svc.weights,
        model::Weights {
            passing: 10,
            warning: 1
        }
    );
    assert_eq!(
        svc.tagged_addresses.get("lan"),
        Some(&model::ServiceAddress {
            address: "127.0.0.1".into(),
            port: 8000
        })
    );
    assert_eq!(svc.tagged_addresses.get("wan").map(|a| a.port), Some(80));
    let ids: Vec<&str> = checks.iter().map(CheckSpec::check_id).collect();
    assert_eq!(
        ids,
        vec![
            "service:redis1:1",
            "redis-ttl",
            "service:redis1:3",
            "service:redis1:4",
            "service:redis1:5",
            "service:redis1:6",
            "service:redis1:7"
        ]
    );
    let types: Vec<&str> = checks.iter().map(|c| c.check.check_type.as_str()).collect();
    assert_eq!(
        types,
        vec!["http", "ttl", "tcp", "grpc", "script", "alias", "h2ping"]
    );
    assert_eq!(checks[0].initial_status(), "passing");
    assert!(matches!(&checks[0].kind, CheckKind::Http { method, .. } if method == "POST"));
    assert_eq!(checks[1].check.name, "ttl");
    assert_eq!(checks[1].check.notes, "n");
    assert_eq!(checks[1].kind, CheckKind::Ttl);
    assert_eq!(checks[1].ttl, Duration::from_secs(15));
    assert_eq!(checks[1].interval, Duration::ZERO);
    // Intervals below one second are raised to one second.
    assert_eq!(checks[2].interval, MIN_CHECK_INTERVAL);
    assert_eq!(checks[2].check.definition.interval_ns, 500_000_000);
    assert!(matches!(
        checks[3].kind,
        CheckKind::Grpc { use_tls: true, .. }
    ));
    assert_eq!(checks[5].kind.type_name(), "alias");
    assert!(matches!(
        checks[6].kind,
        CheckKind::H2Ping { use_tls: true, .. }
    ));
    for c in &checks {
        assert_eq!(c.output_max_size, DEFAULT_OUTPUT_MAX_SIZE);
        assert_eq!(c.check.check_type, c.kind.type_name());
    }
}

#[test]
fn service_defaults() {
    let (svc, checks) = register(json!({"Name": "api", "Check": {}, "Checks": null})).unwrap();
    assert_eq!(svc.id, "api");
    assert!(checks.is_empty(), "an empty Check object is skipped");
    let (_, checks) = register(json!({"Name": "api", "Check": {"TTL": "10s"}})).unwrap();
    assert_eq!(checks[0].check_id(), "service:api");
    assert_eq!(checks[0].check.name, "Service 'api' check");
    let (_, checks) = register(json!({
        "Name": "api",
        "Check": {"ttl": "10s", "FailuresBeforeCritical": 3, "SuccessBeforePassing": 2,
                  "OutputMaxSize": 100, "status": "warning"}
    }))
    .unwrap();
    assert_eq!(checks[0].failures_before_critical, 3);
    assert_eq!(checks[0].failures_before_warning, 3);
    assert_eq!(checks[0].success_before_passing, 2);
    assert_eq!(checks[0].output_max_size, 100);
    assert_eq!(checks[0].initial_status(), "warning");
    let (_, checks) = register(json!({
        "Name": "api", "Check": {"TTL": "10s", "DeregisterCriticalServiceAfter": "10s"}
    }))
    .unwrap();
    assert_eq!(
        checks[0].deregister_critical_service_after,
        Some(MIN_DEREGISTER_CRITICAL_SERVICE_AFTER)
    );
    // Durations given as nanosecond numbers.
    let (_, checks) =
        register(json!({"Name": "api", "Check": {"TTL": 15_000_000_000u64}})).unwrap();
    assert_eq!(checks[0].ttl, Duration::from_secs(15));
}

#[test]
fn service_validation_texts() {
    assert_eq!(register_err(json!({})), "Missing service name");
    assert_eq!(register_err(json!({"Name": ""})), "Missing service name");
    assert_eq!(
        register_err(json!({"Name": "a", "Address": "0.0.0.0"})),
        "Invalid service address"
    );
    assert_eq!(
        register_err(json!({"Name": "a", "Weights": {"Passing": 0, "Warning": 1}})),
        "Invalid Weights: Passing must be greater than 0"
    );
    assert_eq!(
        register_err(json!({"Name": "a", "Meta": {"bad key": "v"}})),
        "Invalid Service Meta: Couldn't load metadata pair ('bad key', 'v'): Key contains invalid characters"
    );
    assert_eq!(
        register_err(json!({"Name": "a", "Check": {"Name": "x"}})),
        "Invalid check: TTL must be > 0 for TTL checks"
    );
    assert_eq!(
        register_err(json!({"Name": "a", "Check": {"HTTP": "http://x"}})),
        "Invalid check: Interval must be > 0 for Script, HTTP, H2PING, TCP, UDP or OSService checks"
    );
    assert_eq!(
        register_err(json!({"Name": "a", "Check": {"TTL": "1s", "Interval": "1s"}})),
        "Invalid check: Interval and TTL cannot both be specified"
    );
    assert_eq!(
        register_err(json!({"Name": "a", "Checks": [{"AliasService": "x", "TTL": "1s"}]})),
        "Invalid check: TTL must be not be set for Alias checks"
    );
    assert_eq!(
        register_err(
            json!({"Name": "a", "Checks": [{"AliasService": "x", "TCP": "h:1", "Interval": "1s"}]})
        ),
        "Invalid check: Interval cannot be set for Alias checks"
    );
    assert_eq!(
        register_err(json!({"Name": "a", "Checks": [{}]})),
        "Invalid check: TTL must be > 0 for TTL checks"
    );
    assert_eq!(
        register_err(json!({"Name": "a", "Check": {"TTL": "1s", "OutputMaxSize": -1}})),
        "Invalid check: MaxOutputMaxSize must be positive"
    );
    assert_eq!(
        register_err(json!({"Name": "a", "Check": {"TTL": "1s", "FailuresBeforeWarning": 2}})),
        "Invalid check: FailuresBeforeWarning can't be higher than FailuresBeforeCritical"
    );
    assert_eq!(
        register_err(json!({"Name": "a", "Check": {"TTL": "1s", "Status": "bogus"}})),
        "Status for checks must 'passing', 'warning', 'critical'"
    );
    assert_eq!(
        register_err(json!({"Name": "a", "Port": "80"})),
        "Request decode failed: invalid type for Port: expected an integer, got a string"
    );
    assert!(
        register_err(json!({"Name": "a", "Check": {"TTL": "soon"}})).starts_with(
            "Request decode failed: invalid duration for Check.TTL: time: invalid duration"
        )
    );
    assert!(
        register_err(json!({"Name": "a", "Checks": [{"TTL": "1s"}, {"interval": -5}]}))
            .starts_with("Request decode failed: invalid duration for Checks[1].Interval")
    );
}

#[test]
fn check_registration() {
    // python-consul agent.check.register: lowercase keys, `serviceid`.
    let svc = NodeService {
        id: "web-1".into(),
        service: "web".into(),
        tags: vec!["t".into()],
        ..Default::default()
    };
    let reg = AgentCheckRegistration::decode(
        br#"{"name": "web-ttl", "ttl": "30s", "serviceid": "web-1", "notes": "hi"}"#,
    )
    .unwrap();
    assert_eq!(reg.service_id(), Some("web-1"));
    assert_eq!(reg.check_id(), "web-ttl");
    let spec = reg.into_model("n1", Some(&svc)).unwrap();
    assert_eq!(spec.check_id(), "web-ttl");
    assert_eq!(spec.check.service_name, "web");
    assert_eq!(spec.check.service_tags, vec!["t"]);
    assert_eq!(spec.check.notes, "hi");
    assert_eq!(spec.kind, CheckKind::Ttl);
    assert_eq!(spec.initial_status(), "critical");

    // Go api: `ID` names the check.
    let reg = AgentCheckRegistration::decode(
        br#"{"ID": "mem", "Name": "Memory", "TCP": "localhost:22", "Interval": "10s", "Status": "passing"}"#,
    )
    .unwrap();
    assert_eq!(reg.check_id(), "mem");
    let spec = reg.into_model("n1", None).unwrap();
    assert_eq!(spec.check_id(), "mem");
    assert_eq!(spec.check.service_id, "");
    assert_eq!(spec.initial_status(), "passing");
    assert_eq!(spec.check.check_type, "tcp");

    let err = |body: &[u8], svc: Option<&NodeService>| {
        AgentCheckRegistration::decode(body)
            .and_then(|r| r.into_model("n1", svc))
            .unwrap_err()
            .to_string()
    };
    assert_eq!(err(br#"{"TTL": "1s"}"#, None), "Missing check name");
    assert_eq!(
        err(br#"{"Name": "x", "TTL": "1s", "Status": "up"}"#, None),
        "Bad check status"
    );
    assert_eq!(
        err(br#"{"Name": "x"}"#, None),
        "Invalid check: TTL must be > 0 for TTL checks"
    );
    assert_eq!(
        err(br#"{"Name": "x", "TTL": "1s", "ServiceID": "nope"}"#, None),
        "ServiceID \"nope\" does not exist"
    );
    assert_eq!(
        err(
            br#"{"Name": "x", "TTL": "1s", "ServiceID": "nope"}"#,
            Some(&svc)
        ),
        "ServiceID \"nope\" does not exist"
    );
}

#[test]
fn check_update() {
    let u = CheckUpdate::decode(br#"{"status": "passing", "output": "ok"}"#).unwrap();
    assert_eq!(u.status, "passing");
    assert_eq!(u.output, "ok");
    assert!(u.validate().is_ok());
    let u = CheckUpdate::decode(br#"{"Status": "up"}"#).unwrap();
    assert_eq!(
        u.validate().unwrap_err().to_string(),
        "Invalid check status: 'up'"
    );
    let u = CheckUpdate::decode(b"").unwrap();
    assert_eq!(
        u.validate().unwrap_err().to_string(),
        "Invalid check status: ''"
    );
}

#[test]
fn catalog_register_k8s_style() {
    let body = json!({
        "Node": "k8s-sync",
        "Address": "127.0.0.1",
        "NodeMeta": {"external-source": "kubernetes"},
        "Service": {
            "ID": "web-abc", "Service": "web", "Tags": ["k8s"], "Port": 80,
            "Address": "10.1.2.3", "Meta": {"external-source": "kubernetes", "external-k8s-ns": "default"},
            "Weights": {"Passing": 1, "Warning": 1}
        },
        "Check": {
            "CheckID": "default/web-abc", "Name": "Kubernetes Readiness Check",
            "ServiceID": "web-abc", "Status": "passing", "Output": "Kubernetes health checks passing",
            "Type": "kubernetes-readiness"
        },
        "SkipNodeUpdate": true,
        "Partition": ""
    });
    let req = CatalogRegisterRequest::decode_value(body).unwrap();
    let cmd = req.into_command("dc1").unwrap();
    assert_eq!(cmd.node.node, "k8s-sync");
    assert_eq!(cmd.node.datacenter, "dc1");
    assert!(cmd.skip_node_update);
    let svc = cmd.service.unwrap();
    assert_eq!(svc.id, "web-abc");
    assert_eq!(svc.meta.len(), 2);
    assert_eq!(cmd.checks.len(), 1);
    let c = &cmd.checks[0];
    assert_eq!(c.node, "k8s-sync");
    assert_eq!(c.status, "passing");
    assert_eq!(c.service_name, "web");
    assert_eq!(c.service_tags, vec!["k8s"]);
    assert_eq!(c.check_type, "kubernetes-readiness");
}

#[test]
fn catalog_register_python_style() {
    let req = CatalogRegisterRequest::decode(
        br#"{"Datacenter": "dc2", "Node": "n1", "Address": "10.0.0.1",
             "TaggedAddresses": {"wan": "1.2.3.4"},
             "Service": {"service": "db", "port": 5432},
             "Checks": [{"name": "db-alive", "serviceid": "db", "definition":
                          {"http": "http://x", "interval": "10s", "header": {"A": "b"}}}],
             "Check": {"checkid": "node-check"}}"#,
    )
    .unwrap();
    let cmd = req.into_command("dc1").unwrap();
    assert_eq!(cmd.node.datacenter, "dc2");
    assert_eq!(
        cmd.node.tagged_addresses.get("wan").map(String::as_str),
        Some("1.2.3.4")
    );
    let svc = cmd.service.unwrap();
    assert_eq!(
        (svc.id.as_str(), svc.service.as_str(), svc.port),
        ("db", "db", 5432)
    );
    assert_eq!(svc.weights, model::Weights::default());
    // `Check` goes after `Checks`.
    assert_eq!(cmd.checks[0].check_id, "db-alive");
    assert_eq!(cmd.checks[0].status, "critical");
    assert_eq!(cmd.checks[0].check_type, "http");
    assert_eq!(cmd.checks[0].service_name, "db");
    assert_eq!(
        cmd.checks[0].definition.header.get("A"),
        Some(&vec!["b".to_string()])
    );
    assert_eq!(cmd.checks[0].definition.interval_ns, 10_000_000_000);
    assert_eq!(cmd.checks[1].check_id, "node-check");
    assert_eq!(cmd.checks[1].check_type, "");
}

#[test]
fn catalog_register_errors() {
    let err = |v: Value| {
        CatalogRegisterRequest::decode_value(v)
            .and_then(|r| r.into_command("dc1"))
            .unwrap_err()
            .to_string()
    };
    assert_eq!(err(json!({"Address": "1.2.3.4"})), "Must provide node");
    assert_eq!(
        err(json!({"Node": "n"})),
        "Must provide address if SkipNodeUpdate is not set"
    );
    assert_eq!(
        err(json!({"Node": "n", "Address": "a", "ID": "nope"})),
        "Bad node ID: uuid string is wrong length"
    );
    assert_eq!(
        err(json!({"Node": "n", "Address": "a", "Service": {"ID": "x"}})),
        "Must provide service name with ID"
    );
    assert_eq!(
        err(json!({"Node": "n", "Address": "a", "Service": {"Service": "x", "Address": "::"}})),
        "Invalid service address"
    );
    assert_eq!(
        err(json!({"Node": "n", "Address": "a", "Check": {"Node": "other", "Name": "c"}})),
        "check node \"other\" does not match node \"n\""
    );
    assert_eq!(
        err(json!({"Node": "n", "Address": "a", "Check": {"Name": "c", "Status": "up"}})),
        "Invalid check status: 'up'"
    );
    assert_eq!(
        err(json!({"Node": "n", "Address": "a", "Check": {"Status": "passing"}})),
        "Must provide check ID or name"
    );
    assert!(CatalogRegisterRequest::decode_value(
        json!({"Node": "n", "Address": "a", "ID": "40e4a748-2192-161a-0510-9bf59fe950b5"})
    )
    .and_then(|r| r.into_command("dc1"))
    .is_ok());
}

#[test]
fn catalog_deregister() {
    let d =
        CatalogDeregisterRequest::decode(br#"{"node": "n1", "serviceid": "web", "Address": "x"}"#)
            .unwrap()
            .into_command()
            .unwrap();
    assert_eq!(d.node, "n1");
    assert_eq!(d.service_id.as_deref(), Some("web"));
    assert_eq!(d.check_id, None);
    let d = CatalogDeregisterRequest::decode(br#"{"Node": "n1", "CheckID": "c"}"#)
        .unwrap()
        .into_command()
        .unwrap();
    assert_eq!(d.check_id.as_deref(), Some("c"));
    let e = CatalogDeregisterRequest::decode(b"{}")
        .unwrap()
        .into_command()
        .unwrap_err();
    assert_eq!(e.to_string(), "Must provide node");
}

#[test]
fn registration_round_trips_through_serde() {
    let reg = AgentServiceRegistration::decode_value(json!({
        "name": "web", "port": 1, "check": {"ttl": "1m30s", "header": {"A": ["b"]}},
        "checks": [{"http": "http://x", "interval": "1.5s"}], "weights": {"passing": 3}
    }))
    .unwrap();
    let text = serde_json::to_vec(&reg).unwrap();
    let back = AgentServiceRegistration::decode(&text).unwrap();
    assert_eq!(back, reg);
    let v: Value = serde_json::from_slice(&text).unwrap();
    assert_eq!(v["Check"]["TTL"], json!("1m30s"));
    assert_eq!(v["Checks"][0]["Interval"], json!("1.5s"));
}

// ---------------------------------------------------------------------------------------
// Output shapes
// ---------------------------------------------------------------------------------------

fn sample_node() -> Node {
    let mut meta = BTreeMap::new();
    meta.insert("instance_type".to_string(), "t2.medium".to_string());
    let mut tagged = BTreeMap::new();
    tagged.insert("lan".to_string(), "10.1.10.12".to_string());
    tagged.insert("wan".to_string(), "10.1.10.12".to_string());
    Node {
        id: "40e4a748-2192-161a-0510-9bf59fe950b5".into(),
        node: "foobar".into(),
        address: "10.1.10.12".into(),
        datacenter: "dc1".into(),
        tagged_addresses: tagged,
        meta,
        index: RaftIndex {
            create_index: 5,
            modify_index: 7,
        },
    }
}

fn sample_service() -> NodeService {
    let mut meta = BTreeMap::new();
    meta.insert("redis_version".to_string(), "4.0".to_string());
    let mut tagged = BTreeMap::new();
    tagged.insert(
        "lan".to_string(),
        model::ServiceAddress {
            address: "10.1.10.12".into(),
            port: 8000,
        },
    );
    NodeService {
        kind: String::new(),
        id: "redis".into(),
        service: "redis".into(),
        tags: vec!["primary".into()],
        address: "10.1.10.12".into(),
        tagged_addresses: tagged,
        meta: meta.into_iter().collect(),
        port: 8000,
        socket_path: String::new(),
        weights: model::Weights {
            passing: 10,
            warning: 1,
        },
        enable_tag_override: false,
        index: RaftIndex {
            create_index: 9,
            modify_index: 9,
        },
    }
}

fn sample_check() -> HealthCheck {
    HealthCheck {
        node: "foobar".into(),
        check_id: "service:redis".into(),
        name: "Service 'redis' check".into(),
        status: "passing".into(),
        notes: String::new(),
        output: "HTTP GET: 200 OK".into(),
        service_id: "redis".into(),
        service_name: "redis".into(),
        service_tags: vec!["primary".into()],
        check_type: "http".into(),
        definition: model::CheckDefinition {
            http: "http://10.1.10.12:8000/health".into(),
            interval_ns: 10_000_000_000,
            timeout_ns: 1_000_000_000,
            ..Default::default()
        },
        index: RaftIndex {
            create_index: 9,
            modify_index: 12,
        },
    }
}

fn serf_check() -> HealthCheck {
    HealthCheck {
        node: "foobar".into(),
        check_id: "serfHealth".into(),
        name: "Serf Health Status".into(),
        status: "passing".into(),
        output: "Agent alive and reachable".into(),
        index: RaftIndex {
            create_index: 5,
            modify_index: 5,
        },
        ..Default::default()
    }
}

fn to_json<T: Serialize>(v: &T) -> String {
    serde_json::to_string(v).unwrap()
}

#[test]
fn check_service_node_shape() {
    let out = CheckServiceNode::new(
        &sample_node(),
        &sample_service(),
        [sample_check(), serf_check()].iter(),
    );
    assert!(out.all_passing());
    let want = concat!(
        r#"{"Node":{"ID":"40e4a748-2192-161a-0510-9bf59fe950b5","Node":"foobar","Address":"10.1.10.12","Datacenter":"dc1","#,
        r#""TaggedAddresses":{"lan":"10.1.10.12","wan":"10.1.10.12"},"Meta":{"instance_type":"t2.medium"},"#,
        r#""CreateIndex":5,"ModifyIndex":7},"#,
        r#""Service":{"ID":"redis","Service":"redis","Tags":["primary"],"Address":"10.1.10.12","#,
        r#""TaggedAddresses":{"lan":{"Address":"10.1.10.12","Port":8000}},"#,
        r#""Meta":{"redis_version":"4.0"},"Port":8000,"Weights":{"Passing":10,"Warning":1},"#,
        r#""EnableTagOverride":false,"Proxy":{"Mode":"","MeshGateway":{},"Expose":{}},"Connect":{},"#,
        r#""PeerName":"","CreateIndex":9,"ModifyIndex":9},"#,
        r#""Checks":[{"Node":"foobar","CheckID":"service:redis","Name":"Service 'redis' check","Status":"passing","#,
        r#""Notes":"","Output":"HTTP GET: 200 OK","ServiceID":"redis","ServiceName":"redis","#,
        r#""ServiceTags":["primary"],"Type":"http","Interval":"10s","Timeout":"1s","ExposedPort":0,"#,
        r#""Definition":{"Interval":"10s","Timeout":"1s","HTTP":"http://10.1.10.12:8000/health"},"#,
        r#""CreateIndex":9,"ModifyIndex":12},"#,
        r#"{"Node":"foobar","CheckID":"serfHealth","Name":"Serf Health Status","Status":"passing","#,
        r#""Notes":"","Output":"Agent alive and reachable","ServiceID":"","ServiceName":"","#,
        r#""ServiceTags":[],"Type":"","Interval":"","Timeout":"","ExposedPort":0,"Definition":{},"#,
        r#""CreateIndex":5,"ModifyIndex":5}]}"#
    );
    assert_eq!(to_json(&out), want);
}

#[test]
fn service_node_shape() {
    let mut svc = sample_service();
    svc.tagged_addresses.clear();
    svc.tags.clear();
    let out = ServiceNode::new(&sample_node(), &svc);
    let want = concat!(
        r#"{"ID":"40e4a748-2192-161a-0510-9bf59fe950b5","Node":"foobar","Address":"10.1.10.12","Datacenter":"dc1","#,
        r#""TaggedAddresses":{"lan":"10.1.10.12","wan":"10.1.10.12"},"NodeMeta":{"instance_type":"t2.medium"},"#,
        r#""ServiceKind":"","ServiceID":"redis","ServiceName":"redis","ServiceTags":[],"#,
        r#""ServiceAddress":"10.1.10.12","ServiceWeights":{"Passing":10,"Warning":1},"#,
        r#""ServiceMeta":{"redis_version":"4.0"},"ServicePort":8000,"ServiceSocketPath":"","#,
        r#""ServiceEnableTagOverride":false,"ServiceProxy":{"Mode":"","MeshGateway":{},"Expose":{}},"#,
        r#""ServiceConnect":{},"ServiceLocality":null,"CreateIndex":9,"ModifyIndex":9}"#
    );
    assert_eq!(to_json(&out), want);
    let with_tagged = ServiceNode::new(&sample_node(), &sample_service());
    assert!(to_json(&with_tagged)
        .contains(r#""ServiceTaggedAddresses":{"lan":{"Address":"10.1.10.12","Port":8000}}"#));
}

#[test]
fn node_service_omitempty_fields() {
    let svc = NodeService {
        id: "x".into(),
        service: "x".into(),
        kind: "connect-proxy".into(),
        socket_path: "/tmp/s".into(),
        ..Default::default()
    };
    let v: Value = serde_json::to_value(NodeServiceOut::from(&svc)).unwrap();
    assert_eq!(v["Kind"], json!("connect-proxy"));
    assert_eq!(v["SocketPath"], json!("/tmp/s"));
    assert!(v.get("Port").is_none(), "port 0 is omitted");
    assert!(v.get("TaggedAddresses").is_none());
    assert_eq!(v["Tags"], json!([]));
    assert_eq!(v["Meta"], json!({}));
    let plain = NodeServiceOut::from(&NodeService::default());
    let v = serde_json::to_value(plain).unwrap();
    assert!(v.get("Kind").is_none());
    assert!(v.get("SocketPath").is_none());
}

#[test]
fn agent_service_shape() {
    let mut svc = sample_service();
    svc.index = RaftIndex::default();
    let out = AgentServiceOut::new(&svc, "dc1");
    let want = concat!(
        r#"{"ID":"redis","Service":"redis","Tags":["primary"],"Meta":{"redis_version":"4.0"},"#,
        r#""Port":8000,"Address":"10.1.10.12","#,
        r#""TaggedAddresses":{"lan":{"Address":"10.1.10.12","Port":8000}},"#,
        r#""Weights":{"Passing":10,"Warning":1},"EnableTagOverride":false,"Datacenter":"dc1"}"#
    );
    assert_eq!(to_json(&out), want);
    let hashed = out.clone().with_content_hash();
    assert!(!hashed.content_hash.is_empty());
    assert_eq!(hashed.content_hash, out.content_hash());
    assert_eq!(
        hashed.content_hash(),
        out.content_hash(),
        "hash ignores ContentHash"
    );
    let mut other = out.clone();
    other.port = 1;
    assert_ne!(other.content_hash(), out.content_hash());
    let empty = AgentServiceOut::new(
        &NodeService {
            id: "a".into(),
            service: "a".into(),
            ..Default::default()
        },
        "dc1",
    );
    assert_eq!(
        to_json(&empty),
        r#"{"ID":"a","Service":"a","Tags":[],"Meta":{},"Port":0,"Address":"","Weights":{"Passing":1,"Warning":1},"EnableTagOverride":false,"Datacenter":"dc1"}"#
    );
}

#[test]
fn health_check_definition_shape() {
    let mut c = sample_check();
    c.definition = model::CheckDefinition {
        http: "https://x".into(),
        method: "POST".into(),
        header: [("A".to_string(), vec!["b".to_string()])]
            .into_iter()
            .collect(),
        body: "{}".into(),
        tls_skip_verify: true,
        tls_server_name: "x".into(),
        tcp: String::new(),
        interval_ns: 90_000_000_000,
        timeout_ns: 0,
        ttl_ns: 0,
        deregister_critical_service_after_ns: 5_400_000_000_000,
    };
    let v = serde_json::to_value(HealthCheckOut::from(&c)).unwrap();
    assert_eq!(v["Interval"], json!("1m30s"));
    assert_eq!(v["Timeout"], json!(""));
    assert_eq!(
        serde_json::to_string(&v["Definition"]).unwrap(),
        r#"{"Interval":"1m30s","DeregisterCriticalServiceAfter":"1h30m0s","HTTP":"https://x","TLSServerName":"x","TLSSkipVerify":true,"Header":{"A":["b"]},"Method":"POST","Body":"{}"}"#
    );
    let ttl = HealthCheck {
        definition: model::CheckDefinition {
            ttl_ns: 15_000_000_000,
            ..Default::default()
        },
        ..Default::default()
    };
    let v = serde_json::to_value(AgentCheckOut::from(&ttl)).unwrap();
    assert_eq!(v["Definition"], json!({"TTL": 15_000_000_000u64}));
    assert_eq!(v["ServiceTags"], json!([]));
}

#[test]
fn catalog_node_shapes() {
    let node = sample_node();
    let svc = sample_service();
    let out = CatalogNodeOut::new(&node, [&svc]);
    let v = serde_json::to_value(&out).unwrap();
    assert_eq!(v["Node"]["Node"], json!("foobar"));
    assert_eq!(v["Services"]["redis"]["Port"], json!(8000));
    let empty = CatalogNodeOut::new(&node, std::iter::empty());
    assert_eq!(serde_json::to_value(&empty).unwrap()["Services"], json!({}));
    let list = NodeServicesOut::new(&node, [&svc]);
    let v = serde_json::to_value(&list).unwrap();
    assert_eq!(v["Services"][0]["ID"], json!("redis"));
    let empty = NodeServicesOut::new(&node, std::iter::empty());
    assert_eq!(serde_json::to_value(&empty).unwrap()["Services"], json!([]));
    let bare = NodeOut::from(&Node {
        node: "n".into(),
        ..Default::default()
    });
    assert_eq!(
        to_json(&bare),
        r#"{"ID":"","Node":"n","Address":"","Datacenter":"","TaggedAddresses":{},"Meta":{},"CreateIndex":0,"ModifyIndex":0}"#
    );
}

#[test]
fn kv_pair_shape() {
    let e = DirEntry {
        key: "service/pg/leader".into(),
        flags: 0xe0f6_9a2b_aa41_4de0,
        value: b"pg-1".to_vec().into(),
        lock_index: 1,
        session: "adf4238a-882b-9ddc-4a9d-5b6758e4159e".into(),
        index: RaftIndex {
            create_index: 100,
            modify_index: 200,
        },
    };
    assert_eq!(
        to_json(&KvPairOut::from(&e)),
        r#"{"LockIndex":1,"Key":"service/pg/leader","Flags":16210313421097356768,"Value":"cGctMQ==","Session":"adf4238a-882b-9ddc-4a9d-5b6758e4159e","CreateIndex":100,"ModifyIndex":200}"#
    );
    let empty = DirEntry {
        key: "k".into(),
        flags: u64::MAX,
        ..Default::default()
    };
    assert_eq!(
        to_json(&KvPairOut::from(&empty)),
        r#"{"LockIndex":0,"Key":"k","Flags":18446744073709551615,"Value":null,"CreateIndex":0,"ModifyIndex":0}"#
    );
    assert_eq!(KvPairOut::from(&e).without_value().value, None);
    // Flags survive a round trip through serde_json::Value without precision loss.
    let v = serde_json::to_value(KvPairOut::from(&empty)).unwrap();
    assert_eq!(v["Flags"].as_u64(), Some(u64::MAX));
}

// ---------------------------------------------------------------------------------------
// Schema consistency and fuzzing
// ---------------------------------------------------------------------------------------

fn assert_schema_matches<T: Serialize + Default>(schema: &Schema) {
    let v = serde_json::to_value(T::default()).unwrap();
    let keys: Vec<&str> = v.as_object().unwrap().keys().map(String::as_str).collect();
    let names: Vec<&str> = schema.fields.iter().map(|f| f.name).collect();
    assert_eq!(
        keys, names,
        "schema {} out of sync with its type",
        schema.name
    );
}

#[test]
fn schemas_match_types() {
    assert_schema_matches::<AgentServiceRegistration>(AgentServiceRegistration::SCHEMA);
    assert_schema_matches::<AgentServiceCheck>(AgentServiceCheck::SCHEMA);
    assert_schema_matches::<AgentServiceCheck>(AgentCheckRegistration::SCHEMA);
    assert_schema_matches::<CheckUpdate>(CheckUpdate::SCHEMA);
    assert_schema_matches::<ServiceAddressIn>(&SERVICE_ADDRESS_SCHEMA);
    assert_schema_matches::<WeightsIn>(&WEIGHTS_SCHEMA);
    assert_schema_matches::<CatalogRegisterRequest>(CatalogRegisterRequest::SCHEMA);
    assert_schema_matches::<CatalogService>(&CATALOG_SERVICE_SCHEMA);
    assert_schema_matches::<CatalogCheck>(&CATALOG_CHECK_SCHEMA);
    assert_schema_matches::<CheckDefinitionIn>(&CHECK_DEFINITION_SCHEMA);
    assert_schema_matches::<CatalogDeregisterRequest>(CatalogDeregisterRequest::SCHEMA);
}

/// Feeds one input to every decoder and converter; only panics matter.
fn exercise_all(bytes: &[u8]) {
    if let Ok(r) = AgentServiceRegistration::decode(bytes) {
        let _ = r.into_model("n");
    }
    if let Ok(r) = AgentCheckRegistration::decode(bytes) {
        let svc = NodeService::default();
        let _ = r.clone().into_model("n", Some(&svc));
        let _ = r.into_model("n", None);
    }
    if let Ok(r) = AgentServiceCheck::decode(bytes) {
        let _ = r.validate();
        let _ = r.check_type();
    }
    if let Ok(r) = CheckUpdate::decode(bytes) {
        let _ = r.validate();
    }
    if let Ok(r) = CatalogRegisterRequest::decode(bytes) {
        let _ = r.into_command("dc1");
    }
    if let Ok(r) = CatalogDeregisterRequest::decode(bytes) {
        let _ = r.into_command();
    }
}

fn arb_json() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(Value::from),
        any::<u64>().prop_map(Value::from),
        (-1e20f64..1e20).prop_map(Value::from),
        "[a-zA-Z0-9_:. -]{0,8}".prop_map(Value::String),
        prop_oneof![
            Just("10s"),
            Just("1.5m"),
            Just("-1s"),
            Just("0"),
            Just("passing"),
            Just("critical"),
            Just("0.0.0.0"),
            Just("http://x"),
        ]
        .prop_map(Value::from),
    ];
    leaf.prop_recursive(5, 64, 8, |inner| {
        let key = prop_oneof![
            Just("Name"),
            Just("name"),
            Just("ID"),
            Just("id"),
            Just("Node"),
            Just("Address"),
            Just("Port"),
            Just("port"),
            Just("Tags"),
            Just("Meta"),
            Just("NodeMeta"),
            Just("Weights"),
            Just("Passing"),
            Just("Warning"),
            Just("Check"),
            Just("check"),
            Just("Checks"),
            Just("TTL"),
            Just("ttl"),
            Just("HTTP"),
            Just("Interval"),
            Just("interval"),
            Just("Timeout"),
            Just("TCP"),
            Just("GRPC"),
            Just("AliasService"),
            Just("ScriptArgs"),
            Just("Args"),
            Just("Header"),
            Just("Status"),
            Just("status"),
            Just("ServiceID"),
            Just("service_id"),
            Just("CheckID"),
            Just("Service"),
            Just("TaggedAddresses"),
            Just("tagged_addresses"),
            Just("Definition"),
            Just("SkipNodeUpdate"),
            Just("OutputMaxSize"),
            Just("FailuresBeforeWarning"),
            Just("FailuresBeforeCritical"),
            Just("DeregisterCriticalServiceAfter"),
            Just("Output"),
            Just("Proxy"),
            Just("Type"),
            Just("x_y"),
        ]
        .prop_map(String::from);
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..4).prop_map(Value::Array),
            prop::collection::btree_map(key, inner, 0..8)
                .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn decoders_never_panic_on_random_bytes(bytes in prop::collection::vec(any::<u8>(), 0..128)) {
        exercise_all(&bytes);
    }

    #[test]
    fn decoders_never_panic_on_random_json(v in arb_json()) {
        let bytes = serde_json::to_vec(&v).unwrap_or_default();
        exercise_all(&bytes);
    }

    #[test]
    fn check_ids_are_unique_and_numbered(n in 1usize..6, named in prop::collection::vec(any::<bool>(), 6)) {
        let checks: Vec<Value> = (0..n)
            .map(|i| if named[i] { json!({"TTL": "1s", "ID": format!("c{i}")}) } else { json!({"TTL": "1s"}) })
            .collect();
        let (_, specs) = register(json!({"Name": "s", "Checks": checks})).unwrap();
        prop_assert_eq!(specs.len(), n);
        for (i, spec) in specs.iter().enumerate() {
            let want = if named[i] {
                format!("c{i}")
            } else if n > 1 {
                format!("service:s:{}", i + 1)
            } else {
                "service:s".to_string()
            };
            prop_assert_eq!(spec.check_id(), want.as_str());
        }
    }

    #[test]
    fn output_never_has_null_lists(tags in prop::collection::vec("[a-z]{0,3}", 0..3)) {
        let svc = NodeService { tags, ..Default::default() };
        let node = Node::default();
        let v = serde_json::to_value(CheckServiceNode::new(&node, &svc, std::iter::empty())).unwrap();
        prop_assert!(v["Service"]["Tags"].is_array());
        prop_assert!(v["Checks"].is_array());
        prop_assert!(v["Node"]["Meta"].is_object());
        let v = serde_json::to_value(ServiceNode::new(&node, &svc)).unwrap();
        prop_assert!(v["ServiceTags"].is_array());
        prop_assert!(v["ServiceMeta"].is_object());
    }
}
