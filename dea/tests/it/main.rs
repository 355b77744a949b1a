//! Integration tests of the DEA's container, staging and launch layers, against real runc.

#[macro_use]
mod support;

mod container;
mod staging;
