//! Brokers built on the SDK: `memory` (an in-memory broker with sync and async plans and failure
//! injection, for testing platforms) and, behind the `postgres-broker` feature, `postgres` (a
//! database per instance, a role per binding).

pub mod memory;
#[cfg(feature = "postgres-broker")]
pub mod postgres;
