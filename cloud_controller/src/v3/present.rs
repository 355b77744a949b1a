//! v3 JSON shapes (CC's presenters): storage rows become wire JSON here and only here.

use serde_json::{json, Value};

use crate::store::metadata::Metadata;

use crate::db::models::{
    AppRow, BuildRow, DestinationRow, DomainRow, DropletRow, FeatureFlagRow, JobRow, OrgRow,
    PackageRow, ProcessRow, QuotaRow, RoleRow, RouteRow, SpaceRow, StackRow, UserRow,
};

fn empty_metadata() -> Value {
    json!({"labels": {}, "annotations": {}})
}

/// A resource's `metadata` object.
pub fn metadata(metadata: &Metadata) -> Value {
    json!({"labels": metadata.labels, "annotations": metadata.annotations})
}

/// `resource` (as presented by one of the functions here) with its stored metadata in place
/// of the empty one.
pub fn with_metadata(mut resource: Value, stored: Option<&Metadata>) -> Value {
    if let Some(stored) = stored {
        resource["metadata"] = metadata(stored);
    }
    resource
}

/// `-1` (unlimited) is rendered as `null`.
fn limit(value: i64) -> Value {
    if value < 0 {
        Value::Null
    } else {
        json!(value)
    }
}

/// An organization.
pub fn organization(base: &str, org: &OrgRow, quota_guid: &str) -> Value {
    json!({
        "guid": org.guid,
        "created_at": org.created_at,
        "updated_at": org.updated_at,
        "name": org.name,
        "suspended": org.suspended,
        "relationships": {"quota": {"data": {"guid": quota_guid}}},
        "metadata": empty_metadata(),
        "links": {
            "self": {"href": format!("{base}/v3/organizations/{}", org.guid)},
            "domains": {"href": format!("{base}/v3/organizations/{}/domains", org.guid)},
            "default_domain": {"href": format!("{base}/v3/organizations/{}/domains/default", org.guid)},
            "quota": {"href": format!("{base}/v3/organization_quotas/{quota_guid}")},
        },
    })
}

/// A space.
pub fn space(base: &str, space: &SpaceRow, org_guid: &str) -> Value {
    json!({
        "guid": space.guid,
        "created_at": space.created_at,
        "updated_at": space.updated_at,
        "name": space.name,
        "suspended": false,
        "relationships": {
            "organization": {"data": {"guid": org_guid}},
            "quota": {"data": null},
        },
        "metadata": empty_metadata(),
        "links": {
            "self": {"href": format!("{base}/v3/spaces/{}", space.guid)},
            "organization": {"href": format!("{base}/v3/organizations/{org_guid}")},
            "features": {"href": format!("{base}/v3/spaces/{}/features", space.guid)},
            "apply_manifest": {"href": format!("{base}/v3/spaces/{}/actions/apply_manifest", space.guid), "method": "POST"},
        },
    })
}

/// Characters CC's `CGI.escape` leaves alone in a path segment.
pub(crate) const PATH_SEGMENT: &percent_encoding::AsciiSet = &percent_encoding::NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'_')
    .remove(b'.')
    .remove(b'~');

fn encode_path_segment(value: &str) -> String {
    percent_encoding::utf8_percent_encode(value, PATH_SEGMENT).to_string()
}

/// A user.
pub fn user(base: &str, user: &UserRow) -> Value {
    json!({
        "guid": user.guid,
        "created_at": user.created_at,
        "updated_at": user.updated_at,
        "username": user.username,
        "presentation_name": user.username.clone().unwrap_or_else(|| user.guid.clone()),
        "origin": user.origin,
        "metadata": empty_metadata(),
        "links": {"self": {"href": format!("{base}/v3/users/{}", encode_path_segment(&user.guid))}},
    })
}

