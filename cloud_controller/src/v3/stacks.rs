//! `/v3/stacks`: list (with `names`) and get.

use actix_web::{web, HttpRequest, HttpResponse};

use crate::app::{resource, AppState};
use crate::auth::CurrentUser;
use crate::error::ApiError;
use crate::query::{list_body, ListQuery, SortKey};
use crate::store;
use crate::v3::present;

/// Registers the stack routes.
pub fn configure(config: &mut web::ServiceConfig) {
    config
        .service(resource("/v3/stacks").route(web::get().to(list)))
        .service(resource("/v3/stacks/{guid}").route(web::get().to(get)));
}

async fn list(
    state: web::Data<AppState>,
    _user: CurrentUser,
    request: HttpRequest,
) -> Result<HttpResponse, ApiError> {
    let query = ListQuery::parse(
        &request,
        &["names", "guids", "default", "label_selector"],
        &[SortKey::Name],
    )?;
    let base = state.external_url.clone();
    let default_stack = state.default_stack.clone();
    let body = state
        .db
        .run(move |conn| {
            let mut stacks: Vec<_> = store::reference_data::list_stacks(conn)?
                .into_iter()
                .filter(|stack| {
                    query.matches("names", &stack.name) && query.matches("guids", &stack.guid)
                })
                .filter(|stack| {
                    query.matches(
                        "default",
                        if stack.name == default_stack {
                            "true"
                        } else {
                            "false"
                        },
                    )
                })
                .collect();
            query.sort(
                &mut stacks,
                |stack| &stack.name,
                |stack| &stack.created_at,
                |stack| &stack.updated_at,
            );
            let (page, pagination) = query.page_of(stacks, &base, "/v3/stacks");
            Ok(list_body(
                pagination,
                page.iter()
                    .map(|stack| present::stack(&base, stack, &default_stack))
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
    let default_stack = state.default_stack.clone();
    let body = state
        .db
        .run(move |conn| {
            let stack = store::reference_data::find_stack(conn, &guid)?
                .ok_or_else(|| ApiError::not_found("Stack"))?;
            Ok(present::stack(&base, &stack, &default_stack))
        })
        .await?;
    Ok(HttpResponse::Ok().json(body))
}
