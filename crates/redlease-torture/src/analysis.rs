//! Turns a scenario's record into findings: counts, overlaps with their causes, and the
//! safety checks.
//!
//! Three histories are checked against what DESIGN.md promises, on one shared monotonic clock:
//!
//! - **Validity windows** (guarantee 2): from the moment `acquire` returned a guard until its
//!   deadline (or its release, if earlier), no other guard may be valid. An overlap is
//!   explained only by a fault that removed a lock key (a nemesis `DEL`/`PEXPIRE`, a restart
//!   without persistence) between the two grants; otherwise it is a violation.
//! - **Fence order** (guarantee 3): when a grant's request was sent after another grant had
//!   been returned, its fence must be larger. Only the loss of a fence counter (a restart
//!   without persistence, earlier in the run) explains a smaller or equal one.
//! - **The resource**: no write accepted after another holder read the resource (a stale
//!   write), no lost increment (the counter equals the accepted writes), and every worker's
//!   own count of accepted writes matches the resource's.
//!
//! Critical sections (from BEGIN to END at the resource) may overlap: a lease does not stop a
//! paused or careless process. Each overlap is listed with its cause.

use std::collections::BTreeMap;

use crate::clock::{diff_ms, ms};
use crate::faults::FaultKind;
use crate::oracle::{Holder, WorkerId};
use crate::scenario::{FaultRecord, RunData};

/// After a fault heals, someone must hold the lock again within this long: ten TTLs of the
/// quick profile, five times the workers' acquire timeout.
pub(crate) const RECOVERY_BOUND_MS: f64 = 10_000.0;

/// Tolerance for comparing readings converted between `Instant` and the shared clock.
const CLOCK_SLACK_NS: u64 = 1_000_000;

/// An overlap between two holders, with its cause.
#[derive(Debug, Clone)]
pub(crate) struct Overlap {
    pub(crate) first: (WorkerId, u64),
    pub(crate) second: (WorkerId, u64),
    pub(crate) length_ms: f64,
    pub(crate) cause: String,
    /// Allowed by the documented guarantees (the cause is a fault beyond their assumptions,
    /// or the overlap is of running code, which no lease prevents).
    pub(crate) expected: bool,
}

/// A later grant whose fence was not larger.
#[derive(Debug, Clone)]
pub(crate) struct Backwards {
    pub(crate) earlier: (WorkerId, u64),
    pub(crate) later: (WorkerId, u64),
    pub(crate) cause: String,
    pub(crate) expected: bool,
}

/// One fault as reported.
#[derive(Debug, Clone)]
pub(crate) struct FaultRow {
    pub(crate) at_s: f64,
    pub(crate) kind: FaultKind,
    pub(crate) target: String,
    pub(crate) duration_ms: f64,
    pub(crate) detail: String,
    pub(crate) skipped: Option<String>,
    /// From healing until someone holds the lock again (zero if someone held it then).
    pub(crate) recovery_ms: Option<f64>,
    /// The longest time nobody held a valid lease, from the start of the fault until the
    /// lock was held again after it healed.
    pub(crate) longest_free_ms: Option<f64>,
    /// For holder faults: from the fault to the first grant to another worker.
    pub(crate) takeover_ms: Option<f64>,
    /// Failed acquisitions and releases from the start of the fault until 500 ms after it
    /// healed, by error.
    pub(crate) errors: BTreeMap<String, u64>,
}

