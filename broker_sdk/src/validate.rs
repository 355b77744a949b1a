//! Catalog validation against the OSB spec and the Cloud Controller's stricter rules, so that a
//! catalog this SDK serves never makes `cf create-service-broker` fail. Every problem is reported,
//! in the Cloud Controller's report shape (catalog lines, then `Service <name>` with 2-space
//! indented messages, `Plan <name>` with 4 spaces, schema messages with 6).

use std::collections::{HashMap, HashSet};
use std::fmt;

use serde_json::Value;

use crate::catalog::{Catalog, MaintenanceInfo, Schemas, ServiceOffering, ServicePlan};

/// Longest description the Cloud Controller stores.
const MAX_DESCRIPTION_CHARS: usize = 10_000;
/// Longest joined tag list the Cloud Controller stores.
const MAX_TAGS_CHARS: usize = 2_048;
/// Largest JSON schema (serialised) the spec and the Cloud Controller accept.
const MAX_SCHEMA_BYTES: usize = 64 * 1024;
/// Longest `maintenance_info` (serialised) the Cloud Controller accepts.
const MAX_MAINTENANCE_INFO_BYTES: usize = 2_000;
/// The only values the spec defines for `requires`.
const SUPPORTED_REQUIRES: [&str; 3] = ["syslog_drain", "route_forwarding", "volume_mount"];

/// Everything wrong with a catalog, grouped like the Cloud Controller's report.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CatalogValidationError {
    /// Problems of the catalog as a whole (no offering, duplicate ids across offerings).
    pub catalog: Vec<String>,
    /// Problems of each offering that has any, in catalog order.
    pub services: Vec<ServiceProblems>,
}

/// The problems of one offering and of its plans.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ServiceProblems {
    pub name: String,
    pub problems: Vec<String>,
    pub plans: Vec<PlanProblems>,
}

/// The problems of one plan, schema problems apart.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PlanProblems {
    pub name: String,
    pub problems: Vec<String>,
    pub schemas: Vec<String>,
}

impl CatalogValidationError {
    /// Every message, flattened in report order.
    pub fn messages(&self) -> Vec<String> {
        let mut messages = self.catalog.clone();
        for service in &self.services {
            messages.extend(service.problems.iter().cloned());
            for plan in &service.plans {
                messages.extend(plan.problems.iter().cloned());
                messages.extend(plan.schemas.iter().cloned());
            }
        }
        messages
    }

    fn is_empty(&self) -> bool {
        self.catalog.is_empty() && self.services.is_empty()
    }
}

impl fmt::Display for CatalogValidationError {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(formatter, "Service broker catalog is invalid: ")?;
        for line in &self.catalog {
            write!(formatter, "\n{line}")?;
        }
        for service in &self.services {
            write!(formatter, "\nService {}", service.name)?;
            for line in &service.problems {
                write!(formatter, "\n  {line}")?;
            }
            for plan in &service.plans {
                write!(formatter, "\n  Plan {}", plan.name)?;
                for line in &plan.problems {
                    write!(formatter, "\n    {line}")?;
                }
                if !plan.schemas.is_empty() {
                    write!(formatter, "\n    Schemas")?;
                    for line in &plan.schemas {
                        write!(formatter, "\n      {line}")?;
                    }
                }
            }
        }
        Ok(())
    }
}

impl std::error::Error for CatalogValidationError {}

