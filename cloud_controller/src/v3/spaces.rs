//! `/v3/spaces`: list (with `include=organization`), get, create, update, delete as a job, and
//! the space's isolation-segment relationship that `cf space` reads.

use std::collections::HashMap;

use actix_web::{web, HttpRequest, HttpResponse};
use serde_json::{json, Value};

use crate::app::{resource, AppState};
use crate::auth::CurrentUser;
use crate::body;
use crate::db::models::SpaceRow;
use crate::db::DbConn;
use crate::error::ApiError;
use crate::permissions::Permissions;
use crate::query::{list_body, ListQuery, SortKey};
use crate::store;
use crate::v3::organizations::{quota_guids, store_error};
use crate::v3::present;

/// Registers the space routes.
pub fn configure(config: &mut web::ServiceConfig) {
    config
        .service(
            resource("/v3/spaces")
                .route(web::get().to(list))
                .route(web::post().to(create)),
        )
        .service(
            resource("/v3/spaces/{guid}")
                .route(web::get().to(get))
                .route(web::patch().to(update))
                .route(web::delete().to(delete)),
        )
        .service(
            resource("/v3/spaces/{guid}/relationships/isolation_segment")
                .route(web::get().to(isolation_segment)),
        );
}

/// The space and its org GUID, if it exists and the caller may see it; otherwise 404.
pub(crate) fn visible_space(
    conn: &mut DbConn,
    permissions: &Permissions,
    guid: &str,
) -> Result<(SpaceRow, crate::db::models::OrgRow), ApiError> {
    let space = store::spaces::find(conn, guid)?
        .filter(|space| permissions.can_read_space(space.id, space.organization_id))
        .ok_or_else(|| ApiError::not_found("Space"))?;
    let org = store::orgs::find_by_id(conn, space.organization_id)?
        .ok_or_else(|| ApiError::not_found("Space"))?;
    Ok((space, org))
}

/// A space with its stored metadata.
fn render(
    conn: &mut DbConn,
    base: &str,
    space: &SpaceRow,
    org_guid: &str,
) -> Result<Value, ApiError> {
    let metadata = store::metadata::load(conn, store::metadata::SPACE, &space.guid)?;
    Ok(present::with_metadata(
        present::space(base, space, org_guid),
        Some(&metadata),
    ))
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
            "organization_guids",
            "include",
            "label_selector",
        ],
        &[SortKey::Name],
    )?;
    query.check_include(SPACE_INCLUDES)?;
    let base = state.external_url.clone();
    let body = state
        .db
        .run(move |conn| {
            let permissions = Permissions::load(conn, &user)?;
            let orgs: HashMap<i32, _> = store::orgs::list(conn)?
                .into_iter()
                .map(|org| (org.id, org))
                .collect();
            let metadata = store::metadata::load_all(conn, store::metadata::SPACE)?;
            let no_metadata = store::metadata::Metadata::default();
            let mut spaces: Vec<SpaceRow> = store::spaces::list(conn)?
                .into_iter()
                .filter(|space| permissions.can_read_space(space.id, space.organization_id))
                .filter(|space| {
                    let org_guid = orgs
                        .get(&space.organization_id)
                        .map_or("", |org| org.guid.as_str());
                    query.matches_name("names", &space.name)
                        && query.matches("guids", &space.guid)
                        && query.matches("organization_guids", org_guid)
                        && query.matches_labels(
                            &metadata.get(&space.guid).unwrap_or(&no_metadata).labels,
                        )
                })
                .collect();
            query.sort(
                &mut spaces,
                |space| &space.name,
                |space| &space.created_at,
                |space| &space.updated_at,
            );
            let (page, pagination) = query.page_of_labelled(spaces, &base, "/v3/spaces");
            let resources = page
                .iter()
                .map(|space| {
                    present::with_metadata(
                        present::space(
                            &base,
                            space,
                            orgs.get(&space.organization_id)
                                .map_or("", |org| org.guid.as_str()),
                        ),
                        metadata.get(&space.guid),
                    )
                })
                .collect();
            let included = if includes_organization(&query) {
                let quotas = quota_guids(conn)?;
                let org_metadata = store::metadata::load_all(conn, store::metadata::ORGANIZATION)?;
                let mut seen = Vec::new();
                let mut organizations = Vec::new();
                for space in &page {
                    if seen.contains(&space.organization_id) {
                        continue;
                    }
                    seen.push(space.organization_id);
                    if let Some(org) = orgs.get(&space.organization_id) {
                        let quota = quotas
                            .get(&org.quota_definition_id)
                            .map_or("", String::as_str);
                        organizations.push(present::with_metadata(
                            present::organization(&base, org, quota),
                            org_metadata.get(&org.guid),
                        ));
                    }
                }
                Some(json!({"organizations": organizations}))
            } else {
                None
            };
            Ok(list_body(pagination, resources, included))
        })
        .await?;
    Ok(HttpResponse::Ok().json(body))
}

/// CC's IncludeParamValidator values for spaces (`org` is an accepted alias).
const SPACE_INCLUDES: &[&str] = &["org", "organization"];

fn includes_organization(query: &ListQuery) -> bool {
    query.includes("organization") || query.includes("org")
}

