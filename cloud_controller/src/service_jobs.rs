//! Broker work behind the services jobs, run as owned background tasks ([`ServiceRunner`]):
//! catalog synchronisation, provision/update/deprovision, bind/unbind, `last_operation` polling
//! with CC's cadence (first poll at once, then `max(Retry-After, interval)` within the plan's
//! `maximum_polling_duration`), and orphan mitigation (DELETE at the broker, retried up to 11
//! times, 2^attempt minutes apart) after a provision or bind that may have left something behind.
//! Each operation also reports the broker's [`FirstAnswer`] to a requester that waits for it (the
//! v2 API, which answers 201/202 itself where v3 answers with a job).

use std::sync::{Arc, Mutex};
use std::time::Duration;

use diesel::prelude::*;
use serde_json::{json, Value};

use crate::config::ServicesConfig;
use crate::db::models::{
    CredentialBindingRow, OrgRow, ServiceBrokerRow, ServiceInstanceRow, ServiceOfferingRow,
    ServicePlanRow, SpaceRow,
};
use crate::db::schema::jobs;
use crate::db::{Db, DbConn};
use crate::error::{ApiError, ErrorKind};
use crate::osb_client::{
    BindRules, BrokerEndpoint, BrokerError, LastOperation, OperationState, OsbClient, Outcome,
};
use crate::service_catalog::CatalogOffering;
use crate::store;
use crate::store::services::{self as services_store, FAILED, IN_PROGRESS, SUCCEEDED};

/// Job state while CC polls a broker.
pub const POLLING: &str = "POLLING";
/// Attempts of an orphan-mitigation job.
const ORPHAN_MITIGATION_ATTEMPTS: u32 = 11;
/// Longest wait between two polls (CC's `broker_client_max_async_poll_interval_seconds`).
const MAX_POLL_INTERVAL: Duration = Duration::from_secs(86_400);

/// The broker's first answer to an operation a request started: the v2 API reports it in its
/// response (201, or 202 `in progress`, or the broker's error) where v3 answers with a job.
#[derive(Debug)]
pub enum FirstAnswer {
    /// The broker finished the operation.
    Done,
    /// The broker works on it asynchronously; the runner polls `last_operation`.
    InProgress,
    /// The broker refused or failed: its error, not the job's wording.
    Failed(ApiError),
}

/// Where an operation's [`FirstAnswer`] arrives (after it is recorded); callers that do not
/// need it drop it.
pub type FirstAnswerReceiver = tokio::sync::oneshot::Receiver<FirstAnswer>;

type FirstAnswerSender = tokio::sync::oneshot::Sender<FirstAnswer>;

fn tell(sender: Option<FirstAnswerSender>, answer: FirstAnswer) {
    if let Some(sender) = sender {
        // The requester may have gone; the operation's outcome is recorded either way.
        let _ = sender.send(answer);
    }
}

/// CC's reading of an asynchronous answer to a request sent with `accepts_incomplete=false`.
fn refuse_async(
    answer: Result<Outcome, BrokerError>,
    accepts_incomplete: bool,
    orphan: bool,
) -> Result<Outcome, BrokerError> {
    match answer {
        Ok(Outcome::InProgress(_)) if !accepts_incomplete => Err(BrokerError {
            error: ApiError::plain(ErrorKind::ServiceBrokerRespondedAsyncWhenNotAllowed),
            orphan,
        }),
        other => other,
    }
}

/// Stores a validated catalog as the broker's offerings and plans and marks the broker
/// AVAILABLE; returns CC's warnings. A database failure is reported as
/// `ServiceBrokerSyncFailed`.
pub fn store_catalog(
    conn: &mut DbConn,
    broker: &ServiceBrokerRow,
    catalog: &[CatalogOffering],
) -> Result<Vec<String>, ApiError> {
    let warnings = services_store::sync_catalog(conn, broker, catalog).map_err(|error| {
        if error.kind == ErrorKind::ServerError {
            tracing::error!(%error, internal = ?error.internal, "catalog sync failed");
            ApiError::with_args(ErrorKind::ServiceBrokerSyncFailed, &["database error"])
        } else {
            error
        }
    })?;
    services_store::set_broker_state(conn, broker.id, services_store::broker_state::AVAILABLE)?;
    Ok(warnings)
}

/// Marks a job finished (COMPLETE, or FAILED with `error`) with warnings.
pub fn finish_job(
    conn: &mut DbConn,
    guid: &str,
    error: Option<&ApiError>,
    warnings: &[String],
) -> Result<(), ApiError> {
    let (state, errors) = match error {
        None => (store::jobs::COMPLETE, "[]".to_owned()),
        Some(error) => (store::jobs::FAILED, error.v3_body()["errors"].to_string()),
    };
    let warnings: Vec<Value> = warnings
        .iter()
        .map(|warning| json!({"detail": warning}))
        .collect();
    diesel::update(jobs::table.filter(jobs::guid.eq(guid)))
        .set((
            jobs::state.eq(state),
            jobs::errors.eq(errors),
            jobs::warnings.eq(Value::Array(warnings).to_string()),
            jobs::updated_at.eq(store::now()),
        ))
        .execute(conn)?;
    Ok(())
}

fn set_job_polling(conn: &mut DbConn, guid: &str) -> Result<(), ApiError> {
    diesel::update(jobs::table.filter(jobs::guid.eq(guid)))
        .set((jobs::state.eq(POLLING), jobs::updated_at.eq(store::now())))
        .execute(conn)?;
    Ok(())
}

fn endpoint(broker: &ServiceBrokerRow) -> BrokerEndpoint {
    BrokerEndpoint {
        url: broker.url.clone(),
        username: broker.username.clone(),
        password: broker.password.clone(),
    }
}

/// An instance with everything a broker request about it needs.
#[derive(Debug, Clone)]
pub struct InstanceContext {
    /// The instance.
    pub instance: ServiceInstanceRow,
    /// Its plan.
    pub plan: ServicePlanRow,
    /// The plan's offering.
    pub offering: ServiceOfferingRow,
    /// The offering's broker.
    pub broker: ServiceBrokerRow,
    /// The instance's space.
    pub space: SpaceRow,
    /// The space's org.
    pub org: OrgRow,
}

impl InstanceContext {
    /// Loads the context of a managed instance.
    pub fn load(conn: &mut DbConn, instance_id: i32) -> Result<InstanceContext, ApiError> {
        let missing = || ApiError::not_found("Service instance");
        let instance =
            services_store::find_instance_by_id(conn, instance_id)?.ok_or_else(missing)?;
        let plan = instance
            .service_plan_id
            .map(|id| services_store::find_plan_by_id(conn, id))
            .transpose()?
            .flatten()
            .ok_or_else(missing)?;
        let offering = services_store::find_offering_by_id(conn, plan.service_offering_id)?
            .ok_or_else(missing)?;
        let broker = services_store::find_broker_by_id(conn, offering.service_broker_id)?
            .ok_or_else(missing)?;
        let space = store::spaces::find_by_id(conn, instance.space_id)?.ok_or_else(missing)?;
        let org = store::orgs::find_by_id(conn, space.organization_id)?.ok_or_else(missing)?;
        Ok(InstanceContext {
            instance,
            plan,
            offering,
            broker,
            space,
            org,
        })
    }

