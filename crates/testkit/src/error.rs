//! The one error type of the crate, grouped by who is at fault.

use std::time::Duration;

use tributary_mqtt::Packet;

pub type Result<T, E = Error> = std::result::Result<T, E>;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    // The broker did not do what the test expected.
    /// Nothing (or not enough) arrived within the wait.
    #[error("nothing arrived within {within:?} while waiting for {waiting_for}")]
    Timeout {
        waiting_for: &'static str,
        within: Duration,
    },
    /// A packet of another type than the one awaited.
    #[error("expected {expected}, got {got:?}")]
    Unexpected {
        expected: &'static str,
        got: Box<Packet>,
    },
    /// The broker closed the connection while a packet was awaited.
    #[error("the broker closed the connection while waiting for {waiting_for}")]
    Closed { waiting_for: &'static str },
    /// Bytes from the broker that do not decode as MQTT.
    #[error("invalid packet from the broker: {0}")]
    Protocol(tributary_mqtt::Error),

    // Starting the broker.
    #[error("start the broker: {0}")]
    Broker(#[from] tributary_broker::Error),
    #[error("open the log: {0}")]
    Log(#[from] tributary_log::Error),
    /// The broker's task panicked or was cancelled.
    #[error("broker task: {0}")]
    Join(#[from] tokio::task::JoinError),

    // Our own fault.
    /// A packet the test built was refused by the encoder.
    #[error("encode a packet: {0}")]
    Encode(tributary_mqtt::Error),
    /// The temporary data dir, or the socket.
    #[error("I/O: {0}")]
    Io(#[from] std::io::Error),
}
