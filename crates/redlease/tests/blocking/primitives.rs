//! Semaphores and read-write locks through the blocking API: limits, slots, hand-offs woken by
//! releases, readers sharing and excluding writers, and permits given back on drop.

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use redlease::{ConfigError, Error, LockOptions, ReleaseOutcome, Retry};

use crate::{SECOND, ms, setup};

/// Waits up to 10 s, polling only every 5 s: a grant within a second came from a release.
fn woken_options() -> LockOptions {
    LockOptions::new(30 * SECOND).retry(Retry::fixed(5 * SECOND).timeout(10 * SECOND))
}

#[test]
fn a_semaphore_grants_its_limit_in_distinct_slots_and_hands_a_release_to_a_waiter() {
    let (_server, client) = setup();
    let semaphore = client.semaphore("gpus", 2);
    let first = semaphore.try_acquire(30 * SECOND).unwrap();
    let second = semaphore.try_acquire(30 * SECOND).unwrap();
    let slots: BTreeSet<u32> = [first.slot(), second.slot()].into();
    assert_eq!(slots, BTreeSet::from([0, 1]));
    assert!(second.fence() > first.fence());
    assert!(
        matches!(
            semaphore.try_acquire(30 * SECOND),
            Err(Error::Contended { .. })
        ),
        "a third permit of two"
    );
    let waiter = {
        let semaphore = semaphore.clone();
        std::thread::spawn(move || {
            let permit = semaphore.acquire(&woken_options()).unwrap();
            (Instant::now(), permit.slot(), permit.fence())
        })
    };
    std::thread::sleep(ms(300));
    let (freed_slot, last_fence) = (first.slot(), second.fence());
    let released = Instant::now();
    assert_eq!(first.release().unwrap(), ReleaseOutcome::Released);
    let (granted, slot, fence) = waiter.join().unwrap();
    assert!(
        granted - released < SECOND,
        "the waiter got a permit {:?} after the release",
        granted - released
    );
    assert_eq!(slot, freed_slot, "the freed slot goes to the waiter");
    assert!(fence > last_fence);
    // The waiter's permit was dropped with its thread: given back, so two are free again
    // once the second goes too.
    drop(second);
    let again: Vec<_> = (0..2)
        .map(|_| semaphore.try_acquire(30 * SECOND).unwrap())
        .collect();
    assert_eq!(again.len(), 2);
}

#[test]
fn a_semaphore_refuses_bad_limits_and_a_limit_that_differs_from_the_holders() {
    let (_server, client) = setup();
    for limit in [0, redlease::MAX_PERMITS + 1] {
        match client.semaphore("slots", limit).try_acquire(SECOND) {
            Err(Error::InvalidConfig(ConfigError::LimitOutOfRange { limit: got, .. })) => {
                assert_eq!(got, limit);
            }
            other => panic!("limit {limit}: expected LimitOutOfRange, got {other:?}"),
        }
    }
    let _held = client
        .semaphore("slots", 3)
        .try_acquire(30 * SECOND)
        .unwrap();
    match client.semaphore("slots", 4).try_acquire(SECOND) {
        Err(Error::LimitMismatch { asked, stored }) => assert_eq!((asked, stored), (4, 3)),
        other => panic!("expected LimitMismatch, got {other:?}"),
    }
    assert_eq!(client.semaphore("slots", 4).resize().unwrap(), Some(3));
    let fourth = client.semaphore("slots", 4).try_acquire(SECOND).unwrap();
    assert!(fourth.slot() < 4, "slot {}", fourth.slot());
}

#[test]
fn readers_share_and_a_waiting_writer_gets_the_lock_when_the_last_reader_leaves() {
    let (_server, client) = setup();
    let catalog = client.rwlock("catalog");
    let first = catalog.try_read(30 * SECOND).unwrap();
    let second = catalog.try_read(30 * SECOND).unwrap();
    assert!(first.is_held() && second.is_held());
    assert!(
        matches!(
            client.try_acquire("catalog", SECOND),
            Err(Error::Contended { .. })
        ),
        "the plain lock is the write side"
    );
    let writer = {
        let catalog = catalog.clone();
        std::thread::spawn(move || {
            let guard = catalog.write(&woken_options()).unwrap();
            (Instant::now(), guard.fence())
        })
    };
    std::thread::sleep(ms(300));
    assert!(
        matches!(catalog.try_read(SECOND), Err(Error::Contended { .. })),
        "a new reader waits behind the waiting writer"
    );
    let reader_fence = first.fence().max(second.fence());
    assert_eq!(first.release().unwrap(), ReleaseOutcome::Released);
    let released = Instant::now();
    drop(second); // given back as the blocking guard's drop does
    let (granted, fence) = writer.join().unwrap();
    assert!(
        granted - released < SECOND,
        "the writer got the lock {:?} after the last reader left",
        granted - released
    );
    assert!(fence > reader_fence);
    // The writer's guard was dropped with its thread: readers get in again.
    assert!(catalog.try_read(SECOND).unwrap().is_held());
}

#[test]
fn a_timed_out_blocking_acquire_of_a_full_semaphore_leaves_no_waiter_behind() {
    let (server, client) = setup();
    let semaphore = client.semaphore("full", 1);
    let _held = semaphore.try_acquire(30 * SECOND).unwrap();
    let options = LockOptions::new(SECOND).retry(Retry::fixed(ms(50)).timeout(ms(300)));
    let started = Instant::now();
    assert!(
        matches!(semaphore.acquire(&options), Err(Error::TimedOut { .. })),
        "a full semaphore times out"
    );
    assert!(started.elapsed() < Duration::from_millis(1500));
    let mut conn = crate::raw(&server);
    let deadline = Instant::now() + 2 * SECOND;
    loop {
        let listed: u64 = redis::cmd("LLEN")
            .arg("redlease:{full}:waiters")
            .query(&mut conn)
            .unwrap();
        if listed == 0 {
            break;
        }
        assert!(Instant::now() < deadline, "{listed} waiters left listed");
        std::thread::sleep(ms(10));
    }
}
