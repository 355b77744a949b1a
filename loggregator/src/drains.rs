//! Syslog drains: the Cloud Controller's drain list, polled from
//! `GET {cc}/internal/v4/syslog_drain_urls?batch_size=N&next_id=M` (Basic auth), and one writer
//! task per (app, drain URL) that sends the app's log envelopes as RFC 5424 messages with
//! octet-counting framing over TCP (`syslog://`) or TLS (`syslog-tls://`, system roots plus the
//! configured `syslog_drain_ca_file`), or as one HTTP POST per message (`https://`, same trust,
//! and `http://`), body = the unframed message, `Content-Type: text/plain`, any 2xx = done.
//!
//! A drain that is slow or down never slows ingestion: the ingress thread only pushes into the
//! drain's bounded queue (dropping the oldest when full); the writer reconnects with capped
//! exponential backoff and reports losses in the app's stream with loggregator-agent's `LGR`
//! texts (`N messages lost for application … in user provided syslog drain with url …`,
//! `Failed to connect to …`).

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use http_body_util::{BodyExt, Full};
use hyper::body::Bytes;
use hyper_util::rt::TokioIo;
use protocol::logs::{Envelope, RawEnvelope};
use serde::Deserialize;
use tokio::io::{AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::{watch, Notify};
use tokio::task::JoinSet;
use tokio_rustls::rustls;

use crate::ingress::Ingestor;
use crate::metrics::Metrics;
use crate::syslog;

/// Dial and write timeout (loggregator-agent: 10 s each).
const IO_TIMEOUT: Duration = Duration::from_secs(10);
/// First reconnect delay; doubled after each failure up to `MAX_BACKOFF`.
const INITIAL_BACKOFF: Duration = Duration::from_millis(100);
/// Longest reconnect delay (the agent's cap).
const MAX_BACKOFF: Duration = Duration::from_secs(15);
/// Shortest interval between two "messages lost" notices of one drain.
const LOSS_NOTICE_INTERVAL: Duration = Duration::from_secs(1);
/// Read/write timeout of one POST to an `https://` drain (the agent's 20 s).
const HTTP_TIMEOUT: Duration = Duration::from_secs(20);
/// Attempts at one message to an HTTP drain before it is dropped (the agent's 22).
const MAX_HTTP_ATTEMPTS: u32 = 22;
/// How long stopping waits for drain writers to finish their current write.
const STOP_TIMEOUT: Duration = Duration::from_secs(2);

/// Which drains exist for which app; the ingress thread reads it for every batch.
#[derive(Default)]
pub(crate) struct DrainRegistry {
    by_app: RwLock<HashMap<String, Vec<Arc<DrainQueue>>>>,
}

/// Counters of one drain for `/metrics`.
pub(crate) struct DrainSnapshot {
    pub(crate) app_id: String,
    pub(crate) url: String,
    pub(crate) sent: u64,
    pub(crate) dropped: u64,
}

impl DrainRegistry {
    /// Queues each log envelope for its app's drains. Never blocks on a drain.
    pub(crate) fn dispatch(&self, envelopes: Vec<Envelope>) {
        let by_app = self
            .by_app
            .read()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        if by_app.is_empty() {
            return;
        }
        for envelope in envelopes {
            if envelope.as_log().is_none() {
                continue;
            }
            let Some(drains) = by_app.get(&envelope.source_id) else {
                continue;
            };
            for drain in drains {
                drain.push(envelope.clone());
            }
        }
    }

    /// Like `dispatch` for envelopes still in their JSON form: only those of apps with drains
    /// are decoded.
    pub(crate) fn dispatch_raw(&self, envelopes: &[RawEnvelope<'_>]) {
        let by_app = self
            .by_app
            .read()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        if by_app.is_empty() {
            return;
        }
        for raw in envelopes {
            let Some(drains) = by_app.get(raw.source_id) else {
                continue;
            };
            let envelope = match raw.decode() {
                Ok(envelope) => envelope,
                Err(error) => {
                    // `scan` only returns what decodes; this would be a bug, not bad input.
                    tracing::warn!(%error, "scanned envelope does not decode");
                    continue;
                }
            };
            for drain in drains {
                drain.push(envelope.clone());
            }
        }
    }

    pub(crate) fn snapshot(&self) -> Vec<DrainSnapshot> {
        let by_app = self
            .by_app
            .read()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        let mut out: Vec<DrainSnapshot> = by_app
            .values()
            .flatten()
            .map(|drain| DrainSnapshot {
                app_id: drain.app_id.clone(),
                url: drain.display_url.clone(),
                sent: drain.sent.load(Ordering::Relaxed),
                dropped: drain.dropped_total.load(Ordering::Relaxed),
            })
            .collect();
        out.sort_by(|a, b| (&a.app_id, &a.url).cmp(&(&b.app_id, &b.url)));
        out
    }

    fn replace(&self, drains: &HashMap<DrainKey, Arc<DrainQueue>>) {
        let mut by_app: HashMap<String, Vec<Arc<DrainQueue>>> = HashMap::new();
        for ((app_id, _), drain) in drains {
            by_app
                .entry(app_id.clone())
                .or_default()
                .push(drain.clone());
        }
        *self
            .by_app
            .write()
            .unwrap_or_else(|poisoned| poisoned.into_inner()) = by_app;
    }
}

/// The bounded queue between ingestion and one drain writer.
pub(crate) struct DrainQueue {
    app_id: String,
    /// The URL as configured (CF prints it raw in "Failed to connect to …").
    raw_url: String,
    /// The URL without userinfo and query, for notices and metrics.
    display_url: String,
    hostname: Mutex<String>,
    queue: Mutex<VecDeque<Envelope>>,
    capacity: usize,
    notify: Notify,
    stopped: AtomicBool,
    sent: AtomicU64,
    dropped_total: AtomicU64,
    dropped_unreported: AtomicU64,
}

impl DrainQueue {
    fn push(&self, envelope: Envelope) {
        {
            let mut queue = self
                .queue
                .lock()
                .unwrap_or_else(|poisoned| poisoned.into_inner());
            if queue.len() >= self.capacity {
                queue.pop_front();
                self.dropped_total.fetch_add(1, Ordering::Relaxed);
                self.dropped_unreported.fetch_add(1, Ordering::Relaxed);
            }
            queue.push_back(envelope);
        }
        self.notify.notify_one();
    }

    fn pop(&self) -> Option<Envelope> {
        self.queue
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .pop_front()
    }

    fn push_front(&self, envelope: Envelope) {
        let mut queue = self
            .queue
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        if queue.len() < self.capacity {
            queue.push_front(envelope);
        } else {
            self.dropped_total.fetch_add(1, Ordering::Relaxed);
            self.dropped_unreported.fetch_add(1, Ordering::Relaxed);
        }
    }

    fn stop(&self) {
        self.stopped.store(true, Ordering::Relaxed);
        self.notify.notify_one();
    }

    fn is_stopped(&self) -> bool {
        self.stopped.load(Ordering::Relaxed)
    }
}

type DrainKey = (String, String);

/// Where the drain list comes from.
pub(crate) struct DrainSource {
    pub(crate) cc_url: String,
    pub(crate) username: String,
    pub(crate) password: String,
    pub(crate) batch_size: u32,
    pub(crate) poll_interval: Duration,
    pub(crate) queue_size: usize,
    pub(crate) tls: Arc<rustls::ClientConfig>,
}

/// The TLS client configuration of `syslog-tls://` drains: the system's roots plus the PEM
/// certificates of `ca_file`.
pub(crate) fn tls_client_config(
    ca_file: Option<&str>,
) -> Result<Arc<rustls::ClientConfig>, String> {
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::CertificateDer;
    let mut roots = rustls::RootCertStore::empty();
    let native = rustls_native_certs::load_native_certs();
    roots.add_parsable_certificates(native.certs);
    if let Some(path) = ca_file {
        let pem = std::fs::read(path).map_err(|error| format!("cannot read {path}: {error}"))?;
        let mut added = 0;
        for certificate in CertificateDer::pem_slice_iter(&pem) {
            let certificate =
                certificate.map_err(|error| format!("{path}: invalid certificate: {error}"))?;
            roots
                .add(certificate)
                .map_err(|error| format!("{path}: unusable CA certificate: {error}"))?;
            added += 1;
        }
        if added == 0 {
            return Err(format!("{path} holds no PEM certificate"));
        }
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|error| error.to_string())?
        .with_root_certificates(roots)
        .with_no_client_auth();
    Ok(Arc::new(config))
}

#[derive(Deserialize)]
struct DrainPage {
    #[serde(default)]
    results: HashMap<String, AppDrains>,
    #[serde(default)]
    next_id: Option<u64>,
}

#[derive(Deserialize)]
struct AppDrains {
    #[serde(default)]
    drains: Vec<String>,
    #[serde(default)]
    hostname: String,
}

/// Polls the drain list and runs one writer per drain until shutdown.
pub(crate) async fn drain_loop(
    source: DrainSource,
    http: reqwest::Client,
    ingestor: Arc<Ingestor>,
    mut shutdown: watch::Receiver<bool>,
) {
    let mut writers: JoinSet<()> = JoinSet::new();
    let mut drains: HashMap<DrainKey, Arc<DrainQueue>> = HashMap::new();
    let mut interval = tokio::time::interval(source.poll_interval);
    interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = interval.tick() => {}
            Some(_) = writers.join_next(), if !writers.is_empty() => continue,
            _ = crate::stopped(&mut shutdown) => break,
        }
        Metrics::add(&ingestor.metrics.drain_polls, 1);
        let desired = match fetch_drains(&source, &http).await {
            Ok(desired) => desired,
            Err(error) => {
                Metrics::add(&ingestor.metrics.drain_poll_errors, 1);
                tracing::warn!(%error, "polling syslog drain urls failed; keeping the current drains");
                continue;
            }
        };
        let mut changed = false;
        drains.retain(|key, drain| {
            let keep = desired.contains_key(key);
            if !keep {
                tracing::info!(app_guid = %key.0, url = %drain.display_url, "syslog drain removed");
                drain.stop();
                changed = true;
            }
            keep
        });
        for (key, hostname) in desired {
            if let Some(existing) = drains.get(&key) {
                *existing
                    .hostname
                    .lock()
                    .unwrap_or_else(|poisoned| poisoned.into_inner()) = hostname;
                continue;
            }
            let target = match DrainTarget::parse(&key.1, &source.tls) {
                Ok(target) => target,
                Err(reason) => {
                    tracing::warn!(app_guid = %key.0, url = %anonymize(&key.1), %reason, "syslog drain skipped");
                    continue;
                }
            };
            let queue = Arc::new(DrainQueue {
                app_id: key.0.clone(),
                raw_url: key.1.clone(),
                display_url: anonymize(&key.1),
                hostname: Mutex::new(hostname),
                queue: Mutex::new(VecDeque::new()),
                capacity: source.queue_size,
                notify: Notify::new(),
                stopped: AtomicBool::new(false),
                sent: AtomicU64::new(0),
                dropped_total: AtomicU64::new(0),
                dropped_unreported: AtomicU64::new(0),
            });
            tracing::info!(app_guid = %key.0, url = %queue.display_url, "syslog drain added");
            writers.spawn(drain_writer(
                queue.clone(),
                target,
                ingestor.clone(),
                shutdown.clone(),
            ));
            drains.insert(key, queue);
            changed = true;
        }
        if changed {
            ingestor.drains.replace(&drains);
        }
    }
    for drain in drains.values() {
        drain.stop();
    }
    ingestor.drains.replace(&HashMap::new());
    let finished = tokio::time::timeout(STOP_TIMEOUT, async {
        while writers.join_next().await.is_some() {}
    })
    .await;
    if finished.is_err() {
        writers.shutdown().await;
    }
}