/// Checks `catalog` against the spec and the Cloud Controller's rules and returns every problem.
pub fn validate_catalog(catalog: &Catalog) -> Result<(), CatalogValidationError> {
    let mut report = CatalogValidationError::default();
    if catalog.services.is_empty() {
        report
            .catalog
            .push("Service broker must provide at least one service".to_owned());
    }

    let mut service_ids: HashMap<&str, usize> = HashMap::new();
    let mut service_names: HashMap<&str, usize> = HashMap::new();
    // For each plan id, the offerings (by position) that use it.
    let mut plan_ids: HashMap<&str, HashSet<usize>> = HashMap::new();
    let mut dashboard_client_ids: HashMap<&str, usize> = HashMap::new();
    for (position, service) in catalog.services.iter().enumerate() {
        *service_ids.entry(service.id.as_str()).or_default() += 1;
        *service_names.entry(service.name.as_str()).or_default() += 1;
        for plan in &service.plans {
            plan_ids
                .entry(plan.id.as_str())
                .or_default()
                .insert(position);
        }
        if let Some(client) = &service.dashboard_client {
            *dashboard_client_ids.entry(client.id.as_str()).or_default() += 1;
        }
    }

    for service in &catalog.services {
        let mut problems = validate_service(service);
        if !service.id.is_empty() && service_ids[service.id.as_str()] > 1 {
            problems.push("Service id must be unique".to_owned());
        }
        if !service.name.is_empty() && service_names[service.name.as_str()] > 1 {
            problems.push("Service name must be unique".to_owned());
        }
        if let Some(client) = &service.dashboard_client {
            if !client.id.is_empty() && dashboard_client_ids[client.id.as_str()] > 1 {
                problems.push("Service dashboard_client id must be unique".to_owned());
            }
        }
        let mut plans = Vec::new();
        let mut plan_names_seen = HashSet::new();
        let mut plan_ids_seen = HashSet::new();
        for plan in &service.plans {
            let mut plan_problems = validate_plan(plan);
            if !plan.id.is_empty() {
                if !plan_ids_seen.insert(plan.id.as_str()) {
                    problems.push(format!(
                        "Plan ids must be unique within a service. Service {} already has a plan with id '{}'",
                        service.name, plan.id
                    ));
                } else if plan_ids[plan.id.as_str()].len() > 1 {
                    plan_problems.push(format!(
                        "Plan id '{}' is used by a plan of another service; plan ids must be unique across the catalog",
                        plan.id
                    ));
                }
            }
            if !plan.name.is_empty() && !plan_names_seen.insert(plan.name.as_str()) {
                problems.push(format!(
                    "Plan names must be unique within a service. Service {} already has a plan named {}",
                    service.name, plan.name
                ));
            }
            let schemas = plan
                .schemas
                .as_ref()
                .map(validate_schemas)
                .unwrap_or_default();
            if !plan_problems.is_empty() || !schemas.is_empty() {
                plans.push(PlanProblems {
                    name: plan.name.clone(),
                    problems: plan_problems,
                    schemas,
                });
            }
        }
        if !problems.is_empty() || !plans.is_empty() {
            report.services.push(ServiceProblems {
                name: service.name.clone(),
                problems,
                plans,
            });
        }
    }

    if report.is_empty() {
        Ok(())
    } else {
        Err(report)
    }
}

/// Names the CLI handles without quoting: the spec recommends alphanumerics, `.` and `-`; `_` is
/// accepted as well.
fn is_cli_friendly(name: &str) -> bool {
    name.chars()
        .all(|c| c.is_ascii_alphanumeric() || c == '.' || c == '-' || c == '_')
}

fn validate_service(service: &ServiceOffering) -> Vec<String> {
    let mut problems = Vec::new();
    if service.id.trim().is_empty() {
        problems.push("Service id is required".to_owned());
    }
    if service.name.trim().is_empty() {
        problems.push("Service name is required".to_owned());
    } else if !is_cli_friendly(&service.name) {
        problems.push(format!(
            "Service name \"{}\" must contain only alphanumeric characters, '.', '-' and '_'",
            service.name
        ));
    }
    if service.description.trim().is_empty() {
        problems.push("Service description is required".to_owned());
    } else if service.description.chars().count() > MAX_DESCRIPTION_CHARS {
        problems.push(format!(
            "Service description may not have more than {MAX_DESCRIPTION_CHARS} characters"
        ));
    }
    if service.tags.join("").chars().count() > MAX_TAGS_CHARS {
        problems.push(format!(
            "Tags for the service {} must be {MAX_TAGS_CHARS} characters or less.",
            service.name
        ));
    }
    for value in &service.requires {
        if !SUPPORTED_REQUIRES.contains(&value.as_str()) {
            problems.push(format!(
                "Service \"requires\" field contains unsupported value \"{value}\""
            ));
        }
    }
    if let Some(shareable) = service.metadata.as_ref().and_then(|m| m.get("shareable")) {
        if !shareable.is_boolean() {
            problems.push(format!(
                "Service metadata \"shareable\" field must be a boolean, but has value {shareable}"
            ));
        }
    }
    if let Some(client) = &service.dashboard_client {
        if client.id.trim().is_empty() {
            problems.push("Service dashboard client id is required".to_owned());
        }
        if client.secret.trim().is_empty() {
            problems.push("Service dashboard client secret is required".to_owned());
        }
        if client
            .redirect_uri
            .as_deref()
            .unwrap_or("")
            .trim()
            .is_empty()
        {
            problems.push("Service dashboard client redirect_uri is required".to_owned());
        }
    }
    if service.plans.is_empty() {
        problems.push("At least one plan is required".to_owned());
    }
    problems
}

