//! `/v2/organizations`: list (`q=name:`/`status:`, `order-by=name`), get, create (201 +
//! Location), update (PUT → 201), delete (204, or 202 + job with `async=true`), and the org's spaces.

use actix_web::{web, HttpRequest, HttpResponse};
use serde_json::{json, Value};

use crate::app::{resource, AppState};
use crate::auth::CurrentUser;
use crate::body;
use crate::db::models::OrgRow;
use crate::db::DbConn;
use crate::error::{ApiError, ErrorKind};
use crate::permissions::Permissions;
use crate::query::query_pairs;
use crate::store;
use crate::v2::V2Query;

/// Registers the v2 organization routes.
pub fn configure(config: &mut web::ServiceConfig) {
    config
        .service(
            resource("/v2/organizations")
                .route(web::get().to(list))
                .route(web::post().to(create)),
        )
        .service(
            resource("/v2/organizations/{guid}")
                .route(web::get().to(get))
                .route(web::put().to(update))
                .route(web::delete().to(delete)),
        )
        .service(resource("/v2/organizations/{guid}/spaces").route(web::get().to(list_spaces)));
}

pub(crate) fn render(conn: &mut DbConn, org: &OrgRow) -> Result<Value, ApiError> {
    let quota_guid = store::reference_data::find_quota_by_id(conn, org.quota_definition_id)?
        .map(|quota| quota.guid);
    let url = format!("/v2/organizations/{}", org.guid);
    let mut entity = json!({
        "name": org.name,
        "billing_enabled": org.billing_enabled,
        "quota_definition_guid": quota_guid,
        "status": if org.suspended { "suspended" } else { "active" },
        "default_isolation_segment_guid": org.default_isolation_segment_guid,
        "quota_definition_url": quota_guid.as_ref().map(|guid| format!("/v2/quota_definitions/{guid}")),
    });
    for relation in [
        "spaces",
        "domains",
        "private_domains",
        "users",
        "managers",
        "billing_managers",
        "auditors",
        "app_events",
        "space_quota_definitions",
    ] {
        entity[format!("{relation}_url")] = json!(format!("{url}/{relation}"));
    }
    Ok(super::resource(
        &org.guid,
        &url,
        &org.created_at,
        &org.updated_at,
        entity,
    ))
}

fn not_found(guid: &str) -> ApiError {
    ApiError::with_args(ErrorKind::OrganizationNotFound, &[guid])
}

fn visible(conn: &mut DbConn, permissions: &Permissions, guid: &str) -> Result<OrgRow, ApiError> {
    store::orgs::find(conn, guid)?
        .filter(|org| permissions.can_read_org(org.id))
        .ok_or_else(|| not_found(guid))
}

fn name_taken(name: &str) -> ApiError {
    ApiError::with_args(ErrorKind::OrganizationNameTaken, &[name])
}

