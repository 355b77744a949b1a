//! A service broker for the service scenarios: `kiln broker memdb|postgres` started as a child on
//! a free loopback port (it stops when its standard input closes, i.e. with the test).

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};

use anyhow::{bail, Context};

/// A running broker child.
pub struct Broker {
    child: Child,
    /// Its base URL, for `cf create-service-broker`.
    pub url: String,
    /// Basic-auth user name.
    pub username: String,
    /// Basic-auth password.
    pub password: String,
}

impl Broker {
    /// Starts `kiln broker <kind>` with `extra` arguments.
    pub fn start(kind: &str, extra: &[&str]) -> anyhow::Result<Broker> {
        let password = uuid::Uuid::new_v4().simple().to_string();
        let mut child = Command::new(crate::platform::kiln_binary()?)
            .args([
                "broker",
                kind,
                "--listen",
                "127.0.0.1:0",
                "--username",
                "broker",
            ])
            .args(["--password", &password, "--exit-on-stdin-eof"])
            .args(extra)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .context("starting kiln broker")?;
        let stdout = child.stdout.take().context("broker stdout")?;
        let mut lines = BufReader::new(stdout).lines();
        let url = loop {
            let Some(line) = lines.next() else {
                let _ = child.kill();
                bail!("kiln broker {kind} exited before listening");
            };
            let line = line?;
            if let Some(url) = line.split(" listening on ").nth(1) {
                break url.trim().to_owned();
            }
        };
        // Keep draining its output so it never blocks on a full pipe.
        std::thread::spawn(move || for _ in lines {});
        Ok(Broker {
            child,
            url,
            username: "broker".to_owned(),
            password,
        })
    }
}

impl Drop for Broker {
    fn drop(&mut self) {
        drop(self.child.stdin.take());
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
