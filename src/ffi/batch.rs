//! Batches: many chat calls at once, results in request order.

use std::ffi::{c_char, c_void};
use std::time::Instant;

use super::client::llmpool_client;
use super::code::llmpool_code;
use super::response::{llmpool_response, panic_response};
use super::util::{guard, str_arg};
use crate::client::batch::{batch_code, chat_items};
use crate::error::{Code, Error};
use crate::response::Response;

/// Called by `llmpool_chat_batch` after each finished item with the number
/// of items finished so far and the batch size. It always runs on the thread
/// that called `llmpool_chat_batch` (never on a worker thread), `done`
/// counts up from 1, and the last call is `(total, total)`.
pub type llmpool_progress_cb =
    Option<unsafe extern "C" fn(userdata: *mut c_void, done: usize, total: usize)>;

/// Sends `n` chat requests (`POST {base_url}/chat/completions`, each a JSON
/// object as for `llmpool_chat`) with at most `max_concurrency` calls in
/// flight, all on the client's shared pool, and blocks until all are done.
///
/// `max_concurrency` 0 means the client's `max_concurrency` option, or 16
/// when that is 0 too; the client's own limit still applies on top. `out`
/// is a caller-owned array of `n` pointers: `out[i]` always receives the
/// response to `requests_json[i]` (success or failure, with its own code,
/// status and error); free them with `llmpool_responses_free` (or each with
/// `llmpool_response_free`). One item failing never fails the others. A
/// NULL entry in `requests_json` gives that item an
/// `LLMPOOL_INVALID_ARGUMENT` response without network traffic.
///
/// `progress` (may be NULL) is called with `userdata` after each finished
/// item, on the calling thread (see `llmpool_progress_cb`).
///
/// Returns `LLMPOOL_OK` when every item succeeded, else the code of the
/// first failed item in request order (inspect each response for the
/// others). `n` 0 returns `LLMPOOL_OK` at once for a live client. A NULL
/// `out` with `n` > 0 returns `LLMPOOL_INVALID_ARGUMENT` and sends nothing;
/// a NULL client or a NULL `requests_json` with `n` > 0 gives every item an
/// `LLMPOOL_INVALID_ARGUMENT` response.
///
/// # Safety
/// `client` is NULL or a live client; `requests_json` is NULL or valid for
/// `n` reads, each entry NULL or NUL-terminated; `out` is NULL or valid for
/// `n` pointer writes; `progress` is NULL or safe to call with `userdata`.
#[no_mangle]
pub unsafe extern "C" fn llmpool_chat_batch(
    client: *mut llmpool_client,
    requests_json: *const *const c_char,
    n: usize,
    max_concurrency: usize,
    progress: llmpool_progress_cb,
    userdata: *mut c_void,
    out: *mut *mut llmpool_response,
) -> llmpool_code {
    if n == 0 {
        return if client.is_null() {
            llmpool_code::LLMPOOL_INVALID_ARGUMENT
        } else {
            llmpool_code::LLMPOOL_OK
        };
    }
    if out.is_null() {
        return llmpool_code::LLMPOOL_INVALID_ARGUMENT;
    }
    // SAFETY: `out` is valid for `n` pointer writes per the contract.
    let out = unsafe { std::slice::from_raw_parts_mut(out, n) };
    out.fill(std::ptr::null_mut());
    let code = guard(
        |_| Code::Panic,
        || {
            // SAFETY: NULL or a live client per the contract.
            let c = match unsafe { client.as_ref() } {
                Some(c) => c,
                None => return fill_all(out, Error::invalid("client: is NULL")),
            };
            if requests_json.is_null() {
                return fill_all(out, Error::invalid("requests_json: is NULL"));
            }
            // SAFETY: non-NULL and valid for `n` reads per the contract.
            let ptrs = unsafe { std::slice::from_raw_parts(requests_json, n) };
            let items: Vec<Result<&str, Error>> = ptrs
                .iter()
                .enumerate()
                // SAFETY: each entry is NULL or NUL-terminated per the contract.
                .map(|(i, p)| unsafe { str_arg(*p, &format!("requests_json[{i}]")) })
                .collect();
            let responses = chat_items(&c.client, &items, max_concurrency, |done, total| {
                if let Some(cb) = progress {
                    // SAFETY: the caller vouches for the callback and `userdata`.
                    unsafe { cb(userdata, done, total) };
                }
            });
            let code = batch_code(&responses);
            for (slot, r) in out.iter_mut().zip(responses) {
                // SAFETY: `slot` is a valid pointer write.
                unsafe { llmpool_response::deliver(r, slot) };
            }
            code
        },
    );
    // After a caught panic some slots may still be empty: never leave NULL.
    for slot in out.iter_mut().filter(|s| s.is_null()) {
        let r = panic_response("internal panic (please report) while running a batch".to_string());
        // SAFETY: `slot` is a valid pointer write.
        unsafe { llmpool_response::deliver(r, slot) };
    }
    code.into()
}

/// Gives every item the same failure; returns its code.
fn fill_all(out: &mut [*mut llmpool_response], e: Error) -> Code {
    let started = Instant::now();
    for slot in out.iter_mut() {
        // SAFETY: `slot` is a valid pointer write.
        unsafe { llmpool_response::deliver(Response::failed(e.clone(), started), slot) };
    }
    e.code
}

/// Frees the `n` responses of an array filled by `llmpool_chat_batch` and
/// sets each entry to NULL. The array itself belongs to the caller and is
/// not freed. NULL `responses` and NULL entries are skipped.
///
/// # Safety
/// `responses` is NULL or valid for `n` pointer reads and writes; each entry
/// is NULL or a response from llmpool not yet freed.
#[no_mangle]
pub unsafe extern "C" fn llmpool_responses_free(responses: *mut *mut llmpool_response, n: usize) {
    if responses.is_null() {
        return;
    }
    guard(
        |_| (),
        || {
            // SAFETY: valid for `n` reads and writes per the contract.
            let all = unsafe { std::slice::from_raw_parts_mut(responses, n) };
            for r in all.iter_mut() {
                // SAFETY: each entry is NULL or a live response per the contract
                // (this is the body of an `unsafe fn`, so no block is needed).
                super::response::llmpool_response_free(*r);
                *r = std::ptr::null_mut();
            }
        },
    );
}
