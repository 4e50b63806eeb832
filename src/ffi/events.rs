//! Streams whose events go to an `llmpool_queue`: a single-threaded
//! program (an event loop, Node, Python's asyncio) takes a batch of deltas
//! and completions per wake-up instead of being called from library
//! threads once per chunk.

use std::ffi::{c_char, c_int};

use super::async_call::{llmpool_call, submit_with};
use super::client::llmpool_client;
use super::code::llmpool_code;
use super::delta::{api_arg, delta_kind, llmpool_delta};
use super::queue::{llmpool_queue, Item};
use super::response::llmpool_response;
use super::util::{guard, str_arg};
use crate::assemble::Delta;
use crate::error::Error;
use crate::response::Response;

/// A delta waiting in a queue; it owns its strings (each NUL-terminated).
pub(super) struct OwnedDelta {
    tag: u64,
    call_id: u64,
    kind: super::delta::llmpool_delta_kind,
    choice: u32,
    call_index: u32,
    id: Option<Vec<u8>>,
    name: Option<Vec<u8>>,
    text: Vec<u8>,
}

fn nul_terminated(s: &str) -> Vec<u8> {
    let mut v = Vec::with_capacity(s.len() + 1);
    v.extend_from_slice(s.as_bytes());
    v.push(0);
    v
}

impl OwnedDelta {
    fn new(tag: u64, call_id: u64, d: &Delta) -> OwnedDelta {
        OwnedDelta {
            tag,
            call_id,
            kind: delta_kind(d.kind),
            choice: d.choice,
            call_index: d.call_index,
            id: d.id.map(nul_terminated),
            name: d.name.map(nul_terminated),
            text: nul_terminated(d.text),
        }
    }

    /// The C view; its pointers stay valid while `self` lives (they point
    /// into heap buffers, which do not move with `self`).
    fn view(&self) -> llmpool_delta {
        let opt = |v: &Option<Vec<u8>>| {
            v.as_ref()
                .map_or(std::ptr::null(), |v| v.as_ptr() as *const c_char)
        };
        llmpool_delta {
            kind: self.kind,
            choice: self.choice,
            call_index: self.call_index,
            id: opt(&self.id),
            name: opt(&self.name),
            text: self.text.as_ptr() as *const c_char,
            text_len: self.text.len() - 1,
        }
    }
}

/// What an `llmpool_event` holds.
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum llmpool_event_kind {
    /// `delta` is one typed delta of a stream.
    LLMPOOL_EVENT_DELTA = 1,
    /// `response` is a call's result: its last event.
    LLMPOOL_EVENT_DONE = 2,
}

/// One event taken from a queue by `llmpool_queue_take`.
#[repr(C)]
pub struct llmpool_event {
    pub kind: llmpool_event_kind,
    /// The `tag` given to `llmpool_stream_queued` (0 for a completion
    /// pushed by `llmpool_queue_done`).
    pub tag: u64,
    /// The call's id (as `llmpool_call_id`); for a DONE event also
    /// `llmpool_response_call_id(response)`.
    pub call_id: u64,
    /// For `LLMPOOL_EVENT_DELTA`: the delta, as `llmpool_delta_cb` gets it;
    /// its strings are owned by the queue and valid until the next
    /// `llmpool_queue_take` on this queue or `llmpool_queue_free`. Zeroed
    /// (NULL strings) for DONE.
    pub delta: llmpool_delta,
    /// For `LLMPOOL_EVENT_DONE`: the response, owned by the caller from
    /// now on (`llmpool_response_free`); NULL for DELTA.
    pub response: *mut llmpool_response,
}

/// The queue pointer a call's closures hold.
#[derive(Clone, Copy)]
struct QueueRef(*const llmpool_queue);

// SAFETY: a queue is thread-safe (its items behind a lock) and outlives
// every call that pushes into it (the contract of `llmpool_stream_queued`).
unsafe impl Send for QueueRef {}
unsafe impl Sync for QueueRef {}

impl QueueRef {
    fn push(self, item: Item) {
        // SAFETY: live for the call's whole life, per the contract.
        unsafe { &*self.0 }.q.push(item);
    }
}

