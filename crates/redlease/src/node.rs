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

/// The Lua scripts, loaded on every node when the client connects (and again after a server
/// restart), then invoked by hash with `EVALSHA`.
static SCRIPTS: LazyLock<[Script; 7]> = LazyLock::new(|| SOURCES.map(Script::new));
const SOURCES: [&str; 7] = [
    include_str!("scripts/acquire.lua"),
    include_str!("scripts/release.lua"),
    include_str!("scripts/extend.lua"),
    include_str!("scripts/raise_fence.lua"),
    include_str!("scripts/acquire_fair.lua"),
    include_str!("scripts/leave_queue.lua"),
    include_str!("scripts/force_release.lua"),
];

/// Indexes into [`SCRIPTS`].
#[derive(Clone, Copy)]
enum Lua {
    Acquire = 0,
    Release = 1,
    Extend = 2,
    RaiseFence = 3,
    AcquireFair = 4,
    LeaveQueue = 5,
    ForceRelease = 6,
}

/// `EVALSHA <script> <number of keys> <keys…>`; the caller appends the arguments.
fn evalsha(script: Lua, keys: &[&str]) -> Cmd {
    let mut cmd = redis::cmd("EVALSHA");
    cmd.arg(SCRIPTS[script as usize].get_hash())
        .arg(keys.len())
        .arg(keys);
    cmd
}

fn is_no_script(e: &redis::RedisError) -> bool {
    e.kind() == redis::ErrorKind::Server(redis::ServerErrorKind::NoScript)
}

/// What one acquire attempt found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Acquired {
    /// The lease is ours, with this fencing token.
    Granted { fence: u64 },
    /// Another owner holds it for this much longer (`None`: unknown, because the key has no
    /// expiry, or in fair mode the lock is free but promised to an earlier waiter).
    Held { remaining: Option<Duration> },
}

