//! SCIM endpoints: `/Users` (create, list with filters, read, update, delete, password change),
//! `/ids/Users`, and `/Groups` with their members. Errors use UAA's SCIM report shape.

use std::collections::HashMap;

use actix_web::http::StatusCode;
use actix_web::{web, HttpRequest, HttpResponse};
use serde::de::DeserializeOwned;

use crate::api::{
    timestamp, PasswordChangeRequest, ScimEmail, ScimGroup, ScimGroupRequest, ScimList, ScimMember,
    ScimMeta, ScimName, ScimUser, ScimUserGroup, ScimUserRequest, SCIM_SCHEMA,
};
use crate::auth::Principal;
use crate::db::groups::{self as group_store, GroupRow, MembershipRow};
use crate::db::users::{self as user_store, UserChanges, UserPrefilter, UserRow, Versioned};
use crate::db::{now_millis, DbConnection};
use crate::error::ApiError;
use crate::filter::{Filter, Operator};
use crate::state::AppState;
use crate::tokens::ORIGIN_UAA;

/// Groups every new user joins, as in UAA's default `oauth.user.authorities`.
pub(crate) const DEFAULT_USER_GROUPS: [&str; 10] = [
    "openid",
    "scim.me",
    "cloud_controller.read",
    "cloud_controller.write",
    "password.write",
    "scim.userids",
    "uaa.user",
    "approvals.me",
    "oauth.approvals",
    "cloud_controller_service_permissions.read",
];

/// Groups that exist from the first start on.
pub(crate) const PLATFORM_GROUPS: [&str; 13] = [
    "cloud_controller.admin",
    "cloud_controller.read",
    "cloud_controller.write",
    "cloud_controller.admin_read_only",
    "cloud_controller.global_auditor",
    "openid",
    "scim.read",
    "scim.write",
    "scim.userids",
    "uaa.user",
    "doppler.firehose",
    "password.write",
    "uaa.admin",
];

const MAX_NAME_LENGTH: usize = 255;
const MAX_PASSWORD_LENGTH: usize = 255;
const MAX_COUNT: usize = 500;
const USERNAME_PATTERN: &str = r"[\p{L}+0-9+\-_.@'!]+";

pub(crate) fn configure(cfg: &mut web::ServiceConfig) {
    // One resource per path, so that a method the path does not serve is a 405, not a 404.
    cfg.service(
        web::resource("/Users")
            .route(web::post().to(create_user))
            .route(web::get().to(list_users)),
    );
    cfg.service(
        web::resource("/Users/{id}")
            .route(web::get().to(get_user))
            .route(web::put().to(update_user))
            .route(web::delete().to(delete_user)),
    );
    cfg.service(web::resource("/Users/{id}/password").route(web::put().to(change_password)));
    cfg.service(web::resource("/ids/Users").route(web::get().to(list_user_ids)));
    cfg.service(
        web::resource("/Groups")
            .route(web::get().to(list_groups))
            .route(web::post().to(create_group)),
    );
    cfg.service(
        web::resource("/Groups/{id}")
            .route(web::get().to(get_group))
            .route(web::delete().to(delete_group)),
    );
    cfg.service(
        web::resource("/Groups/{id}/members")
            .route(web::get().to(list_members))
            .route(web::post().to(add_member)),
    );
    cfg.service(
        web::resource("/Groups/{id}/members/{member_id}").route(web::delete().to(remove_member)),
    );
}

/// The JSON body of a SCIM request. Like UAA, a body declared as something other than JSON, or
/// one that does not read as the resource, is a 400 `scim` error (UAA wraps Spring's media type
/// and message conversion failures in a plain `ScimException`); a body without a content type is
/// read as JSON.
fn parse_json<T: DeserializeOwned>(request: &HttpRequest, body: &[u8]) -> Result<T, ApiError> {
    if let Some(content_type) = request.headers().get(actix_web::http::header::CONTENT_TYPE) {
        let essence = content_type
            .to_str()
            .unwrap_or_default()
            .split(';')
            .next()
            .unwrap_or_default()
            .trim()
            .to_ascii_lowercase();
        let is_json = essence == "application/json"
            || (essence.starts_with("application/") && essence.ends_with("+json"));
        if !is_json {
            return Err(ApiError::scim(
                StatusCode::BAD_REQUEST,
                "scim",
                format!(
                    "Content type '{}' not supported",
                    String::from_utf8_lossy(content_type.as_bytes())
                ),
            ));
        }
    }
    serde_json::from_slice(body).map_err(|error| {
        ApiError::scim(
            StatusCode::BAD_REQUEST,
            "scim",
            format!("The request body is not valid JSON for this resource: {error}"),
        )
    })
}

fn query_pairs(request: &HttpRequest) -> Result<HashMap<String, String>, ApiError> {
    let pairs: Vec<(String, String)> =
        serde_urlencoded::from_str(request.query_string()).map_err(|_| {
            ApiError::scim(
                StatusCode::BAD_REQUEST,
                "invalid_request",
                "The query string is malformed",
            )
        })?;
    Ok(pairs.into_iter().collect())
}

