//! The login and roles flow against the real `uaa` crate: password grant as the cf CLI does it,
//! CC verifies UAA's tokens through `/token_keys`, and resolves usernames with its lookup client;
//! a UAA client gets an org role by its id, as `cf set-org-role … --client` gives it.

use std::net::TcpListener;

use serde_json::{json, Value};

use crate::support::{start_cc, Answer};

const UAA_CONFIG: &str = r#"
issuer_url: ISSUER
database_url: DATABASE
password_hash_cost: 4
users:
  - username: admin
    password: admin-secret
    groups: [cloud_controller.admin, cloud_controller.admin_read_only, cloud_controller.global_auditor, scim.read, scim.write, uaa.admin]
  - username: frank
    password: frank-secret
clients:
  - client_id: cf
    secret: ""
    authorized_grant_types: [password, refresh_token]
    scope: [openid, uaa.user, cloud_controller.read, cloud_controller.write, cloud_controller.admin, cloud_controller.admin_read_only, cloud_controller.global_auditor, scim.read, scim.write, uaa.admin]
  - client_id: cloud_controller_username_lookup
    secret: lookup-secret
    authorized_grant_types: [client_credentials]
    authorities: [scim.read, scim.userids]
"#;

async fn password_token(
    http: &reqwest::Client,
    uaa: &str,
    username: &str,
    password: &str,
) -> Value {
    let response = http
        .post(format!("{uaa}/oauth/token"))
        .basic_auth("cf", Some(""))
        .header("Accept", "application/json")
        .form(&[
            ("grant_type", "password"),
            ("username", username),
            ("password", password),
        ])
        .send()
        .await
        .expect("token request");
    assert!(
        response.status().is_success(),
        "token grant failed: {}",
        response.status()
    );
    response.json().await.unwrap()
}

