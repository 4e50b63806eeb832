//! Result codes and the error type shared by the Rust API and the C API.

use std::fmt;

/// Stable result codes. The numbers are part of the C ABI and never change;
/// new codes get new numbers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[repr(i32)]
pub enum Code {
    Ok = 0,
    InvalidArgument = 1,
    Connect = 2,
    Tls = 3,
    Timeout = 4,
    HttpStatus = 5,
    Io = 6,
    Protocol = 7,
    PoolExhausted = 8,
    BudgetExceeded = 9,
    Cancelled = 10,
    RateLimited = 11,
    Panic = 99,
}

impl Code {
    /// Every code, for tests and for `llmpool_code_name`.
    pub const ALL: [Code; 13] = [
        Code::Ok,
        Code::InvalidArgument,
        Code::Connect,
        Code::Tls,
        Code::Timeout,
        Code::HttpStatus,
        Code::Io,
        Code::Protocol,
        Code::PoolExhausted,
        Code::BudgetExceeded,
        Code::Cancelled,
        Code::RateLimited,
        Code::Panic,
    ];

    /// The C name of the code, e.g. `"LLMPOOL_TIMEOUT"`.
    pub fn name(self) -> &'static str {
        match self {
            Code::Ok => "LLMPOOL_OK",
            Code::InvalidArgument => "LLMPOOL_INVALID_ARGUMENT",
            Code::Connect => "LLMPOOL_CONNECT",
            Code::Tls => "LLMPOOL_TLS",
            Code::Timeout => "LLMPOOL_TIMEOUT",
            Code::HttpStatus => "LLMPOOL_HTTP_STATUS",
            Code::Io => "LLMPOOL_IO",
            Code::Protocol => "LLMPOOL_PROTOCOL",
            Code::PoolExhausted => "LLMPOOL_POOL_EXHAUSTED",
            Code::BudgetExceeded => "LLMPOOL_BUDGET_EXCEEDED",
            Code::Cancelled => "LLMPOOL_CANCELLED",
            Code::RateLimited => "LLMPOOL_RATE_LIMITED",
            Code::Panic => "LLMPOOL_PANIC",
        }
    }

    /// The code for a raw number, if it is one.
    pub fn from_i32(n: i32) -> Option<Code> {
        Code::ALL.iter().copied().find(|c| *c as i32 == n)
    }
}

impl fmt::Display for Code {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// A failure with its code and a message meant for a human.
///
/// Messages never contain the API key: the key is only ever written into the
/// `Authorization` header, and no error path formats request headers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Error {
    pub code: Code,
    pub message: String,
}

impl Error {
    pub fn new(code: Code, message: impl Into<String>) -> Error {
        Error {
            code,
            message: message.into(),
        }
    }

    pub fn invalid(message: impl Into<String>) -> Error {
        Error::new(Code::InvalidArgument, message)
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.code, self.message)
    }
}

impl std::error::Error for Error {}

/// The text of a caught panic, for the `Code::Panic` message.
pub fn panic_message(payload: &(dyn std::any::Any + Send)) -> String {
    let msg = payload
        .downcast_ref::<&str>()
        .map(|s| s.to_string())
        .or_else(|| payload.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "unknown panic".to_string());
    format!("internal panic (please report): {msg}")
}

