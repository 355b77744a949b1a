//! The Cloud Controller's own UAA client (`cloud_controller_username_lookup`): resolves usernames
//! to user ids and back through SCIM, with a cached client-credentials token.

use std::time::{Duration, Instant};

use serde::Deserialize;
use tokio::sync::Mutex;

use crate::error::{ApiError, ErrorKind};

/// A UAA user as the lookups return it.
#[derive(Debug, Clone)]
pub struct UaaUser {
    /// UAA user id (the CC user GUID).
    pub id: String,
    /// `userName`.
    pub username: String,
    /// `origin`.
    pub origin: String,
}

#[derive(Deserialize)]
struct TokenResponse {
    access_token: String,
    #[serde(default)]
    expires_in: Option<u64>,
}

#[derive(Deserialize)]
struct ScimUser {
    id: String,
    #[serde(rename = "userName")]
    user_name: String,
    #[serde(default)]
    origin: Option<String>,
}

#[derive(Deserialize)]
struct ScimList {
    #[serde(default)]
    resources: Vec<ScimUser>,
}

/// Client for UAA lookups.
pub struct UaaClient {
    base: String,
    client_id: String,
    client_secret: String,
    http: reqwest::Client,
    token: Mutex<Option<(String, Instant)>>,
}

fn unavailable(error: impl std::fmt::Display) -> ApiError {
    tracing::warn!(%error, "UAA lookup failed");
    ApiError::plain(ErrorKind::UaaUnavailable)
}

impl UaaClient {
    /// A client for `{base}` authenticating as `client_id`.
    pub fn new(base: &str, client_id: &str, client_secret: &str, http: reqwest::Client) -> Self {
        UaaClient {
            base: base.to_owned(),
            client_id: client_id.to_owned(),
            client_secret: client_secret.to_owned(),
            http,
            token: Mutex::new(None),
        }
    }

    async fn token(&self) -> Result<String, ApiError> {
        let mut cached = self.token.lock().await;
        if let Some((token, expires)) = cached.as_ref() {
            if Instant::now() < *expires {
                return Ok(token.clone());
            }
        }
        let response = self
            .http
            .post(format!("{}/oauth/token", self.base))
            .basic_auth(&self.client_id, Some(&self.client_secret))
            .header("Accept", "application/json")
            .form(&[("grant_type", "client_credentials")])
            .send()
            .await
            .map_err(unavailable)?;
        if !response.status().is_success() {
            return Err(unavailable(format!(
                "token request answered {}",
                response.status()
            )));
        }
        let body: TokenResponse = response.json().await.map_err(unavailable)?;
        let lifetime = body.expires_in.unwrap_or(300).saturating_sub(30).max(5);
        *cached = Some((
            body.access_token.clone(),
            Instant::now() + Duration::from_secs(lifetime),
        ));
        Ok(body.access_token)
    }

    async fn search(&self, filter: &str) -> Result<Vec<UaaUser>, ApiError> {
        let token = self.token().await?;
        let response = self
            .http
            .get(format!("{}/Users", self.base))
            .query(&[("filter", filter)])
            .bearer_auth(token)
            .header("Accept", "application/json")
            .send()
            .await
            .map_err(unavailable)?;
        if !response.status().is_success() {
            return Err(unavailable(format!(
                "user search answered {}",
                response.status()
            )));
        }
        let list: ScimList = response.json().await.map_err(unavailable)?;
        Ok(list
            .resources
            .into_iter()
            .map(|user| UaaUser {
                id: user.id,
                username: user.user_name,
                origin: user.origin.unwrap_or_else(|| "uaa".to_owned()),
            })
            .collect())
    }

    /// Users named `username`, in `origin` when given (one per origin otherwise).
    pub async fn users_by_username(
        &self,
        username: &str,
        origin: Option<&str>,
    ) -> Result<Vec<UaaUser>, ApiError> {
        let quoted = scim_quote(username);
        let filter = match origin {
            Some(origin) => format!("userName eq {quoted} and origin eq {}", scim_quote(origin)),
            None => format!("userName eq {quoted}"),
        };
        self.search(&filter).await
    }

    /// The user with this id, if UAA knows it.
    pub async fn user_by_id(&self, id: &str) -> Result<Option<UaaUser>, ApiError> {
        let token = self.token().await?;
        let url = format!(
            "{}/Users/{}",
            self.base,
            percent_encoding::utf8_percent_encode(id, crate::v3::present::PATH_SEGMENT)
        );
        let response = self
            .http
            .get(url)
            .bearer_auth(token)
            .header("Accept", "application/json")
            .send()
            .await
            .map_err(unavailable)?;
        if response.status() == reqwest::StatusCode::NOT_FOUND {
            return Ok(None);
        }
        if !response.status().is_success() {
            return Err(unavailable(format!(
                "user lookup answered {}",
                response.status()
            )));
        }
        let user: ScimUser = response.json().await.map_err(unavailable)?;
        Ok(Some(UaaUser {
            id: user.id,
            username: user.user_name,
            origin: user.origin.unwrap_or_else(|| "uaa".to_owned()),
        }))
    }
}

/// A SCIM string literal.
fn scim_quote(value: &str) -> String {
    format!("\"{}\"", value.replace('\\', "\\\\").replace('"', "\\\""))
}
