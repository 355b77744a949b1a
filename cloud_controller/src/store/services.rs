//! Services storage: brokers, their catalog (offerings and plans, matched across syncs by the
//! broker's ids), plan visibilities, service instances (managed and user-provided) with their
//! last operation, credential bindings (app and key), and the views built from them:
//! [`vcap_services`] (an app's `VCAP_SERVICES`) and [`syslog_drain_urls`] (the internal drain
//! list).

use std::collections::{BTreeMap, HashMap};

use diesel::prelude::*;
use serde_json::{json, Map, Value};

use super::{new_guid, now, StoreError};
use crate::db::models::{
    CredentialBindingRow, PlanVisibilityRow, ServiceBrokerRow, ServiceInstanceRow,
    ServiceOfferingRow, ServicePlanRow,
};
use crate::db::schema::{
    apps, organizations, service_brokers, service_credential_bindings, service_instances,
    service_offerings, service_plan_visibilities, service_plans, spaces,
};
use crate::db::DbConn;
use crate::error::{ApiError, ErrorKind};
use crate::service_catalog::CatalogOffering;

/// `type` of a managed instance.
pub const MANAGED: &str = "managed";
/// `type` of a user-provided instance.
pub const USER_PROVIDED: &str = "user-provided";
/// Last-operation states.
pub const IN_PROGRESS: &str = "in progress";
/// Succeeded.
pub const SUCCEEDED: &str = "succeeded";
/// Failed.
pub const FAILED: &str = "failed";

/// Broker states (CC's `service_broker_states`).
pub mod broker_state {
    /// Catalog in sync.
    pub const AVAILABLE: &str = "AVAILABLE";
    /// A catalog fetch is running.
    pub const SYNCHRONIZING: &str = "SYNCHRONIZING";
    /// The last catalog fetch failed.
    pub const SYNCHRONIZATION_FAILED: &str = "SYNCHRONIZATION_FAILED";
    /// Being deleted.
    pub const DELETE_IN_PROGRESS: &str = "DELETE_IN_PROGRESS";
}

fn json_text(value: &Value) -> String {
    value.to_string()
}

/// Parses a JSON column, `Null` when it is absent or unreadable.
pub fn parse_json(text: Option<&str>) -> Value {
    text.and_then(|text| serde_json::from_str(text).ok())
        .unwrap_or(Value::Null)
}

// ---------------------------------------------------------------------------------------------
// Brokers

/// Every broker, in creation order.
pub fn list_brokers(conn: &mut DbConn) -> Result<Vec<ServiceBrokerRow>, ApiError> {
    Ok(service_brokers::table
        .order(service_brokers::id.asc())
        .select(ServiceBrokerRow::as_select())
        .load(conn)?)
}

/// The broker with this GUID.
pub fn find_broker(conn: &mut DbConn, guid: &str) -> Result<Option<ServiceBrokerRow>, ApiError> {
    Ok(service_brokers::table
        .filter(service_brokers::guid.eq(guid))
        .select(ServiceBrokerRow::as_select())
        .first(conn)
        .optional()?)
}

/// The broker with this id.
pub fn find_broker_by_id(conn: &mut DbConn, id: i32) -> Result<Option<ServiceBrokerRow>, ApiError> {
    Ok(service_brokers::table
        .find(id)
        .select(ServiceBrokerRow::as_select())
        .first(conn)
        .optional()?)
}

/// Inserts a broker in state SYNCHRONIZING; `Conflict` when the name is taken.
pub fn create_broker(
    conn: &mut DbConn,
    name: &str,
    url: &str,
    credentials: (&str, &str),
    space_id: Option<i32>,
) -> Result<ServiceBrokerRow, StoreError> {
    let guid = new_guid();
    let timestamp = now();
    diesel::insert_into(service_brokers::table)
        .values((
            service_brokers::guid.eq(&guid),
            service_brokers::name.eq(name),
            service_brokers::url.eq(url),
            service_brokers::username.eq(credentials.0),
            service_brokers::password.eq(credentials.1),
            service_brokers::space_id.eq(space_id),
            service_brokers::state.eq(broker_state::SYNCHRONIZING),
            service_brokers::created_at.eq(&timestamp),
            service_brokers::updated_at.eq(&timestamp),
        ))
        .execute(conn)?;
    find_broker(conn, &guid)?
        .ok_or_else(|| StoreError::Api(ApiError::internal("broker vanished after insert")))
}

/// Changes a broker's name, URL and/or credentials; `Conflict` when the name is taken.
pub fn update_broker(
    conn: &mut DbConn,
    id: i32,
    name: Option<&str>,
    url: Option<&str>,
    credentials: Option<(&str, &str)>,
) -> Result<(), StoreError> {
    if let Some(name) = name {
        diesel::update(service_brokers::table.find(id))
            .set(service_brokers::name.eq(name))
            .execute(conn)?;
    }
    if let Some(url) = url {
        diesel::update(service_brokers::table.find(id))
            .set(service_brokers::url.eq(url))
            .execute(conn)?;
    }
    if let Some((username, password)) = credentials {
        diesel::update(service_brokers::table.find(id))
            .set((
                service_brokers::username.eq(username),
                service_brokers::password.eq(password),
            ))
            .execute(conn)?;
    }
    diesel::update(service_brokers::table.find(id))
        .set(service_brokers::updated_at.eq(now()))
        .execute(conn)?;
    Ok(())
}

/// Sets a broker's state.
pub fn set_broker_state(conn: &mut DbConn, id: i32, state: &str) -> Result<(), ApiError> {
    diesel::update(service_brokers::table.find(id))
        .set((
            service_brokers::state.eq(state),
            service_brokers::updated_at.eq(now()),
        ))
        .execute(conn)?;
    Ok(())
}

