//! Gossip encryption: the key type (16, 24 or 32 bytes: AES-128/192/256-GCM, as Consul's
//! `encrypt`), the packet codec and the in-memory keyring with its verify switches.
//!
//! An encrypted gossip packet is
//!
//! ```text
//! [version = 1][nonce: 12 bytes][ciphertext of the chitchat datagram][GCM tag: 16 bytes]
//! ```
//!
//! The version byte is the associated data, so it cannot be changed without failing the tag.
//! Packets are sealed with the primary key and opened with each key of the keyring in turn,
//! which is what lets a pool move from one key to another without downtime. Persistence of
//! the keyring and its operations across the pool live in [`super::keyring`].

use aes_gcm::aead::consts::U12;
use aes_gcm::aead::{AeadInPlace, KeyInit};
use aes_gcm::aes::Aes192;
use aes_gcm::{Aes128Gcm, Aes256Gcm, AesGcm, Nonce, Tag};
use base64::Engine;
use rand::RngCore;
use sha2::Digest;
use std::sync::atomic::{AtomicBool, Ordering};

/// The packet format version this build writes (and the only one it reads).
pub const VERSION: u8 = 1;
/// AES-GCM nonce length.
pub const NONCE_LEN: usize = 12;
/// AES-GCM tag length.
pub const TAG_LEN: usize = 16;
/// Bytes an encrypted packet adds to the datagram it carries.
pub const OVERHEAD: usize = 1 + NONCE_LEN + TAG_LEN;

type Aes192Gcm = AesGcm<Aes192, U12>;

/// Why a key or a packet was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CryptoError {
    /// Not base64.
    #[error("Failed to decode key: {0}")]
    Base64(String),
    /// A key of another length than 16, 24 or 32 bytes (memberlist's text).
    #[error("key size must be 16, 24 or 32 bytes")]
    KeySize,
    /// Shorter than the header and tag.
    #[error("packet too short ({0} bytes)")]
    Truncated(usize),
    /// A version byte this build does not know.
    #[error("unknown encryption version {0}")]
    Version(u8),
    /// No key of the keyring authenticates the packet.
    #[error("no installed key authenticates the packet")]
    Authentication,
}

#[derive(Clone)]
enum Cipher {
    A128(Box<Aes128Gcm>),
    A192(Box<Aes192Gcm>),
    A256(Box<Aes256Gcm>),
}

/// One gossip encryption key.
#[derive(Clone)]
pub struct GossipKey {
    raw: Vec<u8>,
    cipher: Cipher,
}

impl std::fmt::Debug for GossipKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never print the key itself.
        write!(f, "GossipKey({})", self.fingerprint())
    }
}

impl PartialEq for GossipKey {
    fn eq(&self, other: &Self) -> bool {
        self.raw == other.raw
    }
}

impl GossipKey {
    /// A key from its raw bytes.
    pub fn from_bytes(raw: &[u8]) -> Result<GossipKey, CryptoError> {
        let cipher = match raw.len() {
            16 => Cipher::A128(Box::new(
                Aes128Gcm::new_from_slice(raw).map_err(|_| CryptoError::KeySize)?,
            )),
            24 => Cipher::A192(Box::new(
                Aes192Gcm::new_from_slice(raw).map_err(|_| CryptoError::KeySize)?,
            )),
            32 => Cipher::A256(Box::new(
                Aes256Gcm::new_from_slice(raw).map_err(|_| CryptoError::KeySize)?,
            )),
            _ => return Err(CryptoError::KeySize),
        };
        Ok(GossipKey {
            raw: raw.to_vec(),
            cipher,
        })
    }

    /// A key from its base64 form (as `encrypt` and the keyring API take it).
    pub fn from_base64(text: &str) -> Result<GossipKey, CryptoError> {
        let raw = base64::engine::general_purpose::STANDARD
            .decode(text.trim())
            .map_err(|e| CryptoError::Base64(e.to_string()))?;
        GossipKey::from_bytes(&raw)
    }

    /// A new random 32-byte key (`registry keygen`).
    pub fn generate() -> GossipKey {
        let mut raw = [0u8; 32];
        rand::rngs::OsRng.fill_bytes(&mut raw);
        GossipKey {
            raw: raw.to_vec(),
            cipher: Cipher::A256(Box::new(Aes256Gcm::new(&raw.into()))),
        }
    }

    /// The raw key.
    pub fn as_bytes(&self) -> &[u8] {
        &self.raw
    }

    /// The key in base64.
    pub fn to_base64(&self) -> String {
        base64::engine::general_purpose::STANDARD.encode(&self.raw)
    }

    /// A short public name of the key (hex of the first 8 bytes of its SHA-256): what
    /// members publish in gossip to say which keys they hold, without the key itself.
    pub fn fingerprint(&self) -> String {
        let digest = sha2::Sha256::digest(&self.raw);
        digest[..8].iter().map(|b| format!("{b:02x}")).collect()
    }

