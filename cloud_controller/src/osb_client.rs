//! The Open Service Broker API client of the Cloud Controller: one HTTP request per broker
//! operation with CC's headers (Basic auth sent pre-emptively, `X-Broker-API-Version`,
//! `X-Broker-API-Originating-Identity`, a fresh `X-Broker-API-Request-Identity`), a timeout, and
//! CC's interpretation of every answer (`response_parser.rb`): which statuses succeed, which are
//! in progress, which error a user sees ("Service broker error: …") and whether the failure may
//! have left an orphan at the broker that must be deleted (orphan mitigation).

use std::time::Duration;

use base64::Engine;
use serde_json::{json, Map, Value};

use crate::error::{ApiError, ErrorKind};

/// The OSB API version sent on every request.
pub const BROKER_API_VERSION: &str = "2.17";

/// Longest `operation` a broker may return.
const MAX_OPERATION_CHARS: usize = 10_000;

/// Where a broker is and how to authenticate to it.
#[derive(Clone)]
pub struct BrokerEndpoint {
    /// Base URL (no trailing slash needed).
    pub url: String,
    /// Basic-auth user.
    pub username: String,
    /// Basic-auth password.
    pub password: String,
}

impl std::fmt::Debug for BrokerEndpoint {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter
            .debug_struct("BrokerEndpoint")
            .field("url", &self.url)
            .field("username", &self.username)
            .field("password", &"<hidden>")
            .finish()
    }
}

/// A failed broker request: the error the user sees, and whether the broker may hold a
/// resource CC does not know about (CC then deletes it: orphan mitigation).
#[derive(Debug, Clone)]
pub struct BrokerError {
    /// The catalog error.
    pub error: ApiError,
    /// Orphan mitigation is needed (only ever set for provision and bind).
    pub orphan: bool,
}

impl BrokerError {
    fn new(kind: ErrorKind, detail: impl Into<String>, orphan: bool) -> Self {
        let mut error = ApiError::plain(kind);
        error.detail = detail.into();
        BrokerError { error, orphan }
    }

    fn plain(kind: ErrorKind, orphan: bool) -> Self {
        BrokerError {
            error: ApiError::plain(kind),
            orphan,
        }
    }
}

/// A successful answer of a mutating request.
#[derive(Debug, Clone)]
pub enum Outcome {
    /// Finished; the broker's body (an object, `{}` when it sent none that matters).
    Done(Map<String, Value>),
    /// Accepted (202): poll `last_operation` with this `operation`.
    InProgress(Option<String>),
}

/// `state` of a last operation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OperationState {
    /// `in progress`
    InProgress,
    /// `succeeded`
    Succeeded,
    /// `failed`
    Failed,
}

/// A `last_operation` answer.
#[derive(Debug, Clone)]
pub struct LastOperation {
    /// The state.
    pub state: OperationState,
    /// The broker's description, when it gave one.
    pub description: Option<String>,
    /// `Retry-After` in whole seconds (CC reads it with `to_i`: an HTTP-date is 0).
    pub retry_after: Option<u64>,
}

/// The operations whose answers are interpreted differently.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Operation {
    Catalog,
    Provision,
    Update,
    Deprovision,
    Bind,
    Unbind,
    Fetch,
}

/// What a binding's offering allows in a bind answer.
#[derive(Debug, Clone, Copy, Default)]
pub struct BindRules {
    /// `requires` contains `syslog_drain`.
    pub syslog_drain: bool,
    /// `requires` contains `volume_mount`.
    pub volume_mount: bool,
    /// `bindings_retrievable` (needed for asynchronous bindings).
    pub bindings_retrievable: bool,
}

struct RawAnswer {
    status: u16,
    reason: String,
    body: String,
    retry_after: Option<u64>,
}

impl RawAnswer {
    fn json(&self) -> Option<Value> {
        serde_json::from_str(&self.body).ok()
    }

