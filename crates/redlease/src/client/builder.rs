//! [`ClientBuilder`]: where Redis is, how keys are named, how long to wait, and the checks
//! that reject bad values before anything is sent.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use redis::aio::ConnectionLike;

use super::Client;
use super::connect::{self, Settings, Source};
use crate::backend::{Deployment, Replicas};
use crate::conn::tls::TlsSettings;
use crate::conn::url::redact_url;
use crate::conn::{Connection, PubSubSource};
use crate::error::{ConfigError, Error};
use crate::keys::validate_prefix;
use crate::timing::{DEFAULT_DRIFT_FACTOR, Drift};

/// The server used when none is given.
pub const DEFAULT_URL: &str = "redis://127.0.0.1:6379";
/// The prefix of every key and channel redlease writes.
pub const DEFAULT_PREFIX: &str = "redlease:";
/// How long connecting to Redis may take, in total, before [`ClientBuilder::build`] fails.
pub const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(2);
/// How long any single command may take before it counts as failed.
pub const DEFAULT_COMMAND_TIMEOUT: Duration = Duration::from_secs(1);

/// What [`ClientBuilder::build`] does when a server's `maxmemory-policy` lets it evict keys
/// (any policy but `noeviction`, with a `maxmemory` limit set): an evicted lock key is a lease
/// that silently ended, so another client can take the lock while its holder works.
///
/// The check reads `INFO memory` once per server (every primary of a Cluster) when the client
/// is built; servers that cannot be reached then are not checked.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
#[non_exhaustive]
pub enum EvictionCheck {
    /// Log a warning (`tracing::warn!`) and connect anyway. The default.
    #[default]
    Warn,
    /// Fail with [`ConfigError::EvictingPolicy`], or [`ConfigError::EvictionPolicyUnknown`]
    /// when the policy cannot be read (for instance `INFO` is denied to this user).
    Refuse,
    /// Do not check.
    Off,
}

/// Settings for a [`Client`]; create with [`Client::builder`], finish with
/// [`build`](ClientBuilder::build), which validates everything.
///
/// Each [`url`](Self::url) or [`connection`](Self::connection) call adds a node. One node is a
/// plain single-instance lock; several independent masters make a Redlock quorum: a lease is
/// granted when a majority grants it (see DESIGN.md). Use an odd number of nodes (3 or 5):
/// with 2, both must answer, so one failure stops every lock.
///
/// | setting | default |
/// |---|---|
/// | nodes | one, [`DEFAULT_URL`] |
/// | key prefix | [`DEFAULT_PREFIX`] |
/// | drift factor | [`DEFAULT_DRIFT_FACTOR`] (plus [`DRIFT_FLOOR`](crate::DRIFT_FLOOR)) |
/// | connect timeout | [`DEFAULT_CONNECT_TIMEOUT`] |
/// | command timeout | [`DEFAULT_COMMAND_TIMEOUT`] |
/// | TLS (`rediss://`) | certificate verified against the system's roots; no client certificate |
/// | replica acknowledgement | off |
/// | eviction check | [`EvictionCheck::Warn`] |
///
/// Besides single servers, a node can be a whole Redis Cluster ([`cluster`](Self::cluster))
/// or the primary of a Sentinel service ([`sentinel`](Self::sentinel)); see the README's
/// "Deployments" section and DESIGN.md for what each guarantees.
#[must_use = "a builder does nothing until `build` is awaited"]
pub struct ClientBuilder {
    sources: Vec<Source>,
    prefix: String,
    drift_factor: f64,
    connect_timeout: Duration,
    command_timeout: Duration,
    tls: TlsSettings,
    replicas: Option<Replicas>,
    eviction_check: EvictionCheck,
    primary_auth: Option<(String, String)>,
    metrics_per_name: bool,
    /// The first setting this build cannot honour: `(cargo feature, what needs it)`, refused
    /// by `build` (so that code calling it compiles with any feature set).
    missing_feature: Option<(&'static str, &'static str)>,
}

