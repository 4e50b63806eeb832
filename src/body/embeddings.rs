//! The vectors of an embeddings answer as one row-major float32 matrix.
//!
//! Rows come as JSON number arrays (`encoding_format: "float"`) or as base64
//! strings of little-endian float32 (`"base64"`); they are placed by their
//! `index`, which a gateway may send in any order.

use super::{base64, scan};
use crate::error::{Code, Error};

/// `count` rows of `dim` floats, row `i` at `data[i * dim..(i + 1) * dim]`.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Matrix {
    pub data: Vec<f32>,
    pub count: usize,
    pub dim: usize,
}

/// The value of `key` among an object's members (the last one wins).
fn find<'a>(item: &[(&[u8], &'a [u8])], key: &str) -> Option<&'a [u8]> {
    item.iter()
        .rev()
        .find(|(k, _)| scan::key_is(k, key))
        .map(|(_, v)| *v)
}

fn protocol(msg: String) -> Error {
    Error::new(Code::Protocol, format!("embeddings answer: {msg}"))
}

fn not_embeddings(why: &str) -> Error {
    Error::invalid(format!("not an embeddings answer: {why}"))
}

/// Decodes `data[*].embedding` of an answer body.
///
/// Errors: `InvalidArgument` when the body is not an embeddings answer at
/// all (no `data` array of objects with an `embedding`), `Protocol` when it
/// is one but its vectors are malformed: rows of different lengths, a bad
/// number or base64 text, an `index` missing, repeated or out of range.
pub fn decode(body: &[u8]) -> Result<Matrix, Error> {
    let [data] = scan::members(body, ["data"])
        .map_err(|e| not_embeddings(&format!("the body is not JSON ({e})")))?;
    let items = data
        .and_then(scan::elements_members)
        .ok_or_else(|| not_embeddings("no \"data\" array"))?;
    let embedded: Vec<Option<&[u8]>> = items.iter().map(|m| find(m, "embedding")).collect();
    if !items.is_empty() && embedded.iter().all(Option::is_none) {
        return Err(not_embeddings("\"data\" items have no \"embedding\""));
    }
    let count = items.len();
    let mut m = Matrix {
        data: Vec::new(),
        count,
        dim: 0,
    };
    let mut filled = vec![false; count];
    let mut scratch = Vec::new();
    let mut bytes = Vec::new();
    let mut unescaped = String::new();
    for (pos, (item, emb)) in items.iter().zip(&embedded).enumerate() {
        let index = match find(item, "index") {
            None => pos,
            Some(v) => std::str::from_utf8(v)
                .ok()
                .and_then(|s| s.parse::<usize>().ok())
                .ok_or_else(|| {
                    protocol(format!(
                        "data[{pos}].index is not a non-negative integer: {}",
                        String::from_utf8_lossy(&v[..v.len().min(40)])
                    ))
                })?,
        };
        if index >= count {
            return Err(protocol(format!(
                "data[{pos}].index is {index}, but there are only {count} items"
            )));
        }
        if std::mem::replace(&mut filled[index], true) {
            return Err(protocol(format!(
                "index {index} appears more than once (again at data[{pos}])"
            )));
        }
        let emb = emb.ok_or_else(|| protocol(format!("data[{pos}] has no \"embedding\"")))?;
        scratch.clear();
        let row = match emb.first() {
            Some(b'[') => {
                floats(emb, &mut scratch)
                    .map_err(|e| protocol(format!("data[{pos}].embedding: {e}")))?;
                Row::Floats(&scratch)
            }
            Some(b'"') => Row::Base64(
                base64_text(emb, &mut unescaped)
                    .map_err(|e| protocol(format!("data[{pos}].embedding: {e}")))?,
            ),
            _ => {
                return Err(protocol(format!(
                    "data[{pos}].embedding is neither an array of numbers nor a base64 string"
                )))
            }
        };
        let len = row.len();
        if pos == 0 {
            m.dim = len;
            m.data = vec![0.0; count * m.dim];
        } else if len != m.dim {
            return Err(protocol(format!(
                "ragged rows: data[{pos}] has {len} floats, data[0] has {}",
                m.dim
            )));
        }
        let slot = &mut m.data[index * m.dim..(index + 1) * m.dim];
        match row {
            Row::Floats(f) => slot.copy_from_slice(f),
            Row::Base64(text) => base64_floats(text, slot, &mut bytes)
                .map_err(|e| protocol(format!("data[{pos}].embedding: {e}")))?,
        }
    }
    Ok(m)
}

