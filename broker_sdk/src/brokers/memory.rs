//! An in-memory broker for testing platforms against: offering `memdb` with plans `small` and
//! `large` (synchronous) and `async` (every operation answers 202 and finishes after a configurable
//! delay, observed through `last_operation`). Failure injection through parameters lets a
//! platform's error paths be exercised:
//!
//! - provision/update/bind `parameters`: `"fail": true` → 400, `"fail": <status>` → that status
//!   (4xx/5xx) with a description; `"fail_async": true` → the async operation ends `failed`;
//! - provision `parameters`: `"fail_deprovision": true` → deprovision answers 500 with
//!   `instance_usable: true`; `"require_app": true` → binds without an app get 422 `RequiresApp`;
//! - bind `parameters`: `"fail_unbind": true` → unbind answers 500.
//!
//! State lives in one mutex; asynchronous operations are settled lazily on the next request
//! after their deadline, so the broker owns no background task.

use std::collections::{HashMap, HashSet};
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant};

use serde_json::{json, Map, Value};

use crate::api::{
    Binding, BindingDetails, InstanceDetails, InstanceResponse, LastOperation, OperationState,
};
use crate::broker::{
    BindOutcome, BindRequest, DeleteOutcome, DeprovisionRequest, GetBindingRequest,
    GetInstanceRequest, LastBindingOperationRequest, LastOperationRequest, ProvisionOutcome,
    ProvisionRequest, RequestMeta, ServiceBroker, UnbindRequest, UpdateOutcome, UpdateRequest,
};
use crate::catalog::{
    Catalog, InputParametersSchema, Schemas, ServiceInstanceSchemas, ServiceOffering, ServicePlan,
};
use crate::error::{
    BindError, CatalogError, DeprovisionError, Failure, GetBindingError, GetInstanceError,
    LastOperationError, ProvisionError, UnbindError, UpdateError,
};

pub const SERVICE_ID: &str = "5b2e8f3a-4c1d-4e7b-9a60-0d2f6c1e7a01";
pub const SERVICE_NAME: &str = "memdb";
pub const SMALL_PLAN_ID: &str = "5b2e8f3a-4c1d-4e7b-9a60-0d2f6c1e7a11";
pub const LARGE_PLAN_ID: &str = "5b2e8f3a-4c1d-4e7b-9a60-0d2f6c1e7a12";
pub const ASYNC_PLAN_ID: &str = "5b2e8f3a-4c1d-4e7b-9a60-0d2f6c1e7a13";

/// How the memory broker behaves.
#[derive(Debug, Clone)]
pub struct MemoryBrokerConfig {
    /// How long asynchronous operations (plan `async`) take.
    pub async_delay: Duration,
    /// Base of the instances' `dashboard_url` (`<base>/instances/<instance_id>`).
    pub dashboard_base_url: String,
}

impl Default for MemoryBrokerConfig {
    fn default() -> Self {
        Self {
            async_delay: Duration::from_secs(1),
            dashboard_base_url: "https://memdb.example/dashboard".to_owned(),
        }
    }
}

/// The in-memory broker. Share it between workers with an `Arc`.
#[derive(Debug, Default)]
pub struct MemoryBroker {
    config: MemoryBrokerConfig,
    state: Mutex<State>,
}

#[derive(Debug, Default)]
struct State {
    instances: HashMap<String, Instance>,
    /// Instances whose deletion finished, so that polls of that deletion answer 410.
    deleted_instances: HashSet<String>,
    /// `(instance, binding)` pairs whose deletion finished.
    deleted_bindings: HashSet<(String, String)>,
}

#[derive(Debug, Clone)]
struct Instance {
    service_id: String,
    plan_id: String,
    organization_guid: String,
    space_guid: String,
    parameters: Map<String, Value>,
    dashboard_url: String,
    /// False while an async provision runs and after it failed.
    provisioned: bool,
    pending: Option<Pending<InstanceChange>>,
    last: Option<LastOperation>,
    bindings: HashMap<String, BindingRecord>,
}

