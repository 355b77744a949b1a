//! Manifests: `POST /v3/spaces/:guid/actions/apply_manifest` (a job), `POST
//! /v3/spaces/:guid/manifest_diff` and `GET /v3/apps/:guid/manifest`. Bodies are YAML
//! (`application/x-yaml`, JSON is YAML too); the work is in `crate::manifest`.

use actix_web::{web, HttpResponse};
use serde_json::json;

use crate::app::{resource, AppState};
use crate::auth::CurrentUser;
use crate::error::ApiError;
use crate::manifest;
use crate::permissions::Permissions;
use crate::store;
use crate::v3::apps::visible_app;
use crate::v3::spaces::visible_space;

/// Registers the manifest routes.
pub fn configure(config: &mut web::ServiceConfig) {
    config
        .service(
            resource("/v3/spaces/{guid}/actions/apply_manifest")
                .route(web::post().to(apply_manifest)),
        )
        .service(resource("/v3/spaces/{guid}/manifest_diff").route(web::post().to(manifest_diff)))
        .service(resource("/v3/apps/{guid}/manifest").route(web::get().to(app_manifest)));
}

/// The space when the caller may write to it: invisible is 404, read-only 403.
fn writable_space(
    conn: &mut crate::db::DbConn,
    user: &CurrentUser,
    guid: &str,
) -> Result<crate::db::models::SpaceRow, ApiError> {
    let permissions = Permissions::load(conn, user)?;
    let (space, _org) = visible_space(conn, &permissions, guid)?;
    if !permissions.can_write_to_space(space.id) {
        return Err(ApiError::forbidden());
    }
    Ok(space)
}

async fn apply_manifest(
    state: web::Data<AppState>,
    user: CurrentUser,
    path: web::Path<String>,
    payload: web::Bytes,
) -> Result<HttpResponse, ApiError> {
    let guid = path.into_inner();
    let parsed = manifest::parse(&payload);
    let default_stack = state.default_stack.clone();
    let user_guid = user.guid.clone();
    let (job_guid, to_bind) = state
        .db
        .run(move |conn| {
            let space = writable_space(conn, &user, &guid)?;
            let parsed = parsed?;
            let mut apps = Vec::new();
            let mut to_bind = Vec::new();
            for app_manifest in &parsed.applications {
                let app = manifest::find_or_create_app(conn, &space, app_manifest, &default_stack)?;
                let services = crate::service_jobs::manifest_services(
                    app_manifest
                        .raw
                        .get("services")
                        .unwrap_or(&serde_json::Value::Null),
                )
                .map_err(ApiError::unprocessable)?;
                if !services.is_empty() {
                    to_bind.push((app.guid.clone(), services));
                }
                apps.push(app);
            }
            let job = store::jobs::create(conn, "space.apply_manifest", "space", &space.guid)?;
            let applied =
                apps.iter()
                    .zip(&parsed.applications)
                    .try_for_each(|(app, app_manifest)| {
                        manifest::apply(conn, &space, app, app_manifest)
                    });
            if let Err(error) = &applied {
                store::jobs::finish(conn, &job, Some(error))?;
                return Ok((job, Vec::new()));
            }
            if to_bind.is_empty() {
                store::jobs::finish(conn, &job, None)?;
            }
            Ok((job, to_bind))
        })
        .await?;
    if !to_bind.is_empty() {
        // `services:` bind the named instances (at their brokers) once the apps exist; the job
        // finishes after, with the first failure ("For service 'X': …").
        let mut failure = None;
        for (app_guid, services) in to_bind {
            if let Err(error) = state
                .services
                .bind_manifest_services(&app_guid, services, Some(user_guid.clone()))
                .await
            {
                failure = Some(error);
                break;
            }
        }
        let job = job_guid.clone();
        state
            .db
            .run(move |conn| store::jobs::finish(conn, &job, failure.as_ref()))
            .await?;
    }
    Ok(crate::v3::accepted_job(&state.external_url, &job_guid))
}

async fn manifest_diff(
    state: web::Data<AppState>,
    user: CurrentUser,
    path: web::Path<String>,
    payload: web::Bytes,
) -> Result<HttpResponse, ApiError> {
    let guid = path.into_inner();
    let parsed = manifest::parse(&payload);
    let diff = state
        .db
        .run(move |conn| {
            let space = writable_space(conn, &user, &guid)?;
            manifest::diff(conn, &space, &parsed?)
        })
        .await?;
    Ok(HttpResponse::Created().json(json!({"diff": diff})))
}

async fn app_manifest(
    state: web::Data<AppState>,
    user: CurrentUser,
    path: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let guid = path.into_inner();
    let text = state
        .db
        .run(move |conn| {
            let permissions = Permissions::load(conn, &user)?;
            let (app, space, _org) = visible_app(conn, &permissions, &guid)?;
            if !permissions.can_read_secrets_in_space(space.id) {
                return Err(ApiError::forbidden());
            }
            let entry = manifest::app_manifest(conn, &app)?;
            manifest::to_yaml(vec![entry])
        })
        .await?;
    Ok(HttpResponse::Ok()
        .content_type("application/x-yaml")
        .body(text))
}
