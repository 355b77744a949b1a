//! v2 services over the same store, visibility rules, checks (`service_actions`) and broker work
//! (`ServiceRunner`) as v3. Reads: `/v2/service_brokers`, `/v2/services`, `/v2/service_plans`,
//! `/v2/service_instances` (with `return_user_provided_service_instances`),
//! `/v2/user_provided_service_instances`, `/v2/service_bindings`, `/v2/service_keys`,
//! `/v2/service_plan_visibilities`, and the space's and org's lists (`/v2/spaces/:g/services`,
//! `/v2/spaces/:g/service_instances`, `/v2/organizations/:g/services`). Writes answer as CC v2
//! does: brokers are registered with a synchronous catalog fetch; instance, binding and key
//! operations wait for the broker's first answer (201/204 when done, 202 with `last_operation`
//! `in progress` when it works asynchronously — later v2 GETs follow the polling — or the
//! broker's error).

use actix_web::{web, HttpRequest, HttpResponse};
use serde_json::{json, Map, Value};

use crate::app::{resource, AppState};
use crate::auth::CurrentUser;
use crate::body;
use crate::db::models::{
    CredentialBindingRow, ServiceBrokerRow, ServiceInstanceRow, ServiceOfferingRow, ServicePlanRow,
    SpaceRow,
};
use crate::db::DbConn;
use crate::error::{ApiError, ErrorKind};
use crate::permissions::Permissions;
use crate::service_actions::{self, BindingStart, ManagedUpdate, Refusal};
use crate::service_jobs::{parameters_object, store_catalog, FirstAnswer, FirstAnswerReceiver};
use crate::store;
use crate::store::services::{self as services_store, USER_PROVIDED};
use crate::v2::V2Query;
use crate::v3::service_catalog::{CatalogIndex, MaybeUser};

/// Registers the v2 service routes.
pub fn configure(config: &mut web::ServiceConfig) {
    config
        .service(
            resource("/v2/service_brokers")
                .route(web::get().to(list_brokers))
                .route(web::post().to(create_broker)),
        )
        .service(
            resource("/v2/service_brokers/{guid}")
                .route(web::get().to(get_broker))
                .route(web::put().to(update_broker))
                .route(web::delete().to(delete_broker)),
        )
        .service(resource("/v2/services").route(web::get().to(list_services)))
        .service(resource("/v2/services/{guid}").route(web::get().to(get_service)))
        .service(resource("/v2/service_plans").route(web::get().to(list_plans)))
        .service(
            resource("/v2/service_plans/{guid}")
                .route(web::get().to(get_plan))
                .route(web::put().to(update_plan)),
        )
        .service(
            resource("/v2/service_plan_visibilities")
                .route(web::get().to(list_visibilities))
                .route(web::post().to(create_visibility)),
        )
        .service(
            resource("/v2/service_plan_visibilities/{guid}")
                .route(web::get().to(get_visibility))
                .route(web::delete().to(delete_visibility)),
        )
        .service(
            resource("/v2/service_instances")
                .route(web::get().to(list_instances))
                .route(web::post().to(create_instance)),
        )
        .service(
            resource("/v2/service_instances/{guid}")
                .route(web::get().to(get_instance))
                .route(web::put().to(update_instance))
                .route(web::delete().to(delete_instance)),
        )
        .service(
            resource("/v2/user_provided_service_instances")
                .route(web::get().to(list_upsis))
                .route(web::post().to(create_upsi)),
        )
        .service(
            resource("/v2/user_provided_service_instances/{guid}")
                .route(web::get().to(get_upsi))
                .route(web::put().to(update_upsi))
                .route(web::delete().to(delete_upsi)),
        )
        .service(
            resource("/v2/service_bindings")
                .route(web::get().to(list_bindings))
                .route(web::post().to(create_binding)),
        )
        .service(
            resource("/v2/service_bindings/{guid}")
                .route(web::get().to(get_binding))
                .route(web::delete().to(delete_binding)),
        )
        .service(
            resource("/v2/service_keys")
                .route(web::get().to(list_keys))
                .route(web::post().to(create_key)),
        )
        .service(
            resource("/v2/service_keys/{guid}")
                .route(web::get().to(get_key))
                .route(web::delete().to(delete_key)),
        )
        .service(
            resource("/v2/spaces/{guid}/service_instances")
                .route(web::get().to(list_space_instances)),
        )
        .service(resource("/v2/spaces/{guid}/services").route(web::get().to(list_space_services)))
        .service(
            resource("/v2/organizations/{guid}/services").route(web::get().to(list_org_services)),
        );
}

fn parse(text: &str) -> Value {
    serde_json::from_str(text).unwrap_or(Value::Null)
}

fn render_broker(index: &CatalogIndex, broker: &ServiceBrokerRow) -> Value {
    let space_guid = broker
        .space_id
        .and_then(|id| index.spaces.get(&id))
        .map(|space| space.guid.clone());
    super::resource(
        &broker.guid,
        &format!("/v2/service_brokers/{}", broker.guid),
        &broker.created_at,
        &broker.updated_at,
        json!({
            "name": broker.name,
            "broker_url": broker.url,
            "auth_username": broker.username,
            "space_guid": space_guid,
        }),
    )
}

fn render_service(index: &CatalogIndex, offering: &ServiceOfferingRow) -> Value {
    let broker = index.brokers.get(&offering.service_broker_id);
    let metadata = parse(&offering.metadata);
    let url = format!("/v2/services/{}", offering.guid);
    super::resource(
        &offering.guid,
        &url,
        &offering.created_at,
        &offering.updated_at,
        json!({
            "label": offering.name,
            "provider": null,
            "url": null,
            "description": offering.description,
            "long_description": null,
            "version": null,
            "info_url": null,
            "active": offering.active,
            "bindable": offering.bindable,
            "unique_id": offering.broker_id,
            "extra": if metadata.as_object().is_some_and(|map| !map.is_empty()) { json!(metadata.to_string()) } else { Value::Null },
            "tags": parse(&offering.tags),
            "requires": parse(&offering.requires),
            "documentation_url": metadata.get("documentationUrl").cloned().unwrap_or(Value::Null),
            "service_broker_guid": broker.map(|broker| broker.guid.clone()),
            "service_broker_name": broker.map(|broker| broker.name.clone()),
            "plan_updateable": offering.plan_updateable,
            "bindings_retrievable": offering.bindings_retrievable,
            "instances_retrievable": offering.instances_retrievable,
            "allow_context_updates": offering.allow_context_updates,
            "service_plans_url": format!("{url}/service_plans"),
        }),
    )
}

fn render_plan(index: &CatalogIndex, plan: &ServicePlanRow) -> Value {
    let offering_guid = index
        .offerings
        .get(&plan.service_offering_id)
        .map_or("", |offering| offering.guid.as_str());
    let metadata = parse(&plan.metadata);
    let url = format!("/v2/service_plans/{}", plan.guid);
    super::resource(
        &plan.guid,
        &url,
        &plan.created_at,
        &plan.updated_at,
        json!({
            "name": plan.name,
            "free": plan.free,
            "description": plan.description,
            "service_guid": offering_guid,
            "extra": if metadata.as_object().is_some_and(|map| !map.is_empty()) { json!(metadata.to_string()) } else { Value::Null },
            "unique_id": plan.broker_id,
            "public": plan.public,
            "bindable": plan.bindable,
            "plan_updateable": plan.plan_updateable,
            "active": plan.active,
            "maintenance_info": plan.maintenance_info.as_deref().map_or(json!({}), parse),
            "schemas": parse(&plan.schemas),
            "service_url": format!("/v2/services/{offering_guid}"),
            "service_instances_url": format!("{url}/service_instances"),
        }),
    )
}

fn last_operation(instance: &ServiceInstanceRow) -> Value {
    match (
        &instance.last_operation_type,
        &instance.last_operation_state,
    ) {
        (Some(kind), Some(state)) => json!({
            "type": kind,
            "state": state,
            "description": instance.last_operation_description.clone().unwrap_or_default(),
            "updated_at": instance.last_operation_updated_at,
            "created_at": instance.last_operation_created_at,
        }),
        _ => Value::Null,
    }
}

fn render_instance(index: &CatalogIndex, instance: &ServiceInstanceRow) -> Value {
    let space_guid = index
        .spaces
        .get(&instance.space_id)
        .map_or("", |space| space.guid.as_str());
    let tags = parse(&instance.tags);
    if instance.instance_type == USER_PROVIDED {
        let url = format!("/v2/user_provided_service_instances/{}", instance.guid);
        return super::resource(
            &instance.guid,
            &url,
            &instance.created_at,
            &instance.updated_at,
            json!({
                "name": instance.name,
                "credentials": instance.credentials.as_deref().map_or(json!({}), parse),
                "space_guid": space_guid,
                "type": "user_provided_service_instance",
                "syslog_drain_url": instance.syslog_drain_url.clone().unwrap_or_default(),
                "route_service_url": instance.route_service_url,
                "tags": tags,
                "space_url": format!("/v2/spaces/{space_guid}"),
                "service_bindings_url": format!("{url}/service_bindings"),
                "routes_url": format!("{url}/routes"),
            }),
        );
    }
    let plan = instance
        .service_plan_id
        .and_then(|id| index.plans.iter().find(|plan| plan.id == id));
    let offering_guid = plan
        .and_then(|plan| index.offerings.get(&plan.service_offering_id))
        .map(|offering| offering.guid.clone());
    let plan_guid = plan.map(|plan| plan.guid.clone());
    let url = format!("/v2/service_instances/{}", instance.guid);
    super::resource(
        &instance.guid,
        &url,
        &instance.created_at,
        &instance.updated_at,
        json!({
            "name": instance.name,
            "credentials": {},
            "service_plan_guid": plan_guid,
            "space_guid": space_guid,
            "service_guid": offering_guid,
            "gateway_data": null,
            "dashboard_url": instance.dashboard_url,
            "type": "managed_service_instance",
            "last_operation": last_operation(instance),
            "tags": tags,
            "maintenance_info": instance.maintenance_info.as_deref().map_or(json!({}), parse),
            "space_url": format!("/v2/spaces/{space_guid}"),
            "service_url": format!("/v2/services/{}", offering_guid.clone().unwrap_or_default()),
            "service_plan_url": format!("/v2/service_plans/{}", plan_guid.clone().unwrap_or_default()),
            "service_bindings_url": format!("{url}/service_bindings"),
            "service_keys_url": format!("{url}/service_keys"),
            "routes_url": format!("{url}/routes"),
            "shared_from_url": format!("{url}/shared_from"),
            "shared_to_url": format!("{url}/shared_to"),
            "service_instance_parameters_url": format!("{url}/parameters"),
        }),
    )
}

