//! The error type: one enum a caller can match on, with the rejected-configuration and
//! Redis-side details it carries.

mod backend;
mod config;

use std::fmt;
use std::time::Duration;

pub use backend::{BackendError, BackendErrorKind};
pub use config::ConfigError;

use crate::outcome::Lost;

/// Everything that can go wrong when taking, extending or releasing a lease.
///
/// Match on the variant to decide what to do; the `is_*` helpers answer the common questions
/// (should I retry later? is the server down?). No variant's `Debug` or `Display` contains a
/// password or a lease token.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub enum Error {
    /// Another holder has the lock, and the retry policy allowed no further attempt.
    Contended {
        /// How long the current holder's lease still runs, as Redis reported it; `None` when
        /// unknown: the key has no expiry (it was written by something other than redlease),
        /// or, in fair mode, the lock is free but promised to a client that queued earlier.
        remaining_ttl: Option<Duration>,
    },
    /// The lock stayed held by others until the retry policy's deadline passed.
    TimedOut {
        /// How long the caller waited.
        waited: Duration,
        /// The holder's remaining lease at the last attempt, as in [`Error::Contended`].
        remaining_ttl: Option<Duration>,
    },
    /// The lease is no longer ours: it cannot be extended, and work under it was cancelled.
    Lost(Lost),
    /// A key redlease uses holds data of another type (a list, a hash, a non-numeric counter):
    /// some other code writes to redlease's key space.
    WrongType {
        /// The offending key.
        key: String,
        /// The Redis type found there (`list`, `hash`, `string`, ...), as `TYPE` reports it;
        /// `string` for a string redlease cannot read (a fence counter that is not a number).
        found: String,
    },
    /// A configuration value or argument was rejected before anything was sent.
    InvalidConfig(ConfigError),
    /// Redis could not be reached, did not answer in time, or answered with an error; or,
    /// with replica acknowledgement on
    /// ([`ClientBuilder::replicas`](crate::ClientBuilder::replicas)), too few replicas confirmed
    /// the write in time ([`BackendErrorKind::NotReplicated`], with the counts in
    /// [`BackendError::replicas`]: after an acquire the lease was given back, after an extend
    /// the guard keeps its previous deadline). With several nodes this is [`Error::NoQuorum`]
    /// instead.
    Backend(BackendError),
    /// With several nodes (Redlock): too few of them answered for a majority to be reached or
    /// ruled out. Not contention: the nodes that did answer left the outcome open.
    NoQuorum {
        /// How many nodes make a majority.
        needed: usize,
        /// How many nodes agreed (granted, extended or released).
        reached: usize,
        /// What went wrong on each node that failed.
        errors: Vec<BackendError>,
    },
    /// A semaphore's permits are held under another limit than this client asked for: clients
    /// disagree about it. Change it on purpose with [`Semaphore::resize`](crate::Semaphore::resize);
    /// once no permit is held, any limit takes effect.
    LimitMismatch {
        /// The limit this client asked for.
        asked: u32,
        /// The limit the current holders use, kept with their permits.
        stored: u32,
    },
    /// The operating system's random source failed, so no lease token could be drawn.
    Entropy(String),
    /// The `blocking` client's runtime thread could not be started (the
    /// operating system refused a thread or an event queue).
    Runtime(String),
}

impl Error {
    /// The lock is held by someone else (after the retry policy gave up, or at its deadline).
    pub fn is_contended(&self) -> bool {
        matches!(self, Self::Contended { .. } | Self::TimedOut { .. })
    }

    /// A command or connection attempt ran out of time.
    pub fn is_timeout(&self) -> bool {
        matches!(self, Self::Backend(e) if e.kind() == BackendErrorKind::Timeout)
    }

    /// The server could not be reached or the connection broke.
    pub fn is_connection(&self) -> bool {
        matches!(self, Self::Backend(e) if e.kind() == BackendErrorKind::Connection)
    }

    /// The error came from the Redis side (connection, timeout or server error, too few
    /// replicas acknowledging, or no quorum of nodes reachable), so trying again later may
    /// succeed.
    pub fn is_backend(&self) -> bool {
        matches!(self, Self::Backend(_) | Self::NoQuorum { .. })
    }

    /// Trying again cannot help: a bad argument or configuration, a key holding foreign data,
    /// or a server that rejects the credentials or denies a permission (`NOPERM`). `acquire`
    /// stops retrying at once on these.
    pub(crate) fn is_permanent(&self) -> bool {
        match self {
            Self::InvalidConfig(_) | Self::WrongType { .. } | Self::LimitMismatch { .. } => true,
            Self::Backend(e) => e.is_permanent(),
            Self::NoQuorum { errors, .. } => {
                !errors.is_empty() && errors.iter().all(BackendError::is_permanent)
            }
            _ => false,
        }
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Contended { remaining_ttl } => {
                write!(f, "lock is held by another owner")?;
                write_remaining(f, *remaining_ttl)
            }
            Self::TimedOut {
                waited,
                remaining_ttl,
            } => {
                write!(f, "timed out after {waited:?} waiting for the lock")?;
                write_remaining(f, *remaining_ttl)
            }
            Self::Lost(reason) => write!(f, "lease is not held: {reason}"),
            Self::WrongType { key, found } => write!(
                f,
                "key {key:?} holds a Redis {found} that redlease did not write: another program writes to this key"
            ),
            Self::InvalidConfig(e) => write!(f, "invalid configuration: {e}"),
            Self::Backend(e) => write!(f, "{e}"),
            Self::NoQuorum {
                needed,
                reached,
                errors,
            } => {
                write!(f, "no quorum: {reached} node(s) agreed, {needed} needed")?;
                for e in errors {
                    write!(f, "; {e}")?;
                }
                Ok(())
            }
            Self::LimitMismatch { asked, stored } => write!(
                f,
                "the semaphore's permits are held with a limit of {stored}, not {asked}: \
                 every client must use the same limit (or resize it on purpose)"
            ),
            Self::Entropy(e) => write!(
                f,
                "cannot draw a lease token from the OS random source: {e}"
            ),
            Self::Runtime(e) => write!(f, "cannot start the blocking client's runtime thread: {e}"),
        }
    }
}

fn write_remaining(f: &mut fmt::Formatter<'_>, remaining: Option<Duration>) -> fmt::Result {
    match remaining {
        Some(ttl) => write!(f, " (its lease ends in {ttl:?})"),
        None => write!(f, " (for an unknown time)"),
    }
}

impl std::error::Error for Error {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Self::Backend(e) => Some(e),
            _ => None,
        }
    }
}

impl From<ConfigError> for Error {
    fn from(e: ConfigError) -> Self {
        Self::InvalidConfig(e)
    }
}

impl From<BackendError> for Error {
    fn from(e: BackendError) -> Self {
        Self::Backend(e)
    }
}
