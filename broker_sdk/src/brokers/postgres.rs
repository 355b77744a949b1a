//! A PostgreSQL broker (feature `postgres-broker`): each instance is a database owned by a
//! per-instance NOLOGIN owner role; each binding is a LOGIN role that is a member of the owner role
//! and switches to it at login, so everything bindings create belongs to the instance and survives
//! unbinding. Plans `small` and `large` differ only in the database's connection limit.
//!
//! Broker state lives in PostgreSQL itself: the database comment records the offering and plan,
//! role membership records the bindings, and binding passwords are an HMAC of the ids under the
//! broker's secret — so re-sent binds and fetches return the same credentials without storing them.
//!
//! Identifiers are derived from instance and binding ids, which must match `[A-Za-z0-9_-]{1,50}`
//! (anything else is refused with 400); they are also always double-quoted, and the one string
//! literal (the comment) is escaped, so no id reaches SQL unquoted. Every diesel call runs in
//! `spawn_blocking` with its own connection.

use diesel::connection::SimpleConnection;
use diesel::prelude::*;
use diesel::sql_types::Text;
use serde_json::{json, Map, Value};
use sha2::{Digest, Sha256};

use crate::api::{Binding, BindingDetails, InstanceDetails, InstanceResponse};
use crate::broker::{
    BindOutcome, BindRequest, DeleteOutcome, DeprovisionRequest, GetBindingRequest,
    GetInstanceRequest, ProvisionOutcome, ProvisionRequest, RequestMeta, ServiceBroker,
    UnbindRequest, UpdateOutcome, UpdateRequest,
};
use crate::catalog::{Catalog, ServiceOffering, ServicePlan};
use crate::error::{
    BindError, CatalogError, DeprovisionError, GetBindingError, GetInstanceError, ProvisionError,
    UnbindError, UpdateError,
};

pub const SERVICE_ID: &str = "8d6f0c2e-3b4a-4f59-a1c7-6e2b9d0f4c01";
pub const SERVICE_NAME: &str = "postgresql";
pub const SMALL_PLAN_ID: &str = "8d6f0c2e-3b4a-4f59-a1c7-6e2b9d0f4c11";
pub const LARGE_PLAN_ID: &str = "8d6f0c2e-3b4a-4f59-a1c7-6e2b9d0f4c12";
const SMALL_CONNECTION_LIMIT: u32 = 10;
const LARGE_CONNECTION_LIMIT: u32 = 100;
const MAX_ID_CHARS: usize = 50;

/// Configuration of the PostgreSQL broker.
#[derive(Clone)]
pub struct PostgresBrokerConfig {
    /// URL of a role that may create databases and roles, e.g.
    /// `postgres://kiln:kiln@127.0.0.1:5432/postgres`.
    pub admin_url: String,
    /// Host put in credentials (default: the admin URL's host).
    pub public_host: Option<String>,
    /// Port put in credentials (default: the admin URL's port, else 5432).
    pub public_port: Option<u16>,
    /// Key binding passwords are derived from. Keep it stable across restarts so that re-sent
    /// binds and binding fetches return the same credentials; random when absent.
    pub credential_secret: Option<String>,
}

impl PostgresBrokerConfig {
    pub fn new(admin_url: impl Into<String>) -> Self {
        Self {
            admin_url: admin_url.into(),
            public_host: None,
            public_port: None,
            credential_secret: None,
        }
    }
}

impl std::fmt::Debug for PostgresBrokerConfig {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter
            .debug_struct("PostgresBrokerConfig")
            .field("admin_url", &"<redacted>")
            .field("public_host", &self.public_host)
            .field("public_port", &self.public_port)
            .finish_non_exhaustive()
    }
}

/// Why the broker could not be configured.
#[derive(Debug, thiserror::Error)]
pub enum PostgresBrokerError {
    #[error("admin_url is not a postgres:// URL with a host: {0}")]
    InvalidAdminUrl(String),
}

