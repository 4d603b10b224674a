//! Spawning, probing and signalling `redis-server` child processes.

use std::collections::BTreeSet;
use std::ffi::OsString;
use std::fs::{self, File};
use std::io::{self, Read as _, Write as _};
use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Mutex, MutexGuard, PoisonError};
use std::thread;
use std::time::{Duration, Instant};

use nix::sys::signal::{self, Signal};
use nix::unistd::Pid;
use tempfile::TempDir;

use crate::{Error, FaultProxy, TlsCerts, redis_server_binary};

/// Name of the server's log file inside its data directory.
const LOG_FILE: &str = "redis.log";
/// Name of the file inside the data directory that receives the server's
/// stdout and stderr (normally empty; fatal config errors end up here).
const STDIO_FILE: &str = "redis.stdio";
/// How many fresh ports [`ServerBuilder::start`] tries.
const START_ATTEMPTS: usize = 5;
/// How long a starting server may take to answer `PING`.
const READY_TIMEOUT: Duration = Duration::from_secs(10);
/// How long [`RedisServer::restart`] waits for its port to become free.
const RESTART_PORT_WAIT: Duration = Duration::from_secs(3);
/// Pause between readiness probes.
const POLL_INTERVAL: Duration = Duration::from_millis(5);
/// Pause between attempts to rebind the port on restart.
const REBIND_INTERVAL: Duration = Duration::from_millis(50);
/// Connect timeout of a readiness probe.
const PROBE_CONNECT_TIMEOUT: Duration = Duration::from_millis(100);
/// Read/write timeout of a readiness probe.
const PROBE_IO_TIMEOUT: Duration = Duration::from_millis(500);
/// How many trailing log lines an error carries.
const TAIL_LINES: usize = 30;
/// What redis logs when it cannot bind its port.
const ADDR_IN_USE: &str = "Address already in use";
/// Name of the configuration file [`ServerBuilder::config`] writes in the data directory.
const CONFIG_FILE: &str = "redis.conf";

/// Configures and starts a [`RedisServer`]; obtained from
/// [`RedisServer::builder`].
#[must_use]
#[derive(Debug, Clone, Default)]
pub struct ServerBuilder {
    extra_args: Vec<String>,
    persistence: bool,
    password: Option<String>,
    config: Option<String>,
    tls: Option<TlsCerts>,
}

impl ServerBuilder {
    /// Appends one extra raw argument to the `redis-server` command line,
    /// after the testkit's own arguments, e.g.
    /// `.arg("--maxmemory-policy").arg("allkeys-lru")`.
    pub fn arg(mut self, a: impl Into<String>) -> Self {
        self.extra_args.push(a.into());
        self
    }

    /// Turns append-only-file persistence on or off (default: off).
    ///
    /// When on, the server runs with `--appendonly yes --appendfsync always`,
    /// so every acknowledged write survives [`RedisServer::kill`] followed by
    /// [`RedisServer::restart`]. When off, it runs with `--appendonly no` and
    /// (in both cases) `--save ""`, so a restart comes back empty.
    pub fn persistence(mut self, on: bool) -> Self {
        self.persistence = on;
        self
    }

    /// Requires clients to authenticate with `password` (`--requirepass`); the
    /// readiness probe authenticates with it.
    pub fn password(mut self, password: impl Into<String>) -> Self {
        self.password = Some(password.into());
        self
    }

    /// Writes `text` to a configuration file in the server's data directory
    /// and passes it as the first argument (before the testkit's own
    /// arguments, which therefore win). Needed for Sentinel, which rewrites
    /// its configuration file: `.config("sentinel monitor …").arg("--sentinel")`.
    pub fn config(mut self, text: impl Into<String>) -> Self {
        self.config = Some(text.into());
        self
    }

