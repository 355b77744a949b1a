//! Test harness: per-test databases for each backend, a server started on 127.0.0.1:0 with a
//! standard configuration, HTTP helpers, token verification and a bounded retry helper.

use std::future::Future;
use std::time::{Duration, Instant};

use diesel::{Connection, RunQueryDsl};
use serde_json::Value;
use uaa::{ClientConfig, UaaConfig, UaaServer, UserConfig};

/// Which database a test runs against.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Backend {
    Sqlite,
    Postgres,
}

/// A database created for one test, removed when dropped.
pub(crate) struct TestDb {
    pub(crate) url: String,
    _dir: Option<tempfile::TempDir>,
    postgres: Option<(String, String)>,
}

impl TestDb {
    /// `None` (after printing why) when PostgreSQL is not configured and not required.
    pub(crate) fn create(backend: Backend) -> Option<TestDb> {
        match backend {
            Backend::Sqlite => {
                let dir = tempfile::tempdir().expect("tempdir");
                let url = format!("sqlite://{}", dir.path().join("uaa.db").display());
                Some(TestDb {
                    url,
                    _dir: Some(dir),
                    postgres: None,
                })
            }
            Backend::Postgres => {
                let admin_url = match std::env::var("KILN_TEST_POSTGRES_URL") {
                    Ok(url) if !url.is_empty() => url,
                    _ => {
                        if std::env::var("KILN_REQUIRE_POSTGRES").as_deref() == Ok("1") {
                            panic!("KILN_REQUIRE_POSTGRES=1 but KILN_TEST_POSTGRES_URL is not set");
                        }
                        eprintln!("skipping PostgreSQL variant: KILN_TEST_POSTGRES_URL is not set");
                        return None;
                    }
                };
                let name = format!("uaa_test_{}", uuid::Uuid::new_v4().simple());
                let mut admin = diesel::PgConnection::establish(&admin_url)
                    .expect("connect to KILN_TEST_POSTGRES_URL");
                diesel::sql_query(format!("CREATE DATABASE {name}"))
                    .execute(&mut admin)
                    .expect("create database");
                let mut url = url::Url::parse(&admin_url).expect("KILN_TEST_POSTGRES_URL is a URL");
                url.set_path(&format!("/{name}"));
                Some(TestDb {
                    url: url.to_string(),
                    _dir: None,
                    postgres: Some((admin_url, name)),
                })
            }
        }
    }
}

impl Drop for TestDb {
    fn drop(&mut self) {
        if let Some((admin_url, name)) = &self.postgres {
            if let Ok(mut admin) = diesel::PgConnection::establish(admin_url) {
                let _ = diesel::sql_query(format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
                    .execute(&mut admin);
            }
        }
    }
}

/// Runs `test` against a fresh database of `backend` (or skips it, see [`TestDb::create`]).
pub(crate) async fn with_db<F, Fut>(backend: Backend, test: F)
where
    F: FnOnce(TestDb) -> Fut,
    Fut: Future<Output = ()>,
{
    if let Some(db) = TestDb::create(backend) {
        test(db).await;
    }
}

/// Declares `<name>` tests for both backends in modules `sqlite` and `postgres`.
#[macro_export]
macro_rules! backend_tests {
    ($($name:ident),* $(,)?) => {
        mod sqlite {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    $crate::support::with_db($crate::support::Backend::Sqlite, super::$name).await;
                }
            )*
        }
        mod postgres {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    $crate::support::with_db($crate::support::Backend::Postgres, super::$name).await;
                }
            )*
        }
    };
}

pub(crate) const ADMIN_PASSWORD: &str = "admin-secret";
pub(crate) const ALICE_PASSWORD: &str = "alice-secret";
pub(crate) const ADMIN_CLIENT_SECRET: &str = "admin-client-secret";
pub(crate) const LOOKUP_SECRET: &str = "lookup-secret";
/// Secret of `resource-server`, the client with `uaa.resource` that may call `/check_token`.
pub(crate) const RESOURCE_SERVER_SECRET: &str = "resource-server-secret";

