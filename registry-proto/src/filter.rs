//! The go-bexpr filter language of Consul's `?filter=` query parameter.
//!
//! This module owns parsing and evaluating filter expressions against the JSON output shape
//! of one result item (a `ServiceNode`, a `CheckServiceNode`, an `AgentService`, ...).
//!
//! Grammar (`website/content/api-docs/features/filtering.mdx`):
//!
//! - match expressions: `<Selector> == <Value>`, `!=`, `<Selector> is empty`,
//!   `is not empty`, `<Value> in <Selector>`, `<Value> not in <Selector>`,
//!   `<Selector> contains <Value>`, `not contains`, `<Selector> matches <Value>` (a
//!   regular expression), `not matches`;
//! - combined with `and`, `or`, `not` and parentheses (`and` binds tighter than `or`);
//! - selectors are dotted paths (`Service.Meta.env`), with `["key"]` for map keys that are not
//!   identifiers (`Meta["external-source"]`);
//! - values are double-quoted strings (with Go escapes), backtick raw strings, numbers, or bare
//!   words; all are compared as text after coercion to the selected field's JSON type, as
//!   bexpr coerces to the Go field type (`ServicePort == 80`, `EnableTagOverride == true`).
//!
//! Evaluation follows bexpr: an array met in the middle of a selector means "any element"
//! (`Checks.Status == "critical"` holds when some check is critical; the operator, negated or
//! not, is applied per element); a missing map key makes `==`, `in`, `contains`, `matches` and
//! `is not empty` false and their negations (and `is empty`) true. An empty filter matches
//! everything.

use crate::ProtoError;
use regex::{Regex, RegexBuilder};
use serde::Serialize;
use serde_json::Value;

/// Prefix of every parse error, as Consul words it.
pub const FILTER_ERROR_PREFIX: &str = "Failed to create boolean expression evaluator: ";

/// Deepest nesting of parentheses and `not` accepted.
const MAX_DEPTH: usize = 64;

/// Largest compiled regular expression accepted, in bytes.
const REGEX_SIZE_LIMIT: usize = 1 << 20;

/// A compiled filter expression.
#[derive(Debug, Clone)]
pub struct Filter {
    source: String,
    expr: Option<Expr>,
}

#[derive(Debug, Clone)]
enum Expr {
    Not(Box<Expr>),
    And(Box<Expr>, Box<Expr>),
    Or(Box<Expr>, Box<Expr>),
    Match(MatchExpr),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Op {
    Equal,
    NotEqual,
    IsEmpty,
    IsNotEmpty,
    In,
    NotIn,
    Matches,
    NotMatches,
}

impl Op {
    /// Result for a selector that names nothing.
    fn when_missing(self) -> bool {
        matches!(
            self,
            Op::NotEqual | Op::IsEmpty | Op::NotIn | Op::NotMatches
        )
    }
}

#[derive(Debug, Clone)]
struct MatchExpr {
    selector: Vec<String>,
    op: Op,
    value: String,
    regex: Option<Regex>,
}

impl Filter {
    /// A filter that matches everything (what an empty `?filter=` means).
    pub fn match_all() -> Filter {
        Filter {
            source: String::new(),
            expr: None,
        }
    }

    /// Parses a filter expression; an empty or blank one matches everything.
    pub fn parse(source: &str) -> Result<Filter, ProtoError> {
        if source.trim().is_empty() {
            return Ok(Filter::match_all());
        }
        let mut p = Parser {
            src: source,
            pos: 0,
            depth: 0,
        };
        let expr = p.parse_input()?;
        Ok(Filter {
            source: source.to_string(),
            expr: Some(expr),
        })
    }

    /// The expression text.
    pub fn source(&self) -> &str {
        &self.source
    }

    /// Whether the filter matches everything.
    pub fn is_match_all(&self) -> bool {
        self.expr.is_none()
    }

    /// Evaluates the filter against the JSON form of one item.
    pub fn matches(&self, item: &Value) -> bool {
        match &self.expr {
            None => true,
            Some(e) => eval(e, item),
        }
    }

    /// Evaluates the filter against an item's serialized form (false if it cannot be
    /// serialized).
    pub fn matches_item<T: Serialize>(&self, item: &T) -> bool {
        if self.expr.is_none() {
            return true;
        }
        serde_json::to_value(item)
            .map(|v| self.matches(&v))
            .unwrap_or(false)
    }

