//! Typed deltas: each piece of a stream with its kind (content, reasoning,
//! refusal, a tool call's arguments), for any of the three APIs, blocking
//! or not. The events callbacks (`llmpool_stream_cb`) stay as they are.

use std::ffi::{c_char, c_int, c_void};

use super::async_call::{llmpool_call, llmpool_done_cb, submit};
use super::call::{client_ref, run_call};
use super::client::llmpool_client;
use super::code::llmpool_code;
use super::response::llmpool_response;
use super::stream::nul_terminated;
use super::util::{str_arg, UserData};
use crate::assemble::{Api, Delta, DeltaKind};
use crate::error::Error;

/// The API a stream speaks (the `api` argument of `llmpool_stream_deltas`).
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum llmpool_api {
    /// `POST /chat/completions` (as `llmpool_chat_stream`).
    LLMPOOL_API_CHAT = 0,
    /// `POST /responses` (as `llmpool_responses_stream`).
    LLMPOOL_API_RESPONSES = 1,
    /// `POST /messages` (as `llmpool_messages_stream`).
    LLMPOOL_API_MESSAGES = 2,
}

/// What a delta carries.
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum llmpool_delta_kind {
    /// Answer text (chat `content`, Responses `output_text`, Messages `text_delta`).
    LLMPOOL_DELTA_CONTENT = 0,
    /// Reasoning text (`reasoning_content` / `reasoning`, reasoning summary
    /// deltas, `thinking_delta`): show it as "thinking…".
    LLMPOOL_DELTA_REASONING = 1,
    /// A refusal's text.
    LLMPOOL_DELTA_REFUSAL = 2,
    /// A fragment of a tool call's arguments (may be empty, e.g. the
    /// fragment that only names the call).
    LLMPOOL_DELTA_TOOL_CALL = 3,
}

/// One delta, valid only while the callback runs (copy what you keep).
#[repr(C)]
pub struct llmpool_delta {
    pub kind: llmpool_delta_kind,
    /// The choice it belongs to (chat `n` > 1); 0 for the other APIs.
    pub choice: u32,
    /// For a tool call: its position among the choice's calls (chat), its
    /// output item (Responses) or its content block (Messages); else 0.
    pub call_index: u32,
    /// A tool call's id once known, else NULL. NUL-terminated.
    pub id: *const c_char,
    /// A tool call's function name once known, else NULL. NUL-terminated.
    pub name: *const c_char,
    /// The text or argument fragment: `text_len` bytes of UTF-8, also
    /// NUL-terminated. Never NULL.
    pub text: *const c_char,
    pub text_len: usize,
}

/// Receives each typed delta of a stream, in order: on the calling thread
/// for `llmpool_stream_deltas`, on a library thread for
/// `llmpool_stream_deltas_async` (never two at once for one call).
/// `delta` and its strings are owned by llmpool and valid only until the
/// callback returns. Return 0 to go on; any other value aborts the stream
/// with `LLMPOOL_CANCELLED` (what arrived is kept in the response).
pub type llmpool_delta_cb =
    Option<unsafe extern "C" fn(userdata: *mut c_void, delta: *const llmpool_delta) -> c_int>;

/// Streams `request_json` on `api` (an `llmpool_api` value), calling
/// `on_delta(userdata, delta)` for each typed delta; otherwise exactly like
/// `llmpool_chat_stream`, `llmpool_responses_stream` or
/// `llmpool_messages_stream` (same request, response, codes). An `api`
/// that is not an `llmpool_api` value, or a NULL `on_delta`, is
/// `LLMPOOL_INVALID_ARGUMENT` without network traffic.
///
/// # Safety
/// `client` is NULL or a live client; `request_json` is NULL or
/// NUL-terminated; `on_delta` is NULL or safe to call with `userdata` on
/// this thread; `out` is NULL or valid for one pointer write.
#[no_mangle]
pub unsafe extern "C" fn llmpool_stream_deltas(
    client: *mut llmpool_client,
    api: c_int,
    request_json: *const c_char,
    on_delta: llmpool_delta_cb,
    userdata: *mut c_void,
    out: *mut *mut llmpool_response,
) -> llmpool_code {
    // SAFETY: all pointers per the documented contract.
    unsafe {
        run_call(out, || {
            let c = client_ref(client)?;
            let api = api_arg(api)?;
            let req = str_arg(request_json, "request_json")?;
            let cb = on_delta.ok_or_else(|| Error::invalid("on_delta: is NULL"))?;
            // SAFETY: the caller vouches for `cb` and `userdata` on this thread.
            #[allow(unused_unsafe)]
            let mut f = unsafe { c_delta_fn(cb, UserData(userdata)) };
            Ok(c.client.stream_deltas(api, req, &mut f))
        })
    }
}

