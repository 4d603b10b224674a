//! `redlease run`: take the lease, run the command in its own process group with the lease
//! renewed, forward signals to it, stop it when the lease is lost (or about to be), release.

use std::convert::Infallible;
use std::ffi::OsString;
use std::io::{IsTerminal, Write};
use std::os::unix::process::ExitStatusExt;
use std::process::{ExitCode, ExitStatus};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use clap::Args;
use nix::sys::signal::{Signal, killpg};
use nix::unistd::Pid;
use redlease::{Client, Error, Guard, LockOptions, Retry};
use tokio::process::{Child, Command};
use tokio::signal::unix::{SignalKind, signal};

use crate::connect::ServerArgs;
use crate::duration::human;
use crate::{EXIT_INTERNAL, EXIT_LEASE_LOST, EXIT_NOT_ACQUIRED, Failure, duration_arg};

/// How often a waiter retries even without a release notification.
const FALLBACK_POLL: Duration = Duration::from_secs(1);

#[derive(Debug, Args)]
pub(crate) struct RunArgs {
    /// Lease TTL: how long the lock outlives this process if it dies. Renewed every third.
    #[arg(long, value_name = "DUR", value_parser = duration_arg, default_value = "15s")]
    ttl: Duration,
    /// Wait at most DUR for the lock (default: as long as it takes).
    #[arg(long, value_name = "DUR", value_parser = duration_arg, conflicts_with = "no_wait")]
    wait: Option<Duration>,
    /// Do not wait: if the lock is held, exit at once with the conflict code.
    #[arg(long, short = 'n')]
    no_wait: bool,
    /// Hold the lock for at most DUR in total: the command is stopped before then.
    #[arg(long, value_name = "DUR", value_parser = duration_arg)]
    max_hold: Option<Duration>,
    /// Time between SIGTERM and SIGKILL when the lease is lost. The command is also sent
    /// SIGTERM this long before the lease would expire when renewals keep failing, so that it
    /// is gone before anyone else can get the lock. At most half the TTL.
    #[arg(long, value_name = "DUR", value_parser = duration_arg, default_value = "5s")]
    kill_grace: Duration,
    /// Describe the holder in `status` and `list` (after host and pid).
    #[arg(long, value_name = "TEXT")]
    label: Option<String>,
    /// Exit status when the lock is not acquired.
    #[arg(long, value_name = "CODE", default_value_t = EXIT_NOT_ACQUIRED)]
    conflict_exit_code: u8,
    /// Serve waiters in arrival order (all waiters of this lock must use --fair).
    #[arg(long)]
    fair: bool,
    /// Run this shell command (`sh -c`) instead of CMD.
    #[arg(short = 'c', value_name = "SHELL_COMMAND", conflicts_with = "command")]
    shell: Option<String>,
    /// The lock's name.
    name: String,
    /// The command to run, after `--`.
    #[arg(last = true, value_name = "CMD")]
    command: Vec<OsString>,
}

pub(crate) async fn run(
    servers: &ServerArgs,
    args: RunArgs,
    quiet: bool,
) -> Result<ExitCode, Failure> {
    let mut command = child_command(&args)?;
    if args.kill_grace > args.ttl / 2 {
        return Err(Failure::usage(format!(
            "--kill-grace {} must be at most half the TTL ({})",
            human(args.kill_grace),
            human(args.ttl / 2)
        )));
    }
    let client = servers.client().await?;
    let guard = acquire(&client, &args, quiet).await?;

    command
        .env("REDLEASE_NAME", &args.name)
        .env("REDLEASE_FENCE", guard.fence().to_string())
        .env(
            "REDLEASE_DEADLINE",
            deadline_millis(&guard, args.max_hold).to_string(),
        )
        .process_group(0);
    let mut signals = Signals::install()?;
    let child = match command.spawn() {
        Ok(child) => child,
        Err(error) => {
            let _ = guard.release().await;
            let code = match error.kind() {
                std::io::ErrorKind::NotFound => 127,
                std::io::ErrorKind::PermissionDenied => 126,
                _ => EXIT_INTERNAL,
            };
            return Err(Failure {
                code,
                message: format!("cannot start the command: {error}"),
            });
        }
    };
    supervise(child, guard, &args, &mut signals).await
}