impl fmt::Debug for ClientBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let nodes: Vec<String> = self
            .sources
            .iter()
            .map(|source| match source {
                Source::Url(url) => redact_url(url),
                Source::Connection { label, .. } => label.clone(),
                #[cfg(feature = "cluster")]
                Source::Cluster(urls) => format!(
                    "cluster {:?}",
                    urls.iter().map(|url| redact_url(url)).collect::<Vec<_>>()
                ),
                #[cfg(feature = "sentinel")]
                Source::Sentinel { urls, service } => format!(
                    "sentinel service {service:?} via {:?}",
                    urls.iter().map(|url| redact_url(url)).collect::<Vec<_>>()
                ),
            })
            .collect();
        f.debug_struct("ClientBuilder")
            .field("nodes", &nodes)
            .field("prefix", &self.prefix)
            .field("drift_factor", &self.drift_factor)
            .field("connect_timeout", &self.connect_timeout)
            .field("command_timeout", &self.command_timeout)
            .field("tls", &self.tls)
            .field("replicas", &self.replicas)
            .field("eviction_check", &self.eviction_check)
            .field(
                "sentinel_primary_user",
                &self.primary_auth.as_ref().map(|(user, _password)| user),
            )
            .field("metrics_per_name", &self.metrics_per_name)
            .field("missing_feature", &self.missing_feature)
            .finish()
    }
}

impl Default for ClientBuilder {
    fn default() -> Self {
        Self {
            sources: Vec::new(),
            prefix: DEFAULT_PREFIX.to_owned(),
            drift_factor: DEFAULT_DRIFT_FACTOR,
            connect_timeout: DEFAULT_CONNECT_TIMEOUT,
            command_timeout: DEFAULT_COMMAND_TIMEOUT,
            tls: TlsSettings::default(),
            replicas: None,
            eviction_check: EvictionCheck::default(),
            primary_auth: None,
            metrics_per_name: false,
            missing_feature: None,
        }
    }
}

impl ClientBuilder {
    /// Adds a node: the server at this URL (`redis://[user][:password@]host[:port][/db]`, or
    /// `rediss://` where TLS is compiled in). Its connection reconnects by itself after
    /// failures. The same server listed twice (after resolving host names, with the same
    /// database) is rejected by [`build`](Self::build): it would count twice toward a majority.
    pub fn url(mut self, url: impl Into<String>) -> Self {
        self.sources.push(Source::Url(url.into()));
        self
    }

    /// Adds a node reached through a connection the caller already has: anything implementing
    /// the `redis` crate's async [`ConnectionLike`] that is cheap to clone, such as a
    /// [`MultiplexedConnection`](redis::aio::MultiplexedConnection) or a
    /// [`ConnectionManager`](redis::aio::ConnectionManager). redlease clones it for each
    /// command and never closes it. For a Redis Cluster connection use `cluster_connection`
    /// (cargo feature `cluster`).
    ///
    /// **Waiting polls** with such a node alone: redlease cannot open the pub/sub connection
    /// that a release wakes waiters through, so [`Client::acquire`] retries on its
    /// [`Retry`](crate::Retry) policy's delays instead of being handed the lock (a
    /// `tracing::warn!` says so once, the first time a waiter would have subscribed). Use
    /// [`connection_with_pubsub`](Self::connection_with_pubsub) to have waiters woken.
    pub fn connection<C>(self, connection: C) -> Self
    where
        C: ConnectionLike + Clone + Send + Sync + 'static,
    {
        self.caller_connection(connection, None)
    }

    /// Adds a node reached through a connection the caller already has, as
    /// [`connection`](Self::connection) does, with `pubsub`: a `redis` client for the same
    /// server, on which redlease opens one pub/sub connection per [`Client`] (when the first
    /// waiter waits) so that releases wake waiters as they do for a [`url`](Self::url) node.
    ///
    /// ```no_run
    /// # async fn example() -> Result<(), Box<dyn std::error::Error>> {
    /// use redlease::redis;
    ///
    /// let server = redis::Client::open("redis://127.0.0.1:6379")?;
    /// let manager = redis::aio::ConnectionManager::new(server.clone()).await?;
    /// let client = redlease::Client::builder()
    ///     .connection_with_pubsub(manager, server)
    ///     .build()
    ///     .await?;
    /// # let _ = client;
    /// # Ok(()) }
    /// ```
    pub fn connection_with_pubsub<C>(self, connection: C, pubsub: redis::Client) -> Self
    where
        C: ConnectionLike + Clone + Send + Sync + 'static,
    {
        self.caller_connection(connection, Some(PubSubSource::Server(Box::new(pubsub))))
    }

    fn caller_connection<C>(mut self, connection: C, pubsub: Option<PubSubSource>) -> Self
    where
        C: ConnectionLike + Clone + Send + Sync + 'static,
    {
        let label = format!("caller-supplied connection (db {})", connection.get_db());
        let deployment = Deployment::Server(Connection::borrowed(connection));
        self.sources.push(Source::Connection {
            label,
            deployment,
            pubsub,
        });
        self
    }

