//! The `runc` implementation of `ContainerRuntime`.
//!
//! Each container is a foreground `runc run --keep` child of the DEA: runc passes the pipes of its
//! own stdout/stderr to the container and exits with the container's exit status, so no status is
//! ever lost to re-parenting. `--keep` leaves the stopped container (and its cgroups) in place so
//! the OOM counter can be read before `runc delete` removes them.

use std::os::unix::process::ExitStatusExt;
use std::path::PathBuf;
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::io::{AsyncBufReadExt, AsyncRead, BufReader};
use tokio::process::Command;
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;

use super::bundle::{write_bundle, BundlePaths};
use super::cgroup::CgroupPath;
use super::{
    disk_usage, BoxFuture, Container, ContainerError, ContainerRuntime, ContainerSpec,
    ContainerStats, ExitStatus, OutputLine, Stream,
};

/// How long `stop` waits for a container to disappear after SIGKILL.
const KILL_WAIT: Duration = Duration::from_secs(10);
/// How long `start` waits for runc to create the container.
const CREATE_TIMEOUT: Duration = Duration::from_secs(60);

/// Where runc and the bundles live.
#[derive(Debug, Clone)]
pub struct RuncConfig {
    /// The `runc` executable (looked up in `PATH` when relative).
    pub runc_binary: PathBuf,
    /// runc's state directory (`runc --root`), kept apart from other users of runc.
    pub state_dir: PathBuf,
    /// One bundle directory per container is created (and removed) under this directory.
    pub bundles_dir: PathBuf,
    /// Containers' cgroups are `/<cgroup_parent>/<id>` in every v1 hierarchy.
    pub cgroup_parent: String,
}

impl RuncConfig {
    /// Defaults under `work_dir`: state in `work_dir/runc`, bundles in `work_dir/bundles`,
    /// cgroups under `/kiln`.
    pub fn under(work_dir: &std::path::Path) -> Self {
        RuncConfig {
            runc_binary: "runc".into(),
            state_dir: work_dir.join("runc"),
            bundles_dir: work_dir.join("bundles"),
            cgroup_parent: "kiln".into(),
        }
    }
}

/// Runs containers with `runc`.
#[derive(Debug, Clone)]
pub struct RuncRuntime {
    config: Arc<RuncConfig>,
}

impl RuncRuntime {
    pub fn new(config: RuncConfig) -> Self {
        RuncRuntime {
            config: Arc::new(config),
        }
    }

    /// The first line of `runc --version`, or why runc cannot be run.
    pub async fn version(&self) -> Result<String, ContainerError> {
        let output = Command::new(&self.config.runc_binary)
            .arg("--version")
            .stdin(Stdio::null())
            .output()
            .await
            .map_err(|error| {
                ContainerError::io(
                    format!("running {}", self.config.runc_binary.display()),
                    error,
                )
            })?;
        let text = String::from_utf8_lossy(&output.stdout);
        Ok(text.lines().next().unwrap_or_default().to_string())
    }

    /// Kills and removes a container by id, with its cgroups and bundle, whether or not this
    /// process started it (e.g. leftovers of a previous DEA run). Missing pieces are fine.
    pub async fn destroy(&self, id: &str) -> Result<(), ContainerError> {
        validate_id(id)?;
        let config = self.config.clone();
        let id = id.to_string();
        tokio::task::spawn_blocking(move || destroy_blocking(&config, &id))
            .await
            .map_err(|error| ContainerError::io("destroy task", std::io::Error::other(error)))
    }

    /// Ids of the containers runc knows under our state directory.
    pub async fn list(&self) -> Result<Vec<String>, ContainerError> {
        let output = self
            .runc_command(&["list", "--quiet"])
            .output()
            .await
            .map_err(|error| ContainerError::io("running runc list", error))?;
        Ok(String::from_utf8_lossy(&output.stdout)
            .lines()
            .map(str::to_string)
            .collect())
    }

    fn runc_command(&self, args: &[&str]) -> Command {
        let mut command = Command::new(&self.config.runc_binary);
        command
            .arg("--root")
            .arg(&self.config.state_dir)
            .args(args)
            .stdin(Stdio::null());
        command
    }

