//! The markdown report: header (command, machine, settings) and one table per scenario.

use std::fmt::Write as _;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

use crate::adapters::{BASELINE, RAW, Variant};
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
    /// Nodes per variant.
    pub(crate) nodes: usize,
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
        "- mode: {} — per row {} warm-up + {} measured, a fresh redis-server ({} node{}) per row, \
         lease TTL 10 s; client and server share the machine, so compare ratios within this run",
        settings.mode,
        secs(settings.warmup),
        secs(settings.measure),
        settings.nodes,
        if settings.nodes == 1 { "" } else { "s" },
    );
    outln!(
        out,
        "- `raw` is the round-trip limit: the same commands a lock needs (`SET NX PX`, then a \
         compare-and-delete `EVALSHA`) on a bare redis 1.8 multiplexed connection, no lock logic"
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
    let baseline = rows
        .iter()
        .find(|(v, _)| v.name == BASELINE)
        .and_then(|(_, r)| r.as_ref().ok())
        .map(|r| r.acq_per_s);
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
         script-internal calls included. Violations: a holder found another inside.",
        thousands(ideal),
        thousands(ideal),
    );
    outln!(out);
    outln!(
        out,
        "| library | retry | acq/s | busy % | vs {BASELINE} | idle gap p50 / p99 / max ms | \
         wait p50 / p99 / max ms | per worker min..max | changed hands | cmds/acq | hold p50 ms \
         | gave up | errors | violations |"
    );
    outln!(
        out,
        "|---|---|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|"
    );
    for (v, result) in rows {
        match result {
            Ok(r) => outln!(
                out,
                "| {} | {} | {} | {:.0}% | {} | {} / {} / {} | {} / {} / {} | {}..{} | {:.0}% | {} \
                 | {} | {} | {} | {} |",
                v.name,
                v.retry,
                thousands(r.acq_per_s),
                r.busy_pct,
                ratio(r.acq_per_s, baseline),
                millis(r.gaps.p50),
                millis(r.gaps.p99),
                millis(r.gaps.max),
                millis(r.waits.p50),
                millis(r.waits.p99),
                millis(r.waits.max),
                r.per_worker.0,
                r.per_worker.1,
                r.changed_hands_pct,
                r.cmds_per_acq
                    .map_or_else(|| "?".to_owned(), |c| format!("{c:.1}")),
                millis(r.holds.p50),
                r.trouble.gave_up,
                r.trouble.errors,
                r.violations + r.overlaps,
            ),
            Err(e) => outln!(out, "| {} | {} | failed: {} |", v.name, v.retry, cell(e)),
        }
    }
    notes(
        &mut out,
        rows.iter()
            .map(|(v, r)| (v, r.as_ref().map(|r| &r.trouble))),
    );
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
    }
}
