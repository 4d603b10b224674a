//! A primary found through Redis Sentinel, and followed across failovers.
//!
//! The connection asks the sentinels (in the order given) for the primary's address
//! (`SENTINEL GET-MASTER-ADDR-BY-NAME`), connects, and checks with `ROLE` that the server
//! really is a primary before using it. It keeps that connection until it fails: a broken
//! connection or a timeout drops it, so the next command asks the sentinels again; a
//! `READONLY` reply (the old primary was demoted to a replica) drops it and repeats the command
//! once on the new primary (the command was refused, so it did not run).

use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use redis::aio::{ConnectionLike, MultiplexedConnection};
use redis::{AsyncConnectionConfig, Cmd, ErrorKind, IntoConnectionInfo, Pipeline, RedisError};
use redis::{RedisFuture, RedisResult, Value};

use super::tls::{self, Certificates};
use super::url::redact_url;

/// How to reach the primary: credentials, database and TLS, as the sentinels do not say.
#[derive(Clone)]
pub(crate) struct PrimarySettings {
    pub(crate) username: Option<String>,
    pub(crate) password: Option<String>,
    pub(crate) db: i64,
    pub(crate) tls: bool,
    pub(crate) certificates: Option<Certificates>,
}

/// A connection to the primary of one Sentinel service; cheap to clone (clones share it).
#[derive(Clone)]
pub(crate) struct SentinelConnection {
    inner: Arc<Inner>,
}

struct Inner {
    sentinels: Vec<(String, redis::Client)>,
    service: String,
    primary: PrimarySettings,
    connect_timeout: Duration,
    command_timeout: Duration,
    /// The primary's connection, with a generation number so that a failure only drops the
    /// connection it happened on.
    current: Mutex<Option<(u64, MultiplexedConnection)>>,
    generation: AtomicU64,
    /// Requests given up before their reply since the last reply (see [`InFlight`]).
    abandoned: AtomicU32,
    /// Held while asking the sentinels, so that concurrent commands do not all ask at once.
    resolving: tokio::sync::Mutex<()>,
}

impl SentinelConnection {
    /// Parses the sentinels' URLs; connects to nothing yet.
    pub(crate) fn new(
        sentinel_urls: &[String],
        service: String,
        primary: PrimarySettings,
        connect_timeout: Duration,
        command_timeout: Duration,
    ) -> RedisResult<Self> {
        let mut sentinels = Vec::with_capacity(sentinel_urls.len());
        for url in sentinel_urls {
            let info = url.as_str().into_connection_info()?;
            let client = tls::client(info, primary.certificates.as_ref())?;
            sentinels.push((redact_url(url), client));
        }
        Ok(Self {
            inner: Arc::new(Inner {
                sentinels,
                service,
                primary,
                connect_timeout,
                command_timeout,
                current: Mutex::new(None),
                generation: AtomicU64::new(0),
                abandoned: AtomicU32::new(0),
                resolving: tokio::sync::Mutex::new(()),
            }),
        })
    }

    /// How errors name this node: the service, since its primary changes.
    pub(crate) fn label(&self) -> String {
        format!("sentinel service {}", self.inner.service)
    }

    /// A client for the current primary (for a pub/sub connection of its own).
    pub(crate) async fn primary_client(&self) -> RedisResult<redis::Client> {
        self.inner.find_primary().await.map(|(client, _)| client)
    }

    /// The primary's connection: the one in use, or a new one after asking the sentinels.
    async fn connection(&self) -> RedisResult<(u64, MultiplexedConnection)> {
        if let Some(current) = self.inner.cached() {
            return Ok(current);
        }
        let _resolving = self.inner.resolving.lock().await;
        if let Some(current) = self.inner.cached() {
            return Ok(current);
        }
        let (_, connection) = self.inner.find_primary().await?;
        let generation = self.inner.generation.fetch_add(1, Ordering::Relaxed) + 1;
        *self.inner.lock_current() = Some((generation, connection.clone()));
        Ok((generation, connection))
    }

    /// Forgets the connection of `generation` (if still current) after it failed.
    fn drop_connection(&self, generation: u64) {
        let mut current = self.inner.lock_current();
        if current.as_ref().is_some_and(|(g, _)| *g == generation) {
            *current = None;
        }
    }

    /// Drops the connection after errors that mean it is dead or no longer the primary's.
    fn after_error(&self, generation: u64, e: &RedisError) {
        if e.is_io_error()
            || e.is_connection_dropped()
            || e.is_connection_refusal()
            || e.is_timeout()
            || e.is_unrecoverable_error()
            || is_read_only(e)
        {
            self.drop_connection(generation);
        }
    }
}

