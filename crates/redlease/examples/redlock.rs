//! Redlock: one lock over three independent Redis servers, granted by a majority.
//!
//! ```sh
//! REDLEASE_URLS=redis://127.0.0.1:6379,redis://127.0.0.1:6380,redis://127.0.0.1:6381 \
//!     cargo run -p redlease --example redlock
//! ```
//!
//! The servers must be independent masters (not replicas of each other); use 3 or 5.

use std::time::Duration;

use redlease::{Client, LockOptions};

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), redlease::Error> {
    let urls = std::env::var("REDLEASE_URLS").unwrap_or_else(|_| {
        "redis://127.0.0.1:6379,redis://127.0.0.1:6380,redis://127.0.0.1:6381".to_owned()
    });
    let client = urls
        .split(',')
        .fold(Client::builder(), |builder, url| builder.url(url.trim()))
        .command_timeout(Duration::from_millis(200))
        .build()
        .await?;
    println!("connected to {client:?}");

    let options = LockOptions::new(Duration::from_secs(10)).auto_renew(true);
    let guard = client.acquire("examples:redlock", &options).await?;
    // The fence is reconciled across the nodes: larger than any fence a majority saw before.
    println!(
        "acquired on a majority with fence {}, valid for {:?}",
        guard.fence(),
        guard.remaining()
    );
    println!("release: {:?}", guard.release().await?);
    Ok(())
}
