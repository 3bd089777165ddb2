//! What the bridge connects to and how: the source URL, its filters and
//! credentials, Kafka, and the bounds on messages in flight.

use std::fmt;
use std::path::PathBuf;
use std::str::FromStr;
use std::time::Duration;

use bytes::Bytes;
use tributary_client::ConnectOptions;
use tributary_client::TlsConfig;
use tributary_kafka::KafkaConfig;
use tributary_mqtt::ProtocolVersion;

use crate::{Error, Result};

/// The client id the bridge's persistent session lives under by default.
pub const DEFAULT_CLIENT_ID: &str = "tributary-bridge";
/// The default of [`BridgeConfig::inflight`].
pub const DEFAULT_INFLIGHT: usize = 1000;
/// The default of [`BridgeConfig::keep_alive`], in seconds.
pub const DEFAULT_KEEP_ALIVE_SECS: u16 = 30;
/// Session Expiry Interval (5.0) the bridge asks for: a week, so a bridge
/// that is away over a weekend still finds its messages queued. 3.1.1
/// sessions do not expire unless the broker says so.
pub const SESSION_EXPIRY_SECS: u32 = 7 * 24 * 3600;
/// Largest PUBLISH accepted from the source (5.0: announced as Maximum
/// Packet Size, so the source drops larger ones for us instead of the
/// connection failing).
pub const MAX_INCOMING_PACKET: usize = 16 * 1024 * 1024;

/// `mqtt://HOST[:PORT]` or `mqtts://HOST[:PORT]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SourceUrl {
    pub tls: bool,
    /// Without brackets for IPv6 addresses; also the TLS server name.
    pub host: String,
    pub port: u16,
}

impl FromStr for SourceUrl {
    type Err = Error;

    fn from_str(url: &str) -> Result<SourceUrl> {
        let bad = |why: &str| {
            Error::Config(format!(
                "--from {url:?}: {why} (expected mqtt://HOST[:PORT] or mqtts://HOST[:PORT])"
            ))
        };
        let (tls, rest) = if let Some(rest) = url.strip_prefix("mqtt://") {
            (false, rest)
        } else if let Some(rest) = url.strip_prefix("mqtts://") {
            (true, rest)
        } else {
            return Err(bad("unknown scheme"));
        };
        let rest = rest.strip_suffix('/').unwrap_or(rest);
        if rest.contains('@') {
            return Err(bad(
                "credentials do not go in the URL: use --username and --password-env",
            ));
        }
        if rest.contains('/') || rest.contains('?') {
            return Err(bad("no path or query is allowed"));
        }
        let default_port = if tls { 8883 } else { 1883 };
        let (host, port) = if let Some(v6) = rest.strip_prefix('[') {
            let (host, after) = v6.split_once(']').ok_or_else(|| bad("unclosed ["))?;
            match after {
                "" => (host, None),
                _ => (
                    host,
                    Some(after.strip_prefix(':').ok_or_else(|| bad("junk after ]"))?),
                ),
            }
        } else {
            match rest.rsplit_once(':') {
                Some((host, port)) => (host, Some(port)),
                None => (rest, None),
            }
        };
        if host.is_empty() {
            return Err(bad("no host"));
        }
        let port = match port {
            None => default_port,
            Some(port) => match port.parse::<u16>() {
                Ok(port) if port > 0 => port,
                _ => return Err(bad(&format!("bad port {port:?}"))),
            },
        };
        Ok(SourceUrl {
            tls,
            host: host.to_owned(),
            port,
        })
    }
}

impl fmt::Display for SourceUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let scheme = if self.tls { "mqtts" } else { "mqtt" };
        if self.host.contains(':') {
            write!(f, "{scheme}://[{}]:{}", self.host, self.port)
        } else {
            write!(f, "{scheme}://{}:{}", self.host, self.port)
        }
    }
}

