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
    let rows = data
        .and_then(scan::elements)
        .ok_or_else(|| not_embeddings("no \"data\" array"))?;
    let items: Vec<Vec<(&[u8], &[u8])>> = rows.iter().map(|r| scan::object_members(r)).collect();
    let embedded: Vec<Option<&[u8]>> = items.iter().map(|m| find(m, "embedding")).collect();
    if !rows.is_empty() && embedded.iter().all(Option::is_none) {
        return Err(not_embeddings("\"data\" items have no \"embedding\""));
    }
    let count = rows.len();
    let mut m = Matrix {
        data: Vec::new(),
        count,
        dim: 0,
    };
    let mut filled = vec![false; count];
    let mut scratch = Vec::new();
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
        match emb.first() {
            Some(b'[') => floats(emb, &mut scratch)
                .map_err(|e| protocol(format!("data[{pos}].embedding: {e}")))?,
            Some(b'"') => base64_floats(emb, &mut scratch)
                .map_err(|e| protocol(format!("data[{pos}].embedding: {e}")))?,
            _ => {
                return Err(protocol(format!(
                    "data[{pos}].embedding is neither an array of numbers nor a base64 string"
                )))
            }
        }
        if pos == 0 {
            m.dim = scratch.len();
            m.data = vec![0.0; count * m.dim];
        } else if scratch.len() != m.dim {
            return Err(protocol(format!(
                "ragged rows: data[{pos}] has {} floats, data[0] has {}",
                scratch.len(),
                m.dim
            )));
        }
        m.data[index * m.dim..(index + 1) * m.dim].copy_from_slice(&scratch);
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
        if !is_json_number(tok) {
            return Err(format!(
                "element {k} is not a number: {}",
                String::from_utf8_lossy(&tok[..tok.len().min(40)])
            ));
        }
        // A JSON number is ASCII, so this cannot fail.
        let text = std::str::from_utf8(tok).unwrap_or("");
        let v: f32 = text
            .parse()
            .map_err(|_| format!("element {k} is not a number: {text}"))?;
        if v.is_infinite() {
            return Err(format!("element {k} ({text}) does not fit a float32"));
        }
        out.push(v);
    }
    Ok(())
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

/// A JSON string of base64 little-endian float32.
fn base64_floats(s: &[u8], out: &mut Vec<f32>) -> Result<(), String> {
    let raw = &s[1..s.len() - 1];
    let unescaped;
    // Some JSON writers escape '/' as "\/"; base64 needs nothing else.
    let text = if raw.contains(&b'\\') {
        unescaped = scan::string(s).ok_or("invalid string")?;
        unescaped.as_bytes()
    } else {
        raw
    };
    let mut bytes = Vec::with_capacity(base64::decoded_len(text));
    base64::decode_into(text, &mut bytes).map_err(|e| e.to_string())?;
    if bytes.len() % 4 != 0 {
        return Err(format!(
            "base64 decodes to {} bytes, not a whole number of float32s",
            bytes.len()
        ));
    }
    out.extend(
        bytes
            .chunks_exact(4)
            .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]])),
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn b64(v: &[f32]) -> String {
        const A: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
        let bytes: Vec<u8> = v.iter().flat_map(|f| f.to_le_bytes()).collect();
        let mut s = String::new();
        for c in bytes.chunks(3) {
            let n = (c[0] as u32) << 16
                | (*c.get(1).unwrap_or(&0) as u32) << 8
                | *c.get(2).unwrap_or(&0) as u32;
            for k in 0..4 {
                s.push(if k <= c.len() {
                    A[(n >> (18 - 6 * k) & 63) as usize] as char
                } else {
                    '='
                });
            }
        }
        s
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
