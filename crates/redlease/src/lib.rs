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
//! `examples/basic.rs` in the crate runs this against a server of your choice
//! (`REDLEASE_URL`); the other examples show renewal with its loss signal, fencing against a
//! store, Redlock over three servers, and the blocking API.
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
//! so both keys live in one slot. The prefix defaults to [`DEFAULT_PREFIX`]. A
//! [`Semaphore`]'s permits and an [`RwLock`]'s readers use `{prefix}{N}` too (the readers as
//! the lock key itself, so that a writer — any lock client — sees it taken), with companion
//! keys that expire with the last hold; only the fence counter persists.
//!
//! # Semaphores and read-write locks
//!
//! [`Client::semaphore`] allows at most N holders of a name at once: each [`Permit`] is a lease
//! of its own, with a slot and a fence. [`Client::rwlock`] shares a name among readers
//! ([`ReadGuard`]) and gives it to one writer at a time — the lock itself, so
//! [`Client::acquire`] and a reader exclude each other; writers are preferred.
//!
//! # Defaults
//!
//! | what | value |
//! |---|---|
//! | server | [`DEFAULT_URL`] |
//! | key prefix | [`DEFAULT_PREFIX`] |
//! | drift allowance | `ttl ×` [`DEFAULT_DRIFT_FACTOR`] `+` [`DRIFT_FLOOR`] |
//! | connect / command timeout | [`DEFAULT_CONNECT_TIMEOUT`] / [`DEFAULT_COMMAND_TIMEOUT`] |
//! | retry for [`Client::acquire`] | exponential, 10 ms to 200 ms with jitter, for 10 s ([`Retry::default`]) |
//! | auto-renewal | off; when on, every third of the TTL ([`LockOptions::auto_renew`]) |
//! | Redlock per-node timeout | 5 % of the TTL, at least 10 ms |
//! | fair queue entry | kept 3 s without a retry ([`LockOptions::fair`]) |
//! | limits | TTL ≤ [`MAX_TTL`], name ≤ [`MAX_NAME_LEN`] bytes, label ≤ [`MAX_LABEL_LEN`] bytes |
//! | TLS (`rediss://`) | server certificate verified against the system's roots ([`ClientBuilder::tls_root_ca`] for a private CA) |
//! | replica acknowledgement | off ([`ClientBuilder::replicas`]) |
//! | eviction check | [`EvictionCheck::Warn`]: warn when a server may evict lock keys |
//! | dropped guard | released in the background (or expires after its TTL) |
//!
//! # Cargo features
//!
//! None is on by default: a build without features has plain `redis://` connections to single
//! servers (one, or several for Redlock) and no TLS stack, Cluster client or metrics facade in
//! its dependency tree. The `redis` crate's features follow ours, so an application's own
//! `redis` gets nothing it did not ask for.
//!
//! | feature | default | what it adds |
//! |---|---|---|
//! | `tls` | off | `rediss://` URLs, [`ClientBuilder::tls_root_ca`] and [`ClientBuilder::tls_client_cert`], through rustls |
//! | `cluster` | off | Redis Cluster deployments: [`ClientBuilder::cluster`] and `ClientBuilder::cluster_connection` |
//! | `sentinel` | off | Sentinel deployments: [`ClientBuilder::sentinel`] |
//! | `blocking` | off | `redlease::blocking`: a synchronous client and guard for programs without an async runtime, driven by one runtime thread per client |
//! | `metrics` | off | counters and histograms through the [`metrics`](https://docs.rs/metrics) facade (see [Metrics](#metrics)) |
//!
//! A setting that needs a feature this build lacks (a `rediss://` URL without `tls`,
//! [`ClientBuilder::cluster`] without `cluster`, …) compiles, and makes
//! [`ClientBuilder::build`] fail with [`ConfigError::FeatureDisabled`] naming the feature.
//!
//! **rustls's cryptography provider** (feature `tls`): rustls needs one process-wide provider.
//! If the application installed one (`CryptoProvider::install_default`, e.g. *aws-lc-rs*)
//! before the first `rediss://` connection, redlease uses it and leaves it in place. If none is
//! installed then, redlease installs rustls's *ring* provider as the process default (the only
//! provider it compiles in), which other rustls users in the process then share.
//!
//! # Metrics
//!
//! With the feature `metrics`, a client records through the `metrics` facade into whatever
//! recorder the application installed (an exporter such as `metrics-exporter-prometheus`;
//! without one, recording costs next to nothing). `examples/metrics.rs` exports them for
//! Prometheus.
//!
//! | metric | kind | labels | what |
//! |---|---|---|---|
//! | `redlease_acquire_seconds` | histogram | `result`: `acquired`, `contended`, `timed_out`, `failed` | the time an acquire or try-acquire took |
//! | `redlease_acquire_wait_seconds` | histogram | | the part of an acquire spent waiting between attempts (acquires that waited) |
//! | `redlease_contended_attempts_total` | counter | | attempts that found the lock held by another owner |
//! | `redlease_acquisitions_total` | counter | | leases granted |
//! | `redlease_releases_total` | counter | `outcome`: `released`, `expired`, `held_by_other`, `failed`, `in_background` (a dropped guard) | releases |
//! | `redlease_leases_lost_total` | counter | `reason`: `expired`, `held_by_other`, `unreachable`, `hold_cap_reached` | leases declared lost (by renewal, extend, or the loss signal) |
//! | `redlease_renewal_rounds_total` | counter | | renewal rounds (one batch of due leases over every node) |
//! | `redlease_renewal_round_seconds` | histogram | | the time a renewal round took |
//!
//! [`ClientBuilder::metrics_per_name`] adds a `name` label (the lock name) to every metric but
//! the renewal rounds'. It is off by default: names are often unbounded (one per user, job or
//! file), and each would make a time series of every metric.
//!
//! Whatever the features, every acquire, release, extend and renewal round runs in a `tracing`
//! span (`redlease.acquire`, `redlease.release`, `redlease.extend`, `redlease.renewal`, at
//! level INFO) carrying the lock name and fence, never the token.
//!
//! # Supported servers
//!
//! Redis 6.2 and 7, and Valkey 8: the test suite runs in full against Redis 7.0, and its lease,
//! waiting, renewal, fencing, Redlock, Cluster, Sentinel and blocking tests against Redis 6.2
//! and Valkey 8.1 too.
#![forbid(unsafe_code)]
#![cfg_attr(docsrs, feature(doc_cfg))]

