//! `/v3/service_brokers` (create and update are jobs that fetch and sync the catalog; delete is a
//! job), `/v3/service_offerings`, `/v3/service_plans` and `/v3/service_plans/:guid/visibility`.
//! Who sees a plan: everyone when it is public, members of the orgs it is visible to, members
//! of the space of a space-scoped broker, and admins (global readers) always.

use std::collections::HashMap;

use actix_web::{web, HttpRequest, HttpResponse};
use serde_json::{json, Map, Value};

use crate::app::{resource, AppState};
use crate::auth::CurrentUser;
use crate::body;
use crate::db::models::{
    OrgRow, PlanVisibilityRow, ServiceBrokerRow, ServiceOfferingRow, ServicePlanRow, SpaceRow,
};
use crate::db::DbConn;
use crate::error::ApiError;
use crate::permissions::Permissions;
use crate::query::{list_body, ListQuery, SortKey};
use crate::service_actions as actions;
use crate::store;
use crate::store::services as services_store;
use crate::v3::service_instances::v3_words;

/// Registers the broker, offering, plan and visibility routes.
pub fn configure(config: &mut web::ServiceConfig) {
    config
        .service(
            resource("/v3/service_brokers")
                .route(web::get().to(list_brokers))
                .route(web::post().to(create_broker)),
        )
        .service(
            resource("/v3/service_brokers/{guid}")
                .route(web::get().to(get_broker))
                .route(web::patch().to(update_broker))
                .route(web::delete().to(delete_broker)),
        )
        .service(resource("/v3/service_offerings").route(web::get().to(list_offerings)))
        .service(resource("/v3/service_offerings/{guid}").route(web::get().to(get_offering)))
        .service(resource("/v3/service_plans").route(web::get().to(list_plans)))
        .service(resource("/v3/service_plans/{guid}").route(web::get().to(get_plan)))
        .service(
            resource("/v3/service_plans/{guid}/visibility")
                .route(web::get().to(get_visibility))
                .route(web::patch().to(replace_visibility))
                .route(web::post().to(append_visibility)),
        )
        .service(
            resource("/v3/service_plans/{guid}/visibility/{org_guid}")
                .route(web::delete().to(delete_visibility)),
        );
}

/// The caller when the request carries a token (a bad token is refused as usual), `None` for
/// anonymous requests: the marketplace answers those with public plans only.
pub(crate) struct MaybeUser(pub(crate) Option<CurrentUser>);

impl actix_web::FromRequest for MaybeUser {
    type Error = ApiError;
    type Future = std::pin::Pin<Box<dyn std::future::Future<Output = Result<MaybeUser, ApiError>>>>;

    fn from_request(request: &HttpRequest, payload: &mut actix_web::dev::Payload) -> Self::Future {
        if crate::auth::bearer_token(request).is_none() {
            return Box::pin(async { Ok(MaybeUser(None)) });
        }
        let user = CurrentUser::from_request(request, payload);
        Box::pin(async move { user.await.map(|user| MaybeUser(Some(user))) })
    }
}

fn metadata() -> Value {
    json!({"labels": {}, "annotations": {}})
}

fn parse(text: &str) -> Value {
    serde_json::from_str(text).unwrap_or(Value::Null)
}

/// Keeps only the requested fields of a resource (`relationships.x` keeps that relationship).
pub(crate) fn pick(full: &Value, fields: &[String]) -> Value {
    let mut picked = Map::new();
    for field in fields {
        if let Some(relation) = field.strip_prefix("relationships.") {
            if let Some(value) = full.get("relationships").and_then(|r| r.get(relation)) {
                let relationships = picked.entry("relationships").or_insert_with(|| json!({}));
                relationships[relation] = value.clone();
            }
        } else if let Some(value) = full.get(field.as_str()) {
            picked.insert(field.clone(), value.clone());
        }
    }
    Value::Object(picked)
}

/// A broker as v3 JSON (never its credentials).
pub(crate) fn present_broker(
    base: &str,
    broker: &ServiceBrokerRow,
    space_guid: Option<&str>,
) -> Value {
    let relationships = match space_guid {
        Some(space) => json!({"space": {"data": {"guid": space}}}),
        None => json!({}),
    };
    json!({
        "guid": broker.guid,
        "name": broker.name,
        "url": broker.url,
        "created_at": broker.created_at,
        "updated_at": broker.updated_at,
        "relationships": relationships,
        "metadata": metadata(),
        "links": {
            "self": {"href": format!("{base}/v3/service_brokers/{}", broker.guid)},
            "service_offerings": {"href": format!("{base}/v3/service_offerings?service_broker_guids={}", broker.guid)},
        },
    })
}

