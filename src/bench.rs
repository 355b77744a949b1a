//! `kiln bench`: starts a private platform in a temporary data directory and prints figures —
//! token grants per second (client_credentials, password) and the latency of
//! `GET /v3/organizations` — each as the median of several rounds. The load generator runs in the
//! same process and on the same cores as the servers, so the figures are a floor, not a ceiling.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};

use crate::up::{Platform, UpArgs, ADMIN_CLIENT_ID, CF_CLIENT_ID};
use crate::KilnError;

#[derive(clap::Args)]
pub(crate) struct BenchArgs {
    /// What to measure: `foundation` (UAA grants and the orgs list) or `router` (proxying to a
    /// registered backend, against the same backend direct).
    #[arg(default_value = "foundation")]
    suite: String,
    /// Seconds per round.
    #[arg(long, default_value_t = 5)]
    seconds: u64,
    /// Rounds per measurement; the median is printed.
    #[arg(long, default_value_t = 3)]
    rounds: usize,
    /// Concurrent client connections.
    #[arg(long, default_value_t = 16)]
    concurrency: usize,
    /// Organizations to create before timing the list (the list is read at per_page=50).
    #[arg(long, default_value_t = 20)]
    orgs: usize,
}

pub(crate) async fn run(args: BenchArgs) -> Result<(), KilnError> {
    if args.suite != "foundation" && args.suite != "router" {
        return Err(KilnError::Config(format!(
            "unknown benchmark suite '{}' (known: foundation, router)",
            args.suite
        )));
    }
    let data_dir = tempfile_dir()?;
    let up = UpArgs {
        data_dir: data_dir.clone(),
        bind: "127.0.0.1".parse().expect("literal address"),
        api_port: 0,
        uaa_port: 0,
        router_port: 0,
        nats_url: None,
        admin_password: None,
        access_token_validity_secs: 3600,
        apps_domain: "apps.localhost".to_string(),
        password_hash_cost: 10,
        exit_on_stdin_eof: false,
        no_dea: true,
        system_buildpacks_dir: concat!(env!("CARGO_MANIFEST_DIR"), "/buildpacks").into(),
        dea_ports: (61000, 61999),
        dea_memory_mb: None,
        dea_disk_mb: 65536,
    };
    let platform = Platform::start(&up).await?;
    let result = if args.suite == "router" {
        router(&args, &platform).await
    } else {
        foundation(&args, &platform).await
    };
    platform.stop().await;
    let _ = std::fs::remove_dir_all(&data_dir);
    result.map_err(KilnError::Other)
}

