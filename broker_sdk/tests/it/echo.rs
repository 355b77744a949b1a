//! A broker written the way a third party would, which echoes what the framework handed it: proves
//! that unknown fields survive, the originating identity is decoded, the request identity is
//! echoed, and the framework's own guards (async without `accepts_incomplete`, unimplemented
//! operations, catalog checks) hold whatever the broker does.

use std::sync::Arc;

use broker_sdk::{
    BindError, BindOutcome, BindRequest, Binding, Catalog, CatalogError, DeleteOutcome,
    DeprovisionError, DeprovisionRequest, InstanceResponse, ProvisionError, ProvisionOutcome,
    ProvisionRequest, RequestMeta, ServiceBroker,
};
use serde_json::{json, Map, Value};

use crate::support::{guid, start};

struct EchoBroker;

fn catalog() -> Catalog {
    serde_json::from_value(json!({
        "services": [{
            "id": "echo-service", "name": "echo", "description": "echoes requests", "bindable": true,
            "plans": [
                {"id": "echo-sync", "name": "sync", "description": "answers 201",
                 "maintenance_info": {"version": "1.0.0"}},
                {"id": "echo-async", "name": "async", "description": "always answers 202"},
                {"id": "echo-unbindable", "name": "unbindable", "description": "no bindings", "bindable": false}
            ]
        }]
    }))
    .expect("echo catalog")
}

fn meta_json(meta: &RequestMeta) -> Value {
    json!({
        "api_version": meta.api_version.to_string(),
        "platform": meta.originating_identity.as_ref().map(|identity| identity.platform.clone()),
        "identity": meta.originating_identity.as_ref().map(|identity| Value::Object(identity.value.clone())),
        "user_id": meta.originating_identity.as_ref().and_then(|identity| identity.user_id().map(str::to_owned)),
        "request_identity": meta.request_identity,
    })
}

impl ServiceBroker for EchoBroker {
    async fn catalog(&self, _meta: RequestMeta) -> Result<Catalog, CatalogError> {
        Ok(catalog())
    }

    async fn provision(
        &self,
        request: ProvisionRequest,
    ) -> Result<ProvisionOutcome, ProvisionError> {
        if request.plan.id == "echo-async" {
            // Deliberately ignores `accepts_incomplete`: the framework must not pass a 202 on.
            return Ok(ProvisionOutcome::InProgress {
                operation: Some("op".to_owned()),
                dashboard_url: None,
                metadata: None,
            });
        }
        let mut extra = Map::new();
        extra.insert(
            "received".to_owned(),
            serde_json::to_value(&request.body).unwrap(),
        );
        extra.insert("meta".to_owned(), meta_json(&request.meta));
        extra.insert("resolved_plan".to_owned(), json!(request.plan.name));
        Ok(ProvisionOutcome::Created(InstanceResponse {
            extra,
            ..InstanceResponse::default()
        }))
    }

    async fn deprovision(
        &self,
        _request: DeprovisionRequest,
    ) -> Result<DeleteOutcome, DeprovisionError> {
        Ok(DeleteOutcome::Deleted)
    }

    async fn bind(&self, request: BindRequest) -> Result<BindOutcome, BindError> {
        let mut credentials = Map::new();
        credentials.insert(
            "received".to_owned(),
            serde_json::to_value(&request.body).unwrap(),
        );
        credentials.insert("app_guid".to_owned(), json!(request.body.app_guid()));
        Ok(BindOutcome::Created(Binding {
            credentials: Some(credentials),
            // Not declared in `requires`: the framework must refuse to pass it on.
            syslog_drain_url: request
                .body
                .parameters
                .as_ref()
                .and_then(|parameters| parameters.get("drain"))
                .and_then(Value::as_str)
                .map(str::to_owned),
            ..Binding::default()
        }))
    }
}

