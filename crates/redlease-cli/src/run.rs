//! `redlease run`: take the lease, start the command under a guardian, keep the guardian told
//! of the lease's deadline, forward signals, follow job control, and release at the end.

use std::convert::Infallible;
use std::io::{IsTerminal as _, Write as _};
use std::os::fd::AsRawFd as _;
use std::path::PathBuf;
use std::process::{ExitCode, ExitStatus};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use nix::sys::signal::{Signal, killpg};
use nix::unistd::{Pid, getpgrp};
use redlease::{Client, Error, Guard, LockOptions, Permit, ReadGuard, ReleaseOutcome, Retry};
use tokio::io::{AsyncBufReadExt as _, AsyncWriteExt as _, BufReader, Lines};
use tokio::net::unix::{OwnedReadHalf, OwnedWriteHalf};
use tokio::process::Child;
use tokio::signal::unix::{SignalKind, signal};
use tokio::sync::mpsc;
use tracing::{debug, info, warn};

use crate::duration::human;
use crate::exit::{EXIT_LEASE_LOST, Failure, status_code};
use crate::guardian::{Ending, Order, Report, monotonic_now};
use crate::settings::{HoldKind, RunSettings, Servers, Wait, own_variables};
use crate::terminal;

/// How often a waiter retries even without a release notification.
const FALLBACK_POLL: Duration = Duration::from_secs(1);

/// How often the guardian is told the lease's deadline, when it moved. The guardian's copy is
/// never later than the truth, only up to this much earlier.
const RELAY_INTERVAL: Duration = Duration::from_millis(50);

/// The signals `redlease run` passes on to the command's process group.
const FORWARDED: [Signal; 9] = [
    Signal::SIGINT,
    Signal::SIGTERM,
    Signal::SIGHUP,
    Signal::SIGQUIT,
    Signal::SIGUSR1,
    Signal::SIGUSR2,
    Signal::SIGWINCH,
    Signal::SIGTSTP,
    Signal::SIGCONT,
];

pub(crate) async fn run(servers: &Servers, settings: RunSettings) -> Result<ExitCode, Failure> {
    let client = servers.connect().await?;
    let guard = acquire(&client, &settings).await?;
    info!(name = %settings.name, fence = guard.fence(), ttl = %human(guard.ttl()), "acquired the lease");
    let guardian = match Guardian::start(&settings, &guard).await {
        Ok(guardian) => guardian,
        Err(failure) => {
            let _ = guard.release().await;
            return Err(failure);
        }
    };
    Supervisor {
        client,
        guard,
        guardian,
        settings,
        ending: None,
    }
    .supervise()
    .await
}

/// What the command runs under: the lock, a semaphore's permit or a reader's share, each a
/// lease watched the same way (it derefs to its [`Guard`]).
enum Held {
    Lock(Guard),
    Permit(Permit),
    Reader(ReadGuard),
}

impl std::ops::Deref for Held {
    type Target = Guard;

    fn deref(&self) -> &Guard {
        match self {
            Self::Lock(guard) => guard,
            Self::Permit(permit) => permit,
            Self::Reader(reader) => reader,
        }
    }
}

impl std::ops::DerefMut for Held {
    fn deref_mut(&mut self) -> &mut Guard {
        match self {
            Self::Lock(guard) => guard,
            Self::Permit(permit) => permit,
            Self::Reader(reader) => reader,
        }
    }
}

impl Held {
    /// A permit's slot.
    fn slot(&self) -> Option<u32> {
        match self {
            Self::Permit(permit) => Some(permit.slot()),
            Self::Lock(_) | Self::Reader(_) => None,
        }
    }

    async fn release(self) -> Result<ReleaseOutcome, Error> {
        match self {
            Self::Lock(guard) => guard.release().await,
            Self::Permit(permit) => permit.release().await,
            Self::Reader(reader) => reader.release().await,
        }
    }
}

/// The binary to run again as the guardian: on Linux the running image itself, even if the
/// file was replaced (an upgrade) since.
pub(crate) fn own_executable() -> PathBuf {
    if cfg!(target_os = "linux") {
        PathBuf::from("/proc/self/exe")
    } else {
        std::env::current_exe().unwrap_or_else(|_| PathBuf::from("redlease"))
    }
}

