//! `/v2/users`: list (admin and read-only admin), get (themself or those), create from a UAA id
//! (admin, 201, `CF-UaaIdTaken` on a duplicate), update `admin` and `default_space_guid` (admin,
//! 201), delete (admin; 204 or a job with `async=true`),
//! and the per-user relations `organizations`, `managed_organizations`,
//! `billing_managed_organizations`, `audited_organizations`, `spaces`, `managed_spaces` and
//! `audited_spaces` — listed, added (admin, 201 with the user) and removed (204) over the same
//! roles the org and space endpoints and `/v3/roles` use — and the user's summary.

use std::collections::HashMap;

use actix_web::{web, HttpRequest, HttpResponse};
use serde_json::{json, Value};

use crate::app::{resource, AppState};
use crate::auth::CurrentUser;
use crate::db::models::{RoleRow, UserRow};
use crate::db::DbConn;
use crate::error::{ApiError, ErrorKind};
use crate::permissions::{Permissions, RoleType};
use crate::query::query_pairs;
use crate::store::users::UserSettings;
use crate::store::{self, StoreError};
use crate::v2::roles::Scope;
use crate::v2::V2Query;

/// CC's `UsersController.query_parameters`.
pub(crate) const QUERY_PARAMETERS: &[&str] = &[
    "space_guid",
    "organization_guid",
    "managed_organization_guid",
    "billing_managed_organization_guid",
    "audited_organization_guid",
    "managed_space_guid",
    "audited_space_guid",
];

/// The per-user relations, their role type, and the `q` attribute that filters users by them.
const RELATIONS: &[(&str, RoleType, &str)] = &[
    (
        "organizations",
        RoleType::OrganizationUser,
        "organization_guid",
    ),
    (
        "managed_organizations",
        RoleType::OrganizationManager,
        "managed_organization_guid",
    ),
    (
        "billing_managed_organizations",
        RoleType::OrganizationBillingManager,
        "billing_managed_organization_guid",
    ),
    (
        "audited_organizations",
        RoleType::OrganizationAuditor,
        "audited_organization_guid",
    ),
    ("spaces", RoleType::SpaceDeveloper, "space_guid"),
    (
        "managed_spaces",
        RoleType::SpaceManager,
        "managed_space_guid",
    ),
    (
        "audited_spaces",
        RoleType::SpaceAuditor,
        "audited_space_guid",
    ),
];

const RELATION_PATTERN: &str = "organizations|managed_organizations|billing_managed_organizations|audited_organizations|spaces|managed_spaces|audited_spaces";

/// Registers the v2 user routes.
pub fn configure(config: &mut web::ServiceConfig) {
    config
        .service(
            resource("/v2/users")
                .route(web::get().to(list))
                .route(web::post().to(create)),
        )
        .service(
            resource("/v2/users/{guid}")
                .route(web::get().to(get))
                .route(web::put().to(update))
                .route(web::delete().to(delete)),
        )
        .service(resource("/v2/users/{guid}/summary").route(web::get().to(summary)))
        .service(
            resource(&format!(
                "/v2/users/{{guid}}/{{relation:{RELATION_PATTERN}}}"
            ))
            .route(web::get().to(list_related)),
        )
        .service(
            resource(&format!(
                "/v2/users/{{guid}}/{{relation:{RELATION_PATTERN}}}/{{target_guid}}"
            ))
            .route(web::put().to(add_related))
            .route(web::delete().to(remove_related)),
        );
}

fn relation(name: &str) -> Result<(RoleType, Scope), ApiError> {
    RELATIONS
        .iter()
        .find(|(relation, _, _)| *relation == name)
        .map(|(_, role_type, _)| {
            let scope = if role_type.is_space_role() {
                Scope::Space
            } else {
                Scope::Organization
            };
            (*role_type, scope)
        })
        .ok_or_else(|| ApiError::plain(ErrorKind::NotFound))
}

/// The v2 user resource. `username` is only present when CC knows it, as in CC's
/// username-populating renderer; `admin` and `default_space_guid` are the stored values (with
/// `default_space_url` when set), and `active` is CC's default.
///
/// The stored `admin` is only shown: as in CC, where `User#admin?` is deprecated in favour of the
/// token's `cloud_controller.admin` scope, authorization never reads it.
pub(crate) fn render(user: &UserRow, settings: &UserSettings) -> Value {
    let url = format!("/v2/users/{}", user.guid);
    let mut entity = json!({
        "admin": settings.admin,
        "active": false,
        "default_space_guid": settings.default_space_guid,
    });
    if let Some(username) = &user.username {
        entity["username"] = json!(username);
    }
    for (relation, _, _) in RELATIONS {
        entity[format!("{relation}_url")] = json!(format!("{url}/{relation}"));
    }
    if let Some(space_guid) = &settings.default_space_guid {
        entity["default_space_url"] = json!(format!("/v2/spaces/{space_guid}"));
    }
    super::resource(&user.guid, &url, &user.created_at, &user.updated_at, entity)
}

