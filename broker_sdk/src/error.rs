//! Per-operation error enums. Each operation has its own enum because the same situation maps to
//! different answers per endpoint (a missing instance is 410 on deprovision, 404 on fetch and on
//! `last_operation`); the HTTP status and OSB error body of every variant are fixed here, in one
//! place, so a broker cannot answer a code the spec does not define for that endpoint by accident.

use actix_web::http::StatusCode;

use crate::api::ErrorBody;

/// The OSB error codes.
pub const ASYNC_REQUIRED: &str = "AsyncRequired";
pub const CONCURRENCY_ERROR: &str = "ConcurrencyError";
pub const REQUIRES_APP: &str = "RequiresApp";
pub const MAINTENANCE_INFO_CONFLICT: &str = "MaintenanceInfoConflict";

const ASYNC_REQUIRED_TEXT: &str =
    "This service plan requires client support for asynchronous service operations.";
const CONCURRENCY_TEXT: &str = "Another operation for this service instance is in progress.";
const REQUIRES_APP_TEXT: &str =
    "This service supports generation of credentials through binding an application only.";

/// An arbitrary failure: a 4xx or 5xx status and an OSB error body. The escape hatch every
/// operation's error enum has as its `Custom` variant.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Failure {
    status: StatusCode,
    body: ErrorBody,
}

impl Failure {
    /// A failure with `status` (anything outside 400–599 becomes 500) and an error body.
    pub fn new(status: u16, error: Option<&str>, description: impl Into<String>) -> Self {
        let status = StatusCode::from_u16(status)
            .ok()
            .filter(|status| status.is_client_error() || status.is_server_error())
            .unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        Self {
            status,
            body: ErrorBody {
                error: error.map(str::to_owned),
                description: Some(description.into()).filter(|d| !d.is_empty()),
                ..ErrorBody::default()
            },
        }
    }

    /// 501: the broker does not implement this (optional) operation.
    pub fn not_implemented(operation: &str) -> Self {
        Self::new(
            501,
            None,
            format!("This service broker does not implement {operation}."),
        )
    }

    pub fn status(&self) -> u16 {
        self.status.as_u16()
    }

    pub fn body(&self) -> &ErrorBody {
        &self.body
    }

    pub(crate) fn status_code(&self) -> StatusCode {
        self.status
    }

    fn plain(status: StatusCode, error: Option<&str>, description: Option<String>) -> Self {
        Self {
            status,
            body: ErrorBody {
                error: error.map(str::to_owned),
                description: description.filter(|d| !d.is_empty()),
                ..ErrorBody::default()
            },
        }
    }

    fn with_flags(
        mut self,
        instance_usable: Option<bool>,
        update_repeatable: Option<bool>,
    ) -> Self {
        self.body.instance_usable = instance_usable;
        self.body.update_repeatable = update_repeatable;
        self
    }

    pub(crate) fn bad_request(description: impl Into<String>) -> Self {
        Self::plain(StatusCode::BAD_REQUEST, None, Some(description.into()))
    }

    pub(crate) fn unprocessable(error: Option<&str>, description: impl Into<String>) -> Self {
        Self::plain(
            StatusCode::UNPROCESSABLE_ENTITY,
            error,
            Some(description.into()),
        )
    }

    pub(crate) fn internal(description: impl Into<String>) -> Self {
        Self::plain(
            StatusCode::INTERNAL_SERVER_ERROR,
            None,
            Some(description.into()),
        )
    }

    pub(crate) fn async_required() -> Self {
        Self::unprocessable(Some(ASYNC_REQUIRED), ASYNC_REQUIRED_TEXT)
    }

    fn concurrency() -> Self {
        Self::unprocessable(Some(CONCURRENCY_ERROR), CONCURRENCY_TEXT)
    }

    pub(crate) fn maintenance_info_conflict(description: impl Into<String>) -> Self {
        Self::unprocessable(Some(MAINTENANCE_INFO_CONFLICT), description)
    }

    /// 410 with `{}`: what deprovision, unbind and a poll of a finished delete answer for a
    /// resource that is not there.
    fn gone() -> Self {
        Self::plain(StatusCode::GONE, None, None)
    }

    fn not_found(description: Option<String>) -> Self {
        Self::plain(StatusCode::NOT_FOUND, None, description)
    }

    fn conflict(description: Option<String>) -> Self {
        Self::plain(StatusCode::CONFLICT, None, description)
    }
}

