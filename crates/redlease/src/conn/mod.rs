//! Connections: a shared connection cloned for each command and replaced when it falls out of
//! step, bounded waits for replies, where a pub/sub connection can be opened, and the pieces
//! connecting needs (URLs, TLS, Sentinel).

#[cfg(feature = "sentinel")]
pub(crate) mod sentinel;
pub(crate) mod tls;
pub(crate) mod url;

use std::future::Future;
use std::sync::{PoisonError, RwLock};
use std::time::Duration;

use redis::aio::ConnectionLike;
use redis::{Cmd, Pipeline, RedisFuture, RedisResult, Value};

use crate::error::{BackendError, BackendErrorKind, Error};
#[cfg(feature = "sentinel")]
use sentinel::SentinelConnection;

/// A connection of any kind the `redis` crate offers (multiplexed, managed, cluster, or the
/// caller's own wrapper), cloned for each command so concurrent callers share it.
trait SharedConnection: ConnectionLike + Send + Sync {
    fn clone_box(&self) -> Box<dyn SharedConnection>;
}

impl<C: ConnectionLike + Clone + Send + Sync + 'static> SharedConnection for C {
    fn clone_box(&self) -> Box<dyn SharedConnection> {
        Box::new(self.clone())
    }
}

/// One command's handle on a [`Connection`].
pub(crate) struct Handle(Box<dyn SharedConnection>);

impl ConnectionLike for Handle {
    fn req_packed_command<'a>(&'a mut self, cmd: &'a Cmd) -> RedisFuture<'a, Value> {
        self.0.req_packed_command(cmd)
    }

    fn req_packed_commands<'a>(
        &'a mut self,
        pipeline: &'a Pipeline,
        offset: usize,
        count: usize,
    ) -> RedisFuture<'a, Vec<Value>> {
        self.0.req_packed_commands(pipeline, offset, count)
    }

    fn get_db(&self) -> i64 {
        self.0.get_db()
    }
}

/// Opens a new connection to the same server.
type Reopen = Box<dyn Fn() -> Option<Box<dyn SharedConnection>> + Send + Sync>;

/// A connection shared by every command to one server.
pub(crate) struct Connection {
    /// Replaced by a fresh one (see `reopen`) when it falls out of step.
    current: RwLock<Box<dyn SharedConnection>>,
    /// Opens a new connection to the same server, for connections redlease opened itself.
    reopen: Option<Reopen>,
    /// The connection fails a command after the command timeout by itself (one redlease
    /// opened), so a timer of ours is needed only for shorter limits.
    times_out_itself: bool,
}

impl Connection {
    /// A connection redlease did not open (the caller's, a Sentinel's, a Cluster's): never
    /// replaced, and timed by us.
    pub(crate) fn borrowed<C>(connection: C) -> Self
    where
        C: ConnectionLike + Clone + Send + Sync + 'static,
    {
        Self {
            current: RwLock::new(Box::new(connection)),
            reopen: None,
            times_out_itself: false,
        }
    }

    /// A connection redlease opened, which times its commands out by itself and can be
    /// replaced by `reopen()`.
    pub(crate) fn owned<C>(
        connection: C,
        reopen: impl Fn() -> Option<C> + Send + Sync + 'static,
    ) -> Self
    where
        C: ConnectionLike + Clone + Send + Sync + 'static,
    {
        Self {
            current: RwLock::new(Box::new(connection)),
            reopen: Some(Box::new(move || {
                reopen().map(|c| Box::new(c) as Box<dyn SharedConnection>)
            })),
            times_out_itself: true,
        }
    }

    pub(crate) fn handle(&self) -> Handle {
        let current = self.current.read().unwrap_or_else(PoisonError::into_inner);
        Handle(current.clone_box())
    }

    /// After a timeout the connection may still owe replies to abandoned requests: if one of
    /// them never comes (swallowed by a middlebox), every later reply would answer an older
    /// request. A fresh connection starts in step; requests in flight keep the old one.
    pub(crate) fn replace(&self) {
        if let Some(fresh) = self.reopen.as_ref().and_then(|reopen| reopen()) {
            *self.current.write().unwrap_or_else(PoisonError::into_inner) = fresh;
        }
    }

    /// Awaits `request` for at most `limit` (capped by `command_timeout`), without a timer of
    /// our own when the connection's timeout already gives that bound.
    pub(crate) async fn bounded<T>(
        &self,
        node: &str,
        context: &'static str,
        (limit, command_timeout): (Duration, Duration),
        request: impl Future<Output = RedisResult<T>>,
    ) -> Result<T, Error> {
        if self.times_out_itself && limit >= command_timeout {
            request
                .await
                .map_err(|e| BackendError::from_redis(node, context, e).into())
        } else {
            bounded(node, context, limit.min(command_timeout), request).await
        }
    }
}

/// Awaits a Redis request for at most `limit`, turning failures into [`Error::Backend`].
pub(crate) async fn bounded<T>(
    node: &str,
    context: &'static str,
    limit: Duration,
    request: impl Future<Output = RedisResult<T>>,
) -> Result<T, Error> {
    match tokio::time::timeout(limit, request).await {
        Ok(Ok(reply)) => Ok(reply),
        Ok(Err(e)) => Err(BackendError::from_redis(node, context, e).into()),
        Err(_elapsed) => {
            Err(BackendError::new(BackendErrorKind::Timeout, node, context, None).into())
        }
    }
}

/// Where a pub/sub connection can be opened.
#[derive(Clone)]
pub(crate) enum PubSubSource {
    /// A server at a fixed address (a single node, a Redlock node, or a Cluster node: a
    /// `PUBLISH` reaches every node of a Cluster).
    Server(Box<redis::Client>),
    /// The current primary of a Sentinel service, looked up when the subscriber connects.
    #[cfg(feature = "sentinel")]
    Sentinel(SentinelConnection),
}

impl PubSubSource {
    pub(crate) async fn open(&self) -> Option<redis::aio::PubSub> {
        let client = match self {
            Self::Server(client) => (**client).clone(),
            #[cfg(feature = "sentinel")]
            Self::Sentinel(sentinel) => sentinel.primary_client().await.ok()?,
        };
        client.get_async_pubsub().await.ok()
    }
}
