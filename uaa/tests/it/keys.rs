//! Signing keys: publication, rotation while running, and persistence across restarts.

use std::time::Duration;

use reqwest::Method;
use serde_json::{json, Value};

use crate::support::{eventually, verify_with_keys, TestDb, TestUaa, ALICE_PASSWORD};

crate::backend_tests!(key_rotation, restart_keeps_users_and_keys);

async fn token_keys(uaa: &TestUaa) -> Value {
    let (status, _, keys) = uaa.call(Method::GET, "/token_keys", None, None).await;
    assert_eq!(status, 200);
    keys
}

async fn key_rotation(db: TestDb) {
    let uaa = TestUaa::start(&db).await;
    let keys = token_keys(&uaa).await;
    let keys_list = keys["keys"].as_array().unwrap();
    assert_eq!(keys_list.len(), 1);
    let key = &keys_list[0];
    assert_eq!(
        (&key["kty"], &key["alg"], &key["use"]),
        (&json!("RSA"), &json!("RS256"), &json!("sig"))
    );
    assert!(key["value"]
        .as_str()
        .unwrap()
        .starts_with("-----BEGIN PUBLIC KEY-----"));
    let (_, _, active) = uaa.call(Method::GET, "/token_key", None, None).await;
    assert_eq!(&active, key);
    let old_kid = key["kid"].as_str().unwrap().to_owned();
    let old_token = uaa.password_token("alice", ALICE_PASSWORD).await["access_token"]
        .as_str()
        .unwrap()
        .to_owned();

    let url = db.url.clone();
    let new_kid = tokio::task::spawn_blocking(move || uaa::rotate_signing_key(&url))
        .await
        .unwrap()
        .expect("rotate");
    assert_ne!(new_kid, old_kid);
    let keys = token_keys(&uaa).await;
    let kids: Vec<&str> = keys["keys"]
        .as_array()
        .unwrap()
        .iter()
        .map(|k| k["kid"].as_str().unwrap())
        .collect();
    assert_eq!(
        kids,
        [new_kid.as_str(), old_kid.as_str()],
        "active key first"
    );
    let (_, _, active) = uaa.call(Method::GET, "/token_key", None, None).await;
    assert_eq!(active["kid"], new_kid.as_str());

    // The running server switches to the new key within its reload interval.
    let new_token = eventually(
        Duration::from_secs(15),
        "tokens signed with the new key",
        || async {
            let token = uaa.password_token("alice", ALICE_PASSWORD).await["access_token"]
                .as_str()
                .unwrap()
                .to_owned();
            let kid = jsonwebtoken::decode_header(&token).unwrap().kid.unwrap();
            (kid == new_kid).then_some(token)
        },
    )
    .await;
    uaa.verify(&new_token).await;
    // Old tokens still verify, against the published keys and the server itself.
    assert_eq!(uaa.verify(&old_token).await["user_name"], "alice");
    let (status, _, _) = uaa
        .call(Method::GET, "/userinfo", Some(&old_token), None)
        .await;
    assert_eq!(status, 200);
    uaa.stop().await;
}

async fn restart_keeps_users_and_keys(db: TestDb) {
    let uaa = TestUaa::start(&db).await;
    let admin = uaa.admin_token().await;
    let (status, _, _) = uaa
        .call(
            Method::POST,
            "/Users",
            Some(&admin),
            Some(json!({"userName": "erin", "password": "erin-pw", "emails": [{"value": "erin@example.com"}]})),
        )
        .await;
    assert_eq!(status, 201);
    let keys_before = token_keys(&uaa).await;
    let token_before = uaa.password_token("erin", "erin-pw").await;
    let issuer_before = format!("{}/oauth/token", uaa.base);
    uaa.stop().await;

    // Same database, new port; the configured users are not duplicated and clients are upserted.
    let uaa = TestUaa::start(&db).await;
    let keys_after = token_keys(&uaa).await;
    assert_eq!(keys_after, keys_before);
    verify_with_keys(
        token_before["access_token"].as_str().unwrap(),
        &keys_after,
        &issuer_before,
    );
    uaa.password_token("erin", "erin-pw").await;
    uaa.password_token("alice", ALICE_PASSWORD).await;
    let (status, _) = uaa
        .token_request(
            Some(("cf", "")),
            &[
                ("grant_type", "refresh_token"),
                (
                    "refresh_token",
                    token_before["refresh_token"].as_str().unwrap(),
                ),
            ],
        )
        .await;
    assert_eq!(status, 200, "refresh tokens survive a restart");
    let admin = uaa.admin_token().await;
    let (_, _, list) = uaa.call(Method::GET, "/Users", Some(&admin), None).await;
    assert_eq!(list["totalResults"], 3, "{list}");
    uaa.stop().await;

    // A changed configuration: alice gains a group on the next start, her password stays.
    let uaa = TestUaa::start_with(&db, |config| {
        config.users[1].groups.push("scim.read".to_owned());
        config.users[1].password = "ignored-for-existing-users".to_owned();
    })
    .await;
    let login = uaa.password_token("alice", ALICE_PASSWORD).await;
    assert!(
        login["scope"]
            .as_str()
            .unwrap()
            .split(' ')
            .any(|scope| scope == "scim.read"),
        "{login}"
    );
    uaa.stop().await;
}
