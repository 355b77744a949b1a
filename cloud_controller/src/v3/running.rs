//! Running apps on DEAs: `actions/start|stop|restart`, instance restarts
//! (`DELETE /v3/apps/:guid/processes/:type/instances/:index`), and the NATS side used by scaling,
//! process stats and route changes. Instances are started with `dea.<id>.start` on DEAs picked
//! by CC's placement rule, stopped with `dea.stop`, found with `dea.find.droplet`.

use std::collections::BTreeMap;
use std::time::Duration;

use actix_web::{web, HttpResponse};
use diesel::prelude::*;
use futures_util::StreamExt;
use protocol::dea::{
    DeaStop, DeaUpdate, FindDroplet, FindDropletResponse, InstanceState, Limits, StartMessage,
};
use serde_json::{json, Map, Value};

use crate::app::{resource, AppState};
use crate::auth::CurrentUser;
use crate::db::models::{AppRow, DropletRow, OrgRow, ProcessRow, SpaceRow};
use crate::db::DbConn;
use crate::error::ApiError;
use crate::permissions::Permissions;
use crate::staging::Stager;
use crate::store;
use crate::v3::apps::visible_app;
use crate::v3::present;

/// App state of a started app.
pub const STARTED: &str = "STARTED";
/// How long `dea.find.droplet` replies are collected.
pub const FIND_WINDOW: Duration = Duration::from_millis(300);

/// Registers the start/stop/restart actions and instance restarts.
pub fn configure(config: &mut web::ServiceConfig) {
    config
        .service(resource("/v3/apps/{guid}/actions/start").route(web::post().to(start)))
        .service(resource("/v3/apps/{guid}/actions/stop").route(web::post().to(stop)))
        .service(resource("/v3/apps/{guid}/actions/restart").route(web::post().to(restart)))
        .service(
            resource("/v3/apps/{guid}/processes/{type}/instances/{index}")
                .route(web::delete().to(restart_instance)),
        );
}

/// Everything a start message needs, read in one go.
#[derive(Debug, Clone)]
pub struct AppPlan {
    /// The app.
    pub app: AppRow,
    /// Its space.
    pub space: SpaceRow,
    /// Its org.
    pub org: OrgRow,
    /// Its current droplet.
    pub droplet: Option<DropletRow>,
    /// Its processes.
    pub processes: Vec<ProcessRow>,
    /// `host.domain[/path]` of the routes mapped to the app.
    pub uris: Vec<String>,
    /// `VCAP_SERVICES` of the app (its service bindings).
    pub services: Value,
}

/// The `host.domain[/path]` of every route mapped to the app.
pub fn app_uris(conn: &mut DbConn, app_id: i32) -> Result<Vec<String>, ApiError> {
    use crate::db::schema::{domains, route_destinations, routes};
    let rows: Vec<(String, String, String)> = route_destinations::table
        .inner_join(routes::table)
        .inner_join(domains::table.on(domains::id.eq(routes::domain_id)))
        .filter(route_destinations::app_id.eq(app_id))
        .order(routes::id.asc())
        .select((routes::host, routes::path, domains::name))
        .load(conn)?;
    let mut uris: Vec<String> = rows
        .into_iter()
        .map(|(host, path, domain)| {
            let base = if host.is_empty() {
                domain
            } else {
                format!("{host}.{domain}")
            };
            format!("{base}{path}")
        })
        .collect();
    uris.dedup();
    Ok(uris)
}

/// Reads the plan of an app.
pub fn load_plan(conn: &mut DbConn, app: AppRow) -> Result<AppPlan, ApiError> {
    let space =
        store::spaces::find_by_id(conn, app.space_id)?.ok_or_else(|| ApiError::not_found("App"))?;
    let org = store::orgs::find_by_id(conn, space.organization_id)?
        .ok_or_else(|| ApiError::not_found("App"))?;
    let droplet = match &app.droplet_guid {
        Some(guid) => store::builds::find_droplet(conn, guid)?,
        None => None,
    };
    let processes = store::apps::processes_of(conn, app.id)?;
    let uris = app_uris(conn, app.id)?;
    let services = store::services::vcap_services(conn, &app.guid)?;
    Ok(AppPlan {
        app,
        space,
        org,
        droplet,
        processes,
        uris,
        services,
    })
}