/// A request in flight on the primary's connection. Dropped before its reply after waiting at
/// least half the command timeout, or as the third in a row without any reply in between, it
/// drops the connection: the callers gave up on a server that stopped answering (paused, or
/// cut off by a partition while the sentinels fail over), and the connection's own timeout
/// might never be reached by requests with shorter limits.
struct InFlight<'a> {
    connection: &'a SentinelConnection,
    generation: u64,
    since: Instant,
    done: bool,
}

/// How many requests in a row may be given up before the connection is dropped.
const ABANDONED_LIMIT: u32 = 3;

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        let inner = &self.connection.inner;
        if self.done {
            inner.abandoned.store(0, Ordering::Relaxed);
            return;
        }
        let abandoned = inner.abandoned.fetch_add(1, Ordering::Relaxed) + 1;
        if abandoned >= ABANDONED_LIMIT || self.since.elapsed() >= inner.command_timeout / 2 {
            inner.abandoned.store(0, Ordering::Relaxed);
            self.connection.drop_connection(self.generation);
        }
    }
}

impl SentinelConnection {
    fn in_flight(&self, generation: u64) -> InFlight<'_> {
        InFlight {
            connection: self,
            generation,
            since: Instant::now(),
            done: false,
        }
    }
}

fn is_read_only(e: &RedisError) -> bool {
    e.kind() == ErrorKind::Server(redis::ServerErrorKind::ReadOnly)
        || refuses_writes(e.code(), e.detail())
}

fn has_read_only_reply(values: &[Value]) -> bool {
    values
        .iter()
        .any(|v| matches!(v, Value::ServerError(e) if refuses_writes(Some(e.code()), e.details())))
}

/// Whether a server error with this code and detail is a replica refusing a write: `READONLY`,
/// or (Redis before 7.0) a script's write refused by a replica, which comes wrapped in the
/// script's error: `ERR Error running script (call to f_…): @user_script:1: @user_script: 1:
/// -READONLY You can't write against a read only replica.`
fn refuses_writes(code: Option<&str>, detail: Option<&str>) -> bool {
    match code {
        Some("READONLY") => true,
        Some("ERR") => detail.is_some_and(|detail| {
            detail.starts_with("Error running script") && detail.contains(" -READONLY ")
        }),
        _ => false,
    }
}

impl Inner {
    fn lock_current(&self) -> std::sync::MutexGuard<'_, Option<(u64, MultiplexedConnection)>> {
        self.current.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn cached(&self) -> Option<(u64, MultiplexedConnection)> {
        self.lock_current().clone()
    }

    fn config(&self) -> AsyncConnectionConfig {
        AsyncConnectionConfig::new()
            .set_connection_timeout(Some(self.connect_timeout))
            .set_response_timeout(Some(self.command_timeout))
    }

    /// Asks each sentinel in turn for the primary, and returns the first answer that is a
    /// reachable primary.
    async fn find_primary(&self) -> RedisResult<(redis::Client, MultiplexedConnection)> {
        let mut last_error = None;
        for (label, sentinel) in &self.sentinels {
            match self.ask(sentinel).await {
                Ok(found) => return Ok(found),
                Err(e) => {
                    tracing::debug!(sentinel = %label, error = %e, "sentinel gave no usable primary");
                    last_error = Some(e);
                }
            }
        }
        Err(last_error.unwrap_or_else(|| {
            RedisError::from((ErrorKind::InvalidClientConfig, "no sentinel configured"))
        }))
    }

    async fn ask(
        &self,
        sentinel: &redis::Client,
    ) -> RedisResult<(redis::Client, MultiplexedConnection)> {
        let mut conn = sentinel
            .get_multiplexed_async_connection_with_config(&self.config())
            .await?;
        let address: Option<(String, u16)> = redis::cmd("SENTINEL")
            .arg("GET-MASTER-ADDR-BY-NAME")
            .arg(&self.service)
            .query_async(&mut conn)
            .await?;
        let Some((host, port)) = address else {
            return Err(RedisError::from((
                ErrorKind::InvalidClientConfig,
                "the sentinel does not know this service name",
            )));
        };
        let client = self.primary_client(&host, port)?;
        let mut primary = client
            .get_multiplexed_async_connection_with_config(&self.config())
            .await?;
        let role: Vec<Value> = redis::cmd("ROLE").query_async(&mut primary).await?;
        match role.first() {
            Some(Value::BulkString(role)) if role.as_slice() == b"master" => Ok((client, primary)),
            _ => Err(RedisError::from((
                ErrorKind::Server(redis::ServerErrorKind::ReadOnly),
                "the server the sentinel named is not (or no longer) a primary",
            ))),
        }
    }

