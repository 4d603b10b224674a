//! R1: keeping many leases ([`LEASES`] unless `--r1-leases` says otherwise) alive at once on
//! one client and one node, two ways:
//!
//! - **batched**: redlease's `auto_renew(true)`: one renewer task per client extends every
//!   due lease every `ttl / 3`, in one pipelined round trip per node;
//! - **timers**: one timer per lease (Redisson / node-redlock style): the same leases taken
//!   without auto-renewal, each kept alive by its own tokio task that sleeps `ttl / 3` and calls
//!   `guard.extend(ttl)`, forever.
//!
//! Each approach runs in a child process of its own (this binary, started with
//! [`CHILD_FLAG`]) on a fresh `redis-server`, so that the process's CPU time and resident
//! memory are the lock client's alone — redis-server is another process, the parent only
//! waits — and neither approach inherits the other's heap. The child reaches Redis through a
//! [`Counting`] wrapper around a multiplexed connection, passed with
//! `Client::builder().connection(..)`: one `req_packed_command` is one round trip, one
//! `req_packed_commands` (a pipeline) is one round trip however many commands it carries.
//!
//! The child prints its figures as `r1 KEY VALUE` lines on stdout ([`RenewalResult::to_lines`]);
//! the parent parses them back ([`RenewalResult::from_lines`]).

use std::fmt::Write as _;
use std::io::Write as _;
use std::process::{Command, ExitCode, Stdio};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use ::redlease::redis::aio::{ConnectionLike, MultiplexedConnection};
use ::redlease::redis::{self, Cmd, Pipeline, RedisFuture, Value};
use ::redlease::{CancellationToken, Client, Guard, LockOptions, Retry};
use tokio::task::JoinHandle;

/// Leases held at once, by default.
pub(crate) const LEASES: usize = 100_000;
/// Their TTL by default: redlease renews every third of it, 1 s.
pub(crate) const TTL: Duration = Duration::from_secs(3);
/// Acquisitions in flight at once while setting up.
const CONCURRENCY: usize = 64;
/// The first argument that makes this binary an R1 child.
pub(crate) const CHILD_FLAG: &str = "--internal-r1-child";
/// How long a child may overrun its schedule before it gives up on itself.
const CHILD_GRACE: Duration = Duration::from_mins(1);
/// Pause between connecting and the first `VmRSS` reading, so connection set-up is done.
const QUIET: Duration = Duration::from_millis(200);

/// The renewal interval for `ttl`: how often each lease is extended (a third of the TTL, as
/// [`LockOptions::auto_renew`] documents).
pub(crate) fn interval(ttl: Duration) -> Duration {
    ttl / 3
}

/// How the leases are kept alive.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Mode {
    /// redlease's auto-renewal: one renewer per client, batched round trips.
    Batched,
    /// One tokio task per lease calling `guard.extend`.
    Timers,
}

impl Mode {
    /// Both, in report order.
    pub(crate) const ALL: [Self; 2] = [Self::Batched, Self::Timers];

    /// The row label.
    pub(crate) fn label(self) -> &'static str {
        match self {
            Self::Batched => "redlease `auto_renew(true)` (one renewer, batched)",
            Self::Timers => "one timer per lease (`guard.extend` every ttl/3)",
        }
    }

    fn arg(self) -> &'static str {
        match self {
            Self::Batched => "batched",
            Self::Timers => "timers",
        }
    }

    fn parse(s: &str) -> Result<Self, String> {
        match s {
            "batched" => Ok(Self::Batched),
            "timers" => Ok(Self::Timers),
            other => Err(format!("unknown R1 mode {other:?}")),
        }
    }
}

/// What a child is asked to do.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct ChildArgs {
    /// How to keep the leases alive.
    pub(crate) mode: Mode,
    /// The Redis server.
    pub(crate) url: String,
    /// How many leases.
    pub(crate) leases: usize,
    /// Their TTL.
    pub(crate) ttl: Duration,
    /// Time between the last acquisition and the measurement window.
    pub(crate) settle: Duration,
    /// Length of the measurement window.
    pub(crate) window: Duration,
}

