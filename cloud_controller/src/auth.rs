//! Authentication: RS256 JWT verification against UAA's `/token_keys` (cached, refetched on an
//! unknown `kid` at most every few seconds) and the [`CurrentUser`] extractor, which also enforces
//! the read/write scopes and creates the user's row the first time a token is seen.

use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::time::{Duration, Instant};

use actix_web::dev::Payload;
use actix_web::{web, FromRequest, HttpRequest};
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use serde::Deserialize;
use tokio::sync::Mutex;

use crate::app::AppState;
use crate::error::{ApiError, ErrorKind};

/// Shortest interval between two JWKS fetches triggered by unknown key ids.
const MIN_REFETCH_INTERVAL: Duration = Duration::from_secs(2);

/// Scope that makes a user an admin.
pub const SCOPE_ADMIN: &str = "cloud_controller.admin";
/// Scope of read-only admins.
pub const SCOPE_ADMIN_READ_ONLY: &str = "cloud_controller.admin_read_only";
/// Scope of global auditors.
pub const SCOPE_GLOBAL_AUDITOR: &str = "cloud_controller.global_auditor";
/// Read scope.
pub const SCOPE_READ: &str = "cloud_controller.read";
/// Write scope.
pub const SCOPE_WRITE: &str = "cloud_controller.write";

/// Claims the Cloud Controller reads from a UAA access token.
#[derive(Debug, Deserialize)]
struct Claims {
    #[serde(default)]
    user_id: Option<String>,
    #[serde(default)]
    user_name: Option<String>,
    #[serde(default)]
    origin: Option<String>,
    #[serde(default)]
    client_id: Option<String>,
    #[serde(default)]
    scope: Vec<String>,
}

#[derive(Debug, Deserialize)]
struct JwksDocument {
    keys: Vec<Jwk>,
}

#[derive(Debug, Deserialize)]
struct Jwk {
    #[serde(default)]
    kid: Option<String>,
    #[serde(default)]
    kty: Option<String>,
    #[serde(default)]
    n: Option<String>,
    #[serde(default)]
    e: Option<String>,
}

#[derive(Default)]
struct KeyCache {
    keys: HashMap<String, DecodingKey>,
    /// Keys published without a `kid`.
    anonymous: Vec<DecodingKey>,
    fetched_at: Option<Instant>,
}

/// Verifies UAA access tokens.
pub struct TokenVerifier {
    jwks_url: String,
    issuer: String,
    http: reqwest::Client,
    cache: Mutex<KeyCache>,
}

/// The verified identity behind a token.
#[derive(Debug, Clone)]
pub struct TokenIdentity {
    /// `user_id`, or `client_id` for client tokens.
    pub guid: String,
    /// `user_name` (absent for clients).
    pub username: Option<String>,
    /// `origin` (absent for clients).
    pub origin: Option<String>,
    /// True for client-credentials tokens.
    pub is_client: bool,
    /// Granted scopes.
    pub scopes: Vec<String>,
}

impl TokenVerifier {
    /// A verifier for tokens issued by `{uaa_public}/oauth/token`, keys read from `{uaa_internal}/token_keys`.
    pub fn new(uaa_public: &str, uaa_internal: &str, http: reqwest::Client) -> Self {
        TokenVerifier {
            jwks_url: format!("{uaa_internal}/token_keys"),
            issuer: format!("{uaa_public}/oauth/token"),
            http,
            cache: Mutex::new(KeyCache::default()),
        }
    }