/// The command to run, from `-c` or the words after `--`.
fn child_command(args: &RunArgs) -> Result<Command, Failure> {
    if let Some(shell) = &args.shell {
        let mut command = Command::new("sh");
        command.arg("-c").arg(shell);
        return Ok(command);
    }
    let (program, rest) = args.command.split_first().ok_or_else(|| {
        Failure::usage(
            "no command given: use `redlease run NAME -- CMD [ARGS…]` or `-c 'shell command'`",
        )
    })?;
    let mut command = Command::new(program);
    command.args(rest);
    Ok(command)
}

/// Takes the lease, with a spinner on a terminal while waiting.
async fn acquire(client: &Client, args: &RunArgs, quiet: bool) -> Result<Guard, Failure> {
    let host = nix::unistd::gethostname()
        .map_or_else(|_| "?".into(), |h| h.to_string_lossy().into_owned());
    let mut label = format!("{host} pid {}", std::process::id());
    if let Some(extra) = &args.label {
        label.push(' ');
        label.push_str(extra);
    }
    let retry = match (args.no_wait, args.wait) {
        (true, _) => Retry::none(),
        (false, Some(wait)) => Retry::fixed(FALLBACK_POLL).timeout(wait),
        (false, None) => Retry::fixed(FALLBACK_POLL),
    };
    let mut options = LockOptions::new(args.ttl)
        .auto_renew(true)
        .fair(args.fair)
        .label(label)
        .retry(retry);
    if let Some(max_hold) = args.max_hold {
        options = options.max_hold(max_hold);
    }
    let show_spinner = !quiet && !args.no_wait && std::io::stderr().is_terminal();
    let acquiring = client.acquire(&args.name, &options);
    let result = if show_spinner {
        tokio::select! {
            result = acquiring => result,
            never = spin(client, &args.name) => match never {},
        }
    } else {
        acquiring.await
    };
    if show_spinner {
        eprint!("\r\x1b[2K");
    }
    result.map_err(|error| match error {
        Error::Contended { .. } | Error::TimedOut { .. } => Failure {
            code: args.conflict_exit_code,
            message: format!("lock {:?} not acquired: {error}", args.name),
        },
        other => Failure::from_lock_error(&other),
    })
}

