//! The blob store: package bits, droplets, the resource cache and buildpack caches, kept through
//! the `object_store` crate: a `LocalFileSystem` under `blobstore.local_dir`, or an S3-compatible
//! bucket (`blobstore.s3`, `AmazonS3`). Keys are built only from [`BlobKey`], whose parts
//! are checked so no request can name a path outside the store.

use std::sync::Arc;

use object_store::local::LocalFileSystem;
use object_store::path::Path;
use object_store::{ObjectStore, PutPayload};

use crate::error::ApiError;
use crate::CcError;

/// What a blob is, and so where it lives.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BlobKey {
    /// `packages/<package guid>`: the package zip.
    Package(String),
    /// `droplets/<droplet guid>`: the droplet tarball.
    Droplet(String),
    /// `resources/<sha1>`: one file of the resource cache, by content SHA-1.
    Resource(String),
    /// `buildpack_cache/<app guid>`: the app's buildpack cache.
    BuildpackCache(String),
    /// `buildpacks/<buildpack guid>`: an admin buildpack zip.
    Buildpack(String),
}

impl BlobKey {
    /// The object path, or `None` when the identifier is not a GUID (or, for resources, a
    /// lower-case hex SHA-1).
    pub fn path(&self) -> Option<Path> {
        let (folder, id, valid) = match self {
            BlobKey::Package(guid) => ("packages", guid, is_guid(guid)),
            BlobKey::Droplet(guid) => ("droplets", guid, is_guid(guid)),
            BlobKey::BuildpackCache(guid) => ("buildpack_cache", guid, is_guid(guid)),
            BlobKey::Buildpack(guid) => ("buildpacks", guid, is_guid(guid)),
            BlobKey::Resource(sha1) => ("resources", sha1, is_sha1(sha1)),
        };
        valid.then(|| Path::from(format!("{folder}/{id}")))
    }
}

fn is_guid(value: &str) -> bool {
    !value.is_empty()
        && value.len() <= 64
        && value
            .bytes()
            .all(|byte| byte.is_ascii_alphanumeric() || byte == b'-')
}

/// A lower-case hex SHA-1 (40 characters).
pub fn is_sha1(value: &str) -> bool {
    value.len() == 40
        && value
            .bytes()
            .all(|byte| byte.is_ascii_digit() || (b'a'..=b'f').contains(&byte))
}

/// The Cloud Controller's blob store.
#[derive(Clone)]
pub struct BlobStore {
    store: Arc<dyn ObjectStore>,
}

impl std::fmt::Debug for BlobStore {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(formatter, "BlobStore({})", self.store)
    }
}

fn key_path(key: &BlobKey) -> Result<Path, ApiError> {
    key.path()
        .ok_or_else(|| ApiError::internal(format!("invalid blob key {key:?}")))
}

impl BlobStore {
    /// A store in a local directory, created if missing.
    pub fn local(dir: &std::path::Path) -> Result<BlobStore, CcError> {
        std::fs::create_dir_all(dir).map_err(|error| {
            CcError::Config(format!("blobstore directory {}: {error}", dir.display()))
        })?;
        let store = LocalFileSystem::new_with_prefix(dir).map_err(|error| {
            CcError::Config(format!("blobstore directory {}: {error}", dir.display()))
        })?;
        Ok(BlobStore {
            store: Arc::new(store),
        })
    }

    /// A store in an S3-compatible bucket. Nothing is contacted until the first request.
    pub fn s3(config: &crate::config::S3Config) -> Result<BlobStore, CcError> {
        let mut builder = object_store::aws::AmazonS3Builder::new()
            .with_bucket_name(&config.bucket)
            .with_region(&config.region)
            .with_access_key_id(&config.access_key_id)
            .with_secret_access_key(&config.secret_access_key)
            .with_allow_http(config.allow_http);
        if let Some(endpoint) = &config.endpoint {
            builder = builder.with_endpoint(endpoint);
        }
        let store = builder
            .build()
            .map_err(|error| CcError::Config(format!("blobstore.s3: {error}")))?;
        Ok(BlobStore {
            store: Arc::new(store),
        })
    }

    /// Any `object_store` implementation (tests use `InMemory`-like stores through this).
    pub fn from_store(store: Arc<dyn ObjectStore>) -> BlobStore {
        BlobStore { store }
    }

    /// Stores `bytes` under `key`, replacing what was there (writes are atomic per object).
    pub async fn put(&self, key: &BlobKey, bytes: Vec<u8>) -> Result<(), ApiError> {
        let path = key_path(key)?;
        self.store
            .put(&path, PutPayload::from(bytes))
            .await
            .map_err(|error| ApiError::internal(format!("blobstore put {path}: {error}")))?;
        Ok(())
    }

    /// A writer that streams a new blob under `key` in parts; nothing is visible under `key`
    /// until [`BlobWriter::finish`].
    pub async fn writer(&self, key: &BlobKey) -> Result<BlobWriter, ApiError> {
        let path = key_path(key)?;
        let upload = self
            .store
            .put_multipart(&path)
            .await
            .map_err(|error| ApiError::internal(format!("blobstore put {path}: {error}")))?;
        Ok(BlobWriter {
            path,
            inner: object_store::WriteMultipart::new(upload),
        })
    }