    /// Keeps the items the filter matches.
    pub fn apply<T: Serialize>(&self, items: Vec<T>) -> Vec<T> {
        if self.expr.is_none() {
            return items;
        }
        items
            .into_iter()
            .filter(|item| self.matches_item(item))
            .collect()
    }
}

impl std::str::FromStr for Filter {
    type Err = ProtoError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Filter::parse(s)
    }
}

// ---------------------------------------------------------------------------------------
// Parsing
// ---------------------------------------------------------------------------------------

struct Parser<'a> {
    src: &'a str,
    pos: usize,
    depth: usize,
}

fn is_ident_start(c: char) -> bool {
    c.is_ascii_alphabetic() || c == '_'
}

fn is_ident_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || c == '_' || c == '/' || c == '-'
}

/// An operand before the operator: either a selector or a literal value.
enum Operand {
    Selector { path: Vec<String>, raw: String },
    Literal(String),
}

impl<'a> Parser<'a> {
    fn error(&self, msg: impl std::fmt::Display) -> ProtoError {
        ProtoError::Invalid(format!(
            "{FILTER_ERROR_PREFIX}at position {}: {msg}",
            self.pos + 1
        ))
    }

    fn rest(&self) -> &'a str {
        self.src.get(self.pos..).unwrap_or("")
    }

    fn peek(&self) -> Option<char> {
        self.rest().chars().next()
    }

    fn bump(&mut self) -> Option<char> {
        let c = self.peek()?;
        self.pos += c.len_utf8();
        Some(c)
    }

    fn skip_ws(&mut self) -> bool {
        let start = self.pos;
        while self.peek().is_some_and(char::is_whitespace) {
            self.bump();
        }
        self.pos > start
    }

    /// Whether the keyword `kw` is at the cursor (followed by a non-identifier character).
    fn at_keyword(&self, kw: &str) -> bool {
        let rest = self.rest();
        rest.starts_with(kw)
            && !rest
                .get(kw.len()..)
                .and_then(|r| r.chars().next())
                .is_some_and(is_ident_char)
    }

    fn eat_keyword(&mut self, kw: &str) -> bool {
        if self.at_keyword(kw) {
            self.pos += kw.len();
            true
        } else {
            false
        }
    }

    /// Consumes whitespace then `kw`; restores the cursor when `kw` is not there.
    fn eat_ws_keyword(&mut self, kw: &str) -> bool {
        let save = self.pos;
        self.skip_ws();
        if self.eat_keyword(kw) {
            true
        } else {
            self.pos = save;
            false
        }
    }

    fn parse_input(&mut self) -> Result<Expr, ProtoError> {
        self.skip_ws();
        let expr = self.parse_or()?;
        self.skip_ws();
        if self.pos < self.src.len() {
            return Err(self.error(format!("unexpected input {:?}", truncate(self.rest()))));
        }
        Ok(expr)
    }

    fn parse_or(&mut self) -> Result<Expr, ProtoError> {
        let mut left = self.parse_and()?;
        while self.eat_ws_keyword("or") {
            self.skip_ws();
            let right = self.parse_and()?;
            left = Expr::Or(Box::new(left), Box::new(right));
        }
        Ok(left)
    }

    fn parse_and(&mut self) -> Result<Expr, ProtoError> {
        let mut left = self.parse_not()?;
        while self.eat_ws_keyword("and") {
            self.skip_ws();
            let right = self.parse_not()?;
            left = Expr::And(Box::new(left), Box::new(right));
        }
        Ok(left)
    }

    fn enter(&mut self) -> Result<(), ProtoError> {
        self.depth += 1;
        if self.depth > MAX_DEPTH {
            Err(self.error("expression nested too deeply"))
        } else {
            Ok(())
        }
    }

    fn parse_not(&mut self) -> Result<Expr, ProtoError> {
        let save = self.pos;
        if self.eat_keyword("not") {
            let had_ws = self.skip_ws();
            // `not` is unary only when followed by an operand; `not` alone could be a selector.
            if had_ws || self.peek() == Some('(') {
                self.enter()?;
                let inner = self.parse_not()?;
                self.depth -= 1;
                return Ok(Expr::Not(Box::new(inner)));
            }
            self.pos = save;
        }
        self.parse_primary()
    }

    fn parse_primary(&mut self) -> Result<Expr, ProtoError> {
        if self.peek() == Some('(') {
            self.bump();
            self.enter()?;
            self.skip_ws();
            let inner = self.parse_or()?;
            self.skip_ws();
            if self.bump() != Some(')') {
                return Err(self.error("unmatched parentheses"));
            }
            self.depth -= 1;
            return Ok(inner);
        }
        self.parse_match().map(Expr::Match)
    }

    fn parse_match(&mut self) -> Result<MatchExpr, ProtoError> {
        let operand = self.parse_operand()?;
        let after_operand = self.pos;
        self.skip_ws();
        // `<Value> in <Selector>` and `<Value> not in <Selector>`.
        let in_op = if self.eat_keyword("in") {
            Some(Op::In)
        } else {
            let save = self.pos;
            if self.eat_keyword("not") && self.skip_ws() && self.eat_keyword("in") {
                Some(Op::NotIn)
            } else {
                self.pos = save;
                None
            }
        };
        if let Some(op) = in_op {
            let value = match operand {
                Operand::Selector { raw, .. } => raw,
                Operand::Literal(v) => v,
            };
            if !self.skip_ws() && !matches!(self.peek(), Some('"' | '`')) {
                return Err(self.error("expected whitespace before the selector"));
            }
            let selector = self.parse_selector()?;
            return Ok(MatchExpr {
                selector,
                op,
                value,
                regex: None,
            });
        }
        let selector = match operand {
            Operand::Selector { path, .. } => path,
            Operand::Literal(_) => {
                self.pos = after_operand;
                return Err(self.error("expected \"in\" or \"not in\" after a value"));
            }
        };
        if self.rest().starts_with("==") || self.rest().starts_with("!=") {
            let op = if self.rest().starts_with("==") {
                Op::Equal
            } else {
                Op::NotEqual
            };
            self.pos += 2;
            self.skip_ws();
            let value = self.parse_value()?;
            return Ok(MatchExpr {
                selector,
                op,
                value,
                regex: None,
            });
        }
        if self.eat_keyword("is") {
            self.skip_ws();
            let op = if self.eat_keyword("empty") {
                Op::IsEmpty
            } else if self.eat_keyword("not") && self.skip_ws() && self.eat_keyword("empty") {
                Op::IsNotEmpty
            } else {
                return Err(self.error("expected \"empty\" or \"not empty\" after \"is\""));
            };
            return Ok(MatchExpr {
                selector,
                op,
                value: String::new(),
                regex: None,
            });
        }
        let save = self.pos;
        let negated = self.eat_keyword("not") && self.skip_ws();
        if !negated {
            self.pos = save;
        }
        let op = if self.eat_keyword("contains") {
            if negated {
                Op::NotIn
            } else {
                Op::In
            }
        } else if self.eat_keyword("matches") {
            if negated {
                Op::NotMatches
            } else {
                Op::Matches
            }
        } else {
            return Err(self.error(format!(
                "expected an operator (==, !=, is empty, is not empty, in, not in, contains, \
                 not contains, matches, not matches), found {:?}",
                truncate(self.rest())
            )));
        };
        if !self.skip_ws() && !matches!(self.peek(), Some('"' | '`')) {
            return Err(self.error("expected whitespace before the value"));
        }
        let value = self.parse_value()?;
        let regex = if matches!(op, Op::Matches | Op::NotMatches) {
            let re = RegexBuilder::new(&value)
                .size_limit(REGEX_SIZE_LIMIT)
                .build()
                .map_err(|e| {
                    self.error(format!(
                        "Failed to compile regular expression {value:?}: {e}"
                    ))
                })?;
            Some(re)
        } else {
            None
        };
        Ok(MatchExpr {
            selector,
            op,
            value,
            regex,
        })
    }

    fn parse_operand(&mut self) -> Result<Operand, ProtoError> {
        match self.peek() {
            Some('"') | Some('`') => self.parse_string().map(Operand::Literal),
            Some(c) if c == '-' || c.is_ascii_digit() => self.parse_number().map(Operand::Literal),
            Some(c) if is_ident_start(c) => {
                let start = self.pos;
                let path = self.parse_selector()?;
                let raw = self.src.get(start..self.pos).unwrap_or("").to_string();
                Ok(Operand::Selector { path, raw })
            }
            Some(c) => Err(self.error(format!("unexpected character {c:?}"))),
            None => Err(self.error("unexpected end of expression")),
        }
    }

    fn parse_value(&mut self) -> Result<String, ProtoError> {
        match self.peek() {
            Some('"') | Some('`') => self.parse_string(),
            Some(c) if c == '-' || c.is_ascii_digit() => self.parse_number(),
            Some(c) if is_ident_start(c) => {
                let start = self.pos;
                self.parse_selector()?;
                Ok(self.src.get(start..self.pos).unwrap_or("").to_string())
            }
            Some(c) => Err(self.error(format!("expected a value, found {c:?}"))),
            None => Err(self.error("expected a value, found the end of the expression")),
        }
    }

    fn parse_identifier(&mut self) -> Result<String, ProtoError> {
        let start = self.pos;
        match self.peek() {
            Some(c) if is_ident_start(c) => {
                self.bump();
            }
            _ => return Err(self.error("expected an identifier")),
        }
        while self.peek().is_some_and(is_ident_char) {
            self.bump();
        }
        Ok(self.src.get(start..self.pos).unwrap_or("").to_string())
    }

    fn parse_selector(&mut self) -> Result<Vec<String>, ProtoError> {
        let mut path = vec![self.parse_identifier()?];
        loop {
            match self.peek() {
                Some('.') => {
                    self.bump();
                    if self.peek().is_some_and(|c| c.is_ascii_digit()) {
                        let start = self.pos;
                        while self.peek().is_some_and(|c| c.is_ascii_digit()) {
                            self.bump();
                        }
                        path.push(self.src.get(start..self.pos).unwrap_or("").to_string());
                    } else {
                        path.push(self.parse_identifier()?);
                    }
                }
                Some('[') => {
                    self.bump();
                    self.skip_ws();
                    if !matches!(self.peek(), Some('"' | '`')) {
                        return Err(self.error("expected a quoted key inside [ ]"));
                    }
                    let key = self.parse_string()?;
                    self.skip_ws();
                    if self.bump() != Some(']') {
                        return Err(self.error("expected ]"));
                    }
                    path.push(key);
                }
                _ => return Ok(path),
            }
        }
    }

    fn parse_number(&mut self) -> Result<String, ProtoError> {
        let start = self.pos;
        if self.peek() == Some('-') {
            self.bump();
        }
        let digits_start = self.pos;
        while self.peek().is_some_and(|c| c.is_ascii_digit()) {
            self.bump();
        }
        if self.pos == digits_start {
            return Err(self.error("expected a number"));
        }
        if self.peek() == Some('.') {
            self.bump();
            while self.peek().is_some_and(|c| c.is_ascii_digit()) {
                self.bump();
            }
        }
        if matches!(self.peek(), Some('e' | 'E')) {
            self.bump();
            if matches!(self.peek(), Some('+' | '-')) {
                self.bump();
            }
            let exp_start = self.pos;
            while self.peek().is_some_and(|c| c.is_ascii_digit()) {
                self.bump();
            }
            if self.pos == exp_start {
                return Err(self.error("malformed number"));
            }
        }
        if self.peek().is_some_and(|c| is_ident_char(c) || c == '.') {
            return Err(self.error("malformed number"));
        }
        Ok(self.src.get(start..self.pos).unwrap_or("").to_string())
    }

    fn parse_string(&mut self) -> Result<String, ProtoError> {
        match self.bump() {
            Some('`') => {
                let start = self.pos;
                loop {
                    match self.bump() {
                        Some('`') => {
                            let end = self.pos - 1;
                            return Ok(self.src.get(start..end).unwrap_or("").to_string());
                        }
                        Some(_) => {}
                        None => return Err(self.error("unterminated raw string")),
                    }
                }
            }
            Some('"') => {
                let mut out = String::new();
                loop {
                    match self.bump() {
                        Some('"') => return Ok(out),
                        Some('\\') => out.push(self.parse_escape()?),
                        Some('\n') => return Err(self.error("newline in string")),
                        Some(c) => out.push(c),
                        None => return Err(self.error("unterminated string")),
                    }
                }
            }
            _ => Err(self.error("expected a string")),
        }
    }

    fn parse_hex(&mut self, len: usize) -> Result<char, ProtoError> {
        let mut v: u32 = 0;
        for _ in 0..len {
            let d = self
                .bump()
                .and_then(|c| c.to_digit(16))
                .ok_or_else(|| self.error("invalid escape sequence"))?;
            v = v * 16 + d;
        }
        char::from_u32(v).ok_or_else(|| self.error("invalid escape sequence"))
    }

    fn parse_escape(&mut self) -> Result<char, ProtoError> {
        Ok(match self.bump() {
            Some('"') => '"',
            Some('\\') => '\\',
            Some('\'') => '\'',
            Some('/') => '/',
            Some('n') => '\n',
            Some('t') => '\t',
            Some('r') => '\r',
            Some('a') => '\u{7}',
            Some('b') => '\u{8}',
            Some('f') => '\u{c}',
            Some('v') => '\u{b}',
            Some('x') => self.parse_hex(2)?,
            Some('u') => self.parse_hex(4)?,
            Some('U') => self.parse_hex(8)?,
            _ => return Err(self.error("invalid escape sequence")),
        })
    }
}

