//! Wire vocabulary shared by all Kiln components: NATS subjects and payload structs of the classic
//! Cloud Foundry DEA, Cloud Controller and gorouter protocol (`reference/dea-router-nats.md`), with
//! CF's own JSON keys so that real CF components could interoperate. It performs no I/O.
#![forbid(unsafe_code)]

pub mod dea;
pub mod logs;
pub mod router;
pub mod subjects;
