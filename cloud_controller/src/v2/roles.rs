//! v2 role associations, as views over the one `roles` table that `/v3/roles` also serves:
//! `/v2/organizations/:g/{users,managers,billing_managers,auditors}` and
//! `/v2/spaces/:g/{developers,managers,auditors}` — list (users with `username` when known), add
//! and remove by user GUID (`PUT|DELETE …/:user_guid`), and by username through UAA
//! (`PUT …` with `{"username"[,"origin"]}`, `DELETE …` with that body, or `POST …/remove`);
//! and `…/user_roles`, every user with a role there and the CC names of those roles.
//!
//! CC's v2 rules kept here: adds are idempotent (201 with the parent resource), a space role needs
//! the user to be an org *user* first (400 `CF-InvalidRelation`), removing an org user who still
//! holds space roles needs `recursive=true`, non-admins cannot remove the last manager, billing
//! manager or user of an org, anyone may drop their own role, and a space's remove-by-username
//! answers 200 with the space where every other removal answers 204.

use actix_web::{web, HttpRequest, HttpResponse};
use serde_json::Value;

use crate::app::{resource, AppState};
use crate::auth::CurrentUser;
use crate::db::models::{OrgRow, SpaceRow, UserRow};
use crate::db::DbConn;
use crate::error::{ApiError, ErrorKind};
use crate::permissions::{require_feature_flag, Permissions, RoleType};
use crate::query::query_pairs;
use crate::store::{self, StoreError};
use crate::uaa_client::UaaUser;
use crate::v2::V2Query;

const ORG_RELATIONS: &str = "users|managers|billing_managers|auditors";
const SPACE_RELATIONS: &str = "developers|managers|auditors";

/// Registers the org and space role association routes. The `/remove` resources come first so
/// that `remove` is never taken for a user GUID.
pub fn configure(config: &mut web::ServiceConfig) {
    for (scope, relations) in [
        (Scope::Organization, ORG_RELATIONS),
        (Scope::Space, SPACE_RELATIONS),
    ] {
        let collection = scope.collection();
        config
            .service(
                resource(&format!("/v2/{collection}/{{guid}}/user_roles"))
                    .app_data(web::Data::new(scope))
                    .route(web::get().to(list_user_roles)),
            )
            .service(
                resource(&format!(
                    "/v2/{collection}/{{guid}}/{{relation:{relations}}}/remove"
                ))
                .app_data(web::Data::new(scope))
                .route(web::post().to(remove_by_username)),
            )
            .service(
                resource(&format!(
                    "/v2/{collection}/{{guid}}/{{relation:{relations}}}"
                ))
                .app_data(web::Data::new(scope))
                .route(web::get().to(list))
                .route(web::put().to(add_by_username))
                .route(web::delete().to(remove_by_username)),
            )
            .service(
                resource(&format!(
                    "/v2/{collection}/{{guid}}/{{relation:{relations}}}/{{user_guid}}"
                ))
                .app_data(web::Data::new(scope))
                .route(web::put().to(add_by_guid))
                .route(web::delete().to(remove_by_guid)),
            );
    }
}

/// Whether an association hangs off an organization or a space.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Scope {
    Organization,
    Space,
}

impl Scope {
    fn collection(self) -> &'static str {
        match self {
            Scope::Organization => "organizations",
            Scope::Space => "spaces",
        }
    }

    /// The role type behind a v2 relation name of this scope.
    pub(crate) fn role_type(self, relation: &str) -> Option<RoleType> {
        match (self, relation) {
            (Scope::Organization, "users") => Some(RoleType::OrganizationUser),
            (Scope::Organization, "managers") => Some(RoleType::OrganizationManager),
            (Scope::Organization, "billing_managers") => Some(RoleType::OrganizationBillingManager),
            (Scope::Organization, "auditors") => Some(RoleType::OrganizationAuditor),
            (Scope::Space, "developers") => Some(RoleType::SpaceDeveloper),
            (Scope::Space, "managers") => Some(RoleType::SpaceManager),
            (Scope::Space, "auditors") => Some(RoleType::SpaceAuditor),
            _ => None,
        }
    }
}

/// The organization or space an association is made on.
pub(crate) enum Target {
    Organization(OrgRow),
    Space(SpaceRow, OrgRow),
}

