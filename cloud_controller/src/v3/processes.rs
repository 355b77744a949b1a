//! `/v3/processes` and `/v3/apps/:guid/processes`: list, get, update (command, health check),
//! scale, sidecars (none) and stats. Until a DEA reports instances, stats answer what CC answers
//! for instances that are not running: one DOWN entry per desired instance.

use std::collections::HashMap;

use actix_web::{web, HttpRequest, HttpResponse};
use serde_json::{json, Map, Value};

use crate::app::{resource, AppState};
use crate::auth::CurrentUser;
use crate::body;
use crate::db::models::{AppRow, ProcessRow, SpaceRow};
use crate::db::DbConn;
use crate::error::ApiError;
use crate::permissions::Permissions;
use crate::query::{list_body, ListQuery};
use crate::store;
use crate::store::apps::ProcessChanges;
use crate::v3::apps::visible_app;
use crate::v3::present;
use crate::v3::present::CommandView;

/// Registers the process routes.
pub fn configure(config: &mut web::ServiceConfig) {
    config
        .service(resource("/v3/processes").route(web::get().to(list)))
        .service(
            resource("/v3/processes/{guid}")
                .route(web::get().to(get))
                .route(web::patch().to(update)),
        )
        .service(resource("/v3/processes/{guid}/actions/scale").route(web::post().to(scale)))
        .service(resource("/v3/processes/{guid}/sidecars").route(web::get().to(sidecars)))
        .service(resource("/v3/processes/{guid}/stats").route(web::get().to(stats)))
        .service(resource("/v3/apps/{guid}/processes").route(web::get().to(list_for_app)))
        .service(resource("/v3/apps/{guid}/processes/{type}").route(web::get().to(get_for_app)))
        .service(
            resource("/v3/apps/{guid}/processes/{type}/actions/scale")
                .route(web::post().to(scale_for_app)),
        );
}

/// A process with its app and space, when the caller may see the space; otherwise CC's 404
/// "Process not found".
fn visible_process(
    conn: &mut DbConn,
    permissions: &Permissions,
    guid: &str,
) -> Result<(ProcessRow, AppRow, SpaceRow), ApiError> {
    let not_found = || ApiError::not_found("Process");
    let process = store::apps::find_process(conn, guid)?.ok_or_else(not_found)?;
    let app = store::apps::find_by_id(conn, process.app_id)?.ok_or_else(not_found)?;
    let space = store::spaces::find_by_id(conn, app.space_id)?.ok_or_else(not_found)?;
    if !permissions.can_read_space(space.id, space.organization_id) {
        return Err(not_found());
    }
    Ok((process, app, space))
}

/// The app's process of `process_type` (404 "App not found" / "Process not found").
fn visible_process_of_app(
    conn: &mut DbConn,
    permissions: &Permissions,
    app_guid: &str,
    process_type: &str,
) -> Result<(ProcessRow, AppRow, SpaceRow), ApiError> {
    let (app, space, _org) = visible_app(conn, permissions, app_guid)?;
    let process = store::apps::find_process_of_type(conn, app.id, process_type)?
        .ok_or_else(|| ApiError::not_found("Process"))?;
    Ok((process, app, space))
}

/// The command as the caller may see it: space developers and admins see it.
fn command_view(permissions: &Permissions, space: &SpaceRow) -> CommandView {
    if permissions.can_read_secrets_in_space(space.id) {
        CommandView::Shown
    } else {
        CommandView::Hidden
    }
}

const LIST_FILTERS: &[&str] = &[
    "guids",
    "types",
    "app_guids",
    "space_guids",
    "organization_guids",
    "label_selector",
];

