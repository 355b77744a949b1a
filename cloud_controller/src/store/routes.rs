//! Routes and their destinations.

use diesel::prelude::*;

use super::{new_guid, now};
use crate::db::models::{DestinationRow, RouteRow};
use crate::db::schema::{route_destinations, routes};
use crate::db::DbConn;
use crate::error::{is_unique_violation, ApiError};

/// Every route, in creation order.
pub fn list(conn: &mut DbConn) -> Result<Vec<RouteRow>, ApiError> {
    Ok(routes::table
        .order(routes::id.asc())
        .select(RouteRow::as_select())
        .load(conn)?)
}

/// The route with this GUID.
pub fn find(conn: &mut DbConn, guid: &str) -> Result<Option<RouteRow>, ApiError> {
    Ok(routes::table
        .filter(routes::guid.eq(guid))
        .select(RouteRow::as_select())
        .first(conn)
        .optional()?)
}

/// Inserts a route; `taken` is the error for an existing host/domain/path.
pub fn create(
    conn: &mut DbConn,
    host: &str,
    path: &str,
    domain_id: i32,
    space_id: i32,
    taken: impl Fn() -> ApiError,
) -> Result<RouteRow, ApiError> {
    conn.write_transaction(|conn| {
        let existing = routes::table
            .filter(routes::domain_id.eq(domain_id))
            .filter(routes::host.eq(host))
            .filter(routes::path.eq(path))
            .select(routes::id)
            .first::<i32>(conn)
            .optional()?;
        if existing.is_some() {
            return Err(taken());
        }
        let guid = new_guid();
        let timestamp = now();
        diesel::insert_into(routes::table)
            .values((
                routes::guid.eq(&guid),
                routes::host.eq(host),
                routes::path.eq(path),
                routes::domain_id.eq(domain_id),
                routes::space_id.eq(space_id),
                routes::created_at.eq(&timestamp),
                routes::updated_at.eq(&timestamp),
            ))
            .execute(conn)
            .map_err(|error| {
                if is_unique_violation(&error) {
                    taken()
                } else {
                    error.into()
                }
            })?;
        find(conn, &guid)?.ok_or_else(|| ApiError::internal("route vanished after insert"))
    })
}

/// Every destination, in creation order.
pub fn list_destinations(conn: &mut DbConn) -> Result<Vec<DestinationRow>, ApiError> {
    Ok(route_destinations::table
        .order(route_destinations::id.asc())
        .select(DestinationRow::as_select())
        .load(conn)?)
}

/// The destinations of one route.
pub fn destinations_of(conn: &mut DbConn, route_id: i32) -> Result<Vec<DestinationRow>, ApiError> {
    Ok(route_destinations::table
        .filter(route_destinations::route_id.eq(route_id))
        .order(route_destinations::id.asc())
        .select(DestinationRow::as_select())
        .load(conn)?)
}

/// Adds a destination unless the same app, process type and port is already there.
pub fn add_destination(
    conn: &mut DbConn,
    route_id: i32,
    app_id: i32,
    process_type: &str,
    port: i32,
    protocol: &str,
) -> Result<(), ApiError> {
    let existing = route_destinations::table
        .filter(route_destinations::route_id.eq(route_id))
        .filter(route_destinations::app_id.eq(app_id))
        .filter(route_destinations::process_type.eq(process_type))
        .filter(route_destinations::port.eq(port))
        .select(route_destinations::id)
        .first::<i32>(conn)
        .optional()?;
    if existing.is_some() {
        return Ok(());
    }
    let timestamp = now();
    diesel::insert_into(route_destinations::table)
        .values((
            route_destinations::guid.eq(new_guid()),
            route_destinations::route_id.eq(route_id),
            route_destinations::app_id.eq(app_id),
            route_destinations::process_type.eq(process_type),
            route_destinations::port.eq(port),
            route_destinations::protocol.eq(protocol),
            route_destinations::created_at.eq(&timestamp),
            route_destinations::updated_at.eq(&timestamp),
        ))
        .execute(conn)?;
    Ok(())
}

/// Removes one destination of a route; false when it was not there.
pub fn remove_destination(
    conn: &mut DbConn,
    route_id: i32,
    destination_guid: &str,
) -> Result<bool, ApiError> {
    let removed = diesel::delete(
        route_destinations::table
            .filter(route_destinations::route_id.eq(route_id))
            .filter(route_destinations::guid.eq(destination_guid)),
    )
    .execute(conn)?;
    Ok(removed > 0)
}

/// Deletes a route and its destinations.
pub fn delete_cascade(conn: &mut DbConn, id: i32) -> Result<(), ApiError> {
    conn.write_transaction(|conn| {
        diesel::delete(route_destinations::table.filter(route_destinations::route_id.eq(id)))
            .execute(conn)?;
        diesel::delete(routes::table.find(id)).execute(conn)?;
        Ok(())
    })
}

/// Deletes the destinations pointing at an app.
pub fn delete_destinations_of_app(conn: &mut DbConn, app_id: i32) -> Result<(), ApiError> {
    diesel::delete(route_destinations::table.filter(route_destinations::app_id.eq(app_id)))
        .execute(conn)?;
    Ok(())
}

/// Deletes the routes (and destinations) of these spaces, and of these domains.
pub fn delete_in_spaces_and_domains(
    conn: &mut DbConn,
    space_ids: &[i32],
    domain_ids: &[i32],
) -> Result<(), ApiError> {
    let ids: Vec<i32> = routes::table
        .filter(
            routes::space_id
                .eq_any(space_ids)
                .or(routes::domain_id.eq_any(domain_ids)),
        )
        .select(routes::id)
        .load(conn)?;
    for id in ids {
        delete_cascade(conn, id)?;
    }
    Ok(())
}
