"""The traffic proxy with global.tls and global.acls.manageSystemACLs, rendered then run: the
rendered server (HTTPS only, deny by default) is bootstrapped by the rendered acl-init Job,
and Traefik, with exactly its rendered args, reads the catalog over HTTPS (verifying the
server's certificate against the CA Secret) with the token of the traffic-proxy Secret the
Job wrote, and routes /servicea to the service's passing instance."""
import json
import ssl
import subprocess
import tempfile
import urllib.error
import urllib.request
from pathlib import Path

from conftest import find, pod_spec, render
from podsim import Node
from test_acls import fake_secrets, run_job
from test_sync_run import FakeApi, sibling
from test_render_run import start_workload
from test_traffic_proxy import (TAGS_A, TRAEFIK_ENTRYPOINT, Backend, get, parse_tags,  # noqa: F401
                                traefik_bin)

TLS = {"enabled": True,
       "caCert": {"secretName": "ca-cert", "secretKey": "tls.crt"},
       "caKey": {"secretName": "ca-key", "secretKey": "tls.key"}}
# DNS off: the anonymous token gets no read rights, so only the proxy's own token can work.
VALUES = {"global": {"tls": TLS, "acls": {"manageSystemACLs": True}},
          "dns": {"enabled": False}, "trafficProxy": {"enabled": True}}


def test_proxy_reads_the_catalog_over_https_with_its_token(registry_bin, traefik_bin,
                                                           tmp_path):
    work = Path(tempfile.mkdtemp(prefix="chart-proxy-tls-"))
    subprocess.run([registry_bin, "tls", "ca", "create"], cwd=work, check=True,
                   capture_output=True)
    ca = work / "consul-agent-ca.pem"
    secrets = {"ca-cert": {"tls.crt": ca.read_text()},
               "ca-key": {"tls.key": (work / "consul-agent-ca-key.pem").read_text()}}
    objs = render(VALUES)
    rendered = pod_spec(find(objs, "Deployment", "-traffic-proxy"))["containers"][0]
    assert "--providers.consulcatalog.endpoint.token=$(CONSUL_HTTP_TOKEN)" in rendered["args"]
    node = Node({"/usr/local/bin/registry": registry_bin,
                 "/usr/local/bin/k8s-sync": sibling(registry_bin, "k8s-sync"),
                 "/usr/local/bin/traefik": traefik_bin})
    fake = FakeApi(sibling(registry_bin, "fake-apiserver"), node.host_ip, tmp_path)
    backend = None
    try:
        server = start_workload(node, objs, "StatefulSet", "-server", 1, secrets=secrets)[0]
        node.write_dns()
        server.start()
        node.wait(lambda: server.probe("readinessProbe"), 90, "the server's readiness")
        run_job(node, objs, fake, "rel-registry-server-acl-init-aaaaa", secrets=secrets)
        tokens = fake_secrets(fake)
        management = tokens["rel-registry-bootstrap-acl-token"]["token"]
        proxy_token = tokens["rel-registry-traffic-proxy-acl-token"]["token"]
        ctx = ssl.create_default_context(cafile=str(ca))

        def api(path, body=None, token=management):
            data = body if isinstance(body, bytes) or body is None else json.dumps(body).encode()
            req = urllib.request.Request(f"https://{server.ip}:8501{path}", data=data,
                                         method="GET" if body is None else "PUT",
                                         headers={"X-Consul-Token": token})
            with urllib.request.urlopen(req, timeout=10, context=ctx) as r:
                return json.loads(r.read() or b"null")
        # Anonymous requests read nothing; the proxy's token reads the catalog, writes nothing.
        try:
            api("/v1/health/service/consul", token="")
            raise AssertionError("an anonymous request read the catalog")
        except urllib.error.HTTPError as e:
            assert e.code == 403
        assert api("/v1/catalog/services", token=proxy_token) is not None
        try:
            api("/v1/kv/x", b"1", token=proxy_token)
            raise AssertionError("the proxy's token wrote to the KV store")
        except urllib.error.HTTPError as e:
            assert e.code == 403
        backend = Backend(node.host_ip, "servicea-1")
        api("/v1/catalog/register", {
            "Node": "k8s-sync", "Address": "127.0.0.1",
            "Service": {"ID": "servicea-1", "Service": "servicea",
                        "Tags": ["k8s"] + parse_tags(TAGS_A), "Address": node.host_ip,
                        "Port": backend.port},
            "Check": {"CheckID": "default/servicea-1", "Name": "Kubernetes Readiness Check",
                      "ServiceID": "servicea-1", "Status": "passing"}})

        proxy = node.create_pod("traffic-proxy-0", pod_spec(find(objs, "Deployment",
                                                                 "-traffic-proxy")),
                                {}, container="traefik", entrypoint=TRAEFIK_ENTRYPOINT,
                                secrets={**secrets, **tokens})
        node.write_dns()
        assert f"--providers.consulcatalog.endpoint.token={proxy_token}" in proxy.command
        assert "--providers.consulcatalog.endpoint.address=rel-registry-server.ns1.svc:8501" \
            in proxy.command
        proxy.start()
        node.wait(lambda: proxy.probe("readinessProbe"), 30, "Traefik's /ping readiness")
        web = f"http://{proxy.ip}:{rendered['ports'][0]['containerPort']}"
        node.wait(lambda: get(f"{web}/servicea")[0] == 200, 30,
                  "the route to servicea\n" + proxy.logs()[-3000:])
        assert get(f"{web}/servicea")[1].startswith("Hello World! I'm servicea-1")
        assert backend.hits > 0
    finally:
        fake.close()
        node.close()
        if backend is not None:
            backend.close()
