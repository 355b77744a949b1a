//! The request pipeline, one small function per phase: request id → route lookup → pick an
//! endpoint (round-robin, skipping ineligible ones) → connect (retrying other endpoints on
//! connect failure) → forward with CF's headers → stream the response back → access log
//! (`tracing`), plus, when app log emission is on, the app's `[RTR/<index>]` line, emitted by
//! the response body once it has been sent.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::atomic::AtomicU64;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use hyper::body::Incoming;
use hyper::header::{self, HeaderValue};
use hyper::{Request, Response, StatusCode, Uri, Version};
use hyper_util::rt::TokioIo;
use tracing::Instrument;

use crate::access_log::{proto_name, AccessRecord, AppLogQueue, PendingLog};
use crate::backend::{Backends, Sender};
use crate::body::{PooledConnection, ProxyBody, RequestBody};
use crate::error::{Origin, ProxyError};
use crate::headers::{self as h, X_CF_ROUTER_ERROR, X_VCAP_REQUEST_ID};
use crate::metrics::{increment, Metrics};
use crate::registry::{host_key, Endpoint, Lookup, RouteTable};
use crate::tasks::TaskSet;

/// Everything a request needs; shared by all connections.
#[derive(Debug)]
pub(crate) struct Proxy {
    pub(crate) table: Arc<RouteTable>,
    pub(crate) backends: Arc<Backends>,
    pub(crate) tasks: Arc<TaskSet>,
    pub(crate) metrics: Arc<Metrics>,
    pub(crate) max_retries: u32,
    pub(crate) backend_ineligible: Duration,
    /// Where the apps' `[RTR]` lines go; `None` without `loggregator_ingress`.
    pub(crate) app_logs: Option<AppLogQueue>,
}

/// A request that could not be sent, with the request itself when nothing of it reached the
/// backend (so it can go to another endpoint).
type AttemptFailure = (ProxyError, Option<Request<RequestBody>>);

/// What the app access-log line needs to know about a request, collected as it goes through
/// the phases; only when emission is enabled.
struct LogCapture {
    queue: AppLogQueue,
    record: AccessRecord,
    started: Instant,
    bytes_received: Arc<AtomicU64>,
    /// The last endpoint tried (gorouter logs the failed one when all attempts fail).
    endpoint: Option<Arc<Endpoint>>,
    /// Request sent → response head, when a round trip to the app completed.
    app_time: Option<Duration>,
}

impl LogCapture {
    fn new(
        queue: &AppLogQueue,
        request: &Request<Incoming>,
        client_addr: SocketAddr,
        request_id: &str,
        host: Option<&str>,
        started: Instant,
    ) -> LogCapture {
        let record = AccessRecord {
            host: host.unwrap_or_default().to_owned(),
            received_at: Some(SystemTime::now()),
            method: request.method().as_str().to_owned(),
            uri: request
                .uri()
                .path_and_query()
                .map_or("/", |pq| pq.as_str())
                .to_owned(),
            proto: proto_name(request.version()),
            remote_addr: Some(client_addr),
            request_id: request_id.to_owned(),
            ..AccessRecord::default()
        };
        LogCapture {
            queue: queue.clone(),
            record,
            started,
            bytes_received: Arc::new(AtomicU64::new(0)),
            endpoint: None,
            app_time: None,
        }
    }

    /// Headers as they are sent to the backend.
    fn forwarded_headers(&mut self, headers: &hyper::HeaderMap) {
        let record = &mut self.record;
        record.referer = headers.get(header::REFERER).cloned();
        record.user_agent = headers.get(header::USER_AGENT).cloned();
        record.x_forwarded_for = headers.get(h::X_FORWARDED_FOR).cloned();
        record.x_forwarded_proto = headers.get(h::X_FORWARDED_PROTO).cloned();
    }

    /// The line to emit once the response (`status`, 0 for none) has been sent: only when an
    /// endpoint with an app id was chosen (never for unknown routes, missing hosts or empty
    /// pools).
    fn finish(self, status: u16, router_error: Option<HeaderValue>) -> Option<PendingLog> {
        let endpoint = self.endpoint?;
        let identity = endpoint.log_identity.clone()?;
        let mut record = self.record;
        record.status = status;
        record.backend_addr = endpoint.address.clone();
        record.app_id = endpoint.app_id.clone().unwrap_or_default();
        record.app_index = endpoint.instance_index.clone().unwrap_or_default();
        record.instance_id = endpoint.instance_id.clone().unwrap_or_default();
        record.router_error = router_error;
        Some(PendingLog {
            record,
            started: self.started,
            app_time: self.app_time,
            bytes_received: self.bytes_received,
            identity,
            queue: self.queue,
        })
    }
}

