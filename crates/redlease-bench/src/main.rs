//! `redlease-bench`: redlease against peer Redis lock libraries (rslock, redlock-rs,
//! python-redis-lock) and the raw Redis round-trip limits, all measured in one run on fresh
//! `redis-server` processes, reported as markdown tables with ratios and an SVG of S3's idle
//! gaps.
//!
//! ```text
//! cargo run --release -p redlease-bench -- [--quick | --full] [--only S1,S3,R1]
//!                                          [--libs redlease,rslock] [--nodes 1,3,5]
//!                                          [--warmup SECS] [--measure SECS] [--out FILE]
//!                                          [--svg FILE]
//! ```
//!
//! - S1: uncontended, one task: acquire + release pairs/s and pair latency.
//! - S2: uncontended, 32 tasks on distinct names through one shared client.
//! - S3: 8 workers (each its own client) on one name, holding it 1 ms (then 10 ms), releasing,
//!   pausing 1 ms: acquisitions/s, busy %, idle gaps, waits, fairness, mutual exclusion. Beside
//!   the Rust libraries: `wire`, the notified handoff with bare commands (`SET NX`, a release
//!   script that `PUBLISH`es, waiters subscribed), and python-redis-lock (BLPOP-notified) as 8
//!   Python processes from a virtual environment the bench creates and caches under
//!   `target/redlease-bench/venv` (`python3 -m venv`, pip; the row is skipped, saying why,
//!   where that cannot be done). The idle gaps of every row, as one curve per library and hold
//!   time, go to an SVG next to the report.
//! - S4: S1 and S2 on 3 and 5 nodes (Redlock) for the libraries that support several, and S3
//!   at hold 1 ms there.
//! - R1: 100,000 leases kept alive on one client: redlease's batched auto-renewal against one
//!   timer per lease; round trips, Redis commands, client CPU and memory per lease.
//! - P1, P2: the semaphore and the read-write lock against the lock (see `primitives.rs`).

mod adapters;
mod breakdown;
mod machine;
mod picture;
mod primitives;
mod renewal;
mod report;
mod scenarios;
mod stats;

use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::{Duration, Instant};

use crate::adapters::{Lib, Variant};
use crate::report::{Row, S4Row};
use crate::scenarios::{ContentionResult, Env, PairsResult};

/// Exit status for a command line that cannot be understood (BSD `EX_USAGE`).
const EXIT_USAGE: u8 = 64;
/// Exit status when a lock let two holders in at once.
const EXIT_VIOLATION: u8 = 1;
/// Exit status when the run itself could not proceed (no runtime, report not written).
const EXIT_FAILURE: u8 = 2;

/// Tasks in S2.
const S2_TASKS: usize = 32;
/// Workers in S3.
pub(crate) const S3_WORKERS: usize = 8;
/// Hold times in S3, one table each.
const S3_HOLDS: [Duration; 2] = [Duration::from_millis(1), Duration::from_millis(10)];
/// Pause between release and the next attempt in S3.
const S3_THINK: Duration = Duration::from_millis(1);
/// Node counts S4 runs at unless `--nodes` says otherwise.
const S4_NODES: [usize; 3] = [1, 3, 5];
/// Most nodes `--nodes` accepts.
const MAX_NODES: usize = 9;
/// Warm-up and measurement per S4 row in quick mode (shorter than S1–S3's, to keep the suite
/// short; S4 compares rates, which need less time than tails).
const S4_QUICK: (Duration, Duration) = (Duration::from_millis(500), Duration::from_secs(2));
/// R1's measurement window in quick and full mode.
const R1_WINDOW: [Duration; 2] = [Duration::from_secs(10), Duration::from_secs(30)];

