//! The worker role: a separate process (so it can be paused or killed) that loops over
//! acquire → critical section → release and reports every step to the oracle.
//!
//! A critical section: read the resource (with the fence), work for a random time (sometimes
//! longer than the TTL), then write the incremented value with the fence. A *careful*
//! iteration stops working when the lease is lost and writes only if the lease still has
//! room; a *naive* one (a share of iterations) never looks and writes blindly, as code that
//! ignores the loss signal would. Between the last check and the write there is a short
//! "prepare" step: the window in which the fault scheduler pauses holders so that a late
//! write reaches the resource (Kleppmann's scenario).

use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use redlease::{
    Client, DEFAULT_DRIFT_FACTOR, DRIFT_FLOOR, Error, Guard, LockOptions, ReleaseOutcome, Retry,
};
use tokio::io::{AsyncBufReadExt as _, AsyncWriteExt as _, BufReader};
use tokio::net::TcpStream;
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::sync::Mutex;

use crate::clock::{dur_ns, instant_ns, now_ns};

/// The key prefix every torture run uses.
pub(crate) const PREFIX: &str = "torture:";
/// The one lock all workers fight over.
pub(crate) const LOCK: &str = "resource";
/// A careful holder writes only if at least this much of its lease is left.
const WRITE_MARGIN: Duration = Duration::from_millis(100);
/// How often a holder looks at its deadline (to see renewals) while working.
const POLL: Duration = Duration::from_millis(25);

/// What a worker process is told on its command line.
#[derive(Debug, Clone)]
pub(crate) struct WorkerArgs {
    pub(crate) slot: u32,
    pub(crate) incarnation: u32,
    pub(crate) oracle: SocketAddr,
    pub(crate) urls: Vec<String>,
    pub(crate) ttl: Duration,
    pub(crate) renew: bool,
    pub(crate) seed: u64,
    /// Share of iterations that do not check the lease before writing.
    pub(crate) naive_share: f64,
}

impl WorkerArgs {
    /// The command-line form, parsed back by [`WorkerArgs::parse`].
    pub(crate) fn to_args(&self) -> Vec<String> {
        let mut args = vec![
            "worker".to_owned(),
            "--slot".into(),
            self.slot.to_string(),
            "--incarnation".into(),
            self.incarnation.to_string(),
            "--oracle".into(),
            self.oracle.to_string(),
            "--ttl-ms".into(),
            self.ttl.as_millis().to_string(),
            "--renew".into(),
            if self.renew { "on" } else { "off" }.into(),
            "--seed".into(),
            self.seed.to_string(),
            "--naive".into(),
            self.naive_share.to_string(),
        ];
        for url in &self.urls {
            args.push("--url".into());
            args.push(url.clone());
        }
        args
    }

    pub(crate) fn parse(args: &[String]) -> Result<Self, String> {
        let mut parsed = Self {
            slot: 0,
            incarnation: 0,
            oracle: SocketAddr::from(([127, 0, 0, 1], 0)),
            urls: Vec::new(),
            ttl: Duration::from_millis(500),
            renew: false,
            seed: 0,
            naive_share: 0.0,
        };
        let mut it = args.iter();
        while let Some(flag) = it.next() {
            let value = it
                .next()
                .ok_or_else(|| format!("{flag} needs a value"))?
                .as_str();
            let bad = || format!("bad value for {flag}: {value:?}");
            match flag.as_str() {
                "--slot" => parsed.slot = value.parse().map_err(|_| bad())?,
                "--incarnation" => parsed.incarnation = value.parse().map_err(|_| bad())?,
                "--oracle" => parsed.oracle = value.parse().map_err(|_| bad())?,
                "--url" => parsed.urls.push(value.to_owned()),
                "--ttl-ms" => parsed.ttl = Duration::from_millis(value.parse().map_err(|_| bad())?),
                "--renew" => parsed.renew = value == "on",
                "--seed" => parsed.seed = value.parse().map_err(|_| bad())?,
                "--naive" => parsed.naive_share = value.parse().map_err(|_| bad())?,
                other => return Err(format!("unknown worker option {other}")),
            }
        }
        if parsed.urls.is_empty() {
            return Err("a worker needs at least one --url".into());
        }
        Ok(parsed)
    }
}

