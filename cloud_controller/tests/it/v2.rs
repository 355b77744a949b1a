//! v2 envelopes, filters, statuses and errors.

use serde_json::{json, Value};

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

/// Orgs, spaces, users, feature flags and roles as the admin sees them.
async fn v2_snapshot(harness: &Harness) -> Value {
    let admin = &harness.admin_token;
    let orgs = harness.get("/v2/organizations", admin).await.body;
    let spaces = harness.get("/v2/spaces", admin).await.body;
    let users = harness.get("/v2/users", admin).await.body;
    let flags = harness.get("/v2/config/feature_flags", admin).await.body;
    let roles = harness.get("/v3/roles", admin).await.body["resources"].clone();
    json!([orgs, spaces, users, flags, roles])
}

/// One bad request of the sweep: what is sent and the v2 error expected back.
struct BadInput {
    method: reqwest::Method,
    path: String,
    token: Option<String>,
    body: Option<&'static str>,
    status: u16,
    error_code: &'static str,
}

fn bad(
    method: reqwest::Method,
    path: impl Into<String>,
    token: Option<&str>,
    body: Option<&'static str>,
    expected: (u16, &'static str),
) -> BadInput {
    BadInput {
        method,
        path: path.into(),
        token: token.map(str::to_owned),
        body,
        status: expected.0,
        error_code: expected.1,
    }
}

/// Bad input on a real socket: every answer is the v2 error CC gives (never a 500, never a
/// non-JSON body), and nothing changes — no org, space, user or flag is created or altered.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn v2_bad_input_answers_cf_errors_and_changes_nothing() {
    use reqwest::Method;
    const PARSE: (u16, &str) = (400, "CF-MessageParseError");
    const QUERY: (u16, &str) = (400, "CF-BadQueryParameter");
    const UNKNOWN: (u16, &str) = (404, "CF-NotFound");
    for database in databases() {
        let harness = Harness::start(database).await;
        let admin = harness.admin_token.clone();
        let dora = harness.issuer.add_user("dora", "uaa");
        let dora_token = harness.issuer.user_token(&dora);
        let other = harness.issuer.add_user("other", "uaa");
        let other_token = harness.issuer.user_token(&other);
        let org = harness.create_org("steady").await;
        let other_org = harness.create_org("elsewhere").await;
        let space = harness.create_space(&org, "calm").await;
        // dora and other exist in CC but hold no role in `steady`.
        for user in [&dora, &other] {
            let created = harness
                .post("/v2/users", &admin, json!({"guid": user.id}))
                .await;
            assert_eq!(created.status, 201, "{:#}", created.body);
        }
        let before = v2_snapshot(&harness).await;

        let admin = Some(admin.as_str());
        let orgs = "/v2/organizations";
        let org_path = format!("/v2/organizations/{org}");
        let space_path = format!("/v2/spaces/{space}");
        let cases = [
            // Bodies: malformed JSON, non-objects, missing and mistyped fields (CC's JsonMessage).
            bad(Method::POST, orgs, admin, Some("{\"name\":"), PARSE),
            bad(Method::POST, orgs, admin, Some("[]"), PARSE),
            bad(Method::POST, orgs, admin, Some("\"steady\""), PARSE),
            bad(Method::POST, orgs, admin, Some(""), PARSE),
            bad(Method::POST, orgs, admin, Some("{}"), PARSE),
            bad(Method::POST, orgs, admin, Some("{\"name\":5}"), PARSE),
            bad(Method::POST, orgs, admin, Some("{\"name\":\"n\",\"billing_enabled\":\"yes\"}"), PARSE),
            // Values the model refuses, and relations that do not exist.
            bad(Method::POST, orgs, admin, Some("{\"name\":\"  \"}"), (400, "CF-OrganizationInvalid")),
            bad(Method::POST, orgs, admin, Some("{\"name\":\"n\",\"status\":\"frozen\"}"), (400, "CF-OrganizationInvalid")),
            bad(Method::POST, orgs, admin, Some("{\"name\":\"n\",\"quota_definition_guid\":\"nope\"}"), (400, "CF-InvalidRelation")),
            bad(Method::POST, orgs, admin, Some("{\"name\":\"steady\"}"), (400, "CF-OrganizationNameTaken")),
            bad(Method::POST, orgs, admin, Some("{\"name\":\" steady\\t\"}"), (400, "CF-OrganizationNameTaken")),
            bad(Method::POST, orgs, Some(&dora_token), Some("{\"name\":\"mine\"}"), (403, "CF-NotAuthorized")),
            bad(Method::PUT, org_path.as_str(), admin, Some("{\"name\":7}"), PARSE),
            bad(Method::PUT, org_path.as_str(), admin, Some("{\"name\":\"\"}"), (400, "CF-OrganizationInvalid")),
            bad(Method::PUT, org_path.as_str(), admin, Some("{\"quota_definition_guid\":\"nope\"}"), (400, "CF-InvalidRelation")),
            bad(Method::PUT, org_path.as_str(), admin, Some("{\"name\":\"elsewhere\"}"), (400, "CF-OrganizationNameTaken")),
            bad(Method::PUT, "/v2/organizations/nope", admin, Some("{\"name\":\"x\"}"), (404, "CF-OrganizationNotFound")),
            bad(Method::DELETE, "/v2/organizations/nope", admin, None, (404, "CF-OrganizationNotFound")),
            bad(Method::DELETE, org_path.as_str(), admin, None, (400, "CF-AssociationNotEmpty")),
            bad(Method::POST, "/v2/spaces", admin, Some("{\"name\":\"s\"}"), PARSE),
            bad(
                Method::POST,
                "/v2/spaces",
                admin,
                Some(&*Box::leak(
                    format!("{{\"name\":\" calm \",\"organization_guid\":\"{org}\"}}")
                        .into_boxed_str(),
                )),
                (400, "CF-SpaceNameTaken"),
            ),
            bad(Method::POST, "/v2/spaces", admin, Some("{\"organization_guid\":\"x\"}"), PARSE),
            bad(Method::POST, "/v2/spaces", admin, Some("{\"name\":\"s\",\"organization_guid\":[]}"), PARSE),
            bad(Method::POST, "/v2/spaces", admin, Some("{\"name\":\"s\",\"organization_guid\":\"nope\"}"), (400, "CF-InvalidRelation")),
            bad(Method::PUT, space_path.as_str(), admin, Some("{\"allow_ssh\":\"no\"}"), PARSE),
            bad(Method::PUT, space_path.as_str(), admin, Some("{\"name\":\"\"}"), (400, "CF-SpaceInvalid")),
            bad(Method::PUT, space_path.as_str(), admin, Some(&*Box::leak(format!("{{\"organization_guid\":\"{other_org}\"}}").into_boxed_str())), (400, "CF-OrganizationAlreadySet")),
            bad(Method::PUT, "/v2/spaces/nope", admin, Some("{}"), (404, "CF-SpaceNotFound")),
            bad(Method::DELETE, "/v2/spaces/nope", admin, None, (404, "CF-SpaceNotFound")),
            bad(Method::POST, "/v2/users", admin, Some("{}"), PARSE),
            bad(Method::POST, "/v2/users", admin, Some("{\"guid\":1}"), PARSE),
            bad(Method::POST, "/v2/users", admin, Some("{\"guid\":\"\"}"), (400, "CF-UserInvalid")),
            bad(Method::POST, "/v2/users", admin, Some(&*Box::leak(format!("{{\"guid\":\"{}\"}}", dora.id).into_boxed_str())), (400, "CF-UaaIdTaken")),
            bad(Method::DELETE, "/v2/users/nope", admin, None, (404, "CF-UserNotFound")),
            // Role associations.
            bad(Method::PUT, format!("{org_path}/managers"), admin, Some("{\"username\":"), PARSE),
            bad(Method::PUT, format!("{org_path}/managers"), admin, Some("[\"dora\"]"), PARSE),
            bad(Method::PUT, format!("{org_path}/managers"), admin, Some("{\"username\":5}"), PARSE),
            bad(Method::PUT, format!("{org_path}/managers"), admin, Some("{\"username\":\"nobody\"}"), (404, "CF-UserNotFound")),
            bad(Method::PUT, format!("/v2/organizations/nope/managers/{}", dora.id), admin, Some("{}"), (404, "CF-OrganizationNotFound")),
            bad(Method::PUT, format!("{space_path}/developers/{}", dora.id), admin, Some("{}"), (400, "CF-InvalidRelation")),
            bad(Method::PUT, format!("/v2/spaces/nope/developers/{}", dora.id), admin, Some("{}"), (404, "CF-SpaceNotFound")),
            bad(Method::DELETE, format!("{org_path}/auditors/nobody"), admin, None, (400, "CF-InvalidRelation")),
            bad(Method::DELETE, format!("{org_path}/managers"), admin, None, PARSE),
            bad(Method::POST, format!("{org_path}/managers/remove"), admin, Some("{}"), (404, "CF-UserNotFound")),
            bad(Method::PUT, format!("{space_path}/developers"), admin, Some("{\"username\":\"dora\"}"), (400, "CF-InvalidRelation")),
            bad(Method::GET, format!("{org_path}/user_roles?q=colour:x"), admin, None, QUERY),
            bad(Method::GET, "/v2/spaces/nope/user_roles", admin, None, (404, "CF-SpaceNotFound")),
            bad(Method::GET, "/v2/organizations/nope/summary", admin, None, (404, "CF-OrganizationNotFound")),
            bad(Method::GET, "/v2/organizations/nope/memory_usage", admin, None, (404, "CF-OrganizationNotFound")),
            bad(Method::GET, "/v2/users/nope/summary", admin, None, (404, "CF-UserNotFound")),
            bad(Method::GET, format!("/v2/users/{}/summary", dora.id), Some(&other_token), None, (403, "CF-NotAuthorized")),
            // Quota definitions.
            bad(Method::POST, "/v2/quota_definitions", admin, Some("[]"), PARSE),
            bad(Method::POST, "/v2/quota_definitions", admin, Some("{\"name\":\"q\"}"), PARSE),
            bad(Method::POST, "/v2/quota_definitions", admin, Some("{\"name\":\"q\",\"non_basic_services_allowed\":true,\"total_services\":1.5,\"total_routes\":1,\"memory_limit\":1}"), PARSE),
            bad(Method::POST, "/v2/quota_definitions", admin, Some("{\"name\":\"q\",\"non_basic_services_allowed\":true,\"total_services\":1,\"total_routes\":1,\"memory_limit\":99999999999}"), PARSE),
            bad(Method::POST, "/v2/quota_definitions", admin, Some("{\"name\":\"default\",\"non_basic_services_allowed\":true,\"total_services\":1,\"total_routes\":1,\"memory_limit\":1}"), (400, "CF-QuotaDefinitionNameTaken")),
            bad(Method::POST, "/v2/quota_definitions", Some(&dora_token), Some("{\"name\":\"q\",\"non_basic_services_allowed\":true,\"total_services\":1,\"total_routes\":1,\"memory_limit\":1}"), (403, "CF-NotAuthorized")),
            bad(Method::PUT, "/v2/quota_definitions/nope", admin, Some("{}"), (404, "CF-QuotaDefinitionNotFound")),
            bad(Method::DELETE, "/v2/quota_definitions/nope", admin, None, (404, "CF-QuotaDefinitionNotFound")),
            // Control characters (PostgreSQL refuses NUL in text) are CC's name format error.
            bad(Method::POST, orgs, admin, Some("{\"name\":\"nul\\u0000byte\"}"), (400, "CF-OrganizationInvalid")),
            bad(Method::PUT, org_path.as_str(), admin, Some("{\"name\":\"bell\\u0007\"}"), (400, "CF-OrganizationInvalid")),
            bad(Method::POST, "/v2/spaces", admin, Some(&*Box::leak(format!("{{\"name\":\"nul\\u0000\",\"organization_guid\":\"{org}\"}}").into_boxed_str())), (400, "CF-SpaceInvalid")),
            bad(Method::POST, "/v2/quota_definitions", admin, Some("{\"name\":\"q\\u0000\",\"non_basic_services_allowed\":true,\"total_services\":1,\"total_routes\":1,\"memory_limit\":1}"), (400, "CF-QuotaDefinitionInvalid")),
            bad(Method::POST, "/v2/users", admin, Some("{\"guid\":\"nul\\u0000\"}"), (400, "CF-UserInvalid")),
            bad(Method::PUT, format!("{org_path}/auditors/nul%00guid"), admin, Some("{}"), (404, "CF-NotFound")),
            bad(Method::GET, "/v2/organizations/nul%00guid", admin, None, (404, "CF-NotFound")),
            bad(Method::PUT, format!("{org_path}/managers"), admin, Some("{\"username\":\"nul\\u0000\"}"), (404, "CF-UserNotFound")),
            bad(Method::PUT, format!("/v2/users/nul%00/organizations/{org}"), admin, Some("{}"), (404, "CF-NotFound")),
            bad(Method::GET, "/v2/users/nul%00/summary", admin, None, (404, "CF-NotFound")),
            bad(Method::GET, "/v2/quota_definitions/nul%00", admin, None, (404, "CF-NotFound")),
            bad(Method::PUT, "/v2/config/feature_flags/user_org_creation", admin, Some("{\"enabled\":true,\"error_message\":\"nul\\u0000\"}"), (400, "CF-FeatureFlagInvalid")),
            // Kiln has no isolation segments: naming one is CC's not-found answer.
            bad(Method::PUT, org_path.as_str(), admin, Some("{\"default_isolation_segment_guid\":\"x\"}"), (404, "CF-ResourceNotFound")),
            bad(Method::PUT, space_path.as_str(), admin, Some("{\"isolation_segment_guid\":\"x\"}"), (404, "CF-ResourceNotFound")),
            bad(Method::POST, "/v2/spaces", admin, Some(&*Box::leak(format!("{{\"name\":\"isolated\",\"organization_guid\":\"{org}\",\"isolation_segment_guid\":\"x\"}}").into_boxed_str())), (404, "CF-ResourceNotFound")),
            bad(Method::DELETE, "/v2/organizations/nope/default_isolation_segment", admin, None, (404, "CF-OrganizationNotFound")),
            bad(Method::DELETE, format!("{space_path}/isolation_segment"), Some(&dora_token), None, (404, "CF-SpaceNotFound")),
            bad(Method::PUT, org_path.as_str(), admin, Some("[]"), PARSE),
            bad(Method::PUT, org_path.as_str(), admin, Some("{\"status\":5}"), PARSE),
            bad(Method::PUT, format!("/v2/users/{}/managed_organizations/nope", dora.id), admin, Some("{}"), (404, "CF-OrganizationNotFound")),
            bad(Method::PUT, format!("/v2/users/nope/organizations/{org}"), admin, Some("{}"), (404, "CF-UserNotFound")),
            // Feature flags.
            bad(Method::PUT, "/v2/config/feature_flags/nope", admin, Some("{\"enabled\":true}"), (404, "CF-FeatureFlagNotFound")),
            bad(Method::PUT, "/v2/config/feature_flags/user_org_creation", admin, Some("{\"enabled\":"), PARSE),
            bad(Method::PUT, "/v2/config/feature_flags/user_org_creation", admin, Some("[true]"), PARSE),
            bad(Method::PUT, "/v2/config/feature_flags/user_org_creation", admin, Some("{}"), (400, "CF-FeatureFlagInvalid")),
            bad(Method::PUT, "/v2/config/feature_flags/user_org_creation", admin, Some("{\"enabled\":\"yes\"}"), (400, "CF-FeatureFlagInvalid")),
            bad(Method::PUT, "/v2/config/feature_flags/user_org_creation", admin, Some("{\"enabled\":true,\"error_message\":\"\"}"), (400, "CF-FeatureFlagInvalid")),
            bad(Method::PUT, "/v2/config/feature_flags/user_org_creation", Some(&dora_token), Some("{\"enabled\":true}"), (403, "CF-NotAuthorized")),
            // Lists: garbage `q`, paging and ordering out of bounds.
            bad(Method::GET, "/v2/organizations?q=colour:blue", admin, None, QUERY),
            bad(Method::GET, "/v2/organizations?q=:blue", admin, None, QUERY),
            bad(Method::GET, "/v2/organizations?q=%FF%FE", admin, None, QUERY),
            bad(Method::GET, "/v2/organizations?q=name:a&q=developer_guid:x", admin, None, QUERY),
            bad(Method::GET, "/v2/organizations?page=0", admin, None, QUERY),
            bad(Method::GET, "/v2/organizations?page=-1", admin, None, QUERY),
            bad(Method::GET, "/v2/organizations?page=one", admin, None, QUERY),
            bad(Method::GET, "/v2/organizations?page=99999999999999999999999", admin, None, QUERY),
            bad(Method::GET, "/v2/organizations?results-per-page=101", admin, None, QUERY),
            bad(Method::GET, "/v2/organizations?results-per-page=0", admin, None, QUERY),
            bad(Method::GET, "/v2/organizations?results-per-page=lots", admin, None, QUERY),
            bad(Method::GET, "/v2/organizations?order-by=colour", admin, None, QUERY),
            bad(Method::GET, "/v2/organizations?order-direction=up", admin, None, QUERY),
            bad(Method::GET, "/v2/organizations?inline-relations-depth=4", admin, None, QUERY),
            bad(Method::GET, "/v2/organizations?inline-relations-depth=deep", admin, None, QUERY),
            bad(Method::GET, format!("{org_path}?inline-relations-depth=9"), admin, None, QUERY),
            bad(Method::GET, format!("{org_path}/spaces?q=status:active"), admin, None, QUERY),
            bad(Method::GET, format!("{org_path}/managers?q=name:dora"), admin, None, QUERY),
            bad(Method::GET, "/v2/spaces?q=status:active", admin, None, QUERY),
            bad(Method::GET, "/v2/spaces?order-by=created_at", admin, None, QUERY),
            bad(Method::GET, "/v2/users?q=username:dora", admin, None, QUERY),
            bad(Method::GET, format!("/v2/users/{}/organizations?q=colour:x", dora.id), admin, None, QUERY),
            bad(Method::GET, "/v2/quota_definitions?q=memory_limit:1", admin, None, QUERY),
            // Unknown GUIDs.
            bad(Method::GET, "/v2/organizations/nope", admin, None, (404, "CF-OrganizationNotFound")),
            bad(Method::GET, "/v2/organizations/nope/spaces", admin, None, (404, "CF-OrganizationNotFound")),
            bad(Method::GET, "/v2/organizations/nope/users", admin, None, (404, "CF-OrganizationNotFound")),
            bad(Method::GET, "/v2/spaces/nope", admin, None, (404, "CF-SpaceNotFound")),
            bad(Method::GET, "/v2/spaces/nope/developers", admin, None, (404, "CF-SpaceNotFound")),
            bad(Method::GET, "/v2/users/nope", admin, None, (404, "CF-UserNotFound")),
            bad(Method::GET, "/v2/users/nope/spaces", admin, None, (404, "CF-UserNotFound")),
            bad(Method::GET, "/v2/quota_definitions/nope", admin, None, (404, "CF-QuotaDefinitionNotFound")),
            bad(Method::GET, format!("/v2/users/{}?inline-relations-depth=4", dora.id), admin, None, QUERY),
            bad(Method::GET, format!("{space_path}?inline-relations-depth=x"), admin, None, QUERY),
            bad(Method::GET, "/v2/config/feature_flags/nope", admin, None, (404, "CF-FeatureFlagNotFound")),
            // Wrong methods and unknown paths.
            bad(Method::PATCH, orgs, admin, Some("{}"), UNKNOWN),
            bad(Method::POST, org_path.as_str(), admin, Some("{}"), UNKNOWN),
            bad(Method::PUT, "/v2/users", admin, Some("{}"), UNKNOWN),
            bad(Method::DELETE, "/v2/config/feature_flags", admin, None, UNKNOWN),
            bad(Method::POST, "/v2/config/feature_flags/user_org_creation", admin, Some("{}"), UNKNOWN),
            bad(Method::DELETE, "/v2/jobs/nope", admin, None, UNKNOWN),
            bad(Method::GET, format!("{org_path}/developers"), admin, None, UNKNOWN),
            bad(Method::GET, format!("{space_path}/billing_managers"), admin, None, UNKNOWN),
            bad(Method::GET, "/v2/organizationz", admin, None, UNKNOWN),
            // Missing and garbage tokens.
            bad(Method::GET, orgs, None, None, (401, "CF-NotAuthenticated")),
            bad(Method::GET, orgs, Some("garbage"), None, (401, "CF-InvalidAuthToken")),
            bad(Method::GET, orgs, Some("a.b.c"), None, (401, "CF-InvalidAuthToken")),
            bad(Method::POST, orgs, Some("e30.e30."), Some("{\"name\":\"sneaky\"}"), (401, "CF-InvalidAuthToken")),
            bad(Method::GET, "/v2/config/feature_flags", Some(""), None, (401, "CF-InvalidAuthToken")),
        ];
        let mut failures = Vec::new();
        for case in &cases {
            let answer = harness
                .request(
                    case.method.clone(),
                    &case.path,
                    case.token.as_deref(),
                    case.body,
                )
                .await;
            let well_formed = answer.body["code"].is_u64()
                && answer.body["description"].is_string()
                && answer.body["error_code"] == case.error_code;
            if answer.status != case.status || !well_formed {
                failures.push(format!(
                    "{} {} {:?}: expected {} {}, got {} {}",
                    case.method,
                    case.path,
                    case.body,
                    case.status,
                    case.error_code,
                    answer.status,
                    answer.body
                ));
            }
        }
        assert!(failures.is_empty(), "{}", failures.join("\n"));
        assert!(
            v2_snapshot(&harness).await == before,
            "bad input changed orgs, spaces, users, flags or roles"
        );
        harness.stop().await;
    }
}

