//! Routes with non-JSON bodies, for raw-body clients: `POST`/`PUT /v1/echo`
//! (answers the request body byte for byte), `POST /v1/audio/speech` (a
//! binary `audio/mpeg` answer, see [`speech_audio`]) and
//! `POST /v1/audio/transcriptions` (`multipart/form-data` with a `file`
//! part, answered as JSON describing what arrived).

use serde_json::json;

use crate::http::Request;
use crate::routes::{Body, Response};

/// FNV-1a of `bytes`, as the `x-body-fnv1a` header and the transcription
/// answer report it (lower-case hex).
pub fn fnv1a(bytes: &[u8]) -> String {
    let mut h: u64 = 0xcbf29ce484222325;
    for &b in bytes {
        h ^= b as u64;
        h = h.wrapping_mul(0x100000001b3);
    }
    format!("{h:016x}")
}

/// The "audio" `/v1/audio/speech` answers for `input`: an ID3 header then
/// pseudo-random bytes (NULs and invalid UTF-8 included), 1000 bytes per
/// input character, at least 4096.
pub fn speech_audio(input: &str) -> Vec<u8> {
    let n = (input.chars().count() * 1000).max(4096);
    let mut out = b"ID3\x04\x00\x00\x00\x00\x00\x00".to_vec();
    let mut x: u64 = 0x9e3779b97f4a7c15;
    for b in input.bytes() {
        x = (x ^ b as u64).wrapping_mul(0x100000001b3);
    }
    while out.len() < n {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        out.extend_from_slice(&x.to_le_bytes());
    }
    out.truncate(n);
    out
}

pub(crate) fn echo(req: &Request) -> Response {
    let ct = req
        .header("content-type")
        .unwrap_or("application/octet-stream");
    Response {
        status: 200,
        headers: vec![
            ("content-type".into(), ct.to_string()),
            ("x-body-bytes".into(), req.body.len().to_string()),
            ("x-body-fnv1a".into(), fnv1a(&req.body)),
        ],
        body: Body::Bytes(req.body.clone()),
    }
}

pub(crate) fn speech(req: &Request) -> Result<Response, Response> {
    let v = crate::routes::parse_body(req)?;
    let Some(input) = v["input"].as_str() else {
        return Err(crate::routes::bad_request("'input' is required."));
    };
    let audio = speech_audio(input);
    Ok(Response {
        status: 200,
        headers: vec![
            ("content-type".into(), "audio/mpeg".into()),
            ("x-body-fnv1a".into(), fnv1a(&audio)),
        ],
        body: Body::Bytes(audio),
    })
}

pub(crate) fn transcription(req: &Request) -> Result<Response, Response> {
    let bad = |m: &str| crate::routes::bad_request(m);
    let ct = req.header("content-type").unwrap_or("");
    if !ct.to_ascii_lowercase().starts_with("multipart/form-data") {
        return Err(bad("Content-Type must be multipart/form-data."));
    }
    let boundary = ct
        .split(';')
        .filter_map(|p| p.trim().strip_prefix("boundary="))
        .next()
        .map(|b| b.trim_matches('"'))
        .ok_or_else(|| bad("multipart boundary missing."))?;
    let delim = format!("--{boundary}").into_bytes();
    let mut fields = serde_json::Map::new();
    let mut file: Option<(String, Vec<u8>)> = None;
    let body = &req.body;
    let mut pos = find(body, &delim, 0).ok_or_else(|| bad("no multipart part found."))?;
    loop {
        pos += delim.len();
        if body[pos..].starts_with(b"--") {
            break;
        }
        let head_start = pos + 2; // CRLF after the delimiter
        let head_end = find(body, b"\r\n\r\n", head_start).ok_or_else(|| bad("bad part."))?;
        let head = String::from_utf8_lossy(&body[head_start..head_end]).into_owned();
        let data_start = head_end + 4;
        let mut close = delim.clone();
        close.splice(0..0, *b"\r\n");
        let next = find(body, &close, data_start).ok_or_else(|| bad("unterminated part."))?;
        let data = &body[data_start..next];
        let attr = |name: &str| {
            let key = format!("{name}=\"");
            head.find(&key).and_then(|i| {
                let rest = &head[i + key.len()..];
                rest.find('"').map(|j| rest[..j].to_string())
            })
        };
        match (attr("name"), attr("filename")) {
            (Some(n), Some(f)) if n == "file" => file = Some((f, data.to_vec())),
            (Some(n), _) => {
                fields.insert(n, json!(String::from_utf8_lossy(data)));
            }
            _ => return Err(bad("part without a name.")),
        }
        pos = next + 2;
    }
    let (filename, data) = file.ok_or_else(|| bad("'file' part is required."))?;
    let model = fields.get("model").cloned().unwrap_or(json!(null));
    Ok(Response::json(
        200,
        &json!({
            "text": format!("{} bytes of {filename}", data.len()),
            "file_bytes": data.len(),
            "file_fnv1a": fnv1a(&data),
            "filename": filename,
            "model": model,
            "fields": fields,
        }),
    ))
}

fn find(hay: &[u8], needle: &[u8], from: usize) -> Option<usize> {
    hay.get(from..)?
        .windows(needle.len())
        .position(|w| w == needle)
        .map(|i| i + from)
}
