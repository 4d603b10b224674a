//! Building the engine from a builder's settings: opening each source (a URL, a Cluster, a
//! Sentinel service, a caller's connection), refusing a server listed twice, loading the
//! scripts, and checking eviction policies.

use std::sync::LazyLock;
use std::time::Duration;

use redis::aio::{ConnectionManager, ConnectionManagerConfig};
#[cfg(feature = "cluster")]
use redis::cluster::ClusterClientBuilder;

use super::builder::EvictionCheck;
use crate::backend::{Backend, Deployment, Eviction, Replicas};
#[cfg(feature = "cluster")]
use crate::conn::bounded;
#[cfg(feature = "sentinel")]
use crate::conn::sentinel::{PrimarySettings, SentinelConnection};
use crate::conn::tls::{Certificates, TlsSettings};
#[cfg(feature = "sentinel")]
use crate::conn::url::redact_url;
use crate::conn::url::{Address, is_tls_url, malformed};
use crate::conn::{Connection, PubSubSource};
use crate::engine::Engine;
use crate::error::{BackendError, BackendErrorKind, ConfigError, Error};
use crate::quorum::Quorum;
use crate::script::Script;
use crate::subscribe::Subscriber;
use crate::timing::Drift;

/// Where one backend is.
pub(crate) enum Source {
    Url(String),
    /// A caller's connection, and where a pub/sub connection to its server can be opened.
    Connection {
        label: String,
        deployment: Deployment,
        pubsub: Option<PubSubSource>,
    },
    #[cfg(feature = "cluster")]
    Cluster(Vec<String>),
    #[cfg(feature = "sentinel")]
    Sentinel {
        urls: Vec<String>,
        service: String,
    },
}

/// A builder's settings, validated.
pub(crate) struct Settings {
    pub(crate) sources: Vec<Source>,
    pub(crate) prefix: String,
    pub(crate) drift: Drift,
    pub(crate) connect_timeout: Duration,
    pub(crate) command_timeout: Duration,
    pub(crate) tls: TlsSettings,
    pub(crate) replicas: Option<Replicas>,
    pub(crate) eviction_check: EvictionCheck,
    #[cfg_attr(
        not(feature = "sentinel"),
        expect(
            dead_code,
            reason = "only a Sentinel primary is authenticated this way"
        )
    )]
    pub(crate) primary_auth: Option<(String, String)>,
    pub(crate) metrics_per_name: bool,
}

/// One opened source: its backend, where it points (for duplicates), and where a pub/sub
/// connection can be opened.
struct Opened {
    label: String,
    deployment: Deployment,
    address: Option<Address>,
    pubsub: Vec<PubSubSource>,
}

/// Connects to every source in parallel and builds the engine.
pub(crate) async fn engine(settings: Settings) -> Result<Engine, Error> {
    let certificates = settings.tls.prepare(any_tls(&settings.sources))?;
    let timeouts = (settings.connect_timeout, settings.command_timeout);
    let mut backends = Vec::with_capacity(settings.sources.len());
    let mut addresses = Vec::new();
    let mut pubsub = Vec::new();
    let mut plain_servers = true;
    for source in settings.sources {
        plain_servers &= matches!(source, Source::Url(_));
        let opened = match source {
            Source::Url(url) => open(&url, timeouts, certificates.as_ref())?,
            Source::Connection {
                label,
                deployment,
                pubsub,
            } => Opened {
                label,
                deployment,
                address: None,
                pubsub: pubsub.into_iter().collect(),
            },
            #[cfg(feature = "cluster")]
            Source::Cluster(urls) => open_cluster(&urls, timeouts, certificates.as_ref()).await?,
            #[cfg(feature = "sentinel")]
            Source::Sentinel { urls, service } => open_sentinel(
                &urls,
                service,
                settings.primary_auth.clone(),
                timeouts,
                certificates.as_ref(),
            )?,
        };
        addresses.extend(opened.address);
        let backend = backends.len();
        pubsub.extend(opened.pubsub.into_iter().map(|source| (backend, source)));
        backends.push(Backend::new(
            opened.label,
            opened.deployment,
            settings.command_timeout,
            settings.replicas,
        ));
    }
    reject_duplicates(&addresses, settings.connect_timeout).await?;
    // The subscriber listens on the first of these that answers, and that backend arbitrates
    // between this client's waiters: in address order, every client of the same nodes picks
    // the same one, whatever order it lists them in (see DESIGN.md, "Waiting under Redlock").
    pubsub.sort_by(|(a, _), (b, _)| backends[*a].label().cmp(backends[*b].label()));
    let quorum = Quorum::new(backends);
    let limit = settings.connect_timeout + settings.command_timeout;
    quorum.load_scripts(&SCRIPTS, limit).await?;
    check_eviction(&quorum, settings.eviction_check, limit).await?;
    let wake_channel = format!("{}wake:{}", settings.prefix, client_id()?);
    let subscriber = Subscriber::new(pubsub, wake_channel, settings.connect_timeout);
    Ok(Engine::new(
        quorum,
        settings.prefix,
        settings.drift,
        subscriber,
        plain_servers,
        settings.metrics_per_name,
    ))
}