    fn ids(&self) -> (&str, &str) {
        (&self.offering.broker_id, &self.plan.broker_id)
    }

    fn context(&self, with_instance: bool) -> Value {
        let mut context = json!({
            "platform": "cloudfoundry",
            "organization_guid": self.org.guid,
            "organization_name": self.org.name,
            "organization_annotations": {},
            "space_guid": self.space.guid,
            "space_name": self.space.name,
            "space_annotations": {},
        });
        if with_instance {
            context["instance_name"] = json!(self.instance.name);
            context["instance_annotations"] = json!({});
        }
        context
    }

    fn bind_rules(&self) -> BindRules {
        let requires: Vec<String> =
            serde_json::from_str(&self.offering.requires).unwrap_or_default();
        BindRules {
            syslog_drain: requires.iter().any(|value| value == "syslog_drain"),
            volume_mount: requires.iter().any(|value| value == "volume_mount"),
            bindings_retrievable: self.offering.bindings_retrievable,
        }
    }
}

/// What a poll is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum PollTarget {
    Instance,
    Binding(i32),
}

/// Owns the background tasks of the services jobs.
pub struct ServiceRunner {
    client: OsbClient,
    db: Db,
    runtime: tokio::runtime::Handle,
    tasks: Mutex<tokio::task::JoinSet<()>>,
    poll_interval: Duration,
    max_poll_duration: Duration,
}

impl std::fmt::Debug for ServiceRunner {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter
            .debug_struct("ServiceRunner")
            .field("poll_interval", &self.poll_interval)
            .finish()
    }
}

impl ServiceRunner {
    /// A runner whose tasks run on the current Tokio runtime.
    pub fn start(
        config: &ServicesConfig,
        db: Db,
        external_url: &str,
    ) -> Result<Arc<ServiceRunner>, crate::CcError> {
        let client = OsbClient::new(
            Duration::from_secs(config.broker_client_timeout_seconds),
            external_url,
        )
        .map_err(crate::CcError::Config)?;
        Ok(Arc::new(ServiceRunner {
            client,
            db,
            runtime: tokio::runtime::Handle::current(),
            tasks: Mutex::new(tokio::task::JoinSet::new()),
            poll_interval: Duration::from_secs(
                config
                    .broker_client_default_async_poll_interval_seconds
                    .max(1),
            ),
            max_poll_duration: Duration::from_secs(
                config.broker_client_max_async_poll_duration_minutes * 60,
            ),
        }))
    }

