//! The lock implementations under test, behind one small trait, and the list of variants the
//! suite measures.
//!
//! To measure another configuration of an existing library (redlease with another retry
//! policy or fair mode), add one entry to [`variants`]; S4 runs the variants marked
//! `multinode` on 3 and 5 nodes. A new library needs one
//! module implementing [`Adapter`], one arm in [`Lib`] and one in [`Lib::visit`]. A library in
//! another language runs as worker processes instead, as python-redis-lock does ([`python`]):
//! it gets a method of its own in [`Visit`].

use std::future::Future;
use std::time::Duration;

pub(crate) mod python;
mod raw;
mod redlease;
mod redlock;
mod rslock;
mod wire;

pub(crate) use self::raw::RawConfig;
pub(crate) use self::redlease::RedleaseConfig;
pub(crate) use self::redlock::RedlockConfig;
pub(crate) use self::rslock::RslockConfig;
pub(crate) use self::wire::WireConfig;

/// The lease TTL every benchmark lock is taken with: far longer than any hold, so no lease
/// ever expires during a run.
pub(crate) const TTL: Duration = Duration::from_secs(10);

/// Why an acquire call returned without the lock.
#[derive(Debug)]
pub(crate) enum Failure {
    /// The library's own retry policy ran out (rslock/redlock after their few tries, redlease
    /// at its timeout): the caller has to call again.
    GaveUp,
    /// Anything else: a connection or server error, a rejected argument.
    Error(String),
}

/// One lock library, configured, connected to the servers of one measurement.
///
/// Calls of a [`BLOCKING`](Adapter::BLOCKING) adapter block the calling thread, and the suite
/// runs them on threads of their own; the others are polled on a tokio runtime.
pub(crate) trait Adapter: Sized + Send + Sync + 'static {
    /// What the variant list configures (retry policy and the like).
    type Config: Clone + Send + Sync + 'static;
    /// What a successful acquire hands back, for release.
    type Held: Send + 'static;
    /// Whether calls block the calling thread.
    const BLOCKING: bool;

    /// Connects to the servers at `urls` (one per node).
    fn connect(
        config: &Self::Config,
        urls: &[String],
    ) -> impl Future<Output = Result<Self, String>> + Send;

    /// Takes the lock `name` for [`TTL`], retrying as the library's configuration says.
    fn acquire(&self, name: &str) -> impl Future<Output = Result<Self::Held, Failure>> + Send;

    /// Releases a lock this adapter acquired.
    fn release(&self, held: Self::Held) -> impl Future<Output = Result<(), String>> + Send;
}

/// Starts the message of a row that could not run here (no Python, say), as opposed to one
/// that failed.
pub(crate) const SKIPPED: &str = "skipped: ";

/// Something that runs with any lock implementation: a scenario, given a variant's
/// configuration.
pub(crate) trait Visit {
    /// What the visit produces.
    type Out;
    /// Runs with adapter type `A` configured by `config`.
    fn visit<A: Adapter>(self, config: &A::Config) -> Self::Out;
    /// Runs with python-redis-lock, in worker processes.
    fn visit_python(self) -> Self::Out;
}

/// A library and its configuration.
#[derive(Debug, Clone)]
pub(crate) enum Lib {
    /// Bare `redis` commands, no lock logic: the round-trip limit.
    Raw(RawConfig),
    /// Bare `redis` commands with a published release: the notified handoff's limit.
    Wire(WireConfig),
    /// This workspace's library.
    Redlease(RedleaseConfig),
    /// `rslock` 0.10 (async, tokio, redis 1.x).
    Rslock(RslockConfig),
    /// `redlock` 2.0 (redlock-rs, blocking, redis 0.23).
    Redlock(RedlockConfig),
    /// python-redis-lock 4.0 (Python, one process per worker) at its defaults: waiting on its
    /// BLPOP signal list, `expire` = [`TTL`], no auto-renewal.
    Python,
}

impl Lib {
    /// Calls `v.visit` with the adapter type of this library.
    pub(crate) fn visit<V: Visit>(&self, v: V) -> V::Out {
        match self {
            Self::Raw(c) => v.visit::<raw::Raw>(c),
            Self::Redlease(c) => v.visit::<redlease::Redlease>(c),
            Self::Rslock(c) => v.visit::<rslock::Rslock>(c),
            Self::Redlock(c) => v.visit::<redlock::Redlock>(c),
            Self::Wire(c) => v.visit::<wire::Wire>(c),
            Self::Python => v.visit_python(),
        }
    }
}

