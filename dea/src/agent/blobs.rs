//! Blobs by URI: downloading packages, buildpacks and droplets over HTTP (credentials may sit in
//! the URL's userinfo), uploading droplets, safe zip extraction and the droplet cache.

use std::io::Read;
use std::path::{Component, Path, PathBuf};

use sha1::{Digest, Sha1};

/// Why a blob could not be fetched, stored or unpacked. Messages never contain URLs, which may
/// carry credentials.
#[derive(Debug, thiserror::Error)]
pub(crate) enum BlobError {
    #[error("{what}: {message}")]
    Http { what: String, message: String },
    #[error("{context}: {source}")]
    Io {
        context: String,
        #[source]
        source: std::io::Error,
    },
    #[error("invalid zip archive: {0}")]
    Zip(String),
    #[error("{what}: SHA-1 mismatch (expected {expected}, got {actual})")]
    Sha1Mismatch {
        what: String,
        expected: String,
        actual: String,
    },
}

fn io(context: impl Into<String>) -> impl FnOnce(std::io::Error) -> BlobError {
    let context = context.into();
    move |source| BlobError::Io { context, source }
}

/// A `reqwest` request with the URL's userinfo moved into an `Authorization: Basic` header.
fn request(
    client: &reqwest::Client,
    method: reqwest::Method,
    uri: &str,
    what: &str,
) -> Result<reqwest::RequestBuilder, BlobError> {
    let mut url = reqwest::Url::parse(uri).map_err(|error| BlobError::Http {
        what: what.to_string(),
        message: format!("invalid URI: {error}"),
    })?;
    let username = url.username().to_string();
    let password = url.password().map(str::to_string);
    let _ = url.set_username("");
    let _ = url.set_password(None);
    let mut builder = client.request(method, url);
    if !username.is_empty() || password.is_some() {
        builder = builder.basic_auth(
            percent_decode(&username),
            password.as_deref().map(percent_decode),
        );
    }
    Ok(builder)
}

