//! A library for writing Open Service Broker API 2.17 brokers in Rust. Not implemented yet: it
//! arrives with the services slice. It will depend on no other Kiln crate.
