"""Harness for py-consul's own test suite (the tests/ of the py-consul 1.8.0 sdist), run
against the registry instead of Consul.

This file replaces the sdist's root conftest.py, which starts `hashicorp/consul` containers.
It keeps its fixtures (`consul_instance`, `acl_consul_instance`, `consul_port`) and its way
of starting Consul: one fresh `registry agent -dev -client=127.0.0.1 -log-level trace` per
test, with the same local configuration (https, dns and grpc_tls disabled, raft_multiplier 1,
script checks enabled; ACLs with an initial management token for the ACL fixture), HTTP on
8500 (some tests hard-code it), every other port free and random. It waits for the agent the
way the upstream harness waits for Consul.

Tests listed in known-failures.txt (with their reasons) are marked xfail(strict=True): they
run, their failure is reported with its reason, and one that starts passing fails the stage
until it is taken off the list.
"""

from __future__ import annotations

import collections
import json
import os
import socket
import subprocess
import tempfile
import time
import uuid

import pytest
import requests
from requests import RequestException

ConsulInstance = collections.namedtuple("ConsulInstance", ["container", "port", "version"])

HERE = os.path.dirname(os.path.abspath(__file__))
LOGS_DIR = os.path.join(HERE, "logs")
os.makedirs(LOGS_DIR, exist_ok=True)
HTTP_PORT = 8500
REGISTRY_BIN = os.environ["REGISTRY_BIN"]
KNOWN_FAILURES = os.environ["PYCONSUL_KNOWN_FAILURES"]
# One parameter instead of upstream's list of Consul versions: the registry is one version.
VERSIONS = ["registry"]


def _known_failures() -> dict[str, str]:
    out = {}
    with open(KNOWN_FAILURES, encoding="utf-8") as f:
        for line in f:
            line = line.strip()
            if not line or line.startswith("#"):
                continue
            test_id, _, reason = line.partition(" ")
            reason = reason.strip().lstrip("#").strip()
            if not reason:
                raise pytest.UsageError(f"{KNOWN_FAILURES}: {test_id} has no reason")
            out[test_id] = reason
    return out


def pytest_collection_modifyitems(config, items):
    known = _known_failures()
    seen = set()
    for item in items:
        base = item.nodeid.split("[", 1)[0]
        for key in (item.nodeid, base):
            if key in known:
                item.add_marker(pytest.mark.xfail(reason=known[key], strict=True))
                seen.add(key)
                break
    stale = sorted(set(known) - seen)
    if stale:
        raise pytest.UsageError(f"known-failures.txt names tests that do not exist: {stale}")


@pytest.fixture(scope="session", autouse=True)
def _unset_consul_token():
    if "CONSUL_HTTP_TOKEN" in os.environ:
        del os.environ["CONSUL_HTTP_TOKEN"]


def _free_port() -> int:
    for _ in range(100):
        t = socket.socket()
        t.bind(("127.0.0.1", 0))
        port = t.getsockname()[1]
        u = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        try:
            u.bind(("127.0.0.1", port))
            return port
        except OSError:
            continue
        finally:
            t.close()
            u.close()
    raise RuntimeError("no free port")


class Agent:
    """What the upstream harness calls the container: the agent process and its log."""

    def __init__(self, proc: subprocess.Popen, log_path: str, workdir: tempfile.TemporaryDirectory):
        self.proc = proc
        self.log_path = log_path
        self.workdir = workdir

    def logs(self) -> bytes:
        with open(self.log_path, "rb") as f:
            return f.read()

    def stop(self):
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()

    def remove(self):
        self.workdir.cleanup()


def start_registry(acl_master_token: str | None = None):
    base_config = {
        "ports": {"https": -1, "dns": -1, "grpc_tls": -1},
        "performance": {"raft_multiplier": 1},
        "enable_script_checks": True,
    }
    if acl_master_token:
        base_config = {
            **base_config,
            "primary_datacenter": "dc1",
            "acl": {"enabled": True, "tokens": {"initial_management": acl_master_token}},
        }
    workdir = tempfile.TemporaryDirectory(prefix="pyconsul-upstream-")
    cfg = os.path.join(workdir.name, "local.json")
    with open(cfg, "w", encoding="utf-8") as f:
        json.dump(base_config, f)
    log_path = os.path.join(workdir.name, "agent.log")
    args = [
        REGISTRY_BIN, "agent", "-dev", "-client=127.0.0.1", "-bind=127.0.0.1", "-log-level", "trace",
        "-config-file", cfg,
        "-http-port", str(HTTP_PORT),
        "-server-port", str(_free_port()),
        "-serf-lan-port", str(_free_port()),
        "-serf-wan-port", str(_free_port()),
        "-grpc-port", "-1",
    ]
    with open(log_path, "wb") as log:
        proc = subprocess.Popen(args, stdout=log, stderr=subprocess.STDOUT)
    agent = Agent(proc, log_path, workdir)

    base_uri = f"http://127.0.0.1:{HTTP_PORT}/v1/"
    start_time = time.time()
    while True:
        if proc.poll() is not None:
            raise RuntimeError(f"registry agent exited: {agent.logs().decode(errors='replace')[-3000:]}")
        if time.time() - start_time > 10:
            agent.stop()
            raise TimeoutError("Global timeout reached")
        time.sleep(0.1)
        try:
            response = requests.get(base_uri + "status/leader", timeout=2)
            if response.status_code == 200 and response.json():
                break
        except RequestException:
            continue

    headers = {"X-Consul-Token": acl_master_token} if acl_master_token else {}
    for _ in range(10):
        try:
            requests.put(base_uri + "agent/service/register", json={"name": "test-service"}, headers=headers, timeout=2)
            response = requests.get(base_uri + "health/service/test-service", headers=headers, timeout=2)
            if response.status_code == 200 and response.json():
                requests.put(base_uri + "agent/service/deregister/test-service", headers=headers, timeout=2)
                return agent, HTTP_PORT
        except RequestException:
            pass
        time.sleep(0.5)
    agent.stop()
    raise Exception("Failed to verify registry startup")  # pylint: disable=broad-exception-raised


def get_consul_version(port: int) -> str:
    response = requests.get(f"http://127.0.0.1:{port}/v1/agent/self", timeout=10)
    return response.json()["Config"]["Version"].strip()


def setup_and_teardown_consul(request, acl_master_token: str | None = None):
    agent, port = start_registry(acl_master_token=acl_master_token)
    version = get_consul_version(port)
    instance = ConsulInstance(agent, port, version)
    try:
        yield instance if acl_master_token is None else (instance, acl_master_token)
    finally:
        agent.stop()
        with open(os.path.join(LOGS_DIR, f"{request.node.name}.log"), "wb") as f:
            f.write(agent.logs())
        agent.remove()


@pytest.fixture(params=VERSIONS)
def consul_instance(request):
    yield from setup_and_teardown_consul(request)


@pytest.fixture(params=VERSIONS)
def acl_consul_instance(request):
    yield from setup_and_teardown_consul(request, acl_master_token=uuid.uuid4().hex)


@pytest.fixture
def consul_port(consul_instance):
    return consul_instance.port, consul_instance.version
