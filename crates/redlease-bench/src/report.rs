//! The markdown report: header (command, machine, settings) and one table per scenario.

use std::fmt::Write as _;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

use crate::adapters::{
    BASELINE, PYTHON, RAW, REDLEASE, REDLEASE_FAIR, REDLEASE_NOTIFY, REDLOCK_DEFAULT, RSLOCK_TUNED,
    SKIPPED, Variant, WIRE,
};
use crate::renewal::{self, Mode, RenewalResult};
use crate::scenarios::{ContentionResult, PairsResult, Trouble};

/// Appends a line to a `String` (writing to a `String` cannot fail).
macro_rules! outln {
    ($out:expr) => { $out.push('\n') };
    ($out:expr, $($arg:tt)*) => {{
        let _ = writeln!($out, $($arg)*);
    }};
}

/// What the header says about the run's settings.
#[derive(Debug)]
pub(crate) struct Settings<'a> {
    /// The command line, as typed.
    pub(crate) command: &'a str,
    /// `quick` or `full`.
    pub(crate) mode: &'a str,
    /// Warm-up per row.
    pub(crate) warmup: Duration,
    /// Measurement per row.
    pub(crate) measure: Duration,
    /// Node counts S4 runs S1 and S2 at.
    pub(crate) s4_nodes: &'a [usize],
    /// Warm-up and measurement per S4 row.
    pub(crate) s4_timing: (Duration, Duration),
    /// R1's settle time and measurement window.
    pub(crate) r1_timing: (Duration, Duration),
}

/// Title, command and machine.
pub(crate) fn header(settings: &Settings<'_>) -> String {
    let mut out = String::new();
    outln!(out, "# redlease benchmarks");
    outln!(out);
    outln!(out, "- command: `{}`", settings.command);
    outln!(out, "- machine: {}", machine());
    outln!(out, "- redis: {}", redis_version());
    outln!(out, "- load average before the run: {}", load_average());
    if let Some(rev) = git_revision() {
        outln!(out, "- source: {rev}");
    }
    outln!(
        out,
        "- mode: {} — S1–S3: per row {} warm-up + {} measured, a fresh redis-server (1 node) per \
         row, lease TTL 10 s; S4: S1 and S2 on {} nodes, {} + {} per row; R1: {} settle + {} \
         measured per approach. Client and server share the machine, so compare ratios within \
         this run",
        settings.mode,
        secs(settings.warmup),
        secs(settings.measure),
        settings
            .s4_nodes
            .iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>()
            .join(", "),
        secs(settings.s4_timing.0),
        secs(settings.s4_timing.1),
        secs(settings.r1_timing.0),
        secs(settings.r1_timing.1),
    );
    outln!(
        out,
        "- `raw` is the round-trip limit: the same commands a lock needs (`SET NX PX`, then a \
         compare-and-delete `EVALSHA`) on a bare redis 1.8 multiplexed connection, no lock logic"
    );
    outln!(
        out,
        "- `{WIRE}` (S3) is the notified handoff with bare commands: `SET NX PX`; when taken, \
         wait for a message on the lock's channel (subscribed before the retry that follows) \
         and `SET NX` again; the release is a compare-and-delete script that also `PUBLISH`es, \
         so every waiter is woken"
    );
    outln!(
        out,
        "- `{PYTHON}` (S3) runs at its defaults in one Python process per worker, from a \
         virtual environment the bench creates (`target/redlease-bench/venv`); the workers \
         report `CLOCK_MONOTONIC` timestamps, the clock of the Rust workers, and go through the \
         same statistics"
    );
    out
}

/// `nproc` cores, the CPU model and the kernel.
fn machine() -> String {
    let cores = std::thread::available_parallelism().map_or(0, std::num::NonZero::get);
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|info| {
            info.lines()
                .find_map(|l| l.strip_prefix("model name"))
                .map(|rest| rest.trim_start_matches([' ', '\t', ':']).trim().to_owned())
        })
        .unwrap_or_else(|| "unknown CPU".to_owned());
    let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease")
        .map(|k| format!(", Linux {}", k.trim()))
        .unwrap_or_default();
    format!("{cores} cores (nproc), {cpu}{kernel}")
}

/// The 1, 5 and 15 minute load averages, from `/proc/loadavg`: other work on the machine
/// skews every figure.
pub(crate) fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg").map_or_else(
        |_| "unknown".to_owned(),
        |l| l.split_whitespace().take(3).collect::<Vec<_>>().join(" "),
    )
}

/// `redis-server --version` of the binary the testkit runs.
fn redis_version() -> String {
    let Ok(binary) = redlease_testkit::redis_server_binary() else {
        return "redis-server not found".to_owned();
    };
    Command::new(&binary)
        .arg("--version")
        .output()
        .ok()
        .and_then(|o| String::from_utf8(o.stdout).ok())
        .map_or_else(
            || format!("{} (version unknown)", binary.display()),
            |v| format!("`{}` ({})", v.trim(), binary.display()),
        )
}

