"""Render, then run: the server StatefulSet that `helm template` renders for 3 replicas is run
as three real `registry` processes with exactly its command, args, env, config files, mount
paths and user (helm/test/podsim.py plays the kubelet), and the cluster must form the way the
chart promises: no leader (so no pod Ready) while fewer than bootstrap_expect servers run, a
leader and every readiness probe passing once all have started, and liveness passing
throughout.

More workloads join this test by rendering them in the same values and starting their pods
on the same Node (see `start_workload`): the client DaemonSet's agent below, and the k8s-sync
Deployment in test_sync_run.py.
"""
import json
import shutil
import subprocess
import time
import urllib.request

import pytest

from conftest import find, need, pod_spec, render
from podsim import Node

VALUES = {"server": {"replicas": 3}, "global": {"datacenter": "east", "domain": "mesh"}}


def http_json(pod, path, timeout=3):
    with urllib.request.urlopen(f"http://{pod.ip}:8500{path}", timeout=timeout) as r:
        return json.loads(r.read() or b"null")


def put(pod, path, body):
    data = body if isinstance(body, bytes) else json.dumps(body).encode()
    req = urllib.request.Request(f"http://{pod.ip}:8500{path}", data=data, method="PUT")
    with urllib.request.urlopen(req, timeout=10) as r:
        return json.loads(r.read() or b"null")


def configmaps(objs):
    return {o["metadata"]["name"]: o for o in objs if o["kind"] == "ConfigMap"}


def start_workload(node, objs, kind, suffix, count, binaries_ok=True, secrets=None):
    """Creates the pods of a rendered workload on the node: a StatefulSet's pods are
    <name>-<ordinal> with DNS names <pod>.<serviceName>.<ns>.svc; returns them unstarted."""
    w = find(objs, kind, suffix)
    spec = pod_spec(w)
    claims = [c["metadata"]["name"] for c in w["spec"].get("volumeClaimTemplates", [])]
    pods = []
    for i in range(count):
        name = f"{w['metadata']['name']}-{i}"
        pod = node.create_pod(name, spec, configmaps(objs), claims=claims,
                              container=spec["containers"][0]["name"], secrets=secrets)
        if kind == "StatefulSet":
            svc = w["spec"]["serviceName"]
            node.add_dns(f"{name}.{svc}.{node.namespace}.svc", pod.ip)
            node.add_dns(f"{svc}.{node.namespace}.svc", pod.ip)
        pods.append(pod)
    return pods


@pytest.fixture
def node(registry_bin):
    n = Node({"/usr/local/bin/registry": registry_bin})
    yield n
    n.close()


