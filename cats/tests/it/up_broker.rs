//! `kiln up --postgres-broker-url`: the platform runs the PostgreSQL broker itself and registers
//! it with the Cloud Controller (as `postgres`), again at every start on its new port.

use cats::{unique_name, Platform};

use crate::services::{postgres_admin_url, psql};
use crate::{admin_session, cf_binary};

#[test]
fn kiln_up_runs_and_registers_its_postgres_broker() {
    let Some(cf) = cf_binary() else { return };
    let Some(admin_url) = postgres_admin_url() else {
        return;
    };
    if std::env::var("CATS_CONFIG").is_ok() {
        eprintln!("skipping: starts a kiln up of its own");
        return;
    }
    let psql = psql().expect("psql is installed with PostgreSQL");
    let data_dir = tempfile::tempdir().unwrap();
    // No DEA: the shared platform's DEA already uses the instance port range.
    let args = ["--no-dea", "--postgres-broker-url", admin_url.as_str()];
    let platform = Platform::start_local_in(data_dir.path(), &args).expect("kiln up starts");
    let admin = admin_session(&cf, &platform);
    let brokers = admin.run(&["service-brokers"]).success().text();
    let first_url = brokers
        .lines()
        .find_map(|line| line.strip_prefix("postgres "))
        .map(|rest| rest.trim().to_owned())
        .unwrap_or_else(|| panic!("no postgres broker:\n{brokers}"));
    assert!(first_url.starts_with("http://127.0.0.1:"), "{first_url}");

    let org = unique_name("pgup");
    admin.run(&["create-org", &org]).success();
    admin.run(&["create-space", "dev", "-o", &org]).success();
    admin.run(&["target", "-o", &org, "-s", "dev"]).success();
    admin
        .run(&["enable-service-access", "postgresql"])
        .success();
    admin
        .run(&["marketplace"])
        .success()
        .contains("postgresql   small, large");
    admin
        .run(&["create-service", "postgresql", "small", "db"])
        .success()
        .contains("Service instance db created.");
    admin.run(&["create-service-key", "db", "k"]).success();
    let key = admin.run(&["service-key", "db", "k"]).success().text();
    let json_start = key.find('{').expect("the key is JSON");
    let key: serde_json::Value = serde_json::from_str(&key[json_start..]).expect("JSON");
    let uri = key["credentials"]["uri"]
        .as_str()
        .expect("a uri")
        .to_owned();
    let output = std::process::Command::new(&psql)
        .args([
            uri.as_str(),
            "-qtAc",
            "CREATE TABLE t (x int); INSERT INTO t VALUES (7); SELECT x FROM t",
        ])
        .output()
        .unwrap();
    assert_eq!(
        String::from_utf8_lossy(&output.stdout).trim(),
        "7",
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );

    // A restart: a new port and password, the registration follows, the instance stays usable.
    assert_eq!(platform.terminate().unwrap(), 0);
    let platform = Platform::start_local_in(data_dir.path(), &args).expect("kiln up restarts");
    let admin = admin_session(&cf, &platform);
    admin.run(&["target", "-o", &org, "-s", "dev"]).success();
    let brokers = admin.run(&["service-brokers"]).success().text();
    assert!(
        brokers.lines().any(|line| line.starts_with("postgres ")) && !brokers.contains(&first_url),
        "the registration did not follow the new port:\n{brokers}"
    );
    admin
        .run(&["delete-service-key", "db", "k", "-f"])
        .success();
    admin
        .run(&["delete-service", "db", "-f"])
        .success()
        .contains("Service instance db deleted.");
    admin.run(&["delete-org", &org, "-f"]).success();
    assert_eq!(platform.terminate().unwrap(), 0);
}
