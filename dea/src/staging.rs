//! Staging: CF's buildpack lifecycle (`reference/buildpacks.md` §1–§2). Every buildpack script
//! runs in its own staging container as vcap, with the app at `/tmp/app`, the cache at
//! `/tmp/cache`, the deps and profile directories under `/tmp/contents` and buildpack `i` at
//! `/tmp/buildpacks/<i>` (read-only). The result is a droplet `.tgz` and the start command.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Stdio;

use serde_json::{json, Value};
use sha2::{Digest, Sha256};
use tokio::sync::mpsc;

use crate::container::{
    chown_to_vcap, BindMount, ContainerError, ContainerRuntime, ContainerSpec, ExitStatus, Limits,
    OutputLine, Stream, CONTAINER_HOME,
};
use crate::launch::{database_url, AppMetadata, EnvBuilder};

const BUILD_DIR: &str = "/tmp/app";
const CACHE_DIR: &str = "/tmp/cache";
const CONTENTS_DIR: &str = "/tmp/contents";
const DEPS_DIR: &str = "/tmp/contents/deps";
const PROFILE_DIR: &str = "/tmp/contents/profile.d";
const BUILDPACKS_DIR: &str = "/tmp/buildpacks";

/// One buildpack: its key (admin buildpack key or URL) and its extracted directory on the host.
#[derive(Debug, Clone)]
pub struct Buildpack {
    pub key: String,
    pub dir: PathBuf,
}

/// One staging task.
#[derive(Debug, Clone)]
pub struct StagingRequest {
    /// Prefix of the staging containers' ids.
    pub staging_id: String,
    /// The extracted app package; copied, never modified.
    pub app_dir: PathBuf,
    /// In order: by position for auto-detection, or the named list (last = final).
    pub buildpacks: Vec<Buildpack>,
    /// True when buildpacks were named (`cf push -b`): detect never runs.
    pub skip_detect: bool,
    /// The app's build-artifacts cache, kept between stagings (created if missing).
    pub cache_dir: PathBuf,
    /// Scratch space for this staging; the caller removes it afterwards.
    pub work_dir: PathBuf,
    /// Where the droplet `.tgz` is written.
    pub droplet_path: PathBuf,
    /// Where a `.tgz` of the cache is written after success, if wanted.
    pub cache_output_path: Option<PathBuf>,
    /// The scripts' environment, e.g. from `StagingEnvironment::to_env`.
    pub env: Vec<(String, String)>,
    pub limits: Limits,
}

/// What staging found out.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StagingResult {
    /// The final buildpack's name (its `config.yml`, else its detect output, else "").
    pub detected_buildpack: String,
    /// The final buildpack's key.
    pub buildpack_key: String,
    /// `process_types["web"]`, possibly empty.
    pub start_command: String,
    pub process_types: BTreeMap<String, String>,
    pub buildpacks: Vec<BuildpackMetadata>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BuildpackMetadata {
    pub key: String,
    pub name: String,
    pub version: Option<String>,
}

impl StagingResult {
    /// The builder's `result.json` shape (§2.3).
    pub fn result_json(&self) -> Value {
        let buildpacks: Vec<Value> = self
            .buildpacks
            .iter()
            .map(|bp| {
                let mut entry = json!({"key": bp.key, "name": bp.name});
                if let Some(version) = &bp.version {
                    entry["version"] = json!(version);
                }
                entry
            })
            .collect();
        let mut metadata = json!({
            "detected_buildpack": self.detected_buildpack,
            "buildpacks": buildpacks,
        });
        if !self.buildpack_key.is_empty() {
            metadata["buildpack_key"] = json!(self.buildpack_key);
        }
        let processes: Vec<Value> = self
            .process_types
            .iter()
            .map(|(kind, command)| json!({"type": kind, "command": command}))
            .collect();
        let mut result = json!({
            "lifecycle_type": "buildpack",
            "lifecycle_metadata": metadata,
            "process_types": self.process_types,
            "execution_metadata": "",
        });
        if !processes.is_empty() {
            result["processes"] = json!(processes);
        }
        result
    }
}

