//! `redlease bench`: this library's own figures against the given servers, for sizing a
//! deployment (the comparison with other crates lives in the `redlease-bench` crate).

use std::process::ExitCode;
use std::time::{Duration, Instant};

use redlease::{Client, LockOptions, Retry};

use crate::cli::BenchArgs;
use crate::duration::{human, percentile};
use crate::exit::Failure;
use crate::settings::Servers;

pub(crate) async fn bench(servers: &Servers, args: BenchArgs) -> Result<ExitCode, Failure> {
    let client = servers.connect().await?;
    let name = format!("bench:{}", std::process::id());
    println!(
        "redlease bench against {} node(s), {} per measurement",
        servers.node_count(),
        human(args.duration)
    );

    let mut pairs = Vec::new();
    let started = Instant::now();
    while started.elapsed() < args.duration {
        let begun = Instant::now();
        let guard = client
            .try_acquire(&name, Duration::from_secs(10))
            .await
            .map_err(|e| Failure::from_lock_error(&e))?;
        guard
            .release()
            .await
            .map_err(|e| Failure::from_lock_error(&e))?;
        pairs.push(begun.elapsed());
    }
    pairs.sort();
    println!(
        "uncontended acquire + release: {:.0} pairs/s, p50 {} µs, p99 {} µs",
        per_second(pairs.len(), started.elapsed()),
        percentile(&pairs, 0.5).as_micros(),
        percentile(&pairs, 0.99).as_micros()
    );

    let (handoffs, waits) = contended(&client, &name, args.duration).await?;
    println!(
        "4 clients on one lock, 1 ms hold: {:.0} handoffs/s, wait p50 {} / p99 {}",
        per_second(handoffs, args.duration),
        human(percentile(&waits, 0.5)),
        human(percentile(&waits, 0.99))
    );
    Ok(ExitCode::SUCCESS)
}

/// Four tasks take turns on one lock, holding it 1 ms each time.
async fn contended(
    client: &Client,
    name: &str,
    duration: Duration,
) -> Result<(usize, Vec<Duration>), Failure> {
    let stop_at = Instant::now() + duration;
    let options = LockOptions::new(Duration::from_secs(10))
        .retry(Retry::fixed(Duration::from_secs(1)).timeout(duration * 2));
    let mut tasks = Vec::new();
    for _ in 0..4 {
        let (client, name, options) = (client.clone(), name.to_owned(), options.clone());
        tasks.push(tokio::spawn(async move {
            let mut waits = Vec::new();
            while Instant::now() < stop_at {
                let asked = Instant::now();
                let guard = client.acquire(&name, &options).await?;
                waits.push(asked.elapsed());
                tokio::time::sleep(Duration::from_millis(1)).await;
                guard.release().await?;
            }
            Ok::<_, redlease::Error>(waits)
        }));
    }
    let mut waits = Vec::new();
    for task in tasks {
        let finished = task.await.map_err(|e| Failure::internal(e.to_string()))?;
        waits.extend(finished.map_err(|e| Failure::from_lock_error(&e))?);
    }
    waits.sort();
    Ok((waits.len(), waits))
}

#[expect(clippy::cast_precision_loss, reason = "a rate for display")]
fn per_second(count: usize, elapsed: Duration) -> f64 {
    count as f64 / elapsed.as_secs_f64()
}
