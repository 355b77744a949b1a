//! Staging on DEAs over NATS: the pool of DEAs from `dea.advertise`, and the dispatch of a build
//! as a `staging.<dea-id>.start` request/reply in a background task owned by [`Stager`]. The
//! reply moves the build to STAGED (with the droplet the DEA uploaded to the internal API) or
//! FAILED with CC's `"<ErrorType> - <message>"` text; no reply within [`STAGING_TIMEOUT`] fails
//! it too, so a build never stays STAGING forever.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures_util::StreamExt;
use protocol::dea::{
    AdminBuildpack, DeaAdvertise, Limits, StagingProperties, StagingRequest, StagingResponse,
};
use serde_json::{json, Value};

use crate::db::Db;
use crate::store;

/// How long a staging request may take (CF's 15 minutes).
pub const STAGING_TIMEOUT: Duration = Duration::from_secs(15 * 60);
/// An advertisement older than this (3 × the DEA's 5 s interval) no longer counts.
pub const ADVERT_TTL: Duration = Duration::from_secs(15);

/// CC's build error when no DEA can take the staging task.
pub const NO_STAGERS: &str = "StagingError - Staging error: no available stagers";

/// Basic-auth credentials of the internal API.
#[derive(Clone)]
pub struct InternalCredentials {
    /// User name.
    pub username: String,
    /// Password.
    pub password: String,
}

impl std::fmt::Debug for InternalCredentials {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            formatter,
            "InternalCredentials({}, <hidden>)",
            self.username
        )
    }
}

impl InternalCredentials {
    /// Random credentials for this process.
    pub fn random() -> InternalCredentials {
        use rand::Rng;
        let mut rng = rand::thread_rng();
        let token = |rng: &mut rand::rngs::ThreadRng| -> String {
            (0..32)
                .map(|_| format!("{:x}", rng.gen_range(0..16u8)))
                .collect()
        };
        InternalCredentials {
            username: format!("internal-{}", &token(&mut rng)[..8]),
            password: token(&mut rng),
        }
    }

    /// Whether an `Authorization` header value carries these credentials.
    pub fn accepts(&self, header: Option<&str>) -> bool {
        use base64::Engine;
        let Some(encoded) = header.and_then(|value| {
            value
                .strip_prefix("Basic ")
                .or_else(|| value.strip_prefix("basic "))
        }) else {
            return false;
        };
        let Ok(decoded) = base64::engine::general_purpose::STANDARD.decode(encoded.trim()) else {
            return false;
        };
        let expected = format!("{}:{}", self.username, self.password);
        constant_time_eq(&decoded, expected.as_bytes())
    }
}

fn constant_time_eq(left: &[u8], right: &[u8]) -> bool {
    left.len() == right.len()
        && left
            .iter()
            .zip(right)
            .fold(0u8, |acc, (a, b)| acc | (a ^ b))
            == 0
}

/// The DEAs that advertised lately.
#[derive(Debug, Default)]
pub struct DeaPool {
    adverts: Mutex<HashMap<String, (DeaAdvertise, Instant)>>,
}

impl DeaPool {
    /// Keeps the newest advertisement of its DEA.
    pub fn record(&self, advert: DeaAdvertise) {
        let mut adverts = self.adverts.lock().unwrap_or_else(|e| e.into_inner());
        adverts.insert(advert.id.clone(), (advert, Instant::now()));
        adverts.retain(|_, (_, seen)| seen.elapsed() < ADVERT_TTL);
    }

    /// Forgets a DEA that said goodbye (`dea.shutdown`): nothing more is placed on it.
    pub fn forget(&self, dea_id: &str) {
        self.adverts
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(dea_id);
    }

    /// The fresh DEA with the stack and room for `memory_mb`/`disk_mb` that has the most free
    /// memory; its reservation is taken off the advert until the DEA advertises again.
    pub fn pick(&self, stack: &str, memory_mb: i64, disk_mb: i64) -> Option<String> {
        let mut adverts = self.adverts.lock().unwrap_or_else(|e| e.into_inner());
        adverts.retain(|_, (_, seen)| seen.elapsed() < ADVERT_TTL);
        let (_, (advert, _)) = adverts
            .iter_mut()
            .filter(|(_, (advert, _))| {
                advert.stacks.iter().any(|candidate| candidate == stack)
                    && advert.available_memory >= memory_mb
                    && advert.available_disk >= disk_mb
            })
            .max_by_key(|(id, (advert, _))| {
                (advert.available_memory, std::cmp::Reverse((*id).clone()))
            })?;
        advert.available_memory -= memory_mb;
        advert.available_disk -= disk_mb;
        Some(advert.id.clone())
    }

