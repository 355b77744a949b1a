//! Read-only `/v2/apps` (list with CC's `q` attributes, get), `/v2/spaces/:g/apps` and
//! `/v2/spaces/:g/summary`, as views of the v3 data: a v2 app is the app's `web` process, its
//! `package_state` comes from its newest package, newest build and current droplet (CC's
//! `PackageStateCalculator`), and `environment_json` is redacted for callers who may not read
//! the space's secrets, as v3 decides for `/v3/apps/:g/env`.

use std::collections::HashMap;

use actix_web::{web, HttpRequest, HttpResponse};
use serde_json::{json, Map, Value};

use crate::app::{resource, AppState};
use crate::auth::CurrentUser;
use crate::db::models::{AppRow, BuildRow, DropletRow, PackageRow, ProcessRow, SpaceRow, StackRow};
use crate::db::DbConn;
use crate::error::{ApiError, ErrorKind};
use crate::permissions::Permissions;
use crate::staging::Stager;
use crate::store;
use crate::store::apps::process_defaults;
use crate::v2::V2Query;

/// Registers the v2 app routes.
pub fn configure(config: &mut web::ServiceConfig) {
    config
        .service(resource("/v2/apps").route(web::get().to(list)))
        .service(resource("/v2/apps/{guid}").route(web::get().to(get)))
        .service(resource("/v2/spaces/{guid}/apps").route(web::get().to(list_in_space)))
        .service(resource("/v2/spaces/{guid}/summary").route(web::get().to(space_summary)));
}

/// CC's `AppsController.query_parameters`.
const QUERY_PARAMETERS: &[&str] = &[
    "name",
    "space_guid",
    "organization_guid",
    "diego",
    "stack_guid",
];

/// `order-by` keys accepted on app lists.
const SORTABLE: &[&str] = &["id", "name"];

/// The port CC reports for a web process without explicit ports.
const DEFAULT_WEB_PORT: i32 = 8080;

fn app_not_found(guid: &str) -> ApiError {
    ApiError::with_args(ErrorKind::AppNotFound, &[guid])
}

fn space_not_found(guid: &str) -> ApiError {
    ApiError::with_args(ErrorKind::SpaceNotFound, &[guid])
}

/// Every row a v2 app rendering needs, loaded once per request.
struct AppIndex {
    /// Space and its org GUID, by space id.
    spaces: HashMap<i32, (SpaceRow, String)>,
    /// Stacks by name.
    stacks: HashMap<String, StackRow>,
    /// Admin buildpack GUIDs by name.
    buildpack_guids: HashMap<String, String>,
    /// The `web` process of each app, by app id.
    web_processes: HashMap<i32, ProcessRow>,
    /// The newest package of each app, by app id.
    newest_packages: HashMap<i32, PackageRow>,
    /// The newest build of each app, by app id.
    newest_builds: HashMap<i32, BuildRow>,
    /// Droplets by GUID.
    droplets: HashMap<String, DropletRow>,
    /// Process GUID → the version GUID the DEAs run.
    versions: HashMap<String, String>,
}

/// The newest build of every app.
fn newest_builds(conn: &mut DbConn) -> Result<HashMap<i32, BuildRow>, ApiError> {
    Ok(store::builds::list_builds(conn)?
        .into_iter()
        .map(|build| (build.app_id, build))
        .collect())
}

impl AppIndex {
    fn load(conn: &mut DbConn, stager: &Stager) -> Result<AppIndex, ApiError> {
        let org_guids: HashMap<i32, String> = store::orgs::list(conn)?
            .into_iter()
            .map(|org| (org.id, org.guid))
            .collect();
        let spaces = store::spaces::list(conn)?
            .into_iter()
            .map(|space| {
                let org_guid = org_guids
                    .get(&space.organization_id)
                    .cloned()
                    .unwrap_or_default();
                (space.id, (space, org_guid))
            })
            .collect();
        let stacks = store::reference_data::list_stacks(conn)?
            .into_iter()
            .map(|stack| (stack.name.clone(), stack))
            .collect();
        let buildpack_guids = store::buildpacks::list(conn)?
            .into_iter()
            .map(|buildpack| (buildpack.name, buildpack.guid))
            .collect();
        let web_processes = store::apps::list_processes(conn)?
            .into_iter()
            .filter(|process| process.process_type == "web")
            .map(|process| (process.app_id, process))
            .collect();
        // Packages come in creation order, so the last one of an app wins.
        let newest_packages = store::packages::list(conn)?
            .into_iter()
            .map(|package| (package.app_id, package))
            .collect();
        let droplets = store::builds::list_droplets(conn)?
            .into_iter()
            .map(|droplet| (droplet.guid.clone(), droplet))
            .collect();
        let versions = stager
            .run_state()
            .versions
            .lock()
            .unwrap_or_else(|error| error.into_inner())
            .clone();
        Ok(AppIndex {
            spaces,
            stacks,
            buildpack_guids,
            web_processes,
            newest_packages,
            newest_builds: newest_builds(conn)?,
            droplets,
            versions,
        })
    }

