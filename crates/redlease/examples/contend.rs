//! Two workers contend for one lock on a local Redis that this example starts itself.
//!
//! Run: `cargo run -p redlease --example contend` (needs `redis-server` on PATH).
//!
//! It shows, in about five seconds:
//! 1. handoffs between two workers, each lease with a larger fencing token;
//! 2. a worker that stalls past its lease: the next holder gets in, and the stalled worker's
//!    late write is refused by a resource that checks fencing tokens;
//! 3. the stalled worker's release leaving the new holder's key alone.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use redlease::{Client, Error, LockOptions, ReleaseOutcome, Retry};

/// A resource that accepts a write only if its fencing token is above every token seen so far.
#[derive(Default)]
struct FencedStore {
    highest_fence: u64,
    accepted: u64,
    rejected: u64,
}

impl FencedStore {
    fn write(&mut self, fence: u64) -> bool {
        if fence > self.highest_fence {
            self.highest_fence = fence;
            self.accepted += 1;
            true
        } else {
            self.rejected += 1;
            false
        }
    }
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let server = redlease_testkit::RedisServer::start()?;
    println!("started redis-server on {}", server.url());
    let store = Arc::new(Mutex::new(FencedStore::default()));
    let started = Instant::now();

    println!("\n1. two workers take turns on the lock \"demo:report\"");
    let mut workers = Vec::new();
    for worker in ["alice", "bob"] {
        // One client each, as if they were two processes on two machines.
        let client = Client::connect(&server.url()).await?;
        let store = store.clone();
        workers.push(tokio::spawn(async move {
            let options = LockOptions::new(Duration::from_secs(2)).retry(Retry::exponential(
                Duration::from_millis(2),
                Duration::from_millis(20),
            ));
            for _ in 0..4 {
                let guard = client.acquire("demo:report", &options).await?;
                let accepted = store.lock().is_ok_and(|mut s| s.write(guard.fence()));
                println!(
                    "  {:>6.3}s {worker:>5} holds it, fence {} (write {})",
                    started.elapsed().as_secs_f64(),
                    guard.fence(),
                    if accepted { "accepted" } else { "REJECTED" }
                );
                tokio::time::sleep(Duration::from_millis(150)).await;
                guard.release().await?;
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            Ok::<_, Error>(())
        }));
    }
    for worker in workers {
        worker.await??;
    }

    println!("\n2. carol stalls for longer than her 300 ms lease");
    let client = Client::connect(&server.url()).await?;
    let carol = client
        .try_acquire("demo:report", Duration::from_millis(300))
        .await?;
    println!(
        "  carol holds it, fence {}, trusted for {:?}",
        carol.fence(),
        carol.remaining()
    );
    tokio::time::sleep(Duration::from_millis(500)).await; // a GC pause, a stopped VM...
    println!("  carol wakes up: is_held() = {}", carol.is_held());
    let dave = client
        .try_acquire("demo:report", Duration::from_secs(5))
        .await?;
    let dave_accepted = store.lock().is_ok_and(|mut s| s.write(dave.fence()));
    println!(
        "  dave took it meanwhile, fence {} (write accepted: {dave_accepted})",
        dave.fence()
    );
    let carol_accepted = store.lock().is_ok_and(|mut s| s.write(carol.fence()));
    println!(
        "  carol writes anyway with fence {}: {}",
        carol.fence(),
        if carol_accepted {
            "ACCEPTED (bug!)"
        } else {
            "rejected by fencing"
        }
    );

    println!("\n3. carol releases late");
    let outcome = carol.release().await?;
    println!("  carol's release: {outcome:?} (dave's key is untouched)");
    assert_eq!(outcome, ReleaseOutcome::HeldByOther);
    assert_eq!(dave.release().await?, ReleaseOutcome::Released);

    let store = store.lock().map_err(|_| "store lock poisoned")?;
    println!(
        "\nwrites accepted: {}, rejected by fencing: {}; done in {:.1}s",
        store.accepted,
        store.rejected,
        started.elapsed().as_secs_f64()
    );
    if carol_accepted || store.rejected != 1 {
        return Err("fencing did not behave as expected".into());
    }
    Ok(())
}