/// The names of a v2 list's resources, in order.
fn v2_names(answer: &crate::support::Answer) -> Vec<String> {
    assert_eq!(answer.status, 200, "{:#}", answer.body);
    answer.body["resources"]
        .as_array()
        .unwrap_or_else(|| panic!("a list: {:#}", answer.body))
        .iter()
        .map(|resource| resource["entity"]["name"].as_str().unwrap().to_owned())
        .collect()
}

/// CC's `q` attributes that are joins (orgs by space and by each org role, spaces by developer
/// and app), its comparison operators, bare attributes, ignored unknown parameters,
/// `inline-relations-depth` bounds and paging far past the end.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn v2_list_filters_joins_operators_and_bounds() {
    for database in databases() {
        let harness = Harness::start(database).await;
        let admin = harness.admin_token.clone();
        let erin = harness.issuer.add_user("erin", "uaa");
        let frank = harness.issuer.add_user("frank", "uaa");
        let alpha = harness.create_org("alpha").await;
        let beta = harness.create_org("beta").await;
        let gamma = harness.create_org("gamma").await;
        let dev = harness.create_space(&alpha, "dev").await;
        harness.create_space(&beta, "ops").await;
        for (role_type, username, target) in [
            (
                "organization_user",
                "erin",
                ("organization", alpha.as_str()),
            ),
            ("space_developer", "erin", ("space", dev.as_str())),
            (
                "organization_manager",
                "erin",
                ("organization", beta.as_str()),
            ),
            (
                "organization_auditor",
                "frank",
                ("organization", gamma.as_str()),
            ),
            (
                "organization_billing_manager",
                "frank",
                ("organization", beta.as_str()),
            ),
        ] {
            let granted = harness.grant(role_type, username, target).await;
            assert_eq!(granted.status, 201, "{:#}", granted.body);
        }
        let app = harness
            .post(
                "/v3/apps",
                &admin,
                json!({"name": "web", "relationships": {"space": {"data": {"guid": dev}}}}),
            )
            .await;
        assert_eq!(app.status, 201, "{:#}", app.body);
        let app_guid = app.body["guid"].as_str().unwrap().to_owned();

        let orgs = |query: String| {
            let admin = admin.clone();
            let harness = &harness;
            async move {
                v2_names(
                    &harness
                        .get(&format!("/v2/organizations?order-by=name&{query}"), &admin)
                        .await,
                )
            }
        };
        assert_eq!(orgs(format!("q=manager_guid:{}", erin.id)).await, ["beta"]);
        assert_eq!(orgs(format!("q=user_guid:{}", erin.id)).await, ["alpha"]);
        assert_eq!(
            orgs(format!("q=auditor_guid:{}", frank.id)).await,
            ["gamma"]
        );
        assert_eq!(
            orgs(format!("q=billing_manager_guid:{}", frank.id)).await,
            ["beta"]
        );
        assert!(orgs(format!("q=billing_manager_guid:{}", erin.id))
            .await
            .is_empty());
        assert_eq!(orgs(format!("q=space_guid:{dev}")).await, ["alpha"]);
        assert_eq!(
            orgs(format!(
                "q=space_guid%20IN%20nope,{dev}&q=user_guid:{}",
                erin.id
            ))
            .await,
            ["alpha"]
        );
        // Comparisons on a string column, and CC's `;`-joined conditions.
        assert_eq!(orgs("q=name%3Ealpha".into()).await, ["beta", "gamma"]);
        assert_eq!(orgs("q=name%3E%3Dbeta".into()).await, ["beta", "gamma"]);
        assert_eq!(orgs("q=name%3Cbeta".into()).await, ["alpha"]);
        assert_eq!(orgs("q=name%3C%3Dbeta".into()).await, ["alpha", "beta"]);
        assert_eq!(orgs("q=name%3Ealpha;name%3Cgamma".into()).await, ["beta"]);
        // A bare attribute is CC's `IS NULL`; unknown parameters are ignored, as CC does.
        assert!(orgs("q=name".into()).await.is_empty());
        assert_eq!(
            orgs("colour=blue&orphan-relations=1&inline-relations-depth=1".into()).await,
            ["alpha", "beta", "gamma"]
        );

        let spaces = |path: String| {
            let admin = admin.clone();
            let harness = &harness;
            async move { v2_names(&harness.get(&path, &admin).await) }
        };
        assert_eq!(
            spaces(format!("/v2/spaces?q=developer_guid:{}", erin.id)).await,
            ["dev"]
        );
        assert_eq!(
            spaces(format!("/v2/spaces?q=app_guid:{app_guid}")).await,
            ["dev"]
        );
        assert!(spaces("/v2/spaces?q=isolation_segment_guid:x".into())
            .await
            .is_empty());
        assert_eq!(
            spaces(format!(
                "/v2/organizations/{alpha}/spaces?q=developer_guid:{}",
                erin.id
            ))
            .await,
            ["dev"]
        );
        assert_eq!(
            spaces(format!(
                "/v2/users/{}/organizations?q=space_guid:{dev}",
                erin.id
            ))
            .await,
            ["alpha"]
        );
        assert_eq!(
            spaces(format!(
                "/v2/users/{}/managed_organizations?q=name:beta",
                erin.id
            ))
            .await,
            ["beta"]
        );

        // next_url keeps `q`, `order-by` and the direction.
        let first = harness
            .get(
                "/v2/organizations?q=name%3Ealpha&order-by=name&order-direction=desc&results-per-page=1",
                &admin,
            )
            .await;
        assert_eq!(v2_names(&first), ["gamma"]);
        let next = first.body["next_url"].as_str().unwrap().to_owned();
        assert!(
            next.starts_with("/v2/organizations?") && next.contains("q=name%3Ealpha"),
            "{next}"
        );
        let second = harness.get(&next, &admin).await;
        assert_eq!(v2_names(&second), ["beta"]);
        assert!(second.body["next_url"].is_null(), "{:#}", second.body);
        assert!(second.body["prev_url"].is_string(), "{:#}", second.body);

        // Far past the last page: an empty page, not an overflow.
        let far = harness
            .get(
                &format!("/v2/organizations?page={}&results-per-page=100", usize::MAX),
                &admin,
            )
            .await;
        assert_eq!(far.status, 200, "{:#}", far.body);
        assert_eq!(far.body["resources"], json!([]));
        assert_eq!(far.body["total_results"], 3);

        // CC's exact messages for depth and direction.
        let deep = harness
            .get("/v2/spaces?inline-relations-depth=4", &admin)
            .await;
        assert_eq!(
            deep.body,
            json!({"code": 10005, "description": "The query parameter is invalid: inline_relations_depth must be <= 3", "error_code": "CF-BadQueryParameter"})
        );
        assert_eq!(
            harness
                .get(
                    &format!("/v2/spaces/{dev}?inline-relations-depth=3"),
                    &admin
                )
                .await
                .status,
            200
        );
        let sideways = harness
            .get("/v2/organizations?order-direction=up", &admin)
            .await;
        assert_eq!(
            sideways.body["description"],
            "The query parameter is invalid: order_direction must be 'asc' or 'desc' but was 'up'"
        );
        harness.stop().await;
    }
}

