//! Automatic renewal, the loss signal, the hold cap, and no zombie renewals.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use redis::AsyncCommands;
use redlease::{Client, Error, LockOptions, Lost, ReleaseOutcome, Retry};
use redlease_testkit::start_nodes;

use crate::{SECOND, get, ms, raw, setup};

fn renewing(ttl: Duration) -> LockOptions {
    LockOptions::new(ttl).auto_renew(true).retry(Retry::none())
}

#[tokio::test]
async fn a_renewed_lease_outlives_five_ttls_and_an_unrenewed_one_expires() {
    let (server, client) = setup().await;
    let mut conn = raw(&server).await;
    let renewed = client.acquire("kept", &renewing(ms(300))).await.unwrap();
    let plain = client.try_acquire("dropped", ms(300)).await.unwrap();
    let started = Instant::now();
    while started.elapsed() < ms(1_500) {
        assert!(
            renewed.is_held(),
            "lost after {:?}: {:?}",
            started.elapsed(),
            renewed.lost_reason()
        );
        tokio::time::sleep(ms(20)).await;
    }
    assert_eq!(
        get(&mut conn, "redlease:{kept}").await.as_deref(),
        Some(renewed.token().expose())
    );
    assert!(!plain.is_held());
    assert_eq!(plain.lost().await, Lost::Expired);
    assert_eq!(get(&mut conn, "redlease:{dropped}").await, None);
    assert_eq!(renewed.fence(), 1, "renewal does not take new fences");
    assert_eq!(renewed.release().await.unwrap(), ReleaseOutcome::Released);
}

async fn lost_after_nemesis(
    nemesis: impl AsyncFnOnce(&mut redis::aio::MultiplexedConnection),
) -> (Lost, Duration) {
    let (server, client) = setup().await;
    let mut conn = raw(&server).await;
    // TTL 3 s, renewal about every second: loss must be noticed by a renewal, not by expiry.
    let guard = client
        .acquire("victim", &renewing(3 * SECOND))
        .await
        .unwrap();
    let lost = guard.lost();
    tokio::time::sleep(ms(100)).await;
    nemesis(&mut conn).await;
    let hit = Instant::now();
    let reason = tokio::time::timeout(5 * SECOND, lost)
        .await
        .expect("lost() must fire");
    let delay = hit.elapsed();
    assert!(!guard.is_held());
    assert!(matches!(guard.lost_reason(), Some(r) if r == reason));
    (reason, delay)
}

#[tokio::test]
async fn a_key_expired_behind_our_back_is_reported_within_a_renewal_interval() {
    let (reason, delay) = lost_after_nemesis(async |conn| {
        let _: () = conn.pexpire("redlease:{victim}", 1).await.unwrap();
    })
    .await;
    assert_eq!(reason, Lost::Expired);
    assert!(delay < ms(2_000), "noticed after {delay:?}; the TTL is 3 s");
}

#[tokio::test]
async fn a_deleted_key_is_reported_as_expired() {
    let (reason, delay) = lost_after_nemesis(async |conn| {
        let _: () = conn.del("redlease:{victim}").await.unwrap();
    })
    .await;
    assert_eq!(reason, Lost::Expired);
    assert!(delay < ms(2_000), "noticed after {delay:?}");
}

#[tokio::test]
async fn an_overwritten_key_is_reported_as_held_by_another() {
    let (reason, delay) = lost_after_nemesis(async |conn| {
        let _: () = conn.set("redlease:{victim}", "intruder").await.unwrap();
    })
    .await;
    assert_eq!(reason, Lost::HeldByOther);
    assert!(delay < ms(2_000), "noticed after {delay:?}");
}

#[tokio::test]
async fn a_paused_server_makes_the_lease_lost_by_its_deadline_for_good() {
    let (mut server, client) = setup().await;
    let guard = client.acquire("frozen", &renewing(ms(600))).await.unwrap();
    server.pause().unwrap();
    let reason = tokio::time::timeout(3 * SECOND, guard.lost())
        .await
        .expect("lost() must fire");
    let late = Instant::now().saturating_duration_since(guard.valid_until());
    assert_eq!(reason, Lost::Unreachable);
    assert!(late < ms(100), "lost() fired {late:?} after the deadline");
    server.resume().unwrap();
    tokio::time::sleep(ms(400)).await; // replies to the stalled renewals arrive now
    assert!(!guard.is_held(), "a late renewal must not revive the guard");
    let mut guard = guard;
    assert!(matches!(
        guard.extend(SECOND).await,
        Err(Error::Lost(Lost::Unreachable))
    ));
}

