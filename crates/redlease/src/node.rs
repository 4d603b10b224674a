//! One Redis server: a shared connection and the lease scripts sent over it.

use std::future::Future;
use std::sync::{Arc, LazyLock};
use std::time::Duration;

use redis::aio::ConnectionLike;
use redis::{Cmd, Pipeline, RedisFuture, Script, Value};

use crate::error::{BackendError, BackendErrorKind, Error};
use crate::keys::Keys;
use crate::lease::Lease;
use crate::token::Token;

const ACQUIRE_LUA: &str = include_str!("scripts/acquire.lua");
const RELEASE_LUA: &str = include_str!("scripts/release.lua");
const EXTEND_LUA: &str = include_str!("scripts/extend.lua");
const RAISE_FENCE_LUA: &str = include_str!("scripts/raise_fence.lua");
const ACQUIRE_FAIR_LUA: &str = include_str!("scripts/acquire_fair.lua");
const LEAVE_QUEUE_LUA: &str = include_str!("scripts/leave_queue.lua");
static ACQUIRE: LazyLock<Script> = LazyLock::new(|| Script::new(ACQUIRE_LUA));
static RELEASE: LazyLock<Script> = LazyLock::new(|| Script::new(RELEASE_LUA));
static EXTEND: LazyLock<Script> = LazyLock::new(|| Script::new(EXTEND_LUA));
static RAISE_FENCE: LazyLock<Script> = LazyLock::new(|| Script::new(RAISE_FENCE_LUA));
static ACQUIRE_FAIR: LazyLock<Script> = LazyLock::new(|| Script::new(ACQUIRE_FAIR_LUA));
static LEAVE_QUEUE: LazyLock<Script> = LazyLock::new(|| Script::new(LEAVE_QUEUE_LUA));

/// What one acquire attempt found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Acquired {
    /// The lease is ours, with this fencing token.
    Granted { fence: u64 },
    /// Another owner holds it for this much longer (`None`: unknown, because the key has no
    /// expiry, or in fair mode the lock is free but promised to an earlier waiter).
    Held { remaining: Option<Duration> },
}

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

struct AnyConnection(Box<dyn SharedConnection>);

impl ConnectionLike for AnyConnection {
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

/// Awaits a Redis request for at most `limit`, turning failures into [`Error::Backend`].
pub(crate) async fn bounded<T>(
    node: &str,
    context: &'static str,
    limit: Duration,
    request: impl Future<Output = redis::RedisResult<T>>,
) -> Result<T, Error> {
    match tokio::time::timeout(limit, request).await {
        Ok(Ok(reply)) => Ok(reply),
        Ok(Err(e)) => Err(BackendError::from_redis(node, context, e).into()),
        Err(_elapsed) => {
            Err(BackendError::new(BackendErrorKind::Timeout, node, context, None).into())
        }
    }
}

/// A Redis server and how to talk to it.
pub(crate) struct Node {
    connection: Box<dyn SharedConnection>,
    /// `host:port` (or a description of a caller-supplied connection); never credentials.
    label: String,
    command_timeout: Duration,
}

impl std::fmt::Debug for Node {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Node")
            .field("label", &self.label)
            .field("command_timeout", &self.command_timeout)
            .finish_non_exhaustive()
    }
}

impl Node {
    pub(crate) fn new<C>(connection: C, label: String, command_timeout: Duration) -> Self
    where
        C: ConnectionLike + Clone + Send + Sync + 'static,
    {
        Self {
            connection: Box::new(connection),
            label,
            command_timeout,
        }
    }

    pub(crate) fn label(&self) -> &str {
        &self.label
    }

    /// Loads the scripts in one round trip, so that the first lease costs one round trip
    /// rather than three (`EVALSHA`, `NOSCRIPT`, `SCRIPT LOAD`). This is also the first
    /// request on a new connection, so it proves the server answers. After a server restart
    /// the scripts are reloaded on demand.
    pub(crate) async fn load_scripts(&self, limit: Duration) -> Result<(), Error> {
        let mut pipe = redis::pipe();
        for source in [
            ACQUIRE_LUA,
            RELEASE_LUA,
            EXTEND_LUA,
            RAISE_FENCE_LUA,
            ACQUIRE_FAIR_LUA,
            LEAVE_QUEUE_LUA,
        ] {
            pipe.cmd("SCRIPT").arg("LOAD").arg(source);
        }
        let mut conn = AnyConnection(self.connection.clone_box());
        let loading = pipe.query_async::<Vec<String>>(&mut conn);
        bounded(&self.label, "loading scripts", limit, loading).await?;
        Ok(())
    }

