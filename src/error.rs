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
}
