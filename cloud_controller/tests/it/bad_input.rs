//! A bad-input sweep over the foundation endpoints (root documents, organizations, spaces, users,
//! roles, feature flags, stacks, domains, organization quotas) on a real socket: malformed and
//! mistyped bodies, extra fields, huge bodies, unknown and odd GUIDs, wrong methods, garbage
//! tokens and tokens without Cloud Controller scopes. Every answer is a catalog error as CC
//! gives it, never a 500, and nothing changes.

use reqwest::Method;
use serde_json::{json, Value};

use crate::support::{databases, Answer, Harness};

/// What a sweep row must answer: status, title and (when given) the exact detail.
type Expected = (u16, &'static str, Option<&'static str>);

const NOT_FOUND: &str = "CF-ResourceNotFound";
const UNPROCESSABLE: &str = "CF-UnprocessableEntity";
const PARSE: &str = "CF-MessageParseError";

async fn send(
    harness: &Harness,
    method: Method,
    path: &str,
    token: &str,
    body: Option<Vec<u8>>,
) -> Answer {
    let mut request = harness
        .http
        .request(method, format!("{}{path}", harness.base))
        .header("Content-Type", "application/json")
        .header("Authorization", format!("bearer {token}"));
    if let Some(body) = body {
        request = request.body(body);
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

/// Records a mismatch (rather than stopping at the first) so one run shows every wrong answer.
fn assert_answer(
    failures: &mut Vec<String>,
    label: &str,
    answer: &Answer,
    (status, title, detail): Expected,
) {
    let error = &answer.body["errors"][0];
    if answer.status != status
        || error["title"] != title
        || detail.is_some_and(|detail| error["detail"] != detail)
    {
        failures.push(format!(
            "{label}: expected {status} {title} {detail:?}, got {} {}",
            answer.status, answer.body
        ));
    }
}

/// State that must not change under bad input: every org, space, role and user, and the flags.
async fn snapshot(harness: &Harness) -> Vec<Value> {
    let mut state = Vec::new();
    for path in [
        "/v3/organizations?per_page=5000",
        "/v3/spaces?per_page=5000",
        "/v3/roles?per_page=5000",
        "/v3/users?per_page=5000",
        "/v3/feature_flags",
    ] {
        let answer = harness.get(path, &harness.admin_token).await;
        assert_eq!(answer.status, 200, "{path}: {:#}", answer.body);
        state.push(answer.body["resources"].clone());
    }
    state
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_input_answers_like_cc_and_changes_nothing() {
    for database in databases() {
        let label = database.label();
        let harness = Harness::start(database).await;
        let admin = harness.admin_token.clone();
        let org = harness.create_org("sweep").await;
        let space = harness.create_space(&org, "dev").await;
        harness.issuer.add_user("bob", "uaa");
        let role = harness
            .grant("organization_user", "bob", ("organization", &org))
            .await;
        assert_eq!(role.status, 201, "{:#}", role.body);
        let role = role.body["guid"].as_str().unwrap().to_owned();
        let before = snapshot(&harness).await;
        let mut failures = Vec::new();

        // Bodies that are not JSON objects, or not JSON at all.
        let org_path = format!("/v3/organizations/{org}");
        let space_path = format!("/v3/spaces/{space}");
        let writes: Vec<(Method, &str)> = vec![
            (Method::POST, "/v3/organizations"),
            (Method::PATCH, &org_path),
            (Method::POST, "/v3/spaces"),
            (Method::PATCH, &space_path),
            (Method::POST, "/v3/users"),
            (Method::POST, "/v3/roles"),
            (Method::PATCH, "/v3/feature_flags/user_org_creation"),
        ];
        let deep = format!("{}{}", "[".repeat(10_000), "]".repeat(10_000));
        let malformed: Vec<(&str, Vec<u8>)> = vec![
            ("truncated", b"{\"name\": ".to_vec()),
            ("trailing garbage", b"{\"name\": \"x\"} nope".to_vec()),
            (
                "not utf-8",
                vec![b'{', b'"', 0xff, 0xfe, b'"', b':', b'1', b'}'],
            ),
            ("empty", Vec::new()),
            ("deep nesting", deep.into_bytes()),
            (
                "huge",
                json!({"name": "x".repeat(2 << 20)})
                    .to_string()
                    .into_bytes(),
            ),
        ];
        for (method, path) in &writes {
            for (what, body) in &malformed {
                let answer = send(&harness, method.clone(), path, &admin, Some(body.clone())).await;
                assert_answer(
                    &mut failures,
                    &format!("{label} {method} {path} {what}"),
                    &answer,
                    (400, PARSE, None),
                );
            }
            for body in [json!([]), json!("name"), json!(42), json!(null)] {
                let answer = send(
                    &harness,
                    method.clone(),
                    path,
                    &admin,
                    Some(body.to_string().into_bytes()),
                )
                .await;
                assert_answer(
                    &mut failures,
                    &format!("{label} {method} {path} {body}"),
                    &answer,
                    (400, PARSE, None),
                );
            }
        }

        // Well-formed JSON with the wrong fields, types or values: 422 with a readable message.
        let org_create = |body: Value| (Method::POST, "/v3/organizations".to_owned(), body);
        let long = "x".repeat(256);
        let table: Vec<((Method, String, Value), Expected)> = vec![
            (org_create(json!({"name": "o", "colour": "red"})), (422, UNPROCESSABLE, Some("Unknown field(s): 'colour'"))),
            (org_create(json!({})), (422, UNPROCESSABLE, Some("Name can't be blank"))),
            (org_create(json!({"name": ""})), (422, UNPROCESSABLE, Some("Name can't be blank"))),
            (org_create(json!({"name": "   "})), (422, UNPROCESSABLE, Some("Name can't be blank"))),
            (org_create(json!({"name": 7})), (422, UNPROCESSABLE, Some("Name must be a string"))),
            (org_create(json!({"name": ["a"]})), (422, UNPROCESSABLE, Some("Name must be a string"))),
            (org_create(json!({"name": long})), (422, UNPROCESSABLE, Some("Name is too long (maximum is 255 characters)"))),
            (org_create(json!({"name": "nul\u{0}byte"})), (422, UNPROCESSABLE, Some("Name must not contain escaped characters"))),
            (org_create(json!({"name": "new\nline"})), (422, UNPROCESSABLE, Some("Name must not contain escaped characters"))),
            (org_create(json!({"name": "o", "suspended": "yes"})), (422, UNPROCESSABLE, Some("Suspended must be a boolean"))),
            (org_create(json!({"name": "sweep"})), (422, UNPROCESSABLE, Some("Organization 'sweep' already exists."))),
            ((Method::PATCH, org_path.clone(), json!({"name": 1})), (422, UNPROCESSABLE, Some("Name must be a string"))),
            ((Method::PATCH, org_path.clone(), json!({"name": ""})), (422, UNPROCESSABLE, None)),
            ((Method::PATCH, org_path.clone(), json!({"guid": "x"})), (422, UNPROCESSABLE, Some("Unknown field(s): 'guid'"))),
            ((Method::POST, "/v3/spaces".into(), json!({"name": "s"})), (422, UNPROCESSABLE, None)),
            ((Method::POST, "/v3/spaces".into(), json!({"name": "s", "relationships": {"organization": {"data": {"guid": "no-such-org"}}}})),
                (422, UNPROCESSABLE, Some("Invalid organization. Ensure the organization exists and you have access to it."))),
            ((Method::POST, "/v3/spaces".into(), json!({"name": "s", "relationships": {"organization": {"data": {"guid": 5}}}})), (422, UNPROCESSABLE, None)),
            ((Method::POST, "/v3/spaces".into(), json!({"name": "s", "relationships": {"organization": "x"}})), (422, UNPROCESSABLE, None)),
            ((Method::POST, "/v3/spaces".into(), json!({"name": "s", "relationships": []})), (422, UNPROCESSABLE, None)),
            ((Method::POST, "/v3/spaces".into(), json!({"name": long, "relationships": {"organization": {"data": {"guid": org}}}})),
                (422, UNPROCESSABLE, Some("Name is too long (maximum is 255 characters)"))),
            ((Method::POST, "/v3/spaces".into(), json!({"name": "dev", "relationships": {"organization": {"data": {"guid": org}}}})),
                (422, UNPROCESSABLE, Some("Name must be unique per organization"))),
            ((Method::PATCH, space_path.clone(), json!({"name": null, "x": 1})), (422, UNPROCESSABLE, Some("Unknown field(s): 'x'"))),
            ((Method::POST, "/v3/users".into(), json!({})), (422, UNPROCESSABLE, None)),
            ((Method::POST, "/v3/users".into(), json!({"guid": 12})), (422, UNPROCESSABLE, None)),
            ((Method::POST, "/v3/users".into(), json!({"guid": "x".repeat(201)})), (422, UNPROCESSABLE, Some("Guid must be between 1 and 200 characters"))),
            ((Method::POST, "/v3/roles".into(), json!({})), (422, UNPROCESSABLE, None)),
            ((Method::POST, "/v3/roles".into(), json!({"type": "organization_user"})), (422, UNPROCESSABLE, None)),
            ((Method::POST, "/v3/roles".into(), json!({"type": 3, "relationships": {"user": {"data": {"username": "bob"}}, "organization": {"data": {"guid": org}}}})), (422, UNPROCESSABLE, None)),
            ((Method::POST, "/v3/roles".into(), json!({"type": "organization_user", "relationships": "x"})), (422, UNPROCESSABLE, None)),
            ((Method::POST, "/v3/roles".into(), json!({"type": "organization_user", "relationships": {"user": {"data": {"username": 5}}, "organization": {"data": {"guid": org}}}})), (422, UNPROCESSABLE, None)),
            ((Method::POST, "/v3/roles".into(), json!({"type": "organization_user", "relationships": {"user": {"data": {"guid": "x"}}, "organization": {"data": {"guid": []}}}})), (422, UNPROCESSABLE, None)),
            ((Method::POST, "/v3/roles".into(), json!({"type": "space_developer", "relationships": {"user": {"data": {"username": "bob"}}, "organization": {"data": {"guid": org}}}})), (422, UNPROCESSABLE, None)),
            ((Method::POST, "/v3/roles".into(), json!({"type": "organization_user", "relationships": {"user": {"data": {"username": "bob"}}, "organization": {"data": {"guid": "no-such-org"}}}})),
                (422, UNPROCESSABLE, Some("Invalid organization. Ensure that the organization exists and you have access to it."))),
            ((Method::POST, "/v3/roles".into(), json!({"type": "space_auditor", "relationships": {"user": {"data": {"username": "bob"}}, "space": {"data": {"guid": "no-such-space"}}}})),
                (422, UNPROCESSABLE, Some("Invalid space. Ensure that the space exists and you have access to it."))),
            ((Method::POST, "/v3/roles".into(), json!({"type": "organization_user", "relationships": {"user": {"data": {"username": "bob"}}, "organization": {"data": {"guid": org}}, "app": {}}})), (422, UNPROCESSABLE, None)),
            // CC's RoleCreateMessage messages.
            ((Method::POST, "/v3/roles".into(), json!({"type": "overlord", "relationships": {"user": {"data": {"username": "bob"}}, "organization": {"data": {"guid": org}}}})),
                (422, UNPROCESSABLE, Some(r#"Type must be one of the allowed types ["organization_auditor", "organization_manager", "organization_billing_manager", "organization_user", "space_auditor", "space_manager", "space_developer", "space_supporter"]"#))),
            ((Method::POST, "/v3/roles".into(), json!({"type": "organization_user", "relationships": {}})),
                (422, UNPROCESSABLE, Some("Relationships 'relationships' must include one or more valid relationships"))),
            ((Method::POST, "/v3/roles".into(), json!({"type": "organization_user", "relationships": {"user": {"data": {"guid": "g", "username": "bob"}}, "organization": {"data": {"guid": org}}}})),
                (422, UNPROCESSABLE, Some("Relationships Username cannot be specified when identifying user by guid"))),
            ((Method::POST, "/v3/roles".into(), json!({"type": "organization_user", "relationships": {"user": {"data": {"origin": "uaa"}}, "organization": {"data": {"guid": org}}}})),
                (422, UNPROCESSABLE, Some("Relationships User origin cannot be specified without specifying the username"))),
            ((Method::POST, "/v3/roles".into(), json!({"type": "organization_user", "relationships": {"organization": {"data": {"guid": org}}}})),
                (422, UNPROCESSABLE, Some("Relationships User must have a username or guid specified"))),
            ((Method::POST, "/v3/roles".into(), json!({"type": "organization_user", "relationships": {"user": {"data": {"username": "bob"}}}})),
                (422, UNPROCESSABLE, Some("Relationships must specify either a space or an organization."))),
            ((Method::POST, "/v3/roles".into(), json!({"type": "organization_user", "relationships": {"user": {"data": {"username": "bob"}}, "space": {"data": {"guid": space}}}})),
                (422, UNPROCESSABLE, Some("Relationships Space cannot be provided with the organization role type: 'organization_user'."))),
            ((Method::POST, "/v3/roles".into(), json!({"type": "organization_user", "relationships": {"user": {"data": {"username": "bob"}}, "organization": {"data": {}}}})),
                (422, UNPROCESSABLE, Some(r#"Relationships Organization must be structured like this: "organization: {"data": {"guid": "valid-guid"}}""#))),
            ((Method::POST, "/v3/roles".into(), json!({"type": "organization_user", "relationships": {"user": {"data": {"username": "bob"}}, "organization": {"data": {"guid": org}}, "app": {}}})),
                (422, UNPROCESSABLE, Some("Relationships Unknown field(s): 'app'"))),
            ((Method::PATCH, "/v3/feature_flags/user_org_creation".into(), json!({"enabled": "true"})), (422, UNPROCESSABLE, Some("Enabled must be a boolean"))),
            ((Method::PATCH, "/v3/feature_flags/user_org_creation".into(), json!({"custom_error_message": ""})), (422, UNPROCESSABLE, Some("Custom error message is too short (minimum is 1 character)"))),
            ((Method::PATCH, "/v3/feature_flags/user_org_creation".into(), json!({"custom_error_message": "x".repeat(251)})), (422, UNPROCESSABLE, Some("Custom error message is too long (maximum is 250 characters)"))),
            ((Method::PATCH, "/v3/feature_flags/user_org_creation".into(), json!({"enabled": null})), (422, UNPROCESSABLE, Some("Enabled must be a boolean"))),
            ((Method::PATCH, "/v3/feature_flags/user_org_creation".into(), json!({"name": "x"})), (422, UNPROCESSABLE, Some("Unknown field(s): 'name'"))),
            ((Method::PATCH, "/v3/feature_flags/user_org_creation".into(), json!({"custom_error_message": "nul\u{0}"})), (422, UNPROCESSABLE, Some("error_message format"))),
            ((Method::POST, "/v3/roles".into(), json!({"type": "organization_user", "relationships": {"user": {"data": {"guid": "nul\u{0}"}}, "organization": {"data": {"guid": org}}}})), (422, UNPROCESSABLE, None)),
            ((Method::POST, "/v3/roles".into(), json!({"type": "organization_user", "relationships": {"user": {"data": {"guid": "x".repeat(201)}}, "organization": {"data": {"guid": org}}}})), (422, UNPROCESSABLE, None)),
            ((Method::POST, "/v3/roles".into(), json!({"type": "organization_user", "relationships": {"user": {"data": {"username": "nul\u{0}"}}, "organization": {"data": {"guid": org}}}})), (422, UNPROCESSABLE, None)),
            ((Method::POST, "/v3/users".into(), json!({"guid": "nul\u{0}"})), (422, UNPROCESSABLE, None)),
            ((Method::POST, "/v3/spaces".into(), json!({"name": "s", "relationships": {"organization": {"data": {"guid": "nul\u{0}"}}}})),
                (422, UNPROCESSABLE, Some("Invalid organization. Ensure the organization exists and you have access to it."))),
            ((Method::PATCH, "/v3/feature_flags/no_such_flag".into(), json!({"enabled": true})), (404, NOT_FOUND, Some("Feature flag not found"))),
        ];
        for ((method, path, body), expected) in &table {
            let answer = send(
                &harness,
                method.clone(),
                path,
                &admin,
                Some(body.to_string().into_bytes()),
            )
            .await;
            let shown: String = body.to_string().chars().take(120).collect();
            assert_answer(
                &mut failures,
                &format!("{label} {method} {path} {shown}"),
                &answer,
                *expected,
            );
        }

        // Unknown GUIDs and GUIDs of odd shapes: 404 with CC's detail, whatever the method.
        let odd_guids = [
            "7b5b6a8c-0000-4000-8000-000000000000",
            "not-a-guid",
            // (an encoded NUL never reaches these handlers: see the NUL test below)
            "%E2%98%83",
            &"x".repeat(4000),
            "a%2Fb",
            "..%2F..",
        ];
        for guid in odd_guids {
            for (method, path, detail) in [
                (
                    Method::GET,
                    format!("/v3/organizations/{guid}"),
                    "Organization not found",
                ),
                (
                    Method::PATCH,
                    format!("/v3/organizations/{guid}"),
                    "Organization not found",
                ),
                (
                    Method::DELETE,
                    format!("/v3/organizations/{guid}"),
                    "Organization not found",
                ),
                (
                    Method::GET,
                    format!("/v3/organizations/{guid}/domains"),
                    "Organization not found",
                ),
                (
                    Method::GET,
                    format!("/v3/organizations/{guid}/domains/default"),
                    "Organization not found",
                ),
                (
                    Method::GET,
                    format!("/v3/organizations/{guid}/usage_summary"),
                    "Organization not found",
                ),
                (Method::GET, format!("/v3/spaces/{guid}"), "Space not found"),
                (
                    Method::PATCH,
                    format!("/v3/spaces/{guid}"),
                    "Space not found",
                ),
                (
                    Method::DELETE,
                    format!("/v3/spaces/{guid}"),
                    "Space not found",
                ),
                (Method::GET, format!("/v3/users/{guid}"), "User not found"),
                (
                    Method::DELETE,
                    format!("/v3/users/{guid}"),
                    "User not found",
                ),
                (Method::GET, format!("/v3/roles/{guid}"), "Role not found"),
                (
                    Method::DELETE,
                    format!("/v3/roles/{guid}"),
                    "Role not found",
                ),
                (
                    Method::GET,
                    format!("/v3/feature_flags/{guid}"),
                    "Feature flag not found",
                ),
                (Method::GET, format!("/v3/stacks/{guid}"), "Stack not found"),
                (
                    Method::GET,
                    format!("/v3/domains/{guid}"),
                    "Domain not found",
                ),
                (
                    Method::GET,
                    format!("/v3/organization_quotas/{guid}"),
                    "Organization quota not found",
                ),
            ] {
                let body = (method == Method::PATCH).then(|| b"{}".to_vec());
                let answer = send(&harness, method.clone(), &path, &admin, body).await;
                let shown: String = path.chars().take(80).collect();
                assert_answer(
                    &mut failures,
                    &format!("{label} {method} {shown}"),
                    &answer,
                    (404, NOT_FOUND, Some(detail)),
                );
            }
        }

        // Query strings: unknown parameters, bad paging, bad order, odd encodings.
        for path in [
            "/v3/organizations?colour=red",
            "/v3/organizations?per_page=0",
            "/v3/organizations?per_page=-1",
            "/v3/organizations?per_page=99999999999999999999",
            "/v3/organizations?page=0",
            "/v3/organizations?page=x",
            "/v3/organizations?order_by=colour",
            "/v3/organizations?order_by=%00",
            "/v3/spaces?include=app",
            "/v3/spaces?fields[space]=name",
            "/v3/stacks?order_by=state",
            "/v3/domains?colour=1",
            "/v3/organization_quotas?order_by=nope",
            "/v3/feature_flags?order_by=created_at",
            "/v3/feature_flags?names=x",
        ] {
            let answer = send(&harness, Method::GET, path, &admin, None).await;
            assert_answer(
                &mut failures,
                &format!("{label} GET {path}"),
                &answer,
                (400, "CF-BadQueryParameter", None),
            );
        }
        // The roles and users lists validate like CC's RolesController and UsersController: 422.
        for path in [
            "/v3/roles?colour=red",
            "/v3/roles?per_page=0",
            "/v3/roles?order_by=type",
            "/v3/roles?include=app",
            "/v3/users?colour=red",
            "/v3/users?page=0",
            "/v3/users?origins=uaa",
            "/v3/users?usernames=a&partial_usernames=b",
        ] {
            let answer = send(&harness, Method::GET, path, &admin, None).await;
            assert_answer(
                &mut failures,
                &format!("{label} GET {path}"),
                &answer,
                (422, UNPROCESSABLE, None),
            );
        }
        // Filters with odd values filter, they do not fail.
        for path in [
            "/v3/organizations?guids=",
            "/v3/organizations?names=%25ZZ",
            "/v3/spaces?organization_guids=%E2%98%83&names=,,,",
            "/v3/roles?types=overlord",
            "/v3/domains?organization_guids=x",
            "/v3/organization_quotas?organization_guids=x",
            "/v3/organizations?page=99999999999999",
            "/v3/spaces?page=4294967296&per_page=5000",
        ] {
            let answer = send(&harness, Method::GET, path, &admin, None).await;
            if answer.status != 200 || answer.body["resources"] != json!([]) {
                failures.push(format!(
                    "{label} GET {path}: expected 200 and no resources, got {} {}",
                    answer.status, answer.body
                ));
            }
        }

        // A long query string is still just a filter.
        let long_filter = format!("/v3/organizations?names={}", "a".repeat(6000));
        let answer = send(&harness, Method::GET, &long_filter, &admin, None).await;
        if answer.status != 200 || answer.body["resources"] != json!([]) {
            failures.push(format!(
                "{label} long filter: {} {}",
                answer.status, answer.body
            ));
        }

        // Methods a resource does not have: CC's 404 CF-NotFound "Unknown request".
        for (method, path) in [
            (Method::PUT, "/v3/organizations".to_owned()),
            (Method::DELETE, "/v3/organizations".to_owned()),
            (Method::POST, org_path.clone()),
            (Method::PATCH, format!("/v3/roles/{role}")),
            (Method::POST, "/v3/feature_flags".to_owned()),
            (
                Method::DELETE,
                "/v3/feature_flags/user_org_creation".to_owned(),
            ),
            (Method::POST, "/v3/stacks/x".to_owned()),
            (Method::PATCH, "/".to_owned()),
            (Method::POST, "/v3/info".to_owned()),
        ] {
            let answer = send(
                &harness,
                method.clone(),
                &path,
                &admin,
                Some(b"{}".to_vec()),
            )
            .await;
            assert_answer(
                &mut failures,
                &format!("{label} {method} {path}"),
                &answer,
                (404, "CF-NotFound", Some("Unknown request")),
            );
        }

        // Tokens: garbage, wrong scheme, no Cloud Controller scopes.
        let alice = harness.issuer.add_user("alice", "uaa");
        let no_scopes = harness
            .issuer
            .token_for(&alice, &harness.issuer.spec(&["openid", "uaa.user"]));
        for token in [
            "garbage",
            "a.b.c",
            "eyJhbGciOiJub25lIn0.eyJleHAiOjF9.",
            "tökén",
        ] {
            for (method, path) in [
                (Method::GET, "/v3/organizations"),
                (Method::POST, "/v3/roles"),
                (Method::DELETE, org_path.as_str()),
            ] {
                let answer =
                    send(&harness, method.clone(), path, token, Some(b"{}".to_vec())).await;
                assert_answer(
                    &mut failures,
                    &format!("{label} {method} {path} token {token:?}"),
                    &answer,
                    (401, "CF-InvalidAuthToken", Some("Invalid Auth Token")),
                );
            }
        }
        for (method, path) in [
            (Method::GET, "/v3/organizations"),
            (Method::GET, org_path.as_str()),
            (Method::POST, "/v3/organizations"),
            (Method::PATCH, "/v3/feature_flags/user_org_creation"),
            (Method::DELETE, org_path.as_str()),
        ] {
            let answer = send(
                &harness,
                method.clone(),
                path,
                &no_scopes,
                Some(json!({"name": "x"}).to_string().into_bytes()),
            )
            .await;
            assert_answer(
                &mut failures,
                &format!("{label} {method} {path} without scopes"),
                &answer,
                (403, "CF-NotAuthorized", None),
            );
        }
        let basic = harness
            .http
            .get(format!("{}/v3/organizations", harness.base))
            .header("Authorization", "Basic YWRtaW46YWRtaW4=")
            .send()
            .await
            .unwrap();
        if basic.status().as_u16() != 401 {
            failures.push(format!("{label} basic auth: {}", basic.status()));
        }

        assert!(
            failures.is_empty(),
            "{} wrong answers:\n{}",
            failures.len(),
            failures.join("\n")
        );
        assert_eq!(
            snapshot(&harness).await,
            before,
            "{label}: bad input changed state"
        );
        harness.stop().await;
    }
}

/// An encoded NUL in any path or query string — apps, routes, packages, service endpoints, v2 —
/// is answered before a handler runs (PostgreSQL cannot even compare text with a NUL): 404 for a
/// path, 400 for a query, in the API version's own error format.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nul_characters_in_paths_and_queries_never_reach_the_database() {
    for database in databases() {
        let label = database.label();
        let harness = Harness::start(database).await;
        let admin = harness.admin_token.clone();
        let mut failures = Vec::new();
        for path in [
            "/v3/apps/%00",
            "/v3/apps/a%00b/processes",
            "/v3/routes/%00",
            "/v3/packages/%00",
            "/v3/service_instances/%00",
            "/v3/service_credential_bindings/%00",
            "/v3/organizations/%00",
        ] {
            let answer = send(&harness, Method::GET, path, &admin, None).await;
            assert_answer(
                &mut failures,
                &format!("{label} GET {path}"),
                &answer,
                (404, "CF-NotFound", Some("Unknown request")),
            );
        }
        for path in [
            "/v3/apps?names=a%00b",
            "/v3/routes?hosts=%00",
            "/v3/service_instances?names=%00",
            "/v3/organizations?names=%00",
            "/v3/users?usernames=%00&origins=uaa",
            "/v3/stacks?names=%00",
        ] {
            let answer = send(&harness, Method::GET, path, &admin, None).await;
            assert_answer(
                &mut failures,
                &format!("{label} GET {path}"),
                &answer,
                (400, "CF-BadQueryParameter", None),
            );
        }
        let answer = send(&harness, Method::GET, "/v2/organizations/%00", &admin, None).await;
        if answer.status != 404 || answer.body["error_code"] != "CF-NotFound" {
            failures.push(format!(
                "{label} GET /v2/organizations/%00: {} {:#}",
                answer.status, answer.body
            ));
        }
        assert!(failures.is_empty(), "{}", failures.join("\n"));
    }
}
