//! The error type: one enum a caller can match on.

use std::fmt;
use std::time::Duration;

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
        /// The Redis type found there (`list`, `hash`, `string`, ...).
        found: String,
    },
    /// A configuration value or argument was rejected before anything was sent.
    InvalidConfig(ConfigError),
    /// Redis could not be reached, did not answer in time, or answered with an error. With
    /// several nodes this is [`Error::NoQuorum`] instead.
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
    /// The operating system's random source failed, so no lease token could be drawn.
    Entropy(String),
    /// Replica acknowledgement ([`ClientBuilder::replicas`](crate::ClientBuilder::replicas))
    /// is on and fewer replicas than required confirmed the write within the timeout. After an
    /// acquire, the lease was released (a failover could have lost it); after an extend, the
    /// guard keeps its previous deadline.
    NotReplicated {
        /// How many replicas acknowledged the write.
        acked: u32,
        /// How many were required.
        wanted: u32,
    },
}

impl Error {
    /// The lock is held by someone else (after the retry policy gave up, or at its deadline).
    pub fn is_contended(&self) -> bool {
        matches!(self, Self::Contended { .. } | Self::TimedOut { .. })
    }

    /// A command or connection attempt ran out of time.
    pub fn is_timeout(&self) -> bool {
        matches!(self, Self::Backend(e) if e.kind == BackendErrorKind::Timeout)
    }

    /// The server could not be reached or the connection broke.
    pub fn is_connection(&self) -> bool {
        matches!(self, Self::Backend(e) if e.kind == BackendErrorKind::Connection)
    }

    /// The error came from the Redis side (connection, timeout or server error, no quorum of
    /// nodes reachable, or too few replicas acknowledging), so trying again later may succeed.
    pub fn is_backend(&self) -> bool {
        matches!(
            self,
            Self::Backend(_) | Self::NoQuorum { .. } | Self::NotReplicated { .. }
        )
    }

    /// Trying again cannot help: a bad argument or configuration, a key holding foreign data,
    /// or a server that rejects the credentials or denies a permission (`NOPERM`). `acquire`
    /// stops retrying at once on these.
    pub(crate) fn is_permanent(&self) -> bool {
        match self {
            Self::InvalidConfig(_) | Self::WrongType { .. } => true,
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
                "key {key:?} holds a Redis {found}, not a redlease lock: another program writes to this key"
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
            Self::Entropy(e) => write!(
                f,
                "cannot draw a lease token from the OS random source: {e}"
            ),
            Self::NotReplicated { acked, wanted } => write!(
                f,
                "not replicated: {acked} of {wanted} required replica(s) acknowledged the write in time, so a failover could lose it"
            ),
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

/// Why a lease ended, as reported by [`Guard::lost`](crate::Guard::lost) and
/// [`Error::Lost`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Lost {
    /// The lease ran out: its key is gone from the servers, or its validity deadline passed
    /// without a successful renewal.
    Expired,
    /// The key now holds another owner's token (our lease expired and someone took the lock,
    /// or something overwrote the key).
    HeldByOther,
    /// Renewals could not reach Redis (or a majority of nodes) before the deadline.
    Unreachable,
    /// The lease reached its maximum hold time
    /// ([`LockOptions::max_hold`](crate::LockOptions::max_hold)); renewal stopped.
    HoldCapReached,
    /// The guard released the lease (or was dropped).
    Released,
}

impl fmt::Display for Lost {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Expired => "it expired",
            Self::HeldByOther => "another owner holds it",
            Self::Unreachable => "renewals could not reach Redis before the deadline",
            Self::HoldCapReached => "it reached its maximum hold time",
            Self::Released => "it was released",
        })
    }
}

