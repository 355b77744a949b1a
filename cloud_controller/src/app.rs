//! Assembly of the HTTP application: shared [`AppState`] (built once, outside the worker
//! closure), extractor error handlers that answer with catalog errors, the request middleware
//! (request id, tracing span, metrics, v2 error rendering, 5xx logging), and every resource
//! module's `configure`.

use std::time::Instant;

use actix_web::body::{BoxBody, MessageBody};
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::http::header::{HeaderName, HeaderValue};
use actix_web::middleware::{from_fn, Next};
use actix_web::{web, App, HttpResponse, ResponseError};
use tracing::Instrument;

use crate::auth::TokenVerifier;
use crate::blobstore::BlobStore;
use crate::config::CcConfig;
use crate::db::Db;
use crate::error::{ApiError, ErrorKind};
use crate::metrics::Metrics;
use crate::uaa_client::UaaClient;

/// Largest JSON body accepted.
const MAX_JSON_BYTES: usize = 1024 * 1024;

/// State shared by all workers.
pub struct AppState {
    /// Database.
    pub db: Db,
    /// Token verification.
    pub verifier: TokenVerifier,
    /// UAA lookups.
    pub uaa: UaaClient,
    /// `external_url` without trailing slash.
    pub external_url: String,
    /// Public UAA URL.
    pub uaa_url: String,
    /// Public log-cache URL.
    pub log_cache_url: Option<String>,
    /// Name of the default stack.
    pub default_stack: String,
    /// Request counters.
    pub metrics: Metrics,
    /// Package bits, droplets, the resource cache and buildpack caches.
    pub blobs: BlobStore,
    /// Limits on uploaded packages.
    pub package_limits: crate::package_zip::Limits,
    /// Staging on DEAs, and the internal API credentials.
    pub stager: std::sync::Arc<crate::staging::Stager>,
    /// How long builds and starts wait for their work before answering (`sync_wait_secs`).
    pub sync_wait: std::time::Duration,
    /// How long a finished build's answer waits so the CLI can show its staging output (only
    /// with a log-cache).
    pub staging_log_drain: std::time::Duration,
    /// The `API` lines about app changes, sent to the loggregator.
    pub api_logs: crate::app_logs::ApiLogs,
    /// Service broker work (catalogs, instances, bindings) as owned background tasks.
    pub services: std::sync::Arc<crate::service_jobs::ServiceRunner>,
}

impl AppState {
    /// Builds the state from a validated config and an open database.
    pub fn new(
        config: &CcConfig,
        db: Db,
        blobs: BlobStore,
        stager: std::sync::Arc<crate::staging::Stager>,
        services: std::sync::Arc<crate::service_jobs::ServiceRunner>,
    ) -> Result<AppState, crate::CcError> {
        let http = reqwest::Client::builder()
            .timeout(std::time::Duration::from_secs(15))
            .build()
            .map_err(|error| crate::CcError::Config(format!("HTTP client: {error}")))?;
        Ok(AppState {
            db,
            verifier: TokenVerifier::new(
                &config.uaa_public_base(),
                &config.uaa_internal_base(),
                http.clone(),
            ),
            uaa: UaaClient::new(
                &config.uaa_internal_base(),
                &config.uaa.client_id,
                &config.uaa.client_secret,
                http,
            ),
            external_url: config.external_base(),
            uaa_url: config.uaa_public_base(),
            log_cache_url: config
                .log_cache_url
                .as_ref()
                .map(|url| url.trim_end_matches('/').to_owned()),
            default_stack: config.default_stack.clone(),
            metrics: Metrics::default(),
            blobs,
            package_limits: crate::package_zip::Limits {
                max_bytes: config.max_package_bytes,
                max_entries: config.max_package_entries,
                max_expansion_ratio: crate::package_zip::MAX_EXPANSION_RATIO,
            },
            stager,
            sync_wait: std::time::Duration::from_secs(config.sync_wait_secs),
            staging_log_drain: if config.log_cache_url.is_some() {
                std::time::Duration::from_millis(config.staging_log_drain_ms)
            } else {
                std::time::Duration::ZERO
            },
            api_logs: crate::app_logs::ApiLogs::new(config.loggregator_ingress, 0),
            services,
        })
    }
}

/// `CF-NotFound` "Unknown request" for unrouted paths and methods.
pub async fn unknown_request() -> Result<HttpResponse, ApiError> {
    Err(ApiError::plain(ErrorKind::NotFound))
}

/// A resource whose unrouted methods answer "Unknown request" as JSON.
pub fn resource(path: &str) -> actix_web::Resource {
    web::resource(path).default_service(web::to(unknown_request))
}

/// The whole application.
pub fn app(
    state: web::Data<AppState>,
) -> App<
    impl actix_web::dev::ServiceFactory<
        ServiceRequest,
        Config = (),
        Response = ServiceResponse<BoxBody>,
        Error = actix_web::Error,
        InitError = (),
    >,
> {
    App::new()
        .app_data(state)
        .app_data(
            web::JsonConfig::default()
                .limit(MAX_JSON_BYTES)
                .content_type_required(false)
                .error_handler(|error, _request| ApiError::parse(error.to_string()).into()),
        )
        .app_data(
            web::QueryConfig::default()
                .error_handler(|error, _request| ApiError::bad_query(error.to_string()).into()),
        )
        .app_data(
            web::PathConfig::default()
                .error_handler(|_error, _request| ApiError::plain(ErrorKind::NotFound).into()),
        )
        .wrap(from_fn(request_middleware))
        .configure(crate::v3::configure)
        .configure(crate::v2::configure)
        .configure(crate::internal::configure)
        .default_service(web::to(unknown_request))
}