/// A role. `space_guid` is set for space roles, `org_guid` for org roles.
pub fn role(
    base: &str,
    role: &RoleRow,
    user_guid: &str,
    org_guid: Option<&str>,
    space_guid: Option<&str>,
) -> Value {
    let mut links = json!({
        "self": {"href": format!("{base}/v3/roles/{}", role.guid)},
        "user": {"href": format!("{base}/v3/users/{}", encode_path_segment(user_guid))},
    });
    let relationships = match space_guid {
        Some(space_guid) => {
            links["space"] = json!({"href": format!("{base}/v3/spaces/{space_guid}")});
            json!({
                "user": {"data": {"guid": user_guid}},
                "space": {"data": {"guid": space_guid}},
                "organization": {"data": null},
            })
        }
        None => {
            let org_guid = org_guid.unwrap_or_default();
            links["organization"] = json!({"href": format!("{base}/v3/organizations/{org_guid}")});
            json!({
                "user": {"data": {"guid": user_guid}},
                "organization": {"data": {"guid": org_guid}},
                "space": {"data": null},
            })
        }
    };
    json!({
        "guid": role.guid,
        "created_at": role.created_at,
        "updated_at": role.updated_at,
        "type": role.role_type,
        "relationships": relationships,
        "links": links,
    })
}

/// A feature flag.
pub fn feature_flag(base: &str, flag: &FeatureFlagRow) -> Value {
    json!({
        "name": flag.name,
        "enabled": flag.enabled,
        "updated_at": flag.updated_at,
        "custom_error_message": flag.error_message,
        "links": {"self": {"href": format!("{base}/v3/feature_flags/{}", flag.name)}},
    })
}

/// A stack.
pub fn stack(base: &str, stack: &StackRow, default_stack: &str) -> Value {
    json!({
        "guid": stack.guid,
        "created_at": stack.created_at,
        "updated_at": stack.updated_at,
        "name": stack.name,
        "description": stack.description,
        "state": "ACTIVE",
        "state_reason": null,
        "run_rootfs_image": stack.name,
        "build_rootfs_image": stack.name,
        "default": stack.name == default_stack,
        "metadata": empty_metadata(),
        "links": {"self": {"href": format!("{base}/v3/stacks/{}", stack.guid)}},
    })
}

/// A domain; `owning_org_guid` is `None` for shared domains.
pub fn domain(base: &str, domain: &DomainRow, owning_org_guid: Option<&str>) -> Value {
    let mut links = json!({
        "self": {"href": format!("{base}/v3/domains/{}", domain.guid)},
        "route_reservations": {"href": format!("{base}/v3/domains/{}/route_reservations", domain.guid)},
    });
    if let Some(org_guid) = owning_org_guid {
        links["organization"] = json!({"href": format!("{base}/v3/organizations/{org_guid}")});
        links["shared_organizations"] = json!({"href": format!("{base}/v3/domains/{}/relationships/shared_organizations", domain.guid)});
    }
    json!({
        "guid": domain.guid,
        "created_at": domain.created_at,
        "updated_at": domain.updated_at,
        "name": domain.name,
        "internal": domain.internal,
        "router_group": null,
        "supported_protocols": ["http"],
        "relationships": {
            "organization": {"data": owning_org_guid.map(|guid| json!({"guid": guid}))},
            "shared_organizations": {"data": []},
        },
        "metadata": empty_metadata(),
        "links": links,
    })
}

/// An organization quota, with the GUIDs of the visible orgs using it.
pub fn organization_quota(base: &str, quota: &QuotaRow, org_guids: &[String]) -> Value {
    json!({
        "guid": quota.guid,
        "created_at": quota.created_at,
        "updated_at": quota.updated_at,
        "name": quota.name,
        "apps": {
            "total_memory_in_mb": limit(quota.memory_limit.into()),
            "per_process_memory_in_mb": limit(quota.instance_memory_limit.into()),
            "total_instances": limit(quota.app_instance_limit.into()),
            "per_app_tasks": limit(quota.app_task_limit.into()),
            "log_rate_limit_in_bytes_per_second": limit(quota.log_rate_limit),
        },
        "services": {
            "paid_services_allowed": quota.non_basic_services_allowed,
            "total_service_instances": limit(quota.total_services.into()),
            "total_service_keys": limit(quota.total_service_keys.into()),
        },
        "routes": {
            "total_routes": limit(quota.total_routes.into()),
            "total_reserved_ports": limit(quota.total_reserved_route_ports.into()),
        },
        "domains": {"total_domains": limit(quota.total_private_domains.into())},
        "relationships": {"organizations": {"data": org_guids.iter().map(|guid| json!({"guid": guid})).collect::<Vec<_>>()}},
        "links": {"self": {"href": format!("{base}/v3/organization_quotas/{}", quota.guid)}},
    })
}