impl std::fmt::Display for Failure {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(formatter, "{}", self.status)?;
        if let Some(error) = &self.body.error {
            write!(formatter, " {error}")?;
        }
        if let Some(description) = &self.body.description {
            write!(formatter, ": {description}")?;
        }
        Ok(())
    }
}

impl std::error::Error for Failure {}

/// Errors of `GET /v2/catalog`.
#[derive(Debug, thiserror::Error)]
pub enum CatalogError {
    /// 500.
    #[error("internal error: {0}")]
    Internal(String),
    #[error("{0}")]
    Custom(Failure),
}

/// Errors of provision (`PUT /v2/service_instances/:id`).
#[derive(Debug, thiserror::Error)]
pub enum ProvisionError {
    /// 400: malformed or invalid request (e.g. bad parameters).
    #[error("bad request: {0}")]
    BadRequest(String),
    /// 409: an instance with this id exists (or is being provisioned) with other attributes.
    #[error("conflict: {0}")]
    Conflict(String),
    /// 422 `AsyncRequired`: this plan can only be provisioned asynchronously.
    #[error("asynchronous provisioning required")]
    AsyncRequired,
    /// 422 `ConcurrencyError`: another operation on this instance is running.
    #[error("concurrent operation in progress")]
    ConcurrencyError,
    /// 422 `MaintenanceInfoConflict`.
    #[error("maintenance info conflict: {0}")]
    MaintenanceInfoConflict(String),
    /// 422 without an error code: the request is understood but cannot be honoured.
    #[error("unprocessable: {0}")]
    Unprocessable(String),
    /// 500.
    #[error("internal error: {0}")]
    Internal(String),
    #[error("{0}")]
    Custom(Failure),
}

/// Errors of update (`PATCH /v2/service_instances/:id`). On any error the broker must not have
/// applied any of the changes.
#[derive(Debug, thiserror::Error)]
pub enum UpdateError {
    /// 400.
    #[error("bad request: {0}")]
    BadRequest(String),
    /// 404: no such instance (the spec defines no code for this case; 404 is the honest one).
    #[error("not found: {0}")]
    NotFound(String),
    /// 422 without an error code: e.g. this plan change is not supported.
    #[error("unprocessable: {0}")]
    Unprocessable(String),
    /// 422 `AsyncRequired`.
    #[error("asynchronous update required")]
    AsyncRequired,
    /// 422 `ConcurrencyError`.
    #[error("concurrent operation in progress")]
    ConcurrencyError,
    /// 422 `MaintenanceInfoConflict`.
    #[error("maintenance info conflict: {0}")]
    MaintenanceInfoConflict(String),
    /// 500 with the update's usability flags.
    #[error("update failed: {description}")]
    Failed {
        description: String,
        instance_usable: Option<bool>,
        update_repeatable: Option<bool>,
    },
    /// 500.
    #[error("internal error: {0}")]
    Internal(String),
    #[error("{0}")]
    Custom(Failure),
}

/// Errors of deprovision (`DELETE /v2/service_instances/:id`).
#[derive(Debug, thiserror::Error)]
pub enum DeprovisionError {
    /// 400.
    #[error("bad request: {0}")]
    BadRequest(String),
    /// 410 `{}`: no such instance; the platform treats this as success.
    #[error("instance does not exist")]
    Gone,
    /// 422 `AsyncRequired`.
    #[error("asynchronous deprovisioning required")]
    AsyncRequired,
    /// 422 `ConcurrencyError`.
    #[error("concurrent operation in progress")]
    ConcurrencyError,
    /// 500 with `instance_usable`.
    #[error("deprovision failed: {description}")]
    Failed {
        description: String,
        instance_usable: Option<bool>,
    },
    /// 500.
    #[error("internal error: {0}")]
    Internal(String),
    #[error("{0}")]
    Custom(Failure),
}

/// Errors of the instance and binding `last_operation` polls.
#[derive(Debug, thiserror::Error)]
pub enum LastOperationError {
    /// 400 (the platform marks the operation failed with this description).
    #[error("bad request: {0}")]
    BadRequest(String),
    /// 404: no such instance or binding.
    #[error("not found")]
    NotFound,
    /// 410 `{}`: the resource is gone — only valid while the platform polls a delete, which it
    /// then treats as succeeded.
    #[error("gone")]
    Gone,
    /// 500.
    #[error("internal error: {0}")]
    Internal(String),
    #[error("{0}")]
    Custom(Failure),
}

