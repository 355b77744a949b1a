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
