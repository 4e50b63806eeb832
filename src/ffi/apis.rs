//! OpenAI's Responses API and Anthropic's Messages API: the same shapes as
//! the chat functions (blocking, streaming, and both without blocking).

use std::ffi::{c_char, c_void};

use super::async_call::{llmpool_call, llmpool_done_cb, stream_call_async, submit};
use super::call::json_call;
use super::client::llmpool_client;
use super::code::llmpool_code;
use super::response::llmpool_response;
use super::stream::{llmpool_stream_cb, stream_call};
use super::util::str_arg;
use crate::assemble::Api;
use crate::client::Client;

/// `POST {base_url}/responses` (OpenAI's Responses API) with `request_json`,
/// through retries, failover, routing, the budget, rate limits, the cache
/// and metrics like `llmpool_chat`. `llmpool_response_text` is the output
/// text joined, `llmpool_response_completion` the `response` object, and
/// the cost comes from its `usage` (`input_tokens`, `output_tokens`,
/// `input_tokens_details.cached_tokens`). Results and ownership as for
/// `llmpool_chat`.
///
/// # Safety
/// As for `llmpool_chat`.
#[no_mangle]
pub unsafe extern "C" fn llmpool_responses(
    client: *mut llmpool_client,
    request_json: *const c_char,
    out: *mut *mut llmpool_response,
) -> llmpool_code {
    // SAFETY: all pointers per the documented contract.
    unsafe { json_call(client, request_json, out, Client::responses) }
}

/// `POST {base_url}/messages` (Anthropic's Messages API) with
/// `request_json`, like `llmpool_responses`. Sends `anthropic-version`
/// (option `anthropic_version`, default "2023-06-01") and the key as
/// `x-api-key` (option `anthropic_auth`: "x-api-key", the default, as
/// api.anthropic.com wants it, or "bearer" for relays that want
/// `Authorization: Bearer`). `llmpool_response_text` is the text blocks
/// joined; the cost counts cache reads and writes
/// (`cache_read_input_tokens`, `cache_creation_input_tokens`) at their
/// prices (`cached_input`, `cache_write_input`); a model without a
/// cache-write price costs "unknown" when the answer wrote to the cache.
///
/// # Safety
/// As for `llmpool_chat`.
#[no_mangle]
pub unsafe extern "C" fn llmpool_messages(
    client: *mut llmpool_client,
    request_json: *const c_char,
    out: *mut *mut llmpool_response,
) -> llmpool_code {
    // SAFETY: all pointers per the documented contract.
    unsafe { json_call(client, request_json, out, Client::messages) }
}

/// Streams the Responses API: `request_json` plus `"stream": true`,
/// `on_event(userdata, ...)` on the calling thread for every event in
/// order, with `delta` the event's `response.output_text.delta` text (""
/// for other events) and `event_json` its JSON. As `llmpool_chat_stream`
/// otherwise (non-zero from `on_event` aborts with `LLMPOOL_CANCELLED`).
///
/// The stream ends with `LLMPOOL_OK` at `response.completed` or
/// `response.incomplete` (then `info.finish_reason` says why, e.g.
/// "max_output_tokens"); `response.failed` and an `error` event give
/// `LLMPOOL_PROTOCOL` with the server's message; a body that ends before
/// any of them gives `LLMPOOL_IO`. `llmpool_response_completion` is the
/// final `response` object (assembled from the events when the stream
/// broke off).
///
/// # Safety
/// As for `llmpool_chat_stream`.
#[no_mangle]
pub unsafe extern "C" fn llmpool_responses_stream(
    client: *mut llmpool_client,
    request_json: *const c_char,
    on_event: llmpool_stream_cb,
    userdata: *mut c_void,
    out: *mut *mut llmpool_response,
) -> llmpool_code {
    // SAFETY: all pointers per the documented contract.
    unsafe {
        stream_call(
            Api::Responses,
            "on_event",
            client,
            request_json,
            on_event,
            userdata,
            out,
        )
    }
}

