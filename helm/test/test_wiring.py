"""Wiring of the rendered chart: what `helm template` produces must hang together the way a
cluster needs it to (ports, selectors, placement, quorum, bootstrap), for every values file of
the CI matrix and for targeted values."""
import json
import shutil
from pathlib import Path

import pytest
import yaml

from conftest import CHART, HERE, find, pod_spec, render, render_error

MATRIX = sorted((HERE / "values").glob("*.yaml"))
WORKLOADS = ("StatefulSet", "DaemonSet", "Deployment", "Job", "Pod")
# Which values section places which workload.
COMPONENT_VALUES = {"server": "server", "client": "client", "sync-catalog": "syncCatalog",
                    "sync-catalog-cleanup": "syncCatalog", "traffic-proxy": "trafficProxy"}


def workloads(objs):
    return [o for o in objs if o["kind"] in WORKLOADS]


def containers(obj):
    return pod_spec(obj)["containers"]


def labels_of_pods(obj):
    if obj["kind"] == "Pod":
        return obj["metadata"].get("labels", {})
    return obj["spec"]["template"]["metadata"]["labels"]


@pytest.mark.parametrize("values", MATRIX, ids=lambda p: p.stem)
def test_every_service_port_reaches_a_container_port(values):
    objs = render(files=[values])
    services = [o for o in objs if o["kind"] == "Service"]
    assert services
    for svc in services:
        selector = svc["spec"]["selector"]
        pods = [w for w in workloads(objs)
                if selector.items() <= labels_of_pods(w).items()]
        assert pods, f"Service {svc['metadata']['name']} selects no workload"
        for port in svc["spec"]["ports"]:
            target = port.get("targetPort", port["port"])
            proto = port.get("protocol", "TCP")
            for w in pods:
                matches = [cp for c in containers(w) for cp in c.get("ports", [])
                           if (cp.get("name") == target or cp["containerPort"] == target)
                           and cp.get("protocol", "TCP") == proto]
                assert matches, (f"{svc['metadata']['name']} port {port['name']} -> {target}/"
                                 f"{proto}: no such port in {w['kind']} {w['metadata']['name']}")
                if svc["spec"].get("clusterIP") == "None":
                    # Headless: clients dial the pod on the Service's port number itself.
                    assert matches[0]["containerPort"] == port["port"]


@pytest.mark.parametrize("values", MATRIX, ids=lambda p: p.stem)
def test_selectors_match_pod_labels(values):
    objs = render(files=[values])
    for w in workloads(objs):
        if w["kind"] in ("Pod", "Job"):
            continue
        sel = w["spec"]["selector"]["matchLabels"]
        assert sel.items() <= labels_of_pods(w).items(), w["metadata"]["name"]
    for pdb in (o for o in objs if o["kind"] == "PodDisruptionBudget"):
        sts = find(objs, "StatefulSet", "-server")
        assert pdb["spec"]["selector"]["matchLabels"].items() <= labels_of_pods(sts).items()


def test_selectors_and_volume_claims_do_not_change_with_the_chart_version(tmp_path):
    """A StatefulSet's or DaemonSet's selector and volumeClaimTemplates cannot change on
    upgrade: they must not carry the chart version (helm upgrade would fail)."""
    values = {"server": {"replicas": 3}, "client": {"enabled": True},
              "syncCatalog": {"enabled": True}, "trafficProxy": {"enabled": True}}
    before = render(values)
    bumped = tmp_path / "registry"
    shutil.copytree(CHART, bumped)
    chart = yaml.safe_load((bumped / "Chart.yaml").read_text())
    chart["version"], chart["appVersion"] = "9.8.7", "9.8.7"
    (bumped / "Chart.yaml").write_text(yaml.safe_dump(chart))
    import conftest
    old, conftest.CHART = conftest.CHART, bumped
    try:
        after = render(values)
    finally:
        conftest.CHART = old

    def stable(objs):
        out = {}
        for w in workloads(objs):
            if w["kind"] in ("StatefulSet", "DaemonSet", "Deployment"):
                out[w["metadata"]["name"]] = (w["spec"]["selector"],
                                              w["spec"].get("volumeClaimTemplates"))
        for s in objs:
            if s["kind"] == "Service":
                out[s["metadata"]["name"]] = s["spec"]["selector"]
        return out

    assert stable(before) == stable(after)
    assert json.dumps(stable(before)).find("0.1.0") == -1
    sts = find(before, "StatefulSet", "-server")
    assert sts["spec"]["selector"]["matchLabels"] == {
        "app": "registry", "chart": "registry-helm", "release": "rel",
        "component": "server", "hasDNS": "true"}
    ds = find(before, "DaemonSet", "-client")
    assert ds["spec"]["selector"]["matchLabels"] == {
        "app": "registry", "chart": "registry-helm", "release": "rel",
        "component": "client", "hasDNS": "true"}


