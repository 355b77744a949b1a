//! The DEA agent on NATS: one main loop (`Agent::run`) that owns every instance's record, the
//! port pool and the reservations, driven by one `Event` enum — NATS messages, timer ticks,
//! reports from instance and staging tasks, shutdown. Slow work (downloads, staging, containers,
//! stats) runs in tasks the loop owns in a `JoinSet`; they report back through the event channel.

mod blobs;
mod instance;
mod logs;
mod staging_task;

use std::collections::{BTreeMap, HashMap};
use std::net::IpAddr;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use futures_util::StreamExt;
use protocol::dea::{
    DeaAdvertise, DeaStop, DeaUpdate, DropletExited, ExitReason, FindDroplet, FindDropletResponse,
    Heartbeat, InstanceHeartbeat, InstanceState, InstanceStats, PlacementProperties,
    StagingRequest as StagingRequestMessage, StagingStop, StartMessage, Usage,
};
use protocol::router::RegistryMessage;
use protocol::subjects;
use tokio::sync::{broadcast, mpsc, watch};
use tokio::task::JoinSet;
use tracing::Instrument;

use crate::config::DeaConfig;
use crate::container::{Container, RuncRuntime, Stream};
use crate::network::Network;

pub use staging_task::StagingLogLine;

/// Errors that keep the DEA from starting.
#[derive(Debug, thiserror::Error)]
pub enum DeaError {
    #[error("invalid DEA configuration: {0}")]
    Config(String),
    #[error("{context}: {source}")]
    Io {
        context: String,
        #[source]
        source: std::io::Error,
    },
    #[error("subscribing to {subject}: {message}")]
    Subscribe { subject: String, message: String },
    #[error("isolated container network: {0}")]
    Network(#[from] crate::network::NetworkError),
}

/// A running DEA.
pub struct DeaServer {
    id: String,
    shutdown: watch::Sender<bool>,
    main_loop: tokio::task::JoinHandle<()>,
    staging_logs: broadcast::Sender<StagingLogLine>,
}

impl DeaServer {
    /// The id in `dea.advertise` and in the per-DEA subjects.
    pub fn id(&self) -> &str {
        &self.id
    }

    /// Staging output as it happens (every line is also logged with `tracing` under the target
    /// `dea::staging_log`). Until the loggregator slice defines the log transport, this is how
    /// an embedding process reaches `STG` lines.
    pub fn staging_logs(&self) -> broadcast::Receiver<StagingLogLine> {
        self.staging_logs.subscribe()
    }

