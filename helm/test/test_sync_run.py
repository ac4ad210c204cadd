"""Render, then run, for k8s-sync: the syncCatalog Deployment that `helm template` renders runs
(helm/test/podsim.py playing the kubelet) with exactly its command, args and env against the
rendered server StatefulSet's three `registry` pods and the fake Kubernetes API server of the
k8s-sync tests, which records every request it serves. Then:

- the seed scenario: a Service created with the real `kubectl` against the fake appears in the
  catalog and in DNS (`<name>.service.<domain>`) through the chart's rendered servers, and a
  catalog service comes back as an ExternalName Service (toK8S);
- the rendered pre-delete hook Job (cleanupNodeOnRemoval) removes the sync node;
- RBAC: every (API group, resource, verb) k8s-sync asked of the API server, taken from the
  fake's request log, is granted by the chart's sync-catalog ClusterRole. A verb or resource
  the chart forgot fails the test (and the checker itself is shown to catch a missing rule).

One simulation differs from a cluster: the fake serves plain HTTP, which Kubernetes'
in-cluster service-account endpoint never does, so the simulated kubelet gives the pod a
kubeconfig (KUBECONFIG) naming the fake instead of the service-account files.
"""
import base64
import json
import os
import shutil
import subprocess
import time
import urllib.parse
import urllib.request
from pathlib import Path

import pytest

from conftest import find, need, pod_spec, render
from podsim import Node
from test_render_run import configmaps, http_json, put, start_workload

VALUES = {
    "server": {"replicas": 3},
    "global": {"datacenter": "east", "domain": "mesh"},
    "syncCatalog": {"enabled": True, "toK8S": True, "cleanupNodeOnRemoval": True,
                    "k8sTag": "cluster-one"},
}


def sibling(registry_bin, name):
    return need(Path(registry_bin).with_name(name), f"{name} (built next to REGISTRY_BIN)")


@pytest.fixture
def sync_node(registry_bin):
    n = Node({"/usr/local/bin/registry": registry_bin,
              "/usr/local/bin/k8s-sync": sibling(registry_bin, "k8s-sync")})
    yield n
    n.close()


class FakeApi:
    """fake-apiserver on the node's host IP (reachable from the pods), logging requests."""

    def __init__(self, binary, host, tmp):
        self.kubeconfig = tmp / "kubeconfig"
        self.log = tmp / "requests.log"
        self.proc = subprocess.Popen(
            [binary, "--listen", f"{host}:0", "--kubeconfig", str(self.kubeconfig),
             "--request-log", str(self.log), "--max-watch-seconds", "20"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 20
        while not self.kubeconfig.exists():
            assert time.monotonic() < deadline, "fake-apiserver wrote no kubeconfig"
            assert self.proc.poll() is None, "fake-apiserver exited"
            time.sleep(0.05)
        self.url = next(l.split("server: ")[1].strip()
                        for l in self.kubeconfig.read_text().splitlines() if "server: " in l)

    def kubectl(self, *args, stdin=None):
        home = self.kubeconfig.parent
        p = subprocess.run(["kubectl", "--kubeconfig", str(self.kubeconfig), "--cache-dir",
                            str(home / "kcache"), *args], input=stdin, capture_output=True,
                           text=True, timeout=60, env=dict(os.environ, HOME=str(home)))
        assert p.returncode == 0, f"kubectl {args}: {p.stdout}{p.stderr}"
        return p.stdout

    def get(self, path):
        try:
            with urllib.request.urlopen(self.url + path, timeout=5) as r:
                return json.loads(r.read())
        except urllib.error.HTTPError as e:
            if e.code == 404:
                return None
            raise

    def close(self):
        self.proc.terminate()
        self.proc.wait(10)


def pod_kubeconfig(fake):
    """The fake's kubeconfig with a cluster CA, as the service account's ca.crt always gives
    one in a cluster (the image has no system roots to fall back on; the fake's plain HTTP
    never uses it)."""
    d = fake.kubeconfig.parent
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout",
                    str(d / "ca.key"), "-out", str(d / "ca.pem"), "-days", "1", "-subj",
                    "/CN=cluster-ca"], check=True, capture_output=True)
    ca = base64.b64encode((d / "ca.pem").read_bytes()).decode()
    return fake.kubeconfig.read_text().replace(
        "    server: ", f"    certificate-authority-data: {ca}\n    server: ")


