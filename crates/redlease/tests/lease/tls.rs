//! TLS (`rediss://`): the server's certificate is verified (against a CA given to the client),
//! client certificates are presented when required, and bad settings are refused up front.

use redlease::{Client, ConfigError, Error, LockOptions, Retry};
use redlease_testkit::{RedisServer, TlsCerts};

use crate::acl::{MINIMAL_ACL, create_user};
use crate::{SECOND, ms};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_the_servers_ca_leases_work_over_tls_and_without_it_connecting_fails_clearly() {
    let certs = TlsCerts::generate().unwrap();
    let server = RedisServer::builder().tls(&certs).start().unwrap();
    let url = server.tls_url().unwrap();

    let client = Client::builder()
        .url(&url)
        .tls_root_ca(certs.ca_pem.clone())
        .build()
        .await
        .unwrap();
    let holder = client.try_acquire("secure", 10 * SECOND).await.unwrap();
    // The subscriber connects over TLS too: a release wakes the waiter.
    let waiter = {
        let client = client.clone();
        let slow =
            LockOptions::new(5 * SECOND).retry(Retry::fixed(5 * SECOND).timeout(20 * SECOND));
        tokio::spawn(async move { client.acquire("secure", &slow).await })
    };
    tokio::time::sleep(ms(200)).await;
    let released = std::time::Instant::now();
    holder.release().await.unwrap();
    let next = tokio::time::timeout(10 * SECOND, waiter)
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    assert!(released.elapsed() < 2 * SECOND);
    next.release().await.unwrap();

    // Without the CA the certificate cannot be verified: a connection error that says so.
    let err = Client::builder()
        .url(&url)
        .connect_timeout(SECOND)
        .build()
        .await
        .unwrap_err();
    assert!(err.is_connection(), "{err:?}");
    let shown = err.to_string();
    assert!(shown.contains("certificate"), "{shown}");

    // A certificate from another CA is not trusted either.
    let other = TlsCerts::generate().unwrap();
    let err = Client::builder()
        .url(&url)
        .tls_root_ca(other.ca_pem)
        .connect_timeout(SECOND)
        .build()
        .await
        .unwrap_err();
    assert!(err.to_string().contains("certificate"), "{err}");
}

#[tokio::test]
async fn a_required_client_certificate_is_presented_and_an_acl_user_works_over_tls() {
    let certs = TlsCerts::generate().unwrap();
    let server = RedisServer::builder()
        .tls(&certs)
        .arg("--tls-auth-clients")
        .arg("yes")
        .start()
        .unwrap();
    create_user(&server.url(), "locker", "locker-pw", MINIMAL_ACL).await;
    let port = server.tls_port().unwrap();
    let url = format!("rediss://locker:locker-pw@127.0.0.1:{port}");

    let err = Client::builder()
        .url(&url)
        .tls_root_ca(certs.ca_pem.clone())
        .connect_timeout(SECOND)
        .build()
        .await
        .unwrap_err();
    assert!(err.is_backend(), "{err:?}");
    assert!(!format!("{err} {err:?}").contains("locker-pw"));

    let client = Client::builder()
        .url(&url)
        .tls_root_ca(certs.ca_pem.clone())
        .tls_client_cert(certs.client_cert_pem.clone(), certs.client_key_pem.clone())
        .build()
        .await
        .unwrap();
    let shown = format!("{client:?}");
    assert!(
        !shown.contains("locker-pw") && !shown.contains("PRIVATE KEY"),
        "{shown}"
    );
    client
        .try_acquire("mutual", SECOND)
        .await
        .unwrap()
        .release()
        .await
        .unwrap();
}

#[tokio::test]
async fn tls_settings_are_checked_before_connecting() {
    let certs = TlsCerts::generate().unwrap();
    // TLS material for a plain-text URL: refused rather than silently unencrypted.
    let err = Client::builder()
        .url("redis://127.0.0.1:1")
        .tls_root_ca(certs.ca_pem.clone())
        .build()
        .await
        .unwrap_err();
    assert!(
        matches!(err, Error::InvalidConfig(ConfigError::TlsWithoutRediss)),
        "{err:?}"
    );
    let err = Client::builder()
        .url("rediss://127.0.0.1:1")
        .tls_root_ca("not a certificate")
        .build()
        .await
        .unwrap_err();
    assert!(
        matches!(err, Error::InvalidConfig(ConfigError::InvalidTls { .. })),
        "{err:?}"
    );
    let err = Client::builder()
        .url("rediss://127.0.0.1:1")
        .tls_client_cert(certs.client_cert_pem.clone(), "secret garbage")
        .build()
        .await
        .unwrap_err();
    let shown = format!("{err} {err:?}");
    assert!(
        matches!(err, Error::InvalidConfig(ConfigError::InvalidTls { .. })),
        "{shown}"
    );
    assert!(!shown.contains("secret garbage"), "{shown}");
    // Disabling verification is not possible: the `redis` crate's `#insecure` marker fails.
    let err = Client::builder()
        .url("rediss://127.0.0.1:1/#insecure")
        .build()
        .await
        .unwrap_err();
    assert!(
        matches!(err, Error::InvalidConfig(_)) || err.is_backend(),
        "{err:?}"
    );
}
