"""k8s-sync benchmark driver (see run.sh)."""
import json, os, socket, subprocess, sys, tempfile, time, urllib.request

SERVICES = int(sys.argv[1]) if len(sys.argv) > 1 else 5000
ENDPOINTS = int(sys.argv[2]) if len(sys.argv) > 2 else 10
CHANGES = int(os.environ.get("CHANGES", "200"))
# OLD_K8S_SYNC: another k8s-sync binary (e.g. the previous commit's) measured against the same
# registry and fake, alternated with this build's in ROUNDS rounds of CHANGES/ROUNDS changes.
OLD = os.environ.get("OLD_K8S_SYNC")
ROUNDS = int(os.environ.get("ROUNDS", "2"))
# Seconds between two endpoint changes, so that the changes also land during the periodic
# full resync (every 30 s) rather than all within a few seconds of a quiet loop.
PACE = float(os.environ.get("PACE", "0.25"))
PROFILE = os.environ.get("PROFILE", "release")
TARGET = os.environ.get("CARGO_TARGET_DIR") or os.path.join(os.path.dirname(__file__), "..", "..", "target")
BIN = os.path.join(TARGET, PROFILE)
NEW = os.environ.get("NEW_K8S_SYNC") or os.path.join(BIN, "k8s-sync")
TMP = tempfile.mkdtemp(prefix="k8s-sync-bench")
procs = []


def free_port():
    s = socket.socket(); s.bind(("127.0.0.1", 0)); p = s.getsockname()[1]; s.close(); return p


def http(method, url, body=None, ctype="application/json", timeout=600):
    data = None if body is None else json.dumps(body).encode()
    req = urllib.request.Request(url, data=data, method=method, headers={"Content-Type": ctype})
    with urllib.request.urlopen(req, timeout=timeout) as r:
        return r.status, r.headers, r.read()


def spawn(name, args):
    log = open(os.path.join(TMP, name + ".log"), "w")
    p = subprocess.Popen(args, stdout=log, stderr=subprocess.STDOUT, env=dict(os.environ, RUST_LOG="warn"))
    procs.append(p)
    return p


def registry():
    http_port, dns_port = free_port(), free_port()
    args = [os.path.join(BIN, "registry"), "agent", "-dev", "-http-port", str(http_port), "-dns-port", str(dns_port),
            "-client", "127.0.0.1", "-bind", "127.0.0.1", "-log-level", "warn",
            "-server-port", str(free_port()), "-serf-lan-port", str(free_port()), "-serf-wan-port", str(free_port())]
    p = spawn("registry-%d" % http_port, args)
    base = "http://127.0.0.1:%d" % http_port
    for _ in range(300):
        try:
            if http("GET", base + "/v1/status/leader")[2].strip(b'"\n'):
                return p, base
        except Exception:
            pass
        time.sleep(0.1)
    sys.exit("registry did not start")


def cpu_rss(pid):
    with open("/proc/%d/stat" % pid) as f:
        parts = f.read().rsplit(")", 1)[1].split()
    cpu = (int(parts[11]) + int(parts[12])) / os.sysconf("SC_CLK_TCK")
    rss = 0
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            if line.startswith("VmRSS:"):
                rss = int(line.split()[1]) / 1024
    return cpu, rss


def pct(xs, p):
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(round(p / 100 * (len(xs) - 1))))]


def blocking_until(base, path, index, pred, deadline=60):
    """Blocking queries on path until pred(json) holds; returns the index."""
    end = time.time() + deadline
    while time.time() < end:
        _, h, b = http("GET", "%s%s%sindex=%d&wait=5s" % (base, path, "&" if "?" in path else "?", index))
        index = int(h.get("X-Consul-Index", index))
        if pred(json.loads(b)):
            return index
    raise SystemExit("condition not reached on " + path)