/// Org create with a quota, `user_org_creation` with a custom `error_message`, CC's feature flag
/// PUT, which assigns both fields (an absent `error_message` clears the custom one), and the
/// admin-only `billing_enabled`, quota and status.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn v2_org_creation_quota_and_feature_flag_messages() {
    for database in databases() {
        let harness = Harness::start(database).await;
        let admin = harness.admin_token.clone();
        let quota_guid = harness
            .get("/v2/quota_definitions?q=name:default", &admin)
            .await
            .body["resources"][0]["metadata"]["guid"]
            .as_str()
            .unwrap()
            .to_owned();
        let created = harness
            .post(
                "/v2/organizations",
                &admin,
                json!({"name": "quoted", "quota_definition_guid": quota_guid, "billing_enabled": false, "manager_guids": []}),
            )
            .await;
        assert_eq!(created.status, 201, "{:#}", created.body);
        assert_eq!(
            created.body["entity"]["quota_definition_guid"],
            quota_guid.as_str()
        );
        let stripped = harness
            .post("/v2/organizations", &admin, json!({"name": "  padded\t"}))
            .await;
        assert_eq!(stripped.status, 201, "{:#}", stripped.body);
        assert_eq!(stripped.body["entity"]["name"], "padded");
        let unknown_quota = harness
            .post(
                "/v2/organizations",
                &admin,
                json!({"name": "unquoted", "quota_definition_guid": "nope"}),
            )
            .await;
        assert_eq!(
            unknown_quota.body,
            json!({"code": 1002, "description": "Could not find QuotaDefinition with guid: nope", "error_code": "CF-InvalidRelation"})
        );
        let none = harness
            .get("/v2/organizations?q=name:unquoted", &admin)
            .await;
        assert_eq!(none.body["total_results"], 0, "{:#}", none.body);

        let flag_path = "/v2/config/feature_flags/user_org_creation";
        let custom = harness
            .put(
                flag_path,
                &admin,
                json!({"enabled": false, "error_message": "ask the platform team"}),
            )
            .await;
        assert_eq!(custom.status, 200, "{:#}", custom.body);
        assert_eq!(
            custom.body,
            json!({"name": "user_org_creation", "enabled": false, "error_message": "ask the platform team", "url": flag_path})
        );
        let grace = harness.issuer.add_user("grace", "uaa");
        let grace_token = harness.issuer.user_token(&grace);
        let refused = harness
            .post("/v2/organizations", &grace_token, json!({"name": "graces"}))
            .await;
        // CC's OrganizationAccess#create? only asks whether the flag is on: a plain refusal.
        assert_eq!(
            refused.body,
            json!({"code": 10003, "description": "You are not authorized to perform the requested action", "error_code": "CF-NotAuthorized"})
        );
        let enabled = harness
            .put(flag_path, &admin, json!({"enabled": true}))
            .await;
        assert_eq!(
            enabled.body["error_message"],
            json!(null),
            "{:#}",
            enabled.body
        );
        let allowed = harness
            .post("/v2/organizations", &grace_token, json!({"name": "graces"}))
            .await;
        assert_eq!(allowed.status, 201, "{:#}", allowed.body);
        let space = harness
            .post(
                "/v2/spaces",
                &grace_token,
                json!({"name": "home", "organization_guid": allowed.body["metadata"]["guid"], "developer_guids": []}),
            )
            .await;
        assert_eq!(space.status, 201, "{:#}", space.body);

        // `billing_enabled` is stored, and like the quota and status it is for admins only.
        let graces = format!(
            "/v2/organizations/{}",
            allowed.body["metadata"]["guid"].as_str().unwrap()
        );
        for body in [
            json!({"billing_enabled": true}),
            json!({"quota_definition_guid": quota_guid}),
            json!({"status": "suspended"}),
        ] {
            let refused = harness.put(&graces, &grace_token, body.clone()).await;
            assert_eq!(refused.status, 403, "{body}: {:#}", refused.body);
        }
        let own_quota = harness
            .post(
                "/v2/organizations",
                &grace_token,
                json!({"name": "graces-too", "quota_definition_guid": quota_guid}),
            )
            .await;
        assert_eq!(own_quota.status, 403, "{:#}", own_quota.body);
        let billed = harness
            .put(&graces, &admin, json!({"billing_enabled": true}))
            .await;
        assert_eq!(billed.status, 201, "{:#}", billed.body);
        assert_eq!(billed.body["entity"]["billing_enabled"], true);
        assert_eq!(
            harness.get(&graces, &admin).await.body["entity"]["billing_enabled"],
            true
        );
        let billed_at_birth = harness
            .post(
                "/v2/organizations",
                &admin,
                json!({"name": "billed", "billing_enabled": true}),
            )
            .await;
        assert_eq!(billed_at_birth.body["entity"]["billing_enabled"], true);
        harness.stop().await;
    }
}

