//! Syslog drains: the drain list read from a fake Cloud Controller internal endpoint, RFC 5424
//! messages with octet-counting received by a real TCP listener, and a drain that is down
//! never holding up ingestion.

use std::sync::atomic::{AtomicU16, Ordering};
use std::sync::Arc;
use std::time::Duration;

use loggregator::{InternalApiCredentials, LoggregatorConfig};
use protocol::logs::{AppIdentity, Envelope, LogType};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, BufReader};
use tokio::net::TcpListener;

use crate::support::*;

/// A fake CC serving one app's drain at `port` (changeable), paged like CC's controller.
async fn fake_cc(app_guid: &'static str, scheme: &'static str, port: Arc<AtomicU16>) -> FakeServer {
    fake_cc_with(app_guid, move || {
        format!("{scheme}://127.0.0.1:{}", port.load(Ordering::Relaxed))
    })
    .await
}

/// A fake CC serving one app's drain at the URL `drain_url` gives.
async fn fake_cc_with(
    app_guid: &'static str,
    drain_url: impl Fn() -> String + Send + Sync + 'static,
) -> FakeServer {
    FakeServer::start(move |request| {
        // Basic internal_user:secret
        if request.authorization.as_deref() != Some("Basic aW50ZXJuYWxfdXNlcjpzZWNyZXQ=") {
            return (401, "{}".into());
        }
        if request.path_and_query == "/internal/v4/syslog_drain_urls?batch_size=1000&next_id=0" {
            let body = serde_json::json!({
                "results": {app_guid: {
                    "drains": [drain_url()],
                    "hostname": "acme.dev.shop",
                    "credentials": [],
                }},
                "next_id": 1000,
            });
            (200, body.to_string())
        } else if request.path_and_query
            == "/internal/v4/syslog_drain_urls?batch_size=1000&next_id=1000"
        {
            (200, r#"{"results":{},"next_id":null}"#.into())
        } else {
            (404, "{}".into())
        }
    })
    .await
}

fn drain_config(cc: &FakeServer, queue_size: usize) -> LoggregatorConfig {
    LoggregatorConfig {
        cc_url: Some(cc.url()),
        internal_api: Some(InternalApiCredentials {
            username: "internal_user".into(),
            password: "secret".into(),
        }),
        syslog_drain_poll_interval_secs: 1,
        syslog_drain_queue_size: queue_size,
        ..open_config()
    }
}

/// Reads one octet-counted frame.
async fn read_frame<R: tokio::io::AsyncRead + Unpin>(reader: &mut BufReader<R>) -> String {
    let mut length = Vec::new();
    reader.read_until(b' ', &mut length).await.unwrap();
    let length: usize = std::str::from_utf8(&length[..length.len() - 1])
        .unwrap()
        .parse()
        .unwrap();
    let mut message = vec![0; length];
    reader.read_exact(&mut message).await.unwrap();
    String::from_utf8(message).unwrap()
}

#[tokio::test]
async fn app_logs_reach_the_drain_as_rfc5424_with_octet_counting() {
    let syslog = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = Arc::new(AtomicU16::new(syslog.local_addr().unwrap().port()));
    let cc = fake_cc("drained-app", "syslog", port).await;
    let server = start(drain_config(&cc, 100)).await;
    eventually(Duration::from_secs(10), || async {
        server
            .metrics_text()
            .contains("loggregator_drains 1\n")
            .then_some(())
    })
    .await;
    let emitter = emitter(&server);
    let app = AppIdentity {
        app_id: "drained-app".into(),
        app_name: "shop".into(),
        space_id: "s".into(),
        space_name: "dev".into(),
        organization_id: "o".into(),
        organization_name: "acme".into(),
    };
    let mut line = Envelope::api_log(&app, 0, LogType::Out, "Created app with guid drained-app");
    line.timestamp = 1_767_268_800_123_456_789;
    // One datagram, so that the two lines reach the drain in this order (separate datagrams may
    // be taken in by different ingress threads).
    let mut lgr = Envelope::loggregator_log("drained-app", "no tags");
    lgr.timestamp = 1_767_268_800_000_000_000;
    emitter.emit_batch(&[line, lgr]);
    // Other apps and non-log envelopes are not drained.
    emitter.emit(&log_at("other-app", seconds_ago(1), "not mine"));
    emitter.emit(&Envelope::gauge(
        "drained-app",
        "0",
        "rep",
        [("cpu", "percentage", 1.0)],
    ));

    let (stream, _) = tokio::time::timeout(Duration::from_secs(10), syslog.accept())
        .await
        .unwrap()
        .unwrap();
    let mut reader = BufReader::new(stream);
    let first = tokio::time::timeout(Duration::from_secs(10), read_frame(&mut reader))
        .await
        .unwrap();
    assert_eq!(
        first,
        "<14>1 2026-01-01T12:00:00.123456+00:00 acme.dev.shop drained-app [API/0] - [tags@47450 \
         app_id=\"drained-app\" app_name=\"shop\" organization_id=\"o\" organization_name=\"acme\" \
         origin=\"cloud_controller\" source_type=\"API\" space_id=\"s\" space_name=\"dev\"] \
         Created app with guid drained-app\n"
    );
    // Without name tags the binding's hostname from the CC is used.
    let second = tokio::time::timeout(Duration::from_secs(10), read_frame(&mut reader))
        .await
        .unwrap();
    assert_eq!(
        second,
        "<11>1 2026-01-01T12:00:00+00:00 acme.dev.shop drained-app [LGR/0] - [tags@47450 source_type=\"LGR\"] no tags\n"
    );
    let requests = cc.requests();
    assert!(requests.iter().all(|r| r
        .path_and_query
        .starts_with("/internal/v4/syslog_drain_urls?batch_size=1000&next_id=")));
    server.stop().await;
}

#[tokio::test]
async fn a_drain_that_is_down_never_blocks_ingestion() {
    // A port with nobody listening.
    let port = {
        let probe = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        probe.local_addr().unwrap().port()
    };
    let cc = fake_cc("down-app", "syslog", Arc::new(AtomicU16::new(port))).await;
    let server = start(drain_config(&cc, 10)).await;
    eventually(Duration::from_secs(10), || async {
        server
            .metrics_text()
            .contains("loggregator_drains 1\n")
            .then_some(())
    })
    .await;
    let emitter = emitter(&server);
    let base = seconds_ago(5);
    for chunk in 0..10 {
        let batch: Vec<_> = (0..100)
            .map(|i| log_at("down-app", base + chunk * 100 + i, "to a dead drain"))
            .collect();
        emitter.emit_batch(&batch);
    }
    emitter.emit(&log_at("healthy-app", base, "still flowing"));
    // Everything is stored promptly although the drain is unreachable.
    wait_for_count(&server, "healthy-app", 1).await;
    wait_for_count(&server, "down-app", 1000).await;

    // The app hears about it: the connect failure and the envelopes the drain lost.
    let notices = eventually(Duration::from_secs(10), || async {
        let lines: Vec<String> = read(
            &server,
            "down-app",
            "start_time=0&limit=1000&descending=true",
        )
        .await
        .into_iter()
        .filter(|envelope| envelope["tags"]["source_type"] == "LGR")
        .map(|envelope| {
            use base64::Engine;
            String::from_utf8(
                base64::engine::general_purpose::STANDARD
                    .decode(envelope["log"]["payload"].as_str().unwrap())
                    .unwrap(),
            )
            .unwrap()
        })
        .collect();
        (lines.iter().any(|l| l.contains("messages lost"))
            && lines.iter().any(|l| l.starts_with("Failed to connect")))
        .then_some(lines)
    })
    .await;
    let drain_url = format!("syslog://127.0.0.1:{port}");
    assert!(
        notices.contains(&format!("Failed to connect to {drain_url}")),
        "{notices:?}"
    );
    let lost = notices
        .iter()
        .find(|l| l.contains("messages lost"))
        .unwrap();
    assert!(
        lost.ends_with(&format!(" messages lost for application down-app in user provided syslog drain with url {drain_url}")),
        "{lost}"
    );
    let metrics = server.metrics_text();
    assert!(
        metrics.contains(&format!("loggregator_drain_dropped_envelopes_total{{app_id=\"down-app\",drain_url=\"{drain_url}\"}}")),
        "{metrics}"
    );

    // When the drain comes back, the writer reconnects and delivers the newest envelopes.
    let syslog = TcpListener::bind(("127.0.0.1", port)).await.unwrap();
    emitter.emit(&log_at("down-app", seconds_ago(0), "after recovery"));
    let (stream, _) = tokio::time::timeout(Duration::from_secs(30), syslog.accept())
        .await
        .unwrap()
        .unwrap();
    let mut reader = BufReader::new(stream);
    let mut seen_recovery = false;
    for _ in 0..20 {
        let frame = tokio::time::timeout(Duration::from_secs(10), read_frame(&mut reader))
            .await
            .unwrap();
        if frame.ends_with("after recovery\n") {
            seen_recovery = true;
            break;
        }
    }
    assert!(seen_recovery);
    server.stop().await;
}

#[tokio::test]
async fn syslog_tls_drains_verify_the_server_and_frame_the_same_way() {
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::{CertificateDer, PrivateKeyDer};
    use tokio_rustls::rustls;
    let fixtures = format!("{}/tests/it/fixtures", manifest_dir());
    let certificates: Vec<CertificateDer<'static>> =
        CertificateDer::pem_file_iter(format!("{fixtures}/drain.pem"))
            .unwrap()
            .map(Result::unwrap)
            .collect();
    let key = PrivateKeyDer::from_pem_file(format!("{fixtures}/drain.key")).unwrap();
    let server_config = rustls::ServerConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_no_client_auth()
    .with_single_cert(certificates, key)
    .unwrap();
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(server_config));
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = Arc::new(AtomicU16::new(listener.local_addr().unwrap().port()));
    let cc = fake_cc("tls-app", "syslog-tls", port).await;
    let server = start(LoggregatorConfig {
        syslog_drain_ca_file: Some(format!("{fixtures}/ca.pem")),
        ..drain_config(&cc, 100)
    })
    .await;
    eventually(Duration::from_secs(10), || async {
        server
            .metrics_text()
            .contains("loggregator_drains 1\n")
            .then_some(())
    })
    .await;
    let mut envelope = log_at("tls-app", 1_767_268_800_000_000_000, "over tls");
    envelope.tags.clear();
    envelope
        .tags
        .insert("source_type".into(), "APP/PROC/WEB".into());
    emitter(&server).emit(&envelope);
    let (stream, _) = tokio::time::timeout(Duration::from_secs(10), listener.accept())
        .await
        .unwrap()
        .unwrap();
    let stream = acceptor
        .accept(stream)
        .await
        .expect("TLS handshake with a verified server");
    let mut reader = BufReader::new(stream);
    let frame = tokio::time::timeout(Duration::from_secs(10), read_frame(&mut reader))
        .await
        .unwrap();
    assert_eq!(
        frame,
        "<14>1 2026-01-01T12:00:00+00:00 acme.dev.shop tls-app [APP/PROC/WEB/0] - [tags@47450 source_type=\"APP/PROC/WEB\"] over tls\n"
    );
    server.stop().await;
}

