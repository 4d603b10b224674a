//! What redlease tells an operator: counters and histograms through the `metrics` facade
//! (cargo feature `metrics`; without it every recording compiles to nothing), and a `tracing`
//! span per operation. Every metric name, label and span is defined here, once; the crate docs
//! ("Metrics") list them.
//!
//! Spans carry the lock's name and fence, never its token: the token is what proves ownership
//! to the servers, and logs are read by more people than may release locks.

use std::time::Duration;

use tracing::Span;

use crate::error::Error;
use crate::outcome::{Lost, ReleaseOutcome};

const ACQUIRE_SECONDS: &str = "redlease_acquire_seconds";
const ACQUIRE_WAIT_SECONDS: &str = "redlease_acquire_wait_seconds";
const CONTENDED_ATTEMPTS: &str = "redlease_contended_attempts_total";
const ACQUISITIONS: &str = "redlease_acquisitions_total";
const RELEASES: &str = "redlease_releases_total";
const LEASES_LOST: &str = "redlease_leases_lost_total";
const RENEWAL_ROUNDS: &str = "redlease_renewal_rounds_total";
const RENEWAL_ROUND_SECONDS: &str = "redlease_renewal_round_seconds";

/// Records one client's metrics; cheap to copy into every lease.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct Meter {
    /// Label each lock's metrics with its name (`ClientBuilder::metrics_per_name`).
    #[cfg_attr(not(feature = "metrics"), expect(dead_code, reason = "no recorder"))]
    per_name: bool,
}

impl Meter {
    pub(crate) fn new(per_name: bool) -> Self {
        #[cfg(feature = "metrics")]
        describe();
        Self { per_name }
    }

    /// An acquire (or try-acquire) ended: `result` is the fence or the error, `elapsed` the
    /// whole call, `waited` the part of it spent between attempts.
    pub(crate) fn acquire_finished(
        self,
        name: &str,
        result: &Result<u64, Error>,
        elapsed: Duration,
        waited: Duration,
    ) {
        let result_label = match result {
            Ok(_) => "acquired",
            Err(Error::Contended { .. }) => "contended",
            Err(Error::TimedOut { .. }) => "timed_out",
            Err(_) => "failed",
        };
        self.observe(
            ACQUIRE_SECONDS,
            Some(name),
            Some(("result", result_label)),
            elapsed,
        );
        if !waited.is_zero() {
            self.observe(ACQUIRE_WAIT_SECONDS, Some(name), None, waited);
        }
        if result.is_ok() {
            self.count(ACQUISITIONS, Some(name), None);
        }
    }

    /// An attempt found the lock held by someone else.
    pub(crate) fn contended(self, name: &str) {
        self.count(CONTENDED_ATTEMPTS, Some(name), None);
    }

    /// A release the holder waited for ended so; `None`: a dropped guard's release, sent in
    /// the background.
    pub(crate) fn released(self, name: &str, outcome: Option<&Result<ReleaseOutcome, Error>>) {
        let outcome_label = match outcome {
            None => "in_background",
            Some(Ok(ReleaseOutcome::Released)) => "released",
            Some(Ok(ReleaseOutcome::Expired)) => "expired",
            Some(Ok(ReleaseOutcome::HeldByOther)) => "held_by_other",
            Some(Err(_)) => "failed",
        };
        self.count(RELEASES, Some(name), Some(("outcome", outcome_label)));
    }

    /// A lease was declared lost (a release is not a loss).
    pub(crate) fn lost(self, name: &str, reason: Lost) {
        let reason_label = match reason {
            Lost::Released => return,
            Lost::Expired => "expired",
            Lost::HeldByOther => "held_by_other",
            Lost::Unreachable => "unreachable",
            Lost::HoldCapReached => "hold_cap_reached",
        };
        self.count(LEASES_LOST, Some(name), Some(("reason", reason_label)));
    }

