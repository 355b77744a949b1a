//! `kiln up`: the whole platform in one process. Starts (or joins) NATS, opens the data directory,
//! runs UAA and the Cloud Controller on loopback ports with bootstrap users, clients and seed data,
//! prints the `cf` lines to use, and stops everything on Ctrl-C or SIGTERM.

use std::net::{IpAddr, SocketAddr, TcpListener};
use std::path::{Path, PathBuf};

use anyhow::Context;
use rand::distributions::{Alphanumeric, DistString};
use serde_json::json;

use crate::nats::Bus;

/// Prints a line to stdout, ignoring a closed pipe: whoever started kiln may have gone away, and
/// that must not turn a clean shutdown into a panic.
macro_rules! say {
    ($($arg:tt)*) => {{
        use std::io::Write;
        let _ = writeln!(std::io::stdout(), $($arg)*);
    }};
}
use crate::KilnError;

/// Every scope a platform administrator holds.
pub(crate) const ADMIN_GROUPS: &[&str] = &[
    "cloud_controller.admin",
    "cloud_controller.read",
    "cloud_controller.write",
    "cloud_controller.admin_read_only",
    "cloud_controller.global_auditor",
    "openid",
    "scim.read",
    "scim.write",
    "scim.userids",
    "uaa.user",
    "uaa.admin",
    "doppler.firehose",
    "password.write",
];

/// The client the cf CLI uses (empty secret), as in Cloud Foundry.
pub(crate) const CF_CLIENT_ID: &str = "cf";
/// The client for `cf auth <id> <secret> --client-credentials` as a platform admin.
pub(crate) const ADMIN_CLIENT_ID: &str = "admin-client";
/// The client the Cloud Controller uses to resolve user names through UAA.
pub(crate) const LOOKUP_CLIENT_ID: &str = "cloud_controller_username_lookup";
/// User name on the Cloud Controller's internal API (DEAs' downloads, the loggregator's drain
/// list); the password is generated at each start.
const INTERNAL_API_USER: &str = "kiln-internal";