PLACEMENT = {
    "nodeSelector": "disk: ssd\n",
    "tolerations": "- key: dedicated\n  operator: Equal\n  value: registry\n  effect: NoSchedule\n",
    "priorityClassName": "registry-critical",
    "affinity": "nodeAffinity:\n  requiredDuringSchedulingIgnoredDuringExecution:\n"
                "    nodeSelectorTerms:\n      - matchExpressions:\n"
                "          - {key: zone, operator: In, values: [a]}\n",
}


def test_every_workload_carries_its_placement_values():
    values = {"server": {"replicas": 3}, "client": {"enabled": True},
              "syncCatalog": {"enabled": True, "cleanupNodeOnRemoval": True},
              "trafficProxy": {"enabled": True}}
    for section in ("server", "client", "syncCatalog", "trafficProxy"):
        values[section].update(PLACEMENT)
    objs = render(values)
    placed = [w for w in workloads(objs) if w["kind"] != "Pod"]
    assert {w["metadata"]["name"].split("rel-registry-")[1] for w in placed} == {
        "server", "client", "sync-catalog", "sync-catalog-cleanup", "traffic-proxy"}
    for w in placed:
        spec = pod_spec(w)
        name = w["metadata"]["name"]
        assert spec.get("nodeSelector") == {"disk": "ssd"}, name
        assert spec.get("tolerations") == yaml.safe_load(PLACEMENT["tolerations"]), name
        assert spec.get("priorityClassName") == "registry-critical", name
        assert spec.get("affinity") == yaml.safe_load(PLACEMENT["affinity"]), name
    # and one component's values never leak into another's pods
    only_server = render({"server": {"replicas": 3, **PLACEMENT}, "client": {"enabled": True}})
    ds = pod_spec(find(only_server, "DaemonSet"))
    assert "nodeSelector" not in ds and "priorityClassName" not in ds and "tolerations" not in ds


@pytest.mark.parametrize("replicas", [1, 3, 5, 7])
def test_disruption_budget_keeps_quorum(replicas):
    objs = render({"server": {"replicas": replicas}})
    pdb = find(objs, "PodDisruptionBudget")
    max_unavailable = pdb["spec"]["maxUnavailable"]
    quorum = replicas // 2 + 1
    assert replicas - max_unavailable >= quorum
    # and it allows as much as quorum permits, so drains are not blocked needlessly
    assert max_unavailable == (replicas - 1) // 2
    if replicas == 1:
        assert max_unavailable == 0


def test_disruption_budget_value_cannot_break_quorum():
    objs = render({"server": {"replicas": 5, "disruptionBudget": {"maxUnavailable": 1}}})
    assert find(objs, "PodDisruptionBudget")["spec"]["maxUnavailable"] == 1
    err = render_error({"server": {"replicas": 5, "disruptionBudget": {"maxUnavailable": 3}}})
    assert "would let 3 of 5 servers go down and lose quorum; at most 2" in err
    assert not [o for o in render({"server": {"disruptionBudget": {"enabled": False}}})
                if o["kind"] == "PodDisruptionBudget"]