    async fn start_container(
        &self,
        spec: ContainerSpec,
        output: mpsc::Sender<OutputLine>,
    ) -> Result<Box<dyn Container>, ContainerError> {
        validate_id(&spec.id)?;
        if spec.args.is_empty() {
            return Err(ContainerError::InvalidSpec("no command".into()));
        }
        if !spec.cwd.starts_with('/') {
            return Err(ContainerError::InvalidSpec(format!(
                "cwd {:?} is not absolute",
                spec.cwd
            )));
        }
        let id = spec.id.clone();
        let cgroup = CgroupPath::new(&self.config.cgroup_parent, &id);
        let paths = BundlePaths {
            dir: self.config.bundles_dir.join(&id),
        };
        let bundle_dir = paths.dir.clone();
        let home_dir = spec.home_dir.clone();
        {
            let cgroups_path = cgroup.oci_path();
            let bundle = BundlePaths {
                dir: bundle_dir.clone(),
            };
            tokio::task::spawn_blocking(move || write_bundle(&bundle, &spec, &cgroups_path))
                .await
                .map_err(|error| ContainerError::io("bundle task", std::io::Error::other(error)))?
                .map_err(|error| {
                    ContainerError::io(format!("writing bundle {}", bundle_dir.display()), error)
                })?;
        }

        let mut command = Command::new(&self.config.runc_binary);
        command
            .arg("--root")
            .arg(&self.config.state_dir)
            .arg("--log")
            .arg(paths.log_file())
            .arg("--log-format")
            .arg("json")
            .arg("run")
            .arg("--keep")
            .arg("--bundle")
            .arg(&paths.dir)
            .arg("--pid-file")
            .arg(paths.pid_file())
            .arg(&id)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let mut child = match command.spawn() {
            Ok(child) => child,
            Err(error) => {
                let _ = std::fs::remove_dir_all(&paths.dir);
                return Err(ContainerError::io("spawning runc run", error));
            }
        };
        let mut readers = Vec::new();
        if let Some(stdout) = child.stdout.take() {
            readers.push(tokio::spawn(forward_lines(
                stdout,
                Stream::Stdout,
                output.clone(),
            )));
        }
        if let Some(stderr) = child.stderr.take() {
            readers.push(tokio::spawn(forward_lines(stderr, Stream::Stderr, output)));
        }

        // runc writes the pid file once the container exists; if runc exits before that, the
        // container could not be created and runc's log says why.
        let deadline = Instant::now() + CREATE_TIMEOUT;
        loop {
            if std::fs::metadata(paths.pid_file())
                .map(|m| m.len() > 0)
                .unwrap_or(false)
            {
                break;
            }
            let exited = child
                .try_wait()
                .map_err(|error| ContainerError::io("waiting for runc", error))?;
            if exited.is_some() || Instant::now() > deadline {
                let message = runc_log_errors(&paths.log_file())
                    .unwrap_or_else(|| "runc exited before the container started".to_string());
                let _ = child.start_kill();
                let config = self.config.clone();
                let cleanup_id = id.clone();
                let _ = tokio::task::spawn_blocking(move || destroy_blocking(&config, &cleanup_id))
                    .await;
                return Err(ContainerError::Runtime {
                    command: format!("runc run {id}"),
                    message,
                });
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        tracing::debug!(container_id = %id, "container started");

        let (exit_sender, exit_receiver) = watch::channel(None);
        let supervisor = tokio::spawn(supervise(
            child,
            readers,
            self.config.clone(),
            id.clone(),
            cgroup.clone(),
            exit_sender,
        ));
        Ok(Box::new(RuncContainer {
            id,
            config: self.config.clone(),
            cgroup,
            home_dir,
            exit: exit_receiver,
            supervisor: Mutex::new(Some(supervisor)),
            last_cpu_sample: Mutex::new((Instant::now(), 0)),
        }))
    }
}

impl ContainerRuntime for RuncRuntime {
    fn start(
        &self,
        spec: ContainerSpec,
        output: mpsc::Sender<OutputLine>,
    ) -> BoxFuture<'_, Result<Box<dyn Container>, ContainerError>> {
        Box::pin(self.start_container(spec, output))
    }
}

/// Ids become directory and cgroup names, so keep them to a safe alphabet.
fn validate_id(id: &str) -> Result<(), ContainerError> {
    let valid = !id.is_empty()
        && id.len() <= 64
        && !id.starts_with('.')
        && id
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'));
    if valid {
        Ok(())
    } else {
        Err(ContainerError::InvalidSpec(format!(
            "invalid container id {id:?}"
        )))
    }
}

/// The `msg` of each error-level entry in runc's JSON log.
fn runc_log_errors(log_file: &std::path::Path) -> Option<String> {
    let text = std::fs::read_to_string(log_file).ok()?;
    let messages: Vec<String> = text
        .lines()
        .filter_map(|line| serde_json::from_str::<serde_json::Value>(line).ok())
        .filter(|entry| matches!(entry["level"].as_str(), Some("error" | "fatal")))
        .filter_map(|entry| entry["msg"].as_str().map(str::to_string))
        .collect();
    if messages.is_empty() {
        None
    } else {
        Some(messages.join("; "))
    }
}

async fn forward_lines(
    stream: impl AsyncRead + Unpin,
    which: Stream,
    output: mpsc::Sender<OutputLine>,
) {
    let mut reader = BufReader::new(stream);
    let mut buffer = Vec::new();
    let mut receiver_gone = false;
    loop {
        buffer.clear();
        match reader.read_until(b'\n', &mut buffer).await {
            Ok(0) | Err(_) => break,
            Ok(_) => {}
        }
        if receiver_gone {
            continue; // keep draining so the container never blocks on a full pipe
        }
        while matches!(buffer.last(), Some(b'\n' | b'\r')) {
            buffer.pop();
        }
        let line = OutputLine {
            stream: which,
            line: String::from_utf8_lossy(&buffer).into_owned(),
        };
        if output.send(line).await.is_err() {
            receiver_gone = true;
        }
    }
}

/// Owns the `runc run` child: waits for it, collects the OOM verdict, removes the container and
/// its cgroups, then publishes the exit status.
async fn supervise(
    mut child: tokio::process::Child,
    readers: Vec<JoinHandle<()>>,
    config: Arc<RuncConfig>,
    id: String,
    cgroup: CgroupPath,
    exit_sender: watch::Sender<Option<ExitStatus>>,
) {
    let code = match child.wait().await {
        Ok(status) => status
            .code()
            .unwrap_or_else(|| 128 + status.signal().unwrap_or(0)),
        Err(error) => {
            tracing::warn!(%error, container_id = %id, "waiting for runc run failed");
            -1
        }
    };
    // Every process of the container is gone once its init is, so the pipes close promptly.
    for reader in readers {
        let _ = tokio::time::timeout(Duration::from_secs(5), reader).await;
    }
    let oom_killed = cgroup.oom_kills().map(|kills| kills > 0).unwrap_or(false);
    let blocking_id = id.clone();
    let _ = tokio::task::spawn_blocking(move || destroy_blocking(&config, &blocking_id)).await;
    let status = ExitStatus { code, oom_killed };
    tracing::debug!(container_id = %id, code, oom_killed, "container exited");
    let _ = exit_sender.send(Some(status));
}

/// `runc kill`, `runc delete --force`, leftover cgroups, bundle directory. Blocking.
fn destroy_blocking(config: &RuncConfig, id: &str) {
    let runc = |args: &[&str]| {
        std::process::Command::new(&config.runc_binary)
            .arg("--root")
            .arg(&config.state_dir)
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
    };
    let _ = runc(&["delete", "--force", id]);
    CgroupPath::new(&config.cgroup_parent, id).remove_leftovers();
    let _ = std::fs::remove_dir_all(config.bundles_dir.join(id));
}

struct RuncContainer {
    id: String,
    config: Arc<RuncConfig>,
    cgroup: CgroupPath,
    home_dir: PathBuf,
    exit: watch::Receiver<Option<ExitStatus>>,
    supervisor: Mutex<Option<JoinHandle<()>>>,
    last_cpu_sample: Mutex<(Instant, u64)>,
}

impl RuncContainer {
    async fn wait_for_exit(&self) -> ExitStatus {
        let mut receiver = self.exit.clone();
        let status = match receiver.wait_for(Option::is_some).await {
            Ok(status) => *status,
            // The supervisor is gone without a verdict (it panicked): report an unknown exit.
            Err(_) => None,
        };
        status.unwrap_or(ExitStatus {
            code: -1,
            oom_killed: false,
        })
    }

