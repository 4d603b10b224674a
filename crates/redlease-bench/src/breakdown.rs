//! H1: where one handoff's time goes. redlease emits `tracing` events (target
//! `redlease::handoff`) at each step of a handoff; during an S3 run this module records them
//! with the time and the worker they happened on, then splits every handoff between two
//! workers into: release sent → release replied (the holder's round trip), release sent →
//! release message received by the next holder's subscriber, → its waiting task woken, → its
//! retry sent, → its grant returned.

use std::cell::Cell;
use std::fmt::Write as _;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Mutex, OnceLock, PoisonError};
use std::time::{Duration, Instant};

use tracing::field::{Field, Visit};
use tracing::span::{Attributes, Id, Record};
use tracing::{Event, Metadata, Subscriber};

use crate::stats::{Summary, nanos};

/// The library's steps, as its events' messages name them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Step {
    ReleaseSent,
    ReleaseReplied,
    MessageReceived,
    Woken,
    AttemptSent,
    Granted,
}

impl Step {
    fn from_message(message: &str) -> Option<Self> {
        Some(match message {
            "release sent" => Self::ReleaseSent,
            "release replied" => Self::ReleaseReplied,
            "release message received" => Self::MessageReceived,
            "waiter woken" => Self::Woken,
            "attempt sent" => Self::AttemptSent,
            "lease granted" => Self::Granted,
            _ => return None,
        })
    }
}

/// One recorded event: which worker, which step, when.
#[derive(Debug, Clone, Copy)]
struct Mark {
    worker: usize,
    step: Step,
    at: Instant,
}

thread_local! {
    /// The S3 worker this thread runs (each worker has a thread and a runtime of its own).
    static WORKER: Cell<Option<usize>> = const { Cell::new(None) };
}

/// Says which worker runs on this thread, so its events can be told apart.
pub(crate) fn enter_worker(id: usize) {
    WORKER.with(|w| w.set(Some(id)));
}

/// The recorder: a `tracing` subscriber that keeps the handoff events while switched on.
struct Recorder {
    on: AtomicBool,
    marks: Mutex<Vec<Mark>>,
}

fn recorder() -> &'static Recorder {
    static RECORDER: OnceLock<Recorder> = OnceLock::new();
    RECORDER.get_or_init(|| Recorder {
        on: AtomicBool::new(false),
        marks: Mutex::new(Vec::new()),
    })
}

/// Finds the `message` field of an event.
struct MessageOf(Option<Step>);

impl Visit for MessageOf {
    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        if field.name() == "message" {
            self.0 = Step::from_message(&format!("{value:?}"));
        }
    }

    fn record_str(&mut self, field: &Field, value: &str) {
        if field.name() == "message" {
            self.0 = Step::from_message(value);
        }
    }
}

impl Subscriber for &'static Recorder {
    fn enabled(&self, metadata: &Metadata<'_>) -> bool {
        metadata.target() == "redlease::handoff"
    }

    fn new_span(&self, _: &Attributes<'_>) -> Id {
        Id::from_u64(1)
    }

    fn record(&self, _: &Id, _: &Record<'_>) {}

    fn record_follows_from(&self, _: &Id, _: &Id) {}

    fn event(&self, event: &Event<'_>) {
        let at = Instant::now();
        if !self.on.load(Ordering::Relaxed) {
            return;
        }
        let Some(worker) = WORKER.with(Cell::get) else {
            return;
        };
        let mut message = MessageOf(None);
        event.record(&mut message);
        if let Some(step) = message.0 {
            self.marks
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .push(Mark { worker, step, at });
        }
    }

    fn enter(&self, _: &Id) {}

    fn exit(&self, _: &Id) {}
}

/// Installs the recorder as the process's subscriber (once) and starts recording afresh.
pub(crate) fn start() -> Result<(), String> {
    static INSTALLED: OnceLock<bool> = OnceLock::new();
    let installed =
        *INSTALLED.get_or_init(|| tracing::subscriber::set_global_default(recorder()).is_ok());
    if !installed {
        return Err("another tracing subscriber is installed".to_owned());
    }
    recorder()
        .marks
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .clear();
    recorder().on.store(true, Ordering::Relaxed);
    Ok(())
}

