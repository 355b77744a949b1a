//! Authorization of log-cache reads, as CF's log-cache `cf-auth-proxy` does it: the bearer
//! token is verified (RS256 with UAA's `/token_keys`, expiry, issuer); tokens with a
//! firehose/admin scope read any source; anyone else may read a source the Cloud Controller
//! shows them (`GET /v3/apps/:guid`, then `GET /v3/service_instances/:guid`, with the caller's
//! token; positive answers cached briefly). Every refusal is a bare 404, as in log-cache.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use serde::Deserialize;
use tokio::sync::Mutex;

/// Scopes that may read every source: log-cache's own two, plus CC's global read roles (the
/// Cloud Controller would show such users every app anyway).
const ADMIN_SCOPES: &[&str] = &[
    "doppler.firehose",
    "logs.admin",
    "cloud_controller.admin",
    "cloud_controller.admin_read_only",
    "cloud_controller.global_auditor",
];
/// Shortest interval between two key fetches caused by unknown key ids (log-cache: 5 s).
const MIN_KEY_REFRESH_INTERVAL: Duration = Duration::from_secs(5);
/// Timeout of each request to UAA or the Cloud Controller.
const UPSTREAM_TIMEOUT: Duration = Duration::from_secs(10);
/// Cache entries kept before expired ones are pruned.
const CACHE_PRUNE_THRESHOLD: usize = 10_000;

/// Who the caller is, once the token checked out.
pub(crate) struct Caller {
    pub(crate) is_admin: bool,
    /// The `Authorization` header as sent, passed on to the Cloud Controller.
    pub(crate) authorization: String,
}

#[derive(Deserialize)]
struct Claims {
    #[serde(default)]
    scope: Vec<String>,
}

#[derive(Deserialize)]
struct TokenKeys {
    keys: Vec<TokenKey>,
}

#[derive(Deserialize)]
struct TokenKey {
    #[serde(default)]
    kid: Option<String>,
    #[serde(default)]
    alg: Option<String>,
    #[serde(default)]
    n: Option<String>,
    #[serde(default)]
    e: Option<String>,
    #[serde(default)]
    value: Option<String>,
}

#[derive(Default)]
struct KeyCache {
    keys: HashMap<String, DecodingKey>,
    anonymous: Vec<DecodingKey>,
    fetched_at: Option<Instant>,
}

/// Verifies tokens and answers "may this caller read this source".
pub(crate) struct Authorizer {
    token_keys_url: String,
    issuer: String,
    cc_url: String,
    http: reqwest::Client,
    keys: Mutex<KeyCache>,
    /// (authorization header, source id) → when the positive answer expires.
    allowed: std::sync::Mutex<HashMap<(String, String), Instant>>,
    cache_for: Duration,
}

impl Authorizer {
    pub(crate) fn new(
        uaa_url: &str,
        cc_url: &str,
        http: reqwest::Client,
        cache_for: Duration,
    ) -> Authorizer {
        Authorizer {
            token_keys_url: format!("{uaa_url}/token_keys"),
            issuer: format!("{uaa_url}/oauth/token"),
            cc_url: cc_url.to_owned(),
            http,
            keys: Mutex::new(KeyCache::default()),
            allowed: std::sync::Mutex::new(HashMap::new()),
            cache_for,
        }
    }

    /// Verifies the `Authorization` header's bearer token; `None` when missing or invalid.
    pub(crate) async fn verify(&self, authorization: Option<&str>) -> Option<Caller> {
        let authorization = authorization?.trim();
        let token = strip_bearer(authorization)?;
        let header = jsonwebtoken::decode_header(token).ok()?;
        if header.alg != Algorithm::RS256 {
            return None;
        }
        let keys = self.keys_for(header.kid.as_deref()).await;
        let mut validation = Validation::new(Algorithm::RS256);
        validation.set_issuer(&[&self.issuer]);
        validation.set_required_spec_claims(&["exp", "iss"]);
        validation.validate_aud = false;
        validation.leeway = 0;
        let claims = keys
            .iter()
            .find_map(|key| jsonwebtoken::decode::<Claims>(token, key, &validation).ok())?
            .claims;
        Some(Caller {
            is_admin: claims
                .scope
                .iter()
                .any(|scope| ADMIN_SCOPES.contains(&scope.as_str())),
            authorization: authorization.to_owned(),
        })
    }

