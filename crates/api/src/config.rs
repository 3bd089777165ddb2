//! The `[http]` table of the config file ([`HttpFileConfig`]) and the
//! runtime bounds it builds ([`HttpConfig`]): who may sign up, and what one
//! client or one owner can hold of the HTTP side (connections, tokens,
//! live feeds). docs/configuration.md documents each key and what a client
//! sees at the bound.

use std::net::SocketAddr;
use std::time::Duration;

use serde::Deserialize;

/// Whether `POST /api/v1/signup` is open.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Signup {
    /// Open when the HTTP listener is on a loopback address (a person
    /// trying Tributary on their machine), off otherwise: a server
    /// reachable from a network does not let strangers create owners
    /// unless its operator says so.
    #[default]
    Auto,
    /// Anyone who reaches the API may sign up (rate-limited per source).
    Open,
    /// Sign-up answers 403; owners come from `tributary owner add`.
    Off,
}

impl Signup {
    /// Whether sign-up is open on a listener bound to `local` (`None`: the
    /// router is driven without a socket, as in unit tests).
    pub fn is_open_on(self, local: Option<SocketAddr>) -> bool {
        match self {
            Signup::Open => true,
            Signup::Off => false,
            Signup::Auto => local.is_none_or(|addr| addr.ip().is_loopback()),
        }
    }
}

/// `"auto"`, `"open"`, `"off"`; `true`/`false` (the key's first form) mean
/// `"open"`/`"off"`, so older config files keep their meaning.
impl<'de> Deserialize<'de> for Signup {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Raw {
            Bool(bool),
            Word(String),
        }
        match Raw::deserialize(deserializer)? {
            Raw::Bool(true) => Ok(Signup::Open),
            Raw::Bool(false) => Ok(Signup::Off),
            Raw::Word(word) => match word.as_str() {
                "auto" => Ok(Signup::Auto),
                "open" => Ok(Signup::Open),
                "off" => Ok(Signup::Off),
                _ => Err(serde::de::Error::custom(format!(
                    "signup must be \"auto\", \"open\" or \"off\", not {word:?}"
                ))),
            },
        }
    }
}

/// The `[http]` table: where the HTTP API listens, whether it takes
/// sign-ups, and its per-client and per-owner bounds.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct HttpFileConfig {
    pub listen: SocketAddr,
    /// Who may sign up as an owner through the API.
    pub signup: Signup,
    /// Sign-ups one source address may make per hour (token bucket, the
    /// whole hour's worth as burst): a stranger cannot fill the accounts
    /// file. 0: no limit.
    pub signups_per_hour_per_source: u32,
    /// Concurrent HTTP connections: the MQTT listeners share the process's
    /// file descriptors, so the API must not take them all.
    pub max_connections: usize,
    /// A connection must send a whole request head within this time after
    /// it opens (or after its previous response), and the body within it
    /// after the head: slow-loris and idle sockets are closed.
    pub header_read_timeout_ms: u64,
    /// Login tokens one owner may hold; a login beyond it ends the owner's
    /// oldest token.
    pub max_tokens_per_owner: usize,
    /// Live feeds one owner may have open at once; beyond it 429.
    pub max_feeds_per_owner: usize,
    /// Devices one owner may register through the API, revoked ones
    /// included: each is kept in the accounts file and listed whole.
    pub max_devices_per_owner: usize,
}

impl Default for HttpFileConfig {
    fn default() -> Self {
        let bounds = HttpConfig::default();
        HttpFileConfig {
            listen: SocketAddr::from(([127, 0, 0, 1], 8080)),
            signup: bounds.signup,
            signups_per_hour_per_source: bounds.signups_per_hour_per_source,
            max_connections: bounds.max_connections,
            header_read_timeout_ms: millis(bounds.header_read_timeout),
            max_tokens_per_owner: bounds.max_tokens_per_owner,
            max_feeds_per_owner: bounds.max_feeds_per_owner,
            max_devices_per_owner: bounds.max_devices_per_owner,
        }
    }
}

fn millis(duration: Duration) -> u64 {
    u64::try_from(duration.as_millis()).unwrap_or(u64::MAX)
}

/// A value of `[http]` out of its range.
#[derive(Debug, thiserror::Error)]
#[error("[http] {key} {problem}")]
pub struct ConfigError {
    key: &'static str,
    problem: &'static str,
}

impl HttpFileConfig {
    /// The runtime bounds, checked.
    pub fn build(&self) -> Result<HttpConfig, ConfigError> {
        let at_least_one = |key, value: usize| {
            if value == 0 {
                Err(ConfigError {
                    key,
                    problem: "must be at least 1",
                })
            } else {
                Ok(value)
            }
        };
        if self.header_read_timeout_ms < 100 {
            return Err(ConfigError {
                key: "header_read_timeout_ms",
                problem: "must be at least 100",
            });
        }
        Ok(HttpConfig {
            signup: self.signup,
            signups_per_hour_per_source: self.signups_per_hour_per_source,
            max_connections: at_least_one("max_connections", self.max_connections)?,
            header_read_timeout: Duration::from_millis(self.header_read_timeout_ms),
            max_tokens_per_owner: at_least_one("max_tokens_per_owner", self.max_tokens_per_owner)?,
            max_feeds_per_owner: at_least_one("max_feeds_per_owner", self.max_feeds_per_owner)?,
            max_devices_per_owner: at_least_one(
                "max_devices_per_owner",
                self.max_devices_per_owner,
            )?,
            ..HttpConfig::default()
        })
    }
}

/// The HTTP API's runtime bounds ([`HttpFileConfig::build`]); its
/// `Default` is the documented defaults.
#[derive(Debug, Clone)]
pub struct HttpConfig {
    pub signup: Signup,
    /// 0: no limit.
    pub signups_per_hour_per_source: u32,
    pub max_connections: usize,
    pub header_read_timeout: Duration,
    pub max_tokens_per_owner: usize,
    pub max_feeds_per_owner: usize,
    pub max_devices_per_owner: usize,
    /// How long one live feed may stay open (not in the file: tests
    /// shorten it).
    pub live_max_duration: Duration,
    /// How long a login token is valid (not in the file: tests shorten it).
    pub token_lifetime: Duration,
}

impl Default for HttpConfig {
    fn default() -> Self {
        HttpConfig {
            signup: Signup::Auto,
            signups_per_hour_per_source: 10,
            max_connections: 512,
            header_read_timeout: Duration::from_secs(10),
            max_tokens_per_owner: 20,
            max_feeds_per_owner: 8,
            max_devices_per_owner: 1000,
            live_max_duration: crate::live::MAX_FEED_DURATION,
            token_lifetime: crate::auth::TOKEN_LIFETIME,
        }
    }
}
