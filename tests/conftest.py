"""Shared pytest fixtures: start a real `registry agent -dev` on free loopback ports.

The binary comes from $REGISTRY_BIN, else target/{release,debug}/registry under
$CARGO_TARGET_DIR or the workspace (the newest one wins), as in the Rust harness.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import tempfile
import time
import urllib.error
import urllib.request
import uuid
from pathlib import Path

import pytest

WORKSPACE = Path(__file__).resolve().parent.parent
START_TIMEOUT = 20.0


def registry_bin() -> Path:
    env = os.environ.get("REGISTRY_BIN")
    if env:
        p = Path(env)
        if not p.is_file():
            raise FileNotFoundError(f"REGISTRY_BIN={env} does not exist")
        return p
    target = Path(os.environ.get("CARGO_TARGET_DIR") or WORKSPACE / "target")
    found = [target / prof / "registry" for prof in ("release", "debug")]
    found = [p for p in found if p.is_file()]
    if not found:
        raise FileNotFoundError(
            f"registry binary not found under {target}/{{release,debug}}; "
            "set REGISTRY_BIN or run `cargo build -p registry-agent`"
        )
    return max(found, key=lambda p: p.stat().st_mtime)


def free_port(udp_too: bool = False) -> int:
    for _ in range(100):
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        if not udp_too:
            return port
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as u:
            try:
                u.bind(("127.0.0.1", port))
                return port
            except OSError:
                continue
    raise RuntimeError("no free port")


def wait_for(what: str, fn, timeout: float, interval: float = 0.1):
    _t0 = time.monotonic()
    try:
        return _wait_for(what, fn, timeout, interval)
    finally:
        if os.environ.get("REGISTRY_TESTS_TIMING"):
            print(f"[wait_for] {what}: {time.monotonic() - _t0:.2f}s")


def _wait_for(what: str, fn, timeout: float, interval: float = 0.1):
    """Calls fn() until it returns a truthy value; raises after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    last = None
    while True:
        try:
            v = fn()
            if v:
                return v
            last = v
        except Exception as e:  # noqa: BLE001 - report the last error on timeout
            last = e
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out after {timeout}s waiting for {what}; last: {last!r}")
        time.sleep(interval)


def http(method: str, url: str, body: bytes | None = None, timeout: float = 30.0):
    """Returns (status, headers, body bytes) without raising on HTTP errors."""
    req = urllib.request.Request(url, data=body, method=method)
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    try:
        with opener.open(req, timeout=timeout) as r:
            return r.status, dict(r.headers), r.read()
    except urllib.error.HTTPError as e:
        return e.code, dict(e.headers), e.read()


class Registry:
    def __init__(self, proc: subprocess.Popen, http_port: int, dns_port: int, node: str, log: Path):
        self.proc = proc
        self.http_port = http_port
        self.dns_port = dns_port
        self.node = node
        self.log = log
        self.host = "127.0.0.1"
        self.base_url = f"http://127.0.0.1:{http_port}"

    def get(self, path: str):
        return http("GET", self.base_url + path)

    def put_json(self, path: str, obj) -> tuple[int, dict, bytes]:
        return http("PUT", self.base_url + path, json.dumps(obj).encode())

    def log_tail(self, n: int = 100) -> str:
        try:
            return "\n".join(self.log.read_text(errors="replace").splitlines()[-n:])
        except OSError:
            return ""


def start_registry(tmp: Path, extra_args: tuple[str, ...] = ()) -> Registry:
    """`registry agent -dev` on free loopback ports; `extra_args` are added to its flags."""
    binary = registry_bin()
    node = f"py-{os.getpid()}-{uuid.uuid4().hex[:8]}"
    http_port = free_port()
    dns_port = free_port(udp_too=True)
    args = [
        str(binary), "agent", "-dev",
        "-http-port", str(http_port), "-dns-port", str(dns_port),
        "-node", node, "-client", "127.0.0.1", "-bind", "127.0.0.1",
    ]
    try:
        helptext = subprocess.run(
            [str(binary), "agent", "-h"], capture_output=True, text=True, timeout=10
        )
        helptext = helptext.stdout + helptext.stderr
    except (OSError, subprocess.SubprocessError):
        helptext = ""
    words = {w.lstrip("-").split("=")[0] for w in helptext.replace(",", " ").split()}
    for flag in ("server-port", "serf-lan-port", "serf-wan-port", "grpc-port"):
        if flag in words:
            args += [f"-{flag}", str(free_port(udp_too="serf" in flag))]
    args += list(extra_args)
    log = tmp / f"{node}.log"
    logf = open(log, "wb")
    proc = subprocess.Popen(
        args,
        stdin=subprocess.DEVNULL,
        stdout=logf,
        stderr=subprocess.STDOUT,
        env={**os.environ, "NO_COLOR": "1"},
    )
    logf.close()
    reg = Registry(proc, http_port, dns_port, node, log)

    def leader():
        if proc.poll() is not None:
            raise RuntimeError(f"registry exited with {proc.returncode}:\n{reg.log_tail()}")
        status, _, body = reg.get("/v1/status/leader")
        return status == 200 and json.loads(body)

    try:
        wait_for("registry leader", leader, START_TIMEOUT, interval=0.05)
    except Exception:
        stop_registry(reg)
        raise RuntimeError(f"registry did not start; log:\n{reg.log_tail()}")
    return reg


def stop_registry(reg: Registry) -> None:
    if reg.proc.poll() is None:
        reg.proc.kill()
        reg.proc.wait(timeout=10)


@pytest.fixture
def registry(request):
    tmp = Path(tempfile.mkdtemp(prefix="registry-py-"))
    reg = start_registry(tmp)
    yield reg
    stop_registry(reg)
    failed = getattr(request.node, "rep_call", None)
    if failed is not None and failed.failed:
        print(f"----- registry log ({reg.log}) -----\n{reg.log_tail(200)}\n----- end -----")
    shutil.rmtree(tmp, ignore_errors=True)


@pytest.hookimpl(hookwrapper=True, tryfirst=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    rep = outcome.get_result()
    setattr(item, "rep_" + rep.when, rep)
