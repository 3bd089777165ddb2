//! Broker configuration: listeners and limits, with the defaults operators get
//! when they set nothing.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use serde::Deserialize;

/// The `[mqtt]` table of the config file.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct MqttConfig {
    /// Address of the plain-TCP MQTT listener.
    pub listen: SocketAddr,
    /// Lets clients connect without credentials. Honoured only when `listen`
    /// is a loopback address: it exists for trying Tributary out and for tests.
    pub allow_anonymous: bool,
    /// Every connection starts with a PROXY protocol v2 header (from
    /// HAProxy's `send-proxy-v2`) that names the client's address. Off: a
    /// PROXY header is refused.
    pub proxy_protocol: bool,
    /// `[mqtt.tls]`: MQTT over TLS (needs `[tls]`); off unless present.
    pub tls: Option<ListenerConfig>,
    /// `[mqtt.ws]`: MQTT over WebSocket, path `/mqtt`; off unless present.
    pub ws: Option<ListenerConfig>,
    /// `[mqtt.wss]`: MQTT over secure WebSocket (needs `[tls]`); off unless present.
    pub wss: Option<ListenerConfig>,
}

/// One more listener: where, and whether it expects PROXY headers.
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct ListenerConfig {
    /// Required: each kind's usual address is in docs/configuration.md.
    pub listen: SocketAddr,
    #[serde(default)]
    pub proxy_protocol: bool,
}

impl ListenerConfig {
    /// MQTT over TLS when only `[tls]` is set: every interface, port 8883
    /// (registered for MQTT over TLS).
    pub fn default_tls() -> Self {
        ListenerConfig {
            listen: SocketAddr::from(([0, 0, 0, 0], 8883)),
            proxy_protocol: false,
        }
    }
}

/// The `[tls]` table: the server's certificate for the TLS and secure
/// WebSocket listeners, and optional client-certificate authentication.
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct TlsConfig {
    /// PEM file with the server certificate, followed by its chain.
    pub cert_file: PathBuf,
    /// PEM file with the certificate's private key (PKCS#8, PKCS#1 or SEC1).
    pub key_file: PathBuf,
    /// PEM file with the CA certificates that sign device certificates.
    /// Set: a client may present a certificate signed by one of them, and
    /// its subject common name is the device it authenticates as.
    #[serde(default)]
    pub client_ca_file: Option<PathBuf>,
    /// With `client_ca_file`: refuse TLS clients without a certificate
    /// (otherwise they may authenticate with a user name and token).
    #[serde(default)]
    pub require_client_cert: bool,
}

impl Default for MqttConfig {
    fn default() -> Self {
        MqttConfig {
            listen: SocketAddr::from(([127, 0, 0, 1], 1883)),
            allow_anonymous: false,
            proxy_protocol: false,
            tls: None,
            ws: None,
            wss: None,
        }
    }
}

/// The `[limits]` table: every per-connection resource is bounded here.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LimitsConfig {
    /// Connections beyond this are answered with CONNACK "server busy" and closed.
    pub max_connections: usize,
    /// Largest packet accepted (and, in 5.0, announced as Maximum Packet Size).
    pub max_packet_size: usize,
    /// Inbound QoS 1/2 publishes a client may have unacknowledged. 5.0 clients
    /// are told in CONNACK and disconnected with 0x93 when they exceed it;
    /// 3.1.1 clients are simply not read from until acknowledgements go out.
    pub receive_maximum: u16,
    /// Outbound QoS 1/2 messages awaiting the client's acknowledgement; the
    /// smaller of this and a 5.0 client's Receive Maximum applies.
    pub inflight: u16,
    /// A connection that sends no CONNECT within this many milliseconds is closed.
    pub connect_timeout_ms: u64,
    /// Upper bound for a persistent session's expiry in seconds. 3.1.1
    /// sessions without clean session expire after this long offline, and a
    /// 5.0 client's larger Session Expiry Interval is lowered to it (and told so).
    pub max_session_expiry_secs: u32,
    /// Bytes of outgoing data buffered per connection before the broker
    /// stops reading from that client and stops delivering to it.
    pub max_write_buffer: usize,
    /// Topic aliases a 5.0 client may set on its publishes (announced as
    /// Topic Alias Maximum); 0 turns inbound aliases off.
    pub topic_alias_maximum: u16,
    /// Longest keep-alive granted in seconds; a 5.0 client asking for more
    /// (or for none, 0) is told this value as Server Keep Alive. 0: no cap.
    pub max_keep_alive_secs: u16,
    /// Subscriptions one session may hold; further filters get SUBACK
    /// 0x97 Quota exceeded (3.1.1: 0x80). 0: no limit.
    pub max_subscriptions: u32,
    /// Publishes per second one authenticated client may send (a token
    /// bucket allowing one second of burst); beyond it the broker stops
    /// reading from that client until it may go on (the client is slowed,
    /// nothing is lost). Anonymous loopback clients are not limited. 0: no limit.
    pub max_messages_per_sec: u32,
    /// Publish payload bytes per second one client may send, handled like
    /// `max_messages_per_sec`. 0: no limit.
    pub max_bytes_per_sec: u64,
    /// New connections per second from one source address (the PROXY
    /// header's address behind a load balancer); beyond it CONNACK 0x9F
    /// Connection rate exceeded (3.1.1: return code 3), then close. 0: no limit.
    pub max_connections_per_sec_per_source: u32,
    /// Argon2 password and token checks running at once (each takes 19 MiB
    /// for tens of milliseconds); further CONNECTs wait for one, at most
    /// `connect_timeout_ms`, then get CONNACK 0x89 Server busy. 0: one per
    /// core, at least two. Shared with the HTTP API's login.
    pub max_password_checks: usize,
    /// Retained messages one owner's devices and commands may keep (an
    /// authenticated service or admin counts as its own owner); a retained
    /// PUBLISH beyond it is refused: 5.0 PUBACK/PUBREC 0x97 Quota exceeded,
    /// otherwise the connection is closed. 0: no limit.
    pub max_retained_per_owner: u32,
    /// Bytes (topic plus payload) of the retained messages one owner may
    /// keep, enforced like `max_retained_per_owner`. 0: no limit.
    pub max_retained_bytes_per_owner: u64,
}

