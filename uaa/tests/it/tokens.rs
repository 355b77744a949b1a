//! Token endpoint: grants, claims, rotating refresh tokens, revocation, check_token, userinfo,
//! discovery, health and metrics.

use reqwest::Method;
use serde_json::{json, Value};

use crate::support::{
    scopes, TestDb, TestUaa, ADMIN_CLIENT_SECRET, ADMIN_PASSWORD, ALICE_PASSWORD, LOOKUP_SECRET,
};

crate::backend_tests!(
    discovery_health_and_metrics,
    password_grant_issues_verifiable_user_tokens,
    token_errors_use_uaa_statuses,
    refresh_tokens_rotate,
    client_credentials_tokens,
    password_change_and_deletion_revoke_tokens,
    logout_revokes_refresh_token,
    check_token_and_userinfo,
);

async fn discovery_health_and_metrics(db: TestDb) {
    let uaa = TestUaa::start(&db).await;
    for path in ["/login", "/info"] {
        let (status, _, body) = uaa.call(Method::GET, path, None, None).await;
        assert_eq!(status, 200);
        assert_eq!(body["app"]["version"], "4.30.0");
        assert_eq!(body["links"]["uaa"], uaa.base.as_str());
        assert_eq!(body["links"]["login"], uaa.base.as_str());
        assert_eq!(
            body["prompts"],
            json!({"username": ["text", "Email"], "password": ["password", "Password"]})
        );
    }
    let health = uaa
        .http
        .get(uaa.url("/healthz"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert_eq!(health, "ok");
    uaa.admin_token().await;
    let metrics = uaa
        .http
        .get(uaa.url("/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        metrics.contains("uaa_tokens_issued_total{grant_type=\"client_credentials\"} 1"),
        "{metrics}"
    );
    assert!(metrics.contains("uaa_http_requests_total "), "{metrics}");
    let (status, _, body) = uaa.call(Method::GET, "/no/such/path", None, None).await;
    assert_eq!(status, 404);
    assert_eq!(body["error"], "not_found");
    uaa.stop().await;
}

async fn password_grant_issues_verifiable_user_tokens(db: TestDb) {
    let uaa = TestUaa::start(&db).await;
    // Exactly what the cf CLI sends: Basic base64("cf:").
    let response = uaa
        .http
        .post(uaa.url("/oauth/token"))
        .header("Authorization", "Basic Y2Y6")
        .header("Content-Type", "application/x-www-form-urlencoded")
        .body("grant_type=password&username=alice&password=alice-secret")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status().as_u16(), 200);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["token_type"], "bearer");
    assert!(body["refresh_token"]
        .as_str()
        .is_some_and(|token| !token.is_empty()));
    assert!(body["expires_in"].as_i64().unwrap() > 1000);
    let token = body["access_token"].as_str().unwrap();
    let claims = uaa.verify(token).await;
    assert_eq!(claims["jti"], body["jti"]);
    assert_eq!(claims["user_name"], "alice");
    assert_eq!(claims["origin"], "uaa");
    assert!(claims["user_id"].is_string());
    assert_eq!(claims["sub"], claims["user_id"]);
    assert_eq!(claims["client_id"], "cf");
    assert_eq!(claims["cid"], "cf");
    assert_eq!(claims["azp"], "cf");
    assert_eq!(claims["grant_type"], "password");
    assert_eq!(claims["zid"], "uaa");
    assert_eq!(claims["revocable"], true);
    assert_eq!(claims["email"], "alice");
    assert!(claims["rev_sig"].is_string());
    assert!(claims["auth_time"].is_number());
    assert!(claims["exp"].as_i64().unwrap() > claims["iat"].as_i64().unwrap());
    // alice has the default groups only: the intersection with the cf client's scopes.
    assert_eq!(
        scopes(&claims),
        [
            "cloud_controller.read",
            "cloud_controller.write",
            "openid",
            "password.write",
            "uaa.user"
        ]
    );
    let scope_text: Vec<&str> = body["scope"].as_str().unwrap().split(' ').collect();
    assert_eq!(scope_text.len(), 5);
    let audience: Vec<&str> = claims["aud"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a.as_str().unwrap())
        .collect();
    for resource in ["cloud_controller", "openid", "password", "uaa", "cf"] {
        assert!(
            audience.contains(&resource),
            "{audience:?} lacks {resource}"
        );
    }
    let mut deduplicated = audience.clone();
    deduplicated.sort();
    deduplicated.dedup();
    assert_eq!(deduplicated.len(), audience.len());

    // Admin gets its extra groups; client credentials in the form body work for password grants.
    let (status, body) = uaa
        .token_request(
            None,
            &[
                ("grant_type", "password"),
                ("username", "ADMIN"),
                ("password", ADMIN_PASSWORD),
                ("client_id", "cf"),
            ],
        )
        .await;
    assert_eq!(status, 200, "{body}");
    let claims = uaa.verify(body["access_token"].as_str().unwrap()).await;
    assert_eq!(claims["user_name"], "admin");
    for scope in [
        "cloud_controller.admin",
        "scim.read",
        "scim.write",
        "uaa.admin",
    ] {
        assert!(scopes(&claims).contains(&scope.to_owned()), "{claims}");
    }
    // A scope parameter narrows the grant.
    let (status, body) = uaa
        .token_request(
            Some(("cf", "")),
            &[
                ("grant_type", "password"),
                ("username", "alice"),
                ("password", ALICE_PASSWORD),
                ("scope", "openid"),
            ],
        )
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["scope"], "openid");
    uaa.stop().await;
}