async fn foundation(args: &BenchArgs, platform: &Platform) -> anyhow::Result<()> {
    let http = reqwest::Client::builder()
        .pool_max_idle_per_host(args.concurrency)
        .build()?;
    let token_url = format!("{}/oauth/token", platform.uaa_url);
    let round = Duration::from_secs(args.seconds);
    println!(
        "kiln bench foundation: {} rounds x {} s, {} connections, {} cores",
        args.rounds,
        args.seconds,
        args.concurrency,
        std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(1)
    );

    let client_form = vec![
        ("grant_type", "client_credentials".to_string()),
        ("client_id", ADMIN_CLIENT_ID.to_string()),
        ("client_secret", platform.admin_client_secret.clone()),
    ];
    let mut rates = Vec::new();
    for _ in 0..args.rounds {
        let (count, _) = hammer(args.concurrency, round, {
            let http = http.clone();
            let url = token_url.clone();
            let form = client_form.clone();
            move || {
                let request = http.post(&url).form(&form);
                async move { expect_ok(request.send().await?).await }
            }
        })
        .await?;
        rates.push(count as f64 / round.as_secs_f64());
    }
    println!(
        "client_credentials grant: median {:.0} tokens/s (rounds: {})",
        median(&mut rates),
        list(&rates)
    );

    let password_form = vec![
        ("grant_type", "password".to_string()),
        ("username", "admin".to_string()),
        ("password", platform.admin_password.clone()),
    ];
    let mut rates = Vec::new();
    for _ in 0..args.rounds {
        let (count, _) = hammer(args.concurrency, round, {
            let http = http.clone();
            let url = token_url.clone();
            let form = password_form.clone();
            move || {
                let request = http
                    .post(&url)
                    .basic_auth(CF_CLIENT_ID, Some(""))
                    .form(&form);
                async move { expect_ok(request.send().await?).await }
            }
        })
        .await?;
        rates.push(count as f64 / round.as_secs_f64());
    }
    println!(
        "password grant (bcrypt cost 10): median {:.0} tokens/s (rounds: {})",
        median(&mut rates),
        list(&rates)
    );

    let token: serde_json::Value = http
        .post(&token_url)
        .basic_auth(CF_CLIENT_ID, Some(""))
        .form(&password_form)
        .send()
        .await?
        .json()
        .await?;
    let bearer = format!(
        "bearer {}",
        token["access_token"].as_str().context("no access_token")?
    );
    for index in 0..args.orgs {
        let response = http
            .post(format!("{}/v3/organizations", platform.api_url))
            .header("Authorization", &bearer)
            .json(&serde_json::json!({"name": format!("bench-org-{index}")}))
            .send()
            .await?;
        if !response.status().is_success() {
            bail!("creating an org failed: {}", response.status());
        }
    }
    let orgs_url = format!("{}/v3/organizations?order_by=name", platform.api_url);
    let (mut p50s, mut p99s, mut rates) = (Vec::new(), Vec::new(), Vec::new());
    for _ in 0..args.rounds {
        let (count, mut latencies) = hammer(args.concurrency, round, {
            let http = http.clone();
            let url = orgs_url.clone();
            let bearer = bearer.clone();
            move || {
                let request = http.get(&url).header("Authorization", &bearer);
                async move { expect_ok(request.send().await?).await }
            }
        })
        .await?;
        latencies.sort_by(|a, b| a.total_cmp(b));
        p50s.push(percentile(&latencies, 0.50));
        p99s.push(percentile(&latencies, 0.99));
        rates.push(count as f64 / round.as_secs_f64());
    }
    println!(
        "GET /v3/organizations ({} orgs, {} connections): median p50 {:.2} ms, median p99 {:.2} ms, median {:.0} requests/s",
        args.orgs,
        args.concurrency,
        median(&mut p50s),
        median(&mut p99s),
        median(&mut rates)
    );
    Ok(())
}

/// Requests per second and latency through the router to one keep-alive backend, then the same
/// backend directly, so the router's own cost shows as the difference.
async fn router(args: &BenchArgs, platform: &Platform) -> anyhow::Result<()> {
    let backend = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let backend_address = backend.local_addr()?;
    let mut backend_task = tokio::spawn(serve_fixed_response(backend));
    let host = "bench.apps.localhost";
    let registration = serde_json::json!({
        "host": "127.0.0.1",
        "port": backend_address.port(),
        "uris": [host],
        "app": "bench-app",
        "private_instance_id": "bench-instance",
        "private_instance_index": "0",
    });
    platform
        .nats()
        .publish(
            protocol::subjects::ROUTER_REGISTER,
            serde_json::to_vec(&registration)?.into(),
        )
        .await?;
    platform.nats().flush().await?;

    let http = reqwest::Client::builder()
        .pool_max_idle_per_host(args.concurrency)
        .build()?;
    let through_router = format!("{}/", platform.router_url);
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let response = http
            .get(&through_router)
            .header("Host", host)
            .send()
            .await?;
        if response.status().is_success() {
            break;
        }
        if Instant::now() > deadline {
            bail!("the route did not become routable: {}", response.status());
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    println!(
        "kiln bench router: {} rounds x {} s, {} connections, 1 keep-alive backend, {} cores",
        args.rounds,
        args.seconds,
        args.concurrency,
        std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(1)
    );
    let round = Duration::from_secs(args.seconds);
    for (label, url, host_header) in [
        ("through the router", through_router.clone(), Some(host)),
        (
            "direct to the backend",
            format!("http://{backend_address}/"),
            None,
        ),
    ] {
        let (mut p50s, mut p99s, mut rates) = (Vec::new(), Vec::new(), Vec::new());
        for _ in 0..args.rounds {
            let (count, mut latencies) = hammer(args.concurrency, round, {
                let http = http.clone();
                let url = url.clone();
                move || {
                    let mut request = http.get(&url);
                    if let Some(host) = host_header {
                        request = request.header("Host", host);
                    }
                    async move { expect_ok(request.send().await?).await }
                }
            })
            .await?;
            latencies.sort_by(|a, b| a.total_cmp(b));
            p50s.push(percentile(&latencies, 0.50));
            p99s.push(percentile(&latencies, 0.99));
            rates.push(count as f64 / round.as_secs_f64());
        }
        println!(
            "{label}: median {:.0} requests/s, median p50 {:.2} ms, median p99 {:.2} ms",
            median(&mut rates),
            median(&mut p50s),
            median(&mut p99s)
        );
    }
    backend_task.abort();
    let _ = (&mut backend_task).await;
    Ok(())
}

/// A minimal HTTP/1.1 keep-alive server answering every request with a fixed 200: the backend
/// for the router benchmark, so that it costs as little as possible.
async fn serve_fixed_response(listener: tokio::net::TcpListener) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut connections = tokio::task::JoinSet::new();
    while let Ok((mut socket, _)) = listener.accept().await {
        connections.spawn(async move {
            let mut buffer = vec![0u8; 16 * 1024];
            let mut filled = 0;
            loop {
                match socket.read(&mut buffer[filled..]).await {
                    Ok(0) | Err(_) => return,
                    Ok(n) => filled += n,
                }
                // Answer each complete request head (the benchmark sends GETs without bodies).
                while let Some(end) = buffer[..filled].windows(4).position(|w| w == b"\r\n\r\n") {
                    let response =
                        b"HTTP/1.1 200 OK\r\nContent-Length: 12\r\nContent-Type: text/plain\r\n\r\nhello, kiln\n";
                    if socket.write_all(response).await.is_err() {
                        return;
                    }
                    buffer.copy_within(end + 4..filled, 0);
                    filled -= end + 4;
                }
                if filled == buffer.len() {
                    return;
                }
            }
        });
    }
}

