//! Typed UAA configuration (`UaaConfig`), deserialised from YAML and validated before anything binds.

use serde::Deserialize;

use crate::error::UaaError;

/// Configuration of one UAA server. Every field name carries its unit where it has one.
/// `Debug` hides secrets (the database password, user passwords, client secrets).
#[derive(Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UaaConfig {
    /// Public base URL of this UAA, e.g. `http://127.0.0.1:9023`. Tokens carry
    /// `iss = {issuer_url}/oauth/token`. Required.
    pub issuer_url: String,
    /// `sqlite://PATH` (file created if missing) or `postgres://user:pass@host:port/db`. Required.
    pub database_url: String,
    /// Lifetime of access tokens. Default 1200 (20 minutes).
    #[serde(default = "default_access_token_validity_secs")]
    pub access_token_validity_secs: u64,
    /// Lifetime of refresh tokens. Default 2592000 (30 days).
    #[serde(default = "default_refresh_token_validity_secs")]
    pub refresh_token_validity_secs: u64,
    /// bcrypt cost for user passwords and client secrets. Default 10; 4..=31.
    #[serde(default = "default_password_hash_cost")]
    pub password_hash_cost: u32,
    /// Users created at start when missing. Existing users keep their password; their group
    /// memberships are extended to include the listed groups.
    #[serde(default)]
    pub users: Vec<UserConfig>,
    /// OAuth clients, upserted on every start: the configuration is the truth for clients.
    #[serde(default)]
    pub clients: Vec<ClientConfig>,
    /// Number of actix-web worker threads. Default: actix's default (one per core).
    #[serde(default)]
    pub workers: Option<usize>,
}

/// A user bootstrapped from the configuration. `Debug` hides the password.
#[derive(Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UserConfig {
    /// Login name (origin `uaa`).
    pub username: String,
    /// Initial password (only used when the user is created).
    pub password: String,
    /// Groups (scopes) the user must be a member of, in addition to UAA's default user groups.
    #[serde(default)]
    pub groups: Vec<String>,
    /// E-mail address. Default: the username.
    #[serde(default)]
    pub email: Option<String>,
}

/// An OAuth client. `Debug` hides the secret.
#[derive(Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClientConfig {
    /// Client id, e.g. `cf`.
    pub client_id: String,
    /// Client secret; may be the empty string (the cf CLI's `cf` client).
    #[serde(default)]
    pub secret: String,
    /// Any of `password`, `refresh_token`, `client_credentials`.
    #[serde(default)]
    pub authorized_grant_types: Vec<String>,
    /// Maximum scopes of user tokens issued to this client.
    #[serde(default)]
    pub scope: Vec<String>,
    /// Scopes of this client's own `client_credentials` tokens.
    #[serde(default)]
    pub authorities: Vec<String>,
    /// Overrides the server's `access_token_validity_secs` for this client.
    #[serde(default)]
    pub access_token_validity_secs: Option<u64>,
    /// Overrides the server's `refresh_token_validity_secs` for this client.
    #[serde(default)]
    pub refresh_token_validity_secs: Option<u64>,
}

impl std::fmt::Debug for UaaConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("UaaConfig")
            .field("issuer_url", &self.issuer_url)
            .field("database_url", &crate::db::redact(&self.database_url))
            .field(
                "access_token_validity_secs",
                &self.access_token_validity_secs,
            )
            .field(
                "refresh_token_validity_secs",
                &self.refresh_token_validity_secs,
            )
            .field("password_hash_cost", &self.password_hash_cost)
            .field("users", &self.users)
            .field("clients", &self.clients)
            .field("workers", &self.workers)
            .finish()
    }
}

impl std::fmt::Debug for UserConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("UserConfig")
            .field("username", &self.username)
            .field("password", &"<redacted>")
            .field("groups", &self.groups)
            .field("email", &self.email)
            .finish()
    }
}

impl std::fmt::Debug for ClientConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClientConfig")
            .field("client_id", &self.client_id)
            .field("secret", &"<redacted>")
            .field("authorized_grant_types", &self.authorized_grant_types)
            .field("scope", &self.scope)
            .field("authorities", &self.authorities)
            .field(
                "access_token_validity_secs",
                &self.access_token_validity_secs,
            )
            .field(
                "refresh_token_validity_secs",
                &self.refresh_token_validity_secs,
            )
            .finish()
    }
}

fn default_access_token_validity_secs() -> u64 {
    1200
}

fn default_refresh_token_validity_secs() -> u64 {
    2_592_000
}

fn default_password_hash_cost() -> u32 {
    10
}