/// `filter`, `attributes`, `startIndex` and `count` of a list request.
struct ListQuery {
    filter: Option<Filter>,
    paging: Paging,
}

/// How a list answer is cut and shaped.
#[derive(Debug, Clone)]
struct Paging {
    start_index: usize,
    count: usize,
    /// The attributes each resource is reduced to (`attributes=id,userName`); empty for all.
    attributes: Vec<String>,
}

/// Attributes a user filter may name (lower-cased), as [`user_attribute`] reads them.
const USER_FILTER_ATTRIBUTES: &[&str] = &[
    "id",
    "username",
    "origin",
    "email",
    "emails",
    "emails.value",
    "name.givenname",
    "givenname",
    "name.familyname",
    "familyname",
    "active",
    "verified",
    "zoneid",
    "meta.version",
    "meta.created",
    "meta.lastmodified",
];

/// Attributes a group filter may name (lower-cased), as [`group_attribute`] reads them.
const GROUP_FILTER_ATTRIBUTES: &[&str] = &[
    "id",
    "displayname",
    "description",
    "zoneid",
    "meta.version",
    "meta.created",
    "meta.lastmodified",
];

fn invalid_filter(text: &str, reason: impl std::fmt::Display) -> ApiError {
    // UAA reports this as a plain `ScimException`, whose error name is `scim`.
    ApiError::scim(
        StatusCode::BAD_REQUEST,
        "scim",
        format!("Invalid filter expression: [{text}]: {reason}"),
    )
}

/// The list query of a request whose filter may name `known_attributes`; like UAA, a filter on
/// any other attribute is refused rather than matching nothing.
fn list_query(request: &HttpRequest, known_attributes: &[&str]) -> Result<ListQuery, ApiError> {
    let query = query_pairs(request)?;
    let filter = match query
        .get("filter")
        .map(|filter| filter.trim())
        .filter(|filter| !filter.is_empty())
    {
        Some(text) => {
            let filter = Filter::parse(text).map_err(|reason| invalid_filter(text, reason))?;
            let mut unknown = Vec::new();
            filter.for_each_comparison(&mut |attribute, _| {
                if !known_attributes.contains(&attribute.to_ascii_lowercase().as_str()) {
                    unknown.push(attribute.to_owned());
                }
            });
            if !unknown.is_empty() {
                return Err(invalid_filter(
                    text,
                    format!("Invalid filter attributes: {}", unknown.join(",")),
                ));
            }
            Some(filter)
        }
        None => None,
    };
    let number = |name: &str, default: usize| -> Result<usize, ApiError> {
        match query.get(name) {
            None => Ok(default),
            Some(value) => value
                .trim()
                .parse::<i64>()
                .map(|n| usize::try_from(n.max(0)).unwrap_or(0))
                .map_err(|_| {
                    ApiError::scim(
                        StatusCode::BAD_REQUEST,
                        "invalid_request",
                        format!("{name} must be a number"),
                    )
                }),
        }
    };
    let attributes = query
        .get("attributes")
        .map(|list| {
            list.split(',')
                .map(str::trim)
                .filter(|attribute| !attribute.is_empty())
                .map(str::to_owned)
                .collect()
        })
        .unwrap_or_default();
    Ok(ListQuery {
        filter,
        paging: Paging {
            start_index: number("startIndex", 1)?.max(1),
            count: number("count", 100)?.min(MAX_COUNT),
            attributes,
        },
    })
}

fn page<T>(items: Vec<T>, query: &ListQuery) -> (Vec<T>, usize) {
    let total = items.len();
    let page = items
        .into_iter()
        .skip(query.paging.start_index - 1)
        .take(query.paging.count)
        .collect();
    (page, total)
}

/// A SCIM list answer. As in UAA, `itemsPerPage` is the page size asked for (`count`), not the
/// number of resources on this page.
fn list_response<T: serde::Serialize>(
    resources: Vec<T>,
    paging: &Paging,
    total: usize,
) -> Result<HttpResponse, ApiError> {
    let list = ScimList {
        items_per_page: paging.count,
        resources,
        start_index: paging.start_index,
        total_results: total,
        schemas: [SCIM_SCHEMA],
    };
    if paging.attributes.is_empty() {
        return Ok(HttpResponse::Ok().json(list));
    }
    let mut body = serde_json::to_value(&list).map_err(ApiError::internal)?;
    if let Some(serde_json::Value::Array(resources)) = body.get_mut("resources") {
        for resource in resources.iter_mut() {
            *resource = select_attributes(resource, &paging.attributes);
        }
    }
    Ok(HttpResponse::Ok().json(body))
}

