//! Test harness: database backends, a test token issuer, the CC under test, an HTTP client and
//! the `check` helper that compares JSON with GUIDs and timestamps redacted.

use std::net::TcpListener;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use actix_web::{web, App, HttpResponse, HttpServer};
use cloud_controller::{BlobstoreConfig, CcConfig, CcServer, UaaConfig};
use diesel::connection::SimpleConnection;
use diesel::Connection;
use serde_json::{json, Value};

pub(crate) const TEST_KEY_PEM: &str = include_str!("fixtures/test_signing_key.pem");
pub(crate) const OTHER_KEY_PEM: &str = include_str!("fixtures/other_signing_key.pem");
pub(crate) const TEST_KEY_N: &str = include_str!("fixtures/test_signing_key.n");
pub(crate) const TEST_KID: &str = "test-key";

/// A database for one test, dropped afterwards.
pub(crate) enum TestDatabase {
    Sqlite {
        _dir: tempfile::TempDir,
        url: String,
    },
    Postgres {
        admin_url: String,
        name: String,
        url: String,
    },
}

impl TestDatabase {
    pub(crate) fn url(&self) -> &str {
        match self {
            TestDatabase::Sqlite { url, .. } | TestDatabase::Postgres { url, .. } => url,
        }
    }

    pub(crate) fn label(&self) -> &'static str {
        match self {
            TestDatabase::Sqlite { .. } => "sqlite",
            TestDatabase::Postgres { .. } => "postgres",
        }
    }
}

impl Drop for TestDatabase {
    fn drop(&mut self) {
        if let TestDatabase::Postgres {
            admin_url, name, ..
        } = self
        {
            if let Ok(mut connection) = diesel::pg::PgConnection::establish(admin_url) {
                let _ = connection
                    .batch_execute(&format!("DROP DATABASE IF EXISTS \"{name}\" WITH (FORCE)"));
            }
            let _ = std::fs::remove_dir_all(postgres_blob_dir(name));
        }
    }
}

fn sqlite_database() -> TestDatabase {
    let dir = tempfile::tempdir().expect("tempdir");
    let url = format!("sqlite://{}", dir.path().join("cc.sqlite3").display());
    TestDatabase::Sqlite { _dir: dir, url }
}

fn postgres_database() -> Option<TestDatabase> {
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
    let name = format!("kiln_cc_test_{}", uuid::Uuid::new_v4().simple());
    let mut connection =
        diesel::pg::PgConnection::establish(&admin_url).expect("connect to KILN_TEST_POSTGRES_URL");
    connection
        .batch_execute(&format!("CREATE DATABASE \"{name}\""))
        .expect("create test database");
    let mut url = url::Url::parse(&admin_url).expect("postgres url");
    url.set_path(&name);
    Some(TestDatabase::Postgres {
        admin_url,
        name,
        url: url.to_string(),
    })
}

/// Every backend this run covers: SQLite always, PostgreSQL when configured.
pub(crate) fn databases() -> Vec<TestDatabase> {
    let mut databases = vec![sqlite_database()];
    databases.extend(postgres_database());
    databases
}

/// A user known to the test issuer.
#[derive(Clone, Debug)]
pub(crate) struct TestUser {
    pub(crate) id: String,
    pub(crate) username: String,
    pub(crate) origin: String,
}

/// A stand-in for UAA, a system we do not own in these tests: serves JWKS for the test key,
/// client-credentials tokens and SCIM user lookups.
pub(crate) struct TestIssuer {
    pub(crate) url: String,
    pub(crate) users: Arc<Mutex<Vec<TestUser>>>,
    handle: actix_web::dev::ServerHandle,
}

fn scim_value(filter: &str, attribute: &str) -> Option<String> {
    let start = filter.find(&format!("{attribute} eq \""))? + attribute.len() + 5;
    let rest = &filter[start..];
    Some(rest[..rest.find('"')?].to_owned())
}

fn scim_user(user: &TestUser) -> Value {
    json!({"id": user.id, "userName": user.username, "origin": user.origin})
}

