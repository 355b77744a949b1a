//! `GET /v2/jobs/:guid`: unknown or long-finished jobs answer the `guid "0"` finished job, as CC does.

use actix_web::{web, HttpResponse};
use serde_json::json;

use crate::app::{resource, AppState};
use crate::auth::CurrentUser;
use crate::error::ApiError;
use crate::store;

/// Registers the v2 job route.
pub fn configure(config: &mut web::ServiceConfig) {
    config.service(resource("/v2/jobs/{guid}").route(web::get().to(get)));
}

/// The v2 envelope of a job in v2 status words.
pub(crate) fn render(job: Option<&crate::db::models::JobRow>) -> serde_json::Value {
    let Some(job) = job else {
        return json!({"metadata": {"guid": "0", "created_at": "1970-01-01T00:00:00Z", "url": "/v2/jobs/0"},
                      "entity": {"guid": "0", "status": "finished"}});
    };
    let status = match job.state.as_str() {
        store::jobs::COMPLETE => "finished",
        store::jobs::FAILED => "failed",
        _ => "running",
    };
    let mut entity = json!({"guid": job.guid, "status": status});
    if status == "failed" {
        let errors: serde_json::Value = serde_json::from_str(&job.errors).unwrap_or_default();
        let first = &errors[0];
        entity["error"] =
            json!("Use of entity>error is deprecated in favor of entity>error_details.");
        entity["error_details"] = json!({"code": first["code"], "description": first["detail"], "error_code": first["title"]});
    }
    json!({"metadata": {"guid": job.guid, "created_at": job.created_at, "url": format!("/v2/jobs/{}", job.guid)}, "entity": entity})
}

async fn get(
    state: web::Data<AppState>,
    _user: CurrentUser,
    path: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let guid = path.into_inner();
    let job = state
        .db
        .run(move |conn| store::jobs::find(conn, &guid))
        .await?;
    Ok(HttpResponse::Ok().json(render(job.as_ref())))
}
