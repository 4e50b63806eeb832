//! `llmpool_client`: creation, configuration, metrics and teardown.

use std::ffi::{c_char, CString};

use super::code::llmpool_code;
use super::util::{c_string, guard, opt_str_arg, write_errbuf};
use crate::client::Client;
use crate::error::Error;

/// A pooled client for one gateway. Thread-safe: create one per process (or
/// per gateway) and share it between threads; every function taking a
/// client may be called concurrently from any thread. Only
/// `llmpool_client_free` must not race with other calls on the same client
/// (async calls in flight are fine: it cancels and waits for them).
pub struct llmpool_client {
    pub(crate) client: Client,
}

/// Runs `f` on the client behind `client` under a panic guard: a NULL
/// client gives `LLMPOOL_INVALID_ARGUMENT`, an error its own code.
///
/// # Safety
/// `client` is NULL or a live client.
pub(crate) unsafe fn client_op(
    client: *const llmpool_client,
    f: impl FnOnce(&Client) -> Result<(), Error>,
) -> llmpool_code {
    guard(
        |_| llmpool_code::LLMPOOL_PANIC,
        || {
            // SAFETY: NULL or a live client per the caller's contract.
            match unsafe { client.as_ref() } {
                None => llmpool_code::LLMPOOL_INVALID_ARGUMENT,
                Some(c) => match f(&c.client) {
                    Ok(()) => llmpool_code::LLMPOOL_OK,
                    Err(e) => e.code.into(),
                },
            }
        },
    )
}

/// Creates a client.
///
/// `options_json` may be NULL (all defaults plus the environment variables
/// `LLMPOOL_BASE_URL`, `LLMPOOL_API_KEY`, `HOLYSHEEP_API_KEY`); otherwise a
/// JSON object of options (see README: unknown keys and wrong types are an
/// error naming the key). On success `*out` receives a client the caller owns
/// and frees with `llmpool_client_free`. On error `*out` is set to NULL and,
/// when `errbuf` is non-NULL, the reason is written there (truncated to
/// `errbuf_len - 1` bytes, always NUL-terminated). `out` must not be NULL.
///
/// # Safety
/// `options_json` is NULL or a NUL-terminated string; `out` is NULL or valid
/// for one pointer write; `errbuf` is NULL or valid for `errbuf_len` bytes.
#[no_mangle]
pub unsafe extern "C" fn llmpool_client_new(
    options_json: *const c_char,
    out: *mut *mut llmpool_client,
    errbuf: *mut c_char,
    errbuf_len: usize,
) -> llmpool_code {
    guard(
        |msg| {
            // SAFETY: as documented for the caller.
            unsafe { write_errbuf(errbuf, errbuf_len, &msg) };
            llmpool_code::LLMPOOL_PANIC
        },
        || {
            if out.is_null() {
                // SAFETY: as documented for the caller.
                unsafe { write_errbuf(errbuf, errbuf_len, "out: is NULL") };
                return llmpool_code::LLMPOOL_INVALID_ARGUMENT;
            }
            // SAFETY: `out` is non-NULL and writable per the contract.
            unsafe { *out = std::ptr::null_mut() };
            // SAFETY: as documented for the caller.
            let result =
                unsafe { opt_str_arg(options_json, "options_json") }.and_then(Client::from_json);
            match result {
                Ok(client) => {
                    // SAFETY: checked non-NULL above.
                    unsafe { *out = Box::into_raw(Box::new(llmpool_client { client })) };
                    if !errbuf.is_null() && errbuf_len > 0 {
                        // SAFETY: as documented for the caller.
                        unsafe { write_errbuf(errbuf, errbuf_len, "") };
                    }
                    llmpool_code::LLMPOOL_OK
                }
                Err(e) => {
                    // SAFETY: as documented for the caller.
                    unsafe { write_errbuf(errbuf, errbuf_len, &e.message) };
                    e.code.into()
                }
            }
        },
    )
}

/// Frees a client and closes its pooled connections. NULL is a no-op. No
/// other call on this client may run concurrently or start afterwards;
/// responses it produced stay valid and are freed separately.
///
/// Async calls still in flight are cancelled, and this function waits
/// until every one of their `done` callbacks has returned before it frees
/// anything (`done` gets `LLMPOOL_CANCELLED` unless the call had already
/// finished); new submits meanwhile return `LLMPOOL_CANCELLED`.
///
/// Called from inside a `done` (or `on_event`) callback of an async call of
/// this same client, it cannot wait for that callback: it then cancels the
/// other calls and returns at once, without waiting; the client's memory is
/// released after the last callback returns, and the other calls' `done`
/// callbacks still run (with `LLMPOOL_CANCELLED`) after this returns. In
/// both cases the `llmpool_client *` must not be used after this call.
///
/// # Safety
/// `client` is NULL or a client from `llmpool_client_new`, not yet freed.
#[no_mangle]
pub unsafe extern "C" fn llmpool_client_free(client: *mut llmpool_client) {
    if client.is_null() {
        return;
    }
    guard(
        |_| (),
        || {
            // SAFETY: non-NULL and created by Box::into_raw in llmpool_client_new.
            let c = unsafe { Box::from_raw(client) };
            // Async calls hold their own reference to the client's core,
            // so it lives until the last of them has completed.
            c.client.close_async();
            drop(c);
        },
    )
}

