//! The logs story: `cf push` streams the buildpack's staging output; `cf logs --recent` shows the
//! app's stdout and stderr, the router's access line per request, the Cloud Controller's API lines
//! and the DEA's CELL lines; `cf logs` streams new lines live; a syslog drain (a user-provided
//! service with `-l syslog://…`) receives the app's lines as RFC 5424 messages.

use std::io::{BufRead, BufReader, Read};
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use cats::unique_name;

use crate::{cf_binary, eventually, instance_server_dir, shared_platform, targeted_admin};

#[test]
fn staging_app_router_api_and_cell_lines_reach_cf_logs() {
    let Some(cf) = cf_binary() else { return };
    let platform = shared_platform();
    if !platform.options.runs_apps {
        assert!(
            std::env::var("KILN_REQUIRE_RUNC").as_deref() != Ok("1"),
            "KILN_REQUIRE_RUNC=1 but kiln up runs no DEA (root and runc are needed)"
        );
        eprintln!("skipping: this kiln up runs no DEA");
        return;
    }
    let (admin, org) = targeted_admin(&cf, platform, "logs");
    let app = unique_name("talk");
    let dir = instance_server_dir();
    // The buildpack's output appears during the push, without headers.
    admin
        .run(&[
            "push",
            &app,
            "-p",
            dir.path().to_str().unwrap(),
            "-b",
            "binary_buildpack",
            "-c",
            "./server",
            "-m",
            "64M",
        ])
        .success()
        .contains("Staging app and tracing logs...")
        .contains("   -----> Binary Buildpack")
        .contains("   Uploading droplet...")
        .lacks("Failed to retrieve logs from Log Cache");

    // A live stream, started before the requests it must show.
    let mut stream = Command::new(&cf)
        .args(["logs", &app])
        .env("CF_HOME", admin.home())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("cf logs starts");
    let streamed = Arc::new(Mutex::new(String::new()));
    let sink = streamed.clone();
    let stdout = stream.stdout.take().unwrap();
    let reader = std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            let mut text = sink.lock().unwrap();
            text.push_str(&line);
            text.push('\n');
        }
    });
    std::thread::sleep(Duration::from_secs(2));
    for path in ["/log/out/line-on-stdout", "/log/err/line-on-stderr"] {
        let (status, _, _) = platform.get_app(&app, path).unwrap();
        assert_eq!(status, 200);
    }
    let live = eventually(Duration::from_secs(30), || {
        let text = streamed.lock().unwrap();
        text.contains("OUT line-on-stdout") && text.contains("ERR line-on-stderr")
    });
    let _ = stream.kill();
    let _ = stream.wait();
    let _ = reader.join();
    assert!(
        live,
        "cf logs did not stream:\n{}",
        streamed.lock().unwrap()
    );

    // The recent history holds every source.
    let recent = admin.run(&["logs", &app, "--recent"]).success();
    let text = recent.text();
    for needle in [
        "[STG/0] OUT -----> Binary Buildpack",
        "[API/0] OUT Creating build for app with guid",
        "[API/0] OUT Staging complete for build",
        "[API/0] OUT Updated app with guid",
        "[CELL/0] OUT Cell ",
        "creating container for instance",
        "[CELL/0] OUT Container became healthy",
        "[APP/PROC/WEB/0] OUT instance-server: listening on port",
        "[APP/PROC/WEB/0] ERR instance-server: stderr is connected",
        "[APP/PROC/WEB/0] OUT line-on-stdout",
        "[APP/PROC/WEB/0] ERR line-on-stderr",
        "\"GET /log/out/line-on-stdout HTTP/1.1\" 200",
    ] {
        assert!(
            text.contains(needle),
            "cf logs --recent lacks {needle:?}:\n{text}"
        );
    }
    let router_line = text
        .lines()
        .find(|line| line.contains("GET /log/err/line-on-stderr"))
        .unwrap_or_default();
    assert!(
        router_line.contains("[RTR/0] OUT ")
            && router_line.contains("app_id:\"")
            && router_line.contains("x_cf_routererror:\"-\""),
        "{router_line}"
    );

    // A crash: the app's exit status, then the Cloud Controller's two crash lines naming the
    // instance, the cell that ran it and the reason.
    let guid = admin.run(&["app", &app, "--guid"]).success().text();
    let guid = guid.trim().to_owned();
    let (status, _, _) = platform
        .get_app(&app, "/crash")
        .unwrap_or((0, None, String::new()));
    assert_ne!(status, 200, "/crash answered");
    let mut crash_text = String::new();
    let crashed = eventually(Duration::from_secs(30), || {
        crash_text = admin.run(&["logs", &app, "--recent"]).text();
        crash_text.contains(&format!(
            "[API/0] OUT App instance exited with guid {guid} payload: {{\"instance\"=>"
        ))
    });
    assert!(crashed, "no API crash line:\n{crash_text}");
    for needle in [
        "[APP/PROC/WEB/0] OUT Exit status 17",
        "[API/0] OUT Process has crashed with type: \"web\"",
        "\"index\"=>0, \"cell_id\"=>\"",
        "\"reason\"=>\"CRASHED\"",
        "\"crash_count\"=>1,",
    ] {
        assert!(
            crash_text.contains(needle),
            "cf logs --recent lacks {needle:?}:\n{crash_text}"
        );
    }
    assert!(
        !crash_text.contains("\"cell_id\"=>\"\""),
        "the crash line names no cell:\n{crash_text}"
    );

    admin.run(&["stop", &app]).success();
    assert!(
        eventually(Duration::from_secs(20), || admin
            .run(&["logs", &app, "--recent"])
            .text()
            .contains("[API/0] OUT Stopping app with guid")),
        "no API stop line"
    );
    admin.run(&["delete", &app, "-r", "-f"]).success();
    admin.run(&["delete-org", &org, "-f"]).success();
}