#[derive(Debug, Clone)]
struct BindingRecord {
    app_guid: Option<String>,
    parameters: Map<String, Value>,
    binding: Binding,
    created: bool,
    pending: Option<Pending<BindingChange>>,
    last: Option<LastOperation>,
}

#[derive(Debug, Clone)]
struct Pending<K> {
    operation: String,
    change: K,
    ready_at: Instant,
    fail: bool,
}

#[derive(Debug, Clone)]
enum InstanceChange {
    Provision,
    Update {
        plan_id: String,
        parameters: Map<String, Value>,
    },
    Deprovision,
}

#[derive(Debug, Clone, Copy)]
enum BindingChange {
    Bind,
    Unbind,
}

/// What the `fail` parameter asks for, if anything.
fn injected_failure(parameters: Option<&Map<String, Value>>, operation: &str) -> Option<Failure> {
    let description =
        format!("memdb: {operation} failed because the parameters asked for it (\"fail\").");
    match parameters?.get("fail")? {
        Value::Bool(true) => Some(Failure::new(400, None, description)),
        Value::Number(status) => Some(Failure::new(
            status
                .as_u64()
                .and_then(|s| u16::try_from(s).ok())
                .unwrap_or(500),
            None,
            description,
        )),
        _ => None,
    }
}

fn flag(parameters: &Map<String, Value>, name: &str) -> bool {
    parameters
        .get(name)
        .and_then(Value::as_bool)
        .unwrap_or(false)
}

fn new_operation(kind: &str) -> String {
    format!("{kind}-{}", uuid::Uuid::new_v4())
}

impl MemoryBroker {
    pub fn new(config: MemoryBrokerConfig) -> Self {
        Self {
            config,
            state: Mutex::new(State::default()),
        }
    }

    /// The catalog: offering `memdb` with plans `small`, `large` and `async`.
    pub fn static_catalog() -> Catalog {
        let plan = |id: &str, name: &str, description: &str| ServicePlan {
            id: id.to_owned(),
            name: name.to_owned(),
            description: description.to_owned(),
            free: Some(true),
            ..ServicePlan::default()
        };
        let mut large = plan(
            LARGE_PLAN_ID,
            "large",
            "A large in-memory database (synchronous).",
        );
        large.free = Some(false);
        large.metadata = Some(
            json!({"bullets": ["10 GB of pretend storage"], "costs": [{"amount": {"usd": 10.0}, "unit": "MONTHLY"}]})
                .as_object()
                .cloned()
                .unwrap_or_default(),
        );
        large.schemas = Some(Schemas {
            service_instance: Some(ServiceInstanceSchemas {
                create: Some(InputParametersSchema {
                    parameters: Some(json!({
                        "$schema": "http://json-schema.org/draft-04/schema#",
                        "type": "object",
                        "properties": {"fail": {"type": ["boolean", "integer"]}},
                    })),
                    ..InputParametersSchema::default()
                }),
                ..ServiceInstanceSchemas::default()
            }),
            ..Schemas::default()
        });
        let mut asynchronous = plan(
            ASYNC_PLAN_ID,
            "async",
            "An in-memory database whose every operation is asynchronous.",
        );
        asynchronous.maximum_polling_duration = Some(3600);
        Catalog {
            services: vec![ServiceOffering {
                id: SERVICE_ID.to_owned(),
                name: SERVICE_NAME.to_owned(),
                description: "An in-memory pretend database for testing platforms.".to_owned(),
                bindable: true,
                tags: vec!["memdb".to_owned(), "kiln".to_owned()],
                instances_retrievable: Some(true),
                bindings_retrievable: Some(true),
                plan_updateable: Some(true),
                metadata: Some(
                    json!({"displayName": "MemDB", "shareable": true, "providerDisplayName": "Kiln"})
                        .as_object()
                        .cloned()
                        .unwrap_or_default(),
                ),
                plans: vec![
                    plan(SMALL_PLAN_ID, "small", "A small in-memory database (synchronous)."),
                    large,
                    asynchronous,
                ],
                ..ServiceOffering::default()
            }],
            ..Catalog::default()
        }
    }