/// A JSON array of numbers (already checked for structure by the scan).
fn floats(arr: &[u8], out: &mut Vec<f32>) -> Result<(), String> {
    let inner = &arr[1..arr.len() - 1];
    let trimmed = inner.trim_ascii();
    if trimmed.is_empty() {
        return Ok(());
    }
    out.reserve(inner.len() / 8);
    for (k, tok) in trimmed.split(|&c| c == b',').enumerate() {
        let tok = tok.trim_ascii();
        let v = parse_f32(tok).ok_or_else(|| {
            format!(
                "element {k} is not a number: {}",
                String::from_utf8_lossy(&tok[..tok.len().min(40)])
            )
        })?;
        if v.is_infinite() {
            return Err(format!(
                "element {k} ({}) does not fit a float32",
                String::from_utf8_lossy(tok)
            ));
        }
        out.push(v);
    }
    Ok(())
}

/// A JSON number as the nearest float32; `None` when `t` is not one.
///
/// Most embedding floats have at most 15 significant digits and a small
/// exponent, so the decimal is an exact f64 integer times an exact power of
/// ten, and one f64 operation rounds it correctly (Clinger's fast path).
/// Rounding that f64 to f32 is then exact too unless it lies exactly halfway
/// between two f32s (a midpoint is an f64, so no other midpoint can separate
/// it from the true value): that rare case, subnormals, and everything else
/// go to the standard library's parser.
fn parse_f32(t: &[u8]) -> Option<f32> {
    if !is_json_number(t) {
        return None;
    }
    fast_f32(t).or_else(|| std::str::from_utf8(t).ok()?.parse().ok())
}

const POW10: [f64; 23] = [
    1e0, 1e1, 1e2, 1e3, 1e4, 1e5, 1e6, 1e7, 1e8, 1e9, 1e10, 1e11, 1e12, 1e13, 1e14, 1e15, 1e16,
    1e17, 1e18, 1e19, 1e20, 1e21, 1e22,
];

/// Clinger's fast path for a token already checked to be a JSON number.
fn fast_f32(t: &[u8]) -> Option<f32> {
    let (neg, t) = match t.split_first() {
        Some((b'-', rest)) => (true, rest),
        _ => (false, t),
    };
    let mut mant = 0u64;
    let mut digits = 0u32; // significant digits taken into `mant`
    let mut exp10 = 0i32;
    let mut i = 0;
    let mut seen_point = false;
    while let Some(&c) = t.get(i) {
        match c {
            b'0'..=b'9' => {
                if mant != 0 || c != b'0' {
                    digits += 1;
                    if digits > 15 {
                        return None;
                    }
                }
                mant = mant * 10 + u64::from(c - b'0');
                if seen_point {
                    exp10 -= 1;
                }
            }
            b'.' => seen_point = true,
            _ => break,
        }
        i += 1;
    }
    if let Some(b'e' | b'E') = t.get(i) {
        let rest = std::str::from_utf8(&t[i + 1..]).ok()?;
        let e: i32 = rest.trim_start_matches('+').parse().ok()?;
        exp10 = exp10.checked_add(e)?;
    }
    let x = if mant == 0 {
        0.0
    } else if (0..=22).contains(&exp10) {
        mant as f64 * POW10[exp10 as usize]
    } else if (-22..0).contains(&exp10) {
        mant as f64 / POW10[(-exp10) as usize]
    } else {
        return None;
    };
    // Below f32's normal range its precision shrinks: leave it to std.
    if x != 0.0 && x < f32::MIN_POSITIVE as f64 {
        return None;
    }
    // f64 has 29 more fraction bits than f32: all of them 1000...0 is an
    // exact f32 midpoint.
    if x.to_bits() & ((1 << 29) - 1) == 1 << 28 {
        return None;
    }
    let v = x as f32;
    Some(if neg { -v } else { v })
}

/// The JSON number grammar: `-? (0 | [1-9][0-9]*) (. [0-9]+)? ([eE] [+-]? [0-9]+)?`.
fn is_json_number(t: &[u8]) -> bool {
    let mut i = usize::from(t.first() == Some(&b'-'));
    let digits = |i: &mut usize| {
        let s = *i;
        while t.get(*i).is_some_and(u8::is_ascii_digit) {
            *i += 1;
        }
        *i - s
    };
    match t.get(i) {
        Some(b'0') => i += 1,
        Some(b'1'..=b'9') => {
            digits(&mut i);
        }
        _ => return false,
    }
    if t.get(i) == Some(&b'.') {
        i += 1;
        if digits(&mut i) == 0 {
            return false;
        }
    }
    if let Some(b'e' | b'E') = t.get(i) {
        i += 1;
        if let Some(b'+' | b'-') = t.get(i) {
            i += 1;
        }
        if digits(&mut i) == 0 {
            return false;
        }
    }
    i == t.len()
}