/// A job.
pub fn job(base: &str, job: &JobRow) -> Value {
    let errors: Value = serde_json::from_str(&job.errors).unwrap_or_else(|_| json!([]));
    let warnings: Value = serde_json::from_str(&job.warnings).unwrap_or_else(|_| json!([]));
    let mut links = json!({"self": {"href": format!("{base}/v3/jobs/{}", job.guid)}});
    if job.state != crate::store::jobs::COMPLETE || !job.operation.ends_with(".delete") {
        links[job.resource_type.as_str()] =
            json!({"href": format!("{base}/v3/{}s/{}", job.resource_type, job.resource_guid)});
    }
    json!({
        "guid": job.guid,
        "created_at": job.created_at,
        "updated_at": job.updated_at,
        "operation": job.operation,
        "state": job.state,
        "errors": if job.state == crate::store::jobs::COMPLETE { json!([]) } else { errors },
        "warnings": warnings,
        "links": links,
    })
}

/// An app; `space_guid` is its space's GUID.
pub fn app(base: &str, app: &AppRow, space_guid: &str) -> Value {
    let buildpacks: Value = serde_json::from_str(&app.buildpacks).unwrap_or_else(|_| json!([]));
    let guid = &app.guid;
    let href = |suffix: &str| json!({"href": format!("{base}/v3/apps/{guid}{suffix}")});
    let action = |name: &str| json!({"href": format!("{base}/v3/apps/{guid}/actions/{name}"), "method": "POST"});
    json!({
        "guid": guid,
        "created_at": app.created_at,
        "updated_at": app.updated_at,
        "name": app.name,
        "state": app.state,
        "lifecycle": {
            "type": app.lifecycle_type,
            "data": {"buildpacks": buildpacks, "stack": app.stack},
        },
        "relationships": {
            "space": {"data": {"guid": space_guid}},
            "current_droplet": {"data": app.droplet_guid.as_ref().map(|guid| json!({"guid": guid}))},
        },
        "metadata": empty_metadata(),
        "links": {
            "self": href(""),
            "environment_variables": href("/environment_variables"),
            "space": {"href": format!("{base}/v3/spaces/{space_guid}")},
            "processes": href("/processes"),
            "packages": href("/packages"),
            "current_droplet": href("/droplets/current"),
            "droplets": href("/droplets"),
            "tasks": href("/tasks"),
            "start": action("start"),
            "stop": action("stop"),
            "clear_buildpack_cache": action("clear_buildpack_cache"),
            "revisions": href("/revisions"),
            "deployed_revisions": href("/revisions/deployed"),
            "features": href("/features"),
        },
    })
}

/// How a process's start command is shown (CC hides it in lists, and from callers who may not
/// read the space's secrets).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CommandView {
    /// As stored.
    Shown,
    /// `[PRIVATE DATA HIDDEN IN LISTS]`.
    List,
    /// `[PRIVATE DATA HIDDEN]`.
    Hidden,
}