    async fn kill(&self, signal: &str) {
        let result = Command::new(&self.config.runc_binary)
            .arg("--root")
            .arg(&self.config.state_dir)
            .args(["kill", &self.id, signal])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .await;
        if let Err(error) = result {
            tracing::warn!(%error, container_id = %self.id, signal, "runc kill failed");
        }
    }

    async fn stop_container(&self, grace: Duration) -> Result<ExitStatus, ContainerError> {
        if let Some(status) = self.exit_status() {
            return Ok(status);
        }
        self.kill("TERM").await;
        if let Ok(status) = tokio::time::timeout(grace, self.wait_for_exit()).await {
            return Ok(status);
        }
        tracing::info!(container_id = %self.id, grace_secs = grace.as_secs(), "sending SIGKILL");
        self.kill("KILL").await;
        tokio::time::timeout(KILL_WAIT, self.wait_for_exit())
            .await
            .map_err(|_| ContainerError::StopTimedOut {
                id: self.id.clone(),
                waited_secs: KILL_WAIT.as_secs(),
            })
    }

    async fn read_stats(&self) -> Result<ContainerStats, ContainerError> {
        let cgroup = self.cgroup.clone();
        let home_dir = self.home_dir.clone();
        let (memory_bytes, cpu_total_ns, disk_bytes) = tokio::task::spawn_blocking(move || {
            let memory = cgroup.memory_usage()?;
            let cpu = cgroup.cpu_usage_ns()?;
            let disk = disk_usage(&home_dir)?;
            Ok::<_, std::io::Error>((memory, cpu, disk))
        })
        .await
        .map_err(|error| ContainerError::io("stats task", std::io::Error::other(error)))?
        .map_err(|error| ContainerError::io(format!("reading stats of {}", self.id), error))?;
        let now = Instant::now();
        let cpu_fraction = {
            let mut last = self
                .last_cpu_sample
                .lock()
                .unwrap_or_else(|e| e.into_inner());
            let wall_ns = now.duration_since(last.0).as_nanos() as f64;
            let used_ns = cpu_total_ns.saturating_sub(last.1) as f64;
            *last = (now, cpu_total_ns);
            if wall_ns > 0.0 {
                used_ns / wall_ns
            } else {
                0.0
            }
        };
        Ok(ContainerStats {
            memory_bytes,
            cpu_total_ns,
            cpu_fraction,
            disk_bytes,
        })
    }
}

impl Container for RuncContainer {
    fn id(&self) -> &str {
        &self.id
    }

