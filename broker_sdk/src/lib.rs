//! A library for writing Open Service Broker API 2.17 brokers in Rust, plus example brokers.
//!
//! Implement [`ServiceBroker`] (one method per OSB operation), then mount it in an actix-web app
//! with [`routes`] or run it on a listener with [`serve`]. The framework does what every broker
//! needs and most SDKs get wrong: basic auth with constant-time comparison,
//! `X-Broker-API-Version` checks, originating-identity decoding, OSB-style 400s for bad bodies,
//! `service_id`/`plan_id` checks against the catalog, `accepts_incomplete` enforcement,
//! per-endpoint status codes (410 on deletes, 404 on fetches), `Retry-After` on polls, and catalog
//! validation against the Cloud Controller's rules ([`validate_catalog`]).
//!
//! This crate depends on no other Kiln crate: third parties use it alone.

#![forbid(unsafe_code)]

pub mod api;
pub mod broker;
pub mod brokers;
pub mod catalog;
pub mod error;
mod server;
pub mod validate;

pub use api::{
    BindBody, Binding, BindingDetails, Context, ErrorBody, InstanceDetails, InstanceMetadata,
    InstanceResponse, LastOperation, OperationState, ProvisionBody, UpdateBody,
};
pub use broker::{
    ApiVersion, BindOutcome, BindRequest, DeleteOutcome, DeprovisionRequest, GetBindingRequest,
    GetInstanceRequest, LastBindingOperationRequest, LastOperationRequest, OriginatingIdentity,
    ProvisionOutcome, ProvisionRequest, RequestMeta, ServiceBroker, UnbindRequest, UpdateOutcome,
    UpdateRequest,
};
pub use catalog::{Catalog, MaintenanceInfo, ServiceOffering, ServicePlan};
pub use error::{
    BindError, CatalogError, DeprovisionError, Failure, GetBindingError, GetInstanceError,
    LastOperationError, ProvisionError, UnbindError, UpdateError,
};
pub use server::{
    routes, routes_with_settings, serve, serve_with_settings, BrokerServer, Credentials, Settings,
};
pub use validate::{validate_catalog, CatalogValidationError};
