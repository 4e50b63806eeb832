//! Minimal HTTP/1.1 request parsing and response framing.

use std::io::{self, Read, Write};

const MAX_HEAD: usize = 64 * 1024;
const MAX_BODY: usize = 64 * 1024 * 1024;

/// A parsed request.
#[derive(Debug, Clone)]
pub(crate) struct Request {
    pub method: String,
    /// The request target as sent (path plus optional query).
    pub target: String,
    pub version: String,
    /// Header names are lowercased.
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Request {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// The path without the query string.
    pub fn path(&self) -> &str {
        self.target.split('?').next().unwrap_or("")
    }

    fn connection_has(&self, token: &str) -> bool {
        self.headers
            .iter()
            .filter(|(k, _)| k == "connection")
            .flat_map(|(_, v)| v.split(','))
            .any(|t| t.trim().eq_ignore_ascii_case(token))
    }

    /// Whether the client asked for the connection to be closed after this request.
    pub fn wants_close(&self) -> bool {
        if self.version.eq_ignore_ascii_case("HTTP/1.0") {
            !self.connection_has("keep-alive")
        } else {
            self.connection_has("close")
        }
    }
}

#[derive(Debug)]
pub(crate) enum HttpError {
    /// The connection failed or closed mid-request.
    Io,
    /// Malformed request; answer 400 and close.
    Bad(String),
}

impl From<io::Error> for HttpError {
    fn from(_: io::Error) -> Self {
        HttpError::Io
    }
}

/// Buffered request reader that keeps bytes left over between requests
/// (pipelining).
#[derive(Default)]
pub(crate) struct Reader {
    buf: Vec<u8>,
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

impl Reader {
    pub fn has_buffered(&self) -> bool {
        !self.buf.is_empty()
    }

    fn fill<S: Read>(&mut self, s: &mut S) -> io::Result<usize> {
        let mut tmp = [0u8; 16 * 1024];
        let n = loop {
            match s.read(&mut tmp) {
                Ok(n) => break n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(e),
            }
        };
        self.buf.extend_from_slice(&tmp[..n]);
        Ok(n)
    }

    fn fill_or_eof<S: Read>(&mut self, s: &mut S) -> Result<(), HttpError> {
        if self.fill(s)? == 0 {
            return Err(HttpError::Io);
        }
        Ok(())
    }

    fn take(&mut self, n: usize) -> Vec<u8> {
        let rest = self.buf.split_off(n);
        std::mem::replace(&mut self.buf, rest)
    }

    fn read_line<S: Read>(&mut self, s: &mut S) -> Result<String, HttpError> {
        loop {
            if let Some(p) = find(&self.buf, b"\n") {
                let mut line = self.take(p + 1);
                line.pop();
                if line.last() == Some(&b'\r') {
                    line.pop();
                }
                return String::from_utf8(line)
                    .map_err(|_| HttpError::Bad("non-UTF-8 line".into()));
            }
            if self.buf.len() > MAX_HEAD {
                return Err(HttpError::Bad("line too long".into()));
            }
            self.fill_or_eof(s)?;
        }
    }

    fn read_exact<S: Read>(&mut self, s: &mut S, n: usize) -> Result<Vec<u8>, HttpError> {
        while self.buf.len() < n {
            self.fill_or_eof(s)?;
        }
        Ok(self.take(n))
    }

