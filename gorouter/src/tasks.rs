//! An owned set of background tasks that request handlers can add to: backend connection
//! drivers and upgraded (WebSocket) tunnels. Nothing is fire-and-forget: the router aborts the
//! whole set when it stops, and refuses new tasks from then on.

use std::future::Future;
use std::sync::Mutex;

use tokio::task::JoinSet;

#[derive(Debug)]
pub(crate) struct TaskSet {
    /// `None` once shut down.
    tasks: Mutex<Option<JoinSet<()>>>,
}

impl TaskSet {
    pub(crate) fn new() -> TaskSet {
        TaskSet {
            tasks: Mutex::new(Some(JoinSet::new())),
        }
    }

    /// Spawns `task` into the set, reaping tasks that have finished since the last call. After
    /// [`TaskSet::shutdown`] the task is dropped without running.
    pub(crate) fn spawn<F>(&self, task: F)
    where
        F: Future<Output = ()> + Send + 'static,
    {
        let mut guard = self.tasks.lock().unwrap_or_else(|p| p.into_inner());
        let Some(tasks) = guard.as_mut() else {
            return;
        };
        while let Some(finished) = tasks.try_join_next() {
            if let Err(error) = finished {
                if error.is_panic() {
                    tracing::error!(%error, "router background task panicked");
                }
            }
        }
        tasks.spawn(task);
    }

    /// Aborts every task and waits for them to end.
    pub(crate) async fn shutdown(&self) {
        let tasks = self.tasks.lock().unwrap_or_else(|p| p.into_inner()).take();
        if let Some(mut tasks) = tasks {
            tasks.shutdown().await;
        }
    }
}

/// Resolves once `shutdown` is (or becomes) `true`, or its sender is gone.
pub(crate) async fn stopped(shutdown: &mut tokio::sync::watch::Receiver<bool>) {
    // The guard `wait_for` returns must not live across an await point.
    let _ = shutdown.wait_for(|stop| *stop).await.map(|_| ());
}
