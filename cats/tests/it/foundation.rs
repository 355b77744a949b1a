//! The foundation story: `cf login`, orgs, spaces, users and roles, client credentials, token
//! refresh and refusal — with the stock cf CLI.

use std::time::Duration;

use base64::Engine;
use cats::{unique_name, Platform};

use crate::{admin_session, cf_binary, session, shared_platform};

/// The whole story of the foundation issue, in order, as a user types it.
#[test]
fn login_orgs_spaces_users_and_roles() {
    let Some(cf) = cf_binary() else { return };
    let platform = shared_platform();
    let api = &platform.options.api;
    let (org, space, alice) = (
        unique_name("acme"),
        unique_name("dev"),
        unique_name("alice"),
    );

    let admin = session(&cf, platform);
    admin
        .run(&[
            "login",
            "-a",
            api,
            "-u",
            &platform.options.admin_user,
            "-p",
            &platform.options.admin_password,
        ])
        .success()
        .contains("Authenticating...")
        .contains("OK")
        .contains(&format!("user:           {}", platform.options.admin_user));

    admin
        .run(&["create-org", &org])
        .success()
        .contains(&format!("Creating org {org} as admin..."))
        .contains("OK");
    admin
        .run(&["create-space", &space, "-o", &org])
        .success()
        .contains(&format!("Creating space {space} in org {org} as admin..."))
        .contains("OK");
    admin
        .run(&["target", "-o", &org, "-s", &space])
        .success()
        .contains(&format!("org:            {org}"))
        .contains(&format!("space:          {space}"));

    admin
        .run(&["create-user", &alice, "s3cret"])
        .success()
        .contains(&format!("Creating user {alice}..."))
        .contains("OK");
    admin
        .run(&["set-org-role", &alice, &org, "OrgManager"])
        .success()
        .contains(&format!(
            "Assigning role OrgManager to user {alice} in org {org} as admin..."
        ));
    admin
        .run(&["set-space-role", &alice, &org, &space, "SpaceDeveloper"])
        .success()
        .contains(&format!(
            "Assigning role SpaceDeveloper to user {alice} in org {org} / space {space} as admin..."
        ));

    admin.run(&["orgs"]).success().contains(&org);
    admin.run(&["spaces"]).success().contains(&space);
    admin
        .run(&["org-users", &org])
        .success()
        .contains("ORG MANAGER")
        .contains(&alice);
    admin
        .run(&["space-users", &org, &space])
        .success()
        .contains("SPACE DEVELOPER")
        .contains(&alice);
    admin
        .run(&["org", &org])
        .success()
        .contains("name:")
        .contains(&org)
        .contains(&space)
        .contains(&platform.options.apps_domain);
    admin
        .run(&["space", &space])
        .success()
        .contains(&space)
        .contains(&org);

    // Alice logs in straight into her org and space and sees nothing else.
    let other_org = unique_name("other");
    admin.run(&["create-org", &other_org]).success();
    let as_alice = session(&cf, platform);
    as_alice
        .run(&[
            "login", "-a", api, "-u", &alice, "-p", "s3cret", "-o", &org, "-s", &space,
        ])
        .success()
        .contains(&format!("org:            {org}"))
        .contains(&format!("space:          {space}"));
    as_alice
        .run(&["orgs"])
        .success()
        .contains(&org)
        .lacks(&other_org);

    // The admin client authenticates with client credentials and acts as an admin.
    if let (Some(client), Some(secret)) = (
        &platform.options.admin_client,
        &platform.options.admin_client_secret,
    ) {
        let as_client = session(&cf, platform);
        as_client
            .run(&["auth", client, secret, "--client-credentials"])
            .success()
            .contains("OK");
        as_client
            .run(&["orgs"])
            .success()
            .contains(&org)
            .contains(&other_org);
    }

    admin
        .run(&["delete-space", &space, "-o", &org, "-f"])
        .success()
        .contains(&format!("Deleting space {space} in org {org} as admin..."));
    admin
        .run(&["delete-org", &org, "-f"])
        .success()
        .contains(&format!("Deleting org {org} as admin..."));
    admin.run(&["delete-org", &other_org, "-f"]).success();
    admin.run(&["orgs"]).success().lacks(&org).lacks(&other_org);
    admin
        .run(&["logout"])
        .success()
        .contains("Logging out")
        .contains("OK");
    admin
        .run(&["orgs"])
        .failure()
        .contains("Not logged in. Use 'cf login' or 'cf login --sso' to log in.");
}