    /// Unregisters every route, stops every instance (`droplet.exited` with reason
    /// `DEA_SHUTDOWN`), cancels staging tasks and waits for all of it.
    pub async fn stop(self) {
        let _ = self.shutdown.send(true);
        if let Err(error) = self.main_loop.await {
            tracing::warn!(%error, "DEA main loop failed");
        }
        tracing::info!(dea = %self.id, "DEA stopped");
    }
}

/// Validates `config`, prepares `base_dir`, subscribes to the DEA subjects and starts the main
/// loop, which advertises at once.
pub async fn run(config: DeaConfig, nats: async_nats::Client) -> Result<DeaServer, DeaError> {
    config.validate()?;
    let id = config
        .id
        .clone()
        .unwrap_or_else(|| format!("{}-{}", config.index, uuid::Uuid::new_v4().simple()));
    // Scratch space of staging tasks from an earlier run is garbage.
    let stale_staging = config.base_dir.join("staging");
    if let Err(error) = tokio::fs::remove_dir_all(&stale_staging).await {
        if error.kind() != std::io::ErrorKind::NotFound {
            tracing::warn!(%error, dir = %stale_staging.display(), "cannot clear old staging directories");
        }
    }
    for dir in [
        "containers",
        "droplets",
        "buildpacks",
        "buildpack_cache",
        "staging",
        "instances",
    ] {
        let path = config.base_dir.join(dir);
        tokio::fs::create_dir_all(&path)
            .await
            .map_err(|source| DeaError::Io {
                context: format!("creating {}", path.display()),
                source,
            })?;
    }
    let host_ip: IpAddr = config
        .host_ip
        .parse()
        .map_err(|_| DeaError::Config(format!("host_ip `{}`", config.host_ip)))?;
    let network = match config.network.isolated_options() {
        Some(options) => Some(Network::start(options).await?),
        None => None,
    };

    let subscribe = |subject: String| {
        let nats = nats.clone();
        async move {
            nats.subscribe(subject.clone())
                .await
                .map_err(|error| DeaError::Subscribe {
                    subject,
                    message: error.to_string(),
                })
        }
    };
    let mut subscriptions = Vec::new();
    for subject in [
        subjects::dea_start(&id),
        subjects::staging_start(&id),
        subjects::DEA_STOP.to_string(),
        subjects::DEA_UPDATE.to_string(),
        subjects::DEA_FIND_DROPLET.to_string(),
        subjects::ROUTER_START.to_string(),
        subjects::STAGING_STOP.to_string(),
        "dea.locate".to_string(),
    ] {
        subscriptions.push(subscribe(subject).await?);
    }
    // Once `run` returns, messages to this DEA must reach it: a message the server echoes
    // back on this connection proves it has processed the subscriptions sent before it.
    subscriptions_ready(&nats).await?;
    let messages = futures_util::stream::select_all(subscriptions);

    let (staging_logs, _) = broadcast::channel(1024);
    let (shutdown, shutdown_receiver) = watch::channel(false);
    let (events, event_receiver) = mpsc::channel(256);
    let shared = Arc::new(Shared {
        id: id.clone(),
        runtime: RuncRuntime::new(config.runc_config()),
        // No overall timeout: droplets can be large; staging has its own time limit.
        http: reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(10))
            .read_timeout(Duration::from_secs(60))
            .build()
            .map_err(|error| DeaError::Config(format!("HTTP client: {error}")))?,
        nats: nats.clone(),
        host_ip,
        network,
        staging_logs: staging_logs.clone(),
        events,
        logs: match protocol::logs::LogEmitter::new(config.loggregator_ingress) {
            Ok(emitter) => emitter,
            Err(error) => {
                tracing::warn!(%error, "cannot send app logs; continuing without them");
                protocol::logs::LogEmitter::disabled()
            }
        },
        config,
    });
    let agent = Agent {
        ports: PortPool::new(
            shared.config.port_range.first,
            shared.config.port_range.last,
        ),
        shared,
        instances: HashMap::new(),
        staging: HashMap::new(),
        tasks: JoinSet::new(),
        shutting_down: false,
    };
    let main_loop = tokio::spawn(agent.run(messages, event_receiver, shutdown_receiver));
    tracing::info!(dea = %id, "DEA started");
    Ok(DeaServer {
        id,
        shutdown,
        main_loop,
        staging_logs,
    })
}

async fn subscriptions_ready(nats: &async_nats::Client) -> Result<(), DeaError> {
    let inbox = nats.new_inbox();
    let failed = |message: String| DeaError::Subscribe {
        subject: "(readiness probe)".to_string(),
        message,
    };
    let mut probe = nats
        .subscribe(inbox.clone())
        .await
        .map_err(|error| failed(error.to_string()))?;
    nats.publish(inbox, Vec::new().into())
        .await
        .map_err(|error| failed(error.to_string()))?;
    match tokio::time::timeout(Duration::from_secs(10), probe.next()).await {
        Ok(Some(_)) => Ok(()),
        Ok(None) => Err(failed("subscription closed".to_string())),
        Err(_) => Err(failed(
            "no echo from the NATS server within 10 s".to_string(),
        )),
    }
}

/// What every task may use.
struct Shared {
    id: String,
    config: DeaConfig,
    runtime: RuncRuntime,
    http: reqwest::Client,
    nats: async_nats::Client,
    host_ip: IpAddr,
    /// The isolated network (`network.mode: isolated`); `None` on the host network.
    network: Option<Arc<Network>>,
    staging_logs: broadcast::Sender<StagingLogLine>,
    events: mpsc::Sender<Event>,
    /// Sends app, staging and CELL lines to the loggregator (never blocks).
    logs: protocol::logs::LogEmitter,
}

impl Shared {
    async fn publish<T: serde::Serialize>(&self, subject: String, message: &T) {
        let payload = match serde_json::to_vec(message) {
            Ok(payload) => payload,
            Err(error) => {
                tracing::warn!(%error, %subject, "cannot encode message");
                return;
            }
        };
        if let Err(error) = self.nats.publish(subject.clone(), payload.into()).await {
            tracing::warn!(%error, %subject, "publish failed");
        }
    }
}

