//! `/v2/spaces`: list (`q=name:`/`organization_guid:`), get, create (201 + Location), update
//! (PUT → 201), delete.

use std::collections::HashMap;

use actix_web::{web, HttpRequest, HttpResponse};
use serde_json::{json, Value};

use crate::app::{resource, AppState};
use crate::auth::CurrentUser;
use crate::body;
use crate::db::models::SpaceRow;
use crate::error::{ApiError, ErrorKind};
use crate::permissions::Permissions;
use crate::query::query_pairs;
use crate::store;
use crate::v2::V2Query;

/// Registers the v2 space routes.
pub fn configure(config: &mut web::ServiceConfig) {
    config
        .service(
            resource("/v2/spaces")
                .route(web::get().to(list))
                .route(web::post().to(create)),
        )
        .service(
            resource("/v2/spaces/{guid}")
                .route(web::get().to(get))
                .route(web::put().to(update))
                .route(web::delete().to(delete)),
        );
}

pub(crate) fn render(space: &SpaceRow, org_guid: &str) -> Value {
    let url = format!("/v2/spaces/{}", space.guid);
    let mut entity = json!({
        "name": space.name,
        "organization_guid": org_guid,
        "space_quota_definition_guid": null,
        "isolation_segment_guid": null,
        "allow_ssh": space.allow_ssh,
        "organization_url": format!("/v2/organizations/{org_guid}"),
    });
    for relation in [
        "developers",
        "managers",
        "auditors",
        "apps",
        "routes",
        "domains",
        "service_instances",
        "app_events",
        "events",
        "security_groups",
        "staging_security_groups",
    ] {
        entity[format!("{relation}_url")] = json!(format!("{url}/{relation}"));
    }
    super::resource(
        &space.guid,
        &url,
        &space.created_at,
        &space.updated_at,
        entity,
    )
}

fn not_found(guid: &str) -> ApiError {
    ApiError::with_args(ErrorKind::SpaceNotFound, &[guid])
}

