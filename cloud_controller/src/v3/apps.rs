//! `/v3/apps`: list, get, create (with its `web` process), update (name, buildpack lifecycle),
//! delete as a job, and the app's environment (`/env`, `/environment_variables`).

use std::collections::HashMap;

use actix_web::{web, HttpRequest, HttpResponse};
use serde_json::{json, Map, Value};

use crate::app::{resource, AppState};
use crate::auth::CurrentUser;
use crate::blobstore::BlobKey;
use crate::body;
use crate::db::models::{AppRow, OrgRow, SpaceRow};
use crate::db::DbConn;
use crate::error::ApiError;
use crate::permissions::Permissions;
use crate::query::{list_body, ListQuery, SortKey};
use crate::store;
use crate::store::apps::NewAppSpec;
use crate::v3::present;

/// Registers the app routes.
pub fn configure(config: &mut web::ServiceConfig) {
    config
        .service(
            resource("/v3/apps")
                .route(web::get().to(list))
                .route(web::post().to(create)),
        )
        .service(
            resource("/v3/apps/{guid}")
                .route(web::get().to(get))
                .route(web::patch().to(update))
                .route(web::delete().to(delete)),
        )
        .service(resource("/v3/apps/{guid}/env").route(web::get().to(env)))
        .service(
            resource("/v3/apps/{guid}/environment_variables")
                .route(web::get().to(environment_variables))
                .route(web::patch().to(patch_environment_variables)),
        );
}

/// The app, its space and org, if the app exists and the caller may see its space; otherwise
/// CC's 404 "App not found".
pub(crate) fn visible_app(
    conn: &mut DbConn,
    permissions: &Permissions,
    guid: &str,
) -> Result<(AppRow, SpaceRow, OrgRow), ApiError> {
    let not_found = || ApiError::not_found("App");
    let app = store::apps::find(conn, guid)?.ok_or_else(not_found)?;
    let space = store::spaces::find_by_id(conn, app.space_id)?.ok_or_else(not_found)?;
    if !permissions.can_read_space(space.id, space.organization_id) {
        return Err(not_found());
    }
    let org = store::orgs::find_by_id(conn, space.organization_id)?.ok_or_else(not_found)?;
    Ok((app, space, org))
}

/// An app with its stored metadata.
fn render(
    conn: &mut DbConn,
    base: &str,
    app: &AppRow,
    space_guid: &str,
) -> Result<Value, ApiError> {
    let metadata = store::metadata::load(conn, store::metadata::APP, &app.guid)?;
    Ok(present::with_metadata(
        present::app(base, app, space_guid),
        Some(&metadata),
    ))
}

/// Space GUIDs and org GUIDs by space id, for presenting and filtering.
fn space_index(conn: &mut DbConn) -> Result<HashMap<i32, (SpaceRow, OrgRow)>, ApiError> {
    let orgs: HashMap<i32, OrgRow> = store::orgs::list(conn)?
        .into_iter()
        .map(|org| (org.id, org))
        .collect();
    Ok(store::spaces::list(conn)?
        .into_iter()
        .filter_map(|space| {
            let org = orgs.get(&space.organization_id)?.clone();
            Some((space.id, (space, org)))
        })
        .collect())
}