/// Everything the main loop reacts to.
enum Event {
    Nats(async_nats::Message),
    AdvertiseTick,
    HeartbeatTick,
    RegisterTick,
    /// The instance's container exists (it is still STARTING).
    InstanceStarted {
        instance_id: String,
        container: Arc<dyn Container>,
    },
    /// The instance passed its health check.
    InstanceHealthy {
        instance_id: String,
    },
    /// The instance is gone (exited, crashed, failed to start, or stopped).
    InstanceExited {
        instance_id: String,
        exit: instance::ExitInfo,
    },
    /// A staging task ended; on success with a start message, that instance starts now.
    StagingFinished {
        task_id: String,
        start: Option<Box<StartMessage>>,
    },
    Shutdown,
}

/// The main loop's record of one instance.
struct InstanceRecord {
    message: StartMessage,
    instance_id: String,
    state: InstanceState,
    state_timestamp: f64,
    port: u16,
    container: Option<Arc<dyn Container>>,
    running_since: Option<Instant>,
    /// Routes are registered (between health and stop/exit).
    registered: bool,
    /// Set when a stop was requested: the reason reported once the instance is gone.
    stop_reason: Option<ExitReason>,
    stop: watch::Sender<bool>,
}

struct StagingReservation {
    app_id: String,
    /// Where the staging reply goes, for an error reply when the task is cancelled.
    reply: Option<String>,
    abort: tokio::task::AbortHandle,
}

struct Agent {
    shared: Arc<Shared>,
    instances: HashMap<String, InstanceRecord>,
    staging: HashMap<String, StagingReservation>,
    ports: PortPool,
    tasks: JoinSet<()>,
    shutting_down: bool,
}

fn now_timestamp() -> f64 {
    SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map(|d| d.as_secs_f64())
        .unwrap_or_default()
}

fn ticker(secs: u64) -> tokio::time::Interval {
    let mut interval = tokio::time::interval(Duration::from_secs(secs));
    interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    interval
}

impl Agent {
    async fn run(
        mut self,
        mut messages: impl futures_util::Stream<Item = async_nats::Message> + Unpin,
        mut events: mpsc::Receiver<Event>,
        mut shutdown: watch::Receiver<bool>,
    ) {
        let config = &self.shared.config;
        let mut advertise = ticker(config.advertise_interval_secs);
        let mut heartbeat = ticker(config.heartbeat_interval_secs);
        let mut register = ticker(config.router_register_interval_secs);
        register.reset();
        loop {
            if self.shutting_down && self.instances.is_empty() && self.tasks.is_empty() {
                break;
            }
            let event = tokio::select! {
                Some(message) = messages.next(), if !self.shutting_down => Event::Nats(message),
                Some(event) = events.recv() => event,
                _ = advertise.tick(), if !self.shutting_down => Event::AdvertiseTick,
                _ = heartbeat.tick() => Event::HeartbeatTick,
                _ = register.tick(), if !self.shutting_down => Event::RegisterTick,
                _ = shutdown.wait_for(|stop| *stop), if !self.shutting_down => Event::Shutdown,
                Some(result) = self.tasks.join_next(), if !self.tasks.is_empty() => {
                    if let Err(error) = result {
                        if !error.is_cancelled() {
                            tracing::warn!(%error, "DEA task failed");
                        }
                    }
                    continue;
                }
            };
            self.handle(event).await;
        }
        // Every instance is gone, and with it every veth and namespace; the rules go last.
        if let Some(network) = self.shared.network.clone() {
            network.stop().await;
        }
        if let Err(error) = self.shared.nats.flush().await {
            tracing::warn!(%error, "NATS flush failed");
        }
    }

