//! Test support: starting brokers on ephemeral ports, an OSB client with the platform's headers,
//! and a bounded retry helper.

use std::future::Future;
use std::net::TcpListener;
use std::sync::Arc;
use std::time::Duration;

use base64::Engine as _;
use broker_sdk::brokers::memory::{MemoryBroker, MemoryBrokerConfig};
use broker_sdk::{BrokerServer, Credentials, ServiceBroker, Settings};
use serde_json::Value;

pub(crate) const USERNAME: &str = "broker-user";
pub(crate) const PASSWORD: &str = "broker-password";

pub(crate) fn credentials() -> Credentials {
    Credentials::new(USERNAME, PASSWORD)
}

/// Serves `broker` on `127.0.0.1:0` with `settings`.
pub(crate) fn start_with_settings<B: ServiceBroker>(
    broker: Arc<B>,
    settings: Settings,
) -> (BrokerServer, Osb) {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind an ephemeral port");
    let (server, addr) =
        broker_sdk::serve_with_settings(broker, settings, listener).expect("serve");
    (server, Osb::new(format!("http://{addr}")))
}

pub(crate) fn start<B: ServiceBroker>(broker: Arc<B>) -> (BrokerServer, Osb) {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind an ephemeral port");
    let (server, addr) = broker_sdk::serve(broker, credentials(), listener).expect("serve");
    assert_eq!(server.local_addr(), addr);
    (server, Osb::new(format!("http://{addr}")))
}

/// The memory broker with asynchronous operations taking `async_delay`.
pub(crate) fn start_memory(async_delay: Duration) -> (BrokerServer, Arc<MemoryBroker>, Osb) {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind an ephemeral port");
    let config = MemoryBrokerConfig {
        async_delay,
        ..MemoryBrokerConfig::default()
    };
    let (server, addr, broker) =
        broker_sdk::brokers::memory::serve(config, credentials(), listener).expect("serve");
    (server, broker, Osb::new(format!("http://{addr}")))
}

/// A response, read completely.
#[derive(Debug)]
pub(crate) struct Reply {
    pub(crate) status: u16,
    pub(crate) headers: reqwest::header::HeaderMap,
    pub(crate) body: Value,
}

impl Reply {
    pub(crate) fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }

    pub(crate) fn description(&self) -> &str {
        self.body["description"].as_str().unwrap_or_default()
    }
}

/// An OSB client sending what the Cloud Controller sends: basic auth, the version header and,
/// when set, an originating identity.
#[derive(Clone)]
pub(crate) struct Osb {
    pub(crate) base: String,
    client: reqwest::Client,
    pub(crate) auth: Option<(String, String)>,
    pub(crate) version: Option<String>,
    pub(crate) originating_identity: Option<String>,
    pub(crate) request_identity: Option<String>,
}

impl Osb {
    pub(crate) fn new(base: String) -> Self {
        Self {
            base,
            client: reqwest::Client::new(),
            auth: Some((USERNAME.to_owned(), PASSWORD.to_owned())),
            version: Some("2.17".to_owned()),
            originating_identity: None,
            request_identity: None,
        }
    }

    pub(crate) fn with_auth(&self, username: &str, password: &str) -> Self {
        Self {
            auth: Some((username.to_owned(), password.to_owned())),
            ..self.clone()
        }
    }

    pub(crate) fn without_auth(&self) -> Self {
        Self {
            auth: None,
            ..self.clone()
        }
    }

    pub(crate) fn with_version(&self, version: Option<&str>) -> Self {
        Self {
            version: version.map(str::to_owned),
            ..self.clone()
        }
    }

    /// `cloudfoundry <base64 of {"user_id": user_id}>`.
    pub(crate) fn as_user(&self, user_id: &str) -> Self {
        let value = serde_json::json!({"user_id": user_id}).to_string();
        let encoded = base64::engine::general_purpose::STANDARD.encode(value);
        Self {
            originating_identity: Some(format!("cloudfoundry {encoded}")),
            ..self.clone()
        }
    }

    pub(crate) async fn send_raw(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<Vec<u8>>,
    ) -> Reply {
        let mut request = self.client.request(method, format!("{}{path}", self.base));
        if let Some((username, password)) = &self.auth {
            request = request.basic_auth(username, Some(password));
        }
        if let Some(version) = &self.version {
            request = request.header("X-Broker-API-Version", version);
        }
        if let Some(identity) = &self.originating_identity {
            request = request.header("X-Broker-API-Originating-Identity", identity);
        }
        if let Some(identity) = &self.request_identity {
            request = request.header("X-Broker-API-Request-Identity", identity);
        }
        if let Some(body) = body {
            request = request
                .header("Content-Type", "application/json")
                .body(body);
        }
        let response = request.send().await.expect("send request");
        let status = response.status().as_u16();
        let headers = response.headers().clone();
        let text = response.text().await.expect("read body");
        let body = if text.is_empty() {
            Value::Null
        } else {
            serde_json::from_str(&text)
                .unwrap_or_else(|_| panic!("{status} body is not JSON: {text:?}"))
        };
        Reply {
            status,
            headers,
            body,
        }
    }

    pub(crate) async fn get(&self, path: &str) -> Reply {
        self.send_raw(reqwest::Method::GET, path, None).await
    }

    pub(crate) async fn put(&self, path: &str, body: &Value) -> Reply {
        self.send_raw(
            reqwest::Method::PUT,
            path,
            Some(body.to_string().into_bytes()),
        )
        .await
    }

    pub(crate) async fn patch(&self, path: &str, body: &Value) -> Reply {
        self.send_raw(
            reqwest::Method::PATCH,
            path,
            Some(body.to_string().into_bytes()),
        )
        .await
    }

    pub(crate) async fn delete(&self, path: &str) -> Reply {
        self.send_raw(reqwest::Method::DELETE, path, None).await
    }
}

/// Retries `probe` every 50 ms until it returns `Some`, for at most `limit`.
pub(crate) async fn eventually<T, F, Fut>(limit: Duration, mut probe: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let deadline = tokio::time::Instant::now() + limit;
    loop {
        if let Some(value) = probe().await {
            return value;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "condition not met within {limit:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// A fresh id like the Cloud Controller's guids.
pub(crate) fn guid() -> String {
    uuid::Uuid::new_v4().to_string()
}
