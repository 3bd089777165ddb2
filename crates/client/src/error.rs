//! The one error type of the crate, grouped by who is at fault.

use std::io;

use tributary_mqtt::ReasonCode;

pub type Result<T, E = Error> = std::result::Result<T, E>;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    // The caller asked for something impossible.
    /// Options that cannot work (a tool's configuration, a TLS server name);
    /// the message names the field.
    #[error("invalid configuration: {0}")]
    Config(String),
    /// The CA file ([`crate::TlsConfig::cafile`]) could not be read or holds
    /// no certificate.
    #[error("load CA certificates from {path}: {reason}")]
    Certificates { path: String, reason: String },

    // The network or the broker.
    /// TCP connect failed (refused, unreachable, out of file descriptors, …).
    #[error("connect to {addr}: {source}")]
    Connect { addr: String, source: io::Error },
    /// The TLS handshake failed (unknown CA, name mismatch, …).
    #[error("TLS handshake with {host}: {source}")]
    Tls { host: String, source: io::Error },
    /// CONNACK with a failure reason code.
    #[error("broker refused the connection: {0:?}")]
    Refused(ReasonCode),
    /// SUBACK with a failure reason code for the filter.
    #[error("broker refused the subscription to {filter}: {reason:?}")]
    SubscribeRefused { filter: String, reason: ReasonCode },
    /// Bytes from the broker that do not decode as MQTT.
    #[error("invalid packet from the broker: {0}")]
    Protocol(tributary_mqtt::Error),
    /// A well-formed packet that makes no sense at this point of the exchange.
    #[error("unexpected {0} from the broker")]
    Unexpected(&'static str),
    /// The broker disconnected, with a 5.0 reason code when it sent one.
    #[error("broker closed the connection{}", match .0 { Some(r) => format!(" ({r:?})"), None => String::new() })]
    Closed(Option<ReasonCode>),
    /// No CONNACK, SUBACK or write progress within the allowed time.
    #[error("timed out waiting for {0}")]
    Timeout(&'static str),
    /// Reading or writing the socket failed.
    #[error("socket: {0}")]
    Io(#[from] io::Error),

    // Our own fault.
    /// A packet we built was refused by the encoder.
    #[error("encode a packet: {0}")]
    Encode(tributary_mqtt::Error),
}
