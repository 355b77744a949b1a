//! Platform-wide reference data: feature flags, stacks, domains, organization quotas, and the
//! idempotent bootstrap that seeds them.

use diesel::prelude::*;

use super::{new_guid, now, StoreError};
use crate::db::models::{DomainRow, FeatureFlagRow, NewQuota, QuotaRow, StackRow};
use crate::db::schema::{domains, feature_flags, quota_definitions, stacks};
use crate::db::DbConn;
use crate::error::ApiError;

/// CC's feature flags and their defaults (`FeatureFlag::DEFAULT_FLAGS`).
pub const DEFAULT_FEATURE_FLAGS: &[(&str, bool)] = &[
    ("user_org_creation", false),
    ("private_domain_creation", true),
    ("app_bits_upload", true),
    ("app_scaling", true),
    ("route_creation", true),
    ("service_instance_creation", true),
    ("diego_docker", false),
    ("diego_cnb", false),
    ("set_roles_by_username", true),
    ("unset_roles_by_username", true),
    ("task_creation", true),
    ("env_var_visibility", true),
    ("space_scoped_private_broker_creation", true),
    ("space_developer_env_var_visibility", true),
    ("service_instance_sharing", false),
    ("hide_marketplace_from_unauthenticated_users", false),
    ("resource_matching", true),
    ("route_sharing", false),
    ("hash_based_routing", false),
];

/// Flags an admin is never blocked by (CC `ADMIN_SKIPPABLE`).
pub const ADMIN_SKIPPABLE_FLAGS: &[&str] = &[
    "app_bits_upload",
    "app_scaling",
    "set_roles_by_username",
    "space_developer_env_var_visibility",
    "task_creation",
    "unset_roles_by_username",
];

/// Name of the organization quota every new org gets.
pub const DEFAULT_QUOTA_NAME: &str = "default";

/// What bootstrap seeds.
pub struct Seed<'a> {
    /// Shared apps domain.
    pub apps_domain: &'a str,
    /// Default stack name.
    pub default_stack: &'a str,
}

/// Seeds shared domain, default stack, default quota and feature flags when absent, and re-folds
/// name keys written by migrations.
pub fn bootstrap(conn: &mut DbConn, seed: &Seed<'_>) -> Result<(), ApiError> {
    super::orgs::refold_name_keys(conn)?;
    let timestamp = now();
    for (name, enabled) in DEFAULT_FEATURE_FLAGS {
        if find_flag(conn, name)?.is_none() {
            let inserted = diesel::insert_into(feature_flags::table)
                .values((
                    feature_flags::name.eq(name),
                    feature_flags::enabled.eq(enabled),
                    feature_flags::created_at.eq(&timestamp),
                    feature_flags::updated_at.eq(&timestamp),
                ))
                .execute(conn);
            ignore_conflict(inserted)?;
        }
    }
    if find_quota_by_name(conn, DEFAULT_QUOTA_NAME)?.is_none() {
        // CC's shipped `default` quota: 10 GiB memory, 100 services, 1000 routes, paid plans allowed.
        let inserted = diesel::insert_into(quota_definitions::table)
            .values(&NewQuota {
                guid: &new_guid(),
                name: DEFAULT_QUOTA_NAME,
                created_at: &timestamp,
                updated_at: &timestamp,
                non_basic_services_allowed: true,
                total_services: 100,
                total_routes: 1000,
                memory_limit: 10240,
                instance_memory_limit: -1,
                app_instance_limit: -1,
                app_task_limit: -1,
                total_service_keys: -1,
                total_reserved_route_ports: 0,
                total_private_domains: -1,
                log_rate_limit: -1,
            })
            .execute(conn);
        ignore_conflict(inserted)?;
    }
    if find_stack_by_name(conn, seed.default_stack)?.is_none() {
        let inserted = diesel::insert_into(stacks::table)
            .values((
                stacks::guid.eq(new_guid()),
                stacks::name.eq(seed.default_stack),
                stacks::description.eq("Kiln host-backed root filesystem"),
                stacks::created_at.eq(&timestamp),
                stacks::updated_at.eq(&timestamp),
            ))
            .execute(conn);
        ignore_conflict(inserted)?;
    }
    let domain_exists = domains::table
        .filter(domains::name.eq(seed.apps_domain))
        .select(domains::id)
        .first::<i32>(conn)
        .optional()?
        .is_some();
    if !domain_exists {
        let inserted = diesel::insert_into(domains::table)
            .values((
                domains::guid.eq(new_guid()),
                domains::name.eq(seed.apps_domain),
                domains::internal.eq(false),
                domains::created_at.eq(&timestamp),
                domains::updated_at.eq(&timestamp),
            ))
            .execute(conn);
        ignore_conflict(inserted)?;
    }
    Ok(())
}

/// Another instance bootstrapping at the same moment is fine.
fn ignore_conflict(result: QueryResult<usize>) -> Result<(), ApiError> {
    match result {
        Ok(_) => Ok(()),
        Err(error) if crate::error::is_unique_violation(&error) => Ok(()),
        Err(error) => Err(error.into()),
    }
}