/// Deletes a broker with its offerings, plans and visibilities.
pub fn delete_broker(conn: &mut DbConn, id: i32) -> Result<(), ApiError> {
    conn.write_transaction(|conn| {
        let offering_ids: Vec<i32> = service_offerings::table
            .filter(service_offerings::service_broker_id.eq(id))
            .select(service_offerings::id)
            .load(conn)?;
        let plan_ids: Vec<i32> = service_plans::table
            .filter(service_plans::service_offering_id.eq_any(&offering_ids))
            .select(service_plans::id)
            .load(conn)?;
        diesel::delete(
            service_plan_visibilities::table
                .filter(service_plan_visibilities::service_plan_id.eq_any(&plan_ids)),
        )
        .execute(conn)?;
        diesel::delete(service_plans::table.filter(service_plans::id.eq_any(&plan_ids)))
            .execute(conn)?;
        diesel::delete(
            service_offerings::table.filter(service_offerings::id.eq_any(&offering_ids)),
        )
        .execute(conn)?;
        diesel::delete(service_brokers::table.find(id)).execute(conn)?;
        Ok(())
    })
}

/// Names of the instances that use plans of this broker.
pub fn broker_instance_names(conn: &mut DbConn, broker_id: i32) -> Result<Vec<String>, ApiError> {
    Ok(service_instances::table
        .inner_join(
            service_plans::table
                .on(service_instances::service_plan_id.eq(service_plans::id.nullable())),
        )
        .inner_join(
            service_offerings::table
                .on(service_plans::service_offering_id.eq(service_offerings::id)),
        )
        .filter(service_offerings::service_broker_id.eq(broker_id))
        .select(service_instances::name)
        .load(conn)?)
}

// ---------------------------------------------------------------------------------------------
// Catalog

/// Every offering, in creation order.
pub fn list_offerings(conn: &mut DbConn) -> Result<Vec<ServiceOfferingRow>, ApiError> {
    Ok(service_offerings::table
        .order(service_offerings::id.asc())
        .select(ServiceOfferingRow::as_select())
        .load(conn)?)
}

/// Every plan, in creation order.
pub fn list_plans(conn: &mut DbConn) -> Result<Vec<ServicePlanRow>, ApiError> {
    Ok(service_plans::table
        .order(service_plans::id.asc())
        .select(ServicePlanRow::as_select())
        .load(conn)?)
}

/// Every plan visibility.
pub fn list_visibilities(conn: &mut DbConn) -> Result<Vec<PlanVisibilityRow>, ApiError> {
    Ok(service_plan_visibilities::table
        .order(service_plan_visibilities::id.asc())
        .select(PlanVisibilityRow::as_select())
        .load(conn)?)
}

/// The offering with this id.
pub fn find_offering_by_id(
    conn: &mut DbConn,
    id: i32,
) -> Result<Option<ServiceOfferingRow>, ApiError> {
    Ok(service_offerings::table
        .find(id)
        .select(ServiceOfferingRow::as_select())
        .first(conn)
        .optional()?)
}

/// The plan with this id.
pub fn find_plan_by_id(conn: &mut DbConn, id: i32) -> Result<Option<ServicePlanRow>, ApiError> {
    Ok(service_plans::table
        .find(id)
        .select(ServicePlanRow::as_select())
        .first(conn)
        .optional()?)
}

/// The plan with this GUID.
pub fn find_plan(conn: &mut DbConn, guid: &str) -> Result<Option<ServicePlanRow>, ApiError> {
    Ok(service_plans::table
        .filter(service_plans::guid.eq(guid))
        .select(ServicePlanRow::as_select())
        .first(conn)
        .optional()?)
}