#[tokio::test]
async fn a_missing_drain_ca_file_is_a_configuration_error() {
    let cc = fake_cc("x", "syslog", Arc::new(AtomicU16::new(1))).await;
    let listeners = loggregator::Listeners {
        http: std::net::TcpListener::bind("127.0.0.1:0").unwrap(),
        ingress: std::net::UdpSocket::bind("127.0.0.1:0").unwrap(),
    };
    let config = LoggregatorConfig {
        syslog_drain_ca_file: Some("/nonexistent/ca.pem".into()),
        ..drain_config(&cc, 10)
    };
    let error = loggregator::run(config, listeners, std::future::pending())
        .await
        .err()
        .unwrap();
    assert!(
        error.to_string().contains("syslog_drain_ca_file"),
        "{error}"
    );
}

/// The `LGR` "messages lost" lines of an app's stream, as (count, text).
async fn loss_notices(server: &loggregator::LoggregatorServer, app: &str) -> Vec<(u64, String)> {
    read(server, app, "start_time=0&limit=1000&descending=true")
        .await
        .into_iter()
        .filter(|envelope| envelope["tags"]["source_type"] == "LGR")
        .filter_map(|envelope| {
            use base64::Engine;
            let text = String::from_utf8(
                base64::engine::general_purpose::STANDARD
                    .decode(envelope["log"]["payload"].as_str().unwrap())
                    .unwrap(),
            )
            .unwrap();
            let (count, _) = text.split_once(" messages lost ")?;
            Some((count.parse().unwrap(), text))
        })
        .collect()
}