impl ChildArgs {
    /// The arguments after [`CHILD_FLAG`].
    fn to_args(&self) -> Vec<String> {
        vec![
            self.mode.arg().to_owned(),
            self.url.clone(),
            self.leases.to_string(),
            self.ttl.as_secs_f64().to_string(),
            self.settle.as_secs_f64().to_string(),
            self.window.as_secs_f64().to_string(),
        ]
    }

    /// Parses what [`to_args`](Self::to_args) produced.
    fn parse(args: &[String]) -> Result<Self, String> {
        let [mode, url, leases, ttl, settle, window] = args else {
            return Err(format!(
                "R1 child: expected 6 arguments, got {}",
                args.len()
            ));
        };
        let secs = |v: &str| {
            v.parse::<f64>()
                .ok()
                .and_then(|s| Duration::try_from_secs_f64(s).ok())
                .ok_or_else(|| format!("R1 child: {v:?} is not a number of seconds"))
        };
        Ok(Self {
            mode: Mode::parse(mode)?,
            url: url.clone(),
            leases: leases
                .parse()
                .map_err(|_| format!("R1 child: {leases:?} is not a count"))?,
            ttl: secs(ttl)?,
            settle: secs(settle)?,
            window: secs(window)?,
        })
    }
}

/// What one approach measured.
#[derive(Debug, Clone, PartialEq, Default)]
pub(crate) struct RenewalResult {
    /// Leases acquired.
    pub(crate) leases: u64,
    /// Their TTL (ms).
    pub(crate) ttl_ms: u64,
    /// Time to acquire them all (s).
    pub(crate) setup_s: f64,
    /// Length of the measurement window, as slept (s).
    pub(crate) window_s: f64,
    /// Single-command round trips in the window.
    pub(crate) singles: u64,
    /// Pipelines in the window (one round trip each).
    pub(crate) pipelines: u64,
    /// Commands carried by those pipelines.
    pub(crate) piped_commands: u64,
    /// Commands Redis executed in the window (`total_commands_processed`, less our two INFOs).
    pub(crate) redis_commands: Option<u64>,
    /// The child's user + system CPU time in the window (s).
    pub(crate) cpu_s: Option<f64>,
    /// `VmRSS` before the first acquisition (bytes).
    pub(crate) rss_before: Option<u64>,
    /// `VmRSS` once every lease was acquired (bytes).
    pub(crate) rss_acquired: Option<u64>,
    /// `VmRSS` at the end of the window (bytes).
    pub(crate) rss_end: Option<u64>,
    /// Leases whose guard no longer reported `is_held()` at the end of the window.
    pub(crate) not_held: u64,
    /// Failed `extend` calls (timers only; the renewer's failures show as leases not held).
    pub(crate) extend_errors: u64,
    /// Keys in Redis at the end of the window (each lease has its key and its fence counter).
    pub(crate) keys: Option<u64>,
}

impl RenewalResult {
    /// Round trips in the window.
    pub(crate) fn round_trips(&self) -> u64 {
        self.singles + self.pipelines
    }

    /// Round trips per second.
    pub(crate) fn round_trips_per_s(&self) -> f64 {
        per_second(self.round_trips(), self.window_s)
    }

    /// Round trips per renewal interval (one node).
    pub(crate) fn round_trips_per_tick(&self) -> f64 {
        self.round_trips_per_s() * self.interval().as_secs_f64()
    }

    /// Commands the client sent per second, pipelined or not: about one per renewal.
    pub(crate) fn sent_per_s(&self) -> f64 {
        per_second(self.singles + self.piped_commands, self.window_s)
    }

    /// Renewals each lease got per renewal interval: 1 when every lease is extended once per
    /// interval.
    pub(crate) fn renewals_per_lease_per_tick(&self) -> f64 {
        if self.leases == 0 {
            return 0.0;
        }
        self.sent_per_s() * self.interval().as_secs_f64() / crate::stats::as_f64(self.leases)
    }