    async fn handle(&mut self, event: Event) {
        match event {
            Event::Nats(message) => {
                let span = tracing::info_span!("nats", subject = %message.subject);
                self.handle_message(message).instrument(span).await;
            }
            Event::AdvertiseTick => self.advertise().await,
            Event::HeartbeatTick => self.heartbeat().await,
            Event::RegisterTick => self.register_all().await,
            Event::InstanceStarted {
                instance_id,
                container,
            } => {
                if let Some(record) = self.instances.get_mut(&instance_id) {
                    record.container = Some(container);
                }
            }
            Event::InstanceHealthy { instance_id } => {
                let Some(record) = self.instances.get_mut(&instance_id) else {
                    return;
                };
                if record.stop_reason.is_some() {
                    return;
                }
                record.state = InstanceState::Running;
                record.state_timestamp = now_timestamp();
                record.running_since = Some(Instant::now());
                record.registered = true;
                tracing::info!(app = %record.message.droplet, instance = %instance_id, port = record.port, "instance running");
                let registration = self.registration(&instance_id, None);
                if let Some(registration) = registration {
                    self.shared
                        .publish(subjects::ROUTER_REGISTER.to_string(), &registration)
                        .await;
                }
                // Like dea_ng: a state change is heartbeated at once (after the route is
                // registered), so the Cloud Controller learns it before the next heartbeat.
                self.single_heartbeat(&instance_id).await;
            }
            Event::InstanceExited { instance_id, exit } => {
                self.instance_exited(&instance_id, exit).await
            }
            Event::StagingFinished { task_id, start } => {
                self.staging.remove(&task_id);
                if let Some(start) = start {
                    if !self.shutting_down {
                        self.start_instance(*start).await;
                    }
                }
            }
            Event::Shutdown => self.shutdown().await,
        }
    }

    async fn handle_message(&mut self, message: async_nats::Message) {
        let subject = message.subject.to_string();
        let id = self.shared.id.clone();
        if subject == subjects::dea_start(&id) {
            match serde_json::from_slice::<StartMessage>(&message.payload) {
                Ok(start) => self.start_instance(start).await,
                Err(error) => tracing::warn!(%error, "ignoring malformed start message"),
            }
        } else if subject == subjects::staging_start(&id) {
            self.start_staging(message).await;
        } else if subject == subjects::DEA_STOP {
            match serde_json::from_slice::<DeaStop>(&message.payload) {
                Ok(stop) => self.stop_matching(&stop).await,
                Err(error) => tracing::warn!(%error, "ignoring malformed dea.stop"),
            }
        } else if subject == subjects::DEA_UPDATE {
            match serde_json::from_slice::<DeaUpdate>(&message.payload) {
                Ok(update) => self.update(update).await,
                Err(error) => tracing::warn!(%error, "ignoring malformed dea.update"),
            }
        } else if subject == subjects::DEA_FIND_DROPLET {
            match serde_json::from_slice::<FindDroplet>(&message.payload) {
                Ok(find) => self.find_droplet(find, message.reply.map(|r| r.to_string())),
                Err(error) => tracing::warn!(%error, "ignoring malformed dea.find.droplet"),
            }
        } else if subject == subjects::ROUTER_START {
            // The body (interval hints) does not change our interval; re-register at once.
            self.register_all().await;
        } else if subject == subjects::STAGING_STOP {
            match serde_json::from_slice::<StagingStop>(&message.payload) {
                Ok(stop) => {
                    self.cancel_staging(Some(&stop.app_id), "staging was cancelled")
                        .await
                }
                Err(error) => tracing::warn!(%error, "ignoring malformed staging.stop"),
            }
        } else if subject == "dea.locate" {
            self.advertise().await;
        }
    }

    fn reserved(&self) -> (u64, u64) {
        let config = &self.shared.config;
        let mut memory = 0;
        let mut disk = 0;
        for record in self.instances.values() {
            memory += record.message.limits.mem;
            disk += record.message.limits.disk;
        }
        memory += self.staging.len() as u64 * config.staging_memory_mb;
        disk += self.staging.len() as u64 * config.staging_disk_mb;
        (memory, disk)
    }

    async fn advertise(&self) {
        let config = &self.shared.config;
        let (memory, disk) = self.reserved();
        let mut app_id_to_count = BTreeMap::new();
        for record in self.instances.values() {
            *app_id_to_count
                .entry(record.message.droplet.clone())
                .or_insert(0) += 1;
        }
        let advertise = DeaAdvertise {
            id: self.shared.id.clone(),
            stacks: config.stacks.clone(),
            url: None,
            available_memory: config.memory_mb as i64 - memory as i64,
            available_disk: config.disk_mb as i64 - disk as i64,
            app_id_to_count,
            placement_properties: PlacementProperties::default(),
        };
        self.shared
            .publish(subjects::DEA_ADVERTISE.to_string(), &advertise)
            .await;
    }

    async fn heartbeat(&self) {
        self.publish_heartbeat(None).await;
    }