    /// Read one request. `Ok(None)` means the peer closed cleanly between
    /// requests. `on_first_bytes` is called once the first bytes of a new
    /// request are available.
    pub fn read_request<S: Read + Write>(
        &mut self,
        s: &mut S,
        mut on_first_bytes: impl FnMut(),
    ) -> Result<Option<Request>, HttpError> {
        // Skip stray CRLFs between requests (allowed by RFC 9112).
        loop {
            while self.buf.first().is_some_and(|b| *b == b'\r' || *b == b'\n') {
                self.buf.remove(0);
            }
            if !self.buf.is_empty() {
                break;
            }
            if self.fill(s)? == 0 {
                return Ok(None);
            }
        }
        on_first_bytes();
        let head_end = loop {
            if let Some(p) = find(&self.buf, b"\r\n\r\n") {
                break p + 4;
            }
            if self.buf.len() > MAX_HEAD {
                return Err(HttpError::Bad("request head too large".into()));
            }
            self.fill_or_eof(s)?;
        };
        let head = self.take(head_end);
        let head = String::from_utf8(head).map_err(|_| HttpError::Bad("non-UTF-8 head".into()))?;
        let mut lines = head.split("\r\n");
        let request_line = lines.next().unwrap_or("");
        let mut parts = request_line.split(' ');
        let (method, target, version) =
            match (parts.next(), parts.next(), parts.next(), parts.next()) {
                (Some(m), Some(t), Some(v), None)
                    if !m.is_empty() && t.starts_with('/') && v.starts_with("HTTP/1.") =>
                {
                    (m.to_string(), t.to_string(), v.to_string())
                }
                _ => return Err(HttpError::Bad(format!("bad request line {request_line:?}"))),
            };
        let mut headers = Vec::new();
        for line in lines.filter(|l| !l.is_empty()) {
            let (k, v) = line
                .split_once(':')
                .ok_or_else(|| HttpError::Bad(format!("bad header line {line:?}")))?;
            if k.is_empty() || k.ends_with(' ') || k.ends_with('\t') {
                return Err(HttpError::Bad(format!("bad header name {k:?}")));
            }
            headers.push((k.to_ascii_lowercase(), v.trim().to_string()));
        }
        let mut req = Request {
            method,
            target,
            version,
            headers,
            body: Vec::new(),
        };
        let chunked = req
            .header("transfer-encoding")
            .is_some_and(|te| te.to_ascii_lowercase().contains("chunked"));
        let content_length = match req.header("content-length") {
            Some(v) => Some(
                v.parse::<usize>()
                    .map_err(|_| HttpError::Bad(format!("bad content-length {v:?}")))?,
            ),
            None => None,
        };
        let has_body = chunked || content_length.is_some_and(|n| n > 0);
        if has_body
            && req
                .header("expect")
                .is_some_and(|e| e.eq_ignore_ascii_case("100-continue"))
        {
            s.write_all(b"HTTP/1.1 100 Continue\r\n\r\n")?;
            s.flush()?;
        }
        if chunked {
            let mut body = Vec::new();
            loop {
                let line = self.read_line(s)?;
                let size_str = line.split(';').next().unwrap_or("").trim();
                let size = usize::from_str_radix(size_str, 16)
                    .map_err(|_| HttpError::Bad(format!("bad chunk size {line:?}")))?;
                if size == 0 {
                    // Trailers until an empty line.
                    while !self.read_line(s)?.is_empty() {}
                    break;
                }
                if body.len() + size > MAX_BODY {
                    return Err(HttpError::Bad("body too large".into()));
                }
                body.extend(self.read_exact(s, size)?);
                if !self.read_line(s)?.is_empty() {
                    return Err(HttpError::Bad("missing CRLF after chunk".into()));
                }
            }
            req.body = body;
        } else if let Some(n) = content_length {
            if n > MAX_BODY {
                return Err(HttpError::Bad("body too large".into()));
            }
            req.body = self.read_exact(s, n)?;
        }
        Ok(Some(req))
    }
}

pub(crate) fn reason(code: u16) -> &'static str {
    match code {
        100 => "Continue",
        200 => "OK",
        201 => "Created",
        204 => "No Content",
        400 => "Bad Request",
        401 => "Unauthorized",
        403 => "Forbidden",
        404 => "Not Found",
        405 => "Method Not Allowed",
        408 => "Request Timeout",
        409 => "Conflict",
        413 => "Payload Too Large",
        422 => "Unprocessable Entity",
        429 => "Too Many Requests",
        500 => "Internal Server Error",
        501 => "Not Implemented",
        502 => "Bad Gateway",
        503 => "Service Unavailable",
        504 => "Gateway Timeout",
        529 => "Site Overloaded",
        _ => "Unknown",
    }
}

/// How the body is framed.
pub(crate) enum Framing {
    Length(usize),
    Chunked,
}

/// Serialize a status line and headers (adds framing and `connection`).
pub(crate) fn head(
    status: u16,
    headers: &[(String, String)],
    framing: Framing,
    close: bool,
) -> Vec<u8> {
    let mut out = format!("HTTP/1.1 {status} {}\r\n", reason(status));
    for (k, v) in headers {
        out.push_str(k);
        out.push_str(": ");
        out.push_str(v);
        out.push_str("\r\n");
    }
    match framing {
        Framing::Length(n) => out.push_str(&format!("content-length: {n}\r\n")),
        Framing::Chunked => out.push_str("transfer-encoding: chunked\r\n"),
    }
    out.push_str(if close {
        "connection: close\r\n"
    } else {
        "connection: keep-alive\r\n"
    });
    out.push_str("\r\n");
    out.into_bytes()
}

/// One chunk of a chunked body (must not be empty).
pub(crate) fn chunk(data: &[u8]) -> Vec<u8> {
    let mut out = format!("{:x}\r\n", data.len()).into_bytes();
    out.extend_from_slice(data);
    out.extend_from_slice(b"\r\n");
    out
}

pub(crate) const LAST_CHUNK: &[u8] = b"0\r\n\r\n";

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Cursor;

    struct Duplex(Cursor<Vec<u8>>, Vec<u8>);
    impl Read for Duplex {
        fn read(&mut self, b: &mut [u8]) -> io::Result<usize> {
            // Trickle one byte at a time to exercise buffering.
            let n = b.len().min(1);
            self.0.read(&mut b[..n])
        }
    }
    impl Write for Duplex {
        fn write(&mut self, b: &[u8]) -> io::Result<usize> {
            self.1.write(b)
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn parses_pipelined_requests() {
        let raw = b"POST /v1/x?a=1 HTTP/1.1\r\nHost: h\r\nContent-Length: 3\r\n\r\nabc\
GET /v1/models HTTP/1.1\r\nConnection: close\r\n\r\n\
POST /v1/y HTTP/1.1\r\nTransfer-Encoding: chunked\r\nExpect: 100-continue\r\n\r\n3;ext=1\r\nhel\r\n2\r\nlo\r\n0\r\nX-T: 1\r\n\r\n";
        let mut d = Duplex(Cursor::new(raw.to_vec()), Vec::new());
        let mut r = Reader::default();
        let a = r.read_request(&mut d, || {}).unwrap().unwrap();
        assert_eq!(
            (a.method.as_str(), a.path(), a.body.as_slice()),
            ("POST", "/v1/x", &b"abc"[..])
        );
        assert_eq!(a.header("HOST"), Some("h"));
        assert!(!a.wants_close());
        let b = r.read_request(&mut d, || {}).unwrap().unwrap();
        assert!(b.wants_close());
        assert!(b.body.is_empty());
        let c = r.read_request(&mut d, || {}).unwrap().unwrap();
        assert_eq!(c.body, b"hello");
        assert_eq!(d.1, b"HTTP/1.1 100 Continue\r\n\r\n");
        assert!(r.read_request(&mut d, || {}).unwrap().is_none());
    }

    #[test]
    fn rejects_garbage() {
        let mut d = Duplex(Cursor::new(b"hello there\r\n\r\n".to_vec()), Vec::new());
        assert!(matches!(
            Reader::default().read_request(&mut d, || {}),
            Err(HttpError::Bad(_))
        ));
    }
}
