//! `/v3/packages` (create, get, list, upload, download), `/v3/apps/:guid/packages` and
//! `/v3/resource_matches`. An upload is validated completely (see [`crate::package_zip`])
//! before anything is stored; files matched from the resource cache are merged into the final
//! zip, every uploaded file of at least one byte goes into the cache by SHA-1, and the package
//! is READY when the request answers.

use std::collections::HashMap;

use actix_web::{web, HttpRequest, HttpResponse};
use serde_json::{json, Value};
use sha2::Digest;

use crate::app::{resource, AppState};
use crate::auth::CurrentUser;
use crate::blobstore::{is_sha1, BlobKey};
use crate::body;
use crate::db::models::{AppRow, PackageRow, SpaceRow};
use crate::db::DbConn;
use crate::error::ApiError;
use crate::package_zip::{self, Entry};
use crate::permissions::Permissions;
use crate::query::{list_body, ListQuery};
use crate::store;
use crate::v3::apps::visible_app;
use crate::v3::present;

/// Registers the package routes.
pub fn configure(config: &mut web::ServiceConfig) {
    config
        .service(
            resource("/v3/packages")
                .route(web::get().to(list))
                .route(web::post().to(create)),
        )
        .service(resource("/v3/packages/{guid}").route(web::get().to(get)))
        .service(resource("/v3/packages/{guid}/upload").route(web::post().to(upload)))
        .service(resource("/v3/packages/{guid}/download").route(web::get().to(download)))
        .service(resource("/v3/apps/{guid}/packages").route(web::get().to(list_for_app)))
        .service(resource("/v3/resource_matches").route(web::post().to(resource_matches)));
}

/// The package with its app and space when the caller may see the space; otherwise 404
/// "Package not found".
fn visible_package(
    conn: &mut DbConn,
    permissions: &Permissions,
    guid: &str,
) -> Result<(PackageRow, AppRow, SpaceRow), ApiError> {
    let not_found = || ApiError::not_found("Package");
    let package = store::packages::find(conn, guid)?.ok_or_else(not_found)?;
    let app = store::apps::find_by_id(conn, package.app_id)?.ok_or_else(not_found)?;
    let space = store::spaces::find_by_id(conn, app.space_id)?.ok_or_else(not_found)?;
    if !permissions.can_read_space(space.id, space.organization_id) {
        return Err(not_found());
    }
    Ok((package, app, space))
}

async fn create(
    state: web::Data<AppState>,
    user: CurrentUser,
    payload: web::Json<Value>,
) -> Result<HttpResponse, ApiError> {
    let object = body::object(&payload, &["type", "relationships"])?;
    match object.get("type").and_then(Value::as_str) {
        Some(store::packages::BITS) => {}
        Some("docker") => {
            return Err(ApiError::unprocessable(
                "Type 'docker' is not supported; Kiln stages bits packages only",
            ))
        }
        _ => {
            return Err(ApiError::unprocessable(
                "Type must be one of 'bits', 'docker'",
            ))
        }
    }
    let app_guid = body::relationship_guid(object, "app")?.ok_or_else(|| {
        ApiError::unprocessable(
            "Relationships 'relationships' must include one or more valid relationships",
        )
    })?;
    let base = state.external_url.clone();
    let body = state
        .db
        .run(move |conn| {
            let permissions = Permissions::load(conn, &user)?;
            let (app, space, _org) = visible_app(conn, &permissions, &app_guid).map_err(|_| {
                ApiError::unprocessable(
                    "App is invalid. Ensure it exists and you have access to it.",
                )
            })?;
            if !permissions.can_write_to_space(space.id) {
                return Err(ApiError::forbidden());
            }
            let package = store::packages::create(conn, app.id)?;
            Ok(present::package(&base, &package, &app.guid))
        })
        .await?;
    Ok(HttpResponse::Created().json(body))
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
            let (package, app, _space) = visible_package(conn, &permissions, &guid)?;
            Ok(present::package(&base, &package, &app.guid))
        })
        .await?;
    Ok(HttpResponse::Ok().json(body))
}

