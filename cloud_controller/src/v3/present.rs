//! v3 JSON shapes (CC's presenters): storage rows become wire JSON here and only here.

use serde_json::{json, Value};

use crate::db::models::{
    DomainRow, FeatureFlagRow, JobRow, OrgRow, QuotaRow, RoleRow, SpaceRow, StackRow, UserRow,
};

fn empty_metadata() -> Value {
    json!({"labels": {}, "annotations": {}})
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