/// `/v2/quota_definitions` writes (admin): create with CC's required fields and defaults,
/// partial update (201), CC's validations and codes, and delete (refused while an org uses the
/// quota; 204, or 202 with a job).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn v2_quota_definitions_create_update_delete() {
    for database in databases() {
        let harness = Harness::start(database).await;
        let admin = harness.admin_token.clone();
        let body = json!({"name": "small", "non_basic_services_allowed": false, "total_services": 5,
                          "total_routes": 10, "memory_limit": 2048, "trial_db_allowed": true});
        let created = harness
            .post("/v2/quota_definitions", &admin, body.clone())
            .await;
        assert_eq!(created.status, 201, "{:#}", created.body);
        let quota_guid = created.body["metadata"]["guid"]
            .as_str()
            .unwrap()
            .to_owned();
        let quota_path = format!("/v2/quota_definitions/{quota_guid}");
        assert_eq!(created.header("location").unwrap(), quota_path);
        check(
            &created.body,
            &harness.base,
            json!({
                "metadata": {"guid": "<guid>", "url": "/v2/quota_definitions/<guid>", "created_at": "<time>", "updated_at": "<time>"},
                "entity": {
                    "name": "small", "non_basic_services_allowed": false, "total_services": 5,
                    "total_routes": 10, "total_private_domains": -1, "memory_limit": 2048,
                    "trial_db_allowed": false, "instance_memory_limit": -1, "app_instance_limit": -1,
                    "app_task_limit": -1, "total_service_keys": -1, "total_reserved_route_ports": 0,
                    "log_rate_limit": -1,
                },
            }),
        );
        let found = harness
            .get("/v2/quota_definitions?q=name:small", &admin)
            .await;
        assert_eq!(found.body["total_results"], 1, "{:#}", found.body);

        let expect_error =
            |answer: crate::support::Answer, status: u16, code: u64, error_code: &str| {
                assert_eq!(answer.status, status, "{:#}", answer.body);
                assert_eq!(answer.body["code"], code, "{:#}", answer.body);
                assert_eq!(answer.body["error_code"], error_code, "{:#}", answer.body);
                answer.body["description"].as_str().unwrap().to_owned()
            };
        let taken = harness
            .post("/v2/quota_definitions", &admin, body.clone())
            .await;
        assert_eq!(
            expect_error(taken, 400, 240002, "CF-QuotaDefinitionNameTaken"),
            "Quota Definition is taken: small"
        );
        let mut missing = body.clone();
        missing.as_object_mut().unwrap().remove("memory_limit");
        missing["name"] = json!("other");
        let missing = harness.post("/v2/quota_definitions", &admin, missing).await;
        assert_eq!(
            expect_error(missing, 400, 1001, "CF-MessageParseError"),
            "Request invalid due to parse error: Field: memory_limit, Error: Missing field memory_limit"
        );
        let mut mistyped = body.clone();
        mistyped["name"] = json!("other");
        mistyped["total_routes"] = json!("ten");
        let mistyped = harness
            .post("/v2/quota_definitions", &admin, mistyped)
            .await;
        expect_error(mistyped, 400, 1001, "CF-MessageParseError");
        let mut negative = body.clone();
        negative["name"] = json!("other");
        negative["memory_limit"] = json!(-2);
        let negative = harness
            .post("/v2/quota_definitions", &admin, negative)
            .await;
        expect_error(
            negative,
            400,
            240004,
            "CF-QuotaDefinitionMemoryLimitInvalid",
        );
        let mut ports = body.clone();
        ports["name"] = json!("other");
        ports["total_reserved_route_ports"] = json!(11);
        let ports = harness.post("/v2/quota_definitions", &admin, ports).await;
        expect_error(ports, 400, 240003, "CF-QuotaDefinitionInvalid");
        let dora = harness.issuer.add_user("dora", "uaa");
        let dora_token = harness.issuer.user_token(&dora);
        let mut by_user = body.clone();
        by_user["name"] = json!("other");
        let by_user = harness
            .post("/v2/quota_definitions", &dora_token, by_user)
            .await;
        expect_error(by_user, 403, 10003, "CF-NotAuthorized");
        let nothing = harness
            .get("/v2/quota_definitions?q=name:other", &admin)
            .await;
        assert_eq!(nothing.body["total_results"], 0, "{:#}", nothing.body);

        // Partial update answers 201 and keeps what was not sent.
        let updated = harness
            .put(
                &quota_path,
                &admin,
                json!({"memory_limit": 4096, "app_instance_limit": 8}),
            )
            .await;
        assert_eq!(updated.status, 201, "{:#}", updated.body);
        assert_eq!(updated.body["entity"]["memory_limit"], 4096);
        assert_eq!(updated.body["entity"]["app_instance_limit"], 8);
        assert_eq!(updated.body["entity"]["total_services"], 5);
        let bad_update = harness
            .put(&quota_path, &admin, json!({"app_task_limit": -5}))
            .await;
        expect_error(bad_update, 400, 240003, "CF-QuotaDefinitionInvalid");
        let by_user = harness
            .put(&quota_path, &dora_token, json!({"memory_limit": 1}))
            .await;
        expect_error(by_user, 403, 10003, "CF-NotAuthorized");
        let default_guid = harness
            .get("/v2/quota_definitions?q=name:default", &admin)
            .await
            .body["resources"][0]["metadata"]["guid"]
            .as_str()
            .unwrap()
            .to_owned();
        let rename_default = harness
            .put(
                &format!("/v2/quota_definitions/{default_guid}"),
                &admin,
                json!({"name": "renamed"}),
            )
            .await;
        expect_error(rename_default, 400, 240003, "CF-QuotaDefinitionInvalid");
        let delete_default = harness
            .delete(&format!("/v2/quota_definitions/{default_guid}"), &admin)
            .await;
        expect_error(delete_default, 400, 240003, "CF-QuotaDefinitionInvalid");

        // A quota an org uses stays; once the org moves off it, it can go (async: a v2 job).
        let org = harness
            .post(
                "/v2/organizations",
                &admin,
                json!({"name": "frugal", "quota_definition_guid": quota_guid}),
            )
            .await;
        assert_eq!(org.status, 201, "{:#}", org.body);
        let org_guid = org.body["metadata"]["guid"].as_str().unwrap().to_owned();
        let in_use = harness.delete(&quota_path, &admin).await;
        assert_eq!(
            expect_error(in_use, 400, 10006, "CF-AssociationNotEmpty"),
            "Please delete the organization associations for your quota definition."
        );
        let moved = harness
            .put(
                &format!("/v2/organizations/{org_guid}"),
                &admin,
                json!({"quota_definition_guid": default_guid}),
            )
            .await;
        assert_eq!(moved.status, 201, "{:#}", moved.body);
        let by_user = harness.delete(&quota_path, &dora_token).await;
        expect_error(by_user, 403, 10003, "CF-NotAuthorized");
        let deleted = harness
            .delete(&format!("{quota_path}?async=true"), &admin)
            .await;
        assert_eq!(deleted.status, 202, "{:#}", deleted.body);
        let job = harness
            .get(deleted.body["metadata"]["url"].as_str().unwrap(), &admin)
            .await;
        assert_eq!(job.body["entity"]["status"], "finished", "{:#}", job.body);
        let gone = harness.get(&quota_path, &admin).await;
        expect_error(gone, 404, 240001, "CF-QuotaDefinitionNotFound");
        let again = harness.delete(&quota_path, &admin).await;
        expect_error(again, 404, 240001, "CF-QuotaDefinitionNotFound");
        harness.stop().await;
    }
}

