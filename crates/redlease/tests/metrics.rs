//! The metrics (cargo feature `metrics`) move as locks are taken, waited for, renewed, lost
//! and released, against a real `redis-server`, read through a debugging recorder.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "test helpers fail the test on error"
)]

use std::collections::BTreeMap;
use std::sync::{Mutex, OnceLock, PoisonError};
use std::time::Duration;

use metrics_util::debugging::{DebugValue, DebuggingRecorder, Snapshotter};
use redlease::{Client, LockOptions, Lost, Retry};
use redlease_testkit::RedisServer;

/// A metric with its labels, sorted.
type Series = (String, Vec<(String, String)>);

/// Everything recorded so far in this test binary: a counter's total, a histogram's number of
/// samples. (A snapshot drains the recorder, so the tests, which run in parallel, share one
/// running total.)
fn recorded(metric: &str, labels: &[(&str, &str)]) -> u64 {
    static RECORDER: OnceLock<Snapshotter> = OnceLock::new();
    static TOTALS: Mutex<BTreeMap<Series, u64>> = Mutex::new(BTreeMap::new());
    let snapshotter = RECORDER.get_or_init(install);
    let mut totals = TOTALS.lock().unwrap_or_else(PoisonError::into_inner);
    for (key, _unit, _description, value) in snapshotter.snapshot().into_vec() {
        let (_kind, key) = key.into_parts();
        let mut series_labels: Vec<(String, String)> = key
            .labels()
            .map(|l| (l.key().to_owned(), l.value().to_owned()))
            .collect();
        series_labels.sort();
        let amount = match value {
            DebugValue::Counter(n) => n,
            DebugValue::Histogram(samples) => samples.len() as u64,
            DebugValue::Gauge(_) => continue,
        };
        *totals
            .entry((key.name().to_owned(), series_labels))
            .or_default() += amount;
    }
    let mut wanted: Vec<(String, String)> = labels
        .iter()
        .map(|&(k, v)| (k.to_owned(), v.to_owned()))
        .collect();
    wanted.sort();
    totals
        .get(&(metric.to_owned(), wanted))
        .copied()
        .unwrap_or(0)
}

fn install() -> Snapshotter {
    let recorder = DebuggingRecorder::new();
    let snapshotter = recorder.snapshotter();
    recorder
        .install()
        .expect("the only recorder of this binary");
    snapshotter
}

async fn client(server: &RedisServer, per_name: bool) -> Client {
    Client::builder()
        .url(server.url())
        .metrics_per_name(per_name)
        .build()
        .await
        .unwrap()
}

const SECOND: Duration = Duration::from_secs(1);

#[tokio::test]
async fn every_operation_moves_its_metrics_labelled_by_name_when_asked() {
    let server = RedisServer::start().unwrap();
    let client = client(&server, true).await;
    let name = [("name", "jobs")];
    let with = |label: (&'static str, &'static str)| [label, ("name", "jobs")];
    recorded("", &[]); // installs the recorder before anything is recorded

    let holder = client.try_acquire("jobs", 30 * SECOND).await.unwrap();
    assert_eq!(recorded("redlease_acquisitions_total", &name), 1);
    assert_eq!(
        recorded("redlease_acquire_seconds", &with(("result", "acquired"))),
        1
    );

    assert!(client.try_acquire("jobs", SECOND).await.is_err());
    assert_eq!(recorded("redlease_contended_attempts_total", &name), 1);
    assert_eq!(
        recorded("redlease_acquire_seconds", &with(("result", "contended"))),
        1
    );

    // A waiter that is handed the lock when the holder releases it.
    let waiter = {
        let client = client.clone();
        let options = LockOptions::new(SECOND)
            .auto_renew(true)
            .retry(Retry::fixed(60 * SECOND).timeout(60 * SECOND));
        tokio::spawn(async move { client.acquire("jobs", &options).await })
    };
    tokio::time::sleep(Duration::from_millis(300)).await;
    holder.release().await.unwrap();
    assert_eq!(
        recorded("redlease_releases_total", &with(("outcome", "released"))),
        1
    );
    let renewed = tokio::time::timeout(10 * SECOND, waiter)
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    assert_eq!(recorded("redlease_acquisitions_total", &name), 2);
    assert!(recorded("redlease_contended_attempts_total", &name) >= 2);
    assert_eq!(recorded("redlease_acquire_wait_seconds", &name), 1);

    // Renewal rounds (every third of the 1 s TTL) carry no name.
    tokio::time::sleep(SECOND).await;
    assert!(recorded("redlease_renewal_rounds_total", &[]) >= 2);
    assert!(recorded("redlease_renewal_round_seconds", &[]) >= 2);

    // The key vanishes: the next renewal finds it gone and the lease is lost.
    let mut raw = redis::Client::open(server.url())
        .unwrap()
        .get_multiplexed_async_connection()
        .await
        .unwrap();
    let _: () = redis::cmd("DEL")
        .arg("redlease:{jobs}")
        .query_async(&mut raw)
        .await
        .unwrap();
    let reason = tokio::time::timeout(5 * SECOND, renewed.lost())
        .await
        .unwrap();
    assert_eq!(reason, Lost::Expired);
    assert_eq!(
        recorded("redlease_leases_lost_total", &with(("reason", "expired"))),
        1
    );

    // A dropped guard is released in the background.
    drop(renewed);
    drop(client.try_acquire("jobs", SECOND).await.unwrap());
    assert_eq!(
        recorded(
            "redlease_releases_total",
            &with(("outcome", "in_background"))
        ),
        2
    );
}

#[tokio::test]
async fn without_the_option_metrics_have_no_name_label() {
    let server = RedisServer::start().unwrap();
    let client = client(&server, false).await;
    let before = recorded("redlease_acquisitions_total", &[]);
    let guard = client.try_acquire("unlabelled", SECOND).await.unwrap();
    guard.release().await.unwrap();
    assert_eq!(recorded("redlease_acquisitions_total", &[]), before + 1);
    assert_eq!(
        recorded("redlease_acquisitions_total", &[("name", "unlabelled")]),
        0
    );
}
