//! The guardian: a small process between `redlease run` and its command that ends the command
//! before its lease could pass to anyone else, whatever happens to `redlease` itself.
//!
//! `redlease run` tells it each new lease deadline over a socket pair. It starts the command
//! as the leader of a new process group, and sends the group (and, on Linux, every descendant,
//! as their child subreaper, so that `setsid` does not help escape) SIGTERM `--kill-grace`
//! before the deadline and SIGKILL at it — or at once, SIGKILL after the grace, when the socket
//! closes because `redlease` died, or when `redlease` says the lease was lost. It lives in a
//! process group of its own, so a job-control stop of `redlease` (Ctrl-Z, `kill -STOP %1`)
//! does not stop it, and it ignores the signals that would end it by mistake (INT, TERM, HUP,
//! QUIT, TSTP, TTIN, TTOU, USR1, USR2, WINCH: `pkill redlease` must not leave the command
//! unguarded).
//!
//! It is the `redlease` binary run again (`redlease guardian`, hidden) rather than a fork of
//! `redlease run`: after `fork` a multi-threaded process may only make async-signal-safe calls
//! until `exec`, while the guardian needs timers and allocation; a fresh image also holds
//! none of redlease's secrets or connections.

use std::io;
use std::os::fd::{AsFd as _, FromRawFd as _, OwnedFd};
use std::os::unix::process::CommandExt as _;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use nix::errno::Errno;
use nix::sys::signal::{Signal, kill, killpg};
use nix::sys::wait::{WaitPidFlag, WaitStatus, waitpid};
use nix::unistd::Pid;
use tokio::io::{AsyncBufReadExt as _, AsyncWriteExt as _, BufReader};
use tokio::net::unix::OwnedWriteHalf;
use tokio::signal::unix::{SignalKind, signal};

use crate::cli::GuardianArgs;
use crate::exit::{EXIT_CANNOT_EXECUTE, EXIT_INTERNAL, EXIT_NOT_FOUND};

/// The SIGKILL comes this share of the grace (at most [`MAX_KILL_MARGIN`]) before the deadline,
/// so that a guardian woken late by a busy machine still acts before the key expires (the
/// deadline's own margin, the drift allowance, is only about 1 % of the TTL).
const KILL_MARGIN_SHARE: u32 = 10;
const MAX_KILL_MARGIN: Duration = Duration::from_millis(50);

/// How often the last SIGKILL is repeated while descendants remain (a process forking as it
/// was being killed leaves a child the previous round did not see).
const KILL_REPEAT: Duration = Duration::from_millis(20);

/// What `redlease run` tells its guardian, one line each.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Order {
    /// The lease is valid until this reading of `CLOCK_MONOTONIC` (shared by all processes).
    Deadline(Duration),
    /// Start the command; `terminal`: give it the foreground of the terminal on stdin.
    Start { terminal: bool },
    /// The lease is lost: end the command now (SIGKILL after the grace).
    Stop,
}

/// What the guardian tells `redlease run`, one line each.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Report {
    /// The command runs, as this process (and process group).
    Started(Pid),
    /// The command could not be started: exit with `code`, saying `message`.
    Failed { code: u8, message: String },
    /// The command was stopped by this signal.
    Stopped(Signal),
    /// The guardian has begun ending the command, for this reason.
    Ending(Ending),
}

/// Why the guardian ends the command.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Ending {
    /// The lease's deadline is less than the grace away and was not moved.
    Deadline,
    /// `redlease run` said the lease is lost.
    Lost,
    /// `redlease run` is gone.
    Orphaned,
    /// The command exited and left processes behind.
    Leftovers,
}

impl Order {
    pub(crate) fn encode(self) -> String {
        match self {
            Self::Deadline(at) => format!("deadline {}\n", at.as_nanos()),
            Self::Start { terminal } => format!("start {terminal}\n"),
            Self::Stop => "stop\n".to_owned(),
        }
    }

