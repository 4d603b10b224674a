//! Automatic renewal and the loss signal on a channel.

use std::time::{Duration, Instant};

use redis::Commands;
use redlease::{LockOptions, Lost, ReleaseOutcome, Retry};

use crate::{SECOND, get, ms, raw, setup};

fn renewing(ttl: Duration) -> LockOptions {
    LockOptions::new(ttl).auto_renew(true).retry(Retry::none())
}

#[test]
fn a_renewed_lease_outlives_five_ttls_while_the_caller_thread_is_busy() {
    let (server, client) = setup();
    let renewed = client.acquire("kept", &renewing(ms(300))).unwrap();
    let plain = client.try_acquire("not-kept", ms(300)).unwrap();
    // The caller's thread never yields to redlease: the runtime thread renews.
    std::thread::sleep(ms(1_500));
    assert!(renewed.is_held(), "lost: {:?}", renewed.lost_reason());
    assert_eq!(
        get(&server, "redlease:{kept}").as_deref(),
        Some(renewed.token().expose())
    );
    assert!(!plain.is_held());
    assert_eq!(plain.lost().recv_timeout(SECOND), Ok(Lost::Expired));
    assert_eq!(get(&server, "redlease:{not-kept}"), None);
    assert_eq!(renewed.fence(), 1, "renewal does not take new fences");
    assert_eq!(renewed.release().unwrap(), ReleaseOutcome::Released);
}

/// A key deleted behind the holder's back is reported on the channel by the next renewal,
/// long before the TTL, and the cancellation token fires with it.
#[test]
fn a_deleted_key_is_reported_on_the_lost_channel_within_a_renewal_interval() {
    let (server, client) = setup();
    let guard = client.acquire("victim", &renewing(3 * SECOND)).unwrap();
    let lost = guard.lost();
    let cancelled = guard.cancellation();
    assert_eq!(lost.try_recv(), Err(std::sync::mpsc::TryRecvError::Empty));
    let _: () = raw(&server).del("redlease:{victim}").unwrap();
    let hit = Instant::now();
    let reason = lost
        .recv_timeout(5 * SECOND)
        .expect("lost must be signalled");
    let delay = hit.elapsed();
    assert_eq!(reason, Lost::Expired);
    assert!(
        delay < 2 * SECOND,
        "noticed after {delay:?}; the TTL is 3 s"
    );
    assert!(!guard.is_held());
    assert_eq!(guard.lost_reason(), Some(Lost::Expired));
    assert!(cancelled.is_cancelled());
    assert_eq!(
        guard.lost().recv_timeout(SECOND),
        Ok(Lost::Expired),
        "a late receiver hears it too"
    );
}

#[test]
fn an_overwritten_key_is_reported_as_held_by_another() {
    let (server, client) = setup();
    let guard = client.acquire("taken", &renewing(3 * SECOND)).unwrap();
    let lost = guard.lost();
    let _: () = raw(&server).set("redlease:{taken}", "intruder").unwrap();
    assert_eq!(lost.recv_timeout(3 * SECOND), Ok(Lost::HeldByOther));
    assert_eq!(guard.release().unwrap(), ReleaseOutcome::HeldByOther);
    assert_eq!(
        get(&server, "redlease:{taken}").as_deref(),
        Some("intruder")
    );
}

#[test]
fn the_hold_cap_ends_the_lease_and_says_so() {
    let (server, client) = setup();
    let started = Instant::now();
    let guard = client
        .acquire("capped", &renewing(ms(300)).max_hold(ms(800)))
        .unwrap();
    let reason = guard
        .lost()
        .recv_timeout(3 * SECOND)
        .expect("lost must be signalled");
    let held = started.elapsed();
    assert_eq!(reason, Lost::HoldCapReached);
    assert!(
        held >= ms(600) && held <= ms(1_000),
        "held for {held:?} with an 800 ms cap"
    );
    std::thread::sleep(ms(100));
    assert_eq!(
        get(&server, "redlease:{capped}"),
        None,
        "the key ends with the cap"
    );
}

#[test]
fn a_paused_server_makes_the_lease_lost_by_its_deadline() {
    let (mut server, client) = setup();
    let guard = client.acquire("frozen", &renewing(ms(600))).unwrap();
    server.pause().unwrap();
    let reason = guard
        .lost()
        .recv_timeout(3 * SECOND)
        .expect("lost must be signalled");
    let late = Instant::now().saturating_duration_since(guard.valid_until());
    assert_eq!(reason, Lost::Unreachable);
    assert!(late < ms(100), "lost fired {late:?} after the deadline");
    server.resume().unwrap();
}