    /// Resumes polling the operations a previous run of the Cloud Controller left `in progress`
    /// with a POLLING job (the broker accepted them; only their outcome is missing).
    pub fn resume(self: &Arc<Self>) {
        let runner = self.clone();
        self.spawn(async move {
            let pending = runner
                .db
                .run(|conn| {
                    let polling: Vec<String> = jobs::table
                        .filter(jobs::state.eq(POLLING))
                        .select(jobs::guid)
                        .load(conn)?;
                    let mut found = Vec::new();
                    for instance in services_store::list_instances(conn)? {
                        if let (Some(job), Some(kind)) =
                            (&instance.job_guid, &instance.last_operation_type)
                        {
                            if instance_busy(&instance) && polling.contains(job) {
                                found.push((job.clone(), instance.id, None, kind.clone()));
                            }
                        }
                    }
                    for binding in services_store::list_bindings(conn)? {
                        if let Some(job) = &binding.job_guid {
                            if binding.last_operation_state == IN_PROGRESS && polling.contains(job)
                            {
                                found.push((
                                    job.clone(),
                                    binding.service_instance_id,
                                    Some(binding.id),
                                    binding.last_operation_type.clone(),
                                ));
                            }
                        }
                    }
                    let mut resumed = Vec::new();
                    for (job, instance_id, binding_id, kind) in found {
                        resumed.push((
                            job,
                            InstanceContext::load(conn, instance_id)?,
                            binding_id,
                            kind,
                        ));
                    }
                    Ok(resumed)
                })
                .await;
            let pending = match pending {
                Ok(pending) => pending,
                Err(error) => {
                    tracing::warn!(%error, "could not resume service operations");
                    return;
                }
            };
            for (job, context, binding_id, kind) in pending {
                let operation_type: &'static str = match kind.as_str() {
                    "create" => "create",
                    "update" => "update",
                    _ => "delete",
                };
                let target = binding_id.map_or(PollTarget::Instance, PollTarget::Binding);
                let poller = runner.clone();
                runner
                    .spawn(async move { poller.poll(job, context, target, operation_type).await });
            }
        });
    }

    /// The broker client.
    pub fn client(&self) -> &OsbClient {
        &self.client
    }

    fn spawn(&self, task: impl std::future::Future<Output = ()> + Send + 'static) {
        let mut tasks = self.tasks.lock().unwrap_or_else(|error| error.into_inner());
        while tasks.try_join_next().is_some() {}
        tasks.spawn_on(task, &self.runtime);
    }

    /// Ends every background task.
    pub fn shutdown(&self) {
        self.tasks
            .lock()
            .unwrap_or_else(|error| error.into_inner())
            .abort_all();
    }

    async fn record(
        &self,
        work: impl FnOnce(&mut DbConn) -> Result<(), ApiError> + Send + 'static,
    ) {
        if let Err(error) = self.db.run(work).await {
            tracing::error!(%error, internal = ?error.internal, "recording a services job outcome failed");
        }
    }

    async fn fail_job(&self, job_guid: &str, error: ApiError) {
        let job_guid = job_guid.to_owned();
        self.record(move |conn| finish_job(conn, &job_guid, Some(&error), &[]))
            .await;
    }

    // -----------------------------------------------------------------------------------------
    // Brokers

    /// Fetches, validates and stores the broker's catalog, then finishes the job. A new broker
    /// whose catalog fails ends SYNCHRONIZATION_FAILED; an update keeps its previous catalog.
    pub fn synchronize_catalog(
        self: &Arc<Self>,
        job_guid: String,
        broker_guid: String,
        user_guid: Option<String>,
        creating: bool,
    ) {
        let runner = self.clone();
        self.spawn(async move {
            let lookup = broker_guid.clone();
            let broker = match runner
                .db
                .run(move |conn| services_store::find_broker(conn, &lookup))
                .await
            {
                Ok(Some(broker)) => broker,
                Ok(None) => {
                    return runner
                        .fail_job(&job_guid, ApiError::not_found("Service broker"))
                        .await
                }
                Err(error) => return runner.fail_job(&job_guid, error).await,
            };
            let outcome = runner
                .fetch_catalog(&endpoint(&broker), user_guid.as_deref())
                .await;
            runner
                .record(move |conn| {
                    let result = outcome.and_then(|catalog| store_catalog(conn, &broker, &catalog));
                    match result {
                        Ok(warnings) => finish_job(conn, &job_guid, None, &warnings),
                        Err(error) => {
                            let state = if creating {
                                services_store::broker_state::SYNCHRONIZATION_FAILED
                            } else {
                                services_store::broker_state::AVAILABLE
                            };
                            services_store::set_broker_state(conn, broker.id, state)?;
                            finish_job(conn, &job_guid, Some(&error), &[])
                        }
                    }
                })
                .await;
        });
    }

    /// Fetches a broker's catalog and validates it with CC's rules (the report goes in
    /// `ServiceBrokerCatalogInvalid`).
    pub async fn fetch_catalog(
        &self,
        broker: &BrokerEndpoint,
        user_guid: Option<&str>,
    ) -> Result<Vec<CatalogOffering>, ApiError> {
        let catalog = self
            .client
            .catalog(broker, user_guid)
            .await
            .map_err(|failure| failure.error)?;
        crate::service_catalog::validate(&catalog).map_err(|report| {
            ApiError::with_args(ErrorKind::ServiceBrokerCatalogInvalid, &[&report])
        })
    }

    // -----------------------------------------------------------------------------------------
    // Instances

    /// Provisions a managed instance (its row is `create in progress`).
    pub fn provision(
        self: &Arc<Self>,
        job_guid: String,
        instance_id: i32,
        parameters: Option<Value>,
        accepts_incomplete: bool,
        user_guid: Option<String>,
    ) -> FirstAnswerReceiver {
        let (first, receiver) = tokio::sync::oneshot::channel();
        let runner = self.clone();
        self.spawn(async move {
            let context = match runner
                .db
                .run(move |conn| InstanceContext::load(conn, instance_id))
                .await
            {
                Ok(context) => context,
                Err(error) => return runner.fail_job(&job_guid, error).await,
            };
            let mut body = json!({
                "service_id": context.offering.broker_id,
                "plan_id": context.plan.broker_id,
                "organization_guid": context.org.guid,
                "space_guid": context.space.guid,
                "context": context.context(true),
            });
            if let Some(parameters) =
                parameters.filter(|value| value.as_object().is_some_and(|map| !map.is_empty()))
            {
                body["parameters"] = parameters;
            }
            if let Some(info) = &context.plan.maintenance_info {
                body["maintenance_info"] = services_store::parse_json(Some(info));
            }
            let answer = runner
                .client
                .provision(
                    &endpoint(&context.broker),
                    &context.instance.guid,
                    &body,
                    accepts_incomplete,
                    user_guid.as_deref(),
                )
                .await;
            let answer = refuse_async(answer, accepts_incomplete, true);
            runner
                .after_instance_request(job_guid, context, "create", answer, Some(first))
                .await;
        });
        receiver
    }

    /// Updates a managed instance at its broker (plan and/or parameters).
    pub fn update(
        self: &Arc<Self>,
        job_guid: String,
        instance_id: i32,
        new_plan_id: Option<i32>,
        parameters: Option<Value>,
        accepts_incomplete: bool,
        user_guid: Option<String>,
    ) -> FirstAnswerReceiver {
        let (first, receiver) = tokio::sync::oneshot::channel();
        let runner = self.clone();
        self.spawn(async move {
            let loaded = runner
                .db
                .run(move |conn| {
                    let context = InstanceContext::load(conn, instance_id)?;
                    let new_plan = new_plan_id
                        .map(|id| services_store::find_plan_by_id(conn, id))
                        .transpose()?
                        .flatten();
                    Ok((context, new_plan))
                })
                .await;
            let (context, new_plan) = match loaded {
                Ok(loaded) => loaded,
                Err(error) => return runner.fail_job(&job_guid, error).await,
            };
            let plan_id = new_plan
                .as_ref()
                .map_or(context.plan.broker_id.clone(), |plan| {
                    plan.broker_id.clone()
                });
            let mut previous = json!({
                "plan_id": context.plan.broker_id,
                "service_id": context.offering.broker_id,
                "organization_id": context.org.guid,
                "space_id": context.space.guid,
            });
            if let Some(info) = &context.plan.maintenance_info {
                previous["maintenance_info"] = services_store::parse_json(Some(info));
            }
            let mut context_body = context.context(false);
            context_body["instance_name"] = json!(context.instance.name);
            let body = json!({
                "service_id": context.offering.broker_id,
                "plan_id": plan_id,
                "previous_values": previous,
                "context": context_body,
                "parameters": parameters.unwrap_or_else(|| json!({})),
            });
            let answer = runner
                .client
                .update(
                    &endpoint(&context.broker),
                    &context.instance.guid,
                    &body,
                    accepts_incomplete,
                    user_guid.as_deref(),
                )
                .await;
            let answer = refuse_async(answer, accepts_incomplete, false);
            if let (Ok(Outcome::InProgress(_)), Some(plan)) = (&answer, &new_plan) {
                let (id, plan_id) = (context.instance.id, plan.id);
                runner
                    .record(move |conn| {
                        services_store::update_instance(
                            conn,
                            id,
                            &services_store::InstanceChanges {
                                proposed_plan_id: Some(Some(plan_id)),
                                ..Default::default()
                            },
                        )
                        .map_err(store_error)
                    })
                    .await;
            }
            if let (Ok(Outcome::Done(_)), Some(plan)) = (&answer, &new_plan) {
                let (id, plan_id) = (context.instance.id, plan.id);
                runner
                    .record(move |conn| {
                        services_store::update_instance(
                            conn,
                            id,
                            &services_store::InstanceChanges {
                                service_plan_id: Some(plan_id),
                                ..Default::default()
                            },
                        )
                        .map_err(store_error)
                    })
                    .await;
            }
            runner
                .after_instance_request(job_guid, context, "update", answer, Some(first))
                .await;
        });
        receiver
    }

    /// Deletes a managed instance: unbinds its bindings, then deprovisions it.
    pub fn deprovision(
        self: &Arc<Self>,
        job_guid: String,
        instance_id: i32,
        accepts_incomplete: bool,
        user_guid: Option<String>,
    ) -> FirstAnswerReceiver {
        let (first, receiver) = tokio::sync::oneshot::channel();
        let runner = self.clone();
        self.spawn(async move {
            let loaded = runner
                .db
                .run(move |conn| {
                    let context = InstanceContext::load(conn, instance_id)?;
                    let bindings = services_store::bindings_of_instance(conn, instance_id)?;
                    Ok((context, bindings))
                })
                .await;
            let (context, bindings) = match loaded {
                Ok(loaded) => loaded,
                Err(error) => return runner.fail_job(&job_guid, error).await,
            };
            for binding in bindings {
                let answer = runner
                    .client
                    .unbind(
                        &endpoint(&context.broker),
                        &context.instance.guid,
                        &binding.guid,
                        context.ids(),
                        true,
                        user_guid.as_deref(),
                    )
                    .await;
                let failure = match answer {
                    Ok(Outcome::Done(_)) => {
                        let id = binding.id;
                        runner
                            .record(move |conn| services_store::delete_binding(conn, id))
                            .await;
                        continue;
                    }
                    Ok(Outcome::InProgress(_)) => ApiError::with_args(
                        ErrorKind::AsyncServiceInstanceOperationInProgress,
                        &[&context.instance.name],
                    ),
                    Err(failure) => failure.error,
                };
                let (id, description) = (context.instance.id, failure.detail.clone());
                let job_failure = job_error("delete", failure.clone());
                runner
                    .record(move |conn| {
                        services_store::set_instance_state(conn, id, FAILED, Some(&description))?;
                        finish_job(conn, &job_guid, Some(&job_failure), &[])
                    })
                    .await;
                tell(Some(first), FirstAnswer::Failed(failure));
                return;
            }
            let answer = runner
                .client
                .deprovision(
                    &endpoint(&context.broker),
                    &context.instance.guid,
                    context.ids(),
                    accepts_incomplete,
                    user_guid.as_deref(),
                )
                .await;
            let answer = refuse_async(answer, accepts_incomplete, false);
            let answer = answer.map_err(|mut failure| {
                if failure.error.kind == ErrorKind::ConcurrencyError {
                    failure.error = ApiError::with_args(
                        ErrorKind::AsyncServiceInstanceOperationInProgress,
                        &[&context.instance.name],
                    );
                }
                failure
            });
            runner
                .after_instance_request(job_guid, context, "delete", answer, Some(first))
                .await;
        });
        receiver
    }

    /// Deletes the managed instances of these spaces through their brokers (bindings first), as
    /// CC's space and org deletion do. Returns one message per instance that could not be deleted
    /// now (a failure, or an asynchronous deletion that is then polled in the background).
    pub async fn delete_instances_in_spaces(
        self: &Arc<Self>,
        space_ids: Vec<i32>,
        user_guid: Option<String>,
    ) -> Result<Vec<String>, ApiError> {
        let contexts = self
            .db
            .run(move |conn| {
                let mut contexts = Vec::new();
                for instance in services_store::list_instances(conn)? {
                    if space_ids.contains(&instance.space_id)
                        && instance.instance_type == services_store::MANAGED
                    {
                        let bindings = services_store::bindings_of_instance(conn, instance.id)?;
                        contexts.push((InstanceContext::load(conn, instance.id)?, bindings));
                    }
                }
                Ok(contexts)
            })
            .await?;
        let mut failures = Vec::new();
        for (context, bindings) in contexts {
            let broker = endpoint(&context.broker);
            let mut failure = None;
            for binding in bindings {
                match self
                    .client
                    .unbind(
                        &broker,
                        &context.instance.guid,
                        &binding.guid,
                        context.ids(),
                        true,
                        user_guid.as_deref(),
                    )
                    .await
                {
                    Ok(Outcome::Done(_)) => {
                        let id = binding.id;
                        self.record(move |conn| services_store::delete_binding(conn, id))
                            .await;
                    }
                    Ok(Outcome::InProgress(_)) => {
                        failure = Some(
                            ApiError::with_args(
                                ErrorKind::AsyncServiceInstanceOperationInProgress,
                                &[&context.instance.name],
                            )
                            .detail,
                        );
                        break;
                    }
                    Err(error) => {
                        failure = Some(job_error("delete", error.error).detail);
                        break;
                    }
                }
            }
            if let Some(failure) = failure {
                failures.push(failure);
                continue;
            }
            let instance_id = context.instance.id;
            match self
                .client
                .deprovision(
                    &broker,
                    &context.instance.guid,
                    context.ids(),
                    true,
                    user_guid.as_deref(),
                )
                .await
            {
                Ok(Outcome::Done(_)) => {
                    self.record(move |conn| services_store::delete_instance(conn, instance_id))
                        .await;
                }
                Ok(Outcome::InProgress(operation)) => {
                    let guid = context.instance.guid.clone();
                    let job = self
                        .db
                        .run(move |conn| {
                            let job = store::jobs::create(
                                conn,
                                "service_instance.delete",
                                "service_instance",
                                &guid,
                            )?;
                            services_store::start_instance_operation(
                                conn,
                                instance_id,
                                "delete",
                                Some(&job),
                            )?;
                            services_store::set_instance_broker_operation(
                                conn,
                                instance_id,
                                operation.as_deref(),
                            )?;
                            set_job_polling(conn, &job)?;
                            Ok(job)
                        })
                        .await?;
                    failures.push(
                        ApiError::with_args(
                            ErrorKind::AsyncServiceInstanceOperationInProgress,
                            &[&context.instance.name],
                        )
                        .detail,
                    );
                    let poller = self.clone();
                    self.spawn(async move {
                        poller
                            .poll(job, context, PollTarget::Instance, "delete")
                            .await
                    });
                }
                Err(error) => {
                    let message = job_error("delete", error.error).detail;
                    let description = message.clone();
                    self.record(move |conn| {
                        services_store::start_instance_operation(
                            conn,
                            instance_id,
                            "delete",
                            None,
                        )?;
                        services_store::set_instance_state(
                            conn,
                            instance_id,
                            FAILED,
                            Some(&description),
                        )
                    })
                    .await;
                    failures.push(message);
                }
            }
        }
        Ok(failures)
    }

    /// Deletes an app's bindings to managed instances at their brokers before the app goes (CC's
    /// `AppDelete` unbinds first). Returns the messages of the bindings that could not be
    /// deleted now; those rows stay (`delete failed`, or `delete in progress` while polled).
    pub async fn unbind_app(
        self: &Arc<Self>,
        app_guid: &str,
        user_guid: Option<String>,
    ) -> Result<Vec<String>, ApiError> {
        let app_guid = app_guid.to_owned();
        let bindings = self
            .db
            .run(move |conn| {
                let Some(app) = store::apps::find(conn, &app_guid)? else {
                    return Ok(Vec::new());
                };
                let mut found = Vec::new();
                for binding in services_store::list_bindings(conn)? {
                    if binding.app_id != Some(app.id) {
                        continue;
                    }
                    let context = InstanceContext::load(conn, binding.service_instance_id);
                    if let Ok(context) = context {
                        found.push((binding, context, app.name.clone()));
                    }
                }
                Ok(found)
            })
            .await?;
        let mut failures = Vec::new();
        for (binding, context, app_name) in bindings {
            let binding_id = binding.id;
            let answer = self
                .client
                .unbind(
                    &endpoint(&context.broker),
                    &context.instance.guid,
                    &binding.guid,
                    context.ids(),
                    true,
                    user_guid.as_deref(),
                )
                .await;
            match answer {
                Ok(Outcome::Done(_)) => {
                    self.record(move |conn| services_store::delete_binding(conn, binding_id))
                        .await
                }
                Ok(Outcome::InProgress(operation)) => {
                    let guid = binding.guid.clone();
                    let job = self
                        .db
                        .run(move |conn| {
                            let job = store::jobs::create(
                                conn,
                                "service_bindings.delete",
                                "service_credential_binding",
                                &guid,
                            )?;
                            services_store::start_binding_operation(
                                conn,
                                binding_id,
                                "delete",
                                Some(&job),
                            )?;
                            services_store::set_binding_broker_operation(
                                conn,
                                binding_id,
                                operation.as_deref(),
                            )?;
                            set_job_polling(conn, &job)?;
                            Ok(job)
                        })
                        .await?;
                    failures.push(
                        ApiError::with_args(
                            ErrorKind::AsyncServiceBindingOperationInProgress,
                            &[&app_name, &context.instance.name],
                        )
                        .detail,
                    );
                    let poller = self.clone();
                    self.spawn(async move {
                        poller
                            .poll(job, context, PollTarget::Binding(binding_id), "delete")
                            .await
                    });
                }
                Err(error) => {
                    let message = job_error("unbind", error.error).detail;
                    let description = message.clone();
                    self.record(move |conn| {
                        services_store::start_binding_operation(conn, binding_id, "delete", None)?;
                        services_store::set_binding_state(
                            conn,
                            binding_id,
                            FAILED,
                            Some(&description),
                        )
                    })
                    .await;
                    failures.push(message);
                }
            }
        }
        Ok(failures)
    }

    /// Records a provision/update/deprovision answer and polls when it is asynchronous.
    async fn after_instance_request(
        self: &Arc<Self>,
        job_guid: String,
        context: InstanceContext,
        operation_type: &'static str,
        answer: Result<Outcome, BrokerError>,
        first: Option<FirstAnswerSender>,
    ) {
        let instance_id = context.instance.id;
        match answer {
            Ok(Outcome::Done(body)) => {
                let job = job_guid.clone();
                self.record(move |conn| {
                    if operation_type == "delete" {
                        services_store::delete_instance(conn, instance_id)?;
                    } else {
                        if let Some(url) = body.get("dashboard_url").and_then(Value::as_str) {
                            services_store::set_instance_dashboard_url(
                                conn,
                                instance_id,
                                Some(url),
                            )?;
                        }
                        services_store::set_instance_state(conn, instance_id, SUCCEEDED, None)?;
                    }
                    finish_job(conn, &job, None, &[])
                })
                .await;
                tell(first, FirstAnswer::Done);
            }
            Ok(Outcome::InProgress(operation)) => {
                let job = job_guid.clone();
                self.record(move |conn| {
                    services_store::set_instance_broker_operation(
                        conn,
                        instance_id,
                        operation.as_deref(),
                    )?;
                    set_job_polling(conn, &job)
                })
                .await;
                tell(first, FirstAnswer::InProgress);
                self.poll(job_guid, context, PollTarget::Instance, operation_type)
                    .await;
            }
            Err(failure) => {
                let description = failure.error.detail.clone();
                let verb = match operation_type {
                    "create" => "provision",
                    other => other,
                };
                let error = job_error(verb, failure.error.clone());
                self.record(move |conn| {
                    services_store::set_instance_state(
                        conn,
                        instance_id,
                        FAILED,
                        Some(&description),
                    )?;
                    finish_job(conn, &job_guid, Some(&error), &[])
                })
                .await;
                tell(first, FirstAnswer::Failed(failure.error));
                if failure.orphan && operation_type == "create" {
                    self.mitigate_orphan(context, None);
                }
            }
        }
    }

    /// Polls `last_operation` until the broker says succeeded or failed, or time runs out.
    async fn poll(
        self: &Arc<Self>,
        job_guid: String,
        context: InstanceContext,
        target: PollTarget,
        operation_type: &'static str,
    ) {
        let started = tokio::time::Instant::now();
        let plan_limit = context
            .plan
            .maximum_polling_duration
            .filter(|seconds| *seconds > 0)
            .map(|seconds| Duration::from_secs(seconds as u64));
        let limit = plan_limit.map_or(self.max_poll_duration, |plan| {
            plan.min(self.max_poll_duration)
        });
        let deleting = operation_type == "delete";
        let mut attempt: i32 = 0;
        loop {
            let operation = self.current_operation(&context, target).await;
            let binding_guid = match target {
                PollTarget::Binding(id) => self.binding_guid(id).await,
                PollTarget::Instance => None,
            };
            let answer = self
                .client
                .last_operation(
                    &endpoint(&context.broker),
                    &context.instance.guid,
                    binding_guid.as_deref(),
                    context.ids(),
                    operation.as_deref(),
                    deleting,
                )
                .await;
            let retry_after = match answer {
                Ok(LastOperation {
                    state: OperationState::Succeeded,
                    ..
                }) => {
                    self.operation_succeeded(&job_guid, &context, target, operation_type)
                        .await;
                    return;
                }
                Ok(LastOperation {
                    state: OperationState::Failed,
                    description,
                    ..
                }) => {
                    let description = description.unwrap_or_default();
                    // CC's job names for a failed last operation.
                    let verb = match (target, operation_type) {
                        (PollTarget::Instance, "create") => "create managed",
                        (PollTarget::Instance, "update") => "update",
                        (PollTarget::Instance, _) => "delete",
                        (PollTarget::Binding(_), "create") => "create",
                        (PollTarget::Binding(_), _) => "unbind",
                    };
                    let error =
                        ApiError::with_args(ErrorKind::UnableToPerform, &[verb, &description]);
                    self.operation_failed(&job_guid, &context, target, &description, error)
                        .await;
                    return;
                }
                Ok(LastOperation { retry_after, .. }) => retry_after,
                Err(failure) => {
                    tracing::warn!(error = %failure.error, instance = %context.instance.guid, "polling the service broker failed; polling again");
                    None
                }
            };
            let backoff = self.poll_interval;
            let requested = retry_after
                .map(|seconds| {
                    Duration::from_secs(seconds).clamp(self.poll_interval, MAX_POLL_INTERVAL)
                })
                .unwrap_or(backoff);
            let wait = requested.max(backoff).min(MAX_POLL_INTERVAL);
            attempt += 1;
            if started.elapsed() + wait > limit {
                let verb = match (target, operation_type) {
                    (PollTarget::Instance, "create") => "provision",
                    (PollTarget::Instance, "update") => "update",
                    (PollTarget::Instance, _) => "deprovision",
                    (PollTarget::Binding(_), "create") => "bind",
                    (PollTarget::Binding(_), _) => "unbind",
                };
                let description =
                    format!("Service Broker failed to {verb} within the required time.");
                self.operation_failed(
                    &job_guid,
                    &context,
                    target,
                    &description,
                    ApiError::plain(ErrorKind::JobTimeout),
                )
                .await;
                if operation_type == "create" {
                    let binding = match target {
                        PollTarget::Binding(id) => self.binding_guid(id).await,
                        PollTarget::Instance => None,
                    };
                    self.mitigate_orphan(context, binding);
                }
                tracing::info!(attempt, "gave up polling the service broker");
                return;
            }
            tokio::time::sleep(wait).await;
        }
    }

    async fn current_operation(
        &self,
        context: &InstanceContext,
        target: PollTarget,
    ) -> Option<String> {
        let instance_id = context.instance.id;
        self.db
            .run(move |conn| {
                Ok(match target {
                    PollTarget::Instance => services_store::find_instance_by_id(conn, instance_id)?
                        .and_then(|instance| instance.broker_operation),
                    PollTarget::Binding(id) => services_store::find_binding_by_id(conn, id)?
                        .and_then(|binding| binding.broker_operation),
                })
            })
            .await
            .ok()
            .flatten()
    }

    async fn binding_guid(&self, binding_id: i32) -> Option<String> {
        self.db
            .run(move |conn| services_store::find_binding_by_id(conn, binding_id))
            .await
            .ok()
            .flatten()
            .map(|binding| binding.guid)
    }

    async fn operation_succeeded(
        self: &Arc<Self>,
        job_guid: &str,
        context: &InstanceContext,
        target: PollTarget,
        operation_type: &'static str,
    ) {
        let instance_id = context.instance.id;
        let job = job_guid.to_owned();
        match target {
            PollTarget::Instance => {
                // Pick up the dashboard URL the broker may only report on fetch.
                let mut dashboard_url = None;
                if operation_type != "delete" && context.offering.instances_retrievable {
                    match self
                        .client
                        .fetch(
                            &endpoint(&context.broker),
                            &context.instance.guid,
                            None,
                            context.ids(),
                            None,
                        )
                        .await
                    {
                        Ok(body) => {
                            dashboard_url = body
                                .get("dashboard_url")
                                .and_then(Value::as_str)
                                .map(str::to_owned)
                        }
                        Err(failure) => {
                            tracing::info!(error = %failure.error, "fetching the service instance failed")
                        }
                    }
                }
                self.record(move |conn| {
                    if operation_type == "delete" {
                        services_store::delete_instance(conn, instance_id)?;
                    } else {
                        if let Some(url) = dashboard_url {
                            services_store::set_instance_dashboard_url(
                                conn,
                                instance_id,
                                Some(&url),
                            )?;
                        }
                        if let Some(instance) =
                            services_store::find_instance_by_id(conn, instance_id)?
                        {
                            if let Some(plan_id) = instance.proposed_plan_id {
                                services_store::update_instance(
                                    conn,
                                    instance_id,
                                    &services_store::InstanceChanges {
                                        service_plan_id: Some(plan_id),
                                        proposed_plan_id: Some(None),
                                        ..Default::default()
                                    },
                                )
                                .map_err(store_error)?;
                            }
                        }
                        services_store::set_instance_state(conn, instance_id, SUCCEEDED, None)?;
                    }
                    finish_job(conn, &job, None, &[])
                })
                .await;
            }
            PollTarget::Binding(binding_id) => {
                if operation_type == "delete" {
                    self.record(move |conn| {
                        services_store::delete_binding(conn, binding_id)?;
                        finish_job(conn, &job, None, &[])
                    })
                    .await;
                    return;
                }
                let binding_guid = self.binding_guid(binding_id).await.unwrap_or_default();
                let fetched = self
                    .client
                    .fetch(
                        &endpoint(&context.broker),
                        &context.instance.guid,
                        Some(&binding_guid),
                        context.ids(),
                        None,
                    )
                    .await;
                match fetched {
                    Ok(body) => {
                        self.record(move |conn| {
                            services_store::set_binding_result(conn, binding_id, &body)?;
                            services_store::set_binding_state(conn, binding_id, SUCCEEDED, None)?;
                            finish_job(conn, &job, None, &[])
                        })
                        .await
                    }
                    Err(failure) => {
                        self.operation_failed(
                            job_guid,
                            context,
                            target,
                            &failure.error.detail.clone(),
                            job_error("bind", failure.error),
                        )
                        .await;
                        self.mitigate_orphan(context.clone(), Some(binding_guid));
                    }
                }
            }
        }
    }

    async fn operation_failed(
        &self,
        job_guid: &str,
        context: &InstanceContext,
        target: PollTarget,
        description: &str,
        error: ApiError,
    ) {
        let instance_id = context.instance.id;
        let job = job_guid.to_owned();
        let description = description.to_owned();
        self.record(move |conn| {
            match target {
                PollTarget::Instance => {
                    if let Some(instance) = services_store::find_instance_by_id(conn, instance_id)?
                    {
                        if instance.proposed_plan_id.is_some() {
                            services_store::update_instance(
                                conn,
                                instance_id,
                                &services_store::InstanceChanges {
                                    proposed_plan_id: Some(None),
                                    ..Default::default()
                                },
                            )
                            .map_err(store_error)?;
                        }
                    }
                    services_store::set_instance_state(
                        conn,
                        instance_id,
                        FAILED,
                        Some(&description),
                    )?
                }
                PollTarget::Binding(id) => {
                    services_store::set_binding_state(conn, id, FAILED, Some(&description))?
                }
            }
            finish_job(conn, &job, Some(&error), &[])
        })
        .await;
    }

    // -----------------------------------------------------------------------------------------
    // Bindings

    /// Creates a binding (app or key) at the broker.
    pub fn bind(
        self: &Arc<Self>,
        job_guid: String,
        binding_id: i32,
        parameters: Option<Value>,
        accepts_incomplete: bool,
        user_guid: Option<String>,
    ) -> FirstAnswerReceiver {
        let (first, receiver) = tokio::sync::oneshot::channel();
        let runner = self.clone();
        self.spawn(async move {
            runner
                .bind_work(
                    job_guid,
                    binding_id,
                    parameters,
                    accepts_incomplete,
                    user_guid,
                    Some(first),
                )
                .await
        });
        receiver
    }

    /// The work of [`ServiceRunner::bind`], finished (polled) before it returns.
    async fn bind_work(
        self: Arc<Self>,
        job_guid: String,
        binding_id: i32,
        parameters: Option<Value>,
        accepts_incomplete: bool,
        user_guid: Option<String>,
        first: Option<FirstAnswerSender>,
    ) {
        let runner = self;
        {
            let loaded = runner
                .db
                .run(move |conn| {
                    let binding = services_store::find_binding_by_id(conn, binding_id)?
                        .ok_or_else(|| ApiError::not_found("Service credential binding"))?;
                    let context = InstanceContext::load(conn, binding.service_instance_id)?;
                    let app = binding
                        .app_id
                        .map(|id| store::apps::find_by_id(conn, id))
                        .transpose()?
                        .flatten();
                    Ok((binding, context, app))
                })
                .await;
            let (binding, context, app) = match loaded {
                Ok(loaded) => loaded,
                Err(error) => return runner.fail_job(&job_guid, error).await,
            };
            let mut body = json!({
                "service_id": context.offering.broker_id,
                "plan_id": context.plan.broker_id,
                "context": context.context(false),
                "bind_resource": {},
            });
            if let Some(app) = &app {
                body["app_guid"] = json!(app.guid);
                body["bind_resource"] = json!({"app_guid": app.guid, "space_guid": context.space.guid, "app_annotations": {}});
            }
            if let Some(parameters) =
                parameters.filter(|value| value.as_object().is_some_and(|map| !map.is_empty()))
            {
                body["parameters"] = parameters;
            }
            let answer = runner
                .client
                .bind(
                    &endpoint(&context.broker),
                    &context.instance.guid,
                    &binding.guid,
                    &body,
                    context.bind_rules(),
                    accepts_incomplete,
                    user_guid.as_deref(),
                )
                .await;
            let answer = refuse_async(answer, accepts_incomplete, true);
            runner
                .after_binding_request(job_guid, context, binding, "create", answer, first)
                .await;
        }
    }

    /// Binds an app to the instances named in its manifest's `services:` (in the app's space),
    /// as CC's `apply_manifest` does: bindings that already succeeded are kept, others are
    /// created and waited for. Errors read "For service '<name>': <message>".
    pub async fn bind_manifest_services(
        self: &Arc<Self>,
        app_guid: &str,
        services: Vec<ManifestService>,
        user_guid: Option<String>,
    ) -> Result<(), ApiError> {
        for service in services {
            let app_guid = app_guid.to_owned();
            let wanted = service.clone();
            let created = self
                .db
                .run(move |conn| manifest_binding(conn, &app_guid, &wanted))
                .await?;
            let Some((binding_id, managed)) = created else {
                continue;
            };
            if managed {
                self.clone()
                    .bind_work(
                        String::new(),
                        binding_id,
                        service.parameters.clone(),
                        true,
                        user_guid.clone(),
                        None,
                    )
                    .await;
            }
            let binding = self
                .db
                .run(move |conn| services_store::find_binding_by_id(conn, binding_id))
                .await?;
            match binding {
                Some(binding) if binding.last_operation_state == SUCCEEDED => {}
                Some(binding) => {
                    return Err(ApiError::unprocessable(format!(
                        "For service '{}': {}",
                        service.name,
                        binding.last_operation_description.unwrap_or_default()
                    )))
                }
                None => {
                    return Err(ApiError::unprocessable(format!(
                        "For service '{}': The binding could not be created",
                        service.name
                    )))
                }
            }
        }
        Ok(())
    }

    /// Deletes a binding at the broker.
    pub fn unbind(
        self: &Arc<Self>,
        job_guid: String,
        binding_id: i32,
        accepts_incomplete: bool,
        user_guid: Option<String>,
    ) -> FirstAnswerReceiver {
        let (first, receiver) = tokio::sync::oneshot::channel();
        let runner = self.clone();
        self.spawn(async move {
            let loaded = runner
                .db
                .run(move |conn| {
                    let binding = services_store::find_binding_by_id(conn, binding_id)?
                        .ok_or_else(|| ApiError::not_found("Service credential binding"))?;
                    let context = InstanceContext::load(conn, binding.service_instance_id)?;
                    let app_name = binding
                        .app_id
                        .map(|id| store::apps::find_by_id(conn, id))
                        .transpose()?
                        .flatten()
                        .map(|app| app.name);
                    Ok((binding, context, app_name))
                })
                .await;
            let (binding, context, app_name) = match loaded {
                Ok(loaded) => loaded,
                Err(error) => return runner.fail_job(&job_guid, error).await,
            };
            let answer = runner
                .client
                .unbind(
                    &endpoint(&context.broker),
                    &context.instance.guid,
                    &binding.guid,
                    context.ids(),
                    accepts_incomplete,
                    user_guid.as_deref(),
                )
                .await;
            let answer = refuse_async(answer, accepts_incomplete, false).map_err(|mut failure| {
                if failure.error.kind == ErrorKind::ConcurrencyError {
                    failure.error = ApiError::with_args(
                        ErrorKind::AsyncServiceBindingOperationInProgress,
                        &[
                            app_name.as_deref().unwrap_or_default(),
                            &context.instance.name,
                        ],
                    );
                }
                failure
            });
            runner
                .after_binding_request(job_guid, context, binding, "delete", answer, Some(first))
                .await;
        });
        receiver
    }

    async fn after_binding_request(
        self: &Arc<Self>,
        job_guid: String,
        context: InstanceContext,
        binding: CredentialBindingRow,
        operation_type: &'static str,
        answer: Result<Outcome, BrokerError>,
        first: Option<FirstAnswerSender>,
    ) {
        let binding_id = binding.id;
        match answer {
            Ok(Outcome::Done(body)) => {
                let job = job_guid.clone();
                self.record(move |conn| {
                    if operation_type == "delete" {
                        services_store::delete_binding(conn, binding_id)?;
                    } else {
                        services_store::set_binding_result(conn, binding_id, &body)?;
                        services_store::set_binding_state(conn, binding_id, SUCCEEDED, None)?;
                    }
                    finish_job(conn, &job, None, &[])
                })
                .await;
                tell(first, FirstAnswer::Done);
            }
            Ok(Outcome::InProgress(operation)) => {
                let job = job_guid.clone();
                self.record(move |conn| {
                    services_store::set_binding_broker_operation(
                        conn,
                        binding_id,
                        operation.as_deref(),
                    )?;
                    set_job_polling(conn, &job)
                })
                .await;
                tell(first, FirstAnswer::InProgress);
                self.poll(
                    job_guid,
                    context,
                    PollTarget::Binding(binding_id),
                    operation_type,
                )
                .await;
            }
            Err(failure) => {
                let description = failure.error.detail.clone();
                let verb = if operation_type == "create" {
                    "bind"
                } else {
                    "unbind"
                };
                let error = job_error(verb, failure.error.clone());
                self.record(move |conn| {
                    services_store::set_binding_state(
                        conn,
                        binding_id,
                        FAILED,
                        Some(&description),
                    )?;
                    finish_job(conn, &job_guid, Some(&error), &[])
                })
                .await;
                tell(first, FirstAnswer::Failed(failure.error));
                if failure.orphan && operation_type == "create" {
                    self.mitigate_orphan(context, Some(binding.guid));
                }
            }
        }
    }

    // -----------------------------------------------------------------------------------------
    // Orphan mitigation

    /// Deletes at the broker an instance (or, with `binding_guid`, a binding) that a failed
    /// create may have left there: up to 11 attempts, 2^attempt minutes apart, no user identity.
    pub fn mitigate_orphan(
        self: &Arc<Self>,
        context: InstanceContext,
        binding_guid: Option<String>,
    ) {
        let runner = self.clone();
        self.spawn(async move {
            let broker = endpoint(&context.broker);
            for attempt in 0..ORPHAN_MITIGATION_ATTEMPTS {
                if attempt > 0 {
                    tokio::time::sleep(Duration::from_secs(60 * (1u64 << attempt))).await;
                }
                let answer = match &binding_guid {
                    Some(binding) => {
                        runner
                            .client
                            .unbind(&broker, &context.instance.guid, binding, context.ids(), true, None)
                            .await
                    }
                    None => {
                        runner
                            .client
                            .deprovision(&broker, &context.instance.guid, context.ids(), true, None)
                            .await
                    }
                };
                match answer {
                    Ok(_) => {
                        tracing::info!(instance = %context.instance.guid, binding = ?binding_guid, "orphan mitigation succeeded");
                        return;
                    }
                    Err(failure) => tracing::warn!(error = %failure.error, attempt, instance = %context.instance.guid, "orphan mitigation failed"),
                }
            }
        });
    }
}

