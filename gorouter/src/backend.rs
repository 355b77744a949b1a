//! Connections to backends: TCP connect with a timeout, the HTTP/1.1 handshake, and a
//! keep-alive pool of idle connections per backend `host:port`.
//!
//! A connection goes back to the pool only when its response body has been read to the end
//! (see [`crate::body`]), so every pooled sender is idle; a sender the backend has closed in
//! the meantime is detected at checkout or hands the request back unsent.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use hyper::client::conn::http1::SendRequest;
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;

use crate::body::RequestBody;
use crate::error::ProxyError;
use crate::metrics::{increment, Metrics};
use crate::tasks::TaskSet;

/// Idle connections older than this are closed rather than reused (Go's `IdleConnTimeout`,
/// which gorouter keeps): backends commonly close idle connections after a minute or two.
const IDLE_TIMEOUT: Duration = Duration::from_secs(90);

/// The sending half of an HTTP/1.1 connection to a backend.
pub(crate) type Sender = SendRequest<RequestBody>;

#[derive(Debug)]
struct Idle {
    sender: Sender,
    since: Instant,
}

/// Opens backend connections and keeps idle ones for reuse.
#[derive(Debug)]
pub(crate) struct Backends {
    idle: Mutex<HashMap<String, Vec<Idle>>>,
    max_idle_per_backend: usize,
    connect_timeout: Duration,
    tasks: Arc<TaskSet>,
    metrics: Arc<Metrics>,
}

impl Backends {
    pub(crate) fn new(
        max_idle_per_backend: usize,
        connect_timeout: Duration,
        tasks: Arc<TaskSet>,
        metrics: Arc<Metrics>,
    ) -> Backends {
        Backends {
            idle: Mutex::new(HashMap::new()),
            max_idle_per_backend,
            connect_timeout,
            tasks,
            metrics,
        }
    }

    fn idle(&self) -> std::sync::MutexGuard<'_, HashMap<String, Vec<Idle>>> {
        self.idle.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// An idle pooled connection to `address` that is still open, most recently used first.
    pub(crate) async fn checkout(&self, address: &str) -> Option<Sender> {
        loop {
            let candidate = {
                let mut idle = self.idle();
                let list = idle.get_mut(address)?;
                let candidate = list.pop();
                if list.is_empty() {
                    idle.remove(address);
                }
                candidate?
            };
            if candidate.sender.is_closed() || candidate.since.elapsed() > IDLE_TIMEOUT {
                continue;
            }
            let mut sender = candidate.sender;
            // The connection was returned when its last response body ended; its dispatcher
            // becomes ready right after. An error here means the backend closed it.
            if sender.ready().await.is_ok() {
                increment(&self.metrics.backend_connections_reused);
                return Some(sender);
            }
        }
    }

    /// Returns an idle connection to the pool (or drops it, closing it, when the pool is full).
    pub(crate) fn checkin(&self, address: &str, sender: Sender) {
        if sender.is_closed() || self.max_idle_per_backend == 0 {
            return;
        }
        let mut idle = self.idle();
        let list = idle.entry(address.to_owned()).or_default();
        if list.len() < self.max_idle_per_backend {
            list.push(Idle {
                sender,
                since: Instant::now(),
            });
        }
    }

    /// Closes idle connections that expired or were closed by their backend.
    pub(crate) fn evict_expired(&self) {
        self.idle().retain(|_, list| {
            list.retain(|idle| !idle.sender.is_closed() && idle.since.elapsed() <= IDLE_TIMEOUT);
            !list.is_empty()
        });
    }

    /// Opens a new connection to `address`. Any failure here happens before a byte of the
    /// request is sent, so it is a [`ProxyError::BackendConnect`] (retryable elsewhere).
    pub(crate) async fn connect(&self, address: &str) -> Result<Sender, ProxyError> {
        let failed = |reason: String| ProxyError::BackendConnect {
            address: address.to_owned(),
            reason,
        };
        let stream =
            match tokio::time::timeout(self.connect_timeout, TcpStream::connect(address)).await {
                Ok(Ok(stream)) => stream,
                Ok(Err(error)) => return Err(failed(error.to_string())),
                Err(_elapsed) => {
                    return Err(failed(format!(
                        "connect timed out after {} ms",
                        self.connect_timeout.as_millis()
                    )))
                }
            };
        // Small requests and responses should not wait for Nagle.
        let _ = stream.set_nodelay(true);
        let (sender, connection) = hyper::client::conn::http1::Builder::new()
            .handshake(TokioIo::new(stream))
            .await
            .map_err(|error| failed(error.to_string()))?;
        increment(&self.metrics.backend_connections_opened);
        let address = address.to_owned();
        self.tasks.spawn(async move {
            if let Err(error) = connection.with_upgrades().await {
                tracing::debug!(%error, backend = %address, "backend connection ended with an error");
            }
        });
        Ok(sender)
    }
}