async fn token_errors_use_uaa_statuses(db: TestDb) {
    let uaa = TestUaa::start(&db).await;
    // Basic credentials, form, expected status, expected error.
    type Case<'a> = (
        Option<(&'a str, &'a str)>,
        Vec<(&'a str, &'a str)>,
        u16,
        &'a str,
    );
    let cases: Vec<Case<'_>> = vec![
        (
            Some(("cf", "")),
            vec![
                ("grant_type", "password"),
                ("username", "alice"),
                ("password", "wrong"),
            ],
            401,
            "unauthorized",
        ),
        (
            Some(("cf", "")),
            vec![
                ("grant_type", "password"),
                ("username", "nobody"),
                ("password", "x"),
            ],
            401,
            "unauthorized",
        ),
        (
            Some(("cf", "")),
            vec![("grant_type", "password"), ("username", "alice")],
            401,
            "unauthorized",
        ),
        (
            Some(("cf", "nonempty")),
            vec![
                ("grant_type", "password"),
                ("username", "alice"),
                ("password", ALICE_PASSWORD),
            ],
            401,
            "invalid_client",
        ),
        (
            Some(("nope", "")),
            vec![
                ("grant_type", "password"),
                ("username", "alice"),
                ("password", ALICE_PASSWORD),
            ],
            401,
            "invalid_client",
        ),
        (
            Some(("cf", "")),
            vec![("grant_type", "client_credentials")],
            401,
            "invalid_client",
        ),
        (
            Some(("admin-client", ADMIN_CLIENT_SECRET)),
            vec![
                ("grant_type", "password"),
                ("username", "alice"),
                ("password", ALICE_PASSWORD),
            ],
            401,
            "invalid_client",
        ),
        (
            Some(("cf", "")),
            vec![("grant_type", "implicit_magic")],
            400,
            "unsupported_grant_type",
        ),
        (
            Some(("cf", "")),
            vec![("username", "alice")],
            400,
            "invalid_request",
        ),
        (
            Some(("cf", "")),
            vec![("grant_type", "refresh_token")],
            400,
            "invalid_request",
        ),
        (
            Some(("cf", "")),
            vec![
                ("grant_type", "refresh_token"),
                ("refresh_token", "made-up"),
            ],
            401,
            "invalid_token",
        ),
        (
            None,
            vec![
                ("grant_type", "client_credentials"),
                ("client_id", "admin-client"),
                ("client_secret", "wrong"),
            ],
            401,
            "invalid_client",
        ),
        (
            None,
            vec![("grant_type", "client_credentials")],
            401,
            "invalid_client",
        ),
        (
            Some(("cf", "")),
            vec![
                ("grant_type", "password"),
                ("username", "alice"),
                ("password", ALICE_PASSWORD),
                ("scope", "uaa.admin"),
            ],
            400,
            "invalid_scope",
        ),
    ];
    for (basic, form, expected_status, expected_error) in cases {
        let (status, body) = uaa.token_request(basic, &form).await;
        assert_eq!(
            (status, body["error"].as_str()),
            (expected_status, Some(expected_error)),
            "{basic:?} {form:?}: {body}"
        );
        assert!(body["error_description"].is_string(), "{body}");
    }
    let (_, body) = uaa
        .token_request(
            Some(("cf", "")),
            &[
                ("grant_type", "password"),
                ("username", "alice"),
                ("password", "wrong"),
            ],
        )
        .await;
    assert_eq!(body["error_description"], "Bad credentials");
    // Not a form at all, and a non-UTF-8 Basic header: still clean 4xx answers.
    let response = uaa
        .http
        .post(uaa.url("/oauth/token"))
        .header("Authorization", "Basic !!!")
        .body("grant_type=password&username=alice&password=x")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status().as_u16(), 401);
    uaa.stop().await;
}