    /// CC's placement rule for an app instance: among fresh DEAs with the stack and room for
    /// `memory_mb`/`disk_mb`, the one running the fewest instances of `app_guid`, then the one
    /// with the most free memory. The reservation (and the instance) is counted on the advert
    /// until the DEA advertises again, so consecutive picks spread an app's instances.
    pub fn pick_for_app(
        &self,
        stack: &str,
        memory_mb: i64,
        disk_mb: i64,
        app_guid: &str,
    ) -> Option<String> {
        let mut adverts = self.adverts.lock().unwrap_or_else(|e| e.into_inner());
        adverts.retain(|_, (_, seen)| seen.elapsed() < ADVERT_TTL);
        let (_, (advert, _)) = adverts
            .iter_mut()
            .filter(|(_, (advert, _))| {
                advert.stacks.iter().any(|candidate| candidate == stack)
                    && advert.available_memory >= memory_mb
                    && advert.available_disk >= disk_mb
            })
            .min_by_key(|(id, (advert, _))| {
                (
                    advert.app_id_to_count.get(app_guid).copied().unwrap_or(0),
                    std::cmp::Reverse(advert.available_memory),
                    (*id).clone(),
                )
            })?;
        advert.available_memory -= memory_mb;
        advert.available_disk -= disk_mb;
        *advert
            .app_id_to_count
            .entry(app_guid.to_owned())
            .or_insert(0) += 1;
        Some(advert.id.clone())
    }
}

/// What CC remembers about running apps between requests: the current version of each process
/// and the last crash of each instance (`droplet.exited` with reason CRASHED).
#[derive(Debug, Default)]
pub struct RunState {
    /// Process GUID → current version GUID.
    pub versions: Mutex<HashMap<String, String>>,
    /// Process GUID → every version issued since the last full start, oldest first.
    pub issued: Mutex<HashMap<String, Vec<String>>>,
    /// (app GUID, index) → the last crash report.
    pub crashes: Mutex<HashMap<(String, u32), protocol::dea::DropletExited>>,
    /// What DEAs report running, and crash counts (the health manager's view).
    pub actual: crate::health::ActualState,
}

impl RunState {
    /// Remembers a crash (logged either way); a stopped instance leaves no trace.
    pub fn record_exit(&self, exited: protocol::dea::DropletExited) {
        tracing::info!(app = %exited.droplet, index = exited.index, reason = ?exited.reason,
            description = ?exited.exit_description, "droplet exited");
        self.actual.record_exit(&exited);
        if exited.reason == protocol::dea::ExitReason::Crashed {
            self.crashes
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .insert((exited.droplet.clone(), exited.index), exited);
        }
    }

    /// Forgets the crashes of these indices of an app (all of them for `None`).
    pub fn clear_crashes(&self, app_guid: &str, indices: Option<&[u32]>) {
        self.actual.reset_crashes(app_guid, indices);
        self.crashes
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .retain(|(app, index), _| {
                app != app_guid || indices.is_some_and(|only| !only.contains(index))
            });
    }

    /// Index → version of the last crash of each index of the app.
    pub fn crashes_of(&self, app_guid: &str) -> HashMap<u32, String> {
        self.crashes
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .iter()
            .filter(|((app, _), _)| app == app_guid)
            .map(|((_, index), crash)| (*index, crash.version.clone()))
            .collect()
    }

