//! python-redis-lock, the notification-based peer: a Python library, so it does not fit
//! [`Adapter`](super::Adapter) and runs as worker processes instead (one per S3 worker, each with
//! its own connection), started from a virtual environment the bench creates on first use and
//! keeps under `target/redlease-bench/venv`. The workers (`python_worker.py`, embedded) report
//! `CLOCK_MONOTONIC` timestamps, the clock `Instant` reads on Linux, so their holds go through the
//! same statistics as the Rust workers'.

use std::fs::File;
use std::io::{BufRead as _, BufReader, Write as _};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::{OnceLock, mpsc};
use std::thread;
use std::time::{Duration, Instant};

use super::{SKIPPED, TTL};
use crate::stats::nanos;

/// The library version the row measures.
const LOCK_VERSION: &str = "4.0.1";
/// What pip installs: that version, on a redis-py it supports.
const REQUIREMENTS: [&str; 2] = ["python-redis-lock==4.0.1", "redis>=4.2,<9"];
/// Prints the installed versions, python-redis-lock, redis-py and Python, and where that
/// Python is installed (which build runs matters as much as its version).
const PROBE: &str = "import sys, redis, redis_lock; print(redis_lock.__version__, \
                     redis.__version__, sys.version.split()[0], sys.base_prefix)";
/// The worker loop.
const WORKER: &str = include_str!("python_worker.py");

/// The virtual environment's interpreter, with python-redis-lock installed.
#[derive(Debug)]
pub(crate) struct Venv {
    python: PathBuf,
    about: String,
}

impl Venv {
    /// What runs: versions and where, for the report.
    pub(crate) fn about(&self) -> &str {
        &self.about
    }
}

/// The bench's virtual environment, set up on the first call (which can take a while: pip
/// downloads the packages); later calls, and later runs, reuse it. An error says why the row
/// is skipped.
pub(crate) fn venv() -> Result<&'static Venv, String> {
    static VENV: OnceLock<Result<Venv, String>> = OnceLock::new();
    VENV.get_or_init(|| set_up(&venv_dir()))
        .as_ref()
        .map_err(Clone::clone)
}

/// `target/redlease-bench/venv` beside the running binary's `target/<profile>/`, else under
/// the temporary directory.
fn venv_dir() -> PathBuf {
    std::env::current_exe()
        .ok()
        .and_then(|exe| Some(exe.parent()?.parent()?.to_path_buf()))
        .unwrap_or_else(std::env::temp_dir)
        .join("redlease-bench")
        .join("venv")
}

fn set_up(dir: &Path) -> Result<Venv, String> {
    if let Ok(venv) = probe(dir) {
        return Ok(venv);
    }
    eprintln!(
        "[S3] python-redis-lock: creating {} (python3 -m venv; pip install {}) ...",
        dir.display(),
        REQUIREMENTS.join(" ")
    );
    run(
        Command::new("python3")
            .args(["-m", "venv", "--clear"])
            .arg(dir),
        "python3 -m venv",
    )
    .map_err(|e| format!("{e} (on Debian: apt-get install python3-venv)"))?;
    run(
        Command::new(dir.join("bin").join("python"))
            .args([
                "-m",
                "pip",
                "install",
                "--quiet",
                "--disable-pip-version-check",
            ])
            .args(REQUIREMENTS),
        "pip install",
    )?;
    probe(dir)
}

/// The environment at `dir`, if it has the expected version installed.
fn probe(dir: &Path) -> Result<Venv, String> {
    let python = dir.join("bin").join("python");
    if !python.exists() {
        return Err(format!("{SKIPPED}no interpreter at {}", python.display()));
    }
    let out = run(
        Command::new(&python).args(["-I", "-c", PROBE]),
        "import redis_lock",
    )?;
    let found: Vec<&str> = out.trim().splitn(4, ' ').collect();
    match found[..] {
        [lock, redis, version, base] if lock == LOCK_VERSION => Ok(Venv {
            about: format!(
                "python-redis-lock {lock} on redis-py {redis}, Python {version} (from {base}), \
                 in {}",
                dir.display()
            ),
            python,
        }),
        _ => Err(format!(
            "{SKIPPED}{} has {out:?}, not python-redis-lock {LOCK_VERSION}",
            dir.display()
        )),
    }
}

