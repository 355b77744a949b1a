//! Typed configuration of the Cloud Controller (`CcConfig`), deserialised from YAML and validated
//! before any port is bound.

use serde::Deserialize;

use crate::CcError;

/// Configuration of one Cloud Controller instance.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CcConfig {
    /// The API URL clients use (e.g. `http://127.0.0.1:9022`). Every absolute link, `Location`
    /// header and pagination href is built from it.
    pub external_url: String,
    /// `sqlite://PATH` or `postgres://user:pass@host:port/db`.
    pub database_url: String,
    /// Where UAA is and how the Cloud Controller talks to it.
    pub uaa: UaaConfig,
    /// The shared apps domain seeded at start.
    #[serde(default = "default_apps_domain")]
    pub apps_domain: String,
    /// The default stack seeded at start.
    #[serde(default = "default_stack")]
    pub default_stack: String,
    /// Public base URL of the log-cache API, advertised in the root document when set.
    #[serde(default)]
    pub log_cache_url: Option<String>,
    /// UDP address of the loggregator's envelope ingress: the `API` lines about app changes go
    /// there (fire and forget). Absent: no API lines.
    #[serde(default)]
    pub loggregator_ingress: Option<std::net::SocketAddr>,
    /// Number of HTTP worker threads (default: actix's choice, one per core).
    #[serde(default)]
    pub workers: Option<usize>,
    /// Where package bits, droplets, the resource cache and buildpack caches are kept.
    #[serde(default)]
    pub blobstore: BlobstoreConfig,
    /// Largest package: the uploaded zip and the package's total uncompressed contents
    /// (default 1 GiB).
    #[serde(default = "default_max_package_bytes")]
    pub max_package_bytes: u64,
    /// Most entries in an uploaded package zip (default 100 000).
    #[serde(default = "default_max_package_entries")]
    pub max_package_entries: usize,
    /// Basic-auth credentials DEAs use on `/internal/...` (package and buildpack downloads,
    /// droplet uploads); they travel in the userinfo of the URIs sent in staging requests.
    /// Default: random credentials for this process.
    #[serde(default)]
    pub internal_api: Option<InternalApiConfig>,
    /// A directory of buildpack directories (`staticfile_buildpack`, `binary_buildpack`, …)
    /// zipped into the blob store and registered as admin buildpacks at start.
    #[serde(default)]
    pub system_buildpacks_dir: Option<std::path::PathBuf>,
    /// How long `POST /v3/builds` and app start/restart wait for the work to finish before they
    /// answer (default 10 s). Work done by then is answered as done (STAGED, RUNNING), so the cf
    /// CLI's first poll — immediate — sees it and it never waits its 3-second poll interval;
    /// slower work answers as in progress (STAGING, STARTING) and the CLI polls as on CF.
    /// 0 answers at once.
    #[serde(default = "default_sync_wait_secs")]
    pub sync_wait_secs: u64,
    /// With a log-cache (`log_cache_url`), how long `POST /v3/builds` still waits after staging
    /// finished before answering, in milliseconds (default 2300). The cf CLI shows a streamed
    /// line only once it is 2 s old and stops streaming when it sees the build STAGED, so
    /// without this wait a fast staging's output never reaches the terminal. 0 answers at once.
    #[serde(default = "default_staging_log_drain_ms")]
    pub staging_log_drain_ms: u64,
    /// How the Cloud Controller talks to service brokers (CC's `broker_client_*` settings).
    #[serde(default)]
    pub services: ServicesConfig,
}

/// Service broker client settings; the defaults are CC's.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServicesConfig {
    /// Connect and read timeout of every broker request (default 60).
    #[serde(default = "default_broker_timeout")]
    pub broker_client_timeout_seconds: u64,
    /// Base and minimum interval between `last_operation` polls (default 60); a broker's
    /// `Retry-After` can only lengthen it.
    #[serde(default = "default_poll_interval")]
    pub broker_client_default_async_poll_interval_seconds: u64,
    /// Longest an asynchronous operation is polled before it counts as failed (default 7 days;
    /// a plan's `maximum_polling_duration` can shorten it).
    #[serde(default = "default_max_poll_minutes")]
    pub broker_client_max_async_poll_duration_minutes: u64,
}

impl Default for ServicesConfig {
    fn default() -> Self {
        ServicesConfig {
            broker_client_timeout_seconds: default_broker_timeout(),
            broker_client_default_async_poll_interval_seconds: default_poll_interval(),
            broker_client_max_async_poll_duration_minutes: default_max_poll_minutes(),
        }
    }
}

fn default_broker_timeout() -> u64 {
    60
}

