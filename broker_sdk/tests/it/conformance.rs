//! Conformance matrices in the manner of the osb-checker and of the Cloud Foundry acceptance
//! tests' scriptable broker, run over real HTTP against the SDK's server.
//!
//! - `Scripted` is a broker whose answer each row selects through the instance id (instance
//!   operations) or the binding id (binding operations), so that every outcome and every error
//!   variant the trait can express reaches the wire once, and whose log of what it was handed
//!   lets rows check what the framework passed on (unknown fields, decoded identities, `None`
//!   plans) — or that a refused request never reached it.
//! - `Ledger` is a small spec-faithful stateful broker whose asynchronous operations advance one
//!   step per poll, so the Cloud Controller's sequences (provision, poll, bind, fetch, unbind,
//!   deprovision, poll to 410) run deterministically, without sleeping.
//!
//! Every row asserts the exact status, the exact body (or, for framework-written errors, that
//! the body has only `error`/`description` and what the description says) and, where it
//! matters, headers. A check collects every failing row before failing, so one run shows the
//! whole picture.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use base64::Engine as _;
use broker_sdk::api::{BindingMetadata, Endpoint, VolumeMount};
use broker_sdk::{
    BindError, BindOutcome, BindRequest, Binding, BindingDetails, Catalog, CatalogError,
    DeleteOutcome, DeprovisionError, DeprovisionRequest, Failure, GetBindingError,
    GetBindingRequest, GetInstanceError, GetInstanceRequest, InstanceDetails, InstanceMetadata,
    InstanceResponse, LastBindingOperationRequest, LastOperation, LastOperationError,
    LastOperationRequest, MaintenanceInfo, ProvisionError, ProvisionOutcome, ProvisionRequest,
    RequestMeta, ServiceBroker, UnbindError, UnbindRequest, UpdateError, UpdateOutcome,
    UpdateRequest,
};
use reqwest::Method;
use serde_json::{json, Map, Value};

use crate::support::{Reply, PASSWORD, USERNAME};

// ---------------------------------------------------------------------------------------------
// The catalog both brokers serve.

const SERVICE: &str = "conf-service";
/// Updateable to other plans, bindings rotatable, maintenance_info 2.0.0.
const PLAN: &str = "conf-plan";
/// The `Ledger` answers every operation on instances of this plan asynchronously.
const ASYNC_PLAN: &str = "conf-async";
/// `plan_updateable: false`, `binding_rotatable` absent.
const FIXED_PLAN: &str = "conf-fixed";
const UNBINDABLE_PLAN: &str = "conf-unbindable";
/// An offering without `requires` and without `bindings_retrievable`.
const OTHER_SERVICE: &str = "conf-other";
const OTHER_PLAN: &str = "conf-other-plan";

const DASHBOARD: &str = "https://dashboard.example/instances/1";
const ASYNC_REQUIRED_TEXT: &str =
    "This service plan requires client support for asynchronous service operations.";
const CONCURRENCY_TEXT: &str = "Another operation for this service instance is in progress.";
const REQUIRES_APP_TEXT: &str =
    "This service supports generation of credentials through binding an application only.";

fn catalog() -> Catalog {
    serde_json::from_value(json!({
        "services": [
            {
                "id": SERVICE, "name": "conformance", "description": "answers as each row asks",
                "bindable": true, "instances_retrievable": true, "bindings_retrievable": true,
                "requires": ["syslog_drain", "route_forwarding", "volume_mount"],
                "plans": [
                    {"id": PLAN, "name": "standard", "description": "synchronous",
                     "plan_updateable": true, "binding_rotatable": true,
                     "maintenance_info": {"version": "2.0.0"}},
                    {"id": ASYNC_PLAN, "name": "async", "description": "asynchronous",
                     "plan_updateable": true},
                    {"id": FIXED_PLAN, "name": "fixed", "description": "no plan changes"},
                    {"id": UNBINDABLE_PLAN, "name": "unbindable", "description": "no bindings",
                     "bindable": false}
                ],
                "x-vendor-catalog-field": {"kept": true}
            },
            {
                "id": OTHER_SERVICE, "name": "other", "description": "plain offering",
                "bindable": true,
                "plans": [{"id": OTHER_PLAN, "name": "other", "description": "plain plan"}]
            }
        ]
    }))
    .expect("conformance catalog")
}

// ---------------------------------------------------------------------------------------------
// Request bodies as the Cloud Controller sends them.

fn provision_body(service_id: &str, plan_id: &str) -> Value {
    json!({
        "service_id": service_id, "plan_id": plan_id,
        "organization_guid": "org-guid", "space_guid": "space-guid",
        "context": {"platform": "cloudfoundry", "organization_guid": "org-guid",
                    "space_guid": "space-guid", "organization_name": "org",
                    "space_name": "space", "instance_name": "db",
                    "instance_annotations": {"example.com/team": "a"}},
        "parameters": {"size": 1},
        "maintenance_info": {"version": "2.0.0"},
        "x-vendor-request-field": [1, 2]
    })
}

fn update_body(plan_id: &str, previous_plan_id: &str) -> Value {
    json!({
        "service_id": SERVICE, "plan_id": plan_id,
        "previous_values": {"plan_id": previous_plan_id, "service_id": SERVICE,
                            "organization_id": "org-guid", "space_id": "space-guid",
                            "x-previous-vendor": 1},
        "context": {"platform": "cloudfoundry", "organization_guid": "org-guid",
                    "space_guid": "space-guid", "instance_name": "renamed"},
        "parameters": {}
    })
}

fn bind_body(service_id: &str, plan_id: &str) -> Value {
    json!({
        "service_id": service_id, "plan_id": plan_id, "app_guid": "app-guid",
        "bind_resource": {"app_guid": "app-guid", "space_guid": "space-guid",
                          "app_annotations": {"example.com/x": "y"}},
        "context": {"platform": "cloudfoundry", "organization_guid": "org-guid",
                    "space_guid": "space-guid"},
        "parameters": {"role": "ro"}
    })
}

fn with(mut body: Value, key: &str, value: Value) -> Value {
    body[key] = value;
    body
}

fn without(mut body: Value, key: &str) -> Value {
    body.as_object_mut().unwrap().remove(key);
    body
}

fn ids_query(service_id: &str, plan_id: &str) -> String {
    format!("service_id={service_id}&plan_id={plan_id}")
}

fn instance_path(instance_id: &str) -> String {
    format!("/v2/service_instances/{instance_id}")
}

fn binding_path(binding_id: &str) -> String {
    format!("/v2/service_instances/bound-instance/service_bindings/{binding_id}")
}

fn identity_header(platform: &str, value: &Value) -> String {
    let encoded = base64::engine::general_purpose::STANDARD.encode(value.to_string());
    format!("{platform} {encoded}")
}

fn basic(username: &str, password: &str) -> String {
    let encoded =
        base64::engine::general_purpose::STANDARD.encode(format!("{username}:{password}"));
    format!("Basic {encoded}")
}

// ---------------------------------------------------------------------------------------------
// The scripted broker.

/// What the broker was handed, as JSON so that rows can point into it.
fn seen(
    operation: &str,
    key: &str,
    accepts_incomplete: Option<bool>,
    body: Value,
    meta: &RequestMeta,
    resolved: Value,
) -> Value {
    json!({
        "operation": operation,
        "key": key,
        "accepts_incomplete": accepts_incomplete,
        "body": body,
        "meta": {
            "api_version": meta.api_version.to_string(),
            "platform": meta.originating_identity.as_ref().map(|i| i.platform.clone()),
            "identity": meta.originating_identity.as_ref().map(|i| Value::Object(i.value.clone())),
            "user_id": meta.originating_identity.as_ref().and_then(|i| i.user_id().map(str::to_owned)),
            "request_identity": meta.request_identity,
        },
        "resolved": resolved,
    })
}

#[derive(Default)]
struct Scripted {
    seen: Mutex<Vec<Value>>,
}

impl Scripted {
    fn record(&self, seen: Value) {
        self.seen.lock().unwrap().push(seen);
    }

    fn take(&self) -> Vec<Value> {
        std::mem::take(&mut *self.seen.lock().unwrap())
    }
}

fn instance_metadata() -> InstanceMetadata {
    let mut labels = Map::new();
    labels.insert("tier".to_owned(), json!("gold"));
    let mut attributes = Map::new();
    attributes.insert("region".to_owned(), json!("eu"));
    InstanceMetadata { labels, attributes }
}

fn object(value: Value) -> Map<String, Value> {
    match value {
        Value::Object(map) => map,
        other => panic!("not an object: {other}"),
    }
}

fn credentials() -> Map<String, Value> {
    object(json!({"uri": "conf://user:pw@host/db", "username": "user", "password": "pw"}))
}

fn full_binding() -> Binding {
    Binding {
        credentials: Some(credentials()),
        syslog_drain_url: Some("syslog-tls://logs.example:6514".to_owned()),
        route_service_url: Some("https://route-service.example".to_owned()),
        volume_mounts: Some(vec![VolumeMount {
            driver: "nfsdriver".to_owned(),
            container_dir: "/data".to_owned(),
            mode: "rw".to_owned(),
            device_type: "shared".to_owned(),
            device: json!({"volume_id": "vol-1", "mount_config": {"uid": "1000"}}),
            extra: Map::new(),
        }]),
        endpoints: Some(vec![Endpoint {
            host: "db.example".to_owned(),
            ports: vec!["5432".to_owned(), "9000-9010".to_owned()],
            protocol: Some("tcp".to_owned()),
        }]),
        metadata: Some(BindingMetadata {
            expires_at: Some("2030-01-01T00:00:00.0Z".to_owned()),
            renew_before: Some("2029-12-01T00:00:00.0Z".to_owned()),
        }),
        extra: object(json!({"x-vendor-binding-field": "kept"})),
    }
}

fn full_binding_json() -> Value {
    json!({
        "credentials": {"uri": "conf://user:pw@host/db", "username": "user", "password": "pw"},
        "syslog_drain_url": "syslog-tls://logs.example:6514",
        "route_service_url": "https://route-service.example",
        "volume_mounts": [{"driver": "nfsdriver", "container_dir": "/data", "mode": "rw",
                           "device_type": "shared",
                           "device": {"volume_id": "vol-1", "mount_config": {"uid": "1000"}}}],
        "endpoints": [{"host": "db.example", "ports": ["5432", "9000-9010"], "protocol": "tcp"}],
        "metadata": {"expires_at": "2030-01-01T00:00:00.0Z", "renew_before": "2029-12-01T00:00:00.0Z"},
        "x-vendor-binding-field": "kept"
    })
}

/// The answer of a `last_operation` poll, shared by instances and bindings.
fn scripted_last_operation(
    key: &str,
    operation: Option<&str>,
    service_id: Option<&str>,
    plan_id: Option<&str>,
) -> Result<LastOperation, LastOperationError> {
    match key {
        "in-progress" => Ok(LastOperation::in_progress(
            "working on it",
            Some(Duration::from_secs(5)),
        )),
        "in-progress-fraction" => Ok(LastOperation::in_progress(
            "almost",
            Some(Duration::from_millis(1200)),
        )),
        "in-progress-no-retry" => Ok(LastOperation::in_progress("working on it", None)),
        "in-progress-retry-now" => Ok(LastOperation::in_progress(
            "working on it",
            Some(Duration::ZERO),
        )),
        "succeeded" => Ok(LastOperation::succeeded("done")),
        "succeeded-no-description" => Ok(LastOperation::succeeded("")),
        "failed" => {
            let mut failed = LastOperation::failed("it broke");
            failed.instance_usable = Some(false);
            failed.update_repeatable = Some(true);
            Ok(failed)
        }
        "echo" => Ok(LastOperation::succeeded(
            json!({"operation": operation, "service_id": service_id, "plan_id": plan_id})
                .to_string(),
        )),
        "bad-request" => Err(LastOperationError::BadRequest(
            "operation unknown".to_owned(),
        )),
        "not-found" => Err(LastOperationError::NotFound),
        "gone" => Err(LastOperationError::Gone),
        "internal" => Err(LastOperationError::Internal("lost track".to_owned())),
        "custom-503" => Err(LastOperationError::Custom(Failure::new(
            503,
            None,
            "come back later",
        ))),
        other => Err(LastOperationError::Internal(format!(
            "no script for {other}"
        ))),
    }
}

impl ServiceBroker for Scripted {
    /// The catalog has no id to select a script by, so rows select it through the request
    /// identity.
    async fn catalog(&self, meta: RequestMeta) -> Result<Catalog, CatalogError> {
        self.record(seen("catalog", "", None, Value::Null, &meta, Value::Null));
        match meta.request_identity.as_deref() {
            Some("catalog-internal") => {
                Err(CatalogError::Internal("catalog store down".to_owned()))
            }
            Some("catalog-custom-503") => Err(CatalogError::Custom(Failure::new(
                503,
                None,
                "catalog refreshing",
            ))),
            Some("catalog-empty") => Ok(Catalog::default()),
            _ => Ok(catalog()),
        }
    }