/// One `services:` entry of an app manifest.
#[derive(Debug, Clone)]
pub struct ManifestService {
    /// The service instance's name (in the app's space).
    pub name: String,
    /// `binding_name`.
    pub binding_name: Option<String>,
    /// `parameters` sent to the broker.
    pub parameters: Option<Value>,
}

/// Reads an app manifest's `services:` (names, or objects with `name`, `binding_name`,
/// `parameters`), with CC's validation messages.
pub fn manifest_services(services: &Value) -> Result<Vec<ManifestService>, String> {
    let items = match services {
        Value::Null => return Ok(Vec::new()),
        Value::Array(items) => items,
        _ => return Err("Services must be a list of service instance names".to_owned()),
    };
    let mut parsed = Vec::new();
    for item in items {
        match item {
            Value::String(name) => parsed.push(ManifestService {
                name: name.clone(),
                binding_name: None,
                parameters: None,
            }),
            Value::Object(object) => {
                let name = object
                    .get("name")
                    .and_then(Value::as_str)
                    .filter(|name| !name.is_empty())
                    .ok_or_else(|| "Service name must be a string".to_owned())?;
                let binding_name = match object.get("binding_name") {
                    None | Some(Value::Null) => None,
                    Some(Value::String(binding)) => Some(binding.clone()),
                    Some(_) => return Err("Service binding name must be a string".to_owned()),
                };
                let parameters = match object.get("parameters") {
                    None | Some(Value::Null) => None,
                    Some(Value::Object(map)) => Some(Value::Object(map.clone())),
                    Some(_) => return Err("Service parameters must be an object".to_owned()),
                };
                parsed.push(ManifestService {
                    name: name.to_owned(),
                    binding_name,
                    parameters,
                });
            }
            _ => return Err("Services must be a list of service instance names".to_owned()),
        }
    }
    Ok(parsed)
}

