//! Administrative commands sent to the testkit's own servers over their plain port, for
//! setting up clusters and sentinels and waiting for them to settle.

use std::thread;
use std::time::{Duration, Instant};

use redis::Value;

use crate::Error;

/// How long one administrative command may take.
const COMMAND_TIMEOUT: Duration = Duration::from_secs(5);
/// Pause between checks of [`wait_until`].
const POLL_INTERVAL: Duration = Duration::from_millis(20);

/// Sends `args` to the server on `port` and returns its reply.
pub(crate) fn query(port: u16, args: &[&str]) -> Result<Value, Error> {
    let what = || format!("{} on port {port}", args.join(" "));
    let client = redis::Client::open(format!("redis://127.0.0.1:{port}"))
        .map_err(|e| Error::new(format!("{}: {e}", what())))?;
    let mut conn = client
        .get_connection_with_timeout(COMMAND_TIMEOUT)
        .map_err(|e| Error::new(format!("{}: {e}", what())))?;
    let _ = conn.set_read_timeout(Some(COMMAND_TIMEOUT));
    let _ = conn.set_write_timeout(Some(COMMAND_TIMEOUT));
    let (name, rest) = args
        .split_first()
        .ok_or_else(|| Error::new("empty command"))?;
    redis::cmd(name)
        .arg(rest)
        .query::<Value>(&mut conn)
        .map_err(|e| Error::new(format!("{}: {e}", what())))
}

/// [`query`] for a reply that is text (`INFO`, `CLUSTER NODES`, `CLUSTER MYID`, ...).
pub(crate) fn query_text(port: u16, args: &[&str]) -> Result<String, Error> {
    let reply = query(port, args)?;
    redis::from_redis_value(reply).map_err(|e| {
        Error::new(format!(
            "{} on port {port}: unexpected reply: {e}",
            args.join(" ")
        ))
    })
}

/// Waits until `replicas` replicas acknowledge a write on the primary at `port` (a test key
/// is set, then `WAIT`ed for). A replica that has just finished a full sync is counted only
/// after its first acknowledgement, up to a second later: until then `WAIT` does not see it.
pub(crate) fn await_acks(port: u16, replicas: usize, timeout: Duration) -> Result<(), Error> {
    await_acks_on(
        port,
        "redlease-testkit:replication-probe",
        replicas,
        timeout,
    )
}

/// [`await_acks`] writing `key` (on a Cluster, a key of a slot the primary owns).
pub(crate) fn await_acks_on(
    port: u16,
    key: &str,
    replicas: usize,
    timeout: Duration,
) -> Result<(), Error> {
    let client = redis::Client::open(format!("redis://127.0.0.1:{port}"))
        .map_err(|e| Error::new(format!("port {port}: {e}")))?;
    wait_until("the replicas to acknowledge writes", timeout, || {
        let mut conn = client
            .get_connection_with_timeout(COMMAND_TIMEOUT)
            .map_err(|e| Error::new(format!("port {port}: {e}")))?;
        let ((), acked): ((), usize) = redis::pipe()
            .cmd("SET")
            .arg(key)
            .arg(1)
            .cmd("WAIT")
            .arg(replicas)
            .arg(100)
            .query(&mut conn)
            .map_err(|e| Error::new(format!("WAIT on port {port}: {e}")))?;
        Ok(acked >= replicas)
    })
}

/// One `field:value` line of an `INFO`-style text.
pub(crate) fn info_field<'a>(info: &'a str, field: &str) -> Option<&'a str> {
    info.lines()
        .find_map(|line| line.strip_prefix(field)?.strip_prefix(':'))
        .map(str::trim)
}

/// The first element of `ROLE`: `master`, `slave` or `sentinel`.
pub(crate) fn role(port: u16) -> Result<String, Error> {
    match query(port, &["ROLE"])? {
        Value::Array(items) => match items.into_iter().next() {
            Some(first) => redis::from_redis_value(first)
                .map_err(|e| Error::new(format!("ROLE on port {port}: {e}"))),
            None => Err(Error::new(format!("ROLE on port {port}: empty reply"))),
        },
        other => Err(Error::new(format!(
            "ROLE on port {port}: unexpected reply {other:?}"
        ))),
    }
}

/// Polls `check` until it returns `true`, or fails after `timeout` saying what was awaited.
/// Errors from `check` count as "not yet" (the last one is reported on timeout).
pub(crate) fn wait_until(
    what: &str,
    timeout: Duration,
    mut check: impl FnMut() -> Result<bool, Error>,
) -> Result<(), Error> {
    let deadline = Instant::now() + timeout;
    loop {
        let last = match check() {
            Ok(true) => return Ok(()),
            Ok(false) => None,
            Err(e) => Some(e),
        };
        if Instant::now() >= deadline {
            let last = last
                .map(|e| format!(" (last error: {e})"))
                .unwrap_or_default();
            return Err(Error::new(format!(
                "timed out after {timeout:?} waiting for {what}{last}"
            )));
        }
        thread::sleep(POLL_INTERVAL);
    }
}
