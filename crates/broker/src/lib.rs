//! The MQTT broker: accepts MQTT 3.1.1 and 5.0 clients, appends every
//! publish to the durable log before acknowledging it, and delivers to
//! subscribers what it reads back from the log.
//!
//! - [`Broker`] holds the shared state (log, session registry, retained
//!   messages); [`Broker::run`] serves a listener until a shutdown future resolves.
//! - [`BrokerConfig`] with [`MqttConfig`] and [`LimitsConfig`] carries the
//!   documented defaults.
//! - Sessions keep their undelivered messages as a cursor into the log
//!   (see `session`), so persistent sessions survive broker restarts.
//!
//! ```no_run
//! # async fn example() -> Result<(), Box<dyn std::error::Error>> {
//! use tributary_broker::{Broker, BrokerConfig};
//! use tributary_log::{Log, LogConfig};
//!
//! let log = Log::open(LogConfig::new("./data/log"))?;
//! let mut config = BrokerConfig::default();
//! config.mqtt.allow_anonymous = true;
//! let broker = Broker::open(config, log, "./data".as_ref()).await?;
//! let listener = tokio::net::TcpListener::bind("127.0.0.1:1883").await?;
//! broker.run(listener, async { let _ = tokio::signal::ctrl_c().await; }).await?;
//! # Ok(()) }
//! ```

mod acl;
mod config;
mod connection;
mod error;
mod persist;
mod proxy;
mod rate;
mod retained;
mod server;
mod session;
mod shared;
mod wire;

pub use config::{BrokerConfig, LimitsConfig, MqttConfig};
pub use error::{Error, Result};
pub use server::Broker;
