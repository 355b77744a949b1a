//! The health manager: keeps what runs on DEAs equal to what the database says should run.
//!
//! [`ActualState`] is built from `dea.heartbeat` (periodic, and one per instance on every state
//! change) and `droplet.exited`; an instance not heard of for [`ACTUAL_TTL`] is presumed gone
//! with its DEA. Every [`HM_INTERVAL`] [`converge`] compares it with the desired state — started
//! apps with a droplet, `instances` per process — and starts missing indices (on any DEA the
//! placement rule picks, so a dead DEA's instances are re-placed), stops extra indices, stale
//! versions and the instances of stopped or deleted apps. Crashed instances are restarted with
//! CF's backoff ([`restart_delay`]): three at once, then 30 s doubling to 960 s, never after 200
//! crashes. Starts and restarts wait on [`wait_for_instances`] so fast starts answer done.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use protocol::dea::{DeaStop, DropletExited, Heartbeat, InstanceState};

use crate::db::Db;
use crate::error::ApiError;
use crate::staging::Stager;
use crate::store;
use crate::v3::running::{self, AppPlan, STARTED};

/// An instance not heard of for this long (3 × the DEA's 10 s heartbeat, plus margin) is gone.
pub const ACTUAL_TTL: Duration = Duration::from_secs(35);
/// How often the health manager converges.
pub const HM_INTERVAL: Duration = Duration::from_secs(5);
/// The health manager acts only after listening this long (a full heartbeat round), so a
/// freshly started Cloud Controller does not start instances that are in fact running.
pub const HM_WARMUP: Duration = Duration::from_secs(12);
/// A start sent this recently counts as under way, even before its first heartbeat.
pub const START_GRACE: Duration = Duration::from_secs(15);
/// After this many crashes an instance is no longer restarted (CF's limit).
pub const MAX_CRASHES: u32 = 200;

/// CF's crash backoff: the wait before restarting an instance that crashed `crash_count` times.
pub fn restart_delay(crash_count: u32) -> Option<Duration> {
    match crash_count {
        0..=3 => Some(Duration::ZERO),
        count if count >= MAX_CRASHES => None,
        count => {
            let doublings = (count - 4).min(5);
            Some(Duration::from_secs((30u64 << doublings).min(960)))
        }
    }
}

/// One instance as DEAs report it.
#[derive(Debug, Clone, PartialEq)]
pub struct ActualInstance {
    /// DEA holding it.
    pub dea: String,
    /// App GUID.
    pub app_guid: String,
    /// Process version it runs.
    pub version: String,
    /// Instance index.
    pub index: u32,
    /// Last reported state.
    pub state: InstanceState,
    /// When it was last reported.
    pub seen: Instant,
}

impl ActualInstance {
    /// Starting or running (not on its way out).
    pub fn is_alive(&self) -> bool {
        matches!(
            self.state,
            InstanceState::Born
                | InstanceState::Starting
                | InstanceState::Running
                | InstanceState::Resuming
        )
    }
}

/// Crash bookkeeping of one (app, index).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CrashCount {
    /// Crashes since the last explicit start.
    pub count: u32,
    /// When the last one happened.
    pub last: Instant,
}

/// What DEAs report, keyed by instance id, plus a change counter waiters watch.
#[derive(Debug)]
pub struct ActualState {
    instances: Mutex<HashMap<String, ActualInstance>>,
    changes: tokio::sync::watch::Sender<u64>,
    /// (app GUID, index) → crashes since the last explicit start.
    crash_counts: Mutex<HashMap<(String, u32), CrashCount>>,
    /// (process GUID, index) → when a start was last sent.
    pending_starts: Mutex<HashMap<(String, u32), Instant>>,
    started_listening: Instant,
}

impl Default for ActualState {
    fn default() -> Self {
        ActualState {
            instances: Mutex::default(),
            changes: tokio::sync::watch::channel(0).0,
            crash_counts: Mutex::default(),
            pending_starts: Mutex::default(),
            started_listening: Instant::now(),
        }
    }
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|e| e.into_inner())
}

impl ActualState {
    /// Takes in a heartbeat (periodic or single-instance).
    pub fn record_heartbeat(&self, heartbeat: Heartbeat) {
        let now = Instant::now();
        let mut instances = lock(&self.instances);
        for droplet in heartbeat.droplets {
            instances.insert(
                droplet.instance.clone(),
                ActualInstance {
                    dea: heartbeat.dea.clone(),
                    app_guid: droplet.droplet,
                    version: droplet.version,
                    index: droplet.index,
                    state: droplet.state,
                    seen: now,
                },
            );
        }
        drop(instances);
        self.changes.send_modify(|counter| *counter += 1);
    }

    /// Takes in an exit: the instance is gone; a crash counts towards the backoff.
    pub fn record_exit(&self, exited: &DropletExited) {
        lock(&self.instances).remove(&exited.instance);
        if exited.reason == protocol::dea::ExitReason::Crashed {
            let mut counts = lock(&self.crash_counts);
            let entry = counts
                .entry((exited.droplet.clone(), exited.index))
                .or_insert(CrashCount {
                    count: 0,
                    last: Instant::now(),
                });
            entry.count += 1;
            entry.last = Instant::now();
        }
        self.changes.send_modify(|counter| *counter += 1);
    }