    fn object(&self) -> Option<Map<String, Value>> {
        match self.json() {
            Some(Value::Object(object)) => Some(object),
            _ => None,
        }
    }

    fn description(&self) -> Option<String> {
        self.object()?
            .get("description")
            .map(|description| match description {
                Value::String(text) => text.clone(),
                other => other.to_string(),
            })
    }

    fn error_key(&self) -> Option<String> {
        self.object()?
            .get("error")
            .and_then(Value::as_str)
            .map(str::to_owned)
    }

    fn status_text(&self) -> String {
        format!("{} {}", self.status, self.reason)
    }
}

/// CC truncates broker messages over 16 KiB to 8 KiB with a note.
fn truncate_message(message: String) -> String {
    if message.len() <= 1 << 14 {
        return message;
    }
    let mut end = 1 << 13;
    while !message.is_char_boundary(end) {
        end -= 1;
    }
    format!(
        "{}...This message has been truncated due to size. To read the full message, check the broker's logs",
        &message[..end]
    )
}

fn bad_response(answer: &RawAnswer, orphan: bool) -> BrokerError {
    let message = match answer.description() {
        Some(description) => format!("Service broker error: {description}"),
        None => format!(
            "The service broker returned an invalid response. Status Code: {}, Body: {}",
            answer.status_text(),
            answer.body
        ),
    };
    BrokerError::new(
        ErrorKind::ServiceBrokerBadResponse,
        truncate_message(message),
        orphan,
    )
}

fn request_rejected(answer: &RawAnswer) -> BrokerError {
    let message = match answer.description() {
        Some(description) => format!("Service broker error: {description}"),
        None => format!(
            "The service broker rejected the request. Status Code: {}, Body: {}",
            answer.status_text(),
            answer.body
        ),
    };
    BrokerError::new(
        ErrorKind::ServiceBrokerRequestRejected,
        truncate_message(message),
        false,
    )
}

fn malformed(answer: &RawAnswer, what: &str, orphan: bool) -> BrokerError {
    BrokerError::new(
        ErrorKind::ServiceBrokerResponseMalformed,
        truncate_message(format!(
            "The service broker returned an invalid response: {what}, broker returned '{}'",
            answer.body
        )),
        orphan,
    )
}

/// Answers every operation treats alike: 401, 408, other 4xx, 5xx.
fn common_failure(answer: &RawAnswer, orphan_on_5xx: bool) -> BrokerError {
    match answer.status {
        401 => BrokerError::plain(ErrorKind::ServiceBrokerApiAuthenticationFailed, false),
        408 => BrokerError::plain(ErrorKind::ServiceBrokerApiTimeout, false),
        400..=499 => request_rejected(answer),
        _ => bad_response(answer, orphan_on_5xx),
    }
}

/// Checks the optional fields of a provision/update answer (`dashboard_url`, `operation`,
/// `metadata`).
fn instance_body_valid(object: &Map<String, Value>) -> bool {
    let dashboard_ok = matches!(
        object.get("dashboard_url"),
        None | Some(Value::Null) | Some(Value::String(_))
    );
    let operation_ok = match object.get("operation") {
        None | Some(Value::Null) => true,
        Some(Value::String(operation)) => operation.chars().count() <= MAX_OPERATION_CHARS,
        Some(_) => false,
    };
    let metadata_ok = match object.get("metadata") {
        None | Some(Value::Null) => true,
        Some(Value::Object(metadata)) => ["labels", "attributes"].iter().all(|key| {
            matches!(
                metadata.get(*key),
                None | Some(Value::Null) | Some(Value::Object(_))
            )
        }),
        Some(_) => false,
    };
    dashboard_ok && operation_ok && metadata_ok
}

fn operation_of(object: &Map<String, Value>) -> Option<String> {
    object
        .get("operation")
        .and_then(Value::as_str)
        .map(str::to_owned)
}

