//! Apps and their processes. An app is created with its `web` process; deleting an app deletes
//! its processes.

use diesel::prelude::*;

use super::{new_guid, now};
use crate::db::models::{AppRow, NewApp, ProcessRow};
use crate::db::schema::{apps, processes};
use crate::db::DbConn;
use crate::error::{is_unique_violation, ApiError};

/// Apps start stopped.
pub const STOPPED: &str = "STOPPED";
/// The only lifecycle Kiln stages.
pub const BUILDPACK: &str = "buildpack";

/// CC's defaults for a new process.
pub mod process_defaults {
    /// Instances of the `web` process (other types start at 0).
    pub const WEB_INSTANCES: i32 = 1;
    /// MB of memory (CC's `default_app_memory`).
    pub const MEMORY_IN_MB: i32 = 1024;
    /// MB of disk (CC's `default_app_disk_in_mb`).
    pub const DISK_IN_MB: i32 = 1024;
    /// Bytes per second of logs; -1 is unlimited.
    pub const LOG_RATE_LIMIT: i64 = -1;
}

/// What a new app is made of.
#[derive(Debug, Clone)]
pub struct NewAppSpec {
    /// Name, unique in the space.
    pub name: String,
    /// Owning space.
    pub space_id: i32,
    /// Buildpack names or URLs, in order (empty: detect).
    pub buildpacks: Vec<String>,
    /// Stack name (`None`: the default stack at staging time).
    pub stack: Option<String>,
    /// User-provided environment variables.
    pub environment_variables: serde_json::Map<String, serde_json::Value>,
}

/// CC's uniqueness message for app names (the CLI matches it as NameNotUniqueInSpace).
pub fn name_taken(name: &str) -> ApiError {
    ApiError::unprocessable(format!("App with the name '{name}' already exists."))
}

/// Every app, in creation order.
pub fn list(conn: &mut DbConn) -> Result<Vec<AppRow>, ApiError> {
    Ok(apps::table
        .order(apps::id.asc())
        .select(AppRow::as_select())
        .load(conn)?)
}

/// The apps of one space, in creation order.
pub fn list_in_space(conn: &mut DbConn, space_id: i32) -> Result<Vec<AppRow>, ApiError> {
    Ok(apps::table
        .filter(apps::space_id.eq(space_id))
        .order(apps::id.asc())
        .select(AppRow::as_select())
        .load(conn)?)
}

/// The app with this GUID.
pub fn find(conn: &mut DbConn, guid: &str) -> Result<Option<AppRow>, ApiError> {
    Ok(apps::table
        .filter(apps::guid.eq(guid))
        .select(AppRow::as_select())
        .first(conn)
        .optional()?)
}

/// The app with this id.
pub fn find_by_id(conn: &mut DbConn, id: i32) -> Result<Option<AppRow>, ApiError> {
    Ok(apps::table
        .find(id)
        .select(AppRow::as_select())
        .first(conn)
        .optional()?)
}

fn name_used(
    conn: &mut DbConn,
    space_id: i32,
    name: &str,
    except: Option<i32>,
) -> Result<bool, ApiError> {
    let mut query = apps::table
        .filter(apps::space_id.eq(space_id))
        .filter(apps::name.eq(name))
        .select(apps::id)
        .into_boxed();
    if let Some(id) = except {
        query = query.filter(apps::id.ne(id));
    }
    Ok(query.first::<i32>(conn).optional()?.is_some())
}

/// Inserts an app in state STOPPED with its `web` process (CC's defaults). A taken name is
/// CC's 422 "App with the name 'X' already exists.".
pub fn create(conn: &mut DbConn, spec: &NewAppSpec) -> Result<AppRow, ApiError> {
    conn.write_transaction(|conn| {
        if name_used(conn, spec.space_id, &spec.name, None)? {
            return Err(name_taken(&spec.name));
        }
        let guid = new_guid();
        let timestamp = now();
        let buildpacks = serde_json::to_string(&spec.buildpacks).map_err(ApiError::internal)?;
        let environment =
            serde_json::to_string(&spec.environment_variables).map_err(ApiError::internal)?;
        diesel::insert_into(apps::table)
            .values(&NewApp {
                guid: &guid,
                name: &spec.name,
                space_id: spec.space_id,
                state: STOPPED,
                lifecycle_type: BUILDPACK,
                buildpacks: &buildpacks,
                stack: spec.stack.as_deref(),
                environment_variables: &environment,
                created_at: &timestamp,
                updated_at: &timestamp,
            })
            .execute(conn)
            .map_err(|error| {
                if is_unique_violation(&error) {
                    name_taken(&spec.name)
                } else {
                    error.into()
                }
            })?;
        let app =
            find(conn, &guid)?.ok_or_else(|| ApiError::internal("app vanished after insert"))?;
        create_process(conn, app.id, "web", process_defaults::WEB_INSTANCES)?;
        Ok(app)
    })
}