/// Runs `command` to completion; its stdout, or why the row is skipped.
fn run(command: &mut Command, what: &str) -> Result<String, String> {
    let output = command
        .stdin(Stdio::null())
        .output()
        .map_err(|e| match e.kind() {
            std::io::ErrorKind::NotFound => format!("{SKIPPED}{what}: no such program"),
            _ => format!("{SKIPPED}{what}: {e}"),
        })?;
    if output.status.success() {
        return Ok(String::from_utf8_lossy(&output.stdout).into_owned());
    }
    Err(format!(
        "{SKIPPED}{what} failed ({}): {}",
        output.status,
        last_line(&String::from_utf8_lossy(&output.stderr))
    ))
}

/// The last non-blank line of `text`, where error output says what went wrong.
fn last_line(text: &str) -> &str {
    text.lines()
        .rev()
        .find(|l| !l.trim().is_empty())
        .unwrap_or("")
        .trim()
}

/// `CLOCK_MONOTONIC` now, in ns (Python's `time.monotonic_ns()`).
fn clock_ns() -> Result<u64, String> {
    let clock = nix::time::clock_gettime(nix::time::ClockId::CLOCK_MONOTONIC)
        .map_err(|e| format!("clock_gettime: {e}"))?;
    let seconds = u64::try_from(clock.tv_sec()).map_err(|e| e.to_string())?;
    let nanoseconds = u64::try_from(clock.tv_nsec()).map_err(|e| e.to_string())?;
    Ok(seconds * 1_000_000_000 + nanoseconds)
}

/// The `CLOCK_MONOTONIC` reading, in ns, at `t`.
pub(crate) fn monotonic_ns(t: Instant) -> Result<u64, String> {
    let now = Instant::now();
    let now_ns = clock_ns()?;
    Ok(if t >= now {
        now_ns + nanos(t - now)
    } else {
        now_ns.saturating_sub(nanos(now - t))
    })
}

/// One acquire call of a worker, in `CLOCK_MONOTONIC` ns.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Call {
    /// When it was called.
    pub(crate) called: u64,
    /// When it returned.
    pub(crate) returned: u64,
    /// When the release call started; `None` if the call never got the lock (it kept
    /// failing until the end).
    pub(crate) released: Option<u64>,
}

/// What one worker process reported.
#[derive(Debug, Default, PartialEq, Eq)]
pub(crate) struct Record {
    pub(crate) calls: Vec<Call>,
    /// Acquisitions that found the shared flag file already there.
    pub(crate) violations: u64,
    /// Failed calls, acquire or release.
    pub(crate) errors: u64,
    pub(crate) first_error: Option<String>,
}

/// Parses a worker's report (every line after "ready").
fn parse(lines: &[String]) -> Result<Record, String> {
    let mut record = Record::default();
    for line in lines {
        let bad = || format!("unexpected line from a python worker: {line:?}");
        let (tag, rest) = line.split_once(' ').ok_or_else(bad)?;
        let numbers = || -> Result<Vec<u64>, String> {
            rest.split_whitespace()
                .map(|n| n.parse().map_err(|_| bad()))
                .collect()
        };
        match tag {
            "C" | "F" => {
                let (called, returned, released) = match (tag, &numbers()?[..]) {
                    ("C", &[c, a, r]) => (c, a, Some(r)),
                    ("F", &[c, a]) => (c, a, None),
                    _ => return Err(bad()),
                };
                record.calls.push(Call {
                    called,
                    returned,
                    released,
                });
            }
            "V" => record.violations = rest.trim().parse().map_err(|_| bad())?,
            "E" => {
                let (count, first) = rest.split_once(' ').unwrap_or((rest, ""));
                record.errors = count.parse().map_err(|_| bad())?;
                record.first_error = (!first.is_empty()).then(|| first.to_owned());
            }
            _ => return Err(bad()),
        }
    }
    Ok(record)
}

