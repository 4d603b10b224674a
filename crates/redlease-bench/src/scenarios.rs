//! The scenarios: how workers drive an [`Adapter`] and what they record.
//!
//! Every measurement gets fresh `redis-server` processes from the testkit, which are killed
//! when it ends. Workers run from a common start for warm-up plus measurement; only what
//! happens inside the measurement window `[measure_from, end)` is counted, on one monotonic
//! clock shared by all workers.
//!
//! - S1 and S2 (uncontended pairs) share one connected adapter: async adapters run as tasks on
//!   the suite's multi-thread runtime, blocking ones on a thread each.
//! - S3 (contention) gives every worker its own adapter, connected on its own thread with its
//!   own current-thread runtime, as separate processes would have. Holds and pauses block that
//!   thread (sleep, then spin for the last 200 µs) so they are exact to a few µs, which
//!   `tokio::time::sleep` (whole-millisecond ticks, rounded up) is not. python-redis-lock's
//!   workers are processes running the same loop, reporting their timestamps on the same
//!   clock; their holds go through the same statistics.

use std::future::Future;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, mpsc};
use std::thread;
use std::time::{Duration, Instant};

use redlease_testkit::RedisServer;
use tokio::runtime::Runtime;

use crate::adapters::python;
use crate::adapters::{Adapter, Failure, SKIPPED, Variant, Visit};
use crate::stats::{self, Hold, Summary, nanos, ns_since};

/// Delay between connecting and the common start, so every worker is spawned by then.
const START_DELAY: Duration = Duration::from_millis(100);
/// How long workers may take to finish their last call after the end of a run.
const STOP_GRACE: Duration = Duration::from_secs(15);
/// How long S3 workers may take to connect.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// The one name S3's workers contend for.
const CONTENDED_NAME: &str = "s3";
/// Pause after an error, so a broken server does not turn a worker into a hot loop.
const ERROR_PAUSE: Duration = Duration::from_millis(1);
/// The last stretch of a precise wait, spent spinning instead of sleeping.
const SPIN: Duration = Duration::from_micros(200);

/// What every measurement needs: the runtime for async adapters and the durations.
#[derive(Debug, Clone)]
pub(crate) struct Env {
    /// Multi-thread runtime (one worker per core) for async adapters in S1/S2 and for sampling.
    pub(crate) rt: Arc<Runtime>,
    /// Running time before the measurement window.
    pub(crate) warmup: Duration,
    /// Length of the measurement window.
    pub(crate) measure: Duration,
}

impl Env {
    /// The same runtime with other durations.
    pub(crate) fn with_timing(&self, warmup: Duration, measure: Duration) -> Self {
        Self {
            rt: Arc::clone(&self.rt),
            warmup,
            measure,
        }
    }
}

/// When a run starts, when its measurement window opens, and when it ends.
#[derive(Debug, Clone, Copy)]
struct Schedule {
    origin: Instant,
    measure_from: Instant,
    end: Instant,
}

impl Schedule {
    fn starting_in(env: &Env, delay: Duration) -> Self {
        let origin = Instant::now() + delay;
        let measure_from = origin + env.warmup;
        Self {
            origin,
            measure_from,
            end: measure_from + env.measure,
        }
    }

    fn in_window(&self, t: Instant) -> bool {
        t >= self.measure_from && t < self.end
    }

    fn measure_secs(&self) -> f64 {
        (self.end - self.measure_from).as_secs_f64()
    }
}

/// Failures that did not stop a run.
#[derive(Debug, Default, Clone)]
pub(crate) struct Trouble {
    /// Acquire calls that gave up (the library's retry policy ran out).
    pub(crate) gave_up: u64,
    /// Other failed calls, acquire or release.
    pub(crate) errors: u64,
    /// The first error's message.
    pub(crate) first_error: Option<String>,
}

impl Trouble {
    fn error(&mut self, message: String) {
        self.errors += 1;
        self.first_error.get_or_insert(message);
    }

    fn merge(&mut self, other: Self) {
        self.gave_up += other.gave_up;
        self.errors += other.errors;
        if self.first_error.is_none() {
            self.first_error = other.first_error;
        }
    }
}

/// Result of S1 or S2: acquire + release pairs.
#[derive(Debug, Clone)]
pub(crate) struct PairsResult {
    /// Pairs started in the window, per second.
    pub(crate) pairs_per_s: f64,
    /// Latency of one pair, acquire call to release return (ns).
    pub(crate) latency: Summary,
    /// Redis commands per pair, from the servers' `total_commands_processed`.
    pub(crate) cmds_per_pair: Option<f64>,
    /// Failures.
    pub(crate) trouble: Trouble,
}

