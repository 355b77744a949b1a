//! `/v3/users`: list and get (visible users), create from a UAA id (admin; username and origin
//! are looked up in UAA and stored), delete as a job (admin).

use actix_web::{web, HttpRequest, HttpResponse};
use serde_json::Value;

use crate::app::{resource, AppState};
use crate::auth::CurrentUser;
use crate::body;
use crate::db::models::UserRow;
use crate::error::ApiError;
use crate::permissions::Permissions;
use crate::query::{as_unprocessable, list_body, ListQuery};
use crate::store::{self, StoreError};
use crate::v3::present;

/// Registers the user routes.
pub fn configure(config: &mut web::ServiceConfig) {
    config
        .service(
            resource("/v3/users")
                .route(web::get().to(list))
                .route(web::post().to(create)),
        )
        .service(
            resource("/v3/users/{guid}")
                .route(web::get().to(get))
                .route(web::delete().to(delete)),
        );
}

async fn list(
    state: web::Data<AppState>,
    user: CurrentUser,
    request: HttpRequest,
) -> Result<HttpResponse, ApiError> {
    // CC's UsersController answers bad list parameters with 422, not 400.
    let query = ListQuery::parse(
        &request,
        &[
            "guids",
            "usernames",
            "partial_usernames",
            "origins",
            "label_selector",
        ],
        &[],
    )
    .map_err(as_unprocessable)?;
    let mut problems = Vec::new();
    if query.list("origins").is_some()
        && query.list("usernames").is_none()
        && query.list("partial_usernames").is_none()
    {
        problems.push(
            "Origins filter cannot be provided without usernames or partial_usernames filter.",
        );
    }
    if query.list("usernames").is_some() && query.list("partial_usernames").is_some() {
        problems.push(
            "Usernames filter cannot be provided with both usernames and partial_usernames filter.",
        );
    }
    if !problems.is_empty() {
        return Err(ApiError::unprocessable(problems.join(", ")));
    }
    // UAA matches `userName co "…"` without regard to case.
    let partial: Option<Vec<String>> = query
        .list("partial_usernames")
        .map(|values| values.iter().map(|value| value.to_lowercase()).collect());
    let base = state.external_url.clone();
    let body = state
        .db
        .run(move |conn| {
            let permissions = Permissions::load(conn, &user)?;
            let roles = store::roles::list(conn)?;
            let visible = permissions.visible_user_ids(&roles);
            let mut users: Vec<UserRow> = store::users::list(conn)?
                .into_iter()
                .filter(|row| {
                    visible
                        .as_ref()
                        .is_none_or(|visible| visible.contains(&row.id))
                })
                .filter(|row| {
                    query.matches("guids", &row.guid)
                        // UAA compares `userName eq` without regard to case.
                        && query.list("usernames").is_none_or(|wanted| {
                            row.username.as_deref().is_some_and(|username| {
                                wanted.iter().any(|name| store::same_name(name, username))
                            })
                        })
                        && query.matches_opt("origins", row.origin.as_deref())
                        && partial.as_ref().is_none_or(|partial| {
                            row.username.as_deref().is_some_and(|username| {
                                let username = username.to_lowercase();
                                partial.iter().any(|part| username.contains(part.as_str()))
                            })
                        })
                })
                .collect();
            query.sort(
                &mut users,
                |row| row.username.as_deref().unwrap_or(&row.guid),
                |row| &row.created_at,
                |row| &row.updated_at,
            );
            let (page, pagination) = query.page_of(users, &base, "/v3/users");
            Ok(list_body(
                pagination,
                page.iter().map(|row| present::user(&base, row)).collect(),
                None,
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
    let base = state.external_url.clone();
    let body = state
        .db
        .run(move |conn| {
            let permissions = Permissions::load(conn, &user)?;
            let roles = store::roles::list(conn)?;
            let row = store::users::find(conn, &guid)?
                .filter(|row| permissions.can_read_user(row, &roles))
                .ok_or_else(|| ApiError::not_found("User"))?;
            Ok(present::user(&base, &row))
        })
        .await?;
    Ok(HttpResponse::Ok().json(body))
}

async fn create(
    state: web::Data<AppState>,
    user: CurrentUser,
    payload: web::Json<Value>,
) -> Result<HttpResponse, ApiError> {
    if !user.is_admin() {
        return Err(ApiError::forbidden());
    }
    let object = body::object(&payload, &["guid"])?;
    let guid = body::optional_string(object, "guid")?
        .ok_or_else(|| ApiError::unprocessable("Guid can't be blank"))?;
    if guid.trim().is_empty() {
        return Err(ApiError::unprocessable("Guid can't be blank"));
    }
    if guid.chars().count() > 200 {
        return Err(ApiError::unprocessable(
            "Guid must be between 1 and 200 characters",
        ));
    }
    if guid.chars().any(char::is_control) {
        return Err(ApiError::unprocessable(
            "Guid must not contain escaped characters",
        ));
    }
    // The UAA lookup only fills in username and origin; CC creates the user even when UAA does
    // not know the id (clients, users deleted from UAA).
    let uaa_user = match state.uaa.user_by_id(&guid).await {
        Ok(found) => found,
        Err(error) => {
            tracing::warn!(user_guid = %guid, error = %error, "could not look the new user up in UAA");
            None
        }
    };
    let base = state.external_url.clone();
    let body = state
        .db
        .run(move |conn| {
            let username = uaa_user.as_ref().map(|found| found.username.as_str());
            let origin = uaa_user.as_ref().map(|found| found.origin.as_str());
            let row = match store::users::create(conn, &guid, username, origin, false) {
                Ok(row) => row,
                Err(StoreError::Conflict) => {
                    return Err(ApiError::unprocessable(format!(
                        "User with guid '{guid}' already exists."
                    )))
                }
                Err(StoreError::Api(error)) => return Err(error),
            };
            Ok(present::user(&base, &row))
        })
        .await?;
    Ok(HttpResponse::Created().json(body))
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
            let roles = store::roles::list(conn)?;
            let row = store::users::find(conn, &guid)?
                .filter(|row| permissions.can_read_user(row, &roles))
                .ok_or_else(|| ApiError::not_found("User"))?;
            if !permissions.can_write_globally() {
                return Err(ApiError::forbidden());
            }
            store::jobs::run_now(conn, "user.delete", "user", &row.guid, |conn| {
                store::users::delete(conn, row.id)
            })
        })
        .await?;
    Ok(crate::v3::accepted_job(&state.external_url, &job_guid))
}