/// An offering as v3 JSON.
pub(crate) fn present_offering(
    base: &str,
    offering: &ServiceOfferingRow,
    broker_guid: &str,
) -> Value {
    let catalog_metadata = parse(&offering.metadata);
    let documentation_url = catalog_metadata
        .get("documentationUrl")
        .cloned()
        .unwrap_or(Value::Null);
    let shareable = catalog_metadata
        .get("shareable")
        .and_then(Value::as_bool)
        .unwrap_or(false);
    json!({
        "guid": offering.guid,
        "name": offering.name,
        "description": offering.description,
        "available": offering.active,
        "tags": parse(&offering.tags),
        "requires": parse(&offering.requires),
        "created_at": offering.created_at,
        "updated_at": offering.updated_at,
        "shareable": shareable,
        "documentation_url": documentation_url,
        "broker_catalog": {
            "id": offering.broker_id,
            "metadata": catalog_metadata,
            "features": {
                "plan_updateable": offering.plan_updateable,
                "bindable": offering.bindable,
                "instances_retrievable": offering.instances_retrievable,
                "bindings_retrievable": offering.bindings_retrievable,
                "allow_context_updates": offering.allow_context_updates,
            },
        },
        "relationships": {"service_broker": {"data": {"guid": broker_guid}}},
        "metadata": metadata(),
        "links": {
            "self": {"href": format!("{base}/v3/service_offerings/{}", offering.guid)},
            "service_plans": {"href": format!("{base}/v3/service_plans?service_offering_guids={}", offering.guid)},
            "service_broker": {"href": format!("{base}/v3/service_brokers/{broker_guid}")},
        },
    })
}

fn costs(plan_metadata: &Value) -> Value {
    let mut costs = Vec::new();
    for cost in plan_metadata
        .get("costs")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        let unit = cost.get("unit").cloned().unwrap_or(Value::Null);
        for (currency, amount) in cost
            .get("amount")
            .and_then(Value::as_object)
            .into_iter()
            .flatten()
        {
            costs
                .push(json!({"amount": amount, "currency": currency.to_uppercase(), "unit": unit}));
        }
    }
    Value::Array(costs)
}

/// Everything needed to decide who sees which broker, offering and plan.
pub(crate) struct CatalogIndex {
    pub(crate) brokers: HashMap<i32, ServiceBrokerRow>,
    pub(crate) offerings: HashMap<i32, ServiceOfferingRow>,
    pub(crate) plans: Vec<ServicePlanRow>,
    pub(crate) visibilities: HashMap<i32, Vec<PlanVisibilityRow>>,
    pub(crate) spaces: HashMap<i32, SpaceRow>,
    pub(crate) orgs: HashMap<i32, OrgRow>,
}

impl CatalogIndex {
    pub(crate) fn load(conn: &mut DbConn) -> Result<CatalogIndex, ApiError> {
        let mut visibilities: HashMap<i32, Vec<PlanVisibilityRow>> = HashMap::new();
        for visibility in services_store::list_visibilities(conn)? {
            visibilities
                .entry(visibility.service_plan_id)
                .or_default()
                .push(visibility);
        }
        Ok(CatalogIndex {
            brokers: services_store::list_brokers(conn)?
                .into_iter()
                .map(|row| (row.id, row))
                .collect(),
            offerings: services_store::list_offerings(conn)?
                .into_iter()
                .map(|row| (row.id, row))
                .collect(),
            plans: services_store::list_plans(conn)?,
            visibilities,
            spaces: store::spaces::list(conn)?
                .into_iter()
                .map(|row| (row.id, row))
                .collect(),
            orgs: store::orgs::list(conn)?
                .into_iter()
                .map(|row| (row.id, row))
                .collect(),
        })
    }

    pub(crate) fn broker_of_plan(&self, plan: &ServicePlanRow) -> Option<&ServiceBrokerRow> {
        let offering = self.offerings.get(&plan.service_offering_id)?;
        self.brokers.get(&offering.service_broker_id)
    }

    fn space_guid(&self, space_id: Option<i32>) -> Option<&str> {
        space_id
            .and_then(|id| self.spaces.get(&id))
            .map(|space| space.guid.as_str())
    }

