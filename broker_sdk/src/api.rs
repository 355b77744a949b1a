//! The OSB request and response bodies (wire shapes). Every struct keeps the fields it does not
//! know in `extra`, as the spec requires of receivers, so vendor extensions survive a round trip.

use std::time::Duration;

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::catalog::MaintenanceInfo;

/// The `context` object of provision, update and bind. The Cloud Foundry profile's fields are
/// typed; everything else (annotations, the Kubernetes profile's `namespace`, …) is in `extra`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Context {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub platform: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub organization_guid: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub organization_name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub space_guid: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub space_name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub instance_name: Option<String>,
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

/// Body of `PUT /v2/service_instances/:instance_id`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ProvisionBody {
    pub service_id: String,
    pub plan_id: String,
    /// Deprecated in favour of `context` but still required by the spec and sent by CF.
    pub organization_guid: String,
    /// Deprecated in favour of `context` but still required by the spec and sent by CF.
    pub space_guid: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub context: Option<Context>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub parameters: Option<Map<String, Value>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub maintenance_info: Option<MaintenanceInfo>,
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

/// `previous_values` of an update.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct PreviousValues {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub plan_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub service_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub organization_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub space_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub maintenance_info: Option<MaintenanceInfo>,
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

/// Body of `PATCH /v2/service_instances/:instance_id`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct UpdateBody {
    pub service_id: String,
    /// Absent: the broker must not change the plan.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub plan_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub context: Option<Context>,
    /// Absent: the broker must not change the parameters.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub parameters: Option<Map<String, Value>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub previous_values: Option<PreviousValues>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub maintenance_info: Option<MaintenanceInfo>,
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

/// `bind_resource` of a bind request (CF adds `space_guid`, `app_annotations`,
/// `credential_client_id`).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct BindResource {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub app_guid: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub space_guid: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub route: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub credential_client_id: Option<String>,
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

/// Body of `PUT /v2/service_instances/:instance_id/service_bindings/:binding_id`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct BindBody {
    pub service_id: String,
    pub plan_id: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub context: Option<Context>,
    /// Deprecated in favour of `bind_resource.app_guid`; CF still sends it for app bindings.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub app_guid: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bind_resource: Option<BindResource>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub parameters: Option<Map<String, Value>>,
    /// Binding rotation (2.17).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub predecessor_binding_id: Option<String>,
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

impl BindBody {
    /// The app being bound: `bind_resource.app_guid`, else the deprecated top-level `app_guid`.
    pub fn app_guid(&self) -> Option<&str> {
        self.bind_resource
            .as_ref()
            .and_then(|resource| resource.app_guid.as_deref())
            .or(self.app_guid.as_deref())
    }
}

/// `metadata` of an instance (2.16): labels and attributes.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct InstanceMetadata {
    #[serde(default, skip_serializing_if = "Map::is_empty")]
    pub labels: Map<String, Value>,
    #[serde(default, skip_serializing_if = "Map::is_empty")]
    pub attributes: Map<String, Value>,
}

/// What a finished provision (201/200) or update (200) answers.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct InstanceResponse {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dashboard_url: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub metadata: Option<InstanceMetadata>,
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

/// The answer to `GET /v2/service_instances/:instance_id`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct InstanceDetails {
    pub service_id: String,
    pub plan_id: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dashboard_url: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub parameters: Option<Map<String, Value>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub maintenance_info: Option<MaintenanceInfo>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub metadata: Option<InstanceMetadata>,
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

/// `metadata` of a binding: expiry for rotation.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct BindingMetadata {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expires_at: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub renew_before: Option<String>,
}

/// A volume mount of a binding (needs `requires: ["volume_mount"]`).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct VolumeMount {
    pub driver: String,
    pub container_dir: String,
    /// `r` or `rw`.
    pub mode: String,
    /// Only `shared` is defined.
    pub device_type: String,
    pub device: Value,
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

/// A network endpoint of a binding.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Endpoint {
    pub host: String,
    /// `"443"` or ranges like `"9000-9010"`.
    pub ports: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub protocol: Option<String>,
}

/// A finished binding: what bind answers with 200/201 and fetch binding with 200.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Binding {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub credentials: Option<Map<String, Value>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub syslog_drain_url: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub route_service_url: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub volume_mounts: Option<Vec<VolumeMount>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub endpoints: Option<Vec<Endpoint>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub metadata: Option<BindingMetadata>,
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

/// The answer to `GET …/service_bindings/:binding_id`: the binding plus its `parameters`.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct BindingDetails {
    #[serde(flatten)]
    pub binding: Binding,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub parameters: Option<Map<String, Value>>,
}

/// `state` of a last operation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum OperationState {
    #[serde(rename = "in progress")]
    InProgress,
    #[serde(rename = "succeeded")]
    Succeeded,
    #[serde(rename = "failed")]
    Failed,
}

/// The answer to a `last_operation` poll. `retry_after` becomes the `Retry-After` header
/// (seconds), never part of the body.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct LastOperation {
    pub state: OperationState,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// Only meaningful for failed updates and deprovisions of instances.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub instance_usable: Option<bool>,
    /// Only meaningful for failed updates of instances.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub update_repeatable: Option<bool>,
    #[serde(skip)]
    pub retry_after: Option<Duration>,
}

impl LastOperation {
    fn new(state: OperationState, description: Option<String>) -> Self {
        Self {
            state,
            description,
            instance_usable: None,
            update_repeatable: None,
            retry_after: None,
        }
    }

    /// `in progress`, asking the platform to poll again after `retry_after`.
    pub fn in_progress(description: impl Into<String>, retry_after: Option<Duration>) -> Self {
        Self {
            retry_after,
            ..Self::new(OperationState::InProgress, Some(description.into()))
        }
    }

    /// `succeeded`.
    pub fn succeeded(description: impl Into<String>) -> Self {
        Self::new(OperationState::Succeeded, Some(description.into()))
    }

    /// `failed`, with a description the platform shows to the user.
    pub fn failed(description: impl Into<String>) -> Self {
        Self::new(OperationState::Failed, Some(description.into()))
    }
}

/// An OSB error body. `error` is one of the spec's codes (`AsyncRequired`, `ConcurrencyError`,
/// `RequiresApp`, `MaintenanceInfoConflict`) or absent; `description` is shown to users.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ErrorBody {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub instance_usable: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub update_repeatable: Option<bool>,
}
