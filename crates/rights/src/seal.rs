//! Sealing one payload under its owner's data key (AES-256-GCM), and
//! opening it again. No I/O beyond drawing random nonce prefixes.
//!
//! # Envelope layout (version 1)
//!
//! A sealed payload replaces the MQTT payload in the log and in Kafka; every
//! other field of the record (topic, owner, device, headers) stays as it was.
//!
//! ```text
//! offset  size  field
//! 0       4     magic        0x00 'T' 'R' 'S' — a NUL first byte, which no
//!                            SenML JSON or CBOR pack starts with
//! 4       1     version      1
//! 5       8     key id       u64 little-endian: which data key of the owner
//! 13      12    nonce        8 bytes drawn per sealer + u32 LE counter
//! 25      n     ciphertext   the payload, AES-256-GCM encrypted
//! 25+n    16    tag          the GCM authentication tag
//! ```
//!
//! The associated data is the 25-byte header followed by the owner's id in
//! UTF-8, so a sealed payload opens only under its own header and owner: it
//! cannot be moved to another owner's record, nor its key id rewritten.
//!
//! Nonces: a [`Sealer`] draws an 8-byte random prefix when made and counts
//! the last 4 bytes up, drawing a new prefix before the counter would wrap,
//! so one sealer never repeats a nonce and two sealers of one key collide
//! only if their random prefixes do (2^-64 per pair).

use std::sync::Arc;

use zeroize::{Zeroize, ZeroizeOnDrop};

use crate::gcm::GcmKey;
use crate::{Error, Result};

/// The first bytes of every sealed payload.
pub const MAGIC: [u8; 4] = [0x00, b'T', b'R', b'S'];
/// The envelope version this code writes and reads.
pub const VERSION: u8 = 1;
/// Bytes before the ciphertext: magic, version, key id, nonce.
pub const HEADER_LEN: usize = 4 + 1 + 8 + 12;
/// Bytes of the GCM tag after the ciphertext.
pub const TAG_LEN: usize = 16;
/// What sealing adds to a payload.
pub const OVERHEAD: usize = HEADER_LEN + TAG_LEN;

/// An owner's 256-bit data key with its id; zeroed when dropped.
///
/// The expanded AES key schedule is made once, on first use, and shared by
/// everyone holding the key (a connection's sealer, the subscribers' and
/// the sinks' opening): expanding it per message would cost more than
/// encrypting a small payload.
#[derive(Zeroize, ZeroizeOnDrop)]
pub struct DataKey {
    id: u64,
    bytes: [u8; 32],
    #[zeroize(skip)]
    cipher: std::sync::OnceLock<GcmKey>,
}

impl Clone for DataKey {
    fn clone(&self) -> DataKey {
        DataKey::from_parts(self.id, self.bytes)
    }
}

impl std::fmt::Debug for DataKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never print key material, not even in a debug log.
        write!(f, "DataKey({:016x})", self.id)
    }
}

impl DataKey {
    /// A fresh random key with a fresh random id.
    pub fn generate() -> Result<DataKey> {
        let mut bytes = [0u8; 32];
        let mut id = [0u8; 8];
        getrandom::getrandom(&mut bytes).map_err(|e| Error::Random(e.to_string()))?;
        getrandom::getrandom(&mut id).map_err(|e| Error::Random(e.to_string()))?;
        Ok(DataKey::from_parts(u64::from_le_bytes(id), bytes))
    }

    /// The key `id` made of `bytes` (as unwrapped from the store).
    pub fn from_parts(id: u64, bytes: [u8; 32]) -> DataKey {
        DataKey {
            id,
            bytes,
            cipher: std::sync::OnceLock::new(),
        }
    }

    pub fn id(&self) -> u64 {
        self.id
    }

    pub(crate) fn bytes(&self) -> &[u8; 32] {
        &self.bytes
    }

    fn cipher(&self) -> &GcmKey {
        self.cipher.get_or_init(|| GcmKey::new(&self.bytes))
    }
}

/// Whether `payload` is a sealed envelope (by its magic and version; whether
/// it opens is another matter).
pub fn is_sealed(payload: &[u8]) -> bool {
    payload.len() >= OVERHEAD && payload[..4] == MAGIC && payload[4] == VERSION
}

/// The id of the key a sealed payload needs, or `None` when it is not one.
pub fn key_id(payload: &[u8]) -> Option<u64> {
    is_sealed(payload).then(|| u64::from_le_bytes(payload[5..13].try_into().expect("8 bytes")))
}

/// Seals payloads of one owner under one key; keeps the nonce sequence, so
/// one sealer is used by one writer at a time (a connection, a bridge).
///
/// Small (a shared key, a prefix, a counter): every device connection holds
/// one, most of them idle; the key's expanded schedule is shared.
pub struct Sealer {
    key: Arc<DataKey>,
    prefix: [u8; 8],
    counter: u32,
    /// The count of erasures its keyring had taken in when the key was
    /// last found live (`Keyring::sealer_still_live`); `None`: never checked.
    pub(crate) live_as_of: Option<u64>,
}

