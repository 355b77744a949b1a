//! Package zips: validation of an uploaded zip before anything is stored (relative paths only, no
//! `..`, no symlink leaving the package, limits on entries, total size and expansion ratio),
//! the SHA-1 of each file for the resource cache, and the final package zip that merges the
//! uploaded entries with files matched from the cache. Everything here is synchronous; callers
//! run it on the blocking pool.

use std::io::{Cursor, Read, Write};

use sha1::{Digest, Sha1};
use zip::write::SimpleFileOptions;
use zip::{CompressionMethod, ZipArchive, ZipWriter};

/// Limits an uploaded zip must respect.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// Largest total uncompressed size (uploaded and cached files together).
    pub max_bytes: u64,
    /// Most entries.
    pub max_entries: usize,
    /// Largest uncompressed/compressed ratio of an entry bigger than [`RATIO_FLOOR`].
    pub max_expansion_ratio: u64,
}

/// The expansion ratio uploads are held to.
pub const MAX_EXPANSION_RATIO: u64 = 100;

/// Entries smaller than this are not held to the expansion ratio (tiny files compress well).
pub const RATIO_FLOOR: u64 = 1024 * 1024;

/// One entry of a package.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Entry {
    /// A directory (path without trailing slash).
    Directory { path: String },
    /// A regular file with its Unix permission bits.
    File {
        path: String,
        mode: u32,
        data: Vec<u8>,
    },
    /// A symbolic link whose target stays inside the package.
    Symlink { path: String, target: String },
}

impl Entry {
    /// The entry's path.
    pub fn path(&self) -> &str {
        match self {
            Entry::Directory { path } | Entry::File { path, .. } | Entry::Symlink { path, .. } => {
                path
            }
        }
    }
}

/// A path inside the package, normalised (no `.` components, no trailing slash), or why it is
/// refused: empty, absolute, with a drive letter, a backslash, a NUL or a `..` component.
pub fn check_path(path: &str) -> Result<String, String> {
    let trimmed = path.trim_end_matches('/');
    if trimmed.is_empty() {
        return Err(format!("the path {path:?} is empty"));
    }
    if trimmed.starts_with('/') || trimmed.contains('\\') || trimmed.contains('\0') {
        return Err(format!(
            "the path {path:?} is absolute or not a plain relative path"
        ));
    }
    if trimmed.len() >= 2 && trimmed.as_bytes()[1] == b':' {
        return Err(format!("the path {path:?} names a drive"));
    }
    let mut parts = Vec::new();
    for part in trimmed.split('/') {
        match part {
            "" | "." => {}
            ".." => return Err(format!("the path {path:?} contains '..'")),
            part => parts.push(part),
        }
    }
    if parts.is_empty() {
        return Err(format!("the path {path:?} is empty"));
    }
    Ok(parts.join("/"))
}

/// Whether a symlink at `path` pointing to `target` stays inside the package.
fn symlink_stays_inside(path: &str, target: &str) -> bool {
    if target.is_empty() || target.starts_with('/') || target.contains('\\') {
        return false;
    }
    let mut depth: Vec<&str> = path.split('/').collect();
    depth.pop();
    for part in target.split('/') {
        match part {
            "" | "." => {}
            ".." => {
                if depth.pop().is_none() {
                    return false;
                }
            }
            part => depth.push(part),
        }
    }
    true
}

/// Lower-case hex SHA-1 of `data`.
pub fn sha1_hex(data: &[u8]) -> String {
    Sha1::digest(data)
        .iter()
        .map(|byte| format!("{byte:02x}"))
        .collect()
}

const S_IFMT: u32 = 0o170000;
const S_IFLNK: u32 = 0o120000;

