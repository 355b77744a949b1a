//! Errors: `UaaError` for starting and administering the server, `ApiError` for HTTP responses in
//! UAA's JSON shapes (`{"error":..,"error_description":..}`).

use actix_web::http::StatusCode;
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

impl From<diesel::result::Error> for ApiError {
    fn from(error: diesel::result::Error) -> Self {
        ApiError::internal(error)
    }
}