    async fn provision(
        &self,
        request: ProvisionRequest,
    ) -> Result<ProvisionOutcome, ProvisionError> {
        self.record(seen(
            "provision",
            &request.instance_id,
            Some(request.accepts_incomplete),
            serde_json::to_value(&request.body).unwrap(),
            &request.meta,
            json!({"service": request.service.name, "plan": request.plan.name}),
        ));
        let in_progress = |operation: Option<String>| ProvisionOutcome::InProgress {
            operation,
            dashboard_url: None,
            metadata: None,
        };
        match request.instance_id.as_str() {
            "created" => Ok(ProvisionOutcome::Created(InstanceResponse {
                dashboard_url: Some(DASHBOARD.to_owned()),
                metadata: Some(instance_metadata()),
                extra: Map::new(),
            })),
            "created-empty" => Ok(ProvisionOutcome::Created(InstanceResponse::default())),
            "created-vendor" => Ok(ProvisionOutcome::Created(InstanceResponse {
                extra: object(json!({"x-vendor-response-field": {"a": 1}})),
                ..InstanceResponse::default()
            })),
            "exists" => Ok(ProvisionOutcome::AlreadyExists(InstanceResponse {
                dashboard_url: Some(DASHBOARD.to_owned()),
                ..InstanceResponse::default()
            })),
            "in-progress" => Ok(ProvisionOutcome::InProgress {
                operation: Some("provision-op".to_owned()),
                dashboard_url: Some(DASHBOARD.to_owned()),
                metadata: Some(instance_metadata()),
            }),
            "in-progress-bare" => Ok(in_progress(None)),
            "in-progress-empty-operation" => Ok(in_progress(Some(String::new()))),
            "in-progress-longest-operation" => Ok(in_progress(Some("o".repeat(10_000)))),
            "in-progress-too-long-operation" => Ok(in_progress(Some("o".repeat(10_001)))),
            "bad-request" => Err(ProvisionError::BadRequest("size must be 1-3".to_owned())),
            "conflict" => Err(ProvisionError::Conflict(
                "exists with other attributes".to_owned(),
            )),
            "async-required" => Err(ProvisionError::AsyncRequired),
            "concurrency" => Err(ProvisionError::ConcurrencyError),
            "maintenance" => Err(ProvisionError::MaintenanceInfoConflict(
                "upgrade to 2.0.0 first".to_owned(),
            )),
            "unprocessable" => Err(ProvisionError::Unprocessable("quota reached".to_owned())),
            "internal" => Err(ProvisionError::Internal("disk on fire".to_owned())),
            "custom-503" => Err(ProvisionError::Custom(Failure::new(
                503,
                Some("Unavailable"),
                "come back later",
            ))),
            "custom-200" => Err(ProvisionError::Custom(Failure::new(
                200,
                None,
                "not an error",
            ))),
            other => Err(ProvisionError::Internal(format!("no script for {other}"))),
        }
    }

    async fn update(&self, request: UpdateRequest) -> Result<UpdateOutcome, UpdateError> {
        self.record(seen(
            "update",
            &request.instance_id,
            Some(request.accepts_incomplete),
            serde_json::to_value(&request.body).unwrap(),
            &request.meta,
            json!({"service": request.service.name,
                   "plan": request.plan.as_ref().map(|plan| plan.name.clone())}),
        ));
        match request.instance_id.as_str() {
            "updated" => Ok(UpdateOutcome::Updated(InstanceResponse {
                dashboard_url: Some(DASHBOARD.to_owned()),
                metadata: Some(instance_metadata()),
                extra: Map::new(),
            })),
            "updated-empty" => Ok(UpdateOutcome::Updated(InstanceResponse::default())),
            "in-progress" => Ok(UpdateOutcome::InProgress {
                operation: Some("update-op".to_owned()),
                dashboard_url: None,
                metadata: None,
            }),
            "in-progress-empty-operation" => Ok(UpdateOutcome::InProgress {
                operation: Some(String::new()),
                dashboard_url: Some(DASHBOARD.to_owned()),
                metadata: None,
            }),
            "bad-request" => Err(UpdateError::BadRequest("size must be 1-3".to_owned())),
            "not-found" => Err(UpdateError::NotFound("no such instance".to_owned())),
            "unprocessable" => Err(UpdateError::Unprocessable(
                "cannot shrink below the data size".to_owned(),
            )),
            "async-required" => Err(UpdateError::AsyncRequired),
            "concurrency" => Err(UpdateError::ConcurrencyError),
            "maintenance" => Err(UpdateError::MaintenanceInfoConflict(
                "upgrade to 2.0.0 first".to_owned(),
            )),
            "failed" => Err(UpdateError::Failed {
                description: "resize failed".to_owned(),
                instance_usable: Some(true),
                update_repeatable: Some(false),
            }),
            "internal" => Err(UpdateError::Internal("disk on fire".to_owned())),
            other => Err(UpdateError::Internal(format!("no script for {other}"))),
        }
    }

    async fn deprovision(
        &self,
        request: DeprovisionRequest,
    ) -> Result<DeleteOutcome, DeprovisionError> {
        self.record(seen(
            "deprovision",
            &request.instance_id,
            Some(request.accepts_incomplete),
            json!({"service_id": request.service_id, "plan_id": request.plan_id}),
            &request.meta,
            Value::Null,
        ));
        match request.instance_id.as_str() {
            "deleted" => Ok(DeleteOutcome::Deleted),
            "in-progress" => Ok(DeleteOutcome::InProgress {
                operation: Some("deprovision-op".to_owned()),
            }),
            "in-progress-bare" => Ok(DeleteOutcome::InProgress { operation: None }),
            "bad-request" => Err(DeprovisionError::BadRequest("not now".to_owned())),
            "gone" => Err(DeprovisionError::Gone),
            "async-required" => Err(DeprovisionError::AsyncRequired),
            "concurrency" => Err(DeprovisionError::ConcurrencyError),
            "failed" => Err(DeprovisionError::Failed {
                description: "could not drop".to_owned(),
                instance_usable: Some(false),
            }),
            "internal" => Err(DeprovisionError::Internal("disk on fire".to_owned())),
            other => Err(DeprovisionError::Internal(format!("no script for {other}"))),
        }
    }

    async fn last_operation(
        &self,
        request: LastOperationRequest,
    ) -> Result<LastOperation, LastOperationError> {
        self.record(seen(
            "last_operation",
            &request.instance_id,
            None,
            Value::Null,
            &request.meta,
            Value::Null,
        ));
        scripted_last_operation(
            &request.instance_id,
            request.operation.as_deref(),
            request.service_id.as_deref(),
            request.plan_id.as_deref(),
        )
    }

    async fn get_instance(
        &self,
        request: GetInstanceRequest,
    ) -> Result<InstanceDetails, GetInstanceError> {
        self.record(seen(
            "get_instance",
            &request.instance_id,
            None,
            json!({"service_id": request.service_id, "plan_id": request.plan_id}),
            &request.meta,
            Value::Null,
        ));
        match request.instance_id.as_str() {
            "found" => Ok(InstanceDetails {
                service_id: SERVICE.to_owned(),
                plan_id: PLAN.to_owned(),
                dashboard_url: Some(DASHBOARD.to_owned()),
                parameters: Some(object(json!({"size": 1}))),
                maintenance_info: Some(MaintenanceInfo {
                    version: Some("2.0.0".to_owned()),
                    description: None,
                    extra: Map::new(),
                }),
                metadata: Some(instance_metadata()),
                extra: Map::new(),
            }),
            "found-minimal" => Ok(InstanceDetails {
                service_id: SERVICE.to_owned(),
                plan_id: PLAN.to_owned(),
                ..InstanceDetails::default()
            }),
            "not-found" => Err(GetInstanceError::NotFound),
            "concurrency" => Err(GetInstanceError::ConcurrencyError),
            "bad-request" => Err(GetInstanceError::BadRequest("bad hint".to_owned())),
            "internal" => Err(GetInstanceError::Internal("disk on fire".to_owned())),
            other => Err(GetInstanceError::Internal(format!("no script for {other}"))),
        }
    }

    async fn bind(&self, request: BindRequest) -> Result<BindOutcome, BindError> {
        self.record(seen(
            "bind",
            &request.binding_id,
            Some(request.accepts_incomplete),
            serde_json::to_value(&request.body).unwrap(),
            &request.meta,
            json!({"service": request.service.name, "plan": request.plan.name,
                   "app_guid": request.body.app_guid()}),
        ));
        let credentials_only = Binding {
            credentials: Some(credentials()),
            ..Binding::default()
        };
        match request.binding_id.as_str() {
            "created" => Ok(BindOutcome::Created(credentials_only)),
            "created-full" => Ok(BindOutcome::Created(full_binding())),
            "created-empty" => Ok(BindOutcome::Created(Binding::default())),
            "exists" => Ok(BindOutcome::AlreadyExists(credentials_only)),
            "in-progress" => Ok(BindOutcome::InProgress {
                operation: Some("bind-op".to_owned()),
            }),
            "in-progress-bare" => Ok(BindOutcome::InProgress { operation: None }),
            "syslog" => Ok(BindOutcome::Created(Binding {
                syslog_drain_url: Some("syslog://logs.example:514".to_owned()),
                ..Binding::default()
            })),
            "route-service" => Ok(BindOutcome::Created(Binding {
                route_service_url: Some("https://route-service.example".to_owned()),
                ..Binding::default()
            })),
            "volume" => Ok(BindOutcome::AlreadyExists(Binding {
                volume_mounts: full_binding().volume_mounts,
                ..Binding::default()
            })),
            "bad-request" => Err(BindError::BadRequest("role must be ro or rw".to_owned())),
            "instance-not-found" => Err(BindError::InstanceNotFound("no such instance".to_owned())),
            "conflict" => Err(BindError::Conflict(
                "exists with other parameters".to_owned(),
            )),
            "requires-app" => Err(BindError::RequiresApp),
            "async-required" => Err(BindError::AsyncRequired),
            "concurrency" => Err(BindError::ConcurrencyError),
            "unprocessable" => Err(BindError::Unprocessable("too many bindings".to_owned())),
            "internal" => Err(BindError::Internal("disk on fire".to_owned())),
            other => Err(BindError::Internal(format!("no script for {other}"))),
        }
    }

    async fn unbind(&self, request: UnbindRequest) -> Result<DeleteOutcome, UnbindError> {
        self.record(seen(
            "unbind",
            &request.binding_id,
            Some(request.accepts_incomplete),
            json!({"service_id": request.service_id, "plan_id": request.plan_id,
                   "instance_id": request.instance_id}),
            &request.meta,
            Value::Null,
        ));
        match request.binding_id.as_str() {
            "deleted" => Ok(DeleteOutcome::Deleted),
            "in-progress" => Ok(DeleteOutcome::InProgress {
                operation: Some("unbind-op".to_owned()),
            }),
            "in-progress-bare" => Ok(DeleteOutcome::InProgress { operation: None }),
            "bad-request" => Err(UnbindError::BadRequest("not now".to_owned())),
            "gone" => Err(UnbindError::Gone),
            "async-required" => Err(UnbindError::AsyncRequired),
            "concurrency" => Err(UnbindError::ConcurrencyError),
            "internal" => Err(UnbindError::Internal("disk on fire".to_owned())),
            other => Err(UnbindError::Internal(format!("no script for {other}"))),
        }
    }

    async fn get_binding(
        &self,
        request: GetBindingRequest,
    ) -> Result<BindingDetails, GetBindingError> {
        self.record(seen(
            "get_binding",
            &request.binding_id,
            None,
            json!({"service_id": request.service_id, "plan_id": request.plan_id}),
            &request.meta,
            Value::Null,
        ));
        match request.binding_id.as_str() {
            "found" => Ok(BindingDetails {
                binding: full_binding(),
                parameters: Some(object(json!({"role": "ro"}))),
            }),
            "found-minimal" => Ok(BindingDetails {
                binding: Binding {
                    credentials: Some(credentials()),
                    ..Binding::default()
                },
                parameters: None,
            }),
            "not-found" => Err(GetBindingError::NotFound),
            "bad-request" => Err(GetBindingError::BadRequest("bad hint".to_owned())),
            "internal" => Err(GetBindingError::Internal("disk on fire".to_owned())),
            other => Err(GetBindingError::Internal(format!("no script for {other}"))),
        }
    }

    async fn last_binding_operation(
        &self,
        request: LastBindingOperationRequest,
    ) -> Result<LastOperation, LastOperationError> {
        self.record(seen(
            "last_binding_operation",
            &request.binding_id,
            None,
            Value::Null,
            &request.meta,
            Value::Null,
        ));
        scripted_last_operation(
            &request.binding_id,
            request.operation.as_deref(),
            request.service_id.as_deref(),
            request.plan_id.as_deref(),
        )
    }
}

// ---------------------------------------------------------------------------------------------
// Rows and the check that runs them.

/// What a row expects of the response body.
#[derive(Debug, Clone)]
enum Expect {
    /// Exactly this JSON.
    Exact(Value),
    /// An OSB error body written by the framework: only `error` (exactly this, or absent) and a
    /// non-empty `description` containing this text.
    Error(Option<&'static str>, &'static str),
}

use Expect::{Error as ErrorBody, Exact};

