//! One instance's life, as a task the main loop owns: fetch the droplet (cached by SHA-1),
//! extract it, start the container through the launcher, health-check it, then wait for its
//! exit or a stop request. It reports `InstanceStarted`, `InstanceHealthy` and finally
//! `InstanceExited`, and removes the instance's directory. In isolated mode it also owns the
//! instance's network attachment (namespace, veth pair, proxies) for exactly that long.

use std::net::IpAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use protocol::dea::StartMessage;
use serde_json::Value;
use tokio::sync::{mpsc, watch};

use super::logs::InstanceLog;
use super::{blobs, Event, Shared};
use crate::container::disk::DiskVolume;
use crate::container::{Container, ContainerRuntime, ExitStatus, Limits, OutputLine};
use crate::launch::health::{
    probe, wait_until_healthy, HealthCheck, HealthCheckConfig, HealthError,
};
use crate::launch::{self, AppMetadata, InstanceEnvironment, InstanceNetwork};
use crate::network::{Attachment, CONTAINER_PORT};

/// How an instance ended, for `droplet.exited`.
#[derive(Debug, Clone)]
pub(super) struct ExitInfo {
    pub(super) status: Option<i32>,
    pub(super) description: String,
    /// The kernel killed it for exceeding its memory limit.
    pub(super) out_of_memory: bool,
}

impl ExitInfo {
    fn exited(status: ExitStatus) -> Self {
        let description = if status.oom_killed {
            "out of memory".to_string()
        } else {
            format!("APP/PROC/WEB: Exited with status {}", status.code)
        };
        ExitInfo {
            status: Some(status.code),
            description,
            out_of_memory: status.oom_killed,
        }
    }

    fn failed(description: String) -> Self {
        ExitInfo {
            status: None,
            description,
            out_of_memory: false,
        }
    }
}

pub(super) struct InstanceTask {
    pub(super) shared: Arc<Shared>,
    pub(super) message: StartMessage,
    pub(super) instance_id: String,
    pub(super) port: u16,
}

/// Resolves when a stop is requested (or the main loop dropped the instance).
async fn stop_requested(stop: &mut watch::Receiver<bool>) {
    let _ = stop.wait_for(|stop| *stop).await;
}

impl InstanceTask {
    /// A volume of `limits.disk` MB mounted on the instance's home directory (`None` without a
    /// disk limit).
    async fn disk_volume(&self) -> Result<Option<DiskVolume>, String> {
        let disk_mb = self.message.limits.disk;
        if disk_mb == 0 {
            return Ok(None);
        }
        let dir = self.instance_dir();
        tokio::fs::create_dir_all(&dir)
            .await
            .map_err(|error| format!("creating the instance directory: {error}"))?;
        DiskVolume::create(
            &dir.join("disk.img"),
            &dir.join("home"),
            disk_mb.saturating_mul(1024 * 1024),
        )
        .await
        .map(Some)
        .map_err(|error| error.to_string())
    }

    /// The instance's log stream.
    fn instance_log(&self) -> InstanceLog {
        InstanceLog::new(
            self.shared.logs.clone(),
            &self.message,
            &self.instance_id,
            &self.shared.id,
        )
    }

    fn instance_dir(&self) -> PathBuf {
        self.shared
            .config
            .base_dir
            .join("instances")
            .join(&self.instance_id)
    }