/// Short commit hash, marked `+ uncommitted changes` when the tree is dirty.
fn git_revision() -> Option<String> {
    let git = |args: &[&str]| {
        Command::new("git")
            .args(args)
            .output()
            .ok()
            .filter(|o| o.status.success())
            .and_then(|o| String::from_utf8(o.stdout).ok())
    };
    let rev = git(&["rev-parse", "--short", "HEAD"])?;
    let dirty = git(&["status", "--porcelain", "--untracked-files=no"])
        .is_some_and(|s| !s.trim().is_empty());
    Some(format!(
        "git {}{}",
        rev.trim(),
        if dirty { " + uncommitted changes" } else { "" }
    ))
}

/// A result row: the variant and what measuring it produced.
pub(crate) type Row<T> = (Variant, Result<T, String>);

/// S1 or S2's table.
pub(crate) fn pairs_table(title: &str, rows: &[Row<PairsResult>]) -> String {
    let rate = |name: &str| {
        rows.iter()
            .find(|(v, _)| v.name == name)
            .and_then(|(_, r)| r.as_ref().ok())
            .map(|r| r.pairs_per_s)
    };
    let (raw, baseline) = (rate(RAW), rate(BASELINE));
    let mut out = String::new();
    outln!(out, "## {title}");
    outln!(out);
    outln!(
        out,
        "| library | nodes | pairs/s | vs {RAW} | vs {BASELINE} | pair p50 µs | pair p99 µs | \
         cmds/pair | gave up | errors |"
    );
    outln!(out, "|---|---|--:|--:|--:|--:|--:|--:|--:|--:|");
    for (v, result) in rows {
        match result {
            Ok(r) => outln!(
                out,
                "| {} | {} | {} | {} | {} | {} | {} | {} | {} | {} |",
                v.name,
                v.nodes,
                thousands(r.pairs_per_s),
                ratio(r.pairs_per_s, raw),
                ratio(r.pairs_per_s, baseline),
                micros(r.latency.p50),
                micros(r.latency.p99),
                r.cmds_per_pair
                    .map_or_else(|| "?".to_owned(), |c| format!("{c:.2}")),
                r.trouble.gave_up,
                r.trouble.errors,
            ),
            Err(e) => outln!(out, "| {} | {} | failed: {} |", v.name, v.nodes, cell(e)),
        }
    }
    outln!(out);
    outln!(
        out,
        "cmds/pair: commands Redis executed per pair (`INFO` `total_commands_processed`), those \
         run inside Lua scripts included; raw's `SET` + `EVALSHA` (`GET`, `DEL`) makes 4."
    );
    notes(
        &mut out,
        rows.iter()
            .map(|(v, r)| (v, r.as_ref().map(|r| &r.trouble))),
    );
    out
}

/// S3's table for one hold time.
pub(crate) fn contention_table(
    title: &str,
    hold: Duration,
    rows: &[Row<ContentionResult>],
) -> String {
    let rate = |name: &str| find(rows, name, 1).map(|r| r.acq_per_s);
    let (baseline, redlock) = (rate(BASELINE), rate(REDLOCK_DEFAULT));
    let ideal = 1.0 / hold.as_secs_f64();
    let mut out = String::new();
    outln!(out, "## {title}");
    outln!(out);
    outln!(
        out,
        "Ideal: {} acquisitions/s (the lock held 100% of the time). Busy % = acq/s ÷ {}. Idle \
         gap: previous holder's release call start → next holder's acquire return. Wait: \
         acquire call → return, calls again after each give-up included; a wait still going at \
         the end counts up to the end. Changed hands: acquisitions by a worker other than the \
         previous holder. cmds/acq: commands Redis executed per acquisition, polling and \
         script-internal calls included. Spread: (max − min) ÷ mean of the acquisitions per \
         worker. Violations: a holder found another inside.",
        thousands(ideal),
        thousands(ideal),
    );
    outln!(out);
    outln!(
        out,
        "| library | retry | acq/s | busy % | vs {BASELINE} | vs {REDLOCK_DEFAULT} | idle gap p50 \
         / p99 / max ms | wait p50 / p99 / max ms | per worker min..max | spread | changed hands \
         | cmds/acq | hold p50 ms | gave up | errors | violations |"
    );
    outln!(
        out,
        "|---|---|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|"
    );
    for (v, result) in rows {
        match result {
            Ok(r) => outln!(
                out,
                "| {} | {} | {} | {:.0}% | {} | {} | {} / {} / {} | {} / {} / {} | {}..{} | {} | \
                 {:.0}% | {} | {} | {} | {} | {} |",
                v.name,
                v.retry,
                thousands(r.acq_per_s),
                r.busy_pct,
                ratio(r.acq_per_s, baseline),
                ratio(r.acq_per_s, redlock),
                millis(r.gaps.p50),
                millis(r.gaps.p99),
                millis(r.gaps.max),
                millis(r.waits.p50),
                millis(r.waits.p99),
                millis(r.waits.max),
                r.per_worker.0,
                r.per_worker.1,
                r.spread
                    .map_or_else(|| "?".to_owned(), |s| format!("{:.0}%", s * 100.0)),
                r.changed_hands_pct,
                r.cmds_per_acq
                    .map_or_else(|| "?".to_owned(), |c| format!("{c:.1}")),
                millis(r.holds.p50),
                r.trouble.gave_up,
                r.trouble.errors,
                r.violations + r.overlaps,
            ),
            Err(e) => outln!(out, "| {} | {} | {} |", v.name, v.retry, failure(e)),
        }
    }
    notes(
        &mut out,
        rows.iter()
            .map(|(v, r)| (v, r.as_ref().map(|r| &r.trouble))),
    );
    for (v, about) in rows
        .iter()
        .filter_map(|(v, r)| Some((v, r.as_ref().ok()?.about.as_ref()?)))
    {
        outln!(out);
        outln!(out, "- {}: {}", v.name, cell(about));
    }
    let overlaps: Vec<_> = rows
        .iter()
        .filter_map(|(v, r)| r.as_ref().ok().map(|r| (v, r)))
        .filter(|(_, r)| r.overlaps > 0 || r.violations > 0)
        .map(|(v, r)| {
            format!(
                "{}: {} flag violations, {} overlapping holds",
                v.name, r.violations, r.overlaps
            )
        })
        .collect();
    if !overlaps.is_empty() {
        outln!(out);
        outln!(
            out,
            "**Mutual exclusion violated:** {}",
            overlaps.join("; ")
        );
    }
    contention_targets(&mut out, hold, rows);
    out
}

