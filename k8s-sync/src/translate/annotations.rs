//! The `consul.hashicorp.com/*` annotations on a Kubernetes Service and how their values are
//! parsed (Go `strconv.ParseBool`, consul-k8s's escaped-comma tag lists, weights).

/// Overrides `-k8s-default-sync` for one Service.
pub const SERVICE_SYNC: &str = "consul.hashicorp.com/service-sync";
/// The whole catalog service name (no prefix, no namespace suffix).
pub const SERVICE_NAME: &str = "consul.hashicorp.com/service-name";
/// A port name or number used as the instance port.
pub const SERVICE_PORT: &str = "consul.hashicorp.com/service-port";
/// Extra tags, comma-separated, `\,` escapes a comma.
pub const SERVICE_TAGS: &str = "consul.hashicorp.com/service-tags";
/// Prefix of `service-meta-<KEY>` annotations.
pub const SERVICE_META_PREFIX: &str = "consul.hashicorp.com/service-meta-";
/// Passing weight (> 1) of LoadBalancer-ingress and external-IP instances.
pub const SERVICE_WEIGHT: &str = "consul.hashicorp.com/service-weight";

/// Go's `strconv.ParseBool`: `1 t T TRUE true True` and `0 f F FALSE false False`.
pub fn parse_go_bool(s: &str) -> Option<bool> {
    match s {
        "1" | "t" | "T" | "TRUE" | "true" | "True" => Some(true),
        "0" | "f" | "F" | "FALSE" | "false" | "False" => Some(false),
        _ => None,
    }
}

/// Splits a tag list on commas; `\,` is a literal comma, empty items are dropped and every
/// item is trimmed.
pub fn parse_tags(raw: &str) -> Vec<String> {
    let mut tags = Vec::new();
    let mut next = String::new();
    for c in raw.chars() {
        if c != ',' {
            next.push(c);
            continue;
        }
        if next.is_empty() {
            continue;
        }
        if next.ends_with('\\') {
            next.pop();
            next.push(',');
            continue;
        }
        tags.push(next.trim().to_string());
        next.clear();
    }
    if !next.is_empty() {
        tags.push(next.trim().to_string());
    }
    tags.retain(|t| !t.is_empty());
    tags
}

/// A `service-weight` value: an integer greater than 1, anything else is ignored.
pub fn parse_weight(raw: &str) -> Option<i32> {
    raw.trim().parse::<i32>().ok().filter(|w| *w > 1)
}

/// Go's `strconv.ParseInt(s, 0, 0)`: decimal, `0x` hex, `0o`/leading-`0` octal, `0b` binary,
/// with an optional sign and `_` separators between digits.
pub fn parse_go_int(s: &str) -> Option<i64> {
    let (neg, body) = match s.strip_prefix('-') {
        Some(rest) => (true, rest),
        None => (false, s.strip_prefix('+').unwrap_or(s)),
    };
    if body.is_empty() {
        return None;
    }
    let lower = body.to_ascii_lowercase();
    let (radix, digits) = if let Some(d) = lower.strip_prefix("0x") {
        (16, d.to_string())
    } else if let Some(d) = lower.strip_prefix("0b") {
        (2, d.to_string())
    } else if let Some(d) = lower.strip_prefix("0o") {
        (8, d.to_string())
    } else if lower.len() > 1 && lower.starts_with('0') {
        (8, lower[1..].to_string())
    } else {
        (10, lower)
    };
    let digits = digits.replace('_', "");
    if digits.is_empty() {
        return None;
    }
    let v = i64::from_str_radix(&digits, radix).ok()?;
    Some(if neg { -v } else { v })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn go_bool() {
        for t in ["1", "t", "T", "TRUE", "true", "True"] {
            assert_eq!(parse_go_bool(t), Some(true), "{t}");
        }
        for f in ["0", "f", "F", "FALSE", "false", "False"] {
            assert_eq!(parse_go_bool(f), Some(false), "{f}");
        }
        for bad in ["yes", "tRuE", "", " true"] {
            assert_eq!(parse_go_bool(bad), None, "{bad}");
        }
    }

    #[test]
    fn tags() {
        assert_eq!(parse_tags("a,b"), vec!["a", "b"]);
        assert_eq!(parse_tags(" a , b "), vec!["a", "b"]);
        assert_eq!(parse_tags("a,,b,"), vec!["a", "b"]);
        assert_eq!(parse_tags(r"a\,b,c"), vec!["a,b", "c"]);
        assert!(parse_tags("").is_empty());
    }

    #[test]
    fn weights_and_ints() {
        assert_eq!(parse_weight("5"), Some(5));
        assert_eq!(parse_weight("1"), None);
        assert_eq!(parse_weight("-3"), None);
        assert_eq!(parse_weight("x"), None);
        assert_eq!(parse_go_int("8080"), Some(8080));
        assert_eq!(parse_go_int("0x1F90"), Some(8080));
        assert_eq!(parse_go_int("017"), Some(15));
        assert_eq!(parse_go_int("http"), None);
        assert_eq!(parse_go_int(""), None);
    }
}