fn set_state(conn: &mut DbConn, app_id: i32, state: &str) -> Result<AppRow, ApiError> {
    use crate::db::schema::apps;
    diesel::update(apps::table.find(app_id))
        .set((apps::state.eq(state), apps::updated_at.eq(store::now())))
        .execute(conn)?;
    store::apps::find_by_id(conn, app_id)?.ok_or_else(|| ApiError::not_found("App"))
}

fn env_of(app: &AppRow) -> Vec<String> {
    let variables: Map<String, Value> =
        serde_json::from_str(&app.environment_variables).unwrap_or_default();
    variables
        .into_iter()
        .map(|(key, value)| match value {
            Value::String(text) => format!("{key}={text}"),
            other => format!("{key}={other}"),
        })
        .collect()
}

fn detected_command(droplet: &DropletRow, process_type: &str) -> Option<String> {
    let types: BTreeMap<String, String> =
        serde_json::from_str(&droplet.process_types).unwrap_or_default();
    types
        .get(process_type)
        .cloned()
        .or_else(|| {
            serde_json::from_str::<Value>(&droplet.execution_metadata)
                .ok()
                .and_then(|meta| meta["start_command"].as_str().map(str::to_owned))
        })
        .filter(|command| !command.is_empty())
}

/// The start message of one instance.
pub fn start_message(
    stager: &Stager,
    plan: &AppPlan,
    droplet: &DropletRow,
    process: &ProcessRow,
    version: &str,
    index: u32,
    cf_api: &str,
) -> StartMessage {
    let memory = u64::try_from(process.memory_in_mb).unwrap_or(0);
    let disk = u64::try_from(process.disk_in_mb).unwrap_or(0);
    let app = &plan.app;
    StartMessage {
        droplet: app.guid.clone(),
        name: app.name.clone(),
        stack: droplet
            .stack
            .clone()
            .or_else(|| app.stack.clone())
            .unwrap_or_default(),
        uris: if process.process_type == "web" {
            plan.uris.clone()
        } else {
            Vec::new()
        },
        sha1: droplet.droplet_hash.clone().unwrap_or_default(),
        executable_uri: stager
            .internal_uri(&format!("/internal/v3/droplets/{}/download", droplet.guid)),
        version: version.to_owned(),
        index,
        limits: Limits {
            mem: memory,
            disk,
            fds: 16384,
        },
        env: env_of(app),
        start_command: process
            .command
            .clone()
            .filter(|command| !command.is_empty())
            .or_else(|| detected_command(droplet, &process.process_type)),
        health_check_timeout: process
            .health_check_timeout
            .and_then(|seconds| u64::try_from(seconds).ok()),
        health_check_type: Some(process.health_check_type.clone()),
        health_check_http_endpoint: process.health_check_endpoint.clone(),
        vcap_application: json!({
            "application_id": app.guid,
            "application_name": app.name,
            "name": app.name,
            "application_uris": plan.uris,
            "uris": plan.uris,
            "application_version": version,
            "version": version,
            "space_id": plan.space.guid,
            "space_name": plan.space.name,
            "organization_id": plan.org.guid,
            "organization_name": plan.org.name,
            "limits": {"mem": memory, "disk": disk, "fds": 16384},
            "cf_api": cf_api,
            "process_id": process.guid,
            "process_type": process.process_type,
        }),
        services: plan.services.clone(),
        cc_partition: Some("default".to_owned()),
    }
}

pub(crate) async fn publish(stager: &Stager, subject: String, payload: &impl serde::Serialize) {
    let Some(nats) = stager.nats() else {
        tracing::warn!(%subject, "no NATS: not publishing");
        return;
    };
    let bytes = match serde_json::to_vec(payload) {
        Ok(bytes) => bytes,
        Err(error) => {
            tracing::error!(%error, "encoding a NATS message failed");
            return;
        }
    };
    if let Err(error) = nats.publish(subject.clone(), bytes.into()).await {
        tracing::warn!(%subject, %error, "publishing failed");
    }
    let _ = nats.flush().await;
}

