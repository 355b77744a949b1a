//! `/v2/organizations`: list (CC's `q` attributes, `order-by=name`), get, create (201 +
//! Location), update (PUT → 201), delete (204, or 202 + job with `async=true`), the org's spaces
//! and space quotas, its summary, its instance and memory usage, and its (always unset) default
//! isolation segment.

use std::collections::HashMap;

use actix_web::{web, HttpRequest, HttpResponse};
use serde_json::{json, Value};

use crate::app::{resource, AppState};
use crate::auth::CurrentUser;
use crate::body;
use crate::db::models::{OrgRow, QuotaRow};
use crate::db::DbConn;
use crate::error::{ApiError, ErrorKind};
use crate::permissions::{Permissions, RoleType};
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
        .service(resource("/v2/organizations/{guid}/spaces").route(web::get().to(list_spaces)))
        .service(resource("/v2/organizations/{guid}/summary").route(web::get().to(summary)))
        .service(
            resource("/v2/organizations/{guid}/default_isolation_segment")
                .route(web::delete().to(delete_default_isolation_segment)),
        )
        .service(
            resource("/v2/organizations/{guid}/instance_usage")
                .route(web::get().to(instance_usage)),
        )
        .service(
            resource("/v2/organizations/{guid}/memory_usage").route(web::get().to(memory_usage)),
        )
        .service(
            resource("/v2/organizations/{guid}/space_quota_definitions")
                .route(web::get().to(list_space_quotas)),
        );
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

/// CC's `OrganizationsController.query_parameters`.
pub(crate) const QUERY_PARAMETERS: &[&str] = &[
    "name",
    "space_guid",
    "user_guid",
    "manager_guid",
    "billing_manager_guid",
    "auditor_guid",
    "status",
];

/// The `q` attributes answered by a join (spaces, and users by org role).
const JOIN_PARAMETERS: &[&str] = &[
    "space_guid",
    "user_guid",
    "manager_guid",
    "billing_manager_guid",
    "auditor_guid",
];

