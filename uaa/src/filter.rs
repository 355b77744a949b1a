//! SCIM filter expressions (`userName eq "x" and origin eq "uaa"`): a small parser and an
//! evaluator over attribute values. Attribute names and operators are case-insensitive, as are
//! string comparisons (UAA matches user names without regard to case).
//!
//! Chains of `and`/`or` are kept flat and parentheses may nest only [`MAX_NESTING`] deep, so that
//! neither parsing, evaluating nor dropping a filter recurses deeper than that, whatever a client
//! sends (a long `id eq "a" or id eq "b" or …` chain stays cheap and safe).

/// How deeply parentheses may nest in a filter.
const MAX_NESTING: usize = 32;

/// A parsed filter.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Filter {
    /// All of the operands (at least two).
    And(Vec<Filter>),
    /// Any of the operands (at least two).
    Or(Vec<Filter>),
    /// `attribute op value`; `value` is `None` for `pr` (present).
    Compare {
        attribute: String,
        operator: Operator,
        value: Option<String>,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Operator {
    Eq,
    Ne,
    Co,
    Sw,
    Ew,
    Pr,
    Gt,
    Ge,
    Lt,
    Le,
}

#[derive(Debug, Clone, PartialEq)]
enum Token {
    Word(String),
    Quoted(String),
    Open,
    Close,
}

fn tokenize(input: &str) -> Result<Vec<Token>, String> {
    let mut tokens = Vec::new();
    let mut chars = input.chars().peekable();
    while let Some(&c) = chars.peek() {
        match c {
            c if c.is_whitespace() => {
                chars.next();
            }
            '(' => {
                chars.next();
                tokens.push(Token::Open);
            }
            ')' => {
                chars.next();
                tokens.push(Token::Close);
            }
            '"' => {
                chars.next();
                let mut value = String::new();
                let mut closed = false;
                while let Some(c) = chars.next() {
                    match c {
                        '\\' => match chars.next() {
                            Some(escaped) => value.push(escaped),
                            None => return Err("unterminated escape".to_owned()),
                        },
                        '"' => {
                            closed = true;
                            break;
                        }
                        c => value.push(c),
                    }
                }
                if !closed {
                    return Err("unterminated string".to_owned());
                }
                tokens.push(Token::Quoted(value));
            }
            _ => {
                let mut word = String::new();
                while let Some(&c) = chars.peek() {
                    if c.is_whitespace() || c == '(' || c == ')' || c == '"' {
                        break;
                    }
                    word.push(c);
                    chars.next();
                }
                tokens.push(Token::Word(word));
            }
        }
    }
    Ok(tokens)
}

struct Parser {
    tokens: Vec<Token>,
    position: usize,
    /// Open parentheses around the current position.
    depth: usize,
}

impl Parser {
    fn peek_keyword(&self, keyword: &str) -> bool {
        matches!(self.tokens.get(self.position), Some(Token::Word(word)) if word.eq_ignore_ascii_case(keyword))
    }

    fn next(&mut self) -> Option<Token> {
        let token = self.tokens.get(self.position).cloned();
        self.position += 1;
        token
    }

    fn expression(&mut self) -> Result<Filter, String> {
        let mut operands = vec![self.term()?];
        while self.peek_keyword("or") {
            self.position += 1;
            operands.push(self.term()?);
        }
        Ok(if operands.len() == 1 {
            operands.remove(0)
        } else {
            Filter::Or(operands)
        })
    }

    fn term(&mut self) -> Result<Filter, String> {
        let mut operands = vec![self.factor()?];
        while self.peek_keyword("and") {
            self.position += 1;
            operands.push(self.factor()?);
        }
        Ok(if operands.len() == 1 {
            operands.remove(0)
        } else {
            Filter::And(operands)
        })
    }

    fn factor(&mut self) -> Result<Filter, String> {
        match self.next() {
            Some(Token::Open) => {
                if self.depth >= MAX_NESTING {
                    return Err(format!("parentheses nest deeper than {MAX_NESTING} levels"));
                }
                self.depth += 1;
                let inner = self.expression()?;
                self.depth -= 1;
                match self.next() {
                    Some(Token::Close) => Ok(inner),
                    _ => Err("missing )".to_owned()),
                }
            }
            Some(Token::Word(attribute)) => {
                let operator = match self.next() {
                    Some(Token::Word(operator)) => parse_operator(&operator)?,
                    _ => return Err(format!("missing operator after {attribute}")),
                };
                if operator == Operator::Pr {
                    return Ok(Filter::Compare {
                        attribute,
                        operator,
                        value: None,
                    });
                }
                let value = match self.next() {
                    Some(Token::Quoted(value)) => value,
                    Some(Token::Word(value))
                        if value.eq_ignore_ascii_case("true")
                            || value.eq_ignore_ascii_case("false")
                            || value.parse::<f64>().is_ok() =>
                    {
                        value
                    }
                    _ => return Err(format!("missing value after {attribute}")),
                };
                Ok(Filter::Compare {
                    attribute,
                    operator,
                    value: Some(value),
                })
            }
            _ => Err("expected an attribute or (".to_owned()),
        }
    }
}

fn parse_operator(word: &str) -> Result<Operator, String> {
    Ok(match word.to_ascii_lowercase().as_str() {
        "eq" => Operator::Eq,
        "ne" => Operator::Ne,
        "co" => Operator::Co,
        "sw" => Operator::Sw,
        "ew" => Operator::Ew,
        "pr" => Operator::Pr,
        "gt" => Operator::Gt,
        "ge" => Operator::Ge,
        "lt" => Operator::Lt,
        "le" => Operator::Le,
        other => return Err(format!("unknown operator {other}")),
    })
}

impl Filter {
    /// Parses a SCIM filter; the error names what is wrong.
    pub(crate) fn parse(input: &str) -> Result<Filter, String> {
        let tokens = tokenize(input)?;
        let mut parser = Parser {
            tokens,
            position: 0,
            depth: 0,
        };
        let filter = parser.expression()?;
        if parser.position < parser.tokens.len() {
            return Err("unexpected trailing input".to_owned());
        }
        Ok(filter)
    }

    /// Evaluates against a record; `lookup` gives an attribute's values by lower-cased name
    /// (`None` when the attribute is unknown, which matches nothing).
    pub(crate) fn matches(&self, lookup: &dyn Fn(&str) -> Option<Vec<String>>) -> bool {
        match self {
            Filter::And(operands) => operands.iter().all(|operand| operand.matches(lookup)),
            Filter::Or(operands) => operands.iter().any(|operand| operand.matches(lookup)),
            Filter::Compare {
                attribute,
                operator,
                value,
            } => {
                let values = lookup(&attribute.to_ascii_lowercase()).unwrap_or_default();
                let Some(expected) = value else {
                    return values.iter().any(|value| !value.is_empty());
                };
                let expected = expected.to_lowercase();
                let test = |actual: &String| {
                    let actual = actual.to_lowercase();
                    match operator {
                        Operator::Eq => actual == expected,
                        Operator::Ne => actual != expected,
                        Operator::Co => actual.contains(&expected),
                        Operator::Sw => actual.starts_with(&expected),
                        Operator::Ew => actual.ends_with(&expected),
                        Operator::Gt => actual > expected,
                        Operator::Ge => actual >= expected,
                        Operator::Lt => actual < expected,
                        Operator::Le => actual <= expected,
                        Operator::Pr => true,
                    }
                };
                if *operator == Operator::Ne {
                    values.iter().all(test)
                } else {
                    values.iter().any(test)
                }
            }
        }
    }

    /// Calls `visit` with every comparison in the filter.
    pub(crate) fn for_each_comparison<'a>(&'a self, visit: &mut dyn FnMut(&'a str, Operator)) {
        match self {
            Filter::And(operands) | Filter::Or(operands) => {
                for operand in operands {
                    operand.for_each_comparison(visit);
                }
            }
            Filter::Compare {
                attribute,
                operator,
                ..
            } => visit(attribute, *operator),
        }
    }

    /// Values `attribute eq value` must have for the whole filter to match, when the filter is
    /// a conjunction containing such a comparison (used to narrow the SQL query).
    pub(crate) fn required_equal(&self, attribute: &str) -> Option<String> {
        match self {
            Filter::And(operands) => operands
                .iter()
                .find_map(|operand| operand.required_equal(attribute)),
            Filter::Compare {
                attribute: name,
                operator: Operator::Eq,
                value: Some(value),
            } if name.eq_ignore_ascii_case(attribute) => Some(value.clone()),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lookup(attribute: &str) -> Option<Vec<String>> {
        match attribute {
            "username" => Some(vec!["Alice".to_owned()]),
            "origin" => Some(vec!["uaa".to_owned()]),
            "emails.value" => Some(vec!["alice@example.com".to_owned()]),
            _ => None,
        }
    }

    #[test]
    fn parses_and_evaluates_the_filters_clients_send() {
        let cases = [
            (r#"userName eq "alice""#, true),
            (r#"userName eq "alice" and origin eq "uaa""#, true),
            (r#"USERNAME EQ "alice" AND origin Eq "ldap""#, false),
            (
                r#"userName eq "bob" or (origin eq "uaa" and emails.value co "example")"#,
                true,
            ),
            (r#"id pr"#, false),
            (r#"userName sw "al""#, true),
            (r#"userName eq "al\"ice""#, false),
        ];
        for (input, expected) in cases {
            let filter = Filter::parse(input).unwrap_or_else(|error| panic!("{input}: {error}"));
            assert_eq!(filter.matches(&lookup), expected, "{input}");
        }
    }

    #[test]
    fn rejects_malformed_filters() {
        for input in [
            "",
            "userName",
            r#"userName eq"#,
            r#"userName zz "a""#,
            r#"(userName eq "a""#,
            r#"userName eq "a" x"#,
            r#"userName eq "a"#,
        ] {
            assert!(Filter::parse(input).is_err(), "{input}");
        }
    }

    #[test]
    fn long_chains_are_fine_but_deep_nesting_is_refused() {
        let chain = vec![r#"userName eq "x""#; 5000].join(" or ");
        let filter = Filter::parse(&format!("{chain} or userName eq \"alice\"")).unwrap();
        assert!(filter.matches(&lookup));
        let nested = |depth: usize| {
            format!(
                "{}userName eq \"alice\"{}",
                "(".repeat(depth),
                ")".repeat(depth)
            )
        };
        assert!(Filter::parse(&nested(MAX_NESTING))
            .unwrap()
            .matches(&lookup));
        let error = Filter::parse(&nested(MAX_NESTING + 1)).unwrap_err();
        assert!(error.contains("nest"), "{error}");
        assert!(Filter::parse(&"(".repeat(100_000)).is_err());
    }

    #[test]
    fn finds_equalities_in_conjunctions_only() {
        let filter = Filter::parse(r#"userName eq "x" and origin eq "uaa""#).unwrap();
        assert_eq!(filter.required_equal("username").as_deref(), Some("x"));
        let filter = Filter::parse(r#"userName eq "x" or origin eq "uaa""#).unwrap();
        assert_eq!(filter.required_equal("username"), None);
    }
}
