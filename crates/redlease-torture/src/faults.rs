//! The fault catalogue and the seeded schedule.
//!
//! A schedule is a list of faults with their start times, durations and target nodes, drawn
//! from the seed before the run starts: the same seed gives the same schedule. (Which worker
//! a holder fault hits depends on who holds the lock at that moment, and the interleaving of
//! the processes is up to the operating system: those are not reproducible.)

use std::fmt;
use std::time::Duration;

/// One kind of fault.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub(crate) enum FaultKind {
    /// Pause (`SIGSTOP`) the holder while it works, for 2–3 TTLs, then resume it.
    HolderPauseWorking,
    /// Pause (`SIGSTOP`) the holder between its lease check and its write, for 2–3 TTLs.
    HolderPauseBeforeWrite,
    /// Kill (`SIGKILL`) the holder (a new worker process takes its slot).
    HolderKill,
    /// Kill a node with `appendfsync always` and restart it at once.
    NodeRestartPersistent,
    /// Kill a node without persistence and restart it (empty) after more than one TTL.
    NodeRestartEmptyDelayed,
    /// Kill a node without persistence and restart it (empty) at once. Beyond the assumptions.
    NodeRestartEmptyFast,
    /// Pause (`SIGSTOP`) a minority of nodes (the only node, with one).
    NodePause,
    /// `PEXPIRE lock 1` on a minority of nodes (the only node, with one) while someone holds.
    NemesisPexpire,
    /// `DEL lock` on a minority of nodes (the only node, with one) while someone holds.
    NemesisDel,
    /// `DEL lock` on a majority of nodes while someone holds. Beyond the assumptions.
    NemesisMajority,
    /// The proxies of a minority (or the only node) delay every chunk.
    ProxyDelay,
    /// The proxies forward each connection's next request, then cut it before the reply.
    ProxyLostReply,
    /// The proxies forward requests and drop every reply.
    ProxyDropReplies,
    /// The proxies hold all traffic, then deliver it late.
    ProxyHold,
    /// The proxies cut every open connection once.
    ProxyCut,
    /// The proxies refuse and cut connections to a minority (or the only node).
    PartitionMinority,
    /// The proxies refuse and cut connections to a majority of nodes.
    PartitionMajority,
}

impl FaultKind {
    /// Every kind, in report order.
    pub(crate) const ALL: [Self; 17] = [
        Self::HolderPauseWorking,
        Self::HolderPauseBeforeWrite,
        Self::HolderKill,
        Self::NodeRestartPersistent,
        Self::NodeRestartEmptyDelayed,
        Self::NodeRestartEmptyFast,
        Self::NodePause,
        Self::NemesisPexpire,
        Self::NemesisDel,
        Self::NemesisMajority,
        Self::ProxyDelay,
        Self::ProxyLostReply,
        Self::ProxyDropReplies,
        Self::ProxyHold,
        Self::ProxyCut,
        Self::PartitionMinority,
        Self::PartitionMajority,
    ];

    /// The short name used in reports and on the command line.
    pub(crate) fn name(self) -> &'static str {
        match self {
            Self::HolderPauseWorking => "holder-pause",
            Self::HolderPauseBeforeWrite => "holder-pause-before-write",
            Self::HolderKill => "holder-kill",
            Self::NodeRestartPersistent => "node-restart-persistent",
            Self::NodeRestartEmptyDelayed => "node-restart-empty-delayed",
            Self::NodeRestartEmptyFast => "node-restart-empty-fast",
            Self::NodePause => "node-pause",
            Self::NemesisPexpire => "nemesis-pexpire",
            Self::NemesisDel => "nemesis-del",
            Self::NemesisMajority => "nemesis-del-majority",
            Self::ProxyDelay => "proxy-delay",
            Self::ProxyLostReply => "proxy-lost-reply",
            Self::ProxyDropReplies => "proxy-drop-replies",
            Self::ProxyHold => "proxy-hold",
            Self::ProxyCut => "proxy-cut",
            Self::PartitionMinority => "partition-minority",
            Self::PartitionMajority => "partition-majority",
        }
    }

    /// Whether the kind needs the fault proxies.
    pub(crate) fn needs_proxy(self) -> bool {
        matches!(
            self,
            Self::ProxyDelay
                | Self::ProxyLostReply
                | Self::ProxyDropReplies
                | Self::ProxyHold
                | Self::ProxyCut
                | Self::PartitionMinority
                | Self::PartitionMajority
        )
    }

    /// Whether the kind makes sense with `nodes` nodes.
    pub(crate) fn fits(self, nodes: usize) -> bool {
        match self {
            // One node is started with persistence, so it cannot come back empty.
            Self::NodeRestartEmptyDelayed
            | Self::NodeRestartEmptyFast
            | Self::NemesisMajority
            | Self::PartitionMajority => nodes > 1,
            _ => true,
        }
    }

    /// Whether lock keys survive the fault on enough nodes for DESIGN.md's guarantee 2
    /// (non-overlapping validity windows). `false` means the fault is beyond its assumptions:
    /// a key deleted by someone else, or data lost by a restart without persistence.
    /// A restart without persistence delayed past the TTL keeps it (Redlock's delayed
    /// restart: every lease that counted on the node has ended by then).
    pub(crate) fn keeps_keys(self) -> bool {
        !matches!(
            self,
            Self::NemesisPexpire
                | Self::NemesisDel
                | Self::NemesisMajority
                | Self::NodeRestartEmptyFast
        )
    }

    /// Whether fence counters survive (DESIGN.md's guarantee 3 needs the counter key to
    /// survive). A restart without persistence loses the node's counter for good.
    pub(crate) fn keeps_counters(self) -> bool {
        !matches!(
            self,
            Self::NodeRestartEmptyDelayed | Self::NodeRestartEmptyFast
        )
    }

    /// Whether the fault is one the documented assumptions exclude altogether.
    pub(crate) fn beyond_assumptions(self, nodes: usize) -> bool {
        match self {
            Self::NodeRestartEmptyFast | Self::NemesisMajority => true,
            // On the only node, the nemesis deletes the key everywhere.
            Self::NemesisDel | Self::NemesisPexpire => nodes == 1,
            _ => false,
        }
    }
}

