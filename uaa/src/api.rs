//! Wire shapes of the HTTP API (UAA's JSON): token responses, JWT claims, SCIM users, groups and
//! lists. Storage rows convert into these at the edge; nothing else derives `Serialize`.

use serde::{Deserialize, Serialize};

/// The SCIM schema UAA reports on every resource and list.
pub(crate) const SCIM_SCHEMA: &str = "urn:scim:schemas:core:1.0";

/// Successful `POST /oauth/token` answer.
#[derive(Debug, Serialize)]
pub(crate) struct TokenResponse {
    pub(crate) access_token: String,
    /// Always lower-case `bearer`: the cf CLI strips exactly `"bearer "`.
    pub(crate) token_type: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) refresh_token: Option<String>,
    pub(crate) expires_in: i64,
    pub(crate) scope: String,
    pub(crate) jti: String,
}

/// Access-token claims. User fields are all present (as strings) or all absent: the cf CLI
/// panics on `user_name` without `user_id` and `origin`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct TokenClaims {
    pub(crate) jti: String,
    pub(crate) sub: String,
    pub(crate) scope: Vec<String>,
    pub(crate) client_id: String,
    pub(crate) cid: String,
    pub(crate) azp: String,
    pub(crate) grant_type: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) user_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) origin: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) user_name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) email: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) auth_time: Option<i64>,
    pub(crate) rev_sig: String,
    pub(crate) iat: i64,
    pub(crate) exp: i64,
    pub(crate) iss: String,
    pub(crate) zid: String,
    pub(crate) aud: Vec<String>,
    pub(crate) revocable: bool,
}

/// `meta` of SCIM resources.
#[derive(Debug, Serialize)]
pub(crate) struct ScimMeta {
    pub(crate) version: i64,
    pub(crate) created: String,
    #[serde(rename = "lastModified")]
    pub(crate) last_modified: String,
}

#[derive(Debug, Serialize, Deserialize, Default)]
pub(crate) struct ScimName {
    #[serde(
        rename = "familyName",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub(crate) family_name: Option<String>,
    #[serde(rename = "givenName", default, skip_serializing_if = "Option::is_none")]
    pub(crate) given_name: Option<String>,
}

#[derive(Debug, Serialize, Deserialize)]
pub(crate) struct ScimEmail {
    #[serde(default)]
    pub(crate) value: Option<String>,
    #[serde(default)]
    pub(crate) primary: bool,
}

#[derive(Debug, Serialize)]
pub(crate) struct ScimUserGroup {
    pub(crate) value: String,
    pub(crate) display: String,
    #[serde(rename = "type")]
    pub(crate) kind: &'static str,
}