/// Holds the capture while the request is handled. If the client goes away before the
/// response head is written, hyper drops the handler and this guard logs the request with no
/// response (status `"-"`).
struct CaptureGuard(Option<LogCapture>);

impl Drop for CaptureGuard {
    fn drop(&mut self) {
        if let Some(capture) = self.0.take() {
            // Dropping the pending line queues it.
            drop(capture.finish(0, None));
        }
    }
}

impl Proxy {
    /// Serves one request. Never fails: every failure becomes a response.
    pub(crate) async fn handle(
        self: Arc<Self>,
        client_addr: SocketAddr,
        mut request: Request<Incoming>,
    ) -> Result<Response<ProxyBody>, Infallible> {
        let started = Instant::now();
        let request_id = ensure_request_id(request.headers_mut());
        let host = request_host(&request);
        let mut capture = CaptureGuard(self.app_logs.as_ref().map(|queue| {
            LogCapture::new(
                queue,
                &request,
                client_addr,
                &request_id,
                host.as_deref(),
                started,
            )
        }));
        let span = tracing::info_span!(
            "http_request",
            request_id = %request_id,
            method = %request.method(),
            host = host.as_deref().unwrap_or_default(),
        );
        async move {
            let method = request.method().clone();
            let path = request.uri().path().to_owned();
            let (mut response, backend) = match self
                .forward(client_addr, request, host.as_deref(), capture.0.as_mut())
                .await
            {
                Ok((response, backend)) => (response, Some(backend)),
                Err(error) => {
                    log_failure(&error);
                    (
                        error_response(&error, host.as_deref().unwrap_or_default()),
                        None,
                    )
                }
            };
            let router_error = response
                .headers()
                .get(&X_CF_ROUTER_ERROR)
                .and_then(|value| value.to_str().ok());
            self.metrics
                .record_response(response.status().as_u16(), router_error);
            tracing::info!(
                target: "gorouter::access",
                status = response.status().as_u16(),
                %method,
                path,
                backend = backend.as_deref().unwrap_or("-"),
                duration_ms = started.elapsed().as_millis() as u64,
                "request"
            );
            if let Some(capture) = capture.0.take() {
                let router_error = response.headers().get(&X_CF_ROUTER_ERROR).cloned();
                if let Some(log) = capture.finish(response.status().as_u16(), router_error) {
                    response.body_mut().set_log(log);
                }
            }
            Ok(response)
        }
        .instrument(span)
        .await
    }

    /// Lookup, then send to endpoints of the pool until one accepts the connection. Returns the
    /// response and the backend address.
    async fn forward(
        &self,
        client_addr: SocketAddr,
        mut request: Request<Incoming>,
        host: Option<&str>,
        mut capture: Option<&mut LogCapture>,
    ) -> Result<(Response<ProxyBody>, String), ProxyError> {
        let host = host.ok_or(ProxyError::MissingHost)?;
        let (endpoints, start) = match self.table.lookup(&host_key(host), request.uri().path()) {
            Lookup::Unknown => return Err(ProxyError::UnknownRoute),
            Lookup::NoEndpoints => return Err(ProxyError::NoEndpoints),
            Lookup::Found { endpoints, start } => (endpoints, start),
        };
        let upgrade = h::is_upgrade(request.headers());
        let client_upgrade = upgrade.then(|| hyper::upgrade::on(&mut request));
        prepare_request(&mut request, client_addr, host, upgrade);
        let received = capture.as_deref_mut().map(|capture| {
            capture.forwarded_headers(request.headers());
            capture.bytes_received.clone()
        });
        let request = request.map(|body| RequestBody::new(body, received));

        let mut tried = vec![false; endpoints.len()];
        let max_attempts = 1 + self.max_retries as usize;
        let mut attempts = 0;
        let mut request = request;
        let mut last_error = None;
        while attempts < max_attempts {
            let Some(index) = pick_endpoint(&endpoints, start, &tried, Instant::now()) else {
                break;
            };
            tried[index] = true;
            attempts += 1;
            if attempts > 1 {
                increment(&self.metrics.backend_retries);
            }
            let endpoint = &endpoints[index];
            if let Some(capture) = capture.as_deref_mut() {
                capture.endpoint = Some(endpoint.clone());
            }
            let sent_at = Instant::now();
            match self.send_to(endpoint, request).await {
                Ok((response, sender)) => {
                    if let Some(capture) = capture.as_deref_mut() {
                        capture.app_time = Some(sent_at.elapsed());
                    }
                    let response = self.relay_response(response, sender, endpoint, client_upgrade);
                    return Ok((response, endpoint.address.clone()));
                }
                Err((error, unsent)) => {
                    let Some(unsent) = unsent.filter(|_| error.retry_on_another_endpoint()) else {
                        return Err(error);
                    };
                    endpoint.mark_ineligible(Instant::now(), self.backend_ineligible);
                    tracing::warn!(%error, backend = %endpoint.address, attempt = attempts, "backend connect failed; endpoint marked ineligible");
                    request = unsent;
                    last_error = Some(error);
                }
            }
        }
        Err(ProxyError::BackendsExhausted {
            attempts,
            last: Box::new(last_error.unwrap_or(ProxyError::NoEndpoints)),
        })
    }

