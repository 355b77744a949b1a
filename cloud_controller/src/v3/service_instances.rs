//! `/v3/service_instances` (managed: create, update and delete as jobs polled at the broker;
//! user-provided: synchronous; `DELETE ?purge=true`; `/parameters`, `/credentials`, shared
//! spaces) and `/v3/service_credential_bindings` (app bindings and service keys, created and
//! deleted as jobs for managed instances; `/details`, `/parameters`), and the (always empty)
//! `/v3/service_route_bindings`.

use std::collections::HashMap;

use actix_web::{web, HttpRequest, HttpResponse};
use serde_json::{json, Map, Value};

use crate::app::{resource, AppState};
use crate::auth::CurrentUser;
use crate::body;
use crate::db::models::{AppRow, CredentialBindingRow, OrgRow, ServiceInstanceRow, SpaceRow};
use crate::db::DbConn;
use crate::error::{ApiError, ErrorKind};
use crate::permissions::Permissions;
use crate::query::{list_body, query_pairs, ListQuery, SortKey};
use crate::service_actions::{self as actions, BindingStart, ManagedUpdate, Refusal};
use crate::service_jobs::{instance_busy, parameters_object, InstanceContext};
use crate::store;
use crate::store::services::{self as services_store, MANAGED, USER_PROVIDED};
use crate::v3::service_catalog::{pick, CatalogIndex};

/// Registers the instance and binding routes.
pub fn configure(config: &mut web::ServiceConfig) {
    config
        .service(
            resource("/v3/service_instances")
                .route(web::get().to(list_instances))
                .route(web::post().to(create_instance)),
        )
        .service(
            resource("/v3/service_instances/{guid}")
                .route(web::get().to(get_instance))
                .route(web::patch().to(update_instance))
                .route(web::delete().to(delete_instance)),
        )
        .service(
            resource("/v3/service_instances/{guid}/parameters")
                .route(web::get().to(instance_parameters)),
        )
        .service(
            resource("/v3/service_instances/{guid}/credentials")
                .route(web::get().to(instance_credentials)),
        )
        .service(
            resource("/v3/service_instances/{guid}/relationships/shared_spaces")
                .route(web::get().to(shared_spaces)),
        )
        .service(
            resource("/v3/service_instances/{guid}/relationships/shared_spaces/usage_summary")
                .route(web::get().to(shared_spaces_usage)),
        )
        .service(
            resource("/v3/service_credential_bindings")
                .route(web::get().to(list_bindings))
                .route(web::post().to(create_binding)),
        )
        .service(
            resource("/v3/service_credential_bindings/{guid}")
                .route(web::get().to(get_binding))
                .route(web::delete().to(delete_binding)),
        )
        .service(
            resource("/v3/service_credential_bindings/{guid}/details")
                .route(web::get().to(binding_details)),
        )
        .service(
            resource("/v3/service_credential_bindings/{guid}/parameters")
                .route(web::get().to(binding_parameters)),
        )
        .service(resource("/v3/service_route_bindings").route(web::get().to(route_bindings)));
}

fn metadata() -> Value {
    json!({"labels": {}, "annotations": {}})
}

fn string_list(text: &str) -> Vec<String> {
    serde_json::from_str(text).unwrap_or_default()
}

fn last_operation(
    kind: Option<&str>,
    state: Option<&str>,
    description: Option<&str>,
    created: Option<&str>,
    updated: Option<&str>,
) -> Value {
    match (kind, state) {
        (Some(kind), Some(state)) => json!({
            "type": kind,
            "state": state,
            "description": description.unwrap_or(""),
            "created_at": created,
            "updated_at": updated,
        }),
        _ => json!({}),
    }
}

/// An instance as v3 JSON.
pub(crate) fn present_instance(
    base: &str,
    instance: &ServiceInstanceRow,
    space_guid: &str,
    plan_guid: Option<&str>,
) -> Value {
    let guid = &instance.guid;
    let href =
        |suffix: &str| json!({"href": format!("{base}/v3/service_instances/{guid}{suffix}")});
    let mut body = json!({
        "guid": guid,
        "created_at": instance.created_at,
        "updated_at": instance.updated_at,
        "name": instance.name,
        "tags": string_list(&instance.tags),
        "type": instance.instance_type,
        "last_operation": last_operation(
            instance.last_operation_type.as_deref(),
            instance.last_operation_state.as_deref(),
            instance.last_operation_description.as_deref(),
            instance.last_operation_created_at.as_deref(),
            instance.last_operation_updated_at.as_deref(),
        ),
        "metadata": metadata(),
        "links": {
            "self": href(""),
            "space": {"href": format!("{base}/v3/spaces/{space_guid}")},
            "service_credential_bindings": {"href": format!("{base}/v3/service_credential_bindings?service_instance_guids={guid}")},
            "service_route_bindings": {"href": format!("{base}/v3/service_route_bindings?service_instance_guids={guid}")},
        },
    });
    if instance.instance_type == USER_PROVIDED {
        body["syslog_drain_url"] = json!(instance.syslog_drain_url);
        body["route_service_url"] = json!(instance.route_service_url);
        body["relationships"] = json!({"space": {"data": {"guid": space_guid}}});
        body["links"]["credentials"] = href("/credentials");
    } else {
        let plan_guid = plan_guid.unwrap_or_default();
        body["maintenance_info"] = instance
            .maintenance_info
            .as_deref()
            .map_or(json!({}), |text| {
                serde_json::from_str(text).unwrap_or(json!({}))
            });
        body["upgrade_available"] = json!(false);
        body["dashboard_url"] = json!(instance.dashboard_url);
        body["relationships"] = json!({
            "space": {"data": {"guid": space_guid}},
            "service_plan": {"data": {"guid": plan_guid}},
        });
        body["links"]["service_plan"] =
            json!({"href": format!("{base}/v3/service_plans/{plan_guid}")});
        body["links"]["parameters"] = href("/parameters");
        body["links"]["shared_spaces"] = href("/relationships/shared_spaces");
    }
    body
}

