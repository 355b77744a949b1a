//! Kiln's acceptance harness, in the spirit of Cloud Foundry's CATs: scenarios drive the real `cf`
//! CLI (found on PATH or through `CF_CLI`) against a platform that is either started here with
//! `kiln up` on ephemeral ports and a temporary data directory, or an external deployment named by
//! a JSON config in `CATS_CONFIG`. Each scenario gets its own `CF_HOME` and unique names, so
//! scenarios run in parallel. The harness reaches the platform only through the `cf` binary, the
//! `kiln` binary and HTTP.

mod broker;
mod cf;
mod platform;
mod python_broker;

pub use broker::Broker;
pub use cf::{CfOutput, CfSession};
pub use platform::{kiln_binary, Platform, PlatformOptions};
pub use python_broker::{python_broker_script, python_with_openbrokerapi, PythonBroker};

/// The `cats/` directory of the source tree under test: cargo's `CARGO_MANIFEST_DIR` at run time,
/// else the one this crate was compiled in. (A cargo target directory shared by several clones
/// may run a test binary compiled in another clone, which may be gone since.)
pub fn cats_dir() -> std::path::PathBuf {
    std::env::var_os("CARGO_MANIFEST_DIR")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|| std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR")))
}

/// A name no other scenario (or earlier run against the same deployment) uses.
pub fn unique_name(prefix: &str) -> String {
    let suffix = uuid::Uuid::new_v4().simple().to_string();
    format!("{prefix}-{}", &suffix[..10])
}

/// Whether a prerequisite that is missing must fail the run (CI sets `KILN_REQUIRE_CF=1`).
pub fn cf_is_required() -> bool {
    std::env::var("KILN_REQUIRE_CF").is_ok_and(|v| v == "1")
}

/// Finds the `cf` CLI v8: `CF_CLI`, else `cf` on PATH.
pub fn find_cf() -> Option<std::path::PathBuf> {
    find_binary("CF_CLI", "cf")
}

/// Finds the cf CLI v6 (the last v2 client, `scripts/install-cf6`): `CF6_CLI`, else `cf6` on PATH.
pub fn find_cf6() -> Option<std::path::PathBuf> {
    find_binary("CF6_CLI", "cf6")
}

fn find_binary(variable: &str, name: &str) -> Option<std::path::PathBuf> {
    if let Some(path) = std::env::var_os(variable) {
        return Some(path.into());
    }
    std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|dir| dir.join(name))
            .find(|candidate| candidate.is_file())
    })
}
