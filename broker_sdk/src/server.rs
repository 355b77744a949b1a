//! The HTTP side: OSB routes on actix-web, the cross-cutting checks every request goes through
//! (basic auth, `X-Broker-API-Version`, originating identity), request parsing with OSB-style 400
//! bodies, catalog checks, and turning outcomes and errors into responses. `routes` mounts it in an
//! existing app; `serve` runs it on a listener.

use std::future::Future;
use std::net::{SocketAddr, TcpListener};
use std::sync::Arc;

use actix_web::http::header::{self, HeaderValue};
use actix_web::http::StatusCode;
use actix_web::{web, App, HttpRequest, HttpResponse, HttpServer};
use base64::Engine as _;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use serde_json::{json, Map, Value};

use crate::api::{BindBody, Binding, ProvisionBody, UpdateBody};
use crate::broker::{
    ApiVersion, BindOutcome, BindRequest, DeleteOutcome, DeprovisionRequest, GetBindingRequest,
    GetInstanceRequest, LastBindingOperationRequest, LastOperationRequest, OriginatingIdentity,
    ProvisionOutcome, ProvisionRequest, RequestMeta, ServiceBroker, UnbindRequest, UpdateOutcome,
    UpdateRequest,
};
use crate::catalog::{Catalog, MaintenanceInfo, ServicePlan};
use crate::error::Failure;
use crate::validate::validate_catalog;

/// The spec's limit on `operation` strings.
const MAX_OPERATION_CHARS: usize = 10_000;
/// Largest request body accepted; OSB bodies are small, parameters included.
const MAX_BODY_BYTES: usize = 1024 * 1024;
const VERSION_HEADER: &str = "X-Broker-API-Version";
const ORIGINATING_IDENTITY_HEADER: &str = "X-Broker-API-Originating-Identity";
const REQUEST_IDENTITY_HEADER: &str = "X-Broker-API-Request-Identity";

/// Basic-auth credentials the platform must present.
#[derive(Clone, PartialEq, Eq)]
pub struct Credentials {
    pub username: String,
    pub password: String,
}

impl Credentials {
    pub fn new(username: impl Into<String>, password: impl Into<String>) -> Self {
        Self {
            username: username.into(),
            password: password.into(),
        }
    }
}

impl std::fmt::Debug for Credentials {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter
            .debug_struct("Credentials")
            .field("username", &self.username)
            .field("password", &"<redacted>")
            .finish()
    }
}

/// How the framework treats requests before they reach the broker.
#[derive(Debug, Clone)]
pub struct Settings {
    /// Any of these is accepted (several allow rotating the broker password without downtime).
    pub credentials: Vec<Credentials>,
    /// The status for a request without `X-Broker-API-Version`: the spec allows 400, brokerapi and
    /// the osb-checker conformance suites expect 412 — the default. Versions other than 2.x are
    /// always refused with 412.
    pub missing_version_status: u16,
}

impl Settings {
    pub fn new(credentials: Credentials) -> Self {
        Self {
            credentials: vec![credentials],
            missing_version_status: 412,
        }
    }
}

/// The OSB routes for `broker`, to mount with `App::configure`:
///
/// ```no_run
/// # use std::sync::Arc;
/// # fn example<B: broker_sdk::ServiceBroker>(broker: Arc<B>) {
/// let credentials = broker_sdk::Credentials::new("admin", "secret");
/// actix_web::HttpServer::new(move || {
///     actix_web::App::new().configure(broker_sdk::routes(broker.clone(), credentials.clone()))
/// });
/// # }
/// ```
///
/// Pass the same `Arc` to every worker so that they share the broker's state.
pub fn routes<B: ServiceBroker>(
    broker: Arc<B>,
    credentials: Credentials,
) -> impl FnOnce(&mut web::ServiceConfig) {
    routes_with_settings(broker, Settings::new(credentials))
}

