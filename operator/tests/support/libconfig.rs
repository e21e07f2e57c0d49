//! A small parser for libconfig syntax (what the Primus provider reads `primus.cfg` with), so
//! tests assert on the structure the provider will see, not on the text's formatting.
//!
//! Supported: settings `name = value;` or `name : value;` (the `;`/`,` terminator is optional),
//! groups `{ ... }`, arrays `[ ... ]`, lists `( ... )`, strings (adjacent ones concatenate,
//! `\"`, `\\`, `\n`, `\t` escapes), integers (decimal, hex, optional `L`/`LL`), floats, booleans,
//! and `#`, `//`, `/* */` comments. Names: `[A-Za-z*][-A-Za-z0-9_*]*`.

#[derive(Clone, Debug, PartialEq)]
pub enum Value {
    Str(String),
    Int(i64),
    Float(f64),
    Bool(bool),
    Group(Vec<(String, Value)>),
    /// An array or a list.
    List(Vec<Value>),
}

impl Value {
    /// The setting at a dotted path (`hsms.hsm0.slots.slot0.id`) below this group.
    pub fn get(&self, path: &str) -> Option<&Value> {
        path.split('.').try_fold(self, |v, name| match v {
            Value::Group(entries) => entries.iter().find(|(n, _)| n == name).map(|(_, v)| v),
            _ => None,
        })
    }

    pub fn as_str(&self) -> Option<&str> {
        match self {
            Value::Str(s) => Some(s),
            _ => None,
        }
    }

    pub fn as_int(&self) -> Option<i64> {
        match self {
            Value::Int(i) => Some(*i),
            _ => None,
        }
    }

    /// A group's entries in file order.
    pub fn entries(&self) -> Option<&[(String, Value)]> {
        match self {
            Value::Group(e) => Some(e),
            _ => None,
        }
    }
}

/// Parses a whole configuration (the top level is an implicit group).
pub fn parse(text: &str) -> Result<Value, String> {
    let mut p = Parser {
        s: text.as_bytes(),
        i: 0,
    };
    let entries = p.settings(None)?;
    Ok(Value::Group(entries))
}

struct Parser<'a> {
    s: &'a [u8],
    i: usize,
}

impl Parser<'_> {
    fn err<T>(&self, what: &str) -> Result<T, String> {
        let line = self.s[..self.i.min(self.s.len())]
            .iter()
            .filter(|&&b| b == b'\n')
            .count()
            + 1;
        Err(format!("libconfig: {what} at line {line}"))
    }

    fn skip_ws(&mut self) {
        loop {
            while self.i < self.s.len() && self.s[self.i].is_ascii_whitespace() {
                self.i += 1;
            }
            let rest = &self.s[self.i..];
            if rest.starts_with(b"#") || rest.starts_with(b"//") {
                while self.i < self.s.len() && self.s[self.i] != b'\n' {
                    self.i += 1;
                }
            } else if rest.starts_with(b"/*") {
                match rest.windows(2).position(|w| w == b"*/") {
                    Some(end) => self.i += end + 2,
                    None => self.i = self.s.len(),
                }
            } else {
                return;
            }
        }
    }

    fn peek(&mut self) -> Option<u8> {
        self.skip_ws();
        self.s.get(self.i).copied()
    }

    /// Settings until `close` (or the end of input when `None`).
    fn settings(&mut self, close: Option<u8>) -> Result<Vec<(String, Value)>, String> {
        let mut out = Vec::new();
        loop {
            match self.peek() {
                None if close.is_none() => return Ok(out),
                None => return self.err("unexpected end of input in a group"),
                Some(c) if Some(c) == close => {
                    self.i += 1;
                    return Ok(out);
                }
                Some(_) => {}
            }
            let name = self.name()?;
            match self.peek() {
                Some(b'=') | Some(b':') => self.i += 1,
                _ => return self.err(&format!("expected '=' or ':' after {name:?}")),
            }
            let value = self.value()?;
            if let Some(b';') | Some(b',') = self.peek() {
                self.i += 1;
            }
            if out.iter().any(|(n, _)| n == &name) {
                return self.err(&format!("duplicate setting {name:?}"));
            }
            out.push((name, value));
        }
    }

    fn name(&mut self) -> Result<String, String> {
        let start = self.i;
        while self.i < self.s.len() {
            let c = self.s[self.i];
            let ok = c.is_ascii_alphabetic()
                || c == b'*'
                || (self.i > start && (c.is_ascii_digit() || c == b'-' || c == b'_'));
            if !ok {
                break;
            }
            self.i += 1;
        }
        if self.i == start {
            return self.err("expected a setting name");
        }
        Ok(String::from_utf8_lossy(&self.s[start..self.i]).into_owned())
    }

    fn value(&mut self) -> Result<Value, String> {
        match self.peek() {
            Some(b'{') => {
                self.i += 1;
                Ok(Value::Group(self.settings(Some(b'}'))?))
            }
            Some(open @ (b'[' | b'(')) => {
                self.i += 1;
                let close = if open == b'[' { b']' } else { b')' };
                let mut items = Vec::new();
                loop {
                    if self.peek() == Some(close) {
                        self.i += 1;
                        return Ok(Value::List(items));
                    }
                    items.push(self.value()?);
                    match self.peek() {
                        Some(b',') => self.i += 1,
                        Some(c) if c == close => {}
                        _ => return self.err("expected ',' or the end of a list"),
                    }
                }
            }
            Some(b'"') => {
                let mut s = String::new();
                while self.peek() == Some(b'"') {
                    s.push_str(&self.string()?);
                }
                Ok(Value::Str(s))
            }
            Some(_) => self.scalar(),
            None => self.err("expected a value"),
        }
    }

    fn string(&mut self) -> Result<String, String> {
        self.i += 1; // opening quote
        let mut bytes = Vec::new();
        while self.i < self.s.len() {
            let c = self.s[self.i];
            self.i += 1;
            match c {
                b'"' => return Ok(String::from_utf8_lossy(&bytes).into_owned()),
                b'\\' => {
                    let e = *self.s.get(self.i).ok_or("libconfig: unterminated escape")?;
                    self.i += 1;
                    bytes.push(match e {
                        b'n' => b'\n',
                        b't' => b'\t',
                        b'r' => b'\r',
                        b'f' => 0x0c,
                        other => other,
                    });
                }
                other => bytes.push(other),
            }
        }
        self.err("unterminated string")
    }

    fn scalar(&mut self) -> Result<Value, String> {
        let start = self.i;
        while self.i < self.s.len() && !b" \t\r\n;,)]}#/".contains(&self.s[self.i]) {
            self.i += 1;
        }
        let tok = String::from_utf8_lossy(&self.s[start..self.i]).into_owned();
        let lower = tok.to_ascii_lowercase();
        if lower == "true" || lower == "false" {
            return Ok(Value::Bool(lower == "true"));
        }
        let int = lower.trim_end_matches('l');
        if let Some(hex) = int.strip_prefix("0x") {
            return i64::from_str_radix(hex, 16)
                .map(Value::Int)
                .or_else(|_| self.err(&format!("bad hex {tok:?}")));
        }
        if let Ok(i) = int.parse::<i64>() {
            return Ok(Value::Int(i));
        }
        if let Ok(f) = tok.parse::<f64>() {
            return Ok(Value::Float(f));
        }
        self.err(&format!("bad value {tok:?}"))
    }
}
