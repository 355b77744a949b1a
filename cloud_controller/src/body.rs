//! Request-body validation shared by v3 and v2: known fields only, typed accessors with CC's
//! messages (`Unknown field(s): 'foo'`, `Name can't be blank`, …).

use serde_json::{Map, Value};

use crate::error::ApiError;

/// The body as an object whose keys are all in `allowed`.
pub fn object<'a>(body: &'a Value, allowed: &[&str]) -> Result<&'a Map<String, Value>, ApiError> {
    let object = body
        .as_object()
        .ok_or_else(|| ApiError::parse("the request body must be a JSON object"))?;
    let unknown: Vec<String> = object
        .keys()
        .filter(|key| !allowed.contains(&key.as_str()))
        .map(|key| format!("'{key}'"))
        .collect();
    if !unknown.is_empty() {
        return Err(ApiError::unprocessable(format!(
            "Unknown field(s): {}",
            unknown.join(", ")
        )));
    }
    Ok(object)
}

/// Checks an optional `metadata` member. Kiln stores no labels or annotations yet, so only an
/// empty one is accepted — what `cf rename-org` sends (`"metadata": {}`) — and any label or
/// annotation is refused rather than silently dropped.
pub fn no_metadata(object: &Map<String, Value>) -> Result<(), ApiError> {
    let Some(metadata) = object.get("metadata") else {
        return Ok(());
    };
    let metadata = metadata
        .as_object()
        .ok_or_else(|| ApiError::unprocessable("Metadata must be an object"))?;
    for (key, value) in metadata {
        if key != "labels" && key != "annotations" {
            return Err(ApiError::unprocessable(format!(
                "Metadata has unexpected field(s): '{key}'"
            )));
        }
        match value {
            Value::Null => {}
            Value::Object(entries) if entries.is_empty() => {}
            Value::Object(_) => {
                return Err(ApiError::unprocessable(format!(
                    "Metadata {key} are not supported by this Cloud Controller yet"
                )))
            }
            _ => {
                return Err(ApiError::unprocessable(format!(
                    "Metadata {key} must be an object"
                )))
            }
        }
    }
    Ok(())
}

/// CC's field label: `name` → `Name`, `default_space_guid` → `Default space guid`.
pub(crate) fn label(field: &str) -> String {
    let spaced = field.replace('_', " ");
    let mut characters = spaced.chars();
    match characters.next() {
        Some(first) => first.to_uppercase().chain(characters).collect(),
        None => String::new(),
    }
}

/// An optional string field (`null` counts as absent).
pub fn optional_string(
    object: &Map<String, Value>,
    field: &str,
) -> Result<Option<String>, ApiError> {
    match object.get(field) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(value)) => Ok(Some(value.clone())),
        Some(_) => Err(ApiError::unprocessable(format!(
            "{} must be a string",
            label(field)
        ))),
    }
}

/// An optional boolean field.
pub fn optional_bool(object: &Map<String, Value>, field: &str) -> Result<Option<bool>, ApiError> {
    match object.get(field) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Bool(value)) => Ok(Some(*value)),
        Some(_) => Err(ApiError::unprocessable(format!(
            "{} must be a boolean",
            label(field)
        ))),
    }
}

/// A resource name: present, a string, not blank, at most 255 characters.
pub fn name(object: &Map<String, Value>, required: bool) -> Result<Option<String>, ApiError> {
    let value = match object.get("name") {
        None | Some(Value::Null) if required => {
            return Err(ApiError::unprocessable("Name can't be blank"))
        }
        None | Some(Value::Null) => return Ok(None),
        Some(Value::String(value)) => value.clone(),
        Some(_) => return Err(ApiError::unprocessable("Name must be a string")),
    };
    check_name(&value)?;
    Ok(Some(value))
}

/// Name rules shared by create and update.
pub fn check_name(value: &str) -> Result<(), ApiError> {
    if value.trim().is_empty() {
        return Err(ApiError::unprocessable("Name can't be blank"));
    }
    if value.chars().count() > 255 {
        return Err(ApiError::unprocessable(
            "Name is too long (maximum is 255 characters)",
        ));
    }
    // CC's ORG_NAME_REGEX / SPACE_NAME_REGEX: printable characters only (PostgreSQL would also
    // refuse a NUL byte outright).
    if value.chars().any(char::is_control) {
        return Err(ApiError::unprocessable(
            "Name must not contain escaped characters",
        ));
    }
    Ok(())
}

/// `relationships.<relation>.data.guid` of a to-one relationship, validated as CC does.
pub fn relationship_guid(
    object: &Map<String, Value>,
    relation: &str,
) -> Result<Option<String>, ApiError> {
    let Some(relationships) = object.get("relationships") else {
        return Ok(None);
    };
    let relationships = relationships
        .as_object()
        .ok_or_else(|| ApiError::unprocessable("Relationships must be an object"))?;
    let Some(related) = relationships.get(relation) else {
        return Ok(None);
    };
    let guid = related
        .get("data")
        .and_then(|data| data.get("guid"))
        .and_then(Value::as_str)
        .ok_or_else(|| ApiError::unprocessable(format!("Relationships {} must be structured like this: \"{relation}: {{\"data\": {{\"guid\": \"valid-guid\"}}}}\"", label(relation).to_lowercase())))?;
    Ok(Some(guid.to_owned()))
}
