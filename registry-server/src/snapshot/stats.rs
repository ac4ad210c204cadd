//! What a state holds, table by table, for `registry snapshot inspect`: how many records and
//! how many bytes of the state encoding they take.

use crate::state::Db;
use serde::Serialize;

/// One line of the inspect table.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct TableStat {
    /// Record type, as Consul names its own (`Register`, `KVS`, ...) where one matches.
    #[serde(rename = "Name")]
    pub name: &'static str,
    /// Number of records.
    #[serde(rename = "Count")]
    pub count: usize,
    /// Bytes of the state encoding.
    #[serde(rename = "Sum")]
    pub size: u64,
}

fn size_of<T: Serialize + ?Sized>(value: &T) -> u64 {
    postcard::to_stdvec(value)
        .map(|v| v.len() as u64)
        .unwrap_or(0)
}

/// The records of `db` by type, largest first; `Lookup` is the secondary indexes (derived
/// from the tables, saved with them). Their sizes add up to the encoding's less its header
/// and the lengths postcard writes between tables.
pub fn table_stats(db: &Db) -> Vec<TableStat> {
    let instances = db.services.values().map(|m| m.len()).sum();
    let checks = db.checks.values().map(|m| m.len()).sum();
    let mut out = vec![
        TableStat {
            name: "Node",
            count: db.nodes.len(),
            size: size_of(&db.nodes),
        },
        TableStat {
            name: "Service",
            count: instances,
            size: size_of(&db.services),
        },
        TableStat {
            name: "Check",
            count: checks,
            size: size_of(&db.checks),
        },
        TableStat {
            name: "KVS",
            count: db.kvs.len(),
            size: size_of(&db.kvs),
        },
        TableStat {
            name: "Tombstone",
            count: db.kv_tombstones.len(),
            size: size_of(&db.kv_tombstones),
        },
        TableStat {
            name: "Session",
            count: db.sessions.len(),
            size: size_of(&db.sessions),
        },
        TableStat {
            name: "Index",
            count: 5 + db.service_index.len() + db.node_index.len(),
            size: size_of(&db.table_index) + size_of(&db.service_index) + size_of(&db.node_index),
        },
        TableStat {
            name: "Lookup",
            count: db.services_by_name.len()
                + db.sessions_by_node.len()
                + db.session_checks.len()
                + db.session_locks.len(),
            size: size_of(&db.services_by_name)
                + size_of(&db.sessions_by_node)
                + size_of(&db.session_checks)
                + size_of(&db.session_locks),
        },
    ];
    out.sort_by(|a, b| b.size.cmp(&a.size).then(a.name.cmp(b.name)));
    out
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::state::Store;
    use registry_proto::model::DirEntry;
    use registry_proto::Command;

    #[test]
    fn counts_and_sizes() {
        let store = Store::new();
        for i in 1..=3 {
            crate::fsm::apply(
                &store,
                i,
                &Command::KvSet {
                    entry: DirEntry {
                        key: format!("k{i}"),
                        value: vec![0; 100].into(),
                        ..Default::default()
                    },
                },
            );
        }
        crate::fsm::apply(&store, 4, &Command::KvDelete { key: "k1".into() });
        let db = store.read();
        let stats = table_stats(&db);
        let get = |n: &str| stats.iter().find(|s| s.name == n).unwrap().clone();
        assert_eq!(get("KVS").count, 2);
        assert!(get("KVS").size > 200);
        assert_eq!(get("Tombstone").count, 1);
        assert_eq!(get("Node").count, 0);
        assert_eq!(stats[0].name, "KVS", "largest first: {stats:?}");
        let total: u64 = stats.iter().map(|s| s.size).sum();
        assert!(total <= db.encode().unwrap().len() as u64);
    }
}
