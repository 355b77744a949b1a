//! Apps and processes: shapes, validation, filters, environment variables, scaling, stats of a
//! stopped app, delete jobs, and who may read and write them.

use serde_json::{json, Value};

use crate::support::{check, databases, Harness};

/// An org and a space, a developer and an auditor of that space, and an outsider (org user of
/// another org). Returns (space guid, developer token, auditor token, outsider token).
async fn space_with_people(harness: &Harness) -> (String, String, String, String) {
    let org = harness.create_org("acme").await;
    let space = harness.create_space(&org, "dev").await;
    let mut tokens = Vec::new();
    for (name, role) in [("dora", "space_developer"), ("audrey", "space_auditor")] {
        let user = harness.issuer.add_user(name, "uaa");
        let answer = harness
            .grant("organization_user", name, ("organization", &org))
            .await;
        assert_eq!(answer.status, 201, "{:#}", answer.body);
        let answer = harness.grant(role, name, ("space", &space)).await;
        assert_eq!(answer.status, 201, "{:#}", answer.body);
        tokens.push(harness.issuer.user_token(&user));
    }
    let other_org = harness.create_org("elsewhere").await;
    let outsider = harness.issuer.add_user("olga", "uaa");
    let answer = harness
        .grant("organization_user", "olga", ("organization", &other_org))
        .await;
    assert_eq!(answer.status, 201, "{:#}", answer.body);
    tokens.push(harness.issuer.user_token(&outsider));
    let outsider = tokens.pop().unwrap();
    let auditor = tokens.pop().unwrap();
    let developer = tokens.pop().unwrap();
    (space, developer, auditor, outsider)
}