fn validate_plan(plan: &ServicePlan) -> Vec<String> {
    let mut problems = Vec::new();
    if plan.id.trim().is_empty() {
        problems.push("Plan id is required".to_owned());
    }
    if plan.name.trim().is_empty() {
        problems.push("Plan name is required".to_owned());
    } else if !is_cli_friendly(&plan.name) {
        problems.push(format!(
            "Plan name \"{}\" must contain only alphanumeric characters, '.', '-' and '_'",
            plan.name
        ));
    }
    if plan.description.trim().is_empty() {
        problems.push("Plan description is required".to_owned());
    } else if plan.description.chars().count() > MAX_DESCRIPTION_CHARS {
        problems.push(format!(
            "Plan description may not have more than {MAX_DESCRIPTION_CHARS} characters"
        ));
    }
    if let Some(info) = &plan.maintenance_info {
        problems.extend(validate_maintenance_info(info));
    }
    problems
}

fn validate_maintenance_info(info: &MaintenanceInfo) -> Vec<String> {
    let mut problems = Vec::new();
    match info.version.as_deref() {
        None => problems.push("Maintenance info version is required".to_owned()),
        Some(version) if !is_semver(version) => problems.push(format!(
            "Maintenance info version must be a semantic version, but has value \"{version}\""
        )),
        Some(_) => {}
    }
    for key in info.extra.keys() {
        problems.push(format!(
            "Maintenance info has unexpected field \"{key}\"; only \"version\" and \"description\" are allowed"
        ));
    }
    let serialised = serde_json::to_string(info).map(|s| s.len()).unwrap_or(0);
    if serialised > MAX_MAINTENANCE_INFO_BYTES {
        problems.push(format!(
            "Maintenance info must be {MAX_MAINTENANCE_INFO_BYTES} characters or less"
        ));
    }
    problems
}

/// SemVer 2.0: `MAJOR.MINOR.PATCH[-prerelease][+build]`, no leading zeros in numbers.
pub(crate) fn is_semver(version: &str) -> bool {
    fn numeric(part: &str) -> bool {
        !part.is_empty()
            && part.chars().all(|c| c.is_ascii_digit())
            && (part == "0" || !part.starts_with('0'))
    }
    fn identifier(part: &str) -> bool {
        !part.is_empty() && part.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
    }
    let (rest, build) = match version.split_once('+') {
        Some((rest, build)) => (rest, Some(build)),
        None => (version, None),
    };
    if let Some(build) = build {
        if !build.split('.').all(identifier) {
            return false;
        }
    }
    let (core, prerelease) = match rest.split_once('-') {
        Some((core, prerelease)) => (core, Some(prerelease)),
        None => (rest, None),
    };
    if let Some(prerelease) = prerelease {
        let valid = prerelease.split('.').all(|part| {
            identifier(part) && (!part.chars().all(|c| c.is_ascii_digit()) || numeric(part))
        });
        if !valid {
            return false;
        }
    }
    let parts: Vec<&str> = core.split('.').collect();
    parts.len() == 3 && parts.iter().all(|part| numeric(part))
}

