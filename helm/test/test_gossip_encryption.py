"""global.gossipEncryption: the key comes from a Secret through the GOSSIP_KEY env var and is
passed as `-encrypt` to servers and clients. Rendered, then run: the servers and a client,
given the Secret, form one encrypted pool; a client rendered without the key never joins it.
With autoGenerate, the rendered pre-install hook Job creates that Secret (against the fake
Kubernetes API server) with a key the agents take, and a rerun keeps it."""
import base64
import time

from conftest import find, pod_spec, render, render_error
from test_render_run import configmaps, http_json, node, start_workload  # noqa: F401
from test_sync_run import sync_node  # noqa: F401

KEY = base64.b64encode(bytes(range(32))).decode()
SECRETS = {"gossip": {"key": KEY}}
VALUES = {"global": {"gossipEncryption": {"secretName": "gossip", "secretKey": "key"}},
          "client": {"enabled": True}}


def registry_container(obj):
    return next(c for c in pod_spec(obj)["containers"] if c["name"] == "registry")


def test_servers_and_clients_read_the_key_from_the_secret():
    objs = render(VALUES)
    for kind, suffix in (("StatefulSet", "-server"), ("DaemonSet", "-client")):
        c = registry_container(find(objs, kind, suffix))
        env = {e["name"]: e for e in c["env"]}
        assert env["GOSSIP_KEY"]["valueFrom"] == {
            "secretKeyRef": {"name": "gossip", "key": "key"}}, kind
        assert "-encrypt=$(GOSSIP_KEY)" in c["args"], kind
    # The key itself is nowhere in the rendered objects (it lives in the Secret only).
    text = repr(objs)
    assert "secretKeyRef" in text and KEY not in text


def test_without_a_secret_nothing_is_encrypted():
    objs = render({"client": {"enabled": True}})
    for kind, suffix in (("StatefulSet", "-server"), ("DaemonSet", "-client")):
        c = registry_container(find(objs, kind, suffix))
        assert "GOSSIP_KEY" not in {e["name"] for e in c["env"]}
        assert not [a for a in c["args"] if a.startswith("-encrypt")]


def test_secret_without_key_and_autogenerate_fail():
    err = render_error({"global": {"gossipEncryption": {"secretName": "gossip"}}})
    assert "global.gossipEncryption.secretKey is required with secretName" in err
    err = render_error({"global": {"gossipEncryption": {"autoGenerate": True,
                                                        "secretName": "gossip"}}})
    assert "global.gossipEncryption.autoGenerate: secretName and secretKey must not" in err


def alive(pod):
    """Names of the alive members the pod's agent sees; None while its API does not answer."""
    try:
        return sorted(m["Name"] for m in http_json(pod, "/v1/agent/members") if m["Status"] == 1)
    except OSError:
        return None


def test_rendered_servers_and_client_form_an_encrypted_pool(node):  # noqa: F811
    objs = render({**VALUES, "server": {"replicas": 3}})
    servers = start_workload(node, objs, "StatefulSet", "-server", 3, secrets=SECRETS)
    spec = pod_spec(find(objs, "DaemonSet", "-client"))
    client = node.create_pod("rel-registry-client-abcde", spec, configmaps(objs),
                             secrets=SECRETS)
    # A client of the same release rendered without gossip encryption: plaintext.
    plain_objs = render({"client": {"enabled": True}})
    plain = node.create_pod("rel-registry-client-plain", pod_spec(
        find(plain_objs, "DaemonSet", "-client")), configmaps(plain_objs))
    node.write_dns()
    assert f"-encrypt={KEY}" in servers[0].command and f"-encrypt={KEY}" in client.command
    for pod in servers + [client, plain]:
        pod.start()
    node.wait(lambda: all(p.probe("readinessProbe") for p in servers), 90,
              "every server's readiness probe")
    node.wait(lambda: client.probe("readinessProbe"), 60, "the client's readiness probe")
    want = sorted([p.name for p in servers] + ["node-1"])
    node.wait(lambda: alive(servers[0]) == want and alive(client) == want, 60,
              "the three servers and the client in one pool")

    # Every member holds the Secret's key as its only (primary) key.
    ring = http_json(servers[0], "/v1/operator/keyring")
    lan = [r for r in ring if not r.get("WAN")]
    assert lan, ring
    assert lan[0]["NumNodes"] == 4, ring
    assert list(lan[0]["Keys"].values()) == [4], ring
    assert list(lan[0]["PrimaryKeys"].values()) == [4], ring

    # The plaintext agent is never seen by the pool, nor sees it.
    time.sleep(8)
    assert plain.proc.poll() is None, plain.logs()
    assert alive(servers[1]) == want
    node.wait(lambda: alive(plain) is not None, 30, "the plaintext client's HTTP API")
    assert alive(plain) == ["node-1"], plain.logs()[-2000:]
    assert alive(servers[1]) == want