fn percent_decode(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' && i + 2 < bytes.len() {
            let digits = std::str::from_utf8(&bytes[i + 1..i + 3]).unwrap_or("");
            if let Ok(byte) = u8::from_str_radix(digits, 16) {
                out.push(byte);
                i += 3;
                continue;
            }
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn http_error(what: &str, error: reqwest::Error) -> BlobError {
    BlobError::Http {
        what: what.to_string(),
        message: error.without_url().to_string(),
    }
}

/// `GET uri` into `destination` (written whole, then renamed into place).
pub(crate) async fn download(
    client: &reqwest::Client,
    uri: &str,
    destination: &Path,
    what: &str,
) -> Result<(), BlobError> {
    let response = request(client, reqwest::Method::GET, uri, what)?
        .send()
        .await
        .map_err(|error| http_error(what, error))?;
    let status = response.status();
    if !status.is_success() {
        return Err(BlobError::Http {
            what: what.to_string(),
            message: format!("server answered {status}"),
        });
    }
    let body = response
        .bytes()
        .await
        .map_err(|error| http_error(what, error))?;
    let partial = destination.with_extension(format!("partial-{}", uuid::Uuid::new_v4().simple()));
    tokio::fs::write(&partial, &body)
        .await
        .map_err(io(format!("writing {what}")))?;
    tokio::fs::rename(&partial, destination)
        .await
        .map_err(io(format!("storing {what}")))?;
    Ok(())
}

/// `POST uri` with the file's bytes as an `application/octet-stream` body.
pub(crate) async fn upload(
    client: &reqwest::Client,
    uri: &str,
    file: &Path,
    what: &str,
) -> Result<(), BlobError> {
    let body = tokio::fs::read(file)
        .await
        .map_err(io(format!("reading {what}")))?;
    let response = request(client, reqwest::Method::POST, uri, what)?
        .header(reqwest::header::CONTENT_TYPE, "application/octet-stream")
        .body(body)
        .send()
        .await
        .map_err(|error| http_error(what, error))?;
    let status = response.status();
    if !status.is_success() {
        return Err(BlobError::Http {
            what: what.to_string(),
            message: format!("server answered {status}"),
        });
    }
    Ok(())
}

/// The hex SHA-1 of a file (read on a blocking thread).
pub(crate) async fn sha1_file(path: &Path) -> Result<String, BlobError> {
    let path = path.to_path_buf();
    tokio::task::spawn_blocking(move || {
        let mut file = std::fs::File::open(&path)?;
        let mut hasher = Sha1::new();
        let mut buffer = vec![0u8; 64 * 1024];
        loop {
            let n = file.read(&mut buffer)?;
            if n == 0 {
                break;
            }
            hasher.update(&buffer[..n]);
        }
        Ok(hex(&hasher.finalize()))
    })
    .await
    .map_err(|error| BlobError::Io {
        context: "hashing task".into(),
        source: std::io::Error::other(error),
    })?
    .map_err(io("hashing"))
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Extracts the zip at `archive` into `destination` (created), refusing entries with absolute
/// paths or `..`, and symlinks whose target leaves `destination`. Unix modes are kept (minus
/// setuid/setgid/sticky), so buildpack scripts stay executable.
pub(crate) async fn extract_zip(archive: &Path, destination: &Path) -> Result<(), BlobError> {
    let archive = archive.to_path_buf();
    let destination = destination.to_path_buf();
    tokio::task::spawn_blocking(move || extract_zip_blocking(&archive, &destination))
        .await
        .map_err(|error| BlobError::Io {
            context: "unzip task".into(),
            source: std::io::Error::other(error),
        })?
}

fn extract_zip_blocking(archive: &Path, destination: &Path) -> Result<(), BlobError> {
    use std::os::unix::fs::PermissionsExt;
    std::fs::create_dir_all(destination).map_err(io("creating the extraction directory"))?;
    let file = std::fs::File::open(archive).map_err(io("opening the zip"))?;
    let mut zip = zip::ZipArchive::new(file).map_err(|error| BlobError::Zip(error.to_string()))?;
    for i in 0..zip.len() {
        let mut entry = zip
            .by_index(i)
            .map_err(|error| BlobError::Zip(error.to_string()))?;
        let name = entry.name().to_string();
        let relative = safe_relative_path(&name)
            .ok_or_else(|| BlobError::Zip(format!("entry `{name}` leaves the directory")))?;
        if relative.as_os_str().is_empty() {
            continue;
        }
        let path = destination.join(&relative);
        let mode = entry.unix_mode();
        let is_symlink = mode.is_some_and(|mode| mode & 0o170000 == 0o120000);
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent).map_err(io("creating a directory"))?;
        }
        if entry.is_dir() {
            std::fs::create_dir_all(&path).map_err(io("creating a directory"))?;
            continue;
        }
        if is_symlink {
            let mut target = String::new();
            entry
                .read_to_string(&mut target)
                .map_err(io("reading a symlink target"))?;
            let resolved = relative.parent().unwrap_or(Path::new("")).join(&target);
            if Path::new(&target).is_absolute() || normalise(&resolved).is_none() {
                return Err(BlobError::Zip(format!(
                    "symlink `{name}` points outside the directory"
                )));
            }
            std::os::unix::fs::symlink(&target, &path).map_err(io("creating a symlink"))?;
            continue;
        }
        let mut out = std::fs::File::create(&path).map_err(io("creating a file"))?;
        std::io::copy(&mut entry, &mut out).map_err(io("writing a file"))?;
        if let Some(mode) = mode {
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode & 0o777))
                .map_err(io("setting a file mode"))?;
        }
    }
    Ok(())
}

/// `name` as a relative path without `..`, or `None` when it is absolute or escapes.
fn safe_relative_path(name: &str) -> Option<PathBuf> {
    if name.starts_with('/') || name.starts_with('\\') || name.contains('\0') {
        return None;
    }
    normalise(Path::new(name))
}

/// Resolves `.` and `..` lexically; `None` when the path is absolute or climbs above its start.
fn normalise(path: &Path) -> Option<PathBuf> {
    let mut parts: Vec<&std::ffi::OsStr> = Vec::new();
    for component in path.components() {
        match component {
            Component::Normal(part) => parts.push(part),
            Component::CurDir => {}
            Component::ParentDir => {
                parts.pop()?;
            }
            Component::RootDir | Component::Prefix(_) => return None,
        }
    }
    Some(parts.iter().collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_that_leave_the_directory_are_refused() {
        assert_eq!(
            safe_relative_path("a/b.txt"),
            Some(PathBuf::from("a/b.txt"))
        );
        assert_eq!(safe_relative_path("./a/../b"), Some(PathBuf::from("b")));
        assert_eq!(safe_relative_path("/etc/passwd"), None);
        assert_eq!(safe_relative_path("../x"), None);
        assert_eq!(safe_relative_path("a/../../x"), None);
    }

    #[test]
    fn userinfo_is_percent_decoded() {
        assert_eq!(percent_decode("us%40er"), "us@er");
        assert_eq!(percent_decode("plain"), "plain");
        assert_eq!(percent_decode("bad%zz"), "bad%zz");
    }
}
