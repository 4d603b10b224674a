//! The blocking client's runtime: one thread running a current-thread Tokio runtime, shared by
//! every clone of a client and its guards, stopped when the last of them is dropped.

use std::future::Future;
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use tokio::sync::oneshot;

use crate::error::{ConfigError, Error};

/// How long a stopping runtime waits for the OS threads of its blocking pool (a DNS lookup in
/// flight); its tasks are dropped at once.
const SHUTDOWN_WAIT: Duration = Duration::from_millis(100);

/// The thread's name, as `ps -L` and `/proc/*/task/*/comm` show it.
pub(super) const THREAD_NAME: &str = "redlease-rt";

/// A handle on the runtime thread. Hold it in an `Arc`: dropping the last one stops the thread.
#[derive(Debug)]
pub(super) struct Runtime {
    handle: tokio::runtime::Handle,
    /// Dropping it ends the thread's `block_on`.
    stop: Option<oneshot::Sender<()>>,
    thread: Option<JoinHandle<()>>,
}

impl Runtime {
    /// Starts the runtime thread.
    pub(super) fn start() -> Result<Arc<Self>, Error> {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| Error::Runtime(e.to_string()))?;
        let handle = runtime.handle().clone();
        let (stop, stopped) = oneshot::channel::<()>();
        let thread = std::thread::Builder::new()
            .name(THREAD_NAME.to_owned())
            .spawn(move || {
                // A current-thread runtime runs its spawned tasks (renewal, the subscriber, the
                // connections' drivers) only inside `block_on`: this is where they all run.
                let _ = runtime.block_on(stopped);
                runtime.shutdown_timeout(SHUTDOWN_WAIT);
            })
            .map_err(|e| Error::Runtime(e.to_string()))?;
        Ok(Arc::new(Self {
            handle,
            stop: Some(stop),
            thread: Some(thread),
        }))
    }

    /// Fails when the caller is inside a Tokio runtime, where blocking would stall it (and
    /// Tokio would panic).
    pub(super) fn refuse_async_context() -> Result<(), Error> {
        match tokio::runtime::Handle::try_current() {
            Ok(_) => Err(ConfigError::InsideAsyncRuntime.into()),
            Err(_) => Ok(()),
        }
    }

    /// Runs `future` to completion on the calling thread, its I/O and timers driven by the
    /// runtime thread (and anything it spawns running there).
    pub(super) fn block_on<T>(
        &self,
        future: impl Future<Output = Result<T, Error>>,
    ) -> Result<T, Error> {
        Self::refuse_async_context()?;
        self.handle.block_on(future)
    }

    /// Runs `future` on the runtime thread; the caller does not wait for it.
    pub(super) fn spawn(&self, future: impl Future<Output = ()> + Send + 'static) {
        drop(self.handle.spawn(future));
    }
}

impl Drop for Runtime {
    fn drop(&mut self) {
        drop(self.stop.take());
        // The last handle can be dropped by a task on the runtime thread itself (a guard's
        // release finishing): that thread cannot wait for itself, and ends on its own.
        if let Some(thread) = self.thread.take()
            && thread.thread().id() != std::thread::current().id()
        {
            let _ = thread.join();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_thread_stops_when_the_last_handle_is_dropped() {
        let runtime = Runtime::start().unwrap();
        let clone = runtime.clone();
        let thread = runtime.thread.as_ref().unwrap().thread().clone();
        assert_eq!(thread.name(), Some(THREAD_NAME));
        let (sent, received) = std::sync::mpsc::channel();
        runtime.spawn(async move { sent.send(std::thread::current().id()).unwrap() });
        assert_eq!(
            received.recv().unwrap(),
            thread.id(),
            "spawned work runs on the runtime thread"
        );
        drop(runtime);
        assert_eq!(
            clone.block_on(async { Ok(7) }).unwrap(),
            7,
            "a clone keeps it running"
        );
        let (alive, ended) = std::sync::mpsc::channel::<()>();
        clone.spawn(async move {
            let _alive = alive;
            std::future::pending::<()>().await;
        });
        drop(clone);
        // Dropping the last handle joined the thread: its pending task was dropped with it.
        assert_eq!(
            ended.try_recv(),
            Err(std::sync::mpsc::TryRecvError::Disconnected)
        );
    }

    #[test]
    fn blocking_inside_a_tokio_runtime_is_refused() {
        let runtime = Runtime::start().unwrap();
        let outer = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap();
        let refused = outer.block_on(async { runtime.block_on(async { Ok(()) }) });
        assert!(matches!(
            refused,
            Err(Error::InvalidConfig(ConfigError::InsideAsyncRuntime))
        ));
        let _entered = outer.enter();
        assert!(runtime.block_on(async { Ok(()) }).is_err());
    }
}
