//! The hand-off of a released lock to the oldest listed waiter, when a waiter is dead, hung,
//! dropped at the moment it is handed the lock, or its server restarts.

use std::time::{Duration, Instant};

use redis::AsyncCommands;
use redlease::{Client, Error, Guard, LockOptions, Retry};
use redlease_testkit::RedisServer;

use crate::{SECOND, ms, raw, released_to, setup, waiting};

/// How long a release keeps the lock for the waiter it handed it to (`CLAIM_TTL`).
const CLAIM: Duration = Duration::from_millis(500);

/// A waiter whose only fallback is far longer than the test, so that only a hand-off wakes it
/// in time; it refreshes its entry every second.
fn patient() -> LockOptions {
    LockOptions::new(30 * SECOND).retry(Retry::fixed(60 * SECOND).timeout(120 * SECOND))
}

/// A plain (not fair) waiter entry for `token` whose wake-ups go to `channel`.
fn entry(token: char, channel: &str) -> String {
    format!("{}n{channel}", token.to_string().repeat(32))
}

/// Starts a waiter on `name` in its own client and returns once it is listed `at` position
/// (1-based) among the waiters.
async fn listed_waiter(
    server: &RedisServer,
    name: &str,
    options: LockOptions,
    at: u64,
) -> tokio::task::JoinHandle<Result<Guard, Error>> {
    let client = Client::connect(&server.url()).await.unwrap();
    let name_owned = name.to_owned();
    let waiter = tokio::spawn(async move { client.acquire(&name_owned, &options).await });
    let key = format!("redlease:{{{name}}}:waiters");
    let deadline = Instant::now() + 5 * SECOND;
    while waiting(server, &key).await < at {
        assert!(Instant::now() < deadline, "the waiter never listed itself");
        tokio::time::sleep(ms(5)).await;
    }
    waiter
}

#[tokio::test]
async fn a_release_skips_a_waiter_whose_process_died() {
    let (server, client) = setup().await;
    let holder = client.try_acquire("skip", 30 * SECOND).await.unwrap();
    // Listed first, then its process died: nothing listens on its wake channel any more.
    let _: () = raw(&server)
        .await
        .rpush("redlease:{skip}:waiters", entry('d', "redlease:wake:gone"))
        .await
        .unwrap();
    let waiter = listed_waiter(&server, "skip", patient(), 2).await;
    let (guard, took) = released_to(holder, waiter).await;
    // Handed to the dead waiter, the lock would have stayed claimed for CLAIM, and the live
    // waiter would have come back only at its refresh a second later.
    assert!(took < CLAIM, "took {took:?}");
    guard.release().await.unwrap();
    assert_eq!(waiting(&server, "redlease:{skip}:waiters").await, 0);
}

#[tokio::test]
async fn a_hung_waiter_holds_the_lock_up_for_its_claim_and_one_refresh_at_most() {
    let (server, client) = setup().await;
    let holder = client.try_acquire("hung", 30 * SECOND).await.unwrap();
    // A waiter whose process hangs: its client still listens, but it never confirms.
    let mut hung = redis::Client::open(server.url())
        .unwrap()
        .get_async_pubsub()
        .await
        .unwrap();
    hung.subscribe("redlease:wake:hung").await.unwrap();
    let _: () = raw(&server)
        .await
        .rpush("redlease:{hung}:waiters", entry('h', "redlease:wake:hung"))
        .await
        .unwrap();
    let waiter = listed_waiter(&server, "hung", patient(), 2).await;
    let (guard, took) = released_to(holder, waiter).await;
    assert!(
        took >= ms(400),
        "the hung waiter's claim was cut short: {took:?}"
    );
    // The claim, then the live waiter's next refresh (every second for a 30 s lease).
    assert!(took < CLAIM + 2 * SECOND, "took {took:?}");
    guard.release().await.unwrap();
}

#[tokio::test]
async fn a_waiter_dropped_as_it_is_handed_the_lock_hands_it_on() {
    let (server, client) = setup().await;
    for round in 0..20_u64 {
        let name = format!("drop-{round}");
        let holder = client.try_acquire(&name, 30 * SECOND).await.unwrap();
        let first = listed_waiter(&server, &name, patient(), 1).await;
        let second = listed_waiter(&server, &name, patient(), 2).await;
        // Drop the first waiter around the moment the release hands it the lock: before,
        // during or after its wake-up. Whichever, the second gets the lock at once: the first
        // leaves the waiters, handing on a lock it was handed and had not taken.
        let abort_after = Duration::from_micros(round * 100);
        let dropper = tokio::spawn(async move {
            tokio::time::sleep(abort_after).await;
            first.abort();
            first.await
        });
        let (guard, took) = match tokio::time::timeout(3 * SECOND, async {
            let released = Instant::now();
            holder.release().await.unwrap();
            let taken = dropper.await.unwrap();
            (taken, released)
        })
        .await
        .unwrap()
        {
            // The first waiter got the lock before the abort landed: its guard goes, and the
            // second gets it from that release.
            (Ok(Ok(first_guard)), released) => {
                first_guard.release().await.unwrap();
                let guard = second.await.unwrap().unwrap();
                (guard, released.elapsed())
            }
            (_, released) => {
                let guard = tokio::time::timeout(5 * SECOND, second)
                    .await
                    .expect("the second waiter got the lock")
                    .unwrap()
                    .unwrap();
                (guard, released.elapsed())
            }
        };
        assert!(
            took < CLAIM,
            "round {round}: the second waiter took {took:?}"
        );
        guard.release().await.unwrap();
    }
}

#[tokio::test]
async fn waiting_goes_on_across_a_server_restart() {
    let mut server = RedisServer::builder().persistence(true).start().unwrap();
    let client = Client::connect(&server.url()).await.unwrap();
    let holder = client.try_acquire("restart", 30 * SECOND).await.unwrap();
    let waiter = listed_waiter(
        &server,
        "restart",
        LockOptions::new(30 * SECOND)
            .retry(Retry::exponential(ms(10), ms(200)).timeout(60 * SECOND)),
        1,
    )
    .await;
    server.restart().unwrap();
    // The lock (persisted) is still held: the waiter must not get it now.
    tokio::time::sleep(ms(500)).await;
    assert!(
        !waiter.is_finished(),
        "a waiter got a lock that was still held"
    );
    // The restart broke the holder's connection: the release's first send fails, and it is
    // sent once more on the reconnected one.
    let (guard, took) = released_to(holder, waiter).await;
    assert!(took < 3 * SECOND, "took {took:?}");
    guard.release().await.unwrap();
}

#[tokio::test]
async fn a_handed_lock_extended_at_once_gets_the_full_ttl() {
    let (server, client) = setup().await;
    for round in 0..10 {
        let name = format!("extend-{round}");
        let holder = client.try_acquire(&name, 30 * SECOND).await.unwrap();
        let waiter = listed_waiter(&server, &name, patient(), 1).await;
        let (mut guard, _) = released_to(holder, waiter).await;
        // The confirmation of the hand-off runs in the background and may answer before or
        // after this extension; either way the lease has its full TTL.
        guard.extend(30 * SECOND).await.unwrap();
        assert!(guard.remaining() > 29 * SECOND, "{:?}", guard.remaining());
        let mut conn = raw(&server).await;
        let pttl: i64 = redis::cmd("PTTL")
            .arg(format!("redlease:{{{name}}}"))
            .query_async(&mut conn)
            .await
            .unwrap();
        assert!(pttl > 29_000, "round {round}: {pttl} ms left on the server");
        guard.release().await.unwrap();
    }
}