/// Reduces a rendered resource to `attributes`, keyed as requested: a dotted name walks into
/// objects and across arrays (`emails.value` lists every address), `givenName` and `familyName`
/// are read from `name`, names match without regard to case, and unknown ones are `null`.
fn select_attributes(resource: &serde_json::Value, attributes: &[String]) -> serde_json::Value {
    fn walk(value: &serde_json::Value, path: &[&str]) -> serde_json::Value {
        let Some((first, rest)) = path.split_first() else {
            return value.clone();
        };
        match value {
            serde_json::Value::Object(object) => object
                .iter()
                .find(|(key, _)| key.eq_ignore_ascii_case(first))
                .map(|(_, inner)| walk(inner, rest))
                .unwrap_or(serde_json::Value::Null),
            serde_json::Value::Array(items) => {
                serde_json::Value::Array(items.iter().map(|item| walk(item, path)).collect())
            }
            _ => serde_json::Value::Null,
        }
    }
    let mut selected = serde_json::Map::new();
    for attribute in attributes {
        let internal = match attribute.to_ascii_lowercase().as_str() {
            "givenname" => "name.givenName".to_owned(),
            "familyname" => "name.familyName".to_owned(),
            _ => attribute.clone(),
        };
        let path: Vec<&str> = internal.split('.').collect();
        selected.insert(attribute.clone(), walk(resource, &path));
    }
    serde_json::Value::Object(selected)
}

fn user_not_found(id: &str) -> ApiError {
    ApiError::scim_not_found(format!("User {id} does not exist"))
}

fn group_not_found(id: &str) -> ApiError {
    ApiError::scim_not_found(format!("Group {id} does not exist"))
}

fn user_attribute(user: &UserRow, attribute: &str) -> Option<Vec<String>> {
    let one = |value: &str| Some(vec![value.to_owned()]);
    match attribute {
        "id" => one(&user.id),
        "username" => one(&user.user_name),
        "origin" => one(&user.origin),
        "email" | "emails" | "emails.value" => one(&user.email),
        "name.givenname" | "givenname" => Some(user.given_name.iter().cloned().collect()),
        "name.familyname" | "familyname" => Some(user.family_name.iter().cloned().collect()),
        "active" => one(&user.active.to_string()),
        "verified" => one(&user.verified.to_string()),
        "zoneid" => one("uaa"),
        "meta.version" => one(&user.version.to_string()),
        "meta.created" => one(&timestamp(user.created)),
        "meta.lastmodified" => one(&timestamp(user.last_modified)),
        _ => None,
    }
}

fn render_user(user: UserRow, groups: Vec<GroupRow>) -> ScimUser {
    ScimUser {
        external_id: String::new(),
        meta: ScimMeta {
            version: user.version,
            created: timestamp(user.created),
            last_modified: timestamp(user.last_modified),
        },
        name: ScimName {
            family_name: user.family_name,
            given_name: user.given_name,
        },
        emails: vec![ScimEmail {
            value: Some(user.email),
            primary: false,
        }],
        groups: groups
            .into_iter()
            .map(|group| ScimUserGroup {
                value: group.id,
                display: group.display_name,
                kind: "DIRECT",
            })
            .collect(),
        approvals: Vec::new(),
        active: user.active,
        verified: user.verified,
        origin: user.origin,
        zone_id: "uaa",
        password_last_modified: timestamp(user.password_last_modified),
        last_logon_time: user.last_logon,
        previous_logon_time: user.previous_logon,
        schemas: [SCIM_SCHEMA],
        id: user.id,
        user_name: user.user_name,
    }
}

fn user_response(status: StatusCode, user: ScimUser) -> HttpResponse {
    HttpResponse::build(status)
        .insert_header((
            actix_web::http::header::ETAG,
            format!("\"{}\"", user.meta.version),
        ))
        .json(user)
}

/// Loads a user with its groups.
fn load_user(conn: &mut DbConnection, id: &str) -> Result<Option<ScimUser>, ApiError> {
    let Some(user) = user_store::find_by_id(conn, id)? else {
        return Ok(None);
    };
    let groups = group_store::groups_of_user(conn, id)?;
    Ok(Some(render_user(user, groups)))
}

fn validate_user_name(user_name: &str, origin: &str) -> Result<(), ApiError> {
    if user_name.trim().is_empty() {
        return Err(ApiError::invalid_scim_resource(
            "A username must be provided.",
        ));
    }
    if user_name.chars().count() > MAX_NAME_LENGTH {
        return Err(ApiError::invalid_scim_resource(format!(
            "Username must be no more than {MAX_NAME_LENGTH} characters in length."
        )));
    }
    let allowed = |c: char| c.is_alphabetic() || c.is_ascii_digit() || "+-_.@'!".contains(c);
    if origin == ORIGIN_UAA && !user_name.chars().all(allowed) {
        return Err(ApiError::invalid_scim_resource(format!(
            "Username must match pattern: {USERNAME_PATTERN}"
        )));
    }
    Ok(())
}

fn validate_password(password: &str) -> Result<(), ApiError> {
    if password.is_empty() {
        return Err(ApiError::invalid_password(
            StatusCode::BAD_REQUEST,
            "Password must be at least 1 characters in length.",
        ));
    }
    if password.chars().count() > MAX_PASSWORD_LENGTH {
        return Err(ApiError::invalid_password(
            StatusCode::BAD_REQUEST,
            format!("Password must be no more than {MAX_PASSWORD_LENGTH} characters in length."),
        ));
    }
    Ok(())
}

