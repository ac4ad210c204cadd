//! Prepared query templates: checking a template when it is stored and rendering it for the
//! name a query was executed under.
//!
//! Every string inside `Service` may hold interpolations in Consul's HIL syntax:
//! `${name.full}` (the executed name), `${name.prefix}` (the template's name),
//! `${name.suffix}` (the rest), `${agent.segment}` and `${match(N)}` (group N of the
//! template's `Regexp` matched against the executed name; empty when it did not match).
//! `$${` is a literal `${`.

use super::{PreparedQuery, ServiceQuery, TEMPLATE_NAME_PREFIX_MATCH};
use regex::Regex;

/// One piece of a parsed string.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Part {
    Text(String),
    Var(Var),
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Var {
    Full,
    Prefix,
    Suffix,
    Segment,
    Match(usize),
}

fn parse_expr(expr: &str) -> Result<Var, String> {
    let e = expr.trim();
    Ok(match e {
        "name.full" => Var::Full,
        "name.prefix" => Var::Prefix,
        "name.suffix" => Var::Suffix,
        "agent.segment" => Var::Segment,
        _ => {
            let Some(arg) = e.strip_prefix("match(").and_then(|r| r.strip_suffix(')')) else {
                return Err(format!("unknown variable accessed: {e}"));
            };
            let n = arg
                .trim()
                .parse::<usize>()
                .map_err(|_| format!("match: argument must be an integer, got {}", arg.trim()))?;
            Var::Match(n)
        }
    })
}

fn parse(s: &str) -> Result<Vec<Part>, String> {
    let mut parts = Vec::new();
    let mut text = String::new();
    let mut rest = s;
    while let Some(i) = rest.find('$') {
        text.push_str(&rest[..i]);
        let after = &rest[i..];
        if let Some(r) = after.strip_prefix("$${") {
            text.push_str("${");
            rest = r;
        } else if let Some(r) = after.strip_prefix("${") {
            let end = r
                .find('}')
                .ok_or_else(|| "expected \"}\" to close the interpolation".to_string())?;
            if !text.is_empty() {
                parts.push(Part::Text(std::mem::take(&mut text)));
            }
            parts.push(Part::Var(parse_expr(&r[..end])?));
            rest = &r[end + 1..];
        } else {
            text.push('$');
            rest = &after[1..];
        }
    }
    text.push_str(rest);
    if !text.is_empty() {
        parts.push(Part::Text(text));
    }
    Ok(parts)
}

/// Calls `f` on every string of a `Service` block with its path (as Consul names it).
fn walk(
    svc: &mut ServiceQuery,
    f: &mut dyn FnMut(&str, &mut String) -> Result<(), String>,
) -> Result<(), String> {
    f(".Service", &mut svc.service)?;
    f(".Near", &mut svc.near)?;
    f(".Peer", &mut svc.peer)?;
    f(".SamenessGroup", &mut svc.sameness_group)?;
    for (i, s) in svc.tags.iter_mut().flatten().enumerate() {
        f(&format!(".Tags[{i}]"), s)?;
    }
    for (i, s) in svc.ignore_check_ids.iter_mut().flatten().enumerate() {
        f(&format!(".IgnoreCheckIDs[{i}]"), s)?;
    }
    for (i, s) in svc.failover.datacenters.iter_mut().flatten().enumerate() {
        f(&format!(".Failover.Datacenters[{i}]"), s)?;
    }
    for (i, t) in svc.failover.targets.iter_mut().flatten().enumerate() {
        f(
            &format!(".Failover.Targets[{i}].Datacenter"),
            &mut t.datacenter,
        )?;
        f(&format!(".Failover.Targets[{i}].Peer"), &mut t.peer)?;
    }
    for (k, v) in svc.node_meta.iter_mut().flatten() {
        f(&format!(".NodeMeta[{k}]"), v)?;
    }
    for (k, v) in svc.service_meta.iter_mut().flatten() {
        f(&format!(".ServiceMeta[{k}]"), v)?;
    }
    Ok(())
}