impl Default for LimitsConfig {
    fn default() -> Self {
        LimitsConfig {
            max_connections: 10_000,
            max_packet_size: 1024 * 1024,
            receive_maximum: 256,
            inflight: 256,
            connect_timeout_ms: 10_000,
            max_session_expiry_secs: 7 * 24 * 3600,
            max_write_buffer: 1024 * 1024,
            topic_alias_maximum: 64,
            max_keep_alive_secs: 0,
            max_subscriptions: 100,
            max_messages_per_sec: 1_000,
            max_bytes_per_sec: 1024 * 1024,
            max_connections_per_sec_per_source: 1_000,
            max_password_checks: 0,
            max_retained_per_owner: 1_000,
            max_retained_bytes_per_owner: 16 * 1024 * 1024,
        }
    }
}

impl LimitsConfig {
    pub fn connect_timeout(&self) -> Duration {
        Duration::from_millis(self.connect_timeout_ms)
    }
}

/// What a listener speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ListenerKind {
    /// MQTT over TCP.
    Tcp,
    /// MQTT over TLS.
    Tls,
    /// MQTT over WebSocket, path `/mqtt`.
    Ws,
    /// MQTT over WebSocket over TLS.
    Wss,
}

impl ListenerKind {
    pub fn encrypted(self) -> bool {
        matches!(self, ListenerKind::Tls | ListenerKind::Wss)
    }

    /// The URL scheme clients use for it.
    pub fn scheme(self) -> &'static str {
        match self {
            ListenerKind::Tcp => "mqtt",
            ListenerKind::Tls => "mqtts",
            ListenerKind::Ws => "ws",
            ListenerKind::Wss => "wss",
        }
    }
}

impl std::fmt::Display for ListenerKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            ListenerKind::Tcp => "mqtt",
            ListenerKind::Tls => "mqtt.tls",
            ListenerKind::Ws => "mqtt.ws",
            ListenerKind::Wss => "mqtt.wss",
        })
    }
}

/// Everything the broker needs besides the log.
#[derive(Debug, Clone, Default)]
pub struct BrokerConfig {
    pub mqtt: MqttConfig,
    pub limits: LimitsConfig,
    pub tls: Option<TlsConfig>,
    /// Set: publishes are made durable in Kafka (acknowledged only once
    /// Kafka has them), and the local log is fed from Kafka for delivery.
    pub kafka: Option<tributary_kafka::KafkaConfig>,
}

impl BrokerConfig {
    /// Every listener that is on, with its kind. Setting `[tls]` alone
    /// turns MQTT over TLS on at its default address (0.0.0.0:8883).
    pub fn listeners(&self) -> Vec<(ListenerKind, ListenerConfig)> {
        let mut all = vec![(
            ListenerKind::Tcp,
            ListenerConfig {
                listen: self.mqtt.listen,
                proxy_protocol: self.mqtt.proxy_protocol,
            },
        )];
        let tls = match (&self.mqtt.tls, &self.tls) {
            (None, Some(_)) => Some(ListenerConfig::default_tls()),
            (tls, _) => tls.clone(),
        };
        for (kind, listener) in [
            (ListenerKind::Tls, tls),
            (ListenerKind::Ws, self.mqtt.ws.clone()),
            (ListenerKind::Wss, self.mqtt.wss.clone()),
        ] {
            if let Some(listener) = listener {
                all.push((kind, listener));
            }
        }
        all
    }

    /// Checks values that would make the broker misbehave, with a message
    /// naming the key.
    pub fn validate(&self) -> Result<(), String> {
        let l = &self.limits;
        if l.max_connections == 0 {
            return Err("limits.max_connections must be at least 1".into());
        }
        if !(16..=268_435_460).contains(&l.max_packet_size) {
            return Err("limits.max_packet_size must be between 16 and 268435460 bytes".into());
        }
        if l.receive_maximum == 0 {
            return Err("limits.receive_maximum must be at least 1".into());
        }
        if l.inflight == 0 {
            return Err("limits.inflight must be at least 1".into());
        }
        if l.connect_timeout_ms == 0 {
            return Err("limits.connect_timeout_ms must be at least 1".into());
        }
        for (kind, listener) in self.listeners() {
            if self.mqtt.allow_anonymous && !listener.listen.ip().is_loopback() {
                return Err(format!(
                    "mqtt.allow_anonymous is honoured only when every listener is on loopback, \
                     and the {kind} listener is on {}",
                    listener.listen
                ));
            }
            if kind.encrypted() && self.tls.is_none() {
                return Err(format!(
                    "the {kind} listener needs a certificate: set [tls] cert_file and key_file"
                ));
            }
        }
        if let Some(tls) = &self.tls {
            if tls.require_client_cert && tls.client_ca_file.is_none() {
                return Err("tls.require_client_cert needs tls.client_ca_file".into());
            }
        }
        Ok(())
    }
}