    /// Runs one script call, bounded by `limit` (itself capped by the command timeout).
    async fn run<F, Fut>(
        &self,
        context: &'static str,
        limit: Duration,
        call: F,
    ) -> Result<[Value; 2], Error>
    where
        F: FnOnce(AnyConnection) -> Fut,
        Fut: Future<Output = redis::RedisResult<Vec<Value>>>,
    {
        let connection = AnyConnection(self.connection.clone_box());
        let limit = limit.min(self.command_timeout);
        let reply = bounded(&self.label, context, limit, call(connection)).await?;
        <[Value; 2]>::try_from(reply).map_err(|_| self.protocol_error(context))
    }

    fn protocol_error(&self, context: &'static str) -> Error {
        BackendError::new(BackendErrorKind::Protocol, &self.label, context, None).into()
    }

    fn int(&self, value: &Value, context: &'static str) -> Result<i64, Error> {
        match value {
            Value::Int(n) => Ok(*n),
            _ => Err(self.protocol_error(context)),
        }
    }

    fn wrong_type(key: &str, found: &Value) -> Error {
        let found = match found {
            Value::BulkString(bytes) => String::from_utf8_lossy(bytes).into_owned(),
            Value::SimpleString(s) => s.clone(),
            other => format!("{other:?}"),
        };
        Error::WrongType {
            key: key.to_owned(),
            found: if found == "string" {
                "string that is not a positive integer".to_owned()
            } else {
                found
            },
        }
    }

    /// One acquire attempt: `SET NX PX` plus the fence increment, in one script.
    ///
    /// `limit` bounds the wait for the reply: a reply later than the lease's validity is useless.
    ///
    /// With `queue_entry_ms`, the fair variant: waiters are served in arrival order, and a
    /// queue entry lives that long unless refreshed by another attempt.
    pub(crate) async fn acquire(
        &self,
        keys: &Keys,
        token: &Token,
        ttl_ms: u64,
        queue_entry_ms: Option<u64>,
        limit: Duration,
    ) -> Result<Acquired, Error> {
        const CONTEXT: &str = "acquiring a lease";
        let [code, detail] = self
            .run(CONTEXT, limit, |mut conn| async move {
                let mut invocation = match queue_entry_ms {
                    None => ACQUIRE.prepare_invoke(),
                    Some(_) => ACQUIRE_FAIR.prepare_invoke(),
                };
                invocation.key(&keys.lock).key(&keys.fence);
                if queue_entry_ms.is_some() {
                    invocation.key(&keys.queue).key(&keys.queue_expiry);
                }
                invocation.arg(token.as_str()).arg(ttl_ms);
                if let Some(entry_ms) = queue_entry_ms {
                    invocation.arg(entry_ms);
                }
                invocation.invoke_async(&mut conn).await
            })
            .await?;
        match self.int(&code, CONTEXT)? {
            1 => {
                let fence = self.int(&detail, CONTEXT)?;
                Ok(Acquired::Granted {
                    fence: u64::try_from(fence).map_err(|_| self.protocol_error(CONTEXT))?,
                })
            }
            0 => {
                let pttl = self.int(&detail, CONTEXT)?;
                Ok(Acquired::Held {
                    remaining: u64::try_from(pttl).ok().map(Duration::from_millis),
                })
            }
            -1 => Err(Self::wrong_type(&keys.lock, &detail)),
            -2 => Err(Self::wrong_type(&keys.fence, &detail)),
            _ => Err(self.protocol_error(CONTEXT)),
        }
    }

    /// Takes a fair waiter out of the queue (it gave up), waking the others if the lock is free.
    pub(crate) async fn leave_queue(&self, keys: &Keys, token: &Token) -> Result<(), Error> {
        const CONTEXT: &str = "leaving the wait queue";
        self.run(CONTEXT, self.command_timeout, |mut conn| async move {
            LEAVE_QUEUE
                .key(&keys.lock)
                .key(&keys.queue)
                .key(&keys.queue_expiry)
                .arg(token.as_str())
                .invoke_async(&mut conn)
                .await
        })
        .await?;
        Ok(())
    }

