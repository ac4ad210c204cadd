"""global.federation, rendered then run: two releases, the primary datacenter `east` and the
secondary `west` (its primaryGateways naming the primary's server pods' WAN port), run as
their rendered server pods on one simulated node. The secondary's servers join the primary's
over the WAN pool: each datacenter lists both, and a request for the other datacenter is
forwarded over the WAN (a key written in east is read through west with ?dc=east). With
createFederationSecret the primary's hook Job writes the federation Secret, and a secondary
rendered to load it (gossip key and serverConfigJSON) federates without primaryGateways.
"""
import json
import urllib.error
import urllib.request

from conftest import find, pod_spec, render
from test_render_run import configmaps, http_json, node, put, start_workload  # noqa: F401
from test_sync_run import FakeApi, not_granted, pod_kubeconfig, requests_made, sibling, sync_node  # noqa: F401


def values(dc, gateways=()):
    return {"global": {"datacenter": dc, "federation": {
        "enabled": True, "primaryDatacenter": "east", "primaryGateways": list(gateways)}},
        "server": {"replicas": 1}}


def test_federation_values_render_the_wan_join():
    east = render(values("east"), release="east")
    west = render(values("west", ["east-registry-server-0.east-registry-server.ns1.svc:8302"]),
                  release="west")
    cfg_e = json.loads(configmaps(east)["east-registry-server-config"]["data"]["server.json"])
    cfg_w = json.loads(configmaps(west)["west-registry-server-config"]["data"]["server.json"])
    assert cfg_e["primary_datacenter"] == cfg_w["primary_datacenter"] == "east"
    assert "retry_join_wan" not in cfg_e
    assert cfg_w["retry_join_wan"] == ["east-registry-server-0.east-registry-server.ns1.svc:8302"]
    # The WAN port is a container port and a port of the headless Service.
    ports = {(p["name"], p["protocol"]) for p in
             pod_spec(find(west, "StatefulSet", "-server"))["containers"][0]["ports"]}
    assert {("serfwan-tcp", "TCP"), ("serfwan-udp", "UDP")} <= ports
    svc = find(west, "Service", "-server")
    assert {(p["targetPort"], p["port"]) for p in svc["spec"]["ports"]} >= {
        ("serfwan-tcp", 8302), ("serfwan-udp", 8302)}
    # Without federation: no primary_datacenter, no WAN join.
    plain = json.loads(configmaps(render({}))["rel-registry-server-config"]["data"]["server.json"])
    assert "primary_datacenter" not in plain and "retry_join_wan" not in plain


def test_rendered_datacenters_federate_over_the_wan(node):  # noqa: F811
    east_objs = render(values("east"), release="east")
    sts = find(east_objs, "StatefulSet", "-server")
    gateway = f"{sts['metadata']['name']}-0.{sts['spec']['serviceName']}.{node.namespace}.svc:8302"
    west_objs = render(values("west", [gateway]), release="west")
    east = start_workload(node, east_objs, "StatefulSet", "-server", 1)[0]
    west = start_workload(node, west_objs, "StatefulSet", "-server", 1)[0]
    node.write_dns()
    east.start()
    west.start()
    node.wait(lambda: east.probe("readinessProbe") and west.probe("readinessProbe"), 90,
              "both datacenters' servers ready")
    node.wait(lambda: http_json(west, "/v1/catalog/datacenters") is not None
              and sorted(http_json(west, "/v1/catalog/datacenters")) == ["east", "west"]
              and sorted(http_json(east, "/v1/catalog/datacenters")) == ["east", "west"], 90,
              "each datacenter to see the other over the WAN")
    wan = {m["Name"]: m["Status"] for m in http_json(east, "/v1/agent/members?wan=1")}
    assert wan == {f"{east.name}.east": 1, f"{west.name}.west": 1}, wan
    assert put(east, "/v1/kv/federated", b"from-east") is True
    with urllib.request.urlopen(f"http://{west.ip}:8500/v1/kv/federated?dc=east&raw",
                                timeout=10) as r:
        assert r.read() == b"from-east"
    # The key is east's: west's own KV does not have it.
    try:
        urllib.request.urlopen(f"http://{west.ip}:8500/v1/kv/federated?raw", timeout=10)
        raise AssertionError("west has east's key in its own KV")
    except urllib.error.HTTPError as e:
        assert e.code == 404


GOSSIP = "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8="


def test_secondary_federates_with_the_primarys_federation_secret(sync_node, registry_bin,  # noqa: F811
                                                                 tmp_path):
    node = sync_node
    from test_acls import fake_secrets
    fake = FakeApi(sibling(registry_bin, "fake-apiserver"), node.host_ip, tmp_path)
    try:
        east_objs = render({"global": {
            "datacenter": "east", "gossipEncryption": {"secretName": "gossip", "secretKey": "key"},
            "federation": {"enabled": True, "primaryDatacenter": "east",
                           "createFederationSecret": True}},
            "server": {"replicas": 1}}, release="east")
        job = find(east_objs, "Job", "-create-federation-secret")
        assert job["metadata"]["annotations"]["helm.sh/hook"] == "post-install,post-upgrade"
        east_secrets = {"gossip": {"key": GOSSIP}}
        pod = node.create_pod("east-registry-create-federation-secret-aaaaa", pod_spec(job),
                              configmaps(east_objs), container="create-federation-secret",
                              secrets=east_secrets)
        (pod.root / "etc" / "kubeconfig").write_text(pod_kubeconfig(fake))
        pod.env["KUBECONFIG"] = "/etc/kubeconfig"
        node.write_dns()
        pod.start()
        node.wait(lambda: pod.proc.poll() is not None, 60, "the federation Secret Job")
        assert pod.proc.returncode == 0, pod.logs()
        fed = fake_secrets(fake)["east-registry-federation"]
        assert fed["gossipEncryptionKey"] == GOSSIP
        assert json.loads(fed["serverConfigJSON"]) == {
            "primary_datacenter": "east",
            "retry_join_wan": ["east-registry-server-0.east-registry-server.ns1.svc:8302"]}
        assert not_granted(requests_made(fake.log),
                           find(east_objs, "Role", "-create-federation-secret")["rules"]) == []

        # The secondary, as the docs say: the federation Secret copied into its namespace,
        # its gossip key and server config loaded from there.
        west_objs = render({"global": {
            "datacenter": "west",
            "gossipEncryption": {"secretName": "east-registry-federation",
                                 "secretKey": "gossipEncryptionKey"},
            "federation": {"enabled": True, "primaryDatacenter": "east"}},
            "server": {"replicas": 1, "extraVolumes": [{
                "type": "secret", "name": "east-registry-federation", "load": True,
                "items": [{"key": "serverConfigJSON", "path": "config.json"}]}]}},
            release="west")
        east = start_workload(node, east_objs, "StatefulSet", "-server", 1, secrets=east_secrets)[0]
        west = start_workload(node, west_objs, "StatefulSet", "-server", 1,
                              secrets={"east-registry-federation": fed})[0]
        node.write_dns()
        east.start()
        west.start()
        node.wait(lambda: east.probe("readinessProbe") and west.probe("readinessProbe"), 90,
                  "both datacenters' servers ready")
        node.wait(lambda: sorted(http_json(west, "/v1/catalog/datacenters") or []) == [
            "east", "west"], 90, "west to join east's WAN pool through the federation Secret")
        assert put(east, "/v1/kv/fed", b"via-secret") is True
        with urllib.request.urlopen(f"http://{west.ip}:8500/v1/kv/fed?dc=east&raw",
                                    timeout=10) as r:
            assert r.read() == b"via-secret"
    finally:
        fake.close()
