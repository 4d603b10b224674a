//! One backend: an independent Redis deployment that casts one vote in the quorum — a server,
//! a Sentinel service's primary, or a whole Redis Cluster. It runs script calls (knowing none
//! of them): bounded waits, `NOSCRIPT` recovery, Cluster redirections, the request nonce,
//! replica acknowledgement, and a fresh connection when the old one falls out of step.

mod admin;
mod deployment;
mod replicas;

use std::time::Duration;

use redis::{Cmd, RedisResult, Value};

use crate::error::{BackendError, BackendErrorKind, Error};
use crate::script::{Call, Code, Reply, Script, Sequence, Unreadable, is_no_script, is_redirect};
pub(crate) use admin::Eviction;
use deployment::Context;
pub(crate) use deployment::Deployment;
pub(crate) use replicas::Replicas;

pub(crate) struct Backend {
    /// `host:port`, or a description of a Cluster, a Sentinel service or a caller's
    /// connection; never credentials.
    label: String,
    deployment: Deployment,
    command_timeout: Duration,
    /// `WAIT` after writes that ask for it, if on.
    replicas: Option<Replicas>,
}

impl std::fmt::Debug for Backend {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Backend")
            .field("label", &self.label)
            .field("command_timeout", &self.command_timeout)
            .finish_non_exhaustive()
    }
}

/// Whether a write must be acknowledged by replicas (when replica acknowledgement is on).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Durability {
    /// Grants and extensions: a failover must not lose them.
    Replicated,
    /// Everything else.
    Plain,
}

impl Backend {
    pub(crate) fn new(
        label: String,
        deployment: Deployment,
        command_timeout: Duration,
        replicas: Option<Replicas>,
    ) -> Self {
        Self {
            label,
            deployment,
            command_timeout,
            replicas,
        }
    }

    pub(crate) fn label(&self) -> &str {
        &self.label
    }

    pub(crate) fn command_timeout(&self) -> Duration {
        self.command_timeout
    }

