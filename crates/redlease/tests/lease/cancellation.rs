//! Dropped futures: no key outlives its would-be owner by more than one TTL, no task leaks.

use std::time::Instant;

use redlease::{LockOptions, Retry};

use crate::{SECOND, get, ms, paused_server, raw, setup};

async fn wait_until_absent(
    server: &redlease_testkit::RedisServer,
    key: &str,
    within: std::time::Duration,
) {
    let mut conn = raw(server).await;
    let deadline = Instant::now() + within;
    while get(&mut conn, key).await.is_some() {
        assert!(
            Instant::now() < deadline,
            "{key} still exists after {within:?}"
        );
        tokio::time::sleep(ms(10)).await;
    }
}

/// The acquire request reaches the (paused) server, then the caller gives up. When the server
/// resumes it grants the lease to nobody; redlease's background cleanup deletes it long before
/// its 30 s TTL.
#[tokio::test]
async fn aborted_acquire_in_flight_leaves_no_key_behind() {
    let (mut server, client) = paused_server(5 * SECOND).await;
    // The request reaches the paused server's socket; the caller stops waiting.
    let cancelled = tokio::time::timeout(ms(100), client.try_acquire("orphan", 30 * SECOND)).await;
    assert!(cancelled.is_err(), "the acquire should still be in flight");
    tokio::time::sleep(ms(100)).await;
    server.resume().unwrap();
    wait_until_absent(&server, "redlease:{orphan}", 3 * SECOND).await;
    let guard = client
        .try_acquire("orphan", SECOND)
        .await
        .expect("the lock is free again");
    assert_eq!(guard.fence(), 2, "the orphaned grant took fence 1");
}

#[tokio::test]
async fn aborted_waiter_leaves_the_lock_usable_and_no_task_behind() {
    let (server, client) = setup().await;
    let metrics = tokio::runtime::Handle::current().metrics();
    let baseline = metrics.num_alive_tasks();
    let holder = client.try_acquire("queue", 30 * SECOND).await.unwrap();
    let waiter = {
        let client = client.clone();
        let options = LockOptions::new(30 * SECOND).retry(Retry::fixed(ms(5)));
        tokio::spawn(async move { client.acquire("queue", &options).await })
    };
    tokio::time::sleep(ms(50)).await;
    waiter.abort();
    assert!(waiter.await.unwrap_err().is_cancelled());
    holder.release().await.unwrap();

    let guard = client
        .try_acquire("queue", SECOND)
        .await
        .expect("nobody holds it");
    assert_eq!(guard.fence(), 2, "the aborted waiter never got the lock");
    guard.release().await.unwrap();
    let deadline = Instant::now() + 2 * SECOND;
    while metrics.num_alive_tasks() > baseline {
        assert!(
            Instant::now() < deadline,
            "{} tasks alive, {baseline} before",
            metrics.num_alive_tasks()
        );
        tokio::time::sleep(ms(10)).await;
    }
    drop(server);
}

#[tokio::test]
async fn dropped_release_future_still_releases() {
    let (server, client) = setup().await;
    let guard = client
        .try_acquire("half-released", 30 * SECOND)
        .await
        .unwrap();
    drop(guard.release()); // never polled: the guard inside it is dropped
    wait_until_absent(&server, "redlease:{half-released}", 3 * SECOND).await;
}

#[tokio::test]
async fn dropped_extend_future_keeps_the_previous_deadline() {
    let (_server, client) = setup().await;
    let mut guard = client.try_acquire("extending", 10 * SECOND).await.unwrap();
    let deadline = guard.valid_until();
    drop(guard.extend(60 * SECOND));
    assert_eq!(guard.valid_until(), deadline);
    assert!(guard.is_held());
}
