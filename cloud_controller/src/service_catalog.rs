//! A broker's `/v2/catalog` read and validated with Cloud Controller's rules (stricter than the
//! OSB spec: `catalog_service.rb`, `catalog_plan.rb`), reporting failures in CC's format
//! ("Service broker catalog is invalid: " followed by catalog lines, then `Service <name>` with
//! two-space indented messages and `Plan <name>` with four).

use std::collections::HashSet;

use serde_json::{Map, Value};

/// The `requires` values CC supports.
const SUPPORTED_REQUIRES: &[&str] = &["syslog_drain", "route_forwarding", "volume_mount"];

/// A validated offering.
#[derive(Debug, Clone)]
pub struct CatalogOffering {
    /// The broker's `id`.
    pub id: String,
    /// `name`.
    pub name: String,
    /// `description`.
    pub description: String,
    /// `bindable`.
    pub bindable: bool,
    /// `plan_updateable` (false when absent).
    pub plan_updateable: bool,
    /// `instances_retrievable`.
    pub instances_retrievable: bool,
    /// `bindings_retrievable`.
    pub bindings_retrievable: bool,
    /// `allow_context_updates`.
    pub allow_context_updates: bool,
    /// `tags`.
    pub tags: Vec<String>,
    /// `requires`.
    pub requires: Vec<String>,
    /// `metadata` (an object, `{}` when absent).
    pub metadata: Value,
    /// The plans.
    pub plans: Vec<CatalogPlan>,
}

/// A validated plan.
#[derive(Debug, Clone)]
pub struct CatalogPlan {
    /// The broker's `id`.
    pub id: String,
    /// `name`.
    pub name: String,
    /// `description`.
    pub description: String,
    /// `free` (true when absent).
    pub free: bool,
    /// `bindable` (inherits the offering's when absent).
    pub bindable: Option<bool>,
    /// `plan_updateable`.
    pub plan_updateable: Option<bool>,
    /// `maximum_polling_duration` in seconds.
    pub maximum_polling_duration: Option<i32>,
    /// `maintenance_info`.
    pub maintenance_info: Option<Value>,
    /// `schemas` (`{}` when absent).
    pub schemas: Value,
    /// `metadata` (`{}` when absent).
    pub metadata: Value,
}

/// Errors of one offering: its own messages and its plans'.
#[derive(Debug, Default)]
struct OfferingErrors {
    name: String,
    messages: Vec<String>,
    plans: Vec<(String, Vec<String>)>,
}

/// Ruby's `inspect` of a JSON value, as CC's messages show it.
fn inspect(value: &Value) -> String {
    match value {
        Value::Null => "nil".to_owned(),
        Value::String(text) => format!("{text:?}"),
        Value::Array(items) => format!(
            "[{}]",
            items.iter().map(inspect).collect::<Vec<_>>().join(", ")
        ),
        Value::Object(map) => format!(
            "{{{}}}",
            map.iter()
                .map(|(key, item)| format!("{key:?}=>{}", inspect(item)))
                .collect::<Vec<_>>()
                .join(", ")
        ),
        other => other.to_string(),
    }
}

fn is_blank(text: &str) -> bool {
    text.trim().is_empty()
}

fn check_string(errors: &mut Vec<String>, label: &str, value: Option<&Value>, required: bool) {
    match value {
        None | Some(Value::Null) => {
            if required {
                errors.push(format!("{label} is required"));
            }
        }
        Some(Value::String(text)) => {
            if required && is_blank(text) {
                errors.push(format!("{label} is required"));
            }
        }
        Some(other) => errors.push(format!(
            "{label} must be a string, but has value {}",
            inspect(other)
        )),
    }
}

fn check_description(errors: &mut Vec<String>, label: &str, value: Option<&Value>) {
    check_string(errors, label, value, true);
    if let Some(Value::String(text)) = value {
        if text.chars().count() > 10_000 {
            errors.push(format!("{label} may not have more than 10000 characters"));
        }
    }
}

fn check_bool(errors: &mut Vec<String>, label: &str, value: Option<&Value>, required: bool) {
    match value {
        None | Some(Value::Null) => {
            if required {
                errors.push(format!("{label} is required"));
            }
        }
        Some(Value::Bool(_)) => {}
        Some(other) => errors.push(format!(
            "{label} must be a boolean, but has value {}",
            inspect(other)
        )),
    }
}

fn check_hash(errors: &mut Vec<String>, label: &str, value: &Value) {
    if !value.is_object() {
        errors.push(format!(
            "{label} must be a hash, but has value {}",
            inspect(value)
        ));
    }
}