/// Result of S3: workers taking turns on one name.
#[derive(Debug, Default)]
pub(crate) struct ContentionResult {
    /// Acquisitions in the window, per second.
    pub(crate) acq_per_s: f64,
    /// `acq_per_s ÷ (1000 / H)`, in percent: the share of time the lock was held.
    pub(crate) busy_pct: f64,
    /// Idle gaps: previous holder's release call start to the next acquire return (ns).
    pub(crate) gaps: Summary,
    /// Every idle gap counted in `gaps`, ascending (ns), for the picture.
    pub(crate) gap_samples: Vec<u64>,
    /// Acquire call (the first, if it gave up and was called again) to its return (ns), for
    /// acquisitions in the window; a wait still unfinished at the end counts up to the end, so
    /// that starved workers show.
    pub(crate) waits: Summary,
    /// Measured holds: acquire return to release call start (ns).
    pub(crate) holds: Summary,
    /// Acquisitions per worker in the window, smallest and largest.
    pub(crate) per_worker: (u64, u64),
    /// `(max − min) / mean` of the acquisitions per worker.
    pub(crate) spread: Option<f64>,
    /// Share of acquisitions by a worker other than the previous holder, in percent.
    pub(crate) changed_hands_pct: f64,
    /// Redis commands per acquisition (all workers' polling included).
    pub(crate) cmds_per_acq: Option<f64>,
    /// Times a worker found the shared "inside" flag already set on entry.
    pub(crate) violations: u64,
    /// Holds that began before the previous one's release, on the shared clock.
    pub(crate) overlaps: u64,
    /// Failures.
    pub(crate) trouble: Trouble,
    /// What ran, when the row's name does not say it all (versions of an outside library).
    pub(crate) about: Option<String>,
}

/// Starts `variant.nodes` fresh servers and returns them with their URLs.
fn start_servers(variant: &Variant) -> Result<(Vec<RedisServer>, Vec<String>), String> {
    let servers = redlease_testkit::start_nodes(variant.nodes)
        .map_err(|e| format!("starting redis-server: {e}"))?;
    let urls = servers.iter().map(RedisServer::url).collect();
    Ok((servers, urls))
}

/// S1 (`tasks` = 1) and S2: `tasks` workers on distinct names through one shared adapter,
/// each repeating acquire + release as fast as it can.
pub(crate) fn pairs(env: &Env, variant: &Variant, tasks: usize) -> Result<PairsResult, String> {
    let (_servers, urls) = start_servers(variant)?;
    variant.lib.visit(PairsRun {
        env,
        urls: &urls,
        tasks,
    })
}

/// S3: `workers` workers, each with its own adapter, on one name; each holds the lock for
/// `hold`, releases it, pauses for `think`, and tries again.
pub(crate) fn contention(
    env: &Env,
    variant: &Variant,
    workers: usize,
    hold: Duration,
    think: Duration,
) -> Result<ContentionResult, String> {
    let (_servers, urls) = start_servers(variant)?;
    variant.lib.visit(ContentionRun {
        env,
        urls: &urls,
        workers,
        hold,
        think,
    })
}

struct PairsRun<'a> {
    env: &'a Env,
    urls: &'a [String],
    tasks: usize,
}

impl Visit for PairsRun<'_> {
    type Out = Result<PairsResult, String>;

    fn visit<A: Adapter>(self, config: &A::Config) -> Self::Out {
        let env = self.env;
        let adapter = Arc::new(env.rt.block_on(A::connect(config, self.urls))?);
        let counter = env.rt.block_on(Sampler::connect(self.urls));
        let schedule = Schedule::starting_in(env, START_DELAY);
        let mut workers = Vec::with_capacity(self.tasks);
        for task in 0..self.tasks {
            let adapter = Arc::clone(&adapter);
            let name = if self.tasks == 1 {
                "s1".to_owned()
            } else {
                format!("s2:{task}")
            };
            let work = pair_loop(adapter, name, schedule);
            match spawn(env, A::BLOCKING, work) {
                Ok(w) => workers.push(w),
                Err(e) => {
                    // Let the others run out, then report.
                    let _ = join_all(env, workers, schedule.end + STOP_GRACE);
                    return Err(e);
                }
            }
        }
        let commands = env.rt.block_on(counter.count(schedule));
        let (tallies, failures) = join_all(env, workers, schedule.end + STOP_GRACE);
        if let Some(failure) = failures.into_iter().next() {
            return Err(failure);
        }
        let mut trouble = Trouble::default();
        let mut samples = Vec::new();
        for (worker_samples, worker_trouble) in tallies {
            samples.extend(worker_samples);
            trouble.merge(worker_trouble);
        }
        let latency = Summary::of(&mut samples);
        Ok(PairsResult {
            pairs_per_s: stats::as_f64(latency.count) / schedule.measure_secs(),
            latency,
            cmds_per_pair: per(commands, latency.count),
            trouble,
        })
    }

    fn visit_python(self) -> Self::Out {
        Err(format!("{SKIPPED}python-redis-lock runs in S3 only"))
    }
}