async fn list(
    state: web::Data<AppState>,
    user: CurrentUser,
    request: HttpRequest,
) -> Result<HttpResponse, ApiError> {
    let query = ListQuery::parse(&request, LIST_FILTERS, &[])?;
    let base = state.external_url.clone();
    let body = state
        .db
        .run(move |conn| {
            let permissions = Permissions::load(conn, &user)?;
            let orgs: HashMap<i32, String> = store::orgs::list(conn)?
                .into_iter()
                .map(|org| (org.id, org.guid))
                .collect();
            let spaces: HashMap<i32, SpaceRow> = store::spaces::list(conn)?
                .into_iter()
                .filter(|space| permissions.can_read_space(space.id, space.organization_id))
                .map(|space| (space.id, space))
                .collect();
            let apps: HashMap<i32, AppRow> = store::apps::list(conn)?
                .into_iter()
                .filter(|app| spaces.contains_key(&app.space_id))
                .map(|app| (app.id, app))
                .collect();
            let mut processes: Vec<(ProcessRow, &AppRow, &SpaceRow)> =
                store::apps::list_processes(conn)?
                    .into_iter()
                    .filter_map(|process| {
                        let app = apps.get(&process.app_id)?;
                        let space = spaces.get(&app.space_id)?;
                        Some((process, app, space))
                    })
                    .filter(|(process, app, space)| {
                        query.matches("guids", &process.guid)
                            && query.matches("types", &process.process_type)
                            && query.matches("app_guids", &app.guid)
                            && query.matches("space_guids", &space.guid)
                            && query.matches(
                                "organization_guids",
                                orgs.get(&space.organization_id).map_or("", String::as_str),
                            )
                    })
                    .collect();
            query.sort(
                &mut processes,
                |(process, ..)| &process.process_type,
                |(process, ..)| &process.created_at,
                |(process, ..)| &process.updated_at,
            );
            let (page, pagination) = query.page_of(processes, &base, "/v3/processes");
            let resources = page
                .iter()
                .map(|(process, app, space)| {
                    present::process(&base, process, &app.guid, &space.guid, CommandView::List)
                })
                .collect();
            Ok(list_body(pagination, resources, None))
        })
        .await?;
    Ok(HttpResponse::Ok().json(body))
}

async fn list_for_app(
    state: web::Data<AppState>,
    user: CurrentUser,
    path: web::Path<String>,
    request: HttpRequest,
) -> Result<HttpResponse, ApiError> {
    let query = ListQuery::parse(&request, &["guids", "types", "label_selector"], &[])?;
    let guid = path.into_inner();
    let base = state.external_url.clone();
    let list_path = request.path().to_owned();
    let body = state
        .db
        .run(move |conn| {
            let permissions = Permissions::load(conn, &user)?;
            let (app, space, _org) = visible_app(conn, &permissions, &guid)?;
            let mut processes: Vec<ProcessRow> = store::apps::processes_of(conn, app.id)?
                .into_iter()
                .filter(|process| {
                    query.matches("guids", &process.guid)
                        && query.matches("types", &process.process_type)
                })
                .collect();
            query.sort(
                &mut processes,
                |process| &process.process_type,
                |process| &process.created_at,
                |process| &process.updated_at,
            );
            let (page, pagination) = query.page_of(processes, &base, &list_path);
            let resources = page
                .iter()
                .map(|process| {
                    present::process(&base, process, &app.guid, &space.guid, CommandView::List)
                })
                .collect();
            Ok(list_body(pagination, resources, None))
        })
        .await?;
    Ok(HttpResponse::Ok().json(body))
}

async fn get(
    state: web::Data<AppState>,
    user: CurrentUser,
    path: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let guid = path.into_inner();
    let base = state.external_url.clone();
    let body = state
        .db
        .run(move |conn| {
            let permissions = Permissions::load(conn, &user)?;
            let (process, app, space) = visible_process(conn, &permissions, &guid)?;
            Ok(present::process(
                &base,
                &process,
                &app.guid,
                &space.guid,
                command_view(&permissions, &space),
            ))
        })
        .await?;
    Ok(HttpResponse::Ok().json(body))
}

async fn get_for_app(
    state: web::Data<AppState>,
    user: CurrentUser,
    path: web::Path<(String, String)>,
) -> Result<HttpResponse, ApiError> {
    let (guid, process_type) = path.into_inner();
    let base = state.external_url.clone();
    let body = state
        .db
        .run(move |conn| {
            let permissions = Permissions::load(conn, &user)?;
            let (process, app, space) =
                visible_process_of_app(conn, &permissions, &guid, &process_type)?;
            Ok(present::process(
                &base,
                &process,
                &app.guid,
                &space.guid,
                command_view(&permissions, &space),
            ))
        })
        .await?;
    Ok(HttpResponse::Ok().json(body))
}

/// An optional integer field in `range`, with CC's messages.
fn optional_integer(
    object: &Map<String, Value>,
    field: &str,
    label: &str,
    minimum: i64,
    maximum: i64,
) -> Result<Option<i64>, ApiError> {
    match object.get(field) {
        None | Some(Value::Null) => Ok(None),
        Some(value) => {
            let number = value
                .as_i64()
                .ok_or_else(|| ApiError::unprocessable(format!("{label} is not a number")))?;
            if number < minimum {
                let message = if minimum == 0 {
                    format!("{label} must be greater than or equal to 0")
                } else if minimum == 1 {
                    format!("{label} must be greater than 0")
                } else {
                    format!("{label} must be greater than or equal to {minimum}")
                };
                return Err(ApiError::unprocessable(message));
            }
            if number > maximum {
                return Err(ApiError::unprocessable(format!(
                    "{label} must be less than or equal to {maximum}"
                )));
            }
            Ok(Some(number))
        }
    }
}

