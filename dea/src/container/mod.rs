//! Containers for staging tasks and app instances: an OCI runtime behind the `ContainerRuntime`
//! trait, with `runc` as the implementation.
//!
//! Every container gets the same shape (see `reference/containers.md`, "A bundle that worked"): a
//! read-only root made of the host's `/usr` and `/etc` with generated `passwd`, `group`, `hosts`
//! and `resolv.conf` on top, a writable `/home/vcap` owned by uid 2000, a tmpfs `/tmp`, no
//! capabilities, its own pid/ipc/uts/mount namespaces, the host network (or a prepared network
//! namespace, `ContainerSpec::network`), and cgroup v1 limits.
//! The command runs under a small init (PID 1) that forwards signals and reaps orphans.

mod bundle;
mod cgroup;
pub mod disk;
mod runc;

use std::future::Future;
use std::path::PathBuf;
use std::pin::Pin;
use std::time::Duration;

use tokio::sync::mpsc;

pub use runc::{RuncConfig, RuncRuntime};

/// A boxed future, so that `ContainerRuntime` stays usable as `dyn ContainerRuntime`.
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// The uid of CF's `vcap` user, which runs every staging task and app instance.
pub const VCAP_UID: u32 = 2000;
/// The gid of CF's `vcap` group.
pub const VCAP_GID: u32 = 2000;
/// Where the writable home directory appears inside every container.
pub const CONTAINER_HOME: &str = "/home/vcap";

/// What to run and how to confine it.
#[derive(Debug, Clone)]
pub struct ContainerSpec {
    /// Unique among live containers; `[A-Za-z0-9_.-]`, at most 64 characters.
    pub id: String,
    /// The command and its arguments (argv, not a shell string). It runs under the init.
    pub args: Vec<String>,
    /// The complete environment; `PATH` gets a default when absent.
    pub env: Vec<(String, String)>,
    /// Working directory inside the container.
    pub cwd: String,
    /// Defaults to the id (cut to 63 characters).
    pub hostname: Option<String>,
    /// Host directory mounted writable at `/home/vcap`; it must be owned by uid 2000.
    pub home_dir: PathBuf,
    /// Further bind mounts, in order.
    pub bind_mounts: Vec<BindMount>,
    pub limits: Limits,
    /// A prepared network namespace to join; `None` shares the host's network.
    pub network: Option<NetworkNamespace>,
}

/// An isolated container's network: a namespace the DEA has wired (see `crate::network`), and
/// what its `/etc/hosts` and `/etc/resolv.conf` say.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NetworkNamespace {
    /// A bind-mounted namespace file, e.g. `/run/netns/kiln-0afe0000`.
    pub path: PathBuf,
    /// Lines added to `/etc/hosts` after `localhost` (e.g. the gateway as `kiln-host`).
    pub extra_hosts: Vec<(std::net::IpAddr, String)>,
    /// The complete `/etc/resolv.conf`.
    pub resolv_conf: String,
}

/// A host path bound into the container.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BindMount {
    pub source: PathBuf,
    /// Absolute path inside the container.
    pub destination: String,
    pub writable: bool,
}

/// Resource limits of one container.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Memory limit; memory+swap gets the same value, so the container cannot swap.
    pub memory_bytes: u64,
    /// Maximum number of tasks (processes and threads).
    pub pids: u64,
    /// Relative cpu weight (cgroup v1 `cpu.shares`).
    pub cpu_shares: u64,
    /// `RLIMIT_NOFILE`, soft and hard.
    pub nofile: u64,
    /// Size of the tmpfs at `/tmp` (its pages count against the memory limit).
    pub tmp_bytes: u64,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            memory_bytes: 256 * 1024 * 1024,
            pids: 1024,
            cpu_shares: 1024,
            nofile: 16384,
            tmp_bytes: 64 * 1024 * 1024,
        }
    }
}

/// Which stream a line of output came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stream {
    Stdout,
    Stderr,
}

/// One line of a container's output, without its line terminator.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OutputLine {
    pub stream: Stream,
    pub line: String,
}

