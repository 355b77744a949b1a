//! Integration tests of the loggregator: real UDP ingress, real HTTP, fake UAA / Cloud
//! Controller servers and a real TCP syslog listener.

mod auth;
mod config;
mod drains;
mod emitter_drops;
mod eviction;
mod read_api;
mod support;