/// Every primitive's scripts, loaded at connect so that each first call costs one round trip.
static SCRIPTS: LazyLock<Vec<&'static Script>> = LazyLock::new(|| {
    [
        &crate::lock::SCRIPTS[..],
        &crate::rwlock::SCRIPTS[..],
        &crate::semaphore::SCRIPTS[..],
    ]
    .concat()
});

/// A random id for this client's wake channel (64 bits: distinct among the clients of a
/// deployment; not a secret).
fn client_id() -> Result<String, Error> {
    let mut bytes = [0u8; 8];
    getrandom::fill(&mut bytes).map_err(|e| Error::Entropy(e.to_string()))?;
    Ok(format!("{:016x}", u64::from_le_bytes(bytes)))
}

/// Whether any source's URL asks for TLS.
fn any_tls(sources: &[Source]) -> bool {
    sources.iter().any(|source| match source {
        Source::Url(url) => is_tls_url(url),
        #[cfg(feature = "cluster")]
        Source::Cluster(urls) => urls.iter().any(|url| is_tls_url(url)),
        #[cfg(feature = "sentinel")]
        Source::Sentinel { urls, .. } => urls.iter().any(|url| is_tls_url(url)),
        Source::Connection { .. } => false,
    })
}

/// Parses `url` and sets up a connection that is made on first use (so that backends connect
/// in parallel, and one that is down at startup can join later).
fn open(
    url: &str,
    (connect_timeout, command_timeout): (Duration, Duration),
    certificates: Option<&Certificates>,
) -> Result<Opened, Error> {
    let address = Address::parse(url)?;
    let client = address.client(certificates).map_err(malformed(url))?;
    let config = ConnectionManagerConfig::new()
        .set_connection_timeout(Some(connect_timeout))
        .set_response_timeout(Some(command_timeout))
        .set_number_of_retries(1);
    let manager = ConnectionManager::new_lazy_with_config(client.clone(), config.clone())
        .map_err(malformed(url))?;
    let reopen = {
        let client = client.clone();
        move || ConnectionManager::new_lazy_with_config(client.clone(), config.clone()).ok()
    };
    Ok(Opened {
        label: address.label.clone(),
        deployment: Deployment::Server(Connection::owned(manager, reopen)),
        address: Some(address),
        pubsub: vec![PubSubSource::Server(Box::new(client))],
    })
}

/// Connects to a Redis Cluster through any of `urls` (learning its slots); a pub/sub
/// connection can be opened on any seed.
#[cfg(feature = "cluster")]
async fn open_cluster(
    urls: &[String],
    (connect_timeout, command_timeout): (Duration, Duration),
    certificates: Option<&Certificates>,
) -> Result<Opened, Error> {
    if urls.is_empty() {
        return Err(ConfigError::NoSeedUrls("Cluster").into());
    }
    let mut infos = Vec::with_capacity(urls.len());
    let mut pubsub = Vec::with_capacity(urls.len());
    let mut any_tls = false;
    for url in urls {
        let address = Address::parse(url)?;
        let client = address.client(certificates).map_err(malformed(url))?;
        pubsub.push(PubSubSource::Server(Box::new(client)));
        any_tls |= is_tls_url(url);
        infos.push(address.info);
    }
    let label = format!("cluster {}", infos[0].addr());
    let builder = ClusterClientBuilder::new(infos)
        .connection_timeout(connect_timeout)
        .response_timeout(command_timeout);
    let builder = crate::conn::tls::cluster_certificates(builder, certificates.filter(|_| any_tls));
    let client = builder.build().map_err(malformed(&urls[0]))?;
    let connection = bounded(
        &label,
        "connecting to the cluster",
        connect_timeout + command_timeout,
        client.get_async_connection(),
    )
    .await?;
    Ok(Opened {
        label,
        deployment: Deployment::cluster(connection),
        address: None,
        pubsub,
    })
}

