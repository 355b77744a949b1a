//! The services story: third-party brokers (the `memdb` example broker with its async plan, and
//! the PostgreSQL broker) registered with `cf create-service-broker`, made visible, provisioned,
//! bound to an app whose `VCAP_SERVICES` carries the credentials, service keys, user-provided
//! instances, plan updates, unbinding and deletion — all through the real cf CLI.

use std::time::Duration;

use cats::{unique_name, Broker, CfSession, Platform};
use serde_json::Value;

use crate::{cf_binary, eventually, instance_server_dir, shared_platform, targeted_admin};

/// Pushes the instance server (binary buildpack) as `name`.
fn push_server(admin: &CfSession, name: &str) -> tempfile::TempDir {
    let dir = instance_server_dir();
    admin
        .run(&[
            "push",
            name,
            "-p",
            dir.path().to_str().unwrap(),
            "-b",
            "binary_buildpack",
            "-c",
            "./server",
            "-m",
            "64M",
        ])
        .success()
        .contains("#0   running");
    dir
}

/// `VCAP_SERVICES` as the app sees it.
fn vcap_services(platform: &Platform, app: &str) -> Value {
    let (status, _, body) = platform.get_app(app, "/env/VCAP_SERVICES").unwrap();
    assert_eq!(status, 200, "VCAP_SERVICES unset: {body}");
    serde_json::from_str(&body).unwrap_or_else(|error| panic!("{error}: {body}"))
}

#[test]
fn a_broker_s_services_are_provisioned_bound_and_deleted() {
    let Some(cf) = cf_binary() else { return };
    let platform = shared_platform();
    if !platform.is_local() {
        eprintln!("skipping: the broker runs beside a local kiln up only");
        return;
    }
    let broker = Broker::start("memdb", &["--async-delay-ms", "1500"]).expect("the broker starts");
    let (admin, org) = targeted_admin(&cf, platform, "svc");
    let broker_name = unique_name("memdb");
    admin
        .run(&[
            "create-service-broker",
            &broker_name,
            &broker.username,
            &broker.password,
            &broker.url,
        ])
        .success()
        .contains(&format!(
            "Creating service broker {broker_name} as admin..."
        ))
        .contains("OK");
    admin
        .run(&["service-brokers"])
        .success()
        .contains(&broker_name)
        .contains(&broker.url);
    admin
        .run(&["service-access", "-b", &broker_name])
        .success()
        .contains("memdb")
        .contains("small")
        .contains("none");
    admin
        .run(&["enable-service-access", "memdb", "-b", &broker_name])
        .success()
        .contains("OK");
    admin
        .run(&["marketplace"])
        .success()
        .contains("memdb")
        .contains("small, large, async");
    admin
        .run(&["marketplace", "-e", "memdb", "-b", &broker_name])
        .success()
        .contains("small")
        .contains("async");

    // Synchronous and asynchronous provisioning.
    admin
        .run(&[
            "create-service",
            "memdb",
            "small",
            "db1",
            "-b",
            &broker_name,
            "-c",
            r#"{"extensions":["pgcrypto"]}"#,
            "-t",
            "fast,cheap",
        ])
        .success()
        .contains("OK");
    admin
        .run(&[
            "create-service",
            "memdb",
            "async",
            "db2",
            "-b",
            &broker_name,
        ])
        .success()
        .contains("in progress");
    assert!(
        eventually(Duration::from_secs(60), || admin
            .run(&["service", "db2"])
            .text()
            .contains("create succeeded")),
        "{}",
        admin.run(&["service", "db2"]).text()
    );
    admin
        .run(&["services"])
        .success()
        .contains("db1")
        .contains("db2")
        .contains("create succeeded");
    admin
        .run(&["service", "db1"])
        .success()
        .contains("memdb")
        .contains("small")
        .contains(&broker_name);

    // Bound to an app: VCAP_SERVICES after a restage.
    let app = unique_name("svcapp");
    let _dir = push_server(&admin, &app);
    admin
        .run(&["bind-service", &app, "db1"])
        .success()
        .contains("OK");
    admin.run(&["restage", &app]).success();
    let vcap = vcap_services(platform, &app);
    let entry = &vcap["memdb"][0];
    assert_eq!(entry["name"], "db1", "{vcap:#}");
    assert_eq!(entry["plan"], "small", "{vcap:#}");
    assert_eq!(entry["label"], "memdb", "{vcap:#}");
    assert!(entry["credentials"]["uri"].is_string(), "{vcap:#}");
    assert!(
        entry["tags"]
            .as_array()
            .is_some_and(|tags| tags.iter().any(|tag| tag == "fast")),
        "{vcap:#}"
    );
    admin
        .run(&["env", &app])
        .success()
        .contains("VCAP_SERVICES")
        .contains("db1");

    // Service keys.
    admin
        .run(&["create-service-key", "db1", "k1"])
        .success()
        .contains("OK");
    admin.run(&["service-keys", "db1"]).success().contains("k1");
    admin
        .run(&["service-key", "db1", "k1"])
        .success()
        .contains("uri");

    // A user-provided instance.
    admin
        .run(&[
            "create-user-provided-service",
            "legacy-db",
            "-p",
            r#"{"uri":"postgres://legacy.example/db"}"#,
        ])
        .success()
        .contains("OK");
    admin.run(&["bind-service", &app, "legacy-db"]).success();
    admin.run(&["restart", &app]).success();
    let vcap = vcap_services(platform, &app);
    assert_eq!(
        vcap["user-provided"][0]["credentials"]["uri"], "postgres://legacy.example/db",
        "{vcap:#}"
    );
    assert_eq!(vcap["memdb"][0]["name"], "db1", "{vcap:#}");

    // `services:` in a manifest binds at push time.
    let manifest_app = unique_name("mfsvc");
    let manifest_dir = instance_server_dir();
    std::fs::write(
        manifest_dir.path().join("manifest.yml"),
        format!(
            "applications:\n- name: {manifest_app}\n  path: .\n  memory: 64M\n  buildpacks: [binary_buildpack]\n  command: ./server\n  services:\n  - db1\n"
        ),
    )
    .unwrap();
    admin
        .run(&[
            "push",
            "-f",
            manifest_dir.path().join("manifest.yml").to_str().unwrap(),
        ])
        .success();
    let vcap = vcap_services(platform, &manifest_app);
    assert_eq!(vcap["memdb"][0]["name"], "db1", "{vcap:#}");
    assert_eq!(vcap["memdb"][0]["plan"], "small", "{vcap:#}");
    admin.run(&["delete", &manifest_app, "-f"]).success();

    // Plan update, unbinding, deletion.
    admin
        .run(&["update-service", "db1", "-p", "large"])
        .success()
        .contains("OK");
    admin.run(&["service", "db1"]).success().contains("large");
    admin
        .run(&["unbind-service", &app, "db1"])
        .success()
        .contains("OK");
    admin
        .run(&["delete-service-key", "db1", "k1", "-f"])
        .success();
    admin.run(&["delete-service", "db1", "-f"]).success();
    admin.run(&["unbind-service", &app, "legacy-db"]).success();
    admin.run(&["delete-service", "legacy-db", "-f"]).success();
    admin
        .run(&["purge-service-instance", "db2", "-f"])
        .success();
    admin
        .run(&["services"])
        .success()
        .lacks("db1")
        .lacks("db2")
        .lacks("legacy-db");
    admin.run(&["delete", &app, "-r", "-f"]).success();
    admin
        .run(&["delete-service-broker", &broker_name, "-f"])
        .success();
    admin
        .run(&["service-brokers"])
        .success()
        .lacks(&broker_name);
    admin.run(&["delete-org", &org, "-f"]).success();
}

