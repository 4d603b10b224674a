//! The bad-input matrix: every invalid configuration and argument the library rejects, each
//! run as its own task with a deadline, so a panic or a hang is caught and reported instead
//! of taking the harness down. Each case asserts the *specific* error.

use std::fmt::Write as _;
use std::future::Future;
use std::pin::Pin;
use std::time::{Duration, Instant};

use redlease::{Client, ConfigError, Error, LockOptions, MAX_NAME_LEN, MAX_TTL, Retry};
use redlease_testkit::RedisServer;

use crate::worker::error_kind;

/// How long one case may take before it counts as a hang.
const CASE_DEADLINE: Duration = Duration::from_secs(8);
/// A password that must never appear in an error.
const SECRET: &str = "hunter2-secret";

type Check = Pin<Box<dyn Future<Output = Result<(), String>> + Send>>;
/// Which configuration error a case expects.
type Wanted = fn(&ConfigError) -> bool;

struct Case {
    name: String,
    expect: &'static str,
    check: Check,
}

/// How one case ended.
#[derive(Debug, Clone)]
pub(crate) struct CaseResult {
    pub(crate) name: String,
    pub(crate) expect: &'static str,
    /// `None` if it passed.
    pub(crate) problem: Option<String>,
    pub(crate) took: Duration,
}

fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

/// The `ConfigError` inside `result`, or why there is none.
fn config<T>(result: Result<T, Error>) -> Result<ConfigError, String> {
    match result {
        Err(Error::InvalidConfig(e)) => {
            let shown = format!("{e} {e:?}");
            if shown.contains(SECRET) {
                return Err(format!("the error shows the password: {shown}"));
            }
            Ok(e)
        }
        Err(other) => Err(format!("got {}: {other}", error_kind(&other))),
        Ok(_) => Err("accepted".into()),
    }
}

fn expect_config<T>(
    result: Result<T, Error>,
    wanted: impl Fn(&ConfigError) -> bool,
) -> Result<(), String> {
    let e = config(result)?;
    if wanted(&e) {
        Ok(())
    } else {
        Err(format!("wrong config error: {e:?}"))
    }
}

fn expect_error<T>(
    result: Result<T, Error>,
    wanted: impl Fn(&Error) -> bool,
) -> Result<Error, String> {
    match result {
        Err(e) if wanted(&e) => {
            let shown = format!("{e} {e:?}");
            if shown.contains(SECRET) {
                return Err(format!("the error shows the password: {shown}"));
            }
            Ok(e)
        }
        Err(e) => Err(format!("got {}: {e}", error_kind(&e))),
        Ok(_) => Err("succeeded".into()),
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map_or(1, |a| a.port())
}

async fn client(url: String) -> Result<Client, String> {
    Client::builder()
        .url(url)
        .prefix("matrix:")
        .build()
        .await
        .map_err(|e| format!("setup: {e}"))
}

/// Runs the matrix; returns one result per case.
///
/// # Errors
///
/// When the servers it needs cannot be started.
pub(crate) fn run() -> Result<Vec<CaseResult>, String> {
    let server = RedisServer::start().map_err(|e| e.to_string())?;
    let guarded = RedisServer::builder()
        .password("right-password")
        .start()
        .map_err(|e| e.to_string())?;
    let mut paused = RedisServer::start().map_err(|e| e.to_string())?;
    paused.pause().map_err(|e| e.to_string())?;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| e.to_string())?;
    let cases = cases(&server.url(), guarded.port(), &paused.url());
    let results = runtime.block_on(async {
        let mut results = Vec::with_capacity(cases.len());
        for case in cases {
            let started = Instant::now();
            let task = tokio::spawn(case.check);
            let problem = match tokio::time::timeout(CASE_DEADLINE, task).await {
                Ok(Ok(Ok(()))) => None,
                Ok(Ok(Err(problem))) => Some(problem),
                Ok(Err(join)) if join.is_panic() => Some("PANICKED".into()),
                Ok(Err(join)) => Some(format!("task failed: {join}")),
                Err(_) => Some(format!("HUNG (no answer within {CASE_DEADLINE:?})")),
            };
            results.push(CaseResult {
                name: case.name,
                expect: case.expect,
                problem,
                took: started.elapsed(),
            });
        }
        results
    });
    let _ = paused.resume();
    Ok(results)
}