/// The orgs of `orgs` that pass every `q` condition of an organization listing.
pub(crate) fn matching(
    conn: &mut DbConn,
    query: &V2Query,
    orgs: Vec<OrgRow>,
) -> Result<Vec<OrgRow>, ApiError> {
    let mut related = super::Related::default();
    if query.names_any(JOIN_PARAMETERS) {
        for space in store::spaces::list(conn)? {
            related.add(space.organization_id, "space_guid", &space.guid);
        }
        let user_guids: HashMap<i32, String> = store::users::list(conn)?
            .into_iter()
            .map(|user| (user.id, user.guid))
            .collect();
        for role in store::roles::list(conn)? {
            let attribute = match RoleType::parse(&role.role_type) {
                _ if role.space_id.is_some() => continue,
                Some(RoleType::OrganizationUser) => "user_guid",
                Some(RoleType::OrganizationManager) => "manager_guid",
                Some(RoleType::OrganizationBillingManager) => "billing_manager_guid",
                Some(RoleType::OrganizationAuditor) => "auditor_guid",
                _ => continue,
            };
            if let Some(user_guid) = user_guids.get(&role.user_id) {
                related.add(role.organization_id, attribute, user_guid);
            }
        }
    }
    Ok(orgs
        .into_iter()
        .filter(|org| {
            query.accepts_name("name", &org.name)
                && query.accepts("status", if org.suspended { "suspended" } else { "active" })
                && related.accepted_by(org.id, query, JOIN_PARAMETERS)
        })
        .collect())
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
    let query = V2Query::parse(&request, QUERY_PARAMETERS, &["name", "id"])?;
    let body = state
        .db
        .run(move |conn| {
            let permissions = Permissions::load(conn, &user)?;
            let readable: Vec<OrgRow> = store::orgs::list(conn)?
                .into_iter()
                .filter(|org| permissions.can_read_org(org.id))
                .collect();
            let orgs = matching(conn, &query, readable)?;
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
    request: HttpRequest,
) -> Result<HttpResponse, ApiError> {
    super::check_resource_query(&request)?;
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
    match super::body_string(object, "status")?.as_deref() {
        None => Ok(None),
        Some("active") => Ok(Some(false)),
        Some("suspended") => Ok(Some(true)),
        Some(_) => Err(ApiError::with_args(
            ErrorKind::OrganizationInvalid,
            &["status must be active or suspended"],
        )),
    }
}

/// A name CC's model would refuse (blank, too long, control characters) is `CF-OrganizationInvalid`.
/// CC strips surrounding whitespace from the name first (`strip_attributes :name`).
fn check_name(name: &str) -> Result<String, ApiError> {
    let name = name.trim_matches(|character: char| character.is_ascii_whitespace());
    body::check_name(name)
        .map_err(|error| ApiError::with_args(ErrorKind::OrganizationInvalid, &[&error.detail]))?;
    Ok(name.to_owned())
}

/// The quota a `quota_definition_guid` names; an unknown GUID is CC's `CF-InvalidRelation`.
fn find_quota(conn: &mut DbConn, quota_guid: &str) -> Result<QuotaRow, ApiError> {
    store::reference_data::find_quota(conn, quota_guid)?.ok_or_else(|| {
        ApiError::with_args(
            ErrorKind::InvalidRelation,
            &[&format!(
                "Could not find QuotaDefinition with guid: {quota_guid}"
            )],
        )
    })
}

/// Stores `billing_enabled` (the shared store's org update does not take it).
fn set_billing_enabled(
    conn: &mut DbConn,
    org: &OrgRow,
    billing_enabled: bool,
) -> Result<OrgRow, ApiError> {
    use crate::db::schema::organizations;
    use diesel::prelude::*;
    diesel::update(organizations::table.filter(organizations::id.eq(org.id)))
        .set((
            organizations::billing_enabled.eq(billing_enabled),
            organizations::updated_at.eq(store::now()),
        ))
        .execute(conn)?;
    store::orgs::find_by_id(conn, org.id)?
        .ok_or_else(|| ApiError::internal("organization vanished after its update"))
}

async fn create(
    state: web::Data<AppState>,
    user: CurrentUser,
    payload: web::Json<Value>,
) -> Result<HttpResponse, ApiError> {
    let object = super::body_object(&payload)?;
    let name = super::body_required_string(object, "name")?;
    let billing_enabled = super::body_bool(object, "billing_enabled")?;
    let suspended = parse_status(object)?.unwrap_or(false);
    let quota_guid = super::body_string(object, "quota_definition_guid")?;
    let name = check_name(&name)?;
    let body = state
        .db
        .run(move |conn| {
            // Look the quota up first, so that a bad GUID creates nothing; only admins pick one
            // (CC's `quota_definition_id` `not_authorized` validation).
            let quota = match &quota_guid {
                Some(quota_guid) => Some(find_quota(conn, quota_guid)?),
                None => None,
            };
            if quota.is_some() && !Permissions::load(conn, &user)?.can_write_globally() {
                return Err(ApiError::forbidden());
            }
            // Non-admins need `user_org_creation` (CC answers `CF-NotAuthorized` without it).
            let mut org =
                crate::v3::organizations::create_org(conn, &user, &name, suspended, name_taken)?;
            if let Some(quota) = quota {
                org = store::orgs::update(conn, org.id, None, None, Some(quota.id))
                    .map_err(crate::v3::organizations::store_error(|| name_taken(&name)))?;
            }
            if let Some(billing_enabled) = billing_enabled {
                org = set_billing_enabled(conn, &org, billing_enabled)?;
            }
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
    let object = super::body_object(&payload)?;
    let name = super::body_string(object, "name")?;
    let billing_enabled = super::body_bool(object, "billing_enabled")?;
    let suspended = parse_status(object)?;
    let quota_guid = super::body_string(object, "quota_definition_guid")?;
    let isolation_segment_guid = super::body_string(object, "default_isolation_segment_guid")?;
    let name = name.as_deref().map(check_name).transpose()?;
    let guid = path.into_inner();
    let body = state
        .db
        .run(move |conn| {
            let permissions = Permissions::load(conn, &user)?;
            let org = visible(conn, &permissions, &guid)?;
            // Kiln has no isolation segments, so none can become the default.
            if isolation_segment_guid.is_some() {
                return Err(ApiError::with_args(
                    ErrorKind::ResourceNotFound,
                    &["Could not find Isolation Segment to set as the default."],
                ));
            }
            // CC's OrganizationAccess#read_for_update: quota, billing and status are for admins.
            let admin_only =
                suspended.is_some() || quota_guid.is_some() || billing_enabled.is_some();
            if !permissions.can_write_org(org.id)
                || (admin_only && !permissions.can_write_globally())
            {
                return Err(ApiError::forbidden());
            }
            let quota_id = match &quota_guid {
                Some(quota_guid) => Some(find_quota(conn, quota_guid)?.id),
                None => None,
            };
            let taken = name.clone().unwrap_or_default();
            let mut org = store::orgs::update(conn, org.id, name.as_deref(), suspended, quota_id)
                .map_err(crate::v3::organizations::store_error(|| name_taken(&taken)))?;
            if let Some(billing_enabled) = billing_enabled {
                org = set_billing_enabled(conn, &org, billing_enabled)?;
            }
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
    let query = V2Query::parse(&request, super::spaces::QUERY_PARAMETERS, &["name", "id"])?;
    let guid = path.into_inner();
    let body = state
        .db
        .run(move |conn| {
            let permissions = Permissions::load(conn, &user)?;
            let org = visible(conn, &permissions, &guid)?;
            let readable: Vec<_> = store::spaces::list_in_org(conn, org.id)?
                .into_iter()
                .filter(|space| permissions.can_read_space(space.id, space.organization_id))
                .map(|space| (space, org.guid.clone()))
                .collect();
            let spaces = super::spaces::matching(conn, &query, readable)?;
            let path = format!("/v2/organizations/{}/spaces", org.guid);
            Ok(query.envelope(
                spaces,
                &path,
                |(space, _)| &space.name,
                |(space, org_guid)| super::spaces::render(space, org_guid),
            ))
        })
        .await?;
    Ok(HttpResponse::Ok().json(body))
}

/// What the started web processes of each space use: `(instances, memory in MB)`, and how many
/// web processes (CC's v2 apps) each space has.
struct SpaceUsage {
    app_count: usize,
    instances: i64,
    memory_in_mb: i64,
}

fn space_usage(conn: &mut DbConn, space_ids: &[i32]) -> Result<HashMap<i32, SpaceUsage>, ApiError> {
    let apps: HashMap<i32, (i32, bool)> = store::apps::list(conn)?
        .into_iter()
        .filter(|app| space_ids.contains(&app.space_id))
        .map(|app| (app.id, (app.space_id, app.state == "STARTED")))
        .collect();
    let mut usage: HashMap<i32, SpaceUsage> = space_ids
        .iter()
        .map(|id| {
            (
                *id,
                SpaceUsage {
                    app_count: 0,
                    instances: 0,
                    memory_in_mb: 0,
                },
            )
        })
        .collect();
    for process in store::apps::list_processes(conn)? {
        let Some((space_id, started)) = apps.get(&process.app_id) else {
            continue;
        };
        let Some(space) = usage.get_mut(space_id) else {
            continue;
        };
        if process.process_type == "web" {
            space.app_count += 1;
        }
        if *started {
            space.instances += i64::from(process.instances);
            space.memory_in_mb += i64::from(process.instances) * i64::from(process.memory_in_mb);
        }
    }
    Ok(usage)
}

/// `GET /v2/organizations/:g/summary`: the org and each space the caller sees, with its
/// service-instance and app counts and the memory its started apps use.
async fn summary(
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
            let spaces: Vec<_> = store::spaces::list_in_org(conn, org.id)?
                .into_iter()
                .filter(|space| permissions.can_read_space(space.id, space.organization_id))
                .collect();
            let space_ids: Vec<i32> = spaces.iter().map(|space| space.id).collect();
            let usage = space_usage(conn, &space_ids)?;
            let instances = store::services::list_instances(conn)?;
            let spaces: Vec<Value> = spaces
                .iter()
                .map(|space| {
                    let used = &usage[&space.id];
                    json!({
                        "guid": space.guid,
                        "name": space.name,
                        "service_count": instances.iter().filter(|instance| instance.space_id == space.id).count(),
                        "app_count": used.app_count,
                        "mem_dev_total": used.memory_in_mb,
                        "mem_prod_total": 0,
                    })
                })
                .collect();
            Ok(json!({
                "guid": org.guid,
                "name": org.name,
                "status": if org.suspended { "suspended" } else { "active" },
                "spaces": spaces,
            }))
        })
        .await?;
    Ok(HttpResponse::Ok().json(body))
}

/// `(instances, memory in MB)` of the org's started apps.
async fn org_usage(
    state: &AppState,
    user: CurrentUser,
    guid: String,
) -> Result<(i64, i64), ApiError> {
    state
        .db
        .run(move |conn| {
            let permissions = Permissions::load(conn, &user)?;
            let org = visible(conn, &permissions, &guid)?;
            let space_ids: Vec<i32> = store::spaces::list_in_org(conn, org.id)?
                .iter()
                .map(|space| space.id)
                .collect();
            Ok(space_usage(conn, &space_ids)?
                .values()
                .fold((0, 0), |(instances, memory), used| {
                    (instances + used.instances, memory + used.memory_in_mb)
                }))
        })
        .await
}

/// `GET /v2/organizations/:g/instance_usage`: instances of the org's started apps.
async fn instance_usage(
    state: web::Data<AppState>,
    user: CurrentUser,
    path: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let (instances, _) = org_usage(&state, user, path.into_inner()).await?;
    Ok(HttpResponse::Ok().json(json!({"instance_usage": instances})))
}

/// `GET /v2/organizations/:g/memory_usage`: memory of the org's started apps, in MB.
async fn memory_usage(
    state: web::Data<AppState>,
    user: CurrentUser,
    path: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let (_, memory) = org_usage(&state, user, path.into_inner()).await?;
    Ok(HttpResponse::Ok().json(json!({"memory_usage_in_mb": memory})))
}

/// `GET /v2/organizations/:g/space_quota_definitions`: Kiln has no space quotas, so the list is
/// empty (and `cf create-space -q` reports the quota as not found).
async fn list_space_quotas(
    state: web::Data<AppState>,
    user: CurrentUser,
    path: web::Path<String>,
    request: HttpRequest,
) -> Result<HttpResponse, ApiError> {
    let query = V2Query::parse(&request, &["name", "organization_guid"], &["id", "name"])?;
    let guid = path.into_inner();
    let body = state
        .db
        .run(move |conn| {
            let permissions = Permissions::load(conn, &user)?;
            let org = visible(conn, &permissions, &guid)?;
            let path = format!("/v2/organizations/{}/space_quota_definitions", org.guid);
            Ok(query.envelope(Vec::<Value>::new(), &path, |_| "", Value::clone))
        })
        .await?;
    Ok(HttpResponse::Ok().json(body))
}

/// `DELETE /v2/organizations/:g/default_isolation_segment` (admins and org managers): 200 with
/// the org, whose default is always unset in Kiln.
async fn delete_default_isolation_segment(
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
            if !permissions.can_write_org(org.id) {
                return Err(ApiError::forbidden());
            }
            render(conn, &org)
        })
        .await?;
    Ok(HttpResponse::Ok().json(body))
}
