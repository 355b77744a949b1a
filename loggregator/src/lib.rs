//! Kiln's loggregator: receives log envelopes over UDP from every component (apps' output via
//! the DEA, `STG`, `RTR`, `API`, `CELL`), keeps them in bounded per-source ring buffers, serves
//! them through log-cache's v1 read API for `cf logs`, and forwards apps' logs to their syslog
//! drains.
//!
//! Entry point: [`run`] takes a [`LoggregatorConfig`], pre-bound [`Listeners`] (HTTP for the
//! log-cache API, `/healthz` and `/metrics`; UDP for ingress) and a shutdown future, and returns
//! a [`LoggregatorServer`] handle. Components send envelopes with
//! [`protocol::logs::LogEmitter`] pointed at [`LoggregatorServer::ingress_addr`].
//!
//! Module map: `config` (typed configuration), `ingress` (UDP receive thread, loss counting,
//! the `Ingestor`), `store` (per-source ring buffers, memory bound, drop accounting), `http`
//! (log-cache API on hyper), `auth` (token verification and CC-backed source authorization),
//! `drains` (drain list polling, per-drain queues and writers), `syslog` (RFC 5424 rendering),
//! `metrics`.
#![forbid(unsafe_code)]

mod auth;
mod config;
mod drains;
mod error;
mod http;
mod ingress;
mod metrics;
mod store;
mod syslog;

use std::future::Future;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::watch;
use tokio::task::JoinSet;

pub use config::{InternalApiCredentials, LoggregatorConfig};
pub use error::LoggregatorError;
pub use http::LOG_CACHE_VERSION;

use crate::drains::{DrainRegistry, DrainSource};
use crate::ingress::Ingestor;
use crate::metrics::Metrics;
use crate::store::Store;

/// How often drop notices are considered.
const MAINTENANCE_INTERVAL: Duration = Duration::from_secs(1);

/// The sockets the loggregator serves on, bound by the caller (tests bind port 0).
pub struct Listeners {
    /// log-cache API, `/healthz`, `/metrics`.
    pub http: std::net::TcpListener,
    /// Envelope ingress.
    pub ingress: std::net::UdpSocket,
}

/// A running loggregator.
pub struct LoggregatorServer {
    http_addr: SocketAddr,
    ingress_addr: SocketAddr,
    shutdown: watch::Sender<bool>,
    shutdown_requested: watch::Receiver<bool>,
    tasks: JoinSet<()>,
    shutdown_watcher: tokio::task::JoinHandle<()>,
    receivers: Vec<std::thread::JoinHandle<()>>,
    receiver_stop: Arc<AtomicBool>,
    running: Arc<Running>,
    ingestor: Arc<Ingestor>,
}

/// Liveness of the long-lived loops, for `/healthz`.
#[derive(Default)]
struct Running {
    receiver: AtomicBool,
    http: AtomicBool,
}

impl Running {
    fn healthy(&self) -> bool {
        self.receiver.load(Ordering::Relaxed) && self.http.load(Ordering::Relaxed)
    }
}

/// Clears a liveness flag when dropped (the loop ended or panicked).
struct RunningGuard<'a>(&'a AtomicBool);

impl Drop for RunningGuard<'_> {
    fn drop(&mut self) {
        self.0.store(false, Ordering::Relaxed);
    }
}

impl Drop for LoggregatorServer {
    /// Dropping without [`LoggregatorServer::stop`] still ends everything: the tasks are
    /// aborted with their `JoinSet` and the receive threads see the stop flag within 10 ms.
    fn drop(&mut self) {
        let _ = self.shutdown.send(true);
        self.shutdown_watcher.abort();
        self.receiver_stop.store(true, Ordering::Relaxed);
    }
}

impl LoggregatorServer {
    /// Where the log-cache API listens.
    pub fn http_addr(&self) -> SocketAddr {
        self.http_addr
    }

    /// Where envelopes are received (give it to `LogEmitter::new`).
    pub fn ingress_addr(&self) -> SocketAddr {
        self.ingress_addr
    }

    /// True while the receive thread and the HTTP loop run.
    pub fn is_healthy(&self) -> bool {
        self.running.healthy()
    }

    /// The counters in the Prometheus text format (what `/metrics` serves).
    pub fn metrics_text(&self) -> String {
        self.ingestor.metrics.render(
            &self.ingestor.store.stats(),
            &self.ingestor.drains.snapshot(),
        )
    }

    /// Waits for the shutdown future given to [`run`], then stops.
    pub async fn wait(mut self) {
        let mut requested = self.shutdown_requested.clone();
        stopped(&mut requested).await;
        self.stop_inner().await;
    }

    /// Stops: no new connections, drain writers and loops end, the receive thread exits.
    pub async fn stop(mut self) {
        self.stop_inner().await;
    }

    async fn stop_inner(&mut self) {
        let _ = self.shutdown.send(true);
        self.shutdown_watcher.abort();
        self.receiver_stop.store(true, Ordering::Relaxed);
        while let Some(result) = self.tasks.join_next().await {
            if let Err(error) = result {
                if error.is_panic() {
                    tracing::warn!(%error, "loggregator task panicked");
                }
            }
        }
        for receiver in std::mem::take(&mut self.receivers) {
            let joined = tokio::task::spawn_blocking(move || receiver.join()).await;
            if !matches!(joined, Ok(Ok(()))) {
                tracing::warn!("loggregator ingress thread ended abnormally");
            }
        }
        tracing::info!(http = %self.http_addr, ingress = %self.ingress_addr, "loggregator stopped");
    }
}

