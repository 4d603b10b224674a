//! The protected resource and the run's record keeper, independent of Redis.
//!
//! The resource is a counter that workers read-modify-write inside their critical sections.
//! Like a storage service that checks fencing tokens (Chubby's sequencers), it refuses a read
//! or a write whose fence is below the largest fence it has seen, and a write whose fence is
//! not above the largest fence it has accepted. With the check off (the negative control) it
//! accepts everything, so interleaved critical sections show up as stale writes and lost
//! increments.
//!
//! Workers talk to it over loopback TCP, one line per message (see [`Message`]); it stamps
//! everything with its own reading of the shared monotonic clock.

use std::collections::{BTreeMap, HashMap};
use std::io::{self, BufRead as _, BufReader, Write as _};
use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use crate::clock::now_ns;

/// A worker process: its slot number and incarnation (a killed worker is restarted as the
/// next incarnation of its slot).
pub(crate) type WorkerId = (u32, u32);

/// One grant as the resource saw it, keyed by worker and a per-incarnation sequence number.
#[derive(Debug, Clone, Default)]
pub(crate) struct Holder {
    pub(crate) worker: WorkerId,
    pub(crate) fence: u64,
    /// When the granting request was sent (worker's report, shared clock).
    pub(crate) t_sent: u64,
    /// When `acquire` returned the guard (worker's report).
    pub(crate) t_ret: u64,
    /// The latest validity deadline the worker reported.
    pub(crate) valid_until: u64,
    /// Whether this critical section skipped the "is the lease still held?" check.
    pub(crate) naive: bool,
    /// The planned amount of work.
    pub(crate) work_ms: u64,
    /// When the resource received BEGIN (its clock).
    pub(crate) begin_at: u64,
    /// `Some((value, read sequence))` if the read was accepted, `None` if it was fenced off.
    pub(crate) read: Option<(u64, u64)>,
    pub(crate) checked_at: Option<u64>,
    pub(crate) write: Option<Write>,
    /// When the resource received END, or the connection broke (killed worker).
    pub(crate) end_at: Option<u64>,
    /// The worker's report of when it started releasing.
    pub(crate) release_start: Option<u64>,
    /// The renewals the worker observed (deadline moved forward).
    pub(crate) renewals: u32,
    /// Why and when (worker's clock reading) the loss signal fired, unless released first.
    pub(crate) lost: Option<(String, u64)>,
    pub(crate) release: Option<String>,
    /// The worker died (killed) before ending this critical section.
    pub(crate) died: bool,
}

impl Holder {
    /// When the guard stopped being valid: its deadline, or the release if that came first.
    pub(crate) fn window_end(&self) -> u64 {
        match self.release_start {
            Some(release) => release.min(self.valid_until),
            None => self.valid_until,
        }
    }
}

/// A write attempt and the resource's verdict.
#[derive(Debug, Clone)]
pub(crate) struct Write {
    pub(crate) at: u64,
    pub(crate) accepted: bool,
    /// Why it was refused.
    pub(crate) reason: &'static str,
    /// Another holder read the resource between this holder's read and this write.
    pub(crate) stale: bool,
}

/// One worker incarnation's connection.
#[derive(Debug, Clone, Default)]
pub(crate) struct Incarnation {
    /// Writes the resource accepted from it.
    pub(crate) accepted: u64,
    /// The accepted writes the worker counted itself, if it said goodbye.
    pub(crate) reported: Option<u64>,
    pub(crate) gone_at: Option<u64>,
}

/// Where a worker is in its critical section, for the fault scheduler.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Phase {
    /// Read the resource, working.
    Working,
    /// Checked its lease and is about to write.
    Checked,
}

/// Everything the resource recorded.
#[derive(Debug, Clone, Default)]
pub(crate) struct Record {
    pub(crate) fencing: bool,
    pub(crate) value: u64,
    pub(crate) accepted: u64,
    pub(crate) max_seen: u64,
    pub(crate) max_written: u64,
    pub(crate) read_seq: u64,
    pub(crate) reads_fenced: u64,
    pub(crate) holders: Vec<Holder>,
    /// Counters by event name (`acq_ok`, `acq_err:TimedOut`, `rel:Released`, ...).
    pub(crate) events: BTreeMap<String, u64>,
    /// Acquisition and release outcomes with the time the resource heard of them.
    pub(crate) timeline: Vec<(u64, WorkerId, String)>,
    pub(crate) incarnations: BTreeMap<WorkerId, Incarnation>,
    /// Lines the resource could not parse (a harness bug if any).
    pub(crate) garbage: Vec<String>,
}

