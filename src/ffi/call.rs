//! Calls: chat completions, embeddings, and any other path.

use std::ffi::c_char;

use super::client::llmpool_client;
use super::code::llmpool_code;
use super::response::{llmpool_response, panic_response};
use super::util::{guard, opt_str_arg, raw_args, str_arg};
use crate::client::Client;
use crate::error::Error;
use crate::response::Response;
use std::time::Instant;

/// Shared shape of every call: check `out`, run `f` under a panic guard, and
/// always hand back a response when `out` is non-NULL.
///
/// # Safety
/// `out` is NULL or valid for one pointer write.
pub(crate) unsafe fn run_call(
    out: *mut *mut llmpool_response,
    f: impl FnOnce() -> Result<Response, Error>,
) -> llmpool_code {
    let r = guard(panic_response, || {
        f().unwrap_or_else(|e| Response::failed(e, Instant::now()))
    });
    // SAFETY: forwarded contract.
    unsafe { llmpool_response::deliver(r, out) }
}

/// The client behind a pointer, or the error naming it.
///
/// # Safety
/// `c` is NULL or a live client.
pub(crate) unsafe fn client_ref<'a>(c: *const llmpool_client) -> Result<&'a llmpool_client, Error> {
    // SAFETY: forwarded contract.
    unsafe { c.as_ref() }.ok_or_else(|| Error::invalid("client: is NULL"))
}

/// A call taking one JSON request: chat and embeddings.
///
/// # Safety
/// As for `llmpool_chat`.
pub(crate) unsafe fn json_call(
    client: *mut llmpool_client,
    request_json: *const c_char,
    out: *mut *mut llmpool_response,
    f: fn(&Client, &str) -> Response,
) -> llmpool_code {
    // SAFETY: forwarded contract.
    unsafe {
        run_call(out, || {
            let c = client_ref(client)?;
            let req = str_arg(request_json, "request_json")?;
            Ok(f(&c.client, req))
        })
    }
}

/// `POST {base_url}/chat/completions` with `request_json` (a JSON object,
/// sent as is unless the `routing` option picks its model or an
/// `llmpool_cache` field is stripped), with retries, failover, cache and
/// budget per the client options.
///
/// Returns the call's code. When `out` is non-NULL, `*out` always receives a
/// response (success or failure, so the error text is always available);
/// the caller frees it with `llmpool_response_free`. A NULL client or request,
/// invalid UTF-8 or invalid JSON gives `LLMPOOL_INVALID_ARGUMENT` without any
/// network traffic. A non-2xx answer gives `LLMPOOL_HTTP_STATUS` with the
/// status and body kept. Blocks the calling thread until done.
///
/// # Safety
/// `client` is NULL or a live client; `request_json` is NULL or
/// NUL-terminated; `out` is NULL or valid for one pointer write.
#[no_mangle]
pub unsafe extern "C" fn llmpool_chat(
    client: *mut llmpool_client,
    request_json: *const c_char,
    out: *mut *mut llmpool_response,
) -> llmpool_code {
    // SAFETY: all pointers per the documented contract.
    unsafe { json_call(client, request_json, out, Client::chat) }
}

/// `POST {base_url}/embeddings`; otherwise exactly like `llmpool_chat`.
///
/// # Safety
/// As for `llmpool_chat`.
#[no_mangle]
pub unsafe extern "C" fn llmpool_embeddings(
    client: *mut llmpool_client,
    request_json: *const c_char,
    out: *mut *mut llmpool_response,
) -> llmpool_code {
    // SAFETY: all pointers per the documented contract.
    unsafe { json_call(client, request_json, out, Client::embeddings) }
}

/// Any `method` (GET, POST, PUT, PATCH, DELETE, HEAD, OPTIONS) on `path`
/// below `base_url` (must start with "/", e.g. "/models"), with an optional
/// JSON object body (`body_json` may be NULL). Results as for `llmpool_chat`.
///
/// # Safety
/// `client` is NULL or a live client; `method`, `path` and `body_json` are
/// NULL or NUL-terminated; `out` is NULL or valid for one pointer write.
#[no_mangle]
pub unsafe extern "C" fn llmpool_request(
    client: *mut llmpool_client,
    method: *const c_char,
    path: *const c_char,
    body_json: *const c_char,
    out: *mut *mut llmpool_response,
) -> llmpool_code {
    // SAFETY: all pointers per the documented contract.
    unsafe {
        run_call(out, || {
            let c = client_ref(client)?;
            let method = str_arg(method, "method")?;
            let path = str_arg(path, "path")?;
            let body = opt_str_arg(body_json, "body_json")?;
            Ok(c.client.request(method, path, body))
        })
    }
}

/// Any `method` on `path` below `base_url` (as for `llmpool_request`) with
/// any bytes as the body: `body_len` bytes at `body`, sent as is with
/// `Content-Type: content_type` (e.g. `"multipart/form-data; boundary=x"`,
/// `"application/octet-stream"`), and `Accept: */*`. `body` may be NULL
/// only when `body_len` is 0 (no body); `content_type` may be NULL (no
/// `Content-Type` header). llmpool copies the body before returning; the
/// caller keeps ownership of its buffer. Retries send the same bytes again.
///
/// The answer's body may be any bytes (e.g. `audio/mpeg`): read it with
/// `llmpool_response_body` and its length, and its type with
/// `llmpool_response_header(r, "content-type")`. Results, errors and
/// ownership of `*out` as for `llmpool_chat`; a NULL `body` with a non-zero
/// `body_len`, or a `content_type` with control characters, gives
/// `LLMPOOL_INVALID_ARGUMENT` without any network traffic.
///
/// # Safety
/// `client` is NULL or a live client; `method`, `path` and `content_type`
/// are NULL or NUL-terminated; `body` is NULL or valid for `body_len` bytes
/// of reading; `out` is NULL or valid for one pointer write.
#[no_mangle]
pub unsafe extern "C" fn llmpool_request_raw(
    client: *mut llmpool_client,
    method: *const c_char,
    path: *const c_char,
    content_type: *const c_char,
    body: *const u8,
    body_len: usize,
    out: *mut *mut llmpool_response,
) -> llmpool_code {
    // SAFETY: all pointers per the documented contract.
    unsafe {
        run_call(out, || {
            let c = client_ref(client)?;
            let (method, path, content_type, body) =
                raw_args(method, path, content_type, body, body_len)?;
            Ok(c.client.request_raw(method, path, content_type, body))
        })
    }
}
