//! Token endpoint: grants, claims, rotating refresh tokens, revocation, check_token, userinfo,
//! discovery, health and metrics.

use std::time::Duration;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use reqwest::Method;
use serde_json::{json, Value};

use crate::support::{
    eventually, scopes, TestDb, TestUaa, ADMIN_CLIENT_SECRET, ADMIN_PASSWORD, ALICE_PASSWORD,
    LOOKUP_SECRET,
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
    token_lifetimes_come_from_config,
    refresh_token_misuse_changes_nothing,
    forged_and_tampered_tokens_are_refused,
    deleting_a_user_revokes_its_access_tokens,
    changing_a_client_secret_revokes_its_tokens,
    platform_scopes_come_from_group_membership,
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
    let (status, body) = uaa.check_token(&[("token", access.as_str())]).await;
    assert_eq!(
        (status, body["error"].as_str()),
        (400, Some("invalid_token")),
        "a token from before the password change is revoked: {body}"
    );
    // ...also where it is used directly.
    let (status, _, body) = uaa
        .call(
            Method::GET,
            &format!("/Users/{user_id}"),
            Some(&access),
            None,
        )
        .await;
    assert_eq!(
        (status, body["error"].as_str()),
        (401, Some("invalid_token")),
        "{body}"
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
    // The access token itself is dead too (it says `revocable: true`), everywhere.
    let (status, _, body) = uaa.call(Method::GET, "/userinfo", Some(access), None).await;
    assert_eq!(
        (status, &body),
        (
            401,
            &json!({"error": "invalid_token", "error_description": "Token has been revoked"})
        )
    );
    let (status, body) = uaa.check_token(&[("token", access)]).await;
    assert_eq!(
        (status, body["error"].as_str()),
        (400, Some("invalid_token"))
    );
    // Other tokens of the same user are not affected.
    let other = uaa.password_token("alice", ALICE_PASSWORD).await;
    let (status, _, _) = uaa
        .call(
            Method::GET,
            "/userinfo",
            other["access_token"].as_str(),
            None,
        )
        .await;
    assert_eq!(status, 200);
    // An admin may revoke someone else's token; alice may not revoke the admin's.
    let admin = uaa.password_token("admin", ADMIN_PASSWORD).await;
    let (status, _, _) = uaa
        .call(
            Method::DELETE,
            &format!("/oauth/token/revoke/{}", other["jti"].as_str().unwrap()),
            admin["access_token"].as_str(),
            None,
        )
        .await;
    assert_eq!(status, 200);
    let (status, _, _) = uaa
        .call(
            Method::GET,
            "/userinfo",
            other["access_token"].as_str(),
            None,
        )
        .await;
    assert_eq!(status, 401);
    let third = uaa.password_token("alice", ALICE_PASSWORD).await;
    let (status, _, body) = uaa
        .call(
            Method::DELETE,
            &format!("/oauth/token/revoke/{}", admin["jti"].as_str().unwrap()),
            third["access_token"].as_str(),
            None,
        )
        .await;
    assert_eq!(
        (status, body["error"].as_str()),
        (403, Some("insufficient_scope"))
    );
    let (status, _, _) = uaa
        .call(
            Method::GET,
            "/userinfo",
            admin["access_token"].as_str(),
            None,
        )
        .await;
    assert_eq!(status, 200);
    // Unknown jti: tolerated for admins.
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
        (401, Some("unauthorized"))
    );
    uaa.stop().await;
}

