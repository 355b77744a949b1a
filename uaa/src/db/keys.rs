//! Store functions for `signing_keys`: RSA private keys (PKCS#8 PEM), one of them active.

use diesel::prelude::*;

use super::schema::signing_keys;
use super::DbConnection;

/// One row of `signing_keys`.
#[derive(Debug, Clone, Queryable, Insertable)]
#[diesel(table_name = signing_keys)]
pub(crate) struct KeyRow {
    pub(crate) kid: String,
    pub(crate) private_key_pem: String,
    pub(crate) active: bool,
    pub(crate) created: i64,
}

/// All keys, the active one first, then newest first.
pub(crate) fn load_all(conn: &mut DbConnection) -> QueryResult<Vec<KeyRow>> {
    signing_keys::table
        .order((
            signing_keys::active.desc(),
            signing_keys::created.desc(),
            signing_keys::kid.asc(),
        ))
        .load(conn)
}

/// Stores `row` as the only active key.
pub(crate) fn insert_active(conn: &mut DbConnection, row: &KeyRow) -> QueryResult<()> {
    diesel::update(signing_keys::table)
        .set(signing_keys::active.eq(false))
        .execute(conn)?;
    diesel::insert_into(signing_keys::table)
        .values(row.clone())
        .execute(conn)?;
    Ok(())
}