/// The worker processes of one S3 row. Dropping it kills those still running.
pub(crate) struct Workers {
    children: Vec<Child>,
    stdins: Vec<ChildStdin>,
    readers: Vec<thread::JoinHandle<Result<Vec<String>, String>>>,
    /// Holds the flag file and the workers' stderr files.
    dir: tempfile::TempDir,
}

/// What S3 asks of the workers.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Task<'a> {
    pub(crate) url: &'a str,
    pub(crate) name: &'a str,
    pub(crate) hold: Duration,
    pub(crate) think: Duration,
}

impl Workers {
    /// Starts `count` workers on `task`; each sends to `ready` once connected (or why not).
    pub(crate) fn spawn(
        venv: &Venv,
        count: usize,
        task: Task<'_>,
        ready: &mpsc::Sender<Result<(), String>>,
    ) -> Result<Self, String> {
        let dir = tempfile::Builder::new()
            .prefix("redlease-bench-python")
            .tempdir()
            .map_err(|e| format!("creating a temporary directory: {e}"))?;
        let mut workers = Self {
            children: Vec::with_capacity(count),
            stdins: Vec::with_capacity(count),
            readers: Vec::with_capacity(count),
            dir,
        };
        for id in 0..count {
            workers.spawn_one(venv, id, task, ready.clone())?;
        }
        Ok(workers)
    }

    fn stderr_path(&self, id: usize) -> PathBuf {
        self.dir.path().join(format!("worker-{id}.stderr"))
    }

    fn spawn_one(
        &mut self,
        venv: &Venv,
        id: usize,
        task: Task<'_>,
        ready: mpsc::Sender<Result<(), String>>,
    ) -> Result<(), String> {
        let stderr_path = self.stderr_path(id);
        let stderr = File::create(&stderr_path).map_err(|e| e.to_string())?;
        let mut child = Command::new(&venv.python)
            .args(["-I", "-c", WORKER, task.name])
            .arg(nanos(task.hold).to_string())
            .arg(nanos(task.think).to_string())
            .arg(TTL.as_secs().to_string())
            .arg(self.dir.path().join("inside"))
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(stderr)
            .spawn()
            .map_err(|e| format!("starting a python worker: {e}"))?;
        let (Some(mut stdin), Some(stdout)) = (child.stdin.take(), child.stdout.take()) else {
            return Err("python worker without pipes".to_owned());
        };
        self.children.push(child);
        // The URL goes through stdin, not argv, where a password would show.
        writeln!(stdin, "{}", task.url).map_err(|e| format!("writing to a python worker: {e}"))?;
        self.stdins.push(stdin);
        let reader = thread::Builder::new()
            .name("python-worker".to_owned())
            .spawn(move || {
                let mut lines = BufReader::new(stdout).lines();
                if !matches!(lines.next(), Some(Ok(line)) if line == "ready") {
                    let stderr = std::fs::read_to_string(&stderr_path).unwrap_or_default();
                    let failed = format!("python worker {id}: {}", last_line(&stderr));
                    let _ = ready.send(Err(failed.clone()));
                    return Err(failed);
                }
                let _ = ready.send(Ok(()));
                let report: Result<Vec<String>, _> = lines.collect();
                report.map_err(|e| format!("reading a python worker: {e}"))
            })
            .map_err(|e| format!("spawning a reader thread: {e}"))?;
        self.readers.push(reader);
        Ok(())
    }

    /// Tells every worker the run's origin and end (`CLOCK_MONOTONIC` ns).
    pub(crate) fn start(&mut self, origin: u64, end: u64) -> Result<(), String> {
        for mut stdin in self.stdins.drain(..) {
            writeln!(stdin, "{origin} {end}")
                .and_then(|()| stdin.flush())
                .map_err(|e| format!("starting a python worker: {e}"))?;
        }
        Ok(())
    }