fn strings_of(value: Option<&Value>) -> Option<Vec<String>> {
    match value {
        None | Some(Value::Null) => Some(Vec::new()),
        Some(Value::Array(items)) => items
            .iter()
            .map(|item| item.as_str().map(str::to_owned))
            .collect(),
        _ => None,
    }
}

fn text(value: Option<&Value>) -> String {
    value.and_then(Value::as_str).unwrap_or_default().to_owned()
}

/// Ruby truthiness: everything but `nil` and `false`.
fn truthy(value: Option<&Value>) -> bool {
    !matches!(value, None | Some(Value::Null) | Some(Value::Bool(false)))
}

fn is_semver(version: &str) -> bool {
    let core = version.split(['-', '+']).next().unwrap_or_default();
    let parts: Vec<&str> = core.split('.').collect();
    parts.len() == 3
        && parts.iter().all(|part| {
            !part.is_empty()
                && part.chars().all(|character| character.is_ascii_digit())
                && (part.len() == 1 || !part.starts_with('0'))
        })
}

fn validate_plan(plan: &Value) -> (Option<CatalogPlan>, Vec<String>) {
    let mut errors = Vec::new();
    let Some(object) = plan.as_object() else {
        return (None, errors);
    };
    check_string(&mut errors, "Plan id", object.get("id"), true);
    check_string(&mut errors, "Plan name", object.get("name"), true);
    check_description(&mut errors, "Plan description", object.get("description"));
    if let Some(metadata) = object.get("metadata").filter(|value| !value.is_null()) {
        check_hash(&mut errors, "Plan metadata", metadata);
    }
    for (key, label) in [
        ("free", "Plan free"),
        ("bindable", "Plan bindable"),
        ("plan_updateable", "Plan updateable"),
    ] {
        if truthy(object.get(key)) {
            check_bool(&mut errors, label, object.get(key), false);
        }
    }
    let polling = object.get("maximum_polling_duration");
    if truthy(polling) && !polling.is_some_and(|value| value.is_i64() || value.is_u64()) {
        errors.push(format!(
            "Maximum polling duration must be an integer, but has value {}",
            inspect(polling.unwrap_or(&Value::Null))
        ));
    }
    if let Some(schemas) = object.get("schemas").filter(|value| truthy(Some(value))) {
        check_hash(&mut errors, "Plan schemas", schemas);
    }
    let maintenance_info = object
        .get("maintenance_info")
        .filter(|value| truthy(Some(value)));
    if let Some(info) = maintenance_info {
        check_hash(&mut errors, "Maintenance info", info);
        let version = info.get("version");
        check_string(&mut errors, "Maintenance info version", version, true);
        if !version.and_then(Value::as_str).is_some_and(is_semver) {
            errors.push(format!(
                "Maintenance info version must be a Semantic Version, but has value {}",
                inspect(version.unwrap_or(&Value::Null))
            ));
        }
        check_string(
            &mut errors,
            "Maintenance info description",
            info.get("description"),
            false,
        );
        let length = info.to_string().len();
        if length > 2000 {
            errors.push(format!("Maintenance info must serialize to 2000 characters or fewer in JSON, but serializes to {length} characters"));
        }
        if let Some(info) = info.as_object() {
            let extra: Vec<&str> = info
                .keys()
                .map(String::as_str)
                .filter(|key| *key != "version" && *key != "description")
                .collect();
            if !extra.is_empty() {
                errors.push(format!(
                    "Maintenance info contains invalid key(s): {}",
                    extra.join(", ")
                ));
            }
        }
    }
    let plan = CatalogPlan {
        id: text(object.get("id")),
        name: text(object.get("name")),
        description: text(object.get("description")),
        free: object.get("free").and_then(Value::as_bool).unwrap_or(true),
        bindable: object.get("bindable").and_then(Value::as_bool),
        plan_updateable: object.get("plan_updateable").and_then(Value::as_bool),
        maximum_polling_duration: object
            .get("maximum_polling_duration")
            .and_then(Value::as_i64)
            .map(|seconds| seconds.clamp(0, i64::from(i32::MAX)) as i32),
        maintenance_info: maintenance_info.cloned(),
        schemas: object
            .get("schemas")
            .filter(|value| value.is_object())
            .cloned()
            .unwrap_or_else(|| Value::Object(Map::new())),
        metadata: object
            .get("metadata")
            .filter(|value| value.is_object())
            .cloned()
            .unwrap_or_else(|| Value::Object(Map::new())),
    };
    (Some(plan), errors)
}

