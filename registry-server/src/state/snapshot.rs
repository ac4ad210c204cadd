//! Snapshot encoding of the whole state: a versioned header, the postcard-encoded tables
//! and a CRC-free length check (the archive layer adds checksums).
//!
//! Versions: `REGSNAP4` (current) adds auth methods and binding rules to the ACL tables,
//! templated policies to tokens and roles, and [`Db::queries`] (prepared queries and
//! coordinates); `REGSNAP3` carries [`Db::config_entries`] and [`Db::acl`]; `REGSNAP2`
//! predates them, `REGSNAP1` also [`Db::autopilot`]; all are still decoded. Postcard is
//! positional, so an older body is the current one without its last fields: decoding appends
//! the encoding of those fields' defaults. A `REGSNAP3` body decodes that way while its ACL
//! tables hold no token or role (whose records grew fields in the middle of the body).
//!
//! Derived indexes ([`Db::addresses`]) are not encoded: decoding rebuilds them.

use super::db::{AclTables, QueryTables};
use super::Db;
use super::Shared;
use crate::ServerError;
use postcard::ser_flavors::Size;
use registry_proto::command::AutopilotConfig;
use registry_proto::config_entry::ConfigEntry;
use std::collections::BTreeMap;

const MAGIC: &[u8; 8] = b"REGSNAP4";
const MAGIC_V3: &[u8; 8] = b"REGSNAP3";
const MAGIC_V2: &[u8; 8] = b"REGSNAP2";
const MAGIC_V1: &[u8; 8] = b"REGSNAP1";

impl Db {
    /// Encodes the whole state.
    ///
    /// The body is measured first, so that the encoding is one allocation of its exact size:
    /// no buffer as large as the state reallocated (and copied) as it doubles, and nothing
    /// of those steps left in the allocator's arena of the thread that encodes, which is not
    /// the one the state grows in (snapshots are encoded on a blocking thread).
    pub fn encode(&self) -> Result<Vec<u8>, ServerError> {
        let snap = |e: postcard::Error| ServerError::Snapshot(e.to_string());
        let len =
            postcard::serialize_with_flavor::<_, _, usize>(self, Size::default()).map_err(snap)?;
        let mut out = Vec::with_capacity(16 + len);
        out.extend_from_slice(MAGIC);
        out.extend_from_slice(&(len as u64).to_le_bytes());
        let out = postcard::to_io(self, out).map_err(snap)?;
        if out.len() != 16 + len {
            return Err(ServerError::Snapshot(
                "state changed size while being encoded".into(),
            ));
        }
        Ok(out)
    }

    /// Decodes a state encoded by [`Db::encode`] (or by a version-1 encoder); rejects
    /// anything truncated or foreign.
    pub fn decode(bytes: &[u8]) -> Result<Db, ServerError> {
        let bad = |m: &str| ServerError::Snapshot(m.to_string());
        if bytes.len() < 16 {
            return Err(bad("not a registry state snapshot"));
        }
        let version = match &bytes[..8] {
            m if m == MAGIC => 4,
            m if m == MAGIC_V3 => 3,
            m if m == MAGIC_V2 => 2,
            m if m == MAGIC_V1 => 1,
            _ => return Err(bad("not a registry state snapshot")),
        };
        let mut len = [0u8; 8];
        len.copy_from_slice(&bytes[8..16]);
        let len = u64::from_le_bytes(len) as usize;
        if bytes.len() - 16 != len {
            return Err(bad("snapshot is truncated or has trailing data"));
        }
        let snap = |e: postcard::Error| ServerError::Snapshot(e.to_string());
        if version < 4 {
            let mut body = bytes[16..].to_vec();
            if version < 2 {
                body.extend(postcard::to_stdvec(&None::<AutopilotConfig>).map_err(snap)?);
            }
            if version < 3 {
                let none = Shared::<BTreeMap<(String, String), ConfigEntry>>::default();
                body.extend(postcard::to_stdvec(&none).map_err(snap)?);
                body.extend(postcard::to_stdvec(&AclTables::default()).map_err(snap)?);
            } else {
                // The ACL tables' trailing auth methods and binding rules, both empty.
                let empty = BTreeMap::<String, ()>::new();
                for _ in 0..2 {
                    body.extend(postcard::to_stdvec(&empty).map_err(snap)?);
                }
            }
            body.extend(postcard::to_stdvec(&QueryTables::default()).map_err(snap)?);
            let mut db: Db = postcard::from_bytes(&body).map_err(snap)?;
            db.rebuild_addresses();
            return Ok(db);
        }
        let mut db: Db = postcard::from_bytes(&bytes[16..]).map_err(snap)?;
        // Derived indexes are not encoded.
        db.rebuild_addresses();
        Ok(db)
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;
    use registry_proto::model::DirEntry;

    fn sample() -> Db {
        let mut db = Db {
            index: 42,
            ..Db::default()
        };
        db.kvs.insert(
            "a".into(),
            DirEntry {
                key: "a".into(),
                value: b"v".to_vec().into(),
                ..Default::default()
            }
            .into(),
        );
        db
    }

    #[test]
    fn round_trips_with_autopilot() {
        let mut db = sample();
        db.autopilot = Some(AutopilotConfig {
            min_quorum: 3,
            modify_index: 40,
            ..AutopilotConfig::default()
        });
        let bytes = db.encode().unwrap();
        assert_eq!(&bytes[..8], b"REGSNAP4");
        assert_eq!(Db::decode(&bytes).unwrap(), db);
    }

    #[test]
    fn older_snapshots_still_decode() {
        // A version-1 body is the current encoding without the trailing `autopilot` (`None`
        // is one byte 0), `config_entries` (one byte 0 when empty), ACL tables (eight zero
        // bytes when empty) and query tables (four zero bytes when empty) fields; a
        // version-2 body keeps `autopilot`; a version-3 body lacks the ACL tables' last two
        // maps (auth methods and binding rules) and the query tables.
        let db = sample();
        let current = postcard::to_stdvec(&db).unwrap();
        assert_eq!(current[current.len() - 14..], [0u8; 14]);
        let with = |magic: &[u8], cut: usize| {
            let body = &current[..current.len() - cut];
            let mut v = magic.to_vec();
            v.extend_from_slice(&(body.len() as u64).to_le_bytes());
            v.extend_from_slice(body);
            v
        };
        let v1 = with(b"REGSNAP1", 14);
        assert_eq!(Db::decode(&v1).unwrap(), db);
        assert_eq!(Db::decode(&with(b"REGSNAP2", 13)).unwrap(), db);
        assert_eq!(Db::decode(&with(b"REGSNAP3", 6)).unwrap(), db);
        assert!(Db::decode(b"REGSNAP9\0\0\0\0\0\0\0\0").is_err());
        assert!(Db::decode(&v1[..v1.len() - 1]).is_err());
    }
}
