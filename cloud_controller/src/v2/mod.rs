//! The CC API v2: envelopes, `q` filters, `next_url` paths and v2 status codes as a view over the
//! same store, permission module and error catalog as v3. Errors on `/v2` paths are rendered as
//! `{"code","description","error_code"}` by the request middleware.

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
}

/// One `q` condition.
#[derive(Debug, Clone)]
pub struct Condition {
    /// Attribute name.
    pub attribute: String,
    /// Accepted values (one for `:`, several for ` IN `).
    pub values: Vec<String>,
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
}

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
        };
        for (key, value) in pairs {
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
                    _ => return Err(ApiError::bad_query("order-direction must be asc or desc")),
                },
                "order-by" => {
                    if !sortable.contains(&value.as_str()) {
                        return Err(ApiError::bad_query(format!("cannot order by {value}")));
                    }
                    query.order_by = Some(value);
                }
                // Inline relations are not expanded; every `_guid` and `_url` field is still returned.
                "inline-relations-depth"
                | "orphan-relations"
                | "exclude-relations"
                | "include-relations"
                | "recursive"
                | "async"
                | "return_user_provided_service_instances" => {}
                other => return Err(ApiError::bad_query(other)),
            }
        }
        Ok(query)
    }

    /// True when every condition on `attribute` accepts `value` (absent conditions accept all).
    pub fn accepts(&self, attribute: &str, value: &str) -> bool {
        self.conditions
            .iter()
            .filter(|condition| condition.attribute == attribute)
            .all(|condition| condition.values.iter().any(|candidate| candidate == value))
    }

    /// Like [`V2Query::accepts`], comparing names case-insensitively (CC's citext columns).
    pub fn accepts_name(&self, attribute: &str, value: &str) -> bool {
        self.conditions
            .iter()
            .filter(|condition| condition.attribute == attribute)
            .all(|condition| {
                condition
                    .values
                    .iter()
                    .any(|candidate| crate::store::same_name(candidate, value))
            })
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
                    .any(|value| condition.values.iter().any(|candidate| candidate == value))
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
            .skip((self.page - 1) * self.per_page)
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
    let operators = [":", ">=", "<=", "<", ">", " IN "];
    let found = operators
        .iter()
        .filter_map(|operator| {
            condition
                .find(operator)
                .map(|position| (position, *operator))
        })
        .min_by_key(|(position, _)| *position);
    let Some((position, operator)) = found else {
        return Err(ApiError::bad_query(condition));
    };
    let attribute = &condition[..position];
    let value = &condition[position + operator.len()..];
    if !attributes.contains(&attribute) {
        return Err(ApiError::bad_query(attribute));
    }
    let values = match operator {
        ":" => vec![value.to_owned()],
        " IN " => value.split(',').map(str::to_owned).collect(),
        _ => {
            return Err(ApiError::bad_query(format!(
                "{attribute} does not support {}",
                operator.trim()
            )))
        }
    };
    Ok(Condition {
        attribute: attribute.to_owned(),
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
