#!/usr/bin/env python3
"""The table (and optionally an SVG plot) of benches/scale.sh's JSON lines.

    python3 benches/scale_report.py RESULTS.jsonl [--svg OUT.svg]

Rows are figures, columns fill stages; the last column is the largest stage against the
first (1 %) stage, the anchor measured in the same run. Consul's published global-scale
figure is printed next to the watch rows. The SVG has one small panel per figure, the
figure against catalog size (instances, or KV keys), drawn with nothing but SVG text.
"""
import json
import sys

CONSUL_WATCH = "Consul CGSB: 172k instances, change at every proxy < 1 s (5 servers)"

# (run, mode, field, name, unit, better) -- better: "low" or "high"
FIGURES = [
    ("catalog", "fill", "instances_per_s", "fill rate (txn, 54 ops)", "inst/s", "high"),
    ("catalog", "watch", "all_p50_us", "change -> all watchers woken, p50", "µs", "low"),
    ("catalog", "watch", "all_p99_us", "change -> all watchers woken, p99", "µs", "low"),
    ("catalog", "watch", "server_cpu_us_per_op", "server CPU per watcher wake-up", "µs", "low"),
    ("catalog", "rss", "leader_rss_kib", "leader RSS", "KiB", "low"),
    ("catalog", "rss", "rss_bytes_per_instance", "leader RSS per instance", "B", "low"),
    ("catalog", "get", "ops_per_s", "GET /v1/catalog/service/web", "req/s", "high"),
    ("catalog", "dns", "qps", "DNS web.service SRV+A", "q/s", "high"),
    ("catalog", "put", "ops_per_s", "KV PUT, 64 clients", "put/s", "high"),
    ("catalog", "snapshot", "save_ms", "snapshot save (GET /v1/snapshot)", "ms", "low"),
    ("catalog", "snapshot", "archive_bytes", "snapshot archive size", "B", "low"),
    ("catalog", "restore", "restore_ms", "restore on a fresh server", "ms", "low"),
    ("catalog", "catchup", "catchup_ms", "new server caught up", "ms", "low"),
    ("catalog", "restart", "restart_ms", "follower restart to current", "ms", "low"),
    ("kv", "fill", "kv_keys_per_s", "fill rate (txn, 64 sets)", "keys/s", "high"),
    ("kv", "watch", "all_p50_us", "PUT -> all key watchers woken, p50", "µs", "low"),
    ("kv", "watch", "all_p99_us", "PUT -> all key watchers woken, p99", "µs", "low"),
    ("kv", "rss", "leader_rss_kib", "leader RSS", "KiB", "low"),
    ("kv", "rss", "rss_bytes_per_key", "leader RSS per key (128 B values)", "B", "low"),
    ("kv", "get", "ops_per_s", "GET /v1/kv/<key>", "req/s", "high"),
    ("kv", "put", "ops_per_s", "KV PUT, 64 clients", "put/s", "high"),
    ("kv", "snapshot", "save_ms", "snapshot save (GET /v1/snapshot)", "ms", "low"),
    ("kv", "snapshot", "archive_bytes", "snapshot archive size", "B", "low"),
    ("kv", "restore", "restore_ms", "restore on a fresh server", "ms", "low"),
    ("kv", "catchup", "catchup_ms", "new server caught up", "ms", "low"),
    ("kv", "restart", "restart_ms", "follower restart to current", "ms", "low"),
]


def load(path):
    rows = {}
    sizes = {}
    for line in open(path):
        line = line.strip()
        if not line.startswith("{"):
            continue
        r = json.loads(line)
        parts = r.get("label", "").split(".")
        if len(parts) != 3:
            continue
        run, pct, mode = parts[0], float(parts[1]), parts[2]
        rows.setdefault((run, pct, mode), []).append(r)
        if mode == "rss":
            sizes[(run, pct)] = r.get("instances") if run == "catalog" else r.get("kv_keys")
    return {k: median_row(v) for k, v in rows.items()}, sizes