    /// When no version of the process is known (after a Cloud Controller restart), takes
    /// `current` and `issued` from what the DEAs run.
    pub fn adopt_version<'a>(
        &self,
        process_guid: &str,
        current: &str,
        issued: impl Iterator<Item = &'a str>,
    ) {
        let mut versions = self.versions.lock().unwrap_or_else(|e| e.into_inner());
        if versions.contains_key(process_guid) {
            return;
        }
        tracing::info!(process = %process_guid, version = %current, "adopting the version DEAs run");
        versions.insert(process_guid.to_owned(), current.to_owned());
        self.issued
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(process_guid.to_owned(), issued.map(str::to_owned).collect());
    }

    /// The versions issued to the process that are known, without inventing one (reads must
    /// not: after a restart the health manager adopts the versions DEAs run).
    pub fn known_versions(&self, process_guid: &str) -> Vec<String> {
        let mut known = self
            .issued
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(process_guid)
            .cloned()
            .unwrap_or_default();
        if let Some(current) = self
            .versions
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(process_guid)
        {
            if !known.contains(current) {
                known.push(current.clone());
            }
        }
        known
    }

    /// A new version for the process.
    pub fn new_version(&self, process_guid: &str) -> String {
        let version = crate::store::new_guid();
        self.versions
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(process_guid.to_owned(), version.clone());
        self.issued
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .entry(process_guid.to_owned())
            .or_default()
            .push(version.clone());
        version
    }

    /// Every version issued to the process (at least the current one); `forget` drops them
    /// all but the current one afterwards.
    pub fn issued_versions(&self, process_guid: &str, forget: bool) -> Vec<String> {
        let current = self.version(process_guid);
        let mut issued = self.issued.lock().unwrap_or_else(|e| e.into_inner());
        let versions = issued.entry(process_guid.to_owned()).or_default();
        if !versions.contains(&current) {
            versions.push(current.clone());
        }
        let all = versions.clone();
        if forget {
            *versions = vec![current];
        }
        all
    }

    /// The process's current version (a new one when none is known).
    pub fn version(&self, process_guid: &str) -> String {
        let mut versions = self.versions.lock().unwrap_or_else(|e| e.into_inner());
        versions
            .entry(process_guid.to_owned())
            .or_insert_with(crate::store::new_guid)
            .clone()
    }
}

/// Dispatches builds to DEAs and owns the tasks waiting for their replies.
pub struct Stager {
    nats: Option<async_nats::Client>,
    pool: Arc<DeaPool>,
    runtime: tokio::runtime::Handle,
    tasks: Mutex<tokio::task::JoinSet<()>>,
    credentials: InternalCredentials,
    external_url: String,
    timeout: Duration,
    run_state: Arc<RunState>,
    /// The CC's API log lines and the database to name apps in them (set once the CC is up).
    api_logs: Arc<std::sync::OnceLock<(crate::app_logs::ApiLogs, Db)>>,
}

impl std::fmt::Debug for Stager {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter
            .debug_struct("Stager")
            .field("nats", &self.nats.is_some())
            .field("pool", &self.pool)
            .finish()
    }
}

/// Everything a staging request needs, read in the build's transaction.
#[derive(Debug, Clone)]
pub struct StagingJob {
    /// Build GUID (the task id).
    pub build_guid: String,
    /// App GUID.
    pub app_guid: String,
    /// Package GUID.
    pub package_guid: String,
    /// Stack name.
    pub stack: String,
    /// Buildpack names from the app's lifecycle (empty: detect).
    pub buildpacks: Vec<String>,
    /// `K=V` user environment.
    pub environment: Vec<String>,
    /// Staging memory in MB.
    pub memory_mb: i32,
    /// Staging disk in MB.
    pub disk_mb: i32,
    /// `VCAP_SERVICES` of the app, given to the buildpacks.
    pub services: Value,
    /// App, space and org names and GUIDs (`vcap_application` keys), sent to the DEA in
    /// `properties.meta.vcap_application` so staging log lines carry CF's tags.
    pub vcap_application: Value,
}

