//! Building a [`Client`]: where Redis is, how keys are named, how long to wait, and the checks
//! that reject bad values before anything is sent.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use redis::aio::{ConnectionLike, ConnectionManager, ConnectionManagerConfig};
use redis::cluster::ClusterClientBuilder;
use redis::{ConnectionAddr, ConnectionInfo, IntoConnectionInfo, TlsCertificates};

use crate::client::{Client, Shared};
use crate::error::{BackendError, BackendErrorKind, ConfigError, Error};
use crate::keys::validate_prefix;
use crate::node::{Node, Replicas};
use crate::quorum::Nodes;
use crate::renew::Renewer;
use crate::sentinel::{PrimarySettings, SentinelConnection};
use crate::tls::{TlsSettings, install_crypto_provider};
use crate::wait::{Subscribable, Waiters};

/// The server used when none is given.
pub const DEFAULT_URL: &str = "redis://127.0.0.1:6379";
/// The prefix of every key and channel redlease writes.
pub const DEFAULT_PREFIX: &str = "redlease:";
/// The share of a TTL subtracted from a lease's validity for clock drift between client and
/// server (Redlock's recommended 1%).
pub const DEFAULT_DRIFT_FACTOR: f64 = 0.01;
/// Fixed part of the drift allowance, added to `ttl × drift factor` (timer granularity on the
/// server and the client).
pub const DRIFT_FLOOR: Duration = Duration::from_millis(2);
/// How long connecting to Redis may take, in total, before [`ClientBuilder::build`] fails.
pub const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(2);
/// How long any single command may take before it counts as failed.
pub const DEFAULT_COMMAND_TIMEOUT: Duration = Duration::from_secs(1);
/// The longest TTL a lease may have (one year).
pub const MAX_TTL: Duration = Duration::from_hours(365 * 24);
/// What [`ClientBuilder::build`] does about servers that may evict lock keys, unless told
/// otherwise with [`ClientBuilder::eviction_check`].
pub const DEFAULT_EVICTION_CHECK: EvictionCheck = EvictionCheck::Warn;
/// A reasonable `timeout` for [`ClientBuilder::replicas`]: how long `WAIT` waits for replicas
/// on a healthy local network. Replica acknowledgement itself is off by default.
pub const DEFAULT_REPLICA_TIMEOUT: Duration = Duration::from_millis(100);

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
/// | drift factor | [`DEFAULT_DRIFT_FACTOR`] (plus [`DRIFT_FLOOR`]) |
/// | connect timeout | [`DEFAULT_CONNECT_TIMEOUT`] |
/// | command timeout | [`DEFAULT_COMMAND_TIMEOUT`] |
/// | TLS (`rediss://`) | certificate verified against the system's roots; no client certificate |
/// | replica acknowledgement | off |
/// | eviction check | [`DEFAULT_EVICTION_CHECK`] ([`EvictionCheck::Warn`]) |
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
}

enum Source {
    Url(String),
    Connection(Box<dyn FnOnce(Duration) -> Node + Send + Sync>),
    Cluster(Vec<String>),
    Sentinel { urls: Vec<String>, service: String },
}