    /// A heartbeat carrying one instance (sent when it starts and when it becomes RUNNING).
    async fn single_heartbeat(&self, instance_id: &str) {
        self.publish_heartbeat(Some(instance_id)).await;
    }

    async fn publish_heartbeat(&self, only: Option<&str>) {
        let droplets = self
            .instances
            .values()
            .filter(|record| only.is_none_or(|id| record.instance_id == id))
            .map(|record| InstanceHeartbeat {
                cc_partition: record.message.cc_partition.clone(),
                droplet: record.message.droplet.clone(),
                version: record.message.version.clone(),
                instance: record.instance_id.clone(),
                index: record.message.index,
                state: record.state,
                state_timestamp: record.state_timestamp,
            })
            .collect();
        let heartbeat = Heartbeat {
            dea: self.shared.id.clone(),
            droplets,
        };
        self.shared
            .publish(subjects::DEA_HEARTBEAT.to_string(), &heartbeat)
            .await;
    }

    /// The route registration of one instance, for `uris` (default: its own).
    fn registration(
        &self,
        instance_id: &str,
        uris: Option<Vec<String>>,
    ) -> Option<RegistryMessage> {
        let record = self.instances.get(instance_id)?;
        // The route-emitter's tags, so the router's access lines carry the app's names.
        let metadata = instance::app_metadata(&record.message);
        let tags = BTreeMap::from([
            (
                "component".to_string(),
                format!("dea-{}", self.shared.config.index),
            ),
            ("app_id".to_string(), metadata.app_guid),
            ("app_name".to_string(), metadata.app_name),
            ("space_id".to_string(), metadata.space_guid),
            ("space_name".to_string(), metadata.space_name),
            ("organization_id".to_string(), metadata.organization_guid),
            ("organization_name".to_string(), metadata.organization_name),
            ("process_id".to_string(), metadata.process_guid),
            ("process_type".to_string(), metadata.process_type),
            (
                "process_instance_id".to_string(),
                record.instance_id.clone(),
            ),
        ]);
        Some(RegistryMessage {
            host: self.shared.config.host_ip.clone(),
            port: record.port,
            uris: uris.unwrap_or_else(|| record.message.uris.clone()),
            tags,
            app: Some(record.message.droplet.clone()),
            private_instance_id: Some(record.instance_id.clone()),
            private_instance_index: Some(record.message.index.to_string()),
            dea: Some(self.shared.id.clone()),
            ..RegistryMessage::default()
        })
    }

    async fn register_all(&self) {
        for (instance_id, record) in &self.instances {
            if record.registered && !record.message.uris.is_empty() {
                if let Some(registration) = self.registration(instance_id, None) {
                    self.shared
                        .publish(subjects::ROUTER_REGISTER.to_string(), &registration)
                        .await;
                }
            }
        }
    }

    async fn unregister(&mut self, instance_id: &str) {
        let Some(record) = self.instances.get_mut(instance_id) else {
            return;
        };
        if !std::mem::take(&mut record.registered) || record.message.uris.is_empty() {
            return;
        }
        if let Some(registration) = self.registration(instance_id, None) {
            self.shared
                .publish(subjects::ROUTER_UNREGISTER.to_string(), &registration)
                .await;
        }
    }