    /// Ids of the instances that currently exist (in any state), sorted.
    pub fn instance_ids(&self) -> Vec<String> {
        let mut state = self.lock();
        state.settle(Instant::now());
        let mut ids: Vec<String> = state.instances.keys().cloned().collect();
        ids.sort();
        ids
    }

    /// Ids of the bindings of `instance_id` that currently exist, sorted.
    pub fn binding_ids(&self, instance_id: &str) -> Vec<String> {
        let mut state = self.lock();
        state.settle(Instant::now());
        let mut ids: Vec<String> = state
            .instances
            .get(instance_id)
            .map(|instance| instance.bindings.keys().cloned().collect())
            .unwrap_or_default();
        ids.sort();
        ids
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // A panic while holding the lock cannot leave the maps half-updated in a way that
        // matters more than refusing every later request would.
        self.state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn settled(&self) -> MutexGuard<'_, State> {
        let mut state = self.lock();
        state.settle(Instant::now());
        state
    }

    fn deadline(&self) -> Instant {
        Instant::now() + self.config.async_delay
    }

    fn retry_after(ready_at: Instant) -> Option<Duration> {
        Some(
            ready_at
                .saturating_duration_since(Instant::now())
                .max(Duration::from_millis(1)),
        )
    }

    fn credentials(instance_id: &str, binding_id: &str) -> Map<String, Value> {
        let password = uuid::Uuid::new_v4().simple().to_string();
        let short_id: String = binding_id
            .chars()
            .filter(char::is_ascii_alphanumeric)
            .take(12)
            .collect();
        let username = format!("memdb-{short_id}");
        json!({
            "uri": format!("memdb://{username}:{password}@memdb.example:7000/{instance_id}"),
            "username": username,
            "password": password,
            "hostname": "memdb.example",
            "port": 7000,
            "database": instance_id,
        })
        .as_object()
        .cloned()
        .unwrap_or_default()
    }
}

/// Serves a new memory broker on `listener` (see `crate::serve`); returns the server, its
/// address and the broker, whose state tests may inspect.
pub fn serve(
    config: MemoryBrokerConfig,
    credentials: crate::Credentials,
    listener: std::net::TcpListener,
) -> std::io::Result<(
    crate::BrokerServer,
    std::net::SocketAddr,
    std::sync::Arc<MemoryBroker>,
)> {
    let broker = std::sync::Arc::new(MemoryBroker::new(config));
    let (server, addr) = crate::serve(broker.clone(), credentials, listener)?;
    Ok((server, addr, broker))
}

impl State {
    /// Applies every asynchronous operation whose deadline has passed.
    fn settle(&mut self, now: Instant) {
        let mut finished_deletions = Vec::new();
        for (instance_id, instance) in self.instances.iter_mut() {
            let mut finished_unbinds = Vec::new();
            for (binding_id, binding) in instance.bindings.iter_mut() {
                let Some(pending) = binding.pending.take_if(|p| p.ready_at <= now) else {
                    continue;
                };
                binding.last = Some(match (pending.change, pending.fail) {
                    (BindingChange::Bind, true) => LastOperation::failed("memdb: binding failed because the parameters asked for it (\"fail_async\")."),
                    (BindingChange::Bind, false) => {
                        binding.created = true;
                        LastOperation::succeeded("memdb: binding created.")
                    }
                    (BindingChange::Unbind, true) => LastOperation::failed("memdb: unbinding failed."),
                    (BindingChange::Unbind, false) => {
                        finished_unbinds.push(binding_id.clone());
                        LastOperation::succeeded("memdb: binding deleted.")
                    }
                });
            }
            for binding_id in finished_unbinds {
                instance.bindings.remove(&binding_id);
                self.deleted_bindings
                    .insert((instance_id.clone(), binding_id));
            }
            let Some(pending) = instance.pending.take_if(|p| p.ready_at <= now) else {
                continue;
            };
            instance.last = Some(match (pending.change, pending.fail) {
                (InstanceChange::Provision, true) => LastOperation::failed(
                    "memdb: provisioning failed because the parameters asked for it (\"fail_async\").",
                ),
                (InstanceChange::Provision, false) => {
                    instance.provisioned = true;
                    LastOperation::succeeded("memdb: instance provisioned.")
                }
                (InstanceChange::Update { .. }, true) => {
                    let mut failed = LastOperation::failed(
                        "memdb: update failed because the parameters asked for it (\"fail_async\").",
                    );
                    failed.instance_usable = Some(true);
                    failed.update_repeatable = Some(true);
                    failed
                }
                (InstanceChange::Update { plan_id, parameters }, false) => {
                    instance.plan_id = plan_id;
                    instance.parameters = parameters;
                    LastOperation::succeeded("memdb: instance updated.")
                }
                (InstanceChange::Deprovision, true) => {
                    let mut failed = LastOperation::failed("memdb: deprovisioning failed.");
                    failed.instance_usable = Some(true);
                    failed
                }
                (InstanceChange::Deprovision, false) => {
                    finished_deletions.push(instance_id.clone());
                    LastOperation::succeeded("memdb: instance deleted.")
                }
            });
        }
        for instance_id in finished_deletions {
            self.instances.remove(&instance_id);
            self.deleted_instances.insert(instance_id);
        }
    }
}

