//! One staging request (`staging.<id>.start`), as a task the main loop owns: download and
//! safely extract the package, fetch the admin buildpacks (cached by key), run
//! `crate::staging::stage`, upload the droplet (and the buildpack cache), and reply once with a
//! `StagingResponse`. Droplet and cache uploads are raw `application/octet-stream` POST bodies.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use protocol::dea::{
    AdminBuildpack, StagingErrorInfo, StagingRequest as StagingRequestMessage, StagingResponse,
};
use tokio::sync::mpsc;

use super::instance::{app_metadata, parse_env};
use super::{blobs, Event, Shared};
use crate::container::{Limits, OutputLine, Stream};
use crate::launch::AppMetadata;
use crate::staging::{self, Buildpack, StagingEnvironment, StagingError, StagingResult};

/// One line of staging output, as broadcast by [`crate::DeaServer::staging_logs`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StagingLogLine {
    /// The build guid of the staging request.
    pub task_id: String,
    pub app_id: String,
    pub stream: Stream,
    pub line: String,
}

pub(super) struct StagingTask {
    pub(super) shared: Arc<Shared>,
    pub(super) request: StagingRequestMessage,
    pub(super) reply: Option<String>,
}

/// Why staging failed: in the buildpack lifecycle (CF's own texts) or around it.
enum Failure {
    Lifecycle(StagingError),
    Setup(String),
}

struct Staged {
    result: StagingResult,
    droplet_sha1: String,
}

/// A failed [`StagingResponse`] of type `StagingError` with `message`.
pub(super) fn error_response(
    task_id: String,
    app_id: Option<String>,
    message: &str,
) -> StagingResponse {
    StagingResponse {
        task_id,
        app_id,
        error: Some(message.to_string()),
        error_info: Some(StagingErrorInfo {
            kind: "StagingError".to_string(),
            message: message.to_string(),
        }),
        ..StagingResponse::default()
    }
}

/// `[A-Za-z0-9_.-]` only, never `.` or `..`, at most `max` characters.
fn sanitise(text: &str, max: usize) -> String {
    let cleaned: String = text
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '_' || c == '.' {
                c
            } else {
                '_'
            }
        })
        .take(max)
        .collect();
    if cleaned.is_empty() || cleaned.chars().all(|c| c == '.') {
        format!("x{}", cleaned.replace('.', "_"))
    } else {
        cleaned
    }
}

impl StagingTask {
    pub(super) async fn run(self) {
        let config = &self.shared.config;
        let request = &self.request;
        let work_dir = config.base_dir.join("staging").join(format!(
            "{}-{}",
            sanitise(&request.task_id, 40),
            uuid::Uuid::new_v4().simple()
        ));
        tracing::info!("staging started");
        let limit = Duration::from_secs(config.max_staging_duration_secs);
        let outcome = match tokio::time::timeout(limit, self.stage(&work_dir)).await {
            Ok(outcome) => outcome,
            Err(_) => Err(Failure::Setup(format!(
                "Staging error: staging exceeded the time limit of {} seconds",
                limit.as_secs()
            ))),
        };
        if let Err(error) = tokio::fs::remove_dir_all(&work_dir).await {
            if error.kind() != std::io::ErrorKind::NotFound {
                tracing::warn!(%error, "cannot remove the staging directory");
            }
        }
        let mut start = None;
        let response = match outcome {
            Ok(staged) => {
                tracing::info!(droplet_sha1 = %staged.droplet_sha1, buildpack = %staged.result.detected_buildpack, "staging succeeded");
                if let Some(mut message) = request.start_message.clone() {
                    message.sha1 = staged.droplet_sha1.clone();
                    start = Some(Box::new(message));
                }
                let result = staged.result;
                StagingResponse {
                    task_id: request.task_id.clone(),
                    app_id: Some(request.app_id.clone()),
                    detected_buildpack: Some(result.detected_buildpack.clone()),
                    buildpack_key: Some(result.buildpack_key.clone()).filter(|k| !k.is_empty()),
                    droplet_sha1: Some(staged.droplet_sha1),
                    detected_start_command: Some(result.start_command.clone()),
                    procfile: Some(result.process_types.clone()),
                    ..StagingResponse::default()
                }
            }
            Err(Failure::Lifecycle(error)) => {
                let cc = error.cc_error();
                tracing::info!(%error, cc_error = cc.name, "staging failed");
                StagingResponse {
                    task_id: request.task_id.clone(),
                    app_id: Some(request.app_id.clone()),
                    error: Some(cc.description.clone()),
                    error_info: Some(StagingErrorInfo {
                        kind: cc.name.to_string(),
                        message: cc.description,
                    }),
                    ..StagingResponse::default()
                }
            }
            Err(Failure::Setup(message)) => {
                tracing::warn!(error = %message, "staging failed");
                self.log(Stream::Stderr, &message);
                error_response(
                    request.task_id.clone(),
                    Some(request.app_id.clone()),
                    &message,
                )
            }
        };
        if let Some(reply) = &self.reply {
            self.shared.publish(reply.clone(), &response).await;
        }
        let _ = self
            .shared
            .events
            .send(Event::StagingFinished {
                task_id: request.task_id.clone(),
                start,
            })
            .await;
    }

