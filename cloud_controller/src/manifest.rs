//! App manifests (`cf push`'s YAML): parsing and validation with CC's messages
//! (`AppManifestMessage`), applying a manifest to the apps of a space (`AppApplyManifest`), the
//! app as a manifest, and the diff of a manifest against the current state (`manifest_diff`).

use serde_json::{json, Map, Value};

use crate::db::models::{AppRow, DomainRow, ProcessRow, SpaceRow};
use crate::db::DbConn;
use crate::error::ApiError;
use crate::store;
use crate::store::apps::{NewAppSpec, ProcessChanges};

/// Port every destination gets (the port apps listen on, `$PORT`).
const APP_PORT: i32 = 8080;

/// What a manifest asks of one process.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ProcessManifest {
    /// Process type (`web`, `worker`, …).
    pub process_type: String,
    /// Instances.
    pub instances: Option<i32>,
    /// Memory in MB.
    pub memory_in_mb: Option<i32>,
    /// Disk in MB.
    pub disk_in_mb: Option<i32>,
    /// Log rate limit in bytes per second (-1 unlimited).
    pub log_rate_limit: Option<i64>,
    /// Start command (`Some(None)`: reset to the detected one).
    pub command: Option<Option<String>>,
    /// `port`, `process` or `http`.
    pub health_check_type: Option<String>,
    /// HTTP health check endpoint.
    pub health_check_endpoint: Option<String>,
    /// Health check timeout in seconds.
    pub timeout: Option<i32>,
    /// Health check invocation timeout in seconds.
    pub invocation_timeout: Option<i32>,
}

/// What a manifest asks of one app.
#[derive(Debug, Clone, Default)]
pub struct AppManifest {
    /// App name.
    pub name: String,
    /// The app's entry as sent (for the diff).
    pub raw: Map<String, Value>,
    /// Buildpack names or URLs (`Some(vec![])`: detect).
    pub buildpacks: Option<Vec<String>>,
    /// Stack name.
    pub stack: Option<String>,
    /// Environment variables to merge (a `null` value removes the variable).
    pub env: Option<Map<String, Value>>,
    /// Processes: app-level fields make the `web` entry, merged with `processes[type=web]`.
    pub processes: Vec<ProcessManifest>,
    /// Route URLs (`host.domain/path`).
    pub routes: Option<Vec<String>>,
    /// `no-route: true`.
    pub no_route: bool,
    /// `random-route: true`.
    pub random_route: bool,
    /// `default-route: true`.
    pub default_route: bool,
}

/// A parsed manifest: its apps in order.
#[derive(Debug, Clone, Default)]
pub struct Manifest {
    /// The `applications` entries.
    pub applications: Vec<AppManifest>,
}

/// Parses and validates a manifest body. Unparseable YAML is CC's 400 `CF-MessageParseError`;
/// invalid content is a 422 whose detail names the application.
pub fn parse(body: &[u8]) -> Result<Manifest, ApiError> {
    let invalid_body = || ApiError::parse("invalid request body");
    let yaml: serde_yaml::Value = serde_yaml::from_slice(body).map_err(|_| invalid_body())?;
    let document: Value = serde_json::to_value(&yaml).map_err(|_| invalid_body())?;
    let document = document.as_object().ok_or_else(invalid_body)?;
    let applications = match document.get("applications") {
        Some(Value::Array(applications)) if !applications.is_empty() => applications,
        _ => {
            return Err(ApiError::unprocessable(
                "Applications must be a non-empty array",
            ))
        }
    };
    let mut parsed = Vec::new();
    let mut errors = Vec::new();
    for (index, entry) in applications.iter().enumerate() {
        let name = entry.get("name").and_then(Value::as_str).unwrap_or("");
        let prefix = if name.is_empty() {
            format!("For application at index {index}: ")
        } else {
            format!("For application '{name}': ")
        };
        match parse_app(entry) {
            Ok(app) => parsed.push(app),
            Err(messages) => errors.extend(messages.into_iter().map(|m| format!("{prefix}{m}"))),
        }
    }
    if !errors.is_empty() {
        return Err(ApiError::unprocessable(errors.join(", ")));
    }
    let mut names: Vec<&str> = parsed.iter().map(|app| app.name.as_str()).collect();
    names.sort_unstable();
    if names.windows(2).any(|pair| pair[0] == pair[1]) {
        return Err(ApiError::unprocessable(
            "Application names must be unique within a manifest",
        ));
    }
    Ok(Manifest {
        applications: parsed,
    })
}

