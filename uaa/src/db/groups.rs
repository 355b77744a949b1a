//! Store functions for `scim_groups` and `group_memberships`.

use diesel::prelude::*;

use super::schema::{group_memberships, scim_groups};
use super::DbConnection;

/// One row of `scim_groups`.
#[derive(Debug, Clone, Queryable, Insertable)]
#[diesel(table_name = scim_groups)]
pub(crate) struct GroupRow {
    pub(crate) id: String,
    pub(crate) display_name: String,
    pub(crate) description: String,
    pub(crate) version: i64,
    pub(crate) created: i64,
    pub(crate) last_modified: i64,
}

/// One row of `group_memberships`.
#[derive(Debug, Clone, Queryable, Insertable)]
#[diesel(table_name = group_memberships)]
pub(crate) struct MembershipRow {
    pub(crate) group_id: String,
    pub(crate) member_id: String,
    pub(crate) origin: String,
    pub(crate) added: i64,
}

pub(crate) fn find_by_id(conn: &mut DbConnection, id: &str) -> QueryResult<Option<GroupRow>> {
    scim_groups::table.find(id).first(conn).optional()
}

pub(crate) fn find_by_name(
    conn: &mut DbConnection,
    display_name: &str,
) -> QueryResult<Option<GroupRow>> {
    scim_groups::table
        .filter(scim_groups::display_name.eq(display_name))
        .first(conn)
        .optional()
}

pub(crate) fn list(conn: &mut DbConnection) -> QueryResult<Vec<GroupRow>> {
    scim_groups::table
        .order((scim_groups::created.asc(), scim_groups::id.asc()))
        .load(conn)
}

/// Inserts a group; `false` when the display name is taken.
pub(crate) fn insert(conn: &mut DbConnection, row: &GroupRow) -> QueryResult<bool> {
    if find_by_name(conn, &row.display_name)?.is_some() {
        return Ok(false);
    }
    match diesel::insert_into(scim_groups::table)
        .values(row.clone())
        .execute(conn)
    {
        Ok(_) => Ok(true),
        Err(diesel::result::Error::DatabaseError(
            diesel::result::DatabaseErrorKind::UniqueViolation,
            _,
        )) => Ok(false),
        Err(error) => Err(error),
    }
}

/// Returns the id of the group named `display_name`, creating it when missing.
pub(crate) fn ensure(conn: &mut DbConnection, display_name: &str, now: i64) -> QueryResult<String> {
    if let Some(group) = find_by_name(conn, display_name)? {
        return Ok(group.id);
    }
    let row = GroupRow {
        id: uuid::Uuid::new_v4().to_string(),
        display_name: display_name.to_owned(),
        description: String::new(),
        version: 0,
        created: now,
        last_modified: now,
    };
    insert(conn, &row)?;
    Ok(find_by_name(conn, display_name)?
        .map(|group| group.id)
        .unwrap_or(row.id))
}

pub(crate) fn delete(conn: &mut DbConnection, id: &str) -> QueryResult<bool> {
    diesel::delete(group_memberships::table.filter(group_memberships::group_id.eq(id)))
        .execute(conn)?;
    Ok(diesel::delete(scim_groups::table.find(id)).execute(conn)? > 0)
}

/// Adds a member; `false` when it already was one.
pub(crate) fn add_member(
    conn: &mut DbConnection,
    group_id: &str,
    member_id: &str,
    origin: &str,
    now: i64,
) -> QueryResult<bool> {
    let existing: i64 = group_memberships::table
        .filter(group_memberships::group_id.eq(group_id))
        .filter(group_memberships::member_id.eq(member_id))
        .count()
        .get_result(conn)?;
    if existing > 0 {
        return Ok(false);
    }
    diesel::insert_into(group_memberships::table)
        .values(MembershipRow {
            group_id: group_id.to_owned(),
            member_id: member_id.to_owned(),
            origin: origin.to_owned(),
            added: now,
        })
        .execute(conn)?;
    Ok(true)
}

/// Removes a member; the removed membership, if there was one.
pub(crate) fn remove_member(
    conn: &mut DbConnection,
    group_id: &str,
    member_id: &str,
) -> QueryResult<Option<MembershipRow>> {
    let existing: Option<MembershipRow> = group_memberships::table
        .filter(group_memberships::group_id.eq(group_id))
        .filter(group_memberships::member_id.eq(member_id))
        .first(conn)
        .optional()?;
    if existing.is_some() {
        diesel::delete(
            group_memberships::table
                .filter(group_memberships::group_id.eq(group_id))
                .filter(group_memberships::member_id.eq(member_id)),
        )
        .execute(conn)?;
    }
    Ok(existing)
}

pub(crate) fn members(conn: &mut DbConnection, group_id: &str) -> QueryResult<Vec<MembershipRow>> {
    group_memberships::table
        .filter(group_memberships::group_id.eq(group_id))
        .order((
            group_memberships::added.asc(),
            group_memberships::member_id.asc(),
        ))
        .load(conn)
}

/// Members of several groups at once.
pub(crate) fn members_of(
    conn: &mut DbConnection,
    group_ids: &[String],
) -> QueryResult<Vec<MembershipRow>> {
    if group_ids.is_empty() {
        return Ok(Vec::new());
    }
    group_memberships::table
        .filter(group_memberships::group_id.eq_any(group_ids.to_vec()))
        .order((
            group_memberships::added.asc(),
            group_memberships::member_id.asc(),
        ))
        .load(conn)
}

/// The groups `user_id` is a direct member of, by display name.
pub(crate) fn groups_of_user(conn: &mut DbConnection, user_id: &str) -> QueryResult<Vec<GroupRow>> {
    group_memberships::table
        .inner_join(scim_groups::table)
        .filter(group_memberships::member_id.eq(user_id))
        .select((
            scim_groups::id,
            scim_groups::display_name,
            scim_groups::description,
            scim_groups::version,
            scim_groups::created,
            scim_groups::last_modified,
        ))
        .order(scim_groups::display_name.asc())
        .load(conn)
}

/// The columns of `scim_groups`, in table order.
type GroupColumns = (String, String, String, i64, i64, i64);

/// `(member_id, group)` pairs for several users at once.
pub(crate) fn groups_of_users(
    conn: &mut DbConnection,
    user_ids: &[String],
) -> QueryResult<Vec<(String, GroupRow)>> {
    if user_ids.is_empty() {
        return Ok(Vec::new());
    }
    let rows: Vec<(String, GroupColumns)> = group_memberships::table
        .inner_join(scim_groups::table)
        .filter(group_memberships::member_id.eq_any(user_ids.to_vec()))
        .select((
            group_memberships::member_id,
            (
                scim_groups::id,
                scim_groups::display_name,
                scim_groups::description,
                scim_groups::version,
                scim_groups::created,
                scim_groups::last_modified,
            ),
        ))
        .order(scim_groups::display_name.asc())
        .load(conn)?;
    Ok(rows
        .into_iter()
        .map(
            |(member_id, (id, display_name, description, version, created, last_modified))| {
                (
                    member_id,
                    GroupRow {
                        id,
                        display_name,
                        description,
                        version,
                        created,
                        last_modified,
                    },
                )
            },
        )
        .collect())
}