    /// `public`, `admin`, `organization` or `space`.
    pub(crate) fn visibility_type(&self, plan: &ServicePlanRow) -> &'static str {
        if self
            .broker_of_plan(plan)
            .is_some_and(|broker| broker.space_id.is_some())
        {
            "space"
        } else if plan.public {
            "public"
        } else if self.visibilities.contains_key(&plan.id) {
            "organization"
        } else {
            "admin"
        }
    }

    /// Whether the caller (`None`: anonymous) sees the plan.
    pub(crate) fn plan_visible(
        &self,
        permissions: Option<&Permissions>,
        plan: &ServicePlanRow,
    ) -> bool {
        let Some(broker) = self.broker_of_plan(plan) else {
            return false;
        };
        let Some(permissions) = permissions else {
            return plan.public && broker.space_id.is_none();
        };
        if permissions.can_read_globally() {
            return true;
        }
        if let Some(space_id) = broker.space_id {
            return self
                .spaces
                .get(&space_id)
                .is_some_and(|space| permissions.can_read_space(space.id, space.organization_id));
        }
        plan.public
            || self
                .visibilities
                .get(&plan.id)
                .into_iter()
                .flatten()
                .any(|visibility| permissions.can_read_org(visibility.organization_id))
    }

    /// Whether instances of the plan may be created in the space.
    pub(crate) fn plan_available_in_space(&self, plan: &ServicePlanRow, space: &SpaceRow) -> bool {
        let Some(broker) = self.broker_of_plan(plan) else {
            return false;
        };
        match broker.space_id {
            Some(space_id) => space_id == space.id,
            None => {
                plan.public
                    || self
                        .visibilities
                        .get(&plan.id)
                        .into_iter()
                        .flatten()
                        .any(|visibility| visibility.organization_id == space.organization_id)
            }
        }
    }

    fn plan_available_in_org(&self, plan: &ServicePlanRow, org_id: i32) -> bool {
        let Some(broker) = self.broker_of_plan(plan) else {
            return false;
        };
        match broker.space_id {
            Some(space_id) => self
                .spaces
                .get(&space_id)
                .is_some_and(|space| space.organization_id == org_id),
            None => {
                plan.public
                    || self
                        .visibilities
                        .get(&plan.id)
                        .into_iter()
                        .flatten()
                        .any(|visibility| visibility.organization_id == org_id)
            }
        }
    }

    /// Whether the caller sees the broker.
    pub(crate) fn broker_visible(
        &self,
        permissions: &Permissions,
        broker: &ServiceBrokerRow,
    ) -> bool {
        if permissions.can_read_globally() {
            return true;
        }
        broker.space_id.is_some_and(|space_id| {
            self.spaces
                .get(&space_id)
                .is_some_and(|space| permissions.can_write_to_space(space.id))
        })
    }

    pub(crate) fn present_plan(&self, base: &str, plan: &ServicePlanRow) -> Value {
        let offering_guid = self
            .offerings
            .get(&plan.service_offering_id)
            .map_or("", |offering| offering.guid.as_str());
        let plan_metadata = parse(&plan.metadata);
        let schemas = parse(&plan.schemas);
        let schema = |path: &[&str]| -> Value {
            let mut value = &schemas;
            for key in path {
                value = match value.get(key) {
                    Some(next) => next,
                    None => return json!({}),
                };
            }
            value.clone()
        };
        let mut relationships = json!({"service_offering": {"data": {"guid": offering_guid}}});
        if let Some(space_guid) = self
            .broker_of_plan(plan)
            .and_then(|broker| self.space_guid(broker.space_id))
        {
            relationships["space"] = json!({"data": {"guid": space_guid}});
        }
        json!({
            "guid": plan.guid,
            "name": plan.name,
            "description": plan.description,
            "visibility_type": self.visibility_type(plan),
            "available": plan.active,
            "free": plan.free,
            "costs": costs(&plan_metadata),
            "created_at": plan.created_at,
            "updated_at": plan.updated_at,
            "maintenance_info": plan.maintenance_info.as_deref().map_or(json!({}), parse),
            "broker_catalog": {
                "id": plan.broker_id,
                "metadata": plan_metadata,
                "maximum_polling_duration": plan.maximum_polling_duration,
                "features": {
                    "plan_updateable": plan.plan_updateable.unwrap_or_else(|| self.offerings.get(&plan.service_offering_id).is_some_and(|offering| offering.plan_updateable)),
                    "bindable": plan.bindable.unwrap_or_else(|| self.offerings.get(&plan.service_offering_id).is_some_and(|offering| offering.bindable)),
                },
            },
            "schemas": {
                "service_instance": {
                    "create": {"parameters": schema(&["service_instance", "create", "parameters"])},
                    "update": {"parameters": schema(&["service_instance", "update", "parameters"])},
                },
                "service_binding": {
                    "create": {"parameters": schema(&["service_binding", "create", "parameters"])},
                },
            },
            "relationships": relationships,
            "metadata": metadata(),
            "links": {
                "self": {"href": format!("{base}/v3/service_plans/{}", plan.guid)},
                "service_offering": {"href": format!("{base}/v3/service_offerings/{offering_guid}")},
                "visibility": {"href": format!("{base}/v3/service_plans/{}/visibility", plan.guid)},
            },
        })
    }

    pub(crate) fn present_offering(&self, base: &str, offering: &ServiceOfferingRow) -> Value {
        let broker_guid = self
            .brokers
            .get(&offering.service_broker_id)
            .map_or("", |broker| broker.guid.as_str());
        present_offering(base, offering, broker_guid)
    }

    pub(crate) fn present_broker(&self, base: &str, broker: &ServiceBrokerRow) -> Value {
        present_broker(base, broker, self.space_guid(broker.space_id))
    }
}

// ---------------------------------------------------------------------------------------------
// Brokers