    async fn start_instance(&mut self, message: StartMessage) {
        let instance_id = uuid::Uuid::new_v4().simple().to_string();
        let span = tracing::info_span!("instance", app = %message.droplet, instance = %instance_id, index = message.index);
        let config = &self.shared.config;
        let (memory, disk) = self.reserved();
        let refusal = if self.shutting_down {
            Some("the DEA is shutting down".to_string())
        } else if !config.stacks.contains(&message.stack) {
            Some(format!("stack `{}` is not supported", message.stack))
        } else if memory + message.limits.mem > config.memory_mb
            || disk + message.limits.disk > config.disk_mb
        {
            Some("not enough memory or disk".to_string())
        } else {
            None
        };
        let port = match refusal {
            Some(_) => None,
            None => self.ports.allocate(),
        };
        let Some(port) = port else {
            let reason = refusal.unwrap_or_else(|| "no free port".to_string());
            tracing::warn!(app = %message.droplet, %reason, "cannot start instance");
            let exited = DropletExited {
                cc_partition: message.cc_partition.clone(),
                droplet: message.droplet.clone(),
                version: message.version.clone(),
                instance: instance_id,
                index: message.index,
                reason: ExitReason::Crashed,
                exit_status: None,
                exit_description: Some(format!("failed to start: {reason}")),
                crash_timestamp: Some(now_timestamp() as i64),
            };
            self.shared
                .publish(subjects::DROPLET_EXITED.to_string(), &exited)
                .await;
            return;
        };
        let (stop, stop_receiver) = watch::channel(false);
        let task = instance::InstanceTask {
            shared: self.shared.clone(),
            message: message.clone(),
            instance_id: instance_id.clone(),
            port,
        };
        self.tasks
            .spawn(task.run(stop_receiver).instrument(span.clone()));
        tracing::info!(app = %message.droplet, instance = %instance_id, port, "instance starting");
        let instance_id_for_heartbeat = instance_id.clone();
        self.instances.insert(
            instance_id.clone(),
            InstanceRecord {
                message,
                instance_id,
                state: InstanceState::Starting,
                state_timestamp: now_timestamp(),
                port,
                container: None,
                running_since: None,
                registered: false,
                stop_reason: None,
                stop,
            },
        );
        self.single_heartbeat(&instance_id_for_heartbeat).await;
    }

    fn matching(
        &self,
        droplet: &str,
        version: Option<&str>,
        instances: Option<&[String]>,
        indices: Option<&[u32]>,
        states: Option<&[InstanceState]>,
    ) -> Vec<String> {
        self.instances
            .values()
            .filter(|r| r.message.droplet == droplet)
            .filter(|r| version.is_none_or(|v| r.message.version == v))
            .filter(|r| instances.is_none_or(|ids| ids.contains(&r.instance_id)))
            .filter(|r| indices.is_none_or(|ids| ids.contains(&r.message.index)))
            .filter(|r| states.is_none_or(|s| s.contains(&r.state)))
            .map(|r| r.instance_id.clone())
            .collect()
    }

    async fn stop_matching(&mut self, stop: &DeaStop) {
        let ids = self.matching(
            &stop.droplet,
            stop.version.as_deref(),
            stop.instances.as_deref(),
            stop.indices.as_deref(),
            stop.states.as_deref(),
        );
        tracing::info!(app = %stop.droplet, n_instances = ids.len(), "dea.stop");
        for instance_id in ids {
            self.stop_instance(&instance_id, ExitReason::Stopped).await;
        }
        // A bare stop also cancels the app's staging.
        if stop.version.is_none()
            && stop.instances.is_none()
            && stop.indices.is_none()
            && stop.states.is_none()
        {
            self.cancel_staging(Some(&stop.droplet), "staging was cancelled")
                .await;
        }
    }

    /// Aborts the staging tasks of `app_id` (all when `None`); their requesters get an error.
    async fn cancel_staging(&mut self, app_id: Option<&str>, why: &str) {
        let task_ids: Vec<String> = self
            .staging
            .iter()
            .filter(|(_, reservation)| app_id.is_none_or(|app| reservation.app_id == app))
            .map(|(task_id, _)| task_id.clone())
            .collect();
        for task_id in task_ids {
            let Some(reservation) = self.staging.remove(&task_id) else {
                continue;
            };
            reservation.abort.abort();
            tracing::info!(%task_id, app = %reservation.app_id, why, "staging cancelled");
            if let Some(reply) = reservation.reply {
                let response = staging_task::error_response(
                    task_id,
                    Some(reservation.app_id),
                    &format!("Staging error: {why}"),
                );
                self.shared.publish(reply, &response).await;
            }
        }
    }

    async fn stop_instance(&mut self, instance_id: &str, reason: ExitReason) {
        self.unregister(instance_id).await;
        let Some(record) = self.instances.get_mut(instance_id) else {
            return;
        };
        if record.stop_reason.is_some() {
            return;
        }
        record.stop_reason = Some(reason);
        record.state = InstanceState::Stopping;
        record.state_timestamp = now_timestamp();
        let _ = record.stop.send(true);
    }