/// A binding as v3 JSON.
pub(crate) fn present_binding(
    base: &str,
    binding: &CredentialBindingRow,
    instance_guid: &str,
    app_guid: Option<&str>,
) -> Value {
    let guid = &binding.guid;
    let mut relationships = json!({"service_instance": {"data": {"guid": instance_guid}}});
    let mut links = json!({
        "self": {"href": format!("{base}/v3/service_credential_bindings/{guid}")},
        "details": {"href": format!("{base}/v3/service_credential_bindings/{guid}/details")},
        "service_instance": {"href": format!("{base}/v3/service_instances/{instance_guid}")},
        "parameters": {"href": format!("{base}/v3/service_credential_bindings/{guid}/parameters")},
    });
    if let Some(app_guid) = app_guid {
        relationships["app"] = json!({"data": {"guid": app_guid}});
        links["app"] = json!({"href": format!("{base}/v3/apps/{app_guid}")});
    }
    json!({
        "guid": guid,
        "created_at": binding.created_at,
        "updated_at": binding.updated_at,
        "name": binding.name,
        "type": binding.binding_type,
        "last_operation": last_operation(
            Some(&binding.last_operation_type),
            Some(&binding.last_operation_state),
            binding.last_operation_description.as_deref(),
            Some(&binding.last_operation_created_at),
            Some(&binding.last_operation_updated_at),
        ),
        "metadata": metadata(),
        "relationships": relationships,
        "links": links,
    })
}

/// Instances, spaces and orgs, loaded once per request.
struct InstanceIndex {
    catalog: CatalogIndex,
    instances: Vec<ServiceInstanceRow>,
}

impl InstanceIndex {
    fn load(conn: &mut DbConn) -> Result<InstanceIndex, ApiError> {
        Ok(InstanceIndex {
            catalog: CatalogIndex::load(conn)?,
            instances: services_store::list_instances(conn)?,
        })
    }

    fn space(&self, instance: &ServiceInstanceRow) -> Option<&SpaceRow> {
        self.catalog.spaces.get(&instance.space_id)
    }

    fn org(&self, space: &SpaceRow) -> Option<&OrgRow> {
        self.catalog.orgs.get(&space.organization_id)
    }

    fn visible(&self, permissions: &Permissions, instance: &ServiceInstanceRow) -> bool {
        self.space(instance)
            .is_some_and(|space| permissions.can_read_space(space.id, space.organization_id))
    }

    fn plan_guid(&self, instance: &ServiceInstanceRow) -> Option<&str> {
        let id = instance.service_plan_id?;
        self.catalog
            .plans
            .iter()
            .find(|plan| plan.id == id)
            .map(|plan| plan.guid.as_str())
    }

    fn present(&self, base: &str, instance: &ServiceInstanceRow) -> Value {
        let space_guid = self.space(instance).map_or("", |space| space.guid.as_str());
        present_instance(base, instance, space_guid, self.plan_guid(instance))
    }
}

/// v3's words for a refused services request.
pub(crate) fn v3_words(refusal: Refusal) -> ApiError {
    match refusal {
        Refusal::SpaceNotFound(_) => ApiError::unprocessable(
            "Invalid space. Ensure that the space exists and you have access to it.",
        ),
        Refusal::PlanNotFound(_) => ApiError::unprocessable(
            "Invalid service plan. Ensure that the service plan exists, is available, and you have access to it.",
        ),
        Refusal::InstanceNameTaken(name) => {
            ApiError::unprocessable(format!("The service instance name is taken: {name}."))
        }
        Refusal::PlanOfOtherOffering => {
            ApiError::unprocessable("service plan relates to a different service offering")
        }
        Refusal::PlanNotUpdateable => ApiError::with_args(
            ErrorKind::UnprocessableEntity,
            &["The service does not support changing plans."],
        ),
        Refusal::InstanceNotFound(guid) => ApiError::unprocessable(format!(
            "The service instance could not be found: '{guid}'."
        )),
        Refusal::InstanceCreateFailed(_) => ApiError::unprocessable("Service instance not found"),
        Refusal::AppNotFound(guid) => {
            ApiError::unprocessable(format!("Could not find app with guid '{guid}'."))
        }
        Refusal::DifferentSpaces => {
            ApiError::unprocessable("The service instance and the app are in different spaces.")
        }
        Refusal::AppAlreadyBound => {
            ApiError::unprocessable("The app is already bound to the service instance.")
        }
        Refusal::KeyNameTaken(name) => ApiError::unprocessable(format!(
            "The binding name is invalid. Key binding names must be unique. The service instance already has a key binding with name '{name}'."
        )),
        Refusal::KeyForUserProvided => ApiError::unprocessable(
            "Service credential bindings of type 'key' are not supported for user-provided service instances.",
        ),
        Refusal::NotBindable => ApiError::unprocessable("Service plan does not allow bindings."),
        Refusal::BrokerNameTaken(name) => ApiError::unprocessable(format!(
            "Name must be unique. A service broker named '{name}' already exists."
        )),
        Refusal::BrokerUrlInvalid(_) => ApiError::unprocessable("Url must be a valid url"),
        Refusal::BrokerUrlBasicAuth => ApiError::unprocessable(
            "User name and password fields in the broker URI are not supported",
        ),
        Refusal::SpaceScopedPlanVisibility => ApiError::unprocessable(
            "Cannot update visibility of a plan from a space-scoped broker",
        ),
    }
}

