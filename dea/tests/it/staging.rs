//! Staging with the buildpack lifecycle and launching the droplet, end to end.

use std::net::{IpAddr, Ipv4Addr};
use std::time::Duration;

use dea::launch::health::{wait_until_healthy, HealthCheck, HealthCheckConfig};
use dea::staging::StagingError;

use crate::support::{
    free_port, harness, http_get, system_buildpack, tar_listing, tar_member, write_files,
};

const LOCALHOST: IpAddr = IpAddr::V4(Ipv4Addr::LOCALHOST);

fn system_buildpacks() -> Vec<dea::staging::Buildpack> {
    vec![
        system_buildpack("binary_buildpack"),
        system_buildpack("staticfile_buildpack"),
    ]
}

#[tokio::test]
async fn a_static_site_is_detected_staged_and_served() {
    let Some(h) = harness().await else { return };
    let app = h.path().join("site");
    write_files(
        &app,
        &[
            ("Staticfile", ""),
            ("index.html", "<h1>Hello from Kiln</h1>\n"),
            ("css/site.css", "body {}\n"),
            (".secret", "hidden\n"),
        ],
    );
    let staged = h.stage(&app, system_buildpacks(), false).await;
    let result = staged
        .result
        .as_ref()
        .unwrap_or_else(|e| panic!("{e}: {}", staged.log_text()));
    assert_eq!(result.detected_buildpack, "staticfile");
    assert_eq!(result.buildpack_key, "staticfile_buildpack");
    assert_eq!(result.start_command, "$HOME/boot.sh");
    assert_eq!(
        result.process_types.get("web").map(String::as_str),
        Some("$HOME/boot.sh")
    );
    assert_eq!(result.buildpacks[0].version.as_deref(), Some("1.0.0"));
    assert!(
        staged
            .log_text()
            .contains("-----> Staticfile Buildpack version 1.0.0"),
        "{}",
        staged.log_text()
    );
    assert!(
        !staged.log_text().contains("staticfile 1.0.0"),
        "detect output is not logged"
    );

    let listing = tar_listing(&staged.droplet);
    for member in [
        "./app/",
        "./deps/",
        "./profile.d/",
        "./staging_info.yml",
        "./tmp/",
        "./logs/",
        "./app/public/index.html",
        "./app/public/css/site.css",
        "./app/boot.sh",
        "./app/Staticfile",
        "./deps/0/config.yml",
        "./deps/0/profile.d/staticfile.sh",
        "./profile.d/000_multi-supply.sh",
        "./profile.d/0_staticfile.sh",
    ] {
        assert!(
            listing.iter().any(|m| m == member),
            "{member} in {listing:?}"
        );
    }
    assert!(
        !listing
            .iter()
            .any(|m| m.contains(".secret") && m.contains("public")),
        "{listing:?}"
    );
    let top_level: std::collections::BTreeSet<&str> = listing
        .iter()
        .map(|m| m.trim_start_matches("./").split('/').next().unwrap())
        .filter(|m| !m.is_empty())
        .collect();
    assert_eq!(
        top_level.into_iter().collect::<Vec<_>>(),
        [
            "app",
            "deps",
            "logs",
            "profile.d",
            "staging_info.yml",
            "tmp"
        ]
    );
    let staging_info = tar_member(&staged.droplet, "./staging_info.yml");
    assert_eq!(
        serde_json::from_str::<serde_json::Value>(&staging_info).unwrap(),
        serde_json::json!({"detected_buildpack": "staticfile", "start_command": "$HOME/boot.sh"})
    );

    let port = free_port();
    let (instance, _output) = h.launch(&staged.droplet, None, port).await;
    let mut config = HealthCheckConfig::new(HealthCheck::Port { port }, LOCALHOST);
    config.start_timeout = Duration::from_secs(20);
    wait_until_healthy(&config, instance.as_ref())
        .await
        .expect("the port check passes");
    let http = HealthCheck::Http {
        port,
        endpoint: "/".into(),
    };
    dea::launch::health::probe(&http, LOCALHOST, Duration::from_secs(1), None)
        .await
        .expect("GET / answers 200");
    let (status, body) = http_get(port, "/").await;
    assert_eq!((status, body.as_str()), (200, "<h1>Hello from Kiln</h1>\n"));
    assert_eq!(http_get(port, "/.secret").await.0, 404);
    let status = instance.stop(Duration::from_secs(5)).await.unwrap();
    assert_eq!(
        status.code, 143,
        "http.server dies of the forwarded SIGTERM"
    );
}