    async fn update(&mut self, update: DeaUpdate) {
        let ids = self.matching(&update.droplet, None, None, None, None);
        for instance_id in ids {
            let (added, removed, registered) = {
                let Some(record) = self.instances.get_mut(&instance_id) else {
                    continue;
                };
                let added: Vec<String> = update
                    .uris
                    .iter()
                    .filter(|u| !record.message.uris.contains(u))
                    .cloned()
                    .collect();
                let removed: Vec<String> = record
                    .message
                    .uris
                    .iter()
                    .filter(|u| !update.uris.contains(u))
                    .cloned()
                    .collect();
                record.message.uris = update.uris.clone();
                if let Some(version) = &update.version {
                    record.message.version = version.clone();
                }
                (added, removed, record.registered)
            };
            if !registered {
                continue;
            }
            if !added.is_empty() {
                if let Some(registration) = self.registration(&instance_id, Some(added)) {
                    self.shared
                        .publish(subjects::ROUTER_REGISTER.to_string(), &registration)
                        .await;
                }
            }
            if !removed.is_empty() {
                if let Some(registration) = self.registration(&instance_id, Some(removed)) {
                    self.shared
                        .publish(subjects::ROUTER_UNREGISTER.to_string(), &registration)
                        .await;
                }
            }
        }
    }

    /// Replies once per matching instance, from a task (stats read cgroups and walk the disk).
    fn find_droplet(&mut self, find: FindDroplet, reply: Option<String>) {
        let Some(reply) = reply else {
            tracing::warn!("dea.find.droplet without a reply subject");
            return;
        };
        let ids = self.matching(
            &find.droplet,
            find.version.as_deref(),
            find.instances.as_deref(),
            find.indices.as_deref(),
            find.states.as_deref(),
        );
        let mut answers = Vec::new();
        for instance_id in ids {
            let Some(record) = self.instances.get(&instance_id) else {
                continue;
            };
            let response = FindDropletResponse {
                dea: self.shared.id.clone(),
                droplet: record.message.droplet.clone(),
                version: record.message.version.clone(),
                instance: record.instance_id.clone(),
                index: record.message.index,
                state: record.state,
                state_timestamp: record.state_timestamp,
                stats: None,
            };
            let stats = find.include_stats.then(|| {
                let limits = record.message.limits;
                let stats = InstanceStats {
                    name: record.message.name.clone(),
                    uris: record.message.uris.clone(),
                    host: self.shared.config.host_ip.clone(),
                    port: record.port,
                    uptime: record
                        .running_since
                        .map(|since| since.elapsed().as_secs())
                        .unwrap_or(0),
                    mem_quota: limits.mem * 1024 * 1024,
                    disk_quota: limits.disk * 1024 * 1024,
                    fds_quota: limits.fds,
                    usage: Usage {
                        time: chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
                        cpu: 0.0,
                        mem: 0,
                        disk: 0,
                    },
                };
                (stats, record.container.clone())
            });
            answers.push((response, stats));
        }
        let shared = self.shared.clone();
        self.tasks.spawn(async move {
            for (mut response, stats) in answers {
                if let Some((mut stats, container)) = stats {
                    if let Some(container) = container {
                        match container.stats().await {
                            Ok(usage) => {
                                stats.usage.cpu = usage.cpu_fraction;
                                stats.usage.mem = usage.memory_bytes;
                                stats.usage.disk = usage.disk_bytes;
                            }
                            Err(error) => {
                                tracing::debug!(%error, instance = %response.instance, "no stats")
                            }
                        }
                    }
                    response.stats = Some(stats);
                }
                shared.publish(reply.clone(), &response).await;
            }
        });
    }

    async fn instance_exited(&mut self, instance_id: &str, exit: instance::ExitInfo) {
        self.unregister(instance_id).await;
        let Some(record) = self.instances.remove(instance_id) else {
            return;
        };
        self.ports.release(record.port);
        let reason = record.stop_reason.unwrap_or(ExitReason::Crashed);
        let crashed = reason == ExitReason::Crashed;
        tracing::info!(
            app = %record.message.droplet,
            instance = %instance_id,
            reason = ?reason,
            exit_status = ?exit.status,
            description = %exit.description,
            "instance exited"
        );
        let exited = DropletExited {
            cc_partition: record.message.cc_partition.clone(),
            droplet: record.message.droplet.clone(),
            version: record.message.version.clone(),
            instance: record.instance_id.clone(),
            index: record.message.index,
            reason,
            exit_status: exit.status,
            exit_description: Some(exit.description),
            crash_timestamp: crashed.then(|| now_timestamp() as i64),
        };
        self.shared
            .publish(subjects::DROPLET_EXITED.to_string(), &exited)
            .await;
    }