async fn list(
    state: web::Data<AppState>,
    user: CurrentUser,
    request: HttpRequest,
) -> Result<HttpResponse, ApiError> {
    let query = ListQuery::parse(
        &request,
        &[
            "guids",
            "app_guids",
            "states",
            "types",
            "space_guids",
            "organization_guids",
            "label_selector",
        ],
        &[],
    )?;
    let base = state.external_url.clone();
    let body = state
        .db
        .run(move |conn| {
            let permissions = Permissions::load(conn, &user)?;
            let orgs: HashMap<i32, String> = store::orgs::list(conn)?
                .into_iter()
                .map(|org| (org.id, org.guid))
                .collect();
            let spaces: HashMap<i32, SpaceRow> = store::spaces::list(conn)?
                .into_iter()
                .filter(|space| permissions.can_read_space(space.id, space.organization_id))
                .map(|space| (space.id, space))
                .collect();
            let apps: HashMap<i32, AppRow> = store::apps::list(conn)?
                .into_iter()
                .filter(|app| spaces.contains_key(&app.space_id))
                .map(|app| (app.id, app))
                .collect();
            let mut packages: Vec<(PackageRow, &AppRow)> = store::packages::list(conn)?
                .into_iter()
                .filter_map(|package| {
                    let app = apps.get(&package.app_id)?;
                    Some((package, app))
                })
                .filter(|(package, app)| {
                    let space = &spaces[&app.space_id];
                    query.matches("guids", &package.guid)
                        && query.matches("app_guids", &app.guid)
                        && query.matches("states", &package.state)
                        && query.matches("types", &package.package_type)
                        && query.matches("space_guids", &space.guid)
                        && query.matches(
                            "organization_guids",
                            orgs.get(&space.organization_id).map_or("", String::as_str),
                        )
                })
                .collect();
            query.sort(
                &mut packages,
                |(package, _)| &package.guid,
                |(package, _)| &package.created_at,
                |(package, _)| &package.updated_at,
            );
            let (page, pagination) = query.page_of(packages, &base, "/v3/packages");
            let resources = page
                .iter()
                .map(|(package, app)| present::package(&base, package, &app.guid))
                .collect();
            Ok(list_body(pagination, resources, None))
        })
        .await?;
    Ok(HttpResponse::Ok().json(body))
}

async fn list_for_app(
    state: web::Data<AppState>,
    user: CurrentUser,
    path: web::Path<String>,
    request: HttpRequest,
) -> Result<HttpResponse, ApiError> {
    let query = ListQuery::parse(
        &request,
        &["guids", "states", "types", "label_selector"],
        &[],
    )?;
    let guid = path.into_inner();
    let base = state.external_url.clone();
    let list_path = request.path().to_owned();
    let body = state
        .db
        .run(move |conn| {
            let permissions = Permissions::load(conn, &user)?;
            let (app, _space, _org) = visible_app(conn, &permissions, &guid)?;
            let mut packages: Vec<PackageRow> = store::packages::list(conn)?
                .into_iter()
                .filter(|package| {
                    package.app_id == app.id
                        && query.matches("guids", &package.guid)
                        && query.matches("states", &package.state)
                        && query.matches("types", &package.package_type)
                })
                .collect();
            query.sort(
                &mut packages,
                |package| &package.guid,
                |package| &package.created_at,
                |package| &package.updated_at,
            );
            let (page, pagination) = query.page_of(packages, &base, &list_path);
            let resources = page
                .iter()
                .map(|package| present::package(&base, package, &app.guid))
                .collect();
            Ok(list_body(pagination, resources, None))
        })
        .await?;
    Ok(HttpResponse::Ok().json(body))
}

/// One part of a `multipart/form-data` body.
struct Part<'a> {
    name: String,
    data: &'a [u8],
}

fn find(haystack: &[u8], needle: &[u8], from: usize) -> Option<usize> {
    if from > haystack.len() || needle.is_empty() {
        return None;
    }
    let first = needle[0];
    let mut position = from;
    while position + needle.len() <= haystack.len() {
        let offset = haystack[position..]
            .iter()
            .position(|byte| *byte == first)?;
        position += offset;
        if haystack[position..].starts_with(needle) {
            return Some(position);
        }
        position += 1;
    }
    None
}

/// Splits a fully read `multipart/form-data` body into its named parts.
fn multipart_parts<'a>(content_type: &str, body: &'a [u8]) -> Result<Vec<Part<'a>>, ApiError> {
    let invalid = |why: &str| ApiError::parse(format!("invalid multipart body: {why}"));
    let boundary = content_type
        .split(';')
        .map(str::trim)
        .find_map(|parameter| parameter.strip_prefix("boundary="))
        .map(|boundary| boundary.trim_matches('"'))
        .filter(|boundary| !boundary.is_empty())
        .ok_or_else(|| invalid("the Content-Type has no multipart boundary"))?;
    let delimiter = format!("--{boundary}").into_bytes();
    let mut parts = Vec::new();
    let mut position = find(body, &delimiter, 0).ok_or_else(|| invalid("no boundary"))?;
    loop {
        position += delimiter.len();
        if body[position..].starts_with(b"--") {
            return Ok(parts);
        }
        if !body[position..].starts_with(b"\r\n") {
            return Err(invalid("malformed boundary line"));
        }
        position += 2;
        let headers_end = find(body, b"\r\n\r\n", position)
            .ok_or_else(|| invalid("unterminated part headers"))?;
        let headers = String::from_utf8_lossy(&body[position..headers_end]);
        let name = headers
            .split("\r\n")
            .filter(|line| {
                line.to_ascii_lowercase()
                    .starts_with("content-disposition:")
            })
            .flat_map(|line| line.split(';'))
            .find_map(|parameter| parameter.trim().strip_prefix("name="))
            .map(|name| name.trim_matches('"').to_owned())
            .ok_or_else(|| invalid("a part has no name"))?;
        let data_start = headers_end + 4;
        let mut closing = b"\r\n".to_vec();
        closing.extend_from_slice(&delimiter);
        let data_end =
            find(body, &closing, data_start).ok_or_else(|| invalid("unterminated part"))?;
        parts.push(Part {
            name,
            data: &body[data_start..data_end],
        });
        position = data_end + 2;
    }
}