async fn list_brokers(
    state: web::Data<AppState>,
    user: CurrentUser,
    request: HttpRequest,
) -> Result<HttpResponse, ApiError> {
    let query = ListQuery::parse(
        &request,
        &["names", "space_guids", "label_selector"],
        &[SortKey::Name],
    )?;
    let base = state.external_url.clone();
    let body = state
        .db
        .run(move |conn| {
            let permissions = Permissions::load(conn, &user)?;
            let index = CatalogIndex::load(conn)?;
            let mut brokers: Vec<ServiceBrokerRow> = index
                .brokers
                .values()
                .filter(|broker| index.broker_visible(&permissions, broker))
                .filter(|broker| query.matches("names", &broker.name))
                .filter(|broker| {
                    query.matches_opt("space_guids", index.space_guid(broker.space_id))
                })
                .cloned()
                .collect();
            brokers.sort_by_key(|broker| broker.id);
            query.sort(
                &mut brokers,
                |b| &b.name,
                |b| &b.created_at,
                |b| &b.updated_at,
            );
            let (page, pagination) = query.page_of(brokers, &base, "/v3/service_brokers");
            let resources = page
                .iter()
                .map(|broker| index.present_broker(&base, broker))
                .collect();
            Ok(list_body(pagination, resources, None))
        })
        .await?;
    Ok(HttpResponse::Ok().json(body))
}

fn visible_broker(
    conn: &mut DbConn,
    permissions: &Permissions,
    guid: &str,
) -> Result<(ServiceBrokerRow, CatalogIndex), ApiError> {
    let index = CatalogIndex::load(conn)?;
    let broker = index
        .brokers
        .values()
        .find(|broker| broker.guid == guid)
        .filter(|broker| index.broker_visible(permissions, broker))
        .cloned()
        .ok_or_else(|| ApiError::not_found("Service broker"))?;
    Ok((broker, index))
}

async fn get_broker(
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
            let (broker, index) = visible_broker(conn, &permissions, &guid)?;
            Ok(index.present_broker(&base, &broker))
        })
        .await?;
    Ok(HttpResponse::Ok().json(body))
}

/// `authentication: {type: basic, credentials: {username, password}}`.
fn authentication(object: &Map<String, Value>) -> Result<Option<(String, String)>, ApiError> {
    let Some(value) = object.get("authentication") else {
        return Ok(None);
    };
    let invalid = || ApiError::unprocessable("Authentication.type must be one of [\"basic\"]");
    let authentication = value.as_object().ok_or_else(invalid)?;
    if authentication.get("type").and_then(Value::as_str) != Some("basic") {
        return Err(invalid());
    }
    let credentials = authentication
        .get("credentials")
        .and_then(Value::as_object)
        .ok_or_else(|| ApiError::unprocessable("Authentication.credentials must be an object"))?;
    let field = |name: &str| -> Result<String, ApiError> {
        match credentials.get(name) {
            Some(Value::String(text)) if !text.is_empty() => Ok(text.clone()),
            _ => Err(ApiError::unprocessable(format!(
                "Authentication.credentials.{name} can't be blank"
            ))),
        }
    };
    Ok(Some((field("username")?, field("password")?)))
}

fn broker_url(object: &Map<String, Value>, required: bool) -> Result<Option<String>, ApiError> {
    let Some(value) = object.get("url").filter(|value| !value.is_null()) else {
        return if required {
            Err(ApiError::unprocessable("Url must be a valid url"))
        } else {
            Ok(None)
        };
    };
    let text = value
        .as_str()
        .ok_or_else(|| ApiError::unprocessable("Url must be a string"))?;
    actions::broker_url(v3_words, text)?;
    Ok(Some(text.to_owned()))
}

async fn create_broker(
    state: web::Data<AppState>,
    user: CurrentUser,
    payload: web::Json<Value>,
) -> Result<HttpResponse, ApiError> {
    let object = body::object(
        &payload,
        &["name", "url", "authentication", "relationships", "metadata"],
    )?;
    let name = body::name(object, true)?.unwrap_or_default();
    let url = broker_url(object, true)?.unwrap_or_default();
    let credentials = authentication(object)?
        .ok_or_else(|| ApiError::unprocessable("Authentication can't be blank"))?;
    let space_guid = body::relationship_guid(object, "space")?;
    let user_guid = user.guid.clone();
    let (job_guid, broker_guid) = state
        .db
        .run(move |conn| {
            let permissions = Permissions::load(conn, &user)?;
            let space_id =
                actions::broker_space(conn, v3_words, &user, &permissions, space_guid.as_deref())?;
            conn.write_transaction(|conn| {
                let broker = actions::create_broker(
                    conn,
                    v3_words,
                    &name,
                    &url,
                    (&credentials.0, &credentials.1),
                    space_id,
                )?;
                let job = store::jobs::create(
                    conn,
                    "service_broker.catalog.synchronize",
                    "service_broker",
                    &broker.guid,
                )?;
                Ok((job, broker.guid))
            })
        })
        .await?;
    state
        .services
        .synchronize_catalog(job_guid.clone(), broker_guid, Some(user_guid), true);
    Ok(crate::v3::accepted_job(&state.external_url, &job_guid))
}