async fn check_token_and_userinfo(db: TestDb) {
    let uaa = TestUaa::start(&db).await;
    let login = uaa.password_token("alice", ALICE_PASSWORD).await;
    let access = login["access_token"].as_str().unwrap();
    let (status, claims) = uaa.check_token(&[("token", access)]).await;
    assert_eq!(status, 200, "{claims}");
    assert_eq!(claims["user_name"], "alice");
    assert_eq!(claims["jti"], login["jti"]);
    for field in [
        "sub",
        "user_id",
        "origin",
        "client_id",
        "cid",
        "azp",
        "scope",
        "aud",
        "iss",
        "zid",
        "exp",
        "iat",
        "jti",
        "rev_sig",
        "grant_type",
        "auth_time",
        "revocable",
    ] {
        assert!(claims.get(field).is_some(), "{field} missing in {claims}");
    }
    let (status, claims) = uaa
        .check_token(&[("token", access), ("scopes", "openid,uaa.user")])
        .await;
    assert_eq!(status, 200, "{claims}");

    // Token problems are 400s for the (authenticated) resource server.
    let client_token = uaa.admin_token().await;
    // Form, expected status, error and description.
    type Case<'a> = (Vec<(&'a str, &'a str)>, u16, &'a str, &'a str);
    let cases: Vec<Case<'_>> = vec![
        (
            vec![("token", "not-a-token")],
            400,
            "invalid_token",
            "Invalid token (could not decode): token is not a JWT",
        ),
        (vec![], 400, "invalid_token", "Token parameter must be set"),
        (
            vec![("token", "")],
            400,
            "invalid_token",
            "Token parameter must be set",
        ),
        (
            vec![
                ("token", access),
                ("scopes", "openid,scim.write,cloud_controller.admin"),
            ],
            400,
            "invalid_scope",
            "Some requested scopes are missing: scim.write,cloud_controller.admin",
        ),
        (
            vec![("token", access), ("token", access)],
            400,
            "invalid_request",
            "Parameter token must not be repeated",
        ),
    ];
    for (form, expected_status, expected_error, expected_description) in cases {
        let (status, body) = uaa.check_token(&form).await;
        assert_eq!(
            (status, &body),
            (
                expected_status,
                &json!({"error": expected_error, "error_description": expected_description})
            ),
            "{form:?}"
        );
    }
    // Client tokens check fine too.
    let (status, claims) = uaa.check_token(&[("token", &client_token)]).await;
    assert_eq!(status, 200, "{claims}");
    assert_eq!(claims["client_id"], "admin-client");

    // Only clients with `uaa.resource` may ask, and only with right credentials.
    let check_as = |auth: Option<(&'static str, &'static str)>| {
        let mut request = uaa
            .http
            .post(uaa.url("/check_token"))
            .form(&[("token", access)]);
        if let Some((id, secret)) = auth {
            request = request.basic_auth(id, Some(secret));
        }
        async move {
            let response = request.send().await.unwrap();
            let status = response.status().as_u16();
            (status, response.json::<Value>().await.unwrap())
        }
    };
    let (status, body) = check_as(Some(("admin-client", ADMIN_CLIENT_SECRET))).await;
    assert_eq!(
        (status, body),
        (
            403,
            json!({"error": "access_denied", "error_description": "Access is denied"})
        )
    );
    let (status, body) = check_as(Some(("resource-server", "wrong"))).await;
    assert_eq!(
        (status, body["error"].as_str()),
        (401, Some("unauthorized"))
    );
    let (status, body) = check_as(None).await;
    assert_eq!(
        (status, body["error"].as_str()),
        (401, Some("unauthorized"))
    );

    // `/userinfo`: alice has no names, so those fields are absent, as in UAA.
    let (status, _, info) = uaa.call(Method::GET, "/userinfo", Some(access), None).await;
    assert_eq!(status, 200, "{info}");
    let alice_id = info["user_id"].as_str().unwrap().to_owned();
    assert_eq!(
        info,
        json!({
            "user_id": alice_id,
            "sub": alice_id,
            "user_name": "alice",
            "email": "alice",
            "email_verified": true,
            "name": "",
            "previous_logon_time": null,
        })
    );
    // A user with names, logged in twice: previous_logon_time is the first login.
    let admin = uaa.admin_token().await;
    let frank_id = create_user(&uaa, &admin, "frank", "frank-pw").await;
    let first_login = crate::support::now_millis();
    uaa.password_token("frank", "frank-pw").await;
    let frank = uaa.password_token("frank", "frank-pw").await;
    let (status, _, info) = uaa
        .call(
            Method::GET,
            "/userinfo",
            frank["access_token"].as_str(),
            None,
        )
        .await;
    assert_eq!(status, 200, "{info}");
    assert_eq!(info["user_id"], frank_id.as_str());
    assert_eq!(info["given_name"], "frank");
    assert_eq!(info["family_name"], "frank");
    assert_eq!(info["name"], "frank frank");
    assert!(info.get("phone_number").is_none(), "{info}");
    let previous = info["previous_logon_time"]
        .as_i64()
        .expect("previous_logon_time");
    assert!(previous >= first_login - 1000, "{previous} < {first_login}");

    let (status, _, body) = uaa
        .call(Method::GET, "/userinfo", Some(&client_token), None)
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