    /// Waits until `deadline` at most for every worker to finish; their reports.
    pub(crate) fn finish(mut self, deadline: Instant) -> Result<Vec<Record>, String> {
        let mut records = Vec::with_capacity(self.readers.len());
        for (id, reader) in std::mem::take(&mut self.readers).into_iter().enumerate() {
            while !reader.is_finished() && Instant::now() < deadline {
                thread::sleep(Duration::from_millis(5));
            }
            if !reader.is_finished() {
                return Err("a python worker did not stop in time".to_owned());
            }
            let lines = reader
                .join()
                .map_err(|_| "a reader thread panicked".to_owned())??;
            let status = self.children[id]
                .wait()
                .map_err(|e| format!("waiting for a python worker: {e}"))?;
            if !status.success() {
                let stderr = std::fs::read_to_string(self.stderr_path(id)).unwrap_or_default();
                return Err(format!(
                    "python worker {id} {status}: {}",
                    last_line(&stderr)
                ));
            }
            records.push(parse(&lines)?);
        }
        Ok(records)
    }
}

impl Drop for Workers {
    fn drop(&mut self) {
        for child in &mut self.children {
            if matches!(child.try_wait(), Ok(None)) {
                let _ = child.kill();
                let _ = child.wait();
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lines(text: &str) -> Vec<String> {
        text.lines().map(str::to_owned).collect()
    }

    #[test]
    fn parses_a_worker_report() {
        let record = parse(&lines(
            "C 10 20 30\nC 40 50 60\nF 70 80\nV 0\nE 2 ConnectionError: refused",
        ))
        .expect("parses");
        assert_eq!(
            record.calls,
            [
                Call {
                    called: 10,
                    returned: 20,
                    released: Some(30)
                },
                Call {
                    called: 40,
                    returned: 50,
                    released: Some(60)
                },
                Call {
                    called: 70,
                    returned: 80,
                    released: None
                },
            ]
        );
        assert_eq!(record.violations, 0);
        assert_eq!(record.errors, 2);
        assert_eq!(
            record.first_error.as_deref(),
            Some("ConnectionError: refused")
        );
        let clean = parse(&lines("V 1\nE 0 ")).expect("parses");
        assert_eq!((clean.violations, clean.errors), (1, 0));
        assert_eq!(clean.first_error, None);
    }

    #[test]
    fn rejects_what_a_worker_would_not_print() {
        for bad in [
            "C 1 2",
            "F 1 2 3",
            "C 1 x 3",
            "V",
            "X 1",
            "Traceback (most recent",
        ] {
            assert!(parse(&lines(bad)).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn instants_map_onto_the_python_clock() {
        // Exact up to the few ns between the two readings `monotonic_ns` takes.
        let slack = 100_000;
        let before = clock_ns().expect("clock");
        let t = Instant::now();
        let after = clock_ns().expect("clock");
        let at = monotonic_ns(t).expect("clock");
        assert!(
            before <= at + slack && at <= after + slack,
            "{before} {at} {after}"
        );
        let later = monotonic_ns(t + Duration::from_millis(5)).expect("clock");
        assert!(later.abs_diff(at + 5_000_000) < slack, "{at} {later}");
    }

    #[test]
    fn the_worker_script_is_valid_python() {
        // Only where a python3 is installed; the row itself needs one anyway.
        let Ok(mut check) = Command::new("python3")
            .args(["-I", "-c", "import ast, sys; ast.parse(sys.stdin.read())"])
            .stdin(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
        else {
            eprintln!("no python3: worker script not checked");
            return;
        };
        check
            .stdin
            .take()
            .expect("piped")
            .write_all(WORKER.as_bytes())
            .expect("written");
        let out = check.wait_with_output().expect("ran");
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    #[test]
    fn pip_installs_the_version_the_row_expects() {
        assert_eq!(
            REQUIREMENTS[0],
            format!("python-redis-lock=={LOCK_VERSION}")
        );
    }

    #[test]
    fn last_line_skips_blanks() {
        assert_eq!(
            last_line("Traceback\n  x\nValueError: bad\n\n"),
            "ValueError: bad"
        );
        assert_eq!(last_line(""), "");
    }
}
