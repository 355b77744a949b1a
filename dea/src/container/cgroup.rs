//! Reads a container's cgroup v1 files (memory, cpu, OOM kills) and removes leftover cgroups.

use std::fs;
use std::path::{Path, PathBuf};

const CGROUP_ROOT: &str = "/sys/fs/cgroup";

/// The cgroup of one container in every v1 hierarchy, e.g. `/kiln/<id>`.
#[derive(Debug, Clone)]
pub(crate) struct CgroupPath {
    /// Relative to a hierarchy's root, without the leading slash: `kiln/<id>`.
    relative: String,
}

impl CgroupPath {
    pub(crate) fn new(parent: &str, id: &str) -> Self {
        let parent = parent.trim_matches('/');
        let relative = if parent.is_empty() {
            id.to_string()
        } else {
            format!("{parent}/{id}")
        };
        CgroupPath { relative }
    }

    /// The `cgroupsPath` for the OCI config: absolute within each hierarchy.
    pub(crate) fn oci_path(&self) -> String {
        format!("/{}", self.relative)
    }

    fn in_controller(&self, controller: &str) -> PathBuf {
        Path::new(CGROUP_ROOT).join(controller).join(&self.relative)
    }

    /// Memory in use without page cache: `memory.usage_in_bytes - total_cache`.
    pub(crate) fn memory_usage(&self) -> std::io::Result<u64> {
        let dir = self.in_controller("memory");
        let usage = read_u64(&dir.join("memory.usage_in_bytes"))?;
        let stat = fs::read_to_string(dir.join("memory.stat"))?;
        let cache = stat_value(&stat, "total_cache").unwrap_or(0);
        Ok(usage.saturating_sub(cache))
    }

    /// Cumulative cpu time in nanoseconds.
    pub(crate) fn cpu_usage_ns(&self) -> std::io::Result<u64> {
        read_u64(&self.in_controller("cpuacct").join("cpuacct.usage"))
    }

    /// How many processes the OOM killer has killed in this cgroup (`oom_kill` counter).
    pub(crate) fn oom_kills(&self) -> std::io::Result<u64> {
        let text = fs::read_to_string(self.in_controller("memory").join("memory.oom_control"))?;
        Ok(stat_value(&text, "oom_kill").unwrap_or(0))
    }

    /// Removes this cgroup, in every hierarchy, where it is empty. The runtime removes only the
    /// leaf, and only when it gets the chance. The parent (`/kiln`) stays: removing it when it
    /// looks empty races with runc creating a sibling's cgroup under it (runc's `mkdir` of the
    /// leaf then fails with ENOENT), which concurrent DEA containers hit.
    pub(crate) fn remove_leftovers(&self) {
        let Ok(entries) = fs::read_dir(CGROUP_ROOT) else {
            return;
        };
        for entry in entries.flatten() {
            let Ok(file_type) = entry.file_type() else {
                continue;
            };
            // `cpu,cpuacct`-style symlinks point at hierarchies we visit anyway. On hybrid hosts
            // runc also creates the cgroup under the cgroup2 mount (`unified`), so that is
            // cleaned too.
            if !file_type.is_dir() {
                continue;
            }
            let dir = entry.path().join(&self.relative);
            // Fails while processes or child cgroups remain, which is what we want.
            if dir.exists() {
                let _ = fs::remove_dir(&dir);
            }
        }
    }
}

fn read_u64(path: &Path) -> std::io::Result<u64> {
    let text = fs::read_to_string(path)?;
    text.trim()
        .parse()
        .map_err(|_| std::io::Error::other(format!("{}: not a number: {text:?}", path.display())))
}

/// The value of `key` in a `key value` per line file such as `memory.stat`.
fn stat_value(text: &str, key: &str) -> Option<u64> {
    text.lines().find_map(|line| {
        let (name, value) = line.split_once(' ')?;
        if name == key {
            value.trim().parse().ok()
        } else {
            None
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_oom_control() {
        let text = "oom_kill_disable 0\nunder_oom 0\noom_kill 2\n";
        assert_eq!(stat_value(text, "oom_kill"), Some(2));
        assert_eq!(stat_value(text, "oom_kill_disable"), Some(0));
    }

    #[test]
    fn paths() {
        let path = CgroupPath::new("/kiln/", "abc");
        assert_eq!(path.oci_path(), "/kiln/abc");
        assert_eq!(
            path.in_controller("memory"),
            Path::new("/sys/fs/cgroup/memory/kiln/abc")
        );
    }
}
