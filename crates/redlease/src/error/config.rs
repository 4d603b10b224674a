//! Configuration values and arguments rejected before anything is sent.

use std::fmt;
use std::time::Duration;

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
    /// A semaphore was used with several independent nodes (Redlock): majorities cannot count
    /// permits (three clients can each hold 2 of 3 nodes of a 2-permit semaphore), so it needs
    /// one node (a server, a Cluster or a Sentinel service).
    SemaphoreNeedsOneNode,
    /// A semaphore's limit is 0 or above [`MAX_PERMITS`](crate::MAX_PERMITS).
    LimitOutOfRange {
        /// The requested limit.
        limit: u32,
        /// The largest accepted limit.
        max: u32,
    },
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
    /// A call of the `blocking` API was made from inside a Tokio runtime
    /// (an async task, or a thread that entered a runtime), where blocking would stall the
    /// runtime's other tasks. Use the async [`Client`](crate::Client) there.
    InsideAsyncRuntime,
    /// A setting needs a cargo feature of redlease that this build was compiled without (a
    /// `rediss://` URL without `tls`, [`ClientBuilder::cluster`](crate::ClientBuilder::cluster)
    /// without `cluster`, ...): enable the feature in `Cargo.toml`.
    FeatureDisabled {
        /// The cargo feature: `"tls"`, `"cluster"`, `"sentinel"` or `"metrics"`.
        feature: &'static str,
        /// What needs it, for example `"a rediss:// URL"`.
        needed_for: &'static str,
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
            Self::SemaphoreNeedsOneNode => f.write_str(
                "a semaphore needs a single node (a server, a Cluster or a Sentinel service): \
                 majorities of several nodes cannot count permits",
            ),
            Self::LimitOutOfRange { limit, max } => {
                write!(f, "a semaphore's limit must be from 1 to {max}, got {limit}")
            }
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
            Self::InsideAsyncRuntime => f.write_str(
                "the blocking API was called from inside a Tokio runtime, where it would stall \
                 the runtime; use the async redlease::Client there",
            ),
            Self::FeatureDisabled {
                feature,
                needed_for,
            } => write!(
                f,
                "{needed_for} needs redlease's cargo feature `{feature}`, which this build does \
                 not have: add it to redlease's features in Cargo.toml"
            ),
        }
    }
}

impl std::error::Error for ConfigError {}
