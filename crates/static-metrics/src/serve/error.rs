//! Error values of the serving layer.

use std::fmt;
use std::io;
use std::time::Duration;

/// Why an [`Exposition`](super::Exposition) could not encode; the server answers 500 with it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EncodeError {
    message: String,
}

impl EncodeError {
    /// An error carrying `message`, which is shown to the scraper in the 500 body.
    pub fn new(message: impl Into<String>) -> Self {
        EncodeError {
            message: message.into(),
        }
    }

    /// The message given at construction.
    pub fn message(&self) -> &str {
        &self.message
    }
}

impl fmt::Display for EncodeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for EncodeError {}

impl From<io::Error> for EncodeError {
    fn from(e: io::Error) -> Self {
        EncodeError::new(e.to_string())
    }
}

impl From<fmt::Error> for EncodeError {
    fn from(_: fmt::Error) -> Self {
        EncodeError::new("formatting a value failed")
    }
}

/// Why a server could not be built, started, run or stopped.
///
/// Messages never include the configured token.
#[derive(Debug)]
#[non_exhaustive]
pub enum ServeError {
    /// The configured bearer token has whitespace inside it. The reference accepts such a token
    /// and then rejects every request, because the `Authorization` header is split on
    /// whitespace; we refuse it up front instead.
    TokenContainsWhitespace,
    /// The listen address is reachable beyond loopback but no token is configured.
    TokenRequired {
        /// The listen address as configured.
        address: String,
    },
    /// Binding the listen address failed.
    Bind {
        /// The listen address as configured.
        address: String,
        /// What the operating system said.
        source: io::Error,
    },
    /// Accepting connections failed in a way that retrying cannot fix.
    Accept {
        /// The listen address, for context.
        address: String,
        /// What the operating system said.
        source: io::Error,
    },
    /// A web-configuration file was given to a server that already has one.
    WebConfigAlreadySet,
    /// Connections were still open when the graceful-shutdown deadline passed; they were then
    /// closed forcibly.
    ShutdownTimedOut {
        /// The listen address, for context.
        address: String,
        /// The deadline that passed.
        timeout: Duration,
        /// How many connections were still open at the deadline.
        connections: usize,
    },
}

impl fmt::Display for ServeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ServeError::TokenContainsWhitespace => f.write_str(
                "the bearer token contains whitespace, so no Authorization header could ever \
                 match it; configure a token without spaces or tabs (for example a hex string)",
            ),
            ServeError::TokenRequired { address } => write!(
                f,
                "refusing to serve on {address:?}: the address is reachable beyond loopback and \
                 no bearer token is configured; configure a token or listen on a loopback \
                 address such as 127.0.0.1:9090"
            ),
            ServeError::WebConfigAlreadySet => {
                f.write_str("the server already has a web configuration")
            }
            ServeError::Bind { address, source } => {
                write!(f, "cannot listen on {address:?}: {source}")
            }
            ServeError::Accept { address, source } => {
                write!(f, "accepting connections on {address:?} failed: {source}")
            }
            ServeError::ShutdownTimedOut {
                address,
                timeout,
                connections,
            } => write!(
                f,
                "server on {address:?}: {connections} connection(s) still open when the \
                 {timeout:?} graceful-shutdown deadline passed; they were closed forcibly"
            ),
        }
    }
}

impl std::error::Error for ServeError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            ServeError::Bind { source, .. } | ServeError::Accept { source, .. } => Some(source),
            _ => None,
        }
    }
}
