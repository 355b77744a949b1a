//! Spaces.

use diesel::prelude::*;

use super::{name_key, new_guid, now, StoreError};
use crate::db::models::{NewSpace, SpaceRow};
use crate::db::schema::{roles, spaces};
use crate::db::DbConn;
use crate::error::ApiError;

/// Every space, in creation order.
pub fn list(conn: &mut DbConn) -> Result<Vec<SpaceRow>, ApiError> {
    Ok(spaces::table
        .order(spaces::id.asc())
        .select(SpaceRow::as_select())
        .load(conn)?)
}

/// Spaces of one organization.
pub fn list_in_org(conn: &mut DbConn, organization_id: i32) -> Result<Vec<SpaceRow>, ApiError> {
    Ok(spaces::table
        .filter(spaces::organization_id.eq(organization_id))
        .order(spaces::id.asc())
        .select(SpaceRow::as_select())
        .load(conn)?)
}

/// The space with this GUID.
pub fn find(conn: &mut DbConn, guid: &str) -> Result<Option<SpaceRow>, ApiError> {
    if !super::can_match(guid) {
        return Ok(None);
    }
    Ok(spaces::table
        .filter(spaces::guid.eq(guid))
        .select(SpaceRow::as_select())
        .first(conn)
        .optional()?)
}

/// The space with this id.
pub fn find_by_id(conn: &mut DbConn, id: i32) -> Result<Option<SpaceRow>, ApiError> {
    Ok(spaces::table
        .find(id)
        .select(SpaceRow::as_select())
        .first(conn)
        .optional()?)
}

/// Inserts a space; `Conflict` when the name is taken in the org (in any letter case).
pub fn create(conn: &mut DbConn, name: &str, organization_id: i32) -> Result<SpaceRow, StoreError> {
    let guid = new_guid();
    let timestamp = now();
    let name_lower = name_key(name);
    diesel::insert_into(spaces::table)
        .values(&NewSpace {
            guid: &guid,
            name,
            organization_id,
            created_at: &timestamp,
            updated_at: &timestamp,
            allow_ssh: true,
            name_lower: &name_lower,
        })
        .execute(conn)?;
    find(conn, &guid)?
        .ok_or_else(|| StoreError::Api(ApiError::internal("space vanished after insert")))
}

/// Renames a space and/or changes `allow_ssh`; `Conflict` when the name is taken.
pub fn update(
    conn: &mut DbConn,
    id: i32,
    name: Option<&str>,
    allow_ssh: Option<bool>,
) -> Result<SpaceRow, StoreError> {
    if let Some(name) = name {
        diesel::update(spaces::table.find(id))
            .set((spaces::name.eq(name), spaces::name_lower.eq(name_key(name))))
            .execute(conn)?;
    }
    if let Some(allow_ssh) = allow_ssh {
        diesel::update(spaces::table.find(id))
            .set(spaces::allow_ssh.eq(allow_ssh))
            .execute(conn)?;
    }
    diesel::update(spaces::table.find(id))
        .set(spaces::updated_at.eq(now()))
        .execute(conn)?;
    find_by_id(conn, id)?.ok_or_else(|| StoreError::Api(ApiError::not_found("Space")))
}

/// Deletes a space, its user-provided service instances, routes, apps and roles (managed
/// service instances must have been deprovisioned first).
pub fn delete_cascade(conn: &mut DbConn, id: i32) -> Result<(), ApiError> {
    conn.write_transaction(|conn| {
        super::services::delete_in_spaces(conn, &[id])?;
        super::routes::delete_in_spaces_and_domains(conn, &[id], &[])?;
        super::apps::delete_in_spaces(conn, &[id])?;
        diesel::delete(roles::table.filter(roles::space_id.eq(id))).execute(conn)?;
        super::users::clear_default_space(conn, &[id])?;
        let space_guids: Vec<String> = spaces::table.find(id).select(spaces::guid).load(conn)?;
        super::metadata::delete_for(conn, super::metadata::SPACE, &space_guids)?;
        diesel::delete(spaces::table.find(id)).execute(conn)?;
        Ok(())
    })
}