async fn list(
    state: web::Data<AppState>,
    user: CurrentUser,
    request: HttpRequest,
) -> Result<HttpResponse, ApiError> {
    let query = V2Query::parse(&request, &["name", "status"], &["name", "id"])?;
    let body = state
        .db
        .run(move |conn| {
            let permissions = Permissions::load(conn, &user)?;
            let orgs: Vec<OrgRow> = store::orgs::list(conn)?
                .into_iter()
                .filter(|org| permissions.can_read_org(org.id))
                .filter(|org| query.accepts_name("name", &org.name))
                .filter(|org| {
                    query.accepts("status", if org.suspended { "suspended" } else { "active" })
                })
                .collect();
            let rendered: Vec<(String, Value)> = orgs
                .iter()
                .map(|org| Ok((org.name.clone(), render(conn, org)?)))
                .collect::<Result<_, ApiError>>()?;
            Ok(query.envelope(
                rendered,
                "/v2/organizations",
                |(name, _)| name,
                |(_, value)| value.clone(),
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
            let org = visible(conn, &permissions, &guid)?;
            render(conn, &org)
        })
        .await?;
    Ok(HttpResponse::Ok().json(body))
}

fn parse_status(object: &serde_json::Map<String, Value>) -> Result<Option<bool>, ApiError> {
    match body::optional_string(object, "status")?.as_deref() {
        None => Ok(None),
        Some("active") => Ok(Some(false)),
        Some("suspended") => Ok(Some(true)),
        Some(_) => Err(ApiError::with_args(
            ErrorKind::OrganizationInvalid,
            &["status must be active or suspended"],
        )),
    }
}

fn invalid(error: ApiError) -> ApiError {
    if error.kind == ErrorKind::UnprocessableEntity {
        ApiError::with_args(ErrorKind::OrganizationInvalid, &[&error.detail])
    } else {
        error
    }
}

async fn create(
    state: web::Data<AppState>,
    user: CurrentUser,
    payload: web::Json<Value>,
) -> Result<HttpResponse, ApiError> {
    let object = body::object(
        &payload,
        &["name", "status", "quota_definition_guid", "billing_enabled"],
    )
    .map_err(invalid)?;
    let name = body::name(object, true)
        .map_err(invalid)?
        .unwrap_or_default();
    let suspended = parse_status(object)?.unwrap_or(false);
    let quota_guid = body::optional_string(object, "quota_definition_guid").map_err(invalid)?;
    let body = state
        .db
        .run(move |conn| {
            let org =
                crate::v3::organizations::create_org(conn, &user, &name, suspended, name_taken)?;
            let org = match quota_guid {
                Some(quota_guid) => {
                    let quota =
                        store::reference_data::find_quota(conn, &quota_guid)?.ok_or_else(|| {
                            ApiError::with_args(ErrorKind::QuotaDefinitionNotFound, &[&quota_guid])
                        })?;
                    store::orgs::update(conn, org.id, None, None, Some(quota.id))
                        .map_err(crate::v3::organizations::store_error(|| name_taken(&name)))?
                }
                None => org,
            };
            render(conn, &org)
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
    let object = body::object(
        &payload,
        &["name", "status", "quota_definition_guid", "billing_enabled"],
    )
    .map_err(invalid)?;
    let name = body::name(object, false).map_err(invalid)?;
    let suspended = parse_status(object)?;
    let quota_guid = body::optional_string(object, "quota_definition_guid").map_err(invalid)?;
    let guid = path.into_inner();
    let body = state
        .db
        .run(move |conn| {
            let permissions = Permissions::load(conn, &user)?;
            let org = visible(conn, &permissions, &guid)?;
            let admin_only = suspended.is_some() || quota_guid.is_some();
            if !permissions.can_write_org(org.id)
                || (admin_only && !permissions.can_write_globally())
            {
                return Err(ApiError::forbidden());
            }
            let quota_id = match &quota_guid {
                Some(quota_guid) => Some(
                    store::reference_data::find_quota(conn, quota_guid)?
                        .ok_or_else(|| {
                            ApiError::with_args(ErrorKind::QuotaDefinitionNotFound, &[quota_guid])
                        })?
                        .id,
                ),
                None => None,
            };
            let taken = name.clone().unwrap_or_default();
            let org = store::orgs::update(conn, org.id, name.as_deref(), suspended, quota_id)
                .map_err(crate::v3::organizations::store_error(|| name_taken(&taken)))?;
            render(conn, &org)
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
            let org = visible(conn, &permissions, &guid)?;
            if !permissions.can_write_globally() {
                return Err(ApiError::forbidden());
            }
            if !recursive && !store::spaces::list_in_org(conn, org.id)?.is_empty() {
                return Err(ApiError::with_args(
                    ErrorKind::AssociationNotEmpty,
                    &["spaces", "organization"],
                ));
            }
            let space_ids: Vec<i32> = store::spaces::list_in_org(conn, org.id)?
                .iter()
                .map(|space| space.id)
                .collect();
            let blobs = store::apps::blob_keys_in_spaces(conn, &space_ids)?;
            let job_guid = store::jobs::run_now(
                conn,
                "organization.delete",
                "organization",
                &org.guid,
                |conn| store::orgs::delete_cascade(conn, org.id),
            )?;
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

async fn list_spaces(
    state: web::Data<AppState>,
    user: CurrentUser,
    path: web::Path<String>,
    request: HttpRequest,
) -> Result<HttpResponse, ApiError> {
    let query = V2Query::parse(&request, &["name"], &["name", "id"])?;
    let guid = path.into_inner();
    let body = state
        .db
        .run(move |conn| {
            let permissions = Permissions::load(conn, &user)?;
            let org = visible(conn, &permissions, &guid)?;
            let spaces: Vec<_> = store::spaces::list_in_org(conn, org.id)?
                .into_iter()
                .filter(|space| {
                    permissions.can_read_space(space.id, space.organization_id)
                        && query.accepts_name("name", &space.name)
                })
                .collect();
            let path = format!("/v2/organizations/{}/spaces", org.guid);
            Ok(query.envelope(
                spaces,
                &path,
                |space| &space.name,
                |space| super::spaces::render(space, &org.guid),
            ))
        })
        .await?;
    Ok(HttpResponse::Ok().json(body))
}
