//! The master key, data keys wrapped by it, and the bounded cache of
//! unwrapped data keys a node keeps in front of the store. No I/O: the
//! caller reads and writes the wrapped keys (the store) and the master key
//! (config, environment or a file).
//!
//! # Wrapped key layout (version 1)
//!
//! ```text
//! offset  size  field
//! 0       1     version      1
//! 1       12    nonce        random
//! 13      32    ciphertext   the data key, AES-256-GCM under the master key
//! 45      16    tag
//! ```
//!
//! The associated data is `tributary-owner-key/1`, the key id (u64 LE) and
//! the owner's id, so a wrapped key opens only as that owner's key of that id.

use std::collections::HashMap;
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use zeroize::{Zeroize, ZeroizeOnDrop};

use crate::seal::DataKey;
use crate::{Error, Result};

const WRAP_VERSION: u8 = 1;
/// Bytes of a wrapped key.
pub const WRAPPED_LEN: usize = 1 + 12 + 32 + 16;
const WRAP_CONTEXT: &[u8] = b"tributary-owner-key/1";

/// The key that wraps every owner's data key; zeroed when dropped.
#[derive(Clone, Zeroize, ZeroizeOnDrop)]
pub struct MasterKey([u8; 32]);

impl std::fmt::Debug for MasterKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("MasterKey(..)")
    }
}

impl MasterKey {
    /// A fresh random master key.
    pub fn generate() -> Result<MasterKey> {
        let mut bytes = [0u8; 32];
        getrandom::getrandom(&mut bytes).map_err(|e| Error::Random(e.to_string()))?;
        Ok(MasterKey(bytes))
    }

    /// Parses 64 hexadecimal digits (surrounding whitespace, as a key file
    /// ends with a newline, is ignored).
    pub fn from_hex(text: &str) -> Result<MasterKey> {
        let text = text.trim();
        if text.len() != 64 {
            return Err(Error::BadMasterKey(format!(
                "{} characters, 64 hexadecimal digits expected",
                text.len()
            )));
        }
        let mut bytes = [0u8; 32];
        hex::decode_to_slice(text, &mut bytes).map_err(|_| not_hex())?;
        Ok(MasterKey(bytes))
    }

    /// The 64 hexadecimal digits [`MasterKey::from_hex`] reads.
    pub fn to_hex(&self) -> String {
        hex::encode(self.0)
    }

    fn cipher(&self) -> crate::gcm::GcmKey {
        crate::gcm::GcmKey::new(&self.0)
    }

    /// `key` of `owner`, encrypted for the store.
    pub fn wrap(&self, owner: &str, key: &DataKey) -> Result<Vec<u8>> {
        let mut nonce = [0u8; 12];
        getrandom::getrandom(&mut nonce).map_err(|e| Error::Random(e.to_string()))?;
        let aad = wrap_aad(owner, key.id());
        let mut out = Vec::with_capacity(WRAPPED_LEN);
        out.push(WRAP_VERSION);
        out.extend_from_slice(&nonce);
        self.cipher().seal_to(nonce, &aad, key.bytes(), &mut out);
        Ok(out)
    }

    /// The data key `id` of `owner` from its wrapped form.
    pub fn unwrap(&self, owner: &str, id: u64, wrapped: &[u8]) -> Result<DataKey> {
        if wrapped.len() != WRAPPED_LEN {
            return Err(Error::BadWrappedKey(format!(
                "{} bytes, {WRAPPED_LEN} expected",
                wrapped.len()
            )));
        }
        if wrapped[0] != WRAP_VERSION {
            return Err(Error::BadWrappedKey(format!("version {}", wrapped[0])));
        }
        let aad = wrap_aad(owner, id);
        let mut sealed = [0u8; WRAPPED_LEN - 13];
        sealed.copy_from_slice(&wrapped[13..]);
        let opened = self
            .cipher()
            .open_in_place(&wrapped[1..13], &aad, &mut sealed);
        let mut bytes = [0u8; 32];
        if opened == Some(bytes.len()) {
            bytes.copy_from_slice(&sealed[..32]);
        }
        sealed.zeroize();
        if opened != Some(bytes.len()) {
            return Err(Error::BadWrappedKey(
                "does not open under this master key (wrong master key?)".into(),
            ));
        }
        Ok(DataKey::from_parts(id, bytes))
    }
}

fn not_hex() -> Error {
    Error::BadMasterKey("not hexadecimal".into())
}

fn wrap_aad(owner: &str, id: u64) -> Vec<u8> {
    let mut aad = Vec::with_capacity(WRAP_CONTEXT.len() + 8 + owner.len());
    aad.extend_from_slice(WRAP_CONTEXT);
    aad.extend_from_slice(&id.to_le_bytes());
    aad.extend_from_slice(owner.as_bytes());
    aad
}

