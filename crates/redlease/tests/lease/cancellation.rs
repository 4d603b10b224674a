//! Dropped futures: no key outlives its would-be owner by more than one TTL, no task leaks.

use std::time::Instant;

use redlease::{LockOptions, Retry};

use crate::{SECOND, get, ms, paused_server, raw, setup, until_waiting};

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

/// In the style of tokio's `aborted_future_*` tests: waiters aborted while listed leave no
/// waiter entry and no task behind, and the lock stays usable.
#[tokio::test]
async fn aborted_waiters_leave_no_waiter_entry_task_or_lock_behind() {
    let (server, client) = setup().await;
    let waiters_key = "redlease:{queue}:waiters";
    let holder = client.try_acquire("queue", 30 * SECOND).await.unwrap();
    let options = LockOptions::new(30 * SECOND).retry(Retry::fixed(SECOND));
    let metrics = tokio::runtime::Handle::current().metrics();
    let mut alive_after_first_round = None;
    for _round in 0..3 {
        let waiters: Vec<_> = (0..4)
            .map(|_| {
                let (client, options) = (client.clone(), options.clone());
                tokio::spawn(async move { client.acquire("queue", &options).await })
            })
            .collect();
        until_waiting(&server, waiters_key, 4).await;
        for waiter in waiters {
            waiter.abort();
            assert!(waiter.await.unwrap_err().is_cancelled());
        }
        until_waiting(&server, waiters_key, 0).await;
        // The client's one subscriber task stays; nothing accumulates per waiter.
        let alive = metrics.num_alive_tasks();
        let first = *alive_after_first_round.get_or_insert(alive);
        assert!(
            alive <= first,
            "{alive} tasks alive, {first} after the first round"
        );
    }
    let fence_key = waiters_key.replace(":waiters", ":fence");
    let drawn: u64 = get(&mut raw(&server).await, &fence_key)
        .await
        .and_then(|fence| fence.parse().ok())
        .expect("a fence counter");
    holder.release().await.unwrap();
    let guard = client
        .try_acquire("queue", SECOND)
        .await
        .expect("nobody holds it");
    // A grant to an aborted waiter (a hand-off confirmed, or a retry that won) would have
    // drawn a fence of its own after the waiters' first attempts.
    assert_eq!(
        guard.fence(),
        drawn + 1,
        "no aborted waiter ever got the lock"
    );
    guard.release().await.unwrap();
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
