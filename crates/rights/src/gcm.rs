//! AES-256-GCM, the one cipher of payload sealing (`seal.rs`) and key
//! wrapping (`keyring.rs`), through `ring`: its assembly implementation
//! seals a 100-byte payload in a fraction of the time of a portable one,
//! and every message a device sends is sealed once and opened for each
//! subscriber.

use ring::aead::{Aad, LessSafeKey, Nonce, UnboundKey, AES_256_GCM};

/// An expanded AES-256-GCM key.
pub(crate) struct GcmKey(LessSafeKey);

impl GcmKey {
    pub(crate) fn new(bytes: &[u8; 32]) -> GcmKey {
        let key =
            UnboundKey::new(&AES_256_GCM, bytes).expect("a 32-byte key is a valid AES-256 key");
        GcmKey(LessSafeKey::new(key))
    }

    /// Appends the ciphertext of `plaintext` and its 16-byte tag to `out`.
    /// The caller guarantees `nonce` is never used twice with this key.
    pub(crate) fn seal_to(&self, nonce: [u8; 12], aad: &[u8], plaintext: &[u8], out: &mut Vec<u8>) {
        let start = out.len();
        out.extend_from_slice(plaintext);
        let tag = self
            .0
            .seal_in_place_separate_tag(
                Nonce::assume_unique_for_key(nonce),
                Aad::from(aad),
                &mut out[start..],
            )
            .expect("a payload within GCM's length limit");
        out.extend_from_slice(tag.as_ref());
    }

    /// Opens `sealed` (ciphertext then tag) in place: the length of the
    /// plaintext now at its start, or `None` when it does not authenticate
    /// under `nonce` and `aad` (its bytes are then unspecified).
    pub(crate) fn open_in_place(
        &self,
        nonce: &[u8],
        aad: &[u8],
        sealed: &mut [u8],
    ) -> Option<usize> {
        let nonce = Nonce::try_assume_unique_for_key(nonce).ok()?;
        let plain = self.0.open_in_place(nonce, Aad::from(aad), sealed).ok()?;
        Some(plain.len())
    }
}
