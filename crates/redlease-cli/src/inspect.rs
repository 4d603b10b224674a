//! `redlease status`, `list` and `release --force`: looking at locks, and breaking one.

use std::fmt::Write as _;
use std::process::ExitCode;

use redlease::{Holder, LockInfo};
use serde_json::json;

use crate::duration::human;
use crate::exit::Failure;
use crate::settings::Servers;

pub(crate) async fn status(
    servers: &Servers,
    name: &str,
    as_json: bool,
) -> Result<ExitCode, Failure> {
    let client = servers.connect().await?;
    let info = client
        .inspect(name)
        .await
        .map_err(|e| Failure::from_lock_error(&e))?;
    if as_json {
        println!("{}", to_json(&info));
    } else {
        println!("{}", describe(&info));
    }
    Ok(ExitCode::SUCCESS)
}

pub(crate) async fn list(
    servers: &Servers,
    pattern: &str,
    as_json: bool,
) -> Result<ExitCode, Failure> {
    let client = servers.connect().await?;
    let locks = client
        .list(pattern)
        .await
        .map_err(|e| Failure::from_lock_error(&e))?;
    if as_json {
        println!(
            "{}",
            serde_json::Value::Array(locks.iter().map(to_json).collect())
        );
    } else if locks.is_empty() {
        println!("no held locks match {pattern:?}");
    } else {
        for info in &locks {
            println!("{}", describe(info));
        }
    }
    Ok(ExitCode::SUCCESS)
}

pub(crate) async fn force_release(servers: &Servers, name: &str) -> Result<ExitCode, Failure> {
    let client = servers.connect().await?;
    match client
        .force_release(name)
        .await
        .map_err(|e| Failure::from_lock_error(&e))?
    {
        Some(holder) => println!(
            "released {name:?}, held by {} ({}); its fence counter is kept, so its writes stay fenced off",
            label_or_unknown(&holder.label),
            holder.token_fingerprint
        ),
        None => println!("{name:?} was not held"),
    }
    Ok(ExitCode::SUCCESS)
}

fn label_or_unknown(label: &str) -> &str {
    if label.is_empty() {
        "an unlabelled holder"
    } else {
        label
    }
}

/// One line per lock, for people.
fn describe(info: &LockInfo) -> String {
    if info.is_held() {
        format!("{}: {}", info.name, state(info))
    } else {
        format!("{}: free, fence {}{}", info.name, info.fence, waiters(info))
    }
}

/// Who holds a held name, its fence and its waiters (for `status`, `list` and the spinner of
/// `run`).
pub(crate) fn state(info: &LockInfo) -> String {
    let mut line = if let Some(holder) = &info.holder {
        format!("held by {}, fence {}", who(holder), info.fence)
    } else if !info.readers.is_empty() {
        let readers: Vec<String> = info.readers.iter().map(who).collect();
        format!(
            "read by {} reader(s): {}; last write's fence {}",
            readers.len(),
            readers.join(", "),
            info.fence
        )
    } else {
        let permits: Vec<String> = info
            .permits
            .iter()
            .map(|permit| {
                format!(
                    "slot {} {} fence {}",
                    permit
                        .slot
                        .map_or_else(|| "?".to_owned(), |slot| slot.to_string()),
                    who(permit),
                    permit.fence.unwrap_or_default()
                )
            })
            .collect();
        format!(
            "{} of {} permits held: {}",
            permits.len(),
            info.limit
                .map_or_else(|| "?".to_owned(), |limit| limit.to_string()),
            permits.join("; ")
        )
    };
    line.push_str(&waiters(info));
    if info.nodes > 1 {
        let _ = write!(line, ", on {} of {} nodes", info.held_on, info.nodes);
    }
    line
}

/// A holder: its label, token fingerprint and time left.
fn who(holder: &Holder) -> String {
    format!(
        "{} ({}, {})",
        label_or_unknown(&holder.label),
        holder.token_fingerprint,
        holder
            .remaining_ttl
            .map_or_else(|| "no expiry".to_owned(), |t| format!("{} left", human(t)))
    )
}

/// The waiters, if any: how many clients, how many waiting to write and to read.
fn waiters(info: &LockInfo) -> String {
    if info.waiting_clients == 0 && info.queued == 0 {
        return String::new();
    }
    let mut text = format!(
        ", {} waiting client(s), {} queued",
        info.waiting_clients, info.queued
    );
    if info.queued_readers > 0 {
        let _ = write!(
            text,
            " ({} to write, {} to read)",
            info.queued - info.queued_readers,
            info.queued_readers
        );
    }
    text
}

fn holder_json(holder: &Holder) -> serde_json::Value {
    json!({
        "label": holder.label,
        "token_fingerprint": holder.token_fingerprint,
        "remaining_ms": holder.remaining_ttl.map(|t| t.as_millis()),
        "slot": holder.slot,
        "fence": holder.fence,
    })
}

fn to_json(info: &LockInfo) -> serde_json::Value {
    let kind = if info.limit.is_some() || !info.permits.is_empty() {
        "semaphore"
    } else if !info.readers.is_empty() {
        "read"
    } else if info.holder.is_some() {
        "write"
    } else {
        "free"
    };
    json!({
        "name": info.name,
        "held": info.is_held(),
        "kind": kind,
        "holder": info.holder.as_ref().map(holder_json),
        "readers": info.readers.iter().map(holder_json).collect::<Vec<_>>(),
        "permits": info.permits.iter().map(holder_json).collect::<Vec<_>>(),
        "limit": info.limit,
        "fence": info.fence,
        "waiting_clients": info.waiting_clients,
        "queued": info.queued,
        "queued_readers": info.queued_readers,
        "held_on": info.held_on,
        "nodes": info.nodes,
    })
}
