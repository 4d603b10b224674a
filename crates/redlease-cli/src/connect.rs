//! Which Redis servers to use, and how to log in, from flags, environment and files.

use std::path::PathBuf;
use std::time::Duration;

use clap::Args;
use redlease::Client;

use crate::{Failure, duration_arg};

/// Environment variable holding the Redis password (safer than a URL on the command line,
/// which other users can read with `ps`).
const PASSWORD_ENV: &str = "REDLEASE_PASSWORD";

/// How long `WAIT` waits for replicas unless `--replica-timeout` says otherwise: enough on a
/// healthy local network.
const DEFAULT_REPLICA_TIMEOUT: Duration = Duration::from_millis(100);

#[derive(Debug, Args)]
pub(crate) struct ServerArgs {
    /// A Redis server: `redis://[user[:password]@]host[:port][/db]` (`rediss://` for TLS).
    /// Repeat for Redlock over several independent masters. Default: `redis://127.0.0.1:6379`.
    #[arg(
        long = "redis",
        value_name = "URL",
        global = true,
        env = "REDLEASE_REDIS",
        value_delimiter = ',',
        hide_env_values = true
    )]
    pub(crate) redis: Vec<String>,
    /// Redis Cluster: a seed node of the cluster (repeatable). Lock names spread over its
    /// primaries; each name's keys live in one slot.
    #[arg(
        long,
        value_name = "URL",
        global = true,
        env = "REDLEASE_CLUSTER",
        value_delimiter = ',',
        hide_env_values = true,
        conflicts_with_all = ["redis", "sentinel"]
    )]
    cluster: Vec<String>,
    /// Sentinel: a sentinel's URL (repeatable); the primary is found through them and
    /// followed across failovers. Needs `--sentinel-service`.
    #[arg(
        long,
        value_name = "URL",
        global = true,
        env = "REDLEASE_SENTINEL",
        value_delimiter = ',',
        hide_env_values = true,
        conflicts_with = "redis",
        requires = "sentinel_service"
    )]
    sentinel: Vec<String>,
    /// The service (master) name the sentinels watch.
    #[arg(
        long,
        value_name = "NAME",
        global = true,
        env = "REDLEASE_SENTINEL_SERVICE"
    )]
    sentinel_service: Option<String>,
    /// The ACL user to log in to the Sentinel-managed primary as (its password comes from
    /// `REDLEASE_PASSWORD` or `--password-file`).
    #[arg(long, value_name = "USER", global = true)]
    sentinel_user: Option<String>,
    /// TLS (`rediss://` URLs): trust this CA certificate (PEM) instead of the system's roots.
    #[arg(long, value_name = "FILE", global = true)]
    tls_ca: Option<PathBuf>,
    /// TLS: present this client certificate (PEM); needs `--tls-key`.
    #[arg(long, value_name = "FILE", global = true, requires = "tls_key")]
    tls_cert: Option<PathBuf>,
    /// TLS: the client certificate's private key (PEM).
    #[arg(long, value_name = "FILE", global = true, requires = "tls_cert")]
    tls_key: Option<PathBuf>,
    /// After each acquire and extend, wait until N replicas confirm the write (`WAIT`);
    /// refuse the lease otherwise.
    #[arg(long, value_name = "N", global = true)]
    replicas: Option<u32>,
    /// How long to wait for replicas to confirm.
    #[arg(long, value_name = "DUR", global = true, value_parser = duration_arg, requires = "replicas")]
    replica_timeout: Option<Duration>,
    /// What to do when a server may evict lock keys (its `maxmemory-policy` is not `noeviction`).
    #[arg(
        long,
        value_name = "WHAT",
        global = true,
        value_enum,
        default_value = "warn"
    )]
    eviction_check: EvictionCheckArg,
    /// Read the Redis password from the first line of FILE (or set `REDLEASE_PASSWORD`).
    #[arg(long, value_name = "FILE", global = true)]
    password_file: Option<PathBuf>,
    /// Prefix of every key and channel.
    #[arg(long, global = true, default_value = redlease::DEFAULT_PREFIX)]
    pub(crate) prefix: String,
    /// How long connecting may take.
    #[arg(long, global = true, value_name = "DUR", value_parser = duration_arg, default_value = "2s")]
    connect_timeout: Duration,
}

/// `--eviction-check` values.
#[derive(Debug, Clone, Copy, clap::ValueEnum)]
enum EvictionCheckArg {
    /// Print a warning and go on.
    Warn,
    /// Refuse to run.
    Refuse,
    /// Do not check.
    Off,
}

impl ServerArgs {
    /// How many nodes the lock is spread over, for messages (a Cluster or Sentinel group counts
    /// as one).
    pub(crate) fn node_count(&self) -> usize {
        if self.cluster.is_empty() && self.sentinel.is_empty() {
            self.redis.len().max(1)
        } else {
            1
        }
    }