/// `/v2/organizations/:g/user_roles` and `/v2/spaces/:g/user_roles`: each user with a role there,
/// with `username` and CC's role names; `q=user_guid:` picks one user. `/v2/users/:g/summary`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn v2_user_roles_list_users_with_cc_role_names() {
    for database in databases() {
        let harness = Harness::start(database).await;
        let admin = harness.admin_token.clone();
        let ivy = harness.issuer.add_user("ivy", "uaa");
        let jon = harness.issuer.add_user("jon", "uaa");
        let org = harness.create_org("roles-org").await;
        let space = harness.create_space(&org, "roles-space").await;
        for (role_type, username, target) in [
            ("organization_user", "ivy", ("organization", org.as_str())),
            (
                "organization_manager",
                "ivy",
                ("organization", org.as_str()),
            ),
            ("organization_user", "jon", ("organization", org.as_str())),
            (
                "organization_billing_manager",
                "jon",
                ("organization", org.as_str()),
            ),
            ("space_manager", "jon", ("space", space.as_str())),
            ("space_auditor", "jon", ("space", space.as_str())),
        ] {
            let granted = harness.grant(role_type, username, target).await;
            assert_eq!(granted.status, 201, "{:#}", granted.body);
        }
        let roles_of = |answer: &crate::support::Answer, key: &str| -> Vec<(String, Value)> {
            assert_eq!(answer.status, 200, "{:#}", answer.body);
            answer.body["resources"]
                .as_array()
                .unwrap()
                .iter()
                .map(|user| {
                    (
                        user["entity"]["username"].as_str().unwrap().to_owned(),
                        user["entity"][key].clone(),
                    )
                })
                .collect()
        };
        let org_roles = harness
            .get(&format!("/v2/organizations/{org}/user_roles"), &admin)
            .await;
        assert_eq!(
            roles_of(&org_roles, "organization_roles"),
            [
                ("ivy".to_owned(), json!(["org_user", "org_manager"])),
                ("jon".to_owned(), json!(["org_user", "billing_manager"])),
            ]
        );
        assert_eq!(
            org_roles.body["resources"][0]["metadata"]["url"],
            format!("/v2/users/{}", ivy.id)
        );
        let one = harness
            .get(
                &format!("/v2/organizations/{org}/user_roles?q=user_guid:{}", jon.id),
                &admin,
            )
            .await;
        assert_eq!(one.body["total_results"], 1, "{:#}", one.body);
        let space_roles = harness
            .get(&format!("/v2/spaces/{space}/user_roles"), &admin)
            .await;
        assert_eq!(
            roles_of(&space_roles, "space_roles"),
            [("jon".to_owned(), json!(["space_manager", "space_auditor"]))]
        );
        let missing = harness.get("/v2/spaces/nope/user_roles", &admin).await;
        assert_eq!(
            missing.body["error_code"], "CF-SpaceNotFound",
            "{:#}",
            missing.body
        );
        let outsider = harness.issuer.add_user("outsider", "uaa");
        let hidden = harness
            .get(
                &format!("/v2/organizations/{org}/user_roles"),
                &harness.issuer.user_token(&outsider),
            )
            .await;
        assert_eq!(
            hidden.body["error_code"], "CF-OrganizationNotFound",
            "{:#}",
            hidden.body
        );

        // The user summary inlines orgs (with spaces, quota and managers) and spaces by relation.
        let ivy_summary = harness
            .get(&format!("/v2/users/{}/summary", ivy.id), &admin)
            .await;
        assert_eq!(ivy_summary.status, 200, "{:#}", ivy_summary.body);
        let entity = &ivy_summary.body["entity"];
        assert_eq!(ivy_summary.body["metadata"]["guid"], ivy.id.as_str());
        let managed = &entity["managed_organizations"][0]["entity"];
        assert_eq!(managed["name"], "roles-org", "{entity:#}");
        assert_eq!(managed["spaces"][0]["entity"]["name"], "roles-space");
        assert_eq!(managed["quota_definition"]["entity"]["name"], "default");
        assert_eq!(managed["managers"][0]["metadata"]["guid"], ivy.id.as_str());
        assert_eq!(entity["organizations"].as_array().unwrap().len(), 1);
        assert_eq!(entity["audited_organizations"], json!([]));
        assert_eq!(entity["spaces"], json!([]));
        let jon_token = harness.issuer.user_token(&jon);
        let jon_summary = harness
            .get(&format!("/v2/users/{}/summary", jon.id), &jon_token)
            .await;
        assert_eq!(
            jon_summary.body["entity"]["managed_spaces"][0]["entity"],
            json!({"name": "roles-space"}),
            "{:#}",
            jon_summary.body
        );
        assert_eq!(
            jon_summary.body["entity"]["billing_managed_organizations"][0]["entity"]["name"],
            "roles-org"
        );
        let not_yours = harness
            .get(&format!("/v2/users/{}/summary", ivy.id), &jon_token)
            .await;
        assert_eq!(
            not_yours.body["error_code"], "CF-NotAuthorized",
            "{:#}",
            not_yours.body
        );
        let nobody = harness.get("/v2/users/nope/summary", &admin).await;
        assert_eq!(
            nobody.body["error_code"], "CF-UserNotFound",
            "{:#}",
            nobody.body
        );
        harness.stop().await;
    }
}

