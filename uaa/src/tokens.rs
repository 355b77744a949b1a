//! OAuth endpoints: `POST /oauth/token` (password, refresh_token, client_credentials grants),
//! `DELETE /oauth/token/revoke/:jti`, `POST /check_token`, `GET /token_keys`, `GET /token_key`,
//! `GET /userinfo`.

use std::collections::HashMap;

use actix_web::http::StatusCode;
use actix_web::{web, HttpRequest, HttpResponse};
use jsonwebtoken::{Algorithm, Header};
use rand::RngCore;

use crate::api::{TokenClaims, TokenResponse};
use crate::auth::{basic_credentials, check_not_revoked, verify_access_token, Principal};
use crate::db::refresh::{self as refresh_store, RefreshRow};
use crate::db::revoked as revoked_store;
use crate::db::users::{self as user_store, UserRow};
use crate::db::{groups as group_store, now_millis, split_list};
use crate::error::ApiError;
use crate::state::{sha256_hex, AppState, Client};

/// The identity zone of every token: Kiln runs only UAA's default zone.
const ZONE_ID: &str = "uaa";
/// The only user origin Kiln's UAA authenticates itself.
pub(crate) const ORIGIN_UAA: &str = "uaa";

pub(crate) fn configure(cfg: &mut web::ServiceConfig) {
    // One resource per path, so that a method the path does not serve is a 405, not a 404.
    cfg.service(web::resource("/oauth/token").route(web::post().to(token)));
    cfg.service(web::resource("/oauth/token/revoke/{jti}").route(web::delete().to(revoke)));
    cfg.service(web::resource("/check_token").route(web::post().to(check_token)));
    cfg.service(web::resource("/token_keys").route(web::get().to(token_keys)));
    cfg.service(web::resource("/token_key").route(web::get().to(token_key)));
    cfg.service(web::resource("/userinfo").route(web::get().to(userinfo)));
}

/// The parameters of a form body. OAuth parameters must not repeat (RFC 6749 §3.1), so a
/// repeated name is refused rather than silently resolved to one of its values.
fn parse_form(body: &[u8]) -> Result<HashMap<String, String>, ApiError> {
    let pairs: Vec<(String, String)> = serde_urlencoded::from_bytes(body)
        .map_err(|_| ApiError::invalid_request("The request body is not form-encoded"))?;
    let mut form = HashMap::with_capacity(pairs.len());
    for (name, value) in pairs {
        if form.contains_key(&name) {
            return Err(ApiError::invalid_request(format!(
                "Parameter {name} must not be repeated"
            )));
        }
        form.insert(name, value);
    }
    Ok(form)
}

async fn token(
    state: web::Data<AppState>,
    request: HttpRequest,
    body: web::Bytes,
) -> Result<HttpResponse, ApiError> {
    let result = issue(&state, &request, &body).await;
    if result.is_err() {
        state
            .metrics
            .token_errors
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    }
    result
}

async fn issue(
    state: &web::Data<AppState>,
    request: &HttpRequest,
    body: &[u8],
) -> Result<HttpResponse, ApiError> {
    let form = parse_form(body)?;
    let grant_type = form
        .get("grant_type")
        .filter(|grant| !grant.is_empty())
        .ok_or_else(|| ApiError::invalid_request("Missing grant type"))?
        .clone();
    if !crate::config::GRANT_TYPES.contains(&grant_type.as_str()) {
        return Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            "unsupported_grant_type",
            format!("Unsupported grant type: {grant_type}"),
        ));
    }
    let (client_id, secret) = match basic_credentials(request)? {
        Some(credentials) => {
            if form
                .get("client_id")
                .is_some_and(|form_id| !form_id.is_empty() && *form_id != credentials.0)
            {
                return Err(ApiError::invalid_client(
                    "Given client ID does not match authenticated client",
                ));
            }
            credentials
        }
        None => match form.get("client_id") {
            Some(client_id) => (
                client_id.clone(),
                form.get("client_secret").cloned().unwrap_or_default(),
            ),
            None => {
                return Err(ApiError::invalid_client(
                    "Full authentication is required: no client credentials",
                ))
            }
        },
    };
    let client = state
        .clients
        .authenticate(&client_id, &secret)
        .await?
        .ok_or_else(|| ApiError::invalid_client("Bad client credentials"))?;
    if !client.allows_grant(&grant_type) {
        return Err(ApiError::invalid_client(format!(
            "Unauthorized grant type: {grant_type}"
        )));
    }
    let requested_scopes = form.get("scope").map(|scope| split_list(scope));
    maybe_reload_keys(state).await;
    let response = match grant_type.as_str() {
        "password" => password_grant(state, &client, &form, requested_scopes).await?,
        "refresh_token" => refresh_grant(state, &client, &form, requested_scopes).await?,
        _ => client_credentials_grant(state, &client, requested_scopes)?,
    };
    state.metrics.token_issued(&grant_type);
    Ok(HttpResponse::Ok()
        .insert_header((actix_web::http::header::CACHE_CONTROL, "no-store"))
        .insert_header((actix_web::http::header::PRAGMA, "no-cache"))
        .json(response))
}

