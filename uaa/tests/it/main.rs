//! Integration tests of the UAA over real HTTP, against SQLite files and per-test PostgreSQL
//! databases (`KILN_TEST_POSTGRES_URL`; mandatory with `KILN_REQUIRE_POSTGRES=1`).

mod bad_input;
mod clients;
mod config;
mod errors;
mod keys;
mod scim;
mod support;
mod tokens;
