//! `tributary-client`: a small MQTT client over tokio, speaking through the
//! `tributary-mqtt` codec, for the tools that talk to a broker (`tributary
//! bench`, the MQTT → Kafka bridge).
//!
//! - [`ConnectOptions`] says where to connect and what the CONNECT carries
//!   (protocol version, credentials, keep-alive, [`TlsConfig`]);
//!   [`Connector`] opens connections with them and completes the
//!   CONNECT/CONNACK exchange, giving a [`Client`].
//! - A [`Client`] is two halves that the caller's loop drives from one
//!   `select!`: a [`PacketReader`] that decodes what the broker sends and a
//!   [`PacketWriter`] that batches what goes out. Both keep their buffers
//!   across calls, so they are cancel-safe. The client keeps no state of
//!   its own beyond that (no packet ids, no retries): the caller's loop
//!   decides what an acknowledgement means.
//! - [`Error`] says who is at fault: the caller's options, the network, or
//!   the broker.
//!
//! ```no_run
//! # async fn example() -> tributary_client::Result<()> {
//! use tributary_client::{ConnectOptions, Connector, SessionStart};
//! use tributary_mqtt::{Packet, ProtocolVersion, Publish, QoS};
//!
//! let connector = Connector::new(&ConnectOptions {
//!     host: "127.0.0.1".into(),
//!     port: 1883,
//!     tls: None,
//!     protocol: ProtocolVersion::V5,
//!     keep_alive: 30,
//!     username: None,
//!     password: None,
//!     max_incoming: 1024 * 1024,
//!     session_expiry_secs: 0,
//!     receive_maximum: None,
//! })?;
//! let mut client = connector.connect("sensor-1", SessionStart::Clean).await?;
//! client.writer.queue(&Packet::Publish(Publish {
//!     dup: false,
//!     qos: QoS::AtMostOnce,
//!     retain: false,
//!     topic: "sensors/1".into(),
//!     packet_id: None,
//!     properties: Default::default(),
//!     payload: "21.5".into(),
//! }))?;
//! client.writer.flush().await?;
//! client.disconnect(std::time::Duration::from_secs(1)).await;
//! # Ok(())
//! # }
//! ```

mod connection;
mod error;
mod tls;

pub use connection::{
    Client, ConnectOptions, Connector, PacketReader, PacketWriter, SessionStart, Stream,
    CONNECT_TIMEOUT,
};
pub use error::{Error, Result};
pub use tls::TlsConfig;