    fn log(&self, stream: Stream, line: &str) {
        tracing::info!(target: "dea::staging_log", app = %self.request.app_id, task_id = %self.request.task_id, stream = super::stream_name(stream), line);
        super::logs::StagingLog::new(self.shared.logs.clone(), &self.request).line(stream, line);
        let _ = self.shared.staging_logs.send(StagingLogLine {
            task_id: self.request.task_id.clone(),
            app_id: self.request.app_id.clone(),
            stream,
            line: line.to_string(),
        });
    }

    async fn stage(&self, work_dir: &Path) -> Result<Staged, Failure> {
        let config = &self.shared.config;
        let request = &self.request;
        let setup = |what: &str| {
            let what = what.to_string();
            move |error: blobs::BlobError| Failure::Setup(format!("Staging error: {what}: {error}"))
        };
        tokio::fs::create_dir_all(work_dir).await.map_err(|error| {
            Failure::Setup(format!(
                "Staging error: creating the work directory: {error}"
            ))
        })?;

        let package = work_dir.join("package.zip");
        blobs::download(
            &self.shared.http,
            &request.download_uri,
            &package,
            "package",
        )
        .await
        .map_err(setup("downloading the app package failed"))?;
        let app_dir = work_dir.join("app");
        blobs::extract_zip(&package, &app_dir)
            .await
            .map_err(setup("extracting the app package failed"))?;

        let (buildpacks, skip_detect) = self.buildpacks().await?;

        let cache_dir = config
            .base_dir
            .join("buildpack_cache")
            .join(sanitise(&request.app_id, 64));
        self.restore_cache(work_dir, &cache_dir).await;

        let resources = request.properties.resources.unwrap_or_default();
        let memory_mb = if resources.mem > 0 {
            resources.mem.min(config.staging_memory_mb)
        } else {
            config.staging_memory_mb
        };
        let app = match &request.start_message {
            Some(message) => app_metadata(message),
            None => AppMetadata {
                app_guid: request.app_id.clone(),
                process_type: "web".into(),
                ..AppMetadata::default()
            },
        };
        let environment = StagingEnvironment {
            app,
            stack: request.stack.clone(),
            memory_mb,
            disk_mb: if resources.disk > 0 {
                resources.disk
            } else {
                config.staging_disk_mb
            },
            fds: if resources.fds > 0 {
                resources.fds
            } else {
                16384
            },
            staging_group_env: Vec::new(),
            user_env: parse_env(&request.properties.environment),
            vcap_services: request.properties.services.clone(),
            host_ip: config.host_ip.clone(),
        };
        let droplet = work_dir.join("droplet.tgz");
        let cache_output = request
            .buildpack_cache_upload_uri
            .as_ref()
            .map(|_| work_dir.join("cache.tgz"));
        let staging_request = staging::StagingRequest {
            staging_id: format!("s-{}", sanitise(&request.task_id, 36)),
            app_dir,
            buildpacks,
            skip_detect,
            cache_dir,
            work_dir: work_dir.join("work"),
            droplet_path: droplet.clone(),
            cache_output_path: cache_output.clone(),
            env: environment.to_env(),
            limits: Limits {
                memory_bytes: memory_mb * 1024 * 1024,
                ..Limits::default()
            },
        };
        tokio::fs::create_dir_all(&staging_request.work_dir)
            .await
            .map_err(|error| {
                Failure::Setup(format!(
                    "Staging error: creating the work directory: {error}"
                ))
            })?;

        let (log_sender, mut log) = mpsc::channel::<OutputLine>(256);
        let staging = staging::stage(&self.shared.runtime, &staging_request, log_sender);
        tokio::pin!(staging);
        let result = loop {
            tokio::select! {
                result = &mut staging => break result,
                Some(line) = log.recv() => self.log(line.stream, &line.line),
            }
        };
        while let Ok(line) = log.try_recv() {
            self.log(line.stream, &line.line);
        }
        let result = result.map_err(Failure::Lifecycle)?;

        let droplet_sha1 = blobs::sha1_file(&droplet)
            .await
            .map_err(setup("hashing the droplet failed"))?;
        self.log(Stream::Stdout, "Uploading droplet...");
        blobs::upload(
            &self.shared.http,
            &request.upload_uri,
            &droplet,
            "droplet upload",
        )
        .await
        .map_err(setup("uploading the droplet failed"))?;
        if let (Some(uri), Some(cache)) = (&request.buildpack_cache_upload_uri, &cache_output) {
            if let Err(error) =
                blobs::upload(&self.shared.http, uri, cache, "buildpack cache upload").await
            {
                // The cache is an optimisation: staging still succeeded.
                tracing::warn!(%error, "uploading the buildpack cache failed");
            }
        }
        self.log(Stream::Stdout, "Uploading complete");
        // Keep the droplet: a start message for it needs no download.
        let cached = config
            .base_dir
            .join("droplets")
            .join(format!("{droplet_sha1}.tgz"));
        if let Err(error) = tokio::fs::rename(&droplet, &cached).await {
            tracing::warn!(%error, "cannot cache the droplet");
        }
        Ok(Staged {
            result,
            droplet_sha1,
        })
    }

