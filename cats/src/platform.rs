//! The platform under test: a `kiln up` child process on ephemeral ports with a temporary data
//! directory, or an external deployment described by a JSON config (`CATS_CONFIG`), like CF's
//! `integration_config.json`.

use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};

/// What the scenarios need to know about the platform.
#[derive(Debug, Clone, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PlatformOptions {
    /// The Cloud Controller URL given to `cf api`.
    pub api: String,
    pub admin_user: String,
    pub admin_password: String,
    /// Client id and secret for `cf auth … --client-credentials`, when the deployment has one.
    #[serde(default)]
    pub admin_client: Option<String>,
    #[serde(default)]
    pub admin_client_secret: Option<String>,
    pub apps_domain: String,
    #[serde(default)]
    pub skip_ssl_validation: bool,
    /// Where app traffic goes (`host:port` of the router). Absent: `http://<host>.<apps_domain>/`.
    #[serde(default)]
    pub router_address: Option<String>,
    /// Whether the platform can stage and run apps (a local `kiln up` without a DEA cannot).
    #[serde(default = "yes")]
    pub runs_apps: bool,
    /// The Cloud Controller's `broker_client_timeout_seconds`, when known (scenarios about broker
    /// timeouts need it; they skip without it).
    #[serde(default)]
    pub broker_client_timeout_seconds: Option<u64>,
}

/// The broker timeout of the locally started shared platform: short, so that the timeout
/// scenario waits seconds, not CF's default minute, for the Cloud Controller to give up.
const LOCAL_BROKER_CLIENT_TIMEOUT_SECONDS: u64 = 10;

fn yes() -> bool {
    true
}

/// A running platform; a locally started one stops when this is dropped or the test process ends.
pub struct Platform {
    pub options: PlatformOptions,
    local: Option<LocalKiln>,
}

struct LocalKiln {
    child: Mutex<Child>,
    // Closing kiln's stdin stops it (`--exit-on-stdin-eof`), even if this process dies abruptly.
    stdin: Option<ChildStdin>,
    nats_url: Option<String>,
    _data_dir: Option<tempfile::TempDir>,
}

impl Drop for LocalKiln {
    fn drop(&mut self) {
        drop(self.stdin.take());
        if let Ok(mut child) = self.child.lock() {
            if wait_with_timeout(&mut child, Duration::from_secs(20)).is_none() {
                let _ = child.kill();
                let _ = child.wait();
            }
        }
    }
}