async fn update_broker(
    state: web::Data<AppState>,
    user: CurrentUser,
    path: web::Path<String>,
    payload: web::Json<Value>,
) -> Result<HttpResponse, ApiError> {
    let object = body::object(&payload, &["name", "url", "authentication", "metadata"])?;
    let name = body::name(object, false)?;
    let url = broker_url(object, false)?;
    let credentials = authentication(object)?;
    let only_metadata = name.is_none() && url.is_none() && credentials.is_none();
    let guid = path.into_inner();
    let base = state.external_url.clone();
    let user_guid = user.guid.clone();
    let (job_guid, broker) = state
        .db
        .run(move |conn| {
            let permissions = Permissions::load(conn, &user)?;
            let (broker, _) = visible_broker(conn, &permissions, &guid)?;
            actions::require_broker_writer(&permissions, &broker)?;
            if only_metadata {
                return Ok((None, broker));
            }
            conn.write_transaction(|conn| {
                actions::update_broker(
                    conn,
                    v3_words,
                    &broker,
                    name.as_deref(),
                    url.as_deref(),
                    credentials
                        .as_ref()
                        .map(|(user, password)| (user.as_str(), password.as_str())),
                )?;
                services_store::set_broker_state(
                    conn,
                    broker.id,
                    services_store::broker_state::SYNCHRONIZING,
                )?;
                let job = store::jobs::create(
                    conn,
                    "service_broker.update",
                    "service_broker",
                    &broker.guid,
                )?;
                Ok((Some(job), broker))
            })
        })
        .await?;
    match job_guid {
        Some(job_guid) => {
            state.services.synchronize_catalog(
                job_guid.clone(),
                broker.guid,
                Some(user_guid),
                false,
            );
            Ok(crate::v3::accepted_job(&state.external_url, &job_guid))
        }
        None => {
            let body = state
                .db
                .run(move |conn| {
                    let index = CatalogIndex::load(conn)?;
                    Ok(index.present_broker(&base, &broker))
                })
                .await?;
            Ok(HttpResponse::Ok().json(body))
        }
    }
}

async fn delete_broker(
    state: web::Data<AppState>,
    user: CurrentUser,
    path: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let guid = path.into_inner();
    let job_guid = state
        .db
        .run(move |conn| {
            let permissions = Permissions::load(conn, &user)?;
            let (broker, _) = visible_broker(conn, &permissions, &guid)?;
            actions::require_broker_writer(&permissions, &broker)?;
            actions::require_removable(conn, &broker)?;
            store::jobs::run_now(
                conn,
                "service_broker.delete",
                "service_broker",
                &broker.guid,
                |conn| services_store::delete_broker(conn, broker.id),
            )
        })
        .await?;
    Ok(crate::v3::accepted_job(&state.external_url, &job_guid))
}

// ---------------------------------------------------------------------------------------------
// Offerings

fn fields_of(query: &ListQuery, key: &str) -> Option<Vec<String>> {
    query.list(key).map(<[String]>::to_vec)
}

async fn list_offerings(
    state: web::Data<AppState>,
    MaybeUser(user): MaybeUser,
    request: HttpRequest,
) -> Result<HttpResponse, ApiError> {
    let query = ListQuery::parse(
        &request,
        &[
            "names",
            "guids",
            "available",
            "service_broker_guids",
            "service_broker_names",
            "space_guids",
            "organization_guids",
            "fields[service_broker]",
            "label_selector",
        ],
        &[SortKey::Name],
    )?;
    let base = state.external_url.clone();
    let body = state
        .db
        .run(move |conn| {
            let permissions = user.as_ref().map(|user| Permissions::load(conn, user)).transpose()?;
            let index = CatalogIndex::load(conn)?;
            let space_filter: Option<Vec<SpaceRow>> = query.list("space_guids").map(|guids| {
                index.spaces.values().filter(|space| guids.contains(&space.guid)).cloned().collect()
            });
            let org_filter: Option<Vec<i32>> = query.list("organization_guids").map(|guids| {
                index.orgs.values().filter(|org| guids.contains(&org.guid)).map(|org| org.id).collect()
            });
            let mut offerings: Vec<ServiceOfferingRow> = index
                .offerings
                .values()
                .filter(|offering| {
                    let plans: Vec<&ServicePlanRow> = index
                        .plans
                        .iter()
                        .filter(|plan| plan.service_offering_id == offering.id)
                        .filter(|plan| index.plan_visible(permissions.as_ref(), plan))
                        .collect();
                    let broker = index.brokers.get(&offering.service_broker_id);
                    !plans.is_empty()
                        && query.matches("names", &offering.name)
                        && query.matches("guids", &offering.guid)
                        && query.matches("available", if offering.active { "true" } else { "false" })
                        && query.matches_opt("service_broker_guids", broker.map(|b| b.guid.as_str()))
                        && query.matches_opt("service_broker_names", broker.map(|b| b.name.as_str()))
                        && space_filter.as_ref().is_none_or(|spaces| {
                            plans.iter().any(|plan| spaces.iter().any(|space| index.plan_available_in_space(plan, space)))
                        })
                        && org_filter.as_ref().is_none_or(|orgs| {
                            plans.iter().any(|plan| orgs.iter().any(|org| index.plan_available_in_org(plan, *org)))
                        })
                })
                .cloned()
                .collect();
            offerings.sort_by_key(|offering| offering.id);
            query.sort(&mut offerings, |o| &o.name, |o| &o.created_at, |o| &o.updated_at);
            let (page, pagination) = query.page_of(offerings, &base, "/v3/service_offerings");
            let resources: Vec<Value> = page.iter().map(|offering| index.present_offering(&base, offering)).collect();
            let included = fields_of(&query, "fields[service_broker]").map(|fields| {
                let mut brokers: Vec<&ServiceBrokerRow> = Vec::new();
                for offering in &page {
                    if let Some(broker) = index.brokers.get(&offering.service_broker_id) {
                        if !brokers.iter().any(|known| known.id == broker.id) {
                            brokers.push(broker);
                        }
                    }
                }
                json!({"service_brokers": brokers.iter().map(|broker| pick(&index.present_broker(&base, broker), &fields)).collect::<Vec<_>>()})
            });
            Ok(list_body(pagination, resources, included))
        })
        .await?;
    Ok(HttpResponse::Ok().json(body))
}

