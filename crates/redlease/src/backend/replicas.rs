//! Replica acknowledgement: after a lease is written, `WAIT wanted timeout` on the same
//! connection (see [`ClientBuilder::replicas`](crate::ClientBuilder::replicas)).

use std::time::Duration;

use redis::{Cmd, RedisResult, Value};

use crate::error::BackendError;
use crate::timing::wait_millis;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Replicas {
    pub(crate) wanted: u32,
    pub(crate) timeout: Duration,
}

impl Replicas {
    /// `WAIT` for a request bounded by `limit`.
    pub(crate) fn wait_cmd(self, limit: Duration) -> Cmd {
        let mut cmd = redis::cmd("WAIT");
        cmd.arg(self.wanted).arg(wait_millis(self.timeout, limit));
        cmd
    }

    /// Checks `WAIT`'s reply: `Ok(None)` when enough replicas acknowledged, `Ok(Some(acked))`
    /// when too few did, `Err(())` for a reply `WAIT` never gives.
    pub(crate) fn shortfall(self, reply: &RedisResult<Value>) -> Result<Option<u32>, ()> {
        match reply {
            Ok(Value::Int(n)) => {
                let acked = u32::try_from(*n).unwrap_or(0);
                Ok((acked < self.wanted).then_some(acked))
            }
            _ => Err(()),
        }
    }

    /// The error for a write on `node` that only `acked` replicas acknowledged.
    pub(crate) fn not_replicated(
        self,
        node: &str,
        context: &'static str,
        acked: u32,
    ) -> BackendError {
        BackendError::not_replicated(node, context, acked, self.wanted)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn too_few_acknowledgements_are_a_shortfall() {
        let replicas = Replicas {
            wanted: 2,
            timeout: Duration::from_millis(100),
        };
        assert_eq!(replicas.shortfall(&Ok(Value::Int(2))), Ok(None));
        assert_eq!(replicas.shortfall(&Ok(Value::Int(3))), Ok(None));
        assert_eq!(replicas.shortfall(&Ok(Value::Int(1))), Ok(Some(1)));
        assert_eq!(replicas.shortfall(&Ok(Value::Nil)), Err(()));
        let error = replicas.not_replicated("h:1", "acquiring a lease", 1);
        assert_eq!(error.replicas(), Some((1, 2)));
    }
}