    fn seal_in_place(&self, nonce: &[u8], buf: &mut [u8]) -> Result<Tag, aes_gcm::Error> {
        let nonce = Nonce::from_slice(nonce);
        let aad = [VERSION];
        match &self.cipher {
            Cipher::A128(c) => c.encrypt_in_place_detached(nonce, &aad, buf),
            Cipher::A192(c) => c.encrypt_in_place_detached(nonce, &aad, buf),
            Cipher::A256(c) => c.encrypt_in_place_detached(nonce, &aad, buf),
        }
    }

    fn open_in_place(&self, nonce: &[u8], buf: &mut [u8], tag: &[u8]) -> bool {
        let nonce = Nonce::from_slice(nonce);
        let tag = Tag::from_slice(tag);
        let aad = [VERSION];
        match &self.cipher {
            Cipher::A128(c) => c.decrypt_in_place_detached(nonce, &aad, buf, tag),
            Cipher::A192(c) => c.decrypt_in_place_detached(nonce, &aad, buf, tag),
            Cipher::A256(c) => c.decrypt_in_place_detached(nonce, &aad, buf, tag),
        }
        .is_ok()
    }
}

/// Seals `plaintext` with `key` into `out` (cleared first): version, fresh random nonce,
/// ciphertext and tag.
pub fn seal(key: &GossipKey, plaintext: &[u8], out: &mut Vec<u8>) {
    let mut nonce = [0u8; NONCE_LEN];
    rand::thread_rng().fill_bytes(&mut nonce);
    let mut body = plaintext.to_vec();
    out.clear();
    out.reserve(plaintext.len() + OVERHEAD);
    out.push(VERSION);
    out.extend_from_slice(&nonce);
    match key.seal_in_place(&nonce, &mut body) {
        Ok(tag) => {
            out.extend_from_slice(&body);
            out.extend_from_slice(&tag);
        }
        // Only refused for messages over 64 GiB, far beyond any datagram.
        Err(_) => out.clear(),
    }
}

/// Opens a sealed packet with the first key of `keys` that authenticates it.
pub fn open(keys: &[GossipKey], packet: &[u8]) -> Result<Vec<u8>, CryptoError> {
    if packet.len() < OVERHEAD {
        return Err(CryptoError::Truncated(packet.len()));
    }
    if packet[0] != VERSION {
        return Err(CryptoError::Version(packet[0]));
    }
    let nonce = &packet[1..1 + NONCE_LEN];
    let (body, tag) = packet[1 + NONCE_LEN..].split_at(packet.len() - OVERHEAD);
    for key in keys {
        let mut buf = body.to_vec();
        if key.open_in_place(nonce, &mut buf, tag) {
            return Ok(buf);
        }
    }
    Err(CryptoError::Authentication)
}

/// The keys of one gossip pool, primary first, and the `encrypt_verify_*` switches.
#[derive(Debug)]
pub struct Keys {
    keys: parking_lot::RwLock<Vec<GossipKey>>,
    verify_incoming: AtomicBool,
    verify_outgoing: AtomicBool,
}

impl Keys {
    /// A keyring of `keys` (primary first; must not be empty).
    pub fn new(keys: Vec<GossipKey>, verify_incoming: bool, verify_outgoing: bool) -> Keys {
        Keys {
            keys: parking_lot::RwLock::new(keys),
            verify_incoming: AtomicBool::new(verify_incoming),
            verify_outgoing: AtomicBool::new(verify_outgoing),
        }
    }

    /// Plaintext packets are refused (`encrypt_verify_incoming`, default true).
    pub fn verify_incoming(&self) -> bool {
        self.verify_incoming.load(Ordering::Relaxed)
    }

    /// Packets are sent encrypted (`encrypt_verify_outgoing`, default true).
    pub fn verify_outgoing(&self) -> bool {
        self.verify_outgoing.load(Ordering::Relaxed)
    }

    /// The installed keys, primary first.
    pub fn list(&self) -> Vec<GossipKey> {
        self.keys.read().clone()
    }

    /// The primary key.
    pub fn primary(&self) -> Option<GossipKey> {
        self.keys.read().first().cloned()
    }

    /// Seals a datagram with the primary key.
    pub fn seal(&self, plaintext: &[u8], out: &mut Vec<u8>) -> bool {
        let keys = self.keys.read();
        match keys.first() {
            Some(k) => {
                seal(k, plaintext, out);
                !out.is_empty()
            }
            None => false,
        }
    }

    /// Opens a packet with any installed key.
    pub fn open(&self, packet: &[u8]) -> Result<Vec<u8>, CryptoError> {
        open(&self.keys.read(), packet)
    }

    /// Adds a key (no change when installed already). Returns whether it changed.
    pub fn install(&self, key: GossipKey) -> bool {
        let mut keys = self.keys.write();
        if keys.contains(&key) {
            return false;
        }
        keys.push(key);
        true
    }

    /// Makes an installed key the primary one.
    pub fn use_key(&self, key: &GossipKey) -> Result<bool, String> {
        let mut keys = self.keys.write();
        let Some(i) = keys.iter().position(|k| k == key) else {
            return Err("Requested key is not in the keyring".to_string());
        };
        if i == 0 {
            return Ok(false);
        }
        let k = keys.remove(i);
        keys.insert(0, k);
        Ok(true)
    }