impl std::fmt::Debug for Sealer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Sealer").field("key", &self.key).finish()
    }
}

impl Sealer {
    pub fn new(key: Arc<DataKey>) -> Result<Sealer> {
        Ok(Sealer {
            key,
            prefix: random_prefix()?,
            counter: 0,
            live_as_of: None,
        })
    }

    pub fn key_id(&self) -> u64 {
        self.key.id
    }

    /// The envelope of `plaintext` for `owner`.
    pub fn seal(&mut self, owner: &str, plaintext: &[u8]) -> Result<Vec<u8>> {
        if self.counter == u32::MAX {
            self.prefix = random_prefix()?;
            self.counter = 0;
        }
        let mut nonce = [0u8; 12];
        nonce[..8].copy_from_slice(&self.prefix);
        nonce[8..].copy_from_slice(&self.counter.to_le_bytes());
        self.counter += 1;

        let mut header = [0u8; HEADER_LEN];
        header[..4].copy_from_slice(&MAGIC);
        header[4] = VERSION;
        header[5..13].copy_from_slice(&self.key.id.to_le_bytes());
        header[13..].copy_from_slice(&nonce);
        let mut out = Vec::with_capacity(plaintext.len() + OVERHEAD);
        out.extend_from_slice(&header);
        with_associated_data(&header, owner, |aad| {
            self.key.cipher().seal_to(nonce, aad, plaintext, &mut out)
        });
        Ok(out)
    }
}

/// The plaintext of the envelope `sealed` of `owner`, under `key`.
pub fn open(key: &DataKey, owner: &str, sealed: &[u8]) -> Result<Vec<u8>> {
    let (header, body) = sealed.split_at(sealed.len().min(HEADER_LEN));
    let mut plain = body.to_vec();
    let len = open_in_place(key, owner, header, &mut plain)?;
    plain.truncate(len);
    Ok(plain)
}

/// Opens an envelope of `owner` split in two: its `header` (the first
/// [`HEADER_LEN`] bytes), and a copy of the rest (ciphertext, then tag) that
/// the caller made in `body`. Returns the length of the plaintext, which is
/// then at the start of `body`. For a reader that opens straight into a
/// buffer of its own (the broker's write buffer) instead of allocating one
/// per payload.
pub fn open_in_place(key: &DataKey, owner: &str, header: &[u8], body: &mut [u8]) -> Result<usize> {
    if header.len() < 5 || header[..4] != MAGIC {
        return Err(Error::NotSealed);
    }
    if header[4] != VERSION {
        return Err(Error::UnknownVersion(header[4]));
    }
    let len = header.len() + body.len();
    if header.len() < HEADER_LEN || len < OVERHEAD {
        return Err(Error::Truncated { len, min: OVERHEAD });
    }
    let id = u64::from_le_bytes(header[5..13].try_into().expect("8 bytes"));
    if id != key.id {
        return Err(Error::WrongKey {
            wanted: id,
            given: key.id,
        });
    }
    with_associated_data(&header[..HEADER_LEN], owner, |aad| {
        key.cipher()
            .open_in_place(&header[13..HEADER_LEN], aad, body)
    })
    .ok_or(Error::Unauthentic)
}

/// Calls `f` with the associated data of an envelope: its header, then the
/// owner. Built on the stack, as it is made for every payload sealed and
/// every one opened: room for any account name (at most 64 bytes), and no
/// more, since the buffer is zeroed each time.
fn with_associated_data<R>(header: &[u8], owner: &str, f: impl FnOnce(&[u8]) -> R) -> R {
    const ON_STACK: usize = HEADER_LEN + 64;
    let len = header.len() + owner.len();
    if len > ON_STACK {
        return f(&[header, owner.as_bytes()].concat());
    }
    let mut aad = [0u8; ON_STACK];
    aad[..header.len()].copy_from_slice(header);
    aad[header.len()..len].copy_from_slice(owner.as_bytes());
    f(&aad[..len])
}