/// A rejected configuration value or argument. Each variant names one rule.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub enum ConfigError {
    /// The TTL is zero.
    ZeroTtl,
    /// The TTL exceeds [`MAX_TTL`](crate::MAX_TTL).
    TtlTooLarge {
        /// The requested TTL.
        ttl: Duration,
        /// The largest accepted TTL.
        max: Duration,
    },
    /// The TTL is not larger than the clock-drift allowance, so no lease could ever be valid.
    TtlNotAboveDrift {
        /// The requested TTL.
        ttl: Duration,
        /// The drift allowance for this TTL.
        drift: Duration,
    },
    /// The maximum hold time is shorter than the TTL.
    HoldCapBelowTtl {
        /// The requested maximum hold time.
        max_hold: Duration,
        /// The TTL.
        ttl: Duration,
    },
    /// Fair mode was asked for with several nodes; it needs exactly one.
    FairNeedsOneNode,
    /// The holder label is longer than [`MAX_LABEL_LEN`](crate::MAX_LABEL_LEN) bytes.
    LabelTooLong {
        /// The label's length in bytes.
        len: usize,
        /// The largest accepted length.
        max: usize,
    },
    /// The lock name is empty.
    EmptyName,
    /// The lock name is longer than [`MAX_NAME_LEN`](crate::MAX_NAME_LEN) bytes.
    NameTooLong {
        /// The name's length in bytes.
        len: usize,
        /// The largest accepted length.
        max: usize,
    },
    /// The lock name contains `{` or `}`, which would break the Cluster hash tag that keeps a
    /// lock's keys in one slot.
    NameHasBraces,
    /// The key prefix is longer than [`MAX_NAME_LEN`](crate::MAX_NAME_LEN) bytes or contains
    /// `{` or `}`.
    InvalidPrefix(String),
    /// The drift factor is not a finite number in `0.0..1.0`.
    InvalidDriftFactor(f64),
    /// A timeout is zero.
    ZeroTimeout(&'static str),
    /// A retry policy is unusable (for example a zero attempt limit).
    InvalidRetry(&'static str),
    /// The same server appears twice among the nodes (it would count twice toward a majority).
    DuplicateNode {
        /// The node as first listed.
        first: String,
        /// The node that repeats it.
        again: String,
    },
    /// A Redis URL could not be parsed. The URL is shown with its password masked.
    MalformedUrl {
        /// The URL, password replaced by `***`.
        url: String,
        /// What is wrong with it.
        reason: String,
    },
    /// A Cluster or Sentinel deployment was given without any address to start from.
    NoSeedUrls(&'static str),
    /// The Sentinel service (master) name is empty.
    EmptyServiceName,
    /// TLS settings ([`ClientBuilder::tls_root_ca`](crate::ClientBuilder::tls_root_ca),
    /// [`tls_client_cert`](crate::ClientBuilder::tls_client_cert)) were given, but no URL uses
    /// `rediss://`: the connections would not be encrypted.
    TlsWithoutRediss,
    /// A TLS certificate or key could not be used. Never contains the key.
    InvalidTls {
        /// Which item: `"root CA"`, `"client certificate"`, ...
        what: &'static str,
        /// Why it was rejected.
        reason: String,
    },
    /// The keys of one lock would not share a Redis Cluster hash slot, so a script touching
    /// them would fail with `CROSSSLOT`.
    KeysInDifferentSlots {
        /// The keys, with their hash tags.
        keys: Vec<String>,
    },
    /// [`EvictionCheck::Refuse`](crate::EvictionCheck::Refuse): a server may evict keys under
    /// memory pressure (its `maxmemory-policy` is not `noeviction` and `maxmemory` is set), so
    /// a lock key could vanish while its lease runs.
    EvictingPolicy {
        /// The server, as `host:port`.
        node: String,
        /// Its `maxmemory-policy`.
        policy: String,
    },
    /// [`EvictionCheck::Refuse`](crate::EvictionCheck::Refuse): a server's eviction policy
    /// could not be read (`INFO memory` was denied or unreadable), so it cannot be shown safe.
    EvictionPolicyUnknown {
        /// The server, as `host:port`.
        node: String,
        /// Why it could not be read.
        reason: String,
    },
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::ZeroTtl => f.write_str("the TTL must be greater than zero"),
            Self::TtlTooLarge { ttl, max } => {
                write!(f, "the TTL {ttl:?} is larger than the maximum {max:?}")
            }
            Self::TtlNotAboveDrift { ttl, drift } => write!(
                f,
                "the TTL {ttl:?} must be larger than the clock-drift allowance {drift:?}"
            ),
            Self::HoldCapBelowTtl { max_hold, ttl } => write!(
                f,
                "the maximum hold time {max_hold:?} is shorter than the TTL {ttl:?}"
            ),
            Self::FairNeedsOneNode => f.write_str(
                "fair mode needs a single node: the queues of several nodes could disagree",
            ),
            Self::LabelTooLong { len, max } => {
                write!(f, "the holder label is {len} bytes long; the maximum is {max}")
            }
            Self::EmptyName => f.write_str("the lock name must not be empty"),
            Self::NameTooLong { len, max } => {
                write!(f, "the lock name is {len} bytes long; the maximum is {max}")
            }
            Self::NameHasBraces => f.write_str(
                "the lock name must not contain '{' or '}' (redlease wraps it in a Cluster hash tag)",
            ),
            Self::InvalidPrefix(why) => write!(f, "invalid key prefix: {why}"),
            Self::InvalidDriftFactor(v) => {
                write!(f, "the drift factor must be a finite number in [0, 1), got {v}")
            }
            Self::ZeroTimeout(which) => write!(f, "the {which} must be greater than zero"),
            Self::InvalidRetry(why) => write!(f, "invalid retry policy: {why}"),
            Self::DuplicateNode { first, again } => write!(
                f,
                "the node {again} is the same server as {first}: each node must be listed once"
            ),
            Self::MalformedUrl { url, reason } => {
                write!(f, "malformed Redis URL {url:?}: {reason}")
            }
            Self::NoSeedUrls(kind) => write!(f, "a {kind} deployment needs at least one URL"),
            Self::EmptyServiceName => f.write_str("the Sentinel service name must not be empty"),
            Self::TlsWithoutRediss => f.write_str(
                "TLS settings were given but no URL uses rediss://; refusing to connect unencrypted",
            ),
            Self::InvalidTls { what, reason } => write!(f, "unusable TLS {what}: {reason}"),
            Self::KeysInDifferentSlots { keys } => write!(
                f,
                "the keys {keys:?} do not share one Redis Cluster hash tag, so one script cannot touch them all (CROSSSLOT)"
            ),
            Self::EvictingPolicy { node, policy } => write!(
                f,
                "Redis {node} may evict lock keys under memory pressure (maxmemory-policy {policy}); \
                 set maxmemory-policy noeviction or use EvictionCheck::Warn"
            ),
            Self::EvictionPolicyUnknown { node, reason } => write!(
                f,
                "cannot read the maxmemory-policy of Redis {node} ({reason}); \
                 allow INFO for this user or use EvictionCheck::Warn"
            ),
        }
    }
}

