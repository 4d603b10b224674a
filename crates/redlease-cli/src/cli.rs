//! The command line as clap sees it: raw flags and their help, nothing checked beyond their
//! syntax. [`crate::settings`] turns them into what the commands use. Completions and the man
//! page are generated from these same definitions.

use std::ffi::OsString;
use std::path::PathBuf;
use std::time::Duration;

use clap::{ArgAction, Args, Parser, Subcommand, ValueEnum};

use crate::duration;
use crate::exit::EXIT_NOT_ACQUIRED;

const SERVERS: &str = "Servers";
const TLS: &str = "TLS";
const LEASE: &str = "Lease";
const WAITING: &str = "Waiting";
const OUTPUT: &str = "Output";

/// Run commands under a distributed lock held in Redis.
#[derive(Debug, Parser)]
#[command(
    name = "redlease",
    version,
    about,
    long_about = None,
    after_help = "`redlease run --help` lists the exit statuses, the command's environment and examples."
)]
pub(crate) struct Cli {
    #[command(flatten)]
    pub(crate) servers: ServerArgs,
    /// Print nothing but errors (no spinner, no demo view).
    #[arg(long, short, global = true, help_heading = OUTPUT)]
    pub(crate) quiet: bool,
    /// Log more on stderr: -v info, -vv debug, -vvv trace. `RUST_LOG`, when set, decides instead.
    #[arg(long, short, global = true, action = ArgAction::Count, help_heading = OUTPUT)]
    pub(crate) verbose: u8,
    #[command(subcommand)]
    pub(crate) command: Command,
}

#[derive(Debug, Subcommand)]
pub(crate) enum Command {
    /// Run a command while holding the lock NAME; stop it if the lock is lost.
    Run(RunArgs),
    /// Show who holds the lock NAME, for how long, its fence and its waiters.
    Status(StatusArgs),
    /// List the held locks whose names match PATTERN (default: all).
    List(ListArgs),
    /// Break a stuck lock (prints who held it; the fence counter is kept).
    Release(ReleaseArgs),
    /// Watch workers contend for a lock while faults are injected (starts its own Redis).
    Demo(DemoArgs),
    /// Measure this library against the given servers (pairs/s, latency, handoffs).
    Bench(BenchArgs),
    /// Print a shell completion script: `redlease completions bash > /etc/bash_completion.d/redlease`.
    Completions {
        /// The shell to complete for.
        shell: clap_complete::Shell,
    },
    /// Print the man page (roff), or write one page per command into DIR.
    Man {
        /// Write `redlease.1`, `redlease-run.1`, … here instead of printing `redlease.1`.
        dir: Option<PathBuf>,
    },
    /// Internal: the critical section a demo worker runs under `redlease run`.
    #[command(hide = true)]
    DemoStep(DemoStepArgs),
    /// Internal: the process that stands between `redlease run` and its command.
    #[command(hide = true)]
    Guardian(GuardianArgs),
}

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
        hide_env_values = true,
        help_heading = SERVERS
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
        conflicts_with_all = ["redis", "sentinel"],
        help_heading = SERVERS
    )]
    pub(crate) cluster: Vec<String>,
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
        requires = "sentinel_service",
        help_heading = SERVERS
    )]
    pub(crate) sentinel: Vec<String>,
    /// The service (master) name the sentinels watch.
    #[arg(
        long,
        value_name = "NAME",
        global = true,
        env = "REDLEASE_SENTINEL_SERVICE",
        hide_env_values = true,
        help_heading = SERVERS
    )]
    pub(crate) sentinel_service: Option<String>,
    /// The ACL user to log in to the Sentinel-managed primary as (its password comes from
    /// `REDLEASE_PASSWORD` or `--password-file`).
    #[arg(long, value_name = "USER", global = true, help_heading = SERVERS)]
    pub(crate) sentinel_user: Option<String>,
    /// Read the Redis password from the first line of FILE (or set `REDLEASE_PASSWORD`; both
    /// keep it out of `ps`, unlike a password in a URL).
    #[arg(long, value_name = "FILE", global = true, help_heading = SERVERS)]
    pub(crate) password_file: Option<PathBuf>,
    /// After each acquire and extend, wait until N replicas confirm the write (`WAIT`);
    /// refuse the lease otherwise.
    #[arg(long, value_name = "N", global = true, help_heading = SERVERS)]
    pub(crate) replicas: Option<u32>,
    /// How long to wait for replicas to confirm [default: 100ms].
    #[arg(
        long,
        value_name = "DUR",
        global = true,
        value_parser = duration::parse,
        requires = "replicas",
        help_heading = SERVERS
    )]
    pub(crate) replica_timeout: Option<Duration>,
    /// What to do when a server may evict lock keys (its `maxmemory-policy` is not `noeviction`).
    #[arg(
        long,
        value_name = "WHAT",
        global = true,
        value_enum,
        default_value = "warn",
        help_heading = SERVERS
    )]
    pub(crate) eviction_check: EvictionCheckArg,
    /// Prefix of every key and channel.
    #[arg(long, global = true, default_value = redlease::DEFAULT_PREFIX, help_heading = SERVERS)]
    pub(crate) prefix: String,
    /// How long connecting may take.
    #[arg(
        long,
        global = true,
        value_name = "DUR",
        value_parser = duration::parse,
        default_value = "2s",
        help_heading = SERVERS
    )]
    pub(crate) connect_timeout: Duration,
    /// Trust this CA certificate (PEM) instead of the system's roots (`rediss://` URLs).
    #[arg(long, value_name = "FILE", global = true, help_heading = TLS)]
    pub(crate) tls_ca: Option<PathBuf>,
    /// Present this client certificate (PEM); needs `--tls-key`.
    #[arg(long, value_name = "FILE", global = true, requires = "tls_key", help_heading = TLS)]
    pub(crate) tls_cert: Option<PathBuf>,
    /// The client certificate's private key (PEM).
    #[arg(long, value_name = "FILE", global = true, requires = "tls_cert", help_heading = TLS)]
    pub(crate) tls_key: Option<PathBuf>,
}