    /// Forgets crash counts of these indices (all for `None`): an explicit start resets them.
    pub fn reset_crashes(&self, app_guid: &str, indices: Option<&[u32]>) {
        lock(&self.crash_counts).retain(|(app, index), _| {
            app != app_guid || indices.is_some_and(|only| !only.contains(index))
        });
    }

    /// Notes that a start of this index was sent.
    pub fn start_sent(&self, process_guid: &str, index: u32) {
        lock(&self.pending_starts).insert((process_guid.to_owned(), index), Instant::now());
    }

    fn start_pending(&self, process_guid: &str, index: u32) -> bool {
        lock(&self.pending_starts)
            .get(&(process_guid.to_owned(), index))
            .is_some_and(|sent| sent.elapsed() < START_GRACE)
    }

    /// Crashes of this index since its last explicit start.
    pub fn crash_count_of(&self, app_guid: &str, index: u32) -> u32 {
        self.crash_count(app_guid, index)
            .map_or(0, |crashes| crashes.count)
    }

    fn crash_count(&self, app_guid: &str, index: u32) -> Option<CrashCount> {
        lock(&self.crash_counts)
            .get(&(app_guid.to_owned(), index))
            .copied()
    }

    /// Drops instances not heard of for [`ACTUAL_TTL`] and old start marks.
    pub fn expire(&self) {
        lock(&self.instances).retain(|_, instance| instance.seen.elapsed() < ACTUAL_TTL);
        lock(&self.pending_starts).retain(|_, sent| sent.elapsed() < START_GRACE);
    }

    /// Every fresh instance of the app, by instance id.
    pub fn instances_of(&self, app_guid: &str) -> Vec<(String, ActualInstance)> {
        lock(&self.instances)
            .iter()
            .filter(|(_, instance)| {
                instance.app_guid == app_guid && instance.seen.elapsed() < ACTUAL_TTL
            })
            .map(|(id, instance)| (id.clone(), instance.clone()))
            .collect()
    }

    /// App GUIDs with at least one fresh instance.
    pub fn app_guids(&self) -> HashSet<String> {
        lock(&self.instances)
            .values()
            .filter(|instance| instance.seen.elapsed() < ACTUAL_TTL)
            .map(|instance| instance.app_guid.clone())
            .collect()
    }

    /// A receiver that changes whenever a heartbeat or exit arrives.
    pub fn subscribe(&self) -> tokio::sync::watch::Receiver<u64> {
        self.changes.subscribe()
    }
}

/// What one process is expected to reach after a start: `desired` indices at `version`.
#[derive(Debug, Clone)]
pub struct Expectation {
    /// App GUID.
    pub app_guid: String,
    /// The version started.
    pub version: String,
    /// Indices started.
    pub indices: Vec<u32>,
}

/// Waits (up to `timeout`) until every expected index runs at its version or crashed at it.
/// Returns whether that happened.
pub async fn wait_for_instances(
    stager: &Stager,
    expectations: &[Expectation],
    timeout: Duration,
) -> bool {
    let mut changes = stager.run_state().actual.subscribe();
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        let settled = expectations.iter().all(|expected| {
            let actual = stager.run_state().actual.instances_of(&expected.app_guid);
            let crashes = stager.run_state().crashes_of(&expected.app_guid);
            expected.indices.iter().all(|index| {
                actual.iter().any(|(_, instance)| {
                    instance.index == *index
                        && instance.version == expected.version
                        && instance.state == InstanceState::Running
                }) || crashes
                    .get(index)
                    .is_some_and(|version| *version == expected.version)
            })
        });
        if settled {
            return true;
        }
        if tokio::time::timeout_at(deadline, changes.changed())
            .await
            .map_or(true, |changed| changed.is_err())
        {
            return false;
        }
    }
}

/// Runs the health manager on the stager's tasks until shutdown.
pub fn start(stager: &std::sync::Arc<Stager>, db: Db, cf_api: String) {
    let owned = stager.clone();
    stager.spawn_owned(async move {
        let mut ticks = tokio::time::interval(HM_INTERVAL);
        ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            ticks.tick().await;
            if owned.run_state().actual.started_listening.elapsed() < HM_WARMUP {
                continue;
            }
            if let Err(error) = converge(&owned, &db, &cf_api).await {
                tracing::warn!(%error, "health manager round failed");
            }
        }
    });
}

/// Every started app with a droplet, as start plans.
fn started_plans(conn: &mut crate::db::DbConn) -> Result<Vec<AppPlan>, ApiError> {
    store::apps::list(conn)?
        .into_iter()
        .filter(|app| app.state == STARTED && app.droplet_guid.is_some())
        .map(|app| running::load_plan(conn, app))
        .collect()
}