const INSTANCE_FILTERS: &[&str] = &[
    "names",
    "guids",
    "space_guids",
    "organization_guids",
    "type",
    "service_plan_guids",
    "service_plan_names",
    "fields[space]",
    "fields[space.organization]",
    "fields[service_plan]",
    "fields[service_plan.service_offering]",
    "fields[service_plan.service_offering.service_broker]",
    "label_selector",
];

fn dedup_push<'a, T>(items: &mut Vec<&'a T>, item: &'a T, same: impl Fn(&T, &T) -> bool) {
    if !items.iter().any(|known| same(known, item)) {
        items.push(item);
    }
}

async fn list_instances(
    state: web::Data<AppState>,
    user: CurrentUser,
    request: HttpRequest,
) -> Result<HttpResponse, ApiError> {
    let query = ListQuery::parse(&request, INSTANCE_FILTERS, &[SortKey::Name])?;
    let base = state.external_url.clone();
    let body = state
        .db
        .run(move |conn| {
            let permissions = Permissions::load(conn, &user)?;
            let index = InstanceIndex::load(conn)?;
            let mut instances: Vec<ServiceInstanceRow> = index
                .instances
                .iter()
                .filter(|instance| index.visible(&permissions, instance))
                .filter(|instance| {
                    let space = index.space(instance);
                    let org = space.and_then(|space| index.org(space));
                    let plan = instance
                        .service_plan_id
                        .and_then(|id| index.catalog.plans.iter().find(|plan| plan.id == id));
                    query.matches("names", &instance.name)
                        && query.matches("guids", &instance.guid)
                        && query.matches_opt("space_guids", space.map(|s| s.guid.as_str()))
                        && query.matches_opt("organization_guids", org.map(|o| o.guid.as_str()))
                        && query.matches("type", &instance.instance_type)
                        && query.matches_opt("service_plan_guids", plan.map(|p| p.guid.as_str()))
                        && query.matches_opt("service_plan_names", plan.map(|p| p.name.as_str()))
                })
                .cloned()
                .collect();
            query.sort(&mut instances, |i| &i.name, |i| &i.created_at, |i| &i.updated_at);
            let (page, pagination) = query.page_of(instances, &base, "/v3/service_instances");
            let resources: Vec<Value> = page.iter().map(|instance| index.present(&base, instance)).collect();
            let mut included = Map::new();
            let catalog = &index.catalog;
            // Each `fields[...]` names one included resource; a nested one needs no parent.
            let plan_fields = query.list("fields[service_plan]");
            let offering_fields = query.list("fields[service_plan.service_offering]");
            let broker_fields = query.list("fields[service_plan.service_offering.service_broker]");
            if plan_fields.is_some() || offering_fields.is_some() || broker_fields.is_some() {
                let mut plans = Vec::new();
                for instance in &page {
                    if let Some(plan) = instance.service_plan_id.and_then(|id| catalog.plans.iter().find(|plan| plan.id == id)) {
                        dedup_push(&mut plans, plan, |a, b| a.id == b.id);
                    }
                }
                let mut offerings = Vec::new();
                for plan in &plans {
                    if let Some(offering) = catalog.offerings.get(&plan.service_offering_id) {
                        dedup_push(&mut offerings, offering, |a, b| a.id == b.id);
                    }
                }
                let mut brokers = Vec::new();
                for offering in &offerings {
                    if let Some(broker) = catalog.brokers.get(&offering.service_broker_id) {
                        dedup_push(&mut brokers, broker, |a, b| a.id == b.id);
                    }
                }
                if let Some(fields) = plan_fields {
                    included.insert("service_plans".into(), json!(plans.iter().map(|plan| pick(&catalog.present_plan(&base, plan), fields)).collect::<Vec<_>>()));
                }
                if let Some(fields) = offering_fields {
                    included.insert("service_offerings".into(), json!(offerings.iter().map(|offering| pick(&catalog.present_offering(&base, offering), fields)).collect::<Vec<_>>()));
                }
                if let Some(fields) = broker_fields {
                    included.insert("service_brokers".into(), json!(brokers.iter().map(|broker| pick(&catalog.present_broker(&base, broker), fields)).collect::<Vec<_>>()));
                }
            }
            let space_fields = query.list("fields[space]");
            let org_fields = query.list("fields[space.organization]");
            if space_fields.is_some() || org_fields.is_some() {
                let mut spaces = Vec::new();
                for instance in &page {
                    if let Some(space) = index.space(instance) {
                        dedup_push(&mut spaces, space, |a, b| a.id == b.id);
                    }
                }
                let mut orgs = Vec::new();
                for space in &spaces {
                    if let Some(org) = index.org(space) {
                        dedup_push(&mut orgs, org, |a, b| a.id == b.id);
                    }
                }
                if let Some(fields) = space_fields {
                    included.insert("spaces".into(), json!(spaces.iter().map(|space| {
                        let org_guid = index.org(space).map_or("", |org| org.guid.as_str());
                        pick(&crate::v3::present::space(&base, space, org_guid), fields)
                    }).collect::<Vec<_>>()));
                }
                if let Some(fields) = org_fields {
                    included.insert("organizations".into(), json!(orgs.iter().map(|org| {
                        pick(&json!({"guid": org.guid, "name": org.name, "created_at": org.created_at, "updated_at": org.updated_at}), fields)
                    }).collect::<Vec<_>>()));
                }
            }
            let included = if included.is_empty() { None } else { Some(Value::Object(included)) };
            Ok(list_body(pagination, resources, included))
        })
        .await?;
    Ok(HttpResponse::Ok().json(body))
}

