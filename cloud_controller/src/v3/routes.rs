//! `/v3/routes`: list (space, org, app, domain, host, path, port filters), get, create, delete as
//! a job, destinations (add, remove) and `/v3/apps/:guid/routes`. Routes are HTTP routes on the
//! seeded or private domains; destinations point at an app's `web` process on port 8080.

use std::collections::HashMap;

use actix_web::{web, HttpRequest, HttpResponse};
use serde_json::{json, Value};

use crate::app::{resource, AppState};
use crate::auth::CurrentUser;
use crate::body;
use crate::db::models::{DestinationRow, DomainRow, RouteRow, SpaceRow};
use crate::db::DbConn;
use crate::error::ApiError;
use crate::permissions::Permissions;
use crate::query::{list_body, ListQuery};
use crate::store;
use crate::v3::apps::visible_app;
use crate::v3::present;

/// Port every destination gets (the port apps listen on, `$PORT`).
const APP_PORT: i32 = 8080;

/// Registers the route routes.
pub fn configure(config: &mut web::ServiceConfig) {
    config
        .service(
            resource("/v3/routes")
                .route(web::get().to(list))
                .route(web::post().to(create)),
        )
        .service(
            resource("/v3/routes/{guid}")
                .route(web::get().to(get))
                .route(web::delete().to(delete)),
        )
        .service(
            resource("/v3/routes/{guid}/destinations")
                .route(web::get().to(destinations))
                .route(web::post().to(add_destinations)),
        )
        .service(
            resource("/v3/routes/{guid}/destinations/{destination}")
                .route(web::delete().to(remove_destination)),
        )
        .service(resource("/v3/apps/{guid}/routes").route(web::get().to(list_for_app)));
}

/// Everything needed to filter and present routes, loaded once per request.
struct Index {
    domains: HashMap<i32, DomainRow>,
    /// Visible spaces with their org GUID.
    spaces: HashMap<i32, (SpaceRow, String)>,
    app_guids: HashMap<i32, String>,
    destinations: HashMap<i32, Vec<DestinationRow>>,
}

impl Index {
    fn load(conn: &mut DbConn, permissions: &Permissions) -> Result<Index, ApiError> {
        let orgs: HashMap<i32, String> = store::orgs::list(conn)?
            .into_iter()
            .map(|org| (org.id, org.guid))
            .collect();
        let spaces = store::spaces::list(conn)?
            .into_iter()
            .filter(|space| permissions.can_read_space(space.id, space.organization_id))
            .map(|space| {
                let org = orgs
                    .get(&space.organization_id)
                    .cloned()
                    .unwrap_or_default();
                (space.id, (space, org))
            })
            .collect();
        let domains = store::reference_data::list_domains(conn)?
            .into_iter()
            .map(|domain| (domain.id, domain))
            .collect();
        let app_guids = store::apps::list(conn)?
            .into_iter()
            .map(|app| (app.id, app.guid))
            .collect();
        let mut destinations: HashMap<i32, Vec<DestinationRow>> = HashMap::new();
        for destination in store::routes::list_destinations(conn)? {
            destinations
                .entry(destination.route_id)
                .or_default()
                .push(destination);
        }
        Ok(Index {
            domains,
            spaces,
            app_guids,
            destinations,
        })
    }

    fn visible(&self, route: &RouteRow) -> bool {
        self.spaces.contains_key(&route.space_id) && self.domains.contains_key(&route.domain_id)
    }

    fn destination_values(&self, route: &RouteRow) -> Vec<Value> {
        self.destinations
            .get(&route.id)
            .into_iter()
            .flatten()
            .filter_map(|destination| {
                let app_guid = self.app_guids.get(&destination.app_id)?;
                Some(present::destination(destination, app_guid))
            })
            .collect()
    }

