//! What a run leaves in `store/<run>/`: `results.json` (top-level `valid`), `history.jsonl`,
//! `faults.json`, and a timeline (`timeline.svg`, wrapped in `timeline.html`): one lane per
//! worker, one bar per operation coloured by outcome, fault windows shaded, anomalies marked
//! in red. Also the figures: throughput and latency per operation, and for each fault how long
//! no write succeeded.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::Path;

use anyhow::Result;
use serde_json::{json, Value};

use crate::history::{Event, Kind, Op};
use crate::nemesis::FaultEvent;
use crate::workload::Workload;

fn ms(ns: u64) -> f64 {
    (ns as f64 / 1e6 * 10.0).round() / 10.0
}

/// Throughput and latency per operation.
pub fn stats(ops: &[Op], duration_ns: u64) -> Value {
    let mut by_f: BTreeMap<&str, Vec<&Op>> = BTreeMap::new();
    for o in ops {
        by_f.entry(o.f.as_str()).or_default().push(o);
    }
    let secs = (duration_ns as f64 / 1e9).max(1e-9);
    let mut out = serde_json::Map::new();
    for (f, list) in by_f {
        let mut lat: Vec<u64> = list
            .iter()
            .filter(|o| o.outcome == Kind::Ok)
            .filter_map(|o| Some(o.complete? - o.invoke))
            .collect();
        lat.sort_unstable();
        let pct = |p: f64| -> f64 {
            if lat.is_empty() {
                return 0.0;
            }
            let i = ((lat.len() as f64 * p).ceil() as usize).clamp(1, lat.len()) - 1;
            ms(lat[i])
        };
        let count = |k: Kind| list.iter().filter(|o| o.outcome == k).count();
        out.insert(
            f.to_string(),
            json!({
                "ok": count(Kind::Ok), "fail": count(Kind::Fail), "info": count(Kind::Info),
                "ok_per_s": ((count(Kind::Ok) as f64 / secs) * 10.0).round() / 10.0,
                "latency_ms": {"p50": pct(0.5), "p99": pct(0.99), "max": pct(1.0)},
            }),
        );
    }
    Value::Object(out)
}

/// For each fault: time to the first acknowledged write after it started and after it was
/// healed, and the longest stretch without one from its start to 20 s after healing.
pub fn unavailability(ops: &[Op], faults: &[FaultEvent]) -> Value {
    let mut oks: Vec<u64> = ops
        .iter()
        .filter(|o| o.outcome == Kind::Ok && Workload::is_write(&o.f))
        .filter_map(|o| o.complete)
        .collect();
    oks.sort_unstable();
    let mut out = Vec::new();
    for (i, s) in faults
        .iter()
        .enumerate()
        .filter(|(_, f)| f.phase == "start")
    {
        let stop = faults[i + 1..]
            .iter()
            .find(|f| f.phase == "stop")
            .map(|f| f.time);
        let first_after = |t: u64| oks.iter().find(|&&c| c >= t).map(|c| ms(c - t));
        let end = stop.unwrap_or(u64::MAX).saturating_add(20_000_000_000);
        let mut gap = 0;
        let mut prev = s.time;
        for &c in oks.iter().filter(|&&c| c >= s.time && c <= end) {
            gap = gap.max(c - prev);
            prev = c;
        }
        out.push(json!({
            "fault": s.fault, "detail": s.detail, "at_s": ms(s.time) / 1000.0,
            "first_ok_write_after_start_ms": first_after(s.time),
            "first_ok_write_after_heal_ms": stop.and_then(first_after),
            "longest_without_ok_write_ms": ms(gap),
        }));
    }
    Value::Array(out)
}