impl TestIssuer {
    pub(crate) async fn start() -> TestIssuer {
        let users = Arc::new(Mutex::new(Vec::<TestUser>::new()));
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let data = web::Data::new(users.clone());
        let server = HttpServer::new(move || {
            App::new()
                .app_data(data.clone())
                .route(
                    "/token_keys",
                    web::get().to(|| async {
                        HttpResponse::Ok().json(json!({"keys": [{
                            "kty": "RSA", "alg": "RS256", "use": "sig", "kid": TEST_KID,
                            "n": TEST_KEY_N.trim(), "e": "AQAB", "value": ""}]}))
                    }),
                )
                .route(
                    "/oauth/token",
                    web::post().to(|| async {
                        HttpResponse::Ok().json(json!({"access_token": "lookup-token", "token_type": "bearer", "expires_in": 600}))
                    }),
                )
                .route(
                    "/Users",
                    web::get().to(|users: web::Data<Arc<Mutex<Vec<TestUser>>>>, query: web::Query<Vec<(String, String)>>| async move {
                        let filter = query.iter().find(|(key, _)| key == "filter").map(|(_, value)| value.clone()).unwrap_or_default();
                        let username = scim_value(&filter, "userName");
                        let origin = scim_value(&filter, "origin");
                        let found: Vec<Value> = users
                            .lock()
                            .unwrap()
                            .iter()
                            .filter(|user| username.as_deref().is_none_or(|name| user.username.eq_ignore_ascii_case(name)))
                            .filter(|user| origin.as_deref().is_none_or(|origin| user.origin == origin))
                            .map(scim_user)
                            .collect();
                        HttpResponse::Ok().json(json!({"resources": found, "totalResults": found.len(), "startIndex": 1, "itemsPerPage": 100}))
                    }),
                )
                .route(
                    "/Users/{id}",
                    web::get().to(|users: web::Data<Arc<Mutex<Vec<TestUser>>>>, id: web::Path<String>| async move {
                        match users.lock().unwrap().iter().find(|user| user.id == *id) {
                            Some(user) => HttpResponse::Ok().json(scim_user(user)),
                            None => HttpResponse::NotFound().json(json!({"error": "scim_resource_not_found"})),
                        }
                    }),
                )
        })
        .workers(1)
        .disable_signals()
        .listen(listener)
        .unwrap()
        .run();
        let handle = server.handle();
        tokio::spawn(server);
        TestIssuer { url, users, handle }
    }

    /// Registers a UAA user and returns it.
    pub(crate) fn add_user(&self, username: &str, origin: &str) -> TestUser {
        let user = TestUser {
            id: uuid::Uuid::new_v4().to_string(),
            username: username.to_owned(),
            origin: origin.to_owned(),
        };
        self.users.lock().unwrap().push(user.clone());
        user
    }

    pub(crate) async fn stop(self) {
        self.handle.stop(false).await;
    }
}

fn now_secs() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

/// Options for minting a token.
pub(crate) struct TokenSpec<'a> {
    pub(crate) scopes: &'a [&'a str],
    pub(crate) issuer: String,
    pub(crate) audience: Vec<&'a str>,
    pub(crate) exp_offset_secs: i64,
    pub(crate) key_pem: &'a str,
    pub(crate) client: bool,
}

impl TestIssuer {
    pub(crate) fn spec<'a>(&self, scopes: &'a [&'a str]) -> TokenSpec<'a> {
        TokenSpec {
            scopes,
            issuer: format!("{}/oauth/token", self.url),
            audience: vec!["cloud_controller", "cf", "openid"],
            exp_offset_secs: 3600,
            key_pem: TEST_KEY_PEM,
            client: false,
        }
    }

    pub(crate) fn token_for(&self, user: &TestUser, spec: &TokenSpec<'_>) -> String {
        let iat = now_secs() as i64;
        let mut claims = json!({
            "jti": uuid::Uuid::new_v4().to_string(),
            "scope": spec.scopes,
            "iat": iat,
            "exp": iat + spec.exp_offset_secs,
            "iss": spec.issuer,
            "aud": spec.audience,
            "zid": "uaa",
            "cid": "cf",
            "client_id": "cf",
        });
        if spec.client {
            claims["client_id"] = json!(user.id);
            claims["sub"] = json!(user.id);
        } else {
            claims["user_id"] = json!(user.id);
            claims["sub"] = json!(user.id);
            claims["user_name"] = json!(user.username);
            claims["origin"] = json!(user.origin);
        }
        let mut header = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::RS256);
        header.kid = Some(TEST_KID.to_owned());
        let key =
            jsonwebtoken::EncodingKey::from_rsa_pem(spec.key_pem.as_bytes()).expect("test key");
        jsonwebtoken::encode(&header, &claims, &key).expect("sign")
    }

