//! `redlease demo`: worker processes take turns on one lock through `redlease run`, each
//! command writing to a fenced resource, while the demo kills a Redis node and pauses holders
//! past their TTL. It ends by itself with a report and exits 0 only if mutual exclusion held.

use std::collections::{HashMap, HashSet};
use std::path::PathBuf;
use std::process::{ExitCode, Stdio};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use redlease_testkit::RedisServer;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, TcpStream};
use tokio::process::Command;

use crate::cli::{DemoArgs, DemoStepArgs};
use crate::duration::{human, percentile};
use crate::exit::{EXIT_LEASE_LOST, EXIT_NOT_ACQUIRED, EXIT_UNAVAILABLE, Failure};
use crate::settings::{Deployment, PASSWORD_ENV, Password, Servers};

/// The lock the demo's workers share.
const LOCK: &str = "demo:report";
/// The workers' lease TTL: short, so that pauses outlast it quickly.
const TTL: &str = "1s";
const TTL_DURATION: Duration = Duration::from_secs(1);

/// The fenced resource: it accepts a write only with the largest fencing token it has seen,
/// and notices critical sections that overlap.
#[derive(Default)]
struct Resource {
    /// The largest fence seen in any request.
    highest_fence: u64,
    accepted: u64,
    rejected: u64,
    /// Open critical sections, by connection id.
    open: HashMap<u64, Section>,
    /// Every command and guardian process seen: none may be left at the end.
    processes: HashSet<i32>,
    /// Sections that overlapped another, by what was going on then.
    overlaps: HashMap<String, u64>,
    /// Overlaps while no fault was active: the lock failed.
    violations: u64,
    /// Fences of holders the demo froze whole (`redlease run`, guardian and command) past their
    /// TTL: their sections may overlap the next holder's (that is what fencing is for); any
    /// other overlap is a failure of the lock — also after killing or stopping a holder's
    /// `redlease run` alone, which its guardian must make up for.
    paused: HashSet<u64>,
    sections: u64,
    last_end: Option<Instant>,
    gaps: Vec<Duration>,
    holder: Option<(u16, u64)>,
}

#[derive(Clone, Copy)]
struct Section {
    worker: u16,
    fence: u64,
    /// The command's pid.
    pid: i32,
    /// Its guardian's pid.
    guardian: i32,
}

type Shared = Arc<Mutex<Resource>>;

fn lock(resource: &Shared) -> std::sync::MutexGuard<'_, Resource> {
    resource.lock().unwrap_or_else(PoisonError::into_inner)
}

impl Resource {
    fn begin(&mut self, connection: u64, section: Section) {
        if !self.open.is_empty() {
            let paused = self
                .open
                .values()
                .find(|open| self.paused.contains(&open.fence));
            let cause = if let Some(open) = paused {
                format!("holder frozen past its TTL (fence {})", open.fence)
            } else {
                self.violations += 1;
                "no frozen holder (a violation)".to_owned()
            };
            *self.overlaps.entry(cause).or_default() += 1;
        } else if let Some(end) = self.last_end {
            self.gaps.push(end.elapsed());
        }
        self.highest_fence = self.highest_fence.max(section.fence);
        self.processes.extend([section.pid, section.guardian]);
        self.open.insert(connection, section);
        self.sections += 1;
        self.holder = Some((section.worker, section.fence));
    }

    fn write(&mut self, fence: u64) -> bool {
        let accepted = fence >= self.highest_fence;
        self.highest_fence = self.highest_fence.max(fence);
        if accepted {
            self.accepted += 1;
        } else {
            self.rejected += 1;
        }
        accepted
    }

    fn end(&mut self, connection: u64) {
        if self.open.remove(&connection).is_some() && self.open.is_empty() {
            self.last_end = Some(Instant::now());
        }
    }
}

