//! The DEA node agent: stages apps with buildpacks and runs droplets in runc containers.
//!
//! - `container`: the OCI runtime behind `ContainerRuntime` (runc), limits, output, stats.
//! - `staging`: CF's buildpack lifecycle (detect, supply, finalize/compile, release) run inside
//!   staging containers, producing a droplet `.tgz`.
//! - `launch`: running a droplet — extraction, CF's instance environment, the launcher, health
//!   checks.
//! - `network`: per-container network isolation (`network.mode: isolated`): namespaces, veth
//!   pairs from an address pool, nftables rules, and the userspace TCP proxies.
//! - `config`: the typed configuration, [`DeaConfig`].
//! - `agent`: the NATS agent, [`run`] → [`DeaServer`]: advertisements, staging requests, start,
//!   stop, update, find and heartbeat messages, route registration.

mod agent;
pub mod config;
pub mod container;
pub mod launch;
pub mod network;
pub mod staging;

pub use agent::{run, DeaError, DeaServer, StagingLogLine};
pub use config::DeaConfig;