    pub(super) async fn run(self, mut stop: watch::Receiver<bool>) {
        // Isolated mode: the namespace, veth pair and proxies exist before the container and
        // are removed after it (the attachment is released below, or torn down when dropped).
        let attachment = match &self.shared.network {
            None => Ok(None),
            Some(network) => network.attach(Some(self.port)).await.map(Some),
        };
        // The app directory is an ext4 volume of the instance's disk quota: writes beyond it fail
        // with ENOSPC inside the container.
        let volume = self.disk_volume().await;
        let exit = match (&attachment, &volume) {
            (Ok(attachment), Ok(_)) => self.supervise(&mut stop, attachment.as_ref()).await,
            (Err(error), _) => {
                tracing::warn!(%error, "instance network setup failed");
                ExitInfo::failed(format!("setting up the container network: {error}"))
            }
            (_, Err(error)) => {
                tracing::warn!(%error, "instance disk setup failed");
                ExitInfo::failed(format!("setting up the instance disk: {error}"))
            }
        };
        if let Ok(Some(volume)) = volume {
            if let Err(error) = volume.release().await {
                tracing::warn!(%error, "releasing the instance disk failed");
            }
        }
        let log = self.instance_log();
        if let Some(code) = exit.status {
            log.exit_status(code, exit.out_of_memory, None);
        }
        log.stopping();
        log.destroyed();
        if let Ok(Some(attachment)) = attachment {
            attachment.release().await;
        }
        let dir = self.instance_dir();
        if let Err(error) = tokio::fs::remove_dir_all(&dir).await {
            if error.kind() != std::io::ErrorKind::NotFound {
                tracing::warn!(%error, dir = %dir.display(), "cannot remove instance directory");
            }
        }
        let _ = self
            .shared
            .events
            .send(Event::InstanceExited {
                instance_id: self.instance_id.clone(),
                exit,
            })
            .await;
    }

    /// Runs the lifecycle while logging the app's output.
    async fn supervise(
        &self,
        stop: &mut watch::Receiver<bool>,
        attachment: Option<&Attachment>,
    ) -> ExitInfo {
        let (output_sender, mut output) = mpsc::channel::<OutputLine>(256);
        let log = self.instance_log();
        let lifecycle = self.lifecycle(stop, output_sender, attachment, &log);
        tokio::pin!(lifecycle);
        // App output goes to the log until loggregator takes it; the container blocks while
        // the channel is full, so keep receiving.
        loop {
            tokio::select! {
                exit = &mut lifecycle => break exit,
                Some(line) = output.recv() => {
                    tracing::debug!(target: "dea::app_log", app = %self.message.droplet, instance = %self.instance_id, stream = super::stream_name(line.stream), line = %line.line);
                    log.app_line(line.stream, &line.line);
                }
            }
        }
    }

    async fn lifecycle(
        &self,
        stop: &mut watch::Receiver<bool>,
        output: mpsc::Sender<OutputLine>,
        attachment: Option<&Attachment>,
        log: &InstanceLog,
    ) -> ExitInfo {
        let grace = self.shared.config.stop_grace();
        let started = tokio::select! {
            started = self.start(output, attachment, log) => started,
            // Dropping `start` drops (kills) a container it may have created.
            _ = stop_requested(stop) => return ExitInfo::failed("stopped while starting".into()),
        };
        let (container, health) = match started {
            Ok(started) => started,
            Err(description) => {
                tracing::warn!(error = %description, "instance failed to start");
                return ExitInfo::failed(description);
            }
        };
        let _ = self
            .shared
            .events
            .send(Event::InstanceStarted {
                instance_id: self.instance_id.clone(),
                container: container.clone(),
            })
            .await;
        if health.is_some() {
            log.health_monitoring();
        }
        let health_started = std::time::Instant::now();
        let healthy = match &health {
            None => Ok(()),
            Some(health) => tokio::select! {
                healthy = wait_until_healthy(health, container.as_ref()) => healthy,
                _ = stop_requested(stop) => return stop_container(container.as_ref(), grace).await,
            },
        };
        match healthy {
            Ok(()) => {}
            Err(HealthError::Exited(status)) => return ExitInfo::exited(status),
            Err(error) => {
                tracing::warn!(%error, "instance failed its health check");
                log.never_healthy(health_started.elapsed());
                let mut exit = stop_container(container.as_ref(), Duration::ZERO).await;
                exit.description = error.to_string();
                return exit;
            }
        }
        log.healthy();
        let _ = self
            .shared
            .events
            .send(Event::InstanceHealthy {
                instance_id: self.instance_id.clone(),
            })
            .await;
        // Liveness: the port or http check again, every interval, while it runs.
        let liveness = health.filter(|health| health.check != HealthCheck::Process);
        let interval = Duration::from_secs(self.shared.config.liveness_check_interval_secs);
        loop {
            tokio::select! {
                status = container.wait() => return ExitInfo::exited(status),
                _ = stop_requested(stop) => return stop_container(container.as_ref(), grace).await,
                _ = tokio::time::sleep(interval), if liveness.is_some() => {
                    let Some(health) = &liveness else { continue };
                    let probed = probe(
                        &health.check,
                        health.host,
                        health.invocation_timeout,
                        Some(container.as_ref()),
                    )
                    .await;
                    if let Err(error) = probed {
                        if let Some(status) = container.exit_status() {
                            return ExitInfo::exited(status);
                        }
                        tracing::warn!(%error, "instance became unhealthy");
                        log.unhealthy();
                        let mut exit = stop_container(container.as_ref(), grace).await;
                        exit.description = format!("Instance became unhealthy: {error}");
                        return exit;
                    }
                }
            }
        }
    }