#[test]
fn wrong_password_is_rejected() {
    let Some(cf) = cf_binary() else { return };
    let platform = shared_platform();
    let cf_session = session(&cf, platform);
    cf_session
        .run(&[
            "login",
            "-a",
            &platform.options.api,
            "-u",
            &platform.options.admin_user,
            "-p",
            "definitely-not-the-password",
        ])
        .failure()
        .contains("Credentials were rejected, please try again.");
    cf_session
        .run(&["auth", "nobody-by-this-name", "whatever"])
        .failure()
        .contains("Credentials were rejected, please try again.");
}

/// Alice, a member of one org, can neither see nor change another.
#[test]
fn a_user_cannot_see_or_touch_another_org() {
    let Some(cf) = cf_binary() else { return };
    let platform = shared_platform();
    let (hers, theirs, alice) = (
        unique_name("hers"),
        unique_name("theirs"),
        unique_name("alice"),
    );
    let admin = admin_session(&cf, platform);
    admin.run(&["create-org", &hers]).success();
    admin.run(&["create-org", &theirs]).success();
    admin
        .run(&["create-space", "work", "-o", &theirs])
        .success();
    admin.run(&["create-user", &alice, "pa55word"]).success();
    admin
        .run(&["set-org-role", &alice, &hers, "OrgManager"])
        .success();
    let their_guid = admin
        .run(&["org", &theirs, "--guid"])
        .success()
        .stdout
        .trim()
        .to_string();

    let as_alice = session(&cf, platform);
    as_alice.run(&["auth", &alice, "pa55word"]).success();
    as_alice
        .run(&["orgs"])
        .success()
        .contains(&hers)
        .lacks(&theirs);
    as_alice
        .run(&["target", "-o", &theirs])
        .failure()
        .contains(&format!("Organization '{theirs}' not found."));
    as_alice
        .run(&["create-space", "intrusion", "-o", &theirs])
        .failure()
        .contains(&format!("Organization '{theirs}' not found."));
    as_alice
        .run(&["curl", &format!("/v3/organizations/{their_guid}")])
        .contains("CF-ResourceNotFound");
    as_alice
        .run(&[
            "curl",
            "-X",
            "DELETE",
            &format!("/v3/organizations/{their_guid}"),
        ])
        .contains("CF-ResourceNotFound");
    as_alice
        .run(&[
            "curl",
            "-X",
            "PATCH",
            &format!("/v3/organizations/{their_guid}"),
            "-d",
            r#"{"name":"stolen"}"#,
        ])
        .contains("CF-ResourceNotFound");

    // Nothing changed for the admin.
    admin
        .run(&["target", "-o", &theirs, "-s", "work"])
        .success();
    admin.run(&["orgs"]).success().contains(&theirs);
}

#[test]
fn a_space_developer_cannot_create_an_org_while_user_org_creation_is_disabled() {
    let Some(cf) = cf_binary() else { return };
    let platform = shared_platform();
    let (org, dev) = (unique_name("devorg"), unique_name("dev"));
    let admin = admin_session(&cf, platform);
    admin.run(&["create-org", &org]).success();
    admin.run(&["create-space", "s", "-o", &org]).success();
    admin.run(&["create-user", &dev, "pa55word"]).success();
    admin
        .run(&["set-space-role", &dev, &org, "s", "SpaceDeveloper"])
        .success();
    admin
        .run(&["feature-flag", "user_org_creation"])
        .success()
        .contains("disabled");

    let as_dev = session(&cf, platform);
    as_dev.run(&["auth", &dev, "pa55word"]).success();
    let attempt = unique_name("mine");
    as_dev
        .run(&["create-org", &attempt])
        .failure()
        .contains("You are not authorized to perform the requested action");
    admin.run(&["orgs"]).success().lacks(&attempt);
}