    /// Also listens with TLS on a second free port ([`RedisServer::tls_port`]),
    /// with `certs`' server certificate; clients are asked for a certificate
    /// signed by `certs`' CA but not required to present one (add
    /// `.arg("--tls-auth-clients").arg("yes")` to require it). The plain port
    /// stays open, for the readiness probe and for test assertions.
    pub fn tls(mut self, certs: &TlsCerts) -> Self {
        self.tls = Some(certs.clone());
        self
    }

    /// Starts the server on a free loopback port and waits until it answers
    /// `PING`.
    ///
    /// If the server exits during startup (typically because another process
    /// grabbed the port in the meantime) it is retried on a new port, a few
    /// times.
    ///
    /// # Errors
    ///
    /// Returns an error if `redis-server` cannot be found (see
    /// [`redis_server_binary`](crate::redis_server_binary)), if the temporary
    /// directory or the process cannot be created, or if the server keeps
    /// exiting or does not become ready within 10 seconds; the error then
    /// includes the tail of the server's log.
    pub fn start(self) -> Result<RedisServer, Error> {
        let binary = redis_server_binary()?;
        let dir = tempfile::Builder::new()
            .prefix("redlease-redis-")
            .tempdir()
            .map_err(|e| Error::io("cannot create a temporary directory for redis-server", e))?;
        let mut launch = Launch {
            binary,
            dir: dir.path().to_path_buf(),
            persistence: self.persistence,
            extra_args: self.extra_args,
            password: self.password,
            config: None,
            tls_port: None,
            tls: false,
        };
        if let Some(text) = &self.config {
            let path = dir.path().join(CONFIG_FILE);
            fs::write(&path, text)
                .map_err(|e| Error::io(format!("cannot write {}", path.display()), e))?;
            launch.config = Some(path);
        }
        if let Some(certs) = &self.tls {
            for (name, pem) in [
                ("ca.crt", &certs.ca_pem),
                ("server.crt", &certs.server_cert_pem),
                ("server.key", &certs.server_key_pem),
            ] {
                let path = dir.path().join(name);
                fs::write(&path, pem)
                    .map_err(|e| Error::io(format!("cannot write {}", path.display()), e))?;
            }
            launch.tls = true;
        }
        let mut last_error = None;
        for _ in 0..START_ATTEMPTS {
            let port = free_port()?;
            if launch.tls {
                launch.tls_port = Some(loop {
                    let tls_port = free_port()?;
                    if tls_port != port {
                        break tls_port;
                    }
                });
            }
            match launch.start_on(port) {
                Ok(child) => {
                    return Ok(RedisServer {
                        child: Mutex::new(Some(child)),
                        port,
                        paused: false,
                        launch,
                        dir,
                    });
                }
                Err(failure) if failure.exited_early => last_error = Some(failure.error),
                Err(failure) => return Err(failure.error),
            }
        }
        Err(last_error.unwrap_or_else(|| Error::new("redis-server was never started")))
    }
}

/// A running (or deliberately killed or paused) `redis-server` child process
/// listening on `127.0.0.1`, with its own temporary data directory.
///
/// Dropping it resumes the process if it is paused, kills it with `SIGKILL`,
/// reaps it and removes the data directory.
#[derive(Debug)]
pub struct RedisServer {
    /// `None` while killed. In a mutex only so that [`Self::is_running`] can
    /// poll it through `&self`.
    child: Mutex<Option<Child>>,
    port: u16,
    paused: bool,
    launch: Launch,
    /// Declared last so the directory is removed after the process is gone.
    dir: TempDir,
}

impl RedisServer {
    /// Starts a server with the default configuration; the same as
    /// `RedisServer::builder().start()`.
    ///
    /// # Errors
    ///
    /// See [`ServerBuilder::start`].
    pub fn start() -> Result<Self, Error> {
        Self::builder().start()
    }

    /// Returns a builder for a server with extra arguments or persistence.
    pub fn builder() -> ServerBuilder {
        ServerBuilder::default()
    }