def server_json(objs):
    cm = find(objs, "ConfigMap", "-server-config")
    return json.loads(cm["data"]["server.json"])


@pytest.mark.parametrize("replicas", [1, 3, 5])
def test_bootstrap_expect_follows_replicas(replicas):
    objs = render({"server": {"replicas": replicas}})
    sts = find(objs, "StatefulSet", "-server")
    cfg = server_json(objs)
    assert sts["spec"]["replicas"] == replicas
    assert cfg["bootstrap_expect"] == replicas
    assert cfg["server"] is True
    # one join address per pod, on the headless Service's pod DNS names
    svc = sts["spec"]["serviceName"]
    assert find(objs, "Service", "-server")["metadata"]["name"] == svc
    assert cfg["retry_join"] == [f"{svc}-{i}.{svc}.ns1.svc:8301" for i in range(replicas)]
    assert sts["spec"]["podManagementPolicy"] == "Parallel"
    assert find(objs, "Service", "-server")["spec"]["publishNotReadyAddresses"] is True


def test_bootstrap_expect_value():
    assert server_json(render({"server": {"replicas": 3, "bootstrapExpect": 5}}))[
        "bootstrap_expect"] == 5
    assert "server.bootstrapExpect cannot be less than server.replicas" in render_error(
        {"server": {"replicas": 5, "bootstrapExpect": 3}})


def test_extra_config_is_read_after_the_chart_config():
    objs = render({"server": {"extraConfig": '{"raft_snapshot_threshold": 100}'}})
    cm = find(objs, "ConfigMap", "-server-config")
    assert json.loads(cm["data"]["extra-from-values.json"]) == {"raft_snapshot_threshold": 100}
    args = containers(find(objs, "StatefulSet"))[0]["args"]
    assert args.index("-config-dir=/registry/config") < args.index(
        "-config-file=/registry/extra-config/extra-from-values.json")


def test_dns_service():
    objs = render({"dns": {"clusterIP": "10.96.0.53"}, "client": {"enabled": True}})
    dns = find(objs, "Service", "-dns")
    assert dns["spec"]["clusterIP"] == "10.96.0.53"
    assert {p["port"] for p in dns["spec"]["ports"]} == {53}
    assert {p["protocol"] for p in dns["spec"]["ports"]} == {"TCP", "UDP"}
    # servers and clients answer DNS
    for kind in ("StatefulSet", "DaemonSet"):
        assert labels_of_pods(find(objs, kind))["hasDNS"] == "true"
    assert not [o for o in render({"dns": {"enabled": False}})
                if o["metadata"]["name"].endswith("-dns")]


def test_global_enabled_false_with_one_component_on():
    objs = render({"global": {"enabled": False}, "server": {"enabled": True}})
    assert {o["kind"] for o in objs} >= {"StatefulSet"}
    assert not [o for o in objs if o["metadata"]["name"].endswith(("-dns", "-ui"))]


def test_global_name_and_namespace():
    objs = render({"global": {"name": "consul"}}, release="r1", namespace="infra")
    sts = find(objs, "StatefulSet")
    assert sts["metadata"]["name"] == "consul-server"
    assert server_json(objs)["retry_join"][0] == "consul-server-0.consul-server.infra.svc:8301"
    assert {o["metadata"].get("namespace") for o in objs
            if o["kind"] not in ("ClusterRole", "ClusterRoleBinding")} == {"infra"}


def test_client_agents_are_reachable_on_their_node():
    objs = render({"server": {"replicas": 3}, "client": {"enabled": True}})
    ds = find(objs, "DaemonSet")
    c = containers(ds)[0]
    host_ports = {(p["name"], p.get("hostPort")) for p in c["ports"]}
    assert ("http", 8500) in host_ports and ("dns-udp", 8600) in host_ports \
        and ("dns-tcp", 8600) in host_ports
    env = {e["name"]: e["valueFrom"]["fieldRef"]["fieldPath"] for e in c["env"] if "valueFrom" in e}
    assert env["HOST_IP"] == "status.hostIP" and env["NODE_NAME"] == "spec.nodeName"
    assert "-node=$(NODE_NAME)" in c["args"]
    cfg = json.loads(find(objs, "ConfigMap", "-client-config")["data"]["client.json"])
    assert cfg["server"] is False
    assert cfg["retry_join"] == server_json(objs)["retry_join"]
    net = render({"client": {"enabled": True, "hostNetwork": True}})
    spec = pod_spec(find(net, "DaemonSet"))
    assert spec["hostNetwork"] is True and spec["dnsPolicy"] == "ClusterFirstWithHostNet"


