//! On a terminal, under a shell's job control (bash in a pseudo-terminal made by `script`):
//! the command gets the foreground and gives it back, Ctrl-C reaches it once, Ctrl-Z stops it
//! with redlease, `fg` resumes both after the lease check, or ends it if the lease ran out.

use std::io::{Read as _, Write as _};
use std::path::Path;
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use redlease_testkit::RedisServer;

use crate::{eventually, processes, running, wait_until_free, wait_until_held};

/// An interactive bash on a pseudo-terminal: what is typed, and what the terminal shows.
struct Shell {
    script: Child,
    keyboard: ChildStdin,
    screen: Arc<Mutex<String>>,
    /// How much of the screen earlier `expect`s consumed.
    seen: usize,
}

impl Shell {
    fn start() -> Self {
        let mut script = Command::new("script")
            .args(["-qfec", "bash --norc --noprofile -i", "/dev/null"])
            .env("PS1", "$ ")
            .env("TERM", "dumb")
            .env_remove("REDLEASE_REDIS")
            .env_remove("REDLEASE_PASSWORD")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("script (util-linux) runs bash on a pseudo-terminal");
        let keyboard = script.stdin.take().unwrap();
        let mut output = script.stdout.take().unwrap();
        let screen = Arc::new(Mutex::new(String::new()));
        let shown = screen.clone();
        std::thread::spawn(move || {
            let mut buffer = [0u8; 4096];
            while let Ok(n @ 1..) = output.read(&mut buffer) {
                shown
                    .lock()
                    .unwrap()
                    .push_str(&String::from_utf8_lossy(&buffer[..n]));
            }
        });
        let mut shell = Self {
            script,
            keyboard,
            screen,
            seen: 0,
        };
        shell.line("echo shell-ready");
        shell.expect("shell-ready\r\n");
        shell
    }

    fn keys(&mut self, keys: &[u8]) {
        self.keyboard.write_all(keys).unwrap();
        self.keyboard.flush().unwrap();
    }

    fn line(&mut self, line: &str) {
        self.keys(format!("{line}\n").as_bytes());
    }

    /// Waits until the terminal shows `text` after what earlier calls consumed.
    fn expect(&mut self, text: &str) {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            {
                let screen = self.screen.lock().unwrap();
                if let Some(at) = screen[self.seen..].find(text) {
                    self.seen += at + text.len();
                    return;
                }
                assert!(Instant::now() < deadline, "{text:?} never shown:\n{screen}");
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    fn shown_since(&self) -> String {
        self.screen.lock().unwrap()[self.seen..].to_owned()
    }
}

impl Drop for Shell {
    fn drop(&mut self) {
        let _ = self.script.kill();
        let _ = self.script.wait();
    }
}

/// The pid a job script wrote to `file`.
fn pid_in(file: &Path) -> i32 {
    let mut pid = None;
    assert!(eventually(Duration::from_secs(5), || {
        pid = std::fs::read_to_string(file)
            .ok()
            .and_then(|text| text.trim().parse().ok());
        pid.is_some()
    }));
    pid.unwrap()
}

fn state_of(pid: i32) -> char {
    processes()
        .iter()
        .find(|p| p.pid == pid)
        .map_or('-', |p| p.state)
}

fn parent_of(pid: i32) -> i32 {
    processes().iter().find(|p| p.pid == pid).unwrap().parent
}

#[test]
fn on_a_terminal_the_command_has_the_foreground_and_job_control_stops_and_resumes_both() {
    let server = RedisServer::start().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let (pid_file, stop_file) = (dir.path().join("pid"), dir.path().join("stop"));
    let job = dir.path().join("job.sh");
    std::fs::write(
        &job,
        format!(
            "echo $$ > {pid}\nread answer\necho got:$answer\n\
             trap 'n=$((n+1)); echo int-count-$n' INT\necho armed\n\
             while [ ! -e {stop} ]; do sleep 0.1; done\nexit 3\n",
            pid = pid_file.display(),
            stop = stop_file.display()
        ),
    )
    .unwrap();
    let run = |ttl: &str, name: &str, job: &Path| {
        format!(
            "{} --redis {} -vv run --ttl {ttl} --kill-grace 500ms {name} -- sh {}",
            env!("CARGO_BIN_EXE_redlease"),
            server.url(),
            job.display()
        )
    };
    let mut shell = Shell::start();
    shell.line(&run("20s", "interactive", &job));

    // It reads the terminal without being stopped by SIGTTIN: it is in the foreground.
    wait_until_held(&server, "interactive");
    shell.line("typed");
    shell.expect("got:typed");
    shell.expect("armed");
    let command = pid_in(&pid_file);
    let guardian = parent_of(command);
    let redlease = parent_of(guardian);

    // Ctrl-Z stops the command and redlease; the guardian stays awake.
    shell.keys(b"\x1a");
    shell.expect("Stopped");
    assert!(eventually(Duration::from_secs(2), || state_of(command)
        == 'T'
        && state_of(redlease) == 'T'));
    assert_ne!(state_of(guardian), 'T');

    // `fg` resumes both (the lease still holds), and the command has the terminal again.
    shell.line("fg");
    assert!(eventually(Duration::from_secs(5), || state_of(command)
        != 'T'
        && state_of(redlease) != 'T'));

    // SIGTSTP sent to redlease itself is forwarded: both stop again, and `fg` resumes both.
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(redlease),
        nix::sys::signal::Signal::SIGTSTP,
    )
    .unwrap();
    shell.expect("Stopped");
    assert!(eventually(Duration::from_secs(2), || state_of(command)
        == 'T'
        && state_of(redlease) == 'T'));
    shell.line("fg");
    assert!(eventually(Duration::from_secs(5), || state_of(command)
        != 'T'
        && state_of(redlease) != 'T'));

    // Ctrl-C reaches it, once.
    std::thread::sleep(Duration::from_millis(200));
    shell.keys(b"\x03");
    shell.expect("int-count-1");
    std::thread::sleep(Duration::from_millis(300));
    assert!(
        !shell.shown_since().contains("int-count-2"),
        "{}",
        shell.shown_since()
    );

    // When it exits, the shell has the terminal back: it reads the next line.
    std::fs::write(&stop_file, "").unwrap();
    assert!(eventually(Duration::from_secs(5), || running(&[redlease]).is_empty()));
    shell.line("echo status-$?");
    shell.expect("status-3");

    // Stopped for longer than the lease: the guardian ends the command before the lease
    // runs out, and `fg` finds the lease gone: 79.
    let sleeper = dir.path().join("sleeper.sh");
    let sleeper_pid = dir.path().join("sleeper-pid");
    // `exec`: dash forks `sleep` with vfork, and a Ctrl-Z that stops the child between the
    // fork and its exec leaves the parent in an unstoppable vfork wait, so that no shell
    // (nor redlease) ever sees the job stop.
    std::fs::write(
        &sleeper,
        format!("echo $$ > {}\nexec sleep 30\n", sleeper_pid.display()),
    )
    .unwrap();
    shell.line(&run("2s", "suspended", &sleeper));
    wait_until_held(&server, "suspended");
    let command = pid_in(&sleeper_pid);
    shell.keys(b"\x1a");
    shell.expect("Stopped");
    wait_until_free(&server, "suspended", Duration::from_secs(5));
    assert_eq!(running(&[command]), [], "the command outlived the lease");
    shell.line("fg");
    shell.expect("stopping the command");
    shell.line("echo status-$?");
    shell.expect("status-79");
}