    /// A renewal round (one batch of due leases, over every backend) took `elapsed`. Rounds
    /// carry many names, so they have no name label.
    pub(crate) fn renewal_round(self, elapsed: Duration) {
        self.count(RENEWAL_ROUNDS, None, None);
        self.observe(RENEWAL_ROUND_SECONDS, None, None, elapsed);
    }

    #[cfg_attr(
        not(feature = "metrics"),
        expect(unused_variables, clippy::unused_self, reason = "no recorder")
    )]
    fn count(self, metric: &'static str, name: Option<&str>, label: Option<Label>) {
        #[cfg(feature = "metrics")]
        metrics::counter!(metric, self.labels(name, label)).increment(1);
    }

    #[cfg_attr(
        not(feature = "metrics"),
        expect(unused_variables, clippy::unused_self, reason = "no recorder")
    )]
    fn observe(self, metric: &'static str, name: Option<&str>, label: Option<Label>, d: Duration) {
        #[cfg(feature = "metrics")]
        metrics::histogram!(metric, self.labels(name, label)).record(d.as_secs_f64());
    }

    #[cfg(feature = "metrics")]
    fn labels(self, name: Option<&str>, label: Option<Label>) -> Vec<metrics::Label> {
        let name = name
            .filter(|_| self.per_name)
            .map(|name| metrics::Label::new("name", name.to_owned()));
        label
            .map(|(key, value)| metrics::Label::from_static_parts(key, value))
            .into_iter()
            .chain(name)
            .collect()
    }
}

/// A label whose key and value are both fixed: `("result", "acquired")`.
type Label = (&'static str, &'static str);

/// Tells the recorder what each metric means and its unit (the exporter shows them as help
/// text); harmless to repeat.
#[cfg(feature = "metrics")]
fn describe() {
    use metrics::{Unit, describe_counter, describe_histogram};
    describe_histogram!(
        ACQUIRE_SECONDS,
        Unit::Seconds,
        "Time an acquire or try_acquire took, by result (acquired, contended, timed_out, failed)."
    );
    describe_histogram!(
        ACQUIRE_WAIT_SECONDS,
        Unit::Seconds,
        "Time an acquire spent waiting between attempts (acquires that waited)."
    );
    describe_counter!(
        CONTENDED_ATTEMPTS,
        "Attempts that found the lock held by another owner."
    );
    describe_counter!(ACQUISITIONS, "Leases granted.");
    describe_counter!(
        RELEASES,
        "Releases, by outcome (released, expired, held_by_other, failed, in_background)."
    );
    describe_counter!(
        LEASES_LOST,
        "Leases declared lost, by reason (expired, held_by_other, unreachable, hold_cap_reached)."
    );
    describe_counter!(RENEWAL_ROUNDS, "Renewal rounds (one batch of due leases).");
    describe_histogram!(
        RENEWAL_ROUND_SECONDS,
        Unit::Seconds,
        "Time a renewal round took."
    );
}

/// The span of one acquire of `name`; its fence is recorded when granted ([`granted`]).
pub(crate) fn acquire_span(name: &str) -> Span {
    tracing::info_span!("redlease.acquire", name, fence = tracing::field::Empty)
}

/// Records the fence of a granted acquire on its span.
pub(crate) fn granted(span: &Span, fence: u64) {
    span.record("fence", fence);
}

/// The span of releasing the lease `name` with this fence.
pub(crate) fn release_span(name: &str, fence: u64) -> Span {
    tracing::info_span!("redlease.release", name, fence)
}

/// The span of extending the lease `name` with this fence.
pub(crate) fn extend_span(name: &str, fence: u64) -> Span {
    tracing::info_span!("redlease.extend", name, fence)
}

/// The span of one renewal round over `leases` leases (names and fences are the leases').
pub(crate) fn renewal_span(leases: usize) -> Span {
    tracing::info_span!("redlease.renewal", leases)
}
