//! Manifests: apply_manifest jobs creating and updating apps, processes, env and routes;
//! default, random and no routes; CC's errors; permissions; manifest_diff; the app manifest.

use serde_json::{json, Value};

use crate::support::{databases, Answer, Harness};

async fn post_yaml(harness: &Harness, path: &str, token: &str, yaml: &str) -> Answer {
    let response = harness
        .http
        .post(format!("{}{path}", harness.base))
        .header("Content-Type", "application/x-yaml")
        .header("Authorization", format!("bearer {token}"))
        .body(yaml.to_owned())
        .send()
        .await
        .expect("request");
    let status = response.status().as_u16();
    let headers = response.headers().clone();
    let text = response.text().await.unwrap();
    let body = serde_json::from_str(&text).unwrap_or(Value::String(text));
    Answer {
        status,
        body,
        headers,
    }
}

/// Applies a manifest and waits for its job; returns the finished job.
async fn apply(harness: &Harness, space: &str, token: &str, yaml: &str) -> Value {
    let answer = post_yaml(
        harness,
        &format!("/v3/spaces/{space}/actions/apply_manifest"),
        token,
        yaml,
    )
    .await;
    assert_eq!(answer.status, 202, "{:#}", answer.body);
    let location = answer.header("Location").expect("Location");
    assert!(
        location.starts_with(&format!("{}/v3/jobs/", harness.base)),
        "{location}"
    );
    harness.wait_job(&location, token).await
}

struct World {
    space: String,
    developer: String,
    auditor: String,
}

async fn world(harness: &Harness) -> World {
    let org = harness.create_org("acme").await;
    let space = harness.create_space(&org, "dev").await;
    let mut tokens = Vec::new();
    for (name, role) in [("dora", "space_developer"), ("audrey", "space_auditor")] {
        let user = harness.issuer.add_user(name, "uaa");
        harness
            .grant("organization_user", name, ("organization", &org))
            .await;
        let answer = harness.grant(role, name, ("space", &space)).await;
        assert_eq!(answer.status, 201, "{:#}", answer.body);
        tokens.push(harness.issuer.user_token(&user));
    }
    let auditor = tokens.pop().unwrap();
    let developer = tokens.pop().unwrap();
    World {
        space,
        developer,
        auditor,
    }
}

async fn app_named(harness: &Harness, world: &World, name: &str) -> Value {
    let apps = harness
        .get(
            &format!("/v3/apps?names={name}&space_guids={}", world.space),
            &world.developer,
        )
        .await;
    assert_eq!(apps.status, 200, "{:#}", apps.body);
    apps.body["resources"][0].clone()
}

async fn web_process(harness: &Harness, token: &str, app: &str) -> Value {
    let processes = harness
        .get(&format!("/v3/apps/{app}/processes"), token)
        .await;
    let web = processes.body["resources"]
        .as_array()
        .unwrap()
        .iter()
        .find(|process| process["type"] == "web")
        .unwrap()["guid"]
        .as_str()
        .unwrap()
        .to_owned();
    harness
        .get(&format!("/v3/processes/{web}"), token)
        .await
        .body
}

async fn route_urls(harness: &Harness, token: &str, app: &str) -> Vec<String> {
    let routes = harness.get(&format!("/v3/apps/{app}/routes"), token).await;
    assert_eq!(routes.status, 200, "{:#}", routes.body);
    let mut urls: Vec<String> = routes.body["resources"]
        .as_array()
        .unwrap()
        .iter()
        .map(|route| route["url"].as_str().unwrap().to_owned())
        .collect();
    urls.sort();
    urls
}

const FULL: &str = "applications:
- name: shop
  instances: 2
  memory: 64M
  disk-quota: 512M
  command: ./run --fast
  health-check-type: http
  health-check-http-endpoint: /health
  timeout: 30
  path: /somewhere/on/the/client
  env:
    COLOR: blue
    COUNT: 3
  routes:
  - route: shop.apps.localhost/api