    async fn start_staging(&mut self, message: async_nats::Message) {
        let reply = message.reply.as_ref().map(|r| r.to_string());
        let request = match serde_json::from_slice::<StagingRequestMessage>(&message.payload) {
            Ok(request) => request,
            Err(error) => {
                tracing::warn!(%error, "malformed staging request");
                if let Some(reply) = reply {
                    let response = staging_task::error_response(
                        String::new(),
                        None,
                        &format!("Staging error: malformed staging request: {error}"),
                    );
                    self.shared.publish(reply, &response).await;
                }
                return;
            }
        };
        let config = &self.shared.config;
        let (memory, disk) = self.reserved();
        let refusal = if self.shutting_down {
            Some("the DEA is shutting down")
        } else if !config.stacks.contains(&request.stack) {
            Some("stack not supported")
        } else if memory + config.staging_memory_mb > config.memory_mb
            || disk + config.staging_disk_mb > config.disk_mb
        {
            Some("not enough memory or disk")
        } else if self.staging.contains_key(&request.task_id) {
            Some("task already staging")
        } else {
            None
        };
        if let Some(refusal) = refusal {
            tracing::warn!(task_id = %request.task_id, app = %request.app_id, refusal, "staging refused");
            if let Some(reply) = reply {
                let response = staging_task::error_response(
                    request.task_id.clone(),
                    Some(request.app_id.clone()),
                    &format!("Staging error: {refusal}"),
                );
                self.shared.publish(reply, &response).await;
            }
            return;
        }
        let span =
            tracing::info_span!("staging", app = %request.app_id, task_id = %request.task_id);
        let task_id = request.task_id.clone();
        let app_id = request.app_id.clone();
        let task = staging_task::StagingTask {
            shared: self.shared.clone(),
            request,
            reply: reply.clone(),
        };
        let abort = self.tasks.spawn(task.run().instrument(span));
        self.staging.insert(
            task_id,
            StagingReservation {
                app_id,
                reply,
                abort,
            },
        );
    }

    async fn shutdown(&mut self) {
        tracing::info!(n_instances = self.instances.len(), "DEA shutting down");
        self.shutting_down = true;
        let mut app_id_to_count = BTreeMap::new();
        for record in self.instances.values() {
            *app_id_to_count
                .entry(record.message.droplet.clone())
                .or_insert(0) += 1;
        }
        let goodbye = protocol::dea::DeaShutdown {
            id: self.shared.id.clone(),
            ip: self.shared.config.host_ip.clone(),
            version: env!("CARGO_PKG_VERSION").to_owned(),
            app_id_to_count,
        };
        self.shared
            .publish(subjects::DEA_SHUTDOWN.to_string(), &goodbye)
            .await;
        let ids: Vec<String> = self.instances.keys().cloned().collect();
        for instance_id in &ids {
            self.unregister(instance_id).await;
        }
        for instance_id in &ids {
            self.stop_instance(instance_id, ExitReason::DeaShutdown)
                .await;
        }
        self.cancel_staging(None, "the DEA is shutting down").await;
    }
}

/// Host ports handed to instances, skipping ports something else is bound to.
struct PortPool {
    first: u16,
    last: u16,
    next: u16,
    in_use: std::collections::HashSet<u16>,
}

impl PortPool {
    fn new(first: u16, last: u16) -> Self {
        PortPool {
            first,
            last,
            next: first,
            in_use: Default::default(),
        }
    }

    fn allocate(&mut self) -> Option<u16> {
        let size = u32::from(self.last - self.first) + 1;
        for _ in 0..size {
            let port = self.next;
            self.next = if self.next >= self.last {
                self.first
            } else {
                self.next + 1
            };
            if self.in_use.contains(&port) {
                continue;
            }
            if std::net::TcpListener::bind(("0.0.0.0", port)).is_err() {
                continue;
            }
            self.in_use.insert(port);
            return Some(port);
        }
        None
    }

    fn release(&mut self, port: u16) {
        self.in_use.remove(&port);
    }
}

/// The text of one staging log line's stream, for the tracing output.
fn stream_name(stream: Stream) -> &'static str {
    match stream {
        Stream::Stdout => "stdout",
        Stream::Stderr => "stderr",
    }
}