fn app_body(name: &str, space: &str) -> Value {
    json!({"name": name, "relationships": {"space": {"data": {"guid": space}}}})
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn apps_lifecycle_validation_and_permissions() {
    for database in databases() {
        let harness = Harness::start(database).await;
        let (space, developer, auditor, outsider) = space_with_people(&harness).await;

        let created = harness
            .post(
                "/v3/apps",
                &developer,
                json!({
                    "name": "web-app",
                    "relationships": {"space": {"data": {"guid": space}}},
                    "lifecycle": {"type": "buildpack", "data": {"buildpacks": ["staticfile_buildpack"]}},
                    "environment_variables": {"GREETING": "hello"},
                }),
            )
            .await;
        assert_eq!(created.status, 201, "{:#}", created.body);
        check(
            &created.body,
            &harness.base,
            json!({
                "guid": "<guid>", "created_at": "<time>", "updated_at": "<time>",
                "name": "web-app", "state": "STOPPED",
                "lifecycle": {"type": "buildpack", "data": {"buildpacks": ["staticfile_buildpack"], "stack": "kiln-host"}},
                "relationships": {"space": {"data": {"guid": "<guid>"}}, "current_droplet": {"data": null}},
                "metadata": {"labels": {}, "annotations": {}},
                "links": {
                    "self": {"href": "<api>/v3/apps/<guid>"},
                    "environment_variables": {"href": "<api>/v3/apps/<guid>/environment_variables"},
                    "space": {"href": "<api>/v3/spaces/<guid>"},
                    "processes": {"href": "<api>/v3/apps/<guid>/processes"},
                    "packages": {"href": "<api>/v3/apps/<guid>/packages"},
                    "current_droplet": {"href": "<api>/v3/apps/<guid>/droplets/current"},
                    "droplets": {"href": "<api>/v3/apps/<guid>/droplets"},
                    "tasks": {"href": "<api>/v3/apps/<guid>/tasks"},
                    "start": {"href": "<api>/v3/apps/<guid>/actions/start", "method": "POST"},
                    "stop": {"href": "<api>/v3/apps/<guid>/actions/stop", "method": "POST"},
                    "clear_buildpack_cache": {"href": "<api>/v3/apps/<guid>/actions/clear_buildpack_cache", "method": "POST"},
                    "revisions": {"href": "<api>/v3/apps/<guid>/revisions"},
                    "deployed_revisions": {"href": "<api>/v3/apps/<guid>/revisions/deployed"},
                    "features": {"href": "<api>/v3/apps/<guid>/features"},
                },
            }),
        );
        let app = created.body["guid"].as_str().unwrap().to_owned();
        assert_eq!(
            created.body["relationships"]["space"]["data"]["guid"],
            space
        );

        // Validation and CC's exact messages.
        harness
            .post("/v3/apps", &developer, app_body("web-app", &space))
            .await
            .assert_v3_error(
                422,
                "CF-UnprocessableEntity",
                "App with the name 'web-app' already exists.",
            );
        harness
            .post("/v3/apps", &developer, app_body("", &space))
            .await
            .assert_v3_error(422, "CF-UnprocessableEntity", "Name can't be blank");
        harness
            .post("/v3/apps", &developer, json!({"name": "x", "colour": 1}))
            .await
            .assert_v3_error(422, "CF-UnprocessableEntity", "Unknown field(s): 'colour'");
        let mut bad_stack = app_body("x", &space);
        bad_stack["lifecycle"] = json!({"type": "buildpack", "data": {"stack": "nope"}});
        harness
            .post("/v3/apps", &developer, bad_stack)
            .await
            .assert_v3_error(
                422,
                "CF-UnprocessableEntity",
                "Lifecycle Stack must be an existing stack",
            );
        let mut vcap = app_body("x", &space);
        vcap["environment_variables"] = json!({"VCAP_SERVICES": "{}"});
        harness
            .post("/v3/apps", &developer, vcap)
            .await
            .assert_v3_error(
                422,
                "CF-UnprocessableEntity",
                "Environment variables cannot start with VCAP_",
            );

        // Who may write: auditors see but may not create; outsiders do not see the space.
        harness
            .post("/v3/apps", &auditor, app_body("x", &space))
            .await
            .assert_v3_error(
                403,
                "CF-NotAuthorized",
                "You are not authorized to perform the requested action",
            );
        harness
            .post("/v3/apps", &outsider, app_body("x", &space))
            .await
            .assert_v3_error(
                422,
                "CF-UnprocessableEntity",
                "Invalid space. Ensure that the space exists and you have access to it.",
            );
        let seen = harness.get(&format!("/v3/apps/{app}"), &auditor).await;
        assert_eq!(seen.status, 200, "{:#}", seen.body);
        harness
            .get(&format!("/v3/apps/{app}"), &outsider)
            .await
            .assert_v3_error(404, "CF-ResourceNotFound", "App not found");
        harness
            .patch(&format!("/v3/apps/{app}"), &auditor, json!({"name": "y"}))
            .await
            .assert_v3_error(
                403,
                "CF-NotAuthorized",
                "You are not authorized to perform the requested action",
            );

        // Lists and filters, as the CLI's app lookup uses them.
        let second = harness
            .post("/v3/apps", &developer, app_body("api", &space))
            .await;
        assert_eq!(second.status, 201, "{:#}", second.body);
        let lookup = harness
            .get(
                &format!("/v3/apps?names=web-app&space_guids={space}"),
                &developer,
            )
            .await;
        assert_eq!(lookup.status, 200, "{:#}", lookup.body);
        assert_eq!(lookup.body["pagination"]["total_results"], 1);
        assert_eq!(lookup.body["resources"][0]["guid"], app.as_str());
        let ordered = harness
            .get(
                &format!("/v3/apps?space_guids={space}&order_by=name&per_page=1"),
                &auditor,
            )
            .await;
        assert_eq!(ordered.body["resources"][0]["name"], "api");
        assert_eq!(ordered.body["pagination"]["total_pages"], 2);
        let hidden = harness.get("/v3/apps", &outsider).await;
        assert_eq!(hidden.body["pagination"]["total_results"], 0);
        assert_eq!(hidden.body["resources"], json!([]));
        let included = harness
            .get("/v3/apps?include=space.organization", &harness.admin_token)
            .await;
        assert_eq!(
            included.body["included"]["organizations"][0]["name"],
            "acme"
        );
        harness
            .get("/v3/apps?colour=blue", &developer)
            .await
            .assert_v3_error(
                400,
                "CF-BadQueryParameter",
                "The query parameter is invalid: Unknown query parameter(s): 'colour'. Valid parameters are: 'page', 'per_page', 'order_by', 'names', 'guids', 'space_guids', 'organization_guids', 'stacks', 'lifecycle_type', 'include', 'label_selector'",
            );

        // Update: rename, lifecycle; a taken name is refused.
        let renamed = harness
            .patch(
                &format!("/v3/apps/{app}"),
                &developer,
                json!({"name": "web", "lifecycle": {"type": "buildpack", "data": {"buildpacks": []}}}),
            )
            .await;
        assert_eq!(renamed.status, 200, "{:#}", renamed.body);
        assert_eq!(renamed.body["name"], "web");
        assert_eq!(renamed.body["lifecycle"]["data"]["buildpacks"], json!([]));
        assert_eq!(renamed.body["lifecycle"]["data"]["stack"], "kiln-host");
        harness
            .patch(
                &format!("/v3/apps/{app}"),
                &developer,
                json!({"name": "api"}),
            )
            .await
            .assert_v3_error(
                422,
                "CF-UnprocessableEntity",
                "App with the name 'api' already exists.",
            );

        // No droplet yet: exactly what the CLI needs; no routes mapped.
        harness
            .get(&format!("/v3/apps/{app}/droplets/current"), &developer)
            .await
            .assert_v3_error(404, "CF-ResourceNotFound", "Droplet not found");
        let routes = harness
            .get(&format!("/v3/apps/{app}/routes"), &developer)
            .await;
        assert_eq!(routes.status, 200, "{:#}", routes.body);
        assert_eq!(routes.body["resources"], json!([]));

        // Delete: a job; the app and its processes are gone.
        let processes = harness
            .get(&format!("/v3/apps/{app}/processes"), &developer)
            .await;
        let process = processes.body["resources"][0]["guid"]
            .as_str()
            .unwrap()
            .to_owned();
        harness
            .delete(&format!("/v3/apps/{app}"), &auditor)
            .await
            .assert_v3_error(
                403,
                "CF-NotAuthorized",
                "You are not authorized to perform the requested action",
            );
        let deleted = harness.delete(&format!("/v3/apps/{app}"), &developer).await;
        assert_eq!(deleted.status, 202, "{:#}", deleted.body);
        let job = harness
            .wait_job(&deleted.header("location").unwrap(), &developer)
            .await;
        assert_eq!(job["state"], "COMPLETE", "{job:#}");
        harness
            .get(&format!("/v3/apps/{app}"), &developer)
            .await
            .assert_v3_error(404, "CF-ResourceNotFound", "App not found");
        harness
            .get(&format!("/v3/processes/{process}"), &developer)
            .await
            .assert_v3_error(404, "CF-ResourceNotFound", "Process not found");

        // Deleting the space takes its remaining apps along.
        let deleted = harness
            .delete(&format!("/v3/spaces/{space}"), &harness.admin_token)
            .await;
        assert_eq!(deleted.status, 202, "{:#}", deleted.body);
        let job = harness
            .wait_job(&deleted.header("location").unwrap(), &harness.admin_token)
            .await;
        assert_eq!(job["state"], "COMPLETE", "{job:#}");
        let left = harness.get("/v3/apps", &harness.admin_token).await;
        assert_eq!(
            left.body["pagination"]["total_results"], 0,
            "{:#}",
            left.body
        );
        harness.stop().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn environment_variables_and_env() {
    for database in databases() {
        let harness = Harness::start(database).await;
        let (space, developer, auditor, _outsider) = space_with_people(&harness).await;
        let mut body = app_body("env-app", &space);
        body["environment_variables"] = json!({"A": "1"});
        let app = harness.post("/v3/apps", &developer, body).await;
        assert_eq!(app.status, 201, "{:#}", app.body);
        let app = app.body["guid"].as_str().unwrap().to_owned();
        let path = format!("/v3/apps/{app}/environment_variables");

        let patched = harness
            .patch(&path, &developer, json!({"var": {"B": "two", "A": null}}))
            .await;
        assert_eq!(patched.status, 200, "{:#}", patched.body);
        check(
            &patched.body,
            &harness.base,
            json!({
                "var": {"B": "two"},
                "links": {
                    "self": {"href": "<api>/v3/apps/<guid>/environment_variables"},
                    "app": {"href": "<api>/v3/apps/<guid>"},
                },
            }),
        );
        let read = harness.get(&path, &developer).await;
        assert_eq!(read.body["var"], json!({"B": "two"}));
        harness
            .patch(&path, &developer, json!({"var": {"PORT": "8080"}}))
            .await
            .assert_v3_error(422, "CF-UnprocessableEntity", "Var cannot set PORT");
        harness
            .patch(&path, &auditor, json!({"var": {"C": "3"}}))
            .await
            .assert_v3_error(
                403,
                "CF-NotAuthorized",
                "You are not authorized to perform the requested action",
            );
        // Auditors may see the app but not its secrets.
        harness.get(&path, &auditor).await.assert_v3_error(
            403,
            "CF-NotAuthorized",
            "You are not authorized to perform the requested action",
        );
        harness
            .get(&format!("/v3/apps/{app}/env"), &auditor)
            .await
            .assert_v3_error(
                403,
                "CF-NotAuthorized",
                "You are not authorized to perform the requested action",
            );

        let env = harness
            .get(&format!("/v3/apps/{app}/env"), &developer)
            .await;
        assert_eq!(env.status, 200, "{:#}", env.body);
        assert_eq!(env.body["environment_variables"], json!({"B": "two"}));
        assert_eq!(env.body["staging_env_json"], json!({}));
        assert_eq!(env.body["running_env_json"], json!({}));
        assert_eq!(env.body["system_env_json"], json!({"VCAP_SERVICES": {}}));
        let vcap = &env.body["application_env_json"]["VCAP_APPLICATION"];
        assert_eq!(vcap["application_name"], "env-app");
        assert_eq!(vcap["space_name"], "dev");
        assert_eq!(vcap["organization_name"], "acme");
        assert_eq!(vcap["limits"]["mem"], 1024);
        harness.stop().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn processes_scale_update_stats_and_sidecars() {
    for database in databases() {
        let harness = Harness::start(database).await;
        let (space, developer, auditor, outsider) = space_with_people(&harness).await;
        let app = harness
            .post("/v3/apps", &developer, app_body("proc-app", &space))
            .await;
        assert_eq!(app.status, 201, "{:#}", app.body);
        let app = app.body["guid"].as_str().unwrap().to_owned();

        let web = harness
            .get(&format!("/v3/apps/{app}/processes/web"), &auditor)
            .await;
        assert_eq!(web.status, 200, "{:#}", web.body);
        check(
            &web.body,
            &harness.base,
            json!({
                "guid": "<guid>", "created_at": "<time>", "updated_at": "<time>",
                "type": "web", "command": null, "instances": 1, "memory_in_mb": 1024,
                "disk_in_mb": 1024, "log_rate_limit_in_bytes_per_second": -1,
                "health_check": {"type": "port", "data": {"timeout": null, "invocation_timeout": null}},
                "readiness_health_check": {"type": "process", "data": {"invocation_timeout": null, "interval": null}},
                "relationships": {"app": {"data": {"guid": "<guid>"}}, "revision": {"data": null}},
                "metadata": {"labels": {}, "annotations": {}},
                "links": {
                    "self": {"href": "<api>/v3/processes/<guid>"},
                    "scale": {"href": "<api>/v3/processes/<guid>/actions/scale", "method": "POST"},
                    "app": {"href": "<api>/v3/apps/<guid>"},
                    "space": {"href": "<api>/v3/spaces/<guid>"},
                    "stats": {"href": "<api>/v3/processes/<guid>/stats"},
                },
            }),
        );
        let process = web.body["guid"].as_str().unwrap().to_owned();
        harness
            .get(&format!("/v3/apps/{app}/processes/worker"), &developer)
            .await
            .assert_v3_error(404, "CF-ResourceNotFound", "Process not found");
        harness
            .get(&format!("/v3/processes/{process}"), &outsider)
            .await
            .assert_v3_error(404, "CF-ResourceNotFound", "Process not found");

        // Scale through the app route, with only the given keys changing.
        let scaled = harness
            .post(
                &format!("/v3/apps/{app}/processes/web/actions/scale"),
                &developer,
                json!({"instances": 3, "memory_in_mb": 256}),
            )
            .await;
        assert_eq!(scaled.status, 202, "{:#}", scaled.body);
        assert_eq!(scaled.body["instances"], 3);
        assert_eq!(scaled.body["memory_in_mb"], 256);
        assert_eq!(scaled.body["disk_in_mb"], 1024);
        let scaled = harness
            .post(
                &format!("/v3/processes/{process}/actions/scale"),
                &developer,
                json!({"disk_in_mb": 512, "log_rate_limit_in_bytes_per_second": 1024}),
            )
            .await;
        assert_eq!(scaled.status, 202, "{:#}", scaled.body);
        assert_eq!(scaled.body["instances"], 3);
        assert_eq!(scaled.body["disk_in_mb"], 512);
        assert_eq!(scaled.body["log_rate_limit_in_bytes_per_second"], 1024);
        harness
            .post(
                &format!("/v3/processes/{process}/actions/scale"),
                &developer,
                json!({"instances": -1}),
            )
            .await
            .assert_v3_error(
                422,
                "CF-UnprocessableEntity",
                "Instances must be greater than or equal to 0",
            );
        harness
            .post(
                &format!("/v3/processes/{process}/actions/scale"),
                &developer,
                json!({"memory_in_mb": 0}),
            )
            .await
            .assert_v3_error(
                422,
                "CF-UnprocessableEntity",
                "Memory in mb must be greater than 0",
            );
        harness
            .post(
                &format!("/v3/processes/{process}/actions/scale"),
                &auditor,
                json!({"instances": 1}),
            )
            .await
            .assert_v3_error(
                403,
                "CF-NotAuthorized",
                "You are not authorized to perform the requested action",
            );

        // Update command and health check.
        let updated = harness
            .patch(
                &format!("/v3/processes/{process}"),
                &developer,
                json!({"command": "./run", "health_check": {"type": "http", "data": {"endpoint": "/health", "timeout": 30}}}),
            )
            .await;
        assert_eq!(updated.status, 200, "{:#}", updated.body);
        assert_eq!(updated.body["command"], "./run");
        assert_eq!(
            updated.body["health_check"],
            json!({"type": "http", "data": {"timeout": 30, "invocation_timeout": null, "endpoint": "/health"}})
        );
        harness
            .patch(
                &format!("/v3/processes/{process}"),
                &developer,
                json!({"health_check": {"type": "port", "data": {"endpoint": "/x"}}}),
            )
            .await
            .assert_v3_error(
                422,
                "CF-UnprocessableEntity",
                "Health check type must be \"http\" to set a health check HTTP endpoint",
            );
        // Auditors do not see the command; lists hide it from everyone.
        let as_auditor = harness
            .get(&format!("/v3/processes/{process}"), &auditor)
            .await;
        assert_eq!(as_auditor.body["command"], "[PRIVATE DATA HIDDEN]");
        let as_developer = harness
            .get(&format!("/v3/apps/{app}/processes/web"), &developer)
            .await;
        assert_eq!(as_developer.body["command"], "./run");
        let listed = harness
            .get(&format!("/v3/processes?app_guids={app}"), &developer)
            .await;
        assert_eq!(listed.status, 200, "{:#}", listed.body);
        assert_eq!(listed.body["pagination"]["total_results"], 1);
        assert_eq!(
            listed.body["resources"][0]["command"],
            "[PRIVATE DATA HIDDEN IN LISTS]"
        );
        let by_space = harness
            .get(
                &format!("/v3/processes?space_guids={space}&types=web"),
                &auditor,
            )
            .await;
        assert_eq!(by_space.body["pagination"]["total_results"], 1);
        let none = harness.get("/v3/processes", &outsider).await;
        assert_eq!(none.body["pagination"]["total_results"], 0);

        // A stopped app: one DOWN entry per desired instance.
        let stats = harness
            .get(&format!("/v3/processes/{process}/stats"), &auditor)
            .await;
        assert_eq!(stats.status, 200, "{:#}", stats.body);
        let resources = stats.body["resources"].as_array().unwrap();
        assert_eq!(resources.len(), 3);
        for (index, entry) in resources.iter().enumerate() {
            assert_eq!(entry["index"], index);
            assert_eq!(entry["type"], "web");
            assert_eq!(entry["state"], "DOWN");
            assert_eq!(entry["uptime"], 0);
            assert_eq!(entry["usage"]["mem"], 0);
            assert_eq!(entry["mem_quota"], 256 * 1024 * 1024);
            assert_eq!(entry["disk_quota"], 512 * 1024 * 1024);
        }
        let sidecars = harness
            .get(&format!("/v3/processes/{process}/sidecars"), &developer)
            .await;
        assert_eq!(sidecars.status, 200, "{:#}", sidecars.body);
        assert_eq!(sidecars.body["resources"], json!([]));
        assert_eq!(sidecars.body["pagination"]["total_results"], 0);
        harness
            .get(&format!("/v3/processes/{process}/stats"), &outsider)
            .await
            .assert_v3_error(404, "CF-ResourceNotFound", "Process not found");
        harness.stop().await;
    }
}