/// Creates the binding row for one manifest service, unless the app already has a successful
/// binding to it: `(binding id, managed)`.
fn manifest_binding(
    conn: &mut DbConn,
    app_guid: &str,
    service: &ManifestService,
) -> Result<Option<(i32, bool)>, ApiError> {
    let app = store::apps::find(conn, app_guid)?.ok_or_else(|| ApiError::not_found("App"))?;
    let instance = services_store::find_instance_by_name(conn, app.space_id, &service.name)?
        .ok_or_else(|| {
            ApiError::with_args(
                ErrorKind::ResourceNotFound,
                &[&format!("Service instance '{}' not found", service.name)],
            )
        })?;
    let in_error = |message: &str| {
        ApiError::unprocessable(format!("For service '{}': {message}", service.name))
    };
    for binding in services_store::bindings_of_instance(conn, instance.id)? {
        if binding.app_id != Some(app.id) {
            continue;
        }
        match (binding.last_operation_type.as_str(), binding.last_operation_state.as_str()) {
            ("create", SUCCEEDED) => return Ok(None),
            (operation, IN_PROGRESS) => {
                return Err(in_error(&format!(
                    "A binding is being {operation}d. Retry this operation later."
                )))
            }
            ("delete", FAILED) => return Err(in_error("A binding failed to be deleted. Resolve the issue with this binding before retrying this operation.")),
            _ => services_store::delete_binding(conn, binding.id)?,
        }
    }
    let managed = instance.instance_type == services_store::MANAGED;
    if managed {
        let context = InstanceContext::load(conn, instance.id)?;
        if !context.plan.bindable.unwrap_or(context.offering.bindable) {
            return Err(in_error("Service plan does not allow bindings."));
        }
        if instance_busy(&instance) {
            return Err(in_error(&format!(
                "An operation for service instance {} is in progress.",
                instance.name
            )));
        }
    }
    let binding = services_store::create_binding(
        conn,
        &services_store::NewBinding {
            binding_type: "app".to_owned(),
            name: service.binding_name.clone(),
            service_instance_id: instance.id,
            app_id: Some(app.id),
            credentials: if managed {
                None
            } else {
                instance.credentials.clone()
            },
            syslog_drain_url: if managed {
                None
            } else {
                instance.syslog_drain_url.clone()
            },
            parameters: service.parameters.as_ref().map(Value::to_string),
            state: if managed { IN_PROGRESS } else { SUCCEEDED }.to_owned(),
        },
    )
    .map_err(store_error)?;
    Ok(Some((binding.id, managed)))
}

