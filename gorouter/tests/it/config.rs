//! The annotated example configuration stays valid.

use gorouter::RouterConfig;

#[test]
fn the_example_config_parses_and_validates() {
    let text = std::fs::read_to_string(format!("{}/router.example.yml", manifest_dir()))
        .expect("router.example.yml");
    let config: RouterConfig = serde_yaml::from_str(&text).expect("the example parses");
    config.validate().expect("the example is valid");
    assert_eq!(config.prune_threshold_secs, 120);
    assert_eq!(config.register_interval_secs, 20);
    assert_eq!(config.hosts, vec!["127.0.0.1".to_owned()]);
    assert_eq!(config.index, 0);
    assert_eq!(config.loggregator_ingress, None);
    // The commented-out example value parses too.
    let ingress = text
        .lines()
        .find_map(|line| line.strip_prefix("# loggregator_ingress: "))
        .expect("the example shows loggregator_ingress");
    let config: RouterConfig =
        serde_yaml::from_str(&format!("loggregator_ingress: {ingress}\nindex: 3\n")).unwrap();
    config.validate().unwrap();
    assert_eq!(
        config.loggregator_ingress,
        Some("127.0.0.1:3457".parse().unwrap())
    );
    assert_eq!(config.index, 3);
}

#[test]
fn a_misspelt_field_is_rejected() {
    let error = serde_yaml::from_str::<RouterConfig>("prune_threshold: 10\n").unwrap_err();
    assert!(error.to_string().contains("unknown field"), "{error}");
}

/// This crate's directory: cargo's `CARGO_MANIFEST_DIR` at run time, else the compile-time one (a
/// target directory shared by several clones may run a test binary compiled in another clone).
fn manifest_dir() -> String {
    std::env::var("CARGO_MANIFEST_DIR").unwrap_or_else(|_| env!("CARGO_MANIFEST_DIR").to_owned())
}
