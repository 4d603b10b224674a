//! One scenario: start the nodes (and proxies), the oracle and the worker processes, play the
//! fault schedule, stop everything, look for keys left behind, and hand the record over to
//! the analysis.

use std::fs::{self, File};
use std::io;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use redlease_testkit::{Fault, FaultProxy, RedisServer};

use crate::clock::now_ns;
use crate::faults::{FaultKind, Plan, Planned};
use crate::oracle::{Oracle, Phase, Record, WorkerId};
use crate::worker::{LOCK, PREFIX, WorkerArgs};

/// How long a holder fault waits for someone to hold the lock.
const HOLDER_WAIT: Duration = Duration::from_secs(3);
/// How long stopping workers may take before they count as hung.
const STOP_WAIT: Duration = Duration::from_secs(10);

/// What to run.
#[derive(Debug, Clone)]
pub(crate) struct Scenario {
    pub(crate) name: String,
    pub(crate) nodes: usize,
    pub(crate) renew: bool,
    /// Whether the resource checks fences; `false` is the negative control.
    pub(crate) fencing: bool,
    pub(crate) duration: Duration,
    pub(crate) workers: u32,
    pub(crate) proxies: bool,
    pub(crate) ttl: Duration,
    pub(crate) naive_share: f64,
    pub(crate) required: Vec<FaultKind>,
    pub(crate) pool: Vec<FaultKind>,
    pub(crate) seed: u64,
}

impl Scenario {
    /// Which nodes run with `appendonly yes` + `appendfsync always`: a majority (all, with one
    /// node), so that both kinds of restart can be tried.
    pub(crate) fn persistent(&self) -> Vec<bool> {
        (0..self.nodes).map(|i| i < self.nodes / 2 + 1).collect()
    }

    pub(crate) fn plan(&self) -> Plan {
        let usable =
            |kind: &FaultKind| kind.fits(self.nodes) && (self.proxies || !kind.needs_proxy());
        Plan {
            seed: self.seed,
            nodes: self.nodes,
            persistent: self.persistent(),
            ttl: self.ttl,
            duration: self.duration,
            required: self.required.iter().copied().filter(usable).collect(),
            pool: self.pool.iter().copied().filter(usable).collect(),
            warmup: Duration::from_millis(2_500),
            tail: Duration::from_secs(2),
        }
    }
}

/// What happened to one fault of the schedule.
#[derive(Debug, Clone)]
pub(crate) struct FaultRecord {
    pub(crate) planned: Planned,
    /// The worker a holder fault hit.
    pub(crate) target: Option<WorkerId>,
    /// When the fault was injected and healed (shared clock).
    pub(crate) start: u64,
    pub(crate) heal: u64,
    pub(crate) detail: String,
    /// Not injected (no holder to hit), or the harness failed to inject or heal it.
    pub(crate) skipped: Option<String>,
}

/// A worker process that ended without being told to.
#[derive(Debug, Clone)]
pub(crate) struct Crash {
    pub(crate) worker: WorkerId,
    pub(crate) status: String,
    pub(crate) log_tail: String,
}

/// Everything a scenario produced, for the analysis.
#[derive(Debug)]
pub(crate) struct RunData {
    pub(crate) scenario: Scenario,
    pub(crate) started: u64,
    pub(crate) finished: u64,
    pub(crate) wall: Duration,
    pub(crate) record: Record,
    pub(crate) faults: Vec<FaultRecord>,
    pub(crate) crashes: Vec<Crash>,
    /// Workers that did not stop within [`STOP_WAIT`] after being told to.
    pub(crate) hung: Vec<WorkerId>,
    /// `(node, key, pttl)` for every lock key still present after the run.
    pub(crate) keys_left: Vec<(usize, String, i64)>,
    /// Harness problems (a node that would not restart, a key scan that failed, ...).
    pub(crate) harness_errors: Vec<String>,
    /// The largest value any node's fence counter for the lock was seen to hold (read
    /// before every node kill and at the end). No grant can have a larger fence.
    pub(crate) max_counter: u64,
}