fn in_progress(ready_at: Instant, what: &str) -> LastOperation {
    LastOperation::in_progress(
        format!("memdb: {what} in progress."),
        MemoryBroker::retry_after(ready_at),
    )
}

impl ServiceBroker for MemoryBroker {
    async fn catalog(&self, _meta: RequestMeta) -> Result<Catalog, CatalogError> {
        Ok(Self::static_catalog())
    }

    async fn provision(
        &self,
        request: ProvisionRequest,
    ) -> Result<ProvisionOutcome, ProvisionError> {
        let ProvisionRequest {
            instance_id,
            accepts_incomplete,
            body,
            plan,
            ..
        } = request;
        let parameters = body.parameters.clone().unwrap_or_default();
        if let Some(failure) = injected_failure(Some(&parameters), "provisioning") {
            return Err(ProvisionError::Custom(failure));
        }
        let mut state = self.settled();
        if let Some(existing) = state.instances.get(&instance_id) {
            let identical = existing.service_id == body.service_id
                && existing.plan_id == body.plan_id
                && existing.parameters == parameters
                && existing.organization_guid == body.organization_guid
                && existing.space_guid == body.space_guid;
            return match (&existing.pending, identical) {
                (_, false) => Err(ProvisionError::Conflict(format!(
                    "memdb: instance {instance_id} already exists with different attributes."
                ))),
                (Some(pending), true) if matches!(pending.change, InstanceChange::Provision) => {
                    Ok(ProvisionOutcome::InProgress {
                        operation: Some(pending.operation.clone()),
                        dashboard_url: Some(existing.dashboard_url.clone()),
                        metadata: None,
                    })
                }
                (_, true) if existing.provisioned => {
                    Ok(ProvisionOutcome::AlreadyExists(InstanceResponse {
                        dashboard_url: Some(existing.dashboard_url.clone()),
                        ..InstanceResponse::default()
                    }))
                }
                (_, true) => Err(ProvisionError::Conflict(format!(
                    "memdb: instance {instance_id} exists but failed to provision; delete it first."
                ))),
            };
        }
        let asynchronous = plan.id == ASYNC_PLAN_ID;
        if asynchronous && !accepts_incomplete {
            return Err(ProvisionError::AsyncRequired);
        }
        let dashboard_url = format!("{}/instances/{instance_id}", self.config.dashboard_base_url);
        let pending = asynchronous.then(|| Pending {
            operation: new_operation("provision"),
            change: InstanceChange::Provision,
            ready_at: self.deadline(),
            fail: flag(&parameters, "fail_async"),
        });
        let operation = pending.as_ref().map(|p| p.operation.clone());
        state.deleted_instances.remove(&instance_id);
        state.instances.insert(
            instance_id,
            Instance {
                service_id: body.service_id,
                plan_id: body.plan_id,
                organization_guid: body.organization_guid,
                space_guid: body.space_guid,
                parameters,
                dashboard_url: dashboard_url.clone(),
                provisioned: !asynchronous,
                pending,
                last: None,
                bindings: HashMap::new(),
            },
        );
        if asynchronous {
            Ok(ProvisionOutcome::InProgress {
                operation,
                dashboard_url: Some(dashboard_url),
                metadata: None,
            })
        } else {
            Ok(ProvisionOutcome::Created(InstanceResponse {
                dashboard_url: Some(dashboard_url),
                ..InstanceResponse::default()
            }))
        }
    }