fn validate_offering(service: &Value) -> (Option<CatalogOffering>, OfferingErrors) {
    let mut report = OfferingErrors::default();
    let Some(object) = service.as_object() else {
        report.messages.push(format!(
            "Service must be a hash, but has value {}",
            inspect(service)
        ));
        return (None, report);
    };
    report.name = text(object.get("name"));
    let errors = &mut report.messages;
    check_string(errors, "Service id", object.get("id"), true);
    check_string(errors, "Service name", object.get("name"), true);
    check_description(errors, "Service description", object.get("description"));
    check_bool(
        errors,
        "Service \"bindable\" field",
        object.get("bindable"),
        true,
    );
    for (key, label) in [
        ("plan_updateable", "Service \"plan_updateable\" field"),
        (
            "bindings_retrievable",
            "Service \"bindings_retrievable\" field",
        ),
        (
            "instances_retrievable",
            "Service \"instances_retrievable\" field",
        ),
        (
            "allow_context_updates",
            "Service \"allow_context_updates\" field",
        ),
    ] {
        check_bool(errors, label, object.get(key), false);
    }
    let tags = strings_of(object.get("tags"));
    match &tags {
        None => errors.push(format!(
            "Service tags must be an array of strings, but has value {}",
            inspect(object.get("tags").unwrap_or(&Value::Null))
        )),
        Some(tags) if tags.concat().chars().count() > 2048 => errors.push(format!(
            "Tags for the service {} must be 2048 characters or less.",
            report.name
        )),
        Some(_) => {}
    }
    let requires = strings_of(object.get("requires"));
    if requires.is_none() {
        errors.push(format!(
            "Service \"requires\" field must be an array of strings, but has value {}",
            inspect(object.get("requires").unwrap_or(&Value::Null))
        ));
    }
    if let Some(metadata) = object.get("metadata").filter(|value| !value.is_null()) {
        check_hash(errors, "Service metadata", metadata);
        check_bool(
            errors,
            "Service metadata shareable",
            metadata.get("shareable"),
            false,
        );
    }
    if let Some(client) = object
        .get("dashboard_client")
        .filter(|value| !value.is_null())
    {
        if client.is_object() {
            for (key, label) in [
                ("id", "Service dashboard client id"),
                ("secret", "Service dashboard client secret"),
                ("redirect_uri", "Service dashboard client redirect_uri"),
            ] {
                check_string(errors, label, client.get(key), true);
            }
        } else {
            check_hash(errors, "Service dashboard client attributes", client);
        }
    }
    for required in requires.iter().flatten() {
        if !SUPPORTED_REQUIRES.contains(&required.as_str()) {
            errors.push(format!(
                "Service \"requires\" field contains unsupported value \"{required}\""
            ));
        }
    }
    let mut plans = Vec::new();
    match object.get("plans") {
        None | Some(Value::Null) => errors.push("At least one plan is required".to_owned()),
        Some(Value::Array(items)) if items.is_empty() => {
            errors.push("At least one plan is required".to_owned())
        }
        Some(Value::Array(items)) if items.iter().all(Value::is_object) => {
            for item in items {
                let (plan, plan_errors) = validate_plan(item);
                if !plan_errors.is_empty() {
                    report.plans.push((text(item.get("name")), plan_errors));
                }
                plans.extend(plan);
            }
            if report.plans.is_empty() {
                let errors = &mut report.messages;
                for (field, message) in [("id", "id"), ("name", "name")] {
                    let values: Vec<&str> = plans
                        .iter()
                        .map(|plan| {
                            if field == "id" {
                                plan.id.as_str()
                            } else {
                                plan.name.as_str()
                            }
                        })
                        .collect();
                    let mut seen = HashSet::new();
                    let mut reported = HashSet::new();
                    for value in &values {
                        if !seen.insert(*value) && reported.insert(*value) {
                            errors.push(if message == "id" {
                                format!("Plan ids must be unique. Service {} already has a plan with id '{value}'", report.name)
                            } else {
                                format!("Plan names must be unique within a service. Service {} already has a plan named {value}", report.name)
                            });
                        }
                    }
                }
            }
        }
        Some(other) => errors.push(format!(
            "Service plans list must be an array of hashes, but has value {}",
            inspect(other)
        )),
    }
    let offering = CatalogOffering {
        id: text(object.get("id")),
        name: report.name.clone(),
        description: text(object.get("description")),
        bindable: object
            .get("bindable")
            .and_then(Value::as_bool)
            .unwrap_or(false),
        plan_updateable: object
            .get("plan_updateable")
            .and_then(Value::as_bool)
            .unwrap_or(false),
        instances_retrievable: object
            .get("instances_retrievable")
            .and_then(Value::as_bool)
            .unwrap_or(false),
        bindings_retrievable: object
            .get("bindings_retrievable")
            .and_then(Value::as_bool)
            .unwrap_or(false),
        allow_context_updates: object
            .get("allow_context_updates")
            .and_then(Value::as_bool)
            .unwrap_or(false),
        tags: tags.unwrap_or_default(),
        requires: requires.unwrap_or_default(),
        metadata: object
            .get("metadata")
            .filter(|value| value.is_object())
            .cloned()
            .unwrap_or_else(|| Value::Object(Map::new())),
        plans,
    };
    (Some(offering), report)
}

