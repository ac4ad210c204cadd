"""global.tls: an init container of every server and client pod makes the agent's certificate
from the CA in the chart's Secrets, the agents serve HTTPS on 8501 (HTTP off with httpsOnly),
the server port demands certificates (verify) and the probes go over HTTPS. Rendered, then
run: three servers and a client, given the Secrets, form a TLS cluster with encrypted gossip."""
import json
import socket
import ssl
import subprocess
import tempfile
import urllib.request
from pathlib import Path

import pytest

from conftest import find, pod_spec, render, render_error
from test_render_run import configmaps, node, start_workload  # noqa: F401
from test_sync_run import SEED, FakeApi, pod_kubeconfig, sibling, sync_node  # noqa: F401

TLS = {"enabled": True,
       "caCert": {"secretName": "ca-cert", "secretKey": "tls.crt"},
       "caKey": {"secretName": "ca-key", "secretKey": "tls.key"}}
VALUES = {"global": {"datacenter": "east", "domain": "mesh", "tls": TLS,
                     "gossipEncryption": {"secretName": "gossip", "secretKey": "key"}},
          "server": {"replicas": 3}, "client": {"enabled": True}}


def registry_container(obj):
    return next(c for c in pod_spec(obj)["containers"] if c["name"] == "registry")


def agent_config(objs, role):
    return json.loads(configmaps(objs)[f"rel-registry-{role}-config"]["data"][f"{role}.json"])


def test_server_init_container_makes_a_certificate_with_the_pods_names():
    objs = render({**VALUES, "global": {**VALUES["global"], "tls": {
        **TLS, "serverAdditionalDNSSANs": ["registry.example"],
        "serverAdditionalIPSANs": ["10.9.9.9"]}}})
    sts = find(objs, "StatefulSet", "-server")
    spec = pod_spec(sts)
    (init,) = spec["initContainers"]
    assert init["command"] == ["/usr/local/bin/registry"]
    args = init["args"]
    assert args[:6] == ["tls", "cert", "create", "-server", "-dc=east", "-domain=mesh"]
    assert "-ca=/registry/tls/ca/tls.crt" in args and "-key=/registry/tls/ca-key/tls.key" in args
    dns = {a.split("=", 1)[1] for a in args if a.startswith("-additional-dnsname=")}
    assert {"$(POD_NAME).rel-registry-server.ns1.svc", "rel-registry-server",
            "rel-registry-server.ns1.svc", "registry.example"} <= dns
    assert "-additional-ipaddress=$(POD_IP)" in args and "-additional-ipaddress=10.9.9.9" in args
    assert init["workingDir"] == "/registry/tls/certs"
    vols = {v["name"]: v for v in spec["volumes"]}
    assert vols["tls-ca-cert"]["secret"] == {"secretName": "ca-cert",
                                              "items": [{"key": "tls.crt", "path": "tls.crt"}]}
    assert vols["tls-ca-key"]["secret"]["secretName"] == "ca-key"
    assert "emptyDir" in vols["tls-certs"]
    # The CA key is mounted in the init container only.
    c = registry_container(sts)
    assert {m["name"] for m in init["volumeMounts"]} == {"tls-ca-cert", "tls-ca-key", "tls-certs"}
    assert "tls-ca-key" not in {m["name"] for m in c["volumeMounts"]}
    assert {m["name"]: m.get("readOnly") for m in c["volumeMounts"]}["tls-certs"] is True

    cfg = agent_config(objs, "server")
    assert cfg["tls"]["defaults"] == {
        "ca_file": "/registry/tls/ca/tls.crt",
        "cert_file": "/registry/tls/certs/east-server-mesh-0.pem",
        "key_file": "/registry/tls/certs/east-server-mesh-0-key.pem",
        "verify_outgoing": True}
    assert cfg["tls"]["internal_rpc"] == {"verify_incoming": True, "verify_server_hostname": True}
    assert cfg["ports"]["https"] == 8501 and cfg["ports"]["http"] == -1
    # Probes over HTTPS, the CLI trusting the CA.
    assert c["livenessProbe"]["httpGet"] == {"path": "/v1/status/leader", "port": "https",
                                             "scheme": "HTTPS"}
    assert c["readinessProbe"]["exec"]["command"][-2:] == [
        "-http-addr=https://127.0.0.1:8501", "-ca-file=/registry/tls/ca/tls.crt"]
    assert {p["name"] for p in c["ports"]} >= {"https", "server"}
    assert "http" not in {p["name"] for p in c["ports"]}
    svc = find(objs, "Service", "-server")
    assert {p["name"]: p["port"] for p in svc["spec"]["ports"]}["https"] == 8501
    assert "http" not in {p["name"] for p in svc["spec"]["ports"]}


