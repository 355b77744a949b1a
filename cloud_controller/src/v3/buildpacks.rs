//! `/v3/buildpacks`: list (with `names`, `stacks`; by position unless `order_by` says otherwise)
//! and get. Any signed-in user may read buildpacks, as in CC.

use actix_web::{web, HttpRequest, HttpResponse};

use crate::app::{resource, AppState};
use crate::auth::CurrentUser;
use crate::error::ApiError;
use crate::query::{list_body, query_pairs, ListQuery, SortKey};
use crate::store;
use crate::v3::present;

/// Registers the buildpack routes.
pub fn configure(config: &mut web::ServiceConfig) {
    config
        .service(resource("/v3/buildpacks").route(web::get().to(list)))
        .service(resource("/v3/buildpacks/{guid}").route(web::get().to(get)));
}

async fn list(
    state: web::Data<AppState>,
    _user: CurrentUser,
    request: HttpRequest,
) -> Result<HttpResponse, ApiError> {
    let mut pairs = query_pairs(&request)?;
    // `position` is the default order; any other `order_by` is validated by `ListQuery`.
    let mut by_position = true;
    let mut descending = false;
    pairs.retain(|(key, value)| {
        if key != "order_by" {
            return true;
        }
        match value.as_str() {
            "position" | "+position" => false,
            "-position" => {
                descending = true;
                false
            }
            _ => {
                by_position = false;
                true
            }
        }
    });
    let query = ListQuery::from_pairs(
        pairs,
        &["names", "stacks", "guids", "label_selector"],
        &[SortKey::Name],
    )?;
    let base = state.external_url.clone();
    let body = state
        .db
        .run(move |conn| {
            let mut buildpacks: Vec<_> = store::buildpacks::list(conn)?
                .into_iter()
                .filter(|buildpack| {
                    query.matches("names", &buildpack.name)
                        && query.matches("guids", &buildpack.guid)
                        && query.matches("stacks", buildpack.stack.as_deref().unwrap_or(""))
                })
                .collect();
            if by_position {
                if descending {
                    buildpacks.reverse();
                }
            } else {
                query.sort(
                    &mut buildpacks,
                    |buildpack| &buildpack.name,
                    |buildpack| &buildpack.created_at,
                    |buildpack| &buildpack.updated_at,
                );
            }
            let (page, pagination) = query.page_of(buildpacks, &base, "/v3/buildpacks");
            Ok(list_body(
                pagination,
                page.iter()
                    .map(|buildpack| present::buildpack(&base, buildpack))
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
    let guid = path.into_inner();
    let base = state.external_url.clone();
    let body = state
        .db
        .run(move |conn| {
            let buildpack = store::buildpacks::find(conn, &guid)?
                .ok_or_else(|| ApiError::not_found("Buildpack"))?;
            Ok(present::buildpack(&base, &buildpack))
        })
        .await?;
    Ok(HttpResponse::Ok().json(body))
}