const USAGE: &str = "\
usage: redlease-bench [--quick | --full] [--only S1,S2,S3,H1,S4,R1] [--libs NAME,...]
                      [--nodes 1,3,5] [--warmup SECS] [--measure SECS] [--out FILE]
                      [--svg FILE]

  --quick         1 s warm-up + 3 s measured per row (S4: 0.5 s + 2 s; R1: 1 s + 10 s),
                  about 3 minutes in all (default)
  --full          2 s warm-up + 10 s measured per row (R1: 2 s + 30 s)
  --only LIST     scenarios to run: S1 (uncontended, 1 task), S2 (uncontended, 32 tasks,
                  one shared client), S3 (8 workers contending, hold 1 ms and 10 ms;
                  with the `wire` row and python-redis-lock, whose first run creates
                  target/redlease-bench/venv with python3 -m venv and pip),
                  H1 (S3 for redlease with each handoff split into its steps),
                  S4 (S1, S2 and S3 at hold 1 ms on several nodes),
                  R1 (100,000 auto-renewed leases), P1 (a semaphore of 3, 8 workers, beside
                  the lock), P2 (90 % reads through a read-write lock, against the lock)
  --libs LIST     variants to run, by name or name prefix (raw, redlease, rslock, redlock,
                  wire, python, ...)
  --nodes LIST    node counts for S4 (default 1,3,5; 1-node rows reuse S1/S2's when they ran)
  --warmup SECS   override the warm-up per row (and R1's settle time)
  --measure SECS  override the measured time per row (and R1's window)
  --r1-leases N   how many leases R1 keeps alive (default 100000)
  --r1-ttl SECS   their TTL; each is renewed every third of it (default 3)
  --out FILE      also write the markdown report to FILE
  --svg FILE      write S3's idle-gap distributions as an SVG to FILE (default with --out:
                  beside it, named after it: BENCHMARKS.md -> BENCHMARKS-idle-gaps.svg)
";

/// A scenario the command line can select.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Scenario {
    S1,
    S2,
    S3,
    H1,
    S4,
    R1,
    P1,
    P2,
}

impl Scenario {
    const ALL: [Self; 8] = [
        Self::S1,
        Self::S2,
        Self::S3,
        Self::H1,
        Self::S4,
        Self::R1,
        Self::P1,
        Self::P2,
    ];

    fn parse(s: &str) -> Result<Self, String> {
        match s.trim().to_ascii_uppercase().as_str() {
            "S1" => Ok(Self::S1),
            "S2" => Ok(Self::S2),
            "S3" => Ok(Self::S3),
            "H1" => Ok(Self::H1),
            "S4" => Ok(Self::S4),
            "R1" => Ok(Self::R1),
            "P1" => Ok(Self::P1),
            "P2" => Ok(Self::P2),
            other => Err(format!(
                "unknown scenario {other:?} (S1, S2, S3, H1, S4, R1, P1 or P2)"
            )),
        }
    }
}

/// The parsed command line.
#[derive(Debug, PartialEq)]
struct Args {
    full: bool,
    warmup: Option<Duration>,
    measure: Option<Duration>,
    only: Vec<Scenario>,
    libs: Vec<String>,
    nodes: Vec<usize>,
    out: Option<PathBuf>,
    svg: Option<PathBuf>,
    /// How many leases R1 keeps alive.
    r1_leases: usize,
    /// Their TTL.
    r1_ttl: Duration,
}

impl Args {
    /// Parses the arguments after the program name; `Ok(None)` for `--help`.
    fn parse(args: &[String]) -> Result<Option<Self>, String> {
        let mut parsed = Self {
            full: false,
            warmup: None,
            measure: None,
            only: Scenario::ALL.to_vec(),
            libs: Vec::new(),
            nodes: S4_NODES.to_vec(),
            out: None,
            svg: None,
            r1_leases: renewal::LEASES,
            r1_ttl: renewal::TTL,
        };
        let mut it = args.iter();
        while let Some(arg) = it.next() {
            let (flag, inline) = match arg.split_once('=') {
                Some((f, v)) if f.starts_with("--") => (f, Some(v.to_owned())),
                _ => (arg.as_str(), None),
            };
            let mut value = || {
                inline
                    .clone()
                    .or_else(|| it.next().cloned())
                    .ok_or_else(|| format!("{flag} needs a value"))
            };
            match flag {
                "-h" | "--help" => return Ok(None),
                "--quick" => parsed.full = false,
                "--full" => parsed.full = true,
                "--only" => {
                    parsed.only = list(&value()?)
                        .map(Scenario::parse)
                        .collect::<Result<_, _>>()?;
                }
                "--libs" => parsed.libs = list(&value()?).map(str::to_owned).collect(),
                "--nodes" => parsed.nodes = node_counts(&value()?)?,
                "--warmup" => parsed.warmup = Some(seconds(flag, &value()?)?),
                "--measure" => parsed.measure = Some(seconds(flag, &value()?)?),
                "--out" => parsed.out = Some(PathBuf::from(value()?)),
                "--svg" => parsed.svg = Some(PathBuf::from(value()?)),
                "--r1-ttl" => parsed.r1_ttl = seconds(flag, &value()?)?,
                "--r1-leases" => {
                    parsed.r1_leases = match value()?.replace('_', "").parse() {
                        Ok(n) if n > 0 => n,
                        _ => return Err("--r1-leases needs a positive count".to_owned()),
                    };
                }
                other => return Err(format!("unknown argument {other:?}")),
            }
        }
        if parsed.only.is_empty() {
            return Err("--only: no scenario given".to_owned());
        }
        if parsed.measure.is_some_and(|m| m.is_zero()) {
            return Err("--measure must be more than 0".to_owned());
        }
        Ok(Some(parsed))
    }

    fn warmup(&self) -> Duration {
        self.warmup.unwrap_or(if self.full {
            Duration::from_secs(2)
        } else {
            Duration::from_secs(1)
        })
    }

    fn measure(&self) -> Duration {
        self.measure.unwrap_or(if self.full {
            Duration::from_secs(10)
        } else {
            Duration::from_secs(3)
        })
    }

    /// Warm-up and measurement per S4 row: shorter in quick mode unless overridden.
    fn s4_timing(&self) -> (Duration, Duration) {
        if self.full {
            (self.warmup(), self.measure())
        } else {
            (
                self.warmup.unwrap_or(S4_QUICK.0),
                self.measure.unwrap_or(S4_QUICK.1),
            )
        }
    }

    /// R1's settle time (after acquiring, before measuring) and window.
    fn r1_timing(&self) -> (Duration, Duration) {
        (
            self.warmup(),
            self.measure.unwrap_or(R1_WINDOW[usize::from(self.full)]),
        )
    }

    /// Where the idle-gap picture goes: `--svg`, else beside `--out`, named after it.
    fn svg(&self) -> Option<PathBuf> {
        self.svg.clone().or_else(|| {
            let out = self.out.as_ref()?;
            let stem = out.file_stem()?.to_string_lossy();
            Some(out.with_file_name(format!("{stem}-idle-gaps.svg")))
        })
    }

    /// Whether `variant` passes `--libs`.
    fn wants(&self, variant: &Variant) -> bool {
        self.libs.is_empty()
            || self
                .libs
                .iter()
                .any(|l| variant.name.starts_with(l.as_str()))
    }
}

/// Comma-separated items, blanks dropped.
fn list(s: &str) -> impl Iterator<Item = &str> {
    s.split(',').map(str::trim).filter(|x| !x.is_empty())
}

/// `--nodes`: node counts from 1 to [`MAX_NODES`], sorted, each once.
fn node_counts(v: &str) -> Result<Vec<usize>, String> {
    let mut counts = list(v)
        .map(|n| match n.parse::<usize>() {
            Ok(n) if (1..=MAX_NODES).contains(&n) => Ok(n),
            _ => Err(format!(
                "--nodes {v:?}: {n:?} is not a node count (1 to {MAX_NODES})"
            )),
        })
        .collect::<Result<Vec<_>, _>>()?;
    counts.sort_unstable();
    counts.dedup();
    if counts.is_empty() {
        return Err("--nodes: no node count given".to_owned());
    }
    Ok(counts)
}

/// A number of seconds, fractions allowed.
fn seconds(flag: &str, v: &str) -> Result<Duration, String> {
    v.parse::<f64>()
        .ok()
        .and_then(|s| Duration::try_from_secs_f64(s).ok())
        .filter(|d| *d <= Duration::from_hours(1))
        .ok_or_else(|| format!("{flag} {v:?}: not a number of seconds (0 to 3600)"))
}

/// The command line as typed, program name shortened to its file name.
fn command_line(argv: &[String]) -> String {
    let program = argv
        .first()
        .and_then(|p| Path::new(p).file_name())
        .map_or_else(
            || "redlease-bench".to_owned(),
            |n| n.to_string_lossy().into_owned(),
        );
    std::iter::once(program)
        .chain(argv.iter().skip(1).map(|a| {
            if a.is_empty() || a.contains(|c: char| c.is_whitespace() || "'\"$`\\".contains(c)) {
                format!("'{}'", a.replace('\'', r"'\''"))
            } else {
                a.clone()
            }
        }))
        .collect::<Vec<_>>()
        .join(" ")
}

/// Prints a section to stdout and appends it to the report (and the `--out` file).
struct Output {
    report: String,
    out: Option<PathBuf>,
}

impl Output {
    fn section(&mut self, text: &str) -> Result<(), String> {
        if !self.report.is_empty() {
            self.report.push('\n');
            println!();
        }
        self.report.push_str(text);
        print!("{text}");
        let _ = std::io::stdout().flush();
        match &self.out {
            Some(path) => report::write(path, &self.report),
            None => Ok(()),
        }
    }
}

/// Measures one row, telling stderr how it went.
fn measure<T>(
    label: &str,
    variant: &Variant,
    run: impl FnOnce() -> Result<T, String>,
    brief: impl Fn(&T) -> String,
) -> Row<T> {
    eprint!("[{label}] {} ... ", variant.name);
    let started = Instant::now();
    let result = run();
    match &result {
        Ok(r) => eprintln!("{} ({:.1} s)", brief(r), started.elapsed().as_secs_f64()),
        Err(e) if e.starts_with(adapters::SKIPPED) => eprintln!("{e}"),
        Err(e) => eprintln!("failed: {e}"),
    }
    (variant.clone(), result)
}

fn main() -> ExitCode {
    let command: Vec<String> = std::env::args().collect();
    if command.get(1).map(String::as_str) == Some(renewal::CHILD_FLAG) {
        return renewal::child_main(&command[2..]);
    }
    let args = match Args::parse(command.get(1..).unwrap_or_default()) {
        Ok(Some(parsed)) => parsed,
        Ok(None) => {
            print!("{USAGE}");
            return ExitCode::SUCCESS;
        }
        Err(e) => {
            eprintln!("redlease-bench: {e}\n\n{USAGE}");
            return ExitCode::from(EXIT_USAGE);
        }
    };
    match run(&args, &command_line(&command)) {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::from(EXIT_VIOLATION),
        Err(e) => {
            eprintln!("redlease-bench: {e}");
            ExitCode::from(EXIT_FAILURE)
        }
    }
}

/// Runs the selected scenarios; `Ok(false)` if a lock let two holders in.
fn run(args: &Args, command: &str) -> Result<bool, String> {
    let started = Instant::now();
    let cpu_at_start = machine::CpuSnapshot::take();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|e| format!("building the tokio runtime: {e}"))?;
    let env = Env {
        rt: std::sync::Arc::new(rt),
        warmup: args.warmup(),
        measure: args.measure(),
    };
    let variants: Vec<Variant> = adapters::variants(1)
        .into_iter()
        .filter(|v| args.wants(v))
        .collect();
    let wants_variants = args.only.iter().any(|s| *s != Scenario::R1);
    if variants.is_empty() && wants_variants {
        return Err(format!(
            "--libs {}: matches no variant",
            args.libs.join(",")
        ));
    }
    let mut output = Output {
        report: String::new(),
        out: args.out.clone(),
    };
    output.section(&report::header(&report::Settings {
        command,
        mode: if args.full { "full" } else { "quick" },
        warmup: env.warmup,
        measure: env.measure,
        s4_nodes: &args.nodes,
        s4_timing: args.s4_timing(),
        r1_timing: args.r1_timing(),
    }))?;
    let uncontended: Vec<&Variant> = variants.iter().filter(|v| v.runs.uncontended).collect();
    let contended: Vec<&Variant> = variants.iter().filter(|v| v.runs.contended).collect();
    let multinode: Vec<&Variant> = variants.iter().filter(|v| v.runs.multinode).collect();
    let mut clean = true;
    let (mut s1_rows, mut s2_rows) = (Vec::new(), Vec::new());
    for scenario in Scenario::ALL.into_iter().filter(|s| args.only.contains(s)) {
        let section_started = Instant::now();
        match scenario {
            Scenario::S1 => {
                let title = "S1 — uncontended, 1 task: acquire + release pairs";
                s1_rows = uncontended_rows(&env, &uncontended, "S1", 1);
                output.section(&report::pairs_table(title, &s1_rows))?;
            }
            Scenario::S2 => {
                let title = format!(
                    "S2 — uncontended, {S2_TASKS} tasks on distinct names through one shared \
                     client: total pairs"
                );
                s2_rows = uncontended_rows(&env, &uncontended, "S2", S2_TASKS);
                output.section(&report::pairs_table(&title, &s2_rows))?;
            }
            Scenario::S3 => {
                prepare_python(&contended);
                let mut runs = Vec::with_capacity(S3_HOLDS.len());
                for hold in S3_HOLDS {
                    let (table, rows) = contention_section(&env, &contended, hold);
                    clean &= no_violations(&rows);
                    output.section(&table)?;
                    runs.push((hold, rows));
                }
                if let Some(svg) = args.svg() {
                    output.section(&picture_section(&svg, args.out.as_deref(), &runs))?;
                }
            }
            Scenario::H1 => {
                for hold in S3_HOLDS {
                    output.section(&breakdown_table(&env, &contended, hold))?;
                }
            }
            Scenario::S4 => {
                let (tables, no_overlap) =
                    multinode_section(args, &env, &multinode, &contended, (&s1_rows, &s2_rows));
                clean &= no_overlap;
                output.section(&tables)?;
            }
            Scenario::R1 => output.section(&renewal_section(args))?,
            Scenario::P1 => output.section(&primitives::semaphore_section(&env))?,
            Scenario::P2 => output.section(&primitives::read_mostly_section(&env))?,
        }
        eprintln!(
            "[{scenario:?}] done in {:.0} s",
            section_started.elapsed().as_secs_f64()
        );
    }
    let others = cpu_at_start
        .zip(machine::CpuSnapshot::take())
        .and_then(|(before, after)| before.others_share(after));
    output.section(&report::footer(started.elapsed(), others))?;
    Ok(clean)
}

