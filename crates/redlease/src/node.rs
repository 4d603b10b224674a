//! One Redis server: a shared connection, and the lease scripts sent over it.

use std::future::Future;
use std::sync::{Arc, PoisonError, RwLock};
use std::time::Duration;

use futures_util::future::join_all;
use redis::aio::ConnectionLike;
use redis::cluster_async::ClusterConnection;
use redis::cluster_routing::{MultipleNodeRoutingInfo, RoutingInfo, SingleNodeRoutingInfo};
use redis::{Cmd, Pipeline, RedisFuture, RedisResult, Value};

use crate::error::{BackendError, BackendErrorKind, Error};
use crate::keys::Keys;
use crate::lease::Lease;
use crate::script::{
    Lua, SOURCES, echoed, evalsha, first_key, is_no_script, is_redirect, scan_cmd, to_eval,
};
use crate::token::Token;

/// Replica acknowledgement: after a lease is written, `WAIT wanted timeout` on the same
/// connection (see [`ClientBuilder::replicas`](crate::ClientBuilder::replicas)).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Replicas {
    pub(crate) wanted: u32,
    pub(crate) timeout: Duration,
}

impl Replicas {
    /// `WAIT`'s timeout in milliseconds for a request bounded by `limit`: the configured
    /// timeout, but at most half the limit so that the reply can still arrive in time; never
    /// 0, which would make `WAIT` block forever.
    fn wait_ms(self, limit: Duration) -> u64 {
        let ms = self.timeout.min(limit / 2).as_millis();
        u64::try_from(ms).unwrap_or(u64::MAX).max(1)
    }
}

/// What one acquire attempt found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Acquired {
    /// The lease is ours, with this fencing token.
    Granted { fence: u64 },
    /// Another owner holds it for this much longer (`None`: unknown, because the key has no
    /// expiry, or in fair mode the lock is free but promised to an earlier waiter).
    Held { remaining: Option<Duration> },
    /// Granted, but too few replicas acknowledged it in time; it has been released again.
    Unreplicated { acked: u32, wanted: u32 },
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

/// A Redis server and how to talk to it.
pub(crate) struct Node {
    /// Replaced by a fresh one (see `reopen`) when it falls out of step.
    connection: RwLock<Box<dyn SharedConnection>>,
    /// Opens a new connection to the same server, for connections redlease opened itself.
    reopen: Option<Reopen>,
    /// `host:port` (or a description of a caller-supplied connection); never credentials.
    label: String,
    command_timeout: Duration,
    /// The connection itself fails a command after `command_timeout` (one redlease opened),
    /// so a timer of ours is needed only for shorter limits.
    times_out_itself: bool,
    /// For a Redis Cluster: the cluster connection, to reach every primary. Script calls are
    /// then sent alone rather than pipelined (the cluster client follows `MOVED`/`ASK` only
    /// for single commands), and a missing script is sent with `EVAL`.
    cluster: Option<ClusterConnection>,
    /// `WAIT` after acquire and extend, if on.
    replicas: Option<Replicas>,
}