    fn wait(&self) -> BoxFuture<'_, ExitStatus> {
        Box::pin(self.wait_for_exit())
    }

    fn exit_status(&self) -> Option<ExitStatus> {
        *self.exit.borrow()
    }

    fn stop(&self, grace: Duration) -> BoxFuture<'_, Result<ExitStatus, ContainerError>> {
        Box::pin(self.stop_container(grace))
    }

    fn stats(&self) -> BoxFuture<'_, Result<ContainerStats, ContainerError>> {
        Box::pin(self.read_stats())
    }
}

impl Drop for RuncContainer {
    fn drop(&mut self) {
        if self.exit.borrow().is_some() {
            return;
        }
        // Dropped while running (a caller gave up, or a test failed): kill and remove it now, so
        // no container or cgroup outlives its handle.
        tracing::warn!(container_id = %self.id, "container handle dropped while running; killing it");
        if let Some(supervisor) = self
            .supervisor
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .take()
        {
            supervisor.abort();
        }
        destroy_blocking(&self.config, &self.id);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids() {
        assert!(validate_id("app-1_2.3").is_ok());
        assert!(validate_id("").is_err());
        assert!(validate_id("../x").is_err());
        assert!(validate_id(".hidden").is_err());
        assert!(validate_id(&"a".repeat(65)).is_err());
    }
}