def test_clients_trust_the_ca_and_get_client_certificates():
    objs = render(VALUES)
    ds = find(objs, "DaemonSet", "-client")
    (init,) = pod_spec(ds)["initContainers"]
    assert init["args"][:4] == ["tls", "cert", "create", "-client"]
    cfg = agent_config(objs, "client")
    assert cfg["tls"]["defaults"]["ca_file"] == "/registry/tls/ca/tls.crt"
    assert cfg["tls"]["defaults"]["cert_file"] == "/registry/tls/certs/east-client-mesh-0.pem"
    assert cfg["tls"]["internal_rpc"] == {"verify_incoming": False,
                                          "verify_server_hostname": True}
    c = registry_container(ds)
    https = next(p for p in c["ports"] if p["name"] == "https")
    assert https["containerPort"] == 8501 and https["hostPort"] == 8501
    assert c["lifecycle"]["preStop"]["exec"]["command"][-2:] == [
        "-http-addr=https://127.0.0.1:8501", "-ca-file=/registry/tls/ca/tls.crt"]


def test_verify_false_and_http_kept():
    objs = render({**VALUES, "global": {**VALUES["global"], "tls": {
        **TLS, "verify": False, "httpsOnly": False}}})
    cfg = agent_config(objs, "server")
    assert cfg["tls"]["internal_rpc"] == {"verify_incoming": False,
                                          "verify_server_hostname": False}
    assert cfg["ports"]["http"] == 8500 and cfg["ports"]["https"] == 8501
    c = registry_container(find(objs, "StatefulSet", "-server"))
    assert {"http", "https"} <= {p["name"] for p in c["ports"]}


def test_without_tls_nothing_changes():
    objs = render({"client": {"enabled": True}})
    for kind, suffix in (("StatefulSet", "-server"), ("DaemonSet", "-client")):
        spec = pod_spec(find(objs, kind, suffix))
        assert "initContainers" not in spec
        assert not [v for v in spec["volumes"] if v["name"].startswith("tls-")]
    cfg = agent_config(objs, "server")
    assert "tls" not in cfg and cfg["ports"]["http"] == 8500 and "https" not in cfg["ports"]


def test_tls_values_that_fail():
    err = render_error({"global": {"tls": {"enabled": True}}})
    assert "global.tls.caCert.secretName and secretKey are required" in err
    err = render_error({"global": {"tls": {**TLS, "caKey": {"secretName": "x"}}}})
    assert "global.tls.caKey.secretName and secretKey are required" in err
    err = render_error({"global": {"tls": {**TLS, "enableAutoEncrypt": True}}})
    assert "global.tls.enableAutoEncrypt" in err


def test_sync_and_proxy_talk_https_to_the_agent():
    objs = render({**VALUES, "syncCatalog": {"enabled": True, "cleanupNodeOnRemoval": True},
                   "trafficProxy": {"enabled": True}})
    for kind, suffix, name in (("Deployment", "-sync-catalog", "sync-catalog"),
                               ("Job", "-sync-catalog-cleanup", "sync-catalog-cleanup")):
        spec = pod_spec(find(objs, kind, suffix))
        c = next(c for c in spec["containers"] if c["name"] == name)
        env = {e["name"]: e.get("value") for e in c["env"]}
        assert env["CONSUL_HTTP_ADDR"] == "https://$(HOST_IP):8501", kind
        assert env["CONSUL_CACERT"] == "/registry/tls/ca/tls.crt", kind
        assert c["volumeMounts"] == [{"name": "tls-ca-cert", "mountPath": "/registry/tls/ca",
                                      "readOnly": True}]
        assert spec["volumes"][0]["secret"]["secretName"] == "ca-cert"
    proxy = pod_spec(find(objs, "Deployment", "-traffic-proxy"))["containers"][0]
    assert {"--providers.consulcatalog.endpoint.address=$(HOST_IP):8501",
            "--providers.consulcatalog.endpoint.scheme=https",
            "--providers.consulcatalog.endpoint.tls.ca=/registry/tls/ca/tls.crt"} <= set(
        proxy["args"])
    # Without clients, the servers' Service, whose name their certificates carry.
    objs = render({**VALUES, "client": {"enabled": False}, "syncCatalog": {"enabled": True}})
    c = pod_spec(find(objs, "Deployment", "-sync-catalog"))["containers"][0]
    assert {e["name"]: e.get("value") for e in c["env"]}["CONSUL_HTTP_ADDR"] == \
        "https://rel-registry-server.ns1.svc:8501"


