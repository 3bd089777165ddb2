//! Errors of the broker's own operation (not of clients: a misbehaving client
//! is answered on its connection and never becomes an `Error` here).

pub type Result<T, E = Error> = std::result::Result<T, E>;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("invalid configuration: {0}")]
    Config(String),
    #[error("{context}: {source}")]
    Io {
        context: &'static str,
        source: std::io::Error,
    },
    #[error("listen for {what} on {addr}: {source}")]
    Listen {
        what: String,
        addr: std::net::SocketAddr,
        source: std::io::Error,
    },
    /// Kafka as the log: creating its topics or its producer failed.
    #[error("set up kafka as the log: {0}")]
    Kafka(#[source] tributary_kafka::Error),
    #[error("open the account store: {0}")]
    Accounts(#[source] tributary_accounts::Error),
    #[error("{context}: {source}")]
    Log {
        context: &'static str,
        source: tributary_log::Error,
    },
    /// An erasure's clearing of retained messages was not made durable.
    #[error("clear the erased owner's retained messages: {0}")]
    Erase(String),
}

impl Error {
    pub(crate) fn io(context: &'static str, source: std::io::Error) -> Self {
        Error::Io { context, source }
    }

    pub(crate) fn log(context: &'static str, source: tributary_log::Error) -> Self {
        Error::Log { context, source }
    }
}
