//! `redlease`: run a command under a Redis lease, inspect and break locks, and a demo.
//!
//! Raw flags ([`cli`]) are validated into settings ([`settings`]), which the commands use
//! ([`run`], [`inspect`], [`demo`], [`bench`]). See the README for the commands, environment
//! variables and exit codes.

mod bench;
mod cli;
mod demo;
mod duration;
mod exit;
mod guardian;
mod inspect;
mod run;
mod settings;
mod terminal;

use std::ffi::OsString;
use std::io::IsTerminal as _;
use std::process::ExitCode;

use clap::{CommandFactory as _, Parser as _};

use crate::cli::{Cli, Command};
use crate::exit::{EXIT_INTERNAL, EXIT_USAGE, Failure};
use crate::settings::{RunSettings, Servers};

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
    // Before any runtime or logging: the guardian is a process of its own, kept small.
    let cli = match cli.command {
        Command::Guardian(args) => return guardian::main(args),
        Command::Completions { shell } => {
            clap_complete::generate(
                shell,
                &mut Cli::command(),
                "redlease",
                &mut std::io::stdout(),
            );
            return ExitCode::SUCCESS;
        }
        Command::Man { dir } => return man_page(dir.as_deref()),
        _ => cli,
    };
    init_logging(cli.verbose);
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
    let quiet = cli.quiet;
    let servers = || Servers::from_args(&cli.servers);
    match cli.command {
        Command::Run(args) => {
            let settings = RunSettings::from_args(args, quiet)?;
            run::run(&servers()?, settings).await
        }
        Command::Status(args) => inspect::status(&servers()?, &args.name, args.json).await,
        Command::List(args) => inspect::list(&servers()?, &args.pattern, args.json).await,
        Command::Release(args) => inspect::force_release(&servers()?, &args.name).await,
        Command::Demo(args) => demo::demo(&servers()?, args, quiet).await,
        Command::Bench(args) => bench::bench(&servers()?, args).await,
        Command::DemoStep(args) => demo::step(args).await,
        Command::Guardian(_) | Command::Completions { .. } | Command::Man { .. } => {
            Err(Failure::internal("handled before the runtime starts"))
        }
    }
}

/// Logs on stderr: warnings by default (the library reports risky server settings that way),
/// more with each `-v`, or as `RUST_LOG` says; in colour only on a terminal and without
/// `NO_COLOR`.
fn init_logging(verbose: u8) {
    use tracing_subscriber::EnvFilter;
    let level = match verbose {
        0 => "warn",
        1 => "info",
        2 => "debug",
        _ => "trace",
    };
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(level));
    let colour = std::io::stderr().is_terminal()
        && std::env::var_os("NO_COLOR").is_none_or(|value| value.is_empty());
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_env_filter(filter)
        .with_ansi(colour)
        .without_time()
        .with_target(verbose >= 2)
        .init();
}

/// `redlease man`: the page on stdout, or every command's page into `dir`.
fn man_page(dir: Option<&std::path::Path>) -> ExitCode {
    let written = match dir {
        Some(dir) => clap_mangen::generate_to(Cli::command(), dir),
        None => clap_mangen::Man::new(Cli::command()).render(&mut std::io::stdout()),
    };
    match written {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("redlease: cannot write the man page: {error}");
            ExitCode::from(EXIT_INTERNAL)
        }
    }
}

/// A clap error message on one line: its text up to the usage hint, whitespace folded.
fn one_line(message: &str) -> String {
    let body = message.split("\n\n").next().unwrap_or(message);
    let body = body.strip_prefix("error: ").unwrap_or(body);
    body.split_whitespace().collect::<Vec<_>>().join(" ")
}
