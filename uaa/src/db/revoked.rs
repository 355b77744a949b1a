//! Store functions for `revoked_tokens`: ids (`jti`) of access tokens revoked before they expire.

use diesel::prelude::*;

use super::schema::revoked_tokens;
use super::DbConnection;

/// Records `jti` as revoked until `expires_at` (epoch milliseconds); keeps the later expiry when
/// it is already recorded.
pub(crate) fn insert(conn: &mut DbConnection, jti: &str, expires_at: i64) -> QueryResult<()> {
    let existing: Option<i64> = revoked_tokens::table
        .find(jti)
        .select(revoked_tokens::expires_at)
        .first(conn)
        .optional()?;
    match existing {
        Some(current) if current >= expires_at => {}
        Some(_) => {
            diesel::update(revoked_tokens::table.find(jti))
                .set(revoked_tokens::expires_at.eq(expires_at))
                .execute(conn)?;
        }
        None => {
            diesel::insert_into(revoked_tokens::table)
                .values((
                    revoked_tokens::jti.eq(jti),
                    revoked_tokens::expires_at.eq(expires_at),
                ))
                .execute(conn)?;
        }
    }
    Ok(())
}

pub(crate) fn is_revoked(conn: &mut DbConnection, jti: &str) -> QueryResult<bool> {
    Ok(revoked_tokens::table
        .find(jti)
        .select(revoked_tokens::jti)
        .first::<String>(conn)
        .optional()?
        .is_some())
}

/// Forgets revocations of tokens that have expired anyway.
pub(crate) fn purge_expired(conn: &mut DbConnection, now: i64) -> QueryResult<usize> {
    diesel::delete(revoked_tokens::table.filter(revoked_tokens::expires_at.lt(now))).execute(conn)
}
