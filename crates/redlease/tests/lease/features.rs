//! A setting that needs a cargo feature this build lacks is refused by `build()` with an error
//! naming the feature (these tests run in builds without the feature, e.g.
//! `cargo test -p redlease --no-default-features`).

#![cfg(not(all(
    feature = "tls",
    feature = "cluster",
    feature = "sentinel",
    feature = "metrics"
)))]

use redlease::{Client, ClientBuilder, ConfigError};

use crate::config_error;

/// The feature and the description `builder` is refused with.
async fn refused(builder: ClientBuilder) -> (&'static str, &'static str) {
    match config_error(builder.build().await) {
        ConfigError::FeatureDisabled {
            feature,
            needed_for,
        } => (feature, needed_for),
        other => panic!("expected FeatureDisabled, got {other:?}"),
    }
}

#[cfg(not(feature = "tls"))]
#[tokio::test]
async fn tls_is_refused_without_the_tls_feature() {
    let url = Client::builder().url("rediss://127.0.0.1:1");
    assert_eq!(refused(url).await, ("tls", "a rediss:// URL"));
    let setting = Client::builder()
        .url("redis://127.0.0.1:1")
        .tls_root_ca(b"-----BEGIN CERTIFICATE-----".to_vec());
    let (feature, _) = refused(setting).await;
    assert_eq!(feature, "tls");
    let err = Client::connect("rediss://127.0.0.1:1").await.unwrap_err();
    assert!(err.to_string().contains("feature `tls`"), "{err}");
}

#[cfg(not(feature = "cluster"))]
#[tokio::test]
async fn a_cluster_is_refused_without_the_cluster_feature() {
    let cluster = Client::builder().cluster(["redis://127.0.0.1:1"]);
    assert_eq!(refused(cluster).await.0, "cluster");
}

#[cfg(not(feature = "sentinel"))]
#[tokio::test]
async fn a_sentinel_service_is_refused_without_the_sentinel_feature() {
    let sentinel = Client::builder().sentinel(["redis://127.0.0.1:1"], "primary");
    assert_eq!(refused(sentinel).await.0, "sentinel");
}

#[cfg(not(feature = "metrics"))]
#[tokio::test]
async fn per_name_metrics_are_refused_without_the_metrics_feature() {
    let per_name = Client::builder()
        .url("redis://127.0.0.1:1")
        .metrics_per_name(true);
    assert_eq!(refused(per_name).await.0, "metrics");
    // Off is what a build without metrics has anyway: accepted (and then fails to connect to
    // the closed port, which is a backend error, not a configuration one).
    let off = Client::builder()
        .url("redis://127.0.0.1:1")
        .metrics_per_name(false)
        .build()
        .await;
    assert!(
        !matches!(off, Err(redlease::Error::InvalidConfig(_))),
        "{off:?}"
    );
}