/// Runs `scenario` and returns its record.
///
/// # Errors
///
/// When the topology, the oracle or the workers cannot be started.
pub(crate) fn run(scenario: &Scenario) -> Result<RunData, String> {
    let wall = Instant::now();
    let logs = tempfile::Builder::new()
        .prefix("redlease-torture-")
        .tempdir()
        .map_err(|e| format!("cannot create a log directory: {e}"))?;
    let persistent = scenario.persistent();
    let mut topology = Topology::start(&persistent, scenario.proxies)?;
    let oracle = Oracle::start(scenario.fencing).map_err(|e| format!("oracle: {e}"))?;
    let base = WorkerArgs {
        slot: 0,
        incarnation: 0,
        oracle: oracle.addr(),
        urls: topology.client_urls(),
        ttl: scenario.ttl,
        renew: scenario.renew,
        seed: scenario.seed,
        naive_share: scenario.naive_share,
    };
    let args = move |slot, incarnation| {
        WorkerArgs {
            slot,
            incarnation,
            ..base.clone()
        }
        .to_args()
    };
    let mut workers = Workers::start(Box::new(args), scenario.workers, logs.path())?;
    let schedule = scenario.plan().schedule();
    let started_at = Instant::now();
    let started = now_ns();
    let mut harness_errors = Vec::new();
    let mut faults = Vec::with_capacity(schedule.len());
    let mut max_counter = 0;
    for planned in schedule {
        workers.wait_until(started_at + planned.at);
        if matches!(
            planned.kind,
            FaultKind::NodeRestartPersistent
                | FaultKind::NodeRestartEmptyDelayed
                | FaultKind::NodeRestartEmptyFast
        ) {
            max_counter = max_counter.max(topology.max_counter());
        }
        let record = inject(&planned, &mut topology, &mut workers, &oracle);
        if let Some(problem) = record.skipped.as_deref()
            && problem.starts_with("harness:")
        {
            harness_errors.push(format!("{}: {problem}", planned.kind));
        }
        faults.push(record);
    }
    workers.wait_until(started_at + scenario.duration);
    let finished = now_ns();

    // Stop: heal everything, let workers finish their iteration and release.
    topology.heal();
    oracle.stop_workers();
    let hung = workers.stop();
    thread::sleep(scenario.ttl + Duration::from_millis(500));
    max_counter = max_counter.max(topology.max_counter());
    let keys_left = match topology.keys_left() {
        Ok(keys) => keys,
        Err(e) => {
            harness_errors.push(format!("key scan: {e}"));
            Vec::new()
        }
    };
    let record = oracle.record();
    drop(oracle);
    drop(topology);
    Ok(RunData {
        scenario: scenario.clone(),
        started,
        finished,
        wall: wall.elapsed(),
        record,
        faults,
        crashes: workers.crashes,
        hung,
        keys_left,
        harness_errors,
        max_counter,
    })
}

/// The Redis nodes, and a fault proxy in front of each if asked for.
struct Topology {
    servers: Vec<RedisServer>,
    proxies: Vec<FaultProxy>,
}

