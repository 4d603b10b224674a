//! The round-trip limit: the commands a single-node lock needs, sent with a bare `redis`
//! multiplexed connection and no lock logic. Acquire is `SET key token NX PX ttl`; release is
//! `EVALSHA` of a compare-and-delete script (loaded on first use): two round trips a pair.

use std::time::{Duration, Instant};

use redis::aio::MultiplexedConnection;
use redis::{Script, Value};

use super::{Adapter, Failure, TTL};

/// Compare-and-delete, the release every Redis lock uses.
const RELEASE: &str = r"if redis.call('get', KEYS[1]) == ARGV[1] then
  return redis.call('del', KEYS[1])
else
  return 0
end";

/// How long raw polls a taken key before it gives up (a bound, never reached in a healthy run).
const GIVE_UP_AFTER: Duration = Duration::from_secs(10);

/// Raw has nothing to configure: when the key is taken it sends `SET NX` again at once.
#[derive(Debug, Clone, Copy)]
pub(crate) struct RawConfig;

/// A multiplexed connection to the first node.
pub(crate) struct Raw {
    connection: MultiplexedConnection,
    release: Script,
}

/// A key we set, and the token we set it to.
pub(crate) struct RawHeld {
    pub(super) key: String,
    pub(super) token: String,
}

impl Adapter for Raw {
    type Config = RawConfig;
    type Held = RawHeld;
    const BLOCKING: bool = false;

    async fn connect(_config: &RawConfig, urls: &[String]) -> Result<Self, String> {
        let (_, connection) = connect_first(urls).await?;
        Ok(Self {
            connection,
            release: Script::new(RELEASE),
        })
    }

    async fn acquire(&self, name: &str) -> Result<RawHeld, Failure> {
        let held = RawHeld::new("raw", name);
        let mut connection = self.connection.clone();
        let give_up = Instant::now() + GIVE_UP_AFTER;
        loop {
            if held.set_nx(&mut connection).await? {
                return Ok(held);
            }
            if Instant::now() >= give_up {
                return Err(Failure::GaveUp);
            }
            // Taken: try again at once, yielding so other tasks on this runtime run.
            tokio::task::yield_now().await;
        }
    }

    async fn release(&self, held: RawHeld) -> Result<(), String> {
        let mut call = self.release.key(&held.key);
        call.arg(&held.token);
        release(&mut call, &mut self.connection.clone()).await
    }
}

/// A client for the first node and a multiplexed connection to it.
pub(super) async fn connect_first(
    urls: &[String],
) -> Result<(redis::Client, MultiplexedConnection), String> {
    let url = urls.first().ok_or("no server")?;
    let client = redis::Client::open(url.as_str()).map_err(|e| e.to_string())?;
    let connection = client
        .get_multiplexed_async_connection()
        .await
        .map_err(|e| e.to_string())?;
    Ok((client, connection))
}

impl RawHeld {
    /// The key for lock `name` under `prefix`, and a fresh random token.
    pub(super) fn new(prefix: &str, name: &str) -> Self {
        Self {
            key: format!("{prefix}:{name}"),
            token: format!("{:032x}", fastrand::u128(..)),
        }
    }

    /// `SET key token NX PX ttl`: whether the key was set.
    pub(super) async fn set_nx(
        &self,
        connection: &mut MultiplexedConnection,
    ) -> Result<bool, Failure> {
        let reply: Value = redis::cmd("SET")
            .arg(&self.key)
            .arg(&self.token)
            .arg("NX")
            .arg("PX")
            .arg(u64::try_from(TTL.as_millis()).unwrap_or(u64::MAX))
            .query_async(connection)
            .await
            .map_err(|e| Failure::Error(e.to_string()))?;
        Ok(matches!(reply, Value::Okay))
    }
}

/// Runs a compare-and-delete `release` script call, which must report 1 deleted key.
pub(super) async fn release(
    release: &mut redis::ScriptInvocation<'_>,
    connection: &mut MultiplexedConnection,
) -> Result<(), String> {
    let deleted: i64 = release
        .invoke_async(connection)
        .await
        .map_err(|e| e.to_string())?;
    if deleted == 1 {
        Ok(())
    } else {
        Err(format!("release deleted {deleted} keys, not 1"))
    }
}