fn default_poll_interval() -> u64 {
    60
}

fn default_max_poll_minutes() -> u64 {
    10_080
}

fn default_sync_wait_secs() -> u64 {
    10
}

fn default_staging_log_drain_ms() -> u64 {
    2300
}

/// Credentials of the internal API.
#[derive(Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct InternalApiConfig {
    /// Basic-auth user name.
    pub username: String,
    /// Basic-auth password.
    pub password: String,
}

impl std::fmt::Debug for InternalApiConfig {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter
            .debug_struct("InternalApiConfig")
            .field("username", &self.username)
            .field("password", &"<hidden>")
            .finish()
    }
}

fn default_max_package_bytes() -> u64 {
    1024 * 1024 * 1024
}

fn default_max_package_entries() -> usize {
    100_000
}

/// The blob store: a local directory through `object_store`'s `LocalFileSystem` (default), or an
/// S3-compatible object store (`s3`).
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BlobstoreConfig {
    /// Directory holding the blobs. Default with a SQLite database: `blobstore/` beside the
    /// database file. Required with PostgreSQL (there is no database directory to default to).
    #[serde(default)]
    pub local_dir: Option<std::path::PathBuf>,
    /// An S3-compatible bucket instead of a directory (AWS S3, MinIO, Ceph RGW, …).
    #[serde(default)]
    pub s3: Option<S3Config>,
}

/// An S3-compatible bucket holding every blob.
#[derive(Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct S3Config {
    /// Bucket name (must exist).
    pub bucket: String,
    /// Region (default `us-east-1`).
    #[serde(default = "default_s3_region")]
    pub region: String,
    /// Endpoint of an S3-compatible service, e.g. `http://127.0.0.1:9000`; AWS when absent.
    #[serde(default)]
    pub endpoint: Option<String>,
    /// Access key id.
    pub access_key_id: String,
    /// Secret access key.
    pub secret_access_key: String,
    /// Allow a plain-HTTP endpoint (default false).
    #[serde(default)]
    pub allow_http: bool,
}

fn default_s3_region() -> String {
    "us-east-1".to_owned()
}

impl std::fmt::Debug for S3Config {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter
            .debug_struct("S3Config")
            .field("bucket", &self.bucket)
            .field("region", &self.region)
            .field("endpoint", &self.endpoint)
            .field("access_key_id", &self.access_key_id)
            .field("secret_access_key", &"<hidden>")
            .field("allow_http", &self.allow_http)
            .finish()
    }
}

/// Where blobs live, from [`CcConfig::blobstore_target`].
#[derive(Debug, Clone)]
pub enum BlobstoreTarget {
    /// A local directory.
    Local(std::path::PathBuf),
    /// An S3-compatible bucket.
    S3(S3Config),
}

/// How the Cloud Controller reaches UAA.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UaaConfig {
    /// Public UAA base URL; the root document's `login` and `uaa` links point here and tokens
    /// must carry `iss = {url}/oauth/token`.
    pub url: String,
    /// URL used by the Cloud Controller itself for `/token_keys` and user lookups (defaults to `url`).
    #[serde(default)]
    pub internal_url: Option<String>,
    /// Client used for username lookups (`client_credentials`, authorities `scim.read scim.userids`).
    pub client_id: String,
    /// Secret of `client_id`.
    pub client_secret: String,
}

fn default_apps_domain() -> String {
    "apps.localhost".to_owned()
}

fn default_stack() -> String {
    "kiln-host".to_owned()
}

/// Where the database lives, parsed from `database_url`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum DatabaseTarget {
    Sqlite(String),
    Postgres(String),
}

impl CcConfig {
    /// Checks every field that can be checked without I/O.
    pub fn validate(&self) -> Result<(), CcError> {
        check_http_url("external_url", &self.external_url)?;
        check_http_url("uaa.url", &self.uaa.url)?;
        if let Some(internal) = &self.uaa.internal_url {
            check_http_url("uaa.internal_url", internal)?;
        }
        if let Some(log_cache) = &self.log_cache_url {
            check_http_url("log_cache_url", log_cache)?;
        }
        if self.uaa.client_id.trim().is_empty() {
            return Err(CcError::Config("uaa.client_id must not be empty".into()));
        }
        if self.apps_domain.trim().is_empty() || self.apps_domain.contains('/') {
            return Err(CcError::Config(format!(
                "apps_domain {:?} is not a domain name",
                self.apps_domain
            )));
        }
        if self.default_stack.trim().is_empty() {
            return Err(CcError::Config("default_stack must not be empty".into()));
        }
        if self.workers == Some(0) {
            return Err(CcError::Config("workers must be at least 1".into()));
        }
        self.database_target()?;
        self.blobstore_target()?;
        if let Some(internal) = &self.internal_api {
            if internal.username.is_empty() || internal.username.contains(':') {
                return Err(CcError::Config(
                    "internal_api.username must be non-empty and contain no ':'".into(),
                ));
            }
            if internal.password.is_empty() {
                return Err(CcError::Config(
                    "internal_api.password must not be empty".into(),
                ));
            }
        }
        if self.max_package_bytes == 0 || self.max_package_entries == 0 {
            return Err(CcError::Config(
                "max_package_bytes and max_package_entries must be at least 1".into(),
            ));
        }
        Ok(())
    }

