//! Request authentication: the `Principal` extractor (a verified bearer JWT of ours) and HTTP
//! Basic client credentials.

use std::future::Future;
use std::pin::Pin;

use actix_web::dev::Payload;
use actix_web::{web, FromRequest, HttpRequest};
use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use jsonwebtoken::{Algorithm, Validation};

use crate::api::TokenClaims;
use crate::error::ApiError;
use crate::state::AppState;

/// The caller of a protected endpoint, from a verified bearer token.
#[derive(Debug, Clone)]
pub(crate) struct Principal {
    pub(crate) claims: TokenClaims,
}

/// Scopes that grant every SCIM permission.
const ADMIN_SCOPE: &str = "uaa.admin";

impl Principal {
    pub(crate) fn has_scope(&self, scope: &str) -> bool {
        self.claims.scope.iter().any(|granted| granted == scope)
    }

    pub(crate) fn is_admin(&self) -> bool {
        self.has_scope(ADMIN_SCOPE)
    }

    /// Requires one of `scopes` (or `uaa.admin`), else 403 `insufficient_scope`.
    pub(crate) fn require_any(&self, scopes: &[&str]) -> Result<(), ApiError> {
        if self.is_admin() || scopes.iter().any(|scope| self.has_scope(scope)) {
            Ok(())
        } else {
            let mut required = scopes.to_vec();
            required.push(ADMIN_SCOPE);
            Err(ApiError::insufficient_scope(&required))
        }
    }

    /// The user id of a user token; `None` for client tokens.
    pub(crate) fn user_id(&self) -> Option<&str> {
        self.claims.user_id.as_deref()
    }
}

impl FromRequest for Principal {
    type Error = ApiError;
    type Future = Pin<Box<dyn Future<Output = Result<Principal, ApiError>>>>;

    fn from_request(request: &HttpRequest, _payload: &mut Payload) -> Self::Future {
        let state = request.app_data::<web::Data<AppState>>().cloned();
        let token = bearer_token(request);
        Box::pin(async move {
            let state = state.ok_or_else(|| ApiError::internal("AppState is not registered"))?;
            // UAA answers a missing token with `unauthorized`, a bad one with `invalid_token`
            // (which makes the cf CLI refresh and retry).
            let token = token.ok_or_else(|| {
                ApiError::new(
                    actix_web::http::StatusCode::UNAUTHORIZED,
                    "unauthorized",
                    "Full authentication is required to access this resource",
                )
            })?;
            let claims = verify_access_token(&state, &token).await?;
            check_not_revoked(&state, &claims).await?;
            Ok(Principal { claims })
        })
    }
}

/// The token of an `Authorization: bearer …` header (scheme matched case-insensitively).
fn bearer_token(request: &HttpRequest) -> Option<String> {
    let value = request
        .headers()
        .get(actix_web::http::header::AUTHORIZATION)?
        .to_str()
        .ok()?;
    let (scheme, token) = value.trim().split_once(' ')?;
    let token = token.trim();
    (scheme.eq_ignore_ascii_case("bearer") && !token.is_empty()).then(|| token.to_owned())
}

/// Verifies signature, `exp` and `iss` of one of our access tokens.
pub(crate) async fn verify_access_token(
    state: &web::Data<AppState>,
    token: &str,
) -> Result<TokenClaims, ApiError> {
    let header = jsonwebtoken::decode_header(token).map_err(|_| {
        ApiError::invalid_token("Invalid token (could not decode): token is not a JWT")
    })?;
    if header.alg != Algorithm::RS256 {
        return Err(ApiError::invalid_token(
            "Invalid token: unsupported signing algorithm",
        ));
    }
    let kid = header.kid.unwrap_or_default();
    let mut keys = state.keys.current();
    if keys.find(&kid).is_none() {
        // The key may have been added by another process since we last looked.
        let reload_state = state.clone();
        keys = state
            .database
            .blocking(move |database| reload_state.keys.reload(database))
            .await?;
    }
    let key = keys
        .find(&kid)
        .ok_or_else(|| ApiError::invalid_token("Invalid token: unknown signing key"))?;
    let mut validation = Validation::new(Algorithm::RS256);
    validation.validate_aud = false;
    validation.leeway = 0;
    validation.set_issuer(&[state.token_issuer.as_str()]);
    validation.set_required_spec_claims(&["exp", "iss"]);
    let data = jsonwebtoken::decode::<TokenClaims>(token, &key.decoding, &validation).map_err(
        |error| match error.kind() {
            jsonwebtoken::errors::ErrorKind::ExpiredSignature => {
                ApiError::invalid_token("Invalid token: the token has expired")
            }
            _ => ApiError::invalid_token("Invalid token: the token could not be verified"),
        },
    )?;
    Ok(data.claims)
}

/// Fails with 401 `invalid_token` when a token was revoked by its id, outlived its user or
/// client, or the user's password or the client's secret changed since it was issued: its
/// `rev_sig` no longer matches.
pub(crate) async fn check_not_revoked(
    state: &web::Data<AppState>,
    claims: &TokenClaims,
) -> Result<(), ApiError> {
    let client = state.clients.get(&claims.client_id);
    let jti = claims.jti.clone();
    let user_id = claims.user_id.clone();
    let (revoked_by_id, user) = state
        .database
        .blocking(move |database| {
            Ok(database.read(|conn| {
                let revoked = crate::db::revoked::is_revoked(conn, &jti)?;
                let user = match &user_id {
                    Some(user_id) if !revoked => crate::db::users::find_by_id(conn, user_id)?,
                    _ => None,
                };
                Ok((revoked, user))
            })?)
        })
        .await?;
    let still_valid = !revoked_by_id
        && match (&claims.user_id, client) {
            (None, Some(client)) => {
                crate::tokens::client_revocation_signature(&client) == claims.rev_sig
            }
            (Some(_), Some(client)) => user.is_some_and(|user| {
                crate::tokens::user_revocation_signature(&user, &client) == claims.rev_sig
            }),
            (_, None) => false,
        };
    if still_valid {
        Ok(())
    } else {
        Err(ApiError::invalid_token("Token has been revoked"))
    }
}

/// Client id and secret from an `Authorization: Basic …` header, if there is one.
pub(crate) fn basic_credentials(
    request: &HttpRequest,
) -> Result<Option<(String, String)>, ApiError> {
    let Some(value) = request
        .headers()
        .get(actix_web::http::header::AUTHORIZATION)
    else {
        return Ok(None);
    };
    let value = value
        .to_str()
        .map_err(|_| ApiError::invalid_client("Bad client credentials"))?;
    let Some((scheme, encoded)) = value.trim().split_once(' ') else {
        return Ok(None);
    };
    if !scheme.eq_ignore_ascii_case("basic") {
        return Ok(None);
    }
    let decoded = STANDARD
        .decode(encoded.trim())
        .ok()
        .and_then(|bytes| String::from_utf8(bytes).ok())
        .ok_or_else(|| ApiError::invalid_client("Bad client credentials"))?;
    let (client_id, secret) = decoded
        .split_once(':')
        .ok_or_else(|| ApiError::invalid_client("Bad client credentials"))?;
    Ok(Some((client_id.to_owned(), secret.to_owned())))
}
