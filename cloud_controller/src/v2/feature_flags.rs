//! `/v2/config/feature_flags`: a plain array, one flag, and PUT (admin, 200).

use actix_web::{web, HttpResponse};
use serde_json::{json, Value};

use crate::app::{resource, AppState};
use crate::auth::CurrentUser;
use crate::body;
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

async fn update(
    state: web::Data<AppState>,
    user: CurrentUser,
    path: web::Path<String>,
    payload: web::Json<Value>,
) -> Result<HttpResponse, ApiError> {
    let name = path.into_inner();
    let object = body::object(&payload, &["enabled", "error_message"])
        .map_err(|error| ApiError::with_args(ErrorKind::FeatureFlagInvalid, &[&error.detail]))?;
    let enabled = body::optional_bool(object, "enabled")?;
    let message = match object.get("error_message") {
        None => None,
        Some(Value::Null) => Some(None),
        Some(Value::String(text)) => Some(Some(text.clone())),
        Some(_) => {
            return Err(ApiError::with_args(
                ErrorKind::FeatureFlagInvalid,
                &["error_message must be a string"],
            ))
        }
    };
    let flag = state
        .db
        .run(move |conn| {
            store::reference_data::find_flag(conn, &name)?.ok_or_else(|| not_found(&name))?;
            if !user.is_admin() {
                return Err(ApiError::forbidden());
            }
            store::reference_data::update_flag(
                conn,
                &name,
                enabled,
                message.as_ref().map(|message| message.as_deref()),
            )
        })
        .await?;
    Ok(HttpResponse::Ok().json(render(&flag)))
}
