//! The `ServiceBroker` trait a broker implements — one method per OSB operation — with the
//! requests the framework hands it (already authenticated, version-checked, parsed and checked
//! against the catalog) and the outcomes it returns. Outcomes are enums, not flags, so that
//! impossible answers (credentials in a 202) cannot be expressed.

use std::future::Future;

use serde_json::{Map, Value};

use crate::api::{
    BindBody, Binding, BindingDetails, InstanceDetails, InstanceMetadata, InstanceResponse,
    LastOperation, ProvisionBody, UpdateBody,
};
use crate::catalog::{Catalog, ServiceOffering, ServicePlan};
use crate::error::{
    BindError, CatalogError, DeprovisionError, Failure, GetBindingError, GetInstanceError,
    LastOperationError, ProvisionError, UnbindError, UpdateError,
};

/// `X-Broker-API-Version` as sent by the platform.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct ApiVersion {
    pub major: u32,
    pub minor: u32,
}

impl std::fmt::Display for ApiVersion {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(formatter, "{}.{}", self.major, self.minor)
    }
}

/// The decoded `X-Broker-API-Originating-Identity` header: who asked, on which platform.
#[derive(Debug, Clone, PartialEq)]
pub struct OriginatingIdentity {
    /// `cloudfoundry`, `kubernetes`, …
    pub platform: String,
    /// The decoded JSON object (CF: `{"user_id": …}`; Kubernetes: `username`, `uid`, `groups`).
    pub value: Map<String, Value>,
}

impl OriginatingIdentity {
    /// The CF profile's `user_id`.
    pub fn user_id(&self) -> Option<&str> {
        self.value.get("user_id").and_then(Value::as_str)
    }
}

/// What every request carries besides its body.
#[derive(Debug, Clone, PartialEq)]
pub struct RequestMeta {
    pub api_version: ApiVersion,
    pub originating_identity: Option<OriginatingIdentity>,
    /// `X-Broker-API-Request-Identity`, echoed on the response by the framework.
    pub request_identity: Option<String>,
}

/// A provision request whose `service_id`/`plan_id` name an offering and one of its plans.
#[derive(Debug, Clone)]
pub struct ProvisionRequest {
    pub instance_id: String,
    /// `accepts_incomplete=true`: the broker may answer `ProvisionOutcome::InProgress`.
    pub accepts_incomplete: bool,
    pub body: ProvisionBody,
    pub service: ServiceOffering,
    pub plan: ServicePlan,
    pub meta: RequestMeta,
}

/// An update request. `plan` is the requested plan when `body.plan_id` is present; the framework
/// has already refused plan changes the catalog does not allow.
#[derive(Debug, Clone)]
pub struct UpdateRequest {
    pub instance_id: String,
    pub accepts_incomplete: bool,
    pub body: UpdateBody,
    pub service: ServiceOffering,
    pub plan: Option<ServicePlan>,
    pub meta: RequestMeta,
}

/// A deprovision request. The ids are not checked against the catalog: an instance of a plan
/// that has since left the catalog must still be deletable.
#[derive(Debug, Clone)]
pub struct DeprovisionRequest {
    pub instance_id: String,
    pub service_id: String,
    pub plan_id: String,
    pub accepts_incomplete: bool,
    pub meta: RequestMeta,
}

/// A poll of an instance's last operation.
#[derive(Debug, Clone)]
pub struct LastOperationRequest {
    pub instance_id: String,
    pub service_id: Option<String>,
    pub plan_id: Option<String>,
    /// The `operation` the broker returned with its 202, if any.
    pub operation: Option<String>,
    pub meta: RequestMeta,
}

/// A bind request whose ids name an offering and one of its bindable plans.
#[derive(Debug, Clone)]
pub struct BindRequest {
    pub instance_id: String,
    pub binding_id: String,
    pub accepts_incomplete: bool,
    pub body: BindBody,
    pub service: ServiceOffering,
    pub plan: ServicePlan,
    pub meta: RequestMeta,
}

/// An unbind request (ids not checked against the catalog, as for deprovision).
#[derive(Debug, Clone)]
pub struct UnbindRequest {
    pub instance_id: String,
    pub binding_id: String,
    pub service_id: String,
    pub plan_id: String,
    pub accepts_incomplete: bool,
    pub meta: RequestMeta,
}

/// A fetch of an instance; the ids are hints (2.16).
#[derive(Debug, Clone)]
pub struct GetInstanceRequest {
    pub instance_id: String,
    pub service_id: Option<String>,
    pub plan_id: Option<String>,
    pub meta: RequestMeta,
}

/// A fetch of a binding; the ids are hints (2.16).
#[derive(Debug, Clone)]
pub struct GetBindingRequest {
    pub instance_id: String,
    pub binding_id: String,
    pub service_id: Option<String>,
    pub plan_id: Option<String>,
    pub meta: RequestMeta,
}

/// A poll of a binding's last operation.
#[derive(Debug, Clone)]
pub struct LastBindingOperationRequest {
    pub instance_id: String,
    pub binding_id: String,
    pub service_id: Option<String>,
    pub plan_id: Option<String>,
    pub operation: Option<String>,
    pub meta: RequestMeta,
}