#[test]
fn a_syslog_drain_receives_the_app_s_lines() {
    let Some(cf) = cf_binary() else { return };
    let platform = shared_platform();
    if !platform.options.runs_apps || !platform.is_local() {
        eprintln!("skipping: needs a local kiln up that runs apps");
        return;
    }
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let drain_url = format!("syslog://{}", listener.local_addr().unwrap());
    let received = Arc::new(Mutex::new(String::new()));
    let sink = received.clone();
    std::thread::spawn(move || {
        for connection in listener.incoming().flatten() {
            let sink = sink.clone();
            std::thread::spawn(move || {
                let mut connection = connection;
                let mut buffer = [0u8; 8192];
                while let Ok(n) = connection.read(&mut buffer) {
                    if n == 0 {
                        break;
                    }
                    sink.lock()
                        .unwrap()
                        .push_str(&String::from_utf8_lossy(&buffer[..n]));
                }
            });
        }
    });
    let (admin, org) = targeted_admin(&cf, platform, "drain");
    let app = unique_name("drained");
    let dir = instance_server_dir();
    admin
        .run(&[
            "push",
            &app,
            "-p",
            dir.path().to_str().unwrap(),
            "-b",
            "binary_buildpack",
            "-c",
            "./server",
            "-m",
            "64M",
        ])
        .success();
    admin
        .run(&["cups", "drain", "-l", &drain_url])
        .success()
        .contains("OK");
    admin.run(&["bind-service", &app, "drain"]).success();
    admin.run(&["restart", &app]).success();
    // The loggregator polls the drain list every few seconds; keep logging until lines arrive.
    // The app's own line (the router's access line for the request carries the text too).
    let app_line = |text: &str| {
        text.split('\n')
            .find(|line| line.contains("[APP/PROC/WEB/0]") && line.contains("to-the-drain"))
            .map(str::to_owned)
    };
    let router_line = |text: &str| {
        text.split('\n')
            .any(|line| line.contains("[RTR/0]") && line.contains("GET /log/out/to-the-drain"))
    };
    let arrived = eventually(Duration::from_secs(60), || {
        let text = received.lock().unwrap().clone();
        if app_line(&text).is_some() && router_line(&text) {
            return true;
        }
        let _ = platform.get_app(&app, "/log/out/to-the-drain");
        false
    });
    let text = received.lock().unwrap().clone();
    assert!(arrived, "the app's line did not reach the drain:\n{text}");
    // RFC 5424 with octet counting: `<len> <PRI>1 TIMESTAMP HOST APP-NAME [APP/PROC/WEB/0] - ...`.
    let line = app_line(&text).unwrap_or_default();
    assert!(line.contains(">1 "), "not RFC 5424: {line}");
    assert!(router_line(&text), "no router line in the drain:\n{text}");
    admin.run(&["unbind-service", &app, "drain"]).success();
    admin.run(&["delete", &app, "-r", "-f"]).success();
    admin.run(&["delete-org", &org, "-f"]).success();
}
