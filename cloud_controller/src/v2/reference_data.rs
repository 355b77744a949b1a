//! Read-only v2 views of platform reference data: `/v2/quota_definitions`, `/v2/stacks`,
//! `/v2/shared_domains`, `/v2/private_domains` (domains owned by an org; Kiln creates none yet)
//! and the deprecated union `/v2/domains`, which CC renders per domain kind and marks with an
//! `X-Cf-Warnings: Endpoint+deprecated` header.

use std::collections::HashMap;

use actix_web::{web, HttpRequest, HttpResponse};
use serde_json::{json, Value};

use crate::app::{resource, AppState};
use crate::auth::CurrentUser;
use crate::db::models::{DomainRow, QuotaRow, StackRow};
use crate::error::{ApiError, ErrorKind};
use crate::permissions::Permissions;
use crate::store;
use crate::v2::V2Query;

/// Registers the routes.
pub fn configure(config: &mut web::ServiceConfig) {
    config
        .service(resource("/v2/quota_definitions").route(web::get().to(list_quotas)))
        .service(resource("/v2/quota_definitions/{guid}").route(web::get().to(get_quota)))
        .service(resource("/v2/stacks").route(web::get().to(list_stacks)))
        .service(resource("/v2/stacks/{guid}").route(web::get().to(get_stack)))
        .service(
            resource("/v2/shared_domains")
                .app_data(web::Data::new(DomainKind::Shared))
                .route(web::get().to(list_domains)),
        )
        .service(
            resource("/v2/shared_domains/{guid}")
                .app_data(web::Data::new(DomainKind::Shared))
                .route(web::get().to(get_domain)),
        )
        .service(
            resource("/v2/private_domains")
                .app_data(web::Data::new(DomainKind::Private))
                .route(web::get().to(list_domains)),
        )
        .service(
            resource("/v2/private_domains/{guid}")
                .app_data(web::Data::new(DomainKind::Private))
                .route(web::get().to(get_domain)),
        )
        .service(
            resource("/v2/domains")
                .app_data(web::Data::new(DomainKind::Any))
                .route(web::get().to(list_domains)),
        )
        .service(
            resource("/v2/domains/{guid}")
                .app_data(web::Data::new(DomainKind::Any))
                .route(web::get().to(get_domain)),
        );
}

fn render_quota(quota: &QuotaRow) -> Value {
    super::resource(
        &quota.guid,
        &format!("/v2/quota_definitions/{}", quota.guid),
        &quota.created_at,
        &quota.updated_at,
        json!({
            "name": quota.name,
            "non_basic_services_allowed": quota.non_basic_services_allowed,
            "total_services": quota.total_services,
            "total_routes": quota.total_routes,
            "total_private_domains": quota.total_private_domains,
            "memory_limit": quota.memory_limit,
            "trial_db_allowed": false,
            "instance_memory_limit": quota.instance_memory_limit,
            "app_instance_limit": quota.app_instance_limit,
            "app_task_limit": quota.app_task_limit,
            "total_service_keys": quota.total_service_keys,
            "total_reserved_route_ports": quota.total_reserved_route_ports,
            "log_rate_limit": quota.log_rate_limit,
        }),
    )
}

async fn list_quotas(
    state: web::Data<AppState>,
    _user: CurrentUser,
    request: HttpRequest,
) -> Result<HttpResponse, ApiError> {
    let query = V2Query::parse(&request, &["name"], &["id"])?;
    let quotas: Vec<QuotaRow> = state
        .db
        .run(store::reference_data::list_quotas)
        .await?
        .into_iter()
        .filter(|quota| query.accepts_name("name", &quota.name))
        .collect();
    Ok(HttpResponse::Ok().json(query.envelope(
        quotas,
        "/v2/quota_definitions",
        |quota| &quota.name,
        render_quota,
    )))
}

async fn get_quota(
    state: web::Data<AppState>,
    _user: CurrentUser,
    path: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let guid = path.into_inner();
    let quota = state
        .db
        .run(move |conn| {
            store::reference_data::find_quota(conn, &guid)?
                .ok_or_else(|| ApiError::with_args(ErrorKind::QuotaDefinitionNotFound, &[&guid]))
        })
        .await?;
    Ok(HttpResponse::Ok().json(render_quota(&quota)))
}

fn render_stack(stack: &StackRow) -> Value {
    super::resource(
        &stack.guid,
        &format!("/v2/stacks/{}", stack.guid),
        &stack.created_at,
        &stack.updated_at,
        json!({"name": stack.name, "description": stack.description}),
    )
}

async fn list_stacks(
    state: web::Data<AppState>,
    _user: CurrentUser,
    request: HttpRequest,
) -> Result<HttpResponse, ApiError> {
    let query = V2Query::parse(&request, &["name"], &["id"])?;
    // Stack names are case-sensitive in CC (a plain string column).
    let stacks: Vec<StackRow> = state
        .db
        .run(store::reference_data::list_stacks)
        .await?
        .into_iter()
        .filter(|stack| query.accepts("name", &stack.name))
        .collect();
    Ok(HttpResponse::Ok().json(query.envelope(
        stacks,
        "/v2/stacks",
        |stack| &stack.name,
        render_stack,
    )))
}

