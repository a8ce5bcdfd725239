//! A small EDN reader: just enough of the format for Jepsen histories.

use std::fmt;

/// An EDN value as read from text. Maps remember the line they start on.
#[derive(Clone, Debug, PartialEq)]
pub(super) enum Edn {
    Nil,
    Bool(bool),
    Int(i64),
    Float(f64),
    Str(String),
    Char(char),
    Keyword(String),
    Symbol(String),
    List(Vec<Edn>),
    Vector(Vec<Edn>),
    Set(Vec<Edn>),
    Map(Vec<(Edn, Edn)>, usize),
    Tagged(String, Box<Edn>),
}

impl fmt::Display for Edn {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fn seq(f: &mut fmt::Formatter<'_>, open: &str, items: &[Edn], close: &str) -> fmt::Result {
            f.write_str(open)?;
            for (i, x) in items.iter().enumerate() {
                if i > 0 {
                    f.write_str(" ")?;
                }
                write!(f, "{x}")?;
            }
            f.write_str(close)
        }
        match self {
            Edn::Nil => f.write_str("nil"),
            Edn::Bool(b) => write!(f, "{b}"),
            Edn::Int(i) => write!(f, "{i}"),
            Edn::Float(x) => write!(f, "{x:?}"),
            Edn::Str(s) => write_edn_string(f, s),
            Edn::Char(c) => write!(f, "\\{c}"),
            Edn::Keyword(k) => write!(f, ":{k}"),
            Edn::Symbol(s) => f.write_str(s),
            Edn::List(v) => seq(f, "(", v, ")"),
            Edn::Vector(v) => seq(f, "[", v, "]"),
            Edn::Set(v) => seq(f, "#{", v, "}"),
            Edn::Map(entries, _) => {
                f.write_str("{")?;
                for (i, (k, v)) in entries.iter().enumerate() {
                    if i > 0 {
                        f.write_str(", ")?;
                    }
                    write!(f, "{k} {v}")?;
                }
                f.write_str("}")
            }
            Edn::Tagged(t, v) => write!(f, "#{t} {v}"),
        }
    }
}

/// Error from the EDN reader: (1-based line, message).
pub(super) type EdnError = (usize, String);

/// Deeper nesting is an error, so hostile input cannot overflow the stack.
const MAX_NESTING_DEPTH: usize = 128;

pub(super) struct EdnReader<'a> {
    text: &'a str,
    bytes: &'a [u8],
    pos: usize,
    line: usize,
}

fn is_delimiter(b: u8) -> bool {
    b.is_ascii_whitespace() || matches!(b, b',' | b'(' | b')' | b'[' | b']' | b'{' | b'}' | b'"' | b';')
}

fn valid_symbol(token: &str) -> bool {
    !token.is_empty()
        && !token.starts_with(['#', ':', '\''])
        && token.chars().all(|c| {
            c.is_alphanumeric()
                || matches!(
                    c,
                    '.' | '*'
                        | '+'
                        | '!'
                        | '-'
                        | '_'
                        | '?'
                        | '$'
                        | '%'
                        | '&'
                        | '='
                        | '<'
                        | '>'
                        | '/'
                        | ':'
                        | '#'
                        | '\''
                )
        })
}

impl<'a> EdnReader<'a> {
    pub(super) fn new(text: &'a str, first_line: usize) -> Self {
        EdnReader { text, bytes: text.as_bytes(), pos: 0, line: first_line }
    }

    fn err<T>(&self, message: impl Into<String>) -> Result<T, EdnError> {
        Err((self.line, message.into()))
    }

    /// Skips whitespace, commas and `;` comments. Returns false at end of input.
    pub(super) fn skip_whitespace(&mut self) -> bool {
        while self.pos < self.bytes.len() {
            match self.bytes[self.pos] {
                b'\n' => {
                    self.line += 1;
                    self.pos += 1;
                }
                b',' => self.pos += 1,
                b';' => {
                    while self.pos < self.bytes.len() && self.bytes[self.pos] != b'\n' {
                        self.pos += 1;
                    }
                }
                b if b.is_ascii_whitespace() => self.pos += 1,
                _ => return true,
            }
        }
        false
    }

