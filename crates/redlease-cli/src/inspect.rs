//! `redlease status`, `list` and `release --force`: looking at locks, and breaking one.

use std::fmt::Write as _;
use std::process::ExitCode;

use redlease::LockInfo;
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
    let mut line = match &info.holder {
        Some(holder) => format!(
            "{}: held by {} ({}), {}, fence {}",
            info.name,
            label_or_unknown(&holder.label),
            holder.token_fingerprint,
            holder
                .remaining_ttl
                .map_or_else(|| "no expiry".to_owned(), |t| format!("{} left", human(t))),
            info.fence
        ),
        None => format!("{}: free, fence {}", info.name, info.fence),
    };
    if info.waiting_clients > 0 || info.queued > 0 {
        let _ = write!(
            line,
            ", {} waiting client(s), {} queued",
            info.waiting_clients, info.queued
        );
    }
    if info.nodes > 1 {
        let _ = write!(line, ", on {} of {} nodes", info.held_on, info.nodes);
    }
    line
}

fn to_json(info: &LockInfo) -> serde_json::Value {
    json!({
        "name": info.name,
        "held": info.holder.is_some(),
        "holder": info.holder.as_ref().map(|holder| json!({
            "label": holder.label,
            "token_fingerprint": holder.token_fingerprint,
            "remaining_ms": holder.remaining_ttl.map(|t| t.as_millis()),
        })),
        "fence": info.fence,
        "waiting_clients": info.waiting_clients,
        "queued": info.queued,
        "held_on": info.held_on,
        "nodes": info.nodes,
    })
}