impl Topology {
    fn start(persistent: &[bool], proxies: bool) -> Result<Self, String> {
        let started: Vec<Result<RedisServer, String>> = thread::scope(|scope| {
            let handles: Vec<_> = persistent
                .iter()
                .map(|&on| {
                    scope.spawn(move || {
                        RedisServer::builder()
                            .persistence(on)
                            .start()
                            .map_err(|e| e.to_string())
                    })
                })
                .collect();
            handles
                .into_iter()
                .map(|h| h.join().unwrap_or_else(|_| Err("panicked".into())))
                .collect()
        });
        let servers = started
            .into_iter()
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| format!("cannot start redis-server: {e}"))?;
        let proxies = if proxies {
            servers
                .iter()
                .map(RedisServer::proxy)
                .collect::<Result<Vec<_>, _>>()
                .map_err(|e| format!("cannot start a proxy: {e}"))?
        } else {
            Vec::new()
        };
        Ok(Self { servers, proxies })
    }

    /// Where the workers connect: the proxies if any, else the nodes.
    fn client_urls(&self) -> Vec<String> {
        if self.proxies.is_empty() {
            self.servers.iter().map(RedisServer::url).collect()
        } else {
            self.proxies.iter().map(FaultProxy::url).collect()
        }
    }

    fn set_fault(&self, nodes: &[usize], fault: Fault) {
        for &i in nodes {
            if let Some(proxy) = self.proxies.get(i) {
                proxy.set_fault(fault);
            }
        }
    }

    /// Clears every proxy fault and resumes every node.
    fn heal(&mut self) {
        for proxy in &self.proxies {
            proxy.set_fault(Fault::None);
        }
        for server in &mut self.servers {
            if server.is_running() {
                let _ = server.resume();
            }
        }
    }

    /// A direct connection to node `i` (bypassing its proxy), for the nemesis and the scan.
    fn direct(&self, i: usize) -> redis::RedisResult<redis::Connection> {
        let timeout = Duration::from_millis(500);
        let connection =
            redis::Client::open(self.servers[i].url())?.get_connection_with_timeout(timeout)?;
        connection.set_read_timeout(Some(timeout))?;
        connection.set_write_timeout(Some(timeout))?;
        Ok(connection)
    }

    /// The largest fence counter of the lock on any reachable node (0 if none answers).
    fn max_counter(&self) -> u64 {
        (0..self.servers.len())
            .filter_map(|i| {
                let mut connection = self.direct(i).ok()?;
                redis::cmd("GET")
                    .arg(format!("{PREFIX}{{{LOCK}}}:fence"))
                    .query::<Option<u64>>(&mut connection)
                    .ok()
                    .flatten()
            })
            .max()
            .unwrap_or(0)
    }

    /// Every key of the run other than fence counters (which never expire, by design).
    fn keys_left(&self) -> Result<Vec<(usize, String, i64)>, String> {
        let mut left = Vec::new();
        for i in 0..self.servers.len() {
            let mut connection = self.direct(i).map_err(|e| format!("node {i}: {e}"))?;
            let keys: Vec<String> = redis::cmd("KEYS")
                .arg(format!("{PREFIX}*"))
                .query(&mut connection)
                .map_err(|e| format!("node {i}: {e}"))?;
            for key in keys.into_iter().filter(|k| !k.ends_with(":fence")) {
                let pttl: i64 = redis::cmd("PTTL")
                    .arg(&key)
                    .query(&mut connection)
                    .unwrap_or(-3);
                left.push((i, key, pttl));
            }
        }
        Ok(left)
    }
}

/// A worker's command line (after the binary) for a slot and incarnation.
pub(crate) type ArgsFor = Box<dyn Fn(u32, u32) -> Vec<String>>;

/// The worker processes, one per slot (of any role: the role is in their arguments).
pub(crate) struct Workers {
    exe: PathBuf,
    args: ArgsFor,
    logs: PathBuf,
    slots: Vec<Slot>,
    pub(crate) crashes: Vec<Crash>,
}

struct Slot {
    incarnation: u32,
    child: Child,
    log: PathBuf,
}

impl Workers {
    /// Starts `count` workers (slots `0..count`, incarnation 0), logging into `logs`.
    pub(crate) fn start(args: ArgsFor, count: u32, logs: &Path) -> Result<Self, String> {
        let mut workers = Self {
            exe: own_binary()?,
            args,
            logs: logs.to_path_buf(),
            slots: Vec::new(),
            crashes: Vec::new(),
        };
        for slot in 0..count {
            let spawned = workers.spawn(slot, 0).map_err(|e| format!("worker: {e}"))?;
            workers.slots.push(spawned);
        }
        Ok(workers)
    }

    fn spawn(&self, slot: u32, incarnation: u32) -> io::Result<Slot> {
        let log = self.logs.join(format!("worker-{slot}.{incarnation}.log"));
        let child = Command::new(&self.exe)
            .args((self.args)(slot, incarnation))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(File::create(&log)?)
            .spawn()?;
        Ok(Slot {
            incarnation,
            child,
            log,
        })
    }

    pub(crate) fn pid_of(&self, worker: WorkerId) -> Option<Pid> {
        let slot = self.slots.get(usize::try_from(worker.0).ok()?)?;
        (slot.incarnation == worker.1)
            .then(|| i32::try_from(slot.child.id()).ok().map(Pid::from_raw))
            .flatten()
    }

    /// Kills `worker` (`SIGKILL`) and starts the next incarnation of its slot.
    pub(crate) fn kill(&mut self, worker: WorkerId) -> Result<(), String> {
        let index = usize::try_from(worker.0).map_err(|e| e.to_string())?;
        let slot = self.slots.get_mut(index).ok_or("no such slot")?;
        if slot.incarnation != worker.1 {
            return Err("the worker was already replaced".into());
        }
        slot.child.kill().map_err(|e| e.to_string())?;
        let _ = slot.child.wait();
        let next = self
            .spawn(worker.0, worker.1 + 1)
            .map_err(|e| format!("harness: cannot respawn: {e}"))?;
        self.slots[index] = next;
        Ok(())
    }