fn single_email(emails: Option<Vec<ScimEmail>>) -> Result<String, ApiError> {
    let emails = emails.unwrap_or_default();
    if emails.len() != 1 {
        return Err(ApiError::invalid_scim_resource(
            "Exactly one email must be provided.",
        ));
    }
    match emails
        .into_iter()
        .next()
        .and_then(|email| email.value)
        .filter(|value| !value.trim().is_empty())
    {
        Some(value) if value.chars().count() <= MAX_NAME_LENGTH => Ok(value),
        Some(_) => Err(ApiError::invalid_scim_resource(
            "The email address is too long.",
        )),
        None => Err(ApiError::invalid_scim_resource(
            "An email must be provided.",
        )),
    }
}

fn bounded(value: Option<String>, what: &str) -> Result<Option<String>, ApiError> {
    match value {
        Some(value) if value.chars().count() > MAX_NAME_LENGTH => Err(
            ApiError::invalid_scim_resource(format!("The {what} is too long.")),
        ),
        other => Ok(other),
    }
}

/// Inserts a new user and makes it a member of the default groups and `extra_groups`;
/// `false` when the user name is taken.
pub(crate) fn insert_user(
    conn: &mut DbConnection,
    row: &UserRow,
    extra_groups: &[String],
) -> Result<bool, ApiError> {
    if !user_store::insert(conn, row)? {
        return Ok(false);
    }
    let now = row.created;
    for group in DEFAULT_USER_GROUPS
        .iter()
        .map(|group| (*group).to_owned())
        .chain(extra_groups.iter().cloned())
    {
        let group_id = group_store::ensure(conn, &group, now)?;
        group_store::add_member(conn, &group_id, &row.id, &row.origin, now)?;
    }
    Ok(true)
}

pub(crate) fn hash_password(password: &str, cost: u32) -> Result<String, ApiError> {
    bcrypt::hash(password, cost).map_err(ApiError::internal)
}

async fn create_user(
    state: web::Data<AppState>,
    principal: Principal,
    request: HttpRequest,
    body: web::Bytes,
) -> Result<HttpResponse, ApiError> {
    principal.require_any(&["scim.write", "scim.create"])?;
    let user_request: ScimUserRequest = parse_json(&request, &body)?;
    let origin = user_request
        .origin
        .filter(|origin| !origin.is_empty())
        .unwrap_or_else(|| ORIGIN_UAA.to_owned());
    let user_name = user_request.user_name.unwrap_or_default();
    validate_user_name(&user_name, &origin)?;
    let email = single_email(user_request.emails)?;
    let password = user_request.password.unwrap_or_default();
    if origin == ORIGIN_UAA {
        validate_password(&password)?;
    }
    let name = user_request.name.unwrap_or_default();
    let given_name = bounded(name.given_name, "given name")?;
    let family_name = bounded(name.family_name, "family name")?;
    let cost = state.password_hash_cost;
    let active = user_request.active.unwrap_or(true);
    let verified = user_request.verified.unwrap_or(true);
    let user = state
        .database
        .blocking(move |database| {
            // Users of other origins never log in here; give them an unusable password hash.
            let password_hash = if password.is_empty() {
                "!".to_owned()
            } else {
                hash_password(&password, cost)?
            };
            let now = now_millis();
            let row = UserRow {
                id: uuid::Uuid::new_v4().to_string(),
                user_name_key: user_name.to_lowercase(),
                user_name,
                origin,
                email,
                given_name,
                family_name,
                password_hash,
                active,
                verified,
                version: 0,
                created: now,
                last_modified: now,
                password_last_modified: now,
                last_logon: None,
                previous_logon: None,
            };
            database.write(|conn| -> Result<ScimUser, ApiError> {
                if !insert_user(conn, &row, &[])? {
                    return Err(ApiError::scim(
                        StatusCode::CONFLICT,
                        "scim_resource_already_exists",
                        format!("Username already in use: {}", row.user_name),
                    )
                    .with_extra("origin", row.origin.clone().into()));
                }
                load_user(conn, &row.id)?.ok_or_else(|| user_not_found(&row.id))
            })
        })
        .await?;
    tracing::info!(user_id = %user.id, user_name = %user.user_name, "user created");
    Ok(user_response(StatusCode::CREATED, user))
}

/// Users matching a list query (all pages), narrowed in SQL where the filter allows.
fn query_users(conn: &mut DbConnection, filter: Option<&Filter>) -> Result<Vec<UserRow>, ApiError> {
    let prefilter = UserPrefilter {
        id: filter.and_then(|filter| filter.required_equal("id")),
        user_name_key: filter
            .and_then(|filter| filter.required_equal("userName"))
            .map(|name| name.to_lowercase()),
    };
    let users = user_store::list(conn, &prefilter)?;
    Ok(match filter {
        Some(filter) => users
            .into_iter()
            .filter(|user| filter.matches(&|attribute| user_attribute(user, attribute)))
            .collect(),
        None => users,
    })
}

