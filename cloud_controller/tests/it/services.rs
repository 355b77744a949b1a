//! Services against a real HTTP service broker written here (an actix-web app on 127.0.0.1:0
//! speaking OSB 2.x, with a synchronous plan, asynchronous plans and failure modes: 500, a
//! timeout, bad JSON, 422 AsyncRequired, 410): broker registration and catalog validation, plan
//! visibility and the marketplace, managed instances (sync, async polled to success and failure,
//! orphan mitigation), bindings and keys with VCAP_SERVICES, user-provided instances and the
//! internal syslog drain list, delete and purge, and permissions.

use std::net::TcpListener;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use actix_web::{web, App, HttpRequest, HttpResponse, HttpServer};
use base64::Engine;
use serde_json::{json, Value};

use crate::support::{cc_config, databases, eventually, Harness, TestDatabase, TestIssuer};

pub(crate) const BROKER_USER: &str = "broker-user";
pub(crate) const BROKER_PASSWORD: &str = "broker-pass";
const INTERNAL_USER: &str = "internal";
const INTERNAL_PASSWORD: &str = "internal-pass";

/// One request the broker received.
#[derive(Debug, Clone)]
pub(crate) struct Received {
    pub(crate) method: String,
    pub(crate) path: String,
    pub(crate) query: String,
    version: Option<String>,
    identity: Option<String>,
    pub(crate) body: Value,
}

#[derive(Default)]
pub(crate) struct BrokerState {
    pub(crate) catalog: Mutex<Value>,
    received: Mutex<Vec<Received>>,
    polls: Mutex<std::collections::HashMap<String, u32>>,
}

pub(crate) struct TestBroker {
    pub(crate) url: String,
    pub(crate) state: Arc<BrokerState>,
    handle: actix_web::dev::ServerHandle,
}

pub(crate) fn catalog() -> Value {
    json!({"services": [{
        "id": "svc-db", "name": "kiln-db", "description": "A database",
        "bindable": true, "plan_updateable": true,
        "instances_retrievable": true, "bindings_retrievable": true,
        "tags": ["sql"],
        "metadata": {"documentationUrl": "https://docs.example.com", "shareable": true},
        "plans": [
            {"id": "plan-small", "name": "small", "description": "sync", "free": true},
            {"id": "plan-large", "name": "large", "description": "sync, paid", "free": false,
             "metadata": {"costs": [{"amount": {"usd": 9.5}, "unit": "MONTHLY"}]}},
            {"id": "plan-async", "name": "async", "description": "async"},
            {"id": "plan-async-fail", "name": "async-fail", "description": "fails later"},
            {"id": "plan-500", "name": "fail-500", "description": "broker error"},
            {"id": "plan-timeout", "name": "timeout", "description": "too slow"},
            {"id": "plan-bad-json", "name": "bad-json", "description": "garbage"},
            {"id": "plan-async-required", "name": "async-required", "description": "422"},
            {"id": "plan-gone", "name": "gone", "description": "410"},
            {"id": "plan-short-poll", "name": "short-poll", "description": "never finishes",
             "maximum_polling_duration": 1},
        ],
    }, {
        "id": "svc-logs", "name": "kiln-logs", "description": "Log sink",
        "bindable": true, "requires": ["syslog_drain"],
        "plans": [{"id": "plan-drain", "name": "drain", "description": "drains"}],
    }]})
}

fn plan_of(state: &BrokerState, instance: &str) -> String {
    state
        .received
        .lock()
        .unwrap()
        .iter()
        .find(|received| {
            received.method == "PUT" && received.path == format!("/v2/service_instances/{instance}")
        })
        .and_then(|received| received.body["plan_id"].as_str().map(str::to_owned))
        .unwrap_or_default()
}

async fn broker_handler(
    state: web::Data<Arc<BrokerState>>,
    request: HttpRequest,
    body: web::Bytes,
) -> HttpResponse {
    let header = |name: &str| {
        request
            .headers()
            .get(name)
            .and_then(|value| value.to_str().ok())
            .map(str::to_owned)
    };
    let expected = format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD
            .encode(format!("{BROKER_USER}:{BROKER_PASSWORD}"))
    );
    if header("authorization").as_deref() != Some(expected.as_str()) {
        return HttpResponse::Unauthorized().json(json!({}));
    }
    let path = request.path().to_owned();
    let method = request.method().to_string();
    let body_json: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
    state.received.lock().unwrap().push(Received {
        method: method.clone(),
        path: path.clone(),
        query: request.query_string().to_owned(),
        version: header("x-broker-api-version"),
        identity: header("x-broker-api-originating-identity"),
        body: body_json.clone(),
    });
    let segments: Vec<&str> = path.trim_start_matches('/').split('/').collect();
    match (method.as_str(), segments.as_slice()) {
        ("GET", ["v2", "catalog"]) => {
            HttpResponse::Ok().json(state.catalog.lock().unwrap().clone())
        }
        ("PUT", ["v2", "service_instances", _]) => {
            match body_json["plan_id"].as_str().unwrap_or_default() {
                "plan-async" | "plan-async-fail" | "plan-short-poll" => {
                    HttpResponse::Accepted().json(json!({"operation": "provision op/1"}))
                }
                "plan-500" => HttpResponse::InternalServerError()
                    .json(json!({"description": "the database exploded"})),
                "plan-timeout" => {
                    tokio::time::sleep(Duration::from_secs(4)).await;
                    HttpResponse::Created().json(json!({}))
                }
                "plan-bad-json" => HttpResponse::Ok().body("this is not json"),
                "plan-async-required" => HttpResponse::UnprocessableEntity()
                    .json(json!({"error": "AsyncRequired", "description": "needs async"})),
                "plan-gone" => HttpResponse::Gone().json(json!({})),
                _ => HttpResponse::Created()
                    .json(json!({"dashboard_url": "https://dash.example.com/x"})),
            }
        }
        ("PATCH", ["v2", "service_instances", _]) => HttpResponse::Ok().json(json!({})),
        ("DELETE", ["v2", "service_instances", _]) => {
            if request.query_string().contains("plan_id=plan-async-fail") {
                return HttpResponse::InternalServerError()
                    .json(json!({"description": "cannot delete"}));
            }
            HttpResponse::Ok().json(json!({}))
        }
        ("GET", ["v2", "service_instances", instance, "last_operation"]) => {
            let count = {
                let mut polls = state.polls.lock().unwrap();
                let count = polls.entry(instance.to_string()).or_insert(0);
                *count += 1;
                *count
            };
            let plan = plan_of(&state, instance);
            let body = match (plan.as_str(), count) {
                ("plan-async-fail", _) => json!({"state": "failed", "description": "it broke"}),
                ("plan-short-poll", _) | (_, 1) => {
                    json!({"state": "in progress", "description": "working"})
                }
                _ => json!({"state": "succeeded"}),
            };
            HttpResponse::Ok()
                .insert_header(("Retry-After", "1"))
                .json(body)
        }
        ("GET", ["v2", "service_instances", _]) => HttpResponse::Ok().json(json!({
            "dashboard_url": "https://dash.example.com/fetched", "parameters": {"size": 3},
        })),
        ("PUT", ["v2", "service_instances", _, "service_bindings", _]) => {
            if body_json["plan_id"] == "plan-async" {
                return HttpResponse::Accepted().json(json!({"operation": "bind op"}));
            }
            if body_json["service_id"] == "svc-logs" {
                return HttpResponse::Created().json(
                    json!({"credentials": {}, "syslog_drain_url": "syslog://logs.example.com:514"}),
                );
            }
            HttpResponse::Created()
                .json(json!({"credentials": {"uri": "db://user:pw@db.example.com/x"}}))
        }
        ("GET", ["v2", "service_instances", _, "service_bindings", _]) => HttpResponse::Ok()
            .json(json!({"credentials": {"uri": "db://fetched"}, "parameters": {"role": "ro"}})),
        ("DELETE", ["v2", "service_instances", _, "service_bindings", _]) => {
            HttpResponse::Ok().json(json!({}))
        }
        ("GET", ["v2", "service_instances", _, "service_bindings", _, "last_operation"]) => {
            HttpResponse::Ok().json(json!({"state": "succeeded"}))
        }
        _ => HttpResponse::NotFound().json(json!({"description": "no such endpoint"})),
    }
}