#[derive(clap::Args, Clone)]
pub(crate) struct UpArgs {
    /// Directory holding the databases, keys and generated secrets.
    #[arg(long, default_value = ".kiln")]
    pub(crate) data_dir: PathBuf,
    /// Address every component binds to.
    #[arg(long, default_value = "127.0.0.1")]
    pub(crate) bind: IpAddr,
    /// Cloud Controller API port (0 picks a free one).
    #[arg(long, default_value_t = 9022)]
    pub(crate) api_port: u16,
    /// Router port for app traffic (0 picks a free one).
    #[arg(long, default_value_t = 8080)]
    pub(crate) router_port: u16,
    /// log-cache API port of the loggregator (0 picks a free one).
    #[arg(long, default_value_t = 9024)]
    pub(crate) log_cache_port: u16,
    /// UAA port (0 picks a free one).
    #[arg(long, default_value_t = 9023)]
    pub(crate) uaa_port: u16,
    /// Use this NATS server instead of starting a nats-server child (e.g. nats://token@host:4222).
    #[arg(long)]
    pub(crate) nats_url: Option<String>,
    /// Password for the bootstrap `admin` user; generated (and kept in the data dir) when absent.
    #[arg(long, env = "KILN_ADMIN_PASSWORD", hide_env_values = true)]
    pub(crate) admin_password: Option<String>,
    /// Lifetime of user access tokens, in seconds.
    #[arg(long, default_value_t = 1200)]
    pub(crate) access_token_validity_secs: u64,
    /// The shared apps domain seeded at first start.
    #[arg(long, default_value = "apps.localhost")]
    pub(crate) apps_domain: String,
    /// bcrypt cost for stored passwords (lower is faster and weaker; 10 is UAA's default).
    #[arg(long, default_value_t = 10)]
    pub(crate) password_hash_cost: u32,
    /// Directory of system buildpacks registered at start (one buildpack directory each).
    /// Default: `buildpacks/` of the source tree this binary was built from, else `./buildpacks`.
    #[arg(long)]
    pub(crate) system_buildpacks_dir: Option<PathBuf>,
    /// Do not run a DEA in this process (apps cannot be staged or run then).
    #[arg(long)]
    pub(crate) no_dea: bool,
    /// First and last host port the DEA gives to app instances.
    #[arg(long, default_value = "61000-61999", value_parser = parse_port_range)]
    pub(crate) dea_ports: (u16, u16),
    /// Memory the DEA offers to app instances and staging, in MB (default: the host's total
    /// memory).
    #[arg(long)]
    pub(crate) dea_memory_mb: Option<u64>,
    /// Disk the DEA offers to app instances and staging, in MB (reservations: every instance
    /// reserves its disk quota, 1 GB unless set).
    #[arg(long, default_value_t = 65536)]
    pub(crate) dea_disk_mb: u64,
    /// Timeout of every request to a service broker, in seconds (CC's
    /// `broker_client_timeout_seconds`): past it the user sees "The request to the service broker
    /// timed out".
    #[arg(long, default_value_t = 60, value_parser = clap::value_parser!(u64).range(1..=3600))]
    pub(crate) broker_client_timeout_seconds: u64,
    /// Seconds between two `last_operation` polls of an asynchronous service operation (the
    /// first poll is immediate; a broker's `Retry-After` can only lengthen the wait). CF's
    /// default is 60; a local platform answers sooner.
    #[arg(long, default_value_t = 5, value_parser = clap::value_parser!(u64).range(1..=86400))]
    pub(crate) broker_poll_interval_seconds: u64,
    /// Run the PostgreSQL service broker against the PostgreSQL server at this URL (a role that
    /// may create databases and roles) and register it with the Cloud Controller as broker
    /// `postgres`; `cf enable-service-access postgresql` then offers it to users.
    #[arg(long, env = "KILN_POSTGRES_BROKER_URL", hide_env_values = true)]
    pub(crate) postgres_broker_url: Option<String>,
    /// Also stop when standard input reaches end of file (used by test harnesses that start
    /// `kiln up` as a child, so it never outlives them).
    #[arg(long, hide = true)]
    pub(crate) exit_on_stdin_eof: bool,
}

/// Secrets generated at first start and reused afterwards, so a restart prints the same login.
#[derive(serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct Secrets {
    admin_password: String,
    admin_client_secret: String,
    lookup_client_secret: String,
}

/// A running platform: what `kiln up` holds until it is told to stop.
pub(crate) struct Platform {
    pub(crate) api_url: String,
    pub(crate) uaa_url: String,
    pub(crate) router_url: String,
    pub(crate) log_cache_url: String,
    pub(crate) admin_password: String,
    pub(crate) admin_client_secret: String,
    bus: Bus,
    uaa: uaa::UaaServer,
    cloud_controller: cloud_controller::CcServer,
    router: gorouter::RouterServer,
    dea: Result<dea::DeaServer, String>,
    /// The PostgreSQL broker, when enabled, and its URL.
    pub(crate) postgres_broker: Option<crate::brokers::RunningBroker>,
    loggregator: loggregator::LoggregatorServer,
}