    fn decode(line: &str) -> Option<Self> {
        let mut words = line.split_whitespace();
        match (words.next()?, words.next()) {
            ("deadline", Some(nanos)) => nanos
                .parse()
                .ok()
                .map(|nanos| Self::Deadline(Duration::from_nanos(nanos))),
            ("start", Some(terminal)) => terminal
                .parse()
                .ok()
                .map(|terminal| Self::Start { terminal }),
            ("stop", None) => Some(Self::Stop),
            _ => None,
        }
    }
}

impl Report {
    fn encode(&self) -> String {
        match self {
            Self::Started(pid) => format!("started {pid}\n"),
            Self::Failed { code, message } => format!("failed {code} {message}\n"),
            Self::Stopped(signal) => format!("stopped {}\n", *signal as i32),
            Self::Ending(why) => format!(
                "ending {}\n",
                match why {
                    Ending::Deadline => "deadline",
                    Ending::Lost => "lost",
                    Ending::Orphaned => "orphaned",
                    Ending::Leftovers => "leftovers",
                }
            ),
        }
    }

    pub(crate) fn decode(line: &str) -> Option<Self> {
        let (word, rest) = line.split_once(' ').unwrap_or((line, ""));
        match word {
            "started" => rest
                .parse()
                .ok()
                .map(|pid| Self::Started(Pid::from_raw(pid))),
            "failed" => {
                let (code, message) = rest.split_once(' ')?;
                Some(Self::Failed {
                    code: code.parse().ok()?,
                    message: message.to_owned(),
                })
            }
            "stopped" => rest
                .parse()
                .ok()
                .and_then(|n: i32| Signal::try_from(n).ok())
                .map(Self::Stopped),
            "ending" => Some(Self::Ending(match rest {
                "deadline" => Ending::Deadline,
                "lost" => Ending::Lost,
                "orphaned" => Ending::Orphaned,
                "leftovers" => Ending::Leftovers,
                _ => return None,
            })),
            _ => None,
        }
    }
}

/// `CLOCK_MONOTONIC` now: the clock `Instant` reads on Unix, comparable across processes.
pub(crate) fn monotonic_now() -> Duration {
    nix::time::clock_gettime(nix::time::ClockId::CLOCK_MONOTONIC).map_or(Duration::ZERO, |now| {
        Duration::new(
            u64::try_from(now.tv_sec()).unwrap_or(0),
            u32::try_from(now.tv_nsec()).unwrap_or(0),
        )
    })
}

/// `redlease guardian`: runs until the command and everything it started are gone, and exits
/// with the command's status (128 + N if signal N killed it).
pub(crate) fn main(args: GuardianArgs) -> ExitCode {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build();
    match runtime {
        Ok(runtime) => ExitCode::from(runtime.block_on(guard(args))),
        Err(_) => ExitCode::from(EXIT_INTERNAL),
    }
}

