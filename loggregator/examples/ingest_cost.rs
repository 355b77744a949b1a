//! A load-independent measure of the ingest path's cost, for `valgrind --tool=callgrind`:
//! starts a loggregator on loopback and sends `N` (default 20,000) realistic `APP/PROC/WEB`
//! envelopes, one per datagram, over 16 sources, in small steps that wait for the receiver so
//! nothing is lost even under valgrind. Divide the inclusive instruction counts of
//! `protocol::logs::LogEmitter::emit` and `loggregator::ingress::receive_loop` by `N`:
//!
//! ```text
//! valgrind --tool=callgrind --callgrind-out-file=cg.out target/release/examples/ingest_cost 20000
//! callgrind_annotate --inclusive=yes cg.out | grep -E 'LogEmitter::emit|receive_loop'
//! ```
#![allow(clippy::print_stdout)]

use std::time::Duration;

use protocol::logs::{AppIdentity, Envelope, LogEmitter, LogType, ProcessIdentity};

fn envelope(source_id: &str) -> Envelope {
    let app = AppIdentity {
        app_id: source_id.to_owned(),
        app_name: "bench-app".into(),
        space_id: "3c2d1e0f-5a4b-4c3d-9e8f-7a6b5c4d3e2f".into(),
        space_name: "bench-space".into(),
        organization_id: "9f8e7d6c-5b4a-4392-8170-6f5e4d3c2b1a".into(),
        organization_name: "bench-org".into(),
    };
    let process = ProcessIdentity {
        process_id: source_id.to_owned(),
        process_type: "web".into(),
        process_instance_id: "3c9e5a71-2b4d-4f6e-58a0-1d7c".into(),
    };
    Envelope::app_log(
        &app,
        &process,
        0,
        LogType::Out,
        "127.0.0.1 - - [22/Nov/2026:00:00:00 +0000] \"GET /api/items?page=2 HTTP/1.1\" 200 5316 \"-\" \"curl/8.5.0\" 0.004",
    )
}

fn ingested(server: &loggregator::LoggregatorServer) -> u64 {
    server
        .metrics_text()
        .lines()
        .find_map(|line| line.strip_prefix("loggregator_ingress_envelopes_total "))
        .and_then(|value| value.trim().parse().ok())
        .unwrap_or(0)
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let total: u64 = std::env::args()
        .nth(1)
        .map(|n| n.parse())
        .transpose()?
        .unwrap_or(20_000);
    let config = loggregator::LoggregatorConfig {
        skip_authorization: true,
        max_envelopes_per_source: 1000,
        ..loggregator::LoggregatorConfig::default()
    };
    let listeners = loggregator::Listeners {
        http: std::net::TcpListener::bind("127.0.0.1:0")?,
        ingress: std::net::UdpSocket::bind("127.0.0.1:0")?,
    };
    let server = loggregator::run(config, listeners, std::future::pending()).await?;
    let emitter = LogEmitter::new(Some(server.ingress_addr()))?;
    let templates: Vec<Envelope> = (0..16)
        .map(|app| envelope(&format!("cost-app-{app}")))
        .collect();
    let mut envelope = templates[0].clone();
    const STEP: u64 = 200;
    let mut sent = 0;
    while sent < total {
        for _ in 0..STEP.min(total - sent) {
            let template = &templates[(sent % 16) as usize];
            envelope.source_id.clone_from(&template.source_id);
            envelope.timestamp = protocol::logs::now_nanos();
            emitter.emit(&envelope);
            sent += 1;
        }
        let deadline = std::time::Instant::now() + Duration::from_secs(30);
        while ingested(&server) < sent && std::time::Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
    }
    let received = ingested(&server);
    println!(
        "sent {sent}, received {received}, emitter dropped {}",
        emitter.dropped_envelopes()
    );
    server.stop().await;
    Ok(())
}