async fn list(
    state: web::Data<AppState>,
    user: CurrentUser,
    request: HttpRequest,
) -> Result<HttpResponse, ApiError> {
    let query = ListQuery::parse(
        &request,
        &[
            "names",
            "guids",
            "space_guids",
            "organization_guids",
            "stacks",
            "lifecycle_type",
            "include",
            "label_selector",
        ],
        &[SortKey::Name],
    )?;
    query.check_include(&["space", "space.organization"])?;
    let base = state.external_url.clone();
    let body = state
        .db
        .run(move |conn| {
            let permissions = Permissions::load(conn, &user)?;
            let spaces = space_index(conn)?;
            let metadata = store::metadata::load_all(conn, store::metadata::APP)?;
            let no_metadata = store::metadata::Metadata::default();
            let mut apps: Vec<AppRow> = store::apps::list(conn)?
                .into_iter()
                .filter(|app| {
                    let Some((space, org)) = spaces.get(&app.space_id) else {
                        return false;
                    };
                    permissions.can_read_space(space.id, space.organization_id)
                        && query.matches("names", &app.name)
                        && query.matches("guids", &app.guid)
                        && query.matches("space_guids", &space.guid)
                        && query.matches("organization_guids", &org.guid)
                        && query.matches_opt("stacks", app.stack.as_deref())
                        && query.matches("lifecycle_type", &app.lifecycle_type)
                        && query
                            .matches_labels(&metadata.get(&app.guid).unwrap_or(&no_metadata).labels)
                })
                .collect();
            query.sort(
                &mut apps,
                |app| &app.name,
                |app| &app.created_at,
                |app| &app.updated_at,
            );
            let (page, pagination) = query.page_of_labelled(apps, &base, "/v3/apps");
            let space_guid = |app: &AppRow| {
                spaces
                    .get(&app.space_id)
                    .map_or(String::new(), |(space, _)| space.guid.clone())
            };
            let resources = page
                .iter()
                .map(|app| {
                    present::with_metadata(
                        present::app(&base, app, &space_guid(app)),
                        metadata.get(&app.guid),
                    )
                })
                .collect();
            let included = if query.includes("space") || query.includes("space.organization") {
                let mut seen = Vec::new();
                let mut included_spaces = Vec::new();
                let mut included_orgs = Vec::new();
                let quotas = crate::v3::organizations::quota_guids(conn)?;
                let space_metadata = store::metadata::load_all(conn, store::metadata::SPACE)?;
                let org_metadata = store::metadata::load_all(conn, store::metadata::ORGANIZATION)?;
                for app in &page {
                    if seen.contains(&app.space_id) {
                        continue;
                    }
                    seen.push(app.space_id);
                    let Some((space, org)) = spaces.get(&app.space_id) else {
                        continue;
                    };
                    if query.includes("space") {
                        included_spaces.push(present::with_metadata(
                            present::space(&base, space, &org.guid),
                            space_metadata.get(&space.guid),
                        ));
                    }
                    if query.includes("space.organization")
                        && !included_orgs
                            .iter()
                            .any(|included: &Value| included["guid"] == org.guid.as_str())
                    {
                        let quota = quotas
                            .get(&org.quota_definition_id)
                            .map_or("", String::as_str);
                        included_orgs.push(present::with_metadata(
                            present::organization(&base, org, quota),
                            org_metadata.get(&org.guid),
                        ));
                    }
                }
                let mut included = Map::new();
                if query.includes("space") {
                    included.insert("spaces".into(), Value::Array(included_spaces));
                }
                if query.includes("space.organization") {
                    included.insert("organizations".into(), Value::Array(included_orgs));
                }
                Some(Value::Object(included))
            } else {
                None
            };
            Ok(list_body(pagination, resources, included))
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
            let (app, space, _org) = visible_app(conn, &permissions, &guid)?;
            render(conn, &base, &app, &space.guid)
        })
        .await?;
    Ok(HttpResponse::Ok().json(body))
}

/// A parsed `lifecycle` object: buildpacks and stack, each `None` when not given.
#[derive(Debug, Default)]
struct Lifecycle {
    buildpacks: Option<Vec<String>>,
    stack: Option<String>,
}

fn lifecycle(object: &Map<String, Value>) -> Result<Option<Lifecycle>, ApiError> {
    let Some(value) = object.get("lifecycle") else {
        return Ok(None);
    };
    let lifecycle = value
        .as_object()
        .ok_or_else(|| ApiError::unprocessable("Lifecycle must be an object"))?;
    if let Some(unknown) = lifecycle
        .keys()
        .find(|key| *key != "type" && *key != "data")
    {
        return Err(ApiError::unprocessable(format!(
            "Lifecycle Unknown field(s): '{unknown}'"
        )));
    }
    match lifecycle.get("type").and_then(Value::as_str) {
        Some(store::apps::BUILDPACK) => {}
        Some(other) => {
            return Err(ApiError::unprocessable(format!(
                "Lifecycle type '{other}' is not supported; Kiln stages buildpack apps only"
            )))
        }
        None => return Err(ApiError::unprocessable("Lifecycle type must be a string")),
    }
    let mut parsed = Lifecycle::default();
    let data = match lifecycle.get("data") {
        None | Some(Value::Null) => return Ok(Some(parsed)),
        Some(Value::Object(data)) => data,
        Some(_) => return Err(ApiError::unprocessable("Lifecycle data must be an object")),
    };
    if let Some(unknown) = data
        .keys()
        .find(|key| *key != "buildpacks" && *key != "stack")
    {
        return Err(ApiError::unprocessable(format!(
            "Lifecycle Unknown field(s): '{unknown}'"
        )));
    }
    match data.get("buildpacks") {
        None => {}
        Some(Value::Null) => parsed.buildpacks = Some(Vec::new()),
        Some(Value::Array(items)) => {
            let mut buildpacks = Vec::new();
            for item in items {
                let name = item
                    .as_str()
                    .filter(|name| !name.trim().is_empty())
                    .ok_or_else(|| {
                        ApiError::unprocessable("Lifecycle Buildpacks can only contain strings")
                    })?;
                buildpacks.push(name.to_owned());
            }
            parsed.buildpacks = Some(buildpacks);
        }
        Some(_) => {
            return Err(ApiError::unprocessable(
                "Lifecycle Buildpacks must be an array",
            ))
        }
    }
    match data.get("stack") {
        None | Some(Value::Null) => {}
        Some(Value::String(stack)) => parsed.stack = Some(stack.clone()),
        Some(_) => return Err(ApiError::unprocessable("Lifecycle Stack must be a string")),
    }
    Ok(Some(parsed))
}