/// Everything one bridge needs. Its `Debug` leaves the password out.
#[derive(Clone)]
pub struct BridgeConfig {
    pub source: SourceUrl,
    /// Topic filters subscribed at QoS 1 on the source.
    pub filters: Vec<String>,
    pub protocol: ProtocolVersion,
    /// Names the persistent session on the source, and is stamped on every
    /// record (its `client_id`, and so the Kafka key).
    pub client_id: String,
    pub username: Option<String>,
    pub password: Option<Bytes>,
    /// CA certificates to trust for `mqtts://`; `None` trusts the system's.
    pub cafile: Option<PathBuf>,
    /// Seconds; the bridge pings at half of it and gives the source up after
    /// one and a half without a packet.
    pub keep_alive: u16,
    /// Brokers, topic rules, default topic and `ack_timeout` (how long a
    /// message may wait for Kafka before the bridge reconnects to the
    /// source instead of acknowledging).
    pub kafka: KafkaConfig,
    /// Most messages received and not yet settled with Kafka; the bridge
    /// stops reading the source while this many are in flight (5.0: also
    /// announced as Receive Maximum).
    pub inflight: usize,
    /// How often a progress line is logged.
    pub progress_interval: Duration,
    /// How long SIGINT/SIGTERM waits for deliveries in flight before the
    /// bridge disconnects (what is left the source redelivers later).
    pub shutdown_grace: Duration,
}

impl fmt::Debug for BridgeConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("BridgeConfig")
            .field("source", &self.source)
            .field("filters", &self.filters)
            .field("protocol", &self.protocol)
            .field("client_id", &self.client_id)
            .field("username", &self.username)
            .field("password", &self.password.as_ref().map(|_| "(hidden)"))
            .field("cafile", &self.cafile)
            .field("keep_alive", &self.keep_alive)
            .field("kafka", &self.kafka)
            .field("inflight", &self.inflight)
            .field("progress_interval", &self.progress_interval)
            .field("shutdown_grace", &self.shutdown_grace)
            .finish()
    }
}

impl BridgeConfig {
    /// A configuration with the defaults for everything but where to read,
    /// what, and where to write.
    pub fn new(source: SourceUrl, filters: Vec<String>, kafka: KafkaConfig) -> BridgeConfig {
        BridgeConfig {
            source,
            filters,
            protocol: ProtocolVersion::V311,
            client_id: DEFAULT_CLIENT_ID.to_owned(),
            username: None,
            password: None,
            cafile: None,
            keep_alive: DEFAULT_KEEP_ALIVE_SECS,
            kafka,
            inflight: DEFAULT_INFLIGHT,
            progress_interval: Duration::from_secs(10),
            shutdown_grace: Duration::from_secs(10),
        }
    }

    pub fn validate(&self) -> Result<()> {
        let bad = |message: String| Err(Error::Config(message));
        if self.filters.is_empty() {
            return bad("at least one --topic FILTER is needed".into());
        }
        for filter in &self.filters {
            if !tributary_mqtt::topic::valid_topic_filter(filter) {
                return bad(format!(
                    "--topic {filter:?} is not a valid MQTT topic filter"
                ));
            }
        }
        if self.client_id.is_empty() {
            return bad("--client-id must not be empty: it names the persistent session".into());
        }
        if !(1..=usize::from(u16::MAX)).contains(&self.inflight) {
            return bad(format!(
                "--inflight {} is not within 1..=65535",
                self.inflight
            ));
        }
        if self.kafka.ack_timeout.is_zero() {
            return bad("--ack-timeout-ms must be above 0".into());
        }
        if self.password.is_some()
            && self.username.is_none()
            && self.protocol == ProtocolVersion::V311
        {
            return bad("MQTT 3.1.1 allows a password only together with --username".into());
        }
        if self.cafile.is_some() && !self.source.tls {
            return bad("--cafile needs an mqtts:// source".into());
        }
        Ok(())
    }

