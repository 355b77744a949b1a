//! Discovery documents (`GET /`, `GET /v3`, `GET /v3/info`, `GET /v2/info`), `/healthz` and
//! Prometheus `/metrics`.

use actix_web::{web, HttpResponse};
use serde_json::{json, Value};

use crate::app::{resource, AppState};

/// Version advertised as `cloud_controller_v3.meta.version`: at least the CLI's minimum
/// (3.99.0) and below every version gate Kiln cannot serve yet.
pub const V3_VERSION: &str = "3.160.0";
/// Version advertised for v2.
pub const V2_VERSION: &str = "2.155.0";

/// Registers the discovery routes.
pub fn configure(config: &mut web::ServiceConfig) {
    config
        .service(resource("/").route(web::get().to(root)))
        .service(resource("/v3").route(web::get().to(v3_root)))
        .service(resource("/v3/").route(web::get().to(v3_root)))
        .service(resource("/v3/info").route(web::get().to(v3_info)))
        .service(resource("/v2/info").route(web::get().to(v2_info)))
        .service(resource("/healthz").route(web::get().to(healthz)))
        .service(resource("/metrics").route(web::get().to(metrics)));
}

async fn root(state: web::Data<AppState>) -> HttpResponse {
    let base = &state.external_url;
    let uaa = &state.uaa_url;
    let log_cache: Value = match &state.log_cache_url {
        Some(url) => json!({"href": url}),
        None => Value::Null,
    };
    HttpResponse::Ok().json(json!({"links": {
        "self": {"href": base},
        "bits_service": null,
        "cloud_controller_v2": {"href": format!("{base}/v2"), "meta": {"version": V2_VERSION}},
        "cloud_controller_v3": {"href": format!("{base}/v3"), "meta": {"version": V3_VERSION}},
        "network_policy_v0": null,
        "network_policy_v1": null,
        "login": {"href": uaa},
        "uaa": {"href": uaa},
        "credhub": null,
        "routing": null,
        "logging": null,
        "log_cache": log_cache,
        "log_stream": null,
        "app_ssh": null,
    }}))
}

async fn v3_root(state: web::Data<AppState>) -> HttpResponse {
    let base = &state.external_url;
    let mut links = serde_json::Map::new();
    links.insert("self".into(), json!({"href": format!("{base}/v3")}));
    for collection in [
        "app_usage_events",
        "apps",
        "audit_events",
        "buildpacks",
        "builds",
        "deployments",
        "domains",
        "droplets",
        "environment_variable_groups",
        "feature_flags",
        "info",
        "isolation_segments",
        "organizations",
        "organization_quotas",
        "packages",
        "processes",
        "resource_matches",
        "roles",
        "routes",
        "security_groups",
        "service_brokers",
        "service_instances",
        "service_credential_bindings",
        "service_offerings",
        "service_plans",
        "service_route_bindings",
        "service_usage_events",
        "spaces",
        "space_quotas",
        "stacks",
        "tasks",
        "users",
    ] {
        links.insert(
            collection.into(),
            json!({"href": format!("{base}/v3/{collection}")}),
        );
    }
    HttpResponse::Ok().json(json!({"links": links}))
}

async fn v3_info(state: web::Data<AppState>) -> HttpResponse {
    let base = &state.external_url;
    HttpResponse::Ok().json(json!({
        "build": "",
        "cli_version": {"minimum": "", "recommended": ""},
        "custom": {},
        "description": "Kiln, a Cloud Foundry-compatible platform",
        "name": "kiln",
        "version": 0,
        "osbapi_version": "2.17",
        "rate_limits": {"enabled": false, "general_limit": null, "reset_interval_in_minutes": null},
        "links": {"self": {"href": format!("{base}/v3/info")}, "support": {"href": ""}},
    }))
}

async fn v2_info(state: web::Data<AppState>) -> HttpResponse {
    HttpResponse::Ok().json(json!({
        "name": "kiln",
        "build": "",
        "support": "",
        "version": 0,
        "description": "Kiln, a Cloud Foundry-compatible platform",
        "authorization_endpoint": state.uaa_url,
        "token_endpoint": state.uaa_url,
        "min_cli_version": null,
        "min_recommended_cli_version": null,
        "app_ssh_endpoint": null,
        "app_ssh_host_key_fingerprint": null,
        "app_ssh_oauth_client": null,
        "doppler_logging_endpoint": null,
        "api_version": V2_VERSION,
        "osbapi_version": "2.17",
    }))
}

async fn healthz(state: web::Data<AppState>) -> HttpResponse {
    match state
        .db
        .run(|conn| {
            use diesel::connection::SimpleConnection;
            conn.batch_execute("SELECT 1")
                .map_err(crate::error::ApiError::from)
        })
        .await
    {
        Ok(()) => HttpResponse::Ok().content_type("text/plain").body("OK"),
        Err(_) => HttpResponse::ServiceUnavailable()
            .content_type("text/plain")
            .body("database unavailable"),
    }
}

async fn metrics(state: web::Data<AppState>) -> HttpResponse {
    HttpResponse::Ok()
        .content_type("text/plain; version=0.0.4")
        .body(state.metrics.render())
}
