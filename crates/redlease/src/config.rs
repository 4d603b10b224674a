//! Building a [`Client`]: where Redis is, how keys are named, how long to wait, and the checks
//! that reject bad values before anything is sent.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use redis::aio::{ConnectionLike, ConnectionManager, ConnectionManagerConfig};
use redis::{ConnectionAddr, IntoConnectionInfo};

use crate::client::{Client, Shared};
use crate::error::{ConfigError, Error};
use crate::keys::validate_prefix;
use crate::node::Node;
use crate::quorum::Nodes;
use crate::renew::Renewer;
use crate::wait::Waiters;

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
#[must_use = "a builder does nothing until `build` is awaited"]
pub struct ClientBuilder {
    sources: Vec<Source>,
    prefix: String,
    drift_factor: f64,
    connect_timeout: Duration,
    command_timeout: Duration,
}

enum Source {
    Url(String),
    Connection(Box<dyn FnOnce(Duration) -> Node + Send + Sync>),
}

impl fmt::Debug for ClientBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let nodes: Vec<String> = self
            .sources
            .iter()
            .map(|source| match source {
                Source::Url(url) => redact_url(url),
                Source::Connection(_) => "caller-supplied connection".to_owned(),
            })
            .collect();
        f.debug_struct("ClientBuilder")
            .field("nodes", &nodes)
            .field("prefix", &self.prefix)
            .field("drift_factor", &self.drift_factor)
            .field("connect_timeout", &self.connect_timeout)
            .field("command_timeout", &self.command_timeout)
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
    /// [`ConnectionManager`]. redlease clones it for each command and never closes it.
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
    /// # Errors
    ///
    /// [`Error::InvalidConfig`] for a malformed URL, a node listed twice, a bad prefix, drift
    /// factor or timeout; [`Error::Backend`] when the (single) server cannot be reached or
    /// rejects the connection (wrong password, for instance) within the connect timeout plus
    /// the command timeout; [`Error::NoQuorum`] when fewer than a majority of several nodes can.
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
        let mut sources = self.sources;
        if sources.is_empty() {
            sources.push(Source::Url(DEFAULT_URL.to_owned()));
        }
        let mut nodes = Vec::with_capacity(sources.len());
        let mut identities = Vec::new();
        let mut subscribable = Vec::new();
        for source in sources {
            nodes.push(match source {
                Source::Url(url) => {
                    let (node, identity, server) =
                        open(&url, self.connect_timeout, self.command_timeout)?;
                    identities.push(identity);
                    subscribable.push(server);
                    node
                }
                Source::Connection(make_node) => make_node(self.command_timeout),
            });
        }
        reject_duplicates(identities, self.connect_timeout).await?;
        let nodes = Nodes::new(nodes);
        nodes
            .load_scripts(self.connect_timeout + self.command_timeout)
            .await?;
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

/// Parses `url` and sets up a connection that is made on first use (so that nodes connect in
/// parallel, and a node that is down at startup can join later).
fn open(
    url: &str,
    connect_timeout: Duration,
    command_timeout: Duration,
) -> Result<(Node, Identity, redis::Client), Error> {
    let malformed = |e: redis::RedisError| ConfigError::MalformedUrl {
        url: redact_url(url),
        reason: e.detail().unwrap_or("not a valid Redis URL").to_owned(),
    };
    let info = url.into_connection_info().map_err(malformed)?;
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
    let client = redis::Client::open(info).map_err(malformed)?;
    let config = ConnectionManagerConfig::new()
        .set_connection_timeout(Some(connect_timeout))
        .set_response_timeout(Some(command_timeout))
        .set_number_of_retries(1);
    let manager =
        ConnectionManager::new_lazy_with_config(client.clone(), config).map_err(malformed)?;
    let identity = Identity {
        label: label.clone(),
        db,
        host,
        port,
    };
    Ok((
        Node::new(manager, label, command_timeout, true),
        identity,
        client,
    ))
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