impl Platform {
    /// Starts NATS (or joins it), UAA and the Cloud Controller for `args`.
    pub(crate) async fn start(args: &UpArgs) -> Result<Platform, KilnError> {
        std::fs::create_dir_all(&args.data_dir).map_err(|error| {
            KilnError::Config(format!(
                "cannot create {}: {error}",
                args.data_dir.display()
            ))
        })?;
        let data_dir = args
            .data_dir
            .canonicalize()
            .context("resolving the data directory")?;
        let secrets = load_or_create_secrets(&data_dir, args.admin_password.as_deref())?;

        let bus = match &args.nats_url {
            Some(url) => Bus::connect(url).await?,
            None => Bus::start_child(&random_secret(32)).await?,
        };

        let uaa_listener = bind(SocketAddr::new(args.bind, args.uaa_port))?;
        let api_listener = bind(SocketAddr::new(args.bind, args.api_port))?;
        let router_listener = bind(SocketAddr::new(args.bind, args.router_port))?;
        let uaa_url = format!(
            "http://{}",
            uaa_listener.local_addr().context("uaa address")?
        );
        let api_url = format!(
            "http://{}",
            api_listener.local_addr().context("api address")?
        );

        let uaa_config: uaa::UaaConfig =
            serde_json::from_value(uaa_config_json(args, &data_dir, &uaa_url, &secrets))
                .map_err(|error| KilnError::Config(format!("UAA configuration: {error}")))?;
        let uaa = uaa::run(uaa_config, uaa_listener)
            .await
            .map_err(|error| KilnError::Other(anyhow::anyhow!("UAA did not start: {error}")))?;

        // The loggregator: envelopes arrive over UDP on loopback; the CLI reads the log-cache
        // API; the drain list comes from the CC's internal API with these credentials.
        let internal_password = random_secret(32);
        let log_cache_listener = bind(SocketAddr::new(args.bind, args.log_cache_port))?;
        let log_cache_url = format!(
            "http://{}",
            log_cache_listener
                .local_addr()
                .context("log-cache address")?
        );
        let ingress = std::net::UdpSocket::bind(SocketAddr::new(args.bind, 0))
            .context("binding the loggregator's UDP ingress")?;
        let ingress_addr = ingress.local_addr().context("ingress address")?;
        let loggregator_config: loggregator::LoggregatorConfig = serde_json::from_value(json!({
            "uaa_url": uaa_url,
            "cc_url": api_url,
            "internal_api": {"username": INTERNAL_API_USER, "password": internal_password},
        }))
        .map_err(|error| KilnError::Config(format!("loggregator configuration: {error}")))?;
        let loggregator = match loggregator::run(
            loggregator_config,
            loggregator::Listeners {
                http: log_cache_listener,
                ingress,
            },
            std::future::pending(),
        )
        .await
        {
            Ok(server) => server,
            Err(error) => {
                uaa.stop().await;
                bus.stop().await;
                return Err(KilnError::Other(anyhow::anyhow!(
                    "the loggregator did not start: {error}"
                )));
            }
        };

        let cc_config: cloud_controller::CcConfig = serde_json::from_value(json!({
            "external_url": api_url,
            "database_url": sqlite_url(&data_dir.join("cloud_controller.db")),
            "uaa": {
                "url": uaa_url,
                "client_id": LOOKUP_CLIENT_ID,
                "client_secret": secrets.lookup_client_secret,
            },
            "apps_domain": args.apps_domain,
            "system_buildpacks_dir": system_buildpacks_dir(args.system_buildpacks_dir.as_deref()),
            "log_cache_url": log_cache_url,
            "loggregator_ingress": ingress_addr,
            "internal_api": {"username": INTERNAL_API_USER, "password": internal_password},
            "services": {
                "broker_client_timeout_seconds": args.broker_client_timeout_seconds,
                "broker_client_default_async_poll_interval_seconds":
                    args.broker_poll_interval_seconds,
            },
        }))
        .map_err(|error| KilnError::Config(format!("Cloud Controller configuration: {error}")))?;
        let cloud_controller = match cloud_controller::run_with_nats(
            cc_config,
            api_listener,
            Some(bus.client.clone()),
        )
        .await
        {
            Ok(server) => server,
            Err(error) => {
                loggregator.stop().await;
                uaa.stop().await;
                bus.stop().await;
                return Err(KilnError::Other(anyhow::anyhow!(
                    "Cloud Controller did not start: {error}"
                )));
            }
        };

        let router_config = gorouter::RouterConfig {
            hosts: vec![args.bind.to_string()],
            loggregator_ingress: Some(ingress_addr),
            ..gorouter::RouterConfig::default()
        };
        let router = match gorouter::run(router_config, router_listener, bus.client.clone()).await {
            Ok(router) => router,
            Err(error) => {
                cloud_controller.stop().await;
                uaa.stop().await;
                bus.stop().await;
                return Err(KilnError::Other(anyhow::anyhow!(
                    "the router did not start: {error}"
                )));
            }
        };
        let router_url = format!("http://{}", router.local_addr());

        let postgres_broker = match &args.postgres_broker_url {
            None => None,
            Some(admin_url) => {
                match start_postgres_broker(args, admin_url, &api_url, &uaa_url, &secrets).await {
                    Ok(broker) => Some(broker),
                    Err(error) => {
                        router.stop().await;
                        cloud_controller.stop().await;
                        uaa.stop().await;
                        loggregator.stop().await;
                        bus.stop().await;
                        return Err(KilnError::Other(error));
                    }
                }
            }
        };

        // The DEA needs root and runc; without them the rest of the platform still serves.
        let dea = if args.no_dea {
            Err("disabled with --no-dea".to_string())
        } else {
            let mut dea_config = dea::DeaConfig::new(
                data_dir.join("dea"),
                dea::config::PortRange {
                    first: args.dea_ports.0,
                    last: args.dea_ports.1,
                },
            );
            dea_config.host_ip = args.bind.to_string();
            dea_config.memory_mb = args.dea_memory_mb.unwrap_or_else(host_memory_mb);
            dea_config.disk_mb = args.dea_disk_mb;
            dea_config.loggregator_ingress = Some(ingress_addr);
            dea::run(dea_config, bus.client.clone())
                .await
                .map_err(|error| error.to_string())
        };
        if let Err(reason) = &dea {
            tracing::warn!(%reason, "no DEA in this process: apps cannot be staged or run");
        }

        Ok(Platform {
            api_url,
            uaa_url,
            router_url,
            log_cache_url,
            admin_password: secrets.admin_password,
            admin_client_secret: secrets.admin_client_secret,
            bus,
            uaa,
            cloud_controller,
            router,
            dea,
            loggregator,
            postgres_broker,
        })
    }