fn render_binding(
    binding: &CredentialBindingRow,
    instance_guid: &str,
    app_guid: &str,
    show_credentials: bool,
) -> Value {
    let url = format!("/v2/service_bindings/{}", binding.guid);
    let credentials = if show_credentials {
        binding.credentials.as_deref().map_or(json!({}), parse)
    } else {
        json!({"redacted_message": "[PRIVATE DATA HIDDEN]"})
    };
    super::resource(
        &binding.guid,
        &url,
        &binding.created_at,
        &binding.updated_at,
        json!({
            "app_guid": app_guid,
            "service_instance_guid": instance_guid,
            "credentials": credentials,
            "binding_options": {},
            "gateway_data": null,
            "gateway_name": "",
            "syslog_drain_url": binding.syslog_drain_url,
            "volume_mounts": match binding.volume_mounts.as_deref().map(parse) { Some(Value::Array(mounts)) => json!(mounts), _ => json!([]) },
            "name": binding.name,
            "last_operation": {
                "type": binding.last_operation_type,
                "state": binding.last_operation_state,
                "description": binding.last_operation_description.clone().unwrap_or_default(),
                "updated_at": binding.last_operation_updated_at,
                "created_at": binding.last_operation_created_at,
            },
            "app_url": format!("/v2/apps/{app_guid}"),
            "service_instance_url": format!("/v2/service_instances/{instance_guid}"),
            "service_binding_parameters_url": format!("{url}/parameters"),
        }),
    )
}

async fn list_brokers(
    state: web::Data<AppState>,
    user: CurrentUser,
    request: HttpRequest,
) -> Result<HttpResponse, ApiError> {
    let query = V2Query::parse(&request, &["name", "space_guid"], &["name"])?;
    let body = state
        .db
        .run(move |conn| {
            let permissions = Permissions::load(conn, &user)?;
            let index = CatalogIndex::load(conn)?;
            let mut brokers: Vec<&ServiceBrokerRow> = index
                .brokers
                .values()
                .filter(|broker| index.broker_visible(&permissions, broker))
                .filter(|broker| {
                    let space = broker
                        .space_id
                        .and_then(|id| index.spaces.get(&id))
                        .map_or("", |space| space.guid.as_str());
                    query.accepts("name", &broker.name) && query.accepts("space_guid", space)
                })
                .collect();
            brokers.sort_by_key(|broker| broker.id);
            Ok(query.envelope(
                brokers,
                "/v2/service_brokers",
                |broker| &broker.name,
                |broker| render_broker(&index, broker),
            ))
        })
        .await?;
    Ok(HttpResponse::Ok().json(body))
}

async fn get_broker(
    state: web::Data<AppState>,
    user: CurrentUser,
    path: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let guid = path.into_inner();
    let body = state
        .db
        .run(move |conn| {
            let permissions = Permissions::load(conn, &user)?;
            let index = CatalogIndex::load(conn)?;
            let broker = index
                .brokers
                .values()
                .find(|broker| broker.guid == guid && index.broker_visible(&permissions, broker))
                .ok_or_else(|| ApiError::with_args(ErrorKind::ServiceBrokerNotFound, &[&guid]))?;
            Ok(render_broker(&index, broker))
        })
        .await?;
    Ok(HttpResponse::Ok().json(body))
}

fn offering_visible(
    index: &CatalogIndex,
    permissions: Option<&Permissions>,
    offering: &ServiceOfferingRow,
) -> bool {
    index.plans.iter().any(|plan| {
        plan.service_offering_id == offering.id && index.plan_visible(permissions, plan)
    })
}

async fn list_services(
    state: web::Data<AppState>,
    MaybeUser(user): MaybeUser,
    request: HttpRequest,
) -> Result<HttpResponse, ApiError> {
    let query = V2Query::parse(&request, SERVICE_QUERY_PARAMETERS, &["label", "id"])?;
    let body = state
        .db
        .run(move |conn| {
            let permissions = user
                .as_ref()
                .map(|user| Permissions::load(conn, user))
                .transpose()?;
            let index = CatalogIndex::load(conn)?;
            Ok(offering_page(&index, &query, "/v2/services", |offering| {
                offering_visible(&index, permissions.as_ref(), offering)
            }))
        })
        .await?;
    Ok(HttpResponse::Ok().json(body))
}

/// CC's `ServicesController.query_parameters`.
const SERVICE_QUERY_PARAMETERS: &[&str] = &[
    "active",
    "label",
    "provider",
    "service_broker_guid",
    "unique_id",
];

/// The offerings `include` admits that pass the `q` conditions, in creation order, as a v2
/// list at `path`.
fn offering_page(
    index: &CatalogIndex,
    query: &V2Query,
    path: &str,
    include: impl Fn(&ServiceOfferingRow) -> bool,
) -> Value {
    let mut offerings: Vec<&ServiceOfferingRow> = index
        .offerings
        .values()
        .filter(|offering| include(offering))
        .filter(|offering| {
            let broker = index
                .brokers
                .get(&offering.service_broker_id)
                .map_or("", |broker| broker.guid.as_str());
            query.accepts("label", &offering.name)
                && query.accepts("active", if offering.active { "true" } else { "false" })
                && query.accepts("service_broker_guid", broker)
                && query.accepts("unique_id", &offering.broker_id)
        })
        .collect();
    offerings.sort_by_key(|offering| offering.id);
    query.envelope(
        offerings,
        path,
        |offering| &offering.name,
        |offering| render_service(index, offering),
    )
}

/// `GET /v2/spaces/:g/services`: the offerings with a plan that may be used in the space
/// (public, made visible to its org, or from a broker scoped to this space).
async fn list_space_services(
    state: web::Data<AppState>,
    user: CurrentUser,
    path: web::Path<String>,
    request: HttpRequest,
) -> Result<HttpResponse, ApiError> {
    let query = V2Query::parse(&request, SERVICE_QUERY_PARAMETERS, &["label", "id"])?;
    let guid = path.into_inner();
    let body = state
        .db
        .run(move |conn| {
            let permissions = Permissions::load(conn, &user)?;
            let (space, _org) = crate::v3::spaces::visible_space(conn, &permissions, &guid)
                .map_err(|_| ApiError::with_args(ErrorKind::SpaceNotFound, &[&guid]))?;
            let index = CatalogIndex::load(conn)?;
            let path = format!("/v2/spaces/{}/services", space.guid);
            Ok(offering_page(&index, &query, &path, |offering| {
                index.plans.iter().any(|plan| {
                    plan.service_offering_id == offering.id
                        && index.plan_available_in_space(plan, &space)
                })
            }))
        })
        .await?;
    Ok(HttpResponse::Ok().json(body))
}

/// Whether the plan may be used in the org: public or made visible to it (global brokers), or
/// from a broker scoped to one of its spaces that the caller sees.
fn plan_available_in_org(
    index: &CatalogIndex,
    permissions: &Permissions,
    plan: &ServicePlanRow,
    org_id: i32,
) -> bool {
    let Some(broker) = index.broker_of_plan(plan) else {
        return false;
    };
    match broker.space_id {
        Some(space_id) => index.spaces.get(&space_id).is_some_and(|space| {
            space.organization_id == org_id
                && permissions.can_read_space(space.id, space.organization_id)
        }),
        None => {
            plan.public
                || index
                    .visibilities
                    .get(&plan.id)
                    .into_iter()
                    .flatten()
                    .any(|visibility| visibility.organization_id == org_id)
        }
    }
}

/// `GET /v2/organizations/:g/services`: the offerings with a plan that may be used in the org.
async fn list_org_services(
    state: web::Data<AppState>,
    user: CurrentUser,
    path: web::Path<String>,
    request: HttpRequest,
) -> Result<HttpResponse, ApiError> {
    let query = V2Query::parse(&request, SERVICE_QUERY_PARAMETERS, &["label", "id"])?;
    let guid = path.into_inner();
    let body = state
        .db
        .run(move |conn| {
            let permissions = Permissions::load(conn, &user)?;
            let org = store::orgs::find(conn, &guid)?
                .filter(|org| permissions.can_read_org(org.id))
                .ok_or_else(|| ApiError::with_args(ErrorKind::OrganizationNotFound, &[&guid]))?;
            let index = CatalogIndex::load(conn)?;
            let path = format!("/v2/organizations/{}/services", org.guid);
            Ok(offering_page(&index, &query, &path, |offering| {
                index.plans.iter().any(|plan| {
                    plan.service_offering_id == offering.id
                        && plan_available_in_org(&index, &permissions, plan, org.id)
                })
            }))
        })
        .await?;
    Ok(HttpResponse::Ok().json(body))
}