async fn fetch_drains(
    source: &DrainSource,
    http: &reqwest::Client,
) -> Result<HashMap<DrainKey, String>, String> {
    let mut desired = HashMap::new();
    let mut next_id: u64 = 0;
    // A bound on pages, so a misbehaving server cannot keep the poller forever.
    for _ in 0..10_000 {
        let url = format!(
            "{}/internal/v4/syslog_drain_urls?batch_size={}&next_id={next_id}",
            source.cc_url, source.batch_size
        );
        let response = http
            .get(&url)
            .basic_auth(&source.username, Some(&source.password))
            .timeout(IO_TIMEOUT)
            .send()
            .await
            .map_err(|error| error.to_string())?;
        if !response.status().is_success() {
            return Err(format!("status {}", response.status()));
        }
        let page: DrainPage = response.json().await.map_err(|error| error.to_string())?;
        let empty = page.results.is_empty();
        for (app_id, app) in page.results {
            for url in app.drains {
                let url = url.trim().to_owned();
                if !url.is_empty() {
                    desired.insert((app_id.clone(), url), app.hostname.clone());
                }
            }
        }
        match page.next_id {
            Some(next) if !empty && next > next_id => next_id = next,
            _ => return Ok(desired),
        }
    }
    Ok(desired)
}

/// A drain destination.
#[derive(Clone)]
enum DrainTarget {
    /// `syslog://host:port`: plain TCP.
    Tcp { host: String, port: u16 },
    /// `syslog-tls://host:port`: TLS, the server's certificate checked against the roots.
    Tls {
        host: String,
        port: u16,
        server_name: rustls::pki_types::ServerName<'static>,
        connector: tokio_rustls::TlsConnector,
    },
    /// `https://…` (or `http://…`): one POST of the unframed RFC 5424 message per envelope,
    /// over a kept-alive HTTP/1.1 connection; any 2xx answer is success.
    Http {
        host: String,
        port: u16,
        /// `Host` header value.
        authority: String,
        /// Path and query the messages are posted to.
        path_and_query: String,
        /// `Authorization: Basic …` from the URL's userinfo, if any.
        authorization: Option<String>,
        /// TLS for `https`.
        tls: Option<(
            rustls::pki_types::ServerName<'static>,
            tokio_rustls::TlsConnector,
        )>,
    },
}

