//! The CC API v2: envelopes, `q` filters (CC's grammar and join attributes), `next_url` paths,
//! request bodies decoded as CC's `JsonMessage` does, and v2 status codes, as a view over the
//! same store, permission module and error catalog as v3. Errors on `/v2` paths are rendered as
//! `{"code","description","error_code"}` by the request middleware.

pub mod apps;
pub mod feature_flags;
pub mod jobs;
pub mod organizations;
pub mod reference_data;
pub mod roles;
pub mod services;
pub mod spaces;
pub mod users;

use actix_web::{web, HttpRequest};
use serde_json::{json, Value};

use crate::error::ApiError;

/// Registers every v2 route.
pub fn configure(config: &mut web::ServiceConfig) {
    organizations::configure(config);
    spaces::configure(config);
    roles::configure(config);
    users::configure(config);
    reference_data::configure(config);
    feature_flags::configure(config);
    jobs::configure(config);
    services::configure(config);
    apps::configure(config);
}

/// How a `q` condition compares (`:`, ` IN `, `<`, `<=`, `>`, `>=`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Operator {
    /// `:` and ` IN `: equal to one of the values.
    Equal,
    /// `<`.
    Less,
    /// `<=`.
    LessOrEqual,
    /// `>`.
    Greater,
    /// `>=`.
    GreaterOrEqual,
}

/// One `q` condition.
#[derive(Debug, Clone)]
pub struct Condition {
    /// Attribute name.
    pub attribute: String,
    /// The comparison.
    pub operator: Operator,
    /// Values (one for `:` and the comparisons, several for ` IN `, none for a bare attribute,
    /// which CC reads as `IS NULL` and so matches nothing here).
    pub values: Vec<String>,
}

impl Condition {
    /// Whether `value` passes. CC compares foreign keys (`…_guid`) as set membership whatever
    /// the operator, and other columns with the operator itself.
    fn matches(&self, value: &str, same: impl Fn(&str, &str) -> bool) -> bool {
        use std::cmp::Ordering;
        if self.operator == Operator::Equal || self.attribute.ends_with("_guid") {
            return self.values.iter().any(|candidate| same(candidate, value));
        }
        self.values.iter().any(|candidate| {
            let ordering = value.cmp(candidate.as_str());
            match self.operator {
                Operator::Less => ordering == Ordering::Less,
                Operator::LessOrEqual => ordering != Ordering::Greater,
                Operator::Greater => ordering == Ordering::Greater,
                Operator::GreaterOrEqual => ordering != Ordering::Less,
                Operator::Equal => ordering == Ordering::Equal,
            }
        })
    }
}

/// Largest `inline-relations-depth` CC accepts.
const MAX_INLINE_RELATIONS_DEPTH: i64 = 3;

/// Checks `inline-relations-depth` as CC does (an integer, at most 3). Kiln does not expand
/// relations inline; every `_guid` and `_url` field is always returned.
fn check_inline_relations_depth(value: &str) -> Result<(), ApiError> {
    let depth: i64 = value
        .trim()
        .parse()
        .map_err(|_| ApiError::bad_query("inline_relations_depth must be an integer"))?;
    if depth > MAX_INLINE_RELATIONS_DEPTH {
        return Err(ApiError::bad_query(format!(
            "inline_relations_depth must be <= {MAX_INLINE_RELATIONS_DEPTH}"
        )));
    }
    Ok(())
}

/// The query checks of a single-resource `GET` (CC's object renderer validates
/// `inline-relations-depth` there too).
pub fn check_resource_query(request: &HttpRequest) -> Result<(), ApiError> {
    for (key, value) in crate::query::query_pairs(request)? {
        if key == "inline-relations-depth" {
            check_inline_relations_depth(&value)?;
        }
    }
    Ok(())
}

/// Parsed v2 list parameters.
#[derive(Debug, Clone)]
pub struct V2Query {
    /// `q` conditions, ANDed.
    pub conditions: Vec<Condition>,
    /// 1-based page.
    pub page: usize,
    /// `results-per-page` (≤ 100).
    pub per_page: usize,
    /// `order-by` (validated by the caller).
    pub order_by: Option<String>,
    /// `order-direction=desc`.
    pub descending: bool,
    /// Raw `q` values, kept for next/prev links.
    raw_q: Vec<String>,
    /// Other parameters CC carries into next/prev links when they were given.
    preserved: Vec<(String, String)>,
}

