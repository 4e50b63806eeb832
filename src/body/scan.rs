//! A JSON skimmer: checks a document's structure and hands out the raw
//! bytes of the members a caller asks for, without building a tree.
//!
//! Answers can be megabytes of embedding floats of which llmpool needs a
//! few small fields (`usage`, `model`, `choices[0].message`…). Building a
//! `serde_json::Value` of all of it cost ten times the transfer itself, so
//! this module walks the bytes instead and leaves the small fields to
//! serde_json.
//!
//! What it checks: strings (escapes, no raw control characters), literals,
//! objects, arrays, commas and colons, nesting depth, and nothing after the
//! value. Numbers are checked against the JSON grammar everywhere except
//! inside a flat array of numbers (an embedding), whose bytes are only
//! checked to be number characters: that check runs 16 or 32 bytes at a time,
//! and the numbers themselves are checked when read
//! ([`crate::body::embeddings`]).

use std::ops::Range;

/// Deeper nesting is refused, as serde_json does, so a hostile body cannot
/// exhaust the stack.
const MAX_DEPTH: usize = 128;

/// Why a body is not JSON, and where.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NotJson {
    /// Byte offset of the problem.
    pub at: usize,
    pub what: &'static str,
}

impl std::fmt::Display for NotJson {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} at byte {}", self.what, self.at)
    }
}

type Res<T> = Result<T, NotJson>;

/// Checks that `doc` is one JSON value and returns the raw value bytes of
/// the top-level members named in `keys` (the last one wins when a key
/// repeats, as in serde_json). A document that is valid JSON but not an
/// object gives no members.
pub fn members<'a, const N: usize>(doc: &'a [u8], keys: [&str; N]) -> Res<[Option<&'a [u8]>; N]> {
    let mut s = Scanner { b: doc, i: 0 };
    let mut out = [None; N];
    s.ws();
    if s.peek() == Some(b'{') {
        s.object(0, &mut |key, v| {
            if let Some(k) = keys.iter().position(|k| key_is(&doc[key.clone()], k)) {
                out[k] = Some(&doc[v]);
            }
        })?;
    } else {
        s.value(0)?;
    }
    s.ws();
    if s.i != doc.len() {
        return Err(s.err("trailing characters after the JSON value"));
    }
    Ok(out)
}

/// The members of an object already checked by [`members`], as (raw key,
/// raw value) pairs; empty when `v` is not an object.
pub fn object_members(v: &[u8]) -> Vec<(&[u8], &[u8])> {
    let mut s = Scanner { b: v, i: 0 };
    let mut out = Vec::new();
    s.ws();
    if s.peek() == Some(b'{') {
        let _ = s.object(0, &mut |key, r| out.push((&v[key], &v[r])));
    }
    out
}

/// The value of member `key` of object `v`, if any (the last one wins).
pub fn member<'a>(v: &'a [u8], key: &str) -> Option<&'a [u8]> {
    object_members(v)
        .into_iter()
        .rev()
        .find(|(k, _)| key_is(k, key))
        .map(|(_, v)| v)
}

/// The raw elements of an array already checked; `None` when `v` is not an
/// array.
pub fn elements(v: &[u8]) -> Option<Vec<&[u8]>> {
    let mut s = Scanner { b: v, i: 0 };
    s.ws();
    if s.peek() != Some(b'[') {
        return None;
    }
    let mut out = Vec::new();
    s.array(0, Some(&mut |r| out.push(&v[r]))).ok()?;
    Some(out)
}

/// A JSON string value as Rust text; `None` for any other value.
pub fn string(v: &[u8]) -> Option<String> {
    match v.first() {
        Some(b'"') => serde_json::from_slice(v).ok(),
        _ => None,
    }
}

/// Whether a raw (still quoted-escaped) key equals `name`.
pub fn key_is(raw: &[u8], name: &str) -> bool {
    if !raw.contains(&b'\\') {
        return raw == name.as_bytes();
    }
    let mut quoted = Vec::with_capacity(raw.len() + 2);
    quoted.push(b'"');
    quoted.extend_from_slice(raw);
    quoted.push(b'"');
    serde_json::from_slice::<String>(&quoted).is_ok_and(|k| k == name)
}

/// Bytes that may appear inside a flat array of numbers. Written without
/// branches so a block of them compiles to vector compares.
#[inline(always)]
fn numeric(c: u8) -> bool {
    (c.wrapping_sub(b'0') < 10)
        | (c == b'-')
        | (c == b'.')
        | (c == b',')
        | (c == b'e')
        | (c == b'E')
        | (c == b'+')
        | (c == b' ')
        | (c == b'\n')
        | (c == b'\r')
        | (c == b'\t')
}

/// Bytes a string may hold without a closer look: not a quote, backslash
/// or control character.
#[inline(always)]
fn plain(c: u8) -> bool {
    (c != b'"') & (c != b'\\') & (c >= 0x20)
}

const BLOCK: usize = 32;

/// The first index at or after `i` whose byte fails `ok`, jumping whole
/// blocks while every byte passes.
#[inline(always)]
fn run_of(b: &[u8], mut i: usize, ok: impl Fn(u8) -> bool) -> usize {
    while let Some(block) = b.get(i..i + BLOCK) {
        // No early exit inside a block: that is what lets it vectorize.
        if !block.iter().fold(true, |all, &c| all & ok(c)) {
            break;
        }
        i += BLOCK;
    }
    while i < b.len() && ok(b[i]) {
        i += 1;
    }
    i
}

struct Scanner<'a> {
    b: &'a [u8],
    i: usize,
}

