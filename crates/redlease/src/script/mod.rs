//! Lua scripts: their sources and hashes, how a call is built (with its request nonce), and
//! the reply codes every script uses the same way. Each primitive defines its own scripts and
//! their typed decoding next to them; this module knows none of them.

use std::sync::OnceLock;
use std::sync::atomic::{AtomicU64, Ordering};

use redis::{Arg, Cmd, ToRedisArgs, Value};

/// What every script starts with: the reply codes and the nonce handling.
const PRELUDE: &str = include_str!("prelude.lua");

/// Lua helpers for holds that end one by one (`server_ms`, `prune`, `expire_with_last`), for
/// the primitives that keep several holders per name.
pub(crate) const HOLDERS: &str = include_str!("holders.lua");

/// A Lua script: [`PRELUDE`] followed by its parts (shared snippets, then its own body),
/// invoked by hash with `EVALSHA`.
pub(crate) struct Script {
    parts: &'static [&'static str],
    /// The full source and its SHA-1, computed on first use.
    compiled: OnceLock<(String, String)>,
}

impl Script {
    pub(crate) const fn new(parts: &'static [&'static str]) -> Self {
        Self {
            parts,
            compiled: OnceLock::new(),
        }
    }

    fn compiled(&self) -> &(String, String) {
        self.compiled.get_or_init(|| {
            let source: String = std::iter::once(PRELUDE)
                .chain(self.parts.iter().copied())
                .collect();
            let hash = redis::Script::new(&source).get_hash().to_owned();
            (source, hash)
        })
    }

    /// The full source, for `SCRIPT LOAD` and `EVAL`.
    pub(crate) fn source(&self) -> &str {
        &self.compiled().0
    }

    /// The SHA-1 of the source, for `EVALSHA`.
    pub(crate) fn hash(&self) -> &str {
        &self.compiled().1
    }

    /// A call of this script on `keys`; add its arguments with [`Call::arg`].
    pub(crate) fn call<K: ToRedisArgs>(&'static self, keys: &[K]) -> Call {
        let nonce = next_nonce();
        // Room for a typical call (the hash, a few keys and arguments), so that building it
        // does not grow its buffers again and again.
        let mut cmd = Cmd::with_capacity(12, 256);
        cmd.arg("EVALSHA")
            .arg(self.hash())
            .arg(keys.len())
            .arg(keys)
            .arg(nonce);
        Call {
            script: self,
            cmd,
            nonce,
        }
    }
}

/// Two strings written as one argument, without joining them first.
pub(crate) struct Joined<'a>(pub(crate) &'a str, pub(crate) &'a str);

impl ToRedisArgs for Joined<'_> {
    fn write_redis_args<W: ?Sized + redis::RedisWrite>(&self, out: &mut W) {
        use std::io::Write as _;
        let mut arg = out.writer_for_next_arg();
        // Writing into the command's own buffer cannot fail.
        let _ = arg.write_all(self.0.as_bytes());
        let _ = arg.write_all(self.1.as_bytes());
    }
}

/// A number unique to one request within this process.
fn next_nonce() -> u64 {
    static NONCES: AtomicU64 = AtomicU64::new(1);
    NONCES.fetch_add(1, Ordering::Relaxed)
}

/// Plain commands sent in order on one connection, followed by `ECHO <nonce>`: their replies
/// are believed only if the last one is the nonce. A reply lost or swallowed anywhere before
/// it shifts every later reply by one, so the echo would answer another request.
pub(crate) struct Sequence {
    pipe: redis::Pipeline,
    nonce: u64,
}

impl Sequence {
    pub(crate) fn new(cmds: impl IntoIterator<Item = Cmd>) -> Self {
        let nonce = next_nonce();
        let mut pipe = redis::pipe();
        pipe.ignore_errors();
        for cmd in cmds {
            pipe.add_command(cmd);
        }
        pipe.cmd("ECHO").arg(nonce);
        Self { pipe, nonce }
    }

    /// The commands and the echo, to send (more may follow them on the same connection, such
    /// as `WAIT`).
    pub(crate) fn pipe(&self) -> &redis::Pipeline {
        &self.pipe
    }

    /// The first key of the first command (`SET key …`), to follow a Cluster redirection.
    pub(crate) fn first_key(&self) -> Option<Vec<u8>> {
        match self.pipe.cmd_iter().next()?.args_iter().nth(1) {
            Some(Arg::Simple(key)) => Some(key.to_vec()),
            _ => None,
        }
    }

    /// Checks the replies (of the commands and the echo, in order) and returns the
    /// commands' own.
    pub(crate) fn replies(
        &self,
        mut replies: Vec<redis::RedisResult<Value>>,
    ) -> Result<Vec<redis::RedisResult<Value>>, Unreadable> {
        let echoed = match replies.pop() {
            Some(Ok(Value::BulkString(echo))) => std::str::from_utf8(&echo)
                .ok()
                .and_then(|echo| echo.parse::<u64>().ok()),
            _ => None,
        };
        if echoed == Some(self.nonce) {
            Ok(replies)
        } else {
            Err(Unreadable::OutOfStep)
        }
    }
}

