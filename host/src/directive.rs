//! The directive language: `_retrieve list` and `_retrieve query <name>`,
//! as written in pipelined query languages.

use std::fmt;

/// A parsed directive.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Directive {
    /// `_retrieve list`: every store.
    List,
    /// `_retrieve query <name>`: one store's objects.
    Query {
        /// The store.
        store: String,
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

/// A word of the directive and the column it starts at.
struct Word<'a> {
    text: &'a str,
    column: usize,
}

fn words(input: &str) -> Vec<Word<'_>> {
    let mut words = Vec::new();
    let mut start = None;
    for (i, c) in input.char_indices().chain([(input.len(), ' ')]) {
        match (c.is_whitespace(), start) {
            (false, None) => start = Some(i),
            (true, Some(s)) => {
                words.push(Word {
                    text: &input[s..i],
                    column: input[..s].chars().count() + 1,
                });
                start = None;
            }
            _ => {}
        }
    }
    words
}

/// Parses a directive.
pub fn parse(input: &str) -> Result<Directive, ParseError> {
    let words = words(input);
    let end = input.chars().count() + 1;
    let error = |at: Option<&Word<'_>>, expected: &str| ParseError {
        input: input.to_string(),
        column: at.map_or(end, |w| w.column),
        expected: expected.into(),
        found: at.map_or_else(
            || "the end of the directive".into(),
            |w| format!("`{}`", w.text),
        ),
    };
    let mut words = words.iter();
    match words.next() {
        Some(w) if w.text == "_retrieve" => {}
        other => return Err(error(other, "`_retrieve`")),
    }
    let directive = match words.next() {
        Some(w) if w.text == "list" => Directive::List,
        Some(w) if w.text == "query" => match words.next() {
            Some(name) if !name.text.starts_with('_') && name.text != "|" => Directive::Query {
                store: name.text.to_string(),
            },
            other => return Err(error(other, "a store name after `_retrieve query`")),
        },
        other => return Err(error(other, "`list` or `query`")),
    };
    match words.next() {
        None => Ok(directive),
        Some(extra) => Err(error(Some(extra), "the end of the directive")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_both_directives() {
        assert_eq!(parse("_retrieve list"), Ok(Directive::List));
        assert_eq!(
            parse("  _retrieve   query feed1 "),
            Ok(Directive::Query {
                store: "feed1".into()
            })
        );
    }

    #[test]
    fn errors_point_at_the_column_and_say_what_was_expected() {
        let cases = [
            ("", 1, "`_retrieve`", "the end of the directive"),
            ("retrieve list", 1, "`_retrieve`", "`retrieve`"),
            (
                "_retrieve",
                10,
                "`list` or `query`",
                "the end of the directive",
            ),
            ("_retrieve lsit", 11, "`list` or `query`", "`lsit`"),
            (
                "_retrieve query",
                16,
                "a store name after `_retrieve query`",
                "the end of the directive",
            ),
            (
                "_retrieve query | x",
                17,
                "a store name after `_retrieve query`",
                "`|`",
            ),
            (
                "_retrieve list now",
                16,
                "the end of the directive",
                "`now`",
            ),
        ];
        for (input, column, expected, found) in cases {
            let e = parse(input).unwrap_err();
            assert_eq!(
                (e.column, e.expected.as_str(), e.found.as_str()),
                (column, expected, found),
                "{input:?}"
            );
        }
        let shown = parse("_retrieve lsit").unwrap_err().to_string();
        assert!(
            shown.ends_with("\n  _retrieve lsit\n            ^"),
            "{shown}"
        );
    }
}
