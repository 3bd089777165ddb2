//! The `[http]` table of the config file.

use std::net::SocketAddr;

use serde::Deserialize;

use crate::DEFAULT_SIGNUP;

/// Where the HTTP API listens and whether it takes sign-ups.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct HttpFileConfig {
    pub listen: SocketAddr,
    /// Whether anyone who reaches the API may sign up as an owner.
    pub signup: bool,
}

impl Default for HttpFileConfig {
    fn default() -> Self {
        HttpFileConfig {
            listen: SocketAddr::from(([127, 0, 0, 1], 8080)),
            signup: DEFAULT_SIGNUP,
        }
    }
}
