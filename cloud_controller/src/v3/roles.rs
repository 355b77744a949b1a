//! `/v3/roles`: all eight role types. Create by user GUID or by username (+origin) resolved
//! through UAA, creating the Cloud Controller user row as CC does; an org role is required before
//! a space role; list with `types`/`organization_guids`/`space_guids`/`user_guids` filters and
//! `include=user,space,organization`; get; delete as a job.

use std::collections::HashMap;

use actix_web::{web, HttpRequest, HttpResponse};
use serde_json::{json, Map, Value};

use crate::app::{resource, AppState};
use crate::auth::CurrentUser;
use crate::body;
use crate::db::models::{OrgRow, RoleRow, SpaceRow, UserRow};
use crate::db::DbConn;
use crate::error::ApiError;
use crate::permissions::{require_feature_flag, Permissions, RoleType};
use crate::query::{as_unprocessable, list_body, ListQuery};
use crate::store::{self, StoreError};
use crate::uaa_client::UaaUser;
use crate::v3::present;

/// Registers the role routes.
pub fn configure(config: &mut web::ServiceConfig) {
    config
        .service(
            resource("/v3/roles")
                .route(web::get().to(list))
                .route(web::post().to(create)),
        )
        .service(
            resource("/v3/roles/{guid}")
                .route(web::get().to(get))
                .route(web::delete().to(delete)),
        );
}

/// Everything needed to render roles and their included resources.
pub(crate) struct RoleContext {
    pub users: HashMap<i32, UserRow>,
    pub orgs: HashMap<i32, OrgRow>,
    pub spaces: HashMap<i32, SpaceRow>,
}

impl RoleContext {
    pub(crate) fn load(conn: &mut DbConn) -> Result<RoleContext, ApiError> {
        Ok(RoleContext {
            users: store::users::list(conn)?
                .into_iter()
                .map(|row| (row.id, row))
                .collect(),
            orgs: store::orgs::list(conn)?
                .into_iter()
                .map(|row| (row.id, row))
                .collect(),
            spaces: store::spaces::list(conn)?
                .into_iter()
                .map(|row| (row.id, row))
                .collect(),
        })
    }

    fn user_guid(&self, role: &RoleRow) -> &str {
        self.users
            .get(&role.user_id)
            .map_or("", |user| user.guid.as_str())
    }

    fn org_guid(&self, role: &RoleRow) -> Option<&str> {
        match role.space_id {
            Some(_) => None,
            None => self
                .orgs
                .get(&role.organization_id)
                .map(|org| org.guid.as_str()),
        }
    }

    fn space_guid(&self, role: &RoleRow) -> Option<&str> {
        role.space_id
            .and_then(|space_id| self.spaces.get(&space_id))
            .map(|space| space.guid.as_str())
    }

    fn render(&self, base: &str, role: &RoleRow) -> Value {
        present::role(
            base,
            role,
            self.user_guid(role),
            self.org_guid(role),
            self.space_guid(role),
        )
    }

    fn included(
        &self,
        conn: &mut DbConn,
        base: &str,
        query: &ListQuery,
        roles: &[&RoleRow],
    ) -> Result<Option<Value>, ApiError> {
        let mut included = Map::new();
        if query.includes("user") {
            let mut ids: Vec<i32> = roles.iter().map(|role| role.user_id).collect();
            ids.sort_unstable();
            ids.dedup();
            let users: Vec<Value> = ids
                .iter()
                .filter_map(|id| self.users.get(id))
                .map(|user| present::user(base, user))
                .collect();
            included.insert("users".into(), json!(users));
        }
        if query.includes("space") {
            let mut ids: Vec<i32> = roles.iter().filter_map(|role| role.space_id).collect();
            ids.sort_unstable();
            ids.dedup();
            let spaces: Vec<Value> = ids
                .iter()
                .filter_map(|id| self.spaces.get(id))
                .map(|space| {
                    let org_guid = self
                        .orgs
                        .get(&space.organization_id)
                        .map_or("", |org| org.guid.as_str());
                    present::space(base, space, org_guid)
                })
                .collect();
            included.insert("spaces".into(), json!(spaces));
        }
        if query.includes("organization") {
            let quotas = crate::v3::organizations::quota_guids(conn)?;
            let mut ids: Vec<i32> = roles
                .iter()
                .filter(|role| role.space_id.is_none())
                .map(|role| role.organization_id)
                .collect();
            ids.sort_unstable();
            ids.dedup();
            let orgs: Vec<Value> = ids
                .iter()
                .filter_map(|id| self.orgs.get(id))
                .map(|org| {
                    present::organization(
                        base,
                        org,
                        quotas
                            .get(&org.quota_definition_id)
                            .map_or("", String::as_str),
                    )
                })
                .collect();
            included.insert("organizations".into(), json!(orgs));
        }
        Ok(if included.is_empty() {
            None
        } else {
            Some(Value::Object(included))
        })
    }
}