    /// Notices workers that died on their own; records them and starts replacements.
    fn check(&mut self) {
        for index in 0..self.slots.len() {
            let slot = &mut self.slots[index];
            let Ok(Some(status)) = slot.child.try_wait() else {
                continue;
            };
            let worker = (u32::try_from(index).unwrap_or(u32::MAX), slot.incarnation);
            self.crashes.push(Crash {
                worker,
                status: describe(status),
                log_tail: tail(&slot.log),
            });
            if let Ok(next) = self.spawn(worker.0, worker.1 + 1) {
                self.slots[index] = next;
            }
        }
    }

    /// Sleeps until `deadline`, watching for crashed workers.
    pub(crate) fn wait_until(&mut self, deadline: Instant) {
        loop {
            self.check();
            let now = Instant::now();
            if now >= deadline {
                return;
            }
            thread::sleep((deadline - now).min(Duration::from_millis(100)));
        }
    }

    /// Waits for every worker to leave (the oracle told them to); kills the ones that do
    /// not within [`STOP_WAIT`] and returns them.
    pub(crate) fn stop(&mut self) -> Vec<WorkerId> {
        let deadline = Instant::now() + STOP_WAIT;
        let mut hung = Vec::new();
        for (index, slot) in self.slots.iter_mut().enumerate() {
            let worker = (u32::try_from(index).unwrap_or(u32::MAX), slot.incarnation);
            loop {
                match slot.child.try_wait() {
                    Ok(Some(status)) => {
                        if !status.success() {
                            self.crashes.push(Crash {
                                worker,
                                status: describe(status),
                                log_tail: tail(&slot.log),
                            });
                        }
                        break;
                    }
                    Ok(None) if Instant::now() < deadline => {
                        thread::sleep(Duration::from_millis(20));
                    }
                    _ => {
                        hung.push(worker);
                        let _ = slot.child.kill();
                        let _ = slot.child.wait();
                        break;
                    }
                }
            }
        }
        hung
    }
}

/// The binary to start workers from. `/proc/self/exe` names the running image even when
/// the file on disk was replaced meanwhile (say, by a concurrent `cargo build`).
fn own_binary() -> Result<PathBuf, String> {
    let proc_self = PathBuf::from("/proc/self/exe");
    if proc_self.exists() {
        return Ok(proc_self);
    }
    std::env::current_exe().map_err(|e| format!("cannot find own binary: {e}"))
}

fn describe(status: ExitStatus) -> String {
    use std::os::unix::process::ExitStatusExt as _;
    match (status.code(), status.signal()) {
        (Some(code), _) => format!("exit code {code}"),
        (None, Some(signal)) => format!("killed by signal {signal}"),
        _ => status.to_string(),
    }
}

/// The last lines of a worker's log.
fn tail(path: &Path) -> String {
    let text = fs::read_to_string(path).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(15)..].join("\n")
}

pub(crate) fn signal(pid: Pid, sig: Signal) -> Result<(), String> {
    kill(pid, sig).map_err(|e| format!("harness: {sig}: {e}"))
}

/// Injects one fault and heals it; returns what happened.
fn inject(
    planned: &Planned,
    topology: &mut Topology,
    workers: &mut Workers,
    oracle: &Oracle,
) -> FaultRecord {
    let mut record = FaultRecord {
        planned: planned.clone(),
        target: None,
        start: now_ns(),
        heal: 0,
        detail: String::new(),
        skipped: None,
    };
    let result = match planned.kind {
        FaultKind::HolderPauseWorking
        | FaultKind::HolderPauseBeforeWrite
        | FaultKind::HolderKill => inject_holder(planned, workers, oracle, &mut record),
        FaultKind::NodeRestartPersistent
        | FaultKind::NodeRestartEmptyDelayed
        | FaultKind::NodeRestartEmptyFast
        | FaultKind::NodePause => inject_node(planned, topology, &mut record),
        FaultKind::NemesisPexpire | FaultKind::NemesisDel | FaultKind::NemesisMajority => {
            inject_nemesis(planned, topology, oracle, &mut record)
        }
        FaultKind::ProxyDelay
        | FaultKind::ProxyLostReply
        | FaultKind::ProxyDropReplies
        | FaultKind::ProxyHold
        | FaultKind::ProxyCut
        | FaultKind::PartitionMinority
        | FaultKind::PartitionMajority => {
            inject_proxy(planned, topology, &mut record);
            Ok(())
        }
    };
    record.heal = now_ns();
    if let Err(e) = result {
        record.skipped = Some(e);
    }
    record
}

