//! Distributed locks on Redis that tell the truth: leases with owner-only release and extend,
//! fencing tokens, typed errors, and deadlines measured on the monotonic clock.
//!
//! # Quick start
//!
//! ```
//! use std::time::Duration;
//! use redlease::{Client, LockOptions, ReleaseOutcome, Retry};
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! # let server = redlease_testkit::RedisServer::start()?;
//! # let url = server.url();
//! let client = Client::connect(&url).await?;
//!
//! // Wait up to 5 s for the lock, then hold it for at most 10 s.
//! let options = LockOptions::new(Duration::from_secs(10))
//!     .retry(Retry::default().timeout(Duration::from_secs(5)));
//! let guard = client.acquire("invoices:2026-11", &options).await?;
//!
//! // Someone else cannot take it meanwhile.
//! assert!(client.try_acquire("invoices:2026-11", Duration::from_secs(10)).await.unwrap_err().is_contended());
//!
//! // Hand the fencing token to the resource you protect; it rejects smaller ones.
//! println!("writing with fence {}", guard.fence());
//! assert!(guard.is_held());
//!
//! assert_eq!(guard.release().await?, ReleaseOutcome::Released);
//! # Ok(()) }
//! ```
//!
//! # What a lease guarantees
//!
//! A Redis lock is a **lease**, not a mutex: it ends when its TTL runs out, even if the holder
//! is still working (a GC pause, a stopped VM, a slow disk). redlease guarantees:
//!
//! - **Owner-only release and extend.** Every lease has a random 128-bit [`Token`]; release and
//!   extend are compare-and-delete / compare-and-expire scripts, so a holder whose lease expired
//!   can never delete or prolong the next holder's lease.
//! - **A pessimistic deadline.** [`Guard::valid_until`] counts from the moment the request was
//!   *sent*, on the monotonic clock, minus a drift allowance (`ttl × 1% + 2 ms` by default).
//!   Two guards' validity windows do not overlap unless a process pauses longer than that margin.
//! - **Fencing tokens.** [`Guard::fence`] strictly increases across the holders of a name, as
//!   long as Redis keeps the counter (no `FLUSHALL`, no restart without fsync, no failover to a
//!   replica that missed it). Pass it to the resource you protect and let the resource reject
//!   any token not greater than the largest it has seen: that turns "two holders overlapped"
//!   into "the late one's write was refused".
//!
//! What no Redis lock can guarantee — mutual exclusion of running code across process pauses,
//! safety across failover or restarts without persistence — is spelled out in `DESIGN.md`.
//!
//! # Deployments
//!
//! A client's nodes can be single servers ([`ClientBuilder::url`]; several make a Redlock
//! quorum), a Redis Cluster ([`ClientBuilder::cluster`]: each lock on the primary owning its
//! name's slot), or the primary of a Sentinel service ([`ClientBuilder::sentinel`], followed
//! across failovers), over TLS (`rediss://`) and with ACL users. Cluster and Sentinel replicate
//! asynchronously, so a failover can lose a lease; [`ClientBuilder::replicas`] makes each grant
//! wait for replicas. `DESIGN.md` says what each deployment guarantees, and lists the minimal
//! ACL a lock user needs.
//!
//! # Keys
//!
//! A lock named `N` uses the key `{prefix}{N}` for the owner's token (with the TTL) and
//! `{prefix}{N}:fence` for the fencing counter (never expires). The name is a Cluster hash tag,
//! so both keys live in one slot. The prefix defaults to [`DEFAULT_PREFIX`].
//!
//! # Defaults
//!
//! | what | value |
//! |---|---|
//! | server | [`DEFAULT_URL`] |
//! | key prefix | [`DEFAULT_PREFIX`] |
//! | drift allowance | `ttl ×` [`DEFAULT_DRIFT_FACTOR`] `+` [`DRIFT_FLOOR`] |
//! | connect / command timeout | [`DEFAULT_CONNECT_TIMEOUT`] / [`DEFAULT_COMMAND_TIMEOUT`] |
//! | retry for [`Client::acquire`] | exponential, [`DEFAULT_RETRY_DELAY`] to [`DEFAULT_RETRY_MAX_DELAY`] with jitter, for [`DEFAULT_ACQUIRE_TIMEOUT`] |
//! | limits | TTL ≤ [`MAX_TTL`], name ≤ [`MAX_NAME_LEN`] bytes |
//! | TLS (`rediss://`) | server certificate verified against the system's roots ([`ClientBuilder::tls_root_ca`] for a private CA) |
//! | replica acknowledgement | off ([`ClientBuilder::replicas`]; [`DEFAULT_REPLICA_TIMEOUT`] suggested) |
//! | eviction check | [`DEFAULT_EVICTION_CHECK`]: warn when a server may evict lock keys |
//! | dropped guard | released in the background (or expires after its TTL) |
#![forbid(unsafe_code)]

mod admin;
mod client;
mod config;
mod error;
mod guard;
mod keys;
mod lease;
mod lock;
mod node;
mod quorum;
mod renew;
mod retry;
mod script;
mod sentinel;
mod tls;
mod token;
mod wait;

pub use admin::{Holder, LockInfo};
pub use client::Client;
pub use config::{
    ClientBuilder, DEFAULT_COMMAND_TIMEOUT, DEFAULT_CONNECT_TIMEOUT, DEFAULT_DRIFT_FACTOR,
    DEFAULT_EVICTION_CHECK, DEFAULT_PREFIX, DEFAULT_REPLICA_TIMEOUT, DEFAULT_URL, DRIFT_FLOOR,
    EvictionCheck, MAX_TTL,
};
pub use error::{BackendError, BackendErrorKind, ConfigError, Error, Lost};
pub use guard::{Guard, ReleaseOutcome};
pub use keys::MAX_NAME_LEN;
pub use lock::{LockOptions, MAX_LABEL_LEN, QUEUE_ENTRY_TTL};
pub use quorum::{MIN_NODE_TIMEOUT, NODE_TIMEOUT_SHARE};
pub use renew::RENEW_DIVISOR;
pub use retry::{DEFAULT_ACQUIRE_TIMEOUT, DEFAULT_RETRY_DELAY, DEFAULT_RETRY_MAX_DELAY, Retry};
pub use token::Token;

/// The token [`Guard::cancellation`] returns, re-exported from `tokio-util`.
pub use tokio_util::sync::CancellationToken;

/// The `redis` crate this version of redlease is built on, for
/// [`ClientBuilder::connection`].
pub use redis;

/// Compiles the README's example as a doctest, so it stays true.
#[doc = include_str!("../../../README.md")]
#[cfg(doctest)]
pub struct ReadmeDoctests;
