"""global.acls.manageSystemACLs, rendered then run: the rendered servers start with a deny
default policy; the rendered server-acl-init Job (`k8s-sync acl-init`) runs as its pod against
them and the fake Kubernetes API server, bootstraps ACLs and writes the tokens to Secrets;
the rendered client agent and k8s-sync then run with the tokens those Secrets hold (as the
kubelet gives them) and work, while anonymous requests are refused everything but the DNS
reads. A second run of the Job keeps the tokens. The Job's requests to the API server are all
granted by the chart's Role. With global.acls.bootstrapToken the servers start with the
user's token as their initial management token and the Job uses it instead of bootstrapping.
"""
import base64
import json
import shutil
import subprocess
import time
import urllib.error
import urllib.request

from conftest import find, need, pod_spec, render
from test_render_run import configmaps, http_json, start_workload
from test_sync_run import (SEED, FakeApi, not_granted, pod_kubeconfig, requests_made,  # noqa: F401
                           sibling, sync_node)

VALUES = {
    "server": {"replicas": 3},
    "client": {"enabled": True},
    "syncCatalog": {"enabled": True},
    "global": {"acls": {"manageSystemACLs": True}},
}


def request(pod, path, method="GET", body=None, token=None):
    """(status, body) of an HTTP request to the pod's agent."""
    data = None if body is None else (body if isinstance(body, bytes) else json.dumps(body).encode())
    req = urllib.request.Request(f"http://{pod.ip}:8500{path}", data=data, method=method)
    if token:
        req.add_header("X-Consul-Token", token)
    try:
        with urllib.request.urlopen(req, timeout=10) as r:
            return r.status, r.read()
    except urllib.error.HTTPError as e:
        return e.code, e.read()


def fake_secrets(fake, namespace="ns1"):
    """{name: {key: value}} of the Secrets in the fake API server, decoded."""
    items = fake.get(f"/api/v1/namespaces/{namespace}/secrets")["items"]
    return {s["metadata"]["name"]: {k: base64.b64decode(v).decode()
                                    for k, v in (s.get("data") or {}).items()}
            for s in items}


def fake_secret_labels(fake, name, namespace="ns1"):
    return fake.get(f"/api/v1/namespaces/{namespace}/secrets/{name}")["metadata"]["labels"]


def acl_init_job(objs):
    """The server-acl-init Job (named <fullname>-server-acl-init-<hash of the values>)."""
    (job,) = [o for o in objs if o["kind"] == "Job"
              and o["metadata"]["labels"].get("component") == "server-acl-init"]
    return job


def run_job(node, objs, fake, name, secrets=None):
    """Runs the rendered server-acl-init Job's pod to completion; returns the pod."""
    job = acl_init_job(objs)
    pod = node.create_pod(name, pod_spec(job), configmaps(objs), container="server-acl-init",
                          secrets=secrets)
    (pod.root / "etc" / "kubeconfig").write_text(pod_kubeconfig(fake))
    pod.env["KUBECONFIG"] = "/etc/kubeconfig"
    node.write_dns()
    pod.start()
    node.wait(lambda: pod.proc.poll() is not None, 120, f"the Job pod {name} to finish")
    assert pod.proc.returncode == 0, pod.logs()
    return pod