/// A space delete without `recursive=true` is refused while the space holds an app (nothing is
/// deleted); an empty space goes at once, and `recursive=true&async=true` answers a v2 job.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn v2_space_delete_needs_recursive_when_not_empty() {
    for database in databases() {
        let harness = Harness::start(database).await;
        let admin = harness.admin_token.clone();
        let org = harness.create_org("deletions").await;
        let busy = harness.create_space(&org, "busy").await;
        let empty = harness.create_space(&org, "empty").await;
        let app = harness
            .post(
                "/v3/apps",
                &admin,
                json!({"name": "stays", "relationships": {"space": {"data": {"guid": busy}}}}),
            )
            .await;
        assert_eq!(app.status, 201, "{:#}", app.body);
        let app_guid = app.body["guid"].as_str().unwrap().to_owned();

        let refused = harness.delete(&format!("/v2/spaces/{busy}"), &admin).await;
        assert_eq!(refused.status, 400, "{:#}", refused.body);
        // Kiln gives every app its web process at once, so the process is the dependent found.
        assert_eq!(
            refused.body,
            json!({"code": 10006, "description": "Please delete the processes associations for your spaces.", "error_code": "CF-AssociationNotEmpty"})
        );
        assert_eq!(
            harness
                .get(&format!("/v3/apps/{app_guid}"), &admin)
                .await
                .status,
            200
        );
        assert_eq!(
            harness
                .get(&format!("/v2/spaces/{busy}"), &admin)
                .await
                .status,
            200
        );

        let emptied = harness.delete(&format!("/v2/spaces/{empty}"), &admin).await;
        assert_eq!(emptied.status, 204, "{:#}", emptied.body);
        let recursive = harness
            .delete(
                &format!("/v2/spaces/{busy}?recursive=true&async=true"),
                &admin,
            )
            .await;
        assert_eq!(recursive.status, 202, "{:#}", recursive.body);
        let job = harness
            .get(recursive.body["metadata"]["url"].as_str().unwrap(), &admin)
            .await;
        assert_eq!(job.body["entity"]["status"], "finished", "{:#}", job.body);
        assert_eq!(
            harness
                .get(&format!("/v3/apps/{app_guid}"), &admin)
                .await
                .status,
            404
        );
        harness.stop().await;
    }
}