    /// The platform's NATS connection.
    pub(crate) fn nats(&self) -> &async_nats::Client {
        &self.bus.client
    }

    pub(crate) fn nats_url(&self) -> &str {
        &self.bus.url
    }

    /// Stops the components in reverse order of start, then NATS.
    pub(crate) async fn stop(self) {
        if let Ok(dea) = self.dea {
            dea.stop().await;
        }
        self.router.stop().await;
        self.cloud_controller.stop().await;
        if let Some(broker) = self.postgres_broker {
            broker.server.stop().await;
        }
        self.uaa.stop().await;
        self.loggregator.stop().await;
        self.bus.stop().await;
    }
}

pub(crate) async fn run(args: UpArgs) -> Result<(), KilnError> {
    let platform = Platform::start(&args).await?;
    say!("Kiln is up.");
    say!("  API:   {}", platform.api_url);
    say!("  UAA:   {}", platform.uaa_url);
    say!(
        "  Apps:  {} (http://<app>.{}:{})",
        platform.router_url,
        args.apps_domain,
        platform.router_url.rsplit(':').next().unwrap_or_default()
    );
    say!("  Logs:  {}", platform.log_cache_url);
    say!("  NATS:  {}", redact_credentials(platform.nats_url()));
    match &platform.dea {
        Ok(dea) => say!("  DEA:   {}", dea.id()),
        Err(reason) => say!("  DEA:   not running ({reason})"),
    }
    if let Some(broker) = &platform.postgres_broker {
        say!(
            "  PostgreSQL broker: {} (registered as `{}`; cf enable-service-access postgresql)",
            broker.url,
            crate::brokers::POSTGRES_BROKER_NAME
        );
    }
    say!("  Data:  {}", args.data_dir.display());
    say!();
    say!("  cf api {}", platform.api_url);
    say!("  cf login -u admin -p {}", platform.admin_password);
    say!(
        "  cf auth {ADMIN_CLIENT_ID} {} --client-credentials",
        platform.admin_client_secret
    );
    say!();
    say!("Press Ctrl-C to stop.");
    wait_for_stop(args.exit_on_stdin_eof).await;
    say!("Stopping Kiln...");
    platform.stop().await;
    say!("Kiln stopped.");
    Ok(())
}