/// Starts these indices of the process at `version` on DEAs picked by the placement rule.
pub async fn start_instances(
    stager: &Stager,
    plan: &AppPlan,
    process: &ProcessRow,
    version: &str,
    indices: &[u32],
    cf_api: &str,
) {
    let Some(droplet) = &plan.droplet else {
        return;
    };
    for &index in indices {
        let message = start_message(stager, plan, droplet, process, version, index, cf_api);
        let Some(dea) = stager.pool().pick_for_app(
            &message.stack,
            i64::from(process.memory_in_mb),
            i64::from(process.disk_in_mb),
            &plan.app.guid,
        ) else {
            tracing::warn!(app = %plan.app.guid, index, "no DEA can run this instance");
            continue;
        };
        tracing::info!(app = %plan.app.guid, index, %dea, %version, "starting an instance");
        stager.run_state().actual.start_sent(&process.guid, index);
        publish(stager, protocol::subjects::dea_start(&dea), &message).await;
    }
}

/// Starts every instance of every process, each process at a new version; returns what the
/// processes are expected to reach.
pub async fn start_all(
    stager: &Stager,
    plan: &AppPlan,
    cf_api: &str,
) -> Vec<crate::health::Expectation> {
    stager.run_state().clear_crashes(&plan.app.guid, None);
    let mut expectations = Vec::new();
    for process in &plan.processes {
        let version = stager.run_state().new_version(&process.guid);
        // Everything older was stopped with the app: only the new version is left.
        let _ = stager.run_state().issued_versions(&process.guid, true);
        let indices: Vec<u32> = (0..u32::try_from(process.instances.max(0)).unwrap_or(0)).collect();
        start_instances(stager, plan, process, &version, &indices, cf_api).await;
        expectations.push(crate::health::Expectation {
            app_guid: plan.app.guid.clone(),
            version,
            indices,
        });
    }
    expectations
}

/// `dea.stop` for every instance of the app.
pub async fn stop_all(stager: &Stager, app_guid: &str) {
    let message = DeaStop {
        droplet: app_guid.to_owned(),
        ..DeaStop::default()
    };
    publish(stager, protocol::subjects::DEA_STOP.to_owned(), &message).await;
}

/// `dea.stop` for these indices of the process's current version.
pub async fn stop_indices(stager: &Stager, app_guid: &str, version: &str, indices: Vec<u32>) {
    let message = DeaStop {
        droplet: app_guid.to_owned(),
        version: Some(version.to_owned()),
        indices: Some(indices),
        ..DeaStop::default()
    };
    publish(stager, protocol::subjects::DEA_STOP.to_owned(), &message).await;
}

/// After a scale of a started app: start missing indices, stop extra ones, restart every
/// instance (at a new version) when memory or disk changed.
pub async fn after_scale(state: &AppState, before: &ProcessRow, after: ProcessRow) {
    let app_id = after.app_id;
    let Ok(plan) = state
        .db
        .run(move |conn| {
            let app =
                store::apps::find_by_id(conn, app_id)?.ok_or_else(|| ApiError::not_found("App"))?;
            load_plan(conn, app)
        })
        .await
    else {
        return;
    };
    state.api_logs.process_scaling(
        &crate::app_logs::identity_of(&plan.app, &plan.space, &plan.org),
        &after.process_type,
    );
    if plan.app.state != STARTED {
        return;
    }
    let stager = &state.stager;
    let old = u32::try_from(before.instances.max(0)).unwrap_or(0);
    let new = u32::try_from(after.instances.max(0)).unwrap_or(0);
    if before.memory_in_mb != after.memory_in_mb || before.disk_in_mb != after.disk_in_mb {
        for old_version in stager.run_state().issued_versions(&after.guid, false) {
            stop_indices(stager, &plan.app.guid, &old_version, (0..old).collect()).await;
        }
        let version = stager.run_state().new_version(&after.guid);
        let indices: Vec<u32> = (0..new).collect();
        stager
            .run_state()
            .clear_crashes(&plan.app.guid, Some(&indices));
        start_instances(
            stager,
            &plan,
            &after,
            &version,
            &indices,
            &state.external_url,
        )
        .await;
        let expected = crate::health::Expectation {
            app_guid: plan.app.guid.clone(),
            version,
            indices,
        };
        crate::health::wait_for_instances(stager, &[expected], state.sync_wait).await;
    } else if new > old {
        // CC gives the process a new version on scale-up; running instances keep theirs, so
        // the new version is used for the added indices only and becomes current.
        let version = stager.run_state().new_version(&after.guid);
        let indices: Vec<u32> = (old..new).collect();
        stager
            .run_state()
            .clear_crashes(&plan.app.guid, Some(&indices));
        start_instances(
            stager,
            &plan,
            &after,
            &version,
            &indices,
            &state.external_url,
        )
        .await;
        let expected = crate::health::Expectation {
            app_guid: plan.app.guid.clone(),
            version,
            indices,
        };
        crate::health::wait_for_instances(stager, &[expected], state.sync_wait).await;
    } else if new < old {
        for version in stager.run_state().issued_versions(&after.guid, false) {
            stop_indices(stager, &plan.app.guid, &version, (new..old).collect()).await;
        }
    }
}

