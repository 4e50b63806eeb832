//! `llmpool_queue`: completions of async calls collected by one thread,
//! e.g. an event loop polling a file descriptor.

use std::ffi::{c_int, c_void};

use super::code::llmpool_code;
use super::response::{llmpool_response, llmpool_response_free};
use super::util::guard;
use crate::exec::CompletionQueue;

/// What waits in a queue for its consumer thread: a call's response, or a
/// typed delta of a stream submitted with `llmpool_stream_queued`.
pub(super) enum Item {
    Done {
        response: *mut llmpool_response,
        tag: u64,
    },
    Delta(super::events::OwnedDelta),
}

// SAFETY: a response may be read from any thread (see `llmpool_response`);
// each queued pointer has exactly one owner, the queue, until taken. A
// delta owns its strings.
unsafe impl Send for Item {}

impl Item {
    /// Frees what the item owns (a response nobody took).
    fn discard(self) {
        if let Item::Done { response, .. } = self {
            // SAFETY: each queued response is owned by the queue alone.
            unsafe { llmpool_response_free(response) };
        }
    }
}

/// A completion queue for single-threaded programs. Created with
/// `llmpool_queue_new`, owned by the caller, freed with `llmpool_queue_free`.
/// Submit async calls with `llmpool_queue_done` as `done` and the queue as
/// `userdata`; watch `llmpool_queue_fd` in your event loop and take
/// completions with `llmpool_queue_pop`. Thread-safe: library threads push
/// while any thread pops.
pub struct llmpool_queue {
    pub(super) q: CompletionQueue<Item>,
    /// The deltas of the last `llmpool_queue_take`, whose strings its
    /// events point into until the next take or the queue's free.
    pub(super) taken: std::sync::Mutex<Vec<super::events::OwnedDelta>>,
}

/// Creates a completion queue; `*out` receives it (owned by the caller).
/// `LLMPOOL_INVALID_ARGUMENT` for a NULL `out`, `LLMPOOL_IO` when the
/// system refuses an eventfd (then `*out` is NULL).
///
/// # Safety
/// `out` is NULL or valid for one pointer write.
#[no_mangle]
pub unsafe extern "C" fn llmpool_queue_new(out: *mut *mut llmpool_queue) -> llmpool_code {
    guard(
        |_| llmpool_code::LLMPOOL_PANIC,
        || {
            if out.is_null() {
                return llmpool_code::LLMPOOL_INVALID_ARGUMENT;
            }
            // SAFETY: non-NULL and writable per the contract.
            unsafe { *out = std::ptr::null_mut() };
            match CompletionQueue::new() {
                Ok(q) => {
                    // SAFETY: as above.
                    let q = llmpool_queue {
                        q,
                        taken: std::sync::Mutex::new(Vec::new()),
                    };
                    unsafe { *out = Box::into_raw(Box::new(q)) };
                    llmpool_code::LLMPOOL_OK
                }
                Err(_) => llmpool_code::LLMPOOL_IO,
            }
        },
    )
}

/// Frees a queue and every response still in it, and closes its fd. NULL
/// is a no-op. Free it only when no call can still complete into it (every
/// `done` has run, or the clients were freed first, which waits for them).
///
/// # Safety
/// `queue` is NULL or a queue from `llmpool_queue_new`, not yet freed.
#[no_mangle]
pub unsafe extern "C" fn llmpool_queue_free(queue: *mut llmpool_queue) {
    if queue.is_null() {
        return;
    }
    guard(
        |_| (),
        || {
            // SAFETY: non-NULL and created by Box::into_raw in llmpool_queue_new.
            let q = unsafe { Box::from_raw(queue) };
            for item in q.q.take_all() {
                item.discard();
            }
        },
    )
}

/// The queue's file descriptor: readable (level-triggered) exactly while
/// completions wait, for `poll`/`epoll`/libuv/libevent. Owned by the queue:
/// never read, write or close it. -1 for a NULL queue.
///
/// # Safety
/// `queue` is NULL or a live queue.
#[no_mangle]
pub unsafe extern "C" fn llmpool_queue_fd(queue: *const llmpool_queue) -> c_int {
    // SAFETY: NULL or a live queue per the contract.
    unsafe { queue.as_ref() }.map_or(-1, |q| q.q.fd())
}

/// An `llmpool_done_cb` that appends `response` to the queue `queue` (an
/// `llmpool_queue *` passed as `userdata`); the queue owns it until
/// popped. A NULL `queue` frees the response (nothing leaks).
///
/// # Safety
/// `queue` is NULL or a live queue; `response` is NULL or a response from
/// llmpool whose ownership passes to the queue.
#[no_mangle]
pub unsafe extern "C" fn llmpool_queue_done(queue: *mut c_void, response: *mut llmpool_response) {
    guard(
        |_| (),
        || {
            if response.is_null() {
                return;
            }
            // SAFETY: NULL or a live queue per the contract.
            match unsafe { (queue as *const llmpool_queue).as_ref() } {
                Some(q) => q.q.push(Item::Done { response, tag: 0 }),
                // SAFETY: the response is ours to free.
                None => unsafe { llmpool_response_free(response) },
            }
        },
    )
}

/// The oldest waiting completion, or NULL at once when none waits (never
/// blocks). The caller owns the response (`llmpool_response_free`); match
/// it to its call with `llmpool_response_call_id`. NULL for a NULL queue.
/// Stream deltas (`llmpool_stream_queued`) are left in the queue for
/// `llmpool_queue_take`: a queue that carries streams is best drained
/// with `llmpool_queue_take` alone.
///
/// # Safety
/// `queue` is NULL or a live queue.
#[no_mangle]
pub unsafe extern "C" fn llmpool_queue_pop(queue: *mut llmpool_queue) -> *mut llmpool_response {
    guard(
        |_| std::ptr::null_mut(),
        // SAFETY: NULL or a live queue per the contract.
        || match unsafe { queue.as_ref() } {
            Some(q) => match q.q.pop_first(|i| matches!(i, Item::Done { .. })) {
                Some(Item::Done { response, .. }) => response,
                _ => std::ptr::null_mut(),
            },
            None => std::ptr::null_mut(),
        },
    )
}

/// Waits up to `timeout_ms` (-1: without limit) until events or
/// completions wait in `queue`: 1 when they do, 0 when the time ran out,
/// -1 for a NULL queue or when `poll` fails. For programs that cannot watch
/// `llmpool_queue_fd` themselves: call it on a helper thread (e.g. a
/// worker pool's), then take the events on the consumer thread.
///
/// # Safety
/// `queue` is NULL or a live queue (not freed while this waits).
#[no_mangle]
pub unsafe extern "C" fn llmpool_queue_wait(
    queue: *const llmpool_queue,
    timeout_ms: c_int,
) -> c_int {
    // SAFETY: NULL or a live queue per the contract.
    let Some(q) = (unsafe { queue.as_ref() }) else {
        return -1;
    };
    let mut p = libc::pollfd {
        fd: q.q.fd(),
        events: libc::POLLIN,
        revents: 0,
    };
    loop {
        // SAFETY: one valid pollfd and a count of 1.
        let n = unsafe { libc::poll(&mut p, 1, timeout_ms.max(-1)) };
        if n >= 0 {
            return c_int::from(n > 0);
        }
        if std::io::Error::last_os_error().kind() != std::io::ErrorKind::Interrupted {
            return -1;
        }
    }
}