/// How staging failed. `Display` is the builder's own message (written to the staging log);
/// `cc_error` is what the Cloud Controller records.
#[derive(Debug, thiserror::Error)]
pub enum StagingError {
    #[error("There are no buildpacks available")]
    NoBuildpacks,
    #[error("None of the buildpacks detected a compatible application")]
    NoAppDetected,
    #[error("malformed buildpack does not contain a /bin dir: {key}")]
    MalformedBuildpack { key: String },
    #[error("Error: one of the buildpacks chosen to supply dependencies does not support multi-buildpack apps")]
    SupplyNotSupported,
    #[error("Failed to run all supply scripts: {reason}")]
    SupplyFailed { reason: String },
    #[error("Failed to compile droplet: {reason}")]
    CompileFailed { reason: String },
    #[error("Failed to build droplet release: {reason}")]
    ReleaseFailed { reason: String },
    #[error("Failed to read command from Procfile: invalid YAML")]
    InvalidProcfile,
    #[error("staging container failed: {0}")]
    Container(#[from] ContainerError),
    #[error("{context}: {source}")]
    Io {
        context: String,
        #[source]
        source: std::io::Error,
    },
    #[error("Failed to create droplet: {0}")]
    Droplet(String),
}

/// A Cloud Controller staging error: name, code and stored description.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CcStagingError {
    pub name: &'static str,
    pub code: u32,
    pub description: String,
}

impl CcStagingError {
    /// CC's verdict when staging produced no process types and the app has no command.
    pub fn start_command_not_specified() -> Self {
        CcStagingError {
            name: "StagingError",
            code: 170001,
            description: "Staging error: Start command not specified".into(),
        }
    }

    /// v3 `build.error`: `<name> - <description>`.
    pub fn build_error(&self) -> String {
        format!("{} - {}", self.name, self.description)
    }
}

impl StagingError {
    /// The Go builder's exit code for this failure.
    pub fn exit_code(&self) -> i32 {
        match self {
            StagingError::NoAppDetected => 222,
            StagingError::CompileFailed { .. } => 223,
            StagingError::ReleaseFailed { .. } => 224,
            StagingError::SupplyNotSupported
            | StagingError::SupplyFailed { .. }
            | StagingError::MalformedBuildpack { .. } => 225,
            _ => 1,
        }
    }

    /// How CC reports it (`FailureReasonSanitizer`).
    pub fn cc_error(&self) -> CcStagingError {
        let (name, code, description) = match self {
            StagingError::NoBuildpacks => (
                "NoBuildpacksFound",
                170006,
                "There are no buildpacks available",
            ),
            _ => match self.exit_code() {
                222 => (
                    "NoAppDetectedError",
                    170003,
                    "An app was not successfully detected by any available buildpack",
                ),
                223 => (
                    "BuildpackCompileFailed",
                    170004,
                    "App staging failed in the buildpack compile phase",
                ),
                224 => (
                    "BuildpackReleaseFailed",
                    170005,
                    "App staging failed in the buildpack release phase",
                ),
                _ => ("StagingError", 170001, "Staging error: staging failed"),
            },
        };
        CcStagingError {
            name,
            code,
            description: description.to_string(),
        }
    }
}

fn io_error(context: impl Into<String>) -> impl FnOnce(std::io::Error) -> StagingError {
    let context = context.into();
    move |source| StagingError::Io { context, source }
}

/// The staging environment of §1.7 (Diego flavour).
#[derive(Debug, Clone)]
pub struct StagingEnvironment {
    pub app: AppMetadata,
    pub stack: String,
    pub memory_mb: u64,
    pub disk_mb: u64,
    pub fds: u64,
    pub staging_group_env: Vec<(String, String)>,
    pub user_env: Vec<(String, String)>,
    pub vcap_services: Value,
    /// The cell's IP address.
    pub host_ip: String,
}