    /// Raises the fence counter to at least `fence` (Redlock fencing; see DESIGN.md).
    pub(crate) async fn raise_fence(
        &self,
        keys: &Keys,
        fence: u64,
        limit: Duration,
    ) -> Result<(), Error> {
        const CONTEXT: &str = "raising the fence counter";
        let [code, detail] = self
            .run(CONTEXT, limit, |mut conn| async move {
                RAISE_FENCE
                    .key(&keys.fence)
                    .arg(fence)
                    .invoke_async(&mut conn)
                    .await
            })
            .await?;
        match self.int(&code, CONTEXT)? {
            1 => Ok(()),
            -2 => Err(Self::wrong_type(&keys.fence, &detail)),
            _ => Err(self.protocol_error(CONTEXT)),
        }
    }

    /// Deletes the lock key if it still holds `token`.
    pub(crate) async fn release(&self, keys: &Keys, token: &Token) -> Result<Found, Error> {
        const CONTEXT: &str = "releasing a lease";
        let [code, detail] = self
            .run(CONTEXT, self.command_timeout, |mut conn| async move {
                RELEASE
                    .key(&keys.lock)
                    .arg(token.as_str())
                    .invoke_async(&mut conn)
                    .await
            })
            .await?;
        self.found(&code, &detail, CONTEXT, keys)
    }

    /// Decodes a compare-and-act script's reply.
    fn found(
        &self,
        code: &Value,
        detail: &Value,
        context: &'static str,
        keys: &Keys,
    ) -> Result<Found, Error> {
        match self.int(code, context)? {
            1 => Ok(Found::Ours),
            0 => Ok(Found::Gone),
            -1 => Ok(Found::Other),
            -2 => Err(Self::wrong_type(&keys.lock, detail)),
            _ => Err(self.protocol_error(context)),
        }
    }

    /// Extends many leases in one pipelined round trip: the renewer's batch for this node.
    /// Each lease gets its own outcome; a failure of the whole round trip is the outer error.
    pub(crate) async fn extend_many(
        &self,
        batch: &[(Arc<Lease>, u64)],
        limit: Duration,
    ) -> Result<Vec<Result<Found, Error>>, Error> {
        const CONTEXT: &str = "renewing leases";
        let mut pipe = redis::pipe();
        pipe.ignore_errors();
        for (lease, ttl_ms) in batch {
            pipe.cmd("EVALSHA")
                .arg(EXTEND.get_hash())
                .arg(1)
                .arg(&lease.keys.lock)
                .arg(lease.token.as_str())
                .arg(*ttl_ms);
        }
        let send = |pipe: &Pipeline| {
            let mut conn = AnyConnection(self.connection.clone_box());
            let pipe = pipe.clone();
            async move {
                pipe.query_async::<Vec<redis::RedisResult<Value>>>(&mut conn)
                    .await
            }
        };
        let mut replies = bounded(&self.label, CONTEXT, limit, send(&pipe)).await?;
        let no_script = |reply: &redis::RedisResult<Value>| {
            reply.as_ref().is_err_and(|e| {
                e.kind() == redis::ErrorKind::Server(redis::ServerErrorKind::NoScript)
            })
        };
        if replies.iter().any(no_script) {
            // The server restarted and forgot the scripts: load them and send the batch again.
            self.load_scripts(limit).await?;
            replies = bounded(&self.label, CONTEXT, limit, send(&pipe)).await?;
        }
        Ok(replies
            .into_iter()
            .zip(batch)
            .map(|(reply, (lease, _))| {
                let reply = reply
                    .map_err(|e| Error::from(BackendError::from_redis(&self.label, CONTEXT, e)))?;
                let Value::Array(items) = reply else {
                    return Err(self.protocol_error(CONTEXT));
                };
                let [code, detail] =
                    <[Value; 2]>::try_from(items).map_err(|_| self.protocol_error(CONTEXT))?;
                self.found(&code, &detail, CONTEXT, &lease.keys)
            })
            .collect())
    }
}

/// What a compare-and-act script found at the lock key (and acted on if ours).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Found {
    Ours,
    Gone,
    Other,
}