    /// How the source client connects.
    pub(crate) fn connect_options(&self) -> ConnectOptions {
        ConnectOptions {
            host: self.source.host.clone(),
            port: self.source.port,
            tls: self.source.tls.then(|| TlsConfig {
                cafile: self.cafile.clone(),
                insecure: false,
            }),
            protocol: self.protocol,
            keep_alive: self.keep_alive,
            username: self.username.clone(),
            password: self.password.clone(),
            max_incoming: MAX_INCOMING_PACKET,
            session_expiry_secs: SESSION_EXPIRY_SECS,
            receive_maximum: Some(u16::try_from(self.inflight).unwrap_or(u16::MAX)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn url(text: &str) -> SourceUrl {
        text.parse().unwrap_or_else(|e| panic!("{text}: {e}"))
    }

    #[test]
    fn source_urls_with_and_without_port() {
        assert_eq!(
            url("mqtt://broker.example"),
            SourceUrl {
                tls: false,
                host: "broker.example".into(),
                port: 1883
            }
        );
        assert_eq!(
            url("mqtts://broker.example/"),
            SourceUrl {
                tls: true,
                host: "broker.example".into(),
                port: 8883
            }
        );
        assert_eq!(url("mqtt://127.0.0.1:11883").port, 11883);
        let v6 = url("mqtts://[::1]:8884");
        assert_eq!((v6.host.as_str(), v6.port), ("::1", 8884));
        assert_eq!(v6.to_string(), "mqtts://[::1]:8884");
        assert_eq!(url("mqtt://[::1]").port, 1883);
    }

    #[test]
    fn bad_source_urls_say_why() {
        for (bad, why) in [
            ("tcp://host:1883", "unknown scheme"),
            ("host:1883", "unknown scheme"),
            ("mqtt://", "no host"),
            ("mqtt://:1883", "no host"),
            ("mqtt://host:0", "bad port"),
            ("mqtt://host:port", "bad port"),
            ("mqtt://host:1883/topic", "no path"),
            ("mqtt://user:secret@host", "credentials"),
            ("mqtt://[::1", "unclosed"),
        ] {
            let err = bad.parse::<SourceUrl>().expect_err(bad).to_string();
            assert!(err.contains(why), "{bad}: {err}");
            assert!(!err.contains("secret") || bad.contains('@'), "{err}");
        }
    }

    fn config() -> BridgeConfig {
        BridgeConfig::new(
            url("mqtt://127.0.0.1:1883"),
            vec!["sensors/#".into()],
            KafkaConfig::from_url("kafka://127.0.0.1:9092").expect("valid"),
        )
    }

    #[test]
    fn defaults_are_valid() -> Result<()> {
        config().validate()
    }

    #[test]
    fn invalid_settings_are_named() {
        type Change = fn(&mut BridgeConfig);
        let cases: [(&str, Change); 6] = [
            ("--topic", |c| c.filters.clear()),
            ("\"a/#/b\"", |c| c.filters.push("a/#/b".into())),
            ("--client-id", |c| c.client_id.clear()),
            ("--inflight", |c| c.inflight = 70_000),
            ("--username", |c| {
                c.password = Some(Bytes::from_static(b"pw"))
            }),
            ("--cafile", |c| c.cafile = Some("ca.pem".into())),
        ];
        for (named, change) in cases {
            let mut c = config();
            change(&mut c);
            let err = c.validate().expect_err(named).to_string();
            assert!(err.contains(named), "{named}: {err}");
        }
    }

    #[test]
    fn the_source_is_asked_for_a_persistent_session_with_our_window() {
        let mut c = config();
        c.protocol = ProtocolVersion::V5;
        c.inflight = 250;
        let options = c.connect_options();
        assert_eq!(options.receive_maximum, Some(250));
        assert_eq!(options.session_expiry_secs, SESSION_EXPIRY_SECS);
        assert!(options.tls.is_none());
    }

    #[test]
    fn debug_output_hides_the_password() {
        let mut c = config();
        c.username = Some("bridge".into());
        c.password = Some(Bytes::from_static(b"hunter2"));
        let shown = format!("{c:?}");
        assert!(
            shown.contains("bridge") && !shown.contains("hunter2"),
            "{shown}"
        );
    }
}
