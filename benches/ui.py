#!/usr/bin/env python3
"""benches/ui.py — the web UI's first paint and asset sizes, next to an anchor measured in
the same run.

    REGISTRY_BIN=target/release/registry ~/.cache/registry-test/ui-venv/bin/python benches/ui.py

Starts `registry agent -dev` on free loopback ports with BENCH_UI_SERVICES services (3
instances each, one TTL check per instance), then loads /ui/dc1/services in headless Chromium
(Debian's chromium + chromium-driver, Selenium from tests/ui/requirements.txt):

  cold   HTTP cache disabled: every asset is fetched (from the agent, gzip)
  warm   HTTP cache on: the assets are immutable, only index.html is revalidated (304)

and reports, over BENCH_UI_ROUNDS loads each, the median and p90 of first contentful paint
(FCP, from the Paint Timing API) and of "rows": the moment the services table shows every
service (a blocking-query answer rendered). The anchor is the same browser loading a static
page with the same table pre-rendered as HTML and no script, served by Python's http.server
on loopback: the floor for a page of that size on this machine and browser.

Asset sizes: each embedded file as served, identity and gzip, and the total a cold load
transfers. This is a benchmark: it asserts nothing and prints JSON lines and a table.
"""

from __future__ import annotations

import functools
import gzip
import http.server
import json
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SERVICES = int(os.environ.get("BENCH_UI_SERVICES", "50"))
ROUNDS = int(os.environ.get("BENCH_UI_ROUNDS", "15"))
FLAGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
    "--disable-dev-shm-usage", "--window-size=1366,768",
]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def req(method, url, body=None, headers=None):
    r = urllib.request.Request(url, data=body, method=method, headers=headers or {})
    with urllib.request.build_opener(urllib.request.ProxyHandler({})).open(r, timeout=10) as resp:
        return resp.status, dict(resp.headers), resp.read()


def registry_bin() -> Path:
    if os.environ.get("REGISTRY_BIN"):
        return Path(os.environ["REGISTRY_BIN"])
    target = Path(os.environ.get("CARGO_TARGET_DIR") or ROOT / "target")
    for prof in ("release", "debug"):
        if (target / prof / "registry").is_file():
            return target / prof / "registry"
    sys.exit("no registry binary: set REGISTRY_BIN")