#[test]
fn a_duplicate_org_name_gets_cf_s_message() {
    let Some(cf) = cf_binary() else { return };
    let platform = shared_platform();
    let org = unique_name("twice");
    let admin = admin_session(&cf, platform);
    admin.run(&["create-org", &org]).success();
    admin
        .run(&["create-org", &org])
        .success()
        .contains(&format!("Organization '{org}' already exists."));
    admin.run(&["create-space", "s", "-o", &org]).success();
    admin
        .run(&["create-space", "s", "-o", &org])
        .success()
        .contains("Space 's' already exists.");
}

/// `cf rename-org` (which sends an empty `metadata` with the new name) and `cf rename-space`.
#[test]
fn orgs_and_spaces_are_renamed() {
    let Some(cf) = cf_binary() else { return };
    let platform = shared_platform();
    let (org, renamed_org) = (unique_name("before"), unique_name("after"));
    let (space, renamed_space) = (unique_name("s-before"), unique_name("s-after"));
    let admin = admin_session(&cf, platform);
    admin.run(&["create-org", &org]).success();
    admin.run(&["create-space", &space, "-o", &org]).success();
    admin
        .run(&["rename-org", &org, &renamed_org])
        .success()
        .contains(&format!("Renaming org {org} to {renamed_org} as"));
    admin.run(&["target", "-o", &renamed_org]).success();
    admin
        .run(&["rename-space", &space, &renamed_space])
        .success()
        .contains(&format!("Renaming space {space} to {renamed_space} as"));
    admin
        .run(&["orgs"])
        .success()
        .has_line(&renamed_org)
        .lacks(&org);
    admin.run(&["spaces"]).success().has_line(&renamed_space);
    admin
        .run(&["rename-org", &unique_name("ghost"), "x"])
        .failure()
        .contains("not found");
    admin.run(&["delete-org", &renamed_org, "-f"]).success();
}

/// `cf set-org-role CLIENT ORG OrgAuditor --client`: the CLI checks the client in UAA, the Cloud
/// Controller gives the client's id an org role, and `cf org-users` lists it as a client.
#[test]
fn a_client_gets_an_org_role() {
    let Some(cf) = cf_binary() else { return };
    let platform = shared_platform();
    let Some(client) = &platform.options.admin_client else {
        eprintln!("skipping: the platform names no admin client");
        return;
    };
    let admin_user = &platform.options.admin_user;
    let org = unique_name("clients");
    let admin = admin_session(&cf, platform);
    admin.run(&["create-org", &org]).success();
    admin
        .run(&["set-org-role", client, &org, "OrgAuditor", "--client"])
        .success()
        .contains(&format!(
            "Assigning role OrgAuditor to user {client} in org {org} as {admin_user}..."
        ))
        .contains("OK");
    admin
        .run(&["org-users", &org])
        .success()
        .contains("ORG AUDITOR")
        .contains(&format!("  {client} (client)"));
    // Again: CF's warning, and still OK.
    admin
        .run(&["set-org-role", client, &org, "OrgAuditor", "--client"])
        .success()
        .contains(&format!(
            "User '{client}' already has role 'OrgAuditor' in org '{org}'."
        ))
        .contains("OK");
    // A client UAA does not know is refused before the Cloud Controller is asked.
    let unknown = unique_name("no-such-client");
    admin
        .run(&["set-org-role", &unknown, &org, "OrgAuditor", "--client"])
        .failure()
        .contains(&format!("User '{unknown}' does not exist."));
    admin.run(&["org-users", &org]).success().lacks(&unknown);
    admin.run(&["delete-org", &org, "-f"]).success();
}