/// The instance if the caller sees it, with its space.
fn visible_instance(
    conn: &mut DbConn,
    permissions: &Permissions,
    guid: &str,
) -> Result<(ServiceInstanceRow, SpaceRow), ApiError> {
    actions::readable_instance(conn, permissions, guid)?
        .ok_or_else(|| ApiError::not_found("Service instance"))
}

async fn get_instance(
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
            let (instance, _) = visible_instance(conn, &permissions, &guid)?;
            let index = InstanceIndex::load(conn)?;
            Ok(index.present(&base, &instance))
        })
        .await?;
    Ok(HttpResponse::Ok().json(body))
}

async fn create_instance(
    state: web::Data<AppState>,
    user: CurrentUser,
    payload: web::Json<Value>,
) -> Result<HttpResponse, ApiError> {
    let raw = payload.into_inner();
    let kind = raw
        .get("type")
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_owned();
    let base = state.external_url.clone();
    match kind.as_str() {
        USER_PROVIDED => {
            let object = body::object(
                &raw,
                &[
                    "type",
                    "name",
                    "relationships",
                    "credentials",
                    "syslog_drain_url",
                    "route_service_url",
                    "tags",
                    "metadata",
                ],
            )?
            .clone();
            let fields = actions::NewUserProvided {
                name: body::name(&object, true)?.unwrap_or_default(),
                space_guid: body::relationship_guid(&object, "space")?
                    .ok_or_else(|| ApiError::unprocessable("Relationships Space can't be blank"))?,
                credentials: actions::credentials_of(&object)?.unwrap_or_else(|| "{}".to_owned()),
                syslog_drain_url: actions::url_field(
                    &object,
                    "syslog_drain_url",
                    "Syslog drain url",
                    false,
                )?
                .flatten(),
                route_service_url: actions::url_field(
                    &object,
                    "route_service_url",
                    "Route service url",
                    true,
                )?
                .flatten(),
                tags: actions::tags_of(&object)?.unwrap_or_default(),
            };
            let body = state
                .db
                .run(move |conn| {
                    let permissions = Permissions::load(conn, &user)?;
                    let (instance, space) =
                        actions::create_user_provided(conn, v3_words, &user, &permissions, fields)?;
                    Ok(present_instance(&base, &instance, &space.guid, None))
                })
                .await?;
            Ok(HttpResponse::Created().json(body))
        }
        MANAGED => {
            let object = body::object(
                &raw,
                &[
                    "type",
                    "name",
                    "relationships",
                    "parameters",
                    "tags",
                    "metadata",
                ],
            )?
            .clone();
            let name = body::name(&object, true)?.unwrap_or_default();
            let space_guid = body::relationship_guid(&object, "space")?
                .ok_or_else(|| ApiError::unprocessable("Relationships Space can't be blank"))?;
            let plan_guid = body::relationship_guid(&object, "service_plan")?.ok_or_else(|| {
                ApiError::unprocessable("Relationships Service plan can't be blank")
            })?;
            let parameters = parameters_object(object.get("parameters"))?;
            let tags = actions::tags_of(&object)?.unwrap_or_default();
            let user_guid = user.guid.clone();
            let request = actions::NewManaged {
                name,
                space_guid,
                plan_guid,
                tags,
            };
            let creation = state
                .db
                .run(move |conn| {
                    let permissions = Permissions::load(conn, &user)?;
                    actions::begin_managed_create(conn, v3_words, &user, &permissions, request)
                })
                .await?;
            if let Some(orphan) = creation.orphan {
                state.services.mitigate_orphan(orphan, None);
            }
            let first = state.services.provision(
                creation.job_guid.clone(),
                creation.instance.id,
                parameters,
                true,
                Some(user_guid),
            );
            await_first_answer(&state, first).await;
            Ok(crate::v3::accepted_job(
                &state.external_url,
                &creation.job_guid,
            ))
        }
        _ => Err(ApiError::unprocessable(
            "Type must be one of 'managed', 'user-provided'",
        )),
    }
}