def sync_args(objs):
    return containers(find(objs, "Deployment", "-sync-catalog"))[0]["args"]


def test_sync_catalog_flags_follow_values():
    objs = render({"syncCatalog": {
        "enabled": True, "toConsul": True, "toK8S": False, "default": False,
        "k8sAllowNamespaces": ["apps", "web"], "k8sDenyNamespaces": ["kube-system"],
        "addK8SNamespaceSuffix": False, "consulPrefix": "k8s-", "k8sPrefix": "c-",
        "k8sTag": "east", "consulNodeName": "k8s-east", "syncClusterIPServices": False,
        "syncLoadBalancerEndpoints": True, "nodePortSyncType": "InternalOnly",
        "consulWriteInterval": "10s", "logLevel": "debug"}})
    args = sync_args(objs)
    for flag in ["-to-consul=true", "-to-k8s=false", "-k8s-default-sync=false",
                 "-allow-k8s-namespace=apps", "-allow-k8s-namespace=web",
                 "-deny-k8s-namespace=kube-system", "-add-k8s-namespace-suffix=false",
                 "-consul-service-prefix=k8s-", "-k8s-service-prefix=c-",
                 "-consul-k8s-tag=east", "-consul-node-name=k8s-east",
                 "-sync-clusterip-services=false", "-sync-lb-services-endpoints=true",
                 "-node-port-sync-type=InternalOnly", "-consul-write-interval=10s",
                 "-k8s-write-namespace=$(NAMESPACE)", "-log-level=debug",
                 "-consul-domain=consul", "-listen=:8080"]:
        assert flag in args, flag
    # consul-k8s's chart defaults
    defaults = sync_args(render({"syncCatalog": {"enabled": True}}))
    for flag in ["-to-consul=true", "-to-k8s=true", "-k8s-default-sync=true",
                 "-allow-k8s-namespace=*", "-deny-k8s-namespace=kube-system",
                 "-deny-k8s-namespace=kube-public", "-add-k8s-namespace-suffix=true",
                 "-consul-node-name=k8s-sync", "-node-port-sync-type=ExternalFirst"]:
        assert flag in defaults, flag
    probe = containers(find(objs, "Deployment", "-sync-catalog"))[0]["readinessProbe"]
    assert probe["httpGet"] == {"path": "/health/ready", "port": "health"}


def env_of(obj):
    return {e["name"]: e.get("value") for e in containers(obj)[0]["env"]}


def test_sync_and_proxy_talk_to_the_node_agent_or_the_servers():
    with_clients = render({"client": {"enabled": True}, "syncCatalog": {"enabled": True},
                           "trafficProxy": {"enabled": True}})
    assert env_of(find(with_clients, "Deployment", "-sync-catalog"))["CONSUL_HTTP_ADDR"] == \
        "http://$(HOST_IP):8500"
    proxy = containers(find(with_clients, "Deployment", "-traffic-proxy"))[0]
    assert "--providers.consulcatalog.endpoint.address=$(HOST_IP):8500" in proxy["args"]
    assert "HOST_IP" in env_of(find(with_clients, "Deployment", "-traffic-proxy"))
    servers_only = render({"syncCatalog": {"enabled": True}, "trafficProxy": {"enabled": True}})
    assert env_of(find(servers_only, "Deployment", "-sync-catalog"))["CONSUL_HTTP_ADDR"] == \
        "http://rel-registry-server.ns1.svc:8500"
    proxy = containers(find(servers_only, "Deployment", "-traffic-proxy"))[0]
    assert "--providers.consulcatalog.endpoint.address=rel-registry-server.ns1.svc:8500" \
        in proxy["args"]


