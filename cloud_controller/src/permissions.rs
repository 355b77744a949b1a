//! Every permission decision of the Cloud Controller, in one place, following CC's rules:
//! platform roles come from token scopes (admin, admin_read_only, global_auditor); org roles
//! (organization_user/manager/auditor/billing_manager) and space roles
//! (space_developer/manager/auditor/supporter) come from the `roles` table. Resources a user may
//! not see answer 404, resources they see but may not change answer 403.

use std::collections::{HashMap, HashSet};

use crate::auth::CurrentUser;
use crate::db::models::{OrgRow, RoleRow, UserRow};
use crate::db::DbConn;
use crate::error::{ApiError, ErrorKind};
use crate::store;

/// The eight CF role types.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum RoleType {
    /// `organization_user`
    OrganizationUser,
    /// `organization_auditor`
    OrganizationAuditor,
    /// `organization_manager`
    OrganizationManager,
    /// `organization_billing_manager`
    OrganizationBillingManager,
    /// `space_developer`
    SpaceDeveloper,
    /// `space_auditor`
    SpaceAuditor,
    /// `space_manager`
    SpaceManager,
    /// `space_supporter`
    SpaceSupporter,
}

impl RoleType {
    /// All types, org roles first.
    pub const ALL: [RoleType; 8] = [
        RoleType::OrganizationUser,
        RoleType::OrganizationAuditor,
        RoleType::OrganizationManager,
        RoleType::OrganizationBillingManager,
        RoleType::SpaceDeveloper,
        RoleType::SpaceAuditor,
        RoleType::SpaceManager,
        RoleType::SpaceSupporter,
    ];

    /// Wire name.
    pub fn as_str(self) -> &'static str {
        match self {
            RoleType::OrganizationUser => "organization_user",
            RoleType::OrganizationAuditor => "organization_auditor",
            RoleType::OrganizationManager => "organization_manager",
            RoleType::OrganizationBillingManager => "organization_billing_manager",
            RoleType::SpaceDeveloper => "space_developer",
            RoleType::SpaceAuditor => "space_auditor",
            RoleType::SpaceManager => "space_manager",
            RoleType::SpaceSupporter => "space_supporter",
        }
    }

    /// Parses a wire name.
    pub fn parse(value: &str) -> Option<RoleType> {
        RoleType::ALL
            .into_iter()
            .find(|role| role.as_str() == value)
    }

    /// True for the four space roles.
    pub fn is_space_role(self) -> bool {
        matches!(
            self,
            RoleType::SpaceDeveloper
                | RoleType::SpaceAuditor
                | RoleType::SpaceManager
                | RoleType::SpaceSupporter
        )
    }
}

/// What one caller may do, loaded once per request from the token and the roles table.
#[derive(Debug)]
pub struct Permissions {
    admin: bool,
    admin_read_only: bool,
    read_globally: bool,
    user_id: i32,
    org_roles: HashMap<i32, HashSet<RoleType>>,
    space_roles: HashMap<i32, HashSet<RoleType>>,
    /// Orgs where the caller holds any space role.
    orgs_via_spaces: HashSet<i32>,
    /// The org of each space the caller holds a role in.
    org_of_space: HashMap<i32, i32>,
    /// Suspended orgs, where only admins change anything.
    suspended_orgs: HashSet<i32>,
}

impl Permissions {
    /// Loads the caller's roles.
    pub fn load(conn: &mut DbConn, user: &CurrentUser) -> Result<Permissions, ApiError> {
        let mut permissions = Permissions {
            admin: user.is_admin(),
            admin_read_only: user.is_admin_read_only(),
            read_globally: user.can_read_globally(),
            user_id: user.user_id,
            org_roles: HashMap::new(),
            space_roles: HashMap::new(),
            orgs_via_spaces: HashSet::new(),
            org_of_space: HashMap::new(),
            suspended_orgs: HashSet::new(),
        };
        if !permissions.admin {
            permissions.suspended_orgs = store::orgs::suspended_ids(conn)?.into_iter().collect();
        }
        for role in store::roles::list_for_user(conn, user.user_id)? {
            let Some(role_type) = RoleType::parse(&role.role_type) else {
                continue;
            };
            match role.space_id {
                Some(space_id) => {
                    permissions
                        .space_roles
                        .entry(space_id)
                        .or_default()
                        .insert(role_type);
                    permissions.orgs_via_spaces.insert(role.organization_id);
                    permissions
                        .org_of_space
                        .insert(space_id, role.organization_id);
                }
                None => {
                    permissions
                        .org_roles
                        .entry(role.organization_id)
                        .or_default()
                        .insert(role_type);
                }
            }
        }
        Ok(permissions)
    }

    /// Admin: may change anything.
    pub fn can_write_globally(&self) -> bool {
        self.admin
    }

