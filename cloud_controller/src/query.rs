//! v3 list parameters: strict parameter names, `page`/`per_page`/`order_by`, comma-list filters
//! (with the CLI's `%2C`-in-names convention), `include`, and pagination with absolute hrefs that
//! preserve the query.

use std::collections::{BTreeMap, HashMap};

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
    /// The requirements of every `label_selector`, all of which a resource's labels must meet.
    label_requirements: Vec<LabelRequirement>,
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
            label_requirements: Vec::new(),
        };
        for (key, value) in &pairs {
            match key.as_str() {
                "page" => {
                    // A page past the end (however far) is an empty page, as in CC.
                    query.page = value
                        .parse::<u64>()
                        .ok()
                        .filter(|page| *page >= 1)
                        .map(|page| u32::try_from(page).unwrap_or(u32::MAX))
                        .ok_or_else(|| ApiError::bad_query("Page must be a positive integer"))?;
                }
                "per_page" => {
                    // CC: a positive integer first, then at most MAX_PER_PAGE.
                    let positive = !value.is_empty()
                        && value.bytes().all(|byte| byte.is_ascii_digit())
                        && value.bytes().any(|byte| byte != b'0');
                    if !positive {
                        return Err(ApiError::bad_query("Per page must be a positive integer"));
                    }
                    query.per_page = value
                        .parse::<u32>()
                        .ok()
                        .filter(|per_page| *per_page <= MAX_PER_PAGE)
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
                    query
                        .label_requirements
                        .extend(parse_label_selector(value)?);
                }
                _ => {
                    query.lists.insert(key.clone(), split_list(key, value));
                }
            }
        }
        query.pairs = pairs;
        Ok(query)
    }

    /// Whether the query names an `order_by`.
    pub fn order_given(&self) -> bool {
        self.pairs.iter().any(|(key, _)| key == "order_by")
    }

    /// Rejects an `order_by` other than `name` (CC's lists whose only order is by name, such
    /// as feature flags).
    pub fn require_name_order(&self) -> Result<(), ApiError> {
        if self.order_given() && self.order.0 != SortKey::Name {
            return Err(ApiError::bad_query("Order by can only be: 'name'"));
        }
        Ok(())
    }

    /// True when `labels` (by full key) meet every `label_selector` requirement.
    pub fn matches_labels(&self, labels: &BTreeMap<String, String>) -> bool {
        self.label_requirements
            .iter()
            .all(|requirement| requirement.matches(labels))
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

    /// Rejects `include` values other than `allowed`, and any named twice (CC's
    /// IncludeParamValidator).
    pub fn check_include(&self, allowed: &[&str]) -> Result<(), ApiError> {
        if let Some(values) = self.list("include") {
            for (index, value) in values.iter().enumerate() {
                if allowed.contains(&value.as_str()) && values[..index].contains(value) {
                    return Err(ApiError::bad_query(format!(
                        "Duplicate included resource: '{value}'"
                    )));
                }
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

    /// Sorts `items` (given in creation order) by the requested order. Ties keep creation
    /// order, reversed for a descending order as CC's secondary order in the same direction
    /// does: `-created_at` lists the newest first even within one second.
    pub fn sort<T>(
        &self,
        items: &mut [T],
        name: impl Fn(&T) -> &str,
        created: impl Fn(&T) -> &str,
        updated: impl Fn(&T) -> &str,
    ) {
        let (key, descending) = self.order;
        items.sort_by(|left, right| match key {
            // CC's name columns compare without regard to case (citext), so "Apple" comes
            // before "banana".
            SortKey::Name => crate::store::name_key(name(left))
                .cmp(&crate::store::name_key(name(right)))
                .then_with(|| name(left).cmp(name(right))),
            SortKey::CreatedAt => created(left).cmp(created(right)),
            SortKey::UpdatedAt => updated(left).cmp(updated(right)),
        });
        if descending {
            items.reverse();
        }
    }

    /// Takes the requested page out of `items` (already filtered and sorted) and builds the
    /// `pagination` object with absolute hrefs under `{base}{path}`.
    /// For resources that carry no labels: a `label_selector` is matched against no labels.
    pub fn page_of<T>(&self, mut items: Vec<T>, base: &str, path: &str) -> (Vec<T>, Value) {
        if !self.matches_labels(&BTreeMap::new()) {
            items.clear();
        }
        self.page_of_labelled(items, base, path)
    }

    /// Same as [`ListQuery::page_of`] for resources that carry labels, which the caller has
    /// already filtered with [`ListQuery::matches_labels`].
    pub fn page_of_labelled<T>(&self, items: Vec<T>, base: &str, path: &str) -> (Vec<T>, Value) {
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

/// CC's answer to a list query on the endpoints whose controllers validate with
/// `unprocessable!` (roles, users): 422 `CF-UnprocessableEntity` with the same message.
pub fn as_unprocessable(error: ApiError) -> ApiError {
    if error.kind != crate::error::ErrorKind::BadQueryParameter {
        return error;
    }
    let prefix = crate::error::ErrorKind::BadQueryParameter
        .template()
        .trim_end_matches("%s");
    let detail = error.detail.strip_prefix(prefix).unwrap_or(&error.detail);
    ApiError::unprocessable(detail)
}

/// Most label selector requirements Kiln (like CC) accepts.
const MAX_LABEL_REQUIREMENTS: usize = 50;

/// One requirement of a `label_selector`.
#[derive(Debug, Clone, PartialEq, Eq)]
enum LabelRequirement {
    /// `key`: the label is present.
    Exists(String),
    /// `!key`: the label is absent.
    Absent(String),
    /// `key=v`, `key==v`, `key in (a,b)`: present with one of the values.
    In(String, Vec<String>),
    /// `key!=v`, `key notin (a,b)`: absent, or present with none of the values.
    NotIn(String, Vec<String>),
}

impl LabelRequirement {
    fn matches(&self, labels: &BTreeMap<String, String>) -> bool {
        match self {
            LabelRequirement::Exists(key) => labels.contains_key(key),
            LabelRequirement::Absent(key) => !labels.contains_key(key),
            LabelRequirement::In(key, values) => labels
                .get(key)
                .is_some_and(|value| values.iter().any(|candidate| candidate == value)),
            LabelRequirement::NotIn(key, values) => labels
                .get(key)
                .is_none_or(|value| values.iter().all(|candidate| candidate != value)),
        }
    }
}

/// The values of `(a,b)` (the text after the opening parenthesis), or None when the list is
/// not closed.
fn set_values(rest: &str) -> Option<Vec<String>> {
    let inner = rest.strip_suffix(')')?;
    Some(
        inner
            .split(',')
            .map(|value| value.trim().to_owned())
            .collect(),
    )
}

/// Parses a `label_selector` as CC does (`key`, `!key`, `key=v`, `key==v`, `key!=v`,
/// `key in (a,b)`, `key notin (a,b)`, comma-joined).
fn parse_label_selector(value: &str) -> Result<Vec<LabelRequirement>, ApiError> {
    let invalid = || ApiError::bad_query("Invalid label_selector value");
    let requirements = split_requirements(value);
    if requirements.is_empty() {
        return Err(ApiError::bad_query("Missing label_selector value"));
    }
    if requirements.len() > MAX_LABEL_REQUIREMENTS {
        return Err(ApiError::bad_query(format!(
            "Too many label_selector requirements (maximum is {MAX_LABEL_REQUIREMENTS})"
        )));
    }
    let key_ok = |key: &str| {
        !key.is_empty()
            && key.len() <= 316
            && key
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.' | '/'))
    };
    let checked = |key: &str| {
        if key_ok(key) {
            Ok(key.to_owned())
        } else {
            Err(invalid())
        }
    };
    let mut parsed = Vec::new();
    for requirement in requirements {
        let requirement = requirement.as_str();
        let parsed_requirement = if let Some((key, rest)) = requirement.split_once(" notin (") {
            LabelRequirement::NotIn(checked(key)?, set_values(rest).ok_or_else(invalid)?)
        } else if let Some((key, rest)) = requirement.split_once(" in (") {
            LabelRequirement::In(checked(key)?, set_values(rest).ok_or_else(invalid)?)
        } else if let Some((key, value)) = requirement.split_once("!=") {
            LabelRequirement::NotIn(checked(key)?, vec![value.to_owned()])
        } else if let Some((key, value)) = requirement.split_once("==") {
            LabelRequirement::In(checked(key)?, vec![value.to_owned()])
        } else if let Some((key, value)) = requirement.split_once('=') {
            LabelRequirement::In(checked(key)?, vec![value.to_owned()])
        } else if let Some(key) = requirement.strip_prefix('!') {
            LabelRequirement::Absent(checked(key)?)
        } else {
            LabelRequirement::Exists(checked(requirement)?)
        };
        parsed.push(parsed_requirement);
    }
    Ok(parsed)
}

/// Splits a selector on the commas outside parentheses (CC's `REQUIREMENT_SPLITTER`).
fn split_requirements(value: &str) -> Vec<String> {
    let mut requirements = Vec::new();
    let mut current = String::new();
    let mut depth = 0usize;
    for character in value.chars() {
        match character {
            '(' => depth += 1,
            ')' => depth = depth.saturating_sub(1),
            ',' if depth == 0 => {
                if !current.is_empty() {
                    requirements.push(std::mem::take(&mut current));
                }
                continue;
            }
            _ => {}
        }
        current.push(character);
    }
    if !current.is_empty() {
        requirements.push(current);
    }
    requirements
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
        let detail = |query: &str| parse(query).unwrap_err().detail;
        assert_eq!(
            detail("per_page=0"),
            "The query parameter is invalid: Per page must be a positive integer"
        );
        assert_eq!(
            detail("per_page=-3"),
            "The query parameter is invalid: Per page must be a positive integer"
        );
        assert_eq!(
            detail("per_page=99999999999"),
            "The query parameter is invalid: Per page must be between 1 and 5000"
        );
    }

    #[test]
    fn label_selectors_are_parsed_and_match_unlabelled_resources() {
        let selects = |selector: &str| {
            let pairs = vec![("label_selector".to_owned(), selector.to_owned())];
            ListQuery::from_pairs(pairs, &["label_selector"], &[])
                .map(|query| !query.matches_labels(&BTreeMap::new()))
        };
        assert!(selects("env").unwrap());
        assert!(selects("env=prod").unwrap());
        assert!(selects("env==prod,!tier").unwrap());
        assert!(selects("env in (prod,dev)").unwrap());
        assert!(!selects("!env").unwrap());
        assert!(!selects("env!=prod,tier notin (a,b)").unwrap());
        assert!(selects("").is_err());
        assert!(selects("bad key").is_err());
        assert!(selects("env in (a").is_err());
        let (page, pagination) = ListQuery::from_pairs(
            vec![("label_selector".to_owned(), "env=prod".to_owned())],
            &["label_selector"],
            &[],
        )
        .unwrap()
        .page_of(vec![1, 2], "http://api", "/v3/x");
        assert!(page.is_empty());
        assert_eq!(pagination["total_results"], 0);
    }

    #[test]
    fn label_selectors_match_labels() {
        let matches = |selector: &str, labels: &[(&str, &str)]| {
            let pairs = vec![("label_selector".to_owned(), selector.to_owned())];
            let labels: BTreeMap<String, String> = labels
                .iter()
                .map(|(key, value)| ((*key).to_owned(), (*value).to_owned()))
                .collect();
            ListQuery::from_pairs(pairs, &["label_selector"], &[])
                .unwrap()
                .matches_labels(&labels)
        };
        let prod = [("env", "prod"), ("example.com/tier", "web")];
        assert!(matches("env", &prod));
        assert!(!matches("!env", &prod));
        assert!(matches("env=prod,example.com/tier==web", &prod));
        assert!(!matches("env=prod,example.com/tier=db", &prod));
        assert!(matches("env in (dev, prod)", &prod));
        assert!(!matches("env notin (dev,prod)", &prod));
        assert!(matches("env notin (dev)", &prod));
        assert!(matches("env!=dev", &prod));
        assert!(!matches("env!=prod", &prod));
        assert!(matches("other!=x,!other", &prod));
        assert!(matches("empty=", &[("empty", "")]));
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
