//! Lines an emitter cannot send are counted per app and reported in the app's own stream once
//! sending works again.

use protocol::logs::MAX_DATAGRAM_BYTES;

use crate::support::*;

#[tokio::test]
async fn lines_an_emitter_drops_reach_the_app_as_an_lgr_line() {
    let server = start(open_config()).await;
    let emitter = emitter(&server);
    let mut line = log_at("dropping-app", seconds_ago(2), "too big to send");
    line.tags.insert("origin".into(), "rep".into());
    let mut oversized = line.clone();
    oversized
        .tags
        .insert("huge".into(), "x".repeat(MAX_DATAGRAM_BYTES));
    emitter.emit_batch(&[oversized.clone(), oversized.clone()]);
    assert_eq!(
        emitter.dropped_by_source(),
        vec![("dropping-app".to_owned(), 2)]
    );
    line.timestamp = seconds_ago(1);
    emitter.emit(&line);
    let batch = wait_for_count(&server, "dropping-app", 2).await;
    assert_eq!(batch.len(), 2, "{batch:?}");
    let notice = &batch[1];
    assert_eq!(notice["tags"], serde_json::json!({"source_type": "LGR"}));
    assert_eq!(notice["instance_id"], "0");
    assert_eq!(notice["log"]["type"], "ERR");
    use base64::Engine;
    let text = base64::engine::general_purpose::STANDARD
        .decode(notice["log"]["payload"].as_str().unwrap())
        .unwrap();
    assert_eq!(
        String::from_utf8(text).unwrap(),
        "Log message output is too high. 2 messages dropped (Total 2 messages dropped) from rep to loggregator."
    );
    assert_eq!(
        batch[0]["log"]["payload"],
        base64::engine::general_purpose::STANDARD.encode("too big to send")
    );
    assert!(
        server.metrics_text().contains(
            "\nloggregator_emitter_dropped_envelopes_total{source_id=\"dropping-app\"} 2\n"
        ),
        "{}",
        server.metrics_text()
    );
    server.stop().await;
}
