//! `/v2/config/feature_flags`: a plain array, one flag, and PUT (admin, 200).

use actix_web::{web, HttpResponse};
use serde_json::{json, Value};

use crate::app::{resource, AppState};
use crate::auth::CurrentUser;
use crate::db::models::FeatureFlagRow;
use crate::error::{ApiError, ErrorKind};
use crate::store;

/// Registers the v2 feature-flag routes.
pub fn configure(config: &mut web::ServiceConfig) {
    config
        .service(resource("/v2/config/feature_flags").route(web::get().to(list)))
        .service(
            resource("/v2/config/feature_flags/{name}")
                .route(web::get().to(get))
                .route(web::put().to(update)),
        );
}

fn render(flag: &FeatureFlagRow) -> Value {
    json!({"name": flag.name, "enabled": flag.enabled, "error_message": flag.error_message, "url": format!("/v2/config/feature_flags/{}", flag.name)})
}

fn not_found(name: &str) -> ApiError {
    ApiError::with_args(ErrorKind::FeatureFlagNotFound, &[name])
}

async fn list(state: web::Data<AppState>, _user: CurrentUser) -> Result<HttpResponse, ApiError> {
    let flags = state.db.run(store::reference_data::list_flags).await?;
    Ok(HttpResponse::Ok().json(flags.iter().map(render).collect::<Vec<_>>()))
}

async fn get(
    state: web::Data<AppState>,
    _user: CurrentUser,
    path: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let name = path.into_inner();
    let flag = state
        .db
        .run(move |conn| {
            store::reference_data::find_flag(conn, &name)?.ok_or_else(|| not_found(&name))
        })
        .await?;
    Ok(HttpResponse::Ok().json(render(&flag)))
}

/// `enabled` and `error_message` of a PUT, as CC's controller reads them: both are assigned
/// (an absent `error_message` clears a custom one), `enabled` must be present, and a message must
/// be printable text, not blank (CC's format validation); other keys are ignored.
fn parse_update(payload: &Value) -> Result<(bool, Option<String>), ApiError> {
    let object = super::body_object(payload)?;
    let invalid = |detail: &str| ApiError::with_args(ErrorKind::FeatureFlagInvalid, &[detail]);
    let enabled = match object.get("enabled") {
        Some(Value::Bool(enabled)) => *enabled,
        None | Some(Value::Null) => return Err(invalid("enabled presence")),
        Some(_) => return Err(invalid("enabled must be a boolean")),
    };
    let message = match object.get("error_message") {
        None | Some(Value::Null) => None,
        Some(Value::String(text))
            if text.trim().is_empty() || text.chars().any(char::is_control) =>
        {
            return Err(invalid("error_message format"))
        }
        Some(Value::String(text)) => Some(text.clone()),
        Some(_) => return Err(invalid("error_message must be a string")),
    };
    Ok((enabled, message))
}

async fn update(
    state: web::Data<AppState>,
    user: CurrentUser,
    path: web::Path<String>,
    payload: web::Json<Value>,
) -> Result<HttpResponse, ApiError> {
    let name = path.into_inner();
    // CC checks access, then the flag's name, then the body.
    if !user.is_admin() {
        return Err(ApiError::forbidden());
    }
    let flag = state
        .db
        .run(move |conn| {
            store::reference_data::find_flag(conn, &name)?.ok_or_else(|| not_found(&name))?;
            let (enabled, message) = parse_update(&payload)?;
            store::reference_data::update_flag(conn, &name, Some(enabled), Some(message.as_deref()))
        })
        .await?;
    Ok(HttpResponse::Ok().json(render(&flag)))
}
