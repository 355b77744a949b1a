//! The NATS bus for `kiln up`: either a `nats-server` child on a free loopback port with a
//! generated auth token, or an operator-provided URL. Either way we connect with async-nats and
//! check the connection before any component starts.

use std::process::Stdio;
use std::time::Duration;

use anyhow::{bail, Context};
use tokio::process::{Child, Command};

/// A connected NATS bus, plus the child server when we started one.
pub(crate) struct Bus {
    pub(crate) url: String,
    pub(crate) client: async_nats::Client,
    child: Option<Child>,
}

impl Bus {
    /// Starts `nats-server` on `127.0.0.1:<free port>` with token auth and connects to it.
    pub(crate) async fn start_child(token: &str) -> anyhow::Result<Bus> {
        let binary = which("nats-server").context(
            "nats-server is not installed (Debian: apt-get install nats-server), or pass --nats-url",
        )?;
        let port = free_loopback_port()?;
        let mut child = Command::new(binary)
            .args(["-a", "127.0.0.1", "-p", &port.to_string(), "--auth", token])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .context("starting nats-server")?;
        let url = format!("nats://127.0.0.1:{port}");
        let mut last_error = None;
        for _ in 0..100 {
            if let Some(status) = child.try_wait()? {
                bail!("nats-server exited at start ({status}); is port {port} taken?");
            }
            match async_nats::ConnectOptions::with_token(token.to_string())
                .connect(url.as_str())
                .await
            {
                Ok(client) => {
                    return Ok(Bus {
                        url,
                        client,
                        child: Some(child),
                    })
                }
                Err(error) => last_error = Some(error),
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        bail!(
            "nats-server did not accept connections on {url}: {}",
            last_error.map(|e| e.to_string()).unwrap_or_default()
        )
    }

    /// Connects to an existing NATS server. Credentials ride in the URL as in gnatsd's
    /// convention: `nats://TOKEN@host:port` for a token, `nats://USER:PASSWORD@host:port`.
    pub(crate) async fn connect(url: &str) -> anyhow::Result<Bus> {
        let (options, address) = connect_options(url)?;
        let printable = crate::up::redact_credentials(url);
        let client = options
            .connect(address.as_str())
            .await
            .with_context(|| format!("connecting to NATS at {printable}"))?;
        Ok(Bus {
            url: url.to_string(),
            client,
            child: None,
        })
    }

    /// Flushes and closes the connection, then stops the child server if we own one. Each step
    /// is bounded: shutdown must finish even if the server or the child misbehaves.
    pub(crate) async fn stop(mut self) {
        let _ = tokio::time::timeout(Duration::from_secs(2), self.client.flush()).await;
        drop(self.client);
        if let Some(mut child) = self.child.take() {
            let _ = child.start_kill();
            if tokio::time::timeout(Duration::from_secs(5), child.wait())
                .await
                .is_err()
            {
                tracing::warn!("nats-server did not exit within 5 s of SIGKILL");
            }
        }
    }
}

/// Asks the kernel for a free loopback port. The port is released before the child binds it, which
/// is racy in principle; nats-server exits if it loses the race and we report that.
pub(crate) fn free_loopback_port() -> anyhow::Result<u16> {
    let listener = std::net::TcpListener::bind("127.0.0.1:0")?;
    Ok(listener.local_addr()?.port())
}

fn which(name: &str) -> Option<std::path::PathBuf> {
    std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|dir| dir.join(name))
            .find(|candidate| candidate.is_file())
    })
}

/// Splits credentials out of a NATS URL: a user without a password is a token.
fn connect_options(url: &str) -> anyhow::Result<(async_nats::ConnectOptions, String)> {
    let Some((scheme, rest)) = url.split_once("://") else {
        bail!(
            "'{}' is not a NATS URL (nats://host:port)",
            crate::up::redact_credentials(url)
        );
    };
    let Some((credentials, host)) = rest.rsplit_once('@') else {
        return Ok((async_nats::ConnectOptions::new(), url.to_string()));
    };
    let address = format!("{scheme}://{host}");
    let options = match credentials.split_once(':') {
        Some((user, password)) => {
            async_nats::ConnectOptions::with_user_and_password(user.into(), password.into())
        }
        None => async_nats::ConnectOptions::with_token(credentials.into()),
    };
    Ok((options, address))
}

#[cfg(test)]
mod tests {
    use super::connect_options;

    #[test]
    fn credentials_leave_the_address() {
        assert_eq!(
            connect_options("nats://tok@127.0.0.1:4222").unwrap().1,
            "nats://127.0.0.1:4222"
        );
        assert_eq!(connect_options("nats://u:p@h:1").unwrap().1, "nats://h:1");
        assert_eq!(connect_options("nats://h:1").unwrap().1, "nats://h:1");
        assert!(connect_options("h:1").is_err());
    }
}