/// Resolves on Ctrl-C or SIGTERM, or, with `exit_on_stdin_eof`, when standard input closes.
pub(crate) async fn wait_for_stop(exit_on_stdin_eof: bool) {
    if exit_on_stdin_eof {
        tokio::select! {
            _ = wait_for_shutdown_signal() => {}
            _ = stdin_closed() => {}
        }
    } else {
        wait_for_shutdown_signal().await;
    }
}

/// Resolves when standard input reaches end of file (or fails). The read runs on a detached
/// thread: a blocking read inside the runtime would keep the process alive at exit.
async fn stdin_closed() {
    let (sender, receiver) = tokio::sync::oneshot::channel::<()>();
    std::thread::spawn(move || {
        use std::io::Read;
        let mut buffer = [0u8; 256];
        let mut stdin = std::io::stdin();
        while let Ok(n) = stdin.read(&mut buffer) {
            if n == 0 {
                break;
            }
        }
        let _ = sender.send(());
    });
    let _ = receiver.await;
}

/// Resolves on Ctrl-C (SIGINT) or SIGTERM.
pub(crate) async fn wait_for_shutdown_signal() {
    let mut terminate =
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(signal) => signal,
            Err(error) => {
                tracing::warn!(%error, "cannot listen for SIGTERM; only Ctrl-C stops kiln");
                let _ = tokio::signal::ctrl_c().await;
                return;
            }
        };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = terminate.recv() => {}
    }
}

fn uaa_config_json(
    args: &UpArgs,
    data_dir: &Path,
    uaa_url: &str,
    secrets: &Secrets,
) -> serde_json::Value {
    json!({
        "issuer_url": uaa_url,
        "database_url": sqlite_url(&data_dir.join("uaa.db")),
        "access_token_validity_secs": args.access_token_validity_secs,
        "password_hash_cost": args.password_hash_cost,
        "users": [{
            "username": "admin",
            "password": secrets.admin_password,
            "groups": ADMIN_GROUPS,
        }],
        "clients": [
            {
                "client_id": CF_CLIENT_ID,
                "secret": "",
                "authorized_grant_types": ["password", "refresh_token"],
                "scope": ADMIN_GROUPS,
                "authorities": ["uaa.none"],
            },
            {
                "client_id": ADMIN_CLIENT_ID,
                "secret": secrets.admin_client_secret,
                "authorized_grant_types": ["client_credentials"],
                "scope": ["uaa.none"],
                "authorities": [
                    "cloud_controller.admin",
                    "cloud_controller.read",
                    "cloud_controller.write",
                    "scim.read",
                    "scim.write",
                    "scim.userids",
                    "uaa.admin",
                    "doppler.firehose",
                ],
                // The cf CLI cannot refresh a client token (it does not keep the secret), so a
                // client token lives long; the user re-runs `cf auth` when it expires.
                "access_token_validity_secs": 43200,
            },
            {
                "client_id": LOOKUP_CLIENT_ID,
                "secret": secrets.lookup_client_secret,
                "authorized_grant_types": ["client_credentials"],
                "scope": ["uaa.none"],
                "authorities": ["scim.read", "scim.userids"],
            },
        ],
    })
}

/// Starts the PostgreSQL broker on a free loopback port with a fresh password and registers it
/// with the Cloud Controller (or updates the registration from an earlier start).
async fn start_postgres_broker(
    args: &UpArgs,
    admin_url: &str,
    api_url: &str,
    uaa_url: &str,
    secrets: &Secrets,
) -> anyhow::Result<crate::brokers::RunningBroker> {
    let address = SocketAddr::new(args.bind, 0);
    let listener = TcpListener::bind(address)
        .map_err(|error| anyhow::anyhow!("cannot listen on {address}: {error}"))?;
    let username = "kiln";
    let password = random_secret(32);
    let broker = crate::brokers::start(
        crate::brokers::BrokerKind::Postgres,
        listener,
        broker_sdk::Credentials::new(username, &password),
        Some(admin_url),
        std::time::Duration::ZERO,
    )?;
    if let Err(error) = crate::brokers::register_with_cloud_controller(
        api_url,
        uaa_url,
        (ADMIN_CLIENT_ID, &secrets.admin_client_secret),
        crate::brokers::POSTGRES_BROKER_NAME,
        &broker.url,
        (username, &password),
    )
    .await
    {
        broker.server.stop().await;
        anyhow::bail!("the PostgreSQL broker could not be registered: {error:#}");
    }
    Ok(broker)
}

