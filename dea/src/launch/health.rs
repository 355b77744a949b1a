//! Health checks of an instance (`reference/buildpacks.md` §4): `port` (TCP connect), `http`
//! (GET answering exactly 200) and `process` (alive), probed until healthy within the start
//! timeout.

use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::container::{Container, ExitStatus};

/// Which check CF runs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HealthCheck {
    /// TCP connect to the port (CF's default for `web`).
    Port { port: u16 },
    /// `GET endpoint` must answer exactly 200.
    Http { port: u16, endpoint: String },
    /// Healthy while the process runs.
    Process,
}

/// How to run the startup check.
/// For this long after start, failed startup probes are retried every [`FAST_PROBE_INTERVAL`]:
/// most apps listen within a second, and RUNNING (and routable) should follow at once.
pub const FAST_PROBING: Duration = Duration::from_secs(2);
/// The pause between startup probes during [`FAST_PROBING`].
pub const FAST_PROBE_INTERVAL: Duration = Duration::from_millis(50);

#[derive(Debug, Clone)]
pub struct HealthCheckConfig {
    pub check: HealthCheck,
    /// The address probes connect to (the instance's address).
    pub host: IpAddr,
    /// How long the instance has to pass its first probe (CF default 60 s).
    pub start_timeout: Duration,
    /// Timeout of one probe (CF default 1 s).
    pub invocation_timeout: Duration,
    /// Pause between failed startup probes.
    pub interval: Duration,
}

impl HealthCheckConfig {
    /// CF's defaults for `check` against `host`.
    pub fn new(check: HealthCheck, host: IpAddr) -> Self {
        HealthCheckConfig {
            check,
            host,
            start_timeout: Duration::from_secs(60),
            invocation_timeout: Duration::from_secs(1),
            interval: Duration::from_millis(500),
        }
    }
}

/// Why one probe failed, worded like CF's healthcheck binary.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum ProbeError {
    #[error("failed to make TCP connection to {address}: {reason}")]
    Tcp { address: SocketAddr, reason: String },
    #[error("failed to make TCP connection to {address}: timed out after {seconds:.2} seconds")]
    TcpTimeout { address: SocketAddr, seconds: f64 },
    #[error("failed to make HTTP request to '{endpoint}' on port {port}: received status code {status} in {millis}ms")]
    HttpStatus {
        endpoint: String,
        port: u16,
        status: u16,
        millis: u128,
    },
    #[error("failed to make HTTP request to '{endpoint}' on port {port}: timed out after {seconds:.2} seconds")]
    HttpTimeout {
        endpoint: String,
        port: u16,
        seconds: f64,
    },
    #[error("failed to make HTTP request to '{endpoint}' on port {port}: {reason}")]
    Http {
        endpoint: String,
        port: u16,
        reason: String,
    },
    #[error("process is not running")]
    ProcessGone,
}

/// Why an instance did not become healthy.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum HealthError {
    #[error("Instance never healthy after {}s: {last_error}", .after.as_secs())]
    NeverHealthy {
        after: Duration,
        last_error: ProbeError,
    },
    #[error("{}", .0.description())]
    Exited(ExitStatus),
}

/// Runs one probe of `check` against `host`.
pub async fn probe(
    check: &HealthCheck,
    host: IpAddr,
    timeout: Duration,
    container: Option<&dyn Container>,
) -> Result<(), ProbeError> {
    match check {
        HealthCheck::Process => match container.and_then(|c| c.exit_status()) {
            Some(_) => Err(ProbeError::ProcessGone),
            None => Ok(()),
        },
        HealthCheck::Port { port } => {
            let address = SocketAddr::new(host, *port);
            match tokio::time::timeout(timeout, TcpStream::connect(address)).await {
                Ok(Ok(_)) => Ok(()),
                Ok(Err(error)) => Err(ProbeError::Tcp {
                    address,
                    reason: error.to_string(),
                }),
                Err(_) => Err(ProbeError::TcpTimeout {
                    address,
                    seconds: timeout.as_secs_f64(),
                }),
            }
        }
        HealthCheck::Http { port, endpoint } => {
            let started = Instant::now();
            let address = SocketAddr::new(host, *port);
            let http_error = |reason: String| ProbeError::Http {
                endpoint: endpoint.clone(),
                port: *port,
                reason,
            };
            match tokio::time::timeout(timeout, http_status(address, endpoint)).await {
                Ok(Ok(200)) => Ok(()),
                Ok(Ok(status)) => Err(ProbeError::HttpStatus {
                    endpoint: endpoint.clone(),
                    port: *port,
                    status,
                    millis: started.elapsed().as_millis(),
                }),
                Ok(Err(error)) if error.kind() == std::io::ErrorKind::ConnectionRefused => {
                    Err(http_error("connection refused".into()))
                }
                Ok(Err(error)) => Err(http_error(error.to_string())),
                Err(_) => Err(ProbeError::HttpTimeout {
                    endpoint: endpoint.clone(),
                    port: *port,
                    seconds: timeout.as_secs_f64(),
                }),
            }
        }
    }
}

