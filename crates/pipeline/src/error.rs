//! Why a sink stopped.

use std::time::Duration;

use tributary_log::StreamError;

pub type Result<T, E = Error> = std::result::Result<T, E>;

/// The cause is in the message and not also the `source()`: the log's and
/// the store's errors name their own cause in their message too, and an
/// error chain printed whole (`{:#}`) would say everything twice. Match on
/// the variant to get the cause.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The log gave no consumer under this name.
    #[error("open the consumer {name}: {cause}")]
    Consumer { name: String, cause: StreamError },
    /// Reading the log failed in a way waiting does not mend, or for
    /// longer than the patience allows.
    #[error("read the log: {0}")]
    Read(StreamError),
    /// Nothing came for this long although the end was not reached (Kafka
    /// unreachable: its client waits without reporting an error).
    #[error("read the log: nothing came for {0:?} although the end was not reached")]
    Stalled(Duration),
    /// A setting is out of range; the message names its key.
    #[error("invalid configuration: {0}")]
    Config(String),
    /// Writing the store failed for longer than the patience allows.
    #[error("store the batch: {0}")]
    Store(tributary_store::Error),
    /// The activity sink's classifying task did not finish (it panicked).
    #[error("classify motion: {0}")]
    Model(String),
}

impl Error {
    pub(crate) fn consumer(name: &str) -> impl FnOnce(StreamError) -> Error + '_ {
        move |cause| Error::Consumer {
            name: name.to_owned(),
            cause,
        }
    }
}