def test_rendered_server_statefulset_forms_a_cluster(node):
    need(shutil.which("dig"), "dig (apt-get install dnsutils)")
    objs = render(VALUES)
    sts = find(objs, "StatefulSet", "-server")
    replicas = sts["spec"]["replicas"]
    cfg = json.loads(configmaps(objs)["rel-registry-server-config"]["data"]["server.json"])
    assert replicas == 3 and cfg["bootstrap_expect"] == replicas

    servers = start_workload(node, objs, "StatefulSet", "-server", replicas)
    node.write_dns()
    # What runs is what the chart rendered.
    c = pod_spec(sts)["containers"][0]
    assert servers[1].command == c["command"] + [
        a.replace("$(POD_NAME)", servers[1].name).replace("$(POD_IP)", servers[1].ip)
        for a in c["args"]]
    assert servers[1].user == "100:1000"

    # Fewer servers than bootstrap_expect: they run and answer, but elect no leader, so the
    # readiness probe keeps failing while liveness passes.
    for pod in servers[:-1]:
        pod.start()
    node.wait(lambda: all(p.probe("livenessProbe") for p in servers[:-1]), 60,
              "liveness of the first two servers")
    deadline = time.monotonic() + 6
    while time.monotonic() < deadline:
        for pod in servers[:-1]:
            assert pod.proc.poll() is None, pod.logs()
            assert not pod.probe("readinessProbe"), f"{pod.name} ready without a quorum"
            assert http_json(pod, "/v1/status/leader") == ""
        time.sleep(1)

    # The last server starts: the cluster forms with all three as voters.
    servers[-1].start()
    node.wait(lambda: all(p.probe("readinessProbe") for p in servers), 90,
              "every server's readiness probe")
    assert all(p.probe("livenessProbe") for p in servers)
    leaders = {http_json(p, "/v1/status/leader") for p in servers}
    assert len(leaders) == 1 and leaders != {""}, leaders
    peers = sorted(http_json(servers[0], "/v1/status/peers"))
    assert peers == sorted(f"{p.ip}:8300" for p in servers)
    print("leader", leaders, "peers", peers)

    # Each server is the node the chart named, in the chart's datacenter, from its data dir.
    for pod in servers:
        me = http_json(pod, "/v1/agent/self")
        assert me["Config"]["NodeName"] == pod.name
        assert me["Config"]["Datacenter"] == cfg["datacenter"]
        assert me["Config"]["Server"] is True
    nodes = {n["Node"]: n["Address"] for n in http_json(servers[0], "/v1/catalog/nodes")}
    assert nodes == {p.name: p.ip for p in servers}

    # Writes through one server are read on another.
    assert put(servers[2], "/v1/kv/chart", b"rendered") is True
    with urllib.request.urlopen(f"http://{servers[0].ip}:8500/v1/kv/chart?raw",
                                timeout=10) as r:
        assert r.read() == b"rendered"

    # DNS as the chart's DNS Service reaches it: port 53 -> the pods' dns-udp/dns-tcp ports,
    # answering for global.domain in global.datacenter.
    dns = find(objs, "Service", "-dns")
    dns_ports = {p["protocol"]: p["targetPort"] for p in dns["spec"]["ports"]}
    ports = {cp["name"]: cp["containerPort"] for cp in c["ports"]}
    put(servers[0], "/v1/catalog/register", {
        "Node": "web-node", "Address": "10.1.2.3",
        "Service": {"Service": "web", "Port": 8080}})
    def answer(pod, proto):
        flag = "+notcp" if proto == "UDP" else "+tcp"
        return subprocess.run(["dig", "+short", flag, "-p", str(ports[dns_ports[proto]]),
                               f"@{pod.ip}", "web.service.east.mesh", "A"],
                              capture_output=True, text=True, timeout=10).stdout.split()

    # DNS answers allow stale reads (as Consul's do): a follower answers once it has applied
    # the registration, within moments.
    for pod in servers:
        for proto in ("UDP", "TCP"):
            node.wait(lambda: answer(pod, proto) == ["10.1.2.3"], 10,
                      f"{pod.name} to answer web.service.east.mesh over {proto}")

    # The data lives on the volume claim, written as the chart's non-root user.
    data = servers[0].root.parent / "volumes" / "data"
    assert any(data.iterdir()), "nothing written to the data volume"
    assert all(p.stat().st_uid == 100 for p in data.iterdir())

    # `helm test`'s pod runs the same check through the server Service's name.
    test_pod = find(objs, "Pod")
    args = pod_spec(test_pod)["containers"][0]["args"]
    out = servers[0].exec(pod_spec(test_pod)["containers"][0]["command"] + args)
    assert out.returncode == 0, out.stderr
    assert all(p.name in out.stdout for p in servers), out.stdout


