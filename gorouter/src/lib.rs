//! Kiln's router: a gorouter-compatible HTTP/1.1 reverse proxy whose route table is fed by
//! `router.register` / `router.unregister` over NATS, with round-robin load balancing across
//! app instances, retries on connect failure and keep-alive connection pooling to backends.
//!
//! Entry point: [`run`] serves a [`RouterConfig`] on a caller-bound listener with a connected
//! NATS client and returns a [`RouterServer`] handle (address, route count, health, metrics,
//! [`RouterServer::stop`]).
//!
//! Module map: `config` (typed configuration), `registry` (route table), `nats` (subscriptions,
//! `router.start`/`router.greet`, prune sweep), `server` (accept loop), `proxy` (request
//! phases), `backend` (connect + keep-alive pool), `body` (streamed response body), `headers`
//! (hop-by-hop and forwarding rules), `error` (failure classification), `metrics`, `tasks`,
//! `access_log` (the `[RTR/<index>]` line sent to an app's log stream when
//! `loggregator_ingress` is configured).
//!
//! Performance notes, for benchmarking: bodies are streamed frame by frame in both directions
//! and never buffered; the route table is behind one `RwLock` held only for a lookup (the pool
//! is copied out as `Arc`s); backend connections are reused (up to
//! `max_idle_connections_per_backend` idle per backend). Every request logs one access line at
//! `info` under the target `gorouter::access` — filter it out (`gorouter::access=warn`) when
//! measuring raw throughput. App log emission (`loggregator_ingress`) adds, per request routed
//! to an app, one line built when the response ends and one non-blocking UDP send; without it
//! nothing is captured. Measure with a load generator against a registered route, not with
//! timed tests.
#![forbid(unsafe_code)]

mod access_log;
mod backend;
mod body;
mod config;
mod error;
mod headers;
mod metrics;
mod nats;
mod proxy;
mod registry;
mod server;
mod tasks;

use std::future::Future;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use protocol::logs::LogEmitter;
use protocol::router::RouterStart;
use tokio::sync::watch;
use tokio::task::JoinSet;

pub use config::RouterConfig;
pub use error::RouterError;

use crate::backend::Backends;
use crate::metrics::Metrics;
use crate::proxy::Proxy;
use crate::registry::RouteTable;
use crate::tasks::TaskSet;

/// A running router.
pub struct RouterServer {
    local_addr: SocketAddr,
    id: String,
    shutdown: watch::Sender<bool>,
    /// The accept loop, the NATS loop and, with `loggregator_ingress`, the app log emitter
    /// (which ends after the accept loop, once no response can queue a line).
    tasks: JoinSet<()>,
    /// How many of those two are still running.
    loops_running: Arc<AtomicUsize>,
    /// Backend connection drivers and upgrade tunnels.
    background: Arc<TaskSet>,
    table: Arc<RouteTable>,
    metrics: Arc<Metrics>,
    nats: async_nats::Client,
}

impl RouterServer {
    /// The address the router listens on.
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// The id this router announces in `router.start`.
    pub fn id(&self) -> &str {
        &self.id
    }

    /// Number of route keys (host plus optional path) in the table.
    pub fn route_count(&self) -> usize {
        self.table.route_count()
    }

    /// Number of (route, endpoint) pairs in the table.
    pub fn endpoint_count(&self) -> usize {
        self.table.endpoint_count()
    }

    /// Healthy while both loops run and the NATS connection is up (without NATS the table
    /// goes stale).
    pub fn is_healthy(&self) -> bool {
        self.loops_running.load(Ordering::Relaxed) == 2
            && self.nats.connection_state() == async_nats::connection::State::Connected
    }

    /// The router's counters in the Prometheus text format.
    pub fn metrics_text(&self) -> String {
        self.metrics
            .render(self.table.route_count(), self.table.endpoint_count())
    }

