//! Organizations and spaces: shapes, validation, visibility, pagination, filters, delete jobs.

use serde_json::json;

use crate::support::{check, databases, Harness};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn organizations_lifecycle_and_validation() {
    for database in databases() {
        let harness = Harness::start(database).await;
        let admin = harness.admin_token.clone();

        let created = harness
            .post(
                "/v3/organizations",
                &admin,
                json!({"name": "acme", "suspended": false}),
            )
            .await;
        assert_eq!(created.status, 201, "{:#}", created.body);
        check(
            &created.body,
            &harness.base,
            json!({
                "guid": "<guid>", "created_at": "<time>", "updated_at": "<time>", "name": "acme", "suspended": false,
                "relationships": {"quota": {"data": {"guid": "<guid>"}}},
                "metadata": {"labels": {}, "annotations": {}},
                "links": {
                    "self": {"href": "<api>/v3/organizations/<guid>"},
                    "domains": {"href": "<api>/v3/organizations/<guid>/domains"},
                    "default_domain": {"href": "<api>/v3/organizations/<guid>/domains/default"},
                    "quota": {"href": "<api>/v3/organization_quotas/<guid>"},
                },
            }),
        );
        let org_guid = created.body["guid"].as_str().unwrap().to_owned();

        harness
            .post("/v3/organizations", &admin, json!({"name": "acme"}))
            .await
            .assert_v3_error(
                422,
                "CF-UnprocessableEntity",
                "Organization 'acme' already exists.",
            );
        harness
            .post("/v3/organizations", &admin, json!({"name": ""}))
            .await
            .assert_v3_error(422, "CF-UnprocessableEntity", "Name can't be blank");
        harness
            .post(
                "/v3/organizations",
                &admin,
                json!({"name": "x".repeat(256)}),
            )
            .await
            .assert_v3_error(
                422,
                "CF-UnprocessableEntity",
                "Name is too long (maximum is 255 characters)",
            );
        harness
            .post("/v3/organizations", &admin, json!({"name": "a", "foo": 1}))
            .await
            .assert_v3_error(422, "CF-UnprocessableEntity", "Unknown field(s): 'foo'");
        let malformed = harness
            .request(
                reqwest::Method::POST,
                "/v3/organizations",
                Some(&admin),
                Some("{not json"),
            )
            .await;
        assert_eq!(malformed.status, 400, "{:#}", malformed.body);
        assert_eq!(malformed.body["errors"][0]["title"], "CF-MessageParseError");
        assert_eq!(malformed.body["errors"][0]["code"], 1001);
        harness
            .get(
                "/v3/organizations/00000000-0000-0000-0000-000000000000",
                &admin,
            )
            .await
            .assert_v3_error(404, "CF-ResourceNotFound", "Organization not found");

        // The quota it points at is the seeded default quota.
        let quota_guid = created.body["relationships"]["quota"]["data"]["guid"]
            .as_str()
            .unwrap()
            .to_owned();
        let quota = harness
            .get(&format!("/v3/organization_quotas/{quota_guid}"), &admin)
            .await;
        assert_eq!(quota.body["name"], "default");
        assert_eq!(quota.body["apps"]["total_memory_in_mb"], 10240);
        assert_eq!(
            quota.body["relationships"]["organizations"]["data"][0]["guid"],
            org_guid.as_str()
        );

        // Rename, then the `cf org` reads.
        let renamed = harness
            .patch(
                &format!("/v3/organizations/{org_guid}"),
                &admin,
                json!({"name": "acme-2"}),
            )
            .await;
        assert_eq!(renamed.status, 200, "{:#}", renamed.body);
        assert_eq!(renamed.body["name"], "acme-2");
        let domains = harness
            .get(&format!("/v3/organizations/{org_guid}/domains"), &admin)
            .await;
        assert_eq!(domains.body["resources"][0]["name"], "apps.localhost");
        assert!(domains.body["resources"][0]["relationships"]["organization"]["data"].is_null());
        let default_domain = harness
            .get(
                &format!("/v3/organizations/{org_guid}/domains/default"),
                &admin,
            )
            .await;
        assert_eq!(default_domain.body["name"], "apps.localhost");
        let isolation = harness
            .get(
                &format!("/v3/organizations/{org_guid}/relationships/default_isolation_segment"),
                &admin,
            )
            .await;
        assert_eq!(isolation.status, 200);
        assert!(isolation.body["data"].is_null());
        let segments = harness
            .get(
                &format!("/v3/isolation_segments?organization_guids={org_guid}"),
                &admin,
            )
            .await;
        assert_eq!(segments.body["resources"], json!([]));

        // Delete as a job.
        let space_guid = harness.create_space(&org_guid, "dev").await;
        let deleted = harness
            .delete(&format!("/v3/organizations/{org_guid}"), &admin)
            .await;
        assert_eq!(deleted.status, 202, "{:#}", deleted.body);
        let location = deleted.header("location").expect("Location");
        assert!(
            location.starts_with(&format!("{}/v3/jobs/", harness.base)),
            "{location}"
        );
        let job = harness.wait_job(&location, &admin).await;
        assert_eq!(job["state"], "COMPLETE", "{job:#}");
        assert_eq!(job["operation"], "organization.delete");
        harness
            .get(&format!("/v3/organizations/{org_guid}"), &admin)
            .await
            .assert_v3_error(404, "CF-ResourceNotFound", "Organization not found");
        harness
            .get(&format!("/v3/spaces/{space_guid}"), &admin)
            .await
            .assert_v3_error(404, "CF-ResourceNotFound", "Space not found");
        harness.stop().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pagination_filters_and_ordering() {
    for database in databases() {
        let harness = Harness::start(database).await;
        let admin = harness.admin_token.clone();
        for name in ["cherry", "apple", "banana", "with,comma"] {
            harness.create_org(name).await;
        }
        let first = harness
            .get("/v3/organizations?order_by=name&per_page=2", &admin)
            .await;
        assert_eq!(first.status, 200);
        assert_eq!(first.body["pagination"]["total_results"], 4);
        assert_eq!(first.body["pagination"]["total_pages"], 2);
        let names: Vec<&str> = first.body["resources"]
            .as_array()
            .unwrap()
            .iter()
            .map(|org| org["name"].as_str().unwrap())
            .collect();
        assert_eq!(names, ["apple", "banana"]);
        let next = first.body["pagination"]["next"]["href"]
            .as_str()
            .unwrap()
            .to_owned();
        assert!(
            next.starts_with(&format!("{}/v3/organizations?", harness.base)),
            "{next}"
        );
        let second = harness.get(&next, &admin).await;
        let names: Vec<&str> = second.body["resources"]
            .as_array()
            .unwrap()
            .iter()
            .map(|org| org["name"].as_str().unwrap())
            .collect();
        assert_eq!(names, ["cherry", "with,comma"]);
        assert!(second.body["pagination"]["next"].is_null());
        assert!(second.body["pagination"]["previous"]["href"]
            .as_str()
            .unwrap()
            .contains("page=1"));

        let descending = harness
            .get("/v3/organizations?order_by=-name", &admin)
            .await;
        assert_eq!(descending.body["resources"][0]["name"], "with,comma");
        // Names sort without regard to case, as CC's citext columns do.
        harness.create_org("Banana-split").await;
        let mixed = harness
            .get(
                "/v3/organizations?order_by=name&names=banana,Banana-split,cherry",
                &admin,
            )
            .await;
        let names: Vec<&str> = mixed.body["resources"]
            .as_array()
            .unwrap()
            .iter()
            .map(|org| org["name"].as_str().unwrap())
            .collect();
        assert_eq!(names, ["banana", "Banana-split", "cherry"]);

        // The CLI writes a literal comma inside a name as %2C before joining with commas.
        let filtered = harness
            .get(
                "/v3/organizations?names=apple%2Cwith%252Ccomma&per_page=1&page=1",
                &admin,
            )
            .await;
        assert_eq!(
            filtered.body["pagination"]["total_results"], 2,
            "{:#}",
            filtered.body
        );
        assert_eq!(filtered.body["resources"].as_array().unwrap().len(), 1);
        let none = harness.get("/v3/organizations?names=nothing", &admin).await;
        assert_eq!(none.body["resources"], json!([]));

        // CC's ListMessage validations, word for word.
        for (bad, detail) in [
            ("per_page=0", "Per page must be a positive integer"),
            ("per_page=abc", "Per page must be a positive integer"),
            ("per_page=5001", "Per page must be between 1 and 5000"),
            ("page=0", "Page must be a positive integer"),
            ("page=-2", "Page must be a positive integer"),
            ("order_by=colour", "Order by can only be: 'created_at', 'updated_at', 'name'"),
            ("order_by=-colour", "Order by can only be: 'created_at', 'updated_at', 'name'"),
            ("colour=blue", "Unknown query parameter(s): 'colour'. Valid parameters are: 'page', 'per_page', 'order_by', 'names', 'guids', 'label_selector'"),
            ("label_selector=", "Missing label_selector value"),
            ("label_selector=bad%20key", "Invalid label_selector value"),
        ] {
            harness
                .get(&format!("/v3/organizations?{bad}"), &admin)
                .await
                .assert_v3_error(
                    400,
                    "CF-BadQueryParameter",
                    &format!("The query parameter is invalid: {detail}"),
                );
        }
        // No Kiln resource carries labels yet: a selector that needs a label matches nothing,
        // one that only excludes labels matches everything (as `cf orgs --labels` sends them).
        for (selector, expected) in [
            ("env%3Dprod", 0),
            ("env", 0),
            ("env%20in%20(a%2Cb)", 0),
            ("!env", 5),
            ("env!%3Dprod%2Ctier%20notin%20(a%2Cb)", 5),
        ] {
            let answer = harness
                .get(
                    &format!("/v3/organizations?label_selector={selector}"),
                    &admin,
                )
                .await;
            assert_eq!(answer.status, 200, "{selector}: {:#}", answer.body);
            assert_eq!(
                answer.body["pagination"]["total_results"], expected,
                "{selector}"
            );
        }
        // Feature flags are ordered by name only.
        harness
            .get("/v3/feature_flags?order_by=-created_at", &admin)
            .await
            .assert_v3_error(
                400,
                "CF-BadQueryParameter",
                "The query parameter is invalid: Order by can only be: 'name'",
            );
        let flags = harness
            .get("/v3/feature_flags?order_by=-name", &admin)
            .await;
        assert_eq!(flags.status, 200, "{:#}", flags.body);
        let names: Vec<&str> = flags.body["resources"]
            .as_array()
            .unwrap()
            .iter()
            .map(|flag| flag["name"].as_str().unwrap())
            .collect();
        let mut sorted = names.clone();
        sorted.sort_unstable_by(|left, right| right.cmp(left));
        assert_eq!(names, sorted);

        let stacks = harness.get("/v3/stacks?names=kiln-host", &admin).await;
        assert_eq!(
            stacks.body["resources"][0]["description"],
            "Kiln host-backed root filesystem"
        );
        assert_eq!(stacks.body["resources"][0]["default"], true);
        let domains = harness
            .get("/v3/domains?names=apps.localhost", &admin)
            .await;
        assert_eq!(domains.body["pagination"]["total_results"], 1);
        let flags = harness.get("/v3/feature_flags", &admin).await;
        let flag_names: Vec<&str> = flags.body["resources"]
            .as_array()
            .unwrap()
            .iter()
            .map(|flag| flag["name"].as_str().unwrap())
            .collect();
        assert!(
            flag_names.contains(&"user_org_creation") && flag_names.contains(&"route_sharing"),
            "{flag_names:?}"
        );
        harness
            .get("/v3/feature_flags/nope", &admin)
            .await
            .assert_v3_error(404, "CF-ResourceNotFound", "Feature flag not found");
        harness.stop().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn spaces_lifecycle() {
    for database in databases() {
        let harness = Harness::start(database).await;
        let admin = harness.admin_token.clone();
        let org_guid = harness.create_org("acme").await;
        let other_org = harness.create_org("other").await;
        let body =
            json!({"name": "dev", "relationships": {"organization": {"data": {"guid": org_guid}}}});
        let created = harness.post("/v3/spaces", &admin, body.clone()).await;
        assert_eq!(created.status, 201, "{:#}", created.body);
        check(
            &created.body,
            &harness.base,
            json!({
                "guid": "<guid>", "created_at": "<time>", "updated_at": "<time>", "name": "dev", "suspended": false,
                "relationships": {"organization": {"data": {"guid": "<guid>"}}, "quota": {"data": null}},
                "metadata": {"labels": {}, "annotations": {}},
                "links": {
                    "self": {"href": "<api>/v3/spaces/<guid>"},
                    "organization": {"href": "<api>/v3/organizations/<guid>"},
                    "features": {"href": "<api>/v3/spaces/<guid>/features"},
                    "apply_manifest": {"href": "<api>/v3/spaces/<guid>/actions/apply_manifest", "method": "POST"},
                },
            }),
        );
        let space_guid = created.body["guid"].as_str().unwrap().to_owned();
        harness
            .post("/v3/spaces", &admin, body)
            .await
            .assert_v3_error(
                422,
                "CF-UnprocessableEntity",
                "Name must be unique per organization",
            );
        // The same name in another org is fine.
        harness.create_space(&other_org, "dev").await;
        // A rename onto a taken name is worded as CC's SpaceUpdate does.
        let sibling = harness.create_space(&other_org, "staging").await;
        harness
            .patch(
                &format!("/v3/spaces/{sibling}"),
                &admin,
                json!({"name": "DEV"}),
            )
            .await
            .assert_v3_error(
                422,
                "CF-UnprocessableEntity",
                "Organization 'other' already contains a space with name 'DEV'.",
            );
        harness
            .post("/v3/spaces", &admin, json!({"name": "x", "relationships": {"organization": {"data": {"guid": "missing"}}}}))
            .await
            .assert_v3_error(422, "CF-UnprocessableEntity", "Invalid organization. Ensure the organization exists and you have access to it.");

        let listed = harness
            .get(
                &format!(
                    "/v3/spaces?organization_guids={org_guid}&order_by=name&include=organization"
                ),
                &admin,
            )
            .await;
        assert_eq!(
            listed.body["pagination"]["total_results"], 1,
            "{:#}",
            listed.body
        );
        assert_eq!(
            listed.body["included"]["organizations"][0]["guid"],
            org_guid.as_str()
        );
        let lookup = harness
            .get(
                &format!("/v3/spaces?names=dev&organization_guids={other_org}&per_page=1&page=1"),
                &admin,
            )
            .await;
        assert_eq!(
            lookup.body["resources"][0]["relationships"]["organization"]["data"]["guid"],
            other_org.as_str()
        );

        for path in ["running_security_groups", "staging_security_groups"] {
            let groups = harness
                .get(&format!("/v3/spaces/{space_guid}/{path}"), &admin)
                .await;
            assert_eq!(groups.status, 200);
            assert_eq!(groups.body["resources"], json!([]));
        }
        let isolation = harness
            .get(
                &format!("/v3/spaces/{space_guid}/relationships/isolation_segment"),
                &admin,
            )
            .await;
        assert!(isolation.body["data"].is_null());
        let apps = harness
            .get(&format!("/v3/apps?space_guids={space_guid}"), &admin)
            .await;
        assert_eq!(apps.body["resources"], json!([]));

        let deleted = harness
            .delete(&format!("/v3/spaces/{space_guid}"), &admin)
            .await;
        assert_eq!(deleted.status, 202);
        let job = harness
            .wait_job(&deleted.header("location").unwrap(), &admin)
            .await;
        assert_eq!(job["state"], "COMPLETE");
        harness
            .get(&format!("/v3/spaces/{space_guid}"), &admin)
            .await
            .assert_v3_error(404, "CF-ResourceNotFound", "Space not found");
        harness.stop().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn visibility_and_user_org_creation() {
    for database in databases() {
        let harness = Harness::start(database).await;
        let admin = harness.admin_token.clone();
        let alice = harness.issuer.add_user("alice", "uaa");
        let bob = harness.issuer.add_user("bob", "uaa");
        let alice_token = harness.issuer.user_token(&alice);
        let bob_token = harness.issuer.user_token(&bob);
        let alice_org = harness.create_org("alice-org").await;
        let secret_org = harness.create_org("secret-org").await;
        assert_eq!(
            harness
                .grant("organization_user", "alice", ("organization", &alice_org))
                .await
                .status,
            201
        );

        let seen = harness.get("/v3/organizations", &alice_token).await;
        let names: Vec<&str> = seen.body["resources"]
            .as_array()
            .unwrap()
            .iter()
            .map(|org| org["name"].as_str().unwrap())
            .collect();
        assert_eq!(names, ["alice-org"]);
        harness
            .get(&format!("/v3/organizations/{secret_org}"), &alice_token)
            .await
            .assert_v3_error(404, "CF-ResourceNotFound", "Organization not found");
        // Visible but not writable: 403. Invisible: 404.
        harness
            .patch(
                &format!("/v3/organizations/{alice_org}"),
                &alice_token,
                json!({"name": "mine"}),
            )
            .await
            .assert_v3_error(
                403,
                "CF-NotAuthorized",
                "You are not authorized to perform the requested action",
            );
        harness
            .delete(&format!("/v3/organizations/{secret_org}"), &alice_token)
            .await
            .assert_v3_error(404, "CF-ResourceNotFound", "Organization not found");

        // Org users do not see spaces; space developers see theirs.
        let space = harness.create_space(&alice_org, "dev").await;
        assert_eq!(
            harness.get("/v3/spaces", &alice_token).await.body["resources"],
            json!([])
        );
        assert_eq!(
            harness
                .grant("space_developer", "alice", ("space", &space))
                .await
                .status,
            201
        );
        assert_eq!(
            harness.get("/v3/spaces", &alice_token).await.body["pagination"]["total_results"],
            1
        );
        harness
            .get(&format!("/v3/spaces/{space}"), &bob_token)
            .await
            .assert_v3_error(404, "CF-ResourceNotFound", "Space not found");

        // user_org_creation is off by default.
        harness
            .post("/v3/organizations", &bob_token, json!({"name": "bobs"}))
            .await
            .assert_v3_error(
                403,
                "CF-NotAuthorized",
                "You are not authorized to perform the requested action",
            );
        harness
            .patch(
                "/v3/feature_flags/user_org_creation",
                &bob_token,
                json!({"enabled": true}),
            )
            .await
            .assert_v3_error(
                403,
                "CF-NotAuthorized",
                "You are not authorized to perform the requested action",
            );
        let flag = harness
            .patch(
                "/v3/feature_flags/user_org_creation",
                &admin,
                json!({"enabled": true}),
            )
            .await;
        assert_eq!(flag.status, 200, "{:#}", flag.body);
        assert_eq!(flag.body["enabled"], true);
        let bobs = harness
            .post("/v3/organizations", &bob_token, json!({"name": "bobs"}))
            .await;
        assert_eq!(bobs.status, 201, "{:#}", bobs.body);
        let bobs_guid = bobs.body["guid"].as_str().unwrap();
        let roles = harness
            .get(
                &format!(
                    "/v3/roles?organization_guids={bobs_guid}&user_guids={}",
                    bob.id
                ),
                &bob_token,
            )
            .await;
        let mut types: Vec<&str> = roles.body["resources"]
            .as_array()
            .unwrap()
            .iter()
            .map(|role| role["type"].as_str().unwrap())
            .collect();
        types.sort();
        assert_eq!(types, ["organization_manager", "organization_user"]);
        // As org manager bob may create spaces and rename his org.
        let bob_space = harness
            .post("/v3/spaces", &bob_token, json!({"name": "s", "relationships": {"organization": {"data": {"guid": bobs_guid}}}}))
            .await;
        assert_eq!(bob_space.status, 201, "{:#}", bob_space.body);
        // … but not delete it (admin only, as in CC).
        harness
            .delete(&format!("/v3/organizations/{bobs_guid}"), &bob_token)
            .await
            .assert_v3_error(
                403,
                "CF-NotAuthorized",
                "You are not authorized to perform the requested action",
            );
        harness.stop().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn names_are_case_insensitive_as_in_cc() {
    for database in databases() {
        let harness = Harness::start(database).await;
        let admin = harness.admin_token.clone();
        let label = harness.database.label();
        let acme = harness.create_org("acme").await;
        harness
            .post("/v3/organizations", &admin, json!({"name": "ACME"}))
            .await
            .assert_v3_error(
                422,
                "CF-UnprocessableEntity",
                "Organization 'ACME' already exists.",
            );
        let v2 = harness
            .post("/v2/organizations", &admin, json!({"name": "Acme"}))
            .await;
        assert_eq!(
            v2.body,
            json!({"code": 30002, "description": "The organization name is taken: Acme", "error_code": "CF-OrganizationNameTaken"}),
            "{label}"
        );
        // Renames are held to the same rule; re-casing one's own name is fine.
        let other = harness.create_org("other").await;
        harness
            .patch(
                &format!("/v3/organizations/{other}"),
                &admin,
                json!({"name": "aCmE"}),
            )
            .await
            .assert_v3_error(
                422,
                "CF-UnprocessableEntity",
                "Organization name 'aCmE' is already taken.",
            );
        let recased = harness
            .patch(
                &format!("/v3/organizations/{acme}"),
                &admin,
                json!({"name": "Acme"}),
            )
            .await;
        assert_eq!(recased.status, 200, "{:#}", recased.body);
        // Name filters match in any case, as CC's citext columns do.
        let found = harness.get("/v3/organizations?names=ACME", &admin).await;
        assert_eq!(found.body["resources"][0]["guid"], acme.as_str(), "{label}");
        let found_v2 = harness.get("/v2/organizations?q=name:acme", &admin).await;
        assert_eq!(found_v2.body["total_results"], 1);

        // Space names: unique per org in any case, free across orgs.
        harness.create_space(&acme, "Dev").await;
        harness
            .post(
                "/v3/spaces",
                &admin,
                json!({"name": "DEV", "relationships": {"organization": {"data": {"guid": acme}}}}),
            )
            .await
            .assert_v3_error(
                422,
                "CF-UnprocessableEntity",
                "Name must be unique per organization",
            );
        let v2_space = harness
            .post(
                "/v2/spaces",
                &admin,
                json!({"name": "dev", "organization_guid": acme}),
            )
            .await;
        assert_eq!(v2_space.body["error_code"], "CF-SpaceNameTaken", "{label}");
        harness.create_space(&other, "dev").await;
        let spaces = harness.get("/v3/spaces?names=dEv", &admin).await;
        assert_eq!(spaces.body["pagination"]["total_results"], 2);
        let in_org = harness
            .get(
                &format!("/v2/organizations/{acme}/spaces?q=name:DEV"),
                &admin,
            )
            .await;
        assert_eq!(in_org.body["resources"][0]["entity"]["name"], "Dev");

        // Concurrent creates differing only in case: the database index lets exactly one in.
        let attempts = ["race", "RACE", "Race", "rAcE"]
            .map(|name| harness.post("/v3/organizations", &admin, json!({"name": name})));
        let answers = futures_util::future::join_all(attempts).await;
        assert_eq!(
            answers.iter().filter(|answer| answer.status == 201).count(),
            1,
            "{answers:#?}"
        );
        assert!(answers
            .iter()
            .all(|answer| answer.status == 201 || answer.status == 422));
        harness.stop().await;
    }
}

/// Concurrent writers — several `cf create-org` and `cf create-space` at once, as parallel CATS
/// scenarios send them — all succeed; SQLite makes them wait for each other instead of failing
/// with "database is locked".
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_creates_all_succeed() {
    for database in databases() {
        let harness = Harness::start(database).await;
        let org = harness.create_org("busy").await;
        let requests = (0..24).map(|n| {
            let (path, body) = if n % 2 == 0 {
                ("/v3/organizations", json!({"name": format!("org-{n}")}))
            } else {
                (
                    "/v3/spaces",
                    json!({"name": format!("space-{n}"), "relationships": {"organization": {"data": {"guid": org}}}}),
                )
            };
            harness.post(path, &harness.admin_token, body)
        });
        for answer in futures_util::future::join_all(requests).await {
            assert_eq!(answer.status, 201, "{:#}", answer.body);
        }
        harness.stop().await;
    }
}

/// `GET /v3/spaces/:guid?include=organization` (and CC's `org` alias); deleting a space takes
/// its space roles with it, deleting an org takes every role in it; the users stay.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn space_include_and_deletes_take_their_roles() {
    for database in databases() {
        let harness = Harness::start(database).await;
        let admin = harness.admin_token.clone();
        let org = harness.create_org("acme").await;
        let space = harness.create_space(&org, "dev").await;
        let keep = harness.create_space(&org, "keep").await;
        let carol = harness.issuer.add_user("carol", "uaa");
        for (role, target) in [
            ("organization_user", ("organization", org.as_str())),
            ("organization_auditor", ("organization", org.as_str())),
            ("space_developer", ("space", space.as_str())),
            ("space_manager", ("space", space.as_str())),
            ("space_auditor", ("space", keep.as_str())),
        ] {
            assert_eq!(
                harness.grant(role, "carol", target).await.status,
                201,
                "{role}"
            );
        }

        for include in ["organization", "org"] {
            let shown = harness
                .get(&format!("/v3/spaces/{space}?include={include}"), &admin)
                .await;
            assert_eq!(shown.status, 200, "{:#}", shown.body);
            assert_eq!(
                shown.body["included"]["organizations"][0]["guid"],
                org.as_str()
            );
            assert_eq!(shown.body["included"]["organizations"][0]["name"], "acme");
            let listed = harness
                .get(&format!("/v3/spaces?names=dev&include={include}"), &admin)
                .await;
            assert_eq!(
                listed.body["included"]["organizations"][0]["guid"],
                org.as_str()
            );
        }
        harness
            .get(&format!("/v3/spaces/{space}?include=app"), &admin)
            .await
            .assert_v3_error(
                400,
                "CF-BadQueryParameter",
                "The query parameter is invalid: Invalid included resource: 'app'. Valid included resources are: 'org', 'organization'",
            );
        // An invisible space is 404 before its query is looked at.
        let stranger = harness.issuer.add_user("stranger", "uaa");
        harness
            .get(
                &format!("/v3/spaces/{space}?include=app"),
                &harness.issuer.user_token(&stranger),
            )
            .await
            .assert_v3_error(404, "CF-ResourceNotFound", "Space not found");

        let deleted = harness.delete(&format!("/v3/spaces/{space}"), &admin).await;
        assert_eq!(deleted.status, 202);
        let job = harness
            .wait_job(&deleted.header("location").unwrap(), &admin)
            .await;
        assert_eq!(job["state"], "COMPLETE");
        assert_eq!(
            role_types(&harness, &carol.id).await,
            ["organization_user", "organization_auditor", "space_auditor"]
        );

        let deleted = harness
            .delete(&format!("/v3/organizations/{org}"), &admin)
            .await;
        assert_eq!(deleted.status, 202);
        let job = harness
            .wait_job(&deleted.header("location").unwrap(), &admin)
            .await;
        assert_eq!(job["state"], "COMPLETE");
        assert!(role_types(&harness, &carol.id).await.is_empty());
        assert_eq!(
            harness
                .get(&format!("/v3/users/{}", carol.id), &admin)
                .await
                .status,
            200
        );
        harness
            .get(&format!("/v3/spaces/{keep}"), &admin)
            .await
            .assert_v3_error(404, "CF-ResourceNotFound", "Space not found");
        harness.stop().await;
    }
}

/// The types of a user's roles, oldest first.
async fn role_types(harness: &Harness, user_guid: &str) -> Vec<String> {
    let roles = harness
        .get(
            &format!("/v3/roles?user_guids={user_guid}&order_by=created_at"),
            &harness.admin_token,
        )
        .await;
    assert_eq!(roles.status, 200, "{:#}", roles.body);
    roles.body["resources"]
        .as_array()
        .unwrap()
        .iter()
        .map(|role| role["type"].as_str().unwrap().to_owned())
        .collect()
}

/// `GET /v3/organizations/:guid/usage_summary` counts what the org's spaces hold, as CC's
/// OrganizationUsageSummaryPresenter does (a stopped app uses no instances or memory).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn usage_summary_counts_what_the_org_uses() {
    for database in databases() {
        let harness = Harness::start(database).await;
        let admin = harness.admin_token.clone();
        let org = harness.create_org("acme").await;
        let space = harness.create_space(&org, "dev").await;
        let other_org = harness.create_org("other").await;
        let other_space = harness.create_space(&other_org, "dev").await;
        let domain = harness
            .get("/v3/domains?names=apps.localhost", &admin)
            .await;
        let domain = domain.body["resources"][0]["guid"]
            .as_str()
            .unwrap()
            .to_owned();
        for (space, host) in [(&space, "one"), (&space, "two"), (&other_space, "three")] {
            let route = harness
                .post("/v3/routes", &admin, json!({"host": host, "relationships": {"space": {"data": {"guid": space}}, "domain": {"data": {"guid": domain}}}}))
                .await;
            assert_eq!(route.status, 201, "{:#}", route.body);
        }
        let app = harness
            .post(
                "/v3/apps",
                &admin,
                json!({"name": "web", "relationships": {"space": {"data": {"guid": space}}}}),
            )
            .await;
        assert_eq!(app.status, 201, "{:#}", app.body);

        let summary = harness
            .get(&format!("/v3/organizations/{org}/usage_summary"), &admin)
            .await;
        assert_eq!(summary.status, 200, "{:#}", summary.body);
        check(
            &summary.body,
            &harness.base,
            json!({
                "usage_summary": {
                    "started_instances": 0, "memory_in_mb": 0, "routes": 2, "service_instances": 0,
                    "reserved_ports": 0, "domains": 0, "per_app_tasks": 0, "service_keys": 0,
                },
                "links": {
                    "self": {"href": "<api>/v3/organizations/<guid>/usage_summary"},
                    "organization": {"href": "<api>/v3/organizations/<guid>"},
                },
            }),
        );

        // The seeded default quota, as CC ships it (10 GiB, 100 services, 1000 routes), which
        // every org gets; a user sees only the orgs they can read among its users.
        let quotas = harness
            .get("/v3/organization_quotas?names=default", &admin)
            .await;
        assert_eq!(quotas.body["pagination"]["total_results"], 1);
        check(
            &quotas.body["resources"][0],
            &harness.base,
            json!({
                "guid": "<guid>", "created_at": "<time>", "updated_at": "<time>", "name": "default",
                "apps": {
                    "total_memory_in_mb": 10240, "per_process_memory_in_mb": null,
                    "total_instances": null, "per_app_tasks": null,
                    "log_rate_limit_in_bytes_per_second": null,
                },
                "services": {"paid_services_allowed": true, "total_service_instances": 100, "total_service_keys": null},
                "routes": {"total_routes": 1000, "total_reserved_ports": 0},
                "domains": {"total_domains": null},
                "relationships": {"organizations": {"data": [{"guid": "<guid>"}, {"guid": "<guid>"}]}},
                "links": {"self": {"href": "<api>/v3/organization_quotas/<guid>"}},
            }),
        );
        let member = harness.issuer.add_user("member", "uaa");
        harness
            .grant("organization_auditor", "member", ("organization", &org))
            .await;
        let seen = harness
            .get(
                "/v3/organization_quotas?names=default",
                &harness.issuer.user_token(&member),
            )
            .await;
        assert_eq!(
            seen.body["resources"][0]["relationships"]["organizations"]["data"],
            json!([{"guid": org}])
        );
        let by_org = harness
            .get(
                &format!("/v3/organization_quotas?organization_guids={other_org}"),
                &admin,
            )
            .await;
        assert_eq!(by_org.body["pagination"]["total_results"], 1);
        harness.stop().await;
    }
}

/// `cf rename-org` sends `"metadata": {}` with the name: an empty metadata is accepted on orgs and
/// spaces; labels and annotations, which Kiln does not store yet, are refused, not dropped.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn empty_metadata_is_accepted_and_bad_labels_are_refused() {
    for database in databases() {
        let harness = Harness::start(database).await;
        let admin = harness.admin_token.clone();
        let org = harness.create_org("meta").await;
        let space = harness.create_space(&org, "dev").await;
        let org_path = format!("/v3/organizations/{org}");
        let space_path = format!("/v3/spaces/{space}");

        let renamed = harness
            .patch(
                &org_path,
                &admin,
                json!({"metadata": {}, "name": "meta-renamed", "suspended": false}),
            )
            .await;
        assert_eq!(renamed.status, 200, "{:#}", renamed.body);
        assert_eq!(renamed.body["name"], "meta-renamed");
        let renamed = harness
            .patch(
                &space_path,
                &admin,
                json!({"metadata": {"labels": null, "annotations": {}}, "name": "dev2"}),
            )
            .await;
        assert_eq!(renamed.status, 200, "{:#}", renamed.body);
        assert_eq!(renamed.body["name"], "dev2");

        for (path, body, detail) in [
            (
                &org_path,
                json!({"name": "x", "metadata": {"labels": {"-env": "prod"}}}),
                "Metadata label key error: '-env' starts or ends with invalid characters",
            ),
            (
                &space_path,
                json!({"metadata": {"annotations": {"cloudfoundry.org/owner": "me"}}}),
                "Metadata annotation key error: prefix 'cloudfoundry.org' is reserved",
            ),
            (
                &org_path,
                json!({"metadata": "labels"}),
                "Metadata must be an object",
            ),
            (
                &org_path,
                json!({"metadata": {"tags": {}}}),
                "Metadata has unexpected field(s): 'tags'",
            ),
        ] {
            let answer = harness.patch(path, &admin, body.clone()).await;
            assert_eq!(answer.status, 422, "{body}: {:#}", answer.body);
            assert_eq!(answer.body["errors"][0]["detail"], detail, "{body}");
        }
        let org_now = harness.get(&org_path, &admin).await;
        assert_eq!(
            org_now.body["name"], "meta-renamed",
            "a refused PATCH changes nothing"
        );
    }
}