impl TestBroker {
    pub(crate) async fn start() -> TestBroker {
        let state = Arc::new(BrokerState::default());
        *state.catalog.lock().unwrap() = catalog();
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let data = web::Data::new(state.clone());
        let server = HttpServer::new(move || {
            App::new()
                .app_data(data.clone())
                .default_service(web::to(broker_handler))
        })
        .workers(2)
        .disable_signals()
        .listen(listener)
        .unwrap()
        .run();
        let handle = server.handle();
        tokio::spawn(server);
        TestBroker { url, state, handle }
    }

    pub(crate) fn received(&self, method: &str, path_prefix: &str) -> Vec<Received> {
        self.state
            .received
            .lock()
            .unwrap()
            .iter()
            .filter(|received| received.method == method && received.path.starts_with(path_prefix))
            .cloned()
            .collect()
    }

    pub(crate) async fn stop(self) {
        self.handle.stop(false).await;
    }
}

/// A CC with short broker timeouts and poll intervals, and fixed internal API credentials.
pub(crate) async fn start(database: TestDatabase) -> Harness {
    let issuer = TestIssuer::start().await;
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let mut config = cc_config(database.url(), &base, &issuer.url);
    config.services.broker_client_timeout_seconds = 2;
    config
        .services
        .broker_client_default_async_poll_interval_seconds = 1;
    config.internal_api = Some(cloud_controller::InternalApiConfig {
        username: INTERNAL_USER.to_owned(),
        password: INTERNAL_PASSWORD.to_owned(),
    });
    let cc = cloud_controller::run(config, listener)
        .await
        .expect("cc starts");
    let admin = issuer.add_user("admin", "uaa");
    let admin_token = issuer.admin_token(&admin);
    Harness {
        cc: Some(cc),
        base,
        issuer,
        http: reqwest::Client::new(),
        admin_token,
        database,
    }
}

/// Waits until the job is COMPLETE or FAILED.
pub(crate) async fn finished_job(harness: &Harness, location: &str) -> Value {
    let last = std::cell::RefCell::new(Value::Null);
    let done = eventually(Duration::from_secs(20), || async {
        let answer = harness.get(location, &harness.admin_token).await;
        assert_eq!(answer.status, 200, "{:#}", answer.body);
        let finished = answer.body["state"] == "COMPLETE" || answer.body["state"] == "FAILED";
        *last.borrow_mut() = answer.body;
        finished
    })
    .await;
    let last = last.into_inner();
    assert!(done, "job did not finish: {last:#}");
    last
}

pub(crate) fn broker_body(name: &str, url: &str) -> Value {
    json!({"name": name, "url": url, "authentication": {"type": "basic", "credentials": {"username": BROKER_USER, "password": BROKER_PASSWORD}}})
}

pub(crate) async fn register(harness: &Harness, name: &str, url: &str) -> Value {
    let answer = harness
        .post(
            "/v3/service_brokers",
            &harness.admin_token,
            broker_body(name, url),
        )
        .await;
    assert_eq!(answer.status, 202, "{:#}", answer.body);
    finished_job(harness, &answer.header("location").unwrap()).await
}

pub(crate) async fn plan_guid(harness: &Harness, name: &str) -> String {
    let answer = harness
        .get(
            &format!("/v3/service_plans?names={name}"),
            &harness.admin_token,
        )
        .await;
    assert_eq!(answer.status, 200, "{:#}", answer.body);
    answer.body["resources"][0]["guid"]
        .as_str()
        .unwrap()
        .to_owned()
}

pub(crate) async fn make_public(harness: &Harness, plan: &str) {
    let guid = plan_guid(harness, plan).await;
    let answer = harness
        .post(
            &format!("/v3/service_plans/{guid}/visibility"),
            &harness.admin_token,
            json!({"type": "public"}),
        )
        .await;
    assert_eq!(answer.status, 200, "{:#}", answer.body);
}

/// An org with a space, a developer and an auditor: (org, space, developer, auditor).
pub(crate) async fn people(harness: &Harness, org_name: &str) -> (String, String, String, String) {
    let org = harness.create_org(org_name).await;
    let space = harness.create_space(&org, "dev").await;
    let mut tokens = Vec::new();
    for (name, role) in [("dev", "space_developer"), ("aud", "space_auditor")] {
        let username = format!("{name}-{org_name}");
        let user = harness.issuer.add_user(&username, "uaa");
        harness
            .grant("organization_user", &username, ("organization", &org))
            .await;
        let answer = harness.grant(role, &username, ("space", &space)).await;
        assert_eq!(answer.status, 201, "{:#}", answer.body);
        tokens.push(harness.issuer.user_token(&user));
    }
    let auditor = tokens.pop().unwrap();
    let developer = tokens.pop().unwrap();
    (org, space, developer, auditor)
}

fn managed_body(name: &str, space: &str, plan: &str) -> Value {
    json!({"type": "managed", "name": name, "relationships": {
        "space": {"data": {"guid": space}}, "service_plan": {"data": {"guid": plan}}}})
}