    /// Stops: no new connections, open ones finish their current request (bounded by a drain
    /// timeout), the NATS subscriptions are dropped, backend connections are closed.
    pub async fn stop(mut self) {
        let _ = self.shutdown.send(true);
        while let Some(result) = self.tasks.join_next().await {
            if let Err(error) = result {
                tracing::warn!(%error, "router task failed");
            }
        }
        self.background.shutdown().await;
        tracing::info!(addr = %self.local_addr, "router stopped");
    }
}

/// Validates `config`, subscribes to the registry subjects, announces `router.start`, and
/// serves on `listener`. Returns once the router is accepting connections.
///
/// Must be called within a tokio runtime.
pub async fn run(
    config: RouterConfig,
    listener: std::net::TcpListener,
    nats: async_nats::Client,
) -> Result<RouterServer, RouterError> {
    config.validate()?;
    let local_addr = listener.local_addr().map_err(RouterError::Listener)?;
    listener
        .set_nonblocking(true)
        .map_err(RouterError::Listener)?;
    let listener = tokio::net::TcpListener::from_std(listener).map_err(RouterError::Listener)?;

    let id = config
        .id
        .clone()
        .unwrap_or_else(|| format!("{}-{}", config.index, uuid::Uuid::new_v4()));
    let start_message = nats::start_message(&RouterStart {
        id: id.clone(),
        hosts: config.hosts.clone(),
        minimum_register_interval_in_seconds: config.register_interval_secs,
        prune_threshold_in_seconds: config.prune_threshold_secs,
    });

    let metrics = Arc::new(Metrics::default());
    let background = Arc::new(TaskSet::new());
    let table = Arc::new(RouteTable::new(
        config.prune_threshold(),
        config.empty_pool_timeout(),
    ));
    let backends = Arc::new(Backends::new(
        config.max_idle_connections_per_backend,
        config.backend_connect_timeout(),
        background.clone(),
        metrics.clone(),
    ));
    let (shutdown, shutdown_receiver) = watch::channel(false);
    let mut tasks = JoinSet::new();
    let app_logs = match config.loggregator_ingress {
        Some(ingress) => {
            let emitter = LogEmitter::new(Some(ingress)).map_err(RouterError::LogEmitter)?;
            let (queue, emit_loop) =
                access_log::app_log_queue(emitter, config.index, metrics.clone());
            tasks.spawn(emit_loop);
            Some(queue)
        }
        None => None,
    };

    let subscriptions = nats::subscribe(&nats).await?;
    nats::announce(&nats, &start_message, &metrics).await?;
    let nats_loop = nats::NatsLoop {
        client: nats.clone(),
        subscriptions,
        table: table.clone(),
        backends: backends.clone(),
        metrics: metrics.clone(),
        start_message,
        prune_interval: config.prune_interval(),
        shutdown: shutdown_receiver.clone(),
    };
    let proxy = Arc::new(Proxy {
        table: table.clone(),
        backends,
        tasks: background.clone(),
        metrics: metrics.clone(),
        max_retries: config.max_retries,
        backend_ineligible: config.backend_ineligible(),
        app_logs,
    });

    let loops_running = Arc::new(AtomicUsize::new(0));
    tasks.spawn(counted(&loops_running, nats_loop.run()));
    tasks.spawn(counted(
        &loops_running,
        server::accept_loop(listener, proxy, shutdown_receiver),
    ));
    tracing::info!(addr = %local_addr, router_id = %id, "router listening");
    Ok(RouterServer {
        local_addr,
        id,
        shutdown,
        tasks,
        loops_running,
        background,
        table,
        metrics,
        nats,
    })
}

/// Counts `task` in `running` from now until it ends (or is aborted).
fn counted(running: &Arc<AtomicUsize>, task: impl Future<Output = ()>) -> impl Future<Output = ()> {
    struct Running(Arc<AtomicUsize>);
    impl Drop for Running {
        fn drop(&mut self) {
            self.0.fetch_sub(1, Ordering::Relaxed);
        }
    }
    running.fetch_add(1, Ordering::Relaxed);
    let guard = Running(running.clone());
    async move {
        let _running = guard;
        task.await;
    }
}
