//! The semaphore and the read-write lock under torture: one scenario runs both at once, with
//! worker processes that alternate between a permit of a 3-permit semaphore and a read or a
//! write of a read-write lock, while holders are paused past their TTL or killed and the node
//! is paused. The record keeper checks the safety of each: never more than N valid permits at
//! once, never a valid writer beside any other valid holder. It is also a resource fenced per
//! slot (permits) and by write fence (writers), which refuses the late writes of holders whose
//! hold passed to another. The negative control splits the workers over two key prefixes — two
//! groups that disagree about where the name lives — and must show the violations.

use std::collections::HashMap;
use std::fmt::Write as _;
use std::io::{self, BufRead as _, BufReader, Write as _};
use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::thread;
use std::time::{Duration, Instant};

use nix::sys::signal::Signal;
use redlease::{Client, Guard, LockOptions, Permit, ReadGuard, Retry};
use redlease_testkit::RedisServer;

use crate::clock::{instant_ns, now_ns};
use crate::oracle::WorkerId;
use crate::scenario::{Workers, signal};

/// The semaphore's name and limit, and the read-write lock's name.
const SEMAPHORE: &str = "slots";
const LIMIT: usize = 3;
const RWLOCK: &str = "document";
/// The key prefix of the workers (and of the negative control's other half).
const PREFIX: &str = "torture:";
const SPLIT_PREFIX: &str = "torture-split:";
/// A careful holder writes only with at least this much of its hold left.
const WRITE_MARGIN: Duration = Duration::from_millis(100);

/// One run of both primitives.
#[derive(Debug, Clone)]
pub(crate) struct Primitives {
    pub(crate) name: String,
    pub(crate) duration: Duration,
    pub(crate) workers: u32,
    pub(crate) ttl: Duration,
    pub(crate) seed: u64,
    /// The negative control: half the workers use another key prefix.
    pub(crate) split: bool,
}

/// The kinds of hold, as the worker reports them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Permit,
    Read,
    Write,
}

impl Kind {
    fn code(self) -> &'static str {
        match self {
            Self::Permit => "P",
            Self::Read => "R",
            Self::Write => "W",
        }
    }

    fn parse(code: &str) -> Option<Self> {
        match code {
            "P" => Some(Self::Permit),
            "R" => Some(Self::Read),
            "W" => Some(Self::Write),
            _ => None,
        }
    }
}

/// One hold as the record keeper saw it.
#[derive(Debug, Clone)]
struct Hold {
    kind: Kind,
    slot: u32,
    fence: u64,
    /// When the worker's acquire returned (shared clock).
    granted: u64,
    /// The latest deadline the worker reported.
    valid_until: u64,
    /// When the worker started releasing; none if it died first.
    released: Option<u64>,
}

impl Hold {
    /// Until when the holder could trust it: its deadline, or its release if earlier.
    fn window_end(&self) -> u64 {
        self.released
            .map_or(self.valid_until, |r| r.min(self.valid_until))
    }
}

#[derive(Debug, Default)]
struct Record {
    holds: Vec<Hold>,
    /// Open holds by worker (the key into `holds`).
    open: HashMap<WorkerId, usize>,
    /// The resource: the largest fence seen per permit slot, and for writes.
    slot_fences: HashMap<u32, u64>,
    write_fence: u64,
    accepted: u64,
    refused: u64,
    stop: bool,
    garbage: Vec<String>,
}

/// The record keeper, serving the workers over loopback TCP.
struct Keeper {
    record: Arc<Mutex<Record>>,
    addr: SocketAddr,
}

fn locked(record: &Mutex<Record>) -> MutexGuard<'_, Record> {
    record.lock().unwrap_or_else(PoisonError::into_inner)
}

