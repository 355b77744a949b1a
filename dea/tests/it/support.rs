//! Shared helpers: a runc runtime in a temporary directory, skipping when runc is unavailable.

use std::path::{Path, PathBuf};
use std::time::Duration;

use dea::container::{
    chown_to_vcap, Container, ContainerRuntime, ContainerSpec, ExitStatus, Limits, OutputLine,
    RuncConfig, RuncRuntime, Stream,
};
use tokio::sync::mpsc;

/// Waits until `$condition` holds, checking every 50 ms for at most `$secs` seconds.
#[macro_export]
macro_rules! assert_eventually {
    ($secs:expr, $condition:expr, $($message:tt)+) => {{
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs($secs);
        loop {
            if $condition {
                break;
            }
            if std::time::Instant::now() > deadline {
                panic!($($message)+);
            }
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        }
    }};
}

pub(crate) struct Harness {
    pub(crate) dir: tempfile::TempDir,
    pub(crate) runtime: RuncRuntime,
}

/// A runc runtime with its state, bundles and cgroups of its own, or `None` (with a message) when
/// runc cannot be used here — unless `KILN_REQUIRE_RUNC=1`, which turns that into a failure.
pub(crate) async fn harness() -> Option<Harness> {
    let dir = tempfile::Builder::new()
        .prefix("kiln-dea-it")
        .tempdir()
        .expect("tempdir");
    let mut config = RuncConfig::under(dir.path());
    config.cgroup_parent = "kiln-test".into();
    let runtime = RuncRuntime::new(config);
    let problem = match runtime.version().await {
        Err(error) => Some(format!("runc is not available: {error}")),
        Ok(_) if !is_root() => Some("the runc tests need root".to_string()),
        Ok(_) => None,
    };
    if let Some(problem) = problem {
        if std::env::var("KILN_REQUIRE_RUNC").as_deref() == Ok("1") {
            panic!("{problem} (KILN_REQUIRE_RUNC=1)");
        }
        eprintln!("skipping: {problem}; set KILN_REQUIRE_RUNC=1 to make this a failure");
        return None;
    }
    Some(Harness { dir, runtime })
}

fn is_root() -> bool {
    std::fs::read_to_string("/proc/self/status")
        .map(|status| {
            status
                .lines()
                .any(|line| line.starts_with("Uid:") && line.split_whitespace().nth(1) == Some("0"))
        })
        .unwrap_or(false)
}

pub(crate) fn unique_id(prefix: &str) -> String {
    format!(
        "{prefix}-{}",
        &uuid::Uuid::new_v4().simple().to_string()[..12]
    )
}

impl Harness {
    pub(crate) fn path(&self) -> &Path {
        self.dir.path()
    }

    /// A fresh home directory owned by vcap.
    pub(crate) fn home(&self, name: &str) -> PathBuf {
        let home = self.path().join("homes").join(name);
        std::fs::create_dir_all(&home).unwrap();
        chown_to_vcap(&home).unwrap();
        home
    }

    /// A spec running `bash -c script` with default limits.
    pub(crate) fn shell_spec(&self, script: &str) -> ContainerSpec {
        let id = unique_id("c");
        ContainerSpec {
            home_dir: self.home(&id),
            id,
            args: vec!["/bin/bash".into(), "-c".into(), script.into()],
            env: vec![("HOME".into(), "/home/vcap".into())],
            cwd: "/home/vcap".into(),
            hostname: None,
            bind_mounts: Vec::new(),
            limits: Limits::default(),
            network: None,
        }
    }

    /// Runs a container to completion and returns its exit status and output.
    pub(crate) async fn run(&self, spec: ContainerSpec) -> (ExitStatus, Output) {
        let (sender, mut receiver) = mpsc::channel(64);
        let container = self
            .runtime
            .start(spec, sender)
            .await
            .expect("container starts");
        let mut lines = Vec::new();
        while let Some(line) = receiver.recv().await {
            lines.push(line);
        }
        let status = tokio::time::timeout(Duration::from_secs(60), container.wait())
            .await
            .expect("container exits");
        (status, Output(lines))
    }

    pub(crate) async fn start(
        &self,
        spec: ContainerSpec,
    ) -> (Box<dyn Container>, mpsc::Receiver<OutputLine>) {
        let (sender, receiver) = mpsc::channel(1024);
        let container = self
            .runtime
            .start(spec, sender)
            .await
            .expect("container starts");
        (container, receiver)
    }
}

#[derive(Debug)]
pub(crate) struct Output(pub Vec<OutputLine>);

impl Output {
    pub(crate) fn stdout(&self) -> Vec<&str> {
        self.lines(Stream::Stdout)
    }
    pub(crate) fn stderr(&self) -> Vec<&str> {
        self.lines(Stream::Stderr)
    }
    fn lines(&self, stream: Stream) -> Vec<&str> {
        self.0
            .iter()
            .filter(|l| l.stream == stream)
            .map(|l| l.line.as_str())
            .collect()
    }
}

/// A TCP port nobody listens on right now.
pub(crate) fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Kiln's system buildpacks in the repository.
pub(crate) fn system_buildpack(name: &str) -> dea::staging::Buildpack {
    let dir = Path::new(&manifest_dir()).join("../buildpacks").join(name);
    dea::staging::Buildpack {
        key: name.to_string(),
        dir,
    }
}

/// Writes `files` (relative path, contents) under `dir`; paths ending in `.sh` are executable.
pub(crate) fn write_files(dir: &Path, files: &[(&str, &str)]) {
    use std::os::unix::fs::PermissionsExt;
    for (name, contents) in files {
        let path = dir.join(name);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(&path, contents).unwrap();
        if name.ends_with(".sh") || name.contains("bin/") {
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
        }
    }
}

