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

pub mod audit;
pub mod consent;
pub mod filter;
pub mod noise;
pub mod pack;
pub mod purpose;
pub mod receipt;
