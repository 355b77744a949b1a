//! The catalog endpoint and the checks every request goes through: basic auth, the version
//! header, catalog validation.

use std::sync::Arc;
use std::time::Duration;

use broker_sdk::brokers::memory::{self, MemoryBroker};
use broker_sdk::{
    Catalog, CatalogError, ProvisionError, ProvisionOutcome, ProvisionRequest, RequestMeta,
    ServiceBroker, Settings,
};
use serde_json::json;

use crate::support::{credentials, start, start_memory, start_with_settings};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_catalog_is_served_to_an_authenticated_platform() {
    let (server, _broker, osb) = start_memory(Duration::from_millis(100));
    let reply = osb.get("/v2/catalog").await;
    assert_eq!(reply.status, 200, "{:?}", reply.body);
    let service = &reply.body["services"][0];
    assert_eq!(service["name"], memory::SERVICE_NAME);
    assert_eq!(service["id"], memory::SERVICE_ID);
    assert_eq!(service["bindable"], true);
    assert_eq!(service["plan_updateable"], true);
    assert_eq!(service["instances_retrievable"], true);
    assert_eq!(service["bindings_retrievable"], true);
    let plan_names: Vec<&str> = service["plans"]
        .as_array()
        .unwrap()
        .iter()
        .map(|plan| plan["name"].as_str().unwrap())
        .collect();
    assert_eq!(plan_names, ["small", "large", "async"]);
    assert_eq!(
        service["plans"][1]["schemas"]["service_instance"]["create"]["parameters"]["$schema"],
        "http://json-schema.org/draft-04/schema#"
    );
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requests_without_the_right_credentials_get_401() {
    let (server, broker, osb) = start_memory(Duration::from_millis(100));
    for client in [
        osb.without_auth(),
        osb.with_auth("broker-user", "wrong"),
        osb.with_auth("someone", "broker-password"),
        osb.with_auth("", ""),
    ] {
        let reply = client.get("/v2/catalog").await;
        assert_eq!(reply.status, 401);
        assert!(reply
            .header("www-authenticate")
            .unwrap()
            .starts_with("Basic"));
        assert!(!reply.description().is_empty());
        let reply = client
            .put(
                "/v2/service_instances/i-1",
                &json!({"service_id": memory::SERVICE_ID, "plan_id": memory::SMALL_PLAN_ID,
                        "organization_guid": "o", "space_guid": "s"}),
            )
            .await;
        assert_eq!(reply.status, 401);
    }
    // Authentication comes before the version check.
    let reply = osb
        .without_auth()
        .with_version(None)
        .get("/v2/catalog")
        .await;
    assert_eq!(reply.status, 401);
    assert!(
        broker.instance_ids().is_empty(),
        "a refused request changed nothing"
    );
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_missing_or_unsupported_version_header_gets_412() {
    let (server, _broker, osb) = start_memory(Duration::from_millis(100));
    for version in [
        None,
        Some("1.13"),
        Some("3.0"),
        Some("two"),
        Some("2"),
        Some(""),
    ] {
        let reply = osb.with_version(version).get("/v2/catalog").await;
        assert_eq!(reply.status, 412, "version {version:?}");
        assert!(
            reply.description().contains("X-Broker-API-Version"),
            "{:?}",
            reply.body
        );
    }
    for version in ["2.13", "2.15", "2.17", "2.99"] {
        assert_eq!(
            osb.with_version(Some(version))
                .get("/v2/catalog")
                .await
                .status,
            200,
            "{version}"
        );
    }
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_missing_version_status_can_be_the_specs_400() {
    let settings = Settings {
        missing_version_status: 400,
        ..Settings::new(credentials())
    };
    let (server, osb) = start_with_settings(Arc::new(MemoryBroker::default()), settings);
    assert_eq!(osb.with_version(None).get("/v2/catalog").await.status, 400);
    assert_eq!(
        osb.with_version(Some("1.0"))
            .get("/v2/catalog")
            .await
            .status,
        412
    );
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn several_credentials_can_be_accepted_during_a_rotation() {
    let mut settings = Settings::new(credentials());
    settings
        .credentials
        .push(broker_sdk::Credentials::new("new-user", "new-password"));
    let (server, osb) = start_with_settings(Arc::new(MemoryBroker::default()), settings);
    assert_eq!(osb.get("/v2/catalog").await.status, 200);
    assert_eq!(
        osb.with_auth("new-user", "new-password")
            .get("/v2/catalog")
            .await
            .status,
        200
    );
    assert_eq!(
        osb.with_auth("new-user", "broker-password")
            .get("/v2/catalog")
            .await
            .status,
        401
    );
    server.stop().await;
}

/// A broker whose catalog is whatever the test gives it.
struct FixedCatalog(Catalog);

impl ServiceBroker for FixedCatalog {
    async fn catalog(&self, _meta: RequestMeta) -> Result<Catalog, CatalogError> {
        Ok(self.0.clone())
    }

    async fn provision(
        &self,
        _request: ProvisionRequest,
    ) -> Result<ProvisionOutcome, ProvisionError> {
        Err(ProvisionError::Internal("not used".to_owned()))
    }

    async fn deprovision(
        &self,
        _request: broker_sdk::DeprovisionRequest,
    ) -> Result<broker_sdk::DeleteOutcome, broker_sdk::DeprovisionError> {
        Err(broker_sdk::DeprovisionError::Gone)
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_invalid_catalog_is_refused_with_every_problem_in_the_cloud_controllers_format() {
    let catalog: Catalog = serde_json::from_value(json!({
        "services": [
            {"id": "s1", "name": "one", "description": "first", "bindable": true,
             "requires": ["teleport"],
             "plans": [
                {"id": "p1", "name": "small", "description": ""},
                {"id": "p1", "name": "small", "description": "again",
                 "maintenance_info": {"version": "one"}}
             ]},
            {"id": "s1", "name": "two words", "description": "second", "bindable": false, "plans": []}
        ]
    }))
    .unwrap();
    let (server, osb) = start(Arc::new(FixedCatalog(catalog)));
    let reply = osb.get("/v2/catalog").await;
    assert_eq!(reply.status, 500);
    let report = reply.description();
    for expected in [
        "Service broker catalog is invalid: ",
        "\nService one\n",
        "  Service \"requires\" field contains unsupported value \"teleport\"",
        "  Service id must be unique",
        "  Plan ids must be unique within a service. Service one already has a plan with id 'p1'",
        "  Plan names must be unique within a service. Service one already has a plan named small",
        "\n  Plan small\n    Plan description is required",
        "    Maintenance info version must be a semantic version, but has value \"one\"",
        "\nService two words\n",
        "  Service name \"two words\" must contain only alphanumeric characters",
        "  At least one plan is required",
    ] {
        assert!(
            report.contains(expected),
            "missing {expected:?} in:\n{report}"
        );
    }
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_catalog_fields_are_kept() {
    let catalog: Catalog = serde_json::from_value(json!({
        "x-vendor-catalog": 1,
        "services": [
            {"id": "s1", "name": "one", "description": "first", "bindable": true,
             "x-vendor-service": {"tier": "gold"},
             "plans": [{"id": "p1", "name": "small", "description": "a plan", "x-vendor-plan": [1, 2]}]}
        ]
    }))
    .unwrap();
    let (server, osb) = start(Arc::new(FixedCatalog(catalog)));
    let reply = osb.get("/v2/catalog").await;
    assert_eq!(reply.status, 200, "{:?}", reply.body);
    assert_eq!(reply.body["x-vendor-catalog"], 1);
    assert_eq!(
        reply.body["services"][0]["x-vendor-service"]["tier"],
        "gold"
    );
    assert_eq!(
        reply.body["services"][0]["plans"][0]["x-vendor-plan"],
        json!([1, 2])
    );
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn routes_mount_next_to_an_apps_own_routes() {
    let broker = Arc::new(MemoryBroker::default());
    let credentials = credentials();
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let server = actix_web::HttpServer::new(move || {
        actix_web::App::new()
            .route("/healthz", actix_web::web::get().to(|| async { "ok" }))
            .configure(broker_sdk::routes(broker.clone(), credentials.clone()))
    })
    .workers(1)
    .disable_signals()
    .listen(listener)
    .unwrap()
    .run();
    let handle = server.handle();
    let task = tokio::spawn(server);
    let osb = crate::support::Osb::new(format!("http://{addr}"));
    assert_eq!(osb.get("/v2/catalog").await.status, 200);
    let health = reqwest::get(format!("http://{addr}/healthz"))
        .await
        .unwrap();
    assert_eq!(health.text().await.unwrap(), "ok");
    handle.stop(true).await;
    task.await.unwrap().unwrap();
}