/// A client like `cf` (password and refresh grants, empty secret) under another id.
fn cf_like_client(client_id: &str, refresh_validity: Option<u64>) -> uaa::ClientConfig {
    uaa::ClientConfig {
        client_id: client_id.to_owned(),
        secret: String::new(),
        authorized_grant_types: vec!["password".to_owned(), "refresh_token".to_owned()],
        scope: vec!["openid".to_owned(), "uaa.user".to_owned()],
        authorities: vec![],
        access_token_validity_secs: None,
        refresh_token_validity_secs: refresh_validity,
    }
}

async fn refresh(uaa: &TestUaa, client_id: &str, refresh_token: &str) -> (u16, Value) {
    uaa.token_request(
        Some((client_id, "")),
        &[
            ("grant_type", "refresh_token"),
            ("refresh_token", refresh_token),
        ],
    )
    .await
}

async fn login_with(uaa: &TestUaa, client_id: &str) -> Value {
    let (status, body) = uaa
        .token_request(
            Some((client_id, "")),
            &[
                ("grant_type", "password"),
                ("username", "alice"),
                ("password", ALICE_PASSWORD),
            ],
        )
        .await;
    assert_eq!(status, 200, "{body}");
    body
}

async fn token_lifetimes_come_from_config(db: TestDb) {
    let uaa = TestUaa::start_with(&db, |config| {
        config.access_token_validity_secs = 2;
        config.refresh_token_validity_secs = 1;
        config
            .clients
            .push(cf_like_client("long-refresh", Some(3600)));
    })
    .await;
    let login = uaa.password_token("alice", ALICE_PASSWORD).await;
    assert_eq!(login["expires_in"], 2, "{login}");
    let access = login["access_token"].as_str().unwrap().to_owned();
    let claims = uaa.verify(&access).await;
    assert_eq!(
        claims["exp"].as_i64().unwrap() - claims["iat"].as_i64().unwrap(),
        2
    );
    let long_refresh = login_with(&uaa, "long-refresh").await["refresh_token"]
        .as_str()
        .unwrap()
        .to_owned();
    // A per-client access validity wins over the global one.
    let (status, body) = uaa
        .token_request(
            Some(("admin-client", ADMIN_CLIENT_SECRET)),
            &[("grant_type", "client_credentials")],
        )
        .await;
    assert_eq!((status, body["expires_in"].as_i64()), (200, Some(43200)));

    // Expired access tokens are refused everywhere.
    let body = eventually(
        Duration::from_secs(10),
        "the access token to expire",
        || async {
            let (status, _, body) = uaa
                .call(Method::GET, "/userinfo", Some(&access), None)
                .await;
            (status == 401).then_some(body)
        },
    )
    .await;
    assert_eq!(
        body,
        json!({"error": "invalid_token", "error_description": "Invalid token: the token has expired"})
    );
    let (status, body) = uaa.check_token(&[("token", &access)]).await;
    assert_eq!(
        (status, body["error"].as_str()),
        (400, Some("invalid_token")),
        "{body}"
    );
    // The refresh token (1 s) expired before the access token (2 s); the long-lived one of the
    // client with its own refresh validity still works.
    let (status, body) = refresh(&uaa, "cf", login["refresh_token"].as_str().unwrap()).await;
    assert_eq!(
        (status, &body),
        (
            401,
            &json!({"error": "invalid_token", "error_description": "Invalid refresh token (expired)"})
        )
    );
    let (status, body) = refresh(&uaa, "long-refresh", &long_refresh).await;
    assert_eq!(status, 200, "{body}");
    uaa.stop().await;
}