impl fmt::Display for FaultKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// A fault the schedule asks for.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Planned {
    /// Offset from the start of the run.
    pub(crate) at: Duration,
    pub(crate) kind: FaultKind,
    /// How long the fault lasts (zero for instantaneous faults).
    pub(crate) duration: Duration,
    /// The nodes it targets (empty for holder faults).
    pub(crate) nodes: Vec<usize>,
    /// The proxy delay, for [`FaultKind::ProxyDelay`].
    pub(crate) delay: Duration,
}

/// How a run's schedule is drawn.
#[derive(Debug, Clone)]
pub(crate) struct Plan {
    pub(crate) seed: u64,
    pub(crate) nodes: usize,
    /// Nodes started with persistence.
    pub(crate) persistent: Vec<bool>,
    pub(crate) ttl: Duration,
    pub(crate) duration: Duration,
    /// Each of these happens at least once (in a seeded order), if time allows.
    pub(crate) required: Vec<FaultKind>,
    /// Further faults are drawn from these.
    pub(crate) pool: Vec<FaultKind>,
    /// No fault in the first `warmup` nor in the last `tail` of the run.
    pub(crate) warmup: Duration,
    pub(crate) tail: Duration,
}

impl Plan {
    /// Draws the schedule. Faults never overlap; after each one heals there is a quiet gap
    /// longer than the longest critical section, so recovery can be measured.
    pub(crate) fn schedule(&self) -> Vec<Planned> {
        let mut rng = fastrand::Rng::with_seed(self.seed);
        let mut required = self.required.clone();
        rng.shuffle(&mut required);
        required.reverse();
        let mut out = Vec::new();
        let mut t = self.warmup;
        let end = self.duration.saturating_sub(self.tail);
        loop {
            let kind = match required.pop() {
                Some(kind) => kind,
                None if self.pool.is_empty() => break,
                None => self.pool[rng.usize(..self.pool.len())],
            };
            let planned = self.draw(&mut rng, kind, t);
            // Holder and nemesis faults may wait up to 3 s for a holder.
            let waits = if planned.nodes.is_empty()
                || matches!(
                    kind,
                    FaultKind::NemesisDel | FaultKind::NemesisPexpire | FaultKind::NemesisMajority
                ) {
                Duration::from_millis(500)
            } else {
                Duration::ZERO
            };
            let next = t + waits + planned.duration + self.ttl + ms(rng.u64(1_200..=1_800));
            if next > end {
                break;
            }
            out.push(planned);
            t = next;
        }
        out
    }