/// What a compare-and-act script found at the lock key (and acted on if ours).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Found {
    Ours,
    Gone,
    Other,
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
    /// The connection itself fails a command after `command_timeout` (one redlease opened),
    /// so a timer of ours is needed only for shorter limits.
    times_out_itself: bool,
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
    /// A node over `connection`. `times_out_itself`: the connection already fails commands
    /// after `command_timeout`.
    pub(crate) fn new<C>(
        connection: C,
        label: String,
        command_timeout: Duration,
        times_out_itself: bool,
    ) -> Self
    where
        C: ConnectionLike + Clone + Send + Sync + 'static,
    {
        Self {
            connection: Box::new(connection),
            label,
            command_timeout,
            times_out_itself,
        }
    }

    pub(crate) fn label(&self) -> &str {
        &self.label
    }

    /// Awaits `request` for at most `limit` (capped by the command timeout), without a timer
    /// of our own when the connection's timeout already gives that bound.
    async fn bounded<T>(
        &self,
        context: &'static str,
        limit: Duration,
        request: impl Future<Output = redis::RedisResult<T>>,
    ) -> Result<T, Error> {
        if self.times_out_itself && limit >= self.command_timeout {
            request
                .await
                .map_err(|e| BackendError::from_redis(&self.label, context, e).into())
        } else {
            bounded(
                &self.label,
                context,
                limit.min(self.command_timeout),
                request,
            )
            .await
        }
    }

    /// Loads the scripts in one round trip, so that the first lease costs one round trip
    /// rather than three (`EVALSHA`, `NOSCRIPT`, `SCRIPT LOAD`). This is also the first
    /// request on a new connection, so it proves the server answers.
    pub(crate) async fn load_scripts(&self, limit: Duration) -> Result<(), Error> {
        let mut pipe = redis::pipe();
        for source in SOURCES {
            pipe.cmd("SCRIPT").arg("LOAD").arg(source);
        }
        let mut conn = AnyConnection(self.connection.clone_box());
        let loading = pipe.query_async::<Vec<String>>(&mut conn);
        bounded(&self.label, "loading scripts", limit, loading).await?;
        Ok(())
    }

    /// Runs one script call, bounded by `limit`. A server that forgot the scripts (it
    /// restarted) gets them again, and the call is repeated once.
    async fn run(
        &self,
        context: &'static str,
        limit: Duration,
        cmd: Cmd,
    ) -> Result<[Value; 2], Error> {
        let mut conn = AnyConnection(self.connection.clone_box());
        let reply = match self
            .bounded(context, limit, cmd.query_async::<Vec<Value>>(&mut conn))
            .await
        {
            Err(Error::Backend(e)) if e.source_is(is_no_script) => {
                self.load_scripts(limit.min(self.command_timeout)).await?;
                self.bounded(context, limit, cmd.query_async(&mut conn))
                    .await?
            }
            first => first?,
        };
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
        lease: &Lease,
        ttl_ms: u64,
        queue_entry_ms: Option<u64>,
        limit: Duration,
    ) -> Result<Acquired, Error> {
        const CONTEXT: &str = "acquiring a lease";
        let keys = &lease.keys;
        let cmd = match queue_entry_ms {
            None => {
                let mut cmd = evalsha(Lua::Acquire, &[&keys.lock, &keys.fence]);
                cmd.arg(lease.token.as_str()).arg(ttl_ms).arg(&lease.label);
                cmd
            }
            Some(entry_ms) => {
                let queue = [
                    &*keys.lock,
                    &keys.fence,
                    &keys.queue(),
                    &keys.queue_expiry(),
                ];
                let mut cmd = evalsha(Lua::AcquireFair, &queue);
                cmd.arg(lease.token.as_str())
                    .arg(ttl_ms)
                    .arg(entry_ms)
                    .arg(&lease.label);
                cmd
            }
        };
        let [code, detail] = self.run(CONTEXT, limit, cmd).await?;
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
        let mut cmd = evalsha(
            Lua::LeaveQueue,
            &[&keys.lock, &keys.queue(), &keys.queue_expiry()],
        );
        cmd.arg(token.as_str());
        self.run("leaving the wait queue", self.command_timeout, cmd)
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
        let mut cmd = evalsha(Lua::RaiseFence, &[&keys.fence]);
        cmd.arg(fence);
        let [code, detail] = self.run(CONTEXT, limit, cmd).await?;
        match self.int(&code, CONTEXT)? {
            1 => Ok(()),
            -2 => Err(Self::wrong_type(&keys.fence, &detail)),
            _ => Err(self.protocol_error(CONTEXT)),
        }
    }

    /// Deletes the lock key if it still holds `token`.
    pub(crate) async fn release(&self, keys: &Keys, token: &Token) -> Result<Found, Error> {
        const CONTEXT: &str = "releasing a lease";
        let mut cmd = evalsha(Lua::Release, &[&keys.lock]);
        cmd.arg(token.as_str());
        let [code, detail] = self.run(CONTEXT, self.command_timeout, cmd).await?;
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
        const CONTEXT: &str = "extending leases";
        let mut pipe = redis::pipe();
        pipe.ignore_errors();
        for (lease, ttl_ms) in batch {
            let mut cmd = evalsha(Lua::Extend, &[&lease.keys.lock]);
            cmd.arg(lease.token.as_str()).arg(*ttl_ms);
            pipe.add_command(cmd);
        }
        let mut conn = AnyConnection(self.connection.clone_box());
        let mut replies: Vec<redis::RedisResult<Value>> = self
            .bounded(CONTEXT, limit, pipe.query_async(&mut conn))
            .await?;
        if replies
            .iter()
            .any(|reply| reply.as_ref().is_err_and(is_no_script))
        {
            self.load_scripts(limit.min(self.command_timeout)).await?;
            replies = self
                .bounded(CONTEXT, limit, pipe.query_async(&mut conn))
                .await?;
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

/// `GET`, `PTTL`, `GET`, `ZCARD` and `PUBSUB NUMSUB` replies, in that order.
type InspectReply = (Option<String>, i64, Option<u64>, u64, (String, u64));

/// What one node has for a lock, as [`Node::inspect`] reads it.
#[derive(Debug, Default)]
pub(crate) struct NodeView {
    /// The lock key's value: the holder's token followed by its label.
    pub(crate) value: Option<String>,
    /// The lock key's remaining time in milliseconds (negative: none).
    pub(crate) pttl_ms: i64,
    pub(crate) fence: u64,
    /// Fair-mode waiters queued.
    pub(crate) queued: u64,
    /// Connections subscribed to the release channel: clients with waiters.
    pub(crate) subscribers: u64,
}

impl Node {
    /// Reads a lock's state in one round trip, without changing it.
    pub(crate) async fn inspect(&self, keys: &Keys) -> Result<NodeView, Error> {
        const CONTEXT: &str = "inspecting a lock";
        let mut pipe = redis::pipe();
        pipe.get(&keys.lock)
            .pttl(&keys.lock)
            .get(&keys.fence)
            .zcard(keys.queue())
            .cmd("PUBSUB")
            .arg("NUMSUB")
            .arg(keys.channel());
        let mut conn = AnyConnection(self.connection.clone_box());
        let reply: redis::RedisResult<InspectReply> = pipe.query_async(&mut conn).await;
        match reply {
            Ok((value, pttl_ms, fence, queued, (_, subscribers))) => Ok(NodeView {
                value,
                pttl_ms,
                fence: fence.unwrap_or(0),
                queued,
                subscribers,
            }),
            Err(e) if e.code() == Some("WRONGTYPE") => Err(Error::WrongType {
                key: keys.lock.clone(),
                found: "a non-lock value (see TYPE)".to_owned(),
            }),
            Err(e) => Err(BackendError::from_redis(&self.label, CONTEXT, e).into()),
        }
    }

    /// Deletes the lock key whoever holds it (keeping the fence counter) and wakes waiters.
    /// Returns the deleted value.
    pub(crate) async fn force_release(&self, keys: &Keys) -> Result<Option<String>, Error> {
        const CONTEXT: &str = "breaking a lock";
        let cmd = evalsha(Lua::ForceRelease, &[&keys.lock]);
        let mut conn = AnyConnection(self.connection.clone_box());
        let reply = match self
            .bounded(
                CONTEXT,
                self.command_timeout,
                cmd.query_async::<Value>(&mut conn),
            )
            .await
        {
            Err(Error::Backend(e)) if e.source_is(is_no_script) => {
                self.load_scripts(self.command_timeout).await?;
                self.bounded(CONTEXT, self.command_timeout, cmd.query_async(&mut conn))
                    .await?
            }
            first => first?,
        };
        match reply {
            Value::BulkString(bytes) => Ok(Some(String::from_utf8_lossy(&bytes).into_owned())),
            Value::Nil => Ok(None),
            Value::ServerError(_) => Err(Error::WrongType {
                key: keys.lock.clone(),
                found: "a non-lock value (see TYPE)".to_owned(),
            }),
            _ => Err(self.protocol_error(CONTEXT)),
        }
    }

    /// The lock keys matching a glob `pattern` (already prefixed), found with `SCAN`.
    pub(crate) async fn scan(&self, pattern: &str) -> Result<Vec<String>, Error> {
        const CONTEXT: &str = "listing locks";
        let mut conn = AnyConnection(self.connection.clone_box());
        let mut cursor = 0u64;
        let mut keys = Vec::new();
        loop {
            let mut cmd = redis::cmd("SCAN");
            cmd.arg(cursor)
                .arg("MATCH")
                .arg(pattern)
                .arg("COUNT")
                .arg(1000);
            let (next, batch): (u64, Vec<String>) = self
                .bounded(CONTEXT, self.command_timeout, cmd.query_async(&mut conn))
                .await?;
            keys.extend(batch);
            if next == 0 {
                return Ok(keys);
            }
            cursor = next;
        }
    }
}
