//! The archive codec: [`write`] builds a gzipped tar of `meta.json`, `state.bin` and
//! `SHA256SUMS`; [`read`] takes one apart and checks all of it; [`verify`] also decodes the
//! state. The layout is described in the [module above](super).

use crate::state::Db;
use crate::ServerError;
use flate2::bufread::GzDecoder;
use flate2::write::GzEncoder;
use flate2::Compression;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::io::{Read, Write};

/// Largest archive `PUT /v1/snapshot` accepts (and the CLI reads): 256 MiB.
pub const MAX_ARCHIVE: usize = 256 * 1024 * 1024;
/// Largest `state.bin` an archive may hold once decompressed: 255 MiB, which leaves room
/// for the framing of the restore command under the 256 MiB limit of forwarded writes.
pub const MAX_STATE: u64 = 255 * 1024 * 1024;
/// Largest `meta.json` or `SHA256SUMS`.
const MAX_SMALL: u64 = 64 * 1024;
/// Most bytes of tar padding accepted after the end-of-archive marker.
const MAX_PADDING: u64 = 64 * 1024;
/// The archive format version written in `meta.json`.
pub const FORMAT_VERSION: u32 = 1;

const META: &str = "meta.json";
const STATE: &str = "state.bin";
const SUMS: &str = "SHA256SUMS";

/// The contents of `meta.json` (the fields of Consul's, spelled as Consul spells them).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Meta {
    /// Archive format version ([`FORMAT_VERSION`]).
    #[serde(rename = "Version")]
    pub version: u32,
    /// `<term>-<index>-<unix ms>`: names this snapshot.
    #[serde(rename = "ID")]
    pub id: String,
    /// Index of the last write the state contains (the `X-Consul-Index` of the save).
    #[serde(rename = "Index")]
    pub index: u64,
    /// Raft term the state was saved in (0 when the saving server does not say).
    #[serde(rename = "Term")]
    pub term: u64,
    /// Length of `state.bin` in bytes.
    #[serde(rename = "Size")]
    pub size: u64,
}

impl Meta {
    /// The metadata of `state`, saved at `index` in `term`, stamped with this clock.
    pub fn for_state(index: u64, term: u64, state: &[u8]) -> Meta {
        Meta {
            version: FORMAT_VERSION,
            id: format!("{term}-{index}-{}", crate::state::unix_ms_now()),
            index,
            term,
            size: state.len() as u64,
        }
    }
}

/// An archive taken apart and checked: its metadata and state encoding.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Archive {
    /// `meta.json`.
    pub meta: Meta,
    /// `state.bin`: a [`Db::encode`] encoding.
    pub state: Vec<u8>,
}

fn corrupt(msg: impl Into<String>) -> ServerError {
    ServerError::Snapshot(msg.into())
}