/// Replaces the API key for every later request, on every thread; pooled
/// connections are kept. NULL or "" removes the key (no `Authorization`
/// header is sent). Returns `LLMPOOL_INVALID_ARGUMENT` for a NULL client or
/// a key that is not printable ASCII (the old key is then kept).
///
/// # Safety
/// `client` is NULL or a live client; `api_key` is NULL or NUL-terminated.
#[no_mangle]
pub unsafe extern "C" fn llmpool_client_set_api_key(
    client: *mut llmpool_client,
    api_key: *const c_char,
) -> llmpool_code {
    // SAFETY: pointers per the documented contract.
    unsafe { client_op(client, |c| c.set_api_key(opt_str_arg(api_key, "api_key")?)) }
}

/// Drops every idle pooled connection now (the next call opens a fresh
/// one). Calls in flight are not interrupted. `LLMPOOL_INVALID_ARGUMENT` for
/// a NULL client.
///
/// # Safety
/// `client` is NULL or a live client.
#[no_mangle]
pub unsafe extern "C" fn llmpool_client_reset_pool(client: *mut llmpool_client) -> llmpool_code {
    // SAFETY: `client` per the documented contract.
    unsafe { client_op(client, Client::reset_pool) }
}

/// Cancels every call of this client that is in flight now (blocking and
/// async), from any thread: blocked reads and writes, name lookups,
/// connects, backoff and rate-limit waits, queued async calls and streams
/// return promptly with `LLMPOOL_CANCELLED`. Calls started afterwards run
/// normally.
/// `LLMPOOL_INVALID_ARGUMENT` for a NULL client.
///
/// # Safety
/// `client` is NULL or a live client.
#[no_mangle]
pub unsafe extern "C" fn llmpool_client_cancel(client: *mut llmpool_client) -> llmpool_code {
    // SAFETY: `client` per the documented contract.
    unsafe { client_op(client, Client::cancel_all) }
}

/// The client's metrics as a JSON object: `requests`, `errors`,
/// `error_rate`, `retries`, `connections_opened`, `connections_reused`,
/// `connections_open`, `buffer_bytes_held` (bytes of I/O buffers the open
/// connections hold; an idle plain-HTTP connection holds none, an idle TLS
/// one 17 KiB), `in_flight`, `status_counts`, `code_counts`,
/// `latency_ms` {p50, p90, p99, max}, `warnings`, and feature sections.
/// The caller owns the string and frees it with `llmpool_string_free`.
/// Returns NULL only for a NULL client. Never contains the API key.
///
/// # Safety
/// `client` is NULL or a live client.
#[no_mangle]
pub unsafe extern "C" fn llmpool_client_metrics(client: *const llmpool_client) -> *mut c_char {
    guard(
        |_| std::ptr::null_mut(),
        || {
            // SAFETY: NULL or a live client per the contract.
            match unsafe { client.as_ref() } {
                None => std::ptr::null_mut(),
                Some(c) => c_string(&c.client.metrics().to_string()).into_raw(),
            }
        },
    )
}

/// The client's metrics in the Prometheus text exposition format 0.0.4
/// (`Content-Type: text/plain; version=0.0.4`), with HELP and TYPE lines,
/// ready to serve on a `/metrics` endpoint. Counters:
/// `llmpool_requests_total` and `llmpool_errors_total` (labels
/// `gen_ai_request_model`, `endpoint`, `code`), `llmpool_http_responses_total`
/// (`endpoint`, `status`), `llmpool_retries_total`,
/// `llmpool_reconnects_after_idle_close_total`, `llmpool_key_refreshes_total`,
/// `llmpool_connections_opened_total`, `llmpool_connections_reused_total`,
/// `llmpool_tokens_total` (`gen_ai_request_model`, `gen_ai_token_type`),
/// `llmpool_cost_usd_total` (`gen_ai_request_model`). Histograms (seconds
/// or tokens): `gen_ai_client_operation_duration_seconds`,
/// `llmpool_time_to_first_token_seconds` (streams),
/// `gen_ai_client_token_usage`. Gauges: `llmpool_connections_open`,
/// `llmpool_calls_in_flight`. At most 64 distinct model names are kept as
/// labels; further ones are counted as `other`.
///
/// The caller owns the string and frees it with `llmpool_string_free`.
/// Returns NULL only for a NULL client. Never contains the API key or a
/// password.
///
/// # Safety
/// `client` is NULL or a live client.
#[no_mangle]
pub unsafe extern "C" fn llmpool_client_metrics_prometheus(
    client: *const llmpool_client,
) -> *mut c_char {
    guard(
        |_| std::ptr::null_mut(),
        || {
            // SAFETY: NULL or a live client per the contract.
            match unsafe { client.as_ref() } {
                None => std::ptr::null_mut(),
                Some(c) => c_string(&c.client.metrics_prometheus()).into_raw(),
            }
        },
    )
}

/// Frees a string returned by llmpool (e.g. by `llmpool_client_metrics`).
/// NULL is a no-op. Never pass strings owned by a response.
///
/// # Safety
/// `s` is NULL or a string from llmpool not yet freed.
#[no_mangle]
pub unsafe extern "C" fn llmpool_string_free(s: *mut c_char) {
    if s.is_null() {
        return;
    }
    guard(
        |_| (),
        || {
            // SAFETY: non-NULL and created by CString::into_raw in llmpool.
            drop(unsafe { CString::from_raw(s) });
        },
    )
}
