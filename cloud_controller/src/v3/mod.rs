//! The CC API v3: one module per resource, each with its own `configure`.

pub mod apps;
pub mod buildpacks;
pub mod builds;
pub mod domains;
pub mod droplets;
pub mod feature_flags;
pub mod jobs;
pub mod manifests;
pub mod organizations;
pub mod packages;
pub mod placeholders;
pub mod present;
pub mod processes;
pub mod quotas;
pub mod roles;
pub mod root;
pub mod routes;
pub mod running;
pub mod service_catalog;
pub mod service_instances;
pub mod spaces;
pub mod stacks;
pub mod users;

use actix_web::web;

/// Registers every v3 route plus the root documents, `/healthz` and `/metrics`.
pub fn configure(config: &mut web::ServiceConfig) {
    root::configure(config);
    organizations::configure(config);
    spaces::configure(config);
    users::configure(config);
    roles::configure(config);
    feature_flags::configure(config);
    stacks::configure(config);
    domains::configure(config);
    quotas::configure(config);
    jobs::configure(config);
    apps::configure(config);
    processes::configure(config);
    packages::configure(config);
    buildpacks::configure(config);
    builds::configure(config);
    droplets::configure(config);
    routes::configure(config);
    running::configure(config);
    placeholders::configure(config);
    service_catalog::configure(config);
    service_instances::configure(config);
    manifests::configure(config);
}

/// A 202 answer pointing at a job.
pub(crate) fn accepted_job(base: &str, job_guid: &str) -> actix_web::HttpResponse {
    actix_web::HttpResponse::Accepted()
        .insert_header(("Location", format!("{base}/v3/jobs/{job_guid}")))
        .finish()
}
