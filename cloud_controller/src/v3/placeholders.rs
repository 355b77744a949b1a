//! Resources `cf org`, `cf space` and the app summaries read that Kiln does not have yet:
//! isolation segments, security groups, space quotas and deployments (Kiln restarts
//! instances in place; rolling deployments do not exist yet). Lists answer an honest empty page with
//! the right shape (after validating the query and, where a space is named, its visibility);
//! single resources answer 404.

use actix_web::{web, HttpRequest, HttpResponse};

use crate::app::{resource, AppState};
use crate::auth::CurrentUser;
use crate::error::ApiError;
use crate::permissions::Permissions;
use crate::query::{list_body, ListQuery, SortKey};
use crate::v3::spaces::visible_space;

/// Registers the placeholder routes.
pub fn configure(config: &mut web::ServiceConfig) {
    config
        .service(resource("/v3/isolation_segments").route(web::get().to(isolation_segments)))
        .service(resource("/v3/isolation_segments/{guid}").route(web::get().to(isolation_segment)))
        .service(resource("/v3/security_groups").route(web::get().to(security_groups)))
        .service(
            resource("/v3/spaces/{guid}/running_security_groups")
                .route(web::get().to(space_security_groups)),
        )
        .service(
            resource("/v3/spaces/{guid}/staging_security_groups")
                .route(web::get().to(space_security_groups)),
        )
        .service(resource("/v3/space_quotas").route(web::get().to(space_quotas)))
        .service(resource("/v3/space_quotas/{guid}").route(web::get().to(space_quota)))
        .service(resource("/v3/deployments").route(web::get().to(deployments)))
        .service(resource("/v3/deployments/{guid}").route(web::get().to(deployment)));
}

fn empty(state: &AppState, query: &ListQuery, path: &str) -> HttpResponse {
    let (_, pagination) = query.page_of(Vec::<()>::new(), &state.external_url, path);
    HttpResponse::Ok().json(list_body(pagination, Vec::new(), None))
}

async fn isolation_segments(
    state: web::Data<AppState>,
    _user: CurrentUser,
    request: HttpRequest,
) -> Result<HttpResponse, ApiError> {
    let query = ListQuery::parse(
        &request,
        &["names", "guids", "organization_guids", "label_selector"],
        &[SortKey::Name],
    )?;
    Ok(empty(&state, &query, "/v3/isolation_segments"))
}

async fn isolation_segment(_user: CurrentUser) -> Result<HttpResponse, ApiError> {
    Err(ApiError::not_found("Isolation segment"))
}

async fn security_groups(
    state: web::Data<AppState>,
    _user: CurrentUser,
    request: HttpRequest,
) -> Result<HttpResponse, ApiError> {
    let query = ListQuery::parse(
        &request,
        &[
            "names",
            "guids",
            "globally_enabled_running",
            "globally_enabled_staging",
            "running_space_guids",
            "staging_space_guids",
        ],
        &[SortKey::Name],
    )?;
    Ok(empty(&state, &query, "/v3/security_groups"))
}

async fn space_security_groups(
    state: web::Data<AppState>,
    user: CurrentUser,
    path: web::Path<String>,
    request: HttpRequest,
) -> Result<HttpResponse, ApiError> {
    let query = ListQuery::parse(&request, &["names", "guids"], &[SortKey::Name])?;
    let guid = path.into_inner();
    state
        .db
        .run(move |conn| {
            let permissions = Permissions::load(conn, &user)?;
            visible_space(conn, &permissions, &guid).map(|_| ())
        })
        .await?;
    Ok(empty(&state, &query, request.path()))
}

async fn space_quotas(
    state: web::Data<AppState>,
    _user: CurrentUser,
    request: HttpRequest,
) -> Result<HttpResponse, ApiError> {
    let query = ListQuery::parse(
        &request,
        &["names", "guids", "organization_guids", "space_guids"],
        &[SortKey::Name],
    )?;
    Ok(empty(&state, &query, "/v3/space_quotas"))
}

async fn space_quota(_user: CurrentUser) -> Result<HttpResponse, ApiError> {
    Err(ApiError::not_found("Space quota"))
}

async fn deployments(
    state: web::Data<AppState>,
    _user: CurrentUser,
    request: HttpRequest,
) -> Result<HttpResponse, ApiError> {
    let query = ListQuery::parse(
        &request,
        &[
            "guids",
            "app_guids",
            "states",
            "status_reasons",
            "status_values",
            "label_selector",
        ],
        &[SortKey::CreatedAt, SortKey::UpdatedAt],
    )?;
    Ok(empty(&state, &query, "/v3/deployments"))
}

async fn deployment(_user: CurrentUser) -> Result<HttpResponse, ApiError> {
    // The CLI matches this detail exactly (DeploymentNotFound).
    Err(ApiError::not_found("Deployment"))
}
