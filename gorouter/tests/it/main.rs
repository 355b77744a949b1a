//! Integration tests of the router through the real thing: a `nats-server` child (skipped with a
//! message when not installed; mandatory with `KILN_REQUIRE_NATS=1`), the router on
//! 127.0.0.1:0 and fake app backends that are real HTTP servers.

mod app_logs;
mod bus;
mod config;
mod proxying;
mod routing;
mod support;
