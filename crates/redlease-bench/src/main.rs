//! `redlease-bench`: redlease against peer Redis lock crates (rslock, redlock-rs) and the raw
//! Redis round-trip limit, all measured in one run on fresh `redis-server` processes, reported
//! as markdown tables with ratios.
//!
//! ```text
//! cargo run --release -p redlease-bench -- [--quick | --full] [--only S1,S3] [--libs redlease,rslock]
//!                                          [--warmup SECS] [--measure SECS] [--out FILE]
//! ```
//!
//! - S1: uncontended, one task: acquire + release pairs/s and pair latency.
//! - S2: uncontended, 32 tasks on distinct names through one shared client.
//! - S3: 8 workers (each its own client) on one name, holding it 1 ms (then 10 ms), releasing,
//!   pausing 1 ms: acquisitions/s, busy %, idle gaps, waits, fairness, mutual exclusion.

mod adapters;
mod report;
mod scenarios;
mod stats;

use std::io::Write as _;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use crate::adapters::Variant;
use crate::report::Row;
use crate::scenarios::Env;

/// Exit status for a command line that cannot be understood (BSD `EX_USAGE`).
const EXIT_USAGE: u8 = 64;
/// Exit status when a lock let two holders in at once.
const EXIT_VIOLATION: u8 = 1;
/// Exit status when the run itself could not proceed (no runtime, report not written).
const EXIT_FAILURE: u8 = 2;

/// Tasks in S2.
const S2_TASKS: usize = 32;
/// Workers in S3.
const S3_WORKERS: usize = 8;
/// Hold times in S3, one table each.
const S3_HOLDS: [Duration; 2] = [Duration::from_millis(1), Duration::from_millis(10)];
/// Pause between release and the next attempt in S3.
const S3_THINK: Duration = Duration::from_millis(1);

const USAGE: &str = "\
usage: redlease-bench [--quick | --full] [--only S1,S2,S3] [--libs NAME,...] [--nodes 1]
                      [--warmup SECS] [--measure SECS] [--out FILE]

  --quick         1 s warm-up + 3 s measured per row, about 2 minutes in all (default)
  --full          2 s warm-up + 10 s measured per row
  --only LIST     scenarios to run: S1 (uncontended, 1 task), S2 (uncontended, 32 tasks,
                  one shared client), S3 (8 workers contending, hold 1 ms and 10 ms)
  --libs LIST     variants to run, by name or name prefix (raw, redlease, rslock, redlock, ...)
  --nodes N       Redis nodes per variant; only 1 for now (3 and 5 are for S4, to come)
  --warmup SECS   override the warm-up per row
  --measure SECS  override the measured time per row
  --out FILE      also write the markdown report to FILE
";

/// A scenario the command line can select.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Scenario {
    S1,
    S2,
    S3,
}

impl Scenario {
    const ALL: [Self; 3] = [Self::S1, Self::S2, Self::S3];

