//! The MQTT broker: accepts MQTT 3.1.1 and 5.0 clients, appends every
//! publish to the durable log before acknowledging it, and delivers to
//! subscribers what it reads back from the log.
//!
//! - [`Broker`] holds what one node's connections share (the log and where
//!   publishes are made durable, the session registry, retained messages);
//!   [`Broker::open`] builds it from the data dir and the log, and
//!   [`Broker::run`] serves the [`Listeners`] (MQTT over TCP, TLS,
//!   WebSocket, secure WebSocket) until a shutdown future resolves.
//!   [`Broker::serve_io`] serves one connection over any byte stream.
//! - [`BrokerConfig`] with [`MqttConfig`] and [`LimitsConfig`] carries the
//!   documented defaults.
//! - Sessions keep their undelivered messages as a cursor into the log
//!   (see `session`), so persistent sessions survive broker restarts.
//!
//! ```no_run
//! # async fn example() -> Result<(), Box<dyn std::error::Error>> {
//! use tributary_broker::{Broker, BrokerConfig, Listeners};
//! use tributary_log::{Log, LogConfig};
//!
//! let log = Log::open(LogConfig::new("./data/log"))?;
//! let mut config = BrokerConfig::default();
//! config.mqtt.allow_anonymous = true;
//! let broker = Broker::open(config.clone(), log, "./data".as_ref()).await?;
//! let listeners = Listeners::bind(&config).await?;
//! broker.run(listeners, async { let _ = tokio::signal::ctrl_c().await; }).await?;
//! # Ok(()) }
//! ```

mod acl;
mod broker;
mod cluster;
mod config;
mod connection;
mod durable;
mod erasure;
mod error;
mod kafka_tail;
mod keys;
mod listener;
mod node_id;
mod orphans;
mod persist;
mod plaintexts;
mod proxy;
mod rate;
mod reader;
mod retained;
mod server;
mod session;
mod shared;
mod stats;
mod tls;
mod transport;
mod upkeep;
mod websocket;

pub use broker::Broker;
pub use config::{BrokerConfig, LimitsConfig, ListenerConfig, ListenerKind, MqttConfig, TlsConfig};
pub use error::{Error, Result};
pub use listener::Listeners;
pub use retained::{RetainedScope, RetainedUsage};
pub use stats::{BrokerStats, LatencySnapshot};
