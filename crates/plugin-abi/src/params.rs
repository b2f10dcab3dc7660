//! The parameter blob: a flat JSON object of booleans, integers, floats and strings.
//!
//! weightkin passes a metric's recipe `params` table to the plugin as JSON (RFC 8259) bytes.
//! This crate has no dependencies, so it carries this small parser for exactly that subset: one
//! object, no nesting, no `null`. It never panics and never recurses, so any bytes are safe to
//! feed it.

use std::fmt;

/// One parameter value.
#[derive(Debug, Clone, PartialEq)]
pub enum ParamValue {
    /// `true` / `false`.
    Bool(bool),
    /// A JSON number without fraction or exponent that fits `i64`.
    Integer(i64),
    /// Any other JSON number.
    Float(f64),
    /// A string.
    String(String),
}

impl ParamValue {
    fn kind(&self) -> &'static str {
        match self {
            ParamValue::Bool(_) => "a boolean",
            ParamValue::Integer(_) => "an integer",
            ParamValue::Float(_) => "a float",
            ParamValue::String(_) => "a string",
        }
    }
}

/// A metric's parameters, in the order the blob lists them.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Params {
    entries: Vec<(String, ParamValue)>,
}

/// A parameter blob that is not a flat JSON object, or a parameter of the wrong type.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ParamError {
    /// The bytes are not a flat JSON object of scalars.
    Syntax {
        /// Byte offset of the problem.
        offset: usize,
        /// What was expected there.
        expected: &'static str,
    },
    /// A name appears twice.
    Duplicate(String),
    /// A parameter has another type than the one asked for.
    WrongType {
        /// The parameter.
        name: String,
        /// The type asked for.
        expected: &'static str,
        /// The type found.
        found: &'static str,
    },
}

impl fmt::Display for ParamError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ParamError::Syntax { offset, expected } => {
                write!(
                    f,
                    "invalid params JSON at byte {offset}: expected {expected}"
                )
            }
            ParamError::Duplicate(name) => write!(f, "parameter `{name}` given twice"),
            ParamError::WrongType {
                name,
                expected,
                found,
            } => write!(f, "parameter `{name}`: expected {expected}, found {found}"),
        }
    }
}

impl std::error::Error for ParamError {}

impl Params {
    /// Parses a blob. Empty input (no bytes) is an empty object.
    pub fn parse(bytes: &[u8]) -> Result<Params, ParamError> {
        let mut p = Parser { bytes, pos: 0 };
        let mut entries: Vec<(String, ParamValue)> = Vec::new();
        p.skip_ws();
        if p.pos == bytes.len() {
            return Ok(Params { entries });
        }
        p.expect(b'{', "`{`")?;
        p.skip_ws();
        if !p.eat(b'}') {
            loop {
                p.skip_ws();
                let name = p.string()?;
                p.skip_ws();
                p.expect(b':', "`:`")?;
                p.skip_ws();
                let value = p.value()?;
                if entries.iter().any(|(n, _)| *n == name) {
                    return Err(ParamError::Duplicate(name));
                }
                entries.push((name, value));
                p.skip_ws();
                if p.eat(b'}') {
                    break;
                }
                p.expect(b',', "`,` or `}`")?;
            }
        }
        p.skip_ws();
        if p.pos != bytes.len() {
            return Err(p.error("the end of the input"));
        }
        Ok(Params { entries })
    }

    /// The value of `name`, if given.
    pub fn get(&self, name: &str) -> Option<&ParamValue> {
        self.entries.iter().find(|(n, _)| n == name).map(|(_, v)| v)
    }

    /// Every parameter, in blob order.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &ParamValue)> {
        self.entries.iter().map(|(n, v)| (n.as_str(), v))
    }

    /// Whether there are no parameters.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    fn typed<'s, T>(
        &'s self,
        name: &str,
        expected: &'static str,
        pick: impl Fn(&'s ParamValue) -> Option<T>,
    ) -> Result<Option<T>, ParamError> {
        match self.get(name) {
            None => Ok(None),
            Some(v) => pick(v).map(Some).ok_or_else(|| ParamError::WrongType {
                name: name.to_owned(),
                expected,
                found: v.kind(),
            }),
        }
    }

    /// A boolean parameter, if given.
    pub fn bool(&self, name: &str) -> Result<Option<bool>, ParamError> {
        self.typed(name, "a boolean", |v| match v {
            ParamValue::Bool(b) => Some(*b),
            _ => None,
        })
    }

    /// An integer parameter, if given.
    pub fn integer(&self, name: &str) -> Result<Option<i64>, ParamError> {
        self.typed(name, "an integer", |v| match v {
            ParamValue::Integer(i) => Some(*i),
            _ => None,
        })
    }

    /// A number parameter (an integer is accepted and converted), if given.
    pub fn float(&self, name: &str) -> Result<Option<f64>, ParamError> {
        self.typed(name, "a number", |v| match v {
            ParamValue::Float(f) => Some(*f),
            ParamValue::Integer(i) => Some(*i as f64),
            _ => None,
        })
    }

    /// A string parameter, if given.
    pub fn string(&self, name: &str) -> Result<Option<&str>, ParamError> {
        self.typed(name, "a string", |v| match v {
            ParamValue::String(s) => Some(s.as_str()),
            _ => None,
        })
    }
}

struct Parser<'a> {
    bytes: &'a [u8],
    pos: usize,
}