/// Commands per event, when both are known and there were events.
fn per(commands: Option<u64>, events: u64) -> Option<f64> {
    let commands = commands?;
    (events > 0).then(|| stats::as_f64(commands) / stats::as_f64(events))
}

/// One S1/S2 worker: acquire + release on `name` until the run ends. Returns the latencies of
/// the pairs started in the window and the failures.
async fn pair_loop<A: Adapter>(
    adapter: Arc<A>,
    name: String,
    schedule: Schedule,
) -> (Vec<u64>, Trouble) {
    sleep_until(schedule.origin).await;
    let mut samples = Vec::new();
    let mut trouble = Trouble::default();
    loop {
        let start = Instant::now();
        if start >= schedule.end {
            break;
        }
        let counted = start >= schedule.measure_from;
        let failed = match adapter.acquire(&name).await {
            Ok(held) => match adapter.release(held).await {
                Ok(()) => {
                    if counted {
                        samples.push(nanos(start.elapsed()));
                    }
                    false
                }
                Err(e) => {
                    trouble.error(e);
                    true
                }
            },
            Err(Failure::GaveUp) => {
                trouble.gave_up += u64::from(counted);
                true
            }
            Err(Failure::Error(e)) => {
                trouble.error(e);
                true
            }
        };
        if failed {
            tokio::time::sleep(ERROR_PAUSE).await;
        }
    }
    (samples, trouble)
}

struct ContentionRun<'a> {
    env: &'a Env,
    urls: &'a [String],
    workers: usize,
    hold: Duration,
    think: Duration,
}

/// What one S3 worker recorded.
#[derive(Debug, Default)]
struct Contender {
    holds: Vec<Hold>,
    /// Acquisitions in the window.
    acquisitions: u64,
    /// Waits of the acquisitions in the window, and of a wait unfinished at the end (ns).
    waits: Vec<u64>,
    violations: u64,
    trouble: Trouble,
}

impl Contender {
    /// Counts an acquire call made at `called` that returned at `returned` (ns since the
    /// origin), with the lock if `got_lock`: an acquisition in the window counts with its wait;
    /// a wait that went on past the end counts up to the end, so that starved workers show.
    fn waited(&mut self, window: Window, called: u64, returned: u64, got_lock: bool) {
        if returned >= window.to {
            self.waits.push(window.to.saturating_sub(called));
        } else if got_lock && returned >= window.from {
            self.acquisitions += 1;
            self.waits.push(returned - called);
        }
    }
}

/// The measurement window in ns since the run's origin: `[from, to)`.
#[derive(Debug, Clone, Copy)]
struct Window {
    from: u64,
    to: u64,
}

impl Window {
    fn of(schedule: &Schedule) -> Self {
        Self {
            from: ns_since(schedule.origin, schedule.measure_from),
            to: ns_since(schedule.origin, schedule.end),
        }
    }
}