/// Re-reads the signing keys when the loaded set is stale (a rotation elsewhere becomes active).
async fn maybe_reload_keys(state: &web::Data<AppState>) {
    if !state.keys.claim_reload() {
        return;
    }
    let reload_state = state.clone();
    let result = state
        .database
        .blocking(move |database| reload_state.keys.reload(database))
        .await;
    state.keys.reload_done();
    if let Err(error) = result {
        tracing::warn!(%error, "could not reload signing keys");
    }
}

/// The granted scopes: `allowed`, narrowed to `requested` when the client asked for some.
fn grant_scopes(
    allowed: Vec<String>,
    requested: Option<Vec<String>>,
) -> Result<Vec<String>, ApiError> {
    let scopes = match requested {
        Some(requested) if !requested.is_empty() => {
            if let Some(denied) = requested.iter().find(|scope| !allowed.contains(scope)) {
                return Err(ApiError::new(
                    StatusCode::BAD_REQUEST,
                    "invalid_scope",
                    format!("Invalid scope: {denied}. Did you know that you can get default scopes by simply sending no value?"),
                ));
            }
            requested
        }
        _ => allowed,
    };
    if scopes.is_empty() {
        return Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            "invalid_scope",
            "Invalid scope (empty) - this user or client is not allowed any of the requested scopes",
        ));
    }
    Ok(scopes)
}

/// Scopes of a user token: the user's groups that the client may ask for, in the client's order.
fn user_scopes(client: &Client, group_names: &[String]) -> Vec<String> {
    client
        .scope
        .iter()
        .filter(|scope| group_names.contains(scope))
        .cloned()
        .collect()
}

fn access_validity(state: &AppState, client: &Client) -> i64 {
    client
        .access_token_validity_secs
        .unwrap_or(state.access_token_validity_secs)
}

fn refresh_validity(state: &AppState, client: &Client) -> i64 {
    client
        .refresh_token_validity_secs
        .unwrap_or(state.refresh_token_validity_secs)
}

async fn password_grant(
    state: &web::Data<AppState>,
    client: &std::sync::Arc<Client>,
    form: &HashMap<String, String>,
    requested_scopes: Option<Vec<String>>,
) -> Result<TokenResponse, ApiError> {
    let username = form.get("username").cloned().unwrap_or_default();
    let password = form.get("password").cloned().unwrap_or_default();
    if username.is_empty() || password.is_empty() {
        return Err(ApiError::bad_credentials());
    }
    let lookup_name = username.clone();
    let unknown_user_hash = state.unknown_user_password_hash.clone();
    let found = state
        .database
        .blocking(move |database| {
            let Some(user) =
                database.read(|conn| user_store::find_by_name(conn, &lookup_name, ORIGIN_UAA))?
            else {
                // As slow as a wrong password for a real user: timing does not reveal user names.
                let _ = bcrypt::verify(&password, &unknown_user_hash);
                return Ok(None);
            };
            let matches = bcrypt::verify(&password, &user.password_hash).unwrap_or(false);
            Ok(matches.then_some(user))
        })
        .await?;
    let user = found
        .filter(|user| user.active)
        .ok_or_else(ApiError::bad_credentials)?;
    let client_for_db = client.clone();
    let state_for_db = state.clone();
    let refresh = client.allows_grant("refresh_token");
    state
        .database
        .blocking(move |database| {
            database.write(|conn| -> Result<TokenResponse, ApiError> {
                let now = now_millis();
                user_store::record_logon(conn, &user.id, now)?;
                let groups: Vec<String> = group_store::groups_of_user(conn, &user.id)?
                    .into_iter()
                    .map(|group| group.display_name)
                    .collect();
                let scopes = grant_scopes(user_scopes(&client_for_db, &groups), requested_scopes)?;
                let auth_time = now / 1000;
                finish_user_grant(
                    &state_for_db,
                    conn,
                    &client_for_db,
                    &user,
                    scopes,
                    auth_time,
                    "password",
                    refresh,
                )
            })
        })
        .await
}