/// The system buildpacks directory: the one given, else `buildpacks/` of the source tree the
/// binary was built from when it still exists (a target directory shared by several clones can
/// hold a binary built in another, since removed, clone), else `./buildpacks`.
pub(crate) fn system_buildpacks_dir(given: Option<&Path>) -> PathBuf {
    if let Some(given) = given {
        return given.to_path_buf();
    }
    let built_from = Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/buildpacks"));
    if built_from.is_dir() {
        built_from.to_path_buf()
    } else {
        PathBuf::from("buildpacks")
    }
}

pub(crate) fn sqlite_url(path: &Path) -> String {
    format!("sqlite://{}", path.display())
}

fn bind(address: SocketAddr) -> Result<TcpListener, KilnError> {
    TcpListener::bind(address)
        .map_err(|error| KilnError::Config(format!("cannot listen on {address}: {error}")))
}

fn random_secret(length: usize) -> String {
    Alphanumeric.sample_string(&mut rand::thread_rng(), length)
}

fn load_or_create_secrets(
    data_dir: &Path,
    admin_password: Option<&str>,
) -> Result<Secrets, KilnError> {
    let path = data_dir.join("secrets.yml");
    if path.exists() {
        let secrets: Secrets = crate::read_config(&path)?;
        if let Some(given) = admin_password {
            if given != secrets.admin_password {
                tracing::warn!(
                    "the admin user already exists in {}; its password is unchanged (use `cf passwd` to change it)",
                    data_dir.display()
                );
            }
        }
        return Ok(secrets);
    }
    let secrets = Secrets {
        admin_password: admin_password
            .map(str::to_string)
            .unwrap_or_else(|| random_secret(20)),
        admin_client_secret: random_secret(32),
        lookup_client_secret: random_secret(32),
    };
    let text = serde_yaml::to_string(&secrets).context("encoding secrets")?;
    write_private_file(&path, &text)?;
    Ok(secrets)
}

fn write_private_file(path: &Path, text: &str) -> Result<(), KilnError> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .with_context(|| format!("creating {}", path.display()))?;
    file.write_all(text.as_bytes())
        .with_context(|| format!("writing {}", path.display()))?;
    Ok(())
}

/// Hides a token or password embedded in a URL before it is printed.
pub(crate) fn redact_credentials(url: &str) -> String {
    match url.split_once("://") {
        Some((scheme, rest)) => match rest.split_once('@') {
            Some((_, host)) => format!("{scheme}://***@{host}"),
            None => url.to_string(),
        },
        None => url.to_string(),
    }
}

fn parse_port_range(text: &str) -> Result<(u16, u16), String> {
    let (first, last) = text
        .split_once('-')
        .ok_or_else(|| format!("expected FIRST-LAST, got '{text}'"))?;
    let first: u16 = first
        .trim()
        .parse()
        .map_err(|_| format!("bad port '{first}'"))?;
    let last: u16 = last
        .trim()
        .parse()
        .map_err(|_| format!("bad port '{last}'"))?;
    if first == 0 || first > last {
        return Err(format!("'{text}' is not a range of ports"));
    }
    Ok((first, last))
}

/// The host's total memory in MB (`MemTotal` of `/proc/meminfo`), or 8192 when unknown.
fn host_memory_mb() -> u64 {
    std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|text| {
            text.lines()
                .find_map(|line| line.strip_prefix("MemTotal:"))
                .and_then(|rest| {
                    rest.trim()
                        .trim_end_matches("kB")
                        .trim()
                        .parse::<u64>()
                        .ok()
                })
        })
        .map_or(8192, |kib| kib / 1024)
}
