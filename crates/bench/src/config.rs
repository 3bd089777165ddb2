//! What a bench run does: [`BenchConfig`] and its parts.

use std::time::Duration;

use tributary_client::{ConnectOptions, TlsConfig};
use tributary_mqtt::{topic, ProtocolVersion, QoS};

use crate::payload::HEADER_LEN;
use crate::{Error, Result};

/// Session Expiry Interval a bench subscriber's persistent 5.0 session asks
/// for: long enough to come back in a later run, short enough not to leave
/// sessions behind.
const PERSISTENT_SESSION_EXPIRY_SECS: u32 = 3600;

/// The three kinds of load.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// `clients` publishers send `messages` each; optionally `subscribers`
    /// in the same run receive them, for publish→receive figures.
    Pub,
    /// `clients` subscribers receive whatever bench publishers (another
    /// process) send on `filter`.
    Sub,
    /// `clients` idle connections, opened at `connect_rate` and held for `hold`.
    Conn,
}

impl Mode {
    pub fn name(self) -> &'static str {
        match self {
            Mode::Pub => "pub",
            Mode::Sub => "sub",
            Mode::Conn => "conn",
        }
    }
}

/// Everything one `tributary bench` run needs.
#[derive(Debug, Clone)]
pub struct BenchConfig {
    pub mode: Mode,
    /// Broker host name or address (also the TLS server name).
    pub host: String,
    pub port: u16,
    /// Publishers in `pub`, subscribers in `sub`, connections in `conn`.
    pub clients: usize,
    /// Messages each publisher sends.
    pub messages: u64,
    /// Payload bytes per message, header included, so at least
    /// [`HEADER_LEN`].
    pub size: usize,
    /// QoS of the published messages.
    pub qos: QoS,
    /// Target publish rate in messages per second summed over all
    /// publishers; 0 publishes as fast as the broker takes them.
    pub rate: u64,
    pub protocol: ProtocolVersion,
    /// Topic of each publisher; `{client}` is replaced by its index.
    pub topic: String,
    /// Most QoS 1/2 messages a publisher has unacknowledged at once (also
    /// capped by a 5.0 broker's Receive Maximum).
    pub inflight: u16,
    pub username: Option<String>,
    pub password: Option<String>,
    pub tls: Option<TlsConfig>,
    /// Hard stop: the run reports whatever happened by then.
    pub time_limit: Duration,
    /// Subscribers that run alongside the publishers in `pub` mode; each
    /// must receive every message.
    pub subscribers: usize,
    /// Topic filter of every subscriber; `{client}` is replaced by the
    /// subscriber's index. In `pub` mode that pairs subscriber `i` with
    /// publisher `i` (`--topic 'o/{client}' --filter 'o/{client}'`): many
    /// owners, each reading only their own data.
    pub filter: String,
    /// QoS requested for the subscriptions.
    pub sub_qos: QoS,
    /// Subscribers start clean (true) or resume a persistent session.
    pub clean_start: bool,
    /// Client ids are this prefix, the role and the index
    /// (`{prefix}pub-3`); a stable prefix lets persistent subscribers resume.
    pub client_id_prefix: String,
    /// New connections per second in `conn` mode.
    pub connect_rate: u32,
    /// How long `conn` mode holds its connections open once all are made.
    pub hold: Duration,
    /// Keep-alive announced in CONNECT; idle clients ping at half of it.
    pub keep_alive: u16,
    /// How long after the publishers finished the run waits for missing
    /// messages when nothing arrives (and how long `sub` mode waits after
    /// the last message).
    pub quiet: Duration,
    /// Print a progress line on stderr every second.
    pub progress: bool,
}

impl Default for BenchConfig {
    fn default() -> Self {
        BenchConfig {
            mode: Mode::Pub,
            host: "127.0.0.1".into(),
            port: 1883,
            clients: 10,
            messages: 1000,
            size: 100,
            qos: QoS::AtLeastOnce,
            rate: 0,
            protocol: ProtocolVersion::V311,
            topic: "bench/{client}".into(),
            inflight: 64,
            username: None,
            password: None,
            tls: None,
            time_limit: Duration::from_secs(300),
            subscribers: 0,
            filter: "bench/#".into(),
            sub_qos: QoS::AtLeastOnce,
            clean_start: true,
            client_id_prefix: format!("tb{}-", std::process::id()),
            connect_rate: 500,
            hold: Duration::from_secs(10),
            keep_alive: 60,
            quiet: Duration::from_secs(2),
            progress: false,
        }
    }
}