/// `--eviction-check` values.
#[derive(Debug, Clone, Copy, ValueEnum)]
pub(crate) enum EvictionCheckArg {
    /// Print a warning and go on.
    Warn,
    /// Refuse to run.
    Refuse,
    /// Do not check.
    Off,
}

/// `redlease run --help`, after the flags.
const RUN_AFTER_LONG_HELP: &str = "\
The command runs in its own process group, watched by a guardian process that ends it (SIGTERM, \
then SIGKILL after --kill-grace) before the lease could pass to anyone else — also when redlease \
itself is killed or stopped. On a terminal the command gets the foreground; Ctrl-Z stops it \
together with redlease, and `fg` resumes both once the lease is confirmed.

The command's environment:
  REDLEASE_NAME      the lock's name
  REDLEASE_FENCE     the fencing token (decimal): pass it with every write to the resource you protect
                     (with --shared: at least the latest write's fence)
  REDLEASE_SLOT      only with --limit: the permit's slot, 0 to N-1, no other holder's (guard a
                     resource per slot: keep the largest fence seen for each slot)
  REDLEASE_DEADLINE  only with --max-hold: Unix time in milliseconds after which the command is not running
  redlease's own settings (REDLEASE_REDIS, REDLEASE_PASSWORD, REDLEASE_CLUSTER, …) are removed.

Exit status:
  the command's   it ran (128 + N if signal N killed it)
  64              usage error: bad flag, duration, URL or name; no command
  69              Redis unreachable, or too few nodes for a quorum
  70              internal error
  75              not acquired: --no-wait and held, or --wait ran out (--conflict-exit-code)
  77              Redis refused the credentials or a permission (WRONGPASS, NOAUTH, NOPERM)
  79              the lease was lost (or ran out) and the command was stopped
  126 / 127       the command could not be executed / was not found

Examples:
  redlease run nightly-report -- ./report.sh --full
  redlease run --no-wait deploy -c 'make deploy'
  redlease run --limit 3 deploy-slots -- ./deploy.sh        # at most 3 at once
  redlease run --shared catalog -- ./export.sh              # a reader; `redlease run catalog` writes
  REDLEASE_PASSWORD=… redlease --redis redis://a:6379 --redis redis://b:6379 --redis redis://c:6379 \\
      run --ttl 30s --wait 5m --max-hold 2h backup -- ./backup.sh";

#[derive(Debug, Args)]
#[command(after_long_help = RUN_AFTER_LONG_HELP)]
pub(crate) struct RunArgs {
    /// How long the lock outlives this process if it dies; renewed every third of it.
    #[arg(long, value_name = "DUR", value_parser = duration::parse, default_value = "15s", help_heading = LEASE)]
    pub(crate) ttl: Duration,
    /// Hold the lock for at most DUR in total: the command is stopped before then.
    #[arg(long, value_name = "DUR", value_parser = duration::parse, help_heading = LEASE)]
    pub(crate) max_hold: Option<Duration>,
    /// Time between SIGTERM and SIGKILL when the lease ends. The SIGTERM comes this long
    /// before the lease would run out unrenewed, so the command is gone before anyone else
    /// can get the lock. At most half the TTL [default: 5s or half the TTL, whichever is less].
    #[arg(long, value_name = "DUR", value_parser = duration::parse, help_heading = LEASE)]
    pub(crate) kill_grace: Option<Duration>,
    /// Describe the holder in `status` and `list` (after host and pid).
    #[arg(long, value_name = "TEXT", help_heading = LEASE)]
    pub(crate) label: Option<String>,
    /// Wait at most DUR for the lock (default: as long as it takes).
    #[arg(long, value_name = "DUR", value_parser = duration::parse, conflicts_with = "no_wait", help_heading = WAITING)]
    pub(crate) wait: Option<Duration>,
    /// Do not wait: if the lock is held, exit at once with the conflict code.
    #[arg(long, short = 'n', help_heading = WAITING)]
    pub(crate) no_wait: bool,
    /// Exit status when the lock is not acquired.
    #[arg(long, value_name = "CODE", default_value_t = EXIT_NOT_ACQUIRED, help_heading = WAITING)]
    pub(crate) conflict_exit_code: u8,
    /// Serve waiters in arrival order (all waiters of this lock must use --fair).
    #[arg(long, help_heading = WAITING)]
    pub(crate) fair: bool,
    /// A semaphore: at most N commands hold NAME at once, across hosts (every holder must give
    /// the same N). The command gets its permit's `REDLEASE_SLOT` (0..N) and `REDLEASE_FENCE`.
    #[arg(long, value_name = "N", conflicts_with = "shared", help_heading = LEASE)]
    pub(crate) limit: Option<u32>,
    /// A reader of the read-write lock NAME: shared with other readers, excluded by writers
    /// (plain `redlease run NAME`), which are preferred: once one waits, new readers wait behind it.
    #[arg(long, help_heading = LEASE)]
    pub(crate) shared: bool,
    /// Run this shell command (`sh -c`) instead of CMD.
    #[arg(short = 'c', value_name = "SHELL_COMMAND", conflicts_with = "command")]
    pub(crate) shell: Option<String>,
    /// The lock's name.
    pub(crate) name: String,
    /// The command to run, after `--`.
    #[arg(last = true, value_name = "CMD")]
    pub(crate) command: Vec<OsString>,
}

#[derive(Debug, Args)]
pub(crate) struct StatusArgs {
    /// The lock's name.
    pub(crate) name: String,
    /// Print JSON instead of text.
    #[arg(long)]
    pub(crate) json: bool,
}

#[derive(Debug, Args)]
pub(crate) struct ListArgs {
    /// A glob over lock names (`jobs:*`).
    #[arg(default_value = "*")]
    pub(crate) pattern: String,
    /// Print JSON instead of text.
    #[arg(long)]
    pub(crate) json: bool,
}

#[derive(Debug, Args)]
pub(crate) struct ReleaseArgs {
    /// Required: breaking someone else's lock is a deliberate act.
    #[arg(long, required = true)]
    pub(crate) force: bool,
    /// The lock's name.
    pub(crate) name: String,
}

#[derive(Debug, Args)]
pub(crate) struct DemoArgs {
    /// How long the demo runs.
    #[arg(long, value_name = "DUR", value_parser = duration::parse, default_value = "50s")]
    pub(crate) duration: Duration,
    /// How many worker processes contend for the lock.
    #[arg(long, default_value_t = 4, value_parser = clap::value_parser!(u16).range(2..=32))]
    pub(crate) workers: u16,
}

#[derive(Debug, Args)]
pub(crate) struct BenchArgs {
    /// How long each measurement runs.
    #[arg(long, value_name = "DUR", value_parser = duration::parse, default_value = "3s")]
    pub(crate) duration: Duration,
}

#[derive(Debug, Args)]
pub(crate) struct DemoStepArgs {
    /// Where the demo's resource listens.
    #[arg(long)]
    pub(crate) resource: String,
    /// Which worker runs this step.
    #[arg(long)]
    pub(crate) worker: u16,
    /// How long the work takes.
    #[arg(long)]
    pub(crate) work_ms: u64,
}

#[derive(Debug, Args)]
pub(crate) struct GuardianArgs {
    /// The guardian's end of the socket pair `redlease run` made (inherited file descriptor).
    #[arg(long)]
    pub(crate) socket_fd: i32,
    /// SIGTERM comes this long before the lease deadline; SIGKILL at it.
    #[arg(long, value_parser = duration::parse)]
    pub(crate) kill_grace: Duration,
    /// The command and its arguments.
    #[arg(last = true, required = true)]
    pub(crate) command: Vec<OsString>,
}

#[cfg(test)]
mod tests {
    use clap::CommandFactory;

    use super::Cli;

    #[test]
    fn the_definitions_are_consistent() {
        Cli::command().debug_assert();
    }
}