    /// Whether the user pointed us at servers (otherwise the default URL is used).
    pub(crate) fn given(&self) -> bool {
        !(self.redis.is_empty() && self.cluster.is_empty() && self.sentinel.is_empty())
    }

    /// The URLs to use, passwords from the environment or file filled in.
    pub(crate) fn urls(&self) -> Result<Vec<String>, Failure> {
        let password = self.password()?;
        let urls = if self.redis.is_empty() {
            vec![redlease::DEFAULT_URL.to_owned()]
        } else {
            self.redis.clone()
        };
        urls.into_iter()
            .map(|url| match &password {
                Some(password) => with_password(&url, password),
                None => Ok(url),
            })
            .collect()
    }

    fn password(&self) -> Result<Option<String>, Failure> {
        if let Some(path) = &self.password_file {
            let text = std::fs::read_to_string(path).map_err(|e| {
                Failure::usage(format!(
                    "cannot read the password file {}: {e}",
                    path.display()
                ))
            })?;
            return Ok(Some(text.lines().next().unwrap_or_default().to_owned()));
        }
        Ok(std::env::var(PASSWORD_ENV)
            .ok()
            .filter(|password| !password.is_empty()))
    }

    /// Connects to the servers: one URL = single instance, several = Redlock, or a Cluster,
    /// or a primary found through Sentinel.
    pub(crate) async fn client(&self) -> Result<Client, Failure> {
        let mut builder = Client::builder()
            .prefix(&self.prefix)
            .connect_timeout(self.connect_timeout);
        if !self.cluster.is_empty() {
            let password = self.password()?;
            let urls = self
                .cluster
                .iter()
                .map(|url| {
                    password
                        .as_deref()
                        .map_or_else(|| Ok(url.clone()), |p| with_password(url, p))
                })
                .collect::<Result<Vec<_>, _>>()?;
            builder = builder.cluster(urls);
        } else if !self.sentinel.is_empty() {
            let service = self.sentinel_service.clone().unwrap_or_default();
            builder = builder.sentinel(self.sentinel.clone(), service);
            if let Some(password) = self.password()? {
                builder = builder.sentinel_primary_auth(
                    self.sentinel_user.clone().unwrap_or_default(),
                    password,
                );
            }
        } else {
            builder = self
                .urls()?
                .iter()
                .fold(builder, redlease::ClientBuilder::url);
        }
        if let Some(ca) = &self.tls_ca {
            builder = builder.tls_root_ca(read_file(ca, "--tls-ca")?);
        }
        if let (Some(cert), Some(key)) = (&self.tls_cert, &self.tls_key) {
            builder = builder
                .tls_client_cert(read_file(cert, "--tls-cert")?, read_file(key, "--tls-key")?);
        }
        if let Some(replicas) = self.replicas {
            builder = builder.replicas(
                replicas,
                self.replica_timeout.unwrap_or(DEFAULT_REPLICA_TIMEOUT),
            );
        }
        builder = builder.eviction_check(match self.eviction_check {
            EvictionCheckArg::Warn => redlease::EvictionCheck::Warn,
            EvictionCheckArg::Refuse => redlease::EvictionCheck::Refuse,
            EvictionCheckArg::Off => redlease::EvictionCheck::Off,
        });
        builder
            .build()
            .await
            .map_err(|e| Failure::from_lock_error(&e))
    }
}

fn read_file(path: &std::path::Path, flag: &str) -> Result<Vec<u8>, Failure> {
    std::fs::read(path)
        .map_err(|e| Failure::usage(format!("cannot read {flag} {}: {e}", path.display())))
}

/// `url` with its password set (the user, if any, kept). The password never appears in
/// messages: a malformed URL is reported without it.
fn with_password(url: &str, password: &str) -> Result<String, Failure> {
    let mut parsed = url::Url::parse(url).map_err(|_| {
        Failure::usage("malformed Redis URL (given with --redis or REDLEASE_REDIS)")
    })?;
    if parsed.password().is_some() {
        return Ok(url.to_owned());
    }
    parsed
        .set_password(Some(password))
        .map_err(|()| Failure::usage("this Redis URL cannot carry a password"))?;
    Ok(parsed.into())
}

#[cfg(test)]
mod tests {
    use super::with_password;

    #[test]
    fn passwords_are_inserted_and_escaped() {
        assert_eq!(
            with_password("redis://h:1/2", "p@ss word").unwrap(),
            "redis://:p%40ss%20word@h:1/2"
        );
        assert_eq!(
            with_password("redis://alice@h", "pw").unwrap(),
            "redis://alice:pw@h"
        );
        assert_eq!(
            with_password("redis://:own@h", "pw").unwrap(),
            "redis://:own@h"
        );
        let err = with_password("not a url :secret", "pw").unwrap_err();
        assert!(!err.message.contains("secret"));
    }
}