impl std::fmt::Debug for DrainTarget {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            DrainTarget::Tcp { host, port } => write!(f, "Tcp({host}:{port})"),
            DrainTarget::Tls { host, port, .. } => write!(f, "Tls({host}:{port})"),
            DrainTarget::Http {
                host, port, tls, ..
            } => write!(f, "Http({host}:{port}, tls: {})", tls.is_some()),
        }
    }
}

/// An open connection to a drain.
enum DrainConnection {
    /// Syslog over TCP or TLS: octet-counted frames.
    Stream(Box<dyn AsyncWrite + Send + Unpin>),
    /// HTTP/1.1: a request sender, and the task driving the connection (ended on drop).
    Http {
        sender: hyper::client::conn::http1::SendRequest<Full<Bytes>>,
        driver: AbortOnDrop,
    },
}

/// Aborts the task when dropped, so a connection's driver never outlives it.
struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

impl DrainConnection {
    /// Sends one RFC 5424 message: framed on a syslog stream, as a POST body over HTTP.
    async fn deliver(&mut self, target: &DrainTarget, message: &[u8]) -> Result<(), DeliveryError> {
        match self {
            DrainConnection::Stream(stream) => stream
                .write_all(&syslog::frame(message))
                .await
                .map_err(|error| DeliveryError::Failed(error.to_string())),
            DrainConnection::Http { sender, driver } => {
                let DrainTarget::Http {
                    authority,
                    path_and_query,
                    authorization,
                    ..
                } = target
                else {
                    return Err(DeliveryError::Failed("not an http drain".to_owned()));
                };
                // A kept-alive connection the server has since closed: nothing was sent.
                if driver.0.is_finished() {
                    return Err(DeliveryError::Closed);
                }
                sender.ready().await.map_err(|_| DeliveryError::Closed)?;
                let mut request = hyper::Request::post(path_and_query.as_str())
                    .header(hyper::header::HOST, authority.as_str())
                    .header(hyper::header::CONTENT_TYPE, "text/plain");
                if let Some(authorization) = authorization {
                    request = request.header(hyper::header::AUTHORIZATION, authorization.as_str());
                }
                let request = request
                    .body(Full::new(Bytes::copy_from_slice(message)))
                    .map_err(|error| DeliveryError::Failed(error.to_string()))?;
                let response = sender
                    .send_request(request)
                    .await
                    .map_err(|error| DeliveryError::Failed(error.to_string()))?;
                let status = response.status();
                // Read the body to the end so the connection can carry the next request.
                let _ = response.into_body().collect().await;
                if status.is_success() {
                    Ok(())
                } else {
                    Err(DeliveryError::Failed(format!("status {}", status.as_u16())))
                }
            }
        }
    }
}