async fn list_users(
    state: web::Data<AppState>,
    principal: Principal,
    request: HttpRequest,
) -> Result<HttpResponse, ApiError> {
    principal.require_any(&["scim.read"])?;
    let query = list_query(&request, USER_FILTER_ATTRIBUTES)?;
    let paging = query.paging.clone();
    let (users, total) = state
        .database
        .blocking(move |database| {
            database.query(|conn| {
                let users = query_users(conn, query.filter.as_ref())?;
                let (users, total) = page(users, &query);
                let ids: Vec<String> = users.iter().map(|user| user.id.clone()).collect();
                let mut groups_by_user: HashMap<String, Vec<GroupRow>> = HashMap::new();
                for (member_id, group) in group_store::groups_of_users(conn, &ids)? {
                    groups_by_user.entry(member_id).or_default().push(group);
                }
                let rendered: Vec<ScimUser> = users
                    .into_iter()
                    .map(|user| {
                        let groups = groups_by_user.remove(&user.id).unwrap_or_default();
                        render_user(user, groups)
                    })
                    .collect();
                Ok((rendered, total))
            })
        })
        .await?;
    list_response(users, &paging, total)
}

/// `/ids/Users` is open to every user (`scim.userids` is a default group), so, as in UAA, it
/// answers only filters that name users by `id` or `userName` with `eq` (and may add `origin eq`):
/// no listing of everyone, no wildcards, no ranges.
fn check_ids_filter(filter: Option<&Filter>) -> Result<(), ApiError> {
    let refuse = |message: &str| {
        Err(ApiError::scim(
            StatusCode::BAD_REQUEST,
            "scim",
            message.to_owned(),
        ))
    };
    let Some(filter) = filter else {
        return refuse("a 'filter' parameter is required");
    };
    let mut problem = None;
    filter.for_each_comparison(&mut |attribute, operator| {
        let found = match operator {
            Operator::Pr | Operator::Sw | Operator::Co => {
                Some("Wildcards are not allowed in filter.")
            }
            Operator::Eq => (!["id", "username", "origin"]
                .contains(&attribute.to_ascii_lowercase().as_str()))
            .then_some("Invalid filter attribute."),
            _ => Some("Invalid operator."),
        };
        problem = problem.or(found);
    });
    if let Some(message) = problem {
        return refuse(message);
    }
    fn names_a_user(filter: &Filter) -> bool {
        match filter {
            Filter::And(operands) | Filter::Or(operands) => operands.iter().any(names_a_user),
            Filter::Compare { attribute, .. } => {
                attribute.eq_ignore_ascii_case("id") || attribute.eq_ignore_ascii_case("userName")
            }
        }
    }
    if !names_a_user(filter) {
        return refuse("Invalid filter attribute.");
    }
    Ok(())
}

async fn list_user_ids(
    state: web::Data<AppState>,
    principal: Principal,
    request: HttpRequest,
) -> Result<HttpResponse, ApiError> {
    principal.require_any(&["scim.userids"])?;
    let query = list_query(&request, USER_FILTER_ATTRIBUTES)?;
    check_ids_filter(query.filter.as_ref())?;
    let paging = query.paging.clone();
    let (ids, total) = state
        .database
        .blocking(move |database| {
            let users = database.query(|conn| query_users(conn, query.filter.as_ref()))?;
            let (users, total) = page(users, &query);
            let ids: Vec<serde_json::Value> = users
                .into_iter()
                .map(|user| serde_json::json!({"id": user.id, "userName": user.user_name, "origin": user.origin}))
                .collect();
            Ok((ids, total))
        })
        .await?;
    list_response(ids, &paging, total)
}

async fn get_user(
    state: web::Data<AppState>,
    principal: Principal,
    id: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let id = id.into_inner();
    if principal.user_id() != Some(id.as_str()) {
        principal.require_any(&["scim.read"])?;
    }
    let lookup_id = id.clone();
    let user = state
        .database
        .blocking(move |database| database.query(|conn| load_user(conn, &lookup_id)))
        .await?
        .ok_or_else(|| user_not_found(&id))?;
    Ok(user_response(StatusCode::OK, user))
}

/// The version an `If-Match` header names: `None` for `*` (any version).
fn if_match_version(request: &HttpRequest) -> Result<Option<Option<i64>>, ApiError> {
    let Some(value) = request.headers().get(actix_web::http::header::IF_MATCH) else {
        return Ok(None);
    };
    let raw = value.to_str().unwrap_or_default();
    let trimmed = raw.trim().trim_start_matches("W/").trim_matches('"');
    if trimmed == "*" {
        return Ok(Some(None));
    }
    trimmed
        .parse::<i64>()
        .map(|version| Some(Some(version)))
        .map_err(|_| {
            ApiError::scim(
                StatusCode::BAD_REQUEST,
                "scim",
                format!("Invalid version match header (should be a version number): {raw}"),
            )
        })
}