#[tokio::test]
async fn the_staticfile_root_directive_is_honoured() {
    let Some(h) = harness().await else { return };
    let app = h.path().join("dist-site");
    write_files(
        &app,
        &[
            ("Staticfile", "root: dist\n"),
            ("dist/index.html", "dist\n"),
            ("notes.txt", "x"),
        ],
    );
    let staged = h
        .stage(&app, vec![system_buildpack("staticfile_buildpack")], true)
        .await;
    staged
        .result
        .as_ref()
        .unwrap_or_else(|e| panic!("{e}: {}", staged.log_text()));
    let listing = tar_listing(&staged.droplet);
    assert!(
        listing.iter().any(|m| m == "./app/public/index.html"),
        "{listing:?}"
    );
    assert!(
        !listing.iter().any(|m| m == "./app/public/notes.txt"),
        "{listing:?}"
    );

    let missing = h.path().join("missing-root");
    write_files(
        &missing,
        &[("Staticfile", "root: build\n"), ("index.html", "x")],
    );
    let staged = h
        .stage(
            &missing,
            vec![system_buildpack("staticfile_buildpack")],
            true,
        )
        .await;
    let error = staged.result.unwrap_err();
    assert_eq!(
        error.to_string(),
        "Failed to compile droplet: Failed to run finalize script: exit status 1"
    );
    assert_eq!(error.cc_error().name, "BuildpackCompileFailed");
    let log = staged.log.stderr().join("\n");
    assert!(
        log.contains(
            "the application Staticfile specifies a root directory build that does not exist"
        ),
        "{log}"
    );
}

#[tokio::test]
async fn an_app_no_buildpack_detects_fails_with_no_app_detected() {
    let Some(h) = harness().await else { return };
    let app = h.path().join("plain");
    write_files(
        &app,
        &[(
            "index.html",
            "an index.html alone does not make a static site",
        )],
    );
    let staged = h.stage(&app, system_buildpacks(), false).await;
    let error = staged.result.unwrap_err();
    assert!(matches!(error, StagingError::NoAppDetected), "{error:?}");
    assert_eq!(error.exit_code(), 222);
    assert_eq!(
        error.cc_error().build_error(),
        "NoAppDetectedError - An app was not successfully detected by any available buildpack"
    );
    assert!(staged
        .log
        .stderr()
        .contains(&"None of the buildpacks detected a compatible application"));
    assert!(!staged.droplet.exists());
}

#[tokio::test]
async fn the_binary_buildpack_runs_the_command_given_at_launch() {
    let Some(h) = harness().await else { return };
    let app = h.path().join("binary-app");
    let server = "#!/bin/bash\nexec python3 -c 'import http.server, os\n\
                  class H(http.server.BaseHTTPRequestHandler):\n\
                  \x20   def do_GET(self):\n\
                  \x20       body = (os.environ[\"GREETING\"] + \" \" + os.environ[\"FROM_PROFILE\"]).encode()\n\
                  \x20       self.send_response(200); self.end_headers(); self.wfile.write(body)\n\
                  http.server.HTTPServer((\"0.0.0.0\", int(os.environ[\"PORT\"])), H).serve_forever()'\n";
    write_files(
        &app,
        &[
            ("server.sh", server),
            (".profile.d/setup.sh", "export FROM_PROFILE=profiled\n"),
        ],
    );
    let staged = h
        .stage(&app, vec![system_buildpack("binary_buildpack")], true)
        .await;
    let result = staged
        .result
        .as_ref()
        .unwrap_or_else(|e| panic!("{e}: {}", staged.log_text()));
    assert_eq!(result.detected_buildpack, "binary");
    assert_eq!(
        result.start_command,
        ">&2 echo Error: no start command specified during staging or launch && exit 1"
    );

    let port = free_port();
    let (instance, _output) = h.launch(&staged.droplet, Some("./server.sh"), port).await;
    let mut config = HealthCheckConfig::new(
        HealthCheck::Http {
            port,
            endpoint: "/".into(),
        },
        LOCALHOST,
    );
    config.start_timeout = Duration::from_secs(20);
    wait_until_healthy(&config, instance.as_ref())
        .await
        .expect("the http check passes");
    assert_eq!(
        http_get(port, "/").await,
        (200, "hello profiled".to_string())
    );
    instance.stop(Duration::from_secs(5)).await.unwrap();

    // Without a command the droplet's web command reports CF's error and the instance crashes.
    let (instance, mut output) = h.launch(&staged.droplet, None, free_port()).await;
    let mut lines = Vec::new();
    while let Some(line) = output.recv().await {
        lines.push(line);
    }
    let status = instance.wait().await;
    assert_eq!(status.code, 1);
    let output = crate::support::Output(lines);
    assert_eq!(
        output.stdout(),
        ["Invoking pre-start scripts.", "Invoking start command."]
    );
    assert_eq!(
        output.stderr(),
        ["Error: no start command specified during staging or launch"]
    );
}

