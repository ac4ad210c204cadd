//! Snapshot encoding of the whole state: a versioned header, the postcard-encoded tables
//! and a CRC-free length check (the archive layer adds checksums).

use super::Db;
use crate::ServerError;

const MAGIC: &[u8; 8] = b"REGSNAP1";

impl Db {
    /// Encodes the whole state.
    pub fn encode(&self) -> Result<Vec<u8>, ServerError> {
        let mut out = MAGIC.to_vec();
        let body = postcard::to_stdvec(self).map_err(|e| ServerError::Snapshot(e.to_string()))?;
        out.extend_from_slice(&(body.len() as u64).to_le_bytes());
        out.extend_from_slice(&body);
        Ok(out)
    }

    /// Decodes a state encoded by [`Db::encode`]; rejects anything truncated or foreign.
    pub fn decode(bytes: &[u8]) -> Result<Db, ServerError> {
        let bad = |m: &str| ServerError::Snapshot(m.to_string());
        if bytes.len() < 16 || &bytes[..8] != MAGIC {
            return Err(bad("not a registry state snapshot"));
        }
        let mut len = [0u8; 8];
        len.copy_from_slice(&bytes[8..16]);
        let len = u64::from_le_bytes(len) as usize;
        if bytes.len() - 16 != len {
            return Err(bad("snapshot is truncated or has trailing data"));
        }
        postcard::from_bytes(&bytes[16..]).map_err(|e| ServerError::Snapshot(e.to_string()))
    }
}
