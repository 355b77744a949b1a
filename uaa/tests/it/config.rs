//! Configuration: the shipped example parses, defaults apply, bad configs fail before binding.

use uaa::{UaaConfig, UaaError};

use crate::support::test_config;

#[test]
fn example_config_parses() {
    let text = std::fs::read_to_string(format!("{}/uaa.example.yml", manifest_dir())).unwrap();
    let config: UaaConfig = serde_yaml::from_str(&text).expect("uaa.example.yml parses");
    assert_eq!(config.issuer_url, "http://127.0.0.1:9023");
    assert_eq!(
        config
            .clients
            .iter()
            .find(|c| c.client_id == "cf")
            .unwrap()
            .secret,
        ""
    );
    assert_eq!(config.users[0].username, "admin");
}

#[test]
fn defaults_apply_and_unknown_fields_are_rejected() {
    let config: UaaConfig = serde_yaml::from_str(
        "issuer_url: http://localhost:9023\ndatabase_url: sqlite:///tmp/x.db\n",
    )
    .unwrap();
    assert_eq!(config.access_token_validity_secs, 1200);
    assert_eq!(config.refresh_token_validity_secs, 2_592_000);
    assert_eq!(config.password_hash_cost, 10);
    assert!(config.users.is_empty() && config.clients.is_empty() && config.workers.is_none());
    let error = serde_yaml::from_str::<UaaConfig>(
        "issuer_url: http://localhost:9023\ndatabase_url: sqlite:///tmp/x.db\nport: 1\n",
    )
    .unwrap_err();
    assert!(error.to_string().contains("unknown field"), "{error}");
}

#[tokio::test]
async fn invalid_configs_fail_before_anything_opens() {
    let dir = tempfile::tempdir().unwrap();
    let db_path = dir.path().join("never-created.db");
    let database_url = format!("sqlite://{}", db_path.display());
    type Tweak = Box<dyn Fn(&mut UaaConfig)>;
    let tweaks: Vec<(&str, Tweak)> = vec![
        (
            "issuer_url",
            Box::new(|c| c.issuer_url = "not a url".to_owned()),
        ),
        (
            "issuer_url",
            Box::new(|c| c.issuer_url = "ftp://example.com".to_owned()),
        ),
        ("password_hash_cost", Box::new(|c| c.password_hash_cost = 3)),
        (
            "database_url",
            Box::new(|c| c.database_url = "mysql://x".to_owned()),
        ),
        (
            "database_url",
            Box::new(|c| c.database_url = "sqlite://:memory:".to_owned()),
        ),
        (
            "grant type",
            Box::new(|c| {
                c.clients[0]
                    .authorized_grant_types
                    .push("implicit".to_owned())
            }),
        ),
        (
            "listed twice",
            Box::new(|c| {
                let duplicate = c.clients[0].clone();
                c.clients.push(duplicate);
            }),
        ),
        (
            "password",
            Box::new(|c| c.users[0].password = String::new()),
        ),
    ];
    for (expected, tweak) in tweaks {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let mut config = test_config("http://127.0.0.1:1", &database_url);
        tweak(&mut config);
        match uaa::run(config, listener).await {
            Err(UaaError::Config(message)) => {
                assert!(message.contains(expected), "{expected}: {message}")
            }
            Err(other) => panic!("{expected}: unexpected error {other}"),
            Ok(_) => panic!("{expected}: invalid config accepted"),
        }
    }
    assert!(
        !db_path.exists(),
        "no database is created for an invalid config"
    );
}

#[test]
fn debug_output_hides_secrets() {
    let mut config = test_config(
        "http://127.0.0.1:1",
        "postgres://kiln:db-secret@127.0.0.1/uaa",
    );
    config.clients[1].secret = "client-secret-value".to_owned();
    let printed = format!("{config:?}");
    for secret in [
        "db-secret",
        "client-secret-value",
        crate::support::ADMIN_PASSWORD,
    ] {
        assert!(!printed.contains(secret), "{secret} leaked in {printed}");
    }
}

/// This crate's directory: cargo's `CARGO_MANIFEST_DIR` at run time, else the compile-time one (a
/// target directory shared by several clones may run a test binary compiled in another clone).
fn manifest_dir() -> String {
    std::env::var("CARGO_MANIFEST_DIR").unwrap_or_else(|_| env!("CARGO_MANIFEST_DIR").to_owned())
}