/// CC's environment-variable key rules; `label` is the field's name in messages.
fn check_variables(
    variables: &Map<String, Value>,
    label: &str,
    allow_null: bool,
) -> Result<(), ApiError> {
    for (key, value) in variables {
        if key.is_empty() {
            return Err(ApiError::unprocessable(format!(
                "{label} key must be a minimum length of 1"
            )));
        }
        let upper = key.to_uppercase();
        if upper.starts_with("VCAP_") {
            return Err(ApiError::unprocessable(format!(
                "{label} cannot start with VCAP_"
            )));
        }
        if upper.starts_with("VMC_") {
            return Err(ApiError::unprocessable(format!(
                "{label} cannot start with VMC_"
            )));
        }
        if upper == "PORT" {
            return Err(ApiError::unprocessable(format!("{label} cannot set PORT")));
        }
        if value.is_null() && !allow_null {
            return Err(ApiError::unprocessable(format!(
                "{label} value of '{key}' must not be null"
            )));
        }
        if value.is_object() || value.is_array() {
            return Err(ApiError::unprocessable(format!(
                "{label} value of '{key}' must be a string, number or boolean"
            )));
        }
    }
    Ok(())
}

fn environment_object<'a>(
    object: &'a Map<String, Value>,
    field: &str,
    label: &str,
    allow_null: bool,
) -> Result<Option<&'a Map<String, Value>>, ApiError> {
    match object.get(field) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Object(variables)) => {
            check_variables(variables, label, allow_null)?;
            Ok(Some(variables))
        }
        Some(_) => Err(ApiError::unprocessable(format!(
            "{label} must be an object"
        ))),
    }
}

/// Checks that `stack` names an existing stack (CC: "Stack must be an existing stack").
fn check_stack(conn: &mut DbConn, stack: &str) -> Result<(), ApiError> {
    if store::reference_data::find_stack_by_name(conn, stack)?.is_none() {
        return Err(ApiError::unprocessable(
            "Lifecycle Stack must be an existing stack",
        ));
    }
    Ok(())
}

async fn create(
    state: web::Data<AppState>,
    user: CurrentUser,
    payload: web::Json<Value>,
) -> Result<HttpResponse, ApiError> {
    let object = body::object(
        &payload,
        &[
            "name",
            "relationships",
            "lifecycle",
            "environment_variables",
            "metadata",
        ],
    )?;
    let name = body::name(object, true)?.unwrap_or_default();
    let metadata = body::metadata(object)?;
    let space_guid = body::relationship_guid(object, "space")?.ok_or_else(|| {
        ApiError::unprocessable(
            "Relationships 'relationships' must include one or more valid relationships",
        )
    })?;
    let lifecycle = lifecycle(object)?.unwrap_or_default();
    let environment_variables = environment_object(
        object,
        "environment_variables",
        "Environment variables",
        false,
    )?
    .cloned()
    .unwrap_or_default();
    let base = state.external_url.clone();
    let default_stack = state.default_stack.clone();
    let body = state
        .db
        .run(move |conn| {
            let permissions = Permissions::load(conn, &user)?;
            let space = store::spaces::find(conn, &space_guid)?
                .filter(|space| permissions.can_read_space(space.id, space.organization_id))
                .ok_or_else(|| {
                    ApiError::unprocessable(
                        "Invalid space. Ensure that the space exists and you have access to it.",
                    )
                })?;
            if !permissions.can_write_to_space(space.id) {
                return Err(ApiError::forbidden());
            }
            let stack = lifecycle.stack.unwrap_or(default_stack);
            check_stack(conn, &stack)?;
            let app = store::apps::create(
                conn,
                &NewAppSpec {
                    name,
                    space_id: space.id,
                    buildpacks: lifecycle.buildpacks.unwrap_or_default(),
                    stack: Some(stack),
                    environment_variables,
                },
            )?;
            store::metadata::apply(conn, store::metadata::APP, &app.guid, &metadata)?;
            let identity = crate::app_logs::identity(conn, &app)?;
            Ok((render(conn, &base, &app, &space.guid)?, identity))
        })
        .await?;
    let (body, identity) = body;
    state.api_logs.app_created(&identity);
    Ok(HttpResponse::Created().json(body))
}

