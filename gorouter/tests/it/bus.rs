//! The NATS side: `router.start` at start and after reconnects, `router.greet` replies,
//! malformed registrations.

use std::time::Duration;

use futures_util::StreamExt;
use gorouter::RouterConfig;
use hyper::StatusCode;
use protocol::router::RouterStart;

use crate::support::{eventually, get, registration, start_router, Backend, Nats, TestRouter};

fn expected_start() -> RouterStart {
    RouterStart {
        id: "0-test-router".into(),
        hosts: vec!["10.0.0.5".into()],
        minimum_register_interval_in_seconds: 20,
        prune_threshold_in_seconds: 120,
    }
}

fn config() -> RouterConfig {
    RouterConfig {
        id: Some("0-test-router".into()),
        hosts: vec!["10.0.0.5".into()],
        ..RouterConfig::default()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn router_start_is_published_at_start_and_greet_is_answered() {
    let Some(nats) = Nats::start().await else {
        return;
    };
    let registrar = nats.client().await;
    let mut starts = registrar.subscribe("router.start").await.unwrap();
    registrar.flush().await.unwrap();

    let router = start_router(config(), &nats).await;

    let start = tokio::time::timeout(Duration::from_secs(10), starts.next())
        .await
        .expect("router.start within 10 s")
        .expect("subscription open");
    let start: RouterStart = serde_json::from_slice(&start.payload).unwrap();
    assert_eq!(start, expected_start());

    let reply = tokio::time::timeout(
        Duration::from_secs(10),
        registrar.request("router.greet", "".into()),
    )
    .await
    .expect("greet answered within 10 s")
    .expect("greet reply");
    let greeting: RouterStart = serde_json::from_slice(&reply.payload).unwrap();
    assert_eq!(greeting, expected_start());
    router.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn router_start_is_published_again_after_a_nats_reconnect() {
    let Some(mut router) = TestRouter::start(config()).await else {
        return;
    };
    assert!(router.server.is_healthy());
    assert!(router
        .server
        .metrics_text()
        .contains("gorouter_router_start_messages_total 1\n"));

    router.nats.restart().await;
    eventually("router.start after the reconnect", || async {
        router
            .server
            .metrics_text()
            .contains("gorouter_router_start_messages_total 2\n")
    })
    .await;
    assert!(router.server.is_healthy());

    // The subscriptions survived the reconnect: registrations still reach the table.
    let bus = router.nats.client().await;
    let backend = Backend::start("after-reconnect").await;
    let payload = serde_json::to_vec(&registration(backend.port, &["again.example.com"])).unwrap();
    bus.publish("router.register", payload.into())
        .await
        .unwrap();
    bus.flush().await.unwrap();
    eventually("the registration after the reconnect", || async {
        router.server.endpoint_count() == 1
    })
    .await;
    let answer = get(router.addr(), "again.example.com", "/").await;
    assert_eq!(answer.status, StatusCode::OK);
    router.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_registrations_are_ignored() {
    let Some(router) = TestRouter::start(crate::support::test_config()).await else {
        return;
    };
    for garbage in [
        &b"not json"[..],
        b"{\"host\":1}",
        b"{}",
        b"[1,2]",
        b"\xff\xfe",
    ] {
        router
            .bus
            .publish("router.register", garbage.to_vec().into())
            .await
            .unwrap();
        router
            .bus
            .publish("router.unregister", garbage.to_vec().into())
            .await
            .unwrap();
    }
    router.bus.flush().await.unwrap();
    eventually("the malformed messages to be counted", || async {
        router
            .server
            .metrics_text()
            .contains("gorouter_registry_messages_total{subject=\"malformed\"} 10\n")
    })
    .await;

    // The router is still alive and still takes well-formed registrations.
    let backend = Backend::start("fine").await;
    router
        .register(&registration(backend.port, &["fine.example.com"]), 1)
        .await;
    assert_eq!(
        get(router.addr(), "fine.example.com", "/").await.status,
        StatusCode::OK
    );
    assert!(router.server.is_healthy());
    router.stop().await;
}