/// Inserts a process of `process_type` with CC's defaults.
pub fn create_process(
    conn: &mut DbConn,
    app_id: i32,
    process_type: &str,
    instances: i32,
) -> Result<ProcessRow, ApiError> {
    let guid = new_guid();
    let timestamp = now();
    diesel::insert_into(processes::table)
        .values((
            processes::guid.eq(&guid),
            processes::app_id.eq(app_id),
            processes::process_type.eq(process_type),
            processes::command.eq(None::<String>),
            processes::instances.eq(instances),
            processes::memory_in_mb.eq(process_defaults::MEMORY_IN_MB),
            processes::disk_in_mb.eq(process_defaults::DISK_IN_MB),
            processes::log_rate_limit.eq(process_defaults::LOG_RATE_LIMIT),
            processes::health_check_type.eq(if process_type == "web" {
                "port"
            } else {
                "process"
            }),
            processes::created_at.eq(&timestamp),
            processes::updated_at.eq(&timestamp),
        ))
        .execute(conn)?;
    find_process(conn, &guid)?.ok_or_else(|| ApiError::internal("process vanished after insert"))
}

/// Renames an app and/or changes its buildpack lifecycle.
pub fn update(
    conn: &mut DbConn,
    app: &AppRow,
    name: Option<&str>,
    lifecycle: Option<(&[String], Option<&str>)>,
) -> Result<AppRow, ApiError> {
    conn.write_transaction(|conn| {
        if let Some(name) = name {
            if name_used(conn, app.space_id, name, Some(app.id))? {
                return Err(name_taken(name));
            }
            diesel::update(apps::table.find(app.id))
                .set(apps::name.eq(name))
                .execute(conn)
                .map_err(|error| {
                    if is_unique_violation(&error) {
                        name_taken(name)
                    } else {
                        error.into()
                    }
                })?;
        }
        if let Some((buildpacks, stack)) = lifecycle {
            let buildpacks = serde_json::to_string(buildpacks).map_err(ApiError::internal)?;
            diesel::update(apps::table.find(app.id))
                .set((apps::buildpacks.eq(buildpacks), apps::stack.eq(stack)))
                .execute(conn)?;
        }
        touch(conn, app.id)?;
        find_by_id(conn, app.id)?.ok_or_else(|| ApiError::not_found("App"))
    })
}

fn touch(conn: &mut DbConn, id: i32) -> Result<(), ApiError> {
    diesel::update(apps::table.find(id))
        .set(apps::updated_at.eq(now()))
        .execute(conn)?;
    Ok(())
}

/// Replaces the app's environment variables (a JSON object).
pub fn set_environment_variables(
    conn: &mut DbConn,
    id: i32,
    variables: &serde_json::Map<String, serde_json::Value>,
) -> Result<(), ApiError> {
    let text = serde_json::to_string(variables).map_err(ApiError::internal)?;
    diesel::update(apps::table.find(id))
        .set((
            apps::environment_variables.eq(text),
            apps::updated_at.eq(now()),
        ))
        .execute(conn)?;
    Ok(())
}

/// Deletes an app, its processes, builds, droplets and packages (the caller removes the blobs).
pub fn delete_cascade(conn: &mut DbConn, id: i32) -> Result<(), ApiError> {
    conn.write_transaction(|conn| {
        super::routes::delete_destinations_of_app(conn, id)?;
        super::builds::delete_for_app(conn, id)?;
        diesel::delete(
            crate::db::schema::packages::table.filter(crate::db::schema::packages::app_id.eq(id)),
        )
        .execute(conn)?;
        diesel::delete(processes::table.filter(processes::app_id.eq(id))).execute(conn)?;
        let app_guids: Vec<String> = apps::table.find(id).select(apps::guid).load(conn)?;
        super::metadata::delete_for(conn, super::metadata::APP, &app_guids)?;
        diesel::delete(apps::table.find(id)).execute(conn)?;
        Ok(())
    })
}

/// Deletes every app (and its processes) of these spaces; used when spaces are deleted.
pub fn delete_in_spaces(conn: &mut DbConn, space_ids: &[i32]) -> Result<(), ApiError> {
    let app_ids: Vec<i32> = apps::table
        .filter(apps::space_id.eq_any(space_ids))
        .select(apps::id)
        .load(conn)?;
    for id in app_ids {
        delete_cascade(conn, id)?;
    }
    Ok(())
}

/// Every process, in creation order.
pub fn list_processes(conn: &mut DbConn) -> Result<Vec<ProcessRow>, ApiError> {
    Ok(processes::table
        .order(processes::id.asc())
        .select(ProcessRow::as_select())
        .load(conn)?)
}

/// The processes of one app, in creation order.
pub fn processes_of(conn: &mut DbConn, app_id: i32) -> Result<Vec<ProcessRow>, ApiError> {
    Ok(processes::table
        .filter(processes::app_id.eq(app_id))
        .order(processes::id.asc())
        .select(ProcessRow::as_select())
        .load(conn)?)
}