/// Everything the report shows about one scenario.
#[derive(Debug, Default)]
pub(crate) struct Findings {
    pub(crate) acq_attempted: u64,
    pub(crate) acq_ok: u64,
    pub(crate) acq_errors: BTreeMap<String, u64>,
    pub(crate) connect_errors: BTreeMap<String, u64>,
    pub(crate) sections: u64,
    pub(crate) reads_fenced: u64,
    pub(crate) writes_attempted: u64,
    pub(crate) writes_accepted: u64,
    pub(crate) writes_rejected: BTreeMap<String, u64>,
    pub(crate) writes_skipped: u64,
    pub(crate) stale_accepted: u64,
    pub(crate) stale_rejected: u64,
    /// Writes accepted after the writer's own lease had ended, with nobody else in between.
    pub(crate) late_accepted: u64,
    pub(crate) value: u64,
    pub(crate) lost_increments: u64,
    pub(crate) count_mismatches: Vec<String>,
    pub(crate) releases: BTreeMap<String, u64>,
    pub(crate) renewals: u64,
    pub(crate) losses: BTreeMap<String, u64>,
    /// Loss signal minus deadline, for holders that were running at their deadline.
    pub(crate) lag_running_ms: Vec<f64>,
    /// The same for holders that were paused (`SIGSTOP`) at their deadline.
    pub(crate) lag_paused_ms: Vec<f64>,
    /// For losses signalled after a nemesis removed the key: signal minus strike.
    pub(crate) after_strike_ms: Vec<f64>,
    pub(crate) faults: Vec<FaultRow>,
    pub(crate) section_overlaps: Vec<Overlap>,
    pub(crate) validity_overlaps: Vec<Overlap>,
    pub(crate) backwards: Vec<Backwards>,
    /// Grants whose fence no node's counter ever reached: a reply meant for another request.
    pub(crate) phantoms: Vec<(WorkerId, u64)>,
    /// Safety violations: each line one finding.
    pub(crate) violations: Vec<String>,
    /// Problems that fail the run without being safety violations.
    pub(crate) failures: Vec<String>,
    /// For the negative control: accepted stale writes plus lost increments.
    pub(crate) bite: u64,
}

/// A pause injected into a worker.
struct Pause {
    worker: WorkerId,
    start: u64,
    heal: u64,
}

/// Analyses a scenario's record.
pub(crate) fn analyse(data: &RunData) -> Findings {
    let record = &data.record;
    let mut f = Findings::default();
    for (event, &count) in &record.events {
        match event.split_once(':') {
            Some(("acq_err", kind)) => {
                f.acq_errors.insert(kind.to_owned(), count);
            }
            Some(("connect_err", kind)) => {
                f.connect_errors.insert(kind.to_owned(), count);
            }
            Some(("rel", outcome)) => {
                f.releases.insert(outcome.to_owned(), count);
            }
            Some(("lost", reason)) => {
                f.losses.insert(reason.to_owned(), count);
            }
            _ => match event.as_str() {
                "acq_attempt" => f.acq_attempted = count,
                "acq_ok" => f.acq_ok = count,
                "renewal" => f.renewals = count,
                "write_skipped_lease_lost" => f.writes_skipped = count,
                _ => {}
            },
        }
    }
    resource(data, &mut f);
    let pauses: Vec<Pause> = data
        .faults
        .iter()
        .filter(|r| {
            matches!(
                r.planned.kind,
                FaultKind::HolderPauseWorking | FaultKind::HolderPauseBeforeWrite
            ) && r.skipped.is_none()
        })
        .filter_map(|r| {
            Some(Pause {
                worker: r.target?,
                start: r.start,
                heal: r.heal,
            })
        })
        .collect();
    losses(data, &pauses, &mut f);
    f.validity_overlaps = validity_overlaps(data);
    f.phantoms = data
        .record
        .holders
        .iter()
        .filter(|h| h.fence == 0 || h.fence > data.max_counter)
        .map(holder_id)
        .collect();
    f.backwards = fence_order(data);
    f.section_overlaps = section_overlaps(data, &pauses, &f.validity_overlaps);
    f.faults = fault_rows(data);
    verdict(data, &mut f);
    f
}

fn resource(data: &RunData, f: &mut Findings) {
    let record = &data.record;
    f.sections = u64::try_from(record.holders.len()).unwrap_or(u64::MAX);
    f.reads_fenced = record.reads_fenced;
    f.value = record.value;
    f.writes_accepted = record.accepted;
    f.lost_increments = record.accepted.saturating_sub(record.value);
    for holder in &record.holders {
        let Some(write) = &holder.write else { continue };
        f.writes_attempted += 1;
        if write.accepted {
            if write.stale {
                f.stale_accepted += 1;
            } else if write.at > holder.window_end() {
                f.late_accepted += 1;
            }
        } else {
            *f.writes_rejected
                .entry(write.reason.to_owned())
                .or_default() += 1;
            if write.stale {
                f.stale_rejected += 1;
            }
        }
    }
    for (worker, inc) in &record.incarnations {
        if let Some(reported) = inc.reported
            && reported != inc.accepted
        {
            f.count_mismatches.push(format!(
                "worker {}.{} counted {reported} accepted writes, the resource {}",
                worker.0, worker.1, inc.accepted
            ));
        }
    }
    f.bite = f.stale_accepted + f.lost_increments;
}