#[tokio::test]
async fn a_killed_server_makes_the_lease_lost_by_its_deadline() {
    let (mut server, client) = setup().await;
    let guard = client.acquire("killed", &renewing(ms(600))).await.unwrap();
    server.kill();
    let reason = tokio::time::timeout(3 * SECOND, guard.lost())
        .await
        .expect("lost() must fire");
    assert_eq!(reason, Lost::Unreachable);
    assert!(Instant::now() < guard.valid_until() + ms(100));
}

#[tokio::test]
async fn a_lease_without_renewal_is_lost_at_its_deadline() {
    let (_server, client) = setup().await;
    let guard = client.try_acquire("short", ms(200)).await.unwrap();
    let token = guard.cancellation();
    assert_eq!(guard.lost().await, Lost::Expired);
    assert!(Instant::now() >= guard.valid_until());
    tokio::time::timeout(SECOND, token.cancelled())
        .await
        .expect("the token is cancelled too");
}

#[tokio::test]
async fn release_racing_a_renewal_never_brings_the_key_back() {
    let (server, client) = setup().await;
    let mut conn = raw(&server).await;
    let mut rng = fastrand::Rng::with_seed(7);
    for round in 0..20 {
        // Renewal every ~20 ms: a release lands around a renewal round.
        let guard = client.acquire("racy", &renewing(ms(60))).await.unwrap();
        tokio::time::sleep(ms(rng.u64(0..40))).await;
        guard.release().await.unwrap();
        for _ in 0..10 {
            assert_eq!(
                get(&mut conn, "redlease:{racy}").await,
                None,
                "round {round}"
            );
            tokio::time::sleep(ms(10)).await;
        }
    }
}

#[tokio::test]
async fn the_hold_cap_ends_the_lease_and_says_so() {
    let (server, client) = setup().await;
    let mut conn = raw(&server).await;
    let started = Instant::now();
    let guard = client
        .acquire("capped", &renewing(ms(300)).max_hold(ms(800)))
        .await
        .unwrap();
    let reason = tokio::time::timeout(3 * SECOND, guard.lost())
        .await
        .expect("lost() must fire");
    let held = started.elapsed();
    assert_eq!(reason, Lost::HoldCapReached);
    assert!(
        held >= ms(600) && held <= ms(1_000),
        "held for {held:?} with an 800 ms cap"
    );
    tokio::time::sleep(ms(100)).await;
    assert_eq!(
        get(&mut conn, "redlease:{capped}").await,
        None,
        "the key ends with the cap"
    );
}

#[tokio::test]
async fn a_hold_cap_below_the_ttl_is_rejected() {
    let (_server, client) = setup().await;
    let err = client
        .acquire("n", &renewing(SECOND).max_hold(ms(500)))
        .await
        .unwrap_err();
    assert!(
        matches!(
            err,
            Error::InvalidConfig(redlease::ConfigError::HoldCapBelowTtl { .. })
        ),
        "{err:?}"
    );
}

/// Sets its flag when dropped: shows that a future was cancelled.
struct SetOnDrop(Arc<AtomicBool>);

impl Drop for SetOnDrop {
    fn drop(&mut self) {
        self.0.store(true, Ordering::SeqCst);
    }
}

#[tokio::test]
async fn run_cancels_the_work_when_the_lease_is_lost() {
    let (server, client) = setup().await;
    let mut conn = raw(&server).await;
    let guard = client.acquire("job", &renewing(3 * SECOND)).await.unwrap();
    let dropped = Arc::new(AtomicBool::new(false));
    let marker = SetOnDrop(dropped.clone());
    let nemesis = tokio::spawn(async move {
        tokio::time::sleep(ms(200)).await;
        let _: () = conn.del("redlease:{job}").await.unwrap();
    });
    let started = Instant::now();
    let result = guard
        .run(async move {
            let _marker = marker;
            tokio::time::sleep(60 * SECOND).await;
        })
        .await;
    assert!(
        matches!(result, Err(Error::Lost(Lost::Expired))),
        "{result:?}"
    );
    assert!(dropped.load(Ordering::SeqCst), "the work was dropped");
    assert!(started.elapsed() < 3 * SECOND);
    nemesis.await.unwrap();
}

