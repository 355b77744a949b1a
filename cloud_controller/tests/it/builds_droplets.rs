//! Builds (recorded STAGING; without NATS and DEAs they fail with "no available stagers") and
//! droplets (none exist before staging: empty lists, CC's exact "Droplet not found", no droplet
//! can be assigned). Staging on a real DEA is in `staging.rs`.

use serde_json::json;

use crate::packages::{app_with_people, file, make_zip, new_package, upload};
use crate::support::{check, databases, Harness};

const MISSING: &str = "00000000-0000-4000-8000-000000000000";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn builds_fail_without_stagers_and_droplets_answer_like_cc() {
    for database in databases() {
        let harness = Harness::start(database).await;
        let (app, developer, auditor) = app_with_people(&harness).await;
        let outsider = harness.issuer.add_user("olga", "uaa");
        let outsider = harness.issuer.user_token(&outsider);
        let package = new_package(&harness, &app, &developer).await;

        harness
            .post(
                "/v3/builds",
                &developer,
                json!({"package": {"guid": package}}),
            )
            .await
            .assert_v3_error(
                400,
                "CF-BadRequest",
                "Bad request: Cannot stage package whose state is not ready.",
            );
        let bits = make_zip(&[file("index.html", b"hi")]);
        let uploaded = upload(&harness, &package, &developer, None, Some(&bits)).await;
        assert_eq!(uploaded.status, 200, "{:#}", uploaded.body);

        harness
            .post(
                "/v3/builds",
                &auditor,
                json!({"package": {"guid": package}}),
            )
            .await
            .assert_v3_error(
                403,
                "CF-NotAuthorized",
                "You are not authorized to perform the requested action",
            );
        harness
            .post(
                "/v3/builds",
                &outsider,
                json!({"package": {"guid": package}}),
            )
            .await
            .assert_v3_error(
                422,
                "CF-UnprocessableEntity",
                "Unable to use package. Ensure that the package exists and you have access to it.",
            );
        let build = harness
            .post(
                "/v3/builds",
                &developer,
                json!({"package": {"guid": package}}),
            )
            .await;
        assert_eq!(build.status, 201, "{:#}", build.body);
        check(
            &build.body,
            &harness.base,
            json!({
                "guid": "<guid>", "created_at": "<time>", "updated_at": "<time>",
                "created_by": {"guid": "<guid>", "name": "dora", "email": ""},
                // No DEA: staging fails at once, and the create answers that outcome.
                "state": "FAILED",
                "staging_memory_in_mb": 1024, "staging_disk_in_mb": 1024,
                "staging_log_rate_limit_bytes_per_second": -1,
                "error": "StagingError - Staging error: no available stagers",
                "lifecycle": {"type": "buildpack", "data": {"buildpacks": [], "stack": "kiln-host"}},
                "package": {"guid": "<guid>"},
                "droplet": null,
                "relationships": {"app": {"data": {"guid": "<guid>"}}},
                "metadata": {"labels": {}, "annotations": {}},
                "links": {"self": {"href": "<api>/v3/builds/<guid>"}, "app": {"href": "<api>/v3/apps/<guid>"}},
            }),
        );
        let build_guid = build.body["guid"].as_str().unwrap().to_owned();
        let read = harness
            .get(&format!("/v3/builds/{build_guid}"), &auditor)
            .await;
        assert_eq!(read.status, 200, "{:#}", read.body);
        assert_eq!(read.body["package"]["guid"], package.as_str());
        let failed = crate::staging::wait_for_build(&harness, &build_guid, &auditor, 10).await;
        assert_eq!(failed["state"], "FAILED", "{failed:#}");
        assert_eq!(
            failed["error"],
            "StagingError - Staging error: no available stagers"
        );
        assert_eq!(failed["droplet"], serde_json::Value::Null);
        harness
            .get(&format!("/v3/builds/{build_guid}"), &outsider)
            .await
            .assert_v3_error(404, "CF-ResourceNotFound", "Build not found");

        // No droplets before staging.
        for path in [
            format!("/v3/apps/{app}/droplets"),
            format!("/v3/packages/{package}/droplets?states=STAGED"),
        ] {
            let list = harness.get(&path, &developer).await;
            assert_eq!(list.status, 200, "{path}: {:#}", list.body);
            assert_eq!(list.body["resources"], json!([]));
        }
        for path in [
            format!("/v3/apps/{app}/droplets/current"),
            format!("/v3/apps/{app}/relationships/current_droplet"),
            format!("/v3/droplets/{MISSING}"),
        ] {
            harness.get(&path, &developer).await.assert_v3_error(
                404,
                "CF-ResourceNotFound",
                "Droplet not found",
            );
        }
        harness
            .get(&format!("/v3/apps/{app}/droplets/current"), &outsider)
            .await
            .assert_v3_error(404, "CF-ResourceNotFound", "App not found");
        let relationship = format!("/v3/apps/{app}/relationships/current_droplet");
        harness
            .patch(&relationship, &developer, json!({"data": {"guid": MISSING}}))
            .await
            .assert_v3_error(
                422,
                "CF-UnprocessableEntity",
                "Unable to assign current droplet. Ensure the droplet exists and belongs to this app.",
            );
        harness
            .patch(&relationship, &auditor, json!({"data": {"guid": MISSING}}))
            .await
            .assert_v3_error(
                403,
                "CF-NotAuthorized",
                "You are not authorized to perform the requested action",
            );

        // An app with packages and builds can still be deleted.
        let deleted = harness.delete(&format!("/v3/apps/{app}"), &developer).await;
        assert_eq!(deleted.status, 202, "{:#}", deleted.body);
        let job = harness
            .wait_job(&deleted.header("location").unwrap(), &developer)
            .await;
        assert_eq!(job["state"], "COMPLETE", "{job:#}");
        harness
            .get(&format!("/v3/builds/{build_guid}"), &developer)
            .await
            .assert_v3_error(404, "CF-ResourceNotFound", "Build not found");
        harness.stop().await;
    }
}