/// A short name for an error's kind, as counted in the report.
pub(crate) fn error_kind(error: &Error) -> String {
    match error {
        Error::Contended { .. } => "Contended".into(),
        Error::TimedOut { .. } => "TimedOut".into(),
        Error::Lost(_) => "Lost".into(),
        Error::WrongType { .. } => "WrongType".into(),
        Error::InvalidConfig(_) => "InvalidConfig".into(),
        Error::Backend(e) => format!("Backend/{:?}", e.kind()),
        Error::NoQuorum { .. } => "NoQuorum".into(),
        Error::Entropy(_) => "Entropy".into(),
        _ => "Other".into(),
    }
}

/// The connection to the oracle: requests wait for a reply, reports do not.
struct Oracle {
    reader: BufReader<OwnedReadHalf>,
    writer: Arc<Mutex<OwnedWriteHalf>>,
}

impl Oracle {
    async fn connect(addr: SocketAddr) -> io::Result<Self> {
        let stream = TcpStream::connect(addr).await?;
        stream.set_nodelay(true)?;
        let (read, write) = stream.into_split();
        Ok(Self {
            reader: BufReader::new(read),
            writer: Arc::new(Mutex::new(write)),
        })
    }

    async fn report(&self, line: &str) -> io::Result<()> {
        send(&self.writer, line).await
    }

    async fn request(&mut self, line: &str) -> io::Result<String> {
        self.report(line).await?;
        let mut reply = String::new();
        if self.reader.read_line(&mut reply).await? == 0 {
            return Err(io::ErrorKind::UnexpectedEof.into());
        }
        Ok(reply.trim_end().to_owned())
    }
}

async fn send(writer: &Mutex<OwnedWriteHalf>, line: &str) -> io::Result<()> {
    writer
        .lock()
        .await
        .write_all(format!("{line}\n").as_bytes())
        .await
}

/// Runs the worker role until the oracle says stop. Errors are I/O problems with the oracle.
pub(crate) fn main(args: &WorkerArgs) -> Result<(), String> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| format!("cannot start a runtime: {e}"))?;
    runtime
        .block_on(run(args))
        .map_err(|e| format!("worker {}.{}: {e}", args.slot, args.incarnation))
}

