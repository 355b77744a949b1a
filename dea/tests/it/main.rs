//! Integration tests of the DEA: its container, staging and launch layers against real runc, and
//! the NATS agent against a real nats-server.

#[macro_use]
mod support;

mod agent;
mod container;
mod network;
mod staging;