async fn update_instance(
    state: web::Data<AppState>,
    user: CurrentUser,
    path: web::Path<String>,
    payload: web::Json<Value>,
) -> Result<HttpResponse, ApiError> {
    let raw = payload.into_inner();
    let guid = path.into_inner();
    let base = state.external_url.clone();
    let user_guid = user.guid.clone();
    let outcome = state
        .db
        .run(move |conn| {
            let permissions = Permissions::load(conn, &user)?;
            let (instance, space) = visible_instance(conn, &permissions, &guid)?;
            actions::require_writer(&permissions, &space)?;
            let mut changes = services_store::InstanceChanges::default();
            if instance.instance_type == USER_PROVIDED {
                let object = body::object(
                    &raw,
                    &[
                        "name",
                        "credentials",
                        "syslog_drain_url",
                        "route_service_url",
                        "tags",
                        "metadata",
                    ],
                )?;
                changes.name = body::name(object, false)?;
                changes.tags = actions::tags_of(object)?;
                changes.credentials = actions::credentials_of(object)?;
                changes.syslog_drain_url =
                    actions::url_field(object, "syslog_drain_url", "Syslog drain url", false)?;
                changes.route_service_url =
                    actions::url_field(object, "route_service_url", "Route service url", true)?;
                let instance = actions::update_user_provided(conn, v3_words, &instance, &changes)?;
                let index = InstanceIndex::load(conn)?;
                return Ok((None, index.present(&base, &instance)));
            }
            let object = body::object(
                &raw,
                &[
                    "name",
                    "tags",
                    "parameters",
                    "relationships",
                    "maintenance_info",
                    "metadata",
                ],
            )?;
            if instance_busy(&instance) {
                return Err(actions::busy(&instance));
            }
            changes.name = body::name(object, false)?;
            changes.tags = actions::tags_of(object)?;
            let parameters = parameters_object(object.get("parameters"))?;
            let plan_guid = body::relationship_guid(object, "service_plan")?;
            let update = actions::begin_managed_update(
                conn,
                v3_words,
                &permissions,
                &instance,
                &changes,
                plan_guid.as_deref(),
                parameters.is_some(),
            )?;
            match update {
                ManagedUpdate::Done(instance) => {
                    let index = InstanceIndex::load(conn)?;
                    let instance = *instance;
                    Ok((None, index.present(&base, &instance)))
                }
                ManagedUpdate::Started { job_guid, plan_id } => Ok((
                    Some((job_guid, instance.id, plan_id, parameters)),
                    Value::Null,
                )),
            }
        })
        .await?;
    match outcome {
        (Some((job_guid, instance_id, plan_id, parameters)), _) => {
            let first = state.services.update(
                job_guid.clone(),
                instance_id,
                plan_id,
                parameters,
                true,
                Some(user_guid),
            );
            await_first_answer(&state, first).await;
            Ok(crate::v3::accepted_job(&state.external_url, &job_guid))
        }
        (None, body) => Ok(HttpResponse::Ok().json(body)),
    }
}

async fn delete_instance(
    state: web::Data<AppState>,
    user: CurrentUser,
    path: web::Path<String>,
    request: HttpRequest,
) -> Result<HttpResponse, ApiError> {
    let pairs = query_pairs(&request)?;
    let mut purge = false;
    for (key, value) in &pairs {
        match (key.as_str(), value.as_str()) {
            ("purge", "true") => purge = true,
            ("purge", "false") => {}
            ("purge", _) => return Err(ApiError::bad_query("Purge must be a boolean")),
            (other, _) => {
                return Err(ApiError::bad_query(format!(
                    "Unknown query parameter(s): '{other}'. Valid parameters are: 'purge'"
                )))
            }
        }
    }
    let guid = path.into_inner();
    let user_guid = user.guid.clone();
    let job = state
        .db
        .run(move |conn| {
            let permissions = Permissions::load(conn, &user)?;
            let (instance, space) = visible_instance(conn, &permissions, &guid)?;
            actions::require_writer(&permissions, &space)?;
            let job = actions::begin_instance_delete(conn, &permissions, &instance, purge)?;
            Ok(job.map(|job| (job, instance.id)))
        })
        .await?;
    match job {
        Some((job_guid, instance_id)) => {
            let first =
                state
                    .services
                    .deprovision(job_guid.clone(), instance_id, true, Some(user_guid));
            await_first_answer(&state, first).await;
            Ok(crate::v3::accepted_job(&state.external_url, &job_guid))
        }
        None => Ok(HttpResponse::NoContent().finish()),
    }
}

async fn instance_parameters(
    state: web::Data<AppState>,
    user: CurrentUser,
    path: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let guid = path.into_inner();
    let user_guid = user.guid.clone();
    let context = state
        .db
        .run(move |conn| {
            let permissions = Permissions::load(conn, &user)?;
            let (instance, _) = visible_instance(conn, &permissions, &guid)?;
            if instance.instance_type != MANAGED {
                return Err(ApiError::unprocessable(
                    "This service does not support fetching service instance parameters.",
                ));
            }
            let context = InstanceContext::load(conn, instance.id)?;
            if !context.offering.instances_retrievable {
                return Err(ApiError::plain(
                    ErrorKind::ServiceFetchInstanceParametersNotSupported,
                ));
            }
            Ok(context)
        })
        .await?;
    let endpoint = crate::osb_client::BrokerEndpoint {
        url: context.broker.url.clone(),
        username: context.broker.username.clone(),
        password: context.broker.password.clone(),
    };
    let body = state
        .services
        .client()
        .fetch(
            &endpoint,
            &context.instance.guid,
            None,
            (&context.offering.broker_id, &context.plan.broker_id),
            Some(&user_guid),
        )
        .await
        .map_err(|failure| failure.error)?;
    Ok(HttpResponse::Ok().json(body.get("parameters").cloned().unwrap_or_else(|| json!({}))))
}