/// Validates `config`, starts the ingress thread, the log-cache API, drop notices and (with
/// internal API credentials) syslog drains. Returns once everything listens. The loggregator
/// stops when `shutdown` completes (then [`LoggregatorServer::wait`] returns) or when
/// [`LoggregatorServer::stop`] is called.
///
/// Must be called within a tokio runtime.
pub async fn run(
    config: LoggregatorConfig,
    listeners: Listeners,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<LoggregatorServer, LoggregatorError> {
    config.validate()?;
    let http_addr = listeners
        .http
        .local_addr()
        .map_err(LoggregatorError::Listener)?;
    let ingress_addr = listeners
        .ingress
        .local_addr()
        .map_err(LoggregatorError::Listener)?;
    listeners
        .http
        .set_nonblocking(true)
        .map_err(LoggregatorError::Listener)?;
    let http_listener =
        tokio::net::TcpListener::from_std(listeners.http).map_err(LoggregatorError::Listener)?;
    ingress::prepare_socket(&listeners.ingress, config.ingress_receive_buffer_bytes)
        .map_err(LoggregatorError::Listener)?;
    let http_client = reqwest::Client::builder()
        .build()
        .map_err(|error| LoggregatorError::HttpClient(error.to_string()))?;

    let ingestor = Arc::new(Ingestor {
        store: Store::new(
            config.max_envelopes_per_source,
            config.max_memory_bytes,
            config.min_retention(),
        ),
        drains: Arc::new(DrainRegistry::default()),
        metrics: Arc::new(Metrics::default()),
    });
    let authorizer = match (
        config.skip_authorization,
        config.uaa_base(),
        config.cc_base(),
    ) {
        (false, Some(uaa), Some(cc)) => Some(auth::Authorizer::new(
            &uaa,
            &cc,
            http_client.clone(),
            Duration::from_secs(config.authorization_cache_secs),
        )),
        _ => None,
    };

    let drain_source = match (&config.internal_api, config.cc_base()) {
        (Some(credentials), Some(cc_url)) => Some(DrainSource {
            tls: drains::tls_client_config(config.syslog_drain_ca_file.as_deref()).map_err(
                |error| LoggregatorError::Config(format!("syslog_drain_ca_file: {error}")),
            )?,
            cc_url,
            username: credentials.username.clone(),
            password: credentials.password.clone(),
            batch_size: config.syslog_drain_batch_size,
            poll_interval: Duration::from_secs(config.syslog_drain_poll_interval_secs),
            queue_size: config.syslog_drain_queue_size,
        }),
        _ => None,
    };

    let (shutdown_sender, shutdown_receiver) = watch::channel(false);
    let running = Arc::new(Running::default());
    running.receiver.store(true, Ordering::Relaxed);
    running.http.store(true, Ordering::Relaxed);

    let receiver_stop = Arc::new(AtomicBool::new(false));
    let tracker = Arc::new(std::sync::Mutex::new(ingress::LossTracker::default()));
    let mut sockets = Vec::with_capacity(config.ingress_threads);
    for _ in 1..config.ingress_threads {
        sockets.push(
            listeners
                .ingress
                .try_clone()
                .map_err(LoggregatorError::Listener)?,
        );
    }
    sockets.push(listeners.ingress);
    let mut receiver_threads = Vec::with_capacity(sockets.len());
    for (index, socket) in sockets.into_iter().enumerate() {
        let ingestor = ingestor.clone();
        let stop = receiver_stop.clone();
        let running = running.clone();
        let tracker = tracker.clone();
        let thread = std::thread::Builder::new()
            .name(format!("loggregator-ingress-{index}"))
            .spawn(move || {
                let _running = RunningGuard(&running.receiver);
                ingress::receive_loop(socket, ingestor, tracker, stop);
            });
        match thread {
            Ok(thread) => receiver_threads.push(thread),
            Err(error) => {
                receiver_stop.store(true, Ordering::Relaxed);
                return Err(LoggregatorError::Listener(error));
            }
        }
    }

    let mut tasks = JoinSet::new();
    let http_state = Arc::new(http::HttpState {
        ingestor: ingestor.clone(),
        authorizer,
        started: Instant::now(),
        healthy: {
            let running = running.clone();
            Arc::new(move || running.healthy())
        },
    });
    {
        let running = running.clone();
        let shutdown = shutdown_receiver.clone();
        tasks.spawn(async move {
            let _running = RunningGuard(&running.http);
            http::accept_loop(http_listener, http_state, shutdown).await;
        });
    }
    {
        let ingestor = ingestor.clone();
        let mut shutdown = shutdown_receiver.clone();
        let interval = config.drop_notice_interval();
        tasks.spawn(async move {
            let mut tick = tokio::time::interval(MAINTENANCE_INTERVAL);
            loop {
                tokio::select! {
                    _ = tick.tick() => ingestor.report_drops(interval),
                    _ = stopped(&mut shutdown) => break,
                }
            }
        });
    }
    if let Some(source) = drain_source {
        tasks.spawn(drains::drain_loop(
            source,
            http_client.clone(),
            ingestor.clone(),
            shutdown_receiver.clone(),
        ));
    }
    let shutdown_watcher = {
        let sender = shutdown_sender.clone();
        tokio::spawn(async move {
            shutdown.await;
            let _ = sender.send(true);
        })
    };
    tracing::info!(http = %http_addr, ingress = %ingress_addr, "loggregator listening");
    Ok(LoggregatorServer {
        http_addr,
        ingress_addr,
        shutdown: shutdown_sender,
        shutdown_requested: shutdown_receiver,
        tasks,
        shutdown_watcher,
        receivers: receiver_threads,
        receiver_stop,
        running,
        ingestor,
    })
}

/// Resolves once the shutdown flag is set (or its sender is gone).
pub(crate) async fn stopped(shutdown: &mut watch::Receiver<bool>) {
    let _ = shutdown.wait_for(|stop| *stop).await;
}
