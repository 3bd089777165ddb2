//! What can go wrong, grouped by who is at fault: the operator's config, or
//! HAProxy (it refused a command, or could not be reached).

/// `Result` with this crate's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A `[cluster]` key has a value that cannot work; the message names it.
    #[error("{0}")]
    Config(String),
    /// HAProxy answered a command with something other than success.
    #[error("haproxy refused `{command}`: {answer}")]
    Refused { command: String, answer: String },
    /// The runtime API did not accept the connection or broke it.
    #[error("reach the haproxy runtime API at {address}")]
    Unreachable {
        address: String,
        #[source]
        source: std::io::Error,
    },
    /// The runtime API did not answer in time.
    #[error("no answer from the haproxy runtime API at {address} within {timeout_ms} ms")]
    Timeout { address: String, timeout_ms: u128 },
}

impl Error {
    /// HAProxy's answer when the server to add is already in the backend.
    pub(crate) fn already_exists(&self) -> bool {
        matches!(self, Error::Refused { answer, .. } if answer.starts_with("Already exists a server"))
    }

    /// HAProxy's answer when the server is not (or no longer) in the backend.
    pub(crate) fn no_such_server(&self) -> bool {
        matches!(self, Error::Refused { answer, .. } if answer.starts_with("No such server"))
    }

    /// HAProxy's answer to `del server` while connections are attached.
    pub(crate) fn still_connected(&self) -> bool {
        matches!(self, Error::Refused { answer, .. } if answer.contains("still has connections"))
    }
}