#[allow(
    unsafe_code,
    reason = "taking ownership of the inherited socket descriptor"
)]
async fn guard(args: GuardianArgs) -> u8 {
    // SAFETY: `redlease run` opened this descriptor for us and passed its number; nothing else
    // in this process owns it.
    let socket = unsafe { OwnedFd::from_raw_fd(args.socket_fd) };
    // Ours alone: the command must not hold it open, or redlease's death would go unseen.
    let _ = nix::fcntl::fcntl(
        socket.as_fd(),
        nix::fcntl::FcntlArg::F_SETFD(nix::fcntl::FdFlag::FD_CLOEXEC),
    );
    let socket = std::os::unix::net::UnixStream::from(socket);
    let Ok(socket) = socket
        .set_nonblocking(true)
        .and_then(|()| tokio::net::UnixStream::from_std(socket))
    else {
        return EXIT_INTERNAL;
    };
    become_subreaper();
    let (read, write) = socket.into_split();
    let mut orders = BufReader::new(read).lines();

    let mut deadline = None;
    let terminal = loop {
        let Ok(Some(line)) = orders.next_line().await else {
            return 0;
        };
        match Order::decode(&line) {
            Some(Order::Deadline(at)) => deadline = Some(instant_at(at)),
            Some(Order::Start { terminal }) => break terminal,
            Some(Order::Stop) | None => return 0,
        }
    };
    let Some(deadline) = deadline else {
        return EXIT_INTERNAL;
    };
    let mut watch = Watch {
        reports: write,
        command: Pid::from_raw(0),
        deadline,
        grace: args.kill_grace,
        ending: None,
        status: None,
        children_left: true,
    };
    match spawn(&args, terminal) {
        Ok(pid) => {
            watch.command = pid;
            watch.report(Report::Started(pid)).await;
        }
        Err(error) => {
            let code = match error.kind() {
                io::ErrorKind::NotFound => EXIT_NOT_FOUND,
                io::ErrorKind::PermissionDenied => EXIT_CANNOT_EXECUTE,
                _ => EXIT_INTERNAL,
            };
            let message = format!("cannot start the command: {error}");
            watch.report(Report::Failed { code, message }).await;
            return code;
        }
    }
    // Installed only now, after the command inherited our dispositions (an ignored SIGINT of
    // a background job stays ignored for it).
    for kind in [
        Signal::SIGINT,
        Signal::SIGTERM,
        Signal::SIGHUP,
        Signal::SIGQUIT,
        Signal::SIGTSTP,
        Signal::SIGTTIN,
        Signal::SIGTTOU,
        Signal::SIGUSR1,
        Signal::SIGUSR2,
        Signal::SIGWINCH,
    ] {
        // A handler that is never polled: the signal is caught and dropped.
        let _ = signal(SignalKind::from_raw(kind as i32));
    }
    let Ok(mut children) = signal(SignalKind::child()) else {
        watch.begin_ending(Ending::Orphaned, Instant::now()).await;
        return watch.finish().await;
    };
    watch.reap().await;
    let mut orders_open = true;
    while !watch.done() {
        tokio::select! {
            line = orders.next_line(), if orders_open => {
                if let Some(line) = line.ok().flatten() {
                    match Order::decode(&line) {
                        Some(Order::Deadline(at)) => watch.deadline = instant_at(at),
                        Some(Order::Stop) => {
                            let kill_at = Instant::now() + watch.grace;
                            watch.begin_ending(Ending::Lost, kill_at).await;
                        }
                        Some(Order::Start { .. }) | None => {}
                    }
                } else {
                    orders_open = false;
                    let kill_at = watch.kill_deadline().min(Instant::now() + watch.grace);
                    watch.begin_ending(Ending::Orphaned, kill_at).await;
                }
            },
            _ = children.recv() => watch.reap().await,
            () = tokio::time::sleep_until(watch.next_step().into()) => watch.step().await,
        }
    }
    watch.exit_code()
}

/// The `Instant` of a `CLOCK_MONOTONIC` reading. The clocks are read in the order that makes
/// any error fall on the early side.
fn instant_at(monotonic: Duration) -> Instant {
    let now = Instant::now();
    now + monotonic.saturating_sub(monotonic_now())
}

/// Starts the command as the leader of a new process group; with `terminal`, that group is
/// made the terminal's foreground before the command runs, so that its first read of the
/// terminal does not stop it.
#[allow(
    unsafe_code,
    reason = "pre_exec: the command's group takes the terminal before exec"
)]
fn spawn(args: &GuardianArgs, terminal: bool) -> io::Result<Pid> {
    let (program, rest) = args
        .command
        .split_first()
        .ok_or_else(|| io::Error::other("no command"))?;
    let mut command = std::process::Command::new(program);
    command.args(rest).process_group(0);
    if terminal {
        // SAFETY: runs in the child between fork and exec, and makes only async-signal-safe
        // calls (sigprocmask, getpgrp, tcsetpgrp).
        unsafe {
            command.pre_exec(|| {
                take_foreground();
                Ok(())
            });
        }
    }
    let child = command.spawn()?;
    let pid = i32::try_from(child.id()).map_err(io::Error::other)?;
    // Reaped by `Watch::reap` (waitpid of any child), not through `Child`.
    drop(child);
    Ok(Pid::from_raw(pid))
}