    /// Reads the next form, or `None` at end of input.
    /// The line the reader is on (1-based, counting from `first_line`).
    pub(super) fn line(&self) -> usize {
        self.line
    }

    pub(super) fn next_form(&mut self) -> Result<Option<Edn>, EdnError> {
        if !self.skip_whitespace() {
            return Ok(None);
        }
        self.read_form(0).map(Some)
    }

    fn read_form(&mut self, depth: usize) -> Result<Edn, EdnError> {
        if depth > MAX_NESTING_DEPTH {
            return self.err("nesting too deep");
        }
        if !self.skip_whitespace() {
            return self.err("unexpected end of input");
        }
        let start_line = self.line;
        let b = self.bytes[self.pos];
        match b {
            b'(' => {
                self.pos += 1;
                Ok(Edn::List(self.read_seq(b')', depth)?))
            }
            b'[' => {
                self.pos += 1;
                Ok(Edn::Vector(self.read_seq(b']', depth)?))
            }
            b'{' => {
                self.pos += 1;
                self.read_map(start_line, depth)
            }
            b')' | b']' | b'}' => self.err(format!("unexpected '{}'", b as char)),
            b'"' => {
                self.pos += 1;
                self.read_string().map(Edn::Str)
            }
            b'\\' => {
                self.pos += 1;
                self.read_char()
            }
            b'#' => {
                self.pos += 1;
                self.read_dispatch(depth)
            }
            b':' => {
                self.pos += 1;
                let token = self.read_token();
                if !valid_symbol(token) {
                    return self.err(format!("invalid keyword ':{token}'"));
                }
                Ok(Edn::Keyword(token.to_string()))
            }
            _ => {
                let token = self.read_token();
                if token.is_empty() {
                    // A byte that cannot start a form (e.g. a stray quote char).
                    let c = self.text[self.pos..].chars().next().unwrap_or('?');
                    return self.err(format!("unexpected character '{c}'"));
                }
                self.parse_atom(token)
            }
        }
    }

    /// A map, after its `{`; keys must be distinct.
    fn read_map(&mut self, start_line: usize, depth: usize) -> Result<Edn, EdnError> {
        let items = self.read_seq(b'}', depth)?;
        if items.len() % 2 != 0 {
            return Err((start_line, "map literal has an odd number of forms".into()));
        }
        let mut entries: Vec<(Edn, Edn)> = Vec::with_capacity(items.len() / 2);
        let mut forms = items.into_iter();
        while let (Some(key), Some(value)) = (forms.next(), forms.next()) {
            if entries.iter().any(|(existing_key, _)| *existing_key == key) {
                return Err((start_line, format!("duplicate map key {key}")));
            }
            entries.push((key, value));
        }
        Ok(Edn::Map(entries, start_line))
    }

    /// What follows a `#`: a set, a discarded form, or a tagged form.
    fn read_dispatch(&mut self, depth: usize) -> Result<Edn, EdnError> {
        match self.bytes.get(self.pos) {
            Some(b'{') => {
                self.pos += 1;
                Ok(Edn::Set(self.read_seq(b'}', depth)?))
            }
            Some(b'_') => {
                self.pos += 1;
                self.read_form(depth + 1)?; // discarded
                self.read_form(depth)
            }
            Some(c) if c.is_ascii_alphabetic() => {
                let tag = self.read_token();
                let v = self.read_form(depth + 1)?;
                Ok(Edn::Tagged(tag.to_string(), Box::new(v)))
            }
            _ => self.err("unsupported dispatch character after '#'"),
        }
    }

    fn read_seq(&mut self, close: u8, depth: usize) -> Result<Vec<Edn>, EdnError> {
        let open_line = self.line;
        let mut items = Vec::new();
        loop {
            if !self.skip_whitespace() {
                return Err((open_line, format!("unterminated collection (missing '{}')", close as char)));
            }
            if self.bytes[self.pos] == close {
                self.pos += 1;
                return Ok(items);
            }
            items.push(self.read_form(depth + 1)?);
        }
    }