    /// Sends `request` to `endpoint` on a pooled connection, or a new one. Only failures before
    /// anything was written hand the request back.
    async fn send_to(
        &self,
        endpoint: &Endpoint,
        mut request: Request<RequestBody>,
    ) -> Result<(Response<Incoming>, Sender), AttemptFailure> {
        let address = endpoint.address.as_str();
        let headers = request.headers_mut();
        h::set_or_remove(headers, h::X_CF_APPLICATION_ID, endpoint.app_id.as_deref());
        h::set_or_remove(
            headers,
            h::X_CF_INSTANCE_ID,
            endpoint.instance_id.as_deref(),
        );
        h::set_or_remove(
            headers,
            h::X_CF_INSTANCE_INDEX,
            endpoint.instance_index.as_deref(),
        );

        while let Some(mut sender) = self.backends.checkout(address).await {
            match sender.try_send_request(request).await {
                Ok(response) => return Ok((response, sender)),
                Err(mut error) => match error.take_message() {
                    // The pooled connection closed under us before the request went out.
                    Some(unsent) => request = unsent,
                    None => {
                        return Err((ProxyError::from_exchange(address, error.into_error()), None))
                    }
                },
            }
        }
        let mut sender = match self.backends.connect(address).await {
            Ok(sender) => sender,
            Err(error) => return Err((error, Some(request))),
        };
        match sender.try_send_request(request).await {
            Ok(response) => Ok((response, sender)),
            Err(mut error) => match error.take_message() {
                Some(unsent) => Err((
                    ProxyError::BackendConnect {
                        address: address.to_owned(),
                        reason: format!(
                            "connection closed before the request was sent: {}",
                            error.error()
                        ),
                    },
                    Some(unsent),
                )),
                None => Err((ProxyError::from_exchange(address, error.into_error()), None)),
            },
        }
    }

    /// Streams the backend's response to the client; on `101 Switching Protocols` joins the two
    /// upgraded connections in a tunnel instead of pooling the backend connection.
    fn relay_response(
        &self,
        mut response: Response<Incoming>,
        sender: Sender,
        endpoint: &Endpoint,
        client_upgrade: Option<hyper::upgrade::OnUpgrade>,
    ) -> Response<ProxyBody> {
        let switching = response.status() == StatusCode::SWITCHING_PROTOCOLS;
        let connection = if switching {
            if let Some(client_upgrade) = client_upgrade {
                let backend_upgrade = hyper::upgrade::on(&mut response);
                let address = endpoint.address.clone();
                self.tasks
                    .spawn(tunnel(client_upgrade, backend_upgrade, address).in_current_span());
            }
            None
        } else {
            Some(PooledConnection {
                backends: self.backends.clone(),
                address: endpoint.address.clone(),
                sender,
            })
        };
        let (mut parts, body) = response.into_parts();
        h::remove_hop_by_hop(&mut parts.headers, switching);
        Response::from_parts(parts, ProxyBody::backend(body, connection))
    }
}