def median_row(rs):
    """One row for a figure measured once or repeated (BENCH_REPEAT): each numeric field is
    the median of the repetitions, so one disturbed round does not make the figure."""
    if len(rs) == 1:
        return rs[0]
    out = dict(rs[-1])
    for k, v in rs[-1].items():
        vals = sorted(r[k] for r in rs if isinstance(r.get(k), (int, float)) and not isinstance(r.get(k), bool))
        if isinstance(v, (int, float)) and not isinstance(v, bool) and vals:
            out[k] = vals[len(vals) // 2]
    out["repeats"] = len(rs)
    return out


def fmt(v):
    if v is None:
        return "—"
    if isinstance(v, float) and not v.is_integer():
        return f"{v:,.2f}" if abs(v) < 100 else f"{v:,.0f}"
    return f"{int(v):,}"


def table(rows, sizes):
    out = []
    for run in ("catalog", "kv"):
        pcts = sorted({p for (r, p, _m) in rows if r == run})
        if not pcts:
            continue
        head = ["figure"] + [f"{p:g} % ({fmt(sizes.get((run, p)))})" for p in pcts]
        if len(pcts) > 1:
            head.append(f"{pcts[-1]:g} % / {pcts[0]:g} %")
        lines = []
        for frun, mode, field, name, unit, _better in FIGURES:
            if frun != run:
                continue
            vals = [(rows.get((run, p, mode)) or {}).get(field) for p in pcts]
            if all(v is None for v in vals):
                continue
            row = [f"{name} ({unit})"] + [fmt(v) for v in vals]
            if len(pcts) > 1:
                a, b = vals[0], vals[-1]
                row.append("—" if not a or b is None else f"{b / a:.2f}x")
            lines.append(row)
        w = [max(len(str(r[i])) for r in [head] + lines) for i in range(len(head))]
        what = "instances" if run == "catalog" else "KV keys"
        out.append(f"\n{run} run (columns: % of the fill, and {what} held)")
        out.append(" | ".join(h.ljust(w[i]) for i, h in enumerate(head)))
        out.append("-+-".join("-" * x for x in w))
        out += [" | ".join(str(v).ljust(w[i]) for i, v in enumerate(r)) for r in lines]
        if run == "catalog":
            out.append(f"(anchor for the watch rows: {CONSUL_WATCH}; targets p99 < 1 s, stretch < 100 ms)")
    return "\n".join(out)


def svg(rows, sizes, path):
    panels = []
    for frun, mode, field, name, unit, _better in FIGURES:
        pts = sorted(
            (sizes.get((r, p)) or 0, v.get(field))
            for (r, p, m), v in rows.items()
            if r == frun and m == mode and v.get(field) is not None
        )
        if len(pts) >= 2:
            panels.append((f"{frun}: {name} ({unit})", pts))
    cols, pw, ph = 3, 300, 170
    rws = (len(panels) + cols - 1) // cols
    W, H = cols * pw, rws * ph + 30
    s = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{W}" height="{H}" '
         f'font-family="sans-serif" font-size="10">',
         f'<rect width="{W}" height="{H}" fill="white"/>',
         f'<text x="8" y="18" font-size="13">registry scale benchmark: each figure against '
         f'catalog size (x: instances or KV keys held)</text>']
    for k, (title, pts) in enumerate(panels):
        x0, y0 = (k % cols) * pw + 45, (k // cols) * ph + 60
        w, h = pw - 70, ph - 75
        xmax = max(p[0] for p in pts) or 1
        ymax = max(p[1] for p in pts) or 1
        s.append(f'<text x="{x0 - 35}" y="{y0 - 12}" font-size="10.5">{title}</text>')
        s.append(f'<rect x="{x0}" y="{y0}" width="{w}" height="{h}" fill="none" stroke="#999"/>')
        s.append(f'<text x="{x0 - 3}" y="{y0 + 8}" text-anchor="end">{fmt(ymax)}</text>')
        s.append(f'<text x="{x0 - 3}" y="{y0 + h}" text-anchor="end">0</text>')
        s.append(f'<text x="{x0 + w}" y="{y0 + h + 12}" text-anchor="end">{fmt(xmax)}</text>')
        xy = [(x0 + w * px / xmax, y0 + h - h * py / ymax) for px, py in pts]
        s.append('<polyline fill="none" stroke="#1f6fb4" stroke-width="1.8" points="'
                 + " ".join(f"{a:.1f},{b:.1f}" for a, b in xy) + '"/>')
        s += [f'<circle cx="{a:.1f}" cy="{b:.1f}" r="2.5" fill="#1f6fb4"/>' for a, b in xy]
    s.append("</svg>")
    with open(path, "w") as f:
        f.write("\n".join(s) + "\n")


def main():
    args = sys.argv[1:]
    if not args:
        sys.exit(__doc__)
    rows, sizes = load(args[0])
    print(table(rows, sizes))
    if "--svg" in args:
        svg(rows, sizes, args[args.index("--svg") + 1])
        print(f"plot written to {args[args.index('--svg') + 1]}")


if __name__ == "__main__":
    main()