/// The broker HTTP client.
#[derive(Clone)]
pub struct OsbClient {
    http: reqwest::Client,
    api_info_location: String,
}

impl OsbClient {
    /// A client whose connect and whole-request timeout is `timeout` (CC's
    /// `broker_client_timeout_seconds`).
    pub fn new(timeout: Duration, external_url: &str) -> Result<OsbClient, String> {
        let http = reqwest::Client::builder()
            .timeout(timeout)
            .connect_timeout(timeout)
            .build()
            .map_err(|error| format!("broker HTTP client: {error}"))?;
        Ok(OsbClient {
            http,
            api_info_location: format!("{}/v2/info", external_url.trim_end_matches('/')),
        })
    }

    #[allow(clippy::too_many_arguments)]
    async fn send(
        &self,
        broker: &BrokerEndpoint,
        method: reqwest::Method,
        path: &str,
        query: &[(&str, String)],
        body: Option<&Value>,
        user_guid: Option<&str>,
        operation: Operation,
    ) -> Result<RawAnswer, BrokerError> {
        let url = format!("{}{path}", broker.url.trim_end_matches('/'));
        let mut request = self
            .http
            .request(method.clone(), &url)
            .basic_auth(&broker.username, Some(&broker.password))
            .header("X-Broker-API-Version", BROKER_API_VERSION)
            .header(
                "X-Broker-API-Request-Identity",
                uuid::Uuid::new_v4().to_string(),
            )
            .header("X-Api-Info-Location", &self.api_info_location)
            .header("Accept", "application/json");
        if !query.is_empty() {
            request = request.query(query);
        }
        if let Some(user_guid) = user_guid {
            let identity = json!({"user_id": user_guid}).to_string();
            request = request.header(
                "X-Broker-API-Originating-Identity",
                format!(
                    "cloudfoundry {}",
                    base64::engine::general_purpose::STANDARD.encode(identity)
                ),
            );
        }
        if let Some(body) = body {
            request = request
                .header("Content-Type", "application/json")
                .body(body.to_string());
        }
        let orphan_on_timeout = matches!(operation, Operation::Provision | Operation::Bind);
        let response = request.send().await.map_err(|error| {
            tracing::warn!(%error, %url, %method, "service broker request failed");
            if error.is_timeout() {
                BrokerError::plain(ErrorKind::ServiceBrokerApiTimeout, orphan_on_timeout)
            } else {
                BrokerError::plain(ErrorKind::ServiceBrokerApiUnreachable, false)
            }
        })?;
        let status = response.status();
        let retry_after = response
            .headers()
            .get(reqwest::header::RETRY_AFTER)
            .and_then(|value| value.to_str().ok())
            .map(|value| {
                // Ruby's `to_i`: leading digits, 0 when there are none.
                let digits: String = value
                    .trim()
                    .chars()
                    .take_while(char::is_ascii_digit)
                    .collect();
                digits.parse::<u64>().unwrap_or(0)
            });
        let body = response.text().await.map_err(|error| {
            tracing::warn!(%error, %url, "reading a service broker answer failed");
            if error.is_timeout() {
                BrokerError::plain(ErrorKind::ServiceBrokerApiTimeout, orphan_on_timeout)
            } else {
                BrokerError::plain(ErrorKind::ServiceBrokerApiUnreachable, false)
            }
        })?;
        tracing::debug!(%url, %method, status = status.as_u16(), "service broker answered");
        Ok(RawAnswer {
            status: status.as_u16(),
            reason: status.canonical_reason().unwrap_or("").to_owned(),
            body,
            retry_after,
        })
    }

