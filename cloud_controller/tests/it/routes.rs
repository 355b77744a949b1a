//! Routes: create with CC's rules and messages, filters the CLI uses, destinations (map/unmap),
//! app routes, delete jobs, and permissions.

use serde_json::{json, Value};

use crate::packages::app_with_people;
use crate::support::{check, databases, Harness};

fn route_body(host: &str, path: Option<&str>, space: &str, domain: &str) -> Value {
    let mut body = json!({"host": host, "relationships": {
        "space": {"data": {"guid": space}},
        "domain": {"data": {"guid": domain}},
    }});
    if let Some(path) = path {
        body["path"] = json!(path);
    }
    body
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn routes_destinations_and_permissions() {
    for database in databases() {
        let harness = Harness::start(database).await;
        let (app, developer, auditor) = app_with_people(&harness).await;
        let outsider = harness.issuer.add_user("olga", "uaa");
        let outsider = harness.issuer.user_token(&outsider);
        let app_body = harness.get(&format!("/v3/apps/{app}"), &developer).await;
        let space = app_body.body["relationships"]["space"]["data"]["guid"]
            .as_str()
            .unwrap()
            .to_owned();
        let domains = harness
            .get("/v3/domains?names=apps.localhost", &developer)
            .await;
        let domain = domains.body["resources"][0]["guid"]
            .as_str()
            .unwrap()
            .to_owned();

        let created = harness
            .post(
                "/v3/routes",
                &developer,
                route_body("web", Some("/api"), &space, &domain),
            )
            .await;
        assert_eq!(created.status, 201, "{:#}", created.body);
        check(
            &created.body,
            &harness.base,
            json!({
                "guid": "<guid>", "created_at": "<time>", "updated_at": "<time>",
                "protocol": "http", "host": "web", "path": "/api", "port": null,
                "url": "web.apps.localhost/api",
                "destinations": [], "options": {},
                "metadata": {"labels": {}, "annotations": {}},
                "relationships": {"space": {"data": {"guid": "<guid>"}}, "domain": {"data": {"guid": "<guid>"}}},
                "links": {
                    "self": {"href": "<api>/v3/routes/<guid>"},
                    "space": {"href": "<api>/v3/spaces/<guid>"},
                    "domain": {"href": "<api>/v3/domains/<guid>"},
                    "destinations": {"href": "<api>/v3/routes/<guid>/destinations"},
                },
            }),
        );
        let route = created.body["guid"].as_str().unwrap().to_owned();
        harness
            .post(
                "/v3/routes",
                &developer,
                route_body("web", Some("/api"), &space, &domain),
            )
            .await
            .assert_v3_error(
                422,
                "CF-UnprocessableEntity",
                "Route already exists with host 'web' and path '/api' for domain 'apps.localhost'.",
            );
        for (host, path, message) in [
            ("", None, "Missing host. Routes in shared domains must have a host defined."),
            ("bad.host", None, "Host must be either \"*\" or contain only alphanumeric characters, \"_\", or \"-\""),
            ("h", Some("api"), "Path must begin with /"),
            ("h", Some("/"), "Path cannot be exactly /"),
        ] {
            harness
                .post("/v3/routes", &developer, route_body(host, path, &space, &domain))
                .await
                .assert_v3_error(422, "CF-UnprocessableEntity", message);
        }
        harness
            .post(
                "/v3/routes",
                &auditor,
                route_body("x", None, &space, &domain),
            )
            .await
            .assert_v3_error(
                403,
                "CF-NotAuthorized",
                "You are not authorized to perform the requested action",
            );
        harness
            .post(
                "/v3/routes",
                &outsider,
                route_body("x", None, &space, &domain),
            )
            .await
            .assert_v3_error(
                422,
                "CF-UnprocessableEntity",
                "Invalid space. Ensure that the space exists and you have access to it.",
            );
        let plain = harness
            .post(
                "/v3/routes",
                &developer,
                route_body("plain", None, &space, &domain),
            )
            .await;
        assert_eq!(plain.status, 201, "{:#}", plain.body);
        assert_eq!(plain.body["url"], "plain.apps.localhost");

        // map-route: the CLI's lookup, then an additive destination insert.
        let lookup = harness
            .get(
                &format!(
                    "/v3/routes?domain_guids={domain}&hosts=web&paths=%2Fapi&per_page=1&page=1"
                ),
                &developer,
            )
            .await;
        assert_eq!(
            lookup.body["pagination"]["total_results"], 1,
            "{:#}",
            lookup.body
        );
        assert_eq!(lookup.body["resources"][0]["guid"], route.as_str());
        let none = harness
            .get(
                &format!("/v3/routes?domain_guids={domain}&hosts=web&paths="),
                &developer,
            )
            .await;
        assert_eq!(none.body["pagination"]["total_results"], 0);
        let destinations = format!("/v3/routes/{route}/destinations");
        harness
            .post(
                &destinations,
                &auditor,
                json!({"destinations": [{"app": {"guid": app}}]}),
            )
            .await
            .assert_v3_error(
                403,
                "CF-NotAuthorized",
                "You are not authorized to perform the requested action",
            );
        let mapped = harness
            .post(
                &destinations,
                &developer,
                json!({"destinations": [{"app": {"guid": app}}]}),
            )
            .await;
        assert_eq!(mapped.status, 200, "{:#}", mapped.body);
        let again = harness
            .post(
                &destinations,
                &developer,
                json!({"destinations": [{"app": {"guid": app}}]}),
            )
            .await;
        assert_eq!(again.body["destinations"].as_array().unwrap().len(), 1);
        let destination = &again.body["destinations"][0];
        assert_eq!(
            destination["app"],
            json!({"guid": app, "process": {"type": "web"}})
        );
        assert_eq!(destination["port"], 8080);
        assert_eq!(destination["protocol"], "http1");
        let destination_guid = destination["guid"].as_str().unwrap().to_owned();

        let by_app = harness
            .get(&format!("/v3/routes?app_guids={app}"), &auditor)
            .await;
        assert_eq!(by_app.body["pagination"]["total_results"], 1);
        let app_routes = harness
            .get(&format!("/v3/apps/{app}/routes"), &auditor)
            .await;
        assert_eq!(app_routes.status, 200, "{:#}", app_routes.body);
        assert_eq!(
            app_routes.body["resources"][0]["url"],
            "web.apps.localhost/api"
        );
        let by_space = harness
            .get(
                &format!("/v3/routes?space_guids={space}&per_page=5000"),
                &auditor,
            )
            .await;
        assert_eq!(by_space.body["pagination"]["total_results"], 2);
        let hidden = harness.get("/v3/routes", &outsider).await;
        assert_eq!(hidden.body["pagination"]["total_results"], 0);
        harness
            .get(&format!("/v3/routes/{route}"), &outsider)
            .await
            .assert_v3_error(404, "CF-ResourceNotFound", "Route not found");

        // unmap-route: 204.
        let unmapped = harness
            .delete(&format!("{destinations}/{destination_guid}"), &developer)
            .await;
        assert_eq!(unmapped.status, 204, "{:#}", unmapped.body);
        let read = harness
            .get(&format!("/v3/routes/{route}"), &developer)
            .await;
        assert_eq!(read.body["destinations"], json!([]));

        // Deleting an app removes its destinations; deleting a route is a job.
        harness
            .post(
                &destinations,
                &developer,
                json!({"destinations": [{"app": {"guid": app}}]}),
            )
            .await;
        let deleted = harness.delete(&format!("/v3/apps/{app}"), &developer).await;
        harness
            .wait_job(&deleted.header("location").unwrap(), &developer)
            .await;
        let read = harness
            .get(&format!("/v3/routes/{route}"), &developer)
            .await;
        assert_eq!(read.body["destinations"], json!([]));
        harness
            .delete(&format!("/v3/routes/{route}"), &auditor)
            .await
            .assert_v3_error(
                403,
                "CF-NotAuthorized",
                "You are not authorized to perform the requested action",
            );
        let deleted = harness
            .delete(&format!("/v3/routes/{route}"), &developer)
            .await;
        assert_eq!(deleted.status, 202, "{:#}", deleted.body);
        let job = harness
            .wait_job(&deleted.header("location").unwrap(), &developer)
            .await;
        assert_eq!(job["state"], "COMPLETE", "{job:#}");
        harness
            .get(&format!("/v3/routes/{route}"), &developer)
            .await
            .assert_v3_error(404, "CF-ResourceNotFound", "Route not found");

        // Deleting the space takes its remaining route along.
        let deleted = harness
            .delete(&format!("/v3/spaces/{space}"), &harness.admin_token)
            .await;
        let job = harness
            .wait_job(&deleted.header("location").unwrap(), &harness.admin_token)
            .await;
        assert_eq!(job["state"], "COMPLETE", "{job:#}");
        let left = harness.get("/v3/routes", &harness.admin_token).await;
        assert_eq!(left.body["pagination"]["total_results"], 0);
        harness.stop().await;
    }
}