impl fmt::Debug for ClientBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let nodes: Vec<String> = self
            .sources
            .iter()
            .map(|source| match source {
                Source::Url(url) => redact_url(url),
                Source::Connection(_) => "caller-supplied connection".to_owned(),
                Source::Cluster(urls) => format!(
                    "cluster {:?}",
                    urls.iter().map(|url| redact_url(url)).collect::<Vec<_>>()
                ),
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
            eviction_check: DEFAULT_EVICTION_CHECK,
            primary_auth: None,
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
    /// the `redis` crate's
    /// async [`ConnectionLike`] that is cheap to clone, such as a
    /// [`MultiplexedConnection`](redis::aio::MultiplexedConnection) or a
    /// [`ConnectionManager`]. redlease clones it for each command and never closes it. For a
    /// Redis Cluster connection use [`cluster_connection`](Self::cluster_connection).
    pub fn connection<C>(mut self, connection: C) -> Self
    where
        C: ConnectionLike + Clone + Send + Sync + 'static,
    {
        let label = format!("caller-supplied connection (db {})", connection.get_db());
        self.sources
            .push(Source::Connection(Box::new(move |command_timeout| {
                Node::new(connection, label, command_timeout, false)
            })));
        self
    }

    /// Adds a node that is a whole Redis Cluster, reached through any of `urls` (`redis://` or
    /// `rediss://`, with the credentials of the cluster's user; all URLs must share them).
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
        self.sources
            .push(Source::Cluster(urls.into_iter().map(Into::into).collect()));
        self
    }

    /// Adds a node that is a Redis Cluster reached through a cluster connection the caller
    /// made (for settings [`cluster`](Self::cluster) does not offer). It is used like
    /// [`cluster`](Self::cluster)'s: script calls are never pipelined across slots. Without
    /// addresses, waiting cannot subscribe to releases and polls instead (per the retry policy).
    pub fn cluster_connection(
        mut self,
        connection: redis::cluster_async::ClusterConnection,
    ) -> Self {
        self.sources
            .push(Source::Connection(Box::new(move |command_timeout| {
                Node::cluster(
                    connection,
                    "caller-supplied cluster connection".to_owned(),
                    command_timeout,
                )
            })));
        self
    }

    /// Adds a node that is the primary of the Sentinel service `service_name` (the name in
    /// `sentinel monitor`), found by asking the sentinels at `sentinel_urls` in order.
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
        self.sources.push(Source::Sentinel {
            urls: sentinel_urls.into_iter().map(Into::into).collect(),
            service: service_name.into(),
        });
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
    /// address) against the host in the URL; there is no switch to turn that off.
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
    /// ([`DEFAULT_REPLICA_TIMEOUT`] is a reasonable value; it is capped at half the time the
    /// attempt may take). If fewer did, an acquire releases the lease again and fails with
    /// [`Error::NotReplicated`] (retried by [`Client::acquire`] like a backend failure); an
    /// extend fails with it and the guard keeps its previous deadline.
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
    /// [`DEFAULT_EVICTION_CHECK`]: warn); see [`EvictionCheck`].
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
    /// [`DEFAULT_DRIFT_FACTOR`]). A lease is trusted for `ttl − ttl × factor − DRIFT_FLOOR`.
    pub fn drift_factor(mut self, factor: f64) -> Self {
        self.drift_factor = factor;
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
        validate_prefix(&self.prefix)?;
        if !(self.drift_factor.is_finite() && (0.0..1.0).contains(&self.drift_factor)) {
            return Err(ConfigError::InvalidDriftFactor(self.drift_factor).into());
        }
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
        let certificates = prepare_tls(&self.tls, &sources)?;
        let timeouts = (self.connect_timeout, self.command_timeout);
        let mut nodes = Vec::with_capacity(sources.len());
        let mut identities = Vec::new();
        let mut subscribable = Vec::new();
        for source in sources {
            let node = match source {
                Source::Url(url) => {
                    let (node, identity, server) = open(&url, timeouts, certificates.as_ref())?;
                    identities.push(identity);
                    subscribable.push(Subscribable::Server(Box::new(server)));
                    node
                }
                Source::Connection(make_node) => make_node(self.command_timeout),
                Source::Cluster(urls) => {
                    let (node, servers) =
                        open_cluster(&urls, timeouts, certificates.as_ref()).await?;
                    subscribable.extend(
                        servers
                            .into_iter()
                            .map(|server| Subscribable::Server(Box::new(server))),
                    );
                    node
                }
                Source::Sentinel { urls, service } => {
                    let (node, sentinel) = open_sentinel(
                        &urls,
                        service,
                        self.primary_auth.clone(),
                        timeouts,
                        certificates.as_ref(),
                    )?;
                    subscribable.push(Subscribable::Sentinel(sentinel));
                    node
                }
            };
            nodes.push(node.with_replicas(self.replicas));
        }
        reject_duplicates(identities, self.connect_timeout).await?;
        let nodes = Nodes::new(nodes);
        let limit = self.connect_timeout + self.command_timeout;
        nodes.load_scripts(limit).await?;
        check_eviction(&nodes, self.eviction_check, limit).await?;
        Ok(Client::from_shared(Arc::new(Shared {
            nodes,
            prefix: self.prefix,
            drift_factor: self.drift_factor,
            renewer: Renewer::default(),
            waiters: Waiters::new(subscribable, self.connect_timeout),
        })))
    }
}