/// Megabytes of a CC byte amount: `64M`, `1G`, `512MB`, `1.5GB`, a bare number is MB.
/// `Err(true)` is "not a number", `Err(false)` an unsupported unit.
pub fn megabytes(value: &Value) -> Result<i64, bool> {
    let text = match value {
        Value::Number(number) => return number.as_i64().ok_or(true),
        Value::String(text) => text.trim().to_uppercase(),
        _ => return Err(true),
    };
    let split = text
        .find(|c: char| !(c.is_ascii_digit() || c == '.' || c == '-'))
        .unwrap_or(text.len());
    let (number, unit) = text.split_at(split);
    let number: f64 = number.trim().parse().map_err(|_| true)?;
    let factor = match unit.trim() {
        "" | "M" | "MB" => 1.0,
        "B" => 1.0 / (1024.0 * 1024.0),
        "K" | "KB" => 1.0 / 1024.0,
        "G" | "GB" => 1024.0,
        "T" | "TB" => 1024.0 * 1024.0,
        _ => return Err(false),
    };
    Ok((number * factor).round() as i64)
}

/// Bytes per second of a log rate limit (`-1`/`unlimited` is -1).
fn bytes_per_second(value: &Value) -> Result<i64, bool> {
    if value.as_i64() == Some(-1) || value.as_str() == Some("-1") {
        return Ok(-1);
    }
    if value.as_str() == Some("unlimited") {
        return Ok(-1);
    }
    if let Some(number) = value.as_i64() {
        return Ok(number);
    }
    megabytes(value)
        .map(|mb| mb * 1024 * 1024)
        .or_else(|not_a_number| {
            // Amounts below a megabyte (`512K`) round to zero above; compute them in bytes.
            let text = value.as_str().unwrap_or("").trim().to_uppercase();
            let digits = text.trim_end_matches(['K', 'B']);
            match digits.parse::<i64>() {
                Ok(kilo) if text.ends_with('K') || text.ends_with("KB") => Ok(kilo * 1024),
                _ => Err(not_a_number),
            }
        })
}

fn label_of(key: &str) -> String {
    let spaced = key.replace(['-', '_'], " ");
    let mut characters = spaced.chars();
    match characters.next() {
        Some(first) => first.to_uppercase().chain(characters).collect(),
        None => String::new(),
    }
}

/// The fields of one process, validated; `errors` gets CC's messages (without the prefix).
fn parse_process(
    object: &Map<String, Value>,
    process_type: &str,
    disk_keys: &[&str],
    errors: &mut Vec<String>,
) -> ProcessManifest {
    let mut process = ProcessManifest {
        process_type: process_type.to_owned(),
        ..ProcessManifest::default()
    };
    let prefix = format!("Process \"{process_type}\": ");
    let mut error = |message: String| errors.push(format!("{prefix}{message}"));
    if let Some(value) = object.get("instances").filter(|v| !v.is_null()) {
        match value.as_i64() {
            Some(n) if n < 0 => error("Instances must be greater than or equal to 0".into()),
            Some(n) => process.instances = i32::try_from(n).ok(),
            None => error("Instances is not a number".into()),
        }
    }
    let amount =
        |key: &str, label: &str, target: &mut Option<i32>, error: &mut dyn FnMut(String)| {
            if let Some(value) = object.get(key).filter(|v| !v.is_null()) {
                match megabytes(value) {
                    Ok(mb) if mb <= 0 => error(format!("{label} must be greater than 0MB")),
                    Ok(mb) => *target = i32::try_from(mb).ok(),
                    Err(true) => error(format!("{label} is not a number")),
                    Err(false) => error(format!(
                        "{label} must use a supported unit: B, K, KB, M, MB, G, GB, T, or TB"
                    )),
                }
            }
        };
    amount("memory", "Memory", &mut process.memory_in_mb, &mut error);
    for key in disk_keys {
        amount(key, "Disk quota", &mut process.disk_in_mb, &mut error);
    }
    if let Some(value) = object
        .get("log-rate-limit-per-second")
        .filter(|v| !v.is_null())
    {
        match bytes_per_second(value) {
            Ok(rate) if rate < -1 => {
                error("Log rate limit must be an integer greater than or equal to -1".into())
            }
            Ok(rate) => process.log_rate_limit = Some(rate),
            Err(true) => error("Log rate limit is not a number".into()),
            Err(false) => error(
                "Log rate limit must use a supported unit: B, K, KB, M, MB, G, GB, T, or TB".into(),
            ),
        }
    }
    match object.get("command") {
        None => {}
        Some(Value::Null) => process.command = Some(None),
        Some(Value::String(command)) if command == "null" || command == "default" => {
            process.command = Some(None)
        }
        Some(Value::String(command)) if !command.is_empty() && command.len() <= 4096 => {
            process.command = Some(Some(command.clone()))
        }
        Some(_) => error("Command must be between 1 and 4096 characters".into()),
    }
    match object.get("health-check-type") {
        None | Some(Value::Null) => {}
        Some(Value::String(kind))
            if ["port", "process", "http", "none"].contains(&kind.as_str()) =>
        {
            let kind = if kind == "none" {
                "process"
            } else {
                kind.as_str()
            };
            process.health_check_type = Some(kind.to_owned());
        }
        Some(_) => error("Health check type must be \"port\", \"process\", or \"http\"".into()),
    }
    match object.get("health-check-http-endpoint") {
        None | Some(Value::Null) => {}
        Some(Value::String(endpoint)) if endpoint.starts_with('/') => {
            process.health_check_endpoint = Some(endpoint.clone())
        }
        Some(_) => error("Health check http endpoint must be a valid URI path".into()),
    }
    if process.health_check_endpoint.is_some()
        && process
            .health_check_type
            .as_deref()
            .is_some_and(|kind| kind != "http")
    {
        error("Health check type must be \"http\" to set a health check HTTP endpoint".into());
    }
    for (key, target) in [
        ("timeout", &mut process.timeout),
        (
            "health-check-invocation-timeout",
            &mut process.invocation_timeout,
        ),
    ] {
        if let Some(value) = object.get(key).filter(|v| !v.is_null()) {
            match value.as_i64() {
                Some(n) if n >= 1 => *target = i32::try_from(n).ok(),
                Some(_) => error(format!(
                    "{} must be greater than or equal to 1",
                    label_of(key)
                )),
                None => error(format!("{} is not a number", label_of(key))),
            }
        }
    }
    process
}

