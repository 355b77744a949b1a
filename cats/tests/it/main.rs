//! Acceptance scenarios: the real `cf` CLI against a real Kiln (or an external deployment).

mod binary_app;
mod foundation;
mod logs;
mod push;
mod services;
mod up_broker;
mod v2_cli;

use std::path::PathBuf;
use std::sync::OnceLock;

use cats::{CfSession, Platform};

/// The `cf` binary, or `None` when it is missing and not required (the scenario then skips).
pub(crate) fn cf_binary() -> Option<PathBuf> {
    match cats::find_cf() {
        Some(path) => Some(path),
        None if cats::cf_is_required() => {
            panic!(
                "the cf CLI is required (KILN_REQUIRE_CF=1) but was not found on PATH or in CF_CLI"
            )
        }
        None => {
            eprintln!("skipping: the cf CLI is not installed (run scripts/install-deps)");
            None
        }
    }
}

/// The platform shared by the scenarios of this run, started on first use.
pub(crate) fn shared_platform() -> &'static Platform {
    static PLATFORM: OnceLock<Platform> = OnceLock::new();
    PLATFORM.get_or_init(|| Platform::from_environment().expect("the platform under test starts"))
}

/// A fresh cf session pointed at `platform` (`cf api`), not logged in.
pub(crate) fn session(cf: &std::path::Path, platform: &Platform) -> CfSession {
    let session = CfSession::new(cf).expect("a CF_HOME");
    let mut args = vec!["api", platform.options.api.as_str()];
    if platform.options.skip_ssl_validation {
        args.push("--skip-ssl-validation");
    }
    session.run(&args).success();
    session
}

/// A session logged in as the platform admin.
pub(crate) fn admin_session(cf: &std::path::Path, platform: &Platform) -> CfSession {
    let session = session(cf, platform);
    session
        .run(&[
            "auth",
            &platform.options.admin_user,
            &platform.options.admin_password,
        ])
        .success();
    session
}

/// Polls `condition` every 200 ms until it holds or `limit` passes.
pub(crate) fn eventually(limit: std::time::Duration, mut condition: impl FnMut() -> bool) -> bool {
    let deadline = std::time::Instant::now() + limit;
    while std::time::Instant::now() < deadline {
        if condition() {
            return true;
        }
        std::thread::sleep(std::time::Duration::from_millis(200));
    }
    condition()
}

/// An admin session targeting a new org (returned) and its space `apps`.
pub(crate) fn targeted_admin(
    cf: &std::path::Path,
    platform: &Platform,
    prefix: &str,
) -> (CfSession, String) {
    let org = cats::unique_name(prefix);
    let admin = admin_session(cf, platform);
    admin.run(&["create-org", &org]).success();
    admin.run(&["create-space", "apps", "-o", &org]).success();
    admin.run(&["target", "-o", &org, "-s", "apps"]).success();
    (admin, org)
}

/// A directory holding the instance server (`cats/assets/instance-server`) as `server`.
pub(crate) fn instance_server_dir() -> tempfile::TempDir {
    let dir = tempfile::tempdir().expect("a temporary directory");
    std::fs::copy(
        env!("CARGO_BIN_EXE_instance-server"),
        dir.path().join("server"),
    )
    .expect("copying the instance server");
    dir
}