/// `routes` with explicit `Settings`.
pub fn routes_with_settings<B: ServiceBroker>(
    broker: Arc<B>,
    settings: Settings,
) -> impl FnOnce(&mut web::ServiceConfig) {
    let state = State {
        broker,
        settings: Arc::new(settings),
    };
    move |config: &mut web::ServiceConfig| {
        let instance = "/v2/service_instances/{instance_id}";
        let binding = "/v2/service_instances/{instance_id}/service_bindings/{binding_id}";
        config
            .route("/v2/catalog", web::get().to(handler(&state, catalog::<B>)))
            .service(
                web::resource(instance)
                    .route(web::put().to(body_handler(&state, provision::<B>)))
                    .route(web::patch().to(body_handler(&state, update::<B>)))
                    .route(web::delete().to(handler(&state, deprovision::<B>)))
                    .route(web::get().to(handler(&state, get_instance::<B>))),
            )
            .route(
                &format!("{instance}/last_operation"),
                web::get().to(handler(&state, last_operation::<B>)),
            )
            .service(
                web::resource(binding)
                    .route(web::put().to(body_handler(&state, bind::<B>)))
                    .route(web::delete().to(handler(&state, unbind::<B>)))
                    .route(web::get().to(handler(&state, get_binding::<B>))),
            )
            .route(
                &format!("{binding}/last_operation"),
                web::get().to(handler(&state, last_binding_operation::<B>)),
            );
    }
}

/// A broker running on its own actix-web server.
pub struct BrokerServer {
    local_addr: SocketAddr,
    handle: actix_web::dev::ServerHandle,
    task: tokio::task::JoinHandle<std::io::Result<()>>,
}

impl BrokerServer {
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// `http://<addr>`, the URL to register with `cf create-service-broker`.
    pub fn url(&self) -> String {
        format!("http://{}", self.local_addr)
    }

    /// Stops accepting, lets running requests finish, and waits for the server to end.
    pub async fn stop(self) {
        self.handle.stop(true).await;
        match self.task.await {
            Ok(Ok(())) => {}
            Ok(Err(error)) => tracing::warn!(%error, "service broker server ended with an error"),
            Err(error) => tracing::warn!(%error, "service broker server task failed"),
        }
    }
}

/// Serves `broker` on `listener` (bind `127.0.0.1:0` in tests) in a task of the current tokio
/// runtime; returns the server and the address it listens on. The server does not install
/// signal handlers: the embedding process owns Ctrl-C and calls `BrokerServer::stop`.
pub fn serve<B: ServiceBroker>(
    broker: Arc<B>,
    credentials: Credentials,
    listener: TcpListener,
) -> std::io::Result<(BrokerServer, SocketAddr)> {
    serve_with_settings(broker, Settings::new(credentials), listener)
}

/// `serve` with explicit `Settings`.
pub fn serve_with_settings<B: ServiceBroker>(
    broker: Arc<B>,
    settings: Settings,
    listener: TcpListener,
) -> std::io::Result<(BrokerServer, SocketAddr)> {
    let local_addr = listener.local_addr()?;
    let server = HttpServer::new(move || {
        App::new().configure(routes_with_settings(broker.clone(), settings.clone()))
    })
    .workers(2)
    .disable_signals()
    .listen(listener)?
    .run();
    let handle = server.handle();
    let task = tokio::spawn(server);
    Ok((
        BrokerServer {
            local_addr,
            handle,
            task,
        },
        local_addr,
    ))
}

struct State<B> {
    broker: Arc<B>,
    settings: Arc<Settings>,
}

impl<B> Clone for State<B> {
    fn clone(&self) -> Self {
        Self {
            broker: self.broker.clone(),
            settings: self.settings.clone(),
        }
    }
}

/// Handler results: `Err` is rendered as an OSB error body by `finish`.
type Answer = Result<HttpResponse, Failure>;

/// Wraps an operation without a body into an actix handler that runs the cross-cutting checks
/// first and echoes the request identity last.
fn handler<B, F, Fut>(
    state: &State<B>,
    operation: F,
) -> impl Fn(HttpRequest) -> std::pin::Pin<Box<dyn Future<Output = HttpResponse>>> + Clone + 'static
where
    B: ServiceBroker,
    F: Fn(State<B>, HttpRequest, RequestMeta) -> Fut + Clone + 'static,
    Fut: Future<Output = Answer> + 'static,
{
    let state = state.clone();
    move |request: HttpRequest| {
        let state = state.clone();
        let operation = operation.clone();
        let span = request_span(&request);
        Box::pin(tracing::Instrument::instrument(
            async move {
                let answer = match preflight(&state.settings, &request) {
                    Ok(meta) => operation(state, request.clone(), meta).await,
                    Err(response) => Err(response),
                };
                finish(&request, answer)
            },
            span,
        ))
    }
}

/// `handler` for operations with a JSON body. The body is read by hand (not with actix's `Bytes`
/// extractor) so that an oversized or broken body still gets an OSB error body.
fn body_handler<B, F, Fut>(
    state: &State<B>,
    operation: F,
) -> impl Fn(HttpRequest, web::Payload) -> std::pin::Pin<Box<dyn Future<Output = HttpResponse>>>
       + Clone
       + 'static