/// Parameters CC keeps in `next_url`/`prev_url` besides paging, ordering and `q`.
const PRESERVED_PARAMETERS: &[&str] = &[
    "inline-relations-depth",
    "orphan-relations",
    "exclude-relations",
    "include-relations",
    "return_user_provided_service_instances",
    "after_guid",
];

impl V2Query {
    /// Parses `q` (repeated, `;`-joined), `page`, `results-per-page`, `order-by`,
    /// `order-direction`; `attributes` are the queryable attributes, `sortable` the `order-by` keys.
    pub fn parse(
        request: &HttpRequest,
        attributes: &[&str],
        sortable: &[&str],
    ) -> Result<V2Query, ApiError> {
        let pairs = crate::query::query_pairs(request)?;
        let mut query = V2Query {
            conditions: Vec::new(),
            page: 1,
            per_page: 50,
            order_by: None,
            descending: false,
            raw_q: Vec::new(),
            preserved: Vec::new(),
        };
        for (key, value) in pairs {
            if PRESERVED_PARAMETERS.contains(&key.as_str()) {
                query.preserved.push((key.clone(), value.clone()));
            }
            match key.as_str() {
                "q" => {
                    for condition in split_conditions(&value) {
                        query
                            .conditions
                            .push(parse_condition(&condition, attributes)?);
                    }
                    query.raw_q.push(value);
                }
                "page" => {
                    query.page = value
                        .parse()
                        .ok()
                        .filter(|page| *page >= 1)
                        .ok_or_else(|| ApiError::bad_query("page must be a positive integer"))?
                }
                "results-per-page" => {
                    let per_page: usize = value
                        .parse()
                        .map_err(|_| ApiError::bad_query("results_per_page must be an integer"))?;
                    if per_page > 100 {
                        return Err(ApiError::bad_query("results_per_page must be <= 100"));
                    }
                    if per_page == 0 {
                        return Err(ApiError::bad_query("results_per_page must be >= 1"));
                    }
                    query.per_page = per_page;
                }
                "order-direction" => match value.as_str() {
                    "asc" => query.descending = false,
                    "desc" => query.descending = true,
                    _ => {
                        return Err(ApiError::bad_query(format!(
                            "order_direction must be 'asc' or 'desc' but was '{value}'"
                        )))
                    }
                },
                "order-by" => {
                    if !sortable.contains(&value.as_str()) {
                        return Err(ApiError::bad_query(format!("cannot order by {value}")));
                    }
                    query.order_by = Some(value);
                }
                "inline-relations-depth" => check_inline_relations_depth(&value)?,
                // CC ignores parameters it does not know (`orphan-relations`, `async`, a
                // client's own extras), and so does Kiln; only `q` names are strict.
                _ => {}
            }
        }
        Ok(query)
    }

    /// Whether any condition names one of `attributes` (to skip loading joins nobody asked for).
    pub fn names_any(&self, attributes: &[&str]) -> bool {
        self.conditions
            .iter()
            .any(|condition| attributes.contains(&condition.attribute.as_str()))
    }

    /// True when every condition on `attribute` accepts `value` (absent conditions accept all).
    pub fn accepts(&self, attribute: &str, value: &str) -> bool {
        self.conditions
            .iter()
            .filter(|condition| condition.attribute == attribute)
            .all(|condition| condition.matches(value, |candidate, value| candidate == value))
    }

    /// Like [`V2Query::accepts`], comparing names case-insensitively (CC's citext columns).
    pub fn accepts_name(&self, attribute: &str, value: &str) -> bool {
        self.conditions
            .iter()
            .filter(|condition| condition.attribute == attribute)
            .all(|condition| condition.matches(value, crate::store::same_name))
    }