def test_rendered_sync_reaches_the_client_agent_over_https(sync_node, registry_bin,  # noqa: F811
                                                           tmp_path):
    """httpsOnly: k8s-sync, as rendered, talks to the node's client agent on its HTTPS
    hostPort and verifies its certificate (made for the host IP) against the CA Secret."""
    node = sync_node
    work = Path(tempfile.mkdtemp(prefix="chart-tls-sync-"))
    subprocess.run([registry_bin, "tls", "ca", "create", "-domain", "mesh"], cwd=work,
                   check=True, capture_output=True)
    ca = work / "mesh-agent-ca.pem"
    secrets = {"ca-cert": {"tls.crt": ca.read_text()},
               "ca-key": {"tls.key": (work / "mesh-agent-ca-key.pem").read_text()},
               "gossip": {"key": "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8="}}
    objs = render({**VALUES, "server": {"replicas": 1}, "syncCatalog": {"enabled": True}})
    fake = FakeApi(sibling(registry_bin, "fake-apiserver"), node.host_ip, tmp_path)
    try:
        server = start_workload(node, objs, "StatefulSet", "-server", 1, secrets=secrets)[0]
        client = node.create_pod("rel-registry-client-abcde",
                                 pod_spec(find(objs, "DaemonSet", "-client")), configmaps(objs),
                                 secrets=secrets)
        sync = node.create_pod("rel-registry-sync-catalog-7d9f-abcde",
                               pod_spec(find(objs, "Deployment", "-sync-catalog")),
                               configmaps(objs), container="sync-catalog", secrets=secrets)
        (sync.root / "etc" / "kubeconfig").write_text(pod_kubeconfig(fake))
        sync.env["KUBECONFIG"] = "/etc/kubeconfig"
        node.write_dns()
        assert sync.env["CONSUL_HTTP_ADDR"] == f"https://{node.host_ip}:8501"
        server.start()
        client.start()
        node.host_port(client, 8501)
        node.wait(lambda: client.probe("readinessProbe"), 90, "the client's readiness probe")
        sync.start()
        node.wait(lambda: sync.probe("readinessProbe"), 60, "the sync pod's readiness probe")
        fake.kubectl("apply", "--validate=false", "-f", "-", stdin=SEED)
        node.wait(lambda: sorted(e["ServiceAddress"] for e in https_get(
            server.ip, "/v1/catalog/service/servicea", str(ca))) == ["10.42.0.1", "10.42.0.2"],
            60, "servicea in the catalog through the client's HTTPS API")
        # Plain HTTP is off on the agent, so the sync could only have used HTTPS.
        with pytest.raises(OSError):
            urllib.request.urlopen(f"http://{client.ip}:8500/v1/status/leader", timeout=3)
    finally:
        fake.close()


def https_get(ip, path, ca, port=8501):
    ctx = ssl.create_default_context(cafile=ca)
    with urllib.request.urlopen(f"https://{ip}:{port}{path}", timeout=5, context=ctx) as r:
        return json.loads(r.read() or b"null")


