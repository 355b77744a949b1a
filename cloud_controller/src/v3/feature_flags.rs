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
    query.require_name_order()?;
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
    let payload = payload.into_inner();
    let base = state.external_url.clone();
    let body = state
        .db
        .run(move |conn| {
            // CC's order: unknown flag (404), then not an admin (403), then the body (422).
            store::reference_data::find_flag(conn, &name)?
                .ok_or_else(|| ApiError::not_found("Feature flag"))?;
            if !user.is_admin() {
                return Err(ApiError::forbidden());
            }
            let (enabled, message) = parse_update(&payload)?;
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

/// Most characters CC allows in a flag's `custom_error_message`.
const MAX_CUSTOM_ERROR_MESSAGE: usize = 250;

/// What a PATCH changes: `enabled` when given, and the custom message when given
/// (`Some(None)` clears it).
type FlagChange = (Option<bool>, Option<Option<String>>);

/// Validates a PATCH body as CC's FeatureFlagsUpdateMessage does.
fn parse_update(payload: &Value) -> Result<FlagChange, ApiError> {
    let object = body::object(payload, &["enabled", "custom_error_message"])?;
    // CC validates `enabled` whenever it is given, so `null` is not a boolean either.
    let enabled = match object.get("enabled") {
        None => None,
        Some(Value::Bool(enabled)) => Some(*enabled),
        Some(_) => return Err(ApiError::unprocessable("Enabled must be a boolean")),
    };
    let message = match object.get("custom_error_message") {
        None => None,
        Some(Value::Null) => Some(None),
        Some(Value::String(text)) if text.is_empty() => {
            return Err(ApiError::unprocessable(
                "Custom error message is too short (minimum is 1 character)",
            ))
        }
        Some(Value::String(text)) if text.chars().count() > MAX_CUSTOM_ERROR_MESSAGE => {
            return Err(ApiError::unprocessable(format!(
                "Custom error message is too long (maximum is {MAX_CUSTOM_ERROR_MESSAGE} characters)"
            )))
        }
        // CC's FF_ERROR_MESSAGE_REGEX: printable characters only.
        Some(Value::String(text)) if text.chars().any(char::is_control) => {
            return Err(ApiError::unprocessable("error_message format"))
        }
        Some(Value::String(text)) => Some(Some(text.clone())),
        Some(_) => {
            return Err(ApiError::unprocessable(
                "Custom error message must be a string",
            ))
        }
    };
    Ok((enabled, message))
}