impl Scanner<'_> {
    fn err(&self, what: &'static str) -> NotJson {
        NotJson { at: self.i, what }
    }

    fn peek(&self) -> Option<u8> {
        self.b.get(self.i).copied()
    }

    fn ws(&mut self) {
        while let Some(b' ' | b'\n' | b'\r' | b'\t') = self.peek() {
            self.i += 1;
        }
    }

    fn expect(&mut self, c: u8, what: &'static str) -> Res<()> {
        self.ws();
        if self.peek() == Some(c) {
            self.i += 1;
            Ok(())
        } else {
            Err(self.err(what))
        }
    }

    fn value(&mut self, depth: usize) -> Res<Range<usize>> {
        self.ws();
        let start = self.i;
        match self.peek() {
            None => return Err(self.err("unexpected end of the body")),
            Some(b'"') => {
                self.string()?;
            }
            Some(b'{') => self.object(depth + 1, &mut |_, _| {})?,
            Some(b'[') => self.array(depth + 1, None)?,
            Some(b't') => self.literal(b"true")?,
            Some(b'f') => self.literal(b"false")?,
            Some(b'n') => self.literal(b"null")?,
            Some(b'-' | b'0'..=b'9') => self.number()?,
            Some(_) => return Err(self.err("expected a JSON value")),
        }
        Ok(start..self.i)
    }

    fn literal(&mut self, word: &'static [u8]) -> Res<()> {
        if self.b[self.i..].starts_with(word) {
            self.i += word.len();
            Ok(())
        } else {
            Err(self.err("invalid literal"))
        }
    }

    fn digits(&mut self) -> usize {
        let start = self.i;
        while let Some(b'0'..=b'9') = self.peek() {
            self.i += 1;
        }
        self.i - start
    }

    /// One number, checked against the JSON grammar.
    fn number(&mut self) -> Res<()> {
        if self.peek() == Some(b'-') {
            self.i += 1;
        }
        match self.peek() {
            Some(b'0') => self.i += 1,
            Some(b'1'..=b'9') => {
                self.digits();
            }
            _ => return Err(self.err("invalid number")),
        }
        if self.peek() == Some(b'.') {
            self.i += 1;
            if self.digits() == 0 {
                return Err(self.err("invalid number"));
            }
        }
        if let Some(b'e' | b'E') = self.peek() {
            self.i += 1;
            if let Some(b'+' | b'-') = self.peek() {
                self.i += 1;
            }
            if self.digits() == 0 {
                return Err(self.err("invalid number"));
            }
        }
        Ok(())
    }

    /// A string starting at the opening quote; returns its raw contents.
    fn string(&mut self) -> Res<Range<usize>> {
        self.i += 1;
        let start = self.i;
        loop {
            self.i = run_of(self.b, self.i, plain);
            match self.peek() {
                Some(b'"') => {
                    self.i += 1;
                    return Ok(start..self.i - 1);
                }
                Some(b'\\') => {
                    self.i += 1;
                    match self.peek() {
                        Some(b'"' | b'\\' | b'/' | b'b' | b'f' | b'n' | b'r' | b't') => self.i += 1,
                        Some(b'u') => {
                            let hex = self.b.get(self.i + 1..self.i + 5);
                            if !hex.is_some_and(|h| h.iter().all(u8::is_ascii_hexdigit)) {
                                return Err(self.err("invalid \\u escape in a string"));
                            }
                            self.i += 5;
                        }
                        _ => return Err(self.err("invalid escape in a string")),
                    }
                }
                Some(_) => return Err(self.err("control character in a string")),
                None => return Err(self.err("unterminated string")),
            }
        }
    }

    fn object(
        &mut self,
        depth: usize,
        each: &mut dyn FnMut(Range<usize>, Range<usize>),
    ) -> Res<()> {
        if depth > MAX_DEPTH {
            return Err(self.err("nested too deeply"));
        }
        self.i += 1;
        self.ws();
        if self.peek() == Some(b'}') {
            self.i += 1;
            return Ok(());
        }
        loop {
            self.ws();
            if self.peek() != Some(b'"') {
                return Err(self.err("expected a string key"));
            }
            let key = self.string()?;
            self.expect(b':', "expected ':' after an object key")?;
            let v = self.value(depth)?;
            each(key, v);
            self.ws();
            match self.peek() {
                Some(b',') => self.i += 1,
                Some(b'}') => {
                    self.i += 1;
                    return Ok(());
                }
                _ => return Err(self.err("expected ',' or '}' in an object")),
            }
        }
    }

    /// An array; `each` (when given) receives every element, else the
    /// array is only skipped, and a flat array of numbers is skipped whole.
    fn array(&mut self, depth: usize, mut each: Option<&mut dyn FnMut(Range<usize>)>) -> Res<()> {
        if depth > MAX_DEPTH {
            return Err(self.err("nested too deeply"));
        }
        let open = self.i;
        self.i += 1;
        self.ws();
        if each.is_none() {
            if let Some(b'-' | b'0'..=b'9') = self.peek() {
                let end = run_of(self.b, self.i, numeric);
                if self.b.get(end) == Some(&b']') {
                    self.i = end + 1;
                    return Ok(());
                }
            }
        }
        self.i = open + 1;
        self.ws();
        if self.peek() == Some(b']') {
            self.i += 1;
            return Ok(());
        }
        loop {
            let v = self.value(depth)?;
            if let Some(f) = each.as_mut() {
                f(v);
            }
            self.ws();
            match self.peek() {
                Some(b',') => self.i += 1,
                Some(b']') => {
                    self.i += 1;
                    return Ok(());
                }
                _ => return Err(self.err("expected ',' or ']' in an array")),
            }
        }
    }
}