/// [`render`] with the user's settings taken from [`store::users::all_settings`].
pub(crate) fn render_with(all_settings: &HashMap<i32, UserSettings>, user: &UserRow) -> Value {
    render(
        user,
        &all_settings.get(&user.id).cloned().unwrap_or_default(),
    )
}

/// Loads the user's settings and renders it.
fn render_loaded(conn: &mut DbConn, user: &UserRow) -> Result<Value, ApiError> {
    Ok(render(user, &store::users::settings(conn, user.id)?))
}

/// CC's `default_space_guid` setter: a GUID no space has is `CF-InvalidRelation`.
fn default_space_id(conn: &mut DbConn, space_guid: &str) -> Result<i32, ApiError> {
    store::spaces::find(conn, space_guid)?
        .map(|space| space.id)
        .ok_or_else(|| {
            ApiError::with_args(
                ErrorKind::InvalidRelation,
                &[&format!("Could not find Space with guid: {space_guid}")],
            )
        })
}

/// `default_space_guid` of a request body: absent (`None`), null (`Some(None)`) or a GUID.
fn body_default_space_guid(
    object: &serde_json::Map<String, Value>,
) -> Result<Option<Option<String>>, ApiError> {
    match object.get("default_space_guid") {
        None => Ok(None),
        Some(_) => Ok(Some(super::body_string(object, "default_space_guid")?)),
    }
}