/// A file the client says the cache already has.
#[derive(Debug, Clone)]
struct CachedResource {
    path: String,
    sha1: String,
    size: u64,
    mode: u32,
}

/// Parses the `resources` field: v3 entries `{path, checksum: {value}, size_in_bytes, mode}` or
/// v2 entries `{fn, sha1, size, mode}`; `mode` is an octal string.
fn parse_resources(data: &[u8]) -> Result<Vec<CachedResource>, ApiError> {
    let value: Value = serde_json::from_slice(data).map_err(|error| {
        ApiError::unprocessable(format!("Resources must be a JSON array: {error}"))
    })?;
    let items = value
        .as_array()
        .ok_or_else(|| ApiError::unprocessable("Resources must be a JSON array"))?;
    items.iter().map(parse_resource).collect()
}

fn parse_resource(item: &Value) -> Result<CachedResource, ApiError> {
    let invalid = |why: &str| ApiError::unprocessable(format!("Resources entry is invalid: {why}"));
    let path = item
        .get("path")
        .or_else(|| item.get("fn"))
        .and_then(Value::as_str)
        .ok_or_else(|| invalid("path must be a string"))?;
    let path = package_zip::check_path(path).map_err(|why| invalid(&why))?;
    let sha1 = item
        .pointer("/checksum/value")
        .or_else(|| item.get("sha1"))
        .and_then(Value::as_str)
        .filter(|sha1| is_sha1(sha1))
        .ok_or_else(|| invalid("checksum must be a lower-case hex SHA-1"))?;
    let size = item
        .get("size_in_bytes")
        .or_else(|| item.get("size"))
        .and_then(Value::as_u64)
        .ok_or_else(|| invalid("size must be a non-negative integer"))?;
    let mode = match item.get("mode") {
        None | Some(Value::Null) => 0o644,
        Some(Value::String(mode)) => {
            u32::from_str_radix(mode, 8).map_err(|_| invalid("mode must be an octal string"))?
        }
        Some(_) => return Err(invalid("mode must be an octal string")),
    };
    Ok(CachedResource {
        path,
        sha1: sha1.to_owned(),
        size,
        mode: mode & 0o777,
    })
}