/// Takes the lease, with a spinner on a terminal while waiting.
async fn acquire(client: &Client, settings: &RunSettings) -> Result<Held, Failure> {
    let host = nix::unistd::gethostname()
        .map_or_else(|_| "?".into(), |h| h.to_string_lossy().into_owned());
    let mut label = format!("{host} pid {}", std::process::id());
    if let Some(extra) = &settings.label {
        label.push(' ');
        label.push_str(extra);
    }
    let retry = match settings.wait {
        Wait::No => Retry::none(),
        Wait::AtMost(wait) => Retry::fixed(FALLBACK_POLL).timeout(wait),
        Wait::Forever => Retry::fixed(FALLBACK_POLL),
    };
    let mut options = LockOptions::new(settings.ttl)
        .auto_renew(true)
        .fair(settings.fair)
        .label(label)
        .retry(retry);
    if let Some(max_hold) = settings.max_hold {
        options = options.max_hold(max_hold);
    }
    let show_spinner =
        !settings.quiet && settings.wait != Wait::No && std::io::stderr().is_terminal();
    let name = &settings.name;
    let acquiring = async {
        match settings.hold {
            HoldKind::Lock => client.acquire(name, &options).await.map(Held::Lock),
            HoldKind::Permit(limit) => {
                let semaphore = client.semaphore(name, limit);
                semaphore.acquire(&options).await.map(Held::Permit)
            }
            HoldKind::Reader => client.rwlock(name).read(&options).await.map(Held::Reader),
        }
    };
    let result = if show_spinner {
        tokio::select! {
            result = acquiring => result,
            never = spin(client, &settings.name) => match never {},
        }
    } else {
        acquiring.await
    };
    if show_spinner {
        eprint!("\r\x1b[2K");
    }
    let mut guard = result.map_err(|error| match (error, settings.hold) {
        (
            Error::Contended { remaining_ttl } | Error::TimedOut { remaining_ttl, .. },
            HoldKind::Permit(limit),
        ) => Failure {
            code: settings.conflict_exit_code,
            message: format!(
                "lock {:?} not acquired: all {limit} permits are held{}",
                settings.name,
                remaining_ttl
                    .map(|t| format!(" (the first ends in {})", human(t)))
                    .unwrap_or_default()
            ),
        },
        (error @ (Error::Contended { .. } | Error::TimedOut { .. }), _) => Failure {
            code: settings.conflict_exit_code,
            message: format!("lock {:?} not acquired: {error}", settings.name),
        },
        (error @ Error::LimitMismatch { .. }, _) => {
            Failure::usage(format!("lock {:?}: {error}", settings.name))
        }
        (other, _) => Failure::from_lock_error(&other),
    })?;
    // A lock handed over by a release comes with the hand-off's short claim until the library
    // confirms it in the background; the guardian must start from the full TTL.
    if guard.remaining() < settings.ttl / 2 {
        guard
            .extend(settings.ttl)
            .await
            .map_err(|error| Failure::from_lock_error(&error))?;
    }
    Ok(guard)
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
                status = if info.is_held() {
                    crate::inspect::state(&info)
                } else {
                    "free, retrying".to_owned()
                };
            }
        }
        eprint!("\r\x1b[2K{frame} waiting for {name:?}: {status}");
        let _ = std::io::stderr().flush();
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    unreachable!("the spinner's ticks never run out")
}

/// `redlease run`'s side of the guardian.
struct Guardian {
    process: Child,
    orders: OwnedWriteHalf,
    reports: Lines<BufReader<OwnedReadHalf>>,
    /// The command's process group.
    group: Pid,
    /// The deadline the guardian was last told.
    told: Option<Instant>,
}

