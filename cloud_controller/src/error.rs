//! The one error catalog of the Cloud Controller (CC's `errors/v2.yml` shape: code, name, HTTP
//! status, message template) and its rendering as v3 or v2 JSON.
//!
//! Handlers return [`ApiError`]; `ResponseError` renders the v3 body and stores the error in the
//! response so the request middleware can re-render it as a v2 body on `/v2` paths and log 5xx
//! details with the request id. 5xx details never reach the client.

use actix_web::http::StatusCode;
use actix_web::{HttpResponse, ResponseError};
use serde_json::json;

macro_rules! error_catalog {
    ($($variant:ident = ($code:expr, $status:expr, $template:expr);)*) => {
        /// Every error the Cloud Controller can answer with.
        #[derive(Debug, Clone, Copy, PartialEq, Eq)]
        pub enum ErrorKind { $($variant,)* }

        impl ErrorKind {
            /// CC's numeric error code.
            pub fn code(self) -> u32 { match self { $(Self::$variant => $code,)* } }
            /// CC's error name (the title without `CF-`).
            pub fn name(self) -> &'static str { match self { $(Self::$variant => stringify!($variant),)* } }
            /// HTTP status.
            pub fn status(self) -> u16 { match self { $(Self::$variant => $status,)* } }
            /// Message template; `%s` is replaced by the argument.
            pub fn template(self) -> &'static str { match self { $(Self::$variant => $template,)* } }
        }
    };
}