/// The PostgreSQL broker. Cheap to share with an `Arc`.
pub struct PostgresBroker {
    admin_url: url::Url,
    public_host: String,
    public_port: u16,
    secret: Vec<u8>,
}

impl std::fmt::Debug for PostgresBroker {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter
            .debug_struct("PostgresBroker")
            .field("public_host", &self.public_host)
            .field("public_port", &self.public_port)
            .finish_non_exhaustive()
    }
}

/// Names derived from an instance id.
#[derive(Debug, Clone)]
struct InstanceNames {
    database: String,
    owner: String,
}

fn check_id(kind: &str, id: &str) -> Result<(), String> {
    let valid = !id.is_empty()
        && id.chars().count() <= MAX_ID_CHARS
        && id
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_');
    if valid {
        Ok(())
    } else {
        Err(format!(
            "postgresql: {kind} id must be 1 to {MAX_ID_CHARS} letters, digits, '-' or '_'."
        ))
    }
}

fn instance_names(instance_id: &str) -> Result<InstanceNames, String> {
    check_id("instance", instance_id)?;
    Ok(InstanceNames {
        database: format!("cf_{instance_id}"),
        owner: format!("cf_{instance_id}_owner"),
    })
}

fn binding_role(binding_id: &str) -> Result<String, String> {
    check_id("binding", binding_id)?;
    Ok(format!("cf_b_{binding_id}"))
}

/// `"name"` with embedded quotes doubled — a PostgreSQL quoted identifier.
fn quote_identifier(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

/// `'text'` with embedded quotes doubled — a standard-conforming string literal.
fn quote_literal(text: &str) -> String {
    format!("'{}'", text.replace('\'', "''"))
}

fn hmac_sha256(key: &[u8], message: &[u8]) -> [u8; 32] {
    let mut block = [0u8; 64];
    if key.len() > block.len() {
        block[..32].copy_from_slice(&Sha256::digest(key));
    } else {
        block[..key.len()].copy_from_slice(key);
    }
    let mut inner = Sha256::new();
    inner.update(block.map(|byte| byte ^ 0x36));
    inner.update(message);
    let inner = inner.finalize();
    let mut outer = Sha256::new();
    outer.update(block.map(|byte| byte ^ 0x5c));
    outer.update(inner);
    outer.finalize().into()
}

fn connection_limit(plan_id: &str) -> u32 {
    if plan_id == LARGE_PLAN_ID {
        LARGE_CONNECTION_LIMIT
    } else {
        SMALL_CONNECTION_LIMIT
    }
}

#[derive(QueryableByName)]
struct NameRow {
    #[diesel(sql_type = Text)]
    name: String,
}

#[derive(QueryableByName)]
struct CommentRow {
    #[diesel(sql_type = diesel::sql_types::Nullable<Text>)]
    comment: Option<String>,
}

/// What the database comment records about an instance.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Recorded {
    service_id: String,
    plan_id: String,
}

fn database_record(connection: &mut PgConnection, database: &str) -> QueryResult<Option<Recorded>> {
    let rows: Vec<CommentRow> = diesel::sql_query(
        "SELECT pg_catalog.shobj_description(oid, 'pg_database') AS comment FROM pg_catalog.pg_database WHERE datname = $1",
    )
    .bind::<Text, _>(database)
    .load(connection)?;
    Ok(rows.into_iter().next().map(|row| {
        let recorded: Map<String, Value> = row
            .comment
            .and_then(|comment| serde_json::from_str(&comment).ok())
            .unwrap_or_default();
        let field = |name: &str| {
            recorded
                .get(name)
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_owned()
        };
        Recorded {
            service_id: field("service_id"),
            plan_id: field("plan_id"),
        }
    }))
}

fn role_exists(connection: &mut PgConnection, role: &str) -> QueryResult<bool> {
    let rows: Vec<NameRow> = diesel::sql_query(
        "SELECT rolname::text AS name FROM pg_catalog.pg_roles WHERE rolname = $1",
    )
    .bind::<Text, _>(role)
    .load(connection)?;
    Ok(!rows.is_empty())
}

