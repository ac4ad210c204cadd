"""global.gossipEncryption: the key comes from a Secret through the GOSSIP_KEY env var and is
passed as `-encrypt` to servers and clients. Rendered, then run: the servers and a client,
given the Secret, form one encrypted pool; a client rendered without the key never joins it."""
import base64
import time

from conftest import find, pod_spec, render, render_error
from test_render_run import configmaps, http_json, node, start_workload  # noqa: F401

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
    err = render_error({"global": {"gossipEncryption": {"autoGenerate": True}}})
    assert "global.gossipEncryption.autoGenerate" in err and "registry keygen" in err


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
