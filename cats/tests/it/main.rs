//! Acceptance scenarios: the real `cf` CLI against a real Kiln (or an external deployment).

mod binary_app;
mod foundation;
mod logs;
mod push;
mod services;

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