def test_acl_values_render_the_job_and_wire_the_tokens():
    objs = render({**VALUES, "trafficProxy": {"enabled": True}})
    job = acl_init_job(objs)
    # The name changes with the values (a Job's pod template is immutable; an upgrade that
    # changes the values replaces the Job, which runs again) and only with them.
    assert job["metadata"]["name"].startswith("rel-registry-server-acl-init-")
    assert acl_init_job(render({**VALUES, "trafficProxy": {"enabled": True}}))["metadata"][
        "name"] == job["metadata"]["name"]
    assert acl_init_job(render(VALUES))["metadata"]["name"] != job["metadata"]["name"]
    long = acl_init_job(render({**VALUES, "global": {**VALUES["global"], "name": "x" * 63}}))
    assert len(long["metadata"]["name"]) <= 63
    args = pod_spec(job)["containers"][0]["args"]
    assert args[0] == "acl-init"
    assert [a for a in args if a.startswith("-server-address=")] == [
        f"-server-address=rel-registry-server-{i}.rel-registry-server.ns1.svc" for i in range(3)]
    for flag in ("-client", "-sync-catalog", "-traffic-proxy", "-allow-dns",
                 "-resource-prefix=rel-registry", "-k8s-namespace=$(NAMESPACE)"):
        assert flag in args, flag
    role = find(objs, "Role", "-server-acl-init")
    assert role["rules"] == [{"apiGroups": [""], "resources": ["secrets"],
                              "verbs": ["get", "create", "update"]}]
    binding = find(objs, "RoleBinding", "-server-acl-init")
    assert binding["subjects"][0]["name"] == pod_spec(job)["serviceAccountName"]

    def token_env(obj, container, var):
        c = next(c for c in pod_spec(obj)["containers"] if c["name"] == container)
        return next(e for e in c["env"] if e["name"] == var)["valueFrom"]["secretKeyRef"]
    assert token_env(find(objs, "DaemonSet", "-client"), "registry", "ACL_TOKEN") == {
        "name": "rel-registry-client-acl-token", "key": "token"}
    assert token_env(find(objs, "Deployment", "-sync-catalog"), "sync-catalog",
                     "CONSUL_HTTP_TOKEN") == {"name": "rel-registry-catalog-sync-acl-token",
                                              "key": "token"}
    assert token_env(find(objs, "Deployment", "-traffic-proxy"), "traefik",
                     "CONSUL_HTTP_TOKEN") == {"name": "rel-registry-traffic-proxy-acl-token",
                                              "key": "token"}
    assert token_env(find(objs, "Pod", "-test"), "registry-test", "CONSUL_HTTP_TOKEN") == {
        "name": "rel-registry-bootstrap-acl-token", "key": "token"}
    for cm in ("rel-registry-server-config", "rel-registry-client-config"):
        data = configmaps(objs)[cm]["data"]
        cfg = json.loads(data["server.json" if "server" in cm else "client.json"])
        assert cfg["acl"] == {"enabled": True, "default_policy": "deny",
                              "down_policy": "extend-cache", "enable_token_persistence": True}
    # Without ACLs none of it renders.
    plain = render({"client": {"enabled": True}, "syncCatalog": {"enabled": True}})
    assert not [o for o in plain if "acl-init" in o["metadata"]["name"]]
    assert "acl" not in json.loads(configmaps(plain)["rel-registry-server-config"]["data"]["server.json"])


def test_rendered_acl_init_job_bootstraps_acls_for_every_component(sync_node, registry_bin,
                                                                  tmp_path):
    node = sync_node
    need(shutil.which("kubectl"), "kubectl (apt-get install kubernetes-client)")
    need(shutil.which("dig"), "dig (apt-get install dnsutils)")
    fake = FakeApi(sibling(registry_bin, "fake-apiserver"), node.host_ip, tmp_path)
    try:
        acl_scenario(node, fake, tmp_path)
    finally:
        fake.close()


