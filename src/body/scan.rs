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

/// Each element of array `v` with the members of those that are objects
/// (none for other values), in one walk: [`elements`] then
/// [`object_members`] on each would read every element twice. `None` when
/// `v` is not an array.
pub fn elements_members(v: &[u8]) -> Option<Vec<Members<'_>>> {
    let mut s = Scanner { b: v, i: 0 };
    s.ws();
    if s.peek() != Some(b'[') {
        return None;
    }
    s.i += 1;
    s.ws();
    let mut out = Vec::new();
    if s.peek() == Some(b']') {
        return Some(out);
    }
    loop {
        s.ws();
        let mut members = Vec::new();
        if s.peek() == Some(b'{') {
            s.object(1, &mut |k, r| members.push((&v[k], &v[r]))).ok()?;
        } else {
            s.value(1).ok()?;
        }
        out.push(members);
        s.ws();
        match s.peek() {
            Some(b',') => s.i += 1,
            Some(b']') => return Some(out),
            _ => return None,
        }
    }
}

/// An object's members as raw (key, value) slices.
pub type Members<'a> = Vec<(&'a [u8], &'a [u8])>;

/// A JSON string value as Rust text; `None` for any other value.
pub fn string(v: &[u8]) -> Option<String> {
    match v.first() {
        Some(b'"') => serde_json::from_slice(v).ok(),
        _ => None,
    }
}

/// Whether the raw contents of a string (between its quotes) hold an
/// escape: as fast as memory on AVX2, for megabyte strings.
pub fn has_escapes(raw: &[u8]) -> bool {
    plain_run(raw, 0) < raw.len()
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

/// The first index at or after `i` that is not a [`plain`] string byte:
/// 32 bytes per step with AVX2 where the CPU has it (base64 embeddings are
/// megabytes of plain string), else [`run_of`].
#[inline]
fn plain_run(b: &[u8], i: usize) -> usize {
    #[cfg(target_arch = "x86_64")]
    if b.len() - i >= 64 && std::arch::is_x86_feature_detected!("avx2") {
        // SAFETY: the CPU has AVX2 (checked just above).
        let i = unsafe { plain_run_avx2(b, i) };
        return run_of(b, i, plain);
    }
    run_of(b, i, plain)
}

/// Skips whole 32-byte blocks of plain string bytes; returns where the
/// first block holding a quote, backslash or control character starts (or
/// where fewer than 32 bytes remain).
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
unsafe fn plain_run_avx2(b: &[u8], mut i: usize) -> usize {
    use std::arch::x86_64::*;
    let quote = _mm256_set1_epi8(b'"' as i8);
    let backslash = _mm256_set1_epi8(b'\\' as i8);
    let control_max = _mm256_set1_epi8(0x1F);
    while i + 32 <= b.len() {
        // SAFETY: i + 32 <= b.len(), so 32 bytes are readable there.
        let v = unsafe { _mm256_loadu_si256(b.as_ptr().add(i).cast()) };
        // c <= 0x1F exactly when min(c, 0x1F) == c (unsigned).
        let control = _mm256_cmpeq_epi8(_mm256_min_epu8(v, control_max), v);
        let special = _mm256_or_si256(
            _mm256_or_si256(_mm256_cmpeq_epi8(v, quote), _mm256_cmpeq_epi8(v, backslash)),
            control,
        );
        if _mm256_movemask_epi8(special) != 0 {
            break;
        }
        i += 32;
    }
    i
}

/// The first index at or after `i` that is not a [`numeric`] byte: 32
/// bytes per step with AVX2 where the CPU has it (a float embeddings answer
/// is megabytes of flat number arrays), else [`run_of`].
#[inline]
fn numeric_run(b: &[u8], i: usize) -> usize {
    #[cfg(target_arch = "x86_64")]
    if b.len() - i >= 64 && std::arch::is_x86_feature_detected!("avx2") {
        // SAFETY: the CPU has AVX2 (checked just above).
        let i = unsafe { numeric_run_avx2(b, i) };
        return run_of(b, i, numeric);
    }
    run_of(b, i, numeric)
}

/// Skips whole 32-byte blocks of [`numeric`] bytes; returns where the first
/// block holding anything else starts (or where fewer than 32 remain).
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
unsafe fn numeric_run_avx2(b: &[u8], mut i: usize) -> usize {
    use std::arch::x86_64::*;
    let set = |c: u8| _mm256_set1_epi8(c as i8);
    // x - lo <= n (unsigned) exactly when min(x - lo, n) == x - lo.
    let within = |v: __m256i, lo: u8, n: u8| {
        let d = _mm256_sub_epi8(v, set(lo));
        _mm256_cmpeq_epi8(_mm256_min_epu8(d, set(n)), d)
    };
    while i + 32 <= b.len() {
        // SAFETY: i + 32 <= b.len(), so 32 bytes are readable there.
        let v = unsafe { _mm256_loadu_si256(b.as_ptr().add(i).cast()) };
        let digit = within(v, b'0', 9);
        let sign_comma_dot = within(v, b'+', 3); // + , - .
        let exponent = _mm256_cmpeq_epi8(_mm256_or_si256(v, set(0x20)), set(b'e'));
        let space = _mm256_or_si256(
            _mm256_or_si256(
                _mm256_cmpeq_epi8(v, set(b' ')),
                _mm256_cmpeq_epi8(v, set(b'\n')),
            ),
            _mm256_or_si256(
                _mm256_cmpeq_epi8(v, set(b'\r')),
                _mm256_cmpeq_epi8(v, set(b'\t')),
            ),
        );
        let ok = _mm256_or_si256(
            _mm256_or_si256(digit, sign_comma_dot),
            _mm256_or_si256(exponent, space),
        );
        if _mm256_movemask_epi8(ok) != -1 {
            break;
        }
        i += 32;
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
            self.i = plain_run(self.b, self.i);
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
                let end = numeric_run(self.b, self.i);
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

#[cfg(test)]
mod tests {
    use super::*;

    type Fast = fn(&[u8], usize) -> usize;
    type Class = fn(u8) -> bool;

    #[test]
    fn simd_runs_stop_where_the_byte_loops_stop() {
        // Runs of class bytes with one byte of every value planted at many
        // distances from the start: the fast paths must agree exactly.
        let plain_bytes: Vec<u8> = (0x20..=0x7Eu8).filter(|&c| plain(c)).collect();
        let numeric_bytes: Vec<u8> = (0..=255u8).filter(|&c| numeric(c)).collect();
        let cases: [(&[u8], Fast, Class); 2] = [
            (&plain_bytes, plain_run, plain),
            (&numeric_bytes, numeric_run, numeric),
        ];
        for (class, fast, test) in cases {
            let filler: Vec<u8> = (0..200).map(|k| class[k * 7 % class.len()]).collect();
            assert_eq!(fast(&filler, 0), 200);
            for at in [0usize, 1, 31, 32, 33, 63, 64, 65, 100, 150, 199] {
                for c in 0..=255u8 {
                    let mut b = filler.clone();
                    b[at] = c;
                    for start in [0usize, 3] {
                        assert_eq!(
                            fast(&b, start),
                            run_of(&b, start, test),
                            "byte {c:#x} at {at}"
                        );
                    }
                }
            }
        }
    }
}