/// One script call: `EVALSHA <hash> <number of keys> <keys…> <nonce> <arguments…>`.
///
/// The nonce, unique to the request within this process, comes back as the last element of
/// the script's reply: a reply that carries another request's nonce means the connection has
/// lost track of which reply answers which request (a reply swallowed on a connection that
/// stayed open), and must not be believed.
pub(crate) struct Call {
    script: &'static Script,
    cmd: Cmd,
    nonce: u64,
}

impl Call {
    /// Appends an argument (`ARGV`).
    pub(crate) fn arg(mut self, arg: impl ToRedisArgs) -> Self {
        self.cmd.arg(arg);
        self
    }

    pub(crate) fn cmd(&self) -> &Cmd {
        &self.cmd
    }

    pub(crate) fn script(&self) -> &'static Script {
        self.script
    }

    /// The same call as `EVAL` with the script's source, for a server that does not have the
    /// script cached (and caches it on the way). Only a Cluster needs it.
    #[cfg(any(feature = "cluster", test))]
    pub(crate) fn as_eval(&self) -> Cmd {
        let mut eval = redis::cmd("EVAL");
        eval.arg(self.script.source());
        for arg in self.cmd.args_iter().skip(2) {
            if let Arg::Simple(bytes) = arg {
                eval.arg(bytes);
            }
        }
        eval
    }

    /// The key at `position` (1-based, as in Lua's `KEYS`).
    pub(crate) fn key(&self, position: usize) -> Option<String> {
        match self.cmd.args_iter().nth(2 + position) {
            Some(Arg::Simple(key)) if position > 0 => {
                Some(String::from_utf8_lossy(key).into_owned())
            }
            _ => None,
        }
    }

    /// Reads the script's reply, `"nonce code detail"`.
    pub(crate) fn reply(&self, value: Value) -> Result<Reply, Unreadable> {
        let Value::BulkString(bytes) = value else {
            return Err(Unreadable::Malformed);
        };
        let text = std::str::from_utf8(&bytes).map_err(|_| Unreadable::Malformed)?;
        let mut fields = text.splitn(3, ' ');
        if fields.next().and_then(|echo| echo.parse::<u64>().ok()) != Some(self.nonce) {
            return Err(Unreadable::OutOfStep);
        }
        let code = fields.next().ok_or(Unreadable::Malformed)?;
        let detail = fields.next().ok_or(Unreadable::Malformed)?;
        let code = match code {
            "1" => Code::Done,
            "0" => Code::Gone,
            "-1" => Code::Held,
            "-2" => {
                let (position, kind) = detail.split_once(' ').ok_or(Unreadable::Malformed)?;
                return Err(Unreadable::WrongType {
                    key: position
                        .parse::<usize>()
                        .ok()
                        .and_then(|p| self.key(p))
                        .unwrap_or_default(),
                    found: kind.to_owned(),
                });
            }
            _ => return Err(Unreadable::Malformed),
        };
        let detail = match detail.parse::<i64>() {
            Ok(number) => Value::Int(number),
            Err(_) => Value::BulkString(detail.as_bytes().to_vec()),
        };
        Ok(Reply { code, detail })
    }
}

/// The reply codes of every script (see `prelude.lua`), but `WRONG_TYPE`, which is read as
/// [`Unreadable::WrongType`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Code {
    /// The script did what it was asked.
    Done,
    /// The key it acts on does not exist.
    Gone,
    /// Another owner holds it.
    Held,
}

/// A script's reply: its code and detail.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Reply {
    pub(crate) code: Code,
    pub(crate) detail: Value,
}

impl Reply {
    /// The detail as an integer.
    pub(crate) fn number(&self) -> Option<i64> {
        match self.detail {
            Value::Int(n) => Some(n),
            _ => None,
        }
    }

    /// For a compare-and-act script (acts only if the key holds our token): whether it did.
    pub(crate) fn ownership(&self) -> crate::outcome::Ownership {
        use crate::outcome::Lost;
        match self.code {
            Code::Done => Ok(()),
            Code::Gone => Err(Lost::Expired),
            Code::Held => Err(Lost::HeldByOther),
        }
    }

    /// The detail as text (a value read from a key).
    pub(crate) fn text(&self) -> Option<String> {
        text(&self.detail)
    }
}

fn text(value: &Value) -> Option<String> {
    match value {
        Value::BulkString(bytes) => Some(String::from_utf8_lossy(bytes).into_owned()),
        Value::SimpleString(s) => Some(s.clone()),
        Value::Int(n) => Some(n.to_string()),
        _ => None,
    }
}

/// A script reply that cannot be believed or used.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Unreadable {
    /// It carries another request's nonce: the connection is out of step.
    OutOfStep,
    /// Not the shape any script returns.
    Malformed,
    /// The script found `key` holding a type it does not write.
    WrongType { key: String, found: String },
}