where
    B: ServiceBroker,
    F: Fn(State<B>, HttpRequest, RequestMeta, web::Bytes) -> Fut + Clone + 'static,
    Fut: Future<Output = Answer> + 'static,
{
    let state = state.clone();
    move |request: HttpRequest, payload: web::Payload| {
        let state = state.clone();
        let operation = operation.clone();
        let span = request_span(&request);
        Box::pin(tracing::Instrument::instrument(
            async move {
                let answer = match preflight(&state.settings, &request)
                    .and_then(|meta| check_content_type(&request).map(|()| meta))
                {
                    Ok(meta) => match read_body(payload).await {
                        Ok(body) => operation(state, request.clone(), meta, body).await,
                        Err(failure) => Err(failure),
                    },
                    Err(failure) => Err(failure),
                };
                finish(&request, answer)
            },
            span,
        ))
    }
}

/// A body the platform labels as something other than JSON is refused, as the spec asks; a body
/// without a `Content-Type` is read as JSON.
fn check_content_type(request: &HttpRequest) -> Result<(), Failure> {
    let Some(value) = request.headers().get(header::CONTENT_TYPE) else {
        return Ok(());
    };
    let text = value.to_str().unwrap_or("");
    let mime = text
        .split(';')
        .next()
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase();
    let is_json =
        mime == "application/json" || (mime.starts_with("application/") && mime.ends_with("+json"));
    if is_json {
        Ok(())
    } else {
        Err(bad_request(format!(
            "The request body must be JSON, but its Content-Type is {text:?}; send application/json."
        )))
    }
}

async fn read_body(payload: web::Payload) -> Result<web::Bytes, Failure> {
    match payload.to_bytes_limited(MAX_BODY_BYTES).await {
        Ok(Ok(body)) => Ok(body),
        Ok(Err(error)) => Err(Failure::bad_request(format!(
            "The request body could not be read: {error}"
        ))),
        Err(_) => Err(Failure::new(
            413,
            None,
            format!("The request body is larger than {MAX_BODY_BYTES} bytes."),
        )),
    }
}

/// One span per request, carrying the platform's request identity when it sends one.
fn request_span(request: &HttpRequest) -> tracing::Span {
    let request_identity = request
        .headers()
        .get(REQUEST_IDENTITY_HEADER)
        .and_then(|value| value.to_str().ok())
        .unwrap_or("");
    tracing::info_span!(
        "osb_request",
        method = %request.method(),
        path = %request.path(),
        request_identity,
    )
}

fn finish(request: &HttpRequest, answer: Answer) -> HttpResponse {
    let mut response = answer.unwrap_or_else(|failure| failure_response(&failure));
    if let Some(identity) = request.headers().get(REQUEST_IDENTITY_HEADER) {
        response.headers_mut().insert(
            header::HeaderName::from_static("x-broker-api-request-identity"),
            identity.clone(),
        );
    }
    response
}

fn failure_response(failure: &Failure) -> HttpResponse {
    if failure.status_code().is_server_error() {
        tracing::warn!(status = failure.status(), error = %failure, "service broker request failed");
    } else {
        tracing::debug!(status = failure.status(), error = %failure, "service broker request refused");
    }
    let mut response = HttpResponse::build(failure.status_code());
    if failure.status_code() == StatusCode::UNAUTHORIZED {
        response.insert_header((header::WWW_AUTHENTICATE, "Basic realm=\"service broker\""));
    }
    response.json(failure.body())
}

fn bad_request(description: impl Into<String>) -> Failure {
    Failure::bad_request(description)
}

fn json_response(status: StatusCode, body: &impl Serialize) -> HttpResponse {
    HttpResponse::build(status).json(body)
}

/// Authentication, then the API version, then the originating identity.
fn preflight(settings: &Settings, request: &HttpRequest) -> Result<RequestMeta, Failure> {
    if !authenticated(settings, request) {
        return Err(Failure::new(
            401,
            None,
            "Unauthorized: the broker credentials are missing or wrong.",
        ));
    }
    let api_version = api_version(settings, request)?;
    let originating_identity = match request.headers().get(ORIGINATING_IDENTITY_HEADER) {
        None => None,
        Some(value) => Some(
            value
                .to_str()
                .map_err(|_| "is not ASCII".to_owned())
                .and_then(decode_originating_identity)
                .map_err(|problem| {
                    bad_request(format!("{ORIGINATING_IDENTITY_HEADER} {problem}"))
                })?,
        ),
    };
    let request_identity = request
        .headers()
        .get(REQUEST_IDENTITY_HEADER)
        .and_then(|value| value.to_str().ok())
        .map(str::to_owned);
    Ok(RequestMeta {
        api_version,
        originating_identity,
        request_identity,
    })
}

