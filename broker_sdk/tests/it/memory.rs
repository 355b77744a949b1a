//! The memory broker over HTTP: synchronous and asynchronous provision, update, bind, unbind and
//! deprovision, polling with `Retry-After`, and the error answers (409, 410, 422) a platform must
//! handle.

use std::time::Duration;

use broker_sdk::brokers::memory::{ASYNC_PLAN_ID, LARGE_PLAN_ID, SERVICE_ID, SMALL_PLAN_ID};
use serde_json::{json, Value};

use crate::support::{eventually, guid, start_memory, Osb, Reply};

const DELAY: Duration = Duration::from_millis(300);
/// For tests that check what happens *while* an operation runs: long enough that a loaded
/// machine still makes those requests before the operation ends.
const SLOW_DELAY: Duration = Duration::from_secs(2);
const PATIENCE: Duration = Duration::from_secs(20);

fn provision_body(plan_id: &str, parameters: Value) -> Value {
    json!({
        "service_id": SERVICE_ID, "plan_id": plan_id,
        "organization_guid": "org-guid", "space_guid": "space-guid",
        "context": {"platform": "cloudfoundry", "organization_guid": "org-guid", "space_guid": "space-guid",
                    "organization_name": "org", "space_name": "space", "instance_name": "db"},
        "parameters": parameters,
    })
}

fn bind_body(plan_id: &str, parameters: Value) -> Value {
    json!({
        "service_id": SERVICE_ID, "plan_id": plan_id, "app_guid": "app-guid",
        "bind_resource": {"app_guid": "app-guid", "space_guid": "space-guid"},
        "parameters": parameters,
    })
}

fn query(plan_id: &str) -> String {
    format!("service_id={SERVICE_ID}&plan_id={plan_id}")
}