/// The PostgreSQL server the PostgreSQL broker manages, or `None` (skip) when none is configured.
fn postgres_admin_url() -> Option<String> {
    match std::env::var("KILN_TEST_POSTGRES_URL") {
        Ok(url) if !url.is_empty() => Some(url),
        _ => {
            assert!(
                std::env::var("KILN_REQUIRE_POSTGRES").as_deref() != Ok("1"),
                "KILN_REQUIRE_POSTGRES=1 but KILN_TEST_POSTGRES_URL is not set"
            );
            eprintln!("skipping: KILN_TEST_POSTGRES_URL is not set");
            None
        }
    }
}

/// The `psql` binary of the local PostgreSQL installation.
fn psql() -> Option<std::path::PathBuf> {
    let mut found: Vec<_> = std::fs::read_dir("/usr/lib/postgresql")
        .ok()?
        .flatten()
        .map(|entry| entry.path().join("bin/psql"))
        .filter(|path| path.is_file())
        .collect();
    found.sort();
    found.pop()
}

#[test]
fn the_postgres_broker_gives_an_app_a_real_database() {
    let Some(cf) = cf_binary() else { return };
    let platform = shared_platform();
    if !platform.is_local() || !platform.options.runs_apps {
        eprintln!("skipping: needs a local kiln up that runs apps");
        return;
    }
    let Some(admin_url) = postgres_admin_url() else {
        return;
    };
    let psql = psql().expect("psql is installed with PostgreSQL");
    let broker =
        Broker::start("postgres", &["--admin-url", &admin_url]).expect("the broker starts");
    let (admin, org) = targeted_admin(&cf, platform, "pg");
    let broker_name = unique_name("pg");
    admin
        .run(&[
            "create-service-broker",
            &broker_name,
            &broker.username,
            &broker.password,
            &broker.url,
        ])
        .success();
    admin
        .run(&["enable-service-access", "postgresql", "-b", &broker_name])
        .success();
    admin
        .run(&[
            "create-service",
            "postgresql",
            "small",
            "mydb",
            "-b",
            &broker_name,
        ])
        .success();
    let app = unique_name("pgapp");
    let _dir = push_server(&admin, &app);
    admin.run(&["bind-service", &app, "mydb"]).success();
    admin.run(&["restage", &app]).success();
    let vcap = vcap_services(platform, &app);
    let credentials = &vcap["postgresql"][0]["credentials"];
    let uri = credentials["uri"]
        .as_str()
        .unwrap_or_else(|| panic!("no uri: {vcap:#}"))
        .to_owned();
    // The credentials the app received work: create, fill and read a table with them.
    let output = std::process::Command::new(&psql)
        .args([
            &uri,
            "-v",
            "ON_ERROR_STOP=1",
            "-qtAc",
            "CREATE TABLE notes (body text); INSERT INTO notes VALUES ('kept'); SELECT body FROM notes;",
        ])
        .output()
        .expect("psql runs");
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert_eq!(String::from_utf8_lossy(&output.stdout).trim(), "kept");

    // Unbinding drops the role: the same credentials no longer log in.
    admin.run(&["unbind-service", &app, "mydb"]).success();
    let output = std::process::Command::new(&psql)
        .args([&uri, "-tAc", "SELECT 1"])
        .output()
        .expect("psql runs");
    assert!(!output.status.success(), "the unbound role still logs in");
    admin.run(&["delete-service", "mydb", "-f"]).success();
    admin.run(&["delete", &app, "-r", "-f"]).success();
    admin
        .run(&["delete-service-broker", &broker_name, "-f"])
        .success();
    admin.run(&["delete-org", &org, "-f"]).success();
}

