//! What differs between deployments, behind one interface: a single server (a URL of ours, a
//! Sentinel service's current primary, or a caller's connection) pipelines anything; a Redis
//! Cluster routes each command by slot and follows redirections only for single commands, so
//! independent commands go out one by one and a missing script is sent with `EVAL`.
//! Operations are written once over these methods; nothing else asks which deployment it is.

use std::time::Duration;

#[cfg(feature = "cluster")]
use futures_util::future::join_all;
#[cfg(feature = "cluster")]
use redis::cluster_async::ClusterConnection;
#[cfg(feature = "cluster")]
use redis::cluster_routing::{MultipleNodeRoutingInfo, RoutingInfo, SingleNodeRoutingInfo};
use redis::{Cmd, RedisResult, Value};

use crate::conn::Connection;
#[cfg(feature = "cluster")]
use crate::conn::bounded;
use crate::error::{BackendError, BackendErrorKind, Error};
use crate::script::{Call, Script};

pub(crate) enum Deployment {
    /// One server.
    Server(Connection),
    /// A Redis Cluster: `connection` wraps `cluster` for ordinary commands.
    #[cfg(feature = "cluster")]
    Cluster {
        connection: Connection,
        cluster: ClusterConnection,
    },
}

/// A backend's name and its command timeout, for errors and bounds.
#[derive(Clone, Copy)]
pub(crate) struct Context<'a> {
    pub(crate) node: &'a str,
    pub(crate) what: &'static str,
    pub(crate) limit: Duration,
    pub(crate) command_timeout: Duration,
}

impl Context<'_> {
    fn error(&self, kind: BackendErrorKind) -> Error {
        BackendError::new(kind, self.node, self.what, None).into()
    }
}

impl Deployment {
    #[cfg(feature = "cluster")]
    pub(crate) fn cluster(cluster: ClusterConnection) -> Self {
        Self::Cluster {
            connection: Connection::borrowed(cluster.clone()),
            cluster,
        }
    }

    pub(crate) fn connection(&self) -> &Connection {
        match self {
            Self::Server(connection) => connection,
            #[cfg(feature = "cluster")]
            Self::Cluster { connection, .. } => connection,
        }
    }

    /// Sends one command (or a pipeline that must stay on one connection) within the bounds.
    pub(crate) async fn send(&self, cmd: &Cmd, cx: Context<'_>) -> Result<Value, Error> {
        let connection = self.connection();
        let mut handle = connection.handle();
        connection
            .bounded(
                cx.node,
                cx.what,
                (cx.limit, cx.command_timeout),
                cmd.query_async(&mut handle),
            )
            .await
    }

    /// Sends a pipeline on one connection; each command gets its own reply.
    pub(crate) async fn send_pipeline(
        &self,
        pipe: &redis::Pipeline,
        cx: Context<'_>,
    ) -> Result<Vec<RedisResult<Value>>, Error> {
        let connection = self.connection();
        let mut handle = connection.handle();
        connection
            .bounded(
                cx.node,
                cx.what,
                (cx.limit, cx.command_timeout),
                pipe.query_async(&mut handle),
            )
            .await
    }

