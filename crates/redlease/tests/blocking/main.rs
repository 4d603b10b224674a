//! The blocking API (`--features blocking`) against real `redis-server` processes: the same
//! kinds of behaviour the async tests check, called from plain threads.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "test helpers fail the test on error"
)]

mod lifecycle;
mod outside_runtime;
mod primitives;
mod renewal;
mod waiting;

use std::time::{Duration, Instant};

use redis::Commands;
use redlease::blocking::Client;
use redlease_testkit::RedisServer;

pub(crate) const SECOND: Duration = Duration::from_secs(1);

pub(crate) fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

/// A fresh server and a blocking client connected to it.
pub(crate) fn setup() -> (RedisServer, Client) {
    let server = RedisServer::start().expect("start redis-server");
    let client = Client::connect(&server.url()).expect("connect");
    (server, client)
}

/// A plain (synchronous) connection for inspecting and disturbing what redlease wrote.
pub(crate) fn raw(server: &RedisServer) -> redis::Connection {
    redis::Client::open(server.url())
        .unwrap()
        .get_connection()
        .unwrap()
}

pub(crate) fn get(server: &RedisServer, key: &str) -> Option<String> {
    raw(server).get(key).unwrap()
}

/// Waits until `key` is gone, failing the test if it is still there after `within`.
pub(crate) fn wait_until_absent(server: &RedisServer, key: &str, within: Duration) {
    let mut conn = raw(server);
    let deadline = Instant::now() + within;
    while conn.exists::<_, bool>(key).unwrap() {
        assert!(
            Instant::now() < deadline,
            "{key} still exists after {within:?}"
        );
        std::thread::sleep(ms(10));
    }
}

/// How many connections are subscribed to `channel`.
pub(crate) fn subscribers(server: &RedisServer, channel: &str) -> u64 {
    let (_, count): (String, u64) = redis::cmd("PUBSUB")
        .arg("NUMSUB")
        .arg(channel)
        .query(&mut raw(server))
        .unwrap();
    count
}