fn wait_with_timeout(child: &mut Child, timeout: Duration) -> Option<std::process::ExitStatus> {
    let deadline = Instant::now() + timeout;
    while Instant::now() < deadline {
        if let Ok(Some(status)) = child.try_wait() {
            return Some(status);
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    None
}

impl Platform {
    /// The platform the scenarios target: `CATS_CONFIG` if set, else a fresh local `kiln up`.
    pub fn from_environment() -> anyhow::Result<Platform> {
        if let Some(path) = std::env::var_os("CATS_CONFIG") {
            let text = std::fs::read_to_string(&path).with_context(|| {
                format!("reading CATS_CONFIG {}", PathBuf::from(&path).display())
            })?;
            let options: PlatformOptions =
                serde_json::from_str(&text).context("parsing CATS_CONFIG")?;
            return Ok(Platform {
                options,
                local: None,
            });
        }
        let timeout = LOCAL_BROKER_CLIENT_TIMEOUT_SECONDS.to_string();
        Platform::start_local(&["--broker-client-timeout-seconds", &timeout])
    }

    /// GETs `path` from the app at `host` through the router; returns status, router error header
    /// and body.
    pub fn get_app(&self, host: &str, path: &str) -> anyhow::Result<(u16, Option<String>, String)> {
        let fqdn = format!("{host}.{}", self.options.apps_domain);
        let address = match &self.options.router_address {
            Some(address) => address.clone(),
            None => format!("{fqdn}:80"),
        };
        let mut stream = std::net::TcpStream::connect(&address)
            .with_context(|| format!("connecting to the router at {address}"))?;
        stream.set_read_timeout(Some(Duration::from_secs(10)))?;
        use std::io::{Read, Write};
        write!(
            stream,
            "GET {path} HTTP/1.1\r\nHost: {fqdn}\r\nConnection: close\r\n\r\n"
        )?;
        let mut raw = Vec::new();
        stream.read_to_end(&mut raw)?;
        let text = String::from_utf8_lossy(&raw).to_string();
        let (head, body) = text.split_once("\r\n\r\n").unwrap_or((text.as_str(), ""));
        let status = head
            .split_whitespace()
            .nth(1)
            .and_then(|code| code.parse().ok())
            .unwrap_or(0);
        let router_error = head.lines().find_map(|line| {
            let (name, value) = line.split_once(':')?;
            name.eq_ignore_ascii_case("x-cf-routererror")
                .then(|| value.trim().to_string())
        });
        Ok((status, router_error, body.to_string()))
    }

    /// Whether this platform was started here (and so can be configured by a scenario).
    pub fn is_local(&self) -> bool {
        self.local.is_some()
    }

    /// Starts `kiln up` with ephemeral ports, a temporary data directory and `extra_args`.
    pub fn start_local(extra_args: &[&str]) -> anyhow::Result<Platform> {
        let data_dir = tempfile::Builder::new().prefix("cats-kiln-").tempdir()?;
        let mut platform = Platform::start_local_in(data_dir.path(), extra_args)?;
        if let Some(local) = platform.local.as_mut() {
            local._data_dir = Some(data_dir);
        }
        Ok(platform)
    }

    /// The NATS URL `kiln up` printed (credentials redacted), when started here.
    pub fn nats_url(&self) -> Option<&str> {
        self.local.as_ref().and_then(|l| l.nats_url.as_deref())
    }

    /// Sends SIGTERM to a locally started `kiln up` and waits for it; returns its exit code.
    pub fn terminate(mut self) -> anyhow::Result<i32> {
        let mut local = self.local.take().context("not a local platform")?;
        let mut child = local
            .child
            .lock()
            .map_err(|_| anyhow::anyhow!("poisoned"))?;
        let status = Command::new("kill")
            .args(["-TERM", &child.id().to_string()])
            .status()?;
        anyhow::ensure!(status.success(), "kill -TERM failed");
        let exit = wait_with_timeout(&mut child, Duration::from_secs(30))
            .context("kiln up did not stop within 30 s of SIGTERM")?;
        drop(child);
        drop(local.stdin.take());
        Ok(exit.code().unwrap_or(-1))
    }

    /// Starts `kiln up` on ephemeral ports with the given data directory (kept afterwards).
    pub fn start_local_in(
        data_dir: &std::path::Path,
        extra_args: &[&str],
    ) -> anyhow::Result<Platform> {
        let binary = kiln_binary()?;
        let mut child = Command::new(&binary)
            .arg("up")
            .args(["--api-port", "0", "--uaa-port", "0", "--router-port", "0"])
            .args(["--log-cache-port", "0"])
            .arg("--exit-on-stdin-eof")
            // bcrypt's cheapest cost: the scenarios log in often and the cost is not under test.
            .args(["--password-hash-cost", "4"])
            .arg("--data-dir")
            .arg(data_dir)
            .arg("--system-buildpacks-dir")
            .arg(crate::cats_dir().join("../buildpacks"))
            .args(extra_args)
            .env_remove("KILN_ADMIN_PASSWORD")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .with_context(|| format!("starting {}", binary.display()))?;
        let stdin = child.stdin.take().context("kiln stdin")?;
        let stdout = child.stdout.take().context("kiln stdout")?;

        let (sender, receiver) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if sender.send(line).is_err() {
                    // Nobody listens any more; keep draining so kiln never blocks on a full pipe.
                    continue;
                }
            }
        });

        let (mut api, mut password, mut client, mut nats) = (None, None, None, None);
        let (mut router_address, mut runs_apps) = (None, false);
        let deadline = Instant::now() + Duration::from_secs(120);
        loop {
            let remaining = deadline.saturating_duration_since(Instant::now());
            let line = match receiver.recv_timeout(remaining) {
                Ok(line) => line,
                Err(_) => {
                    let _ = child.kill();
                    bail!("kiln up did not print its login lines within 120 s");
                }
            };
            let words: Vec<&str> = line.split_whitespace().collect();
            match words.as_slice() {
                ["cf", "api", url] => api = Some(url.to_string()),
                ["cf", "login", "-u", _, "-p", secret] => password = Some(secret.to_string()),
                ["cf", "auth", id, secret, "--client-credentials"] => {
                    client = Some((id.to_string(), secret.to_string()))
                }
                ["NATS:", url] => nats = Some(url.to_string()),
                ["Apps:", url, ..] => {
                    router_address = Some(url.trim_start_matches("http://").to_string())
                }
                ["DEA:", id] => runs_apps = !id.is_empty(),
                ["Press", "Ctrl-C", ..] => break,
                _ => {}
            }
        }
        let options = PlatformOptions {
            api: api.context("kiln up printed no `cf api` line")?,
            admin_user: "admin".to_string(),
            admin_password: password.context("kiln up printed no `cf login` line")?,
            admin_client: client.as_ref().map(|(id, _)| id.clone()),
            admin_client_secret: client.map(|(_, secret)| secret),
            apps_domain: "apps.localhost".to_string(),
            skip_ssl_validation: false,
            router_address,
            runs_apps,
            // `kiln up`'s default unless the caller chose one.
            broker_client_timeout_seconds: Some(
                extra_args
                    .windows(2)
                    .find(|pair| pair[0] == "--broker-client-timeout-seconds")
                    .and_then(|pair| pair[1].parse().ok())
                    .unwrap_or(60),
            ),
        };
        Ok(Platform {
            options,
            local: Some(LocalKiln {
                child: Mutex::new(child),
                stdin: Some(stdin),
                nats_url: nats,
                _data_dir: None,
            }),
        })
    }
}

/// The `kiln` binary under test: `KILN_BIN`, else `<target dir>/debug/kiln`.
pub fn kiln_binary() -> anyhow::Result<PathBuf> {
    if let Some(path) = std::env::var_os("KILN_BIN") {
        return Ok(path.into());
    }
    let target_dir = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| crate::cats_dir().join("../target"));
    let candidate = target_dir.join("debug").join("kiln");
    if candidate.is_file() {
        return Ok(candidate);
    }
    bail!(
        "the kiln binary was not found at {}: run `cargo build --bin kiln` or set KILN_BIN",
        candidate.display()
    )
}