/// Brings the broker's offerings and plans in line with a validated catalog, matching by the
/// broker's ids: new plans are private; plans gone from the catalog are deleted, or deactivated
/// while instances use them; offerings without plans are deleted. Returns CC's warnings.
pub fn sync_catalog(
    conn: &mut DbConn,
    broker: &ServiceBrokerRow,
    catalog: &[CatalogOffering],
) -> Result<Vec<String>, ApiError> {
    conn.write_transaction(|conn| {
        let timestamp = now();
        let existing: Vec<ServiceOfferingRow> = service_offerings::table
            .filter(service_offerings::service_broker_id.eq(broker.id))
            .select(ServiceOfferingRow::as_select())
            .load(conn)?;
        let mut kept_plan_ids = Vec::new();
        let mut kept_offering_ids = Vec::new();
        for offering in catalog {
            let tags = json_text(&json!(offering.tags));
            let requires = json_text(&json!(offering.requires));
            let metadata = json_text(&offering.metadata);
            let offering_id = match existing.iter().find(|row| row.broker_id == offering.id) {
                Some(row) => {
                    diesel::update(service_offerings::table.find(row.id))
                        .set((
                            service_offerings::name.eq(&offering.name),
                            service_offerings::description.eq(&offering.description),
                            service_offerings::bindable.eq(offering.bindable),
                            service_offerings::plan_updateable.eq(offering.plan_updateable),
                            service_offerings::instances_retrievable
                                .eq(offering.instances_retrievable),
                            service_offerings::bindings_retrievable
                                .eq(offering.bindings_retrievable),
                            service_offerings::allow_context_updates
                                .eq(offering.allow_context_updates),
                            service_offerings::tags.eq(&tags),
                            service_offerings::requires.eq(&requires),
                            service_offerings::metadata.eq(&metadata),
                            service_offerings::active.eq(true),
                            service_offerings::updated_at.eq(&timestamp),
                        ))
                        .execute(conn)?;
                    row.id
                }
                None => {
                    let guid = new_guid();
                    diesel::insert_into(service_offerings::table)
                        .values((
                            service_offerings::guid.eq(&guid),
                            service_offerings::service_broker_id.eq(broker.id),
                            service_offerings::broker_id.eq(&offering.id),
                            service_offerings::name.eq(&offering.name),
                            service_offerings::description.eq(&offering.description),
                            service_offerings::bindable.eq(offering.bindable),
                            service_offerings::plan_updateable.eq(offering.plan_updateable),
                            service_offerings::instances_retrievable
                                .eq(offering.instances_retrievable),
                            service_offerings::bindings_retrievable
                                .eq(offering.bindings_retrievable),
                            service_offerings::allow_context_updates
                                .eq(offering.allow_context_updates),
                            service_offerings::tags.eq(&tags),
                            service_offerings::requires.eq(&requires),
                            service_offerings::metadata.eq(&metadata),
                            service_offerings::active.eq(true),
                            service_offerings::created_at.eq(&timestamp),
                            service_offerings::updated_at.eq(&timestamp),
                        ))
                        .execute(conn)?;
                    service_offerings::table
                        .filter(service_offerings::guid.eq(&guid))
                        .select(service_offerings::id)
                        .first(conn)?
                }
            };
            kept_offering_ids.push(offering_id);
            let existing_plans: Vec<ServicePlanRow> = service_plans::table
                .filter(service_plans::service_offering_id.eq(offering_id))
                .select(ServicePlanRow::as_select())
                .load(conn)?;
            for plan in &offering.plans {
                let schemas = json_text(&plan.schemas);
                let metadata = json_text(&plan.metadata);
                let maintenance_info = plan.maintenance_info.as_ref().map(json_text);
                match existing_plans.iter().find(|row| row.broker_id == plan.id) {
                    Some(row) => {
                        diesel::update(service_plans::table.find(row.id))
                            .set((
                                service_plans::name.eq(&plan.name),
                                service_plans::description.eq(&plan.description),
                                service_plans::free.eq(plan.free),
                                service_plans::bindable.eq(plan.bindable),
                                service_plans::plan_updateable.eq(plan.plan_updateable),
                                service_plans::maximum_polling_duration
                                    .eq(plan.maximum_polling_duration),
                                service_plans::maintenance_info.eq(&maintenance_info),
                                service_plans::schemas.eq(&schemas),
                                service_plans::metadata.eq(&metadata),
                                service_plans::active.eq(true),
                                service_plans::updated_at.eq(&timestamp),
                            ))
                            .execute(conn)?;
                        kept_plan_ids.push(row.id);
                    }
                    None => {
                        let guid = new_guid();
                        diesel::insert_into(service_plans::table)
                            .values((
                                service_plans::guid.eq(&guid),
                                service_plans::service_offering_id.eq(offering_id),
                                service_plans::broker_id.eq(&plan.id),
                                service_plans::name.eq(&plan.name),
                                service_plans::description.eq(&plan.description),
                                service_plans::free.eq(plan.free),
                                service_plans::bindable.eq(plan.bindable),
                                service_plans::plan_updateable.eq(plan.plan_updateable),
                                service_plans::maximum_polling_duration
                                    .eq(plan.maximum_polling_duration),
                                service_plans::maintenance_info.eq(&maintenance_info),
                                service_plans::schemas.eq(&schemas),
                                service_plans::metadata.eq(&metadata),
                                service_plans::public.eq(false),
                                service_plans::active.eq(true),
                                service_plans::created_at.eq(&timestamp),
                                service_plans::updated_at.eq(&timestamp),
                            ))
                            .execute(conn)?;
                        let id: i32 = service_plans::table
                            .filter(service_plans::guid.eq(&guid))
                            .select(service_plans::id)
                            .first(conn)?;
                        kept_plan_ids.push(id);
                    }
                }
            }
        }
        // Plans and offerings that left the catalog.
        let all_offering_ids: Vec<i32> = existing.iter().map(|row| row.id).collect();
        let stale_plans: Vec<ServicePlanRow> = service_plans::table
            .filter(service_plans::service_offering_id.eq_any(&all_offering_ids))
            .filter(diesel::dsl::not(service_plans::id.eq_any(&kept_plan_ids)))
            .select(ServicePlanRow::as_select())
            .load(conn)?;
        let mut deactivated = Vec::new();
        for plan in stale_plans {
            let in_use: i64 = service_instances::table
                .filter(service_instances::service_plan_id.eq(plan.id))
                .count()
                .get_result(conn)?;
            if in_use > 0 {
                diesel::update(service_plans::table.find(plan.id))
                    .set((
                        service_plans::active.eq(false),
                        service_plans::updated_at.eq(&timestamp),
                    ))
                    .execute(conn)?;
                let offering = existing
                    .iter()
                    .find(|row| row.id == plan.service_offering_id)
                    .map_or("", |row| row.name.as_str());
                deactivated.push(format!("{offering}/{}", plan.name));
            } else {
                diesel::delete(
                    service_plan_visibilities::table
                        .filter(service_plan_visibilities::service_plan_id.eq(plan.id)),
                )
                .execute(conn)?;
                diesel::delete(service_plans::table.find(plan.id)).execute(conn)?;
            }
        }
        for offering in existing
            .iter()
            .filter(|row| !kept_offering_ids.contains(&row.id))
        {
            let remaining: i64 = service_plans::table
                .filter(service_plans::service_offering_id.eq(offering.id))
                .count()
                .get_result(conn)?;
            if remaining == 0 {
                diesel::delete(service_offerings::table.find(offering.id)).execute(conn)?;
            } else {
                diesel::update(service_offerings::table.find(offering.id))
                    .set(service_offerings::active.eq(false))
                    .execute(conn)?;
            }
        }
        let mut warnings = Vec::new();
        if !deactivated.is_empty() {
            warnings.push(format!(
                "Warning: Service plans are missing from the broker's catalog ({}/v2/catalog) but can not be removed from Cloud Foundry while instances exist. The plans have been deactivated to prevent users from attempting to provision new instances of these plans. The broker should continue to support bind, unbind, and delete for existing instances; if these operations fail contact your broker provider.\n{}",
                broker.url.trim_end_matches('/'),
                deactivated.join("\n")
            ));
        }
        Ok(warnings)
    })
}