/// Grant types a client may be configured with.
pub(crate) const GRANT_TYPES: [&str; 3] = ["password", "refresh_token", "client_credentials"];

/// Which database a `database_url` names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum DatabaseTarget {
    Sqlite(String),
    Postgres(String),
}

pub(crate) fn parse_database_url(database_url: &str) -> Result<DatabaseTarget, UaaError> {
    if let Some(path) = database_url.strip_prefix("sqlite://") {
        if path.is_empty() || path == ":memory:" {
            return Err(UaaError::Config(format!(
                "database_url {database_url:?}: an SQLite file path is required (`:memory:` is not supported)"
            )));
        }
        Ok(DatabaseTarget::Sqlite(path.to_owned()))
    } else if database_url.starts_with("postgres://") || database_url.starts_with("postgresql://") {
        Ok(DatabaseTarget::Postgres(database_url.to_owned()))
    } else {
        Err(UaaError::Config(format!(
            "database_url {database_url:?} must start with sqlite:// or postgres://"
        )))
    }
}

impl UaaConfig {
    /// Checks the configuration without touching the network or the database.
    pub(crate) fn validate(&self) -> Result<(), UaaError> {
        let bad = |message: String| Err(UaaError::Config(message));
        match url::Url::parse(&self.issuer_url) {
            Ok(url) if url.scheme() == "http" || url.scheme() == "https" => {
                if url.host_str().is_none() {
                    return bad(format!("issuer_url {:?} has no host", self.issuer_url));
                }
            }
            Ok(_) => {
                return bad(format!(
                    "issuer_url {:?} must be an http(s) URL",
                    self.issuer_url
                ))
            }
            Err(error) => {
                return bad(format!(
                    "issuer_url {:?} is not a URL: {error}",
                    self.issuer_url
                ))
            }
        }
        parse_database_url(&self.database_url)?;
        if !(4..=31).contains(&self.password_hash_cost) {
            return bad(format!(
                "password_hash_cost {} is out of range (4..=31)",
                self.password_hash_cost
            ));
        }
        if self.access_token_validity_secs == 0 || self.refresh_token_validity_secs == 0 {
            return bad("token validities must be at least 1 second".to_owned());
        }
        if self.workers == Some(0) {
            return bad("workers must be at least 1".to_owned());
        }
        let mut seen_users = std::collections::HashSet::new();
        for user in &self.users {
            if user.username.trim().is_empty() || user.username.len() > 255 {
                return bad(format!("users: invalid username {:?}", user.username));
            }
            if !seen_users.insert(user.username.to_lowercase()) {
                return bad(format!("users: {:?} is listed twice", user.username));
            }
            if user.password.is_empty() || user.password.len() > 255 {
                return bad(format!(
                    "users: password of {:?} must be 1 to 255 characters",
                    user.username
                ));
            }
            if let Some(group) = user.groups.iter().find(|group| !valid_scope_name(group)) {
                return bad(format!(
                    "users: {:?} has an invalid group {group:?}",
                    user.username
                ));
            }
        }
        let mut seen_clients = std::collections::HashSet::new();
        for client in &self.clients {
            if client.client_id.trim().is_empty() || client.client_id.contains(':') {
                return bad(format!("clients: invalid client_id {:?}", client.client_id));
            }
            if !seen_clients.insert(client.client_id.clone()) {
                return bad(format!("clients: {:?} is listed twice", client.client_id));
            }
            if let Some(grant) = client
                .authorized_grant_types
                .iter()
                .find(|grant| !GRANT_TYPES.contains(&grant.as_str()))
            {
                return bad(format!(
                    "clients: {:?} has unsupported grant type {grant:?} (supported: {})",
                    client.client_id,
                    GRANT_TYPES.join(", ")
                ));
            }
            if let Some(scope) = client
                .scope
                .iter()
                .chain(&client.authorities)
                .find(|scope| !valid_scope_name(scope))
            {
                return bad(format!(
                    "clients: {:?} has an invalid scope {scope:?}",
                    client.client_id
                ));
            }
            if client.access_token_validity_secs == Some(0)
                || client.refresh_token_validity_secs == Some(0)
            {
                return bad(format!(
                    "clients: {:?}: token validities must be at least 1 second",
                    client.client_id
                ));
            }
        }
        Ok(())
    }

    /// `issuer_url` without a trailing slash.
    pub(crate) fn issuer_base(&self) -> String {
        self.issuer_url.trim_end_matches('/').to_owned()
    }
}

/// Scope and group names: non-empty, no whitespace.
pub(crate) fn valid_scope_name(name: &str) -> bool {
    !name.is_empty() && name.len() <= 255 && !name.chars().any(char::is_whitespace)
}
