//! Prepared query execution on a server: finding the query for an ID or a name (a template
//! by longest prefix, rendered for that name), selecting the healthy instances it describes,
//! and ordering them (shuffled, then by estimated RTT from a `near` node). Failover to other
//! datacenters is in [`failover`]; the HTTP handlers in `http/query.rs` and the DNS engine
//! both call this.

pub mod failover;
pub mod near;
pub mod remote;

use crate::state::Db;
use rand::seq::SliceRandom;
use registry_proto::model::{status, HealthCheck, Node, NodeService};
use registry_proto::prepared_query::{is_uuid, template, PreparedQuery};

/// Consul's message for a query that does not exist.
pub const NOT_FOUND: &str = "Query not found";

/// One selected instance: its node, the instance, and the checks that apply to it.
pub type Instance<'a> = (&'a Node, &'a NodeService, Vec<&'a HealthCheck>);

/// The query `id_or_name` names: by ID, else by exact name, else the template whose name is
/// the longest prefix of it, rendered for `id_or_name`. `Ok(None)`: no such query.
pub fn resolve(db: &Db, id_or_name: &str, segment: &str) -> Result<Option<PreparedQuery>, String> {
    if id_or_name.is_empty() {
        return Err("Missing query ID".into());
    }
    let t = &db.queries;
    if is_uuid(id_or_name) {
        if let Some(q) = t.queries.get(id_or_name) {
            if q.is_template() {
                return Err(
                    "prepared query templates can only be resolved up by name, not by ID".into(),
                );
            }
            return Ok(Some(q.clone()));
        }
    }
    let prep = |q: &PreparedQuery| {
        if q.is_template() {
            template::render(q, id_or_name, segment).map(Some)
        } else {
            Ok(Some(q.clone()))
        }
    };
    if let Some(q) = t.by_name(id_or_name) {
        return prep(q);
    }
    let best = t
        .queries
        .values()
        .filter(|q| q.is_template() && id_or_name.starts_with(q.name.as_str()))
        .max_by_key(|q| q.name.len());
    match best {
        Some(q) => prep(q),
        None => Ok(None),
    }
}

/// Whether an instance's tags satisfy the query's: every plain tag present, every `!tag`
/// absent, compared without case as Consul's `tagFilter`.
pub(crate) fn tags_match(have: &[String], want: &[String]) -> bool {
    want.iter().all(|w| {
        let (neg, tag) = match w.strip_prefix('!') {
            Some(t) => (true, t),
            None => (false, w.as_str()),
        };
        let has = have.iter().any(|h| h.eq_ignore_ascii_case(tag));
        has != neg
    })
}

/// The instances of the query's service in this datacenter that pass its filters: health
/// (critical always excluded, warning too with `OnlyPassing`, ignoring `IgnoreCheckIDs`),
/// node metadata, service metadata, tags and `Connect`; in catalog order.
pub fn select<'a>(db: &'a Db, q: &PreparedQuery) -> Vec<Instance<'a>> {
    let svc = &q.service;
    let ignore: &[String] = svc.ignore_check_ids.as_deref().unwrap_or(&[]);
    let tags: &[String] = svc.tags.as_deref().unwrap_or(&[]);
    let mut out = Vec::new();
    for (n, s) in db.service_instances(&svc.service) {
        if let Some(meta) = &svc.node_meta {
            if !meta.iter().all(|(k, v)| n.meta.get(k) == Some(v)) {
                continue;
            }
        }
        if let Some(meta) = &svc.service_meta {
            if !meta.iter().all(|(k, v)| s.meta.get(k) == Some(v)) {
                continue;
            }
        }
        if !tags_match(&s.tags, tags) {
            continue;
        }
        if svc.connect.enabled && s.kind != "connect-proxy" {
            continue;
        }
        let checks = db.instance_checks(&n.node, &s.id);
        let healthy = checks.iter().all(|c| {
            ignore.contains(&c.check_id)
                || c.status == status::PASSING
                || (c.status == status::WARNING && !svc.only_passing)
        });
        if healthy {
            out.push((n, s, checks));
        }
    }
    out
}

/// Shuffles `items`, sorts them by estimated RTT from `near` (when that node has a
/// coordinate; nodes without one last), moves `near` itself first, and keeps `limit` (0: all).
pub fn order(db: &Db, items: &mut Vec<Instance<'_>>, near: &str, limit: usize) {
    items.shuffle(&mut rand::thread_rng());
    if !near.is_empty() {
        near::sort(db, near, items, |i| i.0.node.as_str());
        // The source node first, when it is near the top (Consul looks at the first ten).
        if let Some(pos) = items.iter().take(10).position(|i| i.0.node == near) {
            items.swap(0, pos);
        }
    }
    if limit > 0 && items.len() > limit {
        items.truncate(limit);
    }
}

/// The node a `near` value names: `_agent` is `agent`, `_ip` the node whose address is
/// `source_ip` (none: no sorting), anything else itself.
pub fn near_node(db: &Db, near: &str, agent: &str, source_ip: Option<&str>) -> String {
    match near {
        "_agent" => agent.to_string(),
        "_ip" => source_ip
            .and_then(|ip| db.nodes.values().find(|n| n.address == ip))
            .map(|n| n.node.clone())
            .unwrap_or_default(),
        other => other.to_string(),
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn tag_filter_with_exclusions() {
        let have = vec!["Primary".to_string(), "v1".to_string()];
        let w = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        assert!(tags_match(&have, &w(&["primary"])));
        assert!(tags_match(&have, &w(&["v1", "!v2"])));
        assert!(!tags_match(&have, &w(&["!v1"])));
        assert!(!tags_match(&have, &w(&["v2"])));
        assert!(tags_match(&have, &[]));
    }

    #[test]
    fn resolves_by_id_name_and_longest_prefix() {
        let mut db = Db::default();
        let mut add = |id: &str, name: &str, tmpl: bool, svc: &str| {
            let mut q = PreparedQuery {
                id: id.into(),
                name: name.into(),
                ..Default::default()
            };
            if tmpl {
                q.template.kind = "name_prefix_match".into();
            }
            q.service.service = svc.into();
            db.queries.queries.insert(id.into(), q);
        };
        let id = "11111111-2222-3333-4444-555555555555";
        add(id, "plain", false, "web");
        add("t1", "", true, "any-${name.full}");
        add("t2", "geo-", true, "geo-${name.suffix}");
        add("t3", "geo-db-", true, "db-${name.suffix}");
        let r = |db: &Db, n: &str| resolve(db, n, "").unwrap().map(|q| q.service.service);
        assert_eq!(r(&db, id).as_deref(), Some("web"));
        assert_eq!(r(&db, "plain").as_deref(), Some("web"));
        assert_eq!(r(&db, "geo-db-eu").as_deref(), Some("db-eu"));
        assert_eq!(r(&db, "geo-x").as_deref(), Some("geo-x"));
        assert_eq!(r(&db, "other").as_deref(), Some("any-other"));
        db.queries.queries.remove("t1");
        assert_eq!(r(&db, "other"), None);
    }
}