impl StagingEnvironment {
    pub fn to_env(&self) -> Vec<(String, String)> {
        let app = &self.app;
        // A fresh version per staging, as CC does.
        let version = uuid::Uuid::new_v4().to_string();
        let vcap_application = json!({
            "application_id": app.app_guid,
            "application_name": app.app_name,
            "application_uris": app.uris,
            "application_version": version,
            "cf_api": app.cf_api,
            "limits": {"mem": self.memory_mb, "disk": self.disk_mb, "fds": self.fds},
            "name": app.app_name,
            "organization_id": app.organization_guid,
            "organization_name": app.organization_name,
            "space_id": app.space_guid,
            "space_name": app.space_name,
            "uris": app.uris,
            "users": null,
            "version": version,
        });
        let mut env = EnvBuilder::default();
        env.set("LANG", "en_US.UTF-8");
        env.set("PATH", "/usr/local/bin:/usr/bin:/bin");
        env.extend(&self.staging_group_env);
        env.extend(&self.user_env);
        env.set("CF_STACK", &self.stack);
        env.set("VCAP_APPLICATION", &vcap_application.to_string());
        env.set("MEMORY_LIMIT", &format!("{}m", self.memory_mb));
        let services = if self.vcap_services.is_null() {
            "{}".to_string()
        } else {
            self.vcap_services.to_string()
        };
        env.set("VCAP_SERVICES", &services);
        env.set("CF_INSTANCE_IP", &self.host_ip);
        env.set("CF_INSTANCE_INTERNAL_IP", &self.host_ip);
        env.set("CF_INSTANCE_PORT", "");
        env.set("CF_INSTANCE_ADDR", "");
        env.set("CF_INSTANCE_PORTS", "[]");
        env.set("USER", "vcap");
        env.set("HOME", CONTAINER_HOME);
        if let Some(url) = database_url(&self.vcap_services) {
            env.set("DATABASE_URL", &url);
        }
        env.vars
    }
}

/// Stages `request`, streaming the scripts' output (and the builder's own messages, on stderr)
/// to `log`.
pub async fn stage(
    runtime: &dyn ContainerRuntime,
    request: &StagingRequest,
    log: mpsc::Sender<OutputLine>,
) -> Result<StagingResult, StagingError> {
    let mut stager = Stager::prepare(runtime, request, log).await?;
    let result = stager.run().await;
    if let Err(error) = &result {
        stager.say(Stream::Stderr, &error.to_string()).await;
        tracing::info!(%error, staging_id = %request.staging_id, "staging failed");
    }
    result
}

/// A buildpack resolved to the directory that holds its `bin/`, mounted at `/tmp/buildpacks/<n>`.
struct ResolvedBuildpack {
    key: String,
    host_dir: PathBuf,
    mount: String,
}

impl ResolvedBuildpack {
    fn has_script(&self, name: &str) -> bool {
        self.host_dir.join("bin").join(name).is_file()
    }
    fn script(&self, name: &str) -> String {
        format!("{}/bin/{name}", self.mount)
    }
}

struct Stager<'a> {
    runtime: &'a dyn ContainerRuntime,
    request: &'a StagingRequest,
    log: mpsc::Sender<OutputLine>,
    contents: PathBuf,
    home: PathBuf,
    /// `None` for a buildpack whose directory is malformed (auto-detect skips it).
    buildpacks: Vec<Option<ResolvedBuildpack>>,
    n_steps: u32,
}

