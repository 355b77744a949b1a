//! Labels and annotations of v3 resources, stored in two generic tables keyed by resource type
//! and GUID, so any resource type can carry metadata.

use std::collections::{BTreeMap, HashMap};

use diesel::prelude::*;

use crate::db::schema::{resource_annotations, resource_labels};
use crate::db::DbConn;
use crate::error::ApiError;

/// Resource type of organizations.
pub const ORGANIZATION: &str = "organization";
/// Resource type of spaces.
pub const SPACE: &str = "space";
/// Resource type of apps.
pub const APP: &str = "app";

/// A resource's labels and annotations, by full key (`prefix/name` or `name`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Metadata {
    /// Labels.
    pub labels: BTreeMap<String, String>,
    /// Annotations.
    pub annotations: BTreeMap<String, String>,
}

/// A validated change to a resource's metadata: `None` deletes the key, keys not named stay.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MetadataUpdate {
    /// Label changes, by full key.
    pub labels: Vec<(String, Option<String>)>,
    /// Annotation changes, by full key.
    pub annotations: Vec<(String, Option<String>)>,
}

impl MetadataUpdate {
    /// True when nothing changes.
    pub fn is_empty(&self) -> bool {
        self.labels.is_empty() && self.annotations.is_empty()
    }
}

/// Splits a full key into (prefix, name); a key without `/` has the empty prefix.
pub fn split_key(key: &str) -> (&str, &str) {
    key.split_once('/').unwrap_or(("", key))
}

fn join_key(prefix: &str, name: &str) -> String {
    if prefix.is_empty() {
        name.to_owned()
    } else {
        format!("{prefix}/{name}")
    }
}

type Entry = (String, String, String, String);

/// The metadata of one resource.
pub fn load(conn: &mut DbConn, resource_type: &str, guid: &str) -> Result<Metadata, ApiError> {
    let mut all = load_for(conn, resource_type, Some(guid))?;
    Ok(all.remove(guid).unwrap_or_default())
}

/// The metadata of every resource of this type, by GUID (resources without metadata are absent).
pub fn load_all(
    conn: &mut DbConn,
    resource_type: &str,
) -> Result<HashMap<String, Metadata>, ApiError> {
    load_for(conn, resource_type, None)
}

fn load_for(
    conn: &mut DbConn,
    resource_type: &str,
    guid: Option<&str>,
) -> Result<HashMap<String, Metadata>, ApiError> {
    let mut by_guid: HashMap<String, Metadata> = HashMap::new();
    if guid.is_some_and(|guid| !super::can_match(guid)) {
        return Ok(by_guid);
    }
    let mut labels = resource_labels::table
        .filter(resource_labels::resource_type.eq(resource_type))
        .select((
            resource_labels::resource_guid,
            resource_labels::key_prefix,
            resource_labels::key_name,
            resource_labels::value,
        ))
        .into_boxed();
    let mut annotations = resource_annotations::table
        .filter(resource_annotations::resource_type.eq(resource_type))
        .select((
            resource_annotations::resource_guid,
            resource_annotations::key_prefix,
            resource_annotations::key_name,
            resource_annotations::value,
        ))
        .into_boxed();
    if let Some(guid) = guid {
        labels = labels.filter(resource_labels::resource_guid.eq(guid.to_owned()));
        annotations = annotations.filter(resource_annotations::resource_guid.eq(guid.to_owned()));
    }
    let labels: Vec<Entry> = labels.load(conn)?;
    let annotations: Vec<Entry> = annotations.load(conn)?;
    for (guid, prefix, name, value) in labels {
        by_guid
            .entry(guid)
            .or_default()
            .labels
            .insert(join_key(&prefix, &name), value);
    }
    for (guid, prefix, name, value) in annotations {
        by_guid
            .entry(guid)
            .or_default()
            .annotations
            .insert(join_key(&prefix, &name), value);
    }
    Ok(by_guid)
}

/// Applies a validated update (CC's merge: `None` deletes, other keys are kept), in one
/// transaction.
pub fn apply(
    conn: &mut DbConn,
    resource_type: &str,
    guid: &str,
    update: &MetadataUpdate,
) -> Result<(), ApiError> {
    if update.is_empty() {
        return Ok(());
    }
    conn.write_transaction(|conn| {
        for (key, value) in &update.labels {
            let (prefix, name) = split_key(key);
            diesel::delete(
                resource_labels::table
                    .filter(resource_labels::resource_type.eq(resource_type))
                    .filter(resource_labels::resource_guid.eq(guid))
                    .filter(resource_labels::key_prefix.eq(prefix))
                    .filter(resource_labels::key_name.eq(name)),
            )
            .execute(conn)?;
            if let Some(value) = value {
                diesel::insert_into(resource_labels::table)
                    .values((
                        resource_labels::resource_type.eq(resource_type),
                        resource_labels::resource_guid.eq(guid),
                        resource_labels::key_prefix.eq(prefix),
                        resource_labels::key_name.eq(name),
                        resource_labels::value.eq(value),
                    ))
                    .execute(conn)?;
            }
        }
        for (key, value) in &update.annotations {
            let (prefix, name) = split_key(key);
            diesel::delete(
                resource_annotations::table
                    .filter(resource_annotations::resource_type.eq(resource_type))
                    .filter(resource_annotations::resource_guid.eq(guid))
                    .filter(resource_annotations::key_prefix.eq(prefix))
                    .filter(resource_annotations::key_name.eq(name)),
            )
            .execute(conn)?;
            if let Some(value) = value {
                diesel::insert_into(resource_annotations::table)
                    .values((
                        resource_annotations::resource_type.eq(resource_type),
                        resource_annotations::resource_guid.eq(guid),
                        resource_annotations::key_prefix.eq(prefix),
                        resource_annotations::key_name.eq(name),
                        resource_annotations::value.eq(value),
                    ))
                    .execute(conn)?;
            }
        }
        Ok(())
    })
}

/// Deletes the metadata of these resources (when the resources themselves are deleted).
pub fn delete_for(
    conn: &mut DbConn,
    resource_type: &str,
    guids: &[String],
) -> Result<(), ApiError> {
    if guids.is_empty() {
        return Ok(());
    }
    diesel::delete(
        resource_labels::table
            .filter(resource_labels::resource_type.eq(resource_type))
            .filter(resource_labels::resource_guid.eq_any(guids)),
    )
    .execute(conn)?;
    diesel::delete(
        resource_annotations::table
            .filter(resource_annotations::resource_type.eq(resource_type))
            .filter(resource_annotations::resource_guid.eq_any(guids)),
    )
    .execute(conn)?;
    Ok(())
}