async fn expect_ok(response: reqwest::Response) -> anyhow::Result<()> {
    let status = response.status();
    let body = response.bytes().await?;
    if !status.is_success() {
        bail!("{status}: {}", String::from_utf8_lossy(&body));
    }
    Ok(())
}

/// Runs `make_request` from `concurrency` tasks for `duration`; returns the number of successes
/// and every request's latency in milliseconds. Any failed request fails the benchmark.
async fn hammer<F, Fut>(
    concurrency: usize,
    duration: Duration,
    make_request: F,
) -> anyhow::Result<(u64, Vec<f64>)>
where
    F: Fn() -> Fut + Clone + Send + 'static,
    Fut: std::future::Future<Output = anyhow::Result<()>> + Send,
{
    let stop = Arc::new(AtomicBool::new(false));
    let count = Arc::new(AtomicU64::new(0));
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..concurrency {
        let stop = stop.clone();
        let count = count.clone();
        let make_request = make_request.clone();
        tasks.spawn(async move {
            let mut latencies = Vec::new();
            while !stop.load(Ordering::Relaxed) {
                let started = Instant::now();
                make_request().await?;
                latencies.push(started.elapsed().as_secs_f64() * 1000.0);
                count.fetch_add(1, Ordering::Relaxed);
            }
            anyhow::Ok(latencies)
        });
    }
    tokio::time::sleep(duration).await;
    stop.store(true, Ordering::Relaxed);
    let mut all = Vec::new();
    while let Some(joined) = tasks.join_next().await {
        all.extend(joined??);
    }
    Ok((count.load(Ordering::Relaxed), all))
}

fn percentile(sorted: &[f64], fraction: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let index = ((sorted.len() as f64 - 1.0) * fraction).round() as usize;
    sorted[index]
}

fn median(values: &mut [f64]) -> f64 {
    values.sort_by(|a, b| a.total_cmp(b));
    percentile(values, 0.5)
}

fn list(values: &[f64]) -> String {
    values
        .iter()
        .map(|v| format!("{v:.0}"))
        .collect::<Vec<_>>()
        .join(", ")
}

fn tempfile_dir() -> anyhow::Result<std::path::PathBuf> {
    let dir = std::env::temp_dir().join(format!("kiln-bench-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    Ok(dir)
}