/// R1: both approaches, one after the other; the markdown table.
fn renewal_section(args: &Args) -> String {
    let (settle, window) = args.r1_timing();
    let rows: Vec<_> = renewal::Mode::ALL
        .into_iter()
        .map(|mode| {
            eprint!("[R1] {} ... ", mode.label());
            let t = Instant::now();
            let r = renewal::measure(mode, args.r1_leases, args.r1_ttl, settle, window);
            match &r {
                Ok(r) => eprintln!(
                    "{} round trips/s, CPU {} ({:.1} s)",
                    report::decimal(r.round_trips_per_s()),
                    r.cpu_pct()
                        .map_or_else(|| "?".to_owned(), |c| format!("{c:.1}%")),
                    t.elapsed().as_secs_f64()
                ),
                Err(e) => eprintln!("failed: {e}"),
            }
            (mode, r)
        })
        .collect();
    let title = format!(
        "R1 — renewal: {} leases held at once with auto-renewal on one client",
        report::thousands(stats::as_f64(args.r1_leases as u64))
    );
    report::renewal_table(&title, (args.r1_leases, args.r1_ttl), &rows)
}

/// S4 for every multi-node variant: S1 and S2, then S3's contention at its first hold time on
/// each node count above one; the markdown tables, and whether no contended row overlapped.
fn multinode_section(
    args: &Args,
    env: &Env,
    multinode: &[&Variant],
    contended: &[&Variant],
    (s1_rows, s2_rows): (&[Row<PairsResult>], &[Row<PairsResult>]),
) -> (String, bool) {
    let (warmup, measure) = args.s4_timing();
    let s4_env = env.with_timing(warmup, measure);
    let rows = multinode_rows(&s4_env, multinode, &args.nodes, s1_rows, s2_rows);
    let title = format!(
        "S4 — several nodes (Redlock): S1 and S2 on {} nodes",
        args.nodes
            .iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>()
            .join(", ")
    );
    let mut tables = report::multinode_table(&title, S2_TASKS, &rows);
    let mut clean = true;
    for &nodes in args.nodes.iter().filter(|&&n| n > 1) {
        let on_nodes: Vec<Variant> = contended
            .iter()
            .filter(|v| v.lib.fans_out())
            .map(|v| v.on_nodes(nodes))
            .collect();
        let on_nodes: Vec<&Variant> = on_nodes.iter().collect();
        let (table, rows) = contention_section(&s4_env, &on_nodes, S3_HOLDS[0]);
        clean &= no_violations(&rows);
        tables.push('\n');
        tables.push_str(&table);
    }
    (tables, clean)
}