    async fn update(&self, request: UpdateRequest) -> Result<UpdateOutcome, UpdateError> {
        let UpdateRequest {
            instance_id,
            accepts_incomplete,
            body,
            ..
        } = request;
        let mut state = self.settled();
        let instance = state.instances.get_mut(&instance_id).ok_or_else(|| {
            UpdateError::NotFound(format!("memdb: instance {instance_id} does not exist."))
        })?;
        if instance.pending.is_some() {
            return Err(UpdateError::ConcurrencyError);
        }
        if !instance.provisioned {
            return Err(UpdateError::Unprocessable(format!(
                "memdb: instance {instance_id} failed to provision and cannot be updated."
            )));
        }
        if let Some(failure) = injected_failure(body.parameters.as_ref(), "update") {
            return Err(UpdateError::Custom(failure));
        }
        let plan_id = body
            .plan_id
            .clone()
            .unwrap_or_else(|| instance.plan_id.clone());
        let mut parameters = instance.parameters.clone();
        let update_parameters = body.parameters.unwrap_or_default();
        let fail = flag(&update_parameters, "fail_async");
        parameters.extend(update_parameters);
        parameters.remove("fail_async");
        let asynchronous = plan_id == ASYNC_PLAN_ID || instance.plan_id == ASYNC_PLAN_ID;
        if !asynchronous {
            instance.plan_id = plan_id;
            instance.parameters = parameters;
            return Ok(UpdateOutcome::Updated(InstanceResponse {
                dashboard_url: Some(instance.dashboard_url.clone()),
                ..InstanceResponse::default()
            }));
        }
        if !accepts_incomplete {
            return Err(UpdateError::AsyncRequired);
        }
        let operation = new_operation("update");
        instance.pending = Some(Pending {
            operation: operation.clone(),
            change: InstanceChange::Update {
                plan_id,
                parameters,
            },
            ready_at: self.deadline(),
            fail,
        });
        Ok(UpdateOutcome::InProgress {
            operation: Some(operation),
            dashboard_url: None,
            metadata: None,
        })
    }

    async fn deprovision(
        &self,
        request: DeprovisionRequest,
    ) -> Result<DeleteOutcome, DeprovisionError> {
        let mut state = self.settled();
        let instance_id = request.instance_id;
        let Some(instance) = state.instances.get_mut(&instance_id) else {
            return Err(DeprovisionError::Gone);
        };
        match &instance.pending {
            Some(pending) if matches!(pending.change, InstanceChange::Deprovision) => {
                return Ok(DeleteOutcome::InProgress {
                    operation: Some(pending.operation.clone()),
                })
            }
            Some(_) => return Err(DeprovisionError::ConcurrencyError),
            None => {}
        }
        if flag(&instance.parameters, "fail_deprovision") {
            return Err(DeprovisionError::Failed {
                description: "memdb: deprovisioning failed because the parameters asked for it (\"fail_deprovision\").".to_owned(),
                instance_usable: Some(true),
            });
        }
        if instance.plan_id == ASYNC_PLAN_ID {
            if !request.accepts_incomplete {
                return Err(DeprovisionError::AsyncRequired);
            }
            let operation = new_operation("deprovision");
            instance.pending = Some(Pending {
                operation: operation.clone(),
                change: InstanceChange::Deprovision,
                ready_at: self.deadline(),
                fail: false,
            });
            return Ok(DeleteOutcome::InProgress {
                operation: Some(operation),
            });
        }
        state.instances.remove(&instance_id);
        state.deleted_instances.insert(instance_id);
        Ok(DeleteOutcome::Deleted)
    }