    fn draw(&self, rng: &mut fastrand::Rng, kind: FaultKind, at: Duration) -> Planned {
        let n = self.nodes;
        let ttl_ms = u64::try_from(self.ttl.as_millis()).unwrap_or(500);
        let (duration, nodes, delay) = match kind {
            FaultKind::HolderPauseWorking | FaultKind::HolderPauseBeforeWrite => {
                (ms(rng.u64(ttl_ms * 2..=ttl_ms * 3)), Vec::new(), ms(0))
            }
            FaultKind::HolderKill => (ms(0), Vec::new(), ms(0)),
            FaultKind::NodeRestartPersistent => {
                let nodes = self.pick(rng, true);
                (ms(rng.u64(50..=300)), nodes, ms(0))
            }
            FaultKind::NodeRestartEmptyDelayed => {
                let nodes = self.pick(rng, false);
                (ms(rng.u64(ttl_ms + 200..=ttl_ms + 700)), nodes, ms(0))
            }
            FaultKind::NodeRestartEmptyFast => {
                (ms(rng.u64(20..=100)), self.pick(rng, false), ms(0))
            }
            FaultKind::NodePause => (ms(rng.u64(800..=2_000)), minority(rng, n), ms(0)),
            FaultKind::NemesisPexpire | FaultKind::NemesisDel | FaultKind::ProxyCut => {
                (ms(0), minority(rng, n), ms(0))
            }
            FaultKind::NemesisMajority => {
                let mut nodes: Vec<usize> = (0..n).collect();
                rng.shuffle(&mut nodes);
                nodes.truncate(n / 2 + 1);
                nodes.sort_unstable();
                (ms(0), nodes, ms(0))
            }
            FaultKind::ProxyDelay => {
                let delay = if n == 1 {
                    rng.u64(20..=120)
                } else {
                    rng.u64(20..=250)
                };
                (ms(rng.u64(1_000..=2_500)), minority(rng, n), ms(delay))
            }
            FaultKind::ProxyLostReply | FaultKind::ProxyDropReplies | FaultKind::ProxyHold => {
                (ms(rng.u64(500..=1_500)), minority(rng, n), ms(0))
            }
            FaultKind::PartitionMinority => (ms(rng.u64(1_000..=3_000)), minority(rng, n), ms(0)),
            FaultKind::PartitionMajority => {
                let mut nodes: Vec<usize> = (0..n).collect();
                rng.shuffle(&mut nodes);
                nodes.truncate(n / 2 + 1);
                nodes.sort_unstable();
                (ms(rng.u64(1_000..=2_000)), nodes, ms(0))
            }
        };
        Planned {
            at,
            kind,
            duration,
            nodes,
            delay,
        }
    }

    /// One node with (or without) persistence; falls back to any node.
    fn pick(&self, rng: &mut fastrand::Rng, persistent: bool) -> Vec<usize> {
        let matching: Vec<usize> = (0..self.nodes)
            .filter(|&i| self.persistent.get(i).copied().unwrap_or(false) == persistent)
            .collect();
        if matching.is_empty() {
            vec![rng.usize(..self.nodes)]
        } else {
            vec![matching[rng.usize(..matching.len())]]
        }
    }
}

/// A random minority of `n` nodes (the only node, with one).
fn minority(rng: &mut fastrand::Rng, n: usize) -> Vec<usize> {
    let mut nodes: Vec<usize> = (0..n).collect();
    rng.shuffle(&mut nodes);
    let count = if n == 1 {
        1
    } else {
        rng.usize(1..=(n - 1) / 2)
    };
    nodes.truncate(count);
    nodes.sort_unstable();
    nodes
}

fn ms(millis: u64) -> Duration {
    Duration::from_millis(millis)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn plan(seed: u64) -> Plan {
        Plan {
            seed,
            nodes: 5,
            persistent: vec![true, true, true, false, false],
            ttl: Duration::from_millis(500),
            duration: Duration::from_secs(90),
            required: FaultKind::ALL
                .into_iter()
                .filter(|k| !k.beyond_assumptions(5))
                .collect(),
            pool: vec![FaultKind::HolderPauseBeforeWrite, FaultKind::ProxyDelay],
            warmup: Duration::from_secs(2),
            tail: Duration::from_secs(3),
        }
    }

    #[test]
    fn the_same_seed_gives_the_same_schedule() {
        assert_eq!(plan(7).schedule(), plan(7).schedule());
        assert_ne!(plan(7).schedule(), plan(8).schedule());
    }

    #[test]
    fn every_required_kind_is_scheduled_without_overlap() {
        let p = plan(3);
        let schedule = p.schedule();
        for kind in &p.required {
            assert!(schedule.iter().any(|f| f.kind == *kind), "{kind} missing");
        }
        for pair in schedule.windows(2) {
            assert!(pair[0].at + pair[0].duration < pair[1].at);
        }
        let last = schedule.last().expect("faults");
        assert!(last.at + last.duration <= p.duration.saturating_sub(p.tail));
    }

    #[test]
    fn targets_respect_minorities_and_persistence() {
        let p = plan(11);
        let mut rng = fastrand::Rng::with_seed(1);
        for _ in 0..200 {
            for kind in FaultKind::ALL {
                let f = p.draw(&mut rng, kind, Duration::ZERO);
                match kind {
                    FaultKind::NemesisMajority | FaultKind::PartitionMajority => {
                        assert_eq!(f.nodes.len(), 3);
                    }
                    FaultKind::NodeRestartPersistent => assert!(f.nodes[0] < 3),
                    FaultKind::NodeRestartEmptyDelayed => {
                        assert!(f.nodes[0] >= 3);
                        assert!(f.duration > p.ttl, "restarts after the TTL");
                    }
                    FaultKind::NodeRestartEmptyFast => assert!(f.nodes[0] >= 3),
                    _ if kind.needs_proxy() || !f.nodes.is_empty() => {
                        assert!((1..=2).contains(&f.nodes.len()), "{kind} {f:?}");
                    }
                    _ => {}
                }
            }
        }
    }
}