/// Overlays the fields `overlay` sets on `base`.
fn merge_process(base: &mut ProcessManifest, overlay: ProcessManifest) {
    macro_rules! take {
        ($($field:ident),*) => { $(if overlay.$field.is_some() { base.$field = overlay.$field; })* };
    }
    take!(
        instances,
        memory_in_mb,
        disk_in_mb,
        log_rate_limit,
        command,
        health_check_type,
        health_check_endpoint,
        timeout,
        invocation_timeout
    );
}

fn optional_bool(object: &Map<String, Value>, key: &str, errors: &mut Vec<String>) -> bool {
    match object.get(key) {
        None | Some(Value::Null) => false,
        Some(Value::Bool(value)) => *value,
        Some(Value::String(text)) if text == "true" || text == "false" => text == "true",
        Some(_) => {
            errors.push(format!("{} must be a boolean", label_of(key)));
            false
        }
    }
}

fn parse_app(entry: &Value) -> Result<AppManifest, Vec<String>> {
    let mut errors = Vec::new();
    let Some(object) = entry.as_object() else {
        return Err(vec!["Application must be an object".into()]);
    };
    let name = match object.get("name") {
        Some(Value::String(name)) if !name.trim().is_empty() => name.clone(),
        _ => return Err(vec!["Name must not be empty".into()]),
    };
    if name.chars().count() > 255 {
        errors.push("Name is too long (maximum is 255 characters)".into());
    }
    let mut app = AppManifest {
        name,
        raw: object.clone(),
        ..AppManifest::default()
    };
    if object.contains_key("docker") || object.get("lifecycle").is_some_and(|l| l != "buildpack") {
        errors.push("Only the buildpack lifecycle is supported".into());
    }
    if object
        .get("sidecars")
        .is_some_and(|v| v.as_array().is_some_and(|items| !items.is_empty()))
    {
        errors.push(format!("{} are not supported yet", label_of("sidecars")));
    }
    if let Err(error) =
        crate::service_jobs::manifest_services(object.get("services").unwrap_or(&Value::Null))
    {
        errors.push(error);
    }
    let to_buildpack_list = |items: &[Value], errors: &mut Vec<String>| -> Vec<String> {
        let mut list = Vec::new();
        for item in items {
            match item.as_str() {
                Some("default" | "null") => {}
                Some(name) if !name.is_empty() => list.push(name.to_owned()),
                _ => errors.push("Buildpacks can only contain strings".into()),
            }
        }
        list
    };
    match object.get("buildpacks") {
        None => {}
        Some(Value::Null) => app.buildpacks = Some(Vec::new()),
        Some(Value::Array(items)) => app.buildpacks = Some(to_buildpack_list(items, &mut errors)),
        Some(_) => errors.push("Buildpacks must be a list of strings".into()),
    }
    match object.get("buildpack") {
        None => {}
        Some(_) if object.contains_key("buildpacks") => {
            errors.push("Buildpack cannot be used with buildpacks; use buildpacks only".into())
        }
        Some(Value::Null) => app.buildpacks = Some(Vec::new()),
        Some(Value::String(name)) => {
            app.buildpacks = Some(to_buildpack_list(
                &[Value::String(name.clone())],
                &mut errors,
            ))
        }
        Some(_) => errors.push("Buildpack must be a string".into()),
    }
    match object.get("stack") {
        None | Some(Value::Null) => {}
        Some(Value::String(stack)) if !stack.is_empty() => app.stack = Some(stack.clone()),
        Some(_) => errors.push("Stack must be a string".into()),
    }
    match object.get("env") {
        None | Some(Value::Null) => {}
        Some(Value::Object(env)) => {
            for (key, value) in env {
                let upper = key.to_uppercase();
                if key.is_empty() {
                    errors.push("Env key must be a minimum length of 1".into());
                } else if upper.starts_with("VCAP_") {
                    errors.push("Env cannot start with VCAP_".into());
                } else if upper.starts_with("VMC_") {
                    errors.push("Env cannot start with VMC_".into());
                } else if upper == "PORT" {
                    errors.push("Env cannot set PORT".into());
                } else if value.is_object() || value.is_array() {
                    errors.push(format!(
                        "Env value of '{key}' must be a string, number or boolean"
                    ));
                }
            }
            app.env = Some(env.clone());
        }
        Some(_) => errors.push("Env must be an object of keys and values".into()),
    }
    app.no_route = optional_bool(object, "no-route", &mut errors);
    app.random_route = optional_bool(object, "random-route", &mut errors);
    app.default_route = optional_bool(object, "default-route", &mut errors);
    match object.get("routes") {
        None | Some(Value::Null) => {}
        Some(Value::Array(routes)) => {
            let mut urls = Vec::new();
            for route in routes {
                match route.get("route").and_then(Value::as_str) {
                    Some(url) if !url.is_empty() => urls.push(url.to_owned()),
                    _ => {
                        errors.push("Routes must be a list of route objects".into());
                        break;
                    }
                }
                if route
                    .get("protocol")
                    .and_then(Value::as_str)
                    .is_some_and(|protocol| protocol != "http1" && protocol != "http2")
                {
                    errors.push(
                        "Route protocol must be 'http1' or 'http2'; Kiln routes are HTTP only"
                            .into(),
                    );
                }
            }
            app.routes = Some(urls);
        }
        Some(_) => errors.push("Routes must be a list of route objects".into()),
    }
    if app.no_route && app.routes.is_some() {
        errors.push("Cannot use the combination of properties: no-route, routes".into());
    }
    if app.random_route && app.routes.is_some() {
        errors.push("Cannot use the combination of properties: random-route, routes".into());
    }
    let mut web = parse_process(object, "web", &["disk_quota", "disk-quota"], &mut errors);
    let mut others = Vec::new();
    match object.get("processes") {
        None | Some(Value::Null) => {}
        Some(Value::Array(processes)) => {
            for process in processes {
                let Some(process) = process.as_object() else {
                    errors.push("Processes must be an array of process configurations".into());
                    break;
                };
                let Some(kind) = process
                    .get("type")
                    .and_then(Value::as_str)
                    .filter(|kind| !kind.is_empty())
                else {
                    errors.push("All Processes must specify a type".into());
                    continue;
                };
                let parsed = parse_process(process, kind, &["disk_quota"], &mut errors);
                if kind == "web" {
                    merge_process(&mut web, parsed);
                } else if others
                    .iter()
                    .any(|p: &ProcessManifest| p.process_type == kind)
                {
                    errors.push(format!("Process \"{kind}\" may only be present once"));
                } else {
                    others.push(parsed);
                }
            }
        }
        Some(_) => errors.push("Processes must be an array of process configurations".into()),
    }
    if !errors.is_empty() {
        return Err(errors);
    }
    app.processes = std::iter::once(web).chain(others).collect();
    Ok(app)
}