/// `dea.update` with the current routes for each of these apps that is started.
pub async fn routes_changed(state: &AppState, app_ids: Vec<i32>) {
    for app_id in app_ids {
        let Ok(plan) = state
            .db
            .run(move |conn| {
                let app = store::apps::find_by_id(conn, app_id)?
                    .ok_or_else(|| ApiError::not_found("App"))?;
                load_plan(conn, app)
            })
            .await
        else {
            continue;
        };
        if plan.app.state != STARTED {
            continue;
        }
        let version = plan
            .processes
            .iter()
            .find(|process| process.process_type == "web")
            .map(|process| state.stager.run_state().version(&process.guid));
        let message = DeaUpdate {
            droplet: plan.app.guid.clone(),
            uris: plan.uris.clone(),
            version,
        };
        publish(
            &state.stager,
            protocol::subjects::DEA_UPDATE.to_owned(),
            &message,
        )
        .await;
    }
}

/// Decides from the replies so far whether `dea.find.droplet` may stop listening.
pub type RepliesComplete<'a> = &'a (dyn Fn(&[FindDropletResponse]) -> bool + Sync);

/// Every `dea.find.droplet` reply for the app within [`FIND_WINDOW`]; with `complete`, the
/// collection ends early once the replies satisfy it (e.g. every desired index answered).
pub async fn find_instances(
    stager: &Stager,
    app_guid: &str,
    complete: Option<RepliesComplete<'_>>,
) -> Vec<FindDropletResponse> {
    let Some(nats) = stager.nats() else {
        return Vec::new();
    };
    let request = FindDroplet {
        droplet: app_guid.to_owned(),
        include_stats: true,
        ..FindDroplet::default()
    };
    let Ok(payload) = serde_json::to_vec(&request) else {
        return Vec::new();
    };
    let inbox = nats.new_inbox();
    let Ok(mut replies) = nats.subscribe(inbox.clone()).await else {
        return Vec::new();
    };
    if nats
        .publish_with_reply(protocol::subjects::DEA_FIND_DROPLET, inbox, payload.into())
        .await
        .is_err()
    {
        return Vec::new();
    }
    let _ = nats.flush().await;
    let deadline = tokio::time::Instant::now() + FIND_WINDOW;
    let mut found = Vec::new();
    while let Ok(Some(message)) = tokio::time::timeout_at(deadline, replies.next()).await {
        match serde_json::from_slice::<FindDropletResponse>(&message.payload) {
            Ok(response) => found.push(response),
            Err(error) => tracing::debug!(%error, "ignoring a malformed dea.find.droplet reply"),
        }
        if complete.is_some_and(|complete| complete(&found)) {
            break;
        }
    }
    let _ = replies.unsubscribe().await;
    found
}

fn state_rank(state: InstanceState) -> u8 {
    match state {
        InstanceState::Running => 0,
        InstanceState::Starting | InstanceState::Born | InstanceState::Resuming => 1,
        InstanceState::Crashed => 2,
        _ => 3,
    }
}