/// Which org and space GUIDs each user is related to, by `q` attribute.
pub(crate) struct Memberships {
    by_user: HashMap<i32, Vec<(&'static str, String)>>,
}

impl Memberships {
    pub(crate) fn load(conn: &mut DbConn) -> Result<Memberships, ApiError> {
        let org_guids: HashMap<i32, String> = store::orgs::list(conn)?
            .into_iter()
            .map(|org| (org.id, org.guid))
            .collect();
        let space_guids: HashMap<i32, String> = store::spaces::list(conn)?
            .into_iter()
            .map(|space| (space.id, space.guid))
            .collect();
        let mut by_user: HashMap<i32, Vec<(&'static str, String)>> = HashMap::new();
        for role in store::roles::list(conn)? {
            let Some((_, _, attribute)) = RELATIONS
                .iter()
                .find(|(_, role_type, _)| role_type.as_str() == role.role_type)
            else {
                continue;
            };
            let guid = match role.space_id {
                Some(space_id) => space_guids.get(&space_id),
                None => org_guids.get(&role.organization_id),
            };
            if let Some(guid) = guid {
                by_user
                    .entry(role.user_id)
                    .or_default()
                    .push((attribute, guid.clone()));
            }
        }
        Ok(Memberships { by_user })
    }

    /// Whether `user` passes every `q` condition of a user listing.
    pub(crate) fn accepted_by(&self, user: &UserRow, query: &V2Query) -> bool {
        let related = self.by_user.get(&user.id).map(Vec::as_slice).unwrap_or(&[]);
        QUERY_PARAMETERS.iter().all(|attribute| {
            query.accepts_any(
                attribute,
                related
                    .iter()
                    .filter(|(name, _)| name == attribute)
                    .map(|(_, guid)| guid.as_str()),
            )
        })
    }
}

fn not_found(guid: &str) -> ApiError {
    ApiError::with_args(ErrorKind::UserNotFound, &[guid])
}

/// CC's `UserAccess#read?`: admins and read-only admins read anyone, others only themselves.
fn readable_user(conn: &mut DbConn, caller: &CurrentUser, guid: &str) -> Result<UserRow, ApiError> {
    let user = store::users::find(conn, guid)?.ok_or_else(|| not_found(guid))?;
    if caller.is_admin() || caller.is_admin_read_only() || user.id == caller.user_id {
        Ok(user)
    } else {
        Err(ApiError::forbidden())
    }
}

async fn list(
    state: web::Data<AppState>,
    user: CurrentUser,
    request: HttpRequest,
) -> Result<HttpResponse, ApiError> {
    let query = V2Query::parse(&request, QUERY_PARAMETERS, &["id"])?;
    if !(user.is_admin() || user.is_admin_read_only()) {
        return Err(ApiError::forbidden());
    }
    let body = state
        .db
        .run(move |conn| {
            let memberships = Memberships::load(conn)?;
            let settings = store::users::all_settings(conn)?;
            let users: Vec<UserRow> = store::users::list(conn)?
                .into_iter()
                .filter(|row| memberships.accepted_by(row, &query))
                .collect();
            Ok(query.envelope(
                users,
                "/v2/users",
                |row| &row.guid,
                |row| render_with(&settings, row),
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
            let subject = readable_user(conn, &user, &guid)?;
            render_loaded(conn, &subject)
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
    let guid = Some(super::body_required_string(object, "guid")?)
        .filter(|guid| !guid.trim().is_empty())
        .ok_or_else(|| ApiError::with_args(ErrorKind::UserInvalid, &["guid presence"]))?;
    // A GUID with control characters could not be stored (PostgreSQL refuses NUL) or found again.
    if guid.chars().any(char::is_control) {
        return Err(ApiError::with_args(
            ErrorKind::UserInvalid,
            &["guid format"],
        ));
    }
    let admin = super::body_bool(object, "admin")?;
    let default_space_guid = super::body_string(object, "default_space_guid")?;
    if !user.is_admin() {
        return Err(ApiError::forbidden());
    }
    // UAA only fills in the name; CC creates the user even when UAA does not know the id.
    let uaa_user = state.uaa.user_by_id(&guid).await.unwrap_or_else(|error| {
        tracing::warn!(user_guid = %guid, %error, "could not look the new user up in UAA");
        None
    });
    let body = state
        .db
        .run(move |conn| {
            let username = uaa_user.as_ref().map(|found| found.username.as_str());
            let origin = uaa_user.as_ref().map(|found| found.origin.as_str());
            conn.write_transaction(|conn| {
                let space_id = default_space_guid
                    .as_deref()
                    .map(|space_guid| default_space_id(conn, space_guid))
                    .transpose()?;
                let row = match store::users::create(conn, &guid, username, origin, false) {
                    Ok(row) => row,
                    Err(StoreError::Conflict) => {
                        return Err(ApiError::with_args(ErrorKind::UaaIdTaken, &[&guid]))
                    }
                    Err(StoreError::Api(error)) => return Err(error),
                };
                if admin.is_some() || space_id.is_some() {
                    store::users::update_settings(conn, row.id, admin, Some(space_id))?;
                }
                let row =
                    store::users::find_by_id(conn, row.id)?.ok_or_else(|| not_found(&guid))?;
                render_loaded(conn, &row)
            })
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

/// `PUT /v2/users/:g` (admin): sets `admin` and `default_space_guid` (null clears it); the other
/// keys CC's message knows are accepted and left alone, and `guid` cannot change.
async fn update(
    state: web::Data<AppState>,
    user: CurrentUser,
    path: web::Path<String>,
    payload: web::Json<Value>,
) -> Result<HttpResponse, ApiError> {
    let object = super::body_object(&payload)?;
    let admin = super::body_bool(object, "admin")?;
    let default_space_guid = body_default_space_guid(object)?;
    let guid = path.into_inner();
    let body = state
        .db
        .run(move |conn| {
            let subject = store::users::find(conn, &guid)?.ok_or_else(|| not_found(&guid))?;
            // CC's UserAccess#update?: admins only. Setting `admin` here grants nothing, as in
            // CC; the admin scope of the token is what authorizes.
            if !user.is_admin() {
                return Err(ApiError::forbidden());
            }
            conn.write_transaction(|conn| {
                let space_id = match &default_space_guid {
                    None => None,
                    Some(None) => Some(None),
                    Some(Some(space_guid)) => Some(Some(default_space_id(conn, space_guid)?)),
                };
                store::users::update_settings(conn, subject.id, admin, space_id)?;
                let row =
                    store::users::find_by_id(conn, subject.id)?.ok_or_else(|| not_found(&guid))?;
                render_loaded(conn, &row)
            })
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
    let asynchronous = query_pairs(&request)?
        .iter()
        .any(|(key, value)| key == "async" && value == "true");
    let guid = path.into_inner();
    let job = state
        .db
        .run(move |conn| {
            let row = store::users::find(conn, &guid)?.ok_or_else(|| not_found(&guid))?;
            if !user.is_admin() {
                return Err(ApiError::forbidden());
            }
            let job_guid = store::jobs::run_now(conn, "user.delete", "user", &row.guid, |conn| {
                store::users::delete(conn, row.id)
            })?;
            store::jobs::find(conn, &job_guid)
        })
        .await?;
    if asynchronous {
        Ok(HttpResponse::Accepted().json(super::jobs::render(job.as_ref())))
    } else {
        Ok(HttpResponse::NoContent().finish())
    }
}

fn holds(
    roles: &[RoleRow],
    role_type: RoleType,
    organization_id: i32,
    space_id: Option<i32>,
) -> bool {
    roles.iter().any(|role| {
        role.role_type == role_type.as_str()
            && role.organization_id == organization_id
            && role.space_id == space_id
    })
}

async fn list_related(
    state: web::Data<AppState>,
    user: CurrentUser,
    path: web::Path<(String, String)>,
    request: HttpRequest,
) -> Result<HttpResponse, ApiError> {
    let (guid, relation_name) = path.into_inner();
    let (role_type, scope) = relation(&relation_name)?;
    let query = match scope {
        Scope::Organization => V2Query::parse(
            &request,
            super::organizations::QUERY_PARAMETERS,
            &["name", "id"],
        )?,
        Scope::Space => V2Query::parse(&request, super::spaces::QUERY_PARAMETERS, &["name", "id"])?,
    };
    let body = state
        .db
        .run(move |conn| {
            let subject = readable_user(conn, &user, &guid)?;
            let permissions = Permissions::load(conn, &user)?;
            let roles = store::roles::list_for_user(conn, subject.id)?;
            let path = format!("/v2/users/{}/{relation_name}", subject.guid);
            let orgs = store::orgs::list(conn)?;
            match scope {
                Scope::Organization => {
                    let held: Vec<_> = orgs
                        .into_iter()
                        .filter(|org| {
                            permissions.can_read_org(org.id)
                                && holds(&roles, role_type, org.id, None)
                        })
                        .collect();
                    let rendered: Vec<(String, Value)> =
                        super::organizations::matching(conn, &query, held)?
                            .iter()
                            .map(|org| {
                                Ok((org.name.clone(), super::organizations::render(conn, org)?))
                            })
                            .collect::<Result<_, ApiError>>()?;
                    Ok(query.envelope(
                        rendered,
                        &path,
                        |(name, _)| name,
                        |(_, value)| value.clone(),
                    ))
                }
                Scope::Space => {
                    let org_guids: HashMap<i32, String> =
                        orgs.into_iter().map(|org| (org.id, org.guid)).collect();
                    let spaces: Vec<_> = store::spaces::list(conn)?
                        .into_iter()
                        .filter_map(|space| {
                            let org_guid = org_guids.get(&space.organization_id)?.clone();
                            let keep = permissions.can_read_space(space.id, space.organization_id)
                                && holds(&roles, role_type, space.organization_id, Some(space.id));
                            keep.then_some((space, org_guid))
                        })
                        .collect();
                    let spaces = super::spaces::matching(conn, &query, spaces)?;
                    Ok(query.envelope(
                        spaces,
                        &path,
                        |(space, _)| &space.name,
                        |(space, org_guid)| super::spaces::render(space, org_guid),
                    ))
                }
            }
        })
        .await?;
    Ok(HttpResponse::Ok().json(body))
}

async fn add_related(
    state: web::Data<AppState>,
    user: CurrentUser,
    path: web::Path<(String, String, String)>,
) -> Result<HttpResponse, ApiError> {
    let (guid, relation_name, target_guid) = path.into_inner();
    let (role_type, scope) = relation(&relation_name)?;
    let body = state
        .db
        .run(move |conn| {
            let subject = store::users::find(conn, &guid)?.ok_or_else(|| not_found(&guid))?;
            // CC's UserAccess#read_for_update: only admins change a user's relations here.
            if !user.is_admin() {
                return Err(ApiError::forbidden());
            }
            let (_, subject) = crate::v2::roles::add_by_user_guid(
                conn,
                &user,
                scope,
                &target_guid,
                role_type,
                &subject.guid,
                None,
            )?;
            render_loaded(conn, &subject)
        })
        .await?;
    Ok(HttpResponse::Created().json(body))
}

async fn remove_related(
    state: web::Data<AppState>,
    user: CurrentUser,
    path: web::Path<(String, String, String)>,
    request: HttpRequest,
) -> Result<HttpResponse, ApiError> {
    let (guid, relation_name, target_guid) = path.into_inner();
    let (role_type, scope) = relation(&relation_name)?;
    let recursive = query_pairs(&request)?
        .iter()
        .any(|(key, value)| key == "recursive" && value == "true");
    state
        .db
        .run(move |conn| {
            if store::users::find(conn, &guid)?.is_none() {
                return Err(not_found(&guid));
            }
            crate::v2::roles::remove_by_user_guid(
                conn,
                &user,
                scope,
                &target_guid,
                role_type,
                &guid,
                recursive,
            )
        })
        .await?;
    Ok(HttpResponse::NoContent().finish())
}

/// CC's summary presenters: `metadata` without a URL, and a small entity.
fn summary_resource(guid: &str, created_at: &str, updated_at: &str, entity: Value) -> Value {
    json!({
        "metadata": {"guid": guid, "created_at": created_at, "updated_at": updated_at},
        "entity": entity,
    })
}

/// `GET /v2/users/:g/summary` (the user themself, admins and read-only admins): the user's orgs
/// and spaces per relation, each org with its spaces, quota and managers inlined, as CC's
/// `UserSummaryPresenter` does.
async fn summary(
    state: web::Data<AppState>,
    user: CurrentUser,
    path: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let guid = path.into_inner();
    let body = state
        .db
        .run(move |conn| {
            let subject = readable_user(conn, &user, &guid)?;
            let roles = store::roles::list(conn)?;
            let orgs = store::orgs::list(conn)?;
            let spaces = store::spaces::list(conn)?;
            let users: HashMap<i32, UserRow> = store::users::list(conn)?
                .into_iter()
                .map(|row| (row.id, row))
                .collect();
            let settings = store::users::all_settings(conn)?;
            let quotas: HashMap<i32, crate::db::models::QuotaRow> =
                store::reference_data::list_quotas(conn)?
                    .into_iter()
                    .map(|quota| (quota.id, quota))
                    .collect();
            let present_space = |space: &crate::db::models::SpaceRow| {
                summary_resource(
                    &space.guid,
                    &space.created_at,
                    &space.updated_at,
                    json!({"name": space.name}),
                )
            };
            let present_org = |org: &crate::db::models::OrgRow| {
                let quota = quotas.get(&org.quota_definition_id).map(|quota| {
                    summary_resource(
                        &quota.guid,
                        &quota.created_at,
                        &quota.updated_at,
                        json!({
                            "name": quota.name,
                            "non_basic_services_allowed": quota.non_basic_services_allowed,
                            "total_services": quota.total_services,
                            "memory_limit": quota.memory_limit,
                            "trial_db_allowed": false,
                            "total_routes": quota.total_routes,
                            "instance_memory_limit": quota.instance_memory_limit,
                            "total_private_domains": quota.total_private_domains,
                            "app_instance_limit": quota.app_instance_limit,
                            "app_task_limit": quota.app_task_limit,
                        }),
                    )
                });
                let managers: Vec<Value> = roles
                    .iter()
                    .filter(|role| {
                        role.organization_id == org.id
                            && role.space_id.is_none()
                            && role.role_type == RoleType::OrganizationManager.as_str()
                    })
                    .filter_map(|role| users.get(&role.user_id))
                    .map(|manager| {
                        let manager_settings =
                            settings.get(&manager.id).cloned().unwrap_or_default();
                        summary_resource(
                            &manager.guid,
                            &manager.created_at,
                            &manager.updated_at,
                            json!({
                                "admin": manager_settings.admin,
                                "active": false,
                                "default_space_guid": manager_settings.default_space_guid,
                            }),
                        )
                    })
                    .collect();
                summary_resource(
                    &org.guid,
                    &org.created_at,
                    &org.updated_at,
                    json!({
                        "name": org.name,
                        "billing_enabled": org.billing_enabled,
                        "status": if org.suspended { "suspended" } else { "active" },
                        "spaces": spaces
                            .iter()
                            .filter(|space| space.organization_id == org.id)
                            .map(present_space)
                            .collect::<Vec<_>>(),
                        "quota_definition": quota,
                        "managers": managers,
                    }),
                )
            };
            let held = |role_type: RoleType| -> Vec<&RoleRow> {
                roles
                    .iter()
                    .filter(|role| {
                        role.user_id == subject.id && role.role_type == role_type.as_str()
                    })
                    .collect()
            };
            let mut entity = serde_json::Map::new();
            for (relation, role_type, _) in RELATIONS {
                let held = held(*role_type);
                let presented: Vec<Value> = if role_type.is_space_role() {
                    spaces
                        .iter()
                        .filter(|space| held.iter().any(|role| role.space_id == Some(space.id)))
                        .map(present_space)
                        .collect()
                } else {
                    orgs.iter()
                        .filter(|org| {
                            held.iter().any(|role| {
                                role.space_id.is_none() && role.organization_id == org.id
                            })
                        })
                        .map(present_org)
                        .collect()
                };
                entity.insert((*relation).to_owned(), Value::Array(presented));
            }
            Ok(summary_resource(
                &subject.guid,
                &subject.created_at,
                &subject.updated_at,
                Value::Object(entity),
            ))
        })
        .await?;
    Ok(HttpResponse::Ok().json(body))
}