async fn refresh_tokens_rotate(db: TestDb) {
    let uaa = TestUaa::start(&db).await;
    let first = uaa.password_token("alice", ALICE_PASSWORD).await;
    let first_refresh = first["refresh_token"].as_str().unwrap().to_owned();
    let (status, second) = uaa
        .token_request(
            Some(("cf", "")),
            &[
                ("grant_type", "refresh_token"),
                ("refresh_token", &first_refresh),
            ],
        )
        .await;
    assert_eq!(status, 200, "{second}");
    assert_eq!(second["token_type"], "bearer");
    let second_refresh = second["refresh_token"].as_str().unwrap().to_owned();
    assert_ne!(second_refresh, first_refresh);
    let claims = uaa.verify(second["access_token"].as_str().unwrap()).await;
    assert_eq!(claims["grant_type"], "refresh_token");
    assert_eq!(claims["user_name"], "alice");
    assert_eq!(
        claims["auth_time"],
        uaa.verify(first["access_token"].as_str().unwrap()).await["auth_time"]
    );
    // The used refresh token is gone.
    let (status, body) = uaa
        .token_request(
            Some(("cf", "")),
            &[
                ("grant_type", "refresh_token"),
                ("refresh_token", &first_refresh),
            ],
        )
        .await;
    assert_eq!(
        (status, body["error"].as_str()),
        (401, Some("invalid_token")),
        "{body}"
    );
    // The new one works once, with client credentials in the form body.
    let (status, third) = uaa
        .token_request(
            None,
            &[
                ("grant_type", "refresh_token"),
                ("refresh_token", &second_refresh),
                ("client_id", "cf"),
                ("client_secret", ""),
            ],
        )
        .await;
    assert_eq!(status, 200, "{third}");
    uaa.stop().await;
}