/// Runs S1 or S2 (`tasks` tasks) for every variant, at the variants' node counts.
fn uncontended_rows(
    env: &Env,
    variants: &[&Variant],
    label: &str,
    tasks: usize,
) -> Vec<Row<PairsResult>> {
    variants
        .iter()
        .map(|v| {
            let label = if v.nodes == 1 {
                label.to_owned()
            } else {
                format!("{label} {}n", v.nodes)
            };
            measure(
                &label,
                v,
                || scenarios::pairs(env, v, tasks),
                |r| format!("{} pairs/s", report::thousands(r.pairs_per_s)),
            )
        })
        .collect()
}

/// S4: S1 and S2 for every multi-node variant at every node count; 1-node figures come from
/// the S1/S2 rows when those ran.
fn multinode_rows(
    env: &Env,
    variants: &[&Variant],
    nodes: &[usize],
    s1: &[Row<PairsResult>],
    s2: &[Row<PairsResult>],
) -> Vec<S4Row> {
    let earlier = |rows: &[Row<PairsResult>], name: &str| {
        rows.iter()
            .find(|(v, r)| v.name == name && v.nodes == 1 && r.is_ok())
            .map(|(_, r)| r.clone())
    };
    let mut rows = Vec::new();
    for v in variants {
        for &n in nodes {
            let variant = v.on_nodes(n);
            let reused = if n == 1 {
                earlier(s1, v.name).zip(earlier(s2, v.name))
            } else {
                None
            };
            let (s1, s2, reused) = if let Some((s1, s2)) = reused {
                (s1, s2, true)
            } else {
                let run = |label: &str, tasks: usize| {
                    uncontended_rows(env, &[&variant], label, tasks)
                        .pop()
                        .map_or_else(|| Err("not run".to_owned()), |(_, r)| r)
                };
                (run("S4 S1", 1), run("S4 S2", S2_TASKS), false)
            };
            rows.push(S4Row {
                variant,
                s1,
                s2,
                reused,
            });
        }
    }
    rows
}