impl Target {
    fn org(&self) -> &OrgRow {
        match self {
            Target::Organization(org) | Target::Space(_, org) => org,
        }
    }

    fn space_id(&self) -> Option<i32> {
        match self {
            Target::Organization(_) => None,
            Target::Space(space, _) => Some(space.id),
        }
    }

    /// The v2 resource of the organization or space.
    pub(crate) fn render(&self, conn: &mut DbConn) -> Result<Value, ApiError> {
        match self {
            Target::Organization(org) => super::organizations::render(conn, org),
            Target::Space(space, org) => Ok(super::spaces::render(space, &org.guid)),
        }
    }
}

/// The target, if it exists and the caller may see it; otherwise the v2 "not found" of its kind.
pub(crate) fn load_target(
    conn: &mut DbConn,
    permissions: &Permissions,
    scope: Scope,
    guid: &str,
) -> Result<Target, ApiError> {
    match scope {
        Scope::Organization => store::orgs::find(conn, guid)?
            .filter(|org| permissions.can_read_org(org.id))
            .map(Target::Organization)
            .ok_or_else(|| ApiError::with_args(ErrorKind::OrganizationNotFound, &[guid])),
        Scope::Space => {
            let not_found = || ApiError::with_args(ErrorKind::SpaceNotFound, &[guid]);
            let space = store::spaces::find(conn, guid)?
                .filter(|space| permissions.can_read_space(space.id, space.organization_id))
                .ok_or_else(not_found)?;
            let org =
                store::orgs::find_by_id(conn, space.organization_id)?.ok_or_else(not_found)?;
            Ok(Target::Space(space, org))
        }
    }
}

/// CC's `update` access on the target: admin or org manager of an active org; for a space also
/// its space manager.
pub(crate) fn require_update(permissions: &Permissions, target: &Target) -> Result<(), ApiError> {
    let allowed = match target {
        Target::Organization(org) => {
            permissions.can_write_globally()
                || (permissions.can_write_org(org.id) && !org.suspended)
        }
        Target::Space(space, org) => {
            permissions.can_write_globally()
                || (permissions.can_manage_space(space.id, org.id) && !org.suspended)
        }
    };
    if allowed {
        Ok(())
    } else {
        Err(ApiError::forbidden())
    }
}

/// Gives `user` the role on `target`; holding it already is fine (CC's `find_or_create`).
pub(crate) fn grant(
    conn: &mut DbConn,
    target: &Target,
    role_type: RoleType,
    user: &UserRow,
) -> Result<(), ApiError> {
    let org = target.org();
    if target.space_id().is_some()
        && store::roles::find_exact(
            conn,
            RoleType::OrganizationUser.as_str(),
            user.id,
            org.id,
            None,
        )?
        .is_none()
    {
        // CC's Space#validate_developer (and friends) raise InvalidRelation with the user GUID.
        return Err(ApiError::with_args(
            ErrorKind::InvalidRelation,
            &[&user.guid],
        ));
    }
    match store::roles::create(conn, role_type.as_str(), user.id, org.id, target.space_id()) {
        Ok(_) | Err(StoreError::Conflict) => Ok(()),
        Err(StoreError::Api(error)) => Err(error),
    }
}

/// Takes the role away (a role the user does not hold is a no-op). Removing an org user who
/// still holds space roles in the org fails unless `recursive`, which removes those too.
pub(crate) fn revoke(
    conn: &mut DbConn,
    target: &Target,
    role_type: RoleType,
    user: &UserRow,
    recursive: bool,
) -> Result<(), ApiError> {
    let org_id = target.org().id;
    let Some(role) =
        store::roles::find_exact(conn, role_type.as_str(), user.id, org_id, target.space_id())?
    else {
        return Ok(());
    };
    let space_roles: Vec<i32> = if role_type == RoleType::OrganizationUser {
        store::roles::list_for_user(conn, user.id)?
            .into_iter()
            .filter(|other| other.space_id.is_some() && other.organization_id == org_id)
            .map(|other| other.id)
            .collect()
    } else {
        Vec::new()
    };
    if !space_roles.is_empty() && !recursive {
        return Err(ApiError::with_args(
            ErrorKind::AssociationNotEmpty,
            &["user", "spaces in the org"],
        ));
    }
    store::roles::delete_many(
        conn,
        &space_roles
            .into_iter()
            .chain(std::iter::once(role.id))
            .collect::<Vec<_>>(),
    )
}

