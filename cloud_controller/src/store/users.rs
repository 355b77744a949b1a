//! Cloud Controller users: UAA user ids (or client ids) with the username and origin last learned.

use std::collections::HashMap;

use diesel::prelude::*;

use super::{now, StoreError};
use crate::db::models::{NewUser, UserRow};
use crate::db::schema::{spaces, users};
use crate::db::DbConn;
use crate::error::ApiError;

/// Every user, in creation order.
pub fn list(conn: &mut DbConn) -> Result<Vec<UserRow>, ApiError> {
    Ok(users::table
        .order(users::id.asc())
        .select(UserRow::as_select())
        .load(conn)?)
}

/// The user with this GUID.
pub fn find(conn: &mut DbConn, guid: &str) -> Result<Option<UserRow>, ApiError> {
    if !super::can_match(guid) {
        return Ok(None);
    }
    Ok(users::table
        .filter(users::guid.eq(guid))
        .select(UserRow::as_select())
        .first(conn)
        .optional()?)
}

/// The user with this id.
pub fn find_by_id(conn: &mut DbConn, id: i32) -> Result<Option<UserRow>, ApiError> {
    Ok(users::table
        .find(id)
        .select(UserRow::as_select())
        .first(conn)
        .optional()?)
}

/// Inserts a user; `Conflict` when the GUID exists.
pub fn create(
    conn: &mut DbConn,
    guid: &str,
    username: Option<&str>,
    origin: Option<&str>,
    is_client: bool,
) -> Result<UserRow, StoreError> {
    let timestamp = now();
    diesel::insert_into(users::table)
        .values(&NewUser {
            guid,
            username,
            origin,
            is_client,
            created_at: &timestamp,
            updated_at: &timestamp,
        })
        .execute(conn)?;
    find(conn, guid)?
        .ok_or_else(|| StoreError::Api(ApiError::internal("user vanished after insert")))
}

/// Returns the user with this GUID, creating it when absent (concurrent creators both succeed),
/// and refreshing the stored username/origin when newer ones are known.
pub fn ensure(
    conn: &mut DbConn,
    guid: &str,
    username: Option<&str>,
    origin: Option<&str>,
    is_client: bool,
) -> Result<UserRow, ApiError> {
    if let Some(existing) = find(conn, guid)? {
        let stale = username.is_some()
            && (existing.username.as_deref() != username || existing.origin.as_deref() != origin);
        if stale {
            diesel::update(users::table.find(existing.id))
                .set((
                    users::username.eq(username),
                    users::origin.eq(origin),
                    users::updated_at.eq(now()),
                ))
                .execute(conn)?;
            return find_by_id(conn, existing.id)?.ok_or_else(|| ApiError::not_found("User"));
        }
        return Ok(existing);
    }
    match create(conn, guid, username, origin, is_client) {
        Ok(user) => Ok(user),
        Err(StoreError::Conflict) => {
            find(conn, guid)?.ok_or_else(|| ApiError::internal("user conflict without row"))
        }
        Err(StoreError::Api(error)) => Err(error),
    }
}

/// Deletes a user (roles go with it through the foreign key cascade; removed explicitly too).
pub fn delete(conn: &mut DbConn, id: i32) -> Result<(), ApiError> {
    use crate::db::schema::roles;
    conn.write_transaction(|conn| {
        diesel::delete(roles::table.filter(roles::user_id.eq(id))).execute(conn)?;
        diesel::delete(users::table.find(id)).execute(conn)?;
        Ok(())
    })
}

/// What CC stores on a user row besides its identity: the `admin` flag and the default space.
///
/// `admin` is only stored and shown. As in CC, where `User#admin?` is deprecated in favour of the
/// token's `cloud_controller.admin` scope, nothing here grants any permission.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct UserSettings {
    pub admin: bool,
    pub default_space_guid: Option<String>,
}

/// The settings of every user, by user id.
pub fn all_settings(conn: &mut DbConn) -> Result<HashMap<i32, UserSettings>, ApiError> {
    // A default space id whose space is gone reads as no default space.
    let rows: Vec<(i32, bool, Option<String>)> = users::table
        .left_join(spaces::table.on(spaces::id.nullable().eq(users::default_space_id)))
        .select((users::id, users::admin, spaces::guid.nullable()))
        .load(conn)?;
    Ok(rows
        .into_iter()
        .map(|(id, admin, default_space_guid)| {
            (
                id,
                UserSettings {
                    admin,
                    default_space_guid,
                },
            )
        })
        .collect())
}

/// The settings of one user (CC's defaults when the user is gone).
pub fn settings(conn: &mut DbConn, id: i32) -> Result<UserSettings, ApiError> {
    let row: Option<(i32, bool, Option<String>)> = users::table
        .left_join(spaces::table.on(spaces::id.nullable().eq(users::default_space_id)))
        .filter(users::id.eq(id))
        .select((users::id, users::admin, spaces::guid.nullable()))
        .first(conn)
        .optional()?;
    Ok(row
        .map(|(_, admin, default_space_guid)| UserSettings {
            admin,
            default_space_guid,
        })
        .unwrap_or_default())
}

/// Changes what is given: `admin`, and the default space (`Some(None)` clears it).
pub fn update_settings(
    conn: &mut DbConn,
    id: i32,
    admin: Option<bool>,
    default_space_id: Option<Option<i32>>,
) -> Result<(), ApiError> {
    conn.write_transaction(|conn| {
        if let Some(admin) = admin {
            diesel::update(users::table.find(id))
                .set(users::admin.eq(admin))
                .execute(conn)?;
        }
        if let Some(default_space_id) = default_space_id {
            diesel::update(users::table.find(id))
                .set(users::default_space_id.eq(default_space_id))
                .execute(conn)?;
        }
        diesel::update(users::table.find(id))
            .set(users::updated_at.eq(now()))
            .execute(conn)?;
        Ok(())
    })
}

/// Clears the default space of every user whose default space is one of these (CC nullifies a
/// deleted space's `default_users`).
pub fn clear_default_space(conn: &mut DbConn, space_ids: &[i32]) -> Result<(), ApiError> {
    diesel::update(users::table.filter(users::default_space_id.eq_any(space_ids)))
        .set(users::default_space_id.eq(None::<i32>))
        .execute(conn)?;
    Ok(())
}