    async fn last_operation(
        &self,
        request: LastOperationRequest,
    ) -> Result<LastOperation, LastOperationError> {
        let state = self.settled();
        let Some(instance) = state.instances.get(&request.instance_id) else {
            return Err(if state.deleted_instances.contains(&request.instance_id) {
                LastOperationError::Gone
            } else {
                LastOperationError::NotFound
            });
        };
        if let Some(pending) = &instance.pending {
            let what = match pending.change {
                InstanceChange::Provision => "provisioning",
                InstanceChange::Update { .. } => "update",
                InstanceChange::Deprovision => "deprovisioning",
            };
            return Ok(in_progress(pending.ready_at, what));
        }
        Ok(instance
            .last
            .clone()
            .unwrap_or_else(|| LastOperation::succeeded("memdb: no operation in progress.")))
    }

    async fn bind(&self, request: BindRequest) -> Result<BindOutcome, BindError> {
        let BindRequest {
            instance_id,
            binding_id,
            accepts_incomplete,
            body,
            ..
        } = request;
        let mut state = self.settled();
        let instance = state.instances.get_mut(&instance_id).ok_or_else(|| {
            BindError::InstanceNotFound(format!("memdb: instance {instance_id} does not exist."))
        })?;
        if instance.pending.is_some() {
            return Err(BindError::ConcurrencyError);
        }
        if !instance.provisioned {
            return Err(BindError::Unprocessable(format!(
                "memdb: instance {instance_id} failed to provision and cannot be bound."
            )));
        }
        let parameters = body.parameters.clone().unwrap_or_default();
        if let Some(failure) = injected_failure(Some(&parameters), "binding") {
            return Err(BindError::Custom(failure));
        }
        let app_guid = body.app_guid().map(str::to_owned);
        if flag(&instance.parameters, "require_app") && app_guid.is_none() {
            return Err(BindError::RequiresApp);
        }
        if let Some(existing) = instance.bindings.get(&binding_id) {
            let identical = existing.app_guid == app_guid && existing.parameters == parameters;
            return match &existing.pending {
                _ if !identical => Err(BindError::Conflict(format!(
                    "memdb: binding {binding_id} already exists with different attributes."
                ))),
                Some(pending) if matches!(pending.change, BindingChange::Bind) => {
                    Ok(BindOutcome::InProgress {
                        operation: Some(pending.operation.clone()),
                    })
                }
                Some(_) => Err(BindError::ConcurrencyError),
                None if existing.created => {
                    Ok(BindOutcome::AlreadyExists(existing.binding.clone()))
                }
                None => Err(BindError::Conflict(format!(
                    "memdb: binding {binding_id} exists but failed; delete it first."
                ))),
            };
        }
        let asynchronous = instance.plan_id == ASYNC_PLAN_ID;
        if asynchronous && !accepts_incomplete {
            return Err(BindError::AsyncRequired);
        }
        let binding = Binding {
            credentials: Some(Self::credentials(&instance_id, &binding_id)),
            ..Binding::default()
        };
        let pending = asynchronous.then(|| Pending {
            operation: new_operation("bind"),
            change: BindingChange::Bind,
            ready_at: self.deadline(),
            fail: flag(&parameters, "fail_async"),
        });
        let operation = pending.as_ref().map(|p| p.operation.clone());
        instance.bindings.insert(
            binding_id.clone(),
            BindingRecord {
                app_guid,
                parameters,
                binding: binding.clone(),
                created: !asynchronous,
                pending,
                last: None,
            },
        );
        state.deleted_bindings.remove(&(instance_id, binding_id));
        if asynchronous {
            Ok(BindOutcome::InProgress { operation })
        } else {
            Ok(BindOutcome::Created(binding))
        }
    }

