//! The eviction check: a server that may evict keys under memory pressure (and so end a lease
//! early) gets a warning by default, or is refused.

use std::fmt::Write as _;
use std::sync::{Arc, Mutex, PoisonError};

use redlease::{Client, ConfigError, Error, EvictionCheck};
use redlease_testkit::RedisServer;
use tracing::field::{Field, Visit};
use tracing::span::{Attributes, Id, Record};
use tracing::{Event, Level, Metadata, Subscriber};

use crate::acl::{MINIMAL_ACL, create_user};

/// Collects the warnings logged on this thread while it is the default subscriber.
#[derive(Clone, Default)]
struct Warnings(Arc<Mutex<Vec<String>>>);

impl Warnings {
    fn taken(&self) -> Vec<String> {
        std::mem::take(&mut *self.0.lock().unwrap_or_else(PoisonError::into_inner))
    }
}

struct Fields(String);

impl Visit for Fields {
    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        let _ = write!(self.0, "{}={value:?} ", field.name());
    }
}

impl Subscriber for Warnings {
    fn enabled(&self, metadata: &Metadata<'_>) -> bool {
        *metadata.level() <= Level::WARN
    }
    fn new_span(&self, _: &Attributes<'_>) -> Id {
        Id::from_u64(1)
    }
    fn record(&self, _: &Id, _: &Record<'_>) {}
    fn record_follows_from(&self, _: &Id, _: &Id) {}
    fn event(&self, event: &Event<'_>) {
        let mut fields = Fields(String::new());
        event.record(&mut fields);
        self.0
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .push(fields.0);
    }
    fn enter(&self, _: &Id) {}
    fn exit(&self, _: &Id) {}
}

async fn build(url: &str, check: EvictionCheck) -> Result<Client, Error> {
    Client::builder()
        .url(url)
        .eviction_check(check)
        .build()
        .await
}

fn server(policy: &str, maxmemory: &str) -> RedisServer {
    RedisServer::builder()
        .arg("--maxmemory")
        .arg(maxmemory)
        .arg("--maxmemory-policy")
        .arg(policy)
        .start()
        .unwrap()
}

// The tests run on a current-thread runtime, so the client's warnings are logged on the
// test's thread, where the capturing subscriber is the default.

#[tokio::test]
async fn an_evicting_policy_is_warned_about_by_default_and_refused_on_request() {
    let warnings = Warnings::default();
    let _default = tracing::subscriber::set_default(warnings.clone());
    let server = server("allkeys-lru", "100mb");

    let client = Client::connect(&server.url()).await.unwrap();
    let logged = warnings.taken();
    assert_eq!(logged.len(), 1, "{logged:?}");
    assert!(logged[0].contains("allkeys-lru"), "{logged:?}");
    assert!(
        logged[0].contains(&format!("127.0.0.1:{}", server.port())),
        "{logged:?}"
    );
    drop(client);

    match build(&server.url(), EvictionCheck::Refuse).await {
        Err(Error::InvalidConfig(ConfigError::EvictingPolicy { node, policy })) => {
            assert_eq!(policy, "allkeys-lru");
            assert_eq!(node, format!("127.0.0.1:{}", server.port()));
        }
        other => panic!("expected EvictingPolicy, got {other:?}"),
    }

    build(&server.url(), EvictionCheck::Off).await.unwrap();
    assert!(warnings.taken().is_empty());
}

#[tokio::test]
async fn servers_that_cannot_evict_lock_keys_pass_silently() {
    let warnings = Warnings::default();
    let _default = tracing::subscriber::set_default(warnings.clone());
    for server in [
        RedisServer::start().unwrap(), // the default: noeviction, no limit
        server("noeviction", "100mb"), // limited, but never evicts
        server("volatile-lru", "0"),   // may evict, but has no limit to reach
    ] {
        build(&server.url(), EvictionCheck::Refuse).await.unwrap();
    }
    assert!(warnings.taken().is_empty());
}

#[tokio::test]
async fn a_policy_that_cannot_be_read_is_warned_about_or_refused() {
    let warnings = Warnings::default();
    let _default = tracing::subscriber::set_default(warnings.clone());
    let server = RedisServer::start().unwrap();
    let no_info = MINIMAL_ACL.replace(" +info", "");
    create_user(&server.url(), "quiet", "quiet-pw", &no_info).await;
    let url = format!("redis://quiet:quiet-pw@127.0.0.1:{}", server.port());

    build(&url, EvictionCheck::Warn).await.unwrap();
    let logged = warnings.taken();
    assert!(
        logged.len() == 1 && logged[0].contains("NOPERM"),
        "{logged:?}"
    );
    assert!(!logged[0].contains("quiet-pw"));
    match build(&url, EvictionCheck::Refuse).await {
        Err(Error::InvalidConfig(ConfigError::EvictionPolicyUnknown { node, .. })) => {
            assert_eq!(node, format!("127.0.0.1:{}", server.port()));
        }
        other => panic!("expected EvictionPolicyUnknown, got {other:?}"),
    }
}