impl Stager {
    /// A stager; without `nats` every build fails with [`NO_STAGERS`]. Must be called inside
    /// a Tokio runtime: background tasks run on it. Subscribes to `dea.advertise`.
    pub async fn start(
        nats: Option<async_nats::Client>,
        credentials: InternalCredentials,
        external_url: String,
    ) -> Result<Arc<Stager>, crate::CcError> {
        let stager = Arc::new(Stager {
            nats: nats.clone(),
            pool: Arc::new(DeaPool::default()),
            runtime: tokio::runtime::Handle::current(),
            tasks: Mutex::new(tokio::task::JoinSet::new()),
            credentials,
            external_url,
            timeout: STAGING_TIMEOUT,
            run_state: Arc::new(RunState::default()),
            api_logs: Arc::default(),
        });
        if let Some(nats) = nats {
            let mut adverts = nats
                .subscribe(protocol::subjects::DEA_ADVERTISE)
                .await
                .map_err(|error| crate::CcError::Config(format!("NATS subscribe: {error}")))?;
            let pool = stager.pool.clone();
            stager.spawn(async move {
                while let Some(message) = adverts.next().await {
                    match serde_json::from_slice::<DeaAdvertise>(&message.payload) {
                        Ok(advert) => pool.record(advert),
                        Err(error) => tracing::debug!(%error, "ignoring a malformed dea.advertise"),
                    }
                }
            });
            let mut goodbyes = nats
                .subscribe(protocol::subjects::DEA_SHUTDOWN)
                .await
                .map_err(|error| crate::CcError::Config(format!("NATS subscribe: {error}")))?;
            let pool = stager.pool.clone();
            stager.spawn(async move {
                while let Some(message) = goodbyes.next().await {
                    match serde_json::from_slice::<protocol::dea::DeaShutdown>(&message.payload) {
                        Ok(goodbye) => {
                            tracing::info!(dea = %goodbye.id, "DEA shutting down: no more placements on it");
                            pool.forget(&goodbye.id);
                        }
                        Err(error) => tracing::debug!(%error, "ignoring a malformed dea.shutdown"),
                    }
                }
            });
            let mut heartbeats = nats
                .subscribe(protocol::subjects::DEA_HEARTBEAT)
                .await
                .map_err(|error| crate::CcError::Config(format!("NATS subscribe: {error}")))?;
            let run_state = stager.run_state.clone();
            stager.spawn(async move {
                while let Some(message) = heartbeats.next().await {
                    match serde_json::from_slice::<protocol::dea::Heartbeat>(&message.payload) {
                        Ok(heartbeat) => run_state.actual.record_heartbeat(heartbeat),
                        Err(error) => tracing::debug!(%error, "ignoring a malformed dea.heartbeat"),
                    }
                }
            });
            let mut exits = nats
                .subscribe(protocol::subjects::DROPLET_EXITED)
                .await
                .map_err(|error| crate::CcError::Config(format!("NATS subscribe: {error}")))?;
            let run_state = stager.run_state.clone();
            let api_logs = stager.api_logs.clone();
            stager.spawn(async move {
                while let Some(message) = exits.next().await {
                    match serde_json::from_slice::<protocol::dea::DropletExited>(&message.payload) {
                        Ok(exited) => {
                            if exited.reason == protocol::dea::ExitReason::Crashed {
                                if let Some((api_logs, db)) = api_logs.get() {
                                    // The cell is the DEA that last reported the instance.
                                    let cell_id = run_state
                                        .actual
                                        .instances_of(&exited.droplet)
                                        .into_iter()
                                        .find(|(instance, _)| *instance == exited.instance)
                                        .map(|(_, actual)| actual.dea)
                                        .unwrap_or_default();
                                    let count = run_state
                                        .actual
                                        .crash_count_of(&exited.droplet, exited.index)
                                        + 1;
                                    // Named from the database; the GUID alone if the app
                                    // is gone or the lookup fails.
                                    let guid = exited.droplet.clone();
                                    let app = db
                                        .run(move |conn| {
                                            store::apps::find(conn, &guid)?
                                                .map(|app| crate::app_logs::identity(conn, &app))
                                                .transpose()
                                        })
                                        .await
                                        .ok()
                                        .flatten()
                                        .unwrap_or_else(|| protocol::logs::AppIdentity {
                                            app_id: exited.droplet.clone(),
                                            ..Default::default()
                                        });
                                    api_logs
                                        .instance_crashed(&app, "web", &exited, &cell_id, count);
                                }
                            }
                            run_state.record_exit(exited)
                        }
                        Err(error) => {
                            tracing::debug!(%error, "ignoring a malformed droplet.exited")
                        }
                    }
                }
            });
        }
        Ok(stager)
    }

