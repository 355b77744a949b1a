//! Builds and droplets: rows only; droplet bits live in the blob store under `droplets/<guid>`.
//! Builds are created STAGING; staging over NATS moves them to STAGED (with a droplet) or FAILED.

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
/// Staging failed.
pub const FAILED: &str = "FAILED";

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

/// Every build, in creation order.
pub fn list_builds(conn: &mut DbConn) -> Result<Vec<BuildRow>, ApiError> {
    Ok(builds::table
        .order(builds::id.asc())
        .select(BuildRow::as_select())
        .load(conn)?)
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

/// Records the uploaded droplet of a STAGING build: inserts droplet `droplet_guid` (STAGING) or
/// updates its hashes when the DEA uploads again. Fails when the build is no longer STAGING.
pub fn attach_droplet(
    conn: &mut DbConn,
    build_guid: &str,
    droplet_guid: &str,
    sha1: &str,
    sha256: &str,
) -> Result<(), ApiError> {
    let build = find_build(conn, build_guid)?.ok_or_else(|| ApiError::not_found("Build"))?;
    if build.state != STAGING {
        return Err(ApiError::unprocessable("The build is not staging"));
    }
    let timestamp = now();
    if find_droplet(conn, droplet_guid)?.is_some() {
        diesel::update(droplets::table.filter(droplets::guid.eq(droplet_guid)))
            .set((
                droplets::droplet_hash.eq(sha1),
                droplets::checksum_sha256.eq(sha256),
                droplets::updated_at.eq(&timestamp),
            ))
            .execute(conn)?;
    } else {
        diesel::insert_into(droplets::table)
            .values((
                droplets::guid.eq(droplet_guid),
                droplets::app_id.eq(build.app_id),
                droplets::package_id.eq(Some(build.package_id)),
                droplets::state.eq(STAGING),
                droplets::buildpacks.eq("[]"),
                droplets::stack.eq(&build.stack),
                droplets::process_types.eq("{}"),
                droplets::execution_metadata.eq(""),
                droplets::checksum_sha256.eq(sha256),
                droplets::droplet_hash.eq(sha1),
                droplets::created_at.eq(&timestamp),
                droplets::updated_at.eq(&timestamp),
            ))
            .execute(conn)?;
    }
    diesel::update(builds::table.find(build.id))
        .set((
            builds::droplet_guid.eq(droplet_guid),
            builds::updated_at.eq(&timestamp),
        ))
        .execute(conn)?;
    Ok(())
}

/// What a successful staging produced.
#[derive(Debug, Clone)]
pub struct StagingResult {
    /// JSON array of buildpack entries.
    pub buildpacks: String,
    /// JSON object of process type → command.
    pub process_types: String,
    /// Execution metadata.
    pub execution_metadata: String,
    /// SHA-1 the DEA reported.
    pub droplet_sha1: Option<String>,
}

/// Marks a STAGING build STAGED with its uploaded droplet (which becomes STAGED too). Without an
/// uploaded droplet the build fails instead. Returns the resulting build state.
pub fn mark_staged(
    conn: &mut DbConn,
    build_guid: &str,
    result: &StagingResult,
) -> Result<String, ApiError> {
    let Some(build) = find_build(conn, build_guid)? else {
        return Ok(FAILED.to_owned());
    };
    if build.state != STAGING {
        return Ok(build.state);
    }
    let droplet = match &build.droplet_guid {
        Some(guid) => find_droplet(conn, guid)?,
        None => None,
    };
    let Some(droplet) = droplet else {
        mark_failed(
            conn,
            build_guid,
            "StagingError - Staging error: the droplet was not uploaded",
        )?;
        return Ok(FAILED.to_owned());
    };
    if let (Some(reported), Some(uploaded)) = (&result.droplet_sha1, &droplet.droplet_hash) {
        if reported != uploaded {
            mark_failed(
                conn,
                build_guid,
                "StagingError - Staging error: the uploaded droplet does not match its SHA-1",
            )?;
            return Ok(FAILED.to_owned());
        }
    }
    let timestamp = now();
    diesel::update(droplets::table.find(droplet.id))
        .set((
            droplets::state.eq(STAGED),
            droplets::buildpacks.eq(&result.buildpacks),
            droplets::process_types.eq(&result.process_types),
            droplets::execution_metadata.eq(&result.execution_metadata),
            droplets::updated_at.eq(&timestamp),
        ))
        .execute(conn)?;
    diesel::update(builds::table.find(build.id))
        .set((builds::state.eq(STAGED), builds::updated_at.eq(&timestamp)))
        .execute(conn)?;
    Ok(STAGED.to_owned())
}

/// Marks a STAGING build (and its droplet, if one was uploaded) FAILED with `error`; builds in
/// any other state are left alone.
pub fn mark_failed(conn: &mut DbConn, build_guid: &str, error: &str) -> Result<(), ApiError> {
    let Some(build) = find_build(conn, build_guid)? else {
        return Ok(());
    };
    if build.state != STAGING {
        return Ok(());
    }
    let timestamp = now();
    if let Some(droplet_guid) = &build.droplet_guid {
        diesel::update(droplets::table.filter(droplets::guid.eq(droplet_guid)))
            .set((
                droplets::state.eq(FAILED),
                droplets::error.eq(error),
                droplets::updated_at.eq(&timestamp),
            ))
            .execute(conn)?;
    }
    diesel::update(builds::table.find(build.id))
        .set((
            builds::state.eq(FAILED),
            builds::error.eq(error),
            builds::updated_at.eq(&timestamp),
        ))
        .execute(conn)?;
    Ok(())
}

/// Fails every build still STAGING that was created before `cutoff` (a timestamp in the
/// format of [`now`]): its staging task is gone (a restarted Cloud Controller) or overdue.
/// Returns how many were failed.
pub fn fail_expired(conn: &mut DbConn, cutoff: &str, error: &str) -> Result<usize, ApiError> {
    let expired: Vec<String> = builds::table
        .filter(builds::state.eq(STAGING))
        .filter(builds::created_at.lt(cutoff))
        .select(builds::guid)
        .load(conn)?;
    for guid in &expired {
        mark_failed(conn, guid, error)?;
    }
    Ok(expired.len())
}
