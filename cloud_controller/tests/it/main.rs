//! Integration tests of the Cloud Controller over real HTTP: a real CC on 127.0.0.1:0 with SQLite
//! in a tempdir (and PostgreSQL when `KILN_TEST_POSTGRES_URL` is set), tokens from either a test
//! issuer (our own RSA key served as JWKS, plus a small SCIM endpoint) or the real `uaa` crate.

mod support;

mod apps;
mod auth;
mod bad_input;
mod blobstore_s3;
mod builds_droplets;
mod config;
mod manifests;
mod metadata;
mod orgs_spaces;
mod packages;
mod persistence;
mod roles;
mod root;
mod routes;
mod running;
mod services;
mod services_v2;
mod staging;
mod v2;
mod v2_apps;
mod with_uaa;
