//! v2 read views of services (list and get): `/v2/service_brokers`, `/v2/services`,
//! `/v2/service_plans`, `/v2/service_instances` (with `return_user_provided_service_instances`),
//! `/v2/user_provided_service_instances` and `/v2/service_bindings`, over the same store and
//! visibility rules as v3.

use actix_web::{web, HttpRequest, HttpResponse};
use serde_json::{json, Value};

use crate::app::{resource, AppState};
use crate::auth::CurrentUser;
use crate::db::models::{
    CredentialBindingRow, ServiceBrokerRow, ServiceInstanceRow, ServiceOfferingRow, ServicePlanRow,
};
use crate::error::{ApiError, ErrorKind};
use crate::permissions::Permissions;
use crate::store;
use crate::store::services::{self as services_store, USER_PROVIDED};
use crate::v2::V2Query;
use crate::v3::service_catalog::{CatalogIndex, MaybeUser};

/// Registers the v2 service routes.
pub fn configure(config: &mut web::ServiceConfig) {
    config
        .service(resource("/v2/service_brokers").route(web::get().to(list_brokers)))
        .service(resource("/v2/service_brokers/{guid}").route(web::get().to(get_broker)))
        .service(resource("/v2/services").route(web::get().to(list_services)))
        .service(resource("/v2/services/{guid}").route(web::get().to(get_service)))
        .service(resource("/v2/service_plans").route(web::get().to(list_plans)))
        .service(resource("/v2/service_plans/{guid}").route(web::get().to(get_plan)))
        .service(resource("/v2/service_instances").route(web::get().to(list_instances)))
        .service(resource("/v2/service_instances/{guid}").route(web::get().to(get_instance)))
        .service(resource("/v2/user_provided_service_instances").route(web::get().to(list_upsis)))
        .service(
            resource("/v2/user_provided_service_instances/{guid}").route(web::get().to(get_upsi)),
        )
        .service(resource("/v2/service_bindings").route(web::get().to(list_bindings)))
        .service(resource("/v2/service_bindings/{guid}").route(web::get().to(get_binding)));
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
    let query = V2Query::parse(
        &request,
        &[
            "active",
            "label",
            "provider",
            "service_broker_guid",
            "unique_id",
        ],
        &["label", "id"],
    )?;
    let body = state
        .db
        .run(move |conn| {
            let permissions = user
                .as_ref()
                .map(|user| Permissions::load(conn, user))
                .transpose()?;
            let index = CatalogIndex::load(conn)?;
            let mut offerings: Vec<&ServiceOfferingRow> = index
                .offerings
                .values()
                .filter(|offering| offering_visible(&index, permissions.as_ref(), offering))
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
            Ok(query.envelope(
                offerings,
                "/v2/services",
                |offering| &offering.name,
                |offering| render_service(&index, offering),
            ))
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
        |instance| render_instance(&index, instance),
    ))
}

async fn list_instances(
    state: web::Data<AppState>,
    user: CurrentUser,
    request: HttpRequest,
) -> Result<HttpResponse, ApiError> {
    let query = V2Query::parse(
        &request,
        &[
            "name",
            "space_guid",
            "service_plan_guid",
            "organization_guid",
        ],
        &["name", "id"],
    )?;
    let with_user_provided = crate::query::query_pairs(&request)?
        .iter()
        .any(|(key, value)| key == "return_user_provided_service_instances" && value == "true");
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
            let instance = services_store::find_instance(conn, &guid)?
                .filter(|instance| !user_provided_only || instance.instance_type == USER_PROVIDED)
                .ok_or_else(not_found)?;
            let space = store::spaces::find_by_id(conn, instance.space_id)?
                .filter(|space| permissions.can_read_space(space.id, space.organization_id))
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
