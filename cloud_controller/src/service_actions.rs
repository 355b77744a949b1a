//! The checks and row changes behind each services write request, shared by the v3 and v2
//! handlers: create, update and delete of managed and user-provided instances, and of credential
//! bindings (app bindings and service keys). Handlers parse their API's body shape, call one of
//! these inside a database call, hand the broker work to [`crate::service_jobs::ServiceRunner`],
//! and render a [`Refusal`] in their API's words.

use serde_json::{Map, Value};

use crate::auth::CurrentUser;
use crate::db::models::{
    AppRow, CredentialBindingRow, ServiceBrokerRow, ServiceInstanceRow, SpaceRow,
};
use crate::db::DbConn;
use crate::error::{ApiError, ErrorKind};
use crate::permissions::Permissions;
use crate::service_jobs::{instance_busy, InstanceContext};
use crate::store;
use crate::store::services::{self as services_store, MANAGED, USER_PROVIDED};
use crate::store::StoreError;
use crate::v3::service_catalog::CatalogIndex;

/// CC's description of a finished user-provided instance operation.
pub const OPERATION_SUCCEEDED: &str = "Operation succeeded";

/// Why a services request was refused, where v3 and v2 word (or code) it differently. Each API
/// passes its [`Wording`]; errors both answer alike are plain [`ApiError`]s.
#[derive(Debug)]
pub enum Refusal {
    /// The space does not exist or the caller cannot see it.
    SpaceNotFound(String),
    /// The plan does not exist, is inactive, invisible or unavailable in the space.
    PlanNotFound(String),
    /// Another instance of the space has this name.
    InstanceNameTaken(String),
    /// The requested plan belongs to another offering.
    PlanOfOtherOffering,
    /// The offering does not allow plan changes.
    PlanNotUpdateable,
    /// The instance to bind does not exist or the caller cannot see it.
    InstanceNotFound(String),
    /// The instance to bind failed to be created.
    InstanceCreateFailed(String),
    /// The app to bind does not exist or the caller cannot see it.
    AppNotFound(String),
    /// The app and the instance are in different spaces.
    DifferentSpaces,
    /// The app is already bound to the instance.
    AppAlreadyBound,
    /// The instance already has a key of this name.
    KeyNameTaken(String),
    /// Keys of user-provided instances.
    KeyForUserProvided,
    /// The plan does not allow bindings.
    NotBindable,
    /// Another broker has this name.
    BrokerNameTaken(String),
    /// The broker URL is not an http(s) URL with a host.
    BrokerUrlInvalid(String),
    /// The broker URL carries a user name or password.
    BrokerUrlBasicAuth,
    /// Plans of space-scoped brokers are visible in their space only.
    SpaceScopedPlanVisibility,
}

/// An API's words for each [`Refusal`].
pub type Wording = fn(Refusal) -> ApiError;

fn store_refusal(
    words: Wording,
    conflict: impl Fn() -> Refusal,
) -> impl Fn(StoreError) -> ApiError {
    move |error| match error {
        StoreError::Conflict => words(conflict()),
        StoreError::Api(error) => error,
    }
}

/// CC's refusal of a new operation while one is in progress.
pub fn busy(instance: &ServiceInstanceRow) -> ApiError {
    ApiError::with_args(
        ErrorKind::AsyncServiceInstanceOperationInProgress,
        &[&instance.name],
    )
}

// ---------------------------------------------------------------------------------------------
// Field readers (CC's v3 messages; v2 handlers re-code them)

/// `tags`: a list of strings of at most 2048 characters together.
pub fn tags_of(object: &Map<String, Value>) -> Result<Option<Vec<String>>, ApiError> {
    match object.get("tags") {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Array(items)) => {
            let tags: Option<Vec<String>> = items
                .iter()
                .map(|item| item.as_str().map(str::to_owned))
                .collect();
            let tags =
                tags.ok_or_else(|| ApiError::unprocessable("Tags must be a list of strings"))?;
            if tags.concat().chars().count() > 2048 {
                return Err(ApiError::unprocessable(
                    "Tags are too long. Combined length of tags must be 2048 characters or less.",
                ));
            }
            Ok(Some(tags))
        }
        Some(_) => Err(ApiError::unprocessable("Tags must be a list of strings")),
    }
}