/// Errors of bind (`PUT …/service_bindings/:binding_id`).
#[derive(Debug, thiserror::Error)]
pub enum BindError {
    /// 400.
    #[error("bad request: {0}")]
    BadRequest(String),
    /// 404: the instance does not exist.
    #[error("instance not found: {0}")]
    InstanceNotFound(String),
    /// 409: a binding with this id exists with other attributes.
    #[error("conflict: {0}")]
    Conflict(String),
    /// 422 `RequiresApp`: only app bindings are supported and the request had no app guid.
    #[error("binding requires an app")]
    RequiresApp,
    /// 422 `AsyncRequired`.
    #[error("asynchronous binding required")]
    AsyncRequired,
    /// 422 `ConcurrencyError`.
    #[error("concurrent operation in progress")]
    ConcurrencyError,
    /// 422 without an error code.
    #[error("unprocessable: {0}")]
    Unprocessable(String),
    /// 500.
    #[error("internal error: {0}")]
    Internal(String),
    #[error("{0}")]
    Custom(Failure),
}

/// Errors of unbind (`DELETE …/service_bindings/:binding_id`).
#[derive(Debug, thiserror::Error)]
pub enum UnbindError {
    /// 400.
    #[error("bad request: {0}")]
    BadRequest(String),
    /// 410 `{}`: no such binding; the platform treats this as success.
    #[error("binding does not exist")]
    Gone,
    /// 422 `AsyncRequired`.
    #[error("asynchronous unbinding required")]
    AsyncRequired,
    /// 422 `ConcurrencyError`.
    #[error("concurrent operation in progress")]
    ConcurrencyError,
    /// 500.
    #[error("internal error: {0}")]
    Internal(String),
    #[error("{0}")]
    Custom(Failure),
}

/// Errors of fetch instance (`GET /v2/service_instances/:id`).
#[derive(Debug, thiserror::Error)]
pub enum GetInstanceError {
    /// 400.
    #[error("bad request: {0}")]
    BadRequest(String),
    /// 404: no such instance, or it is still being provisioned.
    #[error("not found")]
    NotFound,
    /// 422 `ConcurrencyError`: the instance is being updated.
    #[error("instance is being updated")]
    ConcurrencyError,
    /// 500.
    #[error("internal error: {0}")]
    Internal(String),
    #[error("{0}")]
    Custom(Failure),
}

/// Errors of fetch binding (`GET …/service_bindings/:binding_id`).
#[derive(Debug, thiserror::Error)]
pub enum GetBindingError {
    /// 400.
    #[error("bad request: {0}")]
    BadRequest(String),
    /// 404: no such binding, or it is still being created.
    #[error("not found")]
    NotFound,
    /// 500.
    #[error("internal error: {0}")]
    Internal(String),
    #[error("{0}")]
    Custom(Failure),
}

impl From<CatalogError> for Failure {
    fn from(error: CatalogError) -> Self {
        match error {
            CatalogError::Internal(description) => Failure::internal(description),
            CatalogError::Custom(failure) => failure,
        }
    }
}

impl From<ProvisionError> for Failure {
    fn from(error: ProvisionError) -> Self {
        match error {
            ProvisionError::BadRequest(description) => Failure::bad_request(description),
            ProvisionError::Conflict(description) => Failure::conflict(Some(description)),
            ProvisionError::AsyncRequired => Failure::async_required(),
            ProvisionError::ConcurrencyError => Failure::concurrency(),
            ProvisionError::MaintenanceInfoConflict(description) => {
                Failure::maintenance_info_conflict(description)
            }
            ProvisionError::Unprocessable(description) => Failure::unprocessable(None, description),
            ProvisionError::Internal(description) => Failure::internal(description),
            ProvisionError::Custom(failure) => failure,
        }
    }
}

impl From<UpdateError> for Failure {
    fn from(error: UpdateError) -> Self {
        match error {
            UpdateError::BadRequest(description) => Failure::bad_request(description),
            UpdateError::NotFound(description) => Failure::not_found(Some(description)),
            UpdateError::Unprocessable(description) => Failure::unprocessable(None, description),
            UpdateError::AsyncRequired => Failure::async_required(),
            UpdateError::ConcurrencyError => Failure::concurrency(),
            UpdateError::MaintenanceInfoConflict(description) => {
                Failure::maintenance_info_conflict(description)
            }
            UpdateError::Failed {
                description,
                instance_usable,
                update_repeatable,
            } => Failure::internal(description).with_flags(instance_usable, update_repeatable),
            UpdateError::Internal(description) => Failure::internal(description),
            UpdateError::Custom(failure) => failure,
        }
    }
}

