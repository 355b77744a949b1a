//! Typed DEA configuration (`DeaConfig`), deserialised from YAML and validated before the agent
//! subscribes to anything. Defaults are dea_ng's (`reference/dea-router-nats.md` §2.2).

use std::net::IpAddr;
use std::path::PathBuf;
use std::time::Duration;

use serde::Deserialize;

use crate::agent::DeaError;
use crate::container::RuncConfig;
use crate::network::Ipv4Cidr;

/// Configuration of one DEA. Only `base_dir` and `port_range` are required.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DeaConfig {
    /// This DEA's id in `dea.advertise` and its per-DEA subjects (`dea.<id>.start`). Default:
    /// `<index>-<random uuid>`.
    #[serde(default)]
    pub id: Option<String>,
    /// The DEA's index: the `dea-<index>` component tag of route registrations. Default 0.
    #[serde(default)]
    pub index: u32,
    /// Containers, the droplet cache, the buildpack caches and staging scratch space live here.
    pub base_dir: PathBuf,
    /// Stacks this DEA can run. Default `["kiln-host"]`.
    #[serde(default = "default_stacks")]
    pub stacks: Vec<String>,
    /// Memory this DEA hands out to instances and staging tasks. Default 8192.
    #[serde(default = "default_memory_mb")]
    pub memory_mb: u64,
    /// Disk this DEA hands out to instances and staging tasks. Default 16384.
    #[serde(default = "default_disk_mb")]
    pub disk_mb: u64,
    /// `dea.advertise` period. Default 5.
    #[serde(default = "default_advertise_interval_secs")]
    pub advertise_interval_secs: u64,
    /// `dea.heartbeat` period. Default 10.
    #[serde(default = "default_heartbeat_interval_secs")]
    pub heartbeat_interval_secs: u64,
    /// Period of re-sending `router.register` for every running instance (dea_ng's
    /// `router_register_in_seconds`). Default 20.
    #[serde(default = "default_router_register_interval_secs")]
    pub router_register_interval_secs: u64,
    /// The address routers reach instances on, and `CF_INSTANCE_IP`. Default `127.0.0.1`.
    #[serde(default = "default_host_ip")]
    pub host_ip: String,
    /// Host ports given to instances (they share the host network), `FIRST-LAST` inclusive,
    /// e.g. `61000-61999`.
    pub port_range: PortRange,
    /// Once an instance is running, its port or http health check is repeated this often; the
    /// first failure crashes it (Diego's liveness check). Default 30.
    #[serde(default = "default_liveness_check_interval_secs")]
    pub liveness_check_interval_secs: u64,
    /// Time between SIGTERM and SIGKILL when stopping an instance. Default 10.
    #[serde(default = "default_stop_grace_secs")]
    pub stop_grace_secs: u64,
    /// Memory limit (and reservation) of a staging task. Default 1024.
    #[serde(default = "default_staging_memory_mb")]
    pub staging_memory_mb: u64,
    /// Disk reservation of a staging task. Default 4096.
    #[serde(default = "default_staging_disk_mb")]
    pub staging_disk_mb: u64,
    /// A staging task running longer than this fails. Default 900 (CF's 15 minutes).
    #[serde(default = "default_max_staging_duration_secs")]
    pub max_staging_duration_secs: u64,
    /// How runc is run.
    #[serde(default)]
    pub runc: RuncSettings,
    /// How instances are networked: the host's network (default) or a namespace each.
    #[serde(default)]
    pub network: NetworkSettings,
    /// UDP address of the loggregator's envelope ingress: app output (`APP/PROC/WEB`), staging
    /// output (`STG`) and lifecycle lines (`CELL`) go there. Absent: no app logs are sent.
    #[serde(default)]
    pub loggregator_ingress: Option<std::net::SocketAddr>,
}

