//! The binary-app story of the push issue: a server built from `cats/assets/instance-server`,
//! pushed with `-b binary_buildpack -c ./server`, scaled to three instances answering round-robin
//! by index, environment changes visible after a restart, stop/start through the router,
//! resource matching on a re-push, `cf scale -m`, `cf restage`, `cf delete -r`; and the manifest
//! and flag variants (`instances`, `memory`, `disk_quota`, `buildpacks`, `command`, `env`,
//! `routes`, `no-route`, `random-route`, `health-check-type`, `--no-start`, `--no-route`,
//! `--random-route`).

use std::collections::BTreeMap;
use std::time::Duration;

use cats::{unique_name, Platform};

use crate::{cf_binary, eventually, instance_server_dir, shared_platform, targeted_admin};

/// A directory holding the instance server as `server` plus a `version.txt`.
fn server_dir(version: &str) -> tempfile::TempDir {
    let dir = instance_server_dir();
    std::fs::write(dir.path().join("version.txt"), version).expect("writing version.txt");
    dir
}

/// The platform when it runs apps; `None` (skip) otherwise, unless runc is required.
fn platform_running_apps() -> Option<(std::path::PathBuf, &'static Platform)> {
    let cf = cf_binary()?;
    let platform = shared_platform();
    if !platform.options.runs_apps {
        assert!(
            std::env::var("KILN_REQUIRE_RUNC").as_deref() != Ok("1"),
            "KILN_REQUIRE_RUNC=1 but kiln up runs no DEA (root and runc are needed)"
        );
        eprintln!("skipping: this kiln up runs no DEA (needs root and runc)");
        return None;
    }
    Some((cf, platform))
}

fn body(platform: &Platform, host: &str, path: &str) -> (u16, String) {
    let (status, _, body) = platform.get_app(host, path).expect("the router answers");
    (status, body)
}

#[test]
fn binary_app_scales_round_robin_restarts_with_new_env_and_repushes_only_changes() {
    let Some((cf, platform)) = platform_running_apps() else {
        return;
    };
    let (admin, _org) = targeted_admin(&cf, platform, "bin");
    let app = unique_name("api");
    let first = server_dir("v1");
    let dir = first.path().to_str().unwrap().to_owned();
    let push = [
        "push",
        &app,
        "-p",
        &dir,
        "-b",
        "binary_buildpack",
        "-c",
        "./server",
        "-m",
        "64M",
    ];
    // The whole server binary (a few MiB) is uploaded the first time.
    admin
        .run(&push)
        .success()
        .contains("MiB")
        .contains("binary_buildpack")
        .contains("start command:   ./server")
        .contains("#0   running");
    assert_eq!(body(platform, &app, "/index"), (200, "0".to_owned()));

    // Three instances, answering in turn.
    admin.run(&["scale", &app, "-i", "3"]).success();
    assert!(
        eventually(Duration::from_secs(60), || admin
            .run(&["app", &app])
            .text()
            .contains("instances:      3/3")),
        "{}",
        admin.run(&["app", &app]).text()
    );
    let mut answers: BTreeMap<String, usize> = BTreeMap::new();
    let mut order = Vec::new();
    for _ in 0..30 {
        let (status, index) = body(platform, &app, "/index");
        assert_eq!(status, 200, "{index}");
        order.push(index.clone());
        *answers.entry(index).or_default() += 1;
    }
    assert_eq!(
        answers.keys().cloned().collect::<Vec<_>>(),
        ["0", "1", "2"],
        "{order:?}"
    );
    // Round-robin: every window of three consecutive answers holds three different indexes.
    for window in order.windows(3) {
        assert!(
            window[0] != window[1] && window[1] != window[2] && window[0] != window[2],
            "not round-robin: {order:?}"
        );
    }
    let app_output = admin.run(&["app", &app]).success();
    for needle in ["#0   running", "#1   running", "#2   running", "of 64M"] {
        assert!(app_output.text().contains(needle), "{}", app_output.text());
    }
    admin.run(&["apps"]).success().contains("web:3/3");

    // New environment, visible after a restart.
    admin
        .run(&["set-env", &app, "GREETING", "hello"])
        .success()
        .contains("TIP: Use 'cf restage");
    admin.run(&["restart", &app]).success();
    for _ in 0..3 {
        assert_eq!(
            body(platform, &app, "/env/GREETING"),
            (200, "hello".to_owned())
        );
    }
    admin
        .run(&["env", &app])
        .success()
        .contains("GREETING: hello");

    // Stopped: the router no longer knows the route; started again: back.
    admin.run(&["stop", &app]).success();
    let (status, router_error, _) = platform.get_app(&app, "/").unwrap();
    assert_eq!(
        (status, router_error.as_deref()),
        (404, Some("unknown_route"))
    );
    admin
        .run(&["start", &app])
        .success()
        .contains("#2   running");
    assert_eq!(body(platform, &app, "/index").0, 200);

    // A re-push with one changed file uploads only that file (bytes, not MiB).
    std::fs::write(first.path().join("version.txt"), "v2").unwrap();
    let repush = admin.run(&push).success();
    let upload_line = repush
        .text()
        .lines()
        .find(|line| line.contains("100.00%"))
        .map(str::to_owned)
        .unwrap_or_default();
    assert!(
        upload_line.contains(" B / ") && !upload_line.contains("MiB"),
        "the re-push uploaded more than the changed file: {upload_line:?}\n{}",
        repush.text()
    );
    assert_eq!(
        body(platform, &app, "/file/version.txt"),
        (200, "v2".to_owned())
    );

    // Memory scale (restarts the instances) and restage.
    admin
        .run(&["scale", &app, "-m", "80M", "-f"])
        .success()
        .contains("of 80M");
    admin
        .run(&["restage", &app])
        .success()
        .contains("Staging app and tracing logs...")
        .contains("   -----> Binary Buildpack")
        .contains("#0   running")
        .contains("#2   running");
    assert_eq!(body(platform, &app, "/index").0, 200);
    assert_eq!(
        body(platform, &app, "/env/GREETING"),
        (200, "hello".to_owned())
    );

    admin.run(&["delete", &app, "-r", "-f"]).success();
    admin.run(&["apps"]).success().lacks(&app);
    admin.run(&["routes"]).success().lacks(&app);
    let (status, router_error, _) = platform.get_app(&app, "/").unwrap();
    assert_eq!(
        (status, router_error.as_deref()),
        (404, Some("unknown_route"))
    );
}