impl<'a> Stager<'a> {
    async fn prepare(
        runtime: &'a dyn ContainerRuntime,
        request: &'a StagingRequest,
        log: mpsc::Sender<OutputLine>,
    ) -> Result<Stager<'a>, StagingError> {
        let contents = request.work_dir.join("contents");
        let home = request.work_dir.join("home");
        let buildpacks: Vec<Option<ResolvedBuildpack>> = request
            .buildpacks
            .iter()
            .enumerate()
            .map(|(n, buildpack)| {
                resolve_buildpack_dir(&buildpack.dir).map(|host_dir| ResolvedBuildpack {
                    key: buildpack.key.clone(),
                    host_dir,
                    mount: format!("{BUILDPACKS_DIR}/{n}"),
                })
            })
            .collect();
        let app_dir = request.app_dir.clone();
        let cache_dir = request.cache_dir.clone();
        let (contents_dir, home_dir) = (contents.clone(), home.clone());
        tokio::task::spawn_blocking(move || -> std::io::Result<()> {
            std::fs::create_dir_all(&contents_dir)?;
            for dir in ["deps", "profile.d", "tmp", "logs"] {
                std::fs::create_dir_all(contents_dir.join(dir))?;
            }
            std::fs::create_dir_all(&home_dir)?;
            std::fs::create_dir_all(&cache_dir)?;
            let copy = std::process::Command::new("cp")
                .arg("-a")
                .arg(&app_dir)
                .arg(contents_dir.join("app"))
                .stdin(Stdio::null())
                .output()?;
            if !copy.status.success() {
                return Err(std::io::Error::other(
                    String::from_utf8_lossy(&copy.stderr).into_owned(),
                ));
            }
            chown_to_vcap(&contents_dir)?;
            chown_to_vcap(&home_dir)?;
            chown_to_vcap(&cache_dir)
        })
        .await
        .map_err(|error| StagingError::Io {
            context: "preparing staging".into(),
            source: std::io::Error::other(error),
        })?
        .map_err(io_error("preparing the staging directories"))?;
        Ok(Stager {
            runtime,
            request,
            log,
            contents,
            home,
            buildpacks,
            n_steps: 0,
        })
    }

    async fn say(&self, stream: Stream, line: &str) {
        let _ = self
            .log
            .send(OutputLine {
                stream,
                line: line.to_string(),
            })
            .await;
    }

    /// Runs one script in a fresh staging container; stdout is returned instead of logged when
    /// `capture_stdout`.
    async fn run_script(
        &mut self,
        args: Vec<String>,
        capture_stdout: bool,
    ) -> Result<(ExitStatus, String), StagingError> {
        self.n_steps += 1;
        let mut bind_mounts = vec![
            BindMount {
                source: self.contents.join("app"),
                destination: BUILD_DIR.into(),
                writable: true,
            },
            BindMount {
                source: self.request.cache_dir.clone(),
                destination: CACHE_DIR.into(),
                writable: true,
            },
            BindMount {
                source: self.contents.clone(),
                destination: CONTENTS_DIR.into(),
                writable: true,
            },
        ];
        for buildpack in self.buildpacks.iter().flatten() {
            bind_mounts.push(BindMount {
                source: buildpack.host_dir.clone(),
                destination: buildpack.mount.clone(),
                writable: false,
            });
        }
        let spec = ContainerSpec {
            id: format!("{}-{}", self.request.staging_id, self.n_steps),
            args,
            env: self.request.env.clone(),
            cwd: CONTAINER_HOME.into(),
            hostname: None,
            home_dir: self.home.clone(),
            bind_mounts,
            limits: self.request.limits,
            // Staging keeps the host network in every `network.mode`: buildpacks install
            // dependencies from the package registries and caches the host reaches.
            network: None,
        };
        let (sender, mut receiver) = mpsc::channel(256);
        let container = self.runtime.start(spec, sender).await?;
        let mut captured = String::new();
        while let Some(line) = receiver.recv().await {
            if capture_stdout && line.stream == Stream::Stdout {
                captured.push_str(&line.line);
                captured.push('\n');
            } else {
                let _ = self.log.send(line).await;
            }
        }
        let status = container.wait().await;
        Ok((status, captured))
    }

    async fn run(&mut self) -> Result<StagingResult, StagingError> {
        if self.buildpacks.is_empty() {
            return Err(StagingError::NoBuildpacks);
        }
        // Auto-detection picks one buildpack and treats it as the only, final one.
        let (chosen, detect_output): (Vec<usize>, Option<String>) = if self.request.skip_detect {
            for (n, buildpack) in self.buildpacks.iter().enumerate() {
                if buildpack.is_none() {
                    let key = self.request.buildpacks[n].key.clone();
                    return Err(StagingError::MalformedBuildpack { key });
                }
            }
            ((0..self.buildpacks.len()).collect(), None)
        } else {
            let (n, output) = self.detect().await?;
            (vec![n], Some(output))
        };
        let n_chosen = chosen.len();
        let final_position = n_chosen - 1;
        let width = n_chosen.to_string().len();
        let index = |position: usize| format!("{position:0width$}");

        for &n in &chosen[..final_position] {
            if !self.resolved(n).has_script("supply") {
                return Err(StagingError::SupplyNotSupported);
            }
        }
        for position in 0..n_chosen {
            let deps = self.contents.join("deps").join(index(position));
            std::fs::create_dir_all(&deps).map_err(io_error("creating the deps directories"))?;
            chown_to_vcap(&deps).map_err(io_error("creating the deps directories"))?;
        }
        self.clean_cache(&chosen, final_position)?;

        for (position, &n) in chosen[..final_position].iter().enumerate() {
            let buildpack = self.resolved(n);
            let args = vec![
                buildpack.script("supply"),
                BUILD_DIR.into(),
                format!("{CACHE_DIR}/{}", cache_name(&buildpack.key)),
                DEPS_DIR.into(),
                index(position),
            ];
            let (status, _) = self.run_script(args, false).await?;
            if !status.success() {
                return Err(StagingError::SupplyFailed {
                    reason: exit_reason(status),
                });
            }
        }

        let final_buildpack = self.resolved(chosen[final_position]);
        let final_cache = format!("{CACHE_DIR}/final");
        let final_index = index(final_position);
        if final_buildpack.has_script("finalize") {
            let supply = final_buildpack
                .has_script("supply")
                .then(|| final_buildpack.script("supply"));
            let finalize = final_buildpack.script("finalize");
            if let Some(supply) = supply {
                let args = vec![
                    supply,
                    BUILD_DIR.into(),
                    final_cache.clone(),
                    DEPS_DIR.into(),
                    final_index.clone(),
                ];
                let (status, _) = self.run_script(args, false).await?;
                if !status.success() {
                    return Err(StagingError::CompileFailed {
                        reason: format!("Failed to run finalize script: {}", exit_reason(status)),
                    });
                }
            }
            let args = vec![
                finalize,
                BUILD_DIR.into(),
                final_cache,
                DEPS_DIR.into(),
                final_index.clone(),
                PROFILE_DIR.into(),
            ];
            let (status, _) = self.run_script(args, false).await?;
            if !status.success() {
                return Err(StagingError::CompileFailed {
                    reason: format!("Failed to run finalize script: {}", exit_reason(status)),
                });
            }
        } else {
            if n_chosen > 1 {
                self.say(Stream::Stderr, "Warning: the last buildpack is not compatible with multi-buildpack apps and cannot make use of any dependencies supplied by the buildpacks specified before it").await;
            }
            let _ = std::fs::remove_dir_all(self.contents.join("deps").join(&final_index));
            let compile = final_buildpack.script("compile");
            let (status, _) = self
                .run_script(vec![compile, BUILD_DIR.into(), final_cache], false)
                .await?;
            if !status.success() {
                return Err(StagingError::CompileFailed {
                    reason: exit_reason(status),
                });
            }
        }

        let process_types = self.process_types(&chosen, &index).await?;
        let start_command = process_types.get("web").cloned().unwrap_or_default();
        if start_command.is_empty() {
            self.say(
                Stream::Stderr,
                "No start command specified by buildpack or via Procfile.",
            )
            .await;
            self.say(
                Stream::Stderr,
                "App will not start unless a command is provided at runtime.",
            )
            .await;
        }

        let mut buildpacks = Vec::new();
        let mut final_config = None;
        for (position, &n) in chosen.iter().enumerate() {
            let config = read_config_yml(&self.contents.join("deps").join(index(position)));
            let mut name = config
                .as_ref()
                .and_then(|c| c.name.clone())
                .unwrap_or_default();
            if name.is_empty() && position == final_position {
                name = detect_output.clone().unwrap_or_default();
            }
            if position == final_position {
                // An empty `config: {}` (what most buildpacks write) carries nothing.
                final_config = config.as_ref().and_then(|c| c.config.clone()).filter(|c| {
                    c.as_object().is_none_or(|object| !object.is_empty()) && !c.is_null()
                });
            }
            buildpacks.push(BuildpackMetadata {
                key: self.resolved(n).key.clone(),
                name,
                version: config.and_then(|c| c.version),
            });
        }
        let final_metadata = buildpacks[final_position].clone();

        let mut staging_info = json!({
            "detected_buildpack": final_metadata.name,
            "start_command": start_command,
        });
        if let Some(config) = final_config {
            staging_info["config"] = config;
        }
        let staging_info = format!("{staging_info}\n");
        std::fs::write(self.contents.join("staging_info.yml"), staging_info)
            .map_err(io_error("writing staging_info.yml"))?;
        self.package().await?;

        Ok(StagingResult {
            detected_buildpack: final_metadata.name,
            buildpack_key: final_metadata.key,
            start_command,
            process_types,
            buildpacks,
        })
    }

    fn resolved(&self, n: usize) -> &ResolvedBuildpack {
        self.buildpacks[n]
            .as_ref()
            .expect("chosen buildpacks are resolved")
    }

    /// Runs `bin/detect` of each buildpack in order; the first to exit 0 wins.
    async fn detect(&mut self) -> Result<(usize, String), StagingError> {
        for n in 0..self.buildpacks.len() {
            let Some(buildpack) = &self.buildpacks[n] else {
                let key = self.request.buildpacks[n].key.clone();
                self.say(
                    Stream::Stderr,
                    &format!("malformed buildpack does not contain a /bin dir: {key}"),
                )
                .await;
                continue;
            };
            if !buildpack.has_script("detect") {
                let message = format!("{}: no such file or directory", buildpack.script("detect"));
                self.say(Stream::Stderr, &message).await;
                continue;
            }
            let args = vec![buildpack.script("detect"), BUILD_DIR.into()];
            let (status, output) = self.run_script(args, true).await?;
            if status.success() {
                return Ok((n, output.trim_end_matches(['\r', '\n']).to_string()));
            }
        }
        Err(StagingError::NoAppDetected)
    }

    /// Keeps only `final/` and the cache directories of the supply buildpacks in use.
    fn clean_cache(&self, chosen: &[usize], final_position: usize) -> Result<(), StagingError> {
        let mut keep = vec!["final".to_string()];
        for &n in &chosen[..final_position] {
            keep.push(cache_name(&self.resolved(n).key));
        }
        let cache = &self.request.cache_dir;
        for entry in std::fs::read_dir(cache).map_err(io_error("reading the cache"))? {
            let entry = entry.map_err(io_error("reading the cache"))?;
            if !keep.iter().any(|name| entry.file_name() == name.as_str()) {
                let path = entry.path();
                let removed = if path.is_dir() && !path.is_symlink() {
                    std::fs::remove_dir_all(&path)
                } else {
                    std::fs::remove_file(&path)
                };
                removed.map_err(io_error("cleaning the cache"))?;
            }
        }
        for name in keep {
            let dir = cache.join(name);
            std::fs::create_dir_all(&dir).map_err(io_error("creating the cache"))?;
            chown_to_vcap(&dir).map_err(io_error("creating the cache"))?;
        }
        Ok(())
    }

    /// Supply buildpacks' `launch.yml`, then the final one's `launch.yml` or `bin/release`,
    /// then the app's `Procfile`; later wins per type.
    async fn process_types(
        &mut self,
        chosen: &[usize],
        index: &(dyn Fn(usize) -> String + Sync),
    ) -> Result<BTreeMap<String, String>, StagingError> {
        let final_position = chosen.len() - 1;
        let mut types = BTreeMap::new();
        for position in 0..final_position {
            types.extend(read_launch_yml(
                &self.contents.join("deps").join(index(position)),
            ));
        }
        let final_launch = self
            .contents
            .join("deps")
            .join(index(final_position))
            .join("launch.yml");
        if final_launch.is_file() {
            types.extend(read_launch_yml(
                &self.contents.join("deps").join(index(final_position)),
            ));
        } else {
            let release = self.resolved(chosen[final_position]).script("release");
            let (status, output) = self
                .run_script(vec![release, BUILD_DIR.into()], true)
                .await?;
            if !status.success() {
                return Err(StagingError::ReleaseFailed {
                    reason: exit_reason(status),
                });
            }
            types.extend(parse_release(&output)?);
        }
        match std::fs::read_to_string(self.contents.join("app").join("Procfile")) {
            Ok(text) => types.extend(parse_procfile(&text)?),
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => {}
            Err(source) => {
                return Err(StagingError::Io {
                    context: "reading Procfile".into(),
                    source,
                })
            }
        }
        Ok(types)
    }

    /// `tar -czf droplet ./app ./deps ./profile.d ./staging_info.yml ./tmp ./logs`, and the cache.
    async fn package(&self) -> Result<(), StagingError> {
        let output = tokio::process::Command::new("tar")
            .arg("-czf")
            .arg(&self.request.droplet_path)
            .arg("-C")
            .arg(&self.contents)
            .args([
                "./app",
                "./deps",
                "./profile.d",
                "./staging_info.yml",
                "./tmp",
                "./logs",
            ])
            .stdin(Stdio::null())
            .output()
            .await
            .map_err(io_error("running tar"))?;
        if !output.status.success() {
            return Err(StagingError::Droplet(
                String::from_utf8_lossy(&output.stderr).trim().into(),
            ));
        }
        if let Some(cache_output) = &self.request.cache_output_path {
            let output = tokio::process::Command::new("tar")
                .arg("-czf")
                .arg(cache_output)
                .arg("-C")
                .arg(&self.request.cache_dir)
                .arg(".")
                .stdin(Stdio::null())
                .output()
                .await
                .map_err(io_error("running tar"))?;
            if !output.status.success() {
                return Err(StagingError::Droplet(
                    String::from_utf8_lossy(&output.stderr).trim().into(),
                ));
            }
        }
        Ok(())
    }
}