    /// Everything up to a started container, and its health check (`None`: no check).
    async fn start(
        &self,
        output: mpsc::Sender<OutputLine>,
        attachment: Option<&Attachment>,
        log: &InstanceLog,
    ) -> Result<(Arc<dyn Container>, Option<HealthCheckConfig>), String> {
        let message = &self.message;
        log.creating();
        log.downloading_droplet();
        let (droplet, downloaded) = match self.droplet().await {
            Ok(found) => found,
            Err(error) => {
                log.failed_to_create(&error);
                return Err(error);
            }
        };
        log.downloaded_droplet(downloaded);
        let dir = self.instance_dir();
        let home = dir.join("home");
        tokio::fs::create_dir_all(&home)
            .await
            .map_err(|error| format!("creating the instance directory: {error}"))?;
        let staging_info = launch::extract_droplet(&droplet, &home)
            .await
            .map_err(|error| error.to_string())?;
        let command = staging_info
            .start_command(message.start_command.as_deref())
            .map_err(|error| error.to_string())?;
        // On the host network the app listens on its host port; in its own namespace on 8080,
        // which the DEA's proxy serves on the host port and the health check probes directly.
        let (app_port, probe_host) = match attachment {
            None => (self.port, self.shared.host_ip),
            Some(attachment) => (CONTAINER_PORT, IpAddr::V4(attachment.container_ip())),
        };
        let environment = InstanceEnvironment {
            app: app_metadata(message),
            instance_guid: self.instance_id.clone(),
            instance_index: message.index,
            port: app_port,
            host_ip: self.shared.config.host_ip.clone(),
            network: attachment.map(|attachment| InstanceNetwork {
                host_port: self.port,
                container_ip: attachment.container_ip().to_string(),
                gateway: attachment.gateway().to_string(),
            }),
            memory_mb: message.limits.mem,
            disk_mb: message.limits.disk,
            fds: message.limits.fds,
            running_group_env: Vec::new(),
            user_env: parse_env(&message.env),
            vcap_services: message.services.clone(),
        };
        let defaults = Limits::default();
        let limits = Limits {
            memory_bytes: message.limits.mem.max(1) * 1024 * 1024,
            nofile: if message.limits.fds == 0 {
                defaults.nofile
            } else {
                message.limits.fds
            },
            ..defaults
        };
        let container_id = format!("i-{}", self.instance_id);
        let mut spec = launch::instance_container_spec(
            &container_id,
            &home,
            &command,
            &staging_info,
            environment.to_env(),
            limits,
            Vec::new(),
        );
        spec.network = attachment.map(Attachment::namespace);
        let container: Arc<dyn Container> = Arc::from(
            self.shared
                .runtime
                .start(spec, output)
                .await
                .map_err(|error| {
                    let error = format!("starting the container: {error}");
                    log.failed_to_create(&error);
                    error
                })?,
        );
        log.created();
        let check = match message.health_check_type.as_deref() {
            None | Some("") | Some("port") => Some(HealthCheck::Port { port: app_port }),
            Some("http") => Some(HealthCheck::Http {
                port: app_port,
                endpoint: message
                    .health_check_http_endpoint
                    .clone()
                    .filter(|e| !e.is_empty())
                    .unwrap_or_else(|| "/".to_string()),
            }),
            Some("process") => Some(HealthCheck::Process),
            Some("none") => None,
            Some(other) => {
                tracing::warn!(
                    health_check_type = other,
                    "unknown health check type; using port"
                );
                Some(HealthCheck::Port { port: app_port })
            }
        };
        let health = check.map(|check| {
            let mut config = HealthCheckConfig::new(check, probe_host);
            if let Some(timeout) = message.health_check_timeout.filter(|t| *t > 0) {
                config.start_timeout = Duration::from_secs(timeout);
            }
            config
        });
        Ok((container, health))
    }