def anchor_load(base):
    """Writes SERVICES×ENDPOINTS instances with their checks straight to /v1/txn."""
    ops = [{"Node": {"Verb": "set", "Node": {"Node": "anchor", "Address": "127.0.0.1"}}}]
    batches, t0 = 0, time.time()
    for i in range(SERVICES):
        for j in range(ENDPOINTS):
            sid = "svc-%d-%d" % (i, j)
            if len(ops) + 2 > 64:
                http("PUT", base + "/v1/txn", ops); ops = []; batches += 1
            ops.append({"Service": {"Verb": "set", "Node": "anchor", "Service": {
                "ID": sid, "Service": "anchor-%d" % i, "Address": "10.0.0.%d" % (j + 1), "Port": 8080, "Tags": ["k8s"]}}})
            ops.append({"Check": {"Verb": "set", "Check": {"Node": "anchor", "CheckID": "c/" + sid, "Name": "ready",
                                                        "Status": "passing", "ServiceID": sid}}})
    if ops:
        http("PUT", base + "/v1/txn", ops); batches += 1
    return time.time() - t0, batches


def anchor_latency(base, n):
    """Check flips written to the catalog, seen by a blocking health query."""
    lat = []
    for k in range(n):
        i = k % SERVICES
        path = "/v1/health/service/anchor-%d?passing" % i
        _, h, b = http("GET", base + path)
        idx, before = int(h["X-Consul-Index"]), len(json.loads(b))
        status = "critical" if before == ENDPOINTS else "passing"
        t0 = time.time()
        http("PUT", base + "/v1/catalog/register", {"Node": "anchor", "Address": "127.0.0.1", "SkipNodeUpdate": True,
             "Check": {"CheckID": "c/svc-%d-0" % i, "Name": "ready", "Status": status, "ServiceID": "svc-%d-0" % i}})
        want = before - 1 if status == "critical" else before + 1
        blocking_until(base, path, idx, lambda v: len(v) == want)
        lat.append(time.time() - t0)
    return lat