fn scale_changes(payload: &Value) -> Result<ProcessChanges, ApiError> {
    let object = body::object(
        payload,
        &[
            "instances",
            "memory_in_mb",
            "disk_in_mb",
            "log_rate_limit_in_bytes_per_second",
        ],
    )?;
    let max = i64::from(i32::MAX);
    let as_i32 = |value: Option<i64>| value.and_then(|value| i32::try_from(value).ok());
    Ok(ProcessChanges {
        instances: as_i32(optional_integer(object, "instances", "Instances", 0, max)?),
        memory_in_mb: as_i32(optional_integer(
            object,
            "memory_in_mb",
            "Memory in mb",
            1,
            max,
        )?),
        disk_in_mb: as_i32(optional_integer(
            object,
            "disk_in_mb",
            "Disk in mb",
            1,
            max,
        )?),
        log_rate_limit: optional_integer(
            object,
            "log_rate_limit_in_bytes_per_second",
            "Log rate limit in bytes per second",
            -1,
            i64::MAX,
        )?,
        ..ProcessChanges::default()
    })
}

fn update_changes(payload: &Value, current: &ProcessRow) -> Result<ProcessChanges, ApiError> {
    let object = body::object(payload, &["command", "health_check"])?;
    let mut changes = ProcessChanges::default();
    match object.get("command") {
        None => {}
        Some(Value::Null) => changes.command = Some(None),
        Some(Value::String(command)) => {
            if command.is_empty() || command.chars().count() > 4096 {
                return Err(ApiError::unprocessable(
                    "Command must be between 1 and 4096 characters",
                ));
            }
            changes.command = Some(Some(command.clone()));
        }
        Some(_) => return Err(ApiError::unprocessable("Command must be a string")),
    }
    let Some(health_check) = object.get("health_check") else {
        return Ok(changes);
    };
    let health_check = health_check
        .as_object()
        .ok_or_else(|| ApiError::unprocessable("Health check must be an object"))?;
    if let Some(unknown) = health_check
        .keys()
        .find(|key| *key != "type" && *key != "data")
    {
        return Err(ApiError::unprocessable(format!(
            "Health check Unknown field(s): '{unknown}'"
        )));
    }
    let kind = match health_check.get("type") {
        None | Some(Value::Null) => current.health_check_type.clone(),
        Some(Value::String(kind)) if ["port", "process", "http"].contains(&kind.as_str()) => {
            kind.clone()
        }
        Some(_) => {
            return Err(ApiError::unprocessable(
                "Health check type must be \"port\", \"process\", or \"http\"",
            ))
        }
    };
    let data = match health_check.get("data") {
        None | Some(Value::Null) => Map::new(),
        Some(Value::Object(data)) => data.clone(),
        Some(_) => {
            return Err(ApiError::unprocessable(
                "Health check data must be an object",
            ))
        }
    };
    if let Some(unknown) = data
        .keys()
        .find(|key| !["timeout", "invocation_timeout", "endpoint"].contains(&key.as_str()))
    {
        return Err(ApiError::unprocessable(format!(
            "Health check Unknown field(s): '{unknown}'"
        )));
    }
    let max = i64::from(i32::MAX);
    let timeout = |field: &str, label: &str| -> Result<Option<Option<i32>>, ApiError> {
        match data.get(field) {
            None => Ok(None),
            Some(Value::Null) => Ok(Some(None)),
            Some(_) => Ok(Some(
                optional_integer(&data, field, label, 1, max)?
                    .and_then(|value| i32::try_from(value).ok()),
            )),
        }
    };
    changes.health_check_timeout = timeout("timeout", "Timeout")?;
    changes.health_check_invocation_timeout = timeout("invocation_timeout", "Invocation timeout")?;
    match data.get("endpoint") {
        None => {}
        Some(Value::Null) => changes.health_check_endpoint = Some(None),
        Some(Value::String(endpoint)) => {
            if kind != "http" {
                return Err(ApiError::unprocessable(
                    "Health check type must be \"http\" to set a health check HTTP endpoint",
                ));
            }
            if !endpoint.starts_with('/') {
                return Err(ApiError::unprocessable(
                    "Health check endpoint must be a valid URI path",
                ));
            }
            changes.health_check_endpoint = Some(Some(endpoint.clone()));
        }
        Some(_) => {
            return Err(ApiError::unprocessable(
                "Health check endpoint must be a string",
            ))
        }
    }
    if kind != "http" && changes.health_check_endpoint.is_none() {
        changes.health_check_endpoint = Some(None);
    }
    if kind == "http"
        && changes.health_check_endpoint.is_none()
        && current.health_check_endpoint.is_none()
    {
        changes.health_check_endpoint = Some(Some("/".to_owned()));
    }
    changes.health_check_type = Some(kind);
    Ok(changes)
}

