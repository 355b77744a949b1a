//! Packages: create, list, upload of real zips (validated before anything is stored, merged
//! with the resource cache), download, resource matches, and who may do what.

use std::io::Write;

use serde_json::{json, Value};
use sha1::{Digest, Sha1};
use zip::write::SimpleFileOptions;

use crate::support::{blob_dir, check, databases, Answer, Harness};

/// One zip entry to write: name, Unix mode, contents; a symlink when `link` is set.
pub(crate) struct Item<'a> {
    pub(crate) name: &'a str,
    pub(crate) mode: u32,
    pub(crate) data: &'a [u8],
    pub(crate) link: bool,
}

pub(crate) fn file<'a>(name: &'a str, data: &'a [u8]) -> Item<'a> {
    Item {
        name,
        mode: 0o644,
        data,
        link: false,
    }
}

pub(crate) fn make_zip(items: &[Item<'_>]) -> Vec<u8> {
    let mut writer = zip::ZipWriter::new(std::io::Cursor::new(Vec::new()));
    for item in items {
        if item.link {
            writer
                .add_symlink(
                    item.name,
                    String::from_utf8_lossy(item.data),
                    SimpleFileOptions::default(),
                )
                .unwrap();
        } else if item.name.ends_with('/') {
            writer
                .add_directory(item.name, SimpleFileOptions::default())
                .unwrap();
        } else {
            writer
                .start_file(
                    item.name,
                    SimpleFileOptions::default()
                        .compression_method(zip::CompressionMethod::Deflated)
                        .unix_permissions(item.mode),
                )
                .unwrap();
            writer.write_all(item.data).unwrap();
        }
    }
    writer.finish().unwrap().into_inner()
}

fn sha1_hex(data: &[u8]) -> String {
    Sha1::digest(data)
        .iter()
        .map(|byte| format!("{byte:02x}"))
        .collect()
}

/// Uploads a multipart body with optional `resources` JSON and `bits` zip.
pub(crate) async fn upload(
    harness: &Harness,
    package: &str,
    token: &str,
    resources: Option<Value>,
    bits: Option<&[u8]>,
) -> Answer {
    let boundary = "kiln-test-boundary-7c1f";
    let mut body = Vec::new();
    if let Some(resources) = resources {
        body.extend_from_slice(
            format!("--{boundary}\r\nContent-Disposition: form-data; name=\"resources\"\r\n\r\n{resources}\r\n")
                .as_bytes(),
        );
    }
    if let Some(bits) = bits {
        body.extend_from_slice(
            format!("--{boundary}\r\nContent-Disposition: form-data; name=\"bits\"; filename=\"package.zip\"\r\nContent-Type: application/zip\r\n\r\n")
                .as_bytes(),
        );
        body.extend_from_slice(bits);
        body.extend_from_slice(b"\r\n");
    }
    body.extend_from_slice(format!("--{boundary}--\r\n").as_bytes());
    let response = harness
        .http
        .post(format!("{}/v3/packages/{package}/upload", harness.base))
        .header(
            "Content-Type",
            format!("multipart/form-data; boundary={boundary}"),
        )
        .header("Authorization", format!("bearer {token}"))
        .body(body)
        .send()
        .await
        .unwrap();
    let status = response.status().as_u16();
    let headers = response.headers().clone();
    let text = response.text().await.unwrap();
    Answer {
        status,
        body: serde_json::from_str(&text).unwrap_or(Value::String(text)),
        headers,
    }
}

async fn download(harness: &Harness, package: &str, token: &str) -> (u16, Vec<u8>) {
    let response = harness
        .http
        .get(format!("{}/v3/packages/{package}/download", harness.base))
        .header("Authorization", format!("bearer {token}"))
        .send()
        .await
        .unwrap();
    let status = response.status().as_u16();
    (status, response.bytes().await.unwrap().to_vec())
}

/// The zip's entries: name → (mode, contents).
fn read_zip(bytes: &[u8]) -> std::collections::BTreeMap<String, (u32, Vec<u8>)> {
    let mut archive = zip::ZipArchive::new(std::io::Cursor::new(bytes)).unwrap();
    let mut entries = std::collections::BTreeMap::new();
    for index in 0..archive.len() {
        let mut entry = archive.by_index(index).unwrap();
        let mode = entry.unix_mode().unwrap_or(0) & 0o777;
        let mut data = Vec::new();
        std::io::Read::read_to_end(&mut entry, &mut data).unwrap();
        entries.insert(entry.name().to_owned(), (mode, data));
    }
    entries
}

/// Developer and auditor tokens in a fresh space with one app; returns (app, dev, auditor).
pub(crate) async fn app_with_people(harness: &Harness) -> (String, String, String) {
    let org = harness.create_org("acme").await;
    let space = harness.create_space(&org, "dev").await;
    let mut tokens = Vec::new();
    for (name, role) in [("dora", "space_developer"), ("audrey", "space_auditor")] {
        let user = harness.issuer.add_user(name, "uaa");
        harness
            .grant("organization_user", name, ("organization", &org))
            .await;
        let answer = harness.grant(role, name, ("space", &space)).await;
        assert_eq!(answer.status, 201, "{:#}", answer.body);
        tokens.push(harness.issuer.user_token(&user));
    }
    let app = harness
        .post(
            "/v3/apps",
            &tokens[0],
            json!({"name": "bits-app", "relationships": {"space": {"data": {"guid": space}}}}),
        )
        .await;
    assert_eq!(app.status, 201, "{:#}", app.body);
    let auditor = tokens.pop().unwrap();
    let developer = tokens.pop().unwrap();
    (
        app.body["guid"].as_str().unwrap().to_owned(),
        developer,
        auditor,
    )
}

pub(crate) async fn new_package(harness: &Harness, app: &str, token: &str) -> String {
    let created = harness
        .post(
            "/v3/packages",
            token,
            json!({"type": "bits", "relationships": {"app": {"data": {"guid": app}}}}),
        )
        .await;
    assert_eq!(created.status, 201, "{:#}", created.body);
    created.body["guid"].as_str().unwrap().to_owned()
}

fn files_under(dir: &std::path::Path) -> usize {
    std::fs::read_dir(dir).map_or(0, |entries| entries.count())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn packages_upload_download_and_resource_cache() {
    for database in databases() {
        let harness = Harness::start(database).await;
        let (app, developer, auditor) = app_with_people(&harness).await;
        let outsider = harness.issuer.add_user("olga", "uaa");
        let outsider = harness.issuer.user_token(&outsider);

        let created = harness
            .post(
                "/v3/packages",
                &developer,
                json!({"type": "bits", "relationships": {"app": {"data": {"guid": app}}}}),
            )
            .await;
        assert_eq!(created.status, 201, "{:#}", created.body);
        check(
            &created.body,
            &harness.base,
            json!({
                "guid": "<guid>", "created_at": "<time>", "updated_at": "<time>",
                "type": "bits",
                "data": {"checksum": {"type": "sha256", "value": null}, "error": null},
                "state": "AWAITING_UPLOAD",
                "relationships": {"app": {"data": {"guid": "<guid>"}}},
                "metadata": {"labels": {}, "annotations": {}},
                "links": {
                    "self": {"href": "<api>/v3/packages/<guid>"},
                    "upload": {"href": "<api>/v3/packages/<guid>/upload", "method": "POST"},
                    "download": {"href": "<api>/v3/packages/<guid>/download", "method": "GET"},
                    "app": {"href": "<api>/v3/apps/<guid>"},
                },
            }),
        );
        let package = created.body["guid"].as_str().unwrap().to_owned();
        let body = json!({"type": "bits", "relationships": {"app": {"data": {"guid": app}}}});
        harness
            .post("/v3/packages", &auditor, body.clone())
            .await
            .assert_v3_error(
                403,
                "CF-NotAuthorized",
                "You are not authorized to perform the requested action",
            );
        harness
            .post("/v3/packages", &outsider, body)
            .await
            .assert_v3_error(
                422,
                "CF-UnprocessableEntity",
                "App is invalid. Ensure it exists and you have access to it.",
            );
        harness
            .get(&format!("/v3/packages/{package}"), &outsider)
            .await
            .assert_v3_error(404, "CF-ResourceNotFound", "Package not found");
        let awaiting = harness
            .get(
                &format!("/v3/packages?app_guids={app}&states=AWAITING_UPLOAD"),
                &auditor,
            )
            .await;
        assert_eq!(awaiting.body["pagination"]["total_results"], 1);
        let (status, _) = download(&harness, &package, &developer).await;
        assert_eq!(status, 422);

        // A real zip: a file, an executable, an empty file, a directory, an inner symlink.
        let bits = make_zip(&[
            file("index.html", b"<h1>hello</h1>"),
            Item {
                name: "bin/run.sh",
                mode: 0o755,
                data: b"#!/bin/sh\nexec true\n",
                link: false,
            },
            file("empty.txt", b""),
            file("assets/", b""),
            Item {
                name: "assets/home.html",
                mode: 0,
                data: b"../index.html",
                link: true,
            },
        ]);
        upload(&harness, &package, &auditor, None, Some(&bits))
            .await
            .assert_v3_error(
                403,
                "CF-NotAuthorized",
                "You are not authorized to perform the requested action",
            );
        let uploaded = upload(&harness, &package, &developer, Some(json!([])), Some(&bits)).await;
        assert_eq!(uploaded.status, 200, "{:#}", uploaded.body);
        assert_eq!(uploaded.body["state"], "READY");
        assert_eq!(
            uploaded.body["data"]["checksum"]["value"]
                .as_str()
                .unwrap()
                .len(),
            64
        );
        upload(&harness, &package, &developer, None, Some(&bits))
            .await
            .assert_v3_error(
                422,
                "CF-UnprocessableEntity",
                "Package has already been uploaded.",
            );
        let (status, stored) = download(&harness, &package, &developer).await;
        assert_eq!(status, 200);
        let entries = read_zip(&stored);
        assert_eq!(entries["index.html"].1, b"<h1>hello</h1>");
        assert_eq!(entries["bin/run.sh"].0, 0o755);
        assert_eq!(entries["empty.txt"].1, b"");
        assert_eq!(entries["assets/home.html"].1, b"../index.html");
        let (status, _) = download(&harness, &package, &auditor).await;
        assert_eq!(status, 403);

        // Files of at least one byte are now in the resource cache.
        let cached_sha1 = sha1_hex(b"<h1>hello</h1>");
        let matches = harness
            .post(
                "/v3/resource_matches",
                &developer,
                json!({"resources": [
                    {"checksum": {"value": cached_sha1}, "size_in_bytes": 14, "path": "public/index.html", "mode": "644"},
                    {"checksum": {"value": sha1_hex(b"nope")}, "size_in_bytes": 4, "path": "nope", "mode": "644"},
                ]}),
            )
            .await;
        assert_eq!(matches.status, 201, "{:#}", matches.body);
        assert_eq!(
            matches.body,
            json!({"resources": [{"checksum": {"value": cached_sha1}, "size_in_bytes": 14, "path": "public/index.html", "mode": "644"}]})
        );

        // A second package: only new bits uploaded, the matched file merged from the cache.
        let second = new_package(&harness, &app, &developer).await;
        let new_bits = make_zip(&[file("app.py", b"print('hi')\n")]);
        let uploaded = upload(
            &harness,
            &second,
            &developer,
            Some(json!([{"path": "public/index.html", "checksum": {"value": cached_sha1}, "size_in_bytes": 14, "mode": "600"}])),
            Some(&new_bits),
        )
        .await;
        assert_eq!(uploaded.status, 200, "{:#}", uploaded.body);
        let (_, stored) = download(&harness, &second, &developer).await;
        let entries = read_zip(&stored);
        assert_eq!(entries["app.py"].1, b"print('hi')\n");
        assert_eq!(
            entries["public/index.html"],
            (0o600, b"<h1>hello</h1>".to_vec())
        );

        // A resource the cache does not have fails the upload.
        let third = new_package(&harness, &app, &developer).await;
        upload(
            &harness,
            &third,
            &developer,
            Some(json!([{"path": "x", "checksum": {"value": sha1_hex(b"missing")}, "size_in_bytes": 7, "mode": "644"}])),
            None,
        )
        .await
        .assert_v3_error(
            422,
            "CF-UnprocessableEntity",
            &format!(
                "Invalid resources: the file \"x\" ({}) is not in the resource cache",
                sha1_hex(b"missing")
            ),
        );

        let for_app = harness
            .get(&format!("/v3/apps/{app}/packages?states=READY"), &auditor)
            .await;
        assert_eq!(for_app.status, 200, "{:#}", for_app.body);
        assert_eq!(for_app.body["pagination"]["total_results"], 2);

        // Deleting the app removes its packages and their blobs.
        let deleted = harness.delete(&format!("/v3/apps/{app}"), &developer).await;
        assert_eq!(deleted.status, 202, "{:#}", deleted.body);
        harness
            .wait_job(&deleted.header("location").unwrap(), &developer)
            .await;
        harness
            .get(&format!("/v3/packages/{package}"), &developer)
            .await
            .assert_v3_error(404, "CF-ResourceNotFound", "Package not found");
        assert_eq!(
            files_under(&blob_dir(&harness.database).join("packages")),
            0
        );
        harness.stop().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_zips_are_refused_and_nothing_is_stored() {
    for database in databases() {
        let harness = Harness::start(database).await;
        let (app, developer, _auditor) = app_with_people(&harness).await;
        let package = new_package(&harness, &app, &developer).await;

        // Pseudo-random, incompressible bytes.
        let noise = |seed: u64, length: usize| -> Vec<u8> {
            let mut state = seed;
            (0..length)
                .map(|_| {
                    state = state
                        .wrapping_mul(6364136223846793005)
                        .wrapping_add(1442695040888963407);
                    (state >> 33) as u8
                })
                .collect()
        };
        let zeros = vec![0u8; 3 * 1024 * 1024];
        let big: Vec<Vec<u8>> = (0..3).map(|seed| noise(seed, 400 * 1024)).collect();
        let many: Vec<String> = (0..51).map(|index| format!("f{index}.txt")).collect();
        let cases: Vec<(Vec<u8>, String)> = vec![
            (
                b"this is not a zip".to_vec(),
                "Invalid zip: not a zip file".to_owned(),
            ),
            (
                make_zip(&[file("ok.txt", b"ok"), file("/etc/passwd", b"root")]),
                "Invalid zip: the path \"/etc/passwd\" is absolute or not a plain relative path"
                    .to_owned(),
            ),
            (
                make_zip(&[file("ok.txt", b"ok"), file("a/../../escape.txt", b"x")]),
                "Invalid zip: the path \"a/../../escape.txt\" contains '..'".to_owned(),
            ),
            (
                make_zip(&[
                    file("ok.txt", b"ok"),
                    Item {
                        name: "link",
                        mode: 0,
                        data: b"../../etc/passwd",
                        link: true,
                    },
                ]),
                "Invalid zip: the symlink \"link\" points outside the package".to_owned(),
            ),
            (
                make_zip(&[
                    file("ok.txt", b"ok"),
                    Item {
                        name: "abs",
                        mode: 0,
                        data: b"/etc/passwd",
                        link: true,
                    },
                ]),
                "Invalid zip: the symlink \"abs\" points outside the package".to_owned(),
            ),
            (
                make_zip(&many.iter().map(|name| file(name, b"x")).collect::<Vec<_>>()),
                "Invalid zip: it has 51 entries, more than the limit of 50".to_owned(),
            ),
            (
                make_zip(&[file("zeros.bin", &zeros)]),
                "Invalid zip: the entry \"zeros.bin\" expands more than 100 times".to_owned(),
            ),
            (
                make_zip(&[
                    file("a.bin", &big[0]),
                    file("b.bin", &big[1]),
                    file("c.bin", &big[2]),
                ]),
                "Invalid zip: its contents exceed the limit of 1048576 bytes".to_owned(),
            ),
        ];
        for (bits, message) in cases {
            let answer = upload(&harness, &package, &developer, None, Some(&bits)).await;
            assert_eq!(answer.status, 422, "{message}: {:#}", answer.body);
            assert_eq!(answer.body["errors"][0]["title"], "CF-UnprocessableEntity");
            let detail = answer.body["errors"][0]["detail"].as_str().unwrap();
            assert!(detail.starts_with(&message), "{detail} vs {message}");
        }
        // An upload larger than the limit itself.
        let huge = noise(9, 2 * 1024 * 1024 + 10);
        let answer = upload(&harness, &package, &developer, None, Some(&huge)).await;
        assert_eq!(answer.status, 422, "{:#}", answer.body);

        let still = harness
            .get(&format!("/v3/packages/{package}"), &developer)
            .await;
        assert_eq!(still.body["state"], "AWAITING_UPLOAD");
        let blobs = blob_dir(&harness.database);
        assert_eq!(files_under(&blobs.join("packages")), 0);
        assert_eq!(files_under(&blobs.join("resources")), 0);

        // A good upload after all that works; deleting the space removes its package blob.
        let good = make_zip(&[file("ok.txt", b"ok")]);
        let answer = upload(&harness, &package, &developer, None, Some(&good)).await;
        assert_eq!(answer.status, 200, "{:#}", answer.body);
        assert_eq!(files_under(&blobs.join("packages")), 1);
        let app_body = harness.get(&format!("/v3/apps/{app}"), &developer).await;
        let space = app_body.body["relationships"]["space"]["data"]["guid"]
            .as_str()
            .unwrap()
            .to_owned();
        let deleted = harness
            .delete(&format!("/v3/spaces/{space}"), &harness.admin_token)
            .await;
        let job = harness
            .wait_job(&deleted.header("location").unwrap(), &harness.admin_token)
            .await;
        assert_eq!(job["state"], "COMPLETE", "{job:#}");
        assert_eq!(files_under(&blobs.join("packages")), 0);
        harness.stop().await;
    }
}