    fn current_droplet(&self, app: &AppRow) -> Option<&DropletRow> {
        app.droplet_guid
            .as_ref()
            .and_then(|guid| self.droplets.get(guid))
    }

    /// CC's `PackageStateCalculator`: FAILED when the newest package or the newest build
    /// failed, STAGED when the current droplet was staged from the newest package (or there is
    /// no package, as for an uploaded droplet), PENDING otherwise.
    fn package_state(&self, app: &AppRow) -> &'static str {
        let package = self.newest_packages.get(&app.id);
        let build = self.newest_builds.get(&app.id);
        if package.is_some_and(|package| package.state == "FAILED") {
            return "FAILED";
        }
        let build_of_newest_package =
            build.filter(|build| package.is_none_or(|package| build.package_id == package.id));
        if build_of_newest_package.is_some_and(|build| build.state == store::builds::FAILED) {
            return "FAILED";
        }
        let Some(droplet) = self.current_droplet(app) else {
            return "PENDING";
        };
        let staged_from_newest = match (package, droplet.package_id) {
            (None, _) | (Some(_), None) => true,
            (Some(package), Some(package_id)) => package.id == package_id,
        };
        let build_done =
            build_of_newest_package.is_none_or(|build| build.state != store::builds::STAGING);
        if droplet.state == store::builds::STAGED && staged_from_newest && build_done {
            "STAGED"
        } else {
            "PENDING"
        }
    }

    /// The reason and description of a failed staging (`"StagingError - Staging error: …"`
    /// splits into `StagingError` and the rest).
    fn staging_failure(&self, app: &AppRow) -> (Value, Value) {
        let error = self
            .newest_builds
            .get(&app.id)
            .filter(|build| build.state == store::builds::FAILED)
            .and_then(|build| build.error.clone());
        match error {
            None => (Value::Null, Value::Null),
            Some(error) => match error.split_once(" - ") {
                Some((reason, description)) => (json!(reason), json!(description)),
                None => (json!("StagingError"), json!(error)),
            },
        }
    }

    /// The v2 app entity with its links; `show_environment` as v3 decides for the caller.
    fn entity(&self, app: &AppRow, show_environment: bool) -> Value {
        let url = format!("/v2/apps/{}", app.guid);
        let (space_guid, allow_ssh) = self
            .spaces
            .get(&app.space_id)
            .map_or(("", true), |(space, _)| {
                (space.guid.as_str(), space.allow_ssh)
            });
        let stack_guid = app
            .stack
            .as_ref()
            .and_then(|name| self.stacks.get(name))
            .map(|stack| stack.guid.clone());
        let buildpacks: Vec<String> = serde_json::from_str(&app.buildpacks).unwrap_or_default();
        let droplet = self.current_droplet(app);
        let detected = droplet.and_then(|droplet| {
            let entries: Vec<Value> = serde_json::from_str(&droplet.buildpacks).unwrap_or_default();
            let first = entries.into_iter().next()?;
            let name = first["buildpack_name"]
                .as_str()
                .or_else(|| first["name"].as_str())
                .map(str::to_owned);
            let detect_output = first["detect_output"]
                .as_str()
                .filter(|output| !output.is_empty())
                .map(str::to_owned);
            Some((detect_output.or(name.clone()), name))
        });
        let detected_buildpack_guid = detected
            .as_ref()
            .and_then(|(_, name)| name.as_ref())
            .and_then(|name| self.buildpack_guids.get(name))
            .cloned();
        let detected_start_command = droplet.and_then(detected_command).unwrap_or_default();
        let process = self.web_processes.get(&app.id);
        let environment: Value = if show_environment {
            Value::Object(
                serde_json::from_str::<Map<String, Value>>(&app.environment_variables)
                    .unwrap_or_default(),
            )
        } else {
            json!({"redacted_message": "[PRIVATE DATA HIDDEN]"})
        };
        let (failure_reason, failure_description) = self.staging_failure(app);
        let package = self.newest_packages.get(&app.id);
        let version = process
            .and_then(|process| self.versions.get(&process.guid).cloned())
            .or_else(|| process.map(|process| process.guid.clone()));
        let (memory, instances, disk_quota) = process.map_or(
            (
                process_defaults::MEMORY_IN_MB,
                process_defaults::WEB_INSTANCES,
                process_defaults::DISK_IN_MB,
            ),
            |process| (process.memory_in_mb, process.instances, process.disk_in_mb),
        );
        // CC presents an empty command as null ("use the detected one").
        let command = process
            .and_then(|process| process.command.clone())
            .filter(|command| !command.is_empty());
        let health_check_type =
            process.map_or("port", |process| process.health_check_type.as_str());
        let health_check_http_endpoint = process
            .and_then(|process| process.health_check_endpoint.clone())
            .unwrap_or_default();
        json!({
            "name": app.name,
            "production": false,
            "space_guid": space_guid,
            "stack_guid": stack_guid,
            "buildpack": buildpacks.first(),
            "detected_buildpack": detected.as_ref().and_then(|(detected, _)| detected.clone()),
            "detected_buildpack_guid": detected_buildpack_guid,
            "environment_json": environment,
            "memory": memory,
            "instances": instances,
            "disk_quota": disk_quota,
            "state": app.state,
            "version": version,
            "command": command,
            "console": false,
            "debug": null,
            "staging_task_id": self.newest_builds.get(&app.id).map(|build| build.guid.clone()),
            "package_state": self.package_state(app),
            "health_check_type": health_check_type,
            "health_check_timeout": process.and_then(|process| process.health_check_timeout),
            "health_check_http_endpoint": health_check_http_endpoint,
            "staging_failed_reason": failure_reason,
            "staging_failed_description": failure_description,
            "diego": true,
            "docker_image": null,
            "docker_credentials": {"username": null, "password": null},
            "package_updated_at": package.map(|package| package.created_at.clone()),
            "detected_start_command": detected_start_command,
            // Kiln keeps no per-app SSH flag; the space's `allow_ssh` is what decides.
            "enable_ssh": allow_ssh,
            "ports": [DEFAULT_WEB_PORT],
            "space_url": format!("/v2/spaces/{space_guid}"),
            "stack_url": format!("/v2/stacks/{}", stack_guid.clone().unwrap_or_default()),
            "routes_url": format!("{url}/routes"),
            "events_url": format!("{url}/events"),
            "service_bindings_url": format!("{url}/service_bindings"),
            "route_mappings_url": format!("{url}/route_mappings"),
        })
    }

    fn render(&self, app: &AppRow, permissions: &Permissions) -> Value {
        let url = format!("/v2/apps/{}", app.guid);
        let show_environment = permissions.can_read_secrets_in_space(app.space_id);
        // CC reports the app's own timestamps on the web process it presents.
        super::resource(
            &app.guid,
            &url,
            &app.created_at,
            &app.updated_at,
            self.entity(app, show_environment),
        )
    }

    /// Whether the app passes every `q` condition of an app listing.
    fn accepted(&self, app: &AppRow, query: &V2Query) -> bool {
        let (space_guid, org_guid) = self
            .spaces
            .get(&app.space_id)
            .map_or(("", ""), |(space, org_guid)| {
                (space.guid.as_str(), org_guid.as_str())
            });
        let stack_guid = app
            .stack
            .as_ref()
            .and_then(|name| self.stacks.get(name))
            .map_or("", |stack| stack.guid.as_str());
        // Every Kiln app runs on the (only) backend, which v2 calls Diego.
        let diego = query.conditions.iter().all(|condition| {
            condition.attribute != "diego"
                || condition
                    .values
                    .iter()
                    .any(|value| value == "true" || value == "t")
        });
        query.accepts_name("name", &app.name)
            && query.accepts("space_guid", space_guid)
            && query.accepts("organization_guid", org_guid)
            && query.accepts("stack_guid", stack_guid)
            && diego
    }
}