/// Where a node is, for spotting the same server listed twice.
struct Identity {
    label: String,
    db: i64,
    host: String,
    port: u16,
}

/// Checks the TLS settings against the URLs, and returns them in the `redis` crate's form
/// when given. With any `rediss://` URL, makes sure rustls has a cryptography provider.
fn prepare_tls(
    tls: &TlsSettings,
    sources: &[Source],
) -> Result<Option<TlsCertificates>, ConfigError> {
    tls.validate()?;
    let is_tls = |url: &String| url.trim_start().starts_with("rediss://");
    let any_tls = sources.iter().any(|source| match source {
        Source::Url(url) => is_tls(url),
        Source::Cluster(urls) | Source::Sentinel { urls, .. } => urls.iter().any(is_tls),
        Source::Connection(_) => false,
    });
    if tls.is_set() && !any_tls {
        return Err(ConfigError::TlsWithoutRediss);
    }
    if any_tls {
        install_crypto_provider();
    }
    Ok(tls.certificates())
}

/// A `redis` client for `info`, with the TLS settings when it is a `rediss://` address.
fn client_for(
    info: ConnectionInfo,
    certificates: Option<&TlsCertificates>,
) -> redis::RedisResult<redis::Client> {
    match certificates {
        Some(certs) if matches!(info.addr(), ConnectionAddr::TcpTls { .. }) => {
            redis::Client::build_with_tls(info, certs.clone())
        }
        _ => redis::Client::open(info),
    }
}

fn malformed(url: &str) -> impl Fn(redis::RedisError) -> ConfigError + '_ {
    move |e| ConfigError::MalformedUrl {
        url: redact_url(url),
        reason: e.detail().unwrap_or("not a valid Redis URL").to_owned(),
    }
}

/// Parses `url` and sets up a connection that is made on first use (so that nodes connect in
/// parallel, and a node that is down at startup can join later).
fn open(
    url: &str,
    (connect_timeout, command_timeout): (Duration, Duration),
    certificates: Option<&TlsCertificates>,
) -> Result<(Node, Identity, redis::Client), Error> {
    let malformed = malformed(url);
    let info = url.into_connection_info().map_err(&malformed)?;
    let db = info.redis_settings().db();
    let label = match db {
        0 => info.addr().to_string(),
        db => format!("{}/{db}", info.addr()),
    };
    let (host, port) = match info.addr() {
        ConnectionAddr::Tcp(host, port) | ConnectionAddr::TcpTls { host, port, .. } => {
            (host.trim_matches(['[', ']']).to_ascii_lowercase(), *port)
        }
        ConnectionAddr::Unix(path) => (path.display().to_string(), 0),
        _ => (label.clone(), 0),
    };
    let client = client_for(info, certificates).map_err(&malformed)?;
    let config = ConnectionManagerConfig::new()
        .set_connection_timeout(Some(connect_timeout))
        .set_response_timeout(Some(command_timeout))
        .set_number_of_retries(1);
    let manager = ConnectionManager::new_lazy_with_config(client.clone(), config.clone())
        .map_err(&malformed)?;
    let reopen = {
        let client = client.clone();
        move || ConnectionManager::new_lazy_with_config(client.clone(), config.clone()).ok()
    };
    let identity = Identity {
        label: label.clone(),
        db,
        host,
        port,
    };
    Ok((
        Node::new(manager, label, command_timeout, true).with_reopen(reopen),
        identity,
        client,
    ))
}

