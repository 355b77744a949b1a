//! Storage rows. They never derive `Serialize`: the v3 and v2 presenters convert them at the edge.

use diesel::prelude::*;

use super::schema::*;

/// An organization quota (`quota_definitions`). `-1` means unlimited.
#[derive(Debug, Clone, Queryable, Selectable)]
#[diesel(table_name = quota_definitions)]
pub struct QuotaRow {
    pub id: i32,
    pub guid: String,
    pub name: String,
    pub created_at: String,
    pub updated_at: String,
    pub non_basic_services_allowed: bool,
    pub total_services: i32,
    pub total_routes: i32,
    pub memory_limit: i32,
    pub instance_memory_limit: i32,
    pub app_instance_limit: i32,
    pub app_task_limit: i32,
    pub total_service_keys: i32,
    pub total_reserved_route_ports: i32,
    pub total_private_domains: i32,
    pub log_rate_limit: i64,
}

/// An organization.
#[derive(Debug, Clone, Queryable, Selectable)]
#[diesel(table_name = organizations)]
pub struct OrgRow {
    pub id: i32,
    pub guid: String,
    pub name: String,
    pub created_at: String,
    pub updated_at: String,
    pub suspended: bool,
    pub billing_enabled: bool,
    pub quota_definition_id: i32,
    pub default_isolation_segment_guid: Option<String>,
}

/// A new organization.
#[derive(Debug, Insertable)]
#[diesel(table_name = organizations)]
pub struct NewOrg<'a> {
    pub guid: &'a str,
    pub name: &'a str,
    pub created_at: &'a str,
    pub updated_at: &'a str,
    pub suspended: bool,
    pub billing_enabled: bool,
    pub quota_definition_id: i32,
    /// The name folded for case-insensitive uniqueness ([`crate::store::name_key`]).
    pub name_lower: &'a str,
}

/// A space.
#[derive(Debug, Clone, Queryable, Selectable)]
#[diesel(table_name = spaces)]
pub struct SpaceRow {
    pub id: i32,
    pub guid: String,
    pub name: String,
    pub organization_id: i32,
    pub created_at: String,
    pub updated_at: String,
    pub allow_ssh: bool,
}

/// A new space.
#[derive(Debug, Insertable)]
#[diesel(table_name = spaces)]
pub struct NewSpace<'a> {
    pub guid: &'a str,
    pub name: &'a str,
    pub organization_id: i32,
    pub created_at: &'a str,
    pub updated_at: &'a str,
    pub allow_ssh: bool,
    /// The name folded for case-insensitive uniqueness ([`crate::store::name_key`]).
    pub name_lower: &'a str,
}

/// A Cloud Controller user: a UAA user id (or client id) plus the name and origin last learned.
#[derive(Debug, Clone, Queryable, Selectable)]
#[diesel(table_name = users)]
pub struct UserRow {
    pub id: i32,
    pub guid: String,
    pub username: Option<String>,
    pub origin: Option<String>,
    pub is_client: bool,
    pub created_at: String,
    pub updated_at: String,
}

/// A new user.
#[derive(Debug, Insertable)]
#[diesel(table_name = users)]
pub struct NewUser<'a> {
    pub guid: &'a str,
    pub username: Option<&'a str>,
    pub origin: Option<&'a str>,
    pub is_client: bool,
    pub created_at: &'a str,
    pub updated_at: &'a str,
}

/// A role: `organization_id` is always set (for space roles, the space's org), `space_id` only
/// for space roles.
#[derive(Debug, Clone, Queryable, Selectable)]
#[diesel(table_name = roles)]
pub struct RoleRow {
    pub id: i32,
    pub guid: String,
    pub role_type: String,
    pub user_id: i32,
    pub organization_id: i32,
    pub space_id: Option<i32>,
    pub created_at: String,
    pub updated_at: String,
}

