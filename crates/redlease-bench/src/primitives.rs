//! The semaphore and the read-write lock, against the lock on the same workload.
//!
//! - P1: 8 workers (each its own client) on one name, each holding it 1 ms (then 10 ms),
//!   releasing, pausing 1 ms — as S3, but for a semaphore of 3 permits beside the lock. Busy
//!   % is the held time over the ideal (`limit × window`: every permit always held); the
//!   handoff gap is the idle time of a slot between one holder's release call and the next
//!   holder's grant (for the lock: of the lock).
//! - P2: a read-mostly workload: 8 workers, each operation a read (90 %) or a write (10 %)
//!   held 1 ms, through a read-write lock (readers share) and through the plain lock (every
//!   operation exclusive): reads/s and writes/s.

use std::fmt::Write as _;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::thread;
use std::time::{Duration, Instant};

use redlease::{Client, Guard, LockOptions, Retry};
use redlease_testkit::RedisServer;

use crate::report::decimal;
use crate::scenarios::{Env, wait_until};
use crate::stats::{Summary, as_f64, ns_since};

/// Workers in P1 and P2.
const WORKERS: usize = 8;
/// The semaphore's limit in P1.
const LIMIT: u32 = 3;
/// Hold times of P1, one table each.
const HOLDS: [Duration; 2] = [Duration::from_millis(1), Duration::from_millis(10)];
/// Pause between release and the next attempt.
const THINK: Duration = Duration::from_millis(1);
/// P2's share of reads, in percent, and how long each operation holds.
const READ_PERCENT: u32 = 90;
const P2_HOLD: Duration = Duration::from_millis(1);

/// What a worker holds while it works: the lock, a permit or a reader's share.
enum Held {
    Lock(Guard),
    Permit(redlease::Permit),
    Read(redlease::ReadGuard),
}

impl Held {
    fn slot(&self) -> u32 {
        match self {
            Self::Permit(permit) => permit.slot(),
            Self::Lock(_) | Self::Read(_) => 0,
        }
    }

    async fn release(self) -> Result<(), redlease::Error> {
        match self {
            Self::Lock(guard) => guard.release().await.map(drop),
            Self::Permit(permit) => permit.release().await.map(drop),
            Self::Read(reader) => reader.release().await.map(drop),
        }
    }
}

/// What is measured: how each worker acquires.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    Lock,
    Semaphore,
    /// Reads through the read-write lock (writes are the lock).
    RwLock,
    /// Reads and writes both take the lock.
    LockOnly,
}

/// One hold, in ns since the run's origin.
#[derive(Debug, Clone, Copy)]
struct Tenure {
    slot: u32,
    read: bool,
    acquired: u64,
    released: u64,
}

/// What a run measured.
#[derive(Debug, Default)]
struct Measured {
    holds: Vec<Tenure>,
    errors: usize,
    /// The most holders at once (readers or permits).
    most: usize,
}

/// Runs `WORKERS` workers in `mode` on a fresh server for warm-up plus the window.
fn measure(env: &Env, mode: Mode, hold: Duration) -> Result<(Measured, f64), String> {
    let server = RedisServer::start().map_err(|e| format!("starting redis-server: {e}"))?;
    let url = server.url();
    let origin = Instant::now() + Duration::from_millis(300);
    let (from, to) = (origin + env.warmup, origin + env.warmup + env.measure);
    let inside = Arc::new(AtomicUsize::new(0));
    let most = Arc::new(AtomicUsize::new(0));
    let workers: Vec<_> = (0..WORKERS)
        .map(|id| {
            let (url, inside, most) = (url.clone(), inside.clone(), most.clone());
            thread::spawn(move || {
                let runtime = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .map_err(|e| e.to_string())?;
                runtime.block_on(work(id, &url, mode, hold, (origin, to), &inside, &most))
            })
        })
        .collect();
    let mut measured = Measured::default();
    for worker in workers {
        let (holds, errors) = worker
            .join()
            .map_err(|_| "a worker panicked".to_owned())??;
        measured.holds.extend(holds);
        measured.errors += errors;
    }
    measured.most = most.load(Ordering::SeqCst);
    let window = (ns_since(origin, from), ns_since(origin, to));
    measured
        .holds
        .retain(|t| t.acquired >= window.0 && t.acquired < window.1);
    Ok((measured, env.measure.as_secs_f64()))
}

/// One worker: acquire as `mode` says, hold, release, pause, until `to`.
async fn work(
    id: usize,
    url: &str,
    mode: Mode,
    hold: Duration,
    (origin, to): (Instant, Instant),
    inside: &AtomicUsize,
    most: &AtomicUsize,
) -> Result<(Vec<Tenure>, usize), String> {
    let client = Client::connect(url).await.map_err(|e| e.to_string())?;
    let options = LockOptions::new(Duration::from_secs(5))
        .retry(Retry::fixed(Duration::from_millis(100)).timeout(Duration::from_secs(10)));
    let mut rng = fastrand::Rng::with_seed(id as u64);
    let (mut holds, mut errors) = (Vec::new(), 0);
    wait_until(origin);
    while Instant::now() < to {
        let read = matches!(mode, Mode::RwLock | Mode::LockOnly) && rng.u32(0..100) < READ_PERCENT;
        let granted = match mode {
            Mode::Semaphore => client
                .semaphore("p1", LIMIT)
                .acquire(&options)
                .await
                .map(Held::Permit),
            Mode::RwLock if read => client.rwlock("p2").read(&options).await.map(Held::Read),
            Mode::Lock | Mode::RwLock | Mode::LockOnly => {
                client.acquire("p", &options).await.map(Held::Lock)
            }
        };
        let Ok(lease) = granted else {
            errors += 1;
            continue;
        };
        let acquired = Instant::now();
        most.fetch_max(inside.fetch_add(1, Ordering::SeqCst) + 1, Ordering::SeqCst);
        wait_until(acquired + hold);
        inside.fetch_sub(1, Ordering::SeqCst);
        let released = Instant::now();
        holds.push(Tenure {
            slot: lease.slot(),
            read,
            acquired: ns_since(origin, acquired),
            released: ns_since(origin, released),
        });
        if lease.release().await.is_err() {
            errors += 1;
        }
        wait_until(Instant::now() + THINK);
    }
    Ok((holds, errors))
}