fn authenticated(settings: &Settings, request: &HttpRequest) -> bool {
    let Some((username, password)) = request
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|value| value.to_str().ok())
        .and_then(|value| {
            // The scheme is case-insensitive (RFC 7235 §2.1).
            let (scheme, encoded) = value.split_once(' ')?;
            scheme.eq_ignore_ascii_case("basic").then_some(encoded)
        })
        .and_then(|encoded| {
            base64::engine::general_purpose::STANDARD
                .decode(encoded.trim())
                .ok()
        })
        .and_then(|decoded| String::from_utf8(decoded).ok())
        .and_then(|decoded| {
            decoded
                .split_once(':')
                .map(|(user, pass)| (user.to_owned(), pass.to_owned()))
        })
    else {
        return false;
    };
    // Check every credential without stopping early, so the time taken says nothing about which
    // part matched.
    settings.credentials.iter().fold(false, |found, expected| {
        let user_matches = constant_time_eq(username.as_bytes(), expected.username.as_bytes());
        let password_matches = constant_time_eq(password.as_bytes(), expected.password.as_bytes());
        found | (user_matches & password_matches)
    })
}

/// Compares without branching on the contents; only the lengths leak.
pub(crate) fn constant_time_eq(left: &[u8], right: &[u8]) -> bool {
    let length_difference = left.len() ^ right.len();
    let longest = left.len().max(right.len());
    let mut difference = 0u8;
    for index in 0..longest {
        let a = left.get(index).copied().unwrap_or(0);
        let b = right.get(index).copied().unwrap_or(0);
        difference |= a ^ b;
    }
    length_difference == 0 && difference == 0
}

fn api_version(settings: &Settings, request: &HttpRequest) -> Result<ApiVersion, Failure> {
    let Some(value) = request.headers().get(VERSION_HEADER) else {
        return Err(Failure::new(
            settings.missing_version_status,
            None,
            format!("The {VERSION_HEADER} header is missing; this broker supports 2.x."),
        ));
    };
    let text = value.to_str().unwrap_or("").trim();
    let parsed = text.split_once('.').and_then(|(major, minor)| {
        Some(ApiVersion {
            major: major.parse().ok()?,
            minor: minor.parse().ok()?,
        })
    });
    match parsed {
        Some(version) if version.major == 2 => Ok(version),
        _ => Err(Failure::new(
            412,
            None,
            format!("{VERSION_HEADER} {text:?} is not supported; this broker supports 2.x."),
        )),
    }
}

/// `<platform> <base64 of a JSON object>`.
pub(crate) fn decode_originating_identity(header: &str) -> Result<OriginatingIdentity, String> {
    let (platform, encoded) = header
        .trim()
        .split_once(' ')
        .ok_or_else(|| "must be \"<platform> <base64 JSON>\"".to_owned())?;
    if platform.is_empty() {
        return Err("has an empty platform".to_owned());
    }
    let engine = base64::engine::GeneralPurpose::new(
        &base64::alphabet::STANDARD,
        base64::engine::GeneralPurposeConfig::new()
            .with_decode_padding_mode(base64::engine::DecodePaddingMode::Indifferent),
    );
    let decoded = engine
        .decode(encoded.trim())
        .map_err(|error| format!("value is not base64: {error}"))?;
    let value: Map<String, Value> = serde_json::from_slice(&decoded)
        .map_err(|error| format!("value is not a base64-encoded JSON object: {error}"))?;
    Ok(OriginatingIdentity {
        platform: platform.to_owned(),
        value,
    })
}

fn path_parameter(request: &HttpRequest, name: &str) -> String {
    request
        .match_info()
        .get(name)
        .unwrap_or_default()
        .to_owned()
}

#[derive(Deserialize)]
struct OperationQuery {
    accepts_incomplete: Option<String>,
    service_id: Option<String>,
    plan_id: Option<String>,
    operation: Option<String>,
}

fn query(request: &HttpRequest) -> Result<OperationQuery, Failure> {
    web::Query::<OperationQuery>::from_query(request.query_string())
        .map(web::Query::into_inner)
        .map_err(|error| bad_request(format!("invalid query string: {error}")))
}