impl Keeper {
    fn start() -> io::Result<Self> {
        let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0))?;
        let addr = listener.local_addr()?;
        let record = Arc::new(Mutex::new(Record::default()));
        let shared = record.clone();
        thread::spawn(move || {
            for stream in listener.incoming().flatten() {
                let record = shared.clone();
                thread::spawn(move || serve(&record, stream));
            }
        });
        Ok(Self { record, addr })
    }

    /// Workers currently inside a hold.
    fn holders(&self) -> Vec<WorkerId> {
        locked(&self.record).open.keys().copied().collect()
    }
}

/// One worker's connection: `HELLO slot incarnation`, then `TICK` (→ `GO`/`STOP`), `BEGIN kind
/// slot fence granted valid_until`, `VALID valid_until`, `WRITE` (→ `ACCEPT`/`REFUSE`), `END
/// released`. A connection that breaks (a killed worker) leaves its hold open: it ends at its
/// deadline.
fn serve(record: &Mutex<Record>, stream: TcpStream) {
    let Ok(mut reply) = stream.try_clone() else {
        return;
    };
    let mut worker = (u32::MAX, 0);
    for line in BufReader::new(stream).lines() {
        let Ok(line) = line else { break };
        let words: Vec<&str> = line.split_whitespace().collect();
        let mut record = locked(record);
        let answer = match words.as_slice() {
            ["HELLO", slot, incarnation] => {
                worker = (
                    slot.parse().unwrap_or(u32::MAX),
                    incarnation.parse().unwrap_or(0),
                );
                Some("OK")
            }
            ["TICK"] => Some(if record.stop { "STOP" } else { "GO" }),
            ["BEGIN", kind, slot, fence, granted, valid_until] => {
                let parsed = (
                    Kind::parse(kind),
                    slot.parse(),
                    fence.parse(),
                    granted.parse(),
                    valid_until.parse(),
                );
                if let (Some(kind), Ok(slot), Ok(fence), Ok(granted), Ok(valid_until)) = parsed {
                    let index = record.holds.len();
                    record.holds.push(Hold {
                        kind,
                        slot,
                        fence,
                        granted,
                        valid_until,
                        released: None,
                    });
                    record.open.insert(worker, index);
                } else {
                    record.garbage.push(line.clone());
                }
                None
            }
            ["VALID", valid_until] => {
                if let (Some(&index), Ok(at)) = (record.open.get(&worker), valid_until.parse()) {
                    record.holds[index].valid_until = at;
                }
                None
            }
            ["WRITE"] => Some(if write(&mut record, worker) {
                "ACCEPT"
            } else {
                "REFUSE"
            }),
            ["END", released] => {
                if let (Some(index), Ok(at)) = (record.open.remove(&worker), released.parse()) {
                    record.holds[index].released = Some(at);
                }
                None
            }
            _ => {
                record.garbage.push(line.clone());
                None
            }
        };
        drop(record);
        if let Some(answer) = answer
            && writeln!(reply, "{answer}").is_err()
        {
            break;
        }
    }
    // Gone (killed, or done): an open hold ends at its deadline; the worker is no holder now.
    locked(record).open.remove(&worker);
}

/// The resource's verdict on a write of `worker`'s open hold: refused when a later grant of
/// its slot (a permit) or a later write grant (a writer) has been seen.
fn write(record: &mut Record, worker: WorkerId) -> bool {
    let Some(hold) = record.open.get(&worker).map(|&i| record.holds[i].clone()) else {
        return false;
    };
    let newest = match hold.kind {
        Kind::Permit => record.slot_fences.entry(hold.slot).or_default(),
        Kind::Write => &mut record.write_fence,
        Kind::Read => return false,
    };
    let accepted = hold.fence >= *newest;
    *newest = (*newest).max(hold.fence);
    if accepted {
        record.accepted += 1;
    } else {
        record.refused += 1;
    }
    accepted
}