/// `llmpool_stream_deltas` without blocking: `on_delta` runs on a library
/// thread for each delta, then `done` once with the response; otherwise
/// exactly like `llmpool_chat_stream_async`.
///
/// # Safety
/// As for `llmpool_chat_stream_async`; `on_delta` is NULL or safe to call
/// from any thread with `userdata`.
#[no_mangle]
pub unsafe extern "C" fn llmpool_stream_deltas_async(
    client: *mut llmpool_client,
    api: c_int,
    request_json: *const c_char,
    on_delta: llmpool_delta_cb,
    done: llmpool_done_cb,
    userdata: *mut c_void,
    call: *mut *mut llmpool_call,
) -> llmpool_code {
    // SAFETY: all pointers per the documented contract.
    unsafe {
        submit(client, done, userdata, call, |c, d| {
            let api = api_arg(api)?;
            let req = str_arg(request_json, "request_json")?;
            let cb = on_delta.ok_or_else(|| Error::invalid("on_delta: is NULL"))?;
            // SAFETY: the caller vouches for `on_delta` and `userdata` on
            // library threads.
            #[allow(unused_unsafe)]
            let f = Box::new(unsafe { c_delta_fn(cb, UserData(userdata)) });
            c.stream_deltas_async(api, req, f, d)
        })
    }
}

pub(super) fn api_arg(api: c_int) -> Result<Api, Error> {
    match api {
        0 => Ok(Api::Chat),
        1 => Ok(Api::Responses),
        2 => Ok(Api::Messages),
        n => Err(Error::invalid(format!(
            "api: expected LLMPOOL_API_CHAT (0), LLMPOOL_API_RESPONSES (1) or LLMPOOL_API_MESSAGES (2), got {n}"
        ))),
    }
}

pub(super) fn delta_kind(k: DeltaKind) -> llmpool_delta_kind {
    match k {
        DeltaKind::Content => llmpool_delta_kind::LLMPOOL_DELTA_CONTENT,
        DeltaKind::Reasoning => llmpool_delta_kind::LLMPOOL_DELTA_REASONING,
        DeltaKind::Refusal => llmpool_delta_kind::LLMPOOL_DELTA_REFUSAL,
        DeltaKind::ToolCall => llmpool_delta_kind::LLMPOOL_DELTA_TOOL_CALL,
    }
}

impl llmpool_delta {
    /// No delta (the `delta` of an event that is not one).
    pub(super) fn empty() -> llmpool_delta {
        llmpool_delta {
            kind: llmpool_delta_kind::LLMPOOL_DELTA_CONTENT,
            choice: 0,
            call_index: 0,
            id: std::ptr::null(),
            name: std::ptr::null(),
            text: std::ptr::null(),
            text_len: 0,
        }
    }
}

/// The Rust side of an `llmpool_delta_cb` (buffers reused across deltas).
///
/// # Safety
/// `cb` must be safe to call with `ud` on every thread the returned
/// closure is called on.
unsafe fn c_delta_fn(
    cb: unsafe extern "C" fn(*mut c_void, *const llmpool_delta) -> c_int,
    ud: UserData,
) -> impl FnMut(&Delta) -> bool + Send {
    let (mut text, mut id, mut name) = (Vec::new(), Vec::new(), Vec::new());
    move |d: &Delta| {
        let ud = ud;
        nul_terminated(&mut text, d.text);
        let opt = |buf: &mut Vec<u8>, s: Option<&str>| match s {
            Some(s) => {
                nul_terminated(buf, s);
                buf.as_ptr() as *const c_char
            }
            None => std::ptr::null(),
        };
        let delta = llmpool_delta {
            kind: delta_kind(d.kind),
            choice: d.choice,
            call_index: d.call_index,
            id: opt(&mut id, d.id),
            name: opt(&mut name, d.name),
            text: text.as_ptr() as *const c_char,
            text_len: d.text.len(),
        };
        // SAFETY: the caller of `c_delta_fn` vouches for `cb` and `ud`; the
        // buffers behind `delta` live until after the callback returns.
        unsafe { cb(ud.0, &delta) == 0 }
    }
}