fn provision_body(plan_id: &str) -> Value {
    json!({
        "service_id": "echo-service", "plan_id": plan_id,
        "organization_guid": "org-guid", "space_guid": "space-guid",
        "context": {
            "platform": "cloudfoundry", "organization_guid": "org-guid", "space_guid": "space-guid",
            "organization_name": "org", "space_name": "space", "instance_name": "db",
            "organization_annotations": {"company.example/owner": "team-a"}
        },
        "parameters": {"size": 3},
        "x-vendor-field": {"nested": [1, 2, 3]}
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_fields_reach_the_broker_and_its_answer_reaches_the_platform() {
    let (server, osb) = start(Arc::new(EchoBroker));
    let reply = osb
        .put(
            &format!("/v2/service_instances/{}", guid()),
            &provision_body("echo-sync"),
        )
        .await;
    assert_eq!(reply.status, 201, "{:?}", reply.body);
    let received = &reply.body["received"];
    assert_eq!(received["x-vendor-field"], json!({"nested": [1, 2, 3]}));
    assert_eq!(
        received["context"]["organization_annotations"]["company.example/owner"],
        "team-a"
    );
    assert_eq!(received["context"]["instance_name"], "db");
    assert_eq!(received["parameters"], json!({"size": 3}));
    assert_eq!(reply.body["resolved_plan"], "sync");
    assert_eq!(reply.body["meta"]["api_version"], "2.17");
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_originating_identity_is_decoded_and_the_request_identity_echoed() {
    let (server, osb) = start(Arc::new(EchoBroker));
    let mut as_user = osb.as_user("user-42");
    as_user.request_identity = Some("req-123".to_owned());
    let reply = as_user
        .put(
            &format!("/v2/service_instances/{}", guid()),
            &provision_body("echo-sync"),
        )
        .await;
    assert_eq!(reply.status, 201, "{:?}", reply.body);
    assert_eq!(reply.body["meta"]["platform"], "cloudfoundry");
    assert_eq!(reply.body["meta"]["user_id"], "user-42");
    assert_eq!(
        reply.body["meta"]["identity"],
        json!({"user_id": "user-42"})
    );
    assert_eq!(reply.body["meta"]["request_identity"], "req-123");
    assert_eq!(
        reply.header("x-broker-api-request-identity"),
        Some("req-123")
    );

    // Without the header the broker sees no identity (platform-initiated requests).
    let reply = osb
        .put(
            &format!("/v2/service_instances/{}", guid()),
            &provision_body("echo-sync"),
        )
        .await;
    assert_eq!(reply.body["meta"]["platform"], Value::Null);

    for bad in [
        "cloudfoundry",
        "cloudfoundry not-base64!",
        "cloudfoundry WzFd",
        " eyJ9",
    ] {
        let mut client = osb.clone();
        client.originating_identity = Some(bad.to_owned());
        let reply = client.get("/v2/catalog").await;
        assert_eq!(reply.status, 400, "{bad:?}");
        assert!(
            reply
                .description()
                .contains("X-Broker-API-Originating-Identity"),
            "{:?}",
            reply.body
        );
    }
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_bodies_and_ids_get_osb_400s() {
    let (server, osb) = start(Arc::new(EchoBroker));
    let path = format!("/v2/service_instances/{}", guid());
    for (body, expected) in [
        (b"{not json".to_vec(), "not valid JSON"),
        (b"[1,2]".to_vec(), "must be a JSON object"),
        (b"".to_vec(), "body is missing"),
        (br#"{"plan_id":"echo-sync","organization_guid":"o","space_guid":"s"}"#.to_vec(), "service_id"),
        (br#"{"service_id":"echo-service","plan_id":"echo-sync","space_guid":"s"}"#.to_vec(), "organization_guid"),
        (br#"{"service_id":7,"plan_id":"echo-sync","organization_guid":"o","space_guid":"s"}"#.to_vec(), "invalid"),
        (br#"{"service_id":"nope","plan_id":"echo-sync","organization_guid":"o","space_guid":"s"}"#.to_vec(), "not in the catalog"),
        (br#"{"service_id":"echo-service","plan_id":"nope","organization_guid":"o","space_guid":"s"}"#.to_vec(), "not a plan of service"),
    ] {
        let reply = osb.send_raw(reqwest::Method::PUT, &path, Some(body.clone())).await;
        assert_eq!(reply.status, 400, "{}", String::from_utf8_lossy(&body));
        assert!(reply.description().contains(expected), "{expected:?} not in {:?}", reply.body);
    }
    let reply = osb
        .put(
            &format!("{path}?accepts_incomplete=yes"),
            &provision_body("echo-sync"),
        )
        .await;
    assert_eq!(reply.status, 400);
    assert!(reply.description().contains("accepts_incomplete"));
    let reply = osb.delete(&format!("{path}?plan_id=echo-sync")).await;
    assert_eq!(reply.status, 400);
    assert!(reply.description().contains("service_id"));
    let reply = osb.delete(&format!("{path}?service_id=echo-service")).await;
    assert_eq!(reply.status, 400);
    assert!(reply.description().contains("plan_id"));
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_framework_turns_an_unrequested_202_into_async_required() {
    let (server, osb) = start(Arc::new(EchoBroker));
    let path = format!("/v2/service_instances/{}", guid());
    let reply = osb.put(&path, &provision_body("echo-async")).await;
    assert_eq!(reply.status, 422);
    assert_eq!(reply.body["error"], "AsyncRequired");
    let reply = osb
        .put(
            &format!("{path}?accepts_incomplete=true"),
            &provision_body("echo-async"),
        )
        .await;
    assert_eq!(reply.status, 202);
    assert_eq!(reply.body, json!({"operation": "op"}));
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn maintenance_info_must_match_the_catalog() {
    let (server, osb) = start(Arc::new(EchoBroker));
    let mut body = provision_body("echo-sync");
    body["maintenance_info"] = json!({"version": "0.9.0"});
    let reply = osb
        .put(&format!("/v2/service_instances/{}", guid()), &body)
        .await;
    assert_eq!(reply.status, 422);
    assert_eq!(reply.body["error"], "MaintenanceInfoConflict");
    body["maintenance_info"] = json!({"version": "1.0.0"});
    assert_eq!(
        osb.put(&format!("/v2/service_instances/{}", guid()), &body)
            .await
            .status,
        201
    );
    // The osb-checker sends an empty object; that is no conflict.
    body["maintenance_info"] = json!({});
    assert_eq!(
        osb.put(&format!("/v2/service_instances/{}", guid()), &body)
            .await
            .status,
        201
    );
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn binds_are_checked_against_the_catalog_and_the_offerings_requires() {
    let (server, osb) = start(Arc::new(EchoBroker));
    let instance = guid();
    let path = format!(
        "/v2/service_instances/{instance}/service_bindings/{}",
        guid()
    );
    let body = json!({"service_id": "echo-service", "plan_id": "echo-sync",
                      "bind_resource": {"app_guid": "app-1", "x-vendor": true}});
    let reply = osb.put(&path, &body).await;
    assert_eq!(reply.status, 201, "{:?}", reply.body);
    assert_eq!(reply.body["credentials"]["app_guid"], "app-1");
    assert_eq!(
        reply.body["credentials"]["received"]["bind_resource"]["x-vendor"],
        true
    );

    let reply = osb
        .put(
            &path,
            &json!({"service_id": "echo-service", "plan_id": "echo-unbindable"}),
        )
        .await;
    assert_eq!(reply.status, 400);
    assert!(reply.description().contains("not bindable"));

    let reply = osb
        .put(
            &path,
            &json!({"service_id": "echo-service", "plan_id": "echo-sync",
                            "parameters": {"drain": "syslog://logs.example:514"}}),
        )
        .await;
    assert_eq!(reply.status, 500);
    assert!(
        reply.description().contains("syslog_drain"),
        "{:?}",
        reply.body
    );
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn operations_a_broker_does_not_implement_answer_501() {
    let (server, osb) = start(Arc::new(EchoBroker));
    let instance = guid();
    for reply in [
        osb.get(&format!("/v2/service_instances/{instance}")).await,
        osb.get(&format!("/v2/service_instances/{instance}/last_operation")).await,
        osb.patch(
            &format!("/v2/service_instances/{instance}"),
            &json!({"service_id": "echo-service", "plan_id": "echo-sync"}),
        )
        .await,
        osb.delete(&format!(
            "/v2/service_instances/{instance}/service_bindings/b?service_id=echo-service&plan_id=echo-sync"
        ))
        .await,
        osb.get(&format!("/v2/service_instances/{instance}/service_bindings/b")).await,
        osb.get(&format!("/v2/service_instances/{instance}/service_bindings/b/last_operation")).await,
    ] {
        assert_eq!(reply.status, 501, "{:?}", reply.body);
        assert!(reply.description().contains("does not implement"));
    }
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plan_changes_need_plan_updateable() {
    let (server, osb) = start(Arc::new(EchoBroker));
    let reply = osb
        .patch(
            &format!("/v2/service_instances/{}", guid()),
            &json!({"service_id": "echo-service", "plan_id": "echo-async",
                    "previous_values": {"plan_id": "echo-sync"}}),
        )
        .await;
    assert_eq!(reply.status, 422);
    assert!(
        reply.description().contains("plan_updateable"),
        "{:?}",
        reply.body
    );
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_oversized_body_gets_an_osb_413() {
    let (server, osb) = start(Arc::new(EchoBroker));
    let mut body = provision_body("echo-sync");
    body["parameters"] = json!({"blob": "x".repeat(2 * 1024 * 1024)});
    let reply = osb
        .put(&format!("/v2/service_instances/{}", guid()), &body)
        .await;
    assert_eq!(reply.status, 413);
    assert!(
        reply.description().contains("larger than"),
        "{:?}",
        reply.body
    );
    server.stop().await;
}
