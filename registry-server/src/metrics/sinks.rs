//! The push sinks of `telemetry { }`: `statsd_address` (the statsd line format) and
//! `dogstatsd_addr` (DogStatsD's, with tags), over UDP.
//!
//! Once a second the recorder's current values (after `metrics_prefix` and `prefix_filter`,
//! as the other outputs) are turned into statsd lines: a gauge as its value (`|g`), a counter
//! as its increase since the last flush (`|c`), a timer as the mean of the samples recorded
//! since the last flush with a sample rate of 1/count (`|ms|@0.25` for four samples), so a
//! statsd server counts every sample and sums them exactly. Nothing is sent for a counter or
//! timer that did not move.
//!
//! Names are Consul's dotted ones. For statsd, labels are appended to the name as go-metrics
//! does (`consul.api.http.GET.v1_kv_`) and, unless `disable_hostname`, gauges carry the host
//! name after the prefix (`consul.<host>.runtime.alloc_bytes`); DogStatsD gets the labels,
//! `dogstatsd_tags` and (unless `disable_hostname`) `host:<host>` as tags. Datagrams hold
//! whole lines and stay under 1,432 bytes, as go-metrics' statsd sink sends them.

use super::{dotted, parse_line};
use std::collections::{BTreeMap, HashMap};
use std::time::Duration;

/// Largest datagram sent (go-metrics' statsd sink uses the same bound).
const MAX_PACKET: usize = 1432;

/// Where and how metrics are pushed.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PushSinks {
    /// `statsd_address`.
    pub statsd: Option<String>,
    /// `dogstatsd_addr`.
    pub dogstatsd: Option<String>,
    /// `dogstatsd_tags`.
    pub dogstatsd_tags: Vec<String>,
    /// The host name, or None with `disable_hostname`.
    pub hostname: Option<String>,
}

/// One metric of a flush.
#[derive(Debug, Clone, PartialEq)]
struct Point {
    name: String,
    labels: Vec<(String, String)>,
    value: f64,
    kind: &'static str,
    rate: Option<f64>,
}

/// A series: dotted name and labels.
type SeriesKey = (String, Vec<(String, String)>);

/// Counter and timer totals at the last flush, to send increases.
#[derive(Debug, Default)]
struct Last {
    counters: HashMap<SeriesKey, f64>,
    /// Sum and count of each timer.
    timers: HashMap<SeriesKey, (f64, f64)>,
}

impl Last {
    /// The points to send for the Prometheus text `text`.
    fn points(&mut self, text: &str) -> Vec<Point> {
        let mut kinds: HashMap<&str, &str> = HashMap::new();
        let mut timers: BTreeMap<SeriesKey, (f64, f64)> = BTreeMap::new();
        let mut out = Vec::new();
        for line in text.lines() {
            if let Some(rest) = line.strip_prefix("# TYPE ") {
                let mut it = rest.split_whitespace();
                if let (Some(n), Some(k)) = (it.next(), it.next()) {
                    kinds.insert(n, k);
                }
                continue;
            }
            if line.starts_with('#') {
                continue;
            }
            let Some((name, labels, v)) = parse_line(line) else {
                continue;
            };
            let (base, part) = match (name.strip_suffix("_sum"), name.strip_suffix("_count")) {
                (Some(b), _) => (b, 1),
                (_, Some(b)) => (b, 2),
                _ => (name, 0),
            };
            match kinds.get(base).copied() {
                Some("summary") | Some("histogram") => {
                    if part == 0 {
                        continue;
                    }
                    let key = (dotted(base), labels.into_iter().collect());
                    let t = timers.entry(key).or_default();
                    if part == 1 {
                        t.0 = v;
                    } else {
                        t.1 = v;
                    }
                }
                Some("counter") => {
                    let key = (dotted(base), labels.into_iter().collect::<Vec<_>>());
                    let before = self.counters.insert(key.clone(), v).unwrap_or(0.0);
                    if v > before {
                        out.push(Point {
                            name: key.0,
                            labels: key.1,
                            value: v - before,
                            kind: "c",
                            rate: None,
                        });
                    }
                }
                _ => out.push(Point {
                    name: dotted(base),
                    labels: labels.into_iter().collect(),
                    value: v,
                    kind: "g",
                    rate: None,
                }),
            }
        }
        for (key, (sum, count)) in timers {
            let (sum0, count0) = self
                .timers
                .insert(key.clone(), (sum, count))
                .unwrap_or_default();
            let n = count - count0;
            if n >= 1.0 {
                out.push(Point {
                    name: key.0,
                    labels: key.1,
                    value: (sum - sum0) / n,
                    kind: "ms",
                    rate: (n > 1.0).then(|| 1.0 / n),
                });
            }
        }
        out
    }
}

fn number(v: f64) -> String {
    if v.fract() == 0.0 && v.abs() < 1e15 {
        format!("{}", v as i64)
    } else {
        format!("{v:.6}")
    }
}

/// Statsd: labels flattened into the name; the host after the prefix of gauges.
fn statsd_line(p: &Point, hostname: Option<&str>) -> String {
    let mut name = p.name.clone();
    if let (Some(host), "g") = (hostname, p.kind) {
        name = match name.split_once('.') {
            Some((prefix, rest)) => format!("{prefix}.{host}.{rest}"),
            None => format!("{host}.{name}"),
        };
    }
    for (_, v) in &p.labels {
        name.push('.');
        name.push_str(v);
    }
    let mut line = format!("{}:{}|{}", clean(&name), number(p.value), p.kind);
    if let Some(r) = p.rate {
        line.push_str(&format!("|@{r:.6}"));
    }
    line
}

