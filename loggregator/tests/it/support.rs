//! Test support: starting a loggregator on ephemeral ports, a small fake HTTP server for the
//! systems we do not own (UAA, Cloud Controller), and a bounded retry helper.

use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use http_body_util::Full;
use hyper::body::Bytes;
use hyper::service::service_fn;
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;
use loggregator::{Listeners, LoggregatorConfig, LoggregatorServer};
use protocol::logs::{now_nanos, Envelope, LogEmitter, LogType};

/// Retries `check` until it returns `Some`, for at most `timeout`.
pub(crate) async fn eventually<T, F, Fut>(timeout: Duration, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        if let Some(value) = check().await {
            return value;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "condition not met within {timeout:?}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// A config that serves reads without tokens.
pub(crate) fn open_config() -> LoggregatorConfig {
    LoggregatorConfig {
        skip_authorization: true,
        ..LoggregatorConfig::default()
    }
}

pub(crate) async fn start(config: LoggregatorConfig) -> LoggregatorServer {
    let listeners = Listeners {
        http: std::net::TcpListener::bind("127.0.0.1:0").unwrap(),
        ingress: std::net::UdpSocket::bind("127.0.0.1:0").unwrap(),
    };
    loggregator::run(config, listeners, std::future::pending())
        .await
        .expect("loggregator starts")
}

pub(crate) fn emitter(server: &LoggregatorServer) -> LogEmitter {
    LogEmitter::new(Some(server.ingress_addr())).unwrap()
}

/// A log envelope `seconds_ago` in the past (plus `offset_nanos`), for ordering tests.
pub(crate) fn log_at(source_id: &str, timestamp: i64, text: &str) -> Envelope {
    let mut envelope = Envelope::log(source_id, "0", "APP/PROC/WEB", LogType::Out, text);
    envelope.timestamp = timestamp;
    envelope
}

/// A timestamp `seconds` before now.
pub(crate) fn seconds_ago(seconds: i64) -> i64 {
    now_nanos() - seconds * 1_000_000_000
}

pub(crate) fn url(server: &LoggregatorServer, path: &str) -> String {
    format!("http://{}{path}", server.http_addr())
}

/// GET → (status, body).
pub(crate) async fn get(url: &str, token: Option<&str>) -> (u16, String) {
    let client = reqwest::Client::new();
    let mut request = client.get(url);
    if let Some(token) = token {
        request = request.header("Authorization", format!("bearer {token}"));
    }
    let response = request.send().await.expect("request succeeds");
    let status = response.status().as_u16();
    (status, response.text().await.unwrap())
}

/// The `batch` of a read answer, parsed.
pub(crate) async fn read(
    server: &LoggregatorServer,
    source_id: &str,
    query: &str,
) -> Vec<serde_json::Value> {
    let (status, body) = get(
        &url(server, &format!("/api/v1/read/{source_id}?{query}")),
        None,
    )
    .await;
    assert_eq!(status, 200, "{body}");
    let value: serde_json::Value = serde_json::from_str(&body).unwrap();
    value["envelopes"]["batch"].as_array().unwrap().clone()
}

/// Waits until `source_id` holds at least `count` envelopes.
pub(crate) async fn wait_for_count(
    server: &LoggregatorServer,
    source_id: &str,
    count: usize,
) -> Vec<serde_json::Value> {
    eventually(Duration::from_secs(10), || async {
        let batch = read(server, source_id, "start_time=0&limit=1000").await;
        (batch.len() >= count).then_some(batch)
    })
    .await
}

/// A recorded request to a fake server.
#[derive(Debug, Clone)]
pub(crate) struct Recorded {
    pub(crate) path_and_query: String,
    pub(crate) authorization: Option<String>,
}

type Handler = dyn Fn(&Recorded) -> (u16, String) + Send + Sync;

/// A fake HTTP server answering with `handler`, recording requests.
pub(crate) struct FakeServer {
    pub(crate) addr: SocketAddr,
    pub(crate) requests: Arc<Mutex<Vec<Recorded>>>,
    task: tokio::task::JoinHandle<()>,
}

impl FakeServer {
    pub(crate) async fn start(
        handler: impl Fn(&Recorded) -> (u16, String) + Send + Sync + 'static,
    ) -> FakeServer {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let requests = Arc::new(Mutex::new(Vec::new()));
        let handler: Arc<Handler> = Arc::new(handler);
        let recorded = requests.clone();
        let task = tokio::spawn(async move {
            let mut connections = tokio::task::JoinSet::new();
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    continue;
                };
                let handler = handler.clone();
                let recorded = recorded.clone();
                connections.spawn(async move {
                    let service = service_fn(move |request: Request<hyper::body::Incoming>| {
                        let entry = Recorded {
                            path_and_query: request
                                .uri()
                                .path_and_query()
                                .map(|pq| pq.to_string())
                                .unwrap_or_default(),
                            authorization: request
                                .headers()
                                .get("authorization")
                                .and_then(|value| value.to_str().ok())
                                .map(str::to_owned),
                        };
                        let (status, body) = handler(&entry);
                        recorded.lock().unwrap().push(entry);
                        let mut response = Response::new(Full::new(Bytes::from(body)));
                        *response.status_mut() = hyper::StatusCode::from_u16(status).unwrap();
                        response
                            .headers_mut()
                            .insert("content-type", "application/json".parse().unwrap());
                        async move { Ok::<_, Infallible>(response) }
                    });
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), service)
                        .await;
                });
            }
        });
        FakeServer {
            addr,
            requests,
            task,
        }
    }

    pub(crate) fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    pub(crate) fn requests(&self) -> Vec<Recorded> {
        self.requests.lock().unwrap().clone()
    }
}

impl Drop for FakeServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}
