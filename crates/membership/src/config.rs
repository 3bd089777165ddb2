//! The `[cluster]` table (docs/configuration.md) and the checked value it
//! builds.

use std::time::Duration;

use serde::Deserialize;

use crate::runtime_api::ApiAddress;
use crate::{Error, Result};

/// Health checks every 500 ms, DOWN after 2 failures, UP after 2 passes:
/// a node killed without leaving is out of rotation within about a second.
pub const CHECK_OPTIONS: &str = "check inter 500ms fall 2 rise 2";

/// The longest drain allowed: a node that takes longer to leave is stuck.
pub const MAX_DRAIN_SECS: u64 = 3600;

/// The `[cluster]` table: this node in an HAProxy backend. Without
/// `haproxy_api` the node joins nothing and leaves at once on SIGTERM.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ClusterFileConfig {
    /// HAProxy's runtime API (`stats socket ... level admin`): a unix
    /// socket path or `host:port`. Setting it turns joining and leaving on.
    pub haproxy_api: Option<String>,
    /// The backend the node adds itself to; it must use a dynamic balancing
    /// algorithm (docs/cluster.md).
    pub haproxy_backend: String,
    /// `host:port` HAProxy connects to for this node's MQTT listener: the
    /// listener's own address is often 0.0.0.0 or a port mapped elsewhere.
    pub advertise: Option<String>,
    /// The server's name in the backend; default `tributary-{node id}`,
    /// the id kept in `DATA_DIR/node_id`, so a restarted node finds (and
    /// replaces) the entry it left behind.
    pub node_name: Option<String>,
    /// The rest of the `add server` line. Dynamic servers inherit nothing
    /// from `default-server`, so every option is here; default
    /// [`CHECK_OPTIONS`], with `send-proxy-v2 check-send-proxy` when the
    /// MQTT listener expects PROXY headers.
    pub server_options: Option<String>,
    /// How long the node takes, on SIGTERM, to disconnect its clients
    /// a few at a time.
    pub drain_secs: u64,
    /// A second backend for the node's HTTP API (optional).
    pub haproxy_http_backend: Option<String>,
    /// `host:port` HAProxy connects to for this node's HTTP API.
    pub advertise_http: Option<String>,
    /// The rest of the `add server` line in the HTTP backend.
    pub http_server_options: String,
}

impl Default for ClusterFileConfig {
    fn default() -> Self {
        ClusterFileConfig {
            haproxy_api: None,
            haproxy_backend: "mqtt_nodes".to_owned(),
            advertise: None,
            node_name: None,
            server_options: None,
            drain_secs: 10,
            haproxy_http_backend: None,
            advertise_http: None,
            http_server_options: CHECK_OPTIONS.to_owned(),
        }
    }
}

/// One server this node is in HAProxy: a backend and how to reach it there.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerSpec {
    pub backend: String,
    /// `host:port`.
    pub address: String,
    /// Everything after the address on the `add server` line.
    pub options: String,
}

impl ServerSpec {
    /// Whether HAProxy health-checks it (`enable health` is then due).
    pub fn checked(&self) -> bool {
        self.options.split_whitespace().any(|o| o == "check")
    }
}

/// `[cluster]`, checked: what [`crate::Membership`] runs on.
#[derive(Debug, Clone)]
pub struct ClusterConfig {
    pub api: ApiAddress,
    /// `None`: named after the node id once the broker knows it.
    pub node_name: Option<String>,
    /// The MQTT backend first, then the HTTP backend if any.
    pub servers: Vec<ServerSpec>,
    /// How long the gradual disconnection of clients takes.
    pub drain: Duration,
}

impl ClusterFileConfig {
    /// Checks the table; `None` when `haproxy_api` is not set.
    /// `proxy_protocol` is whether the plain MQTT listener expects PROXY
    /// headers, which the default options follow. Explicit options are
    /// taken as written: `advertise` may name another listener (TLS at the
    /// nodes) with a PROXY setting of its own.
    pub fn build(&self, proxy_protocol: bool) -> Result<Option<ClusterConfig>> {
        let Some(api) = &self.haproxy_api else {
            return Ok(None);
        };
        if api.trim().is_empty() {
            return Err(config("cluster.haproxy_api is empty"));
        }
        name("cluster.haproxy_backend", &self.haproxy_backend)?;
        if let Some(node) = &self.node_name {
            name("cluster.node_name", node)?;
        }
        let Some(advertise) = &self.advertise else {
            return Err(config(
                "cluster.advertise (host:port HAProxy connects to) is required with cluster.haproxy_api",
            ));
        };
        address("cluster.advertise", advertise)?;
        let options = match &self.server_options {
            Some(options) => options.clone(),
            None => default_server_options(proxy_protocol),
        };
        line("cluster.server_options", &options)?;
        if self.drain_secs > MAX_DRAIN_SECS {
            return Err(config(format!(
                "cluster.drain_secs = {}: at most {MAX_DRAIN_SECS}",
                self.drain_secs
            )));
        }
        let mut servers = vec![ServerSpec {
            backend: self.haproxy_backend.clone(),
            address: advertise.clone(),
            options,
        }];
        match (&self.haproxy_http_backend, &self.advertise_http) {
            (None, None) => {}
            (Some(backend), Some(advertise)) => {
                name("cluster.haproxy_http_backend", backend)?;
                address("cluster.advertise_http", advertise)?;
                line("cluster.http_server_options", &self.http_server_options)?;
                servers.push(ServerSpec {
                    backend: backend.clone(),
                    address: advertise.clone(),
                    options: self.http_server_options.clone(),
                });
            }
            _ => {
                return Err(config(
                    "cluster.haproxy_http_backend and cluster.advertise_http go together",
                ))
            }
        }
        Ok(Some(ClusterConfig {
            api: ApiAddress::parse(api),
            node_name: self.node_name.clone(),
            servers,
            drain: Duration::from_secs(self.drain_secs),
        }))
    }
}

/// The `add server` options when `server_options` is not set.
pub fn default_server_options(proxy_protocol: bool) -> String {
    if proxy_protocol {
        // check-send-proxy: the checks go to the MQTT port too, which
        // refuses a connection without the header.
        format!("{CHECK_OPTIONS} send-proxy-v2 check-send-proxy")
    } else {
        CHECK_OPTIONS.to_owned()
    }
}

fn config(message: impl Into<String>) -> Error {
    Error::Config(message.into())
}

/// A backend or server name as HAProxy takes it.
pub(crate) fn name(key: &str, value: &str) -> Result<()> {
    let valid = !value.is_empty()
        && value
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.' | ':'));
    if valid {
        Ok(())
    } else {
        Err(config(format!(
            "{key} = {value:?}: letters, digits, '-', '_', '.' and ':' only"
        )))
    }
}

/// `host:port`.
fn address(key: &str, value: &str) -> Result<()> {
    let port = value.rsplit_once(':').and_then(|(host, port)| {
        (!host.is_empty() && !host.contains(char::is_whitespace))
            .then(|| port.parse::<u16>().ok())
            .flatten()
    });
    line(key, value)?;
    match port {
        Some(p) if p > 0 => Ok(()),
        _ => Err(config(format!("{key} = {value:?}: expected host:port"))),
    }
}

/// Text that goes on a command line: the runtime API reads `;` as the end
/// of a command, so it (and any control character) would smuggle in another.
fn line(key: &str, value: &str) -> Result<()> {
    if value.contains(';') || value.chars().any(char::is_control) {
        Err(config(format!(
            "{key} = {value:?}: no ';' or control characters (the runtime API would read another command)"
        )))
    } else {
        Ok(())
    }
}