/// Validates a catalog. `Err` carries the report that follows "Service broker catalog is
/// invalid: " (starting with a newline, as CC's formatter does).
pub fn validate(catalog: &Map<String, Value>) -> Result<Vec<CatalogOffering>, String> {
    let mut top = Vec::new();
    let mut nested = Vec::new();
    let mut offerings = Vec::new();
    let services = match catalog.get("services") {
        Some(Value::Array(services)) => services.clone(),
        _ => Vec::new(),
    };
    for service in &services {
        let (offering, errors) = validate_offering(service);
        if !errors.messages.is_empty() || !errors.plans.is_empty() {
            nested.push(errors);
        }
        offerings.extend(offering);
    }
    if services.is_empty() {
        top.push("Service broker must provide at least one service".to_owned());
    }
    let ids: Vec<&str> = offerings
        .iter()
        .map(|offering| offering.id.as_str())
        .collect();
    if ids.iter().collect::<HashSet<_>>().len() != ids.len() {
        top.push("Service ids must be unique".to_owned());
    }
    let names: Vec<&str> = offerings
        .iter()
        .map(|offering| offering.name.as_str())
        .collect();
    if names.iter().collect::<HashSet<_>>().len() != names.len() {
        top.push("Service names must be unique within a broker".to_owned());
    }
    let mut plan_owner: std::collections::HashMap<&str, &str> = std::collections::HashMap::new();
    for offering in &offerings {
        for plan in &offering.plans {
            if let Some(owner) = plan_owner.insert(plan.id.as_str(), offering.id.as_str()) {
                if owner != offering.id {
                    top.push(format!(
                        "Plan ids must be unique. Unable to register plan with id '{}' (plan name '{}', service name '{}') because it uses the same id as another plan in the catalog.",
                        plan.id, plan.name, offering.name
                    ));
                }
            }
        }
    }
    let dashboard_ids: Vec<String> = services
        .iter()
        .filter_map(|service| service.get("dashboard_client")?.get("id")?.as_str())
        .map(str::to_owned)
        .collect();
    if dashboard_ids.iter().collect::<HashSet<_>>().len() != dashboard_ids.len() {
        top.push("Service dashboard_client id must be unique".to_owned());
    }
    if top.is_empty() && nested.is_empty() {
        return Ok(offerings);
    }
    let mut report = String::from("\n");
    for message in top {
        report.push_str(&message);
        report.push('\n');
    }
    for offering in nested {
        report.push_str(&format!("Service {}\n", offering.name));
        for message in offering.messages {
            report.push_str(&format!("  {message}\n"));
        }
        for (plan, messages) in offering.plans {
            report.push_str(&format!("  Plan {plan}\n"));
            for message in messages {
                report.push_str(&format!("    {message}\n"));
            }
        }
    }
    Err(report)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn reports_in_ccs_format() {
        let catalog = json!({"services": [
            {"id": "a", "name": "svc", "description": "d", "bindable": "true",
             "plans": [{"id": "p", "name": "small"}]},
        ]});
        let report = validate(catalog.as_object().unwrap()).unwrap_err();
        assert_eq!(
            report,
            "\nService svc\n  Service \"bindable\" field must be a boolean, but has value \"true\"\n  Plan small\n    Plan description is required\n"
        );
        let empty = validate(json!({"services": []}).as_object().unwrap()).unwrap_err();
        assert_eq!(
            empty,
            "\nService broker must provide at least one service\n"
        );
    }

    #[test]
    fn semantic_versions() {
        assert!(is_semver("1.2.3"));
        assert!(is_semver("1.2.3-beta+x"));
        assert!(!is_semver("1.2"));
        assert!(!is_semver("01.2.3"));
    }
}