struct State {
    record: Record,
    index: HashMap<(WorkerId, u64), usize>,
    phases: HashMap<WorkerId, Phase>,
    stop: bool,
}

struct Shared {
    state: Mutex<State>,
    changed: Condvar,
    closing: AtomicBool,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// The resource server.
pub(crate) struct Oracle {
    addr: SocketAddr,
    shared: Arc<Shared>,
    acceptor: Option<JoinHandle<()>>,
}

impl Oracle {
    /// Starts listening on a free loopback port.
    pub(crate) fn start(fencing: bool) -> io::Result<Self> {
        let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0))?;
        let addr = listener.local_addr()?;
        let shared = Arc::new(Shared {
            state: Mutex::new(State {
                record: Record {
                    fencing,
                    ..Record::default()
                },
                index: HashMap::new(),
                phases: HashMap::new(),
                stop: false,
            }),
            changed: Condvar::new(),
            closing: AtomicBool::new(false),
        });
        let acceptor = thread::Builder::new().name("oracle".into()).spawn({
            let shared = shared.clone();
            move || {
                for stream in listener.incoming() {
                    if shared.closing.load(Ordering::SeqCst) {
                        return;
                    }
                    let Ok(stream) = stream else { continue };
                    let shared = shared.clone();
                    let _ = thread::Builder::new()
                        .name("oracle-conn".into())
                        .spawn(move || serve(&shared, stream));
                }
            }
        })?;
        Ok(Self {
            addr,
            shared,
            acceptor: Some(acceptor),
        })
    }

    pub(crate) fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Tells every worker to finish its current iteration and leave.
    pub(crate) fn stop_workers(&self) {
        self.shared.lock().stop = true;
    }

    /// Waits up to `timeout` for some worker to be in `phase`; returns it.
    pub(crate) fn wait_for_phase(&self, phase: Phase, timeout: Duration) -> Option<WorkerId> {
        let deadline = Instant::now() + timeout;
        let mut state = self.shared.lock();
        loop {
            let mut candidates: Vec<WorkerId> = state
                .phases
                .iter()
                .filter(|&(_, p)| *p == phase)
                .map(|(w, _)| *w)
                .collect();
            candidates.sort_unstable();
            if let Some(first) = candidates.first() {
                return Some(*first);
            }
            let now = Instant::now();
            if now >= deadline {
                return None;
            }
            state = self
                .shared
                .changed
                .wait_timeout(state, deadline - now)
                .unwrap_or_else(PoisonError::into_inner)
                .0;
        }
    }

    /// The resource's record so far.
    pub(crate) fn record(&self) -> Record {
        self.shared.lock().record.clone()
    }
}

impl Drop for Oracle {
    fn drop(&mut self) {
        self.shared.closing.store(true, Ordering::SeqCst);
        // Wake the blocking accept.
        let _ = TcpStream::connect_timeout(&self.addr, Duration::from_millis(200));
        if let Some(acceptor) = self.acceptor.take() {
            let _ = acceptor.join();
        }
    }
}

/// Serves one worker connection until it closes.
fn serve(shared: &Shared, stream: TcpStream) {
    let _ = stream.set_nodelay(true);
    let Ok(reader) = stream.try_clone() else {
        return;
    };
    let mut writer = stream;
    let mut who: Option<WorkerId> = None;
    for line in BufReader::new(reader).lines() {
        let Ok(line) = line else { break };
        let reply = {
            let mut state = shared.lock();
            let reply = state.handle(&mut who, &line);
            shared.changed.notify_all();
            reply
        };
        if let Some(reply) = reply
            && writer.write_all(format!("{reply}\n").as_bytes()).is_err()
        {
            break;
        }
    }
    if let Some(worker) = who {
        let now = now_ns();
        let mut state = shared.lock();
        state.phases.remove(&worker);
        if let Some(inc) = state.record.incarnations.get_mut(&worker) {
            inc.gone_at = Some(now);
        }
        for holder in &mut state.record.holders {
            if holder.worker == worker && holder.end_at.is_none() {
                holder.end_at = Some(now);
                holder.died = true;
            }
        }
        shared.changed.notify_all();
    }
}