/// A process.
pub fn process(
    base: &str,
    process: &ProcessRow,
    app_guid: &str,
    space_guid: &str,
    view: CommandView,
) -> Value {
    let guid = &process.guid;
    let command = match (&process.command, view) {
        (Some(_), CommandView::List) => json!("[PRIVATE DATA HIDDEN IN LISTS]"),
        (Some(_), CommandView::Hidden) => json!("[PRIVATE DATA HIDDEN]"),
        (command, _) => json!(command),
    };
    let mut health_data = json!({
        "timeout": process.health_check_timeout,
        "invocation_timeout": process.health_check_invocation_timeout,
    });
    if process.health_check_type == "http" {
        health_data["endpoint"] = json!(process.health_check_endpoint);
    }
    json!({
        "guid": guid,
        "created_at": process.created_at,
        "updated_at": process.updated_at,
        "type": process.process_type,
        "command": command,
        "instances": process.instances,
        "memory_in_mb": process.memory_in_mb,
        "disk_in_mb": process.disk_in_mb,
        "log_rate_limit_in_bytes_per_second": process.log_rate_limit,
        "health_check": {"type": process.health_check_type, "data": health_data},
        "readiness_health_check": {"type": "process", "data": {"invocation_timeout": null, "interval": null}},
        "relationships": {
            "app": {"data": {"guid": app_guid}},
            "revision": {"data": null},
        },
        "metadata": empty_metadata(),
        "links": {
            "self": {"href": format!("{base}/v3/processes/{guid}")},
            "scale": {"href": format!("{base}/v3/processes/{guid}/actions/scale"), "method": "POST"},
            "app": {"href": format!("{base}/v3/apps/{app_guid}")},
            "space": {"href": format!("{base}/v3/spaces/{space_guid}")},
            "stats": {"href": format!("{base}/v3/processes/{guid}/stats")},
        },
    })
}

/// Stats of one instance that is not running (CC's answer for a stopped app or an instance
/// no DEA has reported): state DOWN, zero usage, uptime 0, the process's quotas.
pub fn down_instance_stats(process: &ProcessRow, index: i32, time: &str) -> Value {
    let megabytes = |value: i32| i64::from(value.max(0)) * 1024 * 1024;
    json!({
        "type": process.process_type,
        "index": index,
        "state": "DOWN",
        "routable": null,
        "usage": {"time": time, "cpu": 0.0, "cpu_entitlement": 0.0, "mem": 0, "disk": 0, "log_rate": 0},
        "host": "",
        "instance_ports": [],
        "uptime": 0,
        "mem_quota": megabytes(process.memory_in_mb),
        "disk_quota": megabytes(process.disk_in_mb),
        "fds_quota": 16384,
        "log_rate_limit": process.log_rate_limit,
        "isolation_segment": null,
        "details": null,
    })
}

/// A package.
pub fn package(base: &str, package: &PackageRow, app_guid: &str) -> Value {
    let guid = &package.guid;
    json!({
        "guid": guid,
        "created_at": package.created_at,
        "updated_at": package.updated_at,
        "type": package.package_type,
        "data": {
            "checksum": {"type": "sha256", "value": package.checksum_sha256},
            "error": package.error,
        },
        "state": package.state,
        "relationships": {"app": {"data": {"guid": app_guid}}},
        "metadata": empty_metadata(),
        "links": {
            "self": {"href": format!("{base}/v3/packages/{guid}")},
            "upload": {"href": format!("{base}/v3/packages/{guid}/upload"), "method": "POST"},
            "download": {"href": format!("{base}/v3/packages/{guid}/download"), "method": "GET"},
            "app": {"href": format!("{base}/v3/apps/{app_guid}")},
        },
    })
}

/// A build.
pub fn build(base: &str, build: &BuildRow, app_guid: &str, package_guid: &str) -> Value {
    let buildpacks: Value = serde_json::from_str(&build.buildpacks).unwrap_or_else(|_| json!([]));
    json!({
        "guid": build.guid,
        "created_at": build.created_at,
        "updated_at": build.updated_at,
        "created_by": {"guid": build.created_by_guid, "name": build.created_by_name, "email": ""},
        "state": build.state,
        "staging_memory_in_mb": build.staging_memory_in_mb,
        "staging_disk_in_mb": build.staging_disk_in_mb,
        "staging_log_rate_limit_bytes_per_second": -1,
        "error": build.error,
        "lifecycle": {"type": "buildpack", "data": {"buildpacks": buildpacks, "stack": build.stack}},
        "package": {"guid": package_guid},
        // The droplet is only the build's once staging succeeded.
        "droplet": build.droplet_guid.as_ref().filter(|_| build.state == "STAGED").map(|guid| json!({"guid": guid})),
        "relationships": {"app": {"data": {"guid": app_guid}}},
        "metadata": empty_metadata(),
        "links": {
            "self": {"href": format!("{base}/v3/builds/{}", build.guid)},
            "app": {"href": format!("{base}/v3/apps/{app_guid}")},
        },
    })
}

