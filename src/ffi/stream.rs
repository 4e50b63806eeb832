//! Streaming chat completions: tokens handed to a callback as they arrive.

use std::ffi::{c_char, c_int, c_void};

use super::call::{client_ref, run_call};
use super::client::llmpool_client;
use super::code::llmpool_code;
use super::response::llmpool_response;
use super::util::{str_arg, UserData};
use crate::assemble::Api;
use crate::error::Error;

/// Called by `llmpool_chat_stream` once per chunk event, in order, on the
/// thread that called `llmpool_chat_stream`.
///
/// `delta` is the chunk's `delta.content` of choice 0 (`delta_len` bytes of
/// UTF-8, possibly 0: the first chunk carries only the role and the last one
/// only the usage); `event_json` is the event's raw JSON (`event_len` bytes,
/// never empty). Both are also NUL-terminated (`delta[delta_len] == 0`), are
/// owned by llmpool and are valid only until the callback returns: copy what
/// you keep. Use the lengths: `delta` holds a NUL byte only where the model
/// sent U+0000, and then `strlen(delta) < delta_len`. `userdata` is passed
/// through unchanged.
///
/// Return 0 to go on; any other value aborts the stream, and
/// `llmpool_chat_stream` then returns `LLMPOOL_CANCELLED` with the text
/// received so far. The callback must not free the client; it may call
/// other llmpool functions, including calls on the same client.
pub type llmpool_stream_cb = Option<
    unsafe extern "C" fn(
        userdata: *mut c_void,
        delta: *const c_char,
        delta_len: usize,
        event_json: *const c_char,
        event_len: usize,
    ) -> c_int,
>;

/// Streams a chat completion: `POST {base_url}/chat/completions` with
/// `request_json` (a JSON object) plus `"stream": true` and, unless the
/// request sets `stream_options.include_usage` itself,
/// `"stream_options": {"include_usage": true}`. Blocks the calling thread
/// until the stream ends, calling `cb(userdata, ...)` on this thread for
/// every chunk as it arrives (see `llmpool_stream_cb`).
///
/// When `out` is non-NULL, `*out` always receives a response (success or
/// failure); free it with `llmpool_response_free`. Its text is choice 0's
/// content received, joined (also after a failure); its completion
/// (`llmpool_response_completion`) the assembled `chat.completion`; its body is
/// the raw SSE bytes read (a non-2xx answer keeps its JSON body); its info
/// adds `ttft_ms` (milliseconds to the first non-empty delta, or null),
/// `chunks` (callbacks made), `finish_reason` (or null), `usage` from the
/// final usage chunk, `cost_usd` when priced, and `stream_error` after a
/// mid-stream error event.
///
/// Returns:
/// - `LLMPOOL_OK` when `data: [DONE]` arrived (the connection then goes back
///   to the pool);
/// - `LLMPOOL_CANCELLED` when `cb` returned non-zero, or
///   `llmpool_client_cancel` was called on the client from another thread
///   (blocked reads return at once);
/// - `LLMPOOL_PROTOCOL` when the server sent an error object (or an
///   `event: error`) mid-stream (its message is in the error text, the
///   HTTP status stays 2xx) or a malformed chunk;
/// - `LLMPOOL_IO` when the connection dropped mid-stream;
/// - `LLMPOOL_TIMEOUT` when no data arrived for `stream_idle_timeout_ms`
///   (there is no whole-call timeout for streams; `timeout_ms` bounds the
///   wait for the response headers);
/// - `LLMPOOL_HTTP_STATUS` for a non-2xx answer, with status and JSON error
///   body kept and `cb` never called (429/5xx are retried first, as for
///   `llmpool_chat`);
///
/// A stream that fails before its first delta (a dropped connection, an
/// error event, `stream_idle_timeout_ms`, or no delta within
/// `first_token_timeout_ms` while the server sends keep-alives) is sent
/// again or failed over within `max_retries`, like a call without a stream:
/// `cb` may then see the events without text that came first (the role
/// chunk) again, never a delta. After the first delta a stream is never
/// sent again.
/// - `LLMPOOL_INVALID_ARGUMENT` without network traffic for a NULL client,
///   request or `cb`, or invalid UTF-8 or JSON.
///
/// # Safety
/// `client` is NULL or a live client; `request_json` is NULL or
/// NUL-terminated; `cb` is NULL or safe to call with `userdata`; `out` is
/// NULL or valid for one pointer write.
#[no_mangle]
pub unsafe extern "C" fn llmpool_chat_stream(
    client: *mut llmpool_client,
    request_json: *const c_char,
    cb: llmpool_stream_cb,
    userdata: *mut c_void,
    out: *mut *mut llmpool_response,
) -> llmpool_code {
    // SAFETY: all pointers per the documented contract.
    unsafe { stream_call(Api::Chat, "cb", client, request_json, cb, userdata, out) }
}

/// A blocking stream of `api` with an events callback (`cb_name` names
/// the callback argument in the error when it is NULL).
///
/// # Safety
/// As for `llmpool_chat_stream`.
pub(crate) unsafe fn stream_call(
    api: Api,
    cb_name: &str,
    client: *mut llmpool_client,
    request_json: *const c_char,
    cb: llmpool_stream_cb,
    userdata: *mut c_void,
    out: *mut *mut llmpool_response,
) -> llmpool_code {
    // SAFETY: all pointers per the documented contract.
    unsafe {
        run_call(out, || {
            let c = client_ref(client)?;
            let req = str_arg(request_json, "request_json")?;
            let cb = cb.ok_or_else(|| Error::invalid(format!("{cb_name}: is NULL")))?;
            // SAFETY: the caller vouches for `cb` and `userdata` on this
            // thread, the only one a blocking stream calls back on.
            #[allow(unused_unsafe)]
            let mut f = unsafe { c_stream_fn(cb, UserData(userdata)) };
            Ok(c.client.stream_events(api, req, &mut f))
        })
    }
}

/// The Rust side of an `llmpool_stream_cb`: passes each chunk to `cb` as
/// NUL-terminated copies (buffers reused across chunks); a nonzero return
/// aborts the stream.
///
/// # Safety
/// `cb` must be safe to call with `ud` on every thread the returned
/// closure is called on.
pub(crate) unsafe fn c_stream_fn(
    cb: unsafe extern "C" fn(*mut c_void, *const c_char, usize, *const c_char, usize) -> c_int,
    ud: UserData,
) -> impl FnMut(&str, &str) -> bool + Send {
    let mut delta_buf: Vec<u8> = Vec::new();
    let mut event_buf: Vec<u8> = Vec::new();
    move |delta: &str, event: &str| {
        let ud = ud;
        nul_terminated(&mut delta_buf, delta);
        nul_terminated(&mut event_buf, event);
        // SAFETY: the caller of `c_stream_fn` vouches for `cb` and `ud`;
        // both buffers are live and NUL-terminated for the whole callback.
        let rc = unsafe {
            cb(
                ud.0,
                delta_buf.as_ptr() as *const c_char,
                delta.len(),
                event_buf.as_ptr() as *const c_char,
                event.len(),
            )
        };
        rc == 0
    }
}

/// Replaces `buf` with `s` followed by a NUL byte.
pub(crate) fn nul_terminated(buf: &mut Vec<u8>, s: &str) {
    buf.clear();
    buf.extend_from_slice(s.as_bytes());
    buf.push(0);
}