impl Lib {
    /// Whether the library spreads one lock over several independent nodes (Redlock), so that
    /// S4 can run its contention rows on several nodes. redlease's fair mode needs one node.
    pub(crate) fn fans_out(&self) -> bool {
        match self {
            Self::Redlease(c) => !c.fair,
            Self::Rslock(_) | Self::Redlock(_) => true,
            Self::Raw(_) | Self::Wire(_) | Self::Python => false,
        }
    }
}

/// Which scenarios a variant takes part in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Runs {
    /// S1 and S2. Off for variants that differ from another only in their retry policy, which
    /// an uncontended lock never uses.
    pub(crate) uncontended: bool,
    /// S3.
    pub(crate) contended: bool,
    /// S4: S1 and S2 on several nodes (S3's contention there runs for the contended variants
    /// whose library fans out). Off for `raw`, which talks to one node only.
    pub(crate) multinode: bool,
}

/// Every scenario.
const ALL: Runs = Runs {
    uncontended: true,
    contended: true,
    multinode: true,
};
/// Single-node scenarios only.
const SINGLE_NODE: Runs = Runs {
    uncontended: true,
    contended: true,
    multinode: false,
};
/// Only the contention scenario.
const CONTENDED: Runs = Runs {
    uncontended: false,
    contended: true,
    multinode: false,
};

/// One row of the report: a library, its settings, and how many nodes it runs on.
#[derive(Debug, Clone)]
pub(crate) struct Variant {
    /// Row label, unique.
    pub(crate) name: &'static str,
    /// How it waits for a taken lock, for the report.
    pub(crate) retry: &'static str,
    /// Redis servers it is given (its quorum is a majority of them).
    pub(crate) nodes: usize,
    /// Scenarios it takes part in.
    pub(crate) runs: Runs,
    /// The library and its configuration.
    pub(crate) lib: Lib,
}

impl Variant {
    /// The same variant on `nodes` servers.
    pub(crate) fn on_nodes(&self, nodes: usize) -> Self {
        Self {
            nodes,
            ..self.clone()
        }
    }
}

/// How long a waiter with an otherwise unbounded retry policy keeps trying: far longer than
/// any wait a run produces, but finite.
const LONG_WAIT: Duration = Duration::from_mins(1);

/// The longest wait between attempts of the notification-driven variants: they retry when a
/// release is published, and poll only this rarely.
pub(super) const FALLBACK_POLL: Duration = Duration::from_secs(1);

/// The name of the variant all others are compared with.
pub(crate) const BASELINE: &str = "rslock-default";
/// The other polling peer at its defaults.
pub(crate) const REDLOCK_DEFAULT: &str = "redlock-default";
/// rslock polling every 0–1 ms: the polling peer a notified handoff must match.
pub(crate) const RSLOCK_TUNED: &str = "rslock-tuned";
/// The name of the raw round-trip limit.
pub(crate) const RAW: &str = "raw";
/// The name of the notified handoff with bare commands.
pub(crate) const WIRE: &str = "wire";
/// The name of python-redis-lock's row.
pub(crate) const PYTHON: &str = "python-redis-lock";
/// redlease as the S1/S2/S4 rows measure it.
pub(crate) const REDLEASE: &str = "redlease";
/// redlease waiting on release notifications only (polling once a second as a fallback).
pub(crate) const REDLEASE_NOTIFY: &str = "redlease-notify";
/// redlease in fair (FIFO) mode, with the same fallback.
pub(crate) const REDLEASE_FAIR: &str = "redlease-fair";

