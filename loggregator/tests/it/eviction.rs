//! Ring buffer eviction per source, the global memory bound, and drop accounting (metrics and
//! the `LGR` notice in the affected source).

use std::time::Duration;

use loggregator::LoggregatorConfig;

use crate::support::*;

fn count_of(metrics: &str, line_prefix: &str) -> Option<u64> {
    metrics
        .lines()
        .find_map(|line| line.strip_prefix(line_prefix))
        .and_then(|rest| rest.trim().parse().ok())
}

#[tokio::test]
async fn a_full_buffer_drops_the_oldest_and_tells_the_app() {
    let server = start(LoggregatorConfig {
        max_envelopes_per_source: 5,
        drop_notice_interval_secs: 3600,
        ..open_config()
    })
    .await;
    let emitter = emitter(&server);
    let base = seconds_ago(5);
    let batch: Vec<_> = (0..8)
        .map(|i| log_at("app-e", base + i, &format!("line {i}")))
        .collect();
    emitter.emit_batch(&batch);

    // The notice arrives in the app's own stream as an LGR/ERR line.
    let lgr = eventually(Duration::from_secs(10), || async {
        read(&server, "app-e", "start_time=0&envelope_types=LOG")
            .await
            .into_iter()
            .find(|envelope| envelope["tags"]["source_type"] == "LGR")
    })
    .await;
    use base64::Engine;
    let text = String::from_utf8(
        base64::engine::general_purpose::STANDARD
            .decode(lgr["log"]["payload"].as_str().unwrap())
            .unwrap(),
    )
    .unwrap();
    assert_eq!(
        text,
        "Log message output is too high. 3 messages dropped (Total 3 messages dropped) from loggregator to log-cache."
    );
    assert_eq!(lgr["log"]["type"], "ERR");
    assert_eq!(lgr["instance_id"], "0");
    assert_eq!(lgr["source_id"], "app-e");

    // Still five envelopes: the notice took the slot of the oldest line.
    let stored = read(&server, "app-e", "start_time=0").await;
    assert_eq!(stored.len(), 5);
    assert_eq!(stored[0]["log"]["payload"], "bGluZSA0"); // "line 4"
    let metrics = server.metrics_text();
    assert_eq!(
        count_of(&metrics, "loggregator_dropped_envelopes_total "),
        Some(4)
    );
    assert_eq!(
        count_of(&metrics, "loggregator_expired_envelopes_total "),
        Some(4)
    );
    assert_eq!(
        count_of(
            &metrics,
            "loggregator_source_dropped_envelopes_total{source_id=\"app-e\"} "
        ),
        Some(4)
    );
    let (_, meta) = get(&url(&server, "/api/v1/meta"), None).await;
    assert!(
        meta.contains(r#""app-e":{"count":"5","expired":"4""#),
        "{meta}"
    );
    server.stop().await;
}

#[tokio::test]
async fn old_envelopes_expire_without_a_notice() {
    let server = start(LoggregatorConfig {
        max_envelopes_per_source: 5,
        ..open_config()
    })
    .await;
    let emitter = emitter(&server);
    let base = seconds_ago(600);
    let batch: Vec<_> = (0..8).map(|i| log_at("app-old", base + i, "old")).collect();
    emitter.emit_batch(&batch);
    eventually(Duration::from_secs(10), || async {
        let metrics = server.metrics_text();
        (count_of(&metrics, "loggregator_expired_envelopes_total ") == Some(3)).then_some(())
    })
    .await;
    // Give the notice task a couple of ticks: nothing may appear.
    tokio::time::sleep(Duration::from_millis(2500)).await;
    let stored = read(&server, "app-old", "start_time=0").await;
    assert_eq!(stored.len(), 5);
    assert!(stored
        .iter()
        .all(|envelope| envelope["tags"]["source_type"] != "LGR"));
    assert_eq!(
        count_of(
            &server.metrics_text(),
            "loggregator_dropped_envelopes_total "
        ),
        Some(0)
    );
    server.stop().await;
}

#[tokio::test]
async fn the_memory_bound_evicts_from_the_largest_source() {
    let server = start(LoggregatorConfig {
        max_memory_bytes: 40_000,
        min_retention_secs: 0,
        ..open_config()
    })
    .await;
    let emitter = emitter(&server);
    let base = seconds_ago(10);
    emitter.emit_batch(&[
        log_at("small", base, "keep me"),
        log_at("small", base + 1, "and me"),
    ]);
    wait_for_count(&server, "small", 2).await;
    let filler = "x".repeat(600);
    for chunk in 0..10 {
        let batch: Vec<_> = (0..10)
            .map(|i| log_at("big", base + chunk * 10 + i, &filler))
            .collect();
        emitter.emit_batch(&batch);
    }
    eventually(Duration::from_secs(10), || async {
        let metrics = server.metrics_text();
        (count_of(&metrics, "loggregator_ingress_envelopes_total ") == Some(102)).then_some(())
    })
    .await;
    let metrics = server.metrics_text();
    let stored_bytes = count_of(&metrics, "loggregator_stored_bytes ").unwrap();
    assert!(stored_bytes <= 40_000, "{stored_bytes}");
    assert!(count_of(&metrics, "loggregator_memory_evictions_total ").unwrap() > 0);
    assert_eq!(read(&server, "small", "start_time=0").await.len(), 2);
    let big = read(&server, "big", "start_time=0&limit=1000").await;
    assert!(big.len() < 100 && !big.is_empty(), "{}", big.len());
    // What remains of the big source is its newest envelopes.
    let newest: i64 = big.last().unwrap()["timestamp"]
        .as_str()
        .unwrap()
        .parse()
        .unwrap();
    assert_eq!(newest, base + 99);
    server.stop().await;
}