/// The start command the droplet detected for `web`, as v3 starts it.
fn detected_command(droplet: &DropletRow) -> Option<String> {
    let types: HashMap<String, String> =
        serde_json::from_str(&droplet.process_types).unwrap_or_default();
    types
        .get("web")
        .cloned()
        .or_else(|| {
            serde_json::from_str::<Value>(&droplet.execution_metadata)
                .ok()
                .and_then(|metadata| metadata["start_command"].as_str().map(str::to_owned))
        })
        .filter(|command| !command.is_empty())
}

/// The apps the caller may see (admins and global readers all; others those of spaces where
/// they hold a role, or of orgs they manage), in creation order.
fn visible_apps(
    conn: &mut DbConn,
    permissions: &Permissions,
    index: &AppIndex,
) -> Result<Vec<AppRow>, ApiError> {
    Ok(store::apps::list(conn)?
        .into_iter()
        .filter(|app| {
            index.spaces.get(&app.space_id).is_some_and(|(space, _)| {
                permissions.can_read_space(space.id, space.organization_id)
            })
        })
        .collect())
}

async fn list(
    state: web::Data<AppState>,
    user: CurrentUser,
    request: HttpRequest,
) -> Result<HttpResponse, ApiError> {
    let query = V2Query::parse(&request, QUERY_PARAMETERS, SORTABLE)?;
    let stager = state.stager.clone();
    let body = state
        .db
        .run(move |conn| {
            let permissions = Permissions::load(conn, &user)?;
            let index = AppIndex::load(conn, &stager)?;
            let apps: Vec<AppRow> = visible_apps(conn, &permissions, &index)?
                .into_iter()
                .filter(|app| index.accepted(app, &query))
                .collect();
            Ok(query.envelope(
                apps,
                "/v2/apps",
                |app| &app.name,
                |app| index.render(app, &permissions),
            ))
        })
        .await?;
    Ok(HttpResponse::Ok().json(body))
}