fn accepts_incomplete(query: &OperationQuery) -> Result<bool, Failure> {
    match query.accepts_incomplete.as_deref() {
        None | Some("false") => Ok(false),
        Some("true") => Ok(true),
        Some(other) => Err(bad_request(format!(
            "accepts_incomplete must be true or false, but has value {other:?}"
        ))),
    }
}

fn required(value: Option<String>, name: &str) -> Result<String, Failure> {
    value
        .filter(|value| !value.is_empty())
        .ok_or_else(|| bad_request(format!("The query parameter {name} is required.")))
}

fn parse_body<T: DeserializeOwned>(body: &[u8]) -> Result<T, Failure> {
    if body.is_empty() {
        return Err(bad_request(
            "The request body is missing; a JSON object is required.",
        ));
    }
    let value: Value = serde_json::from_slice(body)
        .map_err(|error| bad_request(format!("The request body is not valid JSON: {error}")))?;
    if !value.is_object() {
        return Err(bad_request("The request body must be a JSON object."));
    }
    serde_json::from_value(value)
        .map_err(|error| bad_request(format!("The request body is invalid: {error}")))
}

async fn load_catalog<B: ServiceBroker>(
    state: &State<B>,
    meta: &RequestMeta,
) -> Result<Catalog, Failure> {
    state
        .broker
        .catalog(meta.clone())
        .await
        .map_err(Failure::from)
}

/// The `operation` of a 202 as it goes on the wire: at most 10,000 characters, and absent rather
/// than empty (the spec wants it non-empty when present, and the platform would otherwise poll
/// with an empty `operation=`).
fn check_operation(operation: Option<String>) -> Result<Option<String>, Failure> {
    match operation {
        Some(operation) if operation.chars().count() > MAX_OPERATION_CHARS => {
            tracing::error!("service broker returned an operation longer than 10,000 characters");
            Err(Failure::internal(
                "The broker produced an operation identifier longer than 10,000 characters.",
            ))
        }
        operation => Ok(operation.filter(|operation| !operation.is_empty())),
    }
}

fn async_not_allowed(operation: &str) -> Failure {
    tracing::error!(
        operation,
        "service broker answered asynchronously to a request without accepts_incomplete=true"
    );
    Failure::async_required()
}

fn check_maintenance_info(
    requested: Option<&MaintenanceInfo>,
    plan: &ServicePlan,
) -> Result<(), Failure> {
    let Some(requested) = requested.and_then(|info| info.version.as_deref()) else {
        return Ok(());
    };
    let offered = plan
        .maintenance_info
        .as_ref()
        .and_then(|info| info.version.as_deref());
    if offered == Some(requested) {
        Ok(())
    } else {
        Err(Failure::maintenance_info_conflict(format!(
            "maintenance_info.version {requested:?} does not match the catalog's version {} of plan {}; fetch the catalog again.",
            offered.map(|v| format!("{v:?}")).unwrap_or_else(|| "(none)".to_owned()),
            plan.name
        )))
    }
}

async fn catalog<B: ServiceBroker>(
    state: State<B>,
    _request: HttpRequest,
    meta: RequestMeta,
) -> Answer {
    let catalog = load_catalog(&state, &meta).await?;
    if let Err(report) = validate_catalog(&catalog) {
        tracing::error!(%report, "service broker catalog is invalid");
        return Err(Failure::internal(report.to_string()));
    }
    Ok(json_response(StatusCode::OK, &catalog))
}

async fn provision<B: ServiceBroker>(
    state: State<B>,
    request: HttpRequest,
    meta: RequestMeta,
    body: web::Bytes,
) -> Answer {
    let instance_id = path_parameter(&request, "instance_id");
    let accepts_incomplete = accepts_incomplete(&query(&request)?)?;
    let body: ProvisionBody = parse_body(&body)?;
    let catalog = load_catalog(&state, &meta).await?;
    let (service, plan) = resolve(&catalog, &body.service_id, &body.plan_id)?;
    check_maintenance_info(body.maintenance_info.as_ref(), &plan)?;
    let outcome = state
        .broker
        .provision(ProvisionRequest {
            instance_id,
            accepts_incomplete,
            body,
            service,
            plan,
            meta,
        })
        .await
        .map_err(Failure::from)?;
    match outcome {
        ProvisionOutcome::Created(response) => Ok(json_response(StatusCode::CREATED, &response)),
        ProvisionOutcome::AlreadyExists(response) => Ok(json_response(StatusCode::OK, &response)),
        ProvisionOutcome::InProgress { .. } if !accepts_incomplete => {
            Err(async_not_allowed("provision"))
        }
        ProvisionOutcome::InProgress {
            operation,
            dashboard_url,
            metadata,
        } => {
            let operation = check_operation(operation)?;
            Ok(json_response(
                StatusCode::ACCEPTED,
                &AsyncInstanceBody {
                    dashboard_url,
                    operation,
                    metadata,
                },
            ))
        }
    }
}

