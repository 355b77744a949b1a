//! The runc container runtime: isolation, limits, output, exit statuses, stop.

use std::time::{Duration, Instant};

use dea::container::{Limits, Stream};

use crate::support::harness;

#[tokio::test]
async fn runs_as_vcap_with_a_read_only_root_and_writable_home_and_tmp() {
    let Some(h) = harness().await else { return };
    let script = r#"
        id -u; id -g; id -un
        touch /usr/x 2>/dev/null && echo usr-writable || echo usr-read-only
        touch /etc/x 2>/dev/null && echo etc-writable || echo etc-read-only
        touch /x 2>/dev/null && echo root-writable || echo root-read-only
        touch /home/vcap/x && echo home-writable
        touch /tmp/x && echo tmp-writable
        grep -c vcap /etc/passwd
        grep -q "localhost $(hostname)" /etc/hosts && echo hosts-ok
        grep CapEff /proc/self/status
        grep NoNewPrivs /proc/self/status
        echo oops >&2
        exit 42
    "#;
    let spec = h.shell_spec(script);
    let home = spec.home_dir.clone();
    let (status, output) = h.run(spec).await;
    assert_eq!(status.code, 42, "{output:?}");
    assert!(!status.oom_killed);
    assert_eq!(
        output.stdout(),
        [
            "2000",
            "2000",
            "vcap",
            "usr-read-only",
            "etc-read-only",
            "root-read-only",
            "home-writable",
            "tmp-writable",
            "1",
            "hosts-ok",
            "CapEff:\t0000000000000000",
            "NoNewPrivs:\t1"
        ],
        "{output:?}"
    );
    assert_eq!(output.stderr(), ["oops"]);
    assert!(
        home.join("x").exists(),
        "the home directory is the host directory"
    );
}

#[tokio::test]
async fn sigterm_is_forwarded_to_the_app() {
    let Some(h) = harness().await else { return };
    // `sleep` has no handler for SIGTERM; as PID 1 it would ignore it, under the init it dies.
    let (container, mut output) = h.start(h.shell_spec("echo started; exec sleep 600")).await;
    // Stop only once the app runs: a stop racing the container's start-up says nothing about
    // signal forwarding.
    let first = tokio::time::timeout(Duration::from_secs(30), output.recv())
        .await
        .expect("the app starts");
    assert_eq!(first.map(|line| line.line).as_deref(), Some("started"));
    let started = Instant::now();
    let status = container.stop(Duration::from_secs(20)).await.unwrap();
    assert_eq!(status.code, 143, "killed by SIGTERM: {status:?}");
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "stopped without waiting the grace period"
    );
}

#[tokio::test]
async fn an_app_ignoring_sigterm_is_killed_after_the_grace_period() {
    let Some(h) = harness().await else { return };
    let (container, mut output) = h
        .start(h.shell_spec("trap '' TERM; echo ready; while :; do sleep 0.1; done"))
        .await;
    let line = output.recv().await.expect("ready line");
    assert_eq!(line.line, "ready");
    let started = Instant::now();
    let status = container.stop(Duration::from_secs(1)).await.unwrap();
    let elapsed = started.elapsed();
    assert_eq!(status.code, 137, "killed by SIGKILL: {status:?}");
    assert!(!status.oom_killed);
    assert!(
        elapsed >= Duration::from_secs(1),
        "waited the grace period: {elapsed:?}"
    );
    assert!(elapsed < Duration::from_secs(8), "{elapsed:?}");
    assert_eq!(container.exit_status(), Some(status));
}

#[tokio::test]
async fn exceeding_the_memory_limit_is_reported_as_oom() {
    let Some(h) = harness().await else { return };
    let mut spec =
        h.shell_spec("python3 -c 'data = b\"x\" * (300 * 1024 * 1024); print(len(data))'");
    spec.limits = Limits {
        memory_bytes: 64 * 1024 * 1024,
        ..Limits::default()
    };
    let (status, output) = h.run(spec).await;
    assert!(status.oom_killed, "{status:?} {output:?}");
    assert_eq!(
        status.description(),
        format!("Exited with status {} (out of memory)", status.code)
    );
}

#[tokio::test]
async fn the_pids_limit_stops_forks() {
    let Some(h) = harness().await else { return };
    let script = r#"python3 -c '
import os, time
children = 0
try:
    for _ in range(64):
        if os.fork() == 0:
            time.sleep(2)
            os._exit(0)
        children += 1
except OSError as error:
    print("fork failed after", children, error.errno)
'"#;
    let mut spec = h.shell_spec(script);
    spec.limits = Limits {
        pids: 16,
        ..Limits::default()
    };
    let (status, output) = h.run(spec).await;
    assert_eq!(status.code, 0, "{output:?}");
    let line = output.stdout().join("\n");
    assert!(line.starts_with("fork failed after"), "{output:?}");
    let children: u32 = line.split_whitespace().nth(3).unwrap().parse().unwrap();
    assert!(children < 16, "{line}");
    assert!(line.ends_with(" 11"), "EAGAIN: {line}");
}