#[allow(clippy::too_many_lines)]
fn cases(url: &str, guarded_port: u16, paused_url: &str) -> Vec<Case> {
    let mut cases: Vec<Case> = Vec::new();
    let mut add = |name: String, expect: &'static str, check: Check| {
        cases.push(Case {
            name,
            expect,
            check,
        });
    };
    let u = url.to_owned();

    // TTLs.
    let ttl_cases: [(&str, Duration, &'static str, Wanted); 4] = [
        ("TTL of zero", Duration::ZERO, "ZeroTtl", |e| {
            matches!(e, ConfigError::ZeroTtl)
        }),
        (
            "TTL one millisecond above MAX_TTL",
            MAX_TTL + ms(1),
            "TtlTooLarge",
            |e| matches!(e, ConfigError::TtlTooLarge { .. }),
        ),
        ("TTL of Duration::MAX", Duration::MAX, "TtlTooLarge", |e| {
            matches!(e, ConfigError::TtlTooLarge { .. })
        }),
        (
            "TTL of 2 ms (not above the 2 ms drift floor)",
            ms(2),
            "TtlNotAboveDrift",
            |e| matches!(e, ConfigError::TtlNotAboveDrift { .. }),
        ),
    ];
    for (name, ttl, expect, wanted) in ttl_cases {
        let u = u.clone();
        add(
            format!("try_acquire: {name}"),
            expect,
            Box::pin(async move {
                let c = client(u.clone()).await?;
                expect_config(c.try_acquire("m", ttl).await, wanted)?;
                let options = LockOptions::new(ttl);
                expect_config(c.acquire("m", &options).await, wanted)
            }),
        );
    }
    let u2 = u.clone();
    add(
        "TTL of 10 ms with drift factor 0.9 (drift 11 ms)".into(),
        "TtlNotAboveDrift",
        Box::pin(async move {
            let c = Client::builder()
                .url(u2)
                .drift_factor(0.9)
                .build()
                .await
                .map_err(|e| format!("setup: {e}"))?;
            expect_config(c.try_acquire("m", ms(10)).await, |e| {
                matches!(e, ConfigError::TtlNotAboveDrift { .. })
            })
        }),
    );
    for (name, ttl, expect, wanted) in [
        (
            "extend(0)",
            Duration::ZERO,
            "ZeroTtl",
            (|e| matches!(e, ConfigError::ZeroTtl)) as Wanted,
        ),
        ("extend(Duration::MAX)", Duration::MAX, "TtlTooLarge", |e| {
            matches!(e, ConfigError::TtlTooLarge { .. })
        }),
    ] {
        let u = u.clone();
        add(
            format!("{name} on a held guard (the guard stays held)"),
            expect,
            Box::pin(async move {
                let c = client(u).await?;
                let mut guard = c
                    .try_acquire(&format!("extend-{expect}"), Duration::from_secs(2))
                    .await
                    .map_err(|e| format!("setup: {e}"))?;
                expect_config(guard.extend(ttl).await, wanted)?;
                if !guard.is_held() {
                    return Err("a rejected extend ended the lease".into());
                }
                guard.release().await.map_err(|e| e.to_string())?;
                Ok(())
            }),
        );
    }
    let u2 = u.clone();
    add(
        "max_hold shorter than the TTL".into(),
        "HoldCapBelowTtl",
        Box::pin(async move {
            let c = client(u2).await?;
            let options = LockOptions::new(Duration::from_secs(2))
                .auto_renew(true)
                .max_hold(Duration::from_secs(1));
            expect_config(c.acquire("m", &options).await, |e| {
                matches!(e, ConfigError::HoldCapBelowTtl { .. })
            })
        }),
    );
    let u2 = u.clone();
    add(
        "fair mode with 3 nodes".into(),
        "FairNeedsOneNode",
        Box::pin(async move {
            let base = u2.trim_end_matches('/').to_owned();
            let c = Client::builder()
                .url(format!("{base}/0"))
                .url(format!("{base}/1"))
                .url(format!("{base}/2"))
                .build()
                .await
                .map_err(|e| format!("setup (3 databases are 3 distinct nodes): {e}"))?;
            let options = LockOptions::new(Duration::from_secs(1)).fair(true);
            expect_config(c.acquire("m", &options).await, |e| {
                matches!(e, ConfigError::FairNeedsOneNode)
            })
        }),
    );

    // Names and prefixes.
    let long_name = "n".repeat(MAX_NAME_LEN + 1);
    let name_cases: [(String, String, &'static str, Wanted); 5] = [
        ("empty name".into(), String::new(), "EmptyName", |e| {
            matches!(e, ConfigError::EmptyName)
        }),
        (
            format!("name of {} bytes", MAX_NAME_LEN + 1),
            long_name,
            "NameTooLong",
            |e| matches!(e, ConfigError::NameTooLong { .. }),
        ),
        ("name with '{'".into(), "a{b".into(), "NameHasBraces", |e| {
            matches!(e, ConfigError::NameHasBraces)
        }),
        ("name with '}'".into(), "}x".into(), "NameHasBraces", |e| {
            matches!(e, ConfigError::NameHasBraces)
        }),
        (
            "name that is a hash tag".into(),
            "{x}".into(),
            "NameHasBraces",
            |e| matches!(e, ConfigError::NameHasBraces),
        ),
    ];
    for (label, name, expect, wanted) in name_cases {
        let u = u.clone();
        add(
            format!("try_acquire/acquire: {label}"),
            expect,
            Box::pin(async move {
                let c = client(u).await?;
                expect_config(c.try_acquire(&name, Duration::from_secs(1)).await, wanted)?;
                let options = LockOptions::new(Duration::from_secs(1));
                expect_config(c.acquire(&name, &options).await, wanted)
            }),
        );
    }
    for (label, prefix) in [
        ("prefix with braces", "a{b}:".to_owned()),
        (
            "prefix longer than 1024 bytes",
            "p".repeat(MAX_NAME_LEN + 1),
        ),
    ] {
        let u = u.clone();
        add(
            format!("builder: {label}"),
            "InvalidPrefix",
            Box::pin(async move {
                expect_config(Client::builder().url(u).prefix(prefix).build().await, |e| {
                    matches!(e, ConfigError::InvalidPrefix(_))
                })
            }),
        );
    }

    // Client settings.
    for factor in [f64::NAN, f64::INFINITY, -0.1, 1.0, 1.5] {
        let u = u.clone();
        add(
            format!("builder: drift factor {factor}"),
            "InvalidDriftFactor",
            Box::pin(async move {
                expect_config(
                    Client::builder().url(u).drift_factor(factor).build().await,
                    |e| matches!(e, ConfigError::InvalidDriftFactor(_)),
                )
            }),
        );
    }
    for which in ["connect", "command"] {
        let u = u.clone();
        add(
            format!("builder: {which} timeout of zero"),
            "ZeroTimeout",
            Box::pin(async move {
                let builder = Client::builder().url(u);
                let builder = if which == "connect" {
                    builder.connect_timeout(Duration::ZERO)
                } else {
                    builder.command_timeout(Duration::ZERO)
                };
                expect_config(builder.build().await, |e| {
                    matches!(e, ConfigError::ZeroTimeout(_))
                })
            }),
        );
    }
    for (label, retry) in [
        ("max_attempts(0)", Retry::fixed(ms(10)).max_attempts(0)),
        ("a fixed delay of zero", Retry::fixed(Duration::ZERO)),
        (
            "an exponential backoff starting at zero",
            Retry::exponential(Duration::ZERO, Duration::from_secs(1)),
        ),
    ] {
        let u = u.clone();
        add(
            format!("retry policy with {label}"),
            "InvalidRetry",
            Box::pin(async move {
                let c = client(u).await?;
                let options = LockOptions::new(Duration::from_secs(1)).retry(retry);
                expect_config(c.acquire("m", &options).await, |e| {
                    matches!(e, ConfigError::InvalidRetry(_))
                })
            }),
        );
    }

    // Nodes and URLs.
    let port = url.rsplit(':').next().unwrap_or("0").to_owned();
    for (label, second) in [
        ("the same URL twice", url.to_owned()),
        (
            "localhost and 127.0.0.1 on the same port",
            format!("redis://localhost:{port}"),
        ),
    ] {
        let first = url.to_owned();
        add(
            format!("builder: {label}"),
            "DuplicateNode",
            Box::pin(async move {
                expect_config(
                    Client::builder()
                        .url(first.clone())
                        .url(second)
                        .url(format!("{first}/3"))
                        .build()
                        .await,
                    |e| matches!(e, ConfigError::DuplicateNode { .. }),
                )
            }),
        );
    }
    for bad in [
        String::new(),
        "not a url".to_owned(),
        "http://127.0.0.1:6379".to_owned(),
        "redis://127.0.0.1:notaport".to_owned(),
        "redis://127.0.0.1:6379/notadb".to_owned(),
        format!("redis://:{SECRET}@127.0.0.1:99999"),
    ] {
        add(
            format!("URL {:?}", bad.replace(SECRET, "***")),
            "MalformedUrl (password not shown)",
            Box::pin(async move {
                expect_config(Client::connect(&bad).await, |e| {
                    matches!(e, ConfigError::MalformedUrl { .. })
                })
            }),
        );
    }
    add(
        "a server nobody listens on".into(),
        "Backend/Connection within 3 s",
        Box::pin(async move {
            let started = Instant::now();
            let e = expect_error(
                Client::connect(&format!("redis://127.0.0.1:{}", free_port())).await,
                Error::is_connection,
            )?;
            if started.elapsed() > Duration::from_secs(3) {
                return Err(format!("took {:?}: {e}", started.elapsed()));
            }
            Ok(())
        }),
    );
    let p = paused_url.to_owned();
    add(
        "a server that accepts but never answers (SIGSTOPped)".into(),
        "Backend/Timeout within 2 s",
        Box::pin(async move {
            let started = Instant::now();
            let result = async {
                let c = Client::builder()
                    .url(p)
                    .connect_timeout(ms(300))
                    .command_timeout(ms(300))
                    .build()
                    .await?;
                c.try_acquire("m", Duration::from_secs(1)).await
            }
            .await;
            expect_error(result, Error::is_timeout)?;
            if started.elapsed() > Duration::from_secs(2) {
                return Err(format!("took {:?}", started.elapsed()));
            }
            Ok(())
        }),
    );
    add(
        "a wrong password".into(),
        "Backend/Server, password not shown",
        Box::pin(async move {
            let url = format!("redis://:{SECRET}@127.0.0.1:{guarded_port}");
            expect_error(Client::connect(&url).await, |e| {
                e.is_backend() && !e.is_connection() && !e.is_timeout()
            })?;
            Ok(())
        }),
    );
    let u2 = u.clone();
    add(
        "3 nodes of which 2 are unreachable".into(),
        "NoQuorum { needed: 2 }",
        Box::pin(async move {
            let result = Client::builder()
                .url(u2)
                .url(format!("redis://127.0.0.1:{}", free_port()))
                .url(format!("redis://127.0.0.1:{}", free_port()))
                .connect_timeout(ms(500))
                .build()
                .await;
            expect_error(
                result,
                |e| matches!(e, Error::NoQuorum { needed: 2, reached, .. } if *reached < 2),
            )?;
            Ok(())
        }),
    );

    // Keys holding foreign data.
    for (label, key_suffix, setup) in [
        ("the lock key holds a list", "", "RPUSH"),
        ("the fence counter holds a non-number", ":fence", "SET"),
    ] {
        let u = u.clone();
        add(
            format!("acquire when {label}"),
            "WrongType",
            Box::pin(async move {
                let name = format!("foreign{}", key_suffix.len());
                let key = format!("matrix:{{{name}}}{key_suffix}");
                let raw = redis::Client::open(u.as_str()).map_err(|e| e.to_string())?;
                let mut con = raw
                    .get_multiplexed_async_connection()
                    .await
                    .map_err(|e| e.to_string())?;
                redis::cmd("DEL")
                    .arg(&key)
                    .query_async::<()>(&mut con)
                    .await
                    .map_err(|e| e.to_string())?;
                redis::cmd(setup)
                    .arg(&key)
                    .arg("not-a-lock")
                    .query_async::<()>(&mut con)
                    .await
                    .map_err(|e| e.to_string())?;
                let c = client(u).await?;
                let result = c.try_acquire(&name, Duration::from_secs(1)).await;
                expect_error(result, |e| matches!(e, Error::WrongType { .. }))?;
                let left: i64 = redis::cmd("EXISTS")
                    .arg(format!("matrix:{{{name}}}"))
                    .query_async(&mut con)
                    .await
                    .map_err(|e| e.to_string())?;
                if key_suffix == ":fence" && left != 0 {
                    return Err("a failed acquire left the lock key behind".into());
                }
                Ok(())
            }),
        );
    }

    // Contention and loss are errors too, and must be the right ones.
    let u2 = u.clone();
    add(
        "try_acquire / acquire on a held lock".into(),
        "Contended { remaining_ttl: Some }, TimedOut, Contended after max_attempts",
        Box::pin(async move {
            let c = client(u2.clone()).await?;
            let other = client(u2).await?;
            let guard = c
                .try_acquire("held", Duration::from_secs(3))
                .await
                .map_err(|e| format!("setup: {e}"))?;
            expect_error(
                other.try_acquire("held", Duration::from_secs(1)).await,
                |e| {
                    matches!(
                        e,
                        Error::Contended {
                            remaining_ttl: Some(_)
                        }
                    )
                },
            )?;
            let timed = LockOptions::new(Duration::from_secs(1))
                .retry(Retry::fixed(ms(50)).timeout(ms(200)));
            expect_error(other.acquire("held", &timed).await, |e| {
                matches!(e, Error::TimedOut { .. })
            })?;
            let counted = LockOptions::new(Duration::from_secs(1))
                .retry(Retry::fixed(ms(20)).max_attempts(2));
            expect_error(other.acquire("held", &counted).await, |e| {
                matches!(e, Error::Contended { .. })
            })?;
            guard.release().await.map_err(|e| e.to_string())?;
            Ok(())
        }),
    );
    let u2 = u.clone();
    add(
        "extend after the lease expired".into(),
        "Lost(Expired), is_held() false",
        Box::pin(async move {
            let c = client(u2).await?;
            let mut guard = c
                .try_acquire("expiring", ms(50))
                .await
                .map_err(|e| format!("setup: {e}"))?;
            tokio::time::sleep(ms(120)).await;
            expect_error(guard.extend(Duration::from_secs(1)).await, |e| {
                matches!(e, Error::Lost(redlease::Lost::Expired))
            })?;
            if guard.is_held() {
                return Err("is_held() after a failed extend".into());
            }
            Ok(())
        }),
    );
    cases
}

/// The markdown section for the matrix.
pub(crate) fn section(results: &[CaseResult]) -> String {
    let mut out = String::new();
    let failed = results.iter().filter(|r| r.problem.is_some()).count();
    let _ = writeln!(
        out,
        "## Bad-input matrix\n\n**{}**: {} case(s), {failed} failed. Each case runs as its own \
         task with an {} s deadline; a panic or a hang fails it.\n",
        if failed == 0 { "PASS" } else { "FAIL" },
        results.len(),
        CASE_DEADLINE.as_secs()
    );
    let _ = writeln!(
        out,
        "| case | expected | result | took (ms) |\n|---|---|---|---|"
    );
    for r in results {
        let _ = writeln!(
            out,
            "| {} | {} | {} | {} |",
            r.name.replace('|', "\\|"),
            r.expect,
            r.problem.as_deref().map_or_else(
                || "ok".to_owned(),
                |p| format!("**{}**", p.replace('|', "\\|"))
            ),
            r.took.as_millis()
        );
    }
    out.push('\n');
    out
}
