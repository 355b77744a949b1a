//! The proxy: headers, retries on connect failure, streaming, keep-alive and upgrades.

use std::time::Duration;

use http_body_util::{BodyExt, Empty};
use hyper::body::Bytes;
use hyper::{Request, StatusCode};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::mpsc;

use crate::support::{
    get, read, refused_port, registration, request, test_config, Backend, ChannelBody, Client,
    TestRouter,
};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cf_and_forwarding_headers_are_added_and_hop_by_hop_headers_removed() {
    let Some(router) = TestRouter::start(test_config()).await else {
        return;
    };
    let backend = Backend::start("h").await;
    let mut message = registration(backend.port, &["headers.example.com"]);
    message.private_instance_index = Some("2".into());
    router.register(&message, 1).await;

    let answer = request(
        router.addr(),
        Request::get("/")
            .header("host", "headers.example.com")
            .header("x-forwarded-for", "203.0.113.7")
            .header("x-forwarded-proto", "https")
            .header("x-cf-applicationid", "spoofed")
            .header("connection", "keep-alive, x-hop")
            .header("x-hop", "secret")
            .header("keep-alive", "timeout=5")
            .header("proxy-authorization", "Basic c2VjcmV0")
            .header("x-app-header", "kept")
            .body(Empty::<Bytes>::new())
            .unwrap(),
    )
    .await;
    assert_eq!(answer.status, StatusCode::OK);
    let headers = &answer.json()["headers"];
    assert_eq!(headers["x-forwarded-for"], "203.0.113.7, 127.0.0.1");
    assert_eq!(headers["x-forwarded-proto"], "https");
    assert_eq!(headers["x-cf-applicationid"], "app-guid-1");
    assert_eq!(
        headers["x-cf-instanceid"],
        format!("instance-{}", backend.port)
    );
    assert_eq!(headers["x-cf-instanceindex"], "2");
    assert_eq!(headers["x-app-header"], "kept");
    let request_id = headers["x-vcap-request-id"].as_str().unwrap();
    assert!(uuid::Uuid::parse_str(request_id).is_ok(), "{request_id}");
    assert!(headers["x-request-start"]
        .as_str()
        .unwrap()
        .parse::<u64>()
        .is_ok());
    for hop in ["x-hop", "keep-alive", "proxy-authorization"] {
        assert!(
            headers.get(hop).is_none(),
            "{hop} must not be forwarded: {headers}"
        );
    }

    // Defaults, and an incoming request id is kept.
    let answer = request(
        router.addr(),
        Request::get("/")
            .header("host", "headers.example.com")
            .header("x-vcap-request-id", "my-request-id")
            .body(Empty::<Bytes>::new())
            .unwrap(),
    )
    .await;
    let headers = &answer.json()["headers"];
    assert_eq!(headers["x-vcap-request-id"], "my-request-id");
    assert_eq!(headers["x-forwarded-for"], "127.0.0.1");
    assert_eq!(headers["x-forwarded-proto"], "http");
    router.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refusing_backend_is_retried_on_another_without_the_client_noticing() {
    let Some(router) = TestRouter::start(test_config()).await else {
        return;
    };
    let good = Backend::start("good").await;
    router
        .register(&registration(refused_port(), &["retry.example.com"]), 1)
        .await;
    router
        .register(&registration(good.port, &["retry.example.com"]), 2)
        .await;
    for _ in 0..6 {
        let answer = get(router.addr(), "retry.example.com", "/").await;
        assert_eq!(answer.status, StatusCode::OK);
        assert_eq!(answer.backend(), "good");
    }
    let metrics = router.server.metrics_text();
    assert!(
        !metrics.contains("gorouter_backend_retries_total 0\n"),
        "a retry was counted:\n{metrics}"
    );
    router.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn when_every_backend_refuses_the_client_gets_502_endpoint_failure() {
    let Some(router) = TestRouter::start(test_config()).await else {
        return;
    };
    router
        .register(&registration(refused_port(), &["down.example.com"]), 1)
        .await;
    router
        .register(&registration(refused_port(), &["down.example.com"]), 2)
        .await;
    let answer = get(router.addr(), "down.example.com", "/").await;
    assert_eq!(answer.status, StatusCode::BAD_GATEWAY);
    assert_eq!(answer.header("x-cf-routererror"), Some("endpoint_failure"));
    assert_eq!(
        String::from_utf8_lossy(&answer.body),
        "502 Bad Gateway: Registered endpoint failed to handle the request.\n"
    );
    let metrics = router.server.metrics_text();
    assert!(metrics.contains("gorouter_router_errors_total{error=\"endpoint_failure\"} 1\n"));
    assert!(metrics.contains("gorouter_http_responses_total{status_class=\"5xx\"} 1\n"));
    router.stop().await;
}

/// 20 MiB go up and come back through the router in lock-step, 1 MiB at a time: the client
/// sends the next chunk only after the previous one has come back, which deadlocks (and times
/// out) if the router buffered the request or the response.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn large_bodies_stream_both_ways_without_buffering() {
    const CHUNK: usize = 1 << 20;
    const CHUNKS: usize = 20;
    let Some(router) = TestRouter::start(test_config()).await else {
        return;
    };
    let backend = Backend::start("stream").await;
    router
        .register(&registration(backend.port, &["stream.example.com"]), 1)
        .await;

    let (chunks, receiver) = mpsc::channel::<Bytes>(1);
    let mut client = Client::connect(router.addr()).await;
    let chunk = Bytes::from(vec![b'x'; CHUNK]);
    chunks.send(chunk.clone()).await.unwrap();
    let response = tokio::time::timeout(
        Duration::from_secs(10),
        client.send(
            Request::post("/echo")
                .header("host", "stream.example.com")
                .body(ChannelBody(receiver))
                .unwrap(),
        ),
    )
    .await
    .expect("response head while the request body is still being sent");
    assert_eq!(response.status(), StatusCode::OK);
    let mut body = response.into_body();
    let mut received = 0;
    for sent in 1..=CHUNKS {
        while received < sent * CHUNK {
            let frame = tokio::time::timeout(Duration::from_secs(10), body.frame())
                .await
                .expect("echoed bytes arrive before the rest is sent")
                .expect("body open")
                .expect("frame");
            if let Ok(data) = frame.into_data() {
                assert!(data.iter().all(|&byte| byte == b'x'));
                received += data.len();
            }
        }
        if sent < CHUNKS {
            chunks.send(chunk.clone()).await.unwrap();
        }
    }
    drop(chunks);
    while let Some(frame) = body.frame().await {
        received += frame.unwrap().into_data().map(|d| d.len()).unwrap_or(0);
    }
    assert_eq!(received, CHUNK * CHUNKS);

    // And a 20 MiB download streamed from the backend.
    let answer = get(
        router.addr(),
        "stream.example.com",
        &format!("/download/{}", 20 << 20),
    )
    .await;
    assert_eq!(answer.status, StatusCode::OK);
    assert_eq!(answer.body.len(), 20 << 20);
    router.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn backend_connections_are_kept_alive_and_reused() {
    let Some(router) = TestRouter::start(test_config()).await else {
        return;
    };
    let backend = Backend::start("pooled").await;
    router
        .register(&registration(backend.port, &["pool.example.com"]), 1)
        .await;
    const REQUESTS: usize = 10;
    for _ in 0..REQUESTS {
        // A new client connection each time: reuse happens on the backend side.
        let answer = get(router.addr(), "pool.example.com", "/").await;
        assert_eq!(answer.status, StatusCode::OK);
    }
    // And a HEAD, whose empty body is never polled, must not leak its connection either.
    let mut client = Client::connect(router.addr()).await;
    for _ in 0..3 {
        let head = read(
            client
                .send(
                    Request::head("/")
                        .header("host", "pool.example.com")
                        .body(Empty::<Bytes>::new())
                        .unwrap(),
                )
                .await,
        )
        .await;
        assert_eq!(head.status, StatusCode::OK);
    }
    // Each response is read to the end before the next request, so one connection serves all.
    assert_eq!(
        backend.connections(),
        1,
        "backend connections for {} requests",
        REQUESTS + 3
    );
    assert!(router
        .server
        .metrics_text()
        .contains("gorouter_backend_connections_total{kind=\"reused\"}"));
    router.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn upgraded_connections_are_tunnelled() {
    let Some(router) = TestRouter::start(test_config()).await else {
        return;
    };
    let backend = Backend::start("ws").await;
    router
        .register(&registration(backend.port, &["ws.example.com"]), 1)
        .await;
    let mut stream = tokio::net::TcpStream::connect(router.addr()).await.unwrap();
    stream
        .write_all(
            b"GET /ws HTTP/1.1\r\nHost: ws.example.com\r\nConnection: Upgrade\r\nUpgrade: kiln-echo\r\n\r\n",
        )
        .await
        .unwrap();
    let mut head = Vec::new();
    while !head.ends_with(b"\r\n\r\n") {
        let mut byte = [0u8; 1];
        let n = tokio::time::timeout(Duration::from_secs(10), stream.read(&mut byte))
            .await
            .expect("101 within 10 s")
            .unwrap();
        assert_eq!(
            n,
            1,
            "connection closed early: {}",
            String::from_utf8_lossy(&head)
        );
        head.push(byte[0]);
    }
    let head = String::from_utf8(head).unwrap().to_ascii_lowercase();
    assert!(head.starts_with("http/1.1 101"), "{head}");
    assert!(head.contains("upgrade: kiln-echo"), "{head}");

    stream.write_all(b"hello through the tunnel").await.unwrap();
    let mut echoed = vec![0u8; b"hello through the tunnel".len()];
    tokio::time::timeout(Duration::from_secs(10), stream.read_exact(&mut echoed))
        .await
        .expect("echo within 10 s")
        .unwrap();
    assert_eq!(echoed, b"hello through the tunnel");
    router.stop().await;
}
