//! `redlease-torture`: the torture test for redlease.
//!
//! Real `redis-server` processes (one node or five, with a fault proxy in front of each),
//! several worker **processes** fighting over one lock, a resource oracle that checks fencing
//! tokens, and a seeded fault scheduler that pauses and kills holders, restarts, pauses and
//! partitions nodes, deletes keys behind the library's back and loses replies. The run ends
//! with a markdown report and an exit code: 0 only if every safety check held, the negative
//! control (fencing off) showed the damage fencing prevents, and the bad-input matrix passed.
//!
//! ```text
//! redlease-torture run [--profile quick|long] [--seed N] [--out FILE]
//! redlease-torture scenario [--nodes 1|5] [--renew on|off] [--duration SECS] [--workers N]
//!                           [--seed N] [--no-fencing-check] [--no-proxies] [--faults LIST]
//!                           [--out FILE]
//! redlease-torture matrix [--out FILE]
//! redlease-torture repro [NAME]
//! ```
//!
//! See the crate's README for what each check means.

mod analysis;
mod clock;
mod faults;
mod matrix;
mod oracle;
mod primitives;
mod report;
mod repro;
mod scenario;
mod worker;

use std::fmt::Write as _;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use faults::FaultKind;
use scenario::Scenario;

/// Exit status for a command line that cannot be understood (BSD `EX_USAGE`).
const EXIT_USAGE: u8 = 64;
/// Exit status when a check failed.
const EXIT_FAILED: u8 = 1;
/// Exit status when the harness could not run (no redis-server, ...).
const EXIT_HARNESS: u8 = 2;
/// A custom scenario's length when none is given, in seconds.
const DEFAULT_SCENARIO_SECS: u64 = 60;
/// The seed used when none is given.
const DEFAULT_SEED: u64 = 7;

const USAGE: &str = "\
usage:
  redlease-torture run [--profile quick|long] [--seed N] [--out FILE]
  redlease-torture scenario [--nodes 1|5] [--renew on|off] [--duration SECS] [--workers N]
                            [--seed N] [--no-fencing-check] [--no-proxies] [--faults LIST]
                            [--out FILE]
  redlease-torture matrix [--out FILE]
  redlease-torture primitives [--duration SECS] [--seed N] [--out FILE]
  redlease-torture repro [lost-replies]

run       the quick profile (about 3 minutes: Redlock with renewal, one node without,
          the negative control, the semaphore and read-write lock with 8 workers and their
          negative control, the bad-input matrix) or the long one (about 16 minutes)
primitives  only the semaphore and read-write lock run (and its negative control)
scenario  one scenario; --faults takes a comma-separated list of fault names, or 'all'
matrix    only the bad-input matrix
repro     the minimal reproductions of bugs found so far (exit 1 if one reproduces)
Exit status: 0 all checks passed, 1 a check failed, 2 the harness could not run, 64 usage.";

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match args.first().map(String::as_str) {
        Some("worker") => {
            match worker::WorkerArgs::parse(&args[1..]).and_then(|a| worker::main(&a)) {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    eprintln!("{e}");
                    ExitCode::from(EXIT_FAILED)
                }
            }
        }
        Some("prim-worker") => match primitives::worker_main(&args[1..]) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("{e}");
                ExitCode::from(EXIT_FAILED)
            }
        },
        Some("repro") => repro_command(&args[1..]),
        Some("-h" | "--help" | "help") => {
            println!("{USAGE}");
            ExitCode::SUCCESS
        }
        Some(command @ ("run" | "scenario" | "matrix" | "primitives")) => {
            match Options::parse(command, &args[1..]) {
                Ok(options) => execute(&options),
                Err(e) => {
                    eprintln!("redlease-torture: {e}\n{USAGE}");
                    ExitCode::from(EXIT_USAGE)
                }
            }
        }
        Some(other) => {
            eprintln!("redlease-torture: unknown command {other:?}\n{USAGE}");
            ExitCode::from(EXIT_USAGE)
        }
        None => {
            eprintln!("{USAGE}");
            ExitCode::from(EXIT_USAGE)
        }
    }
}

fn repro_command(args: &[String]) -> ExitCode {
    let names: Vec<&str> = match args {
        [] => repro::CASES.to_vec(),
        [name] if repro::CASES.contains(&name.as_str()) => vec![name.as_str()],
        _ => {
            eprintln!(
                "redlease-torture: repro takes one of {:?} or nothing\n{USAGE}",
                repro::CASES
            );
            return ExitCode::from(EXIT_USAGE);
        }
    };
    let mut reproduced = false;
    for name in names {
        println!("== {name}");
        match repro::run(name) {
            Ok(bug) => reproduced |= bug,
            Err(e) => {
                eprintln!("redlease-torture: repro {name}: {e}");
                return ExitCode::from(EXIT_HARNESS);
            }
        }
    }
    if reproduced {
        ExitCode::from(EXIT_FAILED)
    } else {
        ExitCode::SUCCESS
    }
}