impl Parser<'_> {
    fn error(&self, expected: &'static str) -> ParamError {
        ParamError::Syntax {
            offset: self.pos,
            expected,
        }
    }

    fn peek(&self) -> Option<u8> {
        self.bytes.get(self.pos).copied()
    }

    fn eat(&mut self, b: u8) -> bool {
        if self.peek() == Some(b) {
            self.pos += 1;
            true
        } else {
            false
        }
    }

    fn expect(&mut self, b: u8, what: &'static str) -> Result<(), ParamError> {
        if self.eat(b) {
            Ok(())
        } else {
            Err(self.error(what))
        }
    }

    fn skip_ws(&mut self) {
        while matches!(self.peek(), Some(b' ' | b'\t' | b'\n' | b'\r')) {
            self.pos += 1;
        }
    }

    fn literal(&mut self, word: &[u8]) -> bool {
        if self.bytes[self.pos..].starts_with(word) {
            self.pos += word.len();
            true
        } else {
            false
        }
    }

    fn value(&mut self) -> Result<ParamValue, ParamError> {
        match self.peek() {
            Some(b'"') => self.string().map(ParamValue::String),
            Some(b't') if self.literal(b"true") => Ok(ParamValue::Bool(true)),
            Some(b'f') if self.literal(b"false") => Ok(ParamValue::Bool(false)),
            Some(b'-' | b'0'..=b'9') => self.number(),
            _ => Err(self.error("a boolean, number or string (no null, arrays or objects)")),
        }
    }

    fn number(&mut self) -> Result<ParamValue, ParamError> {
        let start = self.pos;
        let digits = |p: &mut Self| {
            let from = p.pos;
            while matches!(p.peek(), Some(b'0'..=b'9')) {
                p.pos += 1;
            }
            p.pos > from
        };
        self.eat(b'-');
        let int_start = self.pos;
        if !digits(self) {
            return Err(self.error("a digit"));
        }
        // RFC 8259 §6: no leading zeros.
        if self.bytes[int_start] == b'0' && self.pos - int_start > 1 {
            return Err(ParamError::Syntax {
                offset: int_start,
                expected: "a number without leading zeros",
            });
        }
        let mut integral = true;
        if self.eat(b'.') {
            integral = false;
            if !digits(self) {
                return Err(self.error("a digit after `.`"));
            }
        }
        if matches!(self.peek(), Some(b'e' | b'E')) {
            integral = false;
            self.pos += 1;
            if !self.eat(b'+') {
                self.eat(b'-');
            }
            if !digits(self) {
                return Err(self.error("a digit in the exponent"));
            }
        }
        // The slice is ASCII digits, signs, `.` and `e` only.
        let text = std::str::from_utf8(&self.bytes[start..self.pos]).unwrap_or_default();
        if integral {
            if let Ok(i) = text.parse::<i64>() {
                return Ok(ParamValue::Integer(i));
            }
        }
        match text.parse::<f64>() {
            Ok(f) if f.is_finite() => Ok(ParamValue::Float(f)),
            _ => Err(ParamError::Syntax {
                offset: start,
                expected: "a number within f64 range",
            }),
        }
    }

    fn hex4(&mut self) -> Result<u32, ParamError> {
        let mut v = 0u32;
        for _ in 0..4 {
            let d = match self.peek() {
                Some(c @ b'0'..=b'9') => c - b'0',
                Some(c @ b'a'..=b'f') => c - b'a' + 10,
                Some(c @ b'A'..=b'F') => c - b'A' + 10,
                _ => return Err(self.error("four hex digits after `\\u`")),
            };
            v = v * 16 + u32::from(d);
            self.pos += 1;
        }
        Ok(v)
    }

    fn string(&mut self) -> Result<String, ParamError> {
        self.expect(b'"', "`\"`")?;
        let mut out = Vec::new();
        loop {
            let Some(c) = self.peek() else {
                return Err(self.error("a closing `\"`"));
            };
            self.pos += 1;
            match c {
                b'"' => break,
                b'\\' => {
                    let Some(e) = self.peek() else {
                        return Err(self.error("an escape character"));
                    };
                    self.pos += 1;
                    let simple = match e {
                        b'"' => Some(b'"'),
                        b'\\' => Some(b'\\'),
                        b'/' => Some(b'/'),
                        b'b' => Some(8),
                        b'f' => Some(12),
                        b'n' => Some(b'\n'),
                        b'r' => Some(b'\r'),
                        b't' => Some(b'\t'),
                        b'u' => None,
                        _ => {
                            self.pos -= 1;
                            return Err(self
                                .error("a valid escape (\\\" \\\\ \\/ \\b \\f \\n \\r \\t \\u)"));
                        }
                    };
                    if let Some(b) = simple {
                        out.push(b);
                        continue;
                    }
                    let mut cp = self.hex4()?;
                    if (0xD800..0xDC00).contains(&cp) {
                        // A high surrogate must be followed by an escaped low one (§7).
                        if !(self.literal(b"\\u")) {
                            return Err(self.error("a low surrogate escape"));
                        }
                        let low = self.hex4()?;
                        if !(0xDC00..0xE000).contains(&low) {
                            return Err(self.error("a low surrogate (DC00–DFFF)"));
                        }
                        cp = 0x10000 + ((cp - 0xD800) << 10) + (low - 0xDC00);
                    }
                    let Some(ch) = char::from_u32(cp) else {
                        return Err(self.error("a valid code point (lone low surrogate)"));
                    };
                    let mut buf = [0u8; 4];
                    out.extend_from_slice(ch.encode_utf8(&mut buf).as_bytes());
                }
                0..=0x1F => {
                    self.pos -= 1;
                    return Err(self.error("no unescaped control characters in a string"));
                }
                _ => out.push(c),
            }
        }
        String::from_utf8(out).map_err(|_| self.error("UTF-8 text"))
    }
}