    /// Removes a key that is not the primary one (removing an absent key is no change).
    pub fn remove(&self, key: &GossipKey) -> Result<bool, String> {
        let mut keys = self.keys.write();
        if keys.first() == Some(key) {
            return Err("Removing the primary key is not allowed".to_string());
        }
        let before = keys.len();
        keys.retain(|k| k != key);
        Ok(keys.len() != before)
    }

    /// The installed key with this fingerprint.
    pub fn by_fingerprint(&self, fp: &str) -> Option<GossipKey> {
        self.keys
            .read()
            .iter()
            .find(|k| k.fingerprint() == fp)
            .cloned()
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    fn key(len: usize, fill: u8) -> GossipKey {
        GossipKey::from_bytes(&vec![fill; len]).unwrap()
    }

    #[test]
    fn keys_of_16_24_32_bytes_round_trip() {
        for len in [16, 24, 32] {
            let k = key(len, 7);
            let mut out = Vec::new();
            seal(&k, b"hello gossip", &mut out);
            assert_eq!(out.len(), 12 + OVERHEAD);
            assert_eq!(out[0], VERSION);
            assert!(!out.windows(5).any(|w| w == b"hello"));
            assert_eq!(open(&[k], &out).unwrap(), b"hello gossip");
        }
    }

    #[test]
    fn other_key_lengths_and_bad_base64_are_refused() {
        for len in [0, 8, 15, 17, 31, 33, 64] {
            assert_eq!(
                GossipKey::from_bytes(&vec![1; len]).unwrap_err(),
                CryptoError::KeySize
            );
        }
        assert!(matches!(
            GossipKey::from_base64("not base64!").unwrap_err(),
            CryptoError::Base64(_)
        ));
        let k = GossipKey::generate();
        assert_eq!(k.raw.len(), 32);
        let back = GossipKey::from_base64(&k.to_base64()).unwrap();
        assert_eq!(back, k);
        assert_ne!(GossipKey::generate(), k);
    }

    #[test]
    fn nonces_differ_between_packets() {
        let k = key(32, 1);
        let (mut a, mut b) = (Vec::new(), Vec::new());
        seal(&k, b"same", &mut a);
        seal(&k, b"same", &mut b);
        assert_ne!(a, b);
    }

    #[test]
    fn tampered_packets_fail_authentication() {
        let k = key(32, 3);
        let mut out = Vec::new();
        seal(&k, b"member list", &mut out);
        for i in 1..out.len() {
            let mut bad = out.clone();
            bad[i] ^= 0x01;
            assert_eq!(
                open(std::slice::from_ref(&k), &bad).unwrap_err(),
                CryptoError::Authentication,
                "byte {i}"
            );
        }
        let mut bad = out.clone();
        bad[0] = 2;
        assert_eq!(open(&[k], &bad).unwrap_err(), CryptoError::Version(2));
    }

    #[test]
    fn truncated_packets_are_refused() {
        let k = key(16, 3);
        let mut out = Vec::new();
        seal(&k, b"abc", &mut out);
        for n in 0..OVERHEAD {
            assert_eq!(
                open(std::slice::from_ref(&k), &out[..n]).unwrap_err(),
                CryptoError::Truncated(n)
            );
        }
        for n in OVERHEAD..out.len() {
            assert_eq!(
                open(std::slice::from_ref(&k), &out[..n]).unwrap_err(),
                CryptoError::Authentication
            );
        }
        // An empty datagram seals and opens too.
        seal(&k, b"", &mut out);
        assert_eq!(open(&[k], &out).unwrap(), b"");
    }

    #[test]
    fn every_installed_key_opens_and_the_primary_seals() {
        let (old, new) = (key(32, 1), key(32, 2));
        let ring = Keys::new(vec![old.clone()], true, true);
        let mut by_old = Vec::new();
        assert!(ring.seal(b"x", &mut by_old));
        assert!(ring.install(new.clone()));
        assert!(!ring.install(new.clone()));
        assert_eq!(ring.use_key(&new), Ok(true));
        let mut by_new = Vec::new();
        ring.seal(b"y", &mut by_new);
        assert_eq!(ring.open(&by_old).unwrap(), b"x");
        assert_eq!(open(std::slice::from_ref(&new), &by_new).unwrap(), b"y");
        assert!(open(std::slice::from_ref(&old), &by_new).is_err());
        assert_eq!(
            ring.remove(&new).unwrap_err(),
            "Removing the primary key is not allowed"
        );
        assert_eq!(ring.remove(&old), Ok(true));
        assert!(ring.open(&by_old).is_err());
        assert_eq!(
            ring.use_key(&old).unwrap_err(),
            "Requested key is not in the keyring"
        );
        assert_eq!(
            ring.by_fingerprint(&new.fingerprint()).unwrap(),
            new.clone()
        );
        assert_eq!(
            format!("{new:?}"),
            format!("GossipKey({})", new.fingerprint())
        );
    }
}
