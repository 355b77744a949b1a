//! Pollable jobs (`/v3/jobs/:guid`, `/v2/jobs/:guid`).

use diesel::prelude::*;

use super::{new_guid, now};
use crate::db::models::JobRow;
use crate::db::schema::jobs;
use crate::db::DbConn;
use crate::error::ApiError;

/// Job states as CC names them.
pub const PROCESSING: &str = "PROCESSING";
/// Finished successfully.
pub const COMPLETE: &str = "COMPLETE";
/// Finished with errors.
pub const FAILED: &str = "FAILED";

/// Inserts a job in state PROCESSING and returns its GUID.
pub fn create(
    conn: &mut DbConn,
    operation: &str,
    resource_type: &str,
    resource_guid: &str,
) -> Result<String, ApiError> {
    let guid = new_guid();
    let timestamp = now();
    diesel::insert_into(jobs::table)
        .values((
            jobs::guid.eq(&guid),
            jobs::operation.eq(operation),
            jobs::state.eq(PROCESSING),
            jobs::resource_type.eq(resource_type),
            jobs::resource_guid.eq(resource_guid),
            jobs::errors.eq("[]"),
            jobs::warnings.eq("[]"),
            jobs::created_at.eq(&timestamp),
            jobs::updated_at.eq(&timestamp),
        ))
        .execute(conn)?;
    Ok(guid)
}

/// Marks a job finished: COMPLETE when `error` is `None`, otherwise FAILED with that error.
pub fn finish(conn: &mut DbConn, guid: &str, error: Option<&ApiError>) -> Result<(), ApiError> {
    let (state, errors) = match error {
        None => (COMPLETE, "[]".to_owned()),
        Some(error) => (FAILED, error.v3_body()["errors"].to_string()),
    };
    diesel::update(jobs::table.filter(jobs::guid.eq(guid)))
        .set((
            jobs::state.eq(state),
            jobs::errors.eq(errors),
            jobs::updated_at.eq(now()),
        ))
        .execute(conn)?;
    Ok(())
}

/// The job with this GUID.
pub fn find(conn: &mut DbConn, guid: &str) -> Result<Option<JobRow>, ApiError> {
    Ok(jobs::table
        .filter(jobs::guid.eq(guid))
        .select(JobRow::as_select())
        .first(conn)
        .optional()?)
}

/// Creates a job, runs `work` for it right away and records the outcome. Returns the job GUID.
/// The work is fast (a few row deletions), so it is finished before the client's first poll.
pub fn run_now(
    conn: &mut DbConn,
    operation: &str,
    resource_type: &str,
    resource_guid: &str,
    work: impl FnOnce(&mut DbConn) -> Result<(), ApiError>,
) -> Result<String, ApiError> {
    let guid = create(conn, operation, resource_type, resource_guid)?;
    let outcome = work(conn);
    if let Err(error) = &outcome {
        if error.kind.status() >= 500 {
            tracing::error!(job_guid = %guid, error = %error, internal = ?error.internal, "job failed");
        }
    }
    finish(conn, &guid, outcome.as_ref().err())?;
    Ok(guid)
}