#[tokio::test]
async fn every_envelope_a_drain_drops_is_counted_and_reported_without_credentials() {
    let port = {
        let probe = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        probe.local_addr().unwrap().port()
    };
    let cc = fake_cc_with("lossy-app", move || {
        format!("syslog://user:secret@127.0.0.1:{port}/?drain-data=logs&token=abc")
    })
    .await;
    let server = start(drain_config(&cc, 10)).await;
    eventually(Duration::from_secs(10), || async {
        server
            .metrics_text()
            .contains("loggregator_drains 1\n")
            .then_some(())
    })
    .await;
    let emitter = emitter(&server);
    let base = seconds_ago(5);
    for chunk in 0..10 {
        let batch: Vec<_> = (0..100)
            .map(|i| log_at("lossy-app", base + chunk * 100 + i, "to a dead drain"))
            .collect();
        emitter.emit_batch(&batch);
    }
    wait_for_count(&server, "lossy-app", 1000).await;
    // The queue holds the newest 10 while the writer waits to reconnect: the other 990 are
    // lost, each counted once, in the metric and in the app's LGR lines.
    let display_url = format!("syslog://127.0.0.1:{port}/");
    let notices = eventually(Duration::from_secs(30), || async {
        let notices = loss_notices(&server, "lossy-app").await;
        (notices.iter().map(|(count, _)| count).sum::<u64>() == 990).then_some(notices)
    })
    .await;
    for (count, text) in &notices {
        assert_eq!(
            text,
            &format!("{count} messages lost for application lossy-app in user provided syslog drain with url {display_url}")
        );
    }
    let metrics = server.metrics_text();
    assert!(
        metrics.contains(&format!(
            "loggregator_drain_dropped_envelopes_total{{app_id=\"lossy-app\",drain_url=\"{display_url}\"}} 990\n"
        )),
        "{metrics}"
    );
    assert!(!metrics.contains("secret"), "{metrics}");
    server.stop().await;
}

