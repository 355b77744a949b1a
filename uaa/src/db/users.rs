//! Store functions for the `users` table.

use diesel::prelude::*;

use super::schema::{group_memberships, refresh_tokens, users};
use super::DbConnection;

/// One row of `users`.
#[derive(Debug, Clone, Queryable, Insertable)]
#[diesel(table_name = users)]
pub(crate) struct UserRow {
    pub(crate) id: String,
    pub(crate) user_name: String,
    /// `user_name` lower-cased: user names are unique and matched case-insensitively per origin.
    pub(crate) user_name_key: String,
    pub(crate) origin: String,
    pub(crate) email: String,
    pub(crate) given_name: Option<String>,
    pub(crate) family_name: Option<String>,
    pub(crate) password_hash: String,
    pub(crate) active: bool,
    pub(crate) verified: bool,
    pub(crate) version: i64,
    pub(crate) created: i64,
    pub(crate) last_modified: i64,
    pub(crate) password_last_modified: i64,
    pub(crate) last_logon: Option<i64>,
    pub(crate) previous_logon: Option<i64>,
}

/// The fields a SCIM update may change.
#[derive(Debug, Clone)]
pub(crate) struct UserChanges {
    pub(crate) user_name: String,
    pub(crate) email: String,
    pub(crate) given_name: Option<String>,
    pub(crate) family_name: Option<String>,
    pub(crate) active: bool,
    pub(crate) verified: bool,
}

/// How the candidate rows of a user query are narrowed in SQL before the SCIM filter runs.
#[derive(Debug, Clone, Default)]
pub(crate) struct UserPrefilter {
    pub(crate) id: Option<String>,
    pub(crate) user_name_key: Option<String>,
}

pub(crate) fn find_by_id(conn: &mut DbConnection, id: &str) -> QueryResult<Option<UserRow>> {
    users::table.find(id).first(conn).optional()
}

pub(crate) fn find_by_name(
    conn: &mut DbConnection,
    user_name: &str,
    origin: &str,
) -> QueryResult<Option<UserRow>> {
    users::table
        .filter(users::user_name_key.eq(user_name.to_lowercase()))
        .filter(users::origin.eq(origin))
        .first(conn)
        .optional()
}

pub(crate) fn list(
    conn: &mut DbConnection,
    prefilter: &UserPrefilter,
) -> QueryResult<Vec<UserRow>> {
    let mut query = users::table.into_boxed();
    if let Some(id) = &prefilter.id {
        query = query.filter(users::id.eq(id.clone()));
    }
    if let Some(key) = &prefilter.user_name_key {
        query = query.filter(users::user_name_key.eq(key.clone()));
    }
    query
        .order((users::created.asc(), users::id.asc()))
        .load(conn)
}

/// Inserts a user; `false` when the user name is already taken in that origin.
pub(crate) fn insert(conn: &mut DbConnection, row: &UserRow) -> QueryResult<bool> {
    if find_by_name(conn, &row.user_name, &row.origin)?.is_some() {
        return Ok(false);
    }
    match diesel::insert_into(users::table)
        .values(row.clone())
        .execute(conn)
    {
        Ok(_) => Ok(true),
        Err(diesel::result::Error::DatabaseError(
            diesel::result::DatabaseErrorKind::UniqueViolation,
            _,
        )) => Ok(false),
        Err(error) => Err(error),
    }
}

/// Outcome of a versioned update or delete.
#[derive(Debug)]
pub(crate) enum Versioned<T> {
    Done(T),
    NotFound,
    /// The stored version differs from the expected one.
    VersionMismatch {
        found: i64,
    },
    /// The new user name is taken by another user of the same origin.
    NameTaken,
}

pub(crate) fn update(
    conn: &mut DbConnection,
    id: &str,
    expected_version: Option<i64>,
    changes: UserChanges,
    now: i64,
) -> QueryResult<Versioned<UserRow>> {
    let Some(current) = find_by_id(conn, id)? else {
        return Ok(Versioned::NotFound);
    };
    if let Some(expected) = expected_version {
        if expected != current.version {
            return Ok(Versioned::VersionMismatch {
                found: current.version,
            });
        }
    }
    let user_name_key = changes.user_name.to_lowercase();
    if user_name_key != current.user_name_key {
        if let Some(other) = find_by_name(conn, &changes.user_name, &current.origin)? {
            if other.id != current.id {
                return Ok(Versioned::NameTaken);
            }
        }
    }
    diesel::update(users::table.find(id))
        .set((
            users::user_name.eq(&changes.user_name),
            users::user_name_key.eq(&user_name_key),
            users::email.eq(&changes.email),
            users::given_name.eq(&changes.given_name),
            users::family_name.eq(&changes.family_name),
            users::active.eq(changes.active),
            users::verified.eq(changes.verified),
            users::version.eq(current.version + 1),
            users::last_modified.eq(now),
        ))
        .execute(conn)?;
    Ok(match find_by_id(conn, id)? {
        Some(row) => Versioned::Done(row),
        None => Versioned::NotFound,
    })
}

/// Deletes a user with its memberships and refresh tokens.
pub(crate) fn delete(
    conn: &mut DbConnection,
    id: &str,
    expected_version: Option<i64>,
) -> QueryResult<Versioned<UserRow>> {
    let Some(current) = find_by_id(conn, id)? else {
        return Ok(Versioned::NotFound);
    };
    if let Some(expected) = expected_version {
        if expected != current.version {
            return Ok(Versioned::VersionMismatch {
                found: current.version,
            });
        }
    }
    diesel::delete(group_memberships::table.filter(group_memberships::member_id.eq(id)))
        .execute(conn)?;
    diesel::delete(refresh_tokens::table.filter(refresh_tokens::user_id.eq(id))).execute(conn)?;
    diesel::delete(users::table.find(id)).execute(conn)?;
    Ok(Versioned::Done(current))
}

/// Stores a new password hash and revokes every refresh token of the user.
pub(crate) fn set_password(
    conn: &mut DbConnection,
    id: &str,
    password_hash: &str,
    now: i64,
) -> QueryResult<bool> {
    let updated = diesel::update(users::table.find(id))
        .set((
            users::password_hash.eq(password_hash),
            users::password_last_modified.eq(now),
            users::last_modified.eq(now),
        ))
        .execute(conn)?;
    diesel::delete(refresh_tokens::table.filter(refresh_tokens::user_id.eq(id))).execute(conn)?;
    Ok(updated > 0)
}

/// Records a successful login: the previous last logon becomes `previous_logon`.
pub(crate) fn record_logon(conn: &mut DbConnection, id: &str, now: i64) -> QueryResult<()> {
    let last: Option<Option<i64>> = users::table
        .find(id)
        .select(users::last_logon)
        .first(conn)
        .optional()?;
    if let Some(last) = last {
        diesel::update(users::table.find(id))
            .set((
                users::previous_logon.eq(last),
                users::last_logon.eq(Some(now)),
            ))
            .execute(conn)?;
    }
    Ok(())
}