async fn get_service(
    state: web::Data<AppState>,
    MaybeUser(user): MaybeUser,
    path: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let guid = path.into_inner();
    let body = state
        .db
        .run(move |conn| {
            let permissions = user
                .as_ref()
                .map(|user| Permissions::load(conn, user))
                .transpose()?;
            let index = CatalogIndex::load(conn)?;
            let offering = index
                .offerings
                .values()
                .find(|offering| {
                    offering.guid == guid
                        && offering_visible(&index, permissions.as_ref(), offering)
                })
                .ok_or_else(|| ApiError::with_args(ErrorKind::ServiceNotFound, &[&guid]))?;
            Ok(render_service(&index, offering))
        })
        .await?;
    Ok(HttpResponse::Ok().json(body))
}

async fn list_plans(
    state: web::Data<AppState>,
    MaybeUser(user): MaybeUser,
    request: HttpRequest,
) -> Result<HttpResponse, ApiError> {
    let query = V2Query::parse(
        &request,
        &[
            "active",
            "service_guid",
            "service_instance_guid",
            "service_broker_guid",
            "unique_id",
        ],
        &["name", "id"],
    )?;
    let body = state
        .db
        .run(move |conn| {
            let permissions = user
                .as_ref()
                .map(|user| Permissions::load(conn, user))
                .transpose()?;
            let index = CatalogIndex::load(conn)?;
            let instances = services_store::list_instances(conn)?;
            let plans: Vec<&ServicePlanRow> = index
                .plans
                .iter()
                .filter(|plan| index.plan_visible(permissions.as_ref(), plan))
                .filter(|plan| {
                    let offering = index.offerings.get(&plan.service_offering_id);
                    let broker = index
                        .broker_of_plan(plan)
                        .map_or("", |broker| broker.guid.as_str());
                    let instance_guids = instances
                        .iter()
                        .filter(|instance| instance.service_plan_id == Some(plan.id))
                        .map(|instance| instance.guid.as_str());
                    query.accepts("active", if plan.active { "true" } else { "false" })
                        && query.accepts(
                            "service_guid",
                            offering.map_or("", |offering| offering.guid.as_str()),
                        )
                        && query.accepts("service_broker_guid", broker)
                        && query.accepts("unique_id", &plan.broker_id)
                        && query.accepts_any("service_instance_guid", instance_guids)
                })
                .collect();
            Ok(query.envelope(
                plans,
                "/v2/service_plans",
                |plan| &plan.name,
                |plan| render_plan(&index, plan),
            ))
        })
        .await?;
    Ok(HttpResponse::Ok().json(body))
}

async fn get_plan(
    state: web::Data<AppState>,
    MaybeUser(user): MaybeUser,
    path: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let guid = path.into_inner();
    let body = state
        .db
        .run(move |conn| {
            let permissions = user
                .as_ref()
                .map(|user| Permissions::load(conn, user))
                .transpose()?;
            let index = CatalogIndex::load(conn)?;
            let plan = index
                .plans
                .iter()
                .find(|plan| plan.guid == guid && index.plan_visible(permissions.as_ref(), plan))
                .ok_or_else(|| ApiError::with_args(ErrorKind::ServicePlanNotFound, &[&guid]))?;
            Ok(render_plan(&index, plan))
        })
        .await?;
    Ok(HttpResponse::Ok().json(body))
}

fn instance_page(
    conn: &mut crate::db::DbConn,
    user: &CurrentUser,
    query: &V2Query,
    path: &str,
    include: impl Fn(&ServiceInstanceRow) -> bool,
) -> Result<Value, ApiError> {
    let permissions = Permissions::load(conn, user)?;
    let index = CatalogIndex::load(conn)?;
    let instances: Vec<ServiceInstanceRow> = services_store::list_instances(conn)?
        .into_iter()
        .filter(|instance| include(instance))
        .filter(|instance| {
            index
                .spaces
                .get(&instance.space_id)
                .is_some_and(|space| permissions.can_read_space(space.id, space.organization_id))
        })
        .filter(|instance| {
            let space = index.spaces.get(&instance.space_id);
            let org = space
                .and_then(|space| index.orgs.get(&space.organization_id))
                .map_or("", |org| org.guid.as_str());
            let plan = instance
                .service_plan_id
                .and_then(|id| index.plans.iter().find(|plan| plan.id == id))
                .map_or("", |plan| plan.guid.as_str());
            query.accepts("name", &instance.name)
                && query.accepts("space_guid", space.map_or("", |space| space.guid.as_str()))
                && query.accepts("organization_guid", org)
                && query.accepts("service_plan_guid", plan)
        })
        .collect();
    Ok(query.envelope(
        instances,
        path,
        |instance| &instance.name,
        |instance| {
            let mut rendered = render_instance(&index, instance);
            // As for a single instance: user-provided credentials only for secret readers.
            if instance.instance_type == USER_PROVIDED
                && !permissions.can_read_secrets_in_space(instance.space_id)
            {
                rendered["entity"]["credentials"] =
                    json!({"redacted_message": "[PRIVATE DATA HIDDEN]"});
            }
            rendered
        },
    ))
}

/// The query of a managed-instance list and whether it asks for user-provided instances too
/// (`return_user_provided_service_instances=true`).
fn instance_list_query(request: &HttpRequest) -> Result<(V2Query, bool), ApiError> {
    let query = V2Query::parse(
        request,
        &[
            "name",
            "space_guid",
            "service_plan_guid",
            "organization_guid",
        ],
        &["name", "id"],
    )?;
    let with_user_provided = crate::query::query_pairs(request)?
        .iter()
        .any(|(key, value)| key == "return_user_provided_service_instances" && value == "true");
    Ok((query, with_user_provided))
}

async fn list_instances(
    state: web::Data<AppState>,
    user: CurrentUser,
    request: HttpRequest,
) -> Result<HttpResponse, ApiError> {
    let (query, with_user_provided) = instance_list_query(&request)?;
    let body = state
        .db
        .run(move |conn| {
            instance_page(conn, &user, &query, "/v2/service_instances", |instance| {
                with_user_provided || instance.instance_type != USER_PROVIDED
            })
        })
        .await?;
    Ok(HttpResponse::Ok().json(body))
}

/// `GET /v2/spaces/:g/service_instances[?return_user_provided_service_instances=true]`: the
/// space's managed instances, and its user-provided ones with the flag.
async fn list_space_instances(
    state: web::Data<AppState>,
    user: CurrentUser,
    path: web::Path<String>,
    request: HttpRequest,
) -> Result<HttpResponse, ApiError> {
    let (query, with_user_provided) = instance_list_query(&request)?;
    let guid = path.into_inner();
    let body = state
        .db
        .run(move |conn| {
            let permissions = Permissions::load(conn, &user)?;
            let (space, _org) = crate::v3::spaces::visible_space(conn, &permissions, &guid)
                .map_err(|_| ApiError::with_args(ErrorKind::SpaceNotFound, &[&guid]))?;
            let path = format!("/v2/spaces/{}/service_instances", space.guid);
            instance_page(conn, &user, &query, &path, |instance| {
                instance.space_id == space.id
                    && (with_user_provided || instance.instance_type != USER_PROVIDED)
            })
        })
        .await?;
    Ok(HttpResponse::Ok().json(body))
}

/// The `services` of `GET /v2/spaces/:g/summary`: each instance with its plan and offering
/// (absent for user-provided instances, which is how cf tells them apart) and how many apps
/// are bound to it.
pub(crate) fn summary_instances(
    conn: &mut DbConn,
    instances: &[ServiceInstanceRow],
    bound_app_count: impl Fn(i32) -> usize,
) -> Result<Vec<Value>, ApiError> {
    let index = CatalogIndex::load(conn)?;
    Ok(instances
        .iter()
        .map(|instance| {
            let mut summary = json!({
                "guid": instance.guid,
                "name": instance.name,
                "bound_app_count": bound_app_count(instance.id),
                "last_operation": last_operation(instance),
                "dashboard_url": instance.dashboard_url,
                "maintenance_info": instance.maintenance_info.as_deref().map_or(json!({}), parse),
            });
            let plan = instance
                .service_plan_id
                .and_then(|id| index.plans.iter().find(|plan| plan.id == id));
            if let Some(plan) = plan {
                let offering = index.offerings.get(&plan.service_offering_id);
                let broker = index.broker_of_plan(plan);
                summary["service_broker_name"] = json!(broker.map(|broker| broker.name.clone()));
                summary["service_plan"] = json!({
                    "guid": plan.guid,
                    "name": plan.name,
                    "maintenance_info": plan.maintenance_info.as_deref().map_or(json!({}), parse),
                    "service": {
                        "guid": offering.map(|offering| offering.guid.clone()),
                        "label": offering.map(|offering| offering.name.clone()),
                        "provider": null,
                        "version": null,
                    },
                });
            }
            summary
        })
        .collect())
}

async fn list_upsis(
    state: web::Data<AppState>,
    user: CurrentUser,
    request: HttpRequest,
) -> Result<HttpResponse, ApiError> {
    let query = V2Query::parse(
        &request,
        &["name", "space_guid", "organization_guid"],
        &["name", "id"],
    )?;
    let body = state
        .db
        .run(move |conn| {
            instance_page(
                conn,
                &user,
                &query,
                "/v2/user_provided_service_instances",
                |instance| instance.instance_type == USER_PROVIDED,
            )
        })
        .await?;
    Ok(HttpResponse::Ok().json(body))
}