async fn get_offering(
    state: web::Data<AppState>,
    MaybeUser(user): MaybeUser,
    path: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let guid = path.into_inner();
    let base = state.external_url.clone();
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
                .find(|offering| offering.guid == guid)
                .filter(|offering| {
                    index.plans.iter().any(|plan| {
                        plan.service_offering_id == offering.id
                            && index.plan_visible(permissions.as_ref(), plan)
                    })
                })
                .ok_or_else(|| ApiError::not_found("Service offering"))?;
            Ok(index.present_offering(&base, offering))
        })
        .await?;
    Ok(HttpResponse::Ok().json(body))
}

// ---------------------------------------------------------------------------------------------
// Plans

async fn list_plans(
    state: web::Data<AppState>,
    MaybeUser(user): MaybeUser,
    request: HttpRequest,
) -> Result<HttpResponse, ApiError> {
    let query = ListQuery::parse(
        &request,
        &[
            "names",
            "guids",
            "available",
            "broker_catalog_ids",
            "service_offering_guids",
            "service_offering_names",
            "service_broker_guids",
            "service_broker_names",
            "space_guids",
            "organization_guids",
            "service_instance_guids",
            "include",
            "fields[service_offering.service_broker]",
            "label_selector",
        ],
        &[SortKey::Name],
    )?;
    query.check_include(&["service_offering", "space.organization"])?;
    let base = state.external_url.clone();
    let body = state
        .db
        .run(move |conn| {
            let permissions = user.as_ref().map(|user| Permissions::load(conn, user)).transpose()?;
            let index = CatalogIndex::load(conn)?;
            let instances_plans: Option<Vec<i32>> = match query.list("service_instance_guids") {
                Some(guids) => Some(
                    services_store::list_instances(conn)?
                        .into_iter()
                        .filter(|instance| guids.contains(&instance.guid))
                        .filter_map(|instance| instance.service_plan_id)
                        .collect(),
                ),
                None => None,
            };
            let space_filter: Option<Vec<SpaceRow>> = query.list("space_guids").map(|guids| {
                index.spaces.values().filter(|space| guids.contains(&space.guid)).cloned().collect()
            });
            let org_filter: Option<Vec<i32>> = query.list("organization_guids").map(|guids| {
                index.orgs.values().filter(|org| guids.contains(&org.guid)).map(|org| org.id).collect()
            });
            let plans: Vec<ServicePlanRow> = index
                .plans
                .iter()
                .filter(|plan| {
                    let offering = index.offerings.get(&plan.service_offering_id);
                    let broker = index.broker_of_plan(plan);
                    index.plan_visible(permissions.as_ref(), plan)
                        && query.matches("names", &plan.name)
                        && query.matches("guids", &plan.guid)
                        && query.matches("broker_catalog_ids", &plan.broker_id)
                        && query.matches("available", if plan.active { "true" } else { "false" })
                        && query.matches_opt("service_offering_guids", offering.map(|o| o.guid.as_str()))
                        && query.matches_opt("service_offering_names", offering.map(|o| o.name.as_str()))
                        && query.matches_opt("service_broker_guids", broker.map(|b| b.guid.as_str()))
                        && query.matches_opt("service_broker_names", broker.map(|b| b.name.as_str()))
                        && space_filter.as_ref().is_none_or(|spaces| spaces.iter().any(|space| index.plan_available_in_space(plan, space)))
                        && org_filter.as_ref().is_none_or(|orgs| orgs.iter().any(|org| index.plan_available_in_org(plan, *org)))
                        && instances_plans.as_ref().is_none_or(|ids| ids.contains(&plan.id))
                })
                .cloned()
                .collect();
            let mut plans = plans;
            query.sort(&mut plans, |p| &p.name, |p| &p.created_at, |p| &p.updated_at);
            let (page, pagination) = query.page_of(plans, &base, "/v3/service_plans");
            let resources: Vec<Value> = page.iter().map(|plan| index.present_plan(&base, plan)).collect();
            let mut included = Map::new();
            if query.includes("service_offering") || query.list("fields[service_offering.service_broker]").is_some() {
                let mut offerings: Vec<&ServiceOfferingRow> = Vec::new();
                for plan in &page {
                    if let Some(offering) = index.offerings.get(&plan.service_offering_id) {
                        if !offerings.iter().any(|known| known.id == offering.id) {
                            offerings.push(offering);
                        }
                    }
                }
                if query.includes("service_offering") {
                    included.insert(
                        "service_offerings".into(),
                        json!(offerings.iter().map(|offering| index.present_offering(&base, offering)).collect::<Vec<_>>()),
                    );
                }
                if let Some(fields) = fields_of(&query, "fields[service_offering.service_broker]") {
                    let mut brokers: Vec<&ServiceBrokerRow> = Vec::new();
                    for offering in &offerings {
                        if let Some(broker) = index.brokers.get(&offering.service_broker_id) {
                            if !brokers.iter().any(|known| known.id == broker.id) {
                                brokers.push(broker);
                            }
                        }
                    }
                    included.insert(
                        "service_brokers".into(),
                        json!(brokers.iter().map(|broker| pick(&index.present_broker(&base, broker), &fields)).collect::<Vec<_>>()),
                    );
                }
            }
            if query.includes("space.organization") {
                let mut spaces: Vec<&SpaceRow> = Vec::new();
                for plan in &page {
                    if let Some(space) = index.broker_of_plan(plan).and_then(|broker| broker.space_id).and_then(|id| index.spaces.get(&id)) {
                        if !spaces.iter().any(|known| known.id == space.id) {
                            spaces.push(space);
                        }
                    }
                }
                let mut orgs: Vec<&OrgRow> = Vec::new();
                for space in &spaces {
                    if let Some(org) = index.orgs.get(&space.organization_id) {
                        if !orgs.iter().any(|known| known.id == org.id) {
                            orgs.push(org);
                        }
                    }
                }
                included.insert(
                    "spaces".into(),
                    json!(spaces.iter().map(|space| crate::v3::present::space(&base, space, index.orgs.get(&space.organization_id).map_or("", |org| org.guid.as_str()))).collect::<Vec<_>>()),
                );
                included.insert(
                    "organizations".into(),
                    json!(orgs.iter().map(|org| json!({"guid": org.guid, "name": org.name, "created_at": org.created_at, "updated_at": org.updated_at})).collect::<Vec<_>>()),
                );
            }
            let included = if included.is_empty() { None } else { Some(Value::Object(included)) };
            Ok(list_body(pagination, resources, included))
        })
        .await?;
    Ok(HttpResponse::Ok().json(body))
}

