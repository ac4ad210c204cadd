//! Table tests of the translation, one per case of consul-k8s's `resource_test.go` checklist
//! (named after them), on its fixture: a ClusterIP Service `foo` with ports http 80→8080 and
//! rpc 8500→2000 and one EndpointSlice with 1.1.1.1 (ready, us-west-2a, pod/foobar), 2.2.2.2
//! (ready unset, us-west-2b) and 3.3.3.3 (not ready, terminating, us-west-2c).
#![allow(clippy::unwrap_used, clippy::expect_used)]

use super::*;
use serde_json::{json, Value};

fn svc(v: Value) -> Service {
    let mut base = json!({
        "apiVersion": "v1", "kind": "Service",
        "metadata": {"name": "foo", "namespace": "default"},
        "spec": {"type": "ClusterIP", "clusterIP": "10.0.0.5", "selector": {"app": "foo"},
                 "ports": [{"name": "http", "port": 80, "targetPort": 8080},
                           {"name": "rpc", "port": 8500, "targetPort": 2000}]}
    });
    merge(&mut base, v);
    serde_json::from_value(base).unwrap()
}

fn merge(a: &mut Value, b: Value) {
    match (a, b) {
        (Value::Object(a), Value::Object(b)) => {
            for (k, v) in b {
                if v.is_null() {
                    a.remove(&k);
                } else {
                    merge(a.entry(k).or_insert(Value::Null), v);
                }
            }
        }
        (a, b) => *a = b,
    }
}

fn fixture_slice() -> Arc<EndpointSlice> {
    slice(json!({
        "ports": [{"name": "http", "port": 8080}, {"name": "rpc", "port": 2000}],
        "endpoints": [
            {"addresses": ["1.1.1.1"], "conditions": {"ready": true}, "zone": "us-west-2a",
             "nodeName": "k8s-1", "targetRef": {"kind": "Pod", "name": "foobar", "namespace": "default"}},
            {"addresses": ["2.2.2.2"], "conditions": {}, "zone": "us-west-2b", "nodeName": "k8s-2"},
            {"addresses": ["3.3.3.3"], "conditions": {"ready": false, "terminating": true},
             "zone": "us-west-2c", "nodeName": "k8s-2"}
        ]
    }))
}

fn slice(v: Value) -> Arc<EndpointSlice> {
    let mut base = json!({
        "apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice", "addressType": "IPv4",
        "metadata": {"name": "foo-abc", "namespace": "default",
                     "labels": {"kubernetes.io/service-name": "foo"}},
        "endpoints": []
    });
    merge(&mut base, v);
    Arc::new(serde_json::from_value(base).unwrap())
}

fn nodes() -> BTreeMap<String, Arc<Node>> {
    let n = |name: &str, addrs: Value| -> (String, Arc<Node>) {
        let node: Node = serde_json::from_value(json!({
            "apiVersion": "v1", "kind": "Node", "metadata": {"name": name},
            "status": {"addresses": addrs}
        }))
        .unwrap();
        (name.to_string(), Arc::new(node))
    };
    [
        n(
            "k8s-1",
            json!([{"type": "ExternalIP", "address": "5.5.5.5"},
                           {"type": "InternalIP", "address": "4.4.4.4"}]),
        ),
        n(
            "k8s-2",
            json!([{"type": "InternalIP", "address": "6.6.6.6"}]),
        ),
    ]
    .into()
}

fn run(s: &Service, cfg: &SyncConfig) -> Translation {
    translate(s, &[fixture_slice()], &nodes(), cfg)
}

fn instances(t: Translation) -> Vec<Instance> {
    match t {
        Translation::Instances(v) => v,
        other => panic!("expected instances, got {other:?}"),
    }
}

fn addrs(v: &[Instance]) -> Vec<(&str, i32)> {
    v.iter().map(|i| (i.address.as_str(), i.port)).collect()
}

fn lb() -> Value {
    json!({"spec": {"type": "LoadBalancer", "selector": null},
           "status": {"loadBalancer": {"ingress": [{"ip": "1.2.3.4"}]}}})
}

#[test]
fn service_id_matches_consul_k8s() {
    // The first 12 hex digits of sha1("foo-1.1.1.1").
    let id = service_id("foo", "1.1.1.1");
    assert_eq!(id, "foo-9139dcbd9e13");
    assert!(id.starts_with("foo-"));
    assert_eq!(id.len(), "foo-".len() + 12);
    assert!(id["foo-".len()..].chars().all(|c| c.is_ascii_hexdigit()));
    assert_ne!(id, service_id("foo", "2.2.2.2"));
    assert_eq!(id, service_id("foo", "1.1.1.1"));
}