error_catalog! {
    InvalidAuthToken = (1000, 401, "Invalid Auth Token");
    MessageParseError = (1001, 400, "Request invalid due to parse error: %s");
    InvalidRelation = (1002, 400, "%s");
    BadRequest = (1004, 400, "Bad request: %s");
    NotFound = (10000, 404, "Unknown request");
    ServerError = (10001, 500, "An unknown error occurred.");
    NotAuthenticated = (10002, 401, "Authentication error");
    NotAuthorized = (10003, 403, "You are not authorized to perform the requested action");
    InvalidRequest = (10004, 400, "The request is invalid");
    BadQueryParameter = (10005, 400, "The query parameter is invalid: %s");
    AssociationNotEmpty = (10006, 400, "Please delete the %s associations for your %s.");
    InsufficientScope = (10007, 403, "Your token lacks the necessary scopes to access this resource.");
    UnprocessableEntity = (10008, 422, "%s");
    ResourceNotFound = (10010, 404, "%s");
    ServiceUnavailable = (10015, 503, "%s");
    OrgSuspended = (10017, 403, "The organization is suspended");
    UserInvalid = (20001, 400, "The user info is invalid: %s");
    UaaIdTaken = (20002, 400, "The UAA ID is taken: %s");
    UserNotFound = (20003, 404, "The user could not be found: %s");
    UaaUnavailable = (20004, 503, "The UAA service is currently unavailable");
    UserIsInMultipleOrigins = (20006, 400, "The user exists in multiple origins. Specify an origin for the requested user from: %s");
    UserWithOriginNotFound = (20007, 404, "The user could not be found, %s");
    OrganizationInvalid = (30001, 400, "The organization info is invalid: %s");
    OrganizationNameTaken = (30002, 400, "The organization name is taken: %s");
    OrganizationNotFound = (30003, 404, "The organization could not be found: %s");
    LastManagerInOrg = (30004, 403, "Cannot remove last Org Manager in org");
    LastBillingManagerInOrg = (30005, 403, "Cannot remove last Billing Manager in org");
    LastUserInOrg = (30006, 403, "Cannot remove last User in org");
    OrganizationAlreadySet = (30007, 400, "Cannot change organization");
    SpaceInvalid = (40001, 400, "The app space info is invalid: %s");
    SpaceNameTaken = (40002, 400, "The app space name is taken: %s");
    SpaceUserNotInOrg = (40003, 400, "The app space and the user are not in the same org: %s");
    SpaceNotFound = (40004, 404, "The app space could not be found: %s");
    DomainNotFound = (130002, 404, "The domain could not be found: %s");
    QuotaDefinitionNotFound = (240001, 404, "Quota Definition could not be found: %s");
    QuotaDefinitionNameTaken = (240002, 400, "Quota Definition is taken: %s");
    QuotaDefinitionInvalid = (240003, 400, "Quota Definition is invalid: %s");
    QuotaDefinitionMemoryLimitInvalid = (240004, 400, "Quota Definition memory limit cannot be less than -1");
    StackNotFound = (250003, 404, "The stack could not be found: %s");
    FeatureFlagNotFound = (330000, 404, "The feature flag could not be found: %s");
    FeatureFlagInvalid = (330001, 400, "The feature flag is invalid: %s");
    FeatureDisabled = (330002, 403, "Feature Disabled: %s");
    UnableToPerform = (10009, 400, "%s could not be completed: %s");
    ServiceInstanceInvalid = (60003, 400, "The service instance is invalid: %s");
    ServiceInstanceNameTaken = (60002, 400, "The service instance name is taken: %s");
    ServiceInstanceNotFound = (60004, 404, "The service instance could not be found: %s");
    AsyncServiceInstanceOperationInProgress = (60016, 409, "An operation for service instance %s is in progress.");
    ServiceBindingInvalid = (90001, 400, "The service binding is invalid: %s");
    ServiceBindingDifferentSpaces = (90002, 400, "The app and the service are not in the same app space.");
    ServiceBindingAppServiceTaken = (90003, 400, "%s");
    ServiceBindingNotFound = (90004, 404, "The service binding could not be found: %s");
    UnbindableService = (90005, 400, "The service instance doesn't support binding.");
    InvalidLoggingServiceBinding = (90006, 502, "The service is attempting to stream logs from your application, but is not registered as a logging service. Please contact the service provider.");
    ServiceFetchBindingParametersNotSupported = (90007, 400, "This service does not support fetching service binding parameters.");
    AsyncServiceBindingOperationInProgress = (90008, 409, "An operation for the service binding between app %s and service instance %s is in progress.");
    AppNotFound = (100004, 404, "The app could not be found: %s");
    ServicePlanInvalid = (110001, 400, "The service plan is invalid: %s");
    ServicePlanNotFound = (110003, 404, "The service plan could not be found: %s");
    ServicePlanNotUpdateable = (110004, 400, "The service does not support changing plans.");
    ServiceNotFound = (120003, 404, "The service could not be found: %s");
    ServiceFetchInstanceParametersNotSupported = (120004, 400, "This service does not support fetching service instance parameters.");
    ServicePlanVisibilityInvalid = (260001, 400, "Service plan visibility is invalid: %s");
    ServicePlanVisibilityAlreadyExists = (260002, 400, "This combination of ServicePlan and Organization is already taken: %s");
    ServicePlanVisibilityNotFound = (260003, 404, "The service plan visibility could not be found: %s");
    ServiceBrokerInvalid = (270001, 400, "Service broker is invalid: %s");
    ServiceBrokerNameTaken = (270002, 400, "The service broker name is taken");
    ServiceBrokerUrlTaken = (270003, 400, "The service broker url is taken: %s");
    ServiceBrokerNotFound = (270004, 404, "The service broker was not found: %s");
    ServiceBrokerUrlInvalid = (270011, 400, "%s is not a valid URL");
    ServiceBrokerUrlBasicAuthNotSupported = (270016, 400, "User name and password fields in the broker URI are not supported");
    ServiceBrokerNotRemovable = (270010, 400, "Can not remove brokers that have associated service instances: %s");
    ServiceBrokerCatalogInvalid = (270012, 502, "Service broker catalog is invalid: %s");
    ServiceBrokerAsyncRequired = (270014, 400, "This service plan requires client support for asynchronous service operations.");
    ServiceBrokerRespondedAsyncWhenNotAllowed = (270017, 502, "The service broker responded asynchronously to a request, but the accepts_incomplete query parameter was false or not given.");
    ServiceBrokerConcurrencyError = (270018, 422, "The service broker could not perform this operation in parallel with other running operations");
    ServiceBrokerCatalogIncompatible = (270019, 502, "Service broker catalog is incompatible: %s");
    ServiceBrokerRequestRejected = (270020, 502, "The service broker rejected the request. Status Code: %s. Please check that the URL points to a valid service broker.");
    ServiceBrokerRequestMalformed = (270021, 502, "The service broker returned an invalid response: expected valid JSON object in body. Please check that the URL points to a valid service broker.");
    ServiceBrokerSyncFailed = (270022, 502, "Encountered an error while attempting to sync cloud controller with the service broker's catalog: %s");
    JobTimeout = (290006, 524, "The job execution has timed out.");
    UserProvidedServiceInstanceNotFound = (340001, 404, "The service instance could not be found: %s");
    ServiceKeyNameTaken = (360001, 400, "The service key name is taken: %s");
    ServiceKeyInvalid = (360002, 400, "The service key is invalid: %s");
    ServiceKeyNotFound = (360003, 404, "The service key could not be found: %s");
    ServiceKeyNotSupported = (360004, 400, "%s");
    SpaceDeletionFailed = (290008, 502, "Deletion of space %s failed because one or more resources within could not be deleted.\n\n%s");
    NonrecursiveSpaceDeletionFailed = (290011, 400, "Resource inside space %s must first be deleted, or specify recursive delete.");
    OrganizationDeletionFailed = (290010, 502, "Deletion of organization %s failed because one or more resources within could not be deleted.\n\n%s");
    MaintenanceInfoConflict = (390009, 422, "maintenance_info.version requested is invalid. Please ensure the catalog is up to date and you are providing a version supported by this service plan.");
    // CC's broker client errors (`HttpRequestError`/`HttpResponseError` subclasses) are not in
    // errors/v2.yml: CC renders them with code 10001, the class name and the broker's message.
    ServiceBrokerBadResponse = (10001, 502, "%s");
    ServiceBrokerApiTimeout = (10001, 504, "The request to the service broker timed out");
    ServiceBrokerApiUnreachable = (10001, 502, "The service broker could not be reached");
    ServiceBrokerApiAuthenticationFailed = (10001, 502, "Authentication with the service broker failed. Double-check that the username and password are correct.");
    ServiceBrokerResponseMalformed = (10001, 502, "The service broker returned an invalid response: %s");
    ServiceBrokerConflict = (10001, 409, "%s");
    AppRequired = (10001, 400, "This service supports generation of credentials through binding an application only.");
    AsyncRequired = (10001, 400, "This service plan requires client support for asynchronous service operations.");
    ConcurrencyError = (10001, 422, "The service broker could not perform this operation in parallel with other running operations");
}