/// Checks a template as Consul does when it is stored: its type, its regexp, every
/// interpolation, and a trial render with its own name.
pub fn compile(q: &PreparedQuery) -> Result<(), String> {
    if q.template.kind != TEMPLATE_NAME_PREFIX_MATCH {
        return Err(format!("Bad Template.Type '{}'", q.template.kind));
    }
    if !q.template.regexp.is_empty() {
        Regex::new(&q.template.regexp).map_err(|e| format!("Bad Regexp: {e}"))?;
    }
    let mut svc = q.service.clone();
    walk(&mut svc, &mut |path, s| {
        parse(s)
            .map(|_| ())
            .map_err(|e| format!("Bad format '{s}' in Service{path}: {e}"))
    })?;
    render(q, &q.name, "").map(|_| ())
}

/// Renders template `q` for the executed `name` (`segment`: the agent's network segment).
/// The result is the query with its `Service` strings interpolated.
pub fn render(q: &PreparedQuery, name: &str, segment: &str) -> Result<PreparedQuery, String> {
    let groups: Vec<String> = if q.template.regexp.is_empty() {
        Vec::new()
    } else {
        let re = Regex::new(&q.template.regexp).map_err(|e| format!("Bad Regexp: {e}"))?;
        re.captures(name)
            .map(|c| {
                c.iter()
                    .map(|m| m.map_or(String::new(), |m| m.as_str().to_string()))
                    .collect()
            })
            .unwrap_or_default()
    };
    let suffix = name.strip_prefix(q.name.as_str()).unwrap_or(name);
    let mut out = q.clone();
    walk(&mut out.service, &mut |path, s| {
        let parts = parse(s).map_err(|e| format!("Bad format '{s}' in Service{path}: {e}"))?;
        let mut r = String::new();
        for p in parts {
            match p {
                Part::Text(t) => r.push_str(&t),
                Part::Var(Var::Full) => r.push_str(name),
                Part::Var(Var::Prefix) => r.push_str(&q.name),
                Part::Var(Var::Suffix) => r.push_str(suffix),
                Part::Var(Var::Segment) => r.push_str(segment),
                Part::Var(Var::Match(i)) => r.push_str(groups.get(i).map_or("", String::as_str)),
            }
        }
        *s = r;
        Ok(())
    })?;
    if q.template.remove_empty_tags {
        if let Some(tags) = &mut out.service.tags {
            tags.retain(|t| !t.is_empty());
        }
    }
    Ok(out)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn template(name: &str, regexp: &str, service: &str, tags: &[&str]) -> PreparedQuery {
        let mut q = PreparedQuery {
            name: name.into(),
            ..Default::default()
        };
        q.template.kind = TEMPLATE_NAME_PREFIX_MATCH.into();
        q.template.regexp = regexp.into();
        q.service.service = service.into();
        q.service.tags = Some(tags.iter().map(|t| t.to_string()).collect());
        q
    }

    #[test]
    fn renders_names_and_matches() {
        let q = template(
            "geo-db-",
            r"^geo-db-(.*?)-([^\-]+?)$",
            "mysql-${match(1)}",
            &["${match(2)}", "${name.suffix}", "x-${name.full}", "$${lit}"],
        );
        compile(&q).unwrap();
        let r = render(&q, "geo-db-customer-primary", "").unwrap();
        assert_eq!(r.service.service, "mysql-customer");
        assert_eq!(
            r.service.tags.unwrap(),
            vec![
                "primary",
                "customer-primary",
                "x-geo-db-customer-primary",
                "${lit}"
            ]
        );
        // No match: the groups are empty.
        let r = render(&q, "geo-db-x", "").unwrap();
        assert_eq!(r.service.service, "mysql-");
    }

    #[test]
    fn removes_empty_tags_and_rejects_bad_templates() {
        let mut q = template("", "^(a)?(b)?", "${name.full}", &["${match(2)}", "t"]);
        q.template.remove_empty_tags = true;
        let r = render(&q, "acc", "").unwrap();
        assert_eq!(r.service.tags.unwrap(), vec!["t"]);
        let mut bad = q.clone();
        bad.template.kind = "nope".into();
        assert_eq!(compile(&bad).unwrap_err(), "Bad Template.Type 'nope'");
        let mut bad = q.clone();
        bad.template.regexp = "(".into();
        assert!(compile(&bad).unwrap_err().starts_with("Bad Regexp: "));
        let mut bad = q;
        bad.service.service = "${nope}".into();
        assert!(compile(&bad)
            .unwrap_err()
            .starts_with("Bad format '${nope}' in Service.Service"));
    }
}
