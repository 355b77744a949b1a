//! Kiln UAA: an OAuth2 token service compatible with Cloud Foundry's UAA as the cf CLI v8 and the
//! Cloud Controller use it — password, refresh_token and client_credentials grants, RS256 JWTs
//! with `/token_keys`, `/login`, `/userinfo`, `/check_token`, SCIM `/Users` and `/Groups`, and
//! `GET /oauth/clients/:client_id`.
//!
//! Entry points: [`run`] serves a [`UaaConfig`] on a caller-bound listener and returns a
//! [`UaaServer`] handle; [`rotate_signing_key`] adds a new active signing key to a database.
#![forbid(unsafe_code)]

mod api;
mod auth;
mod bootstrap;
mod clients;
mod config;
mod db;
mod error;
mod filter;
mod info;
mod keys;
mod metrics;
mod scim;
mod state;
mod tokens;

use std::net::{SocketAddr, TcpListener};

use actix_web::dev::Service;
use actix_web::middleware::from_fn;
use actix_web::{web, App, HttpResponse, HttpServer};
use tracing::Instrument;

pub use config::{ClientConfig, UaaConfig, UserConfig};
pub use error::UaaError;

use crate::error::ApiError;
use crate::state::AppState;

/// Largest request body accepted (form posts and SCIM JSON are small).
pub(crate) const MAX_BODY_BYTES: usize = 1 << 20;

/// A running UAA server.
pub struct UaaServer {
    local_addr: SocketAddr,
    handle: actix_web::dev::ServerHandle,
    task: tokio::task::JoinHandle<std::io::Result<()>>,
}

impl UaaServer {
    /// The address the server listens on.
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// Stops gracefully: stops accepting, lets in-flight requests finish, then drops the
    /// workers and with them the database pool.
    pub async fn stop(self) {
        self.handle.stop(true).await;
        match self.task.await {
            Ok(Ok(())) => tracing::info!(addr = %self.local_addr, "UAA stopped"),
            Ok(Err(error)) => tracing::warn!(%error, "UAA server ended with an error"),
            Err(error) => tracing::warn!(%error, "UAA server task failed"),
        }
    }
}

/// Validates `config`, opens and migrates the database, applies the seed data, loads (or creates)
/// the signing keys and serves on `listener`. Returns once the server is accepting connections.
///
/// Must be called within a multi-threaded tokio runtime (e.g. `#[tokio::main]`).
pub async fn run(config: UaaConfig, listener: TcpListener) -> Result<UaaServer, UaaError> {
    config.validate()?;
    let local_addr = listener.local_addr().map_err(UaaError::Server)?;
    let workers = config.workers;
    let state = tokio::task::spawn_blocking(move || -> Result<AppState, UaaError> {
        let database = db::Database::open(&config.database_url)?;
        let clients = bootstrap::apply(&database, &config)?;
        let keys = keys::KeyRing::load_or_create(&database)?;
        Ok(AppState::new(&config, database, keys, clients))
    })
    .await
    .map_err(|error| UaaError::Server(std::io::Error::other(error)))??;
    let state = web::Data::new(state);

    listener.set_nonblocking(true).map_err(UaaError::Server)?;
    let mut server = HttpServer::new(move || {
        App::new()
            .app_data(state.clone())
            .app_data(web::PayloadConfig::new(MAX_BODY_BYTES))
            .wrap(from_fn(error::json_error_bodies))
            .wrap_fn(|request, service| {
                if let Some(state) = request.app_data::<web::Data<AppState>>() {
                    state
                        .metrics
                        .http_requests
                        .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                }
                let request_id = request
                    .headers()
                    .get("X-Vcap-Request-Id")
                    .and_then(|value| value.to_str().ok())
                    .map(str::to_owned)
                    .unwrap_or_else(|| uuid::Uuid::new_v4().to_string());
                let span = tracing::info_span!(
                    "http_request",
                    request_id = %request_id,
                    method = %request.method(),
                    path = %request.path()
                );
                let response = span.in_scope(|| service.call(request));
                response.instrument(span)
            })
            .configure(info::configure)
            .configure(tokens::configure)
            .configure(scim::configure)
            .configure(clients::configure)
            .default_service(web::to(not_found))
    })
    .disable_signals()
    .shutdown_timeout(10)
    .listen(listener)
    .map_err(UaaError::Server)?;
    if let Some(workers) = workers {
        server = server.workers(workers);
    }
    let server = server.run();
    let handle = server.handle();
    let task = tokio::spawn(server);
    tracing::info!(addr = %local_addr, "UAA listening");
    Ok(UaaServer {
        local_addr,
        handle,
        task,
    })
}

async fn not_found() -> Result<HttpResponse, ApiError> {
    Err(ApiError::new(
        actix_web::http::StatusCode::NOT_FOUND,
        "not_found",
        "Not Found",
    ))
}

/// Generates a new RSA signing key in the database at `database_url` and makes it the active
/// key; older keys stay published in `/token_keys` so tokens they signed still verify. Running
/// servers start signing with it within a few seconds. Returns the new key's `kid`.
pub fn rotate_signing_key(database_url: &str) -> Result<String, UaaError> {
    keys::rotate(database_url)
}