/// CC's `can_remove_related_object` for org roles: admins always; otherwise org managers of an
/// active org, or users dropping their own role, and never the last manager, billing manager or
/// user of the org.
fn require_org_removal(
    conn: &mut DbConn,
    permissions: &Permissions,
    caller: &CurrentUser,
    org: &OrgRow,
    role_type: RoleType,
    user: &UserRow,
) -> Result<(), ApiError> {
    if permissions.can_write_globally() {
        return Ok(());
    }
    let acting_on_themselves = user.id == caller.user_id;
    if org.suspended || !(permissions.can_write_org(org.id) || acting_on_themselves) {
        return Err(ApiError::forbidden());
    }
    let holders = |roles: &[crate::db::models::RoleRow], role_type: RoleType| -> Vec<i32> {
        roles
            .iter()
            .filter(|role| role.space_id.is_none() && role.role_type == role_type.as_str())
            .map(|role| role.user_id)
            .collect()
    };
    let roles = store::roles::list_in_org(conn, org.id)?;
    let managers = holders(&roles, RoleType::OrganizationManager);
    let billing_managers = holders(&roles, RoleType::OrganizationBillingManager);
    let users = holders(&roles, RoleType::OrganizationUser);
    let only = |holders: &[i32]| holders.len() == 1 && holders[0] == user.id;
    let refusal = match role_type {
        RoleType::OrganizationManager if managers.len() <= 1 => Some(ErrorKind::LastManagerInOrg),
        RoleType::OrganizationBillingManager if billing_managers.len() <= 1 => {
            Some(ErrorKind::LastBillingManagerInOrg)
        }
        RoleType::OrganizationUser if only(&managers) => Some(ErrorKind::LastManagerInOrg),
        RoleType::OrganizationUser if only(&billing_managers) => {
            Some(ErrorKind::LastBillingManagerInOrg)
        }
        RoleType::OrganizationUser
            if only(&users) && managers.len() <= 1 && billing_managers.len() <= 1 =>
        {
            Some(ErrorKind::LastUserInOrg)
        }
        _ => None,
    };
    match refusal {
        Some(kind) => Err(ApiError::plain(kind)),
        None => Ok(()),
    }
}

/// Removes a role named by user GUID, with CC's access rules for each scope (shared with
/// `DELETE /v2/users/:g/<relation>/:target`).
pub(crate) fn remove_by_user_guid(
    conn: &mut DbConn,
    caller: &CurrentUser,
    scope: Scope,
    target_guid: &str,
    role_type: RoleType,
    user_guid: &str,
    recursive: bool,
) -> Result<(), ApiError> {
    let permissions = Permissions::load(conn, caller)?;
    let target = load_target(conn, &permissions, scope, target_guid)?;
    let user = store::users::find(conn, user_guid)?;
    let Some(user) = user else {
        let detail = match scope {
            Scope::Organization => {
                format!("Could not find VCAP::CloudController::User with guid: {user_guid}")
            }
            Scope::Space => format!("User with guid {user_guid} not found"),
        };
        return Err(ApiError::with_args(ErrorKind::InvalidRelation, &[&detail]));
    };
    match &target {
        Target::Organization(org) => {
            require_org_removal(conn, &permissions, caller, org, role_type, &user)?
        }
        Target::Space(..) if user.id == caller.user_id => {}
        Target::Space(..) => require_update(&permissions, &target)?,
    }
    revoke(conn, &target, role_type, &user, recursive)
}

