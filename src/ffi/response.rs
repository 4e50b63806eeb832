//! `llmpool_response`: one call's result, owned by the caller.

use std::ffi::{c_char, CString};
use std::sync::OnceLock;
use std::time::Instant;

use super::code::llmpool_code;
use super::util::{c_string, guard, str_arg};
use crate::body::Matrix;
use crate::error::{Code, Error};
use crate::headers::Headers;
use crate::response::{Completion, Info, Response};

/// The result of one call, success or failure. Created by llmpool, owned by
/// the caller, freed with `llmpool_response_free`. Accessors never fail: the
/// strings they return live until the response is freed. A response may be
/// read from any thread, but not freed while another thread reads it.
pub struct llmpool_response {
    code: Code,
    status: u16,
    /// The body with a NUL appended, so C can treat it as a string.
    body: Vec<u8>,
    text: CString,
    error: CString,
    /// The call's record; JSON only here, at the C boundary.
    info_record: Info,
    /// `info_record` as JSON text, made on first use: most callers never
    /// read it, and serialising it on every call showed up on loopback
    /// benchmarks.
    info: OnceLock<CString>,
    /// The answer in its API's non-streaming shape, as JSON text, made on
    /// first use.
    completion_record: Completion,
    completion: OnceLock<Option<CString>>,
    /// The async call this answers (`info.call_id`), 0 for blocking calls.
    call_id: u64,
    /// The embedding vectors, decoded on first use (see `ffi/embeddings.rs`).
    pub(crate) embeddings: OnceLock<Embeddings>,
    /// Response headers (lower-case names), as received.
    headers: Headers,
    /// `headers` as C strings, one per name (repeated headers joined with
    /// ", "), made on the first `llmpool_response_header`.
    header_c: OnceLock<Vec<(String, CString)>>,
}

/// A decoded float matrix, or why there is none (code and message).
pub(crate) type Embeddings = Result<Matrix, (Code, CString)>;

impl llmpool_response {
    /// The body without the NUL the C API appended.
    pub(crate) fn body_bytes(&self) -> &[u8] {
        &self.body[..self.body.len() - 1]
    }

    /// The call's code and error message.
    pub(crate) fn outcome(&self) -> (Code, &CString) {
        (self.code, &self.error)
    }

    pub(crate) fn new(r: Response) -> llmpool_response {
        let mut body = r.body;
        body.push(0);
        let call_id = r.info.call_id.unwrap_or(0);
        llmpool_response {
            call_id,
            code: r.code,
            status: r.status,
            text: c_string(&r.text),
            error: c_string(&r.error),
            info_record: *r.info,
            completion_record: r.completion,
            completion: OnceLock::new(),
            info: OnceLock::new(),
            embeddings: OnceLock::new(),
            body,
            headers: r.headers,
            header_c: OnceLock::new(),
        }
    }

    fn header(&self, name: &str) -> Option<&CString> {
        let all = self.header_c.get_or_init(|| {
            let joined = self.headers.joined();
            joined.into_iter().map(|(k, v)| (k, c_string(&v))).collect()
        });
        all.iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v)
    }

    /// Boxes a response into `*out` (if `out` is non-NULL) and returns its code.
    ///
    /// # Safety
    /// `out` is NULL or valid for one pointer write.
    pub(crate) unsafe fn deliver(r: Response, out: *mut *mut llmpool_response) -> llmpool_code {
        let code = r.code;
        if !out.is_null() {
            // SAFETY: caller guarantees `out` is writable.
            unsafe { *out = Box::into_raw(Box::new(llmpool_response::new(r))) };
        }
        code.into()
    }
}

/// The response's result code (`LLMPOOL_INVALID_ARGUMENT` for a NULL response).
///
/// # Safety
/// `r` is NULL or a response from llmpool that has not been freed.
#[no_mangle]
pub unsafe extern "C" fn llmpool_response_code(r: *const llmpool_response) -> llmpool_code {
    // SAFETY: NULL or a live response from llmpool.
    match unsafe { r.as_ref() } {
        Some(r) => r.code.into(),
        None => llmpool_code::LLMPOOL_INVALID_ARGUMENT,
    }
}

/// The HTTP status of the last answer, or 0 when no HTTP answer arrived (or
/// `r` is NULL).
///
/// # Safety
/// `r` is NULL or a response from llmpool that has not been freed.
#[no_mangle]
pub unsafe extern "C" fn llmpool_response_status(r: *const llmpool_response) -> u16 {
    // SAFETY: NULL or a live response from llmpool.
    unsafe { r.as_ref() }.map_or(0, |r| r.status)
}

/// The raw response body, NUL-terminated; `*len` (if `len` is non-NULL)
/// receives its length without the NUL (the body itself may contain NULs).
/// Never NULL: "" when there is no body or `r` is NULL. Owned by `r`.
/// A successful stream's SSE bytes are kept only with the option
/// `keep_stream_body` (else ""; its text and completion are kept either
/// way); a stream's non-2xx answer always keeps its body.
///
/// # Safety
/// `r` is NULL or a response from llmpool that has not been freed.
#[no_mangle]
pub unsafe extern "C" fn llmpool_response_body(
    r: *const llmpool_response,
    len: *mut usize,
) -> *const c_char {
    // SAFETY: NULL or a live response from llmpool.
    let (ptr, n) = match unsafe { r.as_ref() } {
        Some(r) => (r.body.as_ptr() as *const c_char, r.body.len() - 1),
        None => (c"".as_ptr(), 0),
    };
    if !len.is_null() {
        // SAFETY: caller passes NULL or a writable size_t.
        unsafe { *len = n };
    }
    ptr
}