fn visible_plan(
    index: &CatalogIndex,
    permissions: Option<&Permissions>,
    guid: &str,
) -> Result<ServicePlanRow, ApiError> {
    index
        .plans
        .iter()
        .find(|plan| plan.guid == guid)
        .filter(|plan| index.plan_visible(permissions, plan))
        .cloned()
        .ok_or_else(|| ApiError::not_found("Service plan"))
}

async fn get_plan(
    state: web::Data<AppState>,
    MaybeUser(user): MaybeUser,
    path: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let guid = path.into_inner();
    let base = state.external_url.clone();
    let body = state
        .db
        .run(move |conn| {
            let permissions = user
                .as_ref()
                .map(|user| Permissions::load(conn, user))
                .transpose()?;
            let index = CatalogIndex::load(conn)?;
            let plan = visible_plan(&index, permissions.as_ref(), &guid)?;
            Ok(index.present_plan(&base, &plan))
        })
        .await?;
    Ok(HttpResponse::Ok().json(body))
}

fn visibility_body(
    conn: &mut DbConn,
    permissions: &Permissions,
    plan_id: i32,
) -> Result<Value, ApiError> {
    let index = CatalogIndex::load(conn)?;
    let plan = index
        .plans
        .iter()
        .find(|plan| plan.id == plan_id)
        .ok_or_else(|| ApiError::not_found("Service plan"))?;
    let kind = index.visibility_type(plan);
    let mut body = json!({"type": kind});
    match kind {
        "organization" => {
            let orgs: Vec<Value> = index
                .visibilities
                .get(&plan.id)
                .into_iter()
                .flatten()
                .filter(|visibility| permissions.can_read_org(visibility.organization_id))
                .filter_map(|visibility| index.orgs.get(&visibility.organization_id))
                .map(|org| json!({"guid": org.guid, "name": org.name}))
                .collect();
            body["organizations"] = json!(orgs);
        }
        "space" => {
            if let Some(space) = index
                .broker_of_plan(plan)
                .and_then(|broker| broker.space_id)
                .and_then(|id| index.spaces.get(&id))
            {
                body["space"] = json!({"guid": space.guid, "name": space.name});
            }
        }
        _ => {}
    }
    Ok(body)
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
            let plan = visible_plan(&index, Some(&permissions), &guid)?;
            visibility_body(conn, &permissions, plan.id)
        })
        .await?;
    Ok(HttpResponse::Ok().json(body))
}