async fn refresh_grant(
    state: &web::Data<AppState>,
    client: &std::sync::Arc<Client>,
    form: &HashMap<String, String>,
    requested_scopes: Option<Vec<String>>,
) -> Result<TokenResponse, ApiError> {
    let refresh_token = form
        .get("refresh_token")
        .filter(|token| !token.is_empty())
        .ok_or_else(|| ApiError::invalid_request("Missing refresh_token"))?;
    let token_hash = sha256_hex(refresh_token);
    let client_for_db = client.clone();
    let state_for_db = state.clone();
    state
        .database
        .blocking(move |database| {
            database.write(|conn| -> Result<TokenResponse, ApiError> {
                let now = now_millis();
                let stored = refresh_store::take(conn, &token_hash)?.ok_or_else(|| {
                    ApiError::invalid_token(
                        "Invalid refresh token: the token is unknown or was already used",
                    )
                })?;
                if stored.expires_at <= now {
                    return Err(ApiError::invalid_token("Invalid refresh token (expired)"));
                }
                if stored.client_id != client_for_db.client_id {
                    // UAA's answer; the error rolls the transaction back, so the token survives.
                    return Err(ApiError::new(
                        StatusCode::BAD_REQUEST,
                        "invalid_grant",
                        format!("Wrong client for this refresh token: {}", stored.client_id),
                    ));
                }
                let user = user_store::find_by_id(conn, &stored.user_id)?
                    .filter(|user| user.active)
                    .ok_or_else(|| {
                        ApiError::invalid_token("Invalid refresh token: the user no longer exists")
                    })?;
                let groups: Vec<String> = group_store::groups_of_user(conn, &user.id)?
                    .into_iter()
                    .map(|group| group.display_name)
                    .collect();
                let granted_before = split_list(&stored.scope);
                let allowed: Vec<String> = user_scopes(&client_for_db, &groups)
                    .into_iter()
                    .filter(|scope| granted_before.contains(scope))
                    .collect();
                let scopes = grant_scopes(allowed, requested_scopes)?;
                finish_user_grant(
                    &state_for_db,
                    conn,
                    &client_for_db,
                    &user,
                    scopes,
                    stored.auth_time,
                    "refresh_token",
                    true,
                )
            })
        })
        .await
}

/// Signs a user access token and, when `with_refresh`, stores a new refresh token for it.
#[allow(clippy::too_many_arguments)]
fn finish_user_grant(
    state: &AppState,
    conn: &mut crate::db::DbConnection,
    client: &Client,
    user: &UserRow,
    scopes: Vec<String>,
    auth_time: i64,
    grant_type: &str,
    with_refresh: bool,
) -> Result<TokenResponse, ApiError> {
    let now_secs = now_millis() / 1000;
    let jti = new_token_id();
    let validity = access_validity(state, client);
    let claims = TokenClaims {
        jti: jti.clone(),
        sub: user.id.clone(),
        aud: audience(&scopes, &client.client_id),
        scope: scopes.clone(),
        client_id: client.client_id.clone(),
        cid: client.client_id.clone(),
        azp: client.client_id.clone(),
        grant_type: grant_type.to_owned(),
        user_id: Some(user.id.clone()),
        origin: Some(user.origin.clone()),
        user_name: Some(user.user_name.clone()),
        email: Some(user.email.clone()),
        auth_time: Some(auth_time),
        rev_sig: user_revocation_signature(user, client),
        iat: now_secs,
        exp: now_secs + validity,
        iss: state.token_issuer.clone(),
        zid: ZONE_ID.to_owned(),
        revocable: true,
    };
    let access_token = sign(state, &claims)?;
    let refresh_token = if with_refresh {
        let token = new_refresh_token();
        refresh_store::insert(
            conn,
            &RefreshRow {
                token_hash: sha256_hex(&token),
                access_jti: jti.clone(),
                user_id: user.id.clone(),
                client_id: client.client_id.clone(),
                scope: scopes.join(" "),
                auth_time,
                created: now_secs * 1000,
                expires_at: (now_secs + refresh_validity(state, client)) * 1000,
            },
        )?;
        Some(token)
    } else {
        None
    };
    Ok(TokenResponse {
        access_token,
        token_type: "bearer",
        refresh_token,
        expires_in: validity,
        scope: scopes.join(" "),
        jti,
    })
}

