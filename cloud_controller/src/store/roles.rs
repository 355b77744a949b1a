//! Organization and space roles.

use diesel::prelude::*;

use super::{new_guid, now, StoreError};
use crate::db::models::{NewRole, RoleRow};
use crate::db::schema::roles;
use crate::db::DbConn;
use crate::error::ApiError;

/// Every role, in creation order.
pub fn list(conn: &mut DbConn) -> Result<Vec<RoleRow>, ApiError> {
    Ok(roles::table
        .order(roles::id.asc())
        .select(RoleRow::as_select())
        .load(conn)?)
}

/// Roles held by one user.
pub fn list_for_user(conn: &mut DbConn, user_id: i32) -> Result<Vec<RoleRow>, ApiError> {
    Ok(roles::table
        .filter(roles::user_id.eq(user_id))
        .order(roles::id.asc())
        .select(RoleRow::as_select())
        .load(conn)?)
}

/// Roles in one organization (org roles and space roles of its spaces).
pub fn list_in_org(conn: &mut DbConn, organization_id: i32) -> Result<Vec<RoleRow>, ApiError> {
    Ok(roles::table
        .filter(roles::organization_id.eq(organization_id))
        .order(roles::id.asc())
        .select(RoleRow::as_select())
        .load(conn)?)
}

/// The role with this GUID.
pub fn find(conn: &mut DbConn, guid: &str) -> Result<Option<RoleRow>, ApiError> {
    if !super::can_match(guid) {
        return Ok(None);
    }
    Ok(roles::table
        .filter(roles::guid.eq(guid))
        .select(RoleRow::as_select())
        .first(conn)
        .optional()?)
}

/// Inserts a role; `Conflict` when the user already holds it.
pub fn create(
    conn: &mut DbConn,
    role_type: &str,
    user_id: i32,
    organization_id: i32,
    space_id: Option<i32>,
) -> Result<RoleRow, StoreError> {
    let guid = new_guid();
    let timestamp = now();
    diesel::insert_into(roles::table)
        .values(&NewRole {
            guid: &guid,
            role_type,
            user_id,
            organization_id,
            space_id,
            created_at: &timestamp,
            updated_at: &timestamp,
        })
        .execute(conn)?;
    find(conn, &guid)?
        .ok_or_else(|| StoreError::Api(ApiError::internal("role vanished after insert")))
}

/// Deletes one role.
pub fn delete(conn: &mut DbConn, id: i32) -> Result<(), ApiError> {
    diesel::delete(roles::table.find(id)).execute(conn)?;
    Ok(())
}

/// Deletes several roles in one transaction.
pub fn delete_many(conn: &mut DbConn, ids: &[i32]) -> Result<(), ApiError> {
    conn.write_transaction(|conn| {
        diesel::delete(roles::table.filter(roles::id.eq_any(ids))).execute(conn)?;
        Ok(())
    })
}

/// Finds the org role (space_id NULL) of this type, or the space role when `space_id` is given.
pub fn find_exact(
    conn: &mut DbConn,
    role_type: &str,
    user_id: i32,
    organization_id: i32,
    space_id: Option<i32>,
) -> Result<Option<RoleRow>, ApiError> {
    let query = roles::table
        .filter(roles::role_type.eq(role_type))
        .filter(roles::user_id.eq(user_id))
        .filter(roles::organization_id.eq(organization_id))
        .select(RoleRow::as_select());
    let found = match space_id {
        Some(space_id) => query
            .filter(roles::space_id.eq(space_id))
            .first(conn)
            .optional()?,
        None => query
            .filter(roles::space_id.is_null())
            .first(conn)
            .optional()?,
    };
    Ok(found)
}