/// Makes a plan public or not; `public = false` also drops its org visibilities when `clear`.
pub fn set_plan_public(conn: &mut DbConn, plan_id: i32, public: bool) -> Result<(), ApiError> {
    diesel::update(service_plans::table.find(plan_id))
        .set((
            service_plans::public.eq(public),
            service_plans::updated_at.eq(now()),
        ))
        .execute(conn)?;
    Ok(())
}

/// Drops every org visibility of a plan.
pub fn clear_visibilities(conn: &mut DbConn, plan_id: i32) -> Result<(), ApiError> {
    diesel::delete(
        service_plan_visibilities::table
            .filter(service_plan_visibilities::service_plan_id.eq(plan_id)),
    )
    .execute(conn)?;
    Ok(())
}

/// Makes a plan visible to an org (no-op when it already is).
pub fn add_visibility(
    conn: &mut DbConn,
    plan_id: i32,
    organization_id: i32,
) -> Result<(), ApiError> {
    let exists: i64 = service_plan_visibilities::table
        .filter(service_plan_visibilities::service_plan_id.eq(plan_id))
        .filter(service_plan_visibilities::organization_id.eq(organization_id))
        .count()
        .get_result(conn)?;
    if exists == 0 {
        diesel::insert_into(service_plan_visibilities::table)
            .values((
                service_plan_visibilities::guid.eq(new_guid()),
                service_plan_visibilities::service_plan_id.eq(plan_id),
                service_plan_visibilities::organization_id.eq(organization_id),
                service_plan_visibilities::created_at.eq(now()),
            ))
            .execute(conn)?;
    }
    Ok(())
}

/// Removes one org's visibility of a plan; false when there was none.
pub fn remove_visibility(
    conn: &mut DbConn,
    plan_id: i32,
    organization_id: i32,
) -> Result<bool, ApiError> {
    let deleted = diesel::delete(
        service_plan_visibilities::table
            .filter(service_plan_visibilities::service_plan_id.eq(plan_id))
            .filter(service_plan_visibilities::organization_id.eq(organization_id)),
    )
    .execute(conn)?;
    Ok(deleted > 0)
}

// ---------------------------------------------------------------------------------------------
// Instances

/// What a new instance is made of.
#[derive(Debug, Clone, Default)]
pub struct NewInstance {
    /// Name, unique in the space.
    pub name: String,
    /// `managed` or `user-provided`.
    pub instance_type: String,
    /// Owning space.
    pub space_id: i32,
    /// The plan (managed).
    pub service_plan_id: Option<i32>,
    /// Credentials JSON (user-provided).
    pub credentials: Option<String>,
    /// Syslog drain URL (user-provided).
    pub syslog_drain_url: Option<String>,
    /// Route service URL (user-provided).
    pub route_service_url: Option<String>,
    /// Tags.
    pub tags: Vec<String>,
    /// Plan maintenance info at creation (managed).
    pub maintenance_info: Option<String>,
    /// Last operation state (`create in progress` for managed, `create succeeded` otherwise).
    pub last_operation_state: String,
    /// Last operation description (CC's "Operation succeeded" for user-provided instances).
    pub last_operation_description: Option<String>,
}

/// Every instance, in creation order.
pub fn list_instances(conn: &mut DbConn) -> Result<Vec<ServiceInstanceRow>, ApiError> {
    Ok(service_instances::table
        .order(service_instances::id.asc())
        .select(ServiceInstanceRow::as_select())
        .load(conn)?)
}

/// The instance with this GUID.
pub fn find_instance(
    conn: &mut DbConn,
    guid: &str,
) -> Result<Option<ServiceInstanceRow>, ApiError> {
    Ok(service_instances::table
        .filter(service_instances::guid.eq(guid))
        .select(ServiceInstanceRow::as_select())
        .first(conn)
        .optional()?)
}

/// The instance with this id.
pub fn find_instance_by_id(
    conn: &mut DbConn,
    id: i32,
) -> Result<Option<ServiceInstanceRow>, ApiError> {
    Ok(service_instances::table
        .find(id)
        .select(ServiceInstanceRow::as_select())
        .first(conn)
        .optional()?)
}

/// The instance named `name` in the space.
pub fn find_instance_by_name(
    conn: &mut DbConn,
    space_id: i32,
    name: &str,
) -> Result<Option<ServiceInstanceRow>, ApiError> {
    Ok(service_instances::table
        .filter(service_instances::space_id.eq(space_id))
        .filter(service_instances::name.eq(name))
        .select(ServiceInstanceRow::as_select())
        .first(conn)
        .optional()?)
}

