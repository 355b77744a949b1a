//! SCIM `/Users`, `/ids/Users` and `/Groups`, and group memberships reflected in token scopes.

use reqwest::Method;
use serde_json::{json, Value};

use crate::support::{scopes, TestDb, TestUaa, ALICE_PASSWORD, LOOKUP_SECRET};

crate::backend_tests!(
    users_lifecycle,
    user_errors,
    password_changes,
    groups_drive_scopes,
    list_queries_filters_paging_and_attributes,
);

fn create_body(name: &str, password: &str) -> Value {
    // The body `cf create-user` sends.
    json!({"userName": name, "password": password, "origin": "",
           "name": {"familyName": name, "givenName": name}, "emails": [{"value": name, "primary": true}]})
}

fn encode(filter: &str) -> String {
    url::form_urlencoded::byte_serialize(filter.as_bytes()).collect()
}

async fn users_lifecycle(db: TestDb) {
    let uaa = TestUaa::start(&db).await;
    let admin = uaa.admin_token().await;
    let (status, headers, user) = uaa
        .call(
            Method::POST,
            "/Users",
            Some(&admin),
            Some(create_body("Carol", "pw-carol")),
        )
        .await;
    assert_eq!(status, 201, "{user}");
    assert_eq!(headers["etag"], "\"0\"");
    let id = user["id"].as_str().unwrap().to_owned();
    assert_eq!(user["userName"], "Carol");
    assert_eq!(user["origin"], "uaa");
    assert_eq!(user["zoneId"], "uaa");
    assert_eq!(user["active"], true);
    assert_eq!(
        user["name"],
        json!({"familyName": "Carol", "givenName": "Carol"})
    );
    assert_eq!(user["emails"][0]["value"], "Carol");
    assert_eq!(user["meta"]["version"], 0);
    assert!(user["meta"]["created"].as_str().unwrap().ends_with('Z'));
    assert_eq!(user["schemas"], json!(["urn:scim:schemas:core:1.0"]));
    assert!(user.get("password").is_none());
    let groups: Vec<&str> = user["groups"]
        .as_array()
        .unwrap()
        .iter()
        .map(|g| g["display"].as_str().unwrap())
        .collect();
    for group in [
        "openid",
        "cloud_controller.read",
        "cloud_controller.write",
        "password.write",
        "uaa.user",
    ] {
        assert!(groups.contains(&group), "{groups:?}");
    }
    assert_eq!(user["groups"][0]["type"], "DIRECT");

    // Duplicate (case-insensitive) → 409 with UAA's body.
    let (status, _, body) = uaa
        .call(
            Method::POST,
            "/Users",
            Some(&admin),
            Some(create_body("carol", "x-pw")),
        )
        .await;
    assert_eq!(status, 409);
    assert_eq!(body["error"], "scim_resource_already_exists");
    assert_eq!(body["error_description"], "Username already in use: carol");
    assert_eq!(body["message"], "Username already in use: carol");
    assert_eq!(body["origin"], "uaa");

    // The Cloud Controller's lookups, with its own client.
    let lookup = uaa
        .client_token("cloud_controller_username_lookup", LOOKUP_SECRET)
        .await;
    for filter in [
        r#"userName eq "carol" and origin eq "uaa""#,
        r#"USERNAME Eq "Carol" AND origin eq "uaa""#,
        r#"userName eq "Carol""#,
    ] {
        let (status, _, list) = uaa
            .call(
                Method::GET,
                &format!("/Users?filter={}", encode(filter)),
                Some(&lookup),
                None,
            )
            .await;
        assert_eq!(status, 200, "{list}");
        assert_eq!(list["totalResults"], 1, "{filter}: {list}");
        assert_eq!(list["resources"][0]["id"], id.as_str());
        assert_eq!(list["resources"][0]["origin"], "uaa");
        assert_eq!(list["startIndex"], 1);
        // UAA reports the page size asked for, not the number of resources returned.
        assert_eq!(list["itemsPerPage"], 100);
        assert_eq!(list["schemas"], json!(["urn:scim:schemas:core:1.0"]));
    }
    let (_, _, list) = uaa
        .call(
            Method::GET,
            &format!(
                "/Users?filter={}",
                encode(r#"userName eq "carol" and origin eq "ldap""#)
            ),
            Some(&lookup),
            None,
        )
        .await;
    assert_eq!(list["totalResults"], 0);
    assert_eq!(list["resources"], json!([]));
    let (_, _, list) = uaa
        .call(
            Method::GET,
            &format!("/Users?filter={}", encode(&format!("id eq \"{id}\""))),
            Some(&lookup),
            None,
        )
        .await;
    assert_eq!(list["totalResults"], 1);
    // Paging over all users: admin, alice, Carol (creation order).
    let (_, _, list) = uaa
        .call(
            Method::GET,
            "/Users?startIndex=2&count=1",
            Some(&lookup),
            None,
        )
        .await;
    assert_eq!(list["totalResults"], 3);
    assert_eq!(list["itemsPerPage"], 1);
    assert_eq!(list["startIndex"], 2);
    assert_eq!(list["resources"][0]["userName"], "alice");
    let (status, _, ids) = uaa
        .call(
            Method::GET,
            &format!("/ids/Users?filter={}", encode(r#"userName eq "carol""#)),
            Some(&lookup),
            None,
        )
        .await;
    assert_eq!(status, 200, "{ids}");
    assert_eq!(
        ids["resources"],
        json!([{"id": id, "userName": "Carol", "origin": "uaa"}])
    );
    let (status, _, fetched) = uaa
        .call(Method::GET, &format!("/Users/{id}"), Some(&lookup), None)
        .await;
    assert_eq!(status, 200);
    assert_eq!(fetched["userName"], "Carol");

    // Update with If-Match.
    let mut update = json!({"userName": "carol2", "name": {"givenName": "Caro", "familyName": "Line"},
                            "emails": [{"value": "carol@example.com"}]});
    let path = format!("/Users/{id}");
    let (status, _, body) = uaa
        .call(Method::PUT, &path, Some(&admin), Some(update.clone()))
        .await;
    assert_eq!(status, 400, "If-Match is required: {body}");
    let put = |version: &'static str, body: Value| {
        uaa.http
            .put(uaa.url(&path))
            .header("Authorization", format!("bearer {admin}"))
            .header("If-Match", version)
            .json(&body)
            .send()
    };
    let response = put("\"7\"", update.clone()).await.unwrap();
    assert_eq!(response.status().as_u16(), 409);
    let response = put("\"0\"", update.clone()).await.unwrap();
    assert_eq!(response.status().as_u16(), 200);
    assert_eq!(response.headers()["etag"], "\"1\"");
    let updated: Value = response.json().await.unwrap();
    assert_eq!(updated["userName"], "carol2");
    assert_eq!(updated["meta"]["version"], 1);
    assert_eq!(updated["emails"][0]["value"], "carol@example.com");
    update["active"] = json!(false);
    let response = put("*", update).await.unwrap();
    assert_eq!(response.status().as_u16(), 200);
    assert_eq!(response.json::<Value>().await.unwrap()["active"], false);
    // An inactive user cannot log in.
    let (status, _) = uaa
        .token_request(
            Some(("cf", "")),
            &[
                ("grant_type", "password"),
                ("username", "carol2"),
                ("password", "pw-carol"),
            ],
        )
        .await;
    assert_eq!(status, 401);

    // Delete.
    let (status, _, deleted) = uaa.call(Method::DELETE, &path, Some(&admin), None).await;
    assert_eq!(status, 200);
    assert_eq!(deleted["id"], id.as_str());
    let (status, _, body) = uaa.call(Method::GET, &path, Some(&admin), None).await;
    assert_eq!(status, 404);
    assert_eq!(body["error"], "scim_resource_not_found");
    let (status, _, _) = uaa.call(Method::DELETE, &path, Some(&admin), None).await;
    assert_eq!(status, 404);
    uaa.stop().await;
}

async fn user_errors(db: TestDb) {
    let uaa = TestUaa::start(&db).await;
    let admin = uaa.admin_token().await;
    let lookup = uaa
        .client_token("cloud_controller_username_lookup", LOOKUP_SECRET)
        .await;
    let alice = uaa.password_token("alice", ALICE_PASSWORD).await["access_token"]
        .as_str()
        .unwrap()
        .to_owned();
    let long = "x".repeat(300);
    // method, path, bearer token, body, expected status, expected error.
    type Case<'a> = (Method, String, Option<&'a str>, Option<Value>, u16, &'a str);
    let cases: Vec<Case<'_>> = vec![
        (
            Method::GET,
            "/Users".into(),
            None,
            None,
            401,
            "unauthorized",
        ),
        (
            Method::GET,
            "/Users".into(),
            Some("not.a.jwt"),
            None,
            401,
            "invalid_token",
        ),
        (
            Method::GET,
            "/Users".into(),
            Some(&alice),
            None,
            403,
            "insufficient_scope",
        ),
        (
            Method::POST,
            "/Users".into(),
            Some(&lookup),
            Some(create_body("dave", "pw")),
            403,
            "insufficient_scope",
        ),
        (
            Method::POST,
            "/Users".into(),
            Some(&admin),
            Some(json!("not an object")),
            400,
            "scim",
        ),
        (
            Method::POST,
            "/Users".into(),
            Some(&admin),
            Some(create_body("", "pw")),
            400,
            "invalid_scim_resource",
        ),
        (
            Method::POST,
            "/Users".into(),
            Some(&admin),
            Some(create_body(&long, "pw")),
            400,
            "invalid_scim_resource",
        ),
        (
            Method::POST,
            "/Users".into(),
            Some(&admin),
            Some(create_body("has space", "pw")),
            400,
            "invalid_scim_resource",
        ),
        (
            Method::POST,
            "/Users".into(),
            Some(&admin),
            Some(create_body("dave", "")),
            400,
            "invalid_password",
        ),
        (
            Method::POST,
            "/Users".into(),
            Some(&admin),
            Some(create_body("dave", &long)),
            400,
            "invalid_password",
        ),
        (
            Method::POST,
            "/Users".into(),
            Some(&admin),
            Some(json!({"userName": "dave", "password": "pw"})),
            400,
            "invalid_scim_resource",
        ),
        (
            Method::GET,
            "/Users/no-such-id".into(),
            Some(&admin),
            None,
            404,
            "scim_resource_not_found",
        ),
        (
            Method::PUT,
            "/Users/no-such-id/password".into(),
            Some(&admin),
            Some(json!({"password": "p"})),
            401,
            "bad_credentials",
        ),
        (
            Method::GET,
            format!("/Users?filter={}", encode("userName eq")),
            Some(&admin),
            None,
            400,
            "scim",
        ),
        (
            Method::GET,
            "/Users?count=abc".into(),
            Some(&admin),
            None,
            400,
            "invalid_request",
        ),
        (
            Method::GET,
            "/ids/Users".into(),
            Some(&admin),
            None,
            403,
            "insufficient_scope",
        ),
        (
            Method::GET,
            "/Groups/no-such-group".into(),
            Some(&admin),
            None,
            404,
            "scim_resource_not_found",
        ),
    ];
    for (method, path, token, body, expected_status, expected_error) in cases {
        let (status, _, response) = uaa.call(method.clone(), &path, token, body.clone()).await;
        assert_eq!(
            (status, response["error"].as_str()),
            (expected_status, Some(expected_error)),
            "{method} {path} {body:?}: {response}"
        );
    }
    // Malformed JSON text.
    let response = uaa
        .http
        .post(uaa.url("/Users"))
        .header("Authorization", format!("bearer {admin}"))
        .header("Content-Type", "application/json")
        .body("{\"userName\": ")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status().as_u16(), 400);
    // UAA reports unreadable bodies as a plain `ScimException`.
    assert_eq!(response.json::<Value>().await.unwrap()["error"], "scim");
    // A user may read itself without scim.read.
    let claims = uaa.verify(&alice).await;
    let (status, _, me) = uaa
        .call(
            Method::GET,
            &format!("/Users/{}", claims["user_id"].as_str().unwrap()),
            Some(&alice),
            None,
        )
        .await;
    assert_eq!(status, 200);
    assert_eq!(me["userName"], "alice");
    uaa.stop().await;
}