    /// Commands per round trip (the average pipeline size, single commands included).
    pub(crate) fn commands_per_round_trip(&self) -> f64 {
        let trips = self.round_trips();
        if trips == 0 {
            return 0.0;
        }
        crate::stats::as_f64(self.singles + self.piped_commands) / crate::stats::as_f64(trips)
    }

    /// Redis commands per second.
    pub(crate) fn redis_per_s(&self) -> Option<f64> {
        self.redis_commands.map(|c| per_second(c, self.window_s))
    }

    /// Client CPU in percent of one core.
    pub(crate) fn cpu_pct(&self) -> Option<f64> {
        let cpu = self.cpu_s?;
        (self.window_s > 0.0).then(|| cpu * 100.0 / self.window_s)
    }

    /// Resident memory per lease, `rss − rss_before` over the leases (bytes; negative if the
    /// process shrank).
    pub(crate) fn bytes_per_lease(&self, rss: Option<u64>) -> Option<f64> {
        let (before, after) = (self.rss_before?, rss?);
        (self.leases > 0).then(|| {
            (crate::stats::as_f64(after) - crate::stats::as_f64(before))
                / crate::stats::as_f64(self.leases)
        })
    }

    /// The `r1 KEY VALUE` lines a child prints (unknown values are left out).
    /// The leases' renewal interval.
    pub(crate) fn interval(&self) -> Duration {
        interval(Duration::from_millis(self.ttl_ms))
    }

    pub(crate) fn to_lines(&self) -> String {
        let mut out = String::new();
        let mut put = |key: &str, value: String| {
            let _ = writeln!(out, "r1 {key} {value}");
        };
        put("leases", self.leases.to_string());
        put("ttl_ms", self.ttl_ms.to_string());
        put("setup_s", self.setup_s.to_string());
        put("window_s", self.window_s.to_string());
        put("singles", self.singles.to_string());
        put("pipelines", self.pipelines.to_string());
        put("piped_commands", self.piped_commands.to_string());
        put("not_held", self.not_held.to_string());
        put("extend_errors", self.extend_errors.to_string());
        let optional = [
            ("redis_commands", self.redis_commands),
            ("rss_before", self.rss_before),
            ("rss_acquired", self.rss_acquired),
            ("rss_end", self.rss_end),
            ("keys", self.keys),
        ];
        for (key, value) in optional {
            if let Some(v) = value {
                put(key, v.to_string());
            }
        }
        if let Some(cpu) = self.cpu_s {
            put("cpu_s", cpu.to_string());
        }
        out
    }

    /// Parses a child's stdout; lines not starting with `r1 ` are ignored. Every required key
    /// must be there.
    pub(crate) fn from_lines(text: &str) -> Result<Self, String> {
        let mut r = Self::default();
        let mut seen = Vec::new();
        for line in text.lines() {
            let Some(rest) = line.strip_prefix("r1 ") else {
                continue;
            };
            let (key, value) = rest
                .split_once(' ')
                .ok_or_else(|| format!("R1: malformed line {line:?}"))?;
            let int = || {
                value
                    .parse::<u64>()
                    .map_err(|_| format!("R1: {key} = {value:?} is not a count"))
            };
            let float = || {
                value
                    .parse::<f64>()
                    .map_err(|_| format!("R1: {key} = {value:?} is not a number"))
            };
            match key {
                "leases" => r.leases = int()?,
                "ttl_ms" => r.ttl_ms = int()?,
                "setup_s" => r.setup_s = float()?,
                "window_s" => r.window_s = float()?,
                "singles" => r.singles = int()?,
                "pipelines" => r.pipelines = int()?,
                "piped_commands" => r.piped_commands = int()?,
                "not_held" => r.not_held = int()?,
                "extend_errors" => r.extend_errors = int()?,
                "redis_commands" => r.redis_commands = Some(int()?),
                "rss_before" => r.rss_before = Some(int()?),
                "rss_acquired" => r.rss_acquired = Some(int()?),
                "rss_end" => r.rss_end = Some(int()?),
                "keys" => r.keys = Some(int()?),
                "cpu_s" => r.cpu_s = Some(float()?),
                other => return Err(format!("R1: unknown key {other:?}")),
            }
            seen.push(key.to_owned());
        }
        for required in [
            "leases",
            "ttl_ms",
            "setup_s",
            "window_s",
            "singles",
            "pipelines",
            "piped_commands",
            "not_held",
            "extend_errors",
        ] {
            if !seen.iter().any(|k| k == required) {
                return Err(format!("R1: the child reported no {required}"));
            }
        }
        Ok(r)
    }
}