/// Inserts an instance with its first last operation (`create`); `Conflict` on a taken name.
pub fn create_instance(
    conn: &mut DbConn,
    spec: &NewInstance,
) -> Result<ServiceInstanceRow, StoreError> {
    let guid = new_guid();
    let timestamp = now();
    diesel::insert_into(service_instances::table)
        .values((
            service_instances::guid.eq(&guid),
            service_instances::name.eq(&spec.name),
            service_instances::instance_type.eq(&spec.instance_type),
            service_instances::space_id.eq(spec.space_id),
            service_instances::service_plan_id.eq(spec.service_plan_id),
            service_instances::credentials.eq(&spec.credentials),
            service_instances::syslog_drain_url.eq(&spec.syslog_drain_url),
            service_instances::route_service_url.eq(&spec.route_service_url),
            service_instances::tags.eq(json_text(&json!(spec.tags))),
            service_instances::maintenance_info.eq(&spec.maintenance_info),
            service_instances::last_operation_type.eq("create"),
            service_instances::last_operation_state.eq(&spec.last_operation_state),
            service_instances::last_operation_description.eq(&spec.last_operation_description),
            service_instances::last_operation_created_at.eq(&timestamp),
            service_instances::last_operation_updated_at.eq(&timestamp),
            service_instances::created_at.eq(&timestamp),
            service_instances::updated_at.eq(&timestamp),
        ))
        .execute(conn)?;
    find_instance(conn, &guid)?
        .ok_or_else(|| StoreError::Api(ApiError::internal("instance vanished after insert")))
}

/// Starts a new last operation on an instance.
pub fn start_instance_operation(
    conn: &mut DbConn,
    id: i32,
    operation_type: &str,
    job_guid: Option<&str>,
) -> Result<(), ApiError> {
    let timestamp = now();
    diesel::update(service_instances::table.find(id))
        .set((
            service_instances::last_operation_type.eq(operation_type),
            service_instances::last_operation_state.eq(IN_PROGRESS),
            service_instances::last_operation_description.eq(None::<String>),
            service_instances::last_operation_created_at.eq(&timestamp),
            service_instances::last_operation_updated_at.eq(&timestamp),
            service_instances::broker_operation.eq(None::<String>),
            service_instances::job_guid.eq(job_guid),
            service_instances::updated_at.eq(&timestamp),
        ))
        .execute(conn)?;
    Ok(())
}

/// Records a finished synchronous operation (`update succeeded`, "Operation succeeded" for
/// user-provided instances).
pub fn record_sync_operation(
    conn: &mut DbConn,
    id: i32,
    operation_type: &str,
    description: Option<&str>,
) -> Result<(), ApiError> {
    let timestamp = now();
    diesel::update(service_instances::table.find(id))
        .set((
            service_instances::last_operation_type.eq(operation_type),
            service_instances::last_operation_state.eq(SUCCEEDED),
            service_instances::last_operation_description.eq(description),
            service_instances::last_operation_created_at.eq(&timestamp),
            service_instances::last_operation_updated_at.eq(&timestamp),
        ))
        .execute(conn)?;
    Ok(())
}

/// Records the state (and description) of an instance's current last operation.
pub fn set_instance_state(
    conn: &mut DbConn,
    id: i32,
    state: &str,
    description: Option<&str>,
) -> Result<(), ApiError> {
    let timestamp = now();
    diesel::update(service_instances::table.find(id))
        .set((
            service_instances::last_operation_state.eq(state),
            service_instances::last_operation_description.eq(description),
            service_instances::last_operation_updated_at.eq(&timestamp),
            service_instances::updated_at.eq(&timestamp),
        ))
        .execute(conn)?;
    Ok(())
}

/// Keeps the broker's `operation` to pass back while polling.
pub fn set_instance_broker_operation(
    conn: &mut DbConn,
    id: i32,
    operation: Option<&str>,
) -> Result<(), ApiError> {
    diesel::update(service_instances::table.find(id))
        .set(service_instances::broker_operation.eq(operation))
        .execute(conn)?;
    Ok(())
}

/// Sets the dashboard URL a broker returned.
pub fn set_instance_dashboard_url(
    conn: &mut DbConn,
    id: i32,
    dashboard_url: Option<&str>,
) -> Result<(), ApiError> {
    diesel::update(service_instances::table.find(id))
        .set(service_instances::dashboard_url.eq(dashboard_url))
        .execute(conn)?;
    Ok(())
}

/// Name, tags and (for user-provided instances) credentials, drain and route service URLs.
#[derive(Debug, Clone, Default)]
pub struct InstanceChanges {
    /// New name.
    pub name: Option<String>,
    /// New tags.
    pub tags: Option<Vec<String>>,
    /// New credentials JSON.
    pub credentials: Option<String>,
    /// New drain URL (`Some(None)` clears it).
    pub syslog_drain_url: Option<Option<String>>,
    /// New route service URL (`Some(None)` clears it).
    pub route_service_url: Option<Option<String>>,
    /// New plan (managed, once the broker accepted it).
    pub service_plan_id: Option<i32>,
    /// Plan requested by an update still in progress.
    pub proposed_plan_id: Option<Option<i32>>,
}

/// Applies [`InstanceChanges`]; `Conflict` on a taken name.
pub fn update_instance(
    conn: &mut DbConn,
    id: i32,
    changes: &InstanceChanges,
) -> Result<(), StoreError> {
    let target = service_instances::table.find(id);
    if let Some(name) = &changes.name {
        diesel::update(target)
            .set(service_instances::name.eq(name))
            .execute(conn)?;
    }
    if let Some(tags) = &changes.tags {
        diesel::update(target)
            .set(service_instances::tags.eq(json_text(&json!(tags))))
            .execute(conn)?;
    }
    if let Some(credentials) = &changes.credentials {
        diesel::update(target)
            .set(service_instances::credentials.eq(credentials))
            .execute(conn)?;
        // Bindings of a user-provided instance carry its credentials, as in CC.
        diesel::update(
            service_credential_bindings::table
                .filter(service_credential_bindings::service_instance_id.eq(id)),
        )
        .set(service_credential_bindings::credentials.eq(credentials))
        .execute(conn)?;
    }
    if let Some(url) = &changes.syslog_drain_url {
        diesel::update(target)
            .set(service_instances::syslog_drain_url.eq(url))
            .execute(conn)?;
        // Bindings of a user-provided instance carry its drain URL, as in CC.
        diesel::update(
            service_credential_bindings::table
                .filter(service_credential_bindings::service_instance_id.eq(id)),
        )
        .set(service_credential_bindings::syslog_drain_url.eq(url))
        .execute(conn)?;
    }
    if let Some(url) = &changes.route_service_url {
        diesel::update(target)
            .set(service_instances::route_service_url.eq(url))
            .execute(conn)?;
    }
    if let Some(plan_id) = changes.service_plan_id {
        diesel::update(target)
            .set(service_instances::service_plan_id.eq(plan_id))
            .execute(conn)?;
    }
    if let Some(proposed) = changes.proposed_plan_id {
        diesel::update(target)
            .set(service_instances::proposed_plan_id.eq(proposed))
            .execute(conn)?;
    }
    diesel::update(target)
        .set(service_instances::updated_at.eq(now()))
        .execute(conn)?;
    Ok(())
}

