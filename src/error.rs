//! Result codes and the error type shared by the Rust API and the C API.

use std::fmt;

/// The one table of result codes: variant, number (part of the C ABI:
/// never changed, new codes get new numbers) and C name. `ffi::code`
/// mirrors it as the `llmpool_code` enum cbindgen writes into the header,
/// and a test compares both with the header.
macro_rules! codes {
    ($($variant:ident = $n:literal => $name:literal,)*) => {
        /// Stable result codes (see [`codes!`]).
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        #[repr(i32)]
        pub enum Code {
            $($variant = $n,)*
        }

        impl Code {
            /// Every code, for tests and for `llmpool_code_name`.
            pub const ALL: [Code; [$($n),*].len()] = [$(Code::$variant),*];

            /// The C name with a NUL, for C callers.
            pub fn c_name(self) -> &'static str {
                match self {
                    $(Code::$variant => concat!($name, "\0"),)*
                }
            }
        }
    };
}

codes! {
    Ok = 0 => "LLMPOOL_OK",
    InvalidArgument = 1 => "LLMPOOL_INVALID_ARGUMENT",
    Connect = 2 => "LLMPOOL_CONNECT",
    Tls = 3 => "LLMPOOL_TLS",
    Timeout = 4 => "LLMPOOL_TIMEOUT",
    HttpStatus = 5 => "LLMPOOL_HTTP_STATUS",
    Io = 6 => "LLMPOOL_IO",
    Protocol = 7 => "LLMPOOL_PROTOCOL",
    PoolExhausted = 8 => "LLMPOOL_POOL_EXHAUSTED",
    BudgetExceeded = 9 => "LLMPOOL_BUDGET_EXCEEDED",
    Cancelled = 10 => "LLMPOOL_CANCELLED",
    RateLimited = 11 => "LLMPOOL_RATE_LIMITED",
    Panic = 99 => "LLMPOOL_PANIC",
}

impl Code {
    /// The C name of the code, e.g. `"LLMPOOL_TIMEOUT"`.
    pub fn name(self) -> &'static str {
        let n = self.c_name();
        &n[..n.len() - 1]
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

    /// The header is the published table: every code there, with its
    /// number, and nothing else.
    #[test]
    fn codes_match_the_header() {
        let h = include_str!("../include/llmpool.h");
        let start = h.find("enum llmpool_code").expect("enum in the header");
        let body = &h[start..start + h[start..].find('}').unwrap()];
        let mut published: Vec<(String, i32)> = body
            .lines()
            .filter_map(|l| {
                let (name, n) = l.trim().trim_end_matches(',').split_once(" = ")?;
                Some((name.to_string(), n.parse().ok()?))
            })
            .collect();
        published.sort_by_key(|(_, n)| *n);
        let ours: Vec<(String, i32)> = Code::ALL
            .iter()
            .map(|c| (c.name().to_string(), *c as i32))
            .collect();
        assert_eq!(published, ours);
        assert_eq!(Code::from_i32(12), None);
        assert_eq!(Code::from_i32(-1), None);
        assert_eq!(Code::Timeout.c_name(), "LLMPOOL_TIMEOUT\0");
    }
}
