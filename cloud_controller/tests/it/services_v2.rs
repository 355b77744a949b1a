//! The v2 services write endpoints against the real OSB test broker of `services.rs`: managed
//! instances (sync 201, async 202 polled to success through v2 GETs, `accepts_incomplete=false`,
//! broker failures, rename/tags/plan change, delete), user-provided instances, app bindings with
//! VCAP_SERVICES, service keys, brokers (synchronous catalog fetch and validation, space-scoped),
//! plan access (`public`, visibilities), and the v2 error codes.

use std::time::Duration;

use serde_json::{json, Value};

use crate::services::{
    make_public, people, plan_guid, register, start, TestBroker, BROKER_PASSWORD, BROKER_USER,
};
use crate::support::{databases, eventually, Answer, Harness};

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

fn instance_body(name: &str, space: &str, plan: &str) -> Value {
    json!({"name": name, "space_guid": space, "service_plan_guid": plan})
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

/// GETs `path` until `entity.last_operation.state` is no longer `in progress`; returns the body.
async fn settled(harness: &Harness, token: &str, path: &str) -> Value {
    let last = std::cell::RefCell::new(Value::Null);
    let done = eventually(Duration::from_secs(20), || async {
        let answer = harness.get(path, token).await;
        assert_eq!(answer.status, 200, "{:#}", answer.body);
        let state = answer.body["entity"]["last_operation"]["state"].clone();
        *last.borrow_mut() = answer.body;
        state != "in progress"
    })
    .await;
    let last = last.into_inner();
    assert!(done, "operation did not finish: {last:#}");
    last
}

fn guid_of(answer: &Answer) -> String {
    answer.body["metadata"]["guid"]
        .as_str()
        .unwrap_or_default()
        .to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn v2_managed_instances() {
    for database in databases() {
        let broker = TestBroker::start().await;
        let harness = start(database).await;
        let (_org, space, developer, auditor) = people(&harness, "acme").await;
        register(&harness, "kiln-broker", &broker.url).await;
        for plan in ["small", "large", "async", "async-required", "fail-500"] {
            make_public(&harness, plan).await;
        }
        let small = plan_guid(&harness, "small").await;
        let large = plan_guid(&harness, "large").await;
        let asynchronous = plan_guid(&harness, "async").await;

        // A synchronous broker: 201 with the instance, `create succeeded`.
        let created = harness
            .post(
                "/v2/service_instances?accepts_incomplete=true",
                &developer,
                json!({"name": "db", "space_guid": space, "service_plan_guid": small,
                       "parameters": {"size": 1}, "tags": ["sql"]}),
            )
            .await;
        assert_eq!(created.status, 201, "{:#}", created.body);
        let db = guid_of(&created);
        assert_eq!(
            created.header("location").as_deref(),
            Some(format!("/v2/service_instances/{db}").as_str())
        );
        let entity = &created.body["entity"];
        assert_eq!(entity["name"], "db");
        assert_eq!(entity["type"], "managed_service_instance");
        assert_eq!(entity["service_plan_guid"], small.as_str());
        assert_eq!(entity["space_guid"], space.as_str());
        assert_eq!(entity["tags"], json!(["sql"]));
        assert_eq!(entity["dashboard_url"], "https://dash.example.com/x");
        assert_eq!(entity["last_operation"]["type"], "create");
        assert_eq!(entity["last_operation"]["state"], "succeeded");
        let provision = broker.received("PUT", &format!("/v2/service_instances/{db}"));
        assert_eq!(provision.len(), 1);
        assert_eq!(provision[0].query, "accepts_incomplete=true");
        assert_eq!(provision[0].body["parameters"], json!({"size": 1}));
        assert_eq!(provision[0].body["context"]["instance_name"], "db");

        // The name is taken in the space.
        let taken = harness
            .post(
                "/v2/service_instances?accepts_incomplete=true",
                &developer,
                instance_body("db", &space, &small),
            )
            .await;
        v2_error(
            &taken,
            400,
            60002,
            "CF-ServiceInstanceNameTaken",
            "The service instance name is taken: db",
        );
        // Auditors may not create instances; bad bodies and unknown relations are v2 errors.
        let refused = harness
            .post(
                "/v2/service_instances",
                &auditor,
                instance_body("x", &space, &small),
            )
            .await;
        v2_error(
            &refused,
            403,
            10003,
            "CF-NotAuthorized",
            "You are not authorized to perform the requested action",
        );
        let bad_name = harness
            .post(
                "/v2/service_instances",
                &developer,
                json!({"name": 5, "space_guid": space, "service_plan_guid": small}),
            )
            .await;
        v2_error(
            &bad_name,
            400,
            60003,
            "CF-ServiceInstanceInvalid",
            "The service instance is invalid: Name must be a string",
        );
        let no_space = harness
            .post(
                "/v2/service_instances",
                &developer,
                instance_body("x", "no-such-space", &small),
            )
            .await;
        v2_error(
            &no_space,
            400,
            1002,
            "CF-InvalidRelation",
            "Could not find VCAP::CloudController::Space with guid no-such-space",
        );
        let not_json = harness
            .request(
                reqwest::Method::POST,
                "/v2/service_instances",
                Some(&developer),
                Some("{"),
            )
            .await;
        assert_eq!(not_json.status, 400, "{:#}", not_json.body);
        assert_eq!(not_json.body["error_code"], "CF-MessageParseError");

        // An asynchronous broker: 202 `in progress`, then v2 GETs follow the polling.
        let accepted = harness
            .post(
                "/v2/service_instances?accepts_incomplete=true",
                &developer,
                instance_body("slow", &space, &asynchronous),
            )
            .await;
        assert_eq!(accepted.status, 202, "{:#}", accepted.body);
        let slow = guid_of(&accepted);
        assert_eq!(accepted.body["entity"]["last_operation"]["type"], "create");
        assert_eq!(
            accepted.body["entity"]["last_operation"]["state"],
            "in progress"
        );
        let done = settled(
            &harness,
            &developer,
            &format!("/v2/service_instances/{slow}"),
        )
        .await;
        assert_eq!(done["entity"]["last_operation"]["state"], "succeeded");
        assert_eq!(done["entity"]["last_operation"]["type"], "create");
        assert!(!broker
            .received(
                "GET",
                &format!("/v2/service_instances/{slow}/last_operation")
            )
            .is_empty());

        // Without accepts_incomplete the broker is told so: an async-only broker answers
        // AsyncRequired, an asynchronous answer anyway is refused; no instance is left.
        let required = harness
            .post(
                "/v2/service_instances",
                &developer,
                instance_body(
                    "needs-async",
                    &space,
                    &plan_guid(&harness, "async-required").await,
                ),
            )
            .await;
        v2_error(
            &required,
            400,
            10001,
            "CF-AsyncRequired",
            "This service plan requires client support for asynchronous service operations.",
        );
        let sent = broker.received("PUT", "/v2/service_instances/");
        assert_eq!(
            sent.last().unwrap().query,
            "accepts_incomplete=false",
            "{sent:#?}"
        );
        let not_allowed = harness
            .post(
                "/v2/service_instances?accepts_incomplete=false",
                &developer,
                instance_body("async-anyway", &space, &asynchronous),
            )
            .await;
        v2_error(
            &not_allowed,
            502,
            270017,
            "CF-ServiceBrokerRespondedAsyncWhenNotAllowed",
            "The service broker responded asynchronously to a request, but the accepts_incomplete query parameter was false or not given.",
        );
        let broken = harness
            .post(
                "/v2/service_instances?accepts_incomplete=true",
                &developer,
                instance_body("broken", &space, &plan_guid(&harness, "fail-500").await),
            )
            .await;
        assert_eq!(broken.status, 502, "{:#}", broken.body);
        assert_eq!(broken.body["error_code"], "CF-ServiceBrokerBadResponse");
        let left = harness
            .get(
                &format!("/v2/service_instances?q=space_guid:{space}"),
                &developer,
            )
            .await;
        let names: Vec<&Value> = left.body["resources"]
            .as_array()
            .unwrap()
            .iter()
            .map(|resource| &resource["entity"]["name"])
            .collect();
        assert_eq!(names, vec!["db", "slow"]);

        // Rename and tags at once; a plan change goes to the broker.
        let renamed = harness
            .put(
                &format!("/v2/service_instances/{db}?accepts_incomplete=true"),
                &developer,
                json!({"name": "main-db", "tags": ["a", "b"]}),
            )
            .await;
        assert_eq!(renamed.status, 201, "{:#}", renamed.body);
        assert_eq!(renamed.body["entity"]["name"], "main-db");
        assert_eq!(renamed.body["entity"]["tags"], json!(["a", "b"]));
        assert_eq!(renamed.body["entity"]["last_operation"]["type"], "update");
        assert_eq!(
            renamed.body["entity"]["last_operation"]["state"],
            "succeeded"
        );
        let replanned = harness
            .put(
                &format!("/v2/service_instances/{db}?accepts_incomplete=true"),
                &developer,
                json!({"service_plan_guid": large, "parameters": {"size": 2}}),
            )
            .await;
        assert_eq!(replanned.status, 201, "{:#}", replanned.body);
        assert_eq!(
            replanned.body["entity"]["service_plan_guid"],
            large.as_str()
        );
        let patches = broker.received("PATCH", &format!("/v2/service_instances/{db}"));
        assert_eq!(patches.len(), 1);
        assert_eq!(patches[0].body["plan_id"], "plan-large");
        assert_eq!(patches[0].body["parameters"], json!({"size": 2}));
        let clash = harness
            .put(
                &format!("/v2/service_instances/{db}"),
                &developer,
                json!({"name": "slow"}),
            )
            .await;
        v2_error(
            &clash,
            400,
            60002,
            "CF-ServiceInstanceNameTaken",
            "The service instance name is taken: slow",
        );
        let auditor_update = harness
            .put(
                &format!("/v2/service_instances/{db}"),
                &auditor,
                json!({"name": "x"}),
            )
            .await;
        assert_eq!(auditor_update.status, 403, "{:#}", auditor_update.body);
        let missing = harness
            .put(
                "/v2/service_instances/no-such-instance",
                &developer,
                json!({"name": "x"}),
            )
            .await;
        v2_error(
            &missing,
            404,
            60004,
            "CF-ServiceInstanceNotFound",
            "The service instance could not be found: no-such-instance",
        );

        // Delete: 204 once the broker deprovisioned; the instance is gone.
        let deleted = harness
            .delete(
                &format!("/v2/service_instances/{db}?accepts_incomplete=true"),
                &developer,
            )
            .await;
        assert_eq!(deleted.status, 204, "{:#}", deleted.body);
        assert_eq!(
            broker
                .received("DELETE", &format!("/v2/service_instances/{db}"))
                .len(),
            1
        );
        let gone = harness
            .get(&format!("/v2/service_instances/{db}"), &developer)
            .await;
        v2_error(
            &gone,
            404,
            60004,
            "CF-ServiceInstanceNotFound",
            &format!("The service instance could not be found: {db}"),
        );

        // Purge forgets an instance without its broker: admins only for a global broker.
        let not_purged = harness
            .delete(
                &format!("/v2/service_instances/{slow}?purge=true"),
                &developer,
            )
            .await;
        assert_eq!(not_purged.status, 403, "{:#}", not_purged.body);
        let purged = harness
            .delete(
                &format!("/v2/service_instances/{slow}?purge=true"),
                &harness.admin_token,
            )
            .await;
        assert_eq!(purged.status, 204, "{:#}", purged.body);
        assert!(broker
            .received("DELETE", &format!("/v2/service_instances/{slow}"))
            .is_empty());
        let purged_gone = harness
            .get(&format!("/v2/service_instances/{slow}"), &developer)
            .await;
        assert_eq!(purged_gone.status, 404, "{:#}", purged_gone.body);
        let bad_flag = harness
            .delete(
                &format!("/v2/service_instances/{slow}?purge=maybe"),
                &developer,
            )
            .await;
        assert_eq!(bad_flag.status, 400, "{:#}", bad_flag.body);
        assert_eq!(bad_flag.body["error_code"], "CF-BadQueryParameter");

        harness.stop().await;
        broker.stop().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn v2_bindings_keys_and_vcap_services() {
    for database in databases() {
        let broker = TestBroker::start().await;
        {
            // One plan that allows no bindings.
            let mut catalog = broker.state.catalog.lock().unwrap();
            let plans = catalog["services"][0]["plans"].as_array_mut().unwrap();
            plans.push(json!({"id": "plan-unbindable", "name": "unbindable",
                              "description": "no bindings", "bindable": false}));
        }
        let harness = start(database).await;
        let (_org, space, developer, auditor) = people(&harness, "acme").await;
        register(&harness, "kiln-broker", &broker.url).await;
        for plan in ["small", "async", "unbindable"] {
            make_public(&harness, plan).await;
        }
        let app = create_app(&harness, &developer, &space, "web").await;
        let db = harness
            .post(
                "/v2/service_instances?accepts_incomplete=true",
                &developer,
                instance_body("db", &space, &plan_guid(&harness, "small").await),
            )
            .await;
        assert_eq!(db.status, 201, "{:#}", db.body);
        let db = guid_of(&db);

        // Bind (cf sends `"parameters": null`): 201 with the broker's credentials.
        let bound = harness
            .post(
                "/v2/service_bindings?accepts_incomplete=true",
                &developer,
                json!({"service_instance_guid": db, "app_guid": app, "parameters": null}),
            )
            .await;
        assert_eq!(bound.status, 201, "{:#}", bound.body);
        let binding = guid_of(&bound);
        assert_eq!(
            bound.header("location").as_deref(),
            Some(format!("/v2/service_bindings/{binding}").as_str())
        );
        let entity = &bound.body["entity"];
        assert_eq!(entity["app_guid"], app.as_str());
        assert_eq!(entity["service_instance_guid"], db.as_str());
        assert_eq!(
            entity["credentials"],
            json!({"uri": "db://user:pw@db.example.com/x"})
        );
        assert_eq!(entity["last_operation"]["state"], "succeeded");
        let bind_request = broker.received(
            "PUT",
            &format!("/v2/service_instances/{db}/service_bindings/{binding}"),
        );
        assert_eq!(bind_request.len(), 1);
        assert_eq!(
            bind_request[0].body["bind_resource"]["app_guid"],
            app.as_str()
        );
        assert!(bind_request[0].body.get("parameters").is_none());

        // VCAP_SERVICES carries the v2-created binding.
        let env = harness
            .get(&format!("/v3/apps/{app}/env"), &developer)
            .await;
        assert_eq!(env.status, 200, "{:#}", env.body);
        let entry = &env.body["system_env_json"]["VCAP_SERVICES"]["kiln-db"][0];
        assert_eq!(entry["name"], "db");
        assert_eq!(entry["instance_guid"], db.as_str());
        assert_eq!(entry["binding_guid"], binding.as_str());
        assert_eq!(
            entry["credentials"],
            json!({"uri": "db://user:pw@db.example.com/x"})
        );

        let again = harness
            .post(
                "/v2/service_bindings",
                &developer,
                json!({"service_instance_guid": db, "app_guid": app}),
            )
            .await;
        v2_error(
            &again,
            400,
            90003,
            "CF-ServiceBindingAppServiceTaken",
            "The app is already bound to the service.",
        );
        let auditor_bind = harness
            .post(
                "/v2/service_bindings",
                &auditor,
                json!({"service_instance_guid": db, "app_guid": app}),
            )
            .await;
        assert_eq!(auditor_bind.status, 403, "{:#}", auditor_bind.body);
        let no_app = harness
            .post(
                "/v2/service_bindings",
                &developer,
                json!({"service_instance_guid": db, "app_guid": "no-such-app"}),
            )
            .await;
        v2_error(
            &no_app,
            404,
            100004,
            "CF-AppNotFound",
            "The app could not be found: no-such-app",
        );
        let unbindable = harness
            .post(
                "/v2/service_instances",
                &developer,
                instance_body("plain", &space, &plan_guid(&harness, "unbindable").await),
            )
            .await;
        assert_eq!(unbindable.status, 201, "{:#}", unbindable.body);
        let plain = guid_of(&unbindable);
        let refused = harness
            .post(
                "/v2/service_bindings",
                &developer,
                json!({"service_instance_guid": plain, "app_guid": app}),
            )
            .await;
        v2_error(
            &refused,
            400,
            90005,
            "CF-UnbindableService",
            "The service instance doesn't support binding.",
        );
        let refused_key = harness
            .post(
                "/v2/service_keys",
                &developer,
                json!({"service_instance_guid": plain, "name": "k"}),
            )
            .await;
        v2_error(
            &refused_key,
            400,
            90005,
            "CF-UnbindableService",
            "The service instance doesn't support binding.",
        );

        // Service keys.
        let key = harness
            .post(
                "/v2/service_keys",
                &developer,
                json!({"service_instance_guid": db, "name": "admin-key", "parameters": {"role": "ro"}}),
            )
            .await;
        assert_eq!(key.status, 201, "{:#}", key.body);
        let key_guid = guid_of(&key);
        assert_eq!(key.body["entity"]["name"], "admin-key");
        assert_eq!(key.body["entity"]["service_instance_guid"], db.as_str());
        assert_eq!(
            key.body["entity"]["credentials"],
            json!({"uri": "db://user:pw@db.example.com/x"})
        );
        let key_request = broker.received(
            "PUT",
            &format!("/v2/service_instances/{db}/service_bindings/{key_guid}"),
        );
        assert_eq!(key_request[0].query, "accepts_incomplete=false");
        assert_eq!(key_request[0].body["parameters"], json!({"role": "ro"}));
        let duplicate = harness
            .post(
                "/v2/service_keys",
                &developer,
                json!({"service_instance_guid": db, "name": "admin-key"}),
            )
            .await;
        v2_error(
            &duplicate,
            400,
            360001,
            "CF-ServiceKeyNameTaken",
            "The service key name is taken: admin-key",
        );
        let listed = harness
            .get(
                &format!("/v2/service_keys?q=service_instance_guid:{db}&q=name:admin-key"),
                &developer,
            )
            .await;
        assert_eq!(listed.status, 200, "{:#}", listed.body);
        assert_eq!(listed.body["total_results"], 1);
        assert_eq!(
            listed.body["resources"][0]["metadata"]["guid"],
            key_guid.as_str()
        );
        let fetched = harness
            .get(&format!("/v2/service_keys/{key_guid}"), &developer)
            .await;
        assert_eq!(fetched.status, 200, "{:#}", fetched.body);
        assert_eq!(fetched.body, key.body);
        let hidden = harness
            .get(&format!("/v2/service_keys/{key_guid}"), &auditor)
            .await;
        assert_eq!(hidden.status, 403, "{:#}", hidden.body);
        let auditor_list = harness.get("/v2/service_keys", &auditor).await;
        assert_eq!(auditor_list.body["total_results"], 0);

        // An instance with bindings and keys is deleted only with recursive=true.
        let blocked = harness
            .delete(&format!("/v2/service_instances/{db}"), &developer)
            .await;
        v2_error(
            &blocked,
            400,
            10006,
            "CF-AssociationNotEmpty",
            "Please delete the service_bindings, service_keys associations for your service_instances.",
        );

        // Unbind and delete the key: 204, then 404s with the v2 codes.
        let unbound = harness
            .delete(&format!("/v2/service_bindings/{binding}"), &developer)
            .await;
        assert_eq!(unbound.status, 204, "{:#}", unbound.body);
        let unbound_again = harness
            .get(&format!("/v2/service_bindings/{binding}"), &developer)
            .await;
        v2_error(
            &unbound_again,
            404,
            90004,
            "CF-ServiceBindingNotFound",
            &format!("The service binding could not be found: {binding}"),
        );
        let key_deleted = harness
            .delete(&format!("/v2/service_keys/{key_guid}"), &developer)
            .await;
        assert_eq!(key_deleted.status, 204, "{:#}", key_deleted.body);
        let key_gone = harness
            .get(&format!("/v2/service_keys/{key_guid}"), &developer)
            .await;
        v2_error(
            &key_gone,
            404,
            360003,
            "CF-ServiceKeyNotFound",
            &format!("The service key could not be found: {key_guid}"),
        );
        assert_eq!(
            broker
                .received(
                    "DELETE",
                    &format!("/v2/service_instances/{db}/service_bindings/")
                )
                .len(),
            2
        );

        // An asynchronous bind: 202 `in progress`, polled to success through v2 GETs; the
        // recursive delete of the instance then unbinds first.
        let slow = harness
            .post(
                "/v2/service_instances?accepts_incomplete=true",
                &developer,
                instance_body("slow", &space, &plan_guid(&harness, "async").await),
            )
            .await;
        let slow = guid_of(&slow);
        settled(
            &harness,
            &developer,
            &format!("/v2/service_instances/{slow}"),
        )
        .await;
        let pending = harness
            .post(
                "/v2/service_bindings?accepts_incomplete=true",
                &developer,
                json!({"service_instance_guid": slow, "app_guid": app}),
            )
            .await;
        assert_eq!(pending.status, 202, "{:#}", pending.body);
        assert_eq!(
            pending.body["entity"]["last_operation"]["state"],
            "in progress"
        );
        let slow_binding = guid_of(&pending);
        let bound = settled(
            &harness,
            &developer,
            &format!("/v2/service_bindings/{slow_binding}"),
        )
        .await;
        assert_eq!(bound["entity"]["last_operation"]["state"], "succeeded");
        assert_eq!(
            bound["entity"]["credentials"],
            json!({"uri": "db://fetched"})
        );
        let recursive = harness
            .delete(
                &format!("/v2/service_instances/{slow}?accepts_incomplete=true&recursive=true"),
                &developer,
            )
            .await;
        assert_eq!(recursive.status, 204, "{:#}", recursive.body);
        assert_eq!(
            broker
                .received(
                    "DELETE",
                    &format!("/v2/service_instances/{slow}/service_bindings/{slow_binding}")
                )
                .len(),
            1
        );

        harness.stop().await;
        broker.stop().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn v2_user_provided_instances() {
    for database in databases() {
        let harness = crate::support::Harness::start(database).await;
        let (_org, space, developer, auditor) = people(&harness, "acme").await;
        let app = create_app(&harness, &developer, &space, "web").await;

        let created = harness
            .post(
                "/v2/user_provided_service_instances",
                &developer,
                json!({"name": "ups", "space_guid": space, "credentials": {"user": "u", "password": "p"},
                       "syslog_drain_url": "syslog://drain.example.com:514",
                       "route_service_url": "https://route.example.com", "tags": ["t"]}),
            )
            .await;
        assert_eq!(created.status, 201, "{:#}", created.body);
        let ups = guid_of(&created);
        assert_eq!(
            created.header("location").as_deref(),
            Some(format!("/v2/user_provided_service_instances/{ups}").as_str())
        );
        let entity = &created.body["entity"];
        assert_eq!(entity["name"], "ups");
        assert_eq!(entity["type"], "user_provided_service_instance");
        assert_eq!(entity["credentials"], json!({"user": "u", "password": "p"}));
        assert_eq!(entity["syslog_drain_url"], "syslog://drain.example.com:514");
        assert_eq!(entity["route_service_url"], "https://route.example.com");
        assert_eq!(entity["tags"], json!(["t"]));
        assert_eq!(entity["space_guid"], space.as_str());

        let taken = harness
            .post(
                "/v2/user_provided_service_instances",
                &developer,
                json!({"name": "ups", "space_guid": space}),
            )
            .await;
        v2_error(
            &taken,
            400,
            60002,
            "CF-ServiceInstanceNameTaken",
            "The service instance name is taken: ups",
        );
        let insecure = harness
            .post(
                "/v2/user_provided_service_instances",
                &developer,
                json!({"name": "other", "space_guid": space, "route_service_url": "http://route.example.com"}),
            )
            .await;
        v2_error(
            &insecure,
            400,
            60003,
            "CF-ServiceInstanceInvalid",
            "The service instance is invalid: Route service url must be https",
        );
        let auditor_create = harness
            .post(
                "/v2/user_provided_service_instances",
                &auditor,
                json!({"name": "other", "space_guid": space}),
            )
            .await;
        assert_eq!(auditor_create.status, 403, "{:#}", auditor_create.body);

        // Partial update: credentials replaced whole, the rest kept; a clear with "".
        let updated = harness
            .put(
                &format!("/v2/user_provided_service_instances/{ups}"),
                &developer,
                json!({"credentials": {"token": "t2"}, "route_service_url": ""}),
            )
            .await;
        assert_eq!(updated.status, 201, "{:#}", updated.body);
        assert_eq!(
            updated.body["entity"]["credentials"],
            json!({"token": "t2"})
        );
        assert_eq!(
            updated.body["entity"]["syslog_drain_url"],
            "syslog://drain.example.com:514"
        );
        assert_eq!(updated.body["entity"]["route_service_url"], Value::Null);
        assert_eq!(updated.body["entity"]["tags"], json!(["t"]));

        // Bound: the credentials reach VCAP_SERVICES; keys are not supported.
        let bound = harness
            .post(
                "/v2/service_bindings",
                &developer,
                json!({"service_instance_guid": ups, "app_guid": app}),
            )
            .await;
        assert_eq!(bound.status, 201, "{:#}", bound.body);
        assert_eq!(bound.body["entity"]["credentials"], json!({"token": "t2"}));
        let env = harness
            .get(&format!("/v3/apps/{app}/env"), &developer)
            .await;
        let entry = &env.body["system_env_json"]["VCAP_SERVICES"]["user-provided"][0];
        assert_eq!(entry["name"], "ups");
        assert_eq!(entry["credentials"], json!({"token": "t2"}));
        assert_eq!(entry["syslog_drain_url"], "syslog://drain.example.com:514");
        let key = harness
            .post(
                "/v2/service_keys",
                &developer,
                json!({"service_instance_guid": ups, "name": "k"}),
            )
            .await;
        v2_error(
            &key,
            400,
            360004,
            "CF-ServiceKeyNotSupported",
            "Service keys are not supported for user-provided service instances.",
        );

        // Delete: refused while bound unless recursive.
        let blocked = harness
            .delete(
                &format!("/v2/user_provided_service_instances/{ups}"),
                &developer,
            )
            .await;
        v2_error(
            &blocked,
            400,
            10006,
            "CF-AssociationNotEmpty",
            "Please delete the service_bindings associations for your service_instances.",
        );
        let deleted = harness
            .delete(
                &format!("/v2/user_provided_service_instances/{ups}?recursive=true"),
                &developer,
            )
            .await;
        assert_eq!(deleted.status, 204, "{:#}", deleted.body);
        let gone = harness
            .put(
                &format!("/v2/user_provided_service_instances/{ups}"),
                &developer,
                json!({"name": "x"}),
            )
            .await;
        v2_error(
            &gone,
            404,
            340001,
            "CF-UserProvidedServiceInstanceNotFound",
            &format!("The service instance could not be found: {ups}"),
        );
        let bindings = harness
            .get(
                &format!("/v2/service_bindings?q=app_guid:{app}"),
                &developer,
            )
            .await;
        assert_eq!(bindings.body["total_results"], 0);

        harness.stop().await;
    }
}

fn v2_broker_body(name: &str, url: &str) -> Value {
    json!({"name": name, "broker_url": url, "auth_username": BROKER_USER, "auth_password": BROKER_PASSWORD})
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn v2_brokers_and_plan_visibility() {
    for database in databases() {
        let broker = TestBroker::start().await;
        let other = TestBroker::start().await;
        let harness = start(database).await;
        let admin = harness.admin_token.clone();
        let (org, space, developer, _auditor) = people(&harness, "acme").await;

        // Global brokers are for admins; the catalog is fetched before the answer.
        let refused = harness
            .post(
                "/v2/service_brokers",
                &developer,
                v2_broker_body("b", &broker.url),
            )
            .await;
        assert_eq!(refused.status, 403, "{:#}", refused.body);
        let created = harness
            .post(
                "/v2/service_brokers",
                &admin,
                v2_broker_body("v2-broker", &broker.url),
            )
            .await;
        assert_eq!(created.status, 201, "{:#}", created.body);
        let broker_guid = guid_of(&created);
        assert_eq!(
            created.header("location").as_deref(),
            Some(format!("/v2/service_brokers/{broker_guid}").as_str())
        );
        assert_eq!(
            created.body["entity"],
            json!({"name": "v2-broker", "broker_url": broker.url, "auth_username": BROKER_USER, "space_guid": null})
        );
        assert_eq!(broker.received("GET", "/v2/catalog").len(), 1);
        let services = harness
            .get(
                &format!("/v2/services?q=service_broker_guid:{broker_guid}"),
                &admin,
            )
            .await;
        assert_eq!(services.body["total_results"], 2, "{:#}", services.body);

        let same_name = harness
            .post(
                "/v2/service_brokers",
                &admin,
                v2_broker_body("v2-broker", &other.url),
            )
            .await;
        v2_error(
            &same_name,
            400,
            270002,
            "CF-ServiceBrokerNameTaken",
            "The service broker name is taken",
        );
        let same_url = harness
            .post(
                "/v2/service_brokers",
                &admin,
                v2_broker_body("again", &broker.url),
            )
            .await;
        v2_error(
            &same_url,
            400,
            270003,
            "CF-ServiceBrokerUrlTaken",
            &format!("The service broker url is taken: {}", broker.url),
        );
        let bad_url = harness
            .post(
                "/v2/service_brokers",
                &admin,
                v2_broker_body("bad", "not a url"),
            )
            .await;
        v2_error(
            &bad_url,
            400,
            270011,
            "CF-ServiceBrokerUrlInvalid",
            "not a url is not a valid URL",
        );
        let mut wrong_password = v2_broker_body("wrong", &other.url);
        wrong_password["auth_password"] = json!("nope");
        let wrong = harness
            .post("/v2/service_brokers", &admin, wrong_password)
            .await;
        v2_error(
            &wrong,
            502,
            10001,
            "CF-ServiceBrokerApiAuthenticationFailed",
            "Authentication with the service broker failed. Double-check that the username and password are correct.",
        );
        *other.state.catalog.lock().unwrap() = json!({"services": [{
            "id": "x", "name": "bad", "description": "d", "bindable": "true",
            "plans": [{"id": "p", "name": "tiny"}]}]});
        let invalid = harness
            .post(
                "/v2/service_brokers",
                &admin,
                v2_broker_body("invalid", &other.url),
            )
            .await;
        v2_error(
            &invalid,
            502,
            270012,
            "CF-ServiceBrokerCatalogInvalid",
            "Service broker catalog is invalid: \nService bad\n  Service \"bindable\" field must be a boolean, but has value \"true\"\n  Plan tiny\n    Plan description is required\n",
        );
        let names = harness.get("/v2/service_brokers", &admin).await;
        assert_eq!(names.body["total_results"], 1, "{:#}", names.body);

        // New plans are private: `public` and visibilities open them.
        let small = plan_guid(&harness, "small").await;
        let large = plan_guid(&harness, "large").await;
        let hidden = harness
            .get(&format!("/v2/service_plans/{small}"), &developer)
            .await;
        assert_eq!(hidden.status, 404, "{:#}", hidden.body);
        let not_admin = harness
            .put(
                &format!("/v2/service_plans/{small}"),
                &developer,
                json!({"public": true}),
            )
            .await;
        assert_eq!(not_admin.status, 404, "{:#}", not_admin.body);
        let opened = harness
            .put(
                &format!("/v2/service_plans/{small}"),
                &admin,
                json!({"public": true}),
            )
            .await;
        assert_eq!(opened.status, 201, "{:#}", opened.body);
        assert_eq!(opened.body["entity"]["public"], true);
        let seen = harness
            .get(&format!("/v2/service_plans/{small}"), &developer)
            .await;
        assert_eq!(seen.status, 200, "{:#}", seen.body);
        let still_admin = harness
            .put(
                &format!("/v2/service_plans/{small}"),
                &developer,
                json!({"public": false}),
            )
            .await;
        assert_eq!(still_admin.status, 403, "{:#}", still_admin.body);

        let visibility = harness
            .post(
                "/v2/service_plan_visibilities",
                &admin,
                json!({"service_plan_guid": large, "organization_guid": org}),
            )
            .await;
        assert_eq!(visibility.status, 201, "{:#}", visibility.body);
        let visibility_guid = guid_of(&visibility);
        assert_eq!(
            visibility.body["entity"],
            json!({"service_plan_guid": large, "organization_guid": org,
                   "service_plan_url": format!("/v2/service_plans/{large}"),
                   "organization_url": format!("/v2/organizations/{org}")})
        );
        let duplicate = harness
            .post(
                "/v2/service_plan_visibilities",
                &admin,
                json!({"service_plan_guid": large, "organization_guid": org}),
            )
            .await;
        assert_eq!(duplicate.status, 400, "{:#}", duplicate.body);
        assert_eq!(duplicate.body["code"], 260002);
        assert_eq!(
            duplicate.body["error_code"],
            "CF-ServicePlanVisibilityAlreadyExists"
        );
        let by_plan = harness
            .get(
                &format!("/v2/service_plan_visibilities?q=service_plan_guid:{large}"),
                &admin,
            )
            .await;
        assert_eq!(by_plan.body["total_results"], 1);
        assert_eq!(
            by_plan.body["resources"][0]["metadata"]["guid"],
            visibility_guid.as_str()
        );
        let visible = harness
            .get(&format!("/v2/service_plans/{large}"), &developer)
            .await;
        assert_eq!(visible.status, 200, "{:#}", visible.body);
        let developer_delete = harness
            .delete(
                &format!("/v2/service_plan_visibilities/{visibility_guid}"),
                &developer,
            )
            .await;
        assert_eq!(developer_delete.status, 403, "{:#}", developer_delete.body);
        let removed = harness
            .delete(
                &format!("/v2/service_plan_visibilities/{visibility_guid}"),
                &admin,
            )
            .await;
        assert_eq!(removed.status, 204, "{:#}", removed.body);
        let gone = harness
            .get(
                &format!("/v2/service_plan_visibilities/{visibility_guid}"),
                &admin,
            )
            .await;
        v2_error(
            &gone,
            404,
            260003,
            "CF-ServicePlanVisibilityNotFound",
            &format!("The service plan visibility could not be found: {visibility_guid}"),
        );
        let hidden_again = harness
            .get(&format!("/v2/service_plans/{large}"), &developer)
            .await;
        assert_eq!(hidden_again.status, 404, "{:#}", hidden_again.body);

        // Update: renamed, catalog fetched again.
        let renamed = harness
            .put(
                &format!("/v2/service_brokers/{broker_guid}"),
                &admin,
                json!({"name": "renamed"}),
            )
            .await;
        assert_eq!(renamed.status, 200, "{:#}", renamed.body);
        assert_eq!(renamed.body["entity"]["name"], "renamed");
        assert_eq!(broker.received("GET", "/v2/catalog").len(), 2);

        // A space-scoped broker, registered by a space developer: its plans are not public.
        *other.state.catalog.lock().unwrap() = json!({"services": [{
            "id": "private-svc", "name": "private-db", "description": "mine", "bindable": true,
            "plans": [{"id": "private-plan", "name": "private", "description": "p"}]}]});
        let mut scoped = v2_broker_body("space-broker", &other.url);
        scoped["space_guid"] = json!(space);
        let scoped = harness
            .post("/v2/service_brokers", &developer, scoped)
            .await;
        assert_eq!(scoped.status, 201, "{:#}", scoped.body);
        assert_eq!(scoped.body["entity"]["space_guid"], space.as_str());
        let private = plan_guid(&harness, "private").await;
        let private_public = harness
            .put(
                &format!("/v2/service_plans/{private}"),
                &admin,
                json!({"public": true}),
            )
            .await;
        v2_error(
            &private_public,
            400,
            260001,
            "CF-ServicePlanVisibilityInvalid",
            "Service plan visibility is invalid: plans of space-scoped brokers are visible in their space only",
        );

        // A broker whose plans have instances stays.
        let instance = harness
            .post(
                "/v2/service_instances",
                &developer,
                instance_body("db", &space, &small),
            )
            .await;
        assert_eq!(instance.status, 201, "{:#}", instance.body);
        let kept = harness
            .delete(&format!("/v2/service_brokers/{broker_guid}"), &admin)
            .await;
        v2_error(
            &kept,
            400,
            270010,
            "CF-ServiceBrokerNotRemovable",
            "Can not remove brokers that have associated service instances: renamed",
        );
        let instance_deleted = harness
            .delete(
                &format!("/v2/service_instances/{}", guid_of(&instance)),
                &developer,
            )
            .await;
        assert_eq!(instance_deleted.status, 204, "{:#}", instance_deleted.body);
        let deleted = harness
            .delete(&format!("/v2/service_brokers/{broker_guid}"), &admin)
            .await;
        assert_eq!(deleted.status, 204, "{:#}", deleted.body);
        let missing = harness
            .get(&format!("/v2/service_brokers/{broker_guid}"), &admin)
            .await;
        v2_error(
            &missing,
            404,
            270004,
            "CF-ServiceBrokerNotFound",
            &format!("The service broker was not found: {broker_guid}"),
        );

        harness.stop().await;
        broker.stop().await;
        other.stop().await;
    }
}