/// A parsed command line.
#[derive(Debug, Clone, PartialEq)]
struct Options {
    command: String,
    profile: String,
    seed: u64,
    out: Option<String>,
    nodes: usize,
    renew: bool,
    duration: Duration,
    workers: u32,
    fencing: bool,
    proxies: bool,
    faults: Vec<FaultKind>,
}

impl Options {
    fn parse(command: &str, args: &[String]) -> Result<Self, String> {
        let mut o = Self {
            command: command.to_owned(),
            profile: "quick".into(),
            seed: DEFAULT_SEED,
            out: None,
            nodes: 5,
            renew: true,
            duration: Duration::from_secs(DEFAULT_SCENARIO_SECS),
            workers: 4,
            fencing: true,
            proxies: true,
            faults: within_assumptions(),
        };
        let mut it = args.iter();
        while let Some(flag) = it.next() {
            let allowed: &[&str] = match command {
                "run" => &["--profile", "--seed", "--out"],
                "matrix" => &["--out"],
                "primitives" => &["--duration", "--seed", "--out"],
                _ => &[
                    "--nodes",
                    "--renew",
                    "--duration",
                    "--workers",
                    "--seed",
                    "--no-fencing-check",
                    "--no-proxies",
                    "--faults",
                    "--out",
                ],
            };
            if !allowed.contains(&flag.as_str()) {
                return Err(format!("unknown option {flag:?} for {command}"));
            }
            match flag.as_str() {
                "--no-fencing-check" => {
                    o.fencing = false;
                    continue;
                }
                "--no-proxies" => {
                    o.proxies = false;
                    continue;
                }
                _ => {}
            }
            let value = it.next().ok_or_else(|| format!("{flag} needs a value"))?;
            let bad = || format!("invalid value {value:?} for {flag}");
            match flag.as_str() {
                "--profile" => {
                    if !matches!(value.as_str(), "quick" | "long") {
                        return Err(bad());
                    }
                    o.profile.clone_from(value);
                }
                "--seed" => o.seed = value.parse().map_err(|_| bad())?,
                "--out" => o.out = Some(value.clone()),
                "--nodes" => {
                    o.nodes = value.parse().map_err(|_| bad())?;
                    if !matches!(o.nodes, 1 | 5) {
                        return Err(format!("{} (use 1 or 5)", bad()));
                    }
                }
                "--renew" => {
                    o.renew = match value.as_str() {
                        "on" => true,
                        "off" => false,
                        _ => return Err(format!("{} (use on or off)", bad())),
                    };
                }
                "--duration" => {
                    let secs: u64 = value.parse().map_err(|_| bad())?;
                    if !(10..=3_600).contains(&secs) {
                        return Err(format!("{} (10 to 3600 seconds)", bad()));
                    }
                    o.duration = Duration::from_secs(secs);
                }
                "--workers" => {
                    o.workers = value.parse().map_err(|_| bad())?;
                    if !(2..=16).contains(&o.workers) {
                        return Err(format!("{} (2 to 16 workers)", bad()));
                    }
                }
                _ => o.faults = parse_faults(value)?,
            }
        }
        Ok(o)
    }
}

/// Fault kinds within the documented assumptions.
fn within_assumptions() -> Vec<FaultKind> {
    FaultKind::ALL
        .into_iter()
        .filter(|k| {
            !matches!(
                k,
                FaultKind::NodeRestartEmptyFast | FaultKind::NemesisMajority
            )
        })
        .collect()
}

fn parse_faults(list: &str) -> Result<Vec<FaultKind>, String> {
    if list == "all" {
        return Ok(FaultKind::ALL.to_vec());
    }
    if list == "none" {
        return Ok(Vec::new());
    }
    list.split(',')
        .map(|name| {
            FaultKind::ALL
                .into_iter()
                .find(|k| k.name() == name.trim())
                .ok_or_else(|| {
                    format!(
                        "unknown fault {name:?}; known: {}",
                        FaultKind::ALL.map(FaultKind::name).join(", ")
                    )
                })
        })
        .collect()
}

fn scenario(
    name: &str,
    nodes: usize,
    renew: bool,
    secs: u64,
    seed: u64,
    required: Vec<FaultKind>,
) -> Scenario {
    Scenario {
        name: name.into(),
        nodes,
        renew,
        fencing: true,
        duration: Duration::from_secs(secs),
        workers: 4,
        proxies: true,
        ttl: Duration::from_millis(500),
        naive_share: 0.3,
        pool: required.clone(),
        required,
        seed,
    }
}

