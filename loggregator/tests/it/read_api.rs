//! Emitter → UDP → log-cache read API: the exact JSON shape, and the semantics of
//! `start_time`, `end_time`, `limit`, `descending` and `envelope_types`.

use std::time::Duration;

use protocol::logs::{AppIdentity, Envelope, LogType, ProcessIdentity, ReadResponse};

use crate::support::*;

#[tokio::test]
async fn an_emitted_line_is_served_with_log_caches_exact_json() {
    let server = start(open_config()).await;
    let emitter = emitter(&server);
    let app = AppIdentity {
        app_id: "6b0d2c3e-8f1a-4e59-9c7d-2a4b6e8f0c13".into(),
        app_name: "shop".into(),
        space_id: "space-guid".into(),
        space_name: "dev".into(),
        organization_id: "org-guid".into(),
        organization_name: "acme".into(),
    };
    let process = ProcessIdentity {
        process_id: "process-guid".into(),
        process_type: "web".into(),
        process_instance_id: "instance-guid".into(),
    };
    let mut envelope = Envelope::app_log(&app, &process, 0, LogType::Out, "Hello world");
    envelope.timestamp = 1_700_000_000_123_456_789;
    emitter.emit(&envelope);

    let url = url(&server, &format!("/api/v1/read/{}?start_time=-6795364578871345152&descending=true&envelope_types=LOG&limit=1000", app.app_id));
    let body = eventually(Duration::from_secs(10), || async {
        let (status, body) = get(&url, None).await;
        assert_eq!(status, 200);
        body.contains("SGVsbG8gd29ybGQ=").then_some(body)
    })
    .await;
    assert_eq!(
        body,
        concat!(
            r#"{"envelopes":{"batch":[{"timestamp":"1700000000123456789","#,
            r#""source_id":"6b0d2c3e-8f1a-4e59-9c7d-2a4b6e8f0c13","instance_id":"0","deprecated_tags":{},"#,
            r#""tags":{"app_id":"6b0d2c3e-8f1a-4e59-9c7d-2a4b6e8f0c13","app_name":"shop","instance_id":"0","#,
            r#""organization_id":"org-guid","organization_name":"acme","origin":"rep","process_id":"process-guid","#,
            r#""process_instance_id":"instance-guid","process_type":"web","#,
            r#""source_id":"6b0d2c3e-8f1a-4e59-9c7d-2a4b6e8f0c13","source_type":"APP/PROC/WEB","#,
            r#""space_id":"space-guid","space_name":"dev"},"#,
            r#""log":{"payload":"SGVsbG8gd29ybGQ=","type":"OUT"}}]}}"#
        )
    );
    // The body is exactly the v2 model: our strict parser (no unknown fields) reads it back.
    let parsed: ReadResponse = serde_json::from_str(&body).unwrap();
    assert_eq!(parsed.envelopes.batch, vec![envelope]);

    let (status, info) = get(&crate::support::url(&server, "/api/v1/info"), None).await;
    assert_eq!(status, 200);
    let info: serde_json::Value = serde_json::from_str(&info).unwrap();
    assert_eq!(info["version"], "3.0.0");
    assert!(info["vm_uptime"].is_string());
    server.stop().await;
}

