//! The DEA agent over NATS, end to end: a real `nats-server`, real runc, and a small HTTP blob
//! server standing in for the Cloud Controller's package, buildpack and droplet endpoints.

use std::collections::HashMap;
use std::io::Write;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use dea::config::PortRange;
use dea::{DeaConfig, DeaServer};
use futures_util::StreamExt;
use protocol::dea::{
    AdminBuildpack, DeaAdvertise, DropletExited, ExitReason, FindDroplet, FindDropletResponse,
    Heartbeat, InstanceState, Limits, StagingProperties, StagingRequest, StagingResponse,
    StartMessage,
};
use protocol::router::RegistryMessage;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::support::{free_port, harness, http_get, system_buildpack, unique_id, Harness};

const PACKAGE_USER: &str = "cc";
const PACKAGE_PASSWORD: &str = "s3cr@t";

/// A `nats-server` child with token auth; killed when dropped.
struct Nats {
    child: Child,
    port: u16,
    token: String,
}

impl Nats {
    async fn start() -> Option<Nats> {
        let installed = Command::new("nats-server")
            .arg("--version")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok();
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
        assert_eventually!(
            10,
            tokio::net::TcpStream::connect(("127.0.0.1", port))
                .await
                .is_ok(),
            "nats-server never listened"
        );
        Some(nats)
    }

    async fn client(&self) -> async_nats::Client {
        async_nats::ConnectOptions::with_token(self.token.clone())
            // Staging replies take minutes.
            .request_timeout(Some(Duration::from_secs(300)))
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

/// Blobs by path: GET serves them, POST stores the body. Paths under `/private/` need the
/// package credentials.
pub(crate) struct BlobServer {
    port: u16,
    blobs: Arc<Mutex<HashMap<String, Vec<u8>>>>,
    gets: Arc<Mutex<Vec<String>>>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for BlobServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl BlobServer {
    async fn start() -> BlobServer {
        use base64::Engine;
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let blobs: Arc<Mutex<HashMap<String, Vec<u8>>>> = Default::default();
        let gets: Arc<Mutex<Vec<String>>> = Default::default();
        let expected_auth = format!(
            "basic {}",
            base64::engine::general_purpose::STANDARD
                .encode(format!("{PACKAGE_USER}:{PACKAGE_PASSWORD}"))
        )
        .to_ascii_lowercase();
        let (task_blobs, task_gets) = (blobs.clone(), gets.clone());
        let task = tokio::spawn(async move {
            loop {
                let Ok((mut stream, _)) = listener.accept().await else {
                    return;
                };
                let blobs = task_blobs.clone();
                let gets = task_gets.clone();
                let expected_auth = expected_auth.clone();
                tokio::spawn(async move {
                    let mut buffer = Vec::new();
                    let header_end = loop {
                        let mut chunk = [0u8; 8192];
                        let n = stream.read(&mut chunk).await.unwrap_or(0);
                        if n == 0 {
                            return;
                        }
                        buffer.extend_from_slice(&chunk[..n]);
                        if let Some(i) = buffer.windows(4).position(|w| w == b"\r\n\r\n") {
                            break i + 4;
                        }
                    };
                    let head = String::from_utf8_lossy(&buffer[..header_end]).to_string();
                    let mut lines = head.lines();
                    let request_line = lines.next().unwrap_or_default().to_string();
                    let mut parts = request_line.split_whitespace();
                    let method = parts.next().unwrap_or_default().to_string();
                    let path = parts.next().unwrap_or_default().to_string();
                    let mut content_length = 0usize;
                    let mut authorization = String::new();
                    for line in lines {
                        if let Some((name, value)) = line.split_once(':') {
                            match name.trim().to_ascii_lowercase().as_str() {
                                "content-length" => {
                                    content_length = value.trim().parse().unwrap_or(0)
                                }
                                "authorization" => {
                                    authorization = value.trim().to_ascii_lowercase()
                                }
                                _ => {}
                            }
                        }
                    }
                    let mut body = buffer[header_end..].to_vec();
                    while body.len() < content_length {
                        let mut chunk = vec![0u8; 65536];
                        let n = stream.read(&mut chunk).await.unwrap_or(0);
                        if n == 0 {
                            break;
                        }
                        body.extend_from_slice(&chunk[..n]);
                    }
                    if path.starts_with("/hang/") {
                        gets.lock().unwrap().push(path.clone());
                        tokio::time::sleep(Duration::from_secs(120)).await;
                    }
                    let (status, response_body) =
                        if path.starts_with("/private/") && authorization != expected_auth {
                            ("401 Unauthorized", Vec::new())
                        } else if method == "POST" {
                            blobs.lock().unwrap().insert(path, body);
                            ("201 Created", Vec::new())
                        } else {
                            gets.lock().unwrap().push(path.clone());
                            match blobs.lock().unwrap().get(&path) {
                                Some(blob) => ("200 OK", blob.clone()),
                                None => ("404 Not Found", Vec::new()),
                            }
                        };
                    let head = format!(
                        "HTTP/1.1 {status}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
                        response_body.len()
                    );
                    let _ = stream.write_all(head.as_bytes()).await;
                    let _ = stream.write_all(&response_body).await;
                    let _ = stream.shutdown().await;
                });
            }
        });
        BlobServer {
            port,
            blobs,
            gets,
            task,
        }
    }

    fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.port)
    }

    pub(crate) fn put(&self, path: &str, blob: Vec<u8>) {
        self.blobs.lock().unwrap().insert(path.to_string(), blob);
    }

    fn get(&self, path: &str) -> Option<Vec<u8>> {
        self.blobs.lock().unwrap().get(path).cloned()
    }

    fn was_fetched(&self, path: &str) -> bool {
        self.gets.lock().unwrap().iter().any(|p| p == path)
    }
}

/// A zip of `dir`'s files with their unix modes.
fn zip_dir(dir: &Path) -> Vec<u8> {
    use std::os::unix::fs::PermissionsExt;
    fn add(zip: &mut zip::ZipWriter<std::io::Cursor<Vec<u8>>>, root: &Path, dir: &Path) {
        let mut entries: Vec<_> = std::fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().path())
            .collect();
        entries.sort();
        for path in entries {
            let name = path
                .strip_prefix(root)
                .unwrap()
                .to_string_lossy()
                .to_string();
            let mode = std::fs::metadata(&path).unwrap().permissions().mode();
            let options = zip::write::SimpleFileOptions::default().unix_permissions(mode & 0o777);
            if path.is_dir() {
                zip.add_directory(format!("{name}/"), options).unwrap();
                add(zip, root, &path);
            } else {
                zip.start_file(name, options).unwrap();
                zip.write_all(&std::fs::read(&path).unwrap()).unwrap();
            }
        }
    }
    let mut zip = zip::ZipWriter::new(std::io::Cursor::new(Vec::new()));
    add(&mut zip, dir, dir);
    zip.finish().unwrap().into_inner()
}