#[test]
fn manifest_and_push_flags() {
    let Some((cf, platform)) = platform_running_apps() else {
        return;
    };
    let (admin, _org) = targeted_admin(&cf, platform, "mf");
    let domain = &platform.options.apps_domain;
    let (web, worker, random) = (unique_name("mf"), unique_name("mfw"), unique_name("mfr"));
    let dir = server_dir("manifest");
    let manifest = format!(
        "applications:
- name: {web}
  instances: 2
  memory: 48M
  disk_quota: 256M
  path: .
  buildpacks: [binary_buildpack]
  command: ./server
  health-check-type: http
  env:
    GREETING: from-manifest
  routes:
  - route: {web}-one.{domain}
  - route: {web}-two.{domain}
- name: {worker}
  memory: 32M
  path: .
  buildpacks: [binary_buildpack]
  command: ./server
  no-route: true
  health-check-type: process
- name: {random}
  memory: 32M
  path: .
  buildpacks: [binary_buildpack]
  command: ./server
  random-route: true
"
    );
    std::fs::write(dir.path().join("manifest.yml"), manifest).unwrap();
    let dir_path = dir.path().to_str().unwrap().to_owned();
    admin
        .run(&["push", "-f", &format!("{dir_path}/manifest.yml")])
        .success()
        .contains("start command:   ./server");

    let web_app = admin.run(&["app", &web]).success();
    for needle in [
        "instances:      2/2",
        "of 48M",
        "of 256M",
        "binary_buildpack",
    ] {
        assert!(
            web_app.text().contains(needle),
            "{needle}: {}",
            web_app.text()
        );
    }
    for host in [format!("{web}-one"), format!("{web}-two")] {
        assert_eq!(
            body(platform, &host, "/env/GREETING"),
            (200, "from-manifest".to_owned())
        );
    }
    admin
        .run(&["get-health-check", &web])
        .success()
        .contains("http");
    let worker_app = admin.run(&["app", &worker]).success();
    assert!(
        worker_app.text().contains("routes:            \n")
            && worker_app.text().contains("#0   running"),
        "{}",
        worker_app.text()
    );
    admin
        .run(&["get-health-check", &worker])
        .success()
        .contains("process");
    let random_routes = admin.run(&["app", &random]).success().text();
    let random_host = random_routes
        .lines()
        .find_map(|line| line.strip_prefix("routes:"))
        .map(|routes| {
            routes
                .trim()
                .trim_end_matches(&format!(".{domain}"))
                .to_owned()
        })
        .unwrap_or_default();
    assert!(
        random_host.starts_with(&format!("{random}-")),
        "random route: {random_routes}"
    );
    assert_eq!(body(platform, &random_host, "/index").0, 200);

    // Flags: --no-start, --no-route, --random-route.
    let (stopped, unrouted, randomised) = (unique_name("ns"), unique_name("nr"), unique_name("rr"));
    let flags = |name: &str, extra: &str| {
        admin.run(&[
            "push",
            name,
            "-p",
            &dir_path,
            "-b",
            "binary_buildpack",
            "-c",
            "./server",
            "-m",
            "32M",
            extra,
        ])
    };
    flags(&stopped, "--no-start")
        .success()
        .contains("requested state:   stopped");
    let (status, router_error, _) = platform.get_app(&stopped, "/").unwrap();
    assert_eq!(
        (status, router_error.as_deref()),
        (404, Some("unknown_route"))
    );
    // Its first start stages it, with the buildpack's output in the terminal.
    admin
        .run(&["start", &stopped])
        .success()
        .contains("Staging app and tracing logs...")
        .contains("   -----> Binary Buildpack")
        .contains("#0   running");
    assert_eq!(body(platform, &stopped, "/index").0, 200);
    flags(&unrouted, "--no-route")
        .success()
        .contains("routes:            \n")
        .contains("#0   running");
    let pushed = flags(&randomised, "--random-route").success();
    assert!(
        pushed
            .text()
            .contains(&format!("routes:            {randomised}-")),
        "{}",
        pushed.text()
    );
    for name in [&web, &worker, &random, &stopped, &unrouted, &randomised] {
        admin.run(&["delete", name, "-r", "-f"]).success();
    }
}
