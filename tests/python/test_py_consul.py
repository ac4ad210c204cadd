"""The py-consul client (PyPI `py-consul`, module `consul`) against a real dev agent."""

from __future__ import annotations

import threading
import time

import consul
import pytest


@pytest.fixture
def c(registry):
    return consul.Consul(host=registry.host, port=registry.http_port)


def test_status_and_agent_self(c, registry):
    leader = c.status.leader()
    assert leader.startswith("127.0.0.1:")
    assert c.status.peers() == [leader]
    me = c.agent.self()
    assert me["Config"]["NodeName"] == registry.node
    assert me["Config"]["Datacenter"] == "dc1"
    # Clients find the leader through Stats, as with Consul.
    assert me["Stats"]["consul"]["leader_addr"] == leader
    assert me["Stats"]["consul"]["server"] == "true"
    assert me["Stats"]["raft"]["state"] == "Leader"
    assert me["Stats"]["raft"]["num_peers"] == "0"
    members = c.agent.members()
    assert [m["Name"] for m in members] == [registry.node]


def test_service_with_ttl_check_and_passing_query(c, registry):
    assert c.agent.service.register(
        "web", service_id="web-1", port=8080, tags=["v1"], check=consul.Check.ttl("30s")
    )
    assert c.agent.service.register(
        "web", service_id="web-2", port=8081, tags=["v1"], check=consul.Check.ttl("30s")
    )
    services = c.agent.services()
    assert set(k for k in services if k.startswith("web-")) == {"web-1", "web-2"}
    assert services["web-1"]["Port"] == 8080

    checks = c.agent.checks()
    assert checks["service:web-1"]["Status"] == "critical"

    # Nothing passes before the first heartbeat.
    _, nodes = c.health.service("web", passing=True)
    assert nodes == []

    c.agent.check.ttl_pass("service:web-1", notes="all good")
    assert c.agent.checks()["service:web-1"]["Status"] == "passing"
    assert c.agent.checks()["service:web-1"]["Output"] == "all good"

    index, nodes = c.health.service("web", passing=True)
    # py-consul hands back X-Consul-Index as the header string.
    assert int(index) > 0
    assert [n["Service"]["ID"] for n in nodes] == ["web-1"]
    assert nodes[0]["Service"]["Port"] == 8080
    assert nodes[0]["Node"]["Node"] == registry.node
    assert {ch["CheckID"] for ch in nodes[0]["Checks"]} == {"serfHealth", "service:web-1"}

    _, nodes = c.health.service("web")
    assert sorted(n["Service"]["ID"] for n in nodes) == ["web-1", "web-2"]

    _, nodes = c.health.service("web", passing=True, tag="v1")
    assert [n["Service"]["ID"] for n in nodes] == ["web-1"]

    c.agent.check.ttl_warn("service:web-1", notes="slow")
    _, nodes = c.health.service("web", passing=True)
    assert nodes == []

    _, services = c.catalog.services()
    assert services["web"] == ["v1"]
    _, instances = c.catalog.service("web")
    assert sorted(i["ServiceID"] for i in instances) == ["web-1", "web-2"]

    assert c.agent.service.deregister("web-2")
    _, nodes = c.health.service("web")
    assert [n["Service"]["ID"] for n in nodes] == ["web-1"]