/// The org's related views: summary (spaces with app and service counts), instance and memory
/// usage, space quotas (none in Kiln), private domains, the deprecated domain unions, the space's
/// security groups (none in Kiln), and unsetting the (never set) isolation segments.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn v2_organization_summary_usage_and_domains() {
    for database in databases() {
        let harness = Harness::start(database).await;
        let admin = harness.admin_token.clone();
        let org = harness.create_org("summarised").await;
        let space = harness.create_space(&org, "busy").await;
        let app = harness
            .post(
                "/v3/apps",
                &admin,
                json!({"name": "idle", "relationships": {"space": {"data": {"guid": space}}}}),
            )
            .await;
        assert_eq!(app.status, 201, "{:#}", app.body);

        let summary = harness
            .get(&format!("/v2/organizations/{org}/summary"), &admin)
            .await;
        assert_eq!(summary.status, 200, "{:#}", summary.body);
        assert_eq!(
            summary.body,
            json!({"guid": org, "name": "summarised", "status": "active", "spaces": [
                {"guid": space, "name": "busy", "service_count": 0, "app_count": 1,
                 "mem_dev_total": 0, "mem_prod_total": 0},
            ]})
        );
        let instances = harness
            .get(&format!("/v2/organizations/{org}/instance_usage"), &admin)
            .await;
        assert_eq!(instances.body, json!({"instance_usage": 0}));
        let memory = harness
            .get(&format!("/v2/organizations/{org}/memory_usage"), &admin)
            .await;
        assert_eq!(memory.body, json!({"memory_usage_in_mb": 0}));
        let space_quotas = harness
            .get(
                &format!("/v2/organizations/{org}/space_quota_definitions"),
                &admin,
            )
            .await;
        assert_eq!(
            space_quotas.body,
            json!({"total_results": 0, "total_pages": 1, "prev_url": null, "next_url": null, "resources": []})
        );
        let private = harness
            .get(&format!("/v2/organizations/{org}/private_domains"), &admin)
            .await;
        assert_eq!(private.body["total_results"], 0, "{:#}", private.body);
        let domains = harness
            .get(&format!("/v2/organizations/{org}/domains"), &admin)
            .await;
        assert_eq!(
            domains.header("x-cf-warnings").unwrap(),
            "Endpoint+deprecated"
        );
        assert_eq!(
            domains.body["resources"][0]["entity"]["name"], "apps.localhost",
            "{:#}",
            domains.body
        );
        let space_domains = harness
            .get(&format!("/v2/spaces/{space}/domains"), &admin)
            .await;
        assert_eq!(
            space_domains.header("x-cf-warnings").unwrap(),
            "Endpoint+deprecated"
        );
        assert_eq!(
            space_domains.body["resources"][0]["entity"]["name"], "apps.localhost",
            "{:#}",
            space_domains.body
        );
        for relation in ["security_groups", "staging_security_groups"] {
            let groups = harness
                .get(&format!("/v2/spaces/{space}/{relation}"), &admin)
                .await;
            assert_eq!(groups.body["total_results"], 0, "{:#}", groups.body);
            let missing = harness
                .get(&format!("/v2/spaces/nope/{relation}"), &admin)
                .await;
            assert_eq!(missing.body["error_code"], "CF-SpaceNotFound", "{relation}");
        }
        let unset = harness
            .delete(
                &format!("/v2/organizations/{org}/default_isolation_segment"),
                &admin,
            )
            .await;
        assert_eq!(unset.status, 200, "{:#}", unset.body);
        assert_eq!(
            unset.body["entity"]["default_isolation_segment_guid"],
            json!(null)
        );
        let unset = harness
            .delete(&format!("/v2/spaces/{space}/isolation_segment"), &admin)
            .await;
        assert_eq!(unset.status, 200, "{:#}", unset.body);
        assert_eq!(unset.body["metadata"]["guid"], space.as_str());
        for path in [
            "summary",
            "instance_usage",
            "memory_usage",
            "private_domains",
            "domains",
            "space_quota_definitions",
        ] {
            let missing = harness
                .get(&format!("/v2/organizations/nope/{path}"), &admin)
                .await;
            assert_eq!(missing.status, 404, "{path}: {:#}", missing.body);
            assert_eq!(
                missing.body["error_code"], "CF-OrganizationNotFound",
                "{path}"
            );
        }
        harness.stop().await;
    }
}

/// `next_url` carries the parameters CC keeps (here `return_user_provided_service_instances`
/// and `inline-relations-depth`), so page 2 lists the same collection as page 1.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn v2_next_url_keeps_the_list_parameters() {
    for database in databases() {
        let harness = Harness::start(database).await;
        let admin = harness.admin_token.clone();
        let org = harness.create_org("paged").await;
        let space = harness.create_space(&org, "paged").await;
        for name in ["first", "second"] {
            let created = harness
                .post(
                    "/v2/user_provided_service_instances",
                    &admin,
                    json!({"name": name, "space_guid": space}),
                )
                .await;
            assert_eq!(created.status, 201, "{:#}", created.body);
        }
        let first = harness
            .get(
                "/v2/service_instances?return_user_provided_service_instances=true&results-per-page=1&inline-relations-depth=1",
                &admin,
            )
            .await;
        assert_eq!(v2_names(&first), ["first"]);
        let next = first.body["next_url"].as_str().unwrap().to_owned();
        assert!(
            next.contains("return_user_provided_service_instances=true")
                && next.contains("inline-relations-depth=1"),
            "{next}"
        );
        let second = harness.get(&next, &admin).await;
        assert_eq!(v2_names(&second), ["second"]);
        let previous = second.body["prev_url"].as_str().unwrap().to_owned();
        assert_eq!(v2_names(&harness.get(&previous, &admin).await), ["first"]);
        harness.stop().await;
    }
}

