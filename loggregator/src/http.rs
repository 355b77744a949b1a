//! The HTTP side on hyper: log-cache's v1 API as the cf CLI v8 reads it
//! (`GET /api/v1/info`, `GET /api/v1/read/:source_id`, `GET /api/v1/meta`), plus `/healthz` and
//! Prometheus `/metrics`.
//!
//! Error shapes are log-cache's: parameter errors come from its gRPC gateway as
//! `{"code":N,"message":"…","details":[]}` (400 for unparseable parameters, 500 for the store's
//! own checks such as `Limit (1001) must be 1000 or less`), and authorization refusals from its
//! auth proxy as an empty 404.

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use http_body_util::Full;
use hyper::body::{Bytes, Incoming};
use hyper::header::{HeaderValue, CONTENT_TYPE};
use hyper::service::service_fn;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::{TokioIo, TokioTimer};
use protocol::logs::{now_nanos, EnvelopeKind};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio::task::JoinSet;

use crate::auth::Authorizer;
use crate::ingress::Ingestor;
use crate::store::ReadQuery;

/// The log-cache version `/api/v1/info` reports; the CLI needs ≥ 2.0.0 for the `/api/v1` paths.
pub const LOG_CACHE_VERSION: &str = "3.0.0";
/// Largest `limit` log-cache accepts.
const MAX_LIMIT: i64 = 1000;
/// `limit` when none is given.
const DEFAULT_LIMIT: i64 = 100;
/// A client must send its request head within this time.
const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(30);
/// How long stopping waits for in-flight requests.
const SHUTDOWN_DRAIN_TIMEOUT: Duration = Duration::from_secs(5);

/// What the request handlers share.
pub(crate) struct HttpState {
    pub(crate) ingestor: Arc<Ingestor>,
    /// `None` when `skip_authorization` is set.
    pub(crate) authorizer: Option<Authorizer>,
    pub(crate) started: std::time::Instant,
    pub(crate) healthy: Arc<dyn Fn() -> bool + Send + Sync>,
}

