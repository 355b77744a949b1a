//! Store functions for `oauth_clients`.

use diesel::prelude::*;

use super::schema::oauth_clients;
use super::DbConnection;

/// One row of `oauth_clients`; list columns are space-separated.
#[derive(Debug, Clone, PartialEq, Eq, Queryable, Insertable, AsChangeset)]
#[diesel(table_name = oauth_clients, treat_none_as_null = true)]
pub(crate) struct ClientRow {
    pub(crate) client_id: String,
    pub(crate) secret_hash: String,
    pub(crate) authorized_grant_types: String,
    pub(crate) scope: String,
    pub(crate) authorities: String,
    pub(crate) access_token_validity_secs: Option<i64>,
    pub(crate) refresh_token_validity_secs: Option<i64>,
    pub(crate) last_modified: i64,
}

pub(crate) fn load_all(conn: &mut DbConnection) -> QueryResult<Vec<ClientRow>> {
    oauth_clients::table
        .order(oauth_clients::client_id.asc())
        .load(conn)
}

pub(crate) fn find(conn: &mut DbConnection, client_id: &str) -> QueryResult<Option<ClientRow>> {
    oauth_clients::table.find(client_id).first(conn).optional()
}

/// Inserts or replaces a client.
pub(crate) fn upsert(conn: &mut DbConnection, row: &ClientRow) -> QueryResult<()> {
    if find(conn, &row.client_id)?.is_some() {
        diesel::update(oauth_clients::table.find(&row.client_id))
            .set(row.clone())
            .execute(conn)?;
    } else {
        diesel::insert_into(oauth_clients::table)
            .values(row.clone())
            .execute(conn)?;
    }
    Ok(())
}