async fn get(
    state: web::Data<AppState>,
    user: CurrentUser,
    path: web::Path<String>,
    request: HttpRequest,
) -> Result<HttpResponse, ApiError> {
    super::check_resource_query(&request)?;
    let guid = path.into_inner();
    let stager = state.stager.clone();
    let body = state
        .db
        .run(move |conn| {
            let permissions = Permissions::load(conn, &user)?;
            let (app, _space, _org) = crate::v3::apps::visible_app(conn, &permissions, &guid)
                .map_err(|_| app_not_found(&guid))?;
            let index = AppIndex::load(conn, &stager)?;
            Ok(index.render(&app, &permissions))
        })
        .await?;
    Ok(HttpResponse::Ok().json(body))
}

async fn list_in_space(
    state: web::Data<AppState>,
    user: CurrentUser,
    path: web::Path<String>,
    request: HttpRequest,
) -> Result<HttpResponse, ApiError> {
    let query = V2Query::parse(&request, QUERY_PARAMETERS, SORTABLE)?;
    let guid = path.into_inner();
    let stager = state.stager.clone();
    let body = state
        .db
        .run(move |conn| {
            let permissions = Permissions::load(conn, &user)?;
            let (space, _org) = crate::v3::spaces::visible_space(conn, &permissions, &guid)
                .map_err(|_| space_not_found(&guid))?;
            let index = AppIndex::load(conn, &stager)?;
            let apps: Vec<AppRow> = store::apps::list_in_space(conn, space.id)?
                .into_iter()
                .filter(|app| index.accepted(app, &query))
                .collect();
            Ok(query.envelope(
                apps,
                &format!("/v2/spaces/{}/apps", space.guid),
                |app| &app.name,
                |app| index.render(app, &permissions),
            ))
        })
        .await?;
    Ok(HttpResponse::Ok().json(body))
}

/// One route of an app, as the summaries show it.
struct SummaryRoute {
    guid: String,
    host: String,
    path: String,
    domain_guid: String,
    domain_name: String,
}

/// How many of the app's desired instances a DEA reports starting or running.
fn running_instances(stager: &Stager, app: &AppRow, desired: i32) -> i64 {
    if app.state != "STARTED" {
        return 0;
    }
    let mut indexes: Vec<u32> = stager
        .run_state()
        .actual
        .instances_of(&app.guid)
        .into_iter()
        .filter(|(_, instance)| instance.is_alive())
        .map(|(_, instance)| instance.index)
        .filter(|index| i64::from(*index) < i64::from(desired))
        .collect();
    indexes.sort_unstable();
    indexes.dedup();
    i64::try_from(indexes.len()).unwrap_or(i64::MAX)
}

