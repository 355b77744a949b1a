//! Writes an OCI bundle (rootfs skeleton, generated `/etc` files, `config.json`) for one container.

use std::fs;
use std::os::unix::fs::{symlink, PermissionsExt};
use std::path::{Path, PathBuf};

use serde_json::{json, Value};

use super::{ContainerSpec, CONTAINER_HOME, VCAP_GID, VCAP_UID};

const DEFAULT_PATH: &str = "/usr/local/bin:/usr/bin:/bin";

/// PID 1 of every container. Bash ignores signals it has no handler for when it is PID 1, and so
/// would the app; so the init runs the command as a background child, traps the usual stop
/// signals and forwards them, and reaps re-parented orphans (bash's SIGCHLD handling waits for
/// any child). A trapped signal interrupts `wait`, so it waits again until the child is gone.
pub(crate) const INIT_SCRIPT: &str = r#"
"$@" &
child=$!
for sig in TERM INT HUP QUIT USR1 USR2; do
  trap "kill -s $sig $child 2>/dev/null" "$sig"
done
while :; do
  wait "$child"
  status=$?
  if ! kill -0 "$child" 2>/dev/null; then
    wait "$child" 2>/dev/null
    last=$?
    if [ "$last" != 127 ]; then status=$last; fi
    break
  fi
done
exit "$status"
"#;

/// Host directories that merged-usr hosts replace with symlinks into `/usr`.
const TOP_LEVEL_LIB_DIRS: &[&str] = &["bin", "sbin", "lib", "lib32", "lib64", "libx32"];

pub(crate) struct BundlePaths {
    pub(crate) dir: PathBuf,
}

impl BundlePaths {
    fn rootfs(&self) -> PathBuf {
        self.dir.join("rootfs")
    }
    fn etc(&self) -> PathBuf {
        self.dir.join("etc")
    }
    pub(crate) fn log_file(&self) -> PathBuf {
        self.dir.join("runc.log")
    }
    pub(crate) fn pid_file(&self) -> PathBuf {
        self.dir.join("init.pid")
    }
}

/// Creates the bundle directory. Fails if it already exists (the id is in use).
pub(crate) fn write_bundle(
    paths: &BundlePaths,
    spec: &ContainerSpec,
    cgroups_path: &str,
) -> std::io::Result<()> {
    fs::create_dir_all(paths.dir.parent().unwrap_or(Path::new("/")))?;
    fs::create_dir(&paths.dir)?;
    let rootfs = paths.rootfs();
    fs::create_dir(&rootfs)?;
    for dir in ["usr", "etc", "proc", "dev", "sys", "tmp", "home/vcap"] {
        fs::create_dir_all(rootfs.join(dir))?;
    }
    // runc gives a tmpfs the mode of its mountpoint, so /tmp must be 1777 here.
    fs::set_permissions(rootfs.join("tmp"), fs::Permissions::from_mode(0o1777))?;

    let mut host_lib_binds = Vec::new();
    for name in TOP_LEVEL_LIB_DIRS {
        let host = Path::new("/").join(name);
        match fs::symlink_metadata(&host) {
            Ok(metadata) if metadata.file_type().is_symlink() => {
                symlink(fs::read_link(&host)?, rootfs.join(name))?;
            }
            Ok(metadata) if metadata.is_dir() => {
                fs::create_dir(rootfs.join(name))?;
                host_lib_binds.push(format!("/{name}"));
            }
            _ => {}
        }
    }

    let hostname = hostname(spec);
    let etc = paths.etc();
    fs::create_dir(&etc)?;
    fs::write(etc.join("passwd"), passwd())?;
    fs::write(etc.join("group"), group())?;
    let mut hosts =
        format!("127.0.0.1 localhost {hostname}\n::1 localhost ip6-localhost ip6-loopback\n");
    let resolv = match &spec.network {
        // The container shares the host's network, so the host's resolvers are reachable.
        None => fs::read_to_string("/etc/resolv.conf").unwrap_or_default(),
        // Its own namespace: the hostname must resolve locally, or libc asks an unreachable
        // resolver and waits (the 10-second stall of `socket.getfqdn()`).
        Some(network) => {
            for (address, name) in &network.extra_hosts {
                hosts.push_str(&format!("{address} {name}\n"));
            }
            network.resolv_conf.clone()
        }
    };
    fs::write(etc.join("hosts"), hosts)?;
    fs::write(etc.join("resolv.conf"), resolv)?;
    for file in ["passwd", "group", "hosts", "resolv.conf"] {
        fs::set_permissions(etc.join(file), fs::Permissions::from_mode(0o644))?;
    }

    let config = config_json(spec, &etc, &host_lib_binds, cgroups_path);
    let text = serde_json::to_vec_pretty(&config).map_err(std::io::Error::other)?;
    fs::write(paths.dir.join("config.json"), text)?;
    Ok(())
}