/// The result of the row named `name` on `nodes` nodes, if it was measured and succeeded.
fn find<'a, T>(rows: &'a [Row<T>], name: &str, nodes: usize) -> Option<&'a T> {
    rows.iter()
        .find(|(v, _)| v.name == name && v.nodes == nodes)
        .and_then(|(_, r)| r.as_ref().ok())
}

/// A target a figure should meet.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) enum Target {
    /// At most this much.
    AtMost(f64),
    /// At least this much.
    AtLeast(f64),
}

impl Target {
    /// Whether `value` meets the target.
    pub(crate) fn met_by(self, value: f64) -> bool {
        match self {
            Self::AtMost(limit) => value <= limit,
            Self::AtLeast(limit) => value >= limit,
        }
    }
}

/// `shown` followed by ✅ or ❌ for `value` against `target`; `?` when unknown.
pub(crate) fn verdict(value: Option<f64>, shown: impl Fn(f64) -> String, target: Target) -> String {
    match value {
        Some(v) if v.is_finite() => {
            let mark = if target.met_by(v) { "✅" } else { "❌" };
            format!("{} {mark}", shown(v))
        }
        _ => "?".to_owned(),
    }
}

/// Targets for the notification-driven redlease variants in S3 (issue 15), against the rows
/// that run beside them: the bare notified handoff, rslock polling every 0–1 ms, and
/// python-redis-lock.
/// How much longer than the bare notified handoff's a redlease handoff may be.
const WIRE_GAP_RATIO_TARGET: f64 = 1.5;
/// At most this share of the polling peer's Redis commands per acquisition.
const PEER_COMMANDS_SHARE: f64 = 1.0 / 3.0;
/// Busy % at most this many points below the polling peer's.
const PEER_BUSY_POINTS: f64 = 2.0;
const FAIR_SPREAD_TARGET: f64 = 0.1;
/// Fair mode's wait p99 against the FIFO ideal: every other worker holds once before.
const FIFO_WAIT_RATIO_TARGET: f64 = 1.2;

/// Where the notification-driven variants land against their targets, below an S3 table.
fn contention_targets(out: &mut String, hold: Duration, rows: &[Row<ContentionResult>]) {
    let ours: Vec<(&str, &ContentionResult)> = [REDLEASE_NOTIFY, REDLEASE_FAIR]
        .into_iter()
        .filter_map(|name| find(rows, name, 1).map(|r| (name, r)))
        .collect();
    if ours.is_empty() {
        return;
    }
    outln!(out);
    outln!(out, "Targets at hold {}:", ms(hold));
    outln!(out);
    let names: Vec<&str> = ours.iter().map(|(n, _)| *n).collect();
    outln!(out, "| target | {} |", names.join(" | "));
    outln!(out, "|---|{}", "--:|".repeat(names.len()));
    let mut line = |label: String, cell: &dyn Fn(&ContentionResult, &str) -> String| {
        let cells: Vec<String> = ours.iter().map(|(n, r)| cell(r, n)).collect();
        outln!(out, "| {label} | {} |", cells.join(" | "));
    };
    against_references(&mut line, rows);
    fair_targets(&mut line, hold);
}

/// Milliseconds of a nanosecond figure.
fn ms_of(ns: u64) -> f64 {
    crate::stats::as_f64(ns) / 1e6
}

/// A line of the targets table: its label, and each variant's cell.
type TargetLine<'a> = dyn FnMut(String, &dyn Fn(&ContentionResult, &str) -> String) + 'a;

