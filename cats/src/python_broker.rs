//! A service broker on another stack: `cats/assets/python-broker/broker.py` (Python, Flask,
//! openbrokerapi from PyPI) started as a child on a free loopback port with the virtualenv that
//! `scripts/install-deps` prepares. It stops when its standard input closes, i.e. with the test.
//! The broker reports every request and operation as one JSON object per line on its standard
//! output; [`PythonBroker::events`] hands them to the scenarios.

use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};

use anyhow::{bail, Context};

/// A running Python broker child.
pub struct PythonBroker {
    child: Child,
    /// Its base URL, for `cf create-service-broker`.
    pub url: String,
    /// Basic-auth user name.
    pub username: String,
    /// Basic-auth password.
    pub password: String,
    events: Arc<Mutex<Vec<serde_json::Value>>>,
    stderr: tempfile::NamedTempFile,
}

/// The broker's source, `cats/assets/python-broker/broker.py`.
pub fn python_broker_script() -> PathBuf {
    crate::cats_dir().join("assets/python-broker/broker.py")
}

/// A Python interpreter that can import `openbrokerapi`: `KILN_PYTHON_BROKER_PYTHON`, else the
/// virtualenv `~/.cache/kiln-venv` of `scripts/install-deps`. `None` when neither can.
pub fn python_with_openbrokerapi() -> Option<PathBuf> {
    let mut candidates = Vec::new();
    if let Some(python) = std::env::var_os("KILN_PYTHON_BROKER_PYTHON") {
        candidates.push(PathBuf::from(python));
    }
    if let Some(home) = std::env::var_os("HOME") {
        candidates.push(PathBuf::from(home).join(".cache/kiln-venv/bin/python"));
    }
    candidates.into_iter().find(|python| {
        Command::new(python)
            .args(["-c", "import openbrokerapi"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|status| status.success())
    })
}

impl PythonBroker {
    /// Starts the broker with `python`; its `slow` plan takes `slow_seconds` to provision.
    pub fn start(python: &std::path::Path, slow_seconds: u64) -> anyhow::Result<PythonBroker> {
        let password = uuid::Uuid::new_v4().simple().to_string();
        let stderr = tempfile::Builder::new()
            .prefix("cats-python-broker-")
            .suffix(".log")
            .tempfile()?;
        let mut child = Command::new(python)
            .arg(python_broker_script())
            .args([
                "--port",
                "0",
                "--username",
                "broker",
                "--password",
                &password,
            ])
            .args(["--slow-seconds", &slow_seconds.to_string()])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(stderr.reopen()?)
            .spawn()
            .with_context(|| format!("starting the Python broker with {}", python.display()))?;
        let stdout = child.stdout.take().context("broker stdout")?;
        let mut lines = BufReader::new(stdout).lines();
        let url = loop {
            let Some(line) = lines.next() else {
                let _ = child.kill();
                let _ = child.wait();
                bail!(
                    "the Python broker exited before listening:\n{}",
                    std::fs::read_to_string(stderr.path()).unwrap_or_default()
                );
            };
            if let Some(url) = line?.strip_prefix("python-broker listening on ") {
                break url.trim().to_owned();
            }
        };
        let events = Arc::new(Mutex::new(Vec::new()));
        let collected = events.clone();
        // Keep reading so the broker never blocks on a full pipe.
        std::thread::spawn(move || {
            for line in lines.map_while(Result::ok) {
                if let Ok(event) = serde_json::from_str::<serde_json::Value>(&line) {
                    if let Ok(mut events) = collected.lock() {
                        events.push(event);
                    }
                }
            }
        });
        Ok(PythonBroker {
            child,
            url,
            username: "broker".to_owned(),
            password,
            events,
            stderr,
        })
    }

    /// Every event the broker has reported so far (`{"event": "provision", ...}`), in order.
    pub fn events(&self) -> Vec<serde_json::Value> {
        self.events.lock().map(|e| e.clone()).unwrap_or_default()
    }

    /// The events named `name` (`provision`, `deprovision`, `bind`, `unbind`, `request`, ...).
    pub fn events_named(&self, name: &str) -> Vec<serde_json::Value> {
        self.events()
            .into_iter()
            .filter(|event| event["event"] == name)
            .collect()
    }

    /// What the broker wrote to its standard error (Flask's request log, tracebacks).
    pub fn stderr_text(&self) -> String {
        std::fs::read_to_string(self.stderr.path()).unwrap_or_default()
    }
}

impl Drop for PythonBroker {
    fn drop(&mut self) {
        drop(self.child.stdin.take());
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