    /// `GET /v2/catalog`: the catalog object, or the registration error CC reports.
    pub async fn catalog(
        &self,
        broker: &BrokerEndpoint,
        user_guid: Option<&str>,
    ) -> Result<Map<String, Value>, BrokerError> {
        let answer = self
            .send(
                broker,
                reqwest::Method::GET,
                "/v2/catalog",
                &[],
                None,
                user_guid,
                Operation::Catalog,
            )
            .await?;
        match answer.status {
            200 => answer
                .object()
                .ok_or_else(|| BrokerError::plain(ErrorKind::ServiceBrokerRequestMalformed, false)),
            401 => Err(BrokerError::plain(
                ErrorKind::ServiceBrokerApiAuthenticationFailed,
                false,
            )),
            400..=499 => Err(BrokerError {
                error: ApiError::with_args(
                    ErrorKind::ServiceBrokerRequestRejected,
                    &[&answer.status_text()],
                ),
                orphan: false,
            }),
            _ => Err(bad_response(&answer, false)),
        }
    }

    /// `PUT /v2/service_instances/:id?accepts_incomplete=…` (`false` only for v2 requests without
    /// `accepts_incomplete=true`).
    pub async fn provision(
        &self,
        broker: &BrokerEndpoint,
        instance_guid: &str,
        body: &Value,
        accepts_incomplete: bool,
        user_guid: Option<&str>,
    ) -> Result<Outcome, BrokerError> {
        let answer = self
            .send(
                broker,
                reqwest::Method::PUT,
                &format!("/v2/service_instances/{instance_guid}"),
                &[("accepts_incomplete", accepts_incomplete.to_string())],
                Some(body),
                user_guid,
                Operation::Provision,
            )
            .await?;
        mutation_outcome(&answer, Operation::Provision, BindRules::default())
    }

    /// `PATCH /v2/service_instances/:id?accepts_incomplete=…`.
    pub async fn update(
        &self,
        broker: &BrokerEndpoint,
        instance_guid: &str,
        body: &Value,
        accepts_incomplete: bool,
        user_guid: Option<&str>,
    ) -> Result<Outcome, BrokerError> {
        let answer = self
            .send(
                broker,
                reqwest::Method::PATCH,
                &format!("/v2/service_instances/{instance_guid}"),
                &[("accepts_incomplete", accepts_incomplete.to_string())],
                Some(body),
                user_guid,
                Operation::Update,
            )
            .await?;
        mutation_outcome(&answer, Operation::Update, BindRules::default())
    }

    /// `DELETE /v2/service_instances/:id?accepts_incomplete=…&plan_id=…&service_id=…`.
    pub async fn deprovision(
        &self,
        broker: &BrokerEndpoint,
        instance_guid: &str,
        ids: (&str, &str),
        accepts_incomplete: bool,
        user_guid: Option<&str>,
    ) -> Result<Outcome, BrokerError> {
        let answer = self
            .send(
                broker,
                reqwest::Method::DELETE,
                &format!("/v2/service_instances/{instance_guid}"),
                &delete_query(ids, accepts_incomplete),
                None,
                user_guid,
                Operation::Deprovision,
            )
            .await?;
        mutation_outcome(&answer, Operation::Deprovision, BindRules::default())
    }

    /// `PUT /v2/service_instances/:id/service_bindings/:binding?accepts_incomplete=…`.
    #[allow(clippy::too_many_arguments)]
    pub async fn bind(
        &self,
        broker: &BrokerEndpoint,
        instance_guid: &str,
        binding_guid: &str,
        body: &Value,
        rules: BindRules,
        accepts_incomplete: bool,
        user_guid: Option<&str>,
    ) -> Result<Outcome, BrokerError> {
        let answer = self
            .send(
                broker,
                reqwest::Method::PUT,
                &format!("/v2/service_instances/{instance_guid}/service_bindings/{binding_guid}"),
                &[("accepts_incomplete", accepts_incomplete.to_string())],
                Some(body),
                user_guid,
                Operation::Bind,
            )
            .await?;
        mutation_outcome(&answer, Operation::Bind, rules)
    }