    /// The TCP port the server listens on (unchanged by restarts).
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The server's address, `127.0.0.1:port`.
    pub fn addr(&self) -> SocketAddr {
        SocketAddr::from((Ipv4Addr::LOCALHOST, self.port))
    }

    /// The server's URL, `redis://127.0.0.1:port`.
    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    /// The TLS port of a server started with [`ServerBuilder::tls`].
    pub fn tls_port(&self) -> Option<u16> {
        self.launch.tls_port
    }

    /// The TLS URL, `rediss://127.0.0.1:tls_port`, of a server started with
    /// [`ServerBuilder::tls`].
    pub fn tls_url(&self) -> Option<String> {
        self.tls_port()
            .map(|port| format!("rediss://127.0.0.1:{port}"))
    }

    /// Starts a [`FaultProxy`] in front of this server: clients that connect
    /// to the proxy's address reach this server, subject to the proxy's
    /// [`Fault`](crate::Fault). The proxy keeps forwarding to the same port
    /// across [`restart`](Self::restart)s.
    ///
    /// # Errors
    ///
    /// See [`FaultProxy::start`].
    pub fn proxy(&self) -> Result<FaultProxy, Error> {
        FaultProxy::start(self.addr())
    }

    /// The process id of the server, or `None` while it is killed.
    pub fn pid(&self) -> Option<u32> {
        self.lock_child().as_ref().map(Child::id)
    }

    /// Whether the server process is alive (a paused server counts as
    /// running; one that was killed or has crashed does not).
    pub fn is_running(&self) -> bool {
        self.lock_child()
            .as_mut()
            .is_some_and(|child| matches!(child.try_wait(), Ok(None)))
    }

    /// Kills the server with `SIGKILL` (after `SIGCONT` if it is paused) and
    /// waits for it to exit. Does nothing if it is already killed.
    pub fn kill(&mut self) {
        let paused = std::mem::take(&mut self.paused);
        let Some(mut child) = self.child_mut().take() else {
            return;
        };
        if paused {
            // Not strictly needed for SIGKILL, but leaves nothing stopped.
            let _ = signal_child(&mut child, Signal::SIGCONT);
        }
        // Errors here mean the process has already exited; wait() reaps it.
        let _ = child.kill();
        let _ = child.wait();
    }

    /// Kills the server if it is running and starts it again on the same
    /// port, with the same arguments and the same data directory (so with
    /// [`persistence`](ServerBuilder::persistence) on, the data is reloaded).
    /// Waits until the server answers `PING`.
    ///
    /// # Errors
    ///
    /// Returns an error if the process cannot be spawned, if the port stays
    /// taken by another process for about 3 seconds, or if the server exits
    /// or does not become ready within 10 seconds; the error then includes the
    /// tail of the server's log. The server is left killed.
    pub fn restart(&mut self) -> Result<(), Error> {
        self.kill();
        let deadline = Instant::now() + RESTART_PORT_WAIT;
        loop {
            match self.launch.start_on(self.port) {
                Ok(child) => {
                    *self.child_mut() = Some(child);
                    return Ok(());
                }
                Err(failure) if failure.addr_in_use && Instant::now() < deadline => {
                    thread::sleep(REBIND_INTERVAL);
                }
                Err(failure) => return Err(failure.error),
            }
        }
    }

    /// Stops the server with `SIGSTOP`: it keeps its connections and data but
    /// answers nothing until [`resume`](Self::resume)d. Does nothing if it is
    /// already paused.
    ///
    /// # Errors
    ///
    /// Returns an error if the server is not running or the signal cannot be
    /// sent.
    pub fn pause(&mut self) -> Result<(), Error> {
        if self.paused && self.is_running() {
            return Ok(());
        }
        self.signal(Signal::SIGSTOP)?;
        self.paused = true;
        Ok(())
    }