/// The process with this GUID.
pub fn find_process(conn: &mut DbConn, guid: &str) -> Result<Option<ProcessRow>, ApiError> {
    Ok(processes::table
        .filter(processes::guid.eq(guid))
        .select(ProcessRow::as_select())
        .first(conn)
        .optional()?)
}

/// The app's process of this type.
pub fn find_process_of_type(
    conn: &mut DbConn,
    app_id: i32,
    process_type: &str,
) -> Result<Option<ProcessRow>, ApiError> {
    Ok(processes::table
        .filter(processes::app_id.eq(app_id))
        .filter(processes::process_type.eq(process_type))
        .select(ProcessRow::as_select())
        .first(conn)
        .optional()?)
}

/// Changes to a process; `None` leaves a field alone.
#[derive(Debug, Clone, Default)]
pub struct ProcessChanges {
    /// New start command (`Some(None)` resets to the detected one).
    pub command: Option<Option<String>>,
    /// Instances.
    pub instances: Option<i32>,
    /// Memory in MB.
    pub memory_in_mb: Option<i32>,
    /// Disk in MB.
    pub disk_in_mb: Option<i32>,
    /// Log rate limit in bytes per second (-1 unlimited).
    pub log_rate_limit: Option<i64>,
    /// Health check type.
    pub health_check_type: Option<String>,
    /// Health check endpoint (`Some(None)` clears it).
    pub health_check_endpoint: Option<Option<String>>,
    /// Health check timeout (`Some(None)` clears it).
    pub health_check_timeout: Option<Option<i32>>,
    /// Health check invocation timeout (`Some(None)` clears it).
    pub health_check_invocation_timeout: Option<Option<i32>>,
}

/// Applies `changes` to the process.
pub fn update_process(
    conn: &mut DbConn,
    id: i32,
    changes: &ProcessChanges,
) -> Result<ProcessRow, ApiError> {
    conn.write_transaction(|conn| {
        let target = processes::table.find(id);
        if let Some(command) = &changes.command {
            diesel::update(target)
                .set(processes::command.eq(command))
                .execute(conn)?;
        }
        if let Some(instances) = changes.instances {
            diesel::update(target)
                .set(processes::instances.eq(instances))
                .execute(conn)?;
        }
        if let Some(memory) = changes.memory_in_mb {
            diesel::update(target)
                .set(processes::memory_in_mb.eq(memory))
                .execute(conn)?;
        }
        if let Some(disk) = changes.disk_in_mb {
            diesel::update(target)
                .set(processes::disk_in_mb.eq(disk))
                .execute(conn)?;
        }
        if let Some(rate) = changes.log_rate_limit {
            diesel::update(target)
                .set(processes::log_rate_limit.eq(rate))
                .execute(conn)?;
        }
        if let Some(kind) = &changes.health_check_type {
            diesel::update(target)
                .set(processes::health_check_type.eq(kind))
                .execute(conn)?;
        }
        if let Some(endpoint) = &changes.health_check_endpoint {
            diesel::update(target)
                .set(processes::health_check_endpoint.eq(endpoint))
                .execute(conn)?;
        }
        if let Some(timeout) = changes.health_check_timeout {
            diesel::update(target)
                .set(processes::health_check_timeout.eq(timeout))
                .execute(conn)?;
        }
        if let Some(timeout) = changes.health_check_invocation_timeout {
            diesel::update(target)
                .set(processes::health_check_invocation_timeout.eq(timeout))
                .execute(conn)?;
        }
        diesel::update(target)
            .set(processes::updated_at.eq(now()))
            .execute(conn)?;
        processes::table
            .find(id)
            .select(ProcessRow::as_select())
            .first(conn)
            .optional()?
            .ok_or_else(|| ApiError::not_found("Process"))
    })
}

/// The blobs of the apps in these spaces (packages, droplets, buildpack caches), collected before
/// the rows go so the caller can remove them from the blob store afterwards.
pub fn blob_keys_in_spaces(
    conn: &mut DbConn,
    space_ids: &[i32],
) -> Result<Vec<crate::blobstore::BlobKey>, ApiError> {
    use crate::blobstore::BlobKey;
    let apps: Vec<(i32, String)> = apps::table
        .filter(apps::space_id.eq_any(space_ids))
        .select((apps::id, apps::guid))
        .load(conn)?;
    let ids: Vec<i32> = apps.iter().map(|(id, _)| *id).collect();
    let mut keys: Vec<BlobKey> = super::packages::guids_of_apps(conn, &ids)?
        .into_iter()
        .map(BlobKey::Package)
        .collect();
    keys.extend(
        super::builds::droplet_guids_of_apps(conn, &ids)?
            .into_iter()
            .map(BlobKey::Droplet),
    );
    keys.extend(
        apps.into_iter()
            .map(|(_, guid)| BlobKey::BuildpackCache(guid)),
    );
    Ok(keys)
}
