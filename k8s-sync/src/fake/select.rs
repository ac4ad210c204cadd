//! Label and field selectors of list and watch requests (`labelSelector`, `fieldSelector`):
//! `k=v`, `k==v`, `k!=v`, `k`, `!k`, `k in (a,b)`, `k notin (a,b)`; fields `metadata.name`
//! and `metadata.namespace` with `=`, `==`, `!=`.

use serde_json::Value;

#[derive(Debug, Clone)]
enum Req {
    Eq(String, String),
    Ne(String, String),
    Exists(String),
    NotExists(String),
    In(String, Vec<String>),
    NotIn(String, Vec<String>),
}

/// A parsed selector; the empty selector matches everything.
#[derive(Debug, Clone, Default)]
pub struct Selector {
    reqs: Vec<Req>,
}

fn split_top(s: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut depth = 0;
    let mut cur = String::new();
    for c in s.chars() {
        match c {
            '(' => depth += 1,
            ')' => depth -= 1,
            ',' if depth == 0 => {
                out.push(std::mem::take(&mut cur));
                continue;
            }
            _ => {}
        }
        cur.push(c);
    }
    out.push(cur);
    out.into_iter()
        .map(|s| s.trim().to_string())
        .filter(|s| !s.is_empty())
        .collect()
}

fn set(s: &str) -> Result<Vec<String>, String> {
    let inner = s
        .trim()
        .strip_prefix('(')
        .and_then(|s| s.strip_suffix(')'))
        .ok_or_else(|| format!("invalid set {s:?}"))?;
    Ok(inner.split(',').map(|v| v.trim().to_string()).collect())
}

impl Selector {
    /// Parses a selector string.
    pub fn parse(s: &str) -> Result<Selector, String> {
        let mut reqs = Vec::new();
        for part in split_top(s) {
            let r = if let Some((k, v)) = part.split_once("!=") {
                Req::Ne(k.trim().into(), v.trim().into())
            } else if let Some((k, v)) = part.split_once("==") {
                Req::Eq(k.trim().into(), v.trim().into())
            } else if let Some((k, v)) = part.split_once('=') {
                Req::Eq(k.trim().into(), v.trim().into())
            } else if let Some((k, v)) = part.split_once(" notin ") {
                Req::NotIn(k.trim().into(), set(v)?)
            } else if let Some((k, v)) = part.split_once(" in ") {
                Req::In(k.trim().into(), set(v)?)
            } else if let Some(k) = part.strip_prefix('!') {
                Req::NotExists(k.trim().into())
            } else if part
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || "-_./".contains(c))
            {
                Req::Exists(part)
            } else {
                return Err(format!("unable to parse requirement: {part:?}"));
            };
            reqs.push(r);
        }
        Ok(Selector { reqs })
    }

    /// Whether `get(key)` satisfies every requirement.
    pub fn matches(&self, get: impl Fn(&str) -> Option<String>) -> bool {
        self.reqs.iter().all(|r| match r {
            Req::Eq(k, v) => get(k).as_deref() == Some(v.as_str()),
            Req::Ne(k, v) => get(k).as_deref() != Some(v.as_str()),
            Req::Exists(k) => get(k).is_some(),
            Req::NotExists(k) => get(k).is_none(),
            Req::In(k, vs) => get(k).is_some_and(|x| vs.contains(&x)),
            Req::NotIn(k, vs) => get(k).is_none_or(|x| !vs.contains(&x)),
        })
    }

    /// Matches an object's labels.
    pub fn matches_labels(&self, obj: &Value) -> bool {
        let labels = obj.pointer("/metadata/labels");
        self.matches(|k| {
            labels
                .and_then(|l| l.get(k))
                .and_then(Value::as_str)
                .map(String::from)
        })
    }

    /// Matches an object's fields (`metadata.name`, `metadata.namespace`).
    pub fn matches_fields(&self, obj: &Value) -> bool {
        self.matches(|k| {
            let ptr = format!("/{}", k.replace('.', "/"));
            obj.pointer(&ptr).and_then(Value::as_str).map(String::from)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn selectors() {
        let o = json!({"metadata": {"name": "a", "labels": {"app": "web", "tier": "fe"}}});
        let t = |s: &str| Selector::parse(s).map(|sel| sel.matches_labels(&o));
        assert_eq!(t(""), Ok(true));
        assert_eq!(t("app=web"), Ok(true));
        assert_eq!(t("app==web,tier=fe"), Ok(true));
        assert_eq!(t("app!=web"), Ok(false));
        assert_eq!(t("app in (db, web)"), Ok(true));
        assert_eq!(t("app notin (web)"), Ok(false));
        assert_eq!(t("!app"), Ok(false));
        assert_eq!(t("missing"), Ok(false));
        assert!(Selector::parse("metadata.name=a")
            .unwrap()
            .matches_fields(&o));
    }
}