/// Every variant the suite knows, in report order, on `nodes` servers each.
pub(crate) fn variants(nodes: usize) -> Vec<Variant> {
    let ms = Duration::from_millis;
    vec![
        Variant {
            name: RAW,
            retry: "SET NX again at once (busy poll)",
            nodes,
            runs: SINGLE_NODE,
            lib: Lib::Raw(RawConfig),
        },
        Variant {
            name: REDLEASE,
            retry: "release notification; else exponential 1–20 ms, jitter (60 s timeout)",
            nodes,
            runs: ALL,
            lib: Lib::Redlease(RedleaseConfig {
                retry: ::redlease::Retry::exponential(ms(1), ms(20)).timeout(LONG_WAIT),
                fair: false,
            }),
        },
        Variant {
            name: "redlease-default",
            retry: "release notification; else default exponential 10–200 ms, jitter (10 s \
                    timeout)",
            nodes,
            runs: CONTENDED,
            lib: Lib::Redlease(RedleaseConfig {
                retry: ::redlease::Retry::default(),
                fair: false,
            }),
        },
        Variant {
            name: REDLEASE_NOTIFY,
            retry: "release notification; else poll every 1 s (60 s timeout)",
            nodes,
            runs: CONTENDED,
            lib: Lib::Redlease(RedleaseConfig {
                retry: ::redlease::Retry::fixed(FALLBACK_POLL).timeout(LONG_WAIT),
                fair: false,
            }),
        },
        Variant {
            name: REDLEASE_FAIR,
            retry: "fair (FIFO queue); release notification; else poll every 1 s (60 s timeout)",
            nodes,
            runs: CONTENDED,
            lib: Lib::Redlease(RedleaseConfig {
                retry: ::redlease::Retry::fixed(FALLBACK_POLL).timeout(LONG_WAIT),
                fair: true,
            }),
        },
        Variant {
            name: BASELINE,
            retry: "default: 3 tries, 0–199 ms pauses",
            nodes,
            runs: ALL,
            lib: Lib::Rslock(RslockConfig::DEFAULT),
        },
        Variant {
            name: RSLOCK_TUNED,
            retry: "1000 tries, 0–1 ms pauses",
            nodes,
            runs: CONTENDED,
            lib: Lib::Rslock(RslockConfig::TUNED),
        },
        Variant {
            name: REDLOCK_DEFAULT,
            retry: "default: 3 tries, 0–199 ms pauses",
            nodes,
            runs: ALL,
            lib: Lib::Redlock(RedlockConfig::DEFAULT),
        },
        Variant {
            name: "redlock-tuned",
            retry: "1000 tries, 0–1 ms pauses",
            nodes,
            runs: CONTENDED,
            lib: Lib::Redlock(RedlockConfig::TUNED),
        },
        Variant {
            name: WIRE,
            retry: "bare commands: SET NX; else wait for the release PUBLISH on a subscribed \
                    channel (every waiter woken), SET NX again",
            nodes,
            runs: CONTENDED,
            lib: Lib::Wire(WireConfig),
        },
        Variant {
            name: PYTHON,
            retry: "default: BLPOP on the signal list each release pushes to (one waiter \
                    woken, longest waiting first); a process per worker",
            nodes,
            runs: CONTENDED,
            lib: Lib::Python,
        },
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_unique_and_the_references_exist() {
        let all = variants(1);
        let mut names: Vec<_> = all.iter().map(|v| v.name).collect();
        names.sort_unstable();
        names.dedup();
        assert_eq!(names.len(), all.len());
        for reference in [RAW, BASELINE, REDLOCK_DEFAULT, REDLEASE] {
            let v = all.iter().find(|v| v.name == reference).expect("present");
            assert!(v.runs.uncontended && v.runs.contended, "{reference}");
        }
        for contender in [REDLEASE_NOTIFY, REDLEASE_FAIR, WIRE, PYTHON] {
            let v = all.iter().find(|v| v.name == contender).expect("present");
            assert!(v.runs.contended && !v.runs.multinode, "{contender}");
        }
    }

    #[test]
    fn several_nodes_only_for_libraries_that_use_them() {
        for v in variants(1).iter().filter(|v| v.runs.multinode) {
            assert!(!matches!(v.lib, Lib::Raw(_)), "{}", v.name);
            assert!(v.runs.uncontended, "{}", v.name);
            if let Lib::Redlease(c) = &v.lib {
                assert!(!c.fair, "fair mode needs one node: {}", v.name);
            }
        }
        for v in variants(1).iter().filter(|v| v.lib.fans_out()) {
            assert!(
                matches!(v.lib, Lib::Redlease(_) | Lib::Rslock(_) | Lib::Redlock(_)),
                "{}",
                v.name
            );
        }
        let v = variants(1).remove(1).on_nodes(5);
        assert_eq!((v.name, v.nodes), (REDLEASE, 5));
    }
}