def test_sync_rbac_follows_to_k8s():
    def verbs(objs):
        role = find(objs, "ClusterRole")
        return {r["resources"][0]: set(r["verbs"]) for r in role["rules"]}
    both = verbs(render({"syncCatalog": {"enabled": True, "toK8S": True}}))
    assert both["services"] >= {"get", "list", "watch", "create", "update", "delete"}
    assert both["endpointslices"] == {"get", "list", "watch"}
    assert "get" in both["nodes"]
    one_way = verbs(render({"syncCatalog": {"enabled": True, "toK8S": False}}))
    assert one_way["services"] == {"get", "list", "watch"}
    objs = render({"syncCatalog": {"enabled": True}})
    binding = find(objs, "ClusterRoleBinding")
    assert binding["subjects"][0]["name"] == pod_spec(
        find(objs, "Deployment"))["serviceAccountName"]


def test_sync_cleanup_hook():
    objs = render({"syncCatalog": {"enabled": True, "cleanupNodeOnRemoval": True,
                                   "consulNodeName": "k8s-east"}})
    job = find(objs, "Job")
    assert job["metadata"]["annotations"]["helm.sh/hook"] == "pre-delete"
    args = containers(job)[0]["args"]
    assert "-purge-k8s-services-from-node=true" in args and "-consul-node-name=k8s-east" in args
    assert not [o for o in render({"syncCatalog": {"enabled": True}}) if o["kind"] == "Job"]


def test_traffic_proxy():
    objs = render({"trafficProxy": {"enabled": True}})
    svc = find(objs, "Service", "-traffic-proxy")
    assert svc["spec"]["type"] == "LoadBalancer"
    assert svc["spec"]["externalTrafficPolicy"] == "Local"
    args = containers(find(objs, "Deployment", "-traffic-proxy"))[0]["args"]
    for flag in ["--providers.consulcatalog=true", "--providers.consulcatalog.exposedbydefault=false",
                 "--providers.consulcatalog.strictchecks=passing",
                 "--providers.consulcatalog.prefix=traefik", "--ping=true",
                 "--global.sendanonymoususage=false", "--global.checknewversion=false",
                 "--entrypoints.web.address=:8000"]:
        assert flag in args, flag
    assert containers(find(objs, "Deployment", "-traffic-proxy"))[0]["image"].startswith("traefik:")
    internal = render({"trafficProxy": {"enabled": True, "service": {"type": "ClusterIP"}}})
    assert "externalTrafficPolicy" not in find(internal, "Service", "-traffic-proxy")["spec"]


def test_server_affinity_is_a_template_and_schedules_on_one_node():
    objs = render({"server": {"replicas": 3}})
    aff = pod_spec(find(objs, "StatefulSet"))["affinity"]["podAntiAffinity"]
    # preferred, so a one-node cluster still schedules every server
    assert "requiredDuringSchedulingIgnoredDuringExecution" not in aff
    term = aff["preferredDuringSchedulingIgnoredDuringExecution"][0]["podAffinityTerm"]
    assert term["labelSelector"]["matchLabels"] == {"app": "registry", "release": "rel",
                                                    "component": "server"}
    five = render(files=[HERE / "values" / "five-servers-affinity.yaml"])
    req = pod_spec(find(five, "StatefulSet"))["affinity"]["podAntiAffinity"][
        "requiredDuringSchedulingIgnoredDuringExecution"][0]
    assert req["labelSelector"]["matchLabels"]["release"] == "rel"


def test_probes():
    sts = find(render({"server": {"replicas": 3}}), "StatefulSet")
    c = containers(sts)[0]
    assert c["readinessProbe"]["exec"]["command"] == [
        "/usr/local/bin/registry", "operator", "raft", "list-peers", "-http-addr=127.0.0.1:8500"]
    assert c["livenessProbe"]["httpGet"] == {"path": "/v1/status/leader", "port": "http"}
    # an election (at most a few seconds) never exhausts the liveness budget
    lp = c["livenessProbe"]
    assert lp["periodSeconds"] * lp["failureThreshold"] >= 60


