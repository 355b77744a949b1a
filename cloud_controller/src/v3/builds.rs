//! `/v3/builds`: create and get. A build is recorded STAGING with the app's lifecycle and the
//! web process's memory and disk, then handed to [`crate::staging::Stager`], which stages it on
//! a DEA in the background and moves it to STAGED or FAILED. The create answers once that
//! happened when it takes less than `sync_wait_secs`, else with the build still STAGING.

use actix_web::{web, HttpResponse};
use serde_json::Value;

use crate::app::{resource, AppState};
use crate::auth::CurrentUser;
use crate::body;
use crate::error::{ApiError, ErrorKind};
use crate::permissions::Permissions;
use crate::staging::StagingJob;
use crate::store;
use crate::store::builds::NewBuild;
use crate::v3::present;

/// Registers the build routes.
pub fn configure(config: &mut web::ServiceConfig) {
    config
        .service(resource("/v3/builds").route(web::post().to(create)))
        .service(resource("/v3/builds/{guid}").route(web::get().to(get)));
}

async fn create(
    state: web::Data<AppState>,
    user: CurrentUser,
    payload: web::Json<Value>,
) -> Result<HttpResponse, ApiError> {
    let object = body::object(
        &payload,
        &["package", "staging_memory_in_mb", "staging_disk_in_mb"],
    )?;
    let package_guid = object
        .get("package")
        .and_then(|package| package.get("guid"))
        .and_then(Value::as_str)
        .ok_or_else(|| ApiError::unprocessable("Package guid must be a string"))?
        .to_owned();
    let positive = |field: &str, label: &str| -> Result<Option<i32>, ApiError> {
        match object.get(field) {
            None | Some(Value::Null) => Ok(None),
            Some(value) => value
                .as_i64()
                .and_then(|value| i32::try_from(value).ok())
                .filter(|value| *value > 0)
                .map(Some)
                .ok_or_else(|| ApiError::unprocessable(format!("{label} must be greater than 0"))),
        }
    };
    let memory = positive("staging_memory_in_mb", "Staging memory in mb")?;
    let disk = positive("staging_disk_in_mb", "Staging disk in mb")?;
    let base = state.external_url.clone();
    let default_stack = state.default_stack.clone();
    let (body, job) = state
        .db
        .run(move |conn| {
            let permissions = Permissions::load(conn, &user)?;
            let invalid = || {
                ApiError::unprocessable("Unable to use package. Ensure that the package exists and you have access to it.")
            };
            let package = store::packages::find(conn, &package_guid)?.ok_or_else(invalid)?;
            let app = store::apps::find_by_id(conn, package.app_id)?.ok_or_else(invalid)?;
            let space = store::spaces::find_by_id(conn, app.space_id)?.ok_or_else(invalid)?;
            if !permissions.can_read_space(space.id, space.organization_id) {
                return Err(invalid());
            }
            if !permissions.can_write_to_space(space.id) {
                return Err(ApiError::forbidden());
            }
            let org = store::orgs::find_by_id(conn, space.organization_id)?.ok_or_else(invalid)?;
            if package.state != store::packages::READY {
                return Err(ApiError::with_args(
                    ErrorKind::BadRequest,
                    &["Cannot stage package whose state is not ready."],
                ));
            }
            let web = store::apps::find_process_of_type(conn, app.id, "web")?;
            let default_memory = web.as_ref().map_or(1024, |web| web.memory_in_mb);
            let default_disk = web.as_ref().map_or(1024, |web| web.disk_in_mb);
            let build = store::builds::create_build(
                conn,
                &NewBuild {
                    app_id: app.id,
                    package_id: package.id,
                    buildpacks: &app.buildpacks,
                    stack: app.stack.as_deref(),
                    staging_memory_in_mb: memory.unwrap_or(default_memory),
                    staging_disk_in_mb: disk.unwrap_or(default_disk),
                    created_by_guid: &user.guid,
                    created_by_name: user.presentation_name(),
                },
            )?;
            let job = StagingJob {
                build_guid: build.guid.clone(),
                app_guid: app.guid.clone(),
                package_guid: package.guid.clone(),
                stack: app.stack.clone().unwrap_or(default_stack),
                buildpacks: serde_json::from_str::<Vec<String>>(&app.buildpacks)
                    .unwrap_or_default(),
                environment: environment(&app.environment_variables),
                memory_mb: build.staging_memory_in_mb,
                disk_mb: build.staging_disk_in_mb,
                services: store::services::vcap_services(conn, &app.guid)?,
                vcap_application: serde_json::json!({
                    "application_id": app.guid,
                    "application_name": app.name,
                    "space_id": space.guid,
                    "space_name": space.name,
                    "organization_id": org.guid,
                    "organization_name": org.name,
                }),
            };
            Ok((present::build(&base, &build, &app.guid, &package.guid), job))
        })
        .await?;
    let (build_guid, app_guid, package_guid) = (
        job.build_guid.clone(),
        job.app_guid.clone(),
        job.package_guid.clone(),
    );
    state
        .api_logs
        .build_creating(&crate::app_logs::identity_from_vcap(
            &job.app_guid,
            &job.vcap_application,
        ));
    let finished = state.stager.dispatch(state.db.clone(), job);
    // Fast staging is answered as done, so the CLI's first (immediate) poll needs no second.
    if tokio::time::timeout(state.sync_wait, finished)
        .await
        .is_ok()
    {
        // Let the CLI's log stream show the staging output before it sees STAGED.
        tokio::time::sleep(state.staging_log_drain).await;
        let base = state.external_url.clone();
        let done = state
            .db
            .run(move |conn| {
                Ok(store::builds::find_build(conn, &build_guid)?
                    .map(|build| present::build(&base, &build, &app_guid, &package_guid)))
            })
            .await?;
        if let Some(done) = done {
            return Ok(HttpResponse::Created().json(done));
        }
    }
    Ok(HttpResponse::Created().json(body))
}

/// The app's environment variables as `K=V` strings (non-string values as JSON).
fn environment(json: &str) -> Vec<String> {
    serde_json::from_str::<serde_json::Map<String, Value>>(json)
        .unwrap_or_default()
        .into_iter()
        .map(|(key, value)| match value {
            Value::String(text) => format!("{key}={text}"),
            other => format!("{key}={other}"),
        })
        .collect()
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
            let not_found = || ApiError::not_found("Build");
            let build = store::builds::find_build(conn, &guid)?.ok_or_else(not_found)?;
            let app = store::apps::find_by_id(conn, build.app_id)?.ok_or_else(not_found)?;
            let space = store::spaces::find_by_id(conn, app.space_id)?.ok_or_else(not_found)?;
            if !permissions.can_read_space(space.id, space.organization_id) {
                return Err(not_found());
            }
            let package_guid = store::packages::find_by_id(conn, build.package_id)?
                .map(|package| package.guid)
                .unwrap_or_default();
            Ok(present::build(&base, &build, &app.guid, &package_guid))
        })
        .await?;
    Ok(HttpResponse::Ok().json(body))
}