    /// Continues a [`pause`](Self::pause)d server with `SIGCONT`.
    ///
    /// # Errors
    ///
    /// Returns an error if the server is not running or the signal cannot be
    /// sent.
    pub fn resume(&mut self) -> Result<(), Error> {
        self.signal(Signal::SIGCONT)?;
        self.paused = false;
        Ok(())
    }

    /// The contents of the server's log file so far, across restarts
    /// (empty if it cannot be read). Handy when a test fails.
    pub fn log(&self) -> String {
        fs::read(self.dir.path().join(LOG_FILE))
            .map(|bytes| String::from_utf8_lossy(&bytes).into_owned())
            .unwrap_or_default()
    }

    /// Sends `sig` to the live server process.
    fn signal(&mut self, sig: Signal) -> Result<(), Error> {
        let port = self.port;
        match self.child_mut().as_mut() {
            Some(child) => signal_child(child, sig).map_err(|e| {
                Error::io(
                    format!("cannot send {sig} to redis-server on port {port}"),
                    e,
                )
            }),
            None => Err(Error::new(format!(
                "cannot send {sig}: redis-server on port {port} has been killed"
            ))),
        }
    }

    fn lock_child(&self) -> MutexGuard<'_, Option<Child>> {
        self.child.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn child_mut(&mut self) -> &mut Option<Child> {
        self.child.get_mut().unwrap_or_else(PoisonError::into_inner)
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Starts `n` independent servers (in parallel threads).
///
/// # Errors
///
/// Returns the first error if any server fails to start; the servers that did
/// start are then stopped again.
pub fn start_nodes(n: usize) -> Result<Vec<RedisServer>, Error> {
    thread::scope(|scope| {
        let handles: Vec<_> = (0..n).map(|_| scope.spawn(RedisServer::start)).collect();
        let mut servers = Vec::with_capacity(n);
        let mut first_error = None;
        for handle in handles {
            match handle.join() {
                Ok(Ok(server)) => servers.push(server),
                Ok(Err(e)) => {
                    first_error.get_or_insert(e);
                }
                Err(_) => {
                    first_error.get_or_insert_with(|| {
                        Error::new("a thread starting redis-server panicked")
                    });
                }
            }
        }
        match first_error {
            Some(e) => Err(e),
            None => Ok(servers),
        }
    })
}

/// Everything needed to (re)spawn the same server.
#[derive(Debug)]
struct Launch {
    binary: PathBuf,
    dir: PathBuf,
    persistence: bool,
    extra_args: Vec<String>,
    password: Option<String>,
    /// A configuration file, passed first.
    config: Option<PathBuf>,
    /// The TLS port, when TLS is on.
    tls_port: Option<u16>,
    /// TLS files (`ca.crt`, `server.crt`, `server.key`) are in `dir`.
    tls: bool,
}

/// Why [`Launch::start_on`] failed.
struct Failure {
    error: Error,
    /// The process exited before becoming ready (retrying may help).
    exited_early: bool,
    /// The log says the port was taken.
    addr_in_use: bool,
}

impl Failure {
    fn fatal(error: Error) -> Self {
        Self {
            error,
            exited_early: false,
            addr_in_use: false,
        }
    }
}

/// Whether `binary` has the `enable-debug-command` option (Redis 7 and every Valkey): Redis
/// 6.2 refuses it, and allows `DEBUG` without it. Asked once per binary; a binary that does not
/// say its version is taken to be a current one.
fn gates_debug_command(binary: &Path) -> bool {
    static ANSWERS: Mutex<Vec<(PathBuf, bool)>> = Mutex::new(Vec::new());
    let mut answers = ANSWERS.lock().unwrap_or_else(PoisonError::into_inner);
    if let Some((_, gates)) = answers.iter().find(|(known, _)| known == binary) {
        return *gates;
    }
    // "Redis server v=6.2.14 sha=…" or "Valkey server v=8.1.8 sha=…".
    let major = Command::new(binary)
        .arg("--version")
        .output()
        .ok()
        .and_then(|output| {
            let text = String::from_utf8_lossy(&output.stdout).into_owned();
            let version = text.split_once("v=")?.1;
            version.split('.').next()?.parse::<u32>().ok()
        });
    let gates = major.is_none_or(|major| major >= 7);
    answers.push((binary.to_path_buf(), gates));
    gates
}

/// Why a started process did not become ready.
enum NotReady {
    Exited(ExitStatus),
    TimedOut,
    Wait(io::Error),
}

impl Launch {
    fn log_path(&self) -> PathBuf {
        self.dir.join(LOG_FILE)
    }

    /// The full `redis-server` command line for `port`.
    fn args(&self, port: u16) -> Vec<OsString> {
        let appendonly: &[&str] = if self.persistence {
            &["--appendonly", "yes", "--appendfsync", "always"]
        } else {
            &["--appendonly", "no"]
        };
        let mut args: Vec<OsString> = self
            .config
            .iter()
            .map(|path| path.clone().into_os_string())
            .collect();
        args.extend(["--port", &port.to_string(), "--bind", "127.0.0.1"].map(OsString::from));
        // `--save ""`: an empty argument, which disables RDB snapshots.
        args.extend(["--save", ""].map(OsString::from));
        args.extend(appendonly.iter().map(OsString::from));
        args.push("--dir".into());
        args.push(self.dir.clone().into_os_string());
        args.extend(
            [
                "--daemonize",
                "no",
                "--protected-mode",
                "no",
                "--loglevel",
                "notice",
            ]
            .map(OsString::from),
        );
        args.push("--logfile".into());
        args.push(self.log_path().into_os_string());
        if gates_debug_command(&self.binary) {
            args.extend(["--enable-debug-command", "local"].map(OsString::from));
        }
        if let Some(password) = &self.password {
            args.extend(["--requirepass", password].map(OsString::from));
        }
        if let Some(tls_port) = self.tls_port.filter(|_| self.tls) {
            args.extend(["--tls-port", &tls_port.to_string()].map(OsString::from));
            for (option, file) in [
                ("--tls-cert-file", "server.crt"),
                ("--tls-key-file", "server.key"),
                ("--tls-ca-cert-file", "ca.crt"),
            ] {
                args.push(option.into());
                args.push(self.dir.join(file).into_os_string());
            }
            args.extend(["--tls-auth-clients", "optional"].map(OsString::from));
        }
        args.extend(self.extra_args.iter().map(OsString::from));
        args
    }

    /// Spawns the server on `port` and waits until it is ready; on failure
    /// the process is killed and reaped.
    fn start_on(&self, port: u16) -> Result<Child, Failure> {
        let log_path = self.log_path();
        let stdio_path = self.dir.join(STDIO_FILE);
        // Only log lines written by this attempt matter for diagnosis.
        let log_offset = fs::metadata(&log_path).map_or(0, |m| m.len());
        let stdout = File::create(&stdio_path).map_err(|e| {
            Failure::fatal(Error::io(
                format!("cannot create {}", stdio_path.display()),
                e,
            ))
        })?;
        let stderr = stdout.try_clone().map_err(|e| {
            Failure::fatal(Error::io(
                format!("cannot reopen {}", stdio_path.display()),
                e,
            ))
        })?;
        let mut child = Command::new(&self.binary)
            .args(self.args(port))
            .stdin(Stdio::null())
            .stdout(stdout)
            .stderr(stderr)
            .spawn()
            .map_err(|e| {
                Failure::fatal(Error::io(
                    format!("cannot spawn {}", self.binary.display()),
                    e,
                ))
            })?;
        let not_ready = match wait_ready(&mut child, port, self.password.as_deref()) {
            Ok(()) => return Ok(child),
            Err(not_ready) => not_ready,
        };
        let _ = child.kill();
        let _ = child.wait();
        let tail = self.tail(log_offset, &stdio_path);
        let addr_in_use = tail.contains(ADDR_IN_USE);
        let (error, exited_early) = match not_ready {
            NotReady::Exited(status) => (
                Error::new(format!(
                    "redis-server on port {port} exited during startup ({status})"
                )),
                true,
            ),
            NotReady::TimedOut => (
                Error::new(format!(
                    "redis-server on port {port} did not answer PING within {} s",
                    READY_TIMEOUT.as_secs()
                )),
                false,
            ),
            NotReady::Wait(e) => (
                Error::io(
                    format!("cannot check the redis-server process on port {port}"),
                    e,
                ),
                false,
            ),
        };
        Err(Failure {
            error: error.with_log_tail(tail),
            exited_early,
            addr_in_use,
        })
    }

    /// The last lines the current attempt wrote to the log and to
    /// stdout/stderr.
    fn tail(&self, log_offset: u64, stdio_path: &Path) -> String {
        let log = read_from(&self.log_path(), log_offset);
        let stdio = read_from(stdio_path, 0);
        let mut out = last_lines(&log, TAIL_LINES);
        if !stdio.trim().is_empty() {
            if !out.is_empty() {
                out.push_str("--- redis-server stdout/stderr ---\n");
            }
            out.push_str(&last_lines(&stdio, TAIL_LINES));
        }
        out
    }
}

/// The contents of `path` from byte `offset` on (empty if unreadable).
fn read_from(path: &Path, offset: u64) -> String {
    let bytes = fs::read(path).unwrap_or_default();
    let start = usize::try_from(offset)
        .unwrap_or(usize::MAX)
        .min(bytes.len());
    String::from_utf8_lossy(&bytes[start..]).into_owned()
}

/// The last `n` lines of `text`, each newline-terminated.
fn last_lines(text: &str, n: usize) -> String {
    let lines: Vec<&str> = text.lines().collect();
    let mut out = String::new();
    for line in &lines[lines.len().saturating_sub(n)..] {
        out.push_str(line);
        out.push('\n');
    }
    out
}

/// A port on 127.0.0.1 that was free a moment ago.
///
/// A port is handed out once per process: a killed server's port is free again, and a test
/// that killed it expects nothing to answer there, so another test's server must not take it.
fn free_port() -> Result<u16, Error> {
    static HANDED_OUT: Mutex<BTreeSet<u16>> = Mutex::new(BTreeSet::new());
    for _ in 0..1000 {
        let port = TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
            .and_then(|listener| listener.local_addr())
            .map(|addr| addr.port())
            .map_err(|e| Error::io("cannot find a free TCP port on 127.0.0.1", e))?;
        if HANDED_OUT
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(port)
        {
            return Ok(port);
        }
    }
    Err(Error::new(
        "every free TCP port the system offered was handed out before",
    ))
}

/// Waits until `child` answers on `port`, exits, or [`READY_TIMEOUT`] passes.
fn wait_ready(child: &mut Child, port: u16, password: Option<&str>) -> Result<(), NotReady> {
    let deadline = Instant::now() + READY_TIMEOUT;
    let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, port));
    loop {
        match child.try_wait() {
            Ok(Some(status)) => return Err(NotReady::Exited(status)),
            Ok(None) => {}
            Err(e) => return Err(NotReady::Wait(e)),
        }
        if probe(addr, child.id(), password).unwrap_or(false) {
            return Ok(());
        }
        if Instant::now() >= deadline {
            return Err(NotReady::TimedOut);
        }
        thread::sleep(POLL_INTERVAL);
    }
}