/// Whether `member` is a member of `group`.
fn is_member(connection: &mut PgConnection, member: &str, group: &str) -> QueryResult<bool> {
    let rows: Vec<NameRow> = diesel::sql_query(
        "SELECT m.rolname::text AS name FROM pg_catalog.pg_auth_members a \
         JOIN pg_catalog.pg_roles m ON m.oid = a.member JOIN pg_catalog.pg_roles g ON g.oid = a.roleid \
         WHERE m.rolname = $1 AND g.rolname = $2",
    )
    .bind::<Text, _>(member)
    .bind::<Text, _>(group)
    .load(connection)?;
    Ok(!rows.is_empty())
}

fn members_of(connection: &mut PgConnection, group: &str) -> QueryResult<Vec<String>> {
    let rows: Vec<NameRow> = diesel::sql_query(
        "SELECT m.rolname::text AS name FROM pg_catalog.pg_auth_members a \
         JOIN pg_catalog.pg_roles m ON m.oid = a.member JOIN pg_catalog.pg_roles g ON g.oid = a.roleid \
         WHERE g.rolname = $1",
    )
    .bind::<Text, _>(group)
    .load(connection)?;
    Ok(rows.into_iter().map(|row| row.name).collect())
}

fn terminate_role_sessions(connection: &mut PgConnection, role: &str) -> QueryResult<()> {
    diesel::sql_query(
        "SELECT pg_catalog.pg_terminate_backend(pid) FROM pg_catalog.pg_stat_activity WHERE usename = $1 AND pid <> pg_catalog.pg_backend_pid()",
    )
    .bind::<Text, _>(role)
    .execute(connection)?;
    Ok(())
}

/// Internal errors carry the database's message (never the admin URL).
fn internal(error: impl std::fmt::Display) -> String {
    format!("postgresql: {error}")
}

impl PostgresBroker {
    pub fn new(config: PostgresBrokerConfig) -> Result<Self, PostgresBrokerError> {
        let admin_url = url::Url::parse(&config.admin_url)
            .ok()
            .filter(|url| {
                matches!(url.scheme(), "postgres" | "postgresql") && url.host_str().is_some()
            })
            .ok_or_else(|| PostgresBrokerError::InvalidAdminUrl(redact(&config.admin_url)))?;
        let public_host = config
            .public_host
            .unwrap_or_else(|| admin_url.host_str().unwrap_or("localhost").to_owned());
        let public_port = config
            .public_port
            .unwrap_or_else(|| admin_url.port().unwrap_or(5432));
        let secret = config
            .credential_secret
            .map(String::into_bytes)
            .unwrap_or_else(|| {
                let mut secret = uuid::Uuid::new_v4().as_bytes().to_vec();
                secret.extend_from_slice(uuid::Uuid::new_v4().as_bytes());
                secret
            });
        Ok(Self {
            admin_url,
            public_host,
            public_port,
            secret,
        })
    }

    /// The catalog: offering `postgresql` with plans `small` and `large`.
    pub fn static_catalog() -> Catalog {
        let plan = |id: &str, name: &str, limit: u32| ServicePlan {
            id: id.to_owned(),
            name: name.to_owned(),
            description: format!("A PostgreSQL database with at most {limit} connections."),
            free: Some(true),
            ..ServicePlan::default()
        };
        Catalog {
            services: vec![ServiceOffering {
                id: SERVICE_ID.to_owned(),
                name: SERVICE_NAME.to_owned(),
                description: "A PostgreSQL database per instance, a role per binding.".to_owned(),
                bindable: true,
                tags: vec!["postgresql".to_owned(), "relational".to_owned()],
                instances_retrievable: Some(true),
                bindings_retrievable: Some(true),
                plan_updateable: Some(true),
                metadata: json!({"displayName": "PostgreSQL", "providerDisplayName": "Kiln"})
                    .as_object()
                    .cloned(),
                plans: vec![
                    plan(SMALL_PLAN_ID, "small", SMALL_CONNECTION_LIMIT),
                    plan(LARGE_PLAN_ID, "large", LARGE_CONNECTION_LIMIT),
                ],
                ..ServiceOffering::default()
            }],
            ..Catalog::default()
        }
    }

