//! Validated settings: the raw flags of [`crate::cli`] checked, defaulted and read (password,
//! certificate files) into what the commands use. Credentials are applied to a client in one
//! place, [`Servers::connect`].

use std::ffi::OsString;
use std::path::Path;
use std::time::Duration;

use clap::CommandFactory as _;
use redlease::{Client, ClientBuilder, EvictionCheck};

use crate::cli::{Cli, EvictionCheckArg, RunArgs, ServerArgs};
use crate::duration::human;
use crate::exit::Failure;

/// Environment variable holding the Redis password (safer than a URL on the command line,
/// which other users can read with `ps`).
pub(crate) const PASSWORD_ENV: &str = "REDLEASE_PASSWORD";

/// How long `--replicas` waits for confirmations unless `--replica-timeout` says otherwise.
const DEFAULT_REPLICA_TIMEOUT: Duration = Duration::from_millis(100);

/// The longest default kill grace; a short TTL makes it shorter (half the TTL).
const DEFAULT_KILL_GRACE: Duration = Duration::from_secs(5);

/// Which servers hold the locks.
#[derive(Debug, Clone)]
pub(crate) enum Deployment {
    /// One server, or several independent masters (Redlock). `given` is false when the
    /// default URL stands in for flags the user did not pass.
    Nodes { urls: Vec<String>, given: bool },
    /// A Redis Cluster, from seed nodes.
    Cluster(Vec<String>),
    /// The primary of a Sentinel service.
    Sentinel { urls: Vec<String>, service: String },
}

/// A secret that never shows in `Debug` output.
#[derive(Clone)]
pub(crate) struct Password(String);

impl std::fmt::Debug for Password {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Password(…)")
    }
}

impl Password {
    pub(crate) fn expose(&self) -> &str {
        &self.0
    }
}

/// Everything needed to connect, checked.
#[derive(Debug)]
pub(crate) struct Servers {
    pub(crate) deployment: Deployment,
    /// From `REDLEASE_PASSWORD` or `--password-file`, for servers whose URL has none.
    pub(crate) password: Option<Password>,
    sentinel_user: Option<String>,
    tls_root_ca: Option<Vec<u8>>,
    tls_client: Option<(Vec<u8>, Vec<u8>)>,
    replicas: Option<(u32, Duration)>,
    eviction_check: EvictionCheck,
    pub(crate) prefix: String,
    connect_timeout: Duration,
}

impl Servers {
    pub(crate) fn from_args(args: &ServerArgs) -> Result<Self, Failure> {
        let deployment = if !args.cluster.is_empty() {
            Deployment::Cluster(args.cluster.clone())
        } else if !args.sentinel.is_empty() {
            Deployment::Sentinel {
                urls: args.sentinel.clone(),
                service: args.sentinel_service.clone().unwrap_or_default(),
            }
        } else if args.redis.is_empty() {
            Deployment::Nodes {
                urls: vec![redlease::DEFAULT_URL.to_owned()],
                given: false,
            }
        } else {
            Deployment::Nodes {
                urls: args.redis.clone(),
                given: true,
            }
        };
        let tls_client = match (&args.tls_cert, &args.tls_key) {
            (Some(cert), Some(key)) => {
                Some((read_file(cert, "--tls-cert")?, read_file(key, "--tls-key")?))
            }
            _ => None,
        };
        Ok(Self {
            deployment,
            password: password(args.password_file.as_deref())?,
            sentinel_user: args.sentinel_user.clone(),
            tls_root_ca: args
                .tls_ca
                .as_deref()
                .map(|ca| read_file(ca, "--tls-ca"))
                .transpose()?,
            tls_client,
            replicas: args.replicas.map(|replicas| {
                (
                    replicas,
                    args.replica_timeout.unwrap_or(DEFAULT_REPLICA_TIMEOUT),
                )
            }),
            eviction_check: match args.eviction_check {
                EvictionCheckArg::Warn => EvictionCheck::Warn,
                EvictionCheckArg::Refuse => EvictionCheck::Refuse,
                EvictionCheckArg::Off => EvictionCheck::Off,
            },
            prefix: args.prefix.clone(),
            connect_timeout: args.connect_timeout,
        })
    }

    /// How many nodes the lock is spread over, for messages (a Cluster or Sentinel group counts
    /// as one).
    pub(crate) fn node_count(&self) -> usize {
        match &self.deployment {
            Deployment::Nodes { urls, .. } => urls.len(),
            Deployment::Cluster(_) | Deployment::Sentinel { .. } => 1,
        }
    }

