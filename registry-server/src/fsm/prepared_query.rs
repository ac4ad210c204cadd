//! Prepared queries and coordinates in the state machine: create/replace with Consul's
//! integrity checks (unique names, no name aliasing another query's ID, an existing session,
//! a template that compiles), delete, deletion with the bound session, and coordinate
//! batches.

use crate::state::{WatchKey, WriteTxn};
use registry_proto::coordinate::NodeCoordinate;
use registry_proto::prepared_query::{is_uuid, template, PreparedQuery};
use registry_proto::CommandResponse;

/// Stores `q` (create or replace by ID).
pub(super) fn set(txn: &mut WriteTxn<'_>, q: &PreparedQuery) -> CommandResponse {
    match check(txn, q) {
        Ok(()) => {}
        Err(m) => return CommandResponse::Rejected(m),
    }
    let tables = &txn.db.queries;
    let create_index = tables
        .queries
        .get(&q.id)
        .map_or(txn.index, |e| e.create_index);
    let stored = PreparedQuery {
        create_index,
        modify_index: txn.index,
        ..q.clone()
    };
    let index = txn.index;
    let t = &mut *txn.db.queries;
    t.queries.insert(q.id.clone(), stored);
    t.queries_index = index;
    txn.touch(WatchKey::PreparedQueries);
    CommandResponse::Ok
}

fn check(txn: &WriteTxn<'_>, q: &PreparedQuery) -> Result<(), String> {
    if q.id.is_empty() {
        return Err("Missing query ID".into());
    }
    let t = &txn.db.queries;
    if !q.name.is_empty() {
        if let Some(other) = t.by_name(&q.name) {
            if other.id != q.id {
                return Err(format!("name '{}' aliases an existing query name", q.name));
            }
        }
    } else if q.is_template() {
        let taken = t
            .queries
            .values()
            .any(|o| o.is_template() && o.name.is_empty() && o.id != q.id);
        if taken {
            return Err("a query template with an empty name already exists".into());
        }
    }
    if is_uuid(&q.name) && t.queries.contains_key(&q.name) {
        return Err(format!("name '{}' aliases an existing query ID", q.name));
    }
    if !q.session.is_empty() && !txn.db.sessions.contains_key(&q.session) {
        return Err(format!("invalid session \"{}\"", q.session));
    }
    if q.is_template() {
        template::compile(q).map_err(|e| format!("failed compiling template: {e}"))?;
    }
    Ok(())
}

/// Deletes a query by ID.
pub(super) fn delete(txn: &mut WriteTxn<'_>, id: &str) -> CommandResponse {
    if txn.db.queries.queries.contains_key(id) {
        let index = txn.index;
        let t = &mut *txn.db.queries;
        t.queries.remove(id);
        t.queries_index = index;
        txn.touch(WatchKey::PreparedQueries);
    }
    CommandResponse::Ok
}

/// Deletes the queries bound to session `id` (it was invalidated), as Consul does.
pub(crate) fn delete_for_session(txn: &mut WriteTxn<'_>, id: &str) {
    let bound: Vec<String> = txn
        .db
        .queries
        .queries
        .values()
        .filter(|q| q.session == id)
        .map(|q| q.id.clone())
        .collect();
    for q in bound {
        delete(txn, &q);
    }
}

/// Stores a batch of coordinates; entries for nodes not in the catalog, or with an invalid
/// coordinate, are skipped (Consul drops them too).
pub(super) fn coordinates(txn: &mut WriteTxn<'_>, batch: &[NodeCoordinate]) -> CommandResponse {
    let valid: Vec<&NodeCoordinate> = batch
        .iter()
        .filter(|u| txn.db.nodes.contains_key(&u.node) && u.coord.is_valid())
        .collect();
    if valid.is_empty() {
        return CommandResponse::Ok;
    }
    let index = txn.index;
    let t = &mut *txn.db.queries;
    for u in valid {
        t.coordinates
            .insert((u.node.clone(), u.segment.clone()), u.coord.clone());
    }
    t.coordinates_index = index;
    txn.touch(WatchKey::Coordinates);
    CommandResponse::Ok
}

/// Drops a node's coordinates (it was deregistered).
pub(crate) fn forget_node(txn: &mut WriteTxn<'_>, node: &str) {
    let has = txn.db.queries.coordinates.keys().any(|(n, _)| n == node);
    if has {
        let index = txn.index;
        let t = &mut *txn.db.queries;
        t.coordinates.retain(|(n, _), _| n != node);
        t.coordinates_index = index;
        txn.touch(WatchKey::Coordinates);
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use crate::fsm::apply;
    use crate::state::Store;
    use registry_proto::prepared_query::PreparedQuery;
    use registry_proto::{Command, CommandResponse};

    fn query(id: &str, name: &str) -> PreparedQuery {
        let mut q = PreparedQuery {
            id: id.into(),
            name: name.into(),
            ..Default::default()
        };
        q.service.service = "web".into();
        q
    }

    #[test]
    fn names_are_unique_and_indexes_kept() {
        let store = Store::new();
        let set = |i, q: PreparedQuery| apply(&store, i, &Command::PreparedQuerySet(q));
        assert_eq!(set(2, query("a", "web")), CommandResponse::Ok);
        assert_eq!(
            set(3, query("b", "WEB")),
            CommandResponse::Rejected("name 'WEB' aliases an existing query name".into())
        );
        assert_eq!(set(4, query("a", "web2")), CommandResponse::Ok);
        let q = store.read().queries.queries["a"].clone();
        assert_eq!((q.create_index, q.modify_index), (2, 4));
        let mut s = query("c", "");
        s.session = "nope".into();
        assert!(matches!(set(5, s), CommandResponse::Rejected(m) if m.contains("invalid session")));
        let mut t = query("d", "");
        t.template.kind = "name_prefix_match".into();
        assert_eq!(set(6, t.clone()), CommandResponse::Ok);
        t.id = "e".into();
        assert_eq!(
            set(7, t),
            CommandResponse::Rejected("a query template with an empty name already exists".into())
        );
        apply(&store, 8, &Command::PreparedQueryDelete { id: "a".into() });
        assert!(!store.read().queries.queries.contains_key("a"));
        assert_eq!(store.read().queries.queries_index, 8);
    }
}