/// Keeps an incoming `X-Vcap-Request-Id`, or sets a new UUID. Returns the id.
fn ensure_request_id(headers: &mut hyper::HeaderMap) -> String {
    if let Some(id) = headers
        .get(&X_VCAP_REQUEST_ID)
        .and_then(|value| value.to_str().ok())
        .filter(|id| !id.trim().is_empty())
    {
        return id.to_owned();
    }
    let id = uuid::Uuid::new_v4().to_string();
    headers.insert(
        X_VCAP_REQUEST_ID,
        HeaderValue::from_str(&id).expect("a UUID is a valid header value"),
    );
    id
}

/// The request's host as sent: the `Host` header, else an absolute URI's authority.
fn request_host(request: &Request<Incoming>) -> Option<String> {
    request
        .headers()
        .get(header::HOST)
        .and_then(|value| value.to_str().ok())
        .map(str::to_owned)
        .or_else(|| request.uri().authority().map(|a| a.as_str().to_owned()))
        .filter(|host| !host.trim().is_empty())
}

/// Rewrites the client's request for the backend: origin-form URI, `Host`, HTTP/1.1, no
/// hop-by-hop headers, forwarding headers.
fn prepare_request(
    request: &mut Request<Incoming>,
    client_addr: SocketAddr,
    host: &str,
    upgrade: bool,
) {
    if request.uri().authority().is_some() {
        let origin_form = request
            .uri()
            .path_and_query()
            .map(|pq| pq.as_str())
            .unwrap_or("/")
            .parse::<Uri>()
            .unwrap_or_else(|_| Uri::from_static("/"));
        *request.uri_mut() = origin_form;
    }
    *request.version_mut() = Version::HTTP_11;
    let headers = request.headers_mut();
    if !headers.contains_key(header::HOST) {
        if let Ok(value) = HeaderValue::from_str(host) {
            headers.insert(header::HOST, value);
        }
    }
    h::remove_hop_by_hop(headers, upgrade);
    h::add_forwarding(headers, client_addr.ip());
}

/// Round-robin from `start`: the first untried eligible endpoint, else the first untried one
/// (trying a recently failed backend beats failing without trying).
fn pick_endpoint(
    endpoints: &[Arc<Endpoint>],
    start: usize,
    tried: &[bool],
    now: Instant,
) -> Option<usize> {
    let n = endpoints.len();
    let order = (0..n).map(|offset| (start + offset) % n);
    order
        .clone()
        .find(|&index| !tried[index] && endpoints[index].is_eligible(now))
        .or_else(|| order.clone().find(|&index| !tried[index]))
}

/// Copies bytes both ways between an upgraded client connection and its backend.
async fn tunnel(
    client: hyper::upgrade::OnUpgrade,
    backend: hyper::upgrade::OnUpgrade,
    address: String,
) {
    let (client, backend) = match tokio::try_join!(client, backend) {
        Ok(pair) => pair,
        Err(error) => {
            tracing::debug!(%error, backend = %address, "upgrade did not complete");
            return;
        }
    };
    let (mut client, mut backend) = (TokioIo::new(client), TokioIo::new(backend));
    if let Err(error) = tokio::io::copy_bidirectional(&mut client, &mut backend).await {
        tracing::debug!(%error, backend = %address, "upgraded connection ended with an error");
    }
}

/// The router's own response for a failure, gorouter style.
fn error_response(error: &ProxyError, host: &str) -> Response<ProxyBody> {
    let mut response = Response::new(ProxyBody::text(error.body(host)));
    *response.status_mut() = error.status();
    let headers = response.headers_mut();
    headers.insert(
        X_CF_ROUTER_ERROR,
        HeaderValue::from_static(error.router_error()),
    );
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    if matches!(error, ProxyError::UnknownRoute) {
        // gorouter lets clients and caches remember a missing route briefly.
        headers.insert(
            header::CACHE_CONTROL,
            HeaderValue::from_static("public,max-age=2"),
        );
    }
    response
}

/// One log line per failure, its level decided by where the failure came from.
fn log_failure(error: &ProxyError) {
    let origin = error.origin().as_str();
    match error.origin() {
        Origin::Backend => tracing::warn!(%error, origin, "request failed"),
        Origin::Client | Origin::Router => tracing::debug!(%error, origin, "request not routed"),
    }
}