    fn present(&self, base: &str, route: &RouteRow) -> Value {
        let space_guid = self
            .spaces
            .get(&route.space_id)
            .map_or("", |(space, _)| space.guid.as_str());
        match self.domains.get(&route.domain_id) {
            Some(domain) => present::route(
                base,
                route,
                domain,
                space_guid,
                self.destination_values(route),
            ),
            None => Value::Null,
        }
    }

    fn matches(&self, query: &ListQuery, route: &RouteRow) -> bool {
        let Some((space, org_guid)) = self.spaces.get(&route.space_id) else {
            return false;
        };
        let Some(domain) = self.domains.get(&route.domain_id) else {
            return false;
        };
        let app_matches = query.list("app_guids").is_none_or(|guids| {
            self.destinations
                .get(&route.id)
                .into_iter()
                .flatten()
                .filter_map(|destination| self.app_guids.get(&destination.app_id))
                .any(|guid| guids.contains(guid))
        });
        query.matches("guids", &route.guid)
            && query.matches("space_guids", &space.guid)
            && query.matches("organization_guids", org_guid)
            && query.matches("domain_guids", &domain.guid)
            && query.matches("hosts", &route.host)
            && query.matches("paths", &route.path)
            && query
                .list("ports")
                .is_none_or(|ports| ports.iter().all(String::is_empty))
            && app_matches
    }
}

const LIST_FILTERS: &[&str] = &[
    "guids",
    "space_guids",
    "organization_guids",
    "app_guids",
    "domain_guids",
    "hosts",
    "paths",
    "ports",
    "label_selector",
];

fn route_page(
    conn: &mut DbConn,
    permissions: &Permissions,
    query: &ListQuery,
    base: &str,
    path: &str,
    only: impl Fn(&Index, &RouteRow) -> bool,
) -> Result<Value, ApiError> {
    let index = Index::load(conn, permissions)?;
    let mut routes: Vec<RouteRow> = store::routes::list(conn)?
        .into_iter()
        .filter(|route| index.matches(query, route) && only(&index, route))
        .collect();
    query.sort(
        &mut routes,
        |route| &route.host,
        |route| &route.created_at,
        |route| &route.updated_at,
    );
    let (page, pagination) = query.page_of(routes, base, path);
    let resources = page
        .iter()
        .map(|route| index.present(base, route))
        .collect();
    Ok(list_body(pagination, resources, None))
}

async fn list(
    state: web::Data<AppState>,
    user: CurrentUser,
    request: HttpRequest,
) -> Result<HttpResponse, ApiError> {
    let query = ListQuery::parse(&request, LIST_FILTERS, &[])?;
    let base = state.external_url.clone();
    let body = state
        .db
        .run(move |conn| {
            let permissions = Permissions::load(conn, &user)?;
            route_page(conn, &permissions, &query, &base, "/v3/routes", |_, _| true)
        })
        .await?;
    Ok(HttpResponse::Ok().json(body))
}

async fn list_for_app(
    state: web::Data<AppState>,
    user: CurrentUser,
    path: web::Path<String>,
    request: HttpRequest,
) -> Result<HttpResponse, ApiError> {
    let query = ListQuery::parse(
        &request,
        &[
            "guids",
            "space_guids",
            "organization_guids",
            "domain_guids",
            "hosts",
            "paths",
            "ports",
            "label_selector",
        ],
        &[],
    )?;
    let guid = path.into_inner();
    let base = state.external_url.clone();
    let list_path = request.path().to_owned();
    let body = state
        .db
        .run(move |conn| {
            let permissions = Permissions::load(conn, &user)?;
            let (app, _space, _org) = visible_app(conn, &permissions, &guid)?;
            route_page(
                conn,
                &permissions,
                &query,
                &base,
                &list_path,
                |index, route| {
                    index
                        .destinations
                        .get(&route.id)
                        .into_iter()
                        .flatten()
                        .any(|destination| destination.app_id == app.id)
                },
            )
        })
        .await?;
    Ok(HttpResponse::Ok().json(body))
}