/// The scenarios of a profile.
fn profile(name: &str, seed: u64) -> Vec<Scenario> {
    let within = within_assumptions();
    let all = FaultKind::ALL.to_vec();
    let pauses = vec![
        FaultKind::HolderPauseBeforeWrite,
        FaultKind::HolderPauseWorking,
    ];
    let control = |secs| Scenario {
        fencing: false,
        renew: false,
        ..scenario("negative-control", 5, false, secs, seed, pauses.clone())
    };
    if name == "long" {
        vec![
            scenario("redlock-renew", 5, true, 240, seed, within.clone()),
            scenario("redlock-no-renew", 5, false, 150, seed + 1, within.clone()),
            scenario("single-renew", 1, true, 90, seed + 2, within.clone()),
            scenario("single-no-renew", 1, false, 60, seed + 3, within),
            scenario("redlock-beyond-assumptions", 5, true, 90, seed + 4, all),
            control(45),
        ]
    } else {
        vec![
            scenario("redlock-renew", 5, true, 65, seed, within.clone()),
            scenario("single-no-renew", 1, false, 40, seed + 1, within),
            control(20),
        ]
    }
}

/// The semaphore and read-write lock runs of a profile: 8 workers, then the negative control.
fn primitives_profile(name: &str, seed: u64) -> Vec<primitives::Primitives> {
    let secs = if name == "long" { 120 } else { 15 };
    let run = |name: &str, secs, split| primitives::Primitives {
        name: name.to_owned(),
        duration: Duration::from_secs(secs),
        workers: 8,
        ttl: Duration::from_millis(500),
        seed,
        split,
    };
    vec![
        run("semaphore-rwlock", secs, false),
        run("semaphore-rwlock-negative-control", 6, true),
    ]
}

/// The scenarios a command runs.
fn scenarios_for(options: &Options) -> Vec<Scenario> {
    match options.command.as_str() {
        "run" => profile(&options.profile, options.seed),
        "scenario" => {
            let mut s = scenario(
                if options.fencing {
                    "custom"
                } else {
                    "custom-negative-control"
                },
                options.nodes,
                options.renew,
                options.duration.as_secs(),
                options.seed,
                options.faults.clone(),
            );
            s.fencing = options.fencing;
            s.proxies = options.proxies;
            s.workers = options.workers;
            vec![s]
        }
        _ => Vec::new(),
    }
}

/// Runs one scenario; appends its row and section; returns whether it passed.
fn run_scenario(s: &Scenario, summary: &mut String, body: &mut String) -> Result<bool, String> {
    eprintln!(
        "redlease-torture: scenario {} ({} node(s), renewal {}, fencing {}, {} s, seed {})",
        s.name,
        s.nodes,
        if s.renew { "on" } else { "off" },
        if s.fencing { "on" } else { "off" },
        s.duration.as_secs(),
        s.seed
    );
    let data = scenario::run(s).map_err(|e| format!("cannot run scenario {}: {e}", s.name))?;
    let findings = analysis::analyse(&data);
    let passed = report::passed(&findings);
    let _ = writeln!(
        summary,
        "| `{}` | {} | {} | {} | {} | {} | {} | {} |",
        s.name,
        if passed { "PASS" } else { "**FAIL**" },
        findings.sections,
        findings.writes_accepted,
        findings.stale_rejected,
        findings.section_overlaps.len(),
        if s.fencing {
            findings.violations.len().to_string()
        } else {
            format!("control bit: {}", findings.bite)
        },
        findings.failures.len()
    );
    body.push_str(&report::scenario_section(&data, &findings));
    eprintln!(
        "redlease-torture: scenario {} {} in {:.0} s",
        s.name,
        if passed { "passed" } else { "FAILED" },
        data.wall.as_secs_f64()
    );
    Ok(passed)
}

/// Runs the bad-input matrix; appends its row and section; returns whether it passed.
fn run_matrix(summary: &mut String, body: &mut String) -> Result<bool, String> {
    eprintln!("redlease-torture: bad-input matrix");
    let results = matrix::run().map_err(|e| format!("cannot run the matrix: {e}"))?;
    let failed = results.iter().filter(|r| r.problem.is_some()).count();
    let _ = writeln!(
        summary,
        "| bad-input matrix | {} | {} cases | | | | | {failed} |",
        if failed == 0 { "PASS" } else { "**FAIL**" },
        results.len()
    );
    body.push_str(&matrix::section(&results));
    Ok(failed == 0)
}