    /// Connects: one URL = single instance, several = Redlock, or a Cluster, or a primary
    /// found through Sentinel. The only place where the password meets the servers.
    pub(crate) async fn connect(&self) -> Result<Client, Failure> {
        let mut builder = Client::builder()
            .prefix(&self.prefix)
            .connect_timeout(self.connect_timeout)
            .eviction_check(self.eviction_check);
        let password = self.password.as_ref().map(Password::expose);
        builder = match &self.deployment {
            Deployment::Nodes { urls, .. } => urls
                .iter()
                .map(|url| with_password(url, password))
                .collect::<Result<Vec<_>, _>>()?
                .into_iter()
                .fold(builder, ClientBuilder::url),
            Deployment::Cluster(urls) => builder.cluster(
                urls.iter()
                    .map(|url| with_password(url, password))
                    .collect::<Result<Vec<_>, _>>()?,
            ),
            Deployment::Sentinel { urls, service } => {
                let builder = builder.sentinel(urls.clone(), service.clone());
                match password {
                    Some(password) => builder.sentinel_primary_auth(
                        self.sentinel_user.clone().unwrap_or_default(),
                        password,
                    ),
                    None => builder,
                }
            }
        };
        if let Some(ca) = &self.tls_root_ca {
            builder = builder.tls_root_ca(ca.clone());
        }
        if let Some((cert, key)) = &self.tls_client {
            builder = builder.tls_client_cert(cert.clone(), key.clone());
        }
        if let Some((replicas, timeout)) = self.replicas {
            builder = builder.replicas(replicas, timeout);
        }
        builder
            .build()
            .await
            .map_err(|e| Failure::from_lock_error(&e))
    }
}

/// The password from `--password-file` (its first line) or `REDLEASE_PASSWORD`.
fn password(file: Option<&Path>) -> Result<Option<Password>, Failure> {
    if let Some(path) = file {
        let text = std::fs::read_to_string(path).map_err(|e| {
            Failure::usage(format!(
                "cannot read the password file {}: {e}",
                path.display()
            ))
        })?;
        return Ok(Some(Password(
            text.lines().next().unwrap_or_default().to_owned(),
        )));
    }
    Ok(std::env::var(PASSWORD_ENV)
        .ok()
        .filter(|password| !password.is_empty())
        .map(Password))
}

fn read_file(path: &Path, flag: &str) -> Result<Vec<u8>, Failure> {
    std::fs::read(path)
        .map_err(|e| Failure::usage(format!("cannot read {flag} {}: {e}", path.display())))
}

/// `url` with `password` set when it has none (the user, if any, kept). The password never
/// appears in messages: a malformed URL is reported without it.
fn with_password(url: &str, password: Option<&str>) -> Result<String, Failure> {
    let Some(password) = password else {
        return Ok(url.to_owned());
    };
    let mut parsed = url::Url::parse(url).map_err(|_| {
        Failure::usage("malformed Redis URL (given with --redis, --cluster or their variables)")
    })?;
    if parsed.password().is_some() {
        return Ok(url.to_owned());
    }
    parsed
        .set_password(Some(password))
        .map_err(|()| Failure::usage("this Redis URL cannot carry a password"))?;
    Ok(parsed.into())
}

/// How long `redlease run` waits for a held lock.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Wait {
    No,
    AtMost(Duration),
    Forever,
}

/// What `redlease run` holds the name as.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum HoldKind {
    /// The lock (the writer of a read-write lock).
    Lock,
    /// A permit of a semaphore with this limit.
    Permit(u32),
    /// A reader's share of a read-write lock.
    Reader,
}

/// `redlease run`, checked.
#[derive(Debug)]
pub(crate) struct RunSettings {
    pub(crate) name: String,
    pub(crate) ttl: Duration,
    pub(crate) max_hold: Option<Duration>,
    pub(crate) kill_grace: Duration,
    pub(crate) label: Option<String>,
    pub(crate) wait: Wait,
    pub(crate) conflict_exit_code: u8,
    pub(crate) fair: bool,
    /// What the command holds NAME as.
    pub(crate) hold: HoldKind,
    /// The program and its arguments (`sh -c …` for `-c`).
    pub(crate) command: Vec<OsString>,
    pub(crate) quiet: bool,
}