fn per_second(n: u64, secs: f64) -> f64 {
    if secs > 0.0 {
        crate::stats::as_f64(n) / secs
    } else {
        0.0
    }
}

/// Runs one approach in a child process on a fresh server, and returns what it measured.
pub(crate) fn measure(
    mode: Mode,
    leases: usize,
    ttl: Duration,
    settle: Duration,
    window: Duration,
) -> Result<RenewalResult, String> {
    let server = redlease_testkit::RedisServer::start()
        .map_err(|e| format!("starting redis-server: {e}"))?;
    let args = ChildArgs {
        mode,
        url: server.url(),
        leases,
        ttl,
        settle,
        window,
    };
    let exe = std::env::current_exe().map_err(|e| format!("finding this binary: {e}"))?;
    let output = Command::new(exe)
        .arg(CHILD_FLAG)
        .args(args.to_args())
        .stdin(Stdio::null())
        .output()
        .map_err(|e| format!("starting the R1 child: {e}"))?;
    if !output.status.success() {
        let stderr = String::from_utf8_lossy(&output.stderr);
        let last = stderr.lines().last().unwrap_or("no message");
        return Err(format!("the R1 child failed ({}): {last}", output.status));
    }
    RenewalResult::from_lines(&String::from_utf8_lossy(&output.stdout))
}

/// The child's `main`: `args` are those after [`CHILD_FLAG`].
pub(crate) fn child_main(args: &[String]) -> ExitCode {
    let args = match ChildArgs::parse(args) {
        Ok(a) => a,
        Err(e) => {
            eprintln!("redlease-bench: {e}");
            return ExitCode::from(2);
        }
    };
    // A watchdog: a child that hangs must not hang the suite.
    let limit = args.settle + args.window + CHILD_GRACE;
    std::thread::spawn(move || {
        std::thread::sleep(limit);
        eprintln!("redlease-bench: R1 child overran its schedule by {CHILD_GRACE:?}");
        std::process::exit(3);
    });
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("redlease-bench: building the tokio runtime: {e}");
            return ExitCode::from(2);
        }
    };
    match runtime.block_on(child(&args)) {
        Ok(result) => {
            print!("{}", result.to_lines());
            let _ = std::io::stdout().flush();
            // Exit without dropping 10,000 guards (each would send a release).
            std::process::exit(0)
        }
        Err(e) => {
            eprintln!("redlease-bench: R1 child: {e}");
            ExitCode::from(2)
        }
    }
}

/// Round trips through a [`Counting`] connection.
#[derive(Debug, Default)]
struct Counters {
    singles: AtomicU64,
    pipelines: AtomicU64,
    piped_commands: AtomicU64,
}

impl Counters {
    fn snapshot(&self) -> [u64; 3] {
        [
            self.singles.load(Ordering::Relaxed),
            self.pipelines.load(Ordering::Relaxed),
            self.piped_commands.load(Ordering::Relaxed),
        ]
    }
}

/// A multiplexed connection that counts its round trips.
#[derive(Clone)]
struct Counting {
    inner: MultiplexedConnection,
    counters: Arc<Counters>,
}

impl ConnectionLike for Counting {
    fn req_packed_command<'a>(&'a mut self, cmd: &'a Cmd) -> RedisFuture<'a, Value> {
        self.counters.singles.fetch_add(1, Ordering::Relaxed);
        self.inner.req_packed_command(cmd)
    }