/// A URL field: absent (`None`), cleared (`Some(None)`, also for `""`) or a URL with a host
/// (https only for route services).
pub fn url_field(
    object: &Map<String, Value>,
    field: &str,
    label: &str,
    https_only: bool,
) -> Result<Option<Option<String>>, ApiError> {
    match object.get(field) {
        None => Ok(None),
        Some(Value::Null) => Ok(Some(None)),
        Some(Value::String(text)) if text.is_empty() => Ok(Some(None)),
        Some(Value::String(text)) => {
            let valid = url::Url::parse(text).ok().is_some_and(|url| {
                url.host().is_some() && (!https_only || url.scheme() == "https")
            });
            if !valid {
                let message = if https_only {
                    format!("{label} must be https")
                } else {
                    format!("{label} must be a valid URI")
                };
                return Err(ApiError::unprocessable(message));
            }
            Ok(Some(Some(text.clone())))
        }
        Some(_) => Err(ApiError::unprocessable(format!("{label} must be a string"))),
    }
}

/// `credentials`: an object, stored as JSON text.
pub fn credentials_of(object: &Map<String, Value>) -> Result<Option<String>, ApiError> {
    match object.get("credentials") {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Object(map)) => Ok(Some(Value::Object(map.clone()).to_string())),
        Some(_) => Err(ApiError::unprocessable("Credentials must be an object")),
    }
}

// ---------------------------------------------------------------------------------------------
// Instances

/// The instance with its space, if it exists and the caller may read its space (each API words
/// the `None`).
pub fn readable_instance(
    conn: &mut DbConn,
    permissions: &Permissions,
    guid: &str,
) -> Result<Option<(ServiceInstanceRow, SpaceRow)>, ApiError> {
    let Some(instance) = services_store::find_instance(conn, guid)? else {
        return Ok(None);
    };
    Ok(store::spaces::find_by_id(conn, instance.space_id)?
        .filter(|space| permissions.can_read_space(space.id, space.organization_id))
        .map(|space| (instance, space)))
}

/// The space an instance is created in: visible, writable, with `service_instance_creation`
/// enabled for non-admins.
fn creation_space(
    conn: &mut DbConn,
    words: Wording,
    user: &CurrentUser,
    permissions: &Permissions,
    space_guid: &str,
) -> Result<SpaceRow, ApiError> {
    if !user.is_admin() {
        crate::permissions::require_feature_flag(conn, "service_instance_creation", user)?;
    }
    let space = store::spaces::find(conn, space_guid)?
        .filter(|space| permissions.can_read_space(space.id, space.organization_id))
        .ok_or_else(|| words(Refusal::SpaceNotFound(space_guid.to_owned())))?;
    require_writer(permissions, &space)?;
    Ok(space)
}

/// Space developers (and admins) change the services of a space.
pub fn require_writer(permissions: &Permissions, space: &SpaceRow) -> Result<(), ApiError> {
    if permissions.can_write_to_space(space.id) {
        Ok(())
    } else {
        Err(ApiError::forbidden())
    }
}

/// A user-provided instance's fields at creation.
#[derive(Debug, Clone, Default)]
pub struct NewUserProvided {
    /// Name.
    pub name: String,
    /// The space's guid.
    pub space_guid: String,
    /// Credentials JSON.
    pub credentials: String,
    /// Syslog drain URL.
    pub syslog_drain_url: Option<String>,
    /// Route service URL.
    pub route_service_url: Option<String>,
    /// Tags.
    pub tags: Vec<String>,
}

/// Creates a user-provided instance (no broker involved).
pub fn create_user_provided(
    conn: &mut DbConn,
    words: Wording,
    user: &CurrentUser,
    permissions: &Permissions,
    fields: NewUserProvided,
) -> Result<(ServiceInstanceRow, SpaceRow), ApiError> {
    let space = creation_space(conn, words, user, permissions, &fields.space_guid)?;
    let name = fields.name;
    let instance = services_store::create_instance(
        conn,
        &services_store::NewInstance {
            name: name.clone(),
            instance_type: USER_PROVIDED.to_owned(),
            space_id: space.id,
            credentials: Some(fields.credentials),
            syslog_drain_url: fields.syslog_drain_url,
            route_service_url: fields.route_service_url,
            tags: fields.tags,
            last_operation_state: services_store::SUCCEEDED.to_owned(),
            last_operation_description: Some(OPERATION_SUCCEEDED.to_owned()),
            ..Default::default()
        },
    )
    .map_err(store_refusal(words, || {
        Refusal::InstanceNameTaken(name.clone())
    }))?;
    Ok((instance, space))
}