async fn instance_credentials(
    state: web::Data<AppState>,
    user: CurrentUser,
    path: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let guid = path.into_inner();
    let body = state
        .db
        .run(move |conn| {
            let permissions = Permissions::load(conn, &user)?;
            let (instance, space) = visible_instance(conn, &permissions, &guid)?;
            if instance.instance_type != USER_PROVIDED {
                return Err(ApiError::not_found("Service instance"));
            }
            if !permissions.can_read_secrets_in_space(space.id) {
                return Err(ApiError::forbidden());
            }
            Ok(services_store::parse_json(instance.credentials.as_deref()))
        })
        .await?;
    Ok(HttpResponse::Ok().json(if body.is_null() { json!({}) } else { body }))
}

async fn shared_spaces(
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
            let (instance, _) = visible_instance(conn, &permissions, &guid)?;
            Ok(json!({
                "data": [],
                "included": {"spaces": [], "organizations": []},
                "links": {"self": {"href": format!("{base}/v3/service_instances/{}/relationships/shared_spaces", instance.guid)}},
            }))
        })
        .await?;
    Ok(HttpResponse::Ok().json(body))
}

async fn shared_spaces_usage(
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
            let (instance, _) = visible_instance(conn, &permissions, &guid)?;
            Ok(json!({
                "usage_summary": [],
                "links": {
                    "self": {"href": format!("{base}/v3/service_instances/{}/relationships/shared_spaces/usage_summary", instance.guid)},
                    "shared_spaces": {"href": format!("{base}/v3/service_instances/{}/relationships/shared_spaces", instance.guid)},
                    "service_instance": {"href": format!("{base}/v3/service_instances/{}", instance.guid)},
                },
            }))
        })
        .await?;
    Ok(HttpResponse::Ok().json(body))
}

// ---------------------------------------------------------------------------------------------
// Credential bindings

struct BindingIndex {
    instances: HashMap<i32, InstanceIndexEntry>,
    apps: HashMap<i32, AppRow>,
    catalog: CatalogIndex,
}

struct InstanceIndexEntry {
    instance: ServiceInstanceRow,
}

impl BindingIndex {
    fn load(conn: &mut DbConn) -> Result<BindingIndex, ApiError> {
        Ok(BindingIndex {
            instances: services_store::list_instances(conn)?
                .into_iter()
                .map(|instance| (instance.id, InstanceIndexEntry { instance }))
                .collect(),
            apps: store::apps::list(conn)?
                .into_iter()
                .map(|app| (app.id, app))
                .collect(),
            catalog: CatalogIndex::load(conn)?,
        })
    }

    fn instance(&self, binding: &CredentialBindingRow) -> Option<&ServiceInstanceRow> {
        self.instances
            .get(&binding.service_instance_id)
            .map(|entry| &entry.instance)
    }

    fn app(&self, binding: &CredentialBindingRow) -> Option<&AppRow> {
        binding.app_id.and_then(|id| self.apps.get(&id))
    }

    fn visible(&self, permissions: &Permissions, binding: &CredentialBindingRow) -> bool {
        self.instance(binding)
            .and_then(|instance| self.catalog.spaces.get(&instance.space_id))
            .is_some_and(|space| permissions.can_read_space(space.id, space.organization_id))
    }

    fn present(&self, base: &str, binding: &CredentialBindingRow) -> Value {
        let instance_guid = self
            .instance(binding)
            .map_or("", |instance| instance.guid.as_str());
        present_binding(
            base,
            binding,
            instance_guid,
            self.app(binding).map(|app| app.guid.as_str()),
        )
    }
}

