//! v3 list parameters: strict parameter names, `page`/`per_page`/`order_by`, comma-list filters
//! (with the CLI's `%2C`-in-names convention), `include`, and pagination with absolute hrefs that
//! preserve the query.

use std::collections::HashMap;

use actix_web::HttpRequest;
use serde_json::{json, Value};

use crate::error::ApiError;

/// Largest `per_page` CC accepts.
pub const MAX_PER_PAGE: u32 = 5000;
/// Default `per_page`.
pub const DEFAULT_PER_PAGE: u32 = 50;

/// Sort order of a list.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SortKey {
    /// Creation order (the default).
    CreatedAt,
    /// Last update.
    UpdatedAt,
    /// Name.
    Name,
}

/// A parsed v3 list query.
#[derive(Debug, Clone)]
pub struct ListQuery {
    pairs: Vec<(String, String)>,
    lists: HashMap<String, Vec<String>>,
    /// 1-based page.
    pub page: u32,
    /// Page size.
    pub per_page: u32,
    /// Sort key and whether it is descending.
    pub order: (SortKey, bool),
}

/// Parameters every list accepts.
const PAGING: &[&str] = &["page", "per_page", "order_by"];

/// Decodes the raw query string as application/x-www-form-urlencoded.
pub fn query_pairs(request: &HttpRequest) -> Result<Vec<(String, String)>, ApiError> {
    serde_urlencoded::from_str::<Vec<(String, String)>>(request.query_string())
        .map_err(|error| ApiError::bad_query(format!("malformed query string: {error}")))
}

impl ListQuery {
    /// Parses and validates the request's query. `allowed` lists the filters of this endpoint
    /// (besides `page`, `per_page` and `order_by`); `sortable` the allowed `order_by` keys.
    pub fn parse(
        request: &HttpRequest,
        allowed: &[&str],
        sortable: &[SortKey],
    ) -> Result<ListQuery, ApiError> {
        Self::from_pairs(query_pairs(request)?, allowed, sortable)
    }

    /// Same as [`ListQuery::parse`] from decoded pairs.
    pub fn from_pairs(
        pairs: Vec<(String, String)>,
        allowed: &[&str],
        sortable: &[SortKey],
    ) -> Result<ListQuery, ApiError> {
        let mut unknown: Vec<&str> = pairs
            .iter()
            .map(|(key, _)| key.as_str())
            .filter(|key| !allowed.contains(key) && !PAGING.contains(key))
            .collect();
        unknown.dedup();
        if !unknown.is_empty() {
            let valid: Vec<String> = PAGING
                .iter()
                .chain(allowed.iter())
                .map(|key| format!("'{key}'"))
                .collect();
            let unknown: Vec<String> = unknown.iter().map(|key| format!("'{key}'")).collect();
            return Err(ApiError::bad_query(format!(
                "Unknown query parameter(s): {}. Valid parameters are: {}",
                unknown.join(", "),
                valid.join(", ")
            )));
        }
        let mut query = ListQuery {
            pairs: Vec::new(),
            lists: HashMap::new(),
            page: 1,
            per_page: DEFAULT_PER_PAGE,
            order: (SortKey::CreatedAt, false),
        };
        for (key, value) in &pairs {
            match key.as_str() {
                "page" => {
                    query.page = value
                        .parse::<u32>()
                        .ok()
                        .filter(|page| *page >= 1)
                        .ok_or_else(|| ApiError::bad_query("Page must be a positive integer"))?;
                }
                "per_page" => {
                    query.per_page = value
                        .parse::<u32>()
                        .ok()
                        .filter(|per_page| (1..=MAX_PER_PAGE).contains(per_page))
                        .ok_or_else(|| {
                            ApiError::bad_query(format!(
                                "Per page must be between 1 and {MAX_PER_PAGE}"
                            ))
                        })?;
                }
                "order_by" => {
                    let (descending, name) = match value.strip_prefix('-') {
                        Some(name) => (true, name),
                        None => (false, value.strip_prefix('+').unwrap_or(value)),
                    };
                    let key = match name {
                        "created_at" => Some(SortKey::CreatedAt),
                        "updated_at" => Some(SortKey::UpdatedAt),
                        "name" => Some(SortKey::Name),
                        _ => None,
                    }
                    .filter(|key| {
                        *key == SortKey::CreatedAt
                            || *key == SortKey::UpdatedAt
                            || sortable.contains(key)
                    });
                    let Some(key) = key else {
                        let mut names = vec!["'created_at'", "'updated_at'"];
                        if sortable.contains(&SortKey::Name) {
                            names.push("'name'");
                        }
                        return Err(ApiError::bad_query(format!(
                            "Order by can only be: {}",
                            names.join(", ")
                        )));
                    };
                    query.order = (key, descending);
                }
                "label_selector" => {
                    if !value.trim().is_empty() {
                        return Err(ApiError::bad_query(
                            "label_selector is not supported by this API yet",
                        ));
                    }
                }
                _ => {
                    query.lists.insert(key.clone(), split_list(key, value));
                }
            }
        }
        query.pairs = pairs;
        Ok(query)
    }

    /// Values of a comma-list filter, when given.
    pub fn list(&self, key: &str) -> Option<&[String]> {
        self.lists.get(key).map(Vec::as_slice)
    }

    /// True when the filter is absent or contains `value`.
    pub fn matches(&self, key: &str, value: &str) -> bool {
        self.list(key)
            .is_none_or(|values| values.iter().any(|candidate| candidate == value))
    }