async fn update(
    state: web::Data<AppState>,
    user: CurrentUser,
    path: web::Path<String>,
    payload: web::Json<Value>,
) -> Result<HttpResponse, ApiError> {
    let object = body::object(&payload, &["name", "lifecycle", "metadata"])?;
    let name = body::name(object, false)?;
    let metadata = body::metadata(object)?;
    let lifecycle = lifecycle(object)?;
    let guid = path.into_inner();
    let base = state.external_url.clone();
    let body = state
        .db
        .run(move |conn| {
            let permissions = Permissions::load(conn, &user)?;
            let (app, space, _org) = visible_app(conn, &permissions, &guid)?;
            if !permissions.can_write_to_space(space.id) {
                return Err(ApiError::forbidden());
            }
            let lifecycle = match lifecycle {
                Some(lifecycle) => {
                    let buildpacks = match lifecycle.buildpacks {
                        Some(buildpacks) => buildpacks,
                        None => serde_json::from_str(&app.buildpacks).unwrap_or_default(),
                    };
                    let stack = lifecycle.stack.or_else(|| app.stack.clone());
                    if let Some(stack) = &stack {
                        check_stack(conn, stack)?;
                    }
                    Some((buildpacks, stack))
                }
                None => None,
            };
            let app = store::apps::update(
                conn,
                &app,
                name.as_deref(),
                lifecycle
                    .as_ref()
                    .map(|(buildpacks, stack)| (buildpacks.as_slice(), stack.as_deref())),
            )?;
            store::metadata::apply(conn, store::metadata::APP, &app.guid, &metadata)?;
            render(conn, &base, &app, &space.guid)
        })
        .await?;
    Ok(HttpResponse::Ok().json(body))
}

async fn delete(
    state: web::Data<AppState>,
    user: CurrentUser,
    path: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let guid = path.into_inner();
    let app_guid = guid.clone();
    // Like CC's AppDelete: the app's service bindings are deleted at their brokers first; an
    // app whose bindings cannot be deleted stays.
    let (check_user, check_guid) = (user.clone(), guid.clone());
    state
        .db
        .run(move |conn| {
            let permissions = Permissions::load(conn, &check_user)?;
            let (_app, space, _org) = visible_app(conn, &permissions, &check_guid)?;
            if !permissions.can_write_to_space(space.id) {
                return Err(ApiError::forbidden());
            }
            Ok(())
        })
        .await?;
    let failures = state
        .services
        .unbind_app(&guid, Some(user.guid.clone()))
        .await?;
    if !failures.is_empty() {
        return Err(ApiError::unprocessable(failures.join("\n")));
    }
    let job_guid = state
        .db
        .run(move |conn| {
            let permissions = Permissions::load(conn, &user)?;
            let (app, space, _org) = visible_app(conn, &permissions, &guid)?;
            if !permissions.can_write_to_space(space.id) {
                return Err(ApiError::forbidden());
            }
            let mut blobs: Vec<BlobKey> = store::packages::guids_of_apps(conn, &[app.id])?
                .into_iter()
                .map(BlobKey::Package)
                .collect();
            blobs.extend(
                store::builds::droplet_guids_of_apps(conn, &[app.id])?
                    .into_iter()
                    .map(BlobKey::Droplet),
            );
            blobs.push(BlobKey::BuildpackCache(app.guid.clone()));
            let identity = crate::app_logs::identity(conn, &app)?;
            let job = store::jobs::run_now(conn, "app.delete", "app", &app.guid, |conn| {
                store::apps::delete_cascade(conn, app.id)
            })?;
            Ok((job, blobs, identity))
        })
        .await?;
    let (job_guid, blobs, identity) = job_guid;
    state.api_logs.app_deleted(&identity);
    // A deleted app runs nowhere.
    crate::v3::running::stop_all(&state.stager, &app_guid).await;
    state.blobs.delete_all(blobs).await;
    Ok(crate::v3::accepted_job(&state.external_url, &job_guid))
}