#[derive(Debug, Clone)]
struct Row {
    name: String,
    /// The broker method the request is for (`catalog`, `provision`, …).
    operation: &'static str,
    method: Method,
    path: String,
    body: Option<Vec<u8>>,
    /// Header overrides: `None` removes a default header.
    request_headers: Vec<(&'static str, Option<String>)>,
    status: u16,
    expect: Expect,
    /// Response headers: `Some` must be exactly this, `None` must be absent.
    response_headers: Vec<(&'static str, Option<String>)>,
    /// Whether the broker's method for `operation` runs; `None`: not checked.
    reaches_broker: Option<bool>,
    /// JSON pointers into what the broker was handed (see `seen`) and their expected values.
    handed: Vec<(&'static str, Value)>,
}

impl Row {
    fn new(name: impl Into<String>, operation: &'static str, method: Method, path: String) -> Self {
        Self {
            name: name.into(),
            operation,
            method,
            path,
            body: None,
            request_headers: Vec::new(),
            status: 0,
            expect: Exact(Value::Null),
            response_headers: Vec::new(),
            reaches_broker: None,
            handed: Vec::new(),
        }
    }

    fn get(name: impl Into<String>, operation: &'static str, path: String) -> Self {
        Self::new(name, operation, Method::GET, path)
    }

    fn delete(name: impl Into<String>, operation: &'static str, path: String) -> Self {
        Self::new(name, operation, Method::DELETE, path)
    }

    fn put(name: impl Into<String>, operation: &'static str, path: String, body: &Value) -> Self {
        Self::new(name, operation, Method::PUT, path).raw_body(body.to_string().into_bytes())
    }

    fn patch(name: impl Into<String>, operation: &'static str, path: String, body: &Value) -> Self {
        Self::new(name, operation, Method::PATCH, path).raw_body(body.to_string().into_bytes())
    }

    fn raw_body(mut self, body: Vec<u8>) -> Self {
        self.body = Some(body);
        self
    }

    fn header(mut self, name: &'static str, value: Option<&str>) -> Self {
        self.request_headers.push((name, value.map(str::to_owned)));
        self
    }

    fn answers(mut self, status: u16, expect: Expect) -> Self {
        self.status = status;
        self.expect = expect;
        self
    }

    fn with_response_header(mut self, name: &'static str, value: Option<&str>) -> Self {
        self.response_headers.push((name, value.map(str::to_owned)));
        self
    }

    fn reaches_broker(mut self, reaches: bool) -> Self {
        self.reaches_broker = Some(reaches);
        self
    }

    fn handed(mut self, pointer: &'static str, value: Value) -> Self {
        self.handed.push((pointer, value));
        self.reaches_broker = Some(true);
        self
    }
}

async fn send(client: &reqwest::Client, base: &str, row: &Row) -> Reply {
    let mut headers: Vec<(String, String)> = vec![
        ("Authorization".to_owned(), basic(USERNAME, PASSWORD)),
        ("X-Broker-API-Version".to_owned(), "2.17".to_owned()),
    ];
    if row.body.is_some() {
        headers.push(("Content-Type".to_owned(), "application/json".to_owned()));
    }
    for (name, value) in &row.request_headers {
        headers.retain(|(existing, _)| !existing.eq_ignore_ascii_case(name));
        if let Some(value) = value {
            headers.push(((*name).to_owned(), value.clone()));
        }
    }
    let mut request = client.request(row.method.clone(), format!("{base}{}", row.path));
    for (name, value) in headers {
        request = request.header(name, value);
    }
    if let Some(body) = &row.body {
        request = request.body(body.clone());
    }
    let response = request.send().await.expect("send request");
    let status = response.status().as_u16();
    let headers = response.headers().clone();
    let text = response.text().await.expect("read body");
    let body = if text.is_empty() {
        Value::Null
    } else {
        serde_json::from_str(&text).unwrap_or_else(|_| Value::String(format!("non-JSON: {text}")))
    };
    Reply {
        status,
        headers,
        body,
    }
}

fn body_problems(expect: &Expect, body: &Value) -> Option<String> {
    match expect {
        Exact(expected) => (body != expected).then(|| format!("body {body} != {expected}")),
        ErrorBody(error, contains) => {
            let Some(fields) = body.as_object() else {
                return Some(format!("body {body} is not an object"));
            };
            if let Some(extra) = fields
                .keys()
                .find(|key| *key != "error" && *key != "description")
            {
                return Some(format!("body {body} has field {extra:?}"));
            }
            if fields.get("error").and_then(Value::as_str) != *error {
                return Some(format!("body {body}: error is not {error:?}"));
            }
            let description = fields
                .get("description")
                .and_then(Value::as_str)
                .unwrap_or("");
            (description.is_empty() || !description.contains(contains))
                .then(|| format!("body {body}: description does not contain {contains:?}"))
        }
    }
}

/// Runs `rows` in order against `base`, taking what `broker` was handed after each; panics with
/// every failing row.
async fn check(base: &str, broker: &Scripted, rows: &[Row]) {
    let client = reqwest::Client::new();
    let mut failures = Vec::new();
    let mut names = HashSet::new();
    for row in rows {
        assert!(
            names.insert(row.name.clone()),
            "duplicate row {:?}",
            row.name
        );
        broker.take();
        let reply = send(&client, base, row).await;
        let handed = broker.take();
        let mut problems = Vec::new();
        if reply.status != row.status {
            problems.push(format!("status {} != {}", reply.status, row.status));
        }
        if let Some(problem) = body_problems(&row.expect, &reply.body) {
            problems.push(problem);
        }
        for (name, expected) in &row.response_headers {
            let actual = reply.header(name).map(str::to_owned);
            if actual != *expected {
                problems.push(format!("header {name}: {actual:?} != {expected:?}"));
            }
        }
        let call = handed
            .iter()
            .find(|seen| seen["operation"] == row.operation);
        if let Some(reaches) = row.reaches_broker {
            if call.is_some() != reaches {
                problems.push(format!(
                    "the broker's {} {} called",
                    row.operation,
                    if reaches { "was not" } else { "was" }
                ));
            }
        }
        if let Some(call) = call {
            for (pointer, expected) in &row.handed {
                let actual = call.pointer(pointer).cloned().unwrap_or(Value::Null);
                if actual != *expected {
                    problems.push(format!("broker got {pointer} = {actual}, not {expected}"));
                }
            }
        }
        if !problems.is_empty() {
            failures.push(format!("{}: {}", row.name, problems.join("; ")));
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {} rows failed:\n{}",
        failures.len(),
        rows.len(),
        failures.join("\n")
    );
}

async fn run_scripted(rows: Vec<Row>) {
    let broker = Arc::new(Scripted::default());
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind an ephemeral port");
    let (server, addr) =
        broker_sdk::serve(broker.clone(), crate::support::credentials(), listener).expect("serve");
    check(&format!("http://{addr}"), &broker, &rows).await;
    server.stop().await;
}

// ---------------------------------------------------------------------------------------------
// Matrix 1: the checks every request goes through, for every operation (osb-checker style).

/// One well-formed request per operation, its success status and body.
fn every_operation() -> Vec<(Row, u16, Value)> {
    let provision = Row::put(
        "provision",
        "provision",
        instance_path("created-empty"),
        &provision_body(SERVICE, PLAN),
    );
    let update = Row::patch(
        "update",
        "update",
        instance_path("updated-empty"),
        &update_body(PLAN, PLAN),
    );
    let deprovision = Row::delete(
        "deprovision",
        "deprovision",
        format!("{}?{}", instance_path("deleted"), ids_query(SERVICE, PLAN)),
    );
    let last_operation = Row::get(
        "last_operation",
        "last_operation",
        format!("{}/last_operation", instance_path("succeeded")),
    );
    let get_instance = Row::get(
        "get_instance",
        "get_instance",
        instance_path("found-minimal"),
    );
    let bind = Row::put(
        "bind",
        "bind",
        binding_path("created"),
        &bind_body(SERVICE, PLAN),
    );
    let unbind = Row::delete(
        "unbind",
        "unbind",
        format!("{}?{}", binding_path("deleted"), ids_query(SERVICE, PLAN)),
    );
    let last_binding_operation = Row::get(
        "last_binding_operation",
        "last_binding_operation",
        format!("{}/last_operation", binding_path("succeeded")),
    );
    let get_binding = Row::get("get_binding", "get_binding", binding_path("found-minimal"));
    let catalog_json = serde_json::to_value(catalog()).unwrap();
    vec![
        (
            Row::get("catalog", "catalog", "/v2/catalog".to_owned()),
            200,
            catalog_json,
        ),
        (provision, 201, json!({})),
        (update, 200, json!({})),
        (deprovision, 200, json!({})),
        (
            last_operation,
            200,
            json!({"state": "succeeded", "description": "done"}),
        ),
        (
            get_instance,
            200,
            json!({"service_id": SERVICE, "plan_id": PLAN}),
        ),
        (bind, 201, json!({"credentials": credentials()})),
        (unbind, 200, json!({})),
        (
            last_binding_operation,
            200,
            json!({"state": "succeeded", "description": "done"}),
        ),
        (get_binding, 200, json!({"credentials": credentials()})),
    ]
}

fn cross_cutting_rows() -> Vec<Row> {
    let user = json!({"user_id": "user-guid-1"});
    let kubernetes = json!({"username": "jane", "uid": "u-1", "groups": ["admins"], "extra": {}});
    let mut rows = Vec::new();
    for (request, status, body) in every_operation() {
        let operation = request.operation;
        let named = |suffix: &str| {
            let mut row = request.clone();
            row.name = format!("{operation}: {suffix}");
            row
        };
        let version_refused = |row: Row| {
            row.answers(412, ErrorBody(None, "X-Broker-API-Version"))
                .reaches_broker(false)
        };
        rows.extend([
            named("well-formed")
                .answers(status, Exact(body.clone()))
                .with_response_header("x-broker-api-request-identity", None)
                .handed("/meta/api_version", json!("2.17"))
                .handed("/meta/platform", Value::Null),
            version_refused(named("no version header").header("X-Broker-API-Version", None)),
            version_refused(named("version too old").header("X-Broker-API-Version", Some("1.13"))),
            version_refused(
                named("version of a future major").header("X-Broker-API-Version", Some("3.0")),
            ),
            version_refused(
                named("version not a number").header("X-Broker-API-Version", Some("two")),
            ),
            version_refused(
                named("version without a minor").header("X-Broker-API-Version", Some("2")),
            ),
            named("version 2.13, an older minor")
                .header("X-Broker-API-Version", Some("2.13"))
                .answers(status, Exact(body.clone()))
                .handed("/meta/api_version", json!("2.13")),
            named("no credentials")
                .header("Authorization", None)
                .answers(401, ErrorBody(None, "Unauthorized"))
                .with_response_header("www-authenticate", Some("Basic realm=\"service broker\""))
                .reaches_broker(false),
            named("wrong password")
                .header("Authorization", Some(&basic(USERNAME, "wrong")))
                .answers(401, ErrorBody(None, "Unauthorized"))
                .reaches_broker(false),
            named("wrong username")
                .header("Authorization", Some(&basic("someone", PASSWORD)))
                .answers(401, ErrorBody(None, "Unauthorized"))
                .reaches_broker(false),
            named("bearer instead of basic")
                .header("Authorization", Some("Bearer abc"))
                .answers(401, ErrorBody(None, "Unauthorized"))
                .reaches_broker(false),
            named("credentials before version: no credentials and no version")
                .header("Authorization", None)
                .header("X-Broker-API-Version", None)
                .answers(401, ErrorBody(None, "Unauthorized"))
                .reaches_broker(false),
            named("auth scheme in capitals")
                .header(
                    "Authorization",
                    Some(&basic(USERNAME, PASSWORD).replacen("Basic", "BASIC", 1)),
                )
                .answers(status, Exact(body.clone()))
                .reaches_broker(true),
            named("cloudfoundry originating identity")
                .header(
                    "X-Broker-API-Originating-Identity",
                    Some(&identity_header("cloudfoundry", &user)),
                )
                .answers(status, Exact(body.clone()))
                .handed("/meta/platform", json!("cloudfoundry"))
                .handed("/meta/user_id", json!("user-guid-1"))
                .handed("/meta/identity", user.clone()),
            named("kubernetes originating identity")
                .header(
                    "X-Broker-API-Originating-Identity",
                    Some(&identity_header("kubernetes", &kubernetes)),
                )
                .answers(status, Exact(body.clone()))
                .handed("/meta/platform", json!("kubernetes"))
                .handed("/meta/user_id", Value::Null)
                .handed("/meta/identity", kubernetes.clone()),
            named("originating identity not base64")
                .header(
                    "X-Broker-API-Originating-Identity",
                    Some("cloudfoundry %%%not-base64"),
                )
                .answers(400, ErrorBody(None, "X-Broker-API-Originating-Identity"))
                .reaches_broker(false),
            named("originating identity without a value")
                .header("X-Broker-API-Originating-Identity", Some("cloudfoundry"))
                .answers(400, ErrorBody(None, "X-Broker-API-Originating-Identity"))
                .reaches_broker(false),
            named("originating identity not a JSON object")
                .header(
                    "X-Broker-API-Originating-Identity",
                    Some(&identity_header("cloudfoundry", &json!(["user"]))),
                )
                .answers(400, ErrorBody(None, "X-Broker-API-Originating-Identity"))
                .reaches_broker(false),
            named("request identity echoed")
                .header(
                    "X-Broker-API-Request-Identity",
                    Some("e26cea0c-7ccf-4b3e-9a55-0c2bba1a2d6b"),
                )
                .answers(status, Exact(body.clone()))
                .with_response_header(
                    "x-broker-api-request-identity",
                    Some("e26cea0c-7ccf-4b3e-9a55-0c2bba1a2d6b"),
                )
                .handed(
                    "/meta/request_identity",
                    json!("e26cea0c-7ccf-4b3e-9a55-0c2bba1a2d6b"),
                ),
            named("request identity echoed on a refusal")
                .header("X-Broker-API-Request-Identity", Some("req-2"))
                .header("X-Broker-API-Version", Some("1.0"))
                .answers(412, ErrorBody(None, "X-Broker-API-Version"))
                .with_response_header("x-broker-api-request-identity", Some("req-2"))
                .reaches_broker(false),
        ]);
    }
    rows
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_operation_authenticates_checks_the_version_and_decodes_identities() {
    let rows = cross_cutting_rows();
    assert_eq!(rows.len(), 10 * 20);
    run_scripted(rows).await;
}

fn catalog_rows() -> Vec<Row> {
    let row = |identity: &str| {
        Row::get(
            format!("catalog → {identity}"),
            "catalog",
            "/v2/catalog".to_owned(),
        )
        .header("X-Broker-API-Request-Identity", Some(identity))
        .with_response_header("x-broker-api-request-identity", Some(identity))
        .reaches_broker(true)
    };
    // Operations that resolve ids in the catalog fail with it, before the broker's method runs.
    let provision = |identity: &str| {
        Row::put(
            format!("provision while the catalog → {identity}"),
            "provision",
            instance_path("created"),
            &provision_body(SERVICE, PLAN),
        )
        .header("X-Broker-API-Request-Identity", Some(identity))
        .reaches_broker(false)
    };
    vec![
        row("catalog-ok").answers(200, Exact(serde_json::to_value(catalog()).unwrap())),
        row("catalog-internal").answers(500, Exact(json!({"description": "catalog store down"}))),
        row("catalog-custom-503").answers(503, Exact(json!({"description": "catalog refreshing"}))),
        // A catalog the Cloud Controller would refuse is never served.
        row("catalog-empty").answers(
            500,
            ErrorBody(None, "Service broker must provide at least one service"),
        ),
        provision("catalog-internal")
            .answers(500, Exact(json!({"description": "catalog store down"}))),
        provision("catalog-empty").answers(400, ErrorBody(None, "not in the catalog")),
    ]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_catalog_is_served_only_when_it_is_valid() {
    run_scripted(catalog_rows()).await;
}

// ---------------------------------------------------------------------------------------------
// Matrix 2: request bodies and query parameters (osb-checker style).

/// Rows shared by the three operations with a body.
fn malformed_body_rows(operation: &'static str, method: Method, path: String) -> Vec<Row> {
    let row = |name: &str, body: &[u8]| {
        Row::new(
            format!("{operation}: {name}"),
            operation,
            method.clone(),
            path.clone(),
        )
        .raw_body(body.to_vec())
    };
    vec![
        row("body not JSON", b"{\"service_id\": ")
            .answers(400, ErrorBody(None, "not valid JSON"))
            .reaches_broker(false),
        row("body a JSON array", b"[]")
            .answers(400, ErrorBody(None, "must be a JSON object"))
            .reaches_broker(false),
        row("body a JSON string", b"\"service_id\"")
            .answers(400, ErrorBody(None, "must be a JSON object"))
            .reaches_broker(false),
        row("body empty", b"")
            .answers(400, ErrorBody(None, "body is missing"))
            .reaches_broker(false),
        row("body an empty object", b"{}")
            .answers(400, ErrorBody(None, "service_id"))
            .reaches_broker(false),
        row("body not JSON although said to be", b"service_id=x")
            .answers(400, ErrorBody(None, "not valid JSON"))
            .reaches_broker(false),
        row("body sent as text/plain", br#"{"service_id": "x"}"#)
            .header("Content-Type", Some("text/plain"))
            .answers(400, ErrorBody(None, "Content-Type"))
            .reaches_broker(false),
    ]
}

fn provision_body_rows() -> Vec<Row> {
    let path = || format!("{}?accepts_incomplete=true", instance_path("created-empty"));
    let row = |name: &str, body: Value| {
        Row::put(format!("provision: {name}"), "provision", path(), &body)
    };
    let good = || provision_body(SERVICE, PLAN);
    let mut rows = malformed_body_rows("provision", Method::PUT, path());
    rows.extend([
        row("missing service_id", without(good(), "service_id"))
            .answers(400, ErrorBody(None, "service_id"))
            .reaches_broker(false),
        row("missing plan_id", without(good(), "plan_id"))
            .answers(400, ErrorBody(None, "plan_id"))
            .reaches_broker(false),
        row("missing organization_guid", without(good(), "organization_guid"))
            .answers(400, ErrorBody(None, "organization_guid"))
            .reaches_broker(false),
        row("missing space_guid", without(good(), "space_guid"))
            .answers(400, ErrorBody(None, "space_guid"))
            .reaches_broker(false),
        row("service_id a number", with(good(), "service_id", json!(7)))
            .answers(400, ErrorBody(None, "invalid"))
            .reaches_broker(false),
        row("parameters not an object", with(good(), "parameters", json!("size=1")))
            .answers(400, ErrorBody(None, "invalid"))
            .reaches_broker(false),
        row("context not an object", with(good(), "context", json!(["cloudfoundry"])))
            .answers(400, ErrorBody(None, "invalid"))
            .reaches_broker(false),
        row("unknown service_id", with(good(), "service_id", json!("no-such-service")))
            .answers(400, ErrorBody(None, "not in the catalog"))
            .reaches_broker(false),
        row("empty service_id", with(good(), "service_id", json!("")))
            .answers(400, ErrorBody(None, "not in the catalog"))
            .reaches_broker(false),
        row("unknown plan_id", with(good(), "plan_id", json!("no-such-plan")))
            .answers(400, ErrorBody(None, "not a plan of service"))
            .reaches_broker(false),
        // openbrokerapi #456: a plan that exists, but in another offering.
        row("plan_id of another service", with(good(), "plan_id", json!(OTHER_PLAN)))
            .answers(400, ErrorBody(None, "not a plan of service"))
            .reaches_broker(false),
        row("maintenance_info of another version", with(good(), "maintenance_info", json!({"version": "1.0.0"})))
            .answers(422, ErrorBody(Some("MaintenanceInfoConflict"), "2.0.0"))
            .reaches_broker(false),
        row("maintenance_info for a plan without one", with(provision_body(SERVICE, FIXED_PLAN), "maintenance_info", json!({"version": "2.0.0"})))
            .answers(422, ErrorBody(Some("MaintenanceInfoConflict"), "(none)"))
            .reaches_broker(false),
        // The osb-checker always sends an empty maintenance_info.
        row("empty maintenance_info", with(good(), "maintenance_info", json!({})))
            .answers(201, Exact(json!({})))
            .reaches_broker(true),
        row("no maintenance_info", without(good(), "maintenance_info"))
            .answers(201, Exact(json!({})))
            .reaches_broker(true),
        row("only the required fields", json!({"service_id": SERVICE, "plan_id": PLAN, "organization_guid": "o", "space_guid": "s"}))
            .answers(201, Exact(json!({})))
            .handed("/body", json!({"service_id": SERVICE, "plan_id": PLAN, "organization_guid": "o", "space_guid": "s"}))
            .handed("/resolved", json!({"service": "conformance", "plan": "standard"})),
        row("unknown fields are kept", good())
            .answers(201, Exact(json!({})))
            .handed("/body/x-vendor-request-field", json!([1, 2]))
            .handed("/body/context/instance_annotations", json!({"example.com/team": "a"}))
            .handed("/body/context/instance_name", json!("db"))
            .handed("/body/parameters", json!({"size": 1}))
            .handed("/accepts_incomplete", json!(true)),
    ]);
    for (query, expected) in [
        ("", Some(false)),
        ("?accepts_incomplete=false", Some(false)),
        ("?accepts_incomplete=true", Some(true)),
        ("?accepts_incomplete=yes", None),
        ("?accepts_incomplete=TRUE", None),
        ("?accepts_incomplete=true&x-unknown=1", Some(true)),
    ] {
        let row = Row::put(
            format!("provision: query {query:?}"),
            "provision",
            format!("{}{query}", instance_path("created-empty")),
            &good(),
        );
        rows.push(match expected {
            Some(flag) => row
                .answers(201, Exact(json!({})))
                .handed("/accepts_incomplete", json!(flag)),
            None => row
                .answers(400, ErrorBody(None, "accepts_incomplete"))
                .reaches_broker(false),
        });
    }
    rows
}

fn update_body_rows() -> Vec<Row> {
    let path = || format!("{}?accepts_incomplete=true", instance_path("updated-empty"));
    let row =
        |name: &str, body: Value| Row::patch(format!("update: {name}"), "update", path(), &body);
    let mut rows = malformed_body_rows("update", Method::PATCH, path());
    rows.extend([
        row(
            "missing service_id",
            without(update_body(PLAN, PLAN), "service_id"),
        )
        .answers(400, ErrorBody(None, "service_id"))
        .reaches_broker(false),
        row(
            "only service_id: no plan change",
            json!({"service_id": SERVICE}),
        )
        .answers(200, Exact(json!({})))
        .handed("/body", json!({"service_id": SERVICE}))
        .handed("/resolved", json!({"service": "conformance", "plan": null})),
        row(
            "unknown service_id",
            with(
                update_body(PLAN, PLAN),
                "service_id",
                json!("no-such-service"),
            ),
        )
        .answers(400, ErrorBody(None, "not in the catalog"))
        .reaches_broker(false),
        row("unknown plan_id", update_body("no-such-plan", PLAN))
            .answers(400, ErrorBody(None, "not a plan of service"))
            .reaches_broker(false),
        row("plan_id of another service", update_body(OTHER_PLAN, PLAN))
            .answers(400, ErrorBody(None, "not a plan of service"))
            .reaches_broker(false),
        row(
            "plan change from an updateable plan",
            update_body(ASYNC_PLAN, PLAN),
        )
        .answers(200, Exact(json!({})))
        .handed("/resolved/plan", json!("async")),
        row(
            "plan change from a plan that is not updateable",
            update_body(PLAN, FIXED_PLAN),
        )
        .answers(422, ErrorBody(None, "plan_updateable"))
        .reaches_broker(false),
        // Parameter-only updates are allowed whatever plan_updateable says.
        row(
            "parameters only, on a plan that is not updateable",
            with(
                update_body(FIXED_PLAN, FIXED_PLAN),
                "parameters",
                json!({"size": 2}),
            ),
        )
        .answers(200, Exact(json!({})))
        .handed("/body/parameters", json!({"size": 2})),
        row(
            "maintenance_info of another version",
            with(
                update_body(PLAN, PLAN),
                "maintenance_info",
                json!({"version": "3.0.0"}),
            ),
        )
        .answers(422, ErrorBody(Some("MaintenanceInfoConflict"), "3.0.0"))
        .reaches_broker(false),
        row(
            "maintenance upgrade to the catalog's version",
            with(
                update_body(PLAN, PLAN),
                "maintenance_info",
                json!({"version": "2.0.0"}),
            ),
        )
        .answers(200, Exact(json!({})))
        .handed("/body/maintenance_info", json!({"version": "2.0.0"})),
        row(
            "unknown fields are kept",
            with(update_body(PLAN, PLAN), "x-vendor-update", json!(true)),
        )
        .answers(200, Exact(json!({})))
        .handed("/body/x-vendor-update", json!(true))
        .handed("/body/previous_values/x-previous-vendor", json!(1))
        .handed("/body/context/instance_name", json!("renamed"))
        .handed("/body/parameters", json!({})),
    ]);
    rows
}

fn bind_body_rows() -> Vec<Row> {
    let path = || format!("{}?accepts_incomplete=true", binding_path("created"));
    let row = |name: &str, body: Value| Row::put(format!("bind: {name}"), "bind", path(), &body);
    let good = || bind_body(SERVICE, PLAN);
    let created = || Exact(json!({"credentials": credentials()}));
    let mut rows = malformed_body_rows("bind", Method::PUT, path());
    rows.extend([
        row("missing service_id", without(good(), "service_id"))
            .answers(400, ErrorBody(None, "service_id"))
            .reaches_broker(false),
        row("missing plan_id", without(good(), "plan_id"))
            .answers(400, ErrorBody(None, "plan_id"))
            .reaches_broker(false),
        row("bind_resource not an object", with(good(), "bind_resource", json!("app")))
            .answers(400, ErrorBody(None, "invalid"))
            .reaches_broker(false),
        row("unknown service_id", with(good(), "service_id", json!("no-such-service")))
            .answers(400, ErrorBody(None, "not in the catalog"))
            .reaches_broker(false),
        row("unknown plan_id", with(good(), "plan_id", json!("no-such-plan")))
            .answers(400, ErrorBody(None, "not a plan of service"))
            .reaches_broker(false),
        row("plan_id of another service", with(good(), "plan_id", json!(OTHER_PLAN)))
            .answers(400, ErrorBody(None, "not a plan of service"))
            .reaches_broker(false),
        row("unbindable plan", bind_body(SERVICE, UNBINDABLE_PLAN))
            .answers(400, ErrorBody(None, "not bindable"))
            .reaches_broker(false),
        // Binding rotation (2.17) needs `binding_rotatable` on the plan.
        row("predecessor_binding_id on a plan that is not rotatable", with(bind_body(SERVICE, FIXED_PLAN), "predecessor_binding_id", json!("old-binding")))
            .answers(400, ErrorBody(None, "binding_rotatable"))
            .reaches_broker(false),
        row("predecessor_binding_id on a rotatable plan", with(good(), "predecessor_binding_id", json!("old-binding")))
            .answers(201, created())
            .handed("/body/predecessor_binding_id", json!("old-binding")),
        row("service key: no app", json!({"service_id": SERVICE, "plan_id": PLAN, "bind_resource": {"credential_client_id": "cc_service_key_client"}}))
            .answers(201, created())
            .handed("/resolved/app_guid", Value::Null)
            .handed("/body/bind_resource/credential_client_id", json!("cc_service_key_client")),
        row("deprecated top-level app_guid", json!({"service_id": SERVICE, "plan_id": PLAN, "app_guid": "old-style-app"}))
            .answers(201, created())
            .handed("/resolved/app_guid", json!("old-style-app")),
        row("route binding", json!({"service_id": SERVICE, "plan_id": PLAN, "bind_resource": {"route": "app.example.com/path"}}))
            .answers(201, created())
            .handed("/body/bind_resource/route", json!("app.example.com/path")),
        row("unknown fields are kept", with(good(), "x-vendor-bind", json!({"k": "v"})))
            .answers(201, created())
            .handed("/body/x-vendor-bind", json!({"k": "v"}))
            .handed("/body/bind_resource/app_annotations", json!({"example.com/x": "y"}))
            .handed("/body/parameters", json!({"role": "ro"}))
            .handed("/resolved", json!({"service": "conformance", "plan": "standard", "app_guid": "app-guid"})),
    ]);
    rows
}

fn query_rows() -> Vec<Row> {
    let mut rows = Vec::new();
    for (operation, path) in [
        ("deprovision", instance_path("deleted")),
        ("unbind", binding_path("deleted")),
    ] {
        rows.extend([
            Row::delete(format!("{operation}: no ids"), operation, path.clone())
                .answers(400, ErrorBody(None, "service_id"))
                .reaches_broker(false),
            Row::delete(
                format!("{operation}: no service_id"),
                operation,
                format!("{path}?plan_id={PLAN}"),
            )
            .answers(400, ErrorBody(None, "service_id"))
            .reaches_broker(false),
            Row::delete(
                format!("{operation}: no plan_id"),
                operation,
                format!("{path}?service_id={SERVICE}"),
            )
            .answers(400, ErrorBody(None, "plan_id"))
            .reaches_broker(false),
            Row::delete(
                format!("{operation}: empty plan_id"),
                operation,
                format!("{path}?service_id={SERVICE}&plan_id="),
            )
            .answers(400, ErrorBody(None, "plan_id"))
            .reaches_broker(false),
            Row::delete(
                format!("{operation}: accepts_incomplete not a boolean"),
                operation,
                format!("{path}?{}&accepts_incomplete=1", ids_query(SERVICE, PLAN)),
            )
            .answers(400, ErrorBody(None, "accepts_incomplete"))
            .reaches_broker(false),
            // Instances of plans that have left the catalog must stay deletable.
            Row::delete(
                format!("{operation}: ids no longer in the catalog"),
                operation,
                format!(
                    "{path}?{}&accepts_incomplete=true",
                    ids_query("retired-service", "retired-plan")
                ),
            )
            .answers(200, Exact(json!({})))
            .handed("/body/service_id", json!("retired-service"))
            .handed("/body/plan_id", json!("retired-plan"))
            .handed("/accepts_incomplete", json!(true)),
            Row::delete(
                format!("{operation}: percent-encoded ids"),
                operation,
                format!("{path}?service_id=a%20b%2Fc&plan_id=p%26q"),
            )
            .answers(200, Exact(json!({})))
            .handed("/body/service_id", json!("a b/c"))
            .handed("/body/plan_id", json!("p&q"))
            .handed("/accepts_incomplete", json!(false)),
        ]);
    }
    for (operation, path) in [
        (
            "last_operation",
            format!("{}/last_operation", instance_path("echo")),
        ),
        (
            "last_binding_operation",
            format!("{}/last_operation", binding_path("echo")),
        ),
    ] {
        let echo = |operation: Value, service_id: Value, plan_id: Value| {
            Exact(json!({"state": "succeeded",
                         "description": json!({"operation": operation, "service_id": service_id, "plan_id": plan_id}).to_string()}))
        };
        rows.extend([
            Row::get(format!("{operation}: no query"), operation, path.clone())
                .answers(200, echo(Value::Null, Value::Null, Value::Null)),
            Row::get(
                format!("{operation}: the platform's query"),
                operation,
                format!("{path}?operation=op-1&{}", ids_query(SERVICE, PLAN)),
            )
            .answers(200, echo(json!("op-1"), json!(SERVICE), json!(PLAN))),
            Row::get(
                format!("{operation}: operation percent-encoded"),
                operation,
                format!("{path}?operation=%7B%22task%22%3A%201%7D%20%26x%3Dy"),
            )
            .answers(
                200,
                echo(json!("{\"task\": 1} &x=y"), Value::Null, Value::Null),
            ),
        ]);
    }
    for (operation, path) in [
        ("get_instance", instance_path("found-minimal")),
        ("get_binding", binding_path("found-minimal")),
    ] {
        rows.push(
            Row::get(
                format!("{operation}: ids as hints"),
                operation,
                format!("{path}?{}", ids_query(SERVICE, PLAN)),
            )
            .answers(
                200,
                Exact(if operation == "get_instance" {
                    json!({"service_id": SERVICE, "plan_id": PLAN})
                } else {
                    json!({"credentials": credentials()})
                }),
            )
            .handed("/body", json!({"service_id": SERVICE, "plan_id": PLAN})),
        );
    }
    rows
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bodies_and_queries_are_checked_before_the_broker_runs() {
    let mut rows = provision_body_rows();
    rows.extend(update_body_rows());
    rows.extend(bind_body_rows());
    rows.extend(query_rows());
    run_scripted(rows).await;
}

// ---------------------------------------------------------------------------------------------
// Matrix 3: every answer a broker can give, per operation (the CATS scriptable broker's matrix).

fn provision_outcome_rows() -> Vec<Row> {
    let row = |key: &str, accepts_incomplete: bool| {
        let query = if accepts_incomplete {
            "?accepts_incomplete=true"
        } else {
            ""
        };
        Row::put(
            format!(
                "provision → {key}{}",
                if accepts_incomplete { "" } else { " (sync)" }
            ),
            "provision",
            format!("{}{query}", instance_path(key)),
            &provision_body(SERVICE, PLAN),
        )
        .reaches_broker(true)
    };
    vec![
        row("created", true).answers(201, Exact(json!({"dashboard_url": DASHBOARD, "metadata": {"labels": {"tier": "gold"}, "attributes": {"region": "eu"}}}))),
        row("created", false).answers(201, Exact(json!({"dashboard_url": DASHBOARD, "metadata": {"labels": {"tier": "gold"}, "attributes": {"region": "eu"}}}))),
        row("created-empty", true).answers(201, Exact(json!({}))),
        row("created-vendor", true).answers(201, Exact(json!({"x-vendor-response-field": {"a": 1}}))),
        row("exists", true).answers(200, Exact(json!({"dashboard_url": DASHBOARD}))),
        row("in-progress", true).answers(202, Exact(json!({"dashboard_url": DASHBOARD, "operation": "provision-op", "metadata": {"labels": {"tier": "gold"}, "attributes": {"region": "eu"}}}))),
        row("in-progress", false).answers(422, Exact(json!({"error": "AsyncRequired", "description": ASYNC_REQUIRED_TEXT}))),
        row("in-progress-bare", true).answers(202, Exact(json!({}))),
        row("in-progress-empty-operation", true).answers(202, Exact(json!({}))),
        row("in-progress-longest-operation", true).answers(202, Exact(json!({"operation": "o".repeat(10_000)}))),
        row("in-progress-too-long-operation", true).answers(500, ErrorBody(None, "10,000")),
        row("bad-request", true).answers(400, Exact(json!({"description": "size must be 1-3"}))),
        row("conflict", true).answers(409, Exact(json!({"description": "exists with other attributes"}))),
        row("async-required", false).answers(422, Exact(json!({"error": "AsyncRequired", "description": ASYNC_REQUIRED_TEXT}))),
        row("concurrency", true).answers(422, Exact(json!({"error": "ConcurrencyError", "description": CONCURRENCY_TEXT}))),
        row("maintenance", true).answers(422, Exact(json!({"error": "MaintenanceInfoConflict", "description": "upgrade to 2.0.0 first"}))),
        row("unprocessable", true).answers(422, Exact(json!({"description": "quota reached"}))),
        row("internal", true).answers(500, Exact(json!({"description": "disk on fire"}))),
        row("custom-503", true).answers(503, Exact(json!({"error": "Unavailable", "description": "come back later"}))),
        row("custom-200", true).answers(500, Exact(json!({"description": "not an error"}))),
    ]
}

fn update_outcome_rows() -> Vec<Row> {
    let row = |key: &str, accepts_incomplete: bool| {
        let query = if accepts_incomplete {
            "?accepts_incomplete=true"
        } else {
            ""
        };
        Row::patch(
            format!(
                "update → {key}{}",
                if accepts_incomplete { "" } else { " (sync)" }
            ),
            "update",
            format!("{}{query}", instance_path(key)),
            &update_body(ASYNC_PLAN, PLAN),
        )
        .reaches_broker(true)
    };
    vec![
        row("updated", true).answers(200, Exact(json!({"dashboard_url": DASHBOARD, "metadata": {"labels": {"tier": "gold"}, "attributes": {"region": "eu"}}}))),
        row("updated-empty", false).answers(200, Exact(json!({}))),
        row("in-progress", true).answers(202, Exact(json!({"operation": "update-op"}))),
        row("in-progress", false).answers(422, Exact(json!({"error": "AsyncRequired", "description": ASYNC_REQUIRED_TEXT}))),
        // An update's operation must be non-empty when present.
        row("in-progress-empty-operation", true).answers(202, Exact(json!({"dashboard_url": DASHBOARD}))),
        row("bad-request", true).answers(400, Exact(json!({"description": "size must be 1-3"}))),
        row("not-found", true).answers(404, Exact(json!({"description": "no such instance"}))),
        row("unprocessable", true).answers(422, Exact(json!({"description": "cannot shrink below the data size"}))),
        row("async-required", false).answers(422, Exact(json!({"error": "AsyncRequired", "description": ASYNC_REQUIRED_TEXT}))),
        row("concurrency", true).answers(422, Exact(json!({"error": "ConcurrencyError", "description": CONCURRENCY_TEXT}))),
        row("maintenance", true).answers(422, Exact(json!({"error": "MaintenanceInfoConflict", "description": "upgrade to 2.0.0 first"}))),
        row("failed", true).answers(500, Exact(json!({"description": "resize failed", "instance_usable": true, "update_repeatable": false}))),
        row("internal", true).answers(500, Exact(json!({"description": "disk on fire"}))),
    ]
}

fn delete_outcome_rows(operation: &'static str, path: fn(&str) -> String) -> Vec<Row> {
    let row = |key: &str, accepts_incomplete: bool| {
        let flag = if accepts_incomplete {
            "&accepts_incomplete=true"
        } else {
            ""
        };
        Row::delete(
            format!(
                "{operation} → {key}{}",
                if accepts_incomplete { "" } else { " (sync)" }
            ),
            operation,
            format!("{}?{}{flag}", path(key), ids_query(SERVICE, PLAN)),
        )
        .reaches_broker(true)
    };
    let mut rows = vec![
        row("deleted", false).answers(200, Exact(json!({}))),
        row("deleted", true).answers(200, Exact(json!({}))),
        row("in-progress", true).answers(202, Exact(json!({"operation": format!("{}-op", if operation == "unbind" { "unbind" } else { "deprovision" })}))),
        row("in-progress", false).answers(422, Exact(json!({"error": "AsyncRequired", "description": ASYNC_REQUIRED_TEXT}))),
        row("in-progress-bare", true).answers(202, Exact(json!({}))),
        row("bad-request", true).answers(400, Exact(json!({"description": "not now"}))),
        // brokerapi #162-style: a gone resource is 410 with exactly `{}`.
        row("gone", true).answers(410, Exact(json!({}))),
        row("async-required", false).answers(422, Exact(json!({"error": "AsyncRequired", "description": ASYNC_REQUIRED_TEXT}))),
        row("concurrency", true).answers(422, Exact(json!({"error": "ConcurrencyError", "description": CONCURRENCY_TEXT}))),
        row("internal", true).answers(500, Exact(json!({"description": "disk on fire"}))),
    ];
    if operation == "deprovision" {
        rows.push(row("failed", true).answers(
            500,
            Exact(json!({"description": "could not drop", "instance_usable": false})),
        ));
    }
    rows
}

fn last_operation_outcome_rows(operation: &'static str, path: fn(&str) -> String) -> Vec<Row> {
    let row = |key: &str| {
        Row::get(
            format!("{operation} → {key}"),
            operation,
            format!("{}/last_operation?{}", path(key), ids_query(SERVICE, PLAN)),
        )
        .reaches_broker(true)
    };
    // Usability flags belong to instance operations only.
    let failed = if operation == "last_operation" {
        json!({"state": "failed", "description": "it broke", "instance_usable": false, "update_repeatable": true})
    } else {
        json!({"state": "failed", "description": "it broke"})
    };
    vec![
        row("in-progress")
            .answers(
                200,
                Exact(json!({"state": "in progress", "description": "working on it"})),
            )
            .with_response_header("retry-after", Some("5")),
        row("in-progress-fraction")
            .answers(
                200,
                Exact(json!({"state": "in progress", "description": "almost"})),
            )
            .with_response_header("retry-after", Some("2")),
        row("in-progress-retry-now")
            .answers(
                200,
                Exact(json!({"state": "in progress", "description": "working on it"})),
            )
            .with_response_header("retry-after", Some("0")),
        row("in-progress-no-retry")
            .answers(
                200,
                Exact(json!({"state": "in progress", "description": "working on it"})),
            )
            .with_response_header("retry-after", None),
        row("succeeded")
            .answers(
                200,
                Exact(json!({"state": "succeeded", "description": "done"})),
            )
            .with_response_header("retry-after", None),
        // `description` must be non-empty when present.
        row("succeeded-no-description").answers(200, Exact(json!({"state": "succeeded"}))),
        row("failed").answers(200, Exact(failed)),
        row("bad-request").answers(400, Exact(json!({"description": "operation unknown"}))),
        row("not-found").answers(404, Exact(json!({}))),
        row("gone").answers(410, Exact(json!({}))),
        row("internal").answers(500, Exact(json!({"description": "lost track"}))),
        row("custom-503").answers(503, Exact(json!({"description": "come back later"}))),
    ]
}

fn get_instance_outcome_rows() -> Vec<Row> {
    let row = |key: &str| {
        Row::get(
            format!("get_instance → {key}"),
            "get_instance",
            instance_path(key),
        )
        .reaches_broker(true)
    };
    vec![
        row("found").answers(
            200,
            Exact(json!({
                "service_id": SERVICE, "plan_id": PLAN, "dashboard_url": DASHBOARD,
                "parameters": {"size": 1}, "maintenance_info": {"version": "2.0.0"},
                "metadata": {"labels": {"tier": "gold"}, "attributes": {"region": "eu"}}
            })),
        ),
        row("found-minimal").answers(200, Exact(json!({"service_id": SERVICE, "plan_id": PLAN}))),
        row("not-found").answers(404, Exact(json!({}))),
        row("concurrency").answers(
            422,
            Exact(json!({"error": "ConcurrencyError", "description": CONCURRENCY_TEXT})),
        ),
        row("bad-request").answers(400, Exact(json!({"description": "bad hint"}))),
        row("internal").answers(500, Exact(json!({"description": "disk on fire"}))),
    ]
}

fn bind_outcome_rows() -> Vec<Row> {
    let row_for = |key: &str, service_id: &str, plan_id: &str, accepts_incomplete: bool| {
        let query = if accepts_incomplete {
            "?accepts_incomplete=true"
        } else {
            ""
        };
        Row::put(
            format!(
                "bind → {key}{}{}",
                if service_id == OTHER_SERVICE {
                    " (offering without requires)"
                } else {
                    ""
                },
                if accepts_incomplete { "" } else { " (sync)" }
            ),
            "bind",
            format!("{}{query}", binding_path(key)),
            &bind_body(service_id, plan_id),
        )
        .reaches_broker(true)
    };
    let row = |key: &str, accepts_incomplete: bool| row_for(key, SERVICE, PLAN, accepts_incomplete);
    let other = |key: &str| row_for(key, OTHER_SERVICE, OTHER_PLAN, true);
    vec![
        row("created", true).answers(201, Exact(json!({"credentials": credentials()}))),
        row("created", false).answers(201, Exact(json!({"credentials": credentials()}))),
        row("created-full", true).answers(201, Exact(full_binding_json())),
        row("created-empty", true).answers(201, Exact(json!({}))),
        row("exists", true).answers(200, Exact(json!({"credentials": credentials()}))),
        row("in-progress", true).answers(202, Exact(json!({"operation": "bind-op"}))),
        row("in-progress", false).answers(
            422,
            Exact(json!({"error": "AsyncRequired", "description": ASYNC_REQUIRED_TEXT})),
        ),
        row("in-progress-bare", true).answers(202, Exact(json!({}))),
        row("syslog", true).answers(
            201,
            Exact(json!({"syslog_drain_url": "syslog://logs.example:514"})),
        ),
        row("route-service", true).answers(
            201,
            Exact(json!({"route_service_url": "https://route-service.example"})),
        ),
        row("volume", true).answers(
            200,
            Exact(json!({"volume_mounts": full_binding_json()["volume_mounts"]})),
        ),
        // What the Cloud Controller would reject is refused before it leaves the broker.
        other("syslog").answers(500, ErrorBody(None, "syslog_drain")),
        other("route-service").answers(500, ErrorBody(None, "route_forwarding")),
        other("volume").answers(500, ErrorBody(None, "volume_mount")),
        other("created-full").answers(500, ErrorBody(None, "syslog_drain")),
        other("created").answers(201, Exact(json!({"credentials": credentials()}))),
        // An asynchronous binding is fetched when it is done, so needs bindings_retrievable.
        other("in-progress").answers(500, ErrorBody(None, "bindings_retrievable")),
        row("bad-request", true)
            .answers(400, Exact(json!({"description": "role must be ro or rw"}))),
        row("instance-not-found", true)
            .answers(404, Exact(json!({"description": "no such instance"}))),
        row("conflict", true).answers(
            409,
            Exact(json!({"description": "exists with other parameters"})),
        ),
        row("requires-app", true).answers(
            422,
            Exact(json!({"error": "RequiresApp", "description": REQUIRES_APP_TEXT})),
        ),
        row("async-required", false).answers(
            422,
            Exact(json!({"error": "AsyncRequired", "description": ASYNC_REQUIRED_TEXT})),
        ),
        row("concurrency", true).answers(
            422,
            Exact(json!({"error": "ConcurrencyError", "description": CONCURRENCY_TEXT})),
        ),
        row("unprocessable", true).answers(422, Exact(json!({"description": "too many bindings"}))),
        row("internal", true).answers(500, Exact(json!({"description": "disk on fire"}))),
    ]
}

fn get_binding_outcome_rows() -> Vec<Row> {
    let row = |key: &str| {
        Row::get(
            format!("get_binding → {key}"),
            "get_binding",
            binding_path(key),
        )
        .reaches_broker(true)
    };
    let mut found = full_binding_json();
    found["parameters"] = json!({"role": "ro"});
    vec![
        row("found").answers(200, Exact(found)),
        row("found-minimal").answers(200, Exact(json!({"credentials": credentials()}))),
        row("not-found").answers(404, Exact(json!({}))),
        row("bad-request").answers(400, Exact(json!({"description": "bad hint"}))),
        row("internal").answers(500, Exact(json!({"description": "disk on fire"}))),
    ]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_outcome_and_error_reaches_the_wire_with_the_endpoints_status_and_body() {
    let mut rows = provision_outcome_rows();
    rows.extend(update_outcome_rows());
    rows.extend(delete_outcome_rows("deprovision", instance_path));
    rows.extend(last_operation_outcome_rows("last_operation", instance_path));
    rows.extend(get_instance_outcome_rows());
    rows.extend(bind_outcome_rows());
    rows.extend(delete_outcome_rows("unbind", binding_path));
    rows.extend(last_operation_outcome_rows(
        "last_binding_operation",
        binding_path,
    ));
    rows.extend(get_binding_outcome_rows());
    run_scripted(rows).await;
}

// ---------------------------------------------------------------------------------------------
// The ledger broker: what a spec-faithful broker does, step by step.

/// Polls an asynchronous operation needs before it ends.
const POLLS_PER_OPERATION: u32 = 2;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Change {
    Create,
    Update,
    Delete,
}

#[derive(Debug, Clone)]
struct Pending {
    change: Change,
    operation: String,
    polls_left: u32,
    /// For updates: the plan and parameters applied when the update ends.
    plan_id: String,
    parameters: Option<Map<String, Value>>,
    /// The operation ends `failed` (parameters `{"fail": true}`).
    fail: bool,
}

fn asks_to_fail(parameters: Option<&Map<String, Value>>) -> bool {
    parameters.and_then(|parameters| parameters.get("fail")) == Some(&Value::Bool(true))
}

#[derive(Debug, Clone)]
struct LedgerInstance {
    service_id: String,
    plan_id: String,
    parameters: Option<Map<String, Value>>,
    pending: Option<Pending>,
    /// How the last asynchronous operation ended, remembered for later polls.
    last: Option<LastOperation>,
}

#[derive(Debug, Clone)]
struct LedgerBinding {
    parameters: Option<Map<String, Value>>,
    app_guid: Option<String>,
    pending: Option<Pending>,
    last: Option<LastOperation>,
}

#[derive(Default)]
struct LedgerState {
    instances: HashMap<String, LedgerInstance>,
    deleted_instances: HashSet<String>,
    bindings: HashMap<(String, String), LedgerBinding>,
    deleted_bindings: HashSet<(String, String)>,
    operations: u32,
}

impl LedgerState {
    fn next_operation(&mut self) -> String {
        self.operations += 1;
        format!("op-{}", self.operations)
    }

    fn instance_busy(&self, instance_id: &str) -> bool {
        self.instances
            .get(instance_id)
            .is_some_and(|instance| instance.pending.is_some())
            || self
                .bindings
                .iter()
                .any(|((owner, _), binding)| owner == instance_id && binding.pending.is_some())
    }
}

#[derive(Default)]
struct Ledger {
    state: Mutex<LedgerState>,
}

fn ledger_dashboard(instance_id: &str) -> String {
    format!("https://ledger.example/{instance_id}")
}

fn ledger_binding(instance_id: &str, binding_id: &str) -> Binding {
    Binding {
        credentials: Some(object(
            json!({"uri": format!("ledger://{instance_id}/{binding_id}")}),
        )),
        ..Binding::default()
    }
}

/// Advances `pending` by one poll; true when it has just ended.
fn advance(pending: &mut Pending) -> bool {
    pending.polls_left = pending.polls_left.saturating_sub(1);
    pending.polls_left == 0
}

fn check_operation(pending: &Pending, operation: Option<&str>) -> Result<(), LastOperationError> {
    match operation {
        Some(operation) if operation != pending.operation => Err(LastOperationError::BadRequest(
            format!("unknown operation {operation:?}"),
        )),
        _ => Ok(()),
    }
}

impl ServiceBroker for Ledger {
    async fn catalog(&self, _meta: RequestMeta) -> Result<Catalog, CatalogError> {
        Ok(catalog())
    }

    async fn provision(
        &self,
        request: ProvisionRequest,
    ) -> Result<ProvisionOutcome, ProvisionError> {
        let mut state = self.state.lock().unwrap();
        let id = request.instance_id;
        let dashboard_url = Some(ledger_dashboard(&id));
        if let Some(existing) = state.instances.get(&id) {
            let identical = existing.service_id == request.body.service_id
                && existing.plan_id == request.body.plan_id
                && existing.parameters == request.body.parameters;
            return match (&existing.pending, identical) {
                (Some(pending), true) if pending.change == Change::Create => {
                    Ok(ProvisionOutcome::InProgress {
                        operation: Some(pending.operation.clone()),
                        dashboard_url,
                        metadata: None,
                    })
                }
                (None, true) => Ok(ProvisionOutcome::AlreadyExists(InstanceResponse {
                    dashboard_url,
                    ..InstanceResponse::default()
                })),
                (Some(pending), true) if pending.change != Change::Create => {
                    Err(ProvisionError::ConcurrencyError)
                }
                _ => Err(ProvisionError::Conflict(format!(
                    "instance {id} exists with other attributes"
                ))),
            };
        }
        let asynchronous = request.plan.id == ASYNC_PLAN;
        if asynchronous && !request.accepts_incomplete {
            return Err(ProvisionError::AsyncRequired);
        }
        let pending = asynchronous.then(|| Pending {
            change: Change::Create,
            operation: state.next_operation(),
            polls_left: POLLS_PER_OPERATION,
            plan_id: request.body.plan_id.clone(),
            parameters: None,
            fail: asks_to_fail(request.body.parameters.as_ref()),
        });
        let operation = pending.as_ref().map(|pending| pending.operation.clone());
        state.instances.insert(
            id.clone(),
            LedgerInstance {
                service_id: request.body.service_id,
                plan_id: request.body.plan_id,
                parameters: request.body.parameters,
                pending,
                last: None,
            },
        );
        Ok(match operation {
            Some(operation) => ProvisionOutcome::InProgress {
                operation: Some(operation),
                dashboard_url,
                metadata: None,
            },
            None => ProvisionOutcome::Created(InstanceResponse {
                dashboard_url,
                ..InstanceResponse::default()
            }),
        })
    }

    async fn update(&self, request: UpdateRequest) -> Result<UpdateOutcome, UpdateError> {
        let mut state = self.state.lock().unwrap();
        if state.instance_busy(&request.instance_id) {
            return Err(UpdateError::ConcurrencyError);
        }
        let Some(instance) = state.instances.get(&request.instance_id) else {
            return Err(UpdateError::NotFound("no such instance".to_owned()));
        };
        let plan_id = request
            .body
            .plan_id
            .clone()
            .unwrap_or_else(|| instance.plan_id.clone());
        let fail = asks_to_fail(request.body.parameters.as_ref());
        let parameters = request.body.parameters.or(instance.parameters.clone());
        if instance.plan_id == ASYNC_PLAN || plan_id == ASYNC_PLAN {
            if !request.accepts_incomplete {
                return Err(UpdateError::AsyncRequired);
            }
            let operation = state.next_operation();
            let instance = state.instances.get_mut(&request.instance_id).unwrap();
            instance.pending = Some(Pending {
                change: Change::Update,
                operation: operation.clone(),
                polls_left: POLLS_PER_OPERATION,
                plan_id,
                parameters,
                fail,
            });
            return Ok(UpdateOutcome::InProgress {
                operation: Some(operation),
                dashboard_url: None,
                metadata: None,
            });
        }
        let instance = state.instances.get_mut(&request.instance_id).unwrap();
        instance.plan_id = plan_id;
        instance.parameters = parameters;
        Ok(UpdateOutcome::Updated(InstanceResponse::default()))
    }

    async fn deprovision(
        &self,
        request: DeprovisionRequest,
    ) -> Result<DeleteOutcome, DeprovisionError> {
        let mut state = self.state.lock().unwrap();
        let id = request.instance_id;
        let Some(instance) = state.instances.get(&id) else {
            return Err(DeprovisionError::Gone);
        };
        match &instance.pending {
            Some(pending) if pending.change == Change::Delete => {
                return Ok(DeleteOutcome::InProgress {
                    operation: Some(pending.operation.clone()),
                });
            }
            Some(_) => return Err(DeprovisionError::ConcurrencyError),
            None => {}
        }
        if instance.plan_id == ASYNC_PLAN {
            if !request.accepts_incomplete {
                return Err(DeprovisionError::AsyncRequired);
            }
            let operation = state.next_operation();
            let instance = state.instances.get_mut(&id).unwrap();
            instance.pending = Some(Pending {
                change: Change::Delete,
                operation: operation.clone(),
                polls_left: POLLS_PER_OPERATION,
                plan_id: instance.plan_id.clone(),
                parameters: None,
                fail: false,
            });
            return Ok(DeleteOutcome::InProgress {
                operation: Some(operation),
            });
        }
        state.instances.remove(&id);
        state.deleted_instances.insert(id);
        Ok(DeleteOutcome::Deleted)
    }

    async fn last_operation(
        &self,
        request: LastOperationRequest,
    ) -> Result<LastOperation, LastOperationError> {
        let mut state = self.state.lock().unwrap();
        let id = request.instance_id;
        let Some(instance) = state.instances.get_mut(&id) else {
            return Err(if state.deleted_instances.contains(&id) {
                LastOperationError::Gone
            } else {
                LastOperationError::NotFound
            });
        };
        let Some(pending) = instance.pending.as_mut() else {
            return Ok(instance
                .last
                .clone()
                .unwrap_or_else(|| LastOperation::succeeded("no operation in progress")));
        };
        check_operation(pending, request.operation.as_deref())?;
        if !advance(pending) {
            return Ok(LastOperation::in_progress(
                "working",
                Some(Duration::from_secs(1)),
            ));
        }
        let pending = instance.pending.take().unwrap();
        let last = match (pending.change, pending.fail) {
            (Change::Create, false) => LastOperation::succeeded("created"),
            (Change::Create, true) => LastOperation::failed("provisioning failed as asked"),
            (Change::Update, false) => {
                instance.plan_id = pending.plan_id;
                instance.parameters = pending.parameters;
                LastOperation::succeeded("updated")
            }
            (Change::Update, true) => {
                let mut failed = LastOperation::failed("update failed as asked; nothing changed");
                failed.instance_usable = Some(true);
                failed.update_repeatable = Some(true);
                failed
            }
            (Change::Delete, _) => {
                state.instances.remove(&id);
                state.deleted_instances.insert(id);
                return Err(LastOperationError::Gone);
            }
        };
        instance.last = Some(last.clone());
        Ok(last)
    }

    async fn get_instance(
        &self,
        request: GetInstanceRequest,
    ) -> Result<InstanceDetails, GetInstanceError> {
        let state = self.state.lock().unwrap();
        let instance = state
            .instances
            .get(&request.instance_id)
            .ok_or(GetInstanceError::NotFound)?;
        match instance.pending.as_ref().map(|pending| pending.change) {
            Some(Change::Create) => Err(GetInstanceError::NotFound),
            Some(Change::Update) => Err(GetInstanceError::ConcurrencyError),
            Some(Change::Delete) | None => Ok(InstanceDetails {
                service_id: instance.service_id.clone(),
                plan_id: instance.plan_id.clone(),
                dashboard_url: Some(ledger_dashboard(&request.instance_id)),
                parameters: instance.parameters.clone(),
                ..InstanceDetails::default()
            }),
        }
    }

    async fn bind(&self, request: BindRequest) -> Result<BindOutcome, BindError> {
        let mut state = self.state.lock().unwrap();
        let key = (request.instance_id.clone(), request.binding_id.clone());
        let Some(instance) = state.instances.get(&request.instance_id) else {
            return Err(BindError::InstanceNotFound("no such instance".to_owned()));
        };
        if instance.pending.is_some() {
            return Err(BindError::ConcurrencyError);
        }
        let asynchronous = instance.plan_id == ASYNC_PLAN;
        let app_guid = request.body.app_guid().map(str::to_owned);
        if let Some(existing) = state.bindings.get(&key) {
            let identical =
                existing.parameters == request.body.parameters && existing.app_guid == app_guid;
            return match (&existing.pending, identical) {
                (Some(pending), true) if pending.change == Change::Create => {
                    Ok(BindOutcome::InProgress {
                        operation: Some(pending.operation.clone()),
                    })
                }
                (None, true) => Ok(BindOutcome::AlreadyExists(ledger_binding(&key.0, &key.1))),
                (Some(_), true) => Err(BindError::ConcurrencyError),
                _ => Err(BindError::Conflict(format!(
                    "binding {} exists with other parameters",
                    key.1
                ))),
            };
        }
        if asynchronous && !request.accepts_incomplete {
            return Err(BindError::AsyncRequired);
        }
        let pending = asynchronous.then(|| Pending {
            change: Change::Create,
            operation: state.next_operation(),
            polls_left: POLLS_PER_OPERATION,
            plan_id: request.plan.id.clone(),
            parameters: None,
            fail: asks_to_fail(request.body.parameters.as_ref()),
        });
        let operation = pending.as_ref().map(|pending| pending.operation.clone());
        state.bindings.insert(
            key.clone(),
            LedgerBinding {
                parameters: request.body.parameters,
                app_guid,
                pending,
                last: None,
            },
        );
        Ok(match operation {
            Some(operation) => BindOutcome::InProgress {
                operation: Some(operation),
            },
            None => BindOutcome::Created(ledger_binding(&key.0, &key.1)),
        })
    }

    async fn unbind(&self, request: UnbindRequest) -> Result<DeleteOutcome, UnbindError> {
        let mut state = self.state.lock().unwrap();
        let key = (request.instance_id.clone(), request.binding_id.clone());
        let asynchronous = state
            .instances
            .get(&request.instance_id)
            .is_some_and(|instance| instance.plan_id == ASYNC_PLAN);
        let Some(binding) = state.bindings.get(&key) else {
            return Err(UnbindError::Gone);
        };
        match &binding.pending {
            Some(pending) if pending.change == Change::Delete => {
                return Ok(DeleteOutcome::InProgress {
                    operation: Some(pending.operation.clone()),
                });
            }
            Some(_) => return Err(UnbindError::ConcurrencyError),
            None => {}
        }
        if asynchronous {
            if !request.accepts_incomplete {
                return Err(UnbindError::AsyncRequired);
            }
            let operation = state.next_operation();
            state.bindings.get_mut(&key).unwrap().pending = Some(Pending {
                change: Change::Delete,
                operation: operation.clone(),
                polls_left: POLLS_PER_OPERATION,
                plan_id: String::new(),
                parameters: None,
                fail: false,
            });
            return Ok(DeleteOutcome::InProgress {
                operation: Some(operation),
            });
        }
        state.bindings.remove(&key);
        state.deleted_bindings.insert(key);
        Ok(DeleteOutcome::Deleted)
    }

    async fn get_binding(
        &self,
        request: GetBindingRequest,
    ) -> Result<BindingDetails, GetBindingError> {
        let state = self.state.lock().unwrap();
        let binding = state
            .bindings
            .get(&(request.instance_id.clone(), request.binding_id.clone()))
            .ok_or(GetBindingError::NotFound)?;
        if binding
            .pending
            .as_ref()
            .is_some_and(|pending| pending.change == Change::Create)
        {
            return Err(GetBindingError::NotFound);
        }
        Ok(BindingDetails {
            binding: ledger_binding(&request.instance_id, &request.binding_id),
            parameters: binding.parameters.clone(),
        })
    }

    async fn last_binding_operation(
        &self,
        request: LastBindingOperationRequest,
    ) -> Result<LastOperation, LastOperationError> {
        let mut state = self.state.lock().unwrap();
        let key = (request.instance_id, request.binding_id);
        let Some(binding) = state.bindings.get_mut(&key) else {
            return Err(if state.deleted_bindings.contains(&key) {
                LastOperationError::Gone
            } else {
                LastOperationError::NotFound
            });
        };
        let Some(pending) = binding.pending.as_mut() else {
            return Ok(binding
                .last
                .clone()
                .unwrap_or_else(|| LastOperation::succeeded("no operation in progress")));
        };
        check_operation(pending, request.operation.as_deref())?;
        if !advance(pending) {
            return Ok(LastOperation::in_progress(
                "working",
                Some(Duration::from_secs(1)),
            ));
        }
        let pending = binding.pending.take().unwrap();
        let last = match (pending.change, pending.fail) {
            (Change::Create | Change::Update, false) => LastOperation::succeeded("bound"),
            (Change::Create | Change::Update, true) => {
                LastOperation::failed("binding failed as asked")
            }
            (Change::Delete, _) => {
                state.bindings.remove(&key);
                state.deleted_bindings.insert(key);
                return Err(LastOperationError::Gone);
            }
        };
        binding.last = Some(last.clone());
        Ok(last)
    }
}

/// Runs `steps` in order against a fresh `Ledger`, stopping at the first step that fails (later
/// steps depend on earlier ones).
async fn run_ledger(steps: Vec<Row>) {
    let broker = Arc::new(Ledger::default());
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind an ephemeral port");
    let (server, addr) =
        broker_sdk::serve(broker, crate::support::credentials(), listener).expect("serve");
    let base = format!("http://{addr}");
    let client = reqwest::Client::new();
    for (index, step) in steps.iter().enumerate() {
        let reply = send(&client, &base, step).await;
        assert_eq!(
            reply.status,
            step.status,
            "step {} {:?}: {}",
            index + 1,
            step.name,
            reply.body
        );
        if let Some(problem) = body_problems(&step.expect, &reply.body) {
            panic!("step {} {:?}: {problem}", index + 1, step.name);
        }
        for (name, expected) in &step.response_headers {
            assert_eq!(
                reply.header(name),
                expected.as_deref(),
                "step {} {:?}: header {name}",
                index + 1,
                step.name
            );
        }
    }
    server.stop().await;
}

// ---------------------------------------------------------------------------------------------
// Matrix 4: the Cloud Controller's sequences (CF-acceptance style).

const ASYNC_INSTANCE: &str = "cf-async-instance";
const SYNC_INSTANCE: &str = "cf-sync-instance";

fn steps_path(instance_id: &str, rest: &str) -> String {
    format!("/v2/service_instances/{instance_id}{rest}")
}

fn in_progress_poll(name: &str, path: String) -> Row {
    Row::get(name, "poll", path)
        .answers(
            200,
            Exact(json!({"state": "in progress", "description": "working"})),
        )
        .with_response_header("retry-after", Some("1"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_cloud_controllers_asynchronous_lifecycle() {
    let instance = |rest: &str| steps_path(ASYNC_INSTANCE, rest);
    let binding = |rest: &str| {
        steps_path(
            ASYNC_INSTANCE,
            &format!("/service_bindings/cf-binding{rest}"),
        )
    };
    let ids = ids_query(SERVICE, ASYNC_PLAN);
    let mut provision = provision_body(SERVICE, ASYNC_PLAN);
    provision
        .as_object_mut()
        .unwrap()
        .remove("maintenance_info");
    let mut bigger = provision.clone();
    bigger["parameters"] = json!({"size": 2});
    let bind = bind_body(SERVICE, ASYNC_PLAN);
    let mut other_bind = bind.clone();
    other_bind["parameters"] = json!({"role": "rw"});
    let dashboard = ledger_dashboard(ASYNC_INSTANCE);
    let credentials = json!({"uri": format!("ledger://{ASYNC_INSTANCE}/cf-binding")});
    let steps = vec![
        Row::get("poll before anything exists", "poll", instance(&format!("/last_operation?{ids}")))
            .answers(404, Exact(json!({}))),
        Row::put("provision without accepts_incomplete", "provision", instance(""), &provision)
            .answers(422, Exact(json!({"error": "AsyncRequired", "description": ASYNC_REQUIRED_TEXT}))),
        Row::get("nothing was created by the 422", "get_instance", instance(""))
            .answers(404, Exact(json!({}))),
        Row::put("provision", "provision", instance("?accepts_incomplete=true"), &provision)
            .answers(202, Exact(json!({"dashboard_url": dashboard, "operation": "op-1"}))),
        Row::put("provision re-sent while it runs", "provision", instance("?accepts_incomplete=true"), &provision)
            .answers(202, Exact(json!({"dashboard_url": dashboard, "operation": "op-1"}))),
        Row::put("provision with other parameters while it runs", "provision", instance("?accepts_incomplete=true"), &bigger)
            .answers(409, ErrorBody(None, "other attributes")),
        Row::get("fetch while provisioning", "get_instance", instance(""))
            .answers(404, Exact(json!({}))),
        Row::put("bind while provisioning", "bind", binding("?accepts_incomplete=true"), &bind)
            .answers(422, Exact(json!({"error": "ConcurrencyError", "description": CONCURRENCY_TEXT}))),
        Row::delete("deprovision while provisioning", "deprovision", instance(&format!("?{ids}&accepts_incomplete=true")))
            .answers(422, Exact(json!({"error": "ConcurrencyError", "description": CONCURRENCY_TEXT}))),
        Row::get("poll with an operation the broker never gave", "poll", instance(&format!("/last_operation?operation=op-9&{ids}")))
            .answers(400, Exact(json!({"description": "unknown operation \"op-9\""}))),
        in_progress_poll("poll provision (1)", instance(&format!("/last_operation?operation=op-1&{ids}"))),
        Row::get("poll provision (2)", "poll", instance(&format!("/last_operation?operation=op-1&{ids}")))
            .answers(200, Exact(json!({"state": "succeeded", "description": "created"})))
            .with_response_header("retry-after", None),
        Row::get("fetch once provisioned", "get_instance", instance(&format!("?{ids}")))
            .answers(200, Exact(json!({"service_id": SERVICE, "plan_id": ASYNC_PLAN, "dashboard_url": dashboard, "parameters": {"size": 1}}))),
        Row::put("provision again, identical", "provision", instance("?accepts_incomplete=true"), &provision)
            .answers(200, Exact(json!({"dashboard_url": dashboard}))),
        Row::put("provision again, different", "provision", instance("?accepts_incomplete=true"), &bigger)
            .answers(409, ErrorBody(None, "other attributes")),
        Row::patch("update without accepts_incomplete", "update", instance(""), &with(update_body(ASYNC_PLAN, ASYNC_PLAN), "parameters", json!({"size": 2})))
            .answers(422, Exact(json!({"error": "AsyncRequired", "description": ASYNC_REQUIRED_TEXT}))),
        Row::patch("update", "update", instance("?accepts_incomplete=true"), &with(update_body(ASYNC_PLAN, ASYNC_PLAN), "parameters", json!({"size": 2})))
            .answers(202, Exact(json!({"operation": "op-2"}))),
        Row::get("fetch while updating", "get_instance", instance(""))
            .answers(422, Exact(json!({"error": "ConcurrencyError", "description": CONCURRENCY_TEXT}))),
        Row::patch("update while updating", "update", instance("?accepts_incomplete=true"), &update_body(ASYNC_PLAN, ASYNC_PLAN))
            .answers(422, Exact(json!({"error": "ConcurrencyError", "description": CONCURRENCY_TEXT}))),
        in_progress_poll("poll update (1)", instance(&format!("/last_operation?operation=op-2&{ids}"))),
        Row::get("poll update (2)", "poll", instance(&format!("/last_operation?operation=op-2&{ids}")))
            .answers(200, Exact(json!({"state": "succeeded", "description": "updated"}))),
        Row::get("fetch shows the update", "get_instance", instance(""))
            .answers(200, Exact(json!({"service_id": SERVICE, "plan_id": ASYNC_PLAN, "dashboard_url": dashboard, "parameters": {"size": 2}}))),
        Row::put("bind without accepts_incomplete", "bind", binding(""), &bind)
            .answers(422, Exact(json!({"error": "AsyncRequired", "description": ASYNC_REQUIRED_TEXT}))),
        Row::put("bind", "bind", binding("?accepts_incomplete=true"), &bind)
            .answers(202, Exact(json!({"operation": "op-3"}))),
        Row::put("bind re-sent while it runs", "bind", binding("?accepts_incomplete=true"), &bind)
            .answers(202, Exact(json!({"operation": "op-3"}))),
        Row::get("fetch binding while binding", "get_binding", binding(""))
            .answers(404, Exact(json!({}))),
        Row::patch("update while binding", "update", instance("?accepts_incomplete=true"), &update_body(ASYNC_PLAN, ASYNC_PLAN))
            .answers(422, Exact(json!({"error": "ConcurrencyError", "description": CONCURRENCY_TEXT}))),
        in_progress_poll("poll bind (1)", binding(&format!("/last_operation?operation=op-3&{ids}"))),
        Row::get("poll bind (2)", "poll", binding(&format!("/last_operation?operation=op-3&{ids}")))
            .answers(200, Exact(json!({"state": "succeeded", "description": "bound"}))),
        Row::get("fetch binding once bound", "get_binding", binding(&format!("?{ids}")))
            .answers(200, Exact(json!({"credentials": credentials, "parameters": {"role": "ro"}}))),
        Row::put("bind again, identical", "bind", binding("?accepts_incomplete=true"), &bind)
            .answers(200, Exact(json!({"credentials": credentials}))),
        Row::put("bind again, different", "bind", binding("?accepts_incomplete=true"), &other_bind)
            .answers(409, ErrorBody(None, "other parameters")),
        Row::delete("unbind without accepts_incomplete", "unbind", binding(&format!("?{ids}")))
            .answers(422, Exact(json!({"error": "AsyncRequired", "description": ASYNC_REQUIRED_TEXT}))),
        Row::delete("unbind", "unbind", binding(&format!("?{ids}&accepts_incomplete=true")))
            .answers(202, Exact(json!({"operation": "op-4"}))),
        Row::delete("unbind re-sent while it runs", "unbind", binding(&format!("?{ids}&accepts_incomplete=true")))
            .answers(202, Exact(json!({"operation": "op-4"}))),
        in_progress_poll("poll unbind (1)", binding(&format!("/last_operation?operation=op-4&{ids}"))),
        Row::get("poll unbind (2): gone", "poll", binding(&format!("/last_operation?operation=op-4&{ids}")))
            .answers(410, Exact(json!({}))),
        Row::get("poll unbind again: still gone", "poll", binding(&format!("/last_operation?operation=op-4&{ids}")))
            .answers(410, Exact(json!({}))),
        Row::get("fetch binding once unbound", "get_binding", binding(""))
            .answers(404, Exact(json!({}))),
        Row::delete("unbind once unbound", "unbind", binding(&format!("?{ids}&accepts_incomplete=true")))
            .answers(410, Exact(json!({}))),
        Row::delete("deprovision without accepts_incomplete", "deprovision", instance(&format!("?{ids}")))
            .answers(422, Exact(json!({"error": "AsyncRequired", "description": ASYNC_REQUIRED_TEXT}))),
        Row::delete("deprovision", "deprovision", instance(&format!("?{ids}&accepts_incomplete=true")))
            .answers(202, Exact(json!({"operation": "op-5"}))),
        Row::delete("deprovision re-sent while it runs", "deprovision", instance(&format!("?{ids}&accepts_incomplete=true")))
            .answers(202, Exact(json!({"operation": "op-5"}))),
        in_progress_poll("poll deprovision (1)", instance(&format!("/last_operation?operation=op-5&{ids}"))),
        Row::get("poll deprovision (2): gone", "poll", instance(&format!("/last_operation?operation=op-5&{ids}")))
            .answers(410, Exact(json!({}))),
        Row::get("fetch once deprovisioned", "get_instance", instance(""))
            .answers(404, Exact(json!({}))),
        Row::get("poll once deprovisioned: still gone", "poll", instance(&format!("/last_operation?{ids}")))
            .answers(410, Exact(json!({}))),
        Row::delete("deprovision once deprovisioned", "deprovision", instance(&format!("?{ids}&accepts_incomplete=true")))
            .answers(410, Exact(json!({}))),
    ];
    run_ledger(steps).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_cloud_controllers_synchronous_lifecycle_and_idempotency() {
    let instance = |rest: &str| steps_path(SYNC_INSTANCE, rest);
    let binding = |rest: &str| {
        steps_path(
            SYNC_INSTANCE,
            &format!("/service_bindings/cf-binding{rest}"),
        )
    };
    let ids = ids_query(SERVICE, PLAN);
    let provision = provision_body(SERVICE, PLAN);
    let other_plan = without(provision_body(SERVICE, FIXED_PLAN), "maintenance_info");
    let bind = bind_body(SERVICE, PLAN);
    let mut other_app = bind.clone();
    other_app["bind_resource"]["app_guid"] = json!("another-app");
    other_app["app_guid"] = json!("another-app");
    let dashboard = ledger_dashboard(SYNC_INSTANCE);
    let credentials = json!({"uri": format!("ledger://{SYNC_INSTANCE}/cf-binding")});
    // The Cloud Controller always says accepts_incomplete=true; a synchronous broker answers
    // 201/200 anyway.
    let steps = vec![
        Row::put("bind to a missing instance", "bind", binding("?accepts_incomplete=true"), &bind)
            .answers(404, Exact(json!({"description": "no such instance"}))),
        Row::patch("update a missing instance", "update", instance("?accepts_incomplete=true"), &update_body(PLAN, PLAN))
            .answers(404, Exact(json!({"description": "no such instance"}))),
        Row::put("provision", "provision", instance("?accepts_incomplete=true"), &provision)
            .answers(201, Exact(json!({"dashboard_url": dashboard}))),
        Row::put("provision again, identical", "provision", instance("?accepts_incomplete=true"), &provision)
            .answers(200, Exact(json!({"dashboard_url": dashboard}))),
        Row::put("provision again, identical, without accepts_incomplete", "provision", instance(""), &provision)
            .answers(200, Exact(json!({"dashboard_url": dashboard}))),
        Row::put("provision again, other plan", "provision", instance("?accepts_incomplete=true"), &other_plan)
            .answers(409, ErrorBody(None, "other attributes")),
        Row::get("fetch", "get_instance", instance(""))
            .answers(200, Exact(json!({"service_id": SERVICE, "plan_id": PLAN, "dashboard_url": dashboard, "parameters": {"size": 1}}))),
        Row::get("poll a synchronous instance", "poll", instance(&format!("/last_operation?{ids}")))
            .answers(200, Exact(json!({"state": "succeeded", "description": "no operation in progress"}))),
        Row::patch("update to another plan", "update", instance("?accepts_incomplete=true"), &without(update_body(FIXED_PLAN, PLAN), "parameters"))
            .answers(200, Exact(json!({}))),
        Row::patch("update away from a plan that is not updateable", "update", instance("?accepts_incomplete=true"), &update_body(PLAN, FIXED_PLAN))
            .answers(422, ErrorBody(None, "plan_updateable")),
        Row::get("fetch shows the new plan and the old parameters", "get_instance", instance(""))
            .answers(200, Exact(json!({"service_id": SERVICE, "plan_id": FIXED_PLAN, "dashboard_url": dashboard, "parameters": {"size": 1}}))),
        Row::put("bind", "bind", binding("?accepts_incomplete=true"), &with(bind.clone(), "plan_id", json!(FIXED_PLAN)))
            .answers(201, Exact(json!({"credentials": credentials}))),
        Row::put("bind again, identical", "bind", binding("?accepts_incomplete=true"), &with(bind.clone(), "plan_id", json!(FIXED_PLAN)))
            .answers(200, Exact(json!({"credentials": credentials}))),
        Row::put("bind again, another app", "bind", binding("?accepts_incomplete=true"), &with(other_app, "plan_id", json!(FIXED_PLAN)))
            .answers(409, ErrorBody(None, "other parameters")),
        Row::get("fetch binding", "get_binding", binding(""))
            .answers(200, Exact(json!({"credentials": credentials, "parameters": {"role": "ro"}}))),
        Row::get("poll a synchronous binding", "poll", binding(&format!("/last_operation?{ids}")))
            .answers(200, Exact(json!({"state": "succeeded", "description": "no operation in progress"}))),
        Row::delete("unbind", "unbind", binding(&format!("?{ids}&accepts_incomplete=true")))
            .answers(200, Exact(json!({}))),
        Row::delete("unbind again", "unbind", binding(&format!("?{ids}&accepts_incomplete=true")))
            .answers(410, Exact(json!({}))),
        Row::get("fetch binding once unbound", "get_binding", binding(""))
            .answers(404, Exact(json!({}))),
        Row::get("poll binding once unbound", "poll", binding(&format!("/last_operation?{ids}")))
            .answers(410, Exact(json!({}))),
        Row::get("poll a binding that never existed", "poll", steps_path(SYNC_INSTANCE, &format!("/service_bindings/never/last_operation?{ids}")))
            .answers(404, Exact(json!({}))),
        Row::delete("deprovision", "deprovision", instance(&format!("?{ids}")))
            .answers(200, Exact(json!({}))),
        Row::delete("deprovision again", "deprovision", instance(&format!("?{ids}")))
            .answers(410, Exact(json!({}))),
        Row::get("fetch once deprovisioned", "get_instance", instance(""))
            .answers(404, Exact(json!({}))),
        Row::get("poll once deprovisioned", "poll", instance(&format!("/last_operation?{ids}")))
            .answers(410, Exact(json!({}))),
        Row::put("provision the same id after deletion", "provision", instance("?accepts_incomplete=true"), &provision)
            .answers(201, Exact(json!({"dashboard_url": dashboard}))),
    ];
    run_ledger(steps).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failed_asynchronous_operations_are_reported_then_cleaned_up() {
    let failing = |rest: &str| steps_path("cf-failing-instance", rest);
    let instance = |rest: &str| steps_path("cf-instance", rest);
    let binding = |rest: &str| {
        steps_path(
            "cf-instance",
            &format!("/service_bindings/cf-failing-binding{rest}"),
        )
    };
    let ids = ids_query(SERVICE, ASYNC_PLAN);
    let provision = without(provision_body(SERVICE, ASYNC_PLAN), "maintenance_info");
    let failing_provision = with(provision.clone(), "parameters", json!({"fail": true}));
    let failing_update = with(
        update_body(ASYNC_PLAN, ASYNC_PLAN),
        "parameters",
        json!({"fail": true}),
    );
    let failing_bind = with(
        bind_body(SERVICE, ASYNC_PLAN),
        "parameters",
        json!({"fail": true}),
    );
    let poll = |path: String| Row::get("poll", "poll", path);
    let steps = vec![
        // A provision that fails: reported with the broker's description, remembered, then
        // removed by the platform's orphan mitigation (an asynchronous delete).
        Row::put("failing provision", "provision", failing("?accepts_incomplete=true"), &failing_provision)
            .answers(202, Exact(json!({"dashboard_url": ledger_dashboard("cf-failing-instance"), "operation": "op-1"}))),
        in_progress_poll("poll failing provision (1)", failing(&format!("/last_operation?operation=op-1&{ids}"))),
        Row { name: "poll failing provision (2)".to_owned(), ..poll(failing(&format!("/last_operation?operation=op-1&{ids}"))) }
            .answers(200, Exact(json!({"state": "failed", "description": "provisioning failed as asked"}))),
        Row { name: "poll failing provision again: remembered".to_owned(), ..poll(failing(&format!("/last_operation?operation=op-1&{ids}"))) }
            .answers(200, Exact(json!({"state": "failed", "description": "provisioning failed as asked"}))),
        Row::delete("orphan mitigation of the failed instance", "deprovision", failing(&format!("?{ids}&accepts_incomplete=true")))
            .answers(202, Exact(json!({"operation": "op-2"}))),
        in_progress_poll("poll orphan mitigation (1)", failing(&format!("/last_operation?operation=op-2&{ids}"))),
        Row { name: "poll orphan mitigation (2): gone".to_owned(), ..poll(failing(&format!("/last_operation?operation=op-2&{ids}"))) }
            .answers(410, Exact(json!({}))),
        // An update that fails leaves the instance as it was, usable and the update repeatable.
        Row::put("provision", "provision", instance("?accepts_incomplete=true"), &provision)
            .answers(202, Exact(json!({"dashboard_url": ledger_dashboard("cf-instance"), "operation": "op-3"}))),
        in_progress_poll("poll provision (1)", instance(&format!("/last_operation?operation=op-3&{ids}"))),
        Row { name: "poll provision (2)".to_owned(), ..poll(instance(&format!("/last_operation?operation=op-3&{ids}"))) }
            .answers(200, Exact(json!({"state": "succeeded", "description": "created"}))),
        Row::patch("failing update", "update", instance("?accepts_incomplete=true"), &failing_update)
            .answers(202, Exact(json!({"operation": "op-4"}))),
        in_progress_poll("poll failing update (1)", instance(&format!("/last_operation?operation=op-4&{ids}"))),
        Row { name: "poll failing update (2)".to_owned(), ..poll(instance(&format!("/last_operation?operation=op-4&{ids}"))) }
            .answers(200, Exact(json!({"state": "failed", "description": "update failed as asked; nothing changed",
                                       "instance_usable": true, "update_repeatable": true}))),
        Row::get("fetch after the failed update", "get_instance", instance(""))
            .answers(200, Exact(json!({"service_id": SERVICE, "plan_id": ASYNC_PLAN,
                                       "dashboard_url": ledger_dashboard("cf-instance"), "parameters": {"size": 1}}))),
        // A bind that fails: no usability flags on a binding's poll; the platform unbinds.
        Row::put("failing bind", "bind", binding("?accepts_incomplete=true"), &failing_bind)
            .answers(202, Exact(json!({"operation": "op-5"}))),
        in_progress_poll("poll failing bind (1)", binding(&format!("/last_operation?operation=op-5&{ids}"))),
        Row { name: "poll failing bind (2)".to_owned(), ..poll(binding(&format!("/last_operation?operation=op-5&{ids}"))) }
            .answers(200, Exact(json!({"state": "failed", "description": "binding failed as asked"}))),
        Row::delete("orphan mitigation of the failed binding", "unbind", binding(&format!("?{ids}&accepts_incomplete=true")))
            .answers(202, Exact(json!({"operation": "op-6"}))),
        in_progress_poll("poll binding orphan mitigation (1)", binding(&format!("/last_operation?operation=op-6&{ids}"))),
        Row { name: "poll binding orphan mitigation (2): gone".to_owned(), ..poll(binding(&format!("/last_operation?operation=op-6&{ids}"))) }
            .answers(410, Exact(json!({}))),
        Row::delete("deprovision", "deprovision", instance(&format!("?{ids}&accepts_incomplete=true")))
            .answers(202, Exact(json!({"operation": "op-7"}))),
        in_progress_poll("poll deprovision (1)", instance(&format!("/last_operation?operation=op-7&{ids}"))),
        Row { name: "poll deprovision (2): gone".to_owned(), ..poll(instance(&format!("/last_operation?operation=op-7&{ids}"))) }
            .answers(410, Exact(json!({}))),
    ];
    run_ledger(steps).await;
}