/// Writes the history, the fault log, the results and the timeline.
pub fn write(
    dir: &Path,
    events: &[Event],
    ops: &[Op],
    faults: &[FaultEvent],
    results: &Value,
    anomalies: &[usize],
    concurrency: u64,
) -> Result<()> {
    let mut h = String::new();
    for e in events {
        h.push_str(&serde_json::to_string(e)?);
        h.push('\n');
    }
    std::fs::write(dir.join("history.jsonl"), h)?;
    std::fs::write(
        dir.join("faults.json"),
        serde_json::to_string_pretty(faults)?,
    )?;
    std::fs::write(
        dir.join("results.json"),
        serde_json::to_string_pretty(results)?,
    )?;
    let svg = timeline(ops, faults, anomalies, concurrency);
    std::fs::write(dir.join("timeline.svg"), &svg)?;
    let html = format!(
        "<!doctype html><meta charset=utf-8><title>jepsen timeline</title>\
         <style>body{{font-family:sans-serif}}</style>\
         <h1>{} / {}: valid = {}</h1>\
         <p>Green ok, orange info (unknown), grey fail; shaded: faults; red: anomalies. \
         Hover a bar for the operation.</p>{svg}<pre>{}</pre>",
        results["workload"].as_str().unwrap_or(""),
        results["nemesis"].as_str().unwrap_or(""),
        results["valid"],
        html_escape(&serde_json::to_string_pretty(results)?)
    );
    std::fs::write(dir.join("timeline.html"), html)?;
    Ok(())
}

fn html_escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

/// The timeline picture.
pub fn timeline(
    ops: &[Op],
    faults: &[FaultEvent],
    anomalies: &[usize],
    concurrency: u64,
) -> String {
    let concurrency = concurrency.max(1);
    let end = ops.iter().map(|o| o.end).max().unwrap_or(1).max(1);
    let lane_of = |p: u64| (p % concurrency) as f64;
    let width = 1400.0;
    let left = 60.0;
    let lane_h = 18.0;
    let height = 30.0 + lane_h * concurrency as f64 + 20.0;
    let x = |t: u64| left + (t as f64 / end as f64) * (width - left - 10.0);
    let mut s = String::new();
    let _ = write!(
        s,
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" font-family="sans-serif" font-size="10">"#
    );
    let mut open: Option<&FaultEvent> = None;
    for f in faults {
        if f.phase == "start" {
            open = Some(f);
        } else if let Some(st) = open.take() {
            let _ = write!(
                s,
                r##"<rect x="{:.1}" y="20" width="{:.1}" height="{:.1}" fill="#bbb" opacity="0.35"><title>{:?}: {}</title></rect><text x="{:.1}" y="14">{:?}</text>"##,
                x(st.time),
                (x(f.time) - x(st.time)).max(1.0),
                lane_h * concurrency as f64,
                st.fault,
                html_escape(&st.detail),
                x(st.time),
                st.fault
            );
        }
    }
    for lane in 0..concurrency {
        let _ = write!(
            s,
            r#"<text x="2" y="{:.1}">worker {lane}</text>"#,
            32.0 + lane_h * lane as f64
        );
    }
    let bad: std::collections::BTreeSet<usize> = anomalies.iter().copied().collect();
    for o in ops {
        let color = if bad.contains(&o.index) {
            "#e00"
        } else {
            match o.outcome {
                Kind::Ok => "#3a3",
                Kind::Info => "#f90",
                _ => "#999",
            }
        };
        let y = 22.0 + lane_h * lane_of(o.process);
        let _ = write!(
            s,
            r#"<rect x="{:.1}" y="{y:.1}" width="{:.1}" height="{:.1}" fill="{color}"><title>#{} p{} n{} {} {} {} -> {:?} {}</title></rect>"#,
            x(o.invoke),
            (x(o.end) - x(o.invoke)).max(0.8),
            lane_h - 4.0,
            o.index,
            o.process,
            o.node,
            o.f,
            o.key.as_deref().unwrap_or(""),
            html_escape(&o.arg.to_string()),
            o.outcome,
            html_escape(&o.result.to_string()),
        );
        if bad.contains(&o.index) {
            let _ = write!(
                s,
                r##"<line x1="{0:.1}" x2="{0:.1}" y1="20" y2="{1:.1}" stroke="#e00" stroke-width="1.5"/>"##,
                x(o.invoke),
                height - 20.0
            );
        }
    }
    let secs = end as f64 / 1e9;
    let mut t = 0.0;
    while t <= secs {
        let xx = x((t * 1e9) as u64);
        let _ = write!(
            s,
            r#"<text x="{xx:.1}" y="{:.1}">{t:.0}s</text>"#,
            height - 4.0
        );
        t += (secs / 10.0).max(1.0).round();
    }
    s.push_str("</svg>");
    s
}
