//! The crate error, gathered from each module's own error enum.
//!
//! Every error has a [`ErrorKind`] that says what to do about it:
//! - [`ErrorKind::Data`]: the input is bad. Quarantine it and carry on; never stop for it.
//! - [`ErrorKind::External`]: an outside system (broker, registry, store) failed. Retry with
//!   backoff; never quarantine data because of it.
//! - [`ErrorKind::Internal`]: a bug or a broken invariant. Stop the task loudly.

use std::fmt;

/// What to do about an error; see the module documentation.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ErrorKind {
    /// Bad input data: quarantine, never stop.
    Data,
    /// An outside system failed: retry with backoff, never quarantine.
    External,
    /// A bug or a broken invariant: stop loudly.
    Internal,
    /// The user's configuration or command line is wrong: refuse to start.
    Config,
}

impl fmt::Display for ErrorKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            ErrorKind::Data => "data",
            ErrorKind::External => "external",
            ErrorKind::Internal => "internal",
            ErrorKind::Config => "config",
        })
    }
}

/// The crate error.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(transparent)]
    Config(#[from] crate::config::ConfigError),
    #[error(transparent)]
    Layout(#[from] crate::formats::LayoutError),
    #[error(transparent)]
    Schema(#[from] crate::schema::SchemaError),
    #[error(transparent)]
    RawStore(#[from] crate::rawstore::RawStoreError),
    #[error(transparent)]
    Poller(#[from] crate::poller::PollerError),
    #[error(transparent)]
    Streams(#[from] crate::streams::StreamsError),
    #[error(transparent)]
    Credit(#[from] crate::credit::CreditError),
    #[error(transparent)]
    Client(#[from] crate::api_client::ClientError),
    #[error("{context}: {source}")]
    Io {
        context: String,
        #[source]
        source: std::io::Error,
    },
}

impl Error {
    /// Classifies the error; see [`ErrorKind`].
    pub fn kind(&self) -> ErrorKind {
        match self {
            Error::Config(_) | Error::Layout(_) => ErrorKind::Config,
            Error::Schema(e) => e.kind(),
            Error::RawStore(e) => e.kind(),
            Error::Poller(e) => e.kind(),
            Error::Streams(e) => e.kind(),
            Error::Credit(e) => e.kind(),
            Error::Client(e) => e.kind(),
            Error::Io { .. } => ErrorKind::External,
        }
    }

    /// Wraps an I/O error with what was being done.
    pub fn io(context: impl Into<String>, source: std::io::Error) -> Self {
        Error::Io {
            context: context.into(),
            source,
        }
    }
}

/// The crate result.
pub type Result<T, E = Error> = std::result::Result<T, E>;