// Layers, bottom to top: each module imports only those above it in this list (the code map in
// DESIGN.md says what each owns; `tests/layers.rs` checks it).
mod acquire;
mod backend;
#[cfg(feature = "blocking")]
#[cfg_attr(docsrs, doc(cfg(feature = "blocking")))]
pub mod blocking;
mod client;
mod conn;
mod engine;
mod error;
mod keys;
mod lease;
mod lock;
mod options;
mod outcome;
mod quorum;
mod renew;
mod retry;
mod rwlock;
mod script;
mod semaphore;
mod subscribe;
mod telemetry;
mod timing;
mod token;

pub use client::{
    Client, ClientBuilder, DEFAULT_COMMAND_TIMEOUT, DEFAULT_CONNECT_TIMEOUT, DEFAULT_PREFIX,
    DEFAULT_URL, EvictionCheck,
};
pub use error::{BackendError, BackendErrorKind, ConfigError, Error};
pub use keys::MAX_NAME_LEN;
pub use lock::{Guard, Holder, LockInfo};
pub use options::{LockOptions, MAX_LABEL_LEN};
pub use outcome::{Lost, ReleaseOutcome};
pub use retry::Retry;
pub use rwlock::{ReadGuard, RwLock};
pub use semaphore::{MAX_PERMITS, Permit, Semaphore};
pub use timing::{DEFAULT_DRIFT_FACTOR, DRIFT_FLOOR, MAX_TTL};
pub use token::Token;

/// The token [`Guard::cancellation`] returns, re-exported from `tokio-util`.
pub use tokio_util::sync::CancellationToken;

/// The `redis` crate this version of redlease is built on, for
/// [`ClientBuilder::connection`].
pub use redis;

/// Compiles the crate README's examples as doctests, so they stay true.
#[doc = include_str!("../README.md")]
#[cfg(doctest)]
pub struct ReadmeDoctests;
