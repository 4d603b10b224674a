//! Fencing tokens against a store: the store refuses a write whose fence is not above the
//! largest it has accepted, so a holder that paused past its lease cannot overwrite the work
//! of the holder after it.
//!
//! The store here is a Redis hash written by a small script (any database with a conditional
//! write does the same: `UPDATE … WHERE fence < $1`). Holder A takes a short lease and pauses
//! longer than it; holder B takes the lock and writes; A wakes up and tries to write: refused.
//!
//! ```sh
//! REDLEASE_URL=redis://127.0.0.1:6379 cargo run -p redlease --example fencing
//! ```

use std::time::Duration;

use redlease::Client;
use redlease::redis::{self, AsyncCommands};

/// Writes `value` to the store's `key` if `fence` is above every fence it accepted before.
const FENCED_WRITE: &str = r"
local last = tonumber(redis.call('HGET', KEYS[1], 'fence') or '0')
if tonumber(ARGV[1]) <= last then return 0 end
redis.call('HSET', KEYS[1], 'fence', ARGV[1], 'value', ARGV[2])
return 1
";

async fn write(
    store: &mut redis::aio::MultiplexedConnection,
    fence: u64,
    value: &str,
) -> redis::RedisResult<bool> {
    redis::Script::new(FENCED_WRITE)
        .key("examples:fencing:store")
        .arg(fence)
        .arg(value)
        .invoke_async(store)
        .await
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let url = std::env::var("REDLEASE_URL").unwrap_or_else(|_| redlease::DEFAULT_URL.to_owned());
    let client = Client::connect(&url).await?;
    let mut store = redis::Client::open(url.as_str())?
        .get_multiplexed_async_connection()
        .await?;
    let _: () = store.del("examples:fencing:store").await?;

    let a = client
        .try_acquire("examples:fencing", Duration::from_millis(300))
        .await?;
    println!("A holds the lock with fence {}", a.fence());
    // A stalls (a GC pause, a stopped VM) for longer than its lease.
    tokio::time::sleep(Duration::from_millis(500)).await;
    println!("A wakes up; its guard says held = {}", a.is_held());

    let b = client
        .try_acquire("examples:fencing", Duration::from_secs(10))
        .await?;
    println!("B holds the lock with fence {}", b.fence());
    assert!(write(&mut store, b.fence(), "written by B").await?);
    println!("B's write (fence {}) accepted", b.fence());

    // A did not check is_held (or checked just before the pause): the store still saves us.
    let accepted = write(&mut store, a.fence(), "written by A").await?;
    println!(
        "A's late write (fence {}) {}",
        a.fence(),
        if accepted { "accepted" } else { "refused" }
    );
    assert!(!accepted, "the store must refuse a stale fence");
    let value: String = store.hget("examples:fencing:store", "value").await?;
    println!("the store holds: {value}");

    b.release().await?;
    drop(a); // its lease is long gone; dropping it touches nothing of B's
    Ok(())
}
