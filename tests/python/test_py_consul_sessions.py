"""py-consul sessions, KV locks, transactions and events against a real dev agent."""

from __future__ import annotations

import base64
import json
import threading
import time

import consul
import pytest

LOCK_FLAG = 0x2DDCCBC058A50C18


@pytest.fixture
def c(registry):
    client = consul.Consul(host=registry.host, port=registry.http_port)
    # The agent registers its node (and serfHealth) right after start.
    deadline = time.monotonic() + 15
    while True:
        try:
            sid = client.session.create()
            client.session.destroy(sid)
            return client
        except consul.ConsulException:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.1)


def test_session_lifecycle(c, registry):
    sid = c.session.create(name="py", ttl=30, lock_delay=5, behavior="delete")
    index, s = c.session.info(sid)
    assert int(index) > 0
    assert s["ID"] == sid
    assert s["Name"] == "py"
    assert s["Node"] == registry.node
    assert s["TTL"] == "30s"
    assert s["LockDelay"] == 5_000_000_000
    assert s["Behavior"] == "delete"
    assert s["NodeChecks"] == ["serfHealth"]

    _, sessions = c.session.list()
    assert sid in [x["ID"] for x in sessions]
    _, sessions = c.session.node(registry.node)
    assert sid in [x["ID"] for x in sessions]

    renewed = c.session.renew(sid)
    assert renewed["ID"] == sid

    assert c.session.destroy(sid) is True
    assert c.session.info(sid)[1] is None
    with pytest.raises(consul.NotFound):
        c.session.renew(sid)


def test_session_without_checks_and_ttl_limits(c):
    sid = c.session.create(checks=[])
    assert c.session.info(sid)[1]["NodeChecks"] == []
    # py-consul only sends TTLs of 10 s or more; the server enforces the same range.
    with pytest.raises(consul.ConsulException, match="Invalid Session TTL"):
        c.http.put(
            consul.callback.CB.json(is_id=True),  # the raw API, as py-consul would send it
            "/v1/session/create",
            data=json.dumps({"ttl": "5s"}),
        )


def test_kv_acquire_release(c):
    a = c.session.create(name="a", lock_delay=0)
    b = c.session.create(name="b", lock_delay=0)
    assert c.kv.put("py/leader", "a", acquire=a, flags=LOCK_FLAG) is True
    assert c.kv.put("py/leader", "b", acquire=b) is False
    _, item = c.kv.get("py/leader")
    assert item["Session"] == a
    assert item["LockIndex"] == 1
    assert item["Flags"] == LOCK_FLAG
    assert c.kv.put("py/leader", "", release=b) is False
    assert c.kv.put("py/leader", "", release=a) is True
    _, item = c.kv.get("py/leader")
    assert "Session" not in item
    assert c.kv.put("py/leader", "b", acquire=b) is True
    _, item = c.kv.get("py/leader")
    assert item["LockIndex"] == 2
    # Invalidation releases the lock.
    c.session.destroy(b)
    _, item = c.kv.get("py/leader")
    assert "Session" not in item


def test_leader_election_with_blocking_watch(c):
    """Two candidates: the follower watches the key and takes over when the leader leaves."""
    leader = c.session.create(name="leader", lock_delay=0)
    follower = c.session.create(name="follower", lock_delay=0)
    assert c.kv.put("py/elect", "leader", acquire=leader)
    index, item = c.kv.get("py/elect")
    took_over = threading.Event()

    def follow():
        idx = index
        while True:
            idx, it = c.kv.get("py/elect", index=idx, wait="10s")
            if it is not None and "Session" not in it:
                if c.kv.put("py/elect", "follower", acquire=follower):
                    took_over.set()
                    return

    t = threading.Thread(target=follow, daemon=True)
    t.start()
    time.sleep(0.3)
    assert not took_over.is_set()
    c.session.destroy(leader)
    assert took_over.wait(10)
    _, item = c.kv.get("py/elect")
    assert item["Session"] == follower
    assert item["Value"] == b"follower"


def test_txn(c):
    def b64(s):
        return base64.b64encode(s.encode()).decode()

    r = c.txn.put(
        [
            {"KV": {"Verb": "set", "Key": "py/txn/a", "Value": b64("1")}},
            {"KV": {"Verb": "set", "Key": "py/txn/b", "Value": b64("2")}},
            {"KV": {"Verb": "get", "Key": "py/txn/a"}},
        ]
    )
    assert r["Errors"] is None
    assert len(r["Results"]) == 3
    assert base64.b64decode(r["Results"][2]["KV"]["Value"]) == b"1"
    with pytest.raises(consul.ConsulException, match="409"):
        c.txn.put(
            [
                {"KV": {"Verb": "set", "Key": "py/txn/c", "Value": b64("3")}},
                {"KV": {"Verb": "cas", "Key": "py/txn/a", "Value": b64("x"), "Index": 1}},
            ]
        )
    assert c.kv.get("py/txn/c")[1] is None


def test_events(c):
    assert c.event.fire("py-deploy", "v9")["Name"] == "py-deploy"
    index, events = c.event.list(name="py-deploy")
    assert [e["Name"] for e in events] == ["py-deploy"]
    assert events[0]["Payload"] == b"v9"
    results = {}

    def wait():
        results["r"] = c.event.list(index=index, wait="10s")

    t = threading.Thread(target=wait)
    t.start()
    time.sleep(0.3)
    c.event.fire("py-deploy", "v10")
    t.join(10)
    new_index, events = results["r"]
    assert new_index != index
    assert [e["Payload"] for e in events if e["Name"] == "py-deploy"] == [b"v9", b"v10"]