/// Deletes an instance and its bindings.
pub fn delete_instance(conn: &mut DbConn, id: i32) -> Result<(), ApiError> {
    conn.write_transaction(|conn| {
        diesel::delete(
            service_credential_bindings::table
                .filter(service_credential_bindings::service_instance_id.eq(id)),
        )
        .execute(conn)?;
        diesel::delete(service_instances::table.find(id)).execute(conn)?;
        Ok(())
    })
}

/// CC's `SpaceDeletionFailed` listing what could not be deleted.
pub fn space_deletion_failed(space_name: &str, messages: &[String]) -> ApiError {
    let messages: Vec<String> = messages
        .iter()
        .map(|message| format!("\t{message}"))
        .collect();
    ApiError::with_args(
        ErrorKind::SpaceDeletionFailed,
        &[space_name, &messages.join("\n\n")],
    )
}

/// Before a space goes: its user-provided instances (and their bindings) are deleted; managed
/// instances must have been deprovisioned through their broker first
/// ([`crate::service_jobs::ServiceRunner::delete_instances_in_spaces`]), otherwise CC's
/// `SpaceDeletionFailed` names them.
pub fn delete_in_spaces(conn: &mut DbConn, space_ids: &[i32]) -> Result<(), ApiError> {
    let instances: Vec<ServiceInstanceRow> = service_instances::table
        .filter(service_instances::space_id.eq_any(space_ids))
        .select(ServiceInstanceRow::as_select())
        .load(conn)?;
    let managed: Vec<&ServiceInstanceRow> = instances
        .iter()
        .filter(|instance| instance.instance_type == MANAGED)
        .collect();
    if let Some(first) = managed.first() {
        let space_name: String = spaces::table
            .find(first.space_id)
            .select(spaces::name)
            .first(conn)?;
        let messages: Vec<String> = managed
            .iter()
            .map(|instance| {
                ApiError::with_args(
                    ErrorKind::AsyncServiceInstanceOperationInProgress,
                    &[&instance.name],
                )
                .detail
            })
            .collect();
        return Err(space_deletion_failed(&space_name, &messages));
    }
    for instance in instances {
        delete_instance(conn, instance.id)?;
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// Credential bindings

/// What a new binding is made of.
#[derive(Debug, Clone)]
pub struct NewBinding {
    /// `app` or `key`.
    pub binding_type: String,
    /// Name (required for keys).
    pub name: Option<String>,
    /// The instance.
    pub service_instance_id: i32,
    /// The app (app bindings).
    pub app_id: Option<i32>,
    /// Credentials JSON (known at once for user-provided instances).
    pub credentials: Option<String>,
    /// Drain URL (user-provided instances).
    pub syslog_drain_url: Option<String>,
    /// Parameters JSON sent to the broker.
    pub parameters: Option<String>,
    /// Initial last-operation state.
    pub state: String,
}

/// Every binding, in creation order.
pub fn list_bindings(conn: &mut DbConn) -> Result<Vec<CredentialBindingRow>, ApiError> {
    Ok(service_credential_bindings::table
        .order(service_credential_bindings::id.asc())
        .select(CredentialBindingRow::as_select())
        .load(conn)?)
}

/// The bindings of one instance.
pub fn bindings_of_instance(
    conn: &mut DbConn,
    instance_id: i32,
) -> Result<Vec<CredentialBindingRow>, ApiError> {
    Ok(service_credential_bindings::table
        .filter(service_credential_bindings::service_instance_id.eq(instance_id))
        .order(service_credential_bindings::id.asc())
        .select(CredentialBindingRow::as_select())
        .load(conn)?)
}

/// The binding with this GUID.
pub fn find_binding(
    conn: &mut DbConn,
    guid: &str,
) -> Result<Option<CredentialBindingRow>, ApiError> {
    Ok(service_credential_bindings::table
        .filter(service_credential_bindings::guid.eq(guid))
        .select(CredentialBindingRow::as_select())
        .first(conn)
        .optional()?)
}

/// The binding with this id.
pub fn find_binding_by_id(
    conn: &mut DbConn,
    id: i32,
) -> Result<Option<CredentialBindingRow>, ApiError> {
    Ok(service_credential_bindings::table
        .find(id)
        .select(CredentialBindingRow::as_select())
        .first(conn)
        .optional()?)
}

/// Inserts a binding with its `create` last operation; `Conflict` on a taken key name.
pub fn create_binding(
    conn: &mut DbConn,
    spec: &NewBinding,
) -> Result<CredentialBindingRow, StoreError> {
    let guid = new_guid();
    let timestamp = now();
    diesel::insert_into(service_credential_bindings::table)
        .values((
            service_credential_bindings::guid.eq(&guid),
            service_credential_bindings::binding_type.eq(&spec.binding_type),
            service_credential_bindings::name.eq(&spec.name),
            service_credential_bindings::service_instance_id.eq(spec.service_instance_id),
            service_credential_bindings::app_id.eq(spec.app_id),
            service_credential_bindings::credentials.eq(&spec.credentials),
            service_credential_bindings::syslog_drain_url.eq(&spec.syslog_drain_url),
            service_credential_bindings::parameters.eq(&spec.parameters),
            service_credential_bindings::last_operation_type.eq("create"),
            service_credential_bindings::last_operation_state.eq(&spec.state),
            service_credential_bindings::last_operation_created_at.eq(&timestamp),
            service_credential_bindings::last_operation_updated_at.eq(&timestamp),
            service_credential_bindings::created_at.eq(&timestamp),
            service_credential_bindings::updated_at.eq(&timestamp),
        ))
        .execute(conn)?;
    find_binding(conn, &guid)?
        .ok_or_else(|| StoreError::Api(ApiError::internal("binding vanished after insert")))
}

/// Starts a new last operation on a binding.
pub fn start_binding_operation(
    conn: &mut DbConn,
    id: i32,
    operation_type: &str,
    job_guid: Option<&str>,
) -> Result<(), ApiError> {
    let timestamp = now();
    diesel::update(service_credential_bindings::table.find(id))
        .set((
            service_credential_bindings::last_operation_type.eq(operation_type),
            service_credential_bindings::last_operation_state.eq(IN_PROGRESS),
            service_credential_bindings::last_operation_description.eq(None::<String>),
            service_credential_bindings::last_operation_created_at.eq(&timestamp),
            service_credential_bindings::last_operation_updated_at.eq(&timestamp),
            service_credential_bindings::broker_operation.eq(None::<String>),
            service_credential_bindings::job_guid.eq(job_guid),
            service_credential_bindings::updated_at.eq(&timestamp),
        ))
        .execute(conn)?;
    Ok(())
}

/// Records the state of a binding's current last operation.
pub fn set_binding_state(
    conn: &mut DbConn,
    id: i32,
    state: &str,
    description: Option<&str>,
) -> Result<(), ApiError> {
    let timestamp = now();
    diesel::update(service_credential_bindings::table.find(id))
        .set((
            service_credential_bindings::last_operation_state.eq(state),
            service_credential_bindings::last_operation_description.eq(description),
            service_credential_bindings::last_operation_updated_at.eq(&timestamp),
            service_credential_bindings::updated_at.eq(&timestamp),
        ))
        .execute(conn)?;
    Ok(())
}

/// Keeps the broker's `operation` of a binding.
pub fn set_binding_broker_operation(
    conn: &mut DbConn,
    id: i32,
    operation: Option<&str>,
) -> Result<(), ApiError> {
    diesel::update(service_credential_bindings::table.find(id))
        .set(service_credential_bindings::broker_operation.eq(operation))
        .execute(conn)?;
    Ok(())
}

/// Stores what the broker returned for a binding (`credentials`, `syslog_drain_url`,
/// `volume_mounts`).
pub fn set_binding_result(
    conn: &mut DbConn,
    id: i32,
    body: &Map<String, Value>,
) -> Result<(), ApiError> {
    let credentials = body
        .get("credentials")
        .filter(|value| value.is_object())
        .map(json_text)
        .unwrap_or_else(|| "{}".to_owned());
    let drain = body
        .get("syslog_drain_url")
        .and_then(Value::as_str)
        .map(str::to_owned);
    let mounts = body
        .get("volume_mounts")
        .filter(|value| value.is_array())
        .map(json_text);
    diesel::update(service_credential_bindings::table.find(id))
        .set((
            service_credential_bindings::credentials.eq(credentials),
            service_credential_bindings::syslog_drain_url.eq(drain),
            service_credential_bindings::volume_mounts.eq(mounts),
        ))
        .execute(conn)?;
    Ok(())
}

/// Deletes a binding.
pub fn delete_binding(conn: &mut DbConn, id: i32) -> Result<(), ApiError> {
    diesel::delete(service_credential_bindings::table.find(id)).execute(conn)?;
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// Views

fn string_list(text: &str) -> Vec<String> {
    serde_json::from_str(text).unwrap_or_default()
}

/// CC's `VCAP_SERVICES` of an app: bound instances by offering label (`user-provided` for
/// user-provided instances), only the newest successfully created binding per instance, in
/// binding order.
pub fn vcap_services(conn: &mut DbConn, app_guid: &str) -> Result<Value, ApiError> {
    let Some(app_id) = apps::table
        .filter(apps::guid.eq(app_guid))
        .select(apps::id)
        .first::<i32>(conn)
        .optional()?
    else {
        return Ok(json!({}));
    };
    let bindings: Vec<CredentialBindingRow> = service_credential_bindings::table
        .filter(service_credential_bindings::app_id.eq(app_id))
        .filter(service_credential_bindings::binding_type.eq("app"))
        .filter(service_credential_bindings::last_operation_type.eq("create"))
        .filter(service_credential_bindings::last_operation_state.eq(SUCCEEDED))
        .order(service_credential_bindings::id.asc())
        .select(CredentialBindingRow::as_select())
        .load(conn)?;
    // The newest binding per instance, kept in binding order.
    let mut newest: HashMap<i32, i32> = HashMap::new();
    for binding in &bindings {
        newest.insert(binding.service_instance_id, binding.id);
    }
    let mut services: Map<String, Value> = Map::new();
    for binding in bindings
        .iter()
        .filter(|binding| newest.get(&binding.service_instance_id) == Some(&binding.id))
    {
        let Some(instance) = find_instance_by_id(conn, binding.service_instance_id)? else {
            continue;
        };
        let instance_tags = string_list(&instance.tags);
        let mut entry = Map::new();
        let label = if instance.instance_type == USER_PROVIDED {
            entry.insert("label".into(), json!(USER_PROVIDED));
            entry.insert(
                "name".into(),
                json!(binding
                    .name
                    .clone()
                    .unwrap_or_else(|| instance.name.clone())),
            );
            entry.insert("tags".into(), json!(instance_tags));
            USER_PROVIDED.to_owned()
        } else {
            let Some(plan) = instance
                .service_plan_id
                .map(|id| find_plan_by_id(conn, id))
                .transpose()?
                .flatten()
            else {
                continue;
            };
            let Some(offering) = find_offering_by_id(conn, plan.service_offering_id)? else {
                continue;
            };
            let mut tags = string_list(&offering.tags);
            for tag in instance_tags {
                if !tags.contains(&tag) {
                    tags.push(tag);
                }
            }
            entry.insert("label".into(), json!(offering.name));
            entry.insert("provider".into(), Value::Null);
            entry.insert("plan".into(), json!(plan.name));
            entry.insert(
                "name".into(),
                json!(binding
                    .name
                    .clone()
                    .unwrap_or_else(|| instance.name.clone())),
            );
            entry.insert("tags".into(), json!(tags));
            offering.name
        };
        entry.insert("instance_guid".into(), json!(instance.guid));
        entry.insert("instance_name".into(), json!(instance.name));
        entry.insert("binding_guid".into(), json!(binding.guid));
        entry.insert("binding_name".into(), json!(binding.name));
        let credentials = match parse_json(binding.credentials.as_deref()) {
            Value::Null => json!({}),
            credentials => credentials,
        };
        entry.insert("credentials".into(), credentials);
        entry.insert("syslog_drain_url".into(), json!(binding.syslog_drain_url));
        let mounts: Vec<Value> = match parse_json(binding.volume_mounts.as_deref()) {
            Value::Array(mounts) => mounts
                .iter()
                .map(|mount| {
                    json!({
                        "container_dir": mount.get("container_dir"),
                        "mode": mount.get("mode"),
                        "device_type": mount.get("device_type"),
                    })
                })
                .collect(),
            _ => Vec::new(),
        };
        entry.insert("volume_mounts".into(), json!(mounts));
        match services.entry(label).or_insert_with(|| json!([])) {
            Value::Array(entries) => entries.push(Value::Object(entry)),
            _ => unreachable!("VCAP_SERVICES values are arrays"),
        }
    }
    Ok(Value::Object(services))
}

/// CC's syslog hostname part: whitespace to `-`, only `[-a-zA-Z0-9]`, no trailing `-`, 63 chars.
fn hostname_part(name: &str) -> String {
    let dashed: String = name.split_whitespace().collect::<Vec<_>>().join("-");
    let dashed = if name.starts_with(char::is_whitespace) {
        format!("-{dashed}")
    } else {
        dashed
    };
    let kept: String = dashed
        .chars()
        .filter(|character| character.is_ascii_alphanumeric() || *character == '-')
        .collect();
    kept.trim_end_matches('-').chars().take(63).collect()
}

/// CC's `GET /internal/v4/syslog_drain_urls`: apps (ordered by GUID) whose bindings carry a
/// drain URL, `batch_size` apps from offset `next_id`.
pub fn syslog_drain_urls(
    conn: &mut DbConn,
    batch_size: i64,
    next_id: i64,
) -> Result<Value, ApiError> {
    let rows: Vec<(String, String, String, String, Option<String>)> =
        service_credential_bindings::table
            .inner_join(apps::table.on(service_credential_bindings::app_id.eq(apps::id.nullable())))
            .inner_join(spaces::table.on(apps::space_id.eq(spaces::id)))
            .inner_join(organizations::table.on(spaces::organization_id.eq(organizations::id)))
            .filter(service_credential_bindings::syslog_drain_url.is_not_null())
            .filter(service_credential_bindings::syslog_drain_url.ne(""))
            .order((apps::guid.asc(), service_credential_bindings::id.asc()))
            .select((
                apps::guid,
                apps::name,
                spaces::name,
                organizations::name,
                service_credential_bindings::syslog_drain_url,
            ))
            .load(conn)?;
    let mut by_app: BTreeMap<String, (String, Vec<String>)> = BTreeMap::new();
    for (app_guid, app_name, space_name, org_name, drain) in rows {
        let entry = by_app.entry(app_guid).or_insert_with(|| {
            (
                format!(
                    "{}.{}.{}",
                    hostname_part(&org_name),
                    hostname_part(&space_name),
                    hostname_part(&app_name)
                ),
                Vec::new(),
            )
        });
        entry.1.extend(drain);
    }
    let page: Vec<(String, (String, Vec<String>))> = by_app
        .into_iter()
        .skip(next_id.max(0) as usize)
        .take(batch_size.max(0) as usize)
        .collect();
    let next = if page.is_empty() {
        Value::Null
    } else {
        json!(next_id.saturating_add(batch_size))
    };
    let results: Map<String, Value> = page
        .into_iter()
        .map(|(guid, (hostname, drains))| (guid, json!({"drains": drains, "hostname": hostname})))
        .collect();
    Ok(json!({"results": results, "next_id": next, "v5_available": true}))
}

#[cfg(test)]
mod tests {
    use super::hostname_part;

    #[test]
    fn hostnames_like_cc() {
        assert_eq!(hostname_part("my app"), "my-app");
        assert_eq!(hostname_part("a_b!c-"), "abc");
        assert_eq!(hostname_part(&"x".repeat(70)).len(), 63);
    }
}