def test_rendered_client_daemonset_agent_starts_with_the_chart_config(node):
    """The client DaemonSet's pod runs with the chart's config and flags: the agent loads
    them, runs as a client named after its Kubernetes node, with the node meta the downward
    API fills in, joins the rendered servers over gossip and serves the catalog through them."""
    objs = render({"server": {"replicas": 3}, "client": {"enabled": True}})
    servers = start_workload(node, objs, "StatefulSet", "-server", 3)
    node.write_dns()
    for pod in servers:
        pod.start()
    node.wait(lambda: all(p.probe("readinessProbe") for p in servers), 90,
              "every server's readiness probe")
    ds = find(objs, "DaemonSet", "-client")
    spec = pod_spec(ds)
    pod = node.create_pod("rel-registry-client-abcde", spec, configmaps(objs),
                          container=spec["containers"][0]["name"])
    node.write_dns()
    assert "-node=node-1" in pod.command and f"-node-meta=host-ip:{node.host_ip}" in pod.command
    pod.start()
    node.wait(lambda: pod.probe("livenessProbe"), 60, "the client agent's liveness")
    me = http_json(pod, "/v1/agent/self")
    assert me["Config"]["NodeName"] == "node-1"
    assert me["Config"]["Server"] is False
    assert me["Config"]["Datacenter"] == "dc1"
    assert {k: me["Meta"].get(k) for k in ("pod-name", "host-ip")} == {
        "pod-name": pod.name, "host-ip": node.host_ip}
    # It is a gossip member next to the three servers, never a Raft peer, and reads and
    # writes the servers' catalog.
    node.wait(lambda: len([m for m in http_json(pod, "/v1/agent/members")
                           if m["Status"] == 1]) == 4, 60, "four alive members on the client")
    peers = sorted(http_json(servers[0], "/v1/status/peers"))
    assert peers == sorted(f"{p.ip}:8300" for p in servers)
    assert put(pod, "/v1/kv/through-client", b"yes") is True
    with urllib.request.urlopen(f"http://{servers[1].ip}:8500/v1/kv/through-client?raw",
                                timeout=10) as r:
        assert r.read() == b"yes"
    node.wait(lambda: "node-1" in {n["Node"] for n in http_json(servers[0], "/v1/catalog/nodes")},
              60, "the client's node in the catalog")
    assert pod.proc.poll() is None, pod.logs()


def test_scaling_the_rendered_statefulset_from_3_to_5(node):
    """`helm upgrade --set server.replicas=5` on a formed 3-server cluster: the two new pods,
    run with the new render, join the existing cluster and become voters (autopilot promotes
    them once stable); the first three keep their cluster (a restart with the new config, as
    the checksum annotation causes, keeps it too)."""
    three = render({"server": {"replicas": 3}})
    five = render({"server": {"replicas": 5}})
    assert json.loads(configmaps(five)["rel-registry-server-config"]["data"]["server.json"])[
        "bootstrap_expect"] == 5
    old = start_workload(node, three, "StatefulSet", "-server", 3)
    # The new pods get the new render; names and DNS follow the ordinals.
    sts = find(five, "StatefulSet", "-server")
    spec = pod_spec(sts)
    new = []
    for i in (3, 4):
        name = f"{sts['metadata']['name']}-{i}"
        pod = node.create_pod(name, spec, configmaps(five), claims=["data"])
        node.add_dns(f"{name}.{sts['spec']['serviceName']}.{node.namespace}.svc", pod.ip)
        new.append(pod)
    node.write_dns()
    for pod in old:
        pod.start()
    node.wait(lambda: all(p.probe("readinessProbe") for p in old), 90, "the first three servers")
    leader = http_json(old[0], "/v1/status/leader")
    assert put(old[0], "/v1/kv/before-upgrade", b"kept") is True

    # An old server restarted with the new config keeps its cluster.
    old[1].stop()
    for src, dst, _ in old[1].mounts:
        if dst == "/registry/config":
            (src / "server.json").write_text(
                configmaps(five)["rel-registry-server-config"]["data"]["server.json"])
    old[1].start()
    for pod in new:
        pod.start()
    everyone = old + new
    node.wait(lambda: len(http_json(old[0], "/v1/status/peers")) == 5, 120,
              "five voters")
    node.wait(lambda: all(p.probe("readinessProbe") for p in everyone), 60, "five ready servers")
    assert sorted(http_json(new[1], "/v1/status/peers")) == sorted(f"{p.ip}:8300" for p in everyone)
    # Still the same cluster: the data written before is there, one leader for all.
    leaders = {http_json(p, "/v1/status/leader") for p in everyone}
    assert len(leaders) == 1 and leaders != {""}
    with urllib.request.urlopen(f"http://{new[1].ip}:8500/v1/kv/before-upgrade?raw",
                                timeout=10) as r:
        assert r.read() == b"kept"
    print("leader before", leader, "after", leaders)
