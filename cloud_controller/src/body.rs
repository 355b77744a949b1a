//! Request-body validation shared by v3 and v2: known fields only, typed accessors with CC's
//! messages (`Unknown field(s): 'foo'`, `Name can't be blank`, …).

use serde_json::{Map, Value};

use crate::error::ApiError;
use crate::store::metadata::MetadataUpdate;

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

/// Most characters of a label value, and of a metadata key name (after any prefix).
const MAX_METADATA_KEY_OR_LABEL_VALUE: usize = 63;
/// Most characters of a metadata key prefix (a DNS subdomain).
const MAX_METADATA_PREFIX: usize = 253;
/// Most characters of an annotation value.
const MAX_ANNOTATION_VALUE: usize = 5000;
/// The prefix CC keeps for itself.
const RESERVED_PREFIX: &str = "cloudfoundry.org";

/// Parses and validates an optional `metadata` member (`labels` and `annotations`, a `null`
/// value deleting its key) with CC's MetadataValidator rules and messages: every problem is
/// reported, joined with ", ", in one 422. Nothing is stored here.
pub fn metadata(object: &Map<String, Value>) -> Result<MetadataUpdate, ApiError> {
    let mut update = MetadataUpdate::default();
    let metadata = match object.get("metadata") {
        None | Some(Value::Null) => return Ok(update),
        Some(Value::Object(metadata)) => metadata,
        Some(_) => return Err(ApiError::unprocessable("Metadata must be an object")),
    };
    let mut errors: Vec<String> = Vec::new();
    let unexpected: Vec<String> = metadata
        .keys()
        .filter(|key| *key != "labels" && *key != "annotations")
        .map(|key| format!("'{key}'"))
        .collect();
    if !unexpected.is_empty() {
        errors.push(format!(
            "Metadata has unexpected field(s): {}",
            unexpected.join(" ")
        ));
    }
    match metadata.get("labels") {
        None | Some(Value::Null) => {}
        Some(Value::Object(labels)) => {
            for (key, value) in labels {
                let value = metadata_text(value);
                if let Some(error) = metadata_key_error(key) {
                    errors.push(format!("Metadata label key error: {error}"));
                }
                if let Some(error) = value.as_deref().and_then(label_value_error) {
                    errors.push(format!("Metadata label value error: {error}"));
                }
                update.labels.push((key.clone(), value));
            }
        }
        Some(_) => errors.push("Metadata 'labels' is not an object".to_owned()),
    }
    match metadata.get("annotations") {
        None | Some(Value::Null) => {}
        Some(Value::Object(annotations)) => {
            for (key, value) in annotations {
                let value = metadata_text(value);
                // CC checks an annotation's key only when it is given a value; a deletion or
                // an empty value under a key no annotation can have changes nothing.
                let key_error = metadata_key_error(key);
                if value.as_deref().is_some_and(|value| !value.is_empty()) {
                    if let Some(error) = &key_error {
                        errors.push(format!("Metadata annotation key error: {error}"));
                    }
                } else if key_error.is_some() {
                    continue;
                }
                if let Some(value) = value.as_deref() {
                    // No database can hold a NUL byte in text (PostgreSQL refuses it).
                    if value.contains('\0') {
                        errors.push(format!(
                            "Metadata annotation value error: '{}...' contains invalid characters",
                            first_characters(value).replace('\0', "")
                        ));
                    } else if value.chars().count() > MAX_ANNOTATION_VALUE {
                        errors.push(format!(
                            "Metadata annotation value error: '{}...' is greater than {MAX_ANNOTATION_VALUE} characters",
                            first_characters(value)
                        ));
                    }
                }
                update.annotations.push((key.clone(), value));
            }
        }
        Some(_) => errors.push("Metadata 'annotations' is not an object".to_owned()),
    }
    if errors.is_empty() {
        Ok(update)
    } else {
        Err(ApiError::unprocessable(errors.join(", ")))
    }
}

/// A metadata value as text: `null` deletes; strings as they are; other JSON as CC's `to_s`
/// would roughly render it (numbers and booleans), so a label value check can refuse it.
fn metadata_text(value: &Value) -> Option<String> {
    match value {
        Value::Null => None,
        Value::String(text) => Some(text.clone()),
        other => Some(other.to_string()),
    }
}

/// CC quotes the first eight characters of a value too long to show.
fn first_characters(value: &str) -> String {
    value.chars().take(8).collect()
}

/// CC's `\w`, `-` and `.`.
fn metadata_characters_valid(text: &str) -> bool {
    text.chars()
        .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.'))
}

/// Starts and ends with an ASCII letter or digit.
fn starts_and_ends_alphanumeric(text: &str) -> bool {
    let mut characters = text.chars();
    let first = characters.next();
    let last = characters.next_back().or(first);
    first.is_some_and(|c| c.is_ascii_alphanumeric())
        && last.is_some_and(|c| c.is_ascii_alphanumeric())
}

/// CC's DomainDecorator::DOMAIN_REGEX: dot-separated labels of 1 to 63 letters, digits and
/// inner hyphens.
fn dns_format(prefix: &str) -> bool {
    !prefix.is_empty()
        && prefix.split('.').all(|label| {
            !label.is_empty()
                && label.len() <= 63
                && label.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
                && !label.starts_with('-')
                && !label.ends_with('-')
        })
}

/// CC's MetadataValidatorHelper#key_error, in its order.
fn metadata_key_error(key: &str) -> Option<String> {
    if key.is_empty() {
        return Some("key cannot be empty string".to_owned());
    }
    if key.matches('/').count() > 1 {
        return Some("key has more than one '/'".to_owned());
    }
    let (prefix, name) = match key.split_once('/') {
        Some((prefix, name)) => (Some(prefix), name),
        None => (None, key),
    };
    if let Some(prefix) = prefix {
        if !dns_format(prefix) {
            return Some(format!("prefix '{prefix}' must be in valid dns format"));
        }
        if prefix.chars().count() > MAX_METADATA_PREFIX {
            return Some(format!(
                "prefix '{}...' is greater than {MAX_METADATA_PREFIX} characters",
                first_characters(prefix)
            ));
        }
        if prefix.eq_ignore_ascii_case(RESERVED_PREFIX) {
            return Some(format!("prefix '{RESERVED_PREFIX}' is reserved"));
        }
    }
    if name.is_empty() {
        return Some("key cannot be empty string".to_owned());
    }
    if !metadata_characters_valid(name) {
        return Some(format!("'{name}' contains invalid characters"));
    }
    if !starts_and_ends_alphanumeric(name) {
        return Some(format!("'{name}' starts or ends with invalid characters"));
    }
    if name.chars().count() > MAX_METADATA_KEY_OR_LABEL_VALUE {
        return Some(format!(
            "'{}...' is greater than {MAX_METADATA_KEY_OR_LABEL_VALUE} characters",
            first_characters(name)
        ));
    }
    None
}

/// CC's MetadataValidatorHelper#value_error (the empty value is allowed).
fn label_value_error(value: &str) -> Option<String> {
    if value.is_empty() {
        return None;
    }
    if !metadata_characters_valid(value) {
        return Some(format!("'{value}' contains invalid characters"));
    }
    if !starts_and_ends_alphanumeric(value) {
        return Some(format!("'{value}' starts or ends with invalid characters"));
    }
    if value.chars().count() > MAX_METADATA_KEY_OR_LABEL_VALUE {
        return Some(format!(
            "'{}...' is greater than {MAX_METADATA_KEY_OR_LABEL_VALUE} characters",
            first_characters(value)
        ));
    }
    None
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
