//! Running apps on a real DEA (runc) over a real `nats-server`: start, stats, scale, stop, and
//! the 422 for starting an app without a droplet.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures_util::StreamExt;
use serde_json::{json, Value};

use crate::packages::{app_with_people, file, make_zip, new_package, upload};
use crate::staging::{runc_usable, start_test_dea, wait_for_build, Nats};
use crate::support::{databases, eventually, Harness};

/// Every `router.register`/`router.unregister` seen: (subject, message).
type Seen = Arc<Mutex<Vec<(String, Value)>>>;

async fn watch_router(nats: &Nats) -> (Seen, tokio::task::JoinHandle<()>) {
    let client = nats.client().await;
    let mut registers = client.subscribe("router.register").await.unwrap();
    let mut unregisters = client.subscribe("router.unregister").await.unwrap();
    client.flush().await.unwrap();
    let seen: Seen = Arc::default();
    let sink = seen.clone();
    let task = tokio::spawn(async move {
        let _client = client;
        loop {
            let message = tokio::select! {
                Some(message) = registers.next() => message,
                Some(message) = unregisters.next() => message,
                else => break,
            };
            let body: Value = serde_json::from_slice(&message.payload).unwrap_or(Value::Null);
            sink.lock()
                .unwrap()
                .push((message.subject.to_string(), body));
        }
    });
    (seen, task)
}

async fn stats(harness: &Harness, app: &str, token: &str) -> Vec<Value> {
    let answer = harness
        .get(&format!("/v3/apps/{app}/processes/web"), token)
        .await;
    assert_eq!(answer.status, 200, "{:#}", answer.body);
    let process = answer.body["guid"].as_str().unwrap().to_owned();
    let answer = harness
        .get(&format!("/v3/processes/{process}/stats"), token)
        .await;
    assert_eq!(answer.status, 200, "{:#}", answer.body);
    answer.body["resources"].as_array().unwrap().clone()
}