def acl_scenario(node, fake, tmp_path):
    objs = render(VALUES)
    servers = start_workload(node, objs, "StatefulSet", "-server", 3)
    node.write_dns()
    readiness = pod_spec(find(objs, "StatefulSet", "-server"))["containers"][0]["readinessProbe"]
    assert readiness["exec"]["command"][:2] == ["/usr/local/bin/registry", "ready"]
    # Two of three servers: no leader, so `registry ready` fails while the agents answer.
    for pod in servers[:2]:
        pod.start()
    node.wait(lambda: all(p.probe("livenessProbe") for p in servers[:2]), 60, "liveness")
    for _ in range(3):
        assert not any(p.probe("readinessProbe") for p in servers[:2])
        time.sleep(1)
    servers[2].start()
    # The servers' readiness does not need a token: it turns ready before any bootstrap.
    node.wait(lambda: all(p.probe("readinessProbe") for p in servers), 120,
              "every server's readiness probe")
    # ACLs are on, nothing is bootstrapped yet: anonymous writes are refused already.
    assert request(servers[0], "/v1/kv/early", "PUT", b"x")[0] == 403

    run_job(node, objs, fake, "rel-registry-server-acl-init-aaaaa")
    secrets = fake_secrets(fake)
    names = {"rel-registry-bootstrap-acl-token", "rel-registry-client-acl-token",
             "rel-registry-catalog-sync-acl-token"}
    assert names <= set(secrets), sorted(secrets)
    assert fake_secret_labels(fake, "rel-registry-client-acl-token")["release"] == "rel"
    management = secrets["rel-registry-bootstrap-acl-token"]["token"]
    # The Job's Kubernetes requests, all granted by the chart's Role.
    job_log = tmp_path / "job-requests.log"
    job_log.write_text(fake.log.read_text())
    made = requests_made(job_log)
    assert ("", "secrets", "create") in made and ("", "secrets", "get") in made, sorted(made)
    rules = find(objs, "Role", "-server-acl-init")["rules"]
    assert not_granted(made, rules) == [], sorted(made)

    # Anonymous: no KV, no writes, no ACL reads; DNS reads of nodes and services only.
    for method, path, body in [("PUT", "/v1/kv/anon", b"x"), ("GET", "/v1/kv/anon", None),
                               ("PUT", "/v1/catalog/register",
                                {"Node": "n", "Address": "10.0.0.1"}),
                               ("GET", "/v1/acl/tokens", None),
                               ("GET", "/v1/operator/raft/configuration", None)]:
        status, text = request(servers[1], path, method, body)
        assert status == 403, (method, path, status, text)
    assert request(servers[1], "/v1/catalog/nodes")[0] == 200
    # The management token can do anything.
    assert request(servers[1], "/v1/kv/managed", "PUT", b"yes", token=management) == (200, b"true")
    status, body = request(servers[2], "/v1/acl/policies", token=management)
    assert status == 200
    assert {"client-policy", "catalog-sync-policy", "server-policy", "dns-policy"} <= {
        p["Name"] for p in json.loads(body)}
    # Every server got its own agent token, with the server policy.
    status, body = request(servers[2], "/v1/acl/tokens", token=management)
    server_tokens = sorted(t["Description"] for t in json.loads(body)
                           if t["Description"].startswith("Server Token for "))
    assert server_tokens == [f"Server Token for rel-registry-server-{i}.rel-registry-server.ns1.svc"
                             for i in range(3)], server_tokens

    # The client agent, given the Secret the Job wrote, joins and syncs its node with its token.
    ds = find(objs, "DaemonSet", "-client")
    client = node.create_pod("rel-registry-client-abcde", pod_spec(ds), configmaps(objs),
                             secrets=secrets)
    sync = node.create_pod("rel-registry-sync-catalog-7d9f-abcde",
                           pod_spec(find(objs, "Deployment", "-sync-catalog")), configmaps(objs),
                           container="sync-catalog", secrets=secrets)
    (sync.root / "etc" / "kubeconfig").write_text(pod_kubeconfig(fake))
    sync.env["KUBECONFIG"] = "/etc/kubeconfig"
    node.write_dns()
    client_token = secrets["rel-registry-client-acl-token"]["token"]
    assert f'-hcl=acl = {{ tokens = {{ agent = "{client_token}" }} }}' in client.command
    client.start()
    node.host_port(client, 8500)  # the DaemonSet's hostPort: k8s-sync talks to $(HOST_IP):8500
    node.wait(lambda: client.probe("readinessProbe"), 60, "the client's readiness probe")

    def client_meta():
        status, body = request(servers[0], "/v1/catalog/node/node-1")
        return json.loads(body)["Node"]["Meta"] if status == 200 and json.loads(body) else {}
    node.wait(lambda: client_meta().get("pod-name") == client.name, 60,
              "the client's node meta, written with its agent token")
    # The CLI in the client pod acts with the client's token (CONSUL_HTTP_TOKEN).
    out = client.exec(["/usr/local/bin/registry", "members", "-http-addr=127.0.0.1:8500"])
    assert out.returncode == 0 and "node-1" in out.stdout, out.stdout + out.stderr
    # Its token is no management token.
    assert request(servers[0], "/v1/kv/client", "PUT", b"x", token=client_token)[0] == 403

    # k8s-sync, with its token from the Secret, syncs a Service into the catalog.
    sync.start()
    node.wait(lambda: sync.probe("readinessProbe"), 60, "the sync pod's readiness probe")
    fake.kubectl("apply", "--validate=false", "-f", "-", stdin=SEED)

    def synced():
        status, body = request(servers[1], "/v1/catalog/service/servicea")
        return status == 200 and sorted(e["ServiceAddress"] for e in json.loads(body)) == [
            "10.42.0.1", "10.42.0.2"]
    node.wait(synced, 60, "servicea in the catalog through k8s-sync's token")
    sync_token = secrets["rel-registry-catalog-sync-acl-token"]["token"]
    assert request(servers[0], "/v1/kv/sync", "PUT", b"x", token=sync_token)[0] == 403
    # DNS answers anonymously (the anonymous token's DNS policy).
    ports = {cp["name"]: cp["containerPort"] for cp in pod_spec(
        find(objs, "StatefulSet", "-server"))["containers"][0]["ports"]}
    dig = subprocess.run(["dig", "+short", "-p", str(ports["dns-udp"]), f"@{servers[0].ip}",
                          "servicea.service.consul", "A"], capture_output=True, text=True,
                         timeout=10).stdout.split()
    assert sorted(dig) == ["10.42.0.1", "10.42.0.2"], dig

    # `helm upgrade` reruns the Job: every token is kept.
    run_job(node, objs, fake, "rel-registry-server-acl-init-bbbbb")
    assert fake_secrets(fake) == secrets

    # `helm test`'s pod runs list-peers through the Service with the management token.
    test_pod = find(objs, "Pod", "-test")
    c = pod_spec(test_pod)["containers"][0]
    out = servers[0].exec(c["command"] + c["args"])
    assert out.returncode != 0  # without its token (the pod's env is not given here)
    servers[0].env["CONSUL_HTTP_TOKEN"] = management
    out = servers[0].exec(c["command"] + c["args"])
    assert out.returncode == 0 and all(p.name in out.stdout for p in servers), out.stderr