#[test]
fn default_enable_and_disable() {
    let cfg = SyncConfig::default();
    assert_eq!(instances(run(&svc(json!({})), &cfg)).len(), 3);
    let off =
        svc(json!({"metadata": {"annotations": {"consul.hashicorp.com/service-sync": "false"}}}));
    assert_eq!(run(&off, &cfg), Translation::NotSynced);
    let cfg_off = SyncConfig {
        default_sync: false,
        ..SyncConfig::default()
    };
    assert_eq!(run(&svc(json!({})), &cfg_off), Translation::NotSynced);
    let on = svc(json!({"metadata": {"annotations": {"consul.hashicorp.com/service-sync": "t"}}}));
    assert_eq!(instances(run(&on, &cfg_off)).len(), 3);
    // Unparseable: the default applies.
    let bad =
        svc(json!({"metadata": {"annotations": {"consul.hashicorp.com/service-sync": "maybe"}}}));
    assert_eq!(run(&bad, &cfg_off), Translation::NotSynced);
    assert_eq!(instances(run(&bad, &cfg)).len(), 3);
}

#[test]
fn allow_deny_namespaces() {
    let s = |ns: &str| svc(json!({"metadata": {"namespace": ns}}));
    let cases: &[(&[&str], &[&str], &str, bool)] = &[
        (&["*"], &[], "default", true),
        (&[], &[], "default", false), // an empty allow list syncs nothing
        (&["foo"], &[], "default", false),
        (&["foo"], &[], "foo", true),
        (&["*"], &["foo"], "foo", false),
        (&["foo"], &["foo"], "foo", false), // deny wins
        (&["*"], &["kube-system"], "default", true),
    ];
    for (allow, deny, ns, want) in cases {
        let cfg = SyncConfig {
            allow_namespaces: allow.iter().map(|s| s.to_string()).collect(),
            deny_namespaces: deny.iter().map(|s| s.to_string()).collect(),
            ..SyncConfig::default()
        };
        assert_eq!(
            should_sync(&s(ns), &cfg),
            *want,
            "allow {allow:?} deny {deny:?} ns {ns}"
        );
    }
}

#[test]
fn names_prefix_suffix_and_annotation() {
    let base = SyncConfig::default();
    let pre = SyncConfig {
        consul_prefix: "prefix-".into(),
        ..base.clone()
    };
    let ns = SyncConfig {
        add_namespace_suffix: true,
        ..base.clone()
    };
    let both = SyncConfig {
        add_namespace_suffix: true,
        consul_prefix: "prefix-".into(),
        ..base.clone()
    };
    let plain = svc(json!({"metadata": {"namespace": "bar"}}));
    let named = svc(json!({"metadata": {"namespace": "bar",
        "annotations": {"consul.hashicorp.com/service-name": "  different  "}}}));
    assert_eq!(catalog_name(&plain, &base).unwrap(), "foo");
    assert_eq!(catalog_name(&plain, &pre).unwrap(), "prefix-foo");
    assert_eq!(catalog_name(&plain, &ns).unwrap(), "foo-bar");
    assert_eq!(catalog_name(&plain, &both).unwrap(), "prefix-foo-bar");
    // The annotation is the whole name: no prefix, no suffix, trimmed.
    assert_eq!(catalog_name(&named, &both).unwrap(), "different");
    let i = instances(run(&named, &both));
    assert!(i
        .iter()
        .all(|i| i.service == "different" && i.id.starts_with("different-")));
    // GetAnnotationServiceName: empty or longer than 255 is invalid, and the Service keeps
    // what it had.
    for bad in ["   ", &"x".repeat(256)] {
        let s =
            svc(json!({"metadata": {"annotations": {"consul.hashicorp.com/service-name": bad}}}));
        assert_eq!(run(&s, &base), Translation::Keep);
    }
    let ok = svc(
        json!({"metadata": {"annotations": {"consul.hashicorp.com/service-name": "x".repeat(255)}}}),
    );
    assert_eq!(catalog_name(&ok, &base).unwrap().len(), 255);
}