    fn read_token(&mut self) -> &'a str {
        let start = self.pos;
        while self.pos < self.bytes.len() && !is_delimiter(self.bytes[self.pos]) {
            self.pos += 1;
        }
        &self.text[start..self.pos]
    }

    fn read_string(&mut self) -> Result<String, EdnError> {
        let start_line = self.line;
        let mut out = String::new();
        let mut run = self.pos;
        loop {
            let Some(&b) = self.bytes.get(self.pos) else {
                return Err((start_line, "unterminated string".into()));
            };
            match b {
                b'"' => {
                    out.push_str(&self.text[run..self.pos]);
                    self.pos += 1;
                    return Ok(out);
                }
                b'\\' => {
                    out.push_str(&self.text[run..self.pos]);
                    self.pos += 1;
                    let Some(&e) = self.bytes.get(self.pos) else {
                        return Err((start_line, "unterminated string".into()));
                    };
                    self.pos += 1;
                    match e {
                        b'"' => out.push('"'),
                        b'\\' => out.push('\\'),
                        b'n' => out.push('\n'),
                        b't' => out.push('\t'),
                        b'r' => out.push('\r'),
                        b'b' => out.push('\u{8}'),
                        b'f' => out.push('\u{c}'),
                        b'u' => {
                            let hex = self.text.get(self.pos..self.pos + 4).unwrap_or("");
                            let code = if hex.len() == 4 && hex.bytes().all(|h| h.is_ascii_hexdigit()) {
                                u32::from_str_radix(hex, 16).ok()
                            } else {
                                None
                            };
                            match code.and_then(char::from_u32) {
                                Some(c) => {
                                    out.push(c);
                                    self.pos += 4;
                                }
                                None => return self.err("invalid \\u escape in string"),
                            }
                        }
                        other => {
                            let c = self.text[self.pos - 1..].chars().next().unwrap_or(other as char);
                            return self.err(format!("invalid escape '\\{c}' in string"));
                        }
                    }
                    run = self.pos;
                }
                b'\n' => {
                    self.line += 1;
                    self.pos += 1;
                }
                _ => self.pos += 1,
            }
        }
    }

    fn read_char(&mut self) -> Result<Edn, EdnError> {
        // A character literal: \c, \newline, \space, \tab, \return, \uXXXX.
        let rest = &self.text[self.pos..];
        let Some(first) = rest.chars().next() else {
            return self.err("unexpected end of input after '\\'");
        };
        self.pos += first.len_utf8();
        let more = self.read_token();
        if more.is_empty() {
            return Ok(Edn::Char(first));
        }
        let name = format!("{first}{more}");
        let c = match name.as_str() {
            "newline" => '\n',
            "space" => ' ',
            "tab" => '\t',
            "return" => '\r',
            "backspace" => '\u{8}',
            "formfeed" => '\u{c}',
            n if n.len() == 5 && n.starts_with('u') => {
                match u32::from_str_radix(&n[1..], 16).ok().and_then(char::from_u32) {
                    Some(c) => c,
                    None => return self.err(format!("invalid character literal \\{n}")),
                }
            }
            n => return self.err(format!("invalid character literal \\{n}")),
        };
        Ok(Edn::Char(c))
    }

    fn parse_atom(&self, token: &str) -> Result<Edn, EdnError> {
        match token {
            "nil" => return Ok(Edn::Nil),
            "true" => return Ok(Edn::Bool(true)),
            "false" => return Ok(Edn::Bool(false)),
            _ => {}
        }
        let b = token.as_bytes();
        let numeric = b[0].is_ascii_digit() || ((b[0] == b'-' || b[0] == b'+') && b.len() > 1 && b[1].is_ascii_digit());
        if numeric {
            let digits = token.strip_suffix('N').unwrap_or(token);
            let unsigned = digits.strip_prefix(['+', '-']).unwrap_or(digits);
            if !unsigned.is_empty() && unsigned.bytes().all(|c| c.is_ascii_digit()) {
                return match digits.strip_prefix('+').unwrap_or(digits).parse::<i64>() {
                    Ok(i) => Ok(Edn::Int(i)),
                    Err(_) => self.err(format!("integer {token} out of range")),
                };
            }
            let float = token.strip_suffix('M').unwrap_or(token);
            let float_ok = float.bytes().all(|c| c.is_ascii_digit() || matches!(c, b'.' | b'e' | b'E' | b'+' | b'-'));
            return match (float_ok, float.parse::<f64>()) {
                (true, Ok(x)) => Ok(Edn::Float(x)),
                _ => self.err(format!("invalid number '{token}'")),
            };
        }
        if !valid_symbol(token) {
            return self.err(format!("invalid token '{token}'"));
        }
        Ok(Edn::Symbol(token.to_string()))
    }
}