#[test]
fn broker_errors_reach_the_user_and_space_scoped_brokers_stay_in_their_space() {
    let Some(cf) = cf_binary() else { return };
    let platform = shared_platform();
    if !platform.is_local() {
        eprintln!("skipping: the broker runs beside a local kiln up only");
        return;
    }
    let broker = Broker::start("memdb", &["--async-delay-ms", "500"]).expect("the broker starts");
    let (admin, org) = targeted_admin(&cf, platform, "svcerr");

    // A space-scoped broker: registered by the space, its plans visible there without any
    // enable-service-access, absent from other spaces.
    let broker_name = unique_name("scoped");
    admin
        .run(&[
            "create-service-broker",
            &broker_name,
            &broker.username,
            &broker.password,
            &broker.url,
            "--space-scoped",
        ])
        .success()
        .contains("OK");
    admin
        .run(&["service-brokers"])
        .success()
        .contains(&broker_name);
    admin
        .run(&["marketplace", "-b", &broker_name])
        .success()
        .contains("memdb");
    admin.run(&["create-space", "other", "-o", &org]).success();
    admin.run(&["target", "-o", &org, "-s", "other"]).success();
    admin
        .run(&["marketplace", "-b", &broker_name])
        .lacks("small, large, async");
    admin.run(&["target", "-o", &org, "-s", "apps"]).success();

    // The broker refuses a provision: the user reads the broker's own description.
    let refused = admin
        .run(&[
            "create-service",
            "memdb",
            "small",
            "refused",
            "-b",
            &broker_name,
            "-c",
            r#"{"fail":true}"#,
        ])
        .failure();
    assert!(
        refused.text().contains("Service broker error")
            && refused
                .text()
                .contains("failed because the parameters asked for it"),
        "{}",
        refused.text()
    );
    // A broker that fails with a server error: CF's message, and no instance left behind
    // in a state the user cannot clean up.
    let broken = admin
        .run(&[
            "create-service",
            "memdb",
            "small",
            "broken",
            "-b",
            &broker_name,
            "-c",
            r#"{"fail":500}"#,
        ])
        .failure();
    assert!(
        broken.text().contains("Service broker error") || broken.text().contains("500"),
        "{}",
        broken.text()
    );
    // An asynchronous provision the broker reports failed ends "create failed".
    admin
        .run(&[
            "create-service",
            "memdb",
            "async",
            "late-failure",
            "-b",
            &broker_name,
            "-c",
            r#"{"fail_async":true}"#,
        ])
        .success();
    assert!(
        eventually(Duration::from_secs(60), || admin
            .run(&["service", "late-failure"])
            .text()
            .contains("create failed")),
        "{}",
        admin.run(&["service", "late-failure"]).text()
    );
    admin
        .run(&["service", "late-failure"])
        .contains("provisioning failed because the parameters asked for it");
    admin
        .run(&["delete-service", "late-failure", "-f"])
        .success();
    // Whatever a failed create left behind can be purged (and the async plan's delete is still
    // being polled: its first poll comes only after the broker's poll interval).
    for name in ["refused", "broken", "late-failure"] {
        let _ = admin.run(&["purge-service-instance", name, "-f"]);
    }
    admin
        .run(&["services"])
        .success()
        .lacks("refused")
        .lacks("broken")
        .lacks("late-failure");
    admin
        .run(&["delete-service-broker", &broker_name, "-f"])
        .success();
    admin.run(&["delete-org", &org, "-f"]).success();
}
