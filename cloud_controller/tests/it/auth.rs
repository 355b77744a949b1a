//! Token verification and scope enforcement.

use serde_json::json;

use crate::support::{databases, Harness, OTHER_KEY_PEM, TEST_KEY_N, TEST_KEY_PEM};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tokens_are_verified_and_scopes_enforced() {
    for database in databases() {
        let harness = Harness::start(database).await;
        let alice = harness.issuer.add_user("alice", "uaa");

        let missing = harness
            .request(reqwest::Method::GET, "/v3/organizations", None, None)
            .await;
        missing.assert_v3_error(401, "CF-NotAuthenticated", "Authentication error");
        assert_eq!(missing.body["errors"][0]["code"], 10002);

        let garbage = harness.get("/v3/organizations", "not-a-jwt").await;
        garbage.assert_v3_error(401, "CF-InvalidAuthToken", "Invalid Auth Token");
        assert_eq!(garbage.body["errors"][0]["code"], 1000);

        let mut spec = harness.issuer.spec(&["cloud_controller.read"]);
        spec.exp_offset_secs = -3600;
        let expired = harness
            .get(
                "/v3/organizations",
                &harness.issuer.token_for(&alice, &spec),
            )
            .await;
        expired.assert_v3_error(401, "CF-InvalidAuthToken", "Invalid Auth Token");

        let mut spec = harness.issuer.spec(&["cloud_controller.read"]);
        spec.key_pem = OTHER_KEY_PEM;
        let forged = harness
            .get(
                "/v3/organizations",
                &harness.issuer.token_for(&alice, &spec),
            )
            .await;
        forged.assert_v3_error(401, "CF-InvalidAuthToken", "Invalid Auth Token");

        let mut spec = harness.issuer.spec(&["cloud_controller.read"]);
        spec.issuer = "http://evil.example/oauth/token".into();
        let wrong_issuer = harness
            .get(
                "/v3/organizations",
                &harness.issuer.token_for(&alice, &spec),
            )
            .await;
        wrong_issuer.assert_v3_error(401, "CF-InvalidAuthToken", "Invalid Auth Token");

        let mut spec = harness.issuer.spec(&["cloud_controller.read"]);
        spec.audience = vec!["cf", "openid"];
        let wrong_audience = harness
            .get(
                "/v3/organizations",
                &harness.issuer.token_for(&alice, &spec),
            )
            .await;
        wrong_audience.assert_v3_error(401, "CF-InvalidAuthToken", "Invalid Auth Token");

        let read_only = harness
            .issuer
            .token_for(&alice, &harness.issuer.spec(&["cloud_controller.read"]));
        let listed = harness.get("/v3/organizations", &read_only).await;
        assert_eq!(listed.status, 200, "{:#}", listed.body);
        let write = harness
            .post("/v3/organizations", &read_only, json!({"name": "nope"}))
            .await;
        write.assert_v3_error(
            403,
            "CF-NotAuthorized",
            "You are not authorized to perform the requested action",
        );
        let no_scopes = harness
            .issuer
            .token_for(&alice, &harness.issuer.spec(&["openid"]));
        harness
            .get("/v3/organizations", &no_scopes)
            .await
            .assert_v3_error(
                403,
                "CF-NotAuthorized",
                "You are not authorized to perform the requested action",
            );
        let v2_scope = harness.get("/v2/organizations", &no_scopes).await;
        assert_eq!(v2_scope.status, 403);
        assert_eq!(v2_scope.body["error_code"], "CF-InsufficientScope");

        // The scheme is case-insensitive.
        let upper = harness
            .http
            .get(format!("{}/v3/organizations", harness.base))
            .header("Authorization", format!("BEARER {}", harness.admin_token))
            .send()
            .await
            .unwrap();
        assert_eq!(upper.status(), 200);

        // The first request creates the user's row; client tokens get one under their client id.
        let me = harness
            .get(&format!("/v3/users/{}", alice.id), &read_only)
            .await;
        assert_eq!(me.status, 200, "{:#}", me.body);
        assert_eq!(me.body["username"], "alice");
        assert_eq!(me.body["origin"], "uaa");
        let robot = crate::support::TestUser {
            id: "robot-client".into(),
            username: String::new(),
            origin: String::new(),
        };
        let mut spec = harness.issuer.spec(&["cloud_controller.admin"]);
        spec.client = true;
        let robot_token = harness.issuer.token_for(&robot, &spec);
        let robot_user = harness.get("/v3/users/robot-client", &robot_token).await;
        assert_eq!(robot_user.status, 200, "{:#}", robot_user.body);
        assert_eq!(robot_user.body["presentation_name"], "robot-client");
        harness.stop().await;
    }
}

/// A request whose body fails to parse drops its handler's extractors mid-flight, including a
/// first fetch of UAA's keys; that must not leave the key cache refusing the next tokens.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bad_body_before_the_first_token_check_does_not_poison_the_key_cache() {
    for database in databases() {
        let harness = Harness::start(database).await;
        let malformed = harness
            .request(
                reqwest::Method::POST,
                "/v3/organizations",
                Some(&harness.admin_token),
                Some(r#"{"name":"#),
            )
            .await;
        malformed.assert_v3_error(
            400,
            "CF-MessageParseError",
            malformed.body["errors"][0]["detail"]
                .as_str()
                .unwrap_or_default(),
        );
        let listed = harness.get("/v3/organizations", &harness.admin_token).await;
        assert_eq!(listed.status, 200, "{:?}", listed.body);
        harness.stop().await;
    }
}

/// A stand-in for UAA's `/token_keys` whose published keys the test changes, counting fetches.
struct RotatingJwks {
    url: String,
    keys: std::sync::Arc<std::sync::Mutex<Vec<serde_json::Value>>>,
    fetches: std::sync::Arc<std::sync::atomic::AtomicUsize>,
    handle: actix_web::dev::ServerHandle,
}

