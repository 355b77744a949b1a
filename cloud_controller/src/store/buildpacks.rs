//! Admin buildpacks: rows only; the zips live in the blob store under `buildpacks/<guid>`.

use diesel::prelude::*;

use super::{new_guid, now};
use crate::db::models::BuildpackRow;
use crate::db::schema::buildpacks;
use crate::db::DbConn;
use crate::error::ApiError;

/// A system buildpack found at start.
#[derive(Debug, Clone)]
pub struct SystemBuildpack {
    /// Directory name.
    pub name: String,
    /// 1-based position.
    pub position: i32,
    /// File name of the zip, e.g. `staticfile_buildpack.zip`.
    pub filename: String,
    /// SHA-256 of the zip.
    pub key: String,
}

/// Creates or updates the buildpack named `buildpack.name`; returns the row (its GUID names the
/// blob) and whether its zip changed (or is new).
pub fn upsert_system(
    conn: &mut DbConn,
    buildpack: &SystemBuildpack,
) -> Result<(BuildpackRow, bool), ApiError> {
    let timestamp = now();
    let existing = find_by_name(conn, &buildpack.name)?;
    let changed = match &existing {
        Some(row) => {
            let changed = row.key.as_deref() != Some(buildpack.key.as_str());
            diesel::update(buildpacks::table.find(row.id))
                .set((
                    buildpacks::position.eq(buildpack.position),
                    buildpacks::filename.eq(&buildpack.filename),
                    buildpacks::key.eq(&buildpack.key),
                    buildpacks::updated_at.eq(&timestamp),
                ))
                .execute(conn)?;
            changed
        }
        None => {
            diesel::insert_into(buildpacks::table)
                .values((
                    buildpacks::guid.eq(new_guid()),
                    buildpacks::name.eq(&buildpack.name),
                    buildpacks::stack.eq(None::<String>),
                    buildpacks::position.eq(buildpack.position),
                    buildpacks::enabled.eq(true),
                    buildpacks::locked.eq(false),
                    buildpacks::filename.eq(&buildpack.filename),
                    buildpacks::key.eq(&buildpack.key),
                    buildpacks::created_at.eq(&timestamp),
                    buildpacks::updated_at.eq(&timestamp),
                ))
                .execute(conn)?;
            true
        }
    };
    let row = find_by_name(conn, &buildpack.name)?
        .ok_or_else(|| ApiError::internal("buildpack vanished after upsert"))?;
    Ok((row, changed))
}

/// Every buildpack by position.
pub fn list(conn: &mut DbConn) -> Result<Vec<BuildpackRow>, ApiError> {
    Ok(buildpacks::table
        .order((buildpacks::position.asc(), buildpacks::id.asc()))
        .select(BuildpackRow::as_select())
        .load(conn)?)
}

/// The buildpack with this GUID.
pub fn find(conn: &mut DbConn, guid: &str) -> Result<Option<BuildpackRow>, ApiError> {
    Ok(buildpacks::table
        .filter(buildpacks::guid.eq(guid))
        .select(BuildpackRow::as_select())
        .first(conn)
        .optional()?)
}

/// The buildpack with this name.
pub fn find_by_name(conn: &mut DbConn, name: &str) -> Result<Option<BuildpackRow>, ApiError> {
    Ok(buildpacks::table
        .filter(buildpacks::name.eq(name))
        .select(BuildpackRow::as_select())
        .first(conn)
        .optional()?)
}