    /// `DELETE /v2/service_instances/:id/service_bindings/:binding?…`.
    pub async fn unbind(
        &self,
        broker: &BrokerEndpoint,
        instance_guid: &str,
        binding_guid: &str,
        ids: (&str, &str),
        accepts_incomplete: bool,
        user_guid: Option<&str>,
    ) -> Result<Outcome, BrokerError> {
        let answer = self
            .send(
                broker,
                reqwest::Method::DELETE,
                &format!("/v2/service_instances/{instance_guid}/service_bindings/{binding_guid}"),
                &delete_query(ids, accepts_incomplete),
                None,
                user_guid,
                Operation::Unbind,
            )
            .await?;
        mutation_outcome(&answer, Operation::Unbind, BindRules::default())
    }

    /// `GET …/last_operation?operation=…&plan_id=…&service_id=…` of an instance (no binding) or a
    /// binding. `deleting`: a 410 means the resource is gone (success); otherwise it is ignored.
    pub async fn last_operation(
        &self,
        broker: &BrokerEndpoint,
        instance_guid: &str,
        binding_guid: Option<&str>,
        ids: (&str, &str),
        operation: Option<&str>,
        deleting: bool,
    ) -> Result<LastOperation, BrokerError> {
        let path = match binding_guid {
            Some(binding) => format!(
                "/v2/service_instances/{instance_guid}/service_bindings/{binding}/last_operation"
            ),
            None => format!("/v2/service_instances/{instance_guid}/last_operation"),
        };
        let mut query = Vec::new();
        if let Some(operation) = operation {
            query.push(("operation", operation.to_owned()));
        }
        query.push(("plan_id", ids.1.to_owned()));
        query.push(("service_id", ids.0.to_owned()));
        let answer = self
            .send(
                broker,
                reqwest::Method::GET,
                &path,
                &query,
                None,
                None,
                Operation::Fetch,
            )
            .await?;
        let retry_after = answer.retry_after;
        match answer.status {
            200 => {
                let object = answer.object().ok_or_else(|| {
                    malformed(&answer, "expected valid JSON object in body", false)
                })?;
                let state = match object.get("state").and_then(Value::as_str) {
                    Some("in progress") => OperationState::InProgress,
                    Some("succeeded") => OperationState::Succeeded,
                    Some("failed") => OperationState::Failed,
                    _ => {
                        return Err(malformed(
                            &answer,
                            "expected state was 'succeeded', 'failed' or 'in progress'",
                            false,
                        ))
                    }
                };
                Ok(LastOperation {
                    state,
                    description: object
                        .get("description")
                        .and_then(Value::as_str)
                        .map(str::to_owned),
                    retry_after,
                })
            }
            410 => Ok(LastOperation {
                state: if deleting {
                    OperationState::Succeeded
                } else {
                    OperationState::InProgress
                },
                description: None,
                retry_after,
            }),
            400 => Ok(LastOperation {
                state: OperationState::Failed,
                description: answer.description(),
                retry_after,
            }),
            _ => Err(common_failure(&answer, false)),
        }
    }

    /// `GET /v2/service_instances/:id` or `…/service_bindings/:binding` (fetch).
    pub async fn fetch(
        &self,
        broker: &BrokerEndpoint,
        instance_guid: &str,
        binding_guid: Option<&str>,
        ids: (&str, &str),
        user_guid: Option<&str>,
    ) -> Result<Map<String, Value>, BrokerError> {
        let path = match binding_guid {
            Some(binding) => {
                format!("/v2/service_instances/{instance_guid}/service_bindings/{binding}")
            }
            None => format!("/v2/service_instances/{instance_guid}"),
        };
        let query = [
            ("plan_id", ids.1.to_owned()),
            ("service_id", ids.0.to_owned()),
        ];
        let answer = self
            .send(
                broker,
                reqwest::Method::GET,
                &path,
                &query,
                None,
                user_guid,
                Operation::Fetch,
            )
            .await?;
        match answer.status {
            200 => answer
                .object()
                .ok_or_else(|| malformed(&answer, "expected valid JSON object in body", false)),
            _ => Err(common_failure(&answer, false)),
        }
    }
}

