//! The foundation story through the cf CLI v6.53, the last cf CLI that speaks the v2 API: older
//! clients log in, manage orgs, spaces, users, roles, feature flags and quotas over `/v2`.

use std::path::PathBuf;

use cats::unique_name;

use crate::{session, shared_platform};

/// The cf CLI v6 binary, or `None` when it is missing and not required (the scenario then skips).
fn cf6_binary() -> Option<PathBuf> {
    match cats::find_cf6() {
        Some(path) => Some(path),
        None if cats::cf_is_required() => panic!(
            "the cf CLI v6 is required (KILN_REQUIRE_CF=1) but was not found on PATH as `cf6` or in \
             CF6_CLI (scripts/install-cf6 builds it)"
        ),
        None => {
            eprintln!("skipping: the cf CLI v6 is not installed (run scripts/install-cf6)");
            None
        }
    }
}

#[test]
fn the_foundation_story_with_the_v2_cli() {
    let Some(cf6) = cf6_binary() else { return };
    let platform = shared_platform();
    let api = &platform.options.api;
    let admin_user = &platform.options.admin_user;
    let (org, space, renamed_org, renamed_space, erin, other_org) = (
        unique_name("v2org"),
        unique_name("v2space"),
        unique_name("v2org-renamed"),
        unique_name("v2space-renamed"),
        unique_name("erin"),
        unique_name("v2other"),
    );

    let admin = session(&cf6, platform);
    admin.run(&["version"]).success().contains("version 6.53");
    admin
        .run(&[
            "login",
            "-a",
            api,
            "-u",
            admin_user,
            "-p",
            &platform.options.admin_password,
        ])
        .success()
        .contains("Authenticating...")
        .contains("(API version: 2.");
    admin
        .run(&["create-org", &org])
        .success()
        .contains(&format!("Creating org {org} as {admin_user}..."))
        .contains(&format!(
            "Assigning role OrgManager to user {admin_user} in org {org}..."
        ));
    admin
        .run(&["create-org", &org])
        .success()
        .contains(&format!("Org {org} already exists."));
    admin.run(&["create-org", &other_org]).success();
    admin
        .run(&["create-space", &space, "-o", &org])
        .success()
        .contains(&format!(
            "Creating space {space} in org {org} as {admin_user}..."
        ));
    admin
        .run(&["create-space", &space, "-o", &org])
        .success()
        .contains(&format!("Space {space} already exists"));
    admin
        .run(&["target", "-o", &org, "-s", &space])
        .success()
        .has_line(&format!("org:            {org}"))
        .has_line(&format!("space:          {space}"));
    admin
        .run(&["orgs"])
        .success()
        .has_line(&org)
        .has_line(&other_org);
    admin.run(&["spaces"]).success().has_line(&space);
    admin
        .run(&["org", &org])
        .success()
        .has_line_starting("domains:")
        .has_line_starting("quota:")
        .contains(&space);
    admin
        .run(&["space", &space])
        .success()
        .has_line_starting("org:")
        .has_line_starting("apps:")
        .contains(&org);
    admin.run(&["apps"]).success().contains("No apps found");

    admin
        .run(&["create-user", &erin, "pa55word"])
        .success()
        .contains(&format!("Creating user {erin}..."));
    admin
        .run(&["set-org-role", &erin, &org, "OrgManager"])
        .success()
        .contains(&format!(
            "Assigning role OrgManager to user {erin} in org {org} as {admin_user}..."
        ));
    admin
        .run(&["set-space-role", &erin, &org, &space, "SpaceDeveloper"])
        .success()
        .contains("OK");
    admin
        .run(&["org-users", &org])
        .success()
        .has_line("ORG MANAGER")
        .has_line(&format!("  {erin}"));
    admin
        .run(&["space-users", &org, &space])
        .success()
        .has_line("SPACE DEVELOPER")
        .has_line(&format!("  {erin}"));
    let nobody = unique_name("nobody");
    admin
        .run(&["set-org-role", &nobody, &org, "OrgAuditor"])
        .failure()
        .contains(&format!(
            "error code: 20003, message: The user could not be found: {nobody}"
        ));

    // Erin sees her org only, may not create one, and cannot reach another.
    let as_erin = session(&cf6, platform);
    as_erin
        .run(&[
            "login", "-a", api, "-u", &erin, "-p", "pa55word", "-o", &org, "-s", &space,
        ])
        .success()
        .contains(&format!("Targeted org {org}"))
        .contains(&format!("Targeted space {space}"));
    as_erin
        .run(&["orgs"])
        .success()
        .has_line(&org)
        .lacks(&other_org);
    as_erin
        .run(&["create-org", &unique_name("nope")])
        .failure()
        .contains("You are not authorized to perform the requested action");
    as_erin
        .run(&["target", "-o", &other_org])
        .failure()
        .contains(&format!("Organization '{other_org}' not found."));
    as_erin
        .run(&["login", "-a", api, "-u", &erin, "-p", "wrong"])
        .failure()
        .contains("Credentials were rejected, please try again.");

    if let (Some(client), Some(secret)) = (
        &platform.options.admin_client,
        &platform.options.admin_client_secret,
    ) {
        let as_client = session(&cf6, platform);
        as_client
            .run(&["auth", client, secret, "--client-credentials"])
            .success();
        as_client
            .run(&["orgs"])
            .success()
            .contains(&format!("Getting orgs as {client}..."))
            .has_line(&org);
        as_client.run(&["logout"]).success();
    }

    // Flags and quotas read through v2; disabling an already disabled flag changes nothing.
    admin
        .run(&["feature-flag", "user_org_creation"])
        .success()
        .has_line_starting("user_org_creation");
    admin
        .run(&["disable-feature-flag", "diego_docker"])
        .success()
        .contains("Feature diego_docker Disabled.");
    admin
        .run(&["quotas"])
        .success()
        .has_line_starting("default");
    admin
        .run(&["quota", "default"])
        .success()
        .has_line_starting("Total Memory");
    admin.run(&["stacks"]).success().contains("OK");

    admin
        .run(&["rename-org", &org, &renamed_org])
        .success()
        .contains(&format!(
            "Renaming org {org} to {renamed_org} as {admin_user}..."
        ));
    admin
        .run(&["target", "-o", &renamed_org, "-s", &space])
        .success();
    admin
        .run(&["rename-space", &space, &renamed_space])
        .success()
        .contains("OK");
    admin
        .run(&[
            "unset-space-role",
            &erin,
            &renamed_org,
            &renamed_space,
            "SpaceDeveloper",
        ])
        .success();
    admin
        .run(&["unset-org-role", &erin, &renamed_org, "OrgManager"])
        .success();
    admin
        .run(&["space-users", &renamed_org, &renamed_space])
        .success()
        .lacks(&erin);
    admin.run(&["delete-user", &erin, "-f"]).success();
    admin
        .run(&["delete-space", &renamed_space, "-f"])
        .success()
        .contains(&format!(
            "Deleting space {renamed_space} in org {renamed_org} as {admin_user}..."
        ));
    admin.run(&["delete-org", &renamed_org, "-f"]).success();
    admin.run(&["delete-org", &other_org, "-f"]).success();
    admin
        .run(&["orgs"])
        .success()
        .lacks(&renamed_org)
        .lacks(&other_org);
    admin.run(&["logout"]).success();
}