def test_rendered_servers_take_the_users_bootstrap_token(sync_node, registry_bin, tmp_path):
    node = sync_node
    fake = FakeApi(sibling(registry_bin, "fake-apiserver"), node.host_ip, tmp_path)
    token = "6c0a1dc4-61ad-4c7b-8c56-3f9d1c0a9e11"
    user = {"registry-bootstrap": {"token": token}}
    try:
        objs = render({"global": {"acls": {"manageSystemACLs": True, "bootstrapToken": {
            "secretName": "registry-bootstrap", "secretKey": "token"}}}})
        servers = start_workload(node, objs, "StatefulSet", "-server", 1, secrets=user)
        assert f'-hcl=acl = {{ tokens = {{ initial_management = "{token}" }} }}' in servers[0].command
        node.write_dns()
        servers[0].start()
        node.wait(lambda: servers[0].probe("readinessProbe"), 90, "the server's readiness")
        run_job(node, objs, fake, "rel-registry-server-acl-init-ccccc", secrets=user)
        # No bootstrap: the user's token is the management token, and no Secret holds another.
        assert "rel-registry-bootstrap-acl-token" not in fake_secrets(fake)
        assert request(servers[0], "/v1/kv/k", "PUT", b"v", token=token) == (200, b"true")
        assert request(servers[0], "/v1/kv/k", "PUT", b"v")[0] == 403
        status, body = request(servers[0], "/v1/acl/token/self", token=token)
        assert status == 200 and json.loads(body)["Policies"][0]["Name"] == "global-management"
    finally:
        fake.close()


