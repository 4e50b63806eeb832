//! Async calls: submit without blocking, complete through a callback, and
//! cancel one call alone.

use std::ffi::{c_char, c_void};

use super::call::client_ref;
use super::client::llmpool_client;
use super::code::llmpool_code;
use super::response::llmpool_response;
use super::stream::{c_stream_fn, llmpool_stream_cb};
use super::util::{guard, opt_str_arg, raw_args, str_arg, UserData};
use crate::assemble::Api;
use crate::client::{Client, DoneFn};
use crate::error::Error;
use crate::exec::CallHandle;
use crate::response::Response;

/// One async call in flight (or finished). Created by the `*_async`
/// functions when their `call` argument is non-NULL, owned by the caller,
/// freed with `llmpool_call_free`. The handle stays valid until freed, also
/// after the call completed; freeing it does not cancel the call.
pub struct llmpool_call {
    handle: CallHandle,
}

/// Receives the result of an async call: called exactly once per call
/// submitted with `LLMPOOL_OK`, on a library thread (never on the thread
/// that submitted it), with the `userdata` given at submit and a response
/// that the callee owns and frees with `llmpool_response_free` (it may keep
/// it, pass it to another thread, or free it at once; `response` is never
/// NULL). `llmpool_response_call_id(response)` names the call. The callback
/// may call any llmpool function, including submitting more async calls or
/// `llmpool_client_free` on its own client (see there). It should return
/// soon: while it runs, its library thread serves no other call.
pub type llmpool_done_cb =
    Option<unsafe extern "C" fn(userdata: *mut c_void, response: *mut llmpool_response)>;

/// The `done` closure: boxes the response and hands it to C.
fn done_fn(done: unsafe extern "C" fn(*mut c_void, *mut llmpool_response), ud: UserData) -> DoneFn {
    Box::new(move |r: Response| {
        let resp = Box::into_raw(Box::new(llmpool_response::new(r)));
        let ud = ud;
        // SAFETY: `done` and `userdata` come from the caller, who promised
        // they may be called from a library thread; `resp` is a fresh
        // response whose ownership passes to the callee.
        unsafe { done(ud.0, resp) }
    })
}

/// Shared shape of every submit: clears `*call`, checks the client and
/// `done`, runs `f` under a panic guard and stores the call handle.
///
/// # Safety
/// `client` is NULL or a live client; `call` is NULL or valid for one
/// pointer write.
pub(crate) unsafe fn submit(
    client: *mut llmpool_client,
    done: llmpool_done_cb,
    userdata: *mut c_void,
    call: *mut *mut llmpool_call,
    f: impl FnOnce(&Client, DoneFn) -> Result<CallHandle, Error>,
) -> llmpool_code {
    // SAFETY: forwarded contract.
    unsafe {
        submit_with(client, call, |c| {
            let done = done.ok_or_else(|| Error::invalid("done: is NULL"))?;
            f(c, done_fn(done, UserData(userdata)))
        })
    }
}

/// [`submit`] for a call that completes without a C callback.
///
/// # Safety
/// As for [`submit`].
pub(crate) unsafe fn submit_with(
    client: *mut llmpool_client,
    call: *mut *mut llmpool_call,
    f: impl FnOnce(&Client) -> Result<CallHandle, Error>,
) -> llmpool_code {
    if !call.is_null() {
        // SAFETY: non-NULL and writable per the contract.
        unsafe { *call = std::ptr::null_mut() };
    }
    guard(
        |_| llmpool_code::LLMPOOL_PANIC,
        || {
            let run = || -> Result<CallHandle, Error> {
                // SAFETY: forwarded contract.
                let c = unsafe { client_ref(client) }?;
                f(&c.client)
            };
            match run() {
                Ok(handle) => {
                    if !call.is_null() {
                        let h = Box::into_raw(Box::new(llmpool_call { handle }));
                        // SAFETY: non-NULL and writable per the contract.
                        unsafe { *call = h };
                    }
                    llmpool_code::LLMPOOL_OK
                }
                Err(e) => e.code.into(),
            }
        },
    )
}