/// A parsed line from a worker.
#[derive(Debug, PartialEq)]
pub(crate) enum Message<'a> {
    /// `HELLO slot incarnation pid` → `OK`
    Hello(u32, u32, u32),
    /// `TICK` → `GO` or `STOP`
    Tick,
    /// `EV name`: count an event.
    Event(&'a str),
    /// `BEGIN h fence t_sent t_ret valid_until naive work_ms` → `READ value` or `FENCED max`
    Begin {
        h: u64,
        fence: u64,
        t_sent: u64,
        t_ret: u64,
        valid_until: u64,
        naive: bool,
        work_ms: u64,
    },
    /// `VALID h valid_until`: the lease was renewed.
    Valid(u64, u64),
    /// `CHECK h`: the lease looked held; writing next.
    Check(u64),
    /// `WRITE h value` → `ACCEPT` or `REJECT reason`
    Write(u64, u64),
    /// `LOST h reason t_signal`
    Lost(u64, &'a str, u64),
    /// `END h release_start valid_until`
    End(u64, u64, u64),
    /// `RELEASED h outcome`
    Released(u64, &'a str),
    /// `BYE accepted` → `OK`
    Bye(u64),
}

impl<'a> Message<'a> {
    pub(crate) fn parse(line: &'a str) -> Option<Self> {
        let mut words = line.split_ascii_whitespace();
        let verb = words.next()?;
        let mut num = || words.next().and_then(|w| w.parse::<u64>().ok());
        let message = match verb {
            "HELLO" => Self::Hello(
                u32::try_from(num()?).ok()?,
                u32::try_from(num()?).ok()?,
                u32::try_from(num()?).ok()?,
            ),
            "TICK" => Self::Tick,
            "BEGIN" => Self::Begin {
                h: num()?,
                fence: num()?,
                t_sent: num()?,
                t_ret: num()?,
                valid_until: num()?,
                naive: num()? == 1,
                work_ms: num()?,
            },
            "VALID" => Self::Valid(num()?, num()?),
            "CHECK" => Self::Check(num()?),
            "WRITE" => Self::Write(num()?, num()?),
            "END" => Self::End(num()?, num()?, num()?),
            "BYE" => Self::Bye(num()?),
            "EV" | "LOST" | "RELEASED" => {
                let rest: Vec<&str> = line.split_ascii_whitespace().collect();
                match (verb, rest.as_slice()) {
                    ("EV", [_, name]) => Self::Event(name),
                    ("LOST", [_, h, reason, t]) => {
                        Self::Lost(h.parse().ok()?, reason, t.parse().ok()?)
                    }
                    ("RELEASED", [_, h, outcome]) => Self::Released(h.parse().ok()?, outcome),
                    _ => return None,
                }
            }
            _ => return None,
        };
        Some(message)
    }
}

impl State {
    fn holder(&mut self, worker: WorkerId, h: u64) -> Option<&mut Holder> {
        let index = *self.index.get(&(worker, h))?;
        self.record.holders.get_mut(index)
    }

    fn count(&mut self, event: &str) {
        *self.record.events.entry(event.to_owned()).or_default() += 1;
    }

    /// Handles one line; returns the reply, if the message has one.
    fn handle(&mut self, who: &mut Option<WorkerId>, line: &str) -> Option<String> {
        let now = now_ns();
        let Some(message) = Message::parse(line) else {
            self.record.garbage.push(line.to_owned());
            return None;
        };
        if let Message::Hello(slot, incarnation, _pid) = message {
            *who = Some((slot, incarnation));
            self.record
                .incarnations
                .insert((slot, incarnation), Incarnation::default());
            return Some("OK".into());
        }
        let Some(worker) = *who else {
            self.record.garbage.push(line.to_owned());
            return None;
        };
        match message {
            Message::Hello(..) => None,
            Message::Tick => Some(if self.stop { "STOP" } else { "GO" }.into()),
            Message::Event(name) => {
                self.count(name);
                if name.starts_with("acq_") && name != "acq_attempt" || name.starts_with("connect_")
                {
                    self.record.timeline.push((now, worker, name.to_owned()));
                }
                None
            }
            Message::Begin {
                h,
                fence,
                t_sent,
                t_ret,
                valid_until,
                naive,
                work_ms,
            } => Some(self.begin(
                worker,
                h,
                Holder {
                    worker,
                    fence,
                    t_sent,
                    t_ret,
                    valid_until,
                    naive,
                    work_ms,
                    begin_at: now,
                    ..Holder::default()
                },
            )),
            Message::Valid(h, valid_until) => {
                if let Some(holder) = self.holder(worker, h) {
                    holder.valid_until = holder.valid_until.max(valid_until);
                    holder.renewals += 1;
                }
                self.count("renewal");
                None
            }
            Message::Check(h) => {
                if let Some(holder) = self.holder(worker, h) {
                    holder.checked_at = Some(now);
                }
                self.phases.insert(worker, Phase::Checked);
                None
            }
            Message::Write(h, value) => Some(self.write(worker, h, value, now)),
            Message::Lost(h, reason, t_signal) => {
                if let Some(holder) = self.holder(worker, h) {
                    holder.lost = Some((reason.to_owned(), t_signal));
                }
                self.count(&format!("lost:{reason}"));
                None
            }
            Message::End(h, release_start, valid_until) => {
                if let Some(holder) = self.holder(worker, h) {
                    holder.end_at = Some(now);
                    holder.release_start = Some(release_start);
                    holder.valid_until = valid_until;
                }
                self.phases.remove(&worker);
                None
            }
            Message::Released(h, outcome) => {
                if let Some(holder) = self.holder(worker, h) {
                    holder.release = Some(outcome.to_owned());
                }
                self.count(&format!("rel:{outcome}"));
                self.record
                    .timeline
                    .push((now, worker, format!("rel:{outcome}")));
                None
            }
            Message::Bye(accepted) => {
                if let Some(inc) = self.record.incarnations.get_mut(&worker) {
                    inc.reported = Some(accepted);
                }
                Some("OK".into())
            }
        }
    }

    fn begin(&mut self, worker: WorkerId, h: u64, mut holder: Holder) -> String {
        let record = &mut self.record;
        let reply = if record.fencing && holder.fence < record.max_seen {
            record.reads_fenced += 1;
            holder.end_at = Some(holder.begin_at);
            format!("FENCED {}", record.max_seen)
        } else {
            record.max_seen = record.max_seen.max(holder.fence);
            record.read_seq += 1;
            holder.read = Some((record.value, record.read_seq));
            self.phases.insert(worker, Phase::Working);
            format!("READ {}", record.value)
        };
        self.index.insert((worker, h), self.record.holders.len());
        self.record.holders.push(holder);
        reply
    }

    fn write(&mut self, worker: WorkerId, h: u64, value: u64, now: u64) -> String {
        self.phases.remove(&worker);
        let Some(&index) = self.index.get(&(worker, h)) else {
            self.record.garbage.push(format!("WRITE for unknown {h}"));
            return "REJECT unknown".into();
        };
        let record = &mut self.record;
        let holder = &record.holders[index];
        let Some((_, seq)) = holder.read else {
            return "REJECT no-read".into();
        };
        let fence = holder.fence;
        let stale = record.read_seq > seq;
        let reason = if !record.fencing {
            ""
        } else if fence < record.max_seen {
            "below-largest-seen"
        } else if fence <= record.max_written {
            "not-above-largest-written"
        } else {
            ""
        };
        let accepted = reason.is_empty();
        if accepted {
            record.value = value;
            record.accepted += 1;
            record.max_written = record.max_written.max(fence);
            if let Some(inc) = record.incarnations.get_mut(&worker) {
                inc.accepted += 1;
            }
        }
        record.holders[index].write = Some(Write {
            at: now,
            accepted,
            reason,
            stale,
        });
        if accepted {
            "ACCEPT".into()
        } else {
            format!("REJECT {reason}")
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn state(fencing: bool) -> State {
        State {
            record: Record {
                fencing,
                ..Record::default()
            },
            index: HashMap::new(),
            phases: HashMap::new(),
            stop: false,
        }
    }

    fn say(state: &mut State, who: &mut Option<WorkerId>, line: &str) -> Option<String> {
        state.handle(who, line)
    }

    #[test]
    fn messages_parse() {
        assert_eq!(Message::parse("HELLO 1 2 3"), Some(Message::Hello(1, 2, 3)));
        assert_eq!(Message::parse("EV acq_ok"), Some(Message::Event("acq_ok")));
        assert_eq!(
            Message::parse("LOST 4 Expired 99"),
            Some(Message::Lost(4, "Expired", 99))
        );
        assert_eq!(Message::parse("WRITE 1"), None);
        assert_eq!(Message::parse("NOPE"), None);
    }

    /// A stalled holder A reads, B (larger fence) reads and writes, A's late write is refused.
    #[test]
    fn fencing_refuses_the_stale_write() {
        let mut s = state(true);
        let (mut a, mut b) = (None, None);
        say(&mut s, &mut a, "HELLO 0 0 10");
        say(&mut s, &mut b, "HELLO 1 0 11");
        assert_eq!(
            say(&mut s, &mut a, "BEGIN 1 5 0 0 0 0 10").as_deref(),
            Some("READ 0")
        );
        assert_eq!(
            say(&mut s, &mut b, "BEGIN 1 6 0 0 0 0 10").as_deref(),
            Some("READ 0")
        );
        assert_eq!(say(&mut s, &mut b, "WRITE 1 1").as_deref(), Some("ACCEPT"));
        assert_eq!(
            say(&mut s, &mut a, "WRITE 1 1").as_deref(),
            Some("REJECT below-largest-seen")
        );
        let holder = &s.record.holders[0];
        assert!(
            holder
                .write
                .as_ref()
                .is_some_and(|w| w.stale && !w.accepted)
        );
        assert_eq!((s.record.value, s.record.accepted), (1, 1));
        // A smaller fence arriving later is refused at the read.
        let mut c = None;
        say(&mut s, &mut c, "HELLO 2 0 12");
        assert_eq!(
            say(&mut s, &mut c, "BEGIN 1 4 0 0 0 0 10").as_deref(),
            Some("FENCED 6")
        );
        assert_eq!(s.record.reads_fenced, 1);
    }

    /// Without the check, the same interleaving loses an increment.
    #[test]
    fn without_fencing_the_interleaving_loses_an_increment() {
        let mut s = state(false);
        let (mut a, mut b) = (None, None);
        say(&mut s, &mut a, "HELLO 0 0 10");
        say(&mut s, &mut b, "HELLO 1 0 11");
        say(&mut s, &mut a, "BEGIN 1 5 0 0 0 0 10");
        say(&mut s, &mut b, "BEGIN 1 6 0 0 0 0 10");
        say(&mut s, &mut b, "WRITE 1 1");
        assert_eq!(say(&mut s, &mut a, "WRITE 1 1").as_deref(), Some("ACCEPT"));
        assert_eq!((s.record.value, s.record.accepted), (1, 2));
        assert!(s.record.holders[0].write.as_ref().is_some_and(|w| w.stale));
    }

    #[test]
    fn equal_fences_cannot_both_write() {
        let mut s = state(true);
        let (mut a, mut b) = (None, None);
        say(&mut s, &mut a, "HELLO 0 0 10");
        say(&mut s, &mut b, "HELLO 1 0 11");
        say(&mut s, &mut a, "BEGIN 1 7 0 0 0 0 10");
        say(&mut s, &mut a, "WRITE 1 1");
        say(&mut s, &mut b, "BEGIN 1 7 0 0 0 0 10");
        assert_eq!(
            say(&mut s, &mut b, "WRITE 1 2").as_deref(),
            Some("REJECT not-above-largest-written")
        );
    }
}