/// What a node knows of an owner's key.
#[derive(Debug, Clone)]
pub enum OwnerKey {
    /// The key in use.
    Live(Arc<DataKey>),
    /// The owner was erased: the key is destroyed, their records are skipped.
    Erased,
}

/// A bounded, time-limited cache of owners' keys in front of the store.
///
/// An entry is trusted for `ttl` and then asked of the store again; that is
/// how an erasure made on another node reaches this one: within `ttl`.
/// When full, the oldest entry is evicted (owners beyond `capacity` cost a
/// store read per batch, never unbounded memory).
#[derive(Debug)]
pub struct KeyCache {
    ttl: Duration,
    capacity: usize,
    /// Read on every delivered message, written on a miss: a read lock.
    entries: RwLock<HashMap<String, (Instant, OwnerKey)>>,
}

impl KeyCache {
    pub fn new(capacity: usize, ttl: Duration) -> KeyCache {
        KeyCache {
            ttl,
            capacity: capacity.max(1),
            entries: RwLock::new(HashMap::new()),
        }
    }

    /// The owner's key if cached and fresh.
    pub fn get(&self, owner: &str) -> Option<OwnerKey> {
        let entries = self.entries.read().unwrap_or_else(|p| p.into_inner());
        let (at, key) = entries.get(owner)?;
        (at.elapsed() < self.ttl).then(|| key.clone())
    }

    pub fn put(&self, owner: &str, key: OwnerKey) {
        let mut entries = self.entries.write().unwrap_or_else(|p| p.into_inner());
        if entries.len() >= self.capacity && !entries.contains_key(owner) {
            let oldest = entries
                .iter()
                .min_by_key(|(_, (at, _))| *at)
                .map(|(owner, _)| owner.clone());
            if let Some(oldest) = oldest {
                entries.remove(&oldest);
            }
        }
        entries.insert(owner.to_owned(), (Instant::now(), key));
    }

    /// Forgets the owner (this node erased them: no waiting for the ttl).
    pub fn forget(&self, owner: &str) {
        self.entries
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .remove(owner);
    }

    pub fn len(&self) -> usize {
        self.entries.read().unwrap_or_else(|p| p.into_inner()).len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_wrapped_key_unwraps_only_for_its_owner_id_and_master() {
        let master = MasterKey::generate().expect("random");
        let key = DataKey::generate().expect("random");
        let wrapped = master.wrap("ann", &key).expect("wrap");
        assert_eq!(wrapped.len(), WRAPPED_LEN);
        let back = master.unwrap("ann", key.id(), &wrapped).expect("unwrap");
        assert_eq!(back.bytes(), key.bytes());
        assert!(master.unwrap("bob", key.id(), &wrapped).is_err());
        assert!(master.unwrap("ann", key.id() ^ 1, &wrapped).is_err());
        let other = MasterKey::generate().expect("random");
        let err = other.unwrap("ann", key.id(), &wrapped).unwrap_err();
        assert!(err.to_string().contains("wrong master key"), "{err}");
        assert!(master.unwrap("ann", key.id(), &wrapped[..20]).is_err());
    }

    #[test]
    fn a_master_key_reads_back_from_hex_and_bad_text_is_named() {
        let master = MasterKey::generate().expect("random");
        let text = format!("{}\n", master.to_hex());
        assert_eq!(MasterKey::from_hex(&text).expect("hex").0, master.0);
        let short = MasterKey::from_hex("abcd").unwrap_err();
        assert_eq!(
            short.to_string(),
            "bad master key: 4 characters, 64 hexadecimal digits expected"
        );
        assert!(MasterKey::from_hex(&"zz".repeat(32)).is_err());
        assert!(MasterKey::from_hex(&"é".repeat(32)).is_err());
        // A sign is not a digit (a pair-wise integer parse took "+f" as 15).
        assert!(MasterKey::from_hex(&format!("+f{}", "00".repeat(31))).is_err());
    }

    #[test]
    fn the_cache_is_bounded_and_forgets_after_its_ttl() {
        let cache = KeyCache::new(2, Duration::from_millis(50));
        cache.put("a", OwnerKey::Erased);
        cache.put("b", OwnerKey::Erased);
        cache.put("c", OwnerKey::Erased);
        assert_eq!(cache.len(), 2);
        assert!(cache.get("a").is_none(), "the oldest was evicted");
        assert!(matches!(cache.get("c"), Some(OwnerKey::Erased)));
        cache.forget("c");
        assert!(cache.get("c").is_none());
        std::thread::sleep(Duration::from_millis(60));
        assert!(cache.get("b").is_none(), "stale after the ttl");
    }
}