";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn apply_manifest_creates_and_updates_apps() {
    for database in databases() {
        let harness = Harness::start(database).await;
        let world = world(&harness).await;
        let job = apply(&harness, &world.space, &world.developer, FULL).await;
        assert_eq!(job["state"], "COMPLETE", "{job:#}");
        assert_eq!(job["operation"], "space.apply_manifest");

        let app = app_named(&harness, &world, "shop").await;
        let app_guid = app["guid"].as_str().unwrap().to_owned();
        assert_eq!(app["state"], "STOPPED");
        assert_eq!(app["lifecycle"]["type"], "buildpack");
        let web = web_process(&harness, &world.developer, &app_guid).await;
        assert_eq!(web["instances"], 2, "{web:#}");
        assert_eq!(web["memory_in_mb"], 64);
        assert_eq!(web["disk_in_mb"], 512);
        assert_eq!(web["command"], "./run --fast");
        assert_eq!(web["health_check"]["type"], "http");
        assert_eq!(web["health_check"]["data"]["endpoint"], "/health");
        assert_eq!(web["health_check"]["data"]["timeout"], 30);
        let env = harness
            .get(
                &format!("/v3/apps/{app_guid}/environment_variables"),
                &world.developer,
            )
            .await;
        assert_eq!(env.body["var"], json!({"COLOR": "blue", "COUNT": 3}));
        assert_eq!(
            route_urls(&harness, &world.developer, &app_guid).await,
            vec!["shop.apps.localhost/api"]
        );

        // The diff of the same manifest is empty; of a changed one, it lists the change.
        let diff = post_yaml(
            &harness,
            &format!("/v3/spaces/{}/manifest_diff", world.space),
            &world.developer,
            FULL,
        )
        .await;
        assert_eq!(diff.status, 201, "{:#}", diff.body);
        assert_eq!(diff.body, json!({"diff": []}));
        let changed = FULL
            .replace("instances: 2", "instances: 3")
            .replace("COLOR: blue", "COLOR: red");
        let diff = post_yaml(
            &harness,
            &format!("/v3/spaces/{}/manifest_diff", world.space),
            &world.developer,
            &changed,
        )
        .await;
        assert_eq!(diff.status, 201, "{:#}", diff.body);
        assert_eq!(
            diff.body["diff"],
            json!([
                {"op": "replace", "path": "/applications/0/env/COLOR", "was": "blue", "value": "red"},
                {"op": "replace", "path": "/applications/0/instances", "was": 2, "value": 3},
            ])
        );

        // Re-applying changes only what changed; env is merged, the route stays.
        let job = apply(
            &harness,
            &world.space,
            &world.developer,
            "applications:\n- name: shop\n  instances: 3\n  env:\n    EXTRA: 'yes'\n  default-route: true\n",
        )
        .await;
        assert_eq!(job["state"], "COMPLETE", "{job:#}");
        let again = app_named(&harness, &world, "shop").await;
        assert_eq!(again["guid"], app_guid.as_str());
        let web = web_process(&harness, &world.developer, &app_guid).await;
        assert_eq!(web["instances"], 3);
        assert_eq!(web["memory_in_mb"], 64);
        assert_eq!(web["command"], "./run --fast");
        let env = harness
            .get(
                &format!("/v3/apps/{app_guid}/environment_variables"),
                &world.developer,
            )
            .await;
        assert_eq!(
            env.body["var"],
            json!({"COLOR": "blue", "COUNT": 3, "EXTRA": "yes"})
        );
        assert_eq!(
            route_urls(&harness, &world.developer, &app_guid).await,
            vec!["shop.apps.localhost/api"]
        );

        // The app as a manifest.
        let response = harness
            .http
            .get(format!("{}/v3/apps/{app_guid}/manifest", harness.base))
            .header("Authorization", format!("bearer {}", world.developer))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status().as_u16(), 200);
        let text = response.text().await.unwrap();
        let document: Value = serde_yaml::from_str(&text).unwrap();
        let entry = &document["applications"][0];
        assert_eq!(entry["name"], "shop", "{text}");
        assert_eq!(
            entry["routes"],
            json!([{"route": "shop.apps.localhost/api"}])
        );
        assert_eq!(entry["processes"][0]["memory"], "64M");
        assert_eq!(entry["processes"][0]["instances"], 3);

        // no-route unmaps every route (the route itself stays).
        let job = apply(
            &harness,
            &world.space,
            &world.developer,
            "applications:\n- name: shop\n  no-route: true\n",
        )
        .await;
        assert_eq!(job["state"], "COMPLETE", "{job:#}");
        assert!(route_urls(&harness, &world.developer, &app_guid)
            .await
            .is_empty());
        let routes = harness.get("/v3/routes?hosts=shop", &world.developer).await;
        assert_eq!(routes.body["resources"].as_array().unwrap().len(), 1);
        harness.stop().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn default_and_random_routes() {
    for database in databases() {
        let harness = Harness::start(database).await;
        let world = world(&harness).await;
        // What `cf push myapp` sends without a manifest file.
        let job = apply(
            &harness,
            &world.space,
            &world.developer,
            "applications:\n- name: myapp\n  default-route: true\n",
        )
        .await;
        assert_eq!(job["state"], "COMPLETE", "{job:#}");
        let app = app_named(&harness, &world, "myapp").await;
        let guid = app["guid"].as_str().unwrap();
        assert_eq!(
            route_urls(&harness, &world.developer, guid).await,
            vec!["myapp.apps.localhost"]
        );
        let web = web_process(&harness, &world.developer, guid).await;
        assert_eq!(web["instances"], 1);
        assert_eq!(web["memory_in_mb"], 1024);

        let job = apply(
            &harness,
            &world.space,
            &world.developer,
            "applications:\n- name: lucky\n  random-route: true\n",
        )
        .await;
        assert_eq!(job["state"], "COMPLETE", "{job:#}");
        let app = app_named(&harness, &world, "lucky").await;
        let urls = route_urls(&harness, &world.developer, app["guid"].as_str().unwrap()).await;
        assert_eq!(urls.len(), 1, "{urls:?}");
        assert!(
            urls[0].starts_with("lucky-") && urls[0].ends_with(".apps.localhost"),
            "{urls:?}"
        );

        // An unknown domain fails the job with CC's text.
        let job = apply(
            &harness,
            &world.space,
            &world.developer,
            "applications:\n- name: lost\n  routes:\n  - route: lost.nowhere.example\n",
        )
        .await;
        assert_eq!(job["state"], "FAILED");
        assert_eq!(
            job["errors"][0]["detail"],
            "For application 'lost': The route 'lost.nowhere.example' did not match any existing domains."
        );
        harness.stop().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn manifest_errors_and_permissions() {
    for database in databases() {
        let harness = Harness::start(database).await;
        let world = world(&harness).await;
        let apply_path = format!("/v3/spaces/{}/actions/apply_manifest", world.space);

        let job = apply(
            &harness,
            &world.space,
            &world.developer,
            "applications:\n- name: odd\n  buildpacks: [no_such_buildpack]\n",
        )
        .await;
        assert_eq!(job["state"], "FAILED", "{job:#}");
        assert_eq!(job["errors"][0]["title"], "CF-UnprocessableEntity");
        assert_eq!(
            job["errors"][0]["detail"],
            "For application 'odd': Buildpack \"no_such_buildpack\" must be an existing admin buildpack or a valid git URI"
        );

        let answer = post_yaml(
            &harness,
            &apply_path,
            &world.developer,
            "applications: [name: {",
        )
        .await;
        answer.assert_v3_error(
            400,
            "CF-MessageParseError",
            "Request invalid due to parse error: invalid request body",
        );

        let answer = post_yaml(
            &harness,
            &apply_path,
            &world.developer,
            "applications:\n- name: big\n  memory: 64Q\n",
        )
        .await;
        answer.assert_v3_error(
            422,
            "CF-UnprocessableEntity",
            "For application 'big': Process \"web\": Memory must use a supported unit: B, K, KB, M, MB, G, GB, T, or TB",
        );
        let answer = post_yaml(
            &harness,
            &apply_path,
            &world.developer,
            "applications:\n- name: big\n  instances: -1\n  health-check-type: tcp\n",
        )
        .await;
        assert_eq!(answer.status, 422, "{:#}", answer.body);
        assert!(app_named(&harness, &world, "big").await.is_null());

        // Auditors see the space but may not apply; outsiders do not see it.
        let answer = post_yaml(
            &harness,
            &apply_path,
            &world.auditor,
            "applications:\n- name: nope\n",
        )
        .await;
        answer.assert_v3_error(
            403,
            "CF-NotAuthorized",
            "You are not authorized to perform the requested action",
        );
        let outsider = harness.issuer.add_user("olga", "uaa");
        let outsider = harness.issuer.user_token(&outsider);
        for path in [
            apply_path.clone(),
            format!("/v3/spaces/{}/manifest_diff", world.space),
        ] {
            let answer =
                post_yaml(&harness, &path, &outsider, "applications:\n- name: nope\n").await;
            answer.assert_v3_error(404, "CF-ResourceNotFound", "Space not found");
        }
        assert!(app_named(&harness, &world, "nope").await.is_null());

        // The admin may apply anywhere; a diff for a new app adds its fields.
        let diff = post_yaml(
            &harness,
            &format!("/v3/spaces/{}/manifest_diff", world.space),
            &harness.admin_token,
            "applications:\n- name: fresh\n  memory: 1G\n",
        )
        .await;
        assert_eq!(diff.status, 201, "{:#}", diff.body);
        assert_eq!(
            diff.body["diff"],
            json!([{"op": "add", "path": "/applications/0/memory", "value": "1024M"}])
        );
        let job = apply(
            &harness,
            &world.space,
            &harness.admin_token,
            "applications:\n- name: fresh\n  memory: 1G\n",
        )
        .await;
        assert_eq!(job["state"], "COMPLETE", "{job:#}");
        harness.stop().await;
    }
}