/// Creates a managed instance and waits for its job; returns (instance guid, job).
async fn create_managed(
    harness: &Harness,
    token: &str,
    name: &str,
    space: &str,
    plan: &str,
) -> (String, Value) {
    let plan = plan_guid(harness, plan).await;
    let answer = harness
        .post(
            "/v3/service_instances",
            token,
            managed_body(name, space, &plan),
        )
        .await;
    assert_eq!(answer.status, 202, "{:#}", answer.body);
    let job = finished_job(harness, &answer.header("location").unwrap()).await;
    let found = harness
        .get(
            &format!("/v3/service_instances?names={name}&space_guids={space}"),
            token,
        )
        .await;
    let guid = found.body["resources"][0]["guid"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    (guid, job)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn brokers_catalog_visibility_and_marketplace() {
    for database in databases() {
        let broker = TestBroker::start().await;
        let harness = start(database).await;
        let (org, space, developer, _auditor) = people(&harness, "acme").await;

        // A space developer may not register a global broker.
        let refused = harness
            .post(
                "/v3/service_brokers",
                &developer,
                broker_body("mine", &broker.url),
            )
            .await;
        refused.assert_v3_error(
            403,
            "CF-NotAuthorized",
            "You are not authorized to perform the requested action",
        );

        let job = register(&harness, "kiln-broker", &broker.url).await;
        assert_eq!(job["state"], "COMPLETE", "{job:#}");
        let catalog_fetch = &broker.received("GET", "/v2/catalog")[0];
        assert_eq!(catalog_fetch.version.as_deref(), Some("2.17"));
        assert!(catalog_fetch
            .identity
            .as_deref()
            .is_some_and(|identity| identity.starts_with("cloudfoundry ")));

        let brokers = harness
            .get("/v3/service_brokers", &harness.admin_token)
            .await;
        assert_eq!(brokers.body["resources"][0]["name"], "kiln-broker");
        assert_eq!(brokers.body["resources"][0]["url"], broker.url.as_str());
        assert!(!brokers.body.to_string().contains(BROKER_PASSWORD));
        let duplicate = harness
            .post(
                "/v3/service_brokers",
                &harness.admin_token,
                broker_body("kiln-broker", &broker.url),
            )
            .await;
        assert_eq!(duplicate.status, 422, "{:#}", duplicate.body);

        // Offerings with the broker names the CLI reads from `included`.
        let offerings = harness
            .get(
                "/v3/service_offerings?names=kiln-db&fields%5Bservice_broker%5D=name,guid",
                &harness.admin_token,
            )
            .await;
        assert_eq!(offerings.status, 200, "{:#}", offerings.body);
        assert_eq!(
            offerings.body["resources"][0]["documentation_url"],
            "https://docs.example.com"
        );
        assert_eq!(offerings.body["resources"][0]["shareable"], true);
        assert_eq!(
            offerings.body["included"]["service_brokers"],
            json!([{"guid": brokers.body["resources"][0]["guid"], "name": "kiln-broker"}])
        );

        // New plans are admin-only: the developer's marketplace is empty.
        let marketplace = |token: String| {
            let harness = &harness;
            let space = space.clone();
            async move {
                harness
                    .get(&format!("/v3/service_plans?per_page=5000&include=service_offering&fields%5Bservice_offering.service_broker%5D=name,guid&space_guids={space}&available=true"), &token)
                    .await
            }
        };
        let empty = marketplace(developer.clone()).await;
        assert_eq!(empty.body["resources"], json!([]), "{:#}", empty.body);
        let small = plan_guid(&harness, "small").await;
        let visibility = harness
            .get(
                &format!("/v3/service_plans/{small}/visibility"),
                &harness.admin_token,
            )
            .await;
        assert_eq!(visibility.body, json!({"type": "admin"}));

        // enable-service-access -p small -o acme, then -p large for everyone.
        let added = harness
            .post(
                &format!("/v3/service_plans/{small}/visibility"),
                &harness.admin_token,
                json!({"type": "organization", "organizations": [{"guid": org}]}),
            )
            .await;
        assert_eq!(added.status, 200, "{:#}", added.body);
        assert_eq!(added.body["organizations"][0]["name"], "acme");
        make_public(&harness, "large").await;
        let listed = marketplace(developer.clone()).await;
        let names: Vec<&str> = listed.body["resources"]
            .as_array()
            .unwrap()
            .iter()
            .map(|plan| plan["name"].as_str().unwrap())
            .collect();
        assert_eq!(names, ["small", "large"], "{:#}", listed.body);
        assert_eq!(
            listed.body["resources"][0]["visibility_type"],
            "organization"
        );
        assert_eq!(
            listed.body["resources"][1]["costs"],
            json!([{"amount": 9.5, "currency": "USD", "unit": "MONTHLY"}])
        );
        assert_eq!(
            listed.body["included"]["service_offerings"][0]["name"],
            "kiln-db"
        );
        assert_eq!(
            listed.body["included"]["service_brokers"][0]["name"],
            "kiln-broker"
        );

        // Another org sees only the public plan; so does an anonymous marketplace.
        let (_, _, stranger, _) = people(&harness, "other").await;
        let theirs = harness
            .get(
                "/v3/service_plans?service_offering_names=kiln-db",
                &stranger,
            )
            .await;
        let names: Vec<&str> = theirs.body["resources"]
            .as_array()
            .unwrap()
            .iter()
            .map(|plan| plan["name"].as_str().unwrap())
            .collect();
        assert_eq!(names, ["large"]);
        let anonymous = harness
            .request(reqwest::Method::GET, "/v3/service_plans", None, None)
            .await;
        assert_eq!(anonymous.status, 200, "{:#}", anonymous.body);
        assert_eq!(anonymous.body["resources"].as_array().unwrap().len(), 1);
        let bad_token = harness.get("/v3/service_plans", "not-a-token").await;
        assert_eq!(bad_token.status, 401, "{:#}", bad_token.body);

        // The v2 views of the same catalog.
        let v2 = harness
            .get("/v2/services?q=label:kiln-db", &developer)
            .await;
        assert_eq!(v2.status, 200, "{:#}", v2.body);
        assert_eq!(
            v2.body["resources"][0]["entity"]["service_broker_name"],
            "kiln-broker"
        );
        assert_eq!(v2.body["resources"][0]["entity"]["unique_id"], "svc-db");
        let v2 = harness.get("/v2/service_plans", &developer).await;
        assert_eq!(v2.body["total_results"], 2, "{:#}", v2.body);
        let v2 = harness
            .get("/v2/service_brokers", &harness.admin_token)
            .await;
        assert_eq!(
            v2.body["resources"][0]["entity"]["broker_url"],
            broker.url.as_str()
        );
        assert!(!v2.body.to_string().contains(BROKER_PASSWORD));

        // disable-service-access -o acme.
        let removed = harness
            .delete(
                &format!("/v3/service_plans/{small}/visibility/{org}"),
                &harness.admin_token,
            )
            .await;
        assert_eq!(removed.status, 204, "{:#}", removed.body);
        let visibility = harness
            .get(
                &format!("/v3/service_plans/{small}/visibility"),
                &harness.admin_token,
            )
            .await;
        assert_eq!(visibility.body, json!({"type": "admin"}));

        // Invalid catalogs fail the job with CC's report; the broker stays, unusable.
        *broker.state.catalog.lock().unwrap() = json!({"services": [{
            "id": "x", "name": "bad", "description": "d", "bindable": "true",
            "plans": [{"id": "p", "name": "tiny"}]}]});
        let job = register(&harness, "bad-broker", &broker.url).await;
        assert_eq!(job["state"], "FAILED");
        assert_eq!(job["errors"][0]["title"], "CF-ServiceBrokerCatalogInvalid");
        assert_eq!(job["errors"][0]["code"], 270012);
        assert_eq!(
            job["errors"][0]["detail"],
            "Service broker catalog is invalid: \nService bad\n  Service \"bindable\" field must be a boolean, but has value \"true\"\n  Plan tiny\n    Plan description is required\n"
        );

        // Wrong credentials.
        let mut body = broker_body("wrong-creds", &broker.url);
        body["authentication"]["credentials"]["password"] = json!("nope");
        let answer = harness
            .post("/v3/service_brokers", &harness.admin_token, body)
            .await;
        let job = finished_job(&harness, &answer.header("location").unwrap()).await;
        assert_eq!(
            job["errors"][0]["title"],
            "CF-ServiceBrokerApiAuthenticationFailed"
        );
        assert_eq!(job["errors"][0]["detail"], "Authentication with the service broker failed. Double-check that the username and password are correct.");

        // A space-scoped broker registered by a space developer: its plans are visible in the
        // space only.
        *broker.state.catalog.lock().unwrap() = json!({"services": [{
            "id": "private-svc", "name": "private-db", "description": "mine", "bindable": true,
            "plans": [{"id": "private-plan", "name": "private", "description": "p"}]}]});
        let mut body = broker_body("space-broker", &broker.url);
        body["relationships"] = json!({"space": {"data": {"guid": space}}});
        let answer = harness.post("/v3/service_brokers", &developer, body).await;
        assert_eq!(answer.status, 202, "{:#}", answer.body);
        let job = finished_job(&harness, &answer.header("location").unwrap()).await;
        assert_eq!(job["state"], "COMPLETE", "{job:#}");
        let mine = harness
            .get(
                "/v3/service_plans?names=private&include=space.organization",
                &developer,
            )
            .await;
        assert_eq!(
            mine.body["resources"][0]["visibility_type"], "space",
            "{:#}",
            mine.body
        );
        assert_eq!(mine.body["included"]["organizations"][0]["name"], "acme");
        let theirs = harness
            .get("/v3/service_plans?names=private", &stranger)
            .await;
        assert_eq!(theirs.body["resources"], json!([]));
        let brokers = harness.get("/v3/service_brokers", &developer).await;
        assert_eq!(brokers.body["resources"].as_array().unwrap().len(), 1);

        // Deleting the space takes its space-scoped broker and that broker's catalog along.
        let deleted = harness
            .delete(&format!("/v3/spaces/{space}"), &harness.admin_token)
            .await;
        let job = finished_job(&harness, &deleted.header("location").unwrap()).await;
        assert_eq!(job["state"], "COMPLETE", "{job:#}");
        let brokers = harness
            .get(
                "/v3/service_brokers?names=space-broker",
                &harness.admin_token,
            )
            .await;
        assert_eq!(brokers.body["resources"], json!([]));
        let plans = harness
            .get("/v3/service_plans?names=private", &harness.admin_token)
            .await;
        assert_eq!(plans.body["resources"], json!([]));

        // Rename, then delete (a job).
        let kiln = harness
            .get(
                "/v3/service_brokers?names=kiln-broker",
                &harness.admin_token,
            )
            .await;
        let kiln = kiln.body["resources"][0]["guid"]
            .as_str()
            .unwrap()
            .to_owned();
        *broker.state.catalog.lock().unwrap() = catalog();
        let renamed = harness
            .patch(
                &format!("/v3/service_brokers/{kiln}"),
                &harness.admin_token,
                json!({"name": "renamed"}),
            )
            .await;
        assert_eq!(renamed.status, 202, "{:#}", renamed.body);
        let job = finished_job(&harness, &renamed.header("location").unwrap()).await;
        assert_eq!(job["state"], "COMPLETE", "{job:#}");
        let deleted = harness
            .delete(&format!("/v3/service_brokers/{kiln}"), &harness.admin_token)
            .await;
        assert_eq!(deleted.status, 202, "{:#}", deleted.body);
        let job = finished_job(&harness, &deleted.header("location").unwrap()).await;
        assert_eq!(job["state"], "COMPLETE", "{job:#}");
        let gone = harness
            .get(&format!("/v3/service_brokers/{kiln}"), &harness.admin_token)
            .await;
        assert_eq!(gone.status, 404);

        harness.stop().await;
        broker.stop().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn managed_instances_sync_async_failures_and_orphans() {
    for database in databases() {
        let broker = TestBroker::start().await;
        let harness = start(database).await;
        let (_org, space, developer, auditor) = people(&harness, "acme").await;
        let job = register(&harness, "kiln-broker", &broker.url).await;
        assert_eq!(job["state"], "COMPLETE", "{job:#}");
        for plan in [
            "small",
            "async",
            "async-fail",
            "fail-500",
            "timeout",
            "bad-json",
            "async-required",
            "gone",
            "short-poll",
        ] {
            make_public(&harness, plan).await;
        }

        // Auditors cannot create; plans not visible are refused.
        let small = plan_guid(&harness, "small").await;
        let refused = harness
            .post(
                "/v3/service_instances",
                &auditor,
                managed_body("db", &space, &small),
            )
            .await;
        assert_eq!(refused.status, 403, "{:#}", refused.body);
        let large = plan_guid(&harness, "large").await;
        let hidden = harness
            .post(
                "/v3/service_instances",
                &developer,
                managed_body("db", &space, &large),
            )
            .await;
        hidden.assert_v3_error(422, "CF-UnprocessableEntity", "Invalid service plan. Ensure that the service plan exists, is available, and you have access to it.");

        // Synchronous provision.
        let (db, job) = create_managed(&harness, &developer, "db", &space, "small").await;
        assert_eq!(job["state"], "COMPLETE", "{job:#}");
        let instance = harness
            .get(&format!("/v3/service_instances/{db}"), &developer)
            .await;
        assert_eq!(instance.body["last_operation"]["type"], "create");
        assert_eq!(instance.body["last_operation"]["state"], "succeeded");
        assert_eq!(instance.body["dashboard_url"], "https://dash.example.com/x");
        let provision = &broker.received("PUT", &format!("/v2/service_instances/{db}"))[0];
        assert_eq!(provision.query, "accepts_incomplete=true");
        assert_eq!(provision.body["context"]["platform"], "cloudfoundry");
        assert_eq!(provision.body["context"]["instance_name"], "db");
        assert_eq!(provision.body["space_guid"], space.as_str());
        let taken = harness
            .post(
                "/v3/service_instances",
                &developer,
                managed_body("db", &space, &small),
            )
            .await;
        assert_eq!(taken.status, 422, "{:#}", taken.body);
        assert!(taken.body["errors"][0]["detail"]
            .as_str()
            .unwrap()
            .contains("The service instance name is taken"));

        // `cf services` and `cf service` includes.
        let listed = harness.get(&format!("/v3/service_instances?space_guids={space}&order_by=name&fields%5Bservice_plan%5D=guid,name,relationships.service_offering&fields%5Bservice_plan.service_offering%5D=guid,name,relationships.service_broker&fields%5Bservice_plan.service_offering.service_broker%5D=guid,name&fields%5Bspace%5D=name,guid&fields%5Bspace.organization%5D=name,guid"), &developer).await;
        assert_eq!(listed.status, 200, "{:#}", listed.body);
        assert_eq!(listed.body["included"]["service_plans"][0]["name"], "small");
        assert!(
            listed.body["included"]["service_plans"][0]["relationships"]["service_offering"]
                ["data"]["guid"]
                .is_string()
        );
        assert_eq!(
            listed.body["included"]["service_offerings"][0]["name"],
            "kiln-db"
        );
        assert_eq!(
            listed.body["included"]["service_brokers"][0],
            json!({"guid": listed.body["included"]["service_brokers"][0]["guid"], "name": "kiln-broker"})
        );
        assert_eq!(listed.body["included"]["organizations"][0]["name"], "acme");
        // `cf update-service` asks for nested fields without their parents.
        let nested = harness
            .get(&format!("/v3/service_instances?names=db&space_guids={space}&fields%5Bservice_plan.service_offering%5D=name,guid&fields%5Bservice_plan.service_offering.service_broker%5D=name"), &developer)
            .await;
        assert_eq!(
            nested.body["included"]["service_offerings"][0]["name"], "kiln-db",
            "{:#}",
            nested.body
        );
        assert_eq!(
            nested.body["included"]["service_brokers"],
            json!([{"name": "kiln-broker"}])
        );
        assert!(nested.body["included"].get("service_plans").is_none());
        let parameters = harness
            .get(
                &format!("/v3/service_instances/{db}/parameters"),
                &developer,
            )
            .await;
        assert_eq!(parameters.body, json!({"size": 3}));

        // Asynchronous provision polled to success (Retry-After: 1, operation passed back).
        let (async_db, job) =
            create_managed(&harness, &developer, "async-db", &space, "async").await;
        assert_eq!(job["state"], "COMPLETE", "{job:#}");
        let instance = harness
            .get(&format!("/v3/service_instances/{async_db}"), &developer)
            .await;
        assert_eq!(
            instance.body["last_operation"]["state"], "succeeded",
            "{:#}",
            instance.body
        );
        assert_eq!(
            instance.body["dashboard_url"],
            "https://dash.example.com/fetched"
        );
        let polls = broker.received(
            "GET",
            &format!("/v2/service_instances/{async_db}/last_operation"),
        );
        assert_eq!(polls.len(), 2);
        assert_eq!(
            polls[0].query,
            "operation=provision+op%2F1&plan_id=plan-async&service_id=svc-db"
        );

        // Asynchronous failure.
        let (failed, job) =
            create_managed(&harness, &developer, "failing", &space, "async-fail").await;
        assert_eq!(job["state"], "FAILED");
        assert_eq!(job["errors"][0]["title"], "CF-UnableToPerform");
        assert_eq!(
            job["errors"][0]["detail"],
            "create managed could not be completed: it broke"
        );
        let instance = harness
            .get(&format!("/v3/service_instances/{failed}"), &developer)
            .await;
        assert_eq!(instance.body["last_operation"]["state"], "failed");
        assert_eq!(instance.body["last_operation"]["description"], "it broke");

        // Creating it again replaces the failed instance, which the broker is told to delete.
        let (again, job) = create_managed(&harness, &developer, "failing", &space, "small").await;
        assert_eq!(job["state"], "COMPLETE", "{job:#}");
        assert_ne!(again, failed);
        assert!(
            eventually(Duration::from_secs(5), || async {
                !broker
                    .received("DELETE", &format!("/v2/service_instances/{failed}"))
                    .is_empty()
            })
            .await
        );
        let failed = again;

        // Polling gives up after the plan's maximum_polling_duration: failed, then orphan
        // mitigation.
        let (slow, job) = create_managed(&harness, &developer, "slow", &space, "short-poll").await;
        assert_eq!(job["errors"][0]["title"], "CF-JobTimeout", "{job:#}");
        let instance = harness
            .get(&format!("/v3/service_instances/{slow}"), &developer)
            .await;
        assert_eq!(
            instance.body["last_operation"]["description"],
            "Service Broker failed to provision within the required time."
        );
        assert!(
            eventually(Duration::from_secs(5), || async {
                !broker
                    .received("DELETE", &format!("/v2/service_instances/{slow}"))
                    .is_empty()
            })
            .await
        );

        // Broker 500: the broker's description reaches the user; orphan mitigation deletes.
        let (broken, job) =
            create_managed(&harness, &developer, "broken", &space, "fail-500").await;
        assert_eq!(job["state"], "FAILED");
        assert_eq!(job["errors"][0]["title"], "CF-UnableToPerform");
        assert_eq!(job["errors"][0]["code"], 10009);
        assert_eq!(
            job["errors"][0]["detail"],
            "provision could not be completed: Service broker error: the database exploded"
        );
        let instance = harness
            .get(&format!("/v3/service_instances/{broken}"), &developer)
            .await;
        assert_eq!(
            instance.body["last_operation"]["description"],
            "Service broker error: the database exploded"
        );
        assert!(
            eventually(Duration::from_secs(5), || async {
                !broker
                    .received("DELETE", &format!("/v2/service_instances/{broken}"))
                    .is_empty()
            })
            .await
        );
        let mitigation = &broker.received("DELETE", &format!("/v2/service_instances/{broken}"))[0];
        assert!(mitigation.identity.is_none());
        assert_eq!(
            mitigation.query,
            "accepts_incomplete=true&plan_id=plan-500&service_id=svc-db"
        );

        // Timeout: orphan mitigation too.
        let (slow_broker, job) =
            create_managed(&harness, &developer, "timing-out", &space, "timeout").await;
        assert_eq!(
            job["errors"][0]["detail"],
            "provision could not be completed: The request to the service broker timed out",
            "{job:#}"
        );
        assert!(
            eventually(Duration::from_secs(5), || async {
                !broker
                    .received("DELETE", &format!("/v2/service_instances/{slow_broker}"))
                    .is_empty()
            })
            .await
        );

        // A 200 with bad JSON fails without orphan mitigation; 422 AsyncRequired and 410 too.
        let (garbage, job) =
            create_managed(&harness, &developer, "garbage", &space, "bad-json").await;
        assert!(
            job["errors"][0]["detail"].as_str().unwrap().starts_with(
                "provision could not be completed: The service broker returned an invalid response: "
            ),
            "{job:#}"
        );
        let (needs_async, job) = create_managed(
            &harness,
            &developer,
            "needs-async",
            &space,
            "async-required",
        )
        .await;
        assert_eq!(
            job["errors"][0]["detail"],
            "provision could not be completed: This service plan requires client support for asynchronous service operations."
        );
        let (gone, job) = create_managed(&harness, &developer, "gone", &space, "gone").await;
        assert!(
            job["errors"][0]["detail"].as_str().unwrap().starts_with(
                "provision could not be completed: The service broker returned an invalid response. Status Code: 410 Gone"
            ),
            "{job:#}"
        );
        assert!(
            eventually(Duration::from_secs(5), || async {
                !broker
                    .received("DELETE", &format!("/v2/service_instances/{gone}"))
                    .is_empty()
            })
            .await
        );
        assert!(broker
            .received("DELETE", &format!("/v2/service_instances/{garbage}"))
            .is_empty());
        assert!(broker
            .received("DELETE", &format!("/v2/service_instances/{needs_async}"))
            .is_empty());

        // Update: plan change and rename.
        let renamed = harness
            .patch(
                &format!("/v3/service_instances/{db}"),
                &developer,
                json!({"name": "db2", "tags": ["t1"]}),
            )
            .await;
        assert_eq!(renamed.status, 200, "{:#}", renamed.body);
        assert_eq!(renamed.body["name"], "db2");
        let async_plan = plan_guid(&harness, "async").await;
        let updated = harness
            .patch(
                &format!("/v3/service_instances/{db}"),
                &developer,
                json!({"relationships": {"service_plan": {"data": {"guid": async_plan}}}}),
            )
            .await;
        assert_eq!(updated.status, 202, "{:#}", updated.body);
        let job = finished_job(&harness, &updated.header("location").unwrap()).await;
        assert_eq!(job["state"], "COMPLETE", "{job:#}");
        let instance = harness
            .get(&format!("/v3/service_instances/{db}"), &developer)
            .await;
        assert_eq!(
            instance.body["relationships"]["service_plan"]["data"]["guid"],
            async_plan.as_str()
        );
        assert_eq!(instance.body["last_operation"]["type"], "update");
        let patch = &broker.received("PATCH", &format!("/v2/service_instances/{db}"))[0];
        assert_eq!(patch.body["previous_values"]["plan_id"], "plan-small");
        assert_eq!(patch.body["parameters"], json!({}));

        // Other orgs see nothing.
        let (_, _, stranger, _) = people(&harness, "other").await;
        let theirs = harness.get("/v3/service_instances", &stranger).await;
        assert_eq!(theirs.body["resources"], json!([]));
        let hidden = harness
            .get(&format!("/v3/service_instances/{db}"), &stranger)
            .await;
        assert_eq!(hidden.status, 404);

        // Delete (a job, deprovision at the broker) and purge (no broker call).
        let deleted = harness
            .delete(&format!("/v3/service_instances/{db}"), &developer)
            .await;
        assert_eq!(deleted.status, 202, "{:#}", deleted.body);
        let job = finished_job(&harness, &deleted.header("location").unwrap()).await;
        assert_eq!(job["state"], "COMPLETE", "{job:#}");
        assert_eq!(
            harness
                .get(&format!("/v3/service_instances/{db}"), &developer)
                .await
                .status,
            404
        );
        let deprovision = &broker.received("DELETE", &format!("/v2/service_instances/{db}"))[0];
        assert_eq!(
            deprovision.query,
            "accepts_incomplete=true&plan_id=plan-async&service_id=svc-db"
        );
        let purge = harness
            .delete(
                &format!("/v3/service_instances/{failed}?purge=true"),
                &developer,
            )
            .await;
        assert_eq!(purge.status, 403, "{:#}", purge.body);
        let purge = harness
            .delete(
                &format!("/v3/service_instances/{failed}?purge=true"),
                &harness.admin_token,
            )
            .await;
        assert_eq!(purge.status, 204, "{:#}", purge.body);
        assert!(broker
            .received("DELETE", &format!("/v2/service_instances/{failed}"))
            .is_empty());

        // Deleting the space deletes its managed instances through the broker; one the broker
        // refuses to delete keeps the space.
        create_managed(&harness, &developer, "stuck", &space, "async-fail").await;
        let deleted = harness
            .delete(&format!("/v3/spaces/{space}"), &harness.admin_token)
            .await;
        let job = finished_job(&harness, &deleted.header("location").unwrap()).await;
        assert_eq!(job["state"], "FAILED", "{job:#}");
        assert_eq!(job["errors"][0]["title"], "CF-SpaceDeletionFailed");
        assert_eq!(
            job["errors"][0]["detail"],
            "Deletion of space dev failed because one or more resources within could not be deleted.\n\n\tdelete could not be completed: Service broker error: cannot delete"
        );
        let gone = harness
            .get(&format!("/v3/service_instances/{async_db}"), &developer)
            .await;
        assert_eq!(gone.status, 404);

        harness.stop().await;
        broker.stop().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bindings_keys_and_vcap_services() {
    for database in databases() {
        let broker = TestBroker::start().await;
        let harness = start(database).await;
        let (_org, space, developer, auditor) = people(&harness, "acme").await;
        register(&harness, "kiln-broker", &broker.url).await;
        make_public(&harness, "small").await;
        make_public(&harness, "drain").await;
        make_public(&harness, "async").await;
        let app = harness
            .post(
                "/v3/apps",
                &developer,
                json!({"name": "web", "relationships": {"space": {"data": {"guid": space}}}}),
            )
            .await;
        let app = app.body["guid"].as_str().unwrap().to_owned();
        let (db, _) = create_managed(&harness, &developer, "db", &space, "small").await;
        let (logs, _) = create_managed(&harness, &developer, "logs", &space, "drain").await;

        let bind = |instance: String| {
            let harness = &harness;
            let developer = developer.clone();
            let app = app.clone();
            async move {
                harness
                    .post("/v3/service_credential_bindings", &developer, json!({"type": "app", "relationships": {
                        "service_instance": {"data": {"guid": instance}}, "app": {"data": {"guid": app}}},
                        "parameters": {"role": "rw"}}))
                    .await
            }
        };
        let refused = harness
            .post(
                "/v3/service_credential_bindings",
                &auditor,
                json!({"type": "app", "relationships": {
                "service_instance": {"data": {"guid": db}}, "app": {"data": {"guid": app}}}}),
            )
            .await;
        assert_eq!(refused.status, 403, "{:#}", refused.body);
        let bound = bind(db.clone()).await;
        assert_eq!(bound.status, 202, "{:#}", bound.body);
        let job = finished_job(&harness, &bound.header("location").unwrap()).await;
        assert_eq!(job["state"], "COMPLETE", "{job:#}");
        let again = bind(db.clone()).await;
        again.assert_v3_error(
            422,
            "CF-UnprocessableEntity",
            "The app is already bound to the service instance.",
        );
        let bound = bind(logs.clone()).await;
        finished_job(&harness, &bound.header("location").unwrap()).await;
        let put = &broker.received(
            "PUT",
            &format!("/v2/service_instances/{db}/service_bindings/"),
        )[0];
        assert_eq!(put.body["app_guid"], app.as_str());
        assert_eq!(put.body["bind_resource"]["space_guid"], space.as_str());
        assert_eq!(put.body["parameters"], json!({"role": "rw"}));

        let env = harness
            .get(&format!("/v3/apps/{app}/env"), &developer)
            .await;
        assert_eq!(env.status, 200, "{:#}", env.body);
        let services = &env.body["system_env_json"]["VCAP_SERVICES"];
        let entry = &services["kiln-db"][0];
        assert_eq!(entry["label"], "kiln-db");
        assert_eq!(entry["provider"], Value::Null);
        assert_eq!(entry["plan"], "small");
        assert_eq!(entry["name"], "db");
        assert_eq!(entry["tags"], json!(["sql"]));
        assert_eq!(entry["instance_guid"], db.as_str());
        assert_eq!(entry["instance_name"], "db");
        assert_eq!(entry["binding_name"], Value::Null);
        assert_eq!(
            entry["credentials"],
            json!({"uri": "db://user:pw@db.example.com/x"})
        );
        assert_eq!(entry["syslog_drain_url"], Value::Null);
        assert_eq!(entry["volume_mounts"], json!([]));
        assert_eq!(
            services["kiln-logs"][0]["syslog_drain_url"],
            "syslog://logs.example.com:514"
        );
        assert_eq!(store_vcap(&harness, &app).await, *services);

        // `cf services` counts bindings through `include=app`.
        let listed = harness
            .get(&format!("/v3/service_credential_bindings?service_instance_guids={db}&include=app&type=app"), &developer)
            .await;
        assert_eq!(listed.body["resources"].as_array().unwrap().len(), 1);
        assert_eq!(
            listed.body["included"]["apps"][0]["relationships"]["space"]["data"]["guid"],
            space.as_str()
        );
        let binding = listed.body["resources"][0]["guid"]
            .as_str()
            .unwrap()
            .to_owned();
        let details = harness
            .get(
                &format!("/v3/service_credential_bindings/{binding}/details"),
                &developer,
            )
            .await;
        assert_eq!(
            details.body["credentials"],
            json!({"uri": "db://user:pw@db.example.com/x"})
        );
        let secret = harness
            .get(
                &format!("/v3/service_credential_bindings/{binding}/details"),
                &auditor,
            )
            .await;
        assert_eq!(secret.status, 403);
        let parameters = harness
            .get(
                &format!("/v3/service_credential_bindings/{binding}/parameters"),
                &developer,
            )
            .await;
        assert_eq!(parameters.body, json!({"role": "ro"}));

        // v2 views.
        let v2 = harness
            .get(
                &format!("/v2/service_bindings?q=app_guid:{app}"),
                &developer,
            )
            .await;
        assert_eq!(v2.body["total_results"], 2, "{:#}", v2.body);
        let v2 = harness
            .get(&format!("/v2/service_instances/{db}"), &developer)
            .await;
        assert_eq!(v2.body["entity"]["type"], "managed_service_instance");
        assert_eq!(v2.body["entity"]["last_operation"]["state"], "succeeded");

        // Drains of managed bindings are in the internal list too.
        let drains = internal_drains(&harness, "").await;
        assert_eq!(
            drains["results"][&app]["drains"],
            json!(["syslog://logs.example.com:514"])
        );

        // Service keys.
        let key = harness
            .post("/v3/service_credential_bindings", &developer, json!({"type": "key", "name": "k1", "relationships": {"service_instance": {"data": {"guid": db}}}}))
            .await;
        assert_eq!(key.status, 202, "{:#}", key.body);
        let job = finished_job(&harness, &key.header("location").unwrap()).await;
        assert_eq!(job["state"], "COMPLETE", "{job:#}");
        let same = harness
            .post("/v3/service_credential_bindings", &developer, json!({"type": "key", "name": "k1", "relationships": {"service_instance": {"data": {"guid": db}}}}))
            .await;
        assert_eq!(same.status, 422);
        assert!(same.body["errors"][0]["detail"]
            .as_str()
            .unwrap()
            .contains("Key binding names must be unique"));
        let keys = harness
            .get(
                &format!("/v3/service_credential_bindings?type=key&service_instance_guids={db}"),
                &developer,
            )
            .await;
        assert_eq!(keys.body["resources"][0]["name"], "k1");
        assert!(keys.body["resources"][0]["relationships"]
            .get("app")
            .is_none());
        let key_guid = keys.body["resources"][0]["guid"]
            .as_str()
            .unwrap()
            .to_owned();
        let key_put = broker.received(
            "PUT",
            &format!("/v2/service_instances/{db}/service_bindings/{key_guid}"),
        );
        assert_eq!(key_put[0].body["bind_resource"], json!({}));
        let deleted = harness
            .delete(
                &format!("/v3/service_credential_bindings/{key_guid}"),
                &developer,
            )
            .await;
        assert_eq!(deleted.status, 202);
        finished_job(&harness, &deleted.header("location").unwrap()).await;

        // An asynchronous binding: polled, then fetched for its credentials.
        let (async_db, _) = create_managed(&harness, &developer, "async-db", &space, "async").await;
        let bound = bind(async_db.clone()).await;
        assert_eq!(bound.status, 202, "{:#}", bound.body);
        let job = finished_job(&harness, &bound.header("location").unwrap()).await;
        assert_eq!(job["state"], "COMPLETE", "{job:#}");
        let polls = broker.received(
            "GET",
            &format!("/v2/service_instances/{async_db}/service_bindings/"),
        );
        assert!(
            polls
                .iter()
                .any(|poll| poll.path.ends_with("/last_operation")
                    && poll.query.starts_with("operation=bind+op&")),
            "{polls:?}"
        );
        let env = harness
            .get(&format!("/v3/apps/{app}/env"), &developer)
            .await;
        let entries = env.body["system_env_json"]["VCAP_SERVICES"]["kiln-db"]
            .as_array()
            .unwrap()
            .clone();
        assert!(
            entries
                .iter()
                .any(|entry| entry["instance_name"] == "async-db"
                    && entry["credentials"] == json!({"uri": "db://fetched"})),
            "{entries:?}"
        );

        // Unbind.
        let deleted = harness
            .delete(
                &format!("/v3/service_credential_bindings/{binding}"),
                &developer,
            )
            .await;
        assert_eq!(deleted.status, 202, "{:#}", deleted.body);
        let job = finished_job(&harness, &deleted.header("location").unwrap()).await;
        assert_eq!(job["state"], "COMPLETE", "{job:#}");
        assert_eq!(
            broker
                .received(
                    "DELETE",
                    &format!("/v2/service_instances/{db}/service_bindings/{binding}")
                )
                .len(),
            1
        );
        let env = harness
            .get(&format!("/v3/apps/{app}/env"), &developer)
            .await;
        let names: Vec<&Value> = env.body["system_env_json"]["VCAP_SERVICES"]["kiln-db"]
            .as_array()
            .unwrap()
            .iter()
            .map(|entry| &entry["instance_name"])
            .collect();
        assert_eq!(names, [&json!("async-db")]);

        // A catalog update that drops a plan in use deactivates it with CC's warning, drops an
        // unused one, and adds new plans as private.
        let mut updated = catalog();
        updated["services"][0]["plans"] = json!([
            {"id": "plan-async", "name": "async", "description": "async"},
            {"id": "plan-xl", "name": "xl", "description": "new"},
        ]);
        *broker.state.catalog.lock().unwrap() = updated;
        let brokers = harness
            .get("/v3/service_brokers", &harness.admin_token)
            .await;
        let broker_guid = brokers.body["resources"][0]["guid"]
            .as_str()
            .unwrap()
            .to_owned();
        let answer = harness
            .patch(
                &format!("/v3/service_brokers/{broker_guid}"),
                &harness.admin_token,
                json!({"url": broker.url}),
            )
            .await;
        assert_eq!(answer.status, 202, "{:#}", answer.body);
        let job = finished_job(&harness, &answer.header("location").unwrap()).await;
        assert_eq!(job["state"], "COMPLETE", "{job:#}");
        let warning = job["warnings"][0]["detail"].as_str().unwrap_or_default();
        assert!(
            warning.contains("Service plans are missing from the broker's catalog")
                && warning.ends_with("kiln-db/small"),
            "{job:#}"
        );
        let plans = harness
            .get(
                "/v3/service_plans?service_offering_names=kiln-db",
                &harness.admin_token,
            )
            .await;
        let plans: Vec<(String, bool, String)> = plans.body["resources"]
            .as_array()
            .unwrap()
            .iter()
            .map(|plan| {
                (
                    plan["name"].as_str().unwrap().to_owned(),
                    plan["available"].as_bool().unwrap(),
                    plan["visibility_type"].as_str().unwrap().to_owned(),
                )
            })
            .collect();
        assert_eq!(
            plans,
            [
                ("small".to_owned(), false, "public".to_owned()),
                ("async".to_owned(), true, "public".to_owned()),
                ("xl".to_owned(), true, "admin".to_owned()),
            ]
        );

        // Deleting an instance unbinds its remaining bindings first.
        let deleted = harness
            .delete(&format!("/v3/service_instances/{logs}"), &developer)
            .await;
        let job = finished_job(&harness, &deleted.header("location").unwrap()).await;
        assert_eq!(job["state"], "COMPLETE", "{job:#}");
        assert_eq!(
            broker
                .received(
                    "DELETE",
                    &format!("/v2/service_instances/{logs}/service_bindings/")
                )
                .len(),
            1
        );

        harness.stop().await;
        broker.stop().await;
    }
}

/// `VCAP_SERVICES` straight from the store, as staging and start will use it.
async fn store_vcap(harness: &Harness, app: &str) -> Value {
    let url = harness.database.url().to_owned();
    let app = app.to_owned();
    tokio::task::spawn_blocking(move || {
        use diesel::Connection;
        let mut conn = if let Some(path) = url.strip_prefix("sqlite://") {
            cloud_controller::db::DbConn::Sqlite(
                diesel::sqlite::SqliteConnection::establish(path).unwrap(),
            )
        } else {
            cloud_controller::db::DbConn::Pg(diesel::pg::PgConnection::establish(&url).unwrap())
        };
        cloud_controller::store::services::vcap_services(&mut conn, &app).unwrap()
    })
    .await
    .unwrap()
}

async fn internal_drains(harness: &Harness, query: &str) -> Value {
    let answer = harness
        .http
        .get(format!(
            "{}/internal/v4/syslog_drain_urls{query}",
            harness.base
        ))
        .basic_auth(INTERNAL_USER, Some(INTERNAL_PASSWORD))
        .send()
        .await
        .unwrap();
    assert_eq!(answer.status(), 200);
    answer.json().await.unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn user_provided_instances_and_syslog_drains() {
    for database in databases() {
        let harness = start(database).await;
        let (_org, space, developer, auditor) = people(&harness, "acme").await;
        let app = harness
            .post(
                "/v3/apps",
                &developer,
                json!({"name": "my app", "relationships": {"space": {"data": {"guid": space}}}}),
            )
            .await;
        let app = app.body["guid"].as_str().unwrap().to_owned();
        let upsi = |name: &str, token: &str| {
            let harness = &harness;
            let body = json!({"type": "user-provided", "name": name, "relationships": {"space": {"data": {"guid": space}}},
                "credentials": {"token": "s3cret"}, "syslog_drain_url": "syslog-tls://drain.example.com:6514", "tags": ["ext"]});
            let token = token.to_owned();
            async move { harness.post("/v3/service_instances", &token, body).await }
        };
        let refused = upsi("ext-api", &auditor).await;
        assert_eq!(refused.status, 403);
        let flag = harness
            .patch(
                "/v3/feature_flags/service_instance_creation",
                &harness.admin_token,
                json!({"enabled": false}),
            )
            .await;
        assert_eq!(flag.status, 200, "{:#}", flag.body);
        upsi("ext-api", &developer).await.assert_v3_error(
            403,
            "CF-FeatureDisabled",
            "Feature Disabled: service_instance_creation",
        );
        harness
            .patch(
                "/v3/feature_flags/service_instance_creation",
                &harness.admin_token,
                json!({"enabled": true}),
            )
            .await;
        let created = upsi("ext-api", &developer).await;
        assert_eq!(created.status, 201, "{:#}", created.body);
        assert!(created.header("location").is_none());
        assert_eq!(created.body["type"], "user-provided");
        assert_eq!(
            created.body["syslog_drain_url"],
            "syslog-tls://drain.example.com:6514"
        );
        assert_eq!(created.body["last_operation"]["state"], "succeeded");
        assert_eq!(
            created.body["last_operation"]["description"],
            "Operation succeeded"
        );
        let upsi_guid = created.body["guid"].as_str().unwrap().to_owned();
        let taken = upsi("ext-api", &developer).await;
        assert!(taken.body["errors"][0]["detail"]
            .as_str()
            .unwrap()
            .contains("The service instance name is taken"));
        let bad = harness
            .post("/v3/service_instances", &developer, json!({"type": "user-provided", "name": "x", "relationships": {"space": {"data": {"guid": space}}}, "route_service_url": "http://plain.example.com"}))
            .await;
        assert_eq!(bad.status, 422, "{:#}", bad.body);
        let credentials = harness
            .get(
                &format!("/v3/service_instances/{upsi_guid}/credentials"),
                &developer,
            )
            .await;
        assert_eq!(credentials.body, json!({"token": "s3cret"}));
        assert_eq!(
            harness
                .get(
                    &format!("/v3/service_instances/{upsi_guid}/credentials"),
                    &auditor
                )
                .await
                .status,
            403
        );

        // Binding a user-provided instance is immediate.
        let bound = harness
            .post("/v3/service_credential_bindings", &developer, json!({"type": "app", "relationships": {
                "service_instance": {"data": {"guid": upsi_guid}}, "app": {"data": {"guid": app}}}}))
            .await;
        assert_eq!(bound.status, 201, "{:#}", bound.body);
        assert!(bound.header("location").is_none());
        let env = harness
            .get(&format!("/v3/apps/{app}/env"), &developer)
            .await;
        let entry = &env.body["system_env_json"]["VCAP_SERVICES"]["user-provided"][0];
        assert_eq!(entry["label"], "user-provided");
        assert_eq!(entry["name"], "ext-api");
        assert!(entry.get("plan").is_none() && entry.get("provider").is_none());
        assert_eq!(entry["credentials"], json!({"token": "s3cret"}));
        assert_eq!(entry["tags"], json!(["ext"]));

        let v2 = harness.get(&format!("/v2/service_instances?q=space_guid:{space}&return_user_provided_service_instances=true"), &developer).await;
        assert_eq!(
            v2.body["resources"][0]["entity"]["type"], "user_provided_service_instance",
            "{:#}",
            v2.body
        );
        let v2 = harness
            .get(
                &format!("/v2/user_provided_service_instances/{upsi_guid}"),
                &auditor,
            )
            .await;
        assert_eq!(
            v2.body["entity"]["credentials"],
            json!({"redacted_message": "[PRIVATE DATA HIDDEN]"})
        );

        // The internal drain list (Basic auth with the internal credentials).
        let unauthenticated = harness
            .http
            .get(format!("{}/internal/v4/syslog_drain_urls", harness.base))
            .send()
            .await
            .unwrap();
        assert_eq!(unauthenticated.status(), 401);
        let drains = internal_drains(&harness, "?batch_size=50&next_id=0").await;
        assert_eq!(
            drains,
            json!({"results": {app.clone(): {"drains": ["syslog-tls://drain.example.com:6514"], "hostname": "acme.dev.my-app"}}, "next_id": 50, "v5_available": true})
        );
        let route_bindings = harness
            .get(
                "/v3/service_route_bindings?include=service_instance&route_guids=x",
                &developer,
            )
            .await;
        assert_eq!(route_bindings.status, 200, "{:#}", route_bindings.body);
        assert_eq!(route_bindings.body["resources"], json!([]));
        let past = internal_drains(&harness, "?batch_size=50&next_id=50").await;
        assert_eq!(
            past,
            json!({"results": {}, "next_id": null, "v5_available": true})
        );

        // update-user-provided-service changes what bindings carry.
        let updated = harness
            .patch(&format!("/v3/service_instances/{upsi_guid}"), &developer, json!({"credentials": {"token": "new"}, "syslog_drain_url": "syslog://other.example.com:514"}))
            .await;
        assert_eq!(updated.status, 200, "{:#}", updated.body);
        let drains = internal_drains(&harness, "").await;
        assert_eq!(
            drains["results"][&app]["drains"],
            json!(["syslog://other.example.com:514"])
        );

        // Keys are not for user-provided instances; deleting them is immediate; a space with
        // only user-provided instances deletes cleanly.
        let key = harness
            .post("/v3/service_credential_bindings", &developer, json!({"type": "key", "name": "k", "relationships": {"service_instance": {"data": {"guid": upsi_guid}}}}))
            .await;
        assert_eq!(key.status, 422);
        upsi("other", &developer).await;
        let listed = harness
            .get(
                &format!(
                    "/v3/service_instances?space_guids={space}&type=user-provided&names=other"
                ),
                &developer,
            )
            .await;
        let other = listed.body["resources"][0]["guid"]
            .as_str()
            .unwrap()
            .to_owned();
        let deleted = harness
            .delete(&format!("/v3/service_instances/{other}"), &developer)
            .await;
        assert_eq!(deleted.status, 204);
        let deleted = harness
            .delete(&format!("/v3/spaces/{space}"), &harness.admin_token)
            .await;
        let job = finished_job(&harness, &deleted.header("location").unwrap()).await;
        assert_eq!(job["state"], "COMPLETE", "{job:#}");
        let drains = internal_drains(&harness, "").await;
        assert_eq!(drains["results"], json!({}));

        harness.stop().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn polling_resumes_after_a_restart() {
    for database in databases() {
        let broker = TestBroker::start().await;
        let mut harness = start(database).await;
        let (_org, space, developer, _) = people(&harness, "acme").await;
        register(&harness, "kiln-broker", &broker.url).await;
        make_public(&harness, "async").await;
        let plan = plan_guid(&harness, "async").await;
        let answer = harness
            .post(
                "/v3/service_instances",
                &developer,
                managed_body("db", &space, &plan),
            )
            .await;
        let job_path = answer
            .header("location")
            .unwrap()
            .trim_start_matches(&harness.base)
            .to_owned();
        // Stop the Cloud Controller while the operation is being polled.
        let polling = eventually(Duration::from_secs(10), || async {
            harness.get(&job_path, &harness.admin_token).await.body["state"] == "POLLING"
        })
        .await;
        assert!(polling);
        harness.cc.take().unwrap().stop().await;

        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        let mut config = cc_config(harness.database.url(), &base, &harness.issuer.url);
        config
            .services
            .broker_client_default_async_poll_interval_seconds = 1;
        harness.cc = Some(cloud_controller::run(config, listener).await.unwrap());
        harness.base = base;
        let job = finished_job(&harness, &job_path).await;
        assert_eq!(job["state"], "COMPLETE", "{job:#}");
        let listed = harness
            .get("/v3/service_instances?names=db", &developer)
            .await;
        assert_eq!(
            listed.body["resources"][0]["last_operation"]["state"],
            "succeeded"
        );

        harness.stop().await;
        broker.stop().await;
    }
}