/// A managed instance whose creation was recorded: its job is to be handed to
/// [`crate::service_jobs::ServiceRunner::provision`], and `orphan` (a failed instance of the
/// same name it replaced) to orphan mitigation.
#[derive(Debug)]
pub struct ManagedCreation {
    /// The job recording the provision.
    pub job_guid: String,
    /// The new instance (`create in progress`).
    pub instance: ServiceInstanceRow,
    /// A replaced instance whose create had failed.
    pub orphan: Option<InstanceContext>,
}

/// A managed instance to create.
#[derive(Debug, Clone)]
pub struct NewManaged {
    /// Name.
    pub name: String,
    /// The space's guid.
    pub space_guid: String,
    /// The plan's guid.
    pub plan_guid: String,
    /// Tags.
    pub tags: Vec<String>,
}

/// Records a managed instance `create in progress` with its job.
pub fn begin_managed_create(
    conn: &mut DbConn,
    words: Wording,
    user: &CurrentUser,
    permissions: &Permissions,
    request: NewManaged,
) -> Result<ManagedCreation, ApiError> {
    let NewManaged {
        name,
        space_guid,
        plan_guid,
        tags,
    } = request;
    let (name, space_guid, plan_guid) = (name.as_str(), space_guid.as_str(), plan_guid.as_str());
    let space = creation_space(conn, words, user, permissions, space_guid)?;
    let index = CatalogIndex::load(conn)?;
    let plan = index
        .plans
        .iter()
        .find(|plan| plan.guid == plan_guid)
        .filter(|plan| plan.active && index.plan_visible(Some(permissions), plan))
        .filter(|plan| index.plan_available_in_space(plan, &space))
        .cloned()
        .ok_or_else(|| words(Refusal::PlanNotFound(plan_guid.to_owned())))?;
    conn.write_transaction(|conn| {
        // A managed instance whose create failed makes way for a new one of the same name; the
        // broker is told to forget the old one (CC PR #3988).
        let mut orphan = None;
        if let Some(old) = services_store::find_instance_by_name(conn, space.id, name)? {
            let create_failed = old.instance_type == MANAGED
                && old.last_operation_type.as_deref() == Some("create")
                && old.last_operation_state.as_deref() == Some(services_store::FAILED);
            if create_failed {
                orphan = Some(InstanceContext::load(conn, old.id)?);
                services_store::delete_instance(conn, old.id)?;
            }
        }
        let instance = services_store::create_instance(
            conn,
            &services_store::NewInstance {
                name: name.to_owned(),
                instance_type: MANAGED.to_owned(),
                space_id: space.id,
                service_plan_id: Some(plan.id),
                tags,
                maintenance_info: plan.maintenance_info.clone(),
                last_operation_state: services_store::IN_PROGRESS.to_owned(),
                ..Default::default()
            },
        )
        .map_err(store_refusal(words, || {
            Refusal::InstanceNameTaken(name.to_owned())
        }))?;
        let job = store::jobs::create(
            conn,
            "service_instance.create",
            "service_instance",
            &instance.guid,
        )?;
        services_store::start_instance_operation(conn, instance.id, "create", Some(&job))?;
        Ok(ManagedCreation {
            job_guid: job,
            instance,
            orphan,
        })
    })
}

/// Applies changes to a user-provided instance and records the update.
pub fn update_user_provided(
    conn: &mut DbConn,
    words: Wording,
    instance: &ServiceInstanceRow,
    changes: &services_store::InstanceChanges,
) -> Result<ServiceInstanceRow, ApiError> {
    let taken = changes.name.clone().unwrap_or_default();
    conn.write_transaction(|conn| {
        services_store::update_instance(conn, instance.id, changes)
            .map_err(store_refusal(words, || {
                Refusal::InstanceNameTaken(taken.clone())
            }))?;
        services_store::record_sync_operation(
            conn,
            instance.id,
            "update",
            Some(OPERATION_SUCCEEDED),
        )?;
        Ok(())
    })?;
    services_store::find_instance_by_id(conn, instance.id)?
        .ok_or_else(|| ApiError::not_found("Service instance"))
}