impl Visit for ContentionRun<'_> {
    type Out = Result<ContentionResult, String>;

    fn visit<A: Adapter>(self, config: &A::Config) -> Self::Out {
        let env = self.env;
        let inside = Arc::new(AtomicBool::new(false));
        let (ready_tx, ready_rx) = mpsc::channel::<Result<(), String>>();
        let mut starts = Vec::with_capacity(self.workers);
        let mut handles = Vec::with_capacity(self.workers);
        let mut failure = None;
        for id in 0..self.workers {
            let (start_tx, start_rx) = mpsc::channel::<Schedule>();
            let config = config.clone();
            let urls = self.urls.to_vec();
            let ready = ready_tx.clone();
            let inside = Arc::clone(&inside);
            let (hold, think) = (self.hold, self.think);
            let work = async move {
                let adapter = match A::connect(&config, &urls).await {
                    Ok(a) => a,
                    Err(e) => {
                        let _ = ready.send(Err(e));
                        return Contender::default();
                    }
                };
                let _ = ready.send(Ok(()));
                // A dropped sender (another worker failed) means: do not run.
                let Ok(schedule) = start_rx.recv() else {
                    return Contender::default();
                };
                contend(&adapter, id, schedule, hold, think, &inside).await
            };
            match spawn(env, true, work) {
                Ok(handle) => {
                    handles.push(handle);
                    starts.push(start_tx);
                }
                Err(e) => {
                    failure = Some(e);
                    break;
                }
            }
        }
        drop(ready_tx);
        if failure.is_none() {
            failure = await_ready(&ready_rx, handles.len());
        }
        if let Some(e) = failure {
            drop(starts);
            let _ = join_all(env, handles, Instant::now() + STOP_GRACE);
            return Err(e);
        }
        let counter = env.rt.block_on(Sampler::connect(self.urls));
        let schedule = Schedule::starting_in(env, START_DELAY);
        for start in starts {
            let _ = start.send(schedule);
        }
        let commands = env.rt.block_on(counter.count(schedule));
        let (contenders, failures) = join_all(env, handles, schedule.end + STOP_GRACE);
        if let Some(failure) = failures.into_iter().next() {
            return Err(failure);
        }
        Ok(summarise(contenders, schedule, self.hold, commands))
    }

    fn visit_python(self) -> Self::Out {
        let env = self.env;
        let venv = python::venv()?;
        let task = python::Task {
            url: self.urls.first().ok_or("no server")?,
            name: CONTENDED_NAME,
            hold: self.hold,
            think: self.think,
        };
        let (ready_tx, ready_rx) = mpsc::channel::<Result<(), String>>();
        let mut workers = python::Workers::spawn(venv, self.workers, task, &ready_tx)?;
        drop(ready_tx);
        if let Some(e) = await_ready(&ready_rx, self.workers) {
            return Err(e);
        }
        let counter = env.rt.block_on(Sampler::connect(self.urls));
        let schedule = Schedule::starting_in(env, START_DELAY);
        let origin = python::monotonic_ns(schedule.origin)?;
        let window = Window::of(&schedule);
        workers.start(origin, origin + window.to)?;
        let commands = env.rt.block_on(counter.count(schedule));
        let records = workers.finish(schedule.end + STOP_GRACE)?;
        let contenders = records
            .into_iter()
            .enumerate()
            .map(|(id, record)| {
                let mut me = Contender {
                    violations: record.violations,
                    trouble: Trouble {
                        gave_up: 0,
                        errors: record.errors,
                        first_error: record.first_error,
                    },
                    ..Contender::default()
                };
                for call in record.calls {
                    let since = |t: u64| t.saturating_sub(origin);
                    let (called, returned) = (since(call.called), since(call.returned));
                    me.waited(window, called, returned, call.released.is_some());
                    if let Some(released) = call.released {
                        me.holds.push(Hold {
                            worker: id,
                            acquired: returned,
                            released: since(released),
                        });
                    }
                }
                me
            })
            .collect();
        let mut result = summarise(contenders, schedule, self.hold, commands);
        result.about = Some(venv.about().to_owned());
        Ok(result)
    }
}

/// Waits until `n` workers said they are connected; the first failure, if any.
fn await_ready(ready: &mpsc::Receiver<Result<(), String>>, n: usize) -> Option<String> {
    let deadline = Instant::now() + CONNECT_TIMEOUT;
    for _ in 0..n {
        let left = deadline.saturating_duration_since(Instant::now());
        match ready.recv_timeout(left) {
            Ok(Ok(())) => {}
            Ok(Err(e)) => return Some(format!("connecting: {e}")),
            Err(_) => return Some("workers did not connect in time".to_owned()),
        }
    }
    None
}