/// Opens a new connection to a node's server.
type Reopen = Box<dyn Fn() -> Option<Box<dyn SharedConnection>> + Send + Sync>;

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
            connection: RwLock::new(Box::new(connection)),
            reopen: None,
            label,
            command_timeout,
            times_out_itself,
            cluster: None,
            replicas: None,
        }
    }

    /// A node over a Redis Cluster: one lock lives on the primary that owns its slot.
    pub(crate) fn cluster(
        connection: ClusterConnection,
        label: String,
        command_timeout: Duration,
    ) -> Self {
        Self {
            cluster: Some(connection.clone()),
            ..Self::new(connection, label, command_timeout, false)
        }
    }

    /// Turns on replica acknowledgement for acquire and extend.
    pub(crate) fn with_replicas(mut self, replicas: Option<Replicas>) -> Self {
        self.replicas = replicas;
        self
    }

    /// Lets the node replace its connection with `reopen()` when the connection times out or
    /// falls out of step.
    pub(crate) fn with_reopen<C>(
        mut self,
        reopen: impl Fn() -> Option<C> + Send + Sync + 'static,
    ) -> Self
    where
        C: ConnectionLike + Clone + Send + Sync + 'static,
    {
        self.reopen = Some(Box::new(move || {
            reopen().map(|c| Box::new(c) as Box<dyn SharedConnection>)
        }));
        self
    }

    fn conn(&self) -> AnyConnection {
        let connection = self
            .connection
            .read()
            .unwrap_or_else(PoisonError::into_inner);
        AnyConnection(connection.clone_box())
    }

    /// After a timeout, the connection may still owe replies to abandoned requests: if one of
    /// them never comes (swallowed by a middlebox), every later reply would answer an older
    /// request. A fresh connection starts in step. Requests in flight keep the old one.
    fn reconnect_after(&self, error: &Error) {
        let stale = match error {
            Error::Backend(e) => {
                e.kind() == BackendErrorKind::Timeout || e.kind() == BackendErrorKind::Protocol
            }
            _ => false,
        };
        if let Some(fresh) = self
            .reopen
            .as_ref()
            .filter(|_| stale)
            .and_then(|reopen| reopen())
        {
            *self
                .connection
                .write()
                .unwrap_or_else(PoisonError::into_inner) = fresh;
        }
    }

    /// Replaces the connection after a reply that answered another request (see [`evalsha`]),
    /// and returns the error for it.
    fn out_of_step(&self) -> Error {
        let error = BackendError::new(
            BackendErrorKind::Protocol,
            &self.label,
            "matching replies to requests (a reply answered another request; the connection was replaced)",
            None,
        )
        .into();
        self.reconnect_after(&error);
        error
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
        request: impl Future<Output = RedisResult<T>>,
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
    ///
    /// On a Cluster each `SCRIPT LOAD` is sent alone, which the cluster client sends to every
    /// node (a pipeline would reach one node only); a node that cannot be reached is not an
    /// error there (it gets a script by `EVAL` when it needs it), a denied permission is.
    pub(crate) async fn load_scripts(&self, limit: Duration) -> Result<(), Error> {
        const CONTEXT: &str = "loading scripts";
        if self.cluster.is_some() {
            let loads = SOURCES.map(|source| async move {
                let mut conn = self.conn();
                let mut cmd = redis::cmd("SCRIPT");
                cmd.arg("LOAD").arg(source);
                bounded(
                    &self.label,
                    CONTEXT,
                    limit,
                    cmd.query_async::<Value>(&mut conn),
                )
                .await
            });
            for loaded in join_all(loads).await {
                match loaded {
                    Err(Error::Backend(e)) if !e.is_permanent() => {
                        // A node that is down now (the connection to the cluster is already
                        // proven): it gets the scripts by `EVAL` when it needs them.
                        tracing::debug!(node = %self.label, error = %e, "could not load the scripts on every node");
                    }
                    other => other.map(drop)?,
                }
            }
            return Ok(());
        }
        let mut pipe = redis::pipe();
        for source in SOURCES {
            pipe.cmd("SCRIPT").arg("LOAD").arg(source);
        }
        let mut conn = self.conn();
        let loading = pipe.query_async::<Vec<String>>(&mut conn);
        bounded(&self.label, CONTEXT, limit, loading).await?;
        Ok(())
    }

    /// After `NOSCRIPT`: loads the scripts again (the server restarted), or on a Cluster,
    /// where the node lacking them is not known, turns the call into an `EVAL`.
    async fn recover_script(&self, cmd: Cmd, limit: Duration) -> Result<Cmd, Error> {
        if self.cluster.is_some()
            && let Some(eval) = to_eval(&cmd)
        {
            return Ok(eval);
        }
        self.load_scripts(limit.min(self.command_timeout)).await?;
        Ok(cmd)
    }

    /// After a redirection inside a pipeline: sends a harmless single command on the same
    /// key, which the cluster client follows, updating its slot map for the next try.
    async fn follow_redirect(&self, cmd: &Cmd, limit: Duration) {
        if let Some(key) = first_key(cmd) {
            let mut conn = self.conn();
            let mut pttl = redis::cmd("PTTL");
            pttl.arg(key);
            let _ = self
                .bounded(
                    "following a Cluster redirection",
                    limit,
                    pttl.query_async::<Value>(&mut conn),
                )
                .await;
        }
    }

    /// Runs one script call, bounded by `limit`. A server that forgot the scripts (it
    /// restarted) gets them again, and the call is repeated once.
    async fn run(
        &self,
        context: &'static str,
        limit: Duration,
        cmd: Cmd,
    ) -> Result<[Value; 2], Error> {
        let (reply, _) = self.run_and_wait(context, limit, cmd, false).await?;
        Ok(reply)
    }

    /// [`run`](Self::run), followed (when `wait` is set and replica acknowledgement is on)
    /// by `WAIT` on the same connection, in one pipeline. Also returns how many replicas
    /// acknowledged, when it waited.
    async fn run_and_wait(
        &self,
        context: &'static str,
        limit: Duration,
        mut cmd: Cmd,
        wait: bool,
    ) -> Result<([Value; 2], Option<u32>), Error> {
        let replicas = self.replicas.filter(|_| wait);
        let mut retried = false;
        loop {
            let result = match replicas {
                None => {
                    let mut conn = self.conn();
                    self.bounded(context, limit, cmd.query_async::<Value>(&mut conn))
                        .await
                        .map(|reply| (reply, None))
                }
                Some(replicas) => self
                    .call_and_wait(context, limit, &cmd, replicas)
                    .await
                    .map(|(reply, acked)| (reply, Some(acked))),
            };
            match result {
                Err(Error::Backend(e)) if !retried && e.source_is(is_no_script) => {
                    retried = true;
                    cmd = self.recover_script(cmd, limit).await?;
                }
                Err(Error::Backend(e))
                    if !retried && self.cluster.is_some() && e.source_is(is_redirect) =>
                {
                    retried = true;
                    self.follow_redirect(&cmd, limit).await;
                }
                Err(error) => {
                    self.reconnect_after(&error);
                    return Err(error);
                }
                Ok((reply, acked)) => {
                    let items = echoed(&cmd, reply).map_err(|_| self.out_of_step())?;
                    let reply =
                        <[Value; 2]>::try_from(items).map_err(|_| self.protocol_error(context))?;
                    return Ok((reply, acked));
                }
            }
        }
    }

    /// `cmd` then `WAIT`, pipelined so that both use one connection: `WAIT` counts the
    /// replicas that acknowledged every write sent before it on its connection.
    async fn call_and_wait(
        &self,
        context: &'static str,
        limit: Duration,
        cmd: &Cmd,
        replicas: Replicas,
    ) -> Result<(Value, u32), Error> {
        let mut pipe = redis::pipe();
        pipe.ignore_errors();
        pipe.add_command(cmd.clone());
        pipe.cmd("WAIT")
            .arg(replicas.wanted)
            .arg(replicas.wait_ms(limit));
        let mut conn = self.conn();
        let replies: Vec<RedisResult<Value>> = self
            .bounded(context, limit, pipe.query_async(&mut conn))
            .await?;
        let [reply, acked] = <[RedisResult<Value>; 2]>::try_from(replies)
            .map_err(|_| self.protocol_error(context))?;
        let reply = reply.map_err(|e| BackendError::from_redis(&self.label, context, e))?;
        let acked = self.acked(acked, context)?;
        Ok((reply, acked))
    }

    /// Decodes `WAIT`'s reply.
    fn acked(&self, reply: RedisResult<Value>, context: &'static str) -> Result<u32, Error> {
        match reply.map_err(|e| BackendError::from_redis(&self.label, context, e))? {
            Value::Int(n) => Ok(u32::try_from(n).unwrap_or(0)),
            _ => Err(self.protocol_error(context)),
        }
    }

    /// The error for a write that too few replicas acknowledged.
    fn not_replicated(&self, context: &'static str, acked: u32) -> Error {
        let wanted = self.replicas.map_or(0, |r| r.wanted);
        BackendError::not_replicated(&self.label, context, acked, wanted).into()
    }

    /// Whether `acked` replicas fall short of what replica acknowledgement requires.
    fn short_of_replicas(&self, acked: Option<u32>) -> bool {
        match (self.replicas, acked) {
            (Some(replicas), Some(acked)) => acked < replicas.wanted,
            _ => false,
        }
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
        let ([code, detail], acked) = self.run_and_wait(CONTEXT, limit, cmd, true).await?;
        match self.int(&code, CONTEXT)? {
            1 if self.short_of_replicas(acked) => {
                // A failover now could lose this grant: give it back rather than hand it out.
                let _ = self.release(keys, &lease.token).await;
                Ok(Acquired::Unreplicated {
                    acked: acked.unwrap_or(0),
                    wanted: self.replicas.map_or(0, |r| r.wanted),
                })
            }
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
        let mut cmd = evalsha(Lua::Release, &[&keys.lock, &keys.queue()]);
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
        let extend = |lease: &Lease, ttl_ms: u64| {
            let mut cmd = evalsha(Lua::Extend, &[&lease.keys.lock]);
            cmd.arg(lease.token.as_str()).arg(ttl_ms);
            cmd
        };
        if self.cluster.is_some() {
            // Leases of different names live in different slots: one command each.
            let calls = batch.iter().map(|(lease, ttl_ms)| async move {
                let ([code, detail], acked) = self
                    .run_and_wait(CONTEXT, limit, extend(lease, *ttl_ms), true)
                    .await?;
                self.extended(&code, &detail, acked, &lease.keys)
            });
            return Ok(join_all(calls).await);
        }
        let mut pipe = redis::pipe();
        pipe.ignore_errors();
        for (lease, ttl_ms) in batch {
            pipe.add_command(extend(lease, *ttl_ms));
        }
        if let Some(replicas) = self.replicas {
            pipe.cmd("WAIT")
                .arg(replicas.wanted)
                .arg(replicas.wait_ms(limit));
        }
        let mut conn = self.conn();
        let sent = self
            .bounded(CONTEXT, limit, pipe.query_async(&mut conn))
            .await;
        let mut replies: Vec<RedisResult<Value>> = sent.inspect_err(|e| self.reconnect_after(e))?;
        if replies
            .iter()
            .any(|reply| reply.as_ref().is_err_and(is_no_script))
        {
            self.load_scripts(limit.min(self.command_timeout)).await?;
            replies = self
                .bounded(CONTEXT, limit, pipe.query_async(&mut conn))
                .await?;
        }
        let acked = match self.replicas {
            Some(_) => Some(self.acked(replies.pop().unwrap_or(Ok(Value::Nil)), CONTEXT)?),
            None => None,
        };
        let mut in_step = true;
        let outcomes = replies
            .into_iter()
            .zip(pipe.cmd_iter())
            .zip(batch)
            .map(|((reply, cmd), (lease, _))| {
                let reply = reply
                    .map_err(|e| Error::from(BackendError::from_redis(&self.label, CONTEXT, e)))?;
                let Ok(items) = echoed(cmd, reply) else {
                    in_step = false;
                    return Err(self.protocol_error(CONTEXT));
                };
                let [code, detail] =
                    <[Value; 2]>::try_from(items).map_err(|_| self.protocol_error(CONTEXT))?;
                self.extended(&code, &detail, acked, &lease.keys)
            })
            .collect();
        if !in_step {
            return Err(self.out_of_step());
        }
        Ok(outcomes)
    }

    /// Decodes an extend reply; an extension too few replicas acknowledged is an error.
    fn extended(
        &self,
        code: &Value,
        detail: &Value,
        acked: Option<u32>,
        keys: &Keys,
    ) -> Result<Found, Error> {
        const CONTEXT: &str = "extending leases";
        match self.found(code, detail, CONTEXT, keys)? {
            Found::Ours if self.short_of_replicas(acked) => {
                Err(self.not_replicated(CONTEXT, acked.unwrap_or(0)))
            }
            found => Ok(found),
        }
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
        if self.cluster.is_some() {
            let reply = self
                .bounded(CONTEXT, self.command_timeout, self.inspect_cluster(keys))
                .await;
            return match reply {
                Ok((value, pttl_ms, fence, queued, subscribers)) => Ok(NodeView {
                    value,
                    pttl_ms,
                    fence: fence.unwrap_or(0),
                    queued,
                    subscribers,
                }),
                Err(Error::Backend(e)) if e.code() == Some("WRONGTYPE") => Err(Error::WrongType {
                    key: keys.lock.clone(),
                    found: "a non-lock value (see TYPE)".to_owned(),
                }),
                Err(e) => Err(e),
            };
        }
        let mut pipe = redis::pipe();
        pipe.get(&keys.lock)
            .pttl(&keys.lock)
            .get(&keys.fence)
            .zcard(keys.queue())
            .cmd("PUBSUB")
            .arg("NUMSUB")
            .arg(keys.channel());
        let mut conn = self.conn();
        let reply: RedisResult<InspectReply> = pipe.query_async(&mut conn).await;
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

    /// [`inspect`](Self::inspect) on a Cluster: single commands, which follow redirections
    /// (a pipeline would not), and `PUBSUB NUMSUB` summed over every node (the cluster client
    /// sends it to all of them).
    async fn inspect_cluster(
        &self,
        keys: &Keys,
    ) -> RedisResult<(Option<String>, i64, Option<u64>, u64, u64)> {
        let mut conns = [(); 5].map(|()| self.conn());
        let [c_get, c_pttl, c_fence, c_zcard, c_numsub] = &mut conns;
        let (mut get, mut pttl, mut fence, mut zcard, mut numsub) = (
            redis::cmd("GET"),
            redis::cmd("PTTL"),
            redis::cmd("GET"),
            redis::cmd("ZCARD"),
            redis::cmd("PUBSUB"),
        );
        get.arg(&keys.lock);
        pttl.arg(&keys.lock);
        fence.arg(&keys.fence);
        zcard.arg(keys.queue());
        numsub.arg("NUMSUB").arg(keys.channel());
        let (value, pttl_ms, fence, queued, subscribers) = tokio::try_join!(
            get.query_async::<Option<String>>(c_get),
            pttl.query_async::<i64>(c_pttl),
            fence.query_async::<Option<u64>>(c_fence),
            zcard.query_async::<u64>(c_zcard),
            numsub.query_async::<Value>(c_numsub),
        )?;
        let subscribers = match subscribers {
            Value::Map(pairs) => pairs
                .into_iter()
                .map(|(_, count)| match count {
                    Value::Int(n) => u64::try_from(n).unwrap_or(0),
                    _ => 0,
                })
                .sum(),
            Value::Array(items) => match items.get(1) {
                Some(Value::Int(n)) => u64::try_from(*n).unwrap_or(0),
                _ => 0,
            },
            _ => 0,
        };
        Ok((value, pttl_ms, fence, queued, subscribers))
    }

    /// Deletes the lock key whoever holds it (keeping the fence counter) and wakes waiters.
    /// Returns the deleted value.
    pub(crate) async fn force_release(&self, keys: &Keys) -> Result<Option<String>, Error> {
        const CONTEXT: &str = "breaking a lock";
        let mut cmd = evalsha(Lua::ForceRelease, &[&keys.lock]);
        let mut conn = self.conn();
        let limit = self.command_timeout;
        let reply = match self
            .bounded(CONTEXT, limit, cmd.query_async::<Value>(&mut conn))
            .await
        {
            Err(Error::Backend(e)) if e.source_is(is_no_script) => {
                cmd = self.recover_script(cmd, limit).await?;
                self.bounded(CONTEXT, limit, cmd.query_async(&mut conn))
                    .await
            }
            Err(Error::Backend(e)) if e.code() == Some("WRONGTYPE") => {
                return Err(Error::WrongType {
                    key: keys.lock.clone(),
                    found: "a non-lock value (see TYPE)".to_owned(),
                });
            }
            first => first,
        };
        let reply = reply.inspect_err(|e| self.reconnect_after(e))?;
        let items = echoed(&cmd, reply).map_err(|_| self.out_of_step())?;
        match items.as_slice() {
            [Value::BulkString(bytes)] => Ok(Some(String::from_utf8_lossy(bytes).into_owned())),
            [Value::Nil] => Ok(None),
            _ => Err(self.protocol_error(CONTEXT)),
        }
    }

    /// The lock keys matching a glob `pattern` (already prefixed), found with `SCAN`.
    pub(crate) async fn scan(&self, pattern: &str) -> Result<Vec<String>, Error> {
        const CONTEXT: &str = "listing locks";
        if let Some(cluster) = &self.cluster {
            return self.scan_cluster(cluster.clone(), pattern).await;
        }
        let mut conn = self.conn();
        let mut cursor = 0u64;
        let mut keys = Vec::new();
        loop {
            let cmd = scan_cmd(cursor, pattern);
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

    /// [`scan`](Self::scan) over every primary of a Cluster, found by sending them `PING`.
    async fn scan_cluster(
        &self,
        mut cluster: ClusterConnection,
        pattern: &str,
    ) -> Result<Vec<String>, Error> {
        const CONTEXT: &str = "listing locks";
        let all_primaries = RoutingInfo::MultiNode((MultipleNodeRoutingInfo::AllMasters, None));
        let pinged = self
            .bounded(
                CONTEXT,
                self.command_timeout,
                cluster.route_command(redis::cmd("PING"), all_primaries),
            )
            .await?;
        let Value::Map(primaries) = pinged else {
            return Err(self.protocol_error(CONTEXT));
        };
        let mut keys = Vec::new();
        for (address, _) in primaries {
            let address: String =
                redis::from_redis_value(address).map_err(|_| self.protocol_error(CONTEXT))?;
            let Some((host, port)) = address
                .rsplit_once(':')
                .and_then(|(host, port)| Some((host.to_owned(), port.parse().ok()?)))
            else {
                return Err(self.protocol_error(CONTEXT));
            };
            let mut cursor = 0u64;
            loop {
                let cmd = scan_cmd(cursor, pattern);
                let route = RoutingInfo::SingleNode(SingleNodeRoutingInfo::ByAddress {
                    host: host.clone(),
                    port,
                });
                let reply = self
                    .bounded(
                        CONTEXT,
                        self.command_timeout,
                        cluster.route_command(cmd, route),
                    )
                    .await?;
                let (next, batch): (u64, Vec<String>) =
                    redis::from_redis_value(reply).map_err(|_| self.protocol_error(CONTEXT))?;
                keys.extend(batch);
                if next == 0 {
                    break;
                }
                cursor = next;
            }
        }
        Ok(keys)
    }

    /// Reads `maxmemory` and `maxmemory-policy` (from `INFO memory`, which a restricted user
    /// is more often allowed than `CONFIG GET`). On a Cluster, every primary answers.
    pub(crate) async fn eviction(&self, limit: Duration) -> Result<Vec<Eviction>, Error> {
        const CONTEXT: &str = "reading the eviction policy";
        let mut conn = self.conn();
        let mut cmd = redis::cmd("INFO");
        cmd.arg("memory");
        let reply = bounded(
            &self.label,
            CONTEXT,
            limit,
            cmd.query_async::<Value>(&mut conn),
        )
        .await?;
        let mut found = Vec::new();
        collect_info(reply, &self.label, &mut found);
        Ok(found)
    }
}

/// What one server said about eviction.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Eviction {
    /// The server, as `host:port`.
    pub(crate) node: String,
    /// `Ok(Some(policy))`: keys may be evicted under this policy; `Ok(None)`: they may not
    /// (`noeviction`, or no memory limit); `Err(reason)`: unknown.
    pub(crate) risk: Result<Option<String>, String>,
}

/// Gathers the `INFO memory` texts in `reply` (one per node on a Cluster).
fn collect_info(reply: Value, node: &str, found: &mut Vec<Eviction>) {
    match reply {
        Value::Map(per_node) => {
            for (address, reply) in per_node {
                let address =
                    redis::from_redis_value::<String>(address).unwrap_or_else(|_| node.to_owned());
                collect_info(reply, &address, found);
            }
        }
        Value::BulkString(bytes) => found.push(Eviction {
            node: node.to_owned(),
            risk: Ok(eviction_risk(&String::from_utf8_lossy(&bytes))),
        }),
        Value::VerbatimString { text, .. } | Value::SimpleString(text) => found.push(Eviction {
            node: node.to_owned(),
            risk: Ok(eviction_risk(&text)),
        }),
        Value::ServerError(e) => found.push(Eviction {
            node: node.to_owned(),
            risk: Err(e.to_string()),
        }),
        _ => found.push(Eviction {
            node: node.to_owned(),
            risk: Err("unexpected reply to INFO memory".to_owned()),
        }),
    }
}

/// The policy under which lock keys may be evicted, from an `INFO memory` text; `None` when
/// they cannot be (`noeviction`, or `maxmemory` 0: no limit).
pub(crate) fn eviction_risk(info: &str) -> Option<String> {
    let field = |name: &str| {
        info.lines()
            .find_map(|line| line.strip_prefix(name)?.strip_prefix(':'))
            .map(str::trim)
    };
    let limited = field("maxmemory").is_some_and(|max| max != "0");
    match field("maxmemory_policy") {
        Some(policy) if limited && policy != "noeviction" => Some(policy.to_owned()),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn eviction_risk_needs_a_limit_and_an_evicting_policy() {
        let info = |max: &str, policy: &str| {
            format!(
                "# Memory\r\nmaxmemory:{max}\r\nmaxmemory_human:x\r\nmaxmemory_policy:{policy}\r\n"
            )
        };
        assert_eq!(eviction_risk(&info("0", "allkeys-lru")), None);
        assert_eq!(eviction_risk(&info("104857600", "noeviction")), None);
        assert_eq!(
            eviction_risk(&info("104857600", "volatile-ttl")),
            Some("volatile-ttl".to_owned())
        );
        assert_eq!(eviction_risk("garbage"), None);
    }

    #[test]
    fn wait_timeouts_fit_the_request_and_are_never_zero() {
        let replicas = Replicas {
            wanted: 1,
            timeout: Duration::from_millis(100),
        };
        assert_eq!(replicas.wait_ms(Duration::from_secs(10)), 100);
        assert_eq!(replicas.wait_ms(Duration::from_millis(50)), 25);
        assert_eq!(replicas.wait_ms(Duration::from_millis(1)), 1);
        assert_eq!(replicas.wait_ms(Duration::ZERO), 1);
    }
}