/// Shows who holds the lock and when it may come free, until cancelled.
async fn spin(client: &Client, name: &str) -> Infallible {
    const FRAMES: [char; 10] = ['⠋', '⠙', '⠹', '⠸', '⠼', '⠴', '⠦', '⠧', '⠇', '⠏'];
    let mut status = String::from("waiting");
    let mut last_look: Option<Instant> = None;
    for tick in 0usize.. {
        let frame = FRAMES[tick % FRAMES.len()];
        if last_look.is_none_or(|at| at.elapsed() >= Duration::from_secs(1)) {
            last_look = Some(Instant::now());
            if let Ok(info) = client.inspect(name).await {
                status = match info.holder {
                    Some(holder) => format!(
                        "held by {} (fence {}){}",
                        if holder.label.is_empty() {
                            "?"
                        } else {
                            &holder.label
                        },
                        info.fence,
                        holder
                            .remaining_ttl
                            .map(|t| format!(", lease ends in {}", human(t)))
                            .unwrap_or_default()
                    ),
                    None => "free, retrying".to_owned(),
                };
            }
        }
        eprint!("\r\x1b[2K{frame} waiting for {name:?}: {status}");
        let _ = std::io::stderr().flush();
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    unreachable!("the spinner's ticks never run out")
}

/// Unix time in milliseconds until which the command may run: the hold cap if there is one,
/// otherwise the lease's current validity (which renewals move forward).
fn deadline_millis(guard: &Guard, max_hold: Option<Duration>) -> u128 {
    let until = max_hold.unwrap_or_else(|| guard.remaining());
    (SystemTime::now() + until)
        .duration_since(UNIX_EPOCH)
        .map_or(0, |t| t.as_millis())
}

/// The signals forwarded to the command.
struct Signals {
    interrupt: tokio::signal::unix::Signal,
    terminate: tokio::signal::unix::Signal,
    hangup: tokio::signal::unix::Signal,
}

impl Signals {
    fn install() -> Result<Self, Failure> {
        let listen = |kind| {
            signal(kind).map_err(|e| Failure::internal(format!("cannot handle signals: {e}")))
        };
        Ok(Self {
            interrupt: listen(SignalKind::interrupt())?,
            terminate: listen(SignalKind::terminate())?,
            hangup: listen(SignalKind::hangup())?,
        })
    }

    async fn next(&mut self) -> Signal {
        tokio::select! {
            _ = self.interrupt.recv() => Signal::SIGINT,
            _ = self.terminate.recv() => Signal::SIGTERM,
            _ = self.hangup.recv() => Signal::SIGHUP,
        }
    }
}

/// Waits for the command while watching the lease; returns the exit status to use.
async fn supervise(
    mut child: Child,
    guard: Guard,
    args: &RunArgs,
    signals: &mut Signals,
) -> Result<ExitCode, Failure> {
    let group = child
        .id()
        .and_then(|id| i32::try_from(id).ok())
        .map(Pid::from_raw);
    let send = |signal: Signal| {
        if let Some(group) = group {
            // The command may already be gone: nothing to do then.
            let _ = killpg(group, signal);
        }
    };
    let lost = guard.lost();
    tokio::pin!(lost);
    let stop_reason = loop {
        let warning_at = guard
            .valid_until()
            .checked_sub(args.kill_grace)
            .unwrap_or_else(Instant::now);
        tokio::select! {
            status = child.wait() => {
                let status = status.map_err(|e| Failure::internal(format!("cannot wait for the command: {e}")))?;
                if let Ok(outcome) = guard.release().await
                    && outcome != redlease::ReleaseOutcome::Released
                {
                    eprintln!("redlease: the lease on {:?} had ended before the command finished ({outcome:?})", args.name);
                }
                return Ok(ExitCode::from(exit_code(status)));
            }
            forwarded = signals.next() => send(forwarded),
            reason = &mut lost => break format!("the lease on {:?} was lost ({reason})", args.name),
            () = tokio::time::sleep_until(warning_at.into()) => {
                if guard.remaining() <= args.kill_grace {
                    break format!(
                        "the lease on {:?} ends in {} and is not being renewed{}",
                        args.name,
                        human(guard.remaining()),
                        if args.max_hold.is_some() { " (maximum hold time, or Redis unreachable)" } else { " (Redis unreachable?)" }
                    );
                }
            }
        }
    };
    eprintln!(
        "redlease: {stop_reason}; stopping the command (SIGTERM, SIGKILL after {})",
        human(args.kill_grace)
    );
    send(Signal::SIGTERM);
    let kill_at = Instant::now() + args.kill_grace;
    loop {
        tokio::select! {
            _ = child.wait() => break,
            forwarded = signals.next() => send(forwarded),
            () = tokio::time::sleep_until(kill_at.into()) => {
                send(Signal::SIGKILL);
                let _ = child.wait().await;
                break;
            }
        }
    }
    let _ = guard.release().await;
    Ok(ExitCode::from(EXIT_LEASE_LOST))
}

/// The command's exit status as ours: its code, or 128 + the signal that killed it.
fn exit_code(status: ExitStatus) -> u8 {
    match (status.code(), status.signal()) {
        (Some(code), _) => u8::try_from(code).unwrap_or(EXIT_INTERNAL),
        (None, Some(signal)) => u8::try_from(128 + signal).unwrap_or(EXIT_INTERNAL),
        (None, None) => EXIT_INTERNAL,
    }
}