/// A hand-made droplet whose start command is `command`.
fn droplet(h: &Harness, command: &str) -> Vec<u8> {
    let dir = h.path().join(unique_id("droplet"));
    std::fs::create_dir_all(dir.join("app")).unwrap();
    std::fs::write(dir.join("app/README"), "hand made\n").unwrap();
    std::fs::write(dir.join("app/health.html"), "ok\n").unwrap();
    std::fs::write(
        dir.join("staging_info.yml"),
        serde_json::json!({"detected_buildpack": "", "start_command": command}).to_string(),
    )
    .unwrap();
    let archive = h.path().join(format!("{}.tgz", unique_id("droplet")));
    let status = Command::new("tar")
        .arg("-czf")
        .arg(&archive)
        .arg("-C")
        .arg(&dir)
        .arg(".")
        .status()
        .unwrap();
    assert!(status.success());
    std::fs::read(archive).unwrap()
}

pub(crate) fn sha1_hex(bytes: &[u8]) -> String {
    let output = Command::new("sha1sum")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .and_then(|mut child| {
            child.stdin.take().unwrap().write_all(bytes)?;
            child.wait_with_output()
        })
        .unwrap();
    String::from_utf8(output.stdout).unwrap()[..40].to_string()
}

/// Everything one test needs: runc, NATS, the blob server and a running DEA.
pub(crate) struct World {
    pub(crate) h: Harness,
    _nats: Nats,
    pub(crate) bus: async_nats::Client,
    pub(crate) blobs: BlobServer,
    dea: Option<DeaServer>,
    pub(crate) id: String,
}

impl World {
    async fn start() -> Option<World> {
        World::start_with(|_| {}).await
    }