def requests_made(log, agent_prefix="k8s-sync/"):
    """(apiGroup, resource, verb) of every logged request whose User-Agent starts with
    agent_prefix (k8s-sync's own; the test's kubectl and urllib requests are left out), as
    RBAC names them."""
    out = set()
    for line in log.read_text().splitlines():
        method, uri, agent = line.split(" ", 2)
        if not agent.startswith(agent_prefix):
            continue
        u = urllib.parse.urlsplit(uri)
        q = urllib.parse.parse_qs(u.query)
        parts = [p for p in u.path.split("/") if p]
        if len(parts) < 3 or parts[0] not in ("api", "apis"):
            continue  # discovery (/api, /apis, /apis/<group>), version
        if parts[0] == "api":
            group, rest = "", parts[2:]
        else:
            group, rest = parts[1], parts[3:]
        if len(rest) >= 2 and rest[0] == "namespaces":
            rest = rest[2:]
        if not rest:
            continue  # discovery of a group version
        resource, named = rest[0], len(rest) > 1
        if len(rest) > 2:
            resource = f"{resource}/{rest[2]}"
        verb = {"POST": "create", "PUT": "update", "PATCH": "patch",
                "DELETE": "delete" if named else "deletecollection"}.get(method)
        if method == "GET":
            verb = "watch" if q.get("watch") in (["true"], ["1"]) else ("get" if named else "list")
        out.add((group, resource, verb))
    return out


def not_granted(made, rules):
    def granted(group, resource, verb):
        return any(
            (group in r.get("apiGroups", []) or "*" in r.get("apiGroups", []))
            and (resource in r.get("resources", []) or "*" in r.get("resources", []))
            and (verb in r.get("verbs", []) or "*" in r.get("verbs", []))
            for r in rules)
    return sorted(m for m in made if not granted(*m))


def test_rendered_sync_catalog_runs_syncs_both_ways_and_needs_only_its_rbac(sync_node, registry_bin,
                                                                         tmp_path):
    node = sync_node
    need(shutil.which("kubectl"), "kubectl (apt-get install kubernetes-client)")
    need(shutil.which("dig"), "dig (apt-get install dnsutils)")
    fake = FakeApi(sibling(registry_bin, "fake-apiserver"), node.host_ip, tmp_path)
    try:
        run_scenario(node, fake)
    finally:
        fake.close()