/// Whether the server at `addr` answers `PING` (so it is done loading data)
/// and is really process `pid` (not another test's server that won a race
/// for the same port).
fn probe(addr: SocketAddr, pid: u32, password: Option<&str>) -> io::Result<bool> {
    let mut stream = TcpStream::connect_timeout(&addr, PROBE_CONNECT_TIMEOUT)?;
    stream.set_read_timeout(Some(PROBE_IO_TIMEOUT))?;
    stream.set_write_timeout(Some(PROBE_IO_TIMEOUT))?;
    if let Some(password) = password {
        let auth = format!("*2\r\n$4\r\nAUTH\r\n${}\r\n{password}\r\n", password.len());
        stream.write_all(auth.as_bytes())?;
        if !read_reply(&mut stream)?.starts_with(b"+OK") {
            return Ok(false);
        }
    }
    stream.write_all(b"PING\r\n")?;
    let reply = read_reply(&mut stream)?;
    if !reply.starts_with(b"+PONG") {
        return Ok(false);
    }
    stream.write_all(b"INFO server\r\n")?;
    let reply = read_reply(&mut stream)?;
    let needle = format!("\nprocess_id:{pid}\r\n");
    Ok(String::from_utf8_lossy(&reply).contains(&needle))
}

/// Reads one RESP reply that is a simple string, an error or a bulk string.
fn read_reply(stream: &mut TcpStream) -> io::Result<Vec<u8>> {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    loop {
        let n = stream.read(&mut chunk)?;
        if n == 0 {
            return Err(io::ErrorKind::UnexpectedEof.into());
        }
        buf.extend_from_slice(&chunk[..n]);
        if let Some(header_end) = buf.windows(2).position(|w| w == b"\r\n") {
            if buf.first() != Some(&b'$') {
                return Ok(buf);
            }
            let len: i64 = std::str::from_utf8(&buf[1..header_end])
                .ok()
                .and_then(|s| s.parse().ok())
                .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidData, "bad bulk header"))?;
            let body = usize::try_from(len).map_or(0, |len| len + 2);
            if buf.len() >= header_end + 2 + body {
                return Ok(buf);
            }
        }
    }
}