/// Instance networking. In `isolated` mode every instance gets its own network namespace with a
/// veth pair and a /30 from `pool_cidr`; the DEA proxies its host port to `<container ip>:8080`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NetworkSettings {
    /// `host` (default) or `isolated`.
    #[serde(default)]
    pub mode: NetworkMode,
    /// The container address pool, cut into /30s. Default `10.254.0.0/16`.
    #[serde(default = "default_pool_cidr")]
    pub pool_cidr: Ipv4Cidr,
    /// Containers may open connections beyond the host (forwarding + nftables masquerade).
    /// Default false.
    #[serde(default)]
    pub egress: bool,
    /// Host loopback services containers may reach at their gateway address (`kiln-host`).
    #[serde(default)]
    pub host_ports: Vec<u16>,
}

/// Where instances live on the network.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum NetworkMode {
    /// The host's network namespace; the app listens on a DEA-assigned host `$PORT`.
    #[default]
    Host,
    /// A network namespace per instance; the app listens on 8080.
    Isolated,
}

impl Default for NetworkSettings {
    fn default() -> Self {
        NetworkSettings {
            mode: NetworkMode::default(),
            pool_cidr: default_pool_cidr(),
            egress: false,
            host_ports: Vec::new(),
        }
    }
}

impl NetworkSettings {
    /// The pool is not the resolver range, no host route and big enough; ports are distinct.
    fn validate(&self) -> Result<(), String> {
        let mut seen = std::collections::HashSet::new();
        for port in &self.host_ports {
            if *port == 0 || !seen.insert(*port) {
                return Err(format!("network.host_ports: {port} is 0 or listed twice"));
            }
        }
        if self.mode == NetworkMode::Isolated {
            if let Some(conflict) = crate::network::pool_conflict(
                &self.pool_cidr,
                &crate::network::host_routes(),
                &crate::network::host_nameservers(),
            ) {
                return Err(format!("network.pool_cidr {} {conflict}", self.pool_cidr));
            }
        }
        Ok(())
    }

    /// The network layer's options, when isolated.
    pub(crate) fn isolated_options(&self) -> Option<crate::network::NetworkOptions> {
        (self.mode == NetworkMode::Isolated).then(|| crate::network::NetworkOptions {
            pool: self.pool_cidr,
            egress: self.egress,
            host_ports: self.host_ports.clone(),
        })
    }
}

/// The OCI runtime's settings; its state and bundles live under `<base_dir>/containers`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RuncSettings {
    /// The `runc` executable (looked up in `PATH` when relative). Default `runc`.
    #[serde(default = "default_runc_binary")]
    pub binary: PathBuf,
    /// Containers' cgroups are `/<cgroup_parent>/<id>`. Default `kiln`.
    #[serde(default = "default_cgroup_parent")]
    pub cgroup_parent: String,
}

impl Default for RuncSettings {
    fn default() -> Self {
        RuncSettings {
            binary: default_runc_binary(),
            cgroup_parent: default_cgroup_parent(),
        }
    }
}

/// An inclusive range of host ports, written `FIRST-LAST`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(try_from = "String")]
pub struct PortRange {
    pub first: u16,
    pub last: u16,
}

impl TryFrom<String> for PortRange {
    type Error = String;

    fn try_from(text: String) -> Result<Self, Self::Error> {
        let invalid =
            || format!("port_range `{text}` is not of the form FIRST-LAST, e.g. 61000-61999");
        let (first, last) = text.trim().split_once('-').ok_or_else(invalid)?;
        let first: u16 = first.trim().parse().map_err(|_| invalid())?;
        let last: u16 = last.trim().parse().map_err(|_| invalid())?;
        Ok(PortRange { first, last })
    }
}