    fn req_packed_commands<'a>(
        &'a mut self,
        pipeline: &'a Pipeline,
        offset: usize,
        count: usize,
    ) -> RedisFuture<'a, Vec<Value>> {
        self.counters.pipelines.fetch_add(1, Ordering::Relaxed);
        self.counters
            .piped_commands
            .fetch_add(pipeline.len() as u64, Ordering::Relaxed);
        self.inner.req_packed_commands(pipeline, offset, count)
    }

    fn get_db(&self) -> i64 {
        self.inner.get_db()
    }
}

/// What an acquirer keeps for each lease.
enum Kept {
    /// Renewed by the client's renewer.
    Guard(Guard),
    /// Renewed by its own task, which returns whether the lease is still held when stopped.
    Timer(JoinHandle<bool>),
}

/// The child's work: connect, acquire, settle, measure, check.
async fn child(args: &ChildArgs) -> Result<RenewalResult, String> {
    let err = |what: &str| {
        let what = what.to_owned();
        move |e: redis::RedisError| format!("{what}: {e}")
    };
    let redis_client = redis::Client::open(args.url.as_str()).map_err(err("bad URL"))?;
    let counters = Arc::new(Counters::default());
    let counting = Counting {
        inner: redis_client
            .get_multiplexed_async_connection()
            .await
            .map_err(err("connecting"))?,
        counters: Arc::clone(&counters),
    };
    let client = Client::builder()
        .connection(counting)
        .build()
        .await
        .map_err(|e| format!("building the client: {e}"))?;
    // A separate, uncounted connection for INFO and DBSIZE.
    let mut probe = redis_client
        .get_multiplexed_async_connection()
        .await
        .map_err(err("connecting the probe"))?;
    let ticks = clock_ticks_per_s();
    tokio::time::sleep(QUIET).await;

    let rss_before = rss_bytes();
    let started = Instant::now();
    let stop = CancellationToken::new();
    let extend_errors = Arc::new(AtomicU64::new(0));
    let kept = acquire_all(args, &client, &stop, &extend_errors).await?;
    let setup = started.elapsed();
    let rss_acquired = rss_bytes();

    tokio::time::sleep(args.settle).await;
    let rt_before = counters.snapshot();
    let cpu_before = cpu_seconds(ticks);
    let cmds_before = total_commands(&mut probe).await;
    let window_start = Instant::now();
    tokio::time::sleep(args.window).await;
    let window = window_start.elapsed();
    let cmds_after = total_commands(&mut probe).await;
    let cpu_after = cpu_seconds(ticks);
    let rt_after = counters.snapshot();
    let rss_end = rss_bytes();
    let keys: Option<u64> = redis::cmd("DBSIZE").query_async(&mut probe).await.ok();

    let mut not_held = 0;
    stop.cancel();
    for k in kept {
        let held = match k {
            Kept::Guard(guard) => {
                let held = guard.is_held();
                std::mem::forget(guard); // no release traffic; the child exits next
                held
            }
            Kept::Timer(task) => task.await.unwrap_or(false),
        };
        not_held += u64::from(!held);
    }
    let delta = |i: usize| rt_after[i].saturating_sub(rt_before[i]);
    Ok(RenewalResult {
        leases: args.leases as u64,
        ttl_ms: u64::try_from(args.ttl.as_millis()).unwrap_or(u64::MAX),
        setup_s: setup.as_secs_f64(),
        window_s: window.as_secs_f64(),
        singles: delta(0),
        pipelines: delta(1),
        piped_commands: delta(2),
        // The first INFO is counted in the second's figure.
        redis_commands: cmds_before
            .zip(cmds_after)
            .map(|(b, a)| a.saturating_sub(b).saturating_sub(1)),
        cpu_s: cpu_before.zip(cpu_after).map(|(b, a)| (a - b).max(0.0)),
        rss_before,
        rss_acquired,
        rss_end,
        not_held,
        extend_errors: extend_errors.load(Ordering::Relaxed),
        keys,
    })
}