pub(crate) fn is_no_script(e: &redis::RedisError) -> bool {
    e.kind() == redis::ErrorKind::Server(redis::ServerErrorKind::NoScript)
}

/// A Cluster redirection inside a pipeline reply, which the cluster client does not follow.
pub(crate) fn is_redirect(e: &redis::RedisError) -> bool {
    matches!(
        e.kind(),
        redis::ErrorKind::Server(redis::ServerErrorKind::Moved | redis::ServerErrorKind::Ask)
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    static ECHO: Script = Script::new(&["return reply(DONE)"]);

    fn simple_args(cmd: &Cmd) -> Vec<Vec<u8>> {
        cmd.args_iter()
            .filter_map(|arg| match arg {
                Arg::Simple(bytes) => Some(bytes.to_vec()),
                _ => None,
            })
            .collect()
    }

    fn reply_to(call: &Call, code: i64, detail: &str) -> Value {
        Value::BulkString(format!("{} {code} {detail}", call.nonce).into_bytes())
    }

    #[test]
    fn every_script_starts_with_the_prelude() {
        assert!(ECHO.source().starts_with(PRELUDE));
        assert!(ECHO.source().ends_with("return reply(DONE)"));
        assert_eq!(ECHO.hash().len(), 40);
    }

    #[test]
    fn a_call_becomes_an_eval_with_the_same_arguments() {
        let call = ECHO.call(&["p:{n}", "p:{n}:fence"]).arg("token");
        let eval = simple_args(&call.as_eval());
        assert_eq!(eval[0], b"EVAL");
        assert_eq!(eval[1], ECHO.source().as_bytes());
        assert_eq!(
            eval[2..],
            [
                b"2".to_vec(),
                b"p:{n}".to_vec(),
                b"p:{n}:fence".to_vec(),
                call.nonce.to_string().into_bytes(),
                b"token".to_vec()
            ]
        );
        assert_eq!(simple_args(call.cmd())[1], ECHO.hash().as_bytes());
        assert_eq!(call.key(1).as_deref(), Some("p:{n}"));
        assert_eq!(call.key(2).as_deref(), Some("p:{n}:fence"));
        assert_eq!(call.key(0), None);
    }

    #[test]
    fn replies_are_believed_only_with_their_own_nonce() {
        let first = ECHO.call(&["k"]);
        let second = ECHO.call(&["k"]);
        assert_ne!(first.nonce, second.nonce);
        assert_eq!(
            first.reply(reply_to(&first, 1, "7")),
            Ok(Reply {
                code: Code::Done,
                detail: Value::Int(7)
            })
        );
        assert_eq!(
            second.reply(reply_to(&first, 1, "7")),
            Err(Unreadable::OutOfStep)
        );
        assert_eq!(first.reply(Value::Int(1)), Err(Unreadable::Malformed));
        assert_eq!(
            first.reply(Value::BulkString(Vec::new())),
            Err(Unreadable::OutOfStep)
        );
        assert_eq!(
            first.reply(reply_to(&first, 9, "0")),
            Err(Unreadable::Malformed)
        );
    }

    #[test]
    fn a_sequence_is_believed_only_with_its_echo_last() {
        let sequence = Sequence::new([redis::cmd("SET"), redis::cmd("INCR")]);
        let echo = |nonce: u64| Ok(Value::BulkString(nonce.to_string().into_bytes()));
        let ok = || Ok(Value::Okay);
        assert_eq!(
            sequence.replies(vec![ok(), Ok(Value::Int(3)), echo(sequence.nonce)]),
            Ok(vec![ok(), Ok(Value::Int(3))])
        );
        assert_eq!(
            sequence.replies(vec![ok(), Ok(Value::Int(3)), echo(sequence.nonce + 1)]),
            Err(Unreadable::OutOfStep)
        );
        assert_eq!(sequence.replies(vec![]), Err(Unreadable::OutOfStep));
    }

    #[test]
    fn codes_mean_the_same_in_every_script() {
        use crate::outcome::Lost;
        let call = ECHO.call(&["lock", "fence"]);
        let code = |c| call.reply(reply_to(&call, c, "5")).unwrap();
        assert_eq!(code(1).ownership(), Ok(()));
        assert_eq!(code(0).ownership(), Err(Lost::Expired));
        assert_eq!(code(-1).ownership(), Err(Lost::HeldByOther));
        assert_eq!(code(-1).number(), Some(5));
        assert_eq!(
            call.reply(reply_to(&call, -2, "2 list")),
            Err(Unreadable::WrongType {
                key: "fence".to_owned(),
                found: "list".to_owned()
            })
        );
        let value = call
            .reply(reply_to(&call, 1, "0123 holder with spaces"))
            .unwrap();
        assert_eq!(value.text().as_deref(), Some("0123 holder with spaces"));
        let big = call.reply(reply_to(&call, 1, "9007199254740993")).unwrap();
        assert_eq!(big.number(), Some(9_007_199_254_740_993));
    }
}