fn versioned_error(id: &str, outcome: Versioned<UserRow>, expected: Option<i64>) -> ApiError {
    match outcome {
        Versioned::NotFound => user_not_found(id),
        Versioned::VersionMismatch { found } => ApiError::scim(
            StatusCode::CONFLICT,
            "scim_resource_conflict",
            format!(
                "Attempt to update a user ({id}) with wrong version: expected={found} but found={}",
                expected.unwrap_or(-1)
            ),
        ),
        Versioned::NameTaken => ApiError::scim(
            StatusCode::CONFLICT,
            "scim_resource_already_exists",
            "Username already in use".to_owned(),
        ),
        Versioned::Done(_) => ApiError::internal("versioned_error called on success"),
    }
}

async fn update_user(
    state: web::Data<AppState>,
    principal: Principal,
    request: HttpRequest,
    id: web::Path<String>,
    body: web::Bytes,
) -> Result<HttpResponse, ApiError> {
    principal.require_any(&["scim.write"])?;
    let id = id.into_inner();
    let expected = if_match_version(&request)?.ok_or_else(|| {
        ApiError::scim(StatusCode::BAD_REQUEST, "scim", "Missing If-Match for PUT")
    })?;
    let update: ScimUserRequest = parse_json(&request, &body)?;
    let user = state
        .database
        .blocking(move |database| {
            database.write(|conn| -> Result<ScimUser, ApiError> {
                let Some(current) = user_store::find_by_id(conn, &id)? else {
                    return Err(user_not_found(&id));
                };
                if update
                    .origin
                    .as_deref()
                    .is_some_and(|origin| !origin.is_empty() && origin != current.origin)
                {
                    return Err(ApiError::invalid_scim_resource(
                        "Cannot change user's origin in update operation.",
                    ));
                }
                let user_name = update.user_name.unwrap_or_default();
                validate_user_name(&user_name, &current.origin)?;
                let email = single_email(update.emails)?;
                let name = update.name.unwrap_or_default();
                let changes = UserChanges {
                    user_name,
                    email,
                    given_name: bounded(name.given_name, "given name")?,
                    family_name: bounded(name.family_name, "family name")?,
                    active: update.active.unwrap_or(current.active),
                    verified: update.verified.unwrap_or(current.verified),
                };
                match user_store::update(conn, &id, expected, changes, now_millis())? {
                    Versioned::Done(_) => load_user(conn, &id)?.ok_or_else(|| user_not_found(&id)),
                    other => Err(versioned_error(&id, other, expected)),
                }
            })
        })
        .await?;
    Ok(user_response(StatusCode::OK, user))
}

async fn delete_user(
    state: web::Data<AppState>,
    principal: Principal,
    request: HttpRequest,
    id: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    principal.require_any(&["scim.write"])?;
    let id = id.into_inner();
    let expected = if_match_version(&request)?.flatten();
    let user = state
        .database
        .blocking(move |database| {
            database.write(|conn| -> Result<ScimUser, ApiError> {
                let Some(rendered) = load_user(conn, &id)? else {
                    return Err(user_not_found(&id));
                };
                match user_store::delete(conn, &id, expected)? {
                    Versioned::Done(_) => Ok(rendered),
                    other => Err(versioned_error(&id, other, expected)),
                }
            })
        })
        .await?;
    tracing::info!(user_id = %user.id, "user deleted; its refresh tokens are revoked");
    Ok(user_response(StatusCode::OK, user))
}

async fn change_password(
    state: web::Data<AppState>,
    principal: Principal,
    id: web::Path<String>,
    request: HttpRequest,
    body: web::Bytes,
) -> Result<HttpResponse, ApiError> {
    let id = id.into_inner();
    let change: PasswordChangeRequest = parse_json(&request, &body)?;
    let is_self = principal.user_id() == Some(id.as_str());
    let is_client = principal.user_id().is_none();
    // Admins and trusted clients may set any password; users change their own with the old one.
    let privileged = principal.is_admin() || (is_client && principal.has_scope("password.write"));
    if !is_self && !privileged {
        if is_client {
            return Err(ApiError::insufficient_scope(&[
                "password.write",
                "uaa.admin",
            ]));
        }
        return Err(ApiError::invalid_password(
            StatusCode::BAD_REQUEST,
            "Not permitted to change another user's password",
        ));
    }
    if is_self && !principal.has_scope("password.write") && !principal.is_admin() {
        return Err(ApiError::insufficient_scope(&[
            "password.write",
            "uaa.admin",
        ]));
    }
    // Users, admins included, give their old password to change their own; anyone who sends
    // one has it checked.
    if is_self
        && change
            .old_password
            .as_deref()
            .is_none_or(|old_password| old_password.is_empty())
    {
        return Err(ApiError::invalid_password(
            StatusCode::BAD_REQUEST,
            "Previous password is required",
        ));
    }
    let old_password = change.old_password;
    let new_password = change.password.unwrap_or_default();
    let cost = state.password_hash_cost;
    state
        .database
        .blocking(move |database| {
            let Some(user) = database.read(|conn| user_store::find_by_id(conn, &id))? else {
                // UAA does not reveal here whether the user exists.
                return Err(ApiError::scim(
                    StatusCode::UNAUTHORIZED,
                    "bad_credentials",
                    "Invalid password change request",
                ));
            };
            if old_password.as_deref().is_some_and(|old_password| {
                !bcrypt::verify(old_password, &user.password_hash).unwrap_or(false)
            }) {
                return Err(ApiError::new(
                    StatusCode::UNAUTHORIZED,
                    "unauthorized",
                    "Old password is incorrect",
                ));
            }
            if bcrypt::verify(&new_password, &user.password_hash).unwrap_or(false) {
                return Err(ApiError::invalid_password(
                    StatusCode::UNPROCESSABLE_ENTITY,
                    "Your new password cannot be the same as the old password.",
                ));
            }
            validate_password(&new_password)?;
            let hash = hash_password(&new_password, cost)?;
            database.write(|conn| -> Result<(), ApiError> {
                if !user_store::set_password(conn, &id, &hash, now_millis())? {
                    return Err(user_not_found(&id));
                }
                Ok(())
            })?;
            tracing::info!(user_id = %id, "password changed; refresh tokens revoked");
            Ok(())
        })
        .await?;
    Ok(HttpResponse::Ok().json(serde_json::json!({"status": "ok", "message": "password updated"})))
}

