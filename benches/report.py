#!/usr/bin/env python3
"""Helpers for benches/run.sh.

  report.py wrk LABEL URL SERVER_TICKS CLK_TCK SECONDS < wrk-output   -> one JSON line
  report.py table RESULTS.jsonl                                       -> the figures table

The table puts each figure next to its anchor from the same run, with the ratio and the
issue's target. It reports; it never fails on a missed target.
"""
import json
import re
import sys


def wrk(label, url, ticks, hz, dur):
    text = sys.stdin.read()

    def us(s):
        m = re.match(r"([\d.]+)(us|ms|s)$", s)
        return round(float(m.group(1)) * {"us": 1, "ms": 1e3, "s": 1e6}[m.group(2)])

    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", text).group(1))
    lat = dict(re.findall(r"^\s+(50|75|90|99)%\s+(\S+)", text, re.M))
    non2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", text)
    sockerr = re.search(r"Socket errors: (.*)", text)
    ops = rps * float(dur)
    ticks, hz = int(ticks), float(hz)
    out = {
        "mode": "wrk", "label": label, "url": url, "clients": 64, "threads": 2,
        "ops_per_s": round(rps), "p50_us": us(lat["50"]), "p90_us": us(lat["90"]),
        "p99_us": us(lat["99"]), "errors": int(non2xx.group(1)) if non2xx else 0,
        "server_cpu_us_per_op": round(ticks / hz * 1e6 / ops, 1) if ops else None,
    }
    if sockerr:
        out["socket_errors"] = sockerr.group(1)
    print(json.dumps(out))


def fmt(v, unit=""):
    if v is None:
        return "—"
    if isinstance(v, float) and not v.is_integer():
        s = f"{v:,.2f}" if abs(v) < 100 else f"{v:,.0f}"
    else:
        s = f"{int(v):,}"
    return s + unit