#[derive(Serialize)]
struct AsyncInstanceBody {
    #[serde(skip_serializing_if = "Option::is_none")]
    dashboard_url: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    operation: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    metadata: Option<crate::api::InstanceMetadata>,
}

#[derive(Serialize)]
struct OperationBody {
    #[serde(skip_serializing_if = "Option::is_none")]
    operation: Option<String>,
}

fn resolve(
    catalog: &Catalog,
    service_id: &str,
    plan_id: &str,
) -> Result<(crate::catalog::ServiceOffering, ServicePlan), Failure> {
    let service = catalog
        .service(service_id)
        .ok_or_else(|| bad_request(format!("service_id {service_id:?} is not in the catalog.")))?;
    let plan = service.plan(plan_id).ok_or_else(|| {
        bad_request(format!(
            "plan_id {plan_id:?} is not a plan of service {:?}.",
            service.name
        ))
    })?;
    Ok((service.clone(), plan.clone()))
}

async fn update<B: ServiceBroker>(
    state: State<B>,
    request: HttpRequest,
    meta: RequestMeta,
    body: web::Bytes,
) -> Answer {
    let instance_id = path_parameter(&request, "instance_id");
    let accepts_incomplete = accepts_incomplete(&query(&request)?)?;
    let body: UpdateBody = parse_body(&body)?;
    let catalog = load_catalog(&state, &meta).await?;
    let service = catalog.service(&body.service_id).cloned().ok_or_else(|| {
        bad_request(format!(
            "service_id {:?} is not in the catalog.",
            body.service_id
        ))
    })?;
    let plan = match &body.plan_id {
        None => None,
        Some(plan_id) => Some(resolve(&catalog, &body.service_id, plan_id)?.1),
    };
    let previous_plan_id = body
        .previous_values
        .as_ref()
        .and_then(|previous| previous.plan_id.as_deref());
    if let (Some(new_plan), Some(previous_plan_id)) = (&plan, previous_plan_id) {
        if new_plan.id != previous_plan_id {
            let updateable = match service.plan(previous_plan_id) {
                Some(previous_plan) => service.plan_is_updateable(previous_plan),
                None => service.plan_updateable.unwrap_or(false),
            };
            if !updateable {
                return Err(Failure::unprocessable(
                    None,
                    format!(
                        "The service does not support changing plans (plan_updateable is false); cannot change to plan {:?}.",
                        new_plan.name
                    ),
                ));
            }
        }
    }
    if let Some(target) = plan
        .as_ref()
        .or_else(|| previous_plan_id.and_then(|id| service.plan(id)))
    {
        check_maintenance_info(body.maintenance_info.as_ref(), target)?;
    }
    let outcome = state
        .broker
        .update(UpdateRequest {
            instance_id,
            accepts_incomplete,
            body,
            service,
            plan,
            meta,
        })
        .await
        .map_err(Failure::from)?;
    match outcome {
        UpdateOutcome::Updated(response) => Ok(json_response(StatusCode::OK, &response)),
        UpdateOutcome::InProgress { .. } if !accepts_incomplete => Err(async_not_allowed("update")),
        UpdateOutcome::InProgress {
            operation,
            dashboard_url,
            metadata,
        } => {
            let operation = check_operation(operation)?;
            Ok(json_response(
                StatusCode::ACCEPTED,
                &AsyncInstanceBody {
                    dashboard_url,
                    operation,
                    metadata,
                },
            ))
        }
    }
}

fn delete_answer(outcome: DeleteOutcome, accepts_incomplete: bool, operation_name: &str) -> Answer {
    match outcome {
        DeleteOutcome::Deleted => Ok(json_response(StatusCode::OK, &json!({}))),
        DeleteOutcome::InProgress { .. } if !accepts_incomplete => {
            Err(async_not_allowed(operation_name))
        }
        DeleteOutcome::InProgress { operation } => {
            let operation = check_operation(operation)?;
            Ok(json_response(
                StatusCode::ACCEPTED,
                &OperationBody { operation },
            ))
        }
    }
}