#[tokio::test]
async fn containers_cannot_see_each_others_processes() {
    let Some(h) = harness().await else { return };
    let (first, mut first_output) = h.start(h.shell_spec("echo up; exec sleep 31337")).await;
    assert_eq!(first_output.recv().await.unwrap().line, "up");
    let script = r#"
        cat /proc/[0-9]*/cmdline | tr '\0' ' ' | grep -c 'sleep 3133[7]'
        echo "pid1: $(tr '\0\n' '  ' < /proc/1/cmdline | cut -c1-20)"
        echo "processes: $(ls -d /proc/[0-9]* | wc -l)"
    "#;
    let (_status, output) = h.run(h.shell_spec(script)).await;
    let lines = output.stdout();
    assert_eq!(
        lines[0], "0",
        "the other container's sleep is invisible: {output:?}"
    );
    assert!(
        lines[1].starts_with("pid1: /bin/bash -c"),
        "PID 1 is our init: {output:?}"
    );
    let processes: u32 = lines[2].trim_start_matches("processes: ").parse().unwrap();
    assert!(processes <= 8, "only its own processes: {output:?}");
    first.stop(Duration::from_secs(5)).await.unwrap();
}

#[tokio::test]
async fn stats_report_memory_cpu_and_disk() {
    let Some(h) = harness().await else { return };
    let script = "head -c 3000000 /dev/zero > /home/vcap/blob; echo ready; \
                  python3 -c 'x = b\"y\" * (40 * 1024 * 1024); import time; time.sleep(60)'";
    let (container, mut output) = h.start(h.shell_spec(script)).await;
    assert_eq!(output.recv().await.unwrap().line, "ready");
    let mut stats;
    assert_eventually!(
        10,
        {
            stats = container.stats().await.unwrap();
            stats.memory_bytes > 40 * 1024 * 1024
        },
        "memory usage reaches 40 MB: {stats:?}"
    );
    assert!(stats.disk_bytes >= 3_000_000, "{stats:?}");
    assert!(stats.cpu_total_ns > 0, "{stats:?}");
    assert!((0.0..=2.5).contains(&stats.cpu_fraction), "{stats:?}");
    let status = container.stop(Duration::from_secs(5)).await.unwrap();
    assert_eq!(status.code, 143);
}

#[tokio::test]
async fn output_lines_are_tagged_and_cleanup_leaves_nothing_behind() {
    let Some(h) = harness().await else { return };
    let spec = h.shell_spec("echo one; echo two >&2; printf 'no newline'");
    let id = spec.id.clone();
    let (status, output) = h.run(spec).await;
    assert_eq!(status.code, 0);
    assert_eq!(output.stdout(), ["one", "no newline"]);
    assert_eq!(
        output
            .0
            .iter()
            .filter(|l| l.stream == Stream::Stderr)
            .count(),
        1
    );
    assert!(!h.runtime.list().await.unwrap().contains(&id));
    assert_no_cgroup_left(&id);
    assert!(!h.path().join("bundles").join(&id).exists());
}

#[tokio::test]
async fn a_dropped_container_is_killed_and_removed() {
    let Some(h) = harness().await else { return };
    let spec = h.shell_spec("sleep 600");
    let id = spec.id.clone();
    let (container, _output) = h.start(spec).await;
    assert!(h.runtime.list().await.unwrap().contains(&id));
    drop(container);
    assert!(!h.runtime.list().await.unwrap().contains(&id));
    assert_no_cgroup_left(&id);
}

#[tokio::test]
async fn a_disk_quota_volume_limits_the_home_directory() {
    let Some(h) = harness().await else { return };
    let mut spec = h.shell_spec(
        "head -c 4000000 /dev/zero > /home/vcap/small && echo small-ok; \
         head -c 40000000 /dev/zero > /home/vcap/big 2>/dev/null || echo big-failed",
    );
    let image = h.path().join(format!("{}.img", spec.id));
    let volume = dea::container::disk::DiskVolume::create(&image, &spec.home_dir, 16 * 1024 * 1024)
        .await
        .expect("loop volume");
    spec.home_dir = volume.mountpoint().to_path_buf();
    let (status, output) = h.run(spec).await;
    assert_eq!(
        output.stdout(),
        ["small-ok", "big-failed"],
        "{status:?} {output:?}"
    );
    volume.release().await.unwrap();
    assert!(!image.exists());
}

/// The container's cgroup is gone from every hierarchy, the cgroup2 one included.
fn assert_no_cgroup_left(id: &str) {
    for hierarchy in ["memory", "pids", "cpu", "cpuacct", "freezer", "unified"] {
        let dir = std::path::Path::new("/sys/fs/cgroup")
            .join(hierarchy)
            .join("kiln-test")
            .join(id);
        assert!(!dir.exists(), "{} is left behind", dir.display());
    }
}