async fn one_instance(
    state: web::Data<AppState>,
    user: CurrentUser,
    guid: String,
    user_provided_only: bool,
) -> Result<HttpResponse, ApiError> {
    let body = state
        .db
        .run(move |conn| {
            let permissions = Permissions::load(conn, &user)?;
            let index = CatalogIndex::load(conn)?;
            let not_found = || ApiError::with_args(ErrorKind::ServiceInstanceNotFound, &[&guid]);
            let (instance, space) = service_actions::readable_instance(conn, &permissions, &guid)?
                .filter(|(instance, _)| {
                    !user_provided_only || instance.instance_type == USER_PROVIDED
                })
                .ok_or_else(not_found)?;
            let mut rendered = render_instance(&index, &instance);
            if instance.instance_type == USER_PROVIDED
                && !permissions.can_read_secrets_in_space(space.id)
            {
                rendered["entity"]["credentials"] =
                    json!({"redacted_message": "[PRIVATE DATA HIDDEN]"});
            }
            Ok(rendered)
        })
        .await?;
    Ok(HttpResponse::Ok().json(body))
}

async fn get_instance(
    state: web::Data<AppState>,
    user: CurrentUser,
    path: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    one_instance(state, user, path.into_inner(), false).await
}

async fn get_upsi(
    state: web::Data<AppState>,
    user: CurrentUser,
    path: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    one_instance(state, user, path.into_inner(), true).await
}

fn binding_rows(
    conn: &mut crate::db::DbConn,
    permissions: &Permissions,
) -> Result<Vec<(CredentialBindingRow, String, String, bool)>, ApiError> {
    let index = CatalogIndex::load(conn)?;
    let instances: std::collections::HashMap<i32, ServiceInstanceRow> =
        services_store::list_instances(conn)?
            .into_iter()
            .map(|instance| (instance.id, instance))
            .collect();
    let apps: std::collections::HashMap<i32, String> = store::apps::list(conn)?
        .into_iter()
        .map(|app| (app.id, app.guid))
        .collect();
    Ok(services_store::list_bindings(conn)?
        .into_iter()
        .filter(|binding| binding.binding_type == "app")
        .filter_map(|binding| {
            let instance = instances.get(&binding.service_instance_id)?;
            let space = index.spaces.get(&instance.space_id)?;
            if !permissions.can_read_space(space.id, space.organization_id) {
                return None;
            }
            let app_guid = binding
                .app_id
                .and_then(|id| apps.get(&id))
                .cloned()
                .unwrap_or_default();
            let secrets = permissions.can_read_secrets_in_space(space.id);
            Some((binding, instance.guid.clone(), app_guid, secrets))
        })
        .collect())
}

async fn list_bindings(
    state: web::Data<AppState>,
    user: CurrentUser,
    request: HttpRequest,
) -> Result<HttpResponse, ApiError> {
    let query = V2Query::parse(
        &request,
        &["app_guid", "name", "service_instance_guid"],
        &["id"],
    )?;
    let body = state
        .db
        .run(move |conn| {
            let permissions = Permissions::load(conn, &user)?;
            let rows: Vec<_> = binding_rows(conn, &permissions)?
                .into_iter()
                .filter(|(binding, instance, app, _)| {
                    query.accepts("app_guid", app)
                        && query.accepts("service_instance_guid", instance)
                        && query.accepts("name", binding.name.as_deref().unwrap_or(""))
                })
                .collect();
            Ok(query.envelope(
                rows,
                "/v2/service_bindings",
                |(binding, ..)| binding.name.as_deref().unwrap_or(""),
                |(binding, instance, app, secrets)| {
                    render_binding(binding, instance, app, *secrets)
                },
            ))
        })
        .await?;
    Ok(HttpResponse::Ok().json(body))
}

async fn get_binding(
    state: web::Data<AppState>,
    user: CurrentUser,
    path: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let guid = path.into_inner();
    let body = state
        .db
        .run(move |conn| {
            let permissions = Permissions::load(conn, &user)?;
            let (binding, instance, app, secrets) = binding_rows(conn, &permissions)?
                .into_iter()
                .find(|(binding, ..)| binding.guid == guid)
                .ok_or_else(|| ApiError::with_args(ErrorKind::ServiceBindingNotFound, &[&guid]))?;
            Ok(render_binding(&binding, &instance, &app, secrets))
        })
        .await?;
    Ok(HttpResponse::Ok().json(body))
}

// ---------------------------------------------------------------------------------------------
// Writes: the shared checks of `service_actions`, the broker work of `ServiceRunner`, v2 shapes.

/// v2's codes for a refused services request.
fn v2_words(refusal: Refusal) -> ApiError {
    match refusal {
        Refusal::SpaceNotFound(guid) => ApiError::with_args(
            ErrorKind::InvalidRelation,
            &[&format!(
                "Could not find VCAP::CloudController::Space with guid {guid}"
            )],
        ),
        Refusal::PlanNotFound(guid) => ApiError::with_args(
            ErrorKind::InvalidRelation,
            &[&format!(
                "Could not find VCAP::CloudController::ServicePlan with guid {guid}"
            )],
        ),
        Refusal::InstanceNameTaken(name) => {
            ApiError::with_args(ErrorKind::ServiceInstanceNameTaken, &[&name])
        }
        Refusal::PlanOfOtherOffering => ApiError::with_args(
            ErrorKind::ServicePlanInvalid,
            &["cannot switch to a plan of a different service"],
        ),
        Refusal::PlanNotUpdateable => ApiError::plain(ErrorKind::ServicePlanNotUpdateable),
        Refusal::InstanceNotFound(guid) | Refusal::InstanceCreateFailed(guid) => {
            ApiError::with_args(ErrorKind::ServiceInstanceNotFound, &[&guid])
        }
        Refusal::AppNotFound(guid) => ApiError::with_args(ErrorKind::AppNotFound, &[&guid]),
        Refusal::DifferentSpaces => ApiError::plain(ErrorKind::ServiceBindingDifferentSpaces),
        Refusal::AppAlreadyBound => ApiError::with_args(
            ErrorKind::ServiceBindingAppServiceTaken,
            &["The app is already bound to the service."],
        ),
        Refusal::KeyNameTaken(name) => {
            ApiError::with_args(ErrorKind::ServiceKeyNameTaken, &[&name])
        }
        Refusal::KeyForUserProvided => ApiError::with_args(
            ErrorKind::ServiceKeyNotSupported,
            &["Service keys are not supported for user-provided service instances."],
        ),
        Refusal::NotBindable => ApiError::plain(ErrorKind::UnbindableService),
        Refusal::BrokerNameTaken(_) => ApiError::plain(ErrorKind::ServiceBrokerNameTaken),
        Refusal::BrokerUrlInvalid(url) => {
            ApiError::with_args(ErrorKind::ServiceBrokerUrlInvalid, &[&url])
        }
        Refusal::BrokerUrlBasicAuth => {
            ApiError::plain(ErrorKind::ServiceBrokerUrlBasicAuthNotSupported)
        }
        Refusal::SpaceScopedPlanVisibility => ApiError::with_args(
            ErrorKind::ServicePlanVisibilityInvalid,
            &["plans of space-scoped brokers are visible in their space only"],
        ),
    }
}

/// Boolean query flags (`accepts_incomplete`, `purge`, `recursive`, `async`); other parameters
/// are ignored, as CC v2 does.
fn flags(request: &HttpRequest, names: &[&str]) -> Result<Vec<bool>, ApiError> {
    let pairs = crate::query::query_pairs(request)?;
    let mut values = vec![false; names.len()];
    for (key, value) in &pairs {
        if let Some(position) = names.iter().position(|name| name == key) {
            values[position] = match value.as_str() {
                "true" => true,
                "false" => false,
                _ => return Err(ApiError::bad_query(format!("{key} must be true or false"))),
            };
        }
    }
    Ok(values)
}

/// The body as an object (v2 ignores fields it does not know).
fn v2_object(raw: &Value) -> Result<&Map<String, Value>, ApiError> {
    raw.as_object()
        .ok_or_else(|| ApiError::parse("the request body must be a JSON object"))
}

/// A required string field; `invalid` re-codes the complaint.
fn required_string(
    object: &Map<String, Value>,
    field: &str,
    invalid: impl Fn(ApiError) -> ApiError,
) -> Result<String, ApiError> {
    body::optional_string(object, field)
        .map_err(&invalid)?
        .filter(|value| !value.is_empty())
        .ok_or_else(|| invalid(ApiError::unprocessable(format!("{field} is required"))))
}