pub(crate) async fn demo(
    servers: &Servers,
    args: DemoArgs,
    quiet: bool,
) -> Result<ExitCode, Failure> {
    let exe = crate::run::own_executable();
    let (mut local, urls) = demo_servers(servers)?;
    let say = |line: String| {
        if !quiet {
            println!("{line}");
        }
    };
    say(format!(
        "redlease demo: {} worker processes take turns on {LOCK:?} through `redlease run` (TTL {TTL}), {} Redis node(s){}",
        args.workers,
        urls.len(),
        if local.is_empty() {
            ""
        } else {
            " started locally"
        }
    ));

    let resource: Shared = Arc::default();
    let listener = TcpListener::bind("127.0.0.1:0")
        .await
        .map_err(|e| Failure::internal(format!("cannot listen: {e}")))?;
    let address = listener
        .local_addr()
        .map_err(|e| Failure::internal(e.to_string()))?
        .to_string();
    tokio::spawn(serve(listener, resource.clone()));

    let started = Instant::now();
    let stop_at = started + args.duration;
    let crew = Arc::new(Crew {
        exe,
        urls: urls.clone(),
        prefix: servers.prefix.clone(),
        resource: address,
        stop_at,
        password: servers.password.clone(),
        runs: Mutex::default(),
        exits: Arc::default(),
        quiet,
    });
    let workers: Vec<_> = (1..=args.workers)
        .map(|worker| tokio::spawn(work(crew.clone(), worker)))
        .collect();

    let mut faults = schedule(&args, !local.is_empty());
    let mut next_view = started;
    let mut fault_log = Vec::new();
    while Instant::now() < stop_at {
        let elapsed = started.elapsed();
        while faults.first().is_some_and(|(at, _)| *at <= elapsed) {
            let (_, fault) = faults.remove(0);
            let note = inject(fault, &mut local, &resource, &crew).await;
            say(format!("[{:>4}] fault: {note}", human(elapsed)));
            fault_log.push(note);
        }
        if Instant::now() >= next_view {
            next_view += Duration::from_secs(1);
            let view = lock(&resource);
            say(format!(
                "[{:>4}] holder {:<10} sections {:>4}  writes accepted {:>4} rejected {}  overlaps {}",
                human(started.elapsed()),
                view.holder
                    .map_or_else(|| "-".to_owned(), |(w, f)| format!("w{w} f{f}")),
                view.sections,
                view.accepted,
                view.rejected,
                view.overlaps.values().sum::<u64>()
            ));
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    for worker in workers {
        let _ = worker.await;
    }
    let exits = crew
        .exits
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .clone();
    let processes = lock(&resource).processes.clone();
    let left = left_behind(&processes).await;
    let view = lock(&resource);
    let report = report(
        &view,
        &exits,
        &fault_log,
        &left,
        started.elapsed(),
        urls.len(),
    );
    println!("{report}");
    drop(local);
    let ok = view.violations == 0 && view.sections > 0 && left.is_empty();
    Ok(if ok {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

#[derive(Clone, Copy, Debug)]
enum Fault {
    KillNode,
    RestartNode,
    /// SIGSTOP the holder's `redlease run`, guardian and command: a frozen machine.
    FreezeHolder,
    /// SIGKILL the holder's `redlease run`.
    KillRun,
    /// SIGSTOP the holder's `redlease run` alone.
    StopRun,
}

/// Our own Redis servers unless told otherwise: three nodes, so a Redlock quorum survives one
/// being killed. Returns the local servers (to keep alive and hurt) and the URLs to use (as
/// given: the workers get the password, if any, through their environment, not their argv).
fn demo_servers(servers: &Servers) -> Result<(Vec<RedisServer>, Vec<String>), Failure> {
    match &servers.deployment {
        Deployment::Nodes { urls, given: true } => Ok((Vec::new(), urls.clone())),
        Deployment::Nodes { given: false, .. } => {
            let local = redlease_testkit::start_nodes(3).map_err(|e| Failure {
                code: EXIT_UNAVAILABLE,
                message: format!("cannot start local Redis servers: {e}"),
            })?;
            let urls = local.iter().map(RedisServer::url).collect();
            Ok((local, urls))
        }
        Deployment::Cluster(_) | Deployment::Sentinel { .. } => Err(Failure::usage(
            "the demo runs on its own local servers or on --redis servers, not on a Cluster or Sentinel",
        )),
    }
}

/// When to hurt what, as fractions of the run: kill a node at 20%, bring it back at 40%; kill a
/// holder's `redlease run` at 30%, stop one at 65%; freeze a whole holder at 50% and 80%.
fn schedule(args: &DemoArgs, own_servers: bool) -> Vec<(Duration, Fault)> {
    let at = |share: f64| args.duration.mul_f64(share);
    let mut plan = vec![
        (at(0.3), Fault::KillRun),
        (at(0.5), Fault::FreezeHolder),
        (at(0.65), Fault::StopRun),
        (at(0.8), Fault::FreezeHolder),
    ];
    if own_servers {
        plan.extend([(at(0.2), Fault::KillNode), (at(0.4), Fault::RestartNode)]);
    }
    plan.sort_by_key(|(at, _)| *at);
    plan
}

/// Injects one fault; returns a description of it.
async fn inject(fault: Fault, local: &mut [RedisServer], resource: &Shared, crew: &Crew) -> String {
    let pause = TTL_DURATION * 5 / 2;
    let (section, run) = match fault {
        Fault::KillNode => {
            if let Some(node) = local.last_mut() {
                node.kill();
            }
            return "killed Redis node 3 (two of three remain: a majority)".to_owned();
        }
        Fault::RestartNode => {
            return match local.last_mut().map(RedisServer::restart) {
                Some(Ok(())) => "restarted Redis node 3 (empty: no persistence)".to_owned(),
                Some(Err(e)) => format!("could not restart Redis node 3: {e}"),
                None => "no node to restart".to_owned(),
            };
        }
        Fault::FreezeHolder | Fault::KillRun | Fault::StopRun => {
            match holder(resource, crew).await {
                Some(found) => found,
                None => {
                    return format!(
                        "wanted to hurt the holder ({fault:?}), but nobody held the lock for a second"
                    );
                }
            }
        }
    };
    let (worker, fence) = (section.worker, section.fence);
    let (guardian, command) = (Pid::from_raw(section.guardian), Pid::from_raw(section.pid));
    match fault {
        Fault::KillRun => {
            let _ = kill(run, Signal::SIGKILL);
            format!(
                "killed worker {worker}'s `redlease run` (SIGKILL, fence {fence}): its guardian must end the command before the lease passes on"
            )
        }
        Fault::StopRun => {
            let _ = kill(run, Signal::SIGSTOP);
            tokio::spawn(async move {
                tokio::time::sleep(pause).await;
                let _ = kill(run, Signal::SIGCONT);
            });
            format!(
                "stopped worker {worker}'s `redlease run` alone (fence {fence}) for {}: its guardian must end the command before the lease runs out",
                human(pause)
            )
        }
        _ => {
            lock(resource).paused.insert(fence);
            for pid in [run, guardian, command] {
                let _ = kill(pid, Signal::SIGSTOP);
            }
            tokio::spawn(async move {
                tokio::time::sleep(pause).await;
                // The command wakes first and writes before anything notices the lost lease:
                // the write fencing must refuse.
                let _ = kill(command, Signal::SIGCONT);
                tokio::time::sleep(Duration::from_millis(300)).await;
                let _ = kill(guardian, Signal::SIGCONT);
                let _ = kill(run, Signal::SIGCONT);
            });
            format!(
                "froze worker {worker}'s `redlease run`, guardian and command (fence {fence}) for {} — longer than the {TTL} lease",
                human(pause)
            )
        }
    }
}

/// Catches a holder inside its critical section (between commands nobody is): its section and
/// its `redlease run` process.
async fn holder(resource: &Shared, crew: &Crew) -> Option<(Section, Pid)> {
    for _ in 0..50 {
        let section = {
            let view = lock(resource);
            // The newest section not frozen by an earlier fault.
            view.open
                .values()
                .filter(|open| !view.paused.contains(&open.fence))
                .max_by_key(|open| open.fence)
                .copied()
        };
        if let Some(section) = section {
            let runs = crew.runs.lock().unwrap_or_else(PoisonError::into_inner);
            if let Some(&run) = runs.get(&section.worker) {
                return Some((section, Pid::from_raw(run)));
            }
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    None
}

/// The processes (commands and guardians) still running a little after the workers finished.
async fn left_behind(processes: &HashSet<i32>) -> Vec<i32> {
    let running = || {
        processes
            .iter()
            .copied()
            .filter(|&pid| is_running(Pid::from_raw(pid)))
            .collect::<Vec<_>>()
    };
    for _ in 0..20 {
        if running().is_empty() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    running()
}

/// Whether `pid` runs (a zombie, waiting for a parent to collect it, does not).
fn is_running(pid: Pid) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(stat) => stat
            .rfind(')')
            .and_then(|end| stat[end + 1..].split_whitespace().next())
            .is_some_and(|state| state != "Z"),
        Err(_) => !cfg!(target_os = "linux") && kill(pid, None).is_ok(),
    }
}

/// What every worker needs to know.
struct Crew {
    exe: PathBuf,
    urls: Vec<String>,
    prefix: String,
    resource: String,
    stop_at: Instant,
    password: Option<Password>,
    /// Each worker's current `redlease run` process.
    runs: Mutex<HashMap<u16, i32>>,
    exits: Arc<Mutex<HashMap<u8, u64>>>,
    quiet: bool,
}

/// One worker: runs the critical section under `redlease run` again and again until the end.
async fn work(crew: Arc<Crew>, worker: u16) {
    let mut rng = fastrand::Rng::with_seed(u64::from(worker));
    while Instant::now() < crew.stop_at {
        let mut command = Command::new(&crew.exe);
        for url in &crew.urls {
            command.arg("--redis").arg(url);
        }
        command
            .args([
                "--prefix",
                &crew.prefix,
                "--quiet",
                "run",
                "--ttl",
                TTL,
                "--kill-grace",
                "300ms",
                "--wait",
                "5s",
            ])
            .args(["--label", &format!("worker-{worker}"), LOCK, "--"])
            .arg(&crew.exe)
            .args([
                "demo-step",
                "--resource",
                &crew.resource,
                "--worker",
                &worker.to_string(),
            ])
            .args(["--work-ms", &rng.u64(20..120).to_string()])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(if crew.quiet {
                Stdio::null()
            } else {
                Stdio::piped()
            })
            .env_remove("REDLEASE_REDIS");
        if let Some(password) = &crew.password {
            command.env(PASSWORD_ENV, password.expose());
        }
        let code = match command.spawn() {
            Ok(mut child) => {
                if let Some(pid) = child.id().and_then(|id| i32::try_from(id).ok()) {
                    crew.runs
                        .lock()
                        .unwrap_or_else(PoisonError::into_inner)
                        .insert(worker, pid);
                }
                if let Some(stderr) = child.stderr.take() {
                    tokio::spawn(relay(stderr, worker));
                }
                match child.wait().await {
                    Ok(status) => status
                        .code()
                        .and_then(|c| u8::try_from(c).ok())
                        .unwrap_or(u8::MAX),
                    Err(_) => u8::MAX,
                }
            }
            Err(_) => u8::MAX,
        };
        *crew
            .exits
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .entry(code)
            .or_default() += 1;
        tokio::time::sleep(Duration::from_millis(rng.u64(0..30))).await;
    }
}

/// Shows what a worker's `redlease run` says on stderr, marked with the worker.
async fn relay(stderr: tokio::process::ChildStderr, worker: u16) {
    let mut lines = BufReader::new(stderr).lines();
    while let Ok(Some(line)) = lines.next_line().await {
        println!("         worker {worker}: {line}");
    }
}

/// Accepts the critical sections' connections.
async fn serve(listener: TcpListener, resource: Shared) {
    let mut next_id = 0u64;
    while let Ok((stream, _)) = listener.accept().await {
        next_id += 1;
        tokio::spawn(session(stream, next_id, resource.clone()));
    }
}

/// One critical section: `BEGIN worker fence pid guardian_pid`, `WRITE fence`, `END`. A
/// connection that closes (its command was killed) ends the section too.
async fn session(stream: TcpStream, id: u64, resource: Shared) {
    let (read, mut write) = stream.into_split();
    let mut lines = BufReader::new(read).lines();
    while let Ok(Some(line)) = lines.next_line().await {
        let words: Vec<&str> = line.split_whitespace().collect();
        let number = |i: usize| {
            words
                .get(i)
                .and_then(|w| w.parse::<u64>().ok())
                .unwrap_or(0)
        };
        let reply = match words.first().copied() {
            Some("BEGIN") => {
                let section = Section {
                    worker: u16::try_from(number(1)).unwrap_or(0),
                    fence: number(2),
                    pid: i32::try_from(number(3)).unwrap_or(0),
                    guardian: i32::try_from(number(4)).unwrap_or(0),
                };
                lock(&resource).begin(id, section);
                "OK"
            }
            Some("WRITE") if lock(&resource).write(number(1)) => "ACCEPTED",
            Some("WRITE") => "REJECTED",
            Some("END") => {
                lock(&resource).end(id);
                "OK"
            }
            _ => "ERR",
        };
        if write
            .write_all(format!("{reply}\n").as_bytes())
            .await
            .is_err()
        {
            break;
        }
    }
    lock(&resource).end(id);
}

/// `redlease demo-step`: the command each worker runs under the lease.
pub(crate) async fn step(args: DemoStepArgs) -> Result<ExitCode, Failure> {
    let fence: u64 = std::env::var("REDLEASE_FENCE")
        .ok()
        .and_then(|f| f.parse().ok())
        .ok_or_else(|| {
            Failure::usage("demo-step runs under `redlease run`, which sets REDLEASE_FENCE")
        })?;
    let stream = TcpStream::connect(&args.resource)
        .await
        .map_err(|e| Failure::internal(format!("cannot reach the demo resource: {e}")))?;
    let (read, mut write) = stream.into_split();
    let mut replies = BufReader::new(read).lines();
    let mut say = async |line: String| -> Result<String, Failure> {
        write
            .write_all(format!("{line}\n").as_bytes())
            .await
            .map_err(|e| Failure::internal(e.to_string()))?;
        Ok(replies.next_line().await.ok().flatten().unwrap_or_default())
    };
    let pid = std::process::id();
    let guardian = nix::unistd::getppid();
    say(format!("BEGIN {} {fence} {pid} {guardian}", args.worker)).await?;
    tokio::time::sleep(Duration::from_millis(args.work_ms)).await;
    let verdict = say(format!("WRITE {fence}")).await?;
    say("END".to_owned()).await?;
    Ok(if verdict == "ACCEPTED" {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(3)
    })
}

fn report(
    view: &Resource,
    exits: &HashMap<u8, u64>,
    faults: &[String],
    left: &[i32],
    elapsed: Duration,
    nodes: usize,
) -> String {
    let mut gaps = view.gaps.clone();
    gaps.sort();
    let count = |code: u8| exits.get(&code).copied().unwrap_or(0);
    let mut out = String::new();
    let mut line = |text: String| {
        out.push_str(&text);
        out.push('\n');
    };
    line(String::new());
    line(format!(
        "== redlease demo report ({} over {nodes} Redis node(s)) ==",
        human(elapsed)
    ));
    line(format!(
        "commands run under the lease     {}",
        view.sections
    ));
    line(format!(
        "handoff gap (end → next start)   p50 {} / p99 {} / max {}  (includes starting a process)",
        human(percentile(&gaps, 0.5)),
        human(percentile(&gaps, 0.99)),
        human(gaps.last().copied().unwrap_or_default())
    ));
    line(format!(
        "leases lost, commands stopped    {} (exit {EXIT_LEASE_LOST})",
        count(EXIT_LEASE_LOST)
    ));
    line(format!(
        "not acquired within 5 s          {} (exit {EXIT_NOT_ACQUIRED})",
        count(EXIT_NOT_ACQUIRED)
    ));
    line(format!(
        "Redis unavailable                {} (exit {EXIT_UNAVAILABLE})",
        count(EXIT_UNAVAILABLE)
    ));
    line(format!(
        "writes accepted                  {}",
        view.accepted
    ));
    line(format!(
        "stale writes rejected by fencing {}",
        view.rejected
    ));
    for (cause, n) in &view.overlaps {
        line(format!(
            "sections begun while another was open  {n} — {cause}"
        ));
    }
    line(format!("faults injected                  {}", faults.len()));
    for fault in faults {
        line(format!("  - {fault}"));
    }
    let verdict = match (view.violations, view.overlaps.is_empty()) {
        (0, true) => "",
        (0, false) => {
            " (overlaps only while a holder was frozen past its TTL; fencing rejected its late writes)"
        }
        _ => " — THE LOCK FAILED",
    };
    line(format!(
        "mutual-exclusion violations      {}{verdict}",
        view.violations
    ));
    line(format!(
        "processes left running           {}{}",
        left.len(),
        if left.is_empty() {
            String::new()
        } else {
            format!(" — pids {left:?}")
        }
    ));
    out
}