    fn parse(s: &str) -> Result<Self, String> {
        match s.trim().to_ascii_uppercase().as_str() {
            "S1" => Ok(Self::S1),
            "S2" => Ok(Self::S2),
            "S3" => Ok(Self::S3),
            other => Err(format!("unknown scenario {other:?} (S1, S2 or S3)")),
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
    nodes: usize,
    out: Option<PathBuf>,
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
            nodes: 1,
            out: None,
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
                "--nodes" => {
                    let v = value()?;
                    parsed.nodes = v
                        .parse()
                        .map_err(|_| format!("--nodes {v:?}: not a number"))?;
                    if parsed.nodes != 1 {
                        return Err(format!(
                            "--nodes {v}: only 1 for now (multi-node runs are reserved for S4)"
                        ));
                    }
                }
                "--warmup" => parsed.warmup = Some(seconds(flag, &value()?)?),
                "--measure" => parsed.measure = Some(seconds(flag, &value()?)?),
                "--out" => parsed.out = Some(PathBuf::from(value()?)),
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

/// A number of seconds, fractions allowed.
fn seconds(flag: &str, v: &str) -> Result<Duration, String> {
    v.parse::<f64>()
        .ok()
        .and_then(|s| Duration::try_from_secs_f64(s).ok())
        .filter(|d| *d <= Duration::from_secs(3600))
        .ok_or_else(|| format!("{flag} {v:?}: not a number of seconds (0 to 3600)"))
}

/// The command line as typed, program name shortened to its file name.
fn command_line(argv: &[String]) -> String {
    let program = argv
        .first()
        .and_then(|p| std::path::Path::new(p).file_name())
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
        Err(e) => eprintln!("failed: {e}"),
    }
    (variant.clone(), result)
}

fn main() -> ExitCode {
    let command: Vec<String> = std::env::args().collect();
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
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|e| format!("building the tokio runtime: {e}"))?;
    let env = Env {
        rt,
        warmup: args.warmup(),
        measure: args.measure(),
    };
    let variants: Vec<Variant> = adapters::variants(args.nodes)
        .into_iter()
        .filter(|v| args.wants(v))
        .collect();
    if variants.is_empty() {
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
        nodes: args.nodes,
    }))?;
    let uncontended: Vec<&Variant> = variants.iter().filter(|v| v.runs.uncontended).collect();
    let contended: Vec<&Variant> = variants.iter().filter(|v| v.runs.contended).collect();
    let mut clean = true;
    for scenario in Scenario::ALL.into_iter().filter(|s| args.only.contains(s)) {
        match scenario {
            Scenario::S1 => {
                let title = "S1 — uncontended, 1 task: acquire + release pairs";
                output.section(&uncontended_table(&env, &uncontended, "S1", 1, title))?;
            }
            Scenario::S2 => {
                let title = format!(
                    "S2 — uncontended, {S2_TASKS} tasks on distinct names through one shared \
                     client: total pairs"
                );
                output.section(&uncontended_table(
                    &env,
                    &uncontended,
                    "S2",
                    S2_TASKS,
                    &title,
                ))?;
            }
            Scenario::S3 => {
                for hold in S3_HOLDS {
                    let (table, no_violation) = contention_table(&env, &contended, hold);
                    clean &= no_violation;
                    output.section(&table)?;
                }
            }
        }
    }
    output.section(&format!(
        "Wall time: {:.0} s; load average after the run: {}.\n",
        started.elapsed().as_secs_f64(),
        report::load_average(),
    ))?;
    Ok(clean)
}

/// Runs S1 or S2 (`tasks` tasks) for every variant; the markdown table.
fn uncontended_table(
    env: &Env,
    variants: &[&Variant],
    label: &str,
    tasks: usize,
    title: &str,
) -> String {
    let rows: Vec<_> = variants
        .iter()
        .map(|v| {
            measure(
                label,
                v,
                || scenarios::pairs(env, v, tasks),
                |r| format!("{} pairs/s", report::thousands(r.pairs_per_s)),
            )
        })
        .collect();
    report::pairs_table(title, &rows)
}

/// Runs S3 with one hold time for every variant; the markdown table, and whether no lock let
/// two holders in.
fn contention_table(env: &Env, variants: &[&Variant], hold: Duration) -> (String, bool) {
    let label = format!("S3 H={}", report::ms(hold));
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
    let clean = rows.iter().all(|(_, r)| {
        r.as_ref()
            .map_or(true, |r| r.violations == 0 && r.overlaps == 0)
    });
    let title = format!(
        "S3 — contention: {S3_WORKERS} workers (each its own client) on one name, hold {}, \
         release, think {}",
        report::ms(hold),
        report::ms(S3_THINK),
    );
    (report::contention_table(&title, hold, &rows), clean)
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
        assert_eq!(a.nodes, 1);
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
    fn bad_flags_are_rejected() {
        assert_eq!(parse(&["--help"]), Ok(None));
        for bad in [
            &["--only", "S9"][..],
            &["--only"],
            &["--nodes", "3"],
            &["--measure", "0"],
            &["--measure", "-1"],
            &["--bogus"],
        ] {
            assert!(parse(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn libs_match_by_prefix() {
        let a = parse(&["--libs", "rslock,raw"])
            .expect("ok")
            .expect("not help");
        let names: Vec<_> = adapters::variants(1)
            .into_iter()
            .filter(|v| a.wants(v))
            .map(|v| v.name)
            .collect();
        assert_eq!(names, ["raw", "rslock-default", "rslock-tuned"]);
    }

    #[test]
    fn command_line_quotes_what_needs_it() {
        let argv = ["/x/target/release/redlease-bench", "--out", "my report.md"];
        let argv: Vec<String> = argv.iter().map(|&a| a.to_owned()).collect();
        assert_eq!(command_line(&argv), "redlease-bench --out 'my report.md'");
    }
}