async fn upload(
    state: web::Data<AppState>,
    user: CurrentUser,
    path: web::Path<String>,
    request: HttpRequest,
    payload: web::Payload,
) -> Result<HttpResponse, ApiError> {
    let guid = path.into_inner();
    let limits = state.package_limits;
    // Permission and state checks before reading the body.
    let (package, app) = state
        .db
        .run(move |conn| {
            let permissions = Permissions::load(conn, &user)?;
            let (package, app, space) = visible_package(conn, &permissions, &guid)?;
            if !permissions.can_write_to_space(space.id) {
                return Err(ApiError::forbidden());
            }
            if package.state != store::packages::AWAITING_UPLOAD {
                return Err(ApiError::unprocessable(
                    "Package has already been uploaded.",
                ));
            }
            Ok((package, app))
        })
        .await?;
    let overhead = 1024 * 1024;
    let limit = usize::try_from(limits.max_bytes.saturating_add(overhead)).unwrap_or(usize::MAX);
    let body = payload
        .to_bytes_limited(limit)
        .await
        .map_err(|_| {
            ApiError::unprocessable(format!(
                "Invalid package: the upload exceeds the limit of {} bytes",
                limits.max_bytes
            ))
        })?
        .map_err(|error| ApiError::parse(error.to_string()))?;
    let content_type = request
        .headers()
        .get("content-type")
        .and_then(|value| value.to_str().ok())
        .unwrap_or("")
        .to_owned();
    let parts = multipart_parts(&content_type, &body)?;
    let mut cached = Vec::new();
    let mut bits: Option<&[u8]> = None;
    for part in &parts {
        match part.name.as_str() {
            "resources" => cached = parse_resources(part.data)?,
            "bits" => bits = Some(part.data),
            other => {
                return Err(ApiError::unprocessable(format!(
                    "Unknown field(s): '{other}'"
                )))
            }
        }
    }
    if bits.is_none() && cached.is_empty() {
        return Err(ApiError::unprocessable(
            "Upload must include either resources or bits",
        ));
    }
    let bits = bits.map(<[u8]>::to_vec);
    // Validate the uploaded zip completely before anything is stored.
    let uploaded = match bits {
        Some(bits) if !bits.is_empty() => {
            tokio::task::spawn_blocking(move || package_zip::read_upload(&bits, &limits))
                .await
                .map_err(ApiError::internal)?
                .map_err(|why| ApiError::unprocessable(format!("Invalid zip: {why}")))?
        }
        _ => Vec::new(),
    };
    if uploaded.len() + cached.len() > limits.max_entries {
        return Err(ApiError::unprocessable(format!(
            "Invalid zip: the package has more than {} entries",
            limits.max_entries
        )));
    }
    let mut total: u64 = uploaded
        .iter()
        .map(|entry| match entry {
            Entry::File { data, .. } => data.len() as u64,
            _ => 0,
        })
        .sum();
    // Matched files come from the cache, checked against their SHA-1 and size.
    let mut entries = uploaded;
    for resource in &cached {
        total = total.saturating_add(resource.size);
        if total > limits.max_bytes {
            return Err(ApiError::unprocessable(format!(
                "Invalid zip: its contents exceed the limit of {} bytes",
                limits.max_bytes
            )));
        }
        let data = state
            .blobs
            .get(&BlobKey::Resource(resource.sha1.clone()))
            .await?
            .filter(|data| {
                data.len() as u64 == resource.size && package_zip::sha1_hex(data) == resource.sha1
            })
            .ok_or_else(|| {
                ApiError::unprocessable(format!(
                    "Invalid resources: the file {:?} ({}) is not in the resource cache",
                    resource.path, resource.sha1
                ))
            })?;
        entries.push(Entry::File {
            path: resource.path.clone(),
            mode: resource.mode,
            data,
        });
    }
    // Uploaded files go into the resource cache.
    for entry in &entries {
        if let Entry::File { data, .. } = entry {
            if data.is_empty() {
                continue;
            }
            let key = BlobKey::Resource(package_zip::sha1_hex(data));
            if !state.blobs.exists(&key).await? {
                state.blobs.put(&key, data.clone()).await?;
            }
        }
    }
    let zip = tokio::task::spawn_blocking(move || package_zip::build(&entries))
        .await
        .map_err(ApiError::internal)?
        .map_err(ApiError::internal)?;
    let sha256: String = sha2::Sha256::digest(&zip)
        .iter()
        .map(|byte| format!("{byte:02x}"))
        .collect();
    state
        .blobs
        .put(&BlobKey::Package(package.guid.clone()), zip)
        .await?;
    let base = state.external_url.clone();
    let body = state
        .db
        .run(move |conn| {
            let package = store::packages::mark_ready(conn, package.id, &sha256)?;
            Ok(present::package(&base, &package, &app.guid))
        })
        .await?;
    Ok(HttpResponse::Ok().json(body))
}

async fn download(
    state: web::Data<AppState>,
    user: CurrentUser,
    path: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let guid = path.into_inner();
    let package = state
        .db
        .run(move |conn| {
            let permissions = Permissions::load(conn, &user)?;
            let (package, _app, space) = visible_package(conn, &permissions, &guid)?;
            if !permissions.can_read_secrets_in_space(space.id) {
                return Err(ApiError::forbidden());
            }
            if package.state != store::packages::READY {
                return Err(ApiError::unprocessable("Package has no bits to download."));
            }
            Ok(package)
        })
        .await?;
    let bits = state
        .blobs
        .get(&BlobKey::Package(package.guid.clone()))
        .await?
        .ok_or_else(|| ApiError::internal(format!("package {} has no blob", package.guid)))?;
    Ok(HttpResponse::Ok()
        .content_type("application/zip")
        .body(bits))
}

async fn resource_matches(
    state: web::Data<AppState>,
    _user: CurrentUser,
    payload: web::Json<Value>,
) -> Result<HttpResponse, ApiError> {
    let object = body::object(&payload, &["resources"])?;
    let items = object
        .get("resources")
        .and_then(Value::as_array)
        .ok_or_else(|| ApiError::unprocessable("Resources must be an array"))?;
    if items.len() > 5000 {
        return Err(ApiError::unprocessable(
            "Resources array can contain at most 5000 resources",
        ));
    }
    let mut matched = Vec::new();
    for item in items {
        let resource = parse_resource(item)?;
        if resource.size == 0 || resource.size > state.package_limits.max_bytes {
            continue;
        }
        if state
            .blobs
            .exists(&BlobKey::Resource(resource.sha1.clone()))
            .await?
        {
            matched.push(item.clone());
        }
    }
    Ok(HttpResponse::Created().json(json!({"resources": matched})))
}