/// Connects to a Redis Cluster through any of `urls` (learning its slots), and returns the
/// node and a client per seed URL for subscribing.
async fn open_cluster(
    urls: &[String],
    (connect_timeout, command_timeout): (Duration, Duration),
    certificates: Option<&TlsCertificates>,
) -> Result<(Node, Vec<redis::Client>), Error> {
    const CONTEXT: &str = "connecting to the cluster";
    if urls.is_empty() {
        return Err(ConfigError::NoSeedUrls("Cluster").into());
    }
    let mut infos = Vec::with_capacity(urls.len());
    let mut servers = Vec::with_capacity(urls.len());
    for url in urls {
        let info = url
            .as_str()
            .into_connection_info()
            .map_err(malformed(url))?;
        servers.push(client_for(info.clone(), certificates).map_err(malformed(url))?);
        infos.push(info);
    }
    let label = format!("cluster {}", infos[0].addr());
    let any_tls = infos
        .iter()
        .any(|info| matches!(info.addr(), ConnectionAddr::TcpTls { .. }));
    let mut builder = ClusterClientBuilder::new(infos)
        .connection_timeout(connect_timeout)
        .response_timeout(command_timeout);
    if let Some(certs) = certificates.filter(|_| any_tls) {
        builder = builder.certs(certs.clone());
    }
    let client = builder.build().map_err(malformed(&urls[0]))?;
    let connection = crate::node::bounded(
        &label,
        CONTEXT,
        connect_timeout + command_timeout,
        client.get_async_connection(),
    )
    .await?;
    Ok((Node::cluster(connection, label, command_timeout), servers))
}

/// Sets up the primary of a Sentinel service, found on first use.
fn open_sentinel(
    urls: &[String],
    service: String,
    auth: Option<(String, String)>,
    (connect_timeout, command_timeout): (Duration, Duration),
    certificates: Option<&TlsCertificates>,
) -> Result<(Node, SentinelConnection), Error> {
    if urls.is_empty() {
        return Err(ConfigError::NoSeedUrls("Sentinel").into());
    }
    if service.is_empty() {
        return Err(ConfigError::EmptyServiceName.into());
    }
    let tls = urls
        .iter()
        .filter(|url| url.trim_start().starts_with("rediss://"))
        .count();
    if tls != 0 && tls != urls.len() {
        return Err(ConfigError::MalformedUrl {
            url: redact_url(&urls[0]),
            reason: "the sentinel URLs mix redis:// and rediss://".to_owned(),
        }
        .into());
    }
    for url in urls {
        url.as_str()
            .into_connection_info()
            .map_err(malformed(url))?;
    }
    let (username, password) = match auth {
        Some((username, password)) => (Some(username), Some(password)),
        None => (None, None),
    };
    let primary = PrimarySettings {
        username,
        password,
        db: 0,
        tls: tls > 0,
        certificates: certificates.cloned(),
    };
    let sentinel =
        SentinelConnection::new(urls, service, primary, connect_timeout, command_timeout)
            .map_err(malformed(&urls[0]))?;
    let node = Node::new(sentinel.clone(), sentinel.label(), command_timeout, false);
    Ok((node, sentinel))
}