    fn password(&self, instance_id: &str, binding_id: &str) -> String {
        let digest = hmac_sha256(
            &self.secret,
            format!("{instance_id}\n{binding_id}").as_bytes(),
        );
        digest.iter().map(|byte| format!("{byte:02x}")).collect()
    }

    fn credentials(&self, names: &InstanceNames, role: &str, password: &str) -> Binding {
        let (host, port, database) = (&self.public_host, self.public_port, &names.database);
        let credentials = json!({
            "uri": format!("postgres://{role}:{password}@{host}:{port}/{database}"),
            "jdbcUrl": format!("jdbc:postgresql://{host}:{port}/{database}?user={role}&password={password}"),
            "username": role,
            "password": password,
            "database": database,
            "hostname": host,
            "port": port,
        });
        Binding {
            credentials: credentials.as_object().cloned(),
            ..Binding::default()
        }
    }

    fn url_for(&self, database: &str) -> String {
        let mut url = self.admin_url.clone();
        url.set_path(&format!("/{database}"));
        url.to_string()
    }

    /// Runs `work` on a fresh admin connection to `database` (default: the admin URL's own) in
    /// the blocking pool.
    async fn with_connection<T, E, F>(&self, database: Option<&str>, work: F) -> Result<T, E>
    where
        T: Send + 'static,
        E: Send + 'static + From<String>,
        F: FnOnce(&mut PgConnection) -> Result<T, E> + Send + 'static,
    {
        let url = match database {
            Some(database) => self.url_for(database),
            None => self.admin_url.to_string(),
        };
        tokio::task::spawn_blocking(move || {
            let mut connection =
                PgConnection::establish(&url).map_err(|error| E::from(internal(error)))?;
            work(&mut connection)
        })
        .await
        .map_err(|error| E::from(internal(error)))?
    }
}

