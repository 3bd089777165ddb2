//! `tributary-bench`: the MQTT load generator behind `tributary bench`.
//!
//! Three modes ([`Mode`]): `pub` runs N publishers sending M messages each
//! (optionally with K subscribers in the same run, for end-to-end figures),
//! `sub` runs subscribers for publishers in another process, and `conn` opens
//! idle connections. Every payload carries a [`payload::Header`] (publisher,
//! sequence number, send time), so subscribers count received, lost and
//! duplicated messages and measure publish→receive latency; publishers
//! measure publish→acknowledgement latency.
//!
//! - [`BenchConfig`] says what to run; [`run`] runs it and returns a
//!   [`BenchReport`], which prints as a human summary (`Display`) or one JSON
//!   line ([`BenchReport::to_json`]).
//! - The modes share the small MQTT client of `tributary-client`; its
//!   [`Error`] is this crate's error too, as every failure of a run is a
//!   connection's or the configuration's.
//! - [`stats`] holds the latency histograms and loss/duplicate accounting.
//!
//! ```no_run
//! # async fn example() -> tributary_bench::Result<()> {
//! use tributary_bench::{BenchConfig, Mode};
//!
//! let report = tributary_bench::run(BenchConfig {
//!     mode: Mode::Pub,
//!     port: 1883,
//!     clients: 4,
//!     messages: 10_000,
//!     subscribers: 1,
//!     ..BenchConfig::default()
//! })
//! .await?;
//! println!("{report}");
//! assert_eq!(report.lost, 0);
//! # Ok(())
//! # }
//! ```

mod config;
mod conn_mode;
pub mod payload;
mod pub_mode;
mod report;
mod run;
mod shared;
pub mod stats;
mod sub_mode;

pub use config::{BenchConfig, Mode};
pub use report::{BenchReport, Stop};
pub use run::{run, run_with_ready};
pub use tributary_client::{Error, Result, TlsConfig};
