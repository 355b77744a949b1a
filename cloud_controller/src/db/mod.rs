//! Persistence plumbing: one connection type over SQLite and PostgreSQL
//! (`#[derive(diesel::MultiConnection)]`), an r2d2 pool, embedded migrations per backend, and
//! [`Db::run`] which moves blocking diesel work off the async workers.

pub mod models;
pub mod schema;

use diesel::connection::{AnsiTransactionManager, SimpleConnection, TransactionManager};
use diesel::pg::PgConnection;
use diesel::r2d2::{self, ManageConnection, Pool};
use diesel::sqlite::SqliteConnection;
use diesel::Connection;
use diesel_migrations::{embed_migrations, EmbeddedMigrations, MigrationHarness};

use crate::config::DatabaseTarget;
use crate::error::ApiError;
use crate::CcError;

const SQLITE_MIGRATIONS: EmbeddedMigrations = embed_migrations!("migrations/sqlite");
const POSTGRES_MIGRATIONS: EmbeddedMigrations = embed_migrations!("migrations/postgres");

/// A database connection to either backend.
#[derive(diesel::MultiConnection)]
pub enum DbConn {
    /// PostgreSQL (production).
    Pg(PgConnection),
    /// SQLite (embedded default).
    Sqlite(SqliteConnection),
}

impl DbConn {
    /// Runs `work` in a transaction that will write. On SQLite it begins `IMMEDIATE`, taking the
    /// write lock up front: a deferred transaction that reads and then writes fails at once with
    /// "database is locked" when another connection wrote after its read (the busy timeout does
    /// not apply to that upgrade), which concurrent requests such as two `cf create-org` hit.
    /// Inside an open transaction, or on PostgreSQL, this is an ordinary (nested) transaction.
    pub(crate) fn write_transaction<T>(
        &mut self,
        work: impl FnOnce(&mut DbConn) -> Result<T, ApiError>,
    ) -> Result<T, ApiError> {
        let DbConn::Sqlite(sqlite) = self else {
            return self.transaction(work);
        };
        if AnsiTransactionManager::transaction_manager_status_mut(sqlite)
            .transaction_depth()?
            .is_some()
        {
            return self.transaction(work);
        }
        AnsiTransactionManager::begin_transaction_sql(sqlite, "BEGIN IMMEDIATE")?;
        let result = work(self);
        let DbConn::Sqlite(sqlite) = self else {
            unreachable!("the connection's backend does not change");
        };
        match result {
            Ok(value) => {
                <AnsiTransactionManager as TransactionManager<SqliteConnection>>::commit_transaction(
                    sqlite,
                )?;
                Ok(value)
            }
            Err(error) => {
                if let Err(rollback_error) = <AnsiTransactionManager as TransactionManager<
                    SqliteConnection,
                >>::rollback_transaction(sqlite)
                {
                    tracing::warn!(error = %rollback_error, "rollback failed");
                }
                Err(error)
            }
        }
    }
}

/// Opens connections of the configured backend; SQLite connections get a busy timeout and foreign
/// keys (WAL is set on the database file once, before the pool opens connections).
#[derive(Debug, Clone)]
pub(crate) struct ConnectionOpener {
    target: DatabaseTarget,
}

impl ManageConnection for ConnectionOpener {
    type Connection = DbConn;
    type Error = diesel::r2d2::Error;

    fn connect(&self) -> Result<DbConn, Self::Error> {
        match &self.target {
            DatabaseTarget::Sqlite(path) => {
                let mut connection = SqliteConnection::establish(path)
                    .map_err(diesel::r2d2::Error::ConnectionError)?;
                connection
                    .batch_execute(
                        "PRAGMA busy_timeout = 10000; PRAGMA synchronous = NORMAL; \
                         PRAGMA foreign_keys = ON;",
                    )
                    .map_err(diesel::r2d2::Error::QueryError)?;
                Ok(DbConn::Sqlite(connection))
            }
            DatabaseTarget::Postgres(url) => PgConnection::establish(url)
                .map(DbConn::Pg)
                .map_err(diesel::r2d2::Error::ConnectionError),
        }
    }

    fn is_valid(&self, connection: &mut DbConn) -> Result<(), Self::Error> {
        connection
            .batch_execute("SELECT 1")
            .map_err(diesel::r2d2::Error::QueryError)
    }

    fn has_broken(&self, _connection: &mut DbConn) -> bool {
        false
    }
}

/// The pool plus the blocking-work helper.
#[derive(Clone)]
pub struct Db {
    pool: Pool<ConnectionOpener>,
}

impl Db {
    /// Opens the pool and applies pending migrations.
    pub(crate) fn open(target: DatabaseTarget) -> Result<Db, CcError> {
        let max_size = match target {
            DatabaseTarget::Sqlite(_) => 8,
            DatabaseTarget::Postgres(_) => 10,
        };
        if let DatabaseTarget::Sqlite(path) = &target {
            if let Some(parent) = std::path::Path::new(path).parent() {
                if !parent.as_os_str().is_empty() {
                    std::fs::create_dir_all(parent).map_err(|error| {
                        CcError::Database(format!("creating {}: {error}", parent.display()))
                    })?;
                }
            }
            // WAL is a property of the database file: set it once, on one connection, before the
            // pool opens several at once (switching needs the file to itself; concurrent
            // switches failed with "database is locked" at first start).
            let mut connection = SqliteConnection::establish(path)
                .map_err(|error| CcError::Database(format!("opening {path}: {error}")))?;
            connection
                .batch_execute("PRAGMA busy_timeout = 10000; PRAGMA journal_mode = WAL;")
                .map_err(|error| CcError::Database(format!("opening {path}: {error}")))?;
        }
        let pool = r2d2::Pool::builder()
            .max_size(max_size)
            .connection_timeout(std::time::Duration::from_secs(15))
            .build(ConnectionOpener { target })
            .map_err(|error| CcError::Database(error.to_string()))?;
        let mut connection = pool
            .get()
            .map_err(|error| CcError::Database(error.to_string()))?;
        let result = match &mut *connection {
            DbConn::Sqlite(connection) => connection
                .run_pending_migrations(SQLITE_MIGRATIONS)
                .map(|_| ()),
            DbConn::Pg(connection) => connection
                .run_pending_migrations(POSTGRES_MIGRATIONS)
                .map(|_| ()),
        };
        result.map_err(|error| CcError::Database(format!("migrations: {error}")))?;
        Ok(Db { pool })
    }

    /// Runs `work` with a pooled connection on the blocking thread pool.
    pub async fn run<T, F>(&self, work: F) -> Result<T, ApiError>
    where
        F: FnOnce(&mut DbConn) -> Result<T, ApiError> + Send + 'static,
        T: Send + 'static,
    {
        let pool = self.pool.clone();
        tokio::task::spawn_blocking(move || {
            let mut connection = pool.get()?;
            work(&mut connection)
        })
        .await
        .map_err(|error| ApiError::internal(format!("blocking task failed: {error}")))?
    }

    /// Runs `work` synchronously (bootstrap, before serving).
    pub(crate) fn run_now<T>(
        &self,
        work: impl FnOnce(&mut DbConn) -> Result<T, ApiError>,
    ) -> Result<T, ApiError> {
        let mut connection = self.pool.get()?;
        work(&mut connection)
    }
}
