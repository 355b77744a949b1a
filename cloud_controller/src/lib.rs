//! Kiln's Cloud Controller: the CC API v3 (what cf CLI v8 uses) and v2 (older clients) as views
//! over one store, one permission module and one error catalog.
//!
//! Entry point: [`run`] validates a [`CcConfig`], opens and migrates the database, bootstraps seed
//! data and serves on the caller's listener until [`CcServer::stop`].
#![forbid(unsafe_code)]

pub mod app;
pub mod app_logs;
pub mod auth;
pub mod blobstore;
pub mod body;
pub mod config;
pub mod db;
pub mod error;
pub mod health;
pub mod internal;
pub mod manifest;
pub mod metrics;
pub mod osb_client;
pub mod package_zip;
pub mod permissions;
pub mod query;
pub mod service_actions;
pub mod service_catalog;
pub mod service_jobs;
pub mod staging;
pub mod store;
pub mod system_buildpacks;
pub mod uaa_client;
pub mod v2;
pub mod v3;

use std::net::{SocketAddr, TcpListener};

use actix_web::{web, HttpServer};

pub use config::{
    BlobstoreConfig, CcConfig, InternalApiConfig, S3Config, ServicesConfig, UaaConfig,
};

/// Why the Cloud Controller could not start.
#[derive(Debug, thiserror::Error)]
pub enum CcError {
    /// The configuration is invalid.
    #[error("invalid configuration: {0}")]
    Config(String),
    /// The database could not be opened, migrated or seeded.
    #[error("database: {0}")]
    Database(String),
    /// The listener could not be used.
    #[error("listener: {0}")]
    Io(#[from] std::io::Error),
}

/// A running Cloud Controller.
pub struct CcServer {
    local_addr: SocketAddr,
    handle: actix_web::dev::ServerHandle,
    task: tokio::task::JoinHandle<std::io::Result<()>>,
    stager: std::sync::Arc<staging::Stager>,
    services: std::sync::Arc<service_jobs::ServiceRunner>,
}

impl CcServer {
    /// Address the server listens on.
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// Stops accepting, drains in-flight requests and waits for the workers to end.
    pub async fn stop(self) {
        self.handle.stop(true).await;
        self.stager.shutdown();
        self.services.shutdown();
        match self.task.await {
            Ok(Ok(())) => {}
            Ok(Err(error)) => tracing::warn!(%error, "cloud controller server ended with an error"),
            Err(error) => tracing::warn!(%error, "cloud controller server task failed"),
        }
    }
}

/// Validates the config, opens/migrates/seeds the database and starts serving on `listener`,
/// without NATS: every build fails with "no available stagers".
pub async fn run(config: CcConfig, listener: TcpListener) -> Result<CcServer, CcError> {
    run_with_nats(config, listener, None).await
}

/// Like [`run`]; with a NATS client the Cloud Controller follows `dea.advertise` and stages
/// builds on DEAs (`staging.<dea-id>.start`).
pub async fn run_with_nats(
    config: CcConfig,
    listener: TcpListener,
    nats: Option<async_nats::Client>,
) -> Result<CcServer, CcError> {
    config.validate()?;
    let target = config.database_target()?;
    let db = tokio::task::spawn_blocking(move || db::Db::open(target))
        .await
        .map_err(|error| CcError::Database(format!("opening task failed: {error}")))??;
    let seed_db = db.clone();
    let apps_domain = config.apps_domain.clone();
    let default_stack = config.default_stack.clone();
    tokio::task::spawn_blocking(move || {
        seed_db.run_now(|conn| {
            store::reference_data::bootstrap(
                conn,
                &store::reference_data::Seed {
                    apps_domain: &apps_domain,
                    default_stack: &default_stack,
                },
            )
        })
    })
    .await
    .map_err(|error| CcError::Database(format!("bootstrap task failed: {error}")))?
    .map_err(|error| CcError::Database(format!("bootstrap: {error} {:?}", error.internal)))?;

    let blobs = match config.blobstore_target()? {
        config::BlobstoreTarget::Local(dir) => blobstore::BlobStore::local(&dir)?,
        config::BlobstoreTarget::S3(s3) => blobstore::BlobStore::s3(&s3)?,
    };
    if let Some(dir) = &config.system_buildpacks_dir {
        system_buildpacks::install(dir, &db, &blobs).await?;
    }
    let credentials = match &config.internal_api {
        Some(internal) => staging::InternalCredentials {
            username: internal.username.clone(),
            password: internal.password.clone(),
        },
        None => staging::InternalCredentials::random(),
    };
    let stager = staging::Stager::start(nats, credentials, config.external_base()).await?;
    stager.sweep_expired(db.clone());
    stager.set_api_logs(
        app_logs::ApiLogs::new(config.loggregator_ingress, 0),
        db.clone(),
    );
    health::start(&stager, db.clone(), config.external_base());
    let services =
        service_jobs::ServiceRunner::start(&config.services, db.clone(), &config.external_base())?;
    services.resume();
    let state = web::Data::new(app::AppState::new(
        &config,
        db,
        blobs,
        stager.clone(),
        services.clone(),
    )?);
    listener.set_nonblocking(true)?;
    let local_addr = listener.local_addr()?;
    let mut server = HttpServer::new(move || app::app(state.clone()))
        .disable_signals()
        .shutdown_timeout(10)
        .listen(listener)?;
    if let Some(workers) = config.workers {
        server = server.workers(workers);
    }
    let server = server.run();
    let handle = server.handle();
    let task = tokio::spawn(server);
    tracing::info!(%local_addr, external_url = %config.external_url, "cloud controller serving");
    Ok(CcServer {
        local_addr,
        handle,
        task,
        stager,
        services,
    })
}
