//! App log emission: one `[RTR/<index>]` envelope per request routed to an app's endpoint,
//! received as a loggregator ingress datagram on a test UDP socket.

use std::collections::VecDeque;
use std::time::Duration;

use http_body_util::{Empty, Full};
use hyper::body::Bytes;
use hyper::{Request, StatusCode};
use protocol::logs::{Envelope, IngressDatagram, LogType};
use protocol::router::RegistryMessage;
use tokio::net::UdpSocket;

use crate::support::{
    get, read, refused_port, registration, request, test_config, Backend, Client, TestRouter,
};

/// The loggregator's side: a UDP socket that decodes ingress datagrams. The router packs
/// lines that queue up together into one datagram, so envelopes are handed out one by one with
/// the sequence number of the datagram that carried them.
struct LogReceiver {
    socket: UdpSocket,
    received: VecDeque<(u64, Envelope)>,
}

impl LogReceiver {
    async fn bind() -> LogReceiver {
        LogReceiver {
            socket: UdpSocket::bind("127.0.0.1:0").await.unwrap(),
            received: VecDeque::new(),
        }
    }

    /// A router configuration that sends its app logs here, as router 3.
    fn router_config(&self) -> gorouter::RouterConfig {
        gorouter::RouterConfig {
            loggregator_ingress: Some(self.socket.local_addr().unwrap()),
            index: 3,
            ..test_config()
        }
    }

    /// The next datagram (waiting up to 10 s).
    async fn next(&self) -> IngressDatagram {
        let mut buffer = vec![0; 70_000];
        let n = tokio::time::timeout(Duration::from_secs(10), self.socket.recv(&mut buffer))
            .await
            .expect("an envelope within 10 s")
            .unwrap();
        IngressDatagram::decode(&buffer[..n]).unwrap()
    }

    /// The next envelope, the sequence number of its datagram, and its payload line.
    async fn next_line(&mut self) -> (u64, Envelope, String) {
        while self.received.is_empty() {
            let datagram = self.next().await;
            assert!(!datagram.batch.is_empty(), "{datagram:?}");
            let seq = datagram.seq;
            self.received
                .extend(datagram.batch.into_iter().map(|envelope| (seq, envelope)));
        }
        let (seq, envelope) = self.received.pop_front().unwrap();
        let log = envelope.as_log().expect("a log envelope");
        assert_eq!(log.log_type, LogType::Out);
        let line = String::from_utf8(log.payload.clone()).unwrap();
        (seq, envelope, line)
    }
}

/// Splits an access line into its space-separated tokens, keeping quoted strings (with Go
/// escapes) whole.
fn split_line(line: &str) -> Vec<String> {
    let mut tokens = Vec::new();
    let mut current = String::new();
    let (mut quoted, mut escaped) = (false, false);
    for c in line.chars() {
        match c {
            _ if escaped => escaped = false,
            '\\' if quoted => escaped = true,
            '"' => quoted = !quoted,
            ' ' if !quoted => {
                tokens.push(std::mem::take(&mut current));
                continue;
            }
            _ => {}
        }
        current.push(c);
    }
    tokens.push(current);
    tokens
}

/// `[YYYY-MM-DDTHH:MM:SS.nnnnnnnnnZ]`
fn is_received_at(token: &str) -> bool {
    let Some(inner) = token.strip_prefix('[').and_then(|t| t.strip_suffix("Z]")) else {
        return false;
    };
    inner.len() == 29
        && inner.char_indices().all(|(i, c)| match i {
            4 | 7 => c == '-',
            10 => c == 'T',
            13 | 16 => c == ':',
            19 => c == '.',
            _ => c.is_ascii_digit(),
        })
}

/// `<name>:<seconds with 6 decimals>`; returns the seconds.
fn seconds(token: &str, name: &str) -> f64 {
    let value = token
        .strip_prefix(name)
        .and_then(|t| t.strip_prefix(':'))
        .unwrap_or_else(|| panic!("{token} is not {name}"));
    let (whole, fraction) = value.split_once('.').expect("a decimal point");
    assert!(
        !whole.is_empty() && whole.chars().all(|c| c.is_ascii_digit()),
        "{token}"
    );
    assert!(
        fraction.len() == 6 && fraction.chars().all(|c| c.is_ascii_digit()),
        "{token}"
    );
    value.parse().unwrap()
}

fn tag<'a>(envelope: &'a Envelope, name: &str) -> Option<&'a str> {
    envelope.tags.get(name).map(String::as_str)
}