async fn client_credentials_tokens(db: TestDb) {
    let uaa = TestUaa::start(&db).await;
    for basic in [false, true] {
        let (status, body) = if basic {
            uaa.token_request(
                Some(("admin-client", ADMIN_CLIENT_SECRET)),
                &[("grant_type", "client_credentials")],
            )
            .await
        } else {
            uaa.token_request(
                None,
                &[
                    ("grant_type", "client_credentials"),
                    ("client_id", "admin-client"),
                    ("client_secret", ADMIN_CLIENT_SECRET),
                ],
            )
            .await
        };
        assert_eq!(status, 200, "{body}");
        assert_eq!(body["token_type"], "bearer");
        assert!(body.get("refresh_token").is_none(), "{body}");
        assert_eq!(body["expires_in"], 43200);
        let claims = uaa.verify(body["access_token"].as_str().unwrap()).await;
        assert_eq!(claims["sub"], "admin-client");
        assert_eq!(claims["client_id"], "admin-client");
        assert_eq!(claims["grant_type"], "client_credentials");
        for absent in ["user_name", "user_id", "origin", "email"] {
            assert!(claims.get(absent).is_none(), "{absent} in {claims}");
        }
        assert_eq!(
            scopes(&claims),
            [
                "cloud_controller.admin",
                "password.write",
                "scim.read",
                "scim.write"
            ]
        );
    }
    // Repeated requests (served from the verified-secret cache) keep working, and a wrong
    // secret is still refused after a right one was cached.
    for _ in 0..20 {
        uaa.client_token("cloud_controller_username_lookup", LOOKUP_SECRET)
            .await;
    }
    let (status, _) = uaa
        .token_request(
            None,
            &[
                ("grant_type", "client_credentials"),
                ("client_id", "cloud_controller_username_lookup"),
                ("client_secret", "x"),
            ],
        )
        .await;
    assert_eq!(status, 401);
    uaa.stop().await;
}

async fn create_user(uaa: &TestUaa, admin: &str, name: &str, password: &str) -> String {
    let (status, _, body) = uaa
        .call(
            Method::POST,
            "/Users",
            Some(admin),
            Some(json!({"userName": name, "password": password, "origin": "",
                        "name": {"familyName": name, "givenName": name}, "emails": [{"value": name, "primary": true}]})),
        )
        .await;
    assert_eq!(status, 201, "{body}");
    body["id"].as_str().unwrap().to_owned()
}