fn default_stacks() -> Vec<String> {
    vec!["kiln-host".to_string()]
}
fn default_memory_mb() -> u64 {
    8192
}
fn default_disk_mb() -> u64 {
    16384
}
fn default_advertise_interval_secs() -> u64 {
    5
}
fn default_heartbeat_interval_secs() -> u64 {
    10
}
fn default_router_register_interval_secs() -> u64 {
    20
}
fn default_host_ip() -> String {
    "127.0.0.1".to_string()
}
fn default_liveness_check_interval_secs() -> u64 {
    30
}
fn default_stop_grace_secs() -> u64 {
    10
}
fn default_staging_memory_mb() -> u64 {
    1024
}
fn default_staging_disk_mb() -> u64 {
    4096
}
fn default_max_staging_duration_secs() -> u64 {
    900
}
fn default_runc_binary() -> PathBuf {
    "runc".into()
}
fn default_cgroup_parent() -> String {
    "kiln".to_string()
}
fn default_pool_cidr() -> Ipv4Cidr {
    Ipv4Cidr::new(std::net::Ipv4Addr::new(10, 254, 0, 0), 16).expect("a valid network")
}

impl DeaConfig {
    /// A configuration with every default, for `base_dir` and `port_range`.
    pub fn new(base_dir: PathBuf, port_range: PortRange) -> Self {
        DeaConfig {
            id: None,
            index: 0,
            base_dir,
            stacks: default_stacks(),
            memory_mb: default_memory_mb(),
            disk_mb: default_disk_mb(),
            advertise_interval_secs: default_advertise_interval_secs(),
            heartbeat_interval_secs: default_heartbeat_interval_secs(),
            router_register_interval_secs: default_router_register_interval_secs(),
            host_ip: default_host_ip(),
            port_range,
            liveness_check_interval_secs: default_liveness_check_interval_secs(),
            stop_grace_secs: default_stop_grace_secs(),
            staging_memory_mb: default_staging_memory_mb(),
            staging_disk_mb: default_staging_disk_mb(),
            max_staging_duration_secs: default_max_staging_duration_secs(),
            runc: RuncSettings::default(),
            network: NetworkSettings::default(),
            loggregator_ingress: None,
        }
    }

    /// Parses a YAML document.
    pub fn from_yaml(text: &str) -> Result<Self, DeaError> {
        serde_yaml::from_str(text).map_err(|error| DeaError::Config(error.to_string()))
    }

    /// Checks what serde cannot: non-zero intervals and sizes, a sane port range, an IP address.
    pub fn validate(&self) -> Result<(), DeaError> {
        let fail = |message: String| Err(DeaError::Config(message));
        for (name, value) in [
            ("advertise_interval_secs", self.advertise_interval_secs),
            ("heartbeat_interval_secs", self.heartbeat_interval_secs),
            (
                "router_register_interval_secs",
                self.router_register_interval_secs,
            ),
            ("memory_mb", self.memory_mb),
            ("disk_mb", self.disk_mb),
            ("staging_memory_mb", self.staging_memory_mb),
            ("max_staging_duration_secs", self.max_staging_duration_secs),
            (
                "liveness_check_interval_secs",
                self.liveness_check_interval_secs,
            ),
        ] {
            if value == 0 {
                return fail(format!("{name} must be greater than 0"));
            }
        }
        if self.host_ip.parse::<IpAddr>().is_err() {
            return fail(format!("host_ip `{}` is not an IP address", self.host_ip));
        }
        if self.port_range.first == 0 || self.port_range.first > self.port_range.last {
            return fail(format!(
                "port_range {}-{} is empty or starts at 0",
                self.port_range.first, self.port_range.last
            ));
        }
        if self.stacks.is_empty() {
            return fail("stacks must name at least one stack".to_string());
        }
        if let Some(id) = &self.id {
            let valid = !id.is_empty()
                && id
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_');
            if !valid {
                return fail(format!(
                    "id `{id}` must be non-empty and use only letters, digits, `-` and `_` (it is part of NATS subjects)"
                ));
            }
        }
        if self.base_dir.as_os_str().is_empty() {
            return fail("base_dir must not be empty".to_string());
        }
        self.network.validate().map_err(DeaError::Config)?;
        Ok(())
    }

    pub(crate) fn runc_config(&self) -> RuncConfig {
        let mut config = RuncConfig::under(&self.base_dir.join("containers"));
        config.runc_binary = self.runc.binary.clone();
        config.cgroup_parent = self.runc.cgroup_parent.clone();
        config
    }

