//! `GET /v3/jobs/:guid`.

use actix_web::{web, HttpResponse};

use crate::app::{resource, AppState};
use crate::auth::CurrentUser;
use crate::error::ApiError;
use crate::store;
use crate::v3::present;

/// Registers the job route.
pub fn configure(config: &mut web::ServiceConfig) {
    config.service(resource("/v3/jobs/{guid}").route(web::get().to(get)));
}

async fn get(
    state: web::Data<AppState>,
    _user: CurrentUser,
    path: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let guid = path.into_inner();
    let base = state.external_url.clone();
    let body = state
        .db
        .run(move |conn| {
            let job = store::jobs::find(conn, &guid)?.ok_or_else(|| ApiError::not_found("Job"))?;
            Ok(present::job(&base, &job))
        })
        .await?;
    Ok(HttpResponse::Ok().json(body))
}