/// The space's default domain: the org's first private domain, otherwise the oldest shared one.
fn default_domain(domains: &[DomainRow], organization_id: i32) -> Option<&DomainRow> {
    domains
        .iter()
        .filter(|domain| !domain.internal)
        .find(|domain| domain.owning_organization_id == Some(organization_id))
        .or_else(|| {
            domains
                .iter()
                .filter(|domain| !domain.internal && domain.owning_organization_id.is_none())
                .min_by_key(|domain| domain.id)
        })
}

fn check_host(host: &str) -> Result<(), ApiError> {
    if host.chars().count() > 63 {
        return Err(ApiError::unprocessable(
            "Host is too long (maximum is 63 characters)",
        ));
    }
    if host != "*"
        && !host
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
    {
        return Err(ApiError::unprocessable(
            "Host must be either \"*\" or contain only alphanumeric characters, \"_\", or \"-\"",
        ));
    }
    Ok(())
}

/// Splits `host.domain/path` into host, domain and path against the domains usable in the org.
fn resolve_route<'a>(
    url: &str,
    domains: &'a [DomainRow],
    organization_id: i32,
) -> Result<(String, &'a DomainRow, String), ApiError> {
    let without_scheme = url
        .strip_prefix("https://")
        .or_else(|| url.strip_prefix("http://"))
        .unwrap_or(url);
    let (hostname, path) = match without_scheme.find('/') {
        Some(position) => without_scheme.split_at(position),
        None => (without_scheme, ""),
    };
    if hostname.contains(':') {
        return Err(ApiError::unprocessable(format!(
            "The route '{url}' is not a properly formed URL; Kiln routes have no ports"
        )));
    }
    let usable = domains.iter().filter(|domain| {
        domain
            .owning_organization_id
            .is_none_or(|owner| owner == organization_id)
    });
    let mut best: Option<(String, &DomainRow)> = None;
    for domain in usable {
        let host = if hostname == domain.name {
            Some(String::new())
        } else {
            hostname
                .strip_suffix(&format!(".{}", domain.name))
                .map(str::to_owned)
        };
        if let Some(host) = host {
            if best
                .as_ref()
                .is_none_or(|(_, current)| domain.name.len() > current.name.len())
            {
                best = Some((host, domain));
            }
        }
    }
    let (host, domain) = best.ok_or_else(|| {
        ApiError::unprocessable(format!(
            "The route '{url}' did not match any existing domains."
        ))
    })?;
    if path == "/" {
        return Err(ApiError::unprocessable("Path cannot be exactly /"));
    }
    Ok((host, domain, path.to_owned()))
}