/// The route when the caller may see it; otherwise 404 "Route not found".
fn visible_route(
    conn: &mut DbConn,
    permissions: &Permissions,
    guid: &str,
) -> Result<(RouteRow, Index), ApiError> {
    let route = store::routes::find(conn, guid)?.ok_or_else(|| ApiError::not_found("Route"))?;
    let index = Index::load(conn, permissions)?;
    if !index.visible(&route) {
        return Err(ApiError::not_found("Route"));
    }
    Ok((route, index))
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
            let (route, index) = visible_route(conn, &permissions, &guid)?;
            Ok(index.present(&base, &route))
        })
        .await?;
    Ok(HttpResponse::Ok().json(body))
}

/// CC's host rule: `*`, or letters, digits, `_` and `-`, at most 63 characters.
fn check_host(host: &str) -> Result<(), ApiError> {
    if host.chars().count() > 63 {
        return Err(ApiError::unprocessable(
            "Host is too long (maximum is 63 characters)",
        ));
    }
    if host != "*"
        && !host.chars().all(|character| {
            character.is_ascii_alphanumeric() || character == '_' || character == '-'
        })
    {
        return Err(ApiError::unprocessable(
            "Host must be either \"*\" or contain only alphanumeric characters, \"_\", or \"-\"",
        ));
    }
    Ok(())
}

/// CC's path rules.
fn check_path(path: &str) -> Result<(), ApiError> {
    if path.is_empty() {
        return Ok(());
    }
    if !path.starts_with('/') {
        return Err(ApiError::unprocessable("Path must begin with /"));
    }
    if path == "/" {
        return Err(ApiError::unprocessable("Path cannot be exactly /"));
    }
    if path.contains('?') {
        return Err(ApiError::unprocessable("Path cannot contain ?"));
    }
    if path.chars().count() > 128 {
        return Err(ApiError::unprocessable(
            "Path is too long (maximum is 128 characters)",
        ));
    }
    Ok(())
}

async fn create(
    state: web::Data<AppState>,
    user: CurrentUser,
    payload: web::Json<Value>,
) -> Result<HttpResponse, ApiError> {
    let object = body::object(
        &payload,
        &["host", "path", "port", "relationships", "options"],
    )?;
    let host = body::optional_string(object, "host")?.unwrap_or_default();
    let path = body::optional_string(object, "path")?.unwrap_or_default();
    check_host(&host)?;
    check_path(&path)?;
    if !object.get("port").is_none_or(Value::is_null) {
        return Err(ApiError::unprocessable(
            "Routes with protocol 'http' do not support ports",
        ));
    }
    if let Some(options) = object.get("options") {
        if !options
            .as_object()
            .is_some_and(|options| options.is_empty())
            && !options.is_null()
        {
            return Err(ApiError::unprocessable(
                "Route options are not supported yet",
            ));
        }
    }
    let missing = || {
        ApiError::unprocessable(
            "Relationships 'relationships' must include one or more valid relationships",
        )
    };
    let space_guid = body::relationship_guid(object, "space")?.ok_or_else(missing)?;
    let domain_guid = body::relationship_guid(object, "domain")?.ok_or_else(missing)?;
    let base = state.external_url.clone();
    let body = state
        .db
        .run(move |conn| {
            let permissions = Permissions::load(conn, &user)?;
            let space = store::spaces::find(conn, &space_guid)?
                .filter(|space| permissions.can_read_space(space.id, space.organization_id))
                .ok_or_else(|| {
                    ApiError::unprocessable(
                        "Invalid space. Ensure that the space exists and you have access to it.",
                    )
                })?;
            let domain = store::reference_data::find_domain(conn, &domain_guid)?
                .filter(|domain| {
                    domain
                        .owning_organization_id
                        .is_none_or(|org| permissions.can_read_org(org))
                })
                .ok_or_else(|| {
                    ApiError::unprocessable(
                        "Invalid domain. Ensure that the domain exists and you have access to it.",
                    )
                })?;
            if !permissions.can_write_to_space(space.id) {
                return Err(ApiError::forbidden());
            }
            if domain
                .owning_organization_id
                .is_some_and(|org| org != space.organization_id)
            {
                let org = store::orgs::find_by_id(conn, space.organization_id)?
                    .map(|org| org.name)
                    .unwrap_or_default();
                return Err(ApiError::unprocessable(format!(
                    "Invalid domain. Domain '{}' is not available in organization '{org}'.",
                    domain.name
                )));
            }
            if domain.owning_organization_id.is_none() && host.is_empty() {
                return Err(ApiError::unprocessable(
                    "Missing host. Routes in shared domains must have a host defined.",
                ));
            }
            let taken = || {
                let mut message = format!("Route already exists with host '{host}'");
                if !path.is_empty() {
                    message.push_str(&format!(" and path '{path}'"));
                }
                message.push_str(&format!(" for domain '{}'.", domain.name));
                ApiError::unprocessable(message)
            };
            let route = store::routes::create(conn, &host, &path, domain.id, space.id, taken)?;
            let index = Index::load(conn, &permissions)?;
            Ok(index.present(&base, &route))
        })
        .await?;
    Ok(HttpResponse::Created().json(body))
}