/// Why a message did not reach its drain.
enum DeliveryError {
    /// The (kept-alive) connection was already closed; the message was not sent.
    Closed,
    /// The write or the request failed, or the drain refused the message.
    Failed(String),
}

impl DrainTarget {
    fn parse(raw: &str, tls: &Arc<rustls::ClientConfig>) -> Result<DrainTarget, String> {
        let url = url::Url::parse(raw).map_err(|error| format!("invalid url: {error}"))?;
        let host = url
            .host_str()
            .filter(|host| !host.is_empty())
            .ok_or_else(|| "no hostname".to_owned())?
            .trim_start_matches('[')
            .trim_end_matches(']')
            .to_owned();
        match url.scheme() {
            "syslog" => Ok(DrainTarget::Tcp {
                port: url.port().unwrap_or(514),
                host,
            }),
            "syslog-tls" => {
                let server_name = rustls::pki_types::ServerName::try_from(host.clone())
                    .map_err(|error| format!("invalid server name: {error}"))?;
                Ok(DrainTarget::Tls {
                    port: url.port().unwrap_or(6514),
                    host,
                    server_name,
                    connector: tokio_rustls::TlsConnector::from(tls.clone()),
                })
            }
            scheme @ ("https" | "http") => {
                let port = url
                    .port_or_known_default()
                    .ok_or_else(|| "no port".to_owned())?;
                let authority = match url.port() {
                    Some(port) => format!("{}:{port}", url.host_str().unwrap_or_default()),
                    None => url.host_str().unwrap_or_default().to_owned(),
                };
                let mut path_and_query = url.path().to_owned();
                if let Some(query) = url.query() {
                    path_and_query.push('?');
                    path_and_query.push_str(query);
                }
                let authorization = (!url.username().is_empty()).then(|| {
                    use base64::Engine as _;
                    let user = percent_decode(url.username());
                    let password = url.password().map(percent_decode).unwrap_or_default();
                    format!(
                        "Basic {}",
                        base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"))
                    )
                });
                let tls = if scheme == "https" {
                    let server_name = rustls::pki_types::ServerName::try_from(host.clone())
                        .map_err(|error| format!("invalid server name: {error}"))?;
                    Some((server_name, tokio_rustls::TlsConnector::from(tls.clone())))
                } else {
                    None
                };
                Ok(DrainTarget::Http {
                    host,
                    port,
                    authority,
                    path_and_query,
                    authorization,
                    tls,
                })
            }
            other => Err(format!(
                "scheme {other} is not supported (syslog://, syslog-tls://, https:// and http:// only)"
            )),
        }
    }

