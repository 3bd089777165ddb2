//! The one error type of the crate, grouped by who is at fault, and the
//! words an operator reads for a refusing broker's reason codes.

use tributary_mqtt::{ProtocolVersion, ReasonCode};

pub type Result<T, E = Error> = std::result::Result<T, E>;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    // The operator's configuration.
    /// A flag or URL that cannot work; the message names it.
    #[error("invalid configuration: {0}")]
    Config(String),

    // The source broker.
    /// CONNACK with a failure code.
    #[error("source broker {addr} refused the connection: {}", describe(*.reason, *.version, Packet::ConnAck))]
    Refused {
        addr: String,
        reason: ReasonCode,
        version: ProtocolVersion,
    },
    /// SUBACK with a failure code for one or more filters.
    #[error("source broker refused the subscription to {}", describe_filters(.refused, *.version))]
    SubscribeRefused {
        refused: Vec<(String, ReasonCode)>,
        version: ProtocolVersion,
    },
    /// Connecting, TLS, the socket, or the source closing the connection.
    #[error("source broker: {0}")]
    Source(tributary_client::Error),
    /// A packet the bridge's subscriptions cannot lead to.
    #[error("source broker sent {0}")]
    Unexpected(String),

    // Kafka.
    /// Kafka did not acknowledge a message (error or `--ack-timeout-ms`).
    #[error("kafka did not acknowledge a message: {0}")]
    NotStored(tributary_kafka::Error),
    #[error(transparent)]
    Kafka(tributary_kafka::Error),
}

impl From<tributary_client::Error> for Error {
    fn from(e: tributary_client::Error) -> Self {
        Error::Source(e)
    }
}

impl Error {
    /// Whether trying again cannot help: the operator must change something.
    /// Everything else (the network, either side restarting, Kafka slow) is
    /// retried with backoff.
    pub fn is_fatal(&self) -> bool {
        match self {
            Error::Config(_) | Error::SubscribeRefused { .. } => true,
            Error::Refused { reason, .. } => matches!(
                reason,
                ReasonCode::UnsupportedProtocolVersion
                    | ReasonCode::ClientIdentifierNotValid
                    | ReasonCode::BadUserNameOrPassword
                    | ReasonCode::NotAuthorized
                    | ReasonCode::Banned
                    | ReasonCode::BadAuthenticationMethod
            ),
            Error::Source(e) => matches!(
                e,
                tributary_client::Error::Config(_) | tributary_client::Error::Certificates { .. }
            ),
            Error::Unexpected(_) | Error::NotStored(_) | Error::Kafka(_) => false,
        }
    }
}

#[derive(Clone, Copy)]
enum Packet {
    ConnAck,
    SubAck,
}

/// "return code 5 (not authorized)" for 3.1.1, "reason code 0x87 (not
/// authorized)" for 5.0: the number the broker's log shows and what it means.
fn describe(reason: ReasonCode, version: ProtocolVersion, packet: Packet) -> String {
    let code = match (version, packet) {
        (ProtocolVersion::V311, Packet::ConnAck) => {
            format!("return code {}", reason.to_v311_connack())
        }
        // 3.1.1 SUBACK has one failure code, 0x80, without a reason.
        (ProtocolVersion::V311, Packet::SubAck) => return "return code 0x80 (failure)".into(),
        (ProtocolVersion::V5, _) => format!("reason code {:#04x}", reason as u8),
    };
    format!("{code} ({})", meaning(reason))
}

fn describe_filters(refused: &[(String, ReasonCode)], version: ProtocolVersion) -> String {
    refused
        .iter()
        .map(|(filter, reason)| {
            format!("{filter:?}: {}", describe(*reason, version, Packet::SubAck))
        })
        .collect::<Vec<_>>()
        .join("; ")
}

/// What a CONNACK or SUBACK failure means, with a hint where there is one.
fn meaning(reason: ReasonCode) -> String {
    use ReasonCode::*;
    match reason {
        UnsupportedProtocolVersion => "unsupported protocol version: try the other --mqtt-version",
        ClientIdentifierNotValid => "client identifier not valid: choose another --client-id",
        BadUserNameOrPassword => "bad user name or password",
        NotAuthorized => "not authorized",
        ServerUnavailable => "server unavailable",
        ServerBusy => "server busy",
        Banned => "banned",
        BadAuthenticationMethod => "bad authentication method",
        TopicFilterInvalid => "topic filter invalid",
        QuotaExceeded => "quota exceeded",
        SharedSubscriptionsNotSupported => "shared subscriptions not supported",
        WildcardSubscriptionsNotSupported => "wildcard subscriptions not supported",
        ImplementationSpecificError => "implementation specific error",
        UnspecifiedError => "unspecified error",
        other => return format!("{other:?}"),
    }
    .to_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refusals_name_the_code_and_its_meaning() {
        let refused = Error::Refused {
            addr: "mqtt://broker:1883".into(),
            reason: ReasonCode::NotAuthorized,
            version: ProtocolVersion::V311,
        };
        assert_eq!(
            refused.to_string(),
            "source broker mqtt://broker:1883 refused the connection: return code 5 (not authorized)"
        );
        assert!(refused.is_fatal());
        let busy = Error::Refused {
            addr: "mqtt://broker:1883".into(),
            reason: ReasonCode::ServerBusy,
            version: ProtocolVersion::V5,
        };
        assert!(
            busy.to_string().ends_with("reason code 0x89 (server busy)"),
            "{busy}"
        );
        assert!(!busy.is_fatal());
    }

    #[test]
    fn every_refused_filter_is_named() {
        let e = Error::SubscribeRefused {
            refused: vec![
                ("a/#".into(), ReasonCode::NotAuthorized),
                ("b/+".into(), ReasonCode::QuotaExceeded),
            ],
            version: ProtocolVersion::V5,
        };
        assert_eq!(
            e.to_string(),
            "source broker refused the subscription to \"a/#\": reason code 0x87 (not authorized); \
             \"b/+\": reason code 0x97 (quota exceeded)"
        );
    }
}
