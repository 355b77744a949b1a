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

/// The v3 role types a user holds, by `/v3/roles?user_guids=`.
async fn v3_role_types(harness: &Harness, user_guid: &str) -> Vec<String> {
    let roles = harness
        .get(
            &format!("/v3/roles?user_guids={user_guid}"),
            &harness.admin_token,
        )
        .await;
    assert_eq!(roles.status, 200, "{:#}", roles.body);
    let mut types: Vec<String> = roles.body["resources"]
        .as_array()
        .unwrap()
        .iter()
        .map(|role| role["type"].as_str().unwrap().to_owned())
        .collect();
    types.sort();
    types
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn v2_role_associations_are_the_v3_roles() {
    for database in databases() {
        let harness = Harness::start(database).await;
        let admin = harness.admin_token.clone();
        let carol = harness.issuer.add_user("carol", "uaa");
        let dave = harness.issuer.add_user("dave", "uaa");
        let org = harness.create_org("acme").await;
        let space = harness.create_space(&org, "dev").await;

        // By GUID: 201 with the organization, idempotent, visible in /v3/roles.
        for _ in 0..2 {
            let added = harness
                .put(
                    &format!("/v2/organizations/{org}/users/{}", carol.id),
                    &admin,
                    json!({}),
                )
                .await;
            assert_eq!(added.status, 201, "{:#}", added.body);
            assert_eq!(added.body["metadata"]["guid"], org.as_str());
            assert_eq!(added.body["entity"]["name"], "acme");
        }
        assert_eq!(
            v3_role_types(&harness, &carol.id).await,
            ["organization_user"]
        );

        // By username: the same rows again.
        let manager = harness
            .put(
                &format!("/v2/organizations/{org}/managers"),
                &admin,
                json!({"username": "carol"}),
            )
            .await;
        assert_eq!(manager.status, 201, "{:#}", manager.body);
        assert_eq!(
            v3_role_types(&harness, &carol.id).await,
            ["organization_manager", "organization_user"]
        );
        let managers = harness
            .get(&format!("/v2/organizations/{org}/managers"), &admin)
            .await;
        check(
            &managers.body,
            &harness.base,
            json!({
                "total_results": 1, "total_pages": 1, "prev_url": null, "next_url": null,
                "resources": [{
                    "metadata": {"guid": "<guid>", "url": "/v2/users/<guid>", "created_at": "<time>", "updated_at": "<time>"},
                    "entity": {
                        "admin": false, "active": false, "default_space_guid": null, "username": "carol",
                        "spaces_url": "/v2/users/<guid>/spaces",
                        "organizations_url": "/v2/users/<guid>/organizations",
                        "managed_organizations_url": "/v2/users/<guid>/managed_organizations",
                        "billing_managed_organizations_url": "/v2/users/<guid>/billing_managed_organizations",
                        "audited_organizations_url": "/v2/users/<guid>/audited_organizations",
                        "managed_spaces_url": "/v2/users/<guid>/managed_spaces",
                        "audited_spaces_url": "/v2/users/<guid>/audited_spaces",
                    },
                }],
            }),
        );
        assert_eq!(
            managers.body["resources"][0]["metadata"]["guid"],
            carol.id.as_str()
        );

        // A role granted through v3 shows in the v2 listing.
        assert_eq!(
            harness
                .grant("organization_auditor", "dave", ("organization", &org))
                .await
                .status,
            201
        );
        let auditors = harness
            .get(&format!("/v2/organizations/{org}/auditors"), &admin)
            .await;
        assert_eq!(auditors.body["total_results"], 1);
        assert_eq!(auditors.body["resources"][0]["entity"]["username"], "dave");
        let users = harness
            .get(
                &format!("/v2/organizations/{org}/users?q=managed_organization_guid:{org}"),
                &admin,
            )
            .await;
        assert_eq!(users.body["total_results"], 1, "{:#}", users.body);

        // A space role needs the org *user* role first (dave is only an auditor).
        let refused = harness
            .put(
                &format!("/v2/spaces/{space}/developers/{}", dave.id),
                &admin,
                json!({}),
            )
            .await;
        assert_eq!(refused.status, 400, "{:#}", refused.body);
        assert_eq!(refused.body["error_code"], "CF-InvalidRelation");
        assert_eq!(refused.body["code"], 1002);
        let developer = harness
            .put(
                &format!("/v2/spaces/{space}/developers"),
                &admin,
                json!({"username": "carol", "origin": "uaa"}),
            )
            .await;
        assert_eq!(developer.status, 201, "{:#}", developer.body);
        assert_eq!(
            developer.body["metadata"]["url"],
            format!("/v2/spaces/{space}")
        );
        let space_manager = harness
            .put(
                &format!("/v2/spaces/{space}/managers/{}", carol.id),
                &admin,
                json!({}),
            )
            .await;
        assert_eq!(space_manager.status, 201);
        let developers = harness
            .get(&format!("/v2/spaces/{space}/developers"), &admin)
            .await;
        assert_eq!(
            developers.body["resources"][0]["entity"]["username"],
            "carol"
        );
        let role_list = harness
            .get(
                &format!("/v3/roles?space_guids={space}&types=space_developer,space_manager"),
                &admin,
            )
            .await;
        assert_eq!(role_list.body["pagination"]["total_results"], 2);

        // Space remove-by-username answers 200 with the space; by GUID 204.
        let removed = harness
            .request(
                reqwest::Method::DELETE,
                &format!("/v2/spaces/{space}/managers"),
                Some(&admin),
                Some(&json!({"username": "carol"}).to_string()),
            )
            .await;
        assert_eq!(removed.status, 200, "{:#}", removed.body);
        assert_eq!(removed.body["metadata"]["guid"], space.as_str());

        // The org user role cannot go while space roles remain, unless recursive.
        let not_empty = harness
            .delete(
                &format!("/v2/organizations/{org}/users/{}", carol.id),
                &admin,
            )
            .await;
        assert_eq!(not_empty.status, 400);
        assert_eq!(
            not_empty.body,
            json!({"code": 10006, "description": "Please delete the user associations for your spaces in the org.", "error_code": "CF-AssociationNotEmpty"})
        );
        let recursive = harness
            .delete(
                &format!("/v2/organizations/{org}/users/{}?recursive=true", carol.id),
                &admin,
            )
            .await;
        assert_eq!(recursive.status, 204, "{:#}", recursive.body);
        assert_eq!(
            v3_role_types(&harness, &carol.id).await,
            ["organization_manager"]
        );
        let unknown = harness
            .delete(&format!("/v2/organizations/{org}/users/nobody"), &admin)
            .await;
        assert_eq!(unknown.status, 400);
        assert_eq!(
            unknown.body["description"],
            "Could not find VCAP::CloudController::User with guid: nobody"
        );

        // POST …/remove is the body-carrying alias of DELETE by username.
        let alias = harness
            .post(
                &format!("/v2/organizations/{org}/managers/remove"),
                &admin,
                json!({"username": "carol"}),
            )
            .await;
        assert_eq!(alias.status, 204, "{:#}", alias.body);
        assert!(v3_role_types(&harness, &carol.id).await.is_empty());
        harness.stop().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn v2_roles_by_username_errors_and_permissions() {
    for database in databases() {
        let harness = Harness::start(database).await;
        let admin = harness.admin_token.clone();
        let manager = harness.issuer.add_user("manager", "uaa");
        harness.issuer.add_user("twin", "uaa");
        harness.issuer.add_user("twin", "ldap");
        let outsider = harness.issuer.add_user("outsider", "uaa");
        let org = harness.create_org("acme").await;
        let managers_path = format!("/v2/organizations/{org}/managers");
        let put_manager = |username: &str, origin: Option<&str>| {
            let mut body = json!({"username": username});
            if let Some(origin) = origin {
                body["origin"] = json!(origin);
            }
            harness.put(&managers_path, &admin, body)
        };
        assert_eq!(
            put_manager("nobody", None).await.body,
            json!({"code": 20003, "description": "The user could not be found: nobody", "error_code": "CF-UserNotFound"})
        );
        assert_eq!(
            put_manager("twin", None).await.body,
            json!({"code": 20006, "description": "The user exists in multiple origins. Specify an origin for the requested user from: 'ldap', 'uaa'", "error_code": "CF-UserIsInMultipleOrigins"})
        );
        let wrong_origin = put_manager("manager", Some("ldap")).await;
        assert_eq!(wrong_origin.status, 404);
        assert_eq!(
            wrong_origin.body["description"],
            "The user could not be found, username: 'manager', origin: 'ldap'"
        );
        assert_eq!(put_manager("twin", Some("ldap")).await.status, 201);
        assert_eq!(put_manager("manager", None).await.status, 201);

        // A manager manages roles; an outsider does not even see the org.
        let manager_token = harness.issuer.user_token(&manager);
        let by_manager = harness
            .put(
                &format!("/v2/organizations/{org}/users"),
                &manager_token,
                json!({"username": "outsider"}),
            )
            .await;
        assert_eq!(by_manager.status, 201, "{:#}", by_manager.body);
        let outsider_token = harness.issuer.user_token(&outsider);
        let forbidden = harness
            .put(
                &format!("/v2/organizations/{org}/managers/{}", outsider.id),
                &outsider_token,
                json!({}),
            )
            .await;
        assert_eq!(forbidden.status, 403);
        assert_eq!(forbidden.body["error_code"], "CF-NotAuthorized");
        // Anyone may drop their own role.
        let left = harness
            .delete(
                &format!("/v2/organizations/{org}/users/{}", outsider.id),
                &outsider_token,
            )
            .await;
        assert_eq!(left.status, 204, "{:#}", left.body);
        let hidden = harness
            .get(&format!("/v2/organizations/{org}/users"), &outsider_token)
            .await;
        assert_eq!(hidden.body["error_code"], "CF-OrganizationNotFound");

        // Non-admins cannot remove the last manager (the twin is gone first, by admin).
        let twin_removed = harness
            .request(
                reqwest::Method::DELETE,
                &format!("/v2/organizations/{org}/managers"),
                Some(&admin),
                Some(&json!({"username": "twin", "origin": "ldap"}).to_string()),
            )
            .await;
        assert_eq!(twin_removed.status, 204, "{:#}", twin_removed.body);
        let last = harness
            .delete(
                &format!("/v2/organizations/{org}/managers/{}", manager.id),
                &manager_token,
            )
            .await;
        assert_eq!(
            last.body,
            json!({"code": 30004, "description": "Cannot remove last Org Manager in org", "error_code": "CF-LastManagerInOrg"})
        );

        // With set_roles_by_username off, a manager is refused; an admin is not.
        let flag = harness
            .put(
                "/v2/config/feature_flags/set_roles_by_username",
                &admin,
                json!({"enabled": false}),
            )
            .await;
        assert_eq!(flag.status, 200);
        let disabled = harness
            .put(
                &format!("/v2/organizations/{org}/auditors"),
                &manager_token,
                json!({"username": "outsider"}),
            )
            .await;
        assert_eq!(disabled.status, 403);
        assert_eq!(disabled.body["error_code"], "CF-FeatureDisabled");
        let admin_still = harness
            .put(
                &format!("/v2/organizations/{org}/auditors"),
                &admin,
                json!({"username": "outsider"}),
            )
            .await;
        assert_eq!(admin_still.status, 201);
        harness.stop().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn v2_users_and_space_update() {
    for database in databases() {
        let harness = Harness::start(database).await;
        let admin = harness.admin_token.clone();
        let erin = harness.issuer.add_user("erin", "uaa");
        let created = harness
            .post("/v2/users", &admin, json!({"guid": erin.id}))
            .await;
        assert_eq!(created.status, 201, "{:#}", created.body);
        assert_eq!(
            created.header("location").unwrap(),
            format!("/v2/users/{}", erin.id)
        );
        assert_eq!(created.body["entity"]["username"], "erin");
        assert_eq!(created.body["entity"]["admin"], false);
        let duplicate = harness
            .post("/v2/users", &admin, json!({"guid": erin.id}))
            .await;
        assert_eq!(
            duplicate.body,
            json!({"code": 20002, "description": format!("The UAA ID is taken: {}", erin.id), "error_code": "CF-UaaIdTaken"})
        );
        // A user unknown to UAA is created without a username.
        let client = harness
            .post("/v2/users", &admin, json!({"guid": "some-client"}))
            .await;
        assert_eq!(client.status, 201);
        assert!(client.body["entity"].get("username").is_none());

        let org = harness.create_org("acme").await;
        let space = harness.create_space(&org, "dev").await;
        for (relation, target) in [
            ("organizations", &org),
            ("audited_organizations", &org),
            ("spaces", &space),
        ] {
            let added = harness
                .put(
                    &format!("/v2/users/{}/{relation}/{target}", erin.id),
                    &admin,
                    json!({}),
                )
                .await;
            assert_eq!(added.status, 201, "{relation}: {:#}", added.body);
            assert_eq!(added.body["metadata"]["guid"], erin.id.as_str());
        }
        assert_eq!(
            v3_role_types(&harness, &erin.id).await,
            [
                "organization_auditor",
                "organization_user",
                "space_developer"
            ]
        );
        let erin_token = harness.issuer.user_token(&erin);
        let own_orgs = harness
            .get(
                &format!("/v2/users/{}/audited_organizations", erin.id),
                &erin_token,
            )
            .await;
        assert_eq!(own_orgs.body["total_results"], 1, "{:#}", own_orgs.body);
        assert_eq!(
            own_orgs.body["resources"][0]["metadata"]["guid"],
            org.as_str()
        );
        let own_spaces = harness
            .get(
                &format!("/v2/users/{}/spaces?q=name:DEV", erin.id),
                &erin_token,
            )
            .await;
        assert_eq!(own_spaces.body["resources"][0]["entity"]["name"], "dev");
        let managed = harness
            .get(&format!("/v2/users/{}/managed_spaces", erin.id), &admin)
            .await;
        assert_eq!(managed.body["total_results"], 0);

        // Listing users is for admins; a user reads only themself.
        let filtered = harness
            .get(&format!("/v2/users?q=space_guid:{space}"), &admin)
            .await;
        assert_eq!(filtered.body["total_results"], 1, "{:#}", filtered.body);
        assert_eq!(
            filtered.body["resources"][0]["metadata"]["guid"],
            erin.id.as_str()
        );
        assert_eq!(harness.get("/v2/users", &erin_token).await.status, 403);
        assert_eq!(
            harness
                .get(&format!("/v2/users/{}", erin.id), &erin_token)
                .await
                .status,
            200
        );
        assert_eq!(
            harness
                .get("/v2/users/some-client", &erin_token)
                .await
                .status,
            403
        );

        // The space update is a v2 PUT: 201, and names are unique per org case-insensitively.
        let renamed = harness
            .put(
                &format!("/v2/spaces/{space}"),
                &admin,
                json!({"name": "development", "allow_ssh": false}),
            )
            .await;
        assert_eq!(renamed.status, 201, "{:#}", renamed.body);
        assert_eq!(renamed.body["entity"]["name"], "development");
        assert_eq!(renamed.body["entity"]["allow_ssh"], false);
        harness.create_space(&org, "other").await;
        let taken = harness
            .put(
                &format!("/v2/spaces/{space}"),
                &admin,
                json!({"name": "OTHER"}),
            )
            .await;
        assert_eq!(taken.status, 400);
        assert_eq!(taken.body["error_code"], "CF-SpaceNameTaken");
        let moved = harness
            .put(
                &format!("/v2/spaces/{space}"),
                &admin,
                json!({"organization_guid": "elsewhere"}),
            )
            .await;
        assert_eq!(moved.body["error_code"], "CF-OrganizationAlreadySet");

        // Relations removed per user; then the user itself.
        let dropped = harness
            .delete(&format!("/v2/users/{}/spaces/{space}", erin.id), &admin)
            .await;
        assert_eq!(dropped.status, 204, "{:#}", dropped.body);
        assert_eq!(
            v3_role_types(&harness, &erin.id).await,
            ["organization_auditor", "organization_user"]
        );
        let deleted = harness
            .delete(&format!("/v2/users/{}", erin.id), &admin)
            .await;
        assert_eq!(deleted.status, 204);
        let gone = harness.get(&format!("/v2/users/{}", erin.id), &admin).await;
        assert_eq!(gone.status, 404);
        assert_eq!(gone.body["error_code"], "CF-UserNotFound");
        harness.stop().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn v2_quotas_stacks_and_domains() {
    for database in databases() {
        let harness = Harness::start(database).await;
        let admin = harness.admin_token.clone();
        let quotas = harness
            .get("/v2/quota_definitions?q=name:DEFAULT", &admin)
            .await;
        check(
            &quotas.body,
            &harness.base,
            json!({
                "total_results": 1, "total_pages": 1, "prev_url": null, "next_url": null,
                "resources": [{
                    "metadata": {"guid": "<guid>", "url": "/v2/quota_definitions/<guid>", "created_at": "<time>", "updated_at": "<time>"},
                    "entity": {
                        "name": "default", "non_basic_services_allowed": true, "total_services": 100,
                        "total_routes": 1000, "total_private_domains": -1, "memory_limit": 10240,
                        "trial_db_allowed": false, "instance_memory_limit": -1, "app_instance_limit": -1,
                        "app_task_limit": -1, "total_service_keys": -1, "total_reserved_route_ports": 0,
                        "log_rate_limit": -1,
                    },
                }],
            }),
        );
        let quota_url = quotas.body["resources"][0]["metadata"]["url"]
            .as_str()
            .unwrap()
            .to_owned();
        let quota = harness.get(&quota_url, &admin).await;
        assert_eq!(quota.body["entity"]["name"], "default");
        // The org's quota link resolves.
        let org = harness
            .post("/v2/organizations", &admin, json!({"name": "acme"}))
            .await;
        assert_eq!(
            org.body["entity"]["quota_definition_url"],
            quota_url.as_str()
        );
        let missing = harness.get("/v2/quota_definitions/nope", &admin).await;
        assert_eq!(missing.body["code"], 240001);

        let stacks = harness.get("/v2/stacks?q=name:kiln-host", &admin).await;
        check(
            &stacks.body["resources"],
            &harness.base,
            json!([{
                "metadata": {"guid": "<guid>", "url": "/v2/stacks/<guid>", "created_at": "<time>", "updated_at": "<time>"},
                "entity": {"name": "kiln-host", "description": "Kiln host-backed root filesystem"},
            }]),
        );
        let stack_url = stacks.body["resources"][0]["metadata"]["url"]
            .as_str()
            .unwrap()
            .to_owned();
        assert_eq!(harness.get(&stack_url, &admin).await.status, 200);
        // Stack names are case-sensitive in CC.
        assert_eq!(
            harness
                .get("/v2/stacks?q=name:KILN-HOST", &admin)
                .await
                .body["total_results"],
            0
        );
        let no_stack = harness.get("/v2/stacks/nope", &admin).await;
        assert_eq!(no_stack.body["error_code"], "CF-StackNotFound");

        let shared = harness
            .get("/v2/shared_domains?q=name:apps.localhost", &admin)
            .await;
        check(
            &shared.body["resources"],
            &harness.base,
            json!([{
                "metadata": {"guid": "<guid>", "url": "/v2/shared_domains/<guid>", "created_at": "<time>", "updated_at": "<time>"},
                "entity": {"name": "apps.localhost", "internal": false, "router_group_guid": null, "router_group_type": null},
            }]),
        );
        let domain_guid = shared.body["resources"][0]["metadata"]["guid"]
            .as_str()
            .unwrap()
            .to_owned();
        let one = harness
            .get(&format!("/v2/shared_domains/{domain_guid}"), &admin)
            .await;
        assert_eq!(one.body["entity"]["name"], "apps.localhost");
        let private = harness.get("/v2/private_domains", &admin).await;
        assert_eq!(
            private.body,
            json!({"total_results": 0, "total_pages": 1, "prev_url": null, "next_url": null, "resources": []})
        );
        let not_private = harness
            .get(&format!("/v2/private_domains/{domain_guid}"), &admin)
            .await;
        assert_eq!(not_private.status, 404);
        assert_eq!(not_private.body["error_code"], "CF-DomainNotFound");
        let deprecated = harness.get("/v2/domains", &admin).await;
        assert_eq!(deprecated.status, 200);
        assert_eq!(
            deprecated.header("x-cf-warnings").as_deref(),
            Some("Endpoint+deprecated")
        );
        assert_eq!(
            deprecated.body["resources"][0]["metadata"]["url"],
            format!("/v2/shared_domains/{domain_guid}")
        );
        let bad_q = harness.get("/v2/shared_domains?q=owner:x", &admin).await;
        assert_eq!(bad_q.body["error_code"], "CF-BadQueryParameter");
        harness.stop().await;
    }
}