#[tokio::test]
async fn buildpack_lifecycle_failures_map_to_cf_errors() {
    let Some(h) = harness().await else { return };
    let app = h.path().join("any-app");
    write_files(&app, &[("Procfile", "web: ./run\nworker: ./work\n")]);
    let no_supply = h.path().join("no-supply");
    write_files(
        &no_supply,
        &[
            ("bin/detect", "#!/bin/sh\nexit 0\n"),
            ("bin/compile", "#!/bin/sh\nexit 0\n"),
        ],
    );
    let failing = h.path().join("failing");
    write_files(
        &failing,
        &[
            (
                "bin/compile",
                "#!/bin/sh\necho compiling\necho broken >&2\nexit 3\n",
            ),
            ("bin/release", "#!/bin/sh\n"),
        ],
    );
    let buildpack = |name: &str, dir: &std::path::Path| dea::staging::Buildpack {
        key: name.into(),
        dir: dir.to_path_buf(),
    };

    let staged = h
        .stage(
            &app,
            vec![
                buildpack("no-supply", &no_supply),
                system_buildpack("binary_buildpack"),
            ],
            true,
        )
        .await;
    let error = staged.result.unwrap_err();
    assert_eq!(
        error.to_string(),
        "Error: one of the buildpacks chosen to supply dependencies does not support multi-buildpack apps"
    );
    assert_eq!(
        error.cc_error().build_error(),
        "StagingError - Staging error: staging failed"
    );

    let staged = h
        .stage(&app, vec![buildpack("failing", &failing)], true)
        .await;
    let error = staged.result.unwrap_err();
    assert_eq!(
        error.to_string(),
        "Failed to compile droplet: exit status 3"
    );
    assert_eq!(
        error.cc_error().build_error(),
        "BuildpackCompileFailed - App staging failed in the buildpack compile phase"
    );
    assert_eq!(staged.log.stdout(), ["compiling"]);
    assert_eq!(
        staged.log.stderr(),
        ["broken", "Failed to compile droplet: exit status 3"]
    );

    // A supply buildpack before the final one; the Procfile adds to the release's types.
    let staged = h
        .stage(
            &app,
            vec![
                system_buildpack("staticfile_buildpack"),
                system_buildpack("binary_buildpack"),
            ],
            true,
        )
        .await;
    let result = staged
        .result
        .as_ref()
        .unwrap_or_else(|e| panic!("{e}: {}", staged.log_text()));
    assert_eq!(
        result.process_types.get("web").map(String::as_str),
        Some("./run")
    );
    assert_eq!(
        result.process_types.get("worker").map(String::as_str),
        Some("./work")
    );
    let names: Vec<&str> = result.buildpacks.iter().map(|b| b.name.as_str()).collect();
    assert_eq!(names, ["staticfile", "binary"]);
    let listing = tar_listing(&staged.droplet);
    assert!(
        listing.iter().any(|m| m == "./deps/0/config.yml"),
        "{listing:?}"
    );
    assert!(
        listing.iter().any(|m| m == "./deps/1/config.yml"),
        "{listing:?}"
    );
    assert!(
        listing
            .iter()
            .any(|m| m == "./profile.d/000_multi-supply.sh"),
        "{listing:?}"
    );
}
