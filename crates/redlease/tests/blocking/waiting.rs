//! Waiting woken by the holder's release, and the retry timeout that cancels a wait.

use std::time::{Duration, Instant};

use redlease::{Error, LockOptions, Retry};

use crate::{SECOND, ms, setup, subscribers, wait_until_absent};

#[test]
fn a_waiter_is_woken_by_the_release_not_by_the_ttl() {
    let (_server, client) = setup();
    let holder = client.try_acquire("handoff", 30 * SECOND).unwrap();
    let waiter = {
        let client = client.clone();
        std::thread::spawn(move || {
            // Polling once a second would take a second; the release wakes the waiter at once.
            let options =
                LockOptions::new(30 * SECOND).retry(Retry::fixed(5 * SECOND).timeout(10 * SECOND));
            let guard = client.acquire("handoff", &options).unwrap();
            (Instant::now(), guard.fence())
        })
    };
    std::thread::sleep(ms(300));
    let released = Instant::now();
    let holder_fence = holder.fence();
    holder.release().unwrap();
    let (granted, fence) = waiter.join().unwrap();
    assert!(fence > holder_fence);
    let gap = granted - released;
    assert!(
        gap < SECOND,
        "the waiter got the lock {gap:?} after the release"
    );
}

/// A blocking wait is cancelled by its retry timeout: it returns `TimedOut` on time and leaves
/// no subscription behind.
#[test]
fn the_retry_timeout_ends_a_wait_and_leaves_no_subscription() {
    let (server, client) = setup();
    let _holder = client.try_acquire("held", 30 * SECOND).unwrap();
    let options = LockOptions::new(SECOND).retry(Retry::fixed(ms(50)).timeout(ms(300)));
    let started = Instant::now();
    match client.acquire("held", &options) {
        Err(Error::TimedOut {
            waited,
            remaining_ttl,
        }) => {
            assert!(waited >= ms(300), "{waited:?}");
            assert!(
                remaining_ttl.is_some_and(|ttl| ttl > 29 * SECOND),
                "{remaining_ttl:?}"
            );
        }
        other => panic!("expected TimedOut, got {other:?}"),
    }
    let took = started.elapsed();
    assert!(
        took < ms(800),
        "the wait took {took:?} with a 300 ms timeout"
    );
    let deadline = Instant::now() + 3 * SECOND;
    while subscribers(&server, "redlease:{held}:released") != 0 {
        assert!(
            Instant::now() < deadline,
            "the timed-out waiter left its subscription"
        );
        std::thread::sleep(ms(10));
    }
}

/// In fair mode a timed-out waiter gives up its place in the queue at once, so the next
/// waiter does not wait for its entry to expire.
#[test]
fn a_timed_out_fair_waiter_leaves_the_queue() {
    let (server, client) = setup();
    let fair = |timeout: Duration| {
        LockOptions::new(30 * SECOND)
            .fair(true)
            .retry(Retry::fixed(ms(50)).timeout(timeout))
    };
    let holder = client.acquire("fifo", &fair(SECOND)).unwrap();
    assert!(
        client
            .acquire("fifo", &fair(ms(200)))
            .unwrap_err()
            .is_contended()
    );
    wait_until_absent(&server, "redlease:{fifo}:waiters", SECOND);
    holder.release().unwrap();
    let next = client.acquire("fifo", &fair(SECOND)).unwrap();
    assert_eq!(next.fence(), 2);
}

/// A request stuck on a paused server ends at the command timeout; the grant the server makes
/// when it resumes belongs to nobody and is deleted in the background, long before its TTL.
#[test]
fn a_request_past_its_command_timeout_leaves_no_key_behind() {
    let mut server = redlease_testkit::RedisServer::start().unwrap();
    let client = redlease::Client::builder()
        .url(server.url())
        .command_timeout(ms(100))
        .build_blocking()
        .unwrap();
    server.pause().unwrap();
    let started = Instant::now();
    let err = client.try_acquire("orphan", 30 * SECOND).unwrap_err();
    assert!(err.is_timeout(), "{err:?}");
    assert!(started.elapsed() < SECOND, "took {:?}", started.elapsed());
    server.resume().unwrap();
    wait_until_absent(&server, "redlease:{orphan}", 3 * SECOND);
    let guard = client.try_acquire("orphan", SECOND).unwrap();
    assert_eq!(guard.fence(), 2, "the orphaned grant took fence 1");
}
