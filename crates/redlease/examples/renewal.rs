//! Work of unknown length under an auto-renewed lease, stopped as soon as the lease is lost.
//!
//! The lease (TTL 2 s) is renewed in the background while the work runs. After a while an
//! operator breaks the lock (`force_release`, as `redlease release --force` does); the next
//! renewal finds the key gone, `lost()` fires, and the work stops instead of running on
//! without the lock.
//!
//! ```sh
//! REDLEASE_URL=redis://127.0.0.1:6379 cargo run -p redlease --example renewal
//! ```

use std::time::{Duration, Instant};

use redlease::{Client, LockOptions};

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), redlease::Error> {
    let url = std::env::var("REDLEASE_URL").unwrap_or_else(|_| redlease::DEFAULT_URL.to_owned());
    let client = Client::connect(&url).await?;
    let options = LockOptions::new(Duration::from_secs(2)).auto_renew(true);
    let guard = client.acquire("examples:renewal", &options).await?;
    let started = Instant::now();
    println!(
        "acquired with fence {}; TTL 2 s, renewed every ~0.7 s",
        guard.fence()
    );

    // The operator, 3 s later: longer than one TTL, so only renewal kept the lease alive.
    let operator = client.clone();
    tokio::spawn(async move {
        tokio::time::sleep(Duration::from_secs(3)).await;
        let _ = operator.force_release("examples:renewal").await;
    });

    let lost = guard.lost();
    tokio::select! {
        reason = lost => {
            println!("lease lost after {:.1?} ({reason}); the work was stopped", started.elapsed());
        }
        () = work() => println!("the work finished while the lease was held"),
    }
    // Releasing a lost lease is harmless: it finds the key gone (or someone else's).
    println!("release: {:?}", guard.release().await?);
    Ok(())
}

/// Work that would take a minute, in steps.
async fn work() {
    for _step in 0..600 {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}