/// Adds a role named by user GUID, creating the user row as CC does (shared with
/// `PUT /v2/users/:g/<relation>/:target`). `uaa_user` fills in the name of a new row.
pub(crate) fn add_by_user_guid(
    conn: &mut DbConn,
    caller: &CurrentUser,
    scope: Scope,
    target_guid: &str,
    role_type: RoleType,
    user_guid: &str,
    uaa_user: Option<&UaaUser>,
) -> Result<(Target, UserRow), ApiError> {
    let permissions = Permissions::load(conn, caller)?;
    let target = load_target(conn, &permissions, scope, target_guid)?;
    require_update(&permissions, &target)?;
    // CC creates the user row for an unknown GUID; one with control characters could not be
    // stored (PostgreSQL refuses NUL), so it is an unknown relation instead.
    if user_guid.chars().any(char::is_control) {
        return Err(ApiError::with_args(
            ErrorKind::InvalidRelation,
            &[&format!(
                "Could not find VCAP::CloudController::User with guid: {}",
                user_guid.escape_debug()
            )],
        ));
    }
    let user = store::users::ensure(
        conn,
        user_guid,
        uaa_user.map(|found| found.username.as_str()),
        uaa_user.map(|found| found.origin.as_str()),
        uaa_user.is_none(),
    )?;
    grant(conn, &target, role_type, &user)?;
    Ok((target, user))
}

/// The UAA user behind a GUID CC has no row for yet (lookup failures only lose the name).
pub(crate) async fn lookup_new_user(state: &AppState, user_guid: &str) -> Option<UaaUser> {
    let known = {
        let user_guid = user_guid.to_owned();
        state
            .db
            .run(move |conn| Ok(store::users::find(conn, &user_guid)?.is_some()))
            .await
            .unwrap_or(false)
    };
    if known {
        return None;
    }
    state.uaa.user_by_id(user_guid).await.unwrap_or_else(|error| {
        tracing::warn!(user_guid = %user_guid, %error, "could not look the role's user up in UAA");
        None
    })
}

/// Resolves `{"username"[,"origin"]}` through UAA as CC's v2 controllers do: an origin the user
/// does not have is `CF-UserWithOriginNotFound`, several origins without one is
/// `CF-UserIsInMultipleOrigins`, nobody is `CF-UserNotFound`.
async fn resolve_username(
    state: &AppState,
    username: &str,
    origin: Option<&str>,
) -> Result<UaaUser, ApiError> {
    let found = state.uaa.users_by_username(username, None).await?;
    let mut origins: Vec<&str> = found.iter().map(|user| user.origin.as_str()).collect();
    origins.sort_unstable();
    origins.dedup();
    match origin {
        Some(origin) if !origins.contains(&origin) => {
            return Err(ApiError::with_args(
                ErrorKind::UserWithOriginNotFound,
                &[&format!("username: '{username}', origin: '{origin}'")],
            ))
        }
        None if origins.len() > 1 => {
            let listed: Vec<String> = origins.iter().map(|origin| format!("'{origin}'")).collect();
            return Err(ApiError::with_args(
                ErrorKind::UserIsInMultipleOrigins,
                &[&listed.join(", ")],
            ));
        }
        _ => {}
    }
    found
        .into_iter()
        .find(|user| origin.is_none_or(|origin| user.origin == origin))
        .ok_or_else(|| ApiError::with_args(ErrorKind::UserNotFound, &[username]))
}

/// `username` and `origin` of a by-username body (a missing username finds nobody, as in CC).
fn parse_username(payload: &Value) -> Result<(String, Option<String>), ApiError> {
    let object = payload
        .as_object()
        .ok_or_else(|| ApiError::parse("the request body must be a JSON object"))?;
    let text = |key: &str| match object.get(key) {
        Some(Value::String(value)) if !value.is_empty() => Ok(Some(value.clone())),
        None | Some(Value::Null) | Some(Value::String(_)) => Ok(None),
        Some(_) => Err(ApiError::parse(format!("{key} must be a string"))),
    };
    let username =
        text("username")?.ok_or_else(|| ApiError::with_args(ErrorKind::UserNotFound, &[""]))?;
    Ok((username, text("origin")?))
}

fn flag(request: &HttpRequest, name: &str) -> Result<bool, ApiError> {
    Ok(query_pairs(request)?
        .iter()
        .any(|(key, value)| key == name && value == "true"))
}

fn role_of(scope: Scope, relation: &str) -> Result<RoleType, ApiError> {
    scope
        .role_type(relation)
        .ok_or_else(|| ApiError::plain(ErrorKind::NotFound))
}

