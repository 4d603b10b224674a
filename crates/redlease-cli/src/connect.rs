//! Which Redis servers to use, and how to log in, from flags, environment and files.

use std::path::PathBuf;
use std::time::Duration;

use clap::Args;
use redlease::Client;

use crate::{Failure, duration_arg};

/// Environment variable holding the Redis password (safer than a URL on the command line,
/// which other users can read with `ps`).
const PASSWORD_ENV: &str = "REDLEASE_PASSWORD";

#[derive(Debug, Args)]
pub(crate) struct ServerArgs {
    /// A Redis server: `redis://[user[:password]@]host[:port][/db]` (`rediss://` for TLS).
    /// Repeat for Redlock over several independent masters. Default: `redis://127.0.0.1:6379`.
    #[arg(
        long = "redis",
        value_name = "URL",
        global = true,
        env = "REDLEASE_REDIS",
        value_delimiter = ',',
        hide_env_values = true
    )]
    pub(crate) redis: Vec<String>,
    /// Read the Redis password from the first line of FILE (or set `REDLEASE_PASSWORD`).
    #[arg(long, value_name = "FILE", global = true)]
    password_file: Option<PathBuf>,
    /// Prefix of every key and channel.
    #[arg(long, global = true, default_value = redlease::DEFAULT_PREFIX)]
    pub(crate) prefix: String,
    /// How long connecting may take.
    #[arg(long, global = true, value_name = "DUR", value_parser = duration_arg, default_value = "2s")]
    connect_timeout: Duration,
}

impl ServerArgs {
    /// The URLs to use, passwords from the environment or file filled in.
    pub(crate) fn urls(&self) -> Result<Vec<String>, Failure> {
        let password = self.password()?;
        let urls = if self.redis.is_empty() {
            vec![redlease::DEFAULT_URL.to_owned()]
        } else {
            self.redis.clone()
        };
        urls.into_iter()
            .map(|url| match &password {
                Some(password) => with_password(&url, password),
                None => Ok(url),
            })
            .collect()
    }

    fn password(&self) -> Result<Option<String>, Failure> {
        if let Some(path) = &self.password_file {
            let text = std::fs::read_to_string(path).map_err(|e| {
                Failure::usage(format!(
                    "cannot read the password file {}: {e}",
                    path.display()
                ))
            })?;
            return Ok(Some(text.lines().next().unwrap_or_default().to_owned()));
        }
        Ok(std::env::var(PASSWORD_ENV)
            .ok()
            .filter(|password| !password.is_empty()))
    }

    /// Connects to the servers (one = single instance, several = Redlock).
    pub(crate) async fn client(&self) -> Result<Client, Failure> {
        self.client_for(&self.urls()?).await
    }

    /// Connects to `urls` with these settings.
    pub(crate) async fn client_for(&self, urls: &[String]) -> Result<Client, Failure> {
        urls.iter()
            .fold(Client::builder(), redlease::ClientBuilder::url)
            .prefix(&self.prefix)
            .connect_timeout(self.connect_timeout)
            .build()
            .await
            .map_err(|e| Failure::from_lock_error(&e))
    }
}

/// `url` with its password set (the user, if any, kept). The password never appears in
/// messages: a malformed URL is reported without it.
fn with_password(url: &str, password: &str) -> Result<String, Failure> {
    let mut parsed = url::Url::parse(url).map_err(|_| {
        Failure::usage("malformed Redis URL (given with --redis or REDLEASE_REDIS)")
    })?;
    if parsed.password().is_some() {
        return Ok(url.to_owned());
    }
    parsed
        .set_password(Some(password))
        .map_err(|()| Failure::usage("this Redis URL cannot carry a password"))?;
    Ok(parsed.into())
}

#[cfg(test)]
mod tests {
    use super::with_password;

    #[test]
    fn passwords_are_inserted_and_escaped() {
        assert_eq!(
            with_password("redis://h:1/2", "p@ss word").unwrap(),
            "redis://:p%40ss%20word@h:1/2"
        );
        assert_eq!(
            with_password("redis://alice@h", "pw").unwrap(),
            "redis://alice:pw@h"
        );
        assert_eq!(
            with_password("redis://:own@h", "pw").unwrap(),
            "redis://:own@h"
        );
        let err = with_password("not a url :secret", "pw").unwrap_err();
        assert!(!err.message.contains("secret"));
    }
}
