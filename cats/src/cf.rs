//! One user's `cf` CLI: a private `CF_HOME`, commands run with a timeout, output captured.

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context};

/// What one `cf` invocation printed and how it exited.
#[derive(Debug)]
pub struct CfOutput {
    pub command: String,
    pub status: i32,
    pub stdout: String,
    pub stderr: String,
}

impl CfOutput {
    /// Both streams, as a person at a terminal would see them.
    pub fn text(&self) -> String {
        format!("{}{}", self.stdout, self.stderr)
    }

    /// Panics with the whole output unless the command exited 0.
    #[track_caller]
    pub fn success(self) -> CfOutput {
        assert_eq!(
            self.status,
            0,
            "`{}` failed:\n{}",
            self.command,
            self.text()
        );
        self
    }

    /// Panics with the whole output unless the command failed.
    #[track_caller]
    pub fn failure(self) -> CfOutput {
        assert_ne!(
            self.status,
            0,
            "`{}` should have failed:\n{}",
            self.command,
            self.text()
        );
        self
    }

    /// Panics unless the output contains `needle`.
    #[track_caller]
    pub fn contains(self, needle: &str) -> CfOutput {
        assert!(
            self.text().contains(needle),
            "`{}` output lacks {needle:?}:\n{}",
            self.command,
            self.text()
        );
        self
    }

    /// Panics unless one line of the output equals `expected` once both are trimmed and runs of
    /// whitespace are single spaces (the CLI pads its table columns to the widest cell).
    #[track_caller]
    pub fn has_line(self, expected: &str) -> CfOutput {
        let normalize = |line: &str| line.split_whitespace().collect::<Vec<_>>().join(" ");
        let expected = normalize(expected);
        assert!(
            self.text().lines().any(|line| normalize(line) == expected),
            "`{}` output has no line {expected:?}:\n{}",
            self.command,
            self.text()
        );
        self
    }

    /// Like [`CfOutput::has_line`], for a line that starts with `prefix` (a timestamp follows).
    #[track_caller]
    pub fn has_line_starting(self, prefix: &str) -> CfOutput {
        let normalize = |line: &str| line.split_whitespace().collect::<Vec<_>>().join(" ");
        let prefix = normalize(prefix);
        assert!(
            self.text()
                .lines()
                .any(|line| normalize(line).starts_with(&prefix)),
            "`{}` output has no line starting with {prefix:?}:\n{}",
            self.command,
            self.text()
        );
        self
    }

    /// Panics if the output contains `needle`.
    #[track_caller]
    pub fn lacks(self, needle: &str) -> CfOutput {
        assert!(
            !self.text().contains(needle),
            "`{}` output should not contain {needle:?}:\n{}",
            self.command,
            self.text()
        );
        self
    }
}

/// A `cf` CLI with its own home directory (config, tokens, target).
pub struct CfSession {
    binary: PathBuf,
    home: tempfile::TempDir,
    timeout: Duration,
}

impl CfSession {
    pub fn new(binary: &Path) -> anyhow::Result<CfSession> {
        Ok(CfSession {
            binary: binary.to_path_buf(),
            home: tempfile::Builder::new().prefix("cats-cf-home-").tempdir()?,
            timeout: Duration::from_secs(120),
        })
    }

    /// The `CF_HOME` of this session; the CLI keeps `.cf/config.json` under it.
    pub fn home(&self) -> &Path {
        self.home.path()
    }

    /// The CLI's saved configuration.
    pub fn config(&self) -> anyhow::Result<serde_json::Value> {
        let text = std::fs::read_to_string(self.home().join(".cf/config.json"))?;
        Ok(serde_json::from_str(&text)?)
    }

    /// Replaces the CLI's saved configuration (to plant a forged token, say).
    pub fn write_config(&self, config: &serde_json::Value) -> anyhow::Result<()> {
        std::fs::write(
            self.home().join(".cf/config.json"),
            serde_json::to_vec_pretty(config)?,
        )?;
        Ok(())
    }

    /// Runs `cf ARGS` with no standard input (prompts fail, as in CI).
    pub fn run(&self, args: &[&str]) -> CfOutput {
        self.try_run(args)
            .unwrap_or_else(|error| panic!("cannot run cf {}: {error:#}", args.join(" ")))
    }

    fn try_run(&self, args: &[&str]) -> anyhow::Result<CfOutput> {
        let mut child = Command::new(&self.binary)
            .args(args)
            .env("CF_HOME", self.home())
            .env("CF_PLUGIN_HOME", self.home())
            .env("CF_COLOR", "false")
            .env_remove("CF_TRACE")
            .env_remove("CF_USERNAME")
            .env_remove("CF_PASSWORD")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .context("spawning cf")?;
        let mut stdout_pipe = child.stdout.take().context("stdout")?;
        let mut stderr_pipe = child.stderr.take().context("stderr")?;
        let stdout_reader = std::thread::spawn(move || {
            let mut text = String::new();
            let _ = stdout_pipe.read_to_string(&mut text);
            text
        });
        let stderr_reader = std::thread::spawn(move || {
            let mut text = String::new();
            let _ = stderr_pipe.read_to_string(&mut text);
            text
        });
        let deadline = Instant::now() + self.timeout;
        let status = loop {
            if let Some(status) = child.try_wait()? {
                break status;
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                let _ = child.wait();
                bail!("timed out after {:?}", self.timeout);
            }
            std::thread::sleep(Duration::from_millis(10));
        };
        Ok(CfOutput {
            command: format!("cf {}", args.join(" ")),
            status: status.code().unwrap_or(-1),
            stdout: stdout_reader.join().unwrap_or_default(),
            stderr: stderr_reader.join().unwrap_or_default(),
        })
    }
}