fn render_group(group: GroupRow, members: Vec<MembershipRow>) -> ScimGroup {
    ScimGroup {
        id: group.id,
        meta: ScimMeta {
            version: group.version,
            created: timestamp(group.created),
            last_modified: timestamp(group.last_modified),
        },
        display_name: group.display_name,
        description: group.description,
        members: members.into_iter().map(render_member).collect(),
        zone_id: "uaa",
        schemas: [SCIM_SCHEMA],
    }
}

fn render_member(member: MembershipRow) -> ScimMember {
    ScimMember {
        origin: member.origin,
        kind: "USER".to_owned(),
        value: member.member_id,
    }
}

fn group_attribute(group: &GroupRow, attribute: &str) -> Option<Vec<String>> {
    let one = |value: &str| Some(vec![value.to_owned()]);
    match attribute {
        "id" => one(&group.id),
        "displayname" => one(&group.display_name),
        "description" => one(&group.description),
        "zoneid" => one("uaa"),
        "meta.version" => one(&group.version.to_string()),
        "meta.created" => one(&timestamp(group.created)),
        "meta.lastmodified" => one(&timestamp(group.last_modified)),
        _ => None,
    }
}

async fn list_groups(
    state: web::Data<AppState>,
    principal: Principal,
    request: HttpRequest,
) -> Result<HttpResponse, ApiError> {
    principal.require_any(&["scim.read"])?;
    let query = list_query(&request, GROUP_FILTER_ATTRIBUTES)?;
    let paging = query.paging.clone();
    let (groups, total) = state
        .database
        .blocking(move |database| {
            let groups = database.read(group_store::list)?;
            let groups: Vec<GroupRow> = match &query.filter {
                Some(filter) => groups
                    .into_iter()
                    .filter(|group| filter.matches(&|attribute| group_attribute(group, attribute)))
                    .collect(),
                None => groups,
            };
            let (groups, total) = page(groups, &query);
            let ids: Vec<String> = groups.iter().map(|group| group.id.clone()).collect();
            let mut members_by_group: HashMap<String, Vec<MembershipRow>> = HashMap::new();
            for member in database.read(|conn| group_store::members_of(conn, &ids))? {
                members_by_group
                    .entry(member.group_id.clone())
                    .or_default()
                    .push(member);
            }
            let rendered: Vec<ScimGroup> = groups
                .into_iter()
                .map(|group| {
                    let members = members_by_group.remove(&group.id).unwrap_or_default();
                    render_group(group, members)
                })
                .collect();
            Ok((rendered, total))
        })
        .await?;
    list_response(groups, &paging, total)
}

fn load_group(database: &crate::db::Database, id: &str) -> Result<Option<ScimGroup>, ApiError> {
    let Some(group) = database.read(|conn| group_store::find_by_id(conn, id))? else {
        return Ok(None);
    };
    let members = database.read(|conn| group_store::members(conn, id))?;
    Ok(Some(render_group(group, members)))
}

async fn get_group(
    state: web::Data<AppState>,
    principal: Principal,
    id: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    principal.require_any(&["scim.read"])?;
    let id = id.into_inner();
    let lookup_id = id.clone();
    let group = state
        .database
        .blocking(move |database| load_group(database, &lookup_id))
        .await?
        .ok_or_else(|| group_not_found(&id))?;
    Ok(HttpResponse::Ok()
        .insert_header((
            actix_web::http::header::ETAG,
            format!("\"{}\"", group.meta.version),
        ))
        .json(group))
}