/// The directory holding `bin/`: the buildpack directory itself, or its only entry when that is
/// a directory with `bin/` (zips with one top-level folder).
fn resolve_buildpack_dir(dir: &Path) -> Option<PathBuf> {
    if dir.join("bin").is_dir() {
        return Some(dir.to_path_buf());
    }
    let entries: Vec<_> = std::fs::read_dir(dir).ok()?.flatten().collect();
    match entries.as_slice() {
        [only] if only.path().join("bin").is_dir() => Some(only.path()),
        _ => None,
    }
}

/// The cache directory name of a supply buildpack: stable per key, so a changed key (a new
/// version) starts with an empty cache. (CF uses xxhash64; any stable hash does.)
fn cache_name(key: &str) -> String {
    let digest = Sha256::digest(key.as_bytes());
    digest[..8]
        .iter()
        .map(|byte| format!("{byte:02x}"))
        .collect()
}

fn exit_reason(status: ExitStatus) -> String {
    if status.oom_killed {
        format!("exit status {} (out of memory)", status.code)
    } else {
        format!("exit status {}", status.code)
    }
}

#[derive(serde::Deserialize)]
struct ConfigYml {
    #[serde(default)]
    name: Option<String>,
    #[serde(default)]
    version: Option<String>,
    #[serde(default)]
    config: Option<Value>,
}