/// Reads and validates an uploaded zip. Every rule is checked before the caller stores
/// anything; the error is a sentence for the client.
pub fn read_upload(bytes: &[u8], limits: &Limits) -> Result<Vec<Entry>, String> {
    let mut archive =
        ZipArchive::new(Cursor::new(bytes)).map_err(|error| format!("not a zip file: {error}"))?;
    if archive.len() > limits.max_entries {
        return Err(format!(
            "it has {} entries, more than the limit of {}",
            archive.len(),
            limits.max_entries
        ));
    }
    let mut total: u64 = 0;
    let mut entries = Vec::with_capacity(archive.len());
    for index in 0..archive.len() {
        let mut file = archive
            .by_index(index)
            .map_err(|error| format!("entry {index} cannot be read: {error}"))?;
        let raw_name = file.name().to_owned();
        let path = check_path(&raw_name)?;
        let declared = file.size();
        let compressed = file.compressed_size();
        if declared > RATIO_FLOOR
            && (compressed == 0 || declared / compressed > limits.max_expansion_ratio)
        {
            return Err(format!(
                "the entry {raw_name:?} expands more than {} times",
                limits.max_expansion_ratio
            ));
        }
        let is_symlink = file
            .unix_mode()
            .is_some_and(|mode| mode & S_IFMT == S_IFLNK);
        if file.is_dir() {
            entries.push(Entry::Directory { path });
            continue;
        }
        let remaining = limits.max_bytes.saturating_sub(total);
        let mut data = Vec::new();
        (&mut file)
            .take(remaining.saturating_add(1))
            .read_to_end(&mut data)
            .map_err(|error| format!("the entry {raw_name:?} cannot be decompressed: {error}"))?;
        total = total.saturating_add(data.len() as u64);
        if total > limits.max_bytes {
            return Err(format!(
                "its contents exceed the limit of {} bytes",
                limits.max_bytes
            ));
        }
        if is_symlink {
            let target = String::from_utf8(data)
                .map_err(|_| format!("the symlink {raw_name:?} has a non-UTF-8 target"))?;
            if !symlink_stays_inside(&path, &target) {
                return Err(format!(
                    "the symlink {raw_name:?} points outside the package"
                ));
            }
            entries.push(Entry::Symlink { path, target });
        } else {
            let mode = file.unix_mode().map_or(0o644, |mode| mode & 0o777);
            entries.push(Entry::File { path, mode, data });
        }
    }
    Ok(entries)
}

/// Writes `entries` as a zip (deflated files, Unix modes and symlinks kept). Later entries with
/// a path already written are skipped.
pub fn build(entries: &[Entry]) -> Result<Vec<u8>, String> {
    let mut writer = ZipWriter::new(Cursor::new(Vec::new()));
    let mut seen = std::collections::HashSet::new();
    for entry in entries {
        if !seen.insert(entry.path().to_owned()) {
            continue;
        }
        let result = match entry {
            Entry::Directory { path } => writer.add_directory(
                format!("{path}/"),
                SimpleFileOptions::default().unix_permissions(0o755),
            ),
            Entry::Symlink { path, target } => {
                writer.add_symlink(path, target, SimpleFileOptions::default())
            }
            Entry::File { path, mode, data } => writer
                .start_file(
                    path,
                    SimpleFileOptions::default()
                        .compression_method(CompressionMethod::Deflated)
                        .unix_permissions(*mode)
                        .large_file(data.len() as u64 >= u64::from(u32::MAX)),
                )
                .and_then(|()| writer.write_all(data).map_err(Into::into)),
        };
        result.map_err(|error| format!("writing {}: {error}", entry.path()))?;
    }
    writer
        .finish()
        .map(Cursor::into_inner)
        .map_err(|error| format!("finishing the zip: {error}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    const LIMITS: Limits = Limits {
        max_bytes: 1 << 20,
        max_entries: 10,
        max_expansion_ratio: 100,
    };

    #[test]
    fn paths_are_relative_and_never_climb() {
        assert_eq!(check_path("a/./b/").unwrap(), "a/b");
        for bad in [
            "/etc/passwd",
            "../x",
            "a/../../x",
            "a/..",
            "C:/x",
            "a\\b",
            "",
            "./",
        ] {
            assert!(check_path(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn symlinks_must_stay_inside() {
        assert!(symlink_stays_inside("a/link", "../b"));
        assert!(symlink_stays_inside("a/link", "c/d"));
        assert!(!symlink_stays_inside("a/link", "../../b"));
        assert!(!symlink_stays_inside("link", "/etc/passwd"));
        assert!(!symlink_stays_inside("link", ".."));
    }

    #[test]
    fn built_zips_read_back() {
        let entries = vec![
            Entry::Directory { path: "dir".into() },
            Entry::File {
                path: "dir/run.sh".into(),
                mode: 0o755,
                data: b"#!/bin/sh\n".to_vec(),
            },
            Entry::Symlink {
                path: "dir/link".into(),
                target: "run.sh".into(),
            },
        ];
        let bytes = build(&entries).unwrap();
        assert_eq!(read_upload(&bytes, &LIMITS).unwrap(), entries);
        assert_eq!(sha1_hex(b""), "da39a3ee5e6b4b0d3255bfef95601890afd80709");
    }
}
