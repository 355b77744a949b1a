//! Errors: `UaaError` for starting and administering the server, `ApiError` for HTTP responses in
//! UAA's JSON shapes (`{"error":..,"error_description":..}`), and the middleware that gives the
//! errors actix produces on its own (body limits, unrouted methods, extractor failures) that shape.

use actix_web::body::{BoxBody, MessageBody};
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::http::{Method, StatusCode};
use actix_web::middleware::Next;
use actix_web::{HttpResponse, ResponseError};

/// Failure to start the server or to administer its database.
#[derive(Debug, thiserror::Error)]
pub enum UaaError {
    /// The configuration is invalid; nothing was bound or opened.
    #[error("invalid UAA configuration: {0}")]
    Config(String),
    /// The database could not be opened, migrated or queried.
    #[error("UAA database error: {0}")]
    Database(String),
    /// A signing key could not be generated or parsed.
    #[error("UAA signing key error: {0}")]
    Key(String),
    /// The HTTP server could not be started on the given listener.
    #[error("UAA HTTP server error: {0}")]
    Server(#[source] std::io::Error),
}

impl From<crate::db::StoreError> for UaaError {
    fn from(error: crate::db::StoreError) -> Self {
        UaaError::Database(error.to_string())
    }
}

/// An error answer of the HTTP API.
///
/// OAuth endpoints answer `{"error","error_description"}`; SCIM endpoints additionally carry
/// `message` (UAA's `ExceptionReport` shape) and sometimes extra fields.
#[derive(Debug, Clone)]
pub(crate) struct ApiError {
    pub(crate) status: StatusCode,
    pub(crate) error: &'static str,
    pub(crate) description: String,
    pub(crate) scim: bool,
    pub(crate) extra: Vec<(&'static str, serde_json::Value)>,
}

impl std::fmt::Display for ApiError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} {}: {}",
            self.status.as_u16(),
            self.error,
            self.description
        )
    }
}

impl ApiError {
    pub(crate) fn new(
        status: StatusCode,
        error: &'static str,
        description: impl Into<String>,
    ) -> Self {
        ApiError {
            status,
            error,
            description: description.into(),
            scim: false,
            extra: Vec::new(),
        }
    }

    /// An error rendered in UAA's SCIM `ExceptionReport` shape (adds `message`).
    pub(crate) fn scim(
        status: StatusCode,
        error: &'static str,
        description: impl Into<String>,
    ) -> Self {
        ApiError {
            scim: true,
            ..ApiError::new(status, error, description)
        }
    }

    pub(crate) fn with_extra(mut self, key: &'static str, value: serde_json::Value) -> Self {
        self.extra.push((key, value));
        self
    }

    pub(crate) fn invalid_request(description: impl Into<String>) -> Self {
        ApiError::new(StatusCode::BAD_REQUEST, "invalid_request", description)
    }

    pub(crate) fn invalid_token(description: impl Into<String>) -> Self {
        ApiError::new(StatusCode::UNAUTHORIZED, "invalid_token", description)
    }

    pub(crate) fn invalid_client(description: impl Into<String>) -> Self {
        ApiError::new(StatusCode::UNAUTHORIZED, "invalid_client", description)
    }

    pub(crate) fn bad_credentials() -> Self {
        ApiError::new(StatusCode::UNAUTHORIZED, "unauthorized", "Bad credentials")
    }

    pub(crate) fn insufficient_scope(required: &[&str]) -> Self {
        ApiError::new(
            StatusCode::FORBIDDEN,
            "insufficient_scope",
            "Insufficient scope for this resource",
        )
        .with_extra("scope", serde_json::Value::String(required.join(" ")))
    }

    pub(crate) fn invalid_scim_resource(description: impl Into<String>) -> Self {
        ApiError::scim(
            StatusCode::BAD_REQUEST,
            "invalid_scim_resource",
            description,
        )
    }

    pub(crate) fn scim_not_found(description: impl Into<String>) -> Self {
        ApiError::scim(
            StatusCode::NOT_FOUND,
            "scim_resource_not_found",
            description,
        )
    }

    pub(crate) fn invalid_password(status: StatusCode, description: impl Into<String>) -> Self {
        ApiError::scim(status, "invalid_password", description)
    }