/// The targets against the rows that are there to compare with: the bare notified handoff,
/// the polling peer and python-redis-lock.
fn against_references(line: &mut TargetLine<'_>, rows: &[Row<ContentionResult>]) {
    if let Some(wire) = find(rows, WIRE, 1) {
        line(
            format!("idle gap p50 ≤ {WIRE_GAP_RATIO_TARGET}× {WIRE}'s"),
            &|r, _| {
                verdict(
                    (wire.gaps.p50 > 0).then(|| ms_of(r.gaps.p50) / ms_of(wire.gaps.p50)),
                    |v| format!("{v:.2}×"),
                    Target::AtMost(WIRE_GAP_RATIO_TARGET),
                )
            },
        );
    }
    if let Some(peer) = find(rows, RSLOCK_TUNED, 1) {
        line(format!("idle gap p50 ≤ {RSLOCK_TUNED}'s"), &|r, _| {
            verdict(
                Some(ms_of(r.gaps.p50)),
                |v| format!("{v:.3} ms vs {:.3} ms", ms_of(peer.gaps.p50)),
                Target::AtMost(ms_of(peer.gaps.p50)),
            )
        });
        line(format!("cmds/acq ≤ ⅓ of {RSLOCK_TUNED}'s"), &|r, _| {
            verdict(
                r.cmds_per_acq
                    .zip(peer.cmds_per_acq)
                    .filter(|&(_, p)| p > 0.0)
                    .map(|(c, p)| c / p),
                |v| format!("{v:.2}×"),
                Target::AtMost(PEER_COMMANDS_SHARE),
            )
        });
        line(
            format!("busy ≥ {RSLOCK_TUNED}'s − {PEER_BUSY_POINTS} points"),
            &|r, _| {
                verdict(
                    Some(r.busy_pct),
                    |v| format!("{v:.0}% vs {:.0}%", peer.busy_pct),
                    Target::AtLeast(peer.busy_pct - PEER_BUSY_POINTS),
                )
            },
        );
    }
    if let Some(python) = find(rows, PYTHON, 1) {
        line(format!("wait p99 ≤ {PYTHON}'s"), &|r, _| {
            verdict(
                Some(ms_of(r.waits.p99)),
                |v| format!("{v:.1} ms vs {:.1} ms", ms_of(python.waits.p99)),
                Target::AtMost(ms_of(python.waits.p99)),
            )
        });
    }
}

/// Fair mode's own targets: an even share, and waits close to first come, first served.
fn fair_targets(line: &mut TargetLine<'_>, hold: Duration) {
    line(
        format!(
            "fair: per-worker spread ≤ {:.0}%",
            FAIR_SPREAD_TARGET * 100.0
        ),
        &|r, name| {
            fair_only(name, || {
                verdict(
                    r.spread,
                    |v| format!("{:.0}%", v * 100.0),
                    Target::AtMost(FAIR_SPREAD_TARGET),
                )
            })
        },
    );
    line(
        format!(
            "fair: wait p99 ≤ {FIFO_WAIT_RATIO_TARGET}× the FIFO ideal ({} × (hold + gap p50))",
            crate::S3_WORKERS
        ),
        &|r, name| {
            fair_only(name, || {
                let ideal = crate::stats::as_f64(crate::S3_WORKERS as u64)
                    * (hold.as_secs_f64() * 1e3 + ms_of(r.gaps.p50));
                verdict(
                    Some(ms_of(r.waits.p99) / ideal),
                    |v| format!("{v:.2}× ({:.1} ms vs {ideal:.1} ms)", ms_of(r.waits.p99)),
                    Target::AtMost(FIFO_WAIT_RATIO_TARGET),
                )
            })
        },
    );
}

/// A fair-mode target's cell: `cell()` for the fair variant, a dash for the others.
fn fair_only(name: &str, cell: impl FnOnce() -> String) -> String {
    if name == REDLEASE_FAIR {
        cell()
    } else {
        "(not fair mode)".to_owned()
    }
}

/// One library's S1 and S2 results at one node count, for S4.
pub(crate) struct S4Row {
    /// The variant, with its node count.
    pub(crate) variant: Variant,
    /// S1 (one task).
    pub(crate) s1: Result<PairsResult, String>,
    /// S2 (several tasks, one client).
    pub(crate) s2: Result<PairsResult, String>,
    /// Whether the results are S1's and S2's own 1-node rows, reused.
    pub(crate) reused: bool,
}