/// Streams `request_json` on `api` (an `llmpool_api` value) without
/// blocking, as `llmpool_stream_deltas_async` does, but with no callback:
/// each typed delta goes to `queue` as an `LLMPOOL_EVENT_DELTA` event, in
/// order, and the response last as an `LLMPOOL_EVENT_DONE` event, both with
/// `tag`. Nothing of the caller's runs on library threads, so a program
/// that cannot be called from them (Node, an event loop) takes whole
/// batches with `llmpool_queue_take` when `llmpool_queue_fd` is readable.
/// Events wait in the queue until taken (nothing bounds them: drain it).
///
/// On `LLMPOOL_OK` the DONE event comes exactly once; `*call` (when `call`
/// is non-NULL) receives a handle for `llmpool_call_cancel` (a cancelled
/// stream's DONE has `LLMPOOL_CANCELLED`). Any other return means nothing
/// was queued and no event will come: `LLMPOOL_INVALID_ARGUMENT` for a NULL
/// client, request or queue, an `api` that is not an `llmpool_api` value,
/// invalid UTF-8 or a request that is not a JSON object;
/// `LLMPOOL_CANCELLED` when the client is being freed.
///
/// # Safety
/// `client` is NULL or a live client; `request_json` is NULL or
/// NUL-terminated (copied before return); `queue` is NULL or a live queue
/// that is freed only after this call's DONE event was taken (or after the
/// client was freed, which waits for its calls); `call` is NULL or valid
/// for one pointer write.
#[no_mangle]
pub unsafe extern "C" fn llmpool_stream_queued(
    client: *mut llmpool_client,
    api: c_int,
    request_json: *const c_char,
    queue: *mut llmpool_queue,
    tag: u64,
    call: *mut *mut llmpool_call,
) -> llmpool_code {
    // SAFETY: all pointers per the documented contract.
    unsafe {
        submit_with(client, call, |c| {
            let api = api_arg(api)?;
            let req = str_arg(request_json, "request_json")?;
            if queue.is_null() {
                return Err(Error::invalid("queue: is NULL"));
            }
            let q = QueueRef(queue);
            let on_delta = Box::new(move |d: &Delta| {
                let id = crate::exec::token::current().map_or(0, |t| t.id());
                q.push(Item::Delta(OwnedDelta::new(tag, id, d)));
                true
            });
            let done = Box::new(move |r: Response| {
                let response = Box::into_raw(Box::new(llmpool_response::new(r)));
                q.push(Item::Done { response, tag });
            });
            c.stream_deltas_async(api, req, on_delta, done)
        })
    }
}

/// Takes up to `max` of the oldest events waiting in `queue` into
/// `out[0..n]` and returns `n` (0 at once when none waits: it never
/// blocks). Completions pushed by `llmpool_queue_done` come as DONE events
/// with tag 0, in the same order as everything else. Each DONE event's
/// `response` now belongs to the caller; the delta strings of this batch
/// stay valid until the next take on this queue (take from one thread at a
/// time). The fd stays readable while events wait. 0 for a NULL `queue` or
/// `out`, or a zero `max`.
///
/// # Safety
/// `queue` is NULL or a live queue; `out` is NULL or valid for `max`
/// writes of `llmpool_event`.
#[no_mangle]
pub unsafe extern "C" fn llmpool_queue_take(
    queue: *mut llmpool_queue,
    out: *mut llmpool_event,
    max: usize,
) -> usize {
    guard(
        |_| 0,
        || {
            // SAFETY: NULL or a live queue per the contract.
            let Some(q) = (unsafe { queue.as_ref() }) else {
                return 0;
            };
            if out.is_null() || max == 0 {
                return 0;
            }
            let mut taken = crate::sync::lock(&q.taken);
            taken.clear();
            let items = q.q.take_up_to(max);
            let n = items.len();
            for (i, item) in items.into_iter().enumerate() {
                let ev = match item {
                    Item::Delta(d) => {
                        let ev = llmpool_event {
                            kind: llmpool_event_kind::LLMPOOL_EVENT_DELTA,
                            tag: d.tag,
                            call_id: d.call_id,
                            delta: d.view(),
                            response: std::ptr::null_mut(),
                        };
                        taken.push(d);
                        ev
                    }
                    Item::Done { response, tag } => llmpool_event {
                        kind: llmpool_event_kind::LLMPOOL_EVENT_DONE,
                        tag,
                        // SAFETY: a live response from llmpool, owned by the queue.
                        call_id: unsafe { super::response::llmpool_response_call_id(response) },
                        delta: llmpool_delta::empty(),
                        response,
                    },
                };
                // SAFETY: `out` is valid for `max` writes and i < n <= max.
                unsafe { out.add(i).write(ev) };
            }
            n
        },
    )
}
