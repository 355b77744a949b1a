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
        harness
            .get("/v3/roles?types=overlord", &admin)
            .await
            .assert_v3_error(
                400,
                "CF-BadQueryParameter",
                "The query parameter is invalid: Types has an invalid value: 'overlord'",
            );

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