/// S4's table: S1 and S2 per library and node count, with ratios to the library's own 1-node
/// figures and to rslock's on as many nodes, and the targets.
pub(crate) fn multinode_table(title: &str, s2_tasks: usize, rows: &[S4Row]) -> String {
    let rate = |name: &str, nodes: usize, s2: bool| {
        rows.iter()
            .find(|r| r.variant.name == name && r.variant.nodes == nodes)
            .and_then(|r| if s2 { r.s2.as_ref() } else { r.s1.as_ref() }.ok())
            .map(|r| r.pairs_per_s)
    };
    let mut out = String::new();
    outln!(out, "## {title}");
    outln!(out);
    outln!(
        out,
        "S1: one task; S2: {s2_tasks} tasks through one client, distinct names. \"vs 1 node\": \
         the same library's 1-node figure; \"vs {BASELINE}\": rslock on as many nodes. Rows \
         marked * are the S1/S2 tables' own 1-node rows. cmds/pair: commands all nodes \
         executed per pair."
    );
    outln!(out);
    outln!(
        out,
        "| library | nodes | S1 pairs/s | S1 vs 1 node | S1 vs {BASELINE} | S1 p50 / p99 µs | S2 \
         pairs/s | S2 vs 1 node | S2 vs {BASELINE} | S2 p50 / p99 µs | cmds/pair S1 / S2 | \
         gave up | errors |"
    );
    outln!(out, "|---|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|");
    let cells = |r: &Result<PairsResult, String>, name: &str, nodes: usize, s2: bool| match r {
        Ok(p) => [
            thousands(p.pairs_per_s),
            ratio(p.pairs_per_s, rate(name, 1, s2)),
            ratio(p.pairs_per_s, rate(BASELINE, nodes, s2)),
            format!("{} / {}", micros(p.latency.p50), micros(p.latency.p99)),
        ],
        Err(e) => [
            format!("failed: {}", cell(e)),
            String::new(),
            String::new(),
            String::new(),
        ],
    };
    for row in rows {
        let (name, nodes) = (row.variant.name, row.variant.nodes);
        let s1 = cells(&row.s1, name, nodes, false);
        let s2 = cells(&row.s2, name, nodes, true);
        let cmds = |r: &Result<PairsResult, String>| {
            r.as_ref()
                .ok()
                .and_then(|p| p.cmds_per_pair)
                .map_or_else(|| "?".to_owned(), |c| format!("{c:.1}"))
        };
        let trouble = |f: fn(&Trouble) -> u64| {
            [&row.s1, &row.s2]
                .iter()
                .filter_map(|r| r.as_ref().ok())
                .map(|p| f(&p.trouble))
                .sum::<u64>()
        };
        outln!(
            out,
            "| {name}{} | {nodes} | {} | {} | {} / {} | {} | {} |",
            if row.reused { " *" } else { "" },
            s1.join(" | "),
            s2.join(" | "),
            cmds(&row.s1),
            cmds(&row.s2),
            trouble(|t| t.gave_up),
            trouble(|t| t.errors),
        );
    }
    multinode_notes(&mut out, rows);
    outln!(out);
    outln!(out, "Targets:");
    outln!(out);
    outln!(
        out,
        "- {REDLEASE} 5-node S1 ÷ {REDLEASE} 1-node S1 ≥ 0.8×: {}",
        verdict(
            rate(REDLEASE, 5, false)
                .zip(rate(REDLEASE, 1, false))
                .map(|(a, b)| a / b),
            |v| format!("{v:.2}×"),
            Target::AtLeast(0.8),
        )
    );
    outln!(
        out,
        "- {REDLEASE} 3-node S2 ÷ {BASELINE} 3-node S2 ≥ 2×: {}",
        verdict(
            rate(REDLEASE, 3, true)
                .zip(rate(BASELINE, 3, true))
                .map(|(a, b)| a / b),
            |v| format!("{v:.2}×"),
            Target::AtLeast(2.0),
        )
    );
    out
}

/// Footnotes with the first error of each S4 measurement that had errors.
fn multinode_notes(out: &mut String, rows: &[S4Row]) {
    for row in rows {
        for (scenario, result) in [("S1", &row.s1), ("S2", &row.s2)] {
            if let Ok(PairsResult {
                trouble:
                    Trouble {
                        errors,
                        first_error: Some(e),
                        ..
                    },
                ..
            }) = result
            {
                outln!(
                    out,
                    "\n- {} on {} nodes, {scenario}: {errors} errors, the first: {}",
                    row.variant.name,
                    row.variant.nodes,
                    cell(e)
                );
            }
        }
    }
}

/// Targets for R1.
const R1_ROUND_TRIPS_TARGET: f64 = 10.0;
const R1_CPU_TARGET_PCT: f64 = 5.0;
const R1_BYTES_TARGET: f64 = 1024.0;