/// What a managed instance update became.
#[derive(Debug)]
pub enum ManagedUpdate {
    /// Only name and tags changed: done, no broker involved.
    Done(Box<ServiceInstanceRow>),
    /// The broker is to be asked: hand this to [`crate::service_jobs::ServiceRunner::update`].
    Started {
        /// The job recording the update.
        job_guid: String,
        /// The new plan, if one was requested.
        plan_id: Option<i32>,
    },
}

/// Checks and records an update of a managed instance: new name and tags at once; a plan change
/// or parameters start an `update in progress` with a job.
pub fn begin_managed_update(
    conn: &mut DbConn,
    words: Wording,
    permissions: &Permissions,
    instance: &ServiceInstanceRow,
    changes: &services_store::InstanceChanges,
    plan_guid: Option<&str>,
    has_parameters: bool,
) -> Result<ManagedUpdate, ApiError> {
    if instance_busy(instance) {
        return Err(busy(instance));
    }
    let index = CatalogIndex::load(conn)?;
    let new_plan = match plan_guid {
        None => None,
        Some(plan_guid) => {
            let plan = index
                .plans
                .iter()
                .find(|plan| plan.guid == plan_guid)
                .filter(|plan| plan.active && index.plan_visible(Some(permissions), plan))
                .cloned()
                .ok_or_else(|| words(Refusal::PlanNotFound(plan_guid.to_owned())))?;
            let current = instance
                .service_plan_id
                .and_then(|id| index.plans.iter().find(|plan| plan.id == id));
            if current
                .is_some_and(|current| current.service_offering_id != plan.service_offering_id)
            {
                return Err(words(Refusal::PlanOfOtherOffering));
            }
            let updateable = current.is_some_and(|current| {
                current.plan_updateable.unwrap_or_else(|| {
                    index
                        .offerings
                        .get(&current.service_offering_id)
                        .is_some_and(|offering| offering.plan_updateable)
                })
            });
            if current.map(|current| current.id) != Some(plan.id) && !updateable {
                return Err(words(Refusal::PlanNotUpdateable));
            }
            Some(plan)
        }
    };
    let taken = changes.name.clone().unwrap_or_default();
    conn.write_transaction(|conn| {
        services_store::update_instance(conn, instance.id, changes)
            .map_err(store_refusal(words, || {
                Refusal::InstanceNameTaken(taken.clone())
            }))?;
        if new_plan.is_none() && !has_parameters {
            services_store::record_sync_operation(conn, instance.id, "update", None)?;
            let instance = services_store::find_instance_by_id(conn, instance.id)?
                .ok_or_else(|| ApiError::not_found("Service instance"))?;
            return Ok(ManagedUpdate::Done(Box::new(instance)));
        }
        let job = store::jobs::create(
            conn,
            "service_instance.update",
            "service_instance",
            &instance.guid,
        )?;
        services_store::start_instance_operation(conn, instance.id, "update", Some(&job))?;
        Ok(ManagedUpdate::Started {
            job_guid: job,
            plan_id: new_plan.map(|plan| plan.id),
        })
    })
}

/// Deletes an instance, or starts `delete in progress` with a job (returned) for a managed one
/// the broker must deprovision. `purge` forgets it without asking its broker: admins, or space
/// developers for instances of a space-scoped broker.
pub fn begin_instance_delete(
    conn: &mut DbConn,
    permissions: &Permissions,
    instance: &ServiceInstanceRow,
    purge: bool,
) -> Result<Option<String>, ApiError> {
    if purge {
        let index = CatalogIndex::load(conn)?;
        let space_scoped = instance
            .service_plan_id
            .and_then(|id| index.plans.iter().find(|plan| plan.id == id))
            .and_then(|plan| index.broker_of_plan(plan))
            .is_some_and(|broker| broker.space_id.is_some());
        if !permissions.can_write_globally() && !space_scoped && instance.instance_type == MANAGED {
            return Err(ApiError::forbidden());
        }
        services_store::delete_instance(conn, instance.id)?;
        return Ok(None);
    }
    if instance.instance_type == USER_PROVIDED {
        services_store::delete_instance(conn, instance.id)?;
        return Ok(None);
    }
    if instance_busy(instance) && instance.last_operation_type.as_deref() != Some("create") {
        return Err(busy(instance));
    }
    let bindings = services_store::bindings_of_instance(conn, instance.id)?;
    if bindings
        .iter()
        .any(|binding| binding.last_operation_state == services_store::IN_PROGRESS)
    {
        return Err(busy(instance));
    }
    Ok(Some(conn.write_transaction(|conn| {
        let job = store::jobs::create(
            conn,
            "service_instance.delete",
            "service_instance",
            &instance.guid,
        )?;
        services_store::start_instance_operation(conn, instance.id, "delete", Some(&job))?;
        Ok::<_, ApiError>(job)
    })?))
}