def test_rendered_tls_cluster_runs(node, registry_bin):  # noqa: F811
    work = Path(tempfile.mkdtemp(prefix="chart-tls-"))
    subprocess.run([registry_bin, "tls", "ca", "create", "-domain", "mesh"], cwd=work,
                   check=True, capture_output=True)
    ca = work / "mesh-agent-ca.pem"
    secrets = {"ca-cert": {"tls.crt": ca.read_text()},
               "ca-key": {"tls.key": (work / "mesh-agent-ca-key.pem").read_text()},
               "gossip": {"key": "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8="}}
    objs = render(VALUES)
    servers = start_workload(node, objs, "StatefulSet", "-server", 3, secrets=secrets)
    spec = pod_spec(find(objs, "DaemonSet", "-client"))
    client = node.create_pod("rel-registry-client-abcde", spec, configmaps(objs),
                             secrets=secrets)
    node.write_dns()
    for pod in servers + [client]:
        pod.start()
    node.wait(lambda: all(p.probe("readinessProbe") for p in servers), 120,
              "every server's readiness probe (over HTTPS)")
    assert all(p.probe("livenessProbe") for p in servers)
    node.wait(lambda: client.probe("readinessProbe"), 60, "the client's readiness probe")
    assert client.probe("livenessProbe")

    # Each server presents the certificate its init container made: verified against the CA
    # for its pod IP, naming the pod's DNS name and server.<dc>.<domain>.
    for pod in servers:
        assert https_get(pod.ip, "/v1/status/leader", str(ca)) != ""
        ctx = ssl.create_default_context(cafile=str(ca))
        with socket.create_connection((pod.ip, 8501), timeout=5) as raw:
            with ctx.wrap_socket(raw, server_hostname=pod.ip) as tls:
                names = {v for k, v in tls.getpeercert()["subjectAltName"] if k == "DNS"}
        assert {f"{pod.name}.rel-registry-server.ns1.svc", "server.east.mesh",
                "rel-registry-server.ns1.svc"} <= names, names
    # httpsOnly: no plain HTTP.
    with pytest.raises(OSError):
        urllib.request.urlopen(f"http://{servers[0].ip}:8500/v1/status/leader", timeout=3)
    # verify: the server port refuses a TLS client without a certificate of the CA.
    ctx = ssl.create_default_context(cafile=str(ca))
    ctx.check_hostname = False
    with pytest.raises((ssl.SSLError, OSError)):
        with socket.create_connection((servers[0].ip, 8300), timeout=5) as raw:
            with ctx.wrap_socket(raw) as tls:
                tls.sendall(b"GET /v1/status/leader HTTP/1.1\r\nHost: x\r\n\r\n")
                if not tls.recv(100):
                    raise OSError("closed")
    # ... and answers one that presents a certificate of the CA.
    subprocess.run([registry_bin, "tls", "cert", "create", "-client", "-dc", "east",
                    "-domain", "mesh"], cwd=work, check=True, capture_output=True)
    ctx.load_cert_chain(work / "east-client-mesh-0.pem", work / "east-client-mesh-0-key.pem")
    with socket.create_connection((servers[0].ip, 8300), timeout=5) as raw:
        with ctx.wrap_socket(raw) as tls:
            tls.sendall(b"GET /v1/status/leader HTTP/1.1\r\nHost: x\r\n\r\n")
            assert tls.recv(100).startswith(b"HTTP/1.1 ")

    # The client joined over encrypted gossip and reaches the servers over verified TLS:
    # a write through its HTTPS API is read on a server.
    node.wait(lambda: len([m for m in https_get(client.ip, "/v1/agent/members", str(ca))
                           if m["Status"] == 1]) == 4, 60, "four alive members")
    ctx = ssl.create_default_context(cafile=str(ca))
    req = urllib.request.Request(f"https://{client.ip}:8501/v1/kv/over-tls", data=b"yes",
                                 method="PUT")
    with urllib.request.urlopen(req, timeout=10, context=ctx) as r:
        assert json.loads(r.read()) is True
    with urllib.request.urlopen(f"https://{servers[1].ip}:8501/v1/kv/over-tls?raw",
                                timeout=10, context=ctx) as r:
        assert r.read() == b"yes"
    # `helm test`'s pod, with the CA mounted, lists the peers through HTTPS.
    test_pod = pod_spec(find(objs, "Pod"))["containers"][0]
    out = servers[0].exec(test_pod["command"] + [
        a.replace("rel-registry-server.ns1.svc", servers[0].ip) for a in test_pod["args"]])
    assert out.returncode == 0, out.stderr
    assert all(p.name in out.stdout for p in servers), out.stdout