/// One health-manager round.
pub async fn converge(stager: &Stager, db: &Db, cf_api: &str) -> Result<(), ApiError> {
    if stager.nats().is_none() {
        return Ok(());
    }
    let actual = &stager.run_state().actual;
    actual.expire();
    let plans = db.run(started_plans).await?;
    let started: HashSet<String> = plans.iter().map(|plan| plan.app.guid.clone()).collect();
    for app_guid in actual.app_guids() {
        if !started.contains(&app_guid) {
            tracing::info!(app = %app_guid, "health manager: stopping instances of an app that is not started");
            running::stop_all(stager, &app_guid).await;
        }
    }
    for plan in &plans {
        converge_app(stager, plan, cf_api).await;
    }
    Ok(())
}

async fn converge_app(stager: &Stager, plan: &AppPlan, cf_api: &str) {
    let run_state = stager.run_state();
    let actual = run_state.actual.instances_of(&plan.app.guid);
    // After a Cloud Controller restart the versions are unknown: adopt what runs.
    if let Some(web) = plan
        .processes
        .iter()
        .find(|process| process.process_type == "web")
    {
        let mut seen: BTreeMap<&str, usize> = BTreeMap::new();
        for (_, instance) in &actual {
            *seen.entry(instance.version.as_str()).or_default() += 1;
        }
        if let Some((version, _)) = seen.iter().max_by_key(|(_, count)| **count) {
            run_state.adopt_version(&web.guid, version, seen.keys().copied());
        }
    }
    let mut valid_versions: HashSet<String> = HashSet::new();
    let mut to_stop: Vec<String> = Vec::new();
    for process in &plan.processes {
        let issued = run_state.issued_versions(&process.guid, false);
        let current = run_state.version(&process.guid);
        valid_versions.extend(issued.iter().cloned());
        let desired = u32::try_from(process.instances.max(0)).unwrap_or(0);
        let mine: Vec<&(String, ActualInstance)> = actual
            .iter()
            .filter(|(_, instance)| issued.contains(&instance.version))
            .collect();
        let mut missing = Vec::new();
        for index in 0..desired {
            let alive = mine
                .iter()
                .any(|(_, instance)| instance.index == index && instance.is_alive());
            if alive || run_state.actual.start_pending(&process.guid, index) {
                continue;
            }
            if let Some(crashes) = run_state.actual.crash_count(&plan.app.guid, index) {
                match restart_delay(crashes.count) {
                    None => continue,
                    Some(delay) if crashes.last.elapsed() < delay => continue,
                    Some(_) => {}
                }
            }
            missing.push(index);
        }
        if !missing.is_empty() {
            tracing::info!(app = %plan.app.guid, process = %process.guid, ?missing, "health manager: starting missing instances");
            running::start_instances(stager, plan, process, &current, &missing, cf_api).await;
        }
        to_stop.extend(
            mine.iter()
                .filter(|(_, instance)| instance.index >= desired && instance.is_alive())
                .map(|(id, _)| id.clone()),
        );
    }
    to_stop.extend(
        actual
            .iter()
            .filter(|(_, instance)| !valid_versions.contains(&instance.version))
            .filter(|(_, instance)| instance.is_alive())
            .map(|(id, _)| id.clone()),
    );
    if !to_stop.is_empty() {
        tracing::info!(app = %plan.app.guid, instances = ?to_stop, "health manager: stopping extra instances");
        let message = DeaStop {
            droplet: plan.app.guid.clone(),
            instances: Some(to_stop),
            ..DeaStop::default()
        };
        running::publish(stager, protocol::subjects::DEA_STOP.to_owned(), &message).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_is_cfs() {
        let secs = |count| restart_delay(count).map(|delay| delay.as_secs());
        assert_eq!(secs(1), Some(0));
        assert_eq!(secs(3), Some(0));
        assert_eq!(secs(4), Some(30));
        assert_eq!(secs(5), Some(60));
        assert_eq!(secs(8), Some(480));
        assert_eq!(secs(9), Some(960));
        assert_eq!(secs(150), Some(960));
        assert_eq!(secs(200), None);
    }

    #[test]
    fn exits_remove_instances_and_count_crashes() {
        let state = ActualState::default();
        state.record_heartbeat(Heartbeat {
            dea: "d".into(),
            droplets: vec![protocol::dea::InstanceHeartbeat {
                cc_partition: None,
                droplet: "app".into(),
                version: "v".into(),
                instance: "i1".into(),
                index: 0,
                state: InstanceState::Running,
                state_timestamp: 0.0,
            }],
        });
        assert_eq!(state.instances_of("app").len(), 1);
        assert_eq!(state.app_guids().len(), 1);
        let exited = DropletExited {
            cc_partition: None,
            droplet: "app".into(),
            version: "v".into(),
            instance: "i1".into(),
            index: 0,
            reason: protocol::dea::ExitReason::Crashed,
            exit_status: Some(1),
            exit_description: None,
            crash_timestamp: None,
        };
        state.record_exit(&exited);
        state.record_exit(&exited);
        assert!(state.instances_of("app").is_empty());
        assert_eq!(state.crash_count("app", 0).map(|c| c.count), Some(2));
        state.reset_crashes("app", Some(&[1]));
        assert_eq!(state.crash_count("app", 0).map(|c| c.count), Some(2));
        state.reset_crashes("app", None);
        assert_eq!(state.crash_count("app", 0), None);
    }
}