/// A POST an HTTP drain received.
#[derive(Debug, Clone, PartialEq)]
struct Posted {
    method: String,
    path_and_query: String,
    content_type: Option<String>,
    authorization: Option<String>,
    body: String,
}

/// An HTTP(S) drain endpoint answering with `statuses` in turn (then 200), recording requests.
async fn http_drain(
    tls: Option<tokio_rustls::TlsAcceptor>,
    statuses: Vec<u16>,
) -> (
    u16,
    Arc<std::sync::Mutex<Vec<Posted>>>,
    tokio::task::JoinHandle<()>,
) {
    use http_body_util::BodyExt;
    use hyper_util::rt::TokioIo;
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let posted = Arc::new(std::sync::Mutex::new(Vec::new()));
    let statuses = Arc::new(std::sync::Mutex::new(std::collections::VecDeque::from(
        statuses,
    )));
    let recorded = posted.clone();
    let task = tokio::spawn(async move {
        let mut connections = tokio::task::JoinSet::new();
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                continue;
            };
            let tls = tls.clone();
            let recorded = recorded.clone();
            let statuses = statuses.clone();
            connections.spawn(async move {
                let service = hyper::service::service_fn(
                    move |request: hyper::Request<hyper::body::Incoming>| {
                        let recorded = recorded.clone();
                        let statuses = statuses.clone();
                        async move {
                            let header = |name: &str| {
                                request
                                    .headers()
                                    .get(name)
                                    .and_then(|value| value.to_str().ok())
                                    .map(str::to_owned)
                            };
                            let mut entry = Posted {
                                method: request.method().to_string(),
                                path_and_query: request.uri().to_string(),
                                content_type: header("content-type"),
                                authorization: header("authorization"),
                                body: String::new(),
                            };
                            let body = request.into_body().collect().await.unwrap().to_bytes();
                            entry.body = String::from_utf8(body.to_vec()).unwrap();
                            recorded.lock().unwrap().push(entry);
                            let status = statuses.lock().unwrap().pop_front().unwrap_or(200);
                            let mut response = hyper::Response::new(http_body_util::Full::new(
                                hyper::body::Bytes::new(),
                            ));
                            *response.status_mut() = hyper::StatusCode::from_u16(status).unwrap();
                            Ok::<_, std::convert::Infallible>(response)
                        }
                    },
                );
                let builder = hyper::server::conn::http1::Builder::new();
                match tls {
                    Some(acceptor) => {
                        let stream = acceptor.accept(stream).await.expect("TLS handshake");
                        let _ = builder
                            .serve_connection(TokioIo::new(stream), service)
                            .await;
                    }
                    None => {
                        let _ = builder
                            .serve_connection(TokioIo::new(stream), service)
                            .await;
                    }
                }
            });
        }
    });
    (port, posted, task)
}

fn test_tls_acceptor() -> tokio_rustls::TlsAcceptor {
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::{CertificateDer, PrivateKeyDer};
    use tokio_rustls::rustls;
    let fixtures = format!("{}/tests/it/fixtures", manifest_dir());
    let certificates: Vec<CertificateDer<'static>> =
        CertificateDer::pem_file_iter(format!("{fixtures}/drain.pem"))
            .unwrap()
            .map(Result::unwrap)
            .collect();
    let key = PrivateKeyDer::from_pem_file(format!("{fixtures}/drain.key")).unwrap();
    let server_config = rustls::ServerConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_no_client_auth()
    .with_single_cert(certificates, key)
    .unwrap();
    tokio_rustls::TlsAcceptor::from(Arc::new(server_config))
}