/// `PUT /v2/users/:g` (admin): 201 with the stored `admin` and `default_space_guid` (plus
/// `default_space_url`), shown by every user rendering; null clears the default space; deleting
/// the space (or its org) clears it too. The stored `admin` authorizes nothing: CC takes admin
/// rights from token scopes only.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn v2_user_update_admin_and_default_space() {
    for database in databases() {
        let harness = Harness::start(database).await;
        let admin = harness.admin_token.clone();
        let gail = harness.issuer.add_user("gail", "uaa");
        let gail_token = harness.issuer.user_token(&gail);
        let org = harness.create_org("home").await;
        let space = harness.create_space(&org, "desk").await;
        let created = harness
            .post("/v2/users", &admin, json!({"guid": gail.id}))
            .await;
        assert_eq!(created.status, 201, "{:#}", created.body);
        assert_eq!(created.body["entity"]["default_space_guid"], Value::Null);
        assert!(created.body["entity"].get("default_space_url").is_none());
        let user_path = format!("/v2/users/{}", gail.id);

        let updated = harness
            .put(
                &user_path,
                &admin,
                json!({"admin": true, "default_space_guid": space}),
            )
            .await;
        assert_eq!(updated.status, 201, "{:#}", updated.body);
        assert_eq!(updated.body["metadata"]["guid"], gail.id.as_str());
        assert_eq!(updated.body["entity"]["admin"], true);
        assert_eq!(updated.body["entity"]["username"], "gail");
        assert_eq!(updated.body["entity"]["default_space_guid"], space.as_str());
        assert_eq!(
            updated.body["entity"]["default_space_url"],
            format!("/v2/spaces/{space}")
        );
        let fetched = harness.get(&user_path, &admin).await;
        assert_eq!(fetched.body["entity"], updated.body["entity"]);
        let listed = harness.get("/v2/users", &admin).await;
        let gail_listed = listed.body["resources"]
            .as_array()
            .unwrap()
            .iter()
            .find(|user| user["metadata"]["guid"] == gail.id.as_str())
            .unwrap_or_else(|| panic!("gail listed: {:#}", listed.body));
        assert_eq!(gail_listed["entity"]["admin"], true);
        assert_eq!(gail_listed["entity"]["default_space_guid"], space.as_str());

        // Only the keys sent change: `admin` alone keeps the default space.
        let demoted = harness
            .put(&user_path, &admin, json!({"admin": false}))
            .await;
        assert_eq!(demoted.status, 201, "{:#}", demoted.body);
        assert_eq!(demoted.body["entity"]["admin"], false);
        assert_eq!(demoted.body["entity"]["default_space_guid"], space.as_str());
        harness
            .put(&user_path, &admin, json!({"admin": true}))
            .await;

        // The stored flag grants nothing: gail's token has no admin scope.
        assert_eq!(harness.get("/v2/users", &gail_token).await.status, 403);
        let self_promotion = harness
            .put(&user_path, &gail_token, json!({"admin": true}))
            .await;
        assert_eq!(self_promotion.status, 403, "{:#}", self_promotion.body);
        assert_eq!(self_promotion.body["error_code"], "CF-NotAuthorized");

        // Org role listings render the same stored values.
        let joined = harness
            .put(
                &format!("/v2/organizations/{org}/users/{}", gail.id),
                &admin,
                json!({}),
            )
            .await;
        assert_eq!(joined.status, 201, "{:#}", joined.body);
        let org_users = harness
            .get(&format!("/v2/organizations/{org}/users"), &admin)
            .await;
        assert_eq!(org_users.body["resources"][0]["entity"]["admin"], true);
        assert_eq!(
            org_users.body["resources"][0]["entity"]["default_space_guid"],
            space.as_str()
        );

        // Bad input answers CC's errors and changes nothing.
        let before = harness.get(&user_path, &admin).await.body;
        let unknown_space = harness
            .put(
                &user_path,
                &admin,
                json!({"admin": false, "default_space_guid": "nope"}),
            )
            .await;
        assert_eq!(
            unknown_space.body,
            json!({"code": 1002, "description": "Could not find Space with guid: nope", "error_code": "CF-InvalidRelation"})
        );
        assert_eq!(unknown_space.status, 400);
        for (body, status, error_code) in [
            ("{\"admin\":\"yes\"}", 400, "CF-MessageParseError"),
            ("{\"admin\":1}", 400, "CF-MessageParseError"),
            ("{\"default_space_guid\":5}", 400, "CF-MessageParseError"),
            ("{\"default_space_guid\":[]}", 400, "CF-MessageParseError"),
            ("{\"admin\":", 400, "CF-MessageParseError"),
            ("[]", 400, "CF-MessageParseError"),
        ] {
            let answer = harness
                .request(reqwest::Method::PUT, &user_path, Some(&admin), Some(body))
                .await;
            assert_eq!(
                (answer.status, answer.body["error_code"].as_str()),
                (status, Some(error_code)),
                "{body}: {:#}",
                answer.body
            );
        }
        let missing = harness
            .put("/v2/users/nobody", &admin, json!({"admin": true}))
            .await;
        assert_eq!(missing.status, 404);
        assert_eq!(
            missing.body,
            json!({"code": 20003, "description": "The user could not be found: nobody", "error_code": "CF-UserNotFound"})
        );
        assert_eq!(harness.get(&user_path, &admin).await.body, before);
        assert!(harness.get("/v2/users/nobody", &admin).await.status == 404);

        // null clears the default space; creating with one stores it too.
        let cleared = harness
            .put(&user_path, &admin, json!({"default_space_guid": null}))
            .await;
        assert_eq!(cleared.status, 201, "{:#}", cleared.body);
        assert_eq!(cleared.body["entity"]["default_space_guid"], Value::Null);
        assert!(cleared.body["entity"].get("default_space_url").is_none());
        assert_eq!(cleared.body["entity"]["admin"], true);
        let hank = harness
            .post(
                "/v2/users",
                &admin,
                json!({"guid": "hank-id", "admin": true, "default_space_guid": space}),
            )
            .await;
        assert_eq!(hank.status, 201, "{:#}", hank.body);
        assert_eq!(hank.body["entity"]["admin"], true);
        assert_eq!(hank.body["entity"]["default_space_guid"], space.as_str());
        let refused = harness
            .post(
                "/v2/users",
                &admin,
                json!({"guid": "ivan-id", "default_space_guid": "nope"}),
            )
            .await;
        assert_eq!(refused.body["error_code"], "CF-InvalidRelation");
        assert_eq!(harness.get("/v2/users/ivan-id", &admin).await.status, 404);

        // Deleting the space clears it (CC nullifies the space's `default_users`); so does
        // deleting a whole org.
        let deleted = harness
            .delete(&format!("/v2/spaces/{space}?recursive=true"), &admin)
            .await;
        assert_eq!(deleted.status, 204, "{:#}", deleted.body);
        let hank = harness.get("/v2/users/hank-id", &admin).await;
        assert_eq!(hank.body["entity"]["default_space_guid"], Value::Null);
        assert!(hank.body["entity"].get("default_space_url").is_none());
        assert_eq!(hank.body["entity"]["admin"], true);
        let other_space = harness.create_space(&org, "bench").await;
        let set = harness
            .put(
                &user_path,
                &admin,
                json!({"default_space_guid": other_space}),
            )
            .await;
        assert_eq!(
            set.body["entity"]["default_space_guid"],
            other_space.as_str()
        );
        let org_deleted = harness
            .delete(&format!("/v2/organizations/{org}?recursive=true"), &admin)
            .await;
        assert_eq!(org_deleted.status, 204, "{:#}", org_deleted.body);
        let gail_now = harness.get(&user_path, &admin).await;
        assert_eq!(gail_now.body["entity"]["default_space_guid"], Value::Null);
        harness.stop().await;
    }
}

/// Every per-user relation: `PUT /v2/users/:g/<rel>/:target` → 201 with the user, listed by
/// `GET /v2/users/:g/<rel>`, seen from the org/space side, and `DELETE` → 204 removes it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn v2_user_relations_add_list_and_remove() {
    for database in databases() {
        let harness = Harness::start(database).await;
        let admin = harness.admin_token.clone();
        let kim = harness.issuer.add_user("kim", "uaa");
        // The user side needs the CC user row (CC answers 404 otherwise).
        let unknown = harness
            .put(
                &format!("/v2/users/{}/spaces/whatever", kim.id),
                &admin,
                json!({}),
            )
            .await;
        assert_eq!(unknown.status, 404, "{:#}", unknown.body);
        assert_eq!(unknown.body["error_code"], "CF-UserNotFound");
        let created = harness
            .post("/v2/users", &admin, json!({"guid": kim.id}))
            .await;
        assert_eq!(created.status, 201, "{:#}", created.body);
        let org = harness.create_org("kimco").await;
        let space = harness.create_space(&org, "lab").await;
        let relations = [
            (
                "organizations",
                &org,
                format!("/v2/organizations/{org}/users"),
            ),
            (
                "managed_organizations",
                &org,
                format!("/v2/organizations/{org}/managers"),
            ),
            (
                "billing_managed_organizations",
                &org,
                format!("/v2/organizations/{org}/billing_managers"),
            ),
            (
                "audited_organizations",
                &org,
                format!("/v2/organizations/{org}/auditors"),
            ),
            ("spaces", &space, format!("/v2/spaces/{space}/developers")),
            (
                "managed_spaces",
                &space,
                format!("/v2/spaces/{space}/managers"),
            ),
            (
                "audited_spaces",
                &space,
                format!("/v2/spaces/{space}/auditors"),
            ),
        ];
        for (relation, target, other_side) in &relations {
            let path = format!("/v2/users/{}/{relation}", kim.id);
            let added = harness
                .put(&format!("{path}/{target}"), &admin, json!({}))
                .await;
            assert_eq!(added.status, 201, "{relation}: {:#}", added.body);
            assert_eq!(added.body["metadata"]["guid"], kim.id.as_str());
            let again = harness
                .put(&format!("{path}/{target}"), &admin, json!({}))
                .await;
            assert_eq!(again.status, 201, "{relation} twice: {:#}", again.body);
            let listed = harness.get(&path, &admin).await;
            assert_eq!(
                listed.body["total_results"], 1,
                "{relation}: {:#}",
                listed.body
            );
            assert_eq!(
                listed.body["resources"][0]["metadata"]["guid"],
                target.as_str()
            );
            let seen = harness.get(other_side, &admin).await;
            assert_eq!(
                seen.body["total_results"], 1,
                "{other_side}: {:#}",
                seen.body
            );
            assert_eq!(
                seen.body["resources"][0]["metadata"]["guid"],
                kim.id.as_str()
            );
        }
        // Non-admins may not add relations on the user side.
        let kim_token = harness.issuer.user_token(&kim);
        let refused = harness
            .put(
                &format!("/v2/users/{}/managed_spaces/{space}", kim.id),
                &kim_token,
                json!({}),
            )
            .await;
        assert_eq!(refused.status, 403, "{:#}", refused.body);
        // Space roles go first: the org user role cannot be dropped while they remain.
        for (relation, target, other_side) in relations.iter().rev() {
            let path = format!("/v2/users/{}/{relation}", kim.id);
            let removed = harness.delete(&format!("{path}/{target}"), &admin).await;
            assert_eq!(removed.status, 204, "{relation}: {:#}", removed.body);
            assert_eq!(harness.get(&path, &admin).await.body["total_results"], 0);
            assert_eq!(
                harness.get(other_side, &admin).await.body["total_results"],
                0
            );
        }
        assert!(v3_role_types(&harness, &kim.id).await.is_empty());
        harness.stop().await;
    }
}