/// The standard test configuration for a server at `issuer_url`.
pub(crate) fn test_config(issuer_url: &str, database_url: &str) -> UaaConfig {
    let strings = |items: &[&str]| {
        items
            .iter()
            .map(|item| (*item).to_owned())
            .collect::<Vec<_>>()
    };
    UaaConfig {
        issuer_url: issuer_url.to_owned(),
        database_url: database_url.to_owned(),
        access_token_validity_secs: 1200,
        refresh_token_validity_secs: 2_592_000,
        password_hash_cost: 4,
        users: vec![
            UserConfig {
                username: "admin".to_owned(),
                password: ADMIN_PASSWORD.to_owned(),
                groups: strings(&[
                    "cloud_controller.admin",
                    "scim.read",
                    "scim.write",
                    "uaa.admin",
                ]),
                email: Some("admin@example.com".to_owned()),
            },
            UserConfig {
                username: "alice".to_owned(),
                password: ALICE_PASSWORD.to_owned(),
                groups: vec![],
                email: None,
            },
        ],
        clients: vec![
            ClientConfig {
                client_id: "cf".to_owned(),
                secret: String::new(),
                authorized_grant_types: strings(&["password", "refresh_token"]),
                scope: strings(&[
                    "openid",
                    "uaa.user",
                    "cloud_controller.read",
                    "cloud_controller.write",
                    "cloud_controller.admin",
                    "password.write",
                    "scim.read",
                    "scim.write",
                    "uaa.admin",
                    "kiln.test",
                ]),
                authorities: vec![],
                access_token_validity_secs: None,
                refresh_token_validity_secs: None,
            },
            ClientConfig {
                client_id: "admin-client".to_owned(),
                secret: ADMIN_CLIENT_SECRET.to_owned(),
                authorized_grant_types: strings(&["client_credentials"]),
                scope: vec![],
                authorities: strings(&[
                    "cloud_controller.admin",
                    "scim.read",
                    "scim.write",
                    "password.write",
                ]),
                access_token_validity_secs: Some(43200),
                refresh_token_validity_secs: None,
            },
            ClientConfig {
                client_id: "cloud_controller_username_lookup".to_owned(),
                secret: LOOKUP_SECRET.to_owned(),
                authorized_grant_types: strings(&["client_credentials"]),
                scope: vec![],
                authorities: strings(&["scim.read", "scim.userids"]),
                access_token_validity_secs: None,
                refresh_token_validity_secs: None,
            },
            ClientConfig {
                client_id: "resource-server".to_owned(),
                secret: RESOURCE_SERVER_SECRET.to_owned(),
                authorized_grant_types: strings(&["client_credentials"]),
                scope: vec![],
                authorities: strings(&["uaa.resource"]),
                access_token_validity_secs: None,
                refresh_token_validity_secs: None,
            },
        ],
        workers: Some(2),
    }
}

/// A running server and an HTTP client for it.
pub(crate) struct TestUaa {
    pub(crate) server: UaaServer,
    pub(crate) base: String,
    pub(crate) http: reqwest::Client,
}

impl TestUaa {
    pub(crate) async fn start(db: &TestDb) -> TestUaa {
        TestUaa::start_with(db, |_| {}).await
    }

    pub(crate) async fn start_with(db: &TestDb, tweak: impl FnOnce(&mut UaaConfig)) -> TestUaa {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        let base = format!("http://{}", listener.local_addr().expect("addr"));
        let mut config = test_config(&base, &db.url);
        tweak(&mut config);
        let server = uaa::run(config, listener).await.expect("UAA starts");
        TestUaa {
            server,
            base,
            http: reqwest::Client::new(),
        }
    }

    pub(crate) fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    /// `POST /oauth/token` with a form body and optional Basic client credentials.
    pub(crate) async fn token_request(
        &self,
        basic: Option<(&str, &str)>,
        form: &[(&str, &str)],
    ) -> (u16, Value) {
        let mut request = self.http.post(self.url("/oauth/token")).form(form);
        if let Some((id, secret)) = basic {
            request = request.basic_auth(id, Some(secret));
        }
        let response = request.send().await.expect("token request");
        let status = response.status().as_u16();
        (status, response.json().await.unwrap_or(Value::Null))
    }

    /// The cf CLI's password grant (client `cf`, empty secret); panics unless it succeeds.
    pub(crate) async fn password_token(&self, username: &str, password: &str) -> Value {
        let (status, body) = self
            .token_request(
                Some(("cf", "")),
                &[
                    ("grant_type", "password"),
                    ("username", username),
                    ("password", password),
                ],
            )
            .await;
        assert_eq!(status, 200, "password grant for {username}: {body}");
        body
    }

