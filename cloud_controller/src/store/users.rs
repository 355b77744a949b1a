//! Cloud Controller users: UAA user ids (or client ids) with the username and origin last learned.

use diesel::prelude::*;

use super::{now, StoreError};
use crate::db::models::{NewUser, UserRow};
use crate::db::schema::users;
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