/// A new role.
#[derive(Debug, Insertable)]
#[diesel(table_name = roles)]
pub struct NewRole<'a> {
    pub guid: &'a str,
    pub role_type: &'a str,
    pub user_id: i32,
    pub organization_id: i32,
    pub space_id: Option<i32>,
    pub created_at: &'a str,
    pub updated_at: &'a str,
}

/// A feature flag.
#[derive(Debug, Clone, Queryable, Selectable)]
#[diesel(table_name = feature_flags)]
pub struct FeatureFlagRow {
    pub id: i32,
    pub name: String,
    pub enabled: bool,
    pub error_message: Option<String>,
    pub created_at: String,
    pub updated_at: String,
}

/// A stack.
#[derive(Debug, Clone, Queryable, Selectable)]
#[diesel(table_name = stacks)]
pub struct StackRow {
    pub id: i32,
    pub guid: String,
    pub name: String,
    pub description: String,
    pub created_at: String,
    pub updated_at: String,
}

/// A domain; shared when `owning_organization_id` is `None`.
#[derive(Debug, Clone, Queryable, Selectable)]
#[diesel(table_name = domains)]
pub struct DomainRow {
    pub id: i32,
    pub guid: String,
    pub name: String,
    pub internal: bool,
    pub owning_organization_id: Option<i32>,
    pub created_at: String,
    pub updated_at: String,
}

/// A pollable job. `errors` and `warnings` hold JSON arrays.
#[derive(Debug, Clone, Queryable, Selectable)]
#[diesel(table_name = jobs)]
pub struct JobRow {
    pub id: i32,
    pub guid: String,
    pub operation: String,
    pub state: String,
    pub resource_type: String,
    pub resource_guid: String,
    pub errors: String,
    pub warnings: String,
    pub created_at: String,
    pub updated_at: String,
}

/// A new organization quota.
#[derive(Debug, Insertable)]
#[diesel(table_name = quota_definitions)]
pub struct NewQuota<'a> {
    pub guid: &'a str,
    pub name: &'a str,
    pub created_at: &'a str,
    pub updated_at: &'a str,
    pub non_basic_services_allowed: bool,
    pub total_services: i32,
    pub total_routes: i32,
    pub memory_limit: i32,
    pub instance_memory_limit: i32,
    pub app_instance_limit: i32,
    pub app_task_limit: i32,
    pub total_service_keys: i32,
    pub total_reserved_route_ports: i32,
    pub total_private_domains: i32,
    pub log_rate_limit: i64,
}

/// An app (CC's `apps_v3`). `buildpacks` is a JSON array of names, `environment_variables` a JSON
/// object of strings.
#[derive(Debug, Clone, Queryable, Selectable)]
#[diesel(table_name = apps)]
pub struct AppRow {
    pub id: i32,
    pub guid: String,
    pub name: String,
    pub space_id: i32,
    pub state: String,
    pub lifecycle_type: String,
    pub buildpacks: String,
    pub stack: Option<String>,
    pub environment_variables: String,
    pub droplet_guid: Option<String>,
    pub created_at: String,
    pub updated_at: String,
}

/// A new app.
#[derive(Debug, Insertable)]
#[diesel(table_name = apps)]
pub struct NewApp<'a> {
    pub guid: &'a str,
    pub name: &'a str,
    pub space_id: i32,
    pub state: &'a str,
    pub lifecycle_type: &'a str,
    pub buildpacks: &'a str,
    pub stack: Option<&'a str>,
    pub environment_variables: &'a str,
    pub created_at: &'a str,
    pub updated_at: &'a str,
}