    pub(crate) fn admin_token(&self, user: &TestUser) -> String {
        self.token_for(
            user,
            &self.spec(&[
                "cloud_controller.admin",
                "cloud_controller.read",
                "cloud_controller.write",
                "openid",
            ]),
        )
    }

    pub(crate) fn user_token(&self, user: &TestUser) -> String {
        self.token_for(
            user,
            &self.spec(&["cloud_controller.read", "cloud_controller.write", "openid"]),
        )
    }
}

pub(crate) fn cc_config(database_url: &str, external_url: &str, uaa_url: &str) -> CcConfig {
    CcConfig {
        external_url: external_url.to_owned(),
        database_url: database_url.to_owned(),
        uaa: UaaConfig {
            url: uaa_url.to_owned(),
            internal_url: None,
            client_id: "cloud_controller_username_lookup".to_owned(),
            client_secret: "lookup-secret".to_owned(),
        },
        apps_domain: "apps.localhost".to_owned(),
        default_stack: "kiln-host".to_owned(),
        log_cache_url: None,
        loggregator_ingress: None,
        workers: Some(1),
        blobstore: BlobstoreConfig {
            // SQLite: the default, beside the database in the test's tempdir.
            local_dir: postgres_database_name(database_url).map(|name| postgres_blob_dir(&name)),
            s3: None,
        },
        max_package_bytes: 1024 * 1024,
        max_package_entries: 50,
        internal_api: None,
        system_buildpacks_dir: None,
        sync_wait_secs: 10,
        staging_log_drain_ms: 2300,
        services: Default::default(),
    }
}

/// Internal API credentials of a CC started with [`Harness::start_staging`].
pub(crate) const INTERNAL_USER: &str = "internal_user";
pub(crate) const INTERNAL_PASSWORD: &str = "s3cr@t:pass";

/// The repository's system buildpacks.
pub(crate) fn system_buildpacks_dir() -> std::path::PathBuf {
    std::path::PathBuf::from(manifest_dir()).join("../buildpacks")
}

/// Where the CC under test keeps its blobs for this database.
pub(crate) fn blob_dir(database: &TestDatabase) -> std::path::PathBuf {
    match database {
        TestDatabase::Sqlite { url, .. } => {
            std::path::Path::new(url.trim_start_matches("sqlite://"))
                .parent()
                .unwrap()
                .join("blobstore")
        }
        TestDatabase::Postgres { name, .. } => postgres_blob_dir(name),
    }
}

/// The test database's name when `database_url` is a PostgreSQL URL.
fn postgres_database_name(database_url: &str) -> Option<String> {
    if !database_url.starts_with("postgres") {
        return None;
    }
    url::Url::parse(database_url)
        .ok()
        .map(|url| url.path().trim_start_matches('/').to_owned())
}

/// The blob directory of a PostgreSQL test database (removed with the database).
fn postgres_blob_dir(name: &str) -> std::path::PathBuf {
    std::env::temp_dir().join("kiln-cc-test-blobs").join(name)
}

/// Binds a port and starts a CC on it.
pub(crate) async fn start_cc(database_url: &str, uaa_url: &str) -> (CcServer, String) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let server = cloud_controller::run(cc_config(database_url, &base, uaa_url), listener)
        .await
        .expect("cc starts");
    (server, base)
}

/// A CC with a test issuer and an HTTP client.
pub(crate) struct Harness {
    pub(crate) cc: Option<CcServer>,
    pub(crate) base: String,
    pub(crate) issuer: TestIssuer,
    pub(crate) http: reqwest::Client,
    pub(crate) admin_token: String,
    pub(crate) database: TestDatabase,
}

/// An HTTP answer.
#[derive(Debug)]
pub(crate) struct Answer {
    pub(crate) status: u16,
    pub(crate) body: Value,
    pub(crate) headers: reqwest::header::HeaderMap,
}

impl Answer {
    pub(crate) fn header(&self, name: &str) -> Option<String> {
        self.headers
            .get(name)
            .and_then(|value| value.to_str().ok())
            .map(str::to_owned)
    }

    /// Asserts a v3 error answer.
    pub(crate) fn assert_v3_error(&self, status: u16, title: &str, detail: &str) {
        assert_eq!(self.status, status, "{:#}", self.body);
        assert_eq!(self.body["errors"][0]["title"], title, "{:#}", self.body);
        assert_eq!(self.body["errors"][0]["detail"], detail, "{:#}", self.body);
    }
}