// ---------------------------------------------------------------------------------------------
// Credential bindings

/// A binding to create.
#[derive(Debug, Clone)]
pub struct NewCredentialBinding {
    /// `app` or `key`.
    pub kind: String,
    /// Binding name (required for keys).
    pub name: Option<String>,
    /// The instance's guid.
    pub instance_guid: String,
    /// The app's guid (app bindings).
    pub app_guid: Option<String>,
    /// Parameters JSON, kept for the broker request.
    pub parameters: Option<String>,
}

/// What a binding creation became.
#[derive(Debug)]
pub enum BindingStart {
    /// Bound at once (user-provided instance).
    Done(CredentialBindingRow),
    /// `create in progress`: hand the job to [`crate::service_jobs::ServiceRunner::bind`].
    Started {
        /// The job recording the bind.
        job_guid: String,
        /// The binding.
        binding: CredentialBindingRow,
    },
}

/// A binding creation with the instance and app it concerns.
#[derive(Debug)]
pub struct BindingCreation {
    /// The outcome.
    pub start: BindingStart,
    /// The instance.
    pub instance: ServiceInstanceRow,
    /// The app (app bindings).
    pub app: Option<AppRow>,
}

/// Checks and records a new app binding or service key.
pub fn begin_binding(
    conn: &mut DbConn,
    words: Wording,
    permissions: &Permissions,
    request: &NewCredentialBinding,
) -> Result<BindingCreation, ApiError> {
    let instance_guid = &request.instance_guid;
    let name = &request.name;
    let kind = request.kind.as_str();
    let instance = services_store::find_instance(conn, instance_guid)?
        .ok_or_else(|| words(Refusal::InstanceNotFound(instance_guid.clone())))?;
    let space = store::spaces::find_by_id(conn, instance.space_id)?
        .filter(|space| permissions.can_read_space(space.id, space.organization_id))
        .ok_or_else(|| words(Refusal::InstanceNotFound(instance_guid.clone())))?;
    require_writer(permissions, &space)?;
    let app = match &request.app_guid {
        Some(guid) if kind == "app" => {
            let app = store::apps::find(conn, guid)?
                .filter(|app| {
                    store::spaces::find_by_id(conn, app.space_id)
                        .ok()
                        .flatten()
                        .is_some_and(|space| {
                            permissions.can_read_space(space.id, space.organization_id)
                        })
                })
                .ok_or_else(|| words(Refusal::AppNotFound(guid.clone())))?;
            if app.space_id != instance.space_id {
                return Err(words(Refusal::DifferentSpaces));
            }
            Some(app)
        }
        _ => None,
    };
    let existing = services_store::bindings_of_instance(conn, instance.id)?;
    for binding in &existing {
        let same_target = match (&app, binding.binding_type.as_str()) {
            (Some(app), "app") => binding.app_id == Some(app.id),
            (None, "key") => &binding.name == name,
            _ => false,
        };
        if !same_target {
            continue;
        }
        if binding.last_operation_type == "create"
            && binding.last_operation_state == services_store::FAILED
        {
            // A failed earlier attempt makes way for this one.
            services_store::delete_binding(conn, binding.id)?;
            continue;
        }
        return Err(words(match &app {
            Some(_) => Refusal::AppAlreadyBound,
            None => Refusal::KeyNameTaken(name.clone().unwrap_or_default()),
        }));
    }
    if instance.instance_type == USER_PROVIDED {
        if kind == "key" {
            return Err(words(Refusal::KeyForUserProvided));
        }
        let binding = services_store::create_binding(
            conn,
            &services_store::NewBinding {
                binding_type: kind.to_owned(),
                name: name.clone(),
                service_instance_id: instance.id,
                app_id: app.as_ref().map(|app| app.id),
                credentials: instance.credentials.clone(),
                syslog_drain_url: instance.syslog_drain_url.clone(),
                parameters: None,
                state: services_store::SUCCEEDED.to_owned(),
            },
        )
        .map_err(store_refusal(words, || Refusal::AppAlreadyBound))?;
        return Ok(BindingCreation {
            start: BindingStart::Done(binding),
            instance,
            app,
        });
    }
    if instance_busy(&instance) {
        return Err(busy(&instance));
    }
    if instance.last_operation_state.as_deref() == Some(services_store::FAILED)
        && instance.last_operation_type.as_deref() == Some("create")
    {
        return Err(words(Refusal::InstanceCreateFailed(instance_guid.clone())));
    }
    let context = InstanceContext::load(conn, instance.id)?;
    if !context.plan.bindable.unwrap_or(context.offering.bindable) {
        return Err(words(Refusal::NotBindable));
    }
    let start = conn.write_transaction(|conn| {
        let binding = services_store::create_binding(
            conn,
            &services_store::NewBinding {
                binding_type: kind.to_owned(),
                name: name.clone(),
                service_instance_id: instance.id,
                app_id: app.as_ref().map(|app| app.id),
                credentials: None,
                syslog_drain_url: None,
                parameters: request.parameters.clone(),
                state: services_store::IN_PROGRESS.to_owned(),
            },
        )
        .map_err(store_refusal(words, || {
            Refusal::KeyNameTaken(name.clone().unwrap_or_default())
        }))?;
        let job = store::jobs::create(
            conn,
            "service_bindings.create",
            "service_credential_binding",
            &binding.guid,
        )?;
        services_store::start_binding_operation(conn, binding.id, "create", Some(&job))?;
        Ok::<_, ApiError>(BindingStart::Started {
            job_guid: job,
            binding,
        })
    })?;
    Ok(BindingCreation {
        start,
        instance,
        app,
    })
}