async fn list(
    state: web::Data<AppState>,
    scope: web::Data<Scope>,
    user: CurrentUser,
    path: web::Path<(String, String)>,
    request: HttpRequest,
) -> Result<HttpResponse, ApiError> {
    let scope = **scope;
    let (guid, relation) = path.into_inner();
    let role_type = role_of(scope, &relation)?;
    let query = V2Query::parse(&request, super::users::QUERY_PARAMETERS, &["id"])?;
    let body = state
        .db
        .run(move |conn| {
            let permissions = Permissions::load(conn, &user)?;
            let target = load_target(conn, &permissions, scope, &guid)?;
            let holder_ids: Vec<i32> = store::roles::list_in_org(conn, target.org().id)?
                .into_iter()
                .filter(|role| {
                    role.role_type == role_type.as_str() && role.space_id == target.space_id()
                })
                .map(|role| role.user_id)
                .collect();
            let memberships = super::users::Memberships::load(conn)?;
            let settings = store::users::all_settings(conn)?;
            let users: Vec<UserRow> = store::users::list(conn)?
                .into_iter()
                .filter(|row| holder_ids.contains(&row.id) && memberships.accepted_by(row, &query))
                .collect();
            let path = format!("/v2/{}/{guid}/{relation}", scope.collection());
            Ok(query.envelope(
                users,
                &path,
                |row| &row.guid,
                |row| super::users::render_with(&settings, row),
            ))
        })
        .await?;
    Ok(HttpResponse::Ok().json(body))
}

/// CC's names for the roles a user holds on the target, in CC's order.
fn role_names(scope: Scope, held: &[&str]) -> Vec<&'static str> {
    let names: &[(RoleType, &str)] = match scope {
        Scope::Organization => &[
            (RoleType::OrganizationUser, "org_user"),
            (RoleType::OrganizationManager, "org_manager"),
            (RoleType::OrganizationAuditor, "org_auditor"),
            (RoleType::OrganizationBillingManager, "billing_manager"),
        ],
        Scope::Space => &[
            (RoleType::SpaceDeveloper, "space_developer"),
            (RoleType::SpaceManager, "space_manager"),
            (RoleType::SpaceAuditor, "space_auditor"),
        ],
    };
    names
        .iter()
        .filter(|(role_type, _)| held.contains(&role_type.as_str()))
        .map(|(_, name)| *name)
        .collect()
}