/// In the command's process, before exec: its group takes the terminal's foreground. A
/// background process may do so only with SIGTTOU blocked; failing, the command runs anyway.
#[allow(
    unsafe_code,
    reason = "borrowing stdin's descriptor without std's buffered handle"
)]
fn take_foreground() {
    use nix::sys::signal::{SigSet, SigmaskHow, sigprocmask};
    let mut ttou = SigSet::empty();
    ttou.add(Signal::SIGTTOU);
    let _ = sigprocmask(SigmaskHow::SIG_BLOCK, Some(&ttou), None);
    // SAFETY: descriptor 0 stays open for the duration of this call.
    let stdin = unsafe { std::os::fd::BorrowedFd::borrow_raw(0) };
    let _ = nix::unistd::tcsetpgrp(stdin, nix::unistd::getpgrp());
    let _ = sigprocmask(SigmaskHow::SIG_UNBLOCK, Some(&ttou), None);
}

#[cfg(target_os = "linux")]
fn become_subreaper() {
    // Orphaned descendants (a double fork, `setsid`) become our children, so we see them.
    let _ = nix::sys::prctl::set_child_subreaper(true);
}

#[cfg(not(target_os = "linux"))]
fn become_subreaper() {}

/// Every process below `root`, with its process group, from `/proc`.
#[cfg(target_os = "linux")]
fn descendants(root: Pid) -> Vec<(Pid, Pid)> {
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    // (pid, parent, group) of every process.
    let table: Vec<(i32, i32, i32)> = entries
        .flatten()
        .filter_map(|entry| {
            let pid = entry.file_name().to_str()?.parse().ok()?;
            let stat = std::fs::read_to_string(entry.path().join("stat")).ok()?;
            // `pid (comm) state ppid pgrp …`; comm may hold spaces and parentheses.
            let mut fields = stat.get(stat.rfind(')')? + 1..)?.split_whitespace().skip(1);
            let parent = fields.next()?.parse().ok()?;
            let group = fields.next()?.parse().ok()?;
            Some((pid, parent, group))
        })
        .collect();
    let mut found = Vec::new();
    let mut frontier = vec![root.as_raw()];
    while let Some(parent) = frontier.pop() {
        for &(pid, _, group) in table.iter().filter(|(_, p, _)| *p == parent) {
            found.push((Pid::from_raw(pid), Pid::from_raw(group)));
            frontier.push(pid);
        }
    }
    found
}

#[cfg(not(target_os = "linux"))]
fn descendants(_root: Pid) -> Vec<(Pid, Pid)> {
    Vec::new()
}

/// The guardian's state once the command runs.
struct Watch {
    reports: OwnedWriteHalf,
    /// The command's pid, which is also its process group's id.
    command: Pid,
    /// Until when the lease is valid (as `redlease run` last said).
    deadline: Instant,
    grace: Duration,
    /// Once ending: when SIGKILL is (or was last) sent.
    ending: Option<Instant>,
    /// The command's exit status, once it has exited.
    status: Option<u8>,
    /// Whether any child (the command, or an orphan handed to us) may still live.
    children_left: bool,
}

impl Watch {
    async fn report(&mut self, report: Report) {
        // `redlease run` may be gone; the guardian carries on without it.
        let _ = self.reports.write_all(report.encode().as_bytes()).await;
    }

    fn done(&self) -> bool {
        self.status.is_some() && !self.children_left
    }

    /// The latest moment for SIGKILL: just before the lease's deadline.
    fn kill_deadline(&self) -> Instant {
        let margin = (self.grace / KILL_MARGIN_SHARE).min(MAX_KILL_MARGIN);
        self.deadline.checked_sub(margin).unwrap_or(self.deadline)
    }

    fn exit_code(&self) -> u8 {
        self.status.unwrap_or(EXIT_INTERNAL)
    }

    /// The next instant something is due: SIGTERM a grace before the deadline, or the next
    /// SIGKILL round.
    fn next_step(&self) -> Instant {
        match self.ending {
            Some(kill_at) => kill_at,
            None => self
                .deadline
                .checked_sub(self.grace)
                .unwrap_or(self.deadline),
        }
    }

    async fn step(&mut self) {
        if self.ending.is_some() {
            self.signal_all(Signal::SIGKILL);
            self.ending = Some(Instant::now() + KILL_REPEAT);
        } else {
            let kill_at = self.kill_deadline();
            self.begin_ending(Ending::Deadline, kill_at).await;
        }
    }