/// Busy % of `slots` always held, and the idle gaps of each slot between holders.
fn busy_and_gaps(holds: &[Tenure], slots: u32, window_s: f64) -> (f64, Summary) {
    let held: u64 = holds.iter().map(|t| t.released - t.acquired).sum();
    let busy = 100.0 * as_f64(held) / (window_s * 1e9 * f64::from(slots));
    let mut gaps = Vec::new();
    for slot in 0..slots {
        let mut of_slot: Vec<&Tenure> = holds.iter().filter(|t| t.slot == slot).collect();
        of_slot.sort_by_key(|t| t.acquired);
        gaps.extend(
            of_slot
                .windows(2)
                .filter_map(|pair| pair[1].acquired.checked_sub(pair[0].released)),
        );
    }
    (busy, Summary::of(&mut gaps))
}

fn micros(ns: u64) -> String {
    decimal(as_f64(ns) / 1e3)
}

/// P1: the semaphore beside the lock, one table per hold time.
pub(crate) fn semaphore_section(env: &Env) -> String {
    let mut text = String::new();
    for hold in HOLDS {
        let _ = writeln!(
            text,
            "### P1 — {WORKERS} workers, hold {} ms, pause {} ms: a semaphore of {LIMIT} permits beside the lock\n",
            hold.as_millis(),
            THINK.as_millis()
        );
        text.push_str("| primitive | grants/s | busy % of ideal | handoff gap p50 µs | p99 µs | most holders at once | errors |\n|---|---|---|---|---|---|---|\n");
        for (mode, slots) in [(Mode::Lock, 1), (Mode::Semaphore, LIMIT)] {
            eprint!("[P1] {mode:?}, hold {} ms ... ", hold.as_millis());
            match measure(env, mode, hold) {
                Ok((measured, window)) => {
                    let (busy, gaps) = busy_and_gaps(&measured.holds, slots, window);
                    eprintln!("busy {busy:.1} %");
                    let _ = writeln!(
                        text,
                        "| {} | {} | {} | {} | {} | {} | {} |",
                        if mode == Mode::Lock {
                            "lock".to_owned()
                        } else {
                            format!("semaphore ({LIMIT})")
                        },
                        decimal(as_f64(measured.holds.len() as u64) / window),
                        decimal(busy),
                        micros(gaps.p50),
                        micros(gaps.p99),
                        measured.most,
                        measured.errors
                    );
                }
                Err(e) => {
                    eprintln!("failed: {e}");
                    let _ = writeln!(text, "| {mode:?} | failed: {e} | | | | | |");
                }
            }
        }
        text.push('\n');
    }
    text
}

/// P2: reads and writes through the read-write lock against the lock alone.
pub(crate) fn read_mostly_section(env: &Env) -> String {
    let mut text = format!(
        "### P2 — {WORKERS} workers, {READ_PERCENT} % reads, each operation held {} ms, pause {} ms\n\n\
         | through | reads/s | writes/s | most readers at once | errors |\n|---|---|---|---|---|\n",
        P2_HOLD.as_millis(),
        THINK.as_millis()
    );
    let mut reads_per_s = Vec::new();
    for mode in [Mode::LockOnly, Mode::RwLock] {
        eprint!("[P2] {mode:?} ... ");
        match measure(env, mode, P2_HOLD) {
            Ok((measured, window)) => {
                let reads = measured.holds.iter().filter(|t| t.read).count();
                let writes = measured.holds.len() - reads;
                let rate = |n: usize| as_f64(n as u64) / window;
                reads_per_s.push(rate(reads));
                eprintln!("{:.0} reads/s", rate(reads));
                let _ = writeln!(
                    text,
                    "| {} | {} | {} | {} | {} |",
                    if mode == Mode::RwLock {
                        "read-write lock"
                    } else {
                        "lock (every operation exclusive)"
                    },
                    decimal(rate(reads)),
                    decimal(rate(writes)),
                    if mode == Mode::RwLock {
                        measured.most.to_string()
                    } else {
                        "1".to_owned()
                    },
                    measured.errors
                );
            }
            Err(e) => {
                eprintln!("failed: {e}");
                let _ = writeln!(text, "| {mode:?} | failed: {e} | | | |");
            }
        }
    }
    if let [lock, rw] = reads_per_s[..] {
        let _ = writeln!(
            text,
            "\nReader throughput: {}× the lock's.",
            decimal(rw / lock)
        );
    }
    text
}