/// A worker process: its command line.
fn worker_args(
    keeper: SocketAddr,
    url: &str,
    run: &Primitives,
) -> impl Fn(u32, u32) -> Vec<String> + use<> {
    let (url, ttl, seed, split) = (url.to_owned(), run.ttl, run.seed, run.split);
    move |slot, incarnation| {
        let prefix = if split && slot % 2 == 1 {
            SPLIT_PREFIX
        } else {
            PREFIX
        };
        [
            "prim-worker",
            &slot.to_string(),
            &incarnation.to_string(),
            &keeper.to_string(),
            &url,
            prefix,
            &ttl.as_millis().to_string(),
            &seed.to_string(),
        ]
        .map(str::to_owned)
        .to_vec()
    }
}

/// The `prim-worker` role: `slot incarnation keeper url prefix ttl-ms seed`.
pub(crate) fn worker_main(args: &[String]) -> Result<(), String> {
    let [slot, incarnation, keeper, url, prefix, ttl, seed] = args else {
        return Err("prim-worker: slot incarnation keeper url prefix ttl-ms seed".into());
    };
    let bad = |what: &str| format!("prim-worker: bad {what}");
    let slot: u32 = slot.parse().map_err(|_| bad("slot"))?;
    let incarnation: u32 = incarnation.parse().map_err(|_| bad("incarnation"))?;
    let ttl = Duration::from_millis(ttl.parse().map_err(|_| bad("ttl"))?);
    let seed: u64 = seed.parse().map_err(|_| bad("seed"))?;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| e.to_string())?;
    let mut connection = TcpStream::connect(keeper).map_err(|e| e.to_string())?;
    let mut replies = BufReader::new(connection.try_clone().map_err(|e| e.to_string())?);
    let mut ask = move |line: &str| -> io::Result<String> {
        writeln!(connection, "{line}")?;
        let mut reply = String::new();
        if !line.starts_with("BEGIN") && !line.starts_with("VALID") && !line.starts_with("END") {
            replies.read_line(&mut reply)?;
        }
        Ok(reply.trim_end().to_owned())
    };
    ask(&format!("HELLO {slot} {incarnation}")).map_err(|e| e.to_string())?;
    let mut rng = fastrand::Rng::with_seed(seed ^ (u64::from(slot) << 32) ^ u64::from(incarnation));
    runtime.block_on(async {
        let client = Client::builder()
            .prefix(prefix.as_str())
            .url(url.as_str())
            .build()
            .await
            .map_err(|e| e.to_string())?;
        let options = LockOptions::new(ttl).auto_renew(true).retry(
            Retry::exponential(Duration::from_millis(10), Duration::from_millis(100))
                .timeout(Duration::from_secs(2)),
        );
        while ask("TICK").map_err(|e| e.to_string())? == "GO" {
            let held = match rng.u32(0..8) {
                0..4 => client
                    .semaphore(SEMAPHORE, 3)
                    .acquire(&options)
                    .await
                    .map(Held::Permit),
                4..7 => client.rwlock(RWLOCK).read(&options).await.map(Held::Read),
                _ => client.rwlock(RWLOCK).write(&options).await.map(Held::Write),
            };
            if let Ok(held) = held {
                section(&mut ask, &mut rng, held, ttl)
                    .await
                    .map_err(|e| e.to_string())?;
            }
            tokio::time::sleep(Duration::from_millis(rng.u64(0..=20))).await;
        }
        Ok(())
    })
}

/// What a worker holds.
enum Held {
    Permit(Permit),
    Read(ReadGuard),
    Write(Guard),
}