/// How a provision ended.
#[derive(Debug, Clone, PartialEq)]
pub enum ProvisionOutcome {
    /// 201: provisioned by this request.
    Created(InstanceResponse),
    /// 200: an identical instance already exists.
    AlreadyExists(InstanceResponse),
    /// 202: under way; also the answer to a re-sent request while it is. Only allowed when the
    /// request said `accepts_incomplete=true` — otherwise the framework answers 422
    /// `AsyncRequired` (and logs the broker's mistake).
    InProgress {
        operation: Option<String>,
        dashboard_url: Option<String>,
        metadata: Option<InstanceMetadata>,
    },
}

/// How an update ended.
#[derive(Debug, Clone, PartialEq)]
pub enum UpdateOutcome {
    /// 200: applied (or nothing to do).
    Updated(InstanceResponse),
    /// 202: under way.
    InProgress {
        operation: Option<String>,
        dashboard_url: Option<String>,
        metadata: Option<InstanceMetadata>,
    },
}

/// How a deprovision or unbind ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DeleteOutcome {
    /// 200 `{}`.
    Deleted,
    /// 202: under way.
    InProgress { operation: Option<String> },
}

/// How a bind ended.
#[derive(Debug, Clone, PartialEq)]
pub enum BindOutcome {
    /// 201.
    Created(Binding),
    /// 200: an identical binding already exists.
    AlreadyExists(Binding),
    /// 202: under way. Carries no credentials: the platform fetches the binding when the
    /// operation succeeds, so the offering must be `bindings_retrievable` — otherwise the
    /// framework answers 500 instead.
    InProgress { operation: Option<String> },
}

/// A Service Broker. Implement the methods for the operations your catalog advertises; the
/// optional ones answer 501 by default. Methods are `async fn`s in implementations; their futures
/// must be `Send` so that brokers can be driven from any runtime thread.
///
/// The framework has, before any method runs: checked basic auth and `X-Broker-API-Version`,
/// decoded the originating identity, parsed the body (400 on bad JSON or missing required fields),
/// and for provision, update and bind resolved `service_id`/`plan_id` in the catalog (400 when
/// unknown or when the plan belongs to another offering), refused unbindable plans, binding
/// rotation on plans without `binding_rotatable` and plan changes to non-updateable plans, and
/// checked `maintenance_info.version`.
pub trait ServiceBroker: Send + Sync + 'static {
    /// `GET /v2/catalog`. Called for every request that needs the catalog, so keep it cheap.
    fn catalog(
        &self,
        meta: RequestMeta,
    ) -> impl Future<Output = Result<Catalog, CatalogError>> + Send;

    /// `PUT /v2/service_instances/:instance_id`.
    fn provision(
        &self,
        request: ProvisionRequest,
    ) -> impl Future<Output = Result<ProvisionOutcome, ProvisionError>> + Send;

    /// `PATCH /v2/service_instances/:instance_id`.
    fn update(
        &self,
        request: UpdateRequest,
    ) -> impl Future<Output = Result<UpdateOutcome, UpdateError>> + Send {
        let _ = request;
        async {
            Err(UpdateError::Custom(Failure::not_implemented(
                "instance updates",
            )))
        }
    }

    /// `DELETE /v2/service_instances/:instance_id`.
    fn deprovision(
        &self,
        request: DeprovisionRequest,
    ) -> impl Future<Output = Result<DeleteOutcome, DeprovisionError>> + Send;

    /// `GET /v2/service_instances/:instance_id/last_operation`.
    fn last_operation(
        &self,
        request: LastOperationRequest,
    ) -> impl Future<Output = Result<LastOperation, LastOperationError>> + Send {
        let _ = request;
        async {
            Err(LastOperationError::Custom(Failure::not_implemented(
                "asynchronous instance operations",
            )))
        }
    }

    /// `PUT /v2/service_instances/:instance_id/service_bindings/:binding_id`.
    fn bind(
        &self,
        request: BindRequest,
    ) -> impl Future<Output = Result<BindOutcome, BindError>> + Send {
        let _ = request;
        async { Err(BindError::Custom(Failure::not_implemented("bindings"))) }
    }

    /// `DELETE /v2/service_instances/:instance_id/service_bindings/:binding_id`.
    fn unbind(
        &self,
        request: UnbindRequest,
    ) -> impl Future<Output = Result<DeleteOutcome, UnbindError>> + Send {
        let _ = request;
        async { Err(UnbindError::Custom(Failure::not_implemented("bindings"))) }
    }

    /// `GET /v2/service_instances/:instance_id` (offerings with `instances_retrievable`).
    fn get_instance(
        &self,
        request: GetInstanceRequest,
    ) -> impl Future<Output = Result<InstanceDetails, GetInstanceError>> + Send {
        let _ = request;
        async {
            Err(GetInstanceError::Custom(Failure::not_implemented(
                "fetching service instances",
            )))
        }
    }

    /// `GET …/service_bindings/:binding_id` (offerings with `bindings_retrievable`).
    fn get_binding(
        &self,
        request: GetBindingRequest,
    ) -> impl Future<Output = Result<BindingDetails, GetBindingError>> + Send {
        let _ = request;
        async {
            Err(GetBindingError::Custom(Failure::not_implemented(
                "fetching service bindings",
            )))
        }
    }

    /// `GET …/service_bindings/:binding_id/last_operation`.
    fn last_binding_operation(
        &self,
        request: LastBindingOperationRequest,
    ) -> impl Future<Output = Result<LastOperation, LastOperationError>> + Send {
        let _ = request;
        async {
            Err(LastOperationError::Custom(Failure::not_implemented(
                "asynchronous binding operations",
            )))
        }
    }
}
