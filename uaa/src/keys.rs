//! Token signing keys: RSA-2048 keys generated on first start and by `rotate_signing_key`,
//! kept in the database, parsed once into a `KeyRing` that signs with the active key and
//! verifies with any key. The ring reloads from the database every few seconds so that a key
//! rotated by another process is picked up while running.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use jsonwebtoken::{DecodingKey, EncodingKey};
use rand::Rng;
use rsa::pkcs8::{DecodePrivateKey, EncodePrivateKey, EncodePublicKey, LineEnding};
use rsa::traits::PublicKeyParts;
use rsa::RsaPrivateKey;

use crate::db::keys::{self as key_store, KeyRow};
use crate::db::{now_millis, Database, StoreError};
use crate::error::{ApiError, UaaError};

/// How long a loaded key set is trusted before it is re-read from the database.
const RELOAD_INTERVAL: Duration = Duration::from_secs(5);

/// One parsed signing key.
pub(crate) struct SigningKey {
    pub(crate) kid: String,
    pub(crate) encoding: EncodingKey,
    pub(crate) decoding: DecodingKey,
    /// The `/token_keys` entry: `kty, alg, use, kid, n, e, value`.
    pub(crate) jwk: serde_json::Value,
}

/// The keys at one point in time, the active one first.
pub(crate) struct KeySet {
    pub(crate) keys: Vec<Arc<SigningKey>>,
}

impl KeySet {
    pub(crate) fn active(&self) -> &Arc<SigningKey> {
        &self.keys[0]
    }

    pub(crate) fn find(&self, kid: &str) -> Option<&Arc<SigningKey>> {
        self.keys.iter().find(|key| key.kid == kid)
    }
}

/// The shared, periodically reloaded key set.
pub(crate) struct KeyRing {
    current: RwLock<Arc<KeySet>>,
    loaded_at: Mutex<Instant>,
    reloading: AtomicBool,
}

impl KeyRing {
    /// Loads the keys, creating the first one when the database has none.
    pub(crate) fn load_or_create(database: &Database) -> Result<KeyRing, UaaError> {
        let mut rows = database.read(key_store::load_all)?;
        if rows.is_empty() {
            let row = generate_key_row()?;
            database.write(|conn| -> Result<(), StoreError> {
                if key_store::load_all(conn)?.is_empty() {
                    key_store::insert_active(conn, &row)?;
                    tracing::info!(kid = %row.kid, "generated the first token signing key");
                }
                Ok(())
            })?;
            rows = database.read(key_store::load_all)?;
        }
        let set = parse_rows(&rows, &HashMap::new())?;
        Ok(KeyRing {
            current: RwLock::new(Arc::new(set)),
            loaded_at: Mutex::new(Instant::now()),
            reloading: AtomicBool::new(false),
        })
    }

    pub(crate) fn current(&self) -> Arc<KeySet> {
        self.current
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
    }

    /// Re-reads the keys from the database now.
    pub(crate) fn reload(&self, database: &Database) -> Result<Arc<KeySet>, ApiError> {
        let rows = database.read(key_store::load_all)?;
        let known: HashMap<String, Arc<SigningKey>> = self
            .current()
            .keys
            .iter()
            .map(|key| (key.kid.clone(), key.clone()))
            .collect();
        let set = Arc::new(parse_rows(&rows, &known).map_err(ApiError::internal)?);
        *self
            .current
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = set.clone();
        *self
            .loaded_at
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = Instant::now();
        Ok(set)
    }

    /// Whether the key set is old enough to be re-read; at most one caller gets `true` at a time
    /// and must then call [`KeyRing::reload`] followed by [`KeyRing::reload_done`].
    pub(crate) fn claim_reload(&self) -> bool {
        let stale = self
            .loaded_at
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .elapsed()
            >= RELOAD_INTERVAL;
        stale && !self.reloading.swap(true, Ordering::AcqRel)
    }

    pub(crate) fn reload_done(&self) {
        self.reloading.store(false, Ordering::Release);
    }
}

fn parse_rows(
    rows: &[KeyRow],
    known: &HashMap<String, Arc<SigningKey>>,
) -> Result<KeySet, UaaError> {
    if rows.is_empty() {
        return Err(UaaError::Key(
            "the database holds no signing key".to_owned(),
        ));
    }
    let mut keys = Vec::with_capacity(rows.len());
    for row in rows {
        match known.get(&row.kid) {
            Some(key) => keys.push(key.clone()),
            None => keys.push(Arc::new(parse_row(row)?)),
        }
    }
    Ok(KeySet { keys })
}

fn parse_row(row: &KeyRow) -> Result<SigningKey, UaaError> {
    let bad = |what: &str, error: &dyn std::fmt::Display| {
        UaaError::Key(format!("key {}: {what}: {error}", row.kid))
    };
    let private_key = RsaPrivateKey::from_pkcs8_pem(&row.private_key_pem)
        .map_err(|error| bad("invalid private key", &error))?;
    let public_key = private_key.to_public_key();
    let n = URL_SAFE_NO_PAD.encode(public_key.n().to_bytes_be());
    let e = URL_SAFE_NO_PAD.encode(public_key.e().to_bytes_be());
    let public_pem = public_key
        .to_public_key_pem(LineEnding::LF)
        .map_err(|error| bad("cannot encode public key", &error))?;
    let encoding = EncodingKey::from_rsa_pem(row.private_key_pem.as_bytes())
        .map_err(|error| bad("cannot load for signing", &error))?;
    let decoding = DecodingKey::from_rsa_components(&n, &e)
        .map_err(|error| bad("cannot load for verifying", &error))?;
    let jwk = serde_json::json!({
        "kty": "RSA",
        "alg": "RS256",
        "use": "sig",
        "kid": row.kid,
        "n": n,
        "e": e,
        "value": public_pem.trim_end(),
    });
    Ok(SigningKey {
        kid: row.kid.clone(),
        encoding,
        decoding,
        jwk,
    })
}

/// Generates a new RSA-2048 key with a fresh `kid`.
pub(crate) fn generate_key_row() -> Result<KeyRow, UaaError> {
    let mut rng = rand::rngs::OsRng;
    let private_key = RsaPrivateKey::new(&mut rng, 2048)
        .map_err(|error| UaaError::Key(format!("cannot generate RSA key: {error}")))?;
    let pem = private_key
        .to_pkcs8_pem(LineEnding::LF)
        .map_err(|error| UaaError::Key(format!("cannot encode RSA key: {error}")))?;
    let suffix: u32 = rng.gen();
    let kid = format!(
        "key-{}-{suffix:08x}",
        chrono::Utc::now().format("%Y%m%d%H%M%S")
    );
    Ok(KeyRow {
        kid,
        private_key_pem: pem.to_string(),
        active: true,
        created: now_millis(),
    })
}

/// Adds a new active key to the database at `database_url`; older keys stay for verification.
pub(crate) fn rotate(database_url: &str) -> Result<String, UaaError> {
    let database = Database::open(database_url)?;
    let row = generate_key_row()?;
    database
        .write(|conn| -> Result<(), StoreError> { Ok(key_store::insert_active(conn, &row)?) })?;
    tracing::info!(kid = %row.kid, "rotated the token signing key");
    Ok(row.kid)
}