/// Reads every node's eviction policy and warns about, or refuses, servers that may evict
/// lock keys (see [`EvictionCheck`]). Nodes that cannot be reached now are skipped.
async fn check_eviction(nodes: &Nodes, check: EvictionCheck, limit: Duration) -> Result<(), Error> {
    if check == EvictionCheck::Off {
        return Ok(());
    }
    let refuse = check == EvictionCheck::Refuse;
    for (label, found) in nodes
        .each(|node| async move { node.eviction(limit).await })
        .await
    {
        let found = match found {
            Ok(found) => found,
            Err(Error::Backend(e)) if e.kind() == BackendErrorKind::Server => {
                vec![crate::node::Eviction {
                    node: label,
                    risk: Err(server_reason(&e)),
                }]
            }
            // Unreachable now: reported by the requests that need it.
            Err(_) => continue,
        };
        for eviction in found {
            match eviction.risk {
                Ok(None) => {}
                Ok(Some(policy)) if refuse => {
                    return Err(ConfigError::EvictingPolicy {
                        node: eviction.node,
                        policy,
                    }
                    .into());
                }
                Ok(Some(policy)) => tracing::warn!(
                    node = %eviction.node,
                    policy = %policy,
                    "Redis may evict lock keys under memory pressure (maxmemory-policy {policy}): \
                     a lease could end early and the lock be granted twice; \
                     set maxmemory-policy noeviction"
                ),
                Err(reason) if refuse => {
                    return Err(ConfigError::EvictionPolicyUnknown {
                        node: eviction.node,
                        reason,
                    }
                    .into());
                }
                Err(reason) => tracing::warn!(
                    node = %eviction.node,
                    reason = %reason,
                    "cannot read the maxmemory-policy of Redis, so cannot tell whether it may evict lock keys"
                ),
            }
        }
    }
    Ok(())
}

/// The server's error, for a message (no credentials are in server errors).
fn server_reason(e: &BackendError) -> String {
    match e.code() {
        Some(code) => format!("the server answered {code}"),
        None => "the server refused INFO".to_owned(),
    }
}

/// Rejects a server listed twice: the same host (or host names that resolve to a shared
/// address), port and database. A duplicate would count twice toward a majority.
async fn reject_duplicates(
    identities: Vec<Identity>,
    resolve_timeout: Duration,
) -> Result<(), Error> {
    if identities.len() < 2 {
        return Ok(());
    }
    let mut seen: Vec<(i64, Vec<String>, &str)> = Vec::with_capacity(identities.len());
    for identity in &identities {
        let mut addresses = vec![format!("{}:{}", identity.host, identity.port)];
        if identity.port != 0 {
            let lookup = tokio::net::lookup_host((identity.host.as_str(), identity.port));
            // Unresolvable names are left to fail when connecting.
            if let Ok(Ok(resolved)) = tokio::time::timeout(resolve_timeout, lookup).await {
                addresses.extend(resolved.map(|addr| addr.to_string()));
            }
        }
        if let Some((_, _, first)) = seen.iter().find(|(db, known, _)| {
            *db == identity.db && known.iter().any(|a| addresses.contains(a))
        }) {
            return Err(ConfigError::DuplicateNode {
                first: (*first).to_owned(),
                again: identity.label.clone(),
            }
            .into());
        }
        seen.push((identity.db, addresses, &identity.label));
    }
    Ok(())
}

/// The URL with any password (or lone user-info) replaced by `***`, safe to print.
pub(crate) fn redact_url(url: &str) -> String {
    let Some(scheme_end) = url.find("://") else {
        return url.to_owned();
    };
    let rest = &url[scheme_end + 3..];
    let authority_end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let Some(at) = rest[..authority_end].rfind('@') else {
        return url.to_owned();
    };
    let masked = match rest[..at].split_once(':') {
        Some((user, _password)) => format!("{user}:***"),
        None => "***".to_owned(),
    };
    format!("{}{masked}{}", &url[..scheme_end + 3], &rest[at..])
}

#[cfg(test)]
mod tests {
    use super::redact_url;

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

    #[test]
    fn redaction_hides_passwords_only() {
        assert_eq!(
            redact_url("redis://127.0.0.1:6379/2"),
            "redis://127.0.0.1:6379/2"
        );
        assert_eq!(redact_url("redis://:s3cret@host:1"), "redis://:***@host:1");
        assert_eq!(
            redact_url("rediss://alice:s3cret@host/0"),
            "rediss://alice:***@host/0"
        );
        assert_eq!(redact_url("redis://s3cret@host"), "redis://***@host");
        assert_eq!(redact_url("redis://a:p@ss@host"), "redis://a:***@host");
        assert_eq!(redact_url("not a url"), "not a url");
        assert_eq!(redact_url("redis://host/path@x"), "redis://host/path@x");
    }
}