    /// True for the syslog transports (their dial failures get CF's "Failed to connect" line).
    fn is_syslog(&self) -> bool {
        !matches!(self, DrainTarget::Http { .. })
    }

    async fn connect(&self) -> std::io::Result<DrainConnection> {
        match self {
            DrainTarget::Tcp { host, port } => {
                let stream = TcpStream::connect((host.as_str(), *port)).await?;
                stream.set_nodelay(true)?;
                Ok(DrainConnection::Stream(Box::new(stream)))
            }
            DrainTarget::Tls {
                host,
                port,
                server_name,
                connector,
            } => {
                let stream = TcpStream::connect((host.as_str(), *port)).await?;
                stream.set_nodelay(true)?;
                let stream = connector.connect(server_name.clone(), stream).await?;
                Ok(DrainConnection::Stream(Box::new(stream)))
            }
            DrainTarget::Http {
                host, port, tls, ..
            } => {
                let stream = TcpStream::connect((host.as_str(), *port)).await?;
                stream.set_nodelay(true)?;
                let stream: Box<dyn HttpStream> = match tls {
                    Some((server_name, connector)) => {
                        Box::new(connector.connect(server_name.clone(), stream).await?)
                    }
                    None => Box::new(stream),
                };
                let (sender, connection) =
                    hyper::client::conn::http1::handshake(TokioIo::new(stream))
                        .await
                        .map_err(std::io::Error::other)?;
                let driver = AbortOnDrop(tokio::spawn(async move {
                    let _ = connection.await;
                }));
                Ok(DrainConnection::Http { sender, driver })
            }
        }
    }
}

