"""Debian's VictoriaMetrics discovers scrape targets from the registry with consul_sd_configs.

Two services whose addresses point at tiny loopback HTTP servers serving /metrics are registered;
VictoriaMetrics must list both as up, and drop one after it is deregistered.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import tempfile
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from conftest import free_port, http, wait_for

VM_BIN = shutil.which("victoria-metrics")
STRICT = os.environ.get("REGISTRY_TESTS_STRICT") == "1"


class MetricsHandler(BaseHTTPRequestHandler):
    def do_GET(self):  # noqa: N802 - http.server API
        if self.path.split("?")[0] != "/metrics":
            self.send_error(404)
            return
        body = (
            "# HELP demo_requests_total Requests served.\n"
            "# TYPE demo_requests_total counter\n"
            f'demo_requests_total{{server="{self.server.server_address[1]}"}} 42\n'
        ).encode()
        self.send_response(200)
        self.send_header("Content-Type", "text/plain; version=0.0.4")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


@pytest.fixture
def metrics_servers():
    servers = []
    for _ in range(2):
        s = ThreadingHTTPServer(("127.0.0.1", 0), MetricsHandler)
        threading.Thread(target=s.serve_forever, daemon=True).start()
        servers.append(s)
    yield servers
    for s in servers:
        s.shutdown()
        s.server_close()


@pytest.fixture
def victoria(registry):
    if VM_BIN is None:
        if STRICT:
            pytest.fail("victoria-metrics is not installed (apt-get install victoria-metrics)")
        pytest.skip("victoria-metrics is not installed")
    tmp = Path(tempfile.mkdtemp(prefix="registry-vm-"))
    port = free_port()
    config = tmp / "scrape.yml"
    config.write_text(
        "scrape_configs:\n"
        "  - job_name: registry-sd\n"
        "    scrape_interval: 1s\n"
        "    scrape_timeout: 1s\n"
        "    consul_sd_configs:\n"
        f"      - server: 127.0.0.1:{registry.http_port}\n"
        "        services: [vmdemo]\n"
    )
    log = tmp / "vm.log"
    logf = open(log, "wb")
    proc = subprocess.Popen(
        [
            VM_BIN,
            f"-httpListenAddr=127.0.0.1:{port}",
            f"-storageDataPath={tmp / 'data'}",
            f"-promscrape.config={config}",
            "-promscrape.consulSDCheckInterval=1s",
            "-promscrape.consul.waitTime=2s",
            "-retentionPeriod=1d",
            "-search.latencyOffset=0s",
            "-loggerLevel=INFO",
        ],
        stdin=subprocess.DEVNULL,
        stdout=logf,
        stderr=subprocess.STDOUT,
    )
    logf.close()
    base = f"http://127.0.0.1:{port}"

    def vm_ready():
        if proc.poll() is not None:
            raise RuntimeError(f"victoria-metrics exited: {log.read_text(errors='replace')[-4000:]}")
        return http("GET", base + "/health", timeout=2)[0] == 200

    try:
        wait_for("victoria-metrics /health", vm_ready, 30)
        yield base
    finally:
        if proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout=10)
        print(f"----- victoria-metrics log -----\n{log.read_text(errors='replace')[-6000:]}")
        shutil.rmtree(tmp, ignore_errors=True)


def active_targets(vm_base: str) -> dict[str, str]:
    """scrapeUrl -> health for every active target."""
    status, _, body = http("GET", vm_base + "/api/v1/targets", timeout=5)
    assert status == 200, body
    data = json.loads(body)["data"]
    return {t["scrapeUrl"]: t["health"] for t in data["activeTargets"]}


def test_consul_sd_discovers_and_drops_targets(registry, metrics_servers, victoria):
    urls = []
    for i, s in enumerate(metrics_servers):
        port = s.server_address[1]
        status, _, body = registry.put_json(
            "/v1/agent/service/register",
            {"Name": "vmdemo", "ID": f"vmdemo-{i}", "Address": "127.0.0.1", "Port": port,
             "Tags": ["metrics"], "Meta": {"idx": str(i)}},
        )
        assert status == 200, body
        urls.append(f"http://127.0.0.1:{port}/metrics")

    def both_up():
        t = active_targets(victoria)
        return all(t.get(u) == "up" for u in urls) and t

    targets = wait_for("both targets up in VictoriaMetrics", both_up, 60, interval=0.5)
    assert set(targets) == set(urls), targets

    # The scraped series arrive too.
    def series_present():
        status, _, body = http("GET", victoria + "/api/v1/query?query=demo_requests_total", timeout=5)
        return status == 200 and len(json.loads(body)["data"]["result"]) == 2

    wait_for("scraped series", series_present, 60, interval=0.5)

    status, _, body = http("PUT", registry.base_url + "/v1/agent/service/deregister/vmdemo-1")
    assert status == 200, body

    def second_gone():
        t = active_targets(victoria)
        return urls[1] not in t and t.get(urls[0]) == "up"

    wait_for("deregistered target to disappear", second_gone, 60, interval=0.5)
