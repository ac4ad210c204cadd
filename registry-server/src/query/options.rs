//! Parsing of Consul's common query parameters.
//!
//! Presence flags (`?stale`, `?consistent`, `?recurse`, ...) count whether or not they carry a
//! value; repeated parameters (`?tag=a&tag=b`) are kept in order.

use crate::ServerError;
use std::time::Duration;

/// Default blocking wait (Consul: 5 minutes).
pub const DEFAULT_WAIT: Duration = Duration::from_secs(300);
/// Longest blocking wait (Consul: 10 minutes).
pub const MAX_WAIT: Duration = Duration::from_secs(600);

/// Read consistency asked for by a query.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Consistency {
    /// Served by the leader (a follower forwards).
    #[default]
    Default,
    /// Served by any server from its local state.
    Stale,
    /// The leader confirms its leadership with a quorum first.
    Consistent,
}

/// The raw query string, decoded into pairs, with typed accessors for the common options.
#[derive(Debug, Clone, Default)]
pub struct QueryOptions {
    pairs: Vec<(String, String)>,
    /// `?index`: block until the result's index exceeds this (0: do not block).
    pub index: u64,
    /// `?wait`: how long to block at most.
    pub wait: Duration,
    /// Consistency mode.
    pub consistency: Consistency,
    /// `?max_stale`: the most a stale answer may lag (None: unlimited).
    pub max_stale: Option<Duration>,
    /// `?dc`.
    pub dc: Option<String>,
    /// `?filter`.
    pub filter: Option<String>,
    /// `?pretty`.
    pub pretty: bool,
}

impl QueryOptions {
    /// Parses a raw query string (without the `?`).
    pub fn parse(raw: Option<&str>) -> Result<Self, ServerError> {
        let pairs: Vec<(String, String)> = raw
            .map(|q| {
                form_urlencoded::parse(q.as_bytes())
                    .map(|(k, v)| (k.into_owned(), v.into_owned()))
                    .collect()
            })
            .unwrap_or_default();
        let mut o = QueryOptions {
            pairs,
            wait: DEFAULT_WAIT,
            ..Default::default()
        };
        if let Some(v) = o.get("index") {
            o.index = v
                .parse()
                .map_err(|_| ServerError::BadRequest("Invalid index".into()))?;
        }
        if let Some(v) = o.get("wait") {
            let d =
                parse_wait(v).ok_or_else(|| ServerError::BadRequest("Invalid wait time".into()))?;
            o.wait = d.min(MAX_WAIT);
        }
        let stale = o.has("stale");
        let consistent = o.has("consistent");
        if stale && consistent {
            return Err(ServerError::BadRequest(
                "Cannot specify ?stale with ?consistent, conflicting semantics.".into(),
            ));
        }
        o.consistency = if stale {
            Consistency::Stale
        } else if consistent {
            Consistency::Consistent
        } else {
            Consistency::Default
        };
        if let Some(v) = o.get("max_stale") {
            let d = parse_wait(v)
                .ok_or_else(|| ServerError::BadRequest("Invalid max_stale value".into()))?;
            o.max_stale = Some(d);
            if o.consistency == Consistency::Default {
                o.consistency = Consistency::Stale;
            }
        }
        o.dc = o.get("dc").filter(|s| !s.is_empty()).map(str::to_string);
        o.filter = o
            .get("filter")
            .filter(|s| !s.is_empty())
            .map(str::to_string);
        o.pretty = o.has("pretty");
        Ok(o)
    }

    /// The first value of a parameter.
    pub fn get(&self, key: &str) -> Option<&str> {
        self.pairs
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }

    /// Every value of a repeated parameter, in order.
    pub fn all(&self, key: &str) -> Vec<&str> {
        self.pairs
            .iter()
            .filter(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
            .collect()
    }

    /// Whether a presence flag is on: present with no value, or with a true value.
    pub fn has(&self, key: &str) -> bool {
        match self.get(key) {
            None => false,
            Some("") => true,
            Some(v) => parse_bool(v).unwrap_or(true),
        }
    }

    /// `?passing`-style boolean: present and not false (`=0`/`=false` turn it off).
    pub fn flag(&self, key: &str) -> Result<bool, ServerError> {
        match self.get(key) {
            None => Ok(false),
            Some("") => Ok(true),
            Some(v) => parse_bool(v)
                .ok_or_else(|| ServerError::BadRequest(format!("Invalid value for ?{key}"))),
        }
    }

    /// `?node-meta=k:v` pairs.
    pub fn node_meta(&self) -> Vec<(String, String)> {
        self.all("node-meta")
            .into_iter()
            .map(|kv| match kv.split_once(':') {
                Some((k, v)) => (k.to_string(), v.to_string()),
                None => (kv.to_string(), String::new()),
            })
            .collect()
    }
}

fn parse_bool(v: &str) -> Option<bool> {
    match v {
        "1" | "t" | "T" | "true" | "TRUE" | "True" => Some(true),
        "0" | "f" | "F" | "false" | "FALSE" | "False" => Some(false),
        _ => None,
    }
}

/// Parses a `?wait` value: a Go duration (`10s`, `1.5m`, `60000ms`) or bare seconds.
pub fn parse_wait(v: &str) -> Option<Duration> {
    if let Ok(secs) = v.parse::<u64>() {
        return Some(Duration::from_secs(secs));
    }
    let mut total = 0f64;
    let mut rest = v;
    if rest.is_empty() {
        return None;
    }
    while !rest.is_empty() {
        let num_end = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .unwrap_or(rest.len());
        let n: f64 = rest[..num_end].parse().ok()?;
        rest = &rest[num_end..];
        let unit_end = rest
            .find(|c: char| c.is_ascii_digit() || c == '.')
            .unwrap_or(rest.len());
        let mult = match &rest[..unit_end] {
            "ns" => 1e-9,
            "us" | "µs" | "μs" => 1e-6,
            "ms" => 1e-3,
            "s" => 1.0,
            "m" => 60.0,
            "h" => 3600.0,
            _ => return None,
        };
        rest = &rest[unit_end..];
        total += n * mult;
    }
    if !total.is_finite() || total < 0.0 {
        return None;
    }
    Some(Duration::from_secs_f64(total.min(1e9)))
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn parses_common_options() {
        let o = QueryOptions::parse(Some("index=5&wait=1.5m&stale&tag=a&tag=b&passing")).unwrap();
        assert_eq!(o.index, 5);
        assert_eq!(o.wait, Duration::from_secs(90));
        assert_eq!(o.consistency, Consistency::Stale);
        assert_eq!(o.all("tag"), vec!["a", "b"]);
        assert!(o.flag("passing").unwrap());
        assert!(QueryOptions::parse(Some("stale&consistent")).is_err());
        assert_eq!(
            QueryOptions::parse(Some("wait=60000ms")).unwrap().wait,
            Duration::from_secs(60)
        );
        assert_eq!(QueryOptions::parse(Some("wait=1h")).unwrap().wait, MAX_WAIT);
        assert!(QueryOptions::parse(Some("wait=abc")).is_err());
        assert!(!QueryOptions::parse(Some("passing=false"))
            .unwrap()
            .flag("passing")
            .unwrap());
    }
}