/// One row: parsed floats, or base64 text of little-endian float32s
/// (decoded straight into the matrix).
enum Row<'a> {
    Floats(&'a [f32]),
    Base64(&'a [u8]),
}

impl Row<'_> {
    fn len(&self) -> usize {
        match self {
            Row::Floats(f) => f.len(),
            // Checked to be whole float32s by `base64_text`.
            Row::Base64(t) => base64::decoded_len(t) / 4,
        }
    }
}

/// The base64 text of a JSON string of little-endian float32s, unescaped
/// into `buf` only when it holds escapes.
fn base64_text<'a>(s: &'a [u8], buf: &'a mut String) -> Result<&'a [u8], String> {
    let raw = &s[1..s.len() - 1];
    // Some JSON writers escape '/' as "\/"; base64 needs nothing else.
    let text = if scan::has_escapes(raw) {
        *buf = scan::string(s).ok_or("invalid string")?;
        buf.as_bytes()
    } else {
        raw
    };
    let n = base64::decoded_len(text);
    if !n.is_multiple_of(4) {
        // Not base64 at all says more than a wrong length: decode to find out.
        base64::decode_into(text, &mut Vec::new()).map_err(|e| e.to_string())?;
        return Err(format!(
            "base64 decodes to {n} bytes, not a whole number of float32s"
        ));
    }
    Ok(text)
}