    /// Checks signature, expiry, issuer and audience; returns the identity.
    pub async fn verify(&self, token: &str) -> Result<TokenIdentity, ApiError> {
        let invalid = || ApiError::plain(ErrorKind::InvalidAuthToken);
        let header = jsonwebtoken::decode_header(token).map_err(|_| invalid())?;
        if header.alg != Algorithm::RS256 {
            return Err(invalid());
        }
        let keys = self.keys_for(header.kid.as_deref()).await?;
        if keys.is_empty() {
            return Err(invalid());
        }
        let mut validation = Validation::new(Algorithm::RS256);
        validation.set_issuer(&[&self.issuer]);
        validation.set_audience(&["cloud_controller"]);
        validation.set_required_spec_claims(&["exp", "iss", "aud"]);
        validation.leeway = 0;
        let mut claims = None;
        for key in &keys {
            if let Ok(data) = jsonwebtoken::decode::<Claims>(token, key, &validation) {
                claims = Some(data.claims);
                break;
            }
        }
        let claims = claims.ok_or_else(invalid)?;
        match (claims.user_id, claims.client_id) {
            (Some(user_id), _) if claims.user_name.is_some() => Ok(TokenIdentity {
                guid: user_id,
                username: claims.user_name,
                origin: claims.origin,
                is_client: false,
                scopes: claims.scope,
            }),
            (_, Some(client_id)) => Ok(TokenIdentity {
                guid: client_id,
                username: None,
                origin: None,
                is_client: true,
                scopes: claims.scope,
            }),
            _ => Err(invalid()),
        }
    }

    async fn keys_for(&self, kid: Option<&str>) -> Result<Vec<DecodingKey>, ApiError> {
        let mut cache = self.cache.lock().await;
        let known = |cache: &KeyCache| match kid {
            Some(kid) => cache.keys.get(kid).cloned().into_iter().collect::<Vec<_>>(),
            None => cache
                .keys
                .values()
                .cloned()
                .chain(cache.anonymous.iter().cloned())
                .collect(),
        };
        let found = known(&cache);
        if !found.is_empty() {
            return Ok(found);
        }
        let may_fetch = cache
            .fetched_at
            .is_none_or(|at| at.elapsed() >= MIN_REFETCH_INTERVAL);
        if !may_fetch {
            return Ok(Vec::new());
        }
        // The time is recorded only once the fetch has finished: actix polls a handler's
        // extractors together, so a failing body extractor can drop this future mid-fetch, and a
        // recorded-but-abandoned fetch would refuse every token for MIN_REFETCH_INTERVAL.
        let fetched = self.fetch().await;
        cache.fetched_at = Some(Instant::now());
        match fetched {
            Ok((keys, anonymous)) => {
                cache.keys = keys;
                cache.anonymous = anonymous;
            }
            Err(error) => {
                tracing::warn!(%error, url = %self.jwks_url, "fetching UAA token keys failed");
                return Err(ApiError::plain(ErrorKind::UaaUnavailable));
            }
        }
        Ok(known(&cache))
    }

    async fn fetch(&self) -> Result<(HashMap<String, DecodingKey>, Vec<DecodingKey>), String> {
        let response = self
            .http
            .get(&self.jwks_url)
            .header("Accept", "application/json")
            .send()
            .await
            .map_err(|error| error.to_string())?;
        if !response.status().is_success() {
            return Err(format!("status {}", response.status()));
        }
        let document: JwksDocument = response.json().await.map_err(|error| error.to_string())?;
        let mut keys = HashMap::new();
        let mut anonymous = Vec::new();
        for jwk in document.keys {
            if jwk.kty.as_deref().is_some_and(|kty| kty != "RSA") {
                continue;
            }
            let (Some(n), Some(e)) = (jwk.n.as_deref(), jwk.e.as_deref()) else {
                continue;
            };
            let Ok(key) = DecodingKey::from_rsa_components(n, e) else {
                continue;
            };
            match jwk.kid {
                Some(kid) => {
                    keys.insert(kid, key);
                }
                None => anonymous.push(key),
            }
        }
        Ok((keys, anonymous))
    }
}

/// The authenticated caller of a request, with its Cloud Controller user row id.
#[derive(Debug, Clone)]
pub struct CurrentUser {
    /// UAA user id (or client id).
    pub guid: String,
    /// Username from the token.
    pub username: Option<String>,
    /// Origin from the token.
    pub origin: Option<String>,
    /// True for client tokens.
    pub is_client: bool,
    /// Granted scopes.
    pub scopes: Vec<String>,
    /// `users.id` of the caller.
    pub user_id: i32,
}