def table(path):
    res = {}
    with open(path) as f:
        for line in f:
            line = line.strip()
            if line.startswith("{"):
                r = json.loads(line)
                res[r.get("label", "")] = r

    def get(label, field):
        r = res.get(label)
        return None if r is None else r.get(field)

    # (figure, ours label, anchor label, field, unit, target kind, target value, target text)
    #  kind "ratio>=": ours/anchor >= value; "ratio<=": ours/anchor <= value;
    #  "abs<=": ours <= value; "abs<": ours < value; "abs==": ours == value; None: context only.
    R = [
        ("KV PUT/s, 1 client", "reg.put.1", "etcd.put.1", "ops_per_s", "", None, None, ""),
        ("KV PUT p50, 1 client", "reg.put.1", "etcd.put.1", "p50_us", " µs", "abs<=", 250, "p50 ≤ 250 µs"),
        ("KV PUT p99, 1 client", "reg.put.1", "etcd.put.1", "p99_us", " µs", None, None, ""),
        ("KV PUT/s, 64 clients", "reg.put.64", "etcd.put.64", "ops_per_s", "", "ratio>=", 1.5, "≥ 1.5× etcd"),
        ("KV PUT p50 / p99, 64 clients", "reg.put.64", "etcd.put.64", "p50_us/p99_us", " µs", None, None, ""),
        ("KV PUT/s, 256 clients", "reg.put.256", "etcd.put.256", "ops_per_s", "", "ratio>=", 1.5, "≥ 1.5× etcd"),
        ("KV PUT p50 / p99, 256 clients", "reg.put.256", "etcd.put.256", "p50_us/p99_us", " µs", None, None, ""),
        ("KV PUT/s, 1000 clients / 100 conns", "reg.put.1000", "etcd.put.1000", "ops_per_s", "", "ratio>=", 1.5, "≥ 1.5× etcd (G2)"),
        ("server CPU-µs per PUT, 64 clients", "reg.put.64", "etcd.put.64", "server_cpu_us_per_op", "", "ratio<=", 1.0, "≤ 1.0× etcd (G3 floor)"),
        ("server CPU-µs per PUT, 256 clients", "reg.put.256", "etcd.put.256", "server_cpu_us_per_op", "", "ratio<=", 1.0, "≤ 1.0× etcd (G3 floor)"),
        ("KV GET/s default vs etcd linearizable, 64 cl.", "reg.get.default.64", "etcd.get.lin.64", "ops_per_s", "", "ratio>=", 3.0, "≥ 3× etcd"),
        ("KV GET/s ?consistent vs etcd linearizable", "reg.get.consistent.64", "etcd.get.lin.64", "ops_per_s", "", "ratio>=", 1.5, "≥ 1.5× etcd (G7)"),
        ("KV GET/s ?stale vs etcd serializable", "reg.get.stale.64", "etcd.get.ser.64", "ops_per_s", "", "ratio>=", 3.0, "≥ 3× etcd (G8 floor)"),
        ("server CPU-µs per GET, default vs linearizable", "reg.get.default.64", "etcd.get.lin.64", "server_cpu_us_per_op", "", None, None, ""),
        ("health/service/web (100 inst.) GET/s vs nginx", "reg.health.100", "nginx.health.100", "ops_per_s", "", "ratio>=", 0.6, "≥ 0.6× nginx"),
        ("health/service/web p99 vs nginx (wrk)", "reg.health.100", "nginx.health.100", "p99_us", " µs", "ratio<=", 2.0, "≤ 2× nginx (G9)"),
        ("server CPU-µs per health/service GET", "reg.health.100", "nginx.health.100", "server_cpu_us_per_op", "", None, None, ""),
        ("write → 100 watchers woken, p50", "reg.watch.100", "etcd.watch.100", "p50_us", " µs", "abs<=", 3000, "≤ 3 ms (G11)"),
        ("write → 100 watchers woken, p99", "reg.watch.100", "etcd.watch.100", "p99_us", " µs", "abs<=", 8000, "≤ 8 ms"),
        ("write → all 100 woken, p99 (per write)", "reg.watch.100", "etcd.watch.100", "all_p99_us", " µs", None, None, ""),
        ("write → 1,000 watchers woken, p50", "reg.watch.1000", "etcd.watch.1000", "p50_us", " µs", None, None, ""),
        ("write → 1,000 watchers woken, p99", "reg.watch.1000", "etcd.watch.1000", "p99_us", " µs", "abs<=", 26000, "≤ 26 ms"),
        ("1,000 watchers: deliveries missed (coalesced)", "reg.watch.1000", "etcd.watch.1000", "missed_deliveries", "", None, None, ""),
        ("10,000 parked watchers: wakes per write", "reg.watch.parked", None, "parked_wakes_per_write", "", "abs==", 0, "0"),
        ("memory per instance, RSS delta (100k inst.)", "reg.mem", None, "rss_bytes_per_instance", " B", None, None, ""),
        ("  JSON each instance carries (Service object)", "reg.mem", None, "service_json_bytes", " B", None, None, ""),
        ("  overhead beyond that JSON", "reg.mem", None, "overhead_bytes_per_instance", " B", "abs<", 1024, "< 1 KiB"),
        ("memory per instance, dev agent (in-memory log)", "reg.mem.dev", None, "rss_bytes_per_instance", " B", None, None, ""),
        ("  overhead beyond the JSON, dev agent", "reg.mem.dev", None, "overhead_bytes_per_instance", " B", "abs<", 1024, "< 1 KiB"),
    ]

    head = ("figure", "ours", "anchor", "ratio", "target", "")
    rows = [head]
    for fig, ours_l, anc_l, field, unit, kind, tval, ttext in R:
        if ours_l not in res and (anc_l is None or anc_l not in res):
            continue
        if "/" in field:
            f1, f2 = field.split("/")
            ours = f"{fmt(get(ours_l, f1))} / {fmt(get(ours_l, f2))}{unit}"
            anc = f"{fmt(get(anc_l, f1))} / {fmt(get(anc_l, f2))}{unit}" if anc_l else "—"
            rows.append((fig, ours, anc, "", ttext, ""))
            continue
        o = get(ours_l, field)
        a = get(anc_l, field) if anc_l else None
        ratio = (o / a) if (isinstance(o, (int, float)) and isinstance(a, (int, float)) and a) else None
        verdict = ""
        if kind and o is not None:
            ok = {
                "ratio>=": lambda: ratio is not None and ratio >= tval,
                "ratio<=": lambda: ratio is not None and ratio <= tval,
                "abs<=": lambda: o <= tval,
                "abs<": lambda: o < tval,
                "abs==": lambda: o == tval,
            }[kind]()
            verdict = "met" if ok else "MISSED"
        rows.append((fig, fmt(o, unit), fmt(a, unit) if anc_l else "—",
                     f"{ratio:.2f}×" if ratio is not None else "", ttext, verdict))
    widths = [max(len(str(r[i])) for r in rows) for i in range(len(head))]
    print("| " + " | ".join(str(c).ljust(widths[i]) for i, c in enumerate(rows[0])) + " |")
    print("|" + "|".join("-" * (w + 2) for w in widths) + "|")
    for r in rows[1:]:
        print("| " + " | ".join(str(c).ljust(widths[i]) for i, c in enumerate(r)) + " |")

    print()
    print("raw figures (ops/s, latency µs, CPU-µs per op; foreign_cpu_s = CPU used by other processes during the window):")
    cols = ["ops_per_s", "p50_us", "p99_us", "p999_us", "errors", "server_cpu_us_per_op",
            "bench_cpu_us_per_op", "foreign_cpu_s"]
    print("| label | " + " | ".join(cols) + " |")
    print("|---|" + "---|" * len(cols))
    for label, r in res.items():
        if r.get("mode") in ("info",):
            continue
        print(f"| {label} | " + " | ".join(fmt(r.get(c)) for c in cols) + " |")
    for ml in ("reg.mem", "reg.mem.dev"):
        mem = res.get(ml)
        if not mem:
            continue
        print()
        print(f"{ml}: " + ", ".join(f"{k}={mem.get(k)}" for k in (
            "instances", "rss_empty_kib", "rss_full_kib", "rss_bytes_per_instance",
            "service_json_bytes", "catalog_entry_json_bytes", "overhead_bytes_per_instance",
            "ops_per_s")))
    body = res.get("health.body")
    if body:
        print(f"health/service/web body: {body.get('body_bytes')} bytes")


if __name__ == "__main__":
    if len(sys.argv) >= 2 and sys.argv[1] == "wrk":
        wrk(*sys.argv[2:7])
    elif len(sys.argv) >= 3 and sys.argv[1] == "table":
        table(sys.argv[2])
    else:
        sys.exit(__doc__)
