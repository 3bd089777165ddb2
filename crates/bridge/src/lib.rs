//! `tributary-bridge`: moves messages from any existing MQTT broker into
//! Kafka, at least once.
//!
//! The bridge holds a persistent session on the source broker with a QoS 1
//! subscription to every filter, so the source queues messages while the
//! bridge is away. Each PUBLISH becomes a `tributary_log::Record` and goes
//! to Kafka through the idempotent `acks=all` [`tributary_kafka::Producer`];
//! its PUBACK goes back to the source only once Kafka acknowledged it, and
//! PUBACKs leave in the order the PUBLISHes arrived (MQTT 4.6). A message
//! Kafka does not acknowledge in time is never acknowledged: the bridge
//! drops the connection and the source sends it again.
//!
//! - [`BridgeConfig`] says where to read ([`SourceUrl`], filters,
//!   credentials) and where to write ([`tributary_kafka::KafkaConfig`]).
//! - [`run`] runs the bridge until its shutdown future resolves, reconnecting
//!   with backoff, and returns a [`Summary`].
//! - [`acks::AckQueue`] keeps acknowledgements in arrival order and bounds
//!   the messages in flight.
//!
//! ```no_run
//! # async fn example() -> tributary_bridge::Result<()> {
//! use tributary_bridge::{BridgeConfig, SourceUrl};
//! use tributary_kafka::KafkaConfig;
//!
//! let config = BridgeConfig::new(
//!     "mqtt://broker.example:1883".parse::<SourceUrl>()?,
//!     vec!["sensors/#".into()],
//!     KafkaConfig::from_url("kafka://127.0.0.1:9092").map_err(tributary_bridge::Error::Kafka)?,
//! );
//! let summary = tributary_bridge::run(config, async {
//!     let _ = tokio::signal::ctrl_c().await;
//! })
//! .await?;
//! println!("{summary}");
//! # Ok(())
//! # }
//! ```

pub mod acks;
mod config;
mod error;
mod run;
mod source;
mod stats;

pub use config::{
    BridgeConfig, SourceUrl, DEFAULT_CLIENT_ID, DEFAULT_INFLIGHT, DEFAULT_KEEP_ALIVE_SECS,
    SESSION_EXPIRY_SECS,
};
pub use error::{Error, Result};
pub use run::{run, BACKOFF_MAX, BACKOFF_MIN};
pub use stats::Summary;