/// The status code of `GET endpoint` (HTTP/1.1, no redirects followed), with Diego's headers.
async fn http_status(address: SocketAddr, endpoint: &str) -> std::io::Result<u16> {
    let mut stream = TcpStream::connect(address).await?;
    let request = format!(
        "GET {endpoint} HTTP/1.1\r\nHost: {address}\r\nUser-Agent: diego-healthcheck\r\n\
         X-Forwarded-Proto: https\r\nConnection: close\r\n\r\n"
    );
    stream.write_all(request.as_bytes()).await?;
    let mut head = Vec::new();
    let mut buffer = [0u8; 512];
    while !head.windows(2).any(|w| w == b"\r\n") && head.len() < 8192 {
        let n = stream.read(&mut buffer).await?;
        if n == 0 {
            break;
        }
        head.extend_from_slice(&buffer[..n]);
    }
    let status_line = String::from_utf8_lossy(&head);
    status_line
        .split_whitespace()
        .nth(1)
        .and_then(|code| code.parse().ok())
        .ok_or_else(|| std::io::Error::other("malformed HTTP response"))
}

/// Probes until the first success, the start timeout, or the container's exit.
pub async fn wait_until_healthy(
    config: &HealthCheckConfig,
    container: &dyn Container,
) -> Result<(), HealthError> {
    let started = Instant::now();
    loop {
        if let Some(status) = container.exit_status() {
            return Err(HealthError::Exited(status));
        }
        let result = probe(
            &config.check,
            config.host,
            config.invocation_timeout,
            Some(container),
        )
        .await;
        let last_error = match result {
            Ok(()) => return Ok(()),
            Err(error) => error,
        };
        if started.elapsed() >= config.start_timeout {
            return Err(HealthError::NeverHealthy {
                after: config.start_timeout,
                last_error,
            });
        }
        // Probe often while a fast app is most likely to come up, then every `interval`; wake
        // early if the container exits meanwhile.
        let pause = if started.elapsed() < FAST_PROBING {
            FAST_PROBE_INTERVAL.min(config.interval)
        } else {
            config.interval
        };
        let _ = tokio::time::timeout(pause, container.wait()).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::Ipv4Addr;

    const LOCALHOST: IpAddr = IpAddr::V4(Ipv4Addr::LOCALHOST);

    #[tokio::test]
    async fn port_and_http_probes() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let server = tokio::spawn(async move {
            for status in ["200 OK", "204 No Content"] {
                let (mut socket, _) = listener.accept().await.unwrap();
                let mut buffer = [0u8; 1024];
                let n = socket.read(&mut buffer).await.unwrap();
                assert!(
                    String::from_utf8_lossy(&buffer[..n]).contains("User-Agent: diego-healthcheck")
                );
                let response = format!("HTTP/1.1 {status}\r\nContent-Length: 0\r\n\r\n");
                socket.write_all(response.as_bytes()).await.unwrap();
            }
        });
        let http = HealthCheck::Http {
            port,
            endpoint: "/health".into(),
        };
        let second = Duration::from_secs(1);
        assert_eq!(probe(&http, LOCALHOST, second, None).await, Ok(()));
        let error = probe(&http, LOCALHOST, second, None).await.unwrap_err();
        assert!(error.to_string().starts_with(&format!(
            "failed to make HTTP request to '/health' on port {port}: received status code 204 in"
        )));
        server.await.unwrap();
        let refused = probe(&HealthCheck::Port { port }, LOCALHOST, second, None)
            .await
            .unwrap_err();
        assert!(refused.to_string().starts_with(&format!(
            "failed to make TCP connection to 127.0.0.1:{port}: "
        )));
        let refused_http = probe(&http, LOCALHOST, second, None).await.unwrap_err();
        assert_eq!(
            refused_http.to_string(),
            format!("failed to make HTTP request to '/health' on port {port}: connection refused")
        );
    }
}
