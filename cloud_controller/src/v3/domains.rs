//! `/v3/domains`: list (with `names`, `guids`, `organization_guids`) and get. Shared domains are
//! visible to everyone, private ones to readers of their org.

use std::collections::HashMap;

use actix_web::{web, HttpRequest, HttpResponse};

use crate::app::{resource, AppState};
use crate::auth::CurrentUser;
use crate::error::ApiError;
use crate::permissions::Permissions;
use crate::query::{list_body, ListQuery, SortKey};
use crate::store;
use crate::v3::present;

/// Registers the domain routes.
pub fn configure(config: &mut web::ServiceConfig) {
    config
        .service(resource("/v3/domains").route(web::get().to(list)))
        .service(resource("/v3/domains/{guid}").route(web::get().to(get)));
}

async fn list(
    state: web::Data<AppState>,
    user: CurrentUser,
    request: HttpRequest,
) -> Result<HttpResponse, ApiError> {
    let query = ListQuery::parse(
        &request,
        &["names", "guids", "organization_guids", "label_selector"],
        &[SortKey::Name],
    )?;
    let base = state.external_url.clone();
    let body = state
        .db
        .run(move |conn| {
            let permissions = Permissions::load(conn, &user)?;
            let org_guids: HashMap<i32, String> = store::orgs::list(conn)?
                .into_iter()
                .map(|org| (org.id, org.guid))
                .collect();
            let owner =
                |owner: Option<i32>| owner.and_then(|id| org_guids.get(&id)).map(String::as_str);
            let mut domains: Vec<_> = store::reference_data::list_domains(conn)?
                .into_iter()
                .filter(|domain| {
                    domain
                        .owning_organization_id
                        .is_none_or(|org| permissions.can_read_org(org))
                })
                .filter(|domain| {
                    query.matches_name("names", &domain.name)
                        && query.matches("guids", &domain.guid)
                        && query
                            .matches_opt("organization_guids", owner(domain.owning_organization_id))
                })
                .collect();
            query.sort(
                &mut domains,
                |domain| &domain.name,
                |domain| &domain.created_at,
                |domain| &domain.updated_at,
            );
            let (page, pagination) = query.page_of(domains, &base, "/v3/domains");
            let resources = page
                .iter()
                .map(|domain| present::domain(&base, domain, owner(domain.owning_organization_id)))
                .collect();
            Ok(list_body(pagination, resources, None))
        })
        .await?;
    Ok(HttpResponse::Ok().json(body))
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
            let domain = store::reference_data::find_domain(conn, &guid)?
                .filter(|domain| {
                    domain
                        .owning_organization_id
                        .is_none_or(|org| permissions.can_read_org(org))
                })
                .ok_or_else(|| ApiError::not_found("Domain"))?;
            let owner = match domain.owning_organization_id {
                Some(id) => store::orgs::find_by_id(conn, id)?.map(|org| org.guid),
                None => None,
            };
            Ok(present::domain(&base, &domain, owner.as_deref()))
        })
        .await?;
    Ok(HttpResponse::Ok().json(body))
}