fn decode_segment(segment: &str) -> serde_json::Value {
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(segment)
        .expect("base64url JWT segment");
    serde_json::from_slice(&bytes).expect("JSON JWT segment")
}

fn encode_segment(value: &serde_json::Value) -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(serde_json::to_vec(value).unwrap())
}

/// With 5-second access tokens, the CLI refreshes transparently; tokens that are forged or
/// expired are refused by the Cloud Controller.
#[test]
fn expired_tokens_are_refreshed_by_the_cli_and_bad_tokens_are_refused() {
    let Some(cf) = cf_binary() else { return };
    if std::env::var_os("CATS_CONFIG").is_some() {
        eprintln!("skipping: needs a platform with 5-second tokens, started locally");
        return;
    }
    let platform =
        Platform::start_local(&["--access-token-validity-secs", "5"]).expect("kiln up starts");
    let admin = admin_session(&cf, &platform);
    let org = unique_name("refresh");
    admin.run(&["create-org", &org]).success();
    let first_token = admin.config().unwrap()["AccessToken"]
        .as_str()
        .unwrap()
        .to_string();
    std::thread::sleep(Duration::from_secs(6));
    // The stored token has expired; the CLI refreshes it and carries on.
    admin.run(&["orgs"]).success().contains(&org);
    let config = admin.config().unwrap();
    let second_token = config["AccessToken"].as_str().unwrap().to_string();
    assert_ne!(
        first_token, second_token,
        "the CLI stored a refreshed token"
    );

    // An expired token sent as is gets CF-InvalidAuthToken.
    let http = reqwest::blocking::Client::new();
    let response = http
        .get(format!("{}/v3/organizations", platform.options.api))
        .header("Authorization", &first_token)
        .send()
        .unwrap();
    assert_eq!(response.status().as_u16(), 401);
    assert!(response.text().unwrap().contains("CF-InvalidAuthToken"));

    // A forged token: the payload claims a far-away expiry, the signature is the original one.
    let jwt = second_token.trim_start_matches("bearer ");
    let parts: Vec<&str> = jwt.split('.').collect();
    let mut claims = decode_segment(parts[1]);
    claims["exp"] = serde_json::json!(4_102_444_800u64); // 2100-01-01
    let forged = format!(
        "bearer {}.{}.{}",
        parts[0],
        encode_segment(&claims),
        parts[2]
    );
    let mut config = admin.config().unwrap();
    config["AccessToken"] = serde_json::json!(forged);
    admin.write_config(&config).unwrap();
    admin
        .run(&["curl", "/v3/organizations"])
        .contains("CF-InvalidAuthToken")
        .lacks(&org);

    // No token at all.
    let response = http
        .get(format!("{}/v3/organizations", platform.options.api))
        .send()
        .unwrap();
    assert_eq!(response.status().as_u16(), 401);
    assert!(response.text().unwrap().contains("CF-NotAuthenticated"));
}