fn execute(options: &Options) -> ExitCode {
    let started = Instant::now();
    let mut body = String::new();
    let mut summary = String::from(
        "| scenario | verdict | grants | writes accepted | stale writes refused | overlapping sections | safety violations | failures |\n|---|---|---|---|---|---|---|---|\n",
    );
    let mut all_passed = true;
    for s in &scenarios_for(options) {
        match run_scenario(s, &mut summary, &mut body) {
            Ok(passed) => all_passed &= passed,
            Err(e) => {
                eprintln!("redlease-torture: {e}");
                return ExitCode::from(EXIT_HARNESS);
            }
        }
    }
    if matches!(options.command.as_str(), "run" | "primitives") {
        let mut runs = primitives_profile(&options.profile, options.seed);
        if options.command == "primitives" {
            runs[0].duration = options.duration;
        }
        for run in runs {
            eprintln!(
                "redlease-torture: scenario {} ({} workers, {} s)",
                run.name,
                run.workers,
                run.duration.as_secs()
            );
            match primitives::run(&run) {
                Ok(findings) => {
                    let (row, section) = primitives::report(&run, &findings);
                    all_passed &= row.contains("| PASS |");
                    summary.push_str(&row);
                    summary.push('\n');
                    body.push_str(&section);
                }
                Err(e) => {
                    eprintln!("redlease-torture: {e}");
                    return ExitCode::from(EXIT_HARNESS);
                }
            }
        }
    }
    if matches!(options.command.as_str(), "run" | "matrix") {
        match run_matrix(&mut summary, &mut body) {
            Ok(passed) => all_passed &= passed,
            Err(e) => {
                eprintln!("redlease-torture: {e}");
                return ExitCode::from(EXIT_HARNESS);
            }
        }
    }
    let command_line = std::env::args().collect::<Vec<_>>().join(" ");
    let report = format!(
        "# redlease torture report\n\n`{command_line}` — seed {}, {} — total wall time {:.0} s.\n\n\
         **{}**\n\n{summary}\n{body}",
        options.seed,
        if options.command == "run" {
            format!("profile {}", options.profile)
        } else {
            options.command.clone()
        },
        started.elapsed().as_secs_f64(),
        if all_passed {
            "ALL CHECKS PASSED"
        } else {
            "SOME CHECKS FAILED"
        }
    );
    println!("{report}");
    if let Some(path) = &options.out
        && let Err(e) = std::fs::write(path, &report)
    {
        eprintln!("redlease-torture: cannot write {path}: {e}");
        return ExitCode::from(EXIT_HARNESS);
    }
    if all_passed {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(EXIT_FAILED)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(command: &str, args: &[&str]) -> Result<Options, String> {
        let args: Vec<String> = args.iter().map(|s| (*s).to_owned()).collect();
        Options::parse(command, &args)
    }

    #[test]
    fn options_parse_and_reject() {
        let o = parse("run", &["--profile", "long", "--seed", "9"]).expect("valid");
        assert_eq!((o.profile.as_str(), o.seed), ("long", 9));
        let o = parse(
            "scenario",
            &[
                "--nodes",
                "1",
                "--renew",
                "off",
                "--no-fencing-check",
                "--faults",
                "proxy-cut,holder-kill",
            ],
        )
        .expect("valid");
        assert_eq!(o.nodes, 1);
        assert!(!o.renew && !o.fencing);
        assert_eq!(o.faults, vec![FaultKind::ProxyCut, FaultKind::HolderKill]);
        for bad in [
            vec!["--nodes", "3"],
            vec!["--renew", "maybe"],
            vec!["--duration", "5"],
            vec!["--workers", "1"],
            vec!["--faults", "meteor"],
            vec!["--seed"],
            vec!["--bogus"],
        ] {
            assert!(parse("scenario", &bad).is_err(), "{bad:?}");
        }
        assert!(parse("run", &["--profile", "medium"]).is_err());
        assert!(parse("run", &["--nodes", "5"]).is_err());
        assert!(parse("matrix", &["--seed", "1"]).is_err());
    }

    #[test]
    fn profiles_cover_every_fault_kind_within_the_assumptions() {
        let quick = profile("quick", 1);
        assert!(quick.iter().any(|s| !s.fencing), "a negative control");
        for kind in within_assumptions() {
            assert!(
                quick
                    .iter()
                    .any(|s| s.fencing && s.plan().schedule().iter().any(|f| f.kind == kind)),
                "{kind} not in the quick profile"
            );
        }
        let long = profile("long", 1);
        let total: u64 = long.iter().map(|s| s.duration.as_secs()).sum();
        assert!(total >= 600, "{total}");
        for kind in FaultKind::ALL {
            assert!(
                long.iter()
                    .any(|s| s.plan().schedule().iter().any(|f| f.kind == kind)),
                "{kind} not in the long profile"
            );
        }
    }
}
