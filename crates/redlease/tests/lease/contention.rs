//! Several owners on one name: mutual exclusion, and how waiting ends.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Instant;

use redis::AsyncCommands;
use redlease::{Client, Error, LockOptions, Retry};

use crate::{SECOND, ms, raw, setup};

/// 16 tasks over 4 clients (4 connections, as if 4 processes) each take the lock 200 times and
/// do a non-atomic read-modify-write of a counter in Redis. Any overlap would lose increments.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sixteen_tasks_never_overlap_and_no_increment_is_lost() {
    const TASKS: u64 = 16;
    const ROUNDS: u64 = 200;
    let server = redlease_testkit::RedisServer::start().unwrap();
    let mut clients = Vec::new();
    for _ in 0..4 {
        clients.push(Client::connect(&server.url()).await.unwrap());
    }
    let inside = Arc::new(AtomicBool::new(false));
    let overlaps = Arc::new(AtomicU64::new(0));
    let options =
        LockOptions::new(5 * SECOND).retry(Retry::exponential(ms(1), ms(10)).timeout(60 * SECOND));
    let mut tasks = Vec::new();
    for task in 0..TASKS {
        let client = clients[usize::try_from(task % 4).unwrap()].clone();
        let mut conn = raw(&server).await;
        let (inside, overlaps, options) = (inside.clone(), overlaps.clone(), options.clone());
        tasks.push(tokio::spawn(async move {
            let mut last_fence = 0;
            for _ in 0..ROUNDS {
                let guard = client.acquire("counter-lock", &options).await.unwrap();
                if inside.swap(true, Ordering::SeqCst) {
                    overlaps.fetch_add(1, Ordering::SeqCst);
                }
                assert!(guard.fence() > last_fence);
                last_fence = guard.fence();
                let value: u64 = conn.get("counter").await.unwrap_or(0);
                tokio::task::yield_now().await;
                let _: () = conn.set("counter", value + 1).await.unwrap();
                inside.store(false, Ordering::SeqCst);
                guard.release().await.unwrap();
            }
        }));
    }
    for task in tasks {
        task.await.unwrap();
    }
    let mut conn = raw(&server).await;
    let counter: u64 = conn.get("counter").await.unwrap();
    assert_eq!(overlaps.load(Ordering::SeqCst), 0);
    assert_eq!(counter, TASKS * ROUNDS);
    let fence: u64 = conn.get("redlease:{counter-lock}:fence").await.unwrap();
    // Every grant draws one fence; a first attempt that met the lock held may draw one more.
    assert!(
        (TASKS * ROUNDS..=2 * TASKS * ROUNDS).contains(&fence),
        "{fence} fences for {} acquisitions",
        TASKS * ROUNDS
    );
}

#[tokio::test]
async fn try_acquire_on_a_held_lock_reports_contention_with_the_holders_ttl() {
    let (_server, client) = setup().await;
    let _holder = client.try_acquire("busy", 10 * SECOND).await.unwrap();
    match client.try_acquire("busy", SECOND).await {
        Err(Error::Contended {
            remaining_ttl: Some(left),
        }) => {
            assert!(left > 9 * SECOND && left <= 10 * SECOND, "{left:?}");
        }
        other => panic!("expected contention, got {other:?}"),
    }
}

#[tokio::test]
async fn a_key_without_expiry_is_contended_with_unknown_ttl() {
    let (server, client) = setup().await;
    let mut conn = raw(&server).await;
    let _: () = conn.set("redlease:{manual}", "set-by-hand").await.unwrap();
    assert!(matches!(
        client.try_acquire("manual", SECOND).await,
        Err(Error::Contended {
            remaining_ttl: None
        })
    ));
}

#[tokio::test]
async fn acquire_gives_up_after_its_attempts_with_contended() {
    let (_server, client) = setup().await;
    let _holder = client.try_acquire("held", 10 * SECOND).await.unwrap();
    let options = LockOptions::new(SECOND).retry(Retry::fixed(ms(10)).max_attempts(3));
    let started = Instant::now();
    assert!(matches!(
        client.acquire("held", &options).await,
        Err(Error::Contended { .. })
    ));
    // Attempt 1 fails, the waiter subscribes and retries at once (attempt 2), waits 10 ms
    // (no release came), and attempt 3 fails.
    assert!(started.elapsed() >= ms(10), "{:?}", started.elapsed());
}

#[tokio::test]
async fn acquire_gives_up_at_its_deadline_with_timed_out() {
    let (_server, client) = setup().await;
    let _holder = client.try_acquire("held", 10 * SECOND).await.unwrap();
    let options =
        LockOptions::new(SECOND).retry(Retry::exponential(ms(5), ms(50)).timeout(ms(300)));
    let started = Instant::now();
    match client.acquire("held", &options).await {
        Err(Error::TimedOut {
            waited,
            remaining_ttl,
        }) => {
            assert!(waited >= ms(300), "{waited:?}");
            assert!(remaining_ttl.is_some());
        }
        other => panic!("expected a timeout, got {other:?}"),
    }
    assert!(
        started.elapsed() < 3 * SECOND,
        "the deadline bounds the wait"
    );
}

#[tokio::test]
async fn a_waiter_never_sleeps_past_the_holders_expiry() {
    let (_server, client) = setup().await;
    let holder = client.try_acquire("short", ms(300)).await.unwrap();
    // A fallback delay of 20 s: only the holder's TTL can wake the waiter early.
    let options = LockOptions::new(SECOND).retry(Retry::fixed(20 * SECOND).timeout(30 * SECOND));
    let started = Instant::now();
    let guard = client.acquire("short", &options).await.unwrap();
    assert!(
        started.elapsed() < 5 * SECOND,
        "woke after {:?}",
        started.elapsed()
    );
    assert!(guard.fence() > holder.fence());
    drop(holder);
}

#[tokio::test]
async fn a_waiter_gets_the_lock_after_a_release() {
    let (_server, client) = setup().await;
    let holder = client.try_acquire("handoff", 30 * SECOND).await.unwrap();
    let holder_fence = holder.fence();
    let waiter = {
        let client = client.clone();
        tokio::spawn(async move { client.acquire("handoff", &LockOptions::new(SECOND)).await })
    };
    tokio::time::sleep(ms(50)).await;
    holder.release().await.unwrap();
    let guard = tokio::time::timeout(5 * SECOND, waiter)
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    assert!(guard.fence() > holder_fence);
}
