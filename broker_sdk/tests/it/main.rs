//! Integration tests of the OSB HTTP surface over real sockets: the framework's cross-cutting
//! checks, the memory broker's sync and async flows, and (with `KILN_TEST_POSTGRES_URL`) the
//! PostgreSQL broker against a real server.

mod catalog;
mod conformance;
mod echo;
mod memory;
mod postgres;
mod support;