    /// Every minute (and at once), fails builds left STAGING for longer than the staging
    /// timeout plus a minute — those whose task died with an earlier Cloud Controller process.
    pub fn sweep_expired(&self, db: Db) {
        let limit = self.timeout + Duration::from_secs(60);
        self.spawn(async move {
            let mut ticks = tokio::time::interval(Duration::from_secs(60));
            loop {
                ticks.tick().await;
                let cutoff = (chrono::Utc::now()
                    - chrono::Duration::from_std(limit).unwrap_or(chrono::Duration::zero()))
                .format("%Y-%m-%dT%H:%M:%SZ")
                .to_string();
                let error = format!(
                    "StagingTimeExpired - Staging time expired: no staging result after {} seconds",
                    limit.as_secs()
                );
                match db
                    .run(move |conn| store::builds::fail_expired(conn, &cutoff, &error))
                    .await
                {
                    Ok(0) => {}
                    Ok(count) => tracing::warn!(count, "failed builds whose staging expired"),
                    Err(error) => tracing::warn!(%error, "sweeping expired builds failed"),
                }
            }
        });
    }

    /// Where `API` lines about staging outcomes and crashes go (set once, at start).
    pub fn set_api_logs(&self, api_logs: crate::app_logs::ApiLogs, db: Db) {
        let _ = self.api_logs.set((api_logs, db));
    }

    fn api_logs(&self) -> Option<&crate::app_logs::ApiLogs> {
        self.api_logs.get().map(|(api_logs, _)| api_logs)
    }

    /// The NATS client, when there is one.
    pub fn nats(&self) -> Option<&async_nats::Client> {
        self.nats.as_ref()
    }

    /// The DEA pool.
    pub fn pool(&self) -> &DeaPool {
        &self.pool
    }

    /// Versions and crashes of running apps.
    pub fn run_state(&self) -> &RunState {
        &self.run_state
    }

    /// The internal API credentials.
    pub fn credentials(&self) -> &InternalCredentials {
        &self.credentials
    }

    /// Runs `task` among the stager's owned background tasks (ended by [`Stager::shutdown`]).
    pub(crate) fn spawn_owned(&self, task: impl std::future::Future<Output = ()> + Send + 'static) {
        self.spawn(task);
    }

    fn spawn(&self, task: impl std::future::Future<Output = ()> + Send + 'static) {
        let mut tasks = self.tasks.lock().unwrap_or_else(|e| e.into_inner());
        while tasks.try_join_next().is_some() {}
        tasks.spawn_on(task, &self.runtime);
    }

    /// Ends every background task (the `dea.advertise` subscription and pending stagings).
    pub fn shutdown(&self) {
        self.tasks
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .abort_all();
    }

    /// `external_url` + `path` with the internal credentials as userinfo.
    pub fn internal_uri(&self, path: &str) -> String {
        let mut url = match url::Url::parse(&format!("{}{path}", self.external_url)) {
            Ok(url) => url,
            Err(_) => return format!("{}{path}", self.external_url),
        };
        let _ = url.set_username(&self.credentials.username);
        let _ = url.set_password(Some(&self.credentials.password));
        url.to_string()
    }

    /// Starts staging `job` in the background; the build moves on to STAGED or FAILED there.
    /// The receiver resolves once that outcome is recorded (callers may wait on it a while).
    pub fn dispatch(
        self: &Arc<Self>,
        db: Db,
        job: StagingJob,
    ) -> tokio::sync::oneshot::Receiver<()> {
        let stager = self.clone();
        let (done, finished) = tokio::sync::oneshot::channel();
        self.spawn(async move {
            let build_guid = job.build_guid.clone();
            let app = crate::app_logs::identity_from_vcap(&job.app_guid, &job.vcap_application);
            let outcome = stager.stage(&db, job).await;
            if let Some(api_logs) = stager.api_logs() {
                match &outcome {
                    Ok(_) => api_logs.staging_complete(&app, &build_guid),
                    Err(_) => api_logs.staging_failed(&app, &build_guid),
                }
            }
            let result = match outcome {
                Ok(result) => {
                    let guid = build_guid.clone();
                    db.run(move |conn| store::builds::mark_staged(conn, &guid, &result))
                        .await
                        .map(|state| tracing::info!(build = %build_guid, %state, "staging finished"))
                }
                Err(error) => {
                    tracing::info!(build = %build_guid, %error, "staging failed");
                    let guid = build_guid.clone();
                    db.run(move |conn| store::builds::mark_failed(conn, &guid, &error))
                        .await
                }
            };
            if let Err(error) = result {
                tracing::error!(build = %build_guid, %error, internal = ?error.internal, "recording the staging outcome failed");
            }
            let _ = done.send(());
        });
        finished
    }

