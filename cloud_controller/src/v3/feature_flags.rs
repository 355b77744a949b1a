//! `/v3/feature_flags`: list, get, and PATCH (admin only).

use actix_web::{web, HttpRequest, HttpResponse};
use serde_json::Value;

use crate::app::{resource, AppState};
use crate::auth::CurrentUser;
use crate::body;
use crate::error::ApiError;
use crate::query::{list_body, ListQuery, SortKey};
use crate::store;
use crate::v3::present;

/// Registers the feature-flag routes.
pub fn configure(config: &mut web::ServiceConfig) {
    config
        .service(resource("/v3/feature_flags").route(web::get().to(list)))
        .service(
            resource("/v3/feature_flags/{name}")
                .route(web::get().to(get))
                .route(web::patch().to(update)),
        );
}

async fn list(
    state: web::Data<AppState>,
    _user: CurrentUser,
    request: HttpRequest,
) -> Result<HttpResponse, ApiError> {
    let query = ListQuery::parse(&request, &[], &[SortKey::Name])?;
    let base = state.external_url.clone();
    let body = state
        .db
        .run(move |conn| {
            let mut flags = store::reference_data::list_flags(conn)?;
            if query.order.0 == SortKey::CreatedAt && !query.order.1 {
                // CC lists flags by name unless told otherwise.
                flags.sort_by(|left, right| left.name.cmp(&right.name));
            } else {
                query.sort(
                    &mut flags,
                    |flag| &flag.name,
                    |flag| &flag.created_at,
                    |flag| &flag.updated_at,
                );
            }
            let (page, pagination) = query.page_of(flags, &base, "/v3/feature_flags");
            Ok(list_body(
                pagination,
                page.iter()
                    .map(|flag| present::feature_flag(&base, flag))
                    .collect(),
                None,
            ))
        })
        .await?;
    Ok(HttpResponse::Ok().json(body))
}

async fn get(
    state: web::Data<AppState>,
    _user: CurrentUser,
    path: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let name = path.into_inner();
    let base = state.external_url.clone();
    let body = state
        .db
        .run(move |conn| {
            let flag = store::reference_data::find_flag(conn, &name)?
                .ok_or_else(|| ApiError::not_found("Feature flag"))?;
            Ok(present::feature_flag(&base, &flag))
        })
        .await?;
    Ok(HttpResponse::Ok().json(body))
}

async fn update(
    state: web::Data<AppState>,
    user: CurrentUser,
    path: web::Path<String>,
    payload: web::Json<Value>,
) -> Result<HttpResponse, ApiError> {
    let name = path.into_inner();
    let object = body::object(&payload, &["enabled", "custom_error_message"])?;
    let enabled = body::optional_bool(object, "enabled")?;
    let message = match object.get("custom_error_message") {
        None => None,
        Some(Value::Null) => Some(None),
        Some(Value::String(text)) if !text.trim().is_empty() => Some(Some(text.clone())),
        Some(_) => {
            return Err(ApiError::unprocessable(
                "Custom error message must be a non-empty string",
            ))
        }
    };
    let base = state.external_url.clone();
    let body = state
        .db
        .run(move |conn| {
            store::reference_data::find_flag(conn, &name)?
                .ok_or_else(|| ApiError::not_found("Feature flag"))?;
            if !user.is_admin() {
                return Err(ApiError::forbidden());
            }
            let flag = store::reference_data::update_flag(
                conn,
                &name,
                enabled,
                message.as_ref().map(|message| message.as_deref()),
            )?;
            Ok(present::feature_flag(&base, &flag))
        })
        .await?;
    Ok(HttpResponse::Ok().json(body))
}