/// Finds or creates the route and maps it to the app's web process.
fn map_route(
    conn: &mut DbConn,
    app: &AppRow,
    host: &str,
    domain: &DomainRow,
    path: &str,
) -> Result<(), ApiError> {
    check_host(host)?;
    if domain.owning_organization_id.is_none() && host.is_empty() {
        return Err(ApiError::unprocessable(
            "Missing host. Routes in shared domains must have a host defined.",
        ));
    }
    let existing = store::routes::list(conn)?
        .into_iter()
        .find(|route| route.domain_id == domain.id && route.host == host && route.path == path);
    let route = match existing {
        Some(route) => route,
        None => store::routes::create(conn, host, path, domain.id, app.space_id, || {
            ApiError::unprocessable("Route already exists.")
        })?,
    };
    if route.space_id != app.space_id {
        return Err(ApiError::unprocessable(
            "The app cannot be mapped to this route because the route is not in this space. Apps must be mapped to routes in the same space.",
        ));
    }
    store::routes::add_destination(conn, route.id, app.id, "web", APP_PORT, "http1")
}

fn app_has_routes(conn: &mut DbConn, app_id: i32) -> Result<bool, ApiError> {
    Ok(store::routes::list_destinations(conn)?
        .iter()
        .any(|destination| destination.app_id == app_id))
}

const ADJECTIVES: &[&str] = &[
    "brave", "calm", "eager", "fancy", "gentle", "happy", "jolly", "kind", "lively", "proud",
    "quiet", "shy", "silly", "swift", "witty", "zany", "bold", "bright", "cheerful", "daring",
];
const NOUNS: &[&str] = &[
    "badger", "bear", "cheetah", "dolphin", "eagle", "fox", "gecko", "hare", "ibex", "jaguar",
    "koala", "lemur", "marmot", "newt", "otter", "panda", "quail", "raccoon", "seal", "wombat",
];

/// `<name>-<adjective>-<noun>`, CC's random route host.
fn random_host(name: &str) -> String {
    use rand::seq::SliceRandom;
    let mut rng = rand::thread_rng();
    let adjective = ADJECTIVES.choose(&mut rng).copied().unwrap_or("brave");
    let noun = NOUNS.choose(&mut rng).copied().unwrap_or("otter");
    format!("{name}-{adjective}-{noun}")
}

/// Looks up the app named like the manifest entry in the space, creating it (STOPPED, web
/// process with CC's defaults) when missing. Runs before the job, as CC does.
pub fn find_or_create_app(
    conn: &mut DbConn,
    space: &SpaceRow,
    manifest: &AppManifest,
    default_stack: &str,
) -> Result<AppRow, ApiError> {
    if let Some(app) = find_app(conn, space.id, &manifest.name)? {
        return Ok(app);
    }
    store::apps::create(
        conn,
        &NewAppSpec {
            name: manifest.name.clone(),
            space_id: space.id,
            buildpacks: Vec::new(),
            stack: Some(default_stack.to_owned()),
            environment_variables: Map::new(),
        },
    )
    .map_err(|error| prefixed(&manifest.name, error))
}

/// The app with this name in the space.
pub fn find_app(conn: &mut DbConn, space_id: i32, name: &str) -> Result<Option<AppRow>, ApiError> {
    Ok(store::apps::list(conn)?
        .into_iter()
        .find(|app| app.space_id == space_id && app.name == name))
}

fn prefixed(name: &str, mut error: ApiError) -> ApiError {
    if error.kind.status() < 500 {
        error.detail = format!("For application '{name}': {}", error.detail);
    }
    error
}

/// Applies one manifest entry to its app (CC's `AppApplyManifest`); errors carry the
/// "For application 'name': " prefix.
pub fn apply(
    conn: &mut DbConn,
    space: &SpaceRow,
    app: &AppRow,
    manifest: &AppManifest,
) -> Result<(), ApiError> {
    apply_unprefixed(conn, space, app, manifest).map_err(|error| prefixed(&manifest.name, error))
}

