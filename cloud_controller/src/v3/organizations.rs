//! `/v3/organizations`: list, get, create (with the creator's roles when a non-admin creates),
//! update, delete as a job, and the sub-resources `cf org` reads (domains, default domain, usage
//! summary, default isolation segment).

use std::collections::HashMap;

use actix_web::{web, HttpRequest, HttpResponse};
use serde_json::{json, Value};

use crate::app::{resource, AppState};
use crate::auth::CurrentUser;
use crate::body;
use crate::db::models::OrgRow;
use crate::db::DbConn;
use crate::error::ApiError;
use crate::permissions::{Permissions, RoleType};
use crate::query::{list_body, ListQuery, SortKey};
use crate::store::{self, StoreError};
use crate::v3::present;

/// Registers the organization routes.
pub fn configure(config: &mut web::ServiceConfig) {
    config
        .service(
            resource("/v3/organizations")
                .route(web::get().to(list))
                .route(web::post().to(create)),
        )
        .service(
            resource("/v3/organizations/{guid}")
                .route(web::get().to(get))
                .route(web::patch().to(update))
                .route(web::delete().to(delete)),
        )
        .service(resource("/v3/organizations/{guid}/domains").route(web::get().to(list_domains)))
        .service(
            resource("/v3/organizations/{guid}/domains/default")
                .route(web::get().to(default_domain)),
        )
        .service(
            resource("/v3/organizations/{guid}/usage_summary").route(web::get().to(usage_summary)),
        )
        .service(
            resource("/v3/organizations/{guid}/relationships/default_isolation_segment")
                .route(web::get().to(default_isolation_segment)),
        );
}

/// Quota GUIDs by quota id.
pub(crate) fn quota_guids(conn: &mut DbConn) -> Result<HashMap<i32, String>, ApiError> {
    Ok(store::reference_data::list_quotas(conn)?
        .into_iter()
        .map(|quota| (quota.id, quota.guid))
        .collect())
}

/// The org, if it exists and the caller may see it; otherwise 404 "Organization not found".
pub(crate) fn visible_org(
    conn: &mut DbConn,
    permissions: &Permissions,
    guid: &str,
) -> Result<OrgRow, ApiError> {
    store::orgs::find(conn, guid)?
        .filter(|org| permissions.can_read_org(org.id))
        .ok_or_else(|| ApiError::not_found("Organization"))
}