async fn get(
    state: web::Data<AppState>,
    user: CurrentUser,
    path: web::Path<String>,
    request: HttpRequest,
) -> Result<HttpResponse, ApiError> {
    let guid = path.into_inner();
    let query = crate::query::query_pairs(&request);
    let base = state.external_url.clone();
    let body = state
        .db
        .run(move |conn| {
            // CC's SpaceShowMessage: 404 for an invisible space comes before a bad query.
            let permissions = Permissions::load(conn, &user)?;
            let (space, org) = visible_space(conn, &permissions, &guid)?;
            let query = ListQuery::from_pairs(query?, &["include"], &[])
                .and_then(|query| query.check_include(SPACE_INCLUDES).map(|()| query))?;
            let mut body = render(conn, &base, &space, &org.guid)?;
            if includes_organization(&query) {
                let organization = crate::v3::organizations::render(conn, &base, &org)?;
                body["included"] = json!({"organizations": [organization]});
            }
            Ok(body)
        })
        .await?;
    Ok(HttpResponse::Ok().json(body))
}

fn name_taken() -> ApiError {
    ApiError::unprocessable("Name must be unique per organization")
}

async fn create(
    state: web::Data<AppState>,
    user: CurrentUser,
    payload: web::Json<Value>,
) -> Result<HttpResponse, ApiError> {
    let object = body::object(&payload, &["name", "relationships", "metadata"])?;
    let name = body::name(object, true)?.unwrap_or_default();
    let org_guid = body::relationship_guid(object, "organization")?.ok_or_else(|| {
        ApiError::unprocessable(
            "Relationships 'relationships' must include one or more valid relationships",
        )
    })?;
    let metadata = body::metadata(object)?;
    let base = state.external_url.clone();
    let body = state
        .db
        .run(move |conn| {
            let permissions = Permissions::load(conn, &user)?;
            let invalid_org = || ApiError::unprocessable("Invalid organization. Ensure the organization exists and you have access to it.");
            let org = store::orgs::find(conn, &org_guid)?
                .filter(|org| permissions.can_read_org(org.id))
                .ok_or_else(invalid_org)?;
            if !permissions.can_write_org(org.id) {
                return Err(ApiError::forbidden());
            }
            permissions.require_active_org(&org)?;
            let space = store::spaces::create(conn, &name, org.id).map_err(store_error(name_taken))?;
            store::metadata::apply(conn, store::metadata::SPACE, &space.guid, &metadata)?;
            render(conn, &base, &space, &org.guid)
        })
        .await?;
    Ok(HttpResponse::Created().json(body))
}

async fn update(
    state: web::Data<AppState>,
    user: CurrentUser,
    path: web::Path<String>,
    payload: web::Json<Value>,
) -> Result<HttpResponse, ApiError> {
    let payload = payload.into_inner();
    let guid = path.into_inner();
    let base = state.external_url.clone();
    let body = state
        .db
        .run(move |conn| {
            // CC's order: invisible (404), may not manage (403), suspended (403), then the body.
            let permissions = Permissions::load(conn, &user)?;
            let (space, org) = visible_space(conn, &permissions, &guid)?;
            if !permissions.can_manage_space(space.id, org.id) {
                return Err(ApiError::forbidden());
            }
            permissions.require_active_org(&org)?;
            let object = body::object(&payload, &["name", "metadata"])?;
            let name = body::name(object, false)?;
            let metadata = body::metadata(object)?;
            // CC's SpaceUpdate words a duplicate differently from SpaceCreate.
            let taken = || {
                ApiError::unprocessable(format!(
                    "Organization '{}' already contains a space with name '{}'.",
                    org.name,
                    name.as_deref().unwrap_or_default()
                ))
            };
            let space = store::spaces::update(conn, space.id, name.as_deref(), None)
                .map_err(store_error(taken))?;
            store::metadata::apply(conn, store::metadata::SPACE, &space.guid, &metadata)?;
            render(conn, &base, &space, &org.guid)
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
    // Managed service instances go first, through their brokers (CC's SpaceDelete).
    let (checker, lookup) = (user.clone(), guid.clone());
    let space_id = state
        .db
        .run(move |conn| {
            let permissions = Permissions::load(conn, &checker)?;
            let (space, org) = visible_space(conn, &permissions, &lookup)?;
            if !permissions.can_write_org(org.id) {
                return Err(ApiError::forbidden());
            }
            permissions.require_active_org(&org)?;
            Ok(space.id)
        })
        .await?;
    let service_failures = state
        .services
        .delete_instances_in_spaces(vec![space_id], Some(user.guid.clone()))
        .await?;
    let job_guid = state
        .db
        .run(move |conn| {
            let permissions = Permissions::load(conn, &user)?;
            let (space, org) = visible_space(conn, &permissions, &guid)?;
            if !permissions.can_write_org(org.id) {
                return Err(ApiError::forbidden());
            }
            let blobs = store::apps::blob_keys_in_spaces(conn, &[space.id])?;
            let job = store::jobs::run_now(conn, "space.delete", "space", &space.guid, |conn| {
                if !service_failures.is_empty() {
                    return Err(store::services::space_deletion_failed(
                        &space.name,
                        &service_failures,
                    ));
                }
                store::spaces::delete_cascade(conn, space.id)
            })?;
            Ok((job, blobs))
        })
        .await?;
    let (job_guid, blobs) = job_guid;
    state.blobs.delete_all(blobs).await;
    Ok(crate::v3::accepted_job(&state.external_url, &job_guid))
}

async fn isolation_segment(
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
            let (space, _org) = visible_space(conn, &permissions, &guid)?;
            // Kiln has no isolation segments yet: every space runs in the shared one.
            Ok(json!({
                "data": null,
                "links": {"self": {"href": format!("{base}/v3/spaces/{}/relationships/isolation_segment", space.guid)}},
            }))
        })
        .await?;
    Ok(HttpResponse::Ok().json(body))
}
