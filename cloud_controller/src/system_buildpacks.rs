//! System buildpacks: at start every directory under `system_buildpacks_dir` is zipped
//! (deterministically: sorted entries, fixed timestamps, Unix modes kept) into the blob store
//! under `buildpacks/<guid>` and registered as an admin buildpack named after the directory, with
//! `key` = the zip's SHA-256. Positions: `staticfile_buildpack` first, then by name.

use std::io::Write;
use std::path::{Path, PathBuf};

use sha2::Digest;

use crate::blobstore::{BlobKey, BlobStore};
use crate::db::Db;
use crate::store::buildpacks::SystemBuildpack;
use crate::CcError;

/// The buildpack directories under `dir`, in position order.
pub fn discover(dir: &Path) -> Result<Vec<(String, PathBuf)>, CcError> {
    let entries = std::fs::read_dir(dir).map_err(|error| {
        CcError::Config(format!("system_buildpacks_dir {}: {error}", dir.display()))
    })?;
    let mut found = Vec::new();
    for entry in entries {
        let entry = entry.map_err(|error| {
            CcError::Config(format!("system_buildpacks_dir {}: {error}", dir.display()))
        })?;
        let path = entry.path();
        let Some(name) = entry.file_name().to_str().map(str::to_owned) else {
            continue;
        };
        if path.is_dir() && !name.starts_with('.') {
            found.push((name, path));
        }
    }
    found.sort_by(|(left, _), (right, _)| {
        (left != "staticfile_buildpack", left).cmp(&(right != "staticfile_buildpack", right))
    });
    Ok(found)
}

/// A deterministic zip of `dir`'s contents (paths relative to `dir`).
pub fn zip_dir(dir: &Path) -> std::io::Result<Vec<u8>> {
    use std::os::unix::fs::PermissionsExt;
    let mut files = Vec::new();
    collect(dir, dir, &mut files)?;
    files.sort();
    let mut writer = zip::ZipWriter::new(std::io::Cursor::new(Vec::new()));
    for relative in files {
        let path = dir.join(&relative);
        let name = relative.to_string_lossy().replace('\\', "/");
        let metadata = std::fs::metadata(&path)?;
        let options = zip::write::SimpleFileOptions::default()
            .compression_method(zip::CompressionMethod::Deflated)
            .last_modified_time(zip::DateTime::default());
        if metadata.is_dir() {
            writer
                .add_directory(format!("{name}/"), options.unix_permissions(0o755))
                .map_err(std::io::Error::other)?;
        } else {
            let mode = metadata.permissions().mode() & 0o777;
            writer
                .start_file(name, options.unix_permissions(mode))
                .map_err(std::io::Error::other)?;
            writer.write_all(&std::fs::read(&path)?)?;
        }
    }
    Ok(writer.finish().map_err(std::io::Error::other)?.into_inner())
}

fn collect(root: &Path, dir: &Path, out: &mut Vec<PathBuf>) -> std::io::Result<()> {
    for entry in std::fs::read_dir(dir)? {
        let path = entry?.path();
        let relative = path
            .strip_prefix(root)
            .map_err(std::io::Error::other)?
            .to_path_buf();
        if path.is_dir() {
            out.push(relative);
            collect(root, &path, out)?;
        } else if path.is_file() {
            out.push(relative);
        }
    }
    Ok(())
}

/// Zips and registers every system buildpack under `dir`.
pub async fn install(dir: &Path, db: &Db, blobs: &BlobStore) -> Result<(), CcError> {
    let dir = dir.to_path_buf();
    let zipped = tokio::task::spawn_blocking(move || -> Result<Vec<_>, CcError> {
        discover(&dir)?
            .into_iter()
            .map(|(name, path)| {
                let bytes = zip_dir(&path).map_err(|error| {
                    CcError::Config(format!("zipping buildpack {}: {error}", path.display()))
                })?;
                Ok((name, bytes))
            })
            .collect()
    })
    .await
    .map_err(|error| CcError::Config(format!("buildpack task failed: {error}")))??;
    for (index, (name, bytes)) in zipped.into_iter().enumerate() {
        let key = sha2::Sha256::digest(&bytes)
            .iter()
            .map(|byte| format!("{byte:02x}"))
            .collect::<String>();
        let buildpack = SystemBuildpack {
            filename: format!("{name}.zip"),
            name,
            position: i32::try_from(index + 1).unwrap_or(i32::MAX),
            key,
        };
        let record = buildpack.clone();
        let (row, changed) = db
            .run(move |conn| crate::store::buildpacks::upsert_system(conn, &record))
            .await
            .map_err(|error| CcError::Database(format!("buildpack {}: {error}", buildpack.name)))?;
        let blob = BlobKey::Buildpack(row.guid.clone());
        let present = blobs.exists(&blob).await.unwrap_or(false);
        if changed || !present {
            blobs.put(&blob, bytes).await.map_err(|error| {
                CcError::Config(format!("storing buildpack {}: {error}", row.name))
            })?;
        }
        tracing::info!(buildpack = %row.name, position = row.position, "system buildpack registered");
    }
    Ok(())
}
