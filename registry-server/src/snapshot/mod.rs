//! Snapshot archives: the whole state at one index, as `GET /v1/snapshot` hands it out and
//! `PUT /v1/snapshot` takes it back.
//!
//! An archive is a gzipped tar, laid out like Consul's:
//!
//! | member       | content                                                        |
//! |--------------|----------------------------------------------------------------|
//! | `meta.json`  | [`Meta`]: `ID`, `Size` (of `state.bin`), `Index`, `Term`, `Version` |
//! | `state.bin`  | the state encoding of [`Db::encode`] (its own versioned header)  |
//! | `SHA256SUMS` | `<sha256 hex>  <name>` for `meta.json` and `state.bin`          |
//!
//! [`read`] checks everything before it answers: the gzip stream (its CRC and length, no
//! trailing bytes), the tar headers (their checksums; only the three members, each once, as
//! regular files), both SHA-256 sums, the metadata (its version, `Size` equal to the state's
//! length) and sizes against [`MAX_STATE`]. [`verify`] also decodes the state and checks its
//! index against the metadata, so an archive it accepts restores. Corruption is a
//! [`ServerError::Snapshot`], an oversized member a [`ServerError::TooLarge`]; nothing panics
//! on any input.

pub mod archive;
pub mod stats;

pub use archive::{read, verify, write, Archive, Meta, FORMAT_VERSION, MAX_ARCHIVE, MAX_STATE};
pub use stats::{table_stats, TableStat};

#[cfg(doc)]
use crate::{state::Db, ServerError};