fn validate_schemas(schemas: &Schemas) -> Vec<String> {
    let mut problems = Vec::new();
    let mut check = |path: &str, schema: Option<&Value>| {
        if let Some(schema) = schema {
            problems.extend(validate_schema(path, schema));
        }
    };
    if let Some(instance) = &schemas.service_instance {
        check(
            "service_instance.create.parameters",
            instance.create.as_ref().and_then(|c| c.parameters.as_ref()),
        );
        check(
            "service_instance.update.parameters",
            instance.update.as_ref().and_then(|u| u.parameters.as_ref()),
        );
    }
    if let Some(binding) = &schemas.service_binding {
        check(
            "service_binding.create.parameters",
            binding.create.as_ref().and_then(|c| c.parameters.as_ref()),
        );
    }
    problems
}

/// Structural checks of one parameters schema: the parts of the draft-04 metaschema that catch
/// real mistakes, the `$schema` key, the size limit and the ban on external references.
fn validate_schema(path: &str, schema: &Value) -> Vec<String> {
    let mut problems = Vec::new();
    let Some(object) = schema.as_object() else {
        problems.push(format!("Schema {path} is not valid. Schema must be a hash"));
        return problems;
    };
    let size = serde_json::to_string(schema).map(|s| s.len()).unwrap_or(0);
    if size > MAX_SCHEMA_BYTES {
        problems.push(format!("Schema {path} is larger than 64KB"));
    }
    match object.get("$schema") {
        None => problems.push(format!(
            "Schema {path} is not valid. Schema must have $schema key but was not present"
        )),
        Some(Value::String(uri))
            if !uri.starts_with("http://json-schema.org/")
                && !uri.starts_with("https://json-schema.org/") =>
        {
            problems.push(format!(
                "Schema {path} is not valid. Custom meta schemas are not supported."
            ))
        }
        Some(Value::String(_)) => {}
        Some(other) => problems.push(format!(
            "Schema {path} is not valid. $schema must be a string, but has value {other}"
        )),
    }
    check_subschema(path, "#", schema, &mut problems);
    problems
}

const SIMPLE_TYPES: [&str; 7] = [
    "array", "boolean", "integer", "null", "number", "object", "string",
];

