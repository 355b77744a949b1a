//! Read-only v2 apps (`/v2/apps`, `/v2/spaces/:g/apps`) as views of v3 apps and their web
//! processes, packages and builds; the space's service lists (`services`, `service_instances`)
//! and `/v2/spaces/:g/summary`, as cf v6 `space`, `marketplace`, `services` and `apps` read
//! them; and the v2 errors for unknown GUIDs and bad queries.

use serde_json::{json, Value};

use crate::packages::{file, make_zip, new_package, upload};
use crate::services::{make_public, register, start, TestBroker};
use crate::support::{check, databases, Answer, Harness};

const MISSING: &str = "00000000-0000-4000-8000-000000000000";

/// Asserts a v2 error body.
fn v2_error(answer: &Answer, status: u16, code: u64, error_code: &str, description: &str) {
    assert_eq!(
        (answer.status, &answer.body),
        (
            status,
            &json!({"code": code, "description": description, "error_code": error_code})
        ),
    );
}

async fn create_app(harness: &Harness, token: &str, space: &str, name: &str) -> String {
    let app = harness
        .post(
            "/v3/apps",
            token,
            json!({"name": name, "relationships": {"space": {"data": {"guid": space}}}}),
        )
        .await;
    assert_eq!(app.status, 201, "{:#}", app.body);
    app.body["guid"].as_str().unwrap().to_owned()
}

fn names(list: &Value) -> Vec<String> {
    list["resources"]
        .as_array()
        .unwrap_or_else(|| panic!("not a v2 list: {list:#}"))
        .iter()
        .map(|resource| resource["entity"]["name"].as_str().unwrap().to_owned())
        .collect()
}