    /// Loads `scripts` so that the first call of each costs one round trip rather than three
    /// (`EVALSHA`, `NOSCRIPT`, `SCRIPT LOAD`). This is also the first request on a new
    /// connection, so it proves the server answers.
    ///
    /// On a Cluster each `SCRIPT LOAD` is sent alone, which the cluster client sends to every
    /// node (a pipeline would reach one node only); a node that cannot be reached is not an
    /// error there (it gets a script by `EVAL` when it needs it), a denied permission is.
    pub(crate) async fn load_scripts(
        &self,
        scripts: &[&'static Script],
        cx: Context<'_>,
    ) -> Result<(), Error> {
        match self {
            Self::Server(_) => {
                let mut pipe = redis::pipe();
                for script in scripts {
                    pipe.cmd("SCRIPT").arg("LOAD").arg(script.source());
                }
                let loaded = self.send_pipeline(&pipe, cx).await?;
                match loaded.into_iter().find_map(Result::err) {
                    Some(e) => Err(BackendError::from_redis(cx.node, cx.what, e).into()),
                    None => Ok(()),
                }
            }
            #[cfg(feature = "cluster")]
            Self::Cluster { .. } => {
                let loads = scripts.iter().map(|script| async move {
                    let mut cmd = redis::cmd("SCRIPT");
                    cmd.arg("LOAD").arg(script.source());
                    self.send(&cmd, cx).await
                });
                for loaded in join_all(loads).await {
                    match loaded {
                        Err(Error::Backend(e)) if !e.is_permanent() => {
                            // A node that is down now (the connection to the cluster is
                            // already proven): it gets the scripts by `EVAL` when it needs them.
                            tracing::debug!(node = %cx.node, error = %e, "could not load the scripts on every node");
                        }
                        other => other.map(drop)?,
                    }
                }
                Ok(())
            }
        }
    }

    /// After `NOSCRIPT` (the server restarted): the command to send instead. A server gets the
    /// script loaded again; on a Cluster, where the node lacking it is not known, the call
    /// becomes an `EVAL`.
    pub(crate) async fn after_no_script(&self, call: &Call, cx: Context<'_>) -> Result<Cmd, Error> {
        match self {
            Self::Server(_) => {
                self.load_scripts(&[call.script()], cx).await?;
                Ok(call.cmd().clone())
            }
            #[cfg(feature = "cluster")]
            Self::Cluster { .. } => Ok(call.as_eval()),
        }
    }

    /// After a redirection inside a pipeline (a Cluster's slot moved): sends a harmless single
    /// command on `key`, which the cluster client follows, updating its slot map for the next
    /// try.
    #[cfg_attr(
        not(feature = "cluster"),
        expect(clippy::unused_async, reason = "only a Cluster redirects")
    )]
    pub(crate) async fn after_redirect(
        &self,
        key: Option<impl redis::ToRedisArgs>,
        cx: Context<'_>,
    ) {
        match (self, key, cx) {
            #[cfg(feature = "cluster")]
            (Self::Cluster { .. }, Some(key), cx) => {
                let mut pttl = redis::cmd("PTTL");
                pttl.arg(key);
                let _ = self.send(&pttl, cx).await;
            }
            // Only a Cluster redirects.
            _ => {}
        }
    }

    /// The keys matching a glob `pattern`, found with `SCAN` on the server, or on every
    /// primary of a Cluster (found by sending them `PING`).
    pub(crate) async fn scan(&self, pattern: &str, cx: Context<'_>) -> Result<Vec<String>, Error> {
        let mut keys = Vec::new();
        match self {
            Self::Server(_) => {
                let mut cursor = 0u64;
                loop {
                    let reply = self.send(&scan_cmd(cursor, pattern), cx).await?;
                    cursor = scan_page(reply, &mut keys)
                        .ok_or_else(|| cx.error(BackendErrorKind::Protocol))?;
                    if cursor == 0 {
                        return Ok(keys);
                    }
                }
            }
            #[cfg(feature = "cluster")]
            Self::Cluster { cluster, .. } => {
                let mut cluster = cluster.clone();
                let all_primaries =
                    RoutingInfo::MultiNode((MultipleNodeRoutingInfo::AllMasters, None));
                let pinged = bounded(
                    cx.node,
                    cx.what,
                    cx.command_timeout,
                    cluster.route_command(redis::cmd("PING"), all_primaries),
                )
                .await?;
                let Value::Map(primaries) = pinged else {
                    return Err(cx.error(BackendErrorKind::Protocol));
                };
                for (address, _) in primaries {
                    let (host, port) = redis::from_redis_value::<String>(address)
                        .ok()
                        .and_then(|address| {
                            let (host, port) = address.rsplit_once(':')?;
                            Some((host.to_owned(), port.parse().ok()?))
                        })
                        .ok_or_else(|| cx.error(BackendErrorKind::Protocol))?;
                    let mut cursor = 0u64;
                    loop {
                        let route = RoutingInfo::SingleNode(SingleNodeRoutingInfo::ByAddress {
                            host: host.clone(),
                            port,
                        });
                        let reply = bounded(
                            cx.node,
                            cx.what,
                            cx.command_timeout,
                            cluster.route_command(scan_cmd(cursor, pattern), route),
                        )
                        .await?;
                        cursor = scan_page(reply, &mut keys)
                            .ok_or_else(|| cx.error(BackendErrorKind::Protocol))?;
                        if cursor == 0 {
                            break;
                        }
                    }
                }
                Ok(keys)
            }
        }
    }
}

/// `SCAN cursor MATCH pattern COUNT 1000`.
fn scan_cmd(cursor: u64, pattern: &str) -> Cmd {
    let mut cmd = redis::cmd("SCAN");
    cmd.arg(cursor)
        .arg("MATCH")
        .arg(pattern)
        .arg("COUNT")
        .arg(1000);
    cmd
}

/// Adds one `SCAN` reply's keys to `keys`, returning the next cursor.
fn scan_page(reply: Value, keys: &mut Vec<String>) -> Option<u64> {
    let (next, batch): (u64, Vec<String>) = redis::from_redis_value(reply).ok()?;
    keys.extend(batch);
    Some(next)
}
