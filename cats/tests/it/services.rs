//! The services story: third-party brokers (the `memdb` example broker with its async plan, the
//! PostgreSQL broker, and a broker on another stack — Python with openbrokerapi) registered with
//! `cf create-service-broker`, made visible, provisioned, bound to an app whose `VCAP_SERVICES`
//! carries the credentials (and which connects to the database it was bound to), service keys,
//! user-provided instances, plan updates, unbinding and deletion, broker errors and a broker that
//! times out — all through the real cf CLI.

use std::time::Duration;

use cats::{unique_name, Broker, CfSession, Platform, PythonBroker};
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

/// The cf CLI and the shared platform when it is a local `kiln up` (brokers started by the
/// scenarios listen on this machine's loopback); `None` (skip) otherwise.
fn cf_and_local_platform() -> Option<(std::path::PathBuf, &'static Platform)> {
    let cf = cf_binary()?;
    let platform = shared_platform();
    if !platform.is_local() {
        eprintln!("skipping: the broker runs beside a local kiln up only");
        return None;
    }
    Some((cf, platform))
}

#[test]
fn a_broker_s_services_are_provisioned_bound_and_deleted() {
    let Some((cf, platform)) = cf_and_local_platform() else {
        return;
    };
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
    // (Not `lacks("db2")`: the random org name in the header line may contain it.)
    admin
        .run(&["services"])
        .success()
        .has_line("No service instances found.");
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
pub(crate) fn postgres_admin_url() -> Option<String> {
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
pub(crate) fn psql() -> Option<std::path::PathBuf> {
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
    // The app printed what it was bound to when it started.
    let printed = |admin: &CfSession| {
        let recent = admin.run(&["logs", &app, "--recent"]).success().text();
        recent
            .lines()
            .rev()
            .find_map(|line| line.split(" OUT instance-server: VCAP_SERVICES ").nth(1))
            .and_then(|json| serde_json::from_str::<Value>(json).ok())
    };
    assert!(
        eventually(Duration::from_secs(30), || printed(&admin).as_ref()
            == Some(&vcap)),
        "the app's stdout lacks VCAP_SERVICES {vcap:#}: {:?}",
        printed(&admin)
    );

    // The app itself connects with the bound credentials: it creates a table, writes a row and
    // reads it back.
    assert_eq!(
        platform
            .get_app(&app, "/db/written%20by%20the%20app")
            .unwrap(),
        (200, None, "written by the app\n".to_owned())
    );
    // The credentials the app received work from here too: the app's row is there, and a table
    // of our own can be created, filled and read.
    let run_psql = |sql: &str| {
        let output = std::process::Command::new(&psql)
            .args([&uri, "-X", "-v", "ON_ERROR_STOP=1", "-qtAc", sql])
            .output()
            .expect("psql runs");
        assert!(
            output.status.success(),
            "{sql}: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        String::from_utf8_lossy(&output.stdout).trim().to_owned()
    };
    assert_eq!(run_psql("SELECT body FROM app_rows"), "written by the app");
    assert_eq!(
        run_psql(
            "CREATE TABLE notes (body text); INSERT INTO notes VALUES ('kept'); SELECT body FROM notes;"
        ),
        "kept"
    );
    // And the app sees what we wrote through the same database.
    run_psql("INSERT INTO app_rows VALUES ('from the test')");
    assert_eq!(
        platform.get_app(&app, "/db/again").unwrap(),
        (
            200,
            None,
            "again\nfrom the test\nwritten by the app\n".to_owned()
        )
    );

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
    let Some((cf, platform)) = cf_and_local_platform() else {
        return;
    };
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

/// A Python interpreter with openbrokerapi, or `None` (skip) when there is none and the cf
/// scenarios are not mandatory; with `KILN_REQUIRE_CF=1` its absence fails the scenario.
fn python_for_broker() -> Option<std::path::PathBuf> {
    match cats::python_with_openbrokerapi() {
        Some(python) => Some(python),
        None if cats::cf_is_required() => panic!(
            "KILN_REQUIRE_CF=1 but ~/.cache/kiln-venv/bin/python cannot import openbrokerapi: \
             run scripts/install-deps"
        ),
        None => {
            eprintln!("skipping: openbrokerapi is not installed (run scripts/install-deps)");
            None
        }
    }
}

/// The first event of `broker` that satisfies `matches`, waiting a little for it (the broker
/// reports on a pipe read by another thread).
#[track_caller]
fn broker_event(broker: &PythonBroker, matches: impl Fn(&Value) -> bool) -> Value {
    let mut found = None;
    eventually(Duration::from_secs(30), || {
        found = broker.events().into_iter().find(|event| matches(event));
        found.is_some()
    });
    found.unwrap_or_else(|| {
        panic!(
            "the broker reported no such event; it reported {:#?}\nstderr:\n{}",
            broker.events(),
            broker.stderr_text()
        )
    })
}

/// Registers `broker` as `broker_name` and makes its plans public.
fn register_python_broker(admin: &CfSession, broker: &PythonBroker, broker_name: &str) {
    admin
        .run(&[
            "create-service-broker",
            broker_name,
            &broker.username,
            &broker.password,
            &broker.url,
        ])
        .success()
        .has_line(&format!(
            "Creating service broker {broker_name} as admin..."
        ))
        .has_line("OK");
    admin
        .run(&["enable-service-access", "pystore", "-b", broker_name])
        .success()
        .has_line(&format!(
            "Enabling access to all plans of service offering pystore from broker {broker_name} \
             for all orgs as admin..."
        ))
        .has_line("OK");
}

/// `cf <noun> NAME --guid`.
fn guid_of(admin: &CfSession, noun: &str, name: &str) -> String {
    admin
        .run(&[noun, name, "--guid"])
        .success()
        .stdout
        .trim()
        .to_owned()
}

#[test]
fn a_python_broker_s_service_is_provisioned_bound_and_deleted() {
    let Some(cf) = cf_binary() else { return };
    let platform = shared_platform();
    if !platform.is_local() || !platform.options.runs_apps {
        eprintln!("skipping: needs a local kiln up that runs apps");
        return;
    }
    let Some(python) = python_for_broker() else {
        return;
    };
    // A broker on another stack than Kiln's own SDK: Python, Flask and openbrokerapi.
    let broker = PythonBroker::start(&python, 30).expect("the Python broker starts");
    let (admin, org) = targeted_admin(&cf, platform, "pysvc");
    let broker_name = unique_name("py");
    admin
        .run(&[
            "create-service-broker",
            &broker_name,
            &broker.username,
            &broker.password,
            &broker.url,
        ])
        .success()
        .has_line(&format!(
            "Creating service broker {broker_name} as admin..."
        ))
        .has_line("OK");
    admin
        .run(&["service-brokers"])
        .success()
        .has_line(&format!("{broker_name} {}", broker.url));
    // New plans are private until an admin opens them.
    admin
        .run(&["service-access", "-b", &broker_name])
        .success()
        .has_line(&format!("broker: {broker_name}"))
        .has_line("pystore slow none")
        .has_line("pystore standard none");
    admin
        .run(&["enable-service-access", "pystore", "-b", &broker_name])
        .success()
        .has_line(&format!(
            "Enabling access to all plans of service offering pystore from broker {broker_name} \
             for all orgs as admin..."
        ))
        .has_line("OK");
    admin
        .run(&["service-access", "-b", &broker_name])
        .success()
        .has_line("pystore slow all")
        .has_line("pystore standard all");
    admin.run(&["marketplace"]).success().has_line(&format!(
        "pystore standard, slow A key-value store served by a Python broker {broker_name}"
    ));
    admin
        .run(&["marketplace", "-e", "pystore", "-b", &broker_name])
        .success()
        .has_line("standard Provisioned at once free")
        .has_line("slow Takes 30 s to provision free");

    // Provisioning.
    admin
        .run(&[
            "create-service",
            "pystore",
            "standard",
            "kv",
            "-b",
            &broker_name,
        ])
        .success()
        .has_line(&format!(
            "Creating service instance kv in org {org} / space apps as admin..."
        ))
        .has_line("Service instance kv created.")
        .has_line("OK");
    let instance_guid = guid_of(&admin, "service", "kv");
    broker_event(&broker, |event| {
        event["event"] == "provisioned"
            && event["instance_id"] == instance_guid.as_str()
            && event["plan"] == "standard"
    });
    admin
        .run(&["service", "kv"])
        .success()
        .has_line("name: kv")
        .has_line(&format!("guid: {instance_guid}"))
        .has_line("type: managed")
        .has_line(&format!("broker: {broker_name}"))
        .has_line("offering: pystore")
        .has_line("plan: standard")
        .has_line("offering tags: python, key-value")
        .has_line("description: A key-value store served by a Python broker")
        .has_line("status: create succeeded");
    admin.run(&["services"]).success().has_line(&format!(
        "kv pystore standard create succeeded {broker_name} no"
    ));

    // Bound to an app: after a restart its VCAP_SERVICES carries the broker's credentials under
    // the offering's label.
    let app = unique_name("pyapp");
    let _dir = push_server(&admin, &app);
    let app_guid = guid_of(&admin, "app", &app);
    admin
        .run(&["bind-service", &app, "kv"])
        .success()
        .has_line(&format!(
            "Binding service instance kv to app {app} in org {org} / space apps as admin..."
        ))
        .has_line("OK");
    let bound = broker_event(&broker, |event| {
        event["event"] == "bind"
            && event["instance_id"] == instance_guid.as_str()
            && event["app_guid"] == app_guid.as_str()
    });
    admin.run(&["restart", &app]).success();
    let vcap = vcap_services(platform, &app);
    let binding_guid = bound["binding_id"].as_str().unwrap().to_owned();
    assert_eq!(
        vcap,
        serde_json::json!({"pystore": [{
            "label": "pystore",
            "provider": null,
            "plan": "standard",
            "name": "kv",
            "tags": ["python", "key-value"],
            "instance_guid": instance_guid,
            "instance_name": "kv",
            "binding_guid": binding_guid,
            "binding_name": null,
            "credentials": bound["credentials"],
            "syslog_drain_url": null,
            "volume_mounts": [],
        }]}),
        "{vcap:#}"
    );
    assert_eq!(
        bound["credentials"]["served_by"], "openbrokerapi",
        "{bound:#}"
    );
    admin
        .run(&["service", "kv"])
        .success()
        .has_line_starting(&format!("{app} create succeeded {binding_guid} "));

    // A service key: its own binding at the broker, its own credentials.
    admin
        .run(&["create-service-key", "kv", "key"])
        .success()
        .has_line("Creating service key key for service instance kv as admin...")
        .has_line("OK");
    let key = broker_event(&broker, |event| {
        event["event"] == "bind"
            && event["instance_id"] == instance_guid.as_str()
            && event["app_guid"].is_null()
    });
    assert_ne!(key["binding_id"], bound["binding_id"]);
    let text = admin
        .run(&["service-key", "kv", "key"])
        .success()
        .has_line("Getting key key for service instance kv as admin...")
        .stdout;
    let json_start = text.find('{').unwrap_or_else(|| panic!("no JSON: {text}"));
    let shown: Value =
        serde_json::from_str(&text[json_start..]).unwrap_or_else(|error| panic!("{error}: {text}"));
    assert_eq!(
        shown,
        serde_json::json!({"credentials": key["credentials"]}),
        "{text}"
    );

    // Unbinding, deleting the key, the instance and the broker: each reaches the broker.
    admin
        .run(&["unbind-service", &app, "kv"])
        .success()
        .has_line(&format!(
            "Unbinding app {app} from service kv in org {org} / space apps as admin..."
        ))
        .has_line("OK");
    broker_event(&broker, |event| {
        event["event"] == "unbind"
            && event["binding_id"] == bound["binding_id"]
            && event["known"] == true
    });
    admin
        .run(&["delete-service-key", "kv", "key", "-f"])
        .success()
        .has_line("Deleting key key for service instance kv as admin...")
        .has_line("OK");
    broker_event(&broker, |event| {
        event["event"] == "unbind"
            && event["binding_id"] == key["binding_id"]
            && event["known"] == true
    });
    admin
        .run(&["delete-service", "kv", "-f"])
        .success()
        .has_line(&format!(
            "Deleting service instance kv in org {org} / space apps as admin..."
        ))
        .has_line("Service instance kv deleted.")
        .has_line("OK");
    broker_event(&broker, |event| {
        event["event"] == "deprovision"
            && event["instance_id"] == instance_guid.as_str()
            && event["outcome"] == "deleted"
    });
    admin
        .run(&["services"])
        .success()
        .has_line("No service instances found.");
    admin.run(&["delete", &app, "-r", "-f"]).success();
    admin
        .run(&["delete-service-broker", &broker_name, "-f"])
        .success()
        .has_line(&format!("Deleting service broker {broker_name}..."))
        .has_line("OK");
    admin
        .run(&["service-brokers"])
        .success()
        .lacks(&broker_name);
    admin.run(&["delete-org", &org, "-f"]).success();
}

#[test]
fn a_broker_that_times_out_fails_the_create_and_is_cleaned_up() {
    let Some((cf, platform)) = cf_and_local_platform() else {
        return;
    };
    let Some(timeout) = platform.options.broker_client_timeout_seconds else {
        eprintln!("skipping: the platform's broker timeout is unknown");
        return;
    };
    let Some(python) = python_for_broker() else {
        return;
    };
    // The slow plan answers well after the Cloud Controller has given up.
    let broker = PythonBroker::start(&python, timeout + 10).expect("the Python broker starts");
    let (admin, org) = targeted_admin(&cf, platform, "pyslow");
    let broker_name = unique_name("pyslow");
    register_python_broker(&admin, &broker, &broker_name);

    let failed = admin
        .run(&[
            "create-service",
            "pystore",
            "slow",
            "late",
            "-b",
            &broker_name,
        ])
        .failure()
        .has_line(&format!(
            "Creating service instance late in org {org} / space apps as admin..."
        ))
        .has_line("FAILED");
    let job_line = failed
        .text()
        .lines()
        .find(|line| line.starts_with("Job ("))
        .map(str::to_owned)
        .unwrap_or_else(|| panic!("no job line:\n{}", failed.text()));
    let job_guid = job_line
        .strip_prefix("Job (")
        .and_then(|rest| rest.split_once(')'))
        .map(|(guid, _)| guid.to_owned())
        .unwrap_or_default();
    assert_eq!(
        job_line,
        format!(
            "Job ({job_guid}) failed: provision could not be completed: \
             The request to the service broker timed out"
        )
    );

    // The instance stays, failed, with CC's message, so that the user can see and delete it.
    admin
        .run(&["services"])
        .success()
        .has_line(&format!("late pystore slow create failed {broker_name} no"));
    admin
        .run(&["service", "late"])
        .success()
        .has_line("status: create failed")
        .has_line("message: The request to the service broker timed out");
    let instance_guid = guid_of(&admin, "service", "late");

    // Orphan mitigation: the Cloud Controller deleted it at the broker while the provision was
    // still running there, so the broker abandoned it and keeps nothing.
    let provision = broker_event(&broker, |event| {
        event["event"] == "provision" && event["instance_id"] == instance_guid.as_str()
    });
    assert_eq!(provision["plan"], "slow");
    broker_event(&broker, |event| {
        event["event"] == "deprovision"
            && event["instance_id"] == instance_guid.as_str()
            && event["outcome"] == "cancelled"
    });
    broker_event(&broker, |event| {
        event["event"] == "provision-abandoned" && event["instance_id"] == instance_guid.as_str()
    });
    assert!(
        broker.events_named("provisioned").is_empty(),
        "{:#?}",
        broker.events()
    );

    // The user cleans up with a plain delete (the broker answers 410 Gone: already deleted).
    admin
        .run(&["delete-service", "late", "-f"])
        .success()
        .has_line("Service instance late deleted.")
        .has_line("OK");
    broker_event(&broker, |event| {
        event["event"] == "deprovision"
            && event["instance_id"] == instance_guid.as_str()
            && event["outcome"] == "gone"
    });
    admin
        .run(&["services"])
        .success()
        .has_line("No service instances found.");
    admin
        .run(&["delete-service-broker", &broker_name, "-f"])
        .success();
    admin.run(&["delete-org", &org, "-f"]).success();
}

/// Plan visibility per plan and per org, as a space developer sees it; a broker moved to another
/// URL and renamed; an instance renamed and retagged; a broker with instances cannot be deleted.
#[test]
fn plan_visibility_broker_updates_and_instance_renames() {
    let Some((cf, platform)) = cf_and_local_platform() else {
        return;
    };
    let broker = Broker::start("memdb", &[]).expect("the broker starts");
    let (admin, org) = targeted_admin(&cf, platform, "vis");
    let name = unique_name("vis");
    admin
        .run(&[
            "create-service-broker",
            &name,
            &broker.username,
            &broker.password,
            &broker.url,
        ])
        .success();
    let developer = unique_name("dev");
    admin
        .run(&["create-user", &developer, "pa55word"])
        .success();
    admin
        .run(&["set-space-role", &developer, &org, "apps", "SpaceDeveloper"])
        .success();
    let dev = crate::session(&cf, platform);
    dev.run(&["auth", &developer, "pa55word"]).success();
    dev.run(&["target", "-o", &org, "-s", "apps"]).success();
    let dev_plans = || {
        let text = dev.run(&["marketplace", "-e", "memdb", "-b", &name]).text();
        ["small", "large", "async"]
            .into_iter()
            .filter(|plan| text.lines().any(|line| line.trim_start().starts_with(plan)))
            .collect::<Vec<_>>()
    };
    assert_eq!(dev_plans(), Vec::<&str>::new());

    // One plan for one org.
    admin
        .run(&[
            "enable-service-access",
            "memdb",
            "-b",
            &name,
            "-p",
            "small",
            "-o",
            &org,
        ])
        .success()
        .contains(&format!(
            "Enabling access to plan small of service offering memdb from broker {name} for org {org} as admin..."
        ));
    admin
        .run(&["service-access", "-b", &name])
        .success()
        .has_line(&format!("memdb small limited {org}"))
        .has_line("memdb large none");
    assert_eq!(dev_plans(), vec!["small"]);

    // One plan for everyone, then taken away again; then the whole offering.
    admin
        .run(&["enable-service-access", "memdb", "-b", &name, "-p", "large"])
        .success();
    admin
        .run(&["service-access", "-b", &name])
        .success()
        .has_line("memdb large all");
    assert_eq!(dev_plans(), vec!["small", "large"]);
    admin
        .run(&["disable-service-access", "memdb", "-b", &name, "-p", "large"])
        .success()
        .contains(&format!(
            "Disabling access to plan large of service offering memdb from broker {name} for all orgs as admin..."
        ));
    assert_eq!(dev_plans(), vec!["small"]);

    // The developer provisions the visible plan, renames and retags the instance.
    dev.run(&["create-service", "memdb", "small", "kv", "-b", &name])
        .success();
    dev.run(&["create-service", "memdb", "large", "nope", "-b", &name])
        .failure();
    dev.run(&["rename-service", "kv", "kv2"]).success();
    dev.run(&["update-service", "kv2", "-t", "red, green"])
        .success();
    dev.run(&["service", "kv2"])
        .success()
        .has_line("tags: red, green")
        .has_line("plan: small");

    // The broker moves: a new process on another port, and a new name.
    let moved = Broker::start("memdb", &[]).expect("the second broker starts");
    admin
        .run(&[
            "update-service-broker",
            &name,
            &moved.username,
            &moved.password,
            &moved.url,
        ])
        .success()
        .contains(&format!("Updating service broker {name} as admin..."));
    admin
        .run(&["service-brokers"])
        .success()
        .has_line(&format!("{name} {}", moved.url));
    let renamed = format!("{name}-2");
    admin
        .run(&["rename-service-broker", &name, &renamed])
        .success()
        .contains(&format!(
            "Renaming service broker {name} to {renamed} as admin..."
        ));
    // The catalog of the new process offers the same plans.
    admin
        .run(&["service-access", "-b", &renamed])
        .success()
        .has_line(&format!("memdb small limited {org}"));

    // Instances keep the broker.
    admin
        .run(&["delete-service-broker", &renamed, "-f"])
        .failure()
        .contains("instances");
    admin
        .run(&["purge-service-instance", "kv2", "-f"])
        .success();
    admin
        .run(&["disable-service-access", "memdb", "-b", &renamed])
        .success();
    assert_eq!(dev_plans(), Vec::<&str>::new());
    admin
        .run(&["delete-service-broker", &renamed, "-f"])
        .success();
    admin.run(&["delete-user", &developer, "-f"]).success();
    admin.run(&["delete-org", &org, "-f"]).success();
}