async fn list(
    state: web::Data<AppState>,
    user: CurrentUser,
    request: HttpRequest,
) -> Result<HttpResponse, ApiError> {
    let query = V2Query::parse(&request, &["name", "organization_guid"], &["name", "id"])?;
    let body = state
        .db
        .run(move |conn| {
            let permissions = Permissions::load(conn, &user)?;
            let org_guids: HashMap<i32, String> = store::orgs::list(conn)?
                .into_iter()
                .map(|org| (org.id, org.guid))
                .collect();
            let spaces: Vec<(SpaceRow, String)> = store::spaces::list(conn)?
                .into_iter()
                .filter(|space| permissions.can_read_space(space.id, space.organization_id))
                .map(|space| {
                    let org_guid = org_guids
                        .get(&space.organization_id)
                        .cloned()
                        .unwrap_or_default();
                    (space, org_guid)
                })
                .filter(|(space, org_guid)| {
                    query.accepts_name("name", &space.name)
                        && query.accepts("organization_guid", org_guid)
                })
                .collect();
            Ok(query.envelope(
                spaces,
                "/v2/spaces",
                |(space, _)| &space.name,
                |(space, org_guid)| render(space, org_guid),
            ))
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
    let body = state
        .db
        .run(move |conn| {
            let permissions = Permissions::load(conn, &user)?;
            let (space, org) = crate::v3::spaces::visible_space(conn, &permissions, &guid)
                .map_err(|_| not_found(&guid))?;
            Ok(render(&space, &org.guid))
        })
        .await?;
    Ok(HttpResponse::Ok().json(body))
}

async fn create(
    state: web::Data<AppState>,
    user: CurrentUser,
    payload: web::Json<Value>,
) -> Result<HttpResponse, ApiError> {
    let invalid = |error: ApiError| ApiError::with_args(ErrorKind::SpaceInvalid, &[&error.detail]);
    let object =
        body::object(&payload, &["name", "organization_guid", "allow_ssh"]).map_err(invalid)?;
    let name = body::name(object, true)
        .map_err(invalid)?
        .unwrap_or_default();
    let org_guid = body::optional_string(object, "organization_guid")
        .map_err(invalid)?
        .ok_or_else(|| {
            ApiError::with_args(ErrorKind::SpaceInvalid, &["organization_guid is required"])
        })?;
    let allow_ssh = body::optional_bool(object, "allow_ssh").map_err(invalid)?;
    let body = state
        .db
        .run(move |conn| {
            let permissions = Permissions::load(conn, &user)?;
            let org = store::orgs::find(conn, &org_guid)?
                .filter(|org| permissions.can_read_org(org.id))
                .ok_or_else(|| {
                    ApiError::with_args(
                        ErrorKind::InvalidRelation,
                        &["Could not find VCAP::CloudController::Organization"],
                    )
                })?;
            if !permissions.can_write_org(org.id) {
                return Err(ApiError::forbidden());
            }
            let taken = || ApiError::with_args(ErrorKind::SpaceNameTaken, &[&name]);
            let mut space = store::spaces::create(conn, &name, org.id)
                .map_err(crate::v3::organizations::store_error(taken))?;
            if let Some(allow_ssh) = allow_ssh {
                space = store::spaces::update(conn, space.id, None, Some(allow_ssh))
                    .map_err(crate::v3::organizations::store_error(taken))?;
            }
            Ok(render(&space, &org.guid))
        })
        .await?;
    let location = body["metadata"]["url"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    Ok(HttpResponse::Created()
        .insert_header(("Location", location))
        .json(body))
}

async fn update(
    state: web::Data<AppState>,
    user: CurrentUser,
    path: web::Path<String>,
    payload: web::Json<Value>,
) -> Result<HttpResponse, ApiError> {
    let invalid = |error: ApiError| ApiError::with_args(ErrorKind::SpaceInvalid, &[&error.detail]);
    let object =
        body::object(&payload, &["name", "organization_guid", "allow_ssh"]).map_err(invalid)?;
    let name = body::name(object, false).map_err(invalid)?;
    let org_guid = body::optional_string(object, "organization_guid").map_err(invalid)?;
    let allow_ssh = body::optional_bool(object, "allow_ssh").map_err(invalid)?;
    let guid = path.into_inner();
    let body = state
        .db
        .run(move |conn| {
            let permissions = Permissions::load(conn, &user)?;
            let (space, org) = crate::v3::spaces::visible_space(conn, &permissions, &guid)
                .map_err(|_| not_found(&guid))?;
            if !permissions.can_manage_space(space.id, org.id) {
                return Err(ApiError::forbidden());
            }
            if org_guid
                .as_deref()
                .is_some_and(|requested| requested != org.guid)
            {
                return Err(ApiError::plain(ErrorKind::OrganizationAlreadySet));
            }
            let taken = || {
                ApiError::with_args(
                    ErrorKind::SpaceNameTaken,
                    &[name.as_deref().unwrap_or_default()],
                )
            };
            let space = store::spaces::update(conn, space.id, name.as_deref(), allow_ssh)
                .map_err(crate::v3::organizations::store_error(taken))?;
            Ok(render(&space, &org.guid))
        })
        .await?;
    Ok(HttpResponse::Created().json(body))
}

async fn delete(
    state: web::Data<AppState>,
    user: CurrentUser,
    path: web::Path<String>,
    request: HttpRequest,
) -> Result<HttpResponse, ApiError> {
    let pairs = query_pairs(&request)?;
    let asynchronous = pairs
        .iter()
        .any(|(key, value)| key == "async" && value == "true");
    let guid = path.into_inner();
    let job = state
        .db
        .run(move |conn| {
            let permissions = Permissions::load(conn, &user)?;
            let (space, org) = crate::v3::spaces::visible_space(conn, &permissions, &guid)
                .map_err(|_| not_found(&guid))?;
            if !permissions.can_write_org(org.id) {
                return Err(ApiError::forbidden());
            }
            let blobs = store::apps::blob_keys_in_spaces(conn, &[space.id])?;
            let job_guid =
                store::jobs::run_now(conn, "space.delete", "space", &space.guid, |conn| {
                    store::spaces::delete_cascade(conn, space.id)
                })?;
            Ok((store::jobs::find(conn, &job_guid)?, blobs))
        })
        .await?;
    let (job, blobs) = job;
    state.blobs.delete_all(blobs).await;
    if asynchronous {
        Ok(HttpResponse::Accepted().json(super::jobs::render(job.as_ref())))
    } else {
        Ok(HttpResponse::NoContent().finish())
    }
}