impl std::error::Error for ConfigError {}

/// What kind of backend failure happened.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum BackendErrorKind {
    /// The server could not be reached, refused the connection, or the connection broke.
    Connection,
    /// A connection attempt or command took longer than its timeout, or a reply arrived after
    /// the lease it granted was no longer valid.
    Timeout,
    /// The server answered with an error (authentication, ACL permission, out of memory,
    /// read-only replica, ...).
    Server,
    /// The server answered something redlease's scripts never return.
    Protocol,
    /// Too few replicas acknowledged a write within the replica timeout (see
    /// [`ClientBuilder::replicas`](crate::ClientBuilder::replicas)).
    NotReplicated,
}

/// A failure on the Redis side, with the server it concerns and the underlying error.
#[derive(Debug, Clone)]
pub struct BackendError {
    kind: BackendErrorKind,
    node: String,
    context: &'static str,
    source: Option<redis::RedisError>,
    /// For [`BackendErrorKind::NotReplicated`]: replicas that acknowledged, and required.
    replicas: Option<(u32, u32)>,
}

impl BackendError {
    pub(crate) fn new(
        kind: BackendErrorKind,
        node: &str,
        context: &'static str,
        source: Option<redis::RedisError>,
    ) -> Self {
        Self {
            kind,
            node: node.to_owned(),
            context,
            source,
            replicas: None,
        }
    }