// ---------------------------------------------------------------------------
// Building operations from history lines

pub(super) fn write_edn_string(f: &mut impl fmt::Write, s: &str) -> fmt::Result {
    f.write_char('"')?;
    for c in s.chars() {
        match c {
            '"' => f.write_str("\\\"")?,
            '\\' => f.write_str("\\\\")?,
            '\n' => f.write_str("\\n")?,
            '\r' => f.write_str("\\r")?,
            '\t' => f.write_str("\\t")?,
            '\u{8}' => f.write_str("\\b")?,
            '\u{c}' => f.write_str("\\f")?,
            c if (c as u32) < 0x20 || c == '\u{7f}' => write!(f, "\\u{:04x}", c as u32)?,
            c => f.write_char(c)?,
        }
    }
    f.write_char('"')
}

// ---------------------------------------------------------------------------

#[cfg(test)]
pub(super) fn keyword(name: &str) -> Edn {
    Edn::Keyword(name.to_string())
}

/// The value under the keyword `:name` in a map's entries.
pub(super) fn field<'e>(entries: &'e [(Edn, Edn)], name: &str) -> Option<&'e Edn> {
    entries.iter().find(|(k, _)| matches!(k, Edn::Keyword(n) if n == name)).map(|(_, v)| v)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn edn_reader_basics() {
        let mut r = EdnReader::new(
            r#"{:a 1, :b [nil true false -3 +4 5N 1.5], "s\"\n\u0041" #{:x} (x y) \c, #_ 7 :z :w ; comment
            }"#,
            1,
        );
        let v = r.next_form().unwrap().unwrap();
        let Edn::Map(entries, line) = v else { panic!("not a map") };
        assert_eq!(line, 1);
        assert_eq!(field(&entries, "a"), Some(&Edn::Int(1)));
        assert_eq!(
            field(&entries, "b"),
            Some(&Edn::Vector(vec![
                Edn::Nil,
                Edn::Bool(true),
                Edn::Bool(false),
                Edn::Int(-3),
                Edn::Int(4),
                Edn::Int(5),
                Edn::Float(1.5)
            ]))
        );
        assert_eq!(entries[2], (Edn::Str("s\"\nA".into()), Edn::Set(vec![keyword("x")])));
        assert_eq!(entries[3].0, Edn::List(vec![Edn::Symbol("x".into()), Edn::Symbol("y".into())]));
        assert_eq!(entries[3].1, Edn::Char('c'));
        assert_eq!(entries[4], (keyword("z"), keyword("w")));
        assert_eq!(entries.len(), 5);
        assert!(r.next_form().unwrap().is_none());
    }

    #[test]
    fn edn_reader_rejects_malformed() {
        for (text, line) in [
            ("{:a 1", 1),
            ("{:a 1 :b}", 1),
            ("\n\n{:a \"unterminated}", 3),
            ("[1 2)", 1),
            (")", 1),
            ("{:a 99999999999999999999}", 1),
            ("{:a 1, :a 2}", 1),
            ("\n{:a \"bad \\q escape\"}", 2),
            ("{: 1}", 1),
            ("{:a 1.2.3}", 1),
            ("{:a @x}", 1),
        ] {
            let mut r = EdnReader::new(text, 1);
            let mut res = Ok(None);
            for _ in 0..10 {
                res = r.next_form();
                if !matches!(res, Ok(Some(_))) {
                    break;
                }
            }
            match res {
                Err((l, _)) => assert_eq!(l, line, "wrong line for {text:?}"),
                Ok(v) => panic!("{text:?} should be rejected, got {v:?}"),
            }
        }
    }
}