def test_autogenerate_renders_a_pre_install_hook_and_wires_its_secret():
    objs = render({"global": {"gossipEncryption": {"autoGenerate": True}},
                   "client": {"enabled": True}})
    job = find(objs, "Job", "-gossip-encryption-autogenerate")
    assert job["metadata"]["annotations"]["helm.sh/hook"] == "pre-install"
    weights = {o["kind"]: int(o["metadata"]["annotations"]["helm.sh/hook-weight"]) for o in objs
               if o["metadata"]["name"].endswith("-gossip-encryption-autogenerate")}
    assert weights["Job"] > max(weights[k] for k in ("ServiceAccount", "Role", "RoleBinding"))
    args = pod_spec(job)["containers"][0]["args"]
    assert args[:4] == ["gossip-encryption-autogenerate", "-namespace=$(NAMESPACE)",
                        "-secret-name=rel-registry-gossip-encryption-key", "-secret-key=key"]
    for kind, suffix in (("StatefulSet", "-server"), ("DaemonSet", "-client")):
        c = registry_container(find(objs, kind, suffix))
        env = {e["name"]: e for e in c["env"]}
        assert env["GOSSIP_KEY"]["valueFrom"] == {"secretKeyRef": {
            "name": "rel-registry-gossip-encryption-key", "key": "key"}}, kind
        assert "-encrypt=$(GOSSIP_KEY)" in c["args"], kind


def test_rendered_autogenerate_job_makes_the_key_the_agents_use(sync_node, registry_bin,  # noqa: F811
                                                               tmp_path):
    from test_acls import fake_secrets
    from test_sync_run import FakeApi, not_granted, pod_kubeconfig, requests_made, sibling
    node = sync_node
    fake = FakeApi(sibling(registry_bin, "fake-apiserver"), node.host_ip, tmp_path)
    try:
        objs = render({"global": {"gossipEncryption": {"autoGenerate": True}},
                       "client": {"enabled": True}})
        spec = pod_spec(find(objs, "Job", "-gossip-encryption-autogenerate"))

        def run_job(name):
            pod = node.create_pod(name, spec, configmaps(objs),
                                  container="gossip-encryption-autogenerate")
            (pod.root / "etc" / "kubeconfig").write_text(pod_kubeconfig(fake))
            pod.env["KUBECONFIG"] = "/etc/kubeconfig"
            node.write_dns()
            pod.start()
            node.wait(lambda: pod.proc.poll() is not None, 60, f"the Job pod {name}")
            assert pod.proc.returncode == 0, pod.logs()
        run_job("rel-registry-gossip-encryption-autogenerate-aaaaa")
        secrets = fake_secrets(fake)
        key = secrets["rel-registry-gossip-encryption-key"]["key"]
        assert len(base64.b64decode(key, validate=True)) == 32
        made = requests_made(fake.log)
        assert ("", "secrets", "create") in made, sorted(made)
        assert not_granted(made, find(objs, "Role", "-gossip-encryption-autogenerate")["rules"]) == []
        # A second install keeps the key of the running datacenter.
        run_job("rel-registry-gossip-encryption-autogenerate-bbbbb")
        assert fake_secrets(fake) == secrets

        # The rendered server and client, given that Secret, form one pool on that key.
        server = start_workload(node, objs, "StatefulSet", "-server", 1, secrets=secrets)[0]
        client = node.create_pod("rel-registry-client-abcde",
                                 pod_spec(find(objs, "DaemonSet", "-client")), configmaps(objs),
                                 secrets=secrets)
        node.write_dns()
        assert f"-encrypt={key}" in server.command and f"-encrypt={key}" in client.command
        server.start()
        client.start()
        want = sorted([server.name, "node-1"])
        node.wait(lambda: alive(server) == want and alive(client) == want, 90,
                  "the server and the client in one encrypted pool")
        lan = [r for r in http_json(server, "/v1/operator/keyring") if not r.get("WAN")]
        assert lan and lan[0]["PrimaryKeys"] == {key: 2}, lan
    finally:
        fake.close()