/// `llmpool_chat` without blocking: queues the call and returns at once
/// (no network I/O, no DNS, no wait for `max_concurrency` on this thread).
///
/// On `LLMPOOL_OK` the call runs on library threads, exactly like
/// `llmpool_chat` (retries, backoff, Retry-After, failover, budget, cache,
/// routing, rate limits, key provider, metrics; a call that waits, for a
/// `max_concurrency` slot, a backoff, a Retry-After or a `rate_limits`
/// slot, holds no thread meanwhile), and `done(userdata, response)` runs
/// exactly once when it
/// ends (see `llmpool_done_cb`); the response's info has `call_id`. When
/// `call` is non-NULL, `*call` receives a handle for `llmpool_call_cancel`
/// and `llmpool_call_id`, owned by the caller (`llmpool_call_free`).
///
/// Any other return means nothing was queued, nothing is sent, `done` never
/// runs and `*call` is NULL: `LLMPOOL_INVALID_ARGUMENT` for a NULL client,
/// request or `done`, invalid UTF-8 or a request that is not a JSON object
/// (`llmpool_chat` with the same request says why); `LLMPOOL_CANCELLED`
/// when the client is being freed.
///
/// A call waiting for the network holds no thread: each async call runs
/// on a small stack of its own (256 KiB reserved, the pages it touches
/// used), suspended while its socket is not ready and resumed by
/// llmpool's reactor (one epoll thread). About one library thread per core
/// runs whatever is ready; more start, up to `async_max_threads` (option,
/// default 64), only while callbacks that block hold all of them for
/// 20 ms. Callbacks run on a library thread's own stack (512 KiB).
///
/// # Safety
/// `client` is NULL or a live client; `request_json` is NULL or
/// NUL-terminated (copied before return); `done` is NULL or safe to call
/// from any thread with `userdata`; `call` is NULL or valid for one
/// pointer write.
#[no_mangle]
pub unsafe extern "C" fn llmpool_chat_async(
    client: *mut llmpool_client,
    request_json: *const c_char,
    done: llmpool_done_cb,
    userdata: *mut c_void,
    call: *mut *mut llmpool_call,
) -> llmpool_code {
    // SAFETY: all pointers per the documented contract.
    unsafe {
        submit(client, done, userdata, call, |c, d| {
            c.chat_async(str_arg(request_json, "request_json")?, d)
        })
    }
}

/// `llmpool_embeddings` without blocking; otherwise exactly like
/// `llmpool_chat_async`.
///
/// # Safety
/// As for `llmpool_chat_async`.
#[no_mangle]
pub unsafe extern "C" fn llmpool_embeddings_async(
    client: *mut llmpool_client,
    request_json: *const c_char,
    done: llmpool_done_cb,
    userdata: *mut c_void,
    call: *mut *mut llmpool_call,
) -> llmpool_code {
    // SAFETY: all pointers per the documented contract.
    unsafe {
        submit(client, done, userdata, call, |c, d| {
            c.embeddings_async(str_arg(request_json, "request_json")?, d)
        })
    }
}

/// `llmpool_request` without blocking; otherwise exactly like
/// `llmpool_chat_async`. A bad `method` or a `path` not starting with "/"
/// is `LLMPOOL_INVALID_ARGUMENT` at submit.
///
/// # Safety
/// `client` is NULL or a live client; `method`, `path` and `body_json` are
/// NULL or NUL-terminated (copied before return); `done`, `userdata` and
/// `call` as for `llmpool_chat_async`.
#[no_mangle]
pub unsafe extern "C" fn llmpool_request_async(
    client: *mut llmpool_client,
    method: *const c_char,
    path: *const c_char,
    body_json: *const c_char,
    done: llmpool_done_cb,
    userdata: *mut c_void,
    call: *mut *mut llmpool_call,
) -> llmpool_code {
    // SAFETY: all pointers per the documented contract.
    unsafe {
        submit(client, done, userdata, call, |c, d| {
            let method = str_arg(method, "method")?;
            let path = str_arg(path, "path")?;
            let body = opt_str_arg(body_json, "body_json")?;
            c.request_async(method, path, body, d)
        })
    }
}

/// `llmpool_request_raw` without blocking (any bytes as the body, kept as
/// bytes in the answer); otherwise exactly like `llmpool_chat_async`. The
/// body is copied before return. A bad `method`, a `path` not starting
/// with "/", a NULL `body` with a non-zero `body_len` or a `content_type`
/// with control characters is `LLMPOOL_INVALID_ARGUMENT` at submit.
///
/// # Safety
/// `client` is NULL or a live client; `method`, `path` and `content_type`
/// are NULL or NUL-terminated; `body` is NULL or valid for `body_len` bytes
/// of reading (all copied before return); `done`, `userdata` and `call` as
/// for `llmpool_chat_async`.
#[no_mangle]
#[allow(clippy::too_many_arguments)]
pub unsafe extern "C" fn llmpool_request_raw_async(
    client: *mut llmpool_client,
    method: *const c_char,
    path: *const c_char,
    content_type: *const c_char,
    body: *const u8,
    body_len: usize,
    done: llmpool_done_cb,
    userdata: *mut c_void,
    call: *mut *mut llmpool_call,
) -> llmpool_code {
    // SAFETY: all pointers per the documented contract.
    unsafe {
        submit(client, done, userdata, call, |c, d| {
            let (method, path, content_type, body) =
                raw_args(method, path, content_type, body, body_len)?;
            c.request_raw_async(method, path, content_type, body, d)
        })
    }
}