async fn list_bindings(
    state: web::Data<AppState>,
    user: CurrentUser,
    request: HttpRequest,
) -> Result<HttpResponse, ApiError> {
    let query = ListQuery::parse(
        &request,
        &[
            "names",
            "guids",
            "service_instance_guids",
            "service_instance_names",
            "app_guids",
            "app_names",
            "service_plan_guids",
            "service_plan_names",
            "service_offering_guids",
            "service_offering_names",
            "type",
            "include",
            "label_selector",
        ],
        &[SortKey::Name],
    )?;
    query.check_include(&["app", "service_instance"])?;
    let base = state.external_url.clone();
    let body = state
        .db
        .run(move |conn| {
            let permissions = Permissions::load(conn, &user)?;
            let index = BindingIndex::load(conn)?;
            let mut bindings: Vec<CredentialBindingRow> = services_store::list_bindings(conn)?
                .into_iter()
                .filter(|binding| index.visible(&permissions, binding))
                .filter(|binding| {
                    let instance = index.instance(binding);
                    let app = index.app(binding);
                    let plan = instance
                        .and_then(|instance| instance.service_plan_id)
                        .and_then(|id| index.catalog.plans.iter().find(|plan| plan.id == id));
                    let offering = plan
                        .and_then(|plan| index.catalog.offerings.get(&plan.service_offering_id));
                    query.matches_opt("names", binding.name.as_deref())
                        && query.matches("guids", &binding.guid)
                        && query.matches_opt(
                            "service_instance_guids",
                            instance.map(|i| i.guid.as_str()),
                        )
                        && query.matches_opt(
                            "service_instance_names",
                            instance.map(|i| i.name.as_str()),
                        )
                        && query.matches_opt("app_guids", app.map(|a| a.guid.as_str()))
                        && query.matches_opt("app_names", app.map(|a| a.name.as_str()))
                        && query.matches_opt("service_plan_guids", plan.map(|p| p.guid.as_str()))
                        && query.matches_opt("service_plan_names", plan.map(|p| p.name.as_str()))
                        && query.matches_opt(
                            "service_offering_guids",
                            offering.map(|o| o.guid.as_str()),
                        )
                        && query.matches_opt(
                            "service_offering_names",
                            offering.map(|o| o.name.as_str()),
                        )
                        && query.matches("type", &binding.binding_type)
                })
                .collect();
            query.sort(
                &mut bindings,
                |b| b.name.as_deref().unwrap_or(""),
                |b| &b.created_at,
                |b| &b.updated_at,
            );
            let (page, pagination) =
                query.page_of(bindings, &base, "/v3/service_credential_bindings");
            let resources: Vec<Value> = page
                .iter()
                .map(|binding| index.present(&base, binding))
                .collect();
            let mut included = Map::new();
            if query.includes("app") {
                let mut apps = Vec::new();
                for binding in &page {
                    if let Some(app) = index.app(binding) {
                        dedup_push(&mut apps, app, |a, b| a.id == b.id);
                    }
                }
                included.insert(
                    "apps".into(),
                    json!(apps
                        .iter()
                        .map(|app| {
                            let space_guid = index
                                .catalog
                                .spaces
                                .get(&app.space_id)
                                .map_or("", |space| space.guid.as_str());
                            crate::v3::present::app(&base, app, space_guid)
                        })
                        .collect::<Vec<_>>()),
                );
            }
            if query.includes("service_instance") {
                let mut instances = Vec::new();
                for binding in &page {
                    if let Some(instance) = index.instance(binding) {
                        dedup_push(&mut instances, instance, |a, b| a.id == b.id);
                    }
                }
                included.insert(
                    "service_instances".into(),
                    json!(instances
                        .iter()
                        .map(|instance| {
                            let space_guid = index
                                .catalog
                                .spaces
                                .get(&instance.space_id)
                                .map_or("", |space| space.guid.as_str());
                            let plan_guid = instance
                                .service_plan_id
                                .and_then(|id| {
                                    index.catalog.plans.iter().find(|plan| plan.id == id)
                                })
                                .map(|plan| plan.guid.as_str());
                            present_instance(&base, instance, space_guid, plan_guid)
                        })
                        .collect::<Vec<_>>()),
                );
            }
            let included = if included.is_empty() {
                None
            } else {
                Some(Value::Object(included))
            };
            Ok(list_body(pagination, resources, included))
        })
        .await?;
    Ok(HttpResponse::Ok().json(body))
}

fn visible_binding(
    conn: &mut DbConn,
    permissions: &Permissions,
    guid: &str,
) -> Result<(CredentialBindingRow, ServiceInstanceRow, SpaceRow), ApiError> {
    actions::readable_binding(conn, permissions, guid)?
        .ok_or_else(|| ApiError::not_found("Service credential binding"))
}

async fn get_binding(
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
            let (binding, _, _) = visible_binding(conn, &permissions, &guid)?;
            let index = BindingIndex::load(conn)?;
            Ok(index.present(&base, &binding))
        })
        .await?;
    Ok(HttpResponse::Ok().json(body))
}

async fn binding_details(
    state: web::Data<AppState>,
    user: CurrentUser,
    path: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let guid = path.into_inner();
    let body = state
        .db
        .run(move |conn| {
            let permissions = Permissions::load(conn, &user)?;
            let (binding, _, space) = visible_binding(conn, &permissions, &guid)?;
            if !permissions.can_read_secrets_in_space(space.id) {
                return Err(ApiError::forbidden());
            }
            if binding.last_operation_state != services_store::SUCCEEDED {
                return Err(ApiError::not_found("Service credential binding"));
            }
            let credentials = match services_store::parse_json(binding.credentials.as_deref()) {
                Value::Null => json!({}),
                credentials => credentials,
            };
            let mut body = json!({"credentials": credentials});
            if let Some(drain) = &binding.syslog_drain_url {
                body["syslog_drain_url"] = json!(drain);
            }
            if let Value::Array(mounts) =
                services_store::parse_json(binding.volume_mounts.as_deref())
            {
                body["volume_mounts"] = json!(mounts);
            }
            Ok(body)
        })
        .await?;
    Ok(HttpResponse::Ok().json(body))
}