/// Turns what the S3 workers recorded into the report's figures.
fn summarise(
    contenders: Vec<Contender>,
    schedule: Schedule,
    hold: Duration,
    commands: Option<u64>,
) -> ContentionResult {
    let Window { from, to } = Window::of(&schedule);
    let mut holds = Vec::new();
    let mut waits = Vec::new();
    let mut per_worker = Vec::new();
    let mut violations = 0;
    let mut trouble = Trouble::default();
    for c in contenders {
        per_worker.push(c.acquisitions);
        holds.extend(c.holds);
        waits.extend(c.waits);
        violations += c.violations;
        trouble.merge(c.trouble);
    }
    let handoffs = stats::handoffs(&mut holds, from, to);
    let mut hold_times: Vec<u64> = holds
        .iter()
        .filter(|h| h.acquired >= from && h.acquired < to)
        .map(|h| h.released.saturating_sub(h.acquired))
        .collect();
    let acquisitions: u64 = per_worker.iter().sum();
    let acq_per_s = stats::as_f64(acquisitions) / schedule.measure_secs();
    let mut gaps = handoffs.gaps;
    ContentionResult {
        acq_per_s,
        busy_pct: acq_per_s * hold.as_secs_f64() * 100.0,
        gaps: Summary::of(&mut gaps),
        gap_samples: gaps,
        waits: Summary::of(&mut waits),
        holds: Summary::of(&mut hold_times),
        per_worker: stats::spread(&per_worker),
        spread: stats::relative_spread(&per_worker),
        changed_hands_pct: if acquisitions == 0 {
            0.0
        } else {
            stats::as_f64(handoffs.changed_hands) * 100.0 / stats::as_f64(acquisitions)
        },
        cmds_per_acq: per(commands, acquisitions),
        violations,
        overlaps: handoffs.overlaps,
        trouble,
        about: None,
    }
}

/// One S3 worker: take the lock (calling again after each give-up), hold it for `hold`,
/// release it, pause for `think`, until the run ends.
async fn contend<A: Adapter>(
    adapter: &A,
    id: usize,
    schedule: Schedule,
    hold_for: Duration,
    think: Duration,
    inside: &AtomicBool,
) -> Contender {
    let stop_waiting = schedule.end + STOP_GRACE / 2;
    let window = Window::of(&schedule);
    let since = |t: Instant| ns_since(schedule.origin, t);
    let mut me = Contender::default();
    crate::breakdown::enter_worker(id);
    wait_until(schedule.origin);
    loop {
        let called = Instant::now();
        if called >= schedule.end {
            break;
        }
        let lease = loop {
            match tokio::time::timeout_at(stop_waiting.into(), adapter.acquire(CONTENDED_NAME))
                .await
            {
                Ok(Ok(lease)) => break Some(lease),
                Ok(Err(Failure::GaveUp)) => {
                    me.trouble.gave_up += u64::from(schedule.in_window(Instant::now()));
                }
                Ok(Err(Failure::Error(e))) => {
                    me.trouble.error(e);
                    wait_until(Instant::now() + ERROR_PAUSE);
                }
                Err(_elapsed) => break None,
            }
            if Instant::now() >= schedule.end {
                break None;
            }
        };
        let acquired = Instant::now();
        me.waited(window, since(called), since(acquired), lease.is_some());
        let Some(lease) = lease else { break };
        if inside.swap(true, Ordering::SeqCst) {
            me.violations += 1;
        }
        if acquired < schedule.end {
            wait_until(acquired + hold_for);
        }
        inside.store(false, Ordering::SeqCst);
        let released = Instant::now();
        me.holds.push(Hold {
            worker: id,
            acquired: since(acquired),
            released: since(released),
        });
        if let Err(e) = adapter.release(lease).await {
            me.trouble.error(e);
        }
        wait_until(Instant::now() + think);
    }
    me
}

/// Blocks the thread until `deadline`: sleeps, then spins for the last [`SPIN`].
pub(crate) fn wait_until(deadline: Instant) {
    let now = Instant::now();
    if let Some(long) = deadline.checked_duration_since(now + SPIN) {
        thread::sleep(long);
    }
    while Instant::now() < deadline {
        std::hint::spin_loop();
    }
}

/// Sleeps on the tokio timer until `t` (async workers in S1/S2 must not block their thread).
async fn sleep_until(t: Instant) {
    tokio::time::sleep_until(t.into()).await;
}

/// A running worker: a task on the suite's runtime or a thread with a runtime of its own.
enum Worker<T> {
    Task(tokio::task::JoinHandle<T>),
    Thread(thread::JoinHandle<Option<T>>),
}

/// Starts `work` as a task on the suite's runtime, or on a new thread with its own
/// current-thread runtime when `own_thread` is set.
fn spawn<T, F>(env: &Env, own_thread: bool, work: F) -> Result<Worker<T>, String>
where
    T: Send + 'static,
    F: Future<Output = T> + Send + 'static,
{
    if !own_thread {
        return Ok(Worker::Task(env.rt.spawn(work)));
    }
    thread::Builder::new()
        .name("bench-worker".to_owned())
        .spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .ok()?;
            Some(rt.block_on(work))
        })
        .map(Worker::Thread)
        .map_err(|e| format!("spawning a worker thread: {e}"))
}