/// One hold: report it, work (sometimes past the TTL; naive holders never look), write if the
/// hold still has room (a naive one writes anyway), release.
async fn section(
    ask: &mut impl FnMut(&str) -> io::Result<String>,
    rng: &mut fastrand::Rng,
    held: Held,
    ttl: Duration,
) -> io::Result<()> {
    let (kind, slot, guard): (Kind, u32, &Guard) = match &held {
        Held::Permit(permit) => (Kind::Permit, permit.slot(), &**permit),
        Held::Read(reader) => (Kind::Read, 0, &**reader),
        Held::Write(writer) => (Kind::Write, 0, writer),
    };
    let granted = now_ns();
    let mut valid_until = instant_ns(guard.valid_until());
    ask(&format!(
        "BEGIN {} {slot} {} {granted} {valid_until}",
        kind.code(),
        guard.fence()
    ))?;
    let naive = rng.f64() < 0.3;
    let work = if rng.u32(0..10) == 0 {
        ttl * 2
    } else {
        Duration::from_millis(rng.u64(0..=150))
    };
    let end = Instant::now() + work;
    let mut lost = std::pin::pin!(guard.lost());
    let mut lost_early = false;
    while Instant::now() < end {
        let step = (end - Instant::now()).min(Duration::from_millis(25));
        tokio::select! {
            _ = &mut lost, if !naive && !lost_early => lost_early = true,
            () = tokio::time::sleep(step) => {}
        }
        if lost_early {
            break;
        }
        let now_valid = instant_ns(guard.valid_until());
        if now_valid > valid_until {
            valid_until = now_valid;
            ask(&format!("VALID {valid_until}"))?;
        }
    }
    if kind != Kind::Read && (naive || (!lost_early && guard.remaining() >= WRITE_MARGIN)) {
        tokio::time::sleep(Duration::from_millis(rng.u64(10..=30))).await;
        ask("WRITE")?;
    }
    ask(&format!(
        "END {}",
        now_ns().min(instant_ns(guard.valid_until()).max(valid_until))
    ))?;
    let _ = match held {
        Held::Permit(permit) => permit.release().await,
        Held::Read(reader) => reader.release().await,
        Held::Write(writer) => writer.release().await,
    };
    Ok(())
}

/// What a run found.
#[derive(Debug, Default)]
pub(crate) struct Findings {
    pub(crate) permits: usize,
    pub(crate) reads: usize,
    pub(crate) writes: usize,
    /// The most valid permits at one instant (must reach the limit, never pass it).
    pub(crate) most_permits: usize,
    /// The most valid readers at one instant (they share).
    pub(crate) most_readers: usize,
    /// Grants made while the limit's worth of valid permits existed already.
    pub(crate) over_limit: usize,
    /// Pairs of a valid writer and another valid holder of the read-write lock.
    pub(crate) writer_overlaps: usize,
    pub(crate) writes_accepted: u64,
    pub(crate) stale_refused: u64,
    pub(crate) faults: Vec<String>,
    pub(crate) failures: Vec<String>,
}

impl Findings {
    pub(crate) fn violations(&self) -> usize {
        self.over_limit + self.writer_overlaps
    }
}

/// The most holds of `holds` valid at one instant, and how many were granted with `limit`
/// already valid.
fn concurrency<'a>(holds: impl Iterator<Item = &'a Hold>, limit: usize) -> (usize, usize) {
    let mut edges: Vec<(u64, bool)> = Vec::new();
    for hold in holds {
        edges.push((hold.granted, true));
        edges.push((hold.window_end(), false));
    }
    // Ends before starts at the same instant: a hand-over is not an overlap.
    edges.sort_by_key(|&(at, start)| (at, start));
    let (mut live, mut most, mut over) = (0usize, 0, 0);
    for (_, start) in edges {
        if start {
            if live >= limit {
                over += 1;
            }
            live += 1;
            most = most.max(live);
        } else {
            live = live.saturating_sub(1);
        }
    }
    (most, over)
}