    fn context(&self, what: &'static str, limit: Duration) -> Context<'_> {
        Context {
            node: &self.label,
            what,
            limit,
            command_timeout: self.command_timeout,
        }
    }

    /// The failure of a reply that is not what the script returns.
    pub(crate) fn protocol_failure(&self, context: &'static str) -> BackendError {
        BackendError::new(BackendErrorKind::Protocol, &self.label, context, None)
    }

    fn protocol_error(&self, context: &'static str) -> Error {
        self.protocol_failure(context).into()
    }

    /// Replaces the connection after an error that may leave it out of step.
    fn replace_after(&self, error: &Error) {
        if let Error::Backend(e) = error
            && matches!(
                e.kind(),
                BackendErrorKind::Timeout | BackendErrorKind::Protocol
            )
        {
            self.deployment.connection().replace();
        }
    }

    /// The error for a reply that cannot be used; a reply to another request replaces the
    /// connection.
    fn refused(&self, unreadable: Unreadable, context: &'static str) -> Error {
        match unreadable {
            Unreadable::WrongType { key, found } => Error::WrongType { key, found },
            Unreadable::Malformed => self.protocol_error(context),
            Unreadable::OutOfStep => {
                self.deployment.connection().replace();
                BackendError::new(
                    BackendErrorKind::Protocol,
                    &self.label,
                    "matching replies to requests (a reply answered another request; the connection was replaced)",
                    None,
                )
                .into()
            }
        }
    }

    /// Loads `scripts` (see [`Deployment::load_scripts`]).
    pub(crate) async fn load_scripts(
        &self,
        scripts: &[&'static Script],
        limit: Duration,
    ) -> Result<(), Error> {
        let cx = self.context("loading scripts", limit);
        self.deployment.load_scripts(scripts, cx).await
    }

    /// Runs one script call, bounded by `limit`. A server that forgot the script (it
    /// restarted) gets it again and the call is repeated once, as is a call a Cluster
    /// redirected. A [`Durability::Replicated`] write that the script did ([`Code::Done`]) but
    /// too few replicas acknowledged fails with [`BackendErrorKind::NotReplicated`].
    pub(crate) async fn call(
        &self,
        call: &Call,
        context: &'static str,
        limit: Duration,
        durability: Durability,
    ) -> Result<Reply, Error> {
        let cx = self.context(context, limit);
        let replicas = self
            .replicas
            .filter(|_| durability == Durability::Replicated);
        let mut retry: Option<Cmd> = None;
        loop {
            let cmd = retry.as_ref().unwrap_or_else(|| call.cmd());
            let sent = match replicas {
                None => self
                    .deployment
                    .send(cmd, cx)
                    .await
                    .map(|value| (value, None)),
                Some(replicas) => {
                    let mut pipe = redis::pipe();
                    pipe.ignore_errors()
                        .add_command(cmd.clone())
                        .add_command(replicas.wait_cmd(limit));
                    match self.deployment.send_pipeline(&pipe, cx).await {
                        Ok(replies) => match <[RedisResult<Value>; 2]>::try_from(replies) {
                            Ok([reply, acked]) => reply
                                .map_err(|e| {
                                    BackendError::from_redis(&self.label, context, e).into()
                                })
                                .map(|value| (value, Some(acked))),
                            Err(_) => Err(self.protocol_error(context)),
                        },
                        Err(e) => Err(e),
                    }
                }
            };
            match sent {
                Err(Error::Backend(e)) if retry.is_none() && e.source_is(is_no_script) => {
                    retry = Some(self.deployment.after_no_script(call, cx).await?);
                }
                Err(Error::Backend(e)) if retry.is_none() && e.source_is(is_redirect) => {
                    self.deployment.after_redirect(call.key(1), cx).await;
                    retry = Some(call.cmd().clone());
                }
                Err(error) => {
                    self.replace_after(&error);
                    return Err(error);
                }
                Ok((value, acked)) => {
                    let reply = call.reply(value).map_err(|e| self.refused(e, context))?;
                    if let (Some(replicas), Some(acked)) = (replicas, acked) {
                        self.check_acked(replicas, &reply, &acked, context)?;
                    }
                    return Ok(reply);
                }
            }
        }
    }

    /// Runs a sequence of plain commands on one connection (see [`Sequence`]), bounded by
    /// `limit`; with [`Durability::Replicated`] and replica acknowledgement on, `WAIT` follows
    /// them. Returns the commands' replies (each may be a server error), and the failure a
    /// done write would be if too few replicas acknowledged it: the caller knows whether its
    /// write was done.
    pub(crate) async fn run(
        &self,
        sequence: &Sequence,
        context: &'static str,
        limit: Duration,
        durability: Durability,
    ) -> Result<(Vec<RedisResult<Value>>, Option<BackendError>), Error> {
        let cx = self.context(context, limit);
        let replicas = self
            .replicas
            .filter(|_| durability == Durability::Replicated);
        let with_wait;
        let pipe = match replicas {
            Some(replicas) => {
                let mut pipe = sequence.pipe().clone();
                pipe.add_command(replicas.wait_cmd(limit));
                with_wait = pipe;
                &with_wait
            }
            None => sequence.pipe(),
        };
        let mut redirected = false;
        loop {
            let mut replies = self
                .deployment
                .send_pipeline(pipe, cx)
                .await
                .inspect_err(|e| self.replace_after(e))?;
            if !redirected && replies.iter().any(|r| r.as_ref().is_err_and(is_redirect)) {
                redirected = true;
                self.deployment
                    .after_redirect(sequence.first_key(), cx)
                    .await;
                continue;
            }
            let shortfall = match replicas {
                Some(replicas) => {
                    match replicas.shortfall(&replies.pop().unwrap_or(Ok(Value::Nil))) {
                        Ok(short) => {
                            short.map(|acked| replicas.not_replicated(&self.label, context, acked))
                        }
                        Err(()) => return Err(self.protocol_error(context)),
                    }
                }
                None => None,
            };
            let replies = sequence
                .replies(replies)
                .map_err(|unreadable| self.refused(unreadable, context))?;
            return Ok((replies, shortfall));
        }
    }

    /// Fails a done write that too few replicas acknowledged.
    fn check_acked(
        &self,
        replicas: Replicas,
        reply: &Reply,
        acked: &RedisResult<Value>,
        context: &'static str,
    ) -> Result<(), Error> {
        match replicas.shortfall(acked) {
            Ok(Some(acked)) if reply.code == Code::Done => {
                Err(replicas.not_replicated(&self.label, context, acked).into())
            }
            Ok(_) => Ok(()),
            Err(()) => Err(self.protocol_error(context)),
        }
    }

    /// Runs many script calls in one round trip (a Cluster: concurrently, one call each), as
    /// the renewer's batch for this backend. Each call gets its own outcome; a failure of the
    /// whole round trip is the outer error.
    pub(crate) async fn call_batch(
        &self,
        calls: &[Call],
        context: &'static str,
        limit: Duration,
        durability: Durability,
    ) -> Result<Vec<Result<Reply, Error>>, Error> {
        if let Deployment::Cluster { .. } = self.deployment {
            let each = calls
                .iter()
                .map(|call| self.call(call, context, limit, durability));
            return Ok(futures_util::future::join_all(each).await);
        }
        let cx = self.context(context, limit);
        let replicas = self
            .replicas
            .filter(|_| durability == Durability::Replicated);
        let mut pipe = redis::pipe();
        pipe.ignore_errors();
        for call in calls {
            pipe.add_command(call.cmd().clone());
        }
        if let Some(replicas) = replicas {
            pipe.add_command(replicas.wait_cmd(limit));
        }
        let sent = self.deployment.send_pipeline(&pipe, cx).await;
        let mut replies = sent.inspect_err(|e| self.replace_after(e))?;
        let missing: Vec<&'static Script> = calls
            .iter()
            .zip(&replies)
            .filter(|(_, reply)| reply.as_ref().is_err_and(is_no_script))
            .map(|(call, _)| call.script())
            .collect();
        if !missing.is_empty() {
            self.deployment.load_scripts(&missing, cx).await?;
            replies = self.deployment.send_pipeline(&pipe, cx).await?;
        }
        let acked = replicas.map(|_| replies.pop().unwrap_or(Ok(Value::Nil)));
        let mut in_step = true;
        let mut outcomes = Vec::with_capacity(calls.len());
        for (call, reply) in calls.iter().zip(replies) {
            outcomes.push(match reply {
                Err(e) => Err(BackendError::from_redis(&self.label, context, e).into()),
                Ok(value) => match call.reply(value) {
                    Ok(reply) => match (replicas, &acked) {
                        (Some(replicas), Some(acked)) => self
                            .check_acked(replicas, &reply, acked, context)
                            .map(|()| reply),
                        _ => Ok(reply),
                    },
                    Err(Unreadable::OutOfStep) => {
                        in_step = false;
                        Err(self.protocol_error(context))
                    }
                    Err(other) => Err(self.refused(other, context)),
                },
            });
        }
        if !in_step {
            return Err(self.refused(Unreadable::OutOfStep, context));
        }
        Ok(outcomes)
    }
}