/// An error answer: a catalog entry plus its rendered detail.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{}: {detail}", kind.name())]
pub struct ApiError {
    /// Catalog entry.
    pub kind: ErrorKind,
    /// Rendered message (the client sees it unless the status is 5xx).
    pub detail: String,
    /// Extra text for the log only (5xx causes).
    pub internal: Option<String>,
}

impl ApiError {
    /// The catalog entry with `%s` replaced by `arg` (each `%s` in turn when several are given).
    pub fn with_args(kind: ErrorKind, args: &[&str]) -> Self {
        let mut detail = String::new();
        let mut args = args.iter();
        let mut rest = kind.template();
        while let Some(position) = rest.find("%s") {
            detail.push_str(&rest[..position]);
            detail.push_str(args.next().copied().unwrap_or(""));
            rest = &rest[position + 2..];
        }
        detail.push_str(rest);
        ApiError {
            kind,
            detail,
            internal: None,
        }
    }

    /// The catalog entry with its template as the detail.
    pub fn plain(kind: ErrorKind) -> Self {
        Self::with_args(kind, &[])
    }

    /// `CF-ResourceNotFound` with CC's "<Resource> not found" detail.
    pub fn not_found(resource: &str) -> Self {
        Self::with_args(
            ErrorKind::ResourceNotFound,
            &[&format!("{resource} not found")],
        )
    }

    /// `CF-UnprocessableEntity` with the given detail.
    pub fn unprocessable(detail: impl Into<String>) -> Self {
        ApiError {
            kind: ErrorKind::UnprocessableEntity,
            detail: detail.into(),
            internal: None,
        }
    }

    /// `CF-BadQueryParameter` with the given argument.
    pub fn bad_query(detail: impl AsRef<str>) -> Self {
        Self::with_args(ErrorKind::BadQueryParameter, &[detail.as_ref()])
    }

