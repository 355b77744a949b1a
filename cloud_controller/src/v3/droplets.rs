//! Droplets: `/v3/droplets/:guid`, `/v3/apps/:guid/droplets`, `/v3/packages/:guid/droplets`,
//! `/v3/apps/:guid/droplets/current` and the app's `current_droplet` relationship. Droplets are
//! produced by staging on DEAs (`crate::staging`); an app without a current droplet answers CC's
//! exact 404 "Droplet not found", which the CLI reads as "not staged".

use std::collections::HashMap;

use actix_web::{web, HttpRequest, HttpResponse};
use serde_json::{json, Value};

use crate::app::{resource, AppState};
use crate::auth::CurrentUser;
use crate::body;
use crate::db::models::{AppRow, DropletRow};
use crate::db::DbConn;
use crate::error::ApiError;
use crate::permissions::Permissions;
use crate::query::{list_body, ListQuery};
use crate::store;
use crate::v3::apps::visible_app;
use crate::v3::present;

/// Registers the droplet routes.
pub fn configure(config: &mut web::ServiceConfig) {
    config
        .service(resource("/v3/droplets/{guid}").route(web::get().to(get)))
        .service(resource("/v3/apps/{guid}/droplets").route(web::get().to(list_for_app)))
        .service(resource("/v3/apps/{guid}/droplets/current").route(web::get().to(current)))
        .service(
            resource("/v3/apps/{guid}/relationships/current_droplet")
                .route(web::get().to(current_relationship))
                .route(web::patch().to(set_current)),
        )
        .service(resource("/v3/packages/{guid}/droplets").route(web::get().to(list_for_package)));
}

fn package_guids(conn: &mut DbConn) -> Result<HashMap<i32, String>, ApiError> {
    Ok(store::packages::list(conn)?
        .into_iter()
        .map(|package| (package.id, package.guid))
        .collect())
}

fn render(
    conn: &mut DbConn,
    base: &str,
    droplet: &DropletRow,
    app: &AppRow,
) -> Result<Value, ApiError> {
    let package = match droplet.package_id {
        Some(id) => store::packages::find_by_id(conn, id)?.map(|package| package.guid),
        None => None,
    };
    Ok(present::droplet(
        base,
        droplet,
        &app.guid,
        package.as_deref(),
    ))
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
            let not_found = || ApiError::not_found("Droplet");
            let droplet = store::builds::find_droplet(conn, &guid)?.ok_or_else(not_found)?;
            let app = store::apps::find_by_id(conn, droplet.app_id)?.ok_or_else(not_found)?;
            let space = store::spaces::find_by_id(conn, app.space_id)?.ok_or_else(not_found)?;
            if !permissions.can_read_space(space.id, space.organization_id) {
                return Err(not_found());
            }
            render(conn, &base, &droplet, &app)
        })
        .await?;
    Ok(HttpResponse::Ok().json(body))
}

/// A page of `droplets` (already filtered to one app or package).
fn droplet_page(
    conn: &mut DbConn,
    query: &ListQuery,
    base: &str,
    path: &str,
    mut droplets: Vec<DropletRow>,
    app: &AppRow,
) -> Result<Value, ApiError> {
    droplets.retain(|droplet| {
        query.matches("guids", &droplet.guid) && query.matches("states", &droplet.state)
    });
    query.sort(
        &mut droplets,
        |droplet| &droplet.guid,
        |droplet| &droplet.created_at,
        |droplet| &droplet.updated_at,
    );
    let packages = package_guids(conn)?;
    let (page, pagination) = query.page_of(droplets, base, path);
    let resources = page
        .iter()
        .map(|droplet| {
            let package = droplet.package_id.and_then(|id| packages.get(&id));
            present::droplet(base, droplet, &app.guid, package.map(String::as_str))
        })
        .collect();
    Ok(list_body(pagination, resources, None))
}

async fn list_for_app(
    state: web::Data<AppState>,
    user: CurrentUser,
    path: web::Path<String>,
    request: HttpRequest,
) -> Result<HttpResponse, ApiError> {
    let query = ListQuery::parse(
        &request,
        &["guids", "states", "current", "label_selector"],
        &[],
    )?;
    let guid = path.into_inner();
    let base = state.external_url.clone();
    let list_path = request.path().to_owned();
    let body = state
        .db
        .run(move |conn| {
            let permissions = Permissions::load(conn, &user)?;
            let (app, _space, _org) = visible_app(conn, &permissions, &guid)?;
            let current_only = query
                .list("current")
                .is_some_and(|values| values.iter().any(|value| value == "true"));
            let droplets: Vec<DropletRow> = store::builds::list_droplets(conn)?
                .into_iter()
                .filter(|droplet| droplet.app_id == app.id)
                .filter(|droplet| {
                    !current_only || app.droplet_guid.as_deref() == Some(droplet.guid.as_str())
                })
                .collect();
            droplet_page(conn, &query, &base, &list_path, droplets, &app)
        })
        .await?;
    Ok(HttpResponse::Ok().json(body))
}