/// Joins every worker, waiting until `deadline` at most. Returns the results of those that
/// finished and a message for each that failed, panicked or overran.
fn join_all<T>(env: &Env, workers: Vec<Worker<T>>, deadline: Instant) -> (Vec<T>, Vec<String>) {
    let mut done = Vec::with_capacity(workers.len());
    let mut failures = Vec::new();
    for worker in workers {
        match worker {
            Worker::Task(handle) => {
                let abort = handle.abort_handle();
                let joined = env
                    .rt
                    .block_on(async { tokio::time::timeout_at(deadline.into(), handle).await });
                match joined {
                    Ok(Ok(t)) => done.push(t),
                    Ok(Err(e)) => failures.push(format!("worker task failed: {e}")),
                    Err(_) => {
                        abort.abort();
                        failures.push("worker task did not stop in time".to_owned());
                    }
                }
            }
            Worker::Thread(handle) => {
                while !handle.is_finished() && Instant::now() < deadline {
                    thread::sleep(Duration::from_millis(5));
                }
                if !handle.is_finished() {
                    // Detached; it ends when its server is killed.
                    failures.push("worker thread did not stop in time".to_owned());
                    continue;
                }
                match handle.join() {
                    Ok(Some(t)) => done.push(t),
                    Ok(None) => failures.push("worker thread could not build a runtime".into()),
                    Err(_) => failures.push("worker thread panicked".to_owned()),
                }
            }
        }
    }
    (done, failures)
}

/// Reads the servers' `total_commands_processed` at the start and end of the window.
struct Sampler {
    connections: Vec<redis::aio::MultiplexedConnection>,
}

impl Sampler {
    /// Connects to every node; nodes that cannot be reached are left out of the count (which
    /// is then reported as unknown).
    async fn connect(urls: &[String]) -> Self {
        let mut connections = Vec::with_capacity(urls.len());
        for url in urls {
            let Ok(client) = redis::Client::open(url.as_str()) else {
                continue;
            };
            if let Ok(c) = client.get_multiplexed_async_connection().await {
                connections.push(c);
            }
        }
        Self { connections }
    }

    /// Commands the servers processed during the window, less the sampler's own.
    async fn count(mut self, schedule: Schedule) -> Option<u64> {
        if self.connections.is_empty() {
            return None;
        }
        sleep_until(schedule.measure_from).await;
        let before = self.total().await;
        sleep_until(schedule.end).await;
        let after = self.total().await;
        // The first INFO is counted in `after`, on every node.
        Some(
            after?
                .saturating_sub(before?)
                .saturating_sub(self.connections.len() as u64),
        )
    }

    async fn total(&mut self) -> Option<u64> {
        let mut sum = 0;
        for connection in &mut self.connections {
            let info: String = redis::cmd("INFO")
                .arg("stats")
                .query_async(connection)
                .await
                .ok()?;
            sum += parse_total_commands(&info)?;
        }
        Some(sum)
    }
}

/// `total_commands_processed` from an `INFO stats` reply.
pub(crate) fn parse_total_commands(info: &str) -> Option<u64> {
    info.lines()
        .find_map(|line| line.strip_prefix("total_commands_processed:"))
        .and_then(|v| v.trim().parse().ok())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_total_commands() {
        let info = "# Stats\r\ntotal_connections_received:3\r\ntotal_commands_processed:1234\r\n";
        assert_eq!(parse_total_commands(info), Some(1234));
        assert_eq!(parse_total_commands("# Stats\r\n"), None);
    }

    #[test]
    fn wait_until_is_precise_and_does_not_wait_for_the_past() {
        let start = Instant::now();
        wait_until(start + Duration::from_millis(2));
        let took = start.elapsed();
        assert!(took >= Duration::from_millis(2), "{took:?}");
        let past = Instant::now();
        wait_until(past.checked_sub(Duration::from_millis(1)).unwrap_or(past));
        assert!(past.elapsed() < Duration::from_millis(1));
    }

    #[test]
    fn per_event() {
        assert_eq!(per(Some(10), 5), Some(2.0));
        assert_eq!(per(Some(10), 0), None);
        assert_eq!(per(None, 5), None);
    }
}