fn client_credentials_grant(
    state: &AppState,
    client: &Client,
    requested_scopes: Option<Vec<String>>,
) -> Result<TokenResponse, ApiError> {
    let scopes = grant_scopes(client.authorities.clone(), requested_scopes)?;
    let now_secs = now_millis() / 1000;
    let jti = new_token_id();
    let validity = access_validity(state, client);
    let claims = TokenClaims {
        jti: jti.clone(),
        sub: client.client_id.clone(),
        aud: audience(&scopes, &client.client_id),
        scope: scopes.clone(),
        client_id: client.client_id.clone(),
        cid: client.client_id.clone(),
        azp: client.client_id.clone(),
        grant_type: "client_credentials".to_owned(),
        user_id: None,
        origin: None,
        user_name: None,
        email: None,
        auth_time: None,
        rev_sig: client_revocation_signature(client),
        iat: now_secs,
        exp: now_secs + validity,
        iss: state.token_issuer.clone(),
        zid: ZONE_ID.to_owned(),
        revocable: true,
    };
    let access_token = sign(state, &claims)?;
    Ok(TokenResponse {
        access_token,
        token_type: "bearer",
        refresh_token: None,
        expires_in: validity,
        scope: scopes.join(" "),
        jti,
    })
}

fn sign(state: &AppState, claims: &TokenClaims) -> Result<String, ApiError> {
    let keys = state.keys.current();
    let key = keys.active();
    let mut header = Header::new(Algorithm::RS256);
    header.kid = Some(key.kid.clone());
    jsonwebtoken::encode(&header, claims, &key.encoding).map_err(ApiError::internal)
}

/// Resource ids of the scopes (the part before the first `.`), then the client id, deduplicated.
pub(crate) fn audience(scopes: &[String], client_id: &str) -> Vec<String> {
    let mut audience: Vec<String> = Vec::new();
    for resource in scopes
        .iter()
        .map(|scope| scope.split('.').next().unwrap_or(scope).to_owned())
        .chain(std::iter::once(client_id.to_owned()))
    {
        if !audience.contains(&resource) {
            audience.push(resource);
        }
    }
    audience
}

/// A short hash over what invalidates a user's tokens: the user, its password change time, the
/// client and the client's secret.
pub(crate) fn user_revocation_signature(user: &UserRow, client: &Client) -> String {
    let digest = sha256_hex(&format!(
        "{}:{}:{}:{}",
        user.id, user.password_last_modified, client.client_id, client.secret_hash
    ));
    digest[..8].to_owned()
}

pub(crate) fn client_revocation_signature(client: &Client) -> String {
    let digest = sha256_hex(&format!("{}:{}", client.client_id, client.secret_hash));
    digest[..8].to_owned()
}

fn new_token_id() -> String {
    uuid::Uuid::new_v4().simple().to_string()
}

fn new_refresh_token() -> String {
    let mut bytes = [0u8; 32];
    rand::rngs::OsRng.fill_bytes(&mut bytes);
    format!("{}-r", crate::state::hex(&bytes))
}

/// `DELETE /oauth/token/revoke/:jti`: revokes the access token with that id (as `cf logout` does
/// for its own token) and the refresh tokens issued with it. Anyone may revoke their own token;
/// other tokens need `tokens.revoke` or `uaa.admin`.
async fn revoke(
    state: web::Data<AppState>,
    principal: Principal,
    jti: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let jti = jti.into_inner();
    let own = principal.claims.jti == jti;
    if !own && !principal.is_admin() && !principal.has_scope("tokens.revoke") {
        return Err(ApiError::insufficient_scope(&[
            "tokens.revoke",
            "uaa.admin",
        ]));
    }
    // The revocation must outlive the token: its own expiry when known, else the longest an
    // access token of ours can live.
    let now = now_millis();
    let revoked_until = if own {
        principal.claims.exp.saturating_mul(1000)
    } else {
        let longest = state
            .clients
            .max_access_validity_secs(state.access_token_validity_secs);
        now.saturating_add(longest.saturating_mul(1000))
    };
    let revoke_jti = jti.clone();
    let revoked = state
        .database
        .blocking(move |database| {
            database.write(|conn| -> Result<usize, ApiError> {
                revoked_store::insert(conn, &revoke_jti, revoked_until)?;
                revoked_store::purge_expired(conn, now)?;
                let revoked = refresh_store::revoke_by_access_jti(conn, &revoke_jti)?;
                refresh_store::purge_expired(conn, now)?;
                Ok(revoked)
            })
        })
        .await?;
    tracing::info!(%jti, refresh_tokens = revoked, "token revoked");
    Ok(HttpResponse::Ok().json(serde_json::json!({"status": "ok"})))
}

