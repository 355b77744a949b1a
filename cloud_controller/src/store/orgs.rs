//! Organizations and spaces-in-org cascades.

use diesel::prelude::*;

use super::{name_key, new_guid, now, StoreError};
use crate::db::models::{NewOrg, OrgRow};
use crate::db::schema::{domains, organizations, roles, spaces};
use crate::db::DbConn;
use crate::error::ApiError;

/// Every organization, in creation order.
pub fn list(conn: &mut DbConn) -> Result<Vec<OrgRow>, ApiError> {
    Ok(organizations::table
        .order(organizations::id.asc())
        .select(OrgRow::as_select())
        .load(conn)?)
}

/// Ids of the suspended organizations.
pub fn suspended_ids(conn: &mut DbConn) -> Result<Vec<i32>, ApiError> {
    Ok(organizations::table
        .filter(organizations::suspended.eq(true))
        .select(organizations::id)
        .load(conn)?)
}

/// The organization with this GUID.
pub fn find(conn: &mut DbConn, guid: &str) -> Result<Option<OrgRow>, ApiError> {
    if !super::can_match(guid) {
        return Ok(None);
    }
    Ok(organizations::table
        .filter(organizations::guid.eq(guid))
        .select(OrgRow::as_select())
        .first(conn)
        .optional()?)
}

/// The organization with this id.
pub fn find_by_id(conn: &mut DbConn, id: i32) -> Result<Option<OrgRow>, ApiError> {
    Ok(organizations::table
        .find(id)
        .select(OrgRow::as_select())
        .first(conn)
        .optional()?)
}

/// The organization with this name (compared case-insensitively, as CC does).
pub fn find_by_name(conn: &mut DbConn, name: &str) -> Result<Option<OrgRow>, ApiError> {
    if !super::can_match(name) {
        return Ok(None);
    }
    Ok(organizations::table
        .filter(organizations::name_lower.eq(name_key(name)))
        .select(OrgRow::as_select())
        .first(conn)
        .optional()?)
}

/// Inserts an organization; `Conflict` when the name is taken (in any letter case).
pub fn create(
    conn: &mut DbConn,
    name: &str,
    suspended: bool,
    quota_definition_id: i32,
) -> Result<OrgRow, StoreError> {
    let guid = new_guid();
    let timestamp = now();
    let name_lower = name_key(name);
    diesel::insert_into(organizations::table)
        .values(&NewOrg {
            guid: &guid,
            name,
            name_lower: &name_lower,
            created_at: &timestamp,
            updated_at: &timestamp,
            suspended,
            billing_enabled: false,
            quota_definition_id,
        })
        .execute(conn)?;
    find(conn, &guid)?
        .ok_or_else(|| StoreError::Api(ApiError::internal("organization vanished after insert")))
}

/// Changes name and/or suspension; `Conflict` when the new name is taken.
pub fn update(
    conn: &mut DbConn,
    id: i32,
    name: Option<&str>,
    suspended: Option<bool>,
    quota_definition_id: Option<i32>,
) -> Result<OrgRow, StoreError> {
    let timestamp = now();
    if let Some(name) = name {
        diesel::update(organizations::table.find(id))
            .set((
                organizations::name.eq(name),
                organizations::name_lower.eq(name_key(name)),
            ))
            .execute(conn)?;
    }
    if let Some(suspended) = suspended {
        diesel::update(organizations::table.find(id))
            .set(organizations::suspended.eq(suspended))
            .execute(conn)?;
    }
    if let Some(quota) = quota_definition_id {
        diesel::update(organizations::table.find(id))
            .set(organizations::quota_definition_id.eq(quota))
            .execute(conn)?;
    }
    diesel::update(organizations::table.find(id))
        .set(organizations::updated_at.eq(&timestamp))
        .execute(conn)?;
    find_by_id(conn, id)?.ok_or_else(|| StoreError::Api(ApiError::not_found("Organization")))
}

/// Re-folds the name keys of organizations and spaces whose key the migration computed with the
/// database's `lower()` (ASCII-only on SQLite) rather than [`name_key`]. Keys that would now
/// collide with an older row, and the migration's de-duplicated keys, are left alone.
pub fn refold_name_keys(conn: &mut DbConn) -> Result<(), ApiError> {
    let orgs: Vec<(i32, String, String)> = organizations::table
        .select((
            organizations::id,
            organizations::name,
            organizations::name_lower,
        ))
        .load(conn)?;
    for (id, name, stored) in orgs {
        let expected = name_key(&name);
        if stored != expected && !stored.starts_with(&format!("{expected}/")) {
            let updated = diesel::update(organizations::table.find(id))
                .set(organizations::name_lower.eq(&expected))
                .execute(conn);
            ignore_unique_violation(updated)?;
        }
    }
    let spaces: Vec<(i32, String, String)> = spaces::table
        .select((spaces::id, spaces::name, spaces::name_lower))
        .load(conn)?;
    for (id, name, stored) in spaces {
        let expected = name_key(&name);
        if stored != expected && !stored.starts_with(&format!("{expected}/")) {
            let updated = diesel::update(spaces::table.find(id))
                .set(spaces::name_lower.eq(&expected))
                .execute(conn);
            ignore_unique_violation(updated)?;
        }
    }
    Ok(())
}

fn ignore_unique_violation(result: QueryResult<usize>) -> Result<(), ApiError> {
    match result {
        Err(error) if !crate::error::is_unique_violation(&error) => Err(error.into()),
        _ => Ok(()),
    }
}

/// Deletes the organization with its spaces, roles and private domains, in one transaction.
pub fn delete_cascade(conn: &mut DbConn, id: i32) -> Result<(), ApiError> {
    conn.write_transaction(|conn| {
        let space_ids: Vec<i32> = spaces::table
            .filter(spaces::organization_id.eq(id))
            .select(spaces::id)
            .load(conn)?;
        let domain_ids: Vec<i32> = domains::table
            .filter(domains::owning_organization_id.eq(id))
            .select(domains::id)
            .load(conn)?;
        super::services::delete_in_spaces(conn, &space_ids)?;
        super::routes::delete_in_spaces_and_domains(conn, &space_ids, &domain_ids)?;
        super::apps::delete_in_spaces(conn, &space_ids)?;
        diesel::delete(roles::table.filter(roles::organization_id.eq(id))).execute(conn)?;
        let space_guids: Vec<String> = spaces::table
            .filter(spaces::organization_id.eq(id))
            .select(spaces::guid)
            .load(conn)?;
        super::metadata::delete_for(conn, super::metadata::SPACE, &space_guids)?;
        let org_guids: Vec<String> = organizations::table
            .find(id)
            .select(organizations::guid)
            .load(conn)?;
        super::metadata::delete_for(conn, super::metadata::ORGANIZATION, &org_guids)?;
        diesel::delete(spaces::table.filter(spaces::organization_id.eq(id))).execute(conn)?;
        diesel::delete(domains::table.filter(domains::owning_organization_id.eq(id)))
            .execute(conn)?;
        diesel::delete(organizations::table.find(id)).execute(conn)?;
        Ok(())
    })
}
