//! `/v2/spaces`: list (CC's `q` attributes), get, create (201 + Location), update (PUT → 201),
//! delete (refused while the space holds anything unless `recursive=true`; 204, or 202 + job
//! with `async=true`), its (always empty) security group lists and its (always unset) isolation
//! segment.

use std::collections::HashMap;

use actix_web::{web, HttpRequest, HttpResponse};
use serde_json::{json, Value};

use crate::app::{resource, AppState};
use crate::auth::CurrentUser;
use crate::body;
use crate::db::models::SpaceRow;
use crate::db::DbConn;
use crate::error::{ApiError, ErrorKind};
use crate::permissions::{Permissions, RoleType};
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
        )
        .service(
            resource("/v2/spaces/{guid}/{relation:security_groups|staging_security_groups}")
                .route(web::get().to(list_security_groups)),
        )
        .service(
            resource("/v2/spaces/{guid}/isolation_segment")
                .route(web::delete().to(delete_isolation_segment)),
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

/// CC's `SpacesController.query_parameters`.
pub(crate) const QUERY_PARAMETERS: &[&str] = &[
    "name",
    "organization_guid",
    "developer_guid",
    "app_guid",
    "isolation_segment_guid",
];

/// The `q` attributes answered by a join (Kiln has no isolation segments, so a condition on
/// `isolation_segment_guid` matches no space).
const JOIN_PARAMETERS: &[&str] = &["developer_guid", "app_guid", "isolation_segment_guid"];

/// The spaces (each with its org's GUID) that pass every `q` condition of a space listing.
pub(crate) fn matching(
    conn: &mut DbConn,
    query: &V2Query,
    spaces: Vec<(SpaceRow, String)>,
) -> Result<Vec<(SpaceRow, String)>, ApiError> {
    let mut related = super::Related::default();
    if query.names_any(JOIN_PARAMETERS) {
        let user_guids: HashMap<i32, String> = store::users::list(conn)?
            .into_iter()
            .map(|user| (user.id, user.guid))
            .collect();
        for role in store::roles::list(conn)? {
            if let (Some(space_id), Some(user_guid)) =
                (role.space_id, user_guids.get(&role.user_id))
            {
                if role.role_type == RoleType::SpaceDeveloper.as_str() {
                    related.add(space_id, "developer_guid", user_guid);
                }
            }
        }
        for app in store::apps::list(conn)? {
            related.add(app.space_id, "app_guid", &app.guid);
        }
    }
    Ok(spaces
        .into_iter()
        .filter(|(space, org_guid)| {
            query.accepts_name("name", &space.name)
                && query.accepts("organization_guid", org_guid)
                && related.accepted_by(space.id, query, JOIN_PARAMETERS)
        })
        .collect())
}

/// A name CC's model would refuse (blank, too long, control characters) is `CF-SpaceInvalid`.
/// CC strips surrounding whitespace from the name first (`strip_attributes :name`).
fn check_name(name: &str) -> Result<String, ApiError> {
    let name = name.trim_matches(|character: char| character.is_ascii_whitespace());
    body::check_name(name)
        .map_err(|error| ApiError::with_args(ErrorKind::SpaceInvalid, &[&error.detail]))?;
    Ok(name.to_owned())
}

/// CC's answer for an isolation segment that does not exist (Kiln has none).
fn isolation_segment_not_found() -> ApiError {
    ApiError::with_args(
        ErrorKind::ResourceNotFound,
        &["Isolation Segment not found"],
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
    let query = V2Query::parse(&request, QUERY_PARAMETERS, &["name", "id"])?;
    let body = state
        .db
        .run(move |conn| {
            let permissions = Permissions::load(conn, &user)?;
            let org_guids: HashMap<i32, String> = store::orgs::list(conn)?
                .into_iter()
                .map(|org| (org.id, org.guid))
                .collect();
            let readable: Vec<(SpaceRow, String)> = store::spaces::list(conn)?
                .into_iter()
                .filter(|space| permissions.can_read_space(space.id, space.organization_id))
                .map(|space| {
                    let org_guid = org_guids
                        .get(&space.organization_id)
                        .cloned()
                        .unwrap_or_default();
                    (space, org_guid)
                })
                .collect();
            let spaces = matching(conn, &query, readable)?;
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
    request: HttpRequest,
) -> Result<HttpResponse, ApiError> {
    super::check_resource_query(&request)?;
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
    let object = super::body_object(&payload)?;
    let name = super::body_required_string(object, "name")?;
    let org_guid = super::body_required_string(object, "organization_guid")?;
    let allow_ssh = super::body_bool(object, "allow_ssh")?;
    if super::body_string(object, "isolation_segment_guid")?.is_some() {
        return Err(isolation_segment_not_found());
    }
    let name = check_name(&name)?;
    let body = state
        .db
        .run(move |conn| {
            let permissions = Permissions::load(conn, &user)?;
            let org = store::orgs::find(conn, &org_guid)?
                .filter(|org| permissions.can_read_org(org.id))
                .ok_or_else(|| {
                    ApiError::with_args(
                        ErrorKind::InvalidRelation,
                        &[&format!(
                            "Could not find Organization with guid: {org_guid}"
                        )],
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
    let object = super::body_object(&payload)?;
    let name = super::body_string(object, "name")?;
    let org_guid = super::body_string(object, "organization_guid")?;
    let allow_ssh = super::body_bool(object, "allow_ssh")?;
    let isolation_segment_guid = super::body_string(object, "isolation_segment_guid")?;
    let name = name.as_deref().map(check_name).transpose()?;
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
            // Only org managers assign segments; Kiln has none to assign.
            if isolation_segment_guid.is_some() {
                if !permissions.can_write_org(org.id) {
                    return Err(ApiError::forbidden());
                }
                return Err(isolation_segment_not_found());
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

/// CC's checks before a delete without `recursive=true`: processes and routes are dependents
/// (`CF-AssociationNotEmpty`), service instances and space-scoped brokers block it
/// (`CF-NonrecursiveSpaceDeletionFailed`).
fn require_empty(conn: &mut DbConn, space: &SpaceRow) -> Result<(), ApiError> {
    let app_ids: Vec<i32> = store::apps::list_in_space(conn, space.id)?
        .into_iter()
        .map(|app| app.id)
        .collect();
    let has_processes = store::apps::list_processes(conn)?
        .iter()
        .any(|process| app_ids.contains(&process.app_id));
    let has_routes = store::routes::list(conn)?
        .iter()
        .any(|route| route.space_id == space.id);
    let dependents: Vec<&str> = [("processes", has_processes), ("routes", has_routes)]
        .into_iter()
        .filter_map(|(name, present)| present.then_some(name))
        .collect();
    if !dependents.is_empty() {
        return Err(ApiError::with_args(
            ErrorKind::AssociationNotEmpty,
            &[&dependents.join(", "), "spaces"],
        ));
    }
    let has_instances = store::services::list_instances(conn)?
        .iter()
        .any(|instance| instance.space_id == space.id);
    let has_brokers = store::services::list_brokers(conn)?
        .iter()
        .any(|broker| broker.space_id == Some(space.id));
    if has_instances || !app_ids.is_empty() || has_brokers {
        return Err(ApiError::with_args(
            ErrorKind::NonrecursiveSpaceDeletionFailed,
            &[&space.name],
        ));
    }
    Ok(())
}

async fn delete(
    state: web::Data<AppState>,
    user: CurrentUser,
    path: web::Path<String>,
    request: HttpRequest,
) -> Result<HttpResponse, ApiError> {
    let pairs = query_pairs(&request)?;
    let flag = |name: &str| {
        pairs
            .iter()
            .any(|(key, value)| key == name && value == "true")
    };
    let (recursive, asynchronous) = (flag("recursive"), flag("async"));
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
            if !recursive {
                require_empty(conn, &space)?;
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

/// `DELETE /v2/spaces/:g/isolation_segment` (admins and org managers): 200 with the space,
/// whose segment is always unset in Kiln.
async fn delete_isolation_segment(
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
            if !permissions.can_write_org(org.id) {
                return Err(ApiError::forbidden());
            }
            Ok(render(&space, &org.guid))
        })
        .await?;
    Ok(HttpResponse::Ok().json(body))
}

/// `GET /v2/spaces/:g/security_groups` and `…/staging_security_groups`: Kiln has no security
/// groups, so the lists are empty (once the space is known and visible).
async fn list_security_groups(
    state: web::Data<AppState>,
    user: CurrentUser,
    path: web::Path<(String, String)>,
    request: HttpRequest,
) -> Result<HttpResponse, ApiError> {
    let query = V2Query::parse(&request, &["name"], &["id", "name"])?;
    let (guid, relation) = path.into_inner();
    let body = state
        .db
        .run(move |conn| {
            let permissions = Permissions::load(conn, &user)?;
            let (space, _) = crate::v3::spaces::visible_space(conn, &permissions, &guid)
                .map_err(|_| not_found(&guid))?;
            let path = format!("/v2/spaces/{}/{relation}", space.guid);
            Ok(query.envelope(Vec::<Value>::new(), &path, |_| "", Value::clone))
        })
        .await?;
    Ok(HttpResponse::Ok().json(body))
}