/// Streams the Messages API: `request_json` plus `"stream": true`;
/// `on_event` as for `llmpool_responses_stream`, with `delta` each
/// `text_delta`'s text. `ping` events are skipped. `message_stop` ends the
/// stream with `LLMPOOL_OK`; an `error` event (such as `overloaded_error`)
/// gives `LLMPOOL_PROTOCOL` with its message. `llmpool_response_completion`
/// is the final `message`, its `tool_use` blocks' `input` parsed from the
/// joined `partial_json`.
///
/// # Safety
/// As for `llmpool_chat_stream`.
#[no_mangle]
pub unsafe extern "C" fn llmpool_messages_stream(
    client: *mut llmpool_client,
    request_json: *const c_char,
    on_event: llmpool_stream_cb,
    userdata: *mut c_void,
    out: *mut *mut llmpool_response,
) -> llmpool_code {
    // SAFETY: all pointers per the documented contract.
    unsafe {
        stream_call(
            Api::Messages,
            "on_event",
            client,
            request_json,
            on_event,
            userdata,
            out,
        )
    }
}

/// `llmpool_responses` without blocking; otherwise exactly like
/// `llmpool_chat_async`.
///
/// # Safety
/// As for `llmpool_chat_async`.
#[no_mangle]
pub unsafe extern "C" fn llmpool_responses_async(
    client: *mut llmpool_client,
    request_json: *const c_char,
    done: llmpool_done_cb,
    userdata: *mut c_void,
    call: *mut *mut llmpool_call,
) -> llmpool_code {
    // SAFETY: all pointers per the documented contract.
    unsafe {
        submit(client, done, userdata, call, |c, d| {
            c.responses_async(str_arg(request_json, "request_json")?, d)
        })
    }
}

/// `llmpool_messages` without blocking; otherwise exactly like
/// `llmpool_chat_async`.
///
/// # Safety
/// As for `llmpool_chat_async`.
#[no_mangle]
pub unsafe extern "C" fn llmpool_messages_async(
    client: *mut llmpool_client,
    request_json: *const c_char,
    done: llmpool_done_cb,
    userdata: *mut c_void,
    call: *mut *mut llmpool_call,
) -> llmpool_code {
    // SAFETY: all pointers per the documented contract.
    unsafe {
        submit(client, done, userdata, call, |c, d| {
            c.messages_async(str_arg(request_json, "request_json")?, d)
        })
    }
}

/// `llmpool_responses_stream` without blocking; `on_event` and `done` as
/// for `llmpool_chat_stream_async`.
///
/// # Safety
/// As for `llmpool_chat_stream_async`.
#[no_mangle]
pub unsafe extern "C" fn llmpool_responses_stream_async(
    client: *mut llmpool_client,
    request_json: *const c_char,
    on_event: llmpool_stream_cb,
    done: llmpool_done_cb,
    userdata: *mut c_void,
    call: *mut *mut llmpool_call,
) -> llmpool_code {
    // SAFETY: all pointers per the documented contract.
    unsafe {
        stream_call_async(
            Api::Responses,
            client,
            request_json,
            on_event,
            done,
            userdata,
            call,
        )
    }
}

/// `llmpool_messages_stream` without blocking; `on_event` and `done` as
/// for `llmpool_chat_stream_async`.
///
/// # Safety
/// As for `llmpool_chat_stream_async`.
#[no_mangle]
pub unsafe extern "C" fn llmpool_messages_stream_async(
    client: *mut llmpool_client,
    request_json: *const c_char,
    on_event: llmpool_stream_cb,
    done: llmpool_done_cb,
    userdata: *mut c_void,
    call: *mut *mut llmpool_call,
) -> llmpool_code {
    // SAFETY: all pointers per the documented contract.
    unsafe {
        stream_call_async(
            Api::Messages,
            client,
            request_json,
            on_event,
            done,
            userdata,
            call,
        )
    }
}