/// R1's table: both ways of keeping the leases alive, side by side, and the targets for
/// redlease's.
pub(crate) fn renewal_table(
    title: &str,
    (leases, ttl): (usize, Duration),
    rows: &[(Mode, Result<RenewalResult, String>)],
) -> String {
    let mut out = String::new();
    outln!(out, "## {title}");
    outln!(out);
    outln!(
        out,
        "{} leases, TTL {}, renewed every {} ({} interval), one client, one node; each approach \
         in a child process of its own (CPU and memory are the client's alone; redis-server is \
         another process and nothing else runs meanwhile). Round trips: calls through a \
         counting connection (`Client::builder().connection(..)`): one per command, one per \
         pipeline. Sent/s: commands, pipelined ones included (about one per renewal); renewals per \
         lease per interval should be 1. Redis cmds/s: `INFO` \
         `total_commands_processed`, script-internal calls included. CPU: the child's \
         utime + stime over the window, in % of one core. Memory: `VmRSS` growth per lease, \
         after acquiring / at the end of the window. Not held: guards whose `is_held()` was \
         false at the end.",
        thousands(crate::stats::as_f64(leases as u64)),
        secs(ttl),
        secs(renewal::interval(ttl)),
        "renewal",
    );
    outln!(out);
    outln!(
        out,
        "| approach | setup s | round trips/s | round trips per renewal interval, per node | \
         sent/s | renewals per lease per interval | cmds per round trip | Redis cmds/s | client CPU % of a core | bytes per lease (acquired / end) | \
         not held | extend errors | keys in Redis |"
    );
    outln!(out, "|---|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|");
    let opt = |v: Option<f64>, f: &dyn Fn(f64) -> String| v.map_or_else(|| "?".to_owned(), f);
    for (mode, result) in rows {
        match result {
            Ok(r) => outln!(
                out,
                "| {} | {:.2} | {} | {} | {} | {:.2} | {} | {} | {} | {} / {} | {} | {} | {} |",
                mode.label(),
                r.setup_s,
                decimal(r.round_trips_per_s()),
                decimal(r.round_trips_per_tick()),
                thousands(r.sent_per_s()),
                r.renewals_per_lease_per_tick(),
                decimal(r.commands_per_round_trip()),
                opt(r.redis_per_s(), &thousands),
                opt(r.cpu_pct(), &|v| format!("{v:.1}%")),
                opt(r.bytes_per_lease(r.rss_acquired), &thousands),
                opt(r.bytes_per_lease(r.rss_end), &thousands),
                r.not_held,
                r.extend_errors,
                r.keys
                    .map_or_else(|| "?".to_owned(), |k| thousands(crate::stats::as_f64(k))),
            ),
            Err(e) => outln!(out, "| {} | failed: {} |", mode.label(), cell(e)),
        }
    }
    let get = |m: Mode| {
        rows.iter()
            .find(|(mode, _)| *mode == m)
            .and_then(|(_, r)| r.as_ref().ok())
    };
    let (batched, timers) = (get(Mode::Batched), get(Mode::Timers));
    if let (Some(b), Some(t)) = (batched, timers) {
        let factor = |a: Option<f64>, b: Option<f64>| match (a, b) {
            (Some(a), Some(b)) if b > 0.0 => format!("{:.1}×", a / b),
            _ => "?".to_owned(),
        };
        outln!(out);
        outln!(
            out,
            "One timer per lease ÷ batched: {} the round trips, {} the client CPU, {} the memory \
             per lease (at the end).",
            factor(Some(t.round_trips_per_s()), Some(b.round_trips_per_s())),
            factor(t.cpu_pct(), b.cpu_pct()),
            factor(t.bytes_per_lease(t.rss_end), b.bytes_per_lease(b.rss_end)),
        );
    }
    if let Some(b) = batched {
        renewal_targets(&mut out, b);
    }
    out
}

/// Where redlease's auto-renewal lands against R1's targets.
fn renewal_targets(out: &mut String, b: &RenewalResult) {
    {
        let bytes = b
            .bytes_per_lease(b.rss_acquired)
            .zip(b.bytes_per_lease(b.rss_end))
            .map(|(a, e)| a.max(e));
        outln!(out);
        outln!(out, "Targets (redlease `auto_renew`):");
        outln!(out);
        outln!(
            out,
            "- round trips per renewal interval per node O(1), a handful (≤ {R1_ROUND_TRIPS_TARGET}): {}",
            verdict(
                Some(b.round_trips_per_tick()),
                decimal,
                Target::AtMost(R1_ROUND_TRIPS_TARGET)
            )
        );
        outln!(
            out,
            "- client CPU < {R1_CPU_TARGET_PCT}% of a core: {}",
            verdict(
                b.cpu_pct(),
                |v| format!("{v:.1}%"),
                Target::AtMost(R1_CPU_TARGET_PCT)
            )
        );
        outln!(
            out,
            "- < 1 KiB per lease (the larger of the two readings): {}",
            verdict(
                bytes,
                |v| format!("{} B", thousands(v)),
                Target::AtMost(R1_BYTES_TARGET)
            )
        );
        outln!(
            out,
            "- every lease still held at the end: {}",
            verdict(
                Some(crate::stats::as_f64(b.not_held)),
                |v| format!("{v:.0} not held"),
                Target::AtMost(0.0)
            )
        );
    }
}

/// A small figure with as many decimals as it needs: `2.2`, `0.30`, `1,234`.
pub(crate) fn decimal(x: f64) -> String {
    if !x.is_finite() {
        "?".to_owned()
    } else if x.abs() >= 100.0 {
        thousands(x)
    } else if x.abs() >= 10.0 {
        format!("{x:.1}")
    } else {
        format!("{x:.2}")
    }
}

/// Above this share of the machine taken by other processes, the report warns.
const BUSY_MACHINE: f64 = 0.1;

/// The last section: wall time, load, and how much CPU other processes took meanwhile.
pub(crate) fn footer(wall: Duration, others: Option<f64>) -> String {
    let mut out = String::new();
    let cores = std::thread::available_parallelism().map_or(0, std::num::NonZero::get);
    outln!(
        out,
        "Wall time: {:.0} s; load average after the run: {}.",
        wall.as_secs_f64(),
        load_average(),
    );
    if let Some(share) = others {
        outln!(out);
        outln!(
            out,
            "CPU taken by other processes during the run: {:.0}% of the machine ({:.2} of {cores} \
             cores; `/proc/stat` user + system time less this process's and its reaped children's).",
            share * 100.0,
            share * crate::stats::as_f64(cores as u64),
        );
        if share > BUSY_MACHINE {
            outln!(out);
            outln!(
                out,
                "**Warning:** other work competed with the benchmark for the CPU; latencies, \
                 idle gaps and CPU figures are skewed. Rerun on a quiet machine before drawing \
                 conclusions."
            );
        }
    }
    out
}