/// `llmpool_client_warm` without blocking: the warm-up's connects and
/// handshakes run on library threads and `done` gets a response (owned by
/// the callee, as for `llmpool_chat_async`) whose code is `LLMPOOL_OK` when
/// at least one connection opened or none was needed, else the first
/// failure's code and error; its info's `opened` says how many connections
/// were opened. Event loops and bindings use it so that no thread of
/// theirs waits for the handshakes. `LLMPOOL_INVALID_ARGUMENT` for a NULL
/// client or `done` (then `done` never runs).
///
/// # Safety
/// `client` is NULL or a live client; `done`, `userdata` and `call` as for
/// `llmpool_chat_async`.
#[no_mangle]
pub unsafe extern "C" fn llmpool_client_warm_async(
    client: *mut llmpool_client,
    n: usize,
    done: llmpool_done_cb,
    userdata: *mut c_void,
    call: *mut *mut llmpool_call,
) -> llmpool_code {
    // SAFETY: all pointers per the documented contract.
    unsafe { submit(client, done, userdata, call, |c, d| c.warm_async(n, d)) }
}

/// `llmpool_chat_stream` without blocking: `on_event(userdata, ...)` runs on
/// a library thread for every chunk, in order (see `llmpool_stream_cb`;
/// non-zero aborts the stream with `LLMPOOL_CANCELLED`), then `done` once
/// with the response (text received so far, also when cancelled). Never
/// concurrently with each other for one call. Otherwise exactly like
/// `llmpool_chat_async`; a NULL `on_event` is `LLMPOOL_INVALID_ARGUMENT`.
///
/// # Safety
/// As for `llmpool_chat_async`; `on_event` is NULL or safe to call from any
/// thread with `userdata`.
#[no_mangle]
pub unsafe extern "C" fn llmpool_chat_stream_async(
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
            Api::Chat,
            client,
            request_json,
            on_event,
            done,
            userdata,
            call,
        )
    }
}

/// An async stream of `api` with an events callback.
///
/// # Safety
/// As for `llmpool_chat_stream_async`.
pub(crate) unsafe fn stream_call_async(
    api: Api,
    client: *mut llmpool_client,
    request_json: *const c_char,
    on_event: llmpool_stream_cb,
    done: llmpool_done_cb,
    userdata: *mut c_void,
    call: *mut *mut llmpool_call,
) -> llmpool_code {
    // SAFETY: all pointers per the documented contract.
    unsafe {
        submit(client, done, userdata, call, |c, d| {
            let req = str_arg(request_json, "request_json")?;
            let cb = on_event.ok_or_else(|| Error::invalid("on_event: is NULL"))?;
            // SAFETY: the caller vouches for `on_event` and `userdata` on
            // library threads (the contract above).
            #[allow(unused_unsafe)]
            let on_event = Box::new(unsafe { c_stream_fn(cb, UserData(userdata)) });
            c.stream_async(api, req, on_event, d)
        })
    }
}

/// Cancels one async call from any thread: it ends within about 100 ms
/// with `LLMPOOL_CANCELLED` (its socket is shut down, a DNS lookup or TCP
/// connect in progress is abandoned, its backoff, Retry-After, rate-limit
/// or queue wait ends; a stream keeps the text received so far) and its `done`
/// runs as usual. Other calls are untouched. Cancelling a call that already
/// completed is a no-op returning `LLMPOOL_OK`. `LLMPOOL_INVALID_ARGUMENT`
/// for a NULL call.
///
/// # Safety
/// `call` is NULL or a live handle from a `*_async` function.
#[no_mangle]
pub unsafe extern "C" fn llmpool_call_cancel(call: *mut llmpool_call) -> llmpool_code {
    guard(
        |_| llmpool_code::LLMPOOL_PANIC,
        // SAFETY: NULL or a live handle per the contract.
        || match unsafe { call.as_ref() } {
            None => llmpool_code::LLMPOOL_INVALID_ARGUMENT,
            Some(c) => {
                c.handle.cancel();
                llmpool_code::LLMPOOL_OK
            }
        },
    )
}

/// The call's id: never 0, unique within the process, equal to
/// `llmpool_response_call_id` of its response and to `call_id` in its
/// info. 0 for a NULL call.
///
/// # Safety
/// `call` is NULL or a live handle from a `*_async` function.
#[no_mangle]
pub unsafe extern "C" fn llmpool_call_id(call: *const llmpool_call) -> u64 {
    // SAFETY: NULL or a live handle per the contract.
    unsafe { call.as_ref() }.map_or(0, |c| c.handle.id())
}

/// Frees a call handle. NULL is a no-op. Does not cancel the call: its
/// `done` still runs. Freeing twice is undefined behaviour.
///
/// # Safety
/// `call` is NULL or a handle from a `*_async` function, not yet freed.
#[no_mangle]
pub unsafe extern "C" fn llmpool_call_free(call: *mut llmpool_call) {
    if call.is_null() {
        return;
    }
    guard(
        |_| (),
        || {
            // SAFETY: non-NULL and created by Box::into_raw in `submit`.
            drop(unsafe { Box::from_raw(call) });
        },
    );
}
