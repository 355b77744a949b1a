//! Start latency of a container on the host network and in an isolated network namespace:
//! `cargo run -p dea --example network_latency [RUNS]` (needs root, runc and nft). Each run
//! starts `/bin/true` and waits for it (create, start, exit, delete); isolated runs also attach
//! (namespace, veth pair, addresses) and release. Prints the medians; not a test.

#![allow(clippy::print_stdout)]

use std::time::{Duration, Instant};

use dea::container::{
    chown_to_vcap, ContainerRuntime, ContainerSpec, Limits, RuncConfig, RuncRuntime,
};
use dea::network::{Network, NetworkOptions};
use tokio::sync::mpsc;

fn median(mut samples: Vec<Duration>) -> f64 {
    samples.sort();
    samples[samples.len() / 2].as_secs_f64() * 1000.0
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let runs: usize = std::env::args()
        .nth(1)
        .and_then(|runs| runs.parse().ok())
        .unwrap_or(10);
    let dir = tempfile::Builder::new().prefix("kiln-latency").tempdir()?;
    let mut config = RuncConfig::under(dir.path());
    config.cgroup_parent = "kiln-bench".into();
    let runtime = RuncRuntime::new(config);
    let network = Network::start(NetworkOptions {
        pool: "10.254.251.0/24".parse()?,
        egress: false,
        host_ports: Vec::new(),
    })
    .await?;
    for isolated in [false, true] {
        let mut totals = Vec::new();
        let mut attaches = Vec::new();
        let mut releases = Vec::new();
        // One warm-up run first.
        for run in 0..=runs {
            let id = format!(
                "latency-{}-{run}",
                if isolated { "isolated" } else { "host" }
            );
            let home = dir.path().join(&id);
            std::fs::create_dir_all(&home)?;
            chown_to_vcap(&home)?;
            let started = Instant::now();
            let attachment = match isolated {
                true => Some(network.attach(None).await?),
                false => None,
            };
            let attached = started.elapsed();
            let spec = ContainerSpec {
                id,
                args: vec!["/bin/true".into()],
                env: Vec::new(),
                cwd: "/home/vcap".into(),
                hostname: None,
                home_dir: home,
                bind_mounts: Vec::new(),
                limits: Limits::default(),
                network: attachment.as_ref().map(|a| a.namespace()),
            };
            let (output, _) = mpsc::channel(16);
            let container = runtime.start(spec, output).await?;
            let status = container.wait().await;
            assert!(status.success(), "{status:?}");
            let before_release = Instant::now();
            if let Some(attachment) = attachment {
                attachment.release().await;
            }
            if run > 0 {
                totals.push(started.elapsed());
                attaches.push(attached);
                releases.push(before_release.elapsed());
            }
        }
        println!(
            "{:>8}: median of {runs}: total {:.1} ms (attach {:.1} ms, release {:.1} ms)",
            if isolated { "isolated" } else { "host" },
            median(totals),
            median(attaches),
            median(releases),
        );
    }
    network.stop().await;
    Ok(())
}