/// Applies a visibility request; `replace` (PATCH) drops org visibilities not listed.
fn apply_visibility(
    conn: &mut DbConn,
    user: &CurrentUser,
    guid: &str,
    payload: &Value,
    replace: bool,
) -> Result<Value, ApiError> {
    let object = body::object(payload, &["type", "organizations"])?;
    let kind = object
        .get("type")
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_owned();
    if !matches!(kind.as_str(), "public" | "admin" | "organization") {
        return Err(ApiError::unprocessable(
            "Type must be one of 'public', 'admin', 'organization'",
        ));
    }
    let permissions = Permissions::load(conn, user)?;
    let index = CatalogIndex::load(conn)?;
    let plan = visible_plan(&index, Some(&permissions), guid)?;
    actions::require_visibility_admin(v3_words, &permissions, &index, &plan)?;
    let mut org_ids = Vec::new();
    if kind == "organization" {
        let orgs = object
            .get("organizations")
            .and_then(Value::as_array)
            .filter(|orgs| !orgs.is_empty())
            .ok_or_else(|| {
                ApiError::unprocessable("Organizations must have at least one organization")
            })?;
        for org in orgs {
            let org_guid = org.get("guid").and_then(Value::as_str).unwrap_or_default();
            let row = index
                .orgs
                .values()
                .find(|row| row.guid == org_guid)
                .ok_or_else(|| {
                    ApiError::unprocessable(format!(
                        "Could not find Organization with guid {org_guid}"
                    ))
                })?;
            org_ids.push(row.id);
        }
    } else if object.contains_key("organizations") {
        return Err(ApiError::unprocessable(format!(
            "Organizations can only be specified with type 'organization', not '{kind}'"
        )));
    }
    conn.write_transaction(|conn| {
        match kind.as_str() {
            "public" => {
                services_store::clear_visibilities(conn, plan.id)?;
                services_store::set_plan_public(conn, plan.id, true)?;
            }
            "admin" => {
                services_store::clear_visibilities(conn, plan.id)?;
                services_store::set_plan_public(conn, plan.id, false)?;
            }
            _ => {
                services_store::set_plan_public(conn, plan.id, false)?;
                if replace {
                    services_store::clear_visibilities(conn, plan.id)?;
                }
                for org_id in &org_ids {
                    services_store::add_visibility(conn, plan.id, *org_id)?;
                }
            }
        }
        Ok(())
    })?;
    if kind == "organization" && !replace {
        // POST answers with the organizations just added.
        let index = CatalogIndex::load(conn)?;
        let orgs: Vec<Value> = org_ids
            .iter()
            .filter_map(|id| index.orgs.get(id))
            .map(|org| json!({"guid": org.guid, "name": org.name}))
            .collect();
        return Ok(json!({"type": "organization", "organizations": orgs}));
    }
    visibility_body(conn, &permissions, plan.id)
}

async fn replace_visibility(
    state: web::Data<AppState>,
    user: CurrentUser,
    path: web::Path<String>,
    payload: web::Json<Value>,
) -> Result<HttpResponse, ApiError> {
    let guid = path.into_inner();
    let payload = payload.into_inner();
    let body = state
        .db
        .run(move |conn| apply_visibility(conn, &user, &guid, &payload, true))
        .await?;
    Ok(HttpResponse::Ok().json(body))
}

async fn append_visibility(
    state: web::Data<AppState>,
    user: CurrentUser,
    path: web::Path<String>,
    payload: web::Json<Value>,
) -> Result<HttpResponse, ApiError> {
    let guid = path.into_inner();
    let payload = payload.into_inner();
    let body = state
        .db
        .run(move |conn| apply_visibility(conn, &user, &guid, &payload, false))
        .await?;
    Ok(HttpResponse::Ok().json(body))
}

async fn delete_visibility(
    state: web::Data<AppState>,
    user: CurrentUser,
    path: web::Path<(String, String)>,
) -> Result<HttpResponse, ApiError> {
    let (guid, org_guid) = path.into_inner();
    state
        .db
        .run(move |conn| {
            let permissions = Permissions::load(conn, &user)?;
            let index = CatalogIndex::load(conn)?;
            let plan = visible_plan(&index, Some(&permissions), &guid)?;
            if !permissions.can_write_globally() {
                return Err(ApiError::forbidden());
            }
            let org = index
                .orgs
                .values()
                .find(|org| org.guid == org_guid)
                .ok_or_else(|| ApiError::not_found("Organization"))?;
            if !services_store::remove_visibility(conn, plan.id, org.id)? {
                return Err(ApiError::not_found("Service plan visibility"));
            }
            Ok(())
        })
        .await?;
    Ok(HttpResponse::NoContent().finish())
}