fn apply_unprefixed(
    conn: &mut DbConn,
    space: &SpaceRow,
    app: &AppRow,
    manifest: &AppManifest,
) -> Result<(), ApiError> {
    // Lifecycle: validated against the buildpacks and stacks tables, as CC's model does.
    if manifest.buildpacks.is_some() || manifest.stack.is_some() {
        let buildpacks = match &manifest.buildpacks {
            Some(buildpacks) => buildpacks.clone(),
            None => serde_json::from_str(&app.buildpacks).unwrap_or_default(),
        };
        for buildpack in &buildpacks {
            let is_url = ["http://", "https://", "git://"]
                .iter()
                .any(|scheme| buildpack.starts_with(scheme));
            if !is_url && store::buildpacks::find_by_name(conn, buildpack)?.is_none() {
                return Err(ApiError::unprocessable(format!(
                    "Buildpack \"{buildpack}\" must be an existing admin buildpack or a valid git URI"
                )));
            }
        }
        let stack = manifest.stack.clone().or_else(|| app.stack.clone());
        if let Some(stack) = &stack {
            if store::reference_data::find_stack_by_name(conn, stack)?.is_none() {
                return Err(ApiError::unprocessable("Stack must be an existing stack"));
            }
        }
        store::apps::update(conn, app, None, Some((&buildpacks, stack.as_deref())))?;
    }
    // Processes.
    for process in &manifest.processes {
        let row = match store::apps::find_process_of_type(conn, app.id, &process.process_type)? {
            Some(row) => row,
            None => store::apps::create_process(conn, app.id, &process.process_type, 0)?,
        };
        let mut changes = ProcessChanges {
            command: process.command.clone(),
            instances: process.instances,
            memory_in_mb: process.memory_in_mb,
            disk_in_mb: process.disk_in_mb,
            log_rate_limit: process.log_rate_limit,
            health_check_type: process.health_check_type.clone(),
            health_check_endpoint: process.health_check_endpoint.clone().map(Some),
            health_check_timeout: process.timeout.map(Some),
            health_check_invocation_timeout: process.invocation_timeout.map(Some),
        };
        if process
            .health_check_type
            .as_deref()
            .is_some_and(|kind| kind != "http")
        {
            changes.health_check_endpoint = Some(None);
        }
        store::apps::update_process(conn, row.id, &changes)?;
    }
    // Environment variables, merged.
    if let Some(env) = &manifest.env {
        let mut variables: Map<String, Value> =
            serde_json::from_str(&app.environment_variables).unwrap_or_default();
        for (key, value) in env {
            if value.is_null() {
                variables.remove(key);
            } else {
                variables.insert(key.clone(), value.clone());
            }
        }
        store::apps::set_environment_variables(conn, app.id, &variables)?;
    }
    // Routes.
    if manifest.no_route {
        store::routes::delete_destinations_of_app(conn, app.id)?;
        return Ok(());
    }
    let domains = store::reference_data::list_domains(conn)?;
    if let Some(routes) = &manifest.routes {
        for url in routes {
            let (host, domain, path) = resolve_route(url, &domains, space.organization_id)?;
            map_route(conn, app, &host, domain, &path)?;
        }
        return Ok(());
    }
    if (manifest.random_route || manifest.default_route) && !app_has_routes(conn, app.id)? {
        let domain = default_domain(&domains, space.organization_id).ok_or_else(|| {
            ApiError::unprocessable("No domains exist. Create a shared domain first.")
        })?;
        let host = if manifest.random_route {
            random_host(&app.name)
        } else {
            app.name.clone()
        };
        map_route(conn, app, &host, domain, "")?;
    }
    Ok(())
}

/// A process as a manifest entry (CC's `AppManifestPresenter`).
fn process_manifest(process: &ProcessRow) -> Value {
    let mut entry = Map::new();
    entry.insert("type".into(), json!(process.process_type));
    entry.insert("instances".into(), json!(process.instances));
    entry.insert("memory".into(), json!(format!("{}M", process.memory_in_mb)));
    entry.insert(
        "disk_quota".into(),
        json!(format!("{}M", process.disk_in_mb)),
    );
    if process.log_rate_limit >= 0 {
        entry.insert(
            "log-rate-limit-per-second".into(),
            json!(format!("{}B", process.log_rate_limit)),
        );
    }
    if let Some(command) = &process.command {
        entry.insert("command".into(), json!(command));
    }
    entry.insert("health-check-type".into(), json!(process.health_check_type));
    if let Some(endpoint) = &process.health_check_endpoint {
        entry.insert("health-check-http-endpoint".into(), json!(endpoint));
    }
    if let Some(timeout) = process.health_check_timeout {
        entry.insert("timeout".into(), json!(timeout));
    }
    if let Some(timeout) = process.health_check_invocation_timeout {
        entry.insert("health-check-invocation-timeout".into(), json!(timeout));
    }
    Value::Object(entry)
}