    /// True when every condition on `attribute` names one of `values` (a to-many relation: the
    /// object matches when any related GUID does).
    pub fn accepts_any<'a>(
        &self,
        attribute: &str,
        values: impl IntoIterator<Item = &'a str> + Clone,
    ) -> bool {
        self.conditions
            .iter()
            .filter(|condition| condition.attribute == attribute)
            .all(|condition| {
                values
                    .clone()
                    .into_iter()
                    .any(|value| condition.matches(value, |candidate, value| candidate == value))
            })
    }

    /// Orders `items` (already in creation order) by `name` when asked, then pages them into the
    /// v2 list envelope with `next_url`/`prev_url` paths.
    pub fn envelope<T>(
        &self,
        mut items: Vec<T>,
        path: &str,
        name: impl Fn(&T) -> &str,
        render: impl Fn(&T) -> Value,
    ) -> Value {
        if self.order_by.as_deref() == Some("name") {
            items.sort_by(|left, right| name(left).cmp(name(right)));
        }
        if self.descending {
            items.reverse();
        }
        let total = items.len();
        let total_pages = total.div_ceil(self.per_page).max(1);
        let resources: Vec<Value> = items
            .iter()
            .skip((self.page - 1).saturating_mul(self.per_page))
            .take(self.per_page)
            .map(render)
            .collect();
        let link = |page: usize| {
            let mut pairs: Vec<(String, String)> = vec![
                (
                    "order-direction".into(),
                    if self.descending { "desc" } else { "asc" }.into(),
                ),
                ("page".into(), page.to_string()),
                ("results-per-page".into(), self.per_page.to_string()),
            ];
            if let Some(order_by) = &self.order_by {
                pairs.push(("order-by".into(), order_by.clone()));
            }
            pairs.extend(self.raw_q.iter().map(|q| ("q".to_owned(), q.clone())));
            pairs.extend(self.preserved.iter().cloned());
            json!(format!(
                "{path}?{}",
                serde_urlencoded::to_string(&pairs).unwrap_or_default()
            ))
        };
        json!({
            "total_results": total,
            "total_pages": total_pages,
            "prev_url": if self.page > 1 { link(self.page - 1) } else { Value::Null },
            "next_url": if self.page < total_pages { link(self.page + 1) } else { Value::Null },
            "resources": resources,
        })
    }
}

/// Splits one `q` value on `;` (a literal `;` is written `;;`).
fn split_conditions(value: &str) -> Vec<String> {
    let mut conditions = Vec::new();
    let mut current = String::new();
    let mut characters = value.chars().peekable();
    while let Some(character) = characters.next() {
        if character == ';' {
            if characters.peek() == Some(&';') {
                characters.next();
                current.push(';');
            } else {
                conditions.push(std::mem::take(&mut current));
            }
        } else {
            current.push(character);
        }
    }
    conditions.push(current);
    conditions
        .into_iter()
        .filter(|condition| !condition.is_empty())
        .collect()
}

fn parse_condition(condition: &str, attributes: &[&str]) -> Result<Condition, ApiError> {
    // CC splits once on the first of `:`, `>=`, `<=`, `<`, `>`, ` IN ` in the text; at one
    // position the longer operator wins (`>=` before `>`).
    let operators = [":", ">=", "<=", "<", ">", " IN "];
    let found = operators
        .iter()
        .filter_map(|operator| {
            condition
                .find(operator)
                .map(|position| (position, *operator))
        })
        .min_by_key(|(position, operator)| (*position, std::cmp::Reverse(operator.len())));
    let Some((position, operator)) = found else {
        // A bare attribute is `attribute IS NULL` in CC: valid, and matching nothing here.
        if !attributes.contains(&condition) {
            return Err(ApiError::bad_query(condition));
        }
        return Ok(Condition {
            attribute: condition.to_owned(),
            operator: Operator::Equal,
            values: Vec::new(),
        });
    };
    let attribute = &condition[..position];
    let value = &condition[position + operator.len()..];
    if !attributes.contains(&attribute) {
        return Err(ApiError::bad_query(attribute));
    }
    let (operator, values) = match operator {
        " IN " => (
            Operator::Equal,
            value.split(',').map(str::to_owned).collect(),
        ),
        ":" => (Operator::Equal, vec![value.to_owned()]),
        "<" => (Operator::Less, vec![value.to_owned()]),
        "<=" => (Operator::LessOrEqual, vec![value.to_owned()]),
        ">" => (Operator::Greater, vec![value.to_owned()]),
        _ => (Operator::GreaterOrEqual, vec![value.to_owned()]),
    };
    Ok(Condition {
        attribute: attribute.to_owned(),
        operator,
        values,
    })
}