    /// The droplet from the cache, downloading it (and checking its SHA-1) when missing; with
    /// the downloaded size (`None` when it came from the cache).
    async fn droplet(&self) -> Result<(PathBuf, Option<u64>), String> {
        let message = &self.message;
        let droplets = self.shared.config.base_dir.join("droplets");
        let valid_sha1 =
            !message.sha1.is_empty() && message.sha1.chars().all(|c| c.is_ascii_hexdigit());
        let cached = droplets.join(format!("{}.tgz", message.sha1));
        if valid_sha1 && tokio::fs::try_exists(&cached).await.unwrap_or(false) {
            return Ok((cached, None));
        }
        let download = droplets.join(format!("download-{}.tgz", self.instance_id));
        blobs::download(
            &self.shared.http,
            &message.executable_uri,
            &download,
            "downloading the droplet",
        )
        .await
        .map_err(|error| error.to_string())?;
        let actual = blobs::sha1_file(&download)
            .await
            .map_err(|error| error.to_string())?;
        if !message.sha1.is_empty() && actual != message.sha1 {
            let _ = tokio::fs::remove_file(&download).await;
            return Err(blobs::BlobError::Sha1Mismatch {
                what: "droplet".into(),
                expected: message.sha1.clone(),
                actual,
            }
            .to_string());
        }
        let size = tokio::fs::metadata(&download)
            .await
            .map(|metadata| metadata.len())
            .ok();
        let cached = droplets.join(format!("{actual}.tgz"));
        tokio::fs::rename(&download, &cached)
            .await
            .map_err(|error| format!("caching the droplet: {error}"))?;
        Ok((cached, size))
    }
}

async fn stop_container(container: &dyn Container, grace: Duration) -> ExitInfo {
    match container.stop(grace).await {
        Ok(status) => ExitInfo::exited(status),
        Err(error) => ExitInfo::failed(format!("stopping failed: {error}")),
    }
}

/// `K=V` strings to pairs (entries without `=` are skipped).
pub(super) fn parse_env(env: &[String]) -> Vec<(String, String)> {
    env.iter()
        .filter_map(|entry| entry.split_once('='))
        .map(|(name, value)| (name.to_string(), value.to_string()))
        .collect()
}

/// `VCAP_APPLICATION` as CC sent it, read into the launcher's metadata.
pub(super) fn app_metadata(message: &StartMessage) -> AppMetadata {
    let vcap = &message.vcap_application;
    let text = |key: &str| {
        vcap.get(key)
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_string()
    };
    let name = Some(text("application_name"))
        .filter(|n| !n.is_empty())
        .unwrap_or_else(|| message.name.clone());
    AppMetadata {
        app_guid: message.droplet.clone(),
        app_name: name,
        version: message.version.clone(),
        uris: message.uris.clone(),
        space_guid: text("space_id"),
        space_name: text("space_name"),
        organization_guid: text("organization_id"),
        organization_name: text("organization_name"),
        cf_api: text("cf_api"),
        process_guid: Some(text("process_id"))
            .filter(|p| !p.is_empty())
            .unwrap_or_else(|| message.droplet.clone()),
        process_type: Some(text("process_type"))
            .filter(|p| !p.is_empty())
            .unwrap_or_else(|| "web".to_string()),
    }
}