/// The app as a manifest entry: name, lifecycle, env, routes, processes.
pub fn app_manifest(conn: &mut DbConn, app: &AppRow) -> Result<Map<String, Value>, ApiError> {
    let mut entry = Map::new();
    entry.insert("name".into(), json!(app.name));
    let buildpacks: Vec<String> = serde_json::from_str(&app.buildpacks).unwrap_or_default();
    if !buildpacks.is_empty() {
        entry.insert("buildpacks".into(), json!(buildpacks));
    }
    if let Some(stack) = &app.stack {
        entry.insert("stack".into(), json!(stack));
    }
    let env: Map<String, Value> =
        serde_json::from_str(&app.environment_variables).unwrap_or_default();
    if !env.is_empty() {
        entry.insert("env".into(), Value::Object(env));
    }
    let domains = store::reference_data::list_domains(conn)?;
    let mut route_ids: Vec<i32> = store::routes::list_destinations(conn)?
        .into_iter()
        .filter(|destination| destination.app_id == app.id)
        .map(|destination| destination.route_id)
        .collect();
    route_ids.dedup();
    let routes: Vec<Value> = store::routes::list(conn)?
        .into_iter()
        .filter(|route| route_ids.contains(&route.id))
        .filter_map(|route| {
            let domain = domains.iter().find(|domain| domain.id == route.domain_id)?;
            Some(json!({"route": crate::v3::present::route_url(&route.host, &domain.name, &route.path)}))
        })
        .collect();
    if routes.is_empty() {
        entry.insert("no-route".into(), json!(true));
    } else {
        entry.insert("routes".into(), Value::Array(routes));
    }
    let processes: Vec<Value> = store::apps::processes_of(conn, app.id)?
        .iter()
        .map(process_manifest)
        .collect();
    entry.insert("processes".into(), Value::Array(processes));
    Ok(entry)
}

/// The space's manifest of these apps as YAML text.
pub fn to_yaml(applications: Vec<Map<String, Value>>) -> Result<String, ApiError> {
    let document = json!({"applications": applications});
    serde_yaml::to_string(&document).map_err(ApiError::internal)
}

/// Top-level keys the diff compares; app-level process fields are compared with the `web`
/// process.
const DIFF_KEYS: &[&str] = &[
    "buildpacks",
    "stack",
    "env",
    "routes",
    "instances",
    "memory",
    "disk_quota",
    "log-rate-limit-per-second",
    "command",
    "health-check-type",
    "health-check-http-endpoint",
    "timeout",
    "health-check-invocation-timeout",
    "processes",
];

/// The manifest's value in the presenter's normal form (amounts as `<n>M`).
fn normalize(key: &str, value: &Value) -> Value {
    match key {
        "memory" | "disk_quota" => megabytes(value)
            .map(|mb| json!(format!("{mb}M")))
            .unwrap_or_else(|_| value.clone()),
        "log-rate-limit-per-second" => bytes_per_second(value)
            .map(|bytes| json!(format!("{bytes}B")))
            .unwrap_or_else(|_| value.clone()),
        "instances" | "timeout" | "health-check-invocation-timeout" => value
            .as_str()
            .and_then(|text| text.parse::<i64>().ok())
            .map_or_else(|| value.clone(), |n| json!(n)),
        "env" => match value {
            Value::Object(env) => Value::Object(
                env.iter()
                    .map(|(k, v)| {
                        let v = match v {
                            Value::Number(_) | Value::Bool(_) => json!(v.to_string()),
                            other => other.clone(),
                        };
                        (k.clone(), v)
                    })
                    .collect(),
            ),
            other => other.clone(),
        },
        "health-check-type" if value == "none" => json!("process"),
        "processes" => match value {
            Value::Array(processes) => Value::Array(
                processes
                    .iter()
                    .map(|process| match process {
                        Value::Object(fields) => Value::Object(
                            fields
                                .iter()
                                .map(|(k, v)| (k.clone(), normalize(k, v)))
                                .collect(),
                        ),
                        other => other.clone(),
                    })
                    .collect(),
            ),
            other => other.clone(),
        },
        _ => value.clone(),
    }
}

fn diff_value(path: &str, was: Option<&Value>, value: &Value, out: &mut Vec<Value>) {
    match (was, value) {
        (None, _) => out.push(json!({"op": "add", "path": path, "value": value})),
        (Some(Value::Object(old)), Value::Object(new)) => {
            for (key, new_value) in new {
                diff_value(&format!("{path}/{key}"), old.get(key), new_value, out);
            }
            for (key, old_value) in old {
                if !new.contains_key(key) {
                    out.push(
                        json!({"op": "remove", "path": format!("{path}/{key}"), "was": old_value}),
                    );
                }
            }
        }
        (Some(old), new) if old != new => {
            out.push(json!({"op": "replace", "path": path, "was": old, "value": new}))
        }
        _ => {}
    }
}