/// Footnotes with the first error of each row that had errors.
fn notes<'a>(
    out: &mut String,
    rows: impl Iterator<Item = (&'a Variant, Result<&'a Trouble, &'a String>)>,
) {
    let mut first = true;
    for (v, trouble) in rows {
        let Ok(Trouble {
            first_error: Some(e),
            errors,
            ..
        }) = trouble
        else {
            continue;
        };
        if first {
            outln!(out);
            first = false;
        }
        outln!(out, "- {}: {errors} errors, the first: {}", v.name, cell(e));
    }
}

/// A row's cell when it has no result: a skipped row says so, anything else failed.
fn failure(message: &str) -> String {
    if message.starts_with(SKIPPED) {
        cell(message)
    } else {
        format!("failed: {}", cell(message))
    }
}

/// The section showing S3's idle-gap picture at `svg`, linked relative to the `report` file
/// when they share a directory; or why it was not written.
pub(crate) fn picture_section(
    svg: &Path,
    report: Option<&Path>,
    written: Result<(), String>,
) -> String {
    let mut out = String::new();
    outln!(out, "## S3 — idle gaps, side by side");
    outln!(out);
    if let Err(e) = written {
        outln!(out, "Not drawn: {}", cell(&e));
        return out;
    }
    let beside = report.is_some_and(|r| r.parent() == svg.parent());
    let link = match svg.file_name() {
        Some(name) if beside => name.to_string_lossy().into_owned(),
        _ => svg.display().to_string(),
    };
    outln!(
        out,
        "Every S3 row's idle gaps (previous holder's release call → next holder's acquire \
         return), as the share of handoffs with a shorter gap, on a logarithmic time axis: \
         the further left and the steeper, the faster the handoff."
    );
    outln!(out);
    outln!(out, "![S3 idle gaps per library]({link})");
    out
}

/// Text safe inside a table cell: one line, no pipes.
fn cell(text: &str) -> String {
    text.replace('|', "/").replace(['\n', '\r'], " ")
}

/// Rounded, with thousands separators: `12,345`.
pub(crate) fn thousands(x: f64) -> String {
    if !x.is_finite() {
        return "?".to_owned();
    }
    let rounded = format!("{:.0}", x.abs());
    let mut grouped = String::new();
    for (i, digit) in rounded.chars().enumerate() {
        if i > 0 && (rounded.len() - i) % 3 == 0 {
            grouped.push(',');
        }
        grouped.push(digit);
    }
    if x < 0.0 && rounded != "0" {
        grouped.insert(0, '-');
    }
    grouped
}

/// `x / reference` as `0.87×`, or `–` without a reference.
fn ratio(x: f64, reference: Option<f64>) -> String {
    match reference {
        Some(r) if r > 0.0 => format!("{:.2}×", x / r),
        _ => "–".to_owned(),
    }
}

/// Nanoseconds as whole microseconds.
fn micros(ns: u64) -> String {
    thousands(crate::stats::as_f64(ns) / 1e3)
}

/// Nanoseconds as milliseconds, with 2 significant decimals below 10 ms.
pub(crate) fn millis(ns: u64) -> String {
    let ms = crate::stats::as_f64(ns) / 1e6;
    if ms < 10.0 {
        format!("{ms:.2}")
    } else if ms < 100.0 {
        format!("{ms:.1}")
    } else {
        thousands(ms)
    }
}

/// A duration in milliseconds, without trailing zeros: `1 ms`, `0.5 ms`.
pub(crate) fn ms(d: Duration) -> String {
    let s = format!("{:.3}", d.as_secs_f64() * 1e3);
    let s = s.trim_end_matches('0').trim_end_matches('.');
    format!("{s} ms")
}

/// A duration in seconds, without trailing zeros: `3 s`, `0.5 s`.
pub(crate) fn secs(d: Duration) -> String {
    let s = format!("{:.3}", d.as_secs_f64());
    let s = s.trim_end_matches('0').trim_end_matches('.');
    format!("{s} s")
}