pub(crate) async fn accept_loop(
    listener: TcpListener,
    state: Arc<HttpState>,
    mut shutdown: watch::Receiver<bool>,
) {
    let mut connections = JoinSet::new();
    loop {
        tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => {
                    connections.spawn(serve_connection(stream, state.clone(), shutdown.clone()));
                }
                Err(error) => {
                    tracing::warn!(%error, "accepting a log-cache connection failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            },
            Some(_) = connections.join_next(), if !connections.is_empty() => {}
            _ = crate::stopped(&mut shutdown) => break,
        }
    }
    drop(listener);
    let drained = tokio::time::timeout(SHUTDOWN_DRAIN_TIMEOUT, async {
        while connections.join_next().await.is_some() {}
    })
    .await;
    if drained.is_err() {
        connections.shutdown().await;
    }
}

async fn serve_connection(
    stream: TcpStream,
    state: Arc<HttpState>,
    mut shutdown: watch::Receiver<bool>,
) {
    let _ = stream.set_nodelay(true);
    let service = service_fn(move |request| {
        let state = state.clone();
        async move { Ok::<_, Infallible>(handle(&state, request).await) }
    });
    let mut builder = hyper::server::conn::http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(HEADER_READ_TIMEOUT);
    let connection = builder.serve_connection(TokioIo::new(stream), service);
    tokio::pin!(connection);
    tokio::select! {
        result = connection.as_mut() => {
            if let Err(error) = result {
                tracing::debug!(%error, "log-cache connection ended with an error");
            }
        }
        _ = crate::stopped(&mut shutdown) => {
            connection.as_mut().graceful_shutdown();
            let _ = connection.await;
        }
    }
}

async fn handle(state: &HttpState, request: Request<Incoming>) -> Response<Full<Bytes>> {
    let path = request.uri().path().to_owned();
    if request.method() != Method::GET && request.method() != Method::HEAD {
        return grpc_error(StatusCode::NOT_IMPLEMENTED, 12, "Method Not Allowed");
    }
    match path.as_str() {
        "/api/v1/info" => json(
            StatusCode::OK,
            format!(
                "{{\"version\":\"{LOG_CACHE_VERSION}\",\"vm_uptime\":\"{}\"}}\n",
                state.started.elapsed().as_secs()
            ),
        ),
        "/api/v1/meta" => meta(state, &request).await,
        "/healthz" => {
            if (state.healthy)() {
                text(StatusCode::OK, "ok\n")
            } else {
                text(StatusCode::SERVICE_UNAVAILABLE, "unhealthy\n")
            }
        }
        "/metrics" => {
            let body = state.ingestor.metrics.render(
                &state.ingestor.store.stats(),
                &state.ingestor.drains.snapshot(),
            );
            let mut response = Response::new(Full::new(Bytes::from(body)));
            response.headers_mut().insert(
                CONTENT_TYPE,
                HeaderValue::from_static("text/plain; version=0.0.4"),
            );
            response
        }
        _ => match path.strip_prefix("/api/v1/read/") {
            Some(source_id) => {
                let source_id = percent_decode(source_id);
                read(state, &request, &source_id).await
            }
            None => grpc_error(StatusCode::NOT_FOUND, 5, "Not Found"),
        },
    }
}

/// Authorization as log-cache's auth proxy: any refusal is an empty 404.
async fn authorize(
    state: &HttpState,
    request: &Request<Incoming>,
    source_id: Option<&str>,
) -> Result<Option<crate::auth::Caller>, Response<Full<Bytes>>> {
    let Some(authorizer) = &state.authorizer else {
        return Ok(None);
    };
    let header = request
        .headers()
        .get(hyper::header::AUTHORIZATION)
        .and_then(|value| value.to_str().ok());
    let refuse = || {
        crate::metrics::Metrics::add(&state.ingestor.metrics.unauthorized_reads, 1);
        empty(StatusCode::NOT_FOUND)
    };
    let Some(caller) = authorizer.verify(header).await else {
        return Err(refuse());
    };
    if let Some(source_id) = source_id {
        if !authorizer.may_read(&caller, source_id).await {
            return Err(refuse());
        }
    }
    Ok(Some(caller))
}

async fn read(
    state: &HttpState,
    request: &Request<Incoming>,
    source_id: &str,
) -> Response<Full<Bytes>> {
    if let Err(refusal) = authorize(state, request, Some(source_id)).await {
        return refusal;
    }
    let metrics = &state.ingestor.metrics;
    let query = match parse_read_query(request.uri().query().unwrap_or("")) {
        Ok(query) => query,
        Err((status, code, message)) => {
            crate::metrics::Metrics::add(&metrics.read_errors, 1);
            return grpc_error(status, code, &message);
        }
    };
    crate::metrics::Metrics::add(&metrics.reads, 1);
    let envelopes = state.ingestor.store.read(source_id, &query);
    let total: usize = envelopes.iter().map(|json| json.len() + 1).sum();
    let mut body = String::with_capacity(total + 32);
    body.push_str("{\"envelopes\":{\"batch\":[");
    for (i, envelope) in envelopes.iter().enumerate() {
        if i > 0 {
            body.push(',');
        }
        body.push_str(envelope);
    }
    body.push_str("]}}");
    json(StatusCode::OK, body)
}

type QueryError = (StatusCode, i32, String);

/// Parses log-cache's read parameters with its rules: `start_time` (default 0, may be
/// negative), `end_time` (default now), `limit` (default 100, at most 1000),
/// `envelope_types` (repeatable; `ANY` means no filter), `descending`.
fn parse_read_query(raw: &str) -> Result<ReadQuery, QueryError> {
    let mut start_time: i64 = 0;
    let mut end_time: i64 = 0;
    let mut limit: i64 = 0;
    let mut kinds = Vec::new();
    let mut descending = false;
    let invalid = |field: &str, value: &str, detail: String| -> QueryError {
        (
            StatusCode::BAD_REQUEST,
            3,
            format!("parsing field \"{field}\": {detail}: parsing \"{value}\": invalid syntax"),
        )
    };
    for (key, value) in url::form_urlencoded::parse(raw.as_bytes()) {
        match key.as_ref() {
            "start_time" | "startTime" => {
                start_time = value
                    .parse()
                    .map_err(|_| invalid("start_time", &value, "strconv.ParseInt".into()))?
            }
            "end_time" | "endTime" => {
                end_time = value
                    .parse()
                    .map_err(|_| invalid("end_time", &value, "strconv.ParseInt".into()))?
            }
            "limit" => {
                limit = value
                    .parse()
                    .map_err(|_| invalid("limit", &value, "strconv.ParseInt".into()))?
            }
            "envelope_types" | "envelopeTypes" => {
                if value == "ANY" {
                    continue;
                }
                match EnvelopeKind::from_name(&value) {
                    Some(kind) => {
                        if !kinds.contains(&kind) {
                            kinds.push(kind)
                        }
                    }
                    None => {
                        return Err((
                            StatusCode::BAD_REQUEST,
                            3,
                            format!(
                                "parsing field \"envelope_types\": {value:?} is not a valid value"
                            ),
                        ))
                    }
                }
            }
            "descending" => {
                descending = match value.as_ref() {
                    "true" | "True" | "TRUE" | "t" | "T" | "1" => true,
                    "false" | "False" | "FALSE" | "f" | "F" | "0" => false,
                    other => return Err(invalid("descending", other, "strconv.ParseBool".into())),
                }
            }
            // log-cache's other read parameters (name_filter) are accepted and ignored.
            _ => {}
        }
    }
    if end_time != 0 && start_time > end_time {
        return Err((
            StatusCode::INTERNAL_SERVER_ERROR,
            2,
            format!("StartTime ({start_time}) must be before EndTime ({end_time})"),
        ));
    }
    if limit > MAX_LIMIT {
        return Err((
            StatusCode::INTERNAL_SERVER_ERROR,
            2,
            format!("Limit ({limit}) must be 1000 or less"),
        ));
    }
    if limit < 0 {
        return Err((
            StatusCode::INTERNAL_SERVER_ERROR,
            2,
            format!("Limit ({limit}) must be greater than zero"),
        ));
    }
    if end_time == 0 {
        end_time = now_nanos();
    }
    if limit == 0 {
        limit = DEFAULT_LIMIT;
    }
    Ok(ReadQuery {
        start_time,
        end_time,
        limit: limit as usize,
        kinds,
        descending,
    })
}

async fn meta(state: &HttpState, request: &Request<Incoming>) -> Response<Full<Bytes>> {
    let caller = match authorize(state, request, None).await {
        Ok(caller) => caller,
        Err(refusal) => return refusal,
    };
    let mut meta = state.ingestor.store.meta();
    if let (Some(authorizer), Some(caller)) = (&state.authorizer, &caller) {
        let readable = authorizer
            .readable(caller, meta.iter().map(|m| m.source_id.clone()).collect())
            .await;
        meta.retain(|m| readable.contains(&m.source_id));
    }
    let mut body = String::from("{\"meta\":{");
    for (i, source) in meta.iter().enumerate() {
        if i > 0 {
            body.push(',');
        }
        body.push_str(&serde_json::to_string(&source.source_id).unwrap_or_default());
        body.push_str(&format!(
            ":{{\"count\":\"{}\",\"expired\":\"{}\",\"oldest_timestamp\":\"{}\",\"newest_timestamp\":\"{}\"}}",
            source.count, source.expired, source.oldest_timestamp, source.newest_timestamp
        ));
    }
    body.push_str("}}\n");
    json(StatusCode::OK, body)
}

fn percent_decode(text: &str) -> String {
    url::form_urlencoded::parse(format!("x={}", text.replace('+', "%2B")).as_bytes())
        .next()
        .map(|(_, value)| value.into_owned())
        .unwrap_or_default()
}

fn json(status: StatusCode, body: String) -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(Bytes::from(body)));
    *response.status_mut() = status;
    response
        .headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    response
}

