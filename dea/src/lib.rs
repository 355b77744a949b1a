//! The DEA node agent: stages apps with buildpacks and runs droplets in runc containers.
//!
//! - `container`: the OCI runtime behind `ContainerRuntime` (runc), limits, output, stats.
//! - `staging`: CF's buildpack lifecycle (detect, supply, finalize/compile, release) run inside
//!   staging containers, producing a droplet `.tgz`.
//! - `launch`: running a droplet — extraction, CF's instance environment, the launcher, health
//!   checks.
//!
//! NATS (advertisements, start/stop/staging messages) arrives with the `cf push` slice.

pub mod container;
pub mod launch;
pub mod staging;