impl Guardian {
    /// Starts the guardian with the command's environment, tells it the deadline, and has it
    /// start the command (in the terminal's foreground if redlease has it).
    #[allow(
        unsafe_code,
        reason = "pre_exec: the guardian inherits its end of the socket"
    )]
    async fn start(settings: &RunSettings, guard: &Held) -> Result<Self, Failure> {
        let cannot = |e: std::io::Error| {
            Failure::internal(format!("cannot start the guardian process: {e}"))
        };
        let (ours, theirs) = std::os::unix::net::UnixStream::pair().map_err(cannot)?;
        ours.set_nonblocking(true).map_err(cannot)?;
        let ours = tokio::net::UnixStream::from_std(ours).map_err(cannot)?;
        let fd = theirs.as_raw_fd();
        let mut command = tokio::process::Command::new(own_executable());
        command
            .arg0("redlease")
            .arg("guardian")
            .arg("--socket-fd")
            .arg(fd.to_string())
            .arg("--kill-grace")
            .arg(format!("{}ns", settings.kill_grace.as_nanos()))
            .arg("--")
            .args(&settings.command)
            .process_group(0);
        for name in own_variables() {
            command.env_remove(name);
        }
        command
            .env("REDLEASE_NAME", &settings.name)
            .env("REDLEASE_FENCE", guard.fence().to_string());
        match guard.slot() {
            Some(slot) => command.env("REDLEASE_SLOT", slot.to_string()),
            None => command.env_remove("REDLEASE_SLOT"),
        };
        match settings.max_hold {
            Some(max_hold) => command.env("REDLEASE_DEADLINE", unix_millis(max_hold).to_string()),
            None => command.env_remove("REDLEASE_DEADLINE"),
        };
        // SAFETY: runs in the child between fork and exec and only calls fcntl, which is
        // async-signal-safe: the guardian's end of the socket survives the exec.
        unsafe {
            command.pre_exec(move || {
                let fd = std::os::fd::BorrowedFd::borrow_raw(fd);
                nix::fcntl::fcntl(
                    fd,
                    nix::fcntl::FcntlArg::F_SETFD(nix::fcntl::FdFlag::empty()),
                )?;
                Ok(())
            });
        }
        let process = command.spawn().map_err(cannot)?;
        drop(theirs);
        let (read, orders) = ours.into_split();
        let mut guardian = Self {
            process,
            orders,
            reports: BufReader::new(read).lines(),
            group: Pid::from_raw(0),
            told: None,
        };
        guardian.tell_deadline(guard).await;
        let terminal = terminal::we_are_in_the_foreground();
        guardian.send(Order::Start { terminal }).await;
        loop {
            match guardian.next_report().await {
                Some(Report::Started(pid)) => {
                    guardian.group = pid;
                    debug!(pid = pid.as_raw(), terminal, "the command started");
                    return Ok(guardian);
                }
                Some(Report::Failed { code, message }) => {
                    let _ = guardian.process.wait().await;
                    return Err(Failure { code, message });
                }
                Some(_) => {}
                None => {
                    let status = guardian.process.wait().await;
                    return Err(Failure::internal(format!(
                        "the guardian process ended before starting the command ({status:?})"
                    )));
                }
            }
        }
    }

    async fn send(&mut self, order: Order) {
        // A guardian that is gone is noticed by waiting for it.
        let _ = self.orders.write_all(order.encode().as_bytes()).await;
    }

    async fn next_report(&mut self) -> Option<Report> {
        loop {
            let line = self.reports.next_line().await.ok().flatten()?;
            if let Some(report) = Report::decode(&line) {
                return Some(report);
            }
        }
    }

    /// Tells the guardian the lease's deadline if it moved since last time.
    async fn tell_deadline(&mut self, guard: &Guard) {
        let valid_until = guard.valid_until();
        if self.told == Some(valid_until) {
            return;
        }
        self.told = Some(valid_until);
        // In this order, any error makes the deadline early, never late.
        let now = monotonic_now();
        let deadline = now + guard.remaining();
        self.send(Order::Deadline(deadline)).await;
    }

    fn forward(&self, signal: Signal) {
        debug!(signal = %signal, "forwarding a signal to the command");
        // The command may already be gone: nothing to do then.
        let _ = killpg(self.group, signal);
    }
}

/// Unix time in milliseconds `from_now` from now.
fn unix_millis(from_now: Duration) -> u128 {
    (SystemTime::now() + from_now)
        .duration_since(UNIX_EPOCH)
        .map_or(0, |t| t.as_millis())
}

/// The signals redlease handles while the command runs, as one stream.
fn install_signals() -> Result<mpsc::UnboundedReceiver<Signal>, Failure> {
    let (sender, receiver) = mpsc::unbounded_channel();
    for forwarded in FORWARDED {
        let mut stream = signal(SignalKind::from_raw(forwarded as i32))
            .map_err(|e| Failure::internal(format!("cannot handle signals: {e}")))?;
        let sender = sender.clone();
        tokio::spawn(async move {
            while stream.recv().await.is_some() {
                if sender.send(forwarded).is_err() {
                    break;
                }
            }
        });
    }
    Ok(receiver)
}

struct Supervisor {
    client: Client,
    guard: Held,
    guardian: Guardian,
    settings: RunSettings,
    /// Why the command is being ended by us or the guardian (then redlease exits 79).
    ending: Option<String>,
}