    /// A World whose DEA configuration `configure` adjusts first.
    pub(crate) async fn start_with(configure: impl FnOnce(&mut DeaConfig)) -> Option<World> {
        let h = harness().await?;
        let nats = Nats::start().await?;
        let bus = nats.client().await;
        let blobs = BlobServer::start().await;
        let first = free_port().clamp(20000, 60000);
        let mut config = DeaConfig::new(
            h.path().join("dea"),
            PortRange {
                first,
                last: first + 50,
            },
        );
        config.advertise_interval_secs = 1;
        config.heartbeat_interval_secs = 1;
        config.router_register_interval_secs = 2;
        config.stop_grace_secs = 2;
        config.liveness_check_interval_secs = 1;
        config.runc.cgroup_parent = "kiln-test".into();
        configure(&mut config);
        let dea = dea::run(config, nats.client().await)
            .await
            .expect("the DEA starts");
        let id = dea.id().to_string();
        Some(World {
            h,
            _nats: nats,
            bus,
            blobs,
            dea: Some(dea),
            id,
        })
    }

    pub(crate) async fn subscribe(&self, subject: &str) -> async_nats::Subscriber {
        let subscriber = self.bus.subscribe(subject.to_string()).await.unwrap();
        // The server has processed the subscription once it echoes a later message back.
        let inbox = self.bus.new_inbox();
        let mut echo = self.bus.subscribe(inbox.clone()).await.unwrap();
        self.bus.publish(inbox, "".into()).await.unwrap();
        tokio::time::timeout(Duration::from_secs(10), echo.next())
            .await
            .expect("the NATS server echoes");
        subscriber
    }

    pub(crate) async fn publish(&self, subject: String, payload: impl Into<Vec<u8>>) {
        self.bus
            .publish(subject, payload.into().into())
            .await
            .unwrap();
        self.bus.flush().await.unwrap();
    }

    pub(crate) fn start_message(&self, app: &str, droplet_path: &str, sha1: &str) -> StartMessage {
        StartMessage {
            droplet: app.to_string(),
            name: "site".into(),
            stack: "kiln-host".into(),
            uris: vec![format!("{app}.apps.kiln.test")],
            sha1: sha1.to_string(),
            executable_uri: self.blobs.url(droplet_path),
            version: "v1".into(),
            index: 0,
            limits: Limits {
                mem: 64,
                disk: 256,
                fds: 1024,
            },
            env: vec!["GREETING=hello".into()],
            start_command: None,
            health_check_timeout: Some(30),
            health_check_type: None,
            health_check_http_endpoint: None,
            vcap_application: serde_json::json!({"application_name": "site"}),
            services: serde_json::json!({}),
            cc_partition: Some("default".into()),
        }
    }

    pub(crate) async fn stop(mut self) {
        if let Some(dea) = self.dea.take() {
            tokio::time::timeout(Duration::from_secs(60), dea.stop())
                .await
                .expect("the DEA stops");
        }
    }
}

pub(crate) fn json<T: serde::Serialize>(value: &T) -> Vec<u8> {
    serde_json::to_vec(value).unwrap()
}

/// The next message on `subscriber` that parses as `T` and satisfies `accept`, within `secs`.
pub(crate) async fn next_matching<T: serde::de::DeserializeOwned>(
    subscriber: &mut async_nats::Subscriber,
    secs: u64,
    what: &str,
    accept: impl Fn(&T) -> bool,
) -> T {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(secs);
    loop {
        let message = tokio::time::timeout_at(deadline, subscriber.next())
            .await
            .unwrap_or_else(|_| panic!("no {what} within {secs} s"))
            .expect("subscription open");
        if let Ok(value) = serde_json::from_slice::<T>(&message.payload) {
            if accept(&value) {
                return value;
            }
        }
    }
}

async fn find(world: &World, app: &str, include_stats: bool) -> FindDropletResponse {
    let request = FindDroplet {
        droplet: app.to_string(),
        include_stats,
        ..FindDroplet::default()
    };
    let reply = tokio::time::timeout(
        Duration::from_secs(10),
        world.bus.request("dea.find.droplet", json(&request).into()),
    )
    .await
    .expect("find.droplet answered in time")
    .expect("find.droplet answered");
    serde_json::from_slice(&reply.payload).unwrap()
}

async fn port_is_open(port: u16) -> bool {
    tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .is_ok()
}

