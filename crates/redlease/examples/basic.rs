//! Take a lock, see that nobody else can, hand its fence to the work, release it.
//!
//! ```sh
//! REDLEASE_URL=redis://127.0.0.1:6379 cargo run -p redlease --example basic
//! ```

use std::time::Duration;

use redlease::{Client, LockOptions, ReleaseOutcome, Retry};

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), redlease::Error> {
    let url = std::env::var("REDLEASE_URL").unwrap_or_else(|_| redlease::DEFAULT_URL.to_owned());
    let client = Client::connect(&url).await?;

    // Wait up to 5 s for the lock, then hold it for at most 10 s.
    let options = LockOptions::new(Duration::from_secs(10))
        .retry(Retry::default().timeout(Duration::from_secs(5)));
    let guard = client.acquire("examples:basic", &options).await?;
    println!("acquired examples:basic with fence {}", guard.fence());

    // Another attempt (here from the same client; usually another process) is refused.
    match client
        .try_acquire("examples:basic", Duration::from_secs(10))
        .await
    {
        Err(refused @ redlease::Error::Contended { .. }) => {
            println!("a second holder is refused: {refused}");
        }
        other => panic!("the lock was not exclusive: {other:?}"),
    }

    // The protected work: pass the fence to whatever you write to.
    println!(
        "working with fence {} for {:?} at most",
        guard.fence(),
        guard.remaining()
    );

    match guard.release().await? {
        ReleaseOutcome::Released => println!("released"),
        other => println!("the lease ended before the work did: {other:?}"),
    }
    Ok(())
}