async fn call(
    http: &reqwest::Client,
    method: reqwest::Method,
    url: String,
    token: &str,
    body: Option<Value>,
) -> Answer {
    let mut request = http
        .request(method, url)
        .header("Authorization", format!("bearer {token}"))
        .header("Content-Type", "application/json");
    if let Some(body) = body {
        request = request.body(body.to_string());
    }
    let response = request.send().await.unwrap();
    let status = response.status().as_u16();
    let headers = response.headers().clone();
    let text = response.text().await.unwrap();
    Answer {
        status,
        body: serde_json::from_str(&text).unwrap_or(Value::Null),
        headers,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn login_and_roles_with_the_real_uaa() {
    for database in crate::support::databases() {
        let uaa_dir = tempfile::tempdir().unwrap();
        let uaa_listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let uaa_url = format!("http://{}", uaa_listener.local_addr().unwrap());
        let yaml = UAA_CONFIG.replace("ISSUER", &uaa_url).replace(
            "DATABASE",
            &format!("sqlite://{}", uaa_dir.path().join("uaa.sqlite3").display()),
        );
        let uaa_config: uaa::UaaConfig = serde_yaml::from_str(&yaml).expect("uaa config");
        let uaa_server = uaa::run(uaa_config, uaa_listener)
            .await
            .expect("uaa starts");
        let (cc, base) = start_cc(database.url(), &uaa_url).await;
        let http = reqwest::Client::new();

        // `cf login`: root document, then the password grant at the advertised login URL.
        let root: Value = http
            .get(format!("{base}/"))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        let login = root["links"]["login"]["href"].as_str().unwrap().to_owned();
        assert_eq!(login, uaa_url);
        let grant = password_token(&http, &login, "admin", "admin-secret").await;
        assert_eq!(grant["token_type"], "bearer");
        let admin = grant["access_token"].as_str().unwrap().to_owned();

        let org = call(
            &http,
            reqwest::Method::POST,
            format!("{base}/v3/organizations"),
            &admin,
            Some(json!({"name": "uaa-org", "suspended": false})),
        )
        .await;
        assert_eq!(org.status, 201, "{:#}", org.body);
        let org_guid = org.body["guid"].as_str().unwrap().to_owned();
        let space = call(
            &http,
            reqwest::Method::POST,
            format!("{base}/v3/spaces"),
            &admin,
            Some(json!({"name": "dev", "relationships": {"organization": {"data": {"guid": org_guid}}}})),
        )
        .await;
        assert_eq!(space.status, 201, "{:#}", space.body);
        let space_guid = space.body["guid"].as_str().unwrap().to_owned();

        // `cf set-space-role frank uaa-org dev SpaceDeveloper`: org_user by username, then the space role.
        for (role_type, relation, guid) in [
            ("organization_user", "organization", &org_guid),
            ("space_developer", "space", &space_guid),
        ] {
            let role = call(
                &http,
                reqwest::Method::POST,
                format!("{base}/v3/roles"),
                &admin,
                Some(json!({"type": role_type, "relationships": {"user": {"data": {"username": "frank", "origin": "uaa"}}, relation: {"data": {"guid": guid}}}})),
            )
            .await;
            assert_eq!(role.status, 201, "{role_type}: {:#}", role.body);
        }
        let again = call(
            &http,
            reqwest::Method::POST,
            format!("{base}/v3/roles"),
            &admin,
            Some(json!({"type": "organization_user", "relationships": {"user": {"data": {"username": "frank"}}, "organization": {"data": {"guid": org_guid}}}})),
        )
        .await;
        again.assert_v3_error(
            422,
            "CF-UnprocessableEntity",
            "User 'frank' already has 'organization_user' role in organization 'uaa-org'.",
        );

        // `cf org-users`: the username came from UAA.
        let org_users = call(
            &http,
            reqwest::Method::GET,
            format!("{base}/v3/roles?include=user&organization_guids={org_guid}"),
            &admin,
            None,
        )
        .await;
        assert_eq!(
            org_users.body["included"]["users"][0]["username"], "frank",
            "{:#}",
            org_users.body
        );

        // `cf set-org-role cloud_controller_username_lookup uaa-org OrgAuditor --client`: the
        // CLI checks the client in UAA, then names it by GUID; CC makes a user row for it.
        let client_id = "cloud_controller_username_lookup";
        let client = call(
            &http,
            reqwest::Method::GET,
            format!("{uaa_url}/oauth/clients/{client_id}"),
            &admin,
            None,
        )
        .await;
        assert_eq!(client.status, 200, "{:#}", client.body);
        let role = call(
            &http,
            reqwest::Method::POST,
            format!("{base}/v3/roles"),
            &admin,
            Some(json!({"type": "organization_auditor", "relationships": {"user": {"data": {"guid": client_id}}, "organization": {"data": {"guid": org_guid}}}})),
        )
        .await;
        assert_eq!(role.status, 201, "{:#}", role.body);
        assert_eq!(
            role.body["relationships"]["user"]["data"]["guid"],
            client_id
        );
        // `cf org-users`: a client has no username or origin; CC presents it by its id, and the
        // CLI prints `cloud_controller_username_lookup (client)`.
        let auditors = call(
            &http,
            reqwest::Method::GET,
            format!("{base}/v3/roles?include=user&organization_guids={org_guid}&types=organization_auditor"),
            &admin,
            None,
        )
        .await;
        assert_eq!(auditors.status, 200, "{:#}", auditors.body);
        let user = &auditors.body["included"]["users"][0];
        assert_eq!(user["guid"], client_id, "{:#}", auditors.body);
        assert_eq!(user["presentation_name"], client_id);
        assert_eq!(user["username"], Value::Null);
        assert_eq!(user["origin"], Value::Null);
        let again = call(
            &http,
            reqwest::Method::POST,
            format!("{base}/v3/roles"),
            &admin,
            Some(json!({"type": "organization_auditor", "relationships": {"user": {"data": {"guid": client_id}}, "organization": {"data": {"guid": org_guid}}}})),
        )
        .await;
        again.assert_v3_error(
            422,
            "CF-UnprocessableEntity",
            &format!("User '{client_id}' already has 'organization_auditor' role in organization 'uaa-org'."),
        );

        // frank logs in and sees exactly his org and space (what `cf login` then targets).
        let frank = password_token(&http, &login, "frank", "frank-secret").await["access_token"]
            .as_str()
            .unwrap()
            .to_owned();
        let orgs = call(
            &http,
            reqwest::Method::GET,
            format!("{base}/v3/organizations?order_by=name"),
            &frank,
            None,
        )
        .await;
        assert_eq!(orgs.status, 200, "{:#}", orgs.body);
        let names: Vec<&str> = orgs.body["resources"]
            .as_array()
            .unwrap()
            .iter()
            .map(|org| org["name"].as_str().unwrap())
            .collect();
        assert_eq!(names, ["uaa-org"]);
        let spaces = call(
            &http,
            reqwest::Method::GET,
            format!("{base}/v3/spaces?organization_guids={org_guid}&order_by=name"),
            &frank,
            None,
        )
        .await;
        assert_eq!(spaces.body["resources"][0]["guid"], space_guid.as_str());
        // … but is no admin.
        let denied = call(
            &http,
            reqwest::Method::POST,
            format!("{base}/v3/organizations"),
            &frank,
            Some(json!({"name": "franks"})),
        )
        .await;
        assert_eq!(denied.status, 403);

        cc.stop().await;
        uaa_server.stop().await;
    }
}