pub(crate) fn render(conn: &mut DbConn, base: &str, org: &OrgRow) -> Result<Value, ApiError> {
    let quota_guid = store::reference_data::find_quota_by_id(conn, org.quota_definition_id)?
        .map(|quota| quota.guid)
        .unwrap_or_default();
    let metadata = store::metadata::load(conn, store::metadata::ORGANIZATION, &org.guid)?;
    Ok(present::with_metadata(
        present::organization(base, org, &quota_guid),
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
        &["names", "guids", "label_selector"],
        &[SortKey::Name],
    )?;
    let base = state.external_url.clone();
    let body = state
        .db
        .run(move |conn| {
            let permissions = Permissions::load(conn, &user)?;
            let quotas = quota_guids(conn)?;
            let metadata = store::metadata::load_all(conn, store::metadata::ORGANIZATION)?;
            let no_metadata = store::metadata::Metadata::default();
            let mut orgs: Vec<OrgRow> = store::orgs::list(conn)?
                .into_iter()
                .filter(|org| permissions.can_read_org(org.id))
                .filter(|org| {
                    query.matches_name("names", &org.name)
                        && query.matches("guids", &org.guid)
                        && query
                            .matches_labels(&metadata.get(&org.guid).unwrap_or(&no_metadata).labels)
                })
                .collect();
            query.sort(
                &mut orgs,
                |org| &org.name,
                |org| &org.created_at,
                |org| &org.updated_at,
            );
            let (page, pagination) = query.page_of_labelled(orgs, &base, "/v3/organizations");
            let resources = page
                .iter()
                .map(|org| {
                    present::with_metadata(
                        present::organization(
                            &base,
                            org,
                            quotas
                                .get(&org.quota_definition_id)
                                .map_or("", String::as_str),
                        ),
                        metadata.get(&org.guid),
                    )
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
            let org = visible_org(conn, &permissions, &guid)?;
            render(conn, &base, &org)
        })
        .await?;
    Ok(HttpResponse::Ok().json(body))
}

fn name_taken(name: &str) -> ApiError {
    ApiError::unprocessable(format!("Organization '{name}' already exists."))
}

/// Creates an org as `user`; non-admin creators get organization_user and organization_manager.
pub(crate) fn create_org(
    conn: &mut DbConn,
    user: &CurrentUser,
    name: &str,
    suspended: bool,
    taken: impl Fn(&str) -> ApiError,
) -> Result<OrgRow, ApiError> {
    let permissions = Permissions::load(conn, user)?;
    if !permissions.can_write_globally()
        && !store::reference_data::flag_enabled(conn, "user_org_creation")?
    {
        return Err(ApiError::forbidden());
    }
    if suspended && !permissions.can_write_globally() {
        return Err(ApiError::forbidden());
    }
    conn.write_transaction(|conn| {
        let quota =
            store::reference_data::default_quota(conn).map_err(store_error(|| taken(name)))?;
        let org = store::orgs::create(conn, name, suspended, quota.id)
            .map_err(store_error(|| taken(name)))?;
        if !permissions.can_write_globally() {
            for role in [RoleType::OrganizationUser, RoleType::OrganizationManager] {
                store::roles::create(conn, role.as_str(), user.user_id, org.id, None)
                    .map_err(store_error(|| ApiError::internal("creator role conflict")))?;
            }
        }
        Ok(org)
    })
}

/// Maps a store error, turning `Conflict` into the given API error.
pub(crate) fn store_error(conflict: impl Fn() -> ApiError) -> impl Fn(StoreError) -> ApiError {
    move |error| match error {
        StoreError::Conflict => conflict(),
        StoreError::Api(error) => error,
    }
}

async fn create(
    state: web::Data<AppState>,
    user: CurrentUser,
    payload: web::Json<Value>,
) -> Result<HttpResponse, ApiError> {
    let payload = payload.into_inner();
    let base = state.external_url.clone();
    let body = state
        .db
        .run(move |conn| {
            // CC refuses a caller who may not create orgs at all before reading the body.
            if !user.is_admin() && !store::reference_data::flag_enabled(conn, "user_org_creation")?
            {
                return Err(ApiError::forbidden());
            }
            let object = body::object(&payload, &["name", "suspended", "metadata"])?;
            let name = body::name(object, true)?.unwrap_or_default();
            let suspended = body::optional_bool(object, "suspended")?.unwrap_or(false);
            let metadata = body::metadata(object)?;
            let org = create_org(conn, &user, &name, suspended, name_taken)?;
            store::metadata::apply(conn, store::metadata::ORGANIZATION, &org.guid, &metadata)?;
            render(conn, &base, &org)
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
            // CC's order: invisible (404), not a manager (403), suspended (403), then the body.
            let permissions = Permissions::load(conn, &user)?;
            let org = visible_org(conn, &permissions, &guid)?;
            if !permissions.can_write_org(org.id) {
                return Err(ApiError::forbidden());
            }
            permissions.require_active_org(&org)?;
            let object = body::object(&payload, &["name", "suspended", "metadata"])?;
            let name = body::name(object, false)?;
            let suspended = body::optional_bool(object, "suspended")?;
            let metadata = body::metadata(object)?;
            // CC's suspended_by_non_admin?: only suspending needs an admin.
            if suspended == Some(true) && !permissions.can_write_globally() {
                return Err(ApiError::forbidden());
            }
            let taken_name = name.clone().unwrap_or_default();
            let org = store::orgs::update(conn, org.id, name.as_deref(), suspended, None).map_err(
                store_error(|| {
                    ApiError::unprocessable(format!(
                        "Organization name '{taken_name}' is already taken."
                    ))
                }),
            )?;
            store::metadata::apply(conn, store::metadata::ORGANIZATION, &org.guid, &metadata)?;
            render(conn, &base, &org)
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
    // Managed service instances go first, through their brokers (CC's OrganizationDelete).
    let (checker, lookup) = (user.clone(), guid.clone());
    let space_ids = state
        .db
        .run(move |conn| {
            let permissions = Permissions::load(conn, &checker)?;
            let org = visible_org(conn, &permissions, &lookup)?;
            if !permissions.can_write_globally() {
                return Err(ApiError::forbidden());
            }
            Ok(store::spaces::list_in_org(conn, org.id)?
                .iter()
                .map(|space| space.id)
                .collect::<Vec<i32>>())
        })
        .await?;
    let service_failures = state
        .services
        .delete_instances_in_spaces(space_ids, Some(user.guid.clone()))
        .await?;
    let job_guid = state
        .db
        .run(move |conn| {
            let permissions = Permissions::load(conn, &user)?;
            let org = visible_org(conn, &permissions, &guid)?;
            if !permissions.can_write_globally() {
                return Err(ApiError::forbidden());
            }
            let space_ids: Vec<i32> = store::spaces::list_in_org(conn, org.id)?
                .iter()
                .map(|space| space.id)
                .collect();
            let blobs = store::apps::blob_keys_in_spaces(conn, &space_ids)?;
            let job = store::jobs::run_now(
                conn,
                "organization.delete",
                "organization",
                &org.guid,
                |conn| {
                    if !service_failures.is_empty() {
                        let messages: Vec<String> = service_failures
                            .iter()
                            .map(|message| format!("\t{message}"))
                            .collect();
                        return Err(crate::error::ApiError::with_args(
                            crate::error::ErrorKind::OrganizationDeletionFailed,
                            &[&org.name, &messages.join("\n\n")],
                        ));
                    }
                    store::orgs::delete_cascade(conn, org.id)
                },
            )?;
            Ok((job, blobs))
        })
        .await?;
    let (job_guid, blobs) = job_guid;
    state.blobs.delete_all(blobs).await;
    Ok(crate::v3::accepted_job(&state.external_url, &job_guid))
}

async fn list_domains(
    state: web::Data<AppState>,
    user: CurrentUser,
    path: web::Path<String>,
    request: HttpRequest,
) -> Result<HttpResponse, ApiError> {
    let query = ListQuery::parse(
        &request,
        &["names", "guids", "organization_guids", "label_selector"],
        &[SortKey::Name],
    )?;
    let guid = path.into_inner();
    let base = state.external_url.clone();
    let body = state
        .db
        .run(move |conn| {
            let permissions = Permissions::load(conn, &user)?;
            let org = visible_org(conn, &permissions, &guid)?;
            let mut domains: Vec<_> = store::reference_data::list_domains(conn)?
                .into_iter()
                .filter(|domain| {
                    domain
                        .owning_organization_id
                        .is_none_or(|owner| owner == org.id)
                })
                .filter(|domain| {
                    query.matches_name("names", &domain.name)
                        && query.matches("guids", &domain.guid)
                })
                .filter(|domain| {
                    let owner = domain.owning_organization_id.map(|_| org.guid.as_str());
                    query.matches_opt("organization_guids", owner)
                })
                .collect();
            query.sort(
                &mut domains,
                |domain| &domain.name,
                |domain| &domain.created_at,
                |domain| &domain.updated_at,
            );
            let path = format!("/v3/organizations/{}/domains", org.guid);
            let (page, pagination) = query.page_of(domains, &base, &path);
            let resources = page
                .iter()
                .map(|domain| {
                    present::domain(
                        &base,
                        domain,
                        domain.owning_organization_id.map(|_| org.guid.as_str()),
                    )
                })
                .collect();
            Ok(list_body(pagination, resources, None))
        })
        .await?;
    Ok(HttpResponse::Ok().json(body))
}

async fn default_domain(
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
            let org = visible_org(conn, &permissions, &guid)?;
            let domains = store::reference_data::list_domains(conn)?;
            let domain = domains
                .iter()
                .find(|domain| domain.owning_organization_id.is_none() && !domain.internal)
                .or_else(|| {
                    domains
                        .iter()
                        .find(|domain| domain.owning_organization_id == Some(org.id))
                })
                .ok_or_else(|| ApiError::not_found("Domain"))?;
            Ok(present::domain(
                &base,
                domain,
                domain.owning_organization_id.map(|_| org.guid.as_str()),
            ))
        })
        .await?;
    Ok(HttpResponse::Ok().json(body))
}

async fn usage_summary(
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
            let org = visible_org(conn, &permissions, &guid)?;
            Ok(json!({
                "usage_summary": usage(conn, &org)?,
                "links": {
                    "self": {"href": format!("{base}/v3/organizations/{}/usage_summary", org.guid)},
                    "organization": {"href": format!("{base}/v3/organizations/{}", org.guid)},
                },
            }))
        })
        .await?;
    Ok(HttpResponse::Ok().json(body))
}

async fn default_isolation_segment(
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
            let org = visible_org(conn, &permissions, &guid)?;
            // Kiln has no isolation segments, so no org has a default one.
            Ok(json!({
                "data": null,
                "links": {
                    "self": {"href": format!("{base}/v3/organizations/{}/relationships/default_isolation_segment", org.guid)},
                },
            }))
        })
        .await?;
    Ok(HttpResponse::Ok().json(body))
}