pub(crate) struct Staged {
    pub(crate) result: Result<dea::staging::StagingResult, dea::staging::StagingError>,
    pub(crate) log: Output,
    pub(crate) droplet: PathBuf,
}

impl Staged {
    pub(crate) fn log_text(&self) -> String {
        self.log
            .0
            .iter()
            .map(|l| l.line.as_str())
            .collect::<Vec<_>>()
            .join("\n")
    }
}

impl Harness {
    /// Stages the app in `app_dir` with `buildpacks` (auto-detect unless `skip_detect`).
    pub(crate) async fn stage(
        &self,
        app_dir: &Path,
        buildpacks: Vec<dea::staging::Buildpack>,
        skip_detect: bool,
    ) -> Staged {
        let staging_id = unique_id("stg");
        let work_dir = self.path().join("staging").join(&staging_id);
        std::fs::create_dir_all(&work_dir).unwrap();
        let droplet = self.path().join(format!("{staging_id}.tgz"));
        let environment = dea::staging::StagingEnvironment {
            app: dea::launch::AppMetadata {
                app_guid: "app-guid".into(),
                app_name: "site".into(),
                ..Default::default()
            },
            stack: "kiln-host".into(),
            memory_mb: 1024,
            disk_mb: 4096,
            fds: 16384,
            staging_group_env: Vec::new(),
            user_env: vec![("GREETING".into(), "hello".into())],
            vcap_services: serde_json::json!({}),
            host_ip: "127.0.0.1".into(),
        };
        let request = dea::staging::StagingRequest {
            staging_id,
            app_dir: app_dir.to_path_buf(),
            buildpacks,
            skip_detect,
            cache_dir: self.path().join("cache"),
            work_dir,
            droplet_path: droplet.clone(),
            cache_output_path: None,
            env: environment.to_env(),
            limits: Limits {
                memory_bytes: 1024 * 1024 * 1024,
                ..Limits::default()
            },
        };
        let (sender, mut receiver) = mpsc::channel(64);
        let collector = tokio::spawn(async move {
            let mut lines = Vec::new();
            while let Some(line) = receiver.recv().await {
                lines.push(line);
            }
            lines
        });
        let result = dea::staging::stage(&self.runtime, &request, sender).await;
        let log = Output(collector.await.unwrap());
        Staged {
            result,
            log,
            droplet,
        }
    }

    /// Extracts `droplet` into a fresh home and starts it on `port` with `user_command`.
    pub(crate) async fn launch(
        &self,
        droplet: &Path,
        user_command: Option<&str>,
        port: u16,
    ) -> (Box<dyn Container>, mpsc::Receiver<OutputLine>) {
        let id = unique_id("app");
        let home = self.home(&id);
        let staging_info = dea::launch::extract_droplet(droplet, &home)
            .await
            .expect("extracts");
        let command = staging_info
            .start_command(user_command)
            .expect("a start command");
        let environment = dea::launch::InstanceEnvironment {
            app: dea::launch::AppMetadata {
                app_guid: "app-guid".into(),
                app_name: "site".into(),
                version: "v1".into(),
                uris: vec!["site.kiln.test".into()],
                process_type: "web".into(),
                ..Default::default()
            },
            instance_guid: "instance-guid".into(),
            instance_index: 0,
            port,
            host_ip: "127.0.0.1".into(),
            network: None,
            memory_mb: 256,
            disk_mb: 1024,
            fds: 16384,
            running_group_env: Vec::new(),
            user_env: vec![("GREETING".into(), "hello".into())],
            vcap_services: serde_json::json!({}),
        };
        let spec = dea::launch::instance_container_spec(
            &id,
            &home,
            &command,
            &staging_info,
            environment.to_env(),
            Limits::default(),
            Vec::new(),
        );
        self.start(spec).await
    }
}

/// `GET path` on 127.0.0.1:port: status code and body.
pub(crate) async fn http_get(port: u16, path: &str) -> (u16, String) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut stream = tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .unwrap();
    let request = format!("GET {path} HTTP/1.0\r\nHost: localhost\r\n\r\n");
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).await.unwrap();
    let status = response.split_whitespace().nth(1).unwrap().parse().unwrap();
    let body = response
        .split_once("\r\n\r\n")
        .map(|(_, body)| body.to_string())
        .unwrap_or_default();
    (status, body)
}

/// Member names of a `.tgz`.
pub(crate) fn tar_listing(archive: &Path) -> Vec<String> {
    let output = std::process::Command::new("tar")
        .arg("-tzf")
        .arg(archive)
        .output()
        .unwrap();
    assert!(output.status.success());
    String::from_utf8(output.stdout)
        .unwrap()
        .lines()
        .map(str::to_string)
        .collect()
}

/// The contents of one member of a `.tgz`.
pub(crate) fn tar_member(archive: &Path, member: &str) -> String {
    let output = std::process::Command::new("tar")
        .arg("-xzOf")
        .arg(archive)
        .arg(member)
        .output()
        .unwrap();
    assert!(output.status.success(), "{member} in {}", archive.display());
    String::from_utf8(output.stdout).unwrap()
}

/// This crate's directory: cargo's `CARGO_MANIFEST_DIR` at run time, else the compile-time one (a
/// target directory shared by several clones may run a test binary compiled in another clone).
fn manifest_dir() -> String {
    std::env::var("CARGO_MANIFEST_DIR").unwrap_or_else(|_| env!("CARGO_MANIFEST_DIR").to_owned())
}
