//! Acquire, inspect, extend, release and drop; Redlock through the builder; what crosses
//! threads.

use std::time::Duration;

use redis::Commands;
use redlease::blocking::{Client, Guard};
use redlease::{Error, LockOptions, Lost, ReleaseOutcome, Retry};
use redlease_testkit::start_nodes;

use crate::{SECOND, get, ms, raw, setup, wait_until_absent};

#[test]
fn acquire_release_and_fences_that_increase() {
    let (server, client) = setup();
    let guard = client.try_acquire("invoice", 10 * SECOND).unwrap();
    assert_eq!(guard.name(), "invoice");
    assert_eq!(guard.fence(), 1);
    assert!(guard.is_held());
    assert!(guard.remaining() > 9 * SECOND && guard.remaining() <= 10 * SECOND);
    assert_eq!(guard.ttl(), 10 * SECOND);
    assert_eq!(
        get(&server, "redlease:{invoice}").as_deref(),
        Some(guard.token().expose())
    );
    let info = client.inspect("invoice").unwrap();
    assert_eq!(info.fence, 1);
    assert!(info.holder.is_some());
    assert_eq!(client.list("*").unwrap().len(), 1);
    assert_eq!(guard.release().unwrap(), ReleaseOutcome::Released);
    assert_eq!(get(&server, "redlease:{invoice}"), None);
    let next = client.try_acquire("invoice", 10 * SECOND).unwrap();
    assert_eq!(next.fence(), 2, "every holder gets a larger fence");
    assert_eq!(next.release().unwrap(), ReleaseOutcome::Released);
}

#[test]
fn a_held_lock_is_contended_and_a_late_release_reports_expiry() {
    let (server, client) = setup();
    let holder = client
        .acquire("busy", &LockOptions::new(10 * SECOND).label("nightly job"))
        .unwrap();
    match client.try_acquire("busy", SECOND) {
        Err(Error::Contended {
            remaining_ttl: Some(left),
        }) => assert!(left > 9 * SECOND, "{left:?}"),
        other => panic!("expected Contended, got {other:?}"),
    }
    let short = client.try_acquire("short", ms(100)).unwrap();
    std::thread::sleep(ms(200));
    assert!(!short.is_held());
    assert_eq!(short.remaining(), Duration::ZERO);
    assert_eq!(short.release().unwrap(), ReleaseOutcome::Expired);
    let broken = client
        .force_release("busy")
        .unwrap()
        .expect("someone held it");
    assert_eq!(broken.label, "nightly job");
    assert_eq!(get(&server, "redlease:{busy}"), None);
    assert_eq!(holder.release().unwrap(), ReleaseOutcome::Expired);
}

#[test]
fn extend_gives_a_new_ttl_and_refuses_a_lost_lease() {
    let (server, client) = setup();
    let mut guard = client.try_acquire("extended", 2 * SECOND).unwrap();
    guard.extend(60 * SECOND).unwrap();
    assert!(guard.remaining() > 59 * SECOND);
    let pttl: i64 = raw(&server).pttl("redlease:{extended}").unwrap();
    assert!(pttl > 59_000, "PTTL {pttl}");
    let _: () = raw(&server).del("redlease:{extended}").unwrap();
    assert!(matches!(
        guard.extend(60 * SECOND),
        Err(Error::Lost(Lost::Expired))
    ));
    assert!(!guard.is_held());
    assert!(matches!(
        guard.extend(60 * SECOND),
        Err(Error::Lost(Lost::Expired))
    ));
}

/// A program that ends right after dropping its guard still frees the lock: the drop waits
/// for the release.
#[test]
fn dropping_a_guard_has_released_it_when_the_drop_returns() {
    let (server, client) = setup();
    let guard = client.try_acquire("dropped", 30 * SECOND).unwrap();
    let lost = guard.lost();
    drop(guard);
    assert_eq!(get(&server, "redlease:{dropped}"), None);
    assert_eq!(lost.recv_timeout(SECOND), Ok(Lost::Released));
    assert_eq!(client.try_acquire("dropped", SECOND).unwrap().fence(), 2);
}

