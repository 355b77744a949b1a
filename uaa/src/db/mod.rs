//! Persistence: one connection type over SQLite and PostgreSQL (`DbConnection`), an r2d2 pool,
//! embedded per-backend migrations, and the store functions of each table family.
//!
//! All functions here are synchronous; HTTP handlers reach them through [`Database::blocking`],
//! which runs them on actix's blocking thread pool.

pub(crate) mod clients;
pub(crate) mod groups;
pub(crate) mod keys;
pub(crate) mod refresh;
pub(crate) mod revoked;
pub(crate) mod schema;
pub(crate) mod users;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use diesel::connection::SimpleConnection;
use diesel::pg::PgConnection;
use diesel::r2d2::{ManageConnection, Pool, PooledConnection, R2D2Connection};
use diesel::sqlite::SqliteConnection;
use diesel::Connection;
use diesel_migrations::{embed_migrations, EmbeddedMigrations, MigrationHarness};

use crate::config::{parse_database_url, DatabaseTarget};
use crate::error::{ApiError, UaaError};

const SQLITE_MIGRATIONS: EmbeddedMigrations = embed_migrations!("migrations/sqlite");
const POSTGRES_MIGRATIONS: EmbeddedMigrations = embed_migrations!("migrations/postgres");

/// A connection to either supported backend.
#[derive(diesel::MultiConnection)]
pub(crate) enum DbConnection {
    Sqlite(SqliteConnection),
    Pg(PgConnection),
}