/// The binding with its instance and space, if the caller may read the space.
pub fn readable_binding(
    conn: &mut DbConn,
    permissions: &Permissions,
    guid: &str,
) -> Result<Option<(CredentialBindingRow, ServiceInstanceRow, SpaceRow)>, ApiError> {
    let Some(binding) = services_store::find_binding(conn, guid)? else {
        return Ok(None);
    };
    let Some(instance) = services_store::find_instance_by_id(conn, binding.service_instance_id)?
    else {
        return Ok(None);
    };
    Ok(store::spaces::find_by_id(conn, instance.space_id)?
        .filter(|space| permissions.can_read_space(space.id, space.organization_id))
        .map(|space| (binding, instance, space)))
}

/// Deletes a binding at once (user-provided instance, or a failed create), or starts
/// `delete in progress` with a job (returned) for the broker to unbind.
pub fn begin_unbind(
    conn: &mut DbConn,
    permissions: &Permissions,
    binding: &CredentialBindingRow,
    instance: &ServiceInstanceRow,
    space: &SpaceRow,
) -> Result<Option<String>, ApiError> {
    require_writer(permissions, space)?;
    if instance.instance_type == USER_PROVIDED
        || (binding.last_operation_type == "create"
            && binding.last_operation_state == services_store::FAILED)
    {
        services_store::delete_binding(conn, binding.id)?;
        return Ok(None);
    }
    if binding.last_operation_state == services_store::IN_PROGRESS {
        let app_name = binding
            .app_id
            .map(|id| store::apps::find_by_id(conn, id))
            .transpose()?
            .flatten()
            .map(|app| app.name)
            .unwrap_or_default();
        return Err(ApiError::with_args(
            ErrorKind::AsyncServiceBindingOperationInProgress,
            &[&app_name, &instance.name],
        ));
    }
    conn.write_transaction(|conn| {
        let job = store::jobs::create(
            conn,
            "service_bindings.delete",
            "service_credential_binding",
            &binding.guid,
        )?;
        services_store::start_binding_operation(conn, binding.id, "delete", Some(&job))?;
        Ok(Some(job))
    })
}