/// A registration carrying CF's route-emitter tags, as the DEA should send them.
fn tagged_registration(port: u16, uris: &[&str]) -> RegistryMessage {
    let mut message = registration(port, uris);
    message.private_instance_index = Some("1".into());
    for (name, value) in [
        ("component", "dea-0"),
        ("app_id", "app-guid-1"),
        ("app_name", "shop"),
        ("space_id", "space-guid"),
        ("space_name", "dev"),
        ("organization_id", "org-guid"),
        ("organization_name", "acme"),
        ("process_id", "process-guid"),
        ("process_type", "web"),
        ("process_instance_id", "process-instance-guid"),
    ] {
        message.tags.insert(name.into(), value.into());
    }
    message
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_routed_request_emits_one_rtr_envelope_with_gorouters_line() {
    let mut receiver = LogReceiver::bind().await;
    let Some(router) = TestRouter::start(receiver.router_config()).await else {
        return;
    };
    let backend = Backend::start("logs").await;
    router
        .register(&tagged_registration(backend.port, &["logs.example.com"]), 1)
        .await;

    let mut client = Client::<Full<Bytes>>::connect(router.addr()).await;
    let answer = read(
        client
            .send(
                Request::post("/echo?x=1&y=%20z")
                    .header("host", "logs.example.com:80")
                    .header("referer", "https://logs.example.com/start")
                    .header("user-agent", "curl/8.5.0")
                    .header("x-forwarded-for", "203.0.113.9")
                    .header("x-vcap-request-id", "request-id-1")
                    .body(Full::new(Bytes::from_static(b"hello, router")))
                    .unwrap(),
            )
            .await,
    )
    .await;
    assert_eq!(answer.status, StatusCode::OK);
    assert_eq!(&answer.body[..], b"hello, router");

    let (seq, envelope, line) = receiver.next_line().await;
    assert_eq!(seq, 0);
    assert_eq!(envelope.source_id, "app-guid-1");
    assert_eq!(envelope.instance_id, "3", "the router index");
    assert_eq!(envelope.source_type(), Some("RTR"));
    for (name, value) in [
        ("origin", "gorouter"),
        ("__v1_type", "LogMessage"),
        ("component", "route-emitter"),
        ("app_id", "app-guid-1"),
        ("app_name", "shop"),
        ("space_id", "space-guid"),
        ("space_name", "dev"),
        ("organization_id", "org-guid"),
        ("organization_name", "acme"),
        ("process_id", "process-guid"),
        ("process_type", "web"),
        ("process_instance_id", "process-instance-guid"),
        ("instance_id", "1"),
    ] {
        assert_eq!(
            tag(&envelope, name),
            Some(value),
            "tag {name}: {envelope:?}"
        );
    }
    assert_eq!(tag(&envelope, "source_id"), None);

    assert!(!line.ends_with('\n') && !line.ends_with(' '), "{line:?}");
    let tokens = split_line(&line);
    assert_eq!(tokens.len(), 20, "{line}");
    assert_eq!(tokens[0], "logs.example.com:80");
    assert_eq!(tokens[1], "-");
    assert!(is_received_at(&tokens[2]), "{}", tokens[2]);
    assert_eq!(tokens[3], r#""POST /echo?x=1&y=%20z HTTP/1.1""#);
    assert_eq!(tokens[4], "200");
    assert_eq!(tokens[5], "13", "bytes received");
    assert_eq!(tokens[6], "13", "bytes sent");
    assert_eq!(tokens[7], r#""https://logs.example.com/start""#);
    assert_eq!(tokens[8], r#""curl/8.5.0""#);
    let remote = tokens[9]
        .strip_prefix("\"127.0.0.1:")
        .and_then(|t| t.strip_suffix('"'))
        .unwrap_or_else(|| panic!("{}", tokens[9]));
    assert!(remote.parse::<u16>().is_ok(), "{}", tokens[9]);
    assert_eq!(tokens[10], format!("\"127.0.0.1:{}\"", backend.port));
    assert_eq!(tokens[11], r#"x_forwarded_for:"203.0.113.9, 127.0.0.1""#);
    assert_eq!(tokens[12], r#"x_forwarded_proto:"http""#);
    assert_eq!(tokens[13], r#"vcap_request_id:"request-id-1""#);
    let response_time = seconds(&tokens[14], "response_time");
    let gorouter_time = seconds(&tokens[15], "gorouter_time");
    assert!(response_time < 10.0, "{line}");
    assert!(gorouter_time <= response_time, "{line}");
    assert_eq!(tokens[16], r#"app_id:"app-guid-1""#);
    assert_eq!(tokens[17], r#"app_index:"1""#);
    assert_eq!(
        tokens[18],
        format!("instance_id:\"instance-{}\"", backend.port)
    );
    assert_eq!(tokens[19], r#"x_cf_routererror:"-""#);
    let metrics = router.server.metrics_text();
    assert!(
        metrics.contains("gorouter_app_log_lines_total{outcome=\"queued\"} 1\n"),
        "{metrics}"
    );
    router.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requests_that_reach_no_app_emit_nothing() {
    let mut receiver = LogReceiver::bind().await;
    let Some(router) = TestRouter::start(receiver.router_config()).await else {
        return;
    };
    let backend = Backend::start("known").await;
    let mut anonymous = registration(backend.port, &["anonymous.example.com"]);
    anonymous.app = None;
    router.register(&anonymous, 1).await;
    router
        .register(&registration(backend.port, &["known.example.com"]), 2)
        .await;

    let unknown = get(router.addr(), "unknown.example.com", "/").await;
    assert_eq!(unknown.status, StatusCode::NOT_FOUND);
    let no_app = get(router.addr(), "anonymous.example.com", "/").await;
    assert_eq!(no_app.status, StatusCode::OK);
    let known = get(router.addr(), "known.example.com", "/").await;
    assert_eq!(known.status, StatusCode::OK);

    // Datagrams are numbered from 0: the first envelope of the first one is the known route's,
    // so nothing was sent (or even attempted) for the other two requests.
    let (seq, envelope, line) = receiver.next_line().await;
    assert_eq!(seq, 0, "{line}");
    assert!(line.starts_with("known.example.com - ["), "{line}");
    // Without route-emitter tags the identity tags are empty and no process is named.
    assert_eq!(tag(&envelope, "app_name"), Some(""));
    assert_eq!(tag(&envelope, "process_type"), None);
    assert_eq!(tag(&envelope, "instance_id"), Some("0"));
    router.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bytes_sent_counts_a_streamed_body_and_failures_log_the_router_error() {
    let mut receiver = LogReceiver::bind().await;
    let Some(router) = TestRouter::start(receiver.router_config()).await else {
        return;
    };
    let backend = Backend::start("stream").await;
    router
        .register(&registration(backend.port, &["stream.example.com"]), 1)
        .await;
    let refused = refused_port();
    router
        .register(&registration(refused, &["down.example.com"]), 2)
        .await;

    let answer = get(router.addr(), "stream.example.com", "/download/300000").await;
    assert_eq!(answer.body.len(), 300_000);
    let (_, _, line) = receiver.next_line().await;
    let tokens = split_line(&line);
    assert_eq!(tokens[3], r#""GET /download/300000 HTTP/1.1""#);
    assert_eq!(&tokens[4..7], ["200", "0", "300000"], "{line}");

    let answer = get(router.addr(), "down.example.com", "/").await;
    assert_eq!(answer.status, StatusCode::BAD_GATEWAY);
    let (_, envelope, line) = receiver.next_line().await;
    assert_eq!(envelope.source_id, "app-guid-1");
    let tokens = split_line(&line);
    assert_eq!(tokens[4], "502");
    assert_eq!(tokens[6], answer.body.len().to_string(), "{line}");
    assert_eq!(tokens[10], format!("\"127.0.0.1:{refused}\""));
    // No app round trip completed.
    assert_eq!(tokens[15], "gorouter_time:0.000000");
    assert_eq!(tokens[19], r#"x_cf_routererror:"endpoint_failure""#);
    router.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn quotes_and_control_characters_are_escaped_like_go() {
    let mut receiver = LogReceiver::bind().await;
    let Some(router) = TestRouter::start(receiver.router_config()).await else {
        return;
    };
    let backend = Backend::start("quoting").await;
    router
        .register(&registration(backend.port, &["quoting.example.com"]), 1)
        .await;
    let user_agent =
        hyper::header::HeaderValue::from_bytes(b"say \"hi\"\tback\\slash \xff caf\xc3\xa9")
            .unwrap();
    let answer = request(
        router.addr(),
        Request::get("/")
            .header("host", "quoting.example.com")
            .header("user-agent", user_agent)
            .body(Empty::<Bytes>::new())
            .unwrap(),
    )
    .await;
    assert_eq!(answer.status, StatusCode::OK);
    let (_, _, line) = receiver.next_line().await;
    let tokens = split_line(&line);
    assert_eq!(tokens[7], r#""-""#, "no referer");
    assert_eq!(
        tokens[8], r#""say \"hi\"\tback\\slash \xff café""#,
        "{line}"
    );
    router.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_leaves_before_the_response_is_logged_without_a_status() {
    let mut receiver = LogReceiver::bind().await;
    let Some(router) = TestRouter::start(receiver.router_config()).await else {
        return;
    };
    // A backend that reads the request and never answers.
    let silent = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let silent_port = silent.local_addr().unwrap().port();
    let (request_arrived, mut arrived) = tokio::sync::mpsc::channel(1);
    let backend = tokio::spawn(async move {
        let (mut stream, _) = silent.accept().await.unwrap();
        let mut buffer = [0; 1024];
        let _ = tokio::io::AsyncReadExt::read(&mut stream, &mut buffer).await;
        request_arrived.send(()).await.unwrap();
        std::future::pending::<()>().await;
    });
    router
        .register(&registration(silent_port, &["silent.example.com"]), 1)
        .await;

    let addr = router.addr();
    let client = tokio::spawn(async move {
        let mut client = Client::<Empty<Bytes>>::connect(addr).await;
        client
            .send(crate::support::get_request("silent.example.com", "/wait"))
            .await
    });
    arrived.recv().await.unwrap();
    client.abort();
    let _ = client.await;

    let (_, _, line) = receiver.next_line().await;
    let tokens = split_line(&line);
    assert_eq!(tokens[3], r#""GET /wait HTTP/1.1""#);
    assert_eq!(&tokens[4..7], [r#""-""#, "0", "0"], "{line}");
    assert_eq!(tokens[10], format!("\"127.0.0.1:{silent_port}\""));
    assert_eq!(tokens[15], "gorouter_time:0.000000");
    assert_eq!(tokens[19], r#"x_cf_routererror:"-""#);
    backend.abort();
    router.stop().await;
}