/// `POST /check_token`: for resource servers, authenticated as a client with HTTP Basic that
/// holds the `uaa.resource` authority (as in UAA). Token problems are 400 `invalid_token`: the
/// caller itself authenticated fine. An optional `scopes` parameter (comma-separated) names
/// scopes the token must carry.
async fn check_token(
    state: web::Data<AppState>,
    request: HttpRequest,
    body: web::Bytes,
) -> Result<HttpResponse, ApiError> {
    let (client_id, secret) = basic_credentials(&request)?.ok_or_else(|| {
        ApiError::new(
            StatusCode::UNAUTHORIZED,
            "unauthorized",
            "Full authentication is required to access this resource",
        )
    })?;
    let client = state
        .clients
        .authenticate(&client_id, &secret)
        .await?
        .ok_or_else(ApiError::bad_credentials)?;
    if !client
        .authorities
        .iter()
        .any(|authority| authority == "uaa.resource")
    {
        return Err(ApiError::new(
            StatusCode::FORBIDDEN,
            "access_denied",
            "Access is denied",
        ));
    }
    let form = parse_form(&body)?;
    let to_400 = |error: ApiError| {
        ApiError::new(StatusCode::BAD_REQUEST, "invalid_token", error.description)
    };
    let token = form
        .get("token")
        .filter(|token| !token.is_empty())
        .ok_or_else(|| to_400(ApiError::invalid_token("Token parameter must be set")))?;
    let claims = verify_access_token(&state, token).await.map_err(to_400)?;
    // A user token stops being valid when its user is deleted or changes password.
    check_not_revoked(&state, &claims).await.map_err(to_400)?;
    let missing: Vec<&str> = form
        .get("scopes")
        .map(|scopes| scopes.split(',').map(str::trim).collect::<Vec<_>>())
        .unwrap_or_default()
        .into_iter()
        .filter(|wanted| {
            !wanted.is_empty()
                && !claims
                    .scope
                    .iter()
                    .any(|scope| scope.eq_ignore_ascii_case(wanted))
        })
        .collect();
    if !missing.is_empty() {
        return Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            "invalid_scope",
            format!("Some requested scopes are missing: {}", missing.join(",")),
        ));
    }
    Ok(HttpResponse::Ok().json(claims))
}

async fn token_keys(state: web::Data<AppState>) -> Result<HttpResponse, ApiError> {
    let reload_state = state.clone();
    let keys = state
        .database
        .blocking(move |database| reload_state.keys.reload(database))
        .await?;
    let keys: Vec<&serde_json::Value> = keys.keys.iter().map(|key| &key.jwk).collect();
    Ok(HttpResponse::Ok().json(serde_json::json!({ "keys": keys })))
}

async fn token_key(state: web::Data<AppState>) -> Result<HttpResponse, ApiError> {
    let reload_state = state.clone();
    let keys = state
        .database
        .blocking(move |database| reload_state.keys.reload(database))
        .await?;
    Ok(HttpResponse::Ok().json(&keys.active().jwk))
}

async fn userinfo(
    state: web::Data<AppState>,
    principal: Principal,
) -> Result<HttpResponse, ApiError> {
    if !principal.has_scope("openid") {
        return Err(ApiError::insufficient_scope(&["openid"]));
    }
    let user_id = principal
        .user_id()
        .ok_or_else(|| ApiError::insufficient_scope(&["openid"]))?
        .to_owned();
    let user = state
        .database
        .blocking(move |database| Ok(database.read(|conn| user_store::find_by_id(conn, &user_id))?))
        .await?
        .ok_or_else(|| ApiError::invalid_token("Invalid token: the user no longer exists"))?;
    // UAA's `UserInfoResponse`: absent values are left out, except `previous_logon_time`, which
    // is always there; `name` is the given name, a space and the family name.
    let name = format!(
        "{}{}",
        user.given_name.as_deref().unwrap_or_default(),
        user.family_name
            .as_deref()
            .map(|family| format!(" {family}"))
            .unwrap_or_default()
    );
    let mut info = serde_json::json!({
        "user_id": user.id,
        "sub": user.id,
        "user_name": user.user_name,
        "email": user.email,
        "email_verified": user.verified,
        "name": name,
        "previous_logon_time": user.previous_logon,
    });
    if let Some(object) = info.as_object_mut() {
        if let Some(given_name) = user.given_name {
            object.insert("given_name".to_owned(), given_name.into());
        }
        if let Some(family_name) = user.family_name {
            object.insert("family_name".to_owned(), family_name.into());
        }
    }
    Ok(HttpResponse::Ok().json(info))
}