    async fn unbind(&self, request: UnbindRequest) -> Result<DeleteOutcome, UnbindError> {
        let mut state = self.settled();
        let Some(instance) = state.instances.get_mut(&request.instance_id) else {
            return Err(UnbindError::Gone);
        };
        if matches!(&instance.pending, Some(p) if !matches!(p.change, InstanceChange::Update { .. }))
        {
            return Err(UnbindError::ConcurrencyError);
        }
        let asynchronous = instance.plan_id == ASYNC_PLAN_ID;
        let Some(binding) = instance.bindings.get_mut(&request.binding_id) else {
            return Err(UnbindError::Gone);
        };
        match &binding.pending {
            Some(pending) if matches!(pending.change, BindingChange::Unbind) => {
                return Ok(DeleteOutcome::InProgress {
                    operation: Some(pending.operation.clone()),
                })
            }
            Some(_) => return Err(UnbindError::ConcurrencyError),
            None => {}
        }
        if flag(&binding.parameters, "fail_unbind") {
            return Err(UnbindError::Internal(
                "memdb: unbinding failed because the parameters asked for it (\"fail_unbind\")."
                    .to_owned(),
            ));
        }
        if asynchronous {
            if !request.accepts_incomplete {
                return Err(UnbindError::AsyncRequired);
            }
            let operation = new_operation("unbind");
            binding.pending = Some(Pending {
                operation: operation.clone(),
                change: BindingChange::Unbind,
                ready_at: self.deadline(),
                fail: false,
            });
            return Ok(DeleteOutcome::InProgress {
                operation: Some(operation),
            });
        }
        instance.bindings.remove(&request.binding_id);
        state
            .deleted_bindings
            .insert((request.instance_id, request.binding_id));
        Ok(DeleteOutcome::Deleted)
    }

    async fn get_instance(
        &self,
        request: GetInstanceRequest,
    ) -> Result<InstanceDetails, GetInstanceError> {
        let state = self.settled();
        let instance = state
            .instances
            .get(&request.instance_id)
            .filter(|instance| instance.provisioned)
            .ok_or(GetInstanceError::NotFound)?;
        if matches!(&instance.pending, Some(p) if matches!(p.change, InstanceChange::Update { .. }))
        {
            return Err(GetInstanceError::ConcurrencyError);
        }
        Ok(InstanceDetails {
            service_id: instance.service_id.clone(),
            plan_id: instance.plan_id.clone(),
            dashboard_url: Some(instance.dashboard_url.clone()),
            parameters: Some(instance.parameters.clone()),
            ..InstanceDetails::default()
        })
    }

    async fn get_binding(
        &self,
        request: GetBindingRequest,
    ) -> Result<BindingDetails, GetBindingError> {
        let state = self.settled();
        let binding = state
            .instances
            .get(&request.instance_id)
            .and_then(|instance| instance.bindings.get(&request.binding_id))
            .filter(|binding| binding.created)
            .ok_or(GetBindingError::NotFound)?;
        Ok(BindingDetails {
            binding: binding.binding.clone(),
            parameters: Some(binding.parameters.clone()),
        })
    }

    async fn last_binding_operation(
        &self,
        request: LastBindingOperationRequest,
    ) -> Result<LastOperation, LastOperationError> {
        let state = self.settled();
        let binding = state
            .instances
            .get(&request.instance_id)
            .and_then(|instance| instance.bindings.get(&request.binding_id));
        let Some(binding) = binding else {
            let key = (request.instance_id, request.binding_id);
            return Err(if state.deleted_bindings.contains(&key) {
                LastOperationError::Gone
            } else {
                LastOperationError::NotFound
            });
        };
        if let Some(pending) = &binding.pending {
            let what = match pending.change {
                BindingChange::Bind => "binding",
                BindingChange::Unbind => "unbinding",
            };
            return Ok(in_progress(pending.ready_at, what));
        }
        Ok(binding.last.clone().unwrap_or_else(|| LastOperation {
            state: OperationState::Succeeded,
            description: Some("memdb: no operation in progress.".to_owned()),
            instance_usable: None,
            update_repeatable: None,
            retry_after: None,
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_catalog_is_valid() {
        assert_eq!(
            crate::validate_catalog(&MemoryBroker::static_catalog()),
            Ok(())
        );
    }
}
