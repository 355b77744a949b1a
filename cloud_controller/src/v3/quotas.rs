//! `/v3/organization_quotas`: list (with `names`, `guids`, `organization_guids`) and get. Each
//! quota lists the orgs using it that the caller may see.

use actix_web::{web, HttpRequest, HttpResponse};

use crate::app::{resource, AppState};
use crate::auth::CurrentUser;
use crate::db::models::{OrgRow, QuotaRow};
use crate::error::ApiError;
use crate::permissions::Permissions;
use crate::query::{list_body, ListQuery, SortKey};
use crate::store;
use crate::v3::present;

/// Registers the organization-quota routes.
pub fn configure(config: &mut web::ServiceConfig) {
    config
        .service(resource("/v3/organization_quotas").route(web::get().to(list)))
        .service(resource("/v3/organization_quotas/{guid}").route(web::get().to(get)));
}

fn org_guids_using(quota: &QuotaRow, orgs: &[OrgRow]) -> Vec<String> {
    orgs.iter()
        .filter(|org| org.quota_definition_id == quota.id)
        .map(|org| org.guid.clone())
        .collect()
}

async fn list(
    state: web::Data<AppState>,
    user: CurrentUser,
    request: HttpRequest,
) -> Result<HttpResponse, ApiError> {
    let query = ListQuery::parse(
        &request,
        &["names", "guids", "organization_guids"],
        &[SortKey::Name],
    )?;
    let base = state.external_url.clone();
    let body = state
        .db
        .run(move |conn| {
            let permissions = Permissions::load(conn, &user)?;
            let orgs: Vec<OrgRow> = store::orgs::list(conn)?
                .into_iter()
                .filter(|org| permissions.can_read_org(org.id))
                .collect();
            let mut quotas: Vec<_> = store::reference_data::list_quotas(conn)?
                .into_iter()
                .filter(|quota| {
                    query.matches_name("names", &quota.name) && query.matches("guids", &quota.guid)
                })
                .filter(|quota| match query.list("organization_guids") {
                    None => true,
                    Some(wanted) => org_guids_using(quota, &orgs)
                        .iter()
                        .any(|guid| wanted.contains(guid)),
                })
                .collect();
            query.sort(
                &mut quotas,
                |quota| &quota.name,
                |quota| &quota.created_at,
                |quota| &quota.updated_at,
            );
            let (page, pagination) = query.page_of(quotas, &base, "/v3/organization_quotas");
            let resources = page
                .iter()
                .map(|quota| {
                    present::organization_quota(&base, quota, &org_guids_using(quota, &orgs))
                })
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
            let quota = store::reference_data::find_quota(conn, &guid)?
                .ok_or_else(|| ApiError::not_found("Organization quota"))?;
            let orgs: Vec<OrgRow> = store::orgs::list(conn)?
                .into_iter()
                .filter(|org| permissions.can_read_org(org.id))
                .collect();
            Ok(present::organization_quota(
                &base,
                &quota,
                &org_guids_using(&quota, &orgs),
            ))
        })
        .await?;
    Ok(HttpResponse::Ok().json(body))
}