    pub(crate) fn stop_grace(&self) -> Duration {
        Duration::from_secs(self.stop_grace_secs)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn minimal_config_gets_dea_ng_defaults() {
        let config =
            DeaConfig::from_yaml("base_dir: /var/kiln/dea\nport_range: 61000-61999\n").unwrap();
        config.validate().unwrap();
        assert_eq!(config.advertise_interval_secs, 5);
        assert_eq!(config.heartbeat_interval_secs, 10);
        assert_eq!(config.router_register_interval_secs, 20);
        assert_eq!(
            config.port_range,
            PortRange {
                first: 61000,
                last: 61999
            }
        );
        assert_eq!(config.stacks, ["kiln-host"]);
    }

    #[test]
    fn the_annotated_example_parses() {
        let text = include_str!("../dea.example.yml");
        let config = DeaConfig::from_yaml(text).unwrap();
        config.validate().unwrap();
        assert_eq!(config.base_dir, PathBuf::from("/var/lib/kiln/dea"));
        assert_eq!(config.stop_grace_secs, 10);
        assert_eq!(config.runc.cgroup_parent, "kiln");
        assert_eq!(config.id, None);
        assert_eq!(config.network.mode, NetworkMode::Host);
        assert_eq!(config.network.pool_cidr.to_string(), "10.254.0.0/16");
        assert!(!config.network.egress);
        assert_eq!(config.network.host_ports, [5432]);
    }

    #[test]
    fn network_settings() {
        let config = DeaConfig::from_yaml(
            "base_dir: /x\nport_range: 1-2\nnetwork:\n  mode: isolated\n  pool_cidr: 10.254.8.0/24\n  egress: true\n  host_ports: [5432, 4222]\n",
        )
        .unwrap();
        assert_eq!(config.network.mode, NetworkMode::Isolated);
        assert_eq!(config.network.pool_cidr.prefix_len(), 24);
        let options = config.network.isolated_options().unwrap();
        assert!(options.egress);
        assert_eq!(options.host_ports, [5432, 4222]);
        let minimal = DeaConfig::from_yaml("base_dir: /x\nport_range: 1-2\n").unwrap();
        assert_eq!(minimal.network.mode, NetworkMode::Host);
        assert!(minimal.network.isolated_options().is_none());
        for bad in [
            "network: {mode: bridge}",
            "network: {pool_cidr: 10.254.0.1/16}",
            "network: {pool: 10.254.0.0/16}",
        ] {
            let text = format!("base_dir: /x\nport_range: 1-2\n{bad}\n");
            assert!(DeaConfig::from_yaml(&text).is_err(), "{bad}");
        }
        let mut config = DeaConfig::new("/x".into(), PortRange { first: 5, last: 10 });
        config.network.mode = NetworkMode::Isolated;
        config.network.pool_cidr = "10.255.0.0/16".parse().unwrap();
        let error = config.validate().unwrap_err().to_string();
        assert!(error.contains("10.255.255.0/24"), "{error}");
        config.network.pool_cidr = "10.254.0.0/28".parse().unwrap();
        assert!(config
            .validate()
            .unwrap_err()
            .to_string()
            .contains("too small"));
        config.network.mode = NetworkMode::Host;
        config.network.host_ports = vec![5432, 5432];
        assert!(config.validate().is_err());
    }

    #[test]
    fn bad_configs_are_rejected() {
        assert!(DeaConfig::from_yaml("base_dir: /x\nport_range: 61000\n").is_err());
        assert!(DeaConfig::from_yaml("base_dir: /x\nport_range: 1-2\nbogus: 1\n").is_err());
        let mut config = DeaConfig::new("/x".into(), PortRange { first: 10, last: 5 });
        assert!(config.validate().is_err());
        config.port_range = PortRange { first: 5, last: 10 };
        config.host_ip = "localhost".into();
        assert!(config.validate().is_err());
        config.host_ip = "127.0.0.1".into();
        config.id = Some("a.b".into());
        assert!(config.validate().is_err());
    }
}
