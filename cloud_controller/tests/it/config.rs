//! The shipped example configuration parses and validates; bad configs are refused before binding.

use cloud_controller::CcConfig;

#[test]
fn example_config_parses_and_validates() {
    let text = include_str!("../../cloud_controller.example.yml");
    let config: CcConfig = serde_yaml::from_str(text).expect("example config parses");
    config.validate().expect("example config is valid");
    assert_eq!(config.apps_domain, "apps.localhost");
    assert_eq!(config.uaa.client_id, "cloud_controller_username_lookup");
    assert_eq!(
        config.blobstore_dir().unwrap(),
        std::path::PathBuf::from(".kiln/blobstore")
    );
}

#[test]
fn blobstore_defaults_beside_a_sqlite_database_and_is_required_with_postgres() {
    let sqlite = "external_url: http://a\ndatabase_url: sqlite:///var/kiln/cc.db\nuaa: {url: http://u, client_id: c, client_secret: s}\n";
    let config: CcConfig = serde_yaml::from_str(sqlite).unwrap();
    config.validate().unwrap();
    assert_eq!(
        config.blobstore_dir().unwrap(),
        std::path::PathBuf::from("/var/kiln/blobstore")
    );
    let postgres = "external_url: http://a\ndatabase_url: postgres://k@h/db\nuaa: {url: http://u, client_id: c, client_secret: s}\n";
    let config: CcConfig = serde_yaml::from_str(postgres).unwrap();
    assert!(config.validate().is_err());
    let with_dir = format!("{postgres}blobstore: {{local_dir: /srv/blobs}}\n");
    let config: CcConfig = serde_yaml::from_str(&with_dir).unwrap();
    config.validate().unwrap();
    let unknown = format!("{postgres}blobstore: {{bucket: x}}\n");
    assert!(serde_yaml::from_str::<CcConfig>(&unknown).is_err());
}

#[test]
fn unknown_keys_and_bad_values_are_refused() {
    let unknown = "external_url: http://a\ndatabase_url: sqlite://x\nuaa: {url: http://u, client_id: c, client_secret: s}\ncolour: blue\n";
    assert!(serde_yaml::from_str::<CcConfig>(unknown).is_err());
    let memory = "external_url: http://a\ndatabase_url: 'sqlite://:memory:'\nuaa: {url: http://u, client_id: c, client_secret: s}\n";
    let config: CcConfig = serde_yaml::from_str(memory).unwrap();
    assert!(config.validate().is_err());
    let bad_url = "external_url: nope\ndatabase_url: sqlite://x\nuaa: {url: http://u, client_id: c, client_secret: s}\n";
    let config: CcConfig = serde_yaml::from_str(bad_url).unwrap();
    assert!(config.validate().is_err());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn run_refuses_an_invalid_config_before_serving() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let config =
        crate::support::cc_config("mysql://nope", "http://127.0.0.1:1", "http://127.0.0.1:2");
    assert!(cloud_controller::run(config, listener).await.is_err());
}