/// CC's `manifest_diff`: JSON-patch-like entries for what applying `manifest` would change.
pub fn diff(
    conn: &mut DbConn,
    space: &SpaceRow,
    manifest: &Manifest,
) -> Result<Vec<Value>, ApiError> {
    let mut out = Vec::new();
    for (index, app_manifest) in manifest.applications.iter().enumerate() {
        let mut existing = match find_app(conn, space.id, &app_manifest.name)? {
            Some(app) => app_manifest_hash(conn, &app)?,
            None => Map::new(),
        };
        // Process fields live on the web process; compare app-level fields with it.
        if let Some(web) = existing.get("processes").and_then(|processes| {
            processes
                .as_array()
                .and_then(|list| list.iter().find(|p| p["type"] == "web"))
                .cloned()
        }) {
            for (key, value) in web.as_object().into_iter().flatten() {
                if key != "type" {
                    existing.insert(key.clone(), value.clone());
                }
            }
        }
        for (key, value) in &app_manifest.raw {
            let key = if key == "disk-quota" {
                "disk_quota"
            } else {
                key
            };
            if !DIFF_KEYS.contains(&key) || value.is_null() {
                continue;
            }
            let path = format!("/applications/{index}/{key}");
            let value = normalize(key, value);
            let was = existing.get(key).map(|was| normalize(key, was));
            if key == "processes" {
                diff_processes(&path, was.as_ref(), &value, &mut out);
            } else {
                diff_value(&path, was.as_ref(), &value, &mut out);
            }
        }
    }
    Ok(out)
}

/// Processes are compared by type, field by field, without removals.
fn diff_processes(path: &str, was: Option<&Value>, value: &Value, out: &mut Vec<Value>) {
    let (Some(Value::Array(old)), Value::Array(new)) = (was, value) else {
        diff_value(path, was, value, out);
        return;
    };
    for (index, process) in new.iter().enumerate() {
        let Some(fields) = process.as_object() else {
            continue;
        };
        let old_process = old.iter().find(|p| p.get("type") == fields.get("type"));
        let item_path = format!("{path}/{index}");
        match old_process.and_then(Value::as_object) {
            None => out.push(json!({"op": "add", "path": item_path, "value": process})),
            Some(old_fields) => {
                for (key, field) in fields {
                    diff_value(
                        &format!("{item_path}/{key}"),
                        old_fields.get(key),
                        field,
                        out,
                    );
                }
            }
        }
    }
}

fn app_manifest_hash(conn: &mut DbConn, app: &AppRow) -> Result<Map<String, Value>, ApiError> {
    app_manifest(conn, app)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn amounts_parse_like_cc() {
        assert_eq!(megabytes(&json!("64M")), Ok(64));
        assert_eq!(megabytes(&json!("1G")), Ok(1024));
        assert_eq!(megabytes(&json!("512mb")), Ok(512));
        assert_eq!(megabytes(&json!("1.5GB")), Ok(1536));
        assert_eq!(megabytes(&json!("1024")), Ok(1024));
        assert_eq!(megabytes(&json!(256)), Ok(256));
        assert_eq!(megabytes(&json!("200INVALID")), Err(false));
        assert_eq!(megabytes(&json!("lots")), Err(true));
    }

    #[test]
    fn app_level_fields_make_the_web_process() {
        let manifest = parse(
            b"applications:\n- name: a\n  memory: 64M\n  instances: 2\n  command: run\n  processes:\n  - type: web\n    disk_quota: 2G\n  - type: worker\n    instances: 1\n",
        )
        .unwrap();
        let app = &manifest.applications[0];
        assert_eq!(app.processes[0].memory_in_mb, Some(64));
        assert_eq!(app.processes[0].disk_in_mb, Some(2048));
        assert_eq!(app.processes[0].command, Some(Some("run".into())));
        assert_eq!(app.processes[1].process_type, "worker");
    }

    #[test]
    fn invalid_fields_name_the_application() {
        let error =
            parse(b"applications:\n- name: a\n  memory: 64Q\n  instances: -1\n").unwrap_err();
        assert_eq!(error.kind.status(), 422);
        assert_eq!(
            error.detail,
            "For application 'a': Process \"web\": Instances must be greater than or equal to 0, For application 'a': Process \"web\": Memory must use a supported unit: B, K, KB, M, MB, G, GB, T, or TB"
        );
        let error = parse(b"applications: [name: {").unwrap_err();
        assert_eq!(error.kind.status(), 400);
        assert_eq!(
            error.detail,
            "Request invalid due to parse error: invalid request body"
        );
    }

    #[test]
    fn routes_resolve_to_the_longest_domain() {
        let domain = |id, name: &str, owner| DomainRow {
            id,
            guid: format!("d{id}"),
            name: name.into(),
            internal: false,
            owning_organization_id: owner,
            created_at: String::new(),
            updated_at: String::new(),
        };
        let domains = vec![domain(1, "apps.io", None), domain(2, "x.apps.io", Some(7))];
        let (host, found, path) = resolve_route("web.x.apps.io/api", &domains, 7).unwrap();
        assert_eq!((host.as_str(), found.id, path.as_str()), ("web", 2, "/api"));
        let (host, found, _) = resolve_route("web.x.apps.io", &domains, 8).unwrap();
        assert_eq!((host.as_str(), found.id), ("web.x", 1));
        assert!(resolve_route("web.nowhere.org", &domains, 7).is_err());
        assert_eq!(default_domain(&domains, 7).unwrap().id, 2);
        assert_eq!(default_domain(&domains, 8).unwrap().id, 1);
    }
}
