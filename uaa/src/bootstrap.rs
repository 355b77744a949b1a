//! Seed data applied on every start: platform groups, configured users (created when missing,
//! groups extended when present) and configured clients (upserted; the configuration is the
//! truth for clients, so clients missing from it are removed).

use crate::config::UaaConfig;
use crate::db::clients::{self as client_store, ClientRow};
use crate::db::groups as group_store;
use crate::db::users::{self as user_store, UserRow};
use crate::db::{now_millis, Database, DbConnection, StoreError};
use crate::error::{ApiError, UaaError};
use crate::scim::{hash_password, insert_user, DEFAULT_USER_GROUPS, PLATFORM_GROUPS};
use crate::state::to_i64;
use crate::tokens::ORIGIN_UAA;

/// Applies the seed data and returns the registered clients.
pub(crate) fn apply(database: &Database, config: &UaaConfig) -> Result<Vec<ClientRow>, UaaError> {
    let to_uaa = |error: ApiError| UaaError::Database(error.description);
    database
        .write(|conn| -> Result<(), ApiError> {
            let now = now_millis();
            for group in PLATFORM_GROUPS.iter().chain(DEFAULT_USER_GROUPS.iter()) {
                group_store::ensure(conn, group, now)?;
            }
            Ok(())
        })
        .map_err(to_uaa)?;

    for user in &config.users {
        let existing =
            database.read(|conn| user_store::find_by_name(conn, &user.username, ORIGIN_UAA))?;
        match existing {
            Some(existing) => {
                database
                    .write(|conn| add_groups(conn, &existing.id, &user.groups))
                    .map_err(to_uaa)?;
            }
            None => {
                let now = now_millis();
                let row = UserRow {
                    id: uuid::Uuid::new_v4().to_string(),
                    user_name: user.username.clone(),
                    user_name_key: user.username.to_lowercase(),
                    origin: ORIGIN_UAA.to_owned(),
                    email: user.email.clone().unwrap_or_else(|| user.username.clone()),
                    given_name: None,
                    family_name: None,
                    password_hash: hash_password(&user.password, config.password_hash_cost)
                        .map_err(to_uaa)?,
                    active: true,
                    verified: true,
                    version: 0,
                    created: now,
                    last_modified: now,
                    password_last_modified: now,
                    last_logon: None,
                    previous_logon: None,
                };
                database
                    .write(|conn| -> Result<(), ApiError> {
                        if insert_user(conn, &row, &user.groups)? {
                            tracing::info!(user_name = %row.user_name, "bootstrapped user");
                            Ok(())
                        } else {
                            // Created concurrently by another instance: just extend its groups.
                            match user_store::find_by_name(conn, &row.user_name, ORIGIN_UAA)? {
                                Some(existing) => add_groups(conn, &existing.id, &user.groups),
                                None => Ok(()),
                            }
                        }
                    })
                    .map_err(to_uaa)?;
            }
        }
    }

    let stored = database.read(client_store::load_all)?;
    for client in &config.clients {
        let previous = stored.iter().find(|row| row.client_id == client.client_id);
        // Keep the stored hash when it still matches, so that verified-secret caches stay valid.
        let secret_hash = match previous {
            Some(row) if bcrypt::verify(&client.secret, &row.secret_hash).unwrap_or(false) => {
                row.secret_hash.clone()
            }
            _ => bcrypt::hash(&client.secret, config.password_hash_cost)
                .map_err(|error| UaaError::Config(format!("cannot hash client secret: {error}")))?,
        };
        let mut row = ClientRow {
            client_id: client.client_id.clone(),
            secret_hash,
            authorized_grant_types: client.authorized_grant_types.join(" "),
            scope: client.scope.join(" "),
            authorities: client.authorities.join(" "),
            access_token_validity_secs: client.access_token_validity_secs.map(to_i64),
            refresh_token_validity_secs: client.refresh_token_validity_secs.map(to_i64),
            last_modified: now_millis(),
        };
        // `lastModified` (shown by `GET /oauth/clients/:id`) moves only when the client changed.
        if let Some(previous) = previous.filter(|previous| {
            ClientRow {
                last_modified: previous.last_modified,
                ..row.clone()
            } == **previous
        }) {
            row.last_modified = previous.last_modified;
        }
        database
            .write(|conn| -> Result<(), StoreError> { Ok(client_store::upsert(conn, &row)?) })?;
    }
    let configured: Vec<&str> = config
        .clients
        .iter()
        .map(|client| client.client_id.as_str())
        .collect();
    for row in stored
        .iter()
        .filter(|row| !configured.contains(&row.client_id.as_str()))
    {
        database.write(|conn| -> Result<(), StoreError> {
            diesel::RunQueryDsl::execute(
                diesel::delete(diesel::QueryDsl::find(
                    crate::db::schema::oauth_clients::table,
                    &row.client_id,
                )),
                conn,
            )?;
            Ok(())
        })?;
        tracing::info!(client_id = %row.client_id, "removed a client that is no longer configured");
    }
    Ok(database.read(client_store::load_all)?)
}

fn add_groups(conn: &mut DbConnection, user_id: &str, groups: &[String]) -> Result<(), ApiError> {
    let now = now_millis();
    for group in groups {
        let group_id = group_store::ensure(conn, group, now)?;
        group_store::add_member(conn, &group_id, user_id, ORIGIN_UAA, now)?;
    }
    Ok(())
}