def start_agent(tmp: Path):
    binary = registry_bin()
    http_port = free_port()
    args = [str(binary), "agent", "-dev", "-http-port", str(http_port), "-dns-port", "0",
            "-node", "bench-ui", "-client", "127.0.0.1", "-bind", "127.0.0.1"]
    for flag in ("server-port", "serf-lan-port", "serf-wan-port"):
        args += [f"-{flag}", str(free_port())]
    log = open(tmp / "agent.log", "wb")
    proc = subprocess.Popen(args, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
    base = f"http://127.0.0.1:{http_port}"
    for _ in range(200):
        try:
            if json.loads(req("GET", base + "/v1/status/leader")[2]):
                break
        except OSError:
            pass
        time.sleep(0.05)
    return proc, base, binary


def populate(base: str):
    for i in range(SERVICES):
        for j in range(3):
            body = {"Node": f"node-{j}", "Address": f"10.0.{j}.1",
                    "Service": {"Service": f"service-{i:03d}", "ID": f"service-{i:03d}-{j}",
                                "Port": 8000 + i, "Tags": ["v1", f"zone-{j}"]},
                    "Check": {"CheckID": f"service:service-{i:03d}-{j}", "Name": "ttl",
                              "ServiceID": f"service-{i:03d}-{j}",
                              "Status": "critical" if (i + j) % 7 == 0 else "passing"}}
            req("PUT", base + "/v1/catalog/register", json.dumps(body).encode())


def anchor_page(dir_: Path, base: str):
    """The services table as static HTML, styled by the UI's own stylesheet (copied)."""
    _, _, page = req("GET", base + "/ui/")
    html = page.decode()
    start = html.index('data-assets="') + len('data-assets="')
    assets = html[start: html.index('"', start)]
    (dir_ / "app.css").write_bytes(req("GET", base + assets + "app.css")[2])
    summary = json.loads(req("GET", base + "/v1/internal/ui/services")[2])
    rows = "".join(
        f'<tr data-service="{s["Name"]}"><th><a href="#">{s["Name"]}</a></th>'
        f'<td>{s["ChecksPassing"]} passing, {s["ChecksCritical"]} critical</td>'
        f'<td>{s["InstanceCount"]}</td><td>{" ".join(s["Tags"])}</td></tr>'
        for s in summary)
    (dir_ / "index.html").write_text(
        '<!doctype html><html lang="en"><head><meta charset="utf-8"><title>anchor</title>'
        '<link rel="stylesheet" href="app.css"></head><body><header class="top">registry</header>'
        '<main><h1>Services</h1><table class="list"><tbody>' + rows +
        "</tbody></table></main></body></html>")


MEASURE = """
const done = arguments[arguments.length - 1];
const want = arguments[0];
function check() {
  const rows = document.querySelectorAll('tr[data-service]').length;
  const fcp = performance.getEntriesByName('first-contentful-paint')[0];
  if (rows >= want && fcp) {
    done({fcp: fcp.startTime, rows: window.__rowsAt || performance.now(),
          transfer: performance.getEntriesByType('resource').reduce((a, r) => a + r.transferSize, 0)
                    + performance.getEntriesByType('navigation')[0].transferSize});
  } else setTimeout(check, 5);
}
check();
"""

MARK_ROWS = """
new MutationObserver(() => {
  if (!window.__rowsAt && document.querySelectorAll('tr[data-service]').length >= %d)
    window.__rowsAt = performance.now();
}).observe(document, {subtree: true, childList: true});
"""


def measure(driver, url: str, want_rows: int, cold: bool) -> list[dict]:
    driver.execute_cdp_cmd("Network.enable", {})
    driver.execute_cdp_cmd("Network.setCacheDisabled", {"cacheDisabled": cold})
    script = driver.execute_cdp_cmd("Page.addScriptToEvaluateOnNewDocument",
                                    {"source": MARK_ROWS % want_rows})
    out = []
    driver.get(url)  # prime (warm) or warm up the browser process (cold)
    for _ in range(ROUNDS):
        driver.get("about:blank")
        driver.get(url)
        out.append(driver.execute_async_script(MEASURE, want_rows))
    driver.execute_cdp_cmd("Page.removeScriptToEvaluateOnNewDocument", {"identifier": script["identifier"]})
    return out


def stats(values):
    values = sorted(values)
    p90 = values[min(len(values) - 1, int(round(0.9 * (len(values) - 1))))]
    return statistics.median(values), p90


def main():
    os.environ.setdefault("SE_OFFLINE", "true")
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    tmp = Path(tempfile.mkdtemp(prefix="bench-ui-"))
    proc, base, binary = start_agent(tmp)
    static_srv = None
    driver = None
    try:
        populate(base)
        want = SERVICES + 1  # and "consul"
        # Asset sizes as served.
        _, _, page = req("GET", base + "/ui/")
        html = page.decode()
        start = html.index('data-assets="') + len('data-assets="')
        assets = html[start: html.index('"', start)]
        names = ["app.js", "api.js", "dom.js", "views/services.js", "views/nodes.js",
                 "views/kv.js", "views/sessions.js", "app.css", "favicon.svg"]
        sizes = []
        for n in names:
            _, _, plain = req("GET", base + assets + n)
            _, h, gz = req("GET", base + assets + n, headers={"Accept-Encoding": "gzip"})
            sizes.append((n, len(plain), len(gz) if h.get("Content-Encoding") == "gzip" else len(gzip.compress(plain))))
        sizes.append(("index.html", len(page), len(gzip.compress(page))))

        anchor_dir = tmp / "anchor"
        anchor_dir.mkdir()
        anchor_page(anchor_dir, base)
        handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(anchor_dir))
        http.server.SimpleHTTPRequestHandler.log_message = lambda *a: None
        static_srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
        threading.Thread(target=static_srv.serve_forever, daemon=True).start()
        anchor_url = f"http://127.0.0.1:{static_srv.server_address[1]}/index.html"

        opts = webdriver.ChromeOptions()
        opts.binary_location = "/usr/bin/chromium"
        for f in FLAGS:
            opts.add_argument(f)
        opts.add_argument(f"--user-data-dir={tmp / 'profile'}")
        driver = webdriver.Chrome(service=Service(executable_path="/usr/bin/chromedriver"), options=opts)
        driver.set_script_timeout(30)
        results = {}
        # Alternate so that drift on a shared machine hits both alike.
        for label, url, want_rows in [("anchor static page", anchor_url, want),
                                      ("ui /ui/dc1/services", base + "/ui/dc1/services", want)]:
            for cold in (True, False):
                results[(label, cold)] = measure(driver, url, want_rows, cold)

        version = driver.capabilities.get("browserVersion", "?")
        print(f"\nUI first paint: {SERVICES} services x 3 instances, {ROUNDS} loads each, "
              f"Chromium {version} headless, 1366x768, registry {binary}")
        print(f"{'page':<24} {'cache':<5} {'FCP med':>8} {'FCP p90':>8} {'rows med':>9} {'rows p90':>9} {'bytes':>7}")
        for (label, cold), runs in results.items():
            fcp = stats([r["fcp"] for r in runs])
            rows = stats([r["rows"] for r in runs])
            transfer = int(statistics.median([r["transfer"] for r in runs]))
            print(f"{label:<24} {'cold' if cold else 'warm':<5} {fcp[0]:>6.1f}ms {fcp[1]:>6.1f}ms "
                  f"{rows[0]:>7.1f}ms {rows[1]:>7.1f}ms {transfer:>7}")
            print(json.dumps({"bench": "ui_first_paint", "page": label, "cache": "cold" if cold else "warm",
                              "fcp_ms_median": round(fcp[0], 1), "fcp_ms_p90": round(fcp[1], 1),
                              "rows_ms_median": round(rows[0], 1), "rows_ms_p90": round(rows[1], 1),
                              "transfer_bytes": transfer, "services": SERVICES, "rounds": ROUNDS}))
        print(f"\n{'asset':<20} {'bytes':>7} {'gzip':>6}")
        for n, plain, gz in sizes:
            print(f"{n:<20} {plain:>7} {gz:>6}")
        print(f"{'total':<20} {sum(s[1] for s in sizes):>7} {sum(s[2] for s in sizes):>6}")
        print(json.dumps({"bench": "ui_assets", "files": {n: [p, g] for n, p, g in sizes},
                          "total_bytes": sum(s[1] for s in sizes), "total_gzip": sum(s[2] for s in sizes)}))
    finally:
        if driver:
            driver.quit()
        if static_srv:
            static_srv.shutdown()
        proc.kill()
        proc.wait()
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