/// Acquires `args.leases` distinct leases, [`CONCURRENCY`] at a time, and sets up how each is
/// kept alive.
async fn acquire_all(
    args: &ChildArgs,
    client: &Client,
    stop: &CancellationToken,
    extend_errors: &Arc<AtomicU64>,
) -> Result<Vec<Kept>, String> {
    let options = LockOptions::new(args.ttl)
        .retry(Retry::none())
        .auto_renew(args.mode == Mode::Batched);
    let next = Arc::new(AtomicUsize::new(0));
    // One vector for all acquirers, allocated once: per-task vectors growing by doubling would
    // leave freed memory in the RSS reading and count it against the leases.
    let kept = Arc::new(Mutex::new(Vec::with_capacity(args.leases)));
    let mut acquirers = Vec::with_capacity(CONCURRENCY);
    for _ in 0..CONCURRENCY {
        let (client, options, next) = (client.clone(), options.clone(), Arc::clone(&next));
        let (kept, stop, errors, leases, mode, ttl) = (
            Arc::clone(&kept),
            stop.clone(),
            Arc::clone(extend_errors),
            args.leases,
            args.mode,
            args.ttl,
        );
        acquirers.push(tokio::spawn(async move {
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                if i >= leases {
                    return Ok::<(), String>(());
                }
                let guard = client
                    .acquire(&format!("r1:{i}"), &options)
                    .await
                    .map_err(|e| format!("acquiring lease {i}: {e}"))?;
                let k = match mode {
                    Mode::Batched => Kept::Guard(guard),
                    Mode::Timers => Kept::Timer(tokio::spawn(keep_alive(
                        guard,
                        ttl,
                        stop.clone(),
                        Arc::clone(&errors),
                    ))),
                };
                kept.lock().unwrap_or_else(PoisonError::into_inner).push(k);
            }
        }));
    }
    for acquirer in acquirers {
        acquirer
            .await
            .map_err(|e| format!("an acquirer task failed: {e}"))??;
    }
    let mut kept = kept.lock().unwrap_or_else(PoisonError::into_inner);
    Ok(std::mem::take(&mut *kept))
}

/// One lease's own timer: extend every `ttl / 3` until stopped; whether it is still held then.
async fn keep_alive(
    mut guard: Guard,
    ttl: Duration,
    stop: CancellationToken,
    errors: Arc<AtomicU64>,
) -> bool {
    loop {
        tokio::select! {
            () = stop.cancelled() => break,
            () = tokio::time::sleep(interval(ttl)) => {}
        }
        if guard.extend(ttl).await.is_err() {
            errors.fetch_add(1, Ordering::Relaxed);
            if !guard.is_held() {
                break;
            }
        }
    }
    let held = guard.is_held();
    std::mem::forget(guard); // no release traffic; the child exits next
    held
}

/// `total_commands_processed` of the server.
async fn total_commands(probe: &mut MultiplexedConnection) -> Option<u64> {
    let info: String = redis::cmd("INFO")
        .arg("stats")
        .query_async(probe)
        .await
        .ok()?;
    crate::scenarios::parse_total_commands(&info)
}

/// Clock ticks per second for `/proc/self/stat` (`getconf CLK_TCK`; 100 on every mainstream
/// Linux).
fn clock_ticks_per_s() -> f64 {
    Command::new("getconf")
        .arg("CLK_TCK")
        .output()
        .ok()
        .and_then(|o| String::from_utf8(o.stdout).ok())
        .and_then(|s| s.trim().parse::<f64>().ok())
        .filter(|t| *t > 0.0)
        .unwrap_or(100.0)
}

/// This process's user + system CPU time so far, all threads (s).
fn cpu_seconds(ticks_per_s: f64) -> Option<f64> {
    let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
    let ticks = crate::machine::parse_self_only(&stat)?;
    Some(crate::stats::as_f64(ticks) / ticks_per_s)
}

/// This process's resident set size (bytes).
fn rss_bytes() -> Option<u64> {
    parse_vm_rss(&std::fs::read_to_string("/proc/self/status").ok()?)
}