fn delete_query(ids: (&str, &str), accepts_incomplete: bool) -> Vec<(&'static str, String)> {
    vec![
        ("accepts_incomplete", accepts_incomplete.to_string()),
        ("plan_id", ids.1.to_owned()),
        ("service_id", ids.0.to_owned()),
    ]
}

/// CC's matrix for provision, update, deprovision, bind and unbind answers.
fn mutation_outcome(
    answer: &RawAnswer,
    operation: Operation,
    rules: BindRules,
) -> Result<Outcome, BrokerError> {
    let creates = matches!(operation, Operation::Provision | Operation::Bind);
    let deletes = matches!(operation, Operation::Deprovision | Operation::Unbind);
    match answer.status {
        200 | 201 => {
            if answer.status == 201 && !creates {
                return Err(bad_response(answer, false));
            }
            // A 200 that cannot be read is not orphan-mitigated (the broker says it already
            // had the resource); a malformed 201 is.
            let orphan = creates && answer.status == 201;
            let Some(object) = answer.object() else {
                if deletes && answer.body.trim().is_empty() {
                    return Ok(Outcome::Done(Map::new()));
                }
                return Err(malformed(
                    answer,
                    "expected valid JSON object in body",
                    orphan,
                ));
            };
            match operation {
                Operation::Provision | Operation::Update if !instance_body_valid(&object) => {
                    Err(malformed(
                        answer,
                        "the response body does not match the schema",
                        orphan,
                    ))
                }
                Operation::Bind => {
                    check_bind_body(answer, &object, rules, orphan)?;
                    Ok(Outcome::Done(object))
                }
                _ => Ok(Outcome::Done(object)),
            }
        }
        202 => {
            let object = answer.object().unwrap_or_default();
            if matches!(operation, Operation::Provision | Operation::Update)
                && !instance_body_valid(&object)
            {
                return Err(malformed(
                    answer,
                    "the response body does not match the schema",
                    creates,
                ));
            }
            if let Some(Value::String(operation_text)) = object.get("operation") {
                if operation_text.chars().count() > MAX_OPERATION_CHARS {
                    return Err(malformed(answer, "operation is too long", creates));
                }
            }
            if operation == Operation::Bind && !rules.bindings_retrievable {
                return Err(BrokerError::new(
                    ErrorKind::ServiceBindingInvalid,
                    "The service binding is invalid: The broker responded asynchronously but does not support fetching binding data",
                    true,
                ));
            }
            Ok(Outcome::InProgress(operation_of(&object)))
        }
        409 if creates => {
            let message = answer.description().map_or_else(
                || "Resource conflict".to_owned(),
                |description| truncate_message(format!("Service broker error: {description}")),
            );
            Err(BrokerError::new(
                ErrorKind::ServiceBrokerConflict,
                message,
                false,
            ))
        }
        410 if deletes => Ok(Outcome::Done(Map::new())),
        422 => {
            let key = answer.error_key();
            match key.as_deref() {
                Some("AsyncRequired") => Err(BrokerError::plain(ErrorKind::AsyncRequired, false)),
                Some("ConcurrencyError") if operation != Operation::Update => {
                    Err(BrokerError::plain(ErrorKind::ConcurrencyError, false))
                }
                Some("RequiresApp") if operation == Operation::Bind => {
                    Err(BrokerError::plain(ErrorKind::AppRequired, false))
                }
                Some("MaintenanceInfoConflict")
                    if matches!(operation, Operation::Provision | Operation::Update) =>
                {
                    let mut error = ApiError::plain(ErrorKind::MaintenanceInfoConflict);
                    if let Some(description) = answer.description() {
                        error.detail = format!("Service broker error: {description}");
                    }
                    Err(BrokerError {
                        error,
                        orphan: false,
                    })
                }
                _ if operation == Operation::Update => Err(request_rejected(answer)),
                _ => Err(bad_response(answer, creates)),
            }
        }
        401 | 408 => Err(common_failure(answer, false)),
        400..=499 if !matches!(answer.status, 409 | 410) => Err(request_rejected(answer)),
        _ => Err(bad_response(answer, creates)),
    }
}