/// The answer's text: choice 0's content of a chat answer (streamed or
/// not), the output text of a Responses answer, the text blocks of a
/// Messages answer; else "". Never NULL. Owned by `r`.
///
/// # Safety
/// `r` is NULL or a response from llmpool that has not been freed.
#[no_mangle]
pub unsafe extern "C" fn llmpool_response_text(r: *const llmpool_response) -> *const c_char {
    // SAFETY: NULL or a live response from llmpool.
    unsafe { r.as_ref() }.map_or(c"".as_ptr(), |r| r.text.as_ptr())
}

/// Why the call failed ("" on success); for `LLMPOOL_HTTP_STATUS` it includes
/// the status and the server's error message. Never NULL. Owned by `r`.
/// Never contains the API key.
///
/// # Safety
/// `r` is NULL or a response from llmpool that has not been freed.
#[no_mangle]
pub unsafe extern "C" fn llmpool_response_error(r: *const llmpool_response) -> *const c_char {
    // SAFETY: NULL or a live response from llmpool.
    unsafe { r.as_ref() }.map_or(c"response is NULL".as_ptr(), |r| r.error.as_ptr())
}

/// Call details as a JSON object: `attempts`, `retries`, `connection_reused`,
/// `connections_opened`, `latency_ms`, `status`, `request_id` (from
/// `x-request-id`), `model`, `usage`, `endpoint`, and more as features add
/// them. Never NULL ("{}" for a NULL response). Owned by `r`.
///
/// # Safety
/// `r` is NULL or a response from llmpool that has not been freed.
#[no_mangle]
pub unsafe extern "C" fn llmpool_response_info(r: *const llmpool_response) -> *const c_char {
    // SAFETY: NULL or a live response from llmpool.
    unsafe { r.as_ref() }.map_or(c"{}".as_ptr(), |r| {
        r.info
            .get_or_init(|| c_string(&r.info_record.to_json(r.status).to_string()))
            .as_ptr()
    })
}

/// The answer as one JSON object in its API's non-streaming shape, or NULL
/// when there is none (a failed call without an answer, an HTTP error, an
/// embeddings or raw call, a NULL `r`). For a chat stream it is the
/// `chat.completion` the same request without `stream` would have
/// returned (every choice in index order with `message.content`,
/// `refusal`, reasoning fields under the names the gateway used,
/// `tool_calls`, `finish_reason`, joined `logprobs`; `usage` from the
/// stream); for a Responses stream the final `response`; for a Messages
/// stream the final `message`; for a call without `stream`, the body. A
/// stream that failed or was cancelled keeps what arrived
/// (`finish_reason: null` where none came). Owned by `r`: valid until
/// `llmpool_response_free(r)`.
///
/// # Safety
/// `r` is NULL or a response from llmpool that has not been freed.
#[no_mangle]
pub unsafe extern "C" fn llmpool_response_completion(r: *const llmpool_response) -> *const c_char {
    guard(
        |_| std::ptr::null(),
        || {
            // SAFETY: NULL or a live response from llmpool.
            let Some(r) = (unsafe { r.as_ref() }) else {
                return std::ptr::null();
            };
            let text = r.completion.get_or_init(|| match &r.completion_record {
                Completion::None => None,
                Completion::Body => Some(c_string(&String::from_utf8_lossy(r.body_bytes()))),
                Completion::Assembled(v) => Some(c_string(&v.to_string())),
            });
            text.as_ref().map_or(std::ptr::null(), |c| c.as_ptr())
        },
    )
}

/// The id of the async call this response answers (as `llmpool_call_id`
/// and `call_id` in the info); 0 for blocking calls and a NULL response.
///
/// # Safety
/// `r` is NULL or a response from llmpool that has not been freed.
#[no_mangle]
pub unsafe extern "C" fn llmpool_response_call_id(r: *const llmpool_response) -> u64 {
    // SAFETY: NULL or a live response from llmpool.
    unsafe { r.as_ref() }.map_or(0, |r| r.call_id)
}

/// The value of the response header `name` (case-insensitive, e.g.
/// `"content-type"`, `"x-request-id"`, `"x-ratelimit-remaining-requests"`),
/// or NULL when the answer had no such header, `r` or `name` is NULL, or no
/// HTTP answer arrived. A header sent several times gives its values joined
/// with ", ". Owned by `r`: valid until `llmpool_response_free(r)`.
///
/// # Safety
/// `r` is NULL or a response from llmpool that has not been freed; `name`
/// is NULL or NUL-terminated.
#[no_mangle]
pub unsafe extern "C" fn llmpool_response_header(
    r: *const llmpool_response,
    name: *const c_char,
) -> *const c_char {
    guard(
        |_| std::ptr::null(),
        || {
            // SAFETY: NULL or a live response from llmpool.
            let Some(r) = (unsafe { r.as_ref() }) else {
                return std::ptr::null();
            };
            // SAFETY: NULL or NUL-terminated, per the contract.
            let Ok(name) = (unsafe { str_arg(name, "name") }) else {
                return std::ptr::null();
            };
            r.header(name).map_or(std::ptr::null(), |v| v.as_ptr())
        },
    )
}

/// Frees a response. NULL is a no-op. Freeing twice is undefined behaviour.
///
/// # Safety
/// `r` is NULL or a response from llmpool that has not been freed.
#[no_mangle]
pub unsafe extern "C" fn llmpool_response_free(r: *mut llmpool_response) {
    if r.is_null() {
        return;
    }
    guard(
        |_| (),
        || {
            // SAFETY: non-NULL and created by Box::into_raw in `deliver`.
            drop(unsafe { Box::from_raw(r) });
        },
    );
}

/// Builds the response returned when a panic was caught.
pub(crate) fn panic_response(msg: String) -> Response {
    Response::failed(Error::new(Code::Panic, msg), Instant::now())
}