#[tokio::test]
async fn a_package_is_staged_over_nats_then_run_found_updated_and_stopped() {
    let Some(world) = World::start().await else {
        return;
    };
    let app = unique_id("app");
    let mut advertise = world.subscribe("dea.advertise").await;
    let advert: DeaAdvertise =
        next_matching(&mut advertise, 10, "dea.advertise", |a: &DeaAdvertise| {
            a.id == world.id
        })
        .await;
    assert_eq!(advert.stacks, ["kiln-host"]);
    assert_eq!(advert.available_memory, 8192);
    assert_eq!(advert.available_disk, 16384);

    // The package (behind credentials in the URI) and the admin buildpacks, as zips.
    let site = world.h.path().join("site");
    crate::support::write_files(
        &site,
        &[
            ("Staticfile", ""),
            ("index.html", "<h1>Hello over NATS</h1>\n"),
        ],
    );
    world.blobs.put("/private/package.zip", zip_dir(&site));
    let mut admin_buildpacks = Vec::new();
    for name in ["binary_buildpack", "staticfile_buildpack"] {
        let path = format!("/buildpacks/{name}.zip");
        world.blobs.put(&path, zip_dir(&system_buildpack(name).dir));
        admin_buildpacks.push(AdminBuildpack {
            key: format!("{name}-key"),
            name: name.to_string(),
            url: world.blobs.url(&path),
        });
    }
    let task_id = unique_id("build");
    let start = world.start_message(&app, "/droplets/never-fetched", "");
    let request = StagingRequest {
        app_id: app.clone(),
        task_id: task_id.clone(),
        stack: "kiln-host".into(),
        properties: StagingProperties {
            environment: vec!["GREETING=hello".into()],
            ..StagingProperties::default()
        },
        download_uri: format!(
            "http://{PACKAGE_USER}:{}@127.0.0.1:{}/private/package.zip",
            PACKAGE_PASSWORD.replace('@', "%40"),
            world.blobs.port
        ),
        upload_uri: world.blobs.url(&format!("/droplets/{task_id}")),
        buildpack_cache_download_uri: None,
        buildpack_cache_upload_uri: Some(world.blobs.url(&format!("/caches/{app}"))),
        admin_buildpacks,
        start_message: Some(start),
    };
    let mut registers = world.subscribe("router.register").await;
    let mut logs = world.dea.as_ref().unwrap().staging_logs();
    let reply = tokio::time::timeout(
        Duration::from_secs(240),
        world
            .bus
            .request(format!("staging.{}.start", world.id), json(&request).into()),
    )
    .await
    .expect("staging finished in time");
    let reply = reply.expect("a staging reply");
    let response: StagingResponse = serde_json::from_slice(&reply.payload).unwrap();
    assert_eq!(response.error, None, "{response:?}");
    assert_eq!(response.task_id, task_id);
    assert_eq!(response.detected_buildpack.as_deref(), Some("staticfile"));
    assert_eq!(
        response.buildpack_key.as_deref(),
        Some("staticfile_buildpack-key")
    );
    assert_eq!(
        response.detected_start_command.as_deref(),
        Some("$HOME/boot.sh")
    );
    let uploaded = world
        .blobs
        .get(&format!("/droplets/{task_id}"))
        .expect("the droplet was uploaded");
    assert_eq!(
        response.droplet_sha1.as_deref(),
        Some(sha1_hex(&uploaded).as_str())
    );
    assert!(
        world.blobs.get(&format!("/caches/{app}")).is_some(),
        "the cache was uploaded"
    );
    let mut staging_lines = Vec::new();
    while let Ok(line) = logs.try_recv() {
        staging_lines.push(line.line);
    }
    assert!(
        staging_lines
            .iter()
            .any(|l| l.contains("Staticfile Buildpack version")),
        "{staging_lines:?}"
    );

    // The start message rides along: the instance starts from the cached droplet.
    let registration: RegistryMessage = next_matching(
        &mut registers,
        60,
        "router.register",
        |r: &RegistryMessage| r.app.as_deref() == Some(app.as_str()),
    )
    .await;
    assert_eq!(registration.uris, [format!("{app}.apps.kiln.test")]);
    assert_eq!(registration.host, "127.0.0.1");
    assert_eq!(registration.private_instance_index.as_deref(), Some("0"));
    assert_eq!(registration.tags["component"], "dea-0");
    assert_eq!(registration.dea.as_deref(), Some(world.id.as_str()));
    assert!(!world.blobs.was_fetched("/droplets/never-fetched"));
    let port = registration.port;
    let (status, body) = http_get(port, "/").await;
    assert_eq!(status, 200);
    assert!(body.contains("Hello over NATS"), "{body}");

    // Re-registered on router.start.
    world.publish("router.start".into(), r#"{"id":"r","hosts":["127.0.0.1"],"minimumRegisterIntervalInSeconds":20,"pruneThresholdInSeconds":120}"#).await;
    let again: RegistryMessage = next_matching(
        &mut registers,
        10,
        "router.register",
        |r: &RegistryMessage| r.app.as_deref() == Some(app.as_str()),
    )
    .await;
    assert_eq!(again.port, port);

    let found = find(&world, &app, true).await;
    assert_eq!(found.state, InstanceState::Running);
    assert_eq!(found.dea, world.id);
    assert_eq!(
        found.instance,
        registration.private_instance_id.clone().unwrap()
    );
    let stats = found.stats.expect("stats");
    assert_eq!(stats.port, port);
    assert_eq!(stats.mem_quota, 64 * 1024 * 1024);
    assert_eq!(stats.disk_quota, 256 * 1024 * 1024);
    assert!(
        stats.usage.mem > 0 && stats.usage.mem < 64 * 1024 * 1024,
        "{stats:?}"
    );
    assert!(stats.usage.disk > 0, "{stats:?}");
    assert!((0.0..=4.0).contains(&stats.usage.cpu), "{stats:?}");

    let mut heartbeats = world.subscribe("dea.heartbeat").await;
    let heartbeat: Heartbeat =
        next_matching(&mut heartbeats, 10, "dea.heartbeat", |h: &Heartbeat| {
            h.dea == world.id && !h.droplets.is_empty()
        })
        .await;
    assert_eq!(heartbeat.droplets[0].droplet, app);
    assert_eq!(heartbeat.droplets[0].state, InstanceState::Running);
    let advert: DeaAdvertise =
        next_matching(&mut advertise, 10, "dea.advertise", |a: &DeaAdvertise| {
            a.app_id_to_count.contains_key(&app)
        })
        .await;
    assert_eq!(advert.available_memory, 8192 - 64);

    // dea.update: one route added, the old one removed.
    let mut unregisters = world.subscribe("router.unregister").await;
    let new_uri = format!("{app}-new.apps.kiln.test");
    world
        .publish(
            "dea.update".into(),
            json(&serde_json::json!({"droplet": app, "uris": [new_uri], "version": "v1"})),
        )
        .await;
    let added: RegistryMessage = next_matching(
        &mut registers,
        10,
        "router.register",
        |r: &RegistryMessage| r.uris == [new_uri.clone()],
    )
    .await;
    assert_eq!(added.port, port);
    let removed: RegistryMessage = next_matching(
        &mut unregisters,
        10,
        "router.unregister",
        |r: &RegistryMessage| r.app.as_deref() == Some(app.as_str()),
    )
    .await;
    assert_eq!(removed.uris, [format!("{app}.apps.kiln.test")]);

    // dea.stop: routes first, then the instance, then droplet.exited.
    let mut exits = world.subscribe("droplet.exited").await;
    world
        .publish(
            "dea.stop".into(),
            json(&serde_json::json!({"droplet": app})),
        )
        .await;
    let unregistered: RegistryMessage = next_matching(
        &mut unregisters,
        10,
        "router.unregister",
        |r: &RegistryMessage| r.app.as_deref() == Some(app.as_str()),
    )
    .await;
    assert_eq!(unregistered.uris, [new_uri]);
    let exited: DropletExited =
        next_matching(&mut exits, 30, "droplet.exited", |e: &DropletExited| {
            e.droplet == app
        })
        .await;
    assert_eq!(exited.reason, ExitReason::Stopped);
    assert_eq!(exited.crash_timestamp, None);
    assert!(!port_is_open(port).await, "port {port} still open");
    let advert: DeaAdvertise =
        next_matching(&mut advertise, 10, "dea.advertise", |a: &DeaAdvertise| {
            !a.app_id_to_count.contains_key(&app)
        })
        .await;
    assert_eq!(advert.available_memory, 8192);
    world.stop().await;
}

#[tokio::test]
async fn a_crashing_app_is_reported_and_shutdown_stops_the_rest() {
    let Some(world) = World::start().await else {
        return;
    };
    let crasher = unique_id("crasher");
    let droplet_blob = droplet(&world.h, "sleep 2; exit 3");
    let sha1 = sha1_hex(&droplet_blob);
    world.blobs.put("/droplets/crasher.tgz", droplet_blob);
    let mut exits = world.subscribe("droplet.exited").await;
    let mut registers = world.subscribe("router.register").await;
    let mut unregisters = world.subscribe("router.unregister").await;
    let mut start = world.start_message(&crasher, "/droplets/crasher.tgz", &sha1);
    start.health_check_type = Some("process".into());
    world
        .publish(format!("dea.{}.start", world.id), json(&start))
        .await;
    let registered: RegistryMessage = next_matching(
        &mut registers,
        60,
        "router.register",
        |r: &RegistryMessage| r.app.as_deref() == Some(crasher.as_str()),
    )
    .await;
    let exited: DropletExited =
        next_matching(&mut exits, 60, "droplet.exited", |e: &DropletExited| {
            e.droplet == crasher
        })
        .await;
    assert_eq!(exited.reason, ExitReason::Crashed);
    assert_eq!(exited.exit_status, Some(3));
    assert_eq!(
        exited.exit_description.as_deref(),
        Some("APP/PROC/WEB: Exited with status 3")
    );
    assert!(exited.crash_timestamp.is_some());
    assert_eq!(exited.cc_partition.as_deref(), Some("default"));
    let unregistered: RegistryMessage = next_matching(
        &mut unregisters,
        10,
        "router.unregister",
        |r: &RegistryMessage| r.app.as_deref() == Some(crasher.as_str()),
    )
    .await;
    assert_eq!(unregistered.port, registered.port);
    assert!(world.blobs.was_fetched("/droplets/crasher.tgz"));

    // A droplet whose SHA-1 does not match is refused.
    let mut bad = world.start_message(&unique_id("bad"), "/droplets/crasher.tgz", &"0".repeat(40));
    bad.health_check_type = Some("process".into());
    world
        .publish(format!("dea.{}.start", world.id), json(&bad))
        .await;
    let refused: DropletExited =
        next_matching(&mut exits, 30, "droplet.exited", |e: &DropletExited| {
            e.droplet == bad.droplet
        })
        .await;
    assert_eq!(refused.reason, ExitReason::Crashed);
    assert!(
        refused
            .exit_description
            .as_deref()
            .unwrap_or("")
            .contains("SHA-1 mismatch"),
        "{refused:?}"
    );

    // A running instance whose http health check starts failing is crashed.
    let flaky = unique_id("flaky");
    let droplet_blob = droplet(&world.h, "exec python3 -m http.server $PORT --bind 0.0.0.0");
    let sha1 = sha1_hex(&droplet_blob);
    world.blobs.put("/droplets/flaky.tgz", droplet_blob);
    let mut start = world.start_message(&flaky, "/droplets/flaky.tgz", &sha1);
    start.health_check_type = Some("http".into());
    start.health_check_http_endpoint = Some("/health.html".into());
    world
        .publish(format!("dea.{}.start", world.id), json(&start))
        .await;
    let registered: RegistryMessage = next_matching(
        &mut registers,
        60,
        "router.register",
        |r: &RegistryMessage| r.app.as_deref() == Some(flaky.as_str()),
    )
    .await;
    let health_file = world
        .h
        .path()
        .join("dea/instances")
        .join(registered.private_instance_id.as_deref().unwrap())
        .join("home/app/health.html");
    assert!(health_file.exists(), "{}", health_file.display());
    std::fs::remove_file(&health_file).unwrap();
    let exited: DropletExited =
        next_matching(&mut exits, 30, "droplet.exited", |e: &DropletExited| {
            e.droplet == flaky
        })
        .await;
    assert_eq!(exited.reason, ExitReason::Crashed);
    let description = exited.exit_description.unwrap_or_default();
    assert!(
        description.starts_with(
            "Instance became unhealthy: failed to make HTTP request to '/health.html'"
        ) && description.contains("status code 404"),
        "{description}"
    );

    // A long-running instance is stopped by the DEA's shutdown.
    let sleeper = unique_id("sleeper");
    let droplet_blob = droplet(&world.h, "sleep 1000");
    let sha1 = sha1_hex(&droplet_blob);
    world.blobs.put("/droplets/sleeper.tgz", droplet_blob);
    let mut start = world.start_message(&sleeper, "/droplets/sleeper.tgz", &sha1);
    start.health_check_type = Some("process".into());
    world
        .publish(format!("dea.{}.start", world.id), json(&start))
        .await;
    next_matching(
        &mut registers,
        60,
        "router.register",
        |r: &RegistryMessage| r.app.as_deref() == Some(sleeper.as_str()),
    )
    .await;
    let bus = world.bus.clone();
    world.stop().await;
    let exited: DropletExited =
        next_matching(&mut exits, 10, "droplet.exited", |e: &DropletExited| {
            e.droplet == sleeper
        })
        .await;
    assert_eq!(exited.reason, ExitReason::DeaShutdown);
    next_matching(
        &mut unregisters,
        10,
        "router.unregister",
        |r: &RegistryMessage| r.app.as_deref() == Some(sleeper.as_str()),
    )
    .await;
    drop(bus);
}

#[tokio::test]
async fn malformed_messages_are_ignored_and_failed_staging_replies_with_an_error() {
    let Some(world) = World::start().await else {
        return;
    };
    for subject in [
        format!("dea.{}.start", world.id),
        "dea.stop".to_string(),
        "dea.update".to_string(),
        "dea.find.droplet".to_string(),
        "router.start".to_string(),
    ] {
        world.publish(subject.clone(), "{not json").await;
        world.publish(subject, r#"{"unexpected": true}"#).await;
    }
    let reply = tokio::time::timeout(
        Duration::from_secs(10),
        world
            .bus
            .request(format!("staging.{}.start", world.id), "][".into()),
    )
    .await
    .unwrap()
    .expect("an error reply");
    let response: StagingResponse = serde_json::from_slice(&reply.payload).unwrap();
    assert_eq!(
        response.error_info.map(|info| info.kind).as_deref(),
        Some("StagingError")
    );

    // A package that cannot be downloaded fails staging with a StagingError reply, and no
    // credentials leak into the message.
    let request = StagingRequest {
        app_id: unique_id("app"),
        task_id: unique_id("build"),
        stack: "kiln-host".into(),
        properties: StagingProperties::default(),
        download_uri: format!(
            "http://user:topsecret@127.0.0.1:{}/missing.zip",
            world.blobs.port
        ),
        upload_uri: world.blobs.url("/droplets/x"),
        buildpack_cache_download_uri: None,
        buildpack_cache_upload_uri: None,
        admin_buildpacks: Vec::new(),
        start_message: None,
    };
    let reply = tokio::time::timeout(
        Duration::from_secs(30),
        world
            .bus
            .request(format!("staging.{}.start", world.id), json(&request).into()),
    )
    .await
    .unwrap()
    .expect("a reply");
    let response: StagingResponse = serde_json::from_slice(&reply.payload).unwrap();
    let error = response.error.expect("an error");
    assert!(error.contains("package"), "{error}");
    assert!(!error.contains("topsecret"), "{error}");
    assert_eq!(response.task_id, request.task_id);

    // A package with a path leaving its directory is refused.
    let evil = {
        let mut zip = zip::ZipWriter::new(std::io::Cursor::new(Vec::new()));
        zip.start_file("../evil.txt", zip::write::SimpleFileOptions::default())
            .unwrap();
        zip.write_all(b"x").unwrap();
        zip.finish().unwrap().into_inner()
    };
    world.blobs.put("/evil.zip", evil);
    let request = StagingRequest {
        task_id: unique_id("build"),
        download_uri: world.blobs.url("/evil.zip"),
        ..request
    };
    let reply = world
        .bus
        .request(format!("staging.{}.start", world.id), json(&request).into())
        .await
        .expect("a reply");
    let response: StagingResponse = serde_json::from_slice(&reply.payload).unwrap();
    let error = response.error.expect("an error");
    assert!(error.contains("leaves the directory"), "{error}");

    // staging.stop cancels a staging task (here: stuck downloading) with an error reply.
    let app_id = unique_id("app");
    let request = StagingRequest {
        app_id: app_id.clone(),
        task_id: unique_id("build"),
        download_uri: world.blobs.url("/hang/package.zip"),
        ..request
    };
    let pending = world
        .bus
        .request(format!("staging.{}.start", world.id), json(&request).into());
    let stop = async {
        assert_eventually!(
            10,
            world.blobs.was_fetched("/hang/package.zip"),
            "the download never started"
        );
        world
            .publish(
                "staging.stop".into(),
                json(&serde_json::json!({"app_id": app_id})),
            )
            .await;
    };
    let (reply, ()) = tokio::join!(tokio::time::timeout(Duration::from_secs(30), pending), stop);
    let response: StagingResponse =
        serde_json::from_slice(&reply.expect("a timely reply").expect("a reply").payload).unwrap();
    assert_eq!(
        response.error.as_deref(),
        Some("Staging error: staging was cancelled")
    );

    // Still alive: it advertises and answers.
    let mut advertise = world.subscribe("dea.advertise").await;
    let advert: DeaAdvertise =
        next_matching(&mut advertise, 10, "dea.advertise", |a: &DeaAdvertise| {
            a.id == world.id
        })
        .await;
    assert_eq!(advert.available_memory, 8192);
    world.stop().await;
}

/// Every log envelope received on `socket` within `secs`, until `enough` holds, as
/// (source_type, instance_id, log type, payload).
async fn receive_logs(
    socket: &tokio::net::UdpSocket,
    secs: u64,
    enough: impl Fn(&[(String, String, String, String)]) -> bool,
) -> Vec<(String, String, String, String)> {
    use base64::Engine;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(secs);
    let mut seen = Vec::new();
    let mut buffer = vec![0u8; 70_000];
    while !enough(&seen) {
        let Ok(Ok(length)) = tokio::time::timeout_at(deadline, socket.recv(&mut buffer)).await
        else {
            break;
        };
        let datagram: serde_json::Value = serde_json::from_slice(&buffer[..length]).unwrap();
        for envelope in datagram["batch"].as_array().cloned().unwrap_or_default() {
            let payload = envelope["log"]["payload"].as_str().unwrap_or_default();
            let payload = base64::engine::general_purpose::STANDARD
                .decode(payload)
                .map(|bytes| String::from_utf8_lossy(&bytes).into_owned())
                .unwrap_or_default();
            seen.push((
                envelope["tags"]["source_type"]
                    .as_str()
                    .unwrap_or_default()
                    .to_owned(),
                envelope["instance_id"]
                    .as_str()
                    .unwrap_or_default()
                    .to_owned(),
                envelope["log"]["type"]
                    .as_str()
                    .unwrap_or_default()
                    .to_owned(),
                payload,
            ));
        }
    }
    seen
}

#[tokio::test]
async fn app_output_and_lifecycle_lines_go_to_the_loggregator() {
    let socket = tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let ingress = socket.local_addr().unwrap();
    let Some(world) = World::start_with(move |config| {
        config.loggregator_ingress = Some(ingress);
    })
    .await
    else {
        return;
    };
    let app = unique_id("talker");
    let droplet_blob = droplet(
        &world.h,
        "echo hello from stdout; echo oops on stderr >&2; sleep 1; exit 7",
    );
    let sha1 = sha1_hex(&droplet_blob);
    world.blobs.put("/droplets/talker.tgz", droplet_blob);
    let mut start = world.start_message(&app, "/droplets/talker.tgz", &sha1);
    start.health_check_type = Some("process".into());
    start.index = 2;
    start.vcap_application = serde_json::json!({
        "application_name": "talker", "space_id": "space-guid", "space_name": "dev",
        "organization_id": "org-guid", "organization_name": "acme",
        "process_id": "process-guid", "process_type": "web",
    });
    world
        .publish(format!("dea.{}.start", world.id), json(&start))
        .await;
    let lines = receive_logs(&socket, 60, |seen| {
        seen.iter()
            .any(|(_, _, _, payload)| payload.contains("successfully destroyed container"))
    })
    .await;
    let has = |source: &str, kind: &str, text: &str| {
        lines
            .iter()
            .any(|(source_type, instance, log_type, payload)| {
                source_type == source
                    && instance == "2"
                    && log_type == kind
                    && payload.contains(text)
            })
    };
    assert!(
        has("APP/PROC/WEB", "OUT", "hello from stdout"),
        "{lines:#?}"
    );
    assert!(has("APP/PROC/WEB", "ERR", "oops on stderr"), "{lines:#?}");
    assert!(has("APP/PROC/WEB", "OUT", "Exit status 7"), "{lines:#?}");
    assert!(
        has(
            "CELL",
            "OUT",
            &format!("Cell {} creating container for instance", world.id)
        ),
        "{lines:#?}"
    );
    assert!(
        has("CELL", "OUT", "successfully created container for instance"),
        "{lines:#?}"
    );
    assert!(has("CELL", "OUT", "Downloading droplet..."), "{lines:#?}");
    assert!(has("CELL", "OUT", "Container became healthy"), "{lines:#?}");
    assert!(has("CELL", "OUT", "stopping instance"), "{lines:#?}");
    world.stop().await;
}

#[tokio::test]
async fn an_instance_cannot_write_past_its_disk_quota() {
    let socket = tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let ingress = socket.local_addr().unwrap();
    let Some(world) = World::start_with(move |config| {
        config.loggregator_ingress = Some(ingress);
    })
    .await
    else {
        return;
    };
    let app = unique_id("filler");
    let droplet_blob = droplet(
        &world.h,
        "if dd if=/dev/zero of=big bs=1M count=100 2>/dev/null; then echo quota-ignored; else echo quota-enforced; fi; df -m . | tail -1; exec sleep 60",
    );
    let sha1 = sha1_hex(&droplet_blob);
    world.blobs.put("/droplets/filler.tgz", droplet_blob);
    let mut start = world.start_message(&app, "/droplets/filler.tgz", &sha1);
    start.health_check_type = Some("process".into());
    start.limits.disk = 64;
    world
        .publish(format!("dea.{}.start", world.id), json(&start))
        .await;
    let lines = receive_logs(&socket, 60, |seen| {
        seen.iter()
            .any(|(_, _, _, payload)| payload.starts_with("quota-"))
    })
    .await;
    assert!(
        lines
            .iter()
            .any(|(_, _, _, payload)| payload == "quota-enforced"),
        "{lines:#?}"
    );
    world.stop().await;
}