    /// Adds a node that is a whole Redis Cluster, reached through any of `urls` (`redis://` or
    /// `rediss://`, with the credentials of the cluster's user; all URLs must share them).
    /// Needs the cargo feature `cluster`: without it, [`build`](Self::build) fails with
    /// [`ConfigError::FeatureDisabled`].
    ///
    /// Each lock lives on the primary that owns its name's hash slot (the name is the keys'
    /// hash tag), so locks spread over the primaries; redirections (`MOVED`, `ASK`) and a
    /// primary's failover are followed by the cluster client. Waiters are woken through
    /// ordinary pub/sub, which a Cluster delivers to every node. A Cluster replicates
    /// asynchronously: a failover can lose a lease (see DESIGN.md, and
    /// [`replicas`](Self::replicas)).
    ///
    /// ```no_run
    /// # async fn example() -> Result<(), redlease::Error> {
    /// let client = redlease::Client::builder()
    ///     .cluster(["redis://10.0.0.1:7000", "redis://10.0.0.2:7000"])
    ///     .build()
    ///     .await?;
    /// # let _ = client;
    /// # Ok(()) }
    /// ```
    pub fn cluster<I>(mut self, urls: I) -> Self
    where
        I: IntoIterator,
        I::Item: Into<String>,
    {
        let urls: Vec<String> = urls.into_iter().map(Into::into).collect();
        #[cfg(feature = "cluster")]
        self.sources.push(Source::Cluster(urls));
        #[cfg(not(feature = "cluster"))]
        {
            drop(urls);
            self.missing("cluster", "a Cluster deployment (ClientBuilder::cluster)");
        }
        self
    }

    /// Adds a node that is a Redis Cluster reached through a cluster connection the caller
    /// made (for settings [`cluster`](Self::cluster) does not offer). It is used like
    /// [`cluster`](Self::cluster)'s: script calls are never pipelined across slots. Without
    /// addresses, waiting cannot subscribe to releases and polls instead (per the retry policy).
    #[cfg(feature = "cluster")]
    #[cfg_attr(docsrs, doc(cfg(feature = "cluster")))]
    pub fn cluster_connection(
        mut self,
        connection: redis::cluster_async::ClusterConnection,
    ) -> Self {
        self.sources.push(Source::Connection {
            label: "caller-supplied cluster connection".to_owned(),
            deployment: Deployment::cluster(connection),
            pubsub: None,
        });
        self
    }

    /// Adds a node that is the primary of the Sentinel service `service_name` (the name in
    /// `sentinel monitor`), found by asking the sentinels at `sentinel_urls` in order. Needs
    /// the cargo feature `sentinel`: without it, [`build`](Self::build) fails with
    /// [`ConfigError::FeatureDisabled`].
    ///
    /// The sentinels' URLs carry the sentinels' own credentials, if any; the primary's are set
    /// with [`sentinel_primary_auth`](Self::sentinel_primary_auth). With `rediss://` sentinel
    /// URLs the primary is reached over TLS too. After a failover the client finds the new
    /// primary by itself: a broken connection, a timeout or a `READONLY` reply (the old
    /// primary was demoted) makes it ask the sentinels again. Replication is asynchronous: a
    /// failover can lose a lease unless [`replicas`](Self::replicas) is on (see DESIGN.md).
    ///
    /// ```no_run
    /// # async fn example() -> Result<(), redlease::Error> {
    /// use std::time::Duration;
    ///
    /// let client = redlease::Client::builder()
    ///     .sentinel(["redis://10.0.0.1:26379", "redis://10.0.0.2:26379"], "locks")
    ///     .sentinel_primary_auth("locker", "secret")
    ///     .replicas(1, Duration::from_millis(100))
    ///     .build()
    ///     .await?;
    /// # let _ = client;
    /// # Ok(()) }
    /// ```
    pub fn sentinel<I>(mut self, sentinel_urls: I, service_name: impl Into<String>) -> Self
    where
        I: IntoIterator,
        I::Item: Into<String>,
    {
        let urls: Vec<String> = sentinel_urls.into_iter().map(Into::into).collect();
        let service = service_name.into();
        #[cfg(feature = "sentinel")]
        self.sources.push(Source::Sentinel { urls, service });
        #[cfg(not(feature = "sentinel"))]
        {
            drop((urls, service));
            self.missing(
                "sentinel",
                "a Sentinel deployment (ClientBuilder::sentinel)",
            );
        }
        self
    }