/// CC's OrganizationUsageSummaryPresenter: instances and memory of started processes, routes,
/// managed service instances, service keys and private domains in the org. Kiln has no TCP
/// routes (reserved ports) and no tasks, so those are zero.
fn usage(conn: &mut DbConn, org: &OrgRow) -> Result<Value, ApiError> {
    let space_ids: std::collections::HashSet<i32> = store::spaces::list_in_org(conn, org.id)?
        .iter()
        .map(|space| space.id)
        .collect();
    let started_apps: std::collections::HashSet<i32> = store::apps::list(conn)?
        .iter()
        .filter(|app| space_ids.contains(&app.space_id) && app.state == "STARTED")
        .map(|app| app.id)
        .collect();
    let (mut started_instances, mut memory_in_mb) = (0i64, 0i64);
    for process in store::apps::list_processes(conn)? {
        if started_apps.contains(&process.app_id) {
            started_instances += i64::from(process.instances);
            memory_in_mb += i64::from(process.instances) * i64::from(process.memory_in_mb);
        }
    }
    let routes = store::routes::list(conn)?
        .iter()
        .filter(|route| space_ids.contains(&route.space_id))
        .count();
    let instances: std::collections::HashMap<i32, bool> = store::services::list_instances(conn)?
        .iter()
        .filter(|instance| space_ids.contains(&instance.space_id))
        .map(|instance| {
            (
                instance.id,
                instance.instance_type == store::services::MANAGED,
            )
        })
        .collect();
    let service_keys = store::services::list_bindings(conn)?
        .iter()
        .filter(|binding| binding.binding_type == "key")
        .filter(|binding| instances.contains_key(&binding.service_instance_id))
        .count();
    let private_domains = store::reference_data::list_domains(conn)?
        .iter()
        .filter(|domain| domain.owning_organization_id == Some(org.id))
        .count();
    Ok(json!({
        "started_instances": started_instances,
        "memory_in_mb": memory_in_mb,
        "routes": routes,
        "service_instances": instances.values().filter(|managed| **managed).count(),
        "reserved_ports": 0,
        "domains": private_domains,
        "per_app_tasks": 0,
        "service_keys": service_keys,
    }))
}