#[tokio::test]
async fn run_returns_the_output_and_frees_the_lock() {
    let (_server, client) = setup().await;
    let guard = client.acquire("job", &renewing(ms(300))).await.unwrap();
    let output = guard
        .run(async {
            tokio::time::sleep(ms(700)).await; // longer than the TTL: renewal keeps it
            42
        })
        .await
        .unwrap();
    assert_eq!(output, 42);
    client
        .try_acquire("job", SECOND)
        .await
        .expect("released")
        .release()
        .await
        .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_renewal_outlives_a_dropped_guard_or_a_panicking_owner() {
    let (server, client) = setup().await;
    let mut conn = raw(&server).await;
    let metrics = tokio::runtime::Handle::current().metrics();
    let baseline = metrics.num_alive_tasks();

    drop(client.acquire("dropped", &renewing(ms(300))).await.unwrap());
    let owner = {
        let client = client.clone();
        tokio::spawn(async move {
            let _guard = client
                .acquire("panicked", &renewing(ms(300)))
                .await
                .unwrap();
            panic!("the owner fails while holding the lease");
        })
    };
    assert!(owner.await.unwrap_err().is_panic());

    let deadline = Instant::now() + 2 * SECOND;
    loop {
        let dropped = get(&mut conn, "redlease:{dropped}").await;
        let panicked = get(&mut conn, "redlease:{panicked}").await;
        let tasks = metrics.num_alive_tasks();
        if dropped.is_none() && panicked.is_none() && tasks <= baseline {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "keys {dropped:?}/{panicked:?}, tasks {tasks} (baseline {baseline})"
        );
        tokio::time::sleep(ms(10)).await;
    }
    // Nothing renews them later either.
    tokio::time::sleep(ms(400)).await;
    assert_eq!(get(&mut conn, "redlease:{dropped}").await, None);
    assert_eq!(get(&mut conn, "redlease:{panicked}").await, None);
}

#[tokio::test]
async fn many_leases_are_kept_alive_by_one_client() {
    let (_server, client) = setup().await;
    let mut guards = Vec::new();
    for i in 0..200 {
        guards.push(
            client
                .acquire(&format!("bulk-{i}"), &renewing(ms(300)))
                .await
                .unwrap(),
        );
    }
    tokio::time::sleep(ms(1_000)).await;
    assert!(guards.iter().all(redlease::Guard::is_held));
    for guard in guards {
        assert_eq!(guard.release().await.unwrap(), ReleaseOutcome::Released);
    }
}

#[tokio::test]
async fn renewal_follows_the_quorum() {
    let mut servers = start_nodes(3).unwrap();
    let client = servers
        .iter()
        .fold(Client::builder(), |b, s| b.url(s.url()))
        .build()
        .await
        .unwrap();
    let guard = client.acquire("quorum", &renewing(ms(600))).await.unwrap();
    servers[0].kill();
    tokio::time::sleep(ms(1_200)).await;
    assert!(
        guard.is_held(),
        "two of three nodes keep renewing: {:?}",
        guard.lost_reason()
    );
    servers[1].kill();
    let reason = tokio::time::timeout(3 * SECOND, guard.lost())
        .await
        .expect("lost() must fire");
    assert_eq!(reason, Lost::Unreachable);
}

#[tokio::test]
async fn more_leases_than_one_chunk_stay_renewed_and_leave_room_for_acquires() {
    let (_server, client) = setup().await;
    // Three chunks of 500 per round, every 400 ms.
    let mut guards = Vec::new();
    for n in 0..1_200 {
        guards.push(
            client
                .acquire(&format!("many-{n}"), &renewing(ms(1_200)))
                .await
                .unwrap(),
        );
    }
    let started = Instant::now();
    let mut acquires = 0;
    while started.elapsed() < ms(3_000) {
        let other = client.try_acquire("between", SECOND).await.unwrap();
        assert_eq!(other.release().await.unwrap(), ReleaseOutcome::Released);
        acquires += 1;
    }
    let lost: Vec<_> = guards
        .iter()
        .filter(|g| !g.is_held())
        .map(redlease::Guard::lost_reason)
        .collect();
    assert!(
        lost.is_empty(),
        "{} lost: {:?}",
        lost.len(),
        &lost[..lost.len().min(3)]
    );
    assert!(acquires > 10, "only {acquires} acquires got through in 3 s");
}