    /// Too few replicas acknowledged a write on `node`.
    pub(crate) fn not_replicated(
        node: &str,
        context: &'static str,
        acked: u32,
        wanted: u32,
    ) -> Self {
        Self {
            replicas: Some((acked, wanted)),
            ..Self::new(BackendErrorKind::NotReplicated, node, context, None)
        }
    }

    /// For a [`BackendErrorKind::NotReplicated`] error: how many replicas acknowledged, and how
    /// many were required.
    pub fn replicas(&self) -> Option<(u32, u32)> {
        self.replicas
    }

    /// The server's error code (`NOPERM`, `WRONGPASS`, `READONLY`, ...), if it sent one.
    pub fn code(&self) -> Option<&str> {
        self.source.as_ref().and_then(redis::RedisError::code)
    }

    /// A server error that retrying cannot fix: credentials rejected or permission denied.
    pub(crate) fn is_permanent(&self) -> bool {
        self.kind == BackendErrorKind::Server
            && (matches!(self.code(), Some("NOPERM" | "WRONGPASS" | "NOAUTH"))
                || self.source_is(|e| {
                    matches!(
                        e.kind(),
                        redis::ErrorKind::AuthenticationFailed
                            | redis::ErrorKind::Server(redis::ServerErrorKind::NoPerm)
                    )
                }))
    }

    /// A hint for the reader, for failures with a common cause.
    fn hint(&self) -> Option<&'static str> {
        let text = self.source.as_ref().map(ToString::to_string)?;
        if self.code() == Some("NOPERM") || text.contains("NOPERM") {
            Some(
                "the Redis user lacks a permission redlease needs (see the minimal ACL in DESIGN.md)",
            )
        } else if self.code() == Some("CROSSSLOT")
            || self.source_is(|e| {
                e.kind() == redis::ErrorKind::Server(redis::ServerErrorKind::CrossSlot)
            })
        {
            Some("a script's keys span several Cluster slots")
        } else if text.contains("certificate") || text.contains("UnknownIssuer") {
            Some(
                "TLS certificate verification failed: is the server's CA given with ClientBuilder::tls_root_ca?",
            )
        } else {
            None
        }
    }

    /// Classifies a `redis` crate error.
    pub(crate) fn from_redis(node: &str, context: &'static str, e: redis::RedisError) -> Self {
        let kind = if e.is_timeout() {
            BackendErrorKind::Timeout
        } else if e.is_io_error() || e.is_connection_dropped() || e.is_connection_refusal() {
            BackendErrorKind::Connection
        } else if matches!(
            e.kind(),
            redis::ErrorKind::Parse | redis::ErrorKind::UnexpectedReturnType
        ) {
            BackendErrorKind::Protocol
        } else {
            BackendErrorKind::Server
        };
        Self::new(kind, node, context, Some(e))
    }

    /// Whether the underlying `redis` error matches `test`.
    pub(crate) fn source_is(&self, test: impl FnOnce(&redis::RedisError) -> bool) -> bool {
        self.source.as_ref().is_some_and(test)
    }

    /// What kind of failure this is.
    pub fn kind(&self) -> BackendErrorKind {
        self.kind
    }

    /// The server concerned, as `host:port` (never with credentials).
    pub fn node(&self) -> &str {
        &self.node
    }
}

impl fmt::Display for BackendError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let what = match self.kind {
            BackendErrorKind::Connection => "connection failed",
            BackendErrorKind::Timeout => "timed out",
            BackendErrorKind::Server => "server error",
            BackendErrorKind::Protocol => "unexpected reply",
            BackendErrorKind::NotReplicated => "not replicated",
        };
        write!(f, "Redis {}: {what} while {}", self.node, self.context)?;
        if let Some((acked, wanted)) = self.replicas {
            write!(
                f,
                ": {acked} of {wanted} required replica(s) acknowledged in time"
            )?;
        }
        if let Some(e) = &self.source {
            write!(f, ": {e}")?;
        }
        if let Some(hint) = self.hint() {
            write!(f, " ({hint})")?;
        }
        Ok(())
    }
}

impl std::error::Error for BackendError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        self.source
            .as_ref()
            .map(|e| e as &(dyn std::error::Error + 'static))
    }
}