async fn create_group(
    state: web::Data<AppState>,
    principal: Principal,
    request: HttpRequest,
    body: web::Bytes,
) -> Result<HttpResponse, ApiError> {
    principal.require_any(&["scim.write"])?;
    let group_request: ScimGroupRequest = parse_json(&request, &body)?;
    let display_name = group_request.display_name.unwrap_or_default();
    if !crate::config::valid_scope_name(&display_name) {
        return Err(ApiError::invalid_scim_resource(
            "The displayName must be 1 to 255 characters without whitespace.",
        ));
    }
    let description = bounded(group_request.description, "description")?.unwrap_or_default();
    for member in &group_request.members {
        if !member.kind.eq_ignore_ascii_case("USER") {
            return Err(ApiError::invalid_scim_resource(
                "Only members of type USER are supported.",
            ));
        }
    }
    let group = state
        .database
        .blocking(move |database| {
            let now = now_millis();
            let row = GroupRow {
                id: uuid::Uuid::new_v4().to_string(),
                display_name,
                description,
                version: 0,
                created: now,
                last_modified: now,
            };
            database.write(|conn| -> Result<(), ApiError> {
                if !group_store::insert(conn, &row)? {
                    return Err(ApiError::scim(
                        StatusCode::CONFLICT,
                        "scim_resource_already_exists",
                        format!(
                            "A group with displayName: {} already exists.",
                            row.display_name
                        ),
                    ));
                }
                for member in &group_request.members {
                    if user_store::find_by_id(conn, &member.value)?.is_none() {
                        return Err(user_not_found(&member.value));
                    }
                    group_store::add_member(conn, &row.id, &member.value, &member.origin, now)?;
                }
                Ok(())
            })?;
            load_group(database, &row.id)?.ok_or_else(|| group_not_found(&row.id))
        })
        .await?;
    Ok(HttpResponse::Created()
        .insert_header((
            actix_web::http::header::ETAG,
            format!("\"{}\"", group.meta.version),
        ))
        .json(group))
}

async fn delete_group(
    state: web::Data<AppState>,
    principal: Principal,
    id: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    principal.require_any(&["scim.write"])?;
    let id = id.into_inner();
    let group = state
        .database
        .blocking(move |database| {
            let Some(group) = load_group(database, &id)? else {
                return Err(group_not_found(&id));
            };
            database
                .write(|conn| -> Result<bool, ApiError> { Ok(group_store::delete(conn, &id)?) })?;
            Ok(group)
        })
        .await?;
    Ok(HttpResponse::Ok().json(group))
}

async fn list_members(
    state: web::Data<AppState>,
    principal: Principal,
    id: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    principal.require_any(&["scim.read"])?;
    let id = id.into_inner();
    let members = state
        .database
        .blocking(move |database| {
            if database
                .read(|conn| group_store::find_by_id(conn, &id))?
                .is_none()
            {
                return Err(group_not_found(&id));
            }
            Ok(database.read(|conn| group_store::members(conn, &id))?)
        })
        .await?;
    let members: Vec<ScimMember> = members.into_iter().map(render_member).collect();
    Ok(HttpResponse::Ok().json(members))
}

async fn add_member(
    state: web::Data<AppState>,
    principal: Principal,
    id: web::Path<String>,
    request: HttpRequest,
    body: web::Bytes,
) -> Result<HttpResponse, ApiError> {
    principal.require_any(&["scim.write"])?;
    let group_id = id.into_inner();
    let member: ScimMember = parse_json(&request, &body)?;
    if !member.kind.eq_ignore_ascii_case("USER") {
        return Err(ApiError::invalid_scim_resource(
            "Only members of type USER are supported.",
        ));
    }
    let member = state
        .database
        .blocking(move |database| {
            database.write(|conn| -> Result<ScimMember, ApiError> {
                let Some(group) = group_store::find_by_id(conn, &group_id)? else {
                    return Err(group_not_found(&group_id));
                };
                let Some(user) = user_store::find_by_id(conn, &member.value)? else {
                    return Err(user_not_found(&member.value));
                };
                if !group_store::add_member(conn, &group_id, &user.id, &user.origin, now_millis())?
                {
                    return Err(ApiError::scim(
                        StatusCode::CONFLICT,
                        "member_already_exists",
                        format!("Member {} already exists in group {}", user.id, group.id),
                    ));
                }
                Ok(ScimMember {
                    origin: user.origin,
                    kind: "USER".to_owned(),
                    value: user.id,
                })
            })
        })
        .await?;
    Ok(HttpResponse::Created().json(member))
}

async fn remove_member(
    state: web::Data<AppState>,
    principal: Principal,
    path: web::Path<(String, String)>,
) -> Result<HttpResponse, ApiError> {
    principal.require_any(&["scim.write"])?;
    let (group_id, member_id) = path.into_inner();
    let member = state
        .database
        .blocking(move |database| {
            database.write(|conn| -> Result<ScimMember, ApiError> {
                if group_store::find_by_id(conn, &group_id)?.is_none() {
                    return Err(group_not_found(&group_id));
                }
                match group_store::remove_member(conn, &group_id, &member_id)? {
                    Some(member) => Ok(render_member(member)),
                    None => Err(ApiError::scim(
                        StatusCode::NOT_FOUND,
                        "member_not_found",
                        format!("Member {member_id} does not exist in group {group_id}"),
                    )),
                }
            })
        })
        .await?;
    Ok(HttpResponse::Ok().json(member))
}