async fn binding_parameters(
    state: web::Data<AppState>,
    user: CurrentUser,
    path: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let guid = path.into_inner();
    let user_guid = user.guid.clone();
    let (binding, context) = state
        .db
        .run(move |conn| {
            let permissions = Permissions::load(conn, &user)?;
            let (binding, instance, _) = visible_binding(conn, &permissions, &guid)?;
            if instance.instance_type != MANAGED {
                return Err(ApiError::plain(
                    ErrorKind::ServiceFetchBindingParametersNotSupported,
                ));
            }
            let context = InstanceContext::load(conn, instance.id)?;
            if !context.offering.bindings_retrievable {
                return Err(ApiError::plain(
                    ErrorKind::ServiceFetchBindingParametersNotSupported,
                ));
            }
            Ok((binding, context))
        })
        .await?;
    let endpoint = crate::osb_client::BrokerEndpoint {
        url: context.broker.url.clone(),
        username: context.broker.username.clone(),
        password: context.broker.password.clone(),
    };
    let body = state
        .services
        .client()
        .fetch(
            &endpoint,
            &context.instance.guid,
            Some(&binding.guid),
            (&context.offering.broker_id, &context.plan.broker_id),
            Some(&user_guid),
        )
        .await
        .map_err(|failure| failure.error)?;
    Ok(HttpResponse::Ok().json(body.get("parameters").cloned().unwrap_or_else(|| json!({}))))
}

async fn create_binding(
    state: web::Data<AppState>,
    user: CurrentUser,
    payload: web::Json<Value>,
) -> Result<HttpResponse, ApiError> {
    let raw = payload.into_inner();
    let object = body::object(
        &raw,
        &[
            "type",
            "name",
            "relationships",
            "parameters",
            "metadata",
            "strategy",
        ],
    )?
    .clone();
    let kind = object
        .get("type")
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_owned();
    if kind != "app" && kind != "key" {
        return Err(ApiError::unprocessable("Type must be one of 'app', 'key'"));
    }
    let name = body::name(&object, kind == "key")?;
    let instance_guid = body::relationship_guid(&object, "service_instance")?
        .ok_or_else(|| ApiError::unprocessable("Relationships Service instance can't be blank"))?;
    let app_guid = body::relationship_guid(&object, "app")?;
    if kind == "app" && app_guid.is_none() {
        return Err(ApiError::unprocessable("Relationships App can't be blank"));
    }
    let parameters = parameters_object(object.get("parameters"))?;
    let request = actions::NewCredentialBinding {
        kind,
        name,
        instance_guid,
        app_guid,
        parameters: parameters.as_ref().map(Value::to_string),
    };
    let base = state.external_url.clone();
    let user_guid = user.guid.clone();
    let creation = state
        .db
        .run(move |conn| {
            let permissions = Permissions::load(conn, &user)?;
            actions::begin_binding(conn, v3_words, &permissions, &request)
        })
        .await?;
    match creation.start {
        BindingStart::Started { job_guid, binding } => {
            let first = state.services.bind(
                job_guid.clone(),
                binding.id,
                parameters,
                true,
                Some(user_guid),
            );
            await_first_answer(&state, first).await;
            Ok(crate::v3::accepted_job(&state.external_url, &job_guid))
        }
        BindingStart::Done(binding) => Ok(HttpResponse::Created().json(present_binding(
            &base,
            &binding,
            &creation.instance.guid,
            creation.app.as_ref().map(|app| app.guid.as_str()),
        ))),
    }
}

async fn delete_binding(
    state: web::Data<AppState>,
    user: CurrentUser,
    path: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let guid = path.into_inner();
    let user_guid = user.guid.clone();
    let job = state
        .db
        .run(move |conn| {
            let permissions = Permissions::load(conn, &user)?;
            let (binding, instance, space) = visible_binding(conn, &permissions, &guid)?;
            let job = actions::begin_unbind(conn, &permissions, &binding, &instance, &space)?;
            Ok(job.map(|job| (job, binding.id)))
        })
        .await?;
    match job {
        Some((job_guid, binding_id)) => {
            let first = state
                .services
                .unbind(job_guid.clone(), binding_id, true, Some(user_guid));
            await_first_answer(&state, first).await;
            Ok(crate::v3::accepted_job(&state.external_url, &job_guid))
        }
        None => Ok(HttpResponse::NoContent().finish()),
    }
}

/// `GET /v3/service_route_bindings` (read by `cf routes`): Kiln's router has no route services,
/// so there are never route bindings; the query is still validated.
async fn route_bindings(
    state: web::Data<AppState>,
    _user: CurrentUser,
    request: HttpRequest,
) -> Result<HttpResponse, ApiError> {
    let query = ListQuery::parse(
        &request,
        &[
            "guids",
            "route_guids",
            "service_instance_guids",
            "service_instance_names",
            "include",
            "label_selector",
        ],
        &[],
    )?;
    query.check_include(&["route", "service_instance"])?;
    let (_, pagination) = query.page_of(
        Vec::<()>::new(),
        &state.external_url,
        "/v3/service_route_bindings",
    );
    Ok(HttpResponse::Ok().json(list_body(pagination, Vec::new(), None)))
}

/// Waits up to `sync_wait_secs` for the broker's first answer before the job is handed to the
/// client. The runner records the outcome before answering, so the CLI's immediate first poll of
/// the job finds it COMPLETE or FAILED (a broker that answered at once) or POLLING (an async
/// operation) instead of PROCESSING, which would cost the user a 3-second poll interval.
async fn await_first_answer(state: &AppState, first: crate::service_jobs::FirstAnswerReceiver) {
    let _ = tokio::time::timeout(state.sync_wait, first).await;
}
