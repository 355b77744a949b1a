//! Roles of all eight types, the org-role-first rule, duplicates, listing as `cf org-users` and
//! `cf space-users` do, deletion jobs, and users.

use serde_json::json;

use crate::support::{check, databases, Harness};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn roles_of_every_type() {
    for database in databases() {
        let harness = Harness::start(database).await;
        let admin = harness.admin_token.clone();
        let carol = harness.issuer.add_user("carol", "uaa");
        let org = harness.create_org("acme").await;
        let space = harness.create_space(&org, "dev").await;

        // A space role needs an org role first.
        harness.grant("space_developer", "carol", ("space", &space)).await.assert_v3_error(
            422,
            "CF-UnprocessableEntity",
            "Users cannot be assigned roles in a space if they do not have a role in that space's organization.",
        );
        let org_user = harness
            .grant("organization_user", "carol", ("organization", &org))
            .await;
        assert_eq!(org_user.status, 201, "{:#}", org_user.body);
        check(
            &org_user.body,
            &harness.base,
            json!({
                "guid": "<guid>", "created_at": "<time>", "updated_at": "<time>", "type": "organization_user",
                "relationships": {
                    "user": {"data": {"guid": "<guid>"}},
                    "organization": {"data": {"guid": "<guid>"}},
                    "space": {"data": null},
                },
                "links": {
                    "self": {"href": "<api>/v3/roles/<guid>"},
                    "user": {"href": "<api>/v3/users/<guid>"},
                    "organization": {"href": "<api>/v3/organizations/<guid>"},
                },
            }),
        );
        assert_eq!(
            org_user.body["relationships"]["user"]["data"]["guid"],
            carol.id.as_str()
        );
        for role_type in [
            "organization_auditor",
            "organization_manager",
            "organization_billing_manager",
        ] {
            let answer = harness
                .grant(role_type, "carol", ("organization", &org))
                .await;
            assert_eq!(answer.status, 201, "{role_type}: {:#}", answer.body);
        }
        for role_type in [
            "space_developer",
            "space_auditor",
            "space_manager",
            "space_supporter",
        ] {
            let answer = harness.grant(role_type, "carol", ("space", &space)).await;
            assert_eq!(answer.status, 201, "{role_type}: {:#}", answer.body);
            assert_eq!(
                answer.body["relationships"]["space"]["data"]["guid"],
                space.as_str()
            );
            assert!(answer.body["relationships"]["organization"]["data"].is_null());
        }
        // Duplicates match the CLI's `User '.*' already has '.*' role.*`.
        harness
            .grant("organization_manager", "carol", ("organization", &org))
            .await
            .assert_v3_error(
                422,
                "CF-UnprocessableEntity",
                "User 'carol' already has 'organization_manager' role in organization 'acme'.",
            );
        harness
            .grant("space_developer", "carol", ("space", &space))
            .await
            .assert_v3_error(
                422,
                "CF-UnprocessableEntity",
                "User 'carol' already has 'space_developer' role in space 'dev'.",
            );
        // Unknown users and bad bodies.
        harness
            .grant("organization_user", "nobody", ("organization", &org))
            .await
            .assert_v3_error(
                422,
                "CF-UnprocessableEntity",
                "No user exists with the username 'nobody'.",
            );
        let with_origin = harness
            .post(
                "/v3/roles",
                &admin,
                json!({"type": "organization_user", "relationships": {
                    "user": {"data": {"username": "nobody", "origin": "ldap"}}, "organization": {"data": {"guid": org}}}}),
            )
            .await;
        with_origin.assert_v3_error(
            422,
            "CF-UnprocessableEntity",
            "No user exists with the username 'nobody' and origin 'ldap'.",
        );
        let bad_type = harness
            .post("/v3/roles", &admin, json!({"type": "overlord", "relationships": {"user": {"data": {"guid": carol.id}}, "organization": {"data": {"guid": org}}}}))
            .await;
        assert_eq!(bad_type.status, 422);

        // `cf org-users`: org roles only, with the users included.
        let org_users = harness
            .get(
                &format!("/v3/roles?organization_guids={org}&include=user"),
                &admin,
            )
            .await;
        assert_eq!(
            org_users.body["pagination"]["total_results"], 4,
            "{:#}",
            org_users.body
        );
        check(
            &org_users.body["included"]["users"][0],
            &harness.base,
            json!({
                "guid": "<guid>", "created_at": "<time>", "updated_at": "<time>",
                "username": "carol", "presentation_name": "carol", "origin": "uaa",
                "metadata": {"labels": {}, "annotations": {}},
                "links": {"self": {"href": "<api>/v3/users/<guid>"}},
            }),
        );
        // `cf space-users`.
        let space_users = harness
            .get(
                &format!("/v3/roles?space_guids={space}&include=user,space,organization"),
                &admin,
            )
            .await;
        assert_eq!(space_users.body["pagination"]["total_results"], 4);
        assert_eq!(
            space_users.body["included"]["spaces"][0]["guid"],
            space.as_str()
        );
        let filtered = harness
            .get(&format!("/v3/roles?user_guids={}&types=space_manager,organization_user&per_page=1&page=1", carol.id), &admin)
            .await;
        assert_eq!(filtered.body["pagination"]["total_results"], 2);
        // CC's RolesListMessage does not check `types` values: an unknown one matches nothing.
        // Its controller answers bad list parameters with 422, not 400.
        let unknown_type = harness.get("/v3/roles?types=overlord", &admin).await;
        assert_eq!(unknown_type.status, 200, "{:#}", unknown_type.body);
        assert_eq!(unknown_type.body["resources"], json!([]));
        for (query, detail) in [
            ("colour=red", "Unknown query parameter(s): 'colour'. Valid parameters are: 'page', 'per_page', 'order_by', 'guids', 'types', 'organization_guids', 'space_guids', 'user_guids', 'include'"),
            ("per_page=0", "Per page must be a positive integer"),
            ("order_by=type", "Order by can only be: 'created_at', 'updated_at'"),
            ("include=app", "Invalid included resource: 'app'. Valid included resources are: 'user', 'space', 'organization'"),
            ("include=user,space,user", "Duplicate included resource: 'user'"),
        ] {
            harness
                .get(&format!("/v3/roles?{query}"), &admin)
                .await
                .assert_v3_error(422, "CF-UnprocessableEntity", detail);
        }

        // The org_user role cannot go while space roles remain; space roles go as jobs.
        let org_user_guid = org_user.body["guid"].as_str().unwrap();
        harness.delete(&format!("/v3/roles/{org_user_guid}"), &admin).await.assert_v3_error(
            422,
            "CF-UnprocessableEntity",
            "Cannot delete organization_user role while user has roles in spaces in that organization.",
        );
        for role in space_users.body["resources"].as_array().unwrap() {
            let deleted = harness
                .delete(
                    &format!("/v3/roles/{}", role["guid"].as_str().unwrap()),
                    &admin,
                )
                .await;
            assert_eq!(deleted.status, 202);
            let job = harness
                .wait_job(&deleted.header("location").unwrap(), &admin)
                .await;
            assert_eq!(job["state"], "COMPLETE");
        }
        let deleted = harness
            .delete(&format!("/v3/roles/{org_user_guid}"), &admin)
            .await;
        assert_eq!(deleted.status, 202);
        harness
            .get(&format!("/v3/roles/{org_user_guid}"), &admin)
            .await
            .assert_v3_error(404, "CF-ResourceNotFound", "Role not found");
        harness.stop().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn role_management_permissions() {
    for database in databases() {
        let harness = Harness::start(database).await;
        let manager = harness.issuer.add_user("manager", "uaa");
        let dave = harness.issuer.add_user("dave", "uaa");
        let manager_token = harness.issuer.user_token(&manager);
        let dave_token = harness.issuer.user_token(&dave);
        let org = harness.create_org("acme").await;
        let space = harness.create_space(&org, "dev").await;
        assert_eq!(
            harness
                .grant("organization_manager", "manager", ("organization", &org))
                .await
                .status,
            201
        );
        // An org manager manages org and space roles, even for users the CC has not seen yet.
        let by_manager = harness
            .post(
                "/v3/roles",
                &manager_token,
                json!({"type": "organization_user", "relationships": {"user": {"data": {"username": "dave", "origin": "uaa"}}, "organization": {"data": {"guid": org}}}}),
            )
            .await;
        assert_eq!(by_manager.status, 201, "{:#}", by_manager.body);
        let dev = harness
            .post(
                "/v3/roles",
                &manager_token,
                json!({"type": "space_developer", "relationships": {"user": {"data": {"guid": dave.id}}, "space": {"data": {"guid": space}}}}),
            )
            .await;
        assert_eq!(dev.status, 201, "{:#}", dev.body);
        // A developer may not hand out roles.
        harness
            .post(
                "/v3/roles",
                &dave_token,
                json!({"type": "space_auditor", "relationships": {"user": {"data": {"guid": dave.id}}, "space": {"data": {"guid": space}}}}),
            )
            .await
            .assert_v3_error(403, "CF-NotAuthorized", "You are not authorized to perform the requested action");
        harness.stop().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn users_endpoints() {
    for database in databases() {
        let harness = Harness::start(database).await;
        let admin = harness.admin_token.clone();
        let erin = harness.issuer.add_user("erin", "uaa");
        let created = harness
            .post("/v3/users", &admin, json!({"guid": erin.id}))
            .await;
        assert_eq!(created.status, 201, "{:#}", created.body);
        assert_eq!(created.body["username"], "erin");
        assert_eq!(created.body["presentation_name"], "erin");
        assert_eq!(created.body["origin"], "uaa");
        harness
            .post("/v3/users", &admin, json!({"guid": erin.id}))
            .await
            .assert_v3_error(
                422,
                "CF-UnprocessableEntity",
                &format!("User with guid '{}' already exists.", erin.id),
            );
        let erin_token = harness.issuer.user_token(&erin);
        harness
            .post("/v3/users", &erin_token, json!({"guid": "someone"}))
            .await
            .assert_v3_error(
                403,
                "CF-NotAuthorized",
                "You are not authorized to perform the requested action",
            );
        harness
            .get("/v3/users/no-such-user", &admin)
            .await
            .assert_v3_error(404, "CF-ResourceNotFound", "User not found");
        let by_name = harness
            .get("/v3/users?usernames=erin&origins=uaa", &admin)
            .await;
        assert_eq!(by_name.body["resources"][0]["guid"], erin.id.as_str());
        // CC's UsersListMessage: `partial_usernames` (case-insensitive, as UAA's `co`), and
        // `origins` only together with a username filter.
        let erik = harness.issuer.add_user("erik", "ldap");
        let erik_row = harness
            .post("/v3/users", &admin, json!({"guid": erik.id}))
            .await;
        assert_eq!(erik_row.status, 201, "{:#}", erik_row.body);
        let partial = harness
            .get(
                "/v3/users?partial_usernames=ER&order_by=-created_at",
                &admin,
            )
            .await;
        assert_eq!(partial.status, 200, "{:#}", partial.body);
        let usernames: Vec<&str> = partial.body["resources"]
            .as_array()
            .unwrap()
            .iter()
            .map(|user| user["username"].as_str().unwrap())
            .collect();
        assert_eq!(usernames, ["erik", "erin"]);
        let upper = harness.get("/v3/users?usernames=ERIN", &admin).await;
        assert_eq!(upper.body["resources"][0]["guid"], erin.id.as_str());
        let partial_ldap = harness
            .get("/v3/users?partial_usernames=er&origins=ldap", &admin)
            .await;
        assert_eq!(partial_ldap.body["pagination"]["total_results"], 1);
        assert_eq!(partial_ldap.body["resources"][0]["username"], "erik");
        for (query, detail) in [
            ("origins=uaa", "Origins filter cannot be provided without usernames or partial_usernames filter."),
            ("usernames=erin&partial_usernames=er", "Usernames filter cannot be provided with both usernames and partial_usernames filter."),
            ("per_page=5001", "Per page must be between 1 and 5000"),
            ("order_by=username", "Order by can only be: 'created_at', 'updated_at'"),
        ] {
            harness
                .get(&format!("/v3/users?{query}"), &admin)
                .await
                .assert_v3_error(422, "CF-UnprocessableEntity", detail);
        }
        harness
            .post("/v3/users", &admin, json!({"guid": "g".repeat(201)}))
            .await
            .assert_v3_error(
                422,
                "CF-UnprocessableEntity",
                "Guid must be between 1 and 200 characters",
            );
        // A plain user sees only themself until they share an org.
        let seen = harness.get("/v3/users", &erin_token).await;
        assert_eq!(
            seen.body["pagination"]["total_results"], 1,
            "{:#}",
            seen.body
        );
        let deleted = harness
            .delete(&format!("/v3/users/{}", erin.id), &admin)
            .await;
        assert_eq!(deleted.status, 202);
        let job = harness
            .wait_job(&deleted.header("location").unwrap(), &admin)
            .await;
        assert_eq!(job["state"], "COMPLETE");
        harness.stop().await;
    }
}

/// What each of CC's eight roles may see and do in its org and space (CC's `Permissions`):
/// readers get 200, a resource the user cannot see is 404, a visible one they may not change
/// is 403; org managers (and space managers for their space) manage the space and its roles.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn permission_matrix_of_the_eight_roles() {
    for database in databases() {
        let harness = Harness::start(database).await;
        let admin = harness.admin_token.clone();
        let other_org = harness.create_org("elsewhere").await;
        let other_space = harness.create_space(&other_org, "hidden").await;
        // Someone with no role at all sees no org, space or role, and only themself as a user.
        let nobody = harness.issuer.add_user("nobody", "uaa");
        let nobody_token = harness.issuer.user_token(&nobody);
        for (path, total) in [
            ("/v3/organizations", 0),
            ("/v3/spaces", 0),
            ("/v3/roles", 0),
            ("/v3/users", 1),
            ("/v3/organization_quotas", 1),
            ("/v3/stacks", 1),
            ("/v3/domains", 1),
            ("/v3/feature_flags?per_page=1", 1),
        ] {
            let listed = harness.get(path, &nobody_token).await;
            assert_eq!(listed.status, 200, "{path}: {:#}", listed.body);
            assert_eq!(
                listed.body["resources"].as_array().map(Vec::len),
                Some(total),
                "{path}: {:#}",
                listed.body
            );
        }
        let quota = harness.get("/v3/organization_quotas", &nobody_token).await;
        assert_eq!(
            quota.body["resources"][0]["relationships"]["organizations"]["data"],
            json!([])
        );

        // (role, sees the space, manages the org, manages the space)
        let matrix = [
            ("organization_user", false, false, false),
            ("organization_auditor", false, false, false),
            ("organization_billing_manager", false, false, false),
            ("organization_manager", true, true, true),
            ("space_developer", true, false, false),
            ("space_auditor", true, false, false),
            ("space_supporter", true, false, false),
            ("space_manager", true, false, true),
        ];
        for (index, (role, sees_space, manages_org, manages_space)) in
            matrix.into_iter().enumerate()
        {
            let label = format!("{} {role}", harness.database.label());
            let org = harness.create_org(&format!("org-{index}")).await;
            let space = harness.create_space(&org, "dev").await;
            let holder = harness.issuer.add_user(&format!("holder-{index}"), "uaa");
            let token = harness.issuer.user_token(&holder);
            let target = harness.issuer.add_user(&format!("target-{index}"), "uaa");
            assert_eq!(
                harness
                    .grant(
                        "organization_user",
                        &target.username,
                        ("organization", &org)
                    )
                    .await
                    .status,
                201
            );
            if role.starts_with("space_") {
                assert_eq!(
                    harness
                        .grant(
                            "organization_user",
                            &holder.username,
                            ("organization", &org)
                        )
                        .await
                        .status,
                    201
                );
                assert_eq!(
                    harness
                        .grant(role, &holder.username, ("space", &space))
                        .await
                        .status,
                    201,
                    "{label}"
                );
            } else {
                assert_eq!(
                    harness
                        .grant(role, &holder.username, ("organization", &org))
                        .await
                        .status,
                    201,
                    "{label}"
                );
            }
            let expect = |allowed: bool, yes: u16, no: u16| if allowed { yes } else { no };
            let status = |answer: crate::support::Answer| answer.status;

            assert_eq!(
                status(
                    harness
                        .get(&format!("/v3/organizations/{org}"), &token)
                        .await
                ),
                200,
                "{label}"
            );
            let orgs = harness.get("/v3/organizations", &token).await;
            assert_eq!(
                orgs.body["pagination"]["total_results"], 1,
                "{label}: {:#}",
                orgs.body
            );
            assert_eq!(
                status(harness.get(&format!("/v3/spaces/{space}"), &token).await),
                expect(sees_space, 200, 404),
                "{label}"
            );
            let spaces = harness.get("/v3/spaces", &token).await;
            assert_eq!(
                spaces.body["pagination"]["total_results"],
                u64::from(sees_space),
                "{label}"
            );
            // Someone else's org and space: invisible, so 404 whatever the method.
            for (method, path) in [
                (
                    reqwest::Method::GET,
                    format!("/v3/organizations/{other_org}"),
                ),
                (
                    reqwest::Method::PATCH,
                    format!("/v3/organizations/{other_org}"),
                ),
                (
                    reqwest::Method::DELETE,
                    format!("/v3/organizations/{other_org}"),
                ),
                (reqwest::Method::GET, format!("/v3/spaces/{other_space}")),
                (reqwest::Method::PATCH, format!("/v3/spaces/{other_space}")),
                (reqwest::Method::DELETE, format!("/v3/spaces/{other_space}")),
            ] {
                // An invalid body too: visibility is decided first, as in CC.
                let answer = harness
                    .request(method.clone(), &path, Some(&token), Some(r#"{"name": 7}"#))
                    .await;
                assert_eq!(
                    answer.status, 404,
                    "{label} {method} {path}: {:#}",
                    answer.body
                );
            }

            let renamed = harness
                .patch(
                    &format!("/v3/organizations/{org}"),
                    &token,
                    json!({"name": format!("org-{index}-renamed")}),
                )
                .await;
            assert_eq!(
                renamed.status,
                expect(manages_org, 200, 403),
                "{label}: {:#}",
                renamed.body
            );
            let bad_rename = harness
                .patch(
                    &format!("/v3/organizations/{org}"),
                    &token,
                    json!({"name": 7}),
                )
                .await;
            assert_eq!(bad_rename.status, expect(manages_org, 422, 403), "{label}");
            let created = harness.post("/v3/spaces", &token, json!({"name": "extra", "relationships": {"organization": {"data": {"guid": org}}}})).await;
            assert_eq!(
                created.status,
                expect(manages_org, 201, 403),
                "{label}: {:#}",
                created.body
            );
            let space_rename = harness
                .patch(
                    &format!("/v3/spaces/{space}"),
                    &token,
                    json!({"name": "dev2"}),
                )
                .await;
            let space_write = if sees_space {
                expect(manages_space, 200, 403)
            } else {
                404
            };
            assert_eq!(
                space_rename.status, space_write,
                "{label}: {:#}",
                space_rename.body
            );

            // Roles: org roles by org managers, space roles by org and space managers. A target
            // that exists is 403 for anyone else, whether or not they can see it.
            let org_role = harness.post("/v3/roles", &token, json!({"type": "organization_auditor", "relationships": {"user": {"data": {"guid": target.id}}, "organization": {"data": {"guid": org}}}})).await;
            assert_eq!(
                org_role.status,
                expect(manages_org, 201, 403),
                "{label}: {:#}",
                org_role.body
            );
            let space_role = harness.post("/v3/roles", &token, json!({"type": "space_auditor", "relationships": {"user": {"data": {"guid": target.id}}, "space": {"data": {"guid": space}}}})).await;
            assert_eq!(
                space_role.status,
                expect(manages_space, 201, 403),
                "{label}: {:#}",
                space_role.body
            );
            harness
                .post("/v3/roles", &token, json!({"type": "organization_auditor", "relationships": {"user": {"data": {"guid": target.id}}, "organization": {"data": {"guid": other_org}}}}))
                .await
                .assert_v3_error(403, "CF-NotAuthorized", "You are not authorized to perform the requested action");
            harness
                .post("/v3/roles", &token, json!({"type": "space_auditor", "relationships": {"user": {"data": {"guid": target.id}}, "space": {"data": {"guid": other_space}}}}))
                .await
                .assert_v3_error(403, "CF-NotAuthorized", "You are not authorized to perform the requested action");

            // Deleting someone else's roles: org roles by org managers (everyone here sees
            // them), space roles by org and space managers (404 for those who cannot see them).
            let billing = harness
                .grant(
                    "organization_billing_manager",
                    &target.username,
                    ("organization", &org),
                )
                .await;
            let billing = billing.body["guid"].as_str().unwrap().to_owned();
            let developer = harness
                .grant("space_developer", &target.username, ("space", &space))
                .await;
            let developer = developer.body["guid"].as_str().unwrap().to_owned();
            let removed = harness
                .delete(&format!("/v3/roles/{billing}"), &token)
                .await;
            assert_eq!(
                removed.status,
                expect(manages_org, 202, 403),
                "{label}: {:#}",
                removed.body
            );
            let removed = harness
                .delete(&format!("/v3/roles/{developer}"), &token)
                .await;
            let space_role_delete = if sees_space {
                expect(manages_space, 202, 403)
            } else {
                404
            };
            assert_eq!(
                removed.status, space_role_delete,
                "{label}: {:#}",
                removed.body
            );

            // Space deletion is for org managers; a space role holder sees it but may not.
            let deleted = harness.delete(&format!("/v3/spaces/{space}"), &token).await;
            let delete_status = if sees_space {
                expect(manages_org, 202, 403)
            } else {
                404
            };
            assert_eq!(deleted.status, delete_status, "{label}: {:#}", deleted.body);
            assert_eq!(
                status(
                    harness
                        .delete(&format!("/v3/organizations/{org}"), &token)
                        .await
                ),
                403,
                "{label}"
            );
            assert_eq!(
                status(
                    harness
                        .get(&format!("/v3/organizations/{org}"), &admin)
                        .await
                ),
                200,
                "{label}"
            );
        }
        harness.stop().await;
    }
}

/// A suspended org is read-only for everyone but admins: CC's 403 `CF-OrgSuspended` after the
/// role check, for the org, its spaces and its roles.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn suspended_orgs_are_read_only_for_non_admins() {
    for database in databases() {
        let harness = Harness::start(database).await;
        let admin = harness.admin_token.clone();
        let org = harness.create_org("frozen").await;
        let space = harness.create_space(&org, "dev").await;
        let manager = harness.issuer.add_user("manager", "uaa");
        let manager_token = harness.issuer.user_token(&manager);
        harness.issuer.add_user("dev", "uaa");
        assert_eq!(
            harness
                .grant("organization_manager", "manager", ("organization", &org))
                .await
                .status,
            201
        );
        let dev_role = harness
            .grant("organization_user", "dev", ("organization", &org))
            .await;
        assert_eq!(dev_role.status, 201);
        let dev_role = dev_role.body["guid"].as_str().unwrap().to_owned();

        // Only admins suspend (CC: suspended_by_non_admin? is 403); `false` is a no-op.
        let unchanged = harness
            .patch(
                &format!("/v3/organizations/{org}"),
                &manager_token,
                json!({"suspended": false}),
            )
            .await;
        assert_eq!(unchanged.status, 200, "{:#}", unchanged.body);
        assert_eq!(unchanged.body["suspended"], false);
        harness
            .patch(
                &format!("/v3/organizations/{org}"),
                &manager_token,
                json!({"suspended": true}),
            )
            .await
            .assert_v3_error(
                403,
                "CF-NotAuthorized",
                "You are not authorized to perform the requested action",
            );
        let suspended = harness
            .patch(
                &format!("/v3/organizations/{org}"),
                &admin,
                json!({"suspended": true}),
            )
            .await;
        assert_eq!(suspended.status, 200, "{:#}", suspended.body);
        assert_eq!(suspended.body["suspended"], true);

        let read = harness
            .get(&format!("/v3/organizations/{org}"), &manager_token)
            .await;
        assert_eq!(read.status, 200);
        assert_eq!(read.body["suspended"], true);
        assert_eq!(
            harness
                .get(&format!("/v3/spaces/{space}"), &manager_token)
                .await
                .status,
            200
        );
        let frozen = |answer: crate::support::Answer| {
            answer.assert_v3_error(403, "CF-OrgSuspended", "The organization is suspended");
            assert_eq!(answer.body["errors"][0]["code"], 10017);
        };
        frozen(
            harness
                .patch(
                    &format!("/v3/organizations/{org}"),
                    &manager_token,
                    json!({"name": "thawed"}),
                )
                .await,
        );
        frozen(harness.post("/v3/spaces", &manager_token, json!({"name": "new", "relationships": {"organization": {"data": {"guid": org}}}})).await);
        frozen(
            harness
                .patch(
                    &format!("/v3/spaces/{space}"),
                    &manager_token,
                    json!({"name": "renamed"}),
                )
                .await,
        );
        frozen(
            harness
                .delete(&format!("/v3/spaces/{space}"), &manager_token)
                .await,
        );
        frozen(harness.post("/v3/roles", &manager_token, json!({"type": "space_developer", "relationships": {"user": {"data": {"username": "dev"}}, "space": {"data": {"guid": space}}}})).await);
        frozen(
            harness
                .delete(&format!("/v3/roles/{dev_role}"), &manager_token)
                .await,
        );

        // Space developers cannot push into it either (CC's "active space" for app writes).
        let developer = harness.issuer.add_user("pusher", "uaa");
        let developer_token = harness.issuer.user_token(&developer);
        let app_body =
            json!({"name": "web", "relationships": {"space": {"data": {"guid": space}}}});
        harness
            .post("/v3/roles", &admin, json!({"type": "organization_user", "relationships": {"user": {"data": {"guid": developer.id}}, "organization": {"data": {"guid": org}}}}))
            .await;
        let granted = harness
            .post("/v3/roles", &admin, json!({"type": "space_developer", "relationships": {"user": {"data": {"guid": developer.id}}, "space": {"data": {"guid": space}}}}))
            .await;
        assert_eq!(granted.status, 201, "{:#}", granted.body);
        let pushed = harness
            .post("/v3/apps", &developer_token, app_body.clone())
            .await;
        assert_eq!(pushed.status, 403, "{:#}", pushed.body);
        assert_eq!(
            harness
                .get(&format!("/v3/spaces/{space}"), &developer_token)
                .await
                .status,
            200
        );

        // Admins still change it, and unsuspending gives the managers their org back.
        let by_admin = harness
            .post(
                "/v3/spaces",
                &admin,
                json!({"name": "new", "relationships": {"organization": {"data": {"guid": org}}}}),
            )
            .await;
        assert_eq!(by_admin.status, 201, "{:#}", by_admin.body);
        assert_eq!(
            harness
                .patch(
                    &format!("/v3/organizations/{org}"),
                    &admin,
                    json!({"suspended": false})
                )
                .await
                .status,
            200
        );
        let renamed = harness
            .patch(
                &format!("/v3/spaces/{space}"),
                &manager_token,
                json!({"name": "renamed"}),
            )
            .await;
        assert_eq!(renamed.status, 200, "{:#}", renamed.body);
        let pushed = harness.post("/v3/apps", &developer_token, app_body).await;
        assert_eq!(pushed.status, 201, "{:#}", pushed.body);
        harness.stop().await;
    }
}

/// Global auditors and read-only admins (token scopes, no roles) read every org, space, role
/// and user, and change nothing: a resource they can see is 403 to change, never 404.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn platform_readers_see_everything_and_change_nothing() {
    for database in databases() {
        let harness = Harness::start(database).await;
        let admin = harness.admin_token.clone();
        let org = harness.create_org("acme").await;
        let space = harness.create_space(&org, "dev").await;
        harness.issuer.add_user("carol", "uaa");
        let role = harness
            .grant("organization_user", "carol", ("organization", &org))
            .await;
        let role = role.body["guid"].as_str().unwrap().to_owned();
        for (index, scope) in [
            "cloud_controller.global_auditor",
            "cloud_controller.admin_read_only",
        ]
        .into_iter()
        .enumerate()
        {
            let reader = harness.issuer.add_user(&format!("reader-{scope}"), "uaa");
            let token = harness.issuer.token_for(
                &reader,
                &harness
                    .issuer
                    .spec(&["cloud_controller.read", "cloud_controller.write", scope]),
            );
            for path in [
                format!("/v3/organizations/{org}"),
                format!("/v3/spaces/{space}"),
                format!("/v3/roles/{role}"),
                "/v3/feature_flags/user_org_creation".to_owned(),
            ] {
                assert_eq!(
                    harness.get(&path, &token).await.status,
                    200,
                    "{scope} {path}"
                );
            }
            // Users: admin, carol and each reader so far.
            for (path, total) in [
                ("/v3/organizations", 1),
                ("/v3/spaces", 1),
                ("/v3/roles", 1),
                ("/v3/users", 3 + index),
            ] {
                let listed = harness.get(path, &token).await;
                assert_eq!(
                    listed.body["pagination"]["total_results"], total,
                    "{scope} {path}: {:#}",
                    listed.body
                );
            }
            for answer in [
                harness.patch(&format!("/v3/organizations/{org}"), &token, json!({"name": "mine"})).await,
                harness.delete(&format!("/v3/organizations/{org}"), &token).await,
                harness.patch(&format!("/v3/spaces/{space}"), &token, json!({"name": "mine"})).await,
                harness.delete(&format!("/v3/spaces/{space}"), &token).await,
                harness.post("/v3/spaces", &token, json!({"name": "more", "relationships": {"organization": {"data": {"guid": org}}}})).await,
                harness.post("/v3/organizations", &token, json!({"name": "theirs"})).await,
                harness.delete(&format!("/v3/roles/{role}"), &token).await,
                harness.post("/v3/roles", &token, json!({"type": "organization_auditor", "relationships": {"user": {"data": {"username": "carol"}}, "organization": {"data": {"guid": org}}}})).await,
                harness.patch("/v3/feature_flags/user_org_creation", &token, json!({"enabled": true})).await,
                harness.post("/v3/users", &token, json!({"guid": "someone"})).await,
            ] {
                answer.assert_v3_error(403, "CF-NotAuthorized", "You are not authorized to perform the requested action");
            }
        }
        let flags = harness
            .get("/v3/feature_flags/user_org_creation", &admin)
            .await;
        assert_eq!(flags.body["enabled"], false);
        harness.stop().await;
    }
}

/// `PATCH /v3/feature_flags/:name` by an admin turns a flag off with a custom message, which
/// is what a refused caller then reads ("Feature Disabled: <message>"); admins skip the flags
/// CC lets them skip; everyone may read flags; unknown flags are "Feature flag not found".
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn feature_flags_gate_with_their_custom_messages() {
    for database in databases() {
        let harness = Harness::start(database).await;
        let admin = harness.admin_token.clone();
        let org = harness.create_org("acme").await;
        let manager = harness.issuer.add_user("manager", "uaa");
        let manager_token = harness.issuer.user_token(&manager);
        let carol = harness.issuer.add_user("carol", "uaa");
        assert_eq!(
            harness
                .grant("organization_manager", "manager", ("organization", &org))
                .await
                .status,
            201
        );
        let by_name = |role: &str| json!({"type": role, "relationships": {"user": {"data": {"username": "carol"}}, "organization": {"data": {"guid": org}}}});

        let flag = harness
            .patch(
                "/v3/feature_flags/set_roles_by_username",
                &admin,
                json!({"enabled": false, "custom_error_message": "Ask the platform team"}),
            )
            .await;
        assert_eq!(flag.status, 200, "{:#}", flag.body);
        check(
            &flag.body,
            &harness.base,
            json!({
                "name": "set_roles_by_username", "enabled": false, "updated_at": "<time>",
                "custom_error_message": "Ask the platform team",
                "links": {"self": {"href": "<api>/v3/feature_flags/set_roles_by_username"}},
            }),
        );
        let read = harness
            .get("/v3/feature_flags/set_roles_by_username", &manager_token)
            .await;
        assert_eq!(read.body, flag.body);
        harness
            .post("/v3/roles", &manager_token, by_name("organization_auditor"))
            .await
            .assert_v3_error(
                403,
                "CF-FeatureDisabled",
                "Feature Disabled: Ask the platform team",
            );
        // By GUID the flag does not apply; admins skip it.
        let by_guid = harness
            .post("/v3/roles", &manager_token, json!({"type": "organization_auditor", "relationships": {"user": {"data": {"guid": carol.id}}, "organization": {"data": {"guid": org}}}}))
            .await;
        assert_eq!(by_guid.status, 201, "{:#}", by_guid.body);
        assert_eq!(
            harness
                .post("/v3/roles", &admin, by_name("organization_user"))
                .await
                .status,
            201
        );

        // Clearing the message falls back to the flag's name; the flag only changes once.
        let cleared = harness
            .patch(
                "/v3/feature_flags/set_roles_by_username",
                &admin,
                json!({"custom_error_message": null}),
            )
            .await;
        assert_eq!(cleared.body["custom_error_message"], json!(null));
        assert_eq!(cleared.body["enabled"], false);
        harness
            .post(
                "/v3/roles",
                &manager_token,
                by_name("organization_billing_manager"),
            )
            .await
            .assert_v3_error(
                403,
                "CF-FeatureDisabled",
                "Feature Disabled: set_roles_by_username",
            );
        let enabled = harness
            .patch(
                "/v3/feature_flags/set_roles_by_username",
                &admin,
                json!({"enabled": true}),
            )
            .await;
        assert_eq!(enabled.body["enabled"], true);
        assert_eq!(
            harness
                .post(
                    "/v3/roles",
                    &manager_token,
                    by_name("organization_billing_manager")
                )
                .await
                .status,
            201
        );

        // Everyone reads the list, ordered by name; unknown flags are 404 to everyone.
        let listed = harness.get("/v3/feature_flags", &manager_token).await;
        assert_eq!(listed.status, 200);
        assert_eq!(listed.body["resources"][0]["name"], "app_bits_upload");
        for token in [&admin, &manager_token] {
            harness
                .get("/v3/feature_flags/no_such_flag", token)
                .await
                .assert_v3_error(404, "CF-ResourceNotFound", "Feature flag not found");
        }
        // A non-admin is refused before the body is read; an unknown flag before either.
        harness
            .patch(
                "/v3/feature_flags/user_org_creation",
                &manager_token,
                json!({"enabled": "yes"}),
            )
            .await
            .assert_v3_error(
                403,
                "CF-NotAuthorized",
                "You are not authorized to perform the requested action",
            );
        harness
            .patch(
                "/v3/feature_flags/no_such_flag",
                &manager_token,
                json!({"enabled": "yes"}),
            )
            .await
            .assert_v3_error(404, "CF-ResourceNotFound", "Feature flag not found");
        harness.stop().await;
    }
}

/// Roles by username resolve through UAA as CC's RolesController does: an ambiguous name needs
/// an origin, an unknown one is 422 (worded for space roles as the org-role-first rule), and
/// the CC user row is created with UAA's username and origin.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn usernames_resolve_through_uaa_as_cc_does() {
    for database in databases() {
        let harness = Harness::start(database).await;
        let admin = harness.admin_token.clone();
        let org = harness.create_org("acme").await;
        let space = harness.create_space(&org, "dev").await;
        harness.issuer.add_user("sam", "uaa");
        let ldap_sam = harness.issuer.add_user("sam", "ldap");
        let by_name = |origin: Option<&str>, role: &str, target: (&str, &str)| {
            let mut user = json!({"username": "sam"});
            if let Some(origin) = origin {
                user["origin"] = json!(origin);
            }
            json!({"type": role, "relationships": {"user": {"data": user}, target.0: {"data": {"guid": target.1}}}})
        };
        harness
            .post("/v3/roles", &admin, by_name(None, "organization_user", ("organization", &org)))
            .await
            .assert_v3_error(
                422,
                "CF-UnprocessableEntity",
                "Ambiguous user. User with username 'sam' exists in the following origins: ldap, uaa. Specify an origin to disambiguate.",
            );
        let created = harness
            .post(
                "/v3/roles",
                &admin,
                by_name(Some("ldap"), "organization_user", ("organization", &org)),
            )
            .await;
        assert_eq!(created.status, 201, "{:#}", created.body);
        assert_eq!(
            created.body["relationships"]["user"]["data"]["guid"],
            ldap_sam.id.as_str()
        );
        let user = harness
            .get(&format!("/v3/users/{}", ldap_sam.id), &admin)
            .await;
        assert_eq!(user.body["username"], "sam");
        assert_eq!(user.body["origin"], "ldap");
        let space_role = harness
            .post(
                "/v3/roles",
                &admin,
                by_name(Some("ldap"), "space_developer", ("space", &space)),
            )
            .await;
        assert_eq!(space_role.status, 201, "{:#}", space_role.body);
        // The uaa-origin sam has no org role, so no space role either.
        harness
            .post("/v3/roles", &admin, by_name(Some("uaa"), "space_developer", ("space", &space)))
            .await
            .assert_v3_error(
                422,
                "CF-UnprocessableEntity",
                "Users cannot be assigned roles in a space if they do not have a role in that space's organization.",
            );
        harness
            .post("/v3/roles", &admin, json!({"type": "space_auditor", "relationships": {"user": {"data": {"username": "ghost"}}, "space": {"data": {"guid": space}}}}))
            .await
            .assert_v3_error(
                422,
                "CF-UnprocessableEntity",
                "Users cannot be assigned roles in a space if they do not have a role in that space's organization.",
            );
        harness.stop().await;
    }
}