/// The v2 resource envelope.
pub fn resource(guid: &str, url: &str, created_at: &str, updated_at: &str, entity: Value) -> Value {
    json!({
        "metadata": {"guid": guid, "url": url, "created_at": created_at, "updated_at": updated_at},
        "entity": entity,
    })
}

/// The GUIDs each object is related to, by the `q` attribute that names them (an org's
/// `space_guid`s and `manager_guid`s, a space's `developer_guid`s and `app_guid`s, …), for the
/// filters CC answers with a join.
#[derive(Debug, Default)]
pub(crate) struct Related {
    by_id: std::collections::HashMap<i32, Vec<(&'static str, String)>>,
}

impl Related {
    /// Records that object `id` is related to `guid` through `attribute`.
    pub(crate) fn add(&mut self, id: i32, attribute: &'static str, guid: &str) {
        self.by_id
            .entry(id)
            .or_default()
            .push((attribute, guid.to_owned()));
    }

    /// Whether object `id` passes every `q` condition on the join `attributes`.
    pub(crate) fn accepted_by(&self, id: i32, query: &V2Query, attributes: &[&str]) -> bool {
        let related = self.by_id.get(&id).map(Vec::as_slice).unwrap_or(&[]);
        attributes.iter().all(|attribute| {
            query.accepts_any(
                attribute,
                related
                    .iter()
                    .filter(|(name, _)| name == attribute)
                    .map(|(_, guid)| guid.as_str()),
            )
        })
    }
}

/// A v2 request body decoded as CC's `JsonMessage` does: it must be a JSON object
/// (`CF-MessageParseError` otherwise), keys CC's message does not define are ignored, and
/// `null` counts as absent.
pub(crate) fn body_object(payload: &Value) -> Result<&serde_json::Map<String, Value>, ApiError> {
    payload
        .as_object()
        .ok_or_else(|| ApiError::parse("the request body must be a JSON object"))
}

/// Ruby's class name for a JSON value, as CC's schema errors name it.
fn ruby_class(value: &Value) -> &'static str {
    match value {
        Value::Null => "NilClass",
        Value::Bool(true) => "TrueClass",
        Value::Bool(false) => "FalseClass",
        Value::Number(number) if number.is_f64() => "Float",
        Value::Number(_) => "Integer",
        Value::String(_) => "String",
        Value::Array(_) => "Array",
        Value::Object(_) => "Hash",
    }
}

/// An optional string field; another type is CC's schema error (`CF-MessageParseError`).
pub(crate) fn body_string(
    object: &serde_json::Map<String, Value>,
    field: &str,
) -> Result<Option<String>, ApiError> {
    match object.get(field) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(value)) => Ok(Some(value.clone())),
        Some(other) => Err(ApiError::parse(format!(
            "Field: {field}, Error: Expected instance of String, given an instance of {}",
            ruby_class(other)
        ))),
    }
}

/// A string field CC's message requires (missing: `CF-MessageParseError`).
pub(crate) fn body_required_string(
    object: &serde_json::Map<String, Value>,
    field: &str,
) -> Result<String, ApiError> {
    body_string(object, field)?
        .ok_or_else(|| ApiError::parse(format!("Field: {field}, Error: Missing field {field}")))
}

/// An optional boolean field; another type is CC's schema error (`CF-MessageParseError`).
pub(crate) fn body_bool(
    object: &serde_json::Map<String, Value>,
    field: &str,
) -> Result<Option<bool>, ApiError> {
    match object.get(field) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Bool(value)) => Ok(Some(*value)),
        Some(other) => Err(ApiError::parse(format!(
            "Field: {field}, Error: Expected instance of true or false, given {other}"
        ))),
    }
}

/// An optional integer field; another type, or a number beyond 32 bits, is CC's schema error
/// (`CF-MessageParseError`).
pub(crate) fn body_i32(
    object: &serde_json::Map<String, Value>,
    field: &str,
) -> Result<Option<i32>, ApiError> {
    match object.get(field) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Number(number)) if number.is_i64() || number.is_u64() => number
            .as_i64()
            .and_then(|value| i32::try_from(value).ok())
            .map(Some)
            .ok_or_else(|| {
                ApiError::parse(format!("Field: {field}, Error: {number} is out of range"))
            }),
        Some(other) => Err(ApiError::parse(format!(
            "Field: {field}, Error: Expected instance of Integer, given an instance of {}",
            ruby_class(other)
        ))),
    }
}