    /// `CF-MessageParseError`.
    pub fn parse(detail: impl AsRef<str>) -> Self {
        Self::with_args(ErrorKind::MessageParseError, &[detail.as_ref()])
    }

    /// `CF-NotAuthorized`.
    pub fn forbidden() -> Self {
        Self::plain(ErrorKind::NotAuthorized)
    }

    /// `CF-ServerError`, keeping the cause for the log.
    pub fn internal(cause: impl std::fmt::Display) -> Self {
        let mut error = Self::plain(ErrorKind::ServerError);
        error.internal = Some(cause.to_string());
        error
    }

    /// The catalog error for an error answer actix produced itself rather than a handler of ours
    /// (an unrouted method, a body limit or extractor without our error handler): `status` is
    /// what actix chose, `cause` the error it carried, if any.
    pub fn from_framework(status: StatusCode, cause: Option<&actix_web::Error>) -> Self {
        let detail = cause.map_or_else(
            || status.canonical_reason().unwrap_or("").to_owned(),
            ToString::to_string,
        );
        match status {
            StatusCode::NOT_FOUND | StatusCode::METHOD_NOT_ALLOWED => {
                Self::plain(ErrorKind::NotFound)
            }
            StatusCode::UNAUTHORIZED => Self::plain(ErrorKind::NotAuthenticated),
            StatusCode::FORBIDDEN => Self::forbidden(),
            status if status.is_client_error() => Self::parse(detail),
            _ => Self::internal(detail),
        }
    }

    /// HTTP status of this error.
    pub fn http_status(&self) -> StatusCode {
        StatusCode::from_u16(self.kind.status()).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR)
    }

    /// The detail a client may see: `CF-ServerError` (an internal failure) is generic; every
    /// other 5xx of the catalog carries a public message (UAA or a service broker failed).
    fn public_detail(&self) -> String {
        if self.kind == ErrorKind::ServerError {
            self.kind.template().to_owned()
        } else {
            self.detail.clone()
        }
    }

    /// The v3 body `{"errors":[{"code","title","detail"}]}`.
    pub fn v3_body(&self) -> serde_json::Value {
        json!({"errors": [{
            "code": self.kind.code(),
            "title": format!("CF-{}", self.kind.name()),
            "detail": self.public_detail(),
        }]})
    }

    /// The v2 body `{"code","description","error_code"}`.
    pub fn v2_body(&self) -> serde_json::Value {
        json!({
            "code": self.kind.code(),
            "description": self.public_detail(),
            "error_code": format!("CF-{}", self.kind.name()),
        })
    }

    /// A v2-rendered response.
    pub fn v2_response(&self) -> HttpResponse {
        HttpResponse::build(self.http_status()).json(self.v2_body())
    }
}

impl ResponseError for ApiError {
    fn status_code(&self) -> StatusCode {
        self.http_status()
    }

    fn error_response(&self) -> HttpResponse {
        HttpResponse::build(self.http_status()).json(self.v3_body())
    }
}

impl From<diesel::result::Error> for ApiError {
    fn from(error: diesel::result::Error) -> Self {
        ApiError::internal(format!("database: {error}"))
    }
}

impl From<diesel::r2d2::PoolError> for ApiError {
    fn from(error: diesel::r2d2::PoolError) -> Self {
        ApiError::internal(format!("database pool: {error}"))
    }
}

/// True when a diesel error is a unique-constraint violation.
pub(crate) fn is_unique_violation(error: &diesel::result::Error) -> bool {
    matches!(
        error,
        diesel::result::Error::DatabaseError(diesel::result::DatabaseErrorKind::UniqueViolation, _)
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn templates_fill_arguments_in_order() {
        let error =
            ApiError::with_args(ErrorKind::AssociationNotEmpty, &["spaces", "organization"]);
        assert_eq!(
            error.detail,
            "Please delete the spaces associations for your organization."
        );
        assert_eq!(ApiError::not_found("Space").detail, "Space not found");
    }

    #[test]
    fn server_errors_hide_their_detail() {
        let error = ApiError::internal("secret stuff");
        assert_eq!(
            error.v3_body()["errors"][0]["detail"],
            "An unknown error occurred."
        );
        assert_eq!(error.v2_body()["error_code"], "CF-ServerError");
    }
}
