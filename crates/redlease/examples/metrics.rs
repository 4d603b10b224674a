//! redlease's metrics exported for Prometheus (cargo feature `metrics`).
//!
//! Installs `metrics-exporter-prometheus` as the process's recorder, contends for a lock,
//! waits for it, keeps a lease renewed for a second, and prints the scrape text a Prometheus
//! server would read (a service would serve it over HTTP, e.g. with the exporter's
//! `http-listener` feature, instead of printing it). The client labels metrics with the lock
//! name (`metrics_per_name`): right for this one fixed name, wrong for names made per user or
//! per job, which would make a time series each.
//!
//! ```sh
//! REDLEASE_URL=redis://127.0.0.1:6379 cargo run -p redlease --features metrics --example metrics
//! ```

use std::time::Duration;

use metrics_exporter_prometheus::PrometheusBuilder;
use redlease::{Client, LockOptions, Retry};

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    // The recorder first: what is recorded before it is installed is not seen.
    let prometheus = PrometheusBuilder::new().install_recorder()?;

    let url = std::env::var("REDLEASE_URL").unwrap_or_else(|_| redlease::DEFAULT_URL.to_owned());
    let client = Client::builder()
        .url(url)
        .metrics_per_name(true)
        .build()
        .await?;
    let name = "examples:metrics";

    let holder = client.try_acquire(name, Duration::from_secs(10)).await?;
    // A second try is refused (contended), and a waiter gets the lock when it is released.
    assert!(
        client
            .try_acquire(name, Duration::from_secs(10))
            .await
            .is_err()
    );
    let waiter = {
        let client = client.clone();
        let options = LockOptions::new(Duration::from_millis(600))
            .auto_renew(true)
            .retry(Retry::default().timeout(Duration::from_secs(5)));
        tokio::spawn(async move { client.acquire(name, &options).await })
    };
    tokio::time::sleep(Duration::from_millis(200)).await;
    holder.release().await?;
    let renewed = waiter.await??;
    // Renewed every 200 ms meanwhile.
    tokio::time::sleep(Duration::from_secs(1)).await;
    renewed.release().await?;

    print!("{}", prometheus.render());
    Ok(())
}
