//! v2 views of platform reference data: `/v2/quota_definitions` (read by anyone; created,
//! updated and deleted by admins, with CC's validations), and the read-only `/v2/stacks`,
//! `/v2/shared_domains`, `/v2/private_domains` (domains owned by an org; Kiln creates none yet),
//! an org's `/v2/organizations/:g/private_domains`, and the deprecated unions `/v2/domains`,
//! `/v2/organizations/:g/domains` and `/v2/spaces/:g/domains`, which CC renders per domain kind
//! and marks with an
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
        .service(
            resource("/v2/quota_definitions")
                .route(web::get().to(list_quotas))
                .route(web::post().to(create_quota)),
        )
        .service(
            resource("/v2/quota_definitions/{guid}")
                .route(web::get().to(get_quota))
                .route(web::put().to(update_quota))
                .route(web::delete().to(delete_quota)),
        )
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
            resource("/v2/organizations/{guid}/private_domains")
                .app_data(web::Data::new(DomainKind::Private))
                .route(web::get().to(list_org_domains)),
        )
        .service(
            resource("/v2/organizations/{guid}/domains")
                .app_data(web::Data::new(DomainKind::Any))
                .route(web::get().to(list_org_domains)),
        )
        .service(
            resource("/v2/spaces/{guid}/domains")
                .app_data(web::Data::new(DomainKind::Any))
                .route(web::get().to(list_space_domains)),
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
    request: HttpRequest,
) -> Result<HttpResponse, ApiError> {
    super::check_resource_query(&request)?;
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

/// The limits of an org quota as a v2 body sets them (CC's `QuotaDefinitionsController`
/// attributes). On create, `name`, `non_basic_services_allowed`, `total_services`,
/// `total_routes` and `memory_limit` are required; the others default as in CC.
#[derive(Debug, Clone)]
struct QuotaFields {
    name: String,
    non_basic_services_allowed: bool,
    total_services: i32,
    total_routes: i32,
    memory_limit: i32,
    total_service_keys: i32,
    total_private_domains: i32,
    instance_memory_limit: i32,
    app_instance_limit: i32,
    app_task_limit: i32,
    total_reserved_route_ports: i32,
}

impl QuotaFields {
    fn of(quota: &QuotaRow) -> QuotaFields {
        QuotaFields {
            name: quota.name.clone(),
            non_basic_services_allowed: quota.non_basic_services_allowed,
            total_services: quota.total_services,
            total_routes: quota.total_routes,
            memory_limit: quota.memory_limit,
            total_service_keys: quota.total_service_keys,
            total_private_domains: quota.total_private_domains,
            instance_memory_limit: quota.instance_memory_limit,
            app_instance_limit: quota.app_instance_limit,
            app_task_limit: quota.app_task_limit,
            total_reserved_route_ports: quota.total_reserved_route_ports,
        }
    }

    /// CC's defaults for the optional limits, with the required fields from the body.
    fn required(object: &serde_json::Map<String, Value>) -> Result<QuotaFields, ApiError> {
        let required_i32 = |field: &str| {
            super::body_i32(object, field)?.ok_or_else(|| {
                ApiError::parse(format!("Field: {field}, Error: Missing field {field}"))
            })
        };
        Ok(QuotaFields {
            name: super::body_required_string(object, "name")?,
            non_basic_services_allowed: super::body_bool(object, "non_basic_services_allowed")?
                .ok_or_else(|| {
                    ApiError::parse(
                        "Field: non_basic_services_allowed, Error: Missing field non_basic_services_allowed",
                    )
                })?,
            total_services: required_i32("total_services")?,
            total_routes: required_i32("total_routes")?,
            memory_limit: required_i32("memory_limit")?,
            total_service_keys: -1,
            total_private_domains: -1,
            instance_memory_limit: -1,
            app_instance_limit: -1,
            app_task_limit: -1,
            total_reserved_route_ports: 0,
        })
    }

    /// Applies the fields present in the body.
    fn apply(&mut self, object: &serde_json::Map<String, Value>) -> Result<(), ApiError> {
        if let Some(name) = super::body_string(object, "name")? {
            self.name = name;
        }
        if let Some(allowed) = super::body_bool(object, "non_basic_services_allowed")? {
            self.non_basic_services_allowed = allowed;
        }
        for (field, slot) in [
            ("total_services", &mut self.total_services),
            ("total_routes", &mut self.total_routes),
            ("memory_limit", &mut self.memory_limit),
            ("total_service_keys", &mut self.total_service_keys),
            ("total_private_domains", &mut self.total_private_domains),
            ("instance_memory_limit", &mut self.instance_memory_limit),
            ("app_instance_limit", &mut self.app_instance_limit),
            ("app_task_limit", &mut self.app_task_limit),
            (
                "total_reserved_route_ports",
                &mut self.total_reserved_route_ports,
            ),
        ] {
            if let Some(value) = super::body_i32(object, field)? {
                *slot = value;
            }
        }
        Ok(())
    }

    /// CC's `QuotaDefinition#validate`.
    fn validate(&self) -> Result<(), ApiError> {
        let invalid =
            |detail: &str| ApiError::with_args(ErrorKind::QuotaDefinitionInvalid, &[detail]);
        crate::body::check_name(&self.name).map_err(|error| invalid(&error.detail))?;
        if self.memory_limit < -1 {
            return Err(ApiError::plain(
                ErrorKind::QuotaDefinitionMemoryLimitInvalid,
            ));
        }
        for (field, value) in [
            ("instance_memory_limit", self.instance_memory_limit),
            ("total_private_domains", self.total_private_domains),
            ("app_instance_limit", self.app_instance_limit),
            ("app_task_limit", self.app_task_limit),
            ("total_service_keys", self.total_service_keys),
        ] {
            if value < -1 {
                return Err(invalid(&format!("{field} invalid_{field}")));
            }
        }
        let ports = self.total_reserved_route_ports;
        if ports < -1 || (self.total_routes >= 0 && ports > self.total_routes) {
            return Err(invalid(
                "total_reserved_route_ports Total reserved ports must be -1, 0, or a positive integer, and must be less than or equal to total routes.",
            ));
        }
        Ok(())
    }
}

/// Inserts or updates a quota row (`guid` of the row to update, or `None` to insert).
fn save_quota(
    conn: &mut crate::db::DbConn,
    existing: Option<&QuotaRow>,
    fields: &QuotaFields,
) -> Result<QuotaRow, ApiError> {
    use crate::db::schema::quota_definitions as q;
    use diesel::prelude::*;
    let timestamp = store::now();
    let values = (
        q::name.eq(&fields.name),
        q::non_basic_services_allowed.eq(fields.non_basic_services_allowed),
        q::total_services.eq(fields.total_services),
        q::total_routes.eq(fields.total_routes),
        q::memory_limit.eq(fields.memory_limit),
        q::total_service_keys.eq(fields.total_service_keys),
        q::total_private_domains.eq(fields.total_private_domains),
        q::instance_memory_limit.eq(fields.instance_memory_limit),
        q::app_instance_limit.eq(fields.app_instance_limit),
        q::app_task_limit.eq(fields.app_task_limit),
        q::total_reserved_route_ports.eq(fields.total_reserved_route_ports),
        q::updated_at.eq(&timestamp),
    );
    let guid = match existing {
        Some(quota) => {
            diesel::update(q::table.filter(q::id.eq(quota.id)))
                .set(values)
                .execute(conn)
                .map_err(|error| quota_write_error(error, &fields.name))?;
            quota.guid.clone()
        }
        None => {
            let guid = store::new_guid();
            diesel::insert_into(q::table)
                .values((
                    values,
                    q::guid.eq(&guid),
                    q::created_at.eq(&timestamp),
                    q::log_rate_limit.eq(-1_i64),
                ))
                .execute(conn)
                .map_err(|error| quota_write_error(error, &fields.name))?;
            guid
        }
    };
    store::reference_data::find_quota(conn, &guid)?
        .ok_or_else(|| ApiError::internal("quota vanished after it was written"))
}

fn quota_write_error(error: diesel::result::Error, name: &str) -> ApiError {
    if crate::error::is_unique_violation(&error) {
        ApiError::with_args(ErrorKind::QuotaDefinitionNameTaken, &[name])
    } else {
        error.into()
    }
}

fn quota_not_found(guid: &str) -> ApiError {
    ApiError::with_args(ErrorKind::QuotaDefinitionNotFound, &[guid])
}

/// Kiln gives new orgs the quota named `default`, so that one keeps its name and stays.
fn require_not_default(quota: &QuotaRow, fields: Option<&QuotaFields>) -> Result<(), ApiError> {
    let is_default = quota.name == store::reference_data::DEFAULT_QUOTA_NAME;
    if is_default && fields.is_none_or(|fields| fields.name != quota.name) {
        return Err(ApiError::with_args(
            ErrorKind::QuotaDefinitionInvalid,
            &["the default quota, which new organizations get, cannot be renamed or deleted"],
        ));
    }
    Ok(())
}

async fn create_quota(
    state: web::Data<AppState>,
    user: CurrentUser,
    payload: web::Json<Value>,
) -> Result<HttpResponse, ApiError> {
    if !user.is_admin() {
        return Err(ApiError::forbidden());
    }
    let object = super::body_object(&payload)?;
    let mut fields = QuotaFields::required(object)?;
    fields.apply(object)?;
    fields.validate()?;
    let quota = state
        .db
        .run(move |conn| save_quota(conn, None, &fields))
        .await?;
    let body = render_quota(&quota);
    Ok(HttpResponse::Created()
        .insert_header(("Location", format!("/v2/quota_definitions/{}", quota.guid)))
        .json(body))
}

async fn update_quota(
    state: web::Data<AppState>,
    user: CurrentUser,
    path: web::Path<String>,
    payload: web::Json<Value>,
) -> Result<HttpResponse, ApiError> {
    let guid = path.into_inner();
    let quota = state
        .db
        .run(move |conn| {
            let quota = store::reference_data::find_quota(conn, &guid)?
                .ok_or_else(|| quota_not_found(&guid))?;
            if !user.is_admin() {
                return Err(ApiError::forbidden());
            }
            let object = super::body_object(&payload)?;
            let mut fields = QuotaFields::of(&quota);
            fields.apply(object)?;
            fields.validate()?;
            require_not_default(&quota, Some(&fields))?;
            save_quota(conn, Some(&quota), &fields)
        })
        .await?;
    Ok(HttpResponse::Created().json(render_quota(&quota)))
}

async fn delete_quota(
    state: web::Data<AppState>,
    user: CurrentUser,
    path: web::Path<String>,
    request: HttpRequest,
) -> Result<HttpResponse, ApiError> {
    let asynchronous = crate::query::query_pairs(&request)?
        .iter()
        .any(|(key, value)| key == "async" && value == "true");
    let guid = path.into_inner();
    let job = state
        .db
        .run(move |conn| {
            use crate::db::schema::quota_definitions as q;
            use diesel::prelude::*;
            let quota = store::reference_data::find_quota(conn, &guid)?
                .ok_or_else(|| quota_not_found(&guid))?;
            if !user.is_admin() {
                return Err(ApiError::forbidden());
            }
            require_not_default(&quota, None)?;
            // CC's QuotaDefinition#before_destroy: a quota in use stays.
            if store::orgs::list(conn)?
                .iter()
                .any(|org| org.quota_definition_id == quota.id)
            {
                return Err(ApiError::with_args(
                    ErrorKind::AssociationNotEmpty,
                    &["organization", "quota definition"],
                ));
            }
            let job_guid = store::jobs::run_now(
                conn,
                "quota_definition.delete",
                "quota_definition",
                &quota.guid,
                |conn| {
                    diesel::delete(q::table.filter(q::id.eq(quota.id))).execute(conn)?;
                    Ok(())
                },
            )?;
            store::jobs::find(conn, &job_guid)
        })
        .await?;
    if asynchronous {
        Ok(HttpResponse::Accepted().json(super::jobs::render(job.as_ref())))
    } else {
        Ok(HttpResponse::NoContent().finish())
    }
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
    request: HttpRequest,
) -> Result<HttpResponse, ApiError> {
    super::check_resource_query(&request)?;
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

/// The domains an org sees (its own, and shared ones for `DomainKind::Any`) as a v2 list at
/// `path`.
fn org_domain_page(
    conn: &mut crate::db::DbConn,
    kind: DomainKind,
    query: &V2Query,
    org: &crate::db::models::OrgRow,
    path: &str,
) -> Result<Value, ApiError> {
    let owner = |domain: &DomainRow| domain.owning_organization_id.map(|_| org.guid.as_str());
    let domains: Vec<DomainRow> = store::reference_data::list_domains(conn)?
        .into_iter()
        .filter(|domain| {
            kind.includes(domain)
                && domain.owning_organization_id.is_none_or(|id| id == org.id)
                && query.accepts_name("name", &domain.name)
                && query.accepts("owning_organization_guid", owner(domain).unwrap_or(""))
        })
        .collect();
    Ok(query.envelope(
        domains,
        path,
        |domain| &domain.name,
        |domain| render_domain(kind, domain, owner(domain)),
    ))
}

/// `GET /v2/organizations/:g/private_domains` (the org's own domains) and the deprecated
/// `GET /v2/organizations/:g/domains` (shared domains too).
async fn list_org_domains(
    state: web::Data<AppState>,
    kind: web::Data<DomainKind>,
    user: CurrentUser,
    path: web::Path<String>,
    request: HttpRequest,
) -> Result<HttpResponse, ApiError> {
    let kind = **kind;
    let query = V2Query::parse(&request, kind.query_parameters(), &["id"])?;
    let guid = path.into_inner();
    let body = state
        .db
        .run(move |conn| {
            let permissions = Permissions::load(conn, &user)?;
            let org = store::orgs::find(conn, &guid)?
                .filter(|org| permissions.can_read_org(org.id))
                .ok_or_else(|| ApiError::with_args(ErrorKind::OrganizationNotFound, &[&guid]))?;
            let relation = if kind == DomainKind::Any {
                "domains"
            } else {
                "private_domains"
            };
            let path = format!("/v2/organizations/{}/{relation}", org.guid);
            org_domain_page(conn, kind, &query, &org, &path)
        })
        .await?;
    Ok(kind.respond(body))
}

/// The deprecated `GET /v2/spaces/:g/domains`: shared domains and the space's org's own.
async fn list_space_domains(
    state: web::Data<AppState>,
    user: CurrentUser,
    path: web::Path<String>,
    request: HttpRequest,
) -> Result<HttpResponse, ApiError> {
    let kind = DomainKind::Any;
    let query = V2Query::parse(&request, kind.query_parameters(), &["id"])?;
    let guid = path.into_inner();
    let body = state
        .db
        .run(move |conn| {
            let permissions = Permissions::load(conn, &user)?;
            let (space, org) = crate::v3::spaces::visible_space(conn, &permissions, &guid)
                .map_err(|_| ApiError::with_args(ErrorKind::SpaceNotFound, &[&guid]))?;
            let path = format!("/v2/spaces/{}/domains", space.guid);
            org_domain_page(conn, kind, &query, &org, &path)
        })
        .await?;
    Ok(kind.respond(body))
}

async fn get_domain(
    state: web::Data<AppState>,
    kind: web::Data<DomainKind>,
    user: CurrentUser,
    path: web::Path<String>,
    request: HttpRequest,
) -> Result<HttpResponse, ApiError> {
    super::check_resource_query(&request)?;
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
