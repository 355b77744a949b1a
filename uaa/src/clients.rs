//! Client administration, read side: `GET /oauth/clients/:client_id`, which the cf CLI calls to
//! check that a client exists before `cf set-org-role … --client` gives it a Cloud Controller
//! role. Clients come from the configuration, so there is nothing to create or change here.

use actix_web::http::StatusCode;
use actix_web::{web, HttpResponse};

use crate::api::ClientDetails;
use crate::auth::Principal;
use crate::error::ApiError;
use crate::state::{AppState, Client};

/// UAA's stand-in for an empty scope or authority list.
const NO_SCOPE: &str = "uaa.none";

pub(crate) fn configure(cfg: &mut web::ServiceConfig) {
    // One resource per path, so that a method the path does not serve is a 405, not a 404.
    cfg.service(web::resource("/oauth/clients/{client_id}").route(web::get().to(get_client)));
}

/// `GET /oauth/clients/:client_id`: needs `clients.read`, `clients.admin` or `uaa.admin`.
async fn get_client(
    state: web::Data<AppState>,
    principal: Principal,
    client_id: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    principal.require_any(&["clients.read", "clients.admin"])?;
    let client_id = client_id.into_inner();
    // UAA answers an unknown client with a bare 404; ours carries the JSON error body every
    // other answer has (the cf CLI looks only at the status).
    let client = state.clients.get(&client_id).ok_or_else(|| {
        ApiError::new(
            StatusCode::NOT_FOUND,
            "not_found",
            format!("No such client: {client_id}"),
        )
    })?;
    Ok(HttpResponse::Ok().json(client_details(&client)))
}

/// The client as UAA stores it after its validator ran: `resource_ids` is always `none`, and an
/// empty scope or authority list reads `uaa.none`.
fn client_details(client: &Client) -> ClientDetails {
    let or_none = |items: &[String]| {
        if items.is_empty() {
            vec![NO_SCOPE.to_owned()]
        } else {
            items.to_vec()
        }
    };
    ClientDetails {
        client_id: client.client_id.clone(),
        scope: or_none(&client.scope),
        resource_ids: vec!["none".to_owned()],
        authorized_grant_types: client.grant_types.clone(),
        autoapprove: Vec::new(),
        authorities: or_none(&client.authorities),
        access_token_validity: client.access_token_validity_secs,
        refresh_token_validity: client.refresh_token_validity_secs,
        last_modified: client.last_modified,
        required_user_groups: Vec::new(),
    }
}