/// CC's v3 jobs report a broker's failure as `UnableToPerform` ("<verb> could not be completed:
/// <message>"); errors of CC's own catalog pass through.
fn job_error(verb: &str, error: ApiError) -> ApiError {
    match error.kind {
        ErrorKind::AsyncServiceInstanceOperationInProgress
        | ErrorKind::AsyncServiceBindingOperationInProgress
        | ErrorKind::JobTimeout
        | ErrorKind::ServiceBindingInvalid
        | ErrorKind::ResourceNotFound
        | ErrorKind::UnableToPerform
        | ErrorKind::ServerError => error,
        _ => ApiError::with_args(ErrorKind::UnableToPerform, &[verb, &error.detail]),
    }
}

fn store_error(error: store::StoreError) -> ApiError {
    match error {
        store::StoreError::Conflict => ApiError::unprocessable("conflict"),
        store::StoreError::Api(error) => error,
    }
}

/// `in progress` states refuse new operations on the instance (CC's
/// `AsyncServiceInstanceOperationInProgress`).
pub fn instance_busy(instance: &ServiceInstanceRow) -> bool {
    instance.last_operation_state.as_deref() == Some(IN_PROGRESS)
}

/// Parameters must be a JSON object.
pub fn parameters_object(value: Option<&Value>) -> Result<Option<Value>, ApiError> {
    match value {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Object(map)) => Ok(Some(Value::Object(map.clone()))),
        Some(_) => Err(ApiError::unprocessable("Parameters must be an object")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn manifest_services_take_names_and_objects() {
        let services = manifest_services(&json!([
            "db",
            {"name": "queue", "binding_name": "q", "parameters": {"a": 1}},
        ]))
        .unwrap();
        assert_eq!(services.len(), 2);
        assert_eq!(services[1].binding_name.as_deref(), Some("q"));
        assert_eq!(services[1].parameters, Some(json!({"a": 1})));
        assert!(manifest_services(&json!("db")).is_err());
        assert!(manifest_services(&json!([{"binding_name": "x"}])).is_err());
    }

    #[test]
    fn broker_failures_become_unable_to_perform() {
        let error = job_error(
            "provision",
            ApiError::with_args(
                ErrorKind::ServiceBrokerBadResponse,
                &["Service broker error: x"],
            ),
        );
        assert_eq!(error.kind, ErrorKind::UnableToPerform);
        assert_eq!(
            error.detail,
            "provision could not be completed: Service broker error: x"
        );
        let kept = job_error("provision", ApiError::plain(ErrorKind::JobTimeout));
        assert_eq!(kept.kind, ErrorKind::JobTimeout);
    }
}