/// Bind answers: `credentials` an object; `syslog_drain_url` only for `syslog_drain` offerings;
/// `volume_mounts` only for `volume_mount` offerings.
fn check_bind_body(
    answer: &RawAnswer,
    object: &Map<String, Value>,
    rules: BindRules,
    orphan: bool,
) -> Result<(), BrokerError> {
    if !matches!(
        object.get("credentials"),
        None | Some(Value::Null) | Some(Value::Object(_))
    ) {
        return Err(malformed(
            answer,
            "expected credentials to be a valid JSON object",
            orphan,
        ));
    }
    let has_drain =
        matches!(object.get("syslog_drain_url"), Some(Value::String(url)) if !url.is_empty());
    if has_drain && !rules.syslog_drain {
        return Err(BrokerError::plain(
            ErrorKind::InvalidLoggingServiceBinding,
            true,
        ));
    }
    let has_mounts =
        matches!(object.get("volume_mounts"), Some(Value::Array(mounts)) if !mounts.is_empty());
    if has_mounts && !rules.volume_mount {
        return Err(malformed(
            answer,
            "The service is attempting to supply volume mounts from your application, but is not registered as a volume mount service. Please contact the service provider.",
            true,
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn answer(status: u16, body: &str) -> RawAnswer {
        RawAnswer {
            status,
            reason: reqwest::StatusCode::from_u16(status)
                .ok()
                .and_then(|status| status.canonical_reason())
                .unwrap_or("")
                .to_owned(),
            body: body.to_owned(),
            retry_after: None,
        }
    }

    fn failure(status: u16, body: &str, operation: Operation) -> (ErrorKind, bool, String) {
        let error = mutation_outcome(&answer(status, body), operation, BindRules::default())
            .expect_err("a failure");
        (error.error.kind, error.orphan, error.error.detail)
    }

    /// CC's response matrix and orphan-mitigation table (osb.md §2.6, §2.8) for provision.
    #[test]
    fn provision_answers() {
        use Operation::Provision;
        assert!(matches!(
            mutation_outcome(&answer(201, "{}"), Provision, BindRules::default()),
            Ok(Outcome::Done(_))
        ));
        assert!(matches!(
            mutation_outcome(&answer(202, r#"{"operation":"x"}"#), Provision, BindRules::default()),
            Ok(Outcome::InProgress(Some(operation))) if operation == "x"
        ));
        let cases: &[(u16, &str, ErrorKind, bool)] = &[
            (
                200,
                "junk",
                ErrorKind::ServiceBrokerResponseMalformed,
                false,
            ),
            (201, "junk", ErrorKind::ServiceBrokerResponseMalformed, true),
            (
                201,
                r#"{"dashboard_url": 3}"#,
                ErrorKind::ServiceBrokerResponseMalformed,
                true,
            ),
            (204, "", ErrorKind::ServiceBrokerBadResponse, true),
            (400, "{}", ErrorKind::ServiceBrokerRequestRejected, false),
            (
                401,
                "{}",
                ErrorKind::ServiceBrokerApiAuthenticationFailed,
                false,
            ),
            (408, "{}", ErrorKind::ServiceBrokerApiTimeout, false),
            (409, "{}", ErrorKind::ServiceBrokerConflict, false),
            (410, "{}", ErrorKind::ServiceBrokerBadResponse, true),
            (
                422,
                r#"{"error":"AsyncRequired"}"#,
                ErrorKind::AsyncRequired,
                false,
            ),
            (
                422,
                r#"{"error":"ConcurrencyError"}"#,
                ErrorKind::ConcurrencyError,
                false,
            ),
            (
                422,
                r#"{"error":"MaintenanceInfoConflict"}"#,
                ErrorKind::MaintenanceInfoConflict,
                false,
            ),
            (
                422,
                r#"{"error":"Other"}"#,
                ErrorKind::ServiceBrokerBadResponse,
                true,
            ),
            (
                500,
                r#"{"description":"boom"}"#,
                ErrorKind::ServiceBrokerBadResponse,
                true,
            ),
        ];
        for (status, body, kind, orphan) in cases {
            let (got_kind, got_orphan, _) = failure(*status, body, Provision);
            assert_eq!((got_kind, got_orphan), (*kind, *orphan), "{status} {body}");
        }
        assert_eq!(
            failure(500, r#"{"description":"boom"}"#, Provision).2,
            "Service broker error: boom"
        );
        assert_eq!(
            failure(503, "down", Provision).2,
            "The service broker returned an invalid response. Status Code: 503 Service Unavailable, Body: down"
        );
        assert_eq!(failure(409, "{}", Provision).2, "Resource conflict");
    }

    #[test]
    fn update_delete_and_bind_answers() {
        let (kind, orphan, _) = failure(201, "{}", Operation::Update);
        assert_eq!((kind, orphan), (ErrorKind::ServiceBrokerBadResponse, false));
        let (kind, _, _) = failure(422, r#"{"error":"Other"}"#, Operation::Update);
        assert_eq!(kind, ErrorKind::ServiceBrokerRequestRejected);
        let (_, orphan, _) = failure(500, "{}", Operation::Update);
        assert!(!orphan);
        assert!(matches!(
            mutation_outcome(
                &answer(410, ""),
                Operation::Deprovision,
                BindRules::default()
            ),
            Ok(Outcome::Done(_))
        ));
        let (_, orphan, _) = failure(500, "{}", Operation::Deprovision);
        assert!(!orphan, "deletes are never orphan-mitigated");
        let (kind, _, _) = failure(422, r#"{"error":"ConcurrencyError"}"#, Operation::Unbind);
        assert_eq!(kind, ErrorKind::ConcurrencyError);

        let drain = mutation_outcome(
            &answer(201, r#"{"credentials":{},"syslog_drain_url":"syslog://x"}"#),
            Operation::Bind,
            BindRules::default(),
        )
        .expect_err("not a logging service");
        assert_eq!(
            (drain.error.kind, drain.orphan),
            (ErrorKind::InvalidLoggingServiceBinding, true)
        );
        let rules = BindRules {
            syslog_drain: true,
            ..BindRules::default()
        };
        assert!(mutation_outcome(
            &answer(201, r#"{"credentials":{},"syslog_drain_url":"syslog://x"}"#),
            Operation::Bind,
            rules,
        )
        .is_ok());
        let not_retrievable =
            mutation_outcome(&answer(202, "{}"), Operation::Bind, BindRules::default())
                .expect_err("async binds need bindings_retrievable");
        assert_eq!(not_retrievable.error.kind, ErrorKind::ServiceBindingInvalid);
        let (kind, _, _) = failure(422, r#"{"error":"RequiresApp"}"#, Operation::Bind);
        assert_eq!(kind, ErrorKind::AppRequired);
        let (kind, orphan, _) = failure(201, r#"{"credentials":"x"}"#, Operation::Bind);
        assert_eq!(
            (kind, orphan),
            (ErrorKind::ServiceBrokerResponseMalformed, true)
        );
    }

    #[test]
    fn long_messages_are_truncated_like_cc() {
        let long = "x".repeat(20_000);
        let message = truncate_message(long);
        assert!(message.len() < 9_000);
        assert!(message.ends_with("check the broker's logs"));
    }
}
