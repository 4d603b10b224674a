//! The blocking API, for programs without an async runtime (`--features blocking`).
//!
//! Takes an auto-renewed lock, works in steps while checking the loss signal, then releases.
//!
//! ```sh
//! REDLEASE_URL=redis://127.0.0.1:6379 cargo run -p redlease --features blocking --example blocking
//! ```

use std::time::Duration;

use redlease::{LockOptions, Retry};

fn main() -> Result<(), redlease::Error> {
    let url = std::env::var("REDLEASE_URL").unwrap_or_else(|_| redlease::DEFAULT_URL.to_owned());
    let client = redlease::blocking::Client::connect(&url)?;
    let options = LockOptions::new(Duration::from_secs(1))
        .auto_renew(true)
        .retry(Retry::default().timeout(Duration::from_secs(5)));
    let guard = client.acquire("examples:blocking", &options)?;
    println!("acquired with fence {}", guard.fence());

    // Two seconds of work under a one-second lease: the client's runtime thread renews it
    // while this thread is busy.
    let lost = guard.lost();
    for step in 1..=4 {
        std::thread::sleep(Duration::from_millis(500));
        if let Ok(reason) = lost.try_recv() {
            println!("lease lost at step {step} ({reason}); stopping");
            return Ok(());
        }
        println!(
            "step {step} done with fence {}, lease still held: {}",
            guard.fence(),
            guard.is_held()
        );
    }
    println!("release: {:?}", guard.release()?);
    Ok(())
}
