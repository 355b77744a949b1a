//! The blob store in an S3-compatible bucket: packages uploaded through the API land in the
//! bucket, download back byte for byte, and feed the resource cache. The S3 server is moto's
//! standalone server (`python -m moto.server`, installed by `scripts/install-deps` into
//! `~/.cache/kiln-venv`), a real HTTP S3 implementation we do not own. Without it the test skips,
//! unless `KILN_REQUIRE_S3=1`.

use std::process::{Child, Command, Stdio};
use std::time::Duration;

use serde_json::json;

use crate::packages::{app_with_people, file, make_zip, new_package, upload};
use crate::support::{databases, Harness};

/// A moto S3 server child, killed on drop.
struct MotoServer {
    child: Child,
    endpoint: String,
}

impl Drop for MotoServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn moto_python() -> Option<String> {
    let mut candidates = Vec::new();
    if let Ok(python) = std::env::var("KILN_TEST_S3_PYTHON") {
        candidates.push(python);
    }
    if let Some(home) = std::env::var_os("HOME") {
        candidates.push(format!(
            "{}/.cache/kiln-venv/bin/python",
            home.to_string_lossy()
        ));
    }
    candidates.push("python3".to_owned());
    candidates.into_iter().find(|python| {
        Command::new(python)
            .args(["-c", "import moto.server"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|status| status.success())
    })
}

async fn start_moto() -> Option<MotoServer> {
    let Some(python) = moto_python() else {
        assert!(
            std::env::var("KILN_REQUIRE_S3").as_deref() != Ok("1"),
            "KILN_REQUIRE_S3=1 but moto's S3 server is not installed (run scripts/install-deps)"
        );
        eprintln!("skipping: moto (S3 server) is not installed; run scripts/install-deps");
        return None;
    };
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let child = Command::new(python)
        .args([
            "-m",
            "moto.server",
            "-H",
            "127.0.0.1",
            "-p",
            &port.to_string(),
        ])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("moto starts");
    let server = MotoServer {
        child,
        endpoint: format!("http://127.0.0.1:{port}"),
    };
    let http = reqwest::Client::new();
    for _ in 0..100 {
        if http.get(&server.endpoint).send().await.is_ok() {
            return Some(server);
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("moto did not answer on {}", server.endpoint);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn packages_live_in_an_s3_bucket() {
    let Some(moto) = start_moto().await else {
        return;
    };
    let http = reqwest::Client::new();
    let bucket = "kiln-blobs";
    let created = http
        .put(format!("{}/{bucket}", moto.endpoint))
        .send()
        .await
        .unwrap();
    assert!(created.status().is_success(), "{:?}", created.text().await);

    let database = databases().into_iter().next().expect("SQLite");
    let endpoint = moto.endpoint.clone();
    let harness = Harness::start_with(database, |config| {
        config.blobstore.local_dir = None;
        config.blobstore.s3 = Some(cloud_controller::S3Config {
            bucket: bucket.to_owned(),
            region: "us-east-1".to_owned(),
            endpoint: Some(endpoint),
            access_key_id: "kiln".to_owned(),
            secret_access_key: "kiln-secret".to_owned(),
            allow_http: true,
        });
    })
    .await;
    let (app, developer, _auditor) = app_with_people(&harness).await;
    let package = new_package(&harness, &app, &developer).await;
    let content = b"<h1>from a bucket</h1>".repeat(100);
    let bits = make_zip(&[file("index.html", &content), file("Staticfile", b"")]);
    let uploaded = upload(&harness, &package, &developer, None, Some(&bits)).await;
    assert_eq!(uploaded.status, 200, "{:#}", uploaded.body);
    assert_eq!(uploaded.body["state"], "READY");

    // The package and the resource-cache entry are objects in the bucket.
    let listing = http
        .get(format!("{}/{bucket}?list-type=2", moto.endpoint))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        listing.contains(&format!("<Key>packages/{package}</Key>")),
        "{listing}"
    );
    let sha1 = {
        use sha1::Digest;
        sha1::Sha1::digest(&content)
            .iter()
            .map(|byte| format!("{byte:02x}"))
            .collect::<String>()
    };
    assert!(
        listing.contains(&format!("<Key>resources/{sha1}</Key>")),
        "{listing}"
    );

    // Downloaded back through the API: a zip holding the same file.
    let downloaded = harness
        .http
        .get(format!("{}/v3/packages/{package}/download", harness.base))
        .bearer_auth(&developer)
        .send()
        .await
        .unwrap();
    assert_eq!(downloaded.status(), 200);
    let zip_bytes = downloaded.bytes().await.unwrap();
    let mut archive = zip::ZipArchive::new(std::io::Cursor::new(zip_bytes.to_vec())).unwrap();
    let mut index = String::new();
    std::io::Read::read_to_string(&mut archive.by_name("index.html").unwrap(), &mut index).unwrap();
    assert_eq!(index.as_bytes(), &content[..]);

    // The resource cache answers from the bucket.
    let matched = harness
        .post(
            "/v3/resource_matches",
            &developer,
            json!({"resources": [
                {"checksum": {"value": sha1}, "size_in_bytes": content.len(), "path": "index.html", "mode": "644"},
                {"checksum": {"value": "0000000000000000000000000000000000000000"}, "size_in_bytes": 3, "path": "other", "mode": "644"},
            ]}),
        )
        .await;
    assert_eq!(matched.status, 201, "{:#}", matched.body);
    assert_eq!(matched.body["resources"].as_array().unwrap().len(), 1);
    assert_eq!(matched.body["resources"][0]["path"], "index.html");
    harness.stop().await;
}

#[test]
fn s3_settings_are_validated() {
    let s3 = cloud_controller::S3Config {
        bucket: "b".to_owned(),
        region: "us-east-1".to_owned(),
        endpoint: Some("http://127.0.0.1:9000".to_owned()),
        access_key_id: "k".to_owned(),
        secret_access_key: "s".to_owned(),
        allow_http: false,
    };
    let mut config = crate::support::cc_config(
        "sqlite:///tmp/kiln-s3-config-test.db",
        "http://127.0.0.1:1",
        "http://127.0.0.1:2",
    );
    config.blobstore.s3 = Some(s3.clone());
    let error = config.validate().unwrap_err().to_string();
    assert!(error.contains("allow_http"), "{error}");
    config.blobstore.s3 = Some(cloud_controller::S3Config {
        allow_http: true,
        ..s3.clone()
    });
    config.validate().expect("valid");
    config.blobstore.local_dir = Some("/tmp/blobs".into());
    let error = config.validate().unwrap_err().to_string();
    assert!(error.contains("not both"), "{error}");
    config.blobstore.local_dir = None;
    config.blobstore.s3 = Some(cloud_controller::S3Config {
        bucket: " ".to_owned(),
        allow_http: true,
        ..s3
    });
    assert!(config.validate().is_err());
}
