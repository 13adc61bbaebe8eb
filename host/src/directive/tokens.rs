//! Splitting a directive into tokens: words, quoted strings, `|` and
//! operator signs, each with the column it starts at.

/// What a token is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Kind {
    /// Anything else, up to a space, `|`, `"` or an operator sign.
    Word,
    /// `"..."`, without its quotes and escapes.
    Quoted,
    /// `|`.
    Pipe,
    /// A run of `=`, `!`, `<` and `>`.
    Operator,
}

/// A token and the column it starts at.
#[derive(Debug, Clone)]
pub(super) struct Token {
    /// The text (of a quoted string: its content).
    pub text: String,
    /// What it is.
    pub kind: Kind,
    /// 1-based, in characters.
    pub column: usize,
}

impl Token {
    /// Whether it is this word, unquoted.
    pub fn is_word(&self, word: &str) -> bool {
        self.kind == Kind::Word && self.text == word
    }

    /// A value: a word or a quoted string.
    pub fn value(&self) -> Option<&str> {
        matches!(self.kind, Kind::Word | Kind::Quoted).then_some(self.text.as_str())
    }

    /// The token as an error message shows it.
    pub fn shown(&self) -> String {
        match self.kind {
            Kind::Quoted => format!("`{:?}`", self.text),
            _ => format!("`{}`", self.text),
        }
    }
}

fn is_operator_char(c: char) -> bool {
    matches!(c, '=' | '!' | '<' | '>')
}

/// Splits a directive into words, quoted strings, `|` and operator signs.
pub(super) fn tokens(input: &str) -> Result<Vec<Token>, (usize, &'static str)> {
    let chars: Vec<char> = input.chars().collect();
    let mut tokens = Vec::new();
    let mut i = 0;
    while i < chars.len() {
        let start = i;
        let c = chars[i];
        let (kind, text) = if c.is_whitespace() {
            i += 1;
            continue;
        } else if c == '|' {
            i += 1;
            (Kind::Pipe, "|".to_string())
        } else if c == '"' {
            let (text, end) = quoted(&chars, i).ok_or((start + 1, "a closing `\"`"))?;
            i = end;
            (Kind::Quoted, text)
        } else {
            let operator = is_operator_char(c);
            while i < chars.len() {
                let d = chars[i];
                let ends_word = d.is_whitespace() || d == '|' || d == '"';
                if ends_word || is_operator_char(d) != operator {
                    break;
                }
                i += 1;
            }
            let kind = if operator { Kind::Operator } else { Kind::Word };
            (kind, chars[start..i].iter().collect())
        };
        tokens.push(Token {
            text,
            kind,
            column: start + 1,
        });
    }
    Ok(tokens)
}

/// The string opened by the quote at `open`, and the index after it.
fn quoted(chars: &[char], open: usize) -> Option<(String, usize)> {
    let mut text = String::new();
    let mut i = open + 1;
    loop {
        match chars.get(i)? {
            '"' => return Some((text, i + 1)),
            '\\' => {
                text.push(*chars.get(i + 1)?);
                i += 2;
            }
            c => {
                text.push(*c);
                i += 1;
            }
        }
    }
}