fn read_config_yml(deps_dir: &Path) -> Option<ConfigYml> {
    let text = std::fs::read_to_string(deps_dir.join("config.yml")).ok()?;
    serde_yaml::from_str(&text).ok()
}

/// Process types (not sidecars) of a `launch.yml`.
fn read_launch_yml(deps_dir: &Path) -> BTreeMap<String, String> {
    #[derive(serde::Deserialize)]
    struct LaunchYml {
        #[serde(default)]
        processes: Vec<serde_yaml::Value>,
    }
    let Ok(text) = std::fs::read_to_string(deps_dir.join("launch.yml")) else {
        return BTreeMap::new();
    };
    let Ok(launch) = serde_yaml::from_str::<LaunchYml>(&text) else {
        return BTreeMap::new();
    };
    launch
        .processes
        .iter()
        .filter(|process| process["platforms"]["cloudfoundry"]["sidecar_for"].is_null())
        .filter_map(|process| {
            Some((
                process["type"].as_str()?.to_string(),
                process["command"].as_str()?.to_string(),
            ))
        })
        .collect()
}

/// `default_process_types` of `bin/release` output.
fn parse_release(output: &str) -> Result<BTreeMap<String, String>, StagingError> {
    if output.trim().is_empty() {
        return Ok(BTreeMap::new());
    }
    let document: serde_yaml::Value =
        serde_yaml::from_str(output).map_err(|error| StagingError::ReleaseFailed {
            reason: format!("buildpack's release output invalid: {error}"),
        })?;
    Ok(string_map(&document["default_process_types"]))
}

