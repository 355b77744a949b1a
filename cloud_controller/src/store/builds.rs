//! Builds and droplets: rows only; droplet bits live in the blob store under `droplets/<guid>`.
//! Builds are created STAGING; nothing here moves them on until staging over NATS is wired.

use diesel::prelude::*;

use super::{new_guid, now};
use crate::db::models::{BuildRow, DropletRow};
use crate::db::schema::{apps, builds, droplets};
use crate::db::DbConn;
use crate::error::ApiError;

/// A build or droplet being staged.
pub const STAGING: &str = "STAGING";
/// Staged successfully.
pub const STAGED: &str = "STAGED";

/// What a new build stages.
#[derive(Debug, Clone)]
pub struct NewBuild<'a> {
    /// The app.
    pub app_id: i32,
    /// The READY package.
    pub package_id: i32,
    /// Buildpacks (JSON array) and stack from the app's lifecycle.
    pub buildpacks: &'a str,
    /// Stack name.
    pub stack: Option<&'a str>,
    /// Staging memory in MB.
    pub staging_memory_in_mb: i32,
    /// Staging disk in MB.
    pub staging_disk_in_mb: i32,
    /// Who asked.
    pub created_by_guid: &'a str,
    /// Their name.
    pub created_by_name: &'a str,
}

/// Inserts a build in state STAGING.
pub fn create_build(conn: &mut DbConn, build: &NewBuild<'_>) -> Result<BuildRow, ApiError> {
    let guid = new_guid();
    let timestamp = now();
    diesel::insert_into(builds::table)
        .values((
            builds::guid.eq(&guid),
            builds::app_id.eq(build.app_id),
            builds::package_id.eq(build.package_id),
            builds::state.eq(STAGING),
            builds::buildpacks.eq(build.buildpacks),
            builds::stack.eq(build.stack),
            builds::staging_memory_in_mb.eq(build.staging_memory_in_mb),
            builds::staging_disk_in_mb.eq(build.staging_disk_in_mb),
            builds::created_by_guid.eq(build.created_by_guid),
            builds::created_by_name.eq(build.created_by_name),
            builds::created_at.eq(&timestamp),
            builds::updated_at.eq(&timestamp),
        ))
        .execute(conn)?;
    find_build(conn, &guid)?.ok_or_else(|| ApiError::internal("build vanished after insert"))
}

/// The build with this GUID.
pub fn find_build(conn: &mut DbConn, guid: &str) -> Result<Option<BuildRow>, ApiError> {
    Ok(builds::table
        .filter(builds::guid.eq(guid))
        .select(BuildRow::as_select())
        .first(conn)
        .optional()?)
}

/// Every droplet, in creation order.
pub fn list_droplets(conn: &mut DbConn) -> Result<Vec<DropletRow>, ApiError> {
    Ok(droplets::table
        .order(droplets::id.asc())
        .select(DropletRow::as_select())
        .load(conn)?)
}

/// The droplet with this GUID.
pub fn find_droplet(conn: &mut DbConn, guid: &str) -> Result<Option<DropletRow>, ApiError> {
    Ok(droplets::table
        .filter(droplets::guid.eq(guid))
        .select(DropletRow::as_select())
        .first(conn)
        .optional()?)
}

/// Sets (or clears) the app's current droplet.
pub fn set_current_droplet(
    conn: &mut DbConn,
    app_id: i32,
    droplet_guid: Option<&str>,
) -> Result<(), ApiError> {
    diesel::update(apps::table.find(app_id))
        .set((
            apps::droplet_guid.eq(droplet_guid),
            apps::updated_at.eq(now()),
        ))
        .execute(conn)?;
    Ok(())
}

/// GUIDs of the droplets of these apps, for blob clean-up.
pub fn droplet_guids_of_apps(conn: &mut DbConn, app_ids: &[i32]) -> Result<Vec<String>, ApiError> {
    Ok(droplets::table
        .filter(droplets::app_id.eq_any(app_ids))
        .select(droplets::guid)
        .load(conn)?)
}

/// Deletes the builds and droplets of an app.
pub fn delete_for_app(conn: &mut DbConn, app_id: i32) -> Result<(), ApiError> {
    diesel::delete(builds::table.filter(builds::app_id.eq(app_id))).execute(conn)?;
    diesel::delete(droplets::table.filter(droplets::app_id.eq(app_id))).execute(conn)?;
    Ok(())
}
