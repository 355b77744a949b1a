//! Store functions for `refresh_tokens`: opaque tokens stored by SHA-256 hash, single use.

use diesel::prelude::*;

use super::schema::refresh_tokens;
use super::DbConnection;

/// One row of `refresh_tokens`.
#[derive(Debug, Clone, Queryable, Insertable)]
#[diesel(table_name = refresh_tokens)]
pub(crate) struct RefreshRow {
    pub(crate) token_hash: String,
    /// `jti` of the access token issued together with this refresh token.
    pub(crate) access_jti: String,
    pub(crate) user_id: String,
    pub(crate) client_id: String,
    /// Space-separated scopes granted at login.
    pub(crate) scope: String,
    pub(crate) auth_time: i64,
    pub(crate) created: i64,
    pub(crate) expires_at: i64,
}

pub(crate) fn insert(conn: &mut DbConnection, row: &RefreshRow) -> QueryResult<()> {
    diesel::insert_into(refresh_tokens::table)
        .values(row.clone())
        .execute(conn)?;
    Ok(())
}

/// Removes and returns the token with this hash. Only one caller can win a given token, so
/// a refresh token is used at most once even under concurrent requests.
pub(crate) fn take(conn: &mut DbConnection, token_hash: &str) -> QueryResult<Option<RefreshRow>> {
    let row: Option<RefreshRow> = refresh_tokens::table
        .find(token_hash)
        .first(conn)
        .optional()?;
    if row.is_none() {
        return Ok(None);
    }
    let deleted = diesel::delete(refresh_tokens::table.find(token_hash)).execute(conn)?;
    Ok(if deleted == 1 { row } else { None })
}

/// Revokes the refresh tokens issued alongside the access token `jti`.
pub(crate) fn revoke_by_access_jti(conn: &mut DbConnection, jti: &str) -> QueryResult<usize> {
    diesel::delete(refresh_tokens::table.filter(refresh_tokens::access_jti.eq(jti))).execute(conn)
}

/// Removes expired tokens.
pub(crate) fn purge_expired(conn: &mut DbConnection, now: i64) -> QueryResult<usize> {
    diesel::delete(refresh_tokens::table.filter(refresh_tokens::expires_at.lt(now))).execute(conn)
}