async fn get_stack(
    state: web::Data<AppState>,
    _user: CurrentUser,
    path: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let guid = path.into_inner();
    let stack = state
        .db
        .run(move |conn| {
            store::reference_data::find_stack(conn, &guid)?
                .ok_or_else(|| ApiError::with_args(ErrorKind::StackNotFound, &[&guid]))
        })
        .await?;
    Ok(HttpResponse::Ok().json(render_stack(&stack)))
}

/// Which domains an endpoint serves.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum DomainKind {
    Shared,
    Private,
    /// The deprecated `/v2/domains`: both kinds, each rendered as its own kind.
    Any,
}

impl DomainKind {
    fn includes(self, domain: &DomainRow) -> bool {
        match self {
            DomainKind::Shared => domain.owning_organization_id.is_none(),
            DomainKind::Private => domain.owning_organization_id.is_some(),
            DomainKind::Any => true,
        }
    }

    fn query_parameters(self) -> &'static [&'static str] {
        match self {
            DomainKind::Any => &["name", "owning_organization_guid"],
            DomainKind::Shared | DomainKind::Private => &["name"],
        }
    }

    fn path(self) -> &'static str {
        match self {
            DomainKind::Shared => "/v2/shared_domains",
            DomainKind::Private => "/v2/private_domains",
            DomainKind::Any => "/v2/domains",
        }
    }

    /// CC's deprecation warning on `/v2/domains` (CGI-escaped, as the CLI expects).
    fn respond(self, body: Value) -> HttpResponse {
        let mut response = HttpResponse::Ok();
        if self == DomainKind::Any {
            response.insert_header(("X-Cf-Warnings", "Endpoint+deprecated"));
        }
        response.json(body)
    }
}

/// A domain as its own kind renders it: shared domains with `internal` and router group,
/// private domains with the owning organization (and `spaces_url` under `/v2/domains`).
fn render_domain(kind: DomainKind, domain: &DomainRow, owner_guid: Option<&str>) -> Value {
    let entity = match owner_guid {
        None => json!({
            "name": domain.name,
            "internal": domain.internal,
            "router_group_guid": null,
            "router_group_type": null,
        }),
        Some(owner_guid) => {
            let mut entity = json!({
                "name": domain.name,
                "owning_organization_guid": owner_guid,
                "owning_organization_url": format!("/v2/organizations/{owner_guid}"),
            });
            if kind == DomainKind::Any {
                entity["spaces_url"] = json!(format!("/v2/domains/{}/spaces", domain.guid));
            } else {
                entity["shared_organizations_url"] = json!(format!(
                    "/v2/private_domains/{}/shared_organizations",
                    domain.guid
                ));
            }
            entity
        }
    };
    let collection = if owner_guid.is_some() {
        "private_domains"
    } else {
        "shared_domains"
    };
    super::resource(
        &domain.guid,
        &format!("/v2/{collection}/{}", domain.guid),
        &domain.created_at,
        &domain.updated_at,
        entity,
    )
}

async fn list_domains(
    state: web::Data<AppState>,
    kind: web::Data<DomainKind>,
    user: CurrentUser,
    request: HttpRequest,
) -> Result<HttpResponse, ApiError> {
    let kind = **kind;
    let query = V2Query::parse(&request, kind.query_parameters(), &["id"])?;
    let body = state
        .db
        .run(move |conn| {
            let permissions = Permissions::load(conn, &user)?;
            let org_guids: HashMap<i32, String> = store::orgs::list(conn)?
                .into_iter()
                .map(|org| (org.id, org.guid))
                .collect();
            let owner = |domain: &DomainRow| {
                domain
                    .owning_organization_id
                    .and_then(|id| org_guids.get(&id))
                    .map(String::as_str)
            };
            let domains: Vec<DomainRow> = store::reference_data::list_domains(conn)?
                .into_iter()
                .filter(|domain| {
                    kind.includes(domain)
                        && domain
                            .owning_organization_id
                            .is_none_or(|org| permissions.can_read_org(org))
                        && query.accepts_name("name", &domain.name)
                        && query.accepts("owning_organization_guid", owner(domain).unwrap_or(""))
                })
                .collect();
            Ok(query.envelope(
                domains,
                kind.path(),
                |domain| &domain.name,
                |domain| render_domain(kind, domain, owner(domain)),
            ))
        })
        .await?;
    Ok(kind.respond(body))
}

async fn get_domain(
    state: web::Data<AppState>,
    kind: web::Data<DomainKind>,
    user: CurrentUser,
    path: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let kind = **kind;
    let guid = path.into_inner();
    let body = state
        .db
        .run(move |conn| {
            let permissions = Permissions::load(conn, &user)?;
            let domain = store::reference_data::find_domain(conn, &guid)?
                .filter(|domain| {
                    kind.includes(domain)
                        && domain
                            .owning_organization_id
                            .is_none_or(|org| permissions.can_read_org(org))
                })
                .ok_or_else(|| ApiError::with_args(ErrorKind::DomainNotFound, &[&guid]))?;
            let owner = match domain.owning_organization_id {
                Some(id) => store::orgs::find_by_id(conn, id)?.map(|org| org.guid),
                None => None,
            };
            Ok(render_domain(kind, &domain, owner.as_deref()))
        })
        .await?;
    Ok(kind.respond(body))
}
