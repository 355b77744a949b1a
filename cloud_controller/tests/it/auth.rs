//! Token verification and scope enforcement.

use serde_json::json;

use crate::support::{databases, Harness, OTHER_KEY_PEM};

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