/// Sets up the primary of a Sentinel service, found on first use.
#[cfg(feature = "sentinel")]
fn open_sentinel(
    urls: &[String],
    service: String,
    auth: Option<(String, String)>,
    (connect_timeout, command_timeout): (Duration, Duration),
    certificates: Option<&Certificates>,
) -> Result<Opened, Error> {
    if urls.is_empty() {
        return Err(ConfigError::NoSeedUrls("Sentinel").into());
    }
    if service.is_empty() {
        return Err(ConfigError::EmptyServiceName.into());
    }
    let tls = urls.iter().filter(|url| is_tls_url(url)).count();
    if tls != 0 && tls != urls.len() {
        return Err(ConfigError::MalformedUrl {
            url: redact_url(&urls[0]),
            reason: "the sentinel URLs mix redis:// and rediss://".to_owned(),
        }
        .into());
    }
    for url in urls {
        Address::parse(url)?;
    }
    let (username, password) = match auth {
        Some((username, password)) => (Some(username), Some(password)),
        None => (None, None),
    };
    let primary = PrimarySettings {
        username,
        password,
        db: 0,
        tls: tls > 0,
        certificates: certificates.cloned(),
    };
    let sentinel =
        SentinelConnection::new(urls, service, primary, connect_timeout, command_timeout)
            .map_err(malformed(&urls[0]))?;
    Ok(Opened {
        label: sentinel.label(),
        deployment: Deployment::Server(Connection::borrowed(sentinel.clone())),
        address: None,
        pubsub: vec![PubSubSource::Sentinel(sentinel)],
    })
}

/// Rejects a server listed twice: the same host (or host names that resolve to a shared
/// address), port and database. A duplicate would count twice toward a majority.
async fn reject_duplicates(addresses: &[Address], resolve_timeout: Duration) -> Result<(), Error> {
    if addresses.len() < 2 {
        return Ok(());
    }
    let mut seen: Vec<(&Address, Vec<String>)> = Vec::with_capacity(addresses.len());
    for address in addresses {
        let points_to = address.resolve(resolve_timeout).await;
        if let Some((first, _)) = seen
            .iter()
            .find(|(known, known_points)| known.same_server(known_points, address, &points_to))
        {
            return Err(ConfigError::DuplicateNode {
                first: first.label.clone(),
                again: address.label.clone(),
            }
            .into());
        }
        seen.push((address, points_to));
    }
    Ok(())
}

/// Reads every backend's eviction policy and warns about, or refuses, servers that may evict
/// lock keys (see [`EvictionCheck`]). Backends that cannot be reached now are skipped.
async fn check_eviction(
    quorum: &Quorum,
    check: EvictionCheck,
    limit: Duration,
) -> Result<(), Error> {
    if check == EvictionCheck::Off {
        return Ok(());
    }
    let refuse = check == EvictionCheck::Refuse;
    for (label, found) in quorum
        .each(|backend| async move { backend.eviction(limit).await })
        .await
    {
        let found = match found {
            Ok(found) => found,
            Err(Error::Backend(e)) if e.kind() == BackendErrorKind::Server => {
                vec![Eviction {
                    node: label,
                    risk: Err(server_reason(&e)),
                }]
            }
            // Unreachable now: reported by the requests that need it.
            Err(_) => continue,
        };
        for eviction in found {
            match eviction.risk {
                Ok(None) => {}
                Ok(Some(policy)) if refuse => {
                    return Err(ConfigError::EvictingPolicy {
                        node: eviction.node,
                        policy,
                    }
                    .into());
                }
                Ok(Some(policy)) => tracing::warn!(
                    node = %eviction.node,
                    policy = %policy,
                    "Redis may evict lock keys under memory pressure (maxmemory-policy {policy}): \\
                     a lease could end early and the lock be granted twice; \\
                     set maxmemory-policy noeviction"
                ),
                Err(reason) if refuse => {
                    return Err(ConfigError::EvictionPolicyUnknown {
                        node: eviction.node,
                        reason,
                    }
                    .into());
                }
                Err(reason) => tracing::warn!(
                    node = %eviction.node,
                    reason = %reason,
                    "cannot read the maxmemory-policy of Redis, so cannot tell whether it may evict lock keys"
                ),
            }
        }
    }
    Ok(())
}

/// The server's error, for a message (no credentials are in server errors).
fn server_reason(e: &BackendError) -> String {
    match e.code() {
        Some(code) => format!("the server answered {code}"),
        None => "the server refused INFO".to_owned(),
    }
}