    /// UAA's answer for an error actix produced itself rather than a handler of ours: `status` is
    /// what actix chose, `cause` the error it carried (none for an unrouted method).
    fn from_framework(
        status: StatusCode,
        method: &Method,
        cause: Option<&actix_web::Error>,
    ) -> Self {
        let detail = cause.map(ToString::to_string).unwrap_or_default();
        match status {
            // Spring's `HttpRequestMethodNotSupportedException`, as UAA's endpoints render it.
            StatusCode::METHOD_NOT_ALLOWED => ApiError::new(
                status,
                "method_not_allowed",
                format!("Request method '{method}' is not supported"),
            ),
            StatusCode::NOT_FOUND => ApiError::new(status, "not_found", "Not Found"),
            StatusCode::PAYLOAD_TOO_LARGE => ApiError::new(
                status,
                "invalid_request",
                format!(
                    "The request body is larger than the limit of {} bytes",
                    crate::MAX_BODY_BYTES
                ),
            ),
            StatusCode::UNSUPPORTED_MEDIA_TYPE => ApiError::new(
                status,
                "invalid_request",
                "The request's Content-Type is not supported",
            ),
            status if status.is_client_error() => {
                let description = if detail.is_empty() {
                    status
                        .canonical_reason()
                        .unwrap_or("Bad Request")
                        .to_owned()
                } else {
                    detail
                };
                ApiError::new(status, "invalid_request", description)
            }
            _ => ApiError::internal(if detail.is_empty() {
                format!("HTTP {status} without a cause")
            } else {
                detail
            }),
        }
    }

    /// An internal failure: logged here with its detail, answered with a generic body.
    pub(crate) fn internal(error: impl std::fmt::Display) -> Self {
        tracing::error!(%error, "internal error");
        ApiError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "server_error",
            "Internal server error",
        )
    }
}

impl From<crate::db::StoreError> for ApiError {
    fn from(error: crate::db::StoreError) -> Self {
        ApiError::internal(error)
    }
}

impl ResponseError for ApiError {
    fn status_code(&self) -> StatusCode {
        self.status
    }

    fn error_response(&self) -> HttpResponse {
        let mut body = serde_json::Map::new();
        body.insert("error".to_owned(), self.error.into());
        body.insert(
            "error_description".to_owned(),
            self.description.clone().into(),
        );
        if self.scim {
            body.insert("message".to_owned(), self.description.clone().into());
        }
        for (key, value) in &self.extra {
            body.insert((*key).to_owned(), value.clone());
        }
        let mut response = HttpResponse::build(self.status);
        if self.status == StatusCode::UNAUTHORIZED {
            response.insert_header((
                "WWW-Authenticate",
                format!("Bearer realm=\"UAA/oauth\", error=\"{}\"", self.error),
            ));
        }
        response.json(serde_json::Value::Object(body))
    }
}

/// Re-renders every 4xx/5xx answer that is not an [`ApiError`] of ours — actix's plain-text body
/// limits and extractor failures, its empty 405 for a known path with an unrouted method — as
/// UAA's JSON error body with the same status, so that no client ever sees plain text.
pub(crate) async fn json_error_bodies(
    request: ServiceRequest,
    next: Next<impl MessageBody + 'static>,
) -> Result<ServiceResponse<BoxBody>, actix_web::Error> {
    let method = request.method().clone();
    // Handler and extractor failures arrive as responses carrying their error (actix's resources
    // convert them), so there is no `Err` here to render; holding on to the request instead would
    // break routing, which needs it uniquely owned.
    let response = next.call(request).await?.map_into_boxed_body();
    let status = response.status();
    if !(status.is_client_error() || status.is_server_error()) {
        return Ok(response);
    }
    let cause = response.response().error();
    if cause.is_some_and(|error| error.as_error::<ApiError>().is_some()) {
        return Ok(response);
    }
    let api_error = ApiError::from_framework(status, &method, cause);
    Ok(response.into_response(api_error.error_response()))
}

impl From<diesel::result::Error> for ApiError {
    fn from(error: diesel::result::Error) -> Self {
        ApiError::internal(error)
    }
}