/// Sets up python-redis-lock's virtual environment before S3's rows, when its row is to run,
/// so that a first run's pip install is not part of a row.
fn prepare_python(contended: &[&Variant]) {
    if contended.iter().any(|v| matches!(v.lib, Lib::Python)) {
        match adapters::python::venv() {
            Ok(venv) => eprintln!("[S3] {}", venv.about()),
            Err(e) => eprintln!("[S3] python-redis-lock: {e}"),
        }
    }
}

/// Whether no contended row saw two holders at once.
fn no_violations(rows: &[Row<ContentionResult>]) -> bool {
    rows.iter().all(|(_, r)| {
        r.as_ref()
            .map_or(true, |r| r.violations == 0 && r.overlaps == 0)
    })
}

/// Runs S3 with one hold time for every variant (all on the same node count); the markdown
/// table and the rows.
fn contention_section(
    env: &Env,
    variants: &[&Variant],
    hold: Duration,
) -> (String, Vec<Row<ContentionResult>>) {
    let nodes = variants.first().map_or(1, |v| v.nodes);
    let on_nodes = if nodes == 1 {
        String::new()
    } else {
        format!(" {nodes}n")
    };
    let label = format!("S3{on_nodes} H={}", report::ms(hold));
    let rows: Vec<_> = variants
        .iter()
        .map(|v| {
            measure(
                &label,
                v,
                || scenarios::contention(env, v, S3_WORKERS, hold, S3_THINK),
                |r| {
                    format!(
                        "{} acq/s, gap p50 {} ms",
                        report::thousands(r.acq_per_s),
                        report::millis(r.gaps.p50)
                    )
                },
            )
        })
        .collect();
    let title = format!(
        "{} — contention: {S3_WORKERS} workers (each its own client) on one name{}, hold {}, \
         release, think {}",
        if nodes == 1 { "S3" } else { "S4" },
        if nodes == 1 {
            String::new()
        } else {
            format!(" on {nodes} nodes (Redlock)")
        },
        report::ms(hold),
        report::ms(S3_THINK),
    );
    (report::contention_table(&title, hold, &rows), rows)
}