async fn refresh_token_misuse_changes_nothing(db: TestDb) {
    let uaa = TestUaa::start_with(&db, |config| {
        config.clients.push(cf_like_client("other-cli", None));
    })
    .await;
    let login = uaa.password_token("alice", ALICE_PASSWORD).await;
    let refresh_token = login["refresh_token"].as_str().unwrap().to_owned();
    // Another client may not use it (UAA's 400 invalid_grant)...
    let (status, body) = refresh(&uaa, "other-cli", &refresh_token).await;
    assert_eq!(
        (status, &body),
        (
            400,
            &json!({"error": "invalid_grant", "error_description": "Wrong client for this refresh token: cf"})
        )
    );
    // ...nor claim another client id in the form than it authenticated as...
    let (status, body) = uaa
        .token_request(
            Some(("cf", "")),
            &[
                ("grant_type", "refresh_token"),
                ("refresh_token", &refresh_token),
                ("client_id", "other-cli"),
            ],
        )
        .await;
    assert_eq!(
        (status, body["error"].as_str()),
        (401, Some("invalid_client")),
        "{body}"
    );
    // ...and a repeated parameter is refused outright.
    let response = uaa
        .http
        .post(uaa.url("/oauth/token"))
        .header("Authorization", "Basic Y2Y6")
        .header("Content-Type", "application/x-www-form-urlencoded")
        .body(format!(
            "grant_type=refresh_token&refresh_token={refresh_token}&refresh_token=x"
        ))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status().as_u16(), 400);
    assert_eq!(
        response.json::<Value>().await.unwrap(),
        json!({"error": "invalid_request", "error_description": "Parameter refresh_token must not be repeated"})
    );
    // None of that used the token up: its own client rotates it once.
    let (status, rotated) = refresh(&uaa, "cf", &refresh_token).await;
    assert_eq!(status, 200, "{rotated}");
    let (status, body) = refresh(&uaa, "cf", &refresh_token).await;
    assert_eq!(
        (status, body["error"].as_str()),
        (401, Some("invalid_token")),
        "a rotated refresh token is spent: {body}"
    );
    let (status, body) = refresh(&uaa, "cf", rotated["refresh_token"].as_str().unwrap()).await;
    assert_eq!(status, 200, "{body}");
    uaa.stop().await;
}

/// `header.payload.signature` from JSON parts, signed by `sign` over `header.payload`.
fn compose(header: &Value, claims: &Value, sign: impl Fn(&[u8]) -> Vec<u8>) -> String {
    let head = URL_SAFE_NO_PAD.encode(header.to_string());
    let body = URL_SAFE_NO_PAD.encode(claims.to_string());
    let signature = URL_SAFE_NO_PAD.encode(sign(format!("{head}.{body}").as_bytes()));
    format!("{head}.{body}.{signature}")
}

