//! Discovery and operations endpoints: `GET /login`, `GET /info`, `GET /healthz`, `GET /metrics`.

use actix_web::{web, HttpResponse};

use crate::state::AppState;

/// The UAA version we report; the cf CLI requires at least 4.26.0 for `--origin`.
const UAA_VERSION: &str = "4.30.0";

pub(crate) fn configure(cfg: &mut web::ServiceConfig) {
    // One resource per path, so that a method the path does not serve is a 405, not a 404.
    cfg.service(web::resource("/login").route(web::get().to(login_info)));
    cfg.service(web::resource("/info").route(web::get().to(login_info)));
    cfg.service(web::resource("/healthz").route(web::get().to(healthz)));
    cfg.service(web::resource("/metrics").route(web::get().to(metrics)));
}

/// Exactly the `username` and `password` prompts: any other prompt makes the cf CLI ask for it.
async fn login_info(state: web::Data<AppState>) -> HttpResponse {
    HttpResponse::Ok().json(serde_json::json!({
        "app": { "version": UAA_VERSION },
        "links": { "uaa": state.issuer_base, "login": state.issuer_base },
        "zone_name": "uaa",
        "entityID": "kiln.uaa",
        "commit_id": "kiln",
        "idpDefinitions": {},
        "prompts": {
            "username": ["text", "Email"],
            "password": ["password", "Password"],
        },
    }))
}

async fn healthz() -> HttpResponse {
    HttpResponse::Ok()
        .content_type("text/plain; charset=utf-8")
        .body("ok")
}

async fn metrics(state: web::Data<AppState>) -> HttpResponse {
    HttpResponse::Ok()
        .content_type("text/plain; version=0.0.4; charset=utf-8")
        .body(state.metrics.render())
}