    /// The blob under `key`, or `None`.
    pub async fn get(&self, key: &BlobKey) -> Result<Option<Vec<u8>>, ApiError> {
        let path = key_path(key)?;
        let result = match self.store.get(&path).await {
            Ok(result) => result,
            Err(object_store::Error::NotFound { .. }) => return Ok(None),
            Err(error) => return Err(ApiError::internal(format!("blobstore get {path}: {error}"))),
        };
        let bytes = result
            .bytes()
            .await
            .map_err(|error| ApiError::internal(format!("blobstore read {path}: {error}")))?;
        Ok(Some(bytes.to_vec()))
    }

    /// Whether a blob exists under `key`.
    pub async fn exists(&self, key: &BlobKey) -> Result<bool, ApiError> {
        let path = key_path(key)?;
        match self.store.head(&path).await {
            Ok(_) => Ok(true),
            Err(object_store::Error::NotFound { .. }) => Ok(false),
            Err(error) => Err(ApiError::internal(format!(
                "blobstore head {path}: {error}"
            ))),
        }
    }

    /// Removes the blob under `key`; a missing blob is not an error.
    pub async fn delete(&self, key: &BlobKey) -> Result<(), ApiError> {
        let path = key_path(key)?;
        match self.store.delete(&path).await {
            Ok(()) | Err(object_store::Error::NotFound { .. }) => Ok(()),
            Err(error) => Err(ApiError::internal(format!(
                "blobstore delete {path}: {error}"
            ))),
        }
    }
}

/// A blob being written in parts (see [`BlobStore::writer`]).
pub struct BlobWriter {
    path: Path,
    inner: object_store::WriteMultipart,
}

impl BlobWriter {
    /// Appends `bytes`, waiting while too many parts are in flight.
    pub async fn write(&mut self, bytes: &[u8]) -> Result<(), ApiError> {
        self.inner.wait_for_capacity(4).await.map_err(|error| {
            ApiError::internal(format!("blobstore write {}: {error}", self.path))
        })?;
        self.inner.write(bytes);
        Ok(())
    }

    /// Completes the blob.
    pub async fn finish(self) -> Result<(), ApiError> {
        let path = self.path;
        self.inner
            .finish()
            .await
            .map_err(|error| ApiError::internal(format!("blobstore finish {path}: {error}")))?;
        Ok(())
    }

    /// Gives up: nothing is stored.
    pub async fn abort(self) {
        if let Err(error) = self.inner.abort().await {
            tracing::warn!(%error, "aborting a blob upload failed");
        }
    }
}

impl BlobStore {
    /// Removes every blob in `keys` whose rows are already gone; a failure leaves only wasted
    /// space, so it is logged and the rest go on.
    pub async fn delete_all(&self, keys: Vec<BlobKey>) {
        for key in keys {
            if let Err(error) = self.delete(&key).await {
                tracing::warn!(error = %error, internal = ?error.internal, "blob not deleted");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_checked_and_laid_out_by_kind() {
        let guid = "0b7f3c2e-1111-4222-8333-944445555666";
        assert_eq!(
            BlobKey::Package(guid.into()).path().unwrap().as_ref(),
            format!("packages/{guid}")
        );
        assert_eq!(
            BlobKey::BuildpackCache(guid.into())
                .path()
                .unwrap()
                .as_ref(),
            format!("buildpack_cache/{guid}")
        );
        let sha1 = "da39a3ee5e6b4b0d3255bfef95601890afd80709";
        assert_eq!(
            BlobKey::Resource(sha1.into()).path().unwrap().as_ref(),
            format!("resources/{sha1}")
        );
        assert!(BlobKey::Package("../etc".into()).path().is_none());
        assert!(BlobKey::Droplet(String::new()).path().is_none());
        assert!(
            BlobKey::Resource("DA39A3EE5E6B4B0D3255BFEF95601890AFD80709".into())
                .path()
                .is_none()
        );
    }

    #[tokio::test]
    async fn local_store_round_trips_and_deletes() {
        let dir = tempfile::tempdir().unwrap();
        let store = BlobStore::local(&dir.path().join("blobs")).unwrap();
        let key = BlobKey::Droplet("0b7f3c2e-1111-4222-8333-944445555666".into());
        assert!(!store.exists(&key).await.unwrap());
        assert_eq!(store.get(&key).await.unwrap(), None);
        store.put(&key, b"droplet".to_vec()).await.unwrap();
        assert!(store.exists(&key).await.unwrap());
        assert_eq!(store.get(&key).await.unwrap().unwrap(), b"droplet");
        assert!(dir
            .path()
            .join("blobs/droplets/0b7f3c2e-1111-4222-8333-944445555666")
            .is_file());
        store.delete(&key).await.unwrap();
        store.delete(&key).await.unwrap();
        assert!(!store.exists(&key).await.unwrap());
    }
}