async fn forged_and_tampered_tokens_are_refused(db: TestDb) {
    use rsa::pkcs8::{EncodePrivateKey, LineEnding};

    let uaa = TestUaa::start(&db).await;
    let alice = uaa.password_token("alice", ALICE_PASSWORD).await["access_token"]
        .as_str()
        .unwrap()
        .to_owned();
    let claims = uaa.verify(&alice).await;
    let kid = jsonwebtoken::decode_header(&alice).unwrap().kid.unwrap();
    let signature = alice.rsplit('.').next().unwrap().to_owned();
    let mut elevated = claims.clone();
    elevated["scope"] = json!(["scim.read", "scim.write", "uaa.admin"]);

    let foreign_key = rsa::RsaPrivateKey::new(&mut rand::rngs::OsRng, 2048).unwrap();
    let foreign_pem = foreign_key.to_pkcs8_pem(LineEnding::LF).unwrap();
    let foreign = jsonwebtoken::EncodingKey::from_rsa_pem(foreign_pem.as_bytes()).unwrap();
    let mut header = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::RS256);
    header.kid = Some(kid.clone());
    let (_, _, public_key) = uaa.call(Method::GET, "/token_key", None, None).await;
    let public_pem = public_key["value"].as_str().unwrap().to_owned();
    let mut no_kid = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::RS256);
    no_kid.kid = None;

    let forged: Vec<(&str, String)> = vec![
        (
            "payload changed, signature kept",
            format!(
                "{}.{}.{signature}",
                alice.split('.').next().unwrap(),
                URL_SAFE_NO_PAD.encode(elevated.to_string())
            ),
        ),
        (
            "signed by another key under our kid",
            jsonwebtoken::encode(&header, &elevated, &foreign).unwrap(),
        ),
        (
            "no kid",
            jsonwebtoken::encode(&no_kid, &elevated, &foreign).unwrap(),
        ),
        (
            "alg none",
            compose(
                &json!({"alg": "none", "kid": kid, "typ": "JWT"}),
                &elevated,
                |_| Vec::new(),
            ),
        ),
        (
            "HS256 keyed with our public key",
            jsonwebtoken::encode(
                &jsonwebtoken::Header {
                    kid: Some(kid.clone()),
                    ..jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256)
                },
                &elevated,
                &jsonwebtoken::EncodingKey::from_secret(public_pem.as_bytes()),
            )
            .unwrap(),
        ),
        (
            "expired, signed by another key",
            jsonwebtoken::encode(
                &header,
                &json!({"exp": 1, "iss": claims["iss"], "scope": ["uaa.admin"]}),
                &foreign,
            )
            .unwrap(),
        ),
        (
            "signature cut off",
            alice.rsplit_once('.').unwrap().0.to_owned(),
        ),
    ];
    for (what, token) in &forged {
        let (status, _, body) = uaa.call(Method::GET, "/Users", Some(token), None).await;
        assert_eq!(
            (status, body["error"].as_str()),
            (401, Some("invalid_token")),
            "{what}: {body}"
        );
        let (status, body) = uaa.check_token(&[("token", token)]).await;
        assert_eq!(
            (status, body["error"].as_str()),
            (400, Some("invalid_token")),
            "{what}: {body}"
        );
    }
    // The genuine token still works.
    let (status, _, _) = uaa.call(Method::GET, "/userinfo", Some(&alice), None).await;
    assert_eq!(status, 200);
    uaa.stop().await;
}

async fn deleting_a_user_revokes_its_access_tokens(db: TestDb) {
    let uaa = TestUaa::start(&db).await;
    let admin = uaa.admin_token().await;
    let user_id = create_user(&uaa, &admin, "gina", "gina-pw").await;
    let login = uaa.password_token("gina", "gina-pw").await;
    let access = login["access_token"].as_str().unwrap().to_owned();
    let (status, _, _) = uaa
        .call(Method::GET, "/userinfo", Some(&access), None)
        .await;
    assert_eq!(status, 200);
    let (status, _, _) = uaa
        .call(
            Method::DELETE,
            &format!("/Users/{user_id}"),
            Some(&admin),
            None,
        )
        .await;
    assert_eq!(status, 200);
    for path in ["/userinfo".to_owned(), format!("/Users/{user_id}")] {
        let (status, _, body) = uaa.call(Method::GET, &path, Some(&access), None).await;
        assert_eq!(
            (status, &body),
            (
                401,
                &json!({"error": "invalid_token", "error_description": "Token has been revoked"})
            ),
            "{path}"
        );
    }
    let (status, body) = uaa.check_token(&[("token", &access)]).await;
    assert_eq!(
        (status, body["error_description"].as_str()),
        (400, Some("Token has been revoked"))
    );
    // A user of the same name created later does not revive the old token.
    create_user(&uaa, &admin, "gina", "gina-pw").await;
    let (status, _, _) = uaa
        .call(Method::GET, "/userinfo", Some(&access), None)
        .await;
    assert_eq!(status, 401);
    uaa.stop().await;
}