#[tokio::test]
async fn reads_follow_log_cache_semantics() {
    let server = start(open_config()).await;
    let emitter = emitter(&server);
    let base = seconds_ago(60);
    let second = 1_000_000_000;
    // Sent out of order on purpose: the store keeps timestamp order.
    for i in [3i64, 0, 4, 1, 2] {
        emitter.emit(&log_at("app-a", base + i * second, &format!("line {i}")));
    }
    let mut gauge = Envelope::gauge("app-a", "0", "rep", [("cpu", "percentage", 1.5)]);
    gauge.timestamp = base + 5 * second;
    emitter.emit(&gauge);
    emitter.emit(&log_at("app-b", base, "other app"));
    wait_for_count(&server, "app-a", 6).await;

    let payloads = |batch: &[serde_json::Value]| -> Vec<String> {
        batch
            .iter()
            .map(|envelope| match envelope["log"]["payload"].as_str() {
                Some(payload) => {
                    use base64::Engine;
                    String::from_utf8(
                        base64::engine::general_purpose::STANDARD
                            .decode(payload)
                            .unwrap(),
                    )
                    .unwrap()
                }
                None => "gauge".to_owned(),
            })
            .collect()
    };

    // Ascending by timestamp, every kind.
    let all = read(&server, "app-a", "start_time=0").await;
    assert_eq!(
        payloads(&all),
        ["line 0", "line 1", "line 2", "line 3", "line 4", "gauge"]
    );
    // start_time inclusive, end_time exclusive.
    let window = read(
        &server,
        "app-a",
        &format!(
            "start_time={}&end_time={}",
            base + second,
            base + 3 * second
        ),
    )
    .await;
    assert_eq!(payloads(&window), ["line 1", "line 2"]);
    // Ascending limit takes the oldest; descending the newest, newest first.
    let first_two = read(&server, "app-a", "start_time=0&limit=2").await;
    assert_eq!(payloads(&first_two), ["line 0", "line 1"]);
    let newest = read(
        &server,
        "app-a",
        "start_time=-6795364578871345152&descending=true&limit=2&envelope_types=LOG",
    )
    .await;
    assert_eq!(payloads(&newest), ["line 4", "line 3"]);
    // envelope_types filters and repeats.
    let gauges = read(&server, "app-a", "envelope_types=GAUGE").await;
    assert_eq!(payloads(&gauges), ["gauge"]);
    assert!(gauges[0].get("log").is_none());
    assert_eq!(gauges[0]["gauge"]["metrics"]["cpu"]["unit"], "percentage");
    let both = read(
        &server,
        "app-a",
        "envelope_types=GAUGE&envelope_types=LOG&descending=true&limit=2",
    )
    .await;
    assert_eq!(payloads(&both), ["gauge", "line 4"]);
    // The CLI's streaming walk: start at the newest timestamp + 1 → nothing new.
    let newest_timestamp: i64 = all[4]["timestamp"].as_str().unwrap().parse().unwrap();
    let after = read(
        &server,
        "app-a",
        &format!("envelope_types=LOG&start_time={}", newest_timestamp + 1),
    )
    .await;
    assert!(after.is_empty());
    // Envelopes newer than end_time (default: now) are not served.
    emitter.emit(&log_at("app-a", seconds_ago(-3600), "from the future"));
    eventually(Duration::from_secs(10), || async {
        let (_, meta) = get(&url(&server, "/api/v1/meta"), None).await;
        meta.contains(r#""app-a":{"count":"7""#).then_some(())
    })
    .await;
    assert_eq!(
        read(&server, "app-a", "start_time=0&limit=1000")
            .await
            .len(),
        6
    );
    // Unknown sources answer an empty batch.
    let (status, body) = get(&url(&server, "/api/v1/read/no-such-app"), None).await;
    assert_eq!(
        (status, body.as_str()),
        (200, r#"{"envelopes":{"batch":[]}}"#)
    );
    server.stop().await;
}

#[tokio::test]
async fn bad_parameters_get_log_caches_errors() {
    let server = start(open_config()).await;
    let (status, body) = get(&url(&server, "/api/v1/read/app?limit=1001"), None).await;
    assert_eq!(status, 500);
    assert_eq!(
        body,
        r#"{"code":2,"message":"Limit (1001) must be 1000 or less","details":[]}"#
    );
    let (status, body) = get(
        &url(&server, "/api/v1/read/app?start_time=10&end_time=5"),
        None,
    )
    .await;
    assert_eq!(status, 500);
    assert!(
        body.contains("StartTime (10) must be before EndTime (5)"),
        "{body}"
    );
    let (status, body) = get(&url(&server, "/api/v1/read/app?start_time=yesterday"), None).await;
    assert_eq!(status, 400);
    assert!(body.contains(r#""code":3"#), "{body}");
    let (status, _) = get(&url(&server, "/api/v1/read/app?envelope_types=BOGUS"), None).await;
    assert_eq!(status, 400);
    let (status, _) = get(&url(&server, "/api/v2/nothing"), None).await;
    assert_eq!(status, 404);
    server.stop().await;
}

#[tokio::test]
async fn meta_health_and_metrics_describe_the_store() {
    let server = start(open_config()).await;
    let emitter = emitter(&server);
    let base = seconds_ago(30);
    emitter.emit_batch(&[log_at("app-m", base, "a"), log_at("app-m", base + 10, "b")]);
    wait_for_count(&server, "app-m", 2).await;
    let (status, body) = get(&url(&server, "/api/v1/meta"), None).await;
    assert_eq!(status, 200);
    assert_eq!(
        body.trim_end(),
        format!(
            r#"{{"meta":{{"app-m":{{"count":"2","expired":"0","oldest_timestamp":"{base}","newest_timestamp":"{}"}}}}}}"#,
            base + 10
        )
    );
    let (status, _) = get(&url(&server, "/healthz"), None).await;
    assert_eq!(status, 200);
    assert!(server.is_healthy());
    let (status, metrics) = get(&url(&server, "/metrics"), None).await;
    assert_eq!(status, 200);
    assert!(
        metrics.contains("loggregator_ingress_envelopes_total 2\n"),
        "{metrics}"
    );
    assert!(
        metrics.contains("loggregator_ingress_datagrams_total 1\n"),
        "{metrics}"
    );
    assert!(
        metrics.contains("loggregator_dropped_envelopes_total 0\n"),
        "{metrics}"
    );
    assert!(
        metrics.contains("loggregator_stored_envelopes 2\n"),
        "{metrics}"
    );
    server.stop().await;
}

#[tokio::test]
async fn invalid_datagrams_and_sequence_gaps_are_counted() {
    let server = start(open_config()).await;
    let socket = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    socket.send_to(b"not json", server.ingress_addr()).unwrap();
    let datagram = |seq: u64| {
        format!(
            r#"{{"emitter":"feedfacefeedface","seq":{seq},"batch":[{{"timestamp":"1","source_id":"gap","log":{{"payload":"eA=="}}}}]}}"#
        )
    };
    socket
        .send_to(datagram(0).as_bytes(), server.ingress_addr())
        .unwrap();
    // Two ingress threads may take datagrams in any order: let the first one land.
    eventually(Duration::from_secs(10), || async {
        server
            .metrics_text()
            .contains("loggregator_ingress_datagrams_total 2\n")
            .then_some(())
    })
    .await;
    // Datagrams 1..=300 never arrive; 301 shows the gap, which is past the reorder window.
    socket
        .send_to(datagram(301).as_bytes(), server.ingress_addr())
        .unwrap();
    eventually(Duration::from_secs(10), || async {
        let metrics = server.metrics_text();
        (metrics.contains("loggregator_ingress_invalid_datagrams_total 1\n")
            && metrics.contains("loggregator_ingress_lost_datagrams_total 45\n"))
        .then_some(())
    })
    .await;
    // 300 missing, the newest 255 of them still inside the reorder window.
    server.stop().await;
}

#[tokio::test]
async fn datagrams_from_other_emitters_are_served_in_the_same_canonical_json() {
    let server = start(open_config()).await;
    // A protojson variant no Kiln emitter writes (camelCase names, numbers, unsorted tags, a
    // type as a number, unpadded base64): it takes the decoding path, and comes out exactly as
    // the emitters' own form does.
    let sender = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    sender
        .send_to(
            br#"{"emitter":"other","seq":0,"batch":[{"timestamp":1700000000000000001,"sourceId":"variant-app","instanceId":"2","tags":{"source_type":"APP/PROC/WEB","origin":"rep"},"log":{"payload":"aGk","type":1}}]}"#,
            server.ingress_addr(),
        )
        .unwrap();
    let batch = wait_for_count(&server, "variant-app", 1).await;
    assert_eq!(
        serde_json::to_string(&batch[0]).unwrap(),
        concat!(
            r#"{"deprecated_tags":{},"instance_id":"2","log":{"payload":"aGk=","type":"ERR"},"#,
            r#""source_id":"variant-app","tags":{"origin":"rep","source_type":"APP/PROC/WEB"},"#,
            r#""timestamp":"1700000000000000001"}"#
        )
    );
    let (_, body) = get(&url(&server, "/api/v1/read/variant-app?start_time=0"), None).await;
    assert_eq!(
        body,
        concat!(
            r#"{"envelopes":{"batch":[{"timestamp":"1700000000000000001","source_id":"variant-app","#,
            r#""instance_id":"2","deprecated_tags":{},"tags":{"origin":"rep","source_type":"APP/PROC/WEB"},"#,
            r#""log":{"payload":"aGk=","type":"ERR"}}]}}"#
        )
    );
    server.stop().await;
}