def test_rendered_sync_uses_the_acl_sync_token_secret(sync_node, registry_bin, tmp_path):  # noqa: F811
    """syncCatalog.aclSyncToken without manageSystemACLs: the servers' ACLs come from
    server.extraConfig, k8s-sync reads its token from the user's Secret and syncs with it."""
    node = sync_node
    need(shutil.which("kubectl"), "kubectl (apt-get install kubernetes-client)")
    management = "0b6f0e0c-3a8e-4b7e-9d2a-7c1f5a9e2b11"
    sync_token = "7e1d2c3b-4a5f-4e6d-8c7b-9a0f1e2d3c4b"
    objs = render({"server": {"extraConfig": json.dumps({"acl": {
        "enabled": True, "default_policy": "deny",
        "tokens": {"initial_management": management}}})},
        "syncCatalog": {"enabled": True,
                        "aclSyncToken": {"secretName": "sync-token", "secretKey": "token"}}})
    c = pod_spec(find(objs, "Deployment", "-sync-catalog"))["containers"][0]
    assert {e["name"]: e.get("valueFrom") for e in c["env"]}["CONSUL_HTTP_TOKEN"] == {
        "secretKeyRef": {"name": "sync-token", "key": "token"}}
    assert not [o for o in objs if "acl-init" in o["metadata"]["name"]]
    fake = FakeApi(sibling(registry_bin, "fake-apiserver"), node.host_ip, tmp_path)
    try:
        server = start_workload(node, objs, "StatefulSet", "-server", 1)[0]
        sync = node.create_pod("rel-registry-sync-catalog-7d9f-abcde",
                               pod_spec(find(objs, "Deployment", "-sync-catalog")),
                               configmaps(objs), container="sync-catalog",
                               secrets={"sync-token": {"token": sync_token}})
        (sync.root / "etc" / "kubeconfig").write_text(pod_kubeconfig(fake))
        sync.env["KUBECONFIG"] = "/etc/kubeconfig"
        node.write_dns()
        server.start()
        def leader():
            try:
                return request(server, "/v1/status/leader")[1] not in (b"", b'""')
            except OSError:
                return False
        node.wait(leader, 90, "a leader")
        node.wait(lambda: request(server, "/v1/acl/policy", "PUT", {
            "Name": "sync", "Rules": 'node_prefix "" { policy = "write" }\n'
                                     'service_prefix "" { policy = "write" }'},
            token=management)[0] == 200, 30, "the sync policy")
        assert request(server, "/v1/acl/token", "PUT", {
            "SecretID": sync_token, "Policies": [{"Name": "sync"}]}, token=management)[0] == 200
        sync.start()
        node.wait(lambda: sync.probe("readinessProbe"), 60, "the sync pod's readiness probe")
        fake.kubectl("apply", "--validate=false", "-f", "-", stdin=SEED)

        def synced():
            status, body = request(server, "/v1/catalog/service/servicea", token=management)
            return status == 200 and len(json.loads(body)) == 2
        node.wait(synced, 60, "servicea in the catalog through the aclSyncToken")
    finally:
        fake.close()


def test_notes_tell_where_the_management_token_is():
    """NOTES.txt (rendered by an offline `helm install --dry-run=client`, helm 4) names the
    Secret of the management token and passes it to the printed CLI command."""
    from conftest import CHART, helm_bin
    out = subprocess.run([helm_bin(), "install", "--dry-run=client", "rel", str(CHART),
                          "--namespace", "ns1", "--set", "global.acls.manageSystemACLs=true"],
                         capture_output=True, text=True, check=True).stdout
    notes = out[out.index("NOTES:"):]
    assert ("export CONSUL_HTTP_TOKEN=$(kubectl -n ns1 get secret rel-registry-bootstrap-acl-token"
            " -o jsonpath='{.data.token}' | base64 -d)") in notes, notes
    assert "registry operator raft list-peers -token=$CONSUL_HTTP_TOKEN" in notes, notes