    fn primary_client(&self, host: &str, port: u16) -> RedisResult<redis::Client> {
        let scheme = if self.primary.tls { "rediss" } else { "redis" };
        let host = if host.contains(':') {
            format!("[{host}]")
        } else {
            host.to_owned()
        };
        let info =
            format!("{scheme}://{host}:{port}/{}", self.primary.db).into_connection_info()?;
        let mut settings = info.redis_settings().clone();
        if let Some(username) = self.primary.username.as_deref().filter(|u| !u.is_empty()) {
            settings = settings.set_username(username);
        }
        if let Some(password) = &self.primary.password {
            settings = settings.set_password(password);
        }
        tls::client(
            info.set_redis_settings(settings),
            self.primary.certificates.as_ref(),
        )
    }
}

impl ConnectionLike for SentinelConnection {
    fn req_packed_command<'a>(&'a mut self, cmd: &'a Cmd) -> RedisFuture<'a, Value> {
        Box::pin(async move {
            let (generation, mut conn) = self.connection().await?;
            let mut in_flight = self.in_flight(generation);
            let reply = conn.req_packed_command(cmd).await;
            in_flight.done = true;
            match reply {
                Err(e) if is_read_only(&e) => {
                    self.drop_connection(generation);
                    let (_, mut conn) = self.connection().await?;
                    conn.req_packed_command(cmd).await
                }
                Err(e) => {
                    self.after_error(generation, &e);
                    Err(e)
                }
                Ok(value) => Ok(value),
            }
        })
    }

    fn req_packed_commands<'a>(
        &'a mut self,
        pipeline: &'a Pipeline,
        offset: usize,
        count: usize,
    ) -> RedisFuture<'a, Vec<Value>> {
        Box::pin(async move {
            let (generation, mut conn) = self.connection().await?;
            let mut in_flight = self.in_flight(generation);
            let reply = conn.req_packed_commands(pipeline, offset, count).await;
            in_flight.done = true;
            match reply {
                Ok(values) if has_read_only_reply(&values) => {
                    self.drop_connection(generation);
                    let (_, mut conn) = self.connection().await?;
                    conn.req_packed_commands(pipeline, offset, count).await
                }
                Err(e) if is_read_only(&e) => {
                    self.drop_connection(generation);
                    let (_, mut conn) = self.connection().await?;
                    conn.req_packed_commands(pipeline, offset, count).await
                }
                Err(e) => {
                    self.after_error(generation, &e);
                    Err(e)
                }
                Ok(values) => Ok(values),
            }
        })
    }

    fn get_db(&self) -> i64 {
        self.inner.primary.db
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A server's error line, as the `redis` crate parses it off the wire.
    fn server_error(line: &str) -> redis::ServerError {
        match redis::parse_redis_value(format!("-{line}\r\n").as_bytes()) {
            Ok(Value::ServerError(e)) => e,
            other => panic!("not a server error: {other:?}"),
        }
    }

    #[test]
    fn a_demoted_primary_is_recognised_in_both_forms() {
        for line in [
            // A plain write.
            "READONLY You can't write against a read only replica.",
            // A script's write on Redis 7.0 and later, and on Valkey.
            "READONLY You can't write against a read only replica. script: \
             bd6f3018b28bbdb36260f19d3c44afed740db987, on @user_script:1.",
            // A script's write on Redis 6.2.
            "ERR Error running script (call to f_bd6f3018b28bbdb36260f19d3c44afed740db987): \
             @user_script:1: @user_script: 1: -READONLY You can't write against a read only \
             replica.",
        ] {
            let reply = server_error(line);
            let in_pipeline = [Value::Okay, Value::ServerError(reply.clone())];
            assert!(has_read_only_reply(&in_pipeline), "{line}");
            assert!(is_read_only(&reply.into()), "{line}");
        }
        for line in [
            "ERR Error running script (call to f_0): @user_script:3: user_script:3: \
             Script attempted to access nonexistent global variable 'x'",
            "ERR wrong number of arguments for 'set' command",
            "NOPERM this user has no permissions to run the 'set' command",
        ] {
            let reply = server_error(line);
            assert!(
                !has_read_only_reply(&[Value::ServerError(reply.clone())]),
                "{line}"
            );
            assert!(!is_read_only(&reply.into()), "{line}");
        }
    }
}