/// The stats of a started process: one entry per desired index, merged from DEA replies.
pub async fn process_stats(stager: &Stager, app: &AppRow, process: &ProcessRow) -> Vec<Value> {
    let time = store::now();
    let desired = u32::try_from(process.instances.max(0)).unwrap_or(0);
    let version = stager
        .run_state()
        .versions
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .get(&process.guid)
        .cloned();
    // Stop listening as soon as every desired index answered RUNNING at a version of this
    // process: the usual case costs one round trip instead of the whole window.
    let issued = stager.run_state().known_versions(&process.guid);
    let every_index_running = |found: &[FindDropletResponse]| {
        (0..desired).all(|index| {
            found.iter().any(|reply| {
                reply.index == index
                    && reply.state == InstanceState::Running
                    && issued.contains(&reply.version)
            })
        })
    };
    let replies = find_instances(stager, &app.guid, Some(&every_index_running)).await;
    let crashes = stager
        .run_state()
        .crashes
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .clone();
    (0..desired)
        .map(|index| {
            let best = replies
                .iter()
                .filter(|reply| reply.index == index)
                .filter(|reply| {
                    reply.state != InstanceState::Stopped
                        && reply.state != InstanceState::Stopping
                        && reply.state != InstanceState::Deleted
                })
                .min_by_key(|reply| {
                    (
                        version
                            .as_deref()
                            .is_some_and(|current| current != reply.version),
                        state_rank(reply.state),
                    )
                });
            let index_i32 = i32::try_from(index).unwrap_or(i32::MAX);
            let mut entry = present::down_instance_stats(process, index_i32, &time);
            match best {
                Some(reply) => {
                    let state = match reply.state {
                        InstanceState::Running => "RUNNING",
                        InstanceState::Crashed => "CRASHED",
                        _ => "STARTING",
                    };
                    entry["state"] = json!(state);
                    if let Some(stats) = &reply.stats {
                        entry["routable"] = json!(reply.state == InstanceState::Running);
                        entry["usage"] = json!({
                            "time": stats.usage.time,
                            "cpu": stats.usage.cpu,
                            "cpu_entitlement": 0.0,
                            "mem": stats.usage.mem,
                            "disk": stats.usage.disk,
                            "log_rate": 0,
                        });
                        entry["host"] = json!(stats.host);
                        entry["instance_ports"] = json!([{
                            "external": stats.port,
                            "internal": 8080,
                            "external_tls_proxy_port": null,
                            "internal_tls_proxy_port": null,
                        }]);
                        entry["uptime"] = json!(stats.uptime);
                        entry["mem_quota"] = json!(stats.mem_quota);
                        entry["disk_quota"] = json!(stats.disk_quota);
                        entry["fds_quota"] = json!(stats.fds_quota);
                    }
                }
                None => {
                    if let Some(crash) = crashes
                        .get(&(app.guid.clone(), index))
                        .filter(|crash| version.as_deref().is_none_or(|v| v == crash.version))
                    {
                        entry["state"] = json!("CRASHED");
                        entry["details"] = json!(crash.exit_description);
                    }
                }
            }
            entry
        })
        .collect()
}

fn check_writer(conn: &mut DbConn, user: &CurrentUser, guid: &str) -> Result<AppRow, ApiError> {
    let permissions = Permissions::load(conn, user)?;
    let (app, space, _org) = visible_app(conn, &permissions, guid)?;
    if !permissions.can_write_to_space(space.id) {
        return Err(ApiError::forbidden());
    }
    Ok(app)
}

const NO_DROPLET: &str = "Assign a droplet before starting this app.";

/// Stops (when `stop_first`) and starts the app; answers the app.
async fn start_app(
    state: web::Data<AppState>,
    user: CurrentUser,
    guid: String,
    stop_first: bool,
) -> Result<HttpResponse, ApiError> {
    let (plan, was_started, metadata) = state
        .db
        .run(move |conn| {
            let app = check_writer(conn, &user, &guid)?;
            let was_started = app.state == STARTED;
            let plan = load_plan(conn, app)?;
            if plan.droplet.is_none() {
                return Err(ApiError::unprocessable(NO_DROPLET));
            }
            let app = set_state(conn, plan.app.id, STARTED)?;
            let metadata = store::metadata::load(conn, store::metadata::APP, &app.guid)?;
            Ok((AppPlan { app, ..plan }, was_started, metadata))
        })
        .await?;
    let identity = crate::app_logs::identity_of(&plan.app, &plan.space, &plan.org);
    if stop_first {
        state.api_logs.app_restarted(&identity);
        stop_all(&state.stager, &plan.app.guid).await;
    } else {
        state.api_logs.app_starting(&identity);
    }
    if stop_first || !was_started {
        let expectations = start_all(&state.stager, &plan, &state.external_url).await;
        // Fast starts are answered once the instances run, so the CLI's first stats poll
        // (1 ms after this answer) already sees them RUNNING.
        crate::health::wait_for_instances(&state.stager, &expectations, state.sync_wait).await;
    }
    Ok(HttpResponse::Ok().json(present::with_metadata(
        present::app(&state.external_url, &plan.app, &plan.space.guid),
        Some(&metadata),
    )))
}