/// A space developer, a space auditor, an org manager (of the space's org) and an outsider
/// (org user elsewhere): (org, space, developer, auditor, manager, outsider).
async fn people(harness: &Harness) -> (String, String, String, String, String, String) {
    let org = harness.create_org("v2-apps-org").await;
    let space = harness.create_space(&org, "v2-apps-space").await;
    let mut tokens = Vec::new();
    for (name, role, scope, target) in [
        ("dev", "space_developer", "space", &space),
        ("aud", "space_auditor", "space", &space),
        ("boss", "organization_manager", "organization", &org),
    ] {
        let user = harness.issuer.add_user(name, "uaa");
        let answer = harness
            .grant("organization_user", name, ("organization", &org))
            .await;
        assert_eq!(answer.status, 201, "{:#}", answer.body);
        let answer = harness.grant(role, name, (scope, target)).await;
        assert_eq!(answer.status, 201, "{:#}", answer.body);
        tokens.push(harness.issuer.user_token(&user));
    }
    let elsewhere = harness.create_org("v2-apps-elsewhere").await;
    let outsider = harness.issuer.add_user("olga", "uaa");
    let answer = harness
        .grant("organization_user", "olga", ("organization", &elsewhere))
        .await;
    assert_eq!(answer.status, 201, "{:#}", answer.body);
    let outsider = harness.issuer.user_token(&outsider);
    let manager = tokens.pop().unwrap();
    let auditor = tokens.pop().unwrap();
    let developer = tokens.pop().unwrap();
    (org, space, developer, auditor, manager, outsider)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn v2_apps_present_the_web_process_and_filter_like_cc() {
    for database in databases() {
        let harness = Harness::start(database).await;
        let admin = harness.admin_token.clone();
        let (org, space, developer, ..) = people(&harness).await;
        let app = create_app(&harness, &developer, &space, "web-app").await;
        let other_space = harness.create_space(&org, "v2-apps-other").await;
        create_app(&harness, &admin, &other_space, "other-app").await;
        create_app(&harness, &admin, &space, "another-app").await;

        // The web process carries instances, memory, disk, command and health check.
        let scaled = harness
            .post(
                &format!("/v3/apps/{app}/processes/web/actions/scale"),
                &developer,
                json!({"instances": 3, "memory_in_mb": 256, "disk_in_mb": 512}),
            )
            .await;
        assert_eq!(scaled.status, 202, "{:#}", scaled.body);
        let process = scaled.body["guid"].as_str().unwrap().to_owned();
        let updated = harness
            .patch(
                &format!("/v3/processes/{process}"),
                &developer,
                json!({"command": "./run --fast", "health_check": {"type": "http", "data": {"endpoint": "/health", "timeout": 30}}}),
            )
            .await;
        assert_eq!(updated.status, 200, "{:#}", updated.body);
        let env = harness
            .patch(
                &format!("/v3/apps/{app}/environment_variables"),
                &developer,
                json!({"var": {"GREETING": "hello"}}),
            )
            .await;
        assert_eq!(env.status, 200, "{:#}", env.body);

        let got = harness.get(&format!("/v2/apps/{app}"), &developer).await;
        assert_eq!(got.status, 200, "{:#}", got.body);
        check(
            &got.body,
            &harness.base,
            json!({
                "metadata": {"guid": "<guid>", "url": "/v2/apps/<guid>", "created_at": "<time>", "updated_at": "<time>"},
                "entity": {
                    "name": "web-app",
                    "production": false,
                    "space_guid": "<guid>",
                    "stack_guid": "<guid>",
                    "buildpack": null,
                    "detected_buildpack": null,
                    "detected_buildpack_guid": null,
                    "environment_json": {"GREETING": "hello"},
                    "memory": 256,
                    "instances": 3,
                    "disk_quota": 512,
                    "state": "STOPPED",
                    "version": "<guid>",
                    "command": "./run --fast",
                    "console": false,
                    "debug": null,
                    "staging_task_id": null,
                    "package_state": "PENDING",
                    "health_check_type": "http",
                    "health_check_timeout": 30,
                    "health_check_http_endpoint": "/health",
                    "staging_failed_reason": null,
                    "staging_failed_description": null,
                    "diego": true,
                    "docker_image": null,
                    "docker_credentials": {"username": null, "password": null},
                    "package_updated_at": null,
                    "detected_start_command": "",
                    "enable_ssh": true,
                    "ports": [8080],
                    "space_url": "/v2/spaces/<guid>",
                    "stack_url": "/v2/stacks/<guid>",
                    "routes_url": "/v2/apps/<guid>/routes",
                    "events_url": "/v2/apps/<guid>/events",
                    "service_bindings_url": "/v2/apps/<guid>/service_bindings",
                    "route_mappings_url": "/v2/apps/<guid>/route_mappings",
                },
            }),
        );
        assert_eq!(got.body["metadata"]["guid"], app.as_str());
        assert_eq!(got.body["entity"]["space_guid"], space.as_str());
        let stack_guid = got.body["entity"]["stack_guid"]
            .as_str()
            .unwrap()
            .to_owned();
        let stack = harness
            .get(&format!("/v3/stacks/{stack_guid}"), &admin)
            .await;
        assert_eq!(stack.status, 200, "{:#}", stack.body);

        // package_state follows the package and the build: PENDING with bits uploaded, FAILED
        // with the build's error once staging fails (there is no DEA here).
        let package = new_package(&harness, &app, &developer).await;
        let bits = make_zip(&[file("index.html", b"hi")]);
        let uploaded = upload(&harness, &package, &developer, None, Some(&bits)).await;
        assert_eq!(uploaded.status, 200, "{:#}", uploaded.body);
        let pending = harness.get(&format!("/v2/apps/{app}"), &developer).await;
        assert_eq!(pending.body["entity"]["package_state"], "PENDING");
        assert!(
            pending.body["entity"]["package_updated_at"].is_string(),
            "{:#}",
            pending.body
        );
        let build = harness
            .post(
                "/v3/builds",
                &developer,
                json!({"package": {"guid": package}}),
            )
            .await;
        assert_eq!(build.status, 201, "{:#}", build.body);
        assert_eq!(build.body["state"], "FAILED", "{:#}", build.body);
        let failed = harness.get(&format!("/v2/apps/{app}"), &developer).await;
        let entity = &failed.body["entity"];
        assert_eq!(entity["package_state"], "FAILED", "{entity:#}");
        assert_eq!(entity["staging_failed_reason"], "StagingError");
        assert_eq!(
            entity["staging_failed_description"],
            "Staging error: no available stagers"
        );
        assert_eq!(entity["staging_task_id"], build.body["guid"]);
        // A newer package is not staged yet: PENDING again.
        let newer = new_package(&harness, &app, &developer).await;
        let uploaded = upload(&harness, &newer, &developer, None, Some(&bits)).await;
        assert_eq!(uploaded.status, 200, "{:#}", uploaded.body);
        let again = harness.get(&format!("/v2/apps/{app}"), &developer).await;
        assert_eq!(again.body["entity"]["package_state"], "PENDING");

        // `q` on name, space_guid, organization_guid and stack_guid, ANDed.
        let all = harness.get("/v2/apps", &admin).await;
        assert_eq!(names(&all.body), ["web-app", "other-app", "another-app"]);
        let by_name = harness.get("/v2/apps?q=name:web-app", &admin).await;
        assert_eq!(names(&by_name.body), ["web-app"]);
        let by_space = harness
            .get(&format!("/v2/apps?q=space_guid:{other_space}"), &admin)
            .await;
        assert_eq!(names(&by_space.body), ["other-app"]);
        let cf_lookup = harness
            .get(
                &format!("/v2/apps?q=name:another-app&q=space_guid:{space}"),
                &admin,
            )
            .await;
        assert_eq!(names(&cf_lookup.body), ["another-app"]);
        let wrong_space = harness
            .get(
                &format!("/v2/apps?q=name:other-app;space_guid:{space}"),
                &admin,
            )
            .await;
        assert_eq!(wrong_space.body["total_results"], 0);
        let by_org = harness
            .get(
                &format!("/v2/apps?q=organization_guid:{org}&order-by=name"),
                &admin,
            )
            .await;
        assert_eq!(names(&by_org.body), ["another-app", "other-app", "web-app"]);
        let by_stack = harness
            .get(&format!("/v2/apps?q=stack_guid:{stack_guid}"), &admin)
            .await;
        assert_eq!(by_stack.body["total_results"], 3);
        let no_stack = harness
            .get(&format!("/v2/apps?q=stack_guid:{MISSING}"), &admin)
            .await;
        assert_eq!(no_stack.body["total_results"], 0);
        let in_list = harness
            .get("/v2/apps?q=name%20IN%20web-app,other-app", &admin)
            .await;
        assert_eq!(names(&in_list.body), ["web-app", "other-app"]);

        // Paging keeps `q` in next_url.
        let first = harness
            .get(
                &format!("/v2/apps?q=organization_guid:{org}&results-per-page=2"),
                &admin,
            )
            .await;
        assert_eq!(first.body["total_results"], 3);
        assert_eq!(first.body["total_pages"], 2);
        assert_eq!(names(&first.body), ["web-app", "other-app"]);
        let next = first.body["next_url"].as_str().unwrap().to_owned();
        assert!(next.starts_with("/v2/apps?"), "{next}");
        assert!(next.contains("q=organization_guid"), "{next}");
        let second = harness.get(&next, &admin).await;
        assert_eq!(names(&second.body), ["another-app"]);
        assert!(second.body["next_url"].is_null());
        assert!(second.body["prev_url"].is_string());

        // The space's apps, as legacy cf looks one up.
        let in_space = harness
            .get(
                &format!("/v2/spaces/{space}/apps?q=name:web-app&inline-relations-depth=1"),
                &developer,
            )
            .await;
        assert_eq!(in_space.status, 200, "{:#}", in_space.body);
        assert_eq!(names(&in_space.body), ["web-app"]);
        let direct = harness.get(&format!("/v2/apps/{app}"), &developer).await;
        assert_eq!(in_space.body["resources"][0], direct.body);
        let space_paged = harness
            .get(
                &format!("/v2/spaces/{space}/apps?results-per-page=1"),
                &developer,
            )
            .await;
        assert_eq!(space_paged.body["total_results"], 2);
        let next = space_paged.body["next_url"].as_str().unwrap();
        assert!(
            next.starts_with(&format!("/v2/spaces/{space}/apps?")),
            "{next}"
        );

        // Bad input: v2 errors, never a 500.
        v2_error(
            &harness.get(&format!("/v2/apps/{MISSING}"), &admin).await,
            404,
            100004,
            "CF-AppNotFound",
            &format!("The app could not be found: {MISSING}"),
        );
        v2_error(
            &harness.get(&format!("/v2/apps/{process}"), &admin).await,
            404,
            100004,
            "CF-AppNotFound",
            &format!("The app could not be found: {process}"),
        );
        let garbage_guid = harness.get("/v2/apps/%ZZ%20x", &admin).await;
        assert_eq!(garbage_guid.status, 404, "{:#}", garbage_guid.body);
        assert_eq!(garbage_guid.body["error_code"], "CF-AppNotFound");
        v2_error(
            &harness
                .get(&format!("/v2/spaces/{MISSING}/apps"), &admin)
                .await,
            404,
            40004,
            "CF-SpaceNotFound",
            &format!("The app space could not be found: {MISSING}"),
        );
        for bad in [
            "/v2/apps?q=colour:blue",
            "/v2/apps?q=memory>5",
            "/v2/apps?page=0",
            "/v2/apps?page=many",
            "/v2/apps?results-per-page=101",
            "/v2/apps?results-per-page=-1",
            "/v2/apps?order-direction=sideways",
            "/v2/apps?order-by=memory",
            "/v2/apps?inline-relations-depth=4",
        ] {
            let answer = harness.get(bad, &admin).await;
            assert_eq!(answer.status, 400, "{bad}: {:#}", answer.body);
            assert_eq!(
                answer.body["error_code"], "CF-BadQueryParameter",
                "{bad}: {:#}",
                answer.body
            );
        }
        let bad_in_space = harness
            .get(&format!("/v2/spaces/{space}/apps?q=colour:blue"), &admin)
            .await;
        assert_eq!(bad_in_space.body["error_code"], "CF-BadQueryParameter");
        let unauthenticated = harness
            .request(reqwest::Method::GET, "/v2/apps", None, None)
            .await;
        assert_eq!(unauthenticated.status, 401, "{:#}", unauthenticated.body);
        assert_eq!(unauthenticated.body["error_code"], "CF-NotAuthenticated");
        harness.stop().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn v2_apps_are_visible_and_redacted_as_in_v3() {
    for database in databases() {
        let harness = Harness::start(database).await;
        let (_org, space, developer, auditor, manager, outsider) = people(&harness).await;
        let app = create_app(&harness, &developer, &space, "secret-app").await;
        let env = harness
            .patch(
                &format!("/v3/apps/{app}/environment_variables"),
                &developer,
                json!({"var": {"PASSWORD": "hunter2"}}),
            )
            .await;
        assert_eq!(env.status, 200, "{:#}", env.body);
        let hidden = json!({"redacted_message": "[PRIVATE DATA HIDDEN]"});

        for (who, token, environment) in [
            (
                "admin",
                &harness.admin_token,
                json!({"PASSWORD": "hunter2"}),
            ),
            ("developer", &developer, json!({"PASSWORD": "hunter2"})),
            ("auditor", &auditor, hidden.clone()),
            ("org manager", &manager, hidden.clone()),
        ] {
            // v3 decides the same way: who may read the environment.
            let v3 = harness
                .get(&format!("/v3/apps/{app}/environment_variables"), token)
                .await;
            assert_eq!(
                v3.status == 200,
                environment != hidden,
                "{who}: {:#}",
                v3.body
            );
            let got = harness.get(&format!("/v2/apps/{app}"), token).await;
            assert_eq!(got.status, 200, "{who}: {:#}", got.body);
            assert_eq!(got.body["entity"]["environment_json"], environment, "{who}");
            let listed = harness.get("/v2/apps", token).await;
            assert_eq!(names(&listed.body), ["secret-app"], "{who}");
            assert_eq!(
                listed.body["resources"][0]["entity"]["environment_json"], environment,
                "{who}"
            );
            let in_space = harness
                .get(&format!("/v2/spaces/{space}/apps"), token)
                .await;
            assert_eq!(names(&in_space.body), ["secret-app"], "{who}");
            let summary = harness
                .get(&format!("/v2/spaces/{space}/summary"), token)
                .await;
            assert_eq!(summary.status, 200, "{who}: {:#}", summary.body);
            assert_eq!(
                summary.body["apps"][0]["environment_json"], environment,
                "{who}"
            );
        }

        // Someone without a role in the space or org sees neither the app nor the space.
        v2_error(
            &harness.get(&format!("/v2/apps/{app}"), &outsider).await,
            404,
            100004,
            "CF-AppNotFound",
            &format!("The app could not be found: {app}"),
        );
        let listed = harness.get("/v2/apps", &outsider).await;
        assert_eq!(listed.status, 200, "{:#}", listed.body);
        assert_eq!(listed.body["total_results"], 0);
        assert_eq!(listed.body["total_pages"], 1);
        for path in [
            format!("/v2/spaces/{space}/apps"),
            format!("/v2/spaces/{space}/summary"),
            format!("/v2/spaces/{space}/services"),
            format!("/v2/spaces/{space}/service_instances"),
        ] {
            v2_error(
                &harness.get(&path, &outsider).await,
                404,
                40004,
                "CF-SpaceNotFound",
                &format!("The app space could not be found: {space}"),
            );
        }
        harness.stop().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn v2_space_services_instances_and_summary() {
    for database in databases() {
        let broker = TestBroker::start().await;
        let harness = start(database).await;
        let admin = harness.admin_token.clone();
        let (org, space, developer, auditor, ..) = people(&harness).await;
        register(&harness, "kiln-broker", &broker.url).await;

        // No plan is usable in the space yet: the space and org lists are empty, although an
        // admin sees every offering in `/v2/services`.
        let empty = harness
            .get(&format!("/v2/spaces/{space}/services"), &developer)
            .await;
        assert_eq!(empty.status, 200, "{:#}", empty.body);
        assert_eq!(empty.body["total_results"], 0);
        let everything = harness.get("/v2/services", &admin).await;
        assert_eq!(everything.body["total_results"], 2);
        let admin_in_space = harness
            .get(&format!("/v2/spaces/{space}/services"), &admin)
            .await;
        assert_eq!(admin_in_space.body["total_results"], 0);

        make_public(&harness, "small").await;
        let services = harness
            .get(&format!("/v2/spaces/{space}/services"), &developer)
            .await;
        assert_eq!(services.status, 200, "{:#}", services.body);
        assert_eq!(services.body["total_results"], 1);
        let offering = &services.body["resources"][0];
        assert_eq!(offering["entity"]["label"], "kiln-db");
        assert_eq!(offering["entity"]["service_broker_name"], "kiln-broker");
        // The same presentation as `/v2/services/:guid`.
        let guid = offering["metadata"]["guid"].as_str().unwrap();
        let direct = harness
            .get(&format!("/v2/services/{guid}"), &developer)
            .await;
        assert_eq!(&direct.body, offering);
        let by_label = harness
            .get(
                &format!("/v2/spaces/{space}/services?q=label:kiln-db"),
                &developer,
            )
            .await;
        assert_eq!(by_label.body["total_results"], 1);
        let other_label = harness
            .get(
                &format!("/v2/spaces/{space}/services?q=label:kiln-logs"),
                &developer,
            )
            .await;
        assert_eq!(other_label.body["total_results"], 0);
        let org_services = harness
            .get(&format!("/v2/organizations/{org}/services"), &auditor)
            .await;
        assert_eq!(org_services.status, 200, "{:#}", org_services.body);
        assert_eq!(org_services.body["resources"][0], *offering);
        // A plan made visible to this org only brings its offering into this org's lists.
        let drain = crate::services::plan_guid(&harness, "drain").await;
        let visibility = harness
            .post(
                "/v2/service_plan_visibilities",
                &admin,
                json!({"service_plan_guid": drain, "organization_guid": org}),
            )
            .await;
        assert_eq!(visibility.status, 201, "{:#}", visibility.body);
        let labels = |list: &Value| -> Vec<String> {
            list["resources"]
                .as_array()
                .unwrap()
                .iter()
                .map(|resource| resource["entity"]["label"].as_str().unwrap().to_owned())
                .collect()
        };
        let in_space = harness
            .get(&format!("/v2/spaces/{space}/services"), &developer)
            .await;
        assert_eq!(labels(&in_space.body), ["kiln-db", "kiln-logs"]);
        let in_org = harness
            .get(&format!("/v2/organizations/{org}/services"), &developer)
            .await;
        assert_eq!(labels(&in_org.body), ["kiln-db", "kiln-logs"]);
        let third = harness.create_org("v2-apps-third").await;
        let in_third = harness
            .get(&format!("/v2/organizations/{third}/services"), &admin)
            .await;
        assert_eq!(labels(&in_third.body), ["kiln-db"]);
        v2_error(
            &harness
                .get(&format!("/v2/organizations/{third}/services"), &developer)
                .await,
            404,
            30003,
            "CF-OrganizationNotFound",
            &format!("The organization could not be found: {third}"),
        );
        v2_error(
            &harness
                .get(&format!("/v2/organizations/{MISSING}/services"), &admin)
                .await,
            404,
            30003,
            "CF-OrganizationNotFound",
            &format!("The organization could not be found: {MISSING}"),
        );
        let bad_q = harness
            .get(&format!("/v2/spaces/{space}/services?q=name:x"), &admin)
            .await;
        assert_eq!(bad_q.status, 400, "{:#}", bad_q.body);
        assert_eq!(bad_q.body["error_code"], "CF-BadQueryParameter");

        // A managed and a user-provided instance, both bound to one app.
        let plan = crate::services::plan_guid(&harness, "small").await;
        let managed = harness
            .post(
                "/v2/service_instances?accepts_incomplete=true",
                &developer,
                json!({"name": "db", "space_guid": space, "service_plan_guid": plan}),
            )
            .await;
        assert_eq!(managed.status, 201, "{:#}", managed.body);
        let provided = harness
            .post(
                "/v2/user_provided_service_instances",
                &developer,
                json!({"name": "creds", "space_guid": space, "credentials": {"user": "u"}}),
            )
            .await;
        assert_eq!(provided.status, 201, "{:#}", provided.body);
        let app = create_app(&harness, &developer, &space, "bound-app").await;
        create_app(&harness, &developer, &space, "lonely-app").await;
        for instance in [&managed, &provided] {
            let bound = harness
                .post(
                    "/v2/service_bindings",
                    &developer,
                    json!({"app_guid": app, "service_instance_guid": instance.body["metadata"]["guid"]}),
                )
                .await;
            assert_eq!(bound.status, 201, "{:#}", bound.body);
        }

        let managed_only = harness
            .get(&format!("/v2/spaces/{space}/service_instances"), &auditor)
            .await;
        assert_eq!(names(&managed_only.body), ["db"]);
        let with_provided = harness
            .get(
                &format!("/v2/spaces/{space}/service_instances?return_user_provided_service_instances=true"),
                &auditor,
            )
            .await;
        assert_eq!(names(&with_provided.body), ["db", "creds"]);
        // User-provided credentials only for those who may read the space's secrets, in lists
        // as for a single instance.
        assert_eq!(
            with_provided.body["resources"][1]["entity"]["credentials"],
            json!({"redacted_message": "[PRIVATE DATA HIDDEN]"})
        );
        let as_developer = harness
            .get(
                &format!("/v2/spaces/{space}/service_instances?return_user_provided_service_instances=true"),
                &developer,
            )
            .await;
        assert_eq!(
            as_developer.body["resources"][1]["entity"]["credentials"],
            json!({"user": "u"})
        );
        let listed_managed = harness
            .get(
                &format!(
                    "/v2/service_instances/{}",
                    managed.body["metadata"]["guid"].as_str().unwrap()
                ),
                &auditor,
            )
            .await;
        assert_eq!(with_provided.body["resources"][0], listed_managed.body);
        let cf_lookup = harness
            .get(
                &format!("/v2/spaces/{space}/service_instances?q=name:creds&return_user_provided_service_instances=true"),
                &developer,
            )
            .await;
        assert_eq!(names(&cf_lookup.body), ["creds"]);
        assert_eq!(
            cf_lookup.body["resources"][0]["entity"]["type"],
            "user_provided_service_instance"
        );
        let paged = harness
            .get(
                &format!("/v2/spaces/{space}/service_instances?return_user_provided_service_instances=true&results-per-page=1"),
                &developer,
            )
            .await;
        let next = paged.body["next_url"].as_str().unwrap();
        assert!(
            next.starts_with(&format!("/v2/spaces/{space}/service_instances?")),
            "{next}"
        );
        assert!(
            next.contains("return_user_provided_service_instances=true"),
            "{next}"
        );
        let second = harness.get(next, &developer).await;
        assert_eq!(names(&second.body), ["creds"]);
        let bad_q = harness
            .get(
                &format!("/v2/spaces/{space}/service_instances?q=colour:red"),
                &developer,
            )
            .await;
        assert_eq!(bad_q.body["error_code"], "CF-BadQueryParameter");

        // The summary: apps with their bound services, and the instances with plan and
        // offering (none for the user-provided one, which is how cf tells it apart).
        let summary = harness
            .get(&format!("/v2/spaces/{space}/summary"), &developer)
            .await;
        assert_eq!(summary.status, 200, "{:#}", summary.body);
        assert_eq!(summary.body["guid"], space.as_str());
        assert_eq!(summary.body["name"], "v2-apps-space");
        let apps = summary.body["apps"].as_array().unwrap();
        assert_eq!(apps.len(), 2);
        let bound_app = &apps[0];
        assert_eq!(bound_app["name"], "bound-app");
        assert_eq!(bound_app["guid"], app.as_str());
        assert_eq!(bound_app["service_count"], 2);
        assert_eq!(bound_app["service_names"], json!(["db", "creds"]));
        assert_eq!(bound_app["running_instances"], 0);
        assert_eq!(bound_app["urls"], json!([]));
        assert_eq!(bound_app["routes"], json!([]));
        assert_eq!(bound_app["state"], "STOPPED");
        assert_eq!(bound_app["instances"], 1);
        assert_eq!(bound_app["memory"], 1024);
        assert!(
            bound_app
                .as_object()
                .unwrap()
                .keys()
                .all(|key| !key.ends_with("_url")),
            "{bound_app:#}"
        );
        assert_eq!(apps[1]["service_count"], 0);
        check(
            &summary.body["services"],
            &harness.base,
            json!([
                {
                    "guid": "<guid>",
                    "name": "db",
                    "bound_app_count": 1,
                    "last_operation": {"type": "create", "state": "succeeded", "description": "", "created_at": "<time>", "updated_at": "<time>"},
                    "dashboard_url": "https://dash.example.com/x",
                    "maintenance_info": {},
                    "service_broker_name": "kiln-broker",
                    "service_plan": {
                        "guid": "<guid>",
                        "name": "small",
                        "maintenance_info": {},
                        "service": {"guid": "<guid>", "label": "kiln-db", "provider": null, "version": null},
                    },
                },
                {
                    "guid": "<guid>",
                    "name": "creds",
                    "bound_app_count": 1,
                    "last_operation": {"type": "create", "state": "succeeded", "description": "Operation succeeded", "created_at": "<time>", "updated_at": "<time>"},
                    "dashboard_url": null,
                    "maintenance_info": {},
                },
            ]),
        );
        assert_eq!(
            summary.body["services"][0]["service_plan"]["guid"],
            plan.as_str()
        );

        v2_error(
            &harness
                .get(&format!("/v2/spaces/{MISSING}/summary"), &admin)
                .await,
            404,
            40004,
            "CF-SpaceNotFound",
            &format!("The app space could not be found: {MISSING}"),
        );
        v2_error(
            &harness
                .get(&format!("/v2/spaces/{MISSING}/service_instances"), &admin)
                .await,
            404,
            40004,
            "CF-SpaceNotFound",
            &format!("The app space could not be found: {MISSING}"),
        );
        harness.stop().await;
        broker.stop().await;
    }
}