/// Failure of a store operation.
#[derive(Debug, thiserror::Error)]
pub(crate) enum StoreError {
    #[error("query failed: {0}")]
    Query(#[from] diesel::result::Error),
    #[error("no database connection available: {0}")]
    Pool(#[from] diesel::r2d2::PoolError),
    #[error("migration failed: {0}")]
    Migration(String),
}

/// Opens connections for the pool, choosing the backend from the URL (never by trial).
#[derive(Debug)]
struct ConnectionOpener {
    target: DatabaseTarget,
}

impl ManageConnection for ConnectionOpener {
    type Connection = DbConnection;
    type Error = diesel::r2d2::Error;

    fn connect(&self) -> Result<DbConnection, Self::Error> {
        match &self.target {
            DatabaseTarget::Sqlite(path) => {
                let mut connection = SqliteConnection::establish(path)
                    .map_err(diesel::r2d2::Error::ConnectionError)?;
                // (WAL, which lets readers proceed during a write, was set on the file in `open`.)
                // The busy timeout makes writers queue instead of failing; SQLite leaves foreign
                // keys off unless asked.
                connection
                    .batch_execute(
                        "PRAGMA busy_timeout = 10000; PRAGMA synchronous = NORMAL; \
                         PRAGMA foreign_keys = ON;",
                    )
                    .map_err(diesel::r2d2::Error::QueryError)?;
                Ok(DbConnection::Sqlite(connection))
            }
            DatabaseTarget::Postgres(url) => PgConnection::establish(url)
                .map(DbConnection::Pg)
                .map_err(diesel::r2d2::Error::ConnectionError),
        }
    }

    fn is_valid(&self, connection: &mut DbConnection) -> Result<(), Self::Error> {
        connection.ping().map_err(diesel::r2d2::Error::QueryError)
    }

    fn has_broken(&self, connection: &mut DbConnection) -> bool {
        std::thread::panicking() || connection.is_broken()
    }
}

/// The UAA database: a connection pool plus, for SQLite, a process-wide writer lock so that
/// our own write transactions queue up instead of failing on lock upgrades.
#[derive(Clone)]
pub(crate) struct Database {
    pool: Pool<ConnectionOpener>,
    sqlite_write_lock: Option<Arc<Mutex<()>>>,
}

impl Database {
    /// Opens the pool and applies pending migrations.
    pub(crate) fn open(database_url: &str) -> Result<Database, UaaError> {
        let target = parse_database_url(database_url)?;
        let is_sqlite = matches!(target, DatabaseTarget::Sqlite(_));
        if let DatabaseTarget::Sqlite(path) = &target {
            if let Some(parent) = std::path::Path::new(path).parent() {
                if !parent.as_os_str().is_empty() {
                    std::fs::create_dir_all(parent).map_err(|error| {
                        UaaError::Database(format!("cannot create {}: {error}", parent.display()))
                    })?;
                }
            }
            // WAL is a property of the database file: set it once, on one connection, before the
            // pool opens several at once (switching needs the file to itself; concurrent
            // switches failed with "database is locked" at first start).
            let mut connection = SqliteConnection::establish(path)
                .map_err(|error| UaaError::Database(format!("cannot open {path}: {error}")))?;
            connection
                .batch_execute("PRAGMA busy_timeout = 10000; PRAGMA journal_mode = WAL;")
                .map_err(|error| UaaError::Database(format!("cannot open {path}: {error}")))?;
        }
        let pool = Pool::builder()
            .max_size(if is_sqlite { 8 } else { 10 })
            .min_idle(Some(1))
            .connection_timeout(Duration::from_secs(10))
            .build(ConnectionOpener { target })
            .map_err(|error| {
                UaaError::Database(format!("cannot open {}: {error}", redact(database_url)))
            })?;
        let database = Database {
            pool,
            sqlite_write_lock: is_sqlite.then(|| Arc::new(Mutex::new(()))),
        };
        database.migrate()?;
        Ok(database)
    }

    fn migrate(&self) -> Result<(), UaaError> {
        let mut connection = self.connection()?;
        let _guard = self.lock_writes();
        let result = match &mut *connection {
            DbConnection::Sqlite(connection) => connection
                .run_pending_migrations(SQLITE_MIGRATIONS)
                .map(|_| ()),
            DbConnection::Pg(connection) => {
                // Several UAA processes may start together against one PostgreSQL database.
                connection
                    .batch_execute("SELECT pg_advisory_lock(727274)")
                    .map_err(|error| error.into())
                    .and_then(|()| {
                        connection
                            .run_pending_migrations(POSTGRES_MIGRATIONS)
                            .map(|_| ())
                    })
                    .and_then(|()| {
                        connection
                            .batch_execute("SELECT pg_advisory_unlock(727274)")
                            .map_err(|error| error.into())
                    })
            }
        };
        result.map_err(|error| {
            UaaError::Database(StoreError::Migration(error.to_string()).to_string())
        })
    }

    fn connection(&self) -> Result<PooledConnection<ConnectionOpener>, StoreError> {
        Ok(self.pool.get()?)
    }

    fn lock_writes(&self) -> Option<std::sync::MutexGuard<'_, ()>> {
        self.sqlite_write_lock.as_ref().map(|lock| {
            lock.lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
        })
    }

    /// Runs read-only queries on one pooled connection.
    pub(crate) fn read<T>(
        &self,
        work: impl FnOnce(&mut DbConnection) -> Result<T, diesel::result::Error>,
    ) -> Result<T, StoreError> {
        let mut connection = self.connection()?;
        Ok(work(&mut connection)?)
    }

    /// Runs read-only work that reports API errors on one pooled connection.
    pub(crate) fn query<T>(
        &self,
        work: impl FnOnce(&mut DbConnection) -> Result<T, ApiError>,
    ) -> Result<T, ApiError> {
        let mut connection = self.connection()?;
        work(&mut connection)
    }

    /// Runs `work` in one transaction (serialised against our other writers on SQLite).
    pub(crate) fn write<T, E>(
        &self,
        work: impl FnOnce(&mut DbConnection) -> Result<T, E>,
    ) -> Result<T, E>
    where
        E: From<diesel::result::Error> + From<StoreError>,
    {
        let mut connection = self.connection()?;
        let _guard = self.lock_writes();
        (*connection).transaction(work)
    }

    /// Runs blocking store work on actix's blocking pool.
    pub(crate) async fn blocking<T, F>(&self, work: F) -> Result<T, ApiError>
    where
        F: FnOnce(&Database) -> Result<T, ApiError> + Send + 'static,
        T: Send + 'static,
    {
        let database = self.clone();
        actix_web::web::block(move || work(&database))
            .await
            .map_err(ApiError::internal)?
    }
}

/// The current time in UTC milliseconds since the Unix epoch, as stored in every table.
pub(crate) fn now_millis() -> i64 {
    chrono::Utc::now().timestamp_millis()
}

/// Hides the password of a database URL for messages.
pub(crate) fn redact(database_url: &str) -> String {
    match url::Url::parse(database_url) {
        Ok(mut url) if url.password().is_some() => {
            let _ = url.set_password(Some("***"));
            url.to_string()
        }
        _ => database_url.to_owned(),
    }
}

/// Splits a space-separated list column.
pub(crate) fn split_list(value: &str) -> Vec<String> {
    value.split_whitespace().map(str::to_owned).collect()
}