async fn delete(
    state: web::Data<AppState>,
    user: CurrentUser,
    path: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let guid = path.into_inner();
    let job_guid = state
        .db
        .run(move |conn| {
            let permissions = Permissions::load(conn, &user)?;
            let (route, _index) = visible_route(conn, &permissions, &guid)?;
            if !permissions.can_write_to_space(route.space_id) {
                return Err(ApiError::forbidden());
            }
            store::jobs::run_now(conn, "route.delete", "route", &route.guid, |conn| {
                store::routes::delete_cascade(conn, route.id)
            })
        })
        .await?;
    Ok(crate::v3::accepted_job(&state.external_url, &job_guid))
}

fn destinations_body(base: &str, route: &RouteRow, index: &Index) -> Value {
    json!({
        "destinations": index.destination_values(route),
        "links": {
            "self": {"href": format!("{base}/v3/routes/{}/destinations", route.guid)},
            "route": {"href": format!("{base}/v3/routes/{}", route.guid)},
        },
    })
}

async fn destinations(
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
            let (route, index) = visible_route(conn, &permissions, &guid)?;
            Ok(destinations_body(&base, &route, &index))
        })
        .await?;
    Ok(HttpResponse::Ok().json(body))
}

/// One requested destination: app GUID, process type, port, protocol.
fn parse_destination(value: &Value) -> Result<(String, String, i32, String), ApiError> {
    let invalid = |why: &str| ApiError::unprocessable(format!("Destinations {why}"));
    let object = value
        .as_object()
        .ok_or_else(|| invalid("must be objects"))?;
    if let Some(unknown) = object
        .keys()
        .find(|key| !["app", "port", "protocol", "weight"].contains(&key.as_str()))
    {
        return Err(invalid(&format!("have an unknown field: '{unknown}'")));
    }
    let app = object
        .get("app")
        .and_then(Value::as_object)
        .ok_or_else(|| invalid("must have an app"))?;
    let app_guid = app
        .get("guid")
        .and_then(Value::as_str)
        .ok_or_else(|| invalid("app guid must be a string"))?;
    let process_type = match app.get("process").and_then(|process| process.get("type")) {
        None | Some(Value::Null) => "web",
        Some(Value::String(kind)) if !kind.is_empty() => kind.as_str(),
        Some(_) => return Err(invalid("process type must be a non-empty string")),
    };
    let port = match object.get("port") {
        None | Some(Value::Null) => APP_PORT,
        Some(value) => value
            .as_i64()
            .and_then(|port| i32::try_from(port).ok())
            .filter(|port| (1024..=65535).contains(port))
            .ok_or_else(|| invalid("port must be an integer between 1024 and 65535"))?,
    };
    let protocol = match object.get("protocol") {
        None | Some(Value::Null) => "http1",
        Some(Value::String(protocol)) if protocol == "http1" || protocol == "http2" => {
            protocol.as_str()
        }
        Some(_) => return Err(invalid("protocol must be 'http1' or 'http2'")),
    };
    if object.get("weight").is_some_and(|weight| !weight.is_null()) {
        return Err(invalid("weight is not supported"));
    }
    Ok((
        app_guid.to_owned(),
        process_type.to_owned(),
        port,
        protocol.to_owned(),
    ))
}