#[test]
fn cluster_ip_and_health_check() {
    let i = instances(run(&svc(json!({})), &SyncConfig::default()));
    assert_eq!(
        addrs(&i),
        vec![("1.1.1.1", 8080), ("2.2.2.2", 8080), ("3.3.3.3", 8080)]
    );
    let checks: Vec<_> = i.iter().map(|i| i.check.clone().unwrap()).collect();
    assert_eq!(
        checks.iter().map(|c| c.passing).collect::<Vec<_>>(),
        vec![true, false, false]
    );
    assert_eq!(
        checks[0].id,
        format!("default/{}", service_id("foo", "1.1.1.1"))
    );
    assert_eq!(i[0].id, service_id("foo", "1.1.1.1"));
    assert_eq!(i[0].tags, vec!["k8s"]);
    let m = &i[0].meta;
    assert_eq!(m["external-source"], "kubernetes");
    assert_eq!(m["external-k8s-ns"], "default");
    assert_eq!(m["port-http"], "80");
    assert_eq!(m["port-rpc"], "8500");
    // targetRefInMeta and the topology.
    assert_eq!(m["external-k8s-ref-kind"], "Pod");
    assert_eq!(m["external-k8s-ref-name"], "foobar");
    assert_eq!(m["external-k8s-node-name"], "k8s-1");
    assert_eq!(m["external-k8s-topology-zone"], "us-west-2a");
    assert!(!i[1].meta.contains_key("external-k8s-ref-kind"));
    assert_eq!(i[2].meta["external-k8s-topology-zone"], "us-west-2c");
}

#[test]
fn cluster_ip_prefix_and_sync_disabled() {
    let cfg = SyncConfig {
        consul_prefix: "prefix-".into(),
        ..SyncConfig::default()
    };
    let i = instances(run(&svc(json!({})), &cfg));
    assert!(i.iter().all(|i| i.service == "prefix-foo"));
    let off = SyncConfig {
        sync_clusterip: false,
        ..SyncConfig::default()
    };
    assert_eq!(run(&svc(json!({})), &off), Translation::NotSynced);
    // Headless Services are ClusterIP too.
    let headless = svc(json!({"spec": {"clusterIP": "None"}}));
    assert_eq!(run(&headless, &off), Translation::NotSynced);
    assert_eq!(instances(run(&headless, &SyncConfig::default())).len(), 3);
}

#[test]
fn cluster_ip_annotated_port_name_and_number() {
    let by_name =
        svc(json!({"metadata": {"annotations": {"consul.hashicorp.com/service-port": "rpc"}}}));
    let i = instances(run(&by_name, &SyncConfig::default()));
    assert!(i.iter().all(|i| i.port == 2000), "{:?}", addrs(&i));
    let by_number =
        svc(json!({"metadata": {"annotations": {"consul.hashicorp.com/service-port": "4141"}}}));
    let i = instances(run(&by_number, &SyncConfig::default()));
    assert!(i.iter().all(|i| i.port == 4141));
}

#[test]
fn cluster_ip_unnamed_ports_and_all_namespaces() {
    let s = svc(json!({"metadata": {"namespace": "other"},
        "spec": {"ports": [{"port": 80, "targetPort": 8080}, {"port": 8500, "targetPort": 2000}]}}));
    let sl = slice(json!({"metadata": {"namespace": "other"},
        "ports": [{"port": 8080}, {"port": 2000}],
        "endpoints": [{"addresses": ["1.1.1.1"], "conditions": {"ready": true}}]}));
    let i = instances(translate(&s, &[sl], &nodes(), &SyncConfig::default()));
    assert_eq!(addrs(&i), vec![("1.1.1.1", 8080)]);
    // Unnamed ports give the key `port-`; the last one wins as in a Go map.
    assert_eq!(i[0].meta["port-"], "8500");
    assert_eq!(i[0].meta["external-k8s-ns"], "other");
    assert_eq!(
        i[0].check.as_ref().unwrap().id,
        format!("other/{}", i[0].id)
    );
}

#[test]
fn cluster_ip_target_port_named_and_dedup_across_slices() {
    // The EndpointSlice carries the resolved target port number, whatever the Service says.
    let s = svc(json!({"spec": {"ports": [{"name": "http", "port": 80, "targetPort": "web"}]}}));
    let a = slice(json!({"ports": [{"name": "http", "port": 9090}],
        "endpoints": [{"addresses": ["1.1.1.1"], "conditions": {"ready": true}}]}));
    let b = slice(
        json!({"metadata": {"name": "foo-def"}, "ports": [{"name": "http", "port": 9090}],
        "endpoints": [{"addresses": ["1.1.1.1"], "conditions": {"ready": true}},
                      {"addresses": ["7.7.7.7"], "conditions": {"ready": true}}]}),
    );
    let i = instances(translate(&s, &[a, b], &nodes(), &SyncConfig::default()));
    assert_eq!(addrs(&i), vec![("1.1.1.1", 9090), ("7.7.7.7", 9090)]);
}

