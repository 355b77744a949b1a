//! Storage operations over [`DbConn`](crate::db::DbConn): plain functions taking a connection, run
//! inside [`Db::run`](crate::db::Db::run). Permission checks live in `permissions`, not here.

pub mod apps;
pub mod buildpacks;
pub mod builds;
pub mod jobs;
pub mod metadata;
pub mod orgs;
pub mod packages;
pub mod reference_data;
pub mod roles;
pub mod routes;
pub mod services;
pub mod spaces;
pub mod users;

use crate::error::ApiError;

/// Why a write was refused by the store.
#[derive(Debug)]
pub enum StoreError {
    /// A unique constraint refused the row (duplicate name, duplicate role, …).
    Conflict,
    /// Anything else.
    Api(ApiError),
}

impl From<diesel::result::Error> for StoreError {
    fn from(error: diesel::result::Error) -> Self {
        if crate::error::is_unique_violation(&error) {
            StoreError::Conflict
        } else {
            StoreError::Api(error.into())
        }
    }
}

impl From<ApiError> for StoreError {
    fn from(error: ApiError) -> Self {
        StoreError::Api(error)
    }
}

/// Current time as CC renders it: RFC 3339, UTC, whole seconds.
pub fn now() -> String {
    chrono::Utc::now().format("%Y-%m-%dT%H:%M:%SZ").to_string()
}

/// The key under which organization and space names are unique and filtered: CC stores them in
/// case-insensitive (citext) columns, so "ACME" and "acme" are the same name.
pub fn name_key(name: &str) -> String {
    name.to_lowercase()
}

/// True when `name` and `other` are the same name as CC compares them.
pub fn same_name(name: &str, other: &str) -> bool {
    name == other || name_key(name) == name_key(other)
}

/// False for text no row can hold: PostgreSQL refuses a NUL byte in any text value, so a
/// lookup by such a key finds nothing rather than failing (SQLite would simply find nothing).
pub fn can_match(key: &str) -> bool {
    !key.contains('\0')
}

/// A fresh resource GUID.
pub fn new_guid() -> String {
    uuid::Uuid::new_v4().to_string()
}
