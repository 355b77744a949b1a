//! `kiln broker memdb|postgres`: runs one of the service brokers shipped in `broker_sdk` on its
//! own, for `cf create-service-broker` — the in-memory `memdb` example broker (with an async
//! plan) or the PostgreSQL broker (a database per instance, a role per binding).

use std::time::Duration;

use clap::{Args, ValueEnum};

/// Which broker to run.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub(crate) enum BrokerKind {
    /// The in-memory example broker: offering `memdb`, plans `small`, `large`, `async`.
    Memdb,
    /// The PostgreSQL broker: offering `postgresql`, plans `small`, `large`.
    Postgres,
}

/// Arguments of `kiln broker`.
#[derive(Args, Debug)]
pub(crate) struct BrokerArgs {
    /// The broker to run.
    #[arg(value_enum)]
    pub(crate) kind: BrokerKind,
    /// Address to listen on (port 0 picks a free port; the address is printed).
    #[arg(long, default_value = "127.0.0.1:0")]
    pub(crate) listen: std::net::SocketAddr,
    /// Basic-auth user name the Cloud Controller must present.
    #[arg(long, default_value = "broker")]
    pub(crate) username: String,
    /// Basic-auth password the Cloud Controller must present.
    #[arg(long, env = "KILN_BROKER_PASSWORD", hide_env_values = true)]
    pub(crate) password: String,
    /// PostgreSQL URL of a role that may create databases and roles (postgres broker only).
    #[arg(long, env = "KILN_POSTGRES_BROKER_URL", hide_env_values = true)]
    pub(crate) admin_url: Option<String>,
    /// How long the `async` plan's operations take, in milliseconds (memdb only).
    #[arg(long, default_value_t = 1000)]
    pub(crate) async_delay_ms: u64,
    /// Also stop when standard input reaches end of file (for test harnesses).
    #[arg(long, hide = true)]
    pub(crate) exit_on_stdin_eof: bool,
}

/// A broker running on this process's runtime.
pub(crate) struct RunningBroker {
    pub(crate) server: broker_sdk::BrokerServer,
    pub(crate) url: String,
}

/// Starts the broker `kind` on `listener`.
pub(crate) fn start(
    kind: BrokerKind,
    listener: std::net::TcpListener,
    credentials: broker_sdk::Credentials,
    admin_url: Option<&str>,
    async_delay: Duration,
) -> anyhow::Result<RunningBroker> {
    let (server, address) = match kind {
        BrokerKind::Memdb => {
            let config = broker_sdk::brokers::memory::MemoryBrokerConfig {
                async_delay,
                ..Default::default()
            };
            let (server, address, _broker) =
                broker_sdk::brokers::memory::serve(config, credentials, listener)?;
            (server, address)
        }
        BrokerKind::Postgres => {
            let admin_url = admin_url.ok_or_else(|| {
                anyhow::anyhow!(
                    "the postgres broker needs --admin-url (or KILN_POSTGRES_BROKER_URL)"
                )
            })?;
            let config = broker_sdk::brokers::postgres::PostgresBrokerConfig::new(admin_url);
            broker_sdk::brokers::postgres::serve(config, credentials, listener)
                .map_err(|error| anyhow::anyhow!("the postgres broker did not start: {error}"))?
        }
    };
    Ok(RunningBroker {
        server,
        url: format!("http://{address}"),
    })
}

/// `kiln broker …`: runs until Ctrl-C, SIGTERM or (when asked) end of standard input.
pub(crate) async fn run(args: BrokerArgs) -> anyhow::Result<()> {
    let listener = std::net::TcpListener::bind(args.listen)?;
    let credentials = broker_sdk::Credentials::new(&args.username, &args.password);
    let broker = start(
        args.kind,
        listener,
        credentials,
        args.admin_url.as_deref(),
        Duration::from_millis(args.async_delay_ms),
    )?;
    let name = match args.kind {
        BrokerKind::Memdb => "memdb",
        BrokerKind::Postgres => "postgres",
    };
    println!("Broker {name} listening on {}", broker.url);
    println!(
        "  cf create-service-broker {name} {} <password> {}",
        args.username, broker.url
    );
    crate::up::wait_for_stop(args.exit_on_stdin_eof).await;
    broker.server.stop().await;
    Ok(())
}

/// Name under which `kiln up` registers the PostgreSQL broker it runs.
pub(crate) const POSTGRES_BROKER_NAME: &str = "postgres";

/// Registers the broker at `url` under `name` with the Cloud Controller at `api_url`, or points
/// the existing registration of that name at `url` with the new credentials (the broker `kiln up`
/// runs gets a fresh port and password at every start). Authenticates as the platform admin
/// client through UAA. Waits for the CC's job, so the catalog is in the marketplace on return.
pub(crate) async fn register_with_cloud_controller(
    api_url: &str,
    uaa_url: &str,
    admin_client: (&str, &str),
    name: &str,
    url: &str,
    credentials: (&str, &str),
) -> anyhow::Result<()> {
    use anyhow::Context;
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(30))
        .build()?;
    let token: serde_json::Value = http
        .post(format!("{uaa_url}/oauth/token"))
        .basic_auth(admin_client.0, Some(admin_client.1))
        .form(&[("grant_type", "client_credentials")])
        .send()
        .await?
        .error_for_status()
        .context("token for the admin client")?
        .json()
        .await?;
    let token = token["access_token"]
        .as_str()
        .context("UAA answered without an access_token")?
        .to_owned();
    let bearer = format!("bearer {token}");

    let existing: serde_json::Value = http
        .get(format!("{api_url}/v3/service_brokers"))
        .query(&[("names", name)])
        .header("Authorization", &bearer)
        .send()
        .await?
        .error_for_status()
        .context("listing service brokers")?
        .json()
        .await?;
    let authentication = serde_json::json!({
        "type": "basic",
        "credentials": {"username": credentials.0, "password": credentials.1},
    });
    let request = match existing["resources"][0]["guid"].as_str() {
        Some(guid) => http
            .patch(format!("{api_url}/v3/service_brokers/{guid}"))
            .json(&serde_json::json!({"url": url, "authentication": authentication})),
        None => http
            .post(format!("{api_url}/v3/service_brokers"))
            .json(&serde_json::json!({"name": name, "url": url, "authentication": authentication})),
    };
    let response = request.header("Authorization", &bearer).send().await?;
    let status = response.status();
    let job_url = response
        .headers()
        .get("Location")
        .and_then(|value| value.to_str().ok())
        .map(str::to_owned);
    if !status.is_success() {
        let body = response.text().await.unwrap_or_default();
        anyhow::bail!("the Cloud Controller answered {status}: {body}");
    }
    let Some(job_url) = job_url else {
        return Ok(());
    };
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    loop {
        let job: serde_json::Value = http
            .get(&job_url)
            .header("Authorization", &bearer)
            .send()
            .await?
            .error_for_status()
            .context("reading the broker registration job")?
            .json()
            .await?;
        match job["state"].as_str() {
            Some("COMPLETE") => return Ok(()),
            Some("FAILED") => anyhow::bail!(
                "{}",
                job["errors"][0]["detail"]
                    .as_str()
                    .unwrap_or("the registration job failed")
            ),
            _ if tokio::time::Instant::now() > deadline => {
                anyhow::bail!("the registration job did not finish within 60 s")
            }
            _ => tokio::time::sleep(Duration::from_millis(100)).await,
        }
    }
}
