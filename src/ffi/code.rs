//! Result codes, their names, and the library version.

use std::ffi::{c_char, c_int};

use crate::error::Code;

/// Result codes. The numbers are stable: they never change between versions,
/// and new codes only ever get new numbers.
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum llmpool_code {
    /// Success.
    LLMPOOL_OK = 0,
    /// A NULL pointer, invalid UTF-8, invalid JSON, an unknown option or a
    /// wrong type; the message names the offending argument or key.
    LLMPOOL_INVALID_ARGUMENT = 1,
    /// The TCP connection could not be made (refused, unreachable, DNS).
    LLMPOOL_CONNECT = 2,
    /// The TLS handshake failed (unknown CA, bad certificate, protocol).
    LLMPOOL_TLS = 3,
    /// A timeout expired; the message names the phase.
    LLMPOOL_TIMEOUT = 4,
    /// The server answered with a non-2xx status; status and body are kept.
    LLMPOOL_HTTP_STATUS = 5,
    /// The connection failed mid-call (reset, closed early).
    LLMPOOL_IO = 6,
    /// The server's answer was not valid HTTP or not the JSON expected.
    LLMPOOL_PROTOCOL = 7,
    /// `max_concurrency` calls were in flight for longer than `queue_timeout_ms`.
    LLMPOOL_POOL_EXHAUSTED = 8,
    /// The call would exceed a configured budget; it was not sent.
    LLMPOOL_BUDGET_EXCEEDED = 9,
    /// The call was cancelled by `llmpool_client_cancel` or a callback.
    LLMPOOL_CANCELLED = 10,
    /// A rate limit (`rate_limits`, or the gateway's `x-ratelimit-*` headers
    /// saying nothing remains) would need a longer wait than
    /// `queue_timeout_ms`; the call was not sent.
    LLMPOOL_RATE_LIMITED = 11,
    /// A bug inside llmpool was caught at the C boundary.
    LLMPOOL_PANIC = 99,
}

impl From<Code> for llmpool_code {
    fn from(c: Code) -> llmpool_code {
        use llmpool_code::*;
        match c {
            Code::Ok => LLMPOOL_OK,
            Code::InvalidArgument => LLMPOOL_INVALID_ARGUMENT,
            Code::Connect => LLMPOOL_CONNECT,
            Code::Tls => LLMPOOL_TLS,
            Code::Timeout => LLMPOOL_TIMEOUT,
            Code::HttpStatus => LLMPOOL_HTTP_STATUS,
            Code::Io => LLMPOOL_IO,
            Code::Protocol => LLMPOOL_PROTOCOL,
            Code::PoolExhausted => LLMPOOL_POOL_EXHAUSTED,
            Code::BudgetExceeded => LLMPOOL_BUDGET_EXCEEDED,
            Code::Cancelled => LLMPOOL_CANCELLED,
            Code::RateLimited => LLMPOOL_RATE_LIMITED,
            Code::Panic => LLMPOOL_PANIC,
        }
    }
}

/// The library version, e.g. "0.1.0". Static storage: never free it.
#[no_mangle]
pub extern "C" fn llmpool_version() -> *const c_char {
    concat!(env!("CARGO_PKG_VERSION"), "\0").as_ptr() as *const c_char
}

/// The name of a result code, e.g. "LLMPOOL_TIMEOUT", or "LLMPOOL_UNKNOWN"
/// for a number that is not a code. Static storage: never free it.
///
/// Takes an `int` rather than `llmpool_code` so that any number a caller
/// passes is well defined.
#[no_mangle]
pub extern "C" fn llmpool_code_name(code: c_int) -> *const c_char {
    let name = Code::from_i32(code).map_or("LLMPOOL_UNKNOWN\0", Code::c_name);
    name.as_ptr() as *const c_char
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::ffi::CStr;

    #[test]
    fn c_names_match_core_names_and_numbers() {
        for c in Code::ALL {
            let p = llmpool_code_name(c as i32);
            let s = unsafe { CStr::from_ptr(p) }.to_str().unwrap();
            assert_eq!(s, c.name());
            assert_eq!(llmpool_code::from(c) as i32, c as i32);
        }
        let p = llmpool_code_name(12345);
        assert_eq!(
            unsafe { CStr::from_ptr(p) }.to_str().unwrap(),
            "LLMPOOL_UNKNOWN"
        );
    }
}