/// A droplet.
pub fn droplet(
    base: &str,
    droplet: &DropletRow,
    app_guid: &str,
    package_guid: Option<&str>,
) -> Value {
    let guid = &droplet.guid;
    let parse = |text: &str, fallback: Value| serde_json::from_str(text).unwrap_or(fallback);
    let mut links = json!({
        "self": {"href": format!("{base}/v3/droplets/{guid}")},
        "app": {"href": format!("{base}/v3/apps/{app_guid}")},
        "assign_current_droplet": {"href": format!("{base}/v3/apps/{app_guid}/relationships/current_droplet"), "method": "PATCH"},
        "download": {"href": format!("{base}/v3/droplets/{guid}/download")},
    });
    if let Some(package_guid) = package_guid {
        links["package"] = json!({"href": format!("{base}/v3/packages/{package_guid}")});
    }
    json!({
        "guid": guid,
        "created_at": droplet.created_at,
        "updated_at": droplet.updated_at,
        "state": droplet.state,
        "error": droplet.error,
        "lifecycle": {"type": "buildpack", "data": {}},
        "execution_metadata": droplet.execution_metadata,
        "process_types": parse(&droplet.process_types, json!({})),
        "checksum": droplet.checksum_sha256.as_ref().map(|value| json!({"type": "sha256", "value": value})),
        "buildpacks": parse(&droplet.buildpacks, json!([])),
        "stack": droplet.stack,
        "image": null,
        "relationships": {"app": {"data": {"guid": app_guid}}},
        "metadata": empty_metadata(),
        "links": links,
    })
}

/// A route's URL as the CLI requires it: `host.domain/path`, or `domain/path` without a host.
pub fn route_url(host: &str, domain: &str, path: &str) -> String {
    if host.is_empty() {
        format!("{domain}{path}")
    } else {
        format!("{host}.{domain}{path}")
    }
}

/// One route destination; `app_guid` is its app's GUID.
pub fn destination(destination: &DestinationRow, app_guid: &str) -> Value {
    json!({
        "guid": destination.guid,
        "app": {"guid": app_guid, "process": {"type": destination.process_type}},
        "weight": null,
        "port": destination.port,
        "protocol": destination.protocol,
    })
}

/// A route with its destinations (already rendered).
pub fn route(
    base: &str,
    route: &RouteRow,
    domain: &DomainRow,
    space_guid: &str,
    destinations: Vec<Value>,
) -> Value {
    let guid = &route.guid;
    json!({
        "guid": guid,
        "created_at": route.created_at,
        "updated_at": route.updated_at,
        "protocol": "http",
        "host": route.host,
        "path": route.path,
        "port": null,
        "url": route_url(&route.host, &domain.name, &route.path),
        "destinations": destinations,
        "options": {},
        "metadata": empty_metadata(),
        "relationships": {
            "space": {"data": {"guid": space_guid}},
            "domain": {"data": {"guid": domain.guid}},
        },
        "links": {
            "self": {"href": format!("{base}/v3/routes/{guid}")},
            "space": {"href": format!("{base}/v3/spaces/{space_guid}")},
            "domain": {"href": format!("{base}/v3/domains/{}", domain.guid)},
            "destinations": {"href": format!("{base}/v3/routes/{guid}/destinations")},
        },
    })
}

/// An admin buildpack.
pub fn buildpack(base: &str, buildpack: &crate::db::models::BuildpackRow) -> Value {
    let guid = &buildpack.guid;
    json!({
        "guid": guid,
        "created_at": buildpack.created_at,
        "updated_at": buildpack.updated_at,
        "name": buildpack.name,
        "state": if buildpack.filename.is_some() { "READY" } else { "AWAITING_UPLOAD" },
        "filename": buildpack.filename,
        "stack": buildpack.stack,
        "position": buildpack.position,
        "lifecycle": "buildpack",
        "enabled": buildpack.enabled,
        "locked": buildpack.locked,
        "metadata": empty_metadata(),
        "links": {
            "self": {"href": format!("{base}/v3/buildpacks/{guid}")},
            "upload": {"href": format!("{base}/v3/buildpacks/{guid}/upload"), "method": "POST"},
        },
    })
}