def main():
    print("k8s-sync benchmark: %d services x %d endpoints, profile %s, tmp %s" % (SERVICES, ENDPOINTS, PROFILE, TMP))
    # Anchor: the registry build alone.
    areg, abase = registry()
    secs, batches = anchor_load(abase)
    n = SERVICES * ENDPOINTS
    print("anchor  direct /v1/txn load: %d instances+checks in %d txns: %.2f s (%.0f instances/s)" % (n, batches, secs, n / secs))
    alat = anchor_latency(abase, CHANGES)
    print("anchor  check flip -> health/service: p50 %.1f ms, p99 %.1f ms (n=%d)" % (pct(alat, 50) * 1e3, pct(alat, 99) * 1e3, len(alat)))
    areg.terminate(); areg.wait()

    reg, base = registry()
    kc = os.path.join(TMP, "kubeconfig")
    t_fake = time.time()
    spawn("fake", [os.path.join(BIN, "fake-apiserver"), "--kubeconfig", kc, "--preload-services", str(SERVICES),
                   "--preload-endpoints", str(ENDPOINTS)])
    while not os.path.exists(kc):
        time.sleep(0.05)
    fake = [l.split("server: ")[1] for l in open(kc) if "server: " in l][0].strip()
    print("fake API server preloaded in %.1f s" % (time.time() - t_fake))
    listen = "127.0.0.1:%d" % free_port()
    t0 = time.time()
    sync = spawn("k8s-sync", [NEW, "-http-addr", base[len("http://"):], "-kubeconfig", kc,
                              "-allow-k8s-namespace=*", "-listen", listen, "-log-level", "warn"])
    while True:
        try:
            if http("GET", "http://%s/readyz" % listen, timeout=5)[0] == 200:
                break
        except Exception:
            pass
        if sync.poll() is not None:
            sys.exit("k8s-sync exited")
        time.sleep(0.05)
    first = time.time() - t0
    _, _, b = http("GET", base + "/v1/catalog/node-services/k8s-sync")
    count = len(json.loads(b)["Services"])
    metrics = http("GET", "http://%s/metrics" % listen)[2].decode()
    m = {l.split()[0]: l.split()[1] for l in metrics.splitlines() if l.startswith("k8s_sync_registry")}
    print("k8s-sync first full sync: %.2f s for %d instances (%.0f instances/s); writes %s in %s txns"
          % (first, count, count / first, m.get("k8s_sync_registry_writes_total"), m.get("k8s_sync_registry_txns_total")))
    assert count == n, "catalog holds %d instances, want %d" % (count, n)

    c0, _ = cpu_rss(sync.pid); time.sleep(30); c1, rss = cpu_rss(sync.pid)
    print("k8s-sync steady state (30 s, no changes): CPU %.2f%% of a core, RSS %.0f MiB" % ((c1 - c0) / 30 * 100, rss))

    if not OLD:
        lat = changes(base, fake, CHANGES, 0)
        report("k8s-sync", lat, sync)
        return
    # Alternate the two builds on the same registry and fake: each starts on an already
    # synced catalog, passes /readyz (one full pass), then takes its share of the changes.
    sync.terminate(); sync.wait()
    per = max(1, CHANGES // ROUNDS)
    lats = {"old": [], "new": []}
    cpu = {"old": [], "new": []}
    k = 0
    for r in range(ROUNDS):
        for label, exe in (("old", OLD), ("new", NEW)):
            p = spawn("k8s-sync-%s-%d" % (label, r), [exe, "-http-addr", base[len("http://"):], "-kubeconfig", kc,
                      "-allow-k8s-namespace=*", "-listen", listen, "-log-level", "warn"])
            t0 = time.time()
            wait_ready(listen, p)
            ready = time.time() - t0
            c0, _ = cpu_rss(p.pid); time.sleep(10); c1, rss = cpu_rss(p.pid)
            cpu[label].append((c1 - c0) / 10 * 100)
            lat = changes(base, fake, per, k)
            k += per
            lats[label] += lat
            print("round %d %s: ready after %.1f s; idle CPU %.2f%%, RSS %.0f MiB; change p50 %.1f ms, p99 %.1f ms (n=%d)"
                  % (r, label, ready, cpu[label][-1], rss, pct(lat, 50) * 1e3, pct(lat, 99) * 1e3, len(lat)))
            p.terminate(); p.wait()
    for label in ("old", "new"):
        lat = lats[label]
        print("%s k8s-sync endpoint change -> health/service: p50 %.1f ms, p99 %.1f ms, max %.1f ms (n=%d); idle CPU %s"
              % (label, pct(lat, 50) * 1e3, pct(lat, 99) * 1e3, max(lat) * 1e3, len(lat),
                 ", ".join("%.2f%%" % c for c in cpu[label])))


def wait_ready(listen, p):
    while True:
        try:
            if http("GET", "http://%s/readyz" % listen, timeout=5)[0] == 200:
                return
        except Exception:
            pass
        if p.poll() is not None:
            sys.exit("k8s-sync exited")
        time.sleep(0.05)


def changes(base, fake, n, offset):
    """n endpoint readiness flips in the fake, each timed until health/service shows it."""
    lat = []
    for k in range(offset, offset + n):
        i = (k * 37) % SERVICES
        path = "/v1/health/service/svc-%d?passing" % i
        _, h, b = http("GET", base + path)
        idx, before = int(h["X-Consul-Index"]), len(json.loads(b))
        st, _, body = http("GET", "%s/apis/discovery.k8s.io/v1/namespaces/default/endpointslices/svc-%d-1" % (fake, i))
        es = json.loads(body)
        ready = before != ENDPOINTS
        es["endpoints"][0]["conditions"]["ready"] = ready
        t1 = time.time()
        http("PUT", "%s/apis/discovery.k8s.io/v1/namespaces/default/endpointslices/svc-%d-1" % (fake, i), es)
        want = before + 1 if ready else before - 1
        blocking_until(base, path, idx, lambda v: len(v) == want)
        lat.append(time.time() - t1)
        time.sleep(PACE)
    return lat


def report(label, lat, sync):
    print("%s endpoint change -> health/service: p50 %.1f ms, p99 %.1f ms, max %.1f ms (n=%d)"
          % (label, pct(lat, 50) * 1e3, pct(lat, 99) * 1e3, max(lat) * 1e3, len(lat)))
    c2, rss2 = cpu_rss(sync.pid)
    print("%s after the changes: RSS %.0f MiB, CPU %.1f s total" % (label, rss2, c2))


try:
    main()
finally:
    for p in procs:
        if p.poll() is None:
            p.terminate()
            try:
                p.wait(10)
            except Exception:
                p.kill()
