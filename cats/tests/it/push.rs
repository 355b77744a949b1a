//! The `cf push` story: a static site staged with the staticfile buildpack, run in runc
//! containers on a DEA and served through the router; scale, stop, start, delete.

use std::time::Duration;

use cats::unique_name;

use crate::{admin_session, cf_binary, eventually, shared_platform};

fn asset(name: &str) -> String {
    format!("{}/assets/{name}", cats::cats_dir().display())
}

#[test]
fn push_a_static_site_scale_stop_start_and_delete_it() {
    let Some(cf) = cf_binary() else { return };
    let platform = shared_platform();
    if !platform.options.runs_apps {
        assert!(
            std::env::var("KILN_REQUIRE_RUNC").as_deref() != Ok("1"),
            "KILN_REQUIRE_RUNC=1 but kiln up runs no DEA (root and runc are needed)"
        );
        eprintln!("skipping: this kiln up runs no DEA (needs root and runc)");
        return;
    }
    let (org, app) = (unique_name("push"), unique_name("site"));
    let admin = admin_session(&cf, platform);
    admin.run(&["create-org", &org]).success();
    admin.run(&["create-space", "apps", "-o", &org]).success();
    admin.run(&["target", "-o", &org, "-s", "apps"]).success();

    admin
        .run(&["push", &app, "-p", &asset("static-site"), "-m", "64M"])
        .success()
        .contains(&format!("name:              {app}"))
        .contains("requested state:   started")
        .contains(&format!(
            "routes:            {app}.{}",
            platform.options.apps_domain
        ))
        .contains("staticfile_buildpack")
        .contains("#0   running");
    let (status, _, body) = platform.get_app(&app, "/").unwrap();
    assert_eq!(status, 200, "{body}");
    assert!(body.contains("hello from a Kiln static site"), "{body}");

    admin.run(&["scale", &app, "-i", "3"]).success();
    assert!(
        eventually(Duration::from_secs(60), || admin
            .run(&["app", &app])
            .text()
            .contains("instances:      3/3")),
        "3 instances running:\n{}",
        admin.run(&["app", &app]).text()
    );
    for _ in 0..6 {
        assert_eq!(platform.get_app(&app, "/").unwrap().0, 200);
    }
    admin
        .run(&["apps"])
        .success()
        .contains(&app)
        .contains("web:3/3");

    admin.run(&["stop", &app]).success();
    let (status, router_error, _) = platform.get_app(&app, "/").unwrap();
    assert_eq!(
        (status, router_error.as_deref()),
        (404, Some("unknown_route"))
    );

    admin
        .run(&["start", &app])
        .success()
        .contains("#0   running");
    assert!(eventually(Duration::from_secs(30), || platform
        .get_app(&app, "/")
        .is_ok_and(|(status, _, _)| status == 200)));

    admin.run(&["delete", &app, "-r", "-f"]).success();
    admin.run(&["apps"]).success().lacks(&app);
    admin.run(&["routes"]).success().lacks(&app);
    let (status, router_error, _) = platform.get_app(&app, "/").unwrap();
    assert_eq!(
        (status, router_error.as_deref()),
        (404, Some("unknown_route"))
    );
}
