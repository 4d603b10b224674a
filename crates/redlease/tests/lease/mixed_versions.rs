//! Clients of the previous protocol (version 1, redlease 0.1: its scripts are kept in
//! `protocol_v1/`) and of this one on the same names: never two holders at once, fences
//! still ordered; the old clients poll, and this version's waiters fall back to their refresh.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
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

/// Readers of a read-write lock hold the lock key itself, so a version 1 client (plain or fair)
/// finds it taken, and readers find its token there: they never overlap.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn previous_version_clients_never_hold_a_lock_with_readers() {
    let server = RedisServer::start().unwrap();
    let client = Client::connect(&server.url()).await.unwrap();
    let readers_in = Arc::new(AtomicUsize::new(0));
    let old_in = Arc::new(AtomicBool::new(false));
    let stop = Arc::new(AtomicBool::new(false));
    let mut readers = Vec::new();
    for _ in 0..2 {
        let rw = client.rwlock(NAME);
        let (readers_in, old_in, stop) = (readers_in.clone(), old_in.clone(), stop.clone());
        readers.push(tokio::spawn(async move {
            let mut reads = 0;
            let options = LockOptions::new(SECOND).retry(Retry::fixed(ms(10)).timeout(10 * SECOND));
            while !stop.load(Ordering::SeqCst) {
                let reader = rw.read(&options).await.unwrap();
                readers_in.fetch_add(1, Ordering::SeqCst);
                assert!(
                    !old_in.load(Ordering::SeqCst),
                    "a reader overlapped a version 1 holder"
                );
                tokio::time::sleep(ms(15)).await;
                assert!(
                    !old_in.load(Ordering::SeqCst),
                    "a reader overlapped a version 1 holder"
                );
                readers_in.fetch_sub(1, Ordering::SeqCst);
                reader.release().await.unwrap();
                reads += 1;
                tokio::time::sleep(ms(5)).await;
            }
            reads
        }));
    }
    let mut conn = raw(&server).await;
    let old = [V1::new(false, 1), V1::new(true, 2)];
    let (mut grants, mut refused) = (0, 0);
    let started = Instant::now();
    while started.elapsed() < 3 * SECOND {
        let v1 = &old[grants % 2];
        if v1.try_acquire(&mut conn).await.is_some() {
            old_in.store(true, Ordering::SeqCst);
            assert_eq!(
                readers_in.load(Ordering::SeqCst),
                0,
                "a version 1 holder overlapped a reader"
            );
            tokio::time::sleep(ms(15)).await;
            assert_eq!(
                readers_in.load(Ordering::SeqCst),
                0,
                "a version 1 holder overlapped a reader"
            );
            old_in.store(false, Ordering::SeqCst);
            v1.release(&mut conn).await;
            grants += 1;
        } else {
            refused += 1;
        }
        tokio::time::sleep(ms(7)).await;
    }
    stop.store(true, Ordering::SeqCst);
    let mut reads = 0;
    for reader in readers {
        reads += reader.await.unwrap();
    }
    // Both sides held the name, and each was refused by the other at least once (a busy
    // machine can give one side most of the 3 s, so only that much is certain).
    assert!(
        grants >= 3 && refused >= 1 && reads >= 2,
        "version 1 grants {grants}, refused {refused}, reads {reads}"
    );
}