    /// SIGTERM (and SIGCONT, so that a stopped process can act on it) to everything, and
    /// SIGKILL at `kill_at`. Once begun, nothing reprieves the command.
    async fn begin_ending(&mut self, why: Ending, kill_at: Instant) {
        if self.ending.is_some() {
            return;
        }
        self.ending = Some(kill_at);
        self.report(Report::Ending(why)).await;
        self.signal_all(Signal::SIGTERM);
        self.signal_all(Signal::SIGCONT);
    }

    /// Sends `signal` to the command's group and to every descendant outside it.
    fn signal_all(&self, signal: Signal) {
        let family = descendants(nix::unistd::getpid());
        // The group's id may be reused once the group is empty; on Linux we know whether it is.
        if !cfg!(target_os = "linux") || family.iter().any(|&(_, group)| group == self.command) {
            let _ = killpg(self.command, signal);
        }
        for (pid, _) in family {
            let _ = kill(pid, signal);
        }
    }

    /// Collects exited children; reports the command's stops; ends leftovers once it exited.
    async fn reap(&mut self) {
        loop {
            match waitpid(
                Pid::from_raw(-1),
                Some(WaitPidFlag::WNOHANG | WaitPidFlag::WUNTRACED),
            ) {
                Ok(WaitStatus::Exited(pid, code)) if pid == self.command => {
                    self.status = Some(u8::try_from(code).unwrap_or(EXIT_INTERNAL));
                }
                Ok(WaitStatus::Signaled(pid, signal, _)) if pid == self.command => {
                    self.status = Some(u8::try_from(128 + signal as i32).unwrap_or(EXIT_INTERNAL));
                }
                Ok(WaitStatus::Stopped(pid, signal)) if pid == self.command => {
                    self.report(Report::Stopped(signal)).await;
                }
                Ok(WaitStatus::StillAlive) => break,
                Err(Errno::ECHILD) => {
                    self.children_left = false;
                    break;
                }
                Ok(_) => {}
                Err(_) => break,
            }
        }
        if self.status.is_some() && self.children_left {
            let kill_at = self.kill_deadline().min(Instant::now() + self.grace);
            self.begin_ending(Ending::Leftovers, kill_at).await;
        }
    }

    /// Without a way to wait for children: end everything at once.
    async fn finish(&mut self) -> u8 {
        self.signal_all(Signal::SIGKILL);
        while !self.done() {
            self.reap().await;
            tokio::time::sleep(KILL_REPEAT).await;
        }
        self.exit_code()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn orders_and_reports_survive_the_wire() {
        for order in [
            Order::Deadline(Duration::new(12, 345)),
            Order::Start { terminal: true },
            Order::Start { terminal: false },
            Order::Stop,
        ] {
            assert_eq!(Order::decode(order.encode().trim_end()), Some(order));
        }
        for report in [
            Report::Started(Pid::from_raw(42)),
            Report::Failed {
                code: 127,
                message: "cannot start the command: No such file".into(),
            },
            Report::Stopped(Signal::SIGTSTP),
            Report::Ending(Ending::Deadline),
            Report::Ending(Ending::Leftovers),
        ] {
            assert_eq!(Report::decode(report.encode().trim_end()), Some(report));
        }
        assert_eq!(Order::decode("deadline soon"), None);
        assert_eq!(Report::decode("stopped 999"), None);
    }

    #[test]
    fn monotonic_readings_match_instants() {
        let at = monotonic_now() + Duration::from_secs(3);
        let instant = instant_at(at);
        let left = instant.saturating_duration_since(Instant::now());
        assert!(left <= Duration::from_secs(3) && left > Duration::from_millis(2900));
    }

    #[cfg(target_os = "linux")]
    #[test]
    fn descendants_are_found_through_proc() {
        let mut child = std::process::Command::new("sleep")
            .arg("5")
            .spawn()
            .expect("sleep");
        let me = nix::unistd::getpid();
        let found = descendants(me);
        let pid = Pid::from_raw(i32::try_from(child.id()).expect("pid"));
        assert!(
            found
                .iter()
                .any(|&(p, g)| p == pid && g == nix::unistd::getpgrp()),
            "{found:?}"
        );
        child.kill().expect("kill");
        child.wait().expect("wait");
    }
}