def run_scenario(node, fake):
    objs = render(VALUES)
    servers = start_workload(node, objs, "StatefulSet", "-server", 3)
    dep = find(objs, "Deployment", "-sync-catalog")
    spec = pod_spec(dep)
    sync = node.create_pod("rel-registry-sync-catalog-7d9f-abcde", spec, configmaps(objs),
                           container="sync-catalog")
    (sync.root / "etc" / "kubeconfig").write_text(pod_kubeconfig(fake))
    sync.env["KUBECONFIG"] = "/etc/kubeconfig"
    node.write_dns()
    c = spec["containers"][0]
    assert sync.command[0] == "/usr/local/bin/k8s-sync" == c["command"][0]
    assert "-consul-k8s-tag=cluster-one" in sync.command and "-to-k8s=true" in sync.command
    assert "-k8s-write-namespace=ns1" in sync.command
    for pod in servers:
        pod.start()
    node.wait(lambda: all(p.probe("readinessProbe") for p in servers), 120,
              "every server's readiness probe")
    sync.start()
    node.wait(lambda: sync.probe("readinessProbe"), 60, "the sync pod's readiness probe")
    assert sync.probe("livenessProbe")

    # Kubernetes -> catalog -> DNS, through the rendered servers.
    fake.kubectl("apply", "--validate=false", "-f", "-", stdin=SEED)
    want = [("10.42.0.1", 8080), ("10.42.0.2", 8080)]

    def web():
        entries = http_json(servers[1], "/v1/catalog/service/servicea")
        return sorted((e["ServiceAddress"], e["ServicePort"]) for e in entries or [])
    node.wait(lambda: web() == want, 30, "servicea in the catalog")
    e = http_json(servers[0], "/v1/catalog/service/servicea")[0]
    assert e["Node"] == "k8s-sync" and "cluster-one" in e["ServiceTags"]
    assert "PathPrefix(`/servicea`)" in " ".join(e["ServiceTags"])
    ports = {cp["name"]: cp["containerPort"] for cp in pod_spec(
        find(objs, "StatefulSet", "-server"))["containers"][0]["ports"]}

    def dig():
        return sorted(subprocess.run(
            ["dig", "+short", "-p", str(ports["dns-udp"]), f"@{servers[2].ip}",
             "servicea.service.east.mesh", "A"], capture_output=True, text=True,
            timeout=10).stdout.split())
    node.wait(lambda: dig() == ["10.42.0.1", "10.42.0.2"], 30, "servicea in DNS")

    # Readiness follows: one endpoint not ready leaves DNS.
    fake.kubectl("apply", "--validate=false", "-f", "-",
                 stdin=SEED.replace("ready: true # b", "ready: false # b"))
    node.wait(lambda: dig() == ["10.42.0.1"], 30, "the not-ready endpoint out of DNS")

    # Catalog -> Kubernetes (toK8S): an ExternalName Service in the release namespace.
    put(servers[0], "/v1/catalog/register", {"Node": "vm-1", "Address": "192.0.2.10",
                                             "Service": {"Service": "Billing", "Port": 80}})
    node.wait(lambda: fake.get("/api/v1/namespaces/ns1/services/billing") is not None, 30,
              "the ExternalName Service of billing")
    svc = fake.get("/api/v1/namespaces/ns1/services/billing")
    assert svc["spec"]["type"] == "ExternalName"
    assert svc["spec"]["externalName"] == "billing.service.mesh"

    # Uninstall: the Deployment goes, the pre-delete hook Job removes the sync node.
    sync.stop()
    job = find(objs, "Job", "-sync-catalog-cleanup")
    assert job["metadata"]["annotations"]["helm.sh/hook"] == "pre-delete"
    jspec = pod_spec(job)
    hook = node.create_pod("rel-registry-sync-catalog-cleanup-xyz12", jspec, configmaps(objs),
                           container="sync-catalog-cleanup")
    node.write_dns()
    assert "-consul-k8s-tag=cluster-one" in hook.command
    hook.start()
    node.wait(lambda: hook.proc.poll() is not None, 60, "the cleanup Job to finish")
    assert hook.proc.returncode == 0, hook.logs()
    assert http_json(servers[0], "/v1/catalog/service/servicea") == []
    assert "k8s-sync" not in {n["Node"] for n in http_json(servers[0], "/v1/catalog/nodes")}
    assert http_json(servers[0], "/v1/catalog/service/Billing")  # not ours: kept

    # RBAC: what k8s-sync asked for, against what the chart grants.
    made = requests_made(fake.log)
    for expected in [("", "services", "list"), ("", "services", "watch"),
                     ("discovery.k8s.io", "endpointslices", "watch"), ("", "nodes", "watch"),
                     ("", "services", "create")]:
        assert expected in made, f"{expected} not seen in the request log: {sorted(made)}"
    assert ("discovery.k8s.io", "endpointslices", "patch") in requests_made(fake.log, ""), \
        "kubectl's requests are logged too (and told apart by their User-Agent)"
    rules = find(objs, "ClusterRole", "-sync-catalog")["rules"]
    assert not_granted(made, rules) == [], f"k8s-sync needs RBAC the chart does not grant: " \
        f"{not_granted(made, rules)}; requests: {sorted(made)}"
    # The check catches a gap: without the Node rule, watching Nodes is reported.
    fewer = [r for r in rules if r["resources"] != ["nodes"]]
    assert ("", "nodes", "watch") in not_granted(made, fewer)
    print("k8s-sync requests, all granted:", sorted(made))