/// Maps a ureq error to our code and a message that names the phase.
pub fn from_ureq(e: &ureq::Error) -> Error {
    use ureq::Error as U;
    use ureq::Timeout as T;
    let (code, msg) = match e {
        U::Timeout(t) => {
            let phase = match t {
                T::Resolve => "resolving the host name",
                T::Connect => "connecting",
                T::SendRequest | T::SendBody | T::Await100 | T::PerWrite => "sending the request",
                T::RecvResponse => "waiting for the response headers",
                T::RecvBody => "reading the response body",
                T::Global | T::PerCall => "the whole call (timeout_ms)",
                T::PerRead => "reading (per-read timeout)",
                _ => "during the call",
            };
            (Code::Timeout, format!("timed out {phase}"))
        }
        U::HostNotFound => (Code::Connect, "host not found".to_string()),
        U::ConnectionFailed => (Code::Connect, "connection failed".to_string()),
        // Already names the proxy (host:port only) and its answer.
        U::ConnectProxyFailed(m) => (Code::Connect, m.clone()),
        // rustls reports handshake failures through the transport's io::Error.
        U::Io(io) if io.get_ref().is_some_and(|e| e.is::<rustls::Error>()) => {
            (Code::Tls, format!("TLS error: {io}"))
        }
        U::Io(io) => match io.kind() {
            std::io::ErrorKind::ConnectionRefused => {
                (Code::Connect, format!("connection refused: {io}"))
            }
            std::io::ErrorKind::NotConnected => (Code::Cancelled, "call cancelled".to_string()),
            _ => (Code::Io, format!("i/o error: {io}")),
        },
        U::Tls(m) => (Code::Tls, format!("TLS error: {m}")),
        U::Rustls(r) => (Code::Tls, format!("TLS error: {r}")),
        U::Pem(p) => (Code::Tls, format!("bad PEM certificate: {p}")),
        // ureq writes a request head into the transport's output window line
        // by line (ureq pins its version, so its message is stable).
        U::Protocol(p) if p.to_string().starts_with("output too small") => (
            Code::InvalidArgument,
            format!(
                "a request header line is longer than {} bytes",
                crate::net::buffers::OUTPUT_WINDOW
            ),
        ),
        U::Protocol(p) => (Code::Protocol, format!("HTTP protocol error: {p}")),
        U::BadUri(u) => (Code::InvalidArgument, format!("bad URL: {u}")),
        U::Http(h) => (Code::InvalidArgument, format!("bad request: {h}")),
        U::LargeResponseHeader(a, b) => (
            Code::Protocol,
            format!("response header too large ({a} > {b} bytes)"),
        ),
        U::BodyExceedsLimit(n) => (
            Code::Protocol,
            format!("response body exceeds the limit of {n} bytes"),
        ),
        U::BodyStalled => (Code::Timeout, "response body stalled".to_string()),
        other => (Code::Io, other.to_string()),
    };
    Error::new(code, msg)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_keep_their_numbers_and_names() {
        let expected = [
            (0, "LLMPOOL_OK"),
            (1, "LLMPOOL_INVALID_ARGUMENT"),
            (2, "LLMPOOL_CONNECT"),
            (3, "LLMPOOL_TLS"),
            (4, "LLMPOOL_TIMEOUT"),
            (5, "LLMPOOL_HTTP_STATUS"),
            (6, "LLMPOOL_IO"),
            (7, "LLMPOOL_PROTOCOL"),
            (8, "LLMPOOL_POOL_EXHAUSTED"),
            (9, "LLMPOOL_BUDGET_EXCEEDED"),
            (10, "LLMPOOL_CANCELLED"),
            (11, "LLMPOOL_RATE_LIMITED"),
            (99, "LLMPOOL_PANIC"),
        ];
        for (n, name) in expected {
            let c = Code::from_i32(n).unwrap();
            assert_eq!(c as i32, n);
            assert_eq!(c.name(), name);
        }
        assert_eq!(Code::from_i32(12), None);
        assert_eq!(Code::from_i32(-1), None);
    }

    #[test]
    fn timeouts_name_their_phase() {
        let e = from_ureq(&ureq::Error::Timeout(ureq::Timeout::Connect));
        assert_eq!(e.code, Code::Timeout);
        assert!(e.message.contains("connecting"), "{}", e.message);
        let e = from_ureq(&ureq::Error::Timeout(ureq::Timeout::RecvResponse));
        assert!(e.message.contains("response headers"), "{}", e.message);
    }
}