async fn password_change_and_deletion_revoke_tokens(db: TestDb) {
    let uaa = TestUaa::start(&db).await;
    let admin = uaa.admin_token().await;
    let user_id = create_user(&uaa, &admin, "bob", "bob-secret").await;
    let login = uaa.password_token("bob", "bob-secret").await;
    let refresh = login["refresh_token"].as_str().unwrap().to_owned();
    let access = login["access_token"].as_str().unwrap().to_owned();

    // Self-service change with the old password.
    let (status, _, body) = uaa
        .call(
            Method::PUT,
            &format!("/Users/{user_id}/password"),
            Some(&access),
            Some(json!({"oldPassword": "bob-secret", "password": "bob-new"})),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    let (status, body) = uaa
        .token_request(
            Some(("cf", "")),
            &[("grant_type", "refresh_token"), ("refresh_token", &refresh)],
        )
        .await;
    assert_eq!(
        (status, body["error"].as_str()),
        (401, Some("invalid_token")),
        "{body}"
    );
    let check = uaa
        .http
        .post(uaa.url("/check_token"))
        .basic_auth("admin-client", Some(ADMIN_CLIENT_SECRET))
        .form(&[("token", access.as_str())])
        .send()
        .await
        .unwrap();
    assert_eq!(
        check.status().as_u16(),
        400,
        "a token from before the password change is revoked"
    );
    let (status, _) = uaa
        .token_request(
            Some(("cf", "")),
            &[
                ("grant_type", "password"),
                ("username", "bob"),
                ("password", "bob-secret"),
            ],
        )
        .await;
    assert_eq!(status, 401);

    // Deleting the user revokes its new refresh token.
    let login = uaa.password_token("bob", "bob-new").await;
    let refresh = login["refresh_token"].as_str().unwrap().to_owned();
    let (status, _, _) = uaa
        .call(
            Method::DELETE,
            &format!("/Users/{user_id}"),
            Some(&admin),
            None,
        )
        .await;
    assert_eq!(status, 200);
    let (status, body) = uaa
        .token_request(
            Some(("cf", "")),
            &[("grant_type", "refresh_token"), ("refresh_token", &refresh)],
        )
        .await;
    assert_eq!(
        (status, body["error"].as_str()),
        (401, Some("invalid_token")),
        "{body}"
    );
    uaa.stop().await;
}

async fn logout_revokes_refresh_token(db: TestDb) {
    let uaa = TestUaa::start(&db).await;
    let login = uaa.password_token("alice", ALICE_PASSWORD).await;
    let access = login["access_token"].as_str().unwrap();
    let jti = login["jti"].as_str().unwrap();
    let (status, _, _) = uaa
        .call(
            Method::DELETE,
            &format!("/oauth/token/revoke/{jti}"),
            Some(access),
            None,
        )
        .await;
    assert_eq!(status, 200);
    let (status, _) = uaa
        .token_request(
            Some(("cf", "")),
            &[
                ("grant_type", "refresh_token"),
                ("refresh_token", login["refresh_token"].as_str().unwrap()),
            ],
        )
        .await;
    assert_eq!(status, 401);
    // Unknown jti: tolerated for admins.
    let admin = uaa.password_token("admin", ADMIN_PASSWORD).await;
    let (status, _, _) = uaa
        .call(
            Method::DELETE,
            "/oauth/token/revoke/unknown-jti",
            admin["access_token"].as_str(),
            None,
        )
        .await;
    assert_eq!(status, 200);
    let (status, _, body) = uaa
        .call(Method::DELETE, "/oauth/token/revoke/x", None, None)
        .await;
    assert_eq!(
        (status, body["error"].as_str()),
        (401, Some("invalid_token"))
    );
    uaa.stop().await;
}

async fn check_token_and_userinfo(db: TestDb) {
    let uaa = TestUaa::start(&db).await;
    let login = uaa.password_token("alice", ALICE_PASSWORD).await;
    let access = login["access_token"].as_str().unwrap();
    let check = |token: String, auth: Option<(&'static str, &'static str)>| {
        let mut request = uaa
            .http
            .post(uaa.url("/check_token"))
            .form(&[("token", token)]);
        if let Some((id, secret)) = auth {
            request = request.basic_auth(id, Some(secret));
        }
        request.send()
    };
    let response = check(
        access.to_owned(),
        Some(("admin-client", ADMIN_CLIENT_SECRET)),
    )
    .await
    .unwrap();
    assert_eq!(response.status().as_u16(), 200);
    let claims: Value = response.json().await.unwrap();
    assert_eq!(claims["user_name"], "alice");
    let response = check(
        "not-a-token".to_owned(),
        Some(("admin-client", ADMIN_CLIENT_SECRET)),
    )
    .await
    .unwrap();
    assert_eq!(response.status().as_u16(), 400);
    assert_eq!(
        response.json::<Value>().await.unwrap()["error"],
        "invalid_token"
    );
    let response = check(access.to_owned(), None).await.unwrap();
    assert_eq!(response.status().as_u16(), 401);

    let (status, _, info) = uaa.call(Method::GET, "/userinfo", Some(access), None).await;
    assert_eq!(status, 200, "{info}");
    assert_eq!(info["user_name"], "alice");
    assert_eq!(info["user_id"], info["sub"]);
    assert_eq!(info["email"], "alice");
    for field in [
        "given_name",
        "family_name",
        "email_verified",
        "name",
        "previous_logon_time",
    ] {
        assert!(info.get(field).is_some(), "{field} missing in {info}");
    }
    let client = uaa.admin_token().await;
    let (status, _, body) = uaa
        .call(Method::GET, "/userinfo", Some(&client), None)
        .await;
    assert_eq!(
        (status, body["error"].as_str()),
        (403, Some("insufficient_scope"))
    );
    let (status, _, body) = uaa
        .call(Method::GET, "/userinfo", Some("garbage.token.here"), None)
        .await;
    assert_eq!(
        (status, body["error"].as_str()),
        (401, Some("invalid_token"))
    );
    uaa.stop().await;
}
