//! Semaphores: at most N holders, permits that end on their own, one limit, resize, waiting,
//! fences and slots, cancellation, bad input.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use redlease::{Client, ConfigError, Error, LockOptions, Lost, Retry};
use redlease_testkit::start_nodes;

use crate::{SECOND, config_error, ms, raw, setup, until_waiting, waiting};

fn waiting_options(ttl: Duration) -> LockOptions {
    LockOptions::new(ttl).retry(Retry::fixed(SECOND).timeout(60 * SECOND))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn never_more_than_n_holders_sixteen_tasks_a_hundred_rounds_each() {
    const LIMIT: usize = 3;
    let (_server, client) = setup().await;
    let live = Arc::new(AtomicUsize::new(0));
    let most = Arc::new(AtomicUsize::new(0));
    let slots: Arc<Vec<AtomicBool>> =
        Arc::new((0..LIMIT).map(|_| AtomicBool::new(false)).collect());
    let tasks: Vec<_> = (0..16)
        .map(|_| {
            let semaphore = client.semaphore("n-at-once", 3);
            let (live, most, slots) = (live.clone(), most.clone(), slots.clone());
            tokio::spawn(async move {
                let options = waiting_options(10 * SECOND);
                for _ in 0..100 {
                    let permit = semaphore.acquire(&options).await.unwrap();
                    let now = live.fetch_add(1, Ordering::SeqCst) + 1;
                    most.fetch_max(now, Ordering::SeqCst);
                    assert!(now <= LIMIT, "{now} holders at once");
                    let slot = usize::try_from(permit.slot()).unwrap();
                    assert!(
                        !slots[slot].swap(true, Ordering::SeqCst),
                        "slot {slot} held twice"
                    );
                    tokio::task::yield_now().await;
                    slots[slot].store(false, Ordering::SeqCst);
                    live.fetch_sub(1, Ordering::SeqCst);
                    permit.release().await.unwrap();
                }
            })
        })
        .collect();
    for task in tasks {
        task.await.unwrap();
    }
    assert_eq!(most.load(Ordering::SeqCst), LIMIT, "the limit was reached");
    let info = client.inspect("n-at-once").await.unwrap();
    assert!(info.permits.is_empty() && info.limit.is_none(), "{info:?}");
    assert_eq!(info.fence, 1600, "one fence per grant");
}

#[tokio::test]
async fn a_killed_holders_permit_comes_back_after_its_ttl_and_the_survivors_keep_theirs() {
    let (server, client) = setup().await;
    let semaphore = client.semaphore("crash", 2);
    let renewing = LockOptions::new(ms(600)).auto_renew(true);
    let survivor = semaphore.acquire(&renewing).await.unwrap();
    // A holder that dies: no release, no renewal.
    let dead = Client::connect(&server.url()).await.unwrap();
    std::mem::forget(
        dead.semaphore("crash", 2)
            .try_acquire(ms(600))
            .await
            .unwrap(),
    );
    drop(dead);
    assert!(
        semaphore
            .try_acquire(ms(600))
            .await
            .unwrap_err()
            .is_contended()
    );
    let started = Instant::now();
    let permit = semaphore.acquire(&waiting_options(SECOND)).await.unwrap();
    let waited = started.elapsed();
    assert!(
        waited < 2 * SECOND,
        "the dead holder's permit came back after {waited:?}"
    );
    assert!(survivor.is_held(), "the survivor renews its own permit");
    let info = client.inspect("crash").await.unwrap();
    assert_eq!(info.permits.len(), 2, "{info:?}");
    drop(permit);
    survivor.release().await.unwrap();
    tokio::time::sleep(ms(100)).await;
    let mut conn = raw(&server).await;
    let left: Vec<String> = redis::cmd("KEYS")
        .arg("redlease:{crash}*")
        .query_async(&mut conn)
        .await
        .unwrap();
    assert_eq!(
        left,
        ["redlease:{crash}:fence"],
        "only the fence counter persists"
    );
}

#[tokio::test]
async fn a_limit_that_differs_from_the_holders_is_refused_naming_both() {
    let (_server, client) = setup().await;
    let held = client
        .semaphore("limit", 3)
        .try_acquire(10 * SECOND)
        .await
        .unwrap();
    let err = client
        .semaphore("limit", 5)
        .acquire(&waiting_options(SECOND))
        .await
        .unwrap_err();
    assert!(
        matches!(
            err,
            Error::LimitMismatch {
                asked: 5,
                stored: 3
            }
        ),
        "{err:?}"
    );
    let shown = err.to_string();
    assert!(shown.contains('3') && shown.contains('5'), "{shown}");
    held.release().await.unwrap();
    let permit = client
        .semaphore("limit", 5)
        .try_acquire(SECOND)
        .await
        .expect("no permit is held: the new limit takes effect");
    assert_eq!(client.inspect("limit").await.unwrap().limit, Some(5));
    permit.release().await.unwrap();
}

#[tokio::test]
async fn resizing_hands_new_permits_to_waiters_and_stops_renewing_those_beyond_a_lower_limit() {
    let (server, client) = setup().await;
    assert_eq!(
        client.semaphore("resize", 2).resize().await.unwrap(),
        None,
        "nothing held"
    );
    let renewing = LockOptions::new(ms(900))
        .auto_renew(true)
        .retry(Retry::fixed(SECOND).timeout(30 * SECOND));
    let small = client.semaphore("resize", 2);
    let first = small.acquire(&renewing).await.unwrap();
    let second = small.acquire(&renewing).await.unwrap();
    assert_eq!((first.slot(), second.slot()), (0, 1));
    let waiter = {
        let small = small.clone();
        let renewing = renewing.clone();
        tokio::spawn(async move { small.acquire(&renewing).await })
    };
    tokio::time::sleep(ms(200)).await;
    assert_eq!(waiting(&server, "redlease:{resize}:waiters").await, 1);
    let started = Instant::now();
    assert_eq!(
        client.semaphore("resize", 3).resize().await.unwrap(),
        Some(2)
    );
    let third = tokio::time::timeout(5 * SECOND, waiter)
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    assert!(
        started.elapsed() < ms(500),
        "handed at once, after {:?}",
        started.elapsed()
    );
    assert_eq!(third.slot(), 2);
    // Lower to 1: slots 1 and 2 are not renewed, and end within one TTL; slot 0 goes on.
    assert_eq!(
        client.semaphore("resize", 1).resize().await.unwrap(),
        Some(3)
    );
    let lost = tokio::time::timeout(2 * SECOND, second.lost())
        .await
        .expect("slot 1 is no longer renewed");
    assert_eq!(lost, Lost::Expired);
    assert_eq!(
        tokio::time::timeout(2 * SECOND, third.lost())
            .await
            .unwrap(),
        Lost::Expired
    );
    tokio::time::sleep(SECOND).await;
    assert!(first.is_held(), "slot 0 is below the new limit");
    let info = client.inspect("resize").await.unwrap();
    assert_eq!((info.limit, info.permits.len()), (Some(1), 1), "{info:?}");
    assert!(
        client
            .semaphore("resize", 1)
            .try_acquire(SECOND)
            .await
            .unwrap_err()
            .is_contended()
    );
    first.release().await.unwrap();
}

#[tokio::test]
async fn fences_increase_with_every_grant_and_each_holder_has_its_own_slot() {
    let (_server, client) = setup().await;
    let semaphore = client.semaphore("fenced", 3);
    let mut permits = Vec::new();
    let mut last = 0;
    for expected_slot in 0..3 {
        let permit = semaphore.try_acquire(10 * SECOND).await.unwrap();
        assert!(permit.fence() > last);
        last = permit.fence();
        assert_eq!(permit.slot(), expected_slot);
        permits.push(permit);
    }
    // Slot 1 is given back and taken again, with a larger fence than any before.
    permits.remove(1).release().await.unwrap();
    let again = semaphore.try_acquire(10 * SECOND).await.unwrap();
    assert_eq!(again.slot(), 1);
    assert!(again.fence() > last);
    let info = client.inspect("fenced").await.unwrap();
    let slots: Vec<Option<u32>> = info.permits.iter().map(|p| p.slot).collect();
    assert_eq!(slots, [Some(0), Some(1), Some(2)]);
    assert_eq!(info.permits[1].fence, Some(again.fence()));
}

#[tokio::test]
async fn a_release_hands_the_permit_to_a_waiter_long_before_its_fallback() {
    let (_server, client) = setup().await;
    let semaphore = client.semaphore("handoff", 1);
    let holder = semaphore.try_acquire(30 * SECOND).await.unwrap();
    let waiter = {
        let semaphore = semaphore.clone();
        let patient =
            LockOptions::new(30 * SECOND).retry(Retry::fixed(60 * SECOND).timeout(120 * SECOND));
        tokio::spawn(async move { semaphore.acquire(&patient).await })
    };
    tokio::time::sleep(ms(200)).await;
    let info = client.inspect("handoff").await.unwrap();
    assert_eq!((info.queued, info.waiting_clients), (1, 1));
    let released = Instant::now();
    holder.release().await.unwrap();
    let permit = tokio::time::timeout(5 * SECOND, waiter)
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    assert!(released.elapsed() < SECOND, "{:?}", released.elapsed());
    assert_eq!((permit.slot(), permit.fence()), (0, 2));
    assert!(permit.is_held());
    permit.release().await.unwrap();
}

#[tokio::test]
async fn renewal_renews_only_its_own_permit() {
    let (_server, client) = setup().await;
    let semaphore = client.semaphore("zombie", 2);
    let renewing = semaphore
        .acquire(&LockOptions::new(ms(500)).auto_renew(true))
        .await
        .unwrap();
    let abandoned = semaphore.try_acquire(ms(500)).await.unwrap();
    let abandoned_token = abandoned.token().fingerprint();
    std::mem::forget(abandoned);
    tokio::time::sleep(ms(1_200)).await;
    let info = client.inspect("zombie").await.unwrap();
    let holders: Vec<&str> = info
        .permits
        .iter()
        .map(|p| p.token_fingerprint.as_str())
        .collect();
    assert_eq!(
        holders,
        [renewing.token().fingerprint()],
        "not {abandoned_token}"
    );
    renewing.release().await.unwrap();
}

#[tokio::test]
async fn dropped_acquires_leave_no_permit_or_waiter_entry_behind() {
    let (server, client) = setup().await;
    let semaphore = client.semaphore("dropped", 1);
    let holder = semaphore.try_acquire(30 * SECOND).await.unwrap();
    let waiters: Vec<_> = (0..4)
        .map(|_| {
            let semaphore = semaphore.clone();
            tokio::spawn(async move { semaphore.acquire(&waiting_options(30 * SECOND)).await })
        })
        .collect();
    until_waiting(&server, "redlease:{dropped}:waiters", 4).await;
    for waiter in waiters {
        waiter.abort();
        assert!(waiter.await.unwrap_err().is_cancelled());
    }
    until_waiting(&server, "redlease:{dropped}:waiters", 0).await;
    holder.release().await.unwrap();
    tokio::time::sleep(ms(100)).await;
    let info = client.inspect("dropped").await.unwrap();
    assert!(
        info.permits.is_empty(),
        "no aborted waiter got a permit: {info:?}"
    );
}

#[tokio::test]
async fn bad_limits_redlock_and_another_primitives_keys_are_refused() {
    let (_server, client) = setup().await;
    for limit in [0, redlease::MAX_PERMITS + 1] {
        let err = config_error(client.semaphore("bad", limit).try_acquire(SECOND).await);
        assert!(
            matches!(err, ConfigError::LimitOutOfRange { .. }),
            "{err:?}"
        );
    }
    let lock = client
        .try_acquire("taken-by-a-lock", 10 * SECOND)
        .await
        .unwrap();
    let err = client
        .semaphore("taken-by-a-lock", 2)
        .try_acquire(SECOND)
        .await
        .unwrap_err();
    assert!(
        matches!(&err, Error::WrongType { found, .. } if found == "string"),
        "{err:?}"
    );
    lock.release().await.unwrap();
    let permit = client
        .semaphore("taken-by-a-semaphore", 2)
        .try_acquire(10 * SECOND)
        .await
        .unwrap();
    let err = client
        .try_acquire("taken-by-a-semaphore", SECOND)
        .await
        .unwrap_err();
    assert!(
        matches!(&err, Error::WrongType { found, .. } if found == "zset"),
        "{err:?}"
    );
    let err = client
        .rwlock("taken-by-a-semaphore")
        .try_read(SECOND)
        .await
        .unwrap_err();
    assert!(
        matches!(&err, Error::WrongType { found, .. } if found == "zset"),
        "{err:?}"
    );
    permit.release().await.unwrap();

    let servers = start_nodes(3).unwrap();
    let redlock = servers
        .iter()
        .fold(Client::builder(), |b, s| b.url(s.url()))
        .build()
        .await
        .unwrap();
    let err = config_error(redlock.semaphore("n", 2).try_acquire(SECOND).await);
    assert_eq!(err, ConfigError::SemaphoreNeedsOneNode);
}