fn text(status: StatusCode, body: &'static str) -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(Bytes::from_static(body.as_bytes())));
    *response.status_mut() = status;
    response
        .headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static("text/plain"));
    response
}

fn empty(status: StatusCode) -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(Bytes::new()));
    *response.status_mut() = status;
    response
}

/// grpc-gateway's error body: `{"code":<grpc code>,"message":"…","details":[]}`.
fn grpc_error(status: StatusCode, code: i32, message: &str) -> Response<Full<Bytes>> {
    // Field order of google.rpc.Status as protojson writes it.
    let message = serde_json::to_string(message).unwrap_or_else(|_| "\"\"".to_owned());
    json(
        status,
        format!("{{\"code\":{code},\"message\":{message},\"details\":[]}}"),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn read_parameters_follow_log_cache() {
        let query = parse_read_query(
            "start_time=-6795364578871345152&descending=true&envelope_types=LOG&limit=1000",
        )
        .unwrap();
        assert_eq!(query.start_time, -6_795_364_578_871_345_152);
        assert!(query.descending);
        assert_eq!(query.limit, 1000);
        assert_eq!(query.kinds, vec![EnvelopeKind::Log]);
        let defaults = parse_read_query("").unwrap();
        assert_eq!(defaults.limit, 100);
        assert!(defaults.end_time > 0);
        assert!(parse_read_query("envelope_types=ANY")
            .unwrap()
            .kinds
            .is_empty());
        let (status, code, message) = parse_read_query("limit=1001").err().unwrap();
        assert_eq!((status, code), (StatusCode::INTERNAL_SERVER_ERROR, 2));
        assert_eq!(message, "Limit (1001) must be 1000 or less");
        let (status, code, _) = parse_read_query("start_time=abc").err().unwrap();
        assert_eq!((status, code), (StatusCode::BAD_REQUEST, 3));
        assert!(parse_read_query("start_time=10&end_time=5").is_err());
        assert!(parse_read_query("envelope_types=BOGUS").is_err());
    }

    #[test]
    fn source_ids_are_percent_decoded() {
        assert_eq!(percent_decode("abc%2Fdef"), "abc/def");
        assert_eq!(percent_decode("a+b"), "a+b");
    }
}
