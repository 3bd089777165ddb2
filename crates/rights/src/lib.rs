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
//! - [`pack`]: a pooled pack's release — budgets, the k-participant floor,
//!   per-participant contribution bounds and the noisy figures — on
//!   [`noise`], the one source of differentially private noise (OpenDP's
//!   Laplace mechanism).

pub mod noise;
pub mod pack;