fn check_subschema(path: &str, pointer: &str, schema: &Value, problems: &mut Vec<String>) {
    let object = match schema {
        Value::Object(object) => object,
        // Boolean schemas are draft-06 and later, which the Cloud Controller accepts experimentally.
        Value::Bool(_) => return,
        other => {
            problems.push(format!(
                "Schema {path} is not valid. {pointer} must be an object, but has value {other}"
            ));
            return;
        }
    };
    let mut invalid = |what: String| {
        problems.push(format!("Schema {path} is not valid. {pointer}/{what}"));
    };
    if let Some(reference) = object.get("$ref") {
        match reference.as_str() {
            Some(r) if r.starts_with('#') => {}
            _ => invalid(format!(
                "$ref: no external references are allowed, but has value {reference}"
            )),
        }
    }
    if let Some(kind) = object.get("type") {
        let valid = match kind {
            Value::String(name) => SIMPLE_TYPES.contains(&name.as_str()),
            Value::Array(names) => {
                !names.is_empty()
                    && names
                        .iter()
                        .all(|n| n.as_str().is_some_and(|n| SIMPLE_TYPES.contains(&n)))
            }
            _ => false,
        };
        if !valid {
            invalid(format!(
                "type must be a simple type or an array of them, but has value {kind}"
            ));
        }
    }
    if let Some(required) = object.get("required") {
        let valid = required.as_array().is_some_and(|names| {
            let mut seen = HashSet::new();
            names
                .iter()
                .all(|n| n.as_str().is_some_and(|n| seen.insert(n)))
        });
        if !valid {
            invalid(format!(
                "required must be an array of unique strings, but has value {required}"
            ));
        }
    }
    if let Some(values) = object.get("enum") {
        if values.as_array().is_none_or(|v| v.is_empty()) {
            invalid(format!(
                "enum must be a non-empty array, but has value {values}"
            ));
        }
    }
    for keyword in ["minimum", "maximum", "multipleOf"] {
        if let Some(value) = object.get(keyword) {
            if !value.is_number() {
                invalid(format!("{keyword} must be a number, but has value {value}"));
            }
        }
    }
    for keyword in [
        "minLength",
        "maxLength",
        "minItems",
        "maxItems",
        "minProperties",
        "maxProperties",
    ] {
        if let Some(value) = object.get(keyword) {
            if !value.is_u64() {
                invalid(format!(
                    "{keyword} must be a non-negative integer, but has value {value}"
                ));
            }
        }
    }
    for keyword in ["properties", "definitions", "patternProperties"] {
        if let Some(value) = object.get(keyword) {
            match value.as_object() {
                Some(children) => {
                    for (name, child) in children {
                        check_subschema(path, &format!("{pointer}/{keyword}/{name}"), child, problems);
                    }
                }
                None => problems.push(format!(
                    "Schema {path} is not valid. {pointer}/{keyword} must be an object, but has value {value}"
                )),
            }
        }
    }
    for keyword in ["allOf", "anyOf", "oneOf"] {
        if let Some(value) = object.get(keyword) {
            match value.as_array() {
                Some(children) if !children.is_empty() => {
                    for (index, child) in children.iter().enumerate() {
                        check_subschema(path, &format!("{pointer}/{keyword}/{index}"), child, problems);
                    }
                }
                _ => problems.push(format!(
                    "Schema {path} is not valid. {pointer}/{keyword} must be a non-empty array, but has value {value}"
                )),
            }
        }
    }
    for keyword in ["not", "additionalProperties", "additionalItems"] {
        if let Some(child) = object.get(keyword) {
            check_subschema(path, &format!("{pointer}/{keyword}"), child, problems);
        }
    }
    if let Some(items) = object.get("items") {
        match items {
            Value::Array(children) => {
                for (index, child) in children.iter().enumerate() {
                    check_subschema(path, &format!("{pointer}/items/{index}"), child, problems);
                }
            }
            child => check_subschema(path, &format!("{pointer}/items"), child, problems),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::catalog::{DashboardClient, InputParametersSchema, ServiceInstanceSchemas};
    use serde_json::json;

    fn plan(id: &str, name: &str) -> ServicePlan {
        ServicePlan {
            id: id.to_owned(),
            name: name.to_owned(),
            description: "a plan".to_owned(),
            ..ServicePlan::default()
        }
    }

    fn service(id: &str, name: &str, plans: Vec<ServicePlan>) -> ServiceOffering {
        ServiceOffering {
            id: id.to_owned(),
            name: name.to_owned(),
            description: "a service".to_owned(),
            bindable: true,
            plans,
            ..ServiceOffering::default()
        }
    }

    fn catalog(services: Vec<ServiceOffering>) -> Catalog {
        Catalog {
            services,
            ..Catalog::default()
        }
    }

    #[test]
    fn a_valid_catalog_passes() {
        let mut small = plan("p1", "small");
        small.maintenance_info = Some(MaintenanceInfo {
            version: Some("1.2.3-rc.1+build.5".to_owned()),
            ..MaintenanceInfo::default()
        });
        small.schemas = Some(Schemas {
            service_instance: Some(ServiceInstanceSchemas {
                create: Some(InputParametersSchema {
                    parameters: Some(json!({
                        "$schema": "http://json-schema.org/draft-04/schema#",
                        "type": "object",
                        "properties": {"size": {"type": "integer", "minimum": 1}},
                        "required": ["size"],
                    })),
                    ..InputParametersSchema::default()
                }),
                ..ServiceInstanceSchemas::default()
            }),
            ..Schemas::default()
        });
        let catalog = catalog(vec![service(
            "s1",
            "my-db.v2",
            vec![small, plan("p2", "large")],
        )]);
        assert_eq!(validate_catalog(&catalog), Ok(()));
    }

    #[test]
    fn an_empty_catalog_is_rejected() {
        let error = validate_catalog(&catalog(vec![])).unwrap_err();
        assert_eq!(
            error.messages(),
            vec!["Service broker must provide at least one service"]
        );
    }

    #[test]
    fn every_problem_is_reported_in_the_cloud_controllers_shape() {
        let mut bad_plan = plan("p1", "bad plan");
        bad_plan.description = String::new();
        bad_plan.maintenance_info = Some(MaintenanceInfo {
            version: Some("1.2".to_owned()),
            ..MaintenanceInfo::default()
        });
        let mut first = service("s1", "svc", vec![bad_plan, plan("p1", "other")]);
        first.requires = vec!["teleport".to_owned()];
        first.dashboard_client = Some(DashboardClient {
            id: "dash".to_owned(),
            secret: String::new(),
            ..DashboardClient::default()
        });
        let second = service("s1", "svc", vec![]);
        let error = validate_catalog(&catalog(vec![first, second])).unwrap_err();
        let messages = error.messages();
        for expected in [
            "Service \"requires\" field contains unsupported value \"teleport\"",
            "Service dashboard client secret is required",
            "Service dashboard client redirect_uri is required",
            "Service id must be unique",
            "Service name must be unique",
            "Plan ids must be unique within a service. Service svc already has a plan with id 'p1'",
            "Plan name \"bad plan\" must contain only alphanumeric characters, '.', '-' and '_'",
            "Plan description is required",
            "Maintenance info version must be a semantic version, but has value \"1.2\"",
            "At least one plan is required",
        ] {
            assert!(
                messages.iter().any(|m| m == expected),
                "missing {expected:?} in {messages:#?}"
            );
        }
        let report = error.to_string();
        assert!(
            report.starts_with("Service broker catalog is invalid: \nService svc\n  "),
            "{report}"
        );
        assert!(
            report.contains("\n  Plan bad plan\n    Plan name \"bad plan\" must"),
            "{report}"
        );
        assert!(
            !report.contains("used by a plan of another service"),
            "{report}"
        );
    }

    #[test]
    fn plan_ids_must_be_unique_across_offerings_and_names_within_one() {
        let error = validate_catalog(&catalog(vec![
            service(
                "s1",
                "one",
                vec![plan("shared", "small"), plan("p2", "small")],
            ),
            service("s2", "two", vec![plan("shared", "small")]),
        ]))
        .unwrap_err();
        let messages = error.messages();
        assert!(messages.contains(&"Plan names must be unique within a service. Service one already has a plan named small".to_owned()));
        assert_eq!(
            messages
                .iter()
                .filter(|m| m.contains("used by a plan of another service"))
                .count(),
            2,
            "{messages:#?}"
        );
    }

    #[test]
    fn schemas_need_the_schema_key_no_external_refs_and_sane_keywords() {
        let mut with_schema = plan("p1", "small");
        with_schema.schemas = Some(Schemas {
            service_instance: Some(ServiceInstanceSchemas {
                update: Some(InputParametersSchema {
                    parameters: Some(json!({
                        "type": "objekt",
                        "properties": {"a": {"$ref": "http://evil.example/schema.json"}},
                        "required": "a",
                    })),
                    ..InputParametersSchema::default()
                }),
                ..ServiceInstanceSchemas::default()
            }),
            ..Schemas::default()
        });
        let error =
            validate_catalog(&catalog(vec![service("s1", "svc", vec![with_schema])])).unwrap_err();
        let schemas = &error.services[0].plans[0].schemas;
        assert_eq!(schemas.len(), 4, "{schemas:#?}");
        assert!(schemas[0].contains("must have $schema key"));
        assert!(error
            .to_string()
            .contains("\n    Schemas\n      Schema service_instance.update.parameters"));
    }

    #[test]
    fn semver_follows_the_spec() {
        for good in [
            "0.0.0",
            "1.2.3",
            "10.20.30-alpha.1",
            "1.0.0+20130313144700",
            "1.0.0-0.3.7",
        ] {
            assert!(is_semver(good), "{good}");
        }
        for bad in [
            "1", "1.2", "01.2.3", "1.2.3-", "1.2.3-01", "1.2.3+", "v1.2.3", "1.2.3.4",
        ] {
            assert!(!is_semver(bad), "{bad}");
        }
    }
}