fn analyse(record: &Record) -> Findings {
    let of = |kind: Kind| record.holds.iter().filter(move |h| h.kind == kind);
    let (most_permits, over_limit) = concurrency(of(Kind::Permit), LIMIT);
    let (most_readers, _) = concurrency(of(Kind::Read), usize::MAX);
    let writer_overlaps = of(Kind::Write)
        .map(|writer| {
            record
                .holds
                .iter()
                .filter(|other| other.kind != Kind::Permit && !std::ptr::eq(*other, writer))
                .filter(|other| {
                    other.granted < writer.window_end() && writer.granted < other.window_end()
                })
                .count()
        })
        .sum();
    let mut findings = Findings {
        permits: of(Kind::Permit).count(),
        reads: of(Kind::Read).count(),
        writes: of(Kind::Write).count(),
        most_permits,
        most_readers,
        over_limit,
        writer_overlaps,
        writes_accepted: record.accepted,
        stale_refused: record.refused,
        ..Findings::default()
    };
    if !record.garbage.is_empty() {
        findings
            .failures
            .push(format!("unreadable reports: {:?}", record.garbage));
    }
    findings
}

/// Runs `run` and returns what it found.
pub(crate) fn run(run: &Primitives) -> Result<Findings, String> {
    let logs = tempfile::tempdir().map_err(|e| format!("cannot create a log directory: {e}"))?;
    let mut server = RedisServer::builder()
        .persistence(true)
        .start()
        .map_err(|e| format!("redis-server: {e}"))?;
    let keeper = Keeper::start().map_err(|e| format!("record keeper: {e}"))?;
    let args = worker_args(keeper.addr, &server.url(), run);
    let mut workers = Workers::start(Box::new(args), run.workers, logs.path())?;
    let mut rng = fastrand::Rng::with_seed(run.seed);
    let started = Instant::now();
    let mut faults = Vec::new();
    // A fault every 1.5 s (after a quiet start), healed before the next.
    let mut next = started + Duration::from_secs(1);
    while next + run.ttl * 3 < started + run.duration {
        workers.wait_until(next);
        let holders = keeper.holders();
        let target = (!holders.is_empty()).then(|| holders[rng.usize(0..holders.len())]);
        let pid = target.and_then(|worker| workers.pid_of(worker));
        match (rng.u32(0..3), target, pid) {
            (0, Some(worker), Some(pid)) => {
                signal(pid, Signal::SIGSTOP)?;
                thread::sleep(run.ttl * 5 / 2);
                signal(pid, Signal::SIGCONT)?;
                faults.push(format!("holder-pause {worker:?}"));
            }
            (1, Some(worker), Some(_)) => {
                workers.kill(worker)?;
                faults.push(format!("holder-kill {worker:?}"));
            }
            _ => {
                server.pause().map_err(|e| e.to_string())?;
                thread::sleep(run.ttl / 3);
                server.resume().map_err(|e| e.to_string())?;
                faults.push("node-pause".to_owned());
            }
        }
        next = Instant::now() + Duration::from_millis(1_500);
    }
    workers.wait_until(started + run.duration);
    locked(&keeper.record).stop = true;
    let hung = workers.stop();
    // Every hold ends by its TTL; then nothing but fence counters may be left.
    thread::sleep(run.ttl * 2);
    let left = keys_left(&server)?;
    let record = locked(&keeper.record);
    let mut findings = analyse(&record);
    findings.faults = faults;
    if !left.is_empty() {
        findings
            .failures
            .push(format!("keys left behind: {left:?}"));
    }
    if !hung.is_empty() {
        findings
            .failures
            .push(format!("workers that did not stop: {hung:?}"));
    }
    for crash in &workers.crashes {
        findings.failures.push(format!(
            "worker {:?} crashed ({}): {}",
            crash.worker, crash.status, crash.log_tail
        ));
    }
    if findings.permits < 20 || findings.reads < 20 || findings.writes < 5 {
        findings.failures.push("too little progress".to_owned());
    }
    if !run.split && findings.most_permits < LIMIT {
        findings
            .failures
            .push(format!("never {LIMIT} permits at once"));
    }
    if !run.split && findings.most_readers < 2 {
        findings.failures.push("readers never shared".to_owned());
    }
    if run.split && findings.violations() == 0 {
        findings
            .failures
            .push("the negative control did not bite".to_owned());
    }
    Ok(findings)
}