/// Request id, tracing span, metrics, catalog bodies for any error answer actix made itself, v2
/// error bodies and 5xx logging for every request.
async fn request_middleware(
    request: ServiceRequest,
    next: Next<impl MessageBody + 'static>,
) -> Result<ServiceResponse<BoxBody>, actix_web::Error> {
    let request_id = request
        .headers()
        .get("x-vcap-request-id")
        .and_then(|value| value.to_str().ok())
        .filter(|value| !value.is_empty() && value.len() <= 255)
        .map(str::to_owned)
        .unwrap_or_else(|| uuid::Uuid::new_v4().to_string());
    let method = request.method().to_string();
    let path = request.path().to_owned();
    let is_v2 = path.starts_with("/v2");
    let state = request.app_data::<web::Data<AppState>>().cloned();
    let started = Instant::now();
    let span =
        tracing::info_span!("request", request_id = %request_id, method = %method, path = %path);
    // A NUL can name nothing (and PostgreSQL refuses it in text): answer before any handler.
    let mut response = if has_encoded_nul(&path) {
        request.error_response(ApiError::plain(ErrorKind::NotFound))
    } else if has_encoded_nul(request.query_string()) {
        request.error_response(ApiError::bad_query(
            "The query parameters must not contain NUL characters",
        ))
    } else {
        next.call(request)
            .instrument(span.clone())
            .await?
            .map_into_boxed_body()
    };
    let mut api_error = response
        .response()
        .error()
        .and_then(|error| error.as_error::<ApiError>())
        .cloned();
    let status = response.status();
    if api_error.is_none() && (status.is_client_error() || status.is_server_error()) {
        // An error answer actix made on its own (plain text, or an empty 405). None is expected,
        // since every resource, extractor and limit is set up to answer with catalog errors, but
        // a route added without them must still not answer in plain text.
        let framework_error = ApiError::from_framework(status, response.response().error());
        response = response.into_response(framework_error.error_response());
        api_error = Some(framework_error);
    }
    if let Some(api_error) = api_error {
        if api_error.kind.status() >= 500 {
            span.in_scope(|| tracing::error!(error = %api_error, internal = ?api_error.internal, "request failed"));
        }
        if is_v2 {
            response = response.into_response(api_error.v2_response());
        }
    }
    let status = response.status().as_u16();
    if let Ok(value) = HeaderValue::from_str(&request_id) {
        response
            .headers_mut()
            .insert(HeaderName::from_static("x-vcap-request-id"), value);
    }
    if let Some(state) = state {
        state.metrics.record(&method, status);
    }
    span.in_scope(|| {
        tracing::debug!(
            status,
            elapsed_ms = started.elapsed().as_millis() as u64,
            "answered"
        )
    });
    Ok(response)
}

/// Whether a raw (percent-encoded) path or query string holds an encoded NUL (`%00`).
fn has_encoded_nul(raw: &str) -> bool {
    raw.contains('\0') || raw.as_bytes().windows(3).any(|w| w == b"%00")
}

#[cfg(test)]
mod tests {
    use actix_web::http::StatusCode;
    use actix_web::{test, web, App, HttpResponse};
    use serde_json::{json, Value};

    use super::{from_fn, request_middleware};

    /// Routes built without our helpers — a bare resource (empty 405 for other methods) and a
    /// `Bytes` body under a small limit (plain-text 413) — still answer with catalog errors.
    #[actix_web::test]
    async fn error_answers_actix_makes_itself_become_catalog_errors() {
        let echo =
            || web::post().to(|body: web::Bytes| async move { HttpResponse::Ok().body(body) });
        let app = test::init_service(
            App::new()
                .app_data(web::PayloadConfig::new(8))
                .wrap(from_fn(request_middleware))
                .service(web::resource("/v3/bare").route(echo()))
                .service(web::resource("/v2/bare").route(echo())),
        )
        .await;
        let answer = |request: test::TestRequest| {
            let app = &app;
            async move {
                let response = test::call_service(app, request.to_request()).await;
                let status = response.status();
                let body: Value =
                    serde_json::from_slice(&test::read_body(response).await).expect("a JSON body");
                (status, body)
            }
        };

        let (status, body) = answer(test::TestRequest::get().uri("/v3/bare")).await;
        assert_eq!(status, StatusCode::NOT_FOUND);
        assert_eq!(
            body,
            json!({"errors": [{"code": 10000, "title": "CF-NotFound", "detail": "Unknown request"}]})
        );
        let (status, body) = answer(test::TestRequest::delete().uri("/v2/bare")).await;
        assert_eq!(status, StatusCode::NOT_FOUND);
        assert_eq!(
            body,
            json!({"code": 10000, "description": "Unknown request", "error_code": "CF-NotFound"})
        );

        let too_long = || test::TestRequest::post().set_payload("0123456789abcdef");
        let (status, body) = answer(too_long().uri("/v3/bare")).await;
        assert_eq!(status, StatusCode::BAD_REQUEST);
        assert_eq!(body["errors"][0]["title"], "CF-MessageParseError", "{body}");
        let (status, body) = answer(too_long().uri("/v2/bare")).await;
        assert_eq!(status, StatusCode::BAD_REQUEST);
        assert_eq!(body["error_code"], "CF-MessageParseError", "{body}");

        let echoed = test::call_service(
            &app,
            test::TestRequest::post()
                .uri("/v3/bare")
                .set_payload("ok")
                .to_request(),
        )
        .await;
        assert_eq!(echoed.status(), StatusCode::OK);
        assert_eq!(test::read_body(echoed).await, "ok");
    }
}