fn created(body: Value) -> HttpResponse {
    let location = body["metadata"]["url"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    HttpResponse::Created()
        .insert_header(("Location", location))
        .json(body)
}

async fn first_answer(receiver: FirstAnswerReceiver) -> Result<FirstAnswer, ApiError> {
    receiver
        .await
        .map_err(|_| ApiError::internal("the services job ended without an answer"))
}

/// The instance as v2 JSON, read again after its operation was recorded.
async fn instance_body(state: &AppState, instance_id: i32) -> Result<Value, ApiError> {
    state
        .db
        .run(move |conn| {
            let index = CatalogIndex::load(conn)?;
            let instance = services_store::find_instance_by_id(conn, instance_id)?
                .ok_or_else(|| ApiError::not_found("Service instance"))?;
            Ok(render_instance(&index, &instance))
        })
        .await
}

/// The instance (managed or, with `user_provided`, user-provided) if the caller sees it.
fn visible_instance(
    conn: &mut DbConn,
    permissions: &Permissions,
    guid: &str,
    user_provided: bool,
) -> Result<(ServiceInstanceRow, SpaceRow), ApiError> {
    let not_found = || {
        if user_provided {
            ApiError::with_args(ErrorKind::UserProvidedServiceInstanceNotFound, &[guid])
        } else {
            ApiError::with_args(ErrorKind::ServiceInstanceNotFound, &[guid])
        }
    };
    service_actions::readable_instance(conn, permissions, guid)?
        .filter(|(instance, _)| (instance.instance_type == USER_PROVIDED) == user_provided)
        .ok_or_else(not_found)
}

/// CC v2 refuses to delete an instance with bindings or keys unless `recursive=true`.
fn refuse_associations(conn: &mut DbConn, instance: &ServiceInstanceRow) -> Result<(), ApiError> {
    let bindings = services_store::bindings_of_instance(conn, instance.id)?;
    let mut kinds = Vec::new();
    if bindings.iter().any(|binding| binding.binding_type == "app") {
        kinds.push("service_bindings");
    }
    if bindings.iter().any(|binding| binding.binding_type == "key") {
        kinds.push("service_keys");
    }
    if kinds.is_empty() {
        return Ok(());
    }
    Err(ApiError::with_args(
        ErrorKind::AssociationNotEmpty,
        &[&kinds.join(", "), "service_instances"],
    ))
}

fn instance_invalid(error: ApiError) -> ApiError {
    ApiError::with_args(ErrorKind::ServiceInstanceInvalid, &[&error.detail])
}

/// `POST /v2/service_instances[?accepts_incomplete=true]`: 201 when the broker provisioned at
/// once, 202 with `last_operation` `in progress` when it works asynchronously.
async fn create_instance(
    state: web::Data<AppState>,
    user: CurrentUser,
    request: HttpRequest,
    payload: web::Json<Value>,
) -> Result<HttpResponse, ApiError> {
    let accepts_incomplete = flags(&request, &["accepts_incomplete"])?[0];
    let raw = payload.into_inner();
    let object = v2_object(&raw)?;
    let name = required_string(object, "name", instance_invalid)?;
    body::check_name(&name).map_err(instance_invalid)?;
    let space_guid = required_string(object, "space_guid", instance_invalid)?;
    let plan_guid = required_string(object, "service_plan_guid", instance_invalid)?;
    let parameters = parameters_object(object.get("parameters")).map_err(instance_invalid)?;
    let tags = service_actions::tags_of(object)
        .map_err(instance_invalid)?
        .unwrap_or_default();
    let user_guid = user.guid.clone();
    let request = service_actions::NewManaged {
        name,
        space_guid,
        plan_guid,
        tags,
    };
    let creation = state
        .db
        .run(move |conn| {
            let permissions = Permissions::load(conn, &user)?;
            service_actions::begin_managed_create(conn, v2_words, &user, &permissions, request)
        })
        .await?;
    if let Some(orphan) = creation.orphan {
        state.services.mitigate_orphan(orphan, None);
    }
    let instance_id = creation.instance.id;
    let answer = state.services.provision(
        creation.job_guid,
        instance_id,
        parameters,
        accepts_incomplete,
        Some(user_guid),
    );
    match first_answer(answer).await? {
        FirstAnswer::Done => Ok(created(instance_body(&state, instance_id).await?)),
        FirstAnswer::InProgress => {
            let body = instance_body(&state, instance_id).await?;
            let location = format!("/v2/service_instances/{}", creation.instance.guid);
            Ok(HttpResponse::Accepted()
                .insert_header(("Location", location))
                .json(body))
        }
        FirstAnswer::Failed(error) => {
            // CC v2 keeps no instance whose provision failed; the name is free again.
            state
                .db
                .run(move |conn| services_store::delete_instance(conn, instance_id))
                .await?;
            Err(error)
        }
    }
}

/// `PUT /v2/service_instances/:guid[?accepts_incomplete=true]`: rename, tags, plan change,
/// parameters; 201, or 202 while the broker updates asynchronously.
async fn update_instance(
    state: web::Data<AppState>,
    user: CurrentUser,
    path: web::Path<String>,
    request: HttpRequest,
    payload: web::Json<Value>,
) -> Result<HttpResponse, ApiError> {
    let accepts_incomplete = flags(&request, &["accepts_incomplete"])?[0];
    let raw = payload.into_inner();
    let object = v2_object(&raw)?;
    let name = body::optional_string(object, "name").map_err(instance_invalid)?;
    if let Some(name) = &name {
        body::check_name(name).map_err(instance_invalid)?;
    }
    let tags = service_actions::tags_of(object).map_err(instance_invalid)?;
    let parameters = parameters_object(object.get("parameters")).map_err(instance_invalid)?;
    let plan_guid = body::optional_string(object, "service_plan_guid").map_err(instance_invalid)?;
    let guid = path.into_inner();
    let user_guid = user.guid.clone();
    let has_parameters = parameters.is_some();
    let (instance_id, update) = state
        .db
        .run(move |conn| {
            let permissions = Permissions::load(conn, &user)?;
            let (instance, space) = visible_instance(conn, &permissions, &guid, false)?;
            service_actions::require_writer(&permissions, &space)?;
            let changes = services_store::InstanceChanges {
                name,
                tags,
                ..Default::default()
            };
            let update = service_actions::begin_managed_update(
                conn,
                v2_words,
                &permissions,
                &instance,
                &changes,
                plan_guid.as_deref(),
                has_parameters,
            )?;
            Ok((instance.id, update))
        })
        .await?;
    if let ManagedUpdate::Started { job_guid, plan_id } = update {
        let answer = state.services.update(
            job_guid,
            instance_id,
            plan_id,
            parameters,
            accepts_incomplete,
            Some(user_guid),
        );
        match first_answer(answer).await? {
            FirstAnswer::Done => {}
            FirstAnswer::InProgress => {
                return Ok(HttpResponse::Accepted().json(instance_body(&state, instance_id).await?))
            }
            FirstAnswer::Failed(error) => return Err(error),
        }
    }
    Ok(HttpResponse::Created().json(instance_body(&state, instance_id).await?))
}

/// `DELETE /v2/service_instances/:guid[?accepts_incomplete=true][&recursive=true][&purge=true]`:
/// 204 once deleted, 202 with `last_operation` `delete in progress` while the broker works.
async fn delete_instance(
    state: web::Data<AppState>,
    user: CurrentUser,
    path: web::Path<String>,
    request: HttpRequest,
) -> Result<HttpResponse, ApiError> {
    let values = flags(&request, &["accepts_incomplete", "recursive", "purge"])?;
    let (accepts_incomplete, recursive, purge) = (values[0], values[1], values[2]);
    let guid = path.into_inner();
    let user_guid = user.guid.clone();
    let (instance_id, job) = state
        .db
        .run(move |conn| {
            let permissions = Permissions::load(conn, &user)?;
            let (instance, space) = visible_instance(conn, &permissions, &guid, false)?;
            service_actions::require_writer(&permissions, &space)?;
            if !recursive && !purge {
                refuse_associations(conn, &instance)?;
            }
            let job = service_actions::begin_instance_delete(conn, &permissions, &instance, purge)?;
            Ok((instance.id, job))
        })
        .await?;
    let Some(job_guid) = job else {
        return Ok(HttpResponse::NoContent().finish());
    };
    let answer =
        state
            .services
            .deprovision(job_guid, instance_id, accepts_incomplete, Some(user_guid));
    match first_answer(answer).await? {
        FirstAnswer::Done => Ok(HttpResponse::NoContent().finish()),
        FirstAnswer::InProgress => {
            Ok(HttpResponse::Accepted().json(instance_body(&state, instance_id).await?))
        }
        FirstAnswer::Failed(error) => Err(error),
    }
}

/// The user-provided fields of a v2 body.
fn user_provided_fields(
    object: &Map<String, Value>,
) -> Result<(Option<String>, services_store::InstanceChanges), ApiError> {
    let name = body::optional_string(object, "name").map_err(instance_invalid)?;
    if let Some(name) = &name {
        body::check_name(name).map_err(instance_invalid)?;
    }
    let changes = services_store::InstanceChanges {
        name: name.clone(),
        tags: service_actions::tags_of(object).map_err(instance_invalid)?,
        credentials: service_actions::credentials_of(object).map_err(instance_invalid)?,
        syslog_drain_url: service_actions::url_field(
            object,
            "syslog_drain_url",
            "Syslog drain url",
            false,
        )
        .map_err(instance_invalid)?,
        route_service_url: service_actions::url_field(
            object,
            "route_service_url",
            "Route service url",
            true,
        )
        .map_err(instance_invalid)?,
        ..Default::default()
    };
    Ok((name, changes))
}

/// `POST /v2/user_provided_service_instances` → 201.
async fn create_upsi(
    state: web::Data<AppState>,
    user: CurrentUser,
    payload: web::Json<Value>,
) -> Result<HttpResponse, ApiError> {
    let raw = payload.into_inner();
    let object = v2_object(&raw)?;
    let (name, changes) = user_provided_fields(object)?;
    let fields = service_actions::NewUserProvided {
        name: name.ok_or_else(|| instance_invalid(ApiError::unprocessable("name is required")))?,
        space_guid: required_string(object, "space_guid", instance_invalid)?,
        credentials: changes.credentials.unwrap_or_else(|| "{}".to_owned()),
        syslog_drain_url: changes.syslog_drain_url.flatten(),
        route_service_url: changes.route_service_url.flatten(),
        tags: changes.tags.unwrap_or_default(),
    };
    let body = state
        .db
        .run(move |conn| {
            let permissions = Permissions::load(conn, &user)?;
            let (instance, _) =
                service_actions::create_user_provided(conn, v2_words, &user, &permissions, fields)?;
            let index = CatalogIndex::load(conn)?;
            Ok(render_instance(&index, &instance))
        })
        .await?;
    Ok(created(body))
}

/// `PUT /v2/user_provided_service_instances/:guid` (partial; credentials replaced whole) → 201.
async fn update_upsi(
    state: web::Data<AppState>,
    user: CurrentUser,
    path: web::Path<String>,
    payload: web::Json<Value>,
) -> Result<HttpResponse, ApiError> {
    let raw = payload.into_inner();
    let (_, changes) = user_provided_fields(v2_object(&raw)?)?;
    let guid = path.into_inner();
    let body = state
        .db
        .run(move |conn| {
            let permissions = Permissions::load(conn, &user)?;
            let (instance, space) = visible_instance(conn, &permissions, &guid, true)?;
            service_actions::require_writer(&permissions, &space)?;
            let instance =
                service_actions::update_user_provided(conn, v2_words, &instance, &changes)?;
            let index = CatalogIndex::load(conn)?;
            Ok(render_instance(&index, &instance))
        })
        .await?;
    Ok(HttpResponse::Created().json(body))
}

/// `DELETE /v2/user_provided_service_instances/:guid[?recursive=true]` → 204.
async fn delete_upsi(
    state: web::Data<AppState>,
    user: CurrentUser,
    path: web::Path<String>,
    request: HttpRequest,
) -> Result<HttpResponse, ApiError> {
    let recursive = flags(&request, &["recursive"])?[0];
    let guid = path.into_inner();
    state
        .db
        .run(move |conn| {
            let permissions = Permissions::load(conn, &user)?;
            let (instance, space) = visible_instance(conn, &permissions, &guid, true)?;
            service_actions::require_writer(&permissions, &space)?;
            if !recursive {
                refuse_associations(conn, &instance)?;
            }
            service_actions::begin_instance_delete(conn, &permissions, &instance, false)?;
            Ok(())
        })
        .await?;
    Ok(HttpResponse::NoContent().finish())
}

/// A binding (or key) just created, with the guids its v2 rendering needs.
struct CreatedBinding {
    row: CredentialBindingRow,
    instance_guid: String,
    app_guid: String,
    /// The broker binds asynchronously.
    in_progress: bool,
}

/// Creates an app binding or a key and waits for the broker's first answer.
async fn bind(
    state: &AppState,
    user: CurrentUser,
    request: service_actions::NewCredentialBinding,
    parameters: Option<Value>,
    accepts_incomplete: bool,
) -> Result<CreatedBinding, ApiError> {
    let user_guid = user.guid.clone();
    let creation = state
        .db
        .run(move |conn| {
            let permissions = Permissions::load(conn, &user)?;
            service_actions::begin_binding(conn, v2_words, &permissions, &request)
        })
        .await?;
    let instance_guid = creation.instance.guid.clone();
    let app_guid = creation
        .app
        .as_ref()
        .map(|app| app.guid.clone())
        .unwrap_or_default();
    let (job_guid, binding_id) = match creation.start {
        BindingStart::Done(row) => {
            return Ok(CreatedBinding {
                row,
                instance_guid,
                app_guid,
                in_progress: false,
            })
        }
        BindingStart::Started { job_guid, binding } => (job_guid, binding.id),
    };
    let answer = state.services.bind(
        job_guid,
        binding_id,
        parameters,
        accepts_incomplete,
        Some(user_guid),
    );
    let in_progress = match first_answer(answer).await? {
        FirstAnswer::Done => false,
        FirstAnswer::InProgress => true,
        FirstAnswer::Failed(error) => {
            // CC v2 keeps no binding whose creation failed.
            state
                .db
                .run(move |conn| services_store::delete_binding(conn, binding_id))
                .await?;
            return Err(error);
        }
    };
    let row = state
        .db
        .run(move |conn| services_store::find_binding_by_id(conn, binding_id))
        .await?
        .ok_or_else(|| ApiError::not_found("Service binding"))?;
    Ok(CreatedBinding {
        row,
        instance_guid,
        app_guid,
        in_progress,
    })
}

fn binding_invalid(error: ApiError) -> ApiError {
    ApiError::with_args(ErrorKind::ServiceBindingInvalid, &[&error.detail])
}

/// `POST /v2/service_bindings[?accepts_incomplete=true]` → 201, or 202 while the broker binds.
async fn create_binding(
    state: web::Data<AppState>,
    user: CurrentUser,
    request: HttpRequest,
    payload: web::Json<Value>,
) -> Result<HttpResponse, ApiError> {
    let accepts_incomplete = flags(&request, &["accepts_incomplete"])?[0];
    let raw = payload.into_inner();
    let object = v2_object(&raw)?;
    let instance_guid = required_string(object, "service_instance_guid", binding_invalid)?;
    let app_guid = required_string(object, "app_guid", binding_invalid)?;
    let name = body::optional_string(object, "name").map_err(binding_invalid)?;
    let parameters = parameters_object(object.get("parameters")).map_err(binding_invalid)?;
    let request = service_actions::NewCredentialBinding {
        kind: "app".to_owned(),
        name,
        instance_guid,
        app_guid: Some(app_guid),
        parameters: parameters.as_ref().map(Value::to_string),
    };
    let binding = bind(&state, user, request, parameters, accepts_incomplete).await?;
    let body = render_binding(
        &binding.row,
        &binding.instance_guid,
        &binding.app_guid,
        true,
    );
    if binding.in_progress {
        Ok(HttpResponse::Accepted().json(body))
    } else {
        Ok(created(body))
    }
}

/// The binding (of `kind`) if the caller sees it, with its instance and space.
fn visible_binding(
    conn: &mut DbConn,
    permissions: &Permissions,
    guid: &str,
    kind: &str,
) -> Result<(CredentialBindingRow, ServiceInstanceRow, SpaceRow), ApiError> {
    let not_found = || {
        if kind == "key" {
            ApiError::with_args(ErrorKind::ServiceKeyNotFound, &[guid])
        } else {
            ApiError::with_args(ErrorKind::ServiceBindingNotFound, &[guid])
        }
    };
    service_actions::readable_binding(conn, permissions, guid)?
        .filter(|(binding, ..)| binding.binding_type == kind)
        .ok_or_else(not_found)
}

/// Deletes an app binding or a key: `None` once gone, else the binding `delete in progress`.
async fn unbind(
    state: &AppState,
    user: CurrentUser,
    guid: String,
    kind: &'static str,
    accepts_incomplete: bool,
) -> Result<Option<Value>, ApiError> {
    let user_guid = user.guid.clone();
    let (binding, job) = state
        .db
        .run(move |conn| {
            let permissions = Permissions::load(conn, &user)?;
            let (binding, instance, space) = visible_binding(conn, &permissions, &guid, kind)?;
            let job =
                service_actions::begin_unbind(conn, &permissions, &binding, &instance, &space)?;
            Ok((binding, job))
        })
        .await?;
    let Some(job_guid) = job else {
        return Ok(None);
    };
    let answer = state
        .services
        .unbind(job_guid, binding.id, accepts_incomplete, Some(user_guid));
    match first_answer(answer).await? {
        FirstAnswer::Done => Ok(None),
        FirstAnswer::InProgress => {
            let binding_id = binding.id;
            let body = state
                .db
                .run(move |conn| {
                    let binding = services_store::find_binding_by_id(conn, binding_id)?
                        .ok_or_else(|| ApiError::not_found("Service binding"))?;
                    let instance =
                        services_store::find_instance_by_id(conn, binding.service_instance_id)?
                            .map(|instance| instance.guid)
                            .unwrap_or_default();
                    let app = binding
                        .app_id
                        .map(|id| store::apps::find_by_id(conn, id))
                        .transpose()?
                        .flatten()
                        .map(|app| app.guid)
                        .unwrap_or_default();
                    Ok(render_binding(&binding, &instance, &app, true))
                })
                .await?;
            Ok(Some(body))
        }
        FirstAnswer::Failed(error) => Err(error),
    }
}

/// `DELETE /v2/service_bindings/:guid[?accepts_incomplete=true]` → 204, or 202 while the broker
/// unbinds.
async fn delete_binding(
    state: web::Data<AppState>,
    user: CurrentUser,
    path: web::Path<String>,
    request: HttpRequest,
) -> Result<HttpResponse, ApiError> {
    let accepts_incomplete = flags(&request, &["accepts_incomplete"])?[0];
    match unbind(&state, user, path.into_inner(), "app", accepts_incomplete).await? {
        None => Ok(HttpResponse::NoContent().finish()),
        Some(body) => Ok(HttpResponse::Accepted().json(body)),
    }
}

fn render_key(key: &CredentialBindingRow, instance_guid: &str) -> Value {
    let url = format!("/v2/service_keys/{}", key.guid);
    super::resource(
        &key.guid,
        &url,
        &key.created_at,
        &key.updated_at,
        json!({
            "name": key.name,
            "service_instance_guid": instance_guid,
            "credentials": key.credentials.as_deref().map_or(json!({}), parse),
            "service_instance_url": format!("/v2/service_instances/{instance_guid}"),
            "service_key_parameters_url": format!("{url}/parameters"),
        }),
    )
}

/// Keys the caller may read (their credentials are secrets: space developers, admins).
fn key_rows(
    conn: &mut DbConn,
    permissions: &Permissions,
) -> Result<Vec<(CredentialBindingRow, String)>, ApiError> {
    let index = CatalogIndex::load(conn)?;
    let instances: std::collections::HashMap<i32, ServiceInstanceRow> =
        services_store::list_instances(conn)?
            .into_iter()
            .map(|instance| (instance.id, instance))
            .collect();
    Ok(services_store::list_bindings(conn)?
        .into_iter()
        .filter(|binding| binding.binding_type == "key")
        .filter_map(|binding| {
            let instance = instances.get(&binding.service_instance_id)?;
            let space = index.spaces.get(&instance.space_id)?;
            permissions
                .can_read_secrets_in_space(space.id)
                .then(|| (binding, instance.guid.clone()))
        })
        .collect())
}

async fn list_keys(
    state: web::Data<AppState>,
    user: CurrentUser,
    request: HttpRequest,
) -> Result<HttpResponse, ApiError> {
    let query = V2Query::parse(
        &request,
        &["name", "service_instance_guid"],
        &["name", "id"],
    )?;
    let body = state
        .db
        .run(move |conn| {
            let permissions = Permissions::load(conn, &user)?;
            let rows: Vec<_> = key_rows(conn, &permissions)?
                .into_iter()
                .filter(|(key, instance)| {
                    query.accepts("name", key.name.as_deref().unwrap_or(""))
                        && query.accepts("service_instance_guid", instance)
                })
                .collect();
            Ok(query.envelope(
                rows,
                "/v2/service_keys",
                |(key, _)| key.name.as_deref().unwrap_or(""),
                |(key, instance)| render_key(key, instance),
            ))
        })
        .await?;
    Ok(HttpResponse::Ok().json(body))
}

async fn get_key(
    state: web::Data<AppState>,
    user: CurrentUser,
    path: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let guid = path.into_inner();
    let body = state
        .db
        .run(move |conn| {
            let permissions = Permissions::load(conn, &user)?;
            let (key, instance, space) = visible_binding(conn, &permissions, &guid, "key")?;
            if !permissions.can_read_secrets_in_space(space.id) {
                return Err(ApiError::forbidden());
            }
            Ok(render_key(&key, &instance.guid))
        })
        .await?;
    Ok(HttpResponse::Ok().json(body))
}

fn key_invalid(error: ApiError) -> ApiError {
    ApiError::with_args(ErrorKind::ServiceKeyInvalid, &[&error.detail])
}

/// `POST /v2/service_keys` → 201 (keys are synchronous in v2).
async fn create_key(
    state: web::Data<AppState>,
    user: CurrentUser,
    payload: web::Json<Value>,
) -> Result<HttpResponse, ApiError> {
    let raw = payload.into_inner();
    let object = v2_object(&raw)?;
    let instance_guid = required_string(object, "service_instance_guid", key_invalid)?;
    let name = required_string(object, "name", key_invalid)?;
    body::check_name(&name).map_err(key_invalid)?;
    let parameters = parameters_object(object.get("parameters")).map_err(key_invalid)?;
    let request = service_actions::NewCredentialBinding {
        kind: "key".to_owned(),
        name: Some(name),
        instance_guid,
        app_guid: None,
        parameters: parameters.as_ref().map(Value::to_string),
    };
    let key = bind(&state, user, request, parameters, false).await?;
    Ok(created(render_key(&key.row, &key.instance_guid)))
}

/// `DELETE /v2/service_keys/:guid` → 204.
async fn delete_key(
    state: web::Data<AppState>,
    user: CurrentUser,
    path: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    unbind(&state, user, path.into_inner(), "key", false).await?;
    Ok(HttpResponse::NoContent().finish())
}

// ---------------------------------------------------------------------------------------------
// Brokers

fn broker_invalid(error: ApiError) -> ApiError {
    ApiError::with_args(ErrorKind::ServiceBrokerInvalid, &[&error.detail])
}

/// CC v2 refuses a second broker with the same name or URL.
fn refuse_taken_broker(
    conn: &mut DbConn,
    except: Option<i32>,
    name: Option<&str>,
    url: Option<&str>,
) -> Result<(), ApiError> {
    for broker in services_store::list_brokers(conn)? {
        if Some(broker.id) == except {
            continue;
        }
        if name == Some(broker.name.as_str()) {
            return Err(ApiError::plain(ErrorKind::ServiceBrokerNameTaken));
        }
        if url == Some(broker.url.as_str()) {
            return Err(ApiError::with_args(
                ErrorKind::ServiceBrokerUrlTaken,
                &[&broker.url],
            ));
        }
    }
    Ok(())
}

fn visible_broker(
    conn: &mut DbConn,
    permissions: &Permissions,
    guid: &str,
) -> Result<ServiceBrokerRow, ApiError> {
    let index = CatalogIndex::load(conn)?;
    index
        .brokers
        .values()
        .find(|broker| broker.guid == guid && index.broker_visible(permissions, broker))
        .cloned()
        .ok_or_else(|| ApiError::with_args(ErrorKind::ServiceBrokerNotFound, &[guid]))
}

/// The broker row as v2 JSON, read again.
fn broker_body(conn: &mut DbConn, broker_id: i32) -> Result<Value, ApiError> {
    let index = CatalogIndex::load(conn)?;
    let broker = index
        .brokers
        .get(&broker_id)
        .ok_or_else(|| ApiError::not_found("Service broker"))?;
    Ok(render_broker(&index, broker))
}

/// `POST /v2/service_brokers` → 201 once the broker's catalog was fetched, validated and stored
/// (nothing is stored when that fails).
async fn create_broker(
    state: web::Data<AppState>,
    user: CurrentUser,
    payload: web::Json<Value>,
) -> Result<HttpResponse, ApiError> {
    let raw = payload.into_inner();
    let object = v2_object(&raw)?;
    let name = required_string(object, "name", broker_invalid)?;
    body::check_name(&name).map_err(broker_invalid)?;
    let url = required_string(object, "broker_url", broker_invalid)?;
    let username = required_string(object, "auth_username", broker_invalid)?;
    let password = required_string(object, "auth_password", broker_invalid)?;
    let space_guid = body::optional_string(object, "space_guid").map_err(broker_invalid)?;
    service_actions::broker_url(v2_words, &url)?;
    let user_guid = user.guid.clone();
    let (checked_name, checked_url) = (name.clone(), url.clone());
    let space_id = state
        .db
        .run(move |conn| {
            let permissions = Permissions::load(conn, &user)?;
            let space_id = service_actions::broker_space(
                conn,
                v2_words,
                &user,
                &permissions,
                space_guid.as_deref(),
            )?;
            refuse_taken_broker(conn, None, Some(&checked_name), Some(&checked_url))?;
            Ok(space_id)
        })
        .await?;
    let endpoint = crate::osb_client::BrokerEndpoint {
        url: url.clone(),
        username: username.clone(),
        password: password.clone(),
    };
    let catalog = state
        .services
        .fetch_catalog(&endpoint, Some(&user_guid))
        .await?;
    let body = state
        .db
        .run(move |conn| {
            let broker = conn.write_transaction(|conn| {
                let broker = service_actions::create_broker(
                    conn,
                    v2_words,
                    &name,
                    &url,
                    (&username, &password),
                    space_id,
                )?;
                store_catalog(conn, &broker, &catalog)?;
                Ok(broker)
            })?;
            broker_body(conn, broker.id)
        })
        .await?;
    Ok(created(body))
}

/// `PUT /v2/service_brokers/:guid` → 200 once the (new) broker's catalog was fetched and stored;
/// on failure the broker keeps its previous settings and catalog.
async fn update_broker(
    state: web::Data<AppState>,
    user: CurrentUser,
    path: web::Path<String>,
    payload: web::Json<Value>,
) -> Result<HttpResponse, ApiError> {
    let raw = payload.into_inner();
    let object = v2_object(&raw)?;
    let name = body::optional_string(object, "name").map_err(broker_invalid)?;
    if let Some(name) = &name {
        body::check_name(name).map_err(broker_invalid)?;
    }
    let url = body::optional_string(object, "broker_url").map_err(broker_invalid)?;
    if let Some(url) = &url {
        service_actions::broker_url(v2_words, url)?;
    }
    let username = body::optional_string(object, "auth_username").map_err(broker_invalid)?;
    let password = body::optional_string(object, "auth_password").map_err(broker_invalid)?;
    let guid = path.into_inner();
    let user_guid = user.guid.clone();
    let (checked_name, checked_url) = (name.clone(), url.clone());
    let broker = state
        .db
        .run(move |conn| {
            let permissions = Permissions::load(conn, &user)?;
            let broker = visible_broker(conn, &permissions, &guid)?;
            service_actions::require_broker_writer(&permissions, &broker)?;
            refuse_taken_broker(
                conn,
                Some(broker.id),
                checked_name.as_deref(),
                checked_url.as_deref(),
            )?;
            Ok(broker)
        })
        .await?;
    let endpoint = crate::osb_client::BrokerEndpoint {
        url: url.clone().unwrap_or_else(|| broker.url.clone()),
        username: username.unwrap_or_else(|| broker.username.clone()),
        password: password.unwrap_or_else(|| broker.password.clone()),
    };
    let catalog = state
        .services
        .fetch_catalog(&endpoint, Some(&user_guid))
        .await?;
    let credentials_changed =
        endpoint.username != broker.username || endpoint.password != broker.password;
    let body = state
        .db
        .run(move |conn| {
            conn.write_transaction(|conn| {
                service_actions::update_broker(
                    conn,
                    v2_words,
                    &broker,
                    name.as_deref(),
                    url.as_deref(),
                    credentials_changed
                        .then_some((endpoint.username.as_str(), endpoint.password.as_str())),
                )?;
                let broker = services_store::find_broker_by_id(conn, broker.id)?
                    .ok_or_else(|| ApiError::not_found("Service broker"))?;
                store_catalog(conn, &broker, &catalog)?;
                Ok(())
            })?;
            broker_body(conn, broker.id)
        })
        .await?;
    Ok(HttpResponse::Ok().json(body))
}

/// `DELETE /v2/service_brokers/:guid` → 204; refused while its plans have instances.
async fn delete_broker(
    state: web::Data<AppState>,
    user: CurrentUser,
    path: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let guid = path.into_inner();
    state
        .db
        .run(move |conn| {
            let permissions = Permissions::load(conn, &user)?;
            let broker = visible_broker(conn, &permissions, &guid)?;
            service_actions::require_broker_writer(&permissions, &broker)?;
            service_actions::require_removable(conn, &broker)?;
            services_store::delete_broker(conn, broker.id)
        })
        .await?;
    Ok(HttpResponse::NoContent().finish())
}

// ---------------------------------------------------------------------------------------------
// Plan visibility

/// `PUT /v2/service_plans/:guid` `{"public": bool}` (admins) → 201 with the plan.
async fn update_plan(
    state: web::Data<AppState>,
    user: CurrentUser,
    path: web::Path<String>,
    payload: web::Json<Value>,
) -> Result<HttpResponse, ApiError> {
    let raw = payload.into_inner();
    let object = v2_object(&raw)?;
    let public = body::optional_bool(object, "public")
        .map_err(|error| ApiError::with_args(ErrorKind::ServicePlanInvalid, &[&error.detail]))?;
    let guid = path.into_inner();
    let body = state
        .db
        .run(move |conn| {
            let permissions = Permissions::load(conn, &user)?;
            let index = CatalogIndex::load(conn)?;
            let plan = index
                .plans
                .iter()
                .find(|plan| plan.guid == guid && index.plan_visible(Some(&permissions), plan))
                .ok_or_else(|| ApiError::with_args(ErrorKind::ServicePlanNotFound, &[&guid]))?;
            service_actions::require_visibility_admin(v2_words, &permissions, &index, plan)?;
            if let Some(public) = public {
                services_store::set_plan_public(conn, plan.id, public)?;
            }
            let index = CatalogIndex::load(conn)?;
            let plan = index
                .plans
                .iter()
                .find(|row| row.id == plan.id)
                .ok_or_else(|| ApiError::with_args(ErrorKind::ServicePlanNotFound, &[&guid]))?;
            Ok(render_plan(&index, plan))
        })
        .await?;
    Ok(HttpResponse::Created().json(body))
}

fn render_visibility(
    index: &CatalogIndex,
    visibility: &crate::db::models::PlanVisibilityRow,
) -> Value {
    let plan_guid = index
        .plans
        .iter()
        .find(|plan| plan.id == visibility.service_plan_id)
        .map_or("", |plan| plan.guid.as_str());
    let org_guid = index
        .orgs
        .get(&visibility.organization_id)
        .map_or("", |org| org.guid.as_str());
    super::resource(
        &visibility.guid,
        &format!("/v2/service_plan_visibilities/{}", visibility.guid),
        &visibility.created_at,
        &visibility.created_at,
        json!({
            "service_plan_guid": plan_guid,
            "organization_guid": org_guid,
            "service_plan_url": format!("/v2/service_plans/{plan_guid}"),
            "organization_url": format!("/v2/organizations/{org_guid}"),
        }),
    )
}

/// Visibilities the caller may read: all for global readers, else those of its orgs.
fn visibility_rows(
    index: &CatalogIndex,
    permissions: &Permissions,
) -> Vec<crate::db::models::PlanVisibilityRow> {
    let mut rows: Vec<_> = index
        .visibilities
        .values()
        .flatten()
        .filter(|visibility| {
            permissions.can_read_globally() || permissions.can_read_org(visibility.organization_id)
        })
        .cloned()
        .collect();
    rows.sort_by_key(|visibility| visibility.id);
    rows
}

async fn list_visibilities(
    state: web::Data<AppState>,
    user: CurrentUser,
    request: HttpRequest,
) -> Result<HttpResponse, ApiError> {
    let query = V2Query::parse(
        &request,
        &["organization_guid", "service_plan_guid"],
        &["id"],
    )?;
    let body = state
        .db
        .run(move |conn| {
            let permissions = Permissions::load(conn, &user)?;
            let index = CatalogIndex::load(conn)?;
            let rows: Vec<_> = visibility_rows(&index, &permissions)
                .into_iter()
                .filter(|visibility| {
                    let rendered = render_visibility(&index, visibility);
                    let entity = &rendered["entity"];
                    query.accepts(
                        "organization_guid",
                        entity["organization_guid"].as_str().unwrap_or(""),
                    ) && query.accepts(
                        "service_plan_guid",
                        entity["service_plan_guid"].as_str().unwrap_or(""),
                    )
                })
                .collect();
            Ok(query.envelope(
                rows,
                "/v2/service_plan_visibilities",
                |visibility| &visibility.guid,
                |visibility| render_visibility(&index, visibility),
            ))
        })
        .await?;
    Ok(HttpResponse::Ok().json(body))
}

fn find_visibility(
    index: &CatalogIndex,
    permissions: &Permissions,
    guid: &str,
) -> Result<crate::db::models::PlanVisibilityRow, ApiError> {
    visibility_rows(index, permissions)
        .into_iter()
        .find(|visibility| visibility.guid == guid)
        .ok_or_else(|| ApiError::with_args(ErrorKind::ServicePlanVisibilityNotFound, &[guid]))
}

async fn get_visibility(
    state: web::Data<AppState>,
    user: CurrentUser,
    path: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let guid = path.into_inner();
    let body = state
        .db
        .run(move |conn| {
            let permissions = Permissions::load(conn, &user)?;
            let index = CatalogIndex::load(conn)?;
            let visibility = find_visibility(&index, &permissions, &guid)?;
            Ok(render_visibility(&index, &visibility))
        })
        .await?;
    Ok(HttpResponse::Ok().json(body))
}

/// `POST /v2/service_plan_visibilities` (admins) → 201; a duplicate is
/// `CF-ServicePlanVisibilityAlreadyExists`.
async fn create_visibility(
    state: web::Data<AppState>,
    user: CurrentUser,
    payload: web::Json<Value>,
) -> Result<HttpResponse, ApiError> {
    let raw = payload.into_inner();
    let object = v2_object(&raw)?;
    let invalid = |error: ApiError| {
        ApiError::with_args(ErrorKind::ServicePlanVisibilityInvalid, &[&error.detail])
    };
    let plan_guid = required_string(object, "service_plan_guid", invalid)?;
    let org_guid = required_string(object, "organization_guid", invalid)?;
    let body = state
        .db
        .run(move |conn| {
            let permissions = Permissions::load(conn, &user)?;
            let index = CatalogIndex::load(conn)?;
            let plan = index
                .plans
                .iter()
                .find(|plan| plan.guid == plan_guid)
                .ok_or_else(|| {
                    ApiError::with_args(
                        ErrorKind::InvalidRelation,
                        &[&format!("Could not find VCAP::CloudController::ServicePlan with guid {plan_guid}")],
                    )
                })?;
            service_actions::require_visibility_admin(v2_words, &permissions, &index, plan)?;
            let org = index
                .orgs
                .values()
                .find(|org| org.guid == org_guid)
                .ok_or_else(|| {
                    ApiError::with_args(
                        ErrorKind::InvalidRelation,
                        &[&format!("Could not find VCAP::CloudController::Organization with guid {org_guid}")],
                    )
                })?;
            let taken = index
                .visibilities
                .get(&plan.id)
                .is_some_and(|rows| rows.iter().any(|row| row.organization_id == org.id));
            if taken {
                return Err(ApiError::with_args(
                    ErrorKind::ServicePlanVisibilityAlreadyExists,
                    &[&format!(
                        "organization_id and service_plan_id unique ({}, {})",
                        org.guid, plan.guid
                    )],
                ));
            }
            services_store::add_visibility(conn, plan.id, org.id)?;
            let index = CatalogIndex::load(conn)?;
            let visibility = index
                .visibilities
                .get(&plan.id)
                .and_then(|rows| rows.iter().find(|row| row.organization_id == org.id))
                .ok_or_else(|| ApiError::internal("visibility vanished after insert"))?;
            Ok(render_visibility(&index, visibility))
        })
        .await?;
    Ok(created(body))
}

/// `DELETE /v2/service_plan_visibilities/:guid` (admins) → 204.
async fn delete_visibility(
    state: web::Data<AppState>,
    user: CurrentUser,
    path: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let guid = path.into_inner();
    state
        .db
        .run(move |conn| {
            let permissions = Permissions::load(conn, &user)?;
            let index = CatalogIndex::load(conn)?;
            let visibility = find_visibility(&index, &permissions, &guid)?;
            if !permissions.can_write_globally() {
                return Err(ApiError::forbidden());
            }
            services_store::remove_visibility(
                conn,
                visibility.service_plan_id,
                visibility.organization_id,
            )?;
            Ok(())
        })
        .await?;
    Ok(HttpResponse::NoContent().finish())
}