async fn add_destinations(
    state: web::Data<AppState>,
    user: CurrentUser,
    path: web::Path<String>,
    payload: web::Json<Value>,
) -> Result<HttpResponse, ApiError> {
    let object = body::object(&payload, &["destinations"])?;
    let requested = object
        .get("destinations")
        .and_then(Value::as_array)
        .ok_or_else(|| ApiError::unprocessable("Destinations must be an array"))?
        .iter()
        .map(parse_destination)
        .collect::<Result<Vec<_>, _>>()?;
    let guid = path.into_inner();
    let base = state.external_url.clone();
    let body = state
        .db
        .run(move |conn| {
            let permissions = Permissions::load(conn, &user)?;
            let (route, _index) = visible_route(conn, &permissions, &guid)?;
            if !permissions.can_write_to_space(route.space_id) {
                return Err(ApiError::forbidden());
            }
            conn.write_transaction(|conn| {
                for (app_guid, process_type, port, protocol) in &requested {
                    let app = store::apps::find(conn, app_guid)?
                        .filter(|app| {
                            store::spaces::find_by_id(conn, app.space_id)
                                .ok()
                                .flatten()
                                .is_some_and(|space| {
                                    permissions.can_read_space(space.id, space.organization_id)
                                })
                        })
                        .ok_or_else(|| {
                            ApiError::unprocessable(format!(
                                "App(s) with guid(s) \"{app_guid}\" do not exist or you do not have access."
                            ))
                        })?;
                    if app.space_id != route.space_id {
                        return Err(ApiError::unprocessable(
                            "The app cannot be mapped to this route because the route is not in this space. Apps must be mapped to routes in the same space.",
                        ));
                    }
                    store::routes::add_destination(
                        conn,
                        route.id,
                        app.id,
                        process_type,
                        *port,
                        protocol,
                    )?;
                }
                Ok(())
            })?;
            let index = Index::load(conn, &permissions)?;
            let app_ids: Vec<i32> = store::routes::destinations_of(conn, route.id)?
                .into_iter()
                .map(|destination| destination.app_id)
                .collect();
            Ok((destinations_body(&base, &route, &index), app_ids))
        })
        .await?;
    let (body, mut app_ids) = body;
    app_ids.sort_unstable();
    app_ids.dedup();
    crate::v3::running::routes_changed(&state, app_ids).await;
    Ok(HttpResponse::Ok().json(body))
}

async fn remove_destination(
    state: web::Data<AppState>,
    user: CurrentUser,
    path: web::Path<(String, String)>,
) -> Result<HttpResponse, ApiError> {
    let (guid, destination) = path.into_inner();
    let app_ids = state
        .db
        .run(move |conn| {
            let permissions = Permissions::load(conn, &user)?;
            let (route, _index) = visible_route(conn, &permissions, &guid)?;
            if !permissions.can_write_to_space(route.space_id) {
                return Err(ApiError::forbidden());
            }
            let app_ids: Vec<i32> = store::routes::destinations_of(conn, route.id)?
                .into_iter()
                .filter(|row| row.guid == destination)
                .map(|row| row.app_id)
                .collect();
            if !store::routes::remove_destination(conn, route.id, &destination)? {
                return Err(ApiError::unprocessable(
                    "Unable to unmap route from destination. Ensure the route has a destination with this guid.",
                ));
            }
            Ok(app_ids)
        })
        .await?;
    crate::v3::running::routes_changed(&state, app_ids).await;
    Ok(HttpResponse::NoContent().finish())
}