/// Draws S3's idle gaps to `svg`; the report's section that shows it (or says why not).
fn picture_section(
    svg: &Path,
    report: Option<&Path>,
    runs: &[(Duration, Vec<Row<ContentionResult>>)],
) -> String {
    let panels: Vec<picture::Panel<'_>> = runs
        .iter()
        .map(|(hold, rows)| picture::Panel {
            title: format!(
                "S3, hold {}: idle gaps, {S3_WORKERS} workers on one name",
                report::ms(*hold)
            ),
            series: rows
                .iter()
                .filter_map(|(v, r)| {
                    let gaps = &r.as_ref().ok()?.gap_samples;
                    let kind = match v.lib {
                        Lib::Redlease(_) => picture::Kind::Ours,
                        Lib::Raw(_) | Lib::Wire(_) => picture::Kind::Limit,
                        Lib::Rslock(_) | Lib::Redlock(_) | Lib::Python => picture::Kind::Peer,
                    };
                    (!gaps.is_empty()).then_some(picture::Series {
                        name: v.name,
                        kind,
                        gaps,
                    })
                })
                .collect(),
        })
        .collect();
    let written = if panels.iter().all(|p| p.series.is_empty()) {
        Err("no row measured an idle gap".to_owned())
    } else {
        picture::idle_gaps(&panels).and_then(|drawn| report::write(svg, &drawn))
    };
    if let Err(e) = &written {
        eprintln!("[S3] idle-gap picture not written: {e}");
    }
    report::picture_section(svg, report, written)
}