async fn changing_a_client_secret_revokes_its_tokens(db: TestDb) {
    // Each start listens on a new port; a fixed issuer keeps the tokens' `iss` valid throughout.
    let fixed_issuer = |config: &mut uaa::UaaConfig| {
        config.issuer_url = "http://uaa.kiln.test".to_owned();
    };
    let uaa = TestUaa::start_with(&db, fixed_issuer).await;
    let client_token = uaa.admin_token().await;
    let user_token = uaa.password_token("alice", ALICE_PASSWORD).await["access_token"]
        .as_str()
        .unwrap()
        .to_owned();
    uaa.stop().await;

    // The same configuration again: every token stays valid across the restart.
    let uaa = TestUaa::start_with(&db, fixed_issuer).await;
    let (status, _, body) = uaa
        .call(Method::GET, "/Users", Some(&client_token), None)
        .await;
    assert_eq!(status, 200, "{body}");
    let (status, _, body) = uaa
        .call(Method::GET, "/userinfo", Some(&user_token), None)
        .await;
    assert_eq!(status, 200, "{body}");
    uaa.stop().await;

    // A new secret for admin-client revokes what it was issued under the old one.
    let uaa = TestUaa::start_with(&db, |config| {
        fixed_issuer(config);
        config.clients[1].secret = "rotated-secret".to_owned();
    })
    .await;
    let (status, _, body) = uaa
        .call(Method::GET, "/Users", Some(&client_token), None)
        .await;
    assert_eq!(
        (status, &body),
        (
            401,
            &json!({"error": "invalid_token", "error_description": "Token has been revoked"})
        )
    );
    let (status, body) = uaa.check_token(&[("token", &client_token)]).await;
    assert_eq!(
        (status, body["error"].as_str()),
        (400, Some("invalid_token"))
    );
    let fresh = uaa.client_token("admin-client", "rotated-secret").await;
    let (status, _, body) = uaa.call(Method::GET, "/Users", Some(&fresh), None).await;
    assert_eq!(status, 200, "{body}");
    let (status, _, _) = uaa
        .call(Method::GET, "/userinfo", Some(&user_token), None)
        .await;
    assert_eq!(status, 200, "the cf client did not change");
    uaa.stop().await;
}

async fn platform_scopes_come_from_group_membership(db: TestDb) {
    const PLATFORM_SCOPES: [&str; 9] = [
        "cloud_controller.admin",
        "cloud_controller.read",
        "cloud_controller.write",
        "doppler.firehose",
        "openid",
        "password.write",
        "scim.read",
        "scim.write",
        "uaa.user",
    ];
    let uaa = TestUaa::start_with(&db, |config| {
        config.clients[0].scope = PLATFORM_SCOPES.iter().map(|s| (*s).to_owned()).collect();
        config.users[0].groups = vec![
            "cloud_controller.admin".to_owned(),
            "scim.read".to_owned(),
            "scim.write".to_owned(),
            "doppler.firehose".to_owned(),
        ];
    })
    .await;
    // The admin user: its configured groups plus the default ones, all of them in the token.
    let login = uaa.password_token("admin", ADMIN_PASSWORD).await;
    assert_eq!(
        scopes(&uaa.verify(login["access_token"].as_str().unwrap()).await),
        PLATFORM_SCOPES
    );
    // alice has only the default groups.
    let login = uaa.password_token("alice", ALICE_PASSWORD).await;
    assert_eq!(
        scopes(&uaa.verify(login["access_token"].as_str().unwrap()).await),
        [
            "cloud_controller.read",
            "cloud_controller.write",
            "openid",
            "password.write",
            "uaa.user"
        ]
    );
    uaa.stop().await;
}