    /// Admin, read-only admin or global auditor.
    pub fn can_read_globally(&self) -> bool {
        self.read_globally
    }

    fn has_org_role(&self, organization_id: i32, role: RoleType) -> bool {
        self.org_roles
            .get(&organization_id)
            .is_some_and(|roles| roles.contains(&role))
    }

    fn has_space_role(&self, space_id: i32, role: RoleType) -> bool {
        self.space_roles
            .get(&space_id)
            .is_some_and(|roles| roles.contains(&role))
    }

    /// Any org role, or any space role in one of its spaces.
    pub fn can_read_org(&self, organization_id: i32) -> bool {
        self.read_globally
            || self.org_roles.contains_key(&organization_id)
            || self.orgs_via_spaces.contains(&organization_id)
    }

    /// Admin or org manager.
    pub fn can_write_org(&self, organization_id: i32) -> bool {
        self.admin || self.has_org_role(organization_id, RoleType::OrganizationManager)
    }

    /// CC's `require_writable_org!`: nobody but an admin changes anything in a suspended org
    /// (403 `CF-OrgSuspended`, checked after the role check).
    pub fn require_active_org(&self, org: &OrgRow) -> Result<(), ApiError> {
        if org.suspended && !self.admin {
            return Err(ApiError::plain(ErrorKind::OrgSuspended));
        }
        Ok(())
    }

    /// Any space role in the space, or org manager of its org.
    pub fn can_read_space(&self, space_id: i32, organization_id: i32) -> bool {
        self.read_globally
            || self.space_roles.contains_key(&space_id)
            || self.has_org_role(organization_id, RoleType::OrganizationManager)
    }

    /// Admin, org manager, or space manager: may rename the space and manage its roles.
    pub fn can_manage_space(&self, space_id: i32, organization_id: i32) -> bool {
        self.can_write_org(organization_id) || self.has_space_role(space_id, RoleType::SpaceManager)
    }

    /// Admin or space developer: may create, change and delete apps, processes, packages,
    /// builds, droplets and routes in the space (CC's `can_write_to_active_space`), unless its
    /// org is suspended (a 403 here; CC's own handlers say `CF-OrgSuspended`).
    pub fn can_write_to_space(&self, space_id: i32) -> bool {
        self.admin
            || (self.has_space_role(space_id, RoleType::SpaceDeveloper)
                && self
                    .org_of_space
                    .get(&space_id)
                    .is_none_or(|org| !self.suspended_orgs.contains(org)))
    }

    /// Admin, read-only admin or space developer: may read app environment variables and
    /// download package bits (CC's `can_read_secrets_in_space`).
    pub fn can_read_secrets_in_space(&self, space_id: i32) -> bool {
        self.admin
            || self.admin_read_only
            || self.has_space_role(space_id, RoleType::SpaceDeveloper)
    }

    /// Whether the caller may see this role.
    pub fn can_read_role(&self, role: &RoleRow) -> bool {
        match role.space_id {
            Some(space_id) => self.can_read_space(space_id, role.organization_id),
            None => self.can_read_org(role.organization_id),
        }
    }

    /// Users visible to the caller: everyone for global readers, otherwise themself and the
    /// members of the orgs they can read (CC's `readable_users`).
    pub fn visible_user_ids(&self, all_roles: &[RoleRow]) -> Option<HashSet<i32>> {
        if self.read_globally {
            return None;
        }
        let mut visible: HashSet<i32> = all_roles
            .iter()
            .filter(|role| self.can_read_org(role.organization_id))
            .map(|role| role.user_id)
            .collect();
        visible.insert(self.user_id);
        Some(visible)
    }

    /// Whether the caller may see this user.
    pub fn can_read_user(&self, user: &UserRow, all_roles: &[RoleRow]) -> bool {
        self.visible_user_ids(all_roles)
            .is_none_or(|visible| visible.contains(&user.id))
    }
}

/// Fails with `CF-FeatureDisabled` unless the flag is on (or the caller is an admin and CC lets
/// admins skip this flag).
pub fn require_feature_flag(
    conn: &mut DbConn,
    name: &str,
    user: &CurrentUser,
) -> Result<(), ApiError> {
    let flag = store::reference_data::find_flag(conn, name)?;
    let enabled = flag.as_ref().is_some_and(|flag| flag.enabled);
    if enabled || (user.is_admin() && store::reference_data::ADMIN_SKIPPABLE_FLAGS.contains(&name))
    {
        return Ok(());
    }
    // CC: "Feature Disabled: <custom message>", or the flag's name when it has none.
    let message = flag.and_then(|flag| flag.error_message);
    Err(ApiError::with_args(
        ErrorKind::FeatureDisabled,
        &[message.as_deref().unwrap_or(name)],
    ))
}
