//! The `kiln` binary: `kiln up` runs the whole platform in one process; `kiln uaa` and
//! `kiln cloud-controller` run one component from a YAML config; `kiln bench` prints benchmark
//! figures. Everything here is wiring: the components live in their own crates.
#![allow(clippy::print_stdout)]

mod bench;
mod brokers;
mod nats;
mod up;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

/// Exit code for a configuration the operator must fix (sysexits EX_USAGE).
const EXIT_BAD_CONFIG: u8 = 64;

#[derive(Parser)]
#[command(name = "kiln", version, about = "A Cloud Foundry-compatible platform")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Start the whole platform locally (NATS, UAA, Cloud Controller) and print the cf login lines.
    Up(up::UpArgs),
    /// Run the UAA token service alone from a YAML config.
    Uaa(ComponentArgs),
    /// Run the Cloud Controller alone from a YAML config.
    CloudController(ComponentArgs),
    /// Run a DEA (stages and runs apps in runc containers) from a YAML config, fed by NATS.
    Dea(NatsComponentArgs),
    /// Run the HTTP router alone from a YAML config, fed by NATS.
    Router(RouterArgs),
    /// Run the loggregator (log-cache API, UDP envelope ingress, syslog drains) from a YAML config.
    Loggregator(LoggregatorArgs),
    /// Run a service broker shipped with Kiln (`memdb` example, `postgres`) for `cf create-service-broker`.
    Broker(brokers::BrokerArgs),
    /// Print benchmark figures (medians and percentiles) for a running or self-started platform.
    Bench(bench::BenchArgs),
    /// Give UAA a new token signing key (running servers switch within seconds; tokens signed
    /// with older keys keep verifying until they expire).
    RotateSigningKey(RotateSigningKeyArgs),
}

#[derive(clap::Args)]
#[group(required = true, multiple = false)]
struct RotateSigningKeyArgs {
    /// The data directory of a `kiln up` platform (its UAA database is `uaa.db` there).
    #[arg(long)]
    data_dir: Option<PathBuf>,
    /// The YAML configuration of a UAA run with `kiln uaa` (its `database_url` is used).
    #[arg(long)]
    config: Option<PathBuf>,
}

#[derive(clap::Args)]
struct ComponentArgs {
    /// YAML configuration file (see the annotated example next to the component's crate).
    #[arg(long)]
    config: PathBuf,
    /// Address to listen on.
    #[arg(long)]
    listen: std::net::SocketAddr,
}

#[derive(clap::Args)]
struct RouterArgs {
    #[command(flatten)]
    component: ComponentArgs,
    /// NATS server carrying route registrations (credentials in the URL, e.g. nats://TOKEN@host:4222).
    #[arg(long)]
    nats_url: String,
}

#[derive(clap::Args)]
struct LoggregatorArgs {
    #[command(flatten)]
    component: ComponentArgs,
    /// UDP address envelopes are received on (components' `LogEmitter` target).
    #[arg(long)]
    ingress: std::net::SocketAddr,
}

#[derive(clap::Args)]
struct NatsComponentArgs {
    /// YAML configuration file (see dea/dea.example.yml).
    #[arg(long)]
    config: PathBuf,
    /// NATS server (credentials in the URL, e.g. nats://TOKEN@host:4222).
    #[arg(long)]
    nats_url: String,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    init_tracing();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("kiln: cannot start the async runtime: {error}");
            return ExitCode::FAILURE;
        }
    };
    let result = runtime.block_on(async move {
        match cli.command {
            Command::Up(args) => up::run(args).await,
            Command::Uaa(args) => run_uaa(args).await,
            Command::CloudController(args) => run_cloud_controller(args).await,
            Command::Router(args) => run_router(args).await,
            Command::Loggregator(args) => run_loggregator(args).await,
            Command::Dea(args) => run_dea(args).await,
            Command::Bench(args) => bench::run(args).await,
            Command::Broker(args) => brokers::run(args).await.map_err(KilnError::from),
            Command::RotateSigningKey(args) => rotate_signing_key(args).await,
        }
    });
    // Components stop their own tasks; never wait long for a stray blocking task at exit.
    runtime.shutdown_timeout(std::time::Duration::from_secs(2));
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(KilnError::Config(message)) => {
            eprintln!("kiln: configuration error: {message}");
            ExitCode::from(EXIT_BAD_CONFIG)
        }
        Err(KilnError::Other(error)) => {
            eprintln!("kiln: {error:#}");
            ExitCode::FAILURE
        }
    }
}

/// Errors of the binary: a bad configuration exits with 64, anything else with 1.
pub(crate) enum KilnError {
    Config(String),
    Other(anyhow::Error),
}

impl From<anyhow::Error> for KilnError {
    fn from(error: anyhow::Error) -> Self {
        KilnError::Other(error)
    }
}