fn integrity(msg: impl std::fmt::Display) -> ServerError {
    corrupt(format!("failed checking integrity of snapshot: {msg}"))
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Writes the archive of `state` described by `meta` to `out` and returns `out`.
pub fn write<W: Write>(out: W, meta: &Meta, state: &[u8]) -> Result<W, ServerError> {
    if meta.size != state.len() as u64 {
        return Err(corrupt(format!(
            "metadata size {} does not match the state's {} bytes",
            meta.size,
            state.len()
        )));
    }
    let io = |e: std::io::Error| ServerError::Snapshot(format!("failed to write snapshot: {e}"));
    let mut meta_json = serde_json::to_vec(meta)
        .map_err(|e| corrupt(format!("failed to encode snapshot metadata: {e}")))?;
    meta_json.push(b'\n');
    let sums = format!(
        "{}  {META}\n{}  {STATE}\n",
        hex(&Sha256::digest(&meta_json)),
        hex(&Sha256::digest(state))
    );
    let mtime = crate::state::unix_ms_now() / 1000;
    let mut tar = tar::Builder::new(GzEncoder::new(out, Compression::default()));
    for (name, data) in [
        (META, meta_json.as_slice()),
        (STATE, state),
        (SUMS, sums.as_bytes()),
    ] {
        let mut header = tar::Header::new_ustar();
        header.set_path(name).map_err(io)?;
        header.set_entry_type(tar::EntryType::Regular);
        header.set_size(data.len() as u64);
        header.set_mode(0o600);
        header.set_mtime(mtime);
        header.set_cksum();
        tar.append(&header, data).map_err(io)?;
    }
    tar.into_inner().map_err(io)?.finish().map_err(io)
}

/// Reads one member whose header declares `declared` bytes, refusing more than `limit`, and
/// returns its bytes and SHA-256.
fn read_member(
    entry: &mut impl Read,
    name: &str,
    declared: u64,
    limit: u64,
) -> Result<(Vec<u8>, [u8; 32]), ServerError> {
    if declared > limit {
        return Err(ServerError::TooLarge(format!(
            "snapshot member {name:?} has {declared} bytes, more than the limit of {limit}"
        )));
    }
    // Grow as data arrives rather than trusting the header with a large allocation.
    let mut data = Vec::with_capacity(usize::try_from(declared.min(1 << 20)).unwrap_or(0));
    entry
        .take(declared)
        .read_to_end(&mut data)
        .map_err(|e| corrupt(format!("failed reading snapshot: {e}")))?;
    if data.len() as u64 != declared {
        return Err(corrupt(format!(
            "failed reading snapshot: {name:?} is truncated"
        )));
    }
    let sum: [u8; 32] = Sha256::digest(&data).into();
    Ok((data, sum))
}

/// Checks `SHA256SUMS` against the sums of the members read: every line names a member and
/// matches its sum, and every member is listed.
fn check_sums(sums: &[u8], meta_sum: &[u8; 32], state_sum: &[u8; 32]) -> Result<(), ServerError> {
    let text = std::str::from_utf8(sums).map_err(|_| integrity("SHA256SUMS is not text"))?;
    let mut seen_meta = false;
    let mut seen_state = false;
    for line in text.lines() {
        let (hash, name) = line
            .split_once("  ")
            .ok_or_else(|| integrity(format!("malformed SHA256SUMS line {line:?}")))?;
        let (want, seen) = match name {
            META => (meta_sum, &mut seen_meta),
            STATE => (state_sum, &mut seen_state),
            other => return Err(integrity(format!("list has a hash for unknown {other:?}"))),
        };
        if !hash.eq_ignore_ascii_case(&hex(want)) {
            return Err(integrity(format!("hash check failed for {name:?}")));
        }
        *seen = true;
    }
    for (name, seen) in [(META, seen_meta), (STATE, seen_state)] {
        if !seen {
            return Err(integrity(format!("list missing hash for {name:?}")));
        }
    }
    Ok(())
}

/// Takes an archive apart and checks its gzip and tar framing, checksums, metadata and sizes
/// (see the [module documentation](super)). The state is not decoded: see [`verify`].
pub fn read(bytes: &[u8]) -> Result<Archive, ServerError> {
    let reading = |e: std::io::Error| corrupt(format!("failed reading snapshot: {e}"));
    let mut tar = tar::Archive::new(GzDecoder::new(bytes));
    let mut meta: Option<(Vec<u8>, [u8; 32])> = None;
    let mut state: Option<(Vec<u8>, [u8; 32])> = None;
    let mut sums: Option<Vec<u8>> = None;
    {
        // Raw entries: GNU long names and PAX headers are not interpreted (and so never
        // buffered); they are unexpected members like any other.
        let entries = tar.entries().map_err(reading)?.raw(true);
        for entry in entries {
            let mut entry = entry.map_err(reading)?;
            let name = String::from_utf8_lossy(&entry.path_bytes()).into_owned();
            let (slot_taken, limit) = match name.as_str() {
                META => (meta.is_some(), MAX_SMALL),
                STATE => (state.is_some(), MAX_STATE),
                SUMS => (sums.is_some(), MAX_SMALL),
                _ => return Err(corrupt(format!("unexpected file {name:?} in snapshot"))),
            };
            if slot_taken {
                return Err(corrupt(format!("file {name:?} appears twice in snapshot")));
            }
            if !entry.header().entry_type().is_file() {
                return Err(corrupt(format!(
                    "{name:?} in snapshot is not a regular file"
                )));
            }
            let declared = entry.header().entry_size().map_err(reading)?;
            let member = read_member(&mut entry, &name, declared, limit)?;
            match name.as_str() {
                META => meta = Some(member),
                STATE => state = Some(member),
                _ => sums = Some(member.0),
            }
        }
    }
    // The tar reader stops at the end-of-archive marker: read the rest of the gzip stream so
    // that its CRC and length are checked, and refuse anything after it.
    let mut gz = tar.into_inner();
    let mut padding = Vec::new();
    (&mut gz)
        .take(MAX_PADDING + 1)
        .read_to_end(&mut padding)
        .map_err(reading)?;
    if padding.len() as u64 > MAX_PADDING || padding.iter().any(|b| *b != 0) {
        return Err(corrupt(
            "unexpected data after the end of the snapshot archive",
        ));
    }
    if !gz.into_inner().is_empty() {
        return Err(corrupt("trailing data after the snapshot archive"));
    }

    let (meta_json, meta_sum) =
        meta.ok_or_else(|| integrity(format!("file missing for {META:?}")))?;
    let (state, state_sum) =
        state.ok_or_else(|| integrity(format!("file missing for {STATE:?}")))?;
    let sums = sums.ok_or_else(|| integrity(format!("file missing for {SUMS:?}")))?;
    check_sums(&sums, &meta_sum, &state_sum)?;

    let meta: Meta = serde_json::from_slice(&meta_json)
        .map_err(|e| corrupt(format!("failed to decode snapshot metadata: {e}")))?;
    if meta.version != FORMAT_VERSION {
        return Err(corrupt(format!(
            "unsupported snapshot version {} (this server reads version {FORMAT_VERSION})",
            meta.version
        )));
    }
    if meta.size != state.len() as u64 {
        return Err(corrupt(format!(
            "snapshot metadata gives {} bytes of state, {STATE} has {}",
            meta.size,
            state.len()
        )));
    }
    Ok(Archive { meta, state })
}

/// [`read`], then decodes the state and checks that its index is the metadata's: an archive
/// this accepts restores.
pub fn verify(bytes: &[u8]) -> Result<(Archive, Db), ServerError> {
    let archive = read(bytes)?;
    let db = Db::decode(&archive.state).map_err(|e| match e {
        ServerError::Snapshot(m) => corrupt(format!("failed to decode snapshot state: {m}")),
        other => other,
    })?;
    if db.index != archive.meta.index {
        return Err(corrupt(format!(
            "snapshot metadata index {} does not match its state's index {}",
            archive.meta.index, db.index
        )));
    }
    Ok((archive, db))
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;
    use crate::state::Store;
    use proptest::prelude::*;
    use registry_proto::command::RegisterRequest;
    use registry_proto::model::{DirEntry, Node, NodeService};
    use registry_proto::Command;

    fn sample_db() -> Db {
        let store = Store::new();
        let mut i = 0;
        let mut apply = |cmd: Command| {
            i += 1;
            crate::fsm::apply(&store, i, &cmd);
        };
        for n in 0..20 {
            apply(Command::KvSet {
                entry: DirEntry {
                    key: format!("app/{n}"),
                    flags: n,
                    value: format!("value {n}").into_bytes().into(),
                    ..Default::default()
                },
            });
        }
        apply(Command::Register(RegisterRequest {
            node: Node {
                node: "n1".into(),
                address: "10.0.0.1".into(),
                ..Default::default()
            },
            service: Some(NodeService {
                id: "web-1".into(),
                service: "web".into(),
                port: 80,
                ..Default::default()
            }),
            ..Default::default()
        }));
        apply(Command::KvDelete {
            key: "app/3".into(),
        });
        let db = store.read().clone();
        db
    }

    fn sample_archive() -> (Db, Vec<u8>) {
        let db = sample_db();
        let state = db.encode().unwrap();
        let meta = Meta::for_state(db.index, 2, &state);
        (db, write(Vec::new(), &meta, &state).unwrap())
    }

    /// Builds a tar.gz of the given members, for archives the writer would never make.
    fn custom(members: &[(&str, &[u8])]) -> Vec<u8> {
        let mut tar = tar::Builder::new(GzEncoder::new(Vec::new(), Compression::fast()));
        for (name, data) in members {
            let mut h = tar::Header::new_ustar();
            h.set_path(name).unwrap();
            h.set_size(data.len() as u64);
            h.set_mode(0o600);
            h.set_cksum();
            tar.append(&h, *data).unwrap();
        }
        tar.into_inner().unwrap().finish().unwrap()
    }

    fn sums_for(meta: &[u8], state: &[u8]) -> String {
        format!(
            "{}  meta.json\n{}  state.bin\n",
            hex(&Sha256::digest(meta)),
            hex(&Sha256::digest(state))
        )
    }

    fn message(r: Result<impl std::fmt::Debug, ServerError>) -> String {
        match r {
            Err(ServerError::Snapshot(m)) => m,
            other => panic!("expected a snapshot error, got {other:?}"),
        }
    }

    #[test]
    fn round_trip() {
        let (db, bytes) = sample_archive();
        assert_eq!(&bytes[..2], &[0x1f, 0x8b], "gzip magic");
        let (archive, decoded) = verify(&bytes).unwrap();
        assert_eq!(decoded, db);
        assert_eq!(archive.meta.index, db.index);
        assert_eq!(archive.meta.term, 2);
        assert_eq!(archive.meta.version, FORMAT_VERSION);
        assert_eq!(archive.meta.size, archive.state.len() as u64);
        assert!(archive.meta.id.starts_with(&format!("2-{}-", db.index)));
    }

    #[test]
    fn layout_is_consuls() {
        let (_, bytes) = sample_archive();
        let mut tar = tar::Archive::new(GzDecoder::new(bytes.as_slice()));
        let mut names = Vec::new();
        let mut files = std::collections::HashMap::new();
        for e in tar.entries().unwrap() {
            let mut e = e.unwrap();
            let name = e.path().unwrap().display().to_string();
            let mut data = Vec::new();
            e.read_to_end(&mut data).unwrap();
            names.push(name.clone());
            files.insert(name, data);
        }
        assert_eq!(names, ["meta.json", "state.bin", "SHA256SUMS"]);
        let meta: serde_json::Value = serde_json::from_slice(&files["meta.json"]).unwrap();
        for field in ["ID", "Size", "Index", "Term", "Version"] {
            assert!(meta.get(field).is_some(), "meta.json lacks {field}: {meta}");
        }
        assert_eq!(&files["state.bin"][..7], b"REGSNAP", "the state encoding");
        let sums = String::from_utf8(files["SHA256SUMS"].clone()).unwrap();
        assert_eq!(
            sums,
            sums_for(&files["meta.json"], &files["state.bin"]),
            "sha256sum -c format"
        );
    }

    #[test]
    fn truncation_anywhere_is_rejected() {
        let (_, bytes) = sample_archive();
        for len in 0..bytes.len() {
            assert!(read(&bytes[..len]).is_err(), "accepted a cut at {len}");
        }
    }

    #[test]
    fn trailing_bytes_are_rejected() {
        let (_, mut bytes) = sample_archive();
        bytes.push(0);
        assert!(message(read(&bytes)).contains("trailing"));
    }

    #[test]
    fn tampered_state_fails_the_hash_check() {
        let db = sample_db();
        let state = db.encode().unwrap();
        let meta_json = serde_json::to_vec(&Meta::for_state(db.index, 1, &state)).unwrap();
        let mut bad = state.clone();
        let last = bad.len() - 1;
        bad[last] ^= 1;
        let sums = sums_for(&meta_json, &state);
        let bytes = custom(&[
            ("meta.json", &meta_json),
            ("state.bin", &bad),
            ("SHA256SUMS", sums.as_bytes()),
        ]);
        assert_eq!(
            message(read(&bytes)),
            "failed checking integrity of snapshot: hash check failed for \"state.bin\""
        );
    }

    #[test]
    fn missing_unknown_and_duplicate_members_are_rejected() {
        let db = sample_db();
        let state = db.encode().unwrap();
        let meta_json = serde_json::to_vec(&Meta::for_state(db.index, 1, &state)).unwrap();
        let sums = sums_for(&meta_json, &state);
        let missing = custom(&[("meta.json", &meta_json), ("state.bin", &state)]);
        assert!(message(read(&missing)).contains("file missing for \"SHA256SUMS\""));
        let unknown = custom(&[
            ("meta.json", &meta_json),
            ("state.bin", &state),
            ("SHA256SUMS", sums.as_bytes()),
            ("extra", b"x"),
        ]);
        assert!(message(read(&unknown)).contains("unexpected file \"extra\""));
        let twice = custom(&[
            ("meta.json", &meta_json),
            ("meta.json", &meta_json),
            ("state.bin", &state),
            ("SHA256SUMS", sums.as_bytes()),
        ]);
        assert!(message(read(&twice)).contains("appears twice"));
        let unlisted = custom(&[
            ("meta.json", &meta_json),
            ("state.bin", &state),
            (
                "SHA256SUMS",
                format!("{}  meta.json\n", hex(&Sha256::digest(&meta_json))).as_bytes(),
            ),
        ]);
        assert!(message(read(&unlisted)).contains("list missing hash for \"state.bin\""));
    }

    #[test]
    fn metadata_must_agree_with_the_state() {
        let db = sample_db();
        let state = db.encode().unwrap();
        let mut meta = Meta::for_state(db.index, 1, &state);
        meta.size += 1;
        let meta_json = serde_json::to_vec(&meta).unwrap();
        let sums = sums_for(&meta_json, &state);
        let bytes = custom(&[
            ("meta.json", &meta_json),
            ("state.bin", &state),
            ("SHA256SUMS", sums.as_bytes()),
        ]);
        assert!(message(read(&bytes)).contains("bytes of state"));

        let mut meta = Meta::for_state(db.index + 1, 1, &state);
        meta.size = state.len() as u64;
        let wrong_index = write(Vec::new(), &meta, &state).unwrap();
        assert!(read(&wrong_index).is_ok());
        assert!(message(verify(&wrong_index)).contains("does not match"));

        let mut meta = Meta::for_state(db.index, 1, &state);
        meta.version = 2;
        let future = write(Vec::new(), &meta, &state).unwrap();
        assert!(message(read(&future)).contains("unsupported snapshot version 2"));
    }

    #[test]
    fn undecodable_state_fails_verify() {
        let state = b"REGSNAP1\x05\0\0\0\0\0\0\0hello".to_vec();
        let meta = Meta::for_state(0, 1, &state);
        let bytes = write(Vec::new(), &meta, &state).unwrap();
        assert!(read(&bytes).is_ok());
        assert!(message(verify(&bytes)).starts_with("failed to decode snapshot state"));
    }

    #[test]
    fn oversized_members_are_too_large() {
        let big = vec![b' '; (MAX_SMALL + 1) as usize];
        let bytes = custom(&[("meta.json", &big)]);
        assert!(matches!(read(&bytes), Err(ServerError::TooLarge(_))));
    }

    #[test]
    fn not_an_archive_is_rejected() {
        for junk in [&b""[..], b"hello", b"\x1f\x8b\x08\0\0\0\0\0", &[0u8; 4096]] {
            assert!(read(junk).is_err());
        }
        // A plain (uncompressed) tar is not accepted either.
        let db = sample_db();
        let state = db.encode().unwrap();
        let mut tar = tar::Builder::new(Vec::new());
        let mut h = tar::Header::new_ustar();
        h.set_path("state.bin").unwrap();
        h.set_size(state.len() as u64);
        h.set_cksum();
        tar.append(&h, state.as_slice()).unwrap();
        assert!(read(&tar.into_inner().unwrap()).is_err());
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(256))]

        /// Flipping any bits of an archive never panics and never yields a different state:
        /// the archive is rejected, or (a flip in a field nothing reads, such as a tar
        /// header's mtime with its checksum still valid) accepted unchanged.
        #[test]
        fn random_corruption_is_rejected(
            flips in proptest::collection::vec((any::<prop::sample::Index>(), 0u8..8), 1..4)
        ) {
            let (db, bytes) = sample_archive();
            let mut bad = bytes.clone();
            for (at, bit) in &flips {
                let i = at.index(bad.len());
                bad[i] ^= 1 << bit;
            }
            prop_assume!(bad != bytes);
            if let Ok((_, decoded)) = verify(&bad) {
                prop_assert_eq!(decoded, db);
            }
        }

        /// Arbitrary bytes, with or without a gzip header, never panic the reader.
        #[test]
        fn arbitrary_bytes_never_panic(
            gzip in any::<bool>(),
            data in proptest::collection::vec(any::<u8>(), 0..2048)
        ) {
            let mut input = Vec::new();
            if gzip {
                input.extend_from_slice(&[0x1f, 0x8b, 0x08, 0, 0, 0, 0, 0, 0, 0xff]);
            }
            input.extend_from_slice(&data);
            prop_assert!(verify(&input).is_err());
        }

        /// Cutting an archive anywhere and appending garbage is rejected.
        #[test]
        fn cut_and_spliced_archives_are_rejected(
            cut in any::<prop::sample::Index>(),
            tail in proptest::collection::vec(any::<u8>(), 0..64)
        ) {
            let (_, bytes) = sample_archive();
            let mut bad = bytes[..cut.index(bytes.len())].to_vec();
            bad.extend_from_slice(&tail);
            prop_assume!(bad != bytes);
            prop_assert!(verify(&bad).is_err());
        }
    }
}