/// `VmRSS` from `/proc/PID/status`, in bytes.
fn parse_vm_rss(status: &str) -> Option<u64> {
    let line = status.lines().find_map(|l| l.strip_prefix("VmRSS:"))?;
    let kib: u64 = line.trim().strip_suffix("kB")?.trim().parse().ok()?;
    Some(kib * 1024)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn vm_rss_is_read_in_bytes() {
        let status = "Name:\tbench\nVmPeak:\t  9999 kB\nVmRSS:\t   12345 kB\nThreads:\t3\n";
        assert_eq!(parse_vm_rss(status), Some(12_345 * 1024));
        assert_eq!(parse_vm_rss("Name:\tbench\n"), None);
        // Our own, on Linux.
        assert!(rss_bytes().is_some_and(|b| b > 0));
        assert!(cpu_seconds(clock_ticks_per_s()).is_some());
    }

    #[test]
    fn child_args_round_trip() {
        let args = ChildArgs {
            mode: Mode::Timers,
            url: "redis://127.0.0.1:7000".to_owned(),
            leases: 10_000,
            ttl: Duration::from_secs(3),
            settle: Duration::from_secs(1),
            window: Duration::from_millis(10_500),
        };
        assert_eq!(ChildArgs::parse(&args.to_args()), Ok(args));
        assert!(ChildArgs::parse(&["batched".to_owned()]).is_err());
        let bad: Vec<String> = ["slow", "redis://x", "1", "3", "1", "1"]
            .iter()
            .map(|&s| s.to_owned())
            .collect();
        assert!(ChildArgs::parse(&bad).is_err());
    }

    fn sample() -> RenewalResult {
        RenewalResult {
            leases: 10_000,
            ttl_ms: 3_000,
            setup_s: 0.8,
            window_s: 10.0,
            singles: 2,
            pipelines: 20,
            piped_commands: 100_000,
            redis_commands: Some(300_000),
            cpu_s: Some(0.25),
            rss_before: Some(10_000_000),
            rss_acquired: Some(14_000_000),
            rss_end: Some(15_000_000),
            not_held: 0,
            extend_errors: 0,
            keys: Some(20_000),
        }
    }

    #[test]
    fn results_round_trip_through_the_child_protocol() {
        let r = sample();
        let text = format!("noise\n{}", r.to_lines());
        assert_eq!(RenewalResult::from_lines(&text), Ok(r));
        let partial = RenewalResult {
            cpu_s: None,
            keys: None,
            ..sample()
        };
        assert_eq!(RenewalResult::from_lines(&partial.to_lines()), Ok(partial));
        assert!(RenewalResult::from_lines("r1 leases 5\n").is_err());
        assert!(RenewalResult::from_lines("r1 leases five\n").is_err());
        assert!(RenewalResult::from_lines("r1 bogus 1\n").is_err());
    }

    #[test]
    fn derived_figures() {
        let r = sample();
        assert_eq!(r.round_trips(), 22);
        assert!((r.round_trips_per_s() - 2.2).abs() < 1e-9);
        // The interval is 1 s.
        assert!((r.round_trips_per_tick() - 2.2).abs() < 1e-9);
        assert!((r.sent_per_s() - 10_000.2).abs() < 1e-9);
        assert!((r.renewals_per_lease_per_tick() - 1.000_02).abs() < 1e-9);
        assert!((r.commands_per_round_trip() - 100_002.0 / 22.0).abs() < 1e-9);
        let idle = RenewalResult {
            leases: 0,
            singles: 0,
            pipelines: 0,
            ..sample()
        };
        assert!(idle.renewals_per_lease_per_tick().abs() < f64::EPSILON);
        assert!(idle.commands_per_round_trip().abs() < f64::EPSILON);
        assert_eq!(r.redis_per_s(), Some(30_000.0));
        assert!((r.cpu_pct().expect("known") - 2.5).abs() < 1e-9);
        assert_eq!(r.bytes_per_lease(r.rss_acquired), Some(400.0));
        assert_eq!(r.bytes_per_lease(r.rss_end), Some(500.0));
        let unknown = RenewalResult {
            rss_before: None,
            cpu_s: None,
            ..sample()
        };
        assert_eq!(unknown.bytes_per_lease(unknown.rss_end), None);
        assert_eq!(unknown.cpu_pct(), None);
        assert_eq!(r.interval(), Duration::from_secs(1));
    }
}