/// Starts a loggregator whose one drain (for `app`) is `url`, and waits until it is served.
async fn start_with_drain(
    app: &'static str,
    url: String,
) -> (loggregator::LoggregatorServer, FakeServer) {
    let cc = fake_cc_with(app, move || url.clone()).await;
    let fixtures = format!("{}/tests/it/fixtures", manifest_dir());
    let server = start(LoggregatorConfig {
        syslog_drain_ca_file: Some(format!("{fixtures}/ca.pem")),
        ..drain_config(&cc, 100)
    })
    .await;
    eventually(Duration::from_secs(10), || async {
        server
            .metrics_text()
            .contains("loggregator_drains 1\n")
            .then_some(())
    })
    .await;
    (server, cc)
}

#[tokio::test]
async fn https_drains_get_one_post_per_message_and_retry_refusals() {
    let (port, posted, task) = http_drain(Some(test_tls_acceptor()), vec![503]).await;
    let (server, _cc) = start_with_drain(
        "https-app",
        format!("https://127.0.0.1:{port}/logs/in?drain-data=logs"),
    )
    .await;
    let emitter = emitter(&server);
    for (second, text) in [(0, "first"), (1, "second")] {
        let mut envelope = log_at("https-app", 1_767_268_800_000_000_000 + second, text);
        envelope.tags.clear();
        envelope
            .tags
            .insert("source_type".into(), "APP/PROC/WEB".into());
        // One at a time, so that they arrive in this order.
        emitter.emit(&envelope);
        wait_for_count(&server, "https-app", second as usize + 1).await;
    }
    let posted = eventually(Duration::from_secs(20), || async {
        let posted = posted.lock().unwrap().clone();
        (posted.len() >= 3).then_some(posted)
    })
    .await;
    let expected = |text: &str| {
        Posted {
        method: "POST".into(),
        path_and_query: "/logs/in?drain-data=logs".into(),
        content_type: Some("text/plain".into()),
        authorization: None,
        body: format!(
            "<14>1 2026-01-01T12:00:00+00:00 acme.dev.shop https-app [APP/PROC/WEB/0] - [tags@47450 source_type=\"APP/PROC/WEB\"] {text}\n"
        ),
    }
    };
    // The 503 is retried with the same message; then the next one follows.
    assert_eq!(
        posted,
        vec![expected("first"), expected("first"), expected("second")]
    );
    let metrics = server.metrics_text();
    let display_url = format!("https://127.0.0.1:{port}/logs/in");
    assert!(
        metrics.contains(&format!(
            "loggregator_drain_sent_envelopes_total{{app_id=\"https-app\",drain_url=\"{display_url}\"}} 2\n"
        )),
        "{metrics}"
    );
    server.stop().await;
    task.abort();
}

#[tokio::test]
async fn http_drains_post_the_same_way_with_the_urls_credentials() {
    let (port, posted, task) = http_drain(None, vec![]).await;
    let (server, _cc) = start_with_drain(
        "http-app",
        format!("http://drain%40user:p%3Ass@127.0.0.1:{port}/"),
    )
    .await;
    let mut envelope = log_at("http-app", 1_767_268_800_000_000_000, "plain http");
    envelope.tags.clear();
    envelope.tags.insert("source_type".into(), "STG".into());
    emitter(&server).emit(&envelope);
    let posted = eventually(Duration::from_secs(20), || async {
        posted.lock().unwrap().first().cloned()
    })
    .await;
    assert_eq!(
        posted,
        Posted {
            method: "POST".into(),
            path_and_query: "/".into(),
            content_type: Some("text/plain".into()),
            // base64("drain@user:p:ss")
            authorization: Some("Basic ZHJhaW5AdXNlcjpwOnNz".into()),
            body: "<14>1 2026-01-01T12:00:00+00:00 acme.dev.shop http-app [STG/0] - [tags@47450 source_type=\"STG\"] plain http\n".into(),
        }
    );
    server.stop().await;
    task.abort();
}

/// This crate's directory: cargo's `CARGO_MANIFEST_DIR` at run time, else the compile-time one (a
/// target directory shared by several clones may run a test binary compiled in another clone).
fn manifest_dir() -> String {
    std::env::var("CARGO_MANIFEST_DIR").unwrap_or_else(|_| env!("CARGO_MANIFEST_DIR").to_owned())
}