impl From<DeprovisionError> for Failure {
    fn from(error: DeprovisionError) -> Self {
        match error {
            DeprovisionError::BadRequest(description) => Failure::bad_request(description),
            DeprovisionError::Gone => Failure::gone(),
            DeprovisionError::AsyncRequired => Failure::async_required(),
            DeprovisionError::ConcurrencyError => Failure::concurrency(),
            DeprovisionError::Failed {
                description,
                instance_usable,
            } => Failure::internal(description).with_flags(instance_usable, None),
            DeprovisionError::Internal(description) => Failure::internal(description),
            DeprovisionError::Custom(failure) => failure,
        }
    }
}

impl From<LastOperationError> for Failure {
    fn from(error: LastOperationError) -> Self {
        match error {
            LastOperationError::BadRequest(description) => Failure::bad_request(description),
            LastOperationError::NotFound => Failure::not_found(None),
            LastOperationError::Gone => Failure::gone(),
            LastOperationError::Internal(description) => Failure::internal(description),
            LastOperationError::Custom(failure) => failure,
        }
    }
}

impl From<BindError> for Failure {
    fn from(error: BindError) -> Self {
        match error {
            BindError::BadRequest(description) => Failure::bad_request(description),
            BindError::InstanceNotFound(description) => Failure::not_found(Some(description)),
            BindError::Conflict(description) => Failure::conflict(Some(description)),
            BindError::RequiresApp => Failure::unprocessable(Some(REQUIRES_APP), REQUIRES_APP_TEXT),
            BindError::AsyncRequired => Failure::async_required(),
            BindError::ConcurrencyError => Failure::concurrency(),
            BindError::Unprocessable(description) => Failure::unprocessable(None, description),
            BindError::Internal(description) => Failure::internal(description),
            BindError::Custom(failure) => failure,
        }
    }
}

impl From<UnbindError> for Failure {
    fn from(error: UnbindError) -> Self {
        match error {
            UnbindError::BadRequest(description) => Failure::bad_request(description),
            UnbindError::Gone => Failure::gone(),
            UnbindError::AsyncRequired => Failure::async_required(),
            UnbindError::ConcurrencyError => Failure::concurrency(),
            UnbindError::Internal(description) => Failure::internal(description),
            UnbindError::Custom(failure) => failure,
        }
    }
}

impl From<GetInstanceError> for Failure {
    fn from(error: GetInstanceError) -> Self {
        match error {
            GetInstanceError::BadRequest(description) => Failure::bad_request(description),
            GetInstanceError::NotFound => Failure::not_found(None),
            GetInstanceError::ConcurrencyError => Failure::concurrency(),
            GetInstanceError::Internal(description) => Failure::internal(description),
            GetInstanceError::Custom(failure) => failure,
        }
    }
}

impl From<GetBindingError> for Failure {
    fn from(error: GetBindingError) -> Self {
        match error {
            GetBindingError::BadRequest(description) => Failure::bad_request(description),
            GetBindingError::NotFound => Failure::not_found(None),
            GetBindingError::Internal(description) => Failure::internal(description),
            GetBindingError::Custom(failure) => failure,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statuses_follow_the_endpoint_not_the_situation() {
        assert_eq!(Failure::from(DeprovisionError::Gone).status(), 410);
        assert_eq!(Failure::from(UnbindError::Gone).status(), 410);
        assert_eq!(Failure::from(LastOperationError::NotFound).status(), 404);
        assert_eq!(Failure::from(GetInstanceError::NotFound).status(), 404);
        let requires_app = Failure::from(BindError::RequiresApp);
        assert_eq!(requires_app.status(), 422);
        assert_eq!(requires_app.body().error.as_deref(), Some(REQUIRES_APP));
        let failed = Failure::from(UpdateError::Failed {
            description: "disk full".into(),
            instance_usable: Some(true),
            update_repeatable: Some(false),
        });
        assert_eq!(failed.status(), 500);
        assert_eq!(failed.body().update_repeatable, Some(false));
    }

    #[test]
    fn custom_failures_are_always_errors() {
        assert_eq!(Failure::new(200, None, "ok?").status(), 500);
        assert_eq!(Failure::new(302, None, "moved").status(), 500);
        assert_eq!(Failure::new(429, None, "slow down").status(), 429);
    }
}