/// Decodes base64 `text` into the float32s of `slot` (sized for it).
fn base64_floats(text: &[u8], slot: &mut [f32], scratch: &mut Vec<u8>) -> Result<(), String> {
    #[cfg(target_endian = "little")]
    {
        let _ = scratch;
        // SAFETY: the bytes are those of `slot`, borrowed mutably for this
        // call; u8 needs no alignment, and every bit pattern is an f32. On
        // a little-endian machine these bytes are the float32s' own order.
        let bytes = unsafe {
            std::slice::from_raw_parts_mut(
                slot.as_mut_ptr().cast::<u8>(),
                std::mem::size_of_val(slot),
            )
        };
        base64::decode_to_slice(text, bytes).map_err(|e| e.to_string())
    }
    #[cfg(not(target_endian = "little"))]
    {
        scratch.clear();
        base64::decode_into(text, scratch).map_err(|e| e.to_string())?;
        for (v, b) in slot.iter_mut().zip(scratch.chunks_exact(4)) {
            *v = f32::from_le_bytes([b[0], b[1], b[2], b[3]]);
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn b64(v: &[f32]) -> String {
        let bytes: Vec<u8> = v.iter().flat_map(|f| f.to_le_bytes()).collect();
        base64::encode(&bytes)
    }

    #[test]
    fn fast_float_parsing_matches_the_standard_library() {
        let mut seed = 0x9E37_79B9_7F4A_7C15u64;
        let mut next = || {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed
        };
        let mut texts = vec![
            "0",
            "-0",
            "1",
            "-1.5",
            "0.1",
            "3.4028235e38",
            "3.4028236e38",
            "1e-38",
            "1.1754944e-38",
            "1e-45",
            "7e-46",
            "123456789012345",
            "1234567890123456",
            "0.0000000000000000000001",
            "16777217",
            "16777219",
            "1.00000005960464477539",
            "2.5e+3",
            "2.5E-3",
            "0.30000000000000004",
        ]
        .into_iter()
        .map(String::from)
        .collect::<Vec<_>>();
        for _ in 0..20_000 {
            let r = next();
            let v = f32::from_bits((r as u32) & 0x7FFF_FFFF);
            if !v.is_finite() {
                continue;
            }
            texts.push(format!("{v}"));
            texts.push(format!("{:e}", v));
            texts.push(format!(
                "{:.*}",
                (r >> 40) as usize % 12,
                (r >> 8) as f64 / 1e12 - 0.5
            ));
            // An f32 midpoint written out exactly (halfway between two floats).
            let a = f32::from_bits(((r >> 32) as u32) & 0x3FFF_FFFF);
            let mid = (a as f64 + f32::from_bits(a.to_bits() + 1) as f64) / 2.0;
            texts.push(format!("{mid:e}"));
        }
        for t in &texts {
            let want: f32 = t.parse().unwrap();
            let got = parse_f32(t.as_bytes()).unwrap_or_else(|| panic!("{t} refused"));
            assert_eq!(got.to_bits(), want.to_bits(), "{t}");
        }
        for bad in [
            "", "-", "01", "1.", ".5", "1e", "+1", "inf", "NaN", "0x10", "1e+",
        ] {
            assert_eq!(parse_f32(bad.as_bytes()), None, "{bad}");
        }
    }

    #[test]
    fn float_arrays_in_index_order() {
        let body = br#"{"object":"list","data":[
            {"object":"embedding","index":1,"embedding":[0.5, -1.25e-1 ,3]},
            {"object":"embedding","index":0,"embedding":[1,2,-0.0]}],
            "model":"m","usage":{"prompt_tokens":2,"total_tokens":2}}"#;
        let m = decode(body).unwrap();
        assert_eq!((m.count, m.dim), (2, 3));
        assert_eq!(m.data, vec![1.0, 2.0, -0.0, 0.5, -0.125, 3.0]);
    }

    #[test]
    fn base64_rows_match_float_rows() {
        let rows = [[0.1f32, -2.5, 1e-30], [3.4e38, -0.0, 7.0]];
        let body = format!(
            r#"{{"data":[{{"index":1,"embedding":"{}"}},{{"index":0,"embedding":"{}"}}]}}"#,
            b64(&rows[1]),
            b64(&rows[0])
        );
        let m = decode(body.as_bytes()).unwrap();
        assert_eq!((m.count, m.dim), (2, 3));
        assert_eq!(&m.data[..3], &rows[0]);
        assert_eq!(&m.data[3..], &rows[1]);
        // "\/" for '/' is still base64.
        let slash = b64(&[f32::from_bits(0xFFFF_FFFF >> 1)]);
        let escaped = slash.replace('/', "\\/");
        let body = format!(r#"{{"data":[{{"embedding":"{escaped}"}}]}}"#);
        assert_eq!(
            decode(body.as_bytes()).unwrap().data[0].to_bits(),
            0x7FFF_FFFF
        );
    }

    #[test]
    fn without_index_rows_keep_array_order_and_empty_data_is_empty() {
        let m = decode(br#"{"data":[{"embedding":[1]},{"embedding":[2]}]}"#).unwrap();
        assert_eq!(m.data, vec![1.0, 2.0]);
        let m = decode(br#"{"data":[],"model":"m"}"#).unwrap();
        assert_eq!((m.count, m.dim, m.data.len()), (0, 0, 0));
    }

    #[test]
    fn malformed_vectors_are_protocol_errors() {
        for (body, want) in [
            (
                r#"{"data":[{"embedding":[1,2]},{"embedding":[3]}]}"#,
                "ragged rows: data[1] has 1 floats, data[0] has 2",
            ),
            (
                r#"{"data":[{"index":0,"embedding":[1]},{"index":0,"embedding":[2]}]}"#,
                "index 0 appears more than once",
            ),
            (
                r#"{"data":[{"index":2,"embedding":[1]},{"index":0,"embedding":[2]}]}"#,
                "data[0].index is 2, but there are only 2 items",
            ),
            (
                r#"{"data":[{"index":-1,"embedding":[1]}]}"#,
                "not a non-negative integer",
            ),
            (
                r#"{"data":[{"embedding":[1,,2]}]}"#,
                "element 1 is not a number",
            ),
            (
                r#"{"data":[{"embedding":[1,2 3]}]}"#,
                "element 1 is not a number",
            ),
            (
                r#"{"data":[{"embedding":[01]}]}"#,
                "element 0 is not a number",
            ),
            (
                r#"{"data":[{"embedding":[1e39]}]}"#,
                "does not fit a float32",
            ),
            (
                r#"{"data":[{"embedding":"AAAA"}]}"#,
                "not a whole number of float32s",
            ),
            (
                r#"{"data":[{"embedding":"AA*A"}]}"#,
                "invalid base64 at character 2",
            ),
            (r#"{"data":[{"embedding":{"x":1}}]}"#, "neither an array"),
            (
                r#"{"data":[{"embedding":[1]},{"x":1}]}"#,
                "data[1] has no \"embedding\"",
            ),
        ] {
            let e = decode(body.as_bytes()).unwrap_err();
            assert_eq!(e.code, Code::Protocol, "{body}: {}", e.message);
            assert!(e.message.contains(want), "{body}: {}", e.message);
        }
    }

    #[test]
    fn other_answers_are_invalid_arguments() {
        for body in [
            r#"{"choices":[{"message":{"content":"hi"}}],"model":"m"}"#,
            r#"{"data":[{"id":"model-a"},{"id":"model-b"}]}"#,
            r#"{"data":"x"}"#,
            "[1,2]",
            "not json",
            "",
        ] {
            let e = decode(body.as_bytes()).unwrap_err();
            assert_eq!(e.code, Code::InvalidArgument, "{body}: {}", e.message);
            assert!(
                e.message.starts_with("not an embeddings answer"),
                "{}",
                e.message
            );
        }
    }
}
