//! The `telemetry { }` settings that shape what the metrics endpoint shows:
//! `metrics_prefix`, `prefix_filter`, `filter_default` (applied to the rendered text) and
//! `prometheus_retention_time` (the recorder's series expiry).

use super::dotted;
use std::time::Duration;

/// The agent's `telemetry { }` settings that shape the output.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Telemetry {
    /// `prometheus_retention_time`: a series not updated for this long leaves the output
    /// (zero keeps every series).
    pub retention: Duration,
    /// `metrics_prefix`: replaces `consul` at the front of Consul's names.
    pub prefix: String,
    /// `filter_default`: whether a name no `prefix_filter` rule matches is shown.
    pub filter_default: bool,
    /// `prefix_filter`: `+name.prefix` shows, `-name.prefix` hides; the longest match wins.
    pub prefix_filter: Vec<String>,
}

impl Default for Telemetry {
    fn default() -> Self {
        Telemetry {
            retention: Duration::ZERO,
            prefix: "consul".to_string(),
            filter_default: true,
            prefix_filter: Vec::new(),
        }
    }
}

impl Telemetry {
    /// Whether a dotted name (`consul.raft.apply`) is shown: the longest matching rule
    /// decides, else `filter_default`.
    pub fn allows(&self, dotted: &str) -> bool {
        let mut best: Option<(usize, bool)> = None;
        for rule in &self.prefix_filter {
            let (allow, prefix) = match rule.split_at_checked(1) {
                Some(("+", p)) => (true, p),
                Some(("-", p)) => (false, p),
                _ => continue,
            };
            if dotted.starts_with(prefix) && best.is_none_or(|(len, _)| prefix.len() >= len) {
                best = Some((prefix.len(), allow));
            }
        }
        best.map_or(self.filter_default, |(_, allow)| allow)
    }

    /// The exposition text with the prefix applied and filtered families removed.
    pub fn apply(&self, text: &str) -> String {
        if self.prefix == "consul" && self.prefix_filter.is_empty() && self.filter_default {
            return text.to_string();
        }
        let mut out = String::with_capacity(text.len());
        let mut family: Option<String> = None;
        for line in text.lines() {
            let name = match line.strip_prefix("# ") {
                Some(rest) => {
                    let mut words = rest.split_whitespace().skip(1);
                    let name = words.next().unwrap_or_default();
                    if rest.starts_with("TYPE") || rest.starts_with("HELP") {
                        family = Some(name.to_string());
                    }
                    name
                }
                None => line.split(['{', ' ']).next().unwrap_or_default(),
            };
            let base = match &family {
                Some(f) if name.starts_with(f.as_str()) => f.clone(),
                _ => name.to_string(),
            };
            let renamed = self.rename(&base);
            if !self.allows(&dotted(&renamed)) {
                continue;
            }
            if renamed == base {
                out.push_str(line);
            } else {
                out.push_str(&line.replacen(&base, &renamed, 1));
            }
            out.push('\n');
        }
        out
    }

    fn rename(&self, name: &str) -> String {
        match name.strip_prefix("consul_") {
            Some(rest) if self.prefix != "consul" => {
                if self.prefix.is_empty() {
                    rest.to_string()
                } else {
                    format!("{}_{rest}", self.prefix.replace('.', "_"))
                }
            }
            _ => name.to_string(),
        }
    }
}

#[cfg(test)]
mod tests {

    #[test]
    fn telemetry_prefix_and_filters_shape_the_output() {
        let text = "# TYPE consul_raft_apply counter\nconsul_raft_apply 3\n\
                    # TYPE consul_kvs_apply summary\nconsul_kvs_apply{quantile=\"0.5\"} 1\n\
                    consul_kvs_apply_sum 2\nconsul_kvs_apply_count 2\n\
                    # TYPE registry_raft_is_leader gauge\nregistry_raft_is_leader 1\n";
        let t = Telemetry::default();
        assert_eq!(t.apply(text), text);
        let t = Telemetry {
            prefix: "svc".into(),
            prefix_filter: vec![
                "-svc.raft".into(),
                "+svc.raft.apply".into(),
                "-registry".into(),
            ],
            ..Telemetry::default()
        };
        assert_eq!(
            t.apply(text),
            "# TYPE svc_raft_apply counter\nsvc_raft_apply 3\n\
             # TYPE svc_kvs_apply summary\nsvc_kvs_apply{quantile=\"0.5\"} 1\n\
             svc_kvs_apply_sum 2\nsvc_kvs_apply_count 2\n"
        );
        let t = Telemetry {
            filter_default: false,
            prefix_filter: vec!["+consul.kvs".into()],
            ..Telemetry::default()
        };
        assert!(t
            .apply(text)
            .starts_with("# TYPE consul_kvs_apply summary\n"));
        assert!(!t.apply(text).contains("raft"));
    }

    use super::*;
}