fn random_prefix() -> Result<[u8; 8]> {
    let mut prefix = [0u8; 8];
    getrandom::getrandom(&mut prefix).map_err(|e| Error::Random(e.to_string()))?;
    Ok(prefix)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sealed(owner: &str, plaintext: &[u8]) -> (DataKey, Vec<u8>) {
        let key = DataKey::generate().expect("random");
        let mut sealer = Sealer::new(Arc::new(key.clone())).expect("random");
        let out = sealer.seal(owner, plaintext).expect("seal");
        (key, out)
    }

    #[test]
    fn a_sealed_payload_opens_to_the_plaintext_and_does_not_contain_it() {
        let plaintext = br#"[{"n":"heart_rate","v":61.25}]"#;
        let (key, out) = sealed("ann", plaintext);
        assert!(is_sealed(&out));
        assert_eq!(key_id(&out), Some(key.id()));
        assert_eq!(out.len(), plaintext.len() + OVERHEAD);
        assert!(!out.windows(5).any(|w| w == b"61.25"));
        assert_eq!(open(&key, "ann", &out).expect("open"), plaintext);
    }

    #[test]
    fn an_empty_payload_round_trips() {
        let (key, out) = sealed("ann", b"");
        assert_eq!(open(&key, "ann", &out).expect("open"), b"");
    }

    #[test]
    fn two_seals_of_one_payload_differ() {
        let key = DataKey::generate().expect("random");
        let mut sealer = Sealer::new(Arc::new(key)).expect("random");
        let a = sealer.seal("ann", b"same").expect("seal");
        let b = sealer.seal("ann", b"same").expect("seal");
        assert_ne!(a, b, "nonces must not repeat");
    }

    #[test]
    fn another_key_with_the_same_id_is_refused_as_unauthentic() {
        let (key, out) = sealed("ann", b"secret");
        let other = DataKey::from_parts(key.id(), [7; 32]);
        assert_eq!(open(&other, "ann", &out), Err(Error::Unauthentic));
    }

    #[test]
    fn a_key_of_another_id_is_named_in_the_error() {
        let (key, out) = sealed("ann", b"secret");
        let other = DataKey::generate().expect("random");
        assert_eq!(
            open(&other, "ann", &out),
            Err(Error::WrongKey {
                wanted: key.id(),
                given: other.id()
            })
        );
    }

    #[test]
    fn another_owner_cannot_open_it() {
        let (key, out) = sealed("ann", b"secret");
        assert_eq!(open(&key, "bob", &out), Err(Error::Unauthentic));
    }

    #[test]
    fn an_owner_too_long_for_the_stack_is_bound_all_through() {
        // The associated data leaves the stack beyond the 25-byte header
        // and 64 bytes of owner: every byte of such an owner still counts.
        for len in [63, 64, 65, 400] {
            let owner = "a".repeat(len);
            let (key, out) = sealed(&owner, b"secret");
            assert_eq!(open(&key, &owner, &out).expect("open"), b"secret");
            let other = format!("{}b", &owner[..len - 1]);
            assert_eq!(open(&key, &other, &out), Err(Error::Unauthentic), "{len}");
        }
    }

    #[test]
    fn every_tampered_byte_is_detected() {
        let (key, out) = sealed("ann", b"secret payload");
        // Every byte after the key id: nonce, ciphertext and tag. (A changed
        // magic, version or key id is refused before decryption, tested below.)
        for i in 13..out.len() {
            let mut bad = out.clone();
            bad[i] ^= 0x01;
            assert_eq!(open(&key, "ann", &bad), Err(Error::Unauthentic), "byte {i}");
        }
    }

    #[test]
    fn truncated_input_is_refused_with_its_length() {
        let (key, out) = sealed("ann", b"secret");
        assert_eq!(
            open(&key, "ann", &out[..OVERHEAD - 1]),
            Err(Error::Truncated {
                len: OVERHEAD - 1,
                min: OVERHEAD
            })
        );
        // Shorter than the tag it claims: still no panic, still refused.
        assert_eq!(
            open(&key, "ann", &out[..out.len() - 1]),
            Err(Error::Unauthentic)
        );
        assert_eq!(open(&key, "ann", &out[..3]), Err(Error::NotSealed));
    }

    #[test]
    fn plaintext_and_unknown_versions_are_told_apart() {
        let key = DataKey::generate().expect("random");
        assert_eq!(
            open(&key, "ann", br#"[{"n":"hr","v":1}]"#),
            Err(Error::NotSealed)
        );
        assert!(!is_sealed(br#"[{"n":"hr","v":1}]"#));
        let (key, mut out) = sealed("ann", b"x");
        out[4] = 9;
        assert_eq!(open(&key, "ann", &out), Err(Error::UnknownVersion(9)));
        assert!(!is_sealed(&out));
    }

    #[test]
    fn errors_read_as_sentences_naming_the_fault() {
        let e = Error::Truncated { len: 3, min: 41 };
        assert_eq!(
            e.to_string(),
            "sealed payload truncated: 3 bytes, at least 41 needed"
        );
    }
}

#[cfg(test)]
mod cost {
    use super::*;

    #[test]
    #[ignore = "prints a timing; run by hand with --release"]
    fn seal_and_open_cost() {
        let key = Arc::new(DataKey::generate().expect("random"));
        let mut sealer = Sealer::new(key.clone()).expect("random");
        let payload = [7u8; 100];
        let n = 1_000_000;
        let t = std::time::Instant::now();
        let mut sealed = Vec::new();
        for _ in 0..n {
            sealed = sealer.seal("benchowner", &payload).expect("seal");
        }
        let seal_ns = t.elapsed().as_nanos() as f64 / n as f64;
        let t = std::time::Instant::now();
        for _ in 0..n {
            assert_eq!(open(&key, "benchowner", &sealed).expect("open").len(), 100);
        }
        let open_ns = t.elapsed().as_nanos() as f64 / n as f64;
        println!("seal {seal_ns:.0} ns, open {open_ns:.0} ns per 100 B");
    }
}