async fn run(args: &WorkerArgs) -> io::Result<()> {
    let mut oracle = Oracle::connect(args.oracle).await?;
    oracle
        .request(&format!(
            "HELLO {} {} {}",
            args.slot,
            args.incarnation,
            std::process::id()
        ))
        .await?;
    let mut rng = fastrand::Rng::with_seed(
        args.seed ^ (u64::from(args.slot) << 32) ^ u64::from(args.incarnation).rotate_left(48),
    );
    let client = loop {
        if oracle.request("TICK").await? == "STOP" {
            oracle.request("BYE 0").await?;
            return Ok(());
        }
        let mut builder = Client::builder()
            .prefix(PREFIX)
            .connect_timeout(Duration::from_secs(1));
        for url in &args.urls {
            builder = builder.url(url.clone());
        }
        match builder.build().await {
            Ok(client) => break client,
            Err(e) => {
                oracle
                    .report(&format!("EV connect_err:{}", error_kind(&e)))
                    .await?;
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        }
    };
    let options = LockOptions::new(args.ttl)
        .retry(
            Retry::exponential(Duration::from_millis(10), Duration::from_millis(100))
                .timeout(Duration::from_secs(2)),
        )
        .auto_renew(args.renew);
    // The same client also takes short leases on a lock of its own, as an application with
    // several locks would: more requests in flight on each connection.
    let chaff = tokio::spawn(chaff(client.clone(), args.slot, args.seed));
    let mut accepted = 0u64;
    let mut sequence = 0u64;
    while oracle.request("TICK").await? != "STOP" {
        oracle.report("EV acq_attempt").await?;
        match client.acquire(LOCK, &options).await {
            Ok(guard) => {
                oracle.report("EV acq_ok").await?;
                sequence += 1;
                let section = Section {
                    h: sequence,
                    ttl: args.ttl,
                    naive: rng.f64() < args.naive_share,
                    work: draw_work(&mut rng, args.ttl),
                    prepare: Duration::from_millis(rng.u64(20..=60)),
                };
                if section.run(&mut oracle, guard).await? {
                    accepted += 1;
                }
            }
            Err(e) => {
                oracle
                    .report(&format!("EV acq_err:{}", error_kind(&e)))
                    .await?;
            }
        }
        tokio::time::sleep(Duration::from_millis(rng.u64(0..=30))).await;
    }
    chaff.abort();
    let _ = chaff.await;
    oracle.request(&format!("BYE {accepted}")).await?;
    Ok(())
}

/// Takes and releases a short lease on a lock nobody else uses, over and over.
async fn chaff(client: Client, slot: u32, seed: u64) {
    let mut rng = fastrand::Rng::with_seed(seed ^ 0xc4af ^ u64::from(slot));
    let name = format!("chaff-{slot}");
    loop {
        if let Ok(guard) = client.try_acquire(&name, Duration::from_millis(300)).await {
            tokio::time::sleep(Duration::from_millis(rng.u64(0..=20))).await;
            let _ = guard.release().await;
        }
        tokio::time::sleep(Duration::from_millis(rng.u64(10..=40))).await;
    }
}

/// Mostly short work, sometimes up to about half the TTL, and one time in ten longer than
/// the TTL.
fn draw_work(rng: &mut fastrand::Rng, ttl: Duration) -> Duration {
    let ttl_ms = u64::try_from(ttl.as_millis()).unwrap_or(u64::MAX);
    let ms = match rng.u32(0..100) {
        0..70 => rng.u64(0..=ttl_ms * 3 / 10),
        70..90 => rng.u64(ttl_ms * 3 / 10..=ttl_ms * 9 / 10),
        _ => rng.u64(ttl_ms..=ttl_ms * 2),
    };
    Duration::from_millis(ms)
}

/// One critical section.
struct Section {
    h: u64,
    ttl: Duration,
    naive: bool,
    work: Duration,
    prepare: Duration,
}

impl Section {
    /// Reads, works, writes, leaves and releases. Returns whether the write was accepted.
    async fn run(&self, oracle: &mut Oracle, guard: Guard) -> io::Result<bool> {
        let h = self.h;
        let t_ret = now_ns();
        let drift = self.ttl.mul_f64(DEFAULT_DRIFT_FACTOR) + DRIFT_FLOOR;
        let mut valid_until = instant_ns(guard.valid_until());
        let t_sent = valid_until.saturating_sub(dur_ns(self.ttl.saturating_sub(drift)));

        // Report the loss signal when it fires (not when the worker gets round to it).
        let lost = guard.lost();
        let writer = oracle.writer.clone();
        let watcher = tokio::spawn(async move {
            let reason = lost.await;
            let at = now_ns();
            if reason != redlease::Lost::Released {
                let _ = send(&writer, &format!("LOST {h} {reason:?} {at}")).await;
            }
        });

        let read = oracle
            .request(&format!(
                "BEGIN {h} {} {t_sent} {t_ret} {valid_until} {} {}",
                guard.fence(),
                u8::from(self.naive),
                self.work.as_millis()
            ))
            .await?;
        let mut accepted = false;
        if let Some(value) = read.strip_prefix("READ ") {
            let value: u64 = value.parse().map_err(|_| io::Error::other(read.clone()))?;
            let lost_early = self.work(oracle, &guard, &mut valid_until).await?;
            let write = self.naive || (!lost_early && guard.remaining() >= WRITE_MARGIN);
            if write {
                oracle.report(&format!("CHECK {h}")).await?;
                tokio::time::sleep(self.prepare).await;
                let verdict = oracle.request(&format!("WRITE {h} {}", value + 1)).await?;
                accepted = verdict == "ACCEPT";
                oracle
                    .report(if accepted {
                        "EV write_accepted"
                    } else {
                        "EV write_rejected"
                    })
                    .await?;
            } else {
                oracle.report("EV write_skipped_lease_lost").await?;
            }
        } else {
            oracle.report("EV read_fenced").await?;
        }
        let release_start = now_ns();
        let final_valid = instant_ns(guard.valid_until()).max(valid_until);
        oracle
            .report(&format!("END {h} {release_start} {final_valid}"))
            .await?;
        let outcome = match guard.release().await {
            Ok(ReleaseOutcome::Released) => "Released".to_owned(),
            Ok(ReleaseOutcome::Expired) => "Expired".to_owned(),
            Ok(ReleaseOutcome::HeldByOther) => "HeldByOther".to_owned(),
            Ok(other) => format!("{other:?}"),
            Err(e) => format!("error/{}", error_kind(&e)),
        };
        oracle.report(&format!("RELEASED {h} {outcome}")).await?;
        watcher.abort();
        Ok(accepted)
    }

    /// Works for the planned time, reporting renewals. A careful holder stops as soon as the
    /// lease is lost; returns whether it did.
    async fn work(
        &self,
        oracle: &Oracle,
        guard: &Guard,
        valid_until: &mut u64,
    ) -> io::Result<bool> {
        let end = Instant::now() + self.work;
        let mut lost = std::pin::pin!(guard.lost());
        loop {
            let now = Instant::now();
            if now >= end {
                return Ok(false);
            }
            let step = (end - now).min(POLL);
            if self.naive {
                tokio::time::sleep(step).await;
            } else {
                tokio::select! {
                    biased;
                    _ = &mut lost => return Ok(true),
                    () = tokio::time::sleep(step) => {}
                }
            }
            let current = instant_ns(guard.valid_until());
            // A renewal moves the deadline by about a third of the TTL; ignore clock noise.
            if current > *valid_until + 1_000_000 {
                *valid_until = current;
                oracle
                    .report(&format!("VALID {} {current}", self.h))
                    .await?;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn worker_arguments_round_trip() {
        let args = WorkerArgs {
            slot: 3,
            incarnation: 2,
            oracle: "127.0.0.1:4000".parse().expect("addr"),
            urls: vec!["redis://127.0.0.1:1".into(), "redis://127.0.0.1:2".into()],
            ttl: Duration::from_millis(500),
            renew: true,
            seed: 9,
            naive_share: 0.25,
        };
        let line = args.to_args();
        let parsed = WorkerArgs::parse(&line[1..]).expect("parses");
        assert_eq!(parsed.slot, 3);
        assert_eq!(parsed.incarnation, 2);
        assert_eq!(parsed.urls, args.urls);
        assert!(parsed.renew);
        assert!((parsed.naive_share - 0.25).abs() < f64::EPSILON);
        assert!(WorkerArgs::parse(&["--slot".into()]).is_err());
        assert!(WorkerArgs::parse(&[]).is_err());
    }

    #[test]
    fn work_is_sometimes_longer_than_the_ttl() {
        let mut rng = fastrand::Rng::with_seed(1);
        let ttl = Duration::from_millis(500);
        let draws: Vec<Duration> = (0..1000).map(|_| draw_work(&mut rng, ttl)).collect();
        let long = draws.iter().filter(|d| **d > ttl).count();
        assert!((50..200).contains(&long), "{long}");
        assert!(draws.iter().all(|d| *d <= ttl * 2));
    }
}