fn losses(data: &RunData, pauses: &[Pause], f: &mut Findings) {
    let strikes: Vec<u64> = data
        .faults
        .iter()
        .filter(|r| !r.planned.kind.keeps_keys() && r.skipped.is_none())
        .map(|r| r.start)
        .collect();
    for holder in &data.record.holders {
        let Some((_, signal)) = &holder.lost else {
            continue;
        };
        let deadline = holder.valid_until;
        let was_paused = pauses.iter().any(|p| {
            p.worker == holder.worker && p.start <= deadline && deadline <= p.heal + 5_000_000
        });
        let lag = diff_ms(*signal, deadline);
        if was_paused {
            f.lag_paused_ms.push(lag);
        } else {
            f.lag_running_ms.push(lag);
        }
        if let Some(strike) = strikes
            .iter()
            .filter(|&&s| s >= holder.t_ret && s <= *signal)
            .max()
        {
            f.after_strike_ms.push(diff_ms(*signal, *strike));
        }
    }
}

fn holder_id(h: &Holder) -> (WorkerId, u64) {
    (h.worker, h.fence)
}

/// Pairs of guards valid at the same time.
fn validity_overlaps(data: &RunData) -> Vec<Overlap> {
    let mut holders: Vec<&Holder> = data.record.holders.iter().collect();
    holders.sort_by_key(|h| h.t_ret);
    let mut out = Vec::new();
    for (i, a) in holders.iter().enumerate() {
        let a_end = a.window_end();
        for b in &holders[i + 1..] {
            if b.t_ret + CLOCK_SLACK_NS >= a_end {
                break;
            }
            if b.worker == a.worker {
                continue;
            }
            let end = a_end.min(b.window_end());
            if end <= b.t_ret + CLOCK_SLACK_NS {
                continue;
            }
            let culprit = data.faults.iter().find(|r| {
                !r.planned.kind.keeps_keys()
                    && r.skipped.is_none()
                    && r.start + 50_000_000 >= a.t_sent
                    && r.start <= b.t_ret
            });
            let (cause, expected) = match culprit {
                Some(r) => (
                    format!(
                        "lock key lost to {} (beyond DESIGN.md guarantee 2's assumptions)",
                        r.planned.kind
                    ),
                    true,
                ),
                None => ("UNEXPLAINED: two guards valid at once".to_owned(), false),
            };
            out.push(Overlap {
                first: holder_id(a),
                second: holder_id(b),
                length_ms: ms(end - b.t_ret),
                cause,
                expected,
            });
        }
    }
    out
}

/// Grants that were sent after another grant returned, yet got a fence that is not larger.
fn fence_order(data: &RunData) -> Vec<Backwards> {
    let mut by_sent: Vec<&Holder> = data.record.holders.iter().collect();
    by_sent.sort_by_key(|h| h.t_sent);
    let mut by_ret: Vec<&Holder> = data.record.holders.iter().collect();
    by_ret.sort_by_key(|h| h.t_ret);
    let mut out = Vec::new();
    let mut best: Option<&Holder> = None;
    let mut next = 0;
    for b in by_sent {
        while next < by_ret.len() && by_ret[next].t_ret + CLOCK_SLACK_NS < b.t_sent {
            let candidate = by_ret[next];
            if best.is_none_or(|x| candidate.fence > x.fence) {
                best = Some(candidate);
            }
            next += 1;
        }
        let Some(a) = best else { continue };
        if a.fence < b.fence {
            continue;
        }
        if a.fence == 0 || a.fence > data.max_counter {
            out.push(Backwards {
                earlier: holder_id(a),
                later: holder_id(b),
                cause: format!(
                    "below a phantom fence {} (no node's counter ever reached it)",
                    a.fence
                ),
                expected: false,
            });
            continue;
        }
        let culprit = data.faults.iter().find(|r| {
            !r.planned.kind.keeps_counters() && r.skipped.is_none() && r.start <= b.t_ret
        });
        let (cause, expected) = match culprit {
            Some(r) => (
                format!(
                    "fence counter lost to {} at {:.1} s (beyond guarantee 3's assumptions)",
                    r.planned.kind,
                    diff_ms(r.start, data.started) / 1000.0
                ),
                true,
            ),
            None => ("UNEXPLAINED: fence went backwards".to_owned(), false),
        };
        out.push(Backwards {
            earlier: holder_id(a),
            later: holder_id(b),
            cause,
            expected,
        });
    }
    out
}