    /// May `caller` read `source_id`? Admins always; others when the Cloud Controller shows
    /// them the app or service instance with that GUID.
    pub(crate) async fn may_read(&self, caller: &Caller, source_id: &str) -> bool {
        if caller.is_admin {
            return true;
        }
        let key = (caller.authorization.clone(), source_id.to_owned());
        {
            let allowed = self
                .allowed
                .lock()
                .unwrap_or_else(|poisoned| poisoned.into_inner());
            if allowed
                .get(&key)
                .is_some_and(|expires| *expires > Instant::now())
            {
                return true;
            }
        }
        if source_id.is_empty() || source_id.contains(['/', '?', '#']) {
            return false;
        }
        let mut visible = false;
        for resource in ["apps", "service_instances"] {
            let url = format!("{}/v3/{resource}/{source_id}", self.cc_url);
            match self.cc_get(&url, &caller.authorization).await {
                Ok(status) if status == reqwest::StatusCode::OK => {
                    visible = true;
                    break;
                }
                Ok(_) => {}
                Err(error) => {
                    tracing::warn!(%error, %url, "asking the Cloud Controller for log access failed");
                }
            }
        }
        if visible {
            let mut allowed = self
                .allowed
                .lock()
                .unwrap_or_else(|poisoned| poisoned.into_inner());
            let now = Instant::now();
            if allowed.len() >= CACHE_PRUNE_THRESHOLD {
                allowed.retain(|_, expires| *expires > now);
            }
            if allowed.len() < CACHE_PRUNE_THRESHOLD {
                allowed.insert(key, now + self.cache_for);
            }
        }
        visible
    }

    /// The source ids among `candidates` the caller may read (for `/api/v1/meta`).
    pub(crate) async fn readable(&self, caller: &Caller, candidates: Vec<String>) -> Vec<String> {
        if caller.is_admin {
            return candidates;
        }
        let mut readable = Vec::new();
        for source_id in candidates {
            if self.may_read(caller, &source_id).await {
                readable.push(source_id);
            }
        }
        readable
    }

    async fn cc_get(
        &self,
        url: &str,
        authorization: &str,
    ) -> Result<reqwest::StatusCode, reqwest::Error> {
        let response = self
            .http
            .get(url)
            .header(reqwest::header::AUTHORIZATION, authorization)
            .timeout(UPSTREAM_TIMEOUT)
            .send()
            .await?;
        Ok(response.status())
    }

    async fn keys_for(&self, kid: Option<&str>) -> Vec<DecodingKey> {
        let mut cache = self.keys.lock().await;
        let known = |cache: &KeyCache| -> Vec<DecodingKey> {
            match kid {
                Some(kid) => cache.keys.get(kid).cloned().into_iter().collect(),
                None => cache
                    .keys
                    .values()
                    .cloned()
                    .chain(cache.anonymous.iter().cloned())
                    .collect(),
            }
        };
        let found = known(&cache);
        if !found.is_empty() {
            return found;
        }
        if cache
            .fetched_at
            .is_some_and(|at| at.elapsed() < MIN_KEY_REFRESH_INTERVAL)
        {
            return Vec::new();
        }
        let fetched = self.fetch_keys().await;
        cache.fetched_at = Some(Instant::now());
        match fetched {
            Ok((keys, anonymous)) => {
                cache.keys = keys;
                cache.anonymous = anonymous;
            }
            Err(error) => {
                tracing::warn!(%error, url = %self.token_keys_url, "fetching UAA token keys failed");
            }
        }
        known(&cache)
    }

    async fn fetch_keys(&self) -> Result<(HashMap<String, DecodingKey>, Vec<DecodingKey>), String> {
        let response = self
            .http
            .get(&self.token_keys_url)
            .header(reqwest::header::ACCEPT, "application/json")
            .timeout(UPSTREAM_TIMEOUT)
            .send()
            .await
            .map_err(|error| error.to_string())?;
        if !response.status().is_success() {
            return Err(format!("status {}", response.status()));
        }
        let document: TokenKeys = response.json().await.map_err(|error| error.to_string())?;
        let mut keys = HashMap::new();
        let mut anonymous = Vec::new();
        for key in document.keys {
            if key.alg.as_deref().is_some_and(|alg| alg != "RS256") {
                continue;
            }
            let decoding_key = match (&key.n, &key.e, &key.value) {
                (Some(n), Some(e), _) => DecodingKey::from_rsa_components(n, e).ok(),
                (_, _, Some(pem)) => DecodingKey::from_rsa_pem(pem.as_bytes()).ok(),
                _ => None,
            };
            let Some(decoding_key) = decoding_key else {
                continue;
            };
            match key.kid {
                Some(kid) => {
                    keys.insert(kid, decoding_key);
                }
                None => anonymous.push(decoding_key),
            }
        }
        Ok((keys, anonymous))
    }
}

/// The token after a case-insensitive `bearer ` prefix.
fn strip_bearer(authorization: &str) -> Option<&str> {
    let (scheme, token) = authorization.split_once(char::is_whitespace)?;
    if !scheme.eq_ignore_ascii_case("bearer") {
        return None;
    }
    let token = token.trim();
    (!token.is_empty()).then_some(token)
}

#[cfg(test)]
mod tests {
    use super::strip_bearer;

    #[test]
    fn the_bearer_prefix_is_case_insensitive() {
        assert_eq!(strip_bearer("bearer abc"), Some("abc"));
        assert_eq!(strip_bearer("Bearer  abc "), Some("abc"));
        assert_eq!(strip_bearer("Basic abc"), None);
        assert_eq!(strip_bearer("abc"), None);
    }
}