impl RunSettings {
    pub(crate) fn from_args(args: RunArgs, quiet: bool) -> Result<Self, Failure> {
        let command = match args.shell {
            Some(shell) => vec!["sh".into(), "-c".into(), shell.into()],
            None if args.command.is_empty() => {
                return Err(Failure::usage(
                    "no command given: use `redlease run NAME -- CMD [ARGS…]` or `-c 'shell command'`",
                ));
            }
            None => args.command,
        };
        let kill_grace = kill_grace(args.ttl, args.kill_grace)?;
        let wait = match (args.no_wait, args.wait) {
            (true, _) => Wait::No,
            (false, Some(wait)) => Wait::AtMost(wait),
            (false, None) => Wait::Forever,
        };
        Ok(Self {
            name: args.name,
            ttl: args.ttl,
            max_hold: args.max_hold,
            kill_grace,
            label: args.label,
            wait,
            conflict_exit_code: args.conflict_exit_code,
            fair: args.fair,
            hold: match (args.limit, args.shared) {
                (Some(limit), _) => HoldKind::Permit(limit),
                (None, true) => HoldKind::Reader,
                (None, false) => HoldKind::Lock,
            },
            command,
            quiet,
        })
    }
}

/// The kill grace: as given if it is at most half the TTL (so that SIGTERM, sent that long
/// before an unrenewed lease runs out, leaves the command half a TTL of renewals first), else
/// a usage error; by default 5 s or half the TTL, whichever is less.
fn kill_grace(ttl: Duration, given: Option<Duration>) -> Result<Duration, Failure> {
    match given {
        None => Ok(DEFAULT_KILL_GRACE.min(ttl / 2)),
        Some(grace) if grace <= ttl / 2 => Ok(grace),
        Some(grace) => Err(Failure::usage(format!(
            "--kill-grace {} must be at most half the TTL ({})",
            human(grace),
            human(ttl / 2)
        ))),
    }
}

/// The environment variables redlease reads its own configuration from: every `env` of the
/// command line, and the password. The command run under the lease gets none of them.
pub(crate) fn own_variables() -> Vec<String> {
    let cli = Cli::command();
    let mut names: Vec<String> = cli
        .get_arguments()
        .chain(cli.get_subcommands().flat_map(clap::Command::get_arguments))
        .filter_map(|arg| arg.get_env())
        .map(|name| name.to_string_lossy().into_owned())
        .collect();
    names.push(PASSWORD_ENV.to_owned());
    names.sort();
    names.dedup();
    names
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passwords_are_inserted_and_escaped() {
        let with = |url, password| with_password(url, Some(password)).unwrap();
        assert_eq!(
            with("redis://h:1/2", "p@ss word"),
            "redis://:p%40ss%20word@h:1/2"
        );
        assert_eq!(with("redis://alice@h", "pw"), "redis://alice:pw@h");
        assert_eq!(with("redis://:own@h", "pw"), "redis://:own@h");
        assert_eq!(with_password("redis://h", None).unwrap(), "redis://h");
        let err = with_password("not a url :secret", Some("pw")).unwrap_err();
        assert!(!err.message.contains("secret"));
    }

    #[test]
    fn the_kill_grace_defaults_to_five_seconds_or_half_the_ttl() {
        let secs = Duration::from_secs;
        assert_eq!(kill_grace(secs(15), None).unwrap(), secs(5));
        assert_eq!(
            kill_grace(secs(3), None).unwrap(),
            Duration::from_millis(1500)
        );
        assert_eq!(kill_grace(secs(3), Some(secs(1))).unwrap(), secs(1));
        assert_eq!(kill_grace(secs(4), Some(secs(2))).unwrap(), secs(2));
        let refused = kill_grace(secs(3), Some(secs(2))).unwrap_err();
        assert_eq!(refused.code, crate::exit::EXIT_USAGE);
        assert!(refused.message.contains("1s 500ms"), "{}", refused.message);
    }

    #[test]
    fn every_configuration_variable_is_withheld_from_the_command() {
        let names = own_variables();
        for name in [
            "REDLEASE_REDIS",
            "REDLEASE_CLUSTER",
            "REDLEASE_SENTINEL",
            "REDLEASE_SENTINEL_SERVICE",
            "REDLEASE_PASSWORD",
        ] {
            assert!(names.iter().any(|n| n == name), "{name} in {names:?}");
        }
    }

    #[test]
    fn the_password_is_not_in_debug_output() {
        let text = format!("{:?}", Password("hunter2".into()));
        assert!(!text.contains("hunter2"));
    }
}
