//! `GET /oauth/clients/:client_id`, as `cf set-org-role … --client` calls it: UAA's client JSON
//! without the secret, the scopes that may read it, and the 404 for an unknown client.

use reqwest::Method;
use serde_json::{json, Value};

use crate::support::{TestDb, TestUaa, ADMIN_PASSWORD, ALICE_PASSWORD};

crate::backend_tests!(clients_can_be_read_by_client_admins);

/// `body` with `lastModified` checked to be epoch milliseconds and then removed.
fn without_last_modified(mut body: Value) -> (Value, i64) {
    let last_modified = body["lastModified"]
        .as_i64()
        .unwrap_or_else(|| panic!("lastModified in {body}"));
    assert!(last_modified > 1_600_000_000_000, "{last_modified}");
    body.as_object_mut().unwrap().remove("lastModified");
    (body, last_modified)
}

async fn clients_can_be_read_by_client_admins(db: TestDb) {
    let add_reader = |config: &mut uaa::UaaConfig| {
        config.clients.push(uaa::ClientConfig {
            client_id: "reader".to_owned(),
            secret: "reader-secret".to_owned(),
            authorized_grant_types: vec!["client_credentials".to_owned()],
            scope: vec![],
            authorities: vec!["clients.read".to_owned()],
            access_token_validity_secs: None,
            refresh_token_validity_secs: None,
        });
    };
    let uaa = TestUaa::start_with(&db, add_reader).await;
    // The admin user's `cf` token carries uaa.admin, as after `cf login`.
    let admin = uaa.password_token("admin", ADMIN_PASSWORD).await["access_token"]
        .as_str()
        .unwrap()
        .to_owned();
    let (status, _, body) = uaa
        .call(
            Method::GET,
            "/oauth/clients/admin-client",
            Some(&admin),
            None,
        )
        .await;
    assert_eq!(status, 200, "{body}");
    let (body, last_modified) = without_last_modified(body);
    assert_eq!(
        body,
        json!({
            "client_id": "admin-client",
            "scope": ["uaa.none"],
            "resource_ids": ["none"],
            "authorized_grant_types": ["client_credentials"],
            "autoapprove": [],
            "authorities": ["cloud_controller.admin", "scim.read", "scim.write", "password.write"],
            "access_token_validity": 43200,
            "required_user_groups": [],
        })
    );

    // clients.read is enough; the client's own secret never appears.
    let reader = uaa.client_token("reader", "reader-secret").await;
    let (status, _, body) = uaa
        .call(Method::GET, "/oauth/clients/cf", Some(&reader), None)
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["client_id"], "cf");
    assert_eq!(
        body["authorized_grant_types"],
        json!(["password", "refresh_token"])
    );
    assert_eq!(body["authorities"], json!(["uaa.none"]));
    assert!(body.get("client_secret").is_none(), "{body}");
    assert!(!body.to_string().contains("secret"), "{body}");

    // Anyone else: UAA's insufficient_scope, which the cf CLI turns into its own message.
    let admin_client = uaa.admin_token().await;
    let alice = uaa.password_token("alice", ALICE_PASSWORD).await["access_token"]
        .as_str()
        .unwrap()
        .to_owned();
    for token in [&admin_client, &alice] {
        let (status, _, body) = uaa
            .call(
                Method::GET,
                "/oauth/clients/admin-client",
                Some(token),
                None,
            )
            .await;
        assert_eq!(status, 403, "{body}");
        assert_eq!(
            body,
            json!({
                "error": "insufficient_scope",
                "error_description": "Insufficient scope for this resource",
                "scope": "clients.read clients.admin uaa.admin",
            })
        );
    }
    let (status, _, body) = uaa
        .call(Method::GET, "/oauth/clients/admin-client", None, None)
        .await;
    assert_eq!(status, 401, "{body}");
    // No token at all is UAA's `unauthorized`; `invalid_token` is for a bad one.
    assert_eq!(body["error"], "unauthorized");

    // An unknown client is a 404 — the status is what the cf CLI reads as "user not found".
    let (status, _, body) = uaa
        .call(
            Method::GET,
            "/oauth/clients/no-such-client",
            Some(&admin),
            None,
        )
        .await;
    assert_eq!(status, 404, "{body}");
    assert_eq!(
        body,
        json!({"error": "not_found", "error_description": "No such client: no-such-client"})
    );
    uaa.stop().await;

    // A restart with the same configuration leaves lastModified alone.
    let uaa = TestUaa::start_with(&db, add_reader).await;
    let admin = uaa.password_token("admin", ADMIN_PASSWORD).await["access_token"]
        .as_str()
        .unwrap()
        .to_owned();
    let (status, _, body) = uaa
        .call(
            Method::GET,
            "/oauth/clients/admin-client",
            Some(&admin),
            None,
        )
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(without_last_modified(body).1, last_modified);
    uaa.stop().await;
}
