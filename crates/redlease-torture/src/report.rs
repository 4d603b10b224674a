//! Markdown for one scenario's findings.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use crate::analysis::{Findings, Overlap};
use crate::faults::FaultKind;
use crate::oracle::WorkerId;
use crate::scenario::RunData;

/// The `q`-quantile of `values` (0.0..=1.0), or `None` if empty.
pub(crate) fn quantile(values: &[f64], q: f64) -> Option<f64> {
    if values.is_empty() {
        return None;
    }
    let mut sorted = values.to_vec();
    sorted.sort_by(f64::total_cmp);
    #[allow(
        clippy::cast_possible_truncation,
        clippy::cast_sign_loss,
        clippy::cast_precision_loss
    )]
    let index = ((sorted.len() - 1) as f64 * q).round() as usize;
    sorted.get(index).copied()
}

fn fmt_ms(v: Option<f64>) -> String {
    v.map_or_else(|| "-".into(), |v| format!("{v:.0}"))
}

fn counts(map: &BTreeMap<String, u64>) -> String {
    if map.is_empty() {
        return "none".into();
    }
    map.iter()
        .map(|(k, v)| format!("{k} {v}"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// Whether a scenario passed: no violation and no failure.
pub(crate) fn passed(f: &Findings) -> bool {
    f.violations.is_empty() && f.failures.is_empty()
}

fn describe_topology(data: &RunData) -> String {
    let s = &data.scenario;
    let persistent = s.persistent();
    let nodes = if s.nodes == 1 {
        "1 node (`appendfsync always`)".to_owned()
    } else {
        let with: Vec<String> = (0..s.nodes)
            .filter(|&i| persistent[i])
            .map(|i| i.to_string())
            .collect();
        let without: Vec<String> = (0..s.nodes)
            .filter(|&i| !persistent[i])
            .map(|i| i.to_string())
            .collect();
        format!(
            "{} nodes, Redlock (nodes {} with `appendfsync always`, {} without persistence)",
            s.nodes,
            with.join(","),
            without.join(",")
        )
    };
    format!(
        "{nodes}, {}, {} worker processes, TTL {} ms, renewal {}, fencing check {}, \
         {:.0} % naive iterations, {} s, seed {}. Wall time {:.0} s.",
        if s.proxies {
            "a fault proxy in front of each node"
        } else {
            "no proxies"
        },
        s.workers,
        s.ttl.as_millis(),
        if s.renew { "on" } else { "off" },
        if s.fencing {
            "on"
        } else {
            "**off (negative control)**"
        },
        s.naive_share * 100.0,
        s.duration.as_secs(),
        s.seed,
        data.wall.as_secs_f64()
    )
}

/// The markdown section for one scenario.
#[allow(clippy::too_many_lines)]
pub(crate) fn scenario_section(data: &RunData, f: &Findings) -> String {
    let mut out = String::new();
    let s = &data.scenario;
    let _ = writeln!(out, "## Scenario `{}`\n", s.name);
    let _ = writeln!(out, "{}\n", describe_topology(data));
    let verdict = if passed(f) { "PASS" } else { "FAIL" };
    if s.fencing {
        let _ = writeln!(
            out,
            "**{verdict}**: {} safety violation(s), {} other failure(s).\n",
            f.violations.len(),
            f.failures.len()
        );
    } else {
        let _ = writeln!(
            out,
            "**{verdict}**: the control {} ({} stale write(s) accepted, {} lost increment(s)).\n",
            if f.bite > 0 { "bit" } else { "did NOT bite" },
            f.stale_accepted,
            f.lost_increments
        );
    }

    let _ = writeln!(out, "### Acquisitions, writes and releases\n");
    let _ = writeln!(out, "| what | count |\n|---|---|");
    let rows: Vec<(String, String)> = vec![
        ("acquisitions attempted".into(), f.acq_attempted.to_string()),
        ("acquisitions succeeded".into(), f.acq_ok.to_string()),
        (
            "acquisitions failed, by error".into(),
            counts(&f.acq_errors),
        ),
        (
            "client builds failed, by error".into(),
            counts(&f.connect_errors),
        ),
        (
            "critical sections (grants that reached the resource)".into(),
            f.sections.to_string(),
        ),
        (
            "reads refused by fencing (fence below the largest seen)".into(),
            f.reads_fenced.to_string(),
        ),
        ("writes attempted".into(), f.writes_attempted.to_string()),
        ("writes accepted".into(), f.writes_accepted.to_string()),
        (
            "writes refused by fencing, by rule".into(),
            counts(&f.writes_rejected),
        ),
        (
            "writes skipped: careful holder saw its lease end".into(),
            f.writes_skipped.to_string(),
        ),
        (
            "stale writes (another holder read in between): refused".into(),
            f.stale_rejected.to_string(),
        ),
        (
            "stale writes: **accepted**".into(),
            f.stale_accepted.to_string(),
        ),
        (
            "late writes accepted (own lease over, nobody else in between)".into(),
            f.late_accepted.to_string(),
        ),
        (
            "resource value / lost increments".into(),
            format!("{} / {}", f.value, f.lost_increments),
        ),
        ("releases, by outcome".into(), counts(&f.releases)),
        ("renewals observed".into(), f.renewals.to_string()),
        ("losses signalled, by reason".into(), counts(&f.losses)),
    ];
    for (what, count) in rows {
        let _ = writeln!(out, "| {what} | {count} |");
    }

    let early = f.lag_running_ms.iter().filter(|l| **l < -1.0).count();
    let on_time: Vec<f64> = f
        .lag_running_ms
        .iter()
        .copied()
        .filter(|l| *l >= -1.0)
        .collect();
    let _ = writeln!(
        out,
        "\n**Loss signal** (when `Guard::lost` fired, relative to the guard's deadline): \
         holders running at their deadline: {} signals, {} before the deadline (a renewal \
         found the key gone or taken), the others p50 {} ms / p99 {} ms / max {} ms after it; \
         holders SIGSTOPped at their deadline: {} signals, max {} ms after it (the pause); \
         after a nemesis removed the key: {} signals, p50 {} ms / max {} ms after the strike.\n",
        f.lag_running_ms.len(),
        early,
        fmt_ms(quantile(&on_time, 0.5)),
        fmt_ms(quantile(&on_time, 0.99)),
        fmt_ms(quantile(&on_time, 1.0)),
        f.lag_paused_ms.len(),
        fmt_ms(quantile(&f.lag_paused_ms, 1.0)),
        f.after_strike_ms.len(),
        fmt_ms(quantile(&f.after_strike_ms, 0.5)),
        fmt_ms(quantile(&f.after_strike_ms, 1.0)),
    );

    faults_section(&mut out, data, f);
    overlaps_section(&mut out, f);

    let _ = writeln!(out, "### Safety checks\n");
    let _ = writeln!(out, "| check | result |\n|---|---|");
    let unexplained_validity = f.validity_overlaps.iter().filter(|o| !o.expected).count();
    let unexplained_fences = f.backwards.iter().filter(|b| !b.expected).count();
    let checks: Vec<(&str, String)> = vec![
        (
            "accepted stale writes",
            if s.fencing {
                f.stale_accepted.to_string()
            } else {
                format!(
                    "{} (control: must be > 0 with lost increments)",
                    f.stale_accepted
                )
            },
        ),
        ("lost increments", f.lost_increments.to_string()),
        (
            "phantom fences (above every node's counter: another request's reply)",
            f.phantoms.len().to_string(),
        ),
        (
            "fence went backwards under the assumptions",
            unexplained_fences.to_string(),
        ),
        (
            "fence went backwards after a fence counter was lost (beyond the assumptions)",
            (f.backwards.len() - unexplained_fences).to_string(),
        ),
        (
            "two guards valid at once under the assumptions",
            unexplained_validity.to_string(),
        ),
        (
            "two guards valid at once after a lock key was lost (beyond the assumptions)",
            (f.validity_overlaps.len() - unexplained_validity).to_string(),
        ),
        (
            "workers' own counts of accepted writes that disagree",
            f.count_mismatches.len().to_string(),
        ),
        (
            "lock keys left behind after the run",
            data.keys_left.len().to_string(),
        ),
        (
            "worker crashes / workers that did not stop",
            format!("{} / {}", data.crashes.len(), data.hung.len()),
        ),
    ];
    for (check, result) in checks {
        let _ = writeln!(out, "| {check} | {result} |");
    }
    let _ = writeln!(out);
    for v in f.violations.iter().take(10) {
        let _ = writeln!(out, "- **violation**: {v}");
    }
    if f.violations.len() > 10 {
        let _ = writeln!(
            out,
            "- ... and {} more violation(s)",
            f.violations.len() - 10
        );
    }
    let mut culprits: Vec<(WorkerId, u64)> = f.backwards.iter().map(|b| b.earlier).collect();
    culprits.sort_unstable();
    culprits.dedup();
    if !culprits.is_empty() {
        let _ = writeln!(
            out,
            "- the fences that later grants fell below came from {} grant(s): {}",
            culprits.len(),
            culprits
                .iter()
                .take(10)
                .map(|((slot, inc), fence)| format!("worker {slot}.{inc} fence {fence}"))
                .collect::<Vec<_>>()
                .join(", ")
        );
    }
    for v in &f.failures {
        let _ = writeln!(out, "- **failure**: {v}");
    }
    for b in f.backwards.iter().take(10) {
        let _ = writeln!(
            out,
            "- fence backwards: worker {}.{} got fence {} after worker {}.{} had fence {}: {}",
            b.later.0.0, b.later.0.1, b.later.1, b.earlier.0.0, b.earlier.0.1, b.earlier.1, b.cause
        );
    }
    let _ = writeln!(out);
    out
}

fn faults_section(out: &mut String, data: &RunData, f: &Findings) {
    let _ = writeln!(out, "### Faults\n");
    let _ = writeln!(
        out,
        "| # | at (s) | fault | target | lasted (ms) | detail | errors until 0.5 s after heal | takeover (ms) | held again after heal (ms) | longest time nobody held it (ms) |\n|---|---|---|---|---|---|---|---|---|---|"
    );
    for (i, row) in f.faults.iter().enumerate() {
        let detail = match &row.skipped {
            Some(why) => format!("not injected: {why}"),
            None => row.detail.clone(),
        };
        let kind = if row.kind.beyond_assumptions(data.scenario.nodes) {
            format!("{} (beyond assumptions)", row.kind)
        } else {
            row.kind.to_string()
        };
        let _ = writeln!(
            out,
            "| {} | {:.1} | {kind} | {} | {:.0} | {detail} | {} | {} | {} | {} |",
            i + 1,
            row.at_s,
            row.target,
            row.duration_ms,
            counts(&row.errors),
            fmt_ms(row.takeover_ms),
            fmt_ms(row.recovery_ms),
            fmt_ms(row.longest_free_ms),
        );
    }
    let _ = writeln!(
        out,
        "\nBy kind:\n\n| fault | injected | not injected | held again after heal, max (ms) | longest time nobody held it, max (ms) |\n|---|---|---|---|---|"
    );
    for kind in FaultKind::ALL {
        let rows: Vec<_> = f.faults.iter().filter(|r| r.kind == kind).collect();
        if rows.is_empty() {
            continue;
        }
        let injected: Vec<_> = rows.iter().filter(|r| r.skipped.is_none()).collect();
        let recovery: Vec<f64> = injected.iter().filter_map(|r| r.recovery_ms).collect();
        let gaps: Vec<f64> = injected.iter().filter_map(|r| r.longest_free_ms).collect();
        let _ = writeln!(
            out,
            "| {kind} | {} | {} | {} | {} |",
            injected.len(),
            rows.len() - injected.len(),
            fmt_ms(quantile(&recovery, 1.0)),
            fmt_ms(quantile(&gaps, 1.0)),
        );
    }
    let _ = writeln!(out);
}

fn overlaps_section(out: &mut String, f: &Findings) {
    let _ = writeln!(out, "### Overlapping critical sections\n");
    let _ = writeln!(
        out,
        "{} pair(s) of critical sections overlapped at the resource (BEGIN..END on its clock). \
         A lease cannot stop a paused or careless process; fencing must make the late holder's \
         write harmless.\n",
        f.section_overlaps.len()
    );
    if f.section_overlaps.is_empty() {
        return;
    }
    let mut by_cause: BTreeMap<&str, (usize, f64, bool)> = BTreeMap::new();
    for o in &f.section_overlaps {
        let entry = by_cause.entry(o.cause.as_str()).or_insert((0, 0.0, true));
        entry.0 += 1;
        entry.1 = entry.1.max(o.length_ms);
        entry.2 &= o.expected;
    }
    let _ = writeln!(
        out,
        "| cause | overlaps | longest (ms) | expected |\n|---|---|---|---|"
    );
    for (cause, (count, longest, expected)) in by_cause {
        let _ = writeln!(
            out,
            "| {cause} | {count} | {longest:.0} | {} |",
            if expected { "yes" } else { "**no**" }
        );
    }
    let _ = writeln!(out);
    let unexpected: Vec<&Overlap> = f.validity_overlaps.iter().filter(|o| !o.expected).collect();
    for o in unexpected.iter().take(10) {
        let _ = writeln!(
            out,
            "- validity overlap {:?} / {:?}: {:.1} ms",
            o.first, o.second, o.length_ms
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quantiles() {
        assert_eq!(quantile(&[], 0.5), None);
        assert_eq!(quantile(&[3.0, 1.0, 2.0], 0.5), Some(2.0));
        assert_eq!(quantile(&[3.0, 1.0, 2.0], 1.0), Some(3.0));
        assert_eq!(quantile(&[3.0, 1.0, 2.0], 0.0), Some(1.0));
    }
}