/// A process of an app. `log_rate_limit` is bytes per second, `-1` for unlimited.
#[derive(Debug, Clone, Queryable, Selectable)]
#[diesel(table_name = processes)]
pub struct ProcessRow {
    pub id: i32,
    pub guid: String,
    pub app_id: i32,
    pub process_type: String,
    pub command: Option<String>,
    pub instances: i32,
    pub memory_in_mb: i32,
    pub disk_in_mb: i32,
    pub log_rate_limit: i64,
    pub health_check_type: String,
    pub health_check_endpoint: Option<String>,
    pub health_check_timeout: Option<i32>,
    pub health_check_invocation_timeout: Option<i32>,
    pub created_at: String,
    pub updated_at: String,
}

/// A package of an app.
#[derive(Debug, Clone, Queryable, Selectable)]
#[diesel(table_name = packages)]
pub struct PackageRow {
    pub id: i32,
    pub guid: String,
    pub app_id: i32,
    pub package_type: String,
    pub state: String,
    pub checksum_sha256: Option<String>,
    pub error: Option<String>,
    pub created_at: String,
    pub updated_at: String,
}

/// A build: staging of a package. `buildpacks` is a JSON array.
#[derive(Debug, Clone, Queryable, Selectable)]
#[diesel(table_name = builds)]
pub struct BuildRow {
    pub id: i32,
    pub guid: String,
    pub app_id: i32,
    pub package_id: i32,
    pub state: String,
    pub error: Option<String>,
    pub buildpacks: String,
    pub stack: Option<String>,
    pub staging_memory_in_mb: i32,
    pub staging_disk_in_mb: i32,
    pub droplet_guid: Option<String>,
    pub created_by_guid: String,
    pub created_by_name: String,
    pub created_at: String,
    pub updated_at: String,
}

/// A droplet. `buildpacks` is a JSON array of `{name, buildpack_name, detect_output, version}`,
/// `process_types` a JSON object of type → command.
#[derive(Debug, Clone, Queryable, Selectable)]
#[diesel(table_name = droplets)]
pub struct DropletRow {
    pub id: i32,
    pub guid: String,
    pub app_id: i32,
    pub package_id: Option<i32>,
    pub state: String,
    pub error: Option<String>,
    pub buildpacks: String,
    pub stack: Option<String>,
    pub process_types: String,
    pub execution_metadata: String,
    pub checksum_sha256: Option<String>,
    pub created_at: String,
    pub updated_at: String,
    /// SHA-1 of the droplet tarball.
    pub droplet_hash: Option<String>,
}

/// An admin buildpack; its zip is in the blob store under `buildpacks/<guid>`.
#[derive(Debug, Clone, Queryable, Selectable)]
#[diesel(table_name = buildpacks)]
pub struct BuildpackRow {
    pub id: i32,
    pub guid: String,
    pub name: String,
    pub stack: Option<String>,
    pub position: i32,
    pub enabled: bool,
    pub locked: bool,
    pub filename: Option<String>,
    pub key: Option<String>,
    pub created_at: String,
    pub updated_at: String,
}

/// An HTTP route; `host` and `path` are empty strings when absent.
#[derive(Debug, Clone, Queryable, Selectable)]
#[diesel(table_name = routes)]
pub struct RouteRow {
    pub id: i32,
    pub guid: String,
    pub host: String,
    pub path: String,
    pub domain_id: i32,
    pub space_id: i32,
    pub created_at: String,
    pub updated_at: String,
}

/// Where a route sends traffic: an app's process on a port.
#[derive(Debug, Clone, Queryable, Selectable)]
#[diesel(table_name = route_destinations)]
pub struct DestinationRow {
    pub id: i32,
    pub guid: String,
    pub route_id: i32,
    pub app_id: i32,
    pub process_type: String,
    pub port: i32,
    pub protocol: String,
    pub created_at: String,
    pub updated_at: String,
}

/// A service broker. `password` is never presented.
#[derive(Debug, Clone, Queryable, Selectable)]
#[diesel(table_name = service_brokers)]
pub struct ServiceBrokerRow {
    pub id: i32,
    pub guid: String,
    pub name: String,
    pub url: String,
    pub username: String,
    pub password: String,
    pub space_id: Option<i32>,
    pub state: String,
    pub created_at: String,
    pub updated_at: String,
}