    /// The user and password for the primary a [`sentinel`](Self::sentinel) names (the
    /// sentinels' own credentials go in their URLs). An empty `username` authenticates as the
    /// default user with the password only. Default: no authentication.
    pub fn sentinel_primary_auth(
        mut self,
        username: impl Into<String>,
        password: impl Into<String>,
    ) -> Self {
        self.primary_auth = Some((username.into(), password.into()));
        self
    }

    /// Trust this certificate authority (PEM, one or more certificates) for `rediss://`
    /// connections, instead of the system's roots: for servers with certificates from a
    /// private CA. The server's certificate is always verified, including its name (or IP
    /// address) against the host in the URL; there is no switch to turn that off. TLS needs
    /// the cargo feature `tls`: without it, [`build`](Self::build) refuses this and `rediss://`
    /// URLs with [`ConfigError::FeatureDisabled`].
    pub fn tls_root_ca(mut self, pem: impl Into<Vec<u8>>) -> Self {
        self.tls.set_root_ca(pem.into());
        self
    }

    /// Present this client certificate (PEM chain) and private key (PEM) on `rediss://`
    /// connections, for servers that require one (`tls-auth-clients yes`). The key is never
    /// printed.
    pub fn tls_client_cert(
        mut self,
        cert_pem: impl Into<Vec<u8>>,
        key_pem: impl Into<Vec<u8>>,
    ) -> Self {
        self.tls.set_client_cert(cert_pem.into(), key_pem.into());
        self
    }

    /// Replica acknowledgement (off by default): after each acquire and extend, wait with
    /// Redis's `WAIT` until `replicas` replicas confirmed the write, for at most `timeout`
    /// (100 ms suits a healthy local network; it is capped at half the time the attempt may
    /// take). If fewer did, an acquire releases the lease again and fails with
    /// [`Error::Backend`] of kind [`NotReplicated`](crate::BackendErrorKind::NotReplicated)
    /// (retried by [`Client::acquire`] like any backend failure); an extend fails with it and
    /// the guard keeps its previous deadline.
    ///
    /// This makes a lease survive the failover of a primary to a replica that acknowledged it;
    /// it does not make replication synchronous: a failover to a replica that did not
    /// acknowledge (with more replicas than `replicas`), a replica that loses the write in a
    /// restart, or a primary that keeps accepting writes while partitioned away can still lose
    /// it (see DESIGN.md). `replicas == 0` turns it off.
    pub fn replicas(mut self, replicas: u32, timeout: Duration) -> Self {
        self.replicas = (replicas > 0).then_some(Replicas {
            wanted: replicas,
            timeout,
        });
        self
    }

    /// What to do when a server's eviction policy may evict lock keys (default
    /// [`EvictionCheck::Warn`]); see [`EvictionCheck`].
    pub fn eviction_check(mut self, check: EvictionCheck) -> Self {
        self.eviction_check = check;
        self
    }

    /// Prefix for every key and channel (default [`DEFAULT_PREFIX`]); it must not contain `{`
    /// or `}`. Clients that should see each other's locks must use the same prefix.
    pub fn prefix(mut self, prefix: impl Into<String>) -> Self {
        self.prefix = prefix.into();
        self
    }

    /// The share of the TTL assumed lost to clock drift, in `0.0..1.0` (default
    /// [`DEFAULT_DRIFT_FACTOR`]). A lease is trusted for `ttl − ttl × factor −` [`DRIFT_FLOOR`](crate::DRIFT_FLOOR).
    pub fn drift_factor(mut self, factor: f64) -> Self {
        self.drift_factor = factor;
        self
    }

    /// Labels every metric of a lock with its name (label `name`; off by default). Names can be
    /// unbounded (one per user, per job, per file): each adds a time series to every metric, so
    /// turn this on only for a small, fixed set of names. Needs the cargo feature `metrics`:
    /// without it, `metrics_per_name(true)` makes [`build`](Self::build) fail with
    /// [`ConfigError::FeatureDisabled`]. See the crate docs, "Metrics".
    pub fn metrics_per_name(mut self, per_name: bool) -> Self {
        self.metrics_per_name = per_name;
        #[cfg(not(feature = "metrics"))]
        if per_name {
            self.missing(
                "metrics",
                "per-name metrics (ClientBuilder::metrics_per_name)",
            );
        }
        self
    }

