//! The directive language, as written in pipelined query languages:
//!
//! ```text
//! _retrieve list
//! _retrieve query <store> [| <stage>]...
//! ```
//!
//! Stages that choose what is read from the store come first, each at
//! most once: `_versions last|first|all|<timestamp>[,...]`,
//! `_added_after <timestamp>`, `_include revoked|expired|all[,...]`,
//! `_cursor <cursor>`. Then, any number of times and in any order, the
//! stages each object goes through: `_filter <property> <op> <value>`
//! (`==`, `!=`, `<`, `<=`, `>`, `>=`, `contains`, `in`), `_limit <n>`,
//! `_fields <property>[,...]`. A value with spaces, `|` or an operator
//! sign in it is written in double quotes (`\"` and `\\` inside).
//!
//! A parse error names the column where the directive stops making sense
//! and what was expected there.

use std::fmt;

use self::tokens::{Kind, Token, tokens};
use crate::filter::{Filter, Literal, Op, TIMESTAMP_PROPERTIES};
use crate::query::{Cursor, Include, ObjectQuery, Source, Stage, VersionMatch};

/// A parsed directive.
#[derive(Debug, Clone, PartialEq)]
pub enum Directive {
    /// `_retrieve list`: every store.
    List,
    /// `_retrieve query <name> | ...`: one store's objects.
    Query {
        /// The store.
        store: String,
        /// What to read and how.
        query: ObjectQuery,
    },
}

/// Where a directive stops making sense, and what was expected there.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParseError {
    /// The directive as given.
    pub input: String,
    /// 1-based column of the problem.
    pub column: usize,
    /// What would have been valid there.
    pub expected: String,
    /// What was there.
    pub found: String,
}

impl fmt::Display for ParseError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "column {}: expected {}, found {}",
            self.column, self.expected, self.found
        )?;
        writeln!(f, "  {}", self.input)?;
        write!(f, "  {}^", " ".repeat(self.column.saturating_sub(1)))
    }
}

impl std::error::Error for ParseError {}

const END: &str = "the end of the directive";
const STAGES: &str =
    "a stage: `_filter`, `_limit`, `_fields`, `_versions`, `_added_after`, `_include` or `_cursor`";

/// Parses a directive.
pub fn parse(input: &str) -> Result<Directive, ParseError> {
    let tokens = tokens(input).map_err(|(column, expected)| ParseError {
        input: input.to_string(),
        column,
        expected: expected.into(),
        found: END.into(),
    })?;
    Parser {
        input,
        tokens: &tokens,
        at: 0,
    }
    .directive()
}

/// Parses one filter written as in `_filter` (without the word), as the
/// `--filter` flag takes it: `modified > 2024-01-01`.
pub fn parse_filter(input: &str) -> Result<Filter, ParseError> {
    let tokens = tokens(input).map_err(|(column, expected)| ParseError {
        input: input.to_string(),
        column,
        expected: expected.into(),
        found: END.into(),
    })?;
    let mut parser = Parser {
        input,
        tokens: &tokens,
        at: 0,
    };
    let filter = parser.filter()?;
    match parser.next() {
        None => Ok(filter),
        extra => Err(parser.error(extra, END)),
    }
}

struct Parser<'a> {
    input: &'a str,
    tokens: &'a [Token],
    at: usize,
}