async fn deprovision<B: ServiceBroker>(
    state: State<B>,
    request: HttpRequest,
    meta: RequestMeta,
) -> Answer {
    let query = query(&request)?;
    let accepts_incomplete = accepts_incomplete(&query)?;
    let outcome = state
        .broker
        .deprovision(DeprovisionRequest {
            instance_id: path_parameter(&request, "instance_id"),
            service_id: required(query.service_id, "service_id")?,
            plan_id: required(query.plan_id, "plan_id")?,
            accepts_incomplete,
            meta,
        })
        .await
        .map_err(Failure::from)?;
    delete_answer(outcome, accepts_incomplete, "deprovision")
}

fn last_operation_answer(mut last_operation: crate::api::LastOperation) -> Answer {
    // `description` must be non-empty when present.
    last_operation.description = last_operation
        .description
        .filter(|description| !description.is_empty());
    let mut response = json_response(StatusCode::OK, &last_operation);
    if let Some(retry_after) = last_operation.retry_after {
        // Whole seconds, as the spec recommends; round up so that "soon" never becomes 0.
        let seconds = retry_after.as_secs() + u64::from(retry_after.subsec_nanos() > 0);
        if let Ok(value) = HeaderValue::from_str(&seconds.to_string()) {
            response.headers_mut().insert(header::RETRY_AFTER, value);
        }
    }
    Ok(response)
}

async fn last_operation<B: ServiceBroker>(
    state: State<B>,
    request: HttpRequest,
    meta: RequestMeta,
) -> Answer {
    let query = query(&request)?;
    let last_operation = state
        .broker
        .last_operation(LastOperationRequest {
            instance_id: path_parameter(&request, "instance_id"),
            service_id: query.service_id,
            plan_id: query.plan_id,
            operation: query.operation,
            meta,
        })
        .await
        .map_err(Failure::from)?;
    last_operation_answer(last_operation)
}

async fn get_instance<B: ServiceBroker>(
    state: State<B>,
    request: HttpRequest,
    meta: RequestMeta,
) -> Answer {
    let query = query(&request)?;
    let details = state
        .broker
        .get_instance(GetInstanceRequest {
            instance_id: path_parameter(&request, "instance_id"),
            service_id: query.service_id,
            plan_id: query.plan_id,
            meta,
        })
        .await
        .map_err(Failure::from)?;
    Ok(json_response(StatusCode::OK, &details))
}

/// Refuses binding answers the platform would reject: `syslog_drain_url`, `route_service_url` and
/// `volume_mounts` need the matching `requires` entry of the offering.
fn check_binding(binding: &Binding, requires: &[String]) -> Result<(), Failure> {
    let needs = |field: bool, requirement: &str, name: &str| -> Result<(), Failure> {
        if field && !requires.iter().any(|r| r == requirement) {
            tracing::error!(
                field = name,
                "service broker returned a binding field its offering does not declare"
            );
            return Err(Failure::internal(format!(
                "The broker returned {name} but the service does not declare \"requires\": [\"{requirement}\"]."
            )));
        }
        Ok(())
    };
    needs(
        binding.syslog_drain_url.is_some(),
        "syslog_drain",
        "syslog_drain_url",
    )?;
    needs(
        binding.route_service_url.is_some(),
        "route_forwarding",
        "route_service_url",
    )?;
    needs(
        binding
            .volume_mounts
            .as_ref()
            .is_some_and(|mounts| !mounts.is_empty()),
        "volume_mount",
        "volume_mounts",
    )
}

async fn bind<B: ServiceBroker>(
    state: State<B>,
    request: HttpRequest,
    meta: RequestMeta,
    body: web::Bytes,
) -> Answer {
    let instance_id = path_parameter(&request, "instance_id");
    let binding_id = path_parameter(&request, "binding_id");
    let accepts_incomplete = accepts_incomplete(&query(&request)?)?;
    let body: BindBody = parse_body(&body)?;
    let catalog = load_catalog(&state, &meta).await?;
    let (service, plan) = resolve(&catalog, &body.service_id, &body.plan_id)?;
    if !service.plan_is_bindable(&plan) {
        return Err(bad_request(format!(
            "Plan {:?} of service {:?} is not bindable.",
            plan.name, service.name
        )));
    }
    if body.predecessor_binding_id.is_some() && !plan.binding_rotatable.unwrap_or(false) {
        return Err(bad_request(format!(
            "Plan {:?} of service {:?} does not allow binding rotation (binding_rotatable is not true); predecessor_binding_id cannot be used.",
            plan.name, service.name
        )));
    }
    let requires = service.requires.clone();
    let bindings_retrievable = service.bindings_retrievable.unwrap_or(false);
    let outcome = state
        .broker
        .bind(BindRequest {
            instance_id,
            binding_id,
            accepts_incomplete,
            body,
            service,
            plan,
            meta,
        })
        .await
        .map_err(Failure::from)?;
    match outcome {
        BindOutcome::Created(binding) => {
            check_binding(&binding, &requires)?;
            Ok(json_response(StatusCode::CREATED, &binding))
        }
        BindOutcome::AlreadyExists(binding) => {
            check_binding(&binding, &requires)?;
            Ok(json_response(StatusCode::OK, &binding))
        }
        BindOutcome::InProgress { .. } if !accepts_incomplete => Err(async_not_allowed("bind")),
        BindOutcome::InProgress { .. } if !bindings_retrievable => {
            // The platform fetches an asynchronous binding once it is done; the Cloud Controller
            // fails such a binding when the offering cannot be fetched from.
            tracing::error!(
                "service broker answered a bind asynchronously for an offering without bindings_retrievable"
            );
            Err(Failure::internal(
                "The broker answered asynchronously, but the service does not declare \"bindings_retrievable\": true, so the binding could never be fetched.",
            ))
        }
        BindOutcome::InProgress { operation } => {
            let operation = check_operation(operation)?;
            Ok(json_response(
                StatusCode::ACCEPTED,
                &OperationBody { operation },
            ))
        }
    }
}

