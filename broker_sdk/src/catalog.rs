//! The catalog a broker advertises on `GET /v2/catalog`: service offerings, their plans, schemas
//! and maintenance info, with every unknown field kept in `extra`.

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

/// The body of `GET /v2/catalog`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Catalog {
    pub services: Vec<ServiceOffering>,
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

impl Catalog {
    /// The offering with this catalog id.
    pub fn service(&self, service_id: &str) -> Option<&ServiceOffering> {
        self.services
            .iter()
            .find(|service| service.id == service_id)
    }

    /// The offering with this id and its plan with this id — `None` when either is unknown or
    /// the plan belongs to another offering.
    pub fn service_and_plan(
        &self,
        service_id: &str,
        plan_id: &str,
    ) -> Option<(&ServiceOffering, &ServicePlan)> {
        let service = self.service(service_id)?;
        let plan = service.plan(plan_id)?;
        Some((service, plan))
    }
}

/// A service offering (OSB "Service Offering object").
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ServiceOffering {
    pub id: String,
    pub name: String,
    pub description: String,
    pub bindable: bool,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tags: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub requires: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub instances_retrievable: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bindings_retrievable: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub allow_context_updates: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub metadata: Option<Map<String, Value>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dashboard_client: Option<DashboardClient>,
    /// OSB keeps the historic spelling `plan_updateable` on the wire.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub plan_updateable: Option<bool>,
    pub plans: Vec<ServicePlan>,
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

impl ServiceOffering {
    /// This offering's plan with this id.
    pub fn plan(&self, plan_id: &str) -> Option<&ServicePlan> {
        self.plans.iter().find(|plan| plan.id == plan_id)
    }

    /// Whether bindings to instances of `plan` are allowed (the plan overrides the offering).
    pub fn plan_is_bindable(&self, plan: &ServicePlan) -> bool {
        plan.bindable.unwrap_or(self.bindable)
    }

    /// Whether instances may change *to another plan* from `plan` (the plan overrides the
    /// offering; parameter-only updates are always allowed).
    pub fn plan_is_updateable(&self, plan: &ServicePlan) -> bool {
        plan.plan_updateable
            .unwrap_or(self.plan_updateable.unwrap_or(false))
    }
}

/// `dashboard_client` (a Cloud Foundry extension): UAA client for the broker's dashboard.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct DashboardClient {
    pub id: String,
    pub secret: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub redirect_uri: Option<String>,
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

/// A plan of an offering (OSB "Service Plan object").
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ServicePlan {
    pub id: String,
    pub name: String,
    pub description: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub metadata: Option<Map<String, Value>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub free: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bindable: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub binding_rotatable: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub plan_updateable: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub schemas: Option<Schemas>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub maximum_polling_duration: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub maintenance_info: Option<MaintenanceInfo>,
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

/// `maintenance_info`: a SemVer `version` and a description of what an upgrade does.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct MaintenanceInfo {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

/// `schemas` of a plan: JSON Schemas for the `parameters` of each operation.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Schemas {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub service_instance: Option<ServiceInstanceSchemas>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub service_binding: Option<ServiceBindingSchemas>,
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

/// `schemas.service_instance`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ServiceInstanceSchemas {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub create: Option<InputParametersSchema>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub update: Option<InputParametersSchema>,
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

/// `schemas.service_binding`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ServiceBindingSchemas {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub create: Option<InputParametersSchema>,
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

/// `{"parameters": <JSON Schema>}`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct InputParametersSchema {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub parameters: Option<Value>,
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}