fn hostname(spec: &ContainerSpec) -> String {
    let name = spec.hostname.clone().unwrap_or_else(|| spec.id.clone());
    name.chars().take(63).collect()
}

fn passwd() -> String {
    format!(
        "root:x:0:0:root:/root:/usr/sbin/nologin\n\
         vcap:x:{VCAP_UID}:{VCAP_GID}:vcap:{CONTAINER_HOME}:/bin/bash\n\
         nobody:x:65534:65534:nobody:/nonexistent:/usr/sbin/nologin\n"
    )
}

fn group() -> String {
    format!("root:x:0:\nvcap:x:{VCAP_GID}:\nnogroup:x:65534:\n")
}

/// The OCI runtime configuration (runtime-spec 1.0) for `spec`.
pub(crate) fn config_json(
    spec: &ContainerSpec,
    etc_dir: &Path,
    host_lib_binds: &[String],
    cgroups_path: &str,
) -> Value {
    let mut env: Vec<String> = spec
        .env
        .iter()
        .map(|(name, value)| format!("{name}={value}"))
        .collect();
    if !spec.env.iter().any(|(name, _)| name == "PATH") {
        env.push(format!("PATH={DEFAULT_PATH}"));
    }
    let mut args = vec![
        "/bin/bash".to_string(),
        "-c".to_string(),
        INIT_SCRIPT.to_string(),
        "kiln-init".to_string(),
    ];
    args.extend(spec.args.iter().cloned());

    let read_only_bind = |source: &str, destination: &str| {
        json!({"destination": destination, "type": "bind", "source": source,
               "options": ["rbind", "ro", "nosuid", "nodev"]})
    };
    let mut mounts = vec![
        json!({"destination": "/proc", "type": "proc", "source": "proc"}),
        json!({"destination": "/dev", "type": "tmpfs", "source": "tmpfs",
               "options": ["nosuid", "strictatime", "mode=755", "size=65536k"]}),
        json!({"destination": "/dev/pts", "type": "devpts", "source": "devpts",
               "options": ["nosuid", "noexec", "newinstance", "ptmxmode=0666", "mode=0620"]}),
        json!({"destination": "/dev/shm", "type": "tmpfs", "source": "shm",
               "options": ["nosuid", "noexec", "nodev", "mode=1777", "size=65536k"]}),
        json!({"destination": "/dev/mqueue", "type": "mqueue", "source": "mqueue",
               "options": ["nosuid", "noexec", "nodev"]}),
        json!({"destination": "/sys", "type": "sysfs", "source": "sysfs",
               "options": ["nosuid", "noexec", "nodev", "ro"]}),
        json!({"destination": "/sys/fs/cgroup", "type": "cgroup", "source": "cgroup",
               "options": ["nosuid", "noexec", "nodev", "relatime", "ro"]}),
        read_only_bind("/usr", "/usr"),
    ];
    for dir in host_lib_binds {
        mounts.push(read_only_bind(dir, dir));
    }
    mounts.push(read_only_bind("/etc", "/etc"));
    for file in ["passwd", "group", "hosts", "resolv.conf"] {
        mounts.push(
            json!({"destination": format!("/etc/{file}"), "type": "bind",
                           "source": etc_dir.join(file), "options": ["bind", "ro"]}),
        );
    }
    mounts.push(
        json!({"destination": "/tmp", "type": "tmpfs", "source": "tmpfs",
                       "options": ["nosuid", "nodev", "mode=1777",
                                   format!("size={}", spec.limits.tmp_bytes.max(4096))]}),
    );
    mounts.push(
        json!({"destination": CONTAINER_HOME, "type": "bind", "source": spec.home_dir,
                       "options": ["rbind", "rw", "nosuid", "nodev"]}),
    );
    for bind in &spec.bind_mounts {
        let mode = if bind.writable { "rw" } else { "ro" };
        mounts.push(
            json!({"destination": bind.destination, "type": "bind", "source": bind.source,
                           "options": ["rbind", mode, "nosuid", "nodev"]}),
        );
    }

    let mut namespaces = vec![
        json!({"type": "pid"}),
        json!({"type": "ipc"}),
        json!({"type": "uts"}),
        json!({"type": "mount"}),
    ];
    if let Some(network) = &spec.network {
        // runc joins the namespace the DEA has already wired, so the container's network is
        // complete before its first instruction runs.
        namespaces.push(json!({"type": "network", "path": network.path}));
    }
    let no_capabilities: Vec<String> = Vec::new();
    json!({
        "ociVersion": "1.0.2",
        "process": {
            "terminal": false,
            "user": {"uid": VCAP_UID, "gid": VCAP_GID},
            "args": args,
            "env": env,
            "cwd": spec.cwd,
            "capabilities": {
                "bounding": no_capabilities, "effective": no_capabilities,
                "inheritable": no_capabilities, "permitted": no_capabilities,
                "ambient": no_capabilities
            },
            "rlimits": [{"type": "RLIMIT_NOFILE", "hard": spec.limits.nofile,
                         "soft": spec.limits.nofile}],
            "noNewPrivileges": true
        },
        "root": {"path": "rootfs", "readonly": true},
        "hostname": hostname(spec),
        "mounts": mounts,
        "linux": {
            "namespaces": namespaces,
            "cgroupsPath": cgroups_path,
            "resources": {
                "devices": [{"allow": false, "access": "rwm"}],
                "memory": {"limit": spec.limits.memory_bytes, "swap": spec.limits.memory_bytes},
                "pids": {"limit": spec.limits.pids},
                "cpu": {"shares": spec.limits.cpu_shares}
            },
            "maskedPaths": [
                "/proc/acpi", "/proc/asound", "/proc/kcore", "/proc/keys", "/proc/latency_stats",
                "/proc/timer_list", "/proc/timer_stats", "/proc/sched_debug", "/proc/scsi",
                "/sys/firmware"
            ],
            "readonlyPaths": [
                "/proc/bus", "/proc/fs", "/proc/irq", "/proc/sys", "/proc/sysrq-trigger"
            ]
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::container::{BindMount, Limits};

    fn spec() -> ContainerSpec {
        ContainerSpec {
            id: "abc".into(),
            args: vec!["id".into(), "-u".into()],
            env: vec![("PORT".into(), "8080".into())],
            cwd: "/home/vcap".into(),
            hostname: None,
            home_dir: "/var/kiln/abc/home".into(),
            bind_mounts: vec![BindMount {
                source: "/src".into(),
                destination: "/tmp/app".into(),
                writable: false,
            }],
            limits: Limits::default(),
            network: None,
        }
    }

    #[test]
    fn config_confines_the_process() {
        let config = config_json(&spec(), Path::new("/b/etc"), &[], "/kiln/abc");
        let process = &config["process"];
        assert_eq!(process["user"]["uid"], 2000);
        assert_eq!(process["noNewPrivileges"], true);
        assert_eq!(process["capabilities"]["bounding"], json!([]));
        assert_eq!(process["args"][0], "/bin/bash");
        assert_eq!(process["args"][4], "id");
        let env = process["env"].as_array().unwrap();
        assert!(env.contains(&json!("PORT=8080")));
        assert!(env.contains(&json!(format!("PATH={DEFAULT_PATH}"))));
        assert_eq!(config["root"]["readonly"], true);
        assert_eq!(config["linux"]["cgroupsPath"], "/kiln/abc");
        let memory = &config["linux"]["resources"]["memory"];
        assert_eq!(memory["limit"], memory["swap"]);
        let mounts = config["mounts"].as_array().unwrap();
        let destinations: Vec<&str> = mounts
            .iter()
            .map(|m| m["destination"].as_str().unwrap())
            .collect();
        let position = |d: &str| destinations.iter().position(|x| *x == d).unwrap();
        assert!(position("/etc") < position("/etc/passwd"));
        assert_eq!(mounts[position("/tmp/app")]["options"][1], "ro");
        assert_eq!(mounts[position("/home/vcap")]["options"][1], "rw");
        let namespaces = config["linux"]["namespaces"].as_array().unwrap();
        assert!(!namespaces.iter().any(|n| n["type"] == "network"));
    }

    #[test]
    fn an_isolated_container_joins_its_prepared_namespace() {
        let mut spec = spec();
        spec.network = Some(crate::container::NetworkNamespace {
            path: "/run/netns/kiln-0afe0000".into(),
            extra_hosts: vec![("10.254.0.1".parse().unwrap(), "kiln-host".into())],
            resolv_conf: "nameserver 127.0.0.1\n".into(),
        });
        let config = config_json(&spec, Path::new("/b/etc"), &[], "/kiln/abc");
        let namespaces = config["linux"]["namespaces"].as_array().unwrap();
        assert!(
            namespaces.contains(&json!({"type": "network", "path": "/run/netns/kiln-0afe0000"}))
        );
    }
}