/// A second `kiln up` on the same data directory keeps every org, user and credential; SIGTERM
/// stops kiln cleanly, nats-server child included.
#[test]
fn restart_keeps_data_and_sigterm_stops_everything() {
    let Some(cf) = cf_binary() else { return };
    if std::env::var_os("CATS_CONFIG").is_some() {
        eprintln!("skipping: restarts a locally started platform");
        return;
    }
    let data_dir = tempfile::Builder::new()
        .prefix("cats-restart-")
        .tempdir()
        .unwrap();
    let (org, bob) = (unique_name("kept"), unique_name("bob"));

    let first = Platform::start_local_in(data_dir.path(), &[]).expect("kiln up starts");
    let admin = admin_session(&cf, &first);
    admin.run(&["create-org", &org]).success();
    admin.run(&["create-user", &bob, "pa55word"]).success();
    admin
        .run(&["set-org-role", &bob, &org, "OrgAuditor"])
        .success();
    let first_password = first.options.admin_password.clone();
    let nats = first
        .nats_url()
        .expect("kiln up printed its NATS URL")
        .to_string();
    assert_eq!(first.terminate().unwrap(), 0, "kiln up exits 0 on SIGTERM");
    let nats_address = nats.trim_start_matches("nats://");
    assert!(
        std::net::TcpStream::connect(nats_address).is_err(),
        "the nats-server child at {nats_address} was stopped with kiln"
    );

    let second = Platform::start_local_in(data_dir.path(), &[]).expect("kiln up restarts");
    assert_eq!(second.options.admin_password, first_password);
    let admin = admin_session(&cf, &second);
    admin.run(&["orgs"]).success().contains(&org);
    admin.run(&["org-users", &org]).success().contains(&bob);
    let as_bob = session(&cf, &second);
    as_bob.run(&["auth", &bob, "pa55word"]).success();
    as_bob.run(&["orgs"]).success().contains(&org);
}

/// An operator rotates UAA's signing key while users are logged in: their sessions go on, new
/// tokens carry the new key's id, and the Cloud Controller accepts them (it fetches the new key).
#[test]
fn rotating_the_signing_key_keeps_sessions_working() {
    let Some(cf) = cf_binary() else { return };
    if std::env::var_os("CATS_CONFIG").is_some() {
        eprintln!("skipping: rotates the key of a locally started platform");
        return;
    }
    let data_dir = tempfile::Builder::new()
        .prefix("cats-rotate-")
        .tempdir()
        .unwrap();
    let platform = Platform::start_local_in(data_dir.path(), &[]).expect("kiln up starts");
    let org = unique_name("rotated");
    let before = admin_session(&cf, &platform);
    before.run(&["create-org", &org]).success();
    let old_kid = token_kid(&before);

    let output = std::process::Command::new(cats::kiln_binary().unwrap())
        .args(["rotate-signing-key", "--data-dir"])
        .arg(data_dir.path())
        .output()
        .expect("kiln rotate-signing-key runs");
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "rotate-signing-key failed: {stdout} {}",
        String::from_utf8_lossy(&output.stderr)
    );
    let new_kid = stdout
        .lines()
        .find_map(|line| line.strip_prefix("New token signing key: "))
        .unwrap_or_else(|| panic!("no new key id in: {stdout}"))
        .trim()
        .to_string();
    assert_ne!(new_kid, old_kid);

    // The session logged in before the rotation keeps working with its old token.
    before.run(&["orgs"]).success().contains(&org);
    // A login after the rotation gets a token signed with the new key, and the API takes it.
    let mut after = None;
    assert!(
        crate::eventually(Duration::from_secs(20), || {
            let session = admin_session(&cf, &platform);
            let fresh = token_kid(&session) == new_kid;
            if fresh {
                after = Some(session);
            }
            fresh
        }),
        "no token signed with the new key {new_kid} within 20 s"
    );
    after
        .expect("a session with a new-key token")
        .run(&["orgs"])
        .success()
        .contains(&org);
    assert_eq!(platform.terminate().unwrap(), 0);
}

/// The `kid` in the header of the session's access token.
fn token_kid(session: &cats::CfSession) -> String {
    let output = session.run(&["oauth-token"]).success();
    let token = output
        .stdout
        .trim()
        .trim_start_matches("bearer ")
        .to_string();
    let header = token.split('.').next().expect("a JWT");
    decode_segment(header)["kid"]
        .as_str()
        .expect("a kid in the token header")
        .to_string()
}

