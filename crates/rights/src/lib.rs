//! Owners' rights over their data (principle 8 of docs/architecture.md):
//! nothing leaves without consent, everything that leaves is recorded, and
//! erasure reaches every copy.
//!
//! This crate holds the parts that are neither storage nor HTTP, so that the
//! broker, the pipeline and the API share one definition of each:
//! consents and their signed receipts, the audit log's entries, and the
//! per-owner encryption of payloads that makes the copies an append-only log
//! or Kafka keeps erasable by destroying a key. No I/O beyond what each
//! module documents.
//!
//! - [`purpose`]: the DPV purposes a consent may name.
//! - [`consent`]: a service's request, its states, and [`consent::LiveConsents`],
//!   the table a node enforces.
//! - [`filter`]: what of one message a service may receive under a consent.
//! - [`receipt`]: Kantara v1.1 receipts signed as JWS (EdDSA, Ed25519), and the JWKS.
//! - [`audit`]: audit entries and the aggregation of MQTT deliveries.
//! - [`pack`]: a pooled pack's release — budgets, the k-participant floor,
//!   per-participant contribution bounds and the noisy figures — on
//!   [`noise`], the one source of differentially private noise (OpenDP's
//!   Laplace mechanism).
//!
//! docs/consent.md describes the flow.

//! # Per-owner encryption
//!
//! - [`seal`]: [`seal::Sealer`] seals a payload under an owner's
//!   [`seal::DataKey`] (AES-256-GCM); [`seal::open`] opens it; the envelope's
//!   byte layout is in that module.
//! - [`keyring`]: the [`keyring::MasterKey`] that wraps data keys for the
//!   store, and [`keyring::KeyCache`], the bounded cache of unwrapped keys
//!   a node keeps in front of the store.
//! - [`owner_keys`]: [`owner_keys::Keyring`], what the broker, the pipeline
//!   and the API ask for keys: it seals for an owner (making the owner's key
//!   on first use) and opens what consumers read, through a
//!   [`owner_keys::KeyStore`] that the caller implements on its storage.
//! - [`erased`]: [`erased::Erasures`], what a reader that sends records on
//!   asks so that an erased device's or time range's records are not sent
//!   again (the log still holds them under a live key).
//!
//! ```
//! use tributary_rights::keyring::MasterKey;
//! use tributary_rights::seal::{open, DataKey, Sealer};
//!
//! let master = MasterKey::generate()?;
//! let key = DataKey::generate()?;
//! let wrapped = master.wrap("ann", &key)?; // what the store keeps
//! let mut sealer = Sealer::new(std::sync::Arc::new(key))?;
//! let sealed = sealer.seal("ann", b"[{\"n\":\"hr\",\"v\":61}]")?;
//! let key = master.unwrap("ann", sealer.key_id(), &wrapped)?;
//! assert_eq!(open(&key, "ann", &sealed)?, b"[{\"n\":\"hr\",\"v\":61}]");
//! # Ok::<(), tributary_rights::Error>(())
//! ```

pub mod audit;
pub mod consent;
pub mod erased;
pub mod filter;
mod gcm;
pub mod keyring;
pub mod noise;
pub mod owner_keys;
pub mod pack;
pub mod purpose;
pub mod receipt;
pub mod seal;

/// Why sealing, opening or a key failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Error {
    // The input is at fault.
    #[error("payload is not sealed")]
    NotSealed,
    #[error("sealed payload of unknown version {0}")]
    UnknownVersion(u8),
    #[error("sealed payload truncated: {len} bytes, at least {min} needed")]
    Truncated { len: usize, min: usize },
    #[error("sealed under key {wanted:016x}, not under key {given:016x}")]
    WrongKey { wanted: u64, given: u64 },
    #[error("sealed payload does not authenticate (tampered, or another key or owner)")]
    Unauthentic,
    // Configuration or stored keys are at fault.
    #[error("bad master key: {0}")]
    BadMasterKey(String),
    #[error("bad wrapped key: {0}")]
    BadWrappedKey(String),
    #[error("key store: {0}")]
    KeyStore(String),
    // The platform failed.
    #[error("no randomness from the operating system: {0}")]
    Random(String),
}

pub type Result<T, E = Error> = std::result::Result<T, E>;