fn truncate(s: &str) -> String {
    s.chars().take(20).collect()
}

// ---------------------------------------------------------------------------------------
// Evaluation
// ---------------------------------------------------------------------------------------

fn eval(expr: &Expr, item: &Value) -> bool {
    match expr {
        Expr::Not(e) => !eval(e, item),
        Expr::And(a, b) => eval(a, item) && eval(b, item),
        Expr::Or(a, b) => eval(a, item) || eval(b, item),
        Expr::Match(m) => eval_path(m, item, 0),
    }
}

fn eval_path(m: &MatchExpr, value: &Value, depth: usize) -> bool {
    let Some(segment) = m.selector.get(depth) else {
        return eval_leaf(m, value);
    };
    match value {
        Value::Object(map) => match map.get(segment) {
            Some(v) => eval_path(m, v, depth + 1),
            None => m.op.when_missing(),
        },
        Value::Array(items) => match segment.parse::<usize>() {
            Ok(i) => match items.get(i) {
                Some(v) => eval_path(m, v, depth + 1),
                None => m.op.when_missing(),
            },
            // An array in the middle of a selector: any element may satisfy the match.
            Err(_) => items.iter().any(|item| eval_path(m, item, depth)),
        },
        _ => m.op.when_missing(),
    }
}

fn eval_leaf(m: &MatchExpr, value: &Value) -> bool {
    match (value, m.op) {
        (Value::Null, op) => op.when_missing(),
        (Value::Array(items), Op::Equal | Op::NotEqual | Op::Matches | Op::NotMatches) => {
            items.iter().any(|item| eval_leaf(m, item))
        }
        (v, Op::Equal) => equals(v, &m.value),
        (v, Op::NotEqual) => !equals(v, &m.value),
        (v, Op::In) => contains(v, &m.value),
        (v, Op::NotIn) => !contains(v, &m.value),
        (v, Op::IsEmpty) => is_empty(v),
        (v, Op::IsNotEmpty) => !is_empty(v),
        (v, Op::Matches) => regex_matches(m, v),
        (v, Op::NotMatches) => !regex_matches(m, v),
    }
}