impl<'a> Parser<'a> {
    fn next(&mut self) -> Option<&'a Token> {
        let token = self.tokens.get(self.at)?;
        self.at += 1;
        Some(token)
    }

    fn error(&self, at: Option<&Token>, expected: &str) -> ParseError {
        ParseError {
            input: self.input.to_string(),
            column: at.map_or(self.input.chars().count() + 1, |t| t.column),
            expected: expected.into(),
            found: at.map_or_else(|| END.into(), Token::shown),
        }
    }

    /// An error about one item (the first equal to `bad`) of a
    /// comma-separated token.
    fn item_error(&self, token: &Token, bad: &str, expected: &str) -> ParseError {
        let mut offset = usize::from(token.kind == Kind::Quoted);
        for item in token.text.split(',') {
            if item == bad {
                break;
            }
            offset += item.chars().count() + 1;
        }
        ParseError {
            input: self.input.to_string(),
            column: token.column + offset,
            expected: expected.into(),
            found: if bad.is_empty() {
                "an empty item".into()
            } else {
                format!("`{bad}`")
            },
        }
    }

    fn directive(&mut self) -> Result<Directive, ParseError> {
        match self.next() {
            Some(t) if t.is_word("_retrieve") => {}
            other => return Err(self.error(other, "`_retrieve`")),
        }
        match self.next() {
            Some(t) if t.is_word("list") => match self.next() {
                None => Ok(Directive::List),
                extra => Err(self.error(
                    extra,
                    "the end of the directive (`_retrieve list` takes no stages)",
                )),
            },
            Some(t) if t.is_word("query") => self.query(),
            other => Err(self.error(other, "`list` or `query`")),
        }
    }

    fn query(&mut self) -> Result<Directive, ParseError> {
        let store = match self.next() {
            Some(t) if t.value().is_some_and(is_store_name) => t.text.clone(),
            other => return Err(self.error(other, "a store name after `_retrieve query`")),
        };
        let mut query = ObjectQuery::default();
        loop {
            match self.next() {
                None => return Ok(Directive::Query { store, query }),
                Some(t) if t.kind == Kind::Pipe => self.stage(&mut query)?,
                extra => return Err(self.error(extra, "`|` or the end of the directive")),
            }
        }
    }

    fn stage(&mut self, query: &mut ObjectQuery) -> Result<(), ParseError> {
        let name = match self.next() {
            Some(t) if t.kind == Kind::Word => t,
            other => return Err(self.error(other, STAGES)),
        };
        let source = &mut query.source;
        let before_stages = query.stages.is_empty();
        let stage = match name.text.as_str() {
            "_filter" => Stage::Filter(self.filter()?),
            "_limit" => Stage::Limit(self.limit()?),
            "_fields" => Stage::Fields(self.fields()?),
            "_versions" | "_added_after" | "_include" | "_cursor" => {
                return self.source_stage(name, source, before_stages);
            }
            _ => return Err(self.error(Some(name), STAGES)),
        };
        query.stages.push(stage);
        Ok(())
    }

    fn source_stage(
        &mut self,
        name: &Token,
        source: &mut Source,
        before_stages: bool,
    ) -> Result<(), ParseError> {
        if !before_stages {
            let expected = format!(
                "`_filter`, `_limit` or `_fields` (`{}` chooses what is read, so it comes \
                 before them)",
                name.text
            );
            return Err(self.error(Some(name), &expected));
        }
        let given = match name.text.as_str() {
            "_versions" => source.versions.is_some(),
            "_added_after" => source.added_after.is_some(),
            "_include" => source.include.is_some(),
            _ => source.cursor.is_some(),
        };
        if given {
            let expected = format!("a stage other than `{}` (it is given already)", name.text);
            return Err(self.error(Some(name), &expected));
        }
        let token = match self.next() {
            Some(t) if t.value().is_some() => t,
            other => return Err(self.error(other, &source_expected(&name.text))),
        };
        self.source_value(name, token, source)
    }

    fn source_value(
        &self,
        name: &Token,
        token: &Token,
        source: &mut Source,
    ) -> Result<(), ParseError> {
        let expected = source_expected(&name.text);
        match name.text.as_str() {
            "_versions" => {
                let versions = VersionMatch::parse(&token.text)
                    .map_err(|item| self.item_error(token, &item, &expected))?;
                source.versions = Some(versions);
            }
            "_added_after" => {
                let t = crate::timestamp::canonical_or_date(&token.text)
                    .ok_or_else(|| self.error(Some(token), &expected))?;
                source.added_after = Some(t);
            }
            "_include" => {
                let include = Include::parse(&token.text)
                    .map_err(|item| self.item_error(token, &item, &expected))?;
                source.include = Some(include);
            }
            _ => {
                let cursor = Cursor::decode(&token.text)
                    .ok_or_else(|| self.error(Some(token), &expected))?;
                source.cursor = Some(cursor);
            }
        }
        Ok(())
    }

    fn filter(&mut self) -> Result<Filter, ParseError> {
        let field = match self.next() {
            Some(t) if t.kind == Kind::Word && is_property(&t.text) => t.text.clone(),
            other => return Err(self.error(other, "a property name after `_filter`")),
        };
        let op = match self.next() {
            Some(t) if t.kind != Kind::Quoted && Op::parse(&t.text).is_some() => t,
            other => {
                let expected = format!("an operator: {}", Op::ALL);
                return Err(self.error(other, &expected));
            }
        };
        let operator = Op::parse(&op.text).unwrap_or(Op::Eq);
        let value = match self.next() {
            Some(t) if t.value().is_some() => t,
            other => {
                let expected = format!("a value after `{}`", op.text);
                return Err(self.error(other, &expected));
            }
        };
        let values = if operator == Op::In && value.kind == Kind::Word {
            let expected = "values separated by commas after `in`";
            let items: Vec<&str> = value.text.split(',').collect();
            if items.iter().any(|i| i.is_empty()) {
                return Err(self.item_error(value, "", expected));
            }
            items.into_iter().map(Literal::new).collect()
        } else {
            vec![Literal::new(&value.text)]
        };
        let timestamped = TIMESTAMP_PROPERTIES.contains(&field.as_str()) && operator.orders();
        if timestamped && !values.iter().all(Literal::is_timestamp) {
            let expected = format!(
                "a timestamp after `{field} {}`, such as 2024-01-01 or 2024-01-01T12:00:00Z",
                op.text
            );
            return Err(self.error(Some(value), &expected));
        }
        Ok(Filter {
            field,
            op: operator,
            values,
        })
    }

    fn limit(&mut self) -> Result<u64, ParseError> {
        match self.next() {
            Some(t) if t.kind == Kind::Word && t.text.bytes().all(|b| b.is_ascii_digit()) => t
                .text
                .parse()
                .map_err(|_| self.error(Some(t), "a whole number after `_limit`")),
            other => Err(self.error(other, "a whole number after `_limit`")),
        }
    }

    fn fields(&mut self) -> Result<Vec<String>, ParseError> {
        let expected = "property names separated by commas after `_fields`";
        let token = match self.next() {
            Some(t) if t.value().is_some() => t,
            other => return Err(self.error(other, expected)),
        };
        let mut names = Vec::new();
        for item in token.text.split(',') {
            if !is_property(item) {
                return Err(self.item_error(token, item, expected));
            }
            names.push(item.to_string());
        }
        Ok(names)
    }
}

/// What a source stage takes.
fn source_expected(name: &str) -> String {
    let what = match name {
        "_versions" => VersionMatch::EXPECTED,
        "_added_after" => "a timestamp such as 2024-01-31 or 2024-01-31T12:00:00Z",
        "_include" => Include::EXPECTED,
        _ => Cursor::EXPECTED,
    };
    format!("{what} after `{name}`")
}

/// A top-level STIX property name (custom ones included).
pub fn is_property(text: &str) -> bool {
    !text.is_empty()
        && text
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
}

fn is_store_name(text: &str) -> bool {
    crate::feeds::check_name("store", text).is_ok()
}

mod tokens;

#[cfg(test)]
mod tests;