/// Pauses or kills whoever holds the lock (in the phase the fault asks for).
fn inject_holder(
    planned: &Planned,
    workers: &mut Workers,
    oracle: &Oracle,
    record: &mut FaultRecord,
) -> Result<(), String> {
    let phase = if planned.kind == FaultKind::HolderPauseBeforeWrite {
        Phase::Checked
    } else {
        Phase::Working
    };
    let worker = oracle
        .wait_for_phase(phase, HOLDER_WAIT)
        .ok_or("no holder in that phase")?;
    record.target = Some(worker);
    record.start = now_ns();
    if planned.kind == FaultKind::HolderKill {
        return workers.kill(worker);
    }
    let pid = workers.pid_of(worker).ok_or("the holder was replaced")?;
    signal(pid, Signal::SIGSTOP)?;
    thread::sleep(planned.duration);
    signal(pid, Signal::SIGCONT)
}

/// Restarts or pauses nodes.
fn inject_node(
    planned: &Planned,
    topology: &mut Topology,
    record: &mut FaultRecord,
) -> Result<(), String> {
    if planned.kind != FaultKind::NodePause {
        let i = planned.nodes[0];
        topology.servers[i].kill();
        record.start = now_ns();
        thread::sleep(planned.duration);
        return topology.servers[i]
            .restart()
            .map_err(|e| format!("harness: node {i} did not restart: {e}"));
    }
    let mut result = Ok(());
    for &i in &planned.nodes {
        if let Err(e) = topology.servers[i].pause() {
            result = Err(format!("harness: pause node {i}: {e}"));
        }
    }
    record.start = now_ns();
    thread::sleep(planned.duration);
    for &i in &planned.nodes {
        let _ = topology.servers[i].resume();
    }
    result
}

/// Removes the lock key behind the library's back, while someone holds it.
fn inject_nemesis(
    planned: &Planned,
    topology: &Topology,
    oracle: &Oracle,
    record: &mut FaultRecord,
) -> Result<(), String> {
    record.target = oracle.wait_for_phase(Phase::Working, HOLDER_WAIT);
    record.start = now_ns();
    let key = format!("{PREFIX}{{{LOCK}}}");
    let mut hits = 0;
    let mut result = Ok(());
    for &i in &planned.nodes {
        let mut command = redis::cmd(if planned.kind == FaultKind::NemesisPexpire {
            "PEXPIRE"
        } else {
            "DEL"
        });
        command.arg(&key);
        if planned.kind == FaultKind::NemesisPexpire {
            command.arg(1);
        }
        match topology
            .direct(i)
            .and_then(|mut c| command.query::<i64>(&mut c))
        {
            Ok(n) => hits += n,
            Err(e) => result = Err(format!("harness: nemesis on node {i}: {e}")),
        }
    }
    record.detail = format!("key present on {hits} of {} node(s)", planned.nodes.len());
    result
}

/// Switches the proxies of the target nodes to the fault, then back.
fn inject_proxy(planned: &Planned, topology: &Topology, record: &mut FaultRecord) {
    let nodes = &planned.nodes;
    let fault = match planned.kind {
        FaultKind::ProxyCut => {
            for &i in nodes {
                if let Some(proxy) = topology.proxies.get(i) {
                    proxy.cut_all();
                }
            }
            return;
        }
        FaultKind::ProxyDelay => {
            record.detail = format!("{} ms each way", planned.delay.as_millis());
            Fault::Delay(planned.delay)
        }
        FaultKind::ProxyLostReply => Fault::CutAfterRequest,
        FaultKind::ProxyDropReplies => Fault::DropReplies,
        FaultKind::ProxyHold => Fault::Hold,
        _ => Fault::Refuse,
    };
    topology.set_fault(nodes, fault);
    thread::sleep(planned.duration);
    topology.set_fault(nodes, Fault::None);
}