    /// True when the filter is absent or names `value` in any letter case (CC's names filters
    /// on organizations, spaces, domains and quotas compare case-insensitive columns).
    pub fn matches_name(&self, key: &str, value: &str) -> bool {
        self.list(key).is_none_or(|values| {
            values
                .iter()
                .any(|candidate| crate::store::same_name(candidate, value))
        })
    }

    /// True when the filter is absent or contains one of `value` (for nullable relations).
    pub fn matches_opt(&self, key: &str, value: Option<&str>) -> bool {
        match self.list(key) {
            None => true,
            Some(values) => {
                value.is_some_and(|value| values.iter().any(|candidate| candidate == value))
            }
        }
    }

    /// Whether `include` names this relation.
    pub fn includes(&self, relation: &str) -> bool {
        self.list("include")
            .is_some_and(|values| values.iter().any(|value| value == relation))
    }

    /// Rejects `include` values other than `allowed`.
    pub fn check_include(&self, allowed: &[&str]) -> Result<(), ApiError> {
        if let Some(values) = self.list("include") {
            for value in values {
                if !allowed.contains(&value.as_str()) {
                    return Err(ApiError::bad_query(format!(
                        "Invalid included resource: '{value}'. Valid included resources are: {}",
                        allowed
                            .iter()
                            .map(|value| format!("'{value}'"))
                            .collect::<Vec<_>>()
                            .join(", ")
                    )));
                }
            }
        }
        Ok(())
    }

    /// Sorts `items` by the requested order (stable, so creation order breaks ties).
    pub fn sort<T>(
        &self,
        items: &mut [T],
        name: impl Fn(&T) -> &str,
        created: impl Fn(&T) -> &str,
        updated: impl Fn(&T) -> &str,
    ) {
        let (key, descending) = self.order;
        items.sort_by(|left, right| {
            let ordering = match key {
                SortKey::Name => name(left).cmp(name(right)),
                SortKey::CreatedAt => created(left).cmp(created(right)),
                SortKey::UpdatedAt => updated(left).cmp(updated(right)),
            };
            if descending {
                ordering.reverse()
            } else {
                ordering
            }
        });
    }

    /// Takes the requested page out of `items` (already filtered and sorted) and builds the
    /// `pagination` object with absolute hrefs under `{base}{path}`.
    pub fn page_of<T>(&self, items: Vec<T>, base: &str, path: &str) -> (Vec<T>, Value) {
        let total = items.len();
        let per_page = self.per_page as usize;
        let total_pages = total.div_ceil(per_page).max(1);
        let start = (self.page as usize - 1).saturating_mul(per_page);
        let page: Vec<T> = items.into_iter().skip(start).take(per_page).collect();
        let href = |page: usize| json!({"href": self.href(base, path, page)});
        let current = self.page as usize;
        let pagination = json!({
            "total_results": total,
            "total_pages": total_pages,
            "first": href(1),
            "last": href(total_pages),
            "next": if current < total_pages { href(current + 1) } else { Value::Null },
            "previous": if current > 1 && current <= total_pages + 1 { href(current - 1) } else { Value::Null },
        });
        (page, pagination)
    }

    fn href(&self, base: &str, path: &str, page: usize) -> String {
        let mut pairs: Vec<(String, String)> = vec![
            ("page".into(), page.to_string()),
            ("per_page".into(), self.per_page.to_string()),
        ];
        pairs.extend(
            self.pairs
                .iter()
                .filter(|(key, _)| key != "page" && key != "per_page")
                .cloned(),
        );
        let encoded = serde_urlencoded::to_string(&pairs).unwrap_or_default();
        format!("{base}{path}?{encoded}")
    }
}

/// Splits a comma-list value; for name-like filters each element is then percent-decoded
/// (the CLI writes a literal comma inside a name as `%2C`).
fn split_list(key: &str, value: &str) -> Vec<String> {
    let decode_elements = matches!(
        key,
        "names" | "usernames" | "partial_usernames" | "hosts" | "paths"
    );
    value
        .split(',')
        .map(|element| {
            if decode_elements {
                percent_encoding::percent_decode_str(element)
                    .decode_utf8_lossy()
                    .into_owned()
            } else {
                element.to_owned()
            }
        })
        .collect()
}

/// The standard v3 list body.
pub fn list_body(pagination: Value, resources: Vec<Value>, included: Option<Value>) -> Value {
    let mut body = json!({"pagination": pagination, "resources": resources});
    if let Some(included) = included {
        body["included"] = included;
    }
    body
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(query: &str) -> Result<ListQuery, ApiError> {
        let pairs = serde_urlencoded::from_str(query).unwrap();
        ListQuery::from_pairs(pairs, &["names", "guids"], &[SortKey::Name])
    }

    #[test]
    fn names_with_encoded_commas_are_split_then_decoded() {
        let query = parse("names=a%252Cb%2Cc+d").unwrap();
        assert_eq!(query.list("names").unwrap(), ["a,b", "c d"]);
    }

    #[test]
    fn paging_is_validated() {
        assert!(parse("per_page=0").is_err());
        assert!(parse("per_page=5001").is_err());
        assert!(parse("per_page=5000&page=2").is_ok());
        assert!(parse("page=0").is_err());
        assert!(parse("order_by=-name").is_ok());
        assert!(parse("order_by=color").is_err());
        assert!(parse("colour=blue").is_err());
    }

    #[test]
    fn hrefs_preserve_the_query() {
        let query = parse("names=x&per_page=1").unwrap();
        let (_, pagination) = query.page_of(vec![1, 2, 3], "http://api", "/v3/things");
        assert_eq!(
            pagination["next"]["href"],
            "http://api/v3/things?page=2&per_page=1&names=x"
        );
        assert_eq!(pagination["total_pages"], 3);
        assert!(pagination["previous"].is_null());
    }
}
