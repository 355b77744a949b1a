//! Bad input on every endpoint, over a real socket: malformed or mistyped bodies, wrong content
//! types, huge values, unknown ids, repeated form fields and garbage `Authorization` headers. Each
//! case must get UAA's 4xx JSON error — never a 5xx, a plain-text body or a dropped connection —
//! and none may change anything.

use reqwest::header::{HeaderName, HeaderValue};
use reqwest::Method;
use serde_json::Value;

use crate::support::{TestDb, TestUaa, ALICE_PASSWORD, RESOURCE_SERVER_SECRET};

crate::backend_tests!(bad_input_is_refused_and_changes_nothing);

/// How a request authenticates.
#[derive(Clone)]
enum Auth {
    None,
    /// `Authorization: bearer <token>`.
    Bearer(String),
    /// The exact bytes of the `Authorization` header.
    Raw(Vec<u8>),
}

/// One request of the sweep and the answer it must get.
struct Case {
    method: Method,
    path: String,
    auth: Auth,
    content_type: Option<&'static str>,
    extra_header: Option<(&'static str, &'static str)>,
    body: Vec<u8>,
    status: u16,
    /// The expected `error`; `None` to check only that there is one.
    error: Option<&'static str>,
}

fn case(method: Method, path: impl Into<String>, auth: &Auth, status: u16) -> Case {
    Case {
        method,
        path: path.into(),
        auth: auth.clone(),
        content_type: None,
        extra_header: None,
        body: Vec::new(),
        status,
        error: None,
    }
}

impl Case {
    fn json(mut self, body: impl Into<Vec<u8>>) -> Case {
        self.content_type = Some("application/json");
        self.body = body.into();
        self
    }

    fn form(mut self, body: impl Into<Vec<u8>>) -> Case {
        self.content_type = Some("application/x-www-form-urlencoded");
        self.body = body.into();
        self
    }

    fn content_type(mut self, content_type: &'static str) -> Case {
        self.content_type = Some(content_type);
        self
    }

    fn header(mut self, name: &'static str, value: &'static str) -> Case {
        self.extra_header = Some((name, value));
        self
    }

    fn error(mut self, error: &'static str) -> Case {
        self.error = Some(error);
        self
    }
}

async fn send(uaa: &TestUaa, case: &Case) -> (u16, String) {
    let mut request = uaa
        .http
        .request(case.method.clone(), uaa.url(&case.path))
        .body(case.body.clone());
    match &case.auth {
        Auth::None => {}
        Auth::Bearer(token) => request = request.header("Authorization", format!("bearer {token}")),
        Auth::Raw(bytes) => {
            request = request.header(
                "Authorization",
                HeaderValue::from_bytes(bytes).expect("header bytes"),
            )
        }
    }
    if let Some(content_type) = case.content_type {
        request = request.header("Content-Type", content_type);
    }
    if let Some((name, value)) = case.extra_header {
        request = request.header(
            HeaderName::from_static(name),
            HeaderValue::from_static(value),
        );
    }
    let response = request.send().await.unwrap_or_else(|error| {
        panic!(
            "{} {}: no answer: {error:?}",
            case.method,
            &case.path[..case.path.len().min(80)]
        )
    });
    let status = response.status().as_u16();
    (status, response.text().await.expect("body"))
}

/// What must not change: users, groups and their members, and alice's login.
async fn snapshot(uaa: &TestUaa, admin: &str) -> Value {
    let mut state = serde_json::Map::new();
    for path in ["/Users?count=500", "/Groups?count=500"] {
        let (status, _, mut list) = uaa.call(Method::GET, path, Some(admin), None).await;
        assert_eq!(status, 200, "{list}");
        // Logins move lastLogonTime; everything else must stay put.
        for resource in list["resources"].as_array_mut().expect("resources") {
            if let Some(object) = resource.as_object_mut() {
                object.remove("lastLogonTime");
                object.remove("previousLogonTime");
            }
        }
        state.insert(path.to_owned(), list);
    }
    Value::Object(state)
}