async fn all_in_state(
    harness: &Harness,
    app: &str,
    token: &str,
    count: usize,
    state: &str,
) -> bool {
    let entries = stats(harness, app, token).await;
    entries.len() == count && entries.iter().all(|entry| entry["state"] == state)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn apps_start_scale_and_stop_on_a_real_dea() {
    if !runc_usable() {
        return;
    }
    let Some(nats) = Nats::start().await else {
        return;
    };
    let (dea, _dea_dir) = start_test_dea(&nats, "run").await;
    let (seen, watcher) = watch_router(&nats).await;
    let http = reqwest::Client::new();

    for database in databases() {
        let label = database.label();
        let harness = Harness::start_staging(database, Some(nats.client().await)).await;
        let (app, developer, _auditor) = app_with_people(&harness).await;

        // No droplet yet: CC's 422.
        let started = harness
            .post(
                &format!("/v3/apps/{app}/actions/start"),
                &developer,
                json!({}),
            )
            .await;
        assert_eq!(started.status, 422, "{:#}", started.body);
        assert_eq!(
            started.body["errors"][0]["detail"], "Assign a droplet before starting this app.",
            "{:#}",
            started.body
        );
        tokio::time::sleep(Duration::from_millis(2500)).await;

        let package = new_package(&harness, &app, &developer).await;
        let bits = make_zip(&[
            file("Staticfile", b""),
            file("index.html", b"<h1>running on kiln</h1>"),
        ]);
        let uploaded = upload(&harness, &package, &developer, None, Some(&bits)).await;
        assert_eq!(uploaded.status, 200, "{:#}", uploaded.body);
        let build = harness
            .post(
                "/v3/builds",
                &developer,
                json!({"package": {"guid": package}}),
            )
            .await;
        assert_eq!(build.status, 201, "{:#}", build.body);
        let staged = wait_for_build(
            &harness,
            build.body["guid"].as_str().unwrap(),
            &developer,
            300,
        )
        .await;
        assert_eq!(staged["state"], "STAGED", "{label}: {staged:#}");
        let droplet = staged["droplet"]["guid"].as_str().unwrap().to_owned();
        let assigned = harness
            .patch(
                &format!("/v3/apps/{app}/relationships/current_droplet"),
                &developer,
                json!({"data": {"guid": droplet}}),
            )
            .await;
        assert_eq!(assigned.status, 200, "{:#}", assigned.body);

        // A route, mapped to the app.
        let app_body = harness.get(&format!("/v3/apps/{app}"), &developer).await;
        let space = app_body.body["relationships"]["space"]["data"]["guid"]
            .as_str()
            .unwrap()
            .to_owned();
        let domains = harness.get("/v3/domains", &developer).await;
        let domain = domains.body["resources"][0]["guid"]
            .as_str()
            .unwrap()
            .to_owned();
        let domain_name = domains.body["resources"][0]["name"]
            .as_str()
            .unwrap()
            .to_owned();
        let host = format!("run-{}", &app[..8]);
        let route = harness
            .post(
                "/v3/routes",
                &developer,
                json!({"host": host, "relationships": {
                    "space": {"data": {"guid": space}},
                    "domain": {"data": {"guid": domain}},
                }}),
            )
            .await;
        assert_eq!(route.status, 201, "{:#}", route.body);
        let route_guid = route.body["guid"].as_str().unwrap().to_owned();
        let mapped = harness
            .post(
                &format!("/v3/routes/{route_guid}/destinations"),
                &developer,
                json!({"destinations": [{"app": {"guid": app}}]}),
            )
            .await;
        assert_eq!(mapped.status, 200, "{:#}", mapped.body);
        let scaled = harness
            .post(
                &format!("/v3/apps/{app}/processes/web/actions/scale"),
                &developer,
                json!({"memory_in_mb": 256, "disk_in_mb": 512}),
            )
            .await;
        assert_eq!(scaled.status, 202, "{:#}", scaled.body);
        let uri = format!("{host}.{domain_name}");

        // Start: the instance runs, registers its route and serves the page.
        let started = harness
            .post(
                &format!("/v3/apps/{app}/actions/start"),
                &developer,
                json!({}),
            )
            .await;
        assert_eq!(started.status, 200, "{:#}", started.body);
        assert_eq!(started.body["state"], "STARTED");
        // A start that takes less than `sync_wait_secs` answers once the instance runs.
        assert!(
            all_in_state(&harness, &app, &developer, 1, "RUNNING").await,
            "{label}: not RUNNING when the start answered: {:#?}",
            stats(&harness, &app, &developer).await
        );
        assert!(
            eventually(Duration::from_secs(120), || all_in_state(
                &harness, &app, &developer, 1, "RUNNING"
            ))
            .await,
            "{label}: {:#?}",
            stats(&harness, &app, &developer).await
        );
        let entry = &stats(&harness, &app, &developer).await[0];
        assert_eq!(entry["mem_quota"], 256 * 1024 * 1024, "{entry:#}");
        assert!(entry["uptime"].is_u64(), "{entry:#}");
        let registered = |uri: &str| {
            seen.lock()
                .unwrap()
                .iter()
                .filter(|(subject, message)| {
                    subject == "router.register"
                        && message["app"] == app.as_str()
                        && message["uris"]
                            .as_array()
                            .is_some_and(|uris| uris.iter().any(|u| u == uri))
                })
                .map(|(_, message)| {
                    format!(
                        "{}:{}",
                        message["host"].as_str().unwrap_or(""),
                        message["port"]
                    )
                })
                .collect::<Vec<String>>()
        };
        assert!(
            eventually(Duration::from_secs(10), || {
                let found = !registered(&uri).is_empty();
                async move { found }
            })
            .await,
            "{label}: no router.register for {uri}: {:#?}",
            seen.lock().unwrap()
        );
        let address = registered(&uri)[0].clone();
        let page = http
            .get(format!("http://{address}/"))
            .send()
            .await
            .expect("the instance answers")
            .text()
            .await
            .unwrap();
        assert!(page.contains("running on kiln"), "{page}");

        // Scale to 2: two RUNNING.
        let scaled = harness
            .post(
                &format!("/v3/apps/{app}/processes/web/actions/scale"),
                &developer,
                json!({"instances": 2}),
            )
            .await;
        assert_eq!(scaled.status, 202, "{:#}", scaled.body);
        assert!(
            eventually(Duration::from_secs(120), || all_in_state(
                &harness, &app, &developer, 2, "RUNNING"
            ))
            .await,
            "{label}: {:#?}",
            stats(&harness, &app, &developer).await
        );

        // The health manager: an instance stopped behind the Cloud Controller's back (a
        // `dea.stop` straight on NATS, as when a DEA loses it) is started again.
        let watcher_client = nats.client().await;
        let mut starts = watcher_client.subscribe("dea.*.start").await.unwrap();
        watcher_client.flush().await.unwrap();
        watcher_client
            .publish(
                "dea.stop",
                serde_json::to_vec(&json!({"droplet": app, "indices": [1]}))
                    .unwrap()
                    .into(),
            )
            .await
            .unwrap();
        watcher_client.flush().await.unwrap();
        let restarted_by_hm = tokio::time::timeout(Duration::from_secs(45), async {
            while let Some(message) = starts.next().await {
                let body: Value = serde_json::from_slice(&message.payload).unwrap_or(Value::Null);
                if body["droplet"] == app.as_str() && body["index"] == 1 {
                    return true;
                }
            }
            false
        })
        .await;
        assert_eq!(
            restarted_by_hm,
            Ok(true),
            "{label}: the health manager did not restart index 1"
        );
        assert!(
            eventually(Duration::from_secs(120), || all_in_state(
                &harness, &app, &developer, 2, "RUNNING"
            ))
            .await,
            "{label}: {:#?}",
            stats(&harness, &app, &developer).await
        );

        // Instance restarts: an index past the instances is not found; index 0 comes back.
        let missing = harness
            .delete(
                &format!("/v3/apps/{app}/processes/web/instances/5"),
                &developer,
            )
            .await;
        assert_eq!(missing.status, 404, "{:#}", missing.body);
        assert_eq!(missing.body["errors"][0]["detail"], "Instance not found");
        let restarted = harness
            .delete(
                &format!("/v3/apps/{app}/processes/web/instances/0"),
                &developer,
            )
            .await;
        assert_eq!(restarted.status, 204, "{:#}", restarted.body);
        assert!(
            eventually(Duration::from_secs(120), || all_in_state(
                &harness, &app, &developer, 2, "RUNNING"
            ))
            .await,
            "{label}: {:#?}",
            stats(&harness, &app, &developer).await
        );

        // A route mapped while running reaches the instances (dea.update → router.register).
        let second_host = format!("two-{}", &app[..8]);
        let second = harness
            .post(
                "/v3/routes",
                &developer,
                json!({"host": second_host, "relationships": {
                    "space": {"data": {"guid": space}},
                    "domain": {"data": {"guid": domain}},
                }}),
            )
            .await;
        assert_eq!(second.status, 201, "{:#}", second.body);
        let mapped = harness
            .post(
                &format!(
                    "/v3/routes/{}/destinations",
                    second.body["guid"].as_str().unwrap()
                ),
                &developer,
                json!({"destinations": [{"app": {"guid": app}}]}),
            )
            .await;
        assert_eq!(mapped.status, 200, "{:#}", mapped.body);
        let second_uri = format!("{second_host}.{domain_name}");
        assert!(
            eventually(Duration::from_secs(10), || {
                let found = !registered(&second_uri).is_empty();
                async move { found }
            })
            .await,
            "{label}: no router.register for {second_uri}: {:#?}",
            seen.lock().unwrap()
        );

        // Stop: DOWN, and the routes go.
        let stopped = harness
            .post(
                &format!("/v3/apps/{app}/actions/stop"),
                &developer,
                json!({}),
            )
            .await;
        assert_eq!(stopped.status, 200, "{:#}", stopped.body);
        assert_eq!(stopped.body["state"], "STOPPED");
        assert!(all_in_state(&harness, &app, &developer, 2, "DOWN").await);
        assert!(
            eventually(Duration::from_secs(30), || {
                let gone = seen.lock().unwrap().iter().any(|(subject, message)| {
                    subject == "router.unregister" && message["app"] == app.as_str()
                });
                async move { gone }
            })
            .await,
            "{label}: no router.unregister: {:#?}",
            seen.lock().unwrap()
        );

        // An instance whose command exits crashes: stats say CRASHED with the details.
        let process = harness
            .get(&format!("/v3/apps/{app}/processes/web"), &developer)
            .await;
        let process_guid = process.body["guid"].as_str().unwrap().to_owned();
        let patched = harness
            .patch(
                &format!("/v3/processes/{process_guid}"),
                &developer,
                json!({"command": "exit 3", "health_check": {"type": "process"}}),
            )
            .await;
        assert_eq!(patched.status, 200, "{:#}", patched.body);
        let scaled = harness
            .post(
                &format!("/v3/apps/{app}/processes/web/actions/scale"),
                &developer,
                json!({"instances": 1}),
            )
            .await;
        assert_eq!(scaled.status, 202, "{:#}", scaled.body);
        let started = harness
            .post(
                &format!("/v3/apps/{app}/actions/start"),
                &developer,
                json!({}),
            )
            .await;
        assert_eq!(started.status, 200, "{:#}", started.body);
        assert!(
            eventually(Duration::from_secs(60), || all_in_state(
                &harness, &app, &developer, 1, "CRASHED"
            ))
            .await,
            "{label}: {:#?}",
            stats(&harness, &app, &developer).await
        );
        let stopped = harness
            .post(
                &format!("/v3/apps/{app}/actions/stop"),
                &developer,
                json!({}),
            )
            .await;
        assert_eq!(stopped.status, 200, "{:#}", stopped.body);
        harness.stop().await;
    }
    watcher.abort();
    dea.stop().await;
}

/// Uploads a static site, stages it and assigns the droplet; returns the app and a developer.
async fn staged_app(harness: &Harness, label: &str) -> (String, String) {
    let (app, developer, _auditor) = app_with_people(harness).await;
    let package = new_package(harness, &app, &developer).await;
    let bits = make_zip(&[
        file("Staticfile", b""),
        file("index.html", b"<h1>moving on kiln</h1>"),
    ]);
    let uploaded = upload(harness, &package, &developer, None, Some(&bits)).await;
    assert_eq!(uploaded.status, 200, "{:#}", uploaded.body);
    let build = harness
        .post(
            "/v3/builds",
            &developer,
            json!({"package": {"guid": package}}),
        )
        .await;
    assert_eq!(build.status, 201, "{:#}", build.body);
    let staged = wait_for_build(
        harness,
        build.body["guid"].as_str().unwrap(),
        &developer,
        300,
    )
    .await;
    assert_eq!(staged["state"], "STAGED", "{label}: {staged:#}");
    let assigned = harness
        .patch(
            &format!("/v3/apps/{app}/relationships/current_droplet"),
            &developer,
            json!({"data": {"guid": staged["droplet"]["guid"]}}),
        )
        .await;
    assert_eq!(assigned.status, 200, "{:#}", assigned.body);
    (app, developer)
}

/// Where each RUNNING instance of the app is, by DEA id (from `dea.find.droplet`).
async fn running_deas(nats: &Nats, app: &str) -> Vec<String> {
    let client = nats.client().await;
    let inbox = client.new_inbox();
    let mut replies = client.subscribe(inbox.clone()).await.unwrap();
    client
        .publish_with_reply(
            "dea.find.droplet",
            inbox,
            serde_json::to_vec(&json!({"droplet": app, "states": ["RUNNING"]}))
                .unwrap()
                .into(),
        )
        .await
        .unwrap();
    client.flush().await.unwrap();
    let mut deas = Vec::new();
    while let Ok(Some(message)) =
        tokio::time::timeout(Duration::from_millis(500), replies.next()).await
    {
        let body: Value = serde_json::from_slice(&message.payload).unwrap_or(Value::Null);
        if body["state"] == "RUNNING" {
            deas.push(body["dea"].as_str().unwrap_or_default().to_owned());
        }
    }
    deas.sort();
    deas
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn instances_move_when_their_dea_shuts_down() {
    if !runc_usable() {
        return;
    }
    let Some(nats) = Nats::start().await else {
        return;
    };
    let (first_dea, _first_dir) = start_test_dea(&nats, "move-a").await;
    let (second_dea, _second_dir) = start_test_dea(&nats, "move-b").await;
    let database = databases().into_iter().next().expect("SQLite");
    let label = database.label();
    let harness = Harness::start_staging(database, Some(nats.client().await)).await;
    tokio::time::sleep(Duration::from_millis(2500)).await;
    let (app, developer) = staged_app(&harness, label).await;
    let scaled = harness
        .post(
            &format!("/v3/apps/{app}/processes/web/actions/scale"),
            &developer,
            json!({"instances": 2, "memory_in_mb": 64}),
        )
        .await;
    assert_eq!(scaled.status, 202, "{:#}", scaled.body);
    let started = harness
        .post(
            &format!("/v3/apps/{app}/actions/start"),
            &developer,
            json!({}),
        )
        .await;
    assert_eq!(started.status, 200, "{:#}", started.body);
    assert!(all_in_state(&harness, &app, &developer, 2, "RUNNING").await);
    // The placement rule spreads the two instances over the two DEAs.
    let before = running_deas(&nats, &app).await;
    assert_eq!(before.len(), 2, "{before:?}");
    assert_ne!(before[0], before[1], "not spread: {before:?}");

    // One DEA goes away: the health manager starts its instance on the other one.
    first_dea.stop().await;
    assert!(
        eventually(Duration::from_secs(60), || async {
            let deas = running_deas(&nats, &app).await;
            deas.len() == 2 && deas[0] == deas[1]
        })
        .await,
        "{label}: instances did not move: {:?}",
        running_deas(&nats, &app).await
    );
    assert!(
        eventually(Duration::from_secs(30), || all_in_state(
            &harness, &app, &developer, 2, "RUNNING"
        ))
        .await,
        "{label}: {:#?}",
        stats(&harness, &app, &developer).await
    );
    harness.stop().await;
    second_dea.stop().await;
}