SEED = """apiVersion: v1
kind: Service
metadata:
  name: servicea
  namespace: default
  annotations:
    consul.hashicorp.com/service-name: servicea
    consul.hashicorp.com/service-tags: "traefik.enable=true,traefik.http.routers.servicea.rule=PathPrefix(`/servicea`)"
spec:
  selector:
    app: servicea
  ports:
  - name: http
    port: 80
    targetPort: 8080
---
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata:
  name: servicea-1
  namespace: default
  labels:
    kubernetes.io/service-name: servicea
addressType: IPv4
ports:
- name: http
  port: 8080
endpoints:
- addresses: ["10.42.0.1"]
  conditions:
    ready: true # a
- addresses: ["10.42.0.2"]
  conditions:
    ready: true # b
"""


def test_endpoints_mode_requests_are_granted_by_its_rbac(registry_bin, tmp_path):
    """syncCatalog.useEndpointSlices=false: the rendered Deployment's args make k8s-sync read
    core/v1 Endpoints (a Service with an Endpoints object reaches the catalog), and the
    ClusterRole rendered for that mode grants every request it made, and no longer grants
    EndpointSlices."""
    objs = render({"syncCatalog": {"enabled": True, "useEndpointSlices": False}})
    c = pod_spec(find(objs, "Deployment", "-sync-catalog"))["containers"][0]
    args = [a.replace("$(NAMESPACE)", "ns1") for a in c["args"] if not a.startswith("-listen")]
    assert "-use-endpoint-slices=false" in args
    fake = FakeApi(sibling(registry_bin, "fake-apiserver"), "127.0.0.1", tmp_path)
    agent = sync = None
    try:
        http_port = free_port()
        agent = subprocess.Popen(
            [registry_bin, "agent", "-dev", "-http-port", str(http_port), "-dns-port",
             str(free_port()), "-server-port", str(free_port()), "-serf-lan-port",
             str(free_port()), "-serf-wan-port", str(free_port()), "-client", "127.0.0.1",
             "-bind", "127.0.0.1"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        base = f"http://127.0.0.1:{http_port}"
        fake.kubectl("apply", "--validate=false", "-f", "-", stdin=ENDPOINTS_SEED)
        sync = subprocess.Popen(
            [sibling(registry_bin, "k8s-sync"), *args, f"-listen=127.0.0.1:{free_port()}"],
            env=dict(os.environ, CONSUL_HTTP_ADDR=base, KUBECONFIG=str(fake.kubeconfig)),
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)

        def synced():
            try:
                with urllib.request.urlopen(base + "/v1/catalog/service/legacy", timeout=3) as r:
                    return [e["ServiceAddress"] for e in json.loads(r.read())] == ["10.43.0.1"]
            except OSError:
                return False
        deadline = time.monotonic() + 60
        while not synced():
            assert time.monotonic() < deadline, "legacy never reached the catalog"
            assert sync.poll() is None, "k8s-sync exited"
            time.sleep(0.3)
    finally:
        for p in (sync, agent):
            if p is not None:
                p.terminate()
                p.wait(10)
        fake.close()
    made = requests_made(fake.log)
    assert ("", "endpoints", "watch") in made, sorted(made)
    assert not any(r[1] == "endpointslices" for r in made), sorted(made)
    rules = find(objs, "ClusterRole", "-sync-catalog")["rules"]
    assert not_granted(made, rules) == [], sorted(made)
    assert not any("endpointslices" in r["resources"] for r in rules)


def free_port():
    import socket
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


ENDPOINTS_SEED = """apiVersion: v1
kind: Service
metadata:
  name: legacy
  namespace: default
  annotations:
    consul.hashicorp.com/service-name: legacy
spec:
  selector:
    app: legacy
  ports:
  - name: http
    port: 80
    targetPort: 8080
---
apiVersion: v1
kind: Endpoints
metadata:
  name: legacy
  namespace: default
subsets:
- addresses:
  - ip: 10.43.0.1
  ports:
  - name: http
    port: 8080
"""