/// The drop of a guard whose server does not answer returns after a bounded wait; the lease
/// then expires (or the release finishes on the runtime thread).
#[test]
fn dropping_a_guard_of_a_stopped_server_returns_within_the_bound() {
    let mut server = redlease_testkit::RedisServer::start().unwrap();
    let client = redlease::Client::builder()
        .url(server.url())
        .command_timeout(5 * SECOND)
        .build_blocking()
        .unwrap();
    let guard = client.try_acquire("stalled", 30 * SECOND).unwrap();
    server.pause().unwrap();
    let started = std::time::Instant::now();
    drop(guard);
    let waited = started.elapsed();
    assert!(
        waited >= ms(900) && waited < 3 * SECOND,
        "the drop took {waited:?}"
    );
    server.resume().unwrap();
    // The release was left to the runtime thread, which finishes it once the server answers.
    wait_until_absent(&server, "redlease:{stalled}", 3 * SECOND);
}

/// Guards keep the runtime thread: they work after their client is dropped.
#[test]
fn a_guard_outlives_its_client() {
    let (server, client) = setup();
    let mut guard = client
        .acquire("orphaned", &LockOptions::new(SECOND).auto_renew(true))
        .unwrap();
    drop(client);
    std::thread::sleep(ms(1_500));
    assert!(
        guard.is_held(),
        "renewal goes on: {:?}",
        guard.lost_reason()
    );
    guard.extend(10 * SECOND).unwrap();
    assert_eq!(guard.release().unwrap(), ReleaseOutcome::Released);
    assert_eq!(get(&server, "redlease:{orphaned}"), None);
}

#[test]
fn redlock_through_the_builder_survives_one_node_down() {
    let mut nodes = start_nodes(3).unwrap();
    let client = nodes
        .iter()
        .fold(redlease::Client::builder(), |builder, node| {
            builder.url(node.url())
        })
        .command_timeout(ms(200))
        .build_blocking()
        .unwrap();
    let guard = client
        .acquire("quorum", &LockOptions::new(5 * SECOND).retry(Retry::none()))
        .unwrap();
    for node in &nodes {
        assert_eq!(
            get(node, "redlease:{quorum}").as_deref(),
            Some(guard.token().expose())
        );
    }
    assert_eq!(guard.release().unwrap(), ReleaseOutcome::Released);
    nodes[0].kill();
    let guard = client.try_acquire("quorum", 5 * SECOND).unwrap();
    assert_eq!(guard.fence(), 2);
    assert!(guard.is_held());
    nodes[1].kill();
    assert!(matches!(
        guard.release(),
        Err(Error::NoQuorum {
            needed: 2,
            reached: 1,
            ..
        })
    ));
}

#[test]
fn clients_and_guards_cross_threads() {
    fn send_sync<T: Send + Sync>() {}
    send_sync::<Client>();
    send_sync::<Guard>();
    let (server, client) = setup();
    let handles: Vec<_> = (0..4)
        .map(|i| {
            let client = client.clone();
            std::thread::spawn(move || {
                let options =
                    LockOptions::new(5 * SECOND).retry(Retry::fixed(ms(5)).timeout(5 * SECOND));
                let guard = client.acquire("shared", &options).unwrap();
                let fence = guard.fence();
                // Hand the guard to another thread, which releases it.
                std::thread::spawn(move || guard.release().unwrap())
                    .join()
                    .unwrap();
                (i, fence)
            })
        })
        .collect();
    let mut fences: Vec<u64> = handles.into_iter().map(|h| h.join().unwrap().1).collect();
    fences.sort_unstable();
    fences.dedup();
    assert_eq!(fences.len(), 4, "each holder got its own fence: {fences:?}");
    assert_eq!(get(&server, "redlease:{shared}"), None);
}