#[test]
fn selectorless_service_with_hand_made_endpoints() {
    let s = svc(json!({"spec": {"selector": null, "ports": [{"name": "db", "port": 5432}]}}));
    let sl = slice(json!({"ports": [{"name": "db", "port": 5432}],
        "endpoints": [{"addresses": ["192.168.1.10"], "conditions": {"ready": true}}]}));
    let i = instances(translate(&s, &[sl], &nodes(), &SyncConfig::default()));
    assert_eq!(addrs(&i), vec![("192.168.1.10", 5432)]);
    // No endpoints at all: nothing yet, but still a synced Service.
    assert_eq!(
        translate(&s, &[], &nodes(), &SyncConfig::default()),
        Translation::Instances(vec![])
    );
}

#[test]
fn external_name_is_ignored() {
    let s = svc(
        json!({"spec": {"type": "ExternalName", "externalName": "db.example.com",
                                "clusterIP": null, "selector": null}}),
    );
    assert_eq!(run(&s, &SyncConfig::default()), Translation::NotSynced);
}

#[test]
fn external_ip_with_prefix_and_weight() {
    let s = svc(json!({"spec": {"externalIPs": ["3.3.3.3", "4.4.4.4"]}}));
    let i = instances(run(&s, &SyncConfig::default()));
    assert_eq!(addrs(&i), vec![("3.3.3.3", 80), ("4.4.4.4", 80)]);
    assert!(i.iter().all(|i| i.check.is_none() && i.weight.is_none()));
    assert_eq!(i[0].id, service_id("foo", "3.3.3.3"));
    let cfg = SyncConfig {
        consul_prefix: "prefix-".into(),
        ..SyncConfig::default()
    };
    assert!(instances(run(&s, &cfg))
        .iter()
        .all(|i| i.service == "prefix-foo"));
    // ServiceWeight with an external IP.
    let w = svc(
        json!({"metadata": {"annotations": {"consul.hashicorp.com/service-weight": "22"}},
                       "spec": {"externalIPs": ["3.3.3.3"]}}),
    );
    assert_eq!(
        instances(run(&w, &SyncConfig::default()))[0].weight,
        Some(22)
    );
    for bad in ["1", "0", "-5", "abc"] {
        let w = svc(
            json!({"metadata": {"annotations": {"consul.hashicorp.com/service-weight": bad}},
                           "spec": {"externalIPs": ["3.3.3.3"]}}),
        );
        assert_eq!(
            instances(run(&w, &SyncConfig::default()))[0].weight,
            None,
            "{bad}"
        );
    }
}

#[test]
fn load_balancer_cases() {
    let cfg = SyncConfig::default();
    // lb
    let i = instances(run(&svc(lb()), &cfg));
    assert_eq!(addrs(&i), vec![("1.2.3.4", 80)]);
    assert!(i[0].check.is_none());
    // lbMultiEndpoint, deduplicated, hostname fallback; none until it has an address.
    let multi = svc(
        json!({"spec": {"type": "LoadBalancer"}, "status": {"loadBalancer": {"ingress": [
        {"ip": "1.2.3.4"}, {"ip": "2.3.4.5"}, {"ip": "1.2.3.4"}, {"hostname": "lb.example.com"}]}}}),
    );
    assert_eq!(
        addrs(&instances(run(&multi, &cfg))),
        vec![("1.2.3.4", 80), ("2.3.4.5", 80), ("lb.example.com", 80)]
    );
    let pending = svc(json!({"spec": {"type": "LoadBalancer"}}));
    assert_eq!(run(&pending, &cfg), Translation::Instances(vec![]));
    // lbAnnotatedName / Port / Tags / Meta / weight
    let mut v = lb();
    merge(
        &mut v,
        json!({"metadata": {"annotations": {
        "consul.hashicorp.com/service-name": "bar",
        "consul.hashicorp.com/service-port": "rpc",
        "consul.hashicorp.com/service-tags": "one, two,three",
        "consul.hashicorp.com/service-meta-name": "bar",
        "consul.hashicorp.com/service-weight": "3"}}}),
    );
    let i = instances(run(&svc(v), &cfg));
    assert_eq!(i[0].service, "bar");
    assert_eq!(i[0].port, 8500);
    assert_eq!(i[0].tags, vec!["k8s", "one", "two", "three"]);
    assert_eq!(i[0].meta["name"], "bar");
    assert_eq!(i[0].weight, Some(3));
    // lbPrefix
    let pre = SyncConfig {
        consul_prefix: "prefix-".into(),
        ..cfg.clone()
    };
    assert_eq!(instances(run(&svc(lb()), &pre))[0].service, "prefix-foo");
    // lbRegisterEndpoints: endpoints with checks instead of the ingress.
    let eps = SyncConfig {
        sync_lb_endpoints: true,
        ..cfg.clone()
    };
    let i = instances(run(&svc(lb()), &eps));
    assert_eq!(
        addrs(&i),
        vec![("1.1.1.1", 8080), ("2.2.2.2", 8080), ("3.3.3.3", 8080)]
    );
    assert!(i.iter().all(|i| i.check.is_some()));
}

