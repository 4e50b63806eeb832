//! The log callback: `llmpool_client_set_log_callback`.

use std::ffi::{c_char, c_int, c_void};
use std::sync::Arc;

use super::client::{client_op, llmpool_client};
use super::code::llmpool_code;
use super::util::c_string;
use crate::error::Error;
use crate::log::Level;

/// Log levels, from the most to the least severe. The numbers are stable.
/// A callback set with `min_level` receives every line whose level number is
/// at most `min_level`.
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum llmpool_log_level {
    /// A call failed (transport error, protocol error).
    LLMPOOL_LOG_ERROR = 1,
    /// Retries, failovers, circuit breakers opening, budget refusals,
    /// calls that ended with an HTTP error status.
    LLMPOOL_LOG_WARN = 2,
    /// One line per answer, new connections (address, TLS version,
    /// handshake time), reconnects, key refreshes, rate-limit waits, cache
    /// hits, stream ends.
    LLMPOOL_LOG_INFO = 3,
    /// Requests sent (method, URL), pooled connections reused and closed
    /// (and why), stream start and first token.
    LLMPOOL_LOG_DEBUG = 4,
    /// Request and response bodies, only with the option `"log_bodies": true`.
    LLMPOOL_LOG_TRACE = 5,
}

/// Receives one log line. `level` is an `llmpool_log_level`; `message` is
/// `len` bytes of UTF-8 without a trailing newline, also NUL-terminated,
/// owned by llmpool and valid only until the callback returns. Lines start
/// with `call=N` (a process-wide call id) when they belong to a call, and
/// carry `request_id=...` on answers that had one.
///
/// THE CALLBACK MAY RUN ON ANY THREAD, several at once: on every thread that
/// makes a call on the client, and on whichever thread drops a pooled
/// connection. It must be thread-safe, return quickly, and must not free
/// the client; it may call other llmpool functions. The API key, proxy
/// credentials and passwords in URLs never appear in a line.
pub type llmpool_log_cb = Option<
    unsafe extern "C" fn(userdata: *mut c_void, level: c_int, message: *const c_char, len: usize),
>;

/// The caller's callback and userdata, called from any thread.
struct CCallback {
    cb: unsafe extern "C" fn(*mut c_void, c_int, *const c_char, usize),
    userdata: *mut c_void,
}

// SAFETY: the contract of `llmpool_client_set_log_callback` makes the
// caller promise that `cb` may be called with `userdata` from any thread.
unsafe impl Send for CCallback {}
// SAFETY: as above; llmpool only passes `userdata` through.
unsafe impl Sync for CCallback {}

impl CCallback {
    fn call(&self, level: Level, line: &str) {
        let s = c_string(line);
        let len = s.as_bytes().len();
        // SAFETY: `cb` is callable with `userdata` per the caller's
        // contract; `s` outlives the call.
        unsafe { (self.cb)(self.userdata, level as c_int, s.as_ptr(), len) }
    }
}

/// Sends the client's log lines to `cb(userdata, level, message, len)`:
/// every line whose level is at most `min_level` (an `llmpool_log_level`,
/// 1..5). Replaces an earlier callback and the `LLMPOOL_LOG` stderr
/// fallback. NULL `cb` turns logging off (then `min_level` is ignored).
///
/// Without a callback, the environment variable
/// `LLMPOOL_LOG=error|warn|info|debug|trace`, read when the client is
/// created, writes the lines to stderr.
///
/// Returns `LLMPOOL_INVALID_ARGUMENT` for a NULL client or, with a non-NULL
/// `cb`, a `min_level` outside 1..5 (the old setting is then kept).
///
/// # Safety
/// `client` is NULL or a live client. `cb` is NULL or a function that may be
/// called with `userdata` from any thread, concurrently, until the client
/// is freed; after a call that replaces it, lines being delivered at that
/// moment on other threads may still reach the old callback.
#[no_mangle]
pub unsafe extern "C" fn llmpool_client_set_log_callback(
    client: *mut llmpool_client,
    min_level: c_int,
    cb: llmpool_log_cb,
    userdata: *mut c_void,
) -> llmpool_code {
    // SAFETY: `client` per the documented contract.
    unsafe {
        client_op(client, |c| {
            match cb {
                None => c.set_log_sink(0, None),
                Some(cb) => {
                    if !(1..=5).contains(&min_level) {
                        return Err(Error::invalid(format!(
                            "min_level: expected 1 (LLMPOOL_LOG_ERROR) to 5 (LLMPOOL_LOG_TRACE), got {min_level}"
                        )));
                    }
                    let f = CCallback { cb, userdata };
                    c.set_log_sink(min_level, Some(Arc::new(move |l, s: &str| f.call(l, s))));
                }
            }
            Ok(())
        })
    }
}