/// Go's `strconv.ParseBool`.
fn parse_go_bool(s: &str) -> Option<bool> {
    match s {
        "1" | "t" | "T" | "TRUE" | "true" | "True" => Some(true),
        "0" | "f" | "F" | "FALSE" | "false" | "False" => Some(false),
        _ => None,
    }
}

fn equals(value: &Value, raw: &str) -> bool {
    match value {
        Value::String(s) => s == raw,
        Value::Bool(b) => parse_go_bool(raw) == Some(*b),
        Value::Number(n) => {
            if let (Some(u), Ok(r)) = (n.as_u64(), raw.parse::<u64>()) {
                return r == u;
            }
            if let (Some(i), Ok(r)) = (n.as_i64(), raw.parse::<i64>()) {
                return r == i;
            }
            match (n.as_f64(), raw.parse::<f64>()) {
                (Some(f), Ok(r)) => f == r,
                _ => false,
            }
        }
        Value::Null | Value::Array(_) | Value::Object(_) => false,
    }
}

fn contains(value: &Value, raw: &str) -> bool {
    match value {
        Value::String(s) => s.contains(raw),
        Value::Array(items) => items.iter().any(|item| equals(item, raw)),
        Value::Object(map) => map.contains_key(raw),
        _ => false,
    }
}