/// Sends `sig` to `child` unless it has already exited (and been reaped, in
/// which case its pid might belong to someone else by now).
fn signal_child(child: &mut Child, sig: Signal) -> io::Result<()> {
    if child.try_wait()?.is_some() {
        return Err(io::Error::other("the process has exited"));
    }
    let pid = i32::try_from(child.id())
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "pid out of range"))?;
    signal::kill(Pid::from_raw(pid), sig).map_err(io::Error::from)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn last_lines_keeps_the_end() {
        assert_eq!(last_lines("a\nb\nc\n", 2), "b\nc\n");
        assert_eq!(last_lines("a", 5), "a\n");
        assert_eq!(last_lines("", 5), "");
    }

    #[test]
    fn args_follow_the_documented_command_line() {
        let launch = Launch {
            binary: "redis-server".into(),
            dir: "/tmp/x".into(),
            persistence: false,
            extra_args: vec!["--maxmemory-policy".into(), "allkeys-lru".into()],
            password: None,
            config: None,
            tls_port: None,
            tls: false,
        };
        let args: Vec<String> = launch
            .args(7000)
            .into_iter()
            .map(|a| a.into_string().expect("utf-8"))
            .collect();
        let expected = [
            "--port",
            "7000",
            "--bind",
            "127.0.0.1",
            "--save",
            "",
            "--appendonly",
            "no",
            "--dir",
            "/tmp/x",
            "--daemonize",
            "no",
            "--protected-mode",
            "no",
            "--loglevel",
            "notice",
            "--logfile",
            "/tmp/x/redis.log",
            "--enable-debug-command",
            "local",
            "--maxmemory-policy",
            "allkeys-lru",
        ];
        assert_eq!(args, expected);

        let persistent = Launch {
            persistence: true,
            extra_args: Vec::new(),
            ..launch
        };
        let args: Vec<String> = persistent
            .args(7000)
            .into_iter()
            .map(|a| a.into_string().expect("utf-8"))
            .collect();
        assert_eq!(
            args[4..10],
            [
                "--save",
                "",
                "--appendonly",
                "yes",
                "--appendfsync",
                "always"
            ]
        );
    }
}