/// `GET /v2/organizations/:g/user_roles` and `GET /v2/spaces/:g/user_roles`: every user with a
/// role there, each with `organization_roles` or `space_roles` (`q=user_guid:` narrows to one).
async fn list_user_roles(
    state: web::Data<AppState>,
    scope: web::Data<Scope>,
    user: CurrentUser,
    path: web::Path<String>,
    request: HttpRequest,
) -> Result<HttpResponse, ApiError> {
    let scope = **scope;
    let guid = path.into_inner();
    let query = V2Query::parse(&request, &["user_guid"], &["id"])?;
    let body = state
        .db
        .run(move |conn| {
            let permissions = Permissions::load(conn, &user)?;
            let target = load_target(conn, &permissions, scope, &guid)?;
            let roles: Vec<_> = store::roles::list_in_org(conn, target.org().id)?
                .into_iter()
                .filter(|role| role.space_id == target.space_id())
                .collect();
            let settings = store::users::all_settings(conn)?;
            let users: Vec<(UserRow, Vec<&'static str>)> = store::users::list(conn)?
                .into_iter()
                .filter(|row| query.accepts("user_guid", &row.guid))
                .filter_map(|row| {
                    let held: Vec<&str> = roles
                        .iter()
                        .filter(|role| role.user_id == row.id)
                        .map(|role| role.role_type.as_str())
                        .collect();
                    let names = role_names(scope, &held);
                    (!names.is_empty()).then_some((row, names))
                })
                .collect();
            let key = match scope {
                Scope::Organization => "organization_roles",
                Scope::Space => "space_roles",
            };
            let path = format!("/v2/{}/{guid}/user_roles", scope.collection());
            Ok(query.envelope(
                users,
                &path,
                |(row, _)| &row.guid,
                |(row, names)| {
                    let mut rendered = super::users::render_with(&settings, row);
                    rendered["entity"][key] = serde_json::json!(names);
                    rendered
                },
            ))
        })
        .await?;
    Ok(HttpResponse::Ok().json(body))
}

async fn add_by_guid(
    state: web::Data<AppState>,
    scope: web::Data<Scope>,
    user: CurrentUser,
    path: web::Path<(String, String, String)>,
) -> Result<HttpResponse, ApiError> {
    let scope = **scope;
    let (guid, relation, user_guid) = path.into_inner();
    let role_type = role_of(scope, &relation)?;
    let uaa_user = lookup_new_user(&state, &user_guid).await;
    let body = state
        .db
        .run(move |conn| {
            let (target, _) = add_by_user_guid(
                conn,
                &user,
                scope,
                &guid,
                role_type,
                &user_guid,
                uaa_user.as_ref(),
            )?;
            target.render(conn)
        })
        .await?;
    Ok(HttpResponse::Created().json(body))
}

async fn remove_by_guid(
    state: web::Data<AppState>,
    scope: web::Data<Scope>,
    user: CurrentUser,
    path: web::Path<(String, String, String)>,
    request: HttpRequest,
) -> Result<HttpResponse, ApiError> {
    let scope = **scope;
    let (guid, relation, user_guid) = path.into_inner();
    let role_type = role_of(scope, &relation)?;
    let recursive = flag(&request, "recursive")?;
    state
        .db
        .run(move |conn| {
            remove_by_user_guid(conn, &user, scope, &guid, role_type, &user_guid, recursive)
        })
        .await?;
    Ok(HttpResponse::NoContent().finish())
}

/// Checks the feature flag and the caller's access before asking UAA anything.
async fn precheck(
    state: &AppState,
    caller: &CurrentUser,
    scope: Scope,
    guid: &str,
    feature_flag: &'static str,
) -> Result<(), ApiError> {
    let caller = caller.clone();
    let guid = guid.to_owned();
    state
        .db
        .run(move |conn| {
            require_feature_flag(conn, feature_flag, &caller)?;
            let permissions = Permissions::load(conn, &caller)?;
            let target = load_target(conn, &permissions, scope, &guid)?;
            require_update(&permissions, &target)
        })
        .await
}

async fn add_by_username(
    state: web::Data<AppState>,
    scope: web::Data<Scope>,
    user: CurrentUser,
    path: web::Path<(String, String)>,
    payload: web::Json<Value>,
) -> Result<HttpResponse, ApiError> {
    let scope = **scope;
    let (guid, relation) = path.into_inner();
    let role_type = role_of(scope, &relation)?;
    let (username, origin) = parse_username(&payload)?;
    precheck(&state, &user, scope, &guid, "set_roles_by_username").await?;
    let found = resolve_username(&state, &username, origin.as_deref()).await?;
    let body = state
        .db
        .run(move |conn| {
            let permissions = Permissions::load(conn, &user)?;
            let target = load_target(conn, &permissions, scope, &guid)?;
            require_update(&permissions, &target)?;
            let row = store::users::ensure(
                conn,
                &found.id,
                Some(&found.username),
                Some(&found.origin),
                false,
            )?;
            grant(conn, &target, role_type, &row)?;
            target.render(conn)
        })
        .await?;
    Ok(HttpResponse::Created().json(body))
}

async fn remove_by_username(
    state: web::Data<AppState>,
    scope: web::Data<Scope>,
    user: CurrentUser,
    path: web::Path<(String, String)>,
    payload: web::Json<Value>,
    request: HttpRequest,
) -> Result<HttpResponse, ApiError> {
    let scope = **scope;
    let (guid, relation) = path.into_inner();
    let role_type = role_of(scope, &relation)?;
    let (username, origin) = parse_username(&payload)?;
    let recursive = flag(&request, "recursive")?;
    precheck(&state, &user, scope, &guid, "unset_roles_by_username").await?;
    let found = resolve_username(&state, &username, origin.as_deref()).await?;
    let body = state
        .db
        .run(move |conn| {
            let row = store::users::find(conn, &found.id)?
                .ok_or_else(|| ApiError::with_args(ErrorKind::UserNotFound, &[&username]))?;
            let permissions = Permissions::load(conn, &user)?;
            let target = load_target(conn, &permissions, scope, &guid)?;
            require_update(&permissions, &target)?;
            revoke(conn, &target, role_type, &row, recursive)?;
            match scope {
                Scope::Organization => Ok(None),
                Scope::Space => target.render(conn).map(Some),
            }
        })
        .await?;
    Ok(match body {
        Some(space) => HttpResponse::Ok().json(space),
        None => HttpResponse::NoContent().finish(),
    })
}