async fn unbind<B: ServiceBroker>(
    state: State<B>,
    request: HttpRequest,
    meta: RequestMeta,
) -> Answer {
    let query = query(&request)?;
    let accepts_incomplete = accepts_incomplete(&query)?;
    let outcome = state
        .broker
        .unbind(UnbindRequest {
            instance_id: path_parameter(&request, "instance_id"),
            binding_id: path_parameter(&request, "binding_id"),
            service_id: required(query.service_id, "service_id")?,
            plan_id: required(query.plan_id, "plan_id")?,
            accepts_incomplete,
            meta,
        })
        .await
        .map_err(Failure::from)?;
    delete_answer(outcome, accepts_incomplete, "unbind")
}

async fn get_binding<B: ServiceBroker>(
    state: State<B>,
    request: HttpRequest,
    meta: RequestMeta,
) -> Answer {
    let query = query(&request)?;
    let details = state
        .broker
        .get_binding(GetBindingRequest {
            instance_id: path_parameter(&request, "instance_id"),
            binding_id: path_parameter(&request, "binding_id"),
            service_id: query.service_id,
            plan_id: query.plan_id,
            meta,
        })
        .await
        .map_err(Failure::from)?;
    Ok(json_response(StatusCode::OK, &details))
}

async fn last_binding_operation<B: ServiceBroker>(
    state: State<B>,
    request: HttpRequest,
    meta: RequestMeta,
) -> Answer {
    let query = query(&request)?;
    let last_operation = state
        .broker
        .last_binding_operation(LastBindingOperationRequest {
            instance_id: path_parameter(&request, "instance_id"),
            binding_id: path_parameter(&request, "binding_id"),
            service_id: query.service_id,
            plan_id: query.plan_id,
            operation: query.operation,
            meta,
        })
        .await
        .map_err(Failure::from)?;
    let mut last_operation = last_operation;
    // Usability flags belong to instance operations only.
    last_operation.instance_usable = None;
    last_operation.update_repeatable = None;
    last_operation_answer(last_operation)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn constant_time_eq_compares_contents_and_lengths() {
        assert!(constant_time_eq(b"secret", b"secret"));
        assert!(!constant_time_eq(b"secret", b"secreT"));
        assert!(!constant_time_eq(b"secret", b"secret\0"));
        assert!(!constant_time_eq(b"", b"x"));
        assert!(constant_time_eq(b"", b""));
    }

    #[test]
    fn originating_identity_is_platform_and_base64_json() {
        let encoded = base64::engine::general_purpose::STANDARD.encode(br#"{"user_id":"u-1"}"#);
        let identity = decode_originating_identity(&format!("cloudfoundry {encoded}")).unwrap();
        assert_eq!(identity.platform, "cloudfoundry");
        assert_eq!(identity.user_id(), Some("u-1"));
        let unpadded = encoded.trim_end_matches('=');
        assert!(decode_originating_identity(&format!("cloudfoundry {unpadded}")).is_ok());
        assert!(decode_originating_identity("cloudfoundry").is_err());
        assert!(decode_originating_identity("cloudfoundry !!!").is_err());
        let not_object = base64::engine::general_purpose::STANDARD.encode(b"[1]");
        assert!(decode_originating_identity(&format!("kubernetes {not_object}")).is_err());
    }
}