/// A service offering from a broker's catalog (`broker_id` is the catalog `id`; JSON columns
/// hold `tags`, `requires` and `metadata`).
#[derive(Debug, Clone, Queryable, Selectable)]
#[diesel(table_name = service_offerings)]
pub struct ServiceOfferingRow {
    pub id: i32,
    pub guid: String,
    pub service_broker_id: i32,
    pub broker_id: String,
    pub name: String,
    pub description: String,
    pub bindable: bool,
    pub plan_updateable: bool,
    pub instances_retrievable: bool,
    pub bindings_retrievable: bool,
    pub allow_context_updates: bool,
    pub tags: String,
    pub requires: String,
    pub metadata: String,
    pub active: bool,
    pub created_at: String,
    pub updated_at: String,
}

/// A service plan (`public` is the "visible to everyone" flag; `active` false once the plan
/// left the catalog while instances still use it).
#[derive(Debug, Clone, Queryable, Selectable)]
#[diesel(table_name = service_plans)]
pub struct ServicePlanRow {
    pub id: i32,
    pub guid: String,
    pub service_offering_id: i32,
    pub broker_id: String,
    pub name: String,
    pub description: String,
    pub free: bool,
    pub bindable: Option<bool>,
    pub plan_updateable: Option<bool>,
    pub maximum_polling_duration: Option<i32>,
    pub maintenance_info: Option<String>,
    pub schemas: String,
    pub metadata: String,
    pub public: bool,
    pub active: bool,
    pub created_at: String,
    pub updated_at: String,
}

/// A plan made visible to one organization.
#[derive(Debug, Clone, Queryable, Selectable)]
#[diesel(table_name = service_plan_visibilities)]
pub struct PlanVisibilityRow {
    pub id: i32,
    pub guid: String,
    pub service_plan_id: i32,
    pub organization_id: i32,
    pub created_at: String,
}

/// A service instance: `managed` (with a plan) or `user-provided` (with credentials).
#[derive(Debug, Clone, Queryable, Selectable)]
#[diesel(table_name = service_instances)]
pub struct ServiceInstanceRow {
    pub id: i32,
    pub guid: String,
    pub name: String,
    pub instance_type: String,
    pub space_id: i32,
    pub service_plan_id: Option<i32>,
    pub credentials: Option<String>,
    pub syslog_drain_url: Option<String>,
    pub route_service_url: Option<String>,
    pub tags: String,
    pub dashboard_url: Option<String>,
    pub maintenance_info: Option<String>,
    pub last_operation_type: Option<String>,
    pub last_operation_state: Option<String>,
    pub last_operation_description: Option<String>,
    pub last_operation_created_at: Option<String>,
    pub last_operation_updated_at: Option<String>,
    pub broker_operation: Option<String>,
    pub proposed_plan_id: Option<i32>,
    pub job_guid: Option<String>,
    pub created_at: String,
    pub updated_at: String,
}

/// A credential binding: an app binding (`app_id`) or a service key (`binding_type = "key"`).
#[derive(Debug, Clone, Queryable, Selectable)]
#[diesel(table_name = service_credential_bindings)]
pub struct CredentialBindingRow {
    pub id: i32,
    pub guid: String,
    pub binding_type: String,
    pub name: Option<String>,
    pub service_instance_id: i32,
    pub app_id: Option<i32>,
    pub credentials: Option<String>,
    pub syslog_drain_url: Option<String>,
    pub volume_mounts: Option<String>,
    pub parameters: Option<String>,
    pub last_operation_type: String,
    pub last_operation_state: String,
    pub last_operation_description: Option<String>,
    pub last_operation_created_at: String,
    pub last_operation_updated_at: String,
    pub broker_operation: Option<String>,
    pub job_guid: Option<String>,
    pub created_at: String,
    pub updated_at: String,
}