/// Every feature flag, by name.
pub fn list_flags(conn: &mut DbConn) -> Result<Vec<FeatureFlagRow>, ApiError> {
    Ok(feature_flags::table
        .order(feature_flags::name.asc())
        .select(FeatureFlagRow::as_select())
        .load(conn)?)
}

/// One feature flag.
pub fn find_flag(conn: &mut DbConn, name: &str) -> Result<Option<FeatureFlagRow>, ApiError> {
    if !super::can_match(name) {
        return Ok(None);
    }
    Ok(feature_flags::table
        .filter(feature_flags::name.eq(name))
        .select(FeatureFlagRow::as_select())
        .first(conn)
        .optional()?)
}

/// Whether a flag is on (unknown flags count as off).
pub fn flag_enabled(conn: &mut DbConn, name: &str) -> Result<bool, ApiError> {
    Ok(find_flag(conn, name)?.is_some_and(|flag| flag.enabled))
}

/// Sets `enabled` and/or the custom error message (`Some(None)` clears it).
pub fn update_flag(
    conn: &mut DbConn,
    name: &str,
    enabled: Option<bool>,
    error_message: Option<Option<&str>>,
) -> Result<FeatureFlagRow, ApiError> {
    if let Some(enabled) = enabled {
        diesel::update(feature_flags::table.filter(feature_flags::name.eq(name)))
            .set(feature_flags::enabled.eq(enabled))
            .execute(conn)?;
    }
    if let Some(message) = error_message {
        diesel::update(feature_flags::table.filter(feature_flags::name.eq(name)))
            .set(feature_flags::error_message.eq(message))
            .execute(conn)?;
    }
    diesel::update(feature_flags::table.filter(feature_flags::name.eq(name)))
        .set(feature_flags::updated_at.eq(now()))
        .execute(conn)?;
    find_flag(conn, name)?.ok_or_else(|| ApiError::not_found("Feature flag"))
}

/// Every stack.
pub fn list_stacks(conn: &mut DbConn) -> Result<Vec<StackRow>, ApiError> {
    Ok(stacks::table
        .order(stacks::id.asc())
        .select(StackRow::as_select())
        .load(conn)?)
}

/// One stack by GUID.
pub fn find_stack(conn: &mut DbConn, guid: &str) -> Result<Option<StackRow>, ApiError> {
    if !super::can_match(guid) {
        return Ok(None);
    }
    Ok(stacks::table
        .filter(stacks::guid.eq(guid))
        .select(StackRow::as_select())
        .first(conn)
        .optional()?)
}

/// One stack by name.
pub fn find_stack_by_name(conn: &mut DbConn, name: &str) -> Result<Option<StackRow>, ApiError> {
    if !super::can_match(name) {
        return Ok(None);
    }
    Ok(stacks::table
        .filter(stacks::name.eq(name))
        .select(StackRow::as_select())
        .first(conn)
        .optional()?)
}

/// Every domain.
pub fn list_domains(conn: &mut DbConn) -> Result<Vec<DomainRow>, ApiError> {
    Ok(domains::table
        .order(domains::id.asc())
        .select(DomainRow::as_select())
        .load(conn)?)
}

/// One domain by GUID.
pub fn find_domain(conn: &mut DbConn, guid: &str) -> Result<Option<DomainRow>, ApiError> {
    if !super::can_match(guid) {
        return Ok(None);
    }
    Ok(domains::table
        .filter(domains::guid.eq(guid))
        .select(DomainRow::as_select())
        .first(conn)
        .optional()?)
}

/// Every organization quota.
pub fn list_quotas(conn: &mut DbConn) -> Result<Vec<QuotaRow>, ApiError> {
    Ok(quota_definitions::table
        .order(quota_definitions::id.asc())
        .select(QuotaRow::as_select())
        .load(conn)?)
}

/// One quota by GUID.
pub fn find_quota(conn: &mut DbConn, guid: &str) -> Result<Option<QuotaRow>, ApiError> {
    if !super::can_match(guid) {
        return Ok(None);
    }
    Ok(quota_definitions::table
        .filter(quota_definitions::guid.eq(guid))
        .select(QuotaRow::as_select())
        .first(conn)
        .optional()?)
}

/// One quota by id.
pub fn find_quota_by_id(conn: &mut DbConn, id: i32) -> Result<Option<QuotaRow>, ApiError> {
    Ok(quota_definitions::table
        .find(id)
        .select(QuotaRow::as_select())
        .first(conn)
        .optional()?)
}

/// One quota by name.
pub fn find_quota_by_name(conn: &mut DbConn, name: &str) -> Result<Option<QuotaRow>, ApiError> {
    if !super::can_match(name) {
        return Ok(None);
    }
    Ok(quota_definitions::table
        .filter(quota_definitions::name.eq(name))
        .select(QuotaRow::as_select())
        .first(conn)
        .optional()?)
}

/// The default quota (bootstrap guarantees it).
pub fn default_quota(conn: &mut DbConn) -> Result<QuotaRow, StoreError> {
    find_quota_by_name(conn, DEFAULT_QUOTA_NAME)?
        .ok_or_else(|| StoreError::Api(ApiError::internal("default quota missing")))
}