/// Every key of the run but the fence counters.
fn keys_left(server: &RedisServer) -> Result<Vec<String>, String> {
    let mut connection = redis::Client::open(server.url())
        .and_then(|client| client.get_connection())
        .map_err(|e| e.to_string())?;
    let keys: Vec<String> = redis::cmd("KEYS")
        .arg("torture*")
        .query(&mut connection)
        .map_err(|e| e.to_string())?;
    Ok(keys
        .into_iter()
        .filter(|key| !key.ends_with(":fence"))
        .collect())
}

/// The report's table row and section for a run.
pub(crate) fn report(run: &Primitives, findings: &Findings) -> (String, String) {
    let passed = findings.failures.is_empty() && (run.split || findings.violations() == 0);
    let row = format!(
        "| `{}` | {} | {} | {} | {} | {} | {} | {} |",
        run.name,
        if passed { "PASS" } else { "**FAIL**" },
        findings.permits + findings.reads + findings.writes,
        findings.writes_accepted,
        findings.stale_refused,
        format_args!(
            "max {} permits, {} readers",
            findings.most_permits, findings.most_readers
        ),
        if run.split {
            format!("control bit: {}", findings.violations() > 0)
        } else {
            findings.violations().to_string()
        },
        findings.failures.len()
    );
    let mut body = format!(
        "\n## {} (semaphore of {LIMIT} and read-write lock, {} workers, {} s{})\n\n",
        run.name,
        run.workers,
        run.duration.as_secs(),
        if run.split {
            ", half the workers on another key prefix"
        } else {
            ""
        }
    );
    let _ = writeln!(
        body,
        "- grants: {} permits, {} reads, {} writes; most at once: {} permits (limit {LIMIT}), {} readers",
        findings.permits,
        findings.reads,
        findings.writes,
        findings.most_permits,
        findings.most_readers
    );
    let _ = writeln!(
        body,
        "- safety: {} grants beyond the limit, {} writer overlaps (must be 0{})",
        findings.over_limit,
        findings.writer_overlaps,
        if run.split {
            "; here the control must show them"
        } else {
            ""
        }
    );
    let _ = writeln!(
        body,
        "- resource (fenced per slot and by write fence): {} writes accepted, {} late writes refused",
        findings.writes_accepted, findings.stale_refused
    );
    let _ = writeln!(body, "- faults: {}", findings.faults.join(", "));
    for failure in &findings.failures {
        let _ = writeln!(body, "- **failure**: {failure}");
    }
    (row, body)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hold(kind: Kind, from: u64, to: u64) -> Hold {
        Hold {
            kind,
            slot: 0,
            fence: 1,
            granted: from,
            valid_until: to,
            released: None,
        }
    }

    #[test]
    fn concurrency_counts_valid_windows_and_grants_beyond_the_limit() {
        let holds = [
            hold(Kind::Permit, 0, 10),
            hold(Kind::Permit, 1, 10),
            hold(Kind::Permit, 10, 20), // a hand-over at 10 is no overlap
            hold(Kind::Permit, 2, 5),
        ];
        assert_eq!(concurrency(holds.iter(), 3), (3, 0));
        assert_eq!(concurrency(holds.iter(), 2), (3, 1));
    }

    #[test]
    fn a_writer_beside_any_reader_or_writer_is_a_violation() {
        let record = Record {
            holds: vec![
                hold(Kind::Read, 0, 10),
                hold(Kind::Read, 5, 15),
                hold(Kind::Write, 15, 20),
                hold(Kind::Write, 19, 25),
                hold(Kind::Permit, 0, 30),
            ],
            ..Record::default()
        };
        let findings = analyse(&record);
        assert_eq!(findings.most_readers, 2);
        assert_eq!(
            findings.writer_overlaps, 2,
            "the two writers, counted from each side"
        );
    }
}
