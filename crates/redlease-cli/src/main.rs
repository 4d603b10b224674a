//! `redlease`: run a command under a Redis lease, inspect and break locks, and a demo.
//!
//! See the README for the commands, environment variables and exit codes.

mod bench;
mod connect;
mod demo;
mod duration;
mod inspect;
mod run;

use std::ffi::OsString;
use std::process::ExitCode;
use std::time::Duration;

use clap::{Args, Parser, Subcommand};

/// Exit status: the command line could not be understood (BSD `EX_USAGE`).
pub(crate) const EXIT_USAGE: u8 = 64;
/// Exit status: Redis could not be reached, or too few nodes for a quorum (`EX_UNAVAILABLE`).
pub(crate) const EXIT_UNAVAILABLE: u8 = 69;
/// Exit status: something went wrong inside redlease itself (`EX_SOFTWARE`).
pub(crate) const EXIT_INTERNAL: u8 = 70;
/// Exit status: the lock was not acquired (taken, and no wait or the wait timed out;
/// `EX_TEMPFAIL`). `--conflict-exit-code` changes it.
pub(crate) const EXIT_NOT_ACQUIRED: u8 = 75;
/// Exit status: the lease was lost while the command ran, and the command was stopped.
pub(crate) const EXIT_LEASE_LOST: u8 = 79;

/// Run commands under a distributed lock held in Redis.
#[derive(Debug, Parser)]
#[command(name = "redlease", version, about, long_about = None)]
pub(crate) struct Cli {
    #[command(flatten)]
    servers: connect::ServerArgs,
    /// Print nothing but errors (no spinner, no demo view).
    #[arg(long, short, global = true)]
    quiet: bool,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run a command while holding the lock NAME; stop it if the lock is lost.
    Run(run::RunArgs),
    /// Show who holds the lock NAME, for how long, its fence and its waiters.
    Status(StatusArgs),
    /// List the held locks whose names match PATTERN (default: all).
    List(ListArgs),
    /// Break a stuck lock (prints who held it; the fence counter is kept).
    Release(ReleaseArgs),
    /// Watch workers contend for a lock while faults are injected (starts its own Redis).
    Demo(demo::DemoArgs),
    /// Measure this library against the given servers (pairs/s, latency, handoffs).
    Bench(bench::BenchArgs),
    /// Internal: the critical section a demo worker runs under `redlease run`.
    #[command(hide = true)]
    DemoStep(demo::StepArgs),
}

#[derive(Debug, Args)]
struct StatusArgs {
    /// The lock's name.
    name: String,
    /// Print JSON instead of text.
    #[arg(long)]
    json: bool,
}

#[derive(Debug, Args)]
struct ListArgs {
    /// A glob over lock names (`jobs:*`).
    #[arg(default_value = "*")]
    pattern: String,
    /// Print JSON instead of text.
    #[arg(long)]
    json: bool,
}

#[derive(Debug, Args)]
struct ReleaseArgs {
    /// Required: breaking someone else's lock is a deliberate act.
    #[arg(long, required = true)]
    force: bool,
    /// The lock's name.
    name: String,
}

/// An error that ends the program with `code`, after printing `message` (one line).
#[derive(Debug)]
pub(crate) struct Failure {
    pub(crate) code: u8,
    pub(crate) message: String,
}

impl Failure {
    pub(crate) fn usage(message: impl Into<String>) -> Self {
        Self {
            code: EXIT_USAGE,
            message: message.into(),
        }
    }

    pub(crate) fn internal(message: impl Into<String>) -> Self {
        Self {
            code: EXIT_INTERNAL,
            message: message.into(),
        }
    }

    /// Maps a library error to the exit status its kind calls for.
    pub(crate) fn from_lock_error(error: &redlease::Error) -> Self {
        let code = match error {
            redlease::Error::InvalidConfig(_) => EXIT_USAGE,
            redlease::Error::Contended { .. } | redlease::Error::TimedOut { .. } => {
                EXIT_NOT_ACQUIRED
            }
            redlease::Error::Backend(_) | redlease::Error::NoQuorum { .. } => EXIT_UNAVAILABLE,
            _ => EXIT_INTERNAL,
        };
        Self {
            code,
            message: error.to_string(),
        }
    }
}

fn main() -> ExitCode {
    let args: Vec<OsString> = std::env::args_os().collect();
    let cli = match Cli::try_parse_from(&args) {
        Ok(cli) => cli,
        Err(error) if !error.use_stderr() => {
            // --help, --version
            let _ = error.print();
            return ExitCode::SUCCESS;
        }
        Err(error) => {
            eprintln!("redlease: {} (see --help)", one_line(&error.to_string()));
            return ExitCode::from(EXIT_USAGE);
        }
    };
    // The library reports risky server settings (an evicting maxmemory-policy) as warnings.
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_max_level(tracing_subscriber::filter::LevelFilter::WARN)
        .without_time()
        .with_target(false)
        .init();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("redlease: cannot start the async runtime: {error}");
            return ExitCode::from(EXIT_INTERNAL);
        }
    };
    match runtime.block_on(dispatch(cli)) {
        Ok(code) => code,
        Err(failure) => {
            eprintln!("redlease: {}", failure.message);
            ExitCode::from(failure.code)
        }
    }
}

async fn dispatch(cli: Cli) -> Result<ExitCode, Failure> {
    match cli.command {
        Command::Run(args) => run::run(&cli.servers, args, cli.quiet).await,
        Command::Status(args) => inspect::status(&cli.servers, &args.name, args.json).await,
        Command::List(args) => inspect::list(&cli.servers, &args.pattern, args.json).await,
        Command::Release(args) => inspect::force_release(&cli.servers, &args.name).await,
        Command::Demo(args) => demo::demo(&cli.servers, args, cli.quiet).await,
        Command::Bench(args) => bench::bench(&cli.servers, args).await,
        Command::DemoStep(args) => demo::step(args).await,
    }
}

/// A clap error message on one line: its text up to the usage hint, whitespace folded.
fn one_line(message: &str) -> String {
    let body = message.split("\n\n").next().unwrap_or(message);
    let body = body.strip_prefix("error: ").unwrap_or(body);
    body.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// Parses a duration argument for clap.
pub(crate) fn duration_arg(text: &str) -> Result<Duration, String> {
    duration::parse(text)
}