/// How a container's init ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ExitStatus {
    /// The exit code, or 128 + the signal number when the process was killed by a signal.
    pub code: i32,
    /// The kernel's OOM killer killed a process of this container.
    pub oom_killed: bool,
}

impl ExitStatus {
    pub fn success(&self) -> bool {
        self.code == 0 && !self.oom_killed
    }

    /// CF's crash description, e.g. `Exited with status 137 (out of memory)`.
    pub fn description(&self) -> String {
        if self.oom_killed {
            format!("Exited with status {} (out of memory)", self.code)
        } else {
            format!("Exited with status {}", self.code)
        }
    }
}

/// Resource usage of a running container.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ContainerStats {
    /// Memory in use, page cache excluded.
    pub memory_bytes: u64,
    /// Cumulative cpu time of all its processes.
    pub cpu_total_ns: u64,
    /// Cpu used since the previous `stats` call (or the start), as a fraction of one core.
    pub cpu_fraction: f64,
    /// Bytes allocated under the writable home directory.
    pub disk_bytes: u64,
}

/// Errors of the container layer.
#[derive(Debug, thiserror::Error)]
pub enum ContainerError {
    #[error("invalid container spec: {0}")]
    InvalidSpec(String),
    #[error("{context}: {source}")]
    Io {
        context: String,
        #[source]
        source: std::io::Error,
    },
    #[error("`{command}` failed: {message}")]
    Runtime { command: String, message: String },
    #[error("container {id} did not exit {waited_secs} s after SIGKILL")]
    StopTimedOut { id: String, waited_secs: u64 },
}

impl ContainerError {
    pub(crate) fn io(context: impl Into<String>, source: std::io::Error) -> Self {
        ContainerError::Io {
            context: context.into(),
            source,
        }
    }
}

/// An OCI runtime.
pub trait ContainerRuntime: Send + Sync {
    /// Creates and starts a container. Output lines are sent to `output` as they arrive; the
    /// container's writes block while the channel is full, so keep receiving (or drop the
    /// receiver to discard output).
    fn start(
        &self,
        spec: ContainerSpec,
        output: mpsc::Sender<OutputLine>,
    ) -> BoxFuture<'_, Result<Box<dyn Container>, ContainerError>>;
}

/// A started container. Dropping it kills and removes the container if it still runs.
pub trait Container: Send + Sync {
    fn id(&self) -> &str;

    /// Waits until the container has exited and has been cleaned up (runtime state, cgroups).
    fn wait(&self) -> BoxFuture<'_, ExitStatus>;

    /// The exit status if the container has exited and been cleaned up.
    fn exit_status(&self) -> Option<ExitStatus>;

    /// SIGTERM to PID 1 (which forwards it), then SIGKILL after `grace`; returns the exit status.
    fn stop(&self, grace: Duration) -> BoxFuture<'_, Result<ExitStatus, ContainerError>>;

    /// Current memory, cpu and disk usage.
    fn stats(&self) -> BoxFuture<'_, Result<ContainerStats, ContainerError>>;
}

/// Gives `path` and everything under it (not following symlinks) to uid/gid 2000.
pub fn chown_to_vcap(path: &std::path::Path) -> std::io::Result<()> {
    std::os::unix::fs::lchown(path, Some(VCAP_UID), Some(VCAP_GID))?;
    let metadata = std::fs::symlink_metadata(path)?;
    if metadata.is_dir() {
        for entry in std::fs::read_dir(path)? {
            chown_to_vcap(&entry?.path())?;
        }
    }
    Ok(())
}

/// Bytes allocated on disk under `path` (like `du -s`), not following symlinks.
pub fn disk_usage(path: &std::path::Path) -> std::io::Result<u64> {
    use std::os::unix::fs::MetadataExt;
    let metadata = std::fs::symlink_metadata(path)?;
    let mut total = metadata.blocks() * 512;
    if metadata.is_dir() {
        for entry in std::fs::read_dir(path)? {
            match disk_usage(&entry?.path()) {
                Ok(bytes) => total += bytes,
                // Files vanish while a live app runs; that is not an error for a usage figure.
                Err(error) if error.kind() == std::io::ErrorKind::NotFound => {}
                Err(error) => return Err(error),
            }
        }
    }
    Ok(total)
}