/// Polls `path` (a last_operation URL) until its state is not `in progress`.
async fn poll_until_done(osb: &Osb, path: &str) -> Reply {
    eventually(PATIENCE, || async {
        let reply = osb.get(path).await;
        (reply.status != 200 || reply.body["state"] != "in progress").then_some(reply)
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn synchronous_instances_live_and_die() {
    let (server, broker, osb) = start_memory(DELAY);
    let instance = guid();
    let path = format!("/v2/service_instances/{instance}");

    let reply = osb
        .put(&path, &provision_body(SMALL_PLAN_ID, json!({"size": 1})))
        .await;
    assert_eq!(reply.status, 201, "{:?}", reply.body);
    assert_eq!(
        reply.body["dashboard_url"],
        format!("https://memdb.example/dashboard/instances/{instance}")
    );
    assert_eq!(broker.instance_ids(), vec![instance.clone()]);

    // Identical again: 200. Different: 409, and nothing changes.
    assert_eq!(
        osb.put(&path, &provision_body(SMALL_PLAN_ID, json!({"size": 1})))
            .await
            .status,
        200
    );
    let reply = osb
        .put(&path, &provision_body(LARGE_PLAN_ID, json!({"size": 1})))
        .await;
    assert_eq!(reply.status, 409);
    assert!(reply.description().contains("different attributes"));

    let reply = osb.get(&path).await;
    assert_eq!(reply.status, 200);
    assert_eq!(reply.body["plan_id"], SMALL_PLAN_ID);
    assert_eq!(reply.body["service_id"], SERVICE_ID);
    assert_eq!(reply.body["parameters"], json!({"size": 1}));

    // Plan change small → large is synchronous.
    let reply = osb
        .patch(
            &path,
            &json!({"service_id": SERVICE_ID, "plan_id": LARGE_PLAN_ID,
                              "previous_values": {"plan_id": SMALL_PLAN_ID}, "parameters": {}}),
        )
        .await;
    assert_eq!(reply.status, 200, "{:?}", reply.body);
    assert_eq!(osb.get(&path).await.body["plan_id"], LARGE_PLAN_ID);

    // To the async plan needs accepts_incomplete.
    let reply = osb
        .patch(
            &path,
            &json!({"service_id": SERVICE_ID, "plan_id": ASYNC_PLAN_ID,
                              "previous_values": {"plan_id": LARGE_PLAN_ID}}),
        )
        .await;
    assert_eq!(reply.status, 422);
    assert_eq!(reply.body["error"], "AsyncRequired");

    let reply = osb
        .delete(&format!("{path}?{}", query(LARGE_PLAN_ID)))
        .await;
    assert_eq!(reply.status, 200);
    assert_eq!(reply.body, json!({}));
    let reply = osb
        .delete(&format!("{path}?{}", query(LARGE_PLAN_ID)))
        .await;
    assert_eq!(reply.status, 410);
    assert_eq!(reply.body, json!({}));
    assert_eq!(osb.get(&path).await.status, 404);
    assert!(broker.instance_ids().is_empty());

    let reply = osb
        .patch(
            &format!("/v2/service_instances/{}", guid()),
            &json!({"service_id": SERVICE_ID}),
        )
        .await;
    assert_eq!(reply.status, 404);
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn synchronous_bindings_carry_credentials_with_a_uri() {
    let (server, broker, osb) = start_memory(DELAY);
    let instance = guid();
    let binding = guid();
    let instance_path = format!("/v2/service_instances/{instance}");
    let path = format!("{instance_path}/service_bindings/{binding}");

    let reply = osb.put(&path, &bind_body(SMALL_PLAN_ID, json!({}))).await;
    assert_eq!(
        reply.status, 404,
        "binding to a missing instance: {:?}",
        reply.body
    );

    assert_eq!(
        osb.put(&instance_path, &provision_body(SMALL_PLAN_ID, json!({})))
            .await
            .status,
        201
    );
    let reply = osb
        .put(&path, &bind_body(SMALL_PLAN_ID, json!({"role": "ro"})))
        .await;
    assert_eq!(reply.status, 201, "{:?}", reply.body);
    let credentials = reply.body["credentials"].clone();
    let uri = credentials["uri"].as_str().unwrap();
    assert!(uri.starts_with("memdb://memdb-"), "{uri}");
    assert!(uri.contains(credentials["password"].as_str().unwrap()));
    assert_eq!(broker.binding_ids(&instance), vec![binding.clone()]);

    let reply = osb
        .put(&path, &bind_body(SMALL_PLAN_ID, json!({"role": "ro"})))
        .await;
    assert_eq!(reply.status, 200);
    assert_eq!(
        reply.body["credentials"], credentials,
        "an identical bind returns the same binding"
    );
    let reply = osb
        .put(&path, &bind_body(SMALL_PLAN_ID, json!({"role": "rw"})))
        .await;
    assert_eq!(reply.status, 409);

    let reply = osb.get(&path).await;
    assert_eq!(reply.status, 200);
    assert_eq!(reply.body["credentials"], credentials);
    assert_eq!(reply.body["parameters"], json!({"role": "ro"}));

    let reply = osb
        .delete(&format!("{path}?{}", query(SMALL_PLAN_ID)))
        .await;
    assert_eq!(reply.status, 200);
    assert_eq!(reply.body, json!({}));
    let reply = osb
        .delete(&format!("{path}?{}", query(SMALL_PLAN_ID)))
        .await;
    assert_eq!(reply.status, 410);
    assert_eq!(osb.get(&path).await.status, 404);
    assert!(broker.binding_ids(&instance).is_empty());
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn asynchronous_plans_need_accepts_incomplete_and_are_polled_to_the_end() {
    let (server, broker, osb) = start_memory(SLOW_DELAY);
    let instance = guid();
    let path = format!("/v2/service_instances/{instance}");
    let last_operation = format!("{path}/last_operation?{}", query(ASYNC_PLAN_ID));

    let reply = osb
        .put(&path, &provision_body(ASYNC_PLAN_ID, json!({})))
        .await;
    assert_eq!(reply.status, 422);
    assert_eq!(reply.body["error"], "AsyncRequired");
    assert!(
        broker.instance_ids().is_empty(),
        "a 422 leaves nothing behind"
    );

    let reply = osb
        .put(
            &format!("{path}?accepts_incomplete=true"),
            &provision_body(ASYNC_PLAN_ID, json!({})),
        )
        .await;
    assert_eq!(reply.status, 202, "{:?}", reply.body);
    let operation = reply.body["operation"].as_str().unwrap().to_owned();
    assert!(
        reply.body["dashboard_url"].is_string(),
        "dashboard_url comes with the first answer"
    );

    // A re-sent provision while it runs gets 202 with the same operation.
    let again = osb
        .put(
            &format!("{path}?accepts_incomplete=true"),
            &provision_body(ASYNC_PLAN_ID, json!({})),
        )
        .await;
    assert_eq!(again.status, 202);
    assert_eq!(again.body["operation"], operation.as_str());

    // Still provisioning: fetch answers 404, bind and delete ConcurrencyError.
    assert_eq!(osb.get(&path).await.status, 404);
    let reply = osb
        .put(
            &format!("{path}/service_bindings/{}?accepts_incomplete=true", guid()),
            &bind_body(ASYNC_PLAN_ID, json!({})),
        )
        .await;
    assert_eq!(reply.status, 422);
    assert_eq!(reply.body["error"], "ConcurrencyError");
    let reply = osb
        .delete(&format!(
            "{path}?{}&accepts_incomplete=true",
            query(ASYNC_PLAN_ID)
        ))
        .await;
    assert_eq!(reply.status, 422);
    assert_eq!(reply.body["error"], "ConcurrencyError");

    let reply = osb
        .get(&format!("{last_operation}&operation={operation}"))
        .await;
    assert_eq!(reply.status, 200);
    assert_eq!(reply.body["state"], "in progress");
    let retry_after: u64 = reply
        .header("retry-after")
        .expect("Retry-After")
        .parse()
        .unwrap();
    assert!((1..=2).contains(&retry_after), "{retry_after}");

    let done = poll_until_done(&osb, &last_operation).await;
    assert_eq!(done.status, 200);
    assert_eq!(done.body["state"], "succeeded");
    assert_eq!(osb.get(&path).await.status, 200);

    // Asynchronous bind: 202 without credentials, then poll, then fetch.
    let binding = guid();
    let binding_path = format!("{path}/service_bindings/{binding}");
    let reply = osb
        .put(&binding_path, &bind_body(ASYNC_PLAN_ID, json!({})))
        .await;
    assert_eq!(reply.status, 422);
    assert_eq!(reply.body["error"], "AsyncRequired");
    let reply = osb
        .put(
            &format!("{binding_path}?accepts_incomplete=true"),
            &bind_body(ASYNC_PLAN_ID, json!({})),
        )
        .await;
    assert_eq!(reply.status, 202);
    assert!(reply.body.get("credentials").is_none(), "{:?}", reply.body);
    assert_eq!(
        osb.get(&binding_path).await.status,
        404,
        "not fetchable while in progress"
    );
    let binding_operation = format!("{binding_path}/last_operation?{}", query(ASYNC_PLAN_ID));
    let done = poll_until_done(&osb, &binding_operation).await;
    assert_eq!(done.body["state"], "succeeded");
    assert!(done.body.get("instance_usable").is_none());
    let reply = osb.get(&binding_path).await;
    assert_eq!(reply.status, 200);
    assert!(reply.body["credentials"]["uri"]
        .as_str()
        .unwrap()
        .starts_with("memdb://"));

    // Asynchronous unbind ends with 410 on the binding's last operation.
    let reply = osb
        .delete(&format!(
            "{binding_path}?{}&accepts_incomplete=true",
            query(ASYNC_PLAN_ID)
        ))
        .await;
    assert_eq!(reply.status, 202);
    let gone = poll_until_done(&osb, &binding_operation).await;
    assert_eq!(gone.status, 410);
    assert_eq!(gone.body, json!({}));

    // Asynchronous deprovision needs accepts_incomplete, and ends with 410 on last_operation.
    let reply = osb
        .delete(&format!("{path}?{}", query(ASYNC_PLAN_ID)))
        .await;
    assert_eq!(reply.status, 422);
    assert_eq!(reply.body["error"], "AsyncRequired");
    let reply = osb
        .delete(&format!(
            "{path}?{}&accepts_incomplete=true",
            query(ASYNC_PLAN_ID)
        ))
        .await;
    assert_eq!(reply.status, 202);
    let delete_operation = reply.body["operation"].as_str().unwrap().to_owned();
    let again = osb
        .delete(&format!(
            "{path}?{}&accepts_incomplete=true",
            query(ASYNC_PLAN_ID)
        ))
        .await;
    assert_eq!(again.status, 202);
    assert_eq!(again.body["operation"], delete_operation.as_str());
    let gone = poll_until_done(&osb, &last_operation).await;
    assert_eq!(gone.status, 410);
    assert!(broker.instance_ids().is_empty());

    // An instance nobody ever created: 404.
    let reply = osb
        .get(&format!("/v2/service_instances/{}/last_operation", guid()))
        .await;
    assert_eq!(reply.status, 404);
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn asynchronous_updates_report_and_apply_their_result() {
    let (server, _broker, osb) = start_memory(SLOW_DELAY);
    let path = format!("/v2/service_instances/{}", guid());
    assert_eq!(
        osb.put(&path, &provision_body(SMALL_PLAN_ID, json!({})))
            .await
            .status,
        201
    );
    let reply = osb
        .patch(
            &format!("{path}?accepts_incomplete=true"),
            &json!({"service_id": SERVICE_ID, "plan_id": ASYNC_PLAN_ID,
                    "previous_values": {"plan_id": SMALL_PLAN_ID}, "parameters": {"tier": 2}}),
        )
        .await;
    assert_eq!(reply.status, 202, "{:?}", reply.body);
    // Being updated: fetch answers ConcurrencyError, so does a second update.
    let reply = osb.get(&path).await;
    assert_eq!(reply.status, 422);
    assert_eq!(reply.body["error"], "ConcurrencyError");
    let reply = osb
        .patch(
            &format!("{path}?accepts_incomplete=true"),
            &json!({"service_id": SERVICE_ID}),
        )
        .await;
    assert_eq!(reply.status, 422);
    assert_eq!(reply.body["error"], "ConcurrencyError");
    let done = poll_until_done(
        &osb,
        &format!("{path}/last_operation?{}", query(SMALL_PLAN_ID)),
    )
    .await;
    assert_eq!(done.body["state"], "succeeded", "{:?}", done.body);
    let reply = osb.get(&path).await;
    assert_eq!(reply.body["plan_id"], ASYNC_PLAN_ID);
    assert_eq!(reply.body["parameters"], json!({"tier": 2}));

    // A failing asynchronous update: failed, usable and repeatable; nothing applied.
    let reply = osb
        .patch(
            &format!("{path}?accepts_incomplete=true"),
            &json!({"service_id": SERVICE_ID, "plan_id": SMALL_PLAN_ID,
                    "previous_values": {"plan_id": ASYNC_PLAN_ID}, "parameters": {"fail_async": true}}),
        )
        .await;
    assert_eq!(reply.status, 202);
    let done = poll_until_done(
        &osb,
        &format!("{path}/last_operation?{}", query(ASYNC_PLAN_ID)),
    )
    .await;
    assert_eq!(done.body["state"], "failed");
    assert_eq!(done.body["instance_usable"], true);
    assert_eq!(done.body["update_repeatable"], true);
    assert_eq!(osb.get(&path).await.body["plan_id"], ASYNC_PLAN_ID);
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failures_can_be_injected_through_parameters() {
    let (server, broker, osb) = start_memory(DELAY);
    let path = format!("/v2/service_instances/{}", guid());

    let reply = osb
        .put(&path, &provision_body(SMALL_PLAN_ID, json!({"fail": true})))
        .await;
    assert_eq!(reply.status, 400);
    assert!(
        reply.description().contains("memdb: provisioning failed"),
        "{:?}",
        reply.body
    );
    let reply = osb
        .put(&path, &provision_body(SMALL_PLAN_ID, json!({"fail": 503})))
        .await;
    assert_eq!(reply.status, 503);
    assert!(!reply.description().is_empty());
    assert!(broker.instance_ids().is_empty());

    // An asynchronous provision that ends failed, then can still be deleted.
    let reply = osb
        .put(
            &format!("{path}?accepts_incomplete=true"),
            &provision_body(ASYNC_PLAN_ID, json!({"fail_async": true})),
        )
        .await;
    assert_eq!(reply.status, 202);
    let done = poll_until_done(
        &osb,
        &format!("{path}/last_operation?{}", query(ASYNC_PLAN_ID)),
    )
    .await;
    assert_eq!(done.body["state"], "failed");
    assert!(done.body["description"]
        .as_str()
        .unwrap()
        .contains("fail_async"));
    assert_eq!(osb.get(&path).await.status, 404);
    let reply = osb
        .delete(&format!(
            "{path}?{}&accepts_incomplete=true",
            query(ASYNC_PLAN_ID)
        ))
        .await;
    assert_eq!(reply.status, 202);

    // Deprovision failures carry instance_usable; unbind failures are 500s.
    let sticky = format!("/v2/service_instances/{}", guid());
    let reply = osb
        .put(
            &sticky,
            &provision_body(
                SMALL_PLAN_ID,
                json!({"fail_deprovision": true, "require_app": true}),
            ),
        )
        .await;
    assert_eq!(reply.status, 201);
    let reply = osb
        .delete(&format!("{sticky}?{}", query(SMALL_PLAN_ID)))
        .await;
    assert_eq!(reply.status, 500);
    assert_eq!(reply.body["instance_usable"], true);
    assert!(reply.description().contains("fail_deprovision"));

    // RequiresApp for a key (no app guid) on an instance that wants apps.
    let reply = osb
        .put(
            &format!("{sticky}/service_bindings/{}", guid()),
            &json!({"service_id": SERVICE_ID, "plan_id": SMALL_PLAN_ID, "bind_resource": {}}),
        )
        .await;
    assert_eq!(reply.status, 422);
    assert_eq!(reply.body["error"], "RequiresApp");

    let binding_path = format!("{sticky}/service_bindings/{}", guid());
    let reply = osb
        .put(
            &binding_path,
            &bind_body(SMALL_PLAN_ID, json!({"fail_unbind": true})),
        )
        .await;
    assert_eq!(reply.status, 201);
    let reply = osb
        .delete(&format!("{binding_path}?{}", query(SMALL_PLAN_ID)))
        .await;
    assert_eq!(reply.status, 500);
    let reply = osb
        .put(
            &format!("{sticky}/service_bindings/{}", guid()),
            &bind_body(SMALL_PLAN_ID, json!({"fail": 409})),
        )
        .await;
    assert_eq!(reply.status, 409);
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ids_are_percent_decoded_and_several_servers_keep_separate_state() {
    let (server, broker, osb) = start_memory(DELAY);
    let (other_server, other_broker, other) = start_memory(DELAY);
    let reply = osb
        .put(
            "/v2/service_instances/with%20space",
            &provision_body(SMALL_PLAN_ID, json!({})),
        )
        .await;
    assert_eq!(reply.status, 201);
    assert_eq!(broker.instance_ids(), vec!["with space".to_owned()]);
    assert!(other_broker.instance_ids().is_empty());
    assert_eq!(
        other.get("/v2/service_instances/with%20space").await.status,
        404
    );
    server.stop().await;
    other_server.stop().await;
}