/// A user as `GET /Users/:id` renders it.
#[derive(Debug, Serialize)]
pub(crate) struct ScimUser {
    pub(crate) id: String,
    #[serde(rename = "externalId")]
    pub(crate) external_id: String,
    pub(crate) meta: ScimMeta,
    #[serde(rename = "userName")]
    pub(crate) user_name: String,
    pub(crate) name: ScimName,
    pub(crate) emails: Vec<ScimEmail>,
    pub(crate) groups: Vec<ScimUserGroup>,
    pub(crate) approvals: Vec<serde_json::Value>,
    pub(crate) active: bool,
    pub(crate) verified: bool,
    pub(crate) origin: String,
    #[serde(rename = "zoneId")]
    pub(crate) zone_id: &'static str,
    #[serde(rename = "passwordLastModified")]
    pub(crate) password_last_modified: String,
    #[serde(rename = "lastLogonTime", skip_serializing_if = "Option::is_none")]
    pub(crate) last_logon_time: Option<i64>,
    #[serde(rename = "previousLogonTime", skip_serializing_if = "Option::is_none")]
    pub(crate) previous_logon_time: Option<i64>,
    pub(crate) schemas: [&'static str; 1],
}

/// Body of `POST /Users` and `PUT /Users/:id` (unknown fields are ignored, as UAA does).
#[derive(Debug, Deserialize, Default)]
pub(crate) struct ScimUserRequest {
    #[serde(rename = "userName", default)]
    pub(crate) user_name: Option<String>,
    #[serde(default)]
    pub(crate) password: Option<String>,
    #[serde(default)]
    pub(crate) origin: Option<String>,
    #[serde(default)]
    pub(crate) name: Option<ScimName>,
    #[serde(default)]
    pub(crate) emails: Option<Vec<ScimEmail>>,
    #[serde(default)]
    pub(crate) active: Option<bool>,
    #[serde(default)]
    pub(crate) verified: Option<bool>,
}

/// Body of `PUT /Users/:id/password`.
#[derive(Debug, Deserialize)]
pub(crate) struct PasswordChangeRequest {
    #[serde(rename = "oldPassword", default)]
    pub(crate) old_password: Option<String>,
    #[serde(default)]
    pub(crate) password: Option<String>,
}

/// A group member as UAA renders it.
#[derive(Debug, Serialize, Deserialize)]
pub(crate) struct ScimMember {
    #[serde(default = "default_origin")]
    pub(crate) origin: String,
    #[serde(rename = "type", default = "default_member_type")]
    pub(crate) kind: String,
    pub(crate) value: String,
}

fn default_origin() -> String {
    "uaa".to_owned()
}

fn default_member_type() -> String {
    "USER".to_owned()
}

/// A group as `GET /Groups/:id` renders it.
#[derive(Debug, Serialize)]
pub(crate) struct ScimGroup {
    pub(crate) id: String,
    pub(crate) meta: ScimMeta,
    #[serde(rename = "displayName")]
    pub(crate) display_name: String,
    pub(crate) description: String,
    pub(crate) members: Vec<ScimMember>,
    #[serde(rename = "zoneId")]
    pub(crate) zone_id: &'static str,
    pub(crate) schemas: [&'static str; 1],
}

/// Body of `POST /Groups`.
#[derive(Debug, Deserialize)]
pub(crate) struct ScimGroupRequest {
    #[serde(rename = "displayName", default)]
    pub(crate) display_name: Option<String>,
    #[serde(default)]
    pub(crate) description: Option<String>,
    #[serde(default)]
    pub(crate) members: Vec<ScimMember>,
}

/// A SCIM list answer.
#[derive(Debug, Serialize)]
pub(crate) struct ScimList<T> {
    pub(crate) resources: Vec<T>,
    #[serde(rename = "startIndex")]
    pub(crate) start_index: usize,
    #[serde(rename = "itemsPerPage")]
    pub(crate) items_per_page: usize,
    #[serde(rename = "totalResults")]
    pub(crate) total_results: usize,
    pub(crate) schemas: [&'static str; 1],
}

/// A client as `GET /oauth/clients/:client_id` renders it (Spring's `BaseClientDetails` JSON plus
/// UAA's `lastModified`); the secret is never part of it.
#[derive(Debug, Serialize)]
pub(crate) struct ClientDetails {
    pub(crate) client_id: String,
    pub(crate) scope: Vec<String>,
    pub(crate) resource_ids: Vec<String>,
    pub(crate) authorized_grant_types: Vec<String>,
    pub(crate) autoapprove: Vec<String>,
    pub(crate) authorities: Vec<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) access_token_validity: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) refresh_token_validity: Option<i64>,
    #[serde(rename = "lastModified")]
    pub(crate) last_modified: i64,
    pub(crate) required_user_groups: Vec<String>,
}

/// Renders UTC epoch milliseconds as UAA does (RFC 3339, milliseconds, `Z`).
pub(crate) fn timestamp(millis: i64) -> String {
    chrono::DateTime::<chrono::Utc>::from_timestamp_millis(millis)
        .unwrap_or_default()
        .to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
}