impl Supervisor {
    /// Waits for the guardian (and so the command) to finish while watching the lease;
    /// returns the exit status to use.
    async fn supervise(mut self) -> Result<ExitCode, Failure> {
        // Installed after the guardian started, so that it and the command inherit the
        // dispositions redlease was given (an ignored SIGINT stays ignored).
        let mut signals = install_signals()?;
        let lost = self.guard.lost();
        tokio::pin!(lost);
        let mut lost_seen = false;
        let mut reports_open = true;
        let mut relay = tokio::time::interval(RELAY_INTERVAL);
        let status = loop {
            tokio::select! {
                status = self.guardian.process.wait() => break status,
                line = self.guardian.reports.next_line(), if reports_open => match line.ok().flatten() {
                    Some(line) => {
                        if let Some(report) = Report::decode(&line) {
                            self.on_report(&report);
                        }
                    }
                    None => reports_open = false,
                },
                reason = &mut lost, if !lost_seen => {
                    lost_seen = true;
                    self.end(format!("the lease on {:?} was lost ({reason})", self.settings.name));
                    self.guardian.send(Order::Stop).await;
                }
                _ = relay.tick() => self.guardian.tell_deadline(&self.guard).await,
                Some(signal) = signals.recv() => match signal {
                    Signal::SIGCONT => self.resume().await,
                    other => self.guardian.forward(other),
                },
            }
        };
        while let Some(report) = self.guardian.next_report().await {
            self.on_report(&report);
        }
        terminal::take_back(self.guardian.group);
        let status =
            status.map_err(|e| Failure::internal(format!("cannot wait for the guardian: {e}")))?;
        self.after_guardian(status).await;
        let name = self.settings.name.clone();
        if let Ok(outcome) = self.guard.release().await
            && outcome != ReleaseOutcome::Released
            && self.ending.is_none()
        {
            eprintln!(
                "redlease: the lease on {name:?} had ended before the command finished ({outcome:?})"
            );
        }
        Ok(ExitCode::from(match self.ending {
            Some(_) => EXIT_LEASE_LOST,
            None => status_code(status),
        }))
    }

    /// Records (and prints, the first time) why the command is being ended.
    fn end(&mut self, why: String) {
        if self.ending.is_none() {
            eprintln!(
                "redlease: {why}; stopping the command (SIGTERM, SIGKILL after {})",
                human(self.settings.kill_grace)
            );
            self.ending = Some(why);
        }
    }

    fn on_report(&mut self, report: &Report) {
        match *report {
            Report::Stopped(signal @ (Signal::SIGTSTP | Signal::SIGTTIN | Signal::SIGTTOU)) => {
                info!(signal = %signal, "the command was stopped; stopping redlease with it");
                terminal::take_back(self.guardian.group);
                terminal::stop_self(signal);
            }
            Report::Stopped(signal) => {
                info!(signal = %signal, "the command was stopped; the lease is still renewed");
            }
            Report::Ending(Ending::Deadline) => {
                let remaining = self.guard.remaining();
                let why = format!(
                    "the lease on {:?} {} and is not being renewed ({})",
                    self.settings.name,
                    if remaining.is_zero() {
                        "ran out".to_owned()
                    } else {
                        format!("ends in {}", human(remaining))
                    },
                    if self.settings.max_hold.is_some() {
                        "maximum hold time, Redis unreachable, or redlease stopped"
                    } else {
                        "Redis unreachable, or redlease stopped"
                    }
                );
                self.end(why);
            }
            Report::Ending(Ending::Leftovers) => {
                info!("the command exited; stopping the processes it left behind");
            }
            Report::Ending(Ending::Lost | Ending::Orphaned)
            | Report::Started(_)
            | Report::Failed { .. } => {}
        }
    }

    /// After a SIGCONT (`fg`, `bg`, or a debugger letting go): confirm the lease before the
    /// command may go on; if it is gone, the command is ended instead.
    async fn resume(&mut self) {
        if self.ending.is_some() {
            return;
        }
        if self.still_ours().await {
            self.guardian.tell_deadline(&self.guard).await;
            if terminal::we_are_in_the_foreground() {
                terminal::hand_over(getpgrp(), self.guardian.group);
            }
            self.guardian.forward(Signal::SIGCONT);
        } else {
            self.end(format!(
                "the lease on {:?} was lost while redlease was stopped",
                self.settings.name
            ));
            self.guardian.send(Order::Stop).await;
        }
    }

    /// Whether the lease is still valid here and still ours on the servers. When Redis does
    /// not answer, the local deadline decides (the guardian enforces it).
    async fn still_ours(&self) -> bool {
        if !self.guard.is_held() {
            return false;
        }
        match self.client.inspect(&self.settings.name).await {
            Ok(info) => {
                let ours = self.guard.token().fingerprint();
                let mut holders = info.holder.iter().chain(&info.readers).chain(&info.permits);
                holders.any(|holder| holder.token_fingerprint == ours) && self.guard.is_held()
            }
            Err(error) => {
                warn!(%error, "cannot confirm the lease after a stop; trusting its deadline");
                self.guard.is_held()
            }
        }
    }

    /// A guardian killed by a signal leaves its command unguarded: end it here.
    async fn after_guardian(&mut self, status: ExitStatus) {
        use std::os::unix::process::ExitStatusExt as _;
        let Some(signal) = status.signal() else {
            return;
        };
        self.end(format!(
            "the guardian process was killed by signal {signal}"
        ));
        let _ = killpg(self.guardian.group, Signal::SIGTERM);
        let _ = killpg(self.guardian.group, Signal::SIGCONT);
        tokio::time::sleep(self.settings.kill_grace.min(self.guard.remaining())).await;
        let _ = killpg(self.guardian.group, Signal::SIGKILL);
    }
}
