//! Behaviour of single-node leases against real `redis-server` processes started by the testkit.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "test helpers fail the test on error"
)]

mod acl;
mod admin;
mod bad_input;
mod cancellation;
#[cfg(feature = "cluster")]
mod cluster;
mod contention;
mod eviction;
mod features;
mod fencing;
mod handoff;
mod lifecycle;
mod lost_reply;
mod mixed_versions;
mod redlock;
mod renewal;
mod rwlock;
mod semaphore;
mod send_sync;
#[cfg(feature = "sentinel")]
mod sentinel;
#[cfg(feature = "tls")]
mod tls;
mod waiting;
mod wrong_type;

use std::time::{Duration, Instant};

use redis::AsyncCommands;
use redlease::Client;
use redlease_testkit::RedisServer;

/// A fresh server and a client connected to it.
pub(crate) async fn setup() -> (RedisServer, Client) {
    let server = RedisServer::start().expect("start redis-server");
    let client = Client::connect(&server.url()).await.expect("connect");
    (server, client)
}

/// A server that is paused (so requests wait unanswered in its socket), and a client with this
/// command timeout that connected before the pause.
pub(crate) async fn paused_server(command_timeout: Duration) -> (RedisServer, Client) {
    let mut server = RedisServer::start().expect("start redis-server");
    let client = Client::builder()
        .url(server.url())
        .command_timeout(command_timeout)
        .build()
        .await
        .expect("connect");
    server.pause().expect("pause redis-server");
    (server, client)
}

/// The configuration error `result` failed with (the test fails otherwise).
pub(crate) fn config_error<T: std::fmt::Debug>(
    result: Result<T, redlease::Error>,
) -> redlease::ConfigError {
    match result {
        Err(redlease::Error::InvalidConfig(e)) => e,
        other => panic!("expected InvalidConfig, got {other:?}"),
    }
}

/// The replica counts `(acked, wanted)` of a "not replicated" failure; `None` for any other
/// outcome.
pub(crate) fn not_replicated<T>(result: &Result<T, redlease::Error>) -> Option<(u32, u32)> {
    match result {
        Err(redlease::Error::Backend(e))
            if e.kind() == redlease::BackendErrorKind::NotReplicated =>
        {
            e.replicas()
        }
        _ => None,
    }
}

/// A plain connection for inspecting and disturbing what redlease wrote.
pub(crate) async fn raw(server: &RedisServer) -> redis::aio::MultiplexedConnection {
    redis::Client::open(server.url())
        .unwrap()
        .get_multiplexed_async_connection()
        .await
        .unwrap()
}

/// How many waiters are listed under `key` (a lock's `…:waiters` list).
pub(crate) async fn waiting(server: &RedisServer, key: &str) -> u64 {
    redis::cmd("LLEN")
        .arg(key)
        .query_async(&mut raw(server).await)
        .await
        .unwrap()
}

/// Waits (3 s at most: the test fails then) until `n` waiters are listed under `key`.
pub(crate) async fn until_waiting(server: &RedisServer, key: &str, n: u64) {
    until_waiting_on(std::slice::from_ref(server), key, n).await;
}

/// [`until_waiting`] over several servers: `n` waiters listed under `key` on all of them
/// together (under Redlock, waiters are listed on the arbiter only).
pub(crate) async fn until_waiting_on(servers: &[RedisServer], key: &str, n: u64) {
    let deadline = Instant::now() + 3 * SECOND;
    loop {
        let mut listed = 0;
        for server in servers {
            listed += waiting(server, key).await;
        }
        if listed == n {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "{listed} waiters listed under {key}, not {n}"
        );
        tokio::time::sleep(ms(5)).await;
    }
}

pub(crate) async fn get(conn: &mut redis::aio::MultiplexedConnection, key: &str) -> Option<String> {
    conn.get(key).await.unwrap()
}

pub(crate) async fn pttl(conn: &mut redis::aio::MultiplexedConnection, key: &str) -> i64 {
    conn.pttl(key).await.unwrap()
}

/// Releases `holder` and returns the guard `waiter` then gets, and how long that took.
pub(crate) async fn released_to(
    holder: redlease::Guard,
    waiter: tokio::task::JoinHandle<Result<redlease::Guard, redlease::Error>>,
) -> (redlease::Guard, Duration) {
    let released = Instant::now();
    holder.release().await.unwrap();
    let guard = tokio::time::timeout(10 * SECOND, waiter)
        .await
        .expect("the waiter got the lock")
        .unwrap()
        .unwrap();
    (guard, released.elapsed())
}

pub(crate) const SECOND: Duration = Duration::from_secs(1);

pub(crate) fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}