    /// Runs one staging request; `Err` is the build's error text.
    async fn stage(
        &self,
        db: &Db,
        job: StagingJob,
    ) -> Result<store::builds::StagingResult, String> {
        let Some(nats) = &self.nats else {
            return Err(NO_STAGERS.to_owned());
        };
        let Some(dea_id) =
            self.pool
                .pick(&job.stack, i64::from(job.memory_mb), i64::from(job.disk_mb))
        else {
            return Err(NO_STAGERS.to_owned());
        };
        let buildpacks = db
            .run(store::buildpacks::list)
            .await
            .map_err(|error| format!("StagingError - Staging error: {error}"))?;
        let admin_buildpacks: Vec<AdminBuildpack> = buildpacks
            .iter()
            .filter(|buildpack| buildpack.enabled)
            .filter(|buildpack| {
                buildpack
                    .stack
                    .as_deref()
                    .is_none_or(|stack| stack == job.stack)
            })
            .filter_map(|buildpack| {
                Some(AdminBuildpack {
                    key: buildpack.key.clone()?,
                    name: buildpack.name.clone(),
                    url: self.internal_uri(&format!(
                        "/internal/v3/buildpacks/{}/download",
                        buildpack.guid
                    )),
                })
            })
            .collect();
        let request = StagingRequest {
            app_id: job.app_guid.clone(),
            task_id: job.build_guid.clone(),
            stack: job.stack.clone(),
            properties: StagingProperties {
                buildpacks: job.buildpacks.clone(),
                resources: Some(Limits {
                    mem: u64::try_from(job.memory_mb).unwrap_or(0),
                    disk: u64::try_from(job.disk_mb).unwrap_or(0),
                    fds: 16384,
                }),
                environment: job.environment.clone(),
                services: job.services.clone(),
                meta: json!({"vcap_application": job.vcap_application}),
            },
            download_uri: self.internal_uri(&format!(
                "/internal/v3/packages/{}/download",
                job.package_guid
            )),
            upload_uri: self
                .internal_uri(&format!("/internal/v3/builds/{}/droplet", job.build_guid)),
            buildpack_cache_download_uri: None,
            buildpack_cache_upload_uri: None,
            admin_buildpacks: admin_buildpacks.clone(),
            start_message: None,
        };
        let payload = serde_json::to_vec(&request)
            .map_err(|error| format!("StagingError - Staging error: {error}"))?;
        let inbox = nats.new_inbox();
        let mut replies = nats
            .subscribe(inbox.clone())
            .await
            .map_err(|error| format!("StagingError - Staging error: {error}"))?;
        nats.publish_with_reply(
            protocol::subjects::staging_start(&dea_id),
            inbox,
            payload.into(),
        )
        .await
        .map_err(|error| format!("StagingError - Staging error: {error}"))?;
        let _ = nats.flush().await;
        tracing::info!(build = %job.build_guid, dea = %dea_id, "staging request sent");
        let deadline = tokio::time::Instant::now() + self.timeout;
        let response = loop {
            let message = match tokio::time::timeout_at(deadline, replies.next()).await {
                Ok(Some(message)) => message,
                Ok(None) => {
                    return Err(
                        "StagingError - Staging error: the staging reply channel closed".to_owned(),
                    )
                }
                Err(_) => {
                    return Err(format!(
                    "StagingTimeExpired - Staging time expired: no staging result after {} seconds",
                    self.timeout.as_secs()
                ))
                }
            };
            let Ok(response) = serde_json::from_slice::<StagingResponse>(&message.payload) else {
                tracing::warn!(build = %job.build_guid, "ignoring a malformed staging reply");
                continue;
            };
            // A first reply after setup only carries the streaming log URL.
            let is_progress = response.error.is_none()
                && response.error_info.is_none()
                && response.droplet_sha1.is_none()
                && response.detected_buildpack.is_none();
            if !is_progress {
                break response;
            }
        };
        let _ = replies.unsubscribe().await;
        result_of(response, &admin_buildpacks)
    }
}

