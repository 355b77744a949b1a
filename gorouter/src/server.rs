//! The HTTP/1.1 front end: accepts client connections and serves each with hyper, handing
//! requests to the [`Proxy`]. On shutdown it stops accepting, lets open connections finish
//! their current request (graceful shutdown), and aborts what remains after a drain timeout.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use hyper::service::service_fn;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio::task::JoinSet;

use crate::proxy::Proxy;

/// How long stopping waits for in-flight requests before cutting connections.
const SHUTDOWN_DRAIN_TIMEOUT: Duration = Duration::from_secs(10);
/// A client must send its request head within this time (slowloris protection).
const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(30);
/// Pause after an accept error (e.g. out of file descriptors) before accepting again.
const ACCEPT_ERROR_BACKOFF: Duration = Duration::from_millis(50);

pub(crate) async fn accept_loop(
    listener: TcpListener,
    proxy: Arc<Proxy>,
    mut shutdown: watch::Receiver<bool>,
) {
    let mut connections = JoinSet::new();
    loop {
        tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((stream, client_addr)) => {
                    connections.spawn(serve_connection(stream, client_addr, proxy.clone(), shutdown.clone()));
                }
                Err(error) => {
                    tracing::warn!(%error, "accepting a client connection failed");
                    tokio::time::sleep(ACCEPT_ERROR_BACKOFF).await;
                }
            },
            Some(_) = connections.join_next(), if !connections.is_empty() => {}
            _ = crate::tasks::stopped(&mut shutdown) => break,
        }
    }
    drop(listener);
    let drained = tokio::time::timeout(SHUTDOWN_DRAIN_TIMEOUT, async {
        while connections.join_next().await.is_some() {}
    })
    .await;
    if drained.is_err() {
        tracing::warn!(
            open = connections.len(),
            "connections still open after the drain timeout; closing them"
        );
        connections.shutdown().await;
    }
}

async fn serve_connection(
    stream: TcpStream,
    client_addr: SocketAddr,
    proxy: Arc<Proxy>,
    mut shutdown: watch::Receiver<bool>,
) {
    let _ = stream.set_nodelay(true);
    let service = service_fn(move |request| proxy.clone().handle(client_addr, request));
    let connection = hyper::server::conn::http1::Builder::new()
        .timer(TokioTimer::new())
        .header_read_timeout(HEADER_READ_TIMEOUT)
        .serve_connection(TokioIo::new(stream), service)
        .with_upgrades();
    tokio::pin!(connection);
    let result = tokio::select! {
        result = connection.as_mut() => result,
        _ = crate::tasks::stopped(&mut shutdown) => {
            connection.as_mut().graceful_shutdown();
            connection.await
        }
    };
    if let Err(error) = result {
        tracing::debug!(%error, client = %client_addr, "client connection ended with an error");
    }
}