impl Harness {
    pub(crate) async fn start(database: TestDatabase) -> Harness {
        let issuer = TestIssuer::start().await;
        let (cc, base) = start_cc(database.url(), &issuer.url).await;
        Harness::assemble(database, issuer, cc, base)
    }

    /// A CC with the repository's system buildpacks, fixed internal API credentials
    /// ([`INTERNAL_USER`], [`INTERNAL_PASSWORD`]) and, when given, a NATS client.
    pub(crate) async fn start_staging(
        database: TestDatabase,
        nats: Option<async_nats::Client>,
    ) -> Harness {
        let issuer = TestIssuer::start().await;
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        let mut config = cc_config(database.url(), &base, &issuer.url);
        config.internal_api = Some(cloud_controller::InternalApiConfig {
            username: INTERNAL_USER.to_owned(),
            password: INTERNAL_PASSWORD.to_owned(),
        });
        config.system_buildpacks_dir = Some(system_buildpacks_dir());
        let cc = cloud_controller::run_with_nats(config, listener, nats)
            .await
            .expect("cc starts");
        Harness::assemble(database, issuer, cc, base)
    }

    /// A CC whose config `adjust` changes first (no NATS).
    pub(crate) async fn start_with(
        database: TestDatabase,
        adjust: impl FnOnce(&mut CcConfig),
    ) -> Harness {
        let issuer = TestIssuer::start().await;
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        let mut config = cc_config(database.url(), &base, &issuer.url);
        adjust(&mut config);
        let cc = cloud_controller::run(config, listener)
            .await
            .expect("cc starts");
        Harness::assemble(database, issuer, cc, base)
    }

    fn assemble(database: TestDatabase, issuer: TestIssuer, cc: CcServer, base: String) -> Harness {
        let admin = issuer.add_user("admin", "uaa");
        let admin_token = issuer.admin_token(&admin);
        Harness {
            cc: Some(cc),
            base,
            issuer,
            http: reqwest::Client::new(),
            admin_token,
            database,
        }
    }

    pub(crate) async fn stop(mut self) {
        if let Some(cc) = self.cc.take() {
            cc.stop().await;
        }
        self.issuer.stop().await;
    }

    pub(crate) async fn request(
        &self,
        method: reqwest::Method,
        path_or_url: &str,
        token: Option<&str>,
        body: Option<&str>,
    ) -> Answer {
        let url = if path_or_url.starts_with("http") {
            path_or_url.to_owned()
        } else {
            format!("{}{path_or_url}", self.base)
        };
        let mut request = self
            .http
            .request(method, url)
            .header("Content-Type", "application/json")
            .header("Accept", "application/json");
        if let Some(token) = token {
            request = request.header("Authorization", format!("bearer {token}"));
        }
        if let Some(body) = body {
            request = request.body(body.to_owned());
        }
        let response = request.send().await.expect("request");
        let status = response.status().as_u16();
        let headers = response.headers().clone();
        let text = response.text().await.unwrap();
        let body = if text.is_empty() {
            Value::Null
        } else {
            serde_json::from_str(&text).unwrap_or(Value::String(text))
        };
        Answer {
            status,
            body,
            headers,
        }
    }

    pub(crate) async fn get(&self, path: &str, token: &str) -> Answer {
        self.request(reqwest::Method::GET, path, Some(token), None)
            .await
    }

    pub(crate) async fn post(&self, path: &str, token: &str, body: Value) -> Answer {
        self.request(
            reqwest::Method::POST,
            path,
            Some(token),
            Some(&body.to_string()),
        )
        .await
    }

    pub(crate) async fn put(&self, path: &str, token: &str, body: Value) -> Answer {
        self.request(
            reqwest::Method::PUT,
            path,
            Some(token),
            Some(&body.to_string()),
        )
        .await
    }

    pub(crate) async fn patch(&self, path: &str, token: &str, body: Value) -> Answer {
        self.request(
            reqwest::Method::PATCH,
            path,
            Some(token),
            Some(&body.to_string()),
        )
        .await
    }

    pub(crate) async fn delete(&self, path: &str, token: &str) -> Answer {
        self.request(reqwest::Method::DELETE, path, Some(token), None)
            .await
    }