impl BenchConfig {
    /// Checks the fields against each other; every message names the flag.
    pub fn validate(&self) -> Result<()> {
        let bad = |msg: String| Err(Error::Config(msg));
        if self.clients == 0 {
            return bad("--clients must be at least 1".into());
        }
        if self.size < HEADER_LEN {
            return bad(format!(
                "--size must be at least {HEADER_LEN} bytes: the payload carries a \
                 {HEADER_LEN}-byte header (publisher, sequence number, send time)"
            ));
        }
        if self.inflight == 0 {
            return bad("--inflight must be at least 1".into());
        }
        if self.mode == Mode::Pub {
            if self.messages == 0 {
                return bad("--messages must be at least 1".into());
            }
            for client in [0, self.clients - 1] {
                let name = self.topic_for(client);
                if !topic::valid_topic_name(&name) {
                    return bad(format!(
                        "--topic {:?} gives the invalid topic {name:?}",
                        self.topic
                    ));
                }
                if self.subscribers > 0 && !topic::matches(&self.filter_for(client), &name) {
                    return bad(format!(
                        "--filter {:?} does not match the topic {name:?}: the subscribers \
                         would receive nothing",
                        self.filter
                    ));
                }
            }
        }
        if self.mode == Mode::Pub && self.pairs() && self.subscribers != self.clients {
            return bad(format!(
                "--filter {:?} pairs subscriber i with publisher i: --subscribers must \
                 equal --clients ({})",
                self.filter, self.clients
            ));
        }
        if (self.mode == Mode::Sub || self.subscribers > 0)
            && !topic::valid_topic_filter(&self.filter_for(0))
        {
            return bad(format!(
                "--filter {:?} is not a valid topic filter",
                self.filter
            ));
        }
        if self.mode == Mode::Conn && self.connect_rate == 0 {
            return bad("--connect-rate must be at least 1".into());
        }
        if self.password.is_some()
            && self.username.is_none()
            && self.protocol == ProtocolVersion::V311
        {
            return bad("MQTT 3.1.1 allows --password only together with --username".into());
        }
        if self.time_limit.is_zero() {
            return bad("--time-limit must be above 0".into());
        }
        Ok(())
    }

    /// The topic publisher `client` sends to.
    pub fn topic_for(&self, client: usize) -> String {
        self.topic.replace("{client}", &client.to_string())
    }

    /// The topic filter subscriber `index` subscribes to.
    pub fn filter_for(&self, index: usize) -> String {
        self.filter.replace("{client}", &index.to_string())
    }

    /// True when each subscriber has a filter of its own (`{client}` in
    /// `--filter`): in `pub` mode subscriber `i` expects publisher `i` only.
    pub fn pairs(&self) -> bool {
        self.filter.contains("{client}")
    }

    /// The client id of the `index`th client of `role` ("pub", "sub", "conn").
    pub fn client_id(&self, role: &str, index: usize) -> String {
        format!("{}{role}-{index}", self.client_id_prefix)
    }

    /// Largest packet the clients accept from the broker: room for our own
    /// payloads and for ordinary foreign messages.
    pub(crate) fn max_incoming_packet(&self) -> usize {
        (self.size + 64 * 1024).max(1024 * 1024)
    }
}

impl BenchConfig {
    /// How every client of the run connects.
    pub(crate) fn connect_options(&self) -> ConnectOptions {
        ConnectOptions {
            host: self.host.clone(),
            port: self.port,
            tls: self.tls.clone(),
            protocol: self.protocol,
            keep_alive: self.keep_alive,
            username: self.username.clone(),
            password: self.password.clone().map(bytes::Bytes::from),
            max_incoming: self.max_incoming_packet(),
            session_expiry_secs: PERSISTENT_SESSION_EXPIRY_SECS,
            receive_maximum: None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_valid() {
        BenchConfig::default().validate().unwrap();
    }

    #[test]
    fn topic_template_and_client_ids() {
        let config = BenchConfig {
            client_id_prefix: "x-".into(),
            ..BenchConfig::default()
        };
        assert_eq!(config.topic_for(7), "bench/7");
        assert_eq!(config.client_id("sub", 3), "x-sub-3");
    }

    #[test]
    fn a_client_filter_pairs_each_subscriber_with_its_publisher() {
        let config = BenchConfig {
            clients: 3,
            subscribers: 3,
            topic: "o/{client}/senml".into(),
            filter: "o/{client}/+".into(),
            ..BenchConfig::default()
        };
        config.validate().unwrap();
        assert!(config.pairs());
        assert_eq!(config.filter_for(2), "o/2/+");
        let unpaired = BenchConfig {
            subscribers: 1,
            ..config
        };
        let err = unpaired.validate().unwrap_err().to_string();
        assert!(err.contains("--subscribers must equal --clients"), "{err}");
    }

    #[test]
    fn refuses_what_cannot_run() {
        let check = |config: BenchConfig, needle: &str| {
            let err = config.validate().unwrap_err().to_string();
            assert!(err.contains(needle), "{err}");
        };
        check(
            BenchConfig {
                size: 20,
                ..Default::default()
            },
            "--size",
        );
        check(
            BenchConfig {
                clients: 0,
                ..Default::default()
            },
            "--clients",
        );
        check(
            BenchConfig {
                subscribers: 1,
                filter: "other/#".into(),
                ..Default::default()
            },
            "does not match",
        );
        check(
            BenchConfig {
                topic: "bench/+".into(),
                ..Default::default()
            },
            "invalid topic",
        );
        check(
            BenchConfig {
                mode: Mode::Sub,
                filter: "a/#/b".into(),
                ..Default::default()
            },
            "not a valid topic filter",
        );
    }
}