    /// The buildpacks to run and whether detection is skipped (buildpacks named by the app).
    async fn buildpacks(&self) -> Result<(Vec<Buildpack>, bool), Failure> {
        let request = &self.request;
        let named = &request.properties.buildpacks;
        let (chosen, skip_detect): (Vec<&AdminBuildpack>, bool) = if named.is_empty() {
            (request.admin_buildpacks.iter().collect(), false)
        } else {
            let mut chosen = Vec::new();
            for name in named {
                let found = request
                    .admin_buildpacks
                    .iter()
                    .find(|bp| &bp.name == name || &bp.key == name)
                    .ok_or_else(|| {
                        Failure::Setup(if name.contains("://") {
                            format!("Staging error: buildpack URLs are not supported by this DEA: {name}")
                        } else {
                            format!("Staging error: buildpack {name} is not available")
                        })
                    })?;
                chosen.push(found);
            }
            (chosen, true)
        };
        let mut buildpacks = Vec::new();
        for admin in chosen {
            buildpacks.push(Buildpack {
                key: admin.key.clone(),
                dir: self.buildpack_dir(admin).await?,
            });
        }
        Ok((buildpacks, skip_detect))
    }

    /// The extracted admin buildpack, downloaded on first use and cached by key.
    async fn buildpack_dir(&self, admin: &AdminBuildpack) -> Result<PathBuf, Failure> {
        let root = self.shared.config.base_dir.join("buildpacks");
        let dir = root.join(sanitise(&admin.key, 120));
        if tokio::fs::try_exists(&dir).await.unwrap_or(false) {
            return Ok(dir);
        }
        let unique = uuid::Uuid::new_v4().simple().to_string();
        let zip = root.join(format!("download-{unique}.zip"));
        let partial = root.join(format!("extract-{unique}"));
        let fail = |error: blobs::BlobError| {
            Failure::Setup(format!(
                "Staging error: fetching buildpack {} failed: {error}",
                admin.name
            ))
        };
        let result = async {
            blobs::download(&self.shared.http, &admin.url, &zip, "buildpack download").await?;
            blobs::extract_zip(&zip, &partial).await
        }
        .await;
        let _ = tokio::fs::remove_file(&zip).await;
        if let Err(error) = result {
            let _ = tokio::fs::remove_dir_all(&partial).await;
            return Err(fail(error));
        }
        if tokio::fs::rename(&partial, &dir).await.is_err() {
            // Another staging task cached it first.
            let _ = tokio::fs::remove_dir_all(&partial).await;
        }
        Ok(dir)
    }

    /// Fills an empty app cache from `buildpack_cache_download_uri`; failures only cost time.
    async fn restore_cache(&self, work_dir: &Path, cache_dir: &Path) {
        let Some(uri) = &self.request.buildpack_cache_download_uri else {
            return;
        };
        if tokio::fs::try_exists(cache_dir).await.unwrap_or(false) {
            return;
        }
        let archive = work_dir.join("cache-download.tgz");
        if let Err(error) =
            blobs::download(&self.shared.http, uri, &archive, "buildpack cache download").await
        {
            tracing::info!(%error, "no buildpack cache restored");
            return;
        }
        if let Err(error) = tokio::fs::create_dir_all(cache_dir).await {
            tracing::warn!(%error, "cannot create the buildpack cache directory");
            return;
        }
        let status = tokio::process::Command::new("tar")
            .arg("-xzf")
            .arg(&archive)
            .arg("-C")
            .arg(cache_dir)
            .arg("--no-same-owner")
            .stdin(std::process::Stdio::null())
            .status()
            .await;
        if !matches!(status, Ok(status) if status.success()) {
            tracing::warn!("cannot extract the buildpack cache; starting without one");
            let _ = tokio::fs::remove_dir_all(cache_dir).await;
        }
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn sanitised_names_stay_inside_their_directory() {
        assert_eq!(
            super::sanitise("staticfile_buildpack", 120),
            "staticfile_buildpack"
        );
        assert_eq!(super::sanitise("../etc", 120), ".._etc");
        assert_eq!(super::sanitise("..", 120), "x__");
        assert_eq!(super::sanitise("", 120), "x");
        assert_eq!(super::sanitise("a/b c", 120), "a_b_c");
    }
}