impl RotatingJwks {
    fn start(kids: &[&str]) -> RotatingJwks {
        use actix_web::{web, App, HttpResponse, HttpServer};
        let keys = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let fetches = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let (served, counted) = (keys.clone(), fetches.clone());
        let server = HttpServer::new(move || {
            let (served, counted) = (served.clone(), counted.clone());
            App::new().route(
                "/token_keys",
                web::get().to(move || {
                    let (served, counted) = (served.clone(), counted.clone());
                    async move {
                        counted.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                        let keys = served.lock().unwrap().clone();
                        HttpResponse::Ok().json(json!({ "keys": keys }))
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
        let jwks = RotatingJwks {
            url,
            keys,
            fetches,
            handle,
        };
        jwks.publish(kids);
        jwks
    }

    /// Publishes the test key under these key ids (UAA rotates by adding a new `kid`).
    fn publish(&self, kids: &[&str]) {
        *self.keys.lock().unwrap() = kids
            .iter()
            .map(|kid| json!({"kty": "RSA", "alg": "RS256", "use": "sig", "kid": kid, "n": TEST_KEY_N.trim(), "e": "AQAB"}))
            .collect();
    }

    fn fetches(&self) -> usize {
        self.fetches.load(std::sync::atomic::Ordering::SeqCst)
    }

    /// A user token from this issuer, signed with `key_pem` and naming `kid`.
    fn token(&self, kid: &str, key_pem: &str) -> String {
        signed_token(&self.url, kid, key_pem)
    }
}

/// A read-scoped user token as `issuer` would sign it with `key_pem` under `kid`.
fn signed_token(issuer: &str, kid: &str, key_pem: &str) -> String {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let claims = json!({
        "jti": "rotation", "scope": ["cloud_controller.read"], "iat": now, "exp": now + 600,
        "iss": format!("{issuer}/oauth/token"), "aud": ["cloud_controller"],
        "user_id": "rotation-user", "sub": "rotation-user", "user_name": "rot", "origin": "uaa",
        "client_id": "cf",
    });
    let mut header = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::RS256);
    header.kid = Some(kid.to_owned());
    let key = jsonwebtoken::EncodingKey::from_rsa_pem(key_pem.as_bytes()).unwrap();
    jsonwebtoken::encode(&header, &claims, &key).unwrap()
}

/// UAA's keys are fetched once and cached; a token naming an unknown `kid` (a rotated key)
/// makes CC fetch them again, at most every couple of seconds however many such tokens come.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn token_keys_are_cached_and_refetched_for_an_unknown_kid() {
    let database = databases().remove(0);
    let jwks = RotatingJwks::start(&["key-1"]);
    let (cc, base) = crate::support::start_cc(database.url(), &jwks.url).await;
    let http = reqwest::Client::new();
    let status = |token: String| {
        let request = http
            .get(format!("{base}/v3/organizations"))
            .header("Authorization", format!("bearer {token}"));
        async move { request.send().await.unwrap().status().as_u16() }
    };

    assert_eq!(status(jwks.token("key-1", TEST_KEY_PEM)).await, 200);
    assert_eq!(status(jwks.token("key-1", TEST_KEY_PEM)).await, 200);
    assert_eq!(jwks.fetches(), 1, "the keys are cached");
    // A known kid with the wrong signature is refused without a refetch.
    assert_eq!(status(jwks.token("key-1", OTHER_KEY_PEM)).await, 401);
    assert_eq!(jwks.fetches(), 1);

    // A burst of tokens naming a key UAA does not publish: refused, and fetches stay bounded.
    for _ in 0..10 {
        assert_eq!(status(jwks.token("key-2", TEST_KEY_PEM)).await, 401);
    }
    assert!(
        jwks.fetches() <= 3,
        "{} fetches for one burst",
        jwks.fetches()
    );

    // UAA rotates: key-2 appears, and CC picks it up on the next unknown-kid token.
    jwks.publish(&["key-1", "key-2"]);
    let rotated = support_eventually(|| status(jwks.token("key-2", TEST_KEY_PEM))).await;
    assert!(
        rotated,
        "a token signed with the rotated key was never accepted"
    );
    assert_eq!(status(jwks.token("key-1", TEST_KEY_PEM)).await, 200);
    cc.stop().await;
    jwks.handle.stop(false).await;
}

async fn support_eventually<F, Fut>(mut status: F) -> bool
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = u16>,
{
    crate::support::eventually(std::time::Duration::from_secs(10), || {
        let answer = status();
        async move { answer.await == 200 }
    })
    .await
}

/// When UAA's keys cannot be fetched, a token cannot be checked: 503 `CF-UaaUnavailable`, not
/// a 500 and not a 401 that would send the user to log in again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unreachable_uaa_is_503_uaa_unavailable() {
    let database = databases().remove(0);
    // A port nothing listens on: bind it, note it, let it go.
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let uaa = format!("http://{}", closed.local_addr().unwrap());
    drop(closed);
    let (cc, base) = crate::support::start_cc(database.url(), &uaa).await;
    let response = reqwest::Client::new()
        .get(format!("{base}/v3/organizations"))
        .header(
            "Authorization",
            format!("bearer {}", signed_token(&uaa, "key-1", TEST_KEY_PEM)),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(response.status().as_u16(), 503);
    let body: serde_json::Value = response.json().await.unwrap();
    assert_eq!(body["errors"][0]["title"], "CF-UaaUnavailable", "{body}");
    assert_eq!(body["errors"][0]["code"], 20004, "{body}");
    cc.stop().await;
}
