//! Job control for `redlease run`: who has the terminal's foreground, handing it over and back,
//! and stopping redlease itself the way a shell expects when its command is stopped.

use std::io::IsTerminal as _;

use nix::sys::signal::{SigSet, SigmaskHow, Signal, pthread_sigmask};
use nix::unistd::{Pid, getpgrp, tcgetpgrp, tcsetpgrp};

/// Whether stdin is a terminal whose foreground is redlease's own process group (so that
/// redlease may give it to the command).
pub(crate) fn we_are_in_the_foreground() -> bool {
    std::io::stdin().is_terminal() && tcgetpgrp(std::io::stdin()).is_ok_and(|fg| fg == getpgrp())
}

/// Makes `group` the terminal's foreground if the terminal on stdin currently has `from` in
/// the foreground (never taking it from someone else, such as the shell).
pub(crate) fn hand_over(from: Pid, group: Pid) {
    if !std::io::stdin().is_terminal() || tcgetpgrp(std::io::stdin()).ok() != Some(from) {
        return;
    }
    // A background process may set the foreground only with SIGTTOU blocked (in this thread,
    // for this call).
    let mut ttou = SigSet::empty();
    ttou.add(Signal::SIGTTOU);
    let mut previous = SigSet::empty();
    if pthread_sigmask(SigmaskHow::SIG_BLOCK, Some(&ttou), Some(&mut previous)).is_ok() {
        let _ = tcsetpgrp(std::io::stdin(), group);
        let _ = pthread_sigmask(SigmaskHow::SIG_SETMASK, Some(&previous), None);
    }
}

/// Gives the terminal back from the command's `group` to redlease's own, if the command has it.
pub(crate) fn take_back(group: Pid) {
    hand_over(group, getpgrp());
}

/// Stops redlease with `signal` (SIGTSTP, SIGTTIN or SIGTTOU) as if it had no handler for it,
/// so that the shell sees its job stopped; returns once something continues it. In an
/// orphaned process group (no job-control shell above) the kernel discards such a stop, and
/// this returns at once.
#[allow(
    unsafe_code,
    reason = "sigaction: the default disposition for the time of the stop"
)]
pub(crate) fn stop_self(signal: Signal) {
    use nix::sys::signal::{SaFlags, SigAction, SigHandler, raise, sigaction};
    let default = SigAction::new(SigHandler::SigDfl, SaFlags::empty(), SigSet::empty());
    // SAFETY: the default disposition runs no code of ours; the previous action (our runtime's
    // handler, if any) is put back unchanged. `raise` delivers to this thread before it
    // returns, so the default action, not the handler, applies.
    unsafe {
        if let Ok(previous) = sigaction(signal, &default) {
            let _ = raise(signal);
            let _ = sigaction(signal, &previous);
        }
    }
}
