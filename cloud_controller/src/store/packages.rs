//! Packages: rows only; their bits live in the blob store under `packages/<guid>`.

use diesel::prelude::*;

use super::{new_guid, now};
use crate::db::models::PackageRow;
use crate::db::schema::packages;
use crate::db::DbConn;
use crate::error::ApiError;

/// Created, bits not uploaded yet.
pub const AWAITING_UPLOAD: &str = "AWAITING_UPLOAD";
/// Bits stored.
pub const READY: &str = "READY";
/// The only package type Kiln stages.
pub const BITS: &str = "bits";

/// Every package, in creation order.
pub fn list(conn: &mut DbConn) -> Result<Vec<PackageRow>, ApiError> {
    Ok(packages::table
        .order(packages::id.asc())
        .select(PackageRow::as_select())
        .load(conn)?)
}

/// The package with this GUID.
pub fn find(conn: &mut DbConn, guid: &str) -> Result<Option<PackageRow>, ApiError> {
    Ok(packages::table
        .filter(packages::guid.eq(guid))
        .select(PackageRow::as_select())
        .first(conn)
        .optional()?)
}

/// Inserts a bits package awaiting its upload.
pub fn create(conn: &mut DbConn, app_id: i32) -> Result<PackageRow, ApiError> {
    let guid = new_guid();
    let timestamp = now();
    diesel::insert_into(packages::table)
        .values((
            packages::guid.eq(&guid),
            packages::app_id.eq(app_id),
            packages::package_type.eq(BITS),
            packages::state.eq(AWAITING_UPLOAD),
            packages::created_at.eq(&timestamp),
            packages::updated_at.eq(&timestamp),
        ))
        .execute(conn)?;
    find(conn, &guid)?.ok_or_else(|| ApiError::internal("package vanished after insert"))
}

/// Marks a package READY with the SHA-256 of its zip.
pub fn mark_ready(conn: &mut DbConn, id: i32, sha256: &str) -> Result<PackageRow, ApiError> {
    diesel::update(packages::table.find(id))
        .set((
            packages::state.eq(READY),
            packages::checksum_sha256.eq(sha256),
            packages::updated_at.eq(now()),
        ))
        .execute(conn)?;
    packages::table
        .find(id)
        .select(PackageRow::as_select())
        .first(conn)
        .optional()?
        .ok_or_else(|| ApiError::not_found("Package"))
}

/// GUIDs of the packages of these apps, for blob clean-up.
pub fn guids_of_apps(conn: &mut DbConn, app_ids: &[i32]) -> Result<Vec<String>, ApiError> {
    Ok(packages::table
        .filter(packages::app_id.eq_any(app_ids))
        .select(packages::guid)
        .load(conn)?)
}

/// The package with this id.
pub fn find_by_id(conn: &mut DbConn, id: i32) -> Result<Option<PackageRow>, ApiError> {
    Ok(packages::table
        .find(id)
        .select(PackageRow::as_select())
        .first(conn)
        .optional()?)
}