// ---------------------------------------------------------------------------------------------
// Brokers

/// A broker URL: http(s) with a host, no credentials in it.
pub fn broker_url(words: Wording, url: &str) -> Result<(), ApiError> {
    let parsed = url::Url::parse(url)
        .ok()
        .filter(|parsed| matches!(parsed.scheme(), "http" | "https") && parsed.host().is_some())
        .ok_or_else(|| words(Refusal::BrokerUrlInvalid(url.to_owned())))?;
    if !parsed.username().is_empty() || parsed.password().is_some() {
        return Err(words(Refusal::BrokerUrlBasicAuth));
    }
    Ok(())
}

/// The space of a new broker: none (global, admins only) or a space the caller develops in, with
/// `space_scoped_private_broker_creation` enabled for non-admins.
pub fn broker_space(
    conn: &mut DbConn,
    words: Wording,
    user: &CurrentUser,
    permissions: &Permissions,
    space_guid: Option<&str>,
) -> Result<Option<i32>, ApiError> {
    let Some(guid) = space_guid else {
        if !permissions.can_write_globally() {
            return Err(ApiError::forbidden());
        }
        return Ok(None);
    };
    let space = store::spaces::find(conn, guid)?
        .filter(|space| permissions.can_read_space(space.id, space.organization_id))
        .ok_or_else(|| words(Refusal::SpaceNotFound(guid.to_owned())))?;
    require_writer(permissions, &space)?;
    if !user.is_admin() {
        crate::permissions::require_feature_flag(
            conn,
            "space_scoped_private_broker_creation",
            user,
        )?;
    }
    Ok(Some(space.id))
}

/// Admins change every broker; space developers the brokers of their spaces.
pub fn require_broker_writer(
    permissions: &Permissions,
    broker: &ServiceBrokerRow,
) -> Result<(), ApiError> {
    let allowed = permissions.can_write_globally()
        || broker
            .space_id
            .is_some_and(|space| permissions.can_write_to_space(space));
    if allowed {
        Ok(())
    } else {
        Err(ApiError::forbidden())
    }
}

/// Inserts a broker (state SYNCHRONIZING until its catalog is stored).
pub fn create_broker(
    conn: &mut DbConn,
    words: Wording,
    name: &str,
    url: &str,
    credentials: (&str, &str),
    space_id: Option<i32>,
) -> Result<ServiceBrokerRow, ApiError> {
    services_store::create_broker(conn, name, url, credentials, space_id)
        .map_err(store_refusal(words, || {
            Refusal::BrokerNameTaken(name.to_owned())
        }))
}

/// Changes a broker's name, URL and/or credentials.
pub fn update_broker(
    conn: &mut DbConn,
    words: Wording,
    broker: &ServiceBrokerRow,
    name: Option<&str>,
    url: Option<&str>,
    credentials: Option<(&str, &str)>,
) -> Result<(), ApiError> {
    services_store::update_broker(conn, broker.id, name, url, credentials)
        .map_err(store_refusal(words, || {
            Refusal::BrokerNameTaken(name.unwrap_or_default().to_owned())
        }))
}

/// Brokers whose plans have instances cannot be removed.
pub fn require_removable(conn: &mut DbConn, broker: &ServiceBrokerRow) -> Result<(), ApiError> {
    if services_store::broker_instance_names(conn, broker.id)?.is_empty() {
        Ok(())
    } else {
        Err(ApiError::with_args(
            ErrorKind::ServiceBrokerNotRemovable,
            &[&broker.name],
        ))
    }
}

// ---------------------------------------------------------------------------------------------
// Plan visibility

/// Only admins change who sees a plan, and never for a plan of a space-scoped broker.
pub(crate) fn require_visibility_admin(
    words: Wording,
    permissions: &Permissions,
    index: &CatalogIndex,
    plan: &crate::db::models::ServicePlanRow,
) -> Result<(), ApiError> {
    if !permissions.can_write_globally() {
        return Err(ApiError::forbidden());
    }
    if index.visibility_type(plan) == "space" {
        return Err(words(Refusal::SpaceScopedPlanVisibility));
    }
    Ok(())
}