def test_unsupported_values_fail_with_a_message():
    for values, message in [
        ({"global": {"tls": {"enabled": True}}}, "global.tls.caCert.secretName and secretKey"),
        ({"global": {"acls": {"manageSystemACLs": True, "createReplicationToken": True}}},
         "global.acls.createReplicationToken"),
        ({"global": {"gossipEncryption": {"autoGenerate": True, "secretName": "g"}}},
         "global.gossipEncryption.autoGenerate"),
        ({"global": {"federation": {"enabled": True}}}, "global.federation.enabled"),
        ({"global": {"datacenter": "dc2", "acls": {"manageSystemACLs": True}, "federation": {
            "enabled": True, "primaryDatacenter": "dc1", "primaryGateways": ["x:8302"]}}},
         "ACL replication between datacenters"),
        ({"server": {"replicaz": 3}}, "replicaz"),
    ]:
        assert message in render_error(values)


def test_images():
    objs = render({"syncCatalog": {"enabled": True}})
    assert containers(find(objs, "StatefulSet"))[0]["image"] == "localhost/registry:0.1.0"
    sync = containers(find(objs, "Deployment"))[0]
    assert sync["image"] == "localhost/registry:0.1.0"
    assert sync["command"] == ["/usr/local/bin/k8s-sync"]
    objs = render({"global": {"imageK8S": "example/k8s-sync:1"}, "syncCatalog": {"enabled": True}})
    assert containers(find(objs, "Deployment"))[0]["image"] == "example/k8s-sync:1"


GOLDEN = HERE / "immutable-fields.json"


def immutable_fields(objs):
    """The fields Kubernetes refuses to change on an existing object (so `helm upgrade` from
    an earlier chart version fails if they differ): workload selectors, a StatefulSet's
    serviceName and volumeClaimTemplates, a Service's clusterIP; plus the Services' selectors,
    which decide which pods keep receiving traffic across an upgrade."""
    out = {}
    for o in objs:
        key = f"{o['kind']}/{o['metadata']['name']}"
        spec = o.get("spec", {})
        if o["kind"] in ("StatefulSet", "DaemonSet", "Deployment"):
            out[key] = {"selector": spec["selector"]}
            if o["kind"] == "StatefulSet":
                out[key]["serviceName"] = spec["serviceName"]
                out[key]["volumeClaimTemplates"] = spec["volumeClaimTemplates"]
        elif o["kind"] == "Service":
            out[key] = {"selector": spec["selector"], "clusterIP": spec.get("clusterIP")}
        elif o["kind"] == "PodDisruptionBudget":
            out[key] = {"selector": spec["selector"]}
    return out


def test_immutable_fields_match_the_released_chart():
    """Compared with the fields of the released chart (helm/test/immutable-fields.json): a
    change here breaks `helm upgrade` for existing installs and needs a migration note, not
    just a new golden file."""
    objs = render({"server": {"replicas": 3}, "client": {"enabled": True},
                   "syncCatalog": {"enabled": True}, "trafficProxy": {"enabled": True}})
    got = immutable_fields(objs)
    assert got == json.loads(GOLDEN.read_text()), json.dumps(got, indent=2, sort_keys=True)


def test_kubernetes_older_than_1_25_is_refused():
    import subprocess
    from conftest import helm_bin
    p = subprocess.run([helm_bin(), "template", "rel", str(CHART), "--kube-version", "1.24.9"],
                       capture_output=True, text=True)
    assert p.returncode != 0 and ">=1.25.0-0" in p.stderr, p.stderr
    ok = subprocess.run([helm_bin(), "template", "rel", str(CHART), "--kube-version", "1.25.0"],
                        capture_output=True, text=True)
    assert ok.returncode == 0, ok.stderr