const INCLUDES: &[&str] = &["user", "space", "organization"];

async fn list(
    state: web::Data<AppState>,
    user: CurrentUser,
    request: HttpRequest,
) -> Result<HttpResponse, ApiError> {
    let query = ListQuery::parse(
        &request,
        &[
            "guids",
            "types",
            "organization_guids",
            "space_guids",
            "user_guids",
            "include",
        ],
        &[],
    )
    .and_then(|query| query.check_include(INCLUDES).map(|()| query))
    // CC's RolesController answers bad list parameters with 422, and filters `types` without
    // checking the values (an unknown type matches nothing).
    .map_err(as_unprocessable)?;
    let base = state.external_url.clone();
    let body = state
        .db
        .run(move |conn| {
            let permissions = Permissions::load(conn, &user)?;
            let context = RoleContext::load(conn)?;
            let mut roles: Vec<RoleRow> = store::roles::list(conn)?
                .into_iter()
                .filter(|role| permissions.can_read_role(role))
                .filter(|role| {
                    query.matches("guids", &role.guid)
                        && query.matches("types", &role.role_type)
                        && query.matches("user_guids", context.user_guid(role))
                        && query.matches_opt("organization_guids", context.org_guid(role))
                        && query.matches_opt("space_guids", context.space_guid(role))
                })
                .collect();
            query.sort(
                &mut roles,
                |role| &role.role_type,
                |role| &role.created_at,
                |role| &role.updated_at,
            );
            let (page, pagination) = query.page_of(roles, &base, "/v3/roles");
            let resources = page
                .iter()
                .map(|role| context.render(&base, role))
                .collect();
            let included =
                context.included(conn, &base, &query, &page.iter().collect::<Vec<_>>())?;
            Ok(list_body(pagination, resources, included))
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
    let query = ListQuery::parse(&request, &["include"], &[])
        .and_then(|query| query.check_include(INCLUDES).map(|()| query))
        .map_err(as_unprocessable)?;
    let guid = path.into_inner();
    let base = state.external_url.clone();
    let body = state
        .db
        .run(move |conn| {
            let permissions = Permissions::load(conn, &user)?;
            let role = store::roles::find(conn, &guid)?
                .filter(|role| permissions.can_read_role(role))
                .ok_or_else(|| ApiError::not_found("Role"))?;
            let context = RoleContext::load(conn)?;
            let mut body = context.render(&base, &role);
            if let Some(included) = context.included(conn, &base, &query, &[&role])? {
                body["included"] = included;
            }
            Ok(body)
        })
        .await?;
    Ok(HttpResponse::Ok().json(body))
}

/// How the request names the user.
#[derive(Debug, Clone)]
pub(crate) enum UserReference {
    Guid(String),
    Username {
        username: String,
        origin: Option<String>,
    },
}

/// Where the role goes.
#[derive(Debug, Clone)]
pub(crate) enum RoleTarget {
    Organization(String),
    Space(String),
}

/// A validated role-creation request.
#[derive(Debug, Clone)]
pub(crate) struct NewRoleRequest {
    pub role_type: RoleType,
    pub user: UserReference,
    pub target: RoleTarget,
}

/// CC's RoleCreateMessage, with its messages (the nested relationship errors come out as
/// "Relationships …").
fn parse_create(payload: &Value) -> Result<NewRoleRequest, ApiError> {
    let object = body::object(payload, &["type", "relationships"])?;
    let role_type = object
        .get("type")
        .and_then(Value::as_str)
        .and_then(RoleType::parse)
        .ok_or_else(|| {
            // CC lists ORGANIZATION_ROLES then SPACE_ROLES, as a Ruby array.
            let allowed = [
                "organization_auditor",
                "organization_manager",
                "organization_billing_manager",
                "organization_user",
                "space_auditor",
                "space_manager",
                "space_developer",
                "space_supporter",
            ]
            .map(|name| format!("\"{name}\""))
            .join(", ");
            ApiError::unprocessable(format!("Type must be one of the allowed types [{allowed}]"))
        })?;
    let relationships = match object.get("relationships") {
        Some(Value::Object(relationships)) if relationships.is_empty() => {
            return Err(ApiError::unprocessable(
                "Relationships 'relationships' must include one or more valid relationships",
            ))
        }
        Some(Value::Object(relationships)) => relationships,
        _ => {
            return Err(ApiError::unprocessable(
                "Relationships 'relationships' is not an object",
            ))
        }
    };
    let invalid = |message: String| ApiError::unprocessable(format!("Relationships {message}"));
    let unknown: Vec<&str> = relationships
        .keys()
        .map(String::as_str)
        .filter(|key| !["user", "organization", "space"].contains(key))
        .collect();
    if !unknown.is_empty() {
        return Err(invalid(format!(
            "Unknown field(s): '{}'",
            unknown.join("', '")
        )));
    }
    let data = |relation: &str| {
        relationships
            .get(relation)
            .and_then(|related| related.get("data"))
    };
    let user_data = data("user").and_then(Value::as_object);
    let has = |key: &str| user_data.is_some_and(|user| user.contains_key(key));
    let text = |key: &str, label: &str| -> Result<Option<String>, ApiError> {
        match user_data.and_then(|user| user.get(key)) {
            None | Some(Value::Null) => Ok(None),
            Some(Value::String(value)) => Ok(Some(value.clone())),
            Some(_) => Err(invalid(format!("{label} must be a string"))),
        }
    };
    let user = if has("guid") && has("username") {
        return Err(invalid(
            "Username cannot be specified when identifying user by guid".into(),
        ));
    } else if has("guid") && has("origin") {
        return Err(invalid(
            "User origin cannot be specified when identifying user by guid".into(),
        ));
    } else if has("origin") && !has("username") {
        return Err(invalid(
            "User origin cannot be specified without specifying the username".into(),
        ));
    } else if has("guid") {
        let guid = text("guid", "User")?.unwrap_or_default();
        if guid.is_empty() || guid.chars().count() > 200 || !store::can_match(&guid) {
            return Err(invalid("User must be between 1 and 200 characters".into()));
        }
        UserReference::Guid(guid)
    } else if has("username") {
        let username = text("username", "Username")?.unwrap_or_default();
        if username.is_empty() {
            return Err(invalid(
                "User must have a username or guid specified".into(),
            ));
        }
        UserReference::Username {
            username,
            origin: text("origin", "User origin")?.filter(|origin| !origin.is_empty()),
        }
    } else {
        return Err(invalid(
            "User must have a username or guid specified".into(),
        ));
    };
    let (organization, space) = (data("organization"), data("space"));
    let guid_of = |relation: &str, related: &Value| -> Result<String, ApiError> {
        related
            .get("guid")
            .and_then(Value::as_str)
            .filter(|guid| !guid.is_empty())
            .map(str::to_owned)
            .ok_or_else(|| {
                invalid(format!(
                    "{} must be structured like this: \"{relation}: {{\"data\": {{\"guid\": \"valid-guid\"}}}}\"",
                    body::label(relation)
                ))
            })
    };
    let target = match (organization, space) {
        (None, None) => {
            return Err(invalid(
                "must specify either a space or an organization.".into(),
            ))
        }
        (Some(_), Some(_)) => {
            return Err(invalid(
                "cannot specify both an organization and a space.".into(),
            ))
        }
        (None, Some(_)) if !role_type.is_space_role() => {
            return Err(invalid(format!(
                "Space cannot be provided with the organization role type: '{}'.",
                role_type.as_str()
            )))
        }
        (Some(_), None) if role_type.is_space_role() => {
            return Err(invalid(format!(
                "Organization cannot be provided with the space role type: '{}'.",
                role_type.as_str()
            )))
        }
        (Some(organization), None) => {
            RoleTarget::Organization(guid_of("organization", organization)?)
        }
        (None, Some(space)) => RoleTarget::Space(guid_of("space", space)?),
    };
    Ok(NewRoleRequest {
        role_type,
        user,
        target,
    })
}

const SPACE_USER_NOT_IN_ORG: &str = "Users cannot be assigned roles in a space if they do not have a role in that space's organization.";

/// The outcome of checking a role request before talking to UAA.
struct Checked {
    organization: OrgRow,
    space: Option<SpaceRow>,
    /// Whether the named-by-GUID user already has a row.
    user_exists: bool,
}

fn check_target(
    conn: &mut DbConn,
    caller: &CurrentUser,
    request: &NewRoleRequest,
) -> Result<Checked, ApiError> {
    let permissions = Permissions::load(conn, caller)?;
    let (organization, space) = match &request.target {
        // As in CC's RolesController: a target that does not exist is 422, one that exists but
        // the caller may not manage is 403 (whether or not they can see it), then a suspended
        // org is 403 CF-OrgSuspended.
        RoleTarget::Organization(guid) => {
            let org = store::orgs::find(conn, guid)?.ok_or_else(|| {
                ApiError::unprocessable("Invalid organization. Ensure that the organization exists and you have access to it.")
            })?;
            if !permissions.can_write_org(org.id) {
                return Err(ApiError::forbidden());
            }
            permissions.require_active_org(&org)?;
            (org, None)
        }
        RoleTarget::Space(guid) => {
            let invalid_space = || {
                ApiError::unprocessable(
                    "Invalid space. Ensure that the space exists and you have access to it.",
                )
            };
            let space = store::spaces::find(conn, guid)?.ok_or_else(invalid_space)?;
            if !permissions.can_manage_space(space.id, space.organization_id) {
                return Err(ApiError::forbidden());
            }
            let org =
                store::orgs::find_by_id(conn, space.organization_id)?.ok_or_else(invalid_space)?;
            permissions.require_active_org(&org)?;
            (org, Some(space))
        }
    };
    let user_exists = match &request.user {
        UserReference::Guid(guid) => store::users::find(conn, guid)?.is_some(),
        UserReference::Username { .. } => {
            require_feature_flag(conn, "set_roles_by_username", caller)?;
            false
        }
    };
    Ok(Checked {
        organization,
        space,
        user_exists,
    })
}

/// Resolves a username through UAA as CC does (ambiguous origins and unknown users are 422).
async fn resolve_username(
    state: &AppState,
    username: &str,
    origin: Option<&str>,
    for_space: bool,
) -> Result<UaaUser, ApiError> {
    let mut found = state.uaa.users_by_username(username, origin).await?;
    if origin.is_none() && found.len() > 1 {
        let mut origins: Vec<String> = found.iter().map(|user| user.origin.clone()).collect();
        origins.sort();
        return Err(ApiError::unprocessable(format!(
            "Ambiguous user. User with username '{username}' exists in the following origins: {}. Specify an origin to disambiguate.",
            origins.join(", ")
        )));
    }
    match found.pop() {
        Some(user) => Ok(user),
        None if for_space => Err(ApiError::unprocessable(SPACE_USER_NOT_IN_ORG)),
        None => match origin {
            Some(origin) => Err(ApiError::unprocessable(format!(
                "No user exists with the username '{username}' and origin '{origin}'."
            ))),
            None => Err(ApiError::unprocessable(format!(
                "No user exists with the username '{username}'."
            ))),
        },
    }
}

/// Creates a role for `caller`; shared by v3 `POST /v3/roles` and the v2 role associations.
/// `already_exists` turns a duplicate into the caller's error (v3: 422 "User 'x' already has …").
pub(crate) async fn create_role(
    state: &AppState,
    caller: &CurrentUser,
    request: NewRoleRequest,
    idempotent: bool,
) -> Result<(RoleRow, RoleContext), ApiError> {
    let checked = {
        let caller = caller.clone();
        let request = request.clone();
        state
            .db
            .run(move |conn| check_target(conn, &caller, &request))
            .await?
    };
    let for_space = checked.space.is_some();
    let uaa_user = match &request.user {
        UserReference::Username { username, origin } => {
            Some(resolve_username(state, username, origin.as_deref(), for_space).await?)
        }
        UserReference::Guid(guid) if !checked.user_exists => state.uaa.user_by_id(guid).await.unwrap_or_else(|error| {
            tracing::warn!(user_guid = %guid, error = %error, "could not look the role's user up in UAA");
            None
        }),
        UserReference::Guid(_) => None,
    };
    let caller = caller.clone();
    state
        .db
        .run(move |conn| {
            let Checked {
                organization,
                space,
                ..
            } = checked;
            let permissions = Permissions::load(conn, &caller)?;
            let user = match (&request.user, &uaa_user) {
                (UserReference::Username { .. }, Some(found)) => store::users::ensure(
                    conn,
                    &found.id,
                    Some(&found.username),
                    Some(&found.origin),
                    false,
                )?,
                (UserReference::Guid(guid), found) => {
                    let existing = store::users::find(conn, guid)?;
                    match (existing, space.is_some()) {
                        (Some(existing), false) => existing,
                        (Some(existing), true) => {
                            let roles = store::roles::list(conn)?;
                            if !permissions.can_read_user(&existing, &roles) {
                                return Err(ApiError::unprocessable(SPACE_USER_NOT_IN_ORG));
                            }
                            existing
                        }
                        (None, true) => return Err(ApiError::unprocessable(SPACE_USER_NOT_IN_ORG)),
                        (None, false) => store::users::ensure(
                            conn,
                            guid,
                            found.as_ref().map(|found| found.username.as_str()),
                            found.as_ref().map(|found| found.origin.as_str()),
                            found.is_none(),
                        )?,
                    }
                }
                (UserReference::Username { .. }, None) => {
                    return Err(ApiError::internal("username resolved to nothing"))
                }
            };
            if let Some(space) = &space {
                let has_org_role = store::roles::list_for_user(conn, user.id)?
                    .iter()
                    .any(|role| {
                        role.space_id.is_none() && role.organization_id == space.organization_id
                    });
                if !has_org_role {
                    return Err(ApiError::unprocessable(SPACE_USER_NOT_IN_ORG));
                }
            }
            let space_id = space.as_ref().map(|space| space.id);
            let role = match store::roles::create(
                conn,
                request.role_type.as_str(),
                user.id,
                organization.id,
                space_id,
            ) {
                Ok(role) => role,
                Err(StoreError::Conflict) if idempotent => store::roles::find_exact(
                    conn,
                    request.role_type.as_str(),
                    user.id,
                    organization.id,
                    space_id,
                )?
                .ok_or_else(|| ApiError::internal("conflicting role vanished"))?,
                Err(StoreError::Conflict) => {
                    let name = user.username.clone().unwrap_or_else(|| user.guid.clone());
                    let (kind, target) = match &space {
                        Some(space) => ("space", space.name.clone()),
                        None => ("organization", organization.name.clone()),
                    };
                    return Err(ApiError::unprocessable(format!(
                        "User '{name}' already has '{}' role in {kind} '{target}'.",
                        request.role_type.as_str()
                    )));
                }
                Err(StoreError::Api(error)) => return Err(error),
            };
            let context = RoleContext::load(conn)?;
            Ok((role, context))
        })
        .await
}

async fn create(
    state: web::Data<AppState>,
    user: CurrentUser,
    payload: web::Json<Value>,
) -> Result<HttpResponse, ApiError> {
    let request = parse_create(&payload)?;
    let (role, context) = create_role(&state, &user, request, false).await?;
    Ok(HttpResponse::Created().json(context.render(&state.external_url, &role)))
}

/// Checks CC's delete rules for a role and deletes it; returns the job GUID (v3) — v2 callers
/// ignore it.
pub(crate) fn delete_role(
    conn: &mut DbConn,
    permissions: &Permissions,
    role: &RoleRow,
) -> Result<String, ApiError> {
    match role.space_id {
        Some(space_id) => {
            if !permissions.can_manage_space(space_id, role.organization_id) {
                return Err(ApiError::forbidden());
            }
        }
        None => {
            if !permissions.can_write_org(role.organization_id) {
                return Err(ApiError::forbidden());
            }
            if role.role_type == RoleType::OrganizationUser.as_str() {
                let holds_space_roles = store::roles::list_for_user(conn, role.user_id)?
                    .iter()
                    .any(|other| {
                        other.space_id.is_some() && other.organization_id == role.organization_id
                    });
                if holds_space_roles {
                    return Err(ApiError::unprocessable(
                        "Cannot delete organization_user role while user has roles in spaces in that organization.",
                    ));
                }
            }
        }
    }
    if let Some(org) = store::orgs::find_by_id(conn, role.organization_id)? {
        permissions.require_active_org(&org)?;
    }
    let role_id = role.id;
    store::jobs::run_now(conn, "role.delete", "role", &role.guid, |conn| {
        store::roles::delete(conn, role_id)
    })
}

async fn delete(
    state: web::Data<AppState>,
    user: CurrentUser,
    path: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let guid = path.into_inner();
    let job_guid = state
        .db
        .run(move |conn| {
            let permissions = Permissions::load(conn, &user)?;
            let role = store::roles::find(conn, &guid)?
                .filter(|role| permissions.can_read_role(role))
                .ok_or_else(|| ApiError::not_found("Role"))?;
            delete_role(conn, &permissions, &role)
        })
        .await?;
    Ok(crate::v3::accepted_job(&state.external_url, &job_guid))
}