fn node_port_svc(extra: Value) -> Service {
    let mut v = json!({"spec": {"type": "NodePort", "ports": [
        {"name": "http", "port": 80, "targetPort": 8080, "nodePort": 30000},
        {"name": "rpc", "port": 8500, "targetPort": 2000, "nodePort": 30001}]}});
    merge(&mut v, extra);
    svc(v)
}

#[test]
fn node_port_cases() {
    let ext = SyncConfig::default();
    // nodePort (ExternalOnly): k8s-2 has no ExternalIP, so only the pod on k8s-1 shows.
    let i = instances(run(&node_port_svc(json!({})), &ext));
    assert_eq!(addrs(&i), vec![("5.5.5.5", 30000)]);
    assert_eq!(i[0].id, service_id("foo", "1.1.1.1"), "keyed by the pod IP");
    assert!(i[0].check.is_none());
    assert_eq!(i[0].meta["external-k8s-node-name"], "k8s-1");
    // nodePort_internalOnlySync
    let int = SyncConfig {
        node_port_sync: NodePortSyncType::InternalOnly,
        ..ext.clone()
    };
    assert_eq!(
        addrs(&instances(run(&node_port_svc(json!({})), &int))),
        vec![("4.4.4.4", 30000), ("6.6.6.6", 30000), ("6.6.6.6", 30000)]
    );
    // nodePort_externalFirstSync: not filtered by readiness.
    let first = SyncConfig {
        node_port_sync: NodePortSyncType::ExternalFirst,
        ..ext.clone()
    };
    assert_eq!(
        addrs(&instances(run(&node_port_svc(json!({})), &first))),
        vec![("5.5.5.5", 30000), ("6.6.6.6", 30000), ("6.6.6.6", 30000)]
    );
    // nodePortAnnotatedPort
    let ann = node_port_svc(
        json!({"metadata": {"annotations": {"consul.hashicorp.com/service-port": "rpc"}}}),
    );
    assert_eq!(addrs(&instances(run(&ann, &ext))), vec![("5.5.5.5", 30001)]);
    // nodePortUnnamedPort: the first non-zero nodePort.
    let unnamed = svc(json!({"spec": {"type": "NodePort", "ports": [
        {"port": 80, "targetPort": 8080}, {"port": 8500, "targetPort": 2000, "nodePort": 30001}]}}));
    assert_eq!(
        addrs(&instances(run(&unnamed, &ext))),
        vec![("5.5.5.5", 30001)]
    );
    // nodePortPrefix
    let pre = SyncConfig {
        consul_prefix: "prefix-".into(),
        ..ext.clone()
    };
    assert_eq!(
        instances(run(&node_port_svc(json!({})), &pre))[0].service,
        "prefix-foo"
    );
    // nodePort_singleEndpoint; an endpoint without a node or on an unknown node is skipped.
    let sl = slice(json!({"endpoints": [
        {"addresses": ["1.1.1.1"], "conditions": {"ready": true}, "nodeName": "k8s-1"},
        {"addresses": ["8.8.8.8"], "conditions": {"ready": true}},
        {"addresses": ["9.9.9.9"], "conditions": {"ready": true}, "nodeName": "gone"}]}));
    let i = instances(translate(&node_port_svc(json!({})), &[sl], &nodes(), &ext));
    assert_eq!(addrs(&i), vec![("5.5.5.5", 30000)]);
}

#[test]
fn consul_node_independent_tag() {
    let cfg = SyncConfig {
        tag: "cluster-b".into(),
        ..SyncConfig::default()
    };
    let i = instances(run(&svc(json!({})), &cfg));
    assert!(i.iter().all(|i| i.tags == vec!["cluster-b"]));
}