/// Why `serve` could not start the PostgreSQL broker.
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    #[error(transparent)]
    Config(#[from] PostgresBrokerError),
    #[error("cannot serve the PostgreSQL broker: {0}")]
    Io(#[from] std::io::Error),
}

/// Serves a new PostgreSQL broker on `listener` (see `crate::serve`).
pub fn serve(
    config: PostgresBrokerConfig,
    credentials: crate::Credentials,
    listener: std::net::TcpListener,
) -> Result<(crate::BrokerServer, std::net::SocketAddr), ServeError> {
    let broker = std::sync::Arc::new(PostgresBroker::new(config)?);
    Ok(crate::serve(broker, credentials, listener)?)
}

fn redact(url: &str) -> String {
    match url::Url::parse(url) {
        Ok(mut parsed) => {
            let _ = parsed.set_password(None);
            parsed.to_string()
        }
        Err(_) => "<unparseable>".to_owned(),
    }
}

/// Lets the blocking closures use `?` on both database errors and messages.
#[derive(Debug)]
struct Message(String);

impl From<String> for Message {
    fn from(text: String) -> Self {
        Self(text)
    }
}

impl From<diesel::result::Error> for Message {
    fn from(error: diesel::result::Error) -> Self {
        Self(internal(error))
    }
}

/// Outcome of the blocking part of provision.
enum Provisioned {
    Created,
    Identical,
    Different,
}

/// Outcome of the blocking part of bind.
enum Bound {
    Created,
    Identical,
    Different,
    NoInstance,
}

impl ServiceBroker for PostgresBroker {
    async fn catalog(&self, _meta: RequestMeta) -> Result<Catalog, CatalogError> {
        Ok(Self::static_catalog())
    }

    async fn provision(
        &self,
        request: ProvisionRequest,
    ) -> Result<ProvisionOutcome, ProvisionError> {
        let names = instance_names(&request.instance_id).map_err(ProvisionError::BadRequest)?;
        let recorded = Recorded {
            service_id: request.service.id.clone(),
            plan_id: request.plan.id.clone(),
        };
        let limit = connection_limit(&request.plan.id);
        let provisioned = {
            let names = names.clone();
            self.with_connection(None, move |connection| -> Result<Provisioned, Message> {
                if let Some(existing) = database_record(connection, &names.database)? {
                    return Ok(if existing == recorded {
                        Provisioned::Identical
                    } else {
                        Provisioned::Different
                    });
                }
                let owner = quote_identifier(&names.owner);
                let database = quote_identifier(&names.database);
                if !role_exists(connection, &names.owner)? {
                    connection.batch_execute(&format!("CREATE ROLE {owner} NOLOGIN"))?;
                }
                let comment =
                    json!({"service_id": recorded.service_id, "plan_id": recorded.plan_id})
                        .to_string();
                let created = connection
                    .batch_execute(&format!(
                        "CREATE DATABASE {database} OWNER {owner} CONNECTION LIMIT {limit}"
                    ))
                    .and_then(|()| {
                        connection.batch_execute(&format!(
                            "COMMENT ON DATABASE {database} IS {}",
                            quote_literal(&comment)
                        ))
                    });
                if let Err(error) = created {
                    // Leave nothing behind for a failed provision (best effort).
                    let _ =
                        connection.batch_execute(&format!("DROP DATABASE IF EXISTS {database}"));
                    let _ = connection.batch_execute(&format!("DROP ROLE IF EXISTS {owner}"));
                    return Err(error.into());
                }
                Ok(Provisioned::Created)
            })
            .await
            .map_err(|Message(text)| ProvisionError::Internal(text))?
        };
        match provisioned {
            Provisioned::Created => Ok(ProvisionOutcome::Created(InstanceResponse::default())),
            Provisioned::Identical => {
                Ok(ProvisionOutcome::AlreadyExists(InstanceResponse::default()))
            }
            Provisioned::Different => Err(ProvisionError::Conflict(format!(
                "postgresql: instance {} already exists with a different plan.",
                request.instance_id
            ))),
        }
    }

    async fn update(&self, request: UpdateRequest) -> Result<UpdateOutcome, UpdateError> {
        let names = instance_names(&request.instance_id).map_err(UpdateError::BadRequest)?;
        let instance_id = request.instance_id.clone();
        let service_id = request.service.id.clone();
        let new_plan = request.plan.map(|plan| plan.id);
        self.with_connection(None, move |connection| -> Result<(), Message> {
            let Some(existing) = database_record(connection, &names.database)? else {
                return Err(Message(format!("not found:postgresql: instance {instance_id} does not exist.")));
            };
            let Some(plan_id) = new_plan.filter(|plan_id| *plan_id != existing.plan_id) else {
                return Ok(());
            };
            let database = quote_identifier(&names.database);
            let comment = json!({"service_id": service_id, "plan_id": plan_id}).to_string();
            connection.batch_execute(&format!(
                "ALTER DATABASE {database} CONNECTION LIMIT {}; COMMENT ON DATABASE {database} IS {}",
                connection_limit(&plan_id),
                quote_literal(&comment)
            ))?;
            Ok(())
        })
        .await
        .map_err(|Message(text)| match text.strip_prefix("not found:") {
            Some(description) => UpdateError::NotFound(description.to_owned()),
            None => UpdateError::Internal(text),
        })?;
        Ok(UpdateOutcome::Updated(InstanceResponse::default()))
    }

    async fn deprovision(
        &self,
        request: DeprovisionRequest,
    ) -> Result<DeleteOutcome, DeprovisionError> {
        let names = instance_names(&request.instance_id).map_err(DeprovisionError::BadRequest)?;
        let existed = self
            .with_connection(None, move |connection| -> Result<bool, Message> {
                let existed = database_record(connection, &names.database)?.is_some();
                if existed {
                    let database = quote_identifier(&names.database);
                    // Refuse new sessions, end the current ones, then drop; a session that slips in
                    // between is ended on the next attempt.
                    connection.batch_execute(&format!("ALTER DATABASE {database} ALLOW_CONNECTIONS false"))?;
                    let mut attempts = 0;
                    loop {
                        diesel::sql_query(
                            "SELECT pg_catalog.pg_terminate_backend(pid) FROM pg_catalog.pg_stat_activity \
                             WHERE datname = $1 AND pid <> pg_catalog.pg_backend_pid()",
                        )
                        .bind::<Text, _>(&names.database)
                        .execute(connection)?;
                        match connection.batch_execute(&format!("DROP DATABASE {database}")) {
                            Ok(()) => break,
                            Err(_) if attempts < 10 => {
                                attempts += 1;
                                std::thread::sleep(std::time::Duration::from_millis(100));
                            }
                            Err(error) => return Err(error.into()),
                        }
                    }
                }
                // Bindings the platform did not delete first, then the owner role.
                if role_exists(connection, &names.owner)? {
                    for member in members_of(connection, &names.owner)? {
                        terminate_role_sessions(connection, &member)?;
                        connection.batch_execute(&format!("DROP ROLE IF EXISTS {}", quote_identifier(&member)))?;
                    }
                    connection.batch_execute(&format!("DROP ROLE IF EXISTS {}", quote_identifier(&names.owner)))?;
                }
                Ok(existed)
            })
            .await
            .map_err(|Message(text)| DeprovisionError::Internal(text))?;
        if existed {
            Ok(DeleteOutcome::Deleted)
        } else {
            Err(DeprovisionError::Gone)
        }
    }

    async fn bind(&self, request: BindRequest) -> Result<BindOutcome, BindError> {
        let names = instance_names(&request.instance_id).map_err(BindError::BadRequest)?;
        let role = binding_role(&request.binding_id).map_err(BindError::BadRequest)?;
        let password = self.password(&request.instance_id, &request.binding_id);
        let bound = {
            let (names, role, password) = (names.clone(), role.clone(), password.clone());
            self.with_connection(None, move |connection| -> Result<Bound, Message> {
                if database_record(connection, &names.database)?.is_none() {
                    return Ok(Bound::NoInstance);
                }
                if role_exists(connection, &role)? {
                    return Ok(if is_member(connection, &role, &names.owner)? {
                        Bound::Identical
                    } else {
                        Bound::Different
                    });
                }
                let (quoted_role, owner, database) = (
                    quote_identifier(&role),
                    quote_identifier(&names.owner),
                    quote_identifier(&names.database),
                );
                connection.batch_execute(&format!(
                    "CREATE ROLE {quoted_role} LOGIN PASSWORD {} IN ROLE {owner}",
                    quote_literal(&password)
                ))?;
                let granted = connection.batch_execute(&format!(
                    "ALTER ROLE {quoted_role} SET role = {}; GRANT ALL PRIVILEGES ON DATABASE {database} TO {quoted_role}",
                    quote_literal(&names.owner)
                ));
                if let Err(error) = granted {
                    let _ = connection.batch_execute(&format!("DROP ROLE IF EXISTS {quoted_role}"));
                    return Err(error.into());
                }
                Ok(Bound::Created)
            })
            .await
            .map_err(|Message(text)| BindError::Internal(text))?
        };
        let binding = self.credentials(&names, &role, &password);
        match bound {
            Bound::Created => Ok(BindOutcome::Created(binding)),
            Bound::Identical => Ok(BindOutcome::AlreadyExists(binding)),
            Bound::Different => Err(BindError::Conflict(format!(
                "postgresql: binding {} already exists for another instance.",
                request.binding_id
            ))),
            Bound::NoInstance => Err(BindError::InstanceNotFound(format!(
                "postgresql: instance {} does not exist.",
                request.instance_id
            ))),
        }
    }

    async fn unbind(&self, request: UnbindRequest) -> Result<DeleteOutcome, UnbindError> {
        let names = instance_names(&request.instance_id).map_err(UnbindError::BadRequest)?;
        let role = binding_role(&request.binding_id).map_err(UnbindError::BadRequest)?;
        let (exists, database_exists) = {
            let (names, role) = (names.clone(), role.clone());
            self.with_connection(None, move |connection| -> Result<(bool, bool), Message> {
                let exists =
                    role_exists(connection, &role)? && is_member(connection, &role, &names.owner)?;
                Ok((
                    exists,
                    database_record(connection, &names.database)?.is_some(),
                ))
            })
            .await
            .map_err(|Message(text)| UnbindError::Internal(text))?
        };
        if !exists {
            return Err(UnbindError::Gone);
        }
        if database_exists {
            // Objects the role owns in the instance database go to the instance's owner; its
            // privileges there are revoked.
            let (owner, quoted_role) = (quote_identifier(&names.owner), quote_identifier(&role));
            self.with_connection(
                Some(&names.database),
                move |connection| -> Result<(), Message> {
                    connection.batch_execute(&format!(
                        "REASSIGN OWNED BY {quoted_role} TO {owner}; DROP OWNED BY {quoted_role}"
                    ))?;
                    Ok(())
                },
            )
            .await
            .map_err(|Message(text)| UnbindError::Internal(text))?;
        }
        self.with_connection(None, move |connection| -> Result<(), Message> {
            terminate_role_sessions(connection, &role)?;
            connection
                .batch_execute(&format!("DROP ROLE IF EXISTS {}", quote_identifier(&role)))?;
            Ok(())
        })
        .await
        .map_err(|Message(text)| UnbindError::Internal(text))?;
        Ok(DeleteOutcome::Deleted)
    }

    async fn get_instance(
        &self,
        request: GetInstanceRequest,
    ) -> Result<InstanceDetails, GetInstanceError> {
        let names = instance_names(&request.instance_id).map_err(GetInstanceError::BadRequest)?;
        let recorded = self
            .with_connection(
                None,
                move |connection| -> Result<Option<Recorded>, Message> {
                    Ok(database_record(connection, &names.database)?)
                },
            )
            .await
            .map_err(|Message(text)| GetInstanceError::Internal(text))?
            .ok_or(GetInstanceError::NotFound)?;
        Ok(InstanceDetails {
            service_id: recorded.service_id,
            plan_id: recorded.plan_id,
            ..InstanceDetails::default()
        })
    }

    async fn get_binding(
        &self,
        request: GetBindingRequest,
    ) -> Result<BindingDetails, GetBindingError> {
        let names = instance_names(&request.instance_id).map_err(GetBindingError::BadRequest)?;
        let role = binding_role(&request.binding_id).map_err(GetBindingError::BadRequest)?;
        let exists = {
            let (owner, role) = (names.owner.clone(), role.clone());
            self.with_connection(None, move |connection| -> Result<bool, Message> {
                Ok(role_exists(connection, &role)? && is_member(connection, &role, &owner)?)
            })
            .await
            .map_err(|Message(text)| GetBindingError::Internal(text))?
        };
        if !exists {
            return Err(GetBindingError::NotFound);
        }
        let password = self.password(&request.instance_id, &request.binding_id);
        Ok(BindingDetails {
            binding: self.credentials(&names, &role, &password),
            parameters: None,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn identifiers_are_validated_and_quoted() {
        assert!(instance_names("0c1d-AB_9").is_ok());
        for bad in ["", "a\"b", "a;b", "a b", "é", &"x".repeat(51)] {
            assert!(instance_names(bad).is_err(), "{bad:?}");
        }
        assert_eq!(quote_identifier("we\"ird"), "\"we\"\"ird\"");
        assert_eq!(quote_literal("it's"), "'it''s'");
    }

    #[test]
    fn hmac_matches_rfc_4231_test_case_2() {
        let digest = hmac_sha256(b"Jefe", b"what do ya want for nothing?");
        let hex: String = digest.iter().map(|b| format!("{b:02x}")).collect();
        assert_eq!(
            hex,
            "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
    }

    #[test]
    fn the_catalog_is_valid() {
        assert_eq!(
            crate::validate_catalog(&PostgresBroker::static_catalog()),
            Ok(())
        );
    }
}