async fn start(
    state: web::Data<AppState>,
    user: CurrentUser,
    path: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    start_app(state, user, path.into_inner(), false).await
}

async fn restart(
    state: web::Data<AppState>,
    user: CurrentUser,
    path: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    start_app(state, user, path.into_inner(), true).await
}

async fn stop(
    state: web::Data<AppState>,
    user: CurrentUser,
    path: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let guid = path.into_inner();
    let (app, space_guid, identity, metadata) = state
        .db
        .run(move |conn| {
            let app = check_writer(conn, &user, &guid)?;
            let app = set_state(conn, app.id, store::apps::STOPPED)?;
            let space = store::spaces::find_by_id(conn, app.space_id)?
                .ok_or_else(|| ApiError::not_found("App"))?;
            let identity = crate::app_logs::identity(conn, &app)?;
            let metadata = store::metadata::load(conn, store::metadata::APP, &app.guid)?;
            Ok((app, space.guid, identity, metadata))
        })
        .await?;
    state.api_logs.app_stopping(&identity);
    stop_all(&state.stager, &app.guid).await;
    state.stager.run_state().clear_crashes(&app.guid, None);
    Ok(HttpResponse::Ok().json(present::with_metadata(
        present::app(&state.external_url, &app, &space_guid),
        Some(&metadata),
    )))
}

async fn restart_instance(
    state: web::Data<AppState>,
    user: CurrentUser,
    path: web::Path<(String, String, String)>,
) -> Result<HttpResponse, ApiError> {
    let (guid, process_type, index) = path.into_inner();
    let (plan, process, index) = state
        .db
        .run(move |conn| {
            let app = check_writer(conn, &user, &guid)?;
            let process = store::apps::find_process_of_type(conn, app.id, &process_type)?
                .ok_or_else(|| ApiError::not_found("Process"))?;
            let index = index
                .parse::<u32>()
                .ok()
                .filter(|index| i64::from(*index) < i64::from(process.instances))
                .ok_or_else(|| ApiError::not_found("Instance"))?;
            Ok((load_plan(conn, app)?, process, index))
        })
        .await?;
    if plan.app.state == STARTED {
        let version = state.stager.run_state().version(&process.guid);
        // Stop the running instance by its id, not by index: the DEA may handle the start below
        // before this stop (they travel on different subjects), and a stop by index would then
        // take the new instance down too.
        let running: Vec<String> = find_instances(&state.stager, &plan.app.guid, None)
            .await
            .into_iter()
            .filter(|found| found.index == index)
            .map(|found| found.instance)
            .collect();
        if !running.is_empty() {
            let message = DeaStop {
                droplet: plan.app.guid.clone(),
                instances: Some(running),
                ..DeaStop::default()
            };
            publish(
                &state.stager,
                protocol::subjects::DEA_STOP.to_owned(),
                &message,
            )
            .await;
        }
        state
            .stager
            .run_state()
            .clear_crashes(&plan.app.guid, Some(&[index]));
        start_instances(
            &state.stager,
            &plan,
            &process,
            &version,
            &[index],
            &state.external_url,
        )
        .await;
    }
    Ok(HttpResponse::NoContent().finish())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn placement_spreads_an_app_and_prefers_free_memory() {
        let pool = crate::staging::DeaPool::default();
        let advert = |id: &str, memory: i64| protocol::dea::DeaAdvertise {
            id: id.to_owned(),
            stacks: vec!["kiln-host".to_owned()],
            url: None,
            available_memory: memory,
            available_disk: 10_000,
            app_id_to_count: BTreeMap::new(),
            placement_properties: Default::default(),
        };
        pool.record(advert("a", 2048));
        pool.record(advert("b", 4096));
        assert_eq!(
            pool.pick_for_app("kiln-host", 256, 1, "x").as_deref(),
            Some("b")
        );
        assert_eq!(
            pool.pick_for_app("kiln-host", 256, 1, "x").as_deref(),
            Some("a")
        );
        assert_eq!(
            pool.pick_for_app("kiln-host", 256, 1, "x").as_deref(),
            Some("b")
        );
        assert_eq!(pool.pick_for_app("other", 256, 1, "x"), None);
    }
}