async fn update(
    state: web::Data<AppState>,
    user: CurrentUser,
    path: web::Path<String>,
    payload: web::Json<Value>,
) -> Result<HttpResponse, ApiError> {
    body::object(&payload, &["command", "health_check"])?;
    let guid = path.into_inner();
    let base = state.external_url.clone();
    let payload = payload.into_inner();
    let body = state
        .db
        .run(move |conn| {
            let permissions = Permissions::load(conn, &user)?;
            let (process, app, space) = visible_process(conn, &permissions, &guid)?;
            if !permissions.can_write_to_space(space.id) {
                return Err(ApiError::forbidden());
            }
            let changes = update_changes(&payload, &process)?;
            let process = store::apps::update_process(conn, process.id, &changes)?;
            Ok(present::process(
                &base,
                &process,
                &app.guid,
                &space.guid,
                CommandView::Shown,
            ))
        })
        .await?;
    Ok(HttpResponse::Ok().json(body))
}

fn apply_scale(
    conn: &mut DbConn,
    permissions: &Permissions,
    found: (ProcessRow, AppRow, SpaceRow),
    changes: &ProcessChanges,
    base: &str,
) -> Result<(Value, ProcessRow, ProcessRow), ApiError> {
    let (before, app, space) = found;
    if !permissions.can_write_to_space(space.id) {
        return Err(ApiError::forbidden());
    }
    let process = store::apps::update_process(conn, before.id, changes)?;
    let body = present::process(base, &process, &app.guid, &space.guid, CommandView::Shown);
    Ok((body, before, process))
}

async fn scale(
    state: web::Data<AppState>,
    user: CurrentUser,
    path: web::Path<String>,
    payload: web::Json<Value>,
) -> Result<HttpResponse, ApiError> {
    let changes = scale_changes(&payload)?;
    let guid = path.into_inner();
    let base = state.external_url.clone();
    let body = state
        .db
        .run(move |conn| {
            let permissions = Permissions::load(conn, &user)?;
            let found = visible_process(conn, &permissions, &guid)?;
            apply_scale(conn, &permissions, found, &changes, &base)
        })
        .await?;
    let (body, before, after) = body;
    crate::v3::running::after_scale(&state, &before, after).await;
    Ok(HttpResponse::Accepted().json(body))
}

async fn scale_for_app(
    state: web::Data<AppState>,
    user: CurrentUser,
    path: web::Path<(String, String)>,
    payload: web::Json<Value>,
) -> Result<HttpResponse, ApiError> {
    let changes = scale_changes(&payload)?;
    let (guid, process_type) = path.into_inner();
    let base = state.external_url.clone();
    let body = state
        .db
        .run(move |conn| {
            let permissions = Permissions::load(conn, &user)?;
            let found = visible_process_of_app(conn, &permissions, &guid, &process_type)?;
            apply_scale(conn, &permissions, found, &changes, &base)
        })
        .await?;
    let (body, before, after) = body;
    crate::v3::running::after_scale(&state, &before, after).await;
    Ok(HttpResponse::Accepted().json(body))
}

async fn sidecars(
    state: web::Data<AppState>,
    user: CurrentUser,
    path: web::Path<String>,
    request: HttpRequest,
) -> Result<HttpResponse, ApiError> {
    let query = ListQuery::parse(&request, &[], &[])?;
    let guid = path.into_inner();
    state
        .db
        .run(move |conn| {
            let permissions = Permissions::load(conn, &user)?;
            visible_process(conn, &permissions, &guid).map(|_| ())
        })
        .await?;
    // Kiln runs no sidecars: every process has none.
    let (_, pagination) = query.page_of(Vec::<()>::new(), &state.external_url, request.path());
    Ok(HttpResponse::Ok().json(list_body(pagination, Vec::new(), None)))
}

async fn stats(
    state: web::Data<AppState>,
    user: CurrentUser,
    path: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let guid = path.into_inner();
    let body = state
        .db
        .run(move |conn| {
            let permissions = Permissions::load(conn, &user)?;
            let (process, app, _space) = visible_process(conn, &permissions, &guid)?;
            if app.state == crate::v3::running::STARTED {
                return Ok(Err((app, process)));
            }
            // A stopped app runs nothing: every desired instance is DOWN.
            let time = store::now();
            let resources: Vec<Value> = (0..process.instances.max(0))
                .map(|index| present::down_instance_stats(&process, index, &time))
                .collect();
            Ok(Ok(json!({"resources": resources})))
        })
        .await?;
    let body = match body {
        Ok(body) => body,
        Err((app, process)) => {
            let resources = crate::v3::running::process_stats(&state.stager, &app, &process).await;
            json!({"resources": resources})
        }
    };
    Ok(HttpResponse::Ok().json(body))
}