/// Writes `report` to `path`.
pub(crate) fn write(path: &Path, report: &str) -> Result<(), String> {
    std::fs::write(path, report).map_err(|e| format!("writing {}: {e}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn number_formats() {
        assert_eq!(thousands(0.4), "0");
        assert_eq!(thousands(999.5), "1,000");
        assert_eq!(thousands(1_234_567.0), "1,234,567");
        assert_eq!(thousands(-1234.0), "-1,234");
        assert_eq!(thousands(f64::NAN), "?");
        assert_eq!(ratio(50.0, Some(100.0)), "0.50×");
        assert_eq!(ratio(50.0, None), "–");
        assert_eq!(ratio(50.0, Some(0.0)), "–");
        assert_eq!(micros(115_400), "115");
        assert_eq!(millis(620_000), "0.62");
        assert_eq!(millis(44_600_000), "44.6");
        assert_eq!(millis(446_000_000), "446");
        assert_eq!(secs(Duration::from_secs(3)), "3 s");
        assert_eq!(secs(Duration::from_millis(500)), "0.5 s");
        assert_eq!(ms(Duration::from_millis(10)), "10 ms");
        assert_eq!(ms(Duration::from_micros(500)), "0.5 ms");
        assert_eq!(cell("a|b\nc"), "a/b c");
        assert_eq!(failure("no server"), "failed: no server");
        assert_eq!(
            failure(&format!("{SKIPPED}python3 not found")),
            "skipped: python3 not found"
        );
        assert_eq!(decimal(2.2), "2.20");
        assert_eq!(decimal(12.34), "12.3");
        assert_eq!(decimal(12_345.0), "12,345");
        assert_eq!(decimal(f64::NAN), "?");
    }

    #[test]
    fn footer_warns_when_the_machine_was_busy() {
        let quiet = footer(Duration::from_secs(163), Some(0.02));
        assert!(quiet.starts_with("Wall time: 163 s;"), "{quiet}");
        assert!(quiet.contains("2% of the machine"), "{quiet}");
        assert!(!quiet.contains("Warning"), "{quiet}");
        assert!(footer(Duration::from_secs(1), Some(0.4)).contains("**Warning:**"));
        assert!(!footer(Duration::from_secs(1), None).contains("other processes"));
    }

    #[test]
    fn s3_targets_compare_with_the_wire_and_python_rows() {
        let row = |name: &str, gap_p50_us: u64, wait_p99_ms: u64| {
            let variant = crate::adapters::variants(1)
                .into_iter()
                .find(|v| v.name == name)
                .expect("a variant");
            let result = ContentionResult {
                gaps: crate::stats::Summary {
                    p50: gap_p50_us * 1_000,
                    ..Default::default()
                },
                waits: crate::stats::Summary {
                    p99: wait_p99_ms * 1_000_000,
                    ..Default::default()
                },
                ..Default::default()
            };
            (variant, Ok(result))
        };
        let rows = [
            row(REDLEASE_NOTIFY, 300, 50),
            row(REDLEASE_FAIR, 150, 20),
            row(WIRE, 150, 400),
            row(PYTHON, 600, 40),
            row(RSLOCK_TUNED, 200, 60),
        ];
        let table = contention_table("S3", Duration::from_millis(1), &rows);
        assert!(
            table.contains("| idle gap p50 ≤ 1.5× wire's | 2.00× ❌ | 1.00× ✅ |"),
            "{table}"
        );
        assert!(
            table.contains(
                "| wait p99 ≤ python-redis-lock's | 50.0 ms vs 40.0 ms ❌ | 20.0 ms vs 40.0 ms ✅ |"
            ),
            "{table}"
        );
        assert!(
            table.contains(
                "| idle gap p50 ≤ rslock-tuned's | 0.300 ms vs 0.200 ms ❌ | 0.150 ms vs 0.200 ms ✅ |"
            ),
            "{table}"
        );
        // The FIFO ideal at hold 1 ms and a 0.15 ms gap: 8 × 1.15 ms.
        assert!(
            table.contains("| (not fair mode) | 2.17× (20.0 ms vs 9.2 ms) ❌ |"),
            "{table}"
        );
        let without = contention_table("S3", Duration::from_millis(1), &rows[..2]);
        assert!(!without.contains("wire's"), "{without}");
        assert!(!without.contains("python-redis-lock's"), "{without}");
    }

    #[test]
    fn the_picture_is_linked_beside_the_report() {
        let svg = Path::new("/r/BENCHMARKS-idle-gaps.svg");
        let beside = picture_section(svg, Some(Path::new("/r/BENCHMARKS.md")), Ok(()));
        assert!(beside.contains("](BENCHMARKS-idle-gaps.svg)"), "{beside}");
        let elsewhere = picture_section(svg, Some(Path::new("/s/run.md")), Ok(()));
        assert!(
            elsewhere.contains("](/r/BENCHMARKS-idle-gaps.svg)"),
            "{elsewhere}"
        );
        let failed = picture_section(svg, None, Err("disk full".to_owned()));
        assert!(failed.contains("Not drawn: disk full"), "{failed}");
        assert!(!failed.contains("!["), "{failed}");
    }

    #[test]
    fn verdicts() {
        let ms = |v: f64| format!("{v:.2} ms");
        assert_eq!(verdict(Some(0.1), ms, Target::AtMost(0.15)), "0.10 ms ✅");
        assert_eq!(verdict(Some(0.2), ms, Target::AtMost(0.15)), "0.20 ms ❌");
        assert_eq!(verdict(Some(0.15), ms, Target::AtMost(0.15)), "0.15 ms ✅");
        assert_eq!(verdict(Some(2.0), ms, Target::AtLeast(2.0)), "2.00 ms ✅");
        assert_eq!(verdict(Some(1.9), ms, Target::AtLeast(2.0)), "1.90 ms ❌");
        assert_eq!(verdict(None, ms, Target::AtLeast(2.0)), "?");
        assert_eq!(verdict(Some(f64::INFINITY), ms, Target::AtLeast(2.0)), "?");
    }
}
