//! A userspace TCP proxy: accepts on a listener and copies bytes both ways to a fixed target.
//! Used in isolated mode for the instance's host port (`host:<port>` → `<container ip>:8080`)
//! and for allow-listed host services (`<gateway>:<port>` → `127.0.0.1:<port>`).

use std::net::SocketAddr;
use std::time::Duration;

use tokio::net::{TcpListener, TcpStream};
use tokio::task::{JoinHandle, JoinSet};

/// How long a proxied connection may take to reach its target.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// A running proxy. It owns its accept loop and every connection; dropping it ends them all.
#[derive(Debug)]
pub struct TcpProxy {
    local_address: SocketAddr,
    target: SocketAddr,
    task: JoinHandle<()>,
}

impl TcpProxy {
    /// Starts proxying connections accepted on `listener` to `target`.
    pub fn start(listener: TcpListener, target: SocketAddr) -> std::io::Result<TcpProxy> {
        let local_address = listener.local_addr()?;
        let task = tokio::spawn(accept_loop(listener, target));
        Ok(TcpProxy {
            local_address,
            target,
            task,
        })
    }

    pub fn local_address(&self) -> SocketAddr {
        self.local_address
    }

    pub fn target(&self) -> SocketAddr {
        self.target
    }
}

impl Drop for TcpProxy {
    fn drop(&mut self) {
        // Aborting the accept loop drops its JoinSet, which aborts every open connection.
        self.task.abort();
    }
}

async fn accept_loop(listener: TcpListener, target: SocketAddr) {
    let mut connections = JoinSet::new();
    loop {
        tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((client, _)) => {
                    connections.spawn(proxy_connection(client, target));
                }
                Err(error) => {
                    tracing::debug!(%error, %target, "proxy accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            },
            Some(_) = connections.join_next(), if !connections.is_empty() => {}
        }
    }
}

async fn proxy_connection(mut client: TcpStream, target: SocketAddr) {
    let upstream = tokio::time::timeout(CONNECT_TIMEOUT, TcpStream::connect(target)).await;
    let mut upstream = match upstream {
        Ok(Ok(upstream)) => upstream,
        Ok(Err(error)) => {
            tracing::debug!(%error, %target, "proxy cannot reach its target");
            return;
        }
        Err(_) => {
            tracing::debug!(%target, "proxy timed out connecting to its target");
            return;
        }
    };
    let _ = client.set_nodelay(true);
    let _ = upstream.set_nodelay(true);
    if let Err(error) = tokio::io::copy_bidirectional(&mut client, &mut upstream).await {
        tracing::trace!(%error, %target, "proxied connection ended with an error");
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    #[tokio::test]
    async fn bytes_flow_both_ways_and_drop_closes_everything() {
        let upstream = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let target = upstream.local_addr().unwrap();
        let echo = tokio::spawn(async move {
            let (mut socket, _) = upstream.accept().await.unwrap();
            let mut buffer = [0u8; 5];
            socket.read_exact(&mut buffer).await.unwrap();
            socket.write_all(&buffer).await.unwrap();
            // Keep the upstream side open; the proxy's drop must close the client anyway.
            let mut rest = Vec::new();
            let _ = socket.read_to_end(&mut rest).await;
        });
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let proxy = TcpProxy::start(listener, target).unwrap();
        assert_eq!(proxy.target(), target);
        let mut client = TcpStream::connect(proxy.local_address()).await.unwrap();
        client.write_all(b"hello").await.unwrap();
        let mut buffer = [0u8; 5];
        client.read_exact(&mut buffer).await.unwrap();
        assert_eq!(&buffer, b"hello");

        let address = proxy.local_address();
        drop(proxy);
        let mut rest = Vec::new();
        // Closed (EOF or reset) rather than left hanging.
        let _ = tokio::time::timeout(Duration::from_secs(5), client.read_to_end(&mut rest))
            .await
            .expect("the proxied connection is closed when the proxy is dropped");
        echo.await.unwrap();
        // The listener is closed too (the accept loop has ended once abort took effect).
        let mut refused = false;
        for _ in 0..50 {
            if TcpStream::connect(address).await.is_err() {
                refused = true;
                break;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        assert!(refused, "the listener is closed");
    }
}
