//! How much of the machine's CPU other processes took during the run: the time the kernel
//! charged to processes (`/proc/stat` user, nice and system; interrupts and steal left out,
//! since loopback traffic's softirq time is ours but not charged to us) less this process's
//! own time and that of the children it reaped (its `redis-server`s and R1's child processes). On a 2-core machine a
//! concurrent build easily takes a core, which skews every figure; the report says so.

/// CPU counters at one instant, in clock ticks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct CpuSnapshot {
    /// Time all cores spent running processes (user, nice, system).
    busy: u64,
    /// All time of all cores.
    total: u64,
    /// This process's user + system time, reaped children included.
    own: u64,
}

impl CpuSnapshot {
    /// Reads the counters; `None` where `/proc` is not available.
    pub(crate) fn take() -> Option<Self> {
        let (busy, total) = parse_system(&std::fs::read_to_string("/proc/stat").ok()?)?;
        let own = parse_own(&std::fs::read_to_string("/proc/self/stat").ok()?)?;
        Some(Self { busy, total, own })
    }

    /// The share of all cores' time between `self` and `later` that other processes used.
    pub(crate) fn others_share(self, later: Self) -> Option<f64> {
        let total = later.total.checked_sub(self.total)?;
        if total == 0 {
            return None;
        }
        let busy = later.busy.saturating_sub(self.busy);
        let own = later.own.saturating_sub(self.own);
        Some(crate::stats::as_f64(busy.saturating_sub(own)) / crate::stats::as_f64(total))
    }
}

/// `(process time, total)` ticks from the first (`cpu `) line of `/proc/stat`.
fn parse_system(stat: &str) -> Option<(u64, u64)> {
    let line = stat.lines().find(|l| l.starts_with("cpu "))?;
    // user nice system idle iowait irq softirq steal (guest time is already in user).
    let fields: Vec<u64> = line
        .split_whitespace()
        .skip(1)
        .take(8)
        .map(str::parse)
        .collect::<Result<_, _>>()
        .ok()?;
    if fields.len() < 8 {
        return None;
    }
    let total: u64 = fields.iter().sum();
    Some((fields[0] + fields[1] + fields[2], total))
}

/// `utime + stime + cutime + cstime` (fields 14 to 17) of a `/proc/PID/stat` line. The command
/// name (field 2) is in parentheses and may hold spaces, so fields are counted after its `)`.
pub(crate) fn parse_own(stat: &str) -> Option<u64> {
    let times = cpu_fields(stat, 4)?;
    Some(times.iter().sum())
}

/// `utime + stime` (fields 14 and 15) of a `/proc/PID/stat` line: the process's own CPU time,
/// all threads, without its children.
pub(crate) fn parse_self_only(stat: &str) -> Option<u64> {
    let times = cpu_fields(stat, 2)?;
    Some(times.iter().sum())
}

/// The first `n` of the fields from 14 on (utime, stime, cutime, cstime).
fn cpu_fields(stat: &str, n: usize) -> Option<Vec<u64>> {
    let after_name = &stat[stat.rfind(')')? + 1..];
    // Field 3 (the state) is the first after the name, so field 14 is the 12th.
    let fields: Vec<u64> = after_name
        .split_whitespace()
        .skip(11)
        .take(n)
        .map(str::parse)
        .collect::<Result<_, _>>()
        .ok()?;
    (fields.len() == n).then_some(fields)
}

#[cfg(test)]
mod tests {
    use super::*;

    const STAT: &str = "4242 (tokio (x) y) S 1 4242 4242 0 -1 4194304 100 0 0 0 250 75 30 5 20 0";

    #[test]
    fn process_times_are_counted_after_the_command_name() {
        assert_eq!(parse_self_only(STAT), Some(325));
        assert_eq!(parse_own(STAT), Some(360));
        assert_eq!(parse_self_only("4242 (short) S 1 2"), None);
        assert_eq!(parse_own("no parenthesis"), None);
    }

    #[test]
    fn process_time_excludes_idle_interrupts_and_steal() {
        let stat = "cpu  100 10 50 800 40 0 5 3 0 0\ncpu0 50 5 25 400 20 0 2 0 0 0\n";
        assert_eq!(parse_system(stat), Some((160, 1008)));
        assert_eq!(parse_system("cpu  1 2 3\n"), None);
        assert_eq!(parse_system("intr 1 2 3\n"), None);
    }

    #[test]
    fn others_share_is_busy_time_not_ours() {
        let before = CpuSnapshot {
            busy: 1_000,
            total: 10_000,
            own: 100,
        };
        let after = CpuSnapshot {
            busy: 1_600,
            total: 11_000,
            own: 400,
        };
        // 600 busy ticks, 300 of them ours: others used 300 of 1,000.
        let share = before.others_share(after).expect("some");
        assert!((share - 0.3).abs() < 1e-12, "{share}");
        assert_eq!(before.others_share(before), None);
        // Never negative, even when our reaped children's time lands in a later sample.
        let odd = CpuSnapshot {
            own: 5_000,
            ..after
        };
        assert_eq!(before.others_share(odd), Some(0.0));
        assert!(CpuSnapshot::take().is_some());
    }
}