fn parse_procfile(text: &str) -> Result<BTreeMap<String, String>, StagingError> {
    let document: serde_yaml::Value =
        serde_yaml::from_str(text).map_err(|_| StagingError::InvalidProcfile)?;
    match document {
        serde_yaml::Value::Mapping(_) => Ok(string_map(&document)),
        serde_yaml::Value::Null => Ok(BTreeMap::new()),
        _ => Err(StagingError::InvalidProcfile),
    }
}

fn string_map(value: &serde_yaml::Value) -> BTreeMap<String, String> {
    let Some(mapping) = value.as_mapping() else {
        return BTreeMap::new();
    };
    mapping
        .iter()
        .filter_map(|(key, value)| {
            let key = yaml_scalar(key)?;
            Some((key, yaml_scalar(value).unwrap_or_default()))
        })
        .collect()
}

fn yaml_scalar(value: &serde_yaml::Value) -> Option<String> {
    match value {
        serde_yaml::Value::String(text) => Some(text.clone()),
        serde_yaml::Value::Number(number) => Some(number.to_string()),
        serde_yaml::Value::Bool(flag) => Some(flag.to_string()),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn release_and_procfile_parsing() {
        let types =
            parse_release("---\ndefault_process_types:\n  web: bundle exec rackup -p $PORT\n")
                .unwrap();
        assert_eq!(types["web"], "bundle exec rackup -p $PORT");
        assert!(parse_release("--- {}\n").unwrap().is_empty());
        let error = parse_release("default_process_types: [unclosed").unwrap_err();
        assert_eq!(error.exit_code(), 224);
        assert!(error
            .to_string()
            .starts_with("Failed to build droplet release: buildpack's release output invalid: "));
        assert_eq!(
            parse_procfile("web: ./app\nworker: ./w\n").unwrap()["worker"],
            "./w"
        );
        assert!(matches!(
            parse_procfile("just a string"),
            Err(StagingError::InvalidProcfile)
        ));
        assert!(matches!(
            parse_procfile("web: [unclosed"),
            Err(StagingError::InvalidProcfile)
        ));
    }

    #[test]
    fn cc_errors() {
        let error = StagingError::NoAppDetected;
        assert_eq!(
            error.to_string(),
            "None of the buildpacks detected a compatible application"
        );
        assert_eq!(
            error.cc_error().build_error(),
            "NoAppDetectedError - An app was not successfully detected by any available buildpack"
        );
        let compile = StagingError::CompileFailed {
            reason: "exit status 1".into(),
        };
        assert_eq!(compile.cc_error().name, "BuildpackCompileFailed");
        assert_eq!(compile.cc_error().code, 170004);
        assert_eq!(StagingError::SupplyNotSupported.exit_code(), 225);
        assert_eq!(
            StagingError::SupplyNotSupported.cc_error().description,
            "Staging error: staging failed"
        );
        assert_eq!(
            StagingError::ReleaseFailed { reason: "x".into() }
                .cc_error()
                .description,
            "App staging failed in the buildpack release phase"
        );
    }

    #[test]
    fn result_json_shape() {
        let result = StagingResult {
            detected_buildpack: "staticfile".into(),
            buildpack_key: "staticfile_buildpack".into(),
            start_command: "$HOME/boot.sh".into(),
            process_types: BTreeMap::from([("web".to_string(), "$HOME/boot.sh".to_string())]),
            buildpacks: vec![BuildpackMetadata {
                key: "staticfile_buildpack".into(),
                name: "staticfile".into(),
                version: Some("1.0.0".into()),
            }],
        };
        assert_eq!(
            result.result_json(),
            json!({
                "lifecycle_type": "buildpack",
                "lifecycle_metadata": {
                    "buildpack_key": "staticfile_buildpack",
                    "detected_buildpack": "staticfile",
                    "buildpacks": [{"key": "staticfile_buildpack", "name": "staticfile", "version": "1.0.0"}]
                },
                "process_types": {"web": "$HOME/boot.sh"},
                "processes": [{"type": "web", "command": "$HOME/boot.sh"}],
                "execution_metadata": ""
            })
        );
    }
}
