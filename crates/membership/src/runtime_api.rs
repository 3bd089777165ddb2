//! A client of HAProxy's runtime API (the `stats socket` of its `global`
//! section, at `level admin`).
//!
//! One command per connection, in HAProxy's non-interactive mode: the
//! command and a newline go out, HAProxy answers in text and closes.
//!
//! ```text
//! → add server mqtt_nodes/n1 10.0.0.5:1883 check send-proxy-v2\n
//! ← New server registered.\n\n        (then HAProxy closes)
//! ```
//!
//! Success is an empty answer or one of HAProxy's two success sentences
//! ([`SUCCESS`]); any other answer ("No such backend.", "Already exists a
//! server with the same name in backend.", a usage text, ...) is an error
//! that carries it, so the log shows what HAProxy said.

use std::path::PathBuf;
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

use crate::{Error, Result};

/// The answers of `add server` and `del server`; the other commands used
/// here answer nothing when they succeed.
pub const SUCCESS: [&str; 2] = ["New server registered.", "Server deleted."];

/// Answers longer than this are cut (HAProxy's errors are one line; a
/// `show stat` of a large config is not needed here).
const MAX_ANSWER: u64 = 1024 * 1024;

/// Where the runtime API listens.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ApiAddress {
    /// A unix socket (`stats socket /run/haproxy/admin.sock level admin`).
    Unix(PathBuf),
    /// `host:port` (`stats socket ipv4@127.0.0.1:9999 level admin`).
    Tcp(String),
}

impl ApiAddress {
    /// A path (anything with a `/`, or without a `:`) is a unix socket;
    /// else `host:port`.
    pub fn parse(text: &str) -> ApiAddress {
        if text.contains('/') || !text.contains(':') {
            ApiAddress::Unix(PathBuf::from(text))
        } else {
            ApiAddress::Tcp(text.to_owned())
        }
    }
}

impl std::fmt::Display for ApiAddress {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ApiAddress::Unix(path) => write!(f, "{}", path.display()),
            ApiAddress::Tcp(addr) => f.write_str(addr),
        }
    }
}

/// HAProxy's runtime API at one address.
#[derive(Debug, Clone)]
pub struct RuntimeApi {
    address: ApiAddress,
    /// Bounds each command, connection included: an HAProxy that hangs
    /// must not hold up a node's start or its shutdown.
    timeout: Duration,
}

impl RuntimeApi {
    pub fn new(address: ApiAddress, timeout: Duration) -> RuntimeApi {
        RuntimeApi { address, timeout }
    }

    pub fn address(&self) -> &ApiAddress {
        &self.address
    }

    /// Sends one command and returns HAProxy's answer, trimmed; an answer
    /// that is not success (see the module doc) is [`Error::Refused`].
    pub async fn command(&self, command: &str) -> Result<String> {
        let answer = self.ask(command).await?;
        let answer = answer.trim();
        if answer.is_empty() || SUCCESS.contains(&answer) {
            Ok(answer.to_owned())
        } else {
            Err(Error::Refused {
                command: command.to_owned(),
                answer: answer.lines().collect::<Vec<_>>().join(" / "),
            })
        }
    }

    /// Sends one command and returns the whole answer as it is (for `show`
    /// commands, whose answer is the data).
    pub async fn ask(&self, command: &str) -> Result<String> {
        let exchange = async {
            match &self.address {
                ApiAddress::Unix(path) => {
                    exchange(tokio::net::UnixStream::connect(path).await?, command).await
                }
                ApiAddress::Tcp(addr) => {
                    exchange(tokio::net::TcpStream::connect(addr).await?, command).await
                }
            }
        };
        match tokio::time::timeout(self.timeout, exchange).await {
            Ok(Ok(answer)) => Ok(answer),
            Ok(Err(source)) => Err(Error::Unreachable {
                address: self.address.to_string(),
                source,
            }),
            Err(_) => Err(Error::Timeout {
                address: self.address.to_string(),
                timeout_ms: self.timeout.as_millis(),
            }),
        }
    }
}

async fn exchange<S: AsyncRead + AsyncWrite + Unpin>(
    mut stream: S,
    command: &str,
) -> std::io::Result<String> {
    stream.write_all(format!("{command}\n").as_bytes()).await?;
    stream.flush().await?;
    let mut answer = Vec::new();
    (&mut stream)
        .take(MAX_ANSWER)
        .read_to_end(&mut answer)
        .await?;
    Ok(String::from_utf8_lossy(&answer).into_owned())
}
