//! Staging over NATS: system buildpacks in `/v3/buildpacks`, the internal API's Basic auth,
//! builds failing fast without stagers, and — with a real `nats-server` and a real DEA (runc) —
//! builds staged into droplets, or failed with CC's `NoAppDetectedError` text.

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use sha2::Digest;

use crate::packages::{app_with_people, file, make_zip, new_package, upload};
use crate::support::{databases, Harness, INTERNAL_PASSWORD, INTERNAL_USER};

/// Polls the build until it leaves STAGING or `seconds` pass; returns its last body.
pub(crate) async fn wait_for_build(
    harness: &Harness,
    guid: &str,
    token: &str,
    seconds: u64,
) -> Value {
    let deadline = Instant::now() + Duration::from_secs(seconds);
    loop {
        let answer = harness.get(&format!("/v3/builds/{guid}"), token).await;
        assert_eq!(answer.status, 200, "{:#}", answer.body);
        if answer.body["state"] != "STAGING" || Instant::now() > deadline {
            return answer.body;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

pub(crate) fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A `nats-server` child with token auth; killed when dropped.
pub(crate) struct Nats {
    child: Child,
    port: u16,
    token: String,
}

impl Nats {
    pub(crate) async fn start() -> Option<Nats> {
        let installed = Command::new("nats-server")
            .arg("--version")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|status| status.success());
        if !installed {
            if std::env::var("KILN_REQUIRE_NATS").as_deref() == Ok("1") {
                panic!("KILN_REQUIRE_NATS=1 but nats-server is not installed");
            }
            eprintln!("skipping: nats-server is not installed");
            return None;
        }
        let port = free_port();
        let token = uuid::Uuid::new_v4().simple().to_string();
        let child = Command::new("nats-server")
            .args(["-a", "127.0.0.1", "-p", &port.to_string(), "--auth", &token])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start nats-server");
        let nats = Nats { child, port, token };
        let deadline = Instant::now() + Duration::from_secs(10);
        while tokio::net::TcpStream::connect(("127.0.0.1", port))
            .await
            .is_err()
        {
            assert!(Instant::now() < deadline, "nats-server never listened");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        Some(nats)
    }

    pub(crate) async fn client(&self) -> async_nats::Client {
        async_nats::ConnectOptions::with_token(self.token.clone())
            .connect(format!("nats://127.0.0.1:{}", self.port))
            .await
            .expect("connect to nats-server")
    }
}

impl Drop for Nats {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Whether runc can run here (root and a working `runc`); panics instead of skipping when
/// `KILN_REQUIRE_RUNC=1`.
pub(crate) fn runc_usable() -> bool {
    let runc = Command::new("runc")
        .arg("--version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|status| status.success());
    let root = std::fs::read_to_string("/proc/self/status")
        .map(|status| {
            status
                .lines()
                .any(|line| line.starts_with("Uid:") && line.split_whitespace().nth(1) == Some("0"))
        })
        .unwrap_or(false);
    let problem = if !runc {
        Some("runc is not available")
    } else if !root {
        Some("staging on a DEA needs root")
    } else {
        None
    };
    match problem {
        None => true,
        Some(problem) => {
            if std::env::var("KILN_REQUIRE_RUNC").as_deref() == Ok("1") {
                panic!("{problem} (KILN_REQUIRE_RUNC=1)");
            }
            eprintln!("skipping: {problem}; set KILN_REQUIRE_RUNC=1 to make this a failure");
            false
        }
    }
}

async fn internal_get(harness: &Harness, path: &str, auth: Option<(&str, &str)>) -> (u16, Vec<u8>) {
    let mut request = harness.http.get(format!("{}{path}", harness.base));
    if let Some((user, password)) = auth {
        request = request.basic_auth(user, Some(password));
    }
    let response = request.send().await.expect("request");
    let status = response.status().as_u16();
    (status, response.bytes().await.unwrap().to_vec())
}

const AUTH: Option<(&str, &str)> = Some((INTERNAL_USER, INTERNAL_PASSWORD));

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn system_buildpacks_are_listed_and_served_to_deas_only() {
    for database in databases() {
        let harness = Harness::start_staging(database, None).await;
        let (_app, developer, _auditor) = app_with_people(&harness).await;
        let list = harness.get("/v3/buildpacks", &developer).await;
        assert_eq!(list.status, 200, "{:#}", list.body);
        let resources = list.body["resources"].as_array().unwrap().clone();
        let names: Vec<&str> = resources
            .iter()
            .map(|buildpack| buildpack["name"].as_str().unwrap())
            .collect();
        assert_eq!(names, ["staticfile_buildpack", "binary_buildpack"]);
        let staticfile = &resources[0];
        let guid = staticfile["guid"].as_str().unwrap().to_owned();
        assert_eq!(
            staticfile,
            &json!({
                "guid": guid,
                "created_at": staticfile["created_at"],
                "updated_at": staticfile["updated_at"],
                "name": "staticfile_buildpack",
                "state": "READY",
                "filename": "staticfile_buildpack.zip",
                "stack": null,
                "position": 1,
                "lifecycle": "buildpack",
                "enabled": true,
                "locked": false,
                "metadata": {"labels": {}, "annotations": {}},
                "links": {
                    "self": {"href": format!("{}/v3/buildpacks/{guid}", harness.base)},
                    "upload": {"href": format!("{}/v3/buildpacks/{guid}/upload", harness.base), "method": "POST"},
                },
            })
        );
        assert_eq!(resources[1]["position"], 2);
        assert_eq!(list.body["pagination"]["total_results"], 2);

        let filtered = harness
            .get(
                "/v3/buildpacks?names=binary_buildpack&order_by=position",
                &developer,
            )
            .await;
        assert_eq!(filtered.status, 200, "{:#}", filtered.body);
        assert_eq!(filtered.body["resources"].as_array().unwrap().len(), 1);
        assert_eq!(filtered.body["resources"][0]["name"], "binary_buildpack");
        let reversed = harness
            .get("/v3/buildpacks?order_by=-position", &developer)
            .await;
        assert_eq!(reversed.body["resources"][0]["name"], "binary_buildpack");
        let one = harness
            .get(&format!("/v3/buildpacks/{guid}"), &developer)
            .await;
        assert_eq!(one.status, 200, "{:#}", one.body);
        assert_eq!(&one.body, staticfile);
        harness
            .get(
                "/v3/buildpacks/00000000-0000-4000-8000-000000000000",
                &developer,
            )
            .await
            .assert_v3_error(404, "CF-ResourceNotFound", "Buildpack not found");

        // The internal API takes its Basic credentials, never a UAA token.
        let path = format!("/internal/v3/buildpacks/{guid}/download");
        assert_eq!(internal_get(&harness, &path, None).await.0, 401);
        assert_eq!(
            internal_get(&harness, &path, Some((INTERNAL_USER, "wrong")))
                .await
                .0,
            401
        );
        let token_answer = harness.get(&path, &harness.admin_token).await;
        assert_eq!(token_answer.status, 401, "{:#}", token_answer.body);
        let missing = "00000000-0000-4000-8000-000000000000";
        let upload_path = format!("{}/internal/v3/builds/{missing}/droplet", harness.base);
        let refused = harness
            .http
            .post(&upload_path)
            .body("x")
            .send()
            .await
            .unwrap();
        assert_eq!(refused.status(), 401);
        let unknown = harness
            .http
            .post(&upload_path)
            .basic_auth(INTERNAL_USER, Some(INTERNAL_PASSWORD))
            .body("x")
            .send()
            .await
            .unwrap();
        assert_eq!(unknown.status(), 404);
        let package_path = format!("/internal/v3/packages/{missing}/download");
        assert_eq!(internal_get(&harness, &package_path, None).await.0, 401);
        assert_eq!(internal_get(&harness, &package_path, AUTH).await.0, 404);
        let (status, zip) = internal_get(&harness, &path, AUTH).await;
        assert_eq!(status, 200);
        let archive = zip::ZipArchive::new(std::io::Cursor::new(zip)).expect("a zip");
        assert!(
            archive.file_names().any(|name| name == "bin/detect"),
            "{:?}",
            archive.file_names().collect::<Vec<_>>()
        );
        harness.stop().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn builds_fail_quickly_when_no_dea_advertises() {
    let Some(nats) = Nats::start().await else {
        return;
    };
    for database in databases() {
        let harness = Harness::start_staging(database, Some(nats.client().await)).await;
        let (app, developer, _auditor) = app_with_people(&harness).await;
        let package = new_package(&harness, &app, &developer).await;
        let bits = make_zip(&[file("Staticfile", b""), file("index.html", b"hi")]);
        let uploaded = upload(&harness, &package, &developer, None, Some(&bits)).await;
        assert_eq!(uploaded.status, 200, "{:#}", uploaded.body);
        let build = harness
            .post(
                "/v3/builds",
                &developer,
                json!({"package": {"guid": package}}),
            )
            .await;
        assert_eq!(build.status, 201, "{:#}", build.body);
        let guid = build.body["guid"].as_str().unwrap();
        let started = Instant::now();
        let failed = wait_for_build(&harness, guid, &developer, 10).await;
        assert!(started.elapsed() < Duration::from_secs(10));
        assert_eq!(failed["state"], "FAILED", "{failed:#}");
        assert_eq!(
            failed["error"],
            "StagingError - Staging error: no available stagers"
        );
        harness.stop().await;
    }
}

/// A real DEA on `nats` (advertising every second, 21 free host ports, its own cgroup parent and
/// directory), for tests that stage or run apps. Keep the directory alive as long as the DEA.
pub(crate) async fn start_test_dea(nats: &Nats, name: &str) -> (dea::DeaServer, tempfile::TempDir) {
    let dea_dir = tempfile::Builder::new()
        .prefix(&format!("kiln-cc-{name}"))
        .tempdir()
        .expect("tempdir");
    let first = free_port().clamp(20000, 60000);
    let mut config = dea::DeaConfig::new(
        dea_dir.path().join("dea"),
        dea::config::PortRange {
            first,
            last: first + 20,
        },
    );
    config.advertise_interval_secs = 1;
    config.runc.cgroup_parent = format!("kiln-cc-{name}-test");
    let dea = dea::run(config, nats.client().await)
        .await
        .expect("the DEA starts");
    (dea, dea_dir)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn builds_stage_on_a_real_dea() {
    if !runc_usable() {
        return;
    }
    let Some(nats) = Nats::start().await else {
        return;
    };
    let (dea, _dea_dir) = start_test_dea(&nats, "dea").await;

    for database in databases() {
        let label = database.label();
        let harness = Harness::start_staging(database, Some(nats.client().await)).await;
        let (app, developer, auditor) = app_with_people(&harness).await;
        // Wait for an advertisement to reach this CC.
        tokio::time::sleep(Duration::from_millis(2500)).await;

        // Auto-detection: the staticfile buildpack detects the `Staticfile`.
        let package = new_package(&harness, &app, &developer).await;
        let bits = make_zip(&[
            file("Staticfile", b""),
            file("index.html", b"<h1>hello from kiln</h1>"),
        ]);
        let uploaded = upload(&harness, &package, &developer, None, Some(&bits)).await;
        assert_eq!(uploaded.status, 200, "{:#}", uploaded.body);
        let build = harness
            .post(
                "/v3/builds",
                &developer,
                json!({"package": {"guid": package}}),
            )
            .await;
        assert_eq!(build.status, 201, "{:#}", build.body);
        // Staging the static site takes well under `sync_wait_secs`: the create answers STAGED.
        assert_eq!(build.body["state"], "STAGED", "{label}: {:#}", build.body);
        let build_guid = build.body["guid"].as_str().unwrap().to_owned();
        let staged = wait_for_build(&harness, &build_guid, &auditor, 300).await;
        assert_eq!(staged["state"], "STAGED", "{label}: {staged:#}");
        assert_eq!(staged["error"], Value::Null);
        let droplet_guid = staged["droplet"]["guid"].as_str().unwrap().to_owned();
        let droplet = harness
            .get(&format!("/v3/droplets/{droplet_guid}"), &developer)
            .await;
        assert_eq!(droplet.status, 200, "{:#}", droplet.body);
        assert_eq!(droplet.body["state"], "STAGED", "{:#}", droplet.body);
        assert_eq!(
            droplet.body["buildpacks"][0]["name"], "staticfile_buildpack",
            "{:#}",
            droplet.body
        );
        assert!(
            droplet.body["process_types"]["web"]
                .as_str()
                .is_some_and(|command| !command.is_empty()),
            "{:#}",
            droplet.body
        );
        assert_eq!(droplet.body["stack"], "kiln-host");
        assert_eq!(droplet.body["checksum"]["type"], "sha256");
        let (status, tgz) = internal_get(
            &harness,
            &format!("/internal/v3/droplets/{droplet_guid}/download"),
            AUTH,
        )
        .await;
        assert_eq!(status, 200);
        assert_eq!(&tgz[..2], &[0x1f, 0x8b], "a gzip droplet");
        let sha256: String = sha2::Sha256::digest(&tgz)
            .iter()
            .map(|byte| format!("{byte:02x}"))
            .collect();
        assert_eq!(droplet.body["checksum"]["value"], sha256.as_str());
        let assigned = harness
            .request(
                reqwest::Method::PATCH,
                &format!("/v3/apps/{app}/relationships/current_droplet"),
                Some(&developer),
                Some(&json!({"data": {"guid": droplet_guid}}).to_string()),
            )
            .await;
        assert_eq!(assigned.status, 200, "{:#}", assigned.body);
        let current = harness
            .get(&format!("/v3/apps/{app}/droplets/current"), &developer)
            .await;
        assert_eq!(current.status, 200, "{:#}", current.body);
        assert_eq!(current.body["guid"], droplet_guid.as_str());
        let listed = harness
            .get(&format!("/v3/apps/{app}/droplets"), &developer)
            .await;
        assert_eq!(
            listed.body["pagination"]["total_results"], 1,
            "{:#}",
            listed.body
        );

        // Nothing any buildpack detects: CC's NoAppDetectedError text.
        let package = new_package(&harness, &app, &developer).await;
        let bits = make_zip(&[file("README", b"nothing to run")]);
        let uploaded = upload(&harness, &package, &developer, None, Some(&bits)).await;
        assert_eq!(uploaded.status, 200, "{:#}", uploaded.body);
        let build = harness
            .post(
                "/v3/builds",
                &developer,
                json!({"package": {"guid": package}}),
            )
            .await;
        assert_eq!(build.status, 201, "{:#}", build.body);
        let failed = wait_for_build(
            &harness,
            build.body["guid"].as_str().unwrap(),
            &developer,
            300,
        )
        .await;
        assert_eq!(failed["state"], "FAILED", "{label}: {failed:#}");
        assert_eq!(
            failed["error"],
            "NoAppDetectedError - An app was not successfully detected by any available buildpack"
        );
        assert_eq!(failed["droplet"], Value::Null);

        // A buildpack named by the app's lifecycle skips detection.
        let patched = harness
            .request(
                reqwest::Method::PATCH,
                &format!("/v3/apps/{app}"),
                Some(&developer),
                Some(
                    &json!({"lifecycle": {"type": "buildpack", "data": {"buildpacks": ["staticfile_buildpack"]}}})
                        .to_string(),
                ),
            )
            .await;
        assert_eq!(patched.status, 200, "{:#}", patched.body);
        let package = new_package(&harness, &app, &developer).await;
        let bits = make_zip(&[file("Staticfile", b""), file("index.html", b"named")]);
        let uploaded = upload(&harness, &package, &developer, None, Some(&bits)).await;
        assert_eq!(uploaded.status, 200, "{:#}", uploaded.body);
        let build = harness
            .post(
                "/v3/builds",
                &developer,
                json!({"package": {"guid": package}}),
            )
            .await;
        assert_eq!(build.status, 201, "{:#}", build.body);
        assert_eq!(
            build.body["lifecycle"]["data"]["buildpacks"],
            json!(["staticfile_buildpack"])
        );
        let staged = wait_for_build(
            &harness,
            build.body["guid"].as_str().unwrap(),
            &developer,
            300,
        )
        .await;
        assert_eq!(staged["state"], "STAGED", "{label}: {staged:#}");
        harness.stop().await;
    }
    dea.stop().await;
}