/// The system buildpacks are registered at start, in detection order, on the default stack list.
#[test]
fn system_buildpacks_and_the_default_stack_are_listed() {
    let Some(cf) = cf_binary() else { return };
    let platform = shared_platform();
    let admin = admin_session(&cf, platform);
    let listing = admin.run(&["buildpacks"]).success();
    let text = listing.text();
    let staticfile = text
        .find("staticfile_buildpack")
        .expect("staticfile listed");
    let binary = text.find("binary_buildpack").expect("binary listed");
    assert!(staticfile < binary, "staticfile detects first:\n{text}");
    admin
        .run(&["stacks"])
        .success()
        .contains("kiln-host")
        .contains("ACTIVE");
}

/// Labels with the stock CLI: `cf set-label`, `cf labels` (CF's key/value table), `cf
/// unset-label`, and `--labels` filtering on `cf orgs`, `cf spaces` and `cf apps`, for an org, a
/// space and an app created with `cf create-app`.
#[test]
fn orgs_spaces_and_apps_carry_labels() {
    let Some(cf) = cf_binary() else { return };
    let platform = shared_platform();
    let (org, other_org) = (unique_name("labelled"), unique_name("unlabelled"));
    let (space, other_space) = (unique_name("l-space"), unique_name("u-space"));
    let (app, other_app) = (unique_name("l-app"), unique_name("u-app"));
    let admin = admin_session(&cf, platform);
    admin.run(&["create-org", &org]).success();
    admin.run(&["create-org", &other_org]).success();

    admin
        .run(&["set-label", "org", &org, "env=prod", "example.com/tier=web"])
        .success()
        .contains(&format!("Setting label(s) for org {org} as"))
        .contains("OK");
    admin
        .run(&["labels", "org", &org])
        .success()
        .contains(&format!("Getting labels for org {org} as"))
        .has_line("key value")
        .has_line("env prod")
        .has_line("example.com/tier web");
    admin
        .run(&["orgs", "--labels", "env=prod"])
        .success()
        .has_line(&org)
        .lacks(&other_org);
    admin
        .run(&["orgs", "--labels", "!env"])
        .success()
        .has_line(&other_org)
        .lacks(&org);
    admin
        .run(&["set-label", "org", &org, "env=-bad"])
        .failure()
        .contains("Metadata label value error: '-bad' starts or ends with invalid characters");
    admin
        .run(&["unset-label", "org", &org, "example.com/tier"])
        .success()
        .contains(&format!("Removing label(s) for org {org} as"));
    admin
        .run(&["labels", "org", &org])
        .success()
        .has_line("env prod")
        .lacks("example.com/tier");

    admin.run(&["target", "-o", &org]).success();
    admin.run(&["create-space", &space]).success();
    admin.run(&["create-space", &other_space]).success();
    admin
        .run(&["set-label", "space", &space, "team=blue"])
        .success()
        .contains(&format!(
            "Setting label(s) for space {space} in org {org} as"
        ));
    admin
        .run(&["labels", "space", &space])
        .success()
        .has_line("team blue");
    admin
        .run(&["spaces", "--labels", "team in (blue,green)"])
        .success()
        .has_line(&space)
        .lacks(&other_space);

    admin.run(&["target", "-s", &space]).success();
    admin.run(&["create-app", &app]).success();
    admin.run(&["create-app", &other_app]).success();
    admin
        .run(&["set-label", "app", &app, "release=v1"])
        .success()
        .contains(&format!(
            "Setting label(s) for app {app} in org {org} / space {space} as"
        ));
    admin
        .run(&["labels", "app", &app])
        .success()
        .has_line("release v1");
    admin
        .run(&["apps", "--labels", "release=v1"])
        .success()
        .contains(&app)
        .lacks(&other_app);
    admin
        .run(&["unset-label", "app", &app, "release"])
        .success();
    admin
        .run(&["labels", "app", &app])
        .success()
        .lacks("release");

    admin.run(&["delete-org", &org, "-f"]).success();
    admin.run(&["delete-org", &other_org, "-f"]).success();
}