/// DogStatsD: labels, the configured tags and the host as tags.
fn dogstatsd_line(p: &Point, tags: &[String], hostname: Option<&str>) -> String {
    let mut line = format!("{}:{}|{}", clean(&p.name), number(p.value), p.kind);
    if let Some(r) = p.rate {
        line.push_str(&format!("|@{r:.6}"));
    }
    let mut all: Vec<String> = p
        .labels
        .iter()
        .map(|(k, v)| format!("{k}:{}", clean(v)))
        .collect();
    all.extend(tags.iter().cloned());
    if let Some(h) = hostname {
        all.push(format!("host:{h}"));
    }
    if !all.is_empty() {
        line.push_str("|#");
        line.push_str(&all.join(","));
    }
    line
}

/// Characters statsd reserves (`:`, `|`, `@`, `#`, `,`, whitespace) become `_`.
fn clean(s: &str) -> String {
    s.chars()
        .map(|c| match c {
            ':' | '|' | '@' | '#' | ',' => '_',
            c if c.is_whitespace() => '_',
            c => c,
        })
        .collect()
}

/// Lines packed into datagrams of at most [`MAX_PACKET`] bytes.
fn packets(lines: &[String]) -> Vec<Vec<u8>> {
    let mut out: Vec<Vec<u8>> = Vec::new();
    let mut cur: Vec<u8> = Vec::new();
    for l in lines {
        if !cur.is_empty() && cur.len() + 1 + l.len() > MAX_PACKET {
            out.push(std::mem::take(&mut cur));
        }
        if !cur.is_empty() {
            cur.push(b'\n');
        }
        cur.extend_from_slice(l.as_bytes());
    }
    if !cur.is_empty() {
        out.push(cur);
    }
    out
}

/// Starts pushing to the configured sinks once a second (nothing without any). Addresses
/// are resolved on each flush, so a sink that starts later is picked up.
pub fn spawn(sinks: PushSinks) {
    if sinks.statsd.is_none() && sinks.dogstatsd.is_none() {
        return;
    }
    tokio::spawn(async move {
        let Ok(sock) = tokio::net::UdpSocket::bind("0.0.0.0:0").await else {
            tracing::warn!("metrics sinks: cannot open a UDP socket");
            return;
        };
        let mut last = Last::default();
        let mut tick = tokio::time::interval(Duration::from_secs(1));
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
        loop {
            tick.tick().await;
            if !super::enabled() {
                continue;
            }
            let points = last.points(&super::render());
            if points.is_empty() {
                continue;
            }
            let host = sinks.hostname.as_deref();
            if let Some(addr) = &sinks.statsd {
                let lines: Vec<String> = points.iter().map(|p| statsd_line(p, host)).collect();
                send(&sock, addr, &lines).await;
            }
            if let Some(addr) = &sinks.dogstatsd {
                let lines: Vec<String> = points
                    .iter()
                    .map(|p| dogstatsd_line(p, &sinks.dogstatsd_tags, host))
                    .collect();
                send(&sock, addr, &lines).await;
            }
        }
    });
}

async fn send(sock: &tokio::net::UdpSocket, addr: &str, lines: &[String]) {
    let target = match tokio::net::lookup_host(addr).await {
        Ok(mut it) => it.next(),
        Err(_) => None,
    };
    let Some(target) = target else {
        tracing::debug!(%addr, "metrics sink address does not resolve");
        return;
    };
    for p in packets(lines) {
        if let Err(e) = sock.send_to(&p, target).await {
            tracing::debug!(%addr, error = %e, "metrics sink send failed");
            return;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flushes_send_gauges_counter_increases_and_timer_means() {
        let text = "# TYPE consul_raft_apply counter\nconsul_raft_apply 4\n\
            # TYPE consul_runtime_alloc_bytes gauge\nconsul_runtime_alloc_bytes 1024\n\
            # TYPE consul_api_http summary\n\
            consul_api_http{method=\"GET\",path=\"v1_kv_\",quantile=\"0.5\"} 1\n\
            consul_api_http_sum{method=\"GET\",path=\"v1_kv_\"} 6\n\
            consul_api_http_count{method=\"GET\",path=\"v1_kv_\"} 4\n";
        let mut last = Last::default();
        let pts = last.points(text);
        let lines: Vec<String> = pts.iter().map(|p| statsd_line(p, Some("h1"))).collect();
        assert_eq!(
            lines,
            vec![
                "consul.raft.apply:4|c",
                "consul.h1.runtime.alloc_bytes:1024|g",
                "consul.api.http.GET.v1_kv_:1.500000|ms|@0.250000",
            ]
        );
        let dog: Vec<String> = pts
            .iter()
            .map(|p| dogstatsd_line(p, &["env:ci".into()], None))
            .collect();
        assert_eq!(
            dog[2],
            "consul.api.http:1.500000|ms|@0.250000|#method:GET,path:v1_kv_,env:ci"
        );
        // Nothing moved: only the gauge again.
        let again = last.points(text);
        assert_eq!(again.len(), 1);
        assert_eq!(again[0].kind, "g");
        let more = text.replace("consul_raft_apply 4", "consul_raft_apply 7");
        let pts = last.points(&more);
        assert_eq!(statsd_line(&pts[0], None), "consul.raft.apply:3|c");
    }

    #[test]
    fn datagrams_hold_whole_lines() {
        let lines: Vec<String> = (0..100).map(|i| format!("consul.x.y{i}:1|c")).collect();
        let ps = packets(&lines);
        assert!(ps.len() > 1);
        assert!(ps.iter().all(|p| p.len() <= MAX_PACKET));
        let joined: Vec<String> = ps
            .iter()
            .flat_map(|p| {
                String::from_utf8(p.clone())
                    .unwrap()
                    .lines()
                    .map(str::to_string)
                    .collect::<Vec<_>>()
            })
            .collect();
        assert_eq!(joined, lines);
    }
}