def test_kv_put_get_cas_recurse_delete(c):
    assert c.kv.put("app/name", "registry") is True
    index, item = c.kv.get("app/name")
    assert int(index) > 0
    assert item["Key"] == "app/name"
    assert item["Value"] == b"registry"
    assert item["Flags"] == 0

    # Missing key -> None (the client maps 404 to None).
    _, missing = c.kv.get("app/missing")
    assert missing is None

    # Empty value -> None.
    assert c.kv.put("app/empty", "") is True
    _, item = c.kv.get("app/empty")
    assert item["Value"] is None

    # flags round-trip as a full uint64.
    assert c.kv.put("app/flags", "x", flags=0x2DDCCBC058A50C18) is True
    _, item = c.kv.get("app/flags")
    assert item["Flags"] == 3304740253564472344

    # cas=0: create only.
    assert c.kv.put("app/lock", "a", cas=0) is True
    assert c.kv.put("app/lock", "b", cas=0) is False
    _, item = c.kv.get("app/lock")
    assert item["Value"] == b"a"
    modify = item["ModifyIndex"]
    assert c.kv.put("app/lock", "c", cas=modify + 100) is False
    assert c.kv.put("app/lock", "c", cas=modify) is True
    _, item = c.kv.get("app/lock")
    assert item["Value"] == b"c"
    assert item["ModifyIndex"] > modify

    # recurse and keys.
    for k in ("tree/a", "tree/b", "tree/sub/c"):
        assert c.kv.put(k, k.upper()) is True
    _, items = c.kv.get("tree/", recurse=True)
    assert [i["Key"] for i in items] == ["tree/a", "tree/b", "tree/sub/c"]
    assert [i["Value"] for i in items] == [b"TREE/A", b"TREE/B", b"TREE/SUB/C"]
    _, keys = c.kv.get("tree/", keys=True, separator="/")
    assert keys == ["tree/a", "tree/b", "tree/sub/"]

    # delete (with cas) and recursive delete.
    _, item = c.kv.get("app/lock")
    assert c.kv.delete("app/lock", cas=item["ModifyIndex"] + 1) is False
    assert c.kv.delete("app/lock", cas=item["ModifyIndex"]) is True
    assert c.kv.get("app/lock")[1] is None
    assert c.kv.delete("tree/", recurse=True) is True
    assert c.kv.get("tree/", recurse=True)[1] is None
    assert c.kv.get("app/name")[1]["Value"] == b"registry"


def test_blocking_kv_get_returns_when_another_thread_writes(c):
    assert c.kv.put("watch/me", "v1") is True
    index, item = c.kv.get("watch/me")
    assert item["Value"] == b"v1"

    result = {}

    def watcher():
        start = time.monotonic()
        new_index, new_item = c.kv.get("watch/me", index=index, wait="20s")
        result["elapsed"] = time.monotonic() - start
        result["index"] = new_index
        result["item"] = new_item

    t = threading.Thread(target=watcher, daemon=True)
    t.start()
    time.sleep(0.7)
    assert t.is_alive(), "the blocking get returned before any change"

    writer = threading.Thread(target=lambda: c.kv.put("watch/me", "v2"), daemon=True)
    writer.start()
    writer.join(timeout=10)
    t.join(timeout=15)
    assert not t.is_alive(), "the blocking get did not return after the write"
    assert int(result["index"]) > int(index)
    assert result["item"]["Value"] == b"v2"
    assert 0.5 <= result["elapsed"] < 10


def test_blocking_kv_get_times_out_with_same_index(c):
    assert c.kv.put("quiet", "v") is True
    index, _ = c.kv.get("quiet")
    start = time.monotonic()
    new_index, item = c.kv.get("quiet", index=index, wait="1s")
    elapsed = time.monotonic() - start
    assert new_index == index
    assert item["Value"] == b"v"
    assert 0.95 <= elapsed < 3.0


def test_catalog_register_and_nodes(c):
    assert c.catalog.register(
        "ext-node", "127.0.0.2", service={"Service": "ext", "ID": "ext1", "Port": 80, "Tags": ["x"]}
    )
    _, nodes = c.catalog.nodes()
    assert "ext-node" in [n["Node"] for n in nodes]
    _, node = c.catalog.node("ext-node")
    assert node["Services"]["ext1"]["Service"] == "ext"
    assert c.catalog.datacenters() == ["dc1"]
    assert c.catalog.deregister("ext-node")
    _, nodes = c.catalog.nodes()
    assert "ext-node" not in [n["Node"] for n in nodes]