/// The segments of the handoffs recorded since [`start`].
#[derive(Debug, Default)]
pub(crate) struct Breakdown {
    /// Handoffs between two workers.
    pub(crate) handoffs: u64,
    /// Of those, the next holder was woken by the release's message.
    pub(crate) notified: u64,
    /// Of the notified, the next holder sent one more attempt before its grant returned.
    pub(crate) retried: u64,
    /// Release sent → release replied (the releasing holder's round trip).
    pub(crate) release_rtt: Summary,
    /// Release sent → the hand-off message reached the next holder's subscriber task.
    pub(crate) to_message: Summary,
    /// Message received → the waiting task woke.
    pub(crate) to_woken: Summary,
    /// Task woke → grant returned.
    pub(crate) to_grant: Summary,
    /// Release sent → grant returned (the whole handoff, notified ones).
    pub(crate) total: Summary,
}

/// Stops recording and splits the handoffs recorded since [`start`].
pub(crate) fn finish() -> Breakdown {
    recorder().on.store(false, Ordering::Relaxed);
    let mut marks = std::mem::take(
        &mut *recorder()
            .marks
            .lock()
            .unwrap_or_else(PoisonError::into_inner),
    );
    marks.sort_by_key(|m| m.at);
    let mut out = Breakdown::default();
    let mut samples: [Vec<u64>; 5] = Default::default();
    for (i, release) in marks.iter().enumerate() {
        if release.step != Step::ReleaseSent {
            continue;
        }
        let later = &marks[i + 1..];
        // The next grant after this release is the next holder's (one holder at a time).
        let Some(granted) = later.iter().find(|m| m.step == Step::Granted) else {
            continue;
        };
        if granted.worker == release.worker {
            continue;
        }
        out.handoffs += 1;
        let next = granted.worker;
        let between = |step: Step, after: Instant| {
            later
                .iter()
                .find(|m| m.worker == next && m.step == step && m.at >= after && m.at <= granted.at)
                .map(|m| m.at)
        };
        if let Some(replied) = later
            .iter()
            .find(|m| m.worker == release.worker && m.step == Step::ReleaseReplied)
        {
            samples[0].push(nanos(replied.at - release.at));
        }
        let Some(received) = between(Step::MessageReceived, release.at) else {
            continue;
        };
        let Some(woke) = between(Step::Woken, received) else {
            continue;
        };
        out.notified += 1;
        if between(Step::AttemptSent, woke).is_some() {
            out.retried += 1;
        }
        samples[1].push(nanos(received - release.at));
        samples[2].push(nanos(woke - received));
        samples[3].push(nanos(granted.at - woke));
        samples[4].push(nanos(granted.at - release.at));
    }
    let [rtt, message, woken, grant, total] = &mut samples;
    out.release_rtt = Summary::of(rtt);
    out.to_message = Summary::of(message);
    out.to_woken = Summary::of(woken);
    out.to_grant = Summary::of(grant);
    out.total = Summary::of(total);
    out
}

/// The breakdown as a markdown table section.
pub(crate) fn table(title: &str, rows: &[(String, Result<Breakdown, String>)]) -> String {
    let mut out = format!(
        "## {title}\n\nEach handoff between two workers split at the library's own `tracing` events \
         (target `redlease::handoff`); p50 / p99 in µs over the notified handoffs (the next \
         holder was woken by the release's hand-off message). \"Retried\": the next holder \
         sent an attempt after the wake-up (its claim had to be confirmed first).\n\n\
         | variant | handoffs | notified | retried | release sent → replied | \
         → message at next holder | → its task woken | → grant returned | release sent → granted |\n\
         |---|--:|--:|--:|--:|--:|--:|--:|--:|\n"
    );
    for (name, result) in rows {
        match result {
            Ok(b) => {
                let cell = |s: &Summary| format!("{} / {}", micros(s.p50), micros(s.p99));
                let _ = writeln!(
                    out,
                    "| {name} | {} | {} | {} | {} | {} | {} | {} | {} |",
                    b.handoffs,
                    b.notified,
                    b.retried,
                    cell(&b.release_rtt),
                    cell(&b.to_message),
                    cell(&b.to_woken),
                    cell(&b.to_grant),
                    cell(&b.total),
                );
            }
            Err(e) => {
                let _ = writeln!(out, "| {name} | failed: {e} | | | | | | | |");
            }
        }
    }
    out
}

fn micros(ns: u64) -> String {
    format!("{}", Duration::from_nanos(ns).as_micros())
}