    /// Creates an org as admin and returns its GUID.
    pub(crate) async fn create_org(&self, name: &str) -> String {
        let answer = self
            .post(
                "/v3/organizations",
                &self.admin_token,
                json!({"name": name}),
            )
            .await;
        assert_eq!(answer.status, 201, "{:#}", answer.body);
        answer.body["guid"].as_str().unwrap().to_owned()
    }

    /// Creates a space as admin and returns its GUID.
    pub(crate) async fn create_space(&self, org_guid: &str, name: &str) -> String {
        let answer = self
            .post("/v3/spaces", &self.admin_token, json!({"name": name, "relationships": {"organization": {"data": {"guid": org_guid}}}}))
            .await;
        assert_eq!(answer.status, 201, "{:#}", answer.body);
        answer.body["guid"].as_str().unwrap().to_owned()
    }

    /// Grants a role as admin by username.
    pub(crate) async fn grant(
        &self,
        role_type: &str,
        username: &str,
        target: (&str, &str),
    ) -> Answer {
        self.post(
            "/v3/roles",
            &self.admin_token,
            json!({"type": role_type, "relationships": {
                "user": {"data": {"username": username}},
                target.0: {"data": {"guid": target.1}}}}),
        )
        .await
    }

    /// Polls the job at a `Location` until it is no longer PROCESSING.
    pub(crate) async fn wait_job(&self, location: &str, token: &str) -> Value {
        let last = std::cell::RefCell::new(Value::Null);
        let done = eventually(Duration::from_secs(10), || async {
            let answer = self.get(location, token).await;
            assert_eq!(answer.status, 200, "{:#}", answer.body);
            let finished = answer.body["state"] != "PROCESSING";
            *last.borrow_mut() = answer.body;
            finished
        })
        .await;
        let last = last.into_inner();
        assert!(done, "job did not finish: {last:#}");
        last
    }
}

/// Retries `condition` until it holds or `limit` passes (bounded, no fixed sleeps in tests).
pub(crate) async fn eventually<F, Fut>(limit: Duration, mut condition: F) -> bool
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = tokio::time::Instant::now() + limit;
    let mut pause = Duration::from_millis(10);
    loop {
        if condition().await {
            return true;
        }
        if tokio::time::Instant::now() >= deadline {
            return false;
        }
        tokio::time::sleep(pause).await;
        pause = (pause * 2).min(Duration::from_millis(250));
    }
}

fn is_guid(text: &str) -> bool {
    uuid::Uuid::parse_str(text).is_ok() && text.len() == 36
}

fn is_timestamp(text: &str) -> bool {
    text.len() == 20 && text.ends_with('Z') && chrono::DateTime::parse_from_rfc3339(text).is_ok()
}

/// Replaces GUIDs (also inside URLs), timestamps and the server address with placeholders.
pub(crate) fn redact(value: &Value, base: &str) -> Value {
    match value {
        Value::String(text) => {
            if is_guid(text) {
                return json!("<guid>");
            }
            if is_timestamp(text) {
                return json!("<time>");
            }
            let replaced = text.replace(base, "<api>");
            let parts: Vec<String> = replaced
                .split('/')
                .map(|part| {
                    let (head, tail) = part
                        .split_once('?')
                        .map_or((part, None), |(head, tail)| (head, Some(tail)));
                    let head = if is_guid(head) {
                        "<guid>".to_owned()
                    } else {
                        head.to_owned()
                    };
                    match tail {
                        Some(tail) => format!("{head}?{tail}"),
                        None => head,
                    }
                })
                .collect();
            json!(parts.join("/"))
        }
        Value::Array(items) => Value::Array(items.iter().map(|item| redact(item, base)).collect()),
        Value::Object(map) => Value::Object(
            map.iter()
                .map(|(key, item)| (key.clone(), redact(item, base)))
                .collect(),
        ),
        other => other.clone(),
    }
}

/// Snapshot-style check: `actual`, redacted, must equal `expected`.
pub(crate) fn check(actual: &Value, base: &str, expected: Value) {
    let redacted = redact(actual, base);
    assert_eq!(
        redacted, expected,
        "\nactual (redacted):\n{redacted:#}\nexpected:\n{expected:#}"
    );
}

/// This crate's directory: cargo's `CARGO_MANIFEST_DIR` at run time, else the compile-time one (a
/// target directory shared by several clones may run a test binary compiled in another clone).
fn manifest_dir() -> String {
    std::env::var("CARGO_MANIFEST_DIR").unwrap_or_else(|_| env!("CARGO_MANIFEST_DIR").to_owned())
}