fn init_tracing() {
    let filter = tracing_subscriber::EnvFilter::try_from_env("KILN_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info,actix_server=warn"));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_writer(std::io::stderr)
        .init();
}

/// Reads a YAML file into a component's typed config (unknown fields are rejected by the type).
pub(crate) fn read_config<T: serde::de::DeserializeOwned>(
    path: &std::path::Path,
) -> Result<T, KilnError> {
    let text = std::fs::read_to_string(path)
        .map_err(|error| KilnError::Config(format!("cannot read {}: {error}", path.display())))?;
    serde_yaml::from_str(&text)
        .map_err(|error| KilnError::Config(format!("{}: {error}", path.display())))
}

fn bind(address: std::net::SocketAddr) -> Result<std::net::TcpListener, KilnError> {
    std::net::TcpListener::bind(address)
        .map_err(|error| KilnError::Config(format!("cannot listen on {address}: {error}")))
}

async fn run_uaa(args: ComponentArgs) -> Result<(), KilnError> {
    let config: uaa::UaaConfig = read_config(&args.config)?;
    let listener = bind(args.listen)?;
    let server = uaa::run(config, listener)
        .await
        .map_err(|error| KilnError::Config(error.to_string()))?;
    println!("UAA listening on http://{}", server.local_addr());
    up::wait_for_shutdown_signal().await;
    server.stop().await;
    Ok(())
}

async fn rotate_signing_key(args: RotateSigningKeyArgs) -> Result<(), KilnError> {
    let database_url = match (args.data_dir, args.config) {
        (Some(data_dir), _) => {
            let database = data_dir.join("uaa.db");
            if !database.is_file() {
                return Err(KilnError::Config(format!(
                    "{} holds no UAA database (uaa.db): is it the data directory of `kiln up`?",
                    data_dir.display()
                )));
            }
            up::sqlite_url(&database)
        }
        (None, Some(config)) => read_config::<uaa::UaaConfig>(&config)?.database_url,
        (None, None) => {
            return Err(KilnError::Config(
                "give --data-dir (kiln up) or --config (kiln uaa)".to_string(),
            ))
        }
    };
    let kid = tokio::task::spawn_blocking(move || uaa::rotate_signing_key(&database_url))
        .await
        .map_err(|error| KilnError::Other(error.into()))?
        .map_err(|error| KilnError::Other(error.into()))?;
    println!("New token signing key: {kid}");
    println!("Running UAA servers sign with it within seconds; older keys still verify tokens.");
    Ok(())
}

async fn run_cloud_controller(args: ComponentArgs) -> Result<(), KilnError> {
    let config: cloud_controller::CcConfig = read_config(&args.config)?;
    let listener = bind(args.listen)?;
    let server = cloud_controller::run(config, listener)
        .await
        .map_err(|error| KilnError::Config(error.to_string()))?;
    println!(
        "Cloud Controller listening on http://{}",
        server.local_addr()
    );
    up::wait_for_shutdown_signal().await;
    server.stop().await;
    Ok(())
}

async fn run_router(args: RouterArgs) -> Result<(), KilnError> {
    let config: gorouter::RouterConfig = read_config(&args.component.config)?;
    let listener = bind(args.component.listen)?;
    let bus = nats::Bus::connect(&args.nats_url).await?;
    let server = gorouter::run(config, listener, bus.client.clone())
        .await
        .map_err(|error| KilnError::Config(error.to_string()))?;
    println!("Router listening on http://{}", server.local_addr());
    up::wait_for_shutdown_signal().await;
    server.stop().await;
    bus.stop().await;
    Ok(())
}

async fn run_dea(args: NatsComponentArgs) -> Result<(), KilnError> {
    let config: dea::DeaConfig = read_config(&args.config)?;
    let bus = nats::Bus::connect(&args.nats_url).await?;
    let server = dea::run(config, bus.client.clone())
        .await
        .map_err(|error| KilnError::Config(error.to_string()))?;
    println!("DEA {} running", server.id());
    up::wait_for_shutdown_signal().await;
    server.stop().await;
    bus.stop().await;
    Ok(())
}

async fn run_loggregator(args: LoggregatorArgs) -> Result<(), KilnError> {
    let config: loggregator::LoggregatorConfig = read_config(&args.component.config)?;
    config
        .validate()
        .map_err(|error| KilnError::Config(error.to_string()))?;
    let http = bind(args.component.listen)?;
    let ingress = std::net::UdpSocket::bind(args.ingress).map_err(|error| {
        KilnError::Config(format!("cannot receive on udp {}: {error}", args.ingress))
    })?;
    let listeners = loggregator::Listeners { http, ingress };
    let server = loggregator::run(config, listeners, up::wait_for_shutdown_signal())
        .await
        .map_err(|error| KilnError::Config(error.to_string()))?;
    println!(
        "Loggregator: log-cache API on http://{}, envelope ingress on udp {}",
        server.http_addr(),
        server.ingress_addr()
    );
    server.wait().await;
    Ok(())
}