/// Overlapping critical sections (BEGIN..END at the resource), with their causes.
fn section_overlaps(data: &RunData, pauses: &[Pause], validity: &[Overlap]) -> Vec<Overlap> {
    let mut sections: Vec<(&Holder, u64)> = data
        .record
        .holders
        .iter()
        .filter(|h| h.read.is_some())
        .map(|h| (h, h.end_at.unwrap_or(data.finished).max(h.begin_at)))
        .collect();
    sections.sort_by_key(|(h, _)| h.begin_at);
    let mut out = Vec::new();
    for (i, &(a, a_end)) in sections.iter().enumerate() {
        for &(b, b_end) in &sections[i + 1..] {
            if b.begin_at >= a_end {
                break;
            }
            if a.worker == b.worker {
                continue;
            }
            let (cause, expected) = section_cause(data, pauses, validity, a, a_end, b);
            out.push(Overlap {
                first: holder_id(a),
                second: holder_id(b),
                length_ms: ms(a_end.min(b_end) - b.begin_at),
                cause,
                expected,
            });
        }
    }
    out
}

/// Why `a`'s critical section was still open when `b` began.
fn section_cause(
    data: &RunData,
    pauses: &[Pause],
    validity: &[Overlap],
    a: &Holder,
    a_end: u64,
    b: &Holder,
) -> (String, bool) {
    if pauses
        .iter()
        .any(|p| p.worker == a.worker && p.start < b.begin_at && p.heal > a.begin_at)
    {
        return ("holder SIGSTOPped past its lease".into(), true);
    }
    let pair = |o: &&Overlap| {
        (o.first == holder_id(a) && o.second == holder_id(b))
            || (o.first == holder_id(b) && o.second == holder_id(a))
    };
    if let Some(o) = validity.iter().find(pair) {
        return (o.cause.clone(), o.expected);
    }
    if a.died {
        return ("holder killed".into(), true);
    }
    if a.naive && a_end > a.window_end() {
        let planned_past_ttl = a.work_ms * 1_000_000 > a.valid_until.saturating_sub(a.t_ret);
        return (
            if planned_past_ttl {
                "naive holder (no loss check): its work was longer than its lease".into()
            } else {
                "naive holder (no loss check) worked past its lease".into()
            },
            true,
        );
    }
    let during = data
        .faults
        .iter()
        .find(|r| r.skipped.is_none() && r.start <= a_end && r.heal + 100_000_000 >= a.begin_at);
    match during {
        Some(r) => (
            format!(
                "lease ended during {}; holder left after it",
                r.planned.kind
            ),
            true,
        ),
        None => (
            "holder left after its lease ended (no fault: a scheduling stall)".into(),
            true,
        ),
    }
}

/// First grant at or after `t`, optionally by someone other than `not`.
fn first_grant_after(grants: &[(u64, WorkerId)], t: u64, not: Option<WorkerId>) -> Option<u64> {
    grants
        .iter()
        .find(|(at, w)| *at >= t && Some(*w) != not)
        .map(|(at, _)| *at)
}

/// The longest stretch of `[from, to]` covered by none of `windows` (sorted by start).
fn longest_uncovered(windows: &[(u64, u64)], from: u64, to: u64) -> u64 {
    let mut longest = 0;
    let mut covered_until = from;
    for &(start, end) in windows {
        if start >= to {
            break;
        }
        if end <= covered_until {
            continue;
        }
        if start > covered_until {
            longest = longest.max(start - covered_until);
        }
        covered_until = covered_until.max(end);
    }
    if to > covered_until {
        longest = longest.max(to - covered_until);
    }
    longest
}