async fn password_changes(db: TestDb) {
    let uaa = TestUaa::start(&db).await;
    let admin = uaa.admin_token().await;
    let login = uaa.password_token("alice", ALICE_PASSWORD).await;
    let alice = login["access_token"].as_str().unwrap().to_owned();
    let alice_id = uaa.verify(&alice).await["user_id"]
        .as_str()
        .unwrap()
        .to_owned();
    let path = format!("/Users/{alice_id}/password");
    let cases: Vec<(&str, Value, u16, &str)> = vec![
        (
            &alice,
            json!({"oldPassword": "wrong", "password": "new-pw"}),
            401,
            "unauthorized",
        ),
        (
            &alice,
            json!({"password": "new-pw"}),
            400,
            "invalid_password",
        ),
        (
            &alice,
            json!({"oldPassword": ALICE_PASSWORD, "password": ALICE_PASSWORD}),
            422,
            "invalid_password",
        ),
        (
            &alice,
            json!({"oldPassword": ALICE_PASSWORD, "password": ""}),
            400,
            "invalid_password",
        ),
    ];
    for (token, body, expected_status, expected_error) in cases {
        let (status, _, response) = uaa
            .call(Method::PUT, &path, Some(token), Some(body.clone()))
            .await;
        assert_eq!(
            (status, response["error"].as_str()),
            (expected_status, Some(expected_error)),
            "{body}: {response}"
        );
    }
    let (status, _, _) = uaa
        .call(
            Method::PUT,
            &path,
            Some(&alice),
            Some(json!({"oldPassword": ALICE_PASSWORD, "password": "alice-2"})),
        )
        .await;
    assert_eq!(status, 200);
    uaa.password_token("alice", "alice-2").await;
    // An admin client sets a password without the old one.
    let (status, _, _) = uaa
        .call(
            Method::PUT,
            &path,
            Some(&admin),
            Some(json!({"password": "alice-3"})),
        )
        .await;
    assert_eq!(status, 200);
    uaa.password_token("alice", "alice-3").await;
    // Another user may not change alice's password.
    let admin_user = uaa
        .password_token("admin", crate::support::ADMIN_PASSWORD)
        .await;
    let bob_id = {
        let (status, _, body) = uaa
            .call(
                Method::POST,
                "/Users",
                Some(&admin),
                Some(create_body("bob", "bob-pw")),
            )
            .await;
        assert_eq!(status, 201);
        body["id"].as_str().unwrap().to_owned()
    };
    let bob = uaa.password_token("bob", "bob-pw").await["access_token"]
        .as_str()
        .unwrap()
        .to_owned();
    let (status, _, _) = uaa
        .call(
            Method::PUT,
            &path,
            Some(&bob),
            Some(json!({"oldPassword": "bob-pw", "password": "x-pw"})),
        )
        .await;
    assert_eq!(status, 400);
    // An admin user changing its own password gives the old one too, and it is checked.
    let admin_user_token = admin_user["access_token"].as_str().unwrap().to_owned();
    let admin_user_id = uaa.verify(&admin_user_token).await["user_id"]
        .as_str()
        .unwrap()
        .to_owned();
    let own_path = format!("/Users/{admin_user_id}/password");
    for (body, expected_status, expected_error) in [
        (json!({"password": "admin-2"}), 400, "invalid_password"),
        (
            json!({"oldPassword": "wrong", "password": "admin-2"}),
            401,
            "unauthorized",
        ),
    ] {
        let (status, _, response) = uaa
            .call(
                Method::PUT,
                &own_path,
                Some(&admin_user_token),
                Some(body.clone()),
            )
            .await;
        assert_eq!(
            (status, response["error"].as_str()),
            (expected_status, Some(expected_error)),
            "{body}: {response}"
        );
    }
    // ...but a uaa.admin user may.
    let (status, _, body) = uaa
        .call(
            Method::PUT,
            &format!("/Users/{bob_id}/password"),
            admin_user["access_token"].as_str(),
            Some(json!({"password": "bob-2"})),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    uaa.password_token("bob", "bob-2").await;
    uaa.stop().await;
}

async fn groups_drive_scopes(db: TestDb) {
    let uaa = TestUaa::start(&db).await;
    let admin = uaa.admin_token().await;
    let alice_id = uaa
        .verify(
            uaa.password_token("alice", ALICE_PASSWORD).await["access_token"]
                .as_str()
                .unwrap(),
        )
        .await["user_id"]
        .as_str()
        .unwrap()
        .to_owned();

    // Bootstrapped groups exist.
    let (status, _, list) = uaa
        .call(
            Method::GET,
            &format!("/Groups?filter={}", encode(r#"displayName eq "scim.read""#)),
            Some(&admin),
            None,
        )
        .await;
    assert_eq!(status, 200, "{list}");
    assert_eq!(list["totalResults"], 1);
    assert_eq!(list["resources"][0]["displayName"], "scim.read");
    let (_, _, all) = uaa
        .call(Method::GET, "/Groups?count=500", Some(&admin), None)
        .await;
    let names: Vec<&str> = all["resources"]
        .as_array()
        .unwrap()
        .iter()
        .map(|g| g["displayName"].as_str().unwrap())
        .collect();
    for group in [
        "cloud_controller.admin",
        "cloud_controller.admin_read_only",
        "cloud_controller.global_auditor",
        "doppler.firehose",
        "scim.userids",
        "uaa.admin",
    ] {
        assert!(names.contains(&group), "{group} missing from {names:?}");
    }

    // A new group, then membership appears in alice's next token.
    let (status, _, group) = uaa
        .call(
            Method::POST,
            "/Groups",
            Some(&admin),
            Some(json!({"displayName": "kiln.test", "description": "test"})),
        )
        .await;
    assert_eq!(status, 201, "{group}");
    let group_id = group["id"].as_str().unwrap().to_owned();
    assert_eq!(group["members"], json!([]));
    let (status, _, body) = uaa
        .call(
            Method::POST,
            "/Groups",
            Some(&admin),
            Some(json!({"displayName": "kiln.test"})),
        )
        .await;
    assert_eq!(
        (status, body["error"].as_str()),
        (409, Some("scim_resource_already_exists"))
    );
    let member = json!({"origin": "uaa", "type": "USER", "value": alice_id});
    let members_path = format!("/Groups/{group_id}/members");
    let (status, _, body) = uaa
        .call(
            Method::POST,
            &members_path,
            Some(&admin),
            Some(member.clone()),
        )
        .await;
    assert_eq!(status, 201, "{body}");
    assert_eq!(body, member);
    let (status, _, _) = uaa
        .call(
            Method::POST,
            &members_path,
            Some(&admin),
            Some(member.clone()),
        )
        .await;
    assert_eq!(status, 409);
    let (status, _, body) = uaa
        .call(
            Method::POST,
            &members_path,
            Some(&admin),
            Some(json!({"origin": "uaa", "type": "USER", "value": "nobody"})),
        )
        .await;
    assert_eq!(
        (status, body["error"].as_str()),
        (404, Some("scim_resource_not_found"))
    );
    let (_, _, members) = uaa
        .call(Method::GET, &members_path, Some(&admin), None)
        .await;
    assert_eq!(members, json!([member]));
    let (_, _, fetched) = uaa
        .call(
            Method::GET,
            &format!("/Groups/{group_id}"),
            Some(&admin),
            None,
        )
        .await;
    assert_eq!(fetched["members"], json!([member]));
    let login = uaa.password_token("alice", ALICE_PASSWORD).await;
    assert!(
        scopes(&uaa.verify(login["access_token"].as_str().unwrap()).await)
            .contains(&"kiln.test".to_owned())
    );
    let (_, _, user) = uaa
        .call(
            Method::GET,
            &format!("/Users/{alice_id}"),
            Some(&admin),
            None,
        )
        .await;
    assert!(user["groups"]
        .as_array()
        .unwrap()
        .iter()
        .any(|g| g["display"] == "kiln.test"));

    // Removing the membership removes the scope, also on refresh.
    let (status, _, _) = uaa
        .call(
            Method::DELETE,
            &format!("{members_path}/{alice_id}"),
            Some(&admin),
            None,
        )
        .await;
    assert_eq!(status, 200);
    let (status, _, body) = uaa
        .call(
            Method::DELETE,
            &format!("{members_path}/{alice_id}"),
            Some(&admin),
            None,
        )
        .await;
    assert_eq!(
        (status, body["error"].as_str()),
        (404, Some("member_not_found"))
    );
    let (status, refreshed) = uaa
        .token_request(
            Some(("cf", "")),
            &[
                ("grant_type", "refresh_token"),
                ("refresh_token", login["refresh_token"].as_str().unwrap()),
            ],
        )
        .await;
    assert_eq!(status, 200);
    assert!(!scopes(
        &uaa.verify(refreshed["access_token"].as_str().unwrap())
            .await
    )
    .contains(&"kiln.test".to_owned()));
    uaa.stop().await;
}

async fn list_queries_filters_paging_and_attributes(db: TestDb) {
    let uaa = TestUaa::start(&db).await;
    let admin = uaa.admin_token().await;
    let (status, _, carol) = uaa
        .call(
            Method::POST,
            "/Users",
            Some(&admin),
            Some(json!({"userName": "Carol", "password": "pw", "name": {"givenName": "Caro", "familyName": "Line"},
                        "emails": [{"value": "carol@example.com"}]})),
        )
        .await;
    assert_eq!(status, 201, "{carol}");
    let list = |query: String| {
        let uaa = &uaa;
        let admin = admin.clone();
        async move {
            let (status, _, body) = uaa
                .call(Method::GET, &format!("/Users?{query}"), Some(&admin), None)
                .await;
            assert_eq!(status, 200, "{query}: {body}");
            body
        }
    };
    let names = |body: &Value| -> Vec<String> {
        body["resources"]
            .as_array()
            .unwrap()
            .iter()
            .map(|user| user["userName"].as_str().unwrap().to_owned())
            .collect()
    };

    // Filter grammar: or, and, parentheses, sw/co/pr, case-insensitive names and values.
    for (filter, expected) in [
        (
            r#"userName eq "alice" or userName eq "ADMIN""#,
            vec!["admin", "alice"],
        ),
        (
            r#"username EQ "carol" OR userName eq "nobody""#,
            vec!["Carol"],
        ),
        (
            r#"(userName eq "alice" or userName eq "carol") and origin eq "uaa""#,
            vec!["alice", "Carol"],
        ),
        (
            r#"userName eq "alice" and (origin eq "ldap" or origin eq "uaa")"#,
            vec!["alice"],
        ),
        (r#"userName sw "a""#, vec!["admin", "alice"]),
        (r#"emails.value co "@EXAMPLE.com""#, vec!["admin", "Carol"]),
        (r#"name.familyName eq "line""#, vec!["Carol"]),
        (r#"id pr and userName ne "admin""#, vec!["alice", "Carol"]),
        (r#"userName eq "nobody""#, vec![]),
    ] {
        let body = list(format!("filter={}", encode(filter))).await;
        assert_eq!(names(&body), expected, "{filter}");
        assert_eq!(body["totalResults"], expected.len(), "{filter}");
    }

    // Paging: itemsPerPage is the page size asked for; pages past the end are empty.
    let body = list("startIndex=2&count=2".to_owned()).await;
    assert_eq!(names(&body), ["alice", "Carol"]);
    assert_eq!(
        (
            &body["startIndex"],
            &body["itemsPerPage"],
            &body["totalResults"]
        ),
        (&json!(2), &json!(2), &json!(3))
    );
    let body = list("startIndex=10".to_owned()).await;
    assert_eq!(body["resources"], json!([]));
    assert_eq!(
        (
            &body["startIndex"],
            &body["itemsPerPage"],
            &body["totalResults"]
        ),
        (&json!(10), &json!(100), &json!(3))
    );
    let body = list("count=0".to_owned()).await;
    assert_eq!(body["resources"], json!([]));
    assert_eq!(body["totalResults"], 3);
    let body = list("count=100000&startIndex=-4".to_owned()).await;
    assert_eq!(names(&body).len(), 3);
    assert_eq!(
        (&body["startIndex"], &body["itemsPerPage"]),
        (&json!(1), &json!(500))
    );

    // attributes= reduces each resource to the named attributes, keyed as asked.
    let body = list(format!(
        "attributes=id,userName&filter={}",
        encode(r#"userName eq "carol""#)
    ))
    .await;
    assert_eq!(
        body["resources"],
        json!([{"id": carol["id"], "userName": "Carol"}])
    );
    assert_eq!(body["totalResults"], 1);
    let body = list(format!(
        "attributes={}&filter={}",
        encode("userName, emails.value,givenName,familyName,meta.version,Active,noSuchThing"),
        encode(r#"userName eq "carol""#)
    ))
    .await;
    assert_eq!(
        body["resources"],
        json!([{
            "userName": "Carol",
            "emails.value": ["carol@example.com"],
            "givenName": "Caro",
            "familyName": "Line",
            "meta.version": 0,
            "Active": true,
            "noSuchThing": null,
        }])
    );
    let (status, _, body) = uaa
        .call(
            Method::GET,
            &format!(
                "/Groups?attributes=displayName&filter={}",
                encode(r#"displayName eq "openid""#)
            ),
            Some(&admin),
            None,
        )
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["resources"], json!([{"displayName": "openid"}]));

    // Filters on attributes UAA does not know are refused, not answered with nothing.
    let (status, _, body) = uaa
        .call(
            Method::GET,
            &format!(
                "/Users?filter={}",
                encode(r#"userName eq "alice" or shoeSize gt "9""#)
            ),
            Some(&admin),
            None,
        )
        .await;
    assert_eq!(
        (status, body["error"].as_str()),
        (400, Some("scim")),
        "{body}"
    );
    assert!(
        body["error_description"]
            .as_str()
            .unwrap()
            .ends_with("Invalid filter attributes: shoeSize"),
        "{body}"
    );
    let body = list(format!(
        "filter={}",
        encode(r#"meta.version eq 0 and userName eq "carol""#)
    ))
    .await;
    assert_eq!(names(&body), ["Carol"]);

    // /ids/Users (open to every user with scim.userids) answers only for named users.
    let lookup = uaa
        .client_token("cloud_controller_username_lookup", LOOKUP_SECRET)
        .await;
    for (query, expected) in [
        (String::new(), Err("a 'filter' parameter is required")),
        (
            format!("filter={}", encode("id pr")),
            Err("Wildcards are not allowed in filter."),
        ),
        (
            format!("filter={}", encode(r#"userName sw "a""#)),
            Err("Wildcards are not allowed in filter."),
        ),
        (
            format!("filter={}", encode(r#"origin eq "uaa""#)),
            Err("Invalid filter attribute."),
        ),
        (
            format!("filter={}", encode("active eq true")),
            Err("Invalid filter attribute."),
        ),
        (
            format!("filter={}", encode(r#"userName gt "a""#)),
            Err("Invalid operator."),
        ),
        (
            format!(
                "filter={}",
                encode(r#"userName eq "ALICE" and origin eq "uaa""#)
            ),
            Ok(vec!["alice"]),
        ),
        (
            format!(
                "filter={}",
                encode(r#"userName eq "alice" or id eq "nope""#)
            ),
            Ok(vec!["alice"]),
        ),
    ] {
        let (status, _, body) = uaa
            .call(
                Method::GET,
                &format!("/ids/Users?{query}"),
                Some(&lookup),
                None,
            )
            .await;
        match expected {
            Ok(users) => {
                assert_eq!(status, 200, "{query}: {body}");
                assert_eq!(names(&body), users, "{query}");
            }
            Err(description) => assert_eq!(
                (
                    status,
                    body["error"].as_str(),
                    body["error_description"].as_str()
                ),
                (400, Some("scim"), Some(description)),
                "{query}: {body}"
            ),
        }
    }

    // Deleting with the right If-Match version works.
    let path = format!("/Users/{}", carol["id"].as_str().unwrap());
    let response = uaa
        .http
        .delete(uaa.url(&path))
        .header("Authorization", format!("bearer {admin}"))
        .header("If-Match", "\"0\"")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status().as_u16(), 200);
    uaa.stop().await;
}