/// H1: S3 runs of the redlease variants with the handoff events recorded; the breakdown table.
fn breakdown_table(env: &Env, variants: &[&Variant], hold: Duration) -> String {
    let label = format!("H1 H={}", report::ms(hold));
    let rows: Vec<(String, Result<breakdown::Breakdown, String>)> = variants
        .iter()
        .filter(|v| matches!(v.lib, Lib::Redlease(_)))
        .map(|v| {
            let (_, result) = measure(
                &label,
                v,
                || {
                    breakdown::start()?;
                    let run = scenarios::contention(env, v, S3_WORKERS, hold, S3_THINK);
                    let recorded = breakdown::finish();
                    run.map(|_| recorded)
                },
                |b| format!("{} handoffs, {} notified", b.handoffs, b.notified),
            );
            (v.name.to_owned(), result)
        })
        .collect();
    let title = format!(
        "H1 — one handoff, step by step: {S3_WORKERS} workers on one name, hold {}, think {}",
        report::ms(hold),
        report::ms(S3_THINK),
    );
    breakdown::table(&title, &rows)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(args: &[&str]) -> Result<Option<Args>, String> {
        Args::parse(&args.iter().map(|&a| a.to_owned()).collect::<Vec<_>>())
    }

    #[test]
    fn defaults_are_quick_and_everything() {
        let a = parse(&[]).expect("ok").expect("not help");
        assert!(!a.full);
        assert_eq!(a.only, Scenario::ALL);
        assert_eq!(
            (a.warmup(), a.measure()),
            (Duration::from_secs(1), Duration::from_secs(3))
        );
        assert_eq!(a.nodes, [1, 3, 5]);
        assert_eq!(
            a.s4_timing(),
            (Duration::from_millis(500), Duration::from_secs(2))
        );
        assert_eq!(
            a.r1_timing(),
            (Duration::from_secs(1), Duration::from_secs(10))
        );
    }

    #[test]
    fn flags_parse() {
        let a = parse(&[
            "--full",
            "--only",
            "s1,S3",
            "--libs=redlease",
            "--out",
            "r.md",
        ])
        .expect("ok")
        .expect("not help");
        assert!(a.full);
        assert_eq!(a.only, [Scenario::S1, Scenario::S3]);
        assert_eq!(a.libs, ["redlease"]);
        assert_eq!(a.out, Some(PathBuf::from("r.md")));
        assert_eq!(a.svg(), Some(PathBuf::from("r-idle-gaps.svg")));
        assert_eq!(a.measure(), Duration::from_secs(10));
        let a = parse(&["--measure", "0.5", "--warmup=0"])
            .expect("ok")
            .expect("not help");
        assert_eq!(
            (a.warmup(), a.measure()),
            (Duration::ZERO, Duration::from_millis(500))
        );
    }

    #[test]
    fn the_picture_goes_beside_the_report_unless_told() {
        let beside = parse(&["--out", "/tmp/x/BENCHMARKS.md"])
            .expect("ok")
            .expect("not help");
        assert_eq!(
            beside.svg(),
            Some(PathBuf::from("/tmp/x/BENCHMARKS-idle-gaps.svg"))
        );
        let told = parse(&["--out", "a.md", "--svg=gaps.svg"])
            .expect("ok")
            .expect("not help");
        assert_eq!(told.svg(), Some(PathBuf::from("gaps.svg")));
        assert_eq!(parse(&[]).expect("ok").expect("not help").svg(), None);
        assert!(parse(&["--svg"]).is_err());
    }

    #[test]
    fn bad_flags_are_rejected() {
        assert_eq!(parse(&["--help"]), Ok(None));
        for bad in [
            &["--only", "S9"][..],
            &["--only"],
            &["--nodes", "0"],
            &["--nodes", "3,x"],
            &["--nodes", "10"],
            &["--nodes", ","],
            &["--measure", "0"],
            &["--measure", "-1"],
            &["--bogus"],
        ] {
            assert!(parse(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn node_lists_and_new_scenarios_parse() {
        let a = parse(&["--nodes", "5,3,3", "--only", "s4,r1"])
            .expect("ok")
            .expect("not help");
        assert_eq!(a.nodes, [3, 5]);
        assert_eq!(a.only, [Scenario::S4, Scenario::R1]);
        let full = parse(&["--full"]).expect("ok").expect("not help");
        assert_eq!(full.s4_timing(), (full.warmup(), full.measure()));
        assert_eq!(full.r1_timing().1, Duration::from_secs(30));
        let short = parse(&["--measure", "4", "--warmup", "0.5"])
            .expect("ok")
            .expect("not help");
        assert_eq!(
            short.s4_timing(),
            (Duration::from_millis(500), Duration::from_secs(4))
        );
        assert_eq!(
            short.r1_timing(),
            (Duration::from_millis(500), Duration::from_secs(4))
        );
    }

    #[test]
    fn libs_match_by_prefix() {
        let selected = |libs: &str| -> Vec<&str> {
            let a = parse(&["--libs", libs]).expect("ok").expect("not help");
            adapters::variants(1)
                .into_iter()
                .filter(|v| a.wants(v))
                .map(|v| v.name)
                .collect()
        };
        assert_eq!(
            selected("rslock,raw"),
            ["raw", "rslock-default", "rslock-tuned"]
        );
        assert_eq!(selected("wire,python"), ["wire", "python-redis-lock"]);
    }

    #[test]
    fn command_line_quotes_what_needs_it() {
        let argv = ["/x/target/release/redlease-bench", "--out", "my report.md"];
        let argv: Vec<String> = argv.iter().map(|&a| a.to_owned()).collect();
        assert_eq!(command_line(&argv), "redlease-bench --out 'my report.md'");
    }
}