async fn list_for_package(
    state: web::Data<AppState>,
    user: CurrentUser,
    path: web::Path<String>,
    request: HttpRequest,
) -> Result<HttpResponse, ApiError> {
    let query = ListQuery::parse(&request, &["guids", "states", "label_selector"], &[])?;
    let guid = path.into_inner();
    let base = state.external_url.clone();
    let list_path = request.path().to_owned();
    let body = state
        .db
        .run(move |conn| {
            let permissions = Permissions::load(conn, &user)?;
            let not_found = || ApiError::not_found("Package");
            let package = store::packages::find(conn, &guid)?.ok_or_else(not_found)?;
            let app = store::apps::find_by_id(conn, package.app_id)?.ok_or_else(not_found)?;
            let space = store::spaces::find_by_id(conn, app.space_id)?.ok_or_else(not_found)?;
            if !permissions.can_read_space(space.id, space.organization_id) {
                return Err(not_found());
            }
            let droplets: Vec<DropletRow> = store::builds::list_droplets(conn)?
                .into_iter()
                .filter(|droplet| droplet.package_id == Some(package.id))
                .collect();
            droplet_page(conn, &query, &base, &list_path, droplets, &app)
        })
        .await?;
    Ok(HttpResponse::Ok().json(body))
}

/// The app's current droplet, or CC's 404 "Droplet not found".
fn current_droplet(
    conn: &mut DbConn,
    user: &CurrentUser,
    guid: &str,
) -> Result<(AppRow, DropletRow), ApiError> {
    let permissions = Permissions::load(conn, user)?;
    let (app, _space, _org) = visible_app(conn, &permissions, guid)?;
    let droplet = match &app.droplet_guid {
        Some(droplet_guid) => store::builds::find_droplet(conn, droplet_guid)?,
        None => None,
    }
    .ok_or_else(|| ApiError::not_found("Droplet"))?;
    Ok((app, droplet))
}

async fn current(
    state: web::Data<AppState>,
    user: CurrentUser,
    path: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let guid = path.into_inner();
    let base = state.external_url.clone();
    let body = state
        .db
        .run(move |conn| {
            let (app, droplet) = current_droplet(conn, &user, &guid)?;
            render(conn, &base, &droplet, &app)
        })
        .await?;
    Ok(HttpResponse::Ok().json(body))
}

fn relationship_body(base: &str, app_guid: &str, droplet_guid: &str) -> Value {
    json!({
        "data": {"guid": droplet_guid},
        "links": {
            "self": {"href": format!("{base}/v3/apps/{app_guid}/relationships/current_droplet")},
            "related": {"href": format!("{base}/v3/apps/{app_guid}/droplets/current")},
        },
    })
}

async fn current_relationship(
    state: web::Data<AppState>,
    user: CurrentUser,
    path: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let guid = path.into_inner();
    let base = state.external_url.clone();
    let body = state
        .db
        .run(move |conn| {
            let (app, droplet) = current_droplet(conn, &user, &guid)?;
            Ok(relationship_body(&base, &app.guid, &droplet.guid))
        })
        .await?;
    Ok(HttpResponse::Ok().json(body))
}

async fn set_current(
    state: web::Data<AppState>,
    user: CurrentUser,
    path: web::Path<String>,
    payload: web::Json<Value>,
) -> Result<HttpResponse, ApiError> {
    let object = body::object(&payload, &["data"])?;
    let droplet_guid = match object.get("data") {
        None | Some(Value::Null) => {
            return Err(ApiError::unprocessable(
                "Current droplet cannot be removed. Replace it with a preferred droplet.",
            ))
        }
        Some(data) => data
            .get("guid")
            .and_then(Value::as_str)
            .ok_or_else(|| ApiError::unprocessable("Data guid must be a string"))?
            .to_owned(),
    };
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
            let droplet = store::builds::find_droplet(conn, &droplet_guid)?
                .filter(|droplet| {
                    droplet.app_id == app.id && droplet.state == store::builds::STAGED
                })
                .ok_or_else(|| {
                    ApiError::unprocessable(
                        "Unable to assign current droplet. Ensure the droplet exists and belongs to this app.",
                    )
                })?;
            store::builds::set_current_droplet(conn, app.id, Some(&droplet.guid))?;
            let identity = crate::app_logs::identity(conn, &app)?;
            Ok((
                relationship_body(&base, &app.guid, &droplet.guid),
                identity,
                droplet.guid,
            ))
        })
        .await?;
    let (body, identity, droplet_guid) = body;
    state.api_logs.droplet_assigned(&identity, &droplet_guid);
    Ok(HttpResponse::Ok().json(body))
}