fn variables_of(app: &AppRow) -> Map<String, Value> {
    serde_json::from_str(&app.environment_variables).unwrap_or_default()
}

/// The app, visible and with secrets readable by the caller (403 otherwise).
fn app_with_secrets(
    conn: &mut DbConn,
    user: &CurrentUser,
    guid: &str,
) -> Result<(AppRow, SpaceRow, OrgRow), ApiError> {
    let permissions = Permissions::load(conn, user)?;
    let found = visible_app(conn, &permissions, guid)?;
    if !permissions.can_read_secrets_in_space(found.1.id) {
        return Err(ApiError::forbidden());
    }
    Ok(found)
}

async fn env(
    state: web::Data<AppState>,
    user: CurrentUser,
    path: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let guid = path.into_inner();
    let base = state.external_url.clone();
    let body = state
        .db
        .run(move |conn| {
            let (app, space, org) = app_with_secrets(conn, &user, &guid)?;
            let web = store::apps::find_process_of_type(conn, app.id, "web")?;
            let (memory, disk) = web
                .as_ref()
                .map_or((1024, 1024), |web| (web.memory_in_mb, web.disk_in_mb));
            Ok(json!({
                "staging_env_json": {},
                "running_env_json": {},
                "environment_variables": variables_of(&app),
                "system_env_json": {"VCAP_SERVICES": store::services::vcap_services(conn, &app.guid)?},
                "application_env_json": {"VCAP_APPLICATION": {
                    "cf_api": base,
                    "limits": {"fds": 16384, "mem": memory, "disk": disk},
                    "application_name": app.name,
                    "application_uris": [],
                    "name": app.name,
                    "space_name": space.name,
                    "space_id": space.guid,
                    "organization_id": org.guid,
                    "organization_name": org.name,
                    "uris": [],
                    "users": null,
                    "application_id": app.guid,
                }},
            }))
        })
        .await?;
    Ok(HttpResponse::Ok().json(body))
}

fn variables_body(base: &str, app_guid: &str, variables: Map<String, Value>) -> Value {
    json!({
        "var": variables,
        "links": {
            "self": {"href": format!("{base}/v3/apps/{app_guid}/environment_variables")},
            "app": {"href": format!("{base}/v3/apps/{app_guid}")},
        },
    })
}

async fn environment_variables(
    state: web::Data<AppState>,
    user: CurrentUser,
    path: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let guid = path.into_inner();
    let base = state.external_url.clone();
    let body = state
        .db
        .run(move |conn| {
            let (app, _space, _org) = app_with_secrets(conn, &user, &guid)?;
            Ok(variables_body(&base, &app.guid, variables_of(&app)))
        })
        .await?;
    Ok(HttpResponse::Ok().json(body))
}

async fn patch_environment_variables(
    state: web::Data<AppState>,
    user: CurrentUser,
    path: web::Path<String>,
    payload: web::Json<Value>,
) -> Result<HttpResponse, ApiError> {
    let object = body::object(&payload, &["var"])?;
    let changes = environment_object(object, "var", "Var", true)?
        .cloned()
        .unwrap_or_default();
    let guid = path.into_inner();
    let base = state.external_url.clone();
    let body = state
        .db
        .run(move |conn| {
            let permissions = Permissions::load(conn, &user)?;
            let (app, space, _org) = visible_app(conn, &permissions, &guid)?;
            if !permissions.can_write_to_space(space.id) {
                return Err(ApiError::forbidden());
            }
            conn.write_transaction(|conn| {
                // Re-read inside the transaction so concurrent PATCHes merge instead of racing.
                let app = store::apps::find_by_id(conn, app.id)?
                    .ok_or_else(|| ApiError::not_found("App"))?;
                let mut variables = variables_of(&app);
                for (key, value) in changes {
                    if value.is_null() {
                        variables.remove(&key);
                    } else {
                        variables.insert(key, value);
                    }
                }
                store::apps::set_environment_variables(conn, app.id, &variables)?;
                Ok(variables_body(&base, &app.guid, variables))
            })
        })
        .await?;
    Ok(HttpResponse::Ok().json(body))
}