impl CurrentUser {
    fn has(&self, scope: &str) -> bool {
        self.scopes.iter().any(|granted| granted == scope)
    }

    /// `cloud_controller.admin`.
    pub fn is_admin(&self) -> bool {
        self.has(SCOPE_ADMIN)
    }

    /// `cloud_controller.admin_read_only`.
    pub fn is_admin_read_only(&self) -> bool {
        self.has(SCOPE_ADMIN_READ_ONLY)
    }

    /// Admin, read-only admin or global auditor: may read everything.
    pub fn can_read_globally(&self) -> bool {
        self.is_admin() || self.has(SCOPE_ADMIN_READ_ONLY) || self.has(SCOPE_GLOBAL_AUDITOR)
    }

    /// What a role listing shows as the user's name.
    pub fn presentation_name(&self) -> &str {
        self.username.as_deref().unwrap_or(&self.guid)
    }
}

/// Extracts `bearer <token>` (scheme case-insensitive) from the Authorization header.
pub(crate) fn bearer_token(request: &HttpRequest) -> Option<Result<String, ApiError>> {
    let header = request
        .headers()
        .get(actix_web::http::header::AUTHORIZATION)?;
    let invalid = || Err(ApiError::plain(ErrorKind::InvalidAuthToken));
    let Ok(value) = header.to_str() else {
        return Some(invalid());
    };
    let value = value.trim();
    if value.is_empty() {
        return None;
    }
    let mut parts = value.splitn(2, ' ');
    let scheme = parts.next().unwrap_or_default();
    let token = parts.next().unwrap_or_default().trim();
    if !scheme.eq_ignore_ascii_case("bearer") || token.is_empty() {
        return Some(invalid());
    }
    Some(Ok(token.to_owned()))
}

async fn authenticate(request: HttpRequest) -> Result<CurrentUser, ApiError> {
    let state = request
        .app_data::<web::Data<AppState>>()
        .cloned()
        .ok_or_else(|| ApiError::internal("application state missing"))?;
    let token = match bearer_token(&request) {
        None => return Err(ApiError::plain(ErrorKind::NotAuthenticated)),
        Some(token) => token?,
    };
    let identity = state.verifier.verify(&token).await?;
    let reading = matches!(
        *request.method(),
        actix_web::http::Method::GET | actix_web::http::Method::HEAD
    );
    let has = |scope: &str| identity.scopes.iter().any(|granted| granted == scope);
    let allowed = if reading {
        has(SCOPE_READ)
            || has(SCOPE_ADMIN)
            || has(SCOPE_ADMIN_READ_ONLY)
            || has(SCOPE_GLOBAL_AUDITOR)
    } else {
        has(SCOPE_WRITE) || has(SCOPE_ADMIN)
    };
    if !allowed {
        let kind = if request.path().starts_with("/v2") {
            ErrorKind::InsufficientScope
        } else {
            ErrorKind::NotAuthorized
        };
        return Err(ApiError::plain(kind));
    }
    let row_identity = identity.clone();
    let user = state
        .db
        .run(move |conn| {
            crate::store::users::ensure(
                conn,
                &row_identity.guid,
                row_identity.username.as_deref(),
                row_identity.origin.as_deref(),
                row_identity.is_client,
            )
        })
        .await?;
    Ok(CurrentUser {
        guid: identity.guid,
        username: identity.username,
        origin: identity.origin,
        is_client: identity.is_client,
        scopes: identity.scopes,
        user_id: user.id,
    })
}

impl FromRequest for CurrentUser {
    type Error = ApiError;
    type Future = Pin<Box<dyn Future<Output = Result<CurrentUser, ApiError>>>>;

    fn from_request(request: &HttpRequest, _payload: &mut Payload) -> Self::Future {
        Box::pin(authenticate(request.clone()))
    }
}