/// A byte stream an HTTP connection runs over (TCP or TLS).
trait HttpStream: tokio::io::AsyncRead + AsyncWrite + Send + Unpin {}

impl<T: tokio::io::AsyncRead + AsyncWrite + Send + Unpin> HttpStream for T {}

/// Userinfo as written in a URL (`%40` for `@`, …) back to text.
fn percent_decode(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut at = 0;
    while at < bytes.len() {
        let hex = bytes
            .get(at + 1..at + 3)
            .and_then(|hex| std::str::from_utf8(hex).ok())
            .and_then(|hex| u8::from_str_radix(hex, 16).ok());
        match (bytes[at], hex) {
            (b'%', Some(value)) => {
                out.push(value);
                at += 3;
            }
            (byte, _) => {
                out.push(byte);
                at += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// The URL without userinfo and query (what CF prints in notices and metrics).
fn anonymize(raw: &str) -> String {
    match url::Url::parse(raw) {
        Ok(mut url) => {
            let _ = url.set_username("");
            let _ = url.set_password(None);
            url.set_query(None);
            url.to_string()
        }
        Err(_) => String::from("<invalid url>"),
    }
}

/// Writes the drain's queue to its destination until the drain is removed or the loggregator
/// stops.
async fn drain_writer(
    drain: Arc<DrainQueue>,
    target: DrainTarget,
    ingestor: Arc<Ingestor>,
    mut shutdown: watch::Receiver<bool>,
) {
    let mut connection: Option<DrainConnection> = None;
    let mut backoff = INITIAL_BACKOFF;
    let mut failing = false;
    let mut last_loss_notice: Option<Instant> = None;
    let mut http_failures: u32 = 0;
    loop {
        report_losses(&drain, &ingestor, &mut last_loss_notice);
        let Some(envelope) = drain.pop() else {
            tokio::select! {
                _ = drain.notify.notified() => {}
                _ = crate::stopped(&mut shutdown) => return,
            }
            if drain.is_stopped() {
                return;
            }
            continue;
        };
        if drain.is_stopped() {
            return;
        }
        let hostname = drain
            .hostname
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .clone();
        let Some(message) = syslog::format_log(&envelope, &hostname) else {
            continue;
        };
        // A kept-alive connection found closed is simply replaced; a new one that fails at
        // once counts as a failure like any other.
        let reused = connection.is_some();
        let stream = match connection.as_mut() {
            Some(stream) => stream,
            None => match tokio::time::timeout(IO_TIMEOUT, target.connect()).await {
                Ok(Ok(stream)) => {
                    if http_failures == 0 {
                        backoff = INITIAL_BACKOFF;
                    }
                    failing = false;
                    connection.insert(stream)
                }
                result => {
                    let error = match result {
                        Ok(Err(error)) => error.to_string(),
                        _ => "timed out".to_owned(),
                    };
                    if !failing {
                        tracing::warn!(app_guid = %drain.app_id, url = %drain.display_url, %error, "syslog drain unreachable");
                        if target.is_syslog() {
                            ingestor.store_only(&Envelope::loggregator_log(
                                drain.app_id.clone(),
                                format!("Failed to connect to {}", drain.raw_url),
                            ));
                        }
                    }
                    failing = true;
                    drain.push_front(envelope);
                    if !sleep_unless_stopped(&drain, &mut shutdown, backoff).await {
                        return;
                    }
                    backoff = (backoff * 2).min(MAX_BACKOFF);
                    continue;
                }
            },
        };
        let timeout = if target.is_syslog() {
            IO_TIMEOUT
        } else {
            HTTP_TIMEOUT
        };
        match tokio::time::timeout(timeout, stream.deliver(&target, &message)).await {
            Ok(Ok(())) => {
                drain.sent.fetch_add(1, Ordering::Relaxed);
                http_failures = 0;
            }
            result => {
                let closed = matches!(result, Ok(Err(DeliveryError::Closed)));
                let error = match result {
                    Ok(Err(DeliveryError::Failed(error))) => error,
                    Ok(Err(DeliveryError::Closed)) => "connection closed".to_owned(),
                    _ => "timed out".to_owned(),
                };
                tracing::debug!(app_guid = %drain.app_id, url = %drain.display_url, %error, "syslog drain write failed; reconnecting");
                connection = None;
                if target.is_syslog() || (closed && reused) {
                    drain.push_front(envelope);
                    continue;
                }
                // An HTTP drain can accept connections and still refuse every message: retry
                // with the same capped backoff, and give the message up after the agent's
                // number of attempts.
                http_failures += 1;
                if http_failures < MAX_HTTP_ATTEMPTS {
                    drain.push_front(envelope);
                } else {
                    http_failures = 0;
                    drain.dropped_total.fetch_add(1, Ordering::Relaxed);
                    drain.dropped_unreported.fetch_add(1, Ordering::Relaxed);
                }
                if !sleep_unless_stopped(&drain, &mut shutdown, backoff).await {
                    return;
                }
                backoff = (backoff * 2).min(MAX_BACKOFF);
            }
        }
    }
}

/// Sleeps for `delay` unless the drain is removed or the loggregator stops (then `false`).
async fn sleep_unless_stopped(
    drain: &DrainQueue,
    shutdown: &mut watch::Receiver<bool>,
    delay: Duration,
) -> bool {
    let deadline = tokio::time::Instant::now() + delay;
    loop {
        tokio::select! {
            _ = tokio::time::sleep_until(deadline) => return !drain.is_stopped(),
            _ = drain.notify.notified() => {
                if drain.is_stopped() {
                    return false;
                }
            }
            _ = crate::stopped(shutdown) => return false,
        }
    }
}

fn report_losses(drain: &DrainQueue, ingestor: &Ingestor, last_notice: &mut Option<Instant>) {
    if drain.dropped_unreported.load(Ordering::Relaxed) == 0 {
        return;
    }
    if last_notice.is_some_and(|last| last.elapsed() < LOSS_NOTICE_INTERVAL) {
        return;
    }
    let missed = drain.dropped_unreported.swap(0, Ordering::Relaxed);
    if missed == 0 {
        return;
    }
    *last_notice = Some(Instant::now());
    tracing::warn!(app_guid = %drain.app_id, url = %drain.display_url, missed, "syslog drain lost envelopes");
    ingestor.store_only(&Envelope::loggregator_log(
        drain.app_id.clone(),
        format!(
            "{missed} messages lost for application {} in user provided syslog drain with url {}",
            drain.app_id, drain.display_url
        ),
    ));
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_are_anonymised_for_notices() {
        assert_eq!(
            anonymize("syslog://user:secret@logs.example.com:514/?drain-data=all"),
            "syslog://logs.example.com:514/"
        );
    }

    #[test]
    fn syslog_syslog_tls_https_and_http_targets_are_accepted() {
        let tls = tls_client_config(None).unwrap();
        assert!(matches!(
            DrainTarget::parse("syslog://127.0.0.1:6514", &tls),
            Ok(DrainTarget::Tcp { port: 6514, .. })
        ));
        assert!(matches!(
            DrainTarget::parse("syslog-tls://logs.example.com", &tls),
            Ok(DrainTarget::Tls { port: 6514, .. })
        ));
        match DrainTarget::parse("https://u%40x:p@logs.example.com/in?a=1", &tls) {
            Ok(DrainTarget::Http {
                port: 443,
                authority,
                path_and_query,
                authorization: Some(authorization),
                tls: Some(_),
                ..
            }) => {
                assert_eq!(authority, "logs.example.com");
                assert_eq!(path_and_query, "/in?a=1");
                // base64("u@x:p")
                assert_eq!(authorization, "Basic dUB4OnA=");
            }
            other => panic!("{other:?}"),
        }
        assert!(matches!(
            DrainTarget::parse("http://127.0.0.1:8080", &tls),
            Ok(DrainTarget::Http {
                port: 8080,
                tls: None,
                authorization: None,
                ..
            })
        ));
        assert!(DrainTarget::parse("syslog://", &tls).is_err());
        assert!(DrainTarget::parse("ftp://host:1", &tls).is_err());
        assert!(tls_client_config(Some("/nonexistent/ca.pem")).is_err());
    }
}
