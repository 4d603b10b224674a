//! Clients of the previous protocol (version 1, redlease 0.1: its scripts are kept in
//! `protocol_v1/`) and of this one on the same names: never two holders at once, fences
//! still ordered; the old clients poll, and this version's waiters fall back to their refresh.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use redis::Value;
use redlease::{Client, LockOptions, Retry};
use redlease_testkit::RedisServer;

use crate::{SECOND, get, ms, raw};

const NAME: &str = "mixed";
const LOCK: &str = "redlease:{mixed}";
const ROUNDS: u64 = 25;

/// A client of protocol version 1, reduced to what it sends: its scripts, as they were.
struct V1 {
    acquire: redis::Script,
    acquire_fair: redis::Script,
    release: redis::Script,
    fair: bool,
    token: String,
}

impl V1 {
    fn new(fair: bool, id: u64) -> Self {
        Self {
            acquire: redis::Script::new(include_str!("protocol_v1/acquire.lua")),
            acquire_fair: redis::Script::new(include_str!("protocol_v1/acquire_fair.lua")),
            release: redis::Script::new(include_str!("protocol_v1/release.lua")),
            fair,
            token: format!("{id:032x}"),
        }
    }

    /// One attempt; the fence if granted.
    async fn try_acquire(&self, conn: &mut redis::aio::MultiplexedConnection) -> Option<u64> {
        let invocation = if self.fair {
            let mut i = self.acquire_fair.prepare_invoke();
            i.key(LOCK)
                .key(format!("{LOCK}:fence"))
                .key(format!("{LOCK}:queue"))
                .key(format!("{LOCK}:queue:expiry"))
                .arg("1")
                .arg(&self.token)
                .arg(300)
                .arg(3000)
                .arg(" v1 fair");
            i
        } else {
            let mut i = self.acquire.prepare_invoke();
            i.key(LOCK)
                .key(format!("{LOCK}:fence"))
                .arg("1")
                .arg(&self.token)
                .arg(300)
                .arg(" v1");
            i
        };
        let reply: Vec<Value> = invocation.invoke_async(conn).await.unwrap();
        match reply.as_slice() {
            [Value::Int(1), Value::Int(fence), _] => Some(u64::try_from(*fence).unwrap()),
            [Value::Int(0), _, _] => None,
            other => panic!("version 1 acquire replied {other:?}"),
        }
    }

    async fn release(&self, conn: &mut redis::aio::MultiplexedConnection) {
        let reply: Vec<Value> = self
            .release
            .key(LOCK)
            .key(format!("{LOCK}:queue"))
            .arg("1")
            .arg(&self.token)
            .invoke_async(conn)
            .await
            .unwrap();
        assert_eq!(reply.first(), Some(&Value::Int(1)), "released: {reply:?}");
    }
}

/// What every holder checks while it holds the lock.
#[derive(Default)]
struct Watchdog {
    inside: AtomicBool,
    overlaps: AtomicU64,
    last_fence: AtomicU64,
    stale_fences: AtomicU64,
}

impl Watchdog {
    /// Runs one critical section: a read-modify-write of a counter that a second holder
    /// would corrupt.
    async fn hold(&self, fence: u64, conn: &mut redis::aio::MultiplexedConnection) {
        if self.inside.swap(true, Ordering::SeqCst) {
            self.overlaps.fetch_add(1, Ordering::SeqCst);
        }
        if self.last_fence.swap(fence, Ordering::SeqCst) >= fence {
            self.stale_fences.fetch_add(1, Ordering::SeqCst);
        }
        let value: u64 = get(conn, "counter").await.map_or(0, |v| v.parse().unwrap());
        tokio::time::sleep(ms(1)).await;
        let _: () = redis::cmd("SET")
            .arg("counter")
            .arg(value + 1)
            .query_async(conn)
            .await
            .unwrap();
        self.inside.store(false, Ordering::SeqCst);
    }
}

#[tokio::test]
async fn previous_version_clients_and_these_never_hold_a_lock_together() {
    let server = RedisServer::start().unwrap();
    let watchdog = Arc::new(Watchdog::default());
    let mut tasks = Vec::new();
    for id in 0..3 {
        let client = Client::connect(&server.url()).await.unwrap();
        let mut conn = raw(&server).await;
        let watchdog = watchdog.clone();
        let fair = id == 2;
        tasks.push(tokio::spawn(async move {
            let options = LockOptions::new(SECOND)
                .fair(fair)
                .retry(Retry::exponential(ms(1), ms(20)).timeout(60 * SECOND));
            for _ in 0..ROUNDS {
                let guard = client.acquire(NAME, &options).await.unwrap();
                watchdog.hold(guard.fence(), &mut conn).await;
                guard.release().await.unwrap();
            }
        }));
    }
    for (id, fair) in [(1, false), (2, true)] {
        let old = V1::new(fair, id);
        let mut conn = raw(&server).await;
        let watchdog = watchdog.clone();
        tasks.push(tokio::spawn(async move {
            for _ in 0..ROUNDS {
                let deadline = Instant::now() + 60 * SECOND;
                let fence = loop {
                    if let Some(fence) = old.try_acquire(&mut conn).await {
                        break fence;
                    }
                    assert!(Instant::now() < deadline, "a version 1 client starved");
                    tokio::time::sleep(Duration::from_millis(2)).await;
                };
                watchdog.hold(fence, &mut conn).await;
                old.release(&mut conn).await;
            }
        }));
    }
    for task in tasks {
        tokio::time::timeout(120 * SECOND, task)
            .await
            .expect("every client finished its rounds")
            .unwrap();
    }
    assert_eq!(
        watchdog.overlaps.load(Ordering::SeqCst),
        0,
        "two holders at once"
    );
    assert_eq!(
        watchdog.stale_fences.load(Ordering::SeqCst),
        0,
        "a fence went backwards"
    );
    let counter = get(&mut raw(&server).await, "counter").await.unwrap();
    assert_eq!(counter, (5 * ROUNDS).to_string());
}