    pub(crate) async fn client_token(&self, client_id: &str, secret: &str) -> String {
        let (status, body) = self
            .token_request(
                None,
                &[
                    ("grant_type", "client_credentials"),
                    ("client_id", client_id),
                    ("client_secret", secret),
                ],
            )
            .await;
        assert_eq!(status, 200, "client_credentials for {client_id}: {body}");
        body["access_token"]
            .as_str()
            .expect("access_token")
            .to_owned()
    }

    pub(crate) async fn admin_token(&self) -> String {
        self.client_token("admin-client", ADMIN_CLIENT_SECRET).await
    }

    /// A request with `bearer <token>` and an optional JSON body; returns status, headers, JSON.
    pub(crate) async fn call(
        &self,
        method: reqwest::Method,
        path: &str,
        token: Option<&str>,
        body: Option<Value>,
    ) -> (u16, reqwest::header::HeaderMap, Value) {
        let mut request = self.http.request(method, self.url(path));
        if let Some(token) = token {
            request = request.header("Authorization", format!("bearer {token}"));
        }
        if let Some(body) = body {
            request = request.json(&body);
        }
        let response = request.send().await.expect("request");
        let status = response.status().as_u16();
        let headers = response.headers().clone();
        let text = response.text().await.expect("body");
        (
            status,
            headers,
            serde_json::from_str(&text).unwrap_or(Value::String(text)),
        )
    }

    /// The claims of `token`, verified against this server's `/token_keys`.
    pub(crate) async fn verify(&self, token: &str) -> Value {
        let keys: Value = self
            .http
            .get(self.url("/token_keys"))
            .send()
            .await
            .expect("token_keys")
            .json()
            .await
            .expect("json");
        verify_with_keys(token, &keys, &format!("{}/oauth/token", self.base))
    }

    /// `POST /check_token` as the resource server; returns status and JSON body.
    pub(crate) async fn check_token(&self, form: &[(&str, &str)]) -> (u16, Value) {
        let response = self
            .http
            .post(self.url("/check_token"))
            .basic_auth("resource-server", Some(RESOURCE_SERVER_SECRET))
            .form(form)
            .send()
            .await
            .expect("check_token request");
        let status = response.status().as_u16();
        (status, response.json().await.unwrap_or(Value::Null))
    }

    pub(crate) async fn stop(self) {
        self.server.stop().await;
    }
}

/// Verifies an RS256 token against a `/token_keys` document and returns its claims.
pub(crate) fn verify_with_keys(token: &str, keys: &Value, issuer: &str) -> Value {
    let header = jsonwebtoken::decode_header(token).expect("JWT header");
    assert_eq!(header.alg, jsonwebtoken::Algorithm::RS256);
    let kid = header.kid.expect("kid header");
    let key = keys["keys"]
        .as_array()
        .expect("keys")
        .iter()
        .find(|key| key["kid"] == kid.as_str())
        .unwrap_or_else(|| panic!("kid {kid} not in {keys}"));
    let decoding = jsonwebtoken::DecodingKey::from_rsa_components(
        key["n"].as_str().expect("n"),
        key["e"].as_str().expect("e"),
    )
    .expect("decoding key");
    let mut validation = jsonwebtoken::Validation::new(jsonwebtoken::Algorithm::RS256);
    validation.set_issuer(&[issuer]);
    validation.validate_aud = false;
    jsonwebtoken::decode::<Value>(token, &decoding, &validation)
        .expect("token verifies")
        .claims
}

/// Retries `probe` until it returns `Some`, for at most `timeout`.
pub(crate) async fn eventually<T, F, Fut>(timeout: Duration, what: &str, mut probe: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(value) = probe().await {
            return value;
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// The current time in UTC milliseconds since the Unix epoch.
pub(crate) fn now_millis() -> i64 {
    i64::try_from(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .expect("clock after 1970")
            .as_millis(),
    )
    .expect("time fits i64")
}

/// The scopes of a token response as a sorted list.
pub(crate) fn scopes(claims: &Value) -> Vec<String> {
    let mut scopes: Vec<String> = claims["scope"]
        .as_array()
        .expect("scope array")
        .iter()
        .map(|scope| scope.as_str().expect("scope string").to_owned())
        .collect();
    scopes.sort();
    scopes
}
