//! The annotated example configuration stays valid; bad configurations are refused.

use loggregator::LoggregatorConfig;

#[test]
fn the_example_config_parses_and_validates() {
    let text = std::fs::read_to_string(format!("{}/loggregator.example.yml", manifest_dir()))
        .expect("loggregator.example.yml");
    let config: LoggregatorConfig = serde_yaml::from_str(&text).expect("the example parses");
    config.validate().expect("the example is valid");
    assert_eq!(config.max_envelopes_per_source, 100_000);
    assert_eq!(config.uaa_url.as_deref(), Some("http://127.0.0.1:8081"));
    assert_eq!(
        config.internal_api.as_ref().map(|c| c.username.as_str()),
        Some("internal_user")
    );
}

#[test]
fn a_misspelt_field_is_rejected() {
    let error = serde_yaml::from_str::<LoggregatorConfig>("max_envelopes: 10\n").unwrap_err();
    assert!(error.to_string().contains("unknown field"), "{error}");
}

#[test]
fn authorization_needs_uaa_and_cc_unless_skipped() {
    let config: LoggregatorConfig = serde_yaml::from_str("{}").unwrap();
    assert!(config
        .validate()
        .unwrap_err()
        .to_string()
        .contains("uaa_url"));
    let config: LoggregatorConfig = serde_yaml::from_str("skip_authorization: true\n").unwrap();
    config.validate().unwrap();
    let config: LoggregatorConfig =
        serde_yaml::from_str("skip_authorization: true\nmax_envelopes_per_source: 0\n").unwrap();
    assert!(config.validate().is_err());
    let config: LoggregatorConfig =
        serde_yaml::from_str("skip_authorization: true\ncc_url: not a url\n").unwrap();
    assert!(config.validate().is_err());
}

/// This crate's directory: cargo's `CARGO_MANIFEST_DIR` at run time, else the compile-time one (a
/// target directory shared by several clones may run a test binary compiled in another clone).
fn manifest_dir() -> String {
    std::env::var("CARGO_MANIFEST_DIR").unwrap_or_else(|_| env!("CARGO_MANIFEST_DIR").to_owned())
}