    /// Where blobs live: `blobstore.s3`, else the directory of [`CcConfig::blobstore_dir`].
    pub fn blobstore_target(&self) -> Result<BlobstoreTarget, CcError> {
        let Some(s3) = &self.blobstore.s3 else {
            return Ok(BlobstoreTarget::Local(self.blobstore_dir()?));
        };
        if self.blobstore.local_dir.is_some() {
            return Err(CcError::Config(
                "blobstore: set either local_dir or s3, not both".into(),
            ));
        }
        if s3.bucket.trim().is_empty() || s3.access_key_id.is_empty() || s3.region.is_empty() {
            return Err(CcError::Config(
                "blobstore.s3: bucket, region and access_key_id must not be empty".into(),
            ));
        }
        if let Some(endpoint) = &s3.endpoint {
            check_http_url("blobstore.s3.endpoint", endpoint)?;
            if endpoint.starts_with("http://") && !s3.allow_http {
                return Err(CcError::Config(
                    "blobstore.s3.endpoint is plain http: set allow_http: true to use it".into(),
                ));
            }
        }
        Ok(BlobstoreTarget::S3(s3.clone()))
    }

    /// The blob store directory: `blobstore.local_dir`, or `blobstore/` beside a SQLite database.
    pub fn blobstore_dir(&self) -> Result<std::path::PathBuf, CcError> {
        if let Some(dir) = &self.blobstore.local_dir {
            if dir.as_os_str().is_empty() {
                return Err(CcError::Config(
                    "blobstore.local_dir must not be empty".into(),
                ));
            }
            return Ok(dir.clone());
        }
        match self.database_target()? {
            DatabaseTarget::Sqlite(path) => {
                let parent = std::path::Path::new(&path)
                    .parent()
                    .filter(|parent| !parent.as_os_str().is_empty())
                    .unwrap_or(std::path::Path::new("."));
                Ok(parent.join("blobstore"))
            }
            DatabaseTarget::Postgres(_) => Err(CcError::Config(
                "blobstore.local_dir is required with a PostgreSQL database".into(),
            )),
        }
    }

    pub(crate) fn database_target(&self) -> Result<DatabaseTarget, CcError> {
        let url = self.database_url.trim();
        if let Some(path) = url.strip_prefix("sqlite://") {
            if path.is_empty() || path == ":memory:" {
                return Err(CcError::Config(
                    "database_url sqlite://:memory: or an empty path is not supported; name a file"
                        .into(),
                ));
            }
            return Ok(DatabaseTarget::Sqlite(path.to_owned()));
        }
        if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            return Ok(DatabaseTarget::Postgres(url.to_owned()));
        }
        Err(CcError::Config(format!(
            "database_url must start with sqlite:// or postgres://, got {url:?}"
        )))
    }

    /// `external_url` without a trailing slash.
    pub(crate) fn external_base(&self) -> String {
        self.external_url.trim_end_matches('/').to_owned()
    }

    pub(crate) fn uaa_public_base(&self) -> String {
        self.uaa.url.trim_end_matches('/').to_owned()
    }

    pub(crate) fn uaa_internal_base(&self) -> String {
        self.uaa
            .internal_url
            .as_deref()
            .unwrap_or(&self.uaa.url)
            .trim_end_matches('/')
            .to_owned()
    }
}

fn check_http_url(field: &str, value: &str) -> Result<(), CcError> {
    let parsed = url::Url::parse(value)
        .map_err(|error| CcError::Config(format!("{field} {value:?} is not a URL: {error}")))?;
    if parsed.scheme() != "http" && parsed.scheme() != "https" {
        return Err(CcError::Config(format!(
            "{field} {value:?} must be an http or https URL"
        )));
    }
    if parsed.host_str().is_none() {
        return Err(CcError::Config(format!("{field} {value:?} has no host")));
    }
    Ok(())
}
