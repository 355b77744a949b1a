//! Test harness: a real `nats-server` on a free loopback port with a token, a real router on
//! 127.0.0.1:0, fake app backends as real HTTP servers, a small HTTP client, streaming bodies
//! and a bounded retry helper.

use std::collections::BTreeMap;
use std::convert::Infallible;
use std::future::Future;
use std::net::{SocketAddr, TcpListener};
use std::pin::Pin;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use gorouter::{RouterConfig, RouterServer};
use http_body_util::{BodyExt, Empty};
use hyper::body::{Body, Bytes, Frame, Incoming};
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use protocol::router::RegistryMessage;
use serde_json::{json, Value};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

/// Waits up to 10 s for `check` to hold, polling every 20 ms.
pub(crate) async fn eventually<F, Fut>(what: &str, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        if check().await {
            return;
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// A loopback port nothing listens on (bound, then released), so connects are refused.
pub(crate) fn refused_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A `nats-server` child process with token auth; killed when dropped.
pub(crate) struct Nats {
    child: Child,
    pub(crate) port: u16,
    token: String,
}

impl Nats {
    /// `None` (after saying why) when `nats-server` is not installed and `KILN_REQUIRE_NATS`
    /// is not `1`.
    pub(crate) async fn start() -> Option<Nats> {
        let installed = Command::new("nats-server")
            .arg("--version")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok();
        if !installed {
            if std::env::var("KILN_REQUIRE_NATS").as_deref() == Ok("1") {
                panic!("KILN_REQUIRE_NATS=1 but nats-server is not installed");
            }
            eprintln!(
                "skipping: nats-server is not installed (Debian: apt-get install nats-server)"
            );
            return None;
        }
        let port = refused_port();
        let token = uuid::Uuid::new_v4().simple().to_string();
        let child = spawn_nats(port, &token);
        let nats = Nats { child, port, token };
        nats.wait_until_listening().await;
        Some(nats)
    }

    async fn wait_until_listening(&self) {
        let port = self.port;
        eventually("nats-server to listen", || async move {
            tokio::net::TcpStream::connect(("127.0.0.1", port))
                .await
                .is_ok()
        })
        .await;
    }

    /// Kills the server and starts a new one on the same port (to make clients reconnect).
    pub(crate) async fn restart(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        self.child = spawn_nats(self.port, &self.token);
        self.wait_until_listening().await;
    }

    pub(crate) async fn client(&self) -> async_nats::Client {
        async_nats::ConnectOptions::with_token(self.token.clone())
            .connect(format!("nats://127.0.0.1:{}", self.port))
            .await
            .expect("connect to the test nats-server")
    }
}

fn spawn_nats(port: u16, token: &str) -> Child {
    Command::new("nats-server")
        .args(["-a", "127.0.0.1", "-p", &port.to_string(), "--auth", token])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start nats-server")
}

impl Drop for Nats {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The configuration tests start from: gorouter's defaults with a fixed id.
pub(crate) fn test_config() -> RouterConfig {
    RouterConfig {
        id: Some("0-test-router".into()),
        ..RouterConfig::default()
    }
}

/// A router on 127.0.0.1:0 with its own NATS connection, plus a separate registrar client.
pub(crate) struct TestRouter {
    pub(crate) server: RouterServer,
    pub(crate) bus: async_nats::Client,
    pub(crate) nats: Nats,
}

impl TestRouter {
    /// `None` when NATS is unavailable (see [`Nats::start`]).
    pub(crate) async fn start(config: RouterConfig) -> Option<TestRouter> {
        let nats = Nats::start().await?;
        let bus = nats.client().await;
        let server = start_router(config, &nats).await;
        wait_for_subscriptions(&bus).await;
        Some(TestRouter { server, bus, nats })
    }

    pub(crate) fn addr(&self) -> SocketAddr {
        self.server.local_addr()
    }

    /// Publishes `router.register` and waits until the router holds `endpoints` endpoints.
    pub(crate) async fn register(&self, message: &RegistryMessage, endpoints: usize) {
        self.publish("router.register", message).await;
        eventually("the registration to land", || async {
            self.server.endpoint_count() == endpoints
        })
        .await;
    }

    pub(crate) async fn publish(&self, subject: &'static str, message: &RegistryMessage) {
        let payload = serde_json::to_vec(message).unwrap();
        self.bus.publish(subject, payload.into()).await.unwrap();
        self.bus.flush().await.unwrap();
    }

    pub(crate) async fn stop(self) {
        self.server.stop().await;
    }
}

pub(crate) async fn start_router(config: RouterConfig, nats: &Nats) -> RouterServer {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    gorouter::run(config, listener, nats.client().await)
        .await
        .expect("router starts")
}

/// Waits until the router answers `router.greet`, as a registrar starting up would. The
/// router's client flushes its subscriptions to the socket before `run` returns, but the server
/// may not have processed them yet when another connection publishes; the greet reply proves
/// it has (the register subscription is sent before the greet one).
async fn wait_for_subscriptions(bus: &async_nats::Client) {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let greet = bus.request("router.greet", Bytes::new());
        if let Ok(Ok(_)) = tokio::time::timeout(Duration::from_millis(500), greet).await {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "the router did not answer router.greet"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// A `router.register` body for a backend on 127.0.0.1.
pub(crate) fn registration(port: u16, uris: &[&str]) -> RegistryMessage {
    RegistryMessage {
        host: "127.0.0.1".into(),
        port,
        uris: uris.iter().map(|uri| uri.to_string()).collect(),
        app: Some("app-guid-1".into()),
        private_instance_id: Some(format!("instance-{port}")),
        private_instance_index: Some("0".into()),
        ..RegistryMessage::default()
    }
}

/// A fake app instance: a real HTTP/1.1 server on 127.0.0.1:0.
///
/// - `/echo` streams the request body back as the response body;
/// - `/download/<n>` streams `n` bytes;
/// - `/ws` accepts an `Upgrade: kiln-echo` handshake and echoes bytes on the upgraded connection;
/// - anything else answers JSON `{"backend", "method", "path", "headers"}`.
pub(crate) struct Backend {
    pub(crate) id: String,
    pub(crate) port: u16,
    connections: Arc<AtomicUsize>,
    task: JoinHandle<()>,
}

impl Backend {
    pub(crate) async fn start(id: &str) -> Backend {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let connections = Arc::new(AtomicUsize::new(0));
        let id_owned = id.to_owned();
        let counter = connections.clone();
        let task = tokio::spawn(async move {
            let mut served = tokio::task::JoinSet::new();
            loop {
                let (stream, _) = match listener.accept().await {
                    Ok(accepted) => accepted,
                    Err(_) => continue,
                };
                counter.fetch_add(1, Ordering::SeqCst);
                let id = id_owned.clone();
                served.spawn(async move {
                    let service = hyper::service::service_fn(move |request| {
                        backend_handler(id.clone(), request)
                    });
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), service)
                        .with_upgrades()
                        .await;
                });
                while served.try_join_next().is_some() {}
            }
        });
        Backend {
            id: id.to_owned(),
            port,
            connections,
            task,
        }
    }

    /// TCP connections this backend has accepted.
    pub(crate) fn connections(&self) -> usize {
        self.connections.load(Ordering::SeqCst)
    }
}

impl Drop for Backend {
    fn drop(&mut self) {
        self.task.abort();
    }
}

type BackendBody = http_body_util::combinators::BoxBody<Bytes, hyper::Error>;

async fn backend_handler(
    id: String,
    mut request: Request<Incoming>,
) -> Result<Response<BackendBody>, Infallible> {
    let path = request.uri().path().to_owned();
    if path == "/echo" {
        return Ok(Response::new(request.into_body().boxed()));
    }
    if let Some(n) = path.strip_prefix("/download/") {
        let n: usize = n.parse().unwrap();
        return Ok(Response::new(
            ChunkedBody::new(n).map_err(|never| match never {}).boxed(),
        ));
    }
    if path == "/ws" && request.headers().contains_key("upgrade") {
        let upgrade = hyper::upgrade::on(&mut request);
        tokio::spawn(async move {
            if let Ok(upgraded) = upgrade.await {
                let (mut reader, mut writer) = tokio::io::split(TokioIo::new(upgraded));
                let _ = tokio::io::copy(&mut reader, &mut writer).await;
            }
        });
        let response = Response::builder()
            .status(StatusCode::SWITCHING_PROTOCOLS)
            .header("connection", "upgrade")
            .header("upgrade", "kiln-echo")
            .body(Empty::new().map_err(|never| match never {}).boxed())
            .unwrap();
        return Ok(response);
    }
    let mut headers = BTreeMap::<String, String>::new();
    for (name, value) in request.headers() {
        let value = value.to_str().unwrap_or("<binary>").to_owned();
        headers
            .entry(name.as_str().to_owned())
            .and_modify(|existing| {
                existing.push_str(", ");
                existing.push_str(&value);
            })
            .or_insert(value);
    }
    let body = json!({
        "backend": id,
        "method": request.method().as_str(),
        "path": request.uri().to_string(),
        "headers": headers,
    });
    let body = http_body_util::Full::new(Bytes::from(body.to_string()))
        .map_err(|never| match never {})
        .boxed();
    Ok(Response::builder()
        .header("content-type", "application/json")
        .body(body)
        .unwrap())
}

/// A body of `n` bytes produced in 64 KiB chunks, never held in memory as a whole.
pub(crate) struct ChunkedBody {
    remaining: usize,
    chunk: Bytes,
}

impl ChunkedBody {
    pub(crate) fn new(n: usize) -> ChunkedBody {
        ChunkedBody {
            remaining: n,
            chunk: Bytes::from(vec![b'k'; 64 * 1024]),
        }
    }
}

impl Body for ChunkedBody {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        if self.remaining == 0 {
            return Poll::Ready(None);
        }
        let n = self.remaining.min(self.chunk.len());
        self.remaining -= n;
        Poll::Ready(Some(Ok(Frame::data(self.chunk.slice(..n)))))
    }
}

/// A request body fed chunk by chunk through a channel, so a test controls its pace.
pub(crate) struct ChannelBody(pub(crate) mpsc::Receiver<Bytes>);

impl Body for ChannelBody {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        self.0
            .poll_recv(cx)
            .map(|chunk| chunk.map(|c| Ok(Frame::data(c))))
    }
}

/// One HTTP/1.1 client connection to the router; its driver task ends when dropped.
pub(crate) struct Client<B> {
    sender: hyper::client::conn::http1::SendRequest<B>,
    driver: JoinHandle<()>,
}

impl<B> Client<B>
where
    B: Body + Send + 'static,
    B::Data: Send,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    pub(crate) async fn connect(addr: SocketAddr) -> Client<B> {
        let stream = tokio::net::TcpStream::connect(addr).await.unwrap();
        let (sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
            .await
            .unwrap();
        let driver = tokio::spawn(async move {
            let _ = connection.await;
        });
        Client { sender, driver }
    }

    pub(crate) async fn send(&mut self, request: Request<B>) -> Response<Incoming> {
        self.sender.ready().await.unwrap();
        self.sender.send_request(request).await.unwrap()
    }
}

impl<B> Drop for Client<B> {
    fn drop(&mut self) {
        self.driver.abort();
    }
}

/// A response read to the end.
pub(crate) struct Answer {
    pub(crate) status: StatusCode,
    pub(crate) headers: hyper::HeaderMap,
    pub(crate) body: Bytes,
}

impl Answer {
    pub(crate) fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap_or_else(|error| {
            panic!(
                "{error}: body {:?} (status {})",
                String::from_utf8_lossy(&self.body),
                self.status
            )
        })
    }

    pub(crate) fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|value| value.to_str().ok())
    }

    /// Which backend answered (JSON responses only).
    pub(crate) fn backend(&self) -> String {
        self.json()["backend"].as_str().unwrap().to_owned()
    }
}

/// Sends a request on a new connection and reads the whole response.
pub(crate) async fn request(addr: SocketAddr, request: Request<Empty<Bytes>>) -> Answer {
    let mut client = Client::connect(addr).await;
    read(client.send(request).await).await
}

pub(crate) async fn read(response: Response<Incoming>) -> Answer {
    let (parts, body) = response.into_parts();
    Answer {
        status: parts.status,
        headers: parts.headers,
        body: body.collect().await.unwrap().to_bytes(),
    }
}

/// `GET path` with the given `Host` header, on a new connection.
pub(crate) async fn get(addr: SocketAddr, host: &str, path: &str) -> Answer {
    request(addr, get_request(host, path)).await
}

pub(crate) fn get_request(host: &str, path: &str) -> Request<Empty<Bytes>> {
    Request::get(path)
        .header("host", host)
        .body(Empty::new())
        .unwrap()
}
