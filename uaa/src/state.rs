//! Shared server state (`AppState`), built once before the HTTP workers start, and the
//! in-memory client registry with its cache of verified secrets.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use sha2::{Digest, Sha256};

use crate::config::UaaConfig;
use crate::db::clients::ClientRow;
use crate::db::{split_list, Database};
use crate::error::ApiError;
use crate::keys::KeyRing;
use crate::metrics::Metrics;

/// Everything a request handler needs.
pub(crate) struct AppState {
    /// `issuer_url` without a trailing slash.
    pub(crate) issuer_base: String,
    /// `iss` of our tokens: `{issuer_url}/oauth/token`.
    pub(crate) token_issuer: String,
    pub(crate) access_token_validity_secs: i64,
    pub(crate) refresh_token_validity_secs: i64,
    pub(crate) password_hash_cost: u32,
    /// A bcrypt hash (at `password_hash_cost`) of a random secret: a password grant for an unknown
    /// user name is checked against it, so it takes as long as one for a known user and the
    /// answer time does not tell which user names exist.
    pub(crate) unknown_user_password_hash: String,
    pub(crate) database: Database,
    pub(crate) keys: KeyRing,
    pub(crate) clients: ClientRegistry,
    pub(crate) metrics: Metrics,
}

impl AppState {
    pub(crate) fn new(
        config: &UaaConfig,
        database: Database,
        keys: KeyRing,
        clients: Vec<ClientRow>,
    ) -> AppState {
        let issuer_base = config.issuer_base();
        AppState {
            token_issuer: format!("{issuer_base}/oauth/token"),
            issuer_base,
            access_token_validity_secs: to_i64(config.access_token_validity_secs),
            refresh_token_validity_secs: to_i64(config.refresh_token_validity_secs),
            password_hash_cost: config.password_hash_cost,
            unknown_user_password_hash: bcrypt::hash(
                uuid::Uuid::new_v4().to_string(),
                config.password_hash_cost,
            )
            .unwrap_or_default(),
            database,
            keys,
            clients: ClientRegistry::new(clients),
            metrics: Metrics::default(),
        }
    }
}

pub(crate) fn to_i64(value: u64) -> i64 {
    i64::try_from(value).unwrap_or(i64::MAX)
}

/// A registered OAuth client.
#[derive(Debug, Clone)]
pub(crate) struct Client {
    pub(crate) client_id: String,
    pub(crate) secret_hash: String,
    pub(crate) grant_types: Vec<String>,
    pub(crate) scope: Vec<String>,
    pub(crate) authorities: Vec<String>,
    pub(crate) access_token_validity_secs: Option<i64>,
    pub(crate) refresh_token_validity_secs: Option<i64>,
    /// Epoch milliseconds of the last change to the client's registration.
    pub(crate) last_modified: i64,
}

impl Client {
    pub(crate) fn allows_grant(&self, grant_type: &str) -> bool {
        self.grant_types.iter().any(|grant| grant == grant_type)
    }
}

/// Clients by id (the configuration is their source of truth, so they live in memory), plus a
/// cache mapping each client to the SHA-256 of the secret that last passed bcrypt against its
/// stored hash. The cache makes `client_credentials` cheap: bcrypt runs once per secret.
pub(crate) struct ClientRegistry {
    clients: HashMap<String, Arc<Client>>,
    verified_secrets: Mutex<HashMap<String, VerifiedSecret>>,
}

struct VerifiedSecret {
    /// The stored hash the secret was verified against; a different hash invalidates the entry.
    secret_hash: String,
    secret_digest: [u8; 32],
}

impl ClientRegistry {
    fn new(rows: Vec<ClientRow>) -> ClientRegistry {
        let clients = rows
            .into_iter()
            .map(|row| {
                let client = Client {
                    grant_types: split_list(&row.authorized_grant_types),
                    scope: split_list(&row.scope),
                    authorities: split_list(&row.authorities),
                    access_token_validity_secs: row.access_token_validity_secs,
                    refresh_token_validity_secs: row.refresh_token_validity_secs,
                    last_modified: row.last_modified,
                    secret_hash: row.secret_hash,
                    client_id: row.client_id,
                };
                (client.client_id.clone(), Arc::new(client))
            })
            .collect();
        ClientRegistry {
            clients,
            verified_secrets: Mutex::new(HashMap::new()),
        }
    }

    pub(crate) fn get(&self, client_id: &str) -> Option<Arc<Client>> {
        self.clients.get(client_id).cloned()
    }

    /// The longest access-token validity any client has, given the default `default_secs`.
    pub(crate) fn max_access_validity_secs(&self, default_secs: i64) -> i64 {
        self.clients
            .values()
            .filter_map(|client| client.access_token_validity_secs)
            .fold(default_secs, i64::max)
    }

    /// Checks a client's secret; `None` when the client is unknown or the secret is wrong.
    pub(crate) async fn authenticate(
        &self,
        client_id: &str,
        secret: &str,
    ) -> Result<Option<Arc<Client>>, ApiError> {
        let Some(client) = self.get(client_id) else {
            return Ok(None);
        };
        let digest: [u8; 32] = Sha256::digest(secret.as_bytes()).into();
        {
            let cache = self
                .verified_secrets
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            if let Some(entry) = cache.get(client_id) {
                if entry.secret_hash == client.secret_hash
                    && constant_time_eq(&entry.secret_digest, &digest)
                {
                    return Ok(Some(client));
                }
            }
        }
        let secret_owned = secret.to_owned();
        let hash = client.secret_hash.clone();
        let matches =
            actix_web::web::block(move || bcrypt::verify(secret_owned, &hash).unwrap_or(false))
                .await
                .map_err(ApiError::internal)?;
        if !matches {
            return Ok(None);
        }
        self.verified_secrets
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .insert(
                client_id.to_owned(),
                VerifiedSecret {
                    secret_hash: client.secret_hash.clone(),
                    secret_digest: digest,
                },
            );
        Ok(Some(client))
    }
}

fn constant_time_eq(left: &[u8; 32], right: &[u8; 32]) -> bool {
    left.iter()
        .zip(right)
        .fold(0u8, |acc, (a, b)| acc | (a ^ b))
        == 0
}

/// Lower-case hex of bytes.
pub(crate) fn hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut out = String::with_capacity(bytes.len() * 2);
    for byte in bytes {
        out.push(char::from(DIGITS[usize::from(byte >> 4)]));
        out.push(char::from(DIGITS[usize::from(byte & 0x0f)]));
    }
    out
}

/// SHA-256 of a string, as hex.
pub(crate) fn sha256_hex(value: &str) -> String {
    hex(&Sha256::digest(value.as_bytes()))
}