fn is_empty(value: &Value) -> bool {
    match value {
        Value::Null => true,
        Value::String(s) => s.is_empty(),
        Value::Array(a) => a.is_empty(),
        Value::Object(o) => o.is_empty(),
        Value::Bool(_) | Value::Number(_) => false,
    }
}

fn regex_matches(m: &MatchExpr, value: &Value) -> bool {
    match (value, &m.regex) {
        (Value::String(s), Some(re)) => re.is_match(s),
        _ => false,
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use serde_json::json;

    fn service_node() -> Value {
        json!({
            "ID": "40e4a748-2192-161a-0510-9bf59fe950b5",
            "Node": "node-1",
            "Address": "10.0.0.1",
            "Datacenter": "dc1",
            "TaggedAddresses": {"lan": "10.0.0.1"},
            "NodeMeta": {"rack": "r1", "external-source": "kubernetes"},
            "ServiceKind": "",
            "ServiceID": "web-1",
            "ServiceName": "web",
            "ServiceTags": ["primary", "v1", "k8s"],
            "ServiceAddress": "",
            "ServiceWeights": {"Passing": 1, "Warning": 1},
            "ServiceMeta": {"env": "prod", "version": "1.2.3"},
            "ServicePort": 8080,
            "ServiceEnableTagOverride": false,
            "ServiceLocality": null,
            "CreateIndex": 10,
            "ModifyIndex": 12
        })
    }

    fn check_service_node() -> Value {
        json!({
            "Node": {"Node": "node-1", "Address": "10.0.0.1", "Meta": {"rack": "r1"}},
            "Service": {"ID": "redis", "Service": "redis", "Tags": ["primary"], "Port": 6379,
                        "Meta": {"redis_version": "4.0"}},
            "Checks": [
                {"CheckID": "serfHealth", "Status": "passing", "ServiceTags": []},
                {"CheckID": "service:redis", "Status": "critical", "ServiceTags": ["primary"]}
            ]
        })
    }

    fn check(expr: &str, item: &Value) -> bool {
        Filter::parse(expr)
            .unwrap_or_else(|e| panic!("{expr}: {e}"))
            .matches(item)
    }

    #[test]
    fn equality() {
        let v = service_node();
        assert!(check(r#"ServiceName == "web""#, &v));
        assert!(check(r#"ServiceName=="web""#, &v));
        assert!(!check(r#"ServiceName == "db""#, &v));
        assert!(check(r#"ServiceName != "db""#, &v));
        assert!(!check(r#"ServiceName != "web""#, &v));
        assert!(check("ServiceName == web", &v));
        assert!(check("ServiceName == `web`", &v));
        assert!(check("ServicePort == 8080", &v));
        assert!(check(r#"ServicePort == "8080""#, &v));
        assert!(!check("ServicePort == 80", &v));
        assert!(check("ServicePort != 80", &v));
        assert!(!check("ServicePort == abc", &v));
        assert!(check("ServiceEnableTagOverride == false", &v));
        assert!(check("ServiceEnableTagOverride == F", &v));
        assert!(!check("ServiceEnableTagOverride == true", &v));
        assert!(check("ServiceWeights.Passing == 1", &v));
        assert!(check("ServiceWeights.Passing == 1.0", &v));
    }

    #[test]
    fn map_selectors() {
        let v = service_node();
        assert!(check(r#"ServiceMeta.env == "prod""#, &v));
        assert!(check(r#"ServiceMeta["env"] == "prod""#, &v));
        assert!(check(r#"NodeMeta["external-source"] == "kubernetes""#, &v));
        assert!(check(r#"NodeMeta.external-source == kubernetes"#, &v));
        assert!(check(r#"ServiceMeta[ `version` ] matches "^1\\.""#, &v));
        // Missing map keys.
        assert!(!check(r#"ServiceMeta.missing == "x""#, &v));
        assert!(check(r#"ServiceMeta.missing != "x""#, &v));
        assert!(check("ServiceMeta.missing is empty", &v));
        assert!(!check("ServiceMeta.missing is not empty", &v));
        assert!(!check(r#""x" in ServiceMeta.missing"#, &v));
        assert!(check(r#""x" not in ServiceMeta.missing"#, &v));
        assert!(!check(r#"ServiceMeta.missing matches ".*""#, &v));
        assert!(check(r#"ServiceMeta.missing not matches ".*""#, &v));
    }

    #[test]
    fn emptiness() {
        let v = service_node();
        assert!(check("ServiceAddress is empty", &v));
        assert!(!check("ServiceAddress is not empty", &v));
        assert!(check("Address is not empty", &v));
        assert!(check("ServiceTags is not empty", &v));
        assert!(check("ServiceMeta is not empty", &v));
        assert!(check("ServiceLocality is empty", &v));
        assert!(check("ServiceKind is empty", &v));
        assert!(!check("ServicePort is empty", &v));
        assert!(check("ServicePort is not empty", &v));
        let e = json!({"Tags": [], "Meta": {}});
        assert!(check("Tags is empty", &e));
        assert!(check("Meta is empty", &e));
    }

    #[test]
    fn membership() {
        let v = service_node();
        assert!(check(r#""k8s" in ServiceTags"#, &v));
        assert!(check("k8s in ServiceTags", &v));
        assert!(!check(r#""db" in ServiceTags"#, &v));
        assert!(check(r#""db" not in ServiceTags"#, &v));
        assert!(!check(r#""k8s" not in ServiceTags"#, &v));
        assert!(check(r#"ServiceTags contains "v1""#, &v));
        assert!(!check(r#"ServiceTags contains "v2""#, &v));
        assert!(check(r#"ServiceTags not contains "v2""#, &v));
        assert!(!check(r#"ServiceTags not contains "v1""#, &v));
        // Maps: key membership.
        assert!(check(r#""env" in ServiceMeta"#, &v));
        assert!(!check(r#""prod" in ServiceMeta"#, &v));
        assert!(check(r#"ServiceMeta contains "version""#, &v));
        // Strings: substring.
        assert!(check(r#""10.0" in Address"#, &v));
        assert!(check(r#"Node contains "ode""#, &v));
        assert!(check(r#"Node not contains "xyz""#, &v));
    }

    #[test]
    fn regex_matching() {
        let v = service_node();
        assert!(check(r#"ServiceName matches "^w.b$""#, &v));
        assert!(!check(r#"ServiceName matches "^db""#, &v));
        assert!(check(r#"ServiceName not matches "^db""#, &v));
        assert!(!check(r#"ServiceName not matches "we""#, &v));
        assert!(check(r#"ServiceTags matches "^k8""#, &v));
        assert!(!check(r#"ServicePort matches "80""#, &v));
    }

    #[test]
    fn boolean_logic() {
        let v = service_node();
        assert!(check(r#"ServiceName == web and ServicePort == 8080"#, &v));
        assert!(!check(r#"ServiceName == web and ServicePort == 80"#, &v));
        assert!(check(r#"ServiceName == db or ServicePort == 8080"#, &v));
        assert!(!check(r#"ServiceName == db or ServicePort == 80"#, &v));
        assert!(check(r#"not ServiceName == db"#, &v));
        assert!(check(r#"not (ServiceName == db)"#, &v));
        assert!(check(r#"not(ServiceName == db)"#, &v));
        assert!(!check(r#"not not ServiceName == db"#, &v));
        // and binds tighter than or.
        assert!(check(
            r#"ServiceName == web or ServiceName == db and ServicePort == 1"#,
            &v
        ));
        assert!(!check(
            r#"(ServiceName == web or ServiceName == db) and ServicePort == 1"#,
            &v
        ));
        assert!(check(
            r#"( "k8s" in ServiceTags ) and (ServiceMeta.env == prod or ServiceMeta.env == dev)"#,
            &v
        ));
    }

    #[test]
    fn arrays_in_paths_mean_any() {
        let v = check_service_node();
        assert!(check(r#"Checks.Status == "critical""#, &v));
        assert!(check(r#"Checks.Status == "passing""#, &v));
        assert!(!check(r#"Checks.Status == "warning""#, &v));
        assert!(check(r#"Checks.Status != "passing""#, &v));
        assert!(check(r#"Checks.CheckID == serfHealth"#, &v));
        assert!(check(r#""primary" in Checks.ServiceTags"#, &v));
        assert!(check(r#"Checks.ServiceTags is empty"#, &v));
        assert!(check(r#"Checks.0.CheckID == serfHealth"#, &v));
        assert!(!check(r#"Checks.5.CheckID == serfHealth"#, &v));
        assert!(check(r#"Service.Meta.redis_version == "4.0""#, &v));
        assert!(check(
            r#"Node.Meta.rack == r1 and Service.Port == 6379"#,
            &v
        ));
        let none = json!({"Checks": []});
        assert!(!check(r#"Checks.Status == "passing""#, &none));
        assert!(!check(r#"Checks.Status != "passing""#, &none));
    }

    #[test]
    fn strings_and_escapes() {
        let v = json!({"Name": "a\"b\\c\nd", "Raw": "x\\ny"});
        assert!(check(r#"Name == "a\"b\\c\nd""#, &v));
        assert!(check(r#"Raw == `x\ny`"#, &v));
        assert!(check(r#"Name == "a\u0022b\\c\x0ad""#, &v));
    }

    #[test]
    fn empty_filter_matches_all() {
        let f = Filter::parse("   ").unwrap();
        assert!(f.is_match_all());
        assert!(f.matches(&json!(null)));
        assert_eq!(f.apply(vec![1, 2, 3]), vec![1, 2, 3]);
    }

    #[test]
    fn apply_filters_items() {
        #[derive(Serialize, Debug, PartialEq)]
        struct S {
            #[serde(rename = "Tags")]
            tags: Vec<&'static str>,
        }
        let f = Filter::parse(r#""k8s" in Tags"#).unwrap();
        let out = f.apply(vec![S { tags: vec!["k8s"] }, S { tags: vec![] }]);
        assert_eq!(out, vec![S { tags: vec!["k8s"] }]);
        assert_eq!(f.source(), r#""k8s" in Tags"#);
    }

    #[test]
    fn parse_errors() {
        for bad in [
            "ServiceName",
            "ServiceName ==",
            "ServiceName = web",
            "== web",
            r#""web" == ServiceName"#,
            "(ServiceName == web",
            "ServiceName == web)",
            "ServiceName == web and",
            "ServiceName is full",
            r#"ServiceName matches "(""#,
            r#"ServiceName == "unterminated"#,
            "ServiceName == `unterminated",
            "Meta[env] == x",
            "Port == 80abc",
            "a == b c",
            "not",
            r#"x in"#,
            "Name == \"\\q\"",
        ] {
            let err = Filter::parse(bad).expect_err(bad).to_string();
            assert!(err.starts_with(FILTER_ERROR_PREFIX), "{bad}: {err}");
        }
        let deep = format!("{}a == b{}", "(".repeat(100), ")".repeat(100));
        assert!(Filter::parse(&deep).is_err());
        let deep_not = format!("{}a == b", "not ".repeat(100));
        assert!(Filter::parse(&deep_not).is_err());
        let ok = format!("{}a == b{}", "(".repeat(10), ")".repeat(10));
        assert!(Filter::parse(&ok).is_ok());
    }

    fn arb_json() -> impl Strategy<Value = Value> {
        let leaf = prop_oneof![
            Just(Value::Null),
            any::<bool>().prop_map(Value::Bool),
            any::<i64>().prop_map(Value::from),
            "[a-z0-9]{0,4}".prop_map(Value::String),
        ];
        leaf.prop_recursive(4, 32, 4, |inner| {
            prop_oneof![
                prop::collection::vec(inner.clone(), 0..4).prop_map(Value::Array),
                prop::collection::btree_map("[A-Ca-c]{1,2}", inner, 0..4)
                    .prop_map(|m| Value::Object(m.into_iter().collect())),
            ]
        })
    }

    proptest! {
        #[test]
        fn parse_never_panics(s in "\\PC{0,40}") {
            let _ = Filter::parse(&s);
        }

        #[test]
        fn parse_never_panics_on_grammar_soup(
            parts in prop::collection::vec(prop_oneof![
                Just("A"), Just("B.c"), Just("a[\"k\"]"), Just("=="), Just("!="), Just("is"),
                Just("not"), Just("empty"), Just("in"), Just("contains"), Just("matches"),
                Just("and"), Just("or"), Just("("), Just(")"), Just("\"v\""), Just("`r`"),
                Just("12"), Just("-1.5"), Just("\"[\""), Just(" "),
            ], 0..12)
        ) {
            let s = parts.join(" ");
            if let Ok(f) = Filter::parse(&s) {
                let _ = f.matches(&json!({"A": [1, "v"], "B": {"c": "v"}, "a": {"k": null}}));
            }
        }

        #[test]
        fn evaluation_never_panics(v in arb_json(), expr in prop_oneof![
            Just("a == 1"), Just("a.b != x"), Just("\"x\" in a.b"), Just("a.0.b is empty"),
            Just("A.c matches \"^[0-9]\""), Just("not (b contains 1 or c is not empty)"),
        ]) {
            let f = Filter::parse(expr).unwrap();
            let _ = f.matches(&v);
        }

        #[test]
        fn not_is_negation(v in arb_json(), expr in prop_oneof![
            Just("a == 1"), Just("a.b != x"), Just("\"x\" in a.b"), Just("a is empty"),
        ]) {
            let f = Filter::parse(expr).unwrap();
            let g = Filter::parse(&format!("not ({expr})")).unwrap();
            prop_assert_eq!(f.matches(&v), !g.matches(&v));
        }
    }
}