async fn bad_input_is_refused_and_changes_nothing(db: TestDb) {
    let uaa = TestUaa::start(&db).await;
    let admin_token = uaa.admin_token().await;
    let admin = Auth::Bearer(admin_token.clone());
    let login = uaa.password_token("alice", ALICE_PASSWORD).await;
    let alice_token = login["access_token"].as_str().unwrap().to_owned();
    let alice = Auth::Bearer(alice_token.clone());
    let alice_id = uaa.verify(&alice_token).await["user_id"]
        .as_str()
        .unwrap()
        .to_owned();
    let (_, _, group) = uaa
        .call(
            Method::GET,
            "/Groups?filter=displayName%20eq%20%22openid%22",
            Some(&admin_token),
            None,
        )
        .await;
    let group_id = group["resources"][0]["id"].as_str().unwrap().to_owned();
    let before = snapshot(&uaa, &admin_token).await;

    let none = Auth::None;
    let cf_basic = Auth::Raw(b"Basic Y2Y6".to_vec());
    let resource_basic = Auth::Raw(
        format!(
            "Basic {}",
            base64_encode(&format!("resource-server:{RESOURCE_SERVER_SECRET}"))
        )
        .into_bytes(),
    );
    let huge = "x".repeat(200_000);
    let deep_json = format!("{}{}", "[".repeat(100_000), "]".repeat(100_000));
    let deep_filter = format!("/Users?filter={}", "%28".repeat(3000));
    let long_chain = format!("/Users?filter={}", vec!["id%20pr"; 1500].join("%20or%20"));
    let user = format!("/Users/{alice_id}");
    let password = format!("{user}/password");
    let members = format!("/Groups/{group_id}/members");

    let garbage_headers: Vec<Vec<u8>> = vec![
        b"bearer".to_vec(),
        b"bearer ".to_vec(),
        b"Bearer    ".to_vec(),
        b"bearer a.b.c".to_vec(),
        b"bearer ....".to_vec(),
        b"bearer eyJhbGciOiJub25lIn0.e30.".to_vec(),
        format!("bearer {}", "A".repeat(8000)).into_bytes(),
        b"bearer \xff\xfe\x80".to_vec(),
        b"Basic Y2Y6".to_vec(),
        b"Negotiate abc".to_vec(),
        b"\xc3\xa9".to_vec(),
        format!("bearer {alice_token}x").into_bytes(),
        format!("bearer {alice_token} {alice_token}").into_bytes(),
    ];

    let mut cases = vec![
        // POST /oauth/token
        case(Method::POST, "/oauth/token", &cf_basic, 400)
            .json(r#"{"grant_type":"password","username":"alice","password":"alice-secret"}"#)
            .error("invalid_request"),
        case(Method::POST, "/oauth/token", &cf_basic, 400)
            .form("grant_type=password&grant_type=client_credentials&username=alice&password=alice-secret")
            .error("invalid_request"),
        case(Method::POST, "/oauth/token", &cf_basic, 400)
            .form("grant_type=password&username=alice&username=admin&password=alice-secret")
            .error("invalid_request"),
        // Form bodies are decoded like UAA's servlet container does: invalid UTF-8 lossily.
        case(Method::POST, "/oauth/token", &cf_basic, 401)
            .form(b"grant_type=password&username=\xff\xfe&password=x".to_vec())
            .error("unauthorized"),
        case(Method::POST, "/oauth/token", &cf_basic, 400)
            .form(b"\x00\x01\x02".to_vec())
            .error("invalid_request"),
        case(Method::POST, "/oauth/token", &cf_basic, 400)
            .form("")
            .error("invalid_request"),
        case(Method::POST, "/oauth/token", &cf_basic, 401)
            .form(format!("grant_type=password&username={huge}&password={huge}"))
            .error("unauthorized"),
        case(Method::POST, "/oauth/token", &cf_basic, 401)
            .form(format!("grant_type=refresh_token&refresh_token={huge}"))
            .error("invalid_token"),
        case(Method::POST, "/oauth/token", &cf_basic, 400)
            .form(format!("grant_type={huge}"))
            .error("unsupported_grant_type"),
        case(Method::POST, "/oauth/token", &cf_basic, 400)
            .form(format!(
                "grant_type=password&username=alice&password={ALICE_PASSWORD}&scope={huge}"
            ))
            .error("invalid_scope"),
        case(Method::POST, "/oauth/token", &cf_basic, 401)
            .form(format!(
                "grant_type=password&username=alice&password={ALICE_PASSWORD}&client_id=admin-client"
            ))
            .error("invalid_client"),
        case(Method::POST, "/oauth/token", &Auth::Raw(b"Basic".to_vec()), 401)
            .form("grant_type=client_credentials")
            .error("invalid_client"),
        case(Method::POST, "/oauth/token", &Auth::Raw(b"Basic bm9jb2xvbg==".to_vec()), 401)
            .form("grant_type=client_credentials")
            .error("invalid_client"),
        case(Method::POST, "/oauth/token", &Auth::Raw(b"Basic \xff\xfe".to_vec()), 401)
            .form("grant_type=client_credentials")
            .error("invalid_client"),
        case(Method::POST, "/oauth/token", &alice, 401)
            .form("grant_type=client_credentials")
            .error("invalid_client"),
        case(Method::POST, "/oauth/token?grant_type=password", &cf_basic, 400)
            .form("username=alice")
            .error("invalid_request"),
        // POST /check_token
        case(Method::POST, "/check_token", &resource_basic, 400)
            .json(format!(r#"{{"token":"{alice_token}"}}"#))
            .error("invalid_token"),
        case(Method::POST, "/check_token", &resource_basic, 400)
            .form(format!("token={huge}"))
            .error("invalid_token"),
        case(Method::POST, "/check_token", &resource_basic, 400)
            .form(b"token=\xff".to_vec())
            .error("invalid_token"),
        case(Method::POST, "/check_token", &Auth::Raw(b"Basic !!!".to_vec()), 401)
            .form(format!("token={alice_token}")),
        case(Method::GET, "/check_token", &resource_basic, 405).error("method_not_allowed"),
        // GET /userinfo, /token_keys, /token_key, /login with odd input
        case(Method::GET, "/userinfo?x=%zz", &none, 401).error("unauthorized"),
        case(Method::POST, "/userinfo", &alice, 405).error("method_not_allowed"),
        case(Method::DELETE, "/token_key", &none, 405).error("method_not_allowed"),
        case(Method::PUT, "/login", &none, 405).error("method_not_allowed"),
        // SCIM list queries
        case(Method::GET, deep_filter.clone(), &admin, 400).error("scim"),
        case(Method::GET, "/Users?filter=%22unterminated", &admin, 400).error("scim"),
        case(Method::GET, "/Users?filter=userName%20eq%20alice", &admin, 400).error("scim"),
        case(Method::GET, "/Users?filter=userName%20eq%20%22a%22%20or", &admin, 400).error("scim"),
        case(Method::GET, "/Users?filter=%29", &admin, 400).error("scim"),
        case(Method::GET, "/Groups?filter=displayName%20zz%20%22a%22", &admin, 400).error("scim"),
        case(Method::GET, "/Groups?filter=members%20pr", &admin, 400).error("scim"),
        case(Method::GET, "/Users?filter=password%20sw%20%22%24%22", &admin, 400).error("scim"),
        case(Method::GET, "/Users?count=99999999999999999999999", &admin, 400).error("invalid_request"),
        case(Method::GET, "/Users?startIndex=1.5", &admin, 400).error("invalid_request"),
        case(Method::GET, "/Users?startIndex=%zz", &admin, 400).error("invalid_request"),
        // SCIM user bodies
        case(Method::POST, "/Users", &admin, 400).json("").error("scim"),
        case(Method::POST, "/Users", &admin, 400).json("null").error("scim"),
        case(Method::POST, "/Users", &admin, 400).json("[]").error("invalid_scim_resource"),
        case(Method::POST, "/Users", &admin, 400).json(deep_json.clone()).error("scim"),
        case(Method::POST, "/Users", &admin, 400)
            .json(r#"{"userName": 7, "password": "pw", "emails": [{"value": "a@b"}]}"#)
            .error("scim"),
        case(Method::POST, "/Users", &admin, 400)
            .json(r#"{"userName": "zed", "password": "pw", "emails": "a@b"}"#)
            .error("scim"),
        case(Method::POST, "/Users", &admin, 400)
            .json(r#"{"userName": "zed", "password": "pw", "emails": [{"value": "a@b"}], "active": "yes"}"#)
            .error("scim"),
        case(Method::POST, "/Users", &admin, 400)
            .json(r#"{"userName": "zed", "password": "pw", "emails": [{"value": "a@b"}, {"value": "c@d"}]}"#)
            .error("invalid_scim_resource"),
        case(Method::POST, "/Users", &admin, 400)
            .json(format!(r#"{{"userName": "zed", "password": "pw", "emails": [{{"value": "{huge}"}}]}}"#))
            .error("invalid_scim_resource"),
        case(Method::POST, "/Users", &admin, 400)
            .json(format!(r#"{{"userName": "zed", "password": "pw", "emails": [{{"value": "a@b"}}], "name": {{"givenName": "{huge}"}}}}"#))
            .error("invalid_scim_resource"),
        case(Method::POST, "/Users", &admin, 400)
            .json(b"{\"userName\": \"\xff\"}".to_vec())
            .error("scim"),
        case(Method::POST, "/Users", &admin, 409)
            .json(r#"{"userName": "ALICE", "password": "pw", "emails": [{"value": "a@b"}]}"#)
            .error("scim_resource_already_exists"),
        case(Method::POST, "/Users", &alice, 403)
            .json(r#"{"userName": "zed", "password": "pw", "emails": [{"value": "a@b"}]}"#)
            .error("insufficient_scope"),
        case(Method::GET, format!("/Users/{}", &huge[..8000]), &admin, 404),
        case(Method::GET, "/Users/%ff%fe", &admin, 404),
        case(Method::GET, "/Users/no-such-user", &admin, 404).error("scim_resource_not_found"),
        case(Method::DELETE, "/Users/no-such-user", &admin, 404).error("scim_resource_not_found"),
        case(Method::PUT, "/Users/no-such-user", &admin, 404)
            .header("if-match", "*")
            .json(r#"{"userName": "zed", "emails": [{"value": "a@b"}]}"#)
            .error("scim_resource_not_found"),
        case(Method::PUT, user.clone(), &admin, 400)
            .json(r#"{"userName": "alice", "emails": [{"value": "alice"}]}"#)
            .error("scim"),
        case(Method::PUT, user.clone(), &admin, 400)
            .header("if-match", "\"abc\"")
            .json(r#"{"userName": "alice", "emails": [{"value": "alice"}]}"#)
            .error("scim"),
        case(Method::PUT, user.clone(), &admin, 400)
            .header("if-match", "99999999999999999999999")
            .json(r#"{"userName": "alice", "emails": [{"value": "alice"}]}"#)
            .error("scim"),
        case(Method::PUT, user.clone(), &admin, 409)
            .header("if-match", "\"42\"")
            .json(r#"{"userName": "alice", "emails": [{"value": "alice"}]}"#)
            .error("scim_resource_conflict"),
        case(Method::PUT, user.clone(), &admin, 409)
            .header("if-match", "*")
            .json(r#"{"userName": "admin", "emails": [{"value": "alice"}]}"#)
            .error("scim_resource_already_exists"),
        case(Method::PUT, user.clone(), &admin, 400)
            .header("if-match", "*")
            .json(r#"{"userName": "alice", "origin": "ldap", "emails": [{"value": "alice"}]}"#)
            .error("invalid_scim_resource"),
        case(Method::PUT, user.clone(), &admin, 400)
            .header("if-match", "*")
            .json(r#"{"userName": "alice"}"#)
            .error("invalid_scim_resource"),
        case(Method::PUT, user.clone(), &admin, 400)
            .header("if-match", "*")
            .json("{")
            .error("scim"),
        case(Method::DELETE, user.clone(), &admin, 409)
            .header("if-match", "\"42\"")
            .error("scim_resource_conflict"),
        case(Method::DELETE, user.clone(), &admin, 400)
            .header("if-match", "nope")
            .error("scim"),
        case(Method::DELETE, user.clone(), &alice, 403).error("insufficient_scope"),
        // Password changes
        case(Method::PUT, password.clone(), &alice, 400).json("{").error("scim"),
        case(Method::PUT, password.clone(), &alice, 400)
            .json(r#"{"oldPassword": 1, "password": 2}"#)
            .error("scim"),
        case(Method::PUT, password.clone(), &alice, 400)
            .json(format!(r#"{{"oldPassword": "{ALICE_PASSWORD}", "password": "{huge}"}}"#))
            .error("invalid_password"),
        case(Method::PUT, password.clone(), &alice, 401)
            .json(format!(r#"{{"oldPassword": "{huge}", "password": "new-pw"}}"#))
            .error("unauthorized"),
        case(Method::PUT, password.clone(), &admin, 401)
            .json(r#"{"oldPassword": "wrong", "password": "new-pw"}"#)
            .error("unauthorized"),
        // Groups and members
        case(Method::POST, "/Groups", &admin, 400).json("[]").error("invalid_scim_resource"),
        case(Method::POST, "/Groups", &admin, 400)
            .json(r#"{"displayName": "has space"}"#)
            .error("invalid_scim_resource"),
        case(Method::POST, "/Groups", &admin, 400)
            .json(format!(r#"{{"displayName": "{huge}"}}"#))
            .error("invalid_scim_resource"),
        case(Method::POST, "/Groups", &admin, 400)
            .json(r#"{"displayName": "kiln.new", "members": [{"type": "GROUP", "value": "x"}]}"#)
            .error("invalid_scim_resource"),
        case(Method::POST, "/Groups", &admin, 404)
            .json(r#"{"displayName": "kiln.new", "members": [{"value": "no-such-user"}]}"#)
            .error("scim_resource_not_found"),
        case(Method::POST, "/Groups", &admin, 400)
            .json(r#"{"displayName": "kiln.new", "members": [{"origin": "uaa"}]}"#)
            .error("scim"),
        case(Method::POST, "/Groups", &admin, 409)
            .json(r#"{"displayName": "openid"}"#)
            .error("scim_resource_already_exists"),
        case(Method::POST, members.clone(), &admin, 400).json("{}").error("scim"),
        case(Method::POST, members.clone(), &admin, 404)
            .json(r#"{"value": "no-such-user"}"#)
            .error("scim_resource_not_found"),
        case(Method::POST, members.clone(), &admin, 409)
            .json(format!(r#"{{"value": "{alice_id}"}}"#))
            .error("member_already_exists"),
        case(Method::POST, "/Groups/no-such-group/members", &admin, 404)
            .json(format!(r#"{{"value": "{alice_id}"}}"#))
            .error("scim_resource_not_found"),
        case(Method::GET, "/Groups/no-such-group/members", &admin, 404)
            .error("scim_resource_not_found"),
        case(Method::DELETE, "/Groups/no-such-group/members/x", &admin, 404)
            .error("scim_resource_not_found"),
        case(Method::DELETE, format!("{members}/no-such-user"), &admin, 404)
            .error("member_not_found"),
        case(Method::DELETE, "/Groups/no-such-group", &admin, 404)
            .error("scim_resource_not_found"),
        case(Method::DELETE, format!("/Groups/{group_id}"), &alice, 403)
            .error("insufficient_scope"),
        // Revocation and client administration
        case(Method::DELETE, "/oauth/token/revoke/someone-elses-jti", &alice, 403)
            .error("insufficient_scope"),
        case(Method::GET, format!("/oauth/clients/{}", &huge[..8000]), &admin, 403)
            .error("insufficient_scope"),
    ];
    // SCIM bodies must be JSON; UAA's answer to another content type is a 400 `scim` error, even
    // when the bytes happen to be a valid resource.
    let valid_user = r#"{"userName": "zed", "password": "pw", "emails": [{"value": "a@b"}]}"#;
    for content_type in [
        "text/plain",
        "application/x-www-form-urlencoded",
        "application/xml",
    ] {
        cases.push(
            case(Method::POST, "/Users", &admin, 400)
                .json(valid_user)
                .content_type(content_type)
                .error("scim"),
        );
        cases.push(
            case(Method::POST, "/Groups", &admin, 400)
                .json(r#"{"displayName": "kiln.new"}"#)
                .content_type(content_type)
                .error("scim"),
        );
        cases.push(
            case(Method::PUT, password.clone(), &alice, 400)
                .json(format!(
                    r#"{{"oldPassword": "{ALICE_PASSWORD}", "password": "new-pw"}}"#
                ))
                .content_type(content_type)
                .error("scim"),
        );
    }
    for header in &garbage_headers {
        for (method, path) in [
            (Method::GET, "/Users"),
            (Method::GET, "/userinfo"),
            (Method::GET, "/Groups"),
            (Method::DELETE, "/oauth/token/revoke/x"),
        ] {
            cases.push(case(method, path, &Auth::Raw(header.clone()), 401));
        }
    }
    cases.push(case(Method::GET, long_chain, &admin, 200));

    let mut failures = Vec::new();
    for case in &cases {
        let (status, text) = send(&uaa, case).await;
        let what = format!(
            "{} {} ({} body bytes)",
            case.method,
            &case.path[..case.path.len().min(80)],
            case.body.len()
        );
        if case.status == 200 {
            if status != 200 {
                failures.push(format!("{what}: {status} {text}"));
            }
            continue;
        }
        let Ok(body) = serde_json::from_str::<Value>(&text) else {
            failures.push(format!(
                "{what}: {status} with a body that is not JSON: {text:?}"
            ));
            continue;
        };
        let error = body["error"].as_str();
        let matches = status == case.status
            && error.is_some()
            && body["error_description"].is_string()
            && case.error.is_none_or(|expected| error == Some(expected));
        if !matches {
            failures.push(format!(
                "{what}: expected {} {:?}, got {status} {body}",
                case.status, case.error
            ));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));

    // Nothing changed: same users, groups and memberships; alice logs in as before.
    assert_eq!(snapshot(&uaa, &admin_token).await, before);
    uaa.password_token("alice", ALICE_PASSWORD).await;
    let (status, _, _) = uaa
        .call(Method::GET, "/userinfo", Some(&alice_token), None)
        .await;
    assert_eq!(status, 200);
    uaa.stop().await;
}

fn base64_encode(text: &str) -> String {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD.encode(text)
}
