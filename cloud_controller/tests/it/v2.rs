//! v2 envelopes, filters, statuses and errors.

use serde_json::json;

use crate::support::{check, databases, Harness};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn v2_organizations_spaces_flags_and_jobs() {
    for database in databases() {
        let harness = Harness::start(database).await;
        let admin = harness.admin_token.clone();
        let created = harness
            .post("/v2/organizations", &admin, json!({"name": "v2-org"}))
            .await;
        assert_eq!(created.status, 201, "{:#}", created.body);
        let org_guid = created.body["metadata"]["guid"]
            .as_str()
            .unwrap()
            .to_owned();
        assert_eq!(
            created.header("location").unwrap(),
            format!("/v2/organizations/{org_guid}")
        );
        check(
            &created.body["metadata"],
            &harness.base,
            json!({"guid": "<guid>", "url": "/v2/organizations/<guid>", "created_at": "<time>", "updated_at": "<time>"}),
        );
        assert_eq!(created.body["entity"]["status"], "active");
        assert_eq!(
            created.body["entity"]["spaces_url"],
            format!("/v2/organizations/{org_guid}/spaces")
        );

        let duplicate = harness
            .post("/v2/organizations", &admin, json!({"name": "v2-org"}))
            .await;
        assert_eq!(duplicate.status, 400);
        assert_eq!(
            duplicate.body,
            json!({"code": 30002, "description": "The organization name is taken: v2-org", "error_code": "CF-OrganizationNameTaken"})
        );

        let updated = harness
            .put(
                &format!("/v2/organizations/{org_guid}"),
                &admin,
                json!({"name": "v2-renamed"}),
            )
            .await;
        assert_eq!(updated.status, 201, "{:#}", updated.body);
        assert_eq!(updated.body["entity"]["name"], "v2-renamed");

        harness.create_org("another").await;
        let listed = harness
            .get("/v2/organizations?q=name:v2-renamed", &admin)
            .await;
        assert_eq!(listed.body["total_results"], 1, "{:#}", listed.body);
        assert_eq!(
            listed.body["resources"][0]["metadata"]["guid"],
            org_guid.as_str()
        );
        let paged = harness
            .get("/v2/organizations?order-by=name&results-per-page=1", &admin)
            .await;
        assert_eq!(paged.body["total_pages"], 2);
        assert_eq!(paged.body["resources"][0]["entity"]["name"], "another");
        let next = paged.body["next_url"].as_str().unwrap().to_owned();
        assert!(next.starts_with("/v2/organizations?"), "{next}");
        let second = harness.get(&next, &admin).await;
        assert_eq!(second.body["resources"][0]["entity"]["name"], "v2-renamed");
        assert!(second.body["next_url"].is_null());
        let in_list = harness
            .get("/v2/organizations?q=name%20IN%20another,v2-renamed", &admin)
            .await;
        assert_eq!(in_list.body["total_results"], 2);
        let bad_q = harness.get("/v2/organizations?q=colour:blue", &admin).await;
        assert_eq!(bad_q.status, 400);
        assert_eq!(bad_q.body["error_code"], "CF-BadQueryParameter");
        let too_many = harness
            .get("/v2/organizations?results-per-page=101", &admin)
            .await;
        assert_eq!(
            too_many.body["description"],
            "The query parameter is invalid: results_per_page must be <= 100"
        );
        let missing = harness.get("/v2/organizations/nope", &admin).await;
        assert_eq!(missing.status, 404);
        assert_eq!(missing.body["error_code"], "CF-OrganizationNotFound");

        let space = harness
            .post(
                "/v2/spaces",
                &admin,
                json!({"name": "s1", "organization_guid": org_guid}),
            )
            .await;
        assert_eq!(space.status, 201, "{:#}", space.body);
        let space_dup = harness
            .post(
                "/v2/spaces",
                &admin,
                json!({"name": "s1", "organization_guid": org_guid}),
            )
            .await;
        assert_eq!(space_dup.status, 400);
        assert_eq!(space_dup.body["error_code"], "CF-SpaceNameTaken");
        assert_eq!(space_dup.body["code"], 40002);
        let org_spaces = harness
            .get(
                &format!("/v2/organizations/{org_guid}/spaces?q=name:s1"),
                &admin,
            )
            .await;
        assert_eq!(
            org_spaces.body["resources"][0]["entity"]["organization_guid"],
            org_guid.as_str()
        );
        let spaces = harness
            .get(
                &format!("/v2/spaces?q=organization_guid:{org_guid};name:s1"),
                &admin,
            )
            .await;
        assert_eq!(spaces.body["total_results"], 1);

        let flags = harness.get("/v2/config/feature_flags", &admin).await;
        assert!(flags
            .body
            .as_array()
            .unwrap()
            .iter()
            .any(|flag| flag["name"] == "user_org_creation" && flag["enabled"] == false));
        let set = harness
            .put(
                "/v2/config/feature_flags/user_org_creation",
                &admin,
                json!({"enabled": true}),
            )
            .await;
        assert_eq!(set.status, 200);
        assert_eq!(
            set.body["url"],
            "/v2/config/feature_flags/user_org_creation"
        );
        let unknown_flag = harness.get("/v2/config/feature_flags/nope", &admin).await;
        assert_eq!(unknown_flag.body["error_code"], "CF-FeatureFlagNotFound");

        // Non-recursive delete of a non-empty org is refused; async delete answers a v2 job.
        let refused = harness
            .delete(&format!("/v2/organizations/{org_guid}"), &admin)
            .await;
        assert_eq!(refused.status, 400);
        assert_eq!(refused.body["error_code"], "CF-AssociationNotEmpty");
        let deleted = harness
            .delete(
                &format!("/v2/organizations/{org_guid}?recursive=true&async=true"),
                &admin,
            )
            .await;
        assert_eq!(deleted.status, 202, "{:#}", deleted.body);
        let job_url = deleted.body["metadata"]["url"].as_str().unwrap().to_owned();
        let job = harness.get(&job_url, &admin).await;
        assert_eq!(job.body["entity"]["status"], "finished");
        let unknown_job = harness.get("/v2/jobs/whatever", &admin).await;
        assert_eq!(unknown_job.body["entity"]["guid"], "0");
        harness.stop().await;
    }
}