/// `GET /v2/spaces/:g/summary`: the space's apps (flat v2 entities plus routes, bound service
/// names and running instances) and its service instances, as legacy `cf apps` and the v2
/// `cf services` read them.
async fn space_summary(
    state: web::Data<AppState>,
    user: CurrentUser,
    path: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let guid = path.into_inner();
    let stager = state.stager.clone();
    let body = state
        .db
        .run(move |conn| {
            let permissions = Permissions::load(conn, &user)?;
            let (space, _org) = crate::v3::spaces::visible_space(conn, &permissions, &guid)
                .map_err(|_| space_not_found(&guid))?;
            let index = AppIndex::load(conn, &stager)?;
            let apps: Vec<AppRow> = store::apps::list_in_space(conn, space.id)?;
            let domains: HashMap<i32, (String, String)> =
                store::reference_data::list_domains(conn)?
                    .into_iter()
                    .map(|domain| (domain.id, (domain.guid, domain.name)))
                    .collect();
            let routes: HashMap<i32, SummaryRoute> = store::routes::list(conn)?
                .into_iter()
                .filter_map(|route| {
                    let (domain_guid, domain_name) = domains.get(&route.domain_id)?.clone();
                    Some((
                        route.id,
                        SummaryRoute {
                            guid: route.guid,
                            host: route.host,
                            path: route.path,
                            domain_guid,
                            domain_name,
                        },
                    ))
                })
                .collect();
            let mut routes_of_app: HashMap<i32, Vec<i32>> = HashMap::new();
            for destination in store::routes::list_destinations(conn)? {
                let route_ids = routes_of_app.entry(destination.app_id).or_default();
                if !route_ids.contains(&destination.route_id) {
                    route_ids.push(destination.route_id);
                }
            }
            let instances: Vec<_> = store::services::list_instances(conn)?
                .into_iter()
                .filter(|instance| instance.space_id == space.id)
                .collect();
            let instance_names: HashMap<i32, String> = instances
                .iter()
                .map(|instance| (instance.id, instance.name.clone()))
                .collect();
            let app_bindings: Vec<(i32, i32)> = store::services::list_bindings(conn)?
                .into_iter()
                .filter(|binding| binding.binding_type == "app")
                .filter_map(|binding| Some((binding.app_id?, binding.service_instance_id)))
                .collect();
            let show_environment = permissions.can_read_secrets_in_space(space.id);
            let rendered_apps: Vec<Value> = apps
                .iter()
                .map(|app| {
                    let mut entity = index.entity(app, show_environment);
                    if let Value::Object(fields) = &mut entity {
                        fields.retain(|key, _| !key.ends_with("_url"));
                    }
                    let summary_routes: Vec<&SummaryRoute> = routes_of_app
                        .get(&app.id)
                        .into_iter()
                        .flatten()
                        .filter_map(|route_id| routes.get(route_id))
                        .collect();
                    let service_names: Vec<&str> = app_bindings
                        .iter()
                        .filter(|(app_id, _)| *app_id == app.id)
                        .filter_map(|(_, instance_id)| instance_names.get(instance_id))
                        .map(String::as_str)
                        .collect();
                    let desired = index
                        .web_processes
                        .get(&app.id)
                        .map_or(0, |process| process.instances);
                    entity["guid"] = json!(app.guid);
                    entity["urls"] = json!(summary_routes
                        .iter()
                        .map(|route| crate::v3::present::route_url(
                            &route.host,
                            &route.domain_name,
                            &route.path
                        ))
                        .collect::<Vec<_>>());
                    entity["routes"] = json!(summary_routes
                        .iter()
                        .map(|route| json!({
                            "guid": route.guid,
                            "host": route.host,
                            "port": null,
                            "path": route.path,
                            "domain": {"guid": route.domain_guid, "name": route.domain_name},
                        }))
                        .collect::<Vec<_>>());
                    entity["service_count"] = json!(service_names.len());
                    entity["service_names"] = json!(service_names);
                    entity["running_instances"] = json!(running_instances(&stager, app, desired));
                    entity
                })
                .collect();
            let bound_app_count = |instance_id: i32| {
                app_bindings
                    .iter()
                    .filter(|(_, bound)| *bound == instance_id)
                    .count()
            };
            let services = super::services::summary_instances(conn, &instances, bound_app_count)?;
            Ok(json!({
                "guid": space.guid,
                "name": space.name,
                "apps": rendered_apps,
                "services": services,
            }))
        })
        .await?;
    Ok(HttpResponse::Ok().json(body))
}