    /// Bound on connecting (default [`DEFAULT_CONNECT_TIMEOUT`]).
    pub fn connect_timeout(mut self, timeout: Duration) -> Self {
        self.connect_timeout = timeout;
        self
    }

    /// Bound on each command (default [`DEFAULT_COMMAND_TIMEOUT`]). Acquire and extend also
    /// stop waiting once a reply could no longer leave a valid lease.
    pub fn command_timeout(mut self, timeout: Duration) -> Self {
        self.command_timeout = timeout;
        self
    }

    /// Remembers the first setting that needs a feature this build lacks, for `build`.
    #[cfg(not(all(feature = "cluster", feature = "sentinel", feature = "metrics")))]
    fn missing(&mut self, feature: &'static str, needed_for: &'static str) {
        self.missing_feature.get_or_insert((feature, needed_for));
    }

    /// Validates the settings and connects to every node in parallel.
    ///
    /// With several nodes, the client is built as soon as a majority of them answer; the
    /// others keep reconnecting in the background and join later rounds when they come up.
    ///
    /// Then, unless [`EvictionCheck::Off`], it reads each server's eviction policy (see
    /// [`EvictionCheck`]).
    ///
    /// # Errors
    ///
    /// [`Error::InvalidConfig`] for a malformed URL, a node listed twice, a bad prefix, drift
    /// factor or timeout, an empty Cluster or Sentinel address list, unusable TLS material or
    /// TLS settings without a `rediss://` URL, and with [`EvictionCheck::Refuse`] a server that
    /// may evict keys; [`Error::Backend`] when the (single) server cannot be reached or
    /// rejects the connection (wrong password, untrusted TLS certificate, a user without the
    /// permissions redlease needs) within the connect timeout plus the command timeout;
    /// [`Error::NoQuorum`] when fewer than a majority of several nodes can.
    ///
    /// # Cancel safety
    ///
    /// Dropping the future abandons the connection attempt; nothing is left behind.
    ///
    /// # Examples
    ///
    /// ```no_run
    /// # async fn example() -> Result<(), redlease::Error> {
    /// use std::time::Duration;
    ///
    /// let client = redlease::Client::builder()
    ///     .url("redis://127.0.0.1:6379/0")
    ///     .prefix("billing:locks:")
    ///     .command_timeout(Duration::from_millis(500))
    ///     .build()
    ///     .await?;
    /// # let _ = client;
    /// # Ok(()) }
    /// ```
    pub async fn build(self) -> Result<Client, Error> {
        if let Some((feature, needed_for)) = self.missing_feature {
            return Err(ConfigError::FeatureDisabled {
                feature,
                needed_for,
            }
            .into());
        }
        validate_prefix(&self.prefix)?;
        let drift = Drift::new(self.drift_factor)?;
        if self.connect_timeout.is_zero() {
            return Err(ConfigError::ZeroTimeout("connect timeout").into());
        }
        if self.command_timeout.is_zero() {
            return Err(ConfigError::ZeroTimeout("command timeout").into());
        }
        if self.replicas.is_some_and(|r| r.timeout.is_zero()) {
            return Err(ConfigError::ZeroTimeout("replica acknowledgement timeout").into());
        }
        let mut sources = self.sources;
        if sources.is_empty() {
            sources.push(Source::Url(DEFAULT_URL.to_owned()));
        }
        let engine = connect::engine(Settings {
            sources,
            prefix: self.prefix,
            drift,
            connect_timeout: self.connect_timeout,
            command_timeout: self.command_timeout,
            tls: self.tls,
            replicas: self.replicas,
            eviction_check: self.eviction_check,
            primary_auth: self.primary_auth,
            metrics_per_name: self.metrics_per_name,
        })
        .await?;
        Ok(Client::from_engine(Arc::new(engine)))
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn builder_debug_shows_no_secret() {
        let builder = crate::Client::builder()
            .url("rediss://u:url-secret@host:1")
            .cluster(["redis://:cluster-secret@host:2"])
            .sentinel(["redis://:sentinel-secret@host:3"], "svc")
            .sentinel_primary_auth("locker", "primary-secret")
            .tls_client_cert("cert", "key-secret");
        let shown = format!("{builder:?}");
        assert!(!shown.contains("secret"), "{shown}");
        assert!(shown.contains("locker"), "{shown}");
    }
}