fn fault_rows(data: &RunData) -> Vec<FaultRow> {
    let mut grants: Vec<(u64, WorkerId)> = data
        .record
        .holders
        .iter()
        .map(|h| (h.t_ret, h.worker))
        .collect();
    grants.sort_unstable();
    let mut windows: Vec<(u64, u64)> = data
        .record
        .holders
        .iter()
        .map(|h| (h.t_ret, h.window_end().max(h.t_ret)))
        .collect();
    windows.sort_unstable();
    data.faults
        .iter()
        .map(|r: &FaultRecord| {
            let held_at_heal = windows.iter().any(|&(s, e)| s <= r.heal && r.heal < e);
            let next = if held_at_heal {
                Some(r.heal)
            } else {
                first_grant_after(&grants, r.heal, None)
            };
            let longest_free_ms = next.map(|next| ms(longest_uncovered(&windows, r.start, next)));
            let takeover_ms = r
                .target
                .and_then(|w| first_grant_after(&grants, r.start, Some(w)))
                .map(|at| diff_ms(at, r.start));
            let mut errors = BTreeMap::new();
            for (at, _, event) in &data.record.timeline {
                if *at >= r.start
                    && *at <= r.heal + 500_000_000
                    && (event.starts_with("acq_err") || event.starts_with("rel:error"))
                {
                    *errors.entry(event.clone()).or_default() += 1;
                }
            }
            FaultRow {
                errors,
                at_s: diff_ms(r.start, data.started) / 1000.0,
                kind: r.planned.kind,
                target: match r.target {
                    Some((slot, inc)) => format!("worker {slot}.{inc}"),
                    None if r.planned.nodes.is_empty() => "-".into(),
                    None => format!("node {:?}", r.planned.nodes),
                },
                duration_ms: diff_ms(r.heal, r.start),
                detail: r.detail.clone(),
                skipped: r.skipped.clone(),
                recovery_ms: next.map(|n| diff_ms(n, r.heal)),
                longest_free_ms,
                takeover_ms,
            }
        })
        .collect()
}

fn verdict(data: &RunData, f: &mut Findings) {
    let fencing = data.record.fencing;
    let mut violations = Vec::new();
    for o in f.validity_overlaps.iter().filter(|o| !o.expected) {
        violations.push(format!(
            "validity windows of {:?} and {:?} overlapped by {:.1} ms",
            o.first, o.second, o.length_ms
        ));
    }
    for b in f.backwards.iter().filter(|b| !b.expected) {
        violations.push(format!(
            "fence went backwards: {:?} was granted after {:?}",
            b.later, b.earlier
        ));
    }
    for (worker, fence) in &f.phantoms {
        violations.push(format!(
            "phantom fence: worker {}.{} was granted fence {fence}, above every node's counter \
             (at most {}): the reply of another request",
            worker.0, worker.1, data.max_counter
        ));
    }
    if fencing && f.stale_accepted > 0 {
        violations.push(format!(
            "{} stale write(s) accepted by the fenced resource",
            f.stale_accepted
        ));
    }
    if fencing && f.lost_increments > 0 {
        violations.push(format!("{} lost increment(s)", f.lost_increments));
    }
    violations.extend(f.count_mismatches.iter().cloned());
    f.violations = violations;

    let mut failures = Vec::new();
    if !data.keys_left.is_empty() {
        failures.push(format!(
            "{} lock key(s) left behind: {:?}",
            data.keys_left.len(),
            data.keys_left
        ));
    }
    for crash in &data.crashes {
        failures.push(format!(
            "worker {}.{} crashed ({}): {}",
            crash.worker.0, crash.worker.1, crash.status, crash.log_tail
        ));
    }
    for worker in &data.hung {
        failures.push(format!(
            "worker {}.{} did not stop within 10 s",
            worker.0, worker.1
        ));
    }
    for (i, row) in f.faults.iter().enumerate() {
        if let Some(recovery) = row.recovery_ms
            && recovery > RECOVERY_BOUND_MS
        {
            failures.push(format!(
                "liveness: nobody held the lock until {:.1} s after fault {} ({}) healed",
                recovery / 1000.0,
                i + 1,
                row.kind
            ));
        }
    }
    failures.extend(data.harness_errors.iter().cloned());
    if !data.record.garbage.is_empty() {
        failures.push(format!(
            "harness: unparsable oracle lines {:?}",
            data.record.garbage
        ));
    }
    if f.writes_accepted < 10 {
        failures.push(format!(
            "too little progress: {} accepted writes",
            f.writes_accepted
        ));
    }
    if !fencing && f.bite == 0 {
        failures.push(
            "negative control did not bite: with fencing off, no stale write was accepted and no increment was lost"
                .into(),
        );
    }
    f.failures = failures;
}