/// The build outcome a final [`StagingResponse`] stands for.
fn result_of(
    response: StagingResponse,
    admin_buildpacks: &[AdminBuildpack],
) -> Result<store::builds::StagingResult, String> {
    if let Some(info) = &response.error_info {
        return Err(format!("{} - {}", info.kind, info.message));
    }
    if let Some(error) = &response.error {
        return Err(format!("StagingError - {error}"));
    }
    let detected = response.detected_buildpack.clone().unwrap_or_default();
    let admin_name = response.buildpack_key.as_ref().and_then(|key| {
        admin_buildpacks
            .iter()
            .find(|buildpack| &buildpack.key == key)
            .map(|buildpack| buildpack.name.clone())
    });
    let mut process_types: BTreeMap<String, String> = response.procfile.clone().unwrap_or_default();
    let start_command = response
        .detected_start_command
        .clone()
        .filter(|command| !command.is_empty());
    if !process_types.contains_key("web") {
        if let Some(command) = &start_command {
            process_types.insert("web".to_owned(), command.clone());
        }
    }
    let buildpacks = json!([{
        "name": admin_name.clone().unwrap_or_else(|| detected.clone()),
        "detect_output": if detected.is_empty() { Value::Null } else { Value::from(detected.clone()) },
        "buildpack_name": admin_name.unwrap_or_else(|| detected.clone()),
        "version": null,
    }]);
    let execution_metadata = match &start_command {
        Some(command) => json!({"start_command": command}).to_string(),
        None => String::new(),
    };
    Ok(store::builds::StagingResult {
        buildpacks: buildpacks.to_string(),
        process_types: serde_json::to_string(&process_types).unwrap_or_else(|_| "{}".to_owned()),
        execution_metadata,
        droplet_sha1: response.droplet_sha1,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn advert(id: &str, memory: i64) -> DeaAdvertise {
        DeaAdvertise {
            id: id.to_owned(),
            stacks: vec!["kiln-host".to_owned()],
            url: None,
            available_memory: memory,
            available_disk: 10_000,
            app_id_to_count: BTreeMap::new(),
            placement_properties: Default::default(),
        }
    }

    #[test]
    fn the_pool_picks_a_fitting_dea_with_the_most_memory() {
        let pool = DeaPool::default();
        pool.record(advert("a", 2048));
        pool.record(advert("b", 4096));
        assert_eq!(pool.pick("other-stack", 1, 1), None);
        assert_eq!(pool.pick("kiln-host", 8192, 1), None);
        assert_eq!(pool.pick("kiln-host", 1024, 1).as_deref(), Some("b"));
        assert_eq!(pool.pick("kiln-host", 3072, 1).as_deref(), Some("b"));
        assert_eq!(pool.pick("kiln-host", 2048, 1).as_deref(), Some("a"));
        assert_eq!(pool.pick("kiln-host", 1024, 1), None);
    }

    #[test]
    fn failures_render_as_cc_does() {
        let response = StagingResponse {
            task_id: "t".into(),
            error: Some("An app was not successfully detected by any available buildpack".into()),
            error_info: Some(protocol::dea::StagingErrorInfo {
                kind: "NoAppDetectedError".into(),
                message: "An app was not successfully detected by any available buildpack".into(),
            }),
            ..StagingResponse::default()
        };
        assert_eq!(
            result_of(response, &[]).unwrap_err(),
            "NoAppDetectedError - An app was not successfully detected by any available buildpack"
        );
    }

    #[test]
    fn internal_credentials_check_basic_auth() {
        use base64::Engine;
        let credentials = InternalCredentials {
            username: "u".into(),
            password: "p".into(),
        };
        let good = format!(
            "Basic {}",
            base64::engine::general_purpose::STANDARD.encode("u:p")
        );
        let bad = format!(
            "Basic {}",
            base64::engine::general_purpose::STANDARD.encode("u:x")
        );
        assert!(credentials.accepts(Some(&good)));
        assert!(!credentials.accepts(Some(&bad)));
        assert!(!credentials.accepts(Some("bearer x")));
        assert!(!credentials.accepts(None));
    }
}
