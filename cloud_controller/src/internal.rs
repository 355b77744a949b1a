//! The internal API DEAs use while staging, behind Basic auth with the `internal_api`
//! credentials (never UAA tokens): package, droplet and admin buildpack downloads, and the
//! droplet upload (a raw `.tgz` body streamed into the blob store under `droplets/<guid>`), and
//! the syslog drain list loggregator reads (`/internal/v4/syslog_drain_urls`).

use actix_web::{web, HttpRequest, HttpResponse};
use futures_util::StreamExt;
use sha1::Digest;

use crate::app::{resource, AppState};
use crate::blobstore::BlobKey;
use crate::error::{ApiError, ErrorKind};
use crate::store;

/// Registers the internal routes.
pub fn configure(config: &mut web::ServiceConfig) {
    config
        .service(resource("/internal/v3/packages/{guid}/download").route(web::get().to(package)))
        .service(resource("/internal/v3/builds/{guid}/droplet").route(web::post().to(upload)))
        .service(resource("/internal/v3/droplets/{guid}/download").route(web::get().to(droplet)))
        .service(
            resource("/internal/v3/buildpacks/{guid}/download").route(web::get().to(buildpack)),
        )
        .service(
            resource("/internal/v4/syslog_drain_urls").route(web::get().to(syslog_drain_urls)),
        );
}

fn authorize(state: &AppState, request: &HttpRequest) -> Result<(), ApiError> {
    let header = request
        .headers()
        .get(actix_web::http::header::AUTHORIZATION)
        .and_then(|value| value.to_str().ok());
    if state.stager.credentials().accepts(header) {
        Ok(())
    } else {
        Err(ApiError::plain(ErrorKind::NotAuthenticated))
    }
}

async fn blob(
    state: &AppState,
    key: BlobKey,
    what: &str,
    content_type: &str,
) -> Result<HttpResponse, ApiError> {
    if key.path().is_none() {
        return Err(ApiError::not_found(what));
    }
    let bits = state
        .blobs
        .get(&key)
        .await?
        .ok_or_else(|| ApiError::not_found(what))?;
    Ok(HttpResponse::Ok().content_type(content_type).body(bits))
}

async fn package(
    state: web::Data<AppState>,
    request: HttpRequest,
    path: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    authorize(&state, &request)?;
    blob(
        &state,
        BlobKey::Package(path.into_inner()),
        "Package",
        "application/zip",
    )
    .await
}

async fn droplet(
    state: web::Data<AppState>,
    request: HttpRequest,
    path: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    authorize(&state, &request)?;
    blob(
        &state,
        BlobKey::Droplet(path.into_inner()),
        "Droplet",
        "application/octet-stream",
    )
    .await
}

async fn buildpack(
    state: web::Data<AppState>,
    request: HttpRequest,
    path: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    authorize(&state, &request)?;
    blob(
        &state,
        BlobKey::Buildpack(path.into_inner()),
        "Buildpack",
        "application/zip",
    )
    .await
}

/// CC's `GET /internal/v4/syslog_drain_urls?batch_size=N&next_id=M`: apps with drain URLs from
/// their service bindings, a batch at a time.
async fn syslog_drain_urls(
    state: web::Data<AppState>,
    request: HttpRequest,
) -> Result<HttpResponse, ApiError> {
    authorize(&state, &request)?;
    let mut batch_size: i64 = 50;
    let mut next_id: i64 = 0;
    for (key, value) in crate::query::query_pairs(&request)? {
        let number = || {
            value
                .parse::<i64>()
                .ok()
                .filter(|number| *number >= 0)
                .ok_or_else(|| ApiError::bad_query(format!("{key} must be a non-negative integer")))
        };
        match key.as_str() {
            "batch_size" => batch_size = number()?,
            "next_id" => next_id = number()?,
            _ => {}
        }
    }
    let body = state
        .db
        .run(move |conn| store::services::syslog_drain_urls(conn, batch_size, next_id))
        .await?;
    Ok(HttpResponse::Ok().json(body))
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|byte| format!("{byte:02x}")).collect()
}

async fn upload(
    state: web::Data<AppState>,
    request: HttpRequest,
    path: web::Path<String>,
    mut payload: web::Payload,
) -> Result<HttpResponse, ApiError> {
    authorize(&state, &request)?;
    let build_guid = path.into_inner();
    let lookup = build_guid.clone();
    let build = state
        .db
        .run(move |conn| store::builds::find_build(conn, &lookup))
        .await?
        .ok_or_else(|| ApiError::not_found("Build"))?;
    if build.state != store::builds::STAGING {
        return Err(ApiError::unprocessable("The build is not staging"));
    }
    let droplet_guid = build.droplet_guid.clone().unwrap_or_else(store::new_guid);
    let mut writer = state
        .blobs
        .writer(&BlobKey::Droplet(droplet_guid.clone()))
        .await?;
    let mut sha1 = sha1::Sha1::new();
    let mut sha256 = sha2::Sha256::new();
    while let Some(chunk) = payload.next().await {
        let chunk = match chunk {
            Ok(chunk) => chunk,
            Err(error) => {
                writer.abort().await;
                return Err(ApiError::with_args(
                    ErrorKind::BadRequest,
                    &[&format!("reading the droplet failed: {error}")],
                ));
            }
        };
        sha1.update(&chunk);
        sha256.update(&chunk);
        if let Err(error) = writer.write(&chunk).await {
            writer.abort().await;
            return Err(error);
        }
    }
    writer.finish().await?;
    let sha1 = hex(&sha1.finalize());
    let sha256 = hex(&sha256.finalize());
    tracing::info!(build = %build_guid, droplet = %droplet_guid, %sha1, "droplet uploaded");
    state
        .db
        .run(move |conn| {
            store::builds::attach_droplet(conn, &build_guid, &droplet_guid, &sha1, &sha256)
        })
        .await?;
    Ok(HttpResponse::Created().json(serde_json::json!({})))
}
